//! Bootstrap percentile confidence intervals, parallel and seeded.
//!
//! Replicate r draws its resample from ChaCha8 seeded with `seed` on stream
//! r, so results do not depend on the number of threads. A replicate whose
//! refit fails is counted in `failed` (never silently dropped); intervals are
//! percentiles (numpy's default linear interpolation) of the successful ones.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::chinchilla::{fit_from_starts, ChinchillaData, ChinchillaFit, ChinchillaOptions};
use crate::curve::Curve;
use crate::error::{Result, ScalingError};
use crate::frontier::{fit_frontier, FrontierFit, FrontierOptions};
use crate::powerlaw::{fit_power_law, PowerLawFit, PowerLawOptions};

/// What is resampled with replacement.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resample {
    /// Individual points (frontier points, or fit points).
    #[default]
    Points,
    /// Whole runs (curves), keeping each run's points together.
    Runs,
}

/// Options of a bootstrap.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BootstrapOptions {
    /// Number of replicates.
    pub reps: usize,
    /// Confidence level of the percentile intervals (default 0.9).
    pub level: f64,
    /// Seed.
    pub seed: u64,
    /// Points or runs.
    pub resample: Resample,
}

impl Default for BootstrapOptions {
    fn default() -> Self {
        Self {
            reps: 1000,
            level: 0.9,
            seed: 0,
            resample: Resample::Points,
        }
    }
}

/// Most bootstrap replicates one call may ask for. The Monte Carlo error of a
/// percentile interval's end shrinks as 1/√reps: at 100,000 replicates it is
/// well under 1% of the interval's width, far below the sampling error the
/// interval describes, so more replicates buy nothing. The replicates'
/// statistics are held in memory (one vector per replicate) and every
/// replicate is a refit, so an unbounded count (`--bootstrap 1000000000`)
/// would exhaust memory and time before printing anything.
pub const MAX_BOOTSTRAP_REPS: usize = 100_000;

impl BootstrapOptions {
    fn validate(&self) -> Result<()> {
        if self.reps < 2 {
            return Err(ScalingError::InvalidOption(format!(
                "bootstrap needs at least 2 replicates, got {}",
                self.reps
            )));
        }
        if self.reps > MAX_BOOTSTRAP_REPS {
            return Err(ScalingError::InvalidOption(format!(
                "{} bootstrap replicates is more than the maximum {MAX_BOOTSTRAP_REPS}; 1,000 to 10,000 give stable 90% intervals",
                self.reps
            )));
        }
        if !(self.level > 0.0 && self.level < 1.0) {
            return Err(ScalingError::InvalidOption(format!(
                "confidence level must be in (0, 1), got {}",
                self.level
            )));
        }
        Ok(())
    }
}

/// A percentile interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
}

impl Interval {
    /// Whether `x` lies within the interval (inclusive).
    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }
}

/// The `q`-quantile (0 ≤ q ≤ 1) of sorted values, linear interpolation
/// between order statistics (numpy's default).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty(), "quantile of an empty sample");
    let h = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Percentile interval at `level` of `samples` (any order).
pub fn percentile_interval(samples: &[f64], level: f64) -> Interval {
    let mut s: Vec<f64> = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    Interval {
        lo: quantile_sorted(&s, tail),
        hi: quantile_sorted(&s, 1.0 - tail),
    }
}

/// Replicate `r`'s resample of `n` units (indices drawn with replacement).
pub fn resample_indices(seed: u64, r: usize, n: usize) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(r as u64);
    (0..n).map(|_| rng.random_range(0..n)).collect()
}

/// Raw bootstrap output: one vector of statistics per successful replicate.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BootstrapSamples {
    /// Statistics of each successful replicate.
    pub samples: Vec<Vec<f64>>,
    /// Replicates whose refit failed.
    pub failed: usize,
}

impl BootstrapSamples {
    /// Percentile interval of statistic `k` at `level`.
    pub fn interval(&self, k: usize, level: f64) -> Interval {
        let v: Vec<f64> = self.samples.iter().map(|s| s[k]).collect();
        percentile_interval(&v, level)
    }
}

