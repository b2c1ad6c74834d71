//! Chunked cross-entropy over an output matrix.
//!
//! loss = (1/n)·Σᵢ [log Σ_v exp(zᵢᵥ) − z_{i,yᵢ}], z = H·Wᵀ (+ b), for hidden
//! states H (n×d), an output matrix W (V×d, the tied embedding in our
//! models), an optional output bias b (V) and targets y. The n×V logits are
//! never stored: rows are processed in chunks of r rows ([`chunk_rows`]: r·V
//! floats of scratch, at most [`CHUNK_FLOATS`]), and with gradients
//! requested each chunk's softmax becomes its gradient in place, in three
//! sweeps over the chunk: z + b with each row's max, then the exponentials
//! with each row's sum (these two row by row, in parallel), then, column
//! block by column block, the scaling into G with ∂b's column sums:
//!
//! - G = (softmax(z) − onehot(y))·scale for the chunk's rows (scale = the
//!   incoming gradient of the mean, i.e. 1/n);
//! - ∂H\[chunk\] = G·W (r×d), ∂W += Gᵀ·H\[chunk\] (V×d), and with a bias
//!   ∂b += the column sums of G (V).
//!
//! The matmul work is that of the unfused composition (one 2·n·V·d product
//! forward and two backward) but the memory traffic is r·V instead of
//! several n·V arrays, and the scratch chunk is reused across calls.

use crate::math;
use crate::matmul::{matmul, Mat, Threads};
use rayon::prelude::*;
use std::cell::RefCell;

/// Upper bound on the scratch chunk (r·V floats, 64 MB at f32).
pub const CHUNK_FLOATS: usize = 16 << 20;

/// The chunk size aimed at (r·V floats, 4 MB at f32): a chunk of logits
/// the size of a core's L2 cache or two, which the row passes sweep while it
/// is still cached.
pub const TARGET_FLOATS: usize = 1 << 20;

/// Rows per chunk for a vocabulary of `v`: [`TARGET_FLOATS`] / V rows, but
/// at least 256 (fewer make the ∂W product, whose inner dimension is the
/// chunk's rows, run well below the matmul peak) and at most 1024, within
/// [`CHUNK_FLOATS`] and never below 16. Measured with the `kernel_speed`
/// example on one core of an AVX-512 Xeon: at n = 4096, V = 4096, 256 rows
/// took 57–62 ms against 67–73 ms for 1024; at V = 512, 1024 rows stay the
/// fastest.
pub fn chunk_rows(v: usize) -> usize {
    let v = v.max(1);
    (TARGET_FLOATS / v)
        .clamp(256, 1024)
        .min(CHUNK_FLOATS / v)
        .max(16)
}

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Shape of a cross-entropy call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CeShape {
    /// Rows (tokens).
    pub n: usize,
    /// Width of the hidden state.
    pub d: usize,
    /// Vocabulary size (rows of W).
    pub v: usize,
}

/// Gradient outputs: `dh` (n×d), `dw` (V×d) and `db` (V, with a bias) are
/// overwritten.
pub struct CeGrads<'a> {
    pub dh: &'a mut [f32],
    pub dw: &'a mut [f32],
    /// The bias gradient (column sums of the scaled softmax − onehot);
    /// give it exactly when a bias is given.
    pub db: Option<&'a mut [f32]>,
    /// Multiplies every gradient (the incoming gradient of the mean loss, 1/n
    /// for the mean itself).
    pub scale: f32,
}

/// An out-of-range target id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetOutOfRange {
    pub row: usize,
    pub target: u32,
    pub vocab: usize,
}

impl std::fmt::Display for TargetOutOfRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "target {} at row {} is outside the vocabulary of {} tokens",
            self.target, self.row, self.vocab
        )
    }
}

impl std::error::Error for TargetOutOfRange {}

