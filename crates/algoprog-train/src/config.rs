//! Run configuration: what one training run is, fully resolved.
//!
//! A TOML file may name a `preset` (see [`PRESETS`]) and override any key.
//! Resolution merges the file over the preset, then deserialises strictly
//! (`deny_unknown_fields` everywhere) and validates, so a wrong key, a wrong
//! type or an impossible value fails before any training with an error that
//! names the key and the fix.

use std::path::Path;

use algoprog_data::{BatchOrder, DataConfig};
use algoprog_models::{LstmConfig, ModelConfig, TransformerConfig};
use algoprog_nn::{OptimizerConfig, ScheduleConfig};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::device::{DeviceSpec, Precision};
use crate::error::TrainError;

/// Everything that defines one training run. Serialised verbatim into `run.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Human-readable name; also the default output folder prefix.
    #[serde(default = "default_name")]
    pub name: String,
    /// Family (algorithm variant) for analyses, e.g. `modern`. Defaults to the preset name or `name`.
    #[serde(default)]
    pub family: Option<String>,
    /// Preset the file started from (informational once resolved).
    #[serde(default)]
    pub preset: Option<String>,
    /// Seed for initialisation, data order and dropout.
    #[serde(default)]
    pub seed: u64,
    pub model: ModelConfig,
    #[serde(default)]
    pub data: DataConfig,
    pub train: TrainConfig,
    /// Where to train: `"cpu"` (default), `"cuda"` or `"cuda:N"` (see
    /// [`crate::device`]). Omitted from the serialised config (and so from
    /// the run id) when it is the CPU.
    #[serde(default, skip_serializing_if = "DeviceSpec::is_cpu")]
    pub device: DeviceSpec,
    /// `"f32"` (default) or `"bf16"` matmuls on a GPU (see
    /// [`crate::device::Precision`]); omitted from the serialised config when f32.
    #[serde(default, skip_serializing_if = "Precision::is_f32")]
    pub precision: Precision,
}

fn default_name() -> String {
    "run".to_string()
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamCountKind {
    #[default]
    Total,
    NonEmbedding,
}

/// Optimisation settings of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub optimizer: OptimizerConfig,
    pub schedule: ScheduleConfig,
    /// Peak learning rate.
    pub lr: f64,
    /// Sequences per micro-batch.
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Micro-batches per optimiser step (the effective batch is batch_size × grad_accum).
    #[serde(default = "one")]
    pub grad_accum: usize,
    /// Training budget in optimiser steps. Exactly one of `steps`, `tokens`, `tokens_per_param` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    /// Training budget in tokens (rounded up to whole steps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// Training budget in tokens per parameter (20 for the papers' ablations, 40 for their scaling runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_param: Option<f64>,
    /// Which parameter count `tokens_per_param` multiplies: `total` (Chinchilla's convention, default) or `non_embedding`.
    #[serde(default)]
    pub param_count: ParamCountKind,
    /// Global gradient-norm clip; `0` disables clipping.
    #[serde(default = "default_clip")]
    pub grad_clip: f64,
    /// Evaluate on the validation set every this many optimiser steps (and at the end).
    #[serde(default = "default_eval_interval")]
    pub eval_interval: usize,
    /// Limit evaluation to the first this many validation batches (default: the whole validation set).
    #[serde(default)]
    pub eval_batches: Option<usize>,
    /// A run whose training loss exceeds this multiple of its first loss (or is NaN/inf) is stopped and marked diverged.
    #[serde(default = "default_divergence")]
    pub divergence_factor: f64,
    /// Batch size for evaluation (default: `batch_size`).
    #[serde(default)]
    pub eval_batch_size: Option<usize>,
    /// Order of the training batches: `shuffled` (default; independent
    /// sequences, a fresh permutation per epoch) or `contiguous`
    /// (`batch_size` streams, row i of each batch continuing row i of the
    /// one before, what a state-carrying LSTM needs; the `lstm` preset sets
    /// it). With `grad_accum` > 1 each micro-batch is the next batch of the
    /// streams. A carried-state LSTM with `shuffled` is allowed (it then
    /// carries state between unrelated texts). Not serialised when shuffled,
    /// so earlier configs and run ids are unchanged.
    #[serde(default, skip_serializing_if = "BatchOrder::is_shuffled")]
    pub batch_order: BatchOrder,
}

