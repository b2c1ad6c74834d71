//! Errors of the data pipeline.

use std::path::PathBuf;

/// Everything that can go wrong while loading a corpus, building a tokenizer,
/// reading or writing the token cache, or validating a [`crate::DataConfig`].
///
/// Every message names the file or configuration key involved and, where there
/// is one, the fix.
#[derive(thiserror::Error, Debug)]
pub enum DataError {
    /// A configuration value is out of range or inconsistent.
    #[error("invalid data config: `data.{key}` {message}")]
    Config {
        /// The key inside the `[data]` section, e.g. `seq_len`.
        key: &'static str,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A tokenizer name could not be parsed.
    #[error(
        "unknown tokenizer {0:?}: expected \"gpt2\" or \"bpe-N\" with N a vocabulary size from 257 to 16777216 (for example \"bpe-4096\")"
    )]
    TokenizerSpec(String),
    /// The embedded corpus could not be decompressed or parsed.
    #[error("embedded corpus (crates/algoprog-data/corpus/embedded.jsonl.gz): {0}; rebuild it with scripts/build_corpus.py")]
    EmbeddedCorpus(String),
    /// The library corpus extension could not be decompressed, parsed or assembled.
    #[error("library corpus (crates/algoprog-data/corpus/library.jsonl.gz): {0}; rebuild it with scripts/build_library.py")]
    LibraryCorpus(String),
    /// A corpus has no usable documents or too little text for the request.
    #[error("corpus {corpus}: {message}")]
    Corpus {
        /// The corpus identity.
        corpus: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// No cache directory was configured and none could be derived.
    #[error("no cache directory: set `data.cache_dir`, or the ALGOPROG_CACHE or HOME environment variable")]
    NoCacheDir,
    /// A token cache file is truncated or its contents do not match its checksum.
    /// [`crate::Dataset::prepare`] rebuilds such a file; it is returned by
    /// [`crate::cache::read_token_cache`] for callers that read caches directly.
    #[error("token cache {} is corrupt ({reason}); delete it and it will be rebuilt", path.display())]
    CacheCorrupt {
        /// The cache file.
        path: PathBuf,
        /// What was detected.
        reason: String,
    },
    /// A token cache file was written with a different tokenizer than the one requested.
    /// [`crate::Dataset::prepare`] rebuilds such a file.
    #[error("token cache {} was written by tokenizer {found} but {expected} was requested; delete it and it will be rebuilt", path.display())]
    CacheMismatch {
        /// The cache file.
        path: PathBuf,
        /// Fingerprint hash of the tokenizer requested.
        expected: String,
        /// Fingerprint hash stored in the file.
        found: String,
    },
    /// A corpus file is unreadable or malformed (a corrupt gzip stream, a JSON
    /// line without the text field, a C4 shard missing from the hf-hub cache, ...).
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Source {
        /// The file involved.
        path: PathBuf,
        /// 1-based line number, where one applies.
        line: Option<u64>,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// [`crate::Dataset::load`] found no token cache (or tokenizer) for the config.
    #[error("{what} is not prepared yet (expected {}); run `algoprog data prepare` with the same settings first", path.display())]
    NotPrepared {
        /// What is missing.
        what: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The `tokenizers` library failed to train, load or run a BPE tokenizer.
    #[error("BPE tokenizer {}: {message}", path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(in memory)".into()))]
    Tokenizer {
        /// The `tokenizer.json` involved, if any.
        path: Option<PathBuf>,
        /// What failed.
        message: String,
    },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn source(
        path: impl Into<PathBuf>,
        line: Option<u64>,
        message: impl Into<String>,
    ) -> Self {
        DataError::Source {
            path: path.into(),
            line,
            message: message.into(),
        }
    }

    pub(crate) fn config(key: &'static str, message: impl Into<String>) -> Self {
        DataError::Config {
            key,
            message: message.into(),
        }
    }
}
