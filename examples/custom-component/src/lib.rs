//! Components defined outside algoprog's crates, trained by algoprog's own
//! trainer, stored, swept and reported like the built-in ones.
//!
//! 1. An activation: implement [`algoprog_nn::Activation`] (a `Default`
//!    type with `forward` and its FLOPs per element); `Mlp<A>` and
//!    `GatedFeedForward<A>` then accept it as a feed-forward.
//! 2. A schedule: implement [`algoprog_nn::LrSchedule`].
//! 3. Name the new type in the model: `Transformer<Rotary, Mlp<SquaredRelu>, RmsNorm>`.
//! 4. Give it a builder ([`build`]) and register it under a name
//!    ([`register`]); a run config or a study family then names it:
//!    `model = { kind = "custom", builder = "squared_relu_transformer" }`.
//!    From there [`algoprog_train::train_model`] (or `train_on`, a run store,
//!    a sweep) trains it, and `algoprog_report` compares it with the
//!    built-in families ([`study_text`] is such a study).

use algoprog_models::{CustomModelConfig, LanguageModel, Transformer, TransformerSpec};
use algoprog_nn::{cross_entropy, Activation, LrSchedule, Mlp, RmsNorm, Rotary};
use algoprog_train::registry::{register_model, BuildContext};
use candle_core::{Device, Result, Tensor};
use rand::{Rng, SeedableRng};

/// Squared ReLU: max(x, 0)². FLOPs per element: 2 (max, square).
#[derive(Clone, Copy, Debug, Default)]
pub struct SquaredRelu;

impl Activation for SquaredRelu {
    const NAME: &'static str = "squared_relu";
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.relu()?.sqr()
    }
    fn flops_per_element(&self) -> f64 {
        2.0
    }
}

/// Step decay: lr = η·γ^⌊s / k⌋ (γ = `factor`, k = `every` steps).
#[derive(Clone, Copy, Debug)]
pub struct StepDecay {
    pub every: usize,
    pub factor: f64,
}

impl LrSchedule for StepDecay {
    fn lr(&self, step: usize, _total: usize, peak: f64) -> f64 {
        peak * self.factor.powi((step / self.every.max(1)) as i32)
    }
}

/// The model with the custom activation.
pub type SquaredReluTransformer = Transformer<Rotary, Mlp<SquaredRelu>, RmsNorm>;

/// The name [`register`] gives [`build`].
pub const BUILDER: &str = "squared_relu_transformer";

/// d = 32, 2 layers, head dim 16, sequence length ≤ 32.
pub fn spec() -> TransformerSpec<Rotary, Mlp<SquaredRelu>, RmsNorm> {
    TransformerSpec {
        max_seq_len: 32,
        ..TransformerSpec::new(32)
    }
}

/// The spec a `kind = "custom"` config describes: pre-RMSNorm with rotary
/// positions like the modern preset, `Mlp<SquaredRelu>` as the feed-forward,
/// width `d_model`, context `max_seq_len`, and from `params` (all optional)
/// `n_layers` (default max(1, d/16)), `head_dim` (16) and `ff_ratio` (4).
pub fn spec_from(
    c: &CustomModelConfig,
) -> Result<TransformerSpec<Rotary, Mlp<SquaredRelu>, RmsNorm>> {
    let int = |key: &str| -> Result<Option<usize>> {
        match c.params.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_integer()
                .filter(|n| *n > 0)
                .map(|n| Some(n as usize))
                .ok_or_else(|| {
                    candle_core::Error::Msg(format!(
                        "model.params.{key} = {v} is not a positive integer"
                    ))
                }),
        }
    };
    let base = TransformerSpec::<Rotary, Mlp<SquaredRelu>, RmsNorm>::new(c.d_model);
    let ff_ratio = match c.params.get("ff_ratio") {
        None => base.ff_ratio,
        Some(v) => v
            .as_float()
            .or_else(|| v.as_integer().map(|i| i as f64))
            .ok_or_else(|| {
                candle_core::Error::Msg(format!("model.params.ff_ratio = {v} is not a number"))
            })?,
    };
    Ok(TransformerSpec {
        n_layers: int("n_layers")?.unwrap_or(base.n_layers),
        head_dim: int("head_dim")?.unwrap_or(base.head_dim),
        ff_ratio,
        max_seq_len: c.max_seq_len,
        ..base
    })
}

