//! The run store: one directory per run id, status read from disk.
//!
//! ```text
//! STORE/
//!   study.toml            the study definition, as given
//!   specs.json            the expanded run specs (id, groups, width, resolved config)
//!   runs/<id>/run.json    run record (status running | finished | diverged)
//!            curve.csv    evaluation curve
//!            checkpoint.safetensors   while the run is unfinished (see `checkpoint`)
//!            model.safetensors        final weights
//!            lock         `host pid` of the process training it; touched at every evaluation
//!            error.txt    the error of the last failed attempt
//! ```
//!
//! Every file is written atomically, so a SIGKILL at any point leaves either
//! the old or the new version. A finished or diverged run is never trained
//! again; an interrupted one (a `running` record or a checkpoint, and no live
//! lock) resumes from its checkpoint. A lock is live when its process exists
//! (same host) or, for a lock written by another host, when it was touched in
//! the last [`STALE_LOCK_SECS`] seconds.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use algoprog_data::Dataset;

use crate::checkpoint::CHECKPOINT;
use crate::error::{Result, TrainError};
use crate::record::{write_atomic, EvalRow, RunDir, RunRecord, RunStatus};
use crate::study::{RunSpec, Study};
use crate::trainer::{train_on_with, Observer, TrainOptions, TrainOutcome};

pub const STUDY_TOML: &str = "study.toml";
pub const SPECS_JSON: &str = "specs.json";
pub const LOCK: &str = "lock";
pub const ERROR_TXT: &str = "error.txt";
/// A lock from another host not touched for this long is considered dead.
pub const STALE_LOCK_SECS: u64 = 3600;

/// The state of one run, from its directory.
#[derive(Clone, Debug, PartialEq)]
pub enum RunState {
    /// No directory or no record yet.
    Pending,
    /// A live process holds the lock.
    Running { steps_done: u64 },
    /// Started, not finished, nobody training it: resumes from its checkpoint.
    Interrupted { steps_done: u64, checkpoint: bool },
    /// The last attempt ended with an error (see `error.txt`).
    Failed { error: String },
    Finished,
    Diverged { at_step: u64 },
    /// `run.json` or `curve.csv` cannot be read back.
    Corrupt { path: PathBuf, problem: String },
}

impl RunState {
    pub fn label(&self) -> &'static str {
        match self {
            RunState::Pending => "pending",
            RunState::Running { .. } => "running",
            RunState::Interrupted { .. } => "interrupted",
            RunState::Failed { .. } => "failed",
            RunState::Finished => "done",
            RunState::Diverged { .. } => "diverged",
            RunState::Corrupt { .. } => "corrupt",
        }
    }
    /// Finished or diverged: never trained again.
    pub fn is_terminal(&self) -> bool {
        matches!(self, RunState::Finished | RunState::Diverged { .. })
    }
}

/// A run store on disk.
#[derive(Clone, Debug)]
pub struct Store {
    pub root: PathBuf,
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> TrainError {
    TrainError::Io {
        path: path.to_path_buf(),
        what: what.to_string(),
        err: e,
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".into())
}

fn pid_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

impl Store {
    /// Create (or reopen) a store for `study`: writes `study.toml` and `specs.json`.
    /// Reopening with a different study is refused unless every existing spec is kept.
    pub fn init(root: impl Into<PathBuf>, study_text: &str, study: &Study) -> Result<(Self, Vec<RunSpec>)> {
        let root = root.into();
        std::fs::create_dir_all(root.join("runs")).map_err(|e| io_err(&root, "creating the store", e))?;
        let store = Store { root };
        let specs = study.expand()?;
        if store.root.join(SPECS_JSON).exists() {
            let old = store.specs()?;
            let missing: Vec<&str> = old.iter().filter(|o| !specs.iter().any(|s| s.id == o.id)).map(|o| o.id.as_str()).collect();
            if !missing.is_empty() {
                return Err(TrainError::config(
                    "study",
                    format!(
                        "store `{}` holds another study: {} of its runs ({}…) are not in this one",
                        store.root.display(),
                        missing.len(),
                        missing[0]
                    ),
                    "use a new --store directory for a changed study (or add runs without removing any)".into(),
                ));
            }
        }
        write_atomic(&store.root.join(STUDY_TOML), study_text.as_bytes())?;
        let json = serde_json::to_vec_pretty(&specs).map_err(|e| TrainError::Internal(e.to_string()))?;
        write_atomic(&store.root.join(SPECS_JSON), &json)?;
        Ok((store, specs))
    }

    /// Open an existing store.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        if !root.join(SPECS_JSON).exists() {
            return Err(TrainError::Io {
                path: root.join(SPECS_JSON),
                what: "opening the run store (create it with `algoprog sweep run --study FILE --store DIR`)".into(),
                err: std::io::Error::new(std::io::ErrorKind::NotFound, "no specs.json"),
            });
        }
        Ok(Store { root })
    }

