//! Checkpoints for exact resume: one `checkpoint.safetensors` per run holding
//! the parameters (`param/<name>`), the optimiser state (`optim/<key>`), and
//! the loop state (`state/*`: steps done, the running train-loss sum and
//! count since the last evaluation, the first loss the divergence test
//! compares with, evaluation FLOPs so far, wall seconds so far, and the whole
//! evaluation curve), and the model's state outside its parameters
//! (`model_state/<name>`, [`algoprog_models::LanguageModel::extra_state`]:
//! the LSTM's carried (h, c)). Everything the loop needs is in this one file, written
//! atomically (temporary file, fsync, rename), so a checkpoint is either the
//! previous one or the new one, never a mix.
//!
//! The file also names the run it belongs to (`state/run_id`). Before a run
//! resumes, [`LoopState::check_for`] holds the loop state against the run's
//! config: the step is a whole number within the planned steps at an
//! evaluation, the curve has exactly the evaluations up to it with the
//! run's tokens per step, and every value is finite. A checkpoint that fails
//! (hand-edited, another run's, damaged) is refused with its path and the fix.
//!
//! Resuming restores all of it and skips the data stream by
//! `steps × grad_accum` batches; the continued run then computes the same
//! numbers as an uninterrupted one (given the same thread count), with the
//! contiguous batch order too (the skip lands on the same windows of each
//! row's stream, and the LSTM's carried state is restored). Models with
//! dropout draw masks from a stream kept inside the model, which is not saved:
//! such a run resumes correctly but not bit-for-bit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use algoprog_nn::{Optimizer, ParamStore};
use candle_core::{DType, Device, Tensor};

use crate::error::{Result, TrainError};
use crate::record::{tmp_path, EvalRow};

pub const CHECKPOINT: &str = "checkpoint.safetensors";

/// The loop state saved with the weights.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoopState {
    pub step: u64,
    pub loss_sum: f64,
    pub loss_count: u64,
    pub first_loss: Option<f64>,
    pub eval_flops: f64,
    pub wall_seconds: f64,
    pub curve: Vec<EvalRow>,
    /// The run the checkpoint belongs to (absent in checkpoints of earlier versions).
    pub run_id: Option<String>,
}

/// What a run's checkpoint must agree with.
#[derive(Clone, Debug)]
pub struct Expect<'a> {
    pub run_id: &'a str,
    pub total_steps: u64,
    pub eval_interval: u64,
    pub tokens_per_step: u64,
}

impl LoopState {
    /// Checks the loop state against the run it is to resume (see the module docs).
    pub fn check_for(&self, path: &Path, want: &Expect<'_>) -> Result<()> {
        let bad = |problem: String| corrupt(path, problem);
        if let Some(id) = &self.run_id {
            if id != want.run_id {
                return Err(bad(format!(
                    "belongs to run {id}, not to run {}",
                    want.run_id
                )));
            }
        }
        let ei = want.eval_interval.max(1);
        if self.step == 0 || self.step > want.total_steps {
            return Err(bad(format!(
                "state/step = {} is outside the run's 1..={} planned steps",
                self.step, want.total_steps
            )));
        }
        if !self.step.is_multiple_of(ei) && self.step != want.total_steps {
            return Err(bad(format!(
                "state/step = {} is not an evaluation step (every {ei}, and the last); checkpoints are written only there",
                self.step
            )));
        }
        if self.loss_count > ei {
            return Err(bad(format!(
                "state/loss_count = {} exceeds the evaluation interval {ei}",
                self.loss_count
            )));
        }
        for (k, v) in [
            ("loss_sum", self.loss_sum),
            ("eval_flops", self.eval_flops),
            ("wall_seconds", self.wall_seconds),
        ] {
            if !v.is_finite() || (k != "loss_sum" && v < 0.0) {
                return Err(bad(format!(
                    "state/{k} = {v} is not a finite{} number",
                    if k == "loss_sum" { "" } else { " non-negative" }
                )));
            }
        }
        if self.first_loss.is_some_and(|f| !f.is_finite()) {
            return Err(bad("state/first_loss is not finite".into()));
        }
        let expected = (self.step / ei) as usize + usize::from(!self.step.is_multiple_of(ei));
        if self.curve.len() != expected {
            return Err(bad(format!(
                "state/curve has {} evaluations, a run at step {} with an evaluation every {ei} has {expected}",
                self.curve.len(),
                self.step
            )));
        }
        for (i, r) in self.curve.iter().enumerate() {
            let step = if (i + 1) as u64 * ei <= self.step {
                (i + 1) as u64 * ei
            } else {
                self.step
            };
            if r.step != step || r.tokens != step.saturating_mul(want.tokens_per_step) {
                return Err(bad(format!(
                    "state/curve row {} is at step {} with {} tokens; expected step {step} with {} tokens",
                    i + 1,
                    r.step,
                    r.tokens,
                    step.saturating_mul(want.tokens_per_step)
                )));
            }
            if ![r.flops, r.train_loss, r.val_loss, r.lr]
                .iter()
                .all(|v| v.is_finite())
            {
                return Err(bad(format!(
                    "state/curve row {} holds a non-finite value",
                    i + 1
                )));
            }
        }
        Ok(())
    }
}

