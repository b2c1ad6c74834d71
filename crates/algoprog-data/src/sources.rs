//! Where a config's documents come from: [`CorpusSpec`] (the choice in a
//! config) and the sources read from files, a local directory and English C4
//! through the hf-hub cache, which stream documents with bounded memory.

use std::io::{BufRead, BufReader, IsTerminal};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::corpus::{hex, Corpus, DocStream, Document, EmbeddedCorpus, LibraryCorpus};
use crate::DataError;

/// Which corpus a config uses. In TOML (inside `[data]`):
///
/// ```toml
/// corpus = "embedded"
/// corpus = "library"
/// corpus = { dir = { path = "/data/my-corpus", text_field = "text" } }
/// corpus = { c4 = { shards = 8, max_chars = 6_000_000_000, offline = false } }
/// ```
///
/// or as a sub-table, e.g. `[data.corpus.c4]` followed by `shards = 8`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CorpusSpec {
    /// The embedded public-domain corpus shipped inside this crate.
    #[default]
    Embedded,
    /// The embedded corpus plus public-domain English gathered from registry
    /// packages, shipped compressed in this crate ([`crate::LibraryCorpus`]).
    Library,
    /// A local directory of `.txt`, `.jsonl`, `.jsonl.gz` and `.json.gz` files.
    Dir(DirSpec),
    /// English C4 (`allenai/c4`, `en/c4-train.*.json.gz`) through the hf-hub cache.
    C4(C4Spec),
}

impl CorpusSpec {
    /// The corpus this spec names. C4 shards are looked up in (or, unless
    /// offline, downloaded into) the hf-hub cache here.
    pub fn open(&self) -> Result<Box<dyn Corpus>, DataError> {
        match self {
            CorpusSpec::Embedded => Ok(Box::new(EmbeddedCorpus)),
            CorpusSpec::Library => Ok(Box::new(LibraryCorpus)),
            CorpusSpec::Dir(d) => Ok(Box::new(DirCorpus::open(d)?)),
            CorpusSpec::C4(c) => Ok(Box::new(C4Corpus::open(c)?)),
        }
    }

    /// Short name: `embedded`, `library`, `dir` or `c4`.
    pub fn kind(&self) -> &'static str {
        match self {
            CorpusSpec::Embedded => "embedded",
            CorpusSpec::Library => "library",
            CorpusSpec::Dir(_) => "dir",
            CorpusSpec::C4(_) => "c4",
        }
    }
}

fn default_text_field() -> String {
    "text".to_string()
}

/// A local directory corpus, `corpus = { dir = { path = "...", text_field = "text" } }`.
///
/// Files are found recursively (names starting with `.` are skipped) and read
/// in sorted order of their relative paths:
/// - `*.jsonl`, `*.jsonl.gz`, `*.json.gz`: one JSON object per line, the text in
///   `text_field`; an id field is not needed (documents are named `<file>:<line>`).
/// - `*.txt`: the whole file is one document (so the largest `.txt` file bounds
///   memory; put large text in JSON lines).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirSpec {
    /// The directory.
    pub path: PathBuf,
    /// JSON key holding the text (default `"text"`).
    #[serde(default = "default_text_field")]
    pub text_field: String,
    /// Stop after the document that brings the total to this many characters (Unicode scalar values).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_chars: Option<u64>,
}

impl DirSpec {
    /// A spec for `path` with the default text field and no budget.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DirSpec {
            path: path.into(),
            text_field: default_text_field(),
            max_chars: None,
        }
    }
}

fn default_shards() -> usize {
    1
}

/// English C4 (`allenai/c4`), `corpus = { c4 = { shards = 8, max_chars = 6_000_000_000 } }`.
///
/// Shards `en/c4-train.{00000..}-of-01024.json.gz` (JSON lines with `text`,
/// `timestamp`, `url`) are downloaded through `hf-hub` into its cache
/// (`hub_cache`, else `HF_HUB_CACHE`, else `HF_HOME/hub`, else
/// `~/.cache/huggingface/hub`) as they are reached; with `offline = true`
/// every shard must already be in that cache and a missing one is named.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct C4Spec {
    /// Number of training shards, from shard 0 (1 to 1024; default 1; one shard holds about 356 000 documents).
    #[serde(default = "default_shards")]
    pub shards: usize,
    /// Stop after the document that brings the total to this many characters
    /// (the papers used a 6-billion-character subset: `6_000_000_000`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_chars: Option<u64>,
    /// Use only the hf-hub cache; never touch the network.
    #[serde(default)]
    pub offline: bool,
    /// Dataset revision (branch, tag or commit; default `main`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// hf-hub cache directory (default: `HF_HUB_CACHE`, else `HF_HOME/hub`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_cache: Option<PathBuf>,
    /// The Hub to download from, e.g. a mirror (default: `HF_ENDPOINT`, else
    /// `https://huggingface.co`). The corpus identity does not depend on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

