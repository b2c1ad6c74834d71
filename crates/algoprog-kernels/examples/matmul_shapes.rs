//! GFLOP/s of the matmul shapes one Transformer training step runs (batch 32
//! × 128 tokens = 4096 rows), next to a square 2048³ product: shows how close
//! the small-k products of a narrow model get to the machine's peak.
//!
//! `cargo run --release -p algoprog-kernels --example matmul_shapes [-- ROWS D V]`
//! (each product on the `gemm` crate and on `rowmm`, timed in alternation)
//! (V: the output vocabulary of the cross-entropy's products, default 4096)

use algoprog_kernels::matmul::{matmul_on, Backend, Mat, Threads};
use std::time::Instant;

/// GFLOP/s of one product on `gemm` and on `rowmm`: the two are timed in
/// alternation (best of each), so a machine whose speed drifts between
/// runs slows both alike.
fn rate(m: usize, n: usize, k: usize, ta: bool, tb: bool) -> (f64, f64) {
    let a = vec![0.5f32; m * k];
    let b = vec![0.25f32; k * n];
    let mut c = vec![0f32; m * n];
    let am = if ta {
        Mat::new(&a, k, m)
    } else {
        Mat::new(&a, m, k)
    };
    let bm = if tb {
        Mat::new(&b, n, k)
    } else {
        Mat::new(&b, k, n)
    };
    let mut run = |be: Backend| {
        let t = Instant::now();
        matmul_on(be, &mut c, n, am, ta, bm, tb, 1.0, false, Threads::Pool);
        t.elapsed().as_secs_f64()
    };
    run(Backend::Gemm);
    run(Backend::RowMm);
    let reps = ((2e9 / (2.0 * (m * n * k) as f64)) as usize).clamp(3, 200);
    let (mut g, mut r) = (f64::MAX, f64::MAX);
    for _ in 0..reps {
        g = g.min(run(Backend::Gemm));
        r = r.min(run(Backend::RowMm));
    }
    let fl = 2.0 * (m * n * k) as f64 / 1e9;
    (fl / g, fl / r)
}

/// One product's row: both kernels' GFLOP/s, their ratio, and the kernel
/// `matmul` picks for the shape.
fn line(name: &str, m: usize, n: usize, k: usize, ta: bool, tb: bool) {
    let (g, r) = rate(m, n, k, ta, tb);
    let auto = if algoprog_kernels::rowmm::supported() && algoprog_kernels::rowmm::suits(m, n, k) {
        "rowmm"
    } else {
        "gemm"
    };
    println!("{name:<44} {g:>7.1} {r:>7.1} {:>6.2}  {auto}", r / g);
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rows = args.first().copied().unwrap_or(4096);
    let d = args.get(1).copied().unwrap_or(128);
    // the cross-entropy's three products against a V-row output matrix
    let v = args.get(2).copied().unwrap_or(4096);
    println!(
        "SIMD {:?}, {} threads; GFLOP/s",
        algoprog_kernels::math::simd(),
        rayon::current_num_threads()
    );
    println!(
        "{:<44} {:>7} {:>7} {:>6}  matmul uses",
        "product", "gemm", "rowmm", "ratio"
    );
    line("2048×2048·2048×2048", 2048, 2048, 2048, false, false);
    for (name, out) in [("qkv", 3 * d), ("mlp up", 4 * d), ("out", d)] {
        line(
            &format!("{name} fwd  x·Wᵀ ({rows}×{d})·({d}×{out})"),
            rows,
            out,
            d,
            false,
            true,
        );
        line(
            &format!("{name} ∂x   ∂y·W ({rows}×{out})·({out}×{d})"),
            rows,
            d,
            out,
            false,
            false,
        );
        line(
            &format!("{name} ∂W   ∂yᵀ·x ({out}×{rows})·({rows}×{d})"),
            out,
            d,
            rows,
            true,
            false,
        );
    }
    line(
        &format!("mlp down fwd ({rows}×{})·({}×{d})", 4 * d, 4 * d),
        rows,
        d,
        4 * d,
        false,
        true,
    );
    // the fused feed-forward block's products on one block of rows (its
    // weights transposed once per call, so B is read as k×n)
    let (br, h) = (algoprog_kernels::ffn::BLOCK_ROWS, 4 * d);
    let ffn = [
        (
            format!("ffn block up   ({br}×{d})·({d}×{h})"),
            br,
            h,
            d,
            false,
        ),
        (
            format!("ffn block up, gated ({br}×{d})·({d}×{})", 2 * h),
            br,
            2 * h,
            d,
            false,
        ),
        (
            format!("ffn block down ({br}×{h})·({h}×{d})"),
            br,
            d,
            h,
            false,
        ),
        (
            format!("ffn block ∂a   ({br}×{d})·({d}×{h})"),
            br,
            h,
            d,
            false,
        ),
        (
            format!("ffn block ∂W   ({h}×{br})·({br}×{d})"),
            h,
            d,
            br,
            true,
        ),
    ];
    for (name, m, n, k, ta) in ffn {
        line(&name, m, n, k, ta, false);
    }
    line(
        &format!("logits  H·Wᵀ ({rows}×{d})·({d}×{v})"),
        rows,
        v,
        d,
        false,
        true,
    );
    line(
        &format!("ce ∂H    G·W ({rows}×{v})·({v}×{d})"),
        rows,
        d,
        v,
        false,
        false,
    );
    line(
        &format!("ce ∂W   Gᵀ·H ({v}×{rows})·({rows}×{d})"),
        v,
        d,
        rows,
        true,
        false,
    );
}
