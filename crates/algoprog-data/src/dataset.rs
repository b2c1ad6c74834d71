//! Configuration, preparation (tokenise, split, cache) and access to a dataset.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::batch::{num_sequences, permutation, Batch, TokenStream, TrainBatches};
use crate::cache::{write_token_cache, TokenCache, TokenFile, TokenView};
use crate::corpus::{hex, Corpus, CorpusSpec, Document};
use crate::tokenizer::{BpeTokenizer, Gpt2Tokenizer, Tokenizer, TokenizerSpec};
use crate::unigram;
use crate::DataError;

/// Version of the token stream layout; part of every cache key.
const STREAM_FORMAT: &str = "algoprog-data/tokens/v1";

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
    /// Minimum number of validation tokens (default 100 000); see [`Dataset::prepare`] for the split rule.
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

/// How [`Dataset::prepare`] obtained the token streams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Read from an existing, valid cache file.
    Loaded,
    /// No cache file existed; tokenised and written.
    Built,
    /// A cache file existed but was truncated, corrupt or for another tokenizer; rebuilt.
    Rebuilt {
        /// The problem found in the old file.
        reason: String,
    },
}

/// Wall-clock seconds spent in each preparation step (0 for steps skipped thanks to the cache).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PrepareTimings {
    /// Training the BPE tokenizer.
    pub bpe_train_s: f64,
    /// Tokenising every document.
    pub tokenize_s: f64,
    /// Reading the token cache.
    pub cache_read_s: f64,
}

/// Document ids and token counts (end-of-text included) of one side of the split.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitSide {
    /// Document ids in stream order.
    pub ids: Vec<String>,
    /// Tokens each document contributes to the stream (its tokens + 1 end-of-text).
    pub tokens: Vec<usize>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct CacheMeta {
    format: String,
    corpus: String,
    tokenizer: String,
    split_seed: u64,
    val_tokens: usize,
    val: SplitSide,
    /// Training side; left empty for streamed corpora (millions of documents).
    train: SplitSide,
    /// Whether the corpus was streamed (split by stream order).
    #[serde(default)]
    streamed: bool,
    /// Number of training documents.
    #[serde(default)]
    train_documents: usize,
    /// Bytes of text tokenised (training and validation).
    #[serde(default)]
    text_bytes: u64,
    /// Count of each token id in the whole training section (so that opening a
    /// large cache does not read every token for the unigram baselines).
    #[serde(default)]
    train_counts: Vec<u64>,
}

/// Receives progress of [`Dataset::prepare_observed`]. Every method has an empty default.
pub trait PrepareObserver: Sync {
    /// A one-line message (a step starting, a cache being rebuilt, ...).
    fn message(&self, _message: &str) {}
    /// Tokenisation progress, cumulative: documents, bytes of text and tokens so far.
    fn tokenised(&self, _documents: u64, _text_bytes: u64, _tokens: u64) {}
}

struct MessageObserver<'a>(Progress<'a>);

impl PrepareObserver for MessageObserver<'_> {
    fn message(&self, m: &str) {
        if let Some(p) = self.0 {
            p(m)
        }
    }
}

/// A tokenised corpus split into a training and a validation stream.
///
/// Each stream is the concatenation of its documents' tokens, each followed by
/// `<|endoftext|>`, read from the memory-mapped token cache.
pub struct Dataset {
    config: DataConfig,
    tokenizer: Arc<dyn Tokenizer>,
    train: TokenStream,
    val: TokenStream,
    train_side: SplitSide,
    val_side: SplitSide,
    train_docs: usize,
    train_docs_used: usize,
    streamed: bool,
    text_bytes: u64,
    corpus_identity: String,
    cache_path: PathBuf,
    cache_outcome: CacheOutcome,
    timings: PrepareTimings,
    unigram_ce: f64,
    train_entropy: f64,
}

impl std::fmt::Debug for Dataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dataset")
            .field("corpus", &self.corpus_identity)
            .field("tokenizer", &self.tokenizer.fingerprint())
            .field("train_tokens", &self.train.len())
            .field("val_tokens", &self.val.len())
            .field("train_documents", &self.train_docs_used)
            .field("val_documents", &self.val_side.ids.len())
            .finish()
    }
}

/// Optional progress reporting: called with one-line messages.
pub type Progress<'a> = Option<&'a (dyn Fn(&str) + Sync)>;

/// Documents handed to the tokenising workers at a time (by bytes of text).
const CHUNK_BYTES: usize = 4 << 20;
/// Chunks queued between the reader thread and the tokenisers.
const CHUNKS_QUEUED: usize = 2;

