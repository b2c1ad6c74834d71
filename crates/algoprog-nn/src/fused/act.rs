//! Fused activations and gated products, with their own backward.
//!
//! | function | computes | composite reference |
//! |---|---|---|
//! | [`relu`] | max(x, 0) | `x.relu()` |
//! | [`gelu`] | ½x(1 + erf(x/√2)) | `x.gelu_erf()` |
//! | [`gelu_tanh`] | ½x(1 + tanh(√(2/π)(x + 0.044715x³))) | `x.gelu()` |
//! | [`swiglu`] | silu(a)·b | `a.silu()? * b` |
//! | [`geglu`] | gelu(a)·b (erf GeLU) | `a.gelu_erf()? * b` |
//!
//! Each runs an [`algoprog_kernels::act`] kernel when its inputs are f32 on
//! the CPU (and, for the gated ones, of one shape) and the composite ops
//! otherwise. The forward is one op and one allocation; the backward is one
//! op that recomputes the activation from the saved input (the gated ones
//! return ∂a and ∂b packed in one buffer, handed to autograd as views). The
//! composite gradients take 4–10 candle ops each (candle's GeLU backward
//! alone builds ~10 temporaries). Second derivatives are not supported.

use super::{fusable, slice_f32};
use algoprog_kernels::act as kern;
use algoprog_kernels::buffer::output;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

/// Which element-wise function a unary op computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unary {
    Relu,
    Gelu,
    GeluTanh,
}

impl Unary {
    fn composite(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Unary::Relu => x.relu(),
            Unary::Gelu => x.gelu_erf(),
            Unary::GeluTanh => x.gelu(),
        }
    }
    fn apply(self, x: &Tensor) -> Result<Tensor> {
        if !fusable(x) {
            return self.composite(x);
        }
        x.contiguous()?.apply_op1(UnaryOp(self))
    }
}

/// Which activation gates a gated op: y = act(a)·b.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gated {
    Swiglu,
    Geglu,
}

impl Gated {
    fn composite(self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        match self {
            Gated::Swiglu => a.silu()? * b,
            Gated::Geglu => a.gelu_erf()? * b,
        }
    }
    fn apply(self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        if !(fusable(a) && fusable(b) && a.dims() == b.dims()) {
            return self.composite(a, b);
        }
        a.contiguous()?.apply_op2(&b.contiguous()?, GatedOp(self))
    }
}

/// max(x, 0); gradient 1 where x ≥ 0 (as candle's `relu`).
pub fn relu(x: &Tensor) -> Result<Tensor> {
    Unary::Relu.apply(x)
}
/// Exact (erf) GeLU, ½x(1 + erf(x/√2)).
pub fn gelu(x: &Tensor) -> Result<Tensor> {
    Unary::Gelu.apply(x)
}
/// tanh-approximated GeLU, ½x(1 + tanh(√(2/π)(x + 0.044715x³))).
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    Unary::GeluTanh.apply(x)
}
/// silu(a)·b = a·σ(a)·b, the SwiGLU gated product (a, b of one shape for the fused path).
pub fn swiglu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Gated::Swiglu.apply(a, b)
}
/// gelu(a)·b with the erf GeLU, the GeGLU gated product.
pub fn geglu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Gated::Geglu.apply(a, b)
}

struct UnaryOp(Unary);

impl CustomOp1 for UnaryOp {
    fn name(&self) -> &'static str {
        match self.0 {
            Unary::Relu => "fused-relu",
            Unary::Gelu => "fused-gelu",
            Unary::GeluTanh => "fused-gelu-tanh",
        }
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice_f32(s, l, self.name())?;
        let mut y = output(x.len());
        match self.0 {
            Unary::Relu => kern::relu_fwd(x, &mut y),
            Unary::Gelu => kern::gelu_fwd(x, &mut y),
            Unary::GeluTanh => kern::gelu_tanh_fwd(x, &mut y),
        }
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }
    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(
            &grad.contiguous()?,
            &UnaryBwd(self.0),
        )?))
    }
}

/// (x, ∂y) → ∂x.
struct UnaryBwd(Unary);

