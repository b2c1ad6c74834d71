//! Serde model configs (the TOML `[model]` section).
//!
//! Values are snake_case strings. Example:
//! ```toml
//! [model]
//! kind = "transformer"
//! d_model = 64
//! positional = "sinusoidal"   # rotary | sinusoidal | learned | none (alias nope) | alibi
//! feed_forward = "gelu"       # relu | gelu | gelu_tanh | swiglu | geglu
//! gated_hidden = "paper"      # paper (h = ff_ratio·d) | param_matched (h = 2/3·ff_ratio·d, nearest multiple of 8)
//! norm = "layer_norm"         # layer_norm | rms_norm
//! placement = "post"          # pre | post
//! final_norm = false
//! init = "transformer_scaled" # transformer_scaled | xavier_uniform | kaiming_normal
//! ```
//! An LSTM is `kind = "lstm"` with the keys of [`LstmConfig`] (`d_model`,
//! `n_layers` 2, `hidden` = d_model, `tbptt_len` 64, `dropout_input` 0.2,
//! `dropout_hidden` 0.1, `dropout_output` 0.2, `layer_norm` true,
//! `kernel` "window", `max_seq_len` 128).
//!
//! Omitted keys take the `modern` preset's values (rotary, SwiGLU, pre-RMSNorm
//! with a final norm), depth max(1, d/16), head_dim 16, ff_ratio 4,
//! max_seq_len 128, tied embeddings, biases on.

use crate::lstm::LstmConfig;
use crate::transformer::{default_depth, validate_shape, Transformer, TransformerSpec};
use crate::{FlopReport, LanguageModel, ParamCounts};
use algoprog_nn::{
    ConfigError, DynFeedForward, DynNorm, DynPositional, FeedForwardKind, FeedForwardSpec, GatedHidden,
    InitKind, NormKind, Placement, PositionalKind,
};
use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

/// Which architecture, tagged by `kind`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelConfig {
    Transformer(TransformerConfig),
    /// A stacked LSTM (see [`crate::lstm`]).
    Lstm(LstmConfig),
}

fn d16() -> usize {
    16
}
fn d4() -> f64 {
    4.0
}
fn d128() -> usize {
    128
}
fn dtrue() -> bool {
    true
}
fn dswiglu() -> FeedForwardKind {
    FeedForwardKind::SwiGlu
}

/// A Transformer chosen at run time (see the module docs for keys and values).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransformerConfig {
    pub d_model: usize,
    /// Depth; `None` = max(1, d_model/16) (the paper's width:depth ≈ 16).
    #[serde(default)]
    pub n_layers: Option<usize>,
    #[serde(default = "d16")]
    pub head_dim: usize,
    #[serde(default = "d4")]
    pub ff_ratio: f64,
    #[serde(default)]
    pub positional: PositionalKind,
    #[serde(default = "dswiglu")]
    pub feed_forward: FeedForwardKind,
    /// Hidden-size rule of gated feed-forwards (default `paper`: h = ff_ratio·d).
    #[serde(default)]
    pub gated_hidden: GatedHidden,
    #[serde(default)]
    pub norm: NormKind,
    #[serde(default)]
    pub placement: Placement,
    #[serde(default = "dtrue")]
    pub final_norm: bool,
    #[serde(default)]
    pub init: InitKind,
    #[serde(default = "d128")]
    pub max_seq_len: usize,
    #[serde(default = "dtrue")]
    pub tie_embeddings: bool,
    /// Biases on attention and feed-forward linear layers (initialised to 0).
    #[serde(default = "dtrue")]
    pub bias: bool,
}

/// The run-time Transformer every config builds.
pub type DynTransformer = Transformer<DynPositional, DynFeedForward, DynNorm>;

