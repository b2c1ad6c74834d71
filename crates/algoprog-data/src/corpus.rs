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

/// The library extension: gzip-compressed JSON lines `{"id", "text", "part"}`
/// gathered from registry packages by `scripts/build_library.py`. Sources,
/// licences and processing: `corpus/LIBRARY.md`.
pub static LIBRARY_CORPUS_GZ: &[u8] = include_bytes!("../corpus/library.jsonl.gz");

/// Seed of the fixed shuffle of the library's training documents.
pub const LIBRARY_SHUFFLE_SEED: u64 = 0x11b2a2;

/// One line of the library file: a document and its side of the split.
#[derive(Deserialize)]
struct LibraryLine {
    id: String,
    text: String,
    part: String,
}

/// Assembles the library corpus from its JSON-lines file (`jsonl_gz`, gzip) and
/// the embedded documents, in stream order:
///
/// 1. the file's `part = "heldout"` documents, in file order: whole works (one
///    State of the Union address or one Shakespeare work each), so a validation
///    prefix of the stream never shares a work with training as long as it stays
///    inside this pool;
/// 2. every other document (the file's `part = "train"` ones and all of
///    `embedded`), shuffled with [`LIBRARY_SHUFFLE_SEED`], so a
///    `max_train_tokens` prefix of the training stream mixes every source.
///
/// Errors name the line: an unknown `part`, a heldout document after a training
/// one, or an id used twice (in the file or against `embedded`).
pub fn assemble_library(
    jsonl_gz: &[u8],
    embedded: Vec<Document>,
) -> Result<Vec<Document>, DataError> {
    let bad = |m: String| DataError::LibraryCorpus(m);
    let mut text = String::new();
    flate2::read::GzDecoder::new(jsonl_gz)
        .read_to_string(&mut text)
        .map_err(|e| bad(format!("gzip: {e}")))?;
    let mut heldout = Vec::new();
    let mut train = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let l: LibraryLine =
            serde_json::from_str(line).map_err(|e| bad(format!("line {}: {e}", i + 1)))?;
        if !ids.insert(l.id.clone()) {
            return Err(bad(format!("line {}: id {:?} appears twice", i + 1, l.id)));
        }
        let doc = Document {
            id: l.id,
            text: l.text,
        };
        match l.part.as_str() {
            "heldout" if train.is_empty() => heldout.push(doc),
            "heldout" => {
                return Err(bad(format!(
                    "line {}: heldout document {:?} after a training document; heldout documents come first",
                    i + 1,
                    doc.id
                )))
            }
            "train" => train.push(doc),
            other => {
                return Err(bad(format!(
                    "line {}: part {other:?} is neither \"heldout\" nor \"train\"",
                    i + 1
                )))
            }
        }
    }
    if heldout.is_empty() {
        return Err(bad(
            "no heldout document: the validation pool is empty".into()
        ));
    }
    for d in &embedded {
        if !ids.insert(d.id.clone()) {
            return Err(bad(format!(
                "id {:?} is both in the library file and in the embedded corpus",
                d.id
            )));
        }
    }
    train.extend(embedded);
    let order = crate::permutation(train.len(), LIBRARY_SHUFFLE_SEED, 0);
    let mut slots: Vec<Option<Document>> = train.into_iter().map(Some).collect();
    heldout.extend(order.into_iter().filter_map(|i| slots[i].take()));
    Ok(heldout)
}

/// The library corpus: the embedded corpus plus about 36 MB of public-domain
/// English from registry packages (State of the Union addresses 1790–2021, the
/// rest of Shakespeare, five English Bible translations): 1321 documents,
/// 47.6 MB of text, shipped compressed in this crate (see `corpus/LIBRARY.md`).
///
/// It is a streamed corpus ([`Corpus::is_streamed`]) whose order is fixed by
/// [`assemble_library`]: the validation set is a prefix of the heldout pool
/// (44 whole works, 2.5 MB, about 1.2M tokens with a 512-id BPE), so validation
/// and training never share a work while `val_tokens` stays below that.
/// `split_seed` does not apply.
#[derive(Clone, Copy, Debug, Default)]
pub struct LibraryCorpus;

impl Corpus for LibraryCorpus {
    fn identity(&self) -> String {
        static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        ID.get_or_init(|| {
            let mut h = Sha256::new();
            h.update(EMBEDDED_CORPUS_GZ);
            h.update(LIBRARY_CORPUS_GZ);
            h.update(LIBRARY_SHUFFLE_SEED.to_le_bytes());
            format!("library:{}", &hex(&h.finalize())[..16])
        })
        .clone()
    }
    fn documents(&self) -> Result<Vec<Document>, DataError> {
        assemble_library(LIBRARY_CORPUS_GZ, embedded_documents()?)
    }
    fn is_streamed(&self) -> bool {
        true
    }
    fn size_hint_bytes(&self) -> Option<u64> {
        Some((EMBEDDED_CORPUS_GZ.len() + LIBRARY_CORPUS_GZ.len()) as u64)
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