impl CustomOp2 for UnaryBwd {
    fn name(&self) -> &'static str {
        "fused-activation-backward"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = slice_f32(s1, l1, "activation backward x")?;
        let dy = slice_f32(s2, l2, "activation backward gradient")?;
        if x.len() != dy.len() {
            candle_core::bail!(
                "fused activation backward: x has {} elements, gradient {}",
                x.len(),
                dy.len()
            );
        }
        let mut dx = output(x.len());
        match self.0 {
            Unary::Relu => kern::relu_bwd(x, dy, &mut dx),
            Unary::Gelu => kern::gelu_bwd(x, dy, &mut dx),
            Unary::GeluTanh => kern::gelu_tanh_bwd(x, dy, &mut dx),
        }
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

struct GatedOp(Gated);

impl CustomOp2 for GatedOp {
    fn name(&self) -> &'static str {
        match self.0 {
            Gated::Swiglu => "fused-swiglu",
            Gated::Geglu => "fused-geglu",
        }
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let a = slice_f32(s1, l1, "gated activation a")?;
        let b = slice_f32(s2, l2, "gated activation b")?;
        if a.len() != b.len() {
            candle_core::bail!(
                "fused {}: a has {} elements, b {}",
                self.name(),
                a.len(),
                b.len()
            );
        }
        let mut y = output(a.len());
        match self.0 {
            Gated::Swiglu => kern::swiglu_fwd(a, b, &mut y),
            Gated::Geglu => kern::geglu_fwd(a, b, &mut y),
        }
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let packed = a.apply_op3_no_bwd(b, &grad.contiguous()?, &GatedBwd(self.0))?;
        let n = a.elem_count();
        let da = packed.narrow(0, 0, n)?.reshape(a.shape())?;
        let db = packed.narrow(0, n, n)?.reshape(b.shape())?;
        Ok((Some(da), Some(db)))
    }
}

/// (a, b, ∂y) → [∂a | ∂b], flat.
struct GatedBwd(Gated);

