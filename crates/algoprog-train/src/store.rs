//! The run store: one directory per run id, status read from disk.
//!
//! ```text
//! STORE/
//!   study.toml            the study definition, as given
//!   specs.json            the expanded run specs (id, groups, width, resolved config);
//!                         grows when a tune ends and the groups taking its rates are expanded
//!   tuned_lr.json         the tuned per-family learning-rate rules, once the tune has ended
//!   runs/<id>/run.json    run record (status running | finished | diverged; checksums once ended)
//!            curve.csv    evaluation curve
//!            checkpoint.safetensors   while the run is unfinished (see `checkpoint`)
//!            model.safetensors        final weights
//!            lock, lock.N `host pid` of the process training it; touched at every evaluation
//!            attempts.log one line per training attempt (start or resume), appended under the lock
//!            error.txt    the error of the last failed attempt
//! ```
//!
//! Every file is written atomically, so a SIGKILL at any point leaves either
//! the old or the new version; the temporary files such a kill leaves behind
//! (`.NAME.tmp-HOST-PID`) are removed by the next sweep that touches the run.
//! A finished or diverged run is never trained again, and is counted only
//! while its files match the checksums in its record (see
//! [`RunDir::verify`]): a damaged one is reported as `corrupt`, with its path
//! and the fix, by `sweep status`, by every loader and by `sweep export`.
//! An interrupted run (a `running` record or a checkpoint, and no live lock)
//! resumes from its checkpoint, which is checked against the run first.
//!
//! ## Locks
//!
//! A run is claimed by creating a lock file that names the claimer
//! (`host pid`), atomically (a hard link of a complete temporary file, so the
//! file is never seen empty). The lock files form generations: `lock`, then
//! `lock.1`, `lock.2`, …; the highest generation present is the lock. A lock
//! is live while its process exists (same host) or, for another host, while
//! it was touched in the last [`STALE_LOCK_SECS`] seconds. A dead (or
//! released) lock is taken over by creating the next generation, which, like
//! the first claim, succeeds for exactly one process (`link` fails when the
//! name exists); the winner then checks that no newer generation appeared,
//! removes the superseded files, and reads the run's state again *under* the
//! claim, so a run another process ended meanwhile is not trained twice. A
//! lock that cannot be created (a read-only run directory) is an error naming
//! its path, never "held by another process".

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use algoprog_data::Dataset;

use crate::checkpoint::CHECKPOINT;
use crate::error::{Result, TrainError};
use crate::record::{
    clean_orphan_tmps, hostname, pid_alive, tmp_path, write_atomic, EvalRow, RunDir, RunRecord,
    RunStatus,
};
use crate::study::{tuned_rates, RunSpec, Study, TuneOutcome, TuneStatus};
use crate::trainer::{train_on_with, Observer, TrainOptions, TrainOutcome};

pub const STUDY_TOML: &str = "study.toml";
pub const SPECS_JSON: &str = "specs.json";
/// The tuned learning-rate rules of a study in stages ([`crate::study::TunedRates`]).
pub const TUNED_JSON: &str = "tuned_lr.json";
/// The first generation of a run's lock; later ones are `lock.1`, `lock.2`, ….
pub const LOCK: &str = "lock";
pub const ERROR_TXT: &str = "error.txt";
/// One line per training attempt of a run: `TIME HOST PID start|resume`.
pub const ATTEMPTS_LOG: &str = "attempts.log";
/// A lock from another host not touched for this long is considered dead.
pub const STALE_LOCK_SECS: u64 = 3600;
/// A lock file still empty (being created by a writer without hard links) after this long is dead.
const EMPTY_LOCK_GRACE_SECS: u64 = 60;