impl Dataset {
    /// Loads or builds the dataset `cfg` describes. Prints nothing.
    ///
    /// **Small corpora** (the embedded one, [`crate::InMemoryCorpus`]): documents
    /// are permuted with `split_seed` ([`crate::permutation`]); the validation set
    /// is the shortest prefix of that permutation holding at least `val_tokens`
    /// tokens under GPT-2's tokenizer *and* under the configured tokenizer
    /// (end-of-text tokens counted). The GPT-2 criterion makes the validation text
    /// the same for every tokenizer that is no more compact than GPT-2's. The rest
    /// is training data. A BPE is trained on all training documents.
    ///
    /// **Streamed corpora** (`dir`, `c4`; [`Corpus::is_streamed`]): the same rule
    /// applied to the corpus's own fixed order (files in sorted order, lines in
    /// file order; C4's shards are already shuffled): the validation set is the
    /// shortest prefix of the document stream with `val_tokens` under GPT-2 and
    /// under the configured tokenizer, so it does not depend on `max_chars`,
    /// `max_train_tokens` or the number of shards, and is identical in every run
    /// of a study. `split_seed` does not apply. Everything after it is tokenised
    /// in one pass: a reader thread parses documents into chunks of 4 MiB of text
    /// (at most 2 queued), rayon tokenises each chunk, and tokens go straight into
    /// the cache file, so memory does not grow with the corpus. A BPE is trained on
    /// the first `bpe_sample_bytes` (default 32 MiB) of training text. With
    /// `max_train_tokens` set, tokenisation stops once the training stream holds
    /// that many tokens (the cap is then part of the cache key).
    ///
    /// A BPE tokenizer is cached as `<cache>/tokenizers/bpe-<V>-<hash>/tokenizer.json`,
    /// the hash covering the corpus identity and split settings. Token streams are
    /// cached as `<cache>/tokens/<hash>.tok`, keyed by corpus identity, tokenizer
    /// fingerprint, split settings and the stream format, and memory-mapped; a
    /// truncated, corrupt or mismatched file is rebuilt (see [`Dataset::cache_outcome`]).
    pub fn prepare(cfg: &DataConfig) -> Result<Dataset, DataError> {
        let corpus = cfg.corpus.open()?;
        Self::prepare_with(cfg, corpus.as_ref(), None)
    }

    /// [`Dataset::prepare`] on a corpus of your own (`cfg.corpus` is ignored).
    pub fn prepare_corpus(cfg: &DataConfig, corpus: &dyn Corpus) -> Result<Dataset, DataError> {
        Self::prepare_with(cfg, corpus, None)
    }

    /// [`Dataset::prepare_corpus`] with a progress callback receiving one-line messages.
    pub fn prepare_with(
        cfg: &DataConfig,
        corpus: &dyn Corpus,
        progress: Progress<'_>,
    ) -> Result<Dataset, DataError> {
        Self::run(cfg, corpus, &MessageObserver(progress), true)
    }

    /// [`Dataset::prepare_corpus`] reporting to an observer (messages and tokenisation progress).
    pub fn prepare_observed(
        cfg: &DataConfig,
        corpus: &dyn Corpus,
        observer: &dyn PrepareObserver,
    ) -> Result<Dataset, DataError> {
        Self::run(cfg, corpus, observer, true)
    }

    /// Opens an already prepared dataset without building anything: a missing
    /// tokenizer or token cache is [`DataError::NotPrepared`]; a damaged one is
    /// reported, not rebuilt.
    pub fn load(cfg: &DataConfig, corpus: &dyn Corpus) -> Result<Dataset, DataError> {
        Self::run(cfg, corpus, &MessageObserver(None), false)
    }

