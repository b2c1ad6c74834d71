//! Row-major f32 matmul on slices through the `gemm` crate.
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

/// c (m×n, row stride `ldc`) = beta_c·c + alpha·op(a)·op(b), where op(x) is x
/// or xᵀ per `ta`/`tb`. With `accumulate` false, c is overwritten (its old
/// contents, even NaN, are ignored).
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
    let (m, k) = if ta {
        (a.cols, a.rows)
    } else {
        (a.rows, a.cols)
    };
    let (k2, n) = if tb {
        (b.cols, b.rows)
    } else {
        (b.rows, b.cols)
    };
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
}
