//! A linear layer y = x·Wᵀ + b on row-major slices, with its backward.
//!
//! Forward: one matmul, the bias added row by row. Backward: ∂x = ∂y·W,
//! ∂W = ∂yᵀ·x, ∂b = Σ_rows ∂y, with no transposed copies (the matmul reads
//! its operands transposed in place). The bias gradient is summed over
//! fixed blocks of rows and the blocks added in order, so the result does
//! not depend on the number of threads.

use crate::matmul::{matmul, Mat, Threads};
use rayon::prelude::*;

/// Rows per block of the bias-gradient sum.
const BIAS_BLOCK: usize = 256;

/// y (n×out) = x (n×in)·Wᵀ (W: out×in) + b; y's old contents are never read.
pub fn forward(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    n: usize,
    din: usize,
    dout: usize,
    y: &mut [f32],
) {
    assert_eq!(x.len(), n * din, "linear: x must be n×in");
    assert_eq!(w.len(), dout * din, "linear: W must be out×in");
    assert_eq!(y.len(), n * dout, "linear: y must be n×out");
    if let Some(b) = b {
        assert_eq!(b.len(), dout, "linear: b must have out elements");
    }
    matmul(
        y,
        dout,
        Mat::new(x, n, din),
        false,
        Mat::new(w, dout, din),
        true,
        1.0,
        false,
        Threads::Pool,
    );
    // The bias is added after the matmul, while y is still cached. Starting
    // y as b in every row for the matmul to accumulate into was measured
    // slower: the prefill is then y's first, uncached touch (quick-modern-d48,
    // one thread: this forward was 17.4% of a step with the prefill, 15.6%
    // with the pass after).
    if let Some(b) = b {
        y.par_chunks_mut(dout.max(1) * 256)
            .for_each(|rows| add_bias(rows, b));
    }
}

#[inline(always)]
fn add_bias_body(rows: &mut [f32], b: &[f32]) {
    for row in rows.chunks_exact_mut(b.len()) {
        for (y, b) in row.iter_mut().zip(b) {
            *y += b;
        }
    }
}

crate::simd_dispatch!(pub(crate) fn add_bias(rows: &mut [f32], b: &[f32]) => add_bias_body);

/// acc += Σ of the rows (of acc.len() each), in row order.
#[inline(always)]
fn sum_rows_body(rows: &[f32], acc: &mut [f32]) {
    for row in rows.chunks_exact(acc.len()) {
        for (a, v) in acc.iter_mut().zip(row) {
            *a += v;
        }
    }
}

crate::simd_dispatch!(pub(crate) fn sum_rows(rows: &[f32], acc: &mut [f32]) => sum_rows_body);

/// Gradients of a linear layer; each output is overwritten.
pub struct LinearGrads<'a> {
    pub dx: &'a mut [f32],
    pub dw: &'a mut [f32],
    pub db: Option<&'a mut [f32]>,
}