    fn run(
        cfg: &DataConfig,
        corpus: &dyn Corpus,
        obs: &dyn PrepareObserver,
        build: bool,
    ) -> Result<Dataset, DataError> {
        cfg.validate()?;
        if corpus.is_streamed() {
            return Self::run_streamed(cfg, corpus, obs, build);
        }
        let say = |m: &str| obs.message(m);
        let cache_dir = cfg.resolved_cache_dir()?;
        let identity = corpus.identity();
        let mut timings = PrepareTimings::default();
        let mut docs: Option<Vec<Document>> = None;
        let load_docs = || -> Result<Vec<Document>, DataError> {
            let d = corpus.documents()?;
            if d.len() < 2 {
                return Err(DataError::Corpus {
                    corpus: identity.clone(),
                    message: format!(
                        "has {} document(s); a train/validation split needs at least 2",
                        d.len()
                    ),
                });
            }
            Ok(d)
        };

        // 1. The tokenizer.
        let tokenizer: Arc<dyn Tokenizer> = match &cfg.tokenizer {
            TokenizerSpec::Gpt2 => Arc::new(Gpt2Tokenizer),
            TokenizerSpec::Bpe { vocab_size } => {
                let tag = short_hash(&[
                    &identity,
                    &cfg.split_seed.to_string(),
                    &cfg.val_tokens.to_string(),
                    "bpe-v1",
                ]);
                let path = cache_dir
                    .join("tokenizers")
                    .join(format!("bpe-{vocab_size}-{tag}"))
                    .join("tokenizer.json");
                match load_cached_bpe(&path, build, &say)? {
                    Some(t) => Arc::new(t),
                    None => {
                        let d = docs.insert(load_docs()?);
                        let t0 = Instant::now();
                        let t = train_bpe_on_split(d, cfg, *vocab_size, &identity, &say)?;
                        timings.bpe_train_s = t0.elapsed().as_secs_f64();
                        let json = t.to_json()?;
                        crate::cache::atomic_write(&path, &[json.as_bytes()])?;
                        Arc::new(t)
                    }
                }
            }
        };
        let fingerprint = tokenizer.fingerprint();

        // 2. The token streams.
        let key = short_hash(&[
            STREAM_FORMAT,
            &identity,
            &fingerprint,
            &cfg.split_seed.to_string(),
            &cfg.val_tokens.to_string(),
        ]);
        let cache_path = cache_dir.join("tokens").join(format!("{key}.tok"));
        let (cache, meta, outcome) = match open_existing(
            &cache_path,
            &fingerprint,
            cfg.verify_cache,
            build,
            &mut timings,
            &say,
        )? {
            Ok((c, m)) => (c, m, CacheOutcome::Loaded),
            Err(outcome) => {
                let d = match docs.take() {
                    Some(d) => d,
                    None => load_docs()?,
                };
                say(&format!(
                    "tokenising {} documents with {fingerprint}",
                    d.len()
                ));
                let t0 = Instant::now();
                let toks = tokenize_all(tokenizer.as_ref(), &d);
                timings.tokenize_s = t0.elapsed().as_secs_f64();
                let text_bytes: u64 = d.iter().map(|x| x.text.len() as u64).sum();
                let n_tok: u64 = toks.iter().map(|t| t.len() as u64 + 1).sum();
                obs.tokenised(d.len() as u64, text_bytes, n_tok);
                let (meta, train, val) =
                    build_streams(&d, &toks, tokenizer.as_ref(), cfg, &identity, text_bytes)?;
                drop(toks);
                let meta_json = serde_json::to_string(&meta).expect("metadata serialises");
                let file = TokenFile {
                    meta: meta_json,
                    sections: vec![train, val],
                };
                write_token_cache(&cache_path, &fingerprint, tokenizer.vocab_size(), &file)?;
                drop(file);
                let cache = TokenCache::open_written(&cache_path, &fingerprint)?;
                (cache, meta, outcome)
            }
        };
        Self::finish(
            cfg, tokenizer, cache, meta, identity, cache_path, outcome, timings,
        )
    }

