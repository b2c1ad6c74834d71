//! Serde model configs (the TOML `[model]` section).
//!
//! Values are snake_case strings. Example:
//! ```toml
//! [model]
//! kind = "transformer"
//! d_model = 64
//! positional = "sinusoidal"   # rotary | sinusoidal | learned | none (alias nope) | alibi
//!                             # or a table with the variant's keys:
//!                             #   { kind = "rotary", base = 10000.0 }       (θ base)
//!                             #   { kind = "sinusoidal", base = 10000.0 }   (wavelength base)
//! feed_forward = "gelu"       # relu | gelu | gelu_tanh | swiglu | geglu
//! gated_hidden = "paper"      # paper (h = ff_ratio·d) | param_matched (h = 2/3·ff_ratio·d, nearest multiple of 8)
//! norm = "layer_norm"         # layer_norm | rms_norm, or { kind = "layer_norm", eps = 1e-5 }
//! placement = "post"          # pre | post
//! final_norm = false
//! final_norm_kind = "layer_norm" # optional: the final norm's kind when it differs from `norm`
//! init = "transformer_scaled" # transformer_scaled | xavier_uniform | kaiming_normal
//! output_bias = false         # a trained bias on the tied output layer (logits = h·Eᵀ + b)
//! ```
//! A bare name means the variant with its default settings (rotary base
//! 10 000, ε = 1e-5); a table's omitted keys take those defaults, and an
//! unknown key is an error naming it and the keys the variant takes. A
//! config equal to its variant's defaults is written back as the bare name.
//! An LSTM is `kind = "lstm"` with the keys of [`LstmConfig`] (`d_model`,
//! `n_layers` 2, `hidden` = d_model, `tbptt_len` 64, `dropout_input` 0.2,
//! `dropout_hidden` 0.1, `dropout_output` 0.2, `layer_norm` true,
//! `kernel` "window", `max_seq_len` 128, `output_bias` false, `carry_state` "within_sequence":
//! the papers' Table 3; the `lstm` preset sets the authors' runs instead).
//!
//! Omitted keys take the `modern` preset's values (rotary, SwiGLU, pre-RMSNorm
//! with a final norm), depth max(1, d/16), head_dim 16, ff_ratio 4,
//! max_seq_len 128, tied embeddings, biases on, no output bias.

use crate::lstm::LstmConfig;
use crate::transformer::{
    default_depth, validate_shape, Transformer, TransformerSpec, DEFAULT_FF_RATIO,
    DEFAULT_HEAD_DIM, DEFAULT_MAX_SEQ_LEN,
};
use crate::{FlopReport, LanguageModel, ParamCounts};
use algoprog_nn::{
    ConfigError, DynFeedForward, DynNorm, DynPositional, FeedForwardKind, FeedForwardSpec,
    GatedHidden, InitKind, NormConfig, Placement, PositionalConfig, PositionalEncoding,
};
use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------- size limits
//
// Every size a config can state is bounded before anything is allocated, so a
// typo (`d_model = 1600000`) is an error naming the key rather than an abort
// with "memory allocation failed". The bounds are far above any model this
// single-device trainer can hold, and keep every parameter count exact in
// `usize` (no product can overflow once each factor is within its bound).

/// Widest model: 65,536, 3.5 times the widest published dense Transformer
/// (PaLM 540B, d_model = 18,432).
pub const MAX_D_MODEL: usize = 1 << 16;
/// Deepest model: 1,024 layers, 8 times the deepest published dense language
/// models (about 126 layers). Applies to the depth in use, including the
/// default max(1, d_model/16).
pub const MAX_LAYERS: usize = 1 << 10;
/// Largest feed-forward expansion: 64, 16 times the usual 4.
pub const MAX_FF_RATIO: f64 = 64.0;
/// Longest context: 2^20 = 1,048,576 positions, the same bound as the data's
/// `seq_len` (a longer table could never be used).
pub const MAX_SEQ_LEN: usize = 1 << 20;
/// Most weights plus position tables (sinusoidal, rotary, ALiBi buffers) one
/// model may have: 10^10. Training holds 16 bytes per parameter (f32
/// weights, gradients and two AdamW moments), 160 GB at this size: more than
/// the memory of the largest single accelerator (141 GB) or of any machine
/// this trainer (one device, no model parallelism) runs on.
pub const MAX_MODEL_ELEMENTS: f64 = 1e10;

