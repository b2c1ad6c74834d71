//! A whole feed-forward block as one candle op (see [`algoprog_kernels::ffn`]).
//!
//! The block's weights and biases enter as one flat tensor, their
//! concatenation [W_in | b_in | W_out | b_out] (for a gated block W_in is the
//! gate's rows then the up projection's, b_in likewise): a candle op takes
//! at most three inputs, and the copy costs 3·d·h floats per call against
//! the block's 6·n·d·h FLOPs. Autograd splits the packed gradient back onto
//! the parameters through that concatenation. The forward keeps the
//! pre-activations for its backward, which runs as one op as well.
//!
//! [`crate::Mlp`] and [`crate::GatedFeedForward`] run this op when the
//! activation has a kernel ([`crate::Activation::ffn_kernel`]) and the
//! input is f32 on the CPU; otherwise, and as the reference in the tests,
//! the separate linear and activation ops.

use super::{fusable, slice_f32};
use algoprog_kernels::buffer::output;
use algoprog_kernels::ffn::{self as kernel, FfnAct, FfnGrads, FfnParams, FfnShape};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use std::sync::{Arc, Mutex};

/// The block's parameters, as the feed-forward modules hold them.
pub struct FfnWeights<'a> {
    /// W_in's row blocks: [W] for a plain MLP, [W_gate, W_up] for a gated one,
    /// each (h, d).
    pub w_in: &'a [&'a Tensor],
    /// The matching biases, when the block has them.
    pub b_in: Option<&'a [&'a Tensor]>,
    /// (d, h).
    pub w_out: &'a Tensor,
    pub b_out: Option<&'a Tensor>,
}

/// Whether [`feed_forward`] can run on `x` and `w`.
pub fn applies(x: &Tensor, w: &FfnWeights) -> bool {
    fusable(x)
        && w.w_in.iter().all(|t| fusable(t))
        && fusable(w.w_out)
        && w.b_in.is_none_or(|b| b.iter().all(|t| fusable(t)))
        && w.b_out.is_none_or(fusable)
        && w.b_in.is_some() == w.b_out.is_some()
}

/// The block through [`feed_forward`] when the activation has a kernel
/// (`act`, from [`crate::Activation::ffn_kernel`]) and [`applies`] holds;
/// `None` tells the caller to run its separate ops.
pub fn try_feed_forward(x: &Tensor, act: Option<FfnAct>, w: &FfnWeights) -> Option<Result<Tensor>> {
    let act = act?;
    applies(x, w).then(|| feed_forward(x, act, w))
}

/// The feed-forward block on x (…, d). The caller checks [`applies`].
pub fn feed_forward(x: &Tensor, act: FfnAct, w: &FfnWeights) -> Result<Tensor> {
    let (d, h) = (w.w_out.dim(0)?, w.w_out.dim(1)?);
    let parts = if act.gated() { 2 } else { 1 };
    if w.w_in.len() != parts {
        candle_core::bail!(
            "fused feed-forward: {act:?} takes {parts} input matrices, got {}",
            w.w_in.len()
        );
    }
    let mut flat = Vec::with_capacity(2 * parts + 2);
    for t in w.w_in {
        if t.dims() != [h, d] {
            candle_core::bail!(
                "fused feed-forward: input weight {:?}, expected ({h}, {d})",
                t.dims()
            );
        }
        flat.push(t.flatten_all()?);
    }
    if let Some(b) = w.b_in {
        flat.extend(
            b.iter()
                .map(|t| t.flatten_all())
                .collect::<Result<Vec<_>>>()?,
        );
    }
    flat.push(w.w_out.flatten_all()?);
    if let Some(b) = w.b_out {
        flat.push(b.flatten_all()?);
    }
    let packed = Tensor::cat(&flat, 0)?;
    let op = FfnOp {
        act,
        h,
        bias: w.b_out.is_some(),
        saved: Arc::new(Mutex::new(None)),
    };
    x.contiguous()?.apply_op2(&packed, op)
}

/// (x, packed weights) → y; keeps z for the backward.
#[derive(Clone)]
struct FfnOp {
    act: FfnAct,
    h: usize,
    bias: bool,
    saved: Arc<Mutex<Option<Vec<f32>>>>,
}

