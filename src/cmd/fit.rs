//! `algoprog fit`.

use algoprog_scaling::ColumnMap;

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

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`algoprog fit` is being built")
}
