//! `algoprog sample --run DIR --prompt TEXT`: text from a trained model.
//!
//! Loads a finished run directory (`run.json` with the resolved config, and
//! `model.safetensors`), rebuilds the tokenizer the run trained with from the
//! data cache, and continues the prompt one token at a time, drawing each
//! token with candle-transformers' `LogitsProcessor`:
//!
//! - `--temperature 0`: greedy (argmax), deterministic;
//! - `--temperature T`: softmax at temperature T, optionally restricted to the
//!   `--top-k K` most likely tokens and/or the nucleus of mass `--top-p P`;
//!   `--seed S` fixes the draws.
//!
//! The context starts with `<|endoftext|>`, as every document does in the
//! training streams, so an empty prompt samples a fresh document. The model
//! sees at most the run's training sequence length (`data.seq_len`) of
//! context: a longer prompt or sample slides the window over the last
//! `seq_len` tokens. Sampling stops at `<|endoftext|>` (the end of a
//! document) unless `--no-stop` is given. Always on the CPU, in f32.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use algoprog_data::{CorpusSpec, DataError, Dataset, Gpt2Tokenizer, Tokenizer, TokenizerSpec};
use algoprog_models::LanguageModel;
use algoprog_train::record::{RUN_JSON, WEIGHTS};
use algoprog_train::{RunDir, RunRecord, RunStatus};
use anyhow::{bail, Context};
use candle_core::{DType, Device, IndexOp, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};

/// The most tokens one call generates.
pub const MAX_TOKENS: usize = 4096;

#[derive(clap::Args)]
pub struct Args {
    /// Run directory holding run.json and model.safetensors (written by `algoprog train`, `run` or a sweep).
    #[arg(long)]
    pub run: PathBuf,
    /// Text to continue; empty samples a fresh document.
    #[arg(long, default_value = "")]
    pub prompt: String,
    /// Tokens to generate (1 to 4096). Beyond the run's sequence length the
    /// context window slides: the model sees the last seq_len tokens.
    #[arg(long, default_value_t = 64)]
    pub tokens: usize,
    /// Softmax temperature; 0 is greedy decoding (argmax, no randomness).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Nucleus sampling: draw from the smallest set of tokens whose probability sums to P (0 < P ≤ 1).
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Draw from the K most likely tokens only (K ≥ 1); with --top-p, the nucleus is taken within them.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Seed of the draws; the same seed gives the same sample.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Keep going past <|endoftext|> (by default a sample ends with its document).
    #[arg(long)]
    pub no_stop: bool,
    /// Print only the text (no summary line on stderr).
    #[arg(long)]
    pub quiet: bool,
}

/// The sampling rule the options ask for.
fn sampling(a: &Args) -> anyhow::Result<Sampling> {
    if !a.temperature.is_finite() || a.temperature < 0.0 {
        bail!(
            "--temperature {}: must be ≥ 0 and finite (0 = greedy)",
            a.temperature
        );
    }
    if let Some(p) = a.top_p {
        if p.is_nan() || p <= 0.0 || p > 1.0 {
            bail!("--top-p {p}: must be in (0, 1]; 1 keeps every token");
        }
    }
    if a.top_k == Some(0) {
        bail!("--top-k 0: must be at least 1 (1 is greedy)");
    }
    if a.temperature == 0.0 {
        return Ok(Sampling::ArgMax);
    }
    let temperature = a.temperature;
    Ok(match (a.top_k, a.top_p) {
        (None, None) => Sampling::All { temperature },
        (Some(k), None) => Sampling::TopK { k, temperature },
        (None, Some(p)) => Sampling::TopP { p, temperature },
        (Some(k), Some(p)) => Sampling::TopKThenTopP { k, p, temperature },
    })
}

/// Reads `run.json` and checks the run can be sampled: it finished and left its weights.
pub fn open_run(dir: &Path) -> anyhow::Result<(RunRecord, PathBuf)> {
    if !dir.is_dir() {
        bail!("{}: no such run directory; pass a directory written by `algoprog train --out DIR` (or one of a store's runs/)", dir.display());
    }
    if !dir.join(RUN_JSON).is_file() {
        bail!(
            "{}: no {RUN_JSON}, so this is not a run directory; pass a directory written by `algoprog train --out DIR` (or one of a store's runs/)",
            dir.display()
        );
    }
    let rec = RunDir::open(dir).read_record()?;
    let weights = dir.join(WEIGHTS);
    match rec.status {
        RunStatus::Diverged => bail!(
            "run `{}` ({}) diverged at step {}: a diverged run keeps no weights to sample from; sample a finished run (e.g. one trained at a lower learning rate)",
            rec.name,
            rec.run_id,
            rec.diverged_at_step.map(|s| s.to_string()).unwrap_or_else(|| "?".into())
        ),
        RunStatus::Running if !weights.is_file() => bail!(
            "run `{}` ({}) has not finished (step {} of {}); its weights ({WEIGHTS}) are written when it finishes: resume it with `algoprog run` or train it again",
            rec.name,
            rec.run_id,
            rec.steps_done,
            rec.planned_steps
        ),
        _ => {}
    }
    if !weights.is_file() {
        bail!(
            "{}: the weights file is missing (the run record says the run finished); train the run again to recreate it",
            weights.display()
        );
    }
    Ok((rec, weights))
}

