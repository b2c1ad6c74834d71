//! Row-major f32 matmul on slices: the `gemm` crate, or [`crate::rowmm`]
//! for the narrow shapes where it measured faster on AVX-512 CPUs
//! ([`Backend`]).
//!
//! `gemm` dispatches at run time to the widest kernel the CPU supports
//! (AVX-512 with this workspace's `x86-v4` feature, AVX2/FMA otherwise).

/// A row-major matrix operand: `data[r * ld + c]`, optionally read transposed.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    /// Row stride (leading dimension), ≥ cols.
    pub ld: usize,
}

impl<'a> Mat<'a> {
    /// A contiguous rows×cols matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols)
    }
    /// (rows, cols) of the operand as read: xᵀ's with `transposed`.
    pub fn op_shape(&self, transposed: bool) -> (usize, usize) {
        if transposed {
            (self.cols, self.rows)
        } else {
            (self.rows, self.cols)
        }
    }
    pub fn strided(data: &'a [f32], rows: usize, cols: usize, ld: usize) -> Self {
        assert!(
            rows == 0 || cols == 0 || data.len() >= (rows - 1) * ld + cols,
            "matrix slice too short"
        );
        Self {
            data,
            rows,
            cols,
            ld,
        }
    }
}

/// How many threads a matmul may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// The calling thread only (inside a rayon task).
    One,
    /// rayon's pool.
    Pool,
}

impl Threads {
    fn to_gemm(self) -> gemm::Parallelism {
        match self {
            Threads::One => gemm::Parallelism::None,
            Threads::Pool => gemm::Parallelism::Rayon(rayon::current_num_threads().max(1)),
        }
    }
}

/// Which kernel runs a product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// [`crate::rowmm`] where it runs and suits the shape, else `gemm`.
    Auto,
    /// The `gemm` crate.
    Gemm,
    /// [`crate::rowmm`] (AVX-512 only; elsewhere `gemm`).
    RowMm,
}

/// c (m×n, row stride `ldc`) = beta_c·c + alpha·op(a)·op(b), where op(x) is x
/// or xᵀ per `ta`/`tb`. With `accumulate` false, c is overwritten (its old
/// contents, even NaN, are ignored). The kernel is [`Backend::Auto`]'s.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    c: &mut [f32],
    ldc: usize,
    a: Mat,
    ta: bool,
    b: Mat,
    tb: bool,
    alpha: f32,
    accumulate: bool,
    threads: Threads,
) {
    matmul_on(
        Backend::Auto,
        c,
        ldc,
        a,
        ta,
        b,
        tb,
        alpha,
        accumulate,
        threads,
    )
}

/// [`matmul`] on a chosen kernel (benchmarks compare them with it).
#[allow(clippy::too_many_arguments)]
pub fn matmul_on(
    backend: Backend,
    c: &mut [f32],
    ldc: usize,
    a: Mat,
    ta: bool,
    b: Mat,
    tb: bool,
    alpha: f32,
    accumulate: bool,
    threads: Threads,
) {
    let ((m, k), (k2, n)) = (a.op_shape(ta), b.op_shape(tb));
    assert_eq!(k, k2, "matmul inner dimensions differ: {k} vs {k2}");
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        c.len() >= (m - 1) * ldc + n,
        "matmul output slice too short"
    );
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                c[r * ldc..r * ldc + n].fill(0.0);
            }
        }
        return;
    }
    let rowmm = crate::rowmm::supported()
        && match backend {
            Backend::Auto => crate::rowmm::suits(m, n, k),
            Backend::Gemm => false,
            Backend::RowMm => true,
        };
    if rowmm {
        let parallel = threads == Threads::Pool;
        // rowmm reads B as k×n rows: transpose a (small) n×k operand once
        let bt;
        let b = if tb {
            bt = transpose(b);
            Mat::new(&bt, k, n)
        } else {
            b
        };
        crate::rowmm::product(c, ldc, a, ta, b, alpha, accumulate, parallel);
        return;
    }
    // element (i, j) of op(x): row-major x[i*ld + j] or transposed x[j*ld + i]
    let (a_rs, a_cs) = if ta {
        (1isize, a.ld as isize)
    } else {
        (a.ld as isize, 1)
    };
    let (b_rs, b_cs) = if tb {
        (1isize, b.ld as isize)
    } else {
        (b.ld as isize, 1)
    };
    // SAFETY: the asserts above bound every index gemm touches: c is m×n with
    // row stride ldc; op(a) is m×k and op(b) k×n inside their slices.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            ldc as isize,
            accumulate,
            a.data.as_ptr(),
            a_cs,
            a_rs,
            b.data.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            alpha,
            false,
            false,
            false,
            threads.to_gemm(),
        )
    }
}