impl FfnOp {
    /// The shape of x (…, d) and the packed parameters split into [`FfnParams`].
    fn unpack<'a>(&self, lx: &Layout, packed: &'a [f32]) -> Result<(FfnShape, FfnParams<'a>)> {
        let (act, h, bias) = (self.act, self.h, self.bias);
        let Some((&d, lead)) = lx.dims().split_last() else {
            candle_core::bail!("fused feed-forward: the input needs at least one dimension")
        };
        let s = FfnShape {
            n: lead.iter().product(),
            d,
            h,
            act,
        };
        let hi = s.h_in();
        let want = hi * d + d * h + if bias { hi + d } else { 0 };
        if packed.len() != want {
            candle_core::bail!(
                "fused feed-forward: {} packed parameters for d = {d}, h = {h}, bias {bias}; expected {want}",
                packed.len()
            );
        }
        let (w_in, rest) = packed.split_at(hi * d);
        let (b_in, rest) = rest.split_at(if bias { hi } else { 0 });
        let (w_out, b_out) = rest.split_at(d * h);
        let p = FfnParams {
            w_in,
            b_in: bias.then_some(b_in),
            w_out,
            b_out: bias.then_some(b_out),
        };
        Ok((s, p))
    }
}

impl CustomOp2 for FfnOp {
    fn name(&self) -> &'static str {
        "fused-feed-forward"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice_f32(s1, l1, "feed-forward input")?;
        let packed = slice_f32(s2, l2, "feed-forward parameters")?;
        let (s, p) = self.unpack(l1, packed)?;
        let mut y = output(s.n * s.d);
        let mut z = output(s.n * s.h_in());
        kernel::forward(s, x, &p, &mut y, &mut z);
        *self.saved.lock().unwrap() = Some(z);
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        packed: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let op = FfnBackward(self.clone());
        let g = x.apply_op3_no_bwd(packed, &grad.contiguous()?, &op)?;
        let nx = x.elem_count();
        let dx = g.narrow(0, 0, nx)?.reshape(x.dims())?;
        let dp = g.narrow(0, nx, packed.elem_count())?;
        Ok((Some(dx), Some(dp)))
    }
}

/// (x, packed weights, ∂y) → flat [∂x | ∂packed], with the forward op's
/// settings and saved z.
struct FfnBackward(FfnOp);

impl CustomOp3 for FfnBackward {
    fn name(&self) -> &'static str {
        "fused-feed-forward-backward"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice_f32(s1, l1, "feed-forward input")?;
        let packed = slice_f32(s2, l2, "feed-forward parameters")?;
        let dy = slice_f32(s3, l3, "feed-forward output gradient")?;
        let (s, p) = self.0.unpack(l1, packed)?;
        if dy.len() != x.len() {
            candle_core::bail!(
                "fused feed-forward backward: gradient of {} elements for an input of {}",
                dy.len(),
                x.len()
            );
        }
        let guard = self.0.saved.lock().unwrap();
        let Some(z) = guard.as_ref() else {
            candle_core::bail!("fused feed-forward backward: the forward pass saved nothing")
        };
        let hi = s.h_in();
        let mut out = output(x.len() + packed.len());
        let (dx, rest) = out.split_at_mut(x.len());
        let (dw_in, rest) = rest.split_at_mut(hi * s.d);
        let (db_in, rest) = rest.split_at_mut(if self.0.bias { hi } else { 0 });
        let (dw_out, db_out) = rest.split_at_mut(s.d * s.h);
        let g = FfnGrads {
            dx,
            dw_in,
            db_in: self.0.bias.then_some(db_in),
            dw_out,
            db_out: self.0.bias.then_some(db_out),
        };
        kernel::backward(s, x, &p, z, dy, g);
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck;
    use crate::loss::linear_composite;
    use crate::testutil::{max_err, randn};
    use candle_core::{DType, Var};

    /// The block from candle's own ops: linear, activation, linear.
    fn composite(x: &Tensor, act: FfnAct, w: &FfnWeights) -> Result<Tensor> {
        let b = |i: usize| w.b_in.map(|b| b[i]);
        let z0 = linear_composite(x, w.w_in[0], b(0))?;
        let a = match act {
            FfnAct::Relu => z0.relu()?,
            FfnAct::Gelu => z0.gelu_erf()?,
            FfnAct::GeluTanh => z0.gelu()?,
            FfnAct::Swiglu => (z0.silu()? * linear_composite(x, w.w_in[1], b(1))?)?,
            FfnAct::Geglu => (z0.gelu_erf()? * linear_composite(x, w.w_in[1], b(1))?)?,
        };
        linear_composite(&a, w.w_out, w.b_out)
    }