/// A whole, non-negative count stored as f64 (`state/step`, `state/loss_count`).
fn count(path: &Path, key: &str, v: f64) -> Result<u64> {
    if !(v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= (1u64 << 53) as f64) {
        return Err(corrupt(
            path,
            format!("`{key}` = {v} is not a whole number of steps"),
        ));
    }
    Ok(v as u64)
}

pub(crate) fn corrupt(path: &Path, problem: String) -> TrainError {
    TrainError::CorruptRecord {
        path: path.to_path_buf(),
        problem,
        fix: "delete this checkpoint file; the run then restarts from step 0".into(),
    }
}

fn scalar(v: f64) -> Result<Tensor> {
    Ok(Tensor::new(&[v], &Device::Cpu)?)
}

/// Write a checkpoint of `params`, `optimizer` and `state` to `path` atomically.
pub fn save(
    path: &Path,
    params: &ParamStore,
    optimizer: &dyn Optimizer,
    state: &LoopState,
    model_state: &[(String, Tensor)],
) -> Result<()> {
    let mut map: HashMap<String, Tensor> = HashMap::new();
    for (k, v) in model_state {
        map.insert(format!("model_state/{k}"), v.detach());
    }
    for p in params.iter() {
        map.insert(format!("param/{}", p.name), p.var.as_tensor().detach());
    }
    for (k, v) in optimizer.state_dict()? {
        map.insert(format!("optim/{k}"), v);
    }
    map.insert("state/step".into(), scalar(state.step as f64)?);
    map.insert("state/loss_sum".into(), scalar(state.loss_sum)?);
    map.insert("state/loss_count".into(), scalar(state.loss_count as f64)?);
    if let Some(f) = state.first_loss {
        map.insert("state/first_loss".into(), scalar(f)?);
    }
    map.insert("state/eval_flops".into(), scalar(state.eval_flops)?);
    map.insert("state/wall_seconds".into(), scalar(state.wall_seconds)?);
    if !state.curve.is_empty() {
        let flat: Vec<f64> = state
            .curve
            .iter()
            .flat_map(|r| {
                [
                    r.step as f64,
                    r.tokens as f64,
                    r.flops,
                    r.train_loss,
                    r.val_loss,
                    r.lr,
                ]
            })
            .collect();
        map.insert(
            "state/curve".into(),
            Tensor::from_vec(flat, (state.curve.len(), 6), &Device::Cpu)?,
        );
    }
    if let Some(id) = &state.run_id {
        map.insert(
            "state/run_id".into(),
            Tensor::from_vec(id.as_bytes().to_vec(), id.len(), &Device::Cpu)?,
        );
    }
    let tmp: PathBuf = tmp_path(path);
    let io = |what: &str, e| TrainError::Io {
        path: path.to_path_buf(),
        what: what.to_string(),
        err: e,
    };
    // Serialised in memory and written to our own temporary file, whose
    // name tells a later sweep whether its writer is alive (candle's `save`
    // writes through a hidden temp file of its own that a kill would orphan).
    let bytes = safetensors::serialize(&map, None).map_err(candle_core::Error::from)?;
    std::fs::write(&tmp, bytes).map_err(|e| io("writing the checkpoint", e))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| io("syncing the checkpoint", e))?;
    if crate::fault::at("checkpoint-tmp") {
        crate::fault::die();
    }
    std::fs::rename(&tmp, path).map_err(|e| io("renaming the checkpoint into place", e))
}

