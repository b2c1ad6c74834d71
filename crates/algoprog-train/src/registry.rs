//! The model registry: how a config names a model built outside algoprog's
//! crates.
//!
//! A program registers a builder under a name once, before it reads configs
//! or runs a study:
//!
//! ```no_run
//! # use algoprog_train::registry::{register_model, BuildContext};
//! # use algoprog_models::{CustomModelConfig, LanguageModel, TransformerConfig};
//! fn build(c: &CustomModelConfig, ctx: &BuildContext<'_>)
//!     -> candle_core::Result<Box<dyn LanguageModel>> {
//!     // read c.d_model, c.max_seq_len and c.params["…"]; build on ctx.device
//!     let mut t = TransformerConfig::modern(c.d_model);
//!     t.max_seq_len = c.max_seq_len;
//!     t.n_layers = c.params.get("n_layers").and_then(|v| v.as_integer()).map(|n| n as usize);
//!     Ok(Box::new(t.build(ctx.vocab_size, ctx.seed, ctx.device, ctx.dtype)?))
//! }
//! register_model("my_model", build);
//! ```
//!
//! and a run config (or a study family's `set`) names it:
//!
//! ```toml
//! [model]
//! kind = "custom"
//! builder = "my_model"
//! d_model = 64
//! params = { n_layers = 2 }
//! ```
//!
//! Every path that builds a model from a config ([`build_model`]: `train`,
//! the store, sweeps) consults the registry, so a registered model trains,
//! is recorded, swept and reported like a built-in one. Parameter counts
//! and FLOPs come from the built model ([`param_counts`] builds it on the
//! CPU when a budget needs its size before training). The registry is
//! per process: the `algoprog` binary knows only the built-in kinds, so
//! custom runs train in the program that registers them (for Slurm, that
//! program takes the place of `algoprog run --spec`).

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};

use algoprog_models::{CustomModelConfig, LanguageModel, ModelConfig, ParamCounts};
use candle_core::{DType, Device};

use crate::error::{Result, TrainError};

/// What a builder builds for.
#[derive(Clone, Copy, Debug)]
pub struct BuildContext<'a> {
    /// Token ids are `0 .. vocab_size`.
    pub vocab_size: usize,
    /// Seed of the run's initialisation.
    pub seed: u64,
    pub device: &'a Device,
    pub dtype: DType,
}

/// A registered builder.
pub type ModelBuilder = dyn Fn(&CustomModelConfig, &BuildContext<'_>) -> candle_core::Result<Box<dyn LanguageModel>>
    + Send
    + Sync;

fn registry() -> &'static RwLock<BTreeMap<String, Arc<ModelBuilder>>> {
    static REGISTRY: OnceLock<RwLock<BTreeMap<String, Arc<ModelBuilder>>>> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// Registers `builder` under `name` for `model.kind = "custom"` configs with
/// `builder = name`; a second registration under the same name replaces the
/// first.
pub fn register_model<F>(name: &str, builder: F)
where
    F: Fn(&CustomModelConfig, &BuildContext<'_>) -> candle_core::Result<Box<dyn LanguageModel>>
        + Send
        + Sync
        + 'static,
{
    registry()
        .write()
        .expect("model registry lock")
        .insert(name.to_string(), Arc::new(builder));
}

/// The names registered in this process, sorted.
pub fn registered_models() -> Vec<String> {
    registry()
        .read()
        .expect("model registry lock")
        .keys()
        .cloned()
        .collect()
}

fn lookup(c: &CustomModelConfig) -> Result<Arc<ModelBuilder>> {
    let reg = registry().read().expect("model registry lock");
    reg.get(&c.builder).cloned().ok_or_else(|| {
        let known: Vec<&str> = reg.keys().map(String::as_str).collect();
        TrainError::config(
            "model.builder",
            format!(
                "no model builder named `{}` is registered in this program (registered: {})",
                c.builder,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
            "call algoprog_train::register_model(\"NAME\", builder) before reading the config; \
             the algoprog binary itself builds only kind = \"transformer\" and \"lstm\""
                .into(),
        )
    })
}

/// Whether `c.builder` is registered (an error naming the fix if not).
pub fn check_registered(c: &CustomModelConfig) -> Result<()> {
    lookup(c).map(|_| ())
}

/// Builds the model a config names: built-in kinds by
/// [`ModelConfig::build`], `custom` by its registered builder. A custom
/// model must have the configured width and vocabulary.
pub fn build_model(
    cfg: &ModelConfig,
    vocab_size: usize,
    seed: u64,
    device: &Device,
    dtype: DType,
) -> Result<Box<dyn LanguageModel>> {
    let ModelConfig::Custom(c) = cfg else {
        return Ok(cfg.build(vocab_size, seed, device, dtype)?);
    };
    let builder = lookup(c)?;
    let ctx = BuildContext {
        vocab_size,
        seed,
        device,
        dtype,
    };
    let model = builder(c, &ctx)?;
    if model.d_model() != c.d_model || model.vocab_size() != vocab_size {
        return Err(TrainError::config(
            "model.d_model",
            format!(
                "builder `{}` built a model of width {} over {} ids, but the config asks for model.d_model = {} over {vocab_size} ids",
                c.builder,
                model.d_model(),
                model.vocab_size(),
                c.d_model
            ),
            "build the model with the config's d_model and the context's vocab_size".into(),
        ));
    }
    Ok(model)
}

/// Parameter counts of the model a config names with `vocab_size` ids: from
/// the config for the built-in kinds, from a CPU build for a custom model.
pub fn param_counts(cfg: &ModelConfig, vocab_size: usize) -> Result<ParamCounts> {
    match cfg.try_param_counts(vocab_size) {
        Some(p) => Ok(p),
        None => Ok(build_model(cfg, vocab_size, 0, &Device::Cpu, DType::F32)?.param_counts()),
    }
}
