//! `algoprog fit frontier|chinchilla|isoflop`: fit frontiers and scaling laws
//! to training curves (a CSV from any framework, with the column mapping, or
//! a directory of algoprog run records). A table by default, `--json` for
//! machines, `--plot STEM` for STEM.svg and STEM.png.

use std::path::PathBuf;

use algoprog_plot::charts::{write_log_log, LogLogChart, Mark, Series};
use algoprog_scaling::{
    bootstrap_chinchilla_from, bootstrap_frontier, drop_leading_fraction, families, family_curves,
    fit_chinchilla, fit_frontier, frontier, isoflop, load_curves, BootstrapOptions, Budgets,
    ChinchillaBootstrap, ChinchillaData, ChinchillaFit, ChinchillaOptions, ColumnMap, Curve,
    FitSpace, FrontierFit, FrontierOptions, Interval, Irreducible, IsoFlopOptions, IsoFlopResult,
    LoadOptions, LoadReport, NonFinitePolicy, PowerLawBootstrap, PowerLawOptions, Pruning,
    RefitStarts, Resample, RobustLoss, TokensSource,
};
use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::{count_at_most, ColumnArgs, BOOTSTRAP_WHY, MAX_BOOTSTRAP};

/// `--budgets` is bounded by [`algoprog_scaling::isoflop::MAX_ISOFLOP_BUDGETS`]:
/// budgets finer than the runs' evaluation spacing only re-read the same evaluations.
const MAX_ISOFLOP_BUDGETS: usize = algoprog_scaling::isoflop::MAX_ISOFLOP_BUDGETS;
const BUDGETS_WHY: &str = "budgets finer than the runs' evaluations only interpolate the same points again (12 is the default)";

/// `algoprog fit`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: FitCommand,
}

/// The fits.
#[derive(clap::Subcommand)]
pub enum FitCommand {
    /// Compute-optimal frontier (Pareto lower envelope of compute vs loss, per family) and its power law L = E + A·C^-γ.
    Frontier(FrontierArgs),
    /// Chinchilla form L(N,D) = E + A/N^α + B/D^β (Huber in log space, L-BFGS from the published 4,500-start grid) and the compute-optimal allocation.
    Chinchilla(ChinchillaArgs),
    /// IsoFLOP (Porian et al. 2024): loss-minimising N at each compute budget; fits N*(C) and D*(C).
    Isoflop(IsoflopArgs),
}

/// Input, selection and output flags shared by the fits.
#[derive(clap::Args, Clone, Debug)]
pub struct InputArgs {
    /// CSV file of curves, or a directory of algoprog run records.
    #[arg(long, short = 'i')]
    pub input: PathBuf,
    #[command(flatten)]
    pub columns: ColumnArgs,
    /// Only this family (default: every family, each fitted separately for `frontier`; pooled for the others).
    #[arg(long)]
    pub family: Option<String>,
    /// Intermediate-checkpoint fitting (Choshen et al. 2025): drop each run's points before this fraction of its last step (e.g. 0.333).
    #[arg(long, default_value_t = 0.0)]
    pub drop_fraction: f64,
    /// Treat NaN/inf losses as divergence (keep the points before it, flag the run) instead of failing.
    #[arg(long)]
    pub nan_as_diverged: bool,
    /// Include runs flagged diverged (excluded by default).
    #[arg(long)]
    pub include_diverged: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write a log-log plot to STEM.svg and STEM.png.
    #[arg(long, value_name = "STEM")]
    pub plot: Option<PathBuf>,
}

/// Bootstrap flags.
#[derive(clap::Args, Clone, Debug)]
pub struct BootArgs {
    /// Bootstrap replicates for percentile confidence intervals (0: none; at most 100,000).
    #[arg(long, default_value_t = 0, value_parser = count_at_most(MAX_BOOTSTRAP, "bootstrap replicates", BOOTSTRAP_WHY))]
    pub bootstrap: usize,
    /// Confidence level of the intervals.
    #[arg(long, default_value_t = 0.9)]
    pub level: f64,
    /// Resample individual points or whole runs.
    #[arg(long, value_enum, default_value_t = ResampleArg::Points)]
    pub resample: ResampleArg,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// What the bootstrap resamples.
#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ResampleArg {
    Points,
    Runs,
}

