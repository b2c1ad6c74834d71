//! `algoprog run --spec ID --store DIR`: train (or resume) one run of a store;
//! what each Slurm array task executes.

use std::path::PathBuf;

use algoprog_train::executor::{run_one, DataCache, RunOutcome};
use algoprog_train::store::Store;

use crate::cmd::progress::BarObserver;

#[derive(clap::Args)]
pub struct Args {
    /// Run id (see `algoprog sweep status --store DIR --all`).
    #[arg(long)]
    pub spec: String,
    /// Run store written by `algoprog sweep run`.
    #[arg(long)]
    pub store: PathBuf,
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let store = Store::open(&args.store)?;
    let spec = store.spec(&args.spec)?;
    let mut obs = BarObserver::new(args.quiet);
    match run_one(&store, &spec, &DataCache::default(), &mut obs) {
        RunOutcome::Finished { final_val_loss } => {
            println!("{} finished: val loss {final_val_loss:.4}", spec.id)
        }
        RunOutcome::Diverged { at_step } => println!("{} diverged at step {at_step}", spec.id),
        RunOutcome::AlreadyDone => println!("{} was already finished; nothing to do", spec.id),
        RunOutcome::HeldElsewhere => println!(
            "{} is being trained by another live process; nothing to do",
            spec.id
        ),
        RunOutcome::Failed { error } => anyhow::bail!("{} failed: {error}", spec.id),
    }
    Ok(())
}