/// Most tokens one run may train on: 10^15, about 70 times the 15 trillion
/// tokens of the largest published training runs. It keeps every token count
/// the trainer records below 2^53 (exact as an f64 in curves and records) and
/// steps × tokens per step far from wrapping a u64, so `steps = 2^63 − 1` or
/// `tokens_per_param = 1e300` is refused instead of training "forever" on a
/// wrapped budget.
pub const MAX_TRAIN_TOKENS: u64 = 1_000_000_000_000_000;

/// Most tokens one micro-batch (`batch_size` × `data.seq_len`, and the same
/// for `eval_batch_size`) may hold: 2^24 = 16.8M tokens, as many as the whole
/// global batch of the largest published runs. A micro-batch's token ids,
/// activations and logits are allocated at once, so no device holds more;
/// larger effective batches come from `grad_accum`.
pub const MAX_MICRO_BATCH_TOKENS: usize = 1 << 24;

fn default_batch() -> usize {
    32
}
fn one() -> usize {
    1
}
fn default_clip() -> f64 {
    1.0
}
fn default_eval_interval() -> usize {
    50
}
fn default_divergence() -> f64 {
    3.0
}

/// The presets the papers compare. Where the papers' text and the authors'
/// runs differ, both are offered by name and the plain name is one of them:
///
/// - `modern`: rotary, SwiGLU, pre-RMSNorm with a final norm, AdamW (weight
///   decay 0.01), cosine with 10% warmup to 0.1×.
/// - `retro` = `retro-runs`: sinusoidal (embeddings × √d), GeLU, post-RMSNorm
///   with a final LayerNorm, Adam (no weight decay), inverse-sqrt: the retro
///   Transformer of the authors' runs, which produced the published retro
///   frontier (A = 81.7, α = −0.091) and the modern-over-retro 1.33.
/// - `retro-text`: the same with post-LayerNorm and no final norm, as the
///   papers' text describes the 2017 Transformer.
/// - `lstm`: the LSTM of the authors' runs, which produced the published LSTM
///   frontier (A = 36.3, α = −0.065): 1 layer, no LayerNorm, no dropout,
///   TBPTT 32 with the state carried across batches, AdamW with weight decay
///   1e-4, cosine ([`LstmConfig::authors_runs`]).
/// - `lstm-paper-table`: the papers' Table 3: 2 layers, LayerNorm, TBPTT 64
///   (state from zero per sequence), AdamW with weight decay 0.01, cosine,
///   dropout 0 as the text sets it for the comparison (appendix 11.1.2;
///   Table 3 itself lists 0.2 / 0.1 / 0.2).
///
/// Learning rates are per run (`train.lr`, or the tune's per-width rate in a
/// study), never part of a preset.
pub const PRESETS: &[&str] = &[
    "modern",
    "retro",
    "retro-runs",
    "retro-text",
    "lstm",
    "lstm-carry",
    "lstm-paper-table",
];

/// Weight decay of the authors' LSTM runs (the papers' Table 3 says 0.01).
pub const LSTM_RUNS_WEIGHT_DECAY: f64 = 1e-4;

