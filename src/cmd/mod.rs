pub mod ceg;
pub mod data;
pub mod exec;
pub mod fit;
pub mod progress;
pub mod report;
pub mod reproduce;
pub mod run;
pub mod sample;
pub mod sweep;
pub mod train;

// Shared by several commands: flags and parsers live here, so no command
// module imports another.

use algoprog_scaling::ColumnMap;

/// Most bootstrap replicates over seeds: the same bound as the scaling fits'
/// ([`algoprog_scaling::bootstrap::MAX_BOOTSTRAP_REPS`]); beyond it the Monte
/// Carlo error of the interval ends is negligible next to the seed-to-seed
/// spread, and every replicate is held in memory.
pub const MAX_BOOTSTRAP: usize = algoprog_scaling::bootstrap::MAX_BOOTSTRAP_REPS;
pub const BOOTSTRAP_WHY: &str =
    "beyond it the Monte Carlo error of the interval ends is negligible (1000 is the default)";

/// CSV column-mapping flags, shared by `algoprog fit` and `algoprog ceg`
/// (`#[command(flatten)]`). Defaults match algoprog's own curve CSV
/// (`step,tokens,flops,train_loss,val_loss,lr`). Optional columns are off
/// unless named; `--step-col none` / `--tokens-col none` turn those off.
#[derive(clap::Args, Clone, Debug)]
pub struct ColumnArgs {
    /// Column with cumulative training compute (FLOPs).
    #[arg(long, default_value = "flops")]
    pub compute_col: String,
    /// Column with the loss to fit (validation loss).
    #[arg(long, default_value = "val_loss")]
    pub loss_col: String,
    /// Column with the parameter count N (needed by `chinchilla` and `isoflop`).
    #[arg(long)]
    pub params_col: Option<String>,
    /// Column with cumulative tokens D (`none`: no such column).
    #[arg(long, default_value = "tokens")]
    pub tokens_col: String,
    /// Column with the family / group (algorithm variant).
    #[arg(long)]
    pub family_col: Option<String>,
    /// Column with the run id; rows with the same id form one curve
    /// (without it, runs are told apart by family, params and seed).
    #[arg(long)]
    pub run_col: Option<String>,
    /// Column with the seed.
    #[arg(long)]
    pub seed_col: Option<String>,
    /// Column with the optimiser step (`none`: order each run's rows by compute).
    #[arg(long, default_value = "step")]
    pub step_col: String,
}

fn none_if_off(s: &str) -> Option<String> {
    let t = s.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("none") {
        None
    } else {
        Some(t.to_string())
    }
}

impl From<&ColumnArgs> for ColumnMap {
    fn from(a: &ColumnArgs) -> Self {
        ColumnMap {
            compute: a.compute_col.clone(),
            loss: a.loss_col.clone(),
            params: a.params_col.as_deref().and_then(none_if_off),
            tokens: none_if_off(&a.tokens_col),
            family: a.family_col.as_deref().and_then(none_if_off),
            run: a.run_col.as_deref().and_then(none_if_off),
            seed: a.seed_col.as_deref().and_then(none_if_off),
            step: none_if_off(&a.step_col),
        }
    }
}

impl From<ColumnArgs> for ColumnMap {
    fn from(a: ColumnArgs) -> Self {
        ColumnMap::from(&a)
    }
}

/// A clap value parser for a count flag with an upper limit, checked before
/// anything is allocated for it. clap prefixes the error with the flag's
/// name (`invalid value '100001' for '--points <POINTS>': …`); the message
/// states the maximum and `why`, so the user knows the fix.
pub fn count_at_most(
    max: usize,
    what: &'static str,
    why: &'static str,
) -> impl Fn(&str) -> Result<usize, String> + Clone + Send + Sync + 'static {
    move |s: &str| {
        let n: usize = s
            .trim()
            .parse()
            .map_err(|_| format!("expected a whole number of {what} (0 to {max})"))?;
        if n > max {
            return Err(format!("{n} {what} is more than the maximum {max}: {why}"));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_above_the_limit_are_refused_with_the_maximum() {
        let p = count_at_most(10, "rows", "a table no one reads");
        assert_eq!(p("10"), Ok(10));
        assert_eq!(p(" 0 "), Ok(0));
        let e = p("11").unwrap_err();
        assert!(
            e.contains("maximum 10") && e.contains("a table no one reads"),
            "{e}"
        );
        assert!(p("1e9").unwrap_err().contains("whole number of rows"));
        assert!(p("-1").is_err());
    }
}
