//! The per-pair bodies of [`crate::attention`] for 16-dim heads on
//! AVX-512, without a matmul library.
//!
//! At the models' head size (d_h = 16) and sequence lengths (T = 64–128) one
//! (batch, head) pair is a few hundred thousand flops split over a dozen
//! products of a few rows each; a general matmul spends more time packing
//! and dispatching than multiplying. Here every product is a register-blocked
//! loop over [`RB`] query rows at a time, one AVX-512 register per head row:
//!
//! - scores S = Q·(s·K)ᵀ run over 32 keys at a time against a transposed,
//!   pre-scaled copy of K (and, backward, dP = dY·Vᵀ against Vᵀ), so each
//!   FMA adds one query's component times 16 keys' components;
//! - the products with the probabilities (Y = P·V, dQ = dS·K) broadcast one
//!   probability against a key's or value's row, for [`RB`] independent
//!   rows;
//! - the transposed ones (dV += Pᵀ·dY, dK += dSᵀ·Q) add [`RB`] rows' terms
//!   into one key's row.
//!
//! A softmax row is one masked sweep (max, then exponentials with their sum
//! and the masked tail zeroed), with no copied tail; ALiBi is the general
//! path's. The forward folds the softmax's 1/Σ into the output row instead
//! of scaling P. [`supported`] says whether a call may come here; the
//! general path in `attention` serves every other head size and CPU, and a
//! test there compares the two.

// elsewhere only `supported` (false) is called
#![cfg_attr(not(target_arch = "x86_64"), allow(dead_code, unused_imports))]

use crate::attention::{add_alibi, AttnShape, PairIn};
use crate::math::{self, dot_impl as dot, Simd, LANES as L};
use crate::matmul::Mat;

/// Query rows per register block.
pub(crate) const RB: usize = 4;
/// The head size of these kernels: one AVX-512 register per row.
pub(crate) const HD: usize = 16;

/// Whether this CPU and head size have a kernel here.
pub(crate) fn supported(hd: usize) -> bool {
    cfg!(target_arch = "x86_64") && hd == HD && math::simd() == Simd::Avx512
}

/// Per-task scratch: transposed K and V (d_h × T rounded up to 16 lanes)
/// and two blocks of [`RB`] score rows.
pub(crate) struct SmallScratch {
    kt: Vec<f32>,
    vt: Vec<f32>,
    p: Vec<f32>,
    dp: Vec<f32>,
}

impl SmallScratch {
    pub(crate) fn new(s: AttnShape, backward: bool) -> Self {
        let tp = s.t.next_multiple_of(L);
        let n = if backward { s.hd * tp } else { 0 };
        Self {
            kt: vec![0.0; s.hd * tp],
            vt: vec![0.0; n],
            p: vec![0.0; RB * tp],
            dp: vec![0.0; if backward { RB * tp } else { 0 }],
        }
    }
}

#[cfg(target_arch = "x86_64")]
/// RB rows of a matrix from row r0, scaled (rows past `m.rows` are zero).
#[inline(always)]
fn load_rows(m: Mat, r0: usize, alpha: f32) -> [[f32; HD]; RB] {
    let mut a = [[0.0f32; HD]; RB];
    for (r, ar) in a.iter_mut().enumerate() {
        if r0 + r < m.rows {
            let row = &m.data[(r0 + r) * m.ld..(r0 + r) * m.ld + HD];
            for c in 0..HD {
                ar[c] = alpha * row[c];
            }
        }
    }
    a
}

/// The three products, on AVX-512 registers (one per row of HD = 16).
#[cfg(target_arch = "x86_64")]
// index loops over the register blocks read as the products they compute
#[allow(clippy::needless_range_loop)]
mod simd {
    use super::{HD, RB};
    use crate::matmul::Mat;
    use std::arch::x86_64::*;

