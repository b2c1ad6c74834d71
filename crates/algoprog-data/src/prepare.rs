//! Preparation: one path from a corpus to a tokenizer and a token cache.
//!
//! Both kinds of corpus go through the same steps (the split rule is
//! documented on [`crate::Dataset::prepare`]):
//!
//! 1. [`SplitOrder`] reads the documents in split order: a seeded
//!    permutation of every document for small corpora, the corpus's own
//!    stream order for streamed ones (pulled lazily, bounded memory).
//! 2. The validation set is the shortest prefix of that order holding
//!    `val_tokens` under GPT-2 and under the configured tokenizer.
//! 3. A BPE tokenizer, if asked for, is trained on the documents after the
//!    prefix: all of them for small corpora, the first `bpe_sample_bytes` for
//!    streamed ones (the prefix grows and the BPE is retrained if the BPE is
//!    more compact than GPT-2 on the validation text).
//! 4. The training documents are tokenised in one streaming pass straight
//!    into the cache file (a reader thread, rayon per chunk); the validation
//!    stream follows. Small corpora also record every training document's id
//!    and token count; streamed ones may stop at `max_train_tokens`.
//!
//! The two kinds differ only in [`SplitKind`]: the order, the BPE sample, the
//! cap and the cache keys.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::batch::permutation;
use crate::cache::{TokenCache, TokenCacheWriter};
use crate::config::{DataConfig, DEFAULT_BPE_SAMPLE_BYTES};
use crate::corpus::{hex, Corpus, DocStream, Document};
use crate::tokenizer::{BpeTokenizer, Gpt2Tokenizer, Tokenizer, TokenizerSpec};
use crate::DataError;

/// Version of the token stream layout; part of every cache key.
const STREAM_FORMAT: &str = "algoprog-data/tokens/v1";

/// Documents handed to the tokenising workers at a time (by bytes of text).
const CHUNK_BYTES: usize = 4 << 20;
/// Chunks queued between the reader thread and the tokenisers.
const CHUNKS_QUEUED: usize = 2;

/// How [`crate::Dataset::prepare`] obtained the token streams.
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

/// The metadata stored in a token cache (JSON, after the tokens).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct CacheMeta {
    pub(crate) format: String,
    pub(crate) corpus: String,
    pub(crate) tokenizer: String,
    pub(crate) split_seed: u64,
    pub(crate) val_tokens: usize,
    pub(crate) val: SplitSide,
    /// Training side; left empty for streamed corpora (millions of documents).
    pub(crate) train: SplitSide,
    /// Whether the corpus was streamed (split by stream order).
    #[serde(default)]
    pub(crate) streamed: bool,
    /// Number of training documents.
    #[serde(default)]
    pub(crate) train_documents: usize,
    /// Bytes of text tokenised (training and validation).
    #[serde(default)]
    pub(crate) text_bytes: u64,
    /// Count of each token id in the whole training section (so that opening a
    /// large cache does not read every token for the unigram baselines).
    #[serde(default)]
    pub(crate) train_counts: Vec<u64>,
}

/// Receives progress of [`crate::Dataset::prepare_observed`]. Every method has an empty default.
pub trait PrepareObserver: Sync {
    /// A one-line message (a step starting, a cache being rebuilt, ...).
    fn message(&self, _message: &str) {}
    /// Tokenisation progress, cumulative: documents, bytes of text and tokens so far.
    fn tokenised(&self, _documents: u64, _text_bytes: u64, _tokens: u64) {}
}

pub(crate) struct MessageObserver<'a>(pub(crate) Progress<'a>);

impl PrepareObserver for MessageObserver<'_> {
    fn message(&self, m: &str) {
        if let Some(p) = self.0 {
            p(m)
        }
    }
}

/// Optional progress reporting: called with one-line messages.
pub type Progress<'a> = Option<&'a (dyn Fn(&str) + Sync)>;

/// How a corpus is split (see [`crate::Dataset::prepare`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SplitKind {
    /// Every document in memory, in a permutation seeded by `split_seed`.
    Permuted,
    /// The corpus's stream order ([`Corpus::is_streamed`]).
    Streamed,
}

impl SplitKind {
    /// Bytes of training text the BPE is trained on.
    fn bpe_sample_bytes(self, cfg: &DataConfig) -> u64 {
        match self {
            SplitKind::Permuted => u64::MAX,
            SplitKind::Streamed => cfg.bpe_sample_bytes.unwrap_or(DEFAULT_BPE_SAMPLE_BYTES),
        }
    }

