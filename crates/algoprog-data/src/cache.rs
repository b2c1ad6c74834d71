//! The token cache: a binary file of token streams with a checked header,
//! written in one streaming pass and memory-mapped for training.
//!
//! Layout (all integers little-endian), format version 2:
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `b"ALGOTOK\0"` |
//! | 4 | format version (2) |
//! | 4 | bytes per token: 2 (`u16`, vocabulary ≤ 65536) or 4 (`u32`) |
//! | 32 | sha256 of the tokenizer fingerprint |
//! | 32 | sha256 of everything after the header (tokens, then metadata) |
//! | 8 | metadata length m |
//! | 4 | number of sections s |
//! | 8·s | token count of each section |
//! | … | the sections' tokens, one after another |
//! | m | metadata (UTF-8 JSON) |
//!
//! The header is `92 + 8·s` bytes, a multiple of 4, so the token body of a
//! mapped file is aligned for `u16` and `u32` reads. The metadata comes last so
//! that a writer can stream tokens before it knows the document list.
//!
//! Checks when a file is opened ([`TokenCache::open`]): magic, version, width,
//! the tokenizer fingerprint (a *mismatch* error), and the file length against
//! the header (a *truncated* file). The sha256 checksum is computed while the
//! file is written; re-reading a multi-GB file to check it on every open would
//! cost seconds, so it is verified on open only when `verify` is true or the
//! body is at most [`VERIFY_ALWAYS_BELOW`] bytes (`data.verify_cache = true`
//! forces it for every size). Files are written to a temporary name in the same
//! directory and renamed, so concurrent writers of the same key never expose a
//! partial file.

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::corpus::hex;
use crate::DataError;

const MAGIC: &[u8; 8] = b"ALGOTOK\0";
const VERSION: u32 = 2;
const FIXED_HEADER: usize = 8 + 4 + 4 + 32 + 32 + 8 + 4;

/// Bodies up to this many bytes (256 MiB) have their checksum verified on every open.
pub const VERIFY_ALWAYS_BELOW: u64 = 256 << 20;

/// The contents of a token cache file, in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenFile {
    /// Free-form metadata (JSON) stored with the tokens.
    pub meta: String,
    /// Token streams (the dataset stores two: train, validation).
    pub sections: Vec<Vec<u32>>,
}

/// sha256 of a tokenizer fingerprint, as stored in cache headers.
pub fn fingerprint_hash(fingerprint: &str) -> [u8; 32] {
    Sha256::digest(fingerprint.as_bytes()).into()
}

/// Bytes per stored token for a vocabulary: 2 when every id fits `u16`, else 4.
pub fn token_width(vocab_size: usize) -> usize {
    if vocab_size <= 1 << 16 {
        2
    } else {
        4
    }
}

/// Writes `file` to `path` atomically (temporary file in the same directory, then
/// rename). Tokens are stored as `u16` when `vocab_size ≤ 65536`, else as `u32`.
pub fn write_token_cache(
    path: &Path,
    fingerprint: &str,
    vocab_size: usize,
    file: &TokenFile,
) -> Result<(), DataError> {
    let mut w = TokenCacheWriter::create(path, fingerprint, vocab_size, file.sections.len())?;
    for (i, s) in file.sections.iter().enumerate() {
        if i > 0 {
            w.next_section()?;
        }
        w.push(s)?;
    }
    w.finish(&file.meta)
}

/// Streams token sections into a cache file: [`push`](Self::push) tokens of the
/// current section, [`next_section`](Self::next_section), then
/// [`finish`](Self::finish) with the metadata. Memory use is a fixed buffer.
/// Dropping an unfinished writer removes its temporary file.
pub struct TokenCacheWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
    hasher: Sha256,
    width: usize,
    vocab_size: usize,
    fingerprint: [u8; 32],
    counts: Vec<u64>,
    current: usize,
    scratch: Vec<u8>,
}

