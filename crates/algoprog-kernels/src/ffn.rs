//! A position-wise feed-forward block, y = act(x·W_inᵀ + b_in)·W_outᵀ + b_out,
//! as one kernel that walks the rows in blocks.
//!
//! Run as three ops (linear, activation, linear), every hidden-width tensor
//! (the pre-activation, the activation, and in the backward their
//! gradients) is written to memory by one op and read back by the next. At
//! the `laptop` study's widest Transformer (2048 rows, d = 80, SwiGLU with
//! h = 320) each such tensor is 2.6 MB; the gated backward alone moved 13 MB
//! per layer, and measured in a training step it ran 2–10× slower than the
//! same call on cached data (the step's working set does not fit the
//! caches). Here a block of [`BLOCK_ROWS`] rows goes through the whole
//! feed-forward while its hidden tensors stay in cache; only the
//! pre-activation z (n × h_in) goes to memory, kept for the backward, which
//! recomputes the activation from it.
//!
//! ## Layout
//! W_in is (h_in × d), W_out (d × h). For a plain MLP h_in = h. For a gated
//! one (SwiGLU, GeGLU) h_in = 2h: the gate's h rows, then the up
//! projection's h rows, so row r of z is [g_r | u_r] and the hidden
//! activation is act(g_r)·u_r.
//!
//! ## Determinism
//! The forward has no reductions across rows. In the backward, the weight
//! and bias gradients of each group of [`GROUP_ROWS`] rows accumulate block
//! by block into that group's partial sum, and the partials are added in
//! group order: the result does not depend on the number of threads.
//!
//! The activations are the [`crate::act`] kernels; the products go through
//! [`crate::matmul`] on the calling task's thread (groups and blocks are the
//! parallel work).

use crate::act;
use crate::buffer::output;
use crate::linear::{add_bias, sum_rows};
use crate::matmul::{matmul, transpose, Mat, Threads};
use rayon::prelude::*;

/// Rows that go through the feed-forward together (their hidden tensors
/// stay in cache: at h_in = 1024, 512 KiB).
pub const BLOCK_ROWS: usize = 128;
/// Rows whose weight gradients sum into one partial (see the module docs).
/// Larger groups mean fewer partials to write and add; smaller ones more
/// parallel tasks (2048 rows: 4 groups).
pub const GROUP_ROWS: usize = 512;

/// The block's activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FfnAct {
    Relu,
    /// erf GeLU.
    Gelu,
    /// tanh GeLU.
    GeluTanh,
    /// silu(g)·u.
    Swiglu,
    /// gelu(g)·u (erf GeLU).
    Geglu,
}

impl FfnAct {
    /// Every activation with a kernel.
    pub const ALL: [FfnAct; 5] = [
        FfnAct::Relu,
        FfnAct::Gelu,
        FfnAct::GeluTanh,
        FfnAct::Swiglu,
        FfnAct::Geglu,
    ];

    /// Whether the activation gates an up projection (h_in = 2h).
    pub fn gated(self) -> bool {
        matches!(self, FfnAct::Swiglu | FfnAct::Geglu)
    }
}

/// n rows of width d, hidden width h.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FfnShape {
    pub n: usize,
    pub d: usize,
    pub h: usize,
    pub act: FfnAct,
}

impl FfnShape {
    /// Rows of W_in: 2h for a gated activation, else h.
    pub fn h_in(&self) -> usize {
        if self.act.gated() {
            2 * self.h
        } else {
            self.h
        }
    }
}

/// The block's weights (layout in the module docs).
#[derive(Clone, Copy, Debug)]
pub struct FfnParams<'a> {
    pub w_in: &'a [f32],
    pub b_in: Option<&'a [f32]>,
    pub w_out: &'a [f32],
    pub b_out: Option<&'a [f32]>,
}

impl FfnParams<'_> {
    fn check(&self, s: &FfnShape) {
        assert!(s.d > 0 && s.h > 0, "feed-forward: d and h must be positive");
        assert_eq!(
            self.w_in.len(),
            s.h_in() * s.d,
            "feed-forward: W_in must be h_in×d"
        );
        assert_eq!(
            self.w_out.len(),
            s.d * s.h,
            "feed-forward: W_out must be d×h"
        );
        if let Some(b) = self.b_in {
            assert_eq!(
                b.len(),
                s.h_in(),
                "feed-forward: b_in must have h_in elements"
            );
        }
        if let Some(b) = self.b_out {
            assert_eq!(b.len(), s.d, "feed-forward: b_out must have d elements");
        }
    }
}

