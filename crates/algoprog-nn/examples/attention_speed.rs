//! Forward + backward time of causal attention, fused kernel vs composite
//! candle ops, at b=32, h=8, T=128, d_h=16 (f32, CPU), with and without ALiBi.
//! q, k, v are views of a packed (b, T, 3, h, d_h) variable, as in the model,
//! so the timings include the gradient's way back to the packed projection.
//!
//! The "contiguous vars" case feeds separate contiguous q, k, v variables,
//! which shows the cost of the gradient's way back through the views.
//!
//! `cargo run --release -p algoprog-nn --example attention_speed`
//! (ATTENTION_SPEED_CASE=<name> runs one case, ATTENTION_SPEED_REPS=<n> sets
//! the repetitions; the best time is printed.)

use algoprog_nn::fused::attention::{causal_attention, causal_attention_composite};
use candle_core::{Device, Result, Tensor, Var};
use std::time::Instant;

fn main() -> Result<()> {
    let (b, h, t, hd) = (32, 8, 128, 16);
    let dev = Device::Cpu;
    let qkv = Var::from_tensor(&Tensor::randn(0f32, 1.0, (b, t, 3, h, hd), &dev)?)?;
    let w = Tensor::randn(0f32, 1.0, (b, t, h * hd), &dev)?;
    let slopes: Vec<f32> = algoprog_nn::Alibi::slopes(h)
        .iter()
        .map(|&m| m as f32)
        .collect();
    let bias = {
        let mut v = vec![0f32; h * t * t];
        for (hh, m) in slopes.iter().enumerate() {
            for i in 0..t {
                for j in 0..=i {
                    v[(hh * t + i) * t + j] = -m * (i - j) as f32;
                }
            }
        }
        Tensor::from_vec(v, (h, t, t), &dev)?
    };
    let split = || -> Result<(Tensor, Tensor, Tensor)> {
        let f = |i| qkv.narrow(2, i, 1)?.squeeze(2)?.transpose(1, 2);
        Ok((f(0)?, f(1)?, f(2)?))
    };
    let reps: usize = std::env::var("ATTENTION_SPEED_REPS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    // ATTENTION_SPEED_CASE=<name> runs one case only (for a profiler)
    let only = std::env::var("ATTENTION_SPEED_CASE").ok();
    let time = |name: &str, f: &dyn Fn() -> Result<Tensor>| -> Result<()> {
        if only.as_deref().is_some_and(|o| o != name) {
            return Ok(());
        }
        let (mut fwd, mut total) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..reps + 2 {
            let t0 = Instant::now();
            let y = f()?;
            let t1 = Instant::now();
            let g = (y * &w)?.sum_all()?.backward()?;
            std::hint::black_box(g.get(qkv.as_tensor()));
            let t2 = Instant::now();
            fwd = fwd.min((t1 - t0).as_secs_f64() * 1e3);
            total = total.min((t2 - t0).as_secs_f64() * 1e3);
        }
        println!(
            "{name:<22} forward {fwd:7.2} ms   forward+backward {total:7.2} ms  (best of {})",
            reps + 2
        );
        Ok(())
    };
    println!(
        "causal attention b={b} h={h} T={t} d_h={hd}, {} threads",
        rayon_threads()
    );
    time("fused", &|| {
        let (q, k, v) = split()?;
        causal_attention(&q, &k, &v, None)
    })?;
    let (qc, kc, vc) = split()?;
    let (qc, kc, vc) = (
        Var::from_tensor(&qc.contiguous()?)?,
        Var::from_tensor(&kc.contiguous()?)?,
        Var::from_tensor(&vc.contiguous()?)?,
    );
    time("fused, contiguous vars", &|| {
        causal_attention(&qc, &kc, &vc, None)
    })?;
    time("composite", &|| {
        let (q, k, v) = split()?;
        causal_attention_composite(&q, &k, &v, &|s: &Tensor| Ok(s.clone()))
    })?;
    time("fused, alibi", &|| {
        let (q, k, v) = split()?;
        causal_attention(&q, &k, &v, Some(&slopes))
    })?;
    time("composite, alibi", &|| {
        let (q, k, v) = split()?;
        causal_attention_composite(&q, &k, &v, &|s: &Tensor| s.broadcast_add(&bias))
    })?;
    Ok(())
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
