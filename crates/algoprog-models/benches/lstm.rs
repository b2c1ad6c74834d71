//! LSTM training throughput: tokens/s of the papers' 2-layer LSTM (dropout 0,
//! layer norm, TBPTT 64) at widths 64 and 128, batch 32, sequence 128,
//! vocabulary 4096 (the `bpe-4096` tokenizer's size), AdamW, gradient clip 1
//! — one full training step per iteration, as the trainer runs it. Also the
//! time split of one step (input projections, recurrent loop, norms, loss,
//! backward, optimiser) for each kernel (window, fused cell, composite).
//! Medians over the timed steps. Columns: `in-proj` the input projections
//! alone; `loop` = forward − in-proj (recurrence, norms, embedding);
//! `loss` output layer + cross-entropy forward; `bwd` the whole backward;
//! `bwd-lstm` = bwd − the backward of the output layer and loss alone.
//!
//! `cargo bench -p algoprog-models --bench lstm [-- FILTER]`
//! Env: `ALGOPROG_BENCH_STEPS` (timed steps per model, default 5).
//! Compare with `bench/lstm_torch.py` (PyTorch `nn.LSTM`, same config).

use std::time::Instant;

use algoprog_models::{LanguageModel, LstmConfig, LstmKernel};
use algoprog_nn::{clip_grad_norm, cross_entropy, OptimizerConfig};
use candle_core::{DType, Device, Tensor};
use rand::{Rng, SeedableRng};

const VOCAB: usize = 4096;
const BATCH: usize = 32;
const SEQ: usize = 128;

fn tokens(rng: &mut rand_chacha::ChaCha8Rng, dev: &Device) -> (Tensor, Tensor) {
    let v: Vec<u32> = (0..BATCH * (SEQ + 1))
        .map(|_| rng.random_range(0..VOCAB as u32))
        .collect();
    let all = Tensor::from_vec(v, (BATCH, SEQ + 1), dev).unwrap();
    (
        all.narrow(1, 0, SEQ).unwrap().contiguous().unwrap(),
        all.narrow(1, 1, SEQ).unwrap().flatten_all().unwrap(),
    )
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let steps: usize = std::env::var("ALGOPROG_BENCH_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dev = Device::Cpu;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "{:<22} {:>10} {:>10} | split per step (ms): {:>7} {:>7} {:>7} {:>7} {:>7} {:>8} {:>7}",
        "model",
        "tokens/s",
        "ms/step",
        "in-proj",
        "loop",
        "fwd",
        "loss",
        "bwd",
        "bwd-lstm",
        "optim"
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    for d in [64usize, 128] {
        for kernel in [LstmKernel::Window, LstmKernel::Cell, LstmKernel::Composite] {
            let name = format!("lstm-d{d}-{}", format!("{kernel:?}").to_lowercase());
            if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
                continue;
            }
            let cfg = LstmConfig {
                kernel,
                ..LstmConfig::paper_no_dropout(d)
            };
            let model = cfg.build(VOCAB, 0, &dev, DType::F32).unwrap();
            let mut opt = OptimizerConfig::adam_w().build(model.params()).unwrap();
            // the input projections alone: one (T·B, d)·(d, 4H) matmul per layer
            let w_ih: Vec<Tensor> = (0..cfg.n_layers)
                .map(|l| {
                    model
                        .params()
                        .get(&format!("layers.{l}.w_ih"))
                        .unwrap()
                        .var
                        .as_tensor()
                        .clone()
                })
                .collect();
            let x = Tensor::randn(0f32, 1.0, (SEQ * BATCH, d), &dev).unwrap();
            // per-step times: all, forward (hidden), loss, backward, optimiser, input projections, head backward
            let mut rows: Vec<[f64; 7]> = Vec::new();
            for i in 0..steps + 1 {
                let (inp, tgt) = tokens(&mut rng, &dev);
                let t0 = Instant::now();
                let h = model.hidden(&inp, true).unwrap();
                let f = secs(t0);
                let t1 = Instant::now();
                let loss = cross_entropy(
                    &h.reshape((BATCH * SEQ, d)).unwrap(),
                    model.output_weight(),
                    &tgt,
                )
                .unwrap();
                let _ = loss.to_scalar::<f32>().unwrap();
                let l = secs(t1);
                let t2 = Instant::now();
                let mut g = loss.backward().unwrap();
                let b = secs(t2);
                let t3 = Instant::now();
                clip_grad_norm(model.params(), &mut g, 1.0).unwrap();
                opt.step(&g, 1e-3).unwrap();
                let o = secs(t3);
                let all = secs(t0);
                let t4 = Instant::now();
                for w in &w_ih {
                    let _ = x.matmul(&w.t().unwrap()).unwrap();
                }
                let p = secs(t4);
                // the output layer and loss backward alone, from a detached hidden state
                let hv = candle_core::Var::from_tensor(&h.detach()).unwrap();
                let head = cross_entropy(
                    &hv.as_tensor().reshape((BATCH * SEQ, d)).unwrap(),
                    model.output_weight(),
                    &tgt,
                )
                .unwrap();
                let t5 = Instant::now();
                let _ = head.backward().unwrap();
                let hb = secs(t5);
                if i > 0 {
                    // the first step warms caches and allocators
                    rows.push([all, f, l, b, o, p, hb]);
                }
            }
            let med = |k: usize| {
                let mut v: Vec<f64> = rows.iter().map(|r| r[k]).collect();
                v.sort_by(f64::total_cmp);
                1e3 * v[v.len() / 2]
            };
            println!(
                "{:<22} {:>10.0} {:>10.1} | {:>26.1} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>8.1} {:>7.1}",
                name,
                (BATCH * SEQ) as f64 / (med(0) / 1e3),
                med(0),
                med(5),
                med(1) - med(5),
                med(1),
                med(2),
                med(3),
                med(3) - med(6),
                med(4)
            );
        }
    }
}