impl Default for C4Spec {
    fn default() -> Self {
        C4Spec {
            shards: 1,
            max_chars: None,
            offline: false,
            revision: None,
            hub_cache: None,
            endpoint: None,
        }
    }
}

/// Number of English training shards of C4.
pub const C4_SHARDS: usize = 1024;

/// Path of C4 English training shard `i` inside the `allenai/c4` repository.
pub fn c4_shard_name(i: usize) -> String {
    format!("en/c4-train.{i:05}-of-01024.json.gz")
}

/// Opens a corpus file for line reading, decompressing `.gz` (multi-member too).
fn open_lines(path: &Path) -> Result<Box<dyn BufRead + Send>, DataError> {
    let f = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let is_gz = path.extension().is_some_and(|e| e == "gz");
    Ok(if is_gz {
        Box::new(BufReader::with_capacity(
            1 << 20,
            flate2::read::MultiGzDecoder::new(BufReader::with_capacity(1 << 20, f)),
        ))
    } else {
        Box::new(BufReader::with_capacity(1 << 20, f))
    })
}

/// Documents of one JSON-lines file (optionally gzip), one per non-blank line.
pub(crate) struct JsonLines {
    path: PathBuf,
    name: String,
    text_field: String,
    reader: Option<Box<dyn BufRead + Send>>,
    line: u64,
    buf: String,
}

impl JsonLines {
    /// Reads `path`, naming documents `<name>:<line>`.
    pub(crate) fn open(path: &Path, name: String, text_field: &str) -> Result<Self, DataError> {
        Ok(JsonLines {
            reader: Some(open_lines(path)?),
            path: path.to_path_buf(),
            name,
            text_field: text_field.to_string(),
            line: 0,
            buf: String::new(),
        })
    }

    fn parse(&self) -> Result<Document, DataError> {
        let bad = |m: String| DataError::source(&self.path, Some(self.line), m);
        let mut obj: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&self.buf)
            .map_err(|e| {
            bad(format!(
                "not a JSON object ({e}); every line must be one JSON object"
            ))
        })?;
        match obj.remove(&self.text_field) {
            Some(serde_json::Value::String(text)) => Ok(Document {
                id: format!("{}:{}", self.name, self.line),
                text,
            }),
            Some(other) => Err(bad(format!(
                "field {:?} is a {}, not a string; set `text_field` to the key holding the text",
                self.text_field,
                json_kind(&other)
            ))),
            None => {
                let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
                Err(bad(format!(
                    "no text field {:?} (the line has keys {keys:?}); set `text_field` (CLI: --text-field) to the key holding the text",
                    self.text_field
                )))
            }
        }
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

impl Iterator for JsonLines {
    type Item = Result<Document, DataError>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let reader = self.reader.as_mut()?;
            self.buf.clear();
            self.line += 1;
            match reader.read_line(&mut self.buf) {
                Ok(0) => {
                    self.reader = None;
                    return None;
                }
                Ok(_) => {
                    if self.buf.trim().is_empty() {
                        continue;
                    }
                    return Some(self.parse());
                }
                Err(e) => {
                    self.reader = None;
                    let gz = self.path.extension().is_some_and(|x| x == "gz");
                    let hint = if gz {
                        "the gzip stream is corrupt or truncated; delete the file and download or recreate it"
                    } else {
                        "the file is unreadable or not UTF-8"
                    };
                    return Some(Err(DataError::source(
                        &self.path,
                        Some(self.line),
                        format!("cannot read: {e}; {hint}"),
                    )));
                }
            }
        }
    }
}

/// Stops a document stream once `max_chars` characters have been delivered
/// (the document crossing the budget is kept).
struct Budget<'a> {
    inner: DocStream<'a>,
    max_chars: Option<u64>,
    chars: u64,
}

impl Iterator for Budget<'_> {
    type Item = Result<Document, DataError>;
    fn next(&mut self) -> Option<Self::Item> {
        if let Some(m) = self.max_chars {
            if self.chars >= m {
                return None;
            }
        }
        let d = self.inner.next()?;
        if let (Ok(doc), Some(_)) = (&d, self.max_chars) {
            self.chars += doc.text.chars().count() as u64;
        }
        Some(d)
    }
}