/// The state of one run, from its directory.
#[derive(Clone, Debug, PartialEq)]
pub enum RunState {
    /// No directory or no record yet.
    Pending,
    /// A live process holds the lock.
    Running {
        steps_done: u64,
    },
    /// Started, not finished, nobody training it: resumes from its checkpoint.
    Interrupted {
        steps_done: u64,
        checkpoint: bool,
    },
    /// The last attempt ended with an error (see `error.txt`).
    Failed {
        error: String,
    },
    Finished,
    Diverged {
        at_step: u64,
    },
    /// `run.json` cannot be read back, or an ended run's curve or weights do
    /// not match its record (missing, cut, changed, not UTF-8).
    Corrupt {
        path: PathBuf,
        problem: String,
    },
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

/// The file name of lock generation `gen`.
fn lock_name(gen: u64) -> String {
    if gen == 0 {
        LOCK.to_string()
    } else {
        format!("{LOCK}.{gen}")
    }
}

/// The lock files of a run directory, by generation.
fn lock_files(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name();
            let name = name.to_str()?;
            let gen = if name == LOCK {
                0
            } else {
                name.strip_prefix("lock.")?.parse::<u64>().ok()?
            };
            Some((gen, e.path()))
        })
        .collect();
    v.sort();
    v
}

/// Who a lock file says holds the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Holder {
    Live,
    Dead,
    Released,
}

fn age(path: &Path) -> Duration {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .unwrap_or(Duration::MAX)
}

fn holder(path: &Path) -> Holder {
    let Ok(text) = std::fs::read_to_string(path) else {
        // Removed meanwhile: nobody holds it through this file.
        return Holder::Dead;
    };
    let mut it = text.split_whitespace();
    let first = it.next();
    if first == Some("released") {
        return Holder::Released;
    }
    let (Some(host), Some(pid)) = (first, it.next().and_then(|p| p.parse::<u32>().ok())) else {
        return if age(path) < Duration::from_secs(EMPTY_LOCK_GRACE_SECS) {
            Holder::Live
        } else {
            Holder::Dead
        };
    };
    let live = if host == hostname() {
        pid_alive(pid)
    } else {
        age(path) < Duration::from_secs(STALE_LOCK_SECS)
    };
    if live {
        Holder::Live
    } else {
        Holder::Dead
    }
}

/// Creates `path` holding `text`, failing with `AlreadyExists` if it exists:
/// a hard link of a complete temporary file, so no reader sees it empty
/// (falls back to an exclusive create where hard links are not supported).
fn create_with(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, text)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(e),
        Err(_) => {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)?;
            f.write_all(text.as_bytes())
        }
    }
}

/// A run claimed by this process: the lock generation it created.
#[derive(Debug)]
struct Claim {
    lock: PathBuf,
}

