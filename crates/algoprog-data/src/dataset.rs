//! A prepared dataset: the training and validation token streams of a
//! corpus, read from the memory-mapped token cache, and their batches.
//! Configuration is in [`crate::config`], preparation in [`crate::prepare`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::{num_sequences, Batch, BatchOrder, TokenStream, TrainBatches};
use crate::cache::TokenView;
use crate::config::DataConfig;
use crate::corpus::Corpus;
use crate::prepare::{
    prepare, CacheOutcome, MessageObserver, PrepareObserver, PrepareTimings, Prepared, Progress,
    SplitSide,
};
use crate::tokenizer::Tokenizer;
use crate::unigram;
use crate::DataError;

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
    /// **Streamed corpora** (`library`, `dir`, `c4`; [`Corpus::is_streamed`]): the same rule
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
        Self::finish(cfg, prepare(cfg, corpus, obs, build)?)
    }

    /// Opens the prepared streams: applies `max_train_tokens`, checks that
    /// each side holds a sequence, and computes the unigram baselines.
    fn finish(cfg: &DataConfig, prepared: Prepared) -> Result<Dataset, DataError> {
        let Prepared {
            tokenizer,
            cache,
            meta,
            identity,
            cache_path,
            outcome,
            timings,
        } = prepared;
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

    /// How many times a run of `token_budget` training tokens goes through the
    /// training data: `token_budget / (num_train_sequences × seq_len)` (each
    /// sequence of `seq_len + 1` tokens trains `seq_len` predictions); see [`epochs`].
    pub fn epochs(&self, token_budget: u64) -> f64 {
        epochs(
            self.num_train_sequences(),
            self.config.seq_len,
            token_budget,
        )
    }

    /// [`Dataset::epochs`], refused above [`MAX_EPOCHS`] with an error naming the
    /// budget, the data and the fixes.
    pub fn check_epochs(&self, token_budget: u64) -> Result<f64, DataError> {
        check_epochs(
            self.corpus_identity(),
            self.num_train_sequences(),
            self.config.seq_len,
            token_budget,
        )
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

    /// [`Dataset::train_batches`] in a chosen [`BatchOrder`]: `Contiguous`
    /// cuts the training stream into `batch_size` streams, one per batch row
    /// (see [`TrainBatches`]). Panics if `batch_size` is 0 or, for
    /// `Contiguous`, if a stream is shorter than `2 · seq_len` tokens.
    pub fn train_batches_ordered(
        &self,
        batch_size: usize,
        seed: u64,
        order: BatchOrder,
    ) -> TrainBatches {
        TrainBatches::with_order(
            self.train.clone(),
            self.config.seq_len,
            batch_size,
            seed,
            order,
        )
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

/// Most passes over the training data a study accepts (runs that repeat the data
/// more often measure memorisation as much as learning).
pub const MAX_EPOCHS: f64 = 4.0;

/// Epochs of a run: `token_budget / (train_sequences × seq_len)`, the number of
/// times a run that trains on `token_budget` tokens (in windows of `seq_len`
/// predictions) goes through `train_sequences` training sequences. Infinite
/// when there is no training sequence and the budget is positive, 0 for a zero budget.
pub fn epochs(train_sequences: usize, seq_len: usize, token_budget: u64) -> f64 {
    let per_epoch = train_sequences as f64 * seq_len as f64;
    if token_budget == 0 {
        0.0
    } else {
        token_budget as f64 / per_epoch
    }
}

/// [`epochs`], refused above [`MAX_EPOCHS`]: the error names the corpus, the
/// budget, the training tokens and the fixes.
pub fn check_epochs(
    corpus: &str,
    train_sequences: usize,
    seq_len: usize,
    token_budget: u64,
) -> Result<f64, DataError> {
    let e = epochs(train_sequences, seq_len, token_budget);
    if e > MAX_EPOCHS {
        return Err(DataError::Corpus {
            corpus: corpus.to_string(),
            message: format!(
                "a budget of {token_budget} training tokens goes through the {} training tokens {e:.2} times, \
                 more than the limit of {MAX_EPOCHS}; lower the budget or use a larger corpus \
                 (corpus = \"library\", a dir corpus or c4)",
                train_sequences * seq_len
            ),
        });
    }
    Ok(e)
}