    /// The streamed path of [`Dataset::prepare`] (see there for the split rule).
    fn run_streamed(
        cfg: &DataConfig,
        corpus: &dyn Corpus,
        obs: &dyn PrepareObserver,
        build: bool,
    ) -> Result<Dataset, DataError> {
        let say = |m: &str| obs.message(m);
        let cache_dir = cfg.resolved_cache_dir()?;
        let identity = corpus.identity();
        let sample_bytes = cfg.bpe_sample_bytes.unwrap_or(DEFAULT_BPE_SAMPLE_BYTES);
        let mut timings = PrepareTimings::default();
        let mut head: Option<Head<'_>> = None;
        let open_head =
            || -> Result<Head<'_>, DataError> { Ok(Head::new(corpus.stream()?, identity.clone())) };

        // 1. The tokenizer.
        let tokenizer: Arc<dyn Tokenizer> = match &cfg.tokenizer {
            TokenizerSpec::Gpt2 => Arc::new(Gpt2Tokenizer),
            TokenizerSpec::Bpe { vocab_size } => {
                let tag = short_hash(&[
                    &identity,
                    "streamed",
                    &cfg.val_tokens.to_string(),
                    &sample_bytes.to_string(),
                    "bpe-v1",
                ]);
                let path = cache_dir
                    .join("tokenizers")
                    .join(format!("bpe-{vocab_size}-{tag}"))
                    .join("tokenizer.json");
                match load_cached_bpe(&path, build, &say)? {
                    Some(t) => Arc::new(t),
                    None => {
                        let h = head.insert(open_head()?);
                        let t0 = Instant::now();
                        let t = h.train_bpe(cfg, *vocab_size, sample_bytes, &say)?;
                        timings.bpe_train_s = t0.elapsed().as_secs_f64();
                        let json = t.to_json()?;
                        crate::cache::atomic_write(&path, &[json.as_bytes()])?;
                        Arc::new(t)
                    }
                }
            }
        };
        let fingerprint = tokenizer.fingerprint();

        // 2. The token streams.
        let cap = cfg
            .max_train_tokens
            .map(|m| m.to_string())
            .unwrap_or_else(|| "all".into());
        let key = short_hash(&[
            STREAM_FORMAT,
            &identity,
            &fingerprint,
            "streamed",
            &cfg.val_tokens.to_string(),
            &cap,
        ]);
        let cache_path = cache_dir.join("tokens").join(format!("{key}.tok"));
        let (cache, meta, outcome) = match open_existing(
            &cache_path,
            &fingerprint,
            cfg.verify_cache,
            build,
            &mut timings,
            &say,
        )? {
            Ok((c, m)) => (c, m, CacheOutcome::Loaded),
            Err(outcome) => {
                let h = match head.take() {
                    Some(h) => h,
                    None => open_head()?,
                };
                let t0 = Instant::now();
                let meta = h.tokenize_into(cfg, tokenizer.as_ref(), &cache_path, obs)?;
                timings.tokenize_s = t0.elapsed().as_secs_f64();
                let cache = TokenCache::open_written(&cache_path, &fingerprint)?;
                (cache, meta, outcome)
            }
        };
        Self::finish(
            cfg, tokenizer, cache, meta, identity, cache_path, outcome, timings,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        cfg: &DataConfig,
        tokenizer: Arc<dyn Tokenizer>,
        cache: TokenCache,
        meta: CacheMeta,
        identity: String,
        cache_path: PathBuf,
        outcome: CacheOutcome,
        timings: PrepareTimings,
    ) -> Result<Dataset, DataError> {
        let cache = Arc::new(cache);
        let full_train = cache.section(0).len();
        let train_len = cfg
            .max_train_tokens
            .map_or(full_train, |m| m.min(full_train));
        let train = TokenStream::new(cache.clone(), 0, train_len);
        let val = TokenStream::new(cache.clone(), 1, cache.section(1).len());
        if num_sequences(train.len(), cfg.seq_len) == 0 {
            return Err(DataError::config(
                "val_tokens",
                format!(
                    "= {} leaves {} training tokens, fewer than one sequence of seq_len = {}; lower val_tokens or use a larger corpus",
                    cfg.val_tokens,
                    train.len(),
                    cfg.seq_len
                ),
            ));
        }
        if num_sequences(val.len(), cfg.seq_len) == 0 {
            return Err(DataError::config(
                "seq_len",
                format!("= {} is longer than the {} validation tokens; lower seq_len or raise val_tokens", cfg.seq_len, val.len()),
            ));
        }
        let used = if !meta.train.tokens.is_empty() || meta.train_documents == 0 {
            let mut used = 0usize;
            let mut acc = 0usize;
            for &n in &meta.train.tokens {
                if acc >= train.len() {
                    break;
                }
                acc += n;
                used += 1;
            }
            used
        } else if train_len == full_train {
            meta.train_documents
        } else {
            // Documents end with end-of-text, which no document's own tokens contain.
            let eot = tokenizer.end_of_text();
            let v = train.view();
            v.slice(..train_len - 1)
                .iter()
                .filter(|&t| t == eot)
                .count()
                + 1
        };
        let vocab = tokenizer.vocab_size();
        let n_val_seq = num_sequences(val.len(), cfg.seq_len);
        let train_counts = if meta.train_counts.len() == vocab && train_len == full_train {
            meta.train_counts
        } else {
            unigram::counts_iter(train.view().iter(), vocab)
        };
        let unigram_ce = unigram::cross_entropy_from_counts(
            &train_counts,
            train.len(),
            val.view().slice(1..=n_val_seq * cfg.seq_len).iter(),
            vocab,
        );
        let train_entropy = unigram::entropy_from_counts(&train_counts, train.len());
        Ok(Dataset {
            config: cfg.clone(),
            tokenizer,
            train,
            val,
            train_docs: meta.train_documents.max(meta.train.ids.len()),
            train_side: meta.train,
            val_side: meta.val,
            train_docs_used: used,
            streamed: meta.streamed,
            text_bytes: meta.text_bytes,
            corpus_identity: identity,
            cache_path,
            cache_outcome: outcome,
            timings,
            unigram_ce,
            train_entropy,
        })
    }

    /// Number of token ids of the tokenizer.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.vocab_size()
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> Arc<dyn Tokenizer> {
        self.tokenizer.clone()
    }

    /// The tokenizer's fingerprint.
    pub fn fingerprint(&self) -> String {
        self.tokenizer.fingerprint()
    }

    /// The configuration this dataset was prepared from.
    pub fn config(&self) -> &DataConfig {
        &self.config
    }

    /// Tokens per sequence.
    pub fn seq_len(&self) -> usize {
        self.config.seq_len
    }

    /// Tokens in the training stream (after `max_train_tokens`).
    pub fn train_tokens(&self) -> usize {
        self.train.len()
    }

    /// Tokens in the validation stream.
    pub fn val_tokens(&self) -> usize {
        self.val.len()
    }

    /// The training stream (a view into the memory-mapped cache).
    pub fn train_token_ids(&self) -> TokenView<'_> {
        self.train.view()
    }

