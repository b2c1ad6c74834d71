//! algoprog-report: the papers' analysis of a set of training runs, written
//! as `report.md` with figures. No deep-learning framework needed: the input
//! is curves (an algoprog run store, a directory of run records, or a CSV
//! from any framework through a column mapping).
//!
//! - [`settings`]: the analysis settings (E, frontier compute range and
//!   where it is applied, CEG threshold or `auto` with a plateau margin, fit
//!   space, Kaplan rule, bootstrap replicates); the papers' by default.
//! - [`input`]: loading runs; one conversion from a run record to a curve
//!   (N = total parameters).
//! - [`sections`]: one function per report section, each usable alone.
//! - [`published`]: the published numbers a study can be set beside.
//! - [`write_report`]: every section in order, figures under `figures/`.

pub mod error;
pub mod input;
pub mod published;
pub mod sections;
pub mod settings;

use std::path::{Path, PathBuf};

pub use error::{ReportError, Result};
pub use input::{DataInfo, GroupInfo, ReportInput, Role, RunEntry, RunStatus};
pub use sections::Analysis;
pub use settings::{
    AnalysisSettings, ComputeRange, ESetting, FitSpaceSetting, KaplanRuleSetting, RangeMode,
    ThresholdSetting,
};

/// Write `out/report.md` and `out/figures/` from `input` under `settings`;
/// `note` is a line about the invocation (e.g. its wall time), shown in the
/// setup section. Returns the path of `report.md` and the analysis behind it.
pub fn write_report(
    input: &ReportInput,
    settings: &AnalysisSettings,
    out: &Path,
    note: Option<&str>,
) -> Result<(PathBuf, Analysis)> {
    let figs = out.join("figures");
    std::fs::create_dir_all(&figs).map_err(|source| ReportError::Io {
        path: figs.clone(),
        source,
    })?;
    let (md, analysis) = sections::render(input, settings, Some(&figs), note)?;
    let path = out.join("report.md");
    std::fs::write(&path, md).map_err(|source| ReportError::Io {
        path: path.clone(),
        source,
    })?;
    Ok((path, analysis))
}
