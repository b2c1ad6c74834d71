//! Register-blocked AVX-512 products for the narrow matrices of small
//! models: C (m×n, row-major) (+)= alpha·op(A)·B, where B is k×n row-major
//! read in place and op(A) is A or Aᵀ read in place through its strides.
//!
//! Why beside `gemm`: `gemm` lays its micro-tiles along the output's
//! contiguous dimension in steps of 64 floats, so an output 80 columns wide
//! (the `laptop` models' d = 80) runs its last 16 columns through a 16×6
//! edge kernel whose six accumulators cannot keep the FMA units busy; and it
//! packs both operands on every call. Here a tile is 8 rows × 48 columns:
//! each step p loads three vectors of B's row p and broadcasts 8 entries of
//! op(A)'s column p, so 24 accumulators stay in registers over the whole k
//! loop; a last panel 32 or 16 wide still has 16 or 8 independent
//! accumulators. Rows go in chunks whose slice of op(A) stays in L1 while
//! the panels go across it.
//! Neither operand is packed: B's rows are contiguous, and op(A)'s entries
//! are single broadcasts at any stride (for Aᵀ, the R entries of one step
//! are adjacent). `matmul::matmul` sends a product here when the CPU has
//! AVX-512 and the shape suits it ([`suits`]), else to `gemm`.
//!
//! Each output element is one chain of FMAs over p = 0..k in order, whatever
//! the thread count, so results do not depend on the number of threads.
//! That is also `gemm`'s order for these k (one block of k), and the
//! results came out bit for bit the same: the `quick` study's 58 final
//! losses with `rowmm` equal those with `gemm` alone to the last bit.

use crate::matmul::Mat;

/// Rows per register tile.
pub const TILE_ROWS: usize = 8;
/// Floats of op(a) per chunk of rows (24 KiB).
const A_CHUNK_FLOATS: usize = 6 * 1024;

/// Whether [`product`] runs on this CPU (AVX-512F).
pub fn supported() -> bool {
    cfg!(target_arch = "x86_64") && crate::math::simd() == crate::math::Simd::Avx512
}

/// Whether a product of this shape is sent here rather than to `gemm`
/// (given [`supported`]): outputs whose width is not a multiple of 64 (up
/// to [`MAX_N`]) and inner dimensions up to [`MAX_K`].
///
/// The rule is read off `examples/matmul_shapes` (one thread, this
/// project's Intel Xeon with AVX-512, the two kernels timed in
/// alternation). Widths that `gemm`'s 64-float tiles do not divide (d = 80:
/// 80, 240; d = 48: 48, 144) ran 1.04–1.19× faster here; at widths they
/// divide (128, 192, 320, 512) `gemm` was level or up to 1.2× faster; and
/// with k in the thousands (a weight gradient over the whole batch) `gemm`,
/// which packs op(a), was up to 3× faster. `ALGOPROG_MATMUL=gemm` turns
/// this kernel off.
pub fn suits(_m: usize, n: usize, k: usize) -> bool {
    enabled() && !n.is_multiple_of(64) && n <= MAX_N && k <= MAX_K
}

/// Widest output (columns) sent here.
const MAX_N: usize = 1024;
/// Longest inner dimension sent here.
const MAX_K: usize = 512;

fn enabled() -> bool {
    use std::sync::OnceLock;
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var("ALGOPROG_MATMUL").map_or(true, |v| v != "gemm"))
}

