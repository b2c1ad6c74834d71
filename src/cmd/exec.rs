//! Running a study's runs (locally or on Slurm) with progress bars: shared by
//! `sweep run` and `reproduce`.

use std::path::PathBuf;
use std::sync::Mutex;

use algoprog_train::executor::{
    Executor, LocalExecutor, RunOutcome, SlurmExecutor, SweepObserver, SweepSummary,
};
use algoprog_train::store::Store;
use algoprog_train::study::{RunSpec, Study, TuneStatus};
use algoprog_train::{EvalRow, Observer, RunRecord, StepInfo};
use anyhow::Context;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(clap::Args, Clone)]
pub struct ExecArgs {
    /// `local` (train here) or `slurm` (write an sbatch array script into STORE/slurm/).
    #[arg(long, default_value = "local")]
    pub executor: String,
    /// Local: runs trained at once (0: one per core, each with one tensor thread,
    /// which measured fastest; see the README).
    #[arg(long, default_value_t = 0)]
    pub jobs: usize,
    /// Slurm: the algoprog binary as compute nodes see it (default: this binary).
    #[arg(long)]
    pub slurm_binary: Option<PathBuf>,
    /// Slurm: extra #SBATCH option, repeatable (e.g. --sbatch=--partition=gpu).
    #[arg(long = "sbatch")]
    pub sbatch: Vec<String>,
    /// Slurm: CPUs per array task.
    #[arg(long, default_value_t = 4)]
    pub cpus_per_task: usize,
    /// Slurm: at most this many tasks at once (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub max_parallel: usize,
    /// Slurm: submit the script with sbatch (default: only write it).
    #[arg(long)]
    pub submit: bool,
}

/// indicatif: one bar for the study (runs), one per active run (steps).
pub struct SweepBars {
    multi: MultiProgress,
    study: ProgressBar,
    failures: Mutex<Vec<String>>,
}

impl SweepBars {
    pub fn new(total: usize, quiet: bool) -> Self {
        let multi = MultiProgress::with_draw_target(if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        });
        let study = multi.add(ProgressBar::new(total as u64));
        study.set_style(
            ProgressStyle::with_template(
                "study [{elapsed_precise}] {bar:30} {pos}/{len} runs {msg}",
            )
            .expect("template"),
        );
        Self {
            multi,
            study,
            failures: Mutex::new(Vec::new()),
        }
    }
    pub fn finish(&self) {
        self.study.finish_and_clear();
    }
}

struct RunBar {
    bar: ProgressBar,
}

impl Observer for RunBar {
    fn on_start(&mut self, r: &RunRecord) {
        self.bar.set_length(r.planned_steps);
        self.bar.set_position(r.steps_done);
    }
    fn on_step(&mut self, s: &StepInfo) {
        self.bar.set_position(s.step);
        self.bar.set_message(format!(
            "loss {:.3}  {:.0} tok/s",
            s.loss, s.tokens_per_second
        ));
    }
    fn on_eval(&mut self, _r: &EvalRow) {}
    fn on_finish(&mut self, _r: &RunRecord) {
        self.bar.finish_and_clear();
    }
}

impl SweepObserver for SweepBars {
    fn run_observer(&self, spec: &RunSpec) -> Box<dyn Observer + Send> {
        let bar = self.multi.add(ProgressBar::new(0));
        bar.set_style(
            ProgressStyle::with_template("  {prefix:40} {bar:20} {pos}/{len} {msg}")
                .expect("template"),
        );
        bar.set_prefix(format!("{} {}", spec.id, spec.config.name));
        Box::new(RunBar { bar })
    }
    fn run_ended(&self, spec: &RunSpec, outcome: &RunOutcome) {
        self.study.inc(1);
        let line = match outcome {
            RunOutcome::Finished { final_val_loss } => format!(
                "{} {} finished: val loss {final_val_loss:.4}",
                spec.id, spec.config.name
            ),
            RunOutcome::Diverged { at_step } => format!(
                "{} {} diverged at step {at_step} (excluded from fits)",
                spec.id, spec.config.name
            ),
            RunOutcome::AlreadyDone => return,
            RunOutcome::HeldElsewhere => format!(
                "{} {} is being trained by another live process; skipped",
                spec.id, spec.config.name
            ),
            RunOutcome::Failed { error } => {
                self.failures
                    .lock()
                    .expect("lock")
                    .push(format!("{} {}: {error}", spec.id, spec.config.name));
                format!("{} {} FAILED: {error}", spec.id, spec.config.name)
            }
        };
        self.multi.suspend(|| eprintln!("{line}"));
    }
}

