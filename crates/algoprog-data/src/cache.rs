//! The token cache: a binary file of token streams with a checked header.
//!
//! Layout (all integers little-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 8 | magic `b"ALGOTOK\0"` |
//! | 4 | format version (1) |
//! | 4 | bytes per token: 2 (`u16`, vocabulary ≤ 65536) or 4 (`u32`) |
//! | 32 | sha256 of the tokenizer fingerprint |
//! | 32 | sha256 of everything after the header (metadata and tokens) |
//! | 8 | metadata length m |
//! | 4 | number of sections s |
//! | 8·s | token count of each section |
//! | m | metadata (UTF-8 JSON) |
//! | … | the sections' tokens, one after another |
//!
//! A file whose length disagrees with its header is *truncated*, one whose
//! checksum disagrees is *corrupt*, one whose fingerprint hash disagrees with
//! the requested tokenizer is a *mismatch*; [`read_token_cache`] reports each
//! as an error and [`crate::Dataset::prepare`] rebuilds the file.
//! Files are written to a temporary name in the same directory and renamed, so
//! concurrent writers of the same key never expose a partial file.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::corpus::hex;
use crate::DataError;

const MAGIC: &[u8; 8] = b"ALGOTOK\0";
const VERSION: u32 = 1;

/// The contents of a token cache file.
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

/// Writes `file` to `path` atomically (temporary file in the same directory, then
/// rename). Tokens are stored as `u16` when `vocab_size ≤ 65536`, else as `u32`.
pub fn write_token_cache(path: &Path, fingerprint: &str, vocab_size: usize, file: &TokenFile) -> Result<(), DataError> {
    let width: u32 = if vocab_size <= 1 << 16 { 2 } else { 4 };
    let mut body = Vec::new();
    body.extend_from_slice(file.meta.as_bytes());
    for s in &file.sections {
        body.reserve(s.len() * width as usize);
        for &t in s {
            if width == 2 {
                let t16 = u16::try_from(t).map_err(|_| DataError::Corpus {
                    corpus: path.display().to_string(),
                    message: format!("token id {t} does not fit the vocabulary size {vocab_size}"),
                })?;
                body.extend_from_slice(&t16.to_le_bytes());
            } else {
                body.extend_from_slice(&t.to_le_bytes());
            }
        }
    }
    let mut header = Vec::new();
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&VERSION.to_le_bytes());
    header.extend_from_slice(&width.to_le_bytes());
    header.extend_from_slice(&fingerprint_hash(fingerprint));
    header.extend_from_slice(&Sha256::digest(&body));
    header.extend_from_slice(&(file.meta.len() as u64).to_le_bytes());
    header.extend_from_slice(&(file.sections.len() as u32).to_le_bytes());
    for s in &file.sections {
        header.extend_from_slice(&(s.len() as u64).to_le_bytes());
    }
    atomic_write(path, &[&header, &body])
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
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(
        ".{name}.tmp.{}.{}.{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Reads a token cache written by [`write_token_cache`], checking magic, version,
/// length (truncation), tokenizer fingerprint and checksum.
pub fn read_token_cache(path: &Path, expected_fingerprint: &str) -> Result<TokenFile, DataError> {
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    let corrupt = |reason: String| DataError::CacheCorrupt {
        path: path.to_path_buf(),
        reason,
    };
    let fixed = 8 + 4 + 4 + 32 + 32 + 8 + 4;
    if bytes.len() < fixed {
        return Err(corrupt(format!("truncated: {} bytes, shorter than the {fixed}-byte header", bytes.len())));
    }
    if &bytes[0..8] != MAGIC {
        return Err(corrupt("not a token cache (bad magic)".into()));
    }
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap());
    let version = u32_at(8);
    if version != VERSION {
        return Err(corrupt(format!("format version {version}, expected {VERSION}")));
    }
    let width = u32_at(12) as usize;
    if width != 2 && width != 4 {
        return Err(corrupt(format!("token width {width} bytes, expected 2 or 4")));
    }
    let found_fp = &bytes[16..48];
    let expected_fp = fingerprint_hash(expected_fingerprint);
    let checksum = &bytes[48..80];
    let meta_len = u64_at(80) as usize;
    let nsec = u32_at(88) as usize;
    let header_len = fixed + 8 * nsec;
    if bytes.len() < header_len {
        return Err(corrupt(format!("truncated inside the header ({} bytes)", bytes.len())));
    }
    let counts: Vec<usize> = (0..nsec).map(|i| u64_at(fixed + 8 * i) as usize).collect();
    let expected_len = header_len + meta_len + counts.iter().sum::<usize>() * width;
    if bytes.len() != expected_len {
        return Err(corrupt(format!(
            "truncated or padded: {} bytes, the header promises {expected_len}",
            bytes.len()
        )));
    }
    if found_fp != expected_fp {
        return Err(DataError::CacheMismatch {
            path: path.to_path_buf(),
            expected: format!("{} (sha256 {}…)", expected_fingerprint, &hex(&expected_fp)[..16]),
            found: format!("sha256 {}…", &hex(found_fp)[..16]),
        });
    }
    let body = &bytes[header_len..];
    if Sha256::digest(body).as_slice() != checksum {
        return Err(corrupt("checksum mismatch".into()));
    }
    let meta = std::str::from_utf8(&body[..meta_len])
        .map_err(|_| corrupt("metadata is not UTF-8".into()))?
        .to_string();
    let mut off = meta_len;
    let mut sections = Vec::with_capacity(nsec);
    for n in counts {
        let raw = &body[off..off + n * width];
        off += n * width;
        let s: Vec<u32> = if width == 2 {
            raw.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]) as u32).collect()
        } else {
            raw.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
        };
        sections.push(s);
    }
    Ok(TokenFile { meta, sections })
}
