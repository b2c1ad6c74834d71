//! Causal softmax attention per (batch, head), with optional ALiBi slopes.
//!
//! For one (batch, head) pair with queries, keys and values Q, K, V (T×d_h),
//! scale s = 1/√d_h and, with ALiBi, the head's slope m:
//!
//! ```text
//! S_ij = s·q_i·k_j − m·(i − j)       for j ≤ i (the causal half only)
//! P_ij = exp(S_ij − lse_i),  lse_i = log Σ_{j≤i} exp(S_ij)
//! Y    = P·V
//! ```
//!
//! Backward, given dY, recomputes P from the saved lse (no T×T array is
//! kept between the passes):
//!
//! ```text
//! dV = Pᵀ·dY     dP = dY·Vᵀ     D_i = Σ_c dY_ic·Y_ic
//! dS = P∘(dP − D)               dQ = s·dS·K     dK = s·dSᵀ·Q
//! ```
//!
//! The T query rows are processed in blocks of [`BLOCK_ROWS`]; a block of
//! rows i₀..i₁ only meets keys 0..i₁, so the matmuls skip the masked upper
//! triangle except inside the diagonal block, and the exponentials and
//! element-wise products are computed for j ≤ i only. The scratch per task is
//! two blocks of BLOCK_ROWS×T floats, so any T that fits memory works.
//!
//! Layouts. Q, K, V (and, for the backward, Y and dY) are read through
//! [`Heads`] views: element (b, h, t, c) at `offset + b·s_b + h·s_h + t·s_t + c`,
//! the head dimension contiguous, so the strided q/k/v views of a packed QKV
//! projection need no copy. The forward writes Y contiguous in (b, T, h, d_h)
//! order (= (b, T, d) with d = h·d_h, the input of the output projection) and
//! lse contiguous in (b, h, T) order. The backward writes dQ, dK, dV
//! contiguous in (b, h, T, d_h) order.
//!
//! Work is split over (batch, head) pairs with rayon; the matmuls inside a
//! pair run on the calling thread ([`Threads::One`]). Each pair's body is
//! compiled for AVX-512, AVX2 and the baseline and chosen at run time
//! ([`crate::math::simd`]), so the row loops (softmax with
//! [`crate::math::exp`]) are vectorised; a row's tail shorter than 16 lanes
//! goes through a padded lane array instead of a scalar loop.

use crate::attn_small as small;
use crate::math::{dot_impl as dot, exp, max_impl as max, LANES as L};
use crate::matmul::{matmul, Mat, Threads};
use rayon::prelude::*;

/// Query rows per block (see the module docs).
pub const BLOCK_ROWS: usize = 32;

/// Shape of an attention call: batch, heads, sequence length, head size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnShape {
    pub b: usize,
    pub h: usize,
    pub t: usize,
    pub hd: usize,
}

impl AttnShape {
    /// Number of (batch, head) pairs.
    pub fn pairs(&self) -> usize {
        self.b * self.h
    }
    /// Elements of a (b, h, T, d_h) array.
    pub fn numel(&self) -> usize {
        self.b * self.h * self.t * self.hd
    }
    /// The attention scale 1/√d_h.
    pub fn scale(&self) -> f32 {
        1.0 / (self.hd as f32).sqrt()
    }
}

/// A (b, h, T, d_h) view of a slice: element (b, h, t, c) at
/// `offset + b·strides[0] + h·strides[1] + t·strides[2] + c`.
#[derive(Clone, Copy, Debug)]
pub struct Heads<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    /// Element strides of the b, h and t dimensions.
    pub strides: [usize; 3],
}

impl<'a> Heads<'a> {
    /// A contiguous (b, h, T, d_h) array.
    pub fn bhtd(data: &'a [f32], s: AttnShape) -> Self {
        Self {
            data,
            offset: 0,
            strides: [s.h * s.t * s.hd, s.t * s.hd, s.hd],
        }
    }
    /// A contiguous (b, T, h, d_h) array (e.g. the forward's output).
    pub fn bthd(data: &'a [f32], s: AttnShape) -> Self {
        Self {
            data,
            offset: 0,
            strides: [s.t * s.h * s.hd, s.hd, s.h * s.hd],
        }
    }
    fn check(&self, s: AttnShape, what: &str) {
        if s.numel() == 0 {
            return;
        }
        let last = self.offset
            + (s.b - 1) * self.strides[0]
            + (s.h - 1) * self.strides[1]
            + (s.t - 1) * self.strides[2]
            + s.hd;
        assert!(
            last <= self.data.len(),
            "attention: {what} view reaches element {last} of a slice of {}",
            self.data.len()
        );
        assert!(
            self.strides[2] >= s.hd || s.t == 1,
            "attention: {what} rows overlap (t stride {} < d_h {})",
            self.strides[2],
            s.hd
        );
    }
    /// The T×d_h matrix of pair (bi, hi).
    #[inline]
    fn mat(&self, s: AttnShape, bi: usize, hi: usize) -> Mat<'a> {
        let base = self.offset + bi * self.strides[0] + hi * self.strides[1];
        let len = (s.t - 1) * self.strides[2] + s.hd;
        Mat::strided(&self.data[base..base + len], s.t, s.hd, self.strides[2])
    }
}

