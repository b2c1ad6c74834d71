//! Executors: where a study's runs are trained.
//!
//! - [`LocalExecutor`]: `jobs` runs at once on this machine, each on its own
//!   worker thread pulling the next unfinished run from a shared queue; the
//!   tensor work of every run shares rayon's global pool (candle's CPU
//!   matmuls use it). Measured on 2 cores (4 runs at d = 32/48, and 2 at
//!   d = 64/128): `jobs = 2` with `RAYON_NUM_THREADS=1` took 6.2 s and 19.2 s,
//!   `jobs = 1` with 2 threads 11.4 s and 32.0 s, `jobs = 2` with 2 threads
//!   each 13.9 s and 41.5 s. At these sizes a run gains little from a second
//!   thread, so the CLI defaults to one run per core with one thread each.
//! - [`SlurmExecutor`]: writes an `sbatch` array script whose task `i` runs
//!   `algoprog run --spec ID_i --store DIR` on a shared filesystem; the store
//!   is the only channel between tasks, so `algoprog sweep status` works from
//!   any node, and a re-submitted array skips finished runs and resumes
//!   interrupted ones.
//!
//! Both prepare the data of every run still to train once, before any run
//! starts ([`prepare_study_data`]): a study whose data cannot be prepared
//! (no network for C4, a missing corpus directory) stops there with one
//! message naming the fix, instead of failing in every run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use algoprog_data::Dataset;

use crate::error::{Result, TrainError};
use crate::record::{write_atomic, RunStatus};
use crate::store::{Executed, Store};
use crate::study::RunSpec;
use crate::trainer::{Observer, Silent};

/// Progress hooks of a sweep; called from worker threads.
pub trait SweepObserver: Sync {
    /// An observer for one run about to start (or resume).
    fn run_observer(&self, _spec: &RunSpec) -> Box<dyn Observer + Send> {
        Box::new(Silent)
    }
    /// A run ended (trained, skipped, or failed with `error`).
    fn run_ended(&self, _spec: &RunSpec, _outcome: &RunOutcome) {}
}

/// No progress output.
pub struct QuietSweep;
impl SweepObserver for QuietSweep {}

/// How one run of a sweep ended.
#[derive(Clone, Debug, PartialEq)]
pub enum RunOutcome {
    Finished { final_val_loss: f64 },
    Diverged { at_step: u64 },
    AlreadyDone,
    HeldElsewhere,
    Failed { error: String },
}

/// Counts of a sweep invocation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepSummary {
    pub trained: usize,
    pub diverged: usize,
    pub skipped: usize,
    pub held_elsewhere: usize,
    pub failed: usize,
    /// Slurm: the script written.
    pub script: Option<PathBuf>,
    /// Slurm: whether it was submitted with sbatch.
    pub submitted: bool,
}

/// Something that gets a list of runs of a store trained.
pub trait Executor {
    fn execute(
        &self,
        store: &Store,
        specs: &[RunSpec],
        observer: &dyn SweepObserver,
    ) -> Result<SweepSummary>;
}

/// Prepared datasets shared by the runs that use the same data config.
/// One data config's dataset, prepared by the first run that needs it.
type Slot = Arc<Mutex<Option<Arc<Dataset>>>>;

#[derive(Default)]
pub struct DataCache {
    map: Mutex<HashMap<String, Slot>>,
}

impl DataCache {
    pub fn get(&self, cfg: &algoprog_data::DataConfig) -> Result<Arc<Dataset>> {
        let key = serde_json::to_string(cfg).map_err(|e| TrainError::Internal(e.to_string()))?;
        let slot = self
            .map
            .lock()
            .expect("data cache lock")
            .entry(key)
            .or_default()
            .clone();
        let mut slot = slot.lock().expect("data slot lock");
        if let Some(d) = slot.as_ref() {
            return Ok(d.clone());
        }
        let d = Arc::new(Dataset::prepare(cfg)?);
        *slot = Some(d.clone());
        Ok(d)
    }
}