impl BootArgs {
    fn options(&self) -> Option<BootstrapOptions> {
        (self.bootstrap > 0).then_some(BootstrapOptions {
            reps: self.bootstrap,
            level: self.level,
            seed: self.seed,
            resample: match self.resample {
                ResampleArg::Points => Resample::Points,
                ResampleArg::Runs => Resample::Runs,
            },
        })
    }
}

/// Residual space of the frontier power law.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpaceArg {
    /// Least squares on L (scipy curve_fit on L − E).
    Linear,
    /// Least squares on log(L − E) (E fixed) or log L (E fitted).
    Log,
    /// Both fits, side by side.
    Both,
}

/// `algoprog fit frontier`.
#[derive(clap::Args, Clone, Debug)]
pub struct FrontierArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Fixed irreducible loss E (ignored with --fit-e).
    #[arg(long, default_value_t = 1.8)]
    pub e: f64,
    /// Fit E instead of fixing it.
    #[arg(long)]
    pub fit_e: bool,
    /// Residual space of the fit.
    #[arg(long, value_enum, default_value_t = SpaceArg::Linear)]
    pub space: SpaceArg,
    /// Fit only points with compute >= this (applied before the Pareto envelope, as the authors do).
    #[arg(long)]
    pub min_compute: Option<f64>,
    /// Fit only points with compute <= this (applied before the Pareto envelope).
    #[arg(long)]
    pub max_compute: Option<f64>,
    #[command(flatten)]
    pub boot: BootArgs,
}

/// `algoprog fit chinchilla`.
#[derive(clap::Args, Clone, Debug)]
pub struct ChinchillaArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Huber threshold δ of the summed loss in log space.
    #[arg(long, default_value_t = 1e-3)]
    pub delta: f64,
    /// Least squares instead of Huber (not robust; for comparison).
    #[arg(long)]
    pub least_squares: bool,
    /// Derive D from compute: D = C / (K·N) (default: the tokens column).
    #[arg(long, value_name = "K")]
    pub tokens_from_compute: Option<f64>,
    /// Screen all starts for 10 L-BFGS iterations and run only the best 64 distinct ones to convergence.
    #[arg(long)]
    pub prune: bool,
    /// Compute budgets at which to report the optimal allocation (repeatable).
    #[arg(long = "at-compute", value_name = "C")]
    pub at_compute: Vec<f64>,
    /// Bootstrap refits start from every grid start instead of the full fit's distinct local optima (slow).
    #[arg(long)]
    pub refit_full_grid: bool,
    #[command(flatten)]
    pub boot: BootArgs,
}

/// `algoprog fit isoflop`.
#[derive(clap::Args, Clone, Debug)]
pub struct IsoflopArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// Number of log-spaced compute budgets over the range covered by at least three sizes (2 to 10,000).
    #[arg(long, default_value_t = 12, value_parser = count_at_most(MAX_ISOFLOP_BUDGETS, "budgets", BUDGETS_WHY))]
    pub budgets: usize,
    /// Explicit compute budgets (repeatable; overrides --budgets).
    #[arg(long = "budget", value_name = "C")]
    pub budget_list: Vec<f64>,
    /// Take the best size itself instead of the parabola vertex in log N.
    #[arg(long)]
    pub no_parabola: bool,
    /// K in C = K·N·D, for D* when tokens are unknown.
    #[arg(long, default_value_t = 6.0)]
    pub k: f64,
}

/// Entry point of `algoprog fit`.
pub fn run(args: Args) -> Result<()> {
    match args.command {
        FitCommand::Frontier(a) => run_frontier(a),
        FitCommand::Chinchilla(a) => run_chinchilla(a),
        FitCommand::Isoflop(a) => run_isoflop(a),
    }
}

