//! Fused LayerNorm and RMSNorm over the last dimension, with their own backward.
//!
//! [`layer_norm`] and [`rms_norm`] run [`algoprog_kernels::norm`] when every
//! input is f32 on the CPU (see [`super::fusable`]); otherwise they run the
//! composite candle ops ([`layer_norm_composite`], [`rms_norm_composite`]),
//! which stay the reference the fused versions are tested against.
//!
//! The fused forward is one op (one output allocation instead of ~8); it
//! saves the per-row mean and 1/√(σ² + ε) inside the op, and the backward is
//! one more op that returns ∂x, ∂gain (and ∂bias) packed in one buffer,
//! handed to autograd as views. Second derivatives are not supported (the
//! backward op has no backward of its own).

use super::{fusable, slice_f32};
use algoprog_kernels::buffer::output;
use algoprog_kernels::norm as kern;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, D};
use std::sync::{Arc, Mutex};

/// y = (x − μ)/√(σ² + ε)·g + b over the last dim (σ² biased), composite ops.
pub fn layer_norm_composite(x: &Tensor, gain: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    let y = xc.broadcast_div(&(var + eps)?.sqrt()?)?;
    y.broadcast_mul(gain)?.broadcast_add(bias)
}

/// y = x/√(mean(x²) + ε)·g over the last dim, composite ops.
pub fn rms_norm_composite(x: &Tensor, gain: &Tensor, eps: f64) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    let y = x.broadcast_div(&(ms + eps)?.sqrt()?)?;
    y.broadcast_mul(gain)
}

/// Whether the fused path applies: all f32 CPU, params of shape (d,) with d
/// the last dim of x.
fn fused_ok(x: &Tensor, params: &[&Tensor]) -> bool {
    let d = match x.dims().last() {
        Some(&d) if d > 0 => d,
        _ => return false,
    };
    fusable(x) && params.iter().all(|p| fusable(p) && p.dims() == [d])
}

/// LayerNorm over the last dim: (x − μ)/√(σ² + ε)·gain + bias; gain and bias (d,).
pub fn layer_norm(x: &Tensor, gain: &Tensor, bias: &Tensor, eps: f64) -> Result<Tensor> {
    if !fused_ok(x, &[gain, bias]) {
        return layer_norm_composite(x, gain, bias, eps);
    }
    let op = LayerNormOp {
        eps: eps as f32,
        saved: Mutex::new(None),
    };
    x.contiguous()?
        .apply_op3(&gain.contiguous()?, &bias.contiguous()?, op)
}

/// RMSNorm over the last dim: x/√(mean(x²) + ε)·gain; gain (d,).
pub fn rms_norm(x: &Tensor, gain: &Tensor, eps: f64) -> Result<Tensor> {
    if !fused_ok(x, &[gain]) {
        return rms_norm_composite(x, gain, eps);
    }
    let op = RmsNormOp {
        eps: eps as f32,
        saved: Mutex::new(None),
    };
    x.contiguous()?.apply_op2(&gain.contiguous()?, op)
}

/// Per-row statistics saved by a forward: mean (LayerNorm only) and rstd.
#[derive(Debug)]
struct Saved {
    mean: Vec<f32>,
    rstd: Vec<f32>,
}

type Stash = Mutex<Option<Arc<Saved>>>;

fn take_saved(s: &Stash) -> Option<Arc<Saved>> {
    s.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

fn put_saved(s: &Stash, saved: Saved) {
    *s.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(saved));
}

/// Splits a packed backward output [∂x | ∂p₁ | ∂p₂ ...] into ∂x shaped like
/// `x` and one (d,) tensor per parameter (views, no copies).
fn unpack(packed: &Tensor, x: &Tensor, d: usize, nparams: usize) -> Result<(Tensor, Vec<Tensor>)> {
    let n = x.elem_count();
    let dx = packed.narrow(0, 0, n)?.reshape(x.shape())?;
    let ps = (0..nparams)
        .map(|i| packed.narrow(0, n + i * d, d))
        .collect::<Result<Vec<_>>>()?;
    Ok((dx, ps))
}

struct LayerNormOp {
    eps: f32,
    saved: Stash,
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "fused-layer-norm"
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
        let x = slice_f32(s1, l1, "layer_norm x")?;
        let g = slice_f32(s2, l2, "layer_norm gain")?;
        let b = slice_f32(s3, l3, "layer_norm bias")?;
        let rows = x.len() / g.len();
        let (mut y, mut mean, mut rstd) = (output(x.len()), output(rows), output(rows));
        kern::layer_norm_fwd(x, g, b, self.eps, &mut y, &mut mean, &mut rstd);
        put_saved(&self.saved, Saved { mean, rstd });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        gain: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let op = LayerNormBwd {
            eps: self.eps,
            saved: take_saved(&self.saved),
        };
        let packed = x.apply_op3_no_bwd(gain, &grad.contiguous()?, &op)?;
        let (dx, mut ps) = unpack(&packed, x, gain.elem_count(), 2)?;
        let db = ps.pop();
        let dg = ps.pop();
        Ok((Some(dx), dg, db))
    }
}

