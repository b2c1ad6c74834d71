//! Products with few rows, C (m×n) (+)= A (m×k)·B (k×n), all row-major, for
//! the LSTM's time loop: every step multiplies the batch's B ≈ 16 state rows
//! by the same recurrent matrix.
//!
//! A general matmul packs both operands on every call; in the time loop that
//! re-packs W_hh (4H·H floats) at every step, for a product of only
//! 16·4H·H multiply-adds (at H = 128 the packing was a tenth of a training
//! step). Here B is read in place, 16 columns per AVX-512 register, and A's
//! entries are broadcast: each block of up to 8 rows × 32 columns keeps its
//! 16 accumulators in registers over the whole k loop. B must already be
//! laid out k×n (the LSTM transposes W_hh once per window for the forward).
//!
//! AVX-512 only ([`supported`]); elsewhere [`matmul_rows`] is the `gemm`
//! crate's product.

use crate::math::{self, Simd};
use crate::matmul::{matmul, Mat, Threads};

/// Whether this CPU runs the register-blocked kernel (else `gemm`).
pub fn supported() -> bool {
    cfg!(target_arch = "x86_64") && math::simd() == Simd::Avx512
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
    #[cfg(target_arch = "x86_64")]
    if supported() && k > 0 {
        // SAFETY: supported() saw AVX-512; the asserts above and Mat's own
        // bound every index the kernel reads or writes.
        unsafe { simd::matmul_rows(c, ldc, a, b, accumulate) };
        return;
    }
    matmul(c, ldc, a, false, b, false, 1.0, accumulate, Threads::One);
}

#[cfg(target_arch = "x86_64")]
// index loops over the register blocks read as the product they compute
#[allow(clippy::needless_range_loop)]
mod simd {
    use crate::matmul::Mat;
    use std::arch::x86_64::*;

    /// Rows per register block.
    const RB: usize = 8;

    /// Rows r0..r0 + R, columns j0..j0 + 16·NV (the last vector's lanes
    /// limited by `last`).
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn block<const R: usize, const NV: usize>(
        c: *mut f32,
        ldc: usize,
        a: *const f32,
        lda: usize,
        b: *const f32,
        ldb: usize,
        k: usize,
        last: __mmask16,
        accumulate: bool,
    ) {
        // SAFETY (whole body): the caller passes pointers to the block's
        // first element of c, a (row r0) and b (column j0); the block's R
        // rows and its columns (the masked lanes excluded) lie inside them.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); NV]; R];
            for p in 0..k {
                let bp = b.add(p * ldb);
                let mut bv = [_mm512_setzero_ps(); NV];
                for v in 0..NV {
                    bv[v] = if v + 1 == NV {
                        _mm512_maskz_loadu_ps(last, bp.add(16 * v))
                    } else {
                        _mm512_loadu_ps(bp.add(16 * v))
                    };
                }
                for r in 0..R {
                    let x = _mm512_set1_ps(*a.add(r * lda + p));
                    for v in 0..NV {
                        acc[r][v] = _mm512_fmadd_ps(x, bv[v], acc[r][v]);
                    }
                }
            }
            for r in 0..R {
                for v in 0..NV {
                    let cp = c.add(r * ldc + 16 * v);
                    let mask = if v + 1 == NV { last } else { 0xFFFF };
                    let mut x = acc[r][v];
                    if accumulate {
                        x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mask, cp));
                    }
                    _mm512_mask_storeu_ps(cp, mask, x);
                }
            }
        }
    }

    /// One row block (R rows from r0) across all columns.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn row_block<const R: usize>(
        c: &mut [f32],
        ldc: usize,
        a: Mat,
        b: Mat,
        r0: usize,
        accumulate: bool,
    ) {
        let (k, n) = (a.cols, b.cols);
        let (cp, ap, bp) = (c.as_mut_ptr(), a.data.as_ptr(), b.data.as_ptr());
        let mut j0 = 0;
        // SAFETY: rows r0..r0 + R < m, columns j0.. < n (tails masked).
        unsafe {
            while j0 < n {
                let rest = n - j0;
                let (c0, a0, b0) = (cp.add(r0 * ldc + j0), ap.add(r0 * a.ld), bp.add(j0));
                if rest > 16 {
                    let last = if rest >= 32 {
                        0xFFFF
                    } else {
                        ((1u32 << (rest - 16)) - 1) as u16
                    };
                    block::<R, 2>(c0, ldc, a0, a.ld, b0, b.ld, k, last, accumulate);
                    j0 += 32;
                } else {
                    let last = ((1u32 << rest) - 1) as u16;
                    block::<R, 1>(c0, ldc, a0, a.ld, b0, b.ld, k, last, accumulate);
                    j0 += 16;
                }
            }
        }
    }

    /// See [`super::matmul_rows`].
    ///
    /// # Safety
    /// AVX-512F is available; the shapes are checked by the caller.
    #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
    pub(super) unsafe fn matmul_rows(c: &mut [f32], ldc: usize, a: Mat, b: Mat, accumulate: bool) {
        let m = a.rows;
        let mut r0 = 0;
        // SAFETY: each row_block covers rows r0..r0 + R ≤ m.
        unsafe {
            while r0 < m {
                let left = m - r0;
                if left >= RB {
                    row_block::<RB>(c, ldc, a, b, r0, accumulate);
                    r0 += RB;
                } else if left >= 4 {
                    row_block::<4>(c, ldc, a, b, r0, accumulate);
                    r0 += 4;
                } else if left >= 2 {
                    row_block::<2>(c, ldc, a, b, r0, accumulate);
                    r0 += 2;
                } else {
                    row_block::<1>(c, ldc, a, b, r0, accumulate);
                    r0 += 1;
                }
            }
        }
    }
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