fn load(input: &InputArgs) -> Result<(Vec<Curve>, LoadReport)> {
    if !(0.0..1.0).contains(&input.drop_fraction) {
        bail!(
            "--drop-fraction must be in [0, 1), got {}",
            input.drop_fraction
        );
    }
    let cols = ColumnMap::from(&input.columns);
    let opts = LoadOptions {
        non_finite: if input.nan_as_diverged {
            NonFinitePolicy::MarkDiverged
        } else {
            NonFinitePolicy::Error
        },
        ..Default::default()
    };
    let (mut curves, report) = load_curves(&input.input, &cols, &opts)?;
    if let Some(f) = &input.family {
        let have: Vec<String> = families(&curves).into_keys().collect();
        curves = family_curves(&curves, f);
        if curves.is_empty() {
            bail!(
                "{}: no runs of family `{f}`; families present: {}",
                input.input.display(),
                have.join(", ")
            );
        }
    }
    if input.include_diverged {
        for c in &mut curves {
            c.meta.diverged = false;
        }
    }
    if input.drop_fraction > 0.0 {
        curves = drop_leading_fraction(&curves, input.drop_fraction);
    }
    if !input.json {
        let diverged = curves.iter().filter(|c| c.meta.diverged).count();
        eprintln!(
            "loaded {} runs ({} points) from {}{}{}",
            curves.len(),
            curves.iter().map(|c| c.points.len()).sum::<usize>(),
            input.input.display(),
            if diverged > 0 {
                format!("; {diverged} diverged runs excluded (--include-diverged to keep)")
            } else {
                String::new()
            },
            if report.empty_loss_rows > 0 {
                format!(
                    "; {} rows without a validation loss skipped",
                    report.empty_loss_rows
                )
            } else {
                String::new()
            },
        );
    }
    Ok((curves, report))
}

fn fmt_iv(iv: &Interval) -> String {
    format!("[{:.4}, {:.4}]", iv.lo, iv.hi)
}

#[derive(Serialize)]
struct FrontierOut {
    family: String,
    fits: Vec<FrontierFitOut>,
}

#[derive(Serialize)]
struct FrontierFitOut {
    #[serde(flatten)]
    fit: FrontierFit,
    bootstrap: Option<PowerLawBootstrap>,
}

