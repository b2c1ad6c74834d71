//! Run records: `run.json` (resolved config, parameter counts, FLOP ledger,
//! status) and `curve.csv` (one row per evaluation:
//! `step,tokens,flops,train_loss,val_loss,lr`). Both are written atomically
//! (write to a temporary file, then rename), so a reader never sees half a file.

use std::io::Write;
use std::path::{Path, PathBuf};

use algoprog_models::{FlopReport, ParamCounts};
use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::error::{Result, TrainError};

pub const RUN_JSON: &str = "run.json";
pub const CURVE_CSV: &str = "curve.csv";
pub const WEIGHTS: &str = "model.safetensors";
pub const CURVE_HEADER: &str = "step,tokens,flops,train_loss,val_loss,lr";

/// Lifecycle of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Finished,
    /// Stopped because the loss became NaN/inf or exploded.
    Diverged,
}

/// One evaluation of a run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalRow {
    /// Optimiser steps completed.
    pub step: u64,
    /// Cumulative training tokens.
    pub tokens: u64,
    /// Cumulative training FLOPs (forward + backward, 3 × forward per token).
    pub flops: f64,
    /// Mean training loss over the steps since the previous evaluation.
    pub train_loss: f64,
    /// Mean validation loss (nats/token) over the evaluation set.
    pub val_loss: f64,
    /// Learning rate of the last step.
    pub lr: f64,
}

/// The FLOP ledger of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FlopLedger {
    /// Per-token counts under every convention, with the component breakdown.
    pub per_token: FlopReport,
    /// Tokens per optimiser step (batch_size × grad_accum × seq_len).
    pub tokens_per_step: u64,
    /// Cumulative training FLOPs at the last completed step.
    pub train_total: f64,
    /// Forward FLOPs spent on evaluation (not part of training compute).
    pub eval_total: f64,
    /// Training FLOPs under the 6N convention, for comparison.
    pub train_total_6n: f64,
}

/// Facts about the data a run trained on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DataSummary {
    pub vocab_size: usize,
    pub tokenizer: String,
    pub train_tokens: usize,
    pub val_tokens: usize,
    /// Unigram cross-entropy of the validation set (nats/token): a baseline every model must beat.
    pub unigram_entropy: f64,
}

/// Contents of `run.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub name: String,
    pub family: String,
    pub seed: u64,
    pub status: RunStatus,
    /// The step at which a diverged run was stopped.
    #[serde(default)]
    pub diverged_at_step: Option<u64>,
    pub width: usize,
    pub lr: f64,
    pub params: ParamCounts,
    pub total_params: usize,
    pub planned_steps: u64,
    /// Planned training tokens (planned_steps × tokens_per_step).
    pub token_budget: u64,
    pub steps_done: u64,
    pub tokens_done: u64,
    pub flops: FlopLedger,
    pub data: DataSummary,
    #[serde(default)]
    pub final_val_loss: Option<f64>,
    #[serde(default)]
    pub best_val_loss: Option<f64>,
    pub wall_seconds: f64,
    pub tokens_per_second: f64,
    pub started_at: String,
    #[serde(default)]
    pub finished_at: Option<String>,
    pub algoprog_version: String,
    pub config: RunConfig,
}

/// Write `bytes` to `path` atomically: a sibling temporary file, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name().and_then(|s| s.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    let io = |what: &str, e| TrainError::Io {
        path: path.to_path_buf(),
        what: what.to_string(),
        err: e,
    };
    let mut f = std::fs::File::create(&tmp).map_err(|e| io("creating a temporary file for", e))?;
    f.write_all(bytes).map_err(|e| io("writing", e))?;
    f.sync_all().map_err(|e| io("syncing", e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| io("renaming into place", e))
}

/// A run directory on disk.
#[derive(Clone, Debug)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    pub fn create(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        std::fs::create_dir_all(&path).map_err(|e| TrainError::Io {
            path: path.clone(),
            what: "creating the run directory".into(),
            err: e,
        })?;
        Ok(Self { path })
    }

    pub fn open(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    pub fn write_record(&self, rec: &RunRecord) -> Result<()> {
        let json = serde_json::to_vec_pretty(rec).map_err(|e| TrainError::Internal(e.to_string()))?;
        write_atomic(&self.path.join(RUN_JSON), &json)
    }

    pub fn write_curve(&self, rows: &[EvalRow]) -> Result<()> {
        let mut s = String::with_capacity(64 * (rows.len() + 1));
        s.push_str(CURVE_HEADER);
        s.push('\n');
        for r in rows {
            s.push_str(&format!(
                "{},{},{:e},{},{},{:e}\n",
                r.step, r.tokens, r.flops, r.train_loss, r.val_loss, r.lr
            ));
        }
        write_atomic(&self.path.join(CURVE_CSV), s.as_bytes())
    }

    /// Read `run.json`; a missing or unparsable file is reported with its path and the fix.
    pub fn read_record(&self) -> Result<RunRecord> {
        let p = self.path.join(RUN_JSON);
        let text = std::fs::read_to_string(&p).map_err(|e| TrainError::Io {
            path: p.clone(),
            what: "reading the run record".into(),
            err: e,
        })?;
        serde_json::from_str(&text).map_err(|e| TrainError::CorruptRecord {
            path: p,
            problem: e.to_string(),
            fix: "delete the run directory so the run is trained again".into(),
        })
    }

    /// Read `curve.csv` back, checking the header and every value.
    pub fn read_curve(&self) -> Result<Vec<EvalRow>> {
        let p = self.path.join(CURVE_CSV);
        let text = std::fs::read_to_string(&p).map_err(|e| TrainError::Io {
            path: p.clone(),
            what: "reading the curve".into(),
            err: e,
        })?;
        let corrupt = |line: usize, problem: String| TrainError::CorruptRecord {
            path: p.clone(),
            problem: format!("line {line}: {problem}"),
            fix: "delete the run directory so the run is trained again".into(),
        };
        let mut lines = text.lines();
        match lines.next() {
            Some(h) if h.trim() == CURVE_HEADER => {}
            other => return Err(corrupt(1, format!("expected header `{CURVE_HEADER}`, found {other:?}"))),
        }
        let mut rows = Vec::new();
        for (i, line) in lines.enumerate() {
            let f: Vec<&str> = line.split(',').collect();
            if f.len() != 6 {
                return Err(corrupt(i + 2, format!("expected 6 fields, found {}", f.len())));
            }
            let num = |j: usize| -> Result<f64> {
                f[j].trim()
                    .parse::<f64>()
                    .map_err(|_| corrupt(i + 2, format!("column {} is not a number: `{}`", j + 1, f[j])))
            };
            rows.push(EvalRow {
                step: num(0)? as u64,
                tokens: num(1)? as u64,
                flops: num(2)?,
                train_loss: num(3)?,
                val_loss: num(4)?,
                lr: num(5)?,
            });
        }
        Ok(rows)
    }
}
