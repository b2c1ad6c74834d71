//! LSTM training throughput: tokens/s of the papers' 2-layer LSTM (dropout 0,
//! layer norm, TBPTT 64) at widths 64 and 128, batch 32, sequence 128,
//! vocabulary 4096 (the `bpe-4096` tokenizer's size), AdamW, gradient clip 1
//! — one full training step per iteration, as the trainer runs it. Also the
//! time split of one step (input projections, recurrent loop, norms, loss,
//! backward, optimiser) for each kernel (window, fused cell, composite).
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
    let v: Vec<u32> = (0..BATCH * (SEQ + 1)).map(|_| rng.random_range(0..VOCAB as u32)).collect();
    let all = Tensor::from_vec(v, (BATCH, SEQ + 1), dev).unwrap();
    (all.narrow(1, 0, SEQ).unwrap().contiguous().unwrap(), all.narrow(1, 1, SEQ).unwrap().flatten_all().unwrap())
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

fn main() {
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let steps: usize = std::env::var("ALGOPROG_BENCH_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(5);
    let dev = Device::Cpu;
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average: {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    println!(
        "{:<22} {:>10} {:>10} | split per step (ms): {:>7} {:>7} {:>7} {:>7} {:>7} {:>7}",
        "model", "tokens/s", "ms/step", "in-proj", "loop", "fwd", "loss", "bwd", "optim"
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    for d in [64usize, 128] {
        for kernel in [LstmKernel::Window, LstmKernel::Cell, LstmKernel::Composite] {
            let name = format!("lstm-d{d}-{}", format!("{kernel:?}").to_lowercase());
            if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
                continue;
            }
            let cfg = LstmConfig { kernel, ..LstmConfig::paper_no_dropout(d) };
            let model = cfg.build(VOCAB, 0, &dev, DType::F32).unwrap();
            let mut opt = OptimizerConfig::adam_w().build(model.params()).unwrap();
            // the input projections alone: one (T·B, d)·(d, 4H) matmul per layer
            let w_ih: Vec<Tensor> =
                (0..cfg.n_layers).map(|l| model.params().get(&format!("layers.{l}.w_ih")).unwrap().var.as_tensor().clone()).collect();
            let x = Tensor::randn(0f32, 1.0, (SEQ * BATCH, d), &dev).unwrap();
            let (mut t_all, mut t_fwd, mut t_loss, mut t_bwd, mut t_opt, mut t_proj) = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
            for i in 0..steps + 1 {
                let (inp, tgt) = tokens(&mut rng, &dev);
                let t0 = Instant::now();
                let h = model.hidden(&inp, true).unwrap();
                let f = secs(t0);
                let t1 = Instant::now();
                let loss = cross_entropy(&h.reshape((BATCH * SEQ, d)).unwrap(), model.output_weight(), &tgt).unwrap();
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
                if i > 0 {
                    // the first step warms caches and allocators
                    t_all += all;
                    t_fwd += f;
                    t_loss += l;
                    t_bwd += b;
                    t_opt += o;
                    t_proj += p;
                }
            }
            let n = steps as f64;
            let ms = |x: f64| 1e3 * x / n;
            println!(
                "{:<22} {:>10.0} {:>10.1} | {:>26.1} {:>7.1} {:>7.1} {:>7.1} {:>7.1} {:>7.1}",
                name,
                (BATCH * SEQ) as f64 * n / t_all,
                ms(t_all),
                ms(t_proj),
                ms(t_fwd - t_proj),
                ms(t_fwd),
                ms(t_loss),
                ms(t_bwd),
                ms(t_opt)
            );
        }
    }
}
