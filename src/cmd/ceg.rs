//! `algoprog ceg multiplier|function|combine|kaplan|decompose`: compute-equivalent
//! gains from training curves (CSV logs or algoprog run records) and fitted laws.
//! A table by default, `--json` for machine-readable output, `--plot FILE.svg|png`
//! for a figure.

use std::path::{Path, PathBuf};

use algoprog_ceg::decompose::{reference_dependence, ReferenceDependence};
use algoprog_ceg::kaplan::{hoffmann_law, FLOPS_PER_PARAM_TOKEN};
use algoprog_ceg::multiplier::{envelope_multipliers, FrontierCeg};
use algoprog_ceg::{
    ceg_multipliers, combination_test, compare_allocations, decompose, frontier_multipliers,
    Allocation, CegFunction, Decomposition, Direction, KaplanRule, MultiplierOptions, Threshold,
    Timeline, DEFAULT_TARGET_COMPUTE,
};
use algoprog_plot::ceg as plot;
use algoprog_scaling::{
    family_curves, fit_chinchilla, fit_frontier, load_curves, ChinchillaData, ChinchillaLaw,
    ChinchillaOptions, ColumnMap, Curve, FitSpace, FrontierOptions, Irreducible, LoadOptions,
    NonFinitePolicy, PowerLaw, PowerLawOptions, TokensSource,
};
use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::{count_at_most, ColumnArgs, BOOTSTRAP_WHY, MAX_BOOTSTRAP};

/// Most rows a log-spaced table (`ceg function --points`, `ceg kaplan
/// --points`) may have. 10,000 rows over 13 decades of compute are 0.0013
/// decades apart, far finer than any law or curve can be read; every row is
/// computed and formatted before the table prints, so an unbounded count
/// (`--points 100000000`) grows to tens of gigabytes instead of answering.
const MAX_TABLE_POINTS: usize = 10_000;
const TABLE_POINTS_WHY: &str =
    "rows are log-spaced, and 10,000 rows are already far finer than any law can be read";

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Subcommand)]
pub enum Command {
    /// CEG multipliers at a loss threshold: per-run interpolated crossings, geometric mean over seeds, bootstrap CIs.
    Multiplier(MultiplierArgs),
    /// CEG function between two fitted frontiers, CEG(C) = C_ref(L_new(C)) / C, extrapolated to a target compute.
    Function(FunctionArgs),
    /// Combination test: measured CEG of a combined change vs the product of single-change CEGs.
    Combine(CombineArgs),
    /// Kaplan vs Chinchilla: loss along allocation paths and the CEG of the better allocation.
    Kaplan(KaplanArgs),
    /// Decomposition of progress at a target year (timeline file) and reference dependence.
    Decompose(DecomposeArgs),
}

/// Curves to analyse: CSV files (with the column mapping) or run-record directories.
#[derive(clap::Args, Clone, Debug)]
pub struct CurveInput {
    /// CSV file of curves or a directory of algoprog run records (repeatable).
    #[arg(long = "input", short = 'i')]
    pub input: Vec<PathBuf>,
    #[command(flatten)]
    pub columns: ColumnArgs,
    /// Treat NaN/inf losses as divergence (keep the points before it, flag the run) instead of failing.
    #[arg(long)]
    pub nan_as_diverged: bool,
}

/// Output options shared by every subcommand.
#[derive(clap::Args, Clone, Debug)]
pub struct OutputArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write a figure (.svg or .png by extension).
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct MultiplierArgs {
    #[command(flatten)]
    pub curves: CurveInput,
    /// Family every other family is compared against.
    #[arg(long)]
    pub reference: String,
    /// Loss threshold L*, or `auto` (the lowest loss every compared run reaches).
    #[arg(long, default_value = "auto")]
    pub threshold: String,
    /// Ablation reading: the reference is the full model and each family reverts one innovation (CEG = C_variant / C_ref).
    #[arg(long)]
    pub ablation: bool,
    #[command(flatten)]
    pub interval: IntervalArgs,
    /// Also report frontier-based multipliers: compute at L* on each family's fitted frontier and on its empirical envelope.
    #[arg(long)]
    pub frontier: bool,
    #[command(flatten)]
    pub fit: FrontierFitArgs,
    #[command(flatten)]
    pub out: OutputArgs,
}