/// Restore a checkpoint into `params` and `optimizer`; returns the loop state
/// and the model's saved state (`model_state/` prefix removed, sorted by name).
pub fn load(
    path: &Path,
    params: &ParamStore,
    optimizer: &mut dyn Optimizer,
) -> Result<(LoopState, Vec<(String, Tensor)>)> {
    let map = candle_core::safetensors::load(path, &Device::Cpu)
        .map_err(|e| corrupt(path, e.to_string()))?;
    let get = |k: &str| -> Result<f64> {
        let t = map
            .get(k)
            .ok_or_else(|| corrupt(path, format!("missing tensor `{k}`")))?;
        Ok(t.to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1::<f64>()?
            .first()
            .copied()
            .unwrap_or(f64::NAN))
    };
    for p in params.iter() {
        let key = format!("param/{}", p.name);
        let t = map
            .get(&key)
            .ok_or_else(|| corrupt(path, format!("missing parameter `{key}`")))?;
        if t.dims() != p.var.as_tensor().dims() {
            return Err(corrupt(
                path,
                format!(
                    "parameter `{}` has shape {:?}, the model has {:?}",
                    p.name,
                    t.dims(),
                    p.var.as_tensor().dims()
                ),
            ));
        }
        p.var.set(&t.to_dtype(p.var.as_tensor().dtype())?)?;
    }
    let optim: HashMap<String, Tensor> = map
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("optim/").map(|k| (k.to_string(), v.clone())))
        .collect();
    optimizer
        .load_state_dict(&optim)
        .map_err(|e| corrupt(path, format!("optimiser state: {e}")))?;
    let mut curve = Vec::new();
    if let Some(c) = map.get("state/curve") {
        let rows = c
            .to_dtype(DType::F64)?
            .to_vec2::<f64>()
            .map_err(|e| corrupt(path, format!("state/curve: {e}")))?;
        for (i, r) in rows.into_iter().enumerate() {
            if r.len() != 6 {
                return Err(corrupt(
                    path,
                    format!("state/curve has {} columns, expected 6", r.len()),
                ));
            }
            curve.push(EvalRow {
                step: count(path, &format!("state/curve row {} step", i + 1), r[0])?,
                tokens: count(path, &format!("state/curve row {} tokens", i + 1), r[1])?,
                flops: r[2],
                train_loss: r[3],
                val_loss: r[4],
                lr: r[5],
            });
        }
    }
    let run_id = match map.get("state/run_id") {
        Some(t) => Some(
            String::from_utf8(t.to_dtype(DType::U8)?.to_vec1::<u8>()?)
                .map_err(|_| corrupt(path, "state/run_id is not UTF-8".into()))?,
        ),
        None => None,
    };
    let mut model_state: Vec<(String, Tensor)> = map
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("model_state/")
                .map(|k| (k.to_string(), v.clone()))
        })
        .collect();
    model_state.sort_by(|a, b| a.0.cmp(&b.0));
    let st = LoopState {
        step: count(path, "state/step", get("state/step")?)?,
        loss_sum: get("state/loss_sum")?,
        loss_count: count(path, "state/loss_count", get("state/loss_count")?)?,
        first_loss: if map.contains_key("state/first_loss") {
            Some(get("state/first_loss")?)
        } else {
            None
        },
        eval_flops: get("state/eval_flops")?,
        wall_seconds: get("state/wall_seconds")?,
        curve,
        run_id,
    };
    Ok((st, model_state))
}
