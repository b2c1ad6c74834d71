//! Training throughput of the presets: tokens/s, achieved GFLOP/s (training
//! FLOPs by the matmul convention) and MFU against a measured f32 matmul peak.
//!
//! `cargo bench -p algoprog-train --bench throughput [-- FILTER]`
//! Env: `ALGOPROG_BENCH_STEPS` (timed steps per model, default 5).

use std::time::Instant;

use algoprog_data::{DataConfig, Dataset, TokenizerSpec};
use algoprog_models::{ModelConfig, TransformerConfig};
use algoprog_nn::{clip_grad_norm, OptimizerConfig};
use algoprog_train::batch_loss;
use candle_core::{DType, Device, Tensor};

/// Achieved GFLOP/s of a 2048³ f32 matmul (best of 5), the peak MFU is measured against.
fn matmul_peak(device: &Device) -> f64 {
    let n = 2048;
    let a = Tensor::randn(0f32, 1.0, (n, n), device).unwrap();
    let b = Tensor::randn(0f32, 1.0, (n, n), device).unwrap();
    let _ = a.matmul(&b).unwrap();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let c = a.matmul(&b).unwrap();
        let _ = c.sum_all().unwrap().to_scalar::<f32>().unwrap();
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (n * n * n) as f64 / best / 1e9
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let steps: usize = std::env::var("ALGOPROG_BENCH_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let device = Device::Cpu;
    let peak = matmul_peak(&device);
    println!("f32 matmul peak (2048³): {peak:.1} GFLOP/s; {} threads", rayon_threads());
    println!(
        "{:<28} {:>10} {:>12} {:>10} {:>10} {:>8}",
        "model", "params", "FLOPs/token", "tokens/s", "GFLOP/s", "MFU"
    );
    let batch = 32;
    for (vocab_name, tok) in [("gpt2", TokenizerSpec::Gpt2), ("bpe4096", TokenizerSpec::Bpe { vocab_size: 4096 })] {
        let data = Dataset::prepare(&DataConfig { tokenizer: tok, ..DataConfig::default() }).expect("data");
        for (preset, d) in [("modern", 64), ("modern", 128), ("retro", 64), ("retro", 128)] {
            let name = format!("{preset}-d{d}-{vocab_name}");
            if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
                continue;
            }
            let tcfg = if preset == "modern" { TransformerConfig::modern(d) } else { TransformerConfig::retro(d) };
            let cfg = ModelConfig::Transformer(tcfg);
            let model = cfg.build(data.vocab_size(), 0, &device, DType::F32).expect("model");
            let mut opt = OptimizerConfig::adam_w().build(model.params()).expect("optimizer");
            let mut batches = data.train_batches(batch, 0);
            let mut step = || {
                let b = batches.next().unwrap();
                let loss = batch_loss(model.as_ref(), &b, &device, true).unwrap();
                let mut g = loss.backward().unwrap();
                clip_grad_norm(model.params(), &mut g, 1.0).unwrap();
                opt.step(&g, 1e-3).unwrap();
            };
            step();
            let t = Instant::now();
            for _ in 0..steps {
                step();
            }
            let secs = t.elapsed().as_secs_f64();
            let tokens = (steps * batch * data.seq_len()) as f64;
            let fpt = model.flops(data.seq_len()).train_per_token;
            let tps = tokens / secs;
            let gflops = tps * fpt / 1e9;
            println!(
                "{:<28} {:>10} {:>12.3e} {:>10.0} {:>10.1} {:>7.1}%",
                name,
                model.param_counts().total(),
                fpt,
                tps,
                gflops,
                100.0 * gflops / peak
            );
        }
    }
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