    /// Where tokenisation stops: small corpora are tokenised whole (the cap
    /// is applied when the dataset is opened), streamed ones at the cap.
    fn train_cap(self, cfg: &DataConfig) -> Option<u64> {
        match self {
            SplitKind::Permuted => None,
            SplitKind::Streamed => cfg.max_train_tokens.map(|m| m as u64),
        }
    }

    /// The cache key of a trained BPE (every setting the split depends on).
    fn bpe_tag(self, cfg: &DataConfig, identity: &str) -> String {
        match self {
            SplitKind::Permuted => short_hash(&[
                identity,
                &cfg.split_seed.to_string(),
                &cfg.val_tokens.to_string(),
                "bpe-v1",
            ]),
            SplitKind::Streamed => short_hash(&[
                identity,
                "streamed",
                &cfg.val_tokens.to_string(),
                &self.bpe_sample_bytes(cfg).to_string(),
                "bpe-v1",
            ]),
        }
    }

    /// The cache key of the token streams.
    fn stream_key(self, cfg: &DataConfig, identity: &str, fingerprint: &str) -> String {
        match self {
            SplitKind::Permuted => short_hash(&[
                STREAM_FORMAT,
                identity,
                fingerprint,
                &cfg.split_seed.to_string(),
                &cfg.val_tokens.to_string(),
            ]),
            SplitKind::Streamed => {
                let cap = cfg
                    .max_train_tokens
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| "all".into());
                short_hash(&[
                    STREAM_FORMAT,
                    identity,
                    fingerprint,
                    "streamed",
                    &cfg.val_tokens.to_string(),
                    &cap,
                ])
            }
        }
    }
}

/// What [`prepare`] produces: the tokenizer and the opened token cache.
pub(crate) struct Prepared {
    pub(crate) tokenizer: Arc<dyn Tokenizer>,
    pub(crate) cache: TokenCache,
    pub(crate) meta: CacheMeta,
    pub(crate) identity: String,
    pub(crate) cache_path: PathBuf,
    pub(crate) outcome: CacheOutcome,
    pub(crate) timings: PrepareTimings,
}

/// Loads the tokenizer and token cache `cfg` describes for `corpus`, building
/// what is missing or damaged when `build` is true (else such a file is an error).
pub(crate) fn prepare(
    cfg: &DataConfig,
    corpus: &dyn Corpus,
    obs: &dyn PrepareObserver,
    build: bool,
) -> Result<Prepared, DataError> {
    cfg.validate()?;
    let kind = if corpus.is_streamed() {
        SplitKind::Streamed
    } else {
        SplitKind::Permuted
    };
    let say = |m: &str| obs.message(m);
    let cache_dir = cfg.resolved_cache_dir()?;
    let identity = corpus.identity();
    let mut timings = PrepareTimings::default();
    // Opened at most once, by whichever step first needs the documents.
    let mut docs: Option<SplitOrder<'_>> = None;
    let open_docs = || SplitOrder::open(corpus, kind, cfg.split_seed, identity.clone());

    // 1. The tokenizer.
    let tokenizer: Arc<dyn Tokenizer> = match &cfg.tokenizer {
        TokenizerSpec::Gpt2 => Arc::new(Gpt2Tokenizer),
        TokenizerSpec::Bpe { vocab_size } => {
            let tag = kind.bpe_tag(cfg, &identity);
            let path = cache_dir
                .join("tokenizers")
                .join(format!("bpe-{vocab_size}-{tag}"))
                .join("tokenizer.json");
            match load_cached_bpe(&path, build, &say)? {
                Some(t) => Arc::new(t),
                None => {
                    let d = docs.insert(open_docs()?);
                    let t0 = Instant::now();
                    let t = d.train_bpe(cfg, *vocab_size, kind.bpe_sample_bytes(cfg), &say)?;
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
    let key = kind.stream_key(cfg, &identity, &fingerprint);
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
                None => open_docs()?,
            };
            let t0 = Instant::now();
            let meta = d.tokenize_into(
                cfg,
                tokenizer.as_ref(),
                &cache_path,
                kind.train_cap(cfg),
                obs,
            )?;
            timings.tokenize_s = t0.elapsed().as_secs_f64();
            let cache = TokenCache::open_written(&cache_path, &fingerprint)?;
            (cache, meta, outcome)
        }
    };
    Ok(Prepared {
        tokenizer,
        cache,
        meta,
        identity,
        cache_path,
        outcome,
        timings,
    })
}

fn short_hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    hex(&h.finalize())[..32].to_string()
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

/// A corpus's documents in split order: the first ones held in memory while
/// the validation prefix and the BPE sample are chosen, then the rest of the
/// stream. For a [`SplitKind::Permuted`] corpus every document is in memory.
struct SplitOrder<'a> {
    kind: SplitKind,
    rest: DocStream<'a>,
    docs: Vec<Document>,
    ended: bool,
    identity: String,
}

