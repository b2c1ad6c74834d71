//! LSTM vs Transformer at laptop scale, over the library API: frontiers of
//! the `quick` study's size scan (modern, retro, LSTM), their power-law
//! exponents, and the frontier-based CEG of each Transformer over the LSTM
//! at the study's threshold (the papers: 6.28 and 4.69 at 5.277 nats).
//!
//! `cargo run --release --example lstm_vs_transformer [STORE]` (default
//! `reproduce-quick/store`: reused when present, trained otherwise). Prints
//! its rows of the published-vs-this table.

#[path = "common/mod.rs"]
mod common;

use algoprog_report::sections::{
    choose_threshold, exclusions, frontier_fits, matched_section, published_rows, Analysis,
};

fn main() -> anyhow::Result<()> {
    let (input, settings) = common::quick_runs(&common::store_dir())?;
    let ex = exclusions(&input, &settings);
    let thr = choose_threshold(&input, &settings, &ex);
    println!("threshold: {}\n", thr.how);
    let fits = frontier_fits(&input, &settings, &ex);
    for (fam, f) in &fits {
        match f {
            Ok(f) => println!(
                "{fam}: L = {:.3} + {:.3e}·C^-{:.4} over {} frontier points",
                f.law.e,
                f.law.a,
                f.law.gamma,
                f.points.len()
            ),
            Err(e) => println!("{fam}: not fitted: {e}"),
        }
    }
    println!();
    let (_, matched) = matched_section(&settings, &fits, &thr);
    let analysis = Analysis {
        threshold: Some(thr),
        exclusions: ex,
        fits,
        matched,
        ..Default::default()
    };
    let rows = published_rows(&input, &settings, &analysis);
    common::print_rows(
        rows.iter().filter(|r| {
            r.quantity.contains("frontier exponent") || r.quantity.contains("over LSTM")
        }),
    );
    Ok(())
}
