//! The compute-optimal frontier: the Pareto lower envelope of (compute, loss)
//! over every evaluation point of every run of a family, and its power law.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::curve::Curve;
use crate::error::{Result, ScalingError};
use crate::powerlaw::{fit_power_law, Irreducible, PowerLawFit, PowerLawOptions};

/// A point of the frontier and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrontierPoint {
    /// Cumulative training compute.
    pub flops: f64,
    /// Loss.
    pub loss: f64,
    /// Index of the curve in the input slice.
    pub curve: usize,
    /// Run id of that curve.
    pub run_id: String,
    /// Step of the evaluation.
    pub step: u64,
}

/// When the compute range of [`FrontierOptions`] is applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RangeMode {
    /// Drop the points outside the range first, then take the Pareto
    /// envelope of the rest: a point below the range dominates nothing. The
    /// authors' way (their notebook filters 1e16 ≤ C ≤ 5e17, then takes the
    /// envelope); the default.
    #[default]
    #[serde(alias = "before-pareto", alias = "before")]
    BeforePareto,
    /// Take the envelope of all points, then keep its points inside the
    /// range: a point below the range still dominates points inside it.
    #[serde(alias = "after-pareto", alias = "after")]
    AfterPareto,
}

impl RangeMode {
    /// `before-pareto` or `after-pareto`.
    pub fn name(self) -> &'static str {
        match self {
            RangeMode::BeforePareto => "before-pareto",
            RangeMode::AfterPareto => "after-pareto",
        }
    }

    /// Parse `before-pareto` / `before` or `after-pareto` / `after` (`_` for `-` allowed).
    pub fn from_name(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "before-pareto" | "before" => Ok(RangeMode::BeforePareto),
            "after-pareto" | "after" => Ok(RangeMode::AfterPareto),
            _ => Err(ScalingError::InvalidOption(format!(
                "range mode `{s}`: expected before-pareto or after-pareto"
            ))),
        }
    }
}

/// Which points enter the frontier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FrontierOptions {
    /// Keep frontier points with compute ≥ this.
    pub min_compute: Option<f64>,
    /// Keep frontier points with compute ≤ this.
    pub max_compute: Option<f64>,
    /// Include runs flagged diverged (default: excluded).
    pub include_diverged: bool,
    /// Whether the compute range applies before or after the Pareto step (default: before, as the authors).
    #[serde(default)]
    pub range_mode: RangeMode,
}

impl FrontierOptions {
    /// The papers' frontier range, [1e16, 5e17] FLOPs, applied before the Pareto step.
    pub fn papers() -> Self {
        Self {
            min_compute: Some(1e16),
            max_compute: Some(5e17),
            include_diverged: false,
            range_mode: RangeMode::BeforePareto,
        }
    }

    fn in_range(&self, flops: f64) -> bool {
        self.min_compute.is_none_or(|m| flops >= m) && self.max_compute.is_none_or(|m| flops <= m)
    }
}

/// The Pareto lower envelope of every point of every curve: a point is on the
/// frontier when no point with less or equal compute has a loss at or below
/// its loss (of points with equal compute and loss, the first in input order
/// is kept). Points with zero compute (evaluations before training) cannot be
/// on a log-compute frontier and are left out; diverged runs are left out
/// unless `include_diverged`. The compute range applies before the envelope
/// ([`RangeMode::BeforePareto`], default: points outside it are dropped
/// first) or after it ([`RangeMode::AfterPareto`]: a point below the range
/// still dominates points inside it). Sorted by compute; loss strictly
/// decreases along it.
pub fn frontier(curves: &[Curve], opts: &FrontierOptions) -> Vec<FrontierPoint> {
    let mut pts: Vec<(f64, f64, usize, u64)> = Vec::new();
    for (ci, c) in curves.iter().enumerate() {
        if c.meta.diverged && !opts.include_diverged {
            continue;
        }
        for p in &c.points {
            let kept = opts.range_mode == RangeMode::AfterPareto || opts.in_range(p.flops);
            if p.flops > 0.0 && p.loss.is_finite() && kept {
                pts.push((p.flops, p.loss, ci, p.step));
            }
        }
    }
    // stable sort: compute ascending, then loss ascending, then input order
    pts.sort_by(|x, y| x.0.total_cmp(&y.0).then(x.1.total_cmp(&y.1)));
    let mut out = Vec::new();
    let mut best = f64::INFINITY;
    for (flops, loss, ci, step) in pts {
        if loss < best {
            best = loss;
            if opts.in_range(flops) {
                out.push(FrontierPoint {
                    flops,
                    loss,
                    curve: ci,
                    run_id: curves[ci].meta.run_id.clone(),
                    step,
                });
            }
        }
    }
    out
}

