//! Prepares a dataset and prints its statistics and preparation times.
//!
//! `cargo run --release -p algoprog-data --example prepare -- [TOKENIZER] [CACHE_DIR] [CORPUS]`
//! with TOKENIZER `gpt2` or `bpe-N` (default `bpe-4096`) and CORPUS `embedded`
//! (default) or `library`.

use algoprog_data::{CorpusSpec, DataConfig, Dataset};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let tokenizer = args.next().unwrap_or_else(|| "bpe-4096".into()).parse()?;
    let cache_dir = args.next().map(Into::into);
    let corpus = match args.next().as_deref() {
        None | Some("embedded") => CorpusSpec::Embedded,
        Some("library") => CorpusSpec::Library,
        Some(other) => {
            return Err(format!("unknown corpus {other:?}: expected embedded or library").into())
        }
    };
    let cfg = DataConfig {
        corpus,
        tokenizer,
        cache_dir,
        ..DataConfig::default()
    };
    let t0 = std::time::Instant::now();
    let progress = |m: &str| eprintln!("{m}");
    let corpus = cfg.corpus.open()?;
    let data = Dataset::prepare_with(&cfg, corpus.as_ref(), Some(&progress))?;
    let t = data.timings();
    println!("tokenizer            {}", data.fingerprint());
    println!(
        "cache                {} ({:?})",
        data.cache_path().display(),
        data.cache_outcome()
    );
    println!(
        "documents train/val  {} / {}",
        data.train_documents().len(),
        data.val_documents().len()
    );
    println!(
        "tokens train/val     {} / {}",
        data.train_tokens(),
        data.val_tokens()
    );
    println!(
        "sequences train/val  {} / {}",
        data.num_train_sequences(),
        data.num_val_sequences()
    );
    println!(
        "unigram CE (val)     {:.4} nats/token",
        data.unigram_entropy()
    );
    println!(
        "unigram H (train)    {:.4} nats/token",
        data.train_unigram_entropy()
    );
    println!(
        "times: bpe train {:.2} s, tokenise {:.2} s, cache read {:.3} s, total {:.2} s",
        t.bpe_train_s,
        t.tokenize_s,
        t.cache_read_s,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