    /// The validation stream (a view into the memory-mapped cache).
    pub fn val_token_ids(&self) -> TokenView<'_> {
        self.val.view()
    }

    /// Number of training documents (all of them, before `max_train_tokens`).
    pub fn train_document_count(&self) -> usize {
        self.train_docs
    }

    /// Bytes of text that were tokenised (training and validation documents).
    pub fn text_bytes(&self) -> u64 {
        self.text_bytes
    }

    /// Whether the corpus was streamed (split by stream order; see [`Dataset::prepare`]).
    pub fn is_streamed(&self) -> bool {
        self.streamed
    }

    /// Training sequences: windows of `seq_len + 1` tokens at stride `seq_len`.
    pub fn num_train_sequences(&self) -> usize {
        num_sequences(self.train.len(), self.config.seq_len)
    }

    /// Validation sequences (same windows as training).
    pub fn num_val_sequences(&self) -> usize {
        num_sequences(self.val.len(), self.config.seq_len)
    }

    /// Ids of the training documents in stream order (all of them, before
    /// `max_train_tokens`); empty for streamed corpora, which keep only the count
    /// ([`Dataset::train_document_count`]).
    pub fn train_documents(&self) -> &[String] {
        &self.train_side.ids
    }

    /// Number of training documents with at least one token in the (capped) training stream.
    pub fn train_documents_used(&self) -> usize {
        self.train_docs_used
    }

    /// Ids of the validation documents in stream order.
    pub fn val_documents(&self) -> &[String] {
        &self.val_side.ids
    }

    /// Training side of the split: ids and per-document token counts.
    pub fn train_split(&self) -> &SplitSide {
        &self.train_side
    }

    /// Validation side of the split: ids and per-document token counts.
    pub fn val_split(&self) -> &SplitSide {
        &self.val_side
    }

    /// Identity of the corpus (part of the cache keys).
    pub fn corpus_identity(&self) -> &str {
        &self.corpus_identity
    }

    /// The token cache file used.
    pub fn cache_path(&self) -> &Path {
        &self.cache_path
    }

    /// Whether the token streams came from the cache.
    pub fn cache_outcome(&self) -> &CacheOutcome {
        &self.cache_outcome
    }

    /// Time spent preparing.
    pub fn timings(&self) -> &PrepareTimings {
        &self.timings
    }

    /// Deterministic, endless stream of training batches for `seed`: each epoch
    /// a fresh ChaCha8 permutation of the sequence indices (see [`TrainBatches`]).
    /// Panics if `batch_size` is 0.
    pub fn train_batches(&self, batch_size: usize, seed: u64) -> TrainBatches {
        TrainBatches::new(self.train.clone(), self.config.seq_len, batch_size, seed)
    }

    /// Every validation sequence in stream order, in batches of `batch_size`
    /// (the last may be smaller). The same for every run. Panics if `batch_size` is 0.
    pub fn val_batches(&self, batch_size: usize) -> Vec<Batch> {
        assert!(batch_size > 0, "val_batches: batch_size must be at least 1");
        let idx: Vec<usize> = (0..self.num_val_sequences()).collect();
        let view = self.val.view();
        idx.chunks(batch_size)
            .map(|c| Batch::gather_view(view, self.config.seq_len, c))
            .collect()
    }

    /// Unigram baseline in nats per token: the cross-entropy of the validation
    /// *targets* (the tokens [`Dataset::val_batches`] asks a model to predict)
    /// under the add-one-smoothed unigram distribution of the (capped) training
    /// stream, `p(t) = (c_t + 1) / (N + V)` ([`crate::unigram_cross_entropy`]).
    /// A trained model's validation loss must be below it.
    pub fn unigram_entropy(&self) -> f64 {
        self.unigram_ce
    }

    /// Plain entropy (nats per token) of the training stream's token counts
    /// ([`crate::unigram_entropy`]).
    pub fn train_unigram_entropy(&self) -> f64 {
        self.train_entropy
    }
}

fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex(&h.finalize())[..32].to_string()
}

fn tokenize_all(tok: &dyn Tokenizer, docs: &[Document]) -> Vec<Vec<u32>> {
    docs.par_iter().map(|d| tok.encode(&d.text)).collect()
}

/// Length of the shortest prefix of `order` whose stream tokens (document tokens
/// + 1 end-of-text each) reach `target`; `order.len()` if none does.
fn prefix_for(order: &[usize], lens: impl Fn(usize) -> usize, target: usize) -> usize {
    let mut acc = 0;
    for (k, &i) in order.iter().enumerate() {
        acc += lens(i) + 1;
        if acc >= target {
            return k + 1;
        }
    }
    order.len()
}

/// Shortest prefix of `order` holding `target` GPT-2 tokens, tokenising only as
/// far as needed (in parallel chunks).
fn gpt2_prefix(docs: &[Document], order: &[usize], target: usize) -> usize {
    let gpt2 = Gpt2Tokenizer;
    let mut acc = 0;
    let mut k = 0;
    for chunk in order.chunks(8) {
        let lens: Vec<usize> = chunk
            .par_iter()
            .map(|&i| gpt2.encode(&docs[i].text).len())
            .collect();
        for l in lens {
            acc += l + 1;
            k += 1;
            if acc >= target {
                return k;
            }
        }
    }
    order.len()
}

fn too_small(identity: &str, cfg: &DataConfig, docs: usize) -> DataError {
    DataError::Config {
        key: "val_tokens",
        message: format!(
            "= {} needs every one of the {docs} documents of corpus {identity}, leaving none to train on; lower val_tokens or use a larger corpus",
            cfg.val_tokens
        ),
    }
}

