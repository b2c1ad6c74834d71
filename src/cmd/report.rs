//! `algoprog report --input DIR|CSV [--analysis FILE] --out DIR`: the
//! report of `reproduce` from any logs: an algoprog run store, a directory
//! of run records, or a CSV from another framework (columns mapped with
//! --compute-col, --loss-col, ...). Writes DIR/report.md and DIR/figures/.

use std::path::PathBuf;

use algoprog_report::{write_report, AnalysisSettings, ReportInput};
use algoprog_scaling::ColumnMap;
use anyhow::{Context, Result};

use crate::cmd::ColumnArgs;

#[derive(clap::Args)]
pub struct Args {
    /// A run store (with specs.json), a directory of run records, or a CSV of curves.
    #[arg(long, short = 'i')]
    pub input: PathBuf,
    /// Analysis settings (TOML: e, compute_range, range_mode, threshold, margin, fit_space, kaplan_rule, bootstrap, ...;
    /// a study file's [analysis] table also works). Default: a store's own study [analysis], else the papers' settings.
    #[arg(long)]
    pub analysis: Option<PathBuf>,
    /// Output directory: report.md and figures/.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub columns: ColumnArgs,
}

pub fn run(args: Args) -> Result<()> {
    let columns = ColumnMap::from(&args.columns);
    let input = ReportInput::load(&args.input, &columns)?;
    let settings = match &args.analysis {
        Some(f) => AnalysisSettings::from_file(f)?,
        None if input.store.is_some() => AnalysisSettings::for_store(&args.input)?,
        None => AnalysisSettings::default(),
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let (path, analysis) = write_report(&input, &settings, &args.out, None)?;
    println!(
        "wrote {} from {} runs ({} published numbers set beside this study's)",
        path.display(),
        input.runs.len(),
        analysis
            .published
            .iter()
            .filter(|r| r.this_study != "not measured")
            .count()
    );
    Ok(())
}