impl TokenCacheWriter {
    /// Starts a file with `sections` token sections for a tokenizer of `vocab_size` ids.
    pub fn create(
        path: &Path,
        fingerprint: &str,
        vocab_size: usize,
        sections: usize,
    ) -> Result<Self, DataError> {
        assert!(sections > 0, "a token cache holds at least one section");
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
        let tmp = temp_name(path);
        let f = File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, f);
        let header_len = FIXED_HEADER + 8 * sections;
        out.write_all(&vec![0u8; header_len])
            .map_err(|e| DataError::io(&tmp, e))?;
        Ok(TokenCacheWriter {
            path: path.to_path_buf(),
            tmp,
            out: Some(out),
            hasher: Sha256::new(),
            width: token_width(vocab_size),
            vocab_size,
            fingerprint: fingerprint_hash(fingerprint),
            counts: vec![0; sections],
            current: 0,
            scratch: Vec::new(),
        })
    }

    /// Appends tokens to the current section.
    pub fn push(&mut self, tokens: &[u32]) -> Result<(), DataError> {
        self.scratch.clear();
        self.scratch.reserve(tokens.len() * self.width);
        for &t in tokens {
            if t as usize >= self.vocab_size {
                return Err(DataError::Corpus {
                    corpus: self.path.display().to_string(),
                    message: format!(
                        "token id {t} does not fit the vocabulary size {}",
                        self.vocab_size
                    ),
                });
            }
            if self.width == 2 {
                self.scratch.extend_from_slice(&(t as u16).to_le_bytes());
            } else {
                self.scratch.extend_from_slice(&t.to_le_bytes());
            }
        }
        self.hasher.update(&self.scratch);
        let out = self.out.as_mut().expect("writer is open");
        out.write_all(&self.scratch)
            .map_err(|e| DataError::io(&self.tmp, e))?;
        self.counts[self.current] += tokens.len() as u64;
        Ok(())
    }

    /// Tokens written to the current section so far.
    pub fn section_len(&self) -> u64 {
        self.counts[self.current]
    }

    /// Moves on to the next section.
    pub fn next_section(&mut self) -> Result<(), DataError> {
        if self.current + 1 >= self.counts.len() {
            return Err(DataError::Corpus {
                corpus: self.path.display().to_string(),
                message: format!(
                    "token cache writer: more than the {} sections announced",
                    self.counts.len()
                ),
            });
        }
        self.current += 1;
        Ok(())
    }

    /// Writes the metadata and the header, syncs and renames the file into place.
    pub fn finish(mut self, meta: &str) -> Result<(), DataError> {
        let mut out = self.out.take().expect("writer is open");
        let tmp = self.tmp.clone();
        let res = (|| -> std::io::Result<()> {
            out.write_all(meta.as_bytes())?;
            self.hasher.update(meta.as_bytes());
            let checksum = std::mem::take(&mut self.hasher).finalize();
            let mut header = Vec::with_capacity(FIXED_HEADER + 8 * self.counts.len());
            header.extend_from_slice(MAGIC);
            header.extend_from_slice(&VERSION.to_le_bytes());
            header.extend_from_slice(&(self.width as u32).to_le_bytes());
            header.extend_from_slice(&self.fingerprint);
            header.extend_from_slice(&checksum);
            header.extend_from_slice(&(meta.len() as u64).to_le_bytes());
            header.extend_from_slice(&(self.counts.len() as u32).to_le_bytes());
            for c in &self.counts {
                header.extend_from_slice(&c.to_le_bytes());
            }
            let mut f = out.into_inner().map_err(|e| e.into_error())?;
            f.seek(SeekFrom::Start(0))?;
            f.write_all(&header)?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, &self.path)
        })();
        match res {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(DataError::io(&self.path, e))
            }
        }
    }
}

impl Drop for TokenCacheWriter {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `parts` to `path` through a uniquely named temporary file and a rename.
pub(crate) fn atomic_write(path: &Path, parts: &[&[u8]]) -> Result<(), DataError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let tmp = temp_name(path);
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        for p in parts {
            f.write_all(p)?;
        }
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(DataError::io(path, e));
    }
    Ok(())
}