/// Trains a BPE on the training side of the split: the validation prefix is
/// first sized with GPT-2 tokens; if the trained BPE needs a longer prefix to
/// reach `val_tokens`, it is retrained without those documents too.
fn train_bpe_on_split(
    docs: &[Document],
    cfg: &DataConfig,
    vocab_size: usize,
    identity: &str,
    say: &dyn Fn(&str),
) -> Result<BpeTokenizer, DataError> {
    let order = permutation(docs.len(), cfg.split_seed, 0);
    let mut k = gpt2_prefix(docs, &order, cfg.val_tokens);
    loop {
        if k >= docs.len() {
            return Err(too_small(identity, cfg, docs.len()));
        }
        say(&format!(
            "training BPE vocab {vocab_size} on {} documents",
            docs.len() - k
        ));
        let texts = order[k..].iter().map(|&i| docs[i].text.as_str());
        let tok = BpeTokenizer::train(texts, vocab_size)?;
        let total: usize = order[..k]
            .par_iter()
            .map(|&i| tok.encode(&docs[i].text).len() + 1)
            .sum();
        if total >= cfg.val_tokens {
            return Ok(tok);
        }
        // The BPE is more compact than GPT-2 on this text: grow the validation prefix.
        let rest: Vec<usize> = order[k..].to_vec();
        let extra = prefix_for(
            &rest,
            |i| tok.encode(&docs[i].text).len(),
            cfg.val_tokens - total,
        );
        k += extra;
    }
}

fn build_streams(
    docs: &[Document],
    toks: &[Vec<u32>],
    tok: &dyn Tokenizer,
    cfg: &DataConfig,
    identity: &str,
    text_bytes: u64,
) -> Result<(CacheMeta, Vec<u32>, Vec<u32>), DataError> {
    let order = permutation(docs.len(), cfg.split_seed, 0);
    let k_tok = prefix_for(&order, |i| toks[i].len(), cfg.val_tokens);
    let k_ref = match tok.fingerprint().starts_with("gpt2") {
        true => k_tok,
        false => gpt2_prefix(docs, &order, cfg.val_tokens),
    };
    let k = k_tok.max(k_ref);
    let val_total: usize = order[..k].iter().map(|&i| toks[i].len() + 1).sum();
    if k >= docs.len() || val_total < cfg.val_tokens {
        return Err(too_small(identity, cfg, docs.len()));
    }
    let eot = tok.end_of_text();
    let side = |idx: &[usize]| -> (SplitSide, Vec<u32>) {
        let mut s = SplitSide::default();
        let mut stream = Vec::with_capacity(idx.iter().map(|&i| toks[i].len() + 1).sum());
        for &i in idx {
            s.ids.push(docs[i].id.clone());
            s.tokens.push(toks[i].len() + 1);
            stream.extend_from_slice(&toks[i]);
            stream.push(eot);
        }
        (s, stream)
    };
    let (val_side, val) = side(&order[..k]);
    let (train_side, train) = side(&order[k..]);
    let meta = CacheMeta {
        format: STREAM_FORMAT.to_string(),
        corpus: identity.to_string(),
        tokenizer: tok.fingerprint(),
        split_seed: cfg.split_seed,
        val_tokens: cfg.val_tokens,
        val: val_side,
        train_documents: train_side.ids.len(),
        train: train_side,
        streamed: false,
        text_bytes,
        train_counts: unigram::counts_iter(train.iter().copied(), tok.vocab_size()),
    };
    Ok((meta, train, val))
}

fn parse_meta(cache: &TokenCache) -> Result<CacheMeta, DataError> {
    let corrupt = |reason: String| DataError::CacheCorrupt {
        path: cache.path().to_path_buf(),
        reason,
    };
    let meta: CacheMeta =
        serde_json::from_str(cache.meta()).map_err(|e| corrupt(format!("metadata: {e}")))?;
    if cache.num_sections() != 2 {
        return Err(corrupt(format!(
            "{} sections, expected 2 (train, validation)",
            cache.num_sections()
        )));
    }
    let (train, val) = (cache.section(0).len(), cache.section(1).len());
    let train_ok = meta.streamed || meta.train.tokens.iter().sum::<usize>() == train;
    if !train_ok || meta.val.tokens.iter().sum::<usize>() != val {
        return Err(corrupt(
            "document token counts disagree with the streams".into(),
        ));
    }
    Ok(meta)
}

/// Loads a cached BPE tokenizer: `Ok(None)` when it must be trained.
fn load_cached_bpe(
    path: &Path,
    build: bool,
    say: &dyn Fn(&str),
) -> Result<Option<BpeTokenizer>, DataError> {
    if path.exists() {
        match BpeTokenizer::load(path) {
            Ok(t) => return Ok(Some(t)),
            Err(e) if build => say(&format!("{e}; retraining")),
            Err(e) => return Err(e),
        }
    } else if !build {
        return Err(DataError::NotPrepared {
            what: "the BPE tokenizer".into(),
            path: path.to_path_buf(),
        });
    }
    Ok(None)
}