/// Bootstrap intervals over seeds (shared by `multiplier` and `combine`).
#[derive(clap::Args, Clone, Debug)]
pub struct IntervalArgs {
    /// Bootstrap replicates over seeds (0: no intervals; at most 100,000).
    #[arg(long, default_value_t = 1000, value_parser = count_at_most(MAX_BOOTSTRAP, "bootstrap replicates", BOOTSTRAP_WHY))]
    pub bootstrap: usize,
    /// Confidence level of the intervals.
    #[arg(long, default_value_t = 0.9)]
    pub level: f64,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// How frontiers are fitted (L = E + A·C^-γ on the lower envelope of a family's runs).
#[derive(clap::Args, Clone, Debug)]
pub struct FrontierFitArgs {
    /// Irreducible loss E of the frontier fits: a number (fixed) or `fit`.
    #[arg(long, default_value = "1.8")]
    pub irreducible: String,
    /// Residual space of the frontier fits: `linear` or `log`.
    #[arg(long, default_value = "linear")]
    pub fit_space: String,
    /// Fit frontiers on points with compute ≥ this only.
    #[arg(long)]
    pub min_compute: Option<f64>,
    /// Fit frontiers on points with compute ≤ this only.
    #[arg(long)]
    pub max_compute: Option<f64>,
}

#[derive(clap::Args)]
pub struct FunctionArgs {
    #[command(flatten)]
    pub curves: CurveInput,
    /// Reference (older) family, fitted from --input.
    #[arg(long)]
    pub reference: Option<String>,
    /// New family, fitted from --input.
    #[arg(long)]
    pub new: Option<String>,
    /// Reference frontier given directly as E,A,GAMMA (instead of fitting).
    #[arg(long, value_name = "E,A,GAMMA")]
    pub ref_law: Option<String>,
    /// New frontier given directly as E,A,GAMMA (instead of fitting).
    #[arg(long, value_name = "E,A,GAMMA")]
    pub new_law: Option<String>,
    /// Lowest compute of the table (default: the fitted range's, or 1e15).
    #[arg(long)]
    pub from: Option<f64>,
    /// Highest compute of the table (default: the target compute).
    #[arg(long)]
    pub to: Option<f64>,
    /// Rows of the table (log-spaced; 2 to 10,000).
    #[arg(long, default_value_t = 9, value_parser = count_at_most(MAX_TABLE_POINTS, "rows", TABLE_POINTS_WHY))]
    pub points: usize,
    /// Compute to extrapolate to.
    #[arg(long, default_value_t = DEFAULT_TARGET_COMPUTE)]
    pub target: f64,
    #[command(flatten)]
    pub fit: FrontierFitArgs,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(clap::Args)]
pub struct CombineArgs {
    #[command(flatten)]
    pub curves: CurveInput,
    /// Family the CEGs are measured against.
    #[arg(long)]
    pub reference: String,
    /// Families with a single change each (comma-separated).
    #[arg(long, value_delimiter = ',', required = true)]
    pub singles: Vec<String>,
    /// Family with all the changes together.
    #[arg(long)]
    pub combined: String,
    /// Loss threshold L*, or `auto`.
    #[arg(long, default_value = "auto")]
    pub threshold: String,
    /// Ablation reading (reference = full model, families revert innovations).
    #[arg(long)]
    pub ablation: bool,
    #[command(flatten)]
    pub interval: IntervalArgs,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(clap::Args)]
pub struct KaplanArgs {
    #[command(flatten)]
    pub curves: CurveInput,
    /// L(N,D) = E + A·N^-α + B·D^-β as E,A,B,ALPHA,BETA (default: Hoffmann et al. 2022, 1.69,406.4,410.7,0.34,0.28). Ignored with --input, which fits it.
    #[arg(long, value_name = "E,A,B,ALPHA,BETA")]
    pub law: Option<String>,
    /// Kaplan rule by name: `kaplan2020` (default; N = 1.3e9·(C/8.64e19)^0.73 against the loss-optimal allocation, the later paper),
    /// `appendix` (D = 831.4·N^0.74 against D = 20·N, the earlier paper), `kaplan2020-closed-form` (the authors' fitted curve; Hoffmann's law only).
    #[arg(long, value_name = "NAME")]
    pub rule: Option<String>,
    /// Worse allocation instead of a rule: `kaplan` (D = 831.4·N^0.74), `kaplan2020`, `chinchilla` (D = 20·N), `optimal`, or `power:P[:COEF]` (D = COEF·N^P, COEF default 1). Default with --better: kaplan.
    #[arg(long, conflicts_with = "rule")]
    pub worse: Option<String>,
    /// Better allocation instead of a rule (same forms). Default with --worse: optimal.
    #[arg(long, conflicts_with = "rule")]
    pub better: Option<String>,
    /// k in C = k·N·D.
    #[arg(long, default_value_t = FLOPS_PER_PARAM_TOKEN)]
    pub k: f64,
    /// Lowest compute of the table.
    #[arg(long, default_value_t = 1e12)]
    pub from: f64,
    /// Highest compute of the table.
    #[arg(long, default_value_t = 1e25)]
    pub to: f64,
    /// Rows of the table (log-spaced; 2 to 10,000).
    #[arg(long, default_value_t = 14, value_parser = count_at_most(MAX_TABLE_POINTS, "rows", TABLE_POINTS_WHY))]
    pub points: usize,
    /// With --input: derive D from compute as C/(k·N) instead of the tokens column.
    #[arg(long)]
    pub tokens_from_compute: bool,
    #[command(flatten)]
    pub out: OutputArgs,
}

#[derive(clap::Args)]
pub struct DecomposeArgs {
    /// Timeline file (.json or .toml): trend, innovations, optional start_year, target_year, stepwise, normalisation, interaction, reference_dependence.
    /// `paper` (when no such file exists) is the authors' timeline shipped as crates/algoprog-ceg/timelines/paper.json.
    #[arg(long = "input", short = 'i')]
    pub input: PathBuf,
    /// Override the timeline's start year (growth rate and by-year series start there).
    #[arg(long)]
    pub start_year: Option<f64>,
    /// Override the timeline's target year.
    #[arg(long)]
    pub target_year: Option<f64>,
    #[command(flatten)]
    pub out: OutputArgs,
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Command::Multiplier(a) => run_multiplier(a),
        Command::Function(a) => run_function(a),
        Command::Combine(a) => run_combine(a),
        Command::Kaplan(a) => run_kaplan(a),
        Command::Decompose(a) => run_decompose(a),
    }
}

// ---------------------------------------------------------------- input

fn load(input: &CurveInput) -> Result<Vec<Curve>> {
    if input.input.is_empty() {
        bail!("no curves: pass --input FILE.csv or --input RUNS_DIR (repeatable)");
    }
    let columns = ColumnMap::from(&input.columns);
    let opts = LoadOptions {
        non_finite: if input.nan_as_diverged {
            NonFinitePolicy::MarkDiverged
        } else {
            NonFinitePolicy::Error
        },
        ..Default::default()
    };
    let mut all = Vec::new();
    for p in &input.input {
        let (curves, _) = load_curves(p, &columns, &opts)
            .with_context(|| format!("loading curves from {}", p.display()))?;
        all.extend(curves);
    }
    Ok(all)
}

fn parse_threshold(s: &str) -> Result<Threshold> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(Threshold::Auto);
    }
    let t: f64 = s
        .parse()
        .with_context(|| format!("--threshold `{s}`: expected a loss such as 5.3 or `auto`"))?;
    Ok(Threshold::Fixed(t))
}

