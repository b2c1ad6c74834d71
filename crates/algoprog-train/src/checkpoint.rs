//! Checkpoints for exact resume: one `checkpoint.safetensors` per run holding
//! the parameters (`param/<name>`), the optimiser state (`optim/<key>`), and
//! the loop state (`state/*`: steps done, the running train-loss sum and
//! count since the last evaluation, the first loss the divergence test
//! compares with, evaluation FLOPs so far, wall seconds so far, and the whole
//! evaluation curve). Everything the loop needs is in this one file, written
//! atomically (temporary file, fsync, rename), so a checkpoint is either the
//! previous one or the new one, never a mix.
//!
//! Resuming restores all of it and skips the data stream by
//! `steps × grad_accum` batches; the continued run then computes the same
//! numbers as an uninterrupted one (given the same thread count). Models with
//! dropout draw masks from a stream kept inside the model, which is not saved:
//! such a run resumes correctly but not bit-for-bit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use algoprog_nn::{Optimizer, ParamStore};
use candle_core::{DType, Device, Tensor};

use crate::error::{Result, TrainError};
use crate::record::EvalRow;

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
}

fn corrupt(path: &Path, problem: String) -> TrainError {
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
pub fn save(path: &Path, params: &ParamStore, optimizer: &dyn Optimizer, state: &LoopState) -> Result<()> {
    let mut map: HashMap<String, Tensor> = HashMap::new();
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
            .flat_map(|r| [r.step as f64, r.tokens as f64, r.flops, r.train_loss, r.val_loss, r.lr])
            .collect();
        map.insert("state/curve".into(), Tensor::from_vec(flat, (state.curve.len(), 6), &Device::Cpu)?);
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp: PathBuf = dir.join(format!(".{CHECKPOINT}.tmp{}", std::process::id()));
    candle_core::safetensors::save(&map, &tmp)?;
    let io = |what: &str, e| TrainError::Io {
        path: path.to_path_buf(),
        what: what.to_string(),
        err: e,
    };
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| io("syncing the checkpoint", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("renaming the checkpoint into place", e))
}

/// Restore a checkpoint into `params` and `optimizer`; returns the loop state.
pub fn load(path: &Path, params: &ParamStore, optimizer: &mut dyn Optimizer) -> Result<LoopState> {
    let map = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| corrupt(path, e.to_string()))?;
    let get = |k: &str| -> Result<f64> {
        let t = map.get(k).ok_or_else(|| corrupt(path, format!("missing tensor `{k}`")))?;
        Ok(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?.first().copied().unwrap_or(f64::NAN))
    };
    for p in params.iter() {
        let key = format!("param/{}", p.name);
        let t = map.get(&key).ok_or_else(|| corrupt(path, format!("missing parameter `{key}`")))?;
        if t.dims() != p.var.as_tensor().dims() {
            return Err(corrupt(
                path,
                format!("parameter `{}` has shape {:?}, the model has {:?}", p.name, t.dims(), p.var.as_tensor().dims()),
            ));
        }
        p.var.set(&t.to_dtype(p.var.as_tensor().dtype())?)?;
    }
    let optim: HashMap<String, Tensor> = map
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("optim/").map(|k| (k.to_string(), v.clone())))
        .collect();
    optimizer.load_state_dict(&optim).map_err(|e| corrupt(path, format!("optimiser state: {e}")))?;
    let mut curve = Vec::new();
    if let Some(c) = map.get("state/curve") {
        for r in c.to_dtype(DType::F64)?.to_vec2::<f64>()? {
            curve.push(EvalRow {
                step: r[0] as u64,
                tokens: r[1] as u64,
                flops: r[2],
                train_loss: r[3],
                val_loss: r[4],
                lr: r[5],
            });
        }
    }
    Ok(LoopState {
        step: get("state/step")? as u64,
        loss_sum: get("state/loss_sum")?,
        loss_count: get("state/loss_count")? as u64,
        first_loss: if map.contains_key("state/first_loss") { Some(get("state/first_loss")?) } else { None },
        eval_flops: get("state/eval_flops")?,
        wall_seconds: get("state/wall_seconds")?,
        curve,
    })
}