/// The registered builder: builds [`SquaredReluTransformer`] as
/// [`spec_from`] reads the config.
pub fn build(c: &CustomModelConfig, ctx: &BuildContext<'_>) -> Result<Box<dyn LanguageModel>> {
    let model = SquaredReluTransformer::new(
        &spec_from(c)?,
        ctx.vocab_size,
        ctx.seed,
        ctx.device,
        ctx.dtype,
    )?;
    Ok(Box::new(model))
}

/// Registers [`build`] as [`BUILDER`]; call once before reading configs that name it.
pub fn register() {
    register_model(BUILDER, build);
}

/// A small ablation study: the `modern` preset and `modern-sqrelu` (the
/// modern preset with the custom model in place of its Transformer) at
/// width 32, two seeds each, `steps` optimiser steps on the embedded corpus,
/// and a report that measures the CEG of `modern-sqrelu` against `modern`
/// at the fixed loss `threshold`. `cache_dir` holds the prepared data.
pub fn study_text(steps: usize, threshold: f64, cache_dir: &std::path::Path) -> String {
    format!(
        r#"
name = "custom-component"
seeds = [0, 1]
eval_interval = 10

[base]
data = {{ corpus = "embedded", tokenizer = "bpe-512", seq_len = 32, cache_dir = "{cache}" }}
train = {{ batch_size = 8, grad_accum = 2, eval_batches = 4 }}

[analysis]
e = 0.9
threshold = {threshold}
margin = 0.1
compute_range = "all"
bootstrap = 100

[[groups]]
name = "ablation"
role = "ablation"
families = [
  "modern",
  {{ name = "modern-sqrelu", preset = "modern", set = {{ model = {{ kind = "custom", builder = "{BUILDER}", max_seq_len = 32 }} }} }},
]
widths = [32]
budget = {{ steps = {steps} }}
lr = [1e-2]
"#,
        cache = cache_dir.display()
    )
}

pub const VOCAB: usize = 64;

/// One fixed batch (4 × 17) of uniformly random token ids.
pub fn random_batch(seed: u64) -> Result<Tensor> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<u32> = (0..4 * 17)
        .map(|_| rng.random_range(0..VOCAB as u32))
        .collect();
    Tensor::from_vec(v, (4, 17), &Device::Cpu)
}

/// Mean next-token cross-entropy of `model` on `batch` (b, T+1).
pub fn loss(model: &dyn LanguageModel, batch: &Tensor) -> Result<Tensor> {
    let (b, t1) = batch.dims2()?;
    let x = batch.narrow(1, 0, t1 - 1)?;
    let y = batch.narrow(1, 1, t1 - 1)?.flatten_all()?;
    let h = model
        .hidden(&x, true)?
        .reshape((b * (t1 - 1), model.d_model()))?;
    cross_entropy(&h, model.output_weight(), &y)
}

/// Errors of [`run_study`]: the trainer's or the report's.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Registers the builder, runs [`study_text`] into a run store at
/// `root/store` (one run at a time; finished runs are skipped on a second
/// call) and writes the report into `root/report`, as `algoprog reproduce`
/// does. Returns the report's path and its analysis.
pub fn run_study(
    root: &std::path::Path,
    steps: usize,
    threshold: f64,
) -> std::result::Result<(std::path::PathBuf, algoprog_report::Analysis), BoxError> {
    use algoprog_train::executor::{Executor, LocalExecutor, QuietSweep};
    register();
    let text = study_text(steps, threshold, &root.join("cache"));
    let study = algoprog_train::study::Study::from_toml_str(&text)?;
    let (store, specs) = algoprog_train::store::Store::init(root.join("store"), &text, &study)?;
    let summary = LocalExecutor { jobs: 1 }.execute(&store, &specs, &QuietSweep)?;
    if summary.failed > 0 {
        return Err(format!(
            "{} of {} runs failed: see their error.txt in {}",
            summary.failed,
            specs.len(),
            store.root.display()
        )
        .into());
    }
    let input = algoprog_report::ReportInput::from_store(&store.root)?;
    let settings =
        algoprog_report::AnalysisSettings::from_study_toml(&text, "the custom-component study")?;
    Ok(algoprog_report::write_report(
        &input,
        &settings,
        &root.join("report"),
        Some("examples/custom-component: modern against modern with a squared-ReLU MLP"),
    )?)
}