fn budgeted(inner: DocStream<'_>, max_chars: Option<u64>) -> DocStream<'_> {
    Box::new(Budget {
        inner,
        max_chars,
        chars: 0,
    })
}

/// A local directory of text files; see [`DirSpec`].
///
/// Identity: a hash of the relative path, size and modification time of every
/// file, the text field and the budget (contents are not hashed: rewriting a
/// file changes its modification time).
#[derive(Clone, Debug)]
pub struct DirCorpus {
    spec: DirSpec,
    files: Vec<(PathBuf, String, u64)>,
    identity: String,
}

fn corpus_file_kind(name: &str) -> Option<&'static str> {
    if name.ends_with(".jsonl") || name.ends_with(".jsonl.gz") || name.ends_with(".json.gz") {
        Some("jsonl")
    } else if name.ends_with(".txt") {
        Some("txt")
    } else {
        None
    }
}

impl DirCorpus {
    /// Lists the directory's corpus files.
    pub fn open(spec: &DirSpec) -> Result<Self, DataError> {
        let root = &spec.path;
        let meta = std::fs::metadata(root).map_err(|e| DataError::io(root, e))?;
        if !meta.is_dir() {
            return Err(DataError::source(root, None, "is not a directory; `corpus.dir.path` must name a directory of .txt / .jsonl / .jsonl.gz files"));
        }
        let mut files = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).map_err(|e| DataError::io(&dir, e))? {
                let entry = entry.map_err(|e| DataError::io(&dir, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                let path = entry.path();
                let md = std::fs::metadata(&path).map_err(|e| DataError::io(&path, e))?;
                if md.is_dir() {
                    stack.push(path);
                } else if corpus_file_kind(&name).is_some() {
                    let rel = path
                        .strip_prefix(root)
                        .unwrap_or(&path)
                        .to_string_lossy()
                        .replace('\\', "/");
                    let mtime = md
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                        .map(|d| d.as_nanos())
                        .unwrap_or(0);
                    files.push((path, rel, md.len(), mtime));
                }
            }
        }
        if files.is_empty() {
            return Err(DataError::source(
                root,
                None,
                "holds no .txt, .jsonl, .jsonl.gz or .json.gz file; put the corpus files there or point `corpus.dir.path` elsewhere",
            ));
        }
        files.sort_by(|a, b| a.1.cmp(&b.1));
        let mut h = Sha256::new();
        for (_, rel, size, mtime) in &files {
            h.update(format!("{rel}\0{size}\0{mtime}\n").as_bytes());
        }
        h.update(format!("field={}\0max_chars={:?}", spec.text_field, spec.max_chars).as_bytes());
        let identity = format!("dir:{}", &hex(&h.finalize())[..16]);
        Ok(DirCorpus {
            spec: spec.clone(),
            files: files.into_iter().map(|(p, r, s, _)| (p, r, s)).collect(),
            identity,
        })
    }

    /// The corpus files in reading order.
    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|f| f.0.as_path())
    }
}

impl Corpus for DirCorpus {
    fn identity(&self) -> String {
        self.identity.clone()
    }
    fn documents(&self) -> Result<Vec<Document>, DataError> {
        self.stream()?.collect()
    }
    fn stream(&self) -> Result<DocStream<'_>, DataError> {
        let field = self.spec.text_field.clone();
        let files = self.files.clone();
        let it = files
            .into_iter()
            .flat_map(move |(path, rel, _)| -> DocStream<'static> {
                if corpus_file_kind(&rel) == Some("txt") {
                    let doc = std::fs::read_to_string(&path)
                        .map_err(|e| {
                            DataError::source(
                                &path,
                                None,
                                format!("cannot read as UTF-8 text: {e}"),
                            )
                        })
                        .map(|text| Document {
                            id: rel.clone(),
                            text,
                        });
                    Box::new(std::iter::once(doc))
                } else {
                    match JsonLines::open(&path, rel.clone(), &field) {
                        Ok(j) => Box::new(j),
                        Err(e) => Box::new(std::iter::once(Err(e))),
                    }
                }
            });
        Ok(budgeted(Box::new(it), self.spec.max_chars))
    }
    fn is_streamed(&self) -> bool {
        true
    }
    fn size_hint_bytes(&self) -> Option<u64> {
        Some(self.files.iter().map(|f| f.2).sum())
    }
}