/// Sum over rows of the per-row negative log-likelihood (nats, accumulated in
/// f64) of softmax(H·Wᵀ + b) (b = 0 when `bias` is `None`), and, when
/// `grads` is given, the gradients of `scale ·` that sum.
pub fn cross_entropy(
    shape: CeShape,
    hidden: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    targets: &[u32],
    grads: Option<CeGrads>,
) -> Result<f64, TargetOutOfRange> {
    let r = chunk_rows(shape.v);
    cross_entropy_chunked(shape, hidden, w, bias, targets, grads, r)
}

#[allow(clippy::too_many_arguments)]
/// [`cross_entropy`] with `r` rows per chunk instead of [`chunk_rows`]
/// (benchmarks and tests; the result is the same up to rounding).
pub fn cross_entropy_chunked(
    shape: CeShape,
    hidden: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    targets: &[u32],
    mut grads: Option<CeGrads>,
    r: usize,
) -> Result<f64, TargetOutOfRange> {
    let r = r.max(1);
    let CeShape { n, d, v } = shape;
    assert_eq!(hidden.len(), n * d, "hidden must be n×d");
    assert_eq!(w.len(), v * d, "output matrix must be V×d");
    if let Some(b) = bias {
        assert_eq!(b.len(), v, "output bias must have V entries");
    }
    assert_eq!(targets.len(), n, "one target per row");
    if let Some((row, &target)) = targets.iter().enumerate().find(|(_, &t)| t as usize >= v) {
        return Err(TargetOutOfRange {
            row,
            target,
            vocab: v,
        });
    }
    if let Some(g) = grads.as_mut() {
        assert_eq!(g.dh.len(), n * d, "dh must be n×d");
        assert_eq!(g.dw.len(), v * d, "dw must be V×d");
        assert_eq!(
            g.db.as_ref().map(|db| db.len()),
            bias.map(|_| v),
            "db must be given, with V entries, exactly when a bias is"
        );
    }
    let wm = Mat::new(w, v, d);
    SCRATCH.with(|s| {
        let mut scratch = s.borrow_mut();
        let need = r.min(n.max(1)) * v;
        if scratch.len() < need {
            scratch.resize(need, 0.0);
        }
        let mut total = 0.0f64;
        let mut first = true;
        let mut inv: Vec<f32> = Vec::new();
        for r0 in (0..n).step_by(r) {
            let rows = r.min(n - r0);
            let h = Mat::new(&hidden[r0 * d..(r0 + rows) * d], rows, d);
            let z = &mut scratch[..rows * v];
            // z = H·Wᵀ
            matmul(z, v, h, false, wm, true, 1.0, false, Threads::Pool);
            let tg = &targets[r0..r0 + rows];
            // Pass 1, per row: z += b and its max in one sweep, then
            // z ← exp(z − max) and its sum; the row's loss, and the factor
            // turning the row into its gradient row.
            let want_grads = grads.is_some();
            inv.clear();
            inv.resize(rows, 0.0);
            total += z
                .par_chunks_mut(v)
                .zip(tg.par_iter())
                .zip(inv.par_iter_mut())
                .map(|((row, &y), inv)| {
                    let m = add_max(row, bias.unwrap_or(&[]));
                    let zy = row[y as usize];
                    let s = if want_grads {
                        let s = math::exp_sum_inplace(row, m);
                        *inv = 1.0 / s;
                        s
                    } else {
                        math::sum_exp(row, m)
                    };
                    (s as f64).ln() + (m - zy) as f64
                })
                .sum::<f64>();
            if let Some(g) = grads.as_mut() {
                // Pass 2, over column blocks of every row (so threads share
                // no output): G = (softmax − onehot)·scale in place, and
                // ∂b (+)= its column sums in the same sweep.
                let scale = g.scale;
                // block cb holds the cb-th COL_BLOCK columns of every row
                let nb = v.div_ceil(COL_BLOCK);
                let mut blocks: Vec<Vec<&mut [f32]>> =
                    (0..nb).map(|_| Vec::with_capacity(rows)).collect();
                for row in z.chunks_mut(v) {
                    for (cb, seg) in row.chunks_mut(COL_BLOCK).enumerate() {
                        blocks[cb].push(seg);
                    }
                }
                let dbs: Vec<Option<&mut [f32]>> = match g.db.as_deref_mut() {
                    Some(db) => db.chunks_mut(COL_BLOCK).map(Some).collect(),
                    None => (0..nb).map(|_| None).collect(),
                };
                let inv = &inv[..];
                blocks
                    .par_iter_mut()
                    .zip(dbs)
                    .enumerate()
                    .for_each(|(cb, (segs, db))| {
                        grad_block(segs, cb * COL_BLOCK, inv, tg, scale, db, first)
                    });
                let gm = Mat::new(z, rows, v);
                // ∂H = G·W
                matmul(
                    &mut g.dh[r0 * d..(r0 + rows) * d],
                    d,
                    gm,
                    false,
                    wm,
                    false,
                    1.0,
                    false,
                    Threads::Pool,
                );
                // ∂W (+)= Gᵀ·H
                matmul(g.dw, d, gm, true, h, false, 1.0, !first, Threads::Pool);
            }
            first = false;
        }
        if first {
            if let Some(g) = grads.as_mut() {
                g.dw.fill(0.0);
                if let Some(db) = g.db.as_deref_mut() {
                    db.fill(0.0);
                }
            }
        }
        Ok(total)
    })
}