/// Gradients of the block; each is overwritten. The bias gradients are
/// computed where given.
pub struct FfnGrads<'a> {
    pub dx: &'a mut [f32],
    pub dw_in: &'a mut [f32],
    pub db_in: Option<&'a mut [f32]>,
    pub dw_out: &'a mut [f32],
    pub db_out: Option<&'a mut [f32]>,
}

/// a (rows × h) = the activation of a block's pre-activations z (rows × h_in).
fn activate(f: FfnAct, h: usize, z: &[f32], a: &mut [f32]) {
    let gated = match f {
        FfnAct::Relu => return act::relu_fwd_chunk(z, a),
        FfnAct::Gelu => return act::gelu_fwd_chunk(z, a),
        FfnAct::GeluTanh => return act::gelu_tanh_fwd_chunk(z, a),
        FfnAct::Swiglu => act::swiglu_fwd_chunk,
        FfnAct::Geglu => act::geglu_fwd_chunk,
    };
    for (zr, ar) in z.chunks_exact(2 * h).zip(a.chunks_exact_mut(h)) {
        let (g, u) = zr.split_at(h);
        gated(g, u, ar);
    }
}

/// ∂z (rows × h_in) from a block's z and ∂a (rows × h).
fn activate_bwd(f: FfnAct, h: usize, z: &[f32], da: &[f32], dz: &mut [f32]) {
    let gated = match f {
        FfnAct::Relu => return act::relu_bwd_chunk(z, da, dz),
        FfnAct::Gelu => return act::gelu_bwd_chunk(z, da, dz),
        FfnAct::GeluTanh => return act::gelu_tanh_bwd_chunk(z, da, dz),
        FfnAct::Swiglu => act::swiglu_bwd_chunk,
        FfnAct::Geglu => act::geglu_bwd_chunk,
    };
    for ((zr, dar), dzr) in z
        .chunks_exact(2 * h)
        .zip(da.chunks_exact(h))
        .zip(dz.chunks_exact_mut(2 * h))
    {
        let (g, u) = zr.split_at(h);
        let (dg, du) = dzr.split_at_mut(h);
        gated(g, u, dar, dg, du);
    }
}

/// c (rows × cols, contiguous) (+)= op(a)·op(b) on this thread.
#[allow(clippy::too_many_arguments)]
fn mm(c: &mut [f32], cols: usize, a: Mat, ta: bool, b: Mat, tb: bool, accumulate: bool) {
    matmul(c, cols, a, ta, b, tb, 1.0, accumulate, Threads::One);
}

/// y (rows × out) = x·Wᵀ + b on this thread, for a block's x (rows × in)
/// and Wᵀ (in × out), the weight transposed once per call of the block.
fn linear_block(y: &mut [f32], x: Mat, wt: Mat, b: Option<&[f32]>) {
    mm(y, wt.cols, x, false, wt, false, false);
    if let Some(b) = b {
        add_bias(y, b);
    }
}

/// y (n × d) = the block applied to x (n × d); z (n × h_in) receives the
/// pre-activations the backward needs. Neither output's old contents are read.
pub fn forward(s: FfnShape, x: &[f32], p: &FfnParams, y: &mut [f32], z: &mut [f32]) {
    p.check(&s);
    let (d, h, hi) = (s.d, s.h, s.h_in());
    assert_eq!(x.len(), s.n * d, "feed-forward: x must be n×d");
    assert_eq!(y.len(), s.n * d, "feed-forward: y must be n×d");
    assert_eq!(z.len(), s.n * hi, "feed-forward: z must be n×h_in");
    // the weights transposed once here, not by the matmul on every block
    let w_in_t = transpose(Mat::new(p.w_in, hi, d));
    let w_out_t = transpose(Mat::new(p.w_out, d, h));
    y.par_chunks_mut(BLOCK_ROWS * d)
        .zip(z.par_chunks_mut(BLOCK_ROWS * hi))
        .zip(x.par_chunks(BLOCK_ROWS * d))
        .for_each(|((yb, zb), xb)| {
            let rows = xb.len() / d;
            linear_block(zb, Mat::new(xb, rows, d), Mat::new(&w_in_t, d, hi), p.b_in);
            let mut a = output(rows * h);
            activate(s.act, h, zb, &mut a);
            linear_block(yb, Mat::new(&a, rows, h), Mat::new(&w_out_t, h, d), p.b_out);
        });
}