/// ∂x = ∂y·W, ∂W = ∂yᵀ·x, ∂b = Σ_rows ∂y.
pub fn backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    n: usize,
    din: usize,
    dout: usize,
    g: LinearGrads,
) {
    assert_eq!(dy.len(), n * dout, "linear: dy must be n×out");
    assert_eq!(g.dx.len(), n * din, "linear: dx must be n×in");
    assert_eq!(g.dw.len(), dout * din, "linear: dW must be out×in");
    let dym = Mat::new(dy, n, dout);
    matmul(
        g.dx,
        din,
        dym,
        false,
        Mat::new(w, dout, din),
        false,
        1.0,
        false,
        Threads::Pool,
    );
    matmul(
        g.dw,
        din,
        dym,
        true,
        Mat::new(x, n, din),
        false,
        1.0,
        false,
        Threads::Pool,
    );
    if let Some(db) = g.db {
        assert_eq!(db.len(), dout, "linear: db must have out elements");
        let partial: Vec<Vec<f32>> = dy
            .par_chunks(BIAS_BLOCK * dout)
            .map(|rows| {
                let mut acc = vec![0f32; dout];
                sum_rows(rows, &mut acc);
                acc
            })
            .collect();
        db.fill(0.0);
        for p in partial {
            sum_rows(&p, db);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: usize) -> Vec<f32> {
        crate::test_data(len, seed, 300.0)
    }

    #[test]
    fn forward_and_backward_match_naive_f64() {
        let (n, din, dout) = (300, 7, 5); // n > BIAS_BLOCK: two bias blocks
        let (x, w, b, dy) = (
            data(n * din, 1),
            data(dout * din, 2),
            data(dout, 3),
            data(n * dout, 4),
        );
        let mut y = vec![f32::NAN; n * dout];
        forward(&x, &w, Some(&b), n, din, dout, &mut y);
        for i in 0..n {
            for o in 0..dout {
                let want: f64 = b[o] as f64
                    + (0..din)
                        .map(|k| x[i * din + k] as f64 * w[o * din + k] as f64)
                        .sum::<f64>();
                assert!((y[i * dout + o] as f64 - want).abs() < 1e-4, "y[{i},{o}]");
            }
        }
        let (mut dx, mut dw, mut db) = (
            vec![f32::NAN; n * din],
            vec![f32::NAN; dout * din],
            vec![f32::NAN; dout],
        );
        backward(
            &x,
            &w,
            &dy,
            n,
            din,
            dout,
            LinearGrads {
                dx: &mut dx,
                dw: &mut dw,
                db: Some(&mut db),
            },
        );
        for i in 0..n {
            for k in 0..din {
                let want: f64 = (0..dout)
                    .map(|o| dy[i * dout + o] as f64 * w[o * din + k] as f64)
                    .sum();
                assert!((dx[i * din + k] as f64 - want).abs() < 1e-4, "dx[{i},{k}]");
            }
        }
        for o in 0..dout {
            for k in 0..din {
                let want: f64 = (0..n)
                    .map(|i| dy[i * dout + o] as f64 * x[i * din + k] as f64)
                    .sum();
                assert!((dw[o * din + k] as f64 - want).abs() < 1e-3, "dw[{o},{k}]");
            }
            let want: f64 = (0..n).map(|i| dy[i * dout + o] as f64).sum();
            assert!((db[o] as f64 - want).abs() < 1e-3, "db[{o}]");
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (n, din, dout) = (4, 3, 2);
        let (x, w, b, r) = (
            data(n * din, 5),
            data(dout * din, 6),
            data(dout, 7),
            data(n * dout, 8),
        );
        // loss = Σ r∘y, so ∂y = r
        let loss = |x: &[f32], w: &[f32], b: &[f32]| -> f64 {
            let mut y = vec![0f32; n * dout];
            forward(x, w, Some(b), n, din, dout, &mut y);
            y.iter().zip(&r).map(|(a, c)| *a as f64 * *c as f64).sum()
        };
        let (mut dx, mut dw, mut db) = (
            vec![0f32; n * din],
            vec![0f32; dout * din],
            vec![0f32; dout],
        );
        backward(
            &x,
            &w,
            &r,
            n,
            din,
            dout,
            LinearGrads {
                dx: &mut dx,
                dw: &mut dw,
                db: Some(&mut db),
            },
        );
        let eps = 1e-2f32;
        let fd = |which: usize, i: usize| -> f64 {
            let mut args = [x.clone(), w.clone(), b.clone()];
            args[which][i] += eps;
            let p = loss(&args[0], &args[1], &args[2]);
            args[which][i] -= 2.0 * eps;
            let m = loss(&args[0], &args[1], &args[2]);
            (p - m) / (2.0 * eps as f64)
        };
        for (which, grad) in [(0, &dx), (1, &dw), (2, &db)] {
            for (i, g) in grad.iter().enumerate() {
                let f = fd(which, i);
                assert!(
                    (f - *g as f64).abs() < 1e-3,
                    "argument {which}[{i}]: fd {f} vs {g}"
                );
            }
        }
    }
}
