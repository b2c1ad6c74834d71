//! Products with few rows, C (m×n) (+)= A (m×k)·B (k×n), all row-major, for
//! the LSTM's time loop: every step multiplies the batch's B ≈ 16 state rows
//! by the same recurrent matrix.
//!
//! A general matmul packs both operands on every call; in the time loop that
//! re-packs W_hh (4H·H floats) at every step, for a product of only
//! 16·4H·H multiply-adds (at H = 128 the packing was a tenth of a training
//! step). Here the product is [`crate::rowmm`]'s register-blocked kernel,
//! which reads B in place (16 columns per AVX-512 register) and broadcasts
//! A's entries, always, whatever the shape. B must already be laid out k×n
//! (the LSTM transposes W_hh once per window for the forward).
//!
//! AVX-512 only ([`supported`]); elsewhere [`matmul_rows`] is the `gemm`
//! crate's product.

use crate::matmul::{matmul_on, Backend, Mat, Threads};

/// Whether this CPU runs the register-blocked kernel (else `gemm`).
pub fn supported() -> bool {
    crate::rowmm::supported()
}

/// c (m×n, row stride ldc) = a·b, or += with `accumulate`; a (m×k, row
/// stride lda), b (k×n, row stride ldb), single-threaded.
pub fn matmul_rows(c: &mut [f32], ldc: usize, a: Mat, b: Mat, accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "matmul_rows: inner dimensions differ");
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= (m - 1) * ldc + n, "matmul_rows: c too short");
    if supported() && k > 0 {
        crate::rowmm::product(c, ldc, a, false, b, 1.0, accumulate, false);
        return;
    }
    let gemm = Backend::Gemm;
    matmul_on(
        gemm,
        c,
        ldc,
        a,
        false,
        b,
        false,
        1.0,
        accumulate,
        Threads::One,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_naive_at_every_block_and_tail_shape() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (16, 32, 128),
            (16, 128, 512),
            (16, 512, 128),
            (13, 7, 45),
            (3, 20, 17),
            (9, 5, 16),
            (5, 3, 33),
        ] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 37 % 23) as f32 - 11.0) / 9.0)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 13 % 17) as f32 - 8.0) / 5.0)
                .collect();
            // c with a row stride wider than n, its padding left alone
            let ldc = n + 3;
            let init: Vec<f32> = (0..m * ldc).map(|i| (i % 7) as f32 - 3.0).collect();
            for accumulate in [false, true] {
                let mut c = init.clone();
                matmul_rows(
                    &mut c,
                    ldc,
                    Mat::new(&a, m, k),
                    Mat::new(&b, k, n),
                    accumulate,
                );
                for i in 0..m {
                    for j in 0..ldc {
                        let got = c[i * ldc + j] as f64;
                        let want = if j >= n {
                            init[i * ldc + j] as f64
                        } else {
                            let dot: f64 = (0..k)
                                .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                                .sum();
                            dot + if accumulate {
                                init[i * ldc + j] as f64
                            } else {
                                0.0
                            }
                        };
                        assert!(
                            (got - want).abs() < 1e-4 * (1.0 + want.abs()),
                            "m={m} k={k} n={n} acc={accumulate} ({i},{j}): {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
