//! `algoprog data prepare|info`: tokenise a corpus into the token cache, or
//! describe a prepared one.
//!
//! ```text
//! algoprog data prepare --source c4 --shards 8 --max-chars 6000000000 --tokenizer gpt2
//! algoprog data prepare --source c4 --offline            # hf-hub cache only
//! algoprog data prepare --source dir --path ./corpus --text-field body
//! algoprog data prepare --config configs/paper-modern.toml
//! algoprog data info --config configs/paper-modern.toml
//! ```

use std::path::PathBuf;
use std::time::Instant;

use algoprog_data::{
    C4Spec, CorpusSpec, DataConfig, Dataset, DirSpec, PrepareObserver, TokenizerSpec,
};
use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: DataCommand,
}

#[derive(clap::Subcommand)]
pub enum DataCommand {
    /// Tokenise a corpus into the token cache (streamed, bounded memory) with a progress bar.
    Prepare(PrepareArgs),
    /// Describe a prepared dataset: documents, tokens, vocabulary, cache file (builds nothing).
    Info(SourceArgs),
}

#[derive(clap::Args)]
pub struct PrepareArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    /// No progress bar (for logs and CI).
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Source {
    /// English C4 (allenai/c4) through the hf-hub cache.
    C4,
    /// A local directory of .txt / .jsonl / .jsonl.gz files.
    Dir,
    /// The public-domain corpus embedded in algoprog.
    Embedded,
    /// The embedded corpus plus public-domain English from registry packages (about 22M tokens with a 512-id BPE).
    Library,
}

/// Which data: a run config's `[data]` section, overridden by flags.
#[derive(clap::Args, Clone)]
pub struct SourceArgs {
    /// Run config (TOML) whose `[data]` section to start from.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Corpus source (default: the config's, else embedded).
    #[arg(long, value_enum)]
    pub source: Option<Source>,
    /// Directory of the `dir` source.
    #[arg(long)]
    pub path: Option<PathBuf>,
    /// JSON key holding the text (`dir` source; default "text").
    #[arg(long)]
    pub text_field: Option<String>,
    /// Number of C4 shards, from shard 0 (default 1).
    #[arg(long)]
    pub shards: Option<usize>,
    /// Character budget: stop after the document that reaches it (`c4`, `dir`).
    #[arg(long)]
    pub max_chars: Option<u64>,
    /// C4: use only the hf-hub cache (HF_HUB_CACHE / HF_HOME); never touch the network.
    #[arg(long)]
    pub offline: bool,
    /// C4: hf-hub cache directory (default: HF_HUB_CACHE, else HF_HOME/hub).
    #[arg(long)]
    pub hub_cache: Option<PathBuf>,
    /// C4: dataset revision (default main).
    #[arg(long)]
    pub revision: Option<String>,
    /// Tokenizer: gpt2 or bpe-N.
    #[arg(long, value_parser = parse_tokenizer)]
    pub tokenizer: Option<TokenizerSpec>,
    /// Minimum validation tokens.
    #[arg(long)]
    pub val_tokens: Option<usize>,
    /// Tokens per sequence.
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Stop the training stream at this many tokens.
    #[arg(long)]
    pub max_train_tokens: Option<usize>,
    /// algoprog cache directory (default: ALGOPROG_CACHE, else ~/.cache/algoprog).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Verify the token cache checksum on open whatever its size.
    #[arg(long)]
    pub verify: bool,
}

fn parse_tokenizer(s: &str) -> Result<TokenizerSpec, String> {
    s.parse()
        .map_err(|e: algoprog_data::DataError| e.to_string())
}

