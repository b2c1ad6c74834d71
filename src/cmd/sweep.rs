//! `algoprog sweep run|status|export`: a study's runs in a run store.

use std::path::PathBuf;

use algoprog_train::store::{RunState, Store};
use algoprog_train::study::Study;
use anyhow::Context;

use super::exec::{execute_study, print_summary, ExecArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Sub,
}

#[derive(clap::Subcommand)]
pub enum Sub {
    /// Expand a study into the store and train every run that is not finished.
    Run(RunArgs),
    /// Done / running / interrupted / failed / pending counts from the store.
    Status(StatusArgs),
    /// One tidy CSV: a row per evaluation point with the run's config columns.
    Export(ExportArgs),
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// Study definition (TOML); see configs/studies/.
    #[arg(long)]
    pub study: PathBuf,
    /// Run store directory (created if missing; reused to resume).
    #[arg(long)]
    pub store: PathBuf,
    #[command(flatten)]
    pub exec: ExecArgs,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(clap::Args)]
pub struct StatusArgs {
    #[arg(long)]
    pub store: PathBuf,
    /// One line per run, not only the counts and the problems.
    #[arg(long)]
    pub all: bool,
    /// Also hash every finished run's weights against the sha256 in its record
    /// (curves are always hashed; weights are otherwise checked by length).
    #[arg(long)]
    pub verify: bool,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    #[arg(long)]
    pub store: PathBuf,
    /// CSV file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Export even when some runs have not ended (their rows so far; pending runs have none).
    /// Without it, such a store is refused so that no export silently misses rows.
    #[arg(long)]
    pub partial: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Sub::Run(a) => {
            let text = std::fs::read_to_string(&a.study).with_context(|| {
                format!(
                    "reading the study {} (examples in configs/studies/)",
                    a.study.display()
                )
            })?;
            let study = Study::from_file(&a.study)?;
            let (store, s) = execute_study(&a.store, &text, &study, &a.exec, a.quiet)?;
            print_summary(&s);
            print_status(&store, false)?;
            if s.failed > 0 {
                anyhow::bail!(
                    "{} run(s) failed; see `algoprog sweep status --store {}`",
                    s.failed,
                    a.store.display()
                );
            }
            Ok(())
        }
        Sub::Status(a) => print_status_checked(&Store::open(&a.store)?, a.all, a.verify),
        Sub::Export(a) => {
            let store = Store::open(&a.store)?;
            let e = store.export_csv(&a.out, a.partial)?;
            if e.unended > 0 {
                println!(
                    "wrote {} ({} evaluation rows; {} of {} runs have not ended and are exported as far as they got)",
                    a.out.display(),
                    e.rows,
                    e.unended,
                    e.runs
                );
            } else {
                println!(
                    "wrote {} ({} evaluation rows of {} ended runs)",
                    a.out.display(),
                    e.rows,
                    e.runs
                );
            }
            Ok(())
        }
    }
}

/// Counts per state, then the runs that need attention (all runs with `all`).
pub fn print_status(store: &Store, all: bool) -> anyhow::Result<()> {
    print_status_checked(store, all, false)
}

/// [`print_status`], hashing finished runs' weights with `verify`.
pub fn print_status_checked(store: &Store, all: bool, verify: bool) -> anyhow::Result<()> {
    let st = store.status_checked(verify)?;
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for (_, s) in &st {
        *counts.entry(s.label()).or_default() += 1;
    }
    let order = [
        "done",
        "diverged",
        "running",
        "interrupted",
        "failed",
        "corrupt",
        "pending",
    ];
    let parts: Vec<String> = order
        .iter()
        .map(|k| format!("{} {}", counts.get(k).copied().unwrap_or(0), k))
        .collect();
    println!(
        "{}: {} runs: {}",
        store.root.display(),
        st.len(),
        parts.join(", ")
    );
    for (spec, s) in &st {
        let detail = match s {
            RunState::Pending => String::new(),
            RunState::Running { steps_done } => format!("step {steps_done}"),
            RunState::Interrupted {
                steps_done,
                checkpoint,
            } => {
                format!(
                    "step {steps_done}; resumes from {}",
                    if *checkpoint {
                        "its checkpoint"
                    } else {
                        "step 0"
                    }
                )
            }
            RunState::Failed { error } => error.lines().next().unwrap_or("").to_string(),
            RunState::Finished => String::new(),
            RunState::Diverged { at_step } => format!("at step {at_step}"),
            RunState::Corrupt { path, problem } => format!(
                "{}: {problem}\n      fix: {}",
                path.display(),
                store.damage_fix(&spec.id)
            ),
        };
        let attention = matches!(
            s,
            RunState::Failed { .. } | RunState::Corrupt { .. } | RunState::Diverged { .. }
        );
        if all || attention {
            println!(
                "  {:12} {} {:32} {detail}",
                s.label(),
                spec.id,
                spec.config.name
            );
        }
    }
    Ok(())
}