    /// Seven parameters: gate/in, up, their biases, out, its bias (the up
    /// ones unused by a plain block).
    fn params(d: usize, h: usize, dtype: DType) -> Result<Vec<Var>> {
        let shapes: [&[usize]; 6] = [&[h, d], &[h, d], &[h], &[h], &[d, h], &[d]];
        shapes
            .iter()
            .enumerate()
            .map(|(i, s)| Var::from_tensor(&randn(s, 0.3, 10 + i as u64)?.to_dtype(dtype)?))
            .collect()
    }

    fn run(
        x: &Tensor,
        act: FfnAct,
        v: &[Var],
        bias: bool,
        f: fn(&Tensor, FfnAct, &FfnWeights) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let t: Vec<&Tensor> = v.iter().map(|v| v.as_tensor()).collect();
        let k = if act.gated() { 2 } else { 1 };
        let w = FfnWeights {
            w_in: &t[..k],
            b_in: bias.then_some(&t[2..2 + k]),
            w_out: t[4],
            b_out: bias.then_some(t[5]),
        };
        f(x, act, &w)
    }

    /// Values and every gradient of Σ r∘y, fused against composite, for each
    /// activation with and without biases; 3 × 230 rows cross the kernel's
    /// row groups.
    #[test]
    fn fused_matches_composite() -> Result<()> {
        let (d, h) = (12, 20);
        let x = Var::from_tensor(&randn(&[3, 230, d], 1.0, 1)?)?;
        let r = randn(&[3, 230, d], 1.0, 2)?;
        for act in FfnAct::ALL {
            for bias in [true, false] {
                let v = params(d, h, DType::F32)?;
                let yf = run(x.as_tensor(), act, &v, bias, feed_forward)?;
                let yc = run(x.as_tensor(), act, &v, bias, composite)?;
                assert_eq!(yf.dims(), &[3, 230, d]);
                let ey = max_err(&yf, &yc)?;
                assert!(ey < 1e-5, "{act:?} bias {bias}: value error {ey}");
                let gf = (&yf * &r)?.sum_all()?.backward()?;
                let gc = (&yc * &r)?.sum_all()?.backward()?;
                // the up projection's weight and bias only when gated, biases only with bias
                let used = (0..6).filter(|&i| match i {
                    1 => act.gated(),
                    2 | 5 => bias,
                    3 => act.gated() && bias,
                    _ => true,
                });
                for i in std::iter::once(None).chain(used.map(Some)) {
                    let t = i.map_or(x.as_tensor(), |i| v[i].as_tensor());
                    let (a, c) = (gf.get(t).unwrap(), gc.get(t).unwrap());
                    let e = max_err(a, c)?;
                    assert!(e < 1e-4, "{act:?} bias {bias}: gradient of {i:?} error {e}");
                }
            }
        }
        Ok(())
    }

    /// f64 tensors take the composite path; f32 ones, with biases on both
    /// linears or on neither, the fused one.
    #[test]
    fn only_f32_with_matching_biases_is_fused() -> Result<()> {
        let v = params(4, 6, DType::F32)?;
        let t: Vec<&Tensor> = v.iter().map(|v| v.as_tensor()).collect();
        let x = randn(&[2, 4], 1.0, 3)?;
        let w = |b_in, b_out| FfnWeights {
            w_in: &t[..1],
            b_in,
            w_out: t[4],
            b_out,
        };
        assert!(applies(&x, &w(None, None)));
        assert!(applies(&x, &w(Some(&t[2..3]), Some(t[5]))));
        assert!(!applies(&x, &w(None, Some(t[5]))));
        assert!(!applies(&x.to_dtype(DType::F64)?, &w(None, None)));
        Ok(())
    }

    /// Central differences through the packed op (f32 kernel, so a loose
    /// tolerance): the parameter gradients land on the right parameters.
    #[test]
    fn gradient_matches_finite_differences() -> Result<()> {
        let (d, h) = (3, 4);
        let x = Var::from_tensor(&randn(&[2, 3, d], 1.0, 4)?)?;
        let v = params(d, h, DType::F32)?;
        let r = randn(&[2, 3, d], 1.0, 5)?;
        let loss = || (run(x.as_tensor(), FfnAct::Swiglu, &v, true, feed_forward)? * &r)?.sum_all();
        let mut vars = vec![x.clone()];
        vars.extend(v.iter().cloned());
        let c = gradcheck::check(&vars, &loss, 1e-2)?;
        assert!(c.max_abs_grad > 0.1, "degenerate gradients");
        assert!(c.max_rel_err < 2e-2, "{c:?}");
        Ok(())
    }
}