    pub fn specs(&self) -> Result<Vec<RunSpec>> {
        let p = self.root.join(SPECS_JSON);
        let text = std::fs::read_to_string(&p).map_err(|e| io_err(&p, "reading the run specs", e))?;
        serde_json::from_str(&text).map_err(|e| TrainError::CorruptRecord {
            path: p,
            problem: e.to_string(),
            fix: "run `algoprog sweep run --study STUDY.toml --store DIR` again to rewrite it".into(),
        })
    }

    pub fn spec(&self, id: &str) -> Result<RunSpec> {
        let specs = self.specs()?;
        specs.into_iter().find(|s| s.id == id).ok_or_else(|| {
            TrainError::config(
                "--spec",
                format!("no run `{id}` in store `{}`", self.root.display()),
                "list the ids with `algoprog sweep status --store DIR --all`".into(),
            )
        })
    }

    pub fn run_dir(&self, id: &str) -> RunDir {
        RunDir::open(self.root.join("runs").join(id))
    }

    /// The state of run `id` from its directory.
    pub fn state(&self, id: &str) -> RunState {
        let dir = self.run_dir(id);
        let has_ckpt = dir.path.join(CHECKPOINT).exists();
        let record = if dir.path.join(crate::record::RUN_JSON).exists() {
            match dir.read_record() {
                Ok(r) => Some(r),
                Err(TrainError::CorruptRecord { path, problem, .. }) => return RunState::Corrupt { path, problem },
                Err(e) => {
                    return RunState::Corrupt {
                        path: dir.path.join(crate::record::RUN_JSON),
                        problem: e.to_string(),
                    }
                }
            }
        } else {
            None
        };
        if let Some(r) = &record {
            if r.status != RunStatus::Running || dir.path.join(crate::record::CURVE_CSV).exists() {
                if let Err(TrainError::CorruptRecord { path, problem, .. }) = dir.read_curve() {
                    return RunState::Corrupt { path, problem };
                }
            }
            match r.status {
                RunStatus::Finished => return RunState::Finished,
                RunStatus::Diverged => return RunState::Diverged { at_step: r.diverged_at_step.unwrap_or(0) },
                RunStatus::Running => {}
            }
        }
        let steps_done = record.as_ref().map_or(0, |r| r.steps_done);
        if self.lock_live(id) {
            return RunState::Running { steps_done };
        }
        if let Ok(e) = std::fs::read_to_string(dir.path.join(ERROR_TXT)) {
            return RunState::Failed { error: e.trim().to_string() };
        }
        if record.is_some() || has_ckpt {
            RunState::Interrupted { steps_done, checkpoint: has_ckpt }
        } else {
            RunState::Pending
        }
    }