/// Opens the token cache at `path` if it exists and is valid: `Ok(Ok(..))`;
/// `Ok(Err(outcome))` when it must be (re)built; errors when `build` is false.
fn open_existing(
    path: &Path,
    fingerprint: &str,
    verify: bool,
    build: bool,
    timings: &mut PrepareTimings,
    say: &dyn Fn(&str),
) -> Result<Result<(TokenCache, CacheMeta), CacheOutcome>, DataError> {
    if !path.exists() {
        if !build {
            return Err(DataError::NotPrepared {
                what: "the token cache".into(),
                path: path.to_path_buf(),
            });
        }
        return Ok(Err(CacheOutcome::Built));
    }
    let t0 = Instant::now();
    let res =
        TokenCache::open(path, fingerprint, verify).and_then(|c| parse_meta(&c).map(|m| (c, m)));
    timings.cache_read_s = t0.elapsed().as_secs_f64();
    match res {
        Ok(x) => Ok(Ok(x)),
        Err(e) if build => {
            say(&format!("{e}; rebuilding"));
            Ok(Err(CacheOutcome::Rebuilt {
                reason: e.to_string(),
            }))
        }
        Err(e) => Err(e),
    }
}

/// The first documents of a streamed corpus, held in memory while the
/// validation prefix and the BPE sample are chosen, and the rest of the stream.
struct Head<'a> {
    rest: crate::corpus::DocStream<'a>,
    docs: Vec<Document>,
    ended: bool,
    identity: String,
}

impl<'a> Head<'a> {
    fn new(rest: crate::corpus::DocStream<'a>, identity: String) -> Self {
        Head {
            rest,
            docs: Vec::new(),
            ended: false,
            identity,
        }
    }

    /// Pulls one more document; false at the end of the stream.
    fn pull(&mut self) -> Result<bool, DataError> {
        if self.ended {
            return Ok(false);
        }
        match self.rest.next() {
            Some(d) => {
                self.docs.push(d?);
                Ok(true)
            }
            None => {
                self.ended = true;
                Ok(false)
            }
        }
    }

    fn too_small(&self, cfg: &DataConfig) -> DataError {
        DataError::Config {
            key: "val_tokens",
            message: format!(
                "= {} needs every one of the {} documents of corpus {}, leaving none to train on; lower val_tokens or use a larger corpus (more shards, a larger max_chars)",
                cfg.val_tokens,
                self.docs.len(),
                self.identity
            ),
        }
    }

    /// Shortest prefix reaching `target` tokens of `len` (+1 each), pulling documents as needed.
    fn prefix(
        &mut self,
        target: usize,
        len: &(dyn Fn(&str) -> usize + Sync),
    ) -> Result<usize, DataError> {
        let mut acc = 0;
        let mut k = 0;
        loop {
            while self.docs.len() < k + 8 && self.pull()? {}
            if k == self.docs.len() {
                return Ok(k);
            }
            let end = (k + 8).min(self.docs.len());
            let lens: Vec<usize> = self.docs[k..end].par_iter().map(|d| len(&d.text)).collect();
            for l in lens {
                acc += l + 1;
                k += 1;
                if acc >= target {
                    return Ok(k);
                }
            }
        }
    }

    /// Shortest prefix with `target` GPT-2 tokens.
    fn gpt2_prefix(&mut self, target: usize) -> Result<usize, DataError> {
        let gpt2 = Gpt2Tokenizer;
        let k = self.prefix(target, &|t| gpt2.encode(t).len())?;
        Ok(k)
    }

    /// Trains a BPE on up to `sample` bytes of the documents after the validation
    /// prefix, growing the prefix (and retraining) until it holds `val_tokens`
    /// under the BPE too.
    fn train_bpe(
        &mut self,
        cfg: &DataConfig,
        vocab_size: usize,
        sample: u64,
        say: &dyn Fn(&str),
    ) -> Result<BpeTokenizer, DataError> {
        let mut k = self.gpt2_prefix(cfg.val_tokens)?;
        loop {
            let mut bytes: u64 = self.docs[k..].iter().map(|d| d.text.len() as u64).sum();
            while bytes < sample && self.pull()? {
                bytes += self.docs.last().map_or(0, |d| d.text.len() as u64);
            }
            // The sample: documents after the prefix up to `sample` bytes.
            let mut end = k;
            let mut acc = 0u64;
            while end < self.docs.len() && acc < sample {
                acc += self.docs[end].text.len() as u64;
                end += 1;
            }
            if end == k {
                return Err(self.too_small(cfg));
            }
            say(&format!(
                "training BPE vocab {vocab_size} on {} documents ({acc} bytes)",
                end - k
            ));
            let tok = BpeTokenizer::train(
                self.docs[k..end].iter().map(|d| d.text.as_str()),
                vocab_size,
            )?;
            let total: usize = self.docs[..k]
                .par_iter()
                .map(|d| tok.encode(&d.text).len() + 1)
                .sum();
            if total >= cfg.val_tokens {
                return Ok(tok);
            }
            // The BPE is more compact than GPT-2 on this text: grow the validation prefix.
            let mut acc_tok = total;
            while acc_tok < cfg.val_tokens {
                if k == self.docs.len() && !self.pull()? {
                    return Err(self.too_small(cfg));
                }
                acc_tok += tok.encode(&self.docs[k].text).len() + 1;
                k += 1;
            }
        }
    }

