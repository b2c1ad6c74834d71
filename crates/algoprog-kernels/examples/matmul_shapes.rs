//! GFLOP/s of the matmul shapes one Transformer training step runs (batch 32
//! × 128 tokens = 4096 rows), next to a square 2048³ product: shows how close
//! the small-k products of a narrow model get to the machine's peak.
//!
//! `cargo run --release -p algoprog-kernels --example matmul_shapes [-- ROWS D V]`
//! (V: the output vocabulary of the cross-entropy's products, default 4096)

use algoprog_kernels::matmul::{matmul, Mat, Threads};
use std::time::Instant;

fn rate(m: usize, n: usize, k: usize, ta: bool, tb: bool) -> f64 {
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
    matmul(&mut c, n, am, ta, bm, tb, 1.0, false, Threads::Pool);
    let reps = ((2e9 / (2.0 * (m * n * k) as f64)) as usize).clamp(3, 200);
    let mut best = f64::MAX;
    for _ in 0..reps {
        let t = Instant::now();
        matmul(&mut c, n, am, ta, bm, tb, 1.0, false, Threads::Pool);
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (m * n * k) as f64 / best / 1e9
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rows = args.first().copied().unwrap_or(4096);
    let d = args.get(1).copied().unwrap_or(128);
    println!(
        "SIMD {:?}, {} threads",
        algoprog_kernels::math::simd(),
        rayon::current_num_threads()
    );
    println!("{:<34} {:>10}", "product", "GFLOP/s");
    println!(
        "{:<34} {:>10.1}",
        "2048×2048·2048×2048",
        rate(2048, 2048, 2048, false, false)
    );
    for (name, out) in [("qkv", 3 * d), ("mlp up", 4 * d), ("out", d)] {
        println!(
            "{:<34} {:>10.1}",
            format!("{name} fwd  x·Wᵀ ({rows}×{d})·({d}×{out})"),
            rate(rows, out, d, false, true)
        );
        println!(
            "{:<34} {:>10.1}",
            format!("{name} ∂x   ∂y·W ({rows}×{out})·({out}×{d})"),
            rate(rows, d, out, false, false)
        );
        println!(
            "{:<34} {:>10.1}",
            format!("{name} ∂W   ∂yᵀ·x ({out}×{rows})·({rows}×{d})"),
            rate(out, d, rows, true, false)
        );
    }
    println!(
        "{:<34} {:>10.1}",
        format!("mlp down fwd ({rows}×{})·({}×{d})", 4 * d, 4 * d),
        rate(rows, d, 4 * d, false, true)
    );
    // the cross-entropy's three products against a V-row output matrix
    let v = args.get(2).copied().unwrap_or(4096);
    println!(
        "{:<34} {:>10.1}",
        format!("logits  H·Wᵀ ({rows}×{d})·({d}×{v})"),
        rate(rows, v, d, false, true)
    );
    println!(
        "{:<34} {:>10.1}",
        format!("ce ∂H    G·W ({rows}×{v})·({v}×{d})"),
        rate(rows, d, v, false, false)
    );
    println!(
        "{:<34} {:>10.1}",
        format!("ce ∂W   Gᵀ·H ({v}×{rows})·({rows}×{d})"),
        rate(v, d, rows, true, false)
    );
}