/// English C4 through the hf-hub cache; see [`C4Spec`].
///
/// Identity: `c4:allenai/c4@<commit>:en:shards=<n>:max_chars=<m>`, the commit
/// read from the snapshot the first shard resolved to.
pub struct C4Corpus {
    spec: C4Spec,
    /// The download client; `None` offline, where nothing may touch the network.
    api: Option<hf_hub::api::sync::ApiRepo>,
    hub_cache: PathBuf,
    /// Shard paths resolved so far (all of them when offline).
    resolved: Vec<PathBuf>,
    commit: String,
}

impl std::fmt::Debug for C4Corpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("C4Corpus")
            .field("spec", &self.spec)
            .field("hub_cache", &self.hub_cache)
            .field("commit", &self.commit)
            .finish()
    }
}

/// The hf-hub cache directory a C4 spec uses: `hub_cache`, else the Hugging
/// Face convention: `HF_HUB_CACHE`, `HUGGINGFACE_HUB_CACHE`, `HF_HOME/hub`,
/// `~/.cache/huggingface/hub`.
pub fn hub_cache_dir(spec: &C4Spec) -> PathBuf {
    if let Some(dir) = &spec.hub_cache {
        return dir.clone();
    }
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("HF_HUB_CACHE")
        .or_else(|| var("HUGGINGFACE_HUB_CACHE"))
        .or_else(|| var("HF_HOME").map(|h| h.join("hub")))
        .unwrap_or_else(|| {
            std::env::home_dir()
                .unwrap_or_default()
                .join(".cache")
                .join("huggingface")
                .join("hub")
        })
}

/// The Hub a C4 spec downloads from: `endpoint`, else `HF_ENDPOINT`, else huggingface.co.
fn hub_endpoint(spec: &C4Spec) -> String {
    spec.endpoint
        .clone()
        .or_else(|| std::env::var("HF_ENDPOINT").ok())
        .filter(|e| !e.is_empty())
        .map(|e| e.trim_end_matches('/').to_string())
        .unwrap_or_else(|| "https://huggingface.co".into())
}

/// Download attempts after the first failure of a shard (each resumes the partial file).
const DOWNLOAD_RETRIES: usize = 3;

impl C4Corpus {
    /// Resolves shard 0 (downloading it unless offline); offline, every shard is
    /// looked up now so that a missing one is reported before any work.
    pub fn open(spec: &C4Spec) -> Result<Self, DataError> {
        if spec.shards == 0 || spec.shards > C4_SHARDS {
            return Err(DataError::config(
                "corpus.c4.shards",
                format!("= {} must be between 1 and {C4_SHARDS}", spec.shards),
            ));
        }
        if spec.max_chars == Some(0) {
            return Err(DataError::config(
                "corpus.c4.max_chars",
                "= 0 selects no text; leave it out to use whole shards",
            ));
        }
        let hub_cache = hub_cache_dir(spec);
        let api = if spec.offline {
            None
        } else {
            let rev = spec.revision.clone().unwrap_or_else(|| "main".into());
            // The token, if any, is the one `huggingface-cli login` stored under HF_HOME.
            let api = hf_hub::api::sync::ApiBuilder::from_env()
                .with_cache_dir(hub_cache.clone())
                .with_endpoint(hub_endpoint(spec))
                .with_retries(DOWNLOAD_RETRIES)
                // a download bar only on a terminal (see `resolve`)
                .with_progress(std::io::stderr().is_terminal())
                .build()
                .map_err(|e| {
                    DataError::source(
                        &hub_cache,
                        None,
                        format!("cannot create the hf-hub client: {e}"),
                    )
                })?;
            Some(api.repo(hf_hub::Repo::with_revision(
                "allenai/c4".into(),
                hf_hub::RepoType::Dataset,
                rev,
            )))
        };
        let mut c4 = C4Corpus {
            spec: spec.clone(),
            api,
            hub_cache,
            resolved: Vec::new(),
            commit: String::new(),
        };
        let n = if spec.offline { spec.shards } else { 1 };
        for i in 0..n {
            let p = c4.resolve(i)?;
            c4.resolved.push(p);
        }
        c4.commit = commit_of(&c4.resolved[0])
            .unwrap_or_else(|| spec.revision.clone().unwrap_or_else(|| "main".into()));
        Ok(c4)
    }

