//! `algoprog train --config FILE.toml [--out DIR]`: train one model and write its run record.

use std::path::PathBuf;

use algoprog_train::{RunConfig, RunDir, RunStatus};
use anyhow::Context;

use super::progress::BarObserver;

#[derive(clap::Args)]
pub struct Args {
    /// Run config (TOML); see configs/ for the presets.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Run directory to write (default: runs/<name>-<run id>, the name made safe as a file name).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Replace the run already in the output directory (its record, curve, weights and checkpoint).
    #[arg(long)]
    pub overwrite: bool,
    /// Override the seed of the config.
    #[arg(long)]
    pub seed: Option<u64>,
    /// No progress bar (for logs and CI).
    #[arg(long)]
    pub quiet: bool,
}

/// A run name as one safe file name: letters, digits, `-`, `_` and `.` kept,
/// anything else (path separators included) becomes `_`; no leading `.`
/// (so never `..` or a hidden name); at most 80 characters; `run` if empty.
pub fn file_name_of(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let s = s.trim_start_matches('.');
    if s.is_empty() {
        "run".into()
    } else {
        s.to_string()
    }
}

/// The files of a run directory that a new run replaces.
const RUN_FILES: &[&str] = &[
    algoprog_train::record::RUN_JSON,
    algoprog_train::record::CURVE_CSV,
    algoprog_train::record::WEIGHTS,
    algoprog_train::checkpoint::CHECKPOINT,
];

/// Refuses an output directory that already holds a run unless `overwrite`,
/// which removes that run's files first (so no stale weights survive).
fn prepare_out_dir(out: &std::path::Path, overwrite: bool) -> anyhow::Result<()> {
    let present: Vec<&str> = RUN_FILES
        .iter()
        .copied()
        .filter(|f| out.join(f).exists())
        .collect();
    if present.is_empty() {
        return Ok(());
    }
    if !overwrite {
        anyhow::bail!(
            "{} already holds a run ({}); pass --overwrite to replace it, or choose another --out",
            out.display(),
            present.join(", ")
        );
    }
    for f in present {
        let p = out.join(f);
        std::fs::remove_file(&p)
            .with_context(|| format!("removing {} to overwrite the run", p.display()))?;
    }
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut cfg = RunConfig::from_file(&args.config)?;
    if let Some(s) = args.seed {
        cfg.seed = s;
    }
    let cfg = cfg.check()?;
    let out = args.out.unwrap_or_else(|| {
        PathBuf::from("runs").join(format!("{}-{}", file_name_of(&cfg.name), cfg.run_id()))
    });
    prepare_out_dir(&out, args.overwrite)?;
    let dir = RunDir::create(&out)?;
    let mut obs = BarObserver::new(args.quiet);
    let outcome = algoprog_train::train(&cfg, &dir, &mut obs)
        .with_context(|| format!("training {}", args.config.display()))?;
    let r = &outcome.record;
    match r.status {
        RunStatus::Diverged => println!(
            "{} diverged at step {} (loss NaN/inf or > {}× its first value); record in {}",
            r.run_id,
            r.diverged_at_step.unwrap_or(0),
            cfg.train.divergence_factor,
            out.display()
        ),
        _ => println!(
            "{} finished: {} steps, {} tokens, {:.4e} training FLOPs, val loss {:.4} (unigram entropy {:.4}), {:.0} tokens/s; record in {}",
            r.run_id,
            r.steps_done,
            r.tokens_done,
            r.flops.train_total,
            r.final_val_loss.unwrap_or(f64::NAN),
            r.data.unigram_entropy,
            r.tokens_per_second,
            out.display()
        ),
    }
    Ok(())
}
