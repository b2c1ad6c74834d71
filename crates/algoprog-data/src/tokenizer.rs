//! Tokenizers: GPT-2's (offline, from `tiktoken-rs`) and byte-level BPEs
//! trained with `tokenizers`.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, TokenizerImpl};

use crate::corpus::hex;
use crate::DataError;

/// The end-of-text token text shared by GPT-2 and the trained BPEs.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// GPT-2's vocabulary size (`r50k_base`): 50 000 merges, 256 bytes, `<|endoftext|>`.
pub const GPT2_VOCAB_SIZE: usize = 50257;

/// A text tokenizer. Token ids are `u32` in `0..vocab_size()`.
pub trait Tokenizer: Send + Sync {
    /// Token ids of `text` (no special tokens are added or recognised).
    fn encode(&self, text: &str) -> Vec<u32>;
    /// Text of `ids`; byte sequences that are not valid UTF-8 become U+FFFD.
    fn decode(&self, ids: &[u32]) -> String;
    /// Number of token ids, special tokens included.
    fn vocab_size(&self) -> usize;
    /// A stable identifier for cache keys: name, vocabulary size and a hash of the merges.
    fn fingerprint(&self) -> String;
    /// Id of `<|endoftext|>`, appended after every document in token streams.
    fn end_of_text(&self) -> u32;
}

/// GPT-2's tokenizer (`r50k_base`, embedded in `tiktoken-rs`; no network).
#[derive(Clone, Copy, Debug, Default)]
pub struct Gpt2Tokenizer;

impl Gpt2Tokenizer {
    fn bpe() -> &'static tiktoken_rs::CoreBPE {
        tiktoken_rs::r50k_base_singleton()
    }
}

impl Tokenizer for Gpt2Tokenizer {
    fn encode(&self, text: &str) -> Vec<u32> {
        Self::bpe().encode_ordinary(text)
    }
    fn decode(&self, ids: &[u32]) -> String {
        let bpe = Self::bpe();
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            // Ids outside the vocabulary decode to U+FFFD rather than failing.
            match bpe.decode_bytes(&[id]) {
                Ok(b) => bytes.extend_from_slice(&b),
                Err(_) => bytes.extend_from_slice("\u{fffd}".as_bytes()),
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
    fn vocab_size(&self) -> usize {
        GPT2_VOCAB_SIZE
    }
    fn fingerprint(&self) -> String {
        "gpt2-r50k_base-50257".to_string()
    }
    fn end_of_text(&self) -> u32 {
        50256
    }
}

type BpeImpl =
    TokenizerImpl<BPE, NormalizerWrapper, ByteLevel, PostProcessorWrapper, ByteLevelDecoder>;

/// A byte-level BPE (GPT-2's pre-tokenisation regex and byte alphabet) trained
/// with the `tokenizers` library. Id 0 is `<|endoftext|>`, ids 1..=256 the bytes.
///
/// The trained vocabulary is also loaded into `tiktoken-rs`'s rank-based BPE
/// (rank = id), which encodes about 7x faster; on the whole embedded corpus it
/// gives exactly the ids of the `tokenizers` library (vocabularies of 512, 4096
/// and 16384; see [`BpeTokenizer::encode_reference`] and the tests).
pub struct BpeTokenizer {
    inner: tokenizers::Tokenizer,
    /// The same vocabulary as a rank-based byte BPE (ranks = ids), used to encode.
    fast: tiktoken_rs::CoreBPE,
    /// Bytes of each id (empty for `<|endoftext|>`).
    id_bytes: Vec<Vec<u8>>,
    vocab_size: usize,
    eot: u32,
    fingerprint: String,
}

impl fmt::Debug for BpeTokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BpeTokenizer")
            .field("vocab_size", &self.vocab_size)
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl BpeTokenizer {
    /// Trains a BPE of `vocab_size` ids (≥ 257: `<|endoftext|>`, 256 bytes, then
    /// merges) on `texts`. Deterministic: the same texts give the same merges
    /// (ties between equally frequent pairs go to the lower pair of ids).
    /// A small corpus may yield fewer merges than asked; [`Tokenizer::vocab_size`]
    /// reports the size obtained.
    pub fn train<S: AsRef<str> + Send>(
        texts: impl Iterator<Item = S> + Send,
        vocab_size: usize,
    ) -> Result<Self, DataError> {
        check_bpe_vocab(vocab_size)?;
        let err = |e: tokenizers::Error| DataError::Tokenizer {
            path: None,
            message: format!("training with vocab_size {vocab_size} failed: {e}"),
        };
        let mut trainer = BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            .min_frequency(0)
            .show_progress(false)
            .special_tokens(vec![AddedToken::from(END_OF_TEXT, true)])
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build();
        let mut tok: BpeImpl = TokenizerImpl::new(BPE::default());
        tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        tok.with_decoder(Some(ByteLevelDecoder::default()));
        tok.train(&mut trainer, texts).map_err(err)?;
        Self::from_inner(tokenizers::Tokenizer::from(tok), None)
    }

    /// Loads a `tokenizer.json` written by [`BpeTokenizer::save`].
    pub fn load(path: &Path) -> Result<Self, DataError> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| DataError::Tokenizer {
            path: Some(path.to_path_buf()),
            message: format!("cannot load ({e}); delete the file and it will be retrained"),
        })?;
        Self::from_inner(inner, Some(path))
    }

    /// Encodes with the `tokenizers` library itself (slow). [`Tokenizer::encode`]
    /// runs the same merges through a rank-based byte BPE about 10x faster; this
    /// is the reference it is checked against. Unlike [`Tokenizer::encode`], it
    /// turns the text `<|endoftext|>` into the special token 0.
    pub fn encode_reference(&self, text: &str) -> Vec<u32> {
        // Encoding plain text with a byte-level BPE cannot fail: every byte is in the vocabulary.
        self.inner
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .expect("byte-level BPE encodes any text")
    }

