//! Checks that the fast BPE encoder gives the `tokenizers` library's ids on the
//! whole embedded corpus, and times both. BPEs of 512, 4096 and 16384 ids are
//! trained on 60 documents, so most of the text encoded is unseen.
//!
//! `cargo run --release -p algoprog-data --example bpe_equivalence` (about a minute on 2 cores).

use algoprog_data::*;
use rayon::prelude::*;
fn main() {
    let docs = embedded_documents().unwrap();
    for v in [512usize, 4096, 16384] {
        let t0 = std::time::Instant::now();
        let tok = BpeTokenizer::train(docs[..60].iter().map(|d| d.text.as_str()), v).unwrap();
        println!(
            "vocab {v}: train 60 docs {:.2}s",
            t0.elapsed().as_secs_f64()
        );
        let t0 = std::time::Instant::now();
        let fast: Vec<Vec<u32>> = docs.par_iter().map(|d| tok.encode(&d.text)).collect();
        println!("fast {:.2}s", t0.elapsed().as_secs_f64());
        let t0 = std::time::Instant::now();
        let slow: Vec<Vec<u32>> = docs
            .par_iter()
            .map(|d| tok.encode_reference(&d.text))
            .collect();
        println!("reference {:.2}s", t0.elapsed().as_secs_f64());
        let diff = fast.iter().zip(&slow).filter(|(a, b)| a != b).count();
        println!(
            "docs differing: {diff}; decode ok: {}",
            docs.iter().zip(&fast).all(|(d, f)| tok.decode(f) == d.text)
        );
    }
}