fn parse_list<const N: usize>(s: &str, flag: &str, shape: &str) -> Result<[f64; N]> {
    let v: Vec<f64> = s
        .split(',')
        .map(|x| x.trim().parse::<f64>())
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("{flag} `{s}`: expected {shape} (numbers separated by commas)"))?;
    v.try_into().map_err(|v: Vec<f64>| {
        anyhow::anyhow!(
            "{flag} `{s}`: expected {N} numbers ({shape}), got {}",
            v.len()
        )
    })
}

fn parse_power_law(s: &str, flag: &str) -> Result<PowerLaw> {
    let [e, a, g] = parse_list::<3>(s, flag, "E,A,GAMMA")?;
    Ok(PowerLaw::new(e, a, g))
}

fn parse_allocation(s: &str) -> Result<Allocation> {
    let t = s.trim().to_ascii_lowercase();
    Ok(match t.as_str() {
        "kaplan" => Allocation::kaplan(),
        "kaplan2020" | "kaplan-2020" => Allocation::kaplan2020(),
        "chinchilla" | "chinchilla20" => Allocation::chinchilla(),
        "optimal" => Allocation::Optimal,
        _ if t.starts_with("power:") => {
            let parts: Vec<&str> = t["power:".len()..].split(':').collect();
            let p: f64 = parts[0]
                .parse()
                .with_context(|| format!("allocation `{s}`: P must be a number"))?;
            let coef: f64 = match parts.get(1) {
                Some(c) => c
                    .parse()
                    .with_context(|| format!("allocation `{s}`: COEF must be a number"))?,
                None => 1.0,
            };
            Allocation::PowerRule { coef, exponent: p }
        }
        _ => bail!(
            "allocation `{s}`: expected kaplan, kaplan2020, chinchilla, optimal or power:P[:COEF]"
        ),
    })
}

fn law_options(f: &FrontierFitArgs) -> Result<(FrontierOptions, PowerLawOptions)> {
    let irreducible = if f.irreducible.eq_ignore_ascii_case("fit") {
        Irreducible::Fitted
    } else {
        Irreducible::Fixed(f.irreducible.parse().with_context(|| {
            format!(
                "--irreducible `{}`: expected a loss such as 1.8 or `fit`",
                f.irreducible
            )
        })?)
    };
    let space = match f.fit_space.to_ascii_lowercase().as_str() {
        "linear" => FitSpace::Linear,
        "log" => FitSpace::Log,
        other => bail!("--fit-space `{other}`: expected `linear` or `log`"),
    };
    let fo = FrontierOptions {
        min_compute: f.min_compute,
        max_compute: f.max_compute,
        ..Default::default()
    };
    Ok((fo, PowerLawOptions { irreducible, space }))
}

/// A family's fitted frontier law and the compute range it was fitted on.
#[derive(Clone, Debug, Serialize)]
struct FittedFamily {
    family: String,
    law: PowerLaw,
    range: (f64, f64),
    points: usize,
    r2: f64,
}

fn fit_family(curves: &[Curve], family: &str, f: &FrontierFitArgs) -> Result<FittedFamily> {
    let mine = family_curves(curves, family);
    if mine.is_empty() {
        let mut fams: Vec<&str> = curves.iter().map(|c| c.meta.family.as_str()).collect();
        fams.sort();
        fams.dedup();
        bail!(
            "family `{family}` has no runs; the families present are: {}",
            fams.join(", ")
        );
    }
    let (fo, lo) = law_options(f)?;
    let fit = fit_frontier(&mine, &fo, &lo)
        .with_context(|| format!("fitting the frontier of `{family}`"))?;
    let lo_c = fit.points.first().map(|p| p.flops).unwrap_or(f64::NAN);
    let hi_c = fit.points.last().map(|p| p.flops).unwrap_or(f64::NAN);
    Ok(FittedFamily {
        family: family.into(),
        law: fit.fit.law,
        range: (lo_c, hi_c),
        points: fit.points.len(),
        r2: fit.fit.r2,
    })
}