impl SourceArgs {
    /// The data config: the run config's `[data]` (or the defaults) with the flags applied.
    pub fn data_config(&self) -> anyhow::Result<DataConfig> {
        let mut cfg = match &self.config {
            Some(p) => {
                algoprog_train::RunConfig::from_file(p)
                    .with_context(|| format!("reading {}", p.display()))?
                    .data
            }
            None => DataConfig::default(),
        };
        let kind = self.source.unwrap_or(match cfg.corpus {
            CorpusSpec::Embedded => Source::Embedded,
            CorpusSpec::Library => Source::Library,
            CorpusSpec::Dir(_) => Source::Dir,
            CorpusSpec::C4(_) => Source::C4,
        });
        cfg.corpus = match kind {
            Source::Embedded | Source::Library => {
                for (set, flag) in [
                    (self.path.is_some(), "--path"),
                    (self.text_field.is_some(), "--text-field"),
                    (self.shards.is_some(), "--shards"),
                    (self.max_chars.is_some(), "--max-chars"),
                    (self.offline, "--offline"),
                    (self.hub_cache.is_some(), "--hub-cache"),
                ] {
                    if set {
                        bail!("{flag} does not apply to the embedded or library corpus; add --source c4 or --source dir");
                    }
                }
                if kind == Source::Library {
                    CorpusSpec::Library
                } else {
                    CorpusSpec::Embedded
                }
            }
            Source::Dir => {
                let mut d = match &cfg.corpus {
                    CorpusSpec::Dir(d) => d.clone(),
                    _ => match &self.path {
                        Some(p) => DirSpec::new(p),
                        None => bail!("--source dir needs --path DIR (a directory of .txt / .jsonl / .jsonl.gz files)"),
                    },
                };
                if let Some(p) = &self.path {
                    d.path = p.clone();
                }
                if let Some(f) = &self.text_field {
                    d.text_field = f.clone();
                }
                if self.max_chars.is_some() {
                    d.max_chars = self.max_chars;
                }
                for (set, flag) in [
                    (self.shards.is_some(), "--shards"),
                    (self.offline, "--offline"),
                    (self.hub_cache.is_some(), "--hub-cache"),
                    (self.revision.is_some(), "--revision"),
                ] {
                    if set {
                        bail!("{flag} applies to --source c4 only");
                    }
                }
                CorpusSpec::Dir(d)
            }
            Source::C4 => {
                let mut c = match &cfg.corpus {
                    CorpusSpec::C4(c) => c.clone(),
                    _ => C4Spec::default(),
                };
                if let Some(n) = self.shards {
                    c.shards = n;
                }
                if self.max_chars.is_some() {
                    c.max_chars = self.max_chars;
                }
                if self.offline {
                    c.offline = true;
                }
                if self.hub_cache.is_some() {
                    c.hub_cache = self.hub_cache.clone();
                }
                if self.revision.is_some() {
                    c.revision = self.revision.clone();
                }
                if self.path.is_some() || self.text_field.is_some() {
                    bail!("--path and --text-field apply to --source dir only");
                }
                CorpusSpec::C4(c)
            }
        };
        if let Some(t) = &self.tokenizer {
            cfg.tokenizer = t.clone();
        }
        if let Some(v) = self.val_tokens {
            cfg.val_tokens = v;
        }
        if let Some(s) = self.seq_len {
            cfg.seq_len = s;
        }
        if self.max_train_tokens.is_some() {
            cfg.max_train_tokens = self.max_train_tokens;
        }
        if self.cache_dir.is_some() {
            cfg.cache_dir = self.cache_dir.clone();
        }
        if self.verify {
            cfg.verify_cache = true;
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// indicatif spinner: documents, MB of text and tokens, with rates.
struct Bar {
    bar: ProgressBar,
    start: Instant,
}

impl PrepareObserver for Bar {
    fn message(&self, m: &str) {
        self.bar.println(m);
    }
    fn tokenised(&self, documents: u64, text_bytes: u64, tokens: u64) {
        let s = self.start.elapsed().as_secs_f64().max(1e-9);
        self.bar.set_message(format!(
            "{documents} docs  {:.1} MB ({:.2} MB/s)  {tokens} tokens ({:.0} tok/s)",
            text_bytes as f64 / 1e6,
            text_bytes as f64 / 1e6 / s,
            tokens as f64 / s
        ));
    }
}

/// Peak resident memory of this process in bytes (Linux `VmHWM`), if known.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn describe(data: &Dataset) {
    let size = std::fs::metadata(data.cache_path())
        .map(|m| m.len())
        .unwrap_or(0);
    println!("corpus               {}", data.corpus_identity());
    println!(
        "split                {}",
        if data.is_streamed() {
            "validation = first documents of the stream"
        } else {
            "validation = seeded document permutation prefix"
        }
    );
    println!(
        "documents train/val  {} / {}",
        data.train_document_count(),
        data.val_documents().len()
    );
    println!(
        "text                 {:.1} MB",
        data.text_bytes() as f64 / 1e6
    );
    println!(
        "tokens train/val     {} / {}",
        data.train_tokens(),
        data.val_tokens()
    );
    println!(
        "tokenizer            {} (vocab {})",
        data.fingerprint(),
        data.vocab_size()
    );
    println!(
        "cache                {} ({:.1} MB, {:?})",
        data.cache_path().display(),
        size as f64 / 1e6,
        data.cache_outcome()
    );
    println!(
        "unigram CE (val)     {:.4} nats/token",
        data.unigram_entropy()
    );
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        DataCommand::Prepare(a) => prepare(a),
        DataCommand::Info(a) => info(a),
    }
}

fn prepare(args: PrepareArgs) -> anyhow::Result<()> {
    let cfg = args.source.data_config()?;
    let start = Instant::now();
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .expect("valid template"),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let obs = Bar { bar, start };
    obs.bar
        .set_message(format!("opening corpus {}", cfg.corpus.kind()));
    let corpus = cfg.corpus.open()?;
    let data = Dataset::prepare_observed(&cfg, corpus.as_ref(), &obs)?;
    obs.bar.finish_and_clear();
    describe(&data);
    let t = data.timings();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "time                 {secs:.1} s (BPE training {:.1} s, tokenising {:.1} s, cache read {:.2} s)",
        t.bpe_train_s, t.tokenize_s, t.cache_read_s
    );
    if t.tokenize_s > 0.0 {
        println!(
            "throughput           {:.2} MB/s of text, {:.0} tokens/s",
            data.text_bytes() as f64 / 1e6 / t.tokenize_s,
            (data.train_tokens() + data.val_tokens()) as f64 / t.tokenize_s
        );
    }
    if let Some(p) = peak_rss() {
        println!("peak memory          {:.1} MB", p as f64 / 1e6);
    }
    Ok(())
}

fn info(args: SourceArgs) -> anyhow::Result<()> {
    let mut cfg = args.data_config()?;
    // `info` never downloads.
    if let CorpusSpec::C4(c) = &mut cfg.corpus {
        c.offline = true;
    }
    let corpus = cfg.corpus.open()?;
    let data = Dataset::load(&cfg, corpus.as_ref())?;
    describe(&data);
    Ok(())
}