    /// Writes the tokenizer as `tokenizer.json` (the `tokenizers` library's format).
    pub fn save(&self, path: &Path) -> Result<(), DataError> {
        let json = self.to_json()?;
        std::fs::write(path, json).map_err(|e| DataError::io(path, e))
    }

    /// The tokenizer serialised as `tokenizers` JSON.
    pub fn to_json(&self) -> Result<String, DataError> {
        self.inner
            .to_string(false)
            .map_err(|e| DataError::Tokenizer {
                path: None,
                message: format!("cannot serialise: {e}"),
            })
    }

    fn from_inner(inner: tokenizers::Tokenizer, path: Option<&Path>) -> Result<Self, DataError> {
        let bad = |message: String| DataError::Tokenizer {
            path: path.map(Path::to_path_buf),
            message,
        };
        let eot = inner.token_to_id(END_OF_TEXT).ok_or_else(|| {
            bad(format!(
                "has no {END_OF_TEXT} token; it was not made by algoprog-data"
            ))
        })?;
        let vocab_size = inner.get_vocab_size(true);
        let model = serde_json::to_string(inner.get_model())
            .map_err(|e| bad(format!("cannot serialise model: {e}")))?;
        let hash = hex(&Sha256::digest(model.as_bytes()));
        let unicode_to_byte: std::collections::HashMap<char, u8> = bytes_to_unicode()
            .into_iter()
            .map(|(b, c)| (c, b))
            .collect();
        let mut id_bytes = vec![Vec::new(); vocab_size];
        let mut encoder = rustc_hash::FxHashMap::default();
        for (token, id) in inner.get_vocab(false) {
            if id == eot {
                continue;
            }
            let bytes: Option<Vec<u8>> = token
                .chars()
                .map(|c| unicode_to_byte.get(&c).copied())
                .collect();
            let bytes = bytes.ok_or_else(|| bad(format!("token {token:?} is not byte-level")))?;
            if (id as usize) < vocab_size {
                id_bytes[id as usize] = bytes.clone();
            }
            encoder.insert(bytes, id);
        }
        let mut special = rustc_hash::FxHashMap::default();
        special.insert(END_OF_TEXT.to_string(), eot);
        let fast = tiktoken_rs::CoreBPE::new(encoder, special, BYTE_LEVEL_PATTERN)
            .map_err(|e| bad(format!("cannot build the encoder: {e}")))?;
        Ok(BpeTokenizer {
            fast,
            id_bytes,
            fingerprint: format!("bpe-{vocab_size}-{}", &hash[..16]),
            inner,
            vocab_size,
            eot,
        })
    }
}

impl Tokenizer for BpeTokenizer {
    fn encode(&self, text: &str) -> Vec<u32> {
        self.fast.encode_ordinary(text)
    }
    fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            match self.id_bytes.get(id as usize) {
                Some(b) if !b.is_empty() => bytes.extend_from_slice(b),
                _ if id == self.eot => bytes.extend_from_slice(END_OF_TEXT.as_bytes()),
                _ => bytes.extend_from_slice("\u{fffd}".as_bytes()),
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }
    fn vocab_size(&self) -> usize {
        self.vocab_size
    }
    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }
    fn end_of_text(&self) -> u32 {
        self.eot
    }
}

/// GPT-2's pre-tokenisation pattern as the `tokenizers` ByteLevel pre-tokenizer writes it.
const BYTE_LEVEL_PATTERN: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// GPT-2's map from bytes to printable characters, used by byte-level BPE vocabularies.
fn bytes_to_unicode() -> Vec<(u8, char)> {
    let mut out = Vec::with_capacity(256);
    let mut n = 0u32;
    for b in 0u32..256 {
        let printable =
            (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
        let c = if printable {
            b
        } else {
            n += 1;
            255 + n
        };
        out.push((b as u8, char::from_u32(c).unwrap()));
    }
    out
}

fn check_bpe_vocab(vocab_size: usize) -> Result<(), DataError> {
    if !(257..=1 << 24).contains(&vocab_size) {
        return Err(DataError::TokenizerSpec(format!("bpe-{vocab_size}")));
    }
    Ok(())
}

/// Which tokenizer a config uses. In TOML a string: `"gpt2"` or `"bpe-N"`
/// (a byte-level BPE of N ids trained on the training documents and cached).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TokenizerSpec {
    /// GPT-2's tokenizer, 50257 ids.
    Gpt2,
    /// A byte-level BPE trained on the training documents.
    Bpe {
        /// Number of ids, `<|endoftext|>` and the 256 bytes included.
        vocab_size: usize,
    },
}

impl Default for TokenizerSpec {
    fn default() -> Self {
        TokenizerSpec::Bpe { vocab_size: 4096 }
    }
}

impl fmt::Display for TokenizerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenizerSpec::Gpt2 => write!(f, "gpt2"),
            TokenizerSpec::Bpe { vocab_size } => write!(f, "bpe-{vocab_size}"),
        }
    }
}

impl FromStr for TokenizerSpec {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self, DataError> {
        let t = s.trim().to_ascii_lowercase();
        if t == "gpt2" || t == "gpt-2" {
            return Ok(TokenizerSpec::Gpt2);
        }
        let n = t
            .strip_prefix("bpe-")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| DataError::TokenizerSpec(s.to_string()))?;
        check_bpe_vocab(n).map_err(|_| DataError::TokenizerSpec(s.to_string()))?;
        Ok(TokenizerSpec::Bpe { vocab_size: n })
    }
}

impl Serialize for TokenizerSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for TokenizerSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}