/// xᵀ (cols×rows, contiguous) of a row-major x. On AVX-512, each output
/// row's 16-float pieces are gathered from a column of x (a scalar copy
/// loop ran at about one element per nanosecond, as slow as the product
/// it prepared on a 128-row block).
pub fn transpose(x: Mat) -> Vec<f32> {
    let (r, c) = (x.rows, x.cols);
    let mut t = crate::buffer::output(r * c);
    #[cfg(target_arch = "x86_64")]
    if crate::math::simd() == crate::math::Simd::Avx512 && r * c > 0 {
        // SAFETY: AVX-512F is present; Mat's assert bounds every x element
        // read, and t has r·c elements.
        unsafe { transpose_avx512(x, &mut t) };
        return t;
    }
    for i in 0..r {
        let row = &x.data[i * x.ld..];
        for j in 0..c {
            t[j * r + i] = row[j];
        }
    }
    t
}

/// # Safety
/// AVX-512F; x's rows·cols elements lie in x.data and t has rows·cols.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_avx512(x: Mat, t: &mut [f32]) {
    use std::arch::x86_64::*;
    let (r, c, ld) = (x.rows, x.cols, x.ld);
    // lane l reads row i0 + l: offsets l·ld (in elements)
    let idx = _mm512_mullo_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
        _mm512_set1_epi32(ld as i32),
    );
    assert!(
        r.saturating_mul(ld) < i32::MAX as usize,
        "transpose: matrix too large"
    );
    let (xp, tp) = (x.data.as_ptr(), t.as_mut_ptr());
    for i0 in (0..r).step_by(16) {
        let live = (r - i0).min(16);
        let mask = crate::math::lane_mask(live);
        for j in 0..c {
            // SAFETY: lanes < live read x[(i0 + l)·ld + j], inside x; the
            // store writes t[j·r + i0 ..+ live], inside t.
            unsafe {
                let v = _mm512_mask_i32gather_ps::<4>(
                    _mm512_setzero_ps(),
                    mask,
                    idx,
                    xp.add(i0 * ld + j),
                );
                _mm512_mask_storeu_ps(tp.add(j * r + i0), mask, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], m: usize, k: usize, ta: bool, b: &[f32], n: usize, tb: bool) -> Vec<f64> {
        let at = |i: usize, p: usize| if ta { a[p * m + i] } else { a[i * k + p] } as f64;
        let bt = |p: usize, j: usize| if tb { b[j * k + p] } else { b[p * n + j] } as f64;
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| at(i, p) * bt(p, j)).sum();
            }
        }
        c
    }

    #[test]
    fn all_transpose_combinations_match_naive() {
        let (m, k, n) = (7, 5, 9);
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 37 % 11) as f32 - 5.0) / 3.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 13 % 7) as f32 - 3.0) / 2.0)
            .collect();
        for ta in [false, true] {
            for tb in [false, true] {
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
                let want = naive(&a, m, k, ta, &b, n, tb);
                let mut c = vec![f32::NAN; m * n];
                matmul(&mut c, n, am, ta, bm, tb, 1.0, false, Threads::One);
                for (x, y) in c.iter().zip(&want) {
                    assert!((*x as f64 - y).abs() < 1e-4, "ta={ta} tb={tb}: {x} vs {y}");
                }
                // accumulate with alpha: c += 0.5·ab
                matmul(&mut c, n, am, ta, bm, tb, 0.5, true, Threads::Pool);
                for (x, y) in c.iter().zip(&want) {
                    assert!(
                        (*x as f64 - 1.5 * y).abs() < 1e-4,
                        "accumulate ta={ta} tb={tb}"
                    );
                }
            }
        }
    }

    #[test]
    fn transpose_moves_every_element_of_a_strided_matrix() {
        for &(r, c) in &[(1, 1), (16, 16), (17, 5), (40, 33), (3, 70)] {
            let ld = c + 2;
            let x: Vec<f32> = (0..r * ld).map(|i| i as f32).collect();
            let t = transpose(Mat::strided(&x, r, c, ld));
            assert_eq!(t.len(), r * c);
            for i in 0..r {
                for j in 0..c {
                    assert_eq!(t[j * r + i], x[i * ld + j], "({r}×{c}) at ({i},{j})");
                }
            }
        }
    }
}
