//! Trains `modern` and `modern-sqrelu` (the custom model) at width 32 with two
//! seeds each through algoprog's trainer, in a run store, and writes the
//! report with the CEG of the custom model against modern.
//!
//! `cargo run --release -p algoprog-example-custom-component [-- OUT_DIR]`

/// As algoprog's CLI: `algoprog_train::runtime::MiMalloc` says why.
#[global_allocator]
static ALLOC: algoprog_train::runtime::MiMalloc = algoprog_train::runtime::MiMalloc;

fn main() -> Result<(), algoprog_example_custom_component::BoxError> {
    algoprog_train::runtime::tune();
    let out = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from("runs/custom-component"));
    let (report, analysis) = algoprog_example_custom_component::run_study(&out, 60, 5.2)?;
    println!("report: {}", report.display());
    if let Some(v) = analysis
        .ablation
        .as_ref()
        .and_then(|a| a.variant("modern-sqrelu"))
    {
        match v.ceg {
            Some(c) => println!("CEG of modern-sqrelu against modern: {c:.3}"),
            None => println!("no CEG: {}", v.note.clone().unwrap_or_default()),
        }
    }
    Ok(())
}
