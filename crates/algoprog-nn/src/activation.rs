//! Element-wise activations used inside feed-forward blocks.
//!
//! FLOPs per element (one per arithmetic op; `exp`, `erf`, `tanh` count one):
//! - ReLU `max(x, 0)`: 1
//! - GeLU exact `0.5·x·(1 + erf(x/√2))`: 5 (scale, erf, add, mul, mul)
//! - GeLU tanh `0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³)))`: 9 (cube = 2, scale,
//!   add, scale, tanh, add, mul, mul)
//! - SiLU `x·σ(x) = x / (1 + e^{−x})`: 4 (neg, exp, add, div)
//!
//! ReLU, both GeLUs and the gated products SiLU·gate (SwiGLU) and
//! GeLU·gate (GeGLU) run the fused kernels of [`crate::fused::act`] for f32
//! CPU tensors (one op each, with its own backward) and candle's composite
//! ops otherwise. Inside a feed-forward block the same activations run as
//! part of one fused block op ([`crate::fused::ffn`], through
//! [`Activation::ffn_kernel`]).

use crate::fused;
use algoprog_kernels::ffn::FfnAct;
use candle_core::{Result, Tensor};

/// An element-wise nonlinearity. Implement it (plus `Default`) to add one;
/// it then plugs into [`crate::Mlp`] and [`crate::GatedFeedForward`].
pub trait Activation: Clone + std::fmt::Debug + Default + Send + Sync + 'static {
    /// Short name used in FLOP breakdowns.
    const NAME: &'static str;
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
    /// The gated product act(a)·b of a gated feed-forward (a, b of one
    /// shape). The default composes [`Activation::forward`] with a product;
    /// SiLU and GeLU override it with one fused op.
    fn gated(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.forward(a)? * b
    }
    /// Forward FLOPs per element.
    fn flops_per_element(&self) -> f64;
    /// The fused feed-forward kernel ([`crate::fused::ffn`]) for a block
    /// with this activation, plain (`gated` false) or gating an up
    /// projection. `None` (the default, for activations without one) runs
    /// the block as separate linear and activation ops.
    fn ffn_kernel(&self, gated: bool) -> Option<FfnAct> {
        let _ = gated;
        None
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Relu;
impl Activation for Relu {
    const NAME: &'static str = "relu";
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        fused::act::relu(x)
    }
    fn flops_per_element(&self) -> f64 {
        1.0
    }
    fn ffn_kernel(&self, gated: bool) -> Option<FfnAct> {
        (!gated).then_some(FfnAct::Relu)
    }
}

/// Exact (erf) GeLU.
#[derive(Clone, Copy, Debug, Default)]
pub struct Gelu;
impl Activation for Gelu {
    const NAME: &'static str = "gelu";
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        fused::act::gelu(x)
    }
    fn gated(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        fused::act::geglu(a, b)
    }
    fn flops_per_element(&self) -> f64 {
        5.0
    }
    fn ffn_kernel(&self, gated: bool) -> Option<FfnAct> {
        Some(if gated { FfnAct::Geglu } else { FfnAct::Gelu })
    }
}

/// GeLU with the tanh approximation (GPT-2).
#[derive(Clone, Copy, Debug, Default)]
pub struct GeluTanh;
impl Activation for GeluTanh {
    const NAME: &'static str = "gelu_tanh";
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        fused::act::gelu_tanh(x)
    }
    fn flops_per_element(&self) -> f64 {
        9.0
    }
    fn ffn_kernel(&self, gated: bool) -> Option<FfnAct> {
        (!gated).then_some(FfnAct::GeluTanh)
    }
}

/// SiLU (swish), the gate activation of SwiGLU.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silu;
impl Activation for Silu {
    const NAME: &'static str = "silu";
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.silu()
    }
    fn gated(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        fused::act::swiglu(a, b)
    }
    fn flops_per_element(&self) -> f64 {
        4.0
    }
    fn ffn_kernel(&self, gated: bool) -> Option<FfnAct> {
        gated.then_some(FfnAct::Swiglu)
    }
}