/// The rows r₀..r₁ of a matrix.
#[inline]
fn rows(m: Mat<'_>, r0: usize, r1: usize) -> Mat<'_> {
    if r1 == r0 {
        return Mat::strided(&m.data[..0], 0, m.cols, m.ld);
    }
    let len = (r1 - r0 - 1) * m.ld + m.cols;
    Mat::strided(&m.data[r0 * m.ld..r0 * m.ld + len], r1 - r0, m.cols, m.ld)
}

fn check_alibi(s: AttnShape, alibi: Option<&[f32]>) {
    if let Some(m) = alibi {
        assert_eq!(
            m.len(),
            s.h,
            "attention: {} ALiBi slopes for {} heads",
            m.len(),
            s.h
        );
    }
}

/// Forward pass. `y` (b·T·h·d_h, written in (b, T, h, d_h) order) and `lse`
/// (b·h·T, (b, h, T) order) are overwritten.
pub fn forward(
    s: AttnShape,
    q: Heads,
    k: Heads,
    v: Heads,
    alibi: Option<&[f32]>,
    y: &mut [f32],
    lse: &mut [f32],
) {
    forward_with(s, q, k, v, alibi, y, lse, small::supported(s.hd))
}

/// [`forward`] through the small-head kernels (`small`, which needs
/// [`small::supported`]) or the general path.
#[allow(clippy::too_many_arguments)]
fn forward_with(
    s: AttnShape,
    q: Heads,
    k: Heads,
    v: Heads,
    alibi: Option<&[f32]>,
    y: &mut [f32],
    lse: &mut [f32],
    use_small: bool,
) {
    assert_eq!(
        y.len(),
        s.numel(),
        "attention: y must hold b·T·h·d_h elements"
    );
    assert_eq!(
        lse.len(),
        s.pairs() * s.t,
        "attention: lse must hold b·h·T elements"
    );
    if s.numel() == 0 {
        return;
    }
    q.check(s, "q");
    k.check(s, "k");
    v.check(s, "v");
    check_alibi(s, alibi);
    let out = crate::SharedMut::new(y);
    let pair = |p: usize| {
        let (bi, hi) = (p / s.h, p % s.h);
        let slope = alibi.map_or(0.0, |m| m[hi]);
        let qkv = (q.mat(s, bi, hi), k.mat(s, bi, hi), v.mat(s, bi, hi));
        // SAFETY: pair (bi, hi) writes only y[bi, :, hi, :], disjoint
        // from every other pair's elements; y holds b·T·h·d_h elements.
        let y_base = unsafe { out.get().add((bi * s.t * s.h + hi) * s.hd) };
        (slope, qkv, y_base)
    };
    let lse_pairs = lse.par_chunks_mut(s.t).enumerate();
    if use_small {
        lse_pairs.for_each_init(
            || small::SmallScratch::new(s, false),
            |scr, (p, lse_p)| {
                let (slope, (qm, km, vm), y_base) = pair(p);
                small::fwd(s, qm, km, vm, slope, scr, lse_p, y_base);
            },
        );
    } else {
        lse_pairs.for_each_init(
            || Scratch::new(s, 1),
            |scr, (p, lse_p)| {
                let (slope, (qm, km, vm), y_base) = pair(p);
                fwd_pair_isa(s, qm, km, vm, slope, scr, lse_p, y_base);
            },
        );
    }
}

/// Backward pass: the gradients of Σ dY∘Y with respect to q, k and v, each
/// overwritten in (b, h, T, d_h) order. `y` and `lse` are the forward's
/// outputs (`y` as a view, e.g. [`Heads::bthd`]), `dy` the output gradient.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    s: AttnShape,
    q: Heads,
    k: Heads,
    v: Heads,
    alibi: Option<&[f32]>,
    y: Heads,
    lse: &[f32],
    dy: Heads,
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    let small = small::supported(s.hd);
    backward_with(s, q, k, v, alibi, y, lse, dy, dq, dk, dv, small)
}