impl Store {
    /// Create (or reopen) a store for `study`: writes `study.toml` and `specs.json`.
    /// Reopening with a different study is refused unless every existing spec is kept.
    /// Temporary files left by killed writers in the store's top directory are removed.
    pub fn init(
        root: impl Into<PathBuf>,
        study_text: &str,
        study: &Study,
    ) -> Result<(Self, Vec<RunSpec>)> {
        let root = root.into();
        // A study that does not expand makes no store.
        study.expand()?;
        std::fs::create_dir_all(root.join("runs"))
            .map_err(|e| io_err(&root, "creating the store", e))?;
        let store = Store { root };
        clean_orphan_tmps(&store.root);
        let (mut specs, waiting) = store.staged_specs(study)?;
        if store.root.join(SPECS_JSON).exists() {
            let old = match store.specs() {
                Ok(old) => old,
                // A damaged specs.json is rebuilt from the store's own study.toml (the study the
                // store was made for), so the check below still compares like with like.
                Err(TrainError::CorruptRecord { path, problem, .. }) => store.specs_from_own_study().map_err(|e| TrainError::CorruptRecord {
                    path: path.clone(),
                    problem: format!("{problem}; and the store's {STUDY_TOML} cannot rebuild it: {e}"),
                    fix: format!(
                        "move {} aside and run `algoprog sweep run --study STUDY.toml --store {}` with the store's study",
                        path.display(),
                        store.root.display()
                    ),
                })?,
                Err(e) => return Err(e),
            };
            // Runs of groups that take tuned rates stay listed while the tune
            // cannot give the rates (a tune run trained again): they are
            // derived again once it has.
            let deferred = if waiting {
                study.tuned_group_names()
            } else {
                Vec::new()
            };
            for o in &old {
                let only_deferred =
                    !o.groups.is_empty() && o.groups.iter().all(|(g, _)| deferred.contains(g));
                if only_deferred && !specs.iter().any(|s| s.id == o.id) {
                    specs.push(o.clone());
                }
            }
            let missing: Vec<&str> = old
                .iter()
                .filter(|o| !specs.iter().any(|s| s.id == o.id))
                .map(|o| o.id.as_str())
                .collect();
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
        let json =
            serde_json::to_vec_pretty(&specs).map_err(|e| TrainError::Internal(e.to_string()))?;
        write_atomic(&store.root.join(SPECS_JSON), &json)?;
        Ok((store, specs))
    }

    /// The specs of the study in the store's own `study.toml`.
    fn specs_from_own_study(&self) -> Result<Vec<RunSpec>> {
        Ok(self
            .staged_specs(&Study::from_file(&self.root.join(STUDY_TOML))?)?
            .0)
    }

    /// How the study's tune runs in this store ended, and so whether the
    /// groups that take tuned rates can be expanded ([`tuned_rates`]).
    pub fn tune_status(&self, study: &Study) -> Result<TuneStatus> {
        let first = study.expand()?;
        let needed = study.needed_tunes();
        let outcomes: Vec<(RunSpec, TuneOutcome)> = first
            .into_iter()
            .filter(|s| {
                s.groups
                    .iter()
                    .any(|(g, r)| *r == crate::study::Role::Tune && needed.contains(g))
            })
            .map(|s| {
                let o = match self.state(&s.id) {
                    RunState::Finished => match self.run_dir(&s.id).read_record() {
                        Ok(r) => TuneOutcome::Finished(r.final_val_loss.unwrap_or(f64::NAN)),
                        Err(e) => TuneOutcome::NotEnded(format!("corrupt: {e}")),
                    },
                    RunState::Diverged { .. } => TuneOutcome::Diverged,
                    other => TuneOutcome::NotEnded(other.label().to_string()),
                };
                (s, o)
            })
            .collect();
        tuned_rates(study, &outcomes)
    }

    /// The study's specs as far as this store allows: the first stage, and,
    /// once every needed tune run has ended, the groups that take tuned rates
    /// (the rates are then written to `tuned_lr.json`); and whether the
    /// tuned groups still wait for the tune.
    fn staged_specs(&self, study: &Study) -> Result<(Vec<RunSpec>, bool)> {
        if !study.has_tuned_groups() {
            return Ok((study.expand()?, false));
        }
        match self.tune_status(study)? {
            TuneStatus::Ready(rates) => {
                let json = serde_json::to_vec_pretty(&rates)
                    .map_err(|e| TrainError::Internal(e.to_string()))?;
                write_atomic(&self.root.join(TUNED_JSON), &json)?;
                Ok((study.expand_with(&rates)?, false))
            }
            TuneStatus::Waiting(_) => Ok((study.expand()?, true)),
        }
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
        let text =
            std::fs::read_to_string(&p).map_err(|e| io_err(&p, "reading the run specs", e))?;
        let fix = format!(
            "rebuild it from the store's own study: `algoprog sweep run --study {} --store {}`",
            self.root.join(STUDY_TOML).display(),
            self.root.display()
        );
        let specs: Vec<RunSpec> =
            serde_json::from_str(&text).map_err(|e| TrainError::CorruptRecord {
                path: p.clone(),
                problem: e.to_string(),
                fix: fix.clone(),
            })?;
        // Ids become directory names: only the hex ids `RunConfig::run_id` makes are accepted.
        if let Some(bad) = specs.iter().find(|s| {
            s.id.is_empty() || s.id.len() > 64 || !s.id.chars().all(|c| c.is_ascii_alphanumeric())
        }) {
            return Err(TrainError::CorruptRecord {
                path: p,
                problem: format!("run id {:?} is not a run id (letters and digits)", bad.id),
                fix,
            });
        }
        Ok(specs)
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

    /// How to fix a damaged run `id`.
    pub fn damage_fix(&self, id: &str) -> String {
        format!(
            "delete {} (`rm -r` it); the next `algoprog sweep run` on this store trains the run again",
            self.run_dir(id).path.display()
        )
    }

    /// The state of run `id` from its directory. An ended run's curve and
    /// weights are checked against its record ([`RunDir::verify`]).
    pub fn state(&self, id: &str) -> RunState {
        self.state_checked(id, false)
    }

    /// [`Store::state`]; with `hash_weights`, a finished run's weights are
    /// also hashed and compared with the sha256 in its record (their length
    /// is always compared).
    pub fn state_checked(&self, id: &str, hash_weights: bool) -> RunState {
        let dir = self.run_dir(id);
        let has_ckpt = dir.path.join(CHECKPOINT).exists();
        let record = if dir.path.join(crate::record::RUN_JSON).exists() {
            match dir.read_record() {
                Ok(r) => Some(r),
                Err(TrainError::CorruptRecord { path, problem, .. }) => {
                    return RunState::Corrupt { path, problem }
                }
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
            if r.status != RunStatus::Running {
                if let Err(d) = dir.verify(r, hash_weights) {
                    return RunState::Corrupt {
                        path: d.path,
                        problem: d.problem,
                    };
                }
            }
            match r.status {
                RunStatus::Finished => return RunState::Finished,
                RunStatus::Diverged => {
                    return RunState::Diverged {
                        at_step: r.diverged_at_step.unwrap_or(0),
                    }
                }
                RunStatus::Running => {}
            }
        }
        let steps_done = record.as_ref().map_or(0, |r| r.steps_done);
        if self.lock_live(id) {
            return RunState::Running { steps_done };
        }
        if let Ok(e) = std::fs::read_to_string(dir.path.join(ERROR_TXT)) {
            return RunState::Failed {
                error: e.trim().to_string(),
            };
        }
        if record.is_some() || has_ckpt {
            RunState::Interrupted {
                steps_done,
                checkpoint: has_ckpt,
            }
        } else {
            RunState::Pending
        }
    }

    /// Whether a live process holds run `id` (its newest lock generation).
    fn lock_live(&self, id: &str) -> bool {
        lock_files(&self.run_dir(id).path)
            .last()
            .is_some_and(|(_, p)| holder(p) == Holder::Live)
    }

    /// Claim run `id` (creating its directory): `None` if a live process holds it.
    fn claim(&self, id: &str) -> Result<Option<Claim>> {
        let dir = self.run_dir(id).path;
        std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, "creating the run directory", e))?;
        let me = format!("{} {}\n", hostname(), std::process::id());
        for _ in 0..16 {
            let locks = lock_files(&dir);
            let gen = match locks.last() {
                None => 0,
                Some((g, p)) => match holder(p) {
                    Holder::Live => return Ok(None),
                    Holder::Dead | Holder::Released => g + 1,
                },
            };
            let path = dir.join(lock_name(gen));
            match create_with(&path, &me) {
                Ok(()) => {}
                // Another process took this generation first: look again.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(io_err(
                        &path,
                        "creating the lock of the run (make the run directory writable, or delete a lock left by a dead process)",
                        e,
                    ))
                }
            }
            if lock_files(&dir).iter().any(|(g, _)| *g > gen) {
                // A newer generation appeared (our view of the locks was old): it decides.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            for (g, p) in &locks {
                if *g < gen {
                    let _ = std::fs::remove_file(p);
                }
            }
            return Ok(Some(Claim { lock: path }));
        }
        Ok(None)
    }

    /// Gives up a claim. An ended run needs no lock: all its lock files go.
    /// Otherwise the lock is marked released (kept, so the generations never
    /// go back and a process with an old view of them cannot claim twice).
    fn release(&self, id: &str, claim: Claim, ended: bool) {
        if ended {
            for (_, p) in lock_files(&self.run_dir(id).path) {
                let _ = std::fs::remove_file(p);
            }
        } else if write_atomic(
            &claim.lock,
            format!("released {} {}\n", hostname(), std::process::id()).as_bytes(),
        )
        .is_err()
        {
            let _ = std::fs::remove_file(&claim.lock);
        }
    }

    /// Tidies an ended run: lock files of dead or released holders, a
    /// checkpoint left by a process killed between the final record and its
    /// removal, and orphaned temporary files. A live holder's lock is kept.
    fn tidy_ended(&self, id: &str) {
        let dir = self.run_dir(id).path;
        let locks = lock_files(&dir);
        if locks.iter().any(|(_, p)| holder(p) == Holder::Live) {
            return;
        }
        for (_, p) in locks {
            let _ = std::fs::remove_file(p);
        }
        let _ = std::fs::remove_file(dir.join(CHECKPOINT));
        clean_orphan_tmps(&dir);
    }

    /// Train (or resume) run `spec` on `data`, unless it is finished, diverged
    /// or held by a live process. The state is read again after the claim, so
    /// a run ended by another process in between is not trained twice.
    pub fn execute(
        &self,
        spec: &RunSpec,
        data: &Dataset,
        observer: &mut dyn Observer,
    ) -> Result<Executed> {
        self.execute_with(spec, data, observer, || {})
    }

    /// [`Store::execute`], calling `between` after the first look at the
    /// state and before the claim (where another process may end the run).
    fn execute_with(
        &self,
        spec: &RunSpec,
        data: &Dataset,
        observer: &mut dyn Observer,
        between: impl FnOnce(),
    ) -> Result<Executed> {
        let corrupt = |path: PathBuf, problem: String| TrainError::CorruptRecord {
            path,
            problem,
            fix: self.damage_fix(&spec.id),
        };
        match self.state(&spec.id) {
            s if s.is_terminal() => {
                self.tidy_ended(&spec.id);
                return Ok(Executed::AlreadyDone);
            }
            RunState::Corrupt { path, problem } => return Err(corrupt(path, problem)),
            RunState::Running { .. } => return Ok(Executed::HeldElsewhere),
            _ => {}
        }
        between();
        let Some(claim) = self.claim(&spec.id)? else {
            return Ok(Executed::HeldElsewhere);
        };
        match self.state(&spec.id) {
            s if s.is_terminal() => {
                self.release(&spec.id, claim, true);
                self.tidy_ended(&spec.id);
                return Ok(Executed::AlreadyDone);
            }
            RunState::Corrupt { path, problem } => {
                self.release(&spec.id, claim, false);
                return Err(corrupt(path, problem));
            }
            _ => {}
        }
        let dir = self.run_dir(&spec.id);
        clean_orphan_tmps(&dir.path);
        let _ = std::fs::remove_file(dir.path.join(ERROR_TXT));
        let kind = if dir.path.join(CHECKPOINT).exists() {
            "resume"
        } else {
            "start"
        };
        let line = format!(
            "{} {} {} {kind}\n",
            chrono::Utc::now().to_rfc3339(),
            hostname(),
            std::process::id()
        );
        let log = dir.path.join(ATTEMPTS_LOG);
        if let Err(e) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(line.as_bytes()))
        {
            self.release(&spec.id, claim, false);
            return Err(io_err(&log, "appending to the attempts log", e));
        }
        let mut heartbeat = Heartbeat {
            lock: claim.lock.clone(),
            inner: observer,
        };
        let result = spec.config.clone().check().and_then(|cfg| {
            train_on_with(&cfg, data, &dir, &mut heartbeat, TrainOptions::resumable())
        });
        let ended = match &result {
            Ok(o) => o.record.status != RunStatus::Running,
            Err(e) => {
                let _ = write_atomic(&dir.path.join(ERROR_TXT), e.to_string().as_bytes());
                false
            }
        };
        if ended && crate::fault::at("ended-locked") {
            crate::fault::die();
        }
        self.release(&spec.id, claim, ended);
        result.map(|o| Executed::Trained(Box::new(o)))
    }

    /// Counts and details of every run's state, in spec order.
    pub fn status(&self) -> Result<Vec<(RunSpec, RunState)>> {
        self.status_checked(false)
    }

    /// [`Store::status`], hashing finished runs' weights with `hash_weights`.
    pub fn status_checked(&self, hash_weights: bool) -> Result<Vec<(RunSpec, RunState)>> {
        Ok(self
            .specs()?
            .into_iter()
            .map(|s| {
                let st = self.state_checked(&s.id, hash_weights);
                (s, st)
            })
            .collect())
    }

    /// Records and curves of runs that have them (finished, diverged or
    /// partial). An ended run whose files do not match its record is an
    /// error naming the run, the damaged file and the fix; it is never counted.
    pub fn load_runs(&self) -> Result<Vec<(RunSpec, RunRecord, Vec<EvalRow>)>> {
        let mut out = Vec::new();
        for s in self.specs()? {
            let dir = self.run_dir(&s.id);
            if !dir.path.join(crate::record::RUN_JSON).exists() {
                continue;
            }
            let r = dir.read_record().map_err(|e| match e {
                TrainError::CorruptRecord { path, problem, .. } => TrainError::CorruptRecord {
                    path,
                    problem: format!("run {} ({}): {problem}", s.id, s.config.name),
                    fix: self.damage_fix(&s.id),
                },
                other => other,
            })?;
            let c = dir
                .verify(&r, false)
                .map_err(|d| TrainError::CorruptRecord {
                    path: d.path,
                    problem: format!("run {} ({}): {}", s.id, s.config.name, d.problem),
                    fix: self.damage_fix(&s.id),
                })?;
            out.push((s, r, c));
        }
        Ok(out)
    }

    /// One tidy CSV: a row per evaluation point with the run's config columns.
    /// Refuses a store with a damaged run; and, unless `partial`, a store
    /// where some run has not ended (pending, running, interrupted or failed),
    /// so an export never silently misses rows. Written atomically.
    pub fn export_csv(&self, out: &Path, partial: bool) -> Result<ExportSummary> {
        let specs = self.specs()?;
        let mut unended = Vec::new();
        for sp in &specs {
            match self.state(&sp.id) {
                RunState::Corrupt { path, problem } => {
                    return Err(TrainError::CorruptRecord {
                        path,
                        problem: format!("run {} ({}): {problem}", sp.id, sp.config.name),
                        fix: self.damage_fix(&sp.id),
                    })
                }
                s if s.is_terminal() => {}
                s => unended.push(format!("{} {} ({})", sp.id, sp.config.name, s.label())),
            }
        }
        if !unended.is_empty() && !partial {
            return Err(TrainError::config(
                "--out",
                format!(
                    "{} of the store's {} runs have not ended, so their rows would be missing: {}{}",
                    unended.len(),
                    specs.len(),
                    unended.iter().take(5).cloned().collect::<Vec<_>>().join(", "),
                    if unended.len() > 5 { ", …" } else { "" }
                ),
                format!(
                    "finish them with `algoprog sweep run --study {} --store {}`, or pass --partial to export what exists",
                    self.root.join(STUDY_TOML).display(),
                    self.root.display()
                ),
            ));
        }
        let mut s = String::from(
            "run_id,name,family,groups,status,diverged_at_step,seed,width,n_layers,lr,optimizer,schedule,total_params,non_embedding_params,embedding_params,planned_steps,token_budget,tokens_per_step,step,tokens,flops,train_loss,val_loss,eval_lr\n",
        );
        let mut n = 0;
        for (spec, r, curve) in self.load_runs()? {
            let groups: Vec<&str> = spec.groups.iter().map(|(g, _)| g.as_str()).collect();
            let n_layers = match &r.config.model {
                algoprog_models::ModelConfig::Transformer(t) => t.depth().to_string(),
                algoprog_models::ModelConfig::Lstm(l) => l.n_layers.to_string(),
                // a custom model's depth is its builder's business: exported when its params name it
                algoprog_models::ModelConfig::Custom(c) => c
                    .params
                    .get("n_layers")
                    .and_then(toml::Value::as_integer)
                    .map_or_else(String::new, |n| n.to_string()),
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
        // Temporary files of earlier exports to this file killed mid-write.
        crate::record::clean_orphan_tmps_of(
            out.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
            out.file_name().and_then(|f| f.to_str()),
        );
        write_atomic(out, s.as_bytes())?;
        Ok(ExportSummary {
            rows: n,
            runs: specs.len(),
            unended: unended.len(),
        })
    }
}

/// What [`Store::export_csv`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportSummary {
    /// Evaluation rows written.
    pub rows: usize,
    /// Runs in the store.
    pub runs: usize,
    /// Runs not ended (exported as far as they got, with `partial`).
    pub unended: usize,
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

    fn store() -> (tempfile::TempDir, Store, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store {
            root: tmp.path().to_path_buf(),
        };
        let dir = store.run_dir("r1").path;
        std::fs::create_dir_all(&dir).unwrap();
        (tmp, store, dir)
    }

    // pid_max on Linux is at most 2^22, so this pid never exists
    const DEAD: u32 = 4_294_000_000;

    #[test]
    fn a_dead_holders_lock_is_taken_over_by_the_next_generation_and_a_live_one_kept() {
        let (_tmp, store, dir) = store();
        std::fs::write(dir.join(LOCK), format!("{} {DEAD}", hostname())).unwrap();
        assert!(!store.lock_live("r1"));
        let c = store
            .claim("r1")
            .unwrap()
            .expect("a dead lock is taken over");
        assert_eq!(c.lock, dir.join("lock.1"));
        assert!(
            !dir.join(LOCK).exists(),
            "the superseded generation is removed"
        );
        assert_eq!(
            std::fs::read_to_string(&c.lock).unwrap(),
            format!("{} {}\n", hostname(), std::process::id())
        );
        assert!(store.lock_live("r1"));
        // Our own live lock: a second claim is refused.
        assert!(store.claim("r1").unwrap().is_none());
        // Released while unended: the marker stays, the next claim takes generation 2.
        store.release("r1", c, false);
        assert!(std::fs::read_to_string(dir.join("lock.1"))
            .unwrap()
            .starts_with("released "));
        assert!(!store.lock_live("r1"));
        let c = store.claim("r1").unwrap().unwrap();
        assert_eq!(c.lock, dir.join("lock.2"));
        // Released as ended: no lock file remains.
        store.release("r1", c, true);
        assert!(lock_files(&dir).is_empty());
    }

    #[test]
    fn a_newer_generation_wins_over_an_older_claim() {
        let (_tmp, store, dir) = store();
        // A live holder at generation 3 (this process) and a dead one at 1 (an old view).
        std::fs::write(dir.join("lock.1"), format!("{} {DEAD}", hostname())).unwrap();
        std::fs::write(
            dir.join("lock.3"),
            format!("{} {}", hostname(), std::process::id()),
        )
        .unwrap();
        assert!(store.lock_live("r1"));
        assert!(store.claim("r1").unwrap().is_none());
        std::fs::write(dir.join("lock.3"), format!("{} {DEAD}", hostname())).unwrap();
        let c = store.claim("r1").unwrap().unwrap();
        assert_eq!(c.lock, dir.join("lock.4"));
        assert_eq!(
            lock_files(&dir).len(),
            1,
            "generations 1 and 3 removed: {:?}",
            lock_files(&dir)
        );
    }

    #[test]
    fn an_uncreatable_lock_is_an_error_with_its_path() {
        let (_tmp, store, dir) = store();
        std::fs::write(dir.join(LOCK), format!("{} {DEAD}", hostname())).unwrap();
        let mut perm = std::fs::metadata(&dir).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o555);
        std::fs::set_permissions(&dir, perm.clone()).unwrap();
        let writable = std::fs::write(dir.join("probe"), "x").is_ok(); // root ignores modes
        let r = store.claim("r1");
        std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
        std::fs::set_permissions(&dir, perm).unwrap();
        let (r, lock) = if writable {
            // Running as root: a run directory on a file system nobody can create files in.
            std::os::unix::fs::symlink("/proc/self/fdinfo", store.root.join("runs").join("r2"))
                .unwrap();
            (store.claim("r2"), store.run_dir("r2").path.join(LOCK))
        } else {
            (r, dir.join("lock.1"))
        };
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains(&lock.display().to_string()) && e.contains("writable"),
            "{e}"
        );
    }

    #[test]
    fn a_run_ended_between_the_first_look_and_the_claim_is_not_trained_again() {
        let tmp = tempfile::tempdir().unwrap();
        let text = format!(
            r#"
name = "look"
[base]
data = {{ tokenizer = "bpe-512", seq_len = 16, val_tokens = 2048, max_train_tokens = 20000, cache_dir = "{}" }}
train = {{ batch_size = 2, eval_batches = 1 }}
[[groups]]
name = "g"
role = "scan"
families = ["modern"]
widths = [16]
budget = {{ steps = 2 }}
lr = [1e-2]
"#,
            tmp.path().join("cache").display()
        );
        let study = Study::from_toml_str(&text).unwrap();
        let (store, specs) = Store::init(tmp.path().join("s"), &text, &study).unwrap();
        let data = Dataset::prepare(&specs[0].config.data).unwrap();
        let mut other = None;
        // The first look sees a pending run; meanwhile "another process" trains it to the end.
        let r = store
            .execute_with(&specs[0], &data, &mut crate::trainer::Silent, || {
                other = Some(
                    store
                        .execute(&specs[0], &data, &mut crate::trainer::Silent)
                        .unwrap(),
                );
            })
            .unwrap();
        assert!(matches!(other, Some(Executed::Trained(_))));
        assert!(
            matches!(r, Executed::AlreadyDone),
            "trained a second time: {r:?}"
        );
        let log =
            std::fs::read_to_string(store.run_dir(&specs[0].id).path.join(ATTEMPTS_LOG)).unwrap();
        assert_eq!(log.lines().count(), 1, "{log}");
        assert!(lock_files(&store.run_dir(&specs[0].id).path).is_empty());
    }

    #[test]
    fn orphan_temporary_files_of_dead_writers_are_removed_and_live_ones_kept() {
        let (_tmp, _store, dir) = store();
        let h = hostname();
        let dead_new = dir.join(format!(".curve.csv.tmp-{h}-{DEAD}"));
        let dead_old = dir.join(format!(".run.json.tmp{DEAD}"));
        let mine = dir.join(format!(
            ".checkpoint.safetensors.tmp-{h}-{}",
            std::process::id()
        ));
        let other_host_fresh = dir.join(format!(".run.json.tmp-some-other-host-{DEAD}"));
        let plain = dir.join("curve.csv");
        for p in [&dead_new, &dead_old, &mine, &other_host_fresh, &plain] {
            std::fs::write(p, "x").unwrap();
        }
        std::fs::write(dir.join(".tmp1"), "x").unwrap();
        assert!(
            crate::record::clean_orphan_tmps_of(&dir, Some("runs.csv")).is_empty(),
            "only the named file's"
        );
        let mut removed = clean_orphan_tmps(&dir);
        removed.sort();
        let mut want = vec![dead_new.clone(), dead_old.clone()];
        want.sort();
        assert_eq!(removed, want);
        assert!(mine.exists() && other_host_fresh.exists() && plain.exists());
    }
}