/// The TOML table a preset contributes, for a model of width `d_model`.
/// Every preset trains a bias on the tied output layer (`model.output_bias`).
pub fn preset_table(name: &str, d_model: usize) -> Result<toml::Table, TrainError> {
    let (model, optimizer, schedule) = match name {
        "modern" => (
            ModelConfig::Transformer(TransformerConfig::modern(d_model)),
            OptimizerConfig::adam_w(),
            ScheduleConfig::cosine(),
        ),
        // Default `retro` = the authors' runs (post-RMSNorm, final LayerNorm):
        // the published retro numbers (its frontier, the 1.33 combination and
        // the LSTM -> retro 4.69) were measured on those runs.
        "retro" | "retro-runs" => (
            ModelConfig::Transformer(TransformerConfig::retro_runs(d_model)),
            OptimizerConfig::adam(),
            ScheduleConfig::inverse_sqrt(),
        ),
        "retro-text" => (
            ModelConfig::Transformer(TransformerConfig::retro(d_model)),
            OptimizerConfig::adam(),
            ScheduleConfig::inverse_sqrt(),
        ),
        // `lstm` and `lstm-carry` are the authors' runs, not Table 3: the
        // published LSTM frontier (A = 36.3, α = −0.065) and the LSTM CEGs
        // (6.28, 4.69) come from 1-layer LSTMs without LayerNorm or dropout,
        // TBPTT 32, weight decay 1e-4, with the state carried across batches
        // of a streaming loader. `lstm-carry` is that setup; the default
        // `lstm` is the same model with the state reset at each 64/128-token
        // sequence (kept across its TBPTT windows), because evaluation here
        // starts every validation sequence from zero state: a model trained
        // on carried state is then judged on a context it never trained
        // for. Measured (d 32, 512-id BPE, seq 64, batch 16, lr 3.16e-3,
        // 3,000 steps): carried + contiguous 4.357 nats, reset + shuffled
        // 4.148, reset + contiguous 4.114. Carried-state evaluation would
        // make `lstm-carry` the faithful default.
        "lstm" | "lstm-carry" => (
            ModelConfig::Lstm(if name == "lstm" {
                LstmConfig {
                    carry_state: algoprog_models::CarryState::WithinSequence,
                    ..LstmConfig::authors_runs(d_model)
                }
            } else {
                LstmConfig::authors_runs(d_model)
            }),
            OptimizerConfig::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: LSTM_RUNS_WEIGHT_DECAY,
                decay_mask: Default::default(),
            },
            ScheduleConfig::cosine(),
        ),
        "lstm-paper-table" => (
            ModelConfig::Lstm(LstmConfig::paper_no_dropout(d_model)),
            OptimizerConfig::adam_w(),
            ScheduleConfig::cosine(),
        ),
        other => {
            return Err(TrainError::config(
                "preset",
                format!("unknown preset `{other}`"),
                format!("use one of: {}", PRESETS.join(", ")),
            ))
        }
    };
    // Every preset trains a bias on its tied output layer (logits = h·Eᵀ + b),
    // as the authors' Transformers and LSTMs do; the key's serde default
    // stays off so that older run records keep meaning what they trained.
    let mut model = model;
    match &mut model {
        ModelConfig::Transformer(c) => c.output_bias = true,
        ModelConfig::Lstm(c) => c.output_bias = true,
        ModelConfig::Custom(_) => {}
    }
    let mut t = toml::Table::new();
    t.insert("family".into(), toml::Value::String(name.into()));
    t.insert("model".into(), to_value(&model)?);
    let mut train = toml::Table::new();
    train.insert("optimizer".into(), to_value(&optimizer)?);
    train.insert("schedule".into(), to_value(&schedule)?);
    if name == "lstm-carry" {
        // The carried state needs row i of each batch to continue row i of
        // the previous one, as in the authors' streaming data loader.
        train.insert("batch_order".into(), to_value(&BatchOrder::Contiguous)?);
    }
    t.insert("train".into(), toml::Value::Table(train));
    Ok(t)
}

fn to_value<T: Serialize>(v: &T) -> Result<toml::Value, TrainError> {
    toml::Value::try_from(v).map_err(|e| TrainError::Internal(format!("serialising a preset: {e}")))
}

/// Tagged tables (`[model]` by `kind`, `[train.optimizer]`/`[train.schedule]` by `name`)
/// are replaced, not merged, when the override names a different variant.
const TAGS: &[(&str, &str)] = &[
    ("model", "kind"),
    ("optimizer", "name"),
    ("schedule", "name"),
];