/// Columns per task of the gradient pass (a 1 KiB segment of every row).
const COL_BLOCK: usize = 256;

/// z += b (b empty: no bias); returns max z.
#[inline(always)]
fn add_max_impl(z: &mut [f32], b: &[f32]) -> f32 {
    if !b.is_empty() {
        for (x, b) in z.iter_mut().zip(b) {
            *x += b;
        }
    }
    math::max_impl(z)
}

crate::simd_dispatch!(
    /// z += b (b empty: no bias); returns max z.
    fn add_max(z: &mut [f32], b: &[f32]) -> f32 => add_max_impl
);

/// The gradient pass over one column block: `segs` holds each row's
/// segment of the block (the row's exponentials, columns c0..), which
/// becomes (softmax − onehot)·scale; `db` gets the segments' sum
/// (overwritten when `first`, else added to).
#[inline(always)]
fn grad_block_impl(
    segs: &mut [&mut [f32]],
    c0: usize,
    inv: &[f32],
    targets: &[u32],
    scale: f32,
    mut db: Option<&mut [f32]>,
    first: bool,
) {
    if first {
        if let Some(db) = db.as_deref_mut() {
            db.fill(0.0);
        }
    }
    for ((row, &inv), &y) in segs.iter_mut().zip(inv).zip(targets) {
        let k = scale * inv;
        for x in row.iter_mut() {
            *x *= k;
        }
        if let Some(x) = (y as usize).checked_sub(c0).and_then(|j| row.get_mut(j)) {
            *x -= scale;
        }
        if let Some(db) = db.as_deref_mut() {
            for (a, x) in db.iter_mut().zip(row.iter()) {
                *a += x;
            }
        }
    }
}