/// (x, gain, ∂y) → [∂x | ∂gain | ∂bias], flat.
struct LayerNormBwd {
    eps: f32,
    saved: Option<Arc<Saved>>,
}

impl CustomOp3 for LayerNormBwd {
    fn name(&self) -> &'static str {
        "fused-layer-norm-backward"
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
        let x = slice_f32(s1, l1, "layer_norm backward x")?;
        let g = slice_f32(s2, l2, "layer_norm backward gain")?;
        let dy = slice_f32(s3, l3, "layer_norm backward gradient")?;
        let (n, d) = (x.len(), g.len());
        let rows = n / d;
        let recomputed;
        let saved = match &self.saved {
            Some(s) => s.as_ref(),
            None => {
                // statistics lost (should not happen): recompute them
                let (mut y, mut mean, mut rstd) =
                    (vec![0f32; n], vec![0f32; rows], vec![0f32; rows]);
                kern::layer_norm_fwd(x, g, &vec![0f32; d], self.eps, &mut y, &mut mean, &mut rstd);
                recomputed = Saved { mean, rstd };
                &recomputed
            }
        };
        let mut out = output(n + 2 * d);
        let (dx, rest) = out.split_at_mut(n);
        let (dg, db) = rest.split_at_mut(d);
        kern::layer_norm_bwd(x, g, &saved.mean, &saved.rstd, dy, dx, dg, db);
        Ok((CpuStorage::F32(out), Shape::from(n + 2 * d)))
    }
}

struct RmsNormOp {
    eps: f32,
    saved: Stash,
}

impl CustomOp2 for RmsNormOp {
    fn name(&self) -> &'static str {
        "fused-rms-norm"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice_f32(s1, l1, "rms_norm x")?;
        let g = slice_f32(s2, l2, "rms_norm gain")?;
        let rows = x.len() / g.len();
        let (mut y, mut rstd) = (output(x.len()), output(rows));
        kern::rms_norm_fwd(x, g, self.eps, &mut y, &mut rstd);
        put_saved(
            &self.saved,
            Saved {
                mean: Vec::new(),
                rstd,
            },
        );
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        gain: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let op = RmsNormBwd {
            eps: self.eps,
            saved: take_saved(&self.saved),
        };
        let packed = x.apply_op3_no_bwd(gain, &grad.contiguous()?, &op)?;
        let (dx, mut ps) = unpack(&packed, x, gain.elem_count(), 1)?;
        Ok((Some(dx), ps.pop()))
    }
}

/// (x, gain, ∂y) → [∂x | ∂gain], flat.
struct RmsNormBwd {
    eps: f32,
    saved: Option<Arc<Saved>>,
}

