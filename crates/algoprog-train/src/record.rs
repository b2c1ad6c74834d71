//! Run records: `run.json` (resolved config, parameter counts, FLOP ledger,
//! status) and `curve.csv` (one row per evaluation:
//! `step,tokens,flops,train_loss,val_loss,lr`). Both are written atomically
//! (write to a temporary file, then rename), so a reader never sees half a file.
//!
//! The record of an ended run (finished or diverged) carries an
//! [`Integrity`] block: the length and sha256 of `curve.csv`, its row count,
//! and the length and sha256 of `model.safetensors`. [`RunDir::verify`]
//! checks a run against it (and, for every ended run, checks that the curve
//! has exactly the evaluation rows its step count and evaluation interval
//! imply), so a missing, cut, changed or non-UTF-8 curve, or missing or cut
//! weights, are found and named instead of being counted.

use std::io::Write;
use std::path::{Path, PathBuf};

use algoprog_models::{FlopReport, ParamCounts};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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

/// Length and sha256 of a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    pub bytes: u64,
    pub sha256: String,
}

impl FileDigest {
    pub fn of_bytes(bytes: &[u8]) -> Self {
        FileDigest {
            bytes: bytes.len() as u64,
            sha256: hex(&Sha256::digest(bytes)),
        }
    }

    /// Digest of the file at `path`, read in 1 MiB chunks.
    pub fn of_file(path: &Path) -> std::io::Result<Self> {
        use std::io::Read;
        let mut f = std::fs::File::open(path)?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut bytes = 0u64;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            bytes += n as u64;
        }
        Ok(FileDigest {
            bytes,
            sha256: hex(&h.finalize()),
        })
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What an ended run's files must be: written into `run.json` when the run
/// ends, checked by [`RunDir::verify`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Integrity {
    pub curve: FileDigest,
    /// Evaluation rows in `curve.csv` (the header not counted).
    pub curve_rows: u64,
    /// `model.safetensors` of a finished run (a diverged run has none).
    #[serde(default)]
    pub weights: Option<FileDigest>,
}

/// A file of a run that does not match its record.
#[derive(Clone, Debug, PartialEq)]
pub struct Damage {
    pub path: PathBuf,
    pub problem: String,
}

/// Why a training loop ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Termination {
    /// Every planned step is done and the final weights are written.
    Finished,
    /// The training loss of `step` was not finite or above
    /// `train.divergence_factor` × the first step's loss (no update was
    /// made), or the validation loss after `step` was not finite.
    Diverged { step: u64 },
    /// Stopped by `TrainOptions::stop_after` before the budget was spent:
    /// the record stays `running` and the checkpoint stays to resume from.
    Stopped,
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
    /// Why the training loop ended (absent while running, and in records
    /// written before this field existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination: Option<Termination>,
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
    /// Checksums of the curve and weights of an ended run (absent while running,
    /// and in records written before this field existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrity: Option<Integrity>,
}

impl RunRecord {
    /// The `step` column an ended run's curve must have: an evaluation every
    /// `eval_interval` steps and at the last step of a finished run; a
    /// diverged run stops before evaluating the step it diverged at. `None`
    /// while running (or for a diverged record without its step).
    pub fn expected_eval_steps(&self) -> Option<Vec<u64>> {
        let ei = self.config.train.eval_interval.max(1) as u64;
        let (last, include_last) = match self.status {
            RunStatus::Running => return None,
            RunStatus::Finished => (self.steps_done, true),
            RunStatus::Diverged => (self.diverged_at_step?.saturating_sub(1), false),
        };
        // A record claiming absurdly many evaluations is itself damaged; do not allocate for it.
        if last / ei > 10_000_000 {
            return None;
        }
        let mut v: Vec<u64> = (1..=last / ei).map(|k| k * ei).collect();
        if include_last && last > 0 && !last.is_multiple_of(ei) {
            v.push(last);
        }
        Some(v)
    }
}

/// Host name of this machine (locks and temporary files name it).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Whether process `pid` exists on this machine.
pub fn pid_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

/// A temporary file on other hosts that has not been touched for this long is an orphan.
pub const STALE_TMP_SECS: u64 = 3600;

/// The sibling temporary file [`write_atomic`] and the checkpoint writer use
/// for `path`: `.NAME.tmp-HOST-PID`, so that a later sweep can tell whether
/// its writer is still alive (see [`clean_orphan_tmps`]).
pub fn tmp_path(path: &Path) -> PathBuf {
    let dir = path.parent().unwrap_or(Path::new("."));
    dir.join(format!(
        ".{}.tmp-{}-{}",
        path.file_name().and_then(|s| s.to_str()).unwrap_or("file"),
        hostname(),
        std::process::id()
    ))
}