impl DataCache {
    /// Whether the dataset of `cfg` is already prepared in this cache.
    pub fn has(&self, cfg: &algoprog_data::DataConfig) -> bool {
        let Ok(key) = serde_json::to_string(cfg) else {
            return false;
        };
        let slot = self.map.lock().expect("data cache lock").get(&key).cloned();
        slot.is_some_and(|s| s.lock().expect("data slot lock").is_some())
    }
}

/// Prepares (once each, in spec order) the data of every run in `specs` that
/// still has training to do, before any run starts. The first failure stops
/// it with one error: what failed, for how many runs, and the fix. Returns
/// the cache the runs then read from. This is what `sweep run` and
/// `reproduce` do through [`LocalExecutor`] and [`SlurmExecutor`].
pub fn prepare_study_data(store: &Store, specs: &[RunSpec]) -> Result<DataCache> {
    let cache = DataCache::default();
    let todo: Vec<&RunSpec> = specs
        .iter()
        .filter(|s| !store.state(&s.id).is_terminal())
        .collect();
    for spec in &todo {
        let cfg = &spec.config.data;
        if cache.has(cfg) {
            continue;
        }
        if let Err(e) = cache.get(cfg) {
            let n = todo.iter().filter(|s| &s.config.data == cfg).count();
            let fix = match &cfg.corpus {
                algoprog_data::CorpusSpec::C4(c) if c.offline => {
                    "fill the hf-hub cache this study reads once on a machine with network access \
                     (`algoprog data prepare --source c4`) and point HF_HOME at it here; \
                     or train on a local corpus: data.corpus = { dir = { path = \"PATH\" } }"
                }
                algoprog_data::CorpusSpec::C4(_) => {
                    "without network access, fill the hf-hub cache once on a machine with network \
                     (`algoprog data prepare --source c4`) and set `offline = true` in the study's corpus \
                     (data.corpus = { c4 = { offline = true } }); \
                     or train on a local corpus: data.corpus = { dir = { path = \"PATH\" } }"
                }
                _ => "fix the study's [data] (see configs/modern.toml for its keys), or use a local corpus: data.corpus = { dir = { path = \"PATH\" } }",
            };
            return Err(TrainError::Config {
                file: None,
                key: "data".into(),
                problem: format!(
                    "the data of {n} of the {} runs still to train cannot be prepared, so no run was started: {e}",
                    todo.len()
                ),
                fix: fix.into(),
            });
        }
    }
    Ok(cache)
}

/// Train one spec of a store (preparing its data through `cache`).
pub fn run_one(
    store: &Store,
    spec: &RunSpec,
    cache: &DataCache,
    observer: &mut dyn Observer,
) -> RunOutcome {
    let data = match cache.get(&spec.config.data) {
        Ok(d) => d,
        Err(e) => {
            return RunOutcome::Failed {
                error: e.to_string(),
            }
        }
    };
    match store.execute(spec, &data, observer) {
        Ok(Executed::Trained(o)) => match o.record.status {
            RunStatus::Diverged => RunOutcome::Diverged {
                at_step: o.record.diverged_at_step.unwrap_or(0),
            },
            _ => RunOutcome::Finished {
                final_val_loss: o.record.final_val_loss.unwrap_or(f64::NAN),
            },
        },
        Ok(Executed::AlreadyDone) => RunOutcome::AlreadyDone,
        Ok(Executed::HeldElsewhere) => RunOutcome::HeldElsewhere,
        Err(e) => RunOutcome::Failed {
            error: e.to_string(),
        },
    }
}

/// `jobs` runs at a time on this machine.
pub struct LocalExecutor {
    pub jobs: usize,
}

