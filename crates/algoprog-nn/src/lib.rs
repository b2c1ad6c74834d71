//! algoprog-nn: the components an ablation swaps.
//!
//! Each seam is a trait with a default implementation per historical choice:
//!
//! | seam | trait | implementations | run-time enum (config) |
//! |---|---|---|---|
//! | positional encoding | [`PositionalEncoding`] | [`Rotary`], [`Sinusoidal`], [`Learned`], [`NoPe`], [`Alibi`] | [`DynPositional`] ([`PositionalConfig`]) |
//! | feed-forward | [`FeedForward`] (built from an [`Activation`]) | [`Mlp<Relu>`](Mlp), [`Mlp<Gelu>`](Mlp), [`Mlp<GeluTanh>`](Mlp), [`SwiGlu`], [`GeGlu`] | [`DynFeedForward`] ([`FeedForwardKind`] + [`GatedHidden`]) |
//! | normalisation | [`Norm`] | [`LayerNorm`], [`RmsNorm`] | [`DynNorm`] ([`NormConfig`]) |
//! | initialisation | [`Initializer`] | [`InitScheme`] over [`InitKind`] | [`InitKind`] |
//! | LR schedule | [`LrSchedule`] | [`ScheduleConfig`] variants | [`ScheduleConfig`] |
//! | optimiser | [`Optimizer`] | [`AdamW`], [`Sgd`], [`RmsProp`] | [`OptimizerConfig`] |
//!
//! The run-time enums implement the same traits by delegation, so a TOML
//! config picks components at run time. Their config enums hold each
//! variant's own config ([`choice`]: `norm = { kind = "rms_norm", eps = 1e-6 }`,
//! or the bare name for the defaults), declared once per seam so an in-tree
//! variant is one line plus its type. Library code names concrete
//! types (`Transformer<Rotary, SwiGlu, RmsNorm>` in `algoprog-models`).
//! A user adds a component by implementing the trait in their own crate.
//!
//! Every component reports its forward FLOPs ([`Flops`]) for a given shape:
//! matmuls at 2·m·n·k (the convention a profiler counting matmuls uses),
//! element-wise work separately at one FLOP per arithmetic operation per
//! element (transcendentals such as `exp`, `erf`, `tanh`, `sqrt` count as one).
//!
//! Every component has two implementations of one formula: a composition of
//! differentiable candle ops (the reference, and the path on GPUs and for
//! f64), and, for f32 tensors on the CPU, a fused op from [`fused`] with its
//! own backward pass (cross-entropy, attention, rotary, norms, activations,
//! AdamW). Tests hold each fused op to its composite and to finite
//! differences; `ALGOPROG_FUSED=0` switches the fused ops off. None of
//! candle's fast paths without a backward (`rope*`, `ops::rms_norm`,
//! `ops::layer_norm`, `softmax_last_dim`, `sdpa`) is used.

pub mod activation;
pub mod attention;
pub mod choice;
pub mod feed_forward;
pub mod fused;
pub mod gradcheck;
pub mod init;
pub mod loss;
pub mod norm;
pub mod optim;
pub mod params;
pub mod positional;
pub mod precision;
pub mod schedule;
#[cfg(test)]
mod testutil;

pub use activation::{Activation, Gelu, GeluTanh, Relu, Silu};
pub use attention::{AttentionDims, CausalSelfAttention};
pub use choice::VariantConfig;
pub use feed_forward::{
    DynFeedForward, FeedForward, FeedForwardKind, FeedForwardSpec, FfDims, FromFeedForwardSpec,
    GatedFeedForward, GatedHidden, GeGlu, Mlp, SwiGlu,
};
pub use init::{Init, InitKind, InitScheme, Initializer};
pub use loss::{
    clip_grad_norm, cross_entropy, cross_entropy_composite, cross_entropy_with_bias, linear,
};
pub use norm::{
    DynNorm, LayerNorm, LayerNormConfig, Norm, NormConfig, Placement, RmsNorm, RmsNormConfig,
};
pub use optim::{AdamW, DecayMask, Optimizer, OptimizerConfig, RmsProp, Sgd};
pub use params::{Param, ParamBuilder, ParamRole, ParamStore};
pub use positional::{
    Alibi, DynPositional, Learned, NoPe, PosDims, PositionalConfig, PositionalEncoding, Rotary,
    RotaryConfig, Sinusoidal, SinusoidalConfig,
};
pub use positional::{FusedRotation, FusedScoreBias};
pub use schedule::{LrSchedule, ScheduleConfig};

use serde::{Deserialize, Serialize};

/// A configuration error: which key is wrong and how to fix it.
///
/// `key` is the dotted TOML path (e.g. `model.d_model`); `message` is the
/// full sentence shown to the user and names the key and the fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Forward FLOPs of a component for a given shape.
///
/// `matmul` counts matrix products at 2·m·n·k; `elementwise` counts
/// everything else (bias adds, activations, norms, softmax, rotations) at one
/// FLOP per arithmetic operation per element. The model-level total of the
/// profiler convention is the sum of `matmul` only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Flops {
    pub matmul: f64,
    pub elementwise: f64,
}

impl Flops {
    pub const ZERO: Flops = Flops {
        matmul: 0.0,
        elementwise: 0.0,
    };
    pub fn new(matmul: f64, elementwise: f64) -> Self {
        Self {
            matmul,
            elementwise,
        }
    }
    /// matmul + elementwise.
    pub fn total(&self) -> f64 {
        self.matmul + self.elementwise
    }
    /// Both parts multiplied by `k`.
    pub fn scale(&self, k: f64) -> Self {
        Self {
            matmul: self.matmul * k,
            elementwise: self.elementwise * k,
        }
    }
}

impl std::ops::Add for Flops {
    type Output = Flops;
    fn add(self, o: Flops) -> Flops {
        Flops {
            matmul: self.matmul + o.matmul,
            elementwise: self.elementwise + o.elementwise,
        }
    }
}

impl std::iter::Sum for Flops {
    fn sum<I: Iterator<Item = Flops>>(iter: I) -> Flops {
        iter.fold(Flops::ZERO, |a, b| a + b)
    }
}