fn too_large(
    key: &str,
    value: impl std::fmt::Display,
    max: impl std::fmt::Display,
    why: &str,
) -> ConfigError {
    ConfigError::new(
        key,
        format!("{key} = {value} is more than the maximum {max} ({why})"),
    )
}

/// Elements of the position tables built for a Transformer, as f64 (no
/// overflow); a learned table is counted as parameters instead.
fn position_table_elements(c: &TransformerConfig) -> f64 {
    DynPositional::table_elements(&c.positional, &c.spec().pos_dims())
}

/// Which architecture, tagged by `kind`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelConfig {
    Transformer(TransformerConfig),
    /// A stacked LSTM (see [`crate::lstm`]).
    Lstm(LstmConfig),
    /// A model built outside these crates by the builder a program registers
    /// under `builder` (algoprog-train's model registry); see [`CustomModelConfig`].
    Custom(CustomModelConfig),
}

/// `kind = "custom"`: a model this crate does not build. The program that
/// trains it registers a builder under the name `builder`
/// (`algoprog_train::register_model`); the trainer hands it this config and
/// takes parameter counts and FLOPs from the built model. `d_model` is the
/// width a study sets per run, `max_seq_len` the longest sequence the model
/// reads; every other parameter goes in `params` (a free TOML table, e.g.
/// `params = { n_layers = 2, activation = "squared_relu" }`) and is the
/// builder's to read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomModelConfig {
    /// The name the builder is registered under.
    pub builder: String,
    pub d_model: usize,
    #[serde(default = "d128")]
    pub max_seq_len: usize,
    #[serde(default, skip_serializing_if = "toml::Table::is_empty")]
    pub params: toml::Table,
}

impl CustomModelConfig {
    /// Checks what this crate can: a builder name and bounded sizes.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.builder.trim().is_empty() {
            return Err(ConfigError::new(
                "model.builder",
                "is empty: name the builder the program registers (algoprog_train::register_model)",
            ));
        }
        if self.d_model == 0 || self.d_model > MAX_D_MODEL {
            return Err(ConfigError::new(
                "model.d_model",
                format!(
                    "model.d_model = {} is not within 1 ..= {MAX_D_MODEL}",
                    self.d_model
                ),
            ));
        }
        if self.max_seq_len == 0 || self.max_seq_len > MAX_SEQ_LEN {
            return Err(ConfigError::new(
                "model.max_seq_len",
                format!(
                    "model.max_seq_len = {} is not within 1 ..= {MAX_SEQ_LEN}",
                    self.max_seq_len
                ),
            ));
        }
        Ok(())
    }
}