impl<'a> SplitOrder<'a> {
    fn open(
        corpus: &'a dyn Corpus,
        kind: SplitKind,
        split_seed: u64,
        identity: String,
    ) -> Result<Self, DataError> {
        let (docs, rest, ended): (Vec<Document>, DocStream<'a>, bool) = match kind {
            SplitKind::Streamed => (Vec::new(), corpus.stream()?, false),
            SplitKind::Permuted => {
                let d = corpus.documents()?;
                if d.len() < 2 {
                    return Err(DataError::Corpus {
                        corpus: identity,
                        message: format!(
                            "has {} document(s); a train/validation split needs at least 2",
                            d.len()
                        ),
                    });
                }
                let order = permutation(d.len(), split_seed, 0);
                let mut slots: Vec<Option<Document>> = d.into_iter().map(Some).collect();
                let docs = order
                    .iter()
                    .map(|&i| {
                        slots[i]
                            .take()
                            .expect("a permutation visits each index once")
                    })
                    .collect();
                (docs, Box::new(std::iter::empty()), true)
            }
        };
        Ok(SplitOrder {
            kind,
            rest,
            docs,
            ended,
            identity,
        })
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

    /// The error when validation would take every document (of the `docs` read so far).
    fn too_small(&self, cfg: &DataConfig, docs: usize) -> DataError {
        let larger = match self.kind {
            SplitKind::Permuted => "a larger corpus",
            SplitKind::Streamed => "a larger corpus (more shards, a larger max_chars)",
        };
        DataError::Config {
            key: "val_tokens",
            message: format!(
                "= {} needs every one of the {docs} documents of corpus {}, leaving none to train on; lower val_tokens or use {larger}",
                cfg.val_tokens, self.identity
            ),
        }
    }

    /// Shortest prefix reaching `target` tokens of `len` (+1 each), pulling
    /// documents as needed (8 at a time, measured in parallel); all documents
    /// if none does.
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
        self.prefix(target, &|t| gpt2.encode(t).len())
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
                return Err(self.too_small(cfg, self.docs.len()));
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
                    return Err(self.too_small(cfg, self.docs.len()));
                }
                acc_tok += tok.encode(&self.docs[k].text).len() + 1;
                k += 1;
            }
        }
    }

    /// Chooses the validation prefix, tokenises it and streams the rest of the
    /// corpus through the tokenizer into the cache file at `path`, stopping
    /// once the training stream holds `cap` tokens.
    fn tokenize_into(
        mut self,
        cfg: &DataConfig,
        tok: &dyn Tokenizer,
        path: &Path,
        cap: Option<u64>,
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
            return Err(self.too_small(cfg, self.docs.len()));
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
            return Err(self.too_small(cfg, self.docs.len()));
        }
        let mut docs_done = k as u64;
        let mut tokens_done = val.len() as u64;
        obs.tokenised(docs_done, text_bytes, tokens_done);

        let mut writer = TokenCacheWriter::create(path, &tok.fingerprint(), tok.vocab_size(), 2)?;
        // Small corpora keep every training document's id and token count.
        let keep_train_side = self.kind == SplitKind::Permuted;
        let mut train_side = SplitSide::default();
        let no_training = self.too_small(cfg, k);
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
                for (d, t) in chunk.into_iter().zip(&toks) {
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
                    if keep_train_side {
                        train_side.ids.push(d.id);
                        train_side.tokens.push(t.len() + 1);
                    }
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
            return Err(no_training);
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
            train: train_side,
            streamed: self.kind == SplitKind::Streamed,
            train_documents: train_docs,
            text_bytes,
            train_counts: counts,
        };
        writer.finish(&serde_json::to_string(&meta).expect("metadata serialises"))?;
        Ok(meta)
    }
}