/// Merge `over` into `base`, recursively for tables.
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => {
                let tag = TAGS.iter().find(|(key, _)| *key == k).map(|(_, tag)| *tag);
                let switches =
                    tag.is_some_and(|tag| o.get(tag).is_some_and(|ov| b.get(tag) != Some(ov)));
                if switches {
                    *b = o;
                } else {
                    merge(b, o);
                }
            }
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

impl RunConfig {
    /// Read, resolve and validate a TOML config file.
    pub fn from_file(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::Io {
            path: path.to_path_buf(),
            what: "reading the config file (the presets are in configs/)".into(),
            err: e,
        })?;
        Self::from_toml_str(&text).map_err(|e| e.in_file(path))
    }

    /// Resolve and validate a TOML document.
    pub fn from_toml_str(text: &str) -> Result<Self, TrainError> {
        let user: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            TrainError::config(
                "(file)",
                format!("not valid TOML: {e}"),
                "fix the TOML syntax".into(),
            )
        })?;
        let table = match user.get("preset") {
            Some(toml::Value::String(p)) => {
                let d = user
                    .get("model")
                    .and_then(|m| m.get("d_model"))
                    .and_then(|d| d.as_integer())
                    .unwrap_or(64);
                if d <= 0 {
                    return Err(TrainError::config(
                        "model.d_model",
                        format!("{d} is not a positive width"),
                        "set model.d_model to a positive multiple of the head dimension, e.g. 64"
                            .into(),
                    ));
                }
                let mut base = preset_table(p, d as usize)?;
                merge(&mut base, user);
                base
            }
            Some(other) => {
                return Err(TrainError::config(
                    "preset",
                    format!("expected a string, found {}", other.type_str()),
                    format!(
                        "write e.g. preset = \"modern\" (one of: {})",
                        PRESETS.join(", ")
                    ),
                ))
            }
            None => user,
        };
        let cfg: RunConfig = strict(&table, "").map_err(|(path, msg)| {
            // Internally tagged enums hide the path inside them: re-read the variant alone.
            let (path, msg) = if path == "model" {
                model_error(&table).unwrap_or((path, msg))
            } else {
                (path, msg)
            };
            TrainError::config(&path, msg, hint_for(&path))
        })?;
        let mut cfg = cfg;
        if cfg.family.is_none() {
            cfg.family = Some(cfg.preset.clone().unwrap_or_else(|| cfg.name.clone()));
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Validates the config once into the type the trainer accepts (the
    /// "parameter guard" pattern: a [`CheckedRunConfig`] can only be made
    /// here, so nothing downstream validates again).
    pub fn check(self) -> Result<CheckedRunConfig, TrainError> {
        self.validate()?;
        Ok(CheckedRunConfig(self))
    }

    /// Check values serde cannot: positive sizes, a budget, a sane learning
    /// rate, a context as long as the sequences. [`RunConfig::check`] runs
    /// this and keeps the proof.
    pub fn validate(&self) -> Result<(), TrainError> {
        let nn_err = |e: algoprog_nn::ConfigError| {
            TrainError::config(&e.key, e.message.clone(), String::new())
        };
        self.model.validate().map_err(nn_err)?;
        self.precision.validate(self.device)?;
        self.train.optimizer.validate().map_err(nn_err)?;
        self.train.schedule.validate().map_err(nn_err)?;
        self.data.validate().map_err(|e| {
            TrainError::config(
                "data",
                e.to_string(),
                "see configs/modern.toml for the [data] keys".into(),
            )
        })?;
        let t = &self.train;
        let set = [
            t.steps.is_some(),
            t.tokens.is_some(),
            t.tokens_per_param.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if set != 1 {
            return Err(TrainError::config(
                "train.steps",
                format!("{set} training budgets given"),
                "set exactly one of train.steps, train.tokens or train.tokens_per_param".into(),
            ));
        }
        let positive = |key: &str, v: usize| {
            if v == 0 {
                Err(TrainError::config(
                    key,
                    "must be at least 1, found 0".into(),
                    format!("set {key} to a positive integer"),
                ))
            } else {
                Ok(())
            }
        };
        if let Some(s) = t.steps {
            positive("train.steps", s)?;
        }
        if t.tokens == Some(0) {
            positive("train.tokens", 0)?;
        }
        if let Some(r) = t.tokens_per_param {
            if !(r.is_finite() && r > 0.0) {
                return Err(TrainError::config(
                    "train.tokens_per_param",
                    format!("must be a positive number, found {r}"),
                    "use e.g. 20 (Chinchilla) or 40".into(),
                ));
            }
        }
        positive("train.batch_size", t.batch_size)?;
        positive("train.grad_accum", t.grad_accum)?;
        positive("train.eval_interval", t.eval_interval)?;
        if let Some(b) = t.eval_batch_size {
            positive("train.eval_batch_size", b)?;
        }
        if let Some(b) = t.eval_batches {
            positive("train.eval_batches", b)?;
        }
        if !(t.lr.is_finite() && t.lr > 0.0) {
            return Err(TrainError::config(
                "train.lr",
                format!("must be a positive number, found {}", t.lr),
                "use a peak learning rate such as 1e-3".into(),
            ));
        }
        if !(t.grad_clip.is_finite() && t.grad_clip >= 0.0) {
            return Err(TrainError::config(
                "train.grad_clip",
                format!("must be ≥ 0, found {}", t.grad_clip),
                "use 1.0 (the papers' value) or 0 to disable clipping".into(),
            ));
        }
        if !(t.divergence_factor.is_finite() && t.divergence_factor > 1.0) {
            return Err(TrainError::config(
                "train.divergence_factor",
                format!("must be > 1, found {}", t.divergence_factor),
                "use e.g. 3.0".into(),
            ));
        }
        positive("data.seq_len", self.data.seq_len)?;
        if self.data.seq_len > self.model.max_seq_len() {
            return Err(TrainError::config(
                "model.max_seq_len",
                format!(
                    "model.max_seq_len = {} is shorter than data.seq_len = {}: the model cannot read the training sequences",
                    self.model.max_seq_len(),
                    self.data.seq_len
                ),
                format!("raise model.max_seq_len to at least {} or lower data.seq_len", self.data.seq_len),
            ));
        }
        self.validate_sizes()
    }

    /// Batch sizes and the training budget within [`MAX_MICRO_BATCH_TOKENS`]
    /// and [`MAX_TRAIN_TOKENS`], and the model within its size limit at the
    /// tokenizer's nominal vocabulary, all before any data is prepared.
    fn validate_sizes(&self) -> Result<(), TrainError> {
        let t = &self.train;
        let seq = self.data.seq_len;
        for (key, b) in [
            ("train.batch_size", Some(t.batch_size)),
            ("train.eval_batch_size", t.eval_batch_size),
        ] {
            let Some(b) = b else { continue };
            if b.checked_mul(seq)
                .is_none_or(|n| n > MAX_MICRO_BATCH_TOKENS)
            {
                return Err(TrainError::config(
                    key,
                    format!(
                        "{key} = {b} sequences of data.seq_len = {seq} tokens is more than the maximum {MAX_MICRO_BATCH_TOKENS} tokens of one micro-batch (allocated at once)"
                    ),
                    format!("use at most {} sequences and raise train.grad_accum for a larger effective batch", (MAX_MICRO_BATCH_TOKENS / seq).max(1)),
                ));
            }
        }
        let Some(per_step) = self.tokens_per_step().filter(|&n| n <= MAX_TRAIN_TOKENS) else {
            return Err(TrainError::config(
                "train.grad_accum",
                format!(
                    "train.batch_size × train.grad_accum × data.seq_len = {} × {} × {seq} tokens per step is more than the maximum {MAX_TRAIN_TOKENS} tokens of a whole run",
                    t.batch_size, t.grad_accum
                ),
                "lower train.grad_accum (the papers use effective batches of about 0.5M tokens)".into(),
            ));
        };
        self.model
            .check_size(crate::study::nominal_vocab(&self.data.tokenizer))
            .map_err(|e| TrainError::config(&e.key, e.message.clone(), String::new()))?;
        if let algoprog_models::ModelConfig::Custom(c) = &self.model {
            crate::registry::check_registered(c)?;
        }
        let too_many = |key: &str, budget: String, fix: String| {
            TrainError::config(
                key,
                format!(
                    "{budget} is more than the maximum {MAX_TRAIN_TOKENS:.0e} training tokens of one run (about 70 times the largest published training runs)"
                ),
                fix,
            )
        };
        if let Some(s) = t.steps {
            if (s as u64)
                .checked_mul(per_step)
                .is_none_or(|n| n > MAX_TRAIN_TOKENS)
            {
                return Err(too_many(
                    "train.steps",
                    format!(
                        "train.steps = {s} steps × {per_step} tokens per step = {:.3e} tokens",
                        s as f64 * per_step as f64
                    ),
                    format!("use at most {} steps", MAX_TRAIN_TOKENS / per_step),
                ));
            }
        }
        if let Some(n) = t.tokens {
            if n > MAX_TRAIN_TOKENS {
                return Err(too_many(
                    "train.tokens",
                    format!("train.tokens = {n}"),
                    "use e.g. train.tokens_per_param = 20".into(),
                ));
            }
        }
        if let Some(r) = t.tokens_per_param {
            // With the tokenizer's nominal vocabulary: a trained BPE never has more ids, so the real budget is no larger.
            let n = self.budget_params(crate::registry::param_counts(
                &self.model,
                crate::study::nominal_vocab(&self.data.tokenizer),
            )?);
            if r * n > MAX_TRAIN_TOKENS as f64 {
                return Err(too_many(
                    "train.tokens_per_param",
                    format!(
                        "train.tokens_per_param = {r:e} × {n:.4e} parameters = {:.3e} tokens",
                        r * n
                    ),
                    "use e.g. 20 (Chinchilla) or 40".into(),
                ));
            }
        }
        Ok(())
    }

    /// Tokens per optimiser step, batch_size × grad_accum × seq_len (`None` if it overflows).
    pub fn tokens_per_step(&self) -> Option<u64> {
        let t = &self.train;
        (t.batch_size as u64)
            .checked_mul(t.grad_accum as u64)?
            .checked_mul(self.data.seq_len as u64)
    }

    /// The parameter count `tokens_per_param` multiplies.
    fn budget_params(&self, params: algoprog_models::ParamCounts) -> f64 {
        let n = match self.train.param_count {
            ParamCountKind::Total => params.total(),
            ParamCountKind::NonEmbedding => params.non_embedding,
        };
        n as f64
    }

    /// The family name used by analyses.
    pub fn family(&self) -> &str {
        self.family.as_deref().unwrap_or(&self.name)
    }

    /// Stable id: the first 12 hex digits of sha256 over the canonical JSON of the resolved config.
    pub fn run_id(&self) -> String {
        let json = serde_json::to_vec(self).expect("a resolved config always serialises");
        let digest = Sha256::digest(&json);
        digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
    }

    /// Optimiser steps the budget resolves to, given the model's parameter
    /// counts. On a validated config the budget is at most
    /// [`MAX_TRAIN_TOKENS`], so steps × tokens per step fits a u64.
    pub fn total_steps(&self, params: algoprog_models::ParamCounts) -> usize {
        let t = &self.train;
        let tokens_per_step = self.tokens_per_step().unwrap_or(u64::MAX).max(1) as f64;
        let tokens = if let Some(s) = t.steps {
            return s;
        } else if let Some(tok) = t.tokens {
            tok as f64
        } else {
            t.tokens_per_param.unwrap_or(20.0) * self.budget_params(params)
        };
        ((tokens / tokens_per_step).ceil() as usize).max(1)
    }
}

/// A [`RunConfig`] that passed [`RunConfig::check`]: what the trainer
/// accepts. Reads as the config it wraps; change a copy
/// ([`CheckedRunConfig::into_inner`]) and check it again.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(transparent)]
pub struct CheckedRunConfig(RunConfig);

impl CheckedRunConfig {
    /// The config, for changing (and checking again).
    pub fn into_inner(self) -> RunConfig {
        self.0
    }

    /// The config.
    pub fn config(&self) -> &RunConfig {
        &self.0
    }
}

impl std::ops::Deref for CheckedRunConfig {
    type Target = RunConfig;
    fn deref(&self) -> &RunConfig {
        &self.0
    }
}

/// Deserialize with the failing key's full path; serde's message first line only.
fn strict<T: serde::de::DeserializeOwned>(
    table: &toml::Table,
    prefix: &str,
) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
        let inner = e.path().to_string();
        let path = match (prefix.is_empty(), inner.as_str()) {
            (true, _) => inner,
            (false, ".") => prefix.to_string(),
            (false, _) => format!("{prefix}.{inner}"),
        };
        let msg = e.into_inner().to_string();
        (path, msg.lines().next().unwrap_or("").to_string())
    })
}