/// [`backward`] through the small-head kernels (`small`, which needs
/// [`small::supported`]) or the general path.
#[allow(clippy::too_many_arguments)]
fn backward_with(
    s: AttnShape,
    q: Heads,
    k: Heads,
    v: Heads,
    alibi: Option<&[f32]>,
    y: Heads,
    lse: &[f32],
    dy: Heads,
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
    use_small: bool,
) {
    let n = s.numel();
    assert!(
        dq.len() == n && dk.len() == n && dv.len() == n,
        "attention: dq, dk, dv must hold b·h·T·d_h elements"
    );
    assert_eq!(
        lse.len(),
        s.pairs() * s.t,
        "attention: lse must hold b·h·T elements"
    );
    if n == 0 {
        return;
    }
    for (view, what) in [(q, "q"), (k, "k"), (v, "v"), (y, "y"), (dy, "dy")] {
        view.check(s, what);
    }
    check_alibi(s, alibi);
    let th = s.t * s.hd;
    let pair = |p: usize| {
        let (bi, hi) = (p / s.h, p % s.h);
        let ins = PairIn {
            q: q.mat(s, bi, hi),
            k: k.mat(s, bi, hi),
            v: v.mat(s, bi, hi),
            y: y.mat(s, bi, hi),
            dy: dy.mat(s, bi, hi),
        };
        (alibi.map_or(0.0, |m| m[hi]), ins)
    };
    let pairs = dq
        .par_chunks_mut(th)
        .zip(dk.par_chunks_mut(th))
        .zip(dv.par_chunks_mut(th))
        .zip(lse.par_chunks(s.t))
        .enumerate();
    if use_small {
        pairs.for_each_init(
            || small::SmallScratch::new(s, true),
            |scr, (p, (((dq_p, dk_p), dv_p), lse_p))| {
                let (slope, ins) = pair(p);
                small::bwd(s, ins, slope, lse_p, scr, dq_p, dk_p, dv_p);
            },
        );
    } else {
        pairs.for_each_init(
            || Scratch::new(s, 2),
            |scr, (p, (((dq_p, dk_p), dv_p), lse_p))| {
                let (slope, ins) = pair(p);
                bwd_pair_isa(s, ins, slope, lse_p, scr, dq_p, dk_p, dv_p);
            },
        );
    }
}

/// Per-task scratch: `n` blocks of BLOCK_ROWS×T floats plus a BLOCK_ROWS×d_h block.
struct Scratch {
    a: Vec<f32>,
    b: Vec<f32>,
    small: Vec<f32>,
}

impl Scratch {
    fn new(s: AttnShape, n: usize) -> Self {
        let br = BLOCK_ROWS.min(s.t);
        Self {
            a: vec![0.0; br * s.t],
            b: if n > 1 {
                vec![0.0; br * s.t]
            } else {
                Vec::new()
            },
            small: vec![0.0; br * s.hd.max(1)],
        }
    }
}

/// One pair's forward: lse_p (T) and y rows at `y_base + t·h·d_h`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn fwd_pair(
    s: AttnShape,
    q: Mat,
    k: Mat,
    v: Mat,
    slope: f32,
    scr: &mut Scratch,
    lse_p: &mut [f32],
    y_base: *mut f32,
) {
    let (t, hd, ldy) = (s.t, s.hd, s.h * s.hd);
    let scale = s.scale();
    let mut i0 = 0;
    while i0 < t {
        let i1 = (i0 + BLOCK_ROWS).min(t);
        let br = i1 - i0;
        let ld = i1; // row stride of the score block: keys 0..i1
        let sc = &mut scr.a[..br * ld];
        matmul(
            sc,
            ld,
            rows(q, i0, i1),
            false,
            rows(k, 0, i1),
            true,
            scale,
            false,
            Threads::One,
        );
        for r in 0..br {
            let i = i0 + r;
            let row = &mut sc[r * ld..(r + 1) * ld];
            let (live, masked) = row.split_at_mut(i + 1);
            if slope != 0.0 {
                add_alibi(live, slope, i);
            }
            let mx = max(live);
            let sum = exp_sub_sum(live, mx);
            let inv = 1.0 / sum;
            for x in live.iter_mut() {
                *x *= inv;
            }
            masked.fill(0.0);
            lse_p[i] = mx + sum.ln();
        }
        let yb = &mut scr.small[..br * hd];
        matmul(
            yb,
            hd,
            Mat::strided(sc, br, i1, ld),
            false,
            rows(v, 0, i1),
            false,
            1.0,
            false,
            Threads::One,
        );
        for r in 0..br {
            // SAFETY: row i0 + r of this pair's y: hd elements at
            // y_base + (i0 + r)·h·d_h, inside y and written by no other task.
            unsafe {
                std::ptr::copy_nonoverlapping(yb[r * hd..].as_ptr(), y_base.add((i0 + r) * ldy), hd)
            };
        }
        i0 = i1;
    }
}