    /// The hf-hub cache directory in use.
    pub fn hub_cache(&self) -> &Path {
        &self.hub_cache
    }

    /// The dataset commit the shards come from.
    pub fn commit(&self) -> &str {
        &self.commit
    }

    /// The path of shard `i` in the cache, downloading it first unless offline.
    ///
    /// The cache has the Hugging Face layout: `datasets--allenai--c4/refs/<revision>`
    /// holds the commit, `snapshots/<commit>/<file>` links to `blobs/<etag>`. A
    /// file already in the cache is used without touching the network.
    fn resolve(&self, i: usize) -> Result<PathBuf, DataError> {
        let name = c4_shard_name(i);
        let rev = self.spec.revision.clone().unwrap_or_else(|| "main".into());
        let repo_dir = self.hub_cache.join("datasets--allenai--c4");
        let ref_file = repo_dir.join("refs").join(&rev);
        let commit = if rev.len() == 40 && rev.chars().all(|c| c.is_ascii_hexdigit()) {
            Some(rev.clone())
        } else {
            std::fs::read_to_string(&ref_file)
                .ok()
                .map(|s| s.trim().to_string())
        };
        let cached = commit
            .as_ref()
            .map(|c| repo_dir.join("snapshots").join(c).join(&name));
        if let Some(path) = cached.as_ref().filter(|p| p.exists()) {
            return Ok(path.clone());
        }
        let Some(api) = &self.api else {
            return Err(match cached {
                Some(path) => DataError::source(
                    path,
                    None,
                    format!(
                        "C4 shard {name} is missing from the hf-hub cache (offline mode); run `algoprog data prepare --source c4` \
                         once with network access, or point HF_HUB_CACHE / HF_HOME / `hub_cache` at the cache that holds it"
                    ),
                ),
                None => DataError::source(
                    &ref_file,
                    None,
                    format!(
                        "allenai/c4 revision {rev:?} is not in the hf-hub cache {} (offline mode), so C4 shard {name} cannot be found; \
                         run `algoprog data prepare --source c4` once with network access, or point HF_HUB_CACHE / HF_HOME / `hub_cache` at the cache that holds it",
                        self.hub_cache.display()
                    ),
                ),
            });
        };
        // Shard 0 is fetched by `open`, before a caller shows any progress of
        // its own: hf-hub draws a download bar for it on a terminal. Later
        // shards are fetched while the caller reports tokenisation progress
        // (the CLI's bar), so they draw nothing.
        let fetched = if i == 0 {
            api.download(&name)
        } else {
            api.download_with_progress(&name, ())
        };
        fetched.map_err(|e| {
            DataError::source(
                repo_dir.join(&name),
                None,
                format!("cannot download C4 shard {name} from allenai/c4 ({}): {e}; check the network, or use --offline with a filled hf-hub cache", api.url(&name)),
            )
        })
    }
}

/// The commit hash in `.../snapshots/<commit>/en/<file>`.
fn commit_of(path: &Path) -> Option<String> {
    let comps: Vec<String> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let i = comps.iter().rposition(|c| c == "snapshots")?;
    comps.get(i + 1).cloned()
}

impl Corpus for C4Corpus {
    fn identity(&self) -> String {
        format!(
            "c4:allenai/c4@{}:en:shards={}:max_chars={}",
            self.commit,
            self.spec.shards,
            self.spec
                .max_chars
                .map(|m| m.to_string())
                .unwrap_or_else(|| "all".into())
        )
    }
    fn documents(&self) -> Result<Vec<Document>, DataError> {
        self.stream()?.collect()
    }
    fn stream(&self) -> Result<DocStream<'_>, DataError> {
        let it = (0..self.spec.shards).flat_map(move |i| -> DocStream<'_> {
            let path = match self.resolved.get(i) {
                Some(p) => Ok(p.clone()),
                None => self.resolve(i),
            };
            let name = c4_shard_name(i);
            match path.and_then(|p| JsonLines::open(&p, name, "text")) {
                Ok(j) => Box::new(j),
                Err(e) => Box::new(std::iter::once(Err(e))),
            }
        });
        Ok(budgeted(Box::new(it), self.spec.max_chars))
    }
    fn is_streamed(&self) -> bool {
        true
    }
    fn size_hint_bytes(&self) -> Option<u64> {
        if self.resolved.len() == self.spec.shards {
            self.resolved
                .iter()
                .map(|p| std::fs::metadata(p).ok().map(|m| m.len()))
                .sum()
        } else {
            None
        }
    }
}