    fn lock_live(&self, id: &str) -> bool {
        let p = self.run_dir(id).path.join(LOCK);
        let Ok(text) = std::fs::read_to_string(&p) else { return false };
        let mut it = text.split_whitespace();
        let (Some(host), Some(pid)) = (it.next(), it.next().and_then(|p| p.parse::<u32>().ok())) else {
            return false;
        };
        if host == hostname() {
            pid_alive(pid)
        } else {
            let age = std::fs::metadata(&p)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .unwrap_or(Duration::MAX);
            age < Duration::from_secs(STALE_LOCK_SECS)
        }
    }

    /// Take the lock of run `id` (creating its directory). `false` if a live process holds it.
    fn claim(&self, id: &str) -> Result<bool> {
        let dir = self.run_dir(id);
        std::fs::create_dir_all(&dir.path).map_err(|e| io_err(&dir.path, "creating the run directory", e))?;
        let p = dir.path.join(LOCK);
        for _ in 0..2 {
            match std::fs::OpenOptions::new().write(true).create_new(true).open(&p) {
                Ok(mut f) => {
                    use std::io::Write;
                    write!(f, "{} {}", hostname(), std::process::id()).map_err(|e| io_err(&p, "writing the lock", e))?;
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if self.lock_live(id) {
                        return Ok(false);
                    }
                    // A dead holder (killed): take over.
                    let _ = std::fs::remove_file(&p);
                }
                Err(e) => return Err(io_err(&p, "creating the lock", e)),
            }
        }
        Ok(false)
    }

    /// Removes the lock of run `id` if its holder is dead: a process killed
    /// after writing a run's final record but before releasing the lock
    /// leaves one behind. A live holder's lock is kept.
    fn clear_dead_lock(&self, id: &str) {
        let p = self.run_dir(id).path.join(LOCK);
        if p.exists() && !self.lock_live(id) {
            let _ = std::fs::remove_file(&p);
        }
    }

    fn release(&self, id: &str) {
        let _ = std::fs::remove_file(self.run_dir(id).path.join(LOCK));
    }

    /// Train (or resume) run `spec` on `data`, unless it is finished, diverged
    /// or held by a live process. Returns what happened.
    pub fn execute(&self, spec: &RunSpec, data: &Dataset, observer: &mut dyn Observer) -> Result<Executed> {
        match self.state(&spec.id) {
            RunState::Finished | RunState::Diverged { .. } => {
                self.clear_dead_lock(&spec.id);
                return Ok(Executed::AlreadyDone);
            }
            RunState::Corrupt { path, problem } => {
                return Err(TrainError::CorruptRecord {
                    path,
                    problem,
                    fix: format!("delete {} so the run is trained again", self.run_dir(&spec.id).path.display()),
                })
            }
            _ => {}
        }
        if !self.claim(&spec.id)? {
            return Ok(Executed::HeldElsewhere);
        }
        let dir = self.run_dir(&spec.id);
        let _ = std::fs::remove_file(dir.path.join(ERROR_TXT));
        let mut heartbeat = Heartbeat {
            lock: dir.path.join(LOCK),
            inner: observer,
        };
        let result = train_on_with(&spec.config, data, &dir, &mut heartbeat, TrainOptions::resumable());
        match &result {
            Ok(_) => {}
            Err(e) => {
                let _ = write_atomic(&dir.path.join(ERROR_TXT), e.to_string().as_bytes());
            }
        }
        self.release(&spec.id);
        result.map(|o| Executed::Trained(Box::new(o)))
    }

    /// Counts and details of every run's state, in spec order.
    pub fn status(&self) -> Result<Vec<(RunSpec, RunState)>> {
        Ok(self.specs()?.into_iter().map(|s| {
            let st = self.state(&s.id);
            (s, st)
        }).collect())
    }

    /// Records and curves of runs that have them (finished, diverged or partial).
    pub fn load_runs(&self) -> Result<Vec<(RunSpec, RunRecord, Vec<EvalRow>)>> {
        let mut out = Vec::new();
        for s in self.specs()? {
            let dir = self.run_dir(&s.id);
            if !dir.path.join(crate::record::RUN_JSON).exists() {
                continue;
            }
            let r = dir.read_record()?;
            let c = if dir.path.join(crate::record::CURVE_CSV).exists() { dir.read_curve()? } else { Vec::new() };
            out.push((s, r, c));
        }
        Ok(out)
    }

