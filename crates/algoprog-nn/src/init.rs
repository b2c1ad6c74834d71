//! Initialisation, assigned per parameter role.
//!
//! Shapes follow the PyTorch convention for linear weights: (out, in), so
//! fan_in = shape[1] and fan_out = shape[0].
//!
//! | role | `transformer_scaled` (default) | `xavier_uniform` | `kaiming_normal` |
//! |---|---|---|---|
//! | Embedding, PositionalEmbedding | N(0, 0.02) | N(0, 0.02) | N(0, 0.02) |
//! | AttentionQkv, MlpIn, Output, Recurrent, RecurrentInput, Other | N(0, 0.02) | U(±√(6/(fan_in+fan_out))) | N(0, √(2/fan_in)) |
//! | AttentionOut, MlpOut | N(0, 0.02/√(2L)) | U(±√(6/(fan_in+fan_out))) | N(0, √(2/fan_in)) |
//! | Bias | 0 | 0 | 0 |
//! | Norm | set by the norm itself (gain 1, shift 0) | same | same |
//!
//! `transformer_scaled` is the paper's default (BERT/GPT-2 N(0, 0.02) with the
//! output projections scaled by 1/√(2L), L the number of layers, as in
//! Wang et al. 2024). Embeddings keep N(0, 0.02) under every scheme because
//! they are tied to the output layer: a fan-based scale on a (V, d) table
//! would change the initial logit scale, not the body's initialisation
//! that the ablation is about.

use crate::params::ParamRole;
use serde::{Deserialize, Serialize};

/// How one parameter tensor is filled at build time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    Zeros,
    Ones,
    Constant(f64),
    /// N(0, std²).
    Normal {
        std: f64,
    },
    /// U(−bound, bound).
    Uniform {
        bound: f64,
    },
}

/// Maps (role, shape) to an [`Init`]. Implement it to add a scheme.
pub trait Initializer: Send + Sync {
    fn init(&self, role: ParamRole, shape: &[usize]) -> Init;
}

/// The initialisation schemes selectable from a config (`init = "..."`, snake_case).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitKind {
    /// N(0, 0.02), output projections N(0, 0.02/√(2L)), zero biases.
    #[default]
    TransformerScaled,
    XavierUniform,
    KaimingNormal,
}

/// An [`InitKind`] resolved for a model depth `n_layers` (the L of 1/√(2L)).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InitScheme {
    pub kind: InitKind,
    pub n_layers: usize,
}

/// Standard deviation of the `transformer_scaled` scheme.
pub const TRANSFORMER_STD: f64 = 0.02;

fn fans(shape: &[usize]) -> (f64, f64) {
    match shape {
        [] => (1.0, 1.0),
        [n] => (*n as f64, *n as f64),
        [out, inp, rest @ ..] => {
            let rf: usize = rest.iter().product();
            ((inp * rf) as f64, (out * rf) as f64)
        }
    }
}

impl Initializer for InitScheme {
    fn init(&self, role: ParamRole, shape: &[usize]) -> Init {
        use ParamRole::*;
        match role {
            Bias => return Init::Zeros,
            Norm => return Init::Ones,
            Embedding | PositionalEmbedding => {
                return Init::Normal {
                    std: TRANSFORMER_STD,
                }
            }
            AttentionQkv | AttentionOut | MlpIn | MlpOut | Output | Recurrent | RecurrentInput
            | Other => {}
        }
        let (fan_in, fan_out) = fans(shape);
        match self.kind {
            InitKind::TransformerScaled => match role {
                AttentionOut | MlpOut => Init::Normal {
                    std: TRANSFORMER_STD / (2.0 * self.n_layers.max(1) as f64).sqrt(),
                },
                AttentionQkv | MlpIn | Output | Recurrent | RecurrentInput | Other | Bias
                | Norm | Embedding | PositionalEmbedding => Init::Normal {
                    std: TRANSFORMER_STD,
                },
            },
            InitKind::XavierUniform => Init::Uniform {
                bound: (6.0 / (fan_in + fan_out)).sqrt(),
            },
            InitKind::KaimingNormal => Init::Normal {
                std: (2.0 / fan_in).sqrt(),
            },
        }
    }
}
