//! The training loop: gradient accumulation and clipping, scheduled learning
//! rate, periodic evaluation on the fixed validation set, an exact FLOP
//! ledger, divergence detection, and the run record.

use std::time::Instant;

use algoprog_data::{Batch, Dataset};
use algoprog_models::LanguageModel;
use algoprog_nn::{clip_grad_norm, LrSchedule};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};

use crate::checkpoint::{self, Expect, LoopState, CHECKPOINT};
use crate::config::RunConfig;
use crate::error::{Result, TrainError};
use crate::record::{
    write_atomic, DataSummary, EvalRow, FileDigest, FlopLedger, Integrity, RunDir, RunRecord,
    RunStatus, WEIGHTS,
};

/// What the loop reports after each optimiser step.
#[derive(Clone, Copy, Debug)]
pub struct StepInfo {
    pub step: u64,
    pub total_steps: u64,
    pub tokens: u64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens_per_second: f64,
}

/// Hooks for progress display and logging; every method has a no-op default.
pub trait Observer {
    fn on_start(&mut self, _record: &RunRecord) {}
    fn on_step(&mut self, _info: &StepInfo) {}
    fn on_eval(&mut self, _row: &EvalRow) {}
    fn on_finish(&mut self, _record: &RunRecord) {}
}

/// An observer that does nothing.
pub struct Silent;
impl Observer for Silent {}

/// A finished (or diverged) run.
#[derive(Clone, Debug)]
pub struct TrainOutcome {
    pub record: RunRecord,
    pub curve: Vec<EvalRow>,
}

/// Turn a batch of token ids into (inputs (B,T) u32, flat targets (B·T) u32).
pub fn batch_tensors(batch: &Batch, device: &Device) -> Result<(Tensor, Tensor)> {
    let inputs = Tensor::from_slice(&batch.inputs, (batch.batch_size, batch.seq_len), device)?;
    let targets = Tensor::from_slice(&batch.targets, batch.batch_size * batch.seq_len, device)?;
    Ok((inputs, targets))
}

/// Mean next-token loss (nats) of `model` on one batch.
pub fn batch_loss(
    model: &dyn LanguageModel,
    batch: &Batch,
    device: &Device,
    train: bool,
) -> Result<Tensor> {
    let (inputs, targets) = batch_tensors(batch, device)?;
    let h = model.hidden(&inputs, train)?;
    let (b, t, d) = h.dims3()?;
    let loss = model.loss(&h.reshape((b * t, d))?, &targets)?;
    Ok(loss)
}

/// Mean validation loss over `batches` (weighted by tokens), and the forward FLOPs it cost.
pub fn evaluate(model: &dyn LanguageModel, batches: &[Batch], device: &Device) -> Result<f64> {
    let mut sum = 0.0;
    let mut n = 0usize;
    for b in batches {
        let loss = batch_loss(model, b, device, false)?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?;
        let tokens = b.batch_size * b.seq_len;
        sum += loss * tokens as f64;
        n += tokens;
    }
    if n == 0 {
        return Err(TrainError::Internal("the validation set is empty".into()));
    }
    Ok(sum / n as f64)
}

fn add_grads(acc: &mut GradStore, new: GradStore, model: &dyn LanguageModel) -> Result<()> {
    let mut new = new;
    for p in model.params().iter() {
        let t = p.var.as_tensor();
        if let Some(g) = new.remove(t) {
            let sum = match acc.remove(t) {
                Some(a) => (a + g)?,
                None => g,
            };
            acc.insert(t, sum);
        }
    }
    Ok(())
}

/// Checks a config against what only the pair of model and data determine:
/// the training sequence must fit the model's `max_seq_len`. Runs before any
/// data is prepared or any file written, so the error comes first and once.
pub fn check_model_fits_data(cfg: &RunConfig) -> Result<()> {
    let (max, model) = match &cfg.model {
        algoprog_models::ModelConfig::Transformer(t) => (t.max_seq_len, "transformer"),
        algoprog_models::ModelConfig::Lstm(l) => (l.max_seq_len, "LSTM"),
    };
    if cfg.data.seq_len > max {
        return Err(TrainError::config(
            "model.max_seq_len",
            format!(
                "the {model} takes sequences of at most {max} tokens, but data.seq_len = {}",
                cfg.data.seq_len
            ),
            format!(
                "raise model.max_seq_len to at least {} or lower data.seq_len to at most {max}",
                cfg.data.seq_len
            ),
        ));
    }
    Ok(())
}