/// c (m×n, row stride ldc) = alpha·op(a)·b, or c += that with `accumulate`;
/// op(a) is a (m×k) or, with `ta`, aᵀ (a is k×m); b is k×n. With
/// `parallel`, row blocks run as rayon tasks. AVX-512 only: the caller
/// checks [`supported`].
#[allow(clippy::too_many_arguments)]
pub fn product(
    c: &mut [f32],
    ldc: usize,
    a: Mat,
    ta: bool,
    b: Mat,
    alpha: f32,
    accumulate: bool,
    parallel: bool,
) {
    let ((m, k), n) = (a.op_shape(ta), b.cols);
    assert_eq!(b.rows, k, "rowmm: inner dimensions differ");
    assert!(supported(), "rowmm: needs AVX-512F");
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= (m - 1) * ldc + n, "rowmm: c too short");
    // element (i, p) of op(a) is at i·a_rs + p·a_cs
    let (a_rs, a_cs) = if ta { (1, a.ld) } else { (a.ld, 1) };
    // Rows per chunk: op(a)'s chunk (rows × k) sized to stay in L1 (about
    // half of a 48 KiB L1) while the column panels go across it.
    let chunk = (A_CHUNK_FLOATS / k).clamp(TILE_ROWS, 16 * TILE_ROWS) / TILE_ROWS * TILE_ROWS;
    let shared = crate::SharedMut::new(c);
    let ap = a.data.as_ptr() as usize;
    let run = |r0: usize, r1: usize| {
        // SAFETY: supported() saw AVX-512F; rows r0..r1 ≤ m, each task's
        // rows are disjoint (SharedMut's contract), and the asserts above
        // and Mat's own bound every element the tiles touch.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            simd::rows(
                simd::Prod {
                    c: shared.get(),
                    ldc,
                    a: ap as *const f32,
                    a_rs,
                    a_cs,
                    b,
                    k,
                    alpha,
                    accumulate,
                },
                r0,
                r1,
            )
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (r0, r1, shared, ap, a_rs, a_cs, alpha, accumulate);
    };
    let chunks = m.div_ceil(chunk);
    let at = |t: usize| (t * chunk, ((t + 1) * chunk).min(m));
    if parallel && chunks > 1 && rayon::current_num_threads() > 1 {
        use rayon::prelude::*;
        (0..chunks).into_par_iter().for_each(|t| {
            let (r0, r1) = at(t);
            run(r0, r1)
        });
    } else {
        for t in 0..chunks {
            let (r0, r1) = at(t);
            run(r0, r1);
        }
    }
}

#[cfg(target_arch = "x86_64")]
// index loops over the register tile read as the product they compute
#[allow(clippy::needless_range_loop)]
mod simd {
    use crate::matmul::Mat;
    use std::arch::x86_64::*;