/// One pair's inputs to the backward, as T×d_h matrices.
#[derive(Clone, Copy)]
pub(crate) struct PairIn<'a> {
    pub(crate) q: Mat<'a>,
    pub(crate) k: Mat<'a>,
    pub(crate) v: Mat<'a>,
    pub(crate) y: Mat<'a>,
    pub(crate) dy: Mat<'a>,
}

/// One pair's backward into contiguous T×d_h dq, dk, dv.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn bwd_pair(
    s: AttnShape,
    x: PairIn,
    slope: f32,
    lse_p: &[f32],
    scr: &mut Scratch,
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    let (t, hd) = (s.t, s.hd);
    let scale = s.scale();
    dk.fill(0.0);
    dv.fill(0.0);
    let dsum = &mut scr.small;
    let mut i0 = 0;
    while i0 < t {
        let i1 = (i0 + BLOCK_ROWS).min(t);
        let br = i1 - i0;
        let ld = i1;
        let (qb, dyb) = (rows(x.q, i0, i1), rows(x.dy, i0, i1));
        // D_i = Σ_c dY_ic·Y_ic
        for (r, d) in dsum[..br].iter_mut().enumerate() {
            let (a, b) = (
                &x.dy.data[(i0 + r) * x.dy.ld..][..hd],
                &x.y.data[(i0 + r) * x.y.ld..][..hd],
            );
            *d = dot(a, b);
        }
        // P (recomputed from lse), zero above the diagonal
        let p = &mut scr.a[..br * ld];
        matmul(
            p,
            ld,
            qb,
            false,
            rows(x.k, 0, i1),
            true,
            scale,
            false,
            Threads::One,
        );
        for r in 0..br {
            let i = i0 + r;
            let row = &mut p[r * ld..(r + 1) * ld];
            let (live, masked) = row.split_at_mut(i + 1);
            if slope != 0.0 {
                add_alibi(live, slope, i);
            }
            exp_sub(live, lse_p[i]);
            masked.fill(0.0);
        }
        // dV[0..i1] += Pᵀ·dY_block
        let pm = Mat::strided(p, br, i1, ld);
        matmul(
            &mut dv[..i1 * hd],
            hd,
            pm,
            true,
            dyb,
            false,
            1.0,
            true,
            Threads::One,
        );
        // dP = dY_block·V[0..i1]ᵀ, then dS = P∘(dP − D) in place of dP
        let dp = &mut scr.b[..br * ld];
        matmul(
            dp,
            ld,
            dyb,
            false,
            rows(x.v, 0, i1),
            true,
            1.0,
            false,
            Threads::One,
        );
        for r in 0..br {
            let n = i0 + r + 1;
            let (prow, dprow) = (&p[r * ld..r * ld + n], &mut dp[r * ld..(r + 1) * ld]);
            let (live, masked) = dprow.split_at_mut(n);
            let d = dsum[r];
            for (g, &pv) in live.iter_mut().zip(prow) {
                *g = pv * (*g - d);
            }
            masked.fill(0.0);
        }
        let dsm = Mat::strided(dp, br, i1, ld);
        // dQ_block = s·dS·K[0..i1];  dK[0..i1] += s·dSᵀ·Q_block
        matmul(
            &mut dq[i0 * hd..i1 * hd],
            hd,
            dsm,
            false,
            rows(x.k, 0, i1),
            false,
            scale,
            false,
            Threads::One,
        );
        matmul(
            &mut dk[..i1 * hd],
            hd,
            dsm,
            true,
            qb,
            false,
            scale,
            true,
            Threads::One,
        );
        i0 = i1;
    }
}

// ---------------------------------------------------------------------------
// Row loops, written over 16-lane chunks so they vectorise, and compiled per
// SIMD level (`simd_dispatch!` below). max and dot are the shared lane
// reductions of `math`.

#[inline(always)]
pub(crate) fn add_alibi(row: &mut [f32], slope: f32, i: usize) {
    // −m·(i − j) = m·(j − i) for j = 0..=i; j − i is exact in f32
    let i = i as f32;
    for (j, x) in row.iter_mut().enumerate() {
        *x += slope * (j as f32 - i);
    }
}

