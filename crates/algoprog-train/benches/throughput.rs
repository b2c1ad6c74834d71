//! Training throughput of the presets: tokens/s, achieved GFLOP/s (training
//! FLOPs by the matmul convention), MFU against a measured f32 matmul peak,
//! and peak memory.
//!
//! `cargo bench -p algoprog-train --bench throughput [-- [FILTER] [--json]]`
//!
//! Models: `modern` and `retro` Transformers at d = 64 and 128, and the
//! 2-layer `lstm` preset (no dropout) at d = 128, each with the GPT-2
//! vocabulary (50257, `-gpt2`) and the 4096-id BPE (`-bpe4096`). FILTER keeps
//! the models whose name contains it (`modern-d128`, `bpe4096`, `lstm`).
//!
//! Every model runs in a fresh child process (this executable re-run with
//! `--child NAME`), so its peak resident memory (VmHWM of /proc/self/status,
//! read by the child just before it exits) is its own: data, model,
//! optimizer state, activations and the allocator's slack, not the previous
//! model's. A step is forward, backward, gradient clipping (1.0) and an AdamW
//! update (lr 1e-3, weight decay 0.01); batch 32 × 128 tokens. The reported
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
//! `RAYON_NUM_THREADS` / `CANDLE_NUM_THREADS` (threads).

use std::process::Command;
use std::time::Instant;

use algoprog_data::{DataConfig, Dataset, TokenizerSpec};
use algoprog_models::{LstmConfig, ModelConfig, TransformerConfig};
use algoprog_nn::{clip_grad_norm, OptimizerConfig};
use algoprog_train::batch_loss;
use candle_core::{DType, Device, Tensor};
use serde_json::{json, Value};

const BATCH: usize = 32;
const VOCABS: [&str; 2] = ["gpt2", "bpe4096"];
const ARCHS: [(&str, usize); 5] = [
    ("modern", 64),
    ("modern", 128),
    ("retro", 64),
    ("retro", 128),
    ("lstm", 128),
];

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

/// Every model name, in run order.
fn model_names() -> Vec<String> {
    VOCABS
        .iter()
        .flat_map(|v| ARCHS.iter().map(move |(p, d)| format!("{p}-d{d}-{v}")))
        .collect()
}

/// The config and tokenizer of a model name `{preset}-d{d}-{vocab}`.
fn model_of(name: &str) -> (ModelConfig, TokenizerSpec) {
    let parts: Vec<&str> = name.split('-').collect();
    let [preset, d, vocab] = parts[..] else {
        panic!("model name `{name}` is not preset-dN-vocab")
    };
    let d: usize = d.trim_start_matches('d').parse().expect("width");
    let cfg = match preset {
        "modern" => ModelConfig::Transformer(TransformerConfig::modern(d)),
        "retro" => ModelConfig::Transformer(TransformerConfig::retro(d)),
        "lstm" => ModelConfig::Lstm(LstmConfig::paper_no_dropout(d)),
        other => panic!("unknown preset `{other}`"),
    };
    let tok = match vocab {
        "gpt2" => TokenizerSpec::Gpt2,
        "bpe4096" => TokenizerSpec::Bpe { vocab_size: 4096 },
        other => panic!("unknown vocabulary `{other}`"),
    };
    (cfg, tok)
}

/// A `kB` field of /proc/self/status in MiB (VmHWM: peak resident set; VmRSS: current).
fn status_mb(field: &str) -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
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
    let (cfg, tok) = model_of(name);
    let data = Dataset::prepare(&DataConfig {
        tokenizer: tok,
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
    let mut batches = data.train_batches(BATCH, 0);
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
    let tokens = (BATCH * data.seq_len()) as f64;
    let flops = model.flops(data.seq_len());
    let tps = tokens / secs;
    let out = json!({
        "name": name,
        "impl": "algoprog",
        "params": model.param_counts().total(),
        "non_embedding_params": model.param_counts().non_embedding,
        "vocab": data.vocab_size(),
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

fn main() {
    algoprog_train::runtime::tune();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let steps: usize = std::env::var("ALGOPROG_BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(args.get(i + 1).expect("--child needs a model name"), steps);
        return;
    }
    let json_out = args.iter().any(|a| a == "--json")
        || std::env::var("ALGOPROG_BENCH_JSON").is_ok_and(|v| !v.is_empty() && v != "0");
    let filter = args.iter().find(|a| !a.starts_with('-'));
    let names: Vec<String> = model_names()
        .into_iter()
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
            "{:<20} {:>10} {:>11} {:>9} {:>9} {:>8} {:>6} {:>9}",
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
                "{:<20} {:>10} {:>11.3e} {:>9.0} {:>9.1} {:>8.1} {:>5.1}% {:>9.0}",
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