    /// One tidy CSV: a row per evaluation point with the run's config columns.
    pub fn export_csv(&self, out: &Path) -> Result<usize> {
        let mut s = String::from(
            "run_id,name,family,groups,status,diverged_at_step,seed,width,n_layers,lr,optimizer,schedule,total_params,non_embedding_params,embedding_params,planned_steps,token_budget,tokens_per_step,step,tokens,flops,train_loss,val_loss,eval_lr\n",
        );
        let mut n = 0;
        for (spec, r, curve) in self.load_runs()? {
            let groups: Vec<&str> = spec.groups.iter().map(|(g, _)| g.as_str()).collect();
            let n_layers = match &r.config.model {
                algoprog_models::ModelConfig::Transformer(t) => t.depth(),
                algoprog_models::ModelConfig::Lstm(l) => l.n_layers,
            };
            for row in &curve {
                s.push_str(&format!(
                    "{},{},{},{},{},{},{},{},{},{:e},{},{},{},{},{},{},{},{},{},{},{:e},{},{},{:e}\n",
                    r.run_id,
                    r.name,
                    r.family,
                    groups.join(";"),
                    match r.status {
                        RunStatus::Running => "running",
                        RunStatus::Finished => "finished",
                        RunStatus::Diverged => "diverged",
                    },
                    r.diverged_at_step.map(|x| x.to_string()).unwrap_or_default(),
                    r.seed,
                    r.width,
                    n_layers,
                    r.lr,
                    crate::suite::serde_label(&r.config.train.optimizer),
                    crate::suite::serde_label(&r.config.train.schedule),
                    r.total_params,
                    r.params.non_embedding,
                    r.params.embedding,
                    r.planned_steps,
                    r.token_budget,
                    r.flops.tokens_per_step,
                    row.step,
                    row.tokens,
                    row.flops,
                    row.train_loss,
                    row.val_loss,
                    row.lr
                ));
                n += 1;
            }
        }
        write_atomic(out, s.as_bytes())?;
        Ok(n)
    }
}

/// What [`Store::execute`] did.
#[derive(Debug)]
pub enum Executed {
    Trained(Box<TrainOutcome>),
    AlreadyDone,
    HeldElsewhere,
}

/// Touches the lock at every evaluation (a heartbeat for other hosts), then forwards.
struct Heartbeat<'a> {
    lock: PathBuf,
    inner: &'a mut dyn Observer,
}

impl Observer for Heartbeat<'_> {
    fn on_start(&mut self, r: &RunRecord) {
        self.inner.on_start(r)
    }
    fn on_step(&mut self, s: &crate::trainer::StepInfo) {
        self.inner.on_step(s)
    }
    fn on_eval(&mut self, row: &EvalRow) {
        if let Ok(f) = std::fs::OpenOptions::new().append(true).open(&self.lock) {
            let _ = f.set_modified(SystemTime::now());
        }
        self.inner.on_eval(row)
    }
    fn on_finish(&mut self, r: &RunRecord) {
        self.inner.on_finish(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_holders_lock_is_cleared_and_a_live_one_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store { root: tmp.path().to_path_buf() };
        let dir = store.run_dir("r1").path;
        std::fs::create_dir_all(&dir).unwrap();
        // pid_max on Linux is at most 2^22, so this pid never exists
        std::fs::write(dir.join(LOCK), format!("{} {}", hostname(), 4_294_000_000u32)).unwrap();
        assert!(!store.lock_live("r1"));
        store.clear_dead_lock("r1");
        assert!(!dir.join(LOCK).exists(), "dead lock kept");
        std::fs::write(dir.join(LOCK), format!("{} {}", hostname(), std::process::id())).unwrap();
        store.clear_dead_lock("r1");
        assert!(dir.join(LOCK).exists(), "live lock removed");
    }
}
