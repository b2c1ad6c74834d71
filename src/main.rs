//! The `algoprog` command line: train, fit, ceg (and, as they land, data, sweep, reproduce).

use clap::{Parser, Subcommand};

mod cmd;

#[derive(Parser)]
#[command(name = "algoprog", version, about = "Measure algorithmic progress in language-model training")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train one model from a TOML config and write its run record.
    Train(cmd::train::Args),
    /// Fit frontiers and scaling laws to training curves (CSV or run records).
    Fit(cmd::fit::Args),
    /// Compute-equivalent gains: multipliers, CEG functions, combination tests, Kaplan vs Chinchilla, decomposition.
    Ceg(cmd::ceg::Args),
    /// Corpora and token caches: `prepare` (C4, a directory or the embedded corpus) and `info`.
    Data(cmd::data::Args),
    /// Studies in a run store: `run` (local or Slurm), `status`, `export` (tidy CSV).
    Sweep(cmd::sweep::Args),
    /// Train or resume one run of a store (what each Slurm array task runs).
    Run(cmd::run::Args),
    /// Run a whole study (preset smoke|quick|paper) and write report.md with figures.
    Reproduce(cmd::reproduce::Args),
    /// Print text from a trained run: greedy, temperature, top-k or top-p sampling.
    Sample(cmd::sample::Args),
}

fn main() {
    algoprog_train::runtime::tune();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(a) => cmd::train::run(a),
        Command::Fit(a) => cmd::fit::run(a),
        Command::Ceg(a) => cmd::ceg::run(a),
        Command::Data(a) => cmd::data::run(a),
        Command::Sweep(a) => cmd::sweep::run(a),
        Command::Run(a) => cmd::run::run(a),
        Command::Reproduce(a) => cmd::reproduce::run(a),
        Command::Sample(a) => cmd::sample::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
