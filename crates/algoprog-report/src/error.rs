//! Errors of the report crate.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = ReportError> = std::result::Result<T, E>;

/// What can go wrong reading the settings or the input, or writing the report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Bad analysis settings.
    #[error("analysis settings ({source_name}): {message}")]
    Settings {
        source_name: String,
        message: String,
    },
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The input holds nothing the report can use.
    #[error("{0}")]
    Input(String),
    /// Loading curves failed.
    #[error(transparent)]
    Scaling(#[from] algoprog_scaling::ScalingError),
    /// A figure could not be written.
    #[error("{0}")]
    Plot(String),
}
