//! Training throughput of the study presets: tokens/s, achieved GFLOP/s
//! (training FLOPs by the matmul convention), MFU against a measured f32
//! matmul peak, and peak memory.
//!
//! `cargo bench -p algoprog-train --bench throughput [-- [FILTER] [--json] [--list]]`
//!
//! Every model is a study preset (`preset_table`: `modern`, `retro` = the
//! authors' retro runs with post-RMSNorm blocks and a final LayerNorm, `lstm`
//! = the authors' 1-layer LSTM without LayerNorm, TBPTT 32), with the
//! trained output bias the presets set. Two kinds of rows:
//! - `{preset}-d{64,128}-{gpt2,bpe4096}` (and `lstm-d128-*`): batch 32 × 128
//!   tokens with the GPT-2 vocabulary (50257 ids) or the 4096-id BPE, where
//!   the matmuls dominate;
//! - study scale, the 512-id BPE: `quick-{preset}-dD` (sequences of 64,
//!   batch 16, as the `quick` study; modern and retro d32/d48, LSTM d32/d64)
//!   and `laptop-{preset}-dD` (sequences of 128, batch 16, as `laptop`;
//!   modern and retro d32/d80, LSTM d64/d128), where per-op overhead decides.
//!
//! FILTER keeps the models whose name contains it (`modern-d128`, `bpe4096`,
//! `quick-`); `--list` prints every name (`bench/compare.py` takes its list
//! from there).
//!
//! Every model runs in a fresh child process (this executable re-run with
//! `--child NAME`), so its peak resident memory (VmHWM of /proc/self/status,
//! read by the child just before it exits) is its own: data, model,
//! optimizer state, activations and the allocator's slack, not the previous
//! model's. A step is forward, backward, gradient clipping (1.0) and an AdamW
//! update (lr 1e-3, weight decay 0.01) for every preset. The reported
//! rate is the median step time over the timed steps after one warm-up step.
//!
//! Output: a table by default; with `--json` (or `ALGOPROG_BENCH_JSON=1`)
//! one JSON object per line and model with `name`, `params`,
//! `flops_per_token`, `tokens_per_s`, `gflops`, `mfu`, `peak_rss_mb`,
//! `threads`, `matmul_peak_gflops` and more (the machine description goes to
//! stderr then).
//!
//! Env: `ALGOPROG_BENCH_STEPS` (timed steps per model, default 5),
//! `ALGOPROG_FUSED=0` (fused kernels off; inherited by the children),
//! `RAYON_NUM_THREADS` / `CANDLE_NUM_THREADS` (threads),
//! `ALGOPROG_BENCH_HANDOFF=1` (the child does not run its kernels in a pool
//! of its own, as the trainer does since `runtime::adopt_current_thread`, but
//! hands them to rayon's global pool: the A/B of that change).

use std::process::Command;
use std::time::Instant;

use algoprog_data::{DataConfig, Dataset, TokenizerSpec};
use algoprog_models::ModelConfig;
use algoprog_nn::{clip_grad_norm, OptimizerConfig};
use algoprog_train::batch_loss;
use algoprog_train::config::preset_table;
use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value};

/// One benchmark model: a study preset at a width, with its data shape.
struct Bench {
    name: String,
    preset: &'static str,
    d: usize,
    tokenizer: TokenizerSpec,
    batch: usize,
    seq: usize,
}

/// The vocabularies of the d = 64/128 rows (batch 32 × 128 tokens).
const VOCABS: [(&str, TokenizerSpec); 2] = [
    ("gpt2", TokenizerSpec::Gpt2),
    ("bpe4096", TokenizerSpec::Bpe { vocab_size: 4096 }),
];
const ARCHS: [(&str, usize); 5] = [
    ("modern", 64),
    ("modern", 128),
    ("retro", 64),
    ("retro", 128),
    ("lstm", 128),
];
/// (prefix, sequence length, batch, (preset, width) pairs).
type StudyRows = (&'static str, usize, usize, [(&'static str, usize); 6]);
/// Study-scale rows, on the 512-id BPE of `quick` and `laptop`: their
/// sequence lengths and batch size, and widths from their scans and ablations.
const STUDY_ROWS: [StudyRows; 2] = [
    (
        "quick",
        64,
        16,
        [
            ("modern", 32),
            ("modern", 48),
            ("retro", 32),
            ("retro", 48),
            ("lstm", 32),
            ("lstm", 64),
        ],
    ),
    (
        "laptop",
        128,
        16,
        [
            ("modern", 32),
            ("modern", 80),
            ("retro", 32),
            ("retro", 80),
            ("lstm", 64),
            ("lstm", 128),
        ],
    ),
];

