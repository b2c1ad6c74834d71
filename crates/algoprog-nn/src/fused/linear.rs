//! y = x·Wᵀ + b as one candle op (see [`algoprog_kernels::linear`]).
//!
//! The composite (`matmul` of a reshaped input with a transposed weight view,
//! then a broadcast bias add) puts five nodes in the graph; their backward
//! passes transpose the weight gradient back, reduce the bias gradient and
//! accumulate each through a fresh buffer. This op is one node whose
//! backward computes ∂x, ∂W and ∂b directly.

use super::slice_f32;
use algoprog_kernels::buffer::output;
use algoprog_kernels::linear::{self as kernel, LinearGrads};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

/// (rows, in, out) for x (…, in) and W (out, in).
fn dims(lx: &Layout, lw: &Layout) -> Result<(usize, usize, usize)> {
    let xd = lx.dims();
    let Some((&din, lead)) = xd.split_last() else {
        candle_core::bail!("fused linear: the input needs at least one dimension")
    };
    let n: usize = lead.iter().product();
    let (dout, din2) = lw.shape().dims2()?;
    if din != din2 {
        candle_core::bail!("fused linear: input width {din} but weight ({dout}, {din2})");
    }
    Ok((n, din, dout))
}

fn fwd(
    x: (&CpuStorage, &Layout),
    w: (&CpuStorage, &Layout),
    b: Option<(&CpuStorage, &Layout)>,
) -> Result<(CpuStorage, Shape)> {
    let (n, din, dout) = dims(x.1, w.1)?;
    let xs = slice_f32(x.0, x.1, "linear input")?;
    let ws = slice_f32(w.0, w.1, "linear weight")?;
    let bs = match b {
        Some((s, l)) => {
            if l.dims() != [dout] {
                candle_core::bail!("fused linear: bias {:?} for {dout} outputs", l.dims());
            }
            Some(slice_f32(s, l, "linear bias")?)
        }
        None => None,
    };
    let mut y = output(n * dout);
    kernel::forward(xs, ws, bs, n, din, dout, &mut y);
    let mut shape = x.1.dims().to_vec();
    *shape.last_mut().unwrap() = dout;
    Ok((CpuStorage::F32(y), Shape::from(shape)))
}

struct Linear;
struct LinearBias;

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "fused-linear"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        fwd((s1, l1), (s2, l2), None)
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, _) = grads(x, w, grad, false)?;
        Ok((Some(dx), Some(dw)))
    }
}

impl CustomOp3 for LinearBias {
    fn name(&self) -> &'static str {
        "fused-linear-bias"
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
        fwd((s1, l1), (s2, l2), Some((s3, l3)))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, dw, db) = grads(x, w, grad, true)?;
        Ok((Some(dx), Some(dw), db))
    }
}

/// Backward op: (∂y, x, W) → flat [∂x | ∂W | ∂b].
struct LinearBackward {
    bias: bool,
}

impl CustomOp3 for LinearBackward {
    fn name(&self) -> &'static str {
        "fused-linear-backward"
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
        let (n, din, dout) = dims(l2, l3)?;
        if l1.shape().elem_count() != n * dout || l1.dims().last() != Some(&dout) {
            candle_core::bail!(
                "fused linear backward: gradient {:?} for {n} rows of {dout} outputs",
                l1.dims()
            );
        }
        let dy = slice_f32(s1, l1, "linear output gradient")?;
        let x = slice_f32(s2, l2, "linear input")?;
        let w = slice_f32(s3, l3, "linear weight")?;
        let nb = if self.bias { dout } else { 0 };
        let mut out = output(n * din + dout * din + nb);
        let (dx, rest) = out.split_at_mut(n * din);
        let (dw, db) = rest.split_at_mut(dout * din);
        kernel::backward(
            x,
            w,
            dy,
            n,
            din,
            dout,
            LinearGrads {
                dx,
                dw,
                db: if self.bias { Some(db) } else { None },
            },
        );
        let len = out.len();
        Ok((CpuStorage::F32(out), Shape::from(len)))
    }
}

fn grads(
    x: &Tensor,
    w: &Tensor,
    grad: &Tensor,
    bias: bool,
) -> Result<(Tensor, Tensor, Option<Tensor>)> {
    let (n, dout) = (
        x.elem_count() / x.dims().last().copied().unwrap_or(1).max(1),
        w.dim(0)?,
    );
    let din = w.dim(1)?;
    let g = grad
        .contiguous()?
        .apply_op3_no_bwd(x, w, &LinearBackward { bias })?;
    let dx = g.narrow(0, 0, n * din)?.reshape(x.dims())?;
    let dw = g.narrow(0, n * din, dout * din)?.reshape((dout, din))?;
    let db = if bias {
        Some(g.narrow(0, n * din + dout * din, dout)?)
    } else {
        None
    };
    Ok((dx, dw, db))
}

/// y = x·Wᵀ + b for f32 CPU tensors: x (…, in), W (out, in), b (out).
/// The caller checks [`super::fusable`]; [`crate::linear`] dispatches here.
/// Any leading dimensions are rows; no reshape enters the graph.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let x = x.contiguous()?;
    let w = w.contiguous()?;
    match b {
        Some(b) => x.apply_op3(&w, &b.contiguous()?, LinearBias),
        None => x.apply_op2(&w, Linear),
    }
}

#[cfg(test)]
mod tests {
    use crate::loss::linear_composite;
    use candle_core::{Device, Tensor, Var};

    fn var(shape: &[usize], seed: usize) -> Var {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| (((i * 7919 + seed * 104729) % 1009) as f32 - 504.0) / 300.0)
            .collect();
        Var::from_tensor(&Tensor::from_vec(v, shape, &Device::Cpu).unwrap()).unwrap()
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn values_and_gradients_equal_the_composite() {
        for bias in [true, false] {
            let (x, w, b) = (var(&[3, 70, 12], 1), var(&[9, 12], 2), var(&[9], 3));
            let r = var(&[3, 70, 9], 4).as_tensor().detach();
            let bt = if bias { Some(b.as_tensor()) } else { None };
            let yf = super::linear(x.as_tensor(), w.as_tensor(), bt).unwrap();
            let yc = linear_composite(x.as_tensor(), w.as_tensor(), bt).unwrap();
            assert_eq!(yf.dims(), &[3, 70, 9]);
            assert!(max_diff(&yf, &yc) < 1e-5, "values (bias {bias})");
            let gf = (&yf * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let gc = (&yc * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let mut vars = vec![&x, &w];
            if bias {
                vars.push(&b);
            }
            for (i, v) in vars.into_iter().enumerate() {
                let (a, c) = (
                    gf.get(v.as_tensor()).unwrap(),
                    gc.get(v.as_tensor()).unwrap(),
                );
                assert!(
                    max_diff(a, c) < 1e-3,
                    "gradient {i} (bias {bias}) differs by {}",
                    max_diff(a, c)
                );
            }
        }
    }

    #[test]
    fn mismatched_widths_are_named() {
        let e = super::linear(
            var(&[2, 5], 1).as_tensor(),
            var(&[3, 4], 2).as_tensor(),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("input width 5") && e.contains("(3, 4)"), "{e}");
    }
}
