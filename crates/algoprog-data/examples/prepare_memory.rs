//! Peak memory and throughput of preparing a large streamed corpus.
//!
//! Generates a JSON-lines file of `MB` megabytes of English-like text (words of
//! the embedded corpus drawn by a fixed-seed generator, documents of 1–5 KB) in
//! a temporary directory, prepares it as a `dir` corpus, and prints the text
//! size, tokens, tokenisation throughput and the peak resident memory of the
//! process (Linux `VmHWM`, which also counts pages of the memory-mapped cache
//! that were touched). Run it at two sizes: the peak must not grow with the file.
//!
//! ```text
//! cargo run --release -p algoprog-data --example prepare_memory -- 40 gpt2
//! cargo run --release -p algoprog-data --example prepare_memory -- 400 gpt2
//! ```
//! (2 cores: about 10 s and 90 s for GPT-2.)

use std::io::Write;

use algoprog_data::{embedded_documents, CorpusSpec, DataConfig, Dataset, DirSpec, TokenizerSpec};

/// A `/proc/self/status` field in MB (Linux), NaN elsewhere.
fn status_mb(field: &str) -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn peak_rss_mb() -> f64 {
    status_mb("VmHWM:")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mb: u64 = args.next().unwrap_or_else(|| "40".into()).parse()?;
    let tokenizer: TokenizerSpec = args.next().unwrap_or_else(|| "gpt2".into()).parse()?;
    let dir = tempfile::TempDir::new()?;
    let corpus_dir = dir.path().join("corpus");
    std::fs::create_dir_all(&corpus_dir)?;

    // Vocabulary of words from a few embedded documents; then drop them.
    let words: Vec<String> = {
        let docs = embedded_documents()?;
        let mut w: Vec<String> = docs[..20]
            .iter()
            .flat_map(|d| d.text.split_whitespace().map(str::to_string))
            .collect();
        w.sort();
        w.dedup();
        w
    };
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let target = mb * 1_000_000;
    let mut written = 0u64;
    let mut out = std::io::BufWriter::new(std::fs::File::create(corpus_dir.join("big.jsonl"))?);
    let mut doc = String::new();
    while written < target {
        doc.clear();
        let len = 1000 + (next() % 4000) as usize;
        while doc.len() < len {
            doc.push_str(&words[(next() % words.len() as u64) as usize]);
            doc.push(if next() % 12 == 0 { '\n' } else { ' ' });
        }
        let line = serde_json::json!({ "text": doc }).to_string();
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        written += doc.len() as u64;
    }
    out.flush()?;
    drop(out);
    drop(words);
    let before = peak_rss_mb();

    let cfg = DataConfig {
        corpus: CorpusSpec::Dir(DirSpec::new(&corpus_dir)),
        tokenizer,
        cache_dir: Some(dir.path().join("cache")),
        ..DataConfig::default()
    };
    let t0 = std::time::Instant::now();
    let data = Dataset::prepare(&cfg)?;
    let total = t0.elapsed().as_secs_f64();
    let t = data.timings();
    println!(
        "text {:.0} MB  tokens {}  tokenise {:.1} s ({:.2} MB/s)  BPE training {:.1} s  total {:.1} s  \
         peak RSS before prepare {:.0} MB, after {:.0} MB (now: anonymous {:.0} MB, file-backed {:.0} MB)  cache {:.0} MB",
        data.text_bytes() as f64 / 1e6,
        data.train_tokens() + data.val_tokens(),
        t.tokenize_s,
        data.text_bytes() as f64 / 1e6 / t.tokenize_s,
        t.bpe_train_s,
        total,
        before,
        peak_rss_mb(),
        status_mb("RssAnon:"),
        status_mb("RssFile:"),
        std::fs::metadata(data.cache_path())?.len() as f64 / 1e6,
    );
    Ok(())
}