fn temp_name(path: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(
        ".{name}.tmp.{}.{}.{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A token cache file opened with its header checked and its body memory-mapped.
pub struct TokenCache {
    path: PathBuf,
    map: memmap2::Mmap,
    width: usize,
    counts: Vec<usize>,
    offsets: Vec<usize>,
    meta: (usize, usize),
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("path", &self.path)
            .field("width", &self.width)
            .field("sections", &self.counts)
            .finish()
    }
}

impl TokenCache {
    /// Opens and checks `path` (see the module documentation for what is checked;
    /// `verify` forces the checksum for every size).
    pub fn open(path: &Path, expected_fingerprint: &str, verify: bool) -> Result<Self, DataError> {
        Self::open_checked(path, expected_fingerprint, Some(verify))
    }

    /// Opens a file this process has just written: header and length checks only.
    pub(crate) fn open_written(path: &Path, expected_fingerprint: &str) -> Result<Self, DataError> {
        Self::open_checked(path, expected_fingerprint, None)
    }

    /// `verify`: `Some(true)` always, `Some(false)` for small bodies, `None` never.
    fn open_checked(
        path: &Path,
        expected_fingerprint: &str,
        verify: Option<bool>,
    ) -> Result<Self, DataError> {
        let file = File::open(path).map_err(|e| DataError::io(path, e))?;
        // SAFETY: cache files are written once under a temporary name and renamed
        // into place; they are never modified afterwards, so the mapping is stable.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| DataError::io(path, e))?;
        let bytes: &[u8] = &map;
        let corrupt = |reason: String| DataError::CacheCorrupt {
            path: path.to_path_buf(),
            reason,
        };
        if bytes.len() < FIXED_HEADER {
            return Err(corrupt(format!(
                "truncated: {} bytes, shorter than the {FIXED_HEADER}-byte header",
                bytes.len()
            )));
        }
        if &bytes[0..8] != MAGIC {
            return Err(corrupt("not a token cache (bad magic)".into()));
        }
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap());
        let version = u32_at(8);
        if version != VERSION {
            return Err(corrupt(format!(
                "format version {version}, expected {VERSION}"
            )));
        }
        let width = u32_at(12) as usize;
        if width != 2 && width != 4 {
            return Err(corrupt(format!(
                "token width {width} bytes, expected 2 or 4"
            )));
        }
        let meta_len = u64_at(80) as usize;
        let nsec = u32_at(88) as usize;
        let header_len = FIXED_HEADER + 8 * nsec;
        if bytes.len() < header_len {
            return Err(corrupt(format!(
                "truncated inside the header ({} bytes)",
                bytes.len()
            )));
        }
        let counts: Vec<usize> = (0..nsec)
            .map(|i| u64_at(FIXED_HEADER + 8 * i) as usize)
            .collect();
        let token_bytes = counts
            .iter()
            .try_fold(0usize, |a, &c| a.checked_add(c.checked_mul(width)?));
        let expected_len =
            token_bytes.and_then(|t| t.checked_add(header_len)?.checked_add(meta_len));
        if expected_len != Some(bytes.len()) {
            return Err(corrupt(format!(
                "truncated or padded: {} bytes, the header promises {}",
                bytes.len(),
                expected_len
                    .map(|l| l.to_string())
                    .unwrap_or_else(|| "an impossible size".into())
            )));
        }
        let found_fp = &bytes[16..48];
        let expected_fp = fingerprint_hash(expected_fingerprint);
        if found_fp != expected_fp {
            return Err(DataError::CacheMismatch {
                path: path.to_path_buf(),
                expected: format!(
                    "{} (sha256 {}…)",
                    expected_fingerprint,
                    &hex(&expected_fp)[..16]
                ),
                found: format!("sha256 {}…", &hex(found_fp)[..16]),
            });
        }
        let body = &bytes[header_len..];
        let check = match verify {
            Some(v) => v || (body.len() as u64) <= VERIFY_ALWAYS_BELOW,
            None => false,
        };
        if check && Sha256::digest(body).as_slice() != &bytes[48..80] {
            return Err(corrupt("checksum mismatch".into()));
        }
        let mut offsets = Vec::with_capacity(nsec);
        let mut off = header_len;
        for &c in &counts {
            offsets.push(off);
            off += c * width;
        }
        let meta = (off, meta_len);
        std::str::from_utf8(&bytes[off..off + meta_len])
            .map_err(|_| corrupt("metadata is not UTF-8".into()))?;
        Ok(TokenCache {
            path: path.to_path_buf(),
            map,
            width,
            counts,
            offsets,
            meta,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes per token (2 or 4).
    pub fn width(&self) -> usize {
        self.width
    }

    /// Number of sections.
    pub fn num_sections(&self) -> usize {
        self.counts.len()
    }

    /// The metadata string.
    pub fn meta(&self) -> &str {
        std::str::from_utf8(&self.map[self.meta.0..self.meta.0 + self.meta.1])
            .expect("checked at open")
    }

    /// Section `i` as a view into the mapping. Panics if `i` is out of range.
    pub fn section(&self, i: usize) -> TokenView<'_> {
        let (off, n) = (self.offsets[i], self.counts[i]);
        let raw = &self.map[off..off + n * self.width];
        if self.width == 2 {
            TokenView::U16(cast_u16(raw))
        } else {
            TokenView::U32(cast_u32(raw))
        }
    }

    /// Copies every section into memory.
    pub fn to_token_file(&self) -> TokenFile {
        TokenFile {
            meta: self.meta().to_string(),
            sections: (0..self.num_sections())
                .map(|i| self.section(i).to_vec())
                .collect(),
        }
    }
}

#[cfg(target_endian = "little")]
fn cast_u16(raw: &[u8]) -> &[u16] {
    // SAFETY: the mapping is page-aligned and section offsets are multiples of 4
    // (header 92 + 8·s bytes, earlier sections of whole tokens of this width), so
    // `raw` is 2-aligned; any bit pattern is a valid u16; the target is little-endian.
    let (head, body, tail) = unsafe { raw.align_to::<u16>() };
    assert!(
        head.is_empty() && tail.is_empty(),
        "token section is aligned"
    );
    body
}

#[cfg(target_endian = "little")]
fn cast_u32(raw: &[u8]) -> &[u32] {
    // SAFETY: as for `cast_u16`; u32 sections start 4-aligned.
    let (head, body, tail) = unsafe { raw.align_to::<u32>() };
    assert!(
        head.is_empty() && tail.is_empty(),
        "token section is aligned"
    );
    body
}

#[cfg(not(target_endian = "little"))]
compile_error!(
    "algoprog-data maps little-endian token caches and supports little-endian targets only"
);

/// Reads a token cache written by [`write_token_cache`] into memory, checking
/// magic, version, length (truncation), tokenizer fingerprint and checksum.
pub fn read_token_cache(path: &Path, expected_fingerprint: &str) -> Result<TokenFile, DataError> {
    Ok(TokenCache::open(path, expected_fingerprint, true)?.to_token_file())
}

/// A borrowed token stream stored as `u16` or `u32`.
#[derive(Clone, Copy)]
pub enum TokenView<'a> {
    /// Two bytes per token (vocabularies up to 65536 ids).
    U16(&'a [u16]),
    /// Four bytes per token.
    U32(&'a [u32]),
}

impl<'a> TokenView<'a> {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        match self {
            TokenView::U16(s) => s.len(),
            TokenView::U32(s) => s.len(),
        }
    }

    /// Whether the view holds no token.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Token `i`. Panics if out of range.
    pub fn get(&self, i: usize) -> u32 {
        match self {
            TokenView::U16(s) => s[i] as u32,
            TokenView::U32(s) => s[i],
        }
    }

    /// The tokens in `range`. Panics if out of range.
    pub fn slice(
        &self,
        range: impl std::slice::SliceIndex<[u16], Output = [u16]>
            + std::slice::SliceIndex<[u32], Output = [u32]>,
    ) -> TokenView<'a> {
        match *self {
            TokenView::U16(s) => TokenView::U16(&s[range]),
            TokenView::U32(s) => TokenView::U32(&s[range]),
        }
    }

    /// Every token, widened to `u32`.
    pub fn iter(&self) -> impl Iterator<Item = u32> + 'a {
        let (a, b) = match *self {
            TokenView::U16(s) => (Some(s.iter().map(|&t| t as u32)), None),
            TokenView::U32(s) => (None, Some(s.iter().copied())),
        };
        a.into_iter().flatten().chain(b.into_iter().flatten())
    }

    /// Appends the tokens to `out`.
    pub fn extend_into(&self, out: &mut Vec<u32>) {
        match self {
            TokenView::U16(s) => out.extend(s.iter().map(|&t| t as u32)),
            TokenView::U32(s) => out.extend_from_slice(s),
        }
    }

    /// The tokens as a vector.
    pub fn to_vec(&self) -> Vec<u32> {
        let mut v = Vec::with_capacity(self.len());
        self.extend_into(&mut v);
        v
    }
}

impl std::fmt::Debug for TokenView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if matches!(self, TokenView::U16(_)) {
            "u16"
        } else {
            "u32"
        };
        write!(f, "TokenView<{kind}>[{}]", self.len())?;
        f.debug_list().entries(self.iter().take(32)).finish()?;
        if self.len() > 32 {
            write!(f, "…")?;
        }
        Ok(())
    }
}

impl PartialEq for TokenView<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl PartialEq<[u32]> for TokenView<'_> {
    fn eq(&self, other: &[u32]) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter().copied())
    }
}

impl PartialEq<&[u32]> for TokenView<'_> {
    fn eq(&self, other: &&[u32]) -> bool {
        *self == **other
    }
}

impl PartialEq<Vec<u32>> for TokenView<'_> {
    fn eq(&self, other: &Vec<u32>) -> bool {
        *self == other[..]
    }
}

impl PartialEq<TokenView<'_>> for Vec<u32> {
    fn eq(&self, other: &TokenView<'_>) -> bool {
        *other == self[..]
    }
}

impl PartialEq<TokenView<'_>> for &[u32] {
    fn eq(&self, other: &TokenView<'_>) -> bool {
        *other == **self
    }
}