fn run_frontier(a: FrontierArgs) -> Result<()> {
    let (curves, _) = load(&a.input)?;
    let fopts = FrontierOptions {
        min_compute: a.min_compute,
        max_compute: a.max_compute,
        ..Default::default()
    };
    let irr = if a.fit_e {
        Irreducible::Fitted
    } else {
        Irreducible::Fixed(a.e)
    };
    let spaces = match a.space {
        SpaceArg::Linear => vec![FitSpace::Linear],
        SpaceArg::Log => vec![FitSpace::Log],
        SpaceArg::Both => vec![FitSpace::Linear, FitSpace::Log],
    };
    let boot = a.boot.options();
    let mut outs = Vec::new();
    for (fam, idx) in families(&curves) {
        let fc: Vec<Curve> = idx.iter().map(|&i| curves[i].clone()).collect();
        let mut fits = Vec::new();
        for &space in &spaces {
            let lopts = PowerLawOptions {
                irreducible: irr,
                space,
            };
            let ctx = || format!("family `{fam}`");
            let out = match &boot {
                Some(b) => {
                    let (fit, bs) = bootstrap_frontier(&fc, &fopts, &lopts, b).with_context(ctx)?;
                    FrontierFitOut {
                        fit,
                        bootstrap: Some(bs),
                    }
                }
                None => FrontierFitOut {
                    fit: fit_frontier(&fc, &fopts, &lopts).with_context(ctx)?,
                    bootstrap: None,
                },
            };
            fits.push(out);
        }
        outs.push(FrontierOut { family: fam, fits });
    }
    if a.input.json {
        println!("{}", serde_json::to_string_pretty(&outs)?);
    } else {
        println!(
            "{:<16} {:<7} {:>7} {:>9} {:>12} {:>9} {:>8}  intervals",
            "family", "space", "points", "E", "A", "gamma", "R2"
        );
        for o in &outs {
            for f in &o.fits {
                let l = f.fit.fit.law;
                let iv = f.bootstrap.as_ref().map_or(String::new(), |b| {
                    format!(
                        "{:.0}%: E {} A [{:.4e}, {:.4e}] gamma {}{}",
                        b.level * 100.0,
                        fmt_iv(&b.e),
                        b.a.lo,
                        b.a.hi,
                        fmt_iv(&b.gamma),
                        if b.failed > 0 {
                            format!(" ({} refits failed)", b.failed)
                        } else {
                            String::new()
                        }
                    )
                });
                println!(
                    "{:<16} {:<7} {:>7} {:>9.4} {:>12.5e} {:>9.5} {:>8.5}  {}",
                    o.family,
                    format!("{:?}", f.fit.fit.space).to_lowercase(),
                    f.fit.points.len(),
                    l.e,
                    l.a,
                    l.gamma,
                    f.fit.fit.r2,
                    iv
                );
            }
        }
    }
    if let Some(stem) = &a.input.plot {
        let mut chart = LogLogChart::new(
            "Compute-optimal frontier",
            "training compute (FLOPs)",
            "loss",
        );
        for (k, o) in outs.iter().enumerate() {
            let fc = family_curves(&curves, &o.family);
            let all: Vec<(f64, f64)> = fc
                .iter()
                .filter(|c| !c.meta.diverged)
                .flat_map(|c| c.points.iter().map(|p| (p.flops, p.loss)))
                .collect();
            chart =
                chart.with(Series::new(format!("{} points", o.family), all, Mark::Points).color(k));
            let fr: Vec<(f64, f64)> = frontier(&fc, &fopts)
                .iter()
                .map(|p| (p.flops, p.loss))
                .collect();
            chart =
                chart.with(Series::new(format!("{} frontier", o.family), fr, Mark::Rings).color(k));
            for f in &o.fits {
                let (c0, c1) = (
                    f.fit.points[0].flops,
                    f.fit.points[f.fit.points.len() - 1].flops,
                );
                let line: Vec<(f64, f64)> = (0..=60)
                    .map(|i| {
                        let c = (c0.ln() + (c1.ln() - c0.ln()) * i as f64 / 60.0).exp();
                        (c, f.fit.fit.law.loss(c))
                    })
                    .collect();
                let l = f.fit.fit.law;
                let mark = if f.fit.fit.space == FitSpace::Linear {
                    Mark::Line
                } else {
                    Mark::Dashed
                };
                chart = chart.with(
                    Series::new(
                        format!(
                            "{} fit: {:.3} + {:.3e}·C^-{:.4}",
                            o.family, l.e, l.a, l.gamma
                        ),
                        line,
                        mark,
                    )
                    .color(k),
                );
            }
        }
        let (svg, png) = write_log_log(&chart, stem)?;
        eprintln!("wrote {} and {}", svg.display(), png.display());
    }
    Ok(())
}

#[derive(Serialize)]
struct ChinchillaOut {
    fit: ChinchillaFit,
    n_exponent: f64,
    d_exponent: f64,
    allocations: Vec<algoprog_scaling::Allocation>,
    bootstrap: Option<ChinchillaBootstrapOut>,
}

#[derive(Serialize)]
struct ChinchillaBootstrapOut {
    level: f64,
    reps: usize,
    failed: usize,
    e: Interval,
    a: Interval,
    b: Interval,
    alpha: Interval,
    beta: Interval,
    n_exponent: Interval,
    d_exponent: Interval,
}

impl From<&ChinchillaBootstrap> for ChinchillaBootstrapOut {
    fn from(b: &ChinchillaBootstrap) -> Self {
        Self {
            level: b.level,
            reps: b.reps,
            failed: b.failed,
            e: b.e,
            a: b.a,
            b: b.b,
            alpha: b.alpha,
            beta: b.beta,
            n_exponent: b.n_exponent,
            d_exponent: b.d_exponent,
        }
    }
}

