//! Configuration, preparation (tokenise, split, cache) and access to a dataset.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::batch::{num_sequences, permutation, Batch, TrainBatches};
use crate::cache::{read_token_cache, write_token_cache, TokenFile};
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
    pub split_seed: u64,
}

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
        }
    }
}

impl DataConfig {
    /// Checks ranges; the error names the offending key.
    pub fn validate(&self) -> Result<(), DataError> {
        if self.seq_len == 0 || self.seq_len > 1 << 20 {
            return Err(DataError::config("seq_len", format!("= {} must be between 1 and 1048576", self.seq_len)));
        }
        if self.val_tokens <= self.seq_len {
            return Err(DataError::config(
                "val_tokens",
                format!("= {} must exceed seq_len = {} so that validation holds at least one sequence", self.val_tokens, self.seq_len),
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
    train: SplitSide,
}

/// A tokenised corpus split into a training and a validation stream.
///
/// Each stream is the concatenation, in split-permutation order, of its
/// documents' tokens, each followed by `<|endoftext|>`.
pub struct Dataset {
    config: DataConfig,
    tokenizer: Arc<dyn Tokenizer>,
    train: Arc<Vec<u32>>,
    val: Arc<Vec<u32>>,
    train_side: SplitSide,
    val_side: SplitSide,
    train_docs_used: usize,
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

impl Dataset {
    /// Loads or builds the dataset `cfg` describes. Prints nothing.
    ///
    /// Split rule (deterministic, by document): documents are permuted with
    /// `split_seed` ([`crate::permutation`]); the validation set is the shortest
    /// prefix of that permutation holding at least `val_tokens` tokens under
    /// GPT-2's tokenizer *and* under the configured tokenizer (end-of-text tokens
    /// counted). The GPT-2 criterion makes the validation text the same for every
    /// tokenizer that is no more compact than GPT-2's. The rest is training data.
    ///
    /// A BPE tokenizer is trained on training documents only, and cached as
    /// `<cache>/tokenizers/bpe-<V>-<hash>/tokenizer.json`, the hash covering the
    /// corpus identity, split seed and `val_tokens`. Token streams are cached as
    /// `<cache>/tokens/<sha256>.tok`, keyed by corpus identity, tokenizer
    /// fingerprint, split seed, `val_tokens` and the stream format; a truncated,
    /// corrupt or mismatched file is rebuilt (see [`Dataset::cache_outcome`]).
    pub fn prepare(cfg: &DataConfig) -> Result<Dataset, DataError> {
        let corpus = cfg.corpus.open()?;
        Self::prepare_with(cfg, corpus.as_ref(), None)
    }

    /// [`Dataset::prepare`] on a corpus of your own (`cfg.corpus` is ignored).
    pub fn prepare_corpus(cfg: &DataConfig, corpus: &dyn Corpus) -> Result<Dataset, DataError> {
        Self::prepare_with(cfg, corpus, None)
    }

    /// [`Dataset::prepare_corpus`] with a progress callback receiving one-line messages.
    pub fn prepare_with(cfg: &DataConfig, corpus: &dyn Corpus, progress: Progress<'_>) -> Result<Dataset, DataError> {
        cfg.validate()?;
        let say = |m: &str| {
            if let Some(p) = progress {
                p(m)
            }
        };
        let cache_dir = cfg.resolved_cache_dir()?;
        let identity = corpus.identity();
        let mut timings = PrepareTimings::default();
        let mut docs: Option<Vec<Document>> = None;
        let load_docs = || -> Result<Vec<Document>, DataError> {
            let d = corpus.documents()?;
            if d.len() < 2 {
                return Err(DataError::Corpus {
                    corpus: identity.clone(),
                    message: format!("has {} document(s); a train/validation split needs at least 2", d.len()),
                });
            }
            Ok(d)
        };

        // 1. The tokenizer.
        let tokenizer: Arc<dyn Tokenizer> = match &cfg.tokenizer {
            TokenizerSpec::Gpt2 => Arc::new(Gpt2Tokenizer),
            TokenizerSpec::Bpe { vocab_size } => {
                let tag = short_hash(&[&identity, &cfg.split_seed.to_string(), &cfg.val_tokens.to_string(), "bpe-v1"]);
                let path = cache_dir.join("tokenizers").join(format!("bpe-{vocab_size}-{tag}")).join("tokenizer.json");
                let cached = if path.exists() {
                    match BpeTokenizer::load(&path) {
                        Ok(t) => Some(t),
                        Err(e) => {
                            say(&format!("{e}; retraining"));
                            None
                        }
                    }
                } else {
                    None
                };
                match cached {
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
        let mut outcome = CacheOutcome::Built;
        let mut loaded: Option<(CacheMeta, Vec<u32>, Vec<u32>)> = None;
        if cache_path.exists() {
            let t0 = Instant::now();
            match read_token_cache(&cache_path, &fingerprint).and_then(|f| parse_cached(&cache_path, f)) {
                Ok(x) => {
                    loaded = Some(x);
                    outcome = CacheOutcome::Loaded;
                }
                Err(e) => {
                    say(&format!("{e}; rebuilding"));
                    outcome = CacheOutcome::Rebuilt { reason: e.to_string() };
                }
            }
            timings.cache_read_s = t0.elapsed().as_secs_f64();
        }
        let (meta, train, val) = match loaded {
            Some(x) => x,
            None => {
                let d = match docs.take() {
                    Some(d) => d,
                    None => load_docs()?,
                };
                say(&format!("tokenising {} documents with {fingerprint}", d.len()));
                let t0 = Instant::now();
                let toks = tokenize_all(tokenizer.as_ref(), &d);
                timings.tokenize_s = t0.elapsed().as_secs_f64();
                let (meta, train, val) = build_streams(&d, &toks, tokenizer.as_ref(), cfg, &identity)?;
                let meta_json = serde_json::to_string(&meta).expect("metadata serialises");
                let file = TokenFile {
                    meta: meta_json,
                    sections: vec![train, val],
                };
                write_token_cache(&cache_path, &fingerprint, tokenizer.vocab_size(), &file)?;
                let mut s = file.sections.into_iter();
                (meta, s.next().unwrap(), s.next().unwrap())
            }
        };

        // 3. Cap, checks, baselines.
        let mut train = train;
        if let Some(m) = cfg.max_train_tokens {
            train.truncate(m);
        }
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
        let mut used = 0usize;
        let mut acc = 0usize;
        for &n in &meta.train.tokens {
            if acc >= train.len() {
                break;
            }
            acc += n;
            used += 1;
        }
        let vocab = tokenizer.vocab_size();
        let n_val_seq = num_sequences(val.len(), cfg.seq_len);
        let val_targets = &val[1..=n_val_seq * cfg.seq_len];
        let unigram_ce = unigram::unigram_cross_entropy(&train, val_targets, vocab);
        let train_entropy = unigram::unigram_entropy(&train, vocab);
        Ok(Dataset {
            config: cfg.clone(),
            tokenizer,
            train: Arc::new(train),
            val: Arc::new(val),
            train_side: meta.train,
            val_side: meta.val,
            train_docs_used: used,
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

    /// The training stream.
    pub fn train_token_ids(&self) -> &[u32] {
        &self.train
    }

    /// The validation stream.
    pub fn val_token_ids(&self) -> &[u32] {
        &self.val
    }

    /// Training sequences: windows of `seq_len + 1` tokens at stride `seq_len`.
    pub fn num_train_sequences(&self) -> usize {
        num_sequences(self.train.len(), self.config.seq_len)
    }

    /// Validation sequences (same windows as training).
    pub fn num_val_sequences(&self) -> usize {
        num_sequences(self.val.len(), self.config.seq_len)
    }

    /// Ids of the training documents in stream order (all of them, before `max_train_tokens`).
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
        idx.chunks(batch_size)
            .map(|c| Batch::gather(&self.val, self.config.seq_len, c))
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
        let lens: Vec<usize> = chunk.par_iter().map(|&i| gpt2.encode(&docs[i].text).len()).collect();
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
        say(&format!("training BPE vocab {vocab_size} on {} documents", docs.len() - k));
        let texts = order[k..].iter().map(|&i| docs[i].text.as_str());
        let tok = BpeTokenizer::train(texts, vocab_size)?;
        let total: usize = order[..k].par_iter().map(|&i| tok.encode(&docs[i].text).len() + 1).sum();
        if total >= cfg.val_tokens {
            return Ok(tok);
        }
        // The BPE is more compact than GPT-2 on this text: grow the validation prefix.
        let rest: Vec<usize> = order[k..].to_vec();
        let extra = prefix_for(&rest, |i| tok.encode(&docs[i].text).len(), cfg.val_tokens - total);
        k += extra;
    }
}

fn build_streams(
    docs: &[Document],
    toks: &[Vec<u32>],
    tok: &dyn Tokenizer,
    cfg: &DataConfig,
    identity: &str,
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
        train: train_side,
    };
    Ok((meta, train, val))
}

fn parse_cached(path: &Path, f: TokenFile) -> Result<(CacheMeta, Vec<u32>, Vec<u32>), DataError> {
    let corrupt = |reason: String| DataError::CacheCorrupt {
        path: path.to_path_buf(),
        reason,
    };
    let meta: CacheMeta = serde_json::from_str(&f.meta).map_err(|e| corrupt(format!("metadata: {e}")))?;
    if f.sections.len() != 2 {
        return Err(corrupt(format!("{} sections, expected 2 (train, validation)", f.sections.len())));
    }
    let mut s = f.sections.into_iter();
    let train = s.next().unwrap();
    let val = s.next().unwrap();
    if meta.train.tokens.iter().sum::<usize>() != train.len() || meta.val.tokens.iter().sum::<usize>() != val.len() {
        return Err(corrupt("document token counts disagree with the streams".into()));
    }
    Ok((meta, train, val))
}