/// The precise error inside `[model]`, found by reading the named variant's table directly.
fn model_error(table: &toml::Table) -> Option<(String, String)> {
    let mut model = table.get("model")?.as_table()?.clone();
    let kind = model.remove("kind")?;
    match kind.as_str()? {
        "transformer" => strict::<TransformerConfig>(&model, "model").err(),
        _ => None,
    }
}

fn hint_for(path: &str) -> String {
    let top = path.split('.').next().unwrap_or("");
    match top {
        "model" => "see configs/modern.toml for the [model] keys (kind, d_model, n_layers, head_dim, positional, feed_forward, norm, placement, init, …)".into(),
        "train" => "see configs/modern.toml for the [train] keys (optimizer, schedule, lr, batch_size, grad_accum, steps|tokens|tokens_per_param, grad_clip, eval_interval, …)".into(),
        "data" => "see configs/modern.toml for the [data] keys (corpus, tokenizer, seq_len, val_tokens, max_train_tokens, cache_dir, split_seed)".into(),
        _ => "top-level keys are: name, family, preset, seed, [model], [data], [train]".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// configs/modern.toml with `edit` applied to its text.
    fn modern_with(edit: impl Fn(&str) -> String) -> Result<RunConfig, TrainError> {
        let base = include_str!("../../../configs/modern.toml");
        RunConfig::from_toml_str(&edit(base))
    }

    fn key_of(e: TrainError) -> (String, String) {
        match e {
            TrainError::Config {
                key, problem, fix, ..
            } => (key, format!("{problem} / {fix}")),
            other => panic!("expected a config error, got {other}"),
        }
    }

    fn refused(edit: impl Fn(&str) -> String) -> (String, String) {
        key_of(modern_with(edit).expect_err("the config should be refused"))
    }

    #[test]
    fn the_base_config_is_valid_and_its_budget_is_exact() {
        let c = modern_with(|s| s.to_string()).unwrap();
        assert_eq!(c.tokens_per_step(), Some(32 * 128));
        assert_eq!(c.total_steps(c.model.param_counts(4096)), 600);
    }

    #[test]
    fn huge_widths_and_batches_are_refused_before_allocation() {
        let (k, m) = refused(|s| s.replace("d_model = 64 ", "d_model = 1600000 "));
        assert_eq!(k, "model.d_model");
        assert!(m.contains("65536"), "{m}");
        let (k, m) = refused(|s| s.replace("batch_size = 32", "batch_size = 1000000000000"));
        assert_eq!(k, "train.batch_size");
        assert!(
            m.contains("16777216") && m.contains("at most 131072 sequences"),
            "{m}"
        );
        // the largest micro-batch is accepted, one more sequence is not
        assert!(modern_with(|s| s.replace("batch_size = 32", "batch_size = 131072")).is_ok());
        assert_eq!(
            refused(|s| s.replace("batch_size = 32", "batch_size = 131073")).0,
            "train.batch_size"
        );
        let (k, _) = refused(|s| {
            s.replace(
                "batch_size = 32",
                "batch_size = 32\neval_batch_size = 200000",
            )
        });
        assert_eq!(k, "train.eval_batch_size");
        let (k, _) = refused(|s| {
            s.replace(
                "batch_size = 32",
                "batch_size = 32\ngrad_accum = 1000000000000",
            )
        });
        assert_eq!(k, "train.grad_accum");
    }

    #[test]
    fn budgets_that_would_wrap_are_refused() {
        // 2^63 − 1 steps × 4096 tokens wraps a u64; the trainer would run "forever" on the wrapped budget
        let (k, m) = refused(|s| s.replace("steps = 600", "steps = 9223372036854775807"));
        assert_eq!(k, "train.steps");
        assert!(m.contains("use at most 244140625000 steps"), "{m}");
        // the boundary: 10^15 / 4096 = 244,140,625,000 steps exactly
        assert!(modern_with(|s| s.replace("steps = 600", "steps = 244140625000")).is_ok());
        assert_eq!(
            refused(|s| s.replace("steps = 600", "steps = 244140625001")).0,
            "train.steps"
        );
        let (k, m) = refused(|s| s.replace("steps = 600", "tokens_per_param = 1e300"));
        assert_eq!(k, "train.tokens_per_param");
        assert!(m.contains("1e300"), "{m}");
        assert_eq!(
            refused(|s| s.replace("steps = 600", "tokens = 1000000000000000001")).0,
            "train.tokens"
        );
        let c = modern_with(|s| s.replace("steps = 600", "tokens_per_param = 20")).unwrap();
        let n = c.model.param_counts(4096).total();
        assert_eq!(
            c.total_steps(c.model.param_counts(4096)),
            (20 * n).div_ceil(4096)
        );
    }

    #[test]
    fn a_context_shorter_than_the_sequences_is_refused_when_the_config_is_read() {
        let (k, m) = refused(|s| s.replace("seq_len = 128", "seq_len = 256"));
        assert_eq!(k, "model.max_seq_len");
        assert!(
            m.contains("model.max_seq_len = 128 is shorter than data.seq_len = 256"),
            "{m}"
        );
        assert!(m.contains("raise model.max_seq_len to at least 256"), "{m}");
        assert!(modern_with(|s| s
            .replace("seq_len = 128", "seq_len = 256")
            .replace("d_model = 64 ", "d_model = 64\nmax_seq_len = 256 "))
        .is_ok());
        // the LSTM has the same bound (its max_seq_len defaults to 128)
        let lstm =
            include_str!("../../../configs/lstm.toml").replace("seq_len = 128", "seq_len = 129");
        assert_eq!(
            key_of(RunConfig::from_toml_str(&lstm).unwrap_err()).0,
            "model.max_seq_len"
        );
    }

    #[test]
    fn whole_model_size_is_bounded_with_the_tokenizer_vocabulary() {
        // 16M-id BPE × d 1024 = 1.7e10 embedding weights
        let (k, m) = refused(|s| {
            s.replace("bpe-4096", "bpe-16777216")
                .replace("d_model = 64 ", "d_model = 1024 ")
        });
        assert_eq!(k, "model.d_model");
        assert!(m.contains("embeddings"), "{m}");
        // ALiBi's (heads, T, T) table at T = 2^20
        let (k, _) = refused(|s| {
            s.replace(
                "d_model = 64 ",
                "d_model = 64\npositional = \"alibi\"\nmax_seq_len = 1048576 ",
            )
        });
        assert_eq!(k, "model.max_seq_len");
    }
}