/// Prepare the data a config names and train it. See [`train_on`].
pub fn train(cfg: &RunConfig, dir: &RunDir, observer: &mut dyn Observer) -> Result<TrainOutcome> {
    cfg.validate()?;
    check_model_fits_data(cfg)?;
    let data = Dataset::prepare(&cfg.data)?;
    train_on(cfg, &data, dir, observer)
}

/// Saves the final weights atomically (serialised in memory, then
/// [`write_atomic`]: a kill leaves the old file or the new one); returns
/// their digest.
fn save_weights_atomic(model: &dyn LanguageModel, path: &std::path::Path) -> Result<FileDigest> {
    let bytes = model.params().to_safetensors_bytes()?;
    write_atomic(path, &bytes)?;
    Ok(FileDigest::of_bytes(&bytes))
}

/// How a run is checkpointed and resumed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrainOptions {
    /// Write `checkpoint.safetensors` (weights, optimiser and loop state) at every evaluation.
    pub checkpoint: bool,
    /// Continue from `checkpoint.safetensors` in the run directory if there is one.
    pub resume: bool,
    /// Stop (leaving a `running` record and the checkpoint) once this many steps
    /// are done, as an interruption would; for tests and time-sliced jobs.
    pub stop_after: Option<u64>,
}

impl TrainOptions {
    /// Checkpoint at every evaluation and resume from an existing checkpoint: what sweeps use.
    pub fn resumable() -> Self {
        TrainOptions {
            checkpoint: true,
            resume: true,
            stop_after: None,
        }
    }
}

/// Train one run on prepared data, writing `run.json`, `curve.csv` and the
/// final weights into `dir`. The run record is rewritten after every
/// evaluation, so an interrupted run leaves a consistent `running` record.
/// No checkpoints; see [`train_on_with`].
pub fn train_on(
    cfg: &RunConfig,
    data: &Dataset,
    dir: &RunDir,
    observer: &mut dyn Observer,
) -> Result<TrainOutcome> {
    train_on_with(cfg, data, dir, observer, TrainOptions::default())
}

