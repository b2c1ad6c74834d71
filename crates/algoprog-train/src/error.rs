//! Errors of the training crate. Each names the thing that is wrong and the fix.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A config key is unknown, of the wrong type or has an impossible value.
    #[error("{}config key `{key}`: {problem}{}", file.as_ref().map(|f| format!("{}: ", f.display())).unwrap_or_default(), if fix.is_empty() { String::new() } else { format!("\n  fix: {fix}") })]
    Config {
        file: Option<PathBuf>,
        key: String,
        problem: String,
        fix: String,
    },
    #[error("{what} `{}`: {err}", path.display())]
    Io {
        path: PathBuf,
        what: String,
        err: std::io::Error,
    },
    /// A run record on disk cannot be read back.
    #[error("corrupt run record `{}`: {problem}\n  fix: {fix}", path.display())]
    CorruptRecord {
        path: PathBuf,
        problem: String,
        fix: String,
    },
    #[error(transparent)]
    Data(#[from] algoprog_data::DataError),
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

impl TrainError {
    pub fn config(key: &str, problem: String, fix: String) -> Self {
        TrainError::Config {
            file: None,
            key: key.to_string(),
            problem,
            fix,
        }
    }

    /// Attach the config file a config error came from.
    pub fn in_file(self, path: &Path) -> Self {
        match self {
            TrainError::Config {
                key, problem, fix, ..
            } => TrainError::Config {
                file: Some(path.to_path_buf()),
                key,
                problem,
                fix,
            },
            other => other,
        }
    }
}

pub type Result<T, E = TrainError> = std::result::Result<T, E>;