impl CustomOp3 for RmsNormBwd {
    fn name(&self) -> &'static str {
        "fused-rms-norm-backward"
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
        let x = slice_f32(s1, l1, "rms_norm backward x")?;
        let g = slice_f32(s2, l2, "rms_norm backward gain")?;
        let dy = slice_f32(s3, l3, "rms_norm backward gradient")?;
        let (n, d) = (x.len(), g.len());
        let recomputed;
        let rstd = match &self.saved {
            Some(s) => &s.rstd,
            None => {
                let (mut y, mut r) = (vec![0f32; n], vec![0f32; n / d]);
                kern::rms_norm_fwd(x, g, self.eps, &mut y, &mut r);
                recomputed = r;
                &recomputed
            }
        };
        let mut out = output(n + d);
        let (dx, dg) = out.split_at_mut(n);
        kern::rms_norm_bwd(x, g, rstd, dy, dx, dg);
        Ok((CpuStorage::F32(out), Shape::from(n + d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck;
    use crate::testutil::randn_mean as randn;
    use candle_core::{DType, Device, Var};

    fn max_rel(a: &Tensor, b: &Tensor) -> Result<f64> {
        let a: Vec<f32> = a.flatten_all()?.to_vec1()?;
        let b: Vec<f32> = b.flatten_all()?.to_vec1()?;
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
        assert!(scale > 1e-3, "degenerate reference");
        Ok(a.iter()
            .zip(&b)
            .map(|(&x, &y)| (x as f64 - y as f64).abs() / (y.abs() as f64 + 1e-2 * scale))
            .fold(0.0, crate::testutil::max_or_nan))
    }

    /// Fused and composite agree in values and in the gradients of
    /// L = Σ w·y for x (rank 3, last dim 48), gain and bias.
    #[test]
    fn fused_matches_composite_values_and_gradients() -> Result<()> {
        let shape = [3, 70, 48];
        let x = Var::from_tensor(&randn(&shape, 0.5, 2.0, 1)?)?;
        let g = Var::from_tensor(&randn(&[48], 1.0, 0.3, 2)?)?;
        let b = Var::from_tensor(&randn(&[48], 0.0, 0.5, 3)?)?;
        let w = randn(&shape, 0.0, 1.0, 4)?;
        for layer in [true, false] {
            let run = |fused: bool| -> Result<(Tensor, Tensor, Tensor, Option<Tensor>)> {
                let y = match (layer, fused) {
                    (true, true) => layer_norm(&x, &g, &b, 1e-5)?,
                    (true, false) => layer_norm_composite(&x, &g, &b, 1e-5)?,
                    (false, true) => rms_norm(&x, &g, 1e-5)?,
                    (false, false) => rms_norm_composite(&x, &g, 1e-5)?,
                };
                let grads = (&y * &w)?.sum_all()?.backward()?;
                Ok((
                    y,
                    grads.get(&x).unwrap().clone(),
                    grads.get(&g).unwrap().clone(),
                    grads.get(&b).cloned(),
                ))
            };
            let (yf, dxf, dgf, dbf) = run(true)?;
            let (yc, dxc, dgc, dbc) = run(false)?;
            assert_eq!(yf.dims(), &shape);
            assert!(max_rel(&yf, &yc)? < 1e-5, "y");
            assert!(max_rel(&dxf, &dxc)? < 1e-4, "dx {}", max_rel(&dxf, &dxc)?);
            assert!(
                max_rel(&dgf, &dgc)? < 1e-5,
                "dgain {}",
                max_rel(&dgf, &dgc)?
            );
            if layer {
                let (dbf, dbc) = (dbf.unwrap(), dbc.unwrap());
                assert!(max_rel(&dbf, &dbc)? < 1e-5, "dbias");
            } else {
                assert!(dbf.is_none());
            }
        }
        Ok(())
    }

    /// Central differences (f32, h = 10⁻²) of the fused ops themselves.
    #[test]
    fn fused_gradients_match_finite_differences() -> Result<()> {
        let x = Var::from_tensor(&randn(&[4, 9], 0.3, 1.5, 5)?)?;
        let g = Var::from_tensor(&randn(&[9], 1.0, 0.3, 6)?)?;
        let b = Var::from_tensor(&randn(&[9], 0.0, 0.5, 7)?)?;
        let w = randn(&[4, 9], 0.0, 1.0, 8)?;
        let vars = [x.clone(), g.clone(), b.clone()];
        let ln = || (layer_norm(&x, &g, &b, 1e-5)? * &w)?.sum_all();
        let c = gradcheck::check(&vars, &ln, 1e-2)?;
        assert!(
            c.max_rel_err < 1e-2 && c.max_abs_grad > 0.1,
            "layer_norm: {c:?}"
        );
        let rms = || (rms_norm(&x, &g, 1e-5)? * &w)?.sum_all();
        let c = gradcheck::check(&vars[..2], &rms, 1e-2)?;
        assert!(
            c.max_rel_err < 1e-2 && c.max_abs_grad > 0.1,
            "rms_norm: {c:?}"
        );
        Ok(())
    }

    /// A non-contiguous input (transposed view with an offset) and a
    /// broadcast (stride-0) output gradient take the fused path correctly.
    #[test]
    fn non_contiguous_input_and_gradient() -> Result<()> {
        let base = Var::from_tensor(&randn(&[5, 16], 0.0, 1.0, 9)?)?;
        let g = Var::from_tensor(&randn(&[5], 1.0, 0.2, 10)?)?;
        let x = base.t()?.narrow(0, 1, 12)?; // (12, 5)
        assert!(!x.is_contiguous());
        let run = |fused: bool| -> Result<(Tensor, Tensor, Tensor)> {
            let y = if fused {
                rms_norm(&x, &g, 1e-5)?
            } else {
                rms_norm_composite(&x, &g, 1e-5)?
            };
            let grads = y.sum_all()?.backward()?;
            Ok((
                y,
                grads.get(&base).unwrap().clone(),
                grads.get(&g).unwrap().clone(),
            ))
        };
        let (yf, df, gf) = run(true)?;
        let (yc, dc, gc) = run(false)?;
        assert!(max_rel(&yf, &yc)? < 1e-5);
        assert!(max_rel(&df, &dc)? < 1e-4);
        assert!(max_rel(&gf, &gc)? < 1e-5);
        Ok(())
    }

    #[test]
    fn other_dtypes_take_the_composite_path() -> Result<()> {
        let x = randn(&[3, 8], 0.0, 1.0, 12)?.to_dtype(DType::F64)?;
        let g = Tensor::ones(8, DType::F64, &Device::Cpu)?;
        let b = Tensor::zeros(8, DType::F64, &Device::Cpu)?;
        let y = layer_norm(&x, &g, &b, 1e-5)?;
        let want = layer_norm_composite(&x, &g, &b, 1e-5)?;
        assert_eq!(y.to_vec2::<f64>()?, want.to_vec2::<f64>()?);
        let rows: Vec<Vec<f64>> = y.to_vec2()?;
        for r in rows {
            let m = r.iter().sum::<f64>() / 8.0;
            let v = r.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / 8.0;
            assert!(m.abs() < 1e-9 && (v - 1.0).abs() < 1e-3, "mean {m} var {v}");
        }
        Ok(())
    }
}