crate::simd_dispatch!(fn grad_block(segs: &mut [&mut [f32]], c0: usize, inv: &[f32], targets: &[u32], scale: f32, db: Option<&mut [f32]>, first: bool) => grad_block_impl);

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn data(n: usize, d: usize, v: usize, seed: u64) -> (Vec<f32>, Vec<f32>, Vec<u32>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let h = (0..n * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let w = (0..v * d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let t = (0..n).map(|_| rng.random_range(0..v as u32)).collect();
        (h, w, t)
    }

    /// Naive f64: mean loss, ∂H, ∂W of the mean.
    fn naive(
        h: &[f32],
        w: &[f32],
        t: &[u32],
        n: usize,
        d: usize,
        v: usize,
    ) -> (f64, Vec<f64>, Vec<f64>) {
        let mut loss = 0.0;
        let mut dh = vec![0.0; n * d];
        let mut dw = vec![0.0; v * d];
        for i in 0..n {
            let z: Vec<f64> = (0..v)
                .map(|j| {
                    (0..d)
                        .map(|p| h[i * d + p] as f64 * w[j * d + p] as f64)
                        .sum()
                })
                .collect();
            let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = z.iter().map(|x| (x - m).exp()).sum();
            loss += s.ln() + m - z[t[i] as usize];
            for j in 0..v {
                let g =
                    ((z[j] - m).exp() / s - if j == t[i] as usize { 1.0 } else { 0.0 }) / n as f64;
                for p in 0..d {
                    dh[i * d + p] += g * w[j * d + p] as f64;
                    dw[j * d + p] += g * h[i * d + p] as f64;
                }
            }
        }
        (loss / n as f64, dh, dw)
    }

    fn close(a: &[f32], b: &[f64], tol: f64, what: &str) {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (*x as f64 - y).abs() <= tol * (1.0 + y.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }

    #[test]
    fn matches_naive_with_several_chunks() {
        // V = 2^20 / 16 … force multi-chunk with a large vocabulary is slow
        // in the naive check, so check the chunk logic with n > chunk_rows.
        let (n, d, v) = (1100, 8, 37);
        assert!(n > chunk_rows(v), "test needs more rows than one chunk");
        let (h, w, t) = data(n, d, v, 1);
        let (want, wdh, wdw) = naive(&h, &w, &t, n, d, v);
        let mut dh = vec![f32::NAN; n * d];
        let mut dw = vec![f32::NAN; v * d];
        let sum = cross_entropy(
            CeShape { n, d, v },
            &h,
            &w,
            None,
            &t,
            Some(CeGrads {
                dh: &mut dh,
                dw: &mut dw,
                db: None,
                scale: 1.0 / n as f32,
            }),
        )
        .unwrap();
        assert!(
            (sum / n as f64 - want).abs() < 1e-5 * want,
            "{} vs {want}",
            sum / n as f64
        );
        close(&dh, &wdh, 1e-5, "dh");
        close(&dw, &wdw, 1e-5, "dw");
        // forward only gives the same loss
        let only = cross_entropy(CeShape { n, d, v }, &h, &w, None, &t, None).unwrap();
        assert!((only - sum).abs() < 1e-9 * sum);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (n, d, v) = (5, 4, 11);
        let (h, w, t) = data(n, d, v, 2);
        let mut dh = vec![0.0; n * d];
        let mut dw = vec![0.0; v * d];
        let shape = CeShape { n, d, v };
        cross_entropy(
            shape,
            &h,
            &w,
            None,
            &t,
            Some(CeGrads {
                dh: &mut dh,
                dw: &mut dw,
                db: None,
                scale: 1.0,
            }),
        )
        .unwrap();
        let eps = 1e-2f32;
        let f = |h: &[f32], w: &[f32]| cross_entropy(shape, h, w, None, &t, None).unwrap();
        for i in 0..n * d {
            let (mut hp, mut hm) = (h.clone(), h.clone());
            hp[i] += eps;
            hm[i] -= eps;
            let fd = (f(&hp, &w) - f(&hm, &w)) / (2.0 * eps as f64);
            assert!(
                (fd - dh[i] as f64).abs() < 2e-3,
                "dh[{i}]: fd {fd} vs {}",
                dh[i]
            );
        }
        for i in 0..v * d {
            let (mut wp, mut wm) = (w.clone(), w.clone());
            wp[i] += eps;
            wm[i] -= eps;
            let fd = (f(&h, &wp) - f(&h, &wm)) / (2.0 * eps as f64);
            assert!(
                (fd - dw[i] as f64).abs() < 2e-3,
                "dw[{i}]: fd {fd} vs {}",
                dw[i]
            );
        }
    }

    #[test]
    fn large_logits_do_not_overflow() {
        // logits around ±1e4: a naive exp overflows, the max shift does not
        let (n, d, v) = (3, 2, 5);
        let h = vec![100.0f32; n * d];
        let mut w = vec![0.0f32; v * d];
        for j in 0..v {
            w[j * d] = 50.0 * j as f32;
        }
        let t = vec![4u32, 0, 2];
        let sum = cross_entropy(CeShape { n, d, v }, &h, &w, None, &t, None).unwrap();
        // z_j = 5000·j: row with target 4 costs ≈ 0, target 0 ≈ 20000, target 2 ≈ 10000
        assert!((sum - 30000.0).abs() < 1.0, "{sum}");
    }

    #[test]
    fn out_of_range_target_is_an_error() {
        let (h, w, _) = data(2, 3, 4, 3);
        let e =
            cross_entropy(CeShape { n: 2, d: 3, v: 4 }, &h, &w, None, &[1, 4], None).unwrap_err();
        assert_eq!(
            e,
            TargetOutOfRange {
                row: 1,
                target: 4,
                vocab: 4
            }
        );
        assert!(e.to_string().contains("target 4 at row 1"));
    }

    #[test]
    fn empty_batch_is_zero_with_zero_weight_gradient() {
        let (_, w, _) = data(0, 3, 4, 4);
        let mut dw = vec![f32::NAN; 12];
        let s = cross_entropy(
            CeShape { n: 0, d: 3, v: 4 },
            &[],
            &w,
            None,
            &[],
            Some(CeGrads {
                dh: &mut [],
                dw: &mut dw,
                db: None,
                scale: 1.0,
            }),
        )
        .unwrap();
        assert_eq!(s, 0.0);
        assert!(dw.iter().all(|&x| x == 0.0));
    }

    /// With a bias b, the loss and gradients equal those of the unbiased
    /// kernel on the augmented inputs [H, 1] and [W, b] (logits H·Wᵀ + 1·bᵀ),
    /// over several chunks; ∂b is the last column of ∂[W, b].
    #[test]
    fn bias_equals_an_augmented_column() {
        let (n, d, v) = (1100, 8, 37);
        assert!(n > chunk_rows(v));
        let (h, w, t) = data(n, d, v, 5);
        let b: Vec<f32> = (0..v).map(|j| (j as f32 * 0.37).sin()).collect();
        let (mut dh, mut dw, mut db) = (
            vec![f32::NAN; n * d],
            vec![f32::NAN; v * d],
            vec![f32::NAN; v],
        );
        let scale = 1.0 / n as f32;
        let sum = cross_entropy(
            CeShape { n, d, v },
            &h,
            &w,
            Some(&b),
            &t,
            Some(CeGrads {
                dh: &mut dh,
                dw: &mut dw,
                db: Some(&mut db),
                scale,
            }),
        )
        .unwrap();
        let da = d + 1;
        let ha: Vec<f32> = h
            .chunks(d)
            .flat_map(|r| r.iter().copied().chain([1.0]))
            .collect();
        let wa: Vec<f32> = w
            .chunks(d)
            .zip(&b)
            .flat_map(|(r, &bj)| r.iter().copied().chain([bj]))
            .collect();
        let (mut dha, mut dwa) = (vec![0.0; n * da], vec![0.0; v * da]);
        let want = cross_entropy(
            CeShape { n, d: da, v },
            &ha,
            &wa,
            None,
            &t,
            Some(CeGrads {
                dh: &mut dha,
                dw: &mut dwa,
                db: None,
                scale,
            }),
        )
        .unwrap();
        assert!((sum - want).abs() < 1e-9 * want, "{sum} vs {want}");
        let cols = |m: &[f32], keep: &dyn Fn(usize) -> bool| -> Vec<f64> {
            m.iter()
                .enumerate()
                .filter(|(i, _)| keep(i % da))
                .map(|(_, &x)| x as f64)
                .collect()
        };
        close(&dh, &cols(&dha, &|c| c < d), 1e-6, "dh");
        close(&dw, &cols(&dwa, &|c| c < d), 1e-6, "dw");
        close(&db, &cols(&dwa, &|c| c == d), 1e-6, "db");
        // and the bias matters: ∂b is not all zero and the loss moved
        assert!(db.iter().any(|x| x.abs() > 1e-3));
        let plain = cross_entropy(CeShape { n, d, v }, &h, &w, None, &t, None).unwrap();
        assert!((plain - sum).abs() > 1.0, "{plain} vs {sum}");
    }

    /// Several chunks of rows and several column blocks of the gradient pass
    /// (the last one partial), with a bias: loss, ∂H, ∂W and ∂b against the
    /// naive f64 kernel on the augmented inputs [H, 1], [W, b].
    #[test]
    fn chunks_and_column_blocks_match_naive() {
        let (n, d, v, r) = (300, 6, 2 * COL_BLOCK + 188, 128);
        let (h, w, t) = data(n, d, v, 7);
        let b: Vec<f32> = (0..v).map(|j| (j as f32 * 0.11).cos()).collect();
        let mut dh = vec![f32::NAN; n * d];
        let mut dw = vec![f32::NAN; v * d];
        let mut db = vec![f32::NAN; v];
        let grads = CeGrads {
            dh: &mut dh,
            dw: &mut dw,
            db: Some(&mut db),
            scale: 1.0 / n as f32,
        };
        let shape = CeShape { n, d, v };
        let sum = cross_entropy_chunked(shape, &h, &w, Some(&b), &t, Some(grads), r).unwrap();
        let ha: Vec<f32> = h
            .chunks(d)
            .flat_map(|x| x.iter().copied().chain([1.0]))
            .collect();
        let wa: Vec<f32> = (w.chunks(d).zip(&b))
            .flat_map(|(x, &bj)| x.iter().copied().chain([bj]))
            .collect();
        let (want, wdh, wdw) = naive(&ha, &wa, &t, n, d + 1, v);
        assert!(
            (sum / n as f64 - want).abs() < 1e-5 * want,
            "{sum} vs {want}"
        );
        let dh_want: Vec<f64> = wdh.chunks(d + 1).flat_map(|x| x[..d].to_vec()).collect();
        let dw_want: Vec<f64> = wdw.chunks(d + 1).flat_map(|x| x[..d].to_vec()).collect();
        let db_want: Vec<f64> = wdw.chunks(d + 1).map(|x| x[d]).collect();
        close(&dh, &dh_want, 1e-5, "dh");
        close(&dw, &dw_want, 1e-5, "dw");
        close(&db, &db_want, 1e-5, "db");
    }

    /// ∂b against central differences of the summed loss.
    #[test]
    fn bias_gradient_matches_finite_differences() {
        let (n, d, v) = (6, 3, 9);
        let (h, w, t) = data(n, d, v, 6);
        let b: Vec<f32> = (0..v).map(|j| 0.5 - 0.1 * j as f32).collect();
        let (mut dh, mut dw, mut db) = (vec![0.0; n * d], vec![0.0; v * d], vec![0.0; v]);
        let shape = CeShape { n, d, v };
        cross_entropy(
            shape,
            &h,
            &w,
            Some(&b),
            &t,
            Some(CeGrads {
                dh: &mut dh,
                dw: &mut dw,
                db: Some(&mut db),
                scale: 1.0,
            }),
        )
        .unwrap();
        let eps = 1e-2f32;
        let f = |b: &[f32]| cross_entropy(shape, &h, &w, Some(b), &t, None).unwrap();
        for j in 0..v {
            let (mut bp, mut bm) = (b.clone(), b.clone());
            bp[j] += eps;
            bm[j] -= eps;
            let fd = (f(&bp) - f(&bm)) / (2.0 * eps as f64);
            assert!(
                (fd - db[j] as f64).abs() < 2e-3,
                "db[{j}]: fd {fd} vs {}",
                db[j]
            );
        }
        // Σ_j ∂b_j = Σ rows (Σ softmax − 1) = 0
        assert!(db.iter().map(|&x| x as f64).sum::<f64>().abs() < 1e-5);
    }
}
