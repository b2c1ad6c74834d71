//! The `[data]` section of a run config: what to prepare, checked.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::sources::CorpusSpec;
use crate::tokenizer::TokenizerSpec;
use crate::DataError;

/// The `[data]` section of a run config. Every field has a default, so a TOML
/// section lists only what it changes:
///
/// ```toml
/// [data]
/// corpus = "embedded"
/// tokenizer = "bpe-4096"   # or "gpt2"
/// seq_len = 128
/// val_tokens = 100000
/// split_seed = 0
/// # max_train_tokens = 1000000
/// # cache_dir = "/path/to/cache"
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Source of documents (default: the embedded corpus).
    pub corpus: CorpusSpec,
    /// Tokenizer (default: a byte-level BPE of 4096 ids trained on the training documents).
    pub tokenizer: TokenizerSpec,
    /// Tokens per training sequence; windows of `seq_len + 1` at stride `seq_len` (default 128).
    pub seq_len: usize,
    /// Minimum number of validation tokens (default 100 000); see [`crate::Dataset::prepare`] for the split rule.
    pub val_tokens: usize,
    /// Keep only the first this many tokens of the (shuffled-by-document) training stream
    /// (default: all). The tokenizer and the split do not depend on it.
    pub max_train_tokens: Option<usize>,
    /// Cache directory for trained tokenizers and token files. Default:
    /// `$ALGOPROG_CACHE` if set, else `$HOME/.cache/algoprog`.
    pub cache_dir: Option<PathBuf>,
    /// Seed of the document permutation that defines the split (default 0).
    /// Streamed corpora (`dir`, `c4`) are split by stream order and ignore it.
    pub split_seed: u64,
    /// Bytes of training text a BPE tokenizer is trained on for streamed corpora
    /// (default 32 MiB: the first training documents of the stream).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bpe_sample_bytes: Option<u64>,
    /// Verify the sha256 checksum of a token cache on every open, whatever its size
    /// (default false: verified only for bodies up to 256 MiB; see [`crate::cache`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub verify_cache: bool,
}

/// Default of [`DataConfig::bpe_sample_bytes`].
pub const DEFAULT_BPE_SAMPLE_BYTES: u64 = 32 << 20;

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            corpus: CorpusSpec::Embedded,
            tokenizer: TokenizerSpec::default(),
            seq_len: 128,
            val_tokens: 100_000,
            max_train_tokens: None,
            cache_dir: None,
            split_seed: 0,
            bpe_sample_bytes: None,
            verify_cache: false,
        }
    }
}

impl DataConfig {
    /// Checks ranges; the error names the offending key.
    pub fn validate(&self) -> Result<(), DataError> {
        if self.seq_len == 0 || self.seq_len > 1 << 20 {
            return Err(DataError::config(
                "seq_len",
                format!("= {} must be between 1 and 1048576", self.seq_len),
            ));
        }
        if self.val_tokens <= self.seq_len {
            return Err(DataError::config(
                "val_tokens",
                format!(
                    "= {} must exceed seq_len = {} so that validation holds at least one sequence",
                    self.val_tokens, self.seq_len
                ),
            ));
        }
        if self.bpe_sample_bytes == Some(0) {
            return Err(DataError::config(
                "bpe_sample_bytes",
                "= 0 leaves no text to train the BPE on; leave it out for 32 MiB",
            ));
        }
        if let Some(m) = self.max_train_tokens {
            if m <= self.seq_len {
                return Err(DataError::config(
                    "max_train_tokens",
                    format!("= {m} must exceed seq_len = {} (or be left out to use every training token)", self.seq_len),
                ));
            }
        }
        Ok(())
    }

    /// The cache directory in effect: `cache_dir`, else `$ALGOPROG_CACHE`, else `$HOME/.cache/algoprog`.
    pub fn resolved_cache_dir(&self) -> Result<PathBuf, DataError> {
        if let Some(d) = &self.cache_dir {
            return Ok(d.clone());
        }
        if let Some(d) = std::env::var_os("ALGOPROG_CACHE").filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(d));
        }
        if let Some(h) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
            return Ok(PathBuf::from(h).join(".cache").join("algoprog"));
        }
        Err(DataError::NoCacheDir)
    }
}