/// Generic bootstrap over `n_units` units: `stat` gets each replicate's
/// resampled unit indices and returns its statistics. Runs in parallel.
pub fn bootstrap<F>(n_units: usize, opts: &BootstrapOptions, stat: F) -> Result<BootstrapSamples>
where
    F: Fn(&[usize]) -> Result<Vec<f64>> + Sync,
{
    opts.validate()?;
    if n_units == 0 {
        return Err(ScalingError::InsufficientData("nothing to resample".into()));
    }
    let res: Vec<Option<Vec<f64>>> = (0..opts.reps)
        .into_par_iter()
        .map(|r| {
            let idx = resample_indices(opts.seed, r, n_units);
            stat(&idx).ok().filter(|v| v.iter().all(|x| x.is_finite()))
        })
        .collect();
    let failed = res.iter().filter(|r| r.is_none()).count();
    let samples: Vec<Vec<f64>> = res.into_iter().flatten().collect();
    if samples.len() < 2 {
        return Err(ScalingError::FitFailed(format!(
            "{failed} of {} bootstrap refits failed",
            opts.reps
        )));
    }
    Ok(BootstrapSamples { samples, failed })
}

/// A power-law fit with bootstrap intervals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PowerLawBootstrap {
    /// Fit on all the data.
    pub fit: PowerLawFit,
    /// Interval of E (degenerate when E is fixed).
    pub e: Interval,
    /// Interval of A.
    pub a: Interval,
    /// Interval of γ.
    pub gamma: Interval,
    /// Confidence level.
    pub level: f64,
    /// Replicates run.
    pub reps: usize,
    /// Replicates whose refit failed.
    pub failed: usize,
}

fn power_law_summary(
    fit: PowerLawFit,
    s: &BootstrapSamples,
    opts: &BootstrapOptions,
) -> PowerLawBootstrap {
    PowerLawBootstrap {
        fit,
        e: s.interval(0, opts.level),
        a: s.interval(1, opts.level),
        gamma: s.interval(2, opts.level),
        level: opts.level,
        reps: opts.reps,
        failed: s.failed,
    }
}

/// Bootstrap a power-law fit by resampling points (`opts.resample` is ignored: there are no runs).
pub fn bootstrap_power_law(
    compute: &[f64],
    loss: &[f64],
    law_opts: &PowerLawOptions,
    opts: &BootstrapOptions,
) -> Result<PowerLawBootstrap> {
    let fit = fit_power_law(compute, loss, law_opts)?;
    let s = bootstrap(compute.len(), opts, |idx| {
        let c: Vec<f64> = idx.iter().map(|&i| compute[i]).collect();
        let l: Vec<f64> = idx.iter().map(|&i| loss[i]).collect();
        let f = fit_power_law(&c, &l, law_opts)?;
        Ok(vec![f.law.e, f.law.a, f.law.gamma])
    })?;
    Ok(power_law_summary(fit, &s, opts))
}

/// Frontier power law with bootstrap intervals: resampling frontier points
/// ([`Resample::Points`]) or whole runs ([`Resample::Runs`]: the frontier is
/// recomputed from each resample of the curves, then refitted).
pub fn bootstrap_frontier(
    curves: &[Curve],
    frontier_opts: &FrontierOptions,
    law_opts: &PowerLawOptions,
    opts: &BootstrapOptions,
) -> Result<(FrontierFit, PowerLawBootstrap)> {
    let ff = fit_frontier(curves, frontier_opts, law_opts)?;
    let s = match opts.resample {
        Resample::Points => {
            let c: Vec<f64> = ff.points.iter().map(|p| p.flops).collect();
            let l: Vec<f64> = ff.points.iter().map(|p| p.loss).collect();
            bootstrap(c.len(), opts, |idx| {
                let cc: Vec<f64> = idx.iter().map(|&i| c[i]).collect();
                let ll: Vec<f64> = idx.iter().map(|&i| l[i]).collect();
                let f = fit_power_law(&cc, &ll, law_opts)?;
                Ok(vec![f.law.e, f.law.a, f.law.gamma])
            })?
        }
        Resample::Runs => bootstrap(curves.len(), opts, |idx| {
            let cs: Vec<Curve> = idx.iter().map(|&i| curves[i].clone()).collect();
            let f = fit_frontier(&cs, frontier_opts, law_opts)?;
            Ok(vec![f.fit.law.e, f.fit.law.a, f.fit.law.gamma])
        })?,
    };
    let summary = power_law_summary(ff.fit.clone(), &s, opts);
    Ok((ff, summary))
}