/// Run `specs` of `store` with the executor `exec` names.
pub fn execute(
    store: &Store,
    specs: &[RunSpec],
    exec: &ExecArgs,
    quiet: bool,
) -> anyhow::Result<SweepSummary> {
    let bars = SweepBars::new(specs.len(), quiet);
    let summary = match exec.executor.as_str() {
        "local" => {
            // Measured on 2 cores (README): two runs with one tensor thread each
            // beat one run with two threads by 1.7–1.8×; oversubscribing is slowest.
            let cores = std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1);
            let jobs = if exec.jobs == 0 { cores } else { exec.jobs };
            if jobs > 1 && std::env::var_os("RAYON_NUM_THREADS").is_none() {
                // Before any tensor work: rayon's global pool (used by candle's CPU kernels) reads it once.
                std::env::set_var("RAYON_NUM_THREADS", (cores / jobs).max(1).to_string());
            }
            LocalExecutor { jobs }.execute(store, specs, &bars)?
        }
        "slurm" => {
            let binary = match &exec.slurm_binary {
                Some(b) => b.clone(),
                None => std::env::current_exe()
                    .context("locating this binary for the Slurm script (pass --slurm-binary)")?,
            };
            SlurmExecutor {
                binary,
                sbatch_options: exec.sbatch.clone(),
                cpus_per_task: exec.cpus_per_task,
                max_parallel: exec.max_parallel,
                submit: exec.submit,
            }
            .execute(store, specs, &bars)?
        }
        other => {
            anyhow::bail!("unknown executor `{other}`; use --executor local or --executor slurm")
        }
    };
    bars.finish();
    Ok(summary)
}

/// Expand `study` into the store at `root` and train it, in stages: the
/// groups that take no tuned rate first; then, once the tune's runs have
/// ended, the groups that take its rates (appended to the store's specs),
/// and so on until nothing new appears. With Slurm, only what can be
/// expanded now is queued; run the same command again when the array is
/// done to queue the next stage.
pub fn execute_study(
    root: &std::path::Path,
    text: &str,
    study: &Study,
    exec: &ExecArgs,
    quiet: bool,
) -> anyhow::Result<(Store, SweepSummary)> {
    let (store, mut specs) = Store::init(root, text, study)?;
    eprintln!(
        "study `{}`: {} runs into {}{}",
        study.name,
        specs.len(),
        store.root.display(),
        if study.has_tuned_groups() && specs.len() == study.expand()?.len() {
            format!(
                " (then the groups that take tuned learning rates: {})",
                study.tuned_group_names().join(", ")
            )
        } else {
            String::new()
        }
    );
    let mut total = execute(&store, &specs, exec, quiet)?;
    while study.has_tuned_groups() && total.script.is_none() {
        let (_, next) = Store::init(root, text, study)?;
        let new: Vec<RunSpec> = next
            .iter()
            .filter(|n| !specs.iter().any(|o| o.id == n.id))
            .cloned()
            .collect();
        if new.is_empty() {
            if let TuneStatus::Waiting(w) = store.tune_status(study)? {
                anyhow::bail!(
                    "the learning-rate tune has {} run(s) that did not end ({}{}), so the groups that take its tuned rate ({}) cannot be expanded; \
                     see `algoprog sweep status --store {}` and run the same command again (failed runs are retried)",
                    w.len(),
                    w.iter().take(4).map(|(id, n, st)| format!("{id} {n}: {st}")).collect::<Vec<_>>().join(", "),
                    if w.len() > 4 { ", …" } else { "" },
                    study.tuned_group_names().join(", "),
                    store.root.display()
                );
            }
            break;
        }
        if let Ok(text) =
            std::fs::read_to_string(store.root.join(algoprog_train::store::TUNED_JSON))
        {
            if let Ok(r) = serde_json::from_str::<algoprog_train::study::TunedRates>(&text) {
                for rule in &r.rules {
                    eprintln!(
                        "tuned lr of `{}` from `{}`: log10 lr = {:.3} {:+.3}·log10 width (best: {})",
                        rule.family,
                        rule.group,
                        rule.a,
                        rule.b,
                        rule.best
                            .iter()
                            .map(|(w, lr, l, _)| format!("d{w} {lr:.3e} ({l:.4})"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
            }
        }
        eprintln!(
            "study `{}`: {} more runs at the tuned learning rates",
            study.name,
            new.len()
        );
        let s = execute(&store, &new, exec, quiet)?;
        total.trained += s.trained;
        total.diverged += s.diverged;
        total.skipped += s.skipped;
        total.held_elsewhere += s.held_elsewhere;
        total.failed += s.failed;
        total.script = s.script;
        total.submitted = s.submitted;
        specs = next;
    }
    if total.script.is_some() && study.has_tuned_groups() {
        if let TuneStatus::Waiting(_) = store.tune_status(study)? {
            println!(
                "the groups {} take the tune's learning rates: when the array is done, run this command again to queue them",
                study.tuned_group_names().join(", ")
            );
        }
    }
    Ok((store, total))
}

pub fn print_summary(s: &SweepSummary) {
    if let Some(p) = &s.script {
        if s.submitted {
            println!(
                "wrote and submitted {}; follow it with `algoprog sweep status --store DIR`",
                p.display()
            );
        } else {
            println!(
                "wrote {}; submit it with `sbatch {}` (or pass --submit)",
                p.display(),
                p.display()
            );
        }
    }
    println!(
        "this invocation: {} trained, {} diverged, {} already done, {} held by another process, {} failed",
        s.trained, s.diverged, s.skipped, s.held_elsewhere, s.failed
    );
}
