//! Forward + backward time of the fused norms and activations against the
//! composite candle ops they replace (f32, CPU): LayerNorm and RMSNorm on
//! (4096, 128), GeLU (erf), GeLU (tanh), ReLU, SwiGLU and GeGLU on (4096, 512).
//! The backward starts from a gradient of ones (`y.backward()`), so only the
//! op itself and its gradient are timed. candle's backward adds every input
//! gradient into a fresh zeros tensor (`zeros_like` + `add`) and the root
//! gradient is a fresh ones tensor; the "floor" line times those three
//! tensor allocations and passes alone, the part of fwd+bwd no op can remove.
//!
//! `cargo run --release -p algoprog-nn --example norm_act_speed`

use algoprog_nn::fused::act::{geglu, gelu, gelu_tanh, relu, swiglu};
use algoprog_nn::fused::norm::{layer_norm, layer_norm_composite, rms_norm, rms_norm_composite};
use candle_core::{Device, Result, Tensor, Var};
use std::time::Instant;

const REPS: usize = 20;

/// Best and median (forward, forward+backward) milliseconds of `f`, whose
/// result's gradient reaches `probe`.
fn time(f: &dyn Fn() -> Result<Tensor>, probe: &Var) -> Result<(f64, f64, f64)> {
    let (mut fwd, mut total) = (Vec::new(), Vec::new());
    for _ in 0..REPS + 3 {
        let t0 = Instant::now();
        let y = f()?;
        let t1 = Instant::now();
        let g = y.backward()?;
        std::hint::black_box(
            g.get(probe.as_tensor())
                .expect("gradient reaches the input"),
        );
        drop(g);
        drop(y);
        let t2 = Instant::now();
        fwd.push((t1 - t0).as_secs_f64() * 1e3);
        total.push((t2 - t0).as_secs_f64() * 1e3);
    }
    fwd.sort_by(f64::total_cmp);
    total.sort_by(f64::total_cmp);
    Ok((fwd[0], total[0], total[total.len() / 2]))
}

fn row(name: &str, fused: (f64, f64, f64), comp: (f64, f64, f64)) {
    println!(
        "{name:<12} fused fwd {:6.2}  fwd+bwd {:6.2} (median {:6.2}) | composite fwd {:6.2}  fwd+bwd {:6.2} (median {:6.2}) | speed-up {:4.1}×",
        fused.0,
        fused.1,
        fused.2,
        comp.0,
        comp.1,
        comp.2,
        comp.1 / fused.1
    );
}

fn main() -> Result<()> {
    let dev = Device::Cpu;
    println!(
        "ms, best of {} (median of fwd+bwd in brackets), rayon threads {}",
        REPS + 3,
        rayon_threads()
    );

    let (rows, d) = (4096, 128);
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (rows, d), &dev)?)?;
    let g = Var::from_tensor(&Tensor::randn(1f32, 0.1, d, &dev)?)?;
    let b = Var::from_tensor(&Tensor::randn(0f32, 0.1, d, &dev)?)?;
    println!("norms on ({rows}, {d})");
    row(
        "layer_norm",
        time(&|| layer_norm(&x, &g, &b, 1e-5), &x)?,
        time(&|| layer_norm_composite(&x, &g, &b, 1e-5), &x)?,
    );
    row(
        "rms_norm",
        time(&|| rms_norm(&x, &g, 1e-5), &x)?,
        time(&|| rms_norm_composite(&x, &g, 1e-5), &x)?,
    );

    let (rows, h) = (4096, 512);
    let a = Var::from_tensor(&Tensor::randn(0f32, 1.0, (rows, h), &dev)?)?;
    let u = Var::from_tensor(&Tensor::randn(0f32, 1.0, (rows, h), &dev)?)?;
    println!("activations on ({rows}, {h})");
    let floor = {
        let mut best = f64::INFINITY;
        for _ in 0..REPS + 3 {
            let t0 = Instant::now();
            let ones = a.ones_like()?;
            let sum = a.zeros_like()?.add(&ones)?;
            std::hint::black_box(&sum);
            drop((ones, sum));
            best = best.min(t0.elapsed().as_secs_f64() * 1e3);
        }
        best
    };
    println!("floor        ones + zeros + add, one input gradient: {floor:6.2}");
    row("gelu", time(&|| gelu(&a), &a)?, time(&|| a.gelu_erf(), &a)?);
    row(
        "gelu_tanh",
        time(&|| gelu_tanh(&a), &a)?,
        time(&|| a.gelu(), &a)?,
    );
    row("relu", time(&|| relu(&a), &a)?, time(&|| a.relu(), &a)?);
    row(
        "swiglu",
        time(&|| swiglu(&a, &u), &a)?,
        time(&|| a.silu()? * u.as_tensor(), &a)?,
    );
    row(
        "geglu",
        time(&|| geglu(&a, &u), &a)?,
        time(&|| a.gelu_erf()? * u.as_tensor(), &a)?,
    );
    Ok(())
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