/// Every benchmark model, in run order.
fn benches() -> Vec<Bench> {
    let mut out: Vec<Bench> = VOCABS
        .iter()
        .flat_map(|(v, tok)| {
            ARCHS.iter().map(move |&(preset, d)| Bench {
                name: format!("{preset}-d{d}-{v}"),
                preset,
                d,
                tokenizer: tok.clone(),
                batch: 32,
                seq: 128,
            })
        })
        .collect();
    for (prefix, seq, batch, models) in STUDY_ROWS {
        out.extend(models.iter().map(|&(preset, d)| Bench {
            name: format!("{prefix}-{preset}-d{d}"),
            preset,
            d,
            tokenizer: TokenizerSpec::Bpe { vocab_size: 512 },
            batch,
            seq,
        }));
    }
    out
}

/// Achieved GFLOP/s of a 2048³ f32 matmul (best of 10), the peak MFU is measured against.
fn matmul_peak(device: &Device) -> f64 {
    let n = 2048;
    let a = Tensor::randn(0f32, 1.0, (n, n), device).unwrap();
    let b = Tensor::randn(0f32, 1.0, (n, n), device).unwrap();
    let _ = a.matmul(&b).unwrap();
    let mut best = f64::MAX;
    for _ in 0..10 {
        let t = Instant::now();
        let c = a.matmul(&b).unwrap();
        let _ = c.sum_all().unwrap().to_scalar::<f32>().unwrap();
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (n * n * n) as f64 / best / 1e9
}

/// The model config of a study preset at width `d` (output bias and all).
fn model_config(preset: &str, d: usize) -> ModelConfig {
    let table = preset_table(preset, d).expect("a study preset");
    table["model"]
        .clone()
        .try_into()
        .expect("the preset's model config")
}

/// A `kB` field of /proc/self/status in MiB (VmHWM: peak resident set; VmRSS: current).
fn status_mb(field: &str) -> f64 {
    proc_mib("/proc/self/status", field)
}

/// MiB of a `FIELD: N kB` line of a /proc file of this process (NaN, so
/// `null` in the JSON, when the file or field is not there).
fn proc_mib(file: &str, field: &str) -> f64 {
    let s = std::fs::read_to_string(file).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n.is_multiple_of(2) {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    } else {
        v[n / 2]
    }
}

/// Trains model `name` for one warm-up and `steps` timed steps; prints one JSON line.
fn child(name: &str, steps: usize) {
    let device = Device::Cpu;
    let bench = benches()
        .into_iter()
        .find(|b| b.name == name)
        .unwrap_or_else(|| panic!("no benchmark model `{name}` (see --list)"));
    let cfg = model_config(bench.preset, bench.d);
    let data = Dataset::prepare(&DataConfig {
        tokenizer: bench.tokenizer.clone(),
        seq_len: bench.seq,
        ..DataConfig::default()
    })
    .expect("data");
    let data_rss_mb = status_mb("VmRSS:");
    let model = cfg
        .build(data.vocab_size(), 0, &device, DType::F32)
        .expect("model");
    let mut opt = OptimizerConfig::adam_w()
        .build(model.params())
        .expect("optimizer");
    let mut batches = data.train_batches(bench.batch, 0);
    let mut step = || {
        let b = batches.next().unwrap();
        let t = Instant::now();
        let loss = batch_loss(model.as_ref(), &b, &device, true).unwrap();
        let mut g = loss.backward().unwrap();
        clip_grad_norm(model.params(), &mut g, 1.0).unwrap();
        opt.step(&g, 1e-3).unwrap();
        t.elapsed().as_secs_f64()
    };
    let warmup = step();
    let times: Vec<f64> = (0..steps.max(1)).map(|_| step()).collect();
    let secs = median(&times);
    let tokens = (bench.batch * data.seq_len()) as f64;
    let flops = model.flops(data.seq_len());
    let tps = tokens / secs;
    let out = json!({
        "name": name,
        "impl": "algoprog",
        "params": model.param_counts().total(),
        "non_embedding_params": model.param_counts().non_embedding,
        "vocab": data.vocab_size(),
        "preset": bench.preset,
        "batch": bench.batch,
        "seq_len": data.seq_len(),
        "flops_per_token": flops.train_per_token,
        "tokens_per_s": tps,
        "gflops": tps * flops.train_per_token / 1e9,
        "step_ms": 1e3 * secs,
        "step_ms_min": 1e3 * times.iter().cloned().fold(f64::MAX, f64::min),
        "warmup_ms": 1e3 * warmup,
        "steps": times.len(),
        "peak_rss_mb": status_mb("VmHWM:"),
        "data_rss_mb": data_rss_mb,
        "threads": candle_core::utils::get_num_threads(),
        "fused": algoprog_nn::fused::enabled(),
        "allocator": "mimalloc",
        "huge_page_mib": proc_mib("/proc/self/smaps_rollup", "AnonHugePages:"),
    });
    println!("{out}");
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn cpu_description() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU".to_string(), |s| s.trim().to_string());
    let flags: Vec<&str> = info
        .lines()
        .find(|l| l.starts_with("flags"))
        .map(|l| {
            l.split_whitespace()
                .filter(|f| ["avx2", "fma", "avx512f", "avx512bw", "avx512_bf16"].contains(f))
                .collect()
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!("{model}, {cores} cores, {}", flags.join(" "))
}

/// As the CLI: `algoprog_train::runtime::MiMalloc` says why.
#[global_allocator]
static ALLOC: algoprog_train::runtime::MiMalloc = algoprog_train::runtime::MiMalloc;

fn main() {
    algoprog_train::runtime::tune();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let steps: usize = std::env::var("ALGOPROG_BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    if let Some(i) = args.iter().position(|a| a == "--child") {
        // as the trainer does: this thread runs its own parallel kernels
        if std::env::var("ALGOPROG_BENCH_HANDOFF").is_err() {
            algoprog_train::runtime::adopt_current_thread();
        }
        child(args.get(i + 1).expect("--child needs a model name"), steps);
        return;
    }
    let json_out = args.iter().any(|a| a == "--json")
        || std::env::var("ALGOPROG_BENCH_JSON").is_ok_and(|v| !v.is_empty() && v != "0");
    let filter = args.iter().find(|a| !a.starts_with('-'));
    if args.iter().any(|a| a == "--list") {
        for b in benches() {
            println!("{}", b.name);
        }
        return;
    }
    let names: Vec<String> = benches()
        .into_iter()
        .map(|b| b.name)
        .filter(|n| filter.is_none_or(|f| n.contains(f.as_str())))
        .collect();

    let peak = matmul_peak(&Device::Cpu);
    let threads = candle_core::utils::get_num_threads();
    let fused = algoprog_nn::fused::enabled();
    let header = format!(
        "{}; {threads} threads; fused kernels {}; f32 matmul peak (2048³) {peak:.1} GFLOP/s; {steps} timed steps (median) after 1 warm-up; load average {}",
        cpu_description(),
        if fused { "on" } else { "off (ALGOPROG_FUSED=0)" },
        load_average()
    );
    if json_out {
        eprintln!("{header}");
    } else {
        println!("{header}");
        println!(
            "{:<22} {:>10} {:>11} {:>9} {:>9} {:>8} {:>6} {:>9}",
            "model", "params", "FLOPs/tok", "tokens/s", "GFLOP/s", "ms/step", "MFU", "peak MiB"
        );
    }
    let exe = std::env::current_exe().expect("current executable");
    for name in &names {
        let out = Command::new(&exe)
            .arg("--child")
            .arg(name)
            .output()
            .expect("run the child process");
        let line = String::from_utf8_lossy(&out.stdout);
        let parsed = line
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str::<Value>(l).ok());
        let Some(mut r) = parsed.filter(|_| out.status.success()) else {
            eprintln!(
                "{name}: child failed ({}):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
            continue;
        };
        let gflops = r["gflops"].as_f64().unwrap_or(f64::NAN);
        r["mfu"] = json!(gflops / peak);
        r["matmul_peak_gflops"] = json!(peak);
        r["load_avg"] = json!(load_average());
        if json_out {
            println!("{r}");
        } else {
            println!(
                "{:<22} {:>10} {:>11.3e} {:>9.0} {:>9.1} {:>8.1} {:>5.1}% {:>9.0}",
                name,
                r["params"],
                r["flops_per_token"].as_f64().unwrap_or(f64::NAN),
                r["tokens_per_s"].as_f64().unwrap_or(f64::NAN),
                gflops,
                r["step_ms"].as_f64().unwrap_or(f64::NAN),
                100.0 * gflops / peak,
                r["peak_rss_mb"].as_f64().unwrap_or(f64::NAN),
            );
        }
    }
}