    /// out\[c·tp + j\] = alpha·m\[j\]\[c\] for j < t, 0 for t ≤ j < tp (a
    /// multiple of 16): 16 rows' component c at a time, gathered.
    #[inline(always)]
    pub(super) fn transpose_scaled(m: Mat, t: usize, tp: usize, alpha: f32, out: &mut [f32]) {
        assert!(
            t >= 1
                && t <= m.rows
                && m.cols == HD
                && tp.is_multiple_of(16)
                && tp >= t
                && out.len() >= HD * tp
        );
        assert!(
            m.ld <= (i32::MAX as usize) / 16,
            "attention: row stride too large to gather"
        );
        // SAFETY: AVX-512F as in the products below; lane l of the gather
        // at (j0, c) reads m[j0 + l][c] only for j0 + l < t ≤ m.rows (the
        // mask), and the store writes out[c·tp + j0..+16] with j0 + 16 ≤ tp.
        unsafe {
            let idx = _mm512_mullo_epi32(
                _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                _mm512_set1_epi32(m.ld as i32),
            );
            let (mp, o, a) = (m.data.as_ptr(), out.as_mut_ptr(), _mm512_set1_ps(alpha));
            for j0 in (0..tp).step_by(16) {
                let live = t.saturating_sub(j0).min(16);
                let mask = crate::math::lane_mask(live);
                for c in 0..HD {
                    // row j0 (row t − 1 past the end, where every lane is masked)
                    let base = mp.add(j0.min(t - 1) * m.ld + c);
                    let g = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), mask, idx, base);
                    _mm512_storeu_ps(o.add(c * tp + j0), _mm512_mul_ps(g, a));
                }
            }
        }
    }

    /// The lanes of a row chunk from j0 that are below `live`.
    #[inline(always)]
    fn live_mask(j0: usize, live: usize) -> __mmask16 {
        crate::math::lane_mask(live.saturating_sub(j0))
    }

    /// max of row\[..live\] (live ≥ 1), in chunks of 16 with the last one
    /// masked.
    #[inline(always)]
    pub(super) fn max_row(row: &[f32], live: usize) -> f32 {
        assert!(live >= 1 && row.len() >= live.next_multiple_of(16));
        // SAFETY: AVX-512F as below; every load reads a whole chunk of 16
        // inside row (its length is a multiple of 16 past live).
        unsafe {
            let mut m = _mm512_set1_ps(f32::NEG_INFINITY);
            for j0 in (0..live).step_by(16) {
                let x = _mm512_mask_loadu_ps(m, live_mask(j0, live), row.as_ptr().add(j0));
                m = _mm512_max_ps(m, x);
            }
            _mm512_reduce_max_ps(m)
        }
    }

    /// row\[..live\] ← exp(row\[..live\] − shift) and row\[live..\] ← 0 (row's
    /// length a multiple of 16); returns Σ row\[..live\]. One sweep, the
    /// partial chunk through a mask instead of a copied tail.
    #[inline(always)]
    pub(super) fn exp_row(row: &mut [f32], live: usize, shift: f32) -> f32 {
        assert!(row.len().is_multiple_of(16) && live <= row.len());
        let mut acc = [0.0f32; 16];
        let p = row.as_mut_ptr();
        for j0 in (0..row.len()).step_by(16) {
            let mask = live_mask(j0, live);
            // SAFETY: AVX-512F as below; the chunk j0..j0 + 16 lies inside
            // row, whose length is a multiple of 16.
            unsafe {
                if mask == 0 {
                    _mm512_storeu_ps(p.add(j0), _mm512_setzero_ps());
                    continue;
                }
                let mut e = [0.0f32; 16];
                _mm512_storeu_ps(e.as_mut_ptr(), _mm512_loadu_ps(p.add(j0)));
                for x in e.iter_mut() {
                    *x = crate::math::exp(*x - shift);
                }
                let e = _mm512_maskz_loadu_ps(mask, e.as_ptr());
                _mm512_storeu_ps(p.add(j0), e);
                _mm512_storeu_ps(
                    acc.as_mut_ptr(),
                    _mm512_add_ps(_mm512_loadu_ps(acc.as_ptr()), e),
                );
            }
        }
        acc.iter().sum()
    }

    /// out\[r·tp + j\] = Σ_c a\[r\]\[c\]·bt\[c·tp + j\] for r < RB, j < nj
    /// (a multiple of 16 within tp).
    #[inline(always)]
    pub(super) fn scores(a: &[[f32; HD]; RB], bt: &[f32], tp: usize, nj: usize, out: &mut [f32]) {
        assert!(nj <= tp && bt.len() >= HD * tp && out.len() >= RB * tp && nj.is_multiple_of(16));
        // SAFETY: AVX-512F is enabled in every caller (the v4 wrappers); the
        // loads read bt[c·tp + j] for c < HD, j < nj ≤ tp and the stores
        // write out[r·tp + j], r < RB, inside the asserted lengths.
        unsafe {
            let (bt, o) = (bt.as_ptr(), out.as_mut_ptr());
            let mut j0 = 0;
            while j0 + 32 <= nj {
                let mut acc = [[_mm512_setzero_ps(); 2]; RB];
                for c in 0..HD {
                    let b0 = _mm512_loadu_ps(bt.add(c * tp + j0));
                    let b1 = _mm512_loadu_ps(bt.add(c * tp + j0 + 16));
                    for r in 0..RB {
                        let x = _mm512_set1_ps(a[r][c]);
                        acc[r][0] = _mm512_fmadd_ps(x, b0, acc[r][0]);
                        acc[r][1] = _mm512_fmadd_ps(x, b1, acc[r][1]);
                    }
                }
                for (r, acc) in acc.iter().enumerate() {
                    _mm512_storeu_ps(o.add(r * tp + j0), acc[0]);
                    _mm512_storeu_ps(o.add(r * tp + j0 + 16), acc[1]);
                }
                j0 += 32;
            }
            if j0 < nj {
                let mut acc = [_mm512_setzero_ps(); RB];
                for c in 0..HD {
                    let b0 = _mm512_loadu_ps(bt.add(c * tp + j0));
                    for r in 0..RB {
                        acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(a[r][c]), b0, acc[r]);
                    }
                }
                for (r, acc) in acc.iter().enumerate() {
                    _mm512_storeu_ps(o.add(r * tp + j0), *acc);
                }
            }
        }
    }

    /// Row r of the result: Σ_{j<n} p\[r·tp + j\]·m\[j\] for the RB rows of p.
    #[inline(always)]
    pub(super) fn times_rows(p: &[f32], tp: usize, m: Mat, n: usize) -> [[f32; HD]; RB] {
        assert!(n <= tp && p.len() >= RB * tp && n <= m.rows && m.cols == HD);
        // SAFETY: AVX-512F as above; p[r·tp + j] for r < RB, j < n ≤ tp and
        // m's rows j < n (HD elements each) are inside the asserted bounds.
        unsafe {
            let (pp, mp) = (p.as_ptr(), m.data.as_ptr());
            let mut acc = [[_mm512_setzero_ps(); 2]; RB];
            let mut j = 0;
            while j + 2 <= n {
                let m0 = _mm512_loadu_ps(mp.add(j * m.ld));
                let m1 = _mm512_loadu_ps(mp.add((j + 1) * m.ld));
                for r in 0..RB {
                    let (x0, x1) = (*pp.add(r * tp + j), *pp.add(r * tp + j + 1));
                    acc[r][0] = _mm512_fmadd_ps(_mm512_set1_ps(x0), m0, acc[r][0]);
                    acc[r][1] = _mm512_fmadd_ps(_mm512_set1_ps(x1), m1, acc[r][1]);
                }
                j += 2;
            }
            if j < n {
                let m0 = _mm512_loadu_ps(mp.add(j * m.ld));
                for r in 0..RB {
                    let x0 = *pp.add(r * tp + j);
                    acc[r][0] = _mm512_fmadd_ps(_mm512_set1_ps(x0), m0, acc[r][0]);
                }
            }
            let mut out = [[0.0f32; HD]; RB];
            for (o, acc) in out.iter_mut().zip(&acc) {
                _mm512_storeu_ps(o.as_mut_ptr(), _mm512_add_ps(acc[0], acc[1]));
            }
            out
        }
    }

    /// out\[j\] += Σ_r p\[r·tp + j\]·a\[r\] for j < n (out is n×HD contiguous).
    #[inline(always)]
    pub(super) fn add_transposed(
        p: &[f32],
        tp: usize,
        a: &[[f32; HD]; RB],
        n: usize,
        out: &mut [f32],
    ) {
        assert!(n <= tp && p.len() >= RB * tp && out.len() >= n * HD);
        // SAFETY: AVX-512F as above; p[r·tp + j] and out[j·HD..(j+1)·HD] for
        // j < n are inside the asserted bounds.
        unsafe {
            let (pp, op) = (p.as_ptr(), out.as_mut_ptr());
            let av: [__m512; RB] = std::array::from_fn(|r| _mm512_loadu_ps(a[r].as_ptr()));
            for j in 0..n {
                let mut o = _mm512_loadu_ps(op.add(j * HD));
                for (r, a) in av.iter().enumerate() {
                    o = _mm512_fmadd_ps(_mm512_set1_ps(*pp.add(r * tp + j)), *a, o);
                }
                _mm512_storeu_ps(op.add(j * HD), o);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
use simd::{add_transposed, exp_row, max_row, scores, times_rows, transpose_scaled};

/// A block of query rows i0..i0 + nr (nr ≤ RB) of a pair whose score rows
/// are tp apart, with its ALiBi slope.
#[derive(Clone, Copy)]
struct Block {
    i0: usize,
    nr: usize,
    tp: usize,
    slope: f32,
}

impl Block {
    /// Keys 0..n are live for some row of the block.
    fn n(&self) -> usize {
        self.i0 + self.nr
    }
    /// The live keys rounded up to whole 16-lane chunks.
    fn nj(&self) -> usize {
        self.n().next_multiple_of(L)
    }
}

/// The blocks of RB query rows (the last one shorter) of a pair of length t.
fn blocks(t: usize, tp: usize, slope: f32) -> impl Iterator<Item = Block> {
    (0..t).step_by(RB).map(move |i0| Block {
        i0,
        nr: RB.min(t - i0),
        tp,
        slope,
    })
}

#[cfg(target_arch = "x86_64")]
/// The block's score rows p[r·tp..r·tp + nj] = a_r·kt (`scores`), rows past
/// nr zeroed, ALiBi added to each live row's keys 0..=i; then `each(r, i,
/// row)` on every live row (query i = i0 + r), which turns it into
/// probabilities.
#[inline(always)]
fn block_rows(
    p: &mut [f32],
    a: &[[f32; HD]; RB],
    kt: &[f32],
    b: Block,
    mut each: impl FnMut(usize, usize, &mut [f32]),
) {
    scores(a, kt, b.tp, b.nj(), p);
    for r in 0..RB {
        let row = &mut p[r * b.tp..r * b.tp + b.nj()];
        if r >= b.nr {
            row.fill(0.0);
            continue;
        }
        let i = b.i0 + r;
        if b.slope != 0.0 {
            add_alibi(&mut row[..=i], b.slope, i);
        }
        each(r, i, row);
    }
}

#[cfg(target_arch = "x86_64")]
/// One pair's forward (see [`crate::attention::forward`]).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn fwd_pair(
    s: AttnShape,
    q: Mat,
    k: Mat,
    v: Mat,
    slope: f32,
    scr: &mut SmallScratch,
    lse_p: &mut [f32],
    y_base: *mut f32,
) {
    let (t, ldy) = (s.t, s.h * HD);
    let tp = t.next_multiple_of(L);
    transpose_scaled(k, t, tp, s.scale(), &mut scr.kt);
    let p = &mut scr.p[..RB * tp];
    for blk in blocks(t, tp, slope) {
        let (i0, nr, n) = (blk.i0, blk.nr, blk.n());
        let mut inv = [0.0f32; RB];
        block_rows(p, &load_rows(q, i0, 1.0), &scr.kt, blk, |r, i, row| {
            let mx = max_row(row, i + 1);
            let sum = exp_row(row, i + 1, mx);
            inv[r] = 1.0 / sum;
            lse_p[i] = mx + sum.ln();
        });
        let acc = times_rows(p, tp, v, n);
        for r in 0..nr {
            let y: [f32; HD] = std::array::from_fn(|c| acc[r][c] * inv[r]);
            // SAFETY: row i0 + r of this pair's y: HD elements at
            // y_base + (i0 + r)·h·d_h, inside y and written by no other task.
            unsafe { std::ptr::copy_nonoverlapping(y.as_ptr(), y_base.add((i0 + r) * ldy), HD) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
/// One pair's backward into contiguous T×d_h dq, dk, dv (see
/// [`crate::attention::backward`]).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn bwd_pair(
    s: AttnShape,
    x: PairIn,
    slope: f32,
    lse_p: &[f32],
    scr: &mut SmallScratch,
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    let t = s.t;
    let tp = t.next_multiple_of(L);
    let scale = s.scale();
    transpose_scaled(x.k, t, tp, scale, &mut scr.kt);
    transpose_scaled(x.v, t, tp, 1.0, &mut scr.vt);
    dk.fill(0.0);
    dv.fill(0.0);
    let (p, dp) = (&mut scr.p[..RB * tp], &mut scr.dp[..RB * tp]);
    for blk in blocks(t, tp, slope) {
        let (i0, nr, n, nj) = (blk.i0, blk.nr, blk.n(), blk.nj());
        let (qa, dya) = (load_rows(x.q, i0, 1.0), load_rows(x.dy, i0, 1.0));
        // P (recomputed from lse), zero above the diagonal and in rows ≥ nr
        let mut dsum = [0.0f32; RB];
        block_rows(p, &qa, &scr.kt, blk, |r, i, row| {
            exp_row(row, i + 1, lse_p[i]);
            // D_i = Σ_c dY_ic·Y_ic
            dsum[r] = dot(
                &x.dy.data[i * x.dy.ld..][..HD],
                &x.y.data[i * x.y.ld..][..HD],
            );
        });
        // dV[0..n] += Pᵀ·dY_block
        add_transposed(p, tp, &dya, n, dv);
        // dP = dY_block·Vᵀ, then dS = P∘(dP − D) in place of dP
        scores(&dya, &scr.vt, tp, nj, dp);
        for r in 0..RB {
            let d = dsum[r];
            for (g, &pv) in dp[r * tp..r * tp + n]
                .iter_mut()
                .zip(&p[r * tp..r * tp + n])
            {
                *g = pv * (*g - d);
            }
        }
        // dK[0..n] += s·dSᵀ·Q_block;  dQ_block = s·dS·K[0..n]
        add_transposed(dp, tp, &load_rows(x.q, i0, scale), n, dk);
        let acc = times_rows(dp, tp, x.k, n);
        for (r, acc) in acc.iter().enumerate().take(nr) {
            for (o, a) in dq[(i0 + r) * HD..(i0 + r + 1) * HD].iter_mut().zip(acc) {
                *o = a * scale;
            }
        }
    }
}

/// Defines `$name`, which runs `$f` compiled for AVX-512; the caller has
/// checked [`supported`].
macro_rules! dispatch {
    ($name:ident => $f:ident ($($arg:ident : $ty:ty),*)) => {
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn $name($($arg: $ty),*) {
            assert!(supported(HD), "attention: the small-head kernels need AVX-512");
            #[cfg(target_arch = "x86_64")]
            {
                #[allow(clippy::too_many_arguments)]
                #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
                unsafe fn v4($($arg: $ty),*) {
                    $f($($arg),*)
                }
                // SAFETY: supported() saw AVX-512.
                unsafe { v4($($arg),*) }
            }
        }
    };
}

dispatch!(fwd => fwd_pair(s: AttnShape, q: Mat, k: Mat, v: Mat, slope: f32, scr: &mut SmallScratch, lse_p: &mut [f32], y_base: *mut f32));
dispatch!(bwd => bwd_pair(s: AttnShape, x: PairIn, slope: f32, lse_p: &[f32], scr: &mut SmallScratch, dq: &mut [f32], dk: &mut [f32], dv: &mut [f32]));
