//! Shared by the root examples: the `quick` study's run store, reused when
//! present (`algoprog reproduce --preset quick` writes it to
//! `reproduce-quick/store`), trained here otherwise.

use std::path::{Path, PathBuf};

use algoprog_report::{AnalysisSettings, ReportInput};
use algoprog_train::executor::{Executor, LocalExecutor, QuietSweep};
use algoprog_train::store::Store;
use algoprog_train::study::Study;

/// As the CLI: `algoprog_train::runtime::MiMalloc` says why.
#[global_allocator]
static ALLOC: algoprog_train::runtime::MiMalloc = algoprog_train::runtime::MiMalloc;

const QUICK: &str = include_str!("../../configs/studies/quick.toml");

/// The store directory: the first argument, else `reproduce-quick/store`.
pub fn store_dir() -> PathBuf {
    std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("reproduce-quick/store"))
}

/// The quick study's runs and analysis settings, training what is missing
/// (all of it, a few minutes on 2 cores, the first time).
pub fn quick_runs(store: &Path) -> anyhow::Result<(ReportInput, AnalysisSettings)> {
    let study = Study::from_toml_str(QUICK)?;
    let (s, specs) = Store::init(store, QUICK, &study)?;
    let missing = specs
        .iter()
        .filter(|sp| !store.join("runs").join(&sp.id).join("run.json").is_file())
        .count();
    if missing > 0 {
        algoprog_train::runtime::tune();
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        if std::env::var_os("RAYON_NUM_THREADS").is_none() {
            // One tensor thread per run: two runs at once beat one run on two threads.
            std::env::set_var("RAYON_NUM_THREADS", "1");
        }
        eprintln!(
            "training {missing} runs of the `quick` study into {} ({cores} at a time; minutes)",
            store.display()
        );
        LocalExecutor { jobs: cores }.execute(&s, &specs, &QuietSweep)?;
    } else {
        eprintln!("reusing the run store {}", store.display());
    }
    let settings = AnalysisSettings::from_study_toml(QUICK, "quick study")?;
    Ok((ReportInput::from_store(store)?, settings))
}

/// Print rows of the published-vs-this-study table.
pub fn print_rows<'a>(rows: impl IntoIterator<Item = &'a algoprog_report::sections::PublishedRow>) {
    println!("| quantity | published | this study | interval | setup differs / note |");
    println!("|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} |",
            r.quantity, r.published, r.this_study, r.interval, r.note
        );
    }
}
