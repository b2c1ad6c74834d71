//! Normalisation layers.
//!
//! `forward` runs the fused kernels of [`crate::fused::norm`] (one op with a
//! hand-written backward) for f32 CPU tensors, and the composite candle ops
//! otherwise (candle's `ops::layer_norm` / `ops::rms_norm` fast paths have no
//! backward). Both compute the same function; FLOP counts below are those of
//! the function, not of either implementation.
//!
//! - LayerNorm: y = (x − μ)/√(σ² + ε) · g + b over the last dim (σ² biased).
//!   Parameters 2d. FLOPs per token 7d + 2: mean d, subtract d, square d,
//!   mean d, add ε and √ (2 per row), divide d, gain d, shift d.
//! - RMSNorm: y = x/√(mean(x²) + ε) · g. Parameters d. FLOPs per token
//!   4d + 2: square d, mean d, add ε and √ (2 per row), divide d, gain d.
//!
//! Both use ε = 1e-5 by default. Parameter names: `weight` (gain, init 1),
//! `bias` (LayerNorm shift, init 0); role [`ParamRole::Norm`].

use crate::fused;
use crate::init::Init;
use crate::params::{ParamBuilder, ParamRole};
use crate::Flops;
use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

/// A normalisation over the last dimension.
pub trait Norm: Sized + Send + Sync + 'static {
    type Config: Clone + std::fmt::Debug + Default + PartialEq + Send + Sync;
    fn new(cfg: &Self::Config, d_model: usize, pb: &ParamBuilder) -> Result<Self>;
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
    fn num_params(cfg: &Self::Config, d_model: usize) -> usize;
    /// Forward FLOPs for `tokens` rows of width `d_model`.
    fn flops(cfg: &Self::Config, d_model: usize, tokens: usize) -> Flops;
}

/// ε of a norm.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NormConfig {
    pub eps: f64,
}
impl Default for NormConfig {
    fn default() -> Self {
        Self { eps: 1e-5 }
    }
}

#[derive(Clone, Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl Norm for LayerNorm {
    type Config = NormConfig;
    fn new(cfg: &NormConfig, d: usize, pb: &ParamBuilder) -> Result<Self> {
        Ok(Self {
            weight: pb.param_with("weight", &[d], ParamRole::Norm, Init::Ones)?,
            bias: pb.param_with("bias", &[d], ParamRole::Norm, Init::Zeros)?,
            eps: cfg.eps,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        fused::norm::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
    fn num_params(_: &NormConfig, d: usize) -> usize {
        2 * d
    }
    fn flops(_: &NormConfig, d: usize, tokens: usize) -> Flops {
        Flops::new(0.0, tokens as f64 * (7.0 * d as f64 + 2.0))
    }
}

#[derive(Clone, Debug)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl Norm for RmsNorm {
    type Config = NormConfig;
    fn new(cfg: &NormConfig, d: usize, pb: &ParamBuilder) -> Result<Self> {
        Ok(Self {
            weight: pb.param_with("weight", &[d], ParamRole::Norm, Init::Ones)?,
            eps: cfg.eps,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        fused::norm::rms_norm(x, &self.weight, self.eps)
    }
    fn num_params(_: &NormConfig, d: usize) -> usize {
        d
    }
    fn flops(_: &NormConfig, d: usize, tokens: usize) -> Flops {
        Flops::new(0.0, tokens as f64 * (4.0 * d as f64 + 2.0))
    }
}

/// Norm choices selectable from a config (`norm = "layer_norm" | "rms_norm"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    LayerNorm,
    #[default]
    RmsNorm,
}

/// A norm chosen at run time (ε = 1e-5); delegates to the concrete types.
#[derive(Clone, Debug)]
pub enum DynNorm {
    LayerNorm(LayerNorm),
    RmsNorm(RmsNorm),
}

impl Norm for DynNorm {
    type Config = NormKind;
    fn new(cfg: &NormKind, d: usize, pb: &ParamBuilder) -> Result<Self> {
        let c = NormConfig::default();
        Ok(match cfg {
            NormKind::LayerNorm => Self::LayerNorm(LayerNorm::new(&c, d, pb)?),
            NormKind::RmsNorm => Self::RmsNorm(RmsNorm::new(&c, d, pb)?),
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::LayerNorm(n) => n.forward(x),
            Self::RmsNorm(n) => n.forward(x),
        }
    }
    fn num_params(cfg: &NormKind, d: usize) -> usize {
        match cfg {
            NormKind::LayerNorm => LayerNorm::num_params(&NormConfig::default(), d),
            NormKind::RmsNorm => RmsNorm::num_params(&NormConfig::default(), d),
        }
    }
    fn flops(cfg: &NormKind, d: usize, tokens: usize) -> Flops {
        match cfg {
            NormKind::LayerNorm => LayerNorm::flops(&NormConfig::default(), d, tokens),
            NormKind::RmsNorm => RmsNorm::flops(&NormConfig::default(), d, tokens),
        }
    }
}

/// Where the norm sits in a residual block (`placement = "pre" | "post"`).
///
/// - Pre (Xiong et al. 2020): x ← x + f(norm(x)); a final norm usually follows the last block.
/// - Post (Vaswani et al. 2017): x ← norm(x + f(x)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    #[default]
    Pre,
    Post,
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};

    /// LayerNorm and RmsNorm (f32, CPU: the fused path) give the values and
    /// gradients of the composite formulas with the same parameters.
    #[test]
    fn norms_match_the_composite_formulas() -> Result<()> {
        let d = 20;
        let x = Var::from_tensor(&Tensor::randn(0.3f32, 1.7, (3, 7, d), &Device::Cpu)?)?;
        let w = Tensor::randn(0f32, 1.0, (3, 7, d), &Device::Cpu)?;
        for kind in [NormKind::LayerNorm, NormKind::RmsNorm] {
            let pb = ParamBuilder::new(1, &Device::Cpu, DType::F32);
            let norm = DynNorm::new(&kind, d, &pb)?;
            let store = pb.finish();
            for p in store.iter() {
                p.var.set(&Tensor::randn(1f32, 0.3, d, &Device::Cpu)?)?;
            }
            let p = |n: &str| store.get(n).unwrap().var.as_tensor().clone();
            let yc = match kind {
                NormKind::LayerNorm => {
                    fused::norm::layer_norm_composite(&x, &p("weight"), &p("bias"), 1e-5)?
                }
                NormKind::RmsNorm => fused::norm::rms_norm_composite(&x, &p("weight"), 1e-5)?,
            };
            let yf = norm.forward(&x)?;
            let err = |a: &Tensor, b: &Tensor| -> Result<f32> {
                ((a - b)?.abs()? / (b.abs()? + 1.0)?)?
                    .max_all()?
                    .to_scalar::<f32>()
            };
            assert!(err(&yf, &yc)? < 1e-5, "{kind:?}: values");
            let gf = (&yf * &w)?.sum_all()?.backward()?;
            let gc = (&yc * &w)?.sum_all()?.backward()?;
            let mut tracked = vec![x.as_tensor().clone()];
            tracked.extend(store.iter().map(|p| p.var.as_tensor().clone()));
            for t in tracked {
                let (a, b) = (gf.get(&t).unwrap(), gc.get(&t).unwrap());
                assert!(err(a, b)? < 1e-4, "{kind:?}: gradient error {}", err(a, b)?);
                assert!(b.abs()?.max_all()?.to_scalar::<f32>()? > 1e-2);
            }
        }
        Ok(())
    }
}