impl Executor for LocalExecutor {
    fn execute(
        &self,
        store: &Store,
        specs: &[RunSpec],
        observer: &dyn SweepObserver,
    ) -> Result<SweepSummary> {
        let cache = prepare_study_data(store, specs)?;
        let next = AtomicUsize::new(0);
        let summary = Mutex::new(SweepSummary::default());
        let jobs = self.jobs.max(1).min(specs.len().max(1));
        std::thread::scope(|s| {
            for _ in 0..jobs {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(spec) = specs.get(i) else { break };
                    let mut obs = observer.run_observer(spec);
                    let outcome = run_one(store, spec, &cache, obs.as_mut());
                    {
                        let mut sm = summary.lock().expect("summary lock");
                        match &outcome {
                            RunOutcome::Finished { .. } => sm.trained += 1,
                            RunOutcome::Diverged { .. } => sm.diverged += 1,
                            RunOutcome::AlreadyDone => sm.skipped += 1,
                            RunOutcome::HeldElsewhere => sm.held_elsewhere += 1,
                            RunOutcome::Failed { .. } => sm.failed += 1,
                        }
                    }
                    observer.run_ended(spec, &outcome);
                });
            }
        });
        Ok(summary.into_inner().expect("summary lock"))
    }
}

/// Writes (and with `submit`, submits) an `sbatch` array script.
pub struct SlurmExecutor {
    /// Path of the `algoprog` binary as the compute nodes see it.
    pub binary: PathBuf,
    /// Extra `#SBATCH` lines, e.g. `--partition=gpu`, `--time=04:00:00`.
    pub sbatch_options: Vec<String>,
    pub cpus_per_task: usize,
    /// At most this many array tasks at once (`%N`); 0 = no limit.
    pub max_parallel: usize,
    /// Run `sbatch` on the script.
    pub submit: bool,
}

/// Refuses text that cannot be written on one line of a script (a newline
/// would start a new shell line in the job script).
fn one_line(what: &str, s: &str) -> Result<()> {
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(TrainError::config(
            what,
            format!("{s:?} contains the control character {c:?}, which cannot be written into a Slurm script"),
            "remove newlines and other control characters".into(),
        ));
    }
    Ok(())
}

/// An `#SBATCH` option as written: `--name=value` or `--name value`, the
/// value double-quoted (sbatch reads quoted directive values) when it holds
/// spaces, quotes or `#`.
fn sbatch_directive(option: &str) -> Result<String> {
    one_line("--sbatch", option)?;
    let o = option.trim();
    let o = o.strip_prefix("#SBATCH").map(str::trim).unwrap_or(o);
    if !o.starts_with('-') {
        return Err(TrainError::config(
            "--sbatch",
            format!("`{o}` is not an sbatch option"),
            "give options as sbatch takes them, e.g. --sbatch=--partition=gpu --sbatch=--time=04:00:00".into(),
        ));
    }
    let (name, value) = match o.split_once(['=', ' ']) {
        Some((n, v)) => (n, Some(v.trim())),
        None => (o, None),
    };
    if name
        .chars()
        .any(|c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        return Err(TrainError::config(
            "--sbatch",
            format!("`{name}` is not an sbatch option name"),
            "e.g. --partition=gpu".into(),
        ));
    }
    Ok(match value {
        None => name.to_string(),
        Some(v) => format!("{name}={}", quote_directive(v)),
    })
}