    /// Chooses the validation prefix, tokenises it and streams the rest of the
    /// corpus through the tokenizer into the cache file at `path`.
    fn tokenize_into(
        mut self,
        cfg: &DataConfig,
        tok: &dyn Tokenizer,
        path: &Path,
        obs: &dyn PrepareObserver,
    ) -> Result<CacheMeta, DataError> {
        let k_ref = self.gpt2_prefix(cfg.val_tokens)?;
        let k_tok = if tok.fingerprint().starts_with("gpt2") {
            k_ref
        } else {
            self.prefix(cfg.val_tokens, &|t| tok.encode(t).len())?
        };
        let k = k_ref.max(k_tok);
        if k >= self.docs.len() && !self.pull()? {
            return Err(self.too_small(cfg));
        }
        let eot = tok.end_of_text();
        obs.message(&format!(
            "validation: the first {k} documents; tokenising the rest with {}",
            tok.fingerprint()
        ));
        let val_toks: Vec<Vec<u32>> = self.docs[..k]
            .par_iter()
            .map(|d| tok.encode(&d.text))
            .collect();
        let mut val_side = SplitSide::default();
        let mut val = Vec::new();
        let mut text_bytes: u64 = 0;
        for (d, t) in self.docs[..k].iter().zip(&val_toks) {
            val_side.ids.push(d.id.clone());
            val_side.tokens.push(t.len() + 1);
            val.extend_from_slice(t);
            val.push(eot);
            text_bytes += d.text.len() as u64;
        }
        drop(val_toks);
        if val.len() < cfg.val_tokens {
            return Err(self.too_small(cfg));
        }
        let mut docs_done = k as u64;
        let mut tokens_done = val.len() as u64;
        obs.tokenised(docs_done, text_bytes, tokens_done);

        let mut writer =
            crate::cache::TokenCacheWriter::create(path, &tok.fingerprint(), tok.vocab_size(), 2)?;
        let cap = cfg.max_train_tokens.map(|m| m as u64);
        let tail: Vec<Document> = self.docs.split_off(k);
        let rest = self.rest;
        let mut train_docs = 0usize;
        let mut counts = vec![0u64; tok.vocab_size()];
        std::thread::scope(|s| -> Result<(), DataError> {
            let (tx, rx) =
                std::sync::mpsc::sync_channel::<Result<Vec<Document>, DataError>>(CHUNKS_QUEUED);
            s.spawn(move || {
                let mut chunk = Vec::new();
                let mut bytes = 0usize;
                for d in tail.into_iter().map(Ok).chain(rest) {
                    match d {
                        Ok(d) => {
                            bytes += d.text.len();
                            chunk.push(d);
                            if bytes >= CHUNK_BYTES {
                                if tx.send(Ok(std::mem::take(&mut chunk))).is_err() {
                                    return;
                                }
                                bytes = 0;
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
                if !chunk.is_empty() {
                    let _ = tx.send(Ok(chunk));
                }
            });
            for msg in rx {
                let chunk = msg?;
                let toks: Vec<Vec<u32>> = chunk.par_iter().map(|d| tok.encode(&d.text)).collect();
                let mut full = false;
                for (d, t) in chunk.iter().zip(&toks) {
                    let room = cap.map_or(usize::MAX, |c| (c - writer.section_len()) as usize);
                    let t = &t[..t.len().min(room)];
                    writer.push(t)?;
                    for &id in t {
                        counts[id as usize] += 1;
                    }
                    if t.len() < room {
                        writer.push(&[eot])?;
                        counts[eot as usize] += 1;
                    }
                    train_docs += 1;
                    docs_done += 1;
                    text_bytes += d.text.len() as u64;
                    tokens_done += t.len() as u64 + 1;
                    if cap.is_some_and(|c| writer.section_len() >= c) {
                        full = true;
                        break;
                    }
                }
                obs.tokenised(docs_done, text_bytes, tokens_done);
                if full {
                    break;
                }
            }
            Ok(())
        })?;
        if train_docs == 0 {
            return Err(self_too_small(cfg, k, &self.identity));
        }
        writer.next_section()?;
        writer.push(&val)?;
        let meta = CacheMeta {
            format: STREAM_FORMAT.to_string(),
            corpus: self.identity.clone(),
            tokenizer: tok.fingerprint(),
            split_seed: cfg.split_seed,
            val_tokens: cfg.val_tokens,
            val: val_side,
            train: SplitSide::default(),
            streamed: true,
            train_documents: train_docs,
            text_bytes,
            train_counts: counts,
        };
        writer.finish(&serde_json::to_string(&meta).expect("metadata serialises"))?;
        Ok(meta)
    }
}

fn self_too_small(cfg: &DataConfig, docs: usize, identity: &str) -> DataError {
    too_small(identity, cfg, docs)
}