/// [`train_on`] with checkpoints and resume. With `opts.checkpoint`, the
/// checkpoint is written at every evaluation before the curve and the record,
/// and removed when the run ends (the final weights stay in
/// `model.safetensors`). With `opts.resume` and a checkpoint in `dir`, the run
/// continues from it and produces the same curve as an uninterrupted run.
pub fn train_on_with(
    cfg: &RunConfig,
    data: &Dataset,
    dir: &RunDir,
    observer: &mut dyn Observer,
    opts: TrainOptions,
) -> Result<TrainOutcome> {
    cfg.validate()?;
    check_model_fits_data(cfg)?;
    let device = cfg.device.open()?;
    let _precision = crate::device::PrecisionGuard::new(cfg.precision);
    let started = Instant::now();
    let vocab = data.vocab_size();
    let model = cfg.model.build(vocab, cfg.seed, &device, DType::F32)?;
    let model: &dyn LanguageModel = model.as_ref();
    // Evaluation runs on a detached view of the parameters: no autograd graph.
    let eval_view = model.eval_view();
    let eval_model: &dyn LanguageModel = eval_view.as_deref().unwrap_or(model);
    let params = model.param_counts();
    let t = &cfg.train;
    let seq_len = cfg.data.seq_len;
    let total_steps = cfg.total_steps(params) as u64;
    let tokens_per_step = (t.batch_size * t.grad_accum * seq_len) as u64;
    let per_token = model.flops(seq_len);
    let train_flops_per_step = per_token.train_per_token * tokens_per_step as f64;
    let mut optimizer = t.optimizer.build(model.params())?;
    let ckpt_path = dir.path.join(CHECKPOINT);
    let run_id = cfg.run_id();
    let resumed = if opts.resume && ckpt_path.exists() {
        let st = checkpoint::load(&ckpt_path, model.params(), optimizer.as_mut())?;
        st.check_for(
            &ckpt_path,
            &Expect {
                run_id: &run_id,
                total_steps,
                eval_interval: t.eval_interval as u64,
                tokens_per_step,
            },
        )?;
        Some(st)
    } else {
        None
    };
    let previous = if resumed.is_some() {
        dir.read_record().ok()
    } else {
        None
    };

    let eval_bs = t.eval_batch_size.unwrap_or(t.batch_size);
    let mut val = data.val_batches(eval_bs);
    if let Some(k) = t.eval_batches {
        val.truncate(k);
    }
    let eval_tokens: u64 = val.iter().map(|b| (b.batch_size * b.seq_len) as u64).sum();
    let eval_flops_each = per_token.forward_per_token * eval_tokens as f64;

    let mut record = RunRecord {
        run_id: run_id.clone(),
        name: cfg.name.clone(),
        family: cfg.family().to_string(),
        seed: cfg.seed,
        status: RunStatus::Running,
        diverged_at_step: None,
        width: model.d_model(),
        lr: t.lr,
        params,
        total_params: params.total(),
        planned_steps: total_steps,
        token_budget: total_steps * tokens_per_step,
        steps_done: 0,
        tokens_done: 0,
        flops: FlopLedger {
            per_token: per_token.clone(),
            tokens_per_step,
            train_total: 0.0,
            eval_total: 0.0,
            train_total_6n: 0.0,
        },
        data: DataSummary {
            vocab_size: vocab,
            tokenizer: data.tokenizer().fingerprint(),
            train_tokens: data.train_tokens(),
            val_tokens: data.val_tokens(),
            unigram_entropy: data.unigram_entropy(),
        },
        final_val_loss: None,
        best_val_loss: None,
        wall_seconds: 0.0,
        tokens_per_second: 0.0,
        started_at: previous
            .as_ref()
            .map_or_else(|| chrono::Utc::now().to_rfc3339(), |p| p.started_at.clone()),
        finished_at: None,
        algoprog_version: env!("CARGO_PKG_VERSION").to_string(),
        config: cfg.clone(),
        integrity: None,
    };
    let mut batches = data.train_batches(t.batch_size, cfg.seed);
    let mut curve: Vec<EvalRow> = Vec::new();
    let mut first_loss: Option<f64> = None;
    let mut loss_sum = 0.0;
    let mut loss_count = 0usize;
    let mut start_step = 0u64;
    let mut wall_before = 0.0;
    if let Some(st) = resumed {
        start_step = st.step.min(total_steps);
        batches.skip_batches(start_step * t.grad_accum as u64);
        curve = st.curve;
        first_loss = st.first_loss;
        loss_sum = st.loss_sum;
        loss_count = st.loss_count as usize;
        wall_before = st.wall_seconds;
        record.steps_done = start_step;
        record.tokens_done = start_step * tokens_per_step;
        record.flops.train_total = start_step as f64 * train_flops_per_step;
        record.flops.train_total_6n = per_token.six_n_per_token * record.tokens_done as f64;
        record.flops.eval_total = st.eval_flops;
        record.final_val_loss = curve.last().map(|r| r.val_loss);
        record.best_val_loss = curve.iter().map(|r| r.val_loss).reduce(f64::min);
    }
    let wall = |started: &Instant| wall_before + started.elapsed().as_secs_f64();
    dir.write_record(&record)?;
    observer.on_start(&record);
    let train_clock = Instant::now();
    let mut stopped_early = false;

    for step in start_step..total_steps {
        if opts.stop_after.is_some_and(|s| step >= s) {
            stopped_early = true;
            break;
        }
        let lr = t.schedule.lr(step as usize, total_steps as usize, t.lr);
        let mut grads: Option<GradStore> = None;
        let mut step_loss = 0.0;
        for _ in 0..t.grad_accum {
            let batch = batches
                .next()
                .ok_or_else(|| TrainError::Internal("the training batch stream ended".into()))?;
            let loss = batch_loss(model, &batch, &device, true)?;
            let loss_scaled = if t.grad_accum > 1 {
                (&loss / t.grad_accum as f64)?
            } else {
                loss.clone()
            };
            step_loss += loss.to_dtype(DType::F64)?.to_scalar::<f64>()? / t.grad_accum as f64;
            let g = loss_scaled.backward()?;
            match grads.as_mut() {
                None => grads = Some(g),
                Some(acc) => add_grads(acc, g, model)?,
            }
        }
        let mut grads = grads.expect("grad_accum ≥ 1");
        let first = *first_loss.get_or_insert(step_loss);
        if !step_loss.is_finite() || step_loss > t.divergence_factor * first {
            record.status = RunStatus::Diverged;
            record.diverged_at_step = Some(step + 1);
            break;
        }
        let grad_norm = if t.grad_clip > 0.0 {
            clip_grad_norm(model.params(), &mut grads, t.grad_clip)?
        } else {
            f64::NAN
        };
        optimizer.step(&grads, lr)?;
        drop(grads);

        let done = step + 1;
        loss_sum += step_loss;
        loss_count += 1;
        record.steps_done = done;
        record.tokens_done = done * tokens_per_step;
        record.flops.train_total = done as f64 * train_flops_per_step;
        record.flops.train_total_6n = per_token.six_n_per_token * record.tokens_done as f64;
        let elapsed = train_clock.elapsed().as_secs_f64().max(1e-9);
        observer.on_step(&StepInfo {
            step: done,
            total_steps,
            tokens: record.tokens_done,
            loss: step_loss,
            lr,
            grad_norm,
            tokens_per_second: record.tokens_done as f64 / elapsed,
        });

        if done % t.eval_interval as u64 == 0 || done == total_steps {
            let val_loss = evaluate(eval_model, &val, &device)?;
            record.flops.eval_total += eval_flops_each;
            if !val_loss.is_finite() {
                record.status = RunStatus::Diverged;
                record.diverged_at_step = Some(done);
                break;
            }
            let row = EvalRow {
                step: done,
                tokens: record.tokens_done,
                flops: record.flops.train_total,
                train_loss: loss_sum / loss_count.max(1) as f64,
                val_loss,
                lr,
            };
            loss_sum = 0.0;
            loss_count = 0;
            curve.push(row);
            record.final_val_loss = Some(val_loss);
            record.best_val_loss = Some(
                record
                    .best_val_loss
                    .map_or(val_loss, |b: f64| b.min(val_loss)),
            );
            record.wall_seconds = wall(&started);
            record.tokens_per_second = (record.tokens_done - start_step * tokens_per_step) as f64
                / train_clock.elapsed().as_secs_f64().max(1e-9);
            if opts.checkpoint {
                let state = LoopState {
                    step: done,
                    loss_sum,
                    loss_count: loss_count as u64,
                    first_loss,
                    eval_flops: record.flops.eval_total,
                    wall_seconds: record.wall_seconds,
                    curve: curve.clone(),
                    run_id: Some(run_id.clone()),
                };
                checkpoint::save(&ckpt_path, model.params(), optimizer.as_ref(), &state)?;
            }
            dir.write_curve(&curve)?;
            dir.write_record(&record)?;
            observer.on_eval(&row);
        }
    }
    if stopped_early {
        observer.on_finish(&record);
        return Ok(TrainOutcome { record, curve });
    }
    let mut weights = None;
    if record.status == RunStatus::Running {
        record.status = RunStatus::Finished;
        weights = Some(save_weights_atomic(model, &dir.path.join(WEIGHTS))?);
    } else {
        // A diverged run has no weights; remove any left from an earlier run in this directory.
        let _ = std::fs::remove_file(dir.path.join(WEIGHTS));
    }
    record.wall_seconds = wall(&started);
    record.tokens_per_second = (record.tokens_done - start_step * tokens_per_step) as f64
        / train_clock.elapsed().as_secs_f64().max(1e-9);
    record.finished_at = Some(chrono::Utc::now().to_rfc3339());
    let curve_digest = dir.write_curve(&curve)?;
    record.integrity = Some(Integrity {
        curve: curve_digest,
        curve_rows: curve.len() as u64,
        weights,
    });
    dir.write_record(&record)?;
    if ckpt_path.exists() {
        std::fs::remove_file(&ckpt_path).map_err(|e| TrainError::Io {
            path: ckpt_path.clone(),
            what: "removing the checkpoint of an ended run".into(),
            err: e,
        })?;
    }
    observer.on_finish(&record);
    Ok(TrainOutcome { record, curve })
}