/// Removes the temporary files of writers that died before renaming them
/// into place (a SIGKILL mid-write): `.NAME.tmp-HOST-PID` whose process no
/// longer exists on this host, or, from another host, untouched for
/// [`STALE_TMP_SECS`]; also the older `.NAME.tmpPID` form (this host).
/// Files of this process and of live writers are kept. Returns the paths removed.
pub fn clean_orphan_tmps(dir: &Path) -> Vec<PathBuf> {
    clean_orphan_tmps_of(dir, None)
}

/// [`clean_orphan_tmps`] restricted, with `only`, to the temporary files of
/// that one file name (for directories that are not the store's, such as an
/// export's: other programs' files there are left alone).
pub fn clean_orphan_tmps_of(dir: &Path, only: Option<&str>) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return removed;
    };
    let me = std::process::id();
    let host = hostname();
    for e in rd.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with('.') {
            continue;
        }
        let Some(pos) = name.rfind(".tmp") else {
            continue;
        };
        // Ours are `.NAME.tmp…` with a non-empty NAME.
        if pos < 2 || only.is_some_and(|f| name[1..pos] != *f) {
            continue;
        }
        let tail = &name[pos + 4..];
        let (writer_host, pid) = if let Some(rest) = tail.strip_prefix('-') {
            match rest.rsplit_once('-') {
                Some((h, p)) => (h.to_string(), p.parse::<u32>().ok()),
                None => continue,
            }
        } else {
            (host.clone(), tail.parse::<u32>().ok())
        };
        let Some(pid) = pid else { continue };
        let orphan = if writer_host == host {
            pid != me && !pid_alive(pid)
        } else {
            e.metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| std::time::SystemTime::now().duration_since(m).ok())
                .is_some_and(|age| age.as_secs() >= STALE_TMP_SECS)
        };
        if orphan && std::fs::remove_file(e.path()).is_ok() {
            removed.push(e.path());
        }
    }
    removed
}

