//! Errors of the scaling crate. Every input error names the file, the line
//! (1-based, as an editor shows it, the header being line 1) and the column,
//! and says how to fix it.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = ScalingError> = std::result::Result<T, E>;

/// Everything that can go wrong loading curves or fitting laws.
#[derive(Debug, thiserror::Error)]
pub enum ScalingError {
    /// A file or directory could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file exists but holds nothing (not even a header).
    #[error("{path}: the file is empty; expected a CSV header line naming the columns (e.g. `step,tokens,flops,train_loss,val_loss,lr`)")]
    EmptyFile { path: PathBuf },
    /// The file has a header but no data rows.
    #[error("{path}: the file has a header but no data rows")]
    NoRows { path: PathBuf },
    /// A column named by the column mapping is not in the header.
    #[error("{path}, line 1: no column `{column}` (wanted as the {role} column); the header has: {available}. Pass the right name with --{flag} NAME")]
    MissingColumn {
        path: PathBuf,
        column: String,
        role: &'static str,
        flag: &'static str,
        available: String,
    },
    /// A cell could not be read as a number.
    #[error("{path}, line {line}, column `{column}`: `{value}` is not a number ({expected}); fix the cell or map another column")]
    NotNumeric {
        path: PathBuf,
        line: u64,
        column: String,
        value: String,
        expected: &'static str,
    },
    /// A required cell is empty.
    #[error("{path}, line {line}, column `{column}`: empty value; every row needs a {role}")]
    MissingValue {
        path: PathBuf,
        line: u64,
        column: String,
        role: &'static str,
    },
    /// A loss or compute value is NaN or infinite.
    #[error("{path}, line {line}, column `{column}`: non-finite value `{value}`; the run diverged or the log is corrupt. Remove the row, or load with the `mark-diverged` policy to keep the points before it and flag the run as diverged")]
    NonFinite {
        path: PathBuf,
        line: u64,
        column: String,
        value: String,
    },
    /// Steps of one run are not strictly increasing in file order.
    #[error("{path}, line {line}, column `{column}`: step {step} of run `{run}` does not come after the previous step {previous}; sort the rows of each run by step (or remove duplicated rows)")]
    UnsortedSteps {
        path: PathBuf,
        line: u64,
        column: String,
        run: String,
        step: u64,
        previous: u64,
    },
    /// A CSV record is malformed (wrong number of fields, bad UTF-8...).
    #[error("{path}, line {line}: malformed CSV record: {message}")]
    Csv {
        path: PathBuf,
        line: u64,
        message: String,
    },
    /// A run record's `run.json` is not valid JSON or has a field of the wrong type.
    #[error("{path}: {message}")]
    RunRecord { path: PathBuf, message: String },
    /// No curves were found under a directory.
    #[error("{path}: no run records found (expected `run.json` + `curve.csv` in the directory or in its sub-directories)")]
    NoRuns { path: PathBuf },
    /// Not enough data for the requested fit.
    #[error("not enough data: {0}")]
    InsufficientData(String),
    /// Data that the fit cannot use (e.g. loss below a fixed irreducible loss).
    #[error("invalid data: {0}")]
    InvalidData(String),
    /// An option is out of its range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// The optimiser failed on every start.
    #[error("fit failed: {0}")]
    FitFailed(String),
}