// Serde defaults: the `modern` preset's values (one source: the constants of
// `transformer.rs` and `FeedForwardSpec::default`).
fn d16() -> usize {
    DEFAULT_HEAD_DIM
}
fn d4() -> f64 {
    DEFAULT_FF_RATIO
}
fn d128() -> usize {
    DEFAULT_MAX_SEQ_LEN
}
fn dtrue() -> bool {
    true
}
fn dswiglu() -> FeedForwardKind {
    FeedForwardSpec::default().kind
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
    /// A name or a table with the encoding's keys (`{ kind = "rotary", base = 10000.0 }`).
    #[serde(default)]
    pub positional: PositionalConfig,
    #[serde(default = "dswiglu")]
    pub feed_forward: FeedForwardKind,
    /// Hidden-size rule of gated feed-forwards (default `paper`: h = ff_ratio·d).
    #[serde(default)]
    pub gated_hidden: GatedHidden,
    /// A name or a table with ε (`{ kind = "rms_norm", eps = 1e-5 }`).
    #[serde(default)]
    pub norm: NormConfig,
    #[serde(default)]
    pub placement: Placement,
    #[serde(default = "dtrue")]
    pub final_norm: bool,
    /// The final norm's kind when it differs from the blocks' `norm` (the
    /// authors' retro runs: post-RMSNorm blocks, a final LayerNorm); omitted
    /// = `norm`, and then left out of the serialised config (run ids of
    /// configs without it are unchanged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_norm_kind: Option<NormConfig>,
    #[serde(default)]
    pub init: InitKind,
    #[serde(default = "d128")]
    pub max_seq_len: usize,
    #[serde(default = "dtrue")]
    pub tie_embeddings: bool,
    /// Biases on attention and feed-forward linear layers (initialised to 0).
    #[serde(default = "dtrue")]
    pub bias: bool,
    /// A trained bias on the (tied) output layer, logits = h·Eᵀ + b,
    /// initialised to 0. Off by default so that stored run records, written
    /// before the key existed, keep meaning the model they trained; written
    /// only when on, so records of models without it read as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub output_bias: bool,
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
            head_dim: d16(),
            ff_ratio: d4(),
            positional: PositionalConfig::default(),
            feed_forward: dswiglu(),
            gated_hidden: GatedHidden::default(),
            norm: NormConfig::default(),
            placement: Placement::Pre,
            final_norm: true,
            final_norm_kind: None,
            init: InitKind::TransformerScaled,
            max_seq_len: d128(),
            tie_embeddings: true,
            bias: true,
            output_bias: false,
        }
    }

    /// Retro as the papers' text describes it (Vaswani et al. 2017 style):
    /// sinusoidal positions (embeddings × √d), exact GeLU MLP,
    /// post-LayerNorm (no final norm: every block already ends in a norm).
    /// The `retro-text` preset. (Its Adam + inverse-sqrt are chosen in the
    /// trainer config.)
    pub fn retro(d_model: usize) -> Self {
        Self {
            positional: PositionalConfig::Sinusoidal(Default::default()),
            feed_forward: FeedForwardKind::Gelu,
            norm: NormConfig::LayerNorm(Default::default()),
            placement: Placement::Post,
            final_norm: false,
            ..Self::modern(d_model)
        }
    }

    /// Retro as the authors ran it: [`retro`](Self::retro) with post-RMSNorm
    /// blocks and a final LayerNorm before the tied output layer. The
    /// `retro` (= `retro-runs`) preset: the published retro frontier and
    /// the modern-over-retro 1.33 were measured on these runs.
    pub fn retro_runs(d_model: usize) -> Self {
        Self {
            norm: NormConfig::RmsNorm(Default::default()),
            final_norm: true,
            final_norm_kind: Some(NormConfig::LayerNorm(Default::default())),
            ..Self::retro(d_model)
        }
    }

    /// The depth actually used.
    pub fn depth(&self) -> usize {
        self.n_layers.unwrap_or_else(|| default_depth(self.d_model))
    }

    /// Checks the config; errors name the `model.*` key and the fix.
    /// Sizes are bounded (see [`MAX_D_MODEL`] and the other limits) before
    /// anything is built.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate_shape(
            self.d_model,
            self.n_layers,
            self.head_dim,
            self.ff_ratio,
            self.max_seq_len,
        )?;
        if self.d_model > MAX_D_MODEL {
            return Err(too_large(
                "model.d_model",
                self.d_model,
                MAX_D_MODEL,
                "3.5 times the widest published model; try 64 to 4096",
            ));
        }
        if self.depth() > MAX_LAYERS {
            let shown = match self.n_layers {
                Some(n) => n.to_string(),
                None => format!("{} (d_model/16, as n_layers is not set)", self.depth()),
            };
            return Err(too_large(
                "model.n_layers",
                shown,
                MAX_LAYERS,
                "8 times the deepest published language models",
            ));
        }
        if self.ff_ratio > MAX_FF_RATIO {
            return Err(too_large(
                "model.ff_ratio",
                self.ff_ratio,
                MAX_FF_RATIO,
                "16 times the usual 4",
            ));
        }
        if self.max_seq_len > MAX_SEQ_LEN {
            return Err(too_large(
                "model.max_seq_len",
                self.max_seq_len,
                MAX_SEQ_LEN,
                "the longest data.seq_len the data accepts",
            ));
        }
        if self.final_norm_kind.is_some() && !self.final_norm {
            return Err(ConfigError::new(
                "model.final_norm_kind",
                "model.final_norm_kind is set but model.final_norm = false: set final_norm = true, or remove final_norm_kind",
            ));
        }
        self.positional.validate()?;
        self.norm.validate()?;
        if matches!(self.positional, PositionalConfig::Rotary(_))
            && !self.head_dim.is_multiple_of(2)
        {
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
            final_norm_config: self.final_norm_kind.clone(),
            init: self.init,
            max_seq_len: self.max_seq_len,
            tie_embeddings: self.tie_embeddings,
            output_bias: self.output_bias,
            positional: self.positional.clone(),
            feed_forward: FeedForwardSpec {
                kind: self.feed_forward,
                gated_hidden: self.gated_hidden,
            },
            norm: self.norm.clone(),
        }
    }

    /// Builds the run-time model (after [`ModelConfig::check_size`]'s bound with this vocabulary).
    pub fn build(
        &self,
        vocab_size: usize,
        seed: u64,
        device: &Device,
        dtype: DType,
    ) -> candle_core::Result<DynTransformer> {
        self.validate()
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        ModelConfig::Transformer(self.clone())
            .check_size(vocab_size)
            .map_err(|e| candle_core::Error::Msg(format!("{}: {}", e.key, e.message)))?;
        Transformer::new(&self.spec(), vocab_size, seed, device, dtype)
    }
}