/// row ← exp(row − m); returns Σ row. The tail shorter than 16 lanes goes
/// through a padded lane array so that it too runs vectorised.
#[inline(always)]
fn exp_sub_sum(row: &mut [f32], m: f32) -> f32 {
    let mut acc = [0f32; L];
    let mut chunks = row.chunks_exact_mut(L);
    for c in &mut chunks {
        for l in 0..L {
            c[l] = exp(c[l] - m);
            acc[l] += c[l];
        }
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let mut pad = [f32::NEG_INFINITY; L];
        pad[..tail.len()].copy_from_slice(tail);
        for l in 0..L {
            pad[l] = exp(pad[l] - m);
            acc[l] += pad[l];
        }
        tail.copy_from_slice(&pad[..tail.len()]);
    }
    acc.iter().sum()
}

/// row ← exp(row − m).
#[inline(always)]
fn exp_sub(row: &mut [f32], m: f32) {
    let mut chunks = row.chunks_exact_mut(L);
    for c in &mut chunks {
        for x in c.iter_mut() {
            *x = exp(*x - m);
        }
    }
    let tail = chunks.into_remainder();
    if !tail.is_empty() {
        let mut pad = [0f32; L];
        pad[..tail.len()].copy_from_slice(tail);
        for x in pad.iter_mut() {
            *x = exp(*x - m);
        }
        tail.copy_from_slice(&pad[..tail.len()]);
    }
}

