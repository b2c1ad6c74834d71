//! The `algoprog` command line: train, fit, ceg, data, sweep, run, reproduce, report and sample.

use clap::{Parser, Subcommand};

mod cmd;

#[derive(Parser)]
#[command(
    name = "algoprog",
    version,
    about = "Measure algorithmic progress in language-model training"
)]
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
    /// Write the report (report.md + figures) from a run store, run records or a CSV of any framework's logs.
    Report(cmd::report::Args),
    /// Print text from a trained run: greedy, temperature, top-k or top-p sampling.
    Sample(cmd::sample::Args),
}

/// mimalloc, for training speed: `algoprog_train::runtime::MiMalloc` says why.
#[global_allocator]
static ALLOC: algoprog_train::runtime::MiMalloc = algoprog_train::runtime::MiMalloc;

fn main() {
    quiet_on_closed_pipe();
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
        Command::Report(a) => cmd::report::run(a),
        Command::Sample(a) => cmd::sample::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {}", error_chain(&e));
        std::process::exit(1);
    }
}

/// Rust starts programs with SIGPIPE ignored, so writing to a pipe whose
/// reader has gone (`algoprog ceg multiplier … | head`) makes `println!`
/// panic. Restore the default action: the process ends quietly, as Unix
/// filters do. Nothing here writes to a child's stdin, and the standard
/// library's sockets send with MSG_NOSIGNAL, so only closed stdout/stderr
/// pipes are affected.
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any other thread exists;
    // setting a signal's action to its default has no other precondition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// The error and its causes, joined by ": ". A cause whose text an earlier
/// message already contains is left out: many errors quote their source
/// (`x.csv: cannot read: No such file or directory`), and anyhow's `{:#}`
/// would print that source a second time.
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(text.as_str()) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[test]
    fn a_cause_quoted_by_its_error_is_printed_once() {
        let io = std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "No such file or directory (os error 2)",
        );
        let e = algoprog_scaling::ScalingError::Io {
            path: "x.csv".into(),
            source: io,
        };
        let e = anyhow::Error::new(e).context("loading curves from x.csv");
        assert_eq!(
            error_chain(&e),
            "loading curves from x.csv: x.csv: cannot read: No such file or directory (os error 2)"
        );
        assert_eq!(
            format!("{e:#}").matches("No such file").count(),
            2,
            "anyhow's own chain repeats the source"
        );
    }

    #[test]
    fn distinct_causes_are_all_kept() {
        let e = anyhow::anyhow!("inner problem")
            .context("middle")
            .context("outer");
        assert_eq!(error_chain(&e), "outer: middle: inner problem");
    }
}