impl ModelConfig {
    /// Checks the config, sizes included; errors name the `model.*` key and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self {
            ModelConfig::Transformer(c) => c.validate(),
            ModelConfig::Custom(c) => c.validate(),
            ModelConfig::Lstm(c) => {
                c.validate()?;
                let why_width =
                    "3.5 times the widest published model; the papers' LSTMs are 64 to 1024 wide";
                if c.d_model > MAX_D_MODEL {
                    return Err(too_large(
                        "model.d_model",
                        c.d_model,
                        MAX_D_MODEL,
                        why_width,
                    ));
                }
                if c.hidden_size() > MAX_D_MODEL {
                    return Err(too_large(
                        "model.hidden",
                        c.hidden_size(),
                        MAX_D_MODEL,
                        why_width,
                    ));
                }
                if c.n_layers > MAX_LAYERS {
                    return Err(too_large(
                        "model.n_layers",
                        c.n_layers,
                        MAX_LAYERS,
                        "the papers' LSTMs have 2",
                    ));
                }
                if c.max_seq_len > MAX_SEQ_LEN {
                    return Err(too_large(
                        "model.max_seq_len",
                        c.max_seq_len,
                        MAX_SEQ_LEN,
                        "the longest data.seq_len the data accepts",
                    ));
                }
                if c.tbptt_len > MAX_SEQ_LEN {
                    return Err(too_large(
                        "model.tbptt_len",
                        c.tbptt_len,
                        MAX_SEQ_LEN,
                        "the longest sequence there can be",
                    ));
                }
                Ok(())
            }
        }
    }

    /// The longest sequence the model accepts (`model.max_seq_len`).
    pub fn max_seq_len(&self) -> usize {
        match self {
            ModelConfig::Transformer(c) => c.max_seq_len,
            ModelConfig::Lstm(c) => c.max_seq_len,
            ModelConfig::Custom(c) => c.max_seq_len,
        }
    }

    /// Bounds the whole model with a vocabulary of `vocab_size` ids: weights
    /// (embeddings included) plus position tables at most
    /// [`MAX_MODEL_ELEMENTS`]. Call after [`ModelConfig::validate`], whose
    /// per-key bounds keep the parameter count exact; the error names the
    /// key that contributes most.
    ///
    /// A custom model's size is known only once built: its builder (or the
    /// trainer, from the built model) bounds it, so this checks its keys only.
    pub fn check_size(&self, vocab_size: usize) -> Result<(), ConfigError> {
        self.validate()?;
        if let ModelConfig::Custom(_) = self {
            return Ok(());
        }
        let params = self.param_counts(vocab_size);
        let tables = match self {
            ModelConfig::Transformer(c) => position_table_elements(c),
            ModelConfig::Lstm(_) | ModelConfig::Custom(_) => 0.0,
        };
        let total = params.total() as f64 + tables;
        if total <= MAX_MODEL_ELEMENTS {
            return Ok(());
        }
        let (key, part) =
            if tables > params.non_embedding as f64 && tables > params.embedding as f64 {
                ("model.max_seq_len", "position tables")
            } else if params.embedding > params.non_embedding {
                ("model.d_model", "embeddings (vocabulary × d_model)")
            } else {
                ("model.d_model", "layer weights")
            };
        Err(ConfigError::new(
            key,
            format!(
                "the model has {:.3e} weights and position-table entries (mostly {part}; vocabulary {vocab_size}), \
                 more than the maximum {MAX_MODEL_ELEMENTS:.0e}: its training state would not fit one device; \
                 lower model.d_model, model.n_layers, model.ff_ratio or model.max_seq_len",
                total
            ),
        ))
    }

    /// Validates, then builds the model with seeded initialisation.
    pub fn build(
        &self,
        vocab_size: usize,
        seed: u64,
        device: &Device,
        dtype: DType,
    ) -> candle_core::Result<Box<dyn LanguageModel>> {
        self.check_size(vocab_size)
            .map_err(|e| candle_core::Error::Msg(format!("{}: {}", e.key, e.message)))?;
        match self {
            ModelConfig::Transformer(c) => Ok(Box::new(c.build(vocab_size, seed, device, dtype)?)),
            ModelConfig::Lstm(c) => Ok(Box::new(c.build(vocab_size, seed, device, dtype)?)),
            ModelConfig::Custom(c) => Err(candle_core::Error::Msg(format!(
                "model.kind = \"custom\" (builder `{}`) is built by the program's model registry \
                 (algoprog_train::register_model), not by ModelConfig::build",
                c.builder
            ))),
        }
    }

    /// Parameter counts without building; `None` for a custom model, whose
    /// counts come from the built model (algoprog-train's registry).
    pub fn try_param_counts(&self, vocab_size: usize) -> Option<ParamCounts> {
        match self {
            ModelConfig::Transformer(c) => Some(c.spec().param_counts(vocab_size)),
            ModelConfig::Lstm(c) => Some(c.param_counts(vocab_size)),
            ModelConfig::Custom(_) => None,
        }
    }

    /// Parameter counts without building.
    ///
    /// # Panics
    /// For a custom model, whose counts are known only once built: use
    /// [`ModelConfig::try_param_counts`], or count the built model.
    pub fn param_counts(&self, vocab_size: usize) -> ParamCounts {
        self.try_param_counts(vocab_size).unwrap_or_else(|| {
            panic!("a custom model's parameter counts come from the built model, not its config")
        })
    }

    /// FLOPs per token without building; `None` for a custom model (see
    /// [`ModelConfig::try_param_counts`]).
    pub fn try_flops(&self, vocab_size: usize, seq_len: usize) -> Option<FlopReport> {
        match self {
            ModelConfig::Transformer(c) => Some(c.spec().flops(vocab_size, seq_len)),
            ModelConfig::Lstm(c) => Some(c.flops(vocab_size, seq_len)),
            ModelConfig::Custom(_) => None,
        }
    }

    /// FLOPs per token without building.
    ///
    /// # Panics
    /// For a custom model (see [`ModelConfig::param_counts`]).
    pub fn flops(&self, vocab_size: usize, seq_len: usize) -> FlopReport {
        self.try_flops(vocab_size, seq_len).unwrap_or_else(|| {
            panic!("a custom model's FLOPs come from the built model, not its config")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(e: ConfigError) -> String {
        e.key
    }

    #[test]
    fn each_size_key_has_a_maximum() {
        let ok = TransformerConfig::modern(64);
        assert!(ok.validate().is_ok());
        let t = |f: &dyn Fn(&mut TransformerConfig)| {
            let mut c = ok.clone();
            f(&mut c);
            c.validate().map_err(key)
        };
        assert_eq!(t(&|c| c.d_model = 1_600_000), Err("model.d_model".into()));
        let widest = |c: &mut TransformerConfig| {
            c.d_model = MAX_D_MODEL;
            c.n_layers = Some(2);
        };
        assert_eq!(t(&widest), Ok(()), "the maximum itself is allowed");
        assert_eq!(
            t(&|c| c.n_layers = Some(MAX_LAYERS + 1)),
            Err("model.n_layers".into())
        );
        // the default depth d/16 counts too: d = 32768 resolves to 2048 layers
        assert_eq!(t(&|c| c.d_model = 32_768), Err("model.n_layers".into()));
        assert_eq!(t(&|c| c.ff_ratio = 1e300), Err("model.ff_ratio".into()));
        assert_eq!(
            t(&|c| c.max_seq_len = MAX_SEQ_LEN + 1),
            Err("model.max_seq_len".into())
        );
        let mut lstm = LstmConfig::paper_no_dropout(64);
        lstm.hidden = Some(1 << 20);
        assert_eq!(
            ModelConfig::Lstm(lstm.clone()).validate().map_err(key),
            Err("model.hidden".into())
        );
        lstm.hidden = None;
        lstm.n_layers = 1 << 20;
        assert_eq!(
            ModelConfig::Lstm(lstm).validate().map_err(key),
            Err("model.n_layers".into())
        );
    }

    #[test]
    fn whole_model_size_is_checked_with_the_vocabulary() {
        // d 4096 × 64 layers: 12·4096²·64 ≈ 1.3e10 layer weights
        let mut c = TransformerConfig::modern(4096);
        c.n_layers = Some(64);
        let e = ModelConfig::Transformer(c.clone())
            .check_size(4096)
            .unwrap_err();
        assert_eq!(e.key, "model.d_model");
        assert!(
            e.message.contains("layer weights") && e.message.contains("1e10"),
            "{}",
            e.message
        );
        c.n_layers = Some(8);
        assert!(ModelConfig::Transformer(c.clone())
            .check_size(50_257)
            .is_ok());
        // embeddings dominate: 2^24 ids × 1024 = 1.7e10
        let e = ModelConfig::Transformer(TransformerConfig::modern(1024))
            .check_size(1 << 24)
            .unwrap_err();
        assert!(e.message.contains("embeddings"), "{}", e.message);
        // ALiBi's (heads, T, T) bias table: 4 heads × 2^20² entries
        let mut a = TransformerConfig::modern(64);
        a.positional = PositionalConfig::Alibi(());
        a.max_seq_len = MAX_SEQ_LEN;
        assert_eq!(
            ModelConfig::Transformer(a.clone())
                .check_size(256)
                .unwrap_err()
                .key,
            "model.max_seq_len"
        );
        // and building refuses before allocating anything
        let err = ModelConfig::Transformer(a)
            .build(256, 0, &Device::Cpu, DType::F32)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("model.max_seq_len"), "{err}");
    }
}
