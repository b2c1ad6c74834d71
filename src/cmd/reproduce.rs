//! `algoprog reproduce --preset smoke|quick|laptop|paper --out DIR`: run a whole study
//! (configs/studies/PRESET.toml) into `DIR/store`, then write `DIR/report.md`
//! with figures under `DIR/figures/` (SVG and PNG) through the report crate
//! (`algoprog_report::write_report`, the same function `algoprog report`
//! calls), under the study's `[analysis]` settings (the papers' by default).

use std::path::{Path, PathBuf};
use std::time::Instant;

use algoprog_report::{write_report, AnalysisSettings, ReportInput};
use algoprog_train::study::Study;
use anyhow::{bail, Context, Result};

use crate::cmd::exec::{execute_study, print_summary, ExecArgs};

pub const PRESETS: &[(&str, &str)] = &[
    ("smoke", include_str!("../../configs/studies/smoke.toml")),
    ("quick", include_str!("../../configs/studies/quick.toml")),
    ("laptop", include_str!("../../configs/studies/laptop.toml")),
    ("paper", include_str!("../../configs/studies/paper.toml")),
];

#[derive(clap::Args)]
pub struct Args {
    /// Study preset: smoke (under a minute), quick (the README's; embedded corpus, 2 cores, ~15 min), laptop (library corpus, 2 cores, ~90 min), paper (C4, GPT-2 tokenizer, a GPU cluster).
    #[arg(long)]
    pub preset: Option<String>,
    /// Or a study file.
    #[arg(long, conflicts_with = "preset")]
    pub study: Option<PathBuf>,
    /// Output directory: store/, report.md, figures/ (default: reproduce-PRESET).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub exec: ExecArgs,
    /// Only (re)write the report from the store; train nothing.
    #[arg(long)]
    pub report_only: bool,
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: Args) -> Result<()> {
    let (name, text) = match (&args.preset, &args.study) {
        (Some(p), None) => {
            let Some((n, t)) = PRESETS.iter().find(|(n, _)| *n == p.as_str()) else {
                bail!(
                    "unknown preset `{p}`; use one of: {}",
                    PRESETS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            };
            (n.to_string(), t.to_string())
        }
        (None, Some(f)) => (
            f.file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_else(|| "study".into()),
            std::fs::read_to_string(f)
                .with_context(|| format!("reading the study {}", f.display()))?,
        ),
        _ => bail!("give --preset smoke|quick|laptop|paper or --study FILE"),
    };
    let study = Study::from_toml_str(&text).with_context(|| format!("study `{name}`"))?;
    // Checked before any training: a typo in [analysis] should not cost a study.
    let settings = AnalysisSettings::from_study_toml(&text, &format!("study `{name}`"))?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("reproduce-{name}")));
    let clock = Instant::now();
    let store_dir = out.join("store");
    if args.report_only {
        // Never create a store here: say what is missing instead.
        if !store_dir.join("specs.json").is_file() {
            bail!(
                "{}: no run store to report on; run `algoprog reproduce {}` without --report-only first (with the same --out)",
                store_dir.display(),
                args.preset.as_ref().map(|p| format!("--preset {p}")).unwrap_or_else(|| "--study FILE".into())
            );
        }
    } else {
        std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let (_, s) = execute_study(&store_dir, &text, &study, &args.exec, args.quiet)?;
        print_summary(&s);
        if s.script.is_some() {
            println!("runs are queued on Slurm; when they are done, write the report with `algoprog reproduce --report-only` and the same --out");
            return Ok(());
        }
    }
    let train_seconds = clock.elapsed().as_secs_f64();
    let input = ReportInput::from_store(&store_dir)?;
    let note = format!("`algoprog reproduce` of study `{}`: training and resuming took {train_seconds:.0} s in this invocation", study.name);
    let (report, _) = write_report(&input, &settings, &out, Some(&note))?;
    println!(
        "wrote {} ({} figures) in {:.0} s",
        report.display(),
        count_figures(&out.join("figures")),
        clock.elapsed().as_secs_f64()
    );
    Ok(())
}

fn count_figures(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}
