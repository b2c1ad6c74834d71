//! The training loop: gradient accumulation and clipping, scheduled learning
//! rate, periodic evaluation on the fixed validation set, an exact FLOP
//! ledger, divergence detection, and the run record.
//!
//! One entry point, [`train_model`], takes the parts of a run already built
//! (a `&dyn LanguageModel`, an [`LrSchedule`], an [`Optimizer`]) with the
//! data, a [`CheckedRunConfig`] and a run directory. It is a loop over a
//! [`TrainState`] (step, tokens, FLOP ledger, curve, best and last
//! evaluation, timings; the ledger advances in [`TrainState::advance_to`]
//! only, for a resumed checkpoint as for each step) with three parts: one
//! optimiser step, evaluate-and-checkpoint, and finish. It ends with a
//! [`Termination`], returned and written in the run record.
//!
//! [`train`], [`train_on`] and [`train_on_with`] build the parts from the
//! config (models through [`crate::registry::build_model`], so a registered
//! custom model trains the same way) and call it.

use std::time::Instant;

use algoprog_data::{Batch, Dataset};
use algoprog_models::LanguageModel;
use algoprog_nn::{clip_grad_norm, LrSchedule, Optimizer};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};

use crate::checkpoint::{self, Expect, LoopState, CHECKPOINT};
use crate::config::CheckedRunConfig;
use crate::error::{Result, TrainError};
use crate::record::{
    write_atomic, DataSummary, EvalRow, FileDigest, FlopLedger, Integrity, RunDir, RunRecord,
    RunStatus, Termination, WEIGHTS,
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

/// A finished, diverged or stopped run.
#[derive(Clone, Debug)]
pub struct TrainOutcome {
    pub record: RunRecord,
    pub curve: Vec<EvalRow>,
    /// Why the loop ended (also in `record.termination`, except for
    /// [`Termination::Stopped`], whose record stays `running` to be resumed).
    pub termination: Termination,
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

/// Prepare the data a config names and train it. See [`train_on`].
pub fn train(
    cfg: &CheckedRunConfig,
    dir: &RunDir,
    observer: &mut dyn Observer,
) -> Result<TrainOutcome> {
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
    cfg: &CheckedRunConfig,
    data: &Dataset,
    dir: &RunDir,
    observer: &mut dyn Observer,
) -> Result<TrainOutcome> {
    train_on_with(cfg, data, dir, observer, TrainOptions::default())
}

/// [`train_on`] with checkpoints and resume: builds the model (through the
/// [registry](crate::registry), seeded by `cfg.seed`), the optimiser and the
/// schedule the config names, and calls [`train_model`].
pub fn train_on_with(
    cfg: &CheckedRunConfig,
    data: &Dataset,
    dir: &RunDir,
    observer: &mut dyn Observer,
    opts: TrainOptions,
) -> Result<TrainOutcome> {
    let device = cfg.device.open()?;
    let model =
        crate::registry::build_model(&cfg.model, data.vocab_size(), cfg.seed, &device, DType::F32)?;
    let mut optimizer = cfg.train.optimizer.build(model.params())?;
    let parts = TrainParts {
        model: model.as_ref(),
        schedule: &cfg.train.schedule,
        optimizer: optimizer.as_mut(),
    };
    train_model(parts, cfg, data, dir, observer, opts)
}

/// The parts of a run built before training: the model, its learning-rate
/// schedule and its optimiser (built over `model.params()`).
pub struct TrainParts<'a> {
    pub model: &'a dyn LanguageModel,
    pub schedule: &'a dyn LrSchedule,
    pub optimizer: &'a mut dyn Optimizer,
}

/// Trains `parts.model` on `data` as `cfg` says (batch size, accumulation,
/// budget, peak learning rate, clipping, evaluation, divergence factor),
/// writing `run.json`, `curve.csv` and the final weights into `dir`.
///
/// The model, schedule and optimiser may come from anywhere (a model built
/// outside algoprog's crates, a schedule of one's own); the record stores
/// `cfg`, so name in it what was built (for a custom model,
/// `model.kind = "custom"` with its builder, see [`crate::registry`]).
/// Parameter counts and FLOPs come from the model. With `opts.checkpoint`,
/// the checkpoint is written at every evaluation before the curve and the
/// record, and removed when the run ends (the final weights stay in
/// `model.safetensors`). With `opts.resume` and a checkpoint in `dir`, the
/// run continues from it and produces the same curve as an uninterrupted
/// run.
pub fn train_model(
    parts: TrainParts<'_>,
    cfg: &CheckedRunConfig,
    data: &Dataset,
    dir: &RunDir,
    observer: &mut dyn Observer,
    opts: TrainOptions,
) -> Result<TrainOutcome> {
    let _precision = crate::device::PrecisionGuard::new(cfg.precision);
    crate::runtime::adopt_current_thread();
    let mut run = Run::start(parts, cfg, data, dir, opts)?;
    dir.write_record(&run.state.record)?;
    observer.on_start(&run.state.record);
    run.state.start_clock();
    let termination = loop {
        let step = run.state.step();
        if step >= run.total_steps {
            break Termination::Finished;
        }
        if opts.stop_after.is_some_and(|s| step >= s) {
            break Termination::Stopped;
        }
        let lr = match run.step(observer)? {
            StepEnd::Done { lr } => lr,
            StepEnd::Diverged => break Termination::Diverged { step: step + 1 },
        };
        let done = run.state.step();
        if done.is_multiple_of(run.eval_interval) || done == run.total_steps {
            if let Some(t) = run.evaluate_and_checkpoint(lr, observer)? {
                break t;
            }
        }
    };
    run.finish(termination, observer)
}

/// Cost of one optimiser step, fixed for a run.
#[derive(Clone, Copy, Debug)]
struct StepCost {
    tokens: u64,
    train_flops: f64,
    six_n_per_token: f64,
}

/// Where a run stands: its record (steps, tokens, FLOP ledger, best and last
/// evaluation, timings), its curve, and the training-loss accumulators
/// between evaluations. The ledger advances in [`TrainState::advance_to`]
/// only.
#[derive(Debug)]
pub struct TrainState {
    /// The record as it will be written.
    pub record: RunRecord,
    /// One row per evaluation so far.
    pub curve: Vec<EvalRow>,
    first_loss: Option<f64>,
    loss_sum: f64,
    loss_count: u64,
    cost: StepCost,
    /// Step the current process started from (0, or a checkpoint's step).
    start_step: u64,
    /// Wall seconds of earlier processes (from a checkpoint).
    wall_before: f64,
    started: Instant,
    train_clock: Instant,
}

impl TrainState {
    /// Optimiser steps done.
    pub fn step(&self) -> u64 {
        self.record.steps_done
    }

    /// The training loss of the first step (divergence is measured against it).
    pub fn first_loss(&self) -> Option<f64> {
        self.first_loss
    }

    /// Sets the step count, tokens and training FLOPs to `done` steps.
    fn advance_to(&mut self, done: u64) {
        let r = &mut self.record;
        r.steps_done = done;
        r.tokens_done = done * self.cost.tokens;
        r.flops.train_total = done as f64 * self.cost.train_flops;
        r.flops.train_total_6n = self.cost.six_n_per_token * r.tokens_done as f64;
    }

    /// Continues from a checkpoint's loop state.
    fn resume(&mut self, st: LoopState, total_steps: u64) {
        let step = st.step.min(total_steps);
        self.start_step = step;
        self.first_loss = st.first_loss;
        self.loss_sum = st.loss_sum;
        self.loss_count = st.loss_count;
        self.wall_before = st.wall_seconds;
        self.record.flops.eval_total = st.eval_flops;
        self.advance_to(step);
        for row in st.curve {
            self.note_eval(row);
        }
    }

    /// Appends an evaluation: last and best validation loss.
    fn note_eval(&mut self, row: EvalRow) {
        let v = row.val_loss;
        self.record.final_val_loss = Some(v);
        self.record.best_val_loss = Some(self.record.best_val_loss.map_or(v, |b| b.min(v)));
        self.curve.push(row);
    }

    fn start_clock(&mut self) {
        self.train_clock = Instant::now();
    }

    /// Wall time (all processes) and this process's training throughput.
    fn time(&mut self) {
        self.record.wall_seconds = self.wall_before + self.started.elapsed().as_secs_f64();
        self.record.tokens_per_second = (self.record.tokens_done
            - self.start_step * self.cost.tokens) as f64
            / self.train_clock.elapsed().as_secs_f64().max(1e-9);
    }

    /// What a checkpoint stores of the loop.
    fn loop_state(&self) -> LoopState {
        LoopState {
            step: self.step(),
            loss_sum: self.loss_sum,
            loss_count: self.loss_count,
            first_loss: self.first_loss,
            eval_flops: self.record.flops.eval_total,
            wall_seconds: self.record.wall_seconds,
            curve: self.curve.clone(),
            run_id: Some(self.record.run_id.clone()),
        }
    }
}

/// How one optimiser step ended.
enum StepEnd {
    Done {
        lr: f64,
    },
    /// The step's training loss was not finite or above the divergence bound; no update was made.
    Diverged,
}

/// A run in progress: its parts, its fixed settings and its [`TrainState`].
struct Run<'p, 'c> {
    model: &'p dyn LanguageModel,
    eval_view: Option<Box<dyn LanguageModel>>,
    schedule: &'p dyn LrSchedule,
    optimizer: &'p mut dyn Optimizer,
    cfg: &'c CheckedRunConfig,
    dir: &'c RunDir,
    opts: TrainOptions,
    device: Device,
    batches: algoprog_data::TrainBatches,
    val: Vec<Batch>,
    eval_flops_each: f64,
    total_steps: u64,
    eval_interval: u64,
    ckpt_path: std::path::PathBuf,
    state: TrainState,
}

impl<'p, 'c> Run<'p, 'c> {
    /// Sets up the record, the batches and (with `opts.resume`) the checkpoint's state.
    fn start(
        parts: TrainParts<'p>,
        cfg: &'c CheckedRunConfig,
        data: &Dataset,
        dir: &'c RunDir,
        opts: TrainOptions,
    ) -> Result<Self> {
        let started = Instant::now();
        let TrainParts {
            model,
            schedule,
            optimizer,
        } = parts;
        let device = model.output_weight().device().clone();
        let vocab = data.vocab_size();
        let params = model.param_counts();
        let t = &cfg.train;
        let seq_len = cfg.data.seq_len;
        let total_steps = cfg.total_steps(params) as u64;
        let tokens_per_step = (t.batch_size * t.grad_accum * seq_len) as u64;
        let per_token = model.flops(seq_len);
        let cost = StepCost {
            tokens: tokens_per_step,
            train_flops: per_token.train_per_token * tokens_per_step as f64,
            six_n_per_token: per_token.six_n_per_token,
        };
        let ckpt_path = dir.path.join(CHECKPOINT);
        let run_id = cfg.run_id();
        let resumed = if opts.resume && ckpt_path.exists() {
            let (st, model_state) = checkpoint::load(&ckpt_path, model.params(), &mut *optimizer)?;
            model
                .set_extra_state(&model_state)
                .map_err(|e| checkpoint::corrupt(&ckpt_path, format!("model state: {e}")))?;
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

        let record = RunRecord {
            run_id,
            name: cfg.name.clone(),
            family: cfg.family().to_string(),
            seed: cfg.seed,
            status: RunStatus::Running,
            diverged_at_step: None,
            termination: None,
            width: model.d_model(),
            lr: t.lr,
            params,
            total_params: params.total(),
            planned_steps: total_steps,
            token_budget: total_steps * tokens_per_step,
            steps_done: 0,
            tokens_done: 0,
            flops: FlopLedger {
                per_token,
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
            config: cfg.config().clone(),
            integrity: None,
        };
        let mut state = TrainState {
            record,
            curve: Vec::new(),
            first_loss: None,
            loss_sum: 0.0,
            loss_count: 0,
            cost,
            start_step: 0,
            wall_before: 0.0,
            started,
            train_clock: started,
        };
        let mut batches = data.train_batches_ordered(t.batch_size, cfg.seed, t.batch_order);
        if let Some(st) = resumed {
            state.resume(st, total_steps);
            batches.skip_batches(state.step() * t.grad_accum as u64);
        }
        Ok(Run {
            model,
            eval_view: model.eval_view(),
            schedule,
            optimizer,
            cfg,
            dir,
            opts,
            device,
            batches,
            val,
            eval_flops_each,
            total_steps,
            eval_interval: t.eval_interval as u64,
            ckpt_path,
            state,
        })
    }

    /// One optimiser step: `grad_accum` micro-batches, the divergence check,
    /// clipping, the update, and the ledger.
    fn step(&mut self, observer: &mut dyn Observer) -> Result<StepEnd> {
        let t = &self.cfg.train;
        let step = self.state.step();
        let lr = self
            .schedule
            .lr(step as usize, self.total_steps as usize, t.lr);
        let mut grads: Option<GradStore> = None;
        let mut step_loss = 0.0;
        for _ in 0..t.grad_accum {
            let batch = self
                .batches
                .next()
                .ok_or_else(|| TrainError::Internal("the training batch stream ended".into()))?;
            let loss = batch_loss(self.model, &batch, &self.device, true)?;
            let loss_scaled = if t.grad_accum > 1 {
                (&loss / t.grad_accum as f64)?
            } else {
                loss.clone()
            };
            step_loss += loss.to_dtype(DType::F64)?.to_scalar::<f64>()? / t.grad_accum as f64;
            let g = loss_scaled.backward()?;
            match grads.as_mut() {
                None => grads = Some(g),
                Some(acc) => add_grads(acc, g, self.model)?,
            }
        }
        let mut grads = grads.expect("grad_accum ≥ 1");
        let first = *self.state.first_loss.get_or_insert(step_loss);
        if !step_loss.is_finite() || step_loss > t.divergence_factor * first {
            return Ok(StepEnd::Diverged);
        }
        let grad_norm = if t.grad_clip > 0.0 {
            clip_grad_norm(self.model.params(), &mut grads, t.grad_clip)?
        } else {
            f64::NAN
        };
        self.optimizer.step(&grads, lr)?;
        drop(grads);

        let done = step + 1;
        self.state.loss_sum += step_loss;
        self.state.loss_count += 1;
        self.state.advance_to(done);
        let elapsed = self.state.train_clock.elapsed().as_secs_f64().max(1e-9);
        observer.on_step(&StepInfo {
            step: done,
            total_steps: self.total_steps,
            tokens: self.state.record.tokens_done,
            loss: step_loss,
            lr,
            grad_norm,
            tokens_per_second: self.state.record.tokens_done as f64 / elapsed,
        });
        Ok(StepEnd::Done { lr })
    }

    /// Evaluates on the validation batches and records the row; writes the
    /// checkpoint (with `opts.checkpoint`), then the curve and the record.
    /// `Some(Diverged)` when the validation loss is not finite.
    fn evaluate_and_checkpoint(
        &mut self,
        lr: f64,
        observer: &mut dyn Observer,
    ) -> Result<Option<Termination>> {
        let eval_model: &dyn LanguageModel = self.eval_view.as_deref().unwrap_or(self.model);
        let val_loss = evaluate(eval_model, &self.val, &self.device)?;
        let st = &mut self.state;
        st.record.flops.eval_total += self.eval_flops_each;
        let done = st.step();
        if !val_loss.is_finite() {
            return Ok(Some(Termination::Diverged { step: done }));
        }
        let row = EvalRow {
            step: done,
            tokens: st.record.tokens_done,
            flops: st.record.flops.train_total,
            train_loss: st.loss_sum / st.loss_count.max(1) as f64,
            val_loss,
            lr,
        };
        st.loss_sum = 0.0;
        st.loss_count = 0;
        st.note_eval(row);
        st.time();
        if self.opts.checkpoint {
            checkpoint::save(
                &self.ckpt_path,
                self.model.params(),
                &*self.optimizer,
                &st.loop_state(),
                &self.model.extra_state(),
            )?;
        }
        self.dir.write_curve(&st.curve)?;
        self.dir.write_record(&st.record)?;
        observer.on_eval(&row);
        Ok(None)
    }

    /// Ends the run: a stopped run leaves its `running` record and
    /// checkpoint; a finished one writes its weights, a diverged one removes
    /// any; both write the curve, the checksums and the final record, and
    /// remove the checkpoint.
    fn finish(self, termination: Termination, observer: &mut dyn Observer) -> Result<TrainOutcome> {
        let mut st = self.state;
        if termination == Termination::Stopped {
            observer.on_finish(&st.record);
            return Ok(TrainOutcome {
                record: st.record,
                curve: st.curve,
                termination,
            });
        }
        let mut weights = None;
        match termination {
            Termination::Diverged { step } => {
                st.record.status = RunStatus::Diverged;
                st.record.diverged_at_step = Some(step);
                // A diverged run has no weights; remove any left from an earlier run in this directory.
                let _ = std::fs::remove_file(self.dir.path.join(WEIGHTS));
            }
            _ => {
                st.record.status = RunStatus::Finished;
                weights = Some(save_weights_atomic(
                    self.model,
                    &self.dir.path.join(WEIGHTS),
                )?);
            }
        }
        st.record.termination = Some(termination);
        st.time();
        st.record.finished_at = Some(chrono::Utc::now().to_rfc3339());
        let curve_digest = self.dir.write_curve(&st.curve)?;
        st.record.integrity = Some(Integrity {
            curve: curve_digest,
            curve_rows: st.curve.len() as u64,
            weights,
        });
        self.dir.write_record(&st.record)?;
        if self.ckpt_path.exists() {
            std::fs::remove_file(&self.ckpt_path).map_err(|e| TrainError::Io {
                path: self.ckpt_path.clone(),
                what: "removing the checkpoint of an ended run".into(),
                err: e,
            })?;
        }
        observer.on_finish(&st.record);
        Ok(TrainOutcome {
            record: st.record,
            curve: st.curve,
            termination,
        })
    }
}