/// Write `bytes` to `path` atomically: a sibling temporary file, fsync, rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_path(path);
    let io = |what: &str, e| TrainError::Io {
        path: path.to_path_buf(),
        what: what.to_string(),
        err: e,
    };
    let mut f = std::fs::File::create(&tmp).map_err(|e| io("creating a temporary file for", e))?;
    if crate::fault::at("write-half") {
        let _ = f.write_all(&bytes[..bytes.len() / 2]);
        let _ = f.sync_all();
        crate::fault::die();
    }
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
        let json =
            serde_json::to_vec_pretty(rec).map_err(|e| TrainError::Internal(e.to_string()))?;
        write_atomic(&self.path.join(RUN_JSON), &json)
    }

    /// Write `curve.csv`; returns its digest.
    pub fn write_curve(&self, rows: &[EvalRow]) -> Result<FileDigest> {
        let mut s = String::with_capacity(64 * (rows.len() + 1));
        s.push_str(CURVE_HEADER);
        s.push('\n');
        for r in rows {
            s.push_str(&format!(
                "{},{},{:e},{},{},{:e}\n",
                r.step, r.tokens, r.flops, r.train_loss, r.val_loss, r.lr
            ));
        }
        write_atomic(&self.path.join(CURVE_CSV), s.as_bytes())?;
        Ok(FileDigest::of_bytes(s.as_bytes()))
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
        let bytes = std::fs::read(&p).map_err(|e| TrainError::Io {
            path: p.clone(),
            what: "reading the curve".into(),
            err: e,
        })?;
        parse_curve(&p, &bytes)
    }

    /// Checks an ended run's files against its record: `curve.csv` exists, is
    /// UTF-8, has the recorded length, sha256 and row count and exactly the
    /// evaluation steps the run implies; a finished run's `model.safetensors`
    /// exists with the recorded length (its sha256 too with `hash_weights`).
    /// Returns the curve. A running record is checked only for a readable curve.
    pub fn verify(
        &self,
        rec: &RunRecord,
        hash_weights: bool,
    ) -> std::result::Result<Vec<EvalRow>, Damage> {
        let cp = self.path.join(CURVE_CSV);
        let damage = |path: &Path, problem: String| Damage {
            path: path.to_path_buf(),
            problem,
        };
        let bytes = match std::fs::read(&cp) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if rec.status == RunStatus::Running {
                    return Ok(Vec::new());
                }
                return Err(damage(
                    &cp,
                    format!(
                        "the run is {} but its curve is missing",
                        status_word(rec.status)
                    ),
                ));
            }
            Err(e) => return Err(damage(&cp, format!("cannot be read: {e}"))),
        };
        if let (Some(i), true) = (&rec.integrity, rec.status != RunStatus::Running) {
            if bytes.len() as u64 != i.curve.bytes {
                return Err(damage(
                    &cp,
                    format!(
                        "has {} bytes, its record says {} (cut or changed after the run ended)",
                        bytes.len(),
                        i.curve.bytes
                    ),
                ));
            }
            if FileDigest::of_bytes(&bytes).sha256 != i.curve.sha256 {
                return Err(damage(
                    &cp,
                    "does not match the sha256 in run.json (changed after the run ended)".into(),
                ));
            }
        }
        let rows = parse_curve(&cp, &bytes).map_err(|e| match e {
            TrainError::CorruptRecord { problem, .. } => damage(&cp, problem),
            other => damage(&cp, other.to_string()),
        })?;
        if let Some(i) = &rec.integrity {
            if rec.status != RunStatus::Running && rows.len() as u64 != i.curve_rows {
                return Err(damage(
                    &cp,
                    format!("has {} rows, its record says {}", rows.len(), i.curve_rows),
                ));
            }
        }
        if let Some(want) = rec.expected_eval_steps() {
            let got: Vec<u64> = rows.iter().map(|r| r.step).collect();
            if got != want {
                let ei = rec.config.train.eval_interval;
                return Err(damage(
                    &cp,
                    format!(
                        "has {} evaluation rows (last at step {}), but a run {} after {} steps with an evaluation every {ei} has {} (last at step {})",
                        got.len(),
                        got.last().map_or("-".into(), |s| s.to_string()),
                        status_word(rec.status),
                        if rec.status == RunStatus::Diverged { rec.diverged_at_step.unwrap_or(0) } else { rec.steps_done },
                        want.len(),
                        want.last().map_or("-".into(), |s| s.to_string()),
                    ),
                ));
            }
        }
        if rec.status == RunStatus::Finished {
            let wp = self.path.join(WEIGHTS);
            let meta = std::fs::metadata(&wp).map_err(|_| {
                damage(
                    &wp,
                    "the run is finished but its weights are missing".into(),
                )
            })?;
            if let Some(w) = rec.integrity.as_ref().and_then(|i| i.weights.as_ref()) {
                if meta.len() != w.bytes {
                    return Err(damage(
                        &wp,
                        format!(
                            "has {} bytes, its record says {} (cut or changed)",
                            meta.len(),
                            w.bytes
                        ),
                    ));
                }
                if hash_weights {
                    let d = FileDigest::of_file(&wp)
                        .map_err(|e| damage(&wp, format!("cannot be read: {e}")))?;
                    if d.sha256 != w.sha256 {
                        return Err(damage(
                            &wp,
                            "does not match the sha256 in run.json (changed after the run ended)"
                                .into(),
                        ));
                    }
                }
            }
        }
        Ok(rows)
    }
}

fn status_word(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Running => "running",
        RunStatus::Finished => "finished",
        RunStatus::Diverged => "diverged",
    }
}

/// Parse the bytes of a `curve.csv` (UTF-8, the header, six numeric columns).
pub fn parse_curve(p: &Path, bytes: &[u8]) -> Result<Vec<EvalRow>> {
    let text = std::str::from_utf8(bytes).map_err(|e| TrainError::CorruptRecord {
        path: p.to_path_buf(),
        problem: format!("not UTF-8 text ({e})"),
        fix: "delete the run directory so the run is trained again".into(),
    })?;
    let corrupt = |line: usize, problem: String| TrainError::CorruptRecord {
        path: p.to_path_buf(),
        problem: format!("line {line}: {problem}"),
        fix: "delete the run directory so the run is trained again".into(),
    };
    let mut lines = text.lines();
    match lines.next() {
        Some(h) if h.trim() == CURVE_HEADER => {}
        other => {
            return Err(corrupt(
                1,
                format!("expected header `{CURVE_HEADER}`, found {other:?}"),
            ))
        }
    }
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != 6 {
            return Err(corrupt(
                i + 2,
                format!("expected 6 fields, found {}", f.len()),
            ));
        }
        let num = |j: usize| -> Result<f64> {
            f[j].trim().parse::<f64>().map_err(|_| {
                corrupt(
                    i + 2,
                    format!("column {} is not a number: `{}`", j + 1, f[j]),
                )
            })
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