    /// One product c = alpha·op(a)·b (+ c): the operands at their first
    /// elements, op(a)'s element (i, p) at a + i·a_rs + p·a_cs, b (k × n).
    #[derive(Clone, Copy)]
    pub(super) struct Prod<'a> {
        pub c: *mut f32,
        pub ldc: usize,
        pub a: *const f32,
        pub a_rs: usize,
        pub a_cs: usize,
        pub b: Mat<'a>,
        pub k: usize,
        pub alpha: f32,
        pub accumulate: bool,
    }

    /// Rows r0..r0 + R, columns j0..j0 + 16·NV (the last vector's lanes
    /// limited by `last`) of the product, given c, a and b at the tile's
    /// first element, op(a)'s row r0 and b's column j0.
    #[inline(always)]
    unsafe fn tile<const R: usize, const NV: usize, const TA: bool>(
        p: &Prod,
        (c, a, b): (*mut f32, *const f32, *const f32),
        last: __mmask16,
    ) {
        // SAFETY (whole body): the tile's R rows, its columns (masked lanes
        // excluded) and steps q < k lie inside the operands (the caller's
        // contract).
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); NV]; R];
            // Aᵀ: the step's R entries are adjacent (constant offsets from
            // one pointer that moves a_cs per step); A: R row pointers and
            // one shared column index, so no per-row address arithmetic
            // competes with the FMAs for the vector ports.
            let mut ap = a;
            // (black_box keeps LLVM from rebuilding the pointers as a chain
            // of additions inside the loop, which it otherwise does)
            let rowp: [*const f32; R] =
                std::hint::black_box(std::array::from_fn(|r| a.wrapping_add(r * p.a_rs)));
            let mut bp = b;
            for q in 0..p.k {
                let mut bv = [_mm512_setzero_ps(); NV];
                for v in 0..NV {
                    bv[v] = if v + 1 == NV {
                        _mm512_maskz_loadu_ps(last, bp.add(16 * v))
                    } else {
                        _mm512_loadu_ps(bp.add(16 * v))
                    };
                }
                for r in 0..R {
                    let x = if TA {
                        _mm512_set1_ps(*ap.add(r))
                    } else {
                        _mm512_set1_ps(*rowp[r].add(q))
                    };
                    for v in 0..NV {
                        acc[r][v] = _mm512_fmadd_ps(x, bv[v], acc[r][v]);
                    }
                }
                if TA {
                    ap = ap.add(p.a_cs);
                }
                bp = bp.add(p.b.ld);
            }
            let al = _mm512_set1_ps(p.alpha);
            for r in 0..R {
                for v in 0..NV {
                    let cp = c.add(r * p.ldc + 16 * v);
                    let mask = if v + 1 == NV { last } else { 0xFFFF };
                    let mut x = acc[r][v];
                    if p.alpha != 1.0 {
                        x = _mm512_mul_ps(x, al);
                    }
                    if p.accumulate {
                        x = _mm512_add_ps(x, _mm512_maskz_loadu_ps(mask, cp));
                    }
                    _mm512_mask_storeu_ps(cp, mask, x);
                }
            }
        }
    }

    /// Columns j0..j0 + 16·NV (the last vector's lanes limited by `last`)
    /// of rows r0..r1: 8-row tiles while 8 rows are left, then smaller
    /// ones. The panel of b (k × 16·NV) stays in L1 across the tiles.
    #[inline(always)]
    unsafe fn panel<const NV: usize, const TA: bool>(
        p: &Prod,
        (r0, r1, j0): (usize, usize, usize),
        last: __mmask16,
    ) {
        let mut r = r0;
        // SAFETY: each tile covers rows r..r + R ≤ r1 and the panel's
        // columns, inside c, a and b (the caller's contract).
        unsafe {
            let b0 = p.b.data.as_ptr().add(j0);
            while r < r1 {
                let at = (p.c.add(r * p.ldc + j0), p.a.wrapping_add(r * p.a_rs), b0);
                r += match r1 - r {
                    8.. => {
                        tile::<8, NV, TA>(p, at, last);
                        8
                    }
                    4.. => {
                        tile::<4, NV, TA>(p, at, last);
                        4
                    }
                    2.. => {
                        tile::<2, NV, TA>(p, at, last);
                        2
                    }
                    _ => {
                        tile::<1, NV, TA>(p, at, last);
                        1
                    }
                };
            }
        }
    }

    /// Rows r0..r1, all columns, in panels of 48 columns (then 32, 16).
    #[inline(always)]
    unsafe fn rows_ta<const TA: bool>(p: &Prod, r0: usize, r1: usize) {
        let n = p.b.cols;
        let mut j0 = 0;
        let mask = crate::math::lane_mask;
        // SAFETY: every panel's columns j0.. < n (tails masked).
        unsafe {
            while j0 < n {
                let (rest, at) = (n - j0, (r0, r1, j0));
                if rest > 32 {
                    panel::<3, TA>(p, at, mask(rest - 32));
                } else if rest > 16 {
                    panel::<2, TA>(p, at, mask(rest - 16));
                } else {
                    panel::<1, TA>(p, at, mask(rest));
                }
                // a narrower panel only ever comes last
                j0 += 48;
            }
        }
    }

    /// Rows r0..r1 of the product (see [`super::product`]).
    ///
    /// # Safety
    /// AVX-512F is available; p.c holds rows r0..r1 (row stride ldc, n
    /// columns) and no other task writes them; p.a and p.b hold every
    /// element the rows read.
    #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
    pub(super) unsafe fn rows(p: Prod, r0: usize, r1: usize) {
        // SAFETY: the caller's contract, passed on.
        unsafe {
            if p.a_rs == 1 {
                rows_ta::<true>(&p, r0, r1)
            } else {
                rows_ta::<false>(&p, r0, r1)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: usize) -> Vec<f32> {
        crate::test_data(len, seed, 300.0)
    }

    /// c = alpha·op(a)·b (+ c0) in f64.
    #[allow(clippy::too_many_arguments)]
    fn naive(
        a: &[f32],
        lda: usize,
        ta: bool,
        b: &[f32],
        ldb: usize,
        m: usize,
        n: usize,
        k: usize,
    ) -> Vec<f64> {
        let at = |i: usize, p: usize| if ta { a[p * lda + i] } else { a[i * lda + p] } as f64;
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|p| at(i, p) * b[p * ldb + j] as f64).sum();
            }
        }
        c
    }

    /// Every row tile (8, 4, 2, 1 rows) and column panel (48, 32, 16 and
    /// their masked tails), A read in place or transposed, strided
    /// operands, alpha, overwrite and accumulate, serial and in chunks on
    /// the pool: against an f64 product, and the parallel result bit for
    /// bit equal to the serial one.
    #[test]
    fn matches_naive_at_every_tile_and_tail_shape() {
        if !supported() {
            eprintln!("no AVX-512F: rowmm does not run here");
            return;
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for &(m, k, n) in &[
            (1, 1, 1),
            (8, 80, 80),
            (15, 7, 17),
            (37, 33, 50),
            (300, 80, 240),
            (200, 3, 113),
            (23, 512, 96),
            (13, 5, 1024),
        ] {
            for ta in [false, true] {
                let (lda, ldb, ldc) = (if ta { m + 2 } else { k + 3 }, n + 5, n + 1);
                let a = data(if ta { k * lda } else { m * lda }, 1);
                let b = data(k * ldb, 2);
                let am = if ta {
                    Mat::strided(&a, k, m, lda)
                } else {
                    Mat::strided(&a, m, k, lda)
                };
                let bm = Mat::strided(&b, k, n, ldb);
                let want = naive(&a, lda, ta, &b, ldb, m, n, k);
                let init = data(m * ldc, 3);
                for (alpha, accumulate) in [(1.0f32, false), (0.5, true), (-2.0, false)] {
                    let mut serial = init.clone();
                    product(&mut serial, ldc, am, ta, bm, alpha, accumulate, false);
                    let mut par = init.clone();
                    pool.install(|| product(&mut par, ldc, am, ta, bm, alpha, accumulate, true));
                    assert_eq!(
                        serial, par,
                        "m={m} k={k} n={n} ta={ta}: thread count changed bits"
                    );
                    for i in 0..m {
                        for j in 0..ldc {
                            let got = serial[i * ldc + j] as f64;
                            let old = init[i * ldc + j] as f64;
                            let w = if j >= n {
                                old // the stride's padding is never written
                            } else {
                                alpha as f64 * want[i * n + j] + if accumulate { old } else { 0.0 }
                            };
                            assert!(
                                (got - w).abs() < 1e-4 * (1.0 + w.abs()) * (k as f64).sqrt(),
                                "m={m} k={k} n={n} ta={ta} alpha={alpha} acc={accumulate} ({i},{j}): {got} vs {w}"
                            );
                        }
                    }
                }
            }
        }
    }

    /// `matmul` through rowmm and through gemm agree on the shapes it sends
    /// here, B transposed or not (the transposed B is copied by
    /// `matmul::transpose`).
    #[test]
    fn matmul_dispatch_agrees_with_gemm() {
        use crate::matmul::{matmul_on, Backend, Threads};
        let (m, k, n) = (70, 80, 48);
        assert!(!supported() || suits(m, n, k) || !enabled());
        let a = data(m * k, 4);
        let b = data(k * n, 5);
        for tb in [false, true] {
            let bm = if tb {
                Mat::new(&b, n, k)
            } else {
                Mat::new(&b, k, n)
            };
            let [r, g] = [Backend::RowMm, Backend::Gemm].map(|be| {
                let mut c = vec![f32::NAN; m * n];
                let am = Mat::new(&a, m, k);
                matmul_on(be, &mut c, n, am, false, bm, tb, 1.0, false, Threads::Pool);
                c
            });
            for (x, y) in r.iter().zip(&g) {
                assert!(
                    (x - y).abs() < 1e-4 * (1.0 + y.abs()),
                    "tb={tb}: {x} vs {y}"
                );
            }
        }
    }
}