/// Curves grouped by family (sorted by family name), as indices into `curves`.
pub fn families(curves: &[Curve]) -> BTreeMap<String, Vec<usize>> {
    let mut m: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, c) in curves.iter().enumerate() {
        m.entry(c.meta.family.clone()).or_default().push(i);
    }
    m
}

/// The curves of one family (cloned).
pub fn family_curves(curves: &[Curve], family: &str) -> Vec<Curve> {
    curves
        .iter()
        .filter(|c| c.meta.family == family)
        .cloned()
        .collect()
}

/// A frontier with its fitted power law.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrontierFit {
    /// The frontier points that were fitted.
    pub points: Vec<FrontierPoint>,
    /// The power law fitted to them.
    pub fit: PowerLawFit,
}

/// Frontier of `curves` (all treated as one family) and the power law
/// L = E + A·C^(−γ) fitted to it: the entry point for frontier-based analyses.
///
/// Refuses, instead of fitting something else silently: a loss ≤ 0 in any
/// point that could enter the frontier (a cross-entropy is positive; such a
/// point would dominate every later one and cut the frontier short), a fixed
/// E at or above a frontier loss (the authors' code drops those points,
/// y = L − E ≤ 0; here that is an error naming the points, so that a wrong E
/// does not shorten the frontier unnoticed), and degenerate fits (see
/// [`fit_power_law`]).
pub fn fit_frontier(
    curves: &[Curve],
    frontier_opts: &FrontierOptions,
    law_opts: &PowerLawOptions,
) -> Result<FrontierFit> {
    for c in curves {
        if c.meta.diverged && !frontier_opts.include_diverged {
            continue;
        }
        let could_enter = |flops: f64| {
            frontier_opts.range_mode == RangeMode::AfterPareto || frontier_opts.in_range(flops)
        };
        if let Some(p) = c
            .points
            .iter()
            .find(|p| p.flops > 0.0 && p.loss <= 0.0 && could_enter(p.flops))
        {
            return Err(ScalingError::InvalidData(format!(
                "run `{}`, step {}: loss {} at {:e} FLOPs is not positive; a cross-entropy loss is > 0. Fix or remove the row (is the column a loss?)",
                c.meta.run_id, p.step, p.loss, p.flops
            )));
        }
    }
    let points = frontier(curves, frontier_opts);
    if points.is_empty() {
        return Err(ScalingError::InsufficientData(
            "the frontier is empty (no point with positive compute in range among non-diverged runs)".into(),
        ));
    }
    if let Irreducible::Fixed(e) = law_opts.irreducible {
        let below: Vec<&FrontierPoint> = points.iter().filter(|p| p.loss <= e).collect();
        if let Some(low) = below.iter().min_by(|a, b| a.loss.total_cmp(&b.loss)) {
            return Err(ScalingError::InvalidData(format!(
                "{} of {} frontier points have a loss at or below the fixed irreducible loss E = {e} (lowest: {} in run `{}` at step {}, {:e} FLOPs); \
                 L − E must be positive. Lower E below {}, fit E, or restrict the compute range",
                below.len(),
                points.len(),
                low.loss,
                low.run_id,
                low.step,
                low.flops,
                low.loss
            )));
        }
    }
    let c: Vec<f64> = points.iter().map(|p| p.flops).collect();
    let l: Vec<f64> = points.iter().map(|p| p.loss).collect();
    let fit = fit_power_law(&c, &l, law_opts).map_err(|e| match e {
        ScalingError::InsufficientData(m) => ScalingError::InsufficientData(format!(
            "{m} (frontier points; widen the compute range or add runs)"
        )),
        other => other,
    })?;
    Ok(FrontierFit { points, fit })
}