/// The block's gradients from x, the forward's z and ∂y.
pub fn backward(s: FfnShape, x: &[f32], p: &FfnParams, z: &[f32], dy: &[f32], g: FfnGrads) {
    p.check(&s);
    let (n, d, h, hi) = (s.n, s.d, s.h, s.h_in());
    assert_eq!(x.len(), n * d, "feed-forward: x must be n×d");
    assert_eq!(z.len(), n * hi, "feed-forward: z must be n×h_in");
    assert_eq!(dy.len(), n * d, "feed-forward: dy must be n×d");
    assert_eq!(g.dx.len(), n * d, "feed-forward: dx must be n×d");
    assert_eq!(g.dw_in.len(), hi * d, "feed-forward: dW_in must be h_in×d");
    assert_eq!(g.dw_out.len(), d * h, "feed-forward: dW_out must be d×h");
    // one group's partial: [∂W_in | ∂W_out | ∂b_in | ∂b_out]
    let (o_out, o_bin, o_bout) = (hi * d, hi * d + d * h, hi * d + d * h + hi);
    let per = o_bout + d;
    let groups = n.div_ceil(GROUP_ROWS);
    if groups == 0 {
        g.dw_in.fill(0.0);
        g.dw_out.fill(0.0);
        for db in [g.db_in, g.db_out].into_iter().flatten() {
            db.fill(0.0);
        }
        return;
    }
    let mut partial = output(groups * per);
    partial
        .par_chunks_mut(per)
        .zip(g.dx.par_chunks_mut(GROUP_ROWS * d))
        .zip(x.par_chunks(GROUP_ROWS * d))
        .zip(z.par_chunks(GROUP_ROWS * hi))
        .zip(dy.par_chunks(GROUP_ROWS * d))
        .for_each(|((((part, dxg), xg), zg), dyg)| {
            let (pw_in, rest) = part.split_at_mut(o_out);
            let (pw_out, rest) = rest.split_at_mut(o_bin - o_out);
            let (pb_in, pb_out) = rest.split_at_mut(hi);
            pb_in.fill(0.0);
            pb_out.fill(0.0);
            let grows = xg.len() / d;
            let cap = BLOCK_ROWS.min(grows);
            let (mut a, mut da, mut dz) = (output(cap * h), output(cap * h), output(cap * hi));
            for (k, r0) in (0..grows).step_by(BLOCK_ROWS).enumerate() {
                let rows = BLOCK_ROWS.min(grows - r0);
                let xb = Mat::new(&xg[r0 * d..(r0 + rows) * d], rows, d);
                let dyb = Mat::new(&dyg[r0 * d..(r0 + rows) * d], rows, d);
                let zb = &zg[r0 * hi..(r0 + rows) * hi];
                let (a, da, dz) = (
                    &mut a[..rows * h],
                    &mut da[..rows * h],
                    &mut dz[..rows * hi],
                );
                let acc = k > 0;
                // ∂a = ∂y·W_out; a recomputed; ∂W_out += ∂yᵀ·a
                mm(da, h, dyb, false, Mat::new(p.w_out, d, h), false, false);
                activate(s.act, h, zb, a);
                mm(pw_out, h, dyb, true, Mat::new(a, rows, h), false, acc);
                // ∂z; ∂x = ∂z·W_in; ∂W_in += ∂zᵀ·x
                activate_bwd(s.act, h, zb, da, dz);
                let dzm = Mat::new(dz, rows, hi);
                let dxb = &mut dxg[r0 * d..(r0 + rows) * d];
                mm(dxb, d, dzm, false, Mat::new(p.w_in, hi, d), false, false);
                mm(pw_in, d, dzm, true, xb, false, acc);
                sum_rows(dz, pb_in);
                sum_rows(dyb.data, pb_out);
            }
        });
    sum_partials(&partial, per, 0, g.dw_in);
    sum_partials(&partial, per, o_out, g.dw_out);
    if let Some(db) = g.db_in {
        sum_partials(&partial, per, o_bin, db);
    }
    if let Some(db) = g.db_out {
        sum_partials(&partial, per, o_bout, db);
    }
}