/// Where bootstrap refits of the Chinchilla form start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RefitStarts {
    /// Every start of the options' grid, for every replicate (the full procedure; slow).
    Grid,
    /// The distinct local optima found by the full-data fit (its best first):
    /// a replicate's optimum lies near one of them, so starts elsewhere cannot win.
    LocalOptima,
}

/// A Chinchilla fit with bootstrap intervals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChinchillaBootstrap {
    /// Fit on all the data.
    pub fit: ChinchillaFit,
    pub e: Interval,
    pub a: Interval,
    pub b: Interval,
    pub alpha: Interval,
    pub beta: Interval,
    /// Interval of the exponent of N_opt ∝ C^a_n, a_n = β/(α+β).
    pub n_exponent: Interval,
    /// Interval of the exponent of D_opt ∝ C^b_d, b_d = α/(α+β).
    pub d_exponent: Interval,
    pub level: f64,
    pub reps: usize,
    pub failed: usize,
    /// Samples (E, A, B, α, β) of the successful replicates.
    pub samples: Vec<[f64; 5]>,
}

/// Bootstrap the Chinchilla fit, resampling points or whole runs (`data.run`).
pub fn bootstrap_chinchilla(
    data: &ChinchillaData,
    fit_opts: &ChinchillaOptions,
    opts: &BootstrapOptions,
    starts: &RefitStarts,
) -> Result<ChinchillaBootstrap> {
    let full_starts = fit_opts.grid.starts();
    let fit = fit_from_starts(data, fit_opts, &full_starts)?;
    bootstrap_chinchilla_from(data, fit, fit_opts, opts, starts)
}

/// As [`bootstrap_chinchilla`], reusing a full-data fit already made with `fit_opts`.
pub fn bootstrap_chinchilla_from(
    data: &ChinchillaData,
    fit: ChinchillaFit,
    fit_opts: &ChinchillaOptions,
    opts: &BootstrapOptions,
    starts: &RefitStarts,
) -> Result<ChinchillaBootstrap> {
    let refit_starts: Vec<[f64; 5]> = match starts {
        RefitStarts::Grid => fit_opts.grid.starts(),
        RefitStarts::LocalOptima => fit.local_optima.iter().map(|s| s.theta).collect(),
    };
    // replicates are already parallel: refit each one's starts sequentially
    let refit = |d: &ChinchillaData| -> Result<Vec<f64>> {
        let f = crate::chinchilla::fit_from_starts_sequential(d, fit_opts, &refit_starts)?;
        let l = f.law;
        Ok(vec![l.e, l.a, l.b, l.alpha, l.beta])
    };
    let runs: Vec<Vec<usize>> = {
        let mut v = vec![Vec::new(); data.n_runs()];
        for (i, &r) in data.run.iter().enumerate() {
            v[r].push(i);
        }
        v
    };
    let s = match opts.resample {
        Resample::Points => bootstrap(data.len(), opts, |idx| refit(&data.subset(idx)))?,
        Resample::Runs => bootstrap(runs.len(), opts, |ridx| {
            let idx: Vec<usize> = ridx.iter().flat_map(|&r| runs[r].iter().copied()).collect();
            refit(&data.subset(&idx))
        })?,
    };
    let exps: Vec<(f64, f64)> = s
        .samples
        .iter()
        .map(|v| (v[4] / (v[3] + v[4]), v[3] / (v[3] + v[4])))
        .collect();
    let n_exp: Vec<f64> = exps.iter().map(|x| x.0).collect();
    let d_exp: Vec<f64> = exps.iter().map(|x| x.1).collect();
    Ok(ChinchillaBootstrap {
        fit,
        e: s.interval(0, opts.level),
        a: s.interval(1, opts.level),
        b: s.interval(2, opts.level),
        alpha: s.interval(3, opts.level),
        beta: s.interval(4, opts.level),
        n_exponent: percentile_interval(&n_exp, opts.level),
        d_exponent: percentile_interval(&d_exp, opts.level),
        level: opts.level,
        reps: opts.reps,
        failed: s.failed,
        samples: s
            .samples
            .iter()
            .map(|v| [v[0], v[1], v[2], v[3], v[4]])
            .collect(),
    })
}
