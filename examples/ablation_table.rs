//! The papers' ablation table (Figure 2) and the combination test at laptop
//! scale, over the library API: the `quick` study's ablation runs (modern,
//! each seam reverted, retro; two seeds) at its `auto` threshold.
//!
//! `cargo run --release --example ablation_table [STORE]` (default
//! `reproduce-quick/store`: reused when present, trained otherwise, a few
//! minutes on 2 cores). Prints the ablation rows of the published-vs-this
//! table.

#[path = "common/mod.rs"]
mod common;

use algoprog_report::sections::{
    ablation_section, choose_threshold, combination_section, exclusions, published_rows, Analysis,
};

fn main() -> anyhow::Result<()> {
    let (input, settings) = common::quick_runs(&common::store_dir())?;
    let ex = exclusions(&input, &settings);
    for (id, name, loss) in &ex.plateau {
        println!("plateau run left out: {id} {name} (lowest loss {loss:.4})");
    }
    let thr = choose_threshold(&input, &settings, &ex);
    println!("threshold: {}\n", thr.how);
    let (_, ablation) = ablation_section(&input, &settings, &ex, &thr, None)?;
    let (_, combination) = combination_section(ablation.as_ref(), &settings);
    let analysis = Analysis {
        threshold: Some(thr),
        exclusions: ex,
        ablation,
        combination,
        ..Default::default()
    };
    let rows = published_rows(&input, &settings, &analysis);
    common::print_rows(rows.iter().filter(|r| {
        r.quantity.contains("modern-retro_")
            || r.quantity.contains("all changes at once")
            || r.quantity.contains("product of")
    }));
    Ok(())
}