/// out[j] = Σ_groups partial[group·per + off + j], the groups added in order.
fn sum_partials(partial: &[f32], per: usize, off: usize, out: &mut [f32]) {
    const COLS: usize = 1 << 14;
    let groups = partial.len() / per;
    out.par_chunks_mut(COLS).enumerate().for_each(|(c, o)| {
        let len = o.len();
        let at = |grp: usize| &partial[grp * per + off + c * COLS..][..len];
        o.copy_from_slice(at(0));
        for grp in 1..groups {
            sum_rows(at(grp), o);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::linear::{self, LinearGrads};

    fn data(len: usize, seed: usize) -> Vec<f32> {
        crate::test_data(len, seed, 400.0)
    }

    struct Weights {
        w_in: Vec<f32>,
        b_in: Vec<f32>,
        w_out: Vec<f32>,
        b_out: Vec<f32>,
    }

    impl Weights {
        fn new(s: &FfnShape) -> Self {
            Self {
                w_in: data(s.h_in() * s.d, 1),
                b_in: data(s.h_in(), 2),
                w_out: data(s.d * s.h, 3),
                b_out: data(s.d, 4),
            }
        }
        fn params(&self, bias: bool) -> FfnParams<'_> {
            FfnParams {
                w_in: &self.w_in,
                b_in: bias.then_some(&self.b_in[..]),
                w_out: &self.w_out,
                b_out: bias.then_some(&self.b_out[..]),
            }
        }
    }

    /// Every gradient of the block: [∂x, ∂W_in, ∂b_in, ∂W_out, ∂b_out].
    type All = [Vec<f32>; 5];

    fn fused(s: FfnShape, x: &[f32], p: &FfnParams, dy: &[f32]) -> (Vec<f32>, All) {
        let (n, d, h, hi) = (s.n, s.d, s.h, s.h_in());
        let (mut y, mut z) = (vec![f32::NAN; n * d], vec![f32::NAN; n * hi]);
        forward(s, x, p, &mut y, &mut z);
        let mut gr: All = [
            vec![f32::NAN; n * d],
            vec![f32::NAN; hi * d],
            vec![f32::NAN; hi],
            vec![f32::NAN; d * h],
            vec![f32::NAN; d],
        ];
        let [dx, dw_in, db_in, dw_out, db_out] = &mut gr;
        let bias = p.b_in.is_some();
        backward(
            s,
            x,
            p,
            &z,
            dy,
            FfnGrads {
                dx,
                dw_in,
                db_in: bias.then_some(db_in),
                dw_out,
                db_out: bias.then_some(db_out),
            },
        );
        (y, gr)
    }

    /// The composition of the separately tested linear and activation
    /// kernels: linear, activation (on the gate and up halves), linear.
    fn composite(s: FfnShape, x: &[f32], p: &FfnParams, dy: &[f32]) -> (Vec<f32>, All) {
        let (n, d, h, hi) = (s.n, s.d, s.h, s.h_in());
        let mut zz = vec![0.0; n * hi];
        linear::forward(x, p.w_in, p.b_in, n, d, hi, &mut zz);
        // (g, u) as separate n×h matrices for the gated kernels
        let half = |k: usize| -> Vec<f32> {
            zz.chunks_exact(hi)
                .flat_map(|r| r[k * h..(k + 1) * h].to_vec())
                .collect()
        };
        let mut a = vec![0.0; n * h];
        match s.act {
            FfnAct::Relu => act::relu_fwd(&zz, &mut a),
            FfnAct::Gelu => act::gelu_fwd(&zz, &mut a),
            FfnAct::GeluTanh => act::gelu_tanh_fwd(&zz, &mut a),
            FfnAct::Swiglu => act::swiglu_fwd(&half(0), &half(1), &mut a),
            FfnAct::Geglu => act::geglu_fwd(&half(0), &half(1), &mut a),
        }
        let mut y = vec![0.0; n * d];
        linear::forward(&a, p.w_out, p.b_out, n, h, d, &mut y);
        let (mut da, mut dw_out, mut db_out) = (vec![0.0; n * h], vec![0.0; d * h], vec![0.0; d]);
        linear::backward(
            &a,
            p.w_out,
            dy,
            n,
            h,
            d,
            LinearGrads {
                dx: &mut da,
                dw: &mut dw_out,
                db: Some(&mut db_out),
            },
        );
        let mut dz = vec![0.0; n * hi];
        if s.act.gated() {
            let (mut dg, mut du) = (vec![0.0; n * h], vec![0.0; n * h]);
            let f = if s.act == FfnAct::Swiglu {
                act::swiglu_bwd
            } else {
                act::geglu_bwd
            };
            f(&half(0), &half(1), &da, &mut dg, &mut du);
            for (r, row) in dz.chunks_exact_mut(hi).enumerate() {
                row[..h].copy_from_slice(&dg[r * h..(r + 1) * h]);
                row[h..].copy_from_slice(&du[r * h..(r + 1) * h]);
            }
        } else {
            match s.act {
                FfnAct::Relu => act::relu_bwd(&zz, &da, &mut dz),
                FfnAct::Gelu => act::gelu_bwd(&zz, &da, &mut dz),
                _ => act::gelu_tanh_bwd(&zz, &da, &mut dz),
            }
        }
        let (mut dx, mut dw_in, mut db_in) = (vec![0.0; n * d], vec![0.0; hi * d], vec![0.0; hi]);
        linear::backward(
            x,
            p.w_in,
            &dz,
            n,
            d,
            hi,
            LinearGrads {
                dx: &mut dx,
                dw: &mut dw_in,
                db: Some(&mut db_in),
            },
        );
        (y, [dx, dw_in, db_in, dw_out, db_out])
    }

    /// max |a − b| / (1 + |b|), NaN-propagating.
    fn rel_err(a: &[f32], b: &[f32]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).fold(0.0, |m, (x, y)| {
            crate::max_or_nan(m, (*x as f64 - *y as f64).abs() / (1.0 + (*y as f64).abs()))
        })
    }

    /// 600 rows: two groups (512 + 88), the first of four full blocks, the
    /// second one partial block; widths not multiples of the SIMD width.
    #[test]
    fn matches_the_composite_kernels_for_every_activation() {
        crate::buffer::poison_outputs();
        for act in FfnAct::ALL {
            for bias in [true, false] {
                let s = FfnShape {
                    n: 600,
                    d: 13,
                    h: 21,
                    act,
                };
                let w = Weights::new(&s);
                let p = w.params(bias);
                let (x, dy) = (data(s.n * s.d, 5), data(s.n * s.d, 6));
                let (yf, gf) = fused(s, &x, &p, &dy);
                let (yc, gc) = composite(s, &x, &p, &dy);
                let ey = rel_err(&yf, &yc);
                assert!(ey < 1e-5, "{act:?} bias {bias}: y error {ey}");
                let names = ["dx", "dW_in", "db_in", "dW_out", "db_out"];
                for (k, name) in names.iter().enumerate() {
                    if !bias && (k == 2 || k == 4) {
                        continue;
                    }
                    let e = rel_err(&gf[k], &gc[k]);
                    assert!(e < 1e-4, "{act:?} bias {bias}: {name} error {e}");
                }
            }
        }
    }

    /// The weight gradients are the same bits with 1, 2 and 3 threads.
    #[test]
    fn gradients_do_not_depend_on_the_thread_count() {
        let s = FfnShape {
            n: 1500,
            d: 16,
            h: 24,
            act: FfnAct::Swiglu,
        };
        let w = Weights::new(&s);
        let p = w.params(true);
        let (x, dy) = (data(s.n * s.d, 7), data(s.n * s.d, 8));
        let run = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| fused(s, &x, &p, &dy))
        };
        let one = run(1);
        for t in [2, 3] {
            let other = run(t);
            assert!(
                one.0 == other.0 && one.1 == other.1,
                "{t} threads differ from 1"
            );
        }
    }

    /// Central differences of Σ r∘y in f64 against the backward (SwiGLU
    /// and GeLU, with biases).
    #[test]
    fn gradient_matches_finite_differences() {
        for act in [FfnAct::Swiglu, FfnAct::Gelu] {
            let s = FfnShape {
                n: 3,
                d: 3,
                h: 2,
                act,
            };
            let w = Weights::new(&s);
            let (x, r) = (data(s.n * s.d, 9), data(s.n * s.d, 10));
            let args0 = [
                x,
                w.w_in.clone(),
                w.b_in.clone(),
                w.w_out.clone(),
                w.b_out.clone(),
            ];
            let loss = |a: &[Vec<f32>; 5]| -> f64 {
                let p = FfnParams {
                    w_in: &a[1],
                    b_in: Some(&a[2]),
                    w_out: &a[3],
                    b_out: Some(&a[4]),
                };
                let (mut y, mut z) = (vec![0.0; s.n * s.d], vec![0.0; s.n * s.h_in()]);
                forward(s, &a[0], &p, &mut y, &mut z);
                y.iter().zip(&r).map(|(y, r)| *y as f64 * *r as f64).sum()
            };
            let p = w.params(true);
            let (_, gr) = fused(s, &args0[0], &p, &r);
            // gr is [∂x, ∂W_in, ∂b_in, ∂W_out, ∂b_out], the order of args0
            let eps = 1e-2f32;
            for (which, grad) in gr.iter().enumerate() {
                for (i, g) in grad.iter().enumerate() {
                    let mut a = args0.clone();
                    a[which][i] += eps;
                    let up = loss(&a);
                    a[which][i] -= 2.0 * eps;
                    let fd = (up - loss(&a)) / (2.0 * eps as f64);
                    assert!(
                        (fd - *g as f64).abs() < 2e-3,
                        "{act:?} argument {which}[{i}]: fd {fd} vs {g}"
                    );
                }
            }
        }
    }
}