fn print_json<T: Serialize>(v: &T) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// A plain text table with right-aligned columns (first column left-aligned).
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let n = header.len();
    let mut w: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(n) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = w[i] - c.chars().count();
                if i == 0 {
                    format!("{c}{}", " ".repeat(pad))
                } else {
                    format!("{}{c}", " ".repeat(pad))
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    out.push_str(
        &w.iter()
            .map(|&k| "-".repeat(k))
            .collect::<Vec<_>>()
            .join("  "),
    );
    for r in rows {
        out.push('\n');
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

fn opt(x: Option<f64>, f: impl Fn(f64) -> String) -> String {
    x.map(f).unwrap_or_else(|| "-".into())
}

fn sci(x: f64) -> String {
    format!("{x:.3e}")
}

/// Three decimals, or scientific notation for large values.
fn fx(x: f64) -> String {
    if x.abs() >= 1e4 {
        format!("{x:.3e}")
    } else {
        format!("{x:.3}")
    }
}

fn write_plot(
    path: &Path,
    draw: impl FnOnce(&Path) -> std::result::Result<(), algoprog_plot::ceg::PlotError>,
) -> Result<()> {
    draw(path).with_context(|| format!("writing the figure {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

// ---------------------------------------------------------------- multiplier

#[derive(Serialize)]
struct MultiplierOutput {
    multipliers: algoprog_ceg::MultiplierReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    fitted_frontiers: Option<Vec<FittedFamily>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frontier: Option<Vec<FrontierCeg>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    envelope: Option<Vec<FrontierCeg>>,
}

fn run_multiplier(a: MultiplierArgs) -> Result<()> {
    let curves = load(&a.curves)?;
    let direction = if a.ablation {
        Direction::Ablation
    } else {
        Direction::VariantIsNew
    };
    let opts = MultiplierOptions {
        threshold: parse_threshold(&a.threshold)?,
        direction,
        bootstrap: a.interval.bootstrap,
        level: a.interval.level,
        rng_seed: a.interval.seed,
        include_diverged: false,
    };
    let rep = ceg_multipliers(&curves, &a.reference, &opts)?;
    let mut out = MultiplierOutput {
        multipliers: rep,
        fitted_frontiers: None,
        frontier: None,
        envelope: None,
    };
    if a.frontier {
        let fams: Vec<String> = out
            .multipliers
            .variants
            .iter()
            .map(|v| v.family.clone())
            .collect();
        let fitted: Vec<FittedFamily> = fams
            .iter()
            .map(|f| fit_family(&curves, f, &a.fit))
            .collect::<Result<_>>()?;
        let laws: Vec<(String, PowerLaw)> =
            fitted.iter().map(|f| (f.family.clone(), f.law)).collect();
        out.frontier = Some(frontier_multipliers(
            &laws,
            &a.reference,
            out.multipliers.threshold,
            direction,
        )?);
        out.envelope = Some(envelope_multipliers(
            &curves,
            &a.reference,
            out.multipliers.threshold,
            direction,
        )?);
        out.fitted_frontiers = Some(fitted);
    }
    let rep = &out.multipliers;
    if a.out.json {
        print_json(&out)?;
    } else {
        println!(
            "CEG multipliers at L* = {:.4}{} against `{}` ({}); geometric mean over seeds, {}% bootstrap CI over seeds ({} replicates)",
            rep.threshold,
            if rep.threshold_auto { " (auto: lowest loss every run reaches)" } else { "" },
            rep.reference,
            match direction {
                Direction::VariantIsNew => "CEG = C_ref(L*) / C_variant(L*)",
                Direction::Ablation => "ablation: CEG = C_variant(L*) / C_ref(L*)",
            },
            (rep.level * 100.0).round(),
            rep.bootstrap
        );
        let rows: Vec<Vec<String>> = rep
            .variants
            .iter()
            .map(|v| {
                vec![
                    v.family.clone(),
                    format!("{}/{}", v.n_reached, v.n_runs),
                    opt(v.compute, sci),
                    opt(v.ceg, fx),
                    opt(v.ci.map(|c| c.lo), fx),
                    opt(v.ci.map(|c| c.hi), fx),
                    v.note.clone().unwrap_or_default(),
                ]
            })
            .collect();
        println!(
            "{}",
            table(
                &[
                    "family",
                    "reached",
                    "C(L*) FLOPs",
                    "CEG",
                    "CI lo",
                    "CI hi",
                    "note"
                ],
                &rows
            )
        );
        println!("\nper run:");
        let rows: Vec<Vec<String>> = rep
            .runs
            .iter()
            .map(|r| {
                vec![
                    r.run_id.clone(),
                    r.family.clone(),
                    opt(r.seed.map(|s| s as f64), |s| format!("{s}")),
                    r.crossing.describe(),
                ]
            })
            .collect();
        println!(
            "{}",
            table(&["run", "family", "seed", "C(L*) FLOPs"], &rows)
        );
        if !rep.excluded_diverged.is_empty() {
            println!("excluded (diverged): {}", rep.excluded_diverged.join(", "));
        }
        if let (Some(fr), Some(env), Some(fit)) =
            (&out.frontier, &out.envelope, &out.fitted_frontiers)
        {
            println!("\nfrontier-based (compute at L* on each family's frontier):");
            let rows: Vec<Vec<String>> = fr
                .iter()
                .zip(env)
                .zip(fit)
                .map(|((f, e), ff)| {
                    vec![
                        f.family.clone(),
                        format!("{:.3} + {:.3e}·C^-{:.4}", ff.law.e, ff.law.a, ff.law.gamma),
                        format!("[{:.2e}, {:.2e}]", ff.range.0, ff.range.1),
                        opt(f.compute, sci),
                        opt(f.ceg, fx),
                        opt(e.compute, sci),
                        opt(e.ceg, fx),
                    ]
                })
                .collect();
            println!(
                "{}",
                table(
                    &[
                        "family",
                        "fitted frontier L(C)",
                        "fit range",
                        "C(L*) fit",
                        "CEG fit",
                        "C(L*) envelope",
                        "CEG envelope"
                    ],
                    &rows
                )
            );
        }
    }
    if let Some(p) = &a.out.plot {
        let bars: Vec<plot::Bar> = rep
            .variants
            .iter()
            .filter(|v| v.family != rep.reference)
            .filter_map(|v| {
                v.ceg.map(|c| plot::Bar {
                    label: v.family.clone(),
                    value: c,
                    lo: v.ci.map(|i| i.lo),
                    hi: v.ci.map(|i| i.hi),
                })
            })
            .collect();
        let title = format!("CEG at L* = {:.3} vs {}", rep.threshold, rep.reference);
        write_plot(p, |path| plot::ceg_bars(path, &title, &bars))?;
    }
    Ok(())
}

// ---------------------------------------------------------------- function

#[derive(Serialize)]
struct FunctionOutput {
    reference: String,
    new: String,
    reference_law: PowerLaw,
    new_law: PowerLaw,
    fitted: Vec<FittedFamily>,
    rows: Vec<FunctionRow>,
    extrapolation: algoprog_ceg::Extrapolation,
}

#[derive(Serialize)]
struct FunctionRow {
    compute: f64,
    loss_reference: f64,
    loss_new: f64,
    ceg: Option<f64>,
    local_exponent: Option<f64>,
}

fn run_function(a: FunctionArgs) -> Result<()> {
    let mut fitted = Vec::new();
    let (rname, rlaw) = match (&a.ref_law, &a.reference) {
        (Some(s), name) => (name.clone().unwrap_or_else(|| "reference".into()), parse_power_law(s, "--ref-law")?),
        (None, Some(name)) => {
            let curves = load(&a.curves)?;
            let f = fit_family(&curves, name, &a.fit)?;
            let l = f.law;
            fitted.push(f);
            (name.clone(), l)
        }
        (None, None) => bail!("give the reference frontier: --reference FAMILY (fitted from --input) or --ref-law E,A,GAMMA"),
    };
    let (nname, nlaw) = match (&a.new_law, &a.new) {
        (Some(s), name) => (
            name.clone().unwrap_or_else(|| "new".into()),
            parse_power_law(s, "--new-law")?,
        ),
        (None, Some(name)) => {
            let curves = load(&a.curves)?;
            let f = fit_family(&curves, name, &a.fit)?;
            let l = f.law;
            fitted.push(f);
            (name.clone(), l)
        }
        (None, None) => bail!(
            "give the new frontier: --new FAMILY (fitted from --input) or --new-law E,A,GAMMA"
        ),
    };
    let f = CegFunction::new(rlaw, nlaw)?;
    let fitted_range = if fitted.is_empty() {
        None
    } else {
        Some((
            fitted
                .iter()
                .map(|f| f.range.0)
                .fold(f64::INFINITY, f64::min),
            fitted
                .iter()
                .map(|f| f.range.1)
                .fold(f64::NEG_INFINITY, f64::max),
        ))
    };
    let lo = a.from.or(fitted_range.map(|r| r.0)).unwrap_or(1e15);
    let hi = a.to.unwrap_or(a.target.max(lo * 10.0));
    let rows: Vec<FunctionRow> = algoprog_ceg::function::log_grid(lo, hi, a.points)?
        .into_iter()
        .map(|c| FunctionRow {
            compute: c,
            loss_reference: rlaw.loss(c),
            loss_new: nlaw.loss(c),
            ceg: f.eval(c).ok(),
            local_exponent: f.local_exponent(c).ok(),
        })
        .collect();
    let x = f.extrapolate(a.target, fitted_range)?;
    let out = FunctionOutput {
        reference: rname,
        new: nname,
        reference_law: rlaw,
        new_law: nlaw,
        fitted,
        rows,
        extrapolation: x,
    };
    if a.out.json {
        print_json(&out)?;
    } else {
        println!(
            "CEG function of `{}` over `{}`: CEG(C) = C_ref(L_new(C)) / C\n  L_ref(C) = {:.4} + {:.4e}·C^-{:.4}\n  L_new(C) = {:.4} + {:.4e}·C^-{:.4}",
            out.new, out.reference, rlaw.e, rlaw.a, rlaw.gamma, nlaw.e, nlaw.a, nlaw.gamma
        );
        for ff in &out.fitted {
            println!(
                "  `{}` fitted on {} frontier points in [{:.2e}, {:.2e}] FLOPs, R² = {:.4}",
                ff.family, ff.points, ff.range.0, ff.range.1, ff.r2
            );
        }
        let rows: Vec<Vec<String>> = out
            .rows
            .iter()
            .map(|r| {
                vec![
                    sci(r.compute),
                    fx(r.loss_reference),
                    fx(r.loss_new),
                    opt(r.ceg, fx),
                    opt(r.local_exponent, |e| format!("{e:+.4}")),
                    if r.ceg.is_none() {
                        "reference never reaches L_new".into()
                    } else {
                        String::new()
                    },
                ]
            })
            .collect();
        println!(
            "{}",
            table(
                &["C FLOPs", "L_ref", "L_new", "CEG", "dlnCEG/dlnC", ""],
                &rows
            )
        );
        let x = &out.extrapolation;
        println!(
            "\nat the target {:.1e} FLOPs: CEG = {} (local exponent {:+.4}; {})",
            x.target,
            fx(x.ceg),
            x.local_exponent,
            if x.scale_invariant {
                "scale-invariant"
            } else {
                "scale-dependent"
            }
        );
        println!("assumptions:");
        for s in &x.assumptions {
            println!("  - {s}");
        }
    }
    if let Some(p) = &a.out.plot {
        let grid = algoprog_ceg::function::log_grid(lo, hi, 200)?;
        let pts: Vec<(f64, f64)> = grid
            .into_iter()
            .filter_map(|c| f.eval(c).ok().map(|v| (c, v)))
            .collect();
        let series = vec![plot::Series {
            label: format!("{} over {}", out.new, out.reference),
            points: pts,
        }];
        write_plot(p, |path| {
            plot::ceg_curves(path, "CEG(C) = C_ref(L_new(C)) / C", &series, fitted_range)
        })?;
    }
    Ok(())
}

// ---------------------------------------------------------------- combine

fn run_combine(a: CombineArgs) -> Result<()> {
    let curves = load(&a.curves)?;
    let opts = MultiplierOptions {
        threshold: parse_threshold(&a.threshold)?,
        direction: if a.ablation {
            Direction::Ablation
        } else {
            Direction::VariantIsNew
        },
        bootstrap: 0,
        level: a.interval.level,
        rng_seed: a.interval.seed,
        include_diverged: false,
    };
    let compared: Vec<Curve> = curves
        .into_iter()
        .filter(|c| {
            c.meta.family == a.reference
                || c.meta.family == a.combined
                || a.singles.contains(&c.meta.family)
        })
        .collect();
    let rep = ceg_multipliers(&compared, &a.reference, &opts)?;
    let singles: Vec<&str> = a.singles.iter().map(String::as_str).collect();
    let c = combination_test(
        &rep,
        &singles,
        &a.combined,
        a.interval.bootstrap,
        a.interval.seed,
    )?;
    if a.out.json {
        print_json(&c)?;
    } else {
        println!(
            "combination test at L* = {:.4}{} against `{}`: interaction I = CEG_combined / Π CEG_single; {}% bootstrap CI over seeds ({} replicates)",
            c.threshold,
            if rep.threshold_auto { " (auto)" } else { "" },
            c.reference,
            (c.level * 100.0).round(),
            c.bootstrap
        );
        let row = |n: &algoprog_ceg::combine::NamedCeg, kind: &str| {
            vec![
                kind.to_string(),
                n.name.clone(),
                fx(n.ceg),
                opt(n.ci.map(|i| i.lo), fx),
                opt(n.ci.map(|i| i.hi), fx),
            ]
        };
        let mut rows: Vec<Vec<String>> = c.singles.iter().map(|s| row(s, "single")).collect();
        rows.push(row(&c.predicted, "predicted (multiplicative)"));
        rows.push(row(&c.measured, "measured combined"));
        rows.push(row(&c.interaction, "interaction"));
        println!("{}", table(&["", "family", "CEG", "CI lo", "CI hi"], &rows));
        let i = c.interaction.ceg;
        println!(
            "gains are {} (measured {:.3}x vs {:.3}x predicted)",
            if i < 1.0 {
                "sub-multiplicative"
            } else if i > 1.0 {
                "super-multiplicative"
            } else {
                "multiplicative"
            },
            c.measured.ceg,
            c.predicted.ceg
        );
    }
    if let Some(p) = &a.out.plot {
        let mk = |n: &algoprog_ceg::combine::NamedCeg| plot::Bar {
            label: n.name.clone(),
            value: n.ceg,
            lo: n.ci.map(|i| i.lo),
            hi: n.ci.map(|i| i.hi),
        };
        let mut bars: Vec<plot::Bar> = c.singles.iter().map(mk).collect();
        bars.push(mk(&c.predicted));
        bars.push(mk(&c.measured));
        write_plot(p, |path| {
            plot::ceg_bars(path, "single, predicted and measured combined CEGs", &bars)
        })?;
    }
    Ok(())
}

// ---------------------------------------------------------------- kaplan

#[derive(Serialize)]
struct KaplanOutput {
    law_source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<KaplanRule>,
    report: algoprog_ceg::KaplanReport,
}

#[derive(Serialize)]
struct ClosedFormOutput {
    rule: KaplanRule,
    description: &'static str,
    /// (compute, closed-form CEG, exact Kaplan 2020 CEG under Hoffmann's law).
    points: Vec<(f64, f64, f64)>,
}

/// (worse, better) allocations.
type AllocationPair = (Allocation, Allocation);

/// The rule (or the custom pair of allocations) of `ceg kaplan`.
fn kaplan_choice(a: &KaplanArgs) -> Result<(Option<KaplanRule>, Option<AllocationPair>)> {
    if a.worse.is_some() || a.better.is_some() {
        let worse = parse_allocation(a.worse.as_deref().unwrap_or("kaplan"))?;
        let better = parse_allocation(a.better.as_deref().unwrap_or("optimal"))?;
        return Ok((None, Some((worse, better))));
    }
    let rule = match &a.rule {
        Some(r) => KaplanRule::from_name(r).map_err(|e| anyhow::anyhow!("--rule: {e}"))?,
        None => KaplanRule::default(),
    };
    Ok((Some(rule), rule.allocations()))
}

fn run_kaplan_closed_form(a: &KaplanArgs, rule: KaplanRule) -> Result<()> {
    if !a.curves.input.is_empty() || a.law.is_some() || a.k != FLOPS_PER_PARAM_TOKEN {
        bail!(
            "--rule {}: the closed form is a fit to Hoffmann et al.'s law with C = 6·N·D; drop --input/--law/--k or use --rule kaplan2020",
            rule.name()
        );
    }
    if a.out.plot.is_some() {
        bail!("--plot needs an allocation rule (appendix or kaplan2020): the closed form has no loss paths to draw");
    }
    let grid = algoprog_ceg::function::log_grid(a.from, a.to, a.points)?;
    let points = grid
        .into_iter()
        .map(|c| Ok((c, rule.ceg(c)?, KaplanRule::Kaplan2020.ceg(c)?)))
        .collect::<Result<Vec<_>>>()?;
    let out = ClosedFormOutput {
        rule,
        description: rule.description(),
        points,
    };
    if a.out.json {
        print_json(&out)?;
    } else {
        println!("rule {}: {}", rule.name(), rule.description());
        let rows: Vec<Vec<String>> = out
            .points
            .iter()
            .map(|(c, cf, ex)| {
                vec![
                    sci(*c),
                    format!("{cf:.4}"),
                    format!("{ex:.4}"),
                    format!("{:+.3}%", 100.0 * (cf / ex - 1.0)),
                ]
            })
            .collect();
        println!(
            "{}",
            table(
                &[
                    "C FLOPs",
                    "CEG closed form",
                    "CEG kaplan2020 (exact)",
                    "difference"
                ],
                &rows
            )
        );
    }
    Ok(())
}

fn run_kaplan(a: KaplanArgs) -> Result<()> {
    let (rule, allocs) = kaplan_choice(&a)?;
    let Some((worse, better)) = allocs else {
        return run_kaplan_closed_form(&a, rule.expect("a rule without allocations"));
    };
    let (law, source) = if !a.curves.input.is_empty() {
        let curves = load(&a.curves)?;
        let tokens = if a.tokens_from_compute {
            TokensSource::FromCompute { k: a.k }
        } else {
            TokensSource::Column
        };
        let data = ChinchillaData::from_curves(&curves, tokens)?;
        eprintln!("fitting L(N, D) to {} points of {} runs (Huber, L-BFGS from the published start grid)...", data.len(), data.n_runs());
        let fit = fit_chinchilla(&data, &ChinchillaOptions::default())?;
        (
            fit.law,
            format!(
                "fitted to {} points of {} runs (R² of log L = {:.4})",
                data.len(),
                data.n_runs(),
                fit.r2_log
            ),
        )
    } else if let Some(s) = &a.law {
        let [e, aa, b, alpha, beta] = parse_list::<5>(s, "--law", "E,A,B,ALPHA,BETA")?;
        (
            ChinchillaLaw {
                e,
                a: aa,
                b,
                alpha,
                beta,
            },
            "given with --law".into(),
        )
    } else {
        (
            hoffmann_law(),
            "Hoffmann et al. (2022) approach 3 fit".into(),
        )
    };
    let report = compare_allocations(&law, worse, better, a.from, a.to, a.points, a.k)?;
    let out = KaplanOutput {
        law_source: source,
        rule,
        report,
    };
    let r = &out.report;
    if a.out.json {
        print_json(&out)?;
    } else {
        if let Some(rule) = rule {
            println!("rule {}: {}", rule.name(), rule.description());
        }
        println!(
            "L(N,D) = {:.4} + {:.4}·N^-{:.4} + {:.4}·D^-{:.4} ({}); C = {}·N·D",
            law.e, law.a, law.alpha, law.b, law.beta, out.law_source, r.k
        );
        println!(
            "worse: {} (γ = {:.4}); better: {} (γ = {:.4}); p* = α/β = {:.4}; γ_worse/γ_better = {:.4}; CEG ∝ C^{:.4} far above the crossing",
            worse.label(),
            r.gamma_worse,
            better.label(),
            r.gamma_better,
            r.p_star,
            r.gamma_worse / r.gamma_better,
            r.asymptotic_ceg_exponent
        );
        let rows: Vec<Vec<String>> = r
            .points
            .iter()
            .map(|p| {
                vec![
                    sci(p.compute),
                    sci(p.n_worse),
                    fx(p.d_worse / p.n_worse),
                    format!("{:.4}", p.loss_worse),
                    sci(p.n_better),
                    fx(p.d_better / p.n_better),
                    format!("{:.4}", p.loss_better),
                    format!("{:.4}", p.ceg),
                ]
            })
            .collect();
        println!(
            "{}",
            table(
                &[
                    "C FLOPs",
                    "N worse",
                    "D/N worse",
                    "L worse",
                    "N better",
                    "D/N better",
                    "L better",
                    "CEG"
                ],
                &rows
            )
        );
        println!(
            "smallest CEG on the grid: {:.4} at {:.3e} FLOPs",
            r.min_ceg.1, r.min_ceg.0
        );
        if let Some(c) = r.crossing_compute {
            println!("the worse rule picks the optimal (N, D) at {c:.3e} FLOPs (CEG = 1): the gap converges towards it and diverges beyond");
        }
        println!("assumptions:");
        for s in &r.assumptions {
            println!("  - {s}");
        }
    }
    if let Some(p) = &a.out.plot {
        let r = &compare_allocations(&law, worse, better, a.from, a.to, 200, a.k)?;
        let loss = vec![
            plot::Series {
                label: worse.label(),
                points: r.points.iter().map(|p| (p.compute, p.loss_worse)).collect(),
            },
            plot::Series {
                label: better.label(),
                points: r
                    .points
                    .iter()
                    .map(|p| (p.compute, p.loss_better))
                    .collect(),
            },
        ];
        let ceg: Vec<(f64, f64)> = r.points.iter().map(|p| (p.compute, p.ceg)).collect();
        write_plot(p, |path| plot::allocation_chart(path, &loss, &ceg))?;
    }
    Ok(())
}

// ---------------------------------------------------------------- decompose

#[derive(Serialize)]
struct DecomposeOutput {
    decomposition: Decomposition,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference_dependence: Option<ReferenceDependence>,
}

fn read_timeline(path: &Path) -> Result<Timeline> {
    if path.as_os_str() == "paper" && !path.exists() {
        return Ok(Timeline::paper());
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the timeline {}", path.display()))?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "toml" => toml::from_str(&text)
            .with_context(|| format!("parsing the timeline {} as TOML", path.display())),
        "json" => serde_json::from_str(&text)
            .with_context(|| format!("parsing the timeline {} as JSON", path.display())),
        _ => bail!(
            "timeline {}: expected a .json or .toml file",
            path.display()
        ),
    }
}

fn run_decompose(a: DecomposeArgs) -> Result<()> {
    let mut t = read_timeline(&a.input)?;
    if let Some(y) = a.start_year {
        t.start_year = Some(y);
    }
    if let Some(y) = a.target_year {
        t.target_year = Some(y);
    }
    let d = decompose(&t)?;
    let rd = t
        .reference_dependence
        .as_ref()
        .map(|s| reference_dependence(s, &t.trend))
        .transpose()?;
    let out = DecomposeOutput {
        decomposition: d,
        reference_dependence: rd,
    };
    let d = &out.decomposition;
    if a.out.json {
        print_json(&out)?;
    } else {
        println!(
            "decomposition {} -> {} (C = {:.3e} -> {:.3e} FLOPs): total gain {:.2}x (ln = {:.3}){}",
            d.start_year,
            d.target_year,
            d.start_compute,
            d.compute,
            d.total_gain,
            d.log_total,
            d.annual_growth
                .map(|g| format!(", {g:.4}x per year"))
                .unwrap_or_default()
        );
        let rows: Vec<Vec<String>> = d
            .items
            .iter()
            .map(|s| {
                vec![
                    s.label.clone(),
                    if s.year.is_finite() {
                        format!("{}", s.year)
                    } else {
                        "-".into()
                    },
                    fx(s.ceg),
                    if s.normalised {
                        fx(s.raw_ceg)
                    } else {
                        "-".into()
                    },
                    format!("{:.2}%", 100.0 * s.share),
                    if s.scale_invariant {
                        "invariant".into()
                    } else {
                        "dependent".into()
                    },
                    s.source.name().into(),
                ]
            })
            .collect();
        println!(
            "{}",
            table(
                &[
                    "innovation",
                    "year",
                    "CEG at target",
                    "before normalisation",
                    "share",
                    "scale",
                    "source"
                ],
                &rows
            )
        );
        println!(
            "scale-invariant {:.2}x ({:.2}%), scale-dependent {:.2}x ({:.2}%)",
            d.scale_invariant_gain,
            100.0 * d.scale_invariant_share,
            d.scale_dependent_gain,
            100.0 * d.scale_dependent_share
        );
        println!("assumptions:");
        for s in &d.assumptions {
            println!("  - {s}");
        }
        if let Some(r) = &out.reference_dependence {
            println!(
                "\nprogress measured against `{}`: {:+.1}% per year (ln CEG slope {:.4}/yr)",
                r.reference,
                100.0 * r.annual_growth,
                r.log_slope
            );
            let rows: Vec<Vec<String>> = r
                .points
                .iter()
                .map(|p| {
                    vec![
                        format!("{}", p.year),
                        sci(p.compute),
                        p.sota.clone(),
                        fx(p.ceg),
                    ]
                })
                .collect();
            println!(
                "{}",
                table(
                    &["year", "C FLOPs", "state of the art", "CEG vs reference"],
                    &rows
                )
            );
        }
    }
    if let Some(p) = &a.out.plot {
        let shares: Vec<plot::Bar> = d
            .items
            .iter()
            .map(|s| plot::Bar {
                label: s.label.clone(),
                value: s.ceg,
                lo: None,
                hi: None,
            })
            .collect();
        let by_year: Vec<(f64, f64)> = d.by_year.iter().map(|y| (y.year, y.gain)).collect();
        let title = format!(
            "gain at {:.0}: {:.2e}x ({:.0}% scale-dependent)",
            d.target_year,
            d.total_gain,
            100.0 * d.scale_dependent_share
        );
        write_plot(p, |path| {
            plot::decomposition_chart(path, &title, &shares, &by_year)
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_parse() {
        assert_eq!(parse_allocation("kaplan").unwrap(), Allocation::kaplan());
        assert_eq!(parse_allocation("Optimal").unwrap(), Allocation::Optimal);
        assert_eq!(
            parse_allocation("power:0.5:3").unwrap(),
            Allocation::PowerRule {
                coef: 3.0,
                exponent: 0.5
            }
        );
        assert_eq!(
            parse_allocation("power:0.8").unwrap(),
            Allocation::PowerRule {
                coef: 1.0,
                exponent: 0.8
            }
        );
        assert!(parse_allocation("kaplan2").is_err());
        assert_eq!(
            parse_allocation("kaplan2020").unwrap(),
            Allocation::kaplan2020()
        );
    }

    #[test]
    fn thresholds_and_laws_parse() {
        assert_eq!(parse_threshold("auto").unwrap(), Threshold::Auto);
        assert_eq!(parse_threshold("5.3").unwrap(), Threshold::Fixed(5.3));
        assert!(parse_threshold("five").is_err());
        assert_eq!(
            parse_power_law("1.8, 100, 0.1", "--ref-law").unwrap(),
            PowerLaw::new(1.8, 100.0, 0.1)
        );
        let e = parse_power_law("1.8,100", "--ref-law")
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected 3 numbers"), "{e}");
    }

    #[derive(clap::Parser)]
    struct KaplanCli {
        #[command(flatten)]
        a: KaplanArgs,
    }

    fn kaplan_args(args: &[&str]) -> std::result::Result<KaplanArgs, clap::Error> {
        use clap::Parser;
        KaplanCli::try_parse_from(std::iter::once("kaplan").chain(args.iter().copied()))
            .map(|k| k.a)
    }

    #[test]
    fn kaplan_rules_by_name_and_custom_allocations() {
        let (r, al) = kaplan_choice(&kaplan_args(&[]).unwrap()).unwrap();
        assert_eq!(r, Some(KaplanRule::Kaplan2020));
        assert_eq!(al, Some((Allocation::kaplan2020(), Allocation::Optimal)));
        let (r, al) = kaplan_choice(&kaplan_args(&["--rule", "appendix"]).unwrap()).unwrap();
        assert_eq!(
            (r, al),
            (
                Some(KaplanRule::Appendix),
                Some((Allocation::kaplan(), Allocation::chinchilla()))
            )
        );
        let (r, al) =
            kaplan_choice(&kaplan_args(&["--rule", "kaplan2020-closed-form"]).unwrap()).unwrap();
        assert_eq!((r, al), (Some(KaplanRule::Kaplan2020ClosedForm), None));
        let (r, al) = kaplan_choice(&kaplan_args(&["--better", "chinchilla"]).unwrap()).unwrap();
        assert_eq!(
            (r, al),
            (None, Some((Allocation::kaplan(), Allocation::chinchilla())))
        );
        let e = kaplan_choice(&kaplan_args(&["--rule", "kaplan2019"]).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--rule") && e.contains("kaplan2020-closed-form"),
            "{e}"
        );
        assert!(
            kaplan_args(&["--rule", "appendix", "--worse", "kaplan"]).is_err(),
            "--rule conflicts with --worse"
        );
        let e = run_kaplan_closed_form(
            &kaplan_args(&["--rule", "closed-form", "--k", "5"]).unwrap(),
            KaplanRule::Kaplan2020ClosedForm,
        );
        assert!(e.unwrap_err().to_string().contains("Hoffmann"));
    }

    #[test]
    fn decompose_reads_the_shipped_paper_timeline_by_name() {
        let t = read_timeline(Path::new("paper")).unwrap();
        assert_eq!(t, Timeline::paper());
        let d = decompose(&t).unwrap();
        assert!((d.total_gain / 6926.35 - 1.0).abs() < 5e-5);
        let e = read_timeline(Path::new("no-such-timeline.json")).unwrap_err();
        assert!(format!("{e:#}").contains("no-such-timeline.json"));
    }

    #[test]
    fn table_aligns_columns() {
        let t = table(&["a", "bb"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "a    bb\n---  --\nxyz   1");
    }
}