fn run_chinchilla(a: ChinchillaArgs) -> Result<()> {
    if let Some(c) = a.at_compute.iter().find(|c| !(c.is_finite() && **c > 0.0)) {
        bail!("--at-compute {c}: a compute budget is training FLOPs and must be a positive number such as 1e21");
    }
    let (curves, _) = load(&a.input)?;
    let tokens = match a.tokens_from_compute {
        Some(k) => TokensSource::FromCompute { k },
        None => TokensSource::Column,
    };
    let data = ChinchillaData::from_curves(&curves, tokens)?;
    let opts = ChinchillaOptions {
        loss: if a.least_squares {
            RobustLoss::Squared
        } else {
            RobustLoss::Huber { delta: a.delta }
        },
        pruning: if a.prune {
            Pruning::Screen {
                screen_iters: 10,
                keep: 64,
            }
        } else {
            Pruning::None
        },
        ..Default::default()
    };
    let t0 = std::time::Instant::now();
    let fit = fit_chinchilla(&data, &opts)?;
    let secs = t0.elapsed().as_secs_f64();
    let k = a.tokens_from_compute.unwrap_or(6.0);
    let budgets: Vec<f64> = if a.at_compute.is_empty() {
        let cmax = data
            .n
            .iter()
            .zip(&data.d)
            .map(|(n, d)| k * n * d)
            .fold(0.0, f64::max);
        (0..4).map(|i| cmax * 10f64.powi(i)).collect()
    } else {
        a.at_compute.clone()
    };
    let allocations = budgets.iter().map(|&c| fit.allocation(c, k)).collect();
    let (n_exponent, d_exponent) = fit.allocation_exponents();
    let bootstrap = match a.boot.options() {
        Some(b) => {
            let starts = if a.refit_full_grid {
                RefitStarts::Grid
            } else {
                RefitStarts::LocalOptima
            };
            Some(ChinchillaBootstrapOut::from(&bootstrap_chinchilla_from(
                &data,
                fit.clone(),
                &opts,
                &b,
                &starts,
            )?))
        }
        None => None,
    };
    let out = ChinchillaOut {
        fit,
        n_exponent,
        d_exponent,
        allocations,
        bootstrap,
    };
    if a.input.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let f = &out.fit;
        let l = f.law;
        println!(
            "{} points, {} runs; {} starts ({} run to convergence, {} failed, {} at the best objective) in {secs:.2} s",
            f.n_points,
            data.n_runs(),
            f.starts,
            f.full_starts,
            f.failed_starts,
            f.starts_at_best
        );
        println!(
            "objective {:.6e} ({:?}), R2 (log L) {:.5}",
            f.objective, opts.loss, f.r2_log
        );
        let iv = |x: Option<Interval>| x.map_or(String::new(), |i| fmt_iv(&i));
        let b = out.bootstrap.as_ref();
        if let Some(b) = b {
            println!(
                "{:.0}% percentile intervals from {} bootstrap refits ({} failed)",
                b.level * 100.0,
                b.reps,
                b.failed
            );
        }
        println!("  E      {:>12.5}  {}", l.e, iv(b.map(|b| b.e)));
        println!("  A      {:>12.4}  {}", l.a, iv(b.map(|b| b.a)));
        println!("  B      {:>12.4}  {}", l.b, iv(b.map(|b| b.b)));
        println!("  alpha  {:>12.5}  {}", l.alpha, iv(b.map(|b| b.alpha)));
        println!("  beta   {:>12.5}  {}", l.beta, iv(b.map(|b| b.beta)));
        println!(
            "  N_opt ∝ C^{:.4} {}   D_opt ∝ C^{:.4} {}",
            out.n_exponent,
            iv(b.map(|b| b.n_exponent)),
            out.d_exponent,
            iv(b.map(|b| b.d_exponent))
        );
        println!(
            "{:>12} {:>12} {:>12} {:>10} {:>9}",
            "C", "N_opt", "D_opt", "D/N", "loss"
        );
        for al in &out.allocations {
            println!(
                "{:>12.3e} {:>12.3e} {:>12.3e} {:>10.2} {:>9.4}",
                al.compute, al.n_opt, al.d_opt, al.tokens_per_param, al.loss
            );
        }
    }
    if let Some(stem) = &a.input.plot {
        let pts: Vec<(f64, f64)> = (0..data.len())
            .map(|i| (k * data.n[i] * data.d[i], data.loss[i]))
            .collect();
        let (c0, c1) = pts.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), p| {
            (lo.min(p.0), hi.max(p.0))
        });
        let line: Vec<(f64, f64)> = (0..=60)
            .map(|i| {
                let c = (c0.ln() + (c1.ln() - c0.ln()) * i as f64 / 60.0).exp();
                (c, out.fit.allocation(c, k).loss)
            })
            .collect();
        let chart = LogLogChart::new("Chinchilla fit", "training compute (FLOPs)", "loss")
            .with(Series::new("points", pts, Mark::Points))
            .with(Series::new(
                "compute-optimal loss L(N_opt(C), D_opt(C))",
                line,
                Mark::Line,
            ));
        let (svg, png) = write_log_log(&chart, stem)?;
        eprintln!("wrote {} and {}", svg.display(), png.display());
    }
    Ok(())
}

