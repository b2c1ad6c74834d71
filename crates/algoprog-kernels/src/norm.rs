//! LayerNorm and RMSNorm over the last dimension of a row-major
//! (rows × d) slice, forward and backward.
//!
//! LayerNorm, per row x (length d), gain g, bias b:
//!
//! ```text
//! μ = Σx/d,  σ² = Σ(x − μ)²/d (biased),  r = 1/√(σ² + ε),  x̂ = (x − μ)·r
//! y = x̂·g + b
//! ∂x = r·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)),  ĝ = ∂y·g
//! ∂g = Σ_rows ∂y·x̂,  ∂b = Σ_rows ∂y
//! ```
//!
//! RMSNorm: r = 1/√(Σx²/d + ε), x̂ = x·r, y = x̂·g,
//! ∂x = r·(ĝ − x̂·mean(ĝ·x̂)), ∂g = Σ_rows ∂y·x̂.
//!
//! The forward saves μ and r per row (RMSNorm: r) for the backward. Rows
//! are processed in chunks of [`CHUNK_ROWS`] per rayon task; the gain and
//! bias gradients are summed per chunk and the chunk sums added in chunk
//! order, so results do not depend on the number of threads. Row sums use
//! 16 independent f32 accumulators (vectorisable, same result at every SIMD
//! width).

// The lane loops index fixed-size arrays on purpose (they vectorise).
#![allow(clippy::needless_range_loop)]

use crate::math::{lanes_fold, lanes_fold2, sum_pairwise};
use rayon::prelude::*;

/// Rows per rayon task.
pub const CHUNK_ROWS: usize = 64;

/// Σ x in 16 lanes added pairwise, then the tail.
#[inline(always)]
fn sum(x: &[f32]) -> f32 {
    let (acc, rest) = lanes_fold(x, 0.0, |s, v| s + v);
    sum_pairwise(acc) + rest.iter().fold(0f32, |t, &v| t + v)
}

/// Σ (x − μ)², same accumulation order as [`sum`].
#[inline(always)]
fn sum_sq_centered(x: &[f32], mu: f32) -> f32 {
    let (acc, rest) = lanes_fold(x, 0.0, |s, v| {
        let d = v - mu;
        s + d * d
    });
    sum_pairwise(acc) + rest.iter().fold(0f32, |t, &v| t + (v - mu) * (v - mu))
}

/// Σ a·b, same accumulation order as [`sum`].
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (acc, ra, rb) = lanes_fold2(a, b, 0.0, |s, x, y| s + x * y);
    sum_pairwise(acc) + ra.iter().zip(rb).fold(0f32, |t, (&u, &v)| t + u * v)
}

// ---- per-chunk bodies ----

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn ln_fwd_body(
    x: &[f32],
    g: &[f32],
    b: &[f32],
    eps: f32,
    y: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
) {
    let d = g.len();
    let inv_d = 1.0 / d as f32;
    for (((xr, yr), m), rs) in x
        .chunks_exact(d)
        .zip(y.chunks_exact_mut(d))
        .zip(mean.iter_mut())
        .zip(rstd.iter_mut())
    {
        let mu = sum(xr) * inv_d;
        let var = sum_sq_centered(xr, mu) * inv_d;
        let r = 1.0 / (var + eps).sqrt();
        for (((y, &x), &g), &b) in yr.iter_mut().zip(xr).zip(g).zip(b) {
            *y = (x - mu) * r * g + b;
        }
        *m = mu;
        *rs = r;
    }
}

/// One chunk of the LayerNorm backward; adds this chunk's ∂g, ∂b into `dg`, `db`
/// (`scratch` holds ĝ and x̂ for one row: 2d).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn ln_bwd_body(
    x: &[f32],
    g: &[f32],
    mean: &[f32],
    rstd: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dg: &mut [f32],
    db: &mut [f32],
    scratch: &mut [f32],
) {
    let d = g.len();
    let inv_d = 1.0 / d as f32;
    let (gh, xh) = scratch.split_at_mut(d);
    for ((((xr, dyr), dxr), &mu), &r) in x
        .chunks_exact(d)
        .zip(dy.chunks_exact(d))
        .zip(dx.chunks_exact_mut(d))
        .zip(mean)
        .zip(rstd)
    {
        for (((((gh, xh), &x), &dy), &g), (dg, db)) in gh
            .iter_mut()
            .zip(xh.iter_mut())
            .zip(xr)
            .zip(dyr)
            .zip(g)
            .zip(dg.iter_mut().zip(db.iter_mut()))
        {
            let xn = (x - mu) * r;
            *xh = xn;
            *gh = dy * g;
            *dg += dy * xn;
            *db += dy;
        }
        let m1 = sum(gh) * inv_d;
        let m2 = dot(gh, xh) * inv_d;
        for ((o, &gh), &xh) in dxr.iter_mut().zip(gh.iter()).zip(xh.iter()) {
            *o = r * (gh - m1 - xh * m2);
        }
    }
}

