//! algoprog-data: corpora, tokenizers, token caches, the train/validation split
//! and batching.
//!
//! Data flow: [`Corpus`] (documents) → [`Tokenizer`] → token cache (a checked
//! `u16`/`u32` file keyed by a hash of corpus, tokenizer and split) → [`Dataset`]
//! (train and validation streams) → [`Batch`]es of `seq_len` tokens at stride
//! `seq_len`.
//!
//! ```no_run
//! use algoprog_data::{DataConfig, Dataset, TokenizerSpec};
//! let cfg = DataConfig { tokenizer: TokenizerSpec::Gpt2, ..DataConfig::default() };
//! let data = Dataset::prepare(&cfg)?;
//! let batch = data.train_batches(32, 0).next().unwrap();
//! assert_eq!(batch.inputs.len(), 32 * 128);
//! # Ok::<(), algoprog_data::DataError>(())
//! ```
//!
//! The default corpus is embedded (see `corpus/PROVENANCE.md`) and GPT-2's
//! tokenizer comes from `tiktoken-rs`, so nothing touches the network unless a
//! config asks for C4 without `offline = true` ([`C4Spec`]).

pub mod batch;
pub mod cache;
mod config;
pub mod corpus;
mod dataset;
mod error;
mod prepare;
pub mod sources;
pub mod tokenizer;
pub mod unigram;

pub use batch::{num_sequences, permutation, Batch, BatchOrder, TokenStream, TrainBatches};
pub use cache::{TokenCache, TokenView};
pub use config::{DataConfig, DEFAULT_BPE_SAMPLE_BYTES};
pub use corpus::{
    assemble_library, embedded_documents, Corpus, DocStream, Document, EmbeddedCorpus,
    InMemoryCorpus, LibraryCorpus, LIBRARY_SHUFFLE_SEED,
};
pub use dataset::{check_epochs, epochs, Dataset, MAX_EPOCHS};
pub use error::DataError;
pub use prepare::{CacheOutcome, PrepareObserver, PrepareTimings, Progress, SplitSide};
pub use sources::{c4_shard_name, hub_cache_dir, C4Corpus, C4Spec, CorpusSpec, DirCorpus, DirSpec};
pub use tokenizer::{
    BpeTokenizer, Gpt2Tokenizer, Tokenizer, TokenizerSpec, END_OF_TEXT, GPT2_VOCAB_SIZE,
};
pub use unigram::{unigram_cross_entropy, unigram_entropy};