fn quote_directive(v: &str) -> String {
    if !v.is_empty()
        && v.chars()
            .all(|c| !c.is_whitespace() && !"\"'#\\".contains(c))
    {
        v.to_string()
    } else {
        format!("\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

/// The `sbatch` array script for `ids` in `store`. Paths and options are
/// quoted; one that holds a newline (which no quoting can keep on its line)
/// is refused.
pub fn slurm_script(
    store_root: &Path,
    ids: &[String],
    binary: &Path,
    options: &[String],
    cpus: usize,
    max_parallel: usize,
) -> Result<String> {
    let root = store_root.display().to_string();
    one_line("--store", &root)?;
    let bin = binary.display().to_string();
    one_line("--slurm-binary", &bin)?;
    for id in ids {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(TrainError::Internal(format!(
                "run id {id:?} is not alphanumeric"
            )));
        }
    }
    let mut s = String::new();
    s.push_str("#!/bin/bash\n");
    s.push_str("# Written by `algoprog sweep run --executor slurm`. Task i trains run ids[i] of the store;\n");
    s.push_str("# finished runs are skipped and interrupted ones resume, so the array can be resubmitted.\n");
    s.push_str("#SBATCH --job-name=algoprog-sweep\n");
    let limit = if max_parallel > 0 {
        format!("%{max_parallel}")
    } else {
        String::new()
    };
    s.push_str(&format!(
        "#SBATCH --array=0-{}{}\n",
        ids.len().saturating_sub(1),
        limit
    ));
    s.push_str(&format!("#SBATCH --cpus-per-task={cpus}\n"));
    s.push_str(&format!(
        "#SBATCH --output={}\n",
        quote_directive(&format!("{root}/slurm/%A_%a.out"))
    ));
    for o in options {
        s.push_str(&format!("#SBATCH {}\n", sbatch_directive(o)?));
    }
    s.push_str("set -euo pipefail\n");
    s.push_str(&format!(
        "export RAYON_NUM_THREADS=${{SLURM_CPUS_PER_TASK:-{cpus}}}\n"
    ));
    s.push_str("IDS=(\n");
    for id in ids {
        s.push_str(&format!("  {id}\n"));
    }
    s.push_str(")\n");
    s.push_str(&format!(
        "exec {} run --spec \"${{IDS[$SLURM_ARRAY_TASK_ID]}}\" --store {} --quiet\n",
        shell_quote(&bin),
        shell_quote(&root)
    ));
    Ok(s)
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

impl Executor for SlurmExecutor {
    fn execute(
        &self,
        store: &Store,
        specs: &[RunSpec],
        _observer: &dyn SweepObserver,
    ) -> Result<SweepSummary> {
        let mut todo = Vec::new();
        for spec in specs {
            match store.state(&spec.id) {
                s if s.is_terminal() => {}
                crate::store::RunState::Corrupt { path, problem } => {
                    return Err(TrainError::CorruptRecord {
                        path,
                        problem: format!("run {} ({}): {problem}", spec.id, spec.config.name),
                        fix: store.damage_fix(&spec.id),
                    })
                }
                _ => todo.push(spec.id.clone()),
            }
        }
        let mut summary = SweepSummary {
            skipped: specs.len() - todo.len(),
            ..Default::default()
        };
        if todo.is_empty() {
            return Ok(summary);
        }
        let dir = store.root.join("slurm");
        std::fs::create_dir_all(&dir).map_err(|e| TrainError::Io {
            path: dir.clone(),
            what: "creating the slurm directory of the store".into(),
            err: e,
        })?;
        let root = std::fs::canonicalize(&store.root).unwrap_or_else(|_| store.root.clone());
        let script = slurm_script(
            &root,
            &todo,
            &self.binary,
            &self.sbatch_options,
            self.cpus_per_task,
            self.max_parallel,
        )?;
        // The array's tasks then find the data in the (shared) cache, and a study whose
        // data cannot be prepared fails here, once, before anything is queued.
        prepare_study_data(store, specs)?;
        let path = dir.join("sweep.sbatch");
        write_atomic(&path, script.as_bytes())?;
        if self.submit {
            let out = std::process::Command::new("sbatch")
                .arg(&path)
                .output()
                .map_err(|e| TrainError::Io {
                    path: path.clone(),
                    what: "running `sbatch` on (is Slurm installed and on PATH?)".into(),
                    err: e,
                })?;
            if !out.status.success() {
                return Err(TrainError::Internal(format!(
                    "sbatch {} failed: {}",
                    path.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        summary.script = Some(path);
        summary.submitted = self.submit;
        Ok(summary)
    }
}
