//! Corpora: where documents come from.
//!
//! A [`Corpus`] yields [`Document`]s and a stable identity string; the identity
//! enters every cache key, so two corpora with the same identity must hold the
//! same text. [`crate::CorpusSpec`] (in [`crate::sources`]) is the serialisable
//! choice made in a config.

use std::io::Read;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::DataError;

/// One document of a corpus: the unit of the train/validation split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    /// Stable identifier, unique within its corpus (embedded corpus: `"<book>/<NNN>"`).
    pub id: String,
    /// The text.
    pub text: String,
}

/// The embedded default corpus, gzip-compressed JSON lines `{"id", "text"}`.
/// Sources, licences and processing: `corpus/PROVENANCE.md`.
pub static EMBEDDED_CORPUS_GZ: &[u8] = include_bytes!("../corpus/embedded.jsonl.gz");

/// Decompresses and parses the embedded corpus: 341 documents of about 32 KB
/// (11.4 MB of public-domain English: 16 Project Gutenberg books), in book order.
pub fn embedded_documents() -> Result<Vec<Document>, DataError> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(EMBEDDED_CORPUS_GZ)
        .read_to_string(&mut text)
        .map_err(|e| DataError::EmbeddedCorpus(format!("gzip: {e}")))?;
    parse_jsonl(&text).map_err(DataError::EmbeddedCorpus)
}

/// Parses JSON lines of `{"id": ..., "text": ...}` (other keys are ignored).
fn parse_jsonl(text: &str) -> Result<Vec<Document>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str::<Document>(l).map_err(|e| format!("line {}: {e}", i + 1))
        })
        .collect()
}

/// Documents one at a time, in a corpus's fixed order.
pub type DocStream<'a> = Box<dyn Iterator<Item = Result<Document, DataError>> + Send + 'a>;

/// A source of documents.
///
/// Implement it to bring your own text to [`crate::Dataset::prepare_corpus`];
/// the built-in sources are chosen through [`crate::CorpusSpec`].
///
/// Small corpora return everything from [`Corpus::documents`] and are split by a
/// seeded permutation of documents. Corpora too large for memory also override
/// [`Corpus::stream`] and return `true` from [`Corpus::is_streamed`]; they are
/// tokenised in one streaming pass and split by stream order (see
/// [`crate::Dataset::prepare`]).
pub trait Corpus: Send + Sync {
    /// A stable identity for cache keys: it must change whenever the text changes.
    fn identity(&self) -> String;
    /// All documents, in a fixed order.
    fn documents(&self) -> Result<Vec<Document>, DataError>;
    /// The documents one at a time, in the same order as [`Corpus::documents`].
    /// The default collects [`Corpus::documents`].
    fn stream(&self) -> Result<DocStream<'_>, DataError> {
        Ok(Box::new(self.documents()?.into_iter().map(Ok)))
    }
    /// Whether [`crate::Dataset::prepare`] streams this corpus (bounded memory,
    /// validation = a prefix of the stream) instead of loading every document.
    fn is_streamed(&self) -> bool {
        false
    }
    /// Compressed or raw bytes the stream will read, if known (for progress bars).
    fn size_hint_bytes(&self) -> Option<u64> {
        None
    }
}

/// The embedded default corpus (see [`embedded_documents`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct EmbeddedCorpus;

impl Corpus for EmbeddedCorpus {
    fn identity(&self) -> String {
        static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        ID.get_or_init(|| {
            format!(
                "embedded:{}",
                &hex(&Sha256::digest(EMBEDDED_CORPUS_GZ))[..16]
            )
        })
        .clone()
    }
    fn documents(&self) -> Result<Vec<Document>, DataError> {
        embedded_documents()
    }
}

/// Documents held in memory, e.g. a slice of another corpus or text made by a
/// program. Its identity is its name plus a hash of every id and text.
#[derive(Clone, Debug)]
pub struct InMemoryCorpus {
    name: String,
    docs: Vec<Document>,
    hash: String,
}

impl InMemoryCorpus {
    /// Wraps `docs` under `name` (the name is only for messages and cache keys).
    pub fn new(name: impl Into<String>, docs: Vec<Document>) -> Self {
        let mut h = Sha256::new();
        for d in &docs {
            h.update((d.id.len() as u64).to_le_bytes());
            h.update(d.id.as_bytes());
            h.update((d.text.len() as u64).to_le_bytes());
            h.update(d.text.as_bytes());
        }
        InMemoryCorpus {
            name: name.into(),
            docs,
            hash: hex(&h.finalize())[..16].to_string(),
        }
    }
}

impl Corpus for InMemoryCorpus {
    fn identity(&self) -> String {
        format!("memory:{}:{}", self.name, self.hash)
    }
    fn documents(&self) -> Result<Vec<Document>, DataError> {
        Ok(self.docs.clone())
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