impl TransformerConfig {
    /// Modern: rotary, SwiGLU (paper hidden size), pre-RMSNorm with a final
    /// norm. (Its AdamW + cosine are chosen in the trainer config.)
    pub fn modern(d_model: usize) -> Self {
        Self {
            d_model,
            n_layers: None,
            head_dim: 16,
            ff_ratio: 4.0,
            positional: PositionalKind::Rotary,
            feed_forward: FeedForwardKind::SwiGlu,
            gated_hidden: GatedHidden::Paper,
            norm: NormKind::RmsNorm,
            placement: Placement::Pre,
            final_norm: true,
            init: InitKind::TransformerScaled,
            max_seq_len: 128,
            tie_embeddings: true,
            bias: true,
        }
    }

    /// Retro (Vaswani et al. 2017 style): sinusoidal positions, exact GeLU
    /// MLP, post-LayerNorm (no final norm: every block already ends in a
    /// norm). (Its Adam + inverse-sqrt are chosen in the trainer config.)
    pub fn retro(d_model: usize) -> Self {
        Self {
            positional: PositionalKind::Sinusoidal,
            feed_forward: FeedForwardKind::Gelu,
            norm: NormKind::LayerNorm,
            placement: Placement::Post,
            final_norm: false,
            ..Self::modern(d_model)
        }
    }

    /// The depth actually used.
    pub fn depth(&self) -> usize {
        self.n_layers.unwrap_or_else(|| default_depth(self.d_model))
    }

    /// Checks the config; errors name the `model.*` key and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_shape(self.d_model, self.n_layers, self.head_dim, self.ff_ratio, self.max_seq_len)?;
        if self.positional == PositionalKind::Rotary && !self.head_dim.is_multiple_of(2) {
            return Err(ConfigError::new(
                "model.head_dim",
                format!(
                    "model.head_dim = {} is odd but model.positional = \"rotary\" rotates pairs: choose an even head_dim (16)",
                    self.head_dim
                ),
            ));
        }
        Ok(())
    }

    /// The resolved generic spec (depth filled in).
    pub fn spec(&self) -> TransformerSpec<DynPositional, DynFeedForward, DynNorm> {
        TransformerSpec {
            d_model: self.d_model,
            n_layers: self.depth(),
            head_dim: self.head_dim,
            ff_ratio: self.ff_ratio,
            bias: self.bias,
            placement: self.placement,
            final_norm: self.final_norm,
            init: self.init,
            max_seq_len: self.max_seq_len,
            tie_embeddings: self.tie_embeddings,
            positional: self.positional,
            feed_forward: FeedForwardSpec { kind: self.feed_forward, gated_hidden: self.gated_hidden },
            norm: self.norm,
        }
    }

    /// Builds the run-time model.
    pub fn build(&self, vocab_size: usize, seed: u64, device: &Device, dtype: DType) -> candle_core::Result<DynTransformer> {
        self.validate().map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        Transformer::new(&self.spec(), vocab_size, seed, device, dtype)
    }
}

impl ModelConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            ModelConfig::Transformer(c) => c.validate(),
            ModelConfig::Lstm(c) => c.validate(),
        }
    }

    /// Validates, then builds the model with seeded initialisation.
    pub fn build(
        &self,
        vocab_size: usize,
        seed: u64,
        device: &Device,
        dtype: DType,
    ) -> candle_core::Result<Box<dyn LanguageModel>> {
        match self {
            ModelConfig::Transformer(c) => Ok(Box::new(c.build(vocab_size, seed, device, dtype)?)),
            ModelConfig::Lstm(c) => Ok(Box::new(c.build(vocab_size, seed, device, dtype)?)),
        }
    }

    /// Parameter counts without building.
    pub fn param_counts(&self, vocab_size: usize) -> ParamCounts {
        match self {
            ModelConfig::Transformer(c) => c.spec().param_counts(vocab_size),
            ModelConfig::Lstm(c) => c.param_counts(vocab_size),
        }
    }

    /// FLOPs per token without building.
    pub fn flops(&self, vocab_size: usize, seq_len: usize) -> FlopReport {
        match self {
            ModelConfig::Transformer(c) => c.spec().flops(vocab_size, seq_len),
            ModelConfig::Lstm(c) => c.flops(vocab_size, seq_len),
        }
    }
}