fn run_isoflop(a: IsoflopArgs) -> Result<()> {
    let (curves, _) = load(&a.input)?;
    let opts = IsoFlopOptions {
        budgets: if a.budget_list.is_empty() {
            Budgets::Count(a.budgets)
        } else {
            Budgets::List(a.budget_list.clone())
        },
        parabola: !a.no_parabola,
        k: a.k,
    };
    let r: IsoFlopResult = isoflop(&curves, &opts)?;
    if a.input.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "{:>12} {:>6} {:>12} {:>12} {:>9} {:>9}",
            "C", "sizes", "N*", "D*", "loss", "interior"
        );
        for b in &r.budgets {
            println!(
                "{:>12.3e} {:>6} {:>12.4e} {:>12.4e} {:>9.4} {:>9}",
                b.compute,
                b.sizes.len(),
                b.n_opt,
                b.d_opt,
                b.loss_opt,
                if b.interior { "yes" } else { "no" }
            );
        }
        println!(
            "N*(C) = {:.4e}·C^{:.4} (R2 {:.4});  D*(C) = {:.4e}·C^{:.4} (R2 {:.4});  {} interior budgets fitted",
            r.n_opt.coef, r.n_opt.exponent, r.n_opt.r2, r.d_opt.coef, r.d_opt.exponent, r.d_opt.r2, r.fitted_budgets
        );
    }
    if let Some(stem) = &a.input.plot {
        let used: Vec<&algoprog_scaling::IsoFlopBudget> =
            r.budgets.iter().filter(|b| b.interior).collect();
        let cs: Vec<f64> = used.iter().map(|b| b.compute).collect();
        let chart = LogLogChart::new("IsoFLOP optima", "training compute (FLOPs)", "N*, D*")
            .with(
                Series::new(
                    "N*",
                    used.iter().map(|b| (b.compute, b.n_opt)).collect(),
                    Mark::Rings,
                )
                .color(0),
            )
            .with(
                Series::new(
                    format!("N* fit ∝ C^{:.3}", r.n_opt.exponent),
                    cs.iter().map(|&c| (c, r.n_opt.at(c))).collect(),
                    Mark::Line,
                )
                .color(0),
            )
            .with(
                Series::new(
                    "D*",
                    used.iter().map(|b| (b.compute, b.d_opt)).collect(),
                    Mark::Rings,
                )
                .color(1),
            )
            .with(
                Series::new(
                    format!("D* fit ∝ C^{:.3}", r.d_opt.exponent),
                    cs.iter().map(|&c| (c, r.d_opt.at(c))).collect(),
                    Mark::Line,
                )
                .color(1),
            );
        let (svg, png) = write_log_log(&chart, stem)?;
        eprintln!("wrote {} and {}", svg.display(), png.display());
    }
    Ok(())
}
