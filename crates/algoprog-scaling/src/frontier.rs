//! The compute-optimal frontier: the Pareto lower envelope of (compute, loss)
//! over every evaluation point of every run of a family, and its power law.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::curve::Curve;
use crate::error::{Result, ScalingError};
use crate::powerlaw::{fit_power_law, PowerLawFit, PowerLawOptions};

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

/// Which points enter the frontier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FrontierOptions {
    /// Keep frontier points with compute ≥ this.
    pub min_compute: Option<f64>,
    /// Keep frontier points with compute ≤ this.
    pub max_compute: Option<f64>,
    /// Include runs flagged diverged (default: excluded).
    pub include_diverged: bool,
}

/// The Pareto lower envelope of every point of every curve: a point is on the
/// frontier when no point with less or equal compute has a loss at or below
/// its loss (of points with equal compute and loss, the first in input order
/// is kept). Points with zero compute (evaluations before training) cannot be
/// on a log-compute frontier and are left out; diverged runs are left out
/// unless `include_diverged`. The compute range restricts the envelope of all
/// points to the range (a point below the range still dominates points inside
/// it). Sorted by compute; loss strictly decreases along it.
pub fn frontier(curves: &[Curve], opts: &FrontierOptions) -> Vec<FrontierPoint> {
    let mut pts: Vec<(f64, f64, usize, u64)> = Vec::new();
    for (ci, c) in curves.iter().enumerate() {
        if c.meta.diverged && !opts.include_diverged {
            continue;
        }
        for p in &c.points {
            if p.flops > 0.0 && p.loss.is_finite() {
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
            let in_range =
                opts.min_compute.is_none_or(|m| flops >= m) && opts.max_compute.is_none_or(|m| flops <= m);
            if in_range {
                out.push(FrontierPoint { flops, loss, curve: ci, run_id: curves[ci].meta.run_id.clone(), step });
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
    curves.iter().filter(|c| c.meta.family == family).cloned().collect()
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
pub fn fit_frontier(curves: &[Curve], frontier_opts: &FrontierOptions, law_opts: &PowerLawOptions) -> Result<FrontierFit> {
    let points = frontier(curves, frontier_opts);
    if points.is_empty() {
        return Err(ScalingError::InsufficientData(
            "the frontier is empty (no point with positive compute in range among non-diverged runs)".into(),
        ));
    }
    let c: Vec<f64> = points.iter().map(|p| p.flops).collect();
    let l: Vec<f64> = points.iter().map(|p| p.loss).collect();
    let fit = fit_power_law(&c, &l, law_opts).map_err(|e| match e {
        ScalingError::InsufficientData(m) => {
            ScalingError::InsufficientData(format!("{m} (frontier points; widen the compute range or add runs)"))
        }
        other => other,
    })?;
    Ok(FrontierFit { points, fit })
}