#[inline(always)]
fn rms_fwd_body(x: &[f32], g: &[f32], eps: f32, y: &mut [f32], rstd: &mut [f32]) {
    let d = g.len();
    let inv_d = 1.0 / d as f32;
    for ((xr, yr), rs) in x
        .chunks_exact(d)
        .zip(y.chunks_exact_mut(d))
        .zip(rstd.iter_mut())
    {
        let ms = dot(xr, xr) * inv_d;
        let r = 1.0 / (ms + eps).sqrt();
        for ((y, &x), &g) in yr.iter_mut().zip(xr).zip(g) {
            *y = x * r * g;
        }
        *rs = r;
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn rms_bwd_body(
    x: &[f32],
    g: &[f32],
    rstd: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dg: &mut [f32],
    scratch: &mut [f32],
) {
    let d = g.len();
    let inv_d = 1.0 / d as f32;
    let (gh, xh) = scratch.split_at_mut(d);
    for (((xr, dyr), dxr), &r) in x
        .chunks_exact(d)
        .zip(dy.chunks_exact(d))
        .zip(dx.chunks_exact_mut(d))
        .zip(rstd)
    {
        for ((((gh, xh), &x), &dy), (&g, dg)) in gh
            .iter_mut()
            .zip(xh.iter_mut())
            .zip(xr)
            .zip(dyr)
            .zip(g.iter().zip(dg.iter_mut()))
        {
            let xn = x * r;
            *xh = xn;
            *gh = dy * g;
            *dg += dy * xn;
        }
        let m2 = dot(gh, xh) * inv_d;
        for ((o, &gh), &xh) in dxr.iter_mut().zip(gh.iter()).zip(xh.iter()) {
            *o = r * (gh - xh * m2);
        }
    }
}

crate::simd_dispatch!(fn ln_fwd_chunk(x: &[f32], g: &[f32], b: &[f32], eps: f32, y: &mut [f32], mean: &mut [f32], rstd: &mut [f32]) => ln_fwd_body);
crate::simd_dispatch!(fn ln_bwd_chunk(x: &[f32], g: &[f32], mean: &[f32], rstd: &[f32], dy: &[f32], dx: &mut [f32], dg: &mut [f32], db: &mut [f32], scratch: &mut [f32]) => ln_bwd_body);
crate::simd_dispatch!(fn rms_fwd_chunk(x: &[f32], g: &[f32], eps: f32, y: &mut [f32], rstd: &mut [f32]) => rms_fwd_body);
crate::simd_dispatch!(fn rms_bwd_chunk(x: &[f32], g: &[f32], rstd: &[f32], dy: &[f32], dx: &mut [f32], dg: &mut [f32], scratch: &mut [f32]) => rms_bwd_body);

fn check_shapes(what: &str, x: usize, d: usize, others: &[(usize, usize)]) -> usize {
    assert!(d > 0, "{what}: d must be positive");
    assert_eq!(
        x % d,
        0,
        "{what}: input length {x} is not a multiple of d = {d}"
    );
    for &(got, want) in others {
        assert_eq!(
            got, want,
            "{what}: a slice has length {got}, expected {want}"
        );
    }
    x / d
}

/// Adds the per-chunk partial sums `parts` (each of length `d`, in chunk
/// order) into `out` (overwritten).
fn sum_parts(parts: &[Vec<f32>], out: &mut [f32]) {
    out.fill(0.0);
    for p in parts {
        for (o, v) in out.iter_mut().zip(p) {
            *o += v;
        }
    }
}

/// LayerNorm forward over rows of length d = gain.len(): y, and per row the
/// mean and 1/√(σ² + ε) (`mean`, `rstd`: length rows) for the backward.
pub fn layer_norm_fwd(
    x: &[f32],
    gain: &[f32],
    bias: &[f32],
    eps: f32,
    y: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
) {
    let d = gain.len();
    let rows = check_shapes(
        "layer_norm",
        x.len(),
        d,
        &[(bias.len(), d), (y.len(), x.len())],
    );
    check_shapes(
        "layer_norm",
        x.len(),
        d,
        &[(mean.len(), rows), (rstd.len(), rows)],
    );
    let c = CHUNK_ROWS * d;
    y.par_chunks_mut(c)
        .zip(x.par_chunks(c))
        .zip(
            mean.par_chunks_mut(CHUNK_ROWS)
                .zip(rstd.par_chunks_mut(CHUNK_ROWS)),
        )
        .for_each(|((y, x), (m, r))| ln_fwd_chunk(x, gain, bias, eps, y, m, r));
}

/// LayerNorm backward from the forward's saved `mean` and `rstd`: writes
/// dx (like x), dgain and dbias (length d; overwritten).
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_bwd(
    x: &[f32],
    gain: &[f32],
    mean: &[f32],
    rstd: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dgain: &mut [f32],
    dbias: &mut [f32],
) {
    let d = gain.len();
    let rows = check_shapes(
        "layer_norm backward",
        x.len(),
        d,
        &[(dy.len(), x.len()), (dx.len(), x.len())],
    );
    check_shapes(
        "layer_norm backward",
        x.len(),
        d,
        &[
            (mean.len(), rows),
            (rstd.len(), rows),
            (dgain.len(), d),
            (dbias.len(), d),
        ],
    );
    let c = CHUNK_ROWS * d;
    let parts: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(c)
        .zip(x.par_chunks(c).zip(dy.par_chunks(c)))
        .zip(mean.par_chunks(CHUNK_ROWS).zip(rstd.par_chunks(CHUNK_ROWS)))
        .map(|((dx, (x, dy)), (m, r))| {
            let (mut dg, mut db, mut scratch) = (vec![0f32; d], vec![0f32; d], vec![0f32; 2 * d]);
            ln_bwd_chunk(x, gain, m, r, dy, dx, &mut dg, &mut db, &mut scratch);
            (dg, db)
        })
        .collect();
    let (dgs, dbs): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
    sum_parts(&dgs, dgain);
    sum_parts(&dbs, dbias);
}

/// RMSNorm forward over rows of length d = gain.len(): y and per row
/// 1/√(mean(x²) + ε) (`rstd`, length rows).
pub fn rms_norm_fwd(x: &[f32], gain: &[f32], eps: f32, y: &mut [f32], rstd: &mut [f32]) {
    let d = gain.len();
    let rows = check_shapes("rms_norm", x.len(), d, &[(y.len(), x.len())]);
    check_shapes("rms_norm", x.len(), d, &[(rstd.len(), rows)]);
    let c = CHUNK_ROWS * d;
    y.par_chunks_mut(c)
        .zip(x.par_chunks(c))
        .zip(rstd.par_chunks_mut(CHUNK_ROWS))
        .for_each(|((y, x), r)| rms_fwd_chunk(x, gain, eps, y, r));
}

/// RMSNorm backward from the forward's saved `rstd`: writes dx (like x) and
/// dgain (length d; overwritten).
pub fn rms_norm_bwd(
    x: &[f32],
    gain: &[f32],
    rstd: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dgain: &mut [f32],
) {
    let d = gain.len();
    let rows = check_shapes(
        "rms_norm backward",
        x.len(),
        d,
        &[(dy.len(), x.len()), (dx.len(), x.len())],
    );
    check_shapes(
        "rms_norm backward",
        x.len(),
        d,
        &[(rstd.len(), rows), (dgain.len(), d)],
    );
    let c = CHUNK_ROWS * d;
    let parts: Vec<Vec<f32>> = dx
        .par_chunks_mut(c)
        .zip(x.par_chunks(c).zip(dy.par_chunks(c)))
        .zip(rstd.par_chunks(CHUNK_ROWS))
        .map(|((dx, (x, dy)), r)| {
            let (mut dg, mut scratch) = (vec![0f32; d], vec![0f32; 2 * d]);
            rms_bwd_chunk(x, gain, r, dy, dx, &mut dg, &mut scratch);
            dg
        })
        .collect();
    sum_parts(&parts, dgain);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn inputs(n: usize, lo: f32, hi: f32, seed: u64) -> Vec<f32> {
        let mut r = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| r.random_range(lo..hi)).collect()
    }

    /// Naive f64 forward: (y, per-row mean, per-row rstd); `bias` None is RMSNorm.
    fn naive_fwd(x: &[f32], g: &[f32], b: Option<&[f32]>, eps: f64) -> Vec<f64> {
        let d = g.len();
        let mut y = Vec::with_capacity(x.len());
        for row in x.chunks(d) {
            let row: Vec<f64> = row.iter().map(|&v| v as f64).collect();
            let (mu, ms) = match b {
                Some(_) => {
                    let mu = row.iter().sum::<f64>() / d as f64;
                    (
                        mu,
                        row.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / d as f64,
                    )
                }
                None => (0.0, row.iter().map(|v| v * v).sum::<f64>() / d as f64),
            };
            let r = 1.0 / (ms + eps).sqrt();
            for j in 0..d {
                y.push((row[j] - mu) * r * g[j] as f64 + b.map_or(0.0, |b| b[j] as f64));
            }
        }
        y
    }

    /// Naive f64 backward by the chain rule written out element by element:
    /// ∂x_i = Σ_j ∂y_j·g_j·∂x̂_j/∂x_i with the full Jacobian of x̂.
    fn naive_bwd(
        x: &[f32],
        g: &[f32],
        layer: bool,
        eps: f64,
        dy: &[f32],
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let d = g.len();
        let mut dx = vec![0.0; x.len()];
        let (mut dg, mut db) = (vec![0.0; d], vec![0.0; d]);
        for (ri, row) in x.chunks(d).enumerate() {
            let row: Vec<f64> = row.iter().map(|&v| v as f64).collect();
            let dyr: Vec<f64> = dy[ri * d..(ri + 1) * d].iter().map(|&v| v as f64).collect();
            let mu = if layer {
                row.iter().sum::<f64>() / d as f64
            } else {
                0.0
            };
            let ms = row.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / d as f64;
            let r = 1.0 / (ms + eps).sqrt();
            let xh: Vec<f64> = row.iter().map(|v| (v - mu) * r).collect();
            for j in 0..d {
                dg[j] += dyr[j] * xh[j];
                db[j] += dyr[j];
            }
            for i in 0..d {
                let mut s = 0.0;
                for j in 0..d {
                    // ∂x̂_j/∂x_i = r(δ_ij − [layer]/d) − x̂_j·r·x̂_i/d
                    let delta = if i == j { 1.0 } else { 0.0 };
                    let center = if layer { 1.0 / d as f64 } else { 0.0 };
                    let jac = r * (delta - center) - xh[j] * r * xh[i] / d as f64;
                    s += dyr[j] * g[j] as f64 * jac;
                }
                dx[ri * d + i] = s;
            }
        }
        (dx, dg, db)
    }

    fn max_err(got: &[f32], want: &[f64]) -> f64 {
        let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
        assert!(scale > 1e-3, "degenerate reference");
        got.iter()
            .zip(want)
            .map(|(&a, &b)| (a as f64 - b).abs() / (b.abs() + 1e-2 * scale))
            .fold(0.0, crate::max_or_nan)
    }

    /// rows not a multiple of CHUNK_ROWS, d not a multiple of the lane count.
    const SHAPES: [(usize, usize); 3] = [(3 * CHUNK_ROWS + 5, 37), (70, 64), (2, 3)];

    #[test]
    fn layer_norm_matches_naive_f64() {
        for (rows, d) in SHAPES {
            let x = inputs(rows * d, -3.0, 5.0, 1);
            let g = inputs(d, 0.5, 1.5, 2);
            let b = inputs(d, -1.0, 1.0, 3);
            let dy = inputs(rows * d, -1.0, 1.0, 4);
            let eps = 1e-5;
            let (mut y, mut m, mut r) = (
                vec![f32::NAN; rows * d],
                vec![f32::NAN; rows],
                vec![f32::NAN; rows],
            );
            layer_norm_fwd(&x, &g, &b, eps as f32, &mut y, &mut m, &mut r);
            assert!(
                max_err(&y, &naive_fwd(&x, &g, Some(&b), eps)) < 1e-5,
                "y ({rows}, {d})"
            );
            let (mut dx, mut dg, mut db) = (
                vec![f32::NAN; rows * d],
                vec![f32::NAN; d],
                vec![f32::NAN; d],
            );
            layer_norm_bwd(&x, &g, &m, &r, &dy, &mut dx, &mut dg, &mut db);
            let (wx, wg, wb) = naive_bwd(&x, &g, true, eps, &dy);
            assert!(
                max_err(&dx, &wx) < 1e-4,
                "dx ({rows}, {d}): {}",
                max_err(&dx, &wx)
            );
            assert!(max_err(&dg, &wg) < 1e-5, "dgain ({rows}, {d})");
            assert!(max_err(&db, &wb) < 1e-5, "dbias ({rows}, {d})");
        }
    }

    #[test]
    fn rms_norm_matches_naive_f64() {
        for (rows, d) in SHAPES {
            let x = inputs(rows * d, -3.0, 5.0, 5);
            let g = inputs(d, 0.5, 1.5, 6);
            let dy = inputs(rows * d, -1.0, 1.0, 7);
            let eps = 1e-5;
            let (mut y, mut r) = (vec![f32::NAN; rows * d], vec![f32::NAN; rows]);
            rms_norm_fwd(&x, &g, eps as f32, &mut y, &mut r);
            assert!(
                max_err(&y, &naive_fwd(&x, &g, None, eps)) < 1e-5,
                "y ({rows}, {d})"
            );
            let (mut dx, mut dg) = (vec![f32::NAN; rows * d], vec![f32::NAN; d]);
            rms_norm_bwd(&x, &g, &r, &dy, &mut dx, &mut dg);
            let (wx, wg, _) = naive_bwd(&x, &g, false, eps, &dy);
            assert!(
                max_err(&dx, &wx) < 1e-4,
                "dx ({rows}, {d}): {}",
                max_err(&dx, &wx)
            );
            assert!(max_err(&dg, &wg) < 1e-5, "dgain ({rows}, {d})");
        }
    }

    /// Central differences of the naive f64 forward (L = Σ w·y) check the naive
    /// backward that the kernels are compared with, and the kernels directly.
    #[test]
    fn backward_matches_finite_differences() {
        let (rows, d) = (3, 19);
        let x = inputs(rows * d, -2.0, 3.0, 8);
        let g = inputs(d, 0.5, 1.5, 9);
        let b = inputs(d, -1.0, 1.0, 10);
        let w = inputs(rows * d, -1.0, 1.0, 11);
        let eps = 1e-5;
        for layer in [true, false] {
            let loss = |x: &[f32], g: &[f32], b: &[f32]| -> f64 {
                let y = naive_fwd(x, g, if layer { Some(b) } else { None }, eps);
                y.iter().zip(&w).map(|(y, &w)| y * w as f64).sum()
            };
            let (mut dx, mut dg, mut db) = (vec![0f32; rows * d], vec![0f32; d], vec![0f32; d]);
            let mut r = vec![0f32; rows];
            let mut y = vec![0f32; rows * d];
            if layer {
                let mut m = vec![0f32; rows];
                layer_norm_fwd(&x, &g, &b, eps as f32, &mut y, &mut m, &mut r);
                layer_norm_bwd(&x, &g, &m, &r, &w, &mut dx, &mut dg, &mut db);
            } else {
                rms_norm_fwd(&x, &g, eps as f32, &mut y, &mut r);
                rms_norm_bwd(&x, &g, &r, &w, &mut dx, &mut dg);
            }
            // perturb in f64 through f32 inputs: use h large enough for f32 storage
            let h = 1e-3f32;
            let fd = |v: &mut Vec<f32>, i: usize, which: u8| -> f64 {
                let orig = v[i];
                v[i] = orig + h;
                let eval = |v: &Vec<f32>| match which {
                    0 => loss(v, &g, &b),
                    1 => loss(&x, v, &b),
                    _ => loss(&x, &g, v),
                };
                let lp = eval(v);
                v[i] = orig - h;
                let lm = eval(v);
                v[i] = orig;
                (lp - lm) / ((orig + h) as f64 - (orig - h) as f64)
            };
            let check = |name: &str, an: &[f32], v: &[f32], which: u8| {
                let mut v = v.to_vec();
                let fds: Vec<f64> = (0..v.len()).map(|i| fd(&mut v, i, which)).collect();
                let e = max_err(an, &fds);
                assert!(
                    e < 1e-3,
                    "{} {name}: error {e}",
                    if layer { "layer_norm" } else { "rms_norm" }
                );
            };
            check("dx", &dx, &x, 0);
            check("dgain", &dg, &g, 1);
            if layer {
                check("dbias", &db, &b, 2);
            }
        }
    }

    #[test]
    fn gain_gradients_do_not_depend_on_thread_count() {
        let (rows, d) = (40 * CHUNK_ROWS + 3, 96);
        let x = inputs(rows * d, -3.0, 3.0, 12);
        let g = inputs(d, 0.5, 1.5, 13);
        let dy = inputs(rows * d, -1.0, 1.0, 14);
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let mut r = vec![0f32; rows];
                let mut y = vec![0f32; rows * d];
                rms_norm_fwd(&x, &g, 1e-5, &mut y, &mut r);
                let (mut dx, mut dg) = (vec![0f32; rows * d], vec![0f32; d]);
                rms_norm_bwd(&x, &g, &r, &dy, &mut dx, &mut dg);
                (y, dx, dg)
            })
        };
        let a = run(1);
        let b = run(3);
        assert!(a.2.iter().any(|&v| v.abs() > 1.0));
        assert_eq!(a, b);
    }
}