impl CustomOp3 for GatedBwd {
    fn name(&self) -> &'static str {
        "fused-gated-activation-backward"
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
        let a = slice_f32(s1, l1, "gated activation backward a")?;
        let b = slice_f32(s2, l2, "gated activation backward b")?;
        let dy = slice_f32(s3, l3, "gated activation backward gradient")?;
        let n = a.len();
        if b.len() != n || dy.len() != n {
            candle_core::bail!(
                "fused gated activation backward: lengths {n}, {}, {} differ",
                b.len(),
                dy.len()
            );
        }
        let mut out = output(2 * n);
        let (da, db) = out.split_at_mut(n);
        match self.0 {
            Gated::Swiglu => kern::swiglu_bwd(a, b, dy, da, db),
            Gated::Geglu => kern::geglu_bwd(a, b, dy, da, db),
        }
        Ok((CpuStorage::F32(out), Shape::from(2 * n)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck;
    use candle_core::{DType, Var};

    use crate::testutil::randn;

    /// [`crate::testutil::max_err`] against a reference that is not all
    /// near 0 (activations and their gradients are O(1); both sides carry
    /// ~10⁻⁷ absolute rounding from exp/erf/tanh).
    fn max_err(a: &Tensor, b: &Tensor) -> Result<f64> {
        let r: Vec<f32> = b.flatten_all()?.to_vec1()?;
        assert!(r.iter().any(|v| v.abs() > 0.5), "degenerate reference");
        crate::testutil::max_err(a, b)
    }

    const SHAPE: [usize; 3] = [2, 300, 70];

    /// Values and ∂(Σ w·y)/∂x of fused vs composite, x ~ N(0, 3²) (covers the tails).
    #[test]
    fn unary_fused_matches_composite() -> Result<()> {
        let x = Var::from_tensor(&randn(&SHAPE, 3.0, 1)?)?;
        let w = randn(&SHAPE, 1.0, 2)?;
        for op in [Unary::Relu, Unary::Gelu, Unary::GeluTanh] {
            let yf = op.apply(&x)?;
            let yc = op.composite(&x)?;
            let df = (&yf * &w)?.sum_all()?.backward()?.get(&x).unwrap().clone();
            let dc = (&yc * &w)?.sum_all()?.backward()?.get(&x).unwrap().clone();
            assert_eq!(yf.dims(), &SHAPE);
            let (ey, ed) = (max_err(&yf, &yc)?, max_err(&df, &dc)?);
            // candle's tanh-GeLU backward rounds its constants to 6 digits
            let tol = if op == Unary::GeluTanh { 2e-5 } else { 3e-6 };
            assert!(
                ey < 3e-6 && ed < tol,
                "{op:?}: value error {ey}, gradient error {ed}"
            );
        }
        Ok(())
    }

    #[test]
    fn gated_fused_matches_composite() -> Result<()> {
        let a = Var::from_tensor(&randn(&SHAPE, 3.0, 3)?)?;
        let b = Var::from_tensor(&randn(&SHAPE, 1.0, 4)?)?;
        let w = randn(&SHAPE, 1.0, 5)?;
        for op in [Gated::Swiglu, Gated::Geglu] {
            let yf = op.apply(&a, &b)?;
            let yc = op.composite(&a, &b)?;
            let gf = (&yf * &w)?.sum_all()?.backward()?;
            let gc = (&yc * &w)?.sum_all()?.backward()?;
            assert_eq!(yf.dims(), &SHAPE);
            let ey = max_err(&yf, &yc)?;
            let ea = max_err(gf.get(&a).unwrap(), gc.get(&a).unwrap())?;
            let eb = max_err(gf.get(&b).unwrap(), gc.get(&b).unwrap())?;
            assert!(
                ey < 3e-6 && ea < 3e-6 && eb < 3e-6,
                "{op:?}: y {ey}, da {ea}, db {eb}"
            );
        }
        Ok(())
    }

    /// Central differences (f32, h = 10⁻²) of the fused ops.
    #[test]
    fn fused_gradients_match_finite_differences() -> Result<()> {
        let x = Var::from_tensor(&randn(&[5, 7], 1.5, 6)?)?;
        let b = Var::from_tensor(&randn(&[5, 7], 1.0, 7)?)?;
        let w = randn(&[5, 7], 1.0, 8)?;
        for op in [Unary::Gelu, Unary::GeluTanh] {
            let c = gradcheck::check(
                std::slice::from_ref(&x),
                &|| (op.apply(&x)? * &w)?.sum_all(),
                1e-2,
            )?;
            assert!(
                c.max_rel_err < 1e-2 && c.max_abs_grad > 0.1,
                "{op:?}: {c:?}"
            );
        }
        for op in [Gated::Swiglu, Gated::Geglu] {
            let vars = [x.clone(), b.clone()];
            let c = gradcheck::check(&vars, &|| (op.apply(&x, &b)? * &w)?.sum_all(), 1e-2)?;
            assert!(
                c.max_rel_err < 1e-2 && c.max_abs_grad > 0.1,
                "{op:?}: {c:?}"
            );
        }
        Ok(())
    }

    /// Non-contiguous inputs and a broadcast gradient; b used twice (its
    /// gradients from the op and from elsewhere add up).
    #[test]
    fn views_and_shared_inputs() -> Result<()> {
        let a0 = Var::from_tensor(&randn(&[6, 40], 2.0, 9)?)?;
        let b = Var::from_tensor(&randn(&[40, 6], 1.0, 10)?)?;
        let a = a0.t()?;
        assert!(!a.is_contiguous());
        let run = |fused: bool| -> Result<(Tensor, Tensor)> {
            let y = if fused {
                swiglu(&a, &b)?
            } else {
                Gated::Swiglu.composite(&a, &b)?
            };
            let g = if fused { gelu(&y)? } else { y.gelu_erf()? };
            let l = (g.sum_all()? + b.sum_all()?)?;
            let grads = l.backward()?;
            Ok((
                grads.get(&a0).unwrap().clone(),
                grads.get(&b).unwrap().clone(),
            ))
        };
        let (af, bf) = run(true)?;
        let (ac, bc) = run(false)?;
        assert!(max_err(&af, &ac)? < 3e-6 && max_err(&bf, &bc)? < 3e-6);
        Ok(())
    }

    #[test]
    fn other_dtypes_and_shapes_take_the_composite_path() -> Result<()> {
        let a = randn(&[4, 6], 1.0, 11)?.to_dtype(DType::F64)?;
        let b = randn(&[4, 6], 1.0, 12)?.to_dtype(DType::F64)?;
        assert_eq!(
            swiglu(&a, &b)?.to_vec2::<f64>()?,
            (a.silu()? * &b)?.to_vec2::<f64>()?
        );
        assert_eq!(gelu(&a)?.to_vec2::<f64>()?, a.gelu_erf()?.to_vec2::<f64>()?);
        // f32 with shapes that differ: the composite's shape check applies
        let a = randn(&[4, 6], 1.0, 13)?;
        let b = randn(&[1, 6], 1.0, 14)?;
        assert!(geglu(&a, &b).is_err());
        assert_eq!(geglu(&a, &b.broadcast_as((4, 6))?)?.dims(), &[4, 6]);
        Ok(())
    }
}