crate::simd_dispatch!(fn fwd_pair_isa(s: AttnShape, q: Mat, k: Mat, v: Mat, slope: f32, scr: &mut Scratch, lse_p: &mut [f32], y_base: *mut f32) => fwd_pair);
crate::simd_dispatch!(fn bwd_pair_isa(s: AttnShape, x: PairIn, slope: f32, lse_p: &[f32], scr: &mut Scratch, dq: &mut [f32], dk: &mut [f32], dv: &mut [f32]) => bwd_pair);

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn randn(n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
        (0..n).map(|_| rng.random_range(-1.5f32..1.5)).collect()
    }

    /// Naive f64 attention of one pair: (y rows, lse).
    fn naive_pair(
        t: usize,
        hd: usize,
        q: &dyn Fn(usize, usize) -> f64,
        k: &dyn Fn(usize, usize) -> f64,
        v: &dyn Fn(usize, usize) -> f64,
        slope: f64,
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let scale = 1.0 / (hd as f64).sqrt();
        let mut p = vec![0.0; t * t];
        let mut y = vec![0.0; t * hd];
        let mut lse = vec![0.0; t];
        for i in 0..t {
            let s: Vec<f64> = (0..=i)
                .map(|j| {
                    scale * (0..hd).map(|c| q(i, c) * k(j, c)).sum::<f64>() - slope * (i - j) as f64
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
            lse[i] = m + z.ln();
            for j in 0..=i {
                p[i * t + j] = (s[j] - lse[i]).exp();
            }
            for c in 0..hd {
                y[i * hd + c] = (0..=i).map(|j| p[i * t + j] * v(j, c)).sum();
            }
        }
        (y, lse, p)
    }

    /// A strided layout: the q/k/v views of a packed (b, T, 3, h, d_h) array
    /// (`which` = 0, 1, 2), as the model's QKV projection produces.
    fn packed(s: AttnShape, data: &[f32], which: usize) -> Heads<'_> {
        let d = s.h * s.hd;
        Heads {
            data,
            offset: which * d,
            strides: [s.t * 3 * d, s.hd, 3 * d],
        }
    }

    struct Case {
        s: AttnShape,
        qkv: Vec<f32>,
        alibi: Option<Vec<f32>>,
    }

    impl Case {
        fn new(b: usize, h: usize, t: usize, hd: usize, alibi: bool, seed: u64) -> Self {
            let s = AttnShape { b, h, t, hd };
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let qkv = randn(3 * s.numel(), &mut rng);
            let alibi = alibi.then(|| (0..h).map(|i| 0.5f32.powi(i as i32 + 1) * 2.0).collect());
            Self { s, qkv, alibi }
        }
        fn views(&self) -> (Heads<'_>, Heads<'_>, Heads<'_>) {
            (
                packed(self.s, &self.qkv, 0),
                packed(self.s, &self.qkv, 1),
                packed(self.s, &self.qkv, 2),
            )
        }
        fn at(&self, which: usize, bi: usize, hi: usize) -> impl Fn(usize, usize) -> f64 + '_ {
            let x = packed(self.s, &self.qkv, which);
            move |t, c| {
                x.data[x.offset + bi * x.strides[0] + hi * x.strides[1] + t * x.strides[2] + c]
                    as f64
            }
        }
        fn slope(&self, hi: usize) -> f64 {
            self.alibi.as_ref().map_or(0.0, |m| m[hi] as f64)
        }
        fn forward(&self) -> (Vec<f32>, Vec<f32>) {
            let s = self.s;
            let (q, k, v) = self.views();
            let mut y = vec![f32::NAN; s.numel()];
            let mut lse = vec![f32::NAN; s.pairs() * s.t];
            forward(s, q, k, v, self.alibi.as_deref(), &mut y, &mut lse);
            (y, lse)
        }
    }

    const SHAPES: &[(usize, usize, usize, usize)] = &[
        (1, 1, 1, 8),
        (2, 3, 5, 8),
        (2, 2, 17, 16),
        (1, 2, 33, 32),
        (3, 2, 70, 16),
        (1, 1, 40, 5),
    ];

    #[test]
    fn forward_matches_naive_f64() {
        for (n, &(b, h, t, hd)) in SHAPES.iter().enumerate() {
            for alibi in [false, true] {
                let c = Case::new(b, h, t, hd, alibi, n as u64);
                let (y, lse) = c.forward();
                let s = c.s;
                let mut worst = 0f64;
                for bi in 0..b {
                    for hi in 0..h {
                        let (yw, lw, _) = naive_pair(
                            t,
                            hd,
                            &c.at(0, bi, hi),
                            &c.at(1, bi, hi),
                            &c.at(2, bi, hi),
                            c.slope(hi),
                        );
                        for i in 0..t {
                            let got = lse[(bi * h + hi) * t + i] as f64;
                            assert!(
                                (got - lw[i]).abs() < 1e-5 * (1.0 + lw[i].abs()),
                                "lse {b},{h},{t},{hd} alibi={alibi}: {got} vs {}",
                                lw[i]
                            );
                            for cc in 0..hd {
                                let got = y[((bi * t + i) * s.h + hi) * hd + cc] as f64;
                                worst = worst.max((got - yw[i * hd + cc]).abs());
                            }
                        }
                    }
                }
                assert!(
                    worst < 2e-6 * 10.0,
                    "y {b},{h},{t},{hd} alibi={alibi}: max error {worst}"
                );
            }
        }
    }

    #[test]
    fn forward_rows_see_only_the_past() {
        // Changing key/value t₀ must leave the outputs of rows i < t₀ unchanged.
        let mut c = Case::new(1, 2, 40, 16, true, 9);
        let (y0, _) = c.forward();
        let (s, t0) = (c.s, 23);
        let d = s.h * s.hd;
        for x in &mut c.qkv[t0 * 3 * d + d..(t0 + 1) * 3 * d] {
            *x += 1.0;
        }
        let (y1, _) = c.forward();
        for i in 0..s.t {
            let row = i * d..(i + 1) * d;
            let same = y0[row.clone()] == y1[row];
            assert_eq!(same, i < t0, "row {i}");
        }
    }

    /// Naive f64 gradients of Σ w∘y for one pair: (dq, dk, dv), each T×d_h.
    fn naive_grads(
        c: &Case,
        bi: usize,
        hi: usize,
        w: &dyn Fn(usize, usize) -> f64,
    ) -> [Vec<f64>; 3] {
        let (t, hd) = (c.s.t, c.s.hd);
        let scale = 1.0 / (hd as f64).sqrt();
        let (q, k, v) = (c.at(0, bi, hi), c.at(1, bi, hi), c.at(2, bi, hi));
        let (_, _, p) = naive_pair(t, hd, &q, &k, &v, c.slope(hi));
        let (mut dq, mut dk, mut dv) = (vec![0.0; t * hd], vec![0.0; t * hd], vec![0.0; t * hd]);
        for i in 0..t {
            // dP_ij = Σ_c w_ic v_jc; dS_ij = P_ij (dP_ij − Σ_l P_il dP_il)
            let dp: Vec<f64> = (0..=i)
                .map(|j| (0..hd).map(|cc| w(i, cc) * v(j, cc)).sum())
                .collect();
            let dd: f64 = (0..=i).map(|j| p[i * t + j] * dp[j]).sum();
            for j in 0..=i {
                let pij = p[i * t + j];
                let ds = pij * (dp[j] - dd);
                for cc in 0..hd {
                    dv[j * hd + cc] += pij * w(i, cc);
                    dq[i * hd + cc] += scale * ds * k(j, cc);
                    dk[j * hd + cc] += scale * ds * q(i, cc);
                }
            }
        }
        [dq, dk, dv]
    }

    fn run_backward(c: &Case, y: &[f32], lse: &[f32], w: &[f32]) -> [Vec<f32>; 3] {
        let s = c.s;
        let (q, k, v) = c.views();
        let n = s.numel();
        let (mut dq, mut dk, mut dv) = (vec![f32::NAN; n], vec![f32::NAN; n], vec![f32::NAN; n]);
        backward(
            s,
            q,
            k,
            v,
            c.alibi.as_deref(),
            Heads::bthd(y, s),
            lse,
            Heads::bthd(w, s),
            &mut dq,
            &mut dk,
            &mut dv,
        );
        [dq, dk, dv]
    }

    #[test]
    fn backward_matches_naive_f64() {
        for (n, &(b, h, t, hd)) in SHAPES.iter().enumerate() {
            for alibi in [false, true] {
                let c = Case::new(b, h, t, hd, alibi, 100 + n as u64);
                let s = c.s;
                let (y, lse) = c.forward();
                let mut rng = ChaCha8Rng::seed_from_u64(7 + n as u64);
                let w = randn(s.numel(), &mut rng); // dY in (b, T, h, d_h) order
                let got = run_backward(&c, &y, &lse, &w);
                for bi in 0..b {
                    for hi in 0..h {
                        let wf = |i: usize, cc: usize| w[((bi * t + i) * h + hi) * hd + cc] as f64;
                        let want = naive_grads(&c, bi, hi, &wf);
                        // errors relative to the pair's largest gradient (dq is
                        // exactly 0 at T = 1, where only rounding remains)
                        let scale = want.iter().flatten().fold(1e-3f64, |m, x| m.max(x.abs()));
                        for (g, (got, want)) in got.iter().zip(&want).enumerate() {
                            for e in 0..t * hd {
                                let x = got[((bi * h + hi) * t) * hd + e] as f64;
                                assert!(
                                    (x - want[e]).abs() < 2e-5 * scale,
                                    "grad {} of {b},{h},{t},{hd} alibi={alibi} pair ({bi},{hi}) elem {e}: {x} vs {}",
                                    ["dq", "dk", "dv"][g],
                                    want[e]
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        // L = Σ w∘y, central differences in f64 of the naive forward with
        // one input element perturbed, against the kernel's gradient.
        for (b, h, t, hd, alibi) in [
            (1, 2, 9, 8, true),
            (2, 1, 34, 16, false),
            (1, 1, 1, 8, false),
        ] {
            let c = Case::new(b, h, t, hd, alibi, 55);
            let s = c.s;
            let (y, lse) = c.forward();
            let mut rng = ChaCha8Rng::seed_from_u64(56);
            let w = randn(s.numel(), &mut rng);
            let got = run_backward(&c, &y, &lse, &w);
            let d = h * hd;
            let loss = |qkv: &[f64], bi: usize, hi: usize| -> f64 {
                let at = |which: usize| {
                    move |tt: usize, cc: usize| {
                        qkv[(bi * t + tt) * 3 * d + which * d + hi * hd + cc]
                    }
                };
                let (yy, _, _) = naive_pair(t, hd, &at(0), &at(1), &at(2), c.slope(hi));
                (0..t)
                    .flat_map(|i| (0..hd).map(move |cc| (i, cc)))
                    .map(|(i, cc)| w[((bi * t + i) * h + hi) * hd + cc] as f64 * yy[i * hd + cc])
                    .sum()
            };
            let base: Vec<f64> = c.qkv.iter().map(|&x| x as f64).collect();
            let eps = 1e-5;
            let mut checked = 0;
            for bi in 0..b {
                for hi in 0..h {
                    for tt in 0..t {
                        for which in 0..3 {
                            for cc in (0..hd).step_by(3) {
                                let idx = (bi * t + tt) * 3 * d + which * d + hi * hd + cc;
                                let mut x = base.clone();
                                x[idx] += eps;
                                let lp = loss(&x, bi, hi);
                                x[idx] -= 2.0 * eps;
                                let lm = loss(&x, bi, hi);
                                let fd = (lp - lm) / (2.0 * eps);
                                let an = got[which][((bi * h + hi) * t + tt) * hd + cc] as f64;
                                assert!(
                                    (fd - an).abs() < 1e-4 * (1.0 + fd.abs()),
                                    "{b},{h},{t},{hd}: d{}[{bi},{hi},{tt},{cc}] fd {fd} vs {an}",
                                    ["q", "k", "v"][which]
                                );
                                checked += 1;
                            }
                        }
                    }
                }
            }
            assert!(checked > 0);
        }
    }

    #[test]
    fn contiguous_bhtd_views_match_packed() {
        let c = Case::new(2, 3, 20, 8, true, 3);
        let s = c.s;
        let (y0, l0) = c.forward();
        let copy = |which: usize| -> Vec<f32> {
            let x = c.at(which, 0, 0);
            let _ = x;
            let mut out = vec![0.0; s.numel()];
            for bi in 0..s.b {
                for hi in 0..s.h {
                    let f = c.at(which, bi, hi);
                    for tt in 0..s.t {
                        for cc in 0..s.hd {
                            out[((bi * s.h + hi) * s.t + tt) * s.hd + cc] = f(tt, cc) as f32;
                        }
                    }
                }
            }
            out
        };
        let (q, k, v) = (copy(0), copy(1), copy(2));
        let mut y = vec![0.0; s.numel()];
        let mut lse = vec![0.0; s.pairs() * s.t];
        forward(
            s,
            Heads::bhtd(&q, s),
            Heads::bhtd(&k, s),
            Heads::bhtd(&v, s),
            c.alibi.as_deref(),
            &mut y,
            &mut lse,
        );
        assert_eq!(y, y0);
        assert_eq!(lse, l0);
    }

    /// On a CPU with the small-head kernels (d_h = 16, AVX-512), they and the
    /// general path give the same outputs and gradients (to rounding) at
    /// lengths that are and are not multiples of the row block and of 16,
    /// with and without ALiBi, on packed views. Elsewhere only the general
    /// path runs, which the naive checks above cover.
    #[test]
    fn small_head_kernels_match_the_general_path() {
        if !small::supported(16) {
            eprintln!("no small-head kernels on this CPU (they need AVX-512): nothing to compare");
            return;
        }
        for (n, &(b, h, t)) in [
            (2usize, 3usize, 1usize),
            (1, 2, 3),
            (2, 2, 17),
            (1, 3, 64),
            (2, 1, 70),
        ]
        .iter()
        .enumerate()
        {
            for alibi in [false, true] {
                let c = Case::new(b, h, t, 16, alibi, 40 + n as u64);
                let s = c.s;
                let (q, k, v) = c.views();
                let run = |small: bool| {
                    let mut y = vec![f32::NAN; s.numel()];
                    let mut lse = vec![f32::NAN; s.pairs() * t];
                    forward_with(s, q, k, v, c.alibi.as_deref(), &mut y, &mut lse, small);
                    let w: Vec<f32> = (0..s.numel())
                        .map(|i| ((i * 37 % 19) as f32 - 9.0) / 7.0)
                        .collect();
                    let g: [Vec<f32>; 3] = std::array::from_fn(|_| vec![f32::NAN; s.numel()]);
                    let [mut dq, mut dk, mut dv] = g;
                    backward_with(
                        s,
                        q,
                        k,
                        v,
                        c.alibi.as_deref(),
                        Heads::bthd(&y, s),
                        &lse,
                        Heads::bthd(&w, s),
                        &mut dq,
                        &mut dk,
                        &mut dv,
                        small,
                    );
                    [y, lse, dq, dk, dv]
                };
                let (fast, general) = (run(true), run(false));
                for (what, (a, g)) in ["y", "lse", "dq", "dk", "dv"]
                    .iter()
                    .zip(fast.iter().zip(&general))
                {
                    let worst = a
                        .iter()
                        .zip(g)
                        .map(|(x, y)| ((x - y).abs() / (1.0 + y.abs())) as f64)
                        .fold(0.0, crate::max_or_nan);
                    assert!(
                        worst < 1e-5,
                        "{what} b={b} h={h} T={t} alibi={alibi}: {worst}"
                    );
                }
            }
        }
    }

    /// Best-of-20 wall time of forward and backward at the model's shape
    /// (b=32, h=8, T=128, d_h=16): `cargo test --release -- --ignored timing --nocapture`.
    #[test]
    #[ignore]
    fn timing() {
        let c = Case::new(32, 8, 128, 16, false, 1);
        let s = c.s;
        let (mut y, mut lse) = c.forward();
        let w = vec![0.01f32; s.numel()];
        let n = s.numel();
        let (mut dq, mut dk, mut dv) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        let (q, k, v) = c.views();
        let best = |f: &mut dyn FnMut()| {
            (0..20)
                .map(|_| {
                    let t0 = std::time::Instant::now();
                    f();
                    t0.elapsed().as_secs_f64() * 1e3
                })
                .fold(f64::INFINITY, f64::min)
        };
        let f = best(&mut || forward(s, q, k, v, None, &mut y, &mut lse));
        let bw = best(&mut || {
            backward(
                s,
                q,
                k,
                v,
                None,
                Heads::bthd(&y, s),
                &lse,
                Heads::bthd(&w, s),
                &mut dq,
                &mut dk,
                &mut dv,
            )
        });
        eprintln!(
            "attention b=32 h=8 T=128 hd=16 ({} threads): forward {f:.2} ms, backward {bw:.2} ms",
            rayon::current_num_threads()
        );
    }
}