/// The tokenizer the run trained with: GPT-2's (embedded), or the run's BPE
/// from the data cache, checked against the fingerprint in `run.json`.
pub fn run_tokenizer(rec: &RunRecord) -> anyhow::Result<Arc<dyn Tokenizer>> {
    let tok: Arc<dyn Tokenizer> = match rec.config.data.tokenizer {
        TokenizerSpec::Gpt2 => Arc::new(Gpt2Tokenizer),
        TokenizerSpec::Bpe { .. } => {
            let mut data = rec.config.data.clone();
            // Sampling never downloads: the run's C4 shards are in the hf-hub cache already.
            if let CorpusSpec::C4(c) = &mut data.corpus {
                c.offline = true;
            }
            let corpus = data.corpus.open().context(
                "opening the corpus the run trained on (its tokenizer is cached per corpus)",
            )?;
            match Dataset::load(&data, corpus.as_ref()) {
                Ok(d) => d.tokenizer(),
                Err(e @ DataError::NotPrepared { .. }) => bail!(
                    "run `{}` trained with tokenizer {} but the data cache in effect does not hold it: {e}. \
                     Point data.cache_dir / ALGOPROG_CACHE at the cache the run used, or rebuild the tokenizer with \
                     `algoprog data prepare --config FILE` using the run's config (run.json's `config`)",
                    rec.name,
                    rec.config.data.tokenizer
                ),
                Err(e) => return Err(e).context("loading the run's tokenizer from the data cache"),
            }
        }
    };
    if tok.fingerprint() != rec.data.tokenizer {
        bail!(
            "the cached tokenizer is `{}` but run `{}` trained with `{}`; the cache was rebuilt with other settings. Point data.cache_dir / ALGOPROG_CACHE at the cache the run used",
            tok.fingerprint(),
            rec.name,
            rec.data.tokenizer
        );
    }
    Ok(tok)
}

/// Builds the run's model on the CPU (f32) and loads its weights.
pub fn load_model(rec: &RunRecord, weights: &Path) -> anyhow::Result<Box<dyn LanguageModel>> {
    let model = rec
        .config
        .model
        .build(
            rec.data.vocab_size,
            rec.config.seed,
            &Device::Cpu,
            DType::F32,
        )
        .context("building the run's model from run.json")?;
    model
        .params()
        .load_safetensors(weights)
        .with_context(|| format!("loading {}", weights.display()))?;
    Ok(model)
}

/// Up to `n` tokens after `context`, each drawn by `lp` from the logits of the
/// last position given the last `window` tokens. Stops before `stop`.
pub fn generate(
    model: &dyn LanguageModel,
    context: &[u32],
    n: usize,
    window: usize,
    stop: Option<u32>,
    lp: &mut LogitsProcessor,
) -> anyhow::Result<Vec<u32>> {
    let view = model.eval_view();
    let model = view.as_deref().unwrap_or(model);
    let mut ids = context.to_vec();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let ctx = &ids[ids.len().saturating_sub(window)..];
        let input = Tensor::from_slice(ctx, (1, ctx.len()), &Device::Cpu)?;
        let logits = model
            .logits(&input, false)?
            .i((0, ctx.len() - 1))?
            .to_dtype(DType::F32)?;
        let next = lp.sample(&logits)?;
        if Some(next) == stop {
            break;
        }
        ids.push(next);
        out.push(next);
    }
    Ok(out)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.tokens == 0 || args.tokens > MAX_TOKENS {
        bail!(
            "--tokens {}: must be between 1 and {MAX_TOKENS}",
            args.tokens
        );
    }
    let rule = sampling(&args)?;
    let (rec, weights) = open_run(&args.run)?;
    let tok = run_tokenizer(&rec)?;
    let model = load_model(&rec, &weights)?;
    let window = rec.config.data.seq_len;
    let prompt = tok.encode(&args.prompt);
    let eot = tok.end_of_text();
    let mut context = Vec::with_capacity(prompt.len() + 1);
    context.push(eot);
    context.extend_from_slice(&prompt);
    let mut lp = LogitsProcessor::from_sampling(args.seed, rule.clone());
    let stop = (!args.no_stop).then_some(eot);
    let out = generate(model.as_ref(), &context, args.tokens, window, stop, &mut lp)?;
    let text = tok.decode(&[prompt.as_slice(), out.as_slice()].concat());
    println!("{text}");
    if !args.quiet {
        let ended = if out.len() < args.tokens {
            ", ended at <|endoftext|>"
        } else {
            ""
        };
        eprintln!(
            "run `{}` ({}), final val loss {}: {} prompt tokens + {} generated{ended}; {rule:?}, seed {}, context window {window}",
            rec.name,
            rec.run_id,
            rec.final_val_loss.map(|l| format!("{l:.4}")).unwrap_or_else(|| "?".into()),
            prompt.len(),
            out.len(),
            args.seed
        );
    }
    Ok(())
}
