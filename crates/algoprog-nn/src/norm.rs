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
//! Both use ε = 1e-5 by default ([`LayerNormConfig`], [`RmsNormConfig`]);
//! a config sets it with `norm = { kind = "rms_norm", eps = 1e-6 }`. Parameter names: `weight` (gain, init 1),
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

/// The ε every norm defaults to (PyTorch's).
const DEFAULT_EPS: f64 = 1e-5;

fn check_eps(key: &str, eps: f64) -> std::result::Result<(), crate::ConfigError> {
    if !(eps.is_finite() && eps > 0.0) {
        return Err(crate::ConfigError::new(
            format!("{key}.eps"),
            format!("{key}.eps = {eps} must be a positive number: 1e-5 is the usual ε"),
        ));
    }
    Ok(())
}

/// LayerNorm settings (`norm = { kind = "layer_norm", eps = 1e-5 }`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LayerNormConfig {
    /// ε added to the variance (1e-5).
    pub eps: f64,
}
impl Default for LayerNormConfig {
    fn default() -> Self {
        Self { eps: DEFAULT_EPS }
    }
}
impl crate::choice::VariantConfig for LayerNormConfig {
    const KEYS: &'static [&'static str] = &["eps"];
    fn validate(&self, key: &str) -> std::result::Result<(), crate::ConfigError> {
        check_eps(key, self.eps)
    }
}

/// RMSNorm settings (`norm = { kind = "rms_norm", eps = 1e-5 }`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RmsNormConfig {
    /// ε added to the mean square (1e-5).
    pub eps: f64,
}
impl Default for RmsNormConfig {
    fn default() -> Self {
        Self { eps: DEFAULT_EPS }
    }
}
impl crate::choice::VariantConfig for RmsNormConfig {
    const KEYS: &'static [&'static str] = &["eps"];
    fn validate(&self, key: &str) -> std::result::Result<(), crate::ConfigError> {
        check_eps(key, self.eps)
    }
}

#[derive(Clone, Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl Norm for LayerNorm {
    type Config = LayerNormConfig;
    fn new(cfg: &LayerNormConfig, d: usize, pb: &ParamBuilder) -> Result<Self> {
        Ok(Self {
            weight: pb.param_with("weight", &[d], ParamRole::Norm, Init::Ones)?,
            bias: pb.param_with("bias", &[d], ParamRole::Norm, Init::Zeros)?,
            eps: cfg.eps,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        fused::norm::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
    fn num_params(_: &LayerNormConfig, d: usize) -> usize {
        2 * d
    }
    fn flops(_: &LayerNormConfig, d: usize, tokens: usize) -> Flops {
        Flops::new(0.0, tokens as f64 * (7.0 * d as f64 + 2.0))
    }
}

#[derive(Clone, Debug)]
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl Norm for RmsNorm {
    type Config = RmsNormConfig;
    fn new(cfg: &RmsNormConfig, d: usize, pb: &ParamBuilder) -> Result<Self> {
        Ok(Self {
            weight: pb.param_with("weight", &[d], ParamRole::Norm, Init::Ones)?,
            eps: cfg.eps,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        fused::norm::rms_norm(x, &self.weight, self.eps)
    }
    fn num_params(_: &RmsNormConfig, d: usize) -> usize {
        d
    }
    fn flops(_: &RmsNormConfig, d: usize, tokens: usize) -> Flops {
        Flops::new(0.0, tokens as f64 * (4.0 * d as f64 + 2.0))
    }
}

/// Declares the norm choices once: the config enum ([`NormConfig`], via
/// [`crate::choice_enum!`]) and the run-time norm ([`DynNorm`]) that builds
/// and delegates through the variant's config.
macro_rules! norm_choices {
    ($( $Var:ident($Cfg:ty) => $Norm:ty = $name:literal ),+ $(,)?) => {
        crate::choice_enum! {
            /// Norm choices selectable from a config: `norm = "layer_norm" |
            /// "rms_norm"`, or a table with ε: `norm = { kind = "rms_norm",
            /// eps = 1e-6 }` (see [`crate::choice`]).
            pub enum NormConfig for "model.norm" {
                $( $Var($Cfg) = $name ),+
            }
        }

        /// A norm chosen at run time; delegates to the concrete types.
        #[derive(Clone, Debug)]
        pub enum DynNorm {
            $( $Var($Norm) ),+
        }

        impl Norm for DynNorm {
            type Config = NormConfig;
            fn new(cfg: &NormConfig, d: usize, pb: &ParamBuilder) -> Result<Self> {
                Ok(match cfg {
                    $( NormConfig::$Var(c) => Self::$Var(<$Norm>::new(c, d, pb)?) ),+
                })
            }
            fn forward(&self, x: &Tensor) -> Result<Tensor> {
                match self {
                    $( Self::$Var(n) => n.forward(x) ),+
                }
            }
            fn num_params(cfg: &NormConfig, d: usize) -> usize {
                match cfg {
                    $( NormConfig::$Var(c) => <$Norm>::num_params(c, d) ),+
                }
            }
            fn flops(cfg: &NormConfig, d: usize, tokens: usize) -> Flops {
                match cfg {
                    $( NormConfig::$Var(c) => <$Norm>::flops(c, d, tokens) ),+
                }
            }
        }
    };
}

norm_choices! {
    LayerNorm(LayerNormConfig) => LayerNorm = "layer_norm",
    RmsNorm(RmsNormConfig) => RmsNorm = "rms_norm",
}

impl Default for NormConfig {
    /// RMSNorm with ε = 1e-5 (the modern Transformer's).
    fn default() -> Self {
        Self::RmsNorm(RmsNormConfig::default())
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
        for kind in [
            NormConfig::LayerNorm(LayerNormConfig { eps: 1e-5 }),
            NormConfig::RmsNorm(RmsNormConfig { eps: 1e-3 }),
        ] {
            let pb = ParamBuilder::new(1, &Device::Cpu, DType::F32);
            let norm = DynNorm::new(&kind, d, &pb)?;
            let store = pb.finish();
            for p in store.iter() {
                p.var.set(&Tensor::randn(1f32, 0.3, d, &Device::Cpu)?)?;
            }
            let p = |n: &str| store.get(n).unwrap().var.as_tensor().clone();
            let yc = match &kind {
                NormConfig::LayerNorm(c) => {
                    fused::norm::layer_norm_composite(&x, &p("weight"), &p("bias"), c.eps)?
                }
                NormConfig::RmsNorm(c) => fused::norm::rms_norm_composite(&x, &p("weight"), c.eps)?,
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
