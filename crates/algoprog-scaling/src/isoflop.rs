//! The IsoFLOP method (Porian et al. 2024): for each compute budget C,
//! interpolate every model size's loss at C along its training curve,
//! find the size N*(C) with the lowest loss, and fit N*(C) = k_N·C^a and
//! D*(C) = k_D·C^b by least squares in log-log space.
//!
//! Choices made here (documented):
//! - a curve's loss at C is interpolated linearly in log C between the two
//!   evaluations that bracket C; budgets outside a curve's logged compute
//!   range are not extrapolated (that size does not take part at C);
//! - when several runs share a size (learning rates, seeds), the size's loss
//!   at C is the lowest of them (the tuned run);
//! - the minimiser is refined by the vertex of the parabola through the best
//!   size and its two neighbours in (log N, loss) (`parabola`), else the best
//!   size itself; a budget whose best size is the smallest or largest size
//!   present is not interior (the optimum may lie outside) and is left out of
//!   the N*(C), D*(C) fits;
//! - D*(C): the tokens of the best run at C, interpolated in log N between
//!   neighbouring sizes at the parabola's vertex; C/(k·N*) when tokens are unknown.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::curve::Curve;
use crate::error::{Result, ScalingError};

/// Compute budgets at which to locate the optimum.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Budgets {
    /// This many budgets, log-spaced over the compute range covered by at least three sizes.
    Count(usize),
    /// Explicit budgets.
    List(Vec<f64>),
}

/// Options of the IsoFLOP analysis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IsoFlopOptions {
    /// Budgets (default: 12 log-spaced).
    pub budgets: Budgets,
    /// Refine the minimiser with a parabola in log N (default true).
    pub parabola: bool,
    /// k in C = k·N·D, used for D* when tokens are unknown (default 6).
    pub k: f64,
}

impl Default for IsoFlopOptions {
    fn default() -> Self {
        Self {
            budgets: Budgets::Count(12),
            parabola: true,
            k: 6.0,
        }
    }
}

/// The optimum at one budget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IsoFlopBudget {
    /// Compute budget C.
    pub compute: f64,
    /// (N, loss at C, tokens at C) for each size whose curve spans C, by N.
    pub sizes: Vec<(f64, f64, f64)>,
    /// Loss-minimising N at C.
    pub n_opt: f64,
    /// Tokens of the optimum at C.
    pub d_opt: f64,
    /// Loss at the optimum (parabola vertex value, or the best size's loss).
    pub loss_opt: f64,
    /// The best size is neither the smallest nor the largest present.
    pub interior: bool,
}

/// A power law y = k·C^exponent fitted in log-log space.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComputeScaling {
    /// Prefactor k.
    pub coef: f64,
    /// Exponent.
    pub exponent: f64,
    /// R² in log space.
    pub r2: f64,
}

impl ComputeScaling {
    /// k·C^exponent.
    pub fn at(&self, c: f64) -> f64 {
        self.coef * c.powf(self.exponent)
    }
}

/// Result of the IsoFLOP analysis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IsoFlopResult {
    /// Every budget with at least three sizes.
    pub budgets: Vec<IsoFlopBudget>,
    /// N*(C) fitted on the interior budgets.
    pub n_opt: ComputeScaling,
    /// D*(C) fitted on the interior budgets.
    pub d_opt: ComputeScaling,
    /// Number of budgets used by the fits.
    pub fitted_budgets: usize,
}

/// Loss and tokens of a curve at compute `c`, interpolated linearly in log C.
pub fn interpolate_at(curve: &Curve, c: f64) -> Option<(f64, f64)> {
    let pts: Vec<_> = curve.points.iter().filter(|p| p.flops > 0.0).collect();
    if pts.is_empty() || c < pts[0].flops || c > pts[pts.len() - 1].flops {
        return None;
    }
    for w in pts.windows(2) {
        let (p, q) = (w[0], w[1]);
        if c >= p.flops && c <= q.flops {
            if q.flops == p.flops {
                return Some((p.loss.min(q.loss), p.tokens));
            }
            let t = (c.ln() - p.flops.ln()) / (q.flops.ln() - p.flops.ln());
            return Some((
                p.loss + t * (q.loss - p.loss),
                p.tokens + t * (q.tokens - p.tokens),
            ));
        }
    }
    (pts.len() == 1 && pts[0].flops == c).then(|| (pts[0].loss, pts[0].tokens))
}

fn log_fit(c: &[f64], y: &[f64]) -> ComputeScaling {
    let x: Vec<f64> = c.iter().map(|v| v.ln()).collect();
    let ly: Vec<f64> = y.iter().map(|v| v.ln()).collect();
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = ly.iter().sum::<f64>() / n;
    let sxy: f64 = x.iter().zip(&ly).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let syy: f64 = ly.iter().map(|b| (b - my).powi(2)).sum();
    let slope = sxy / sxx;
    let icpt = my - slope * mx;
    let ssr: f64 = x
        .iter()
        .zip(&ly)
        .map(|(a, b)| (b - icpt - slope * a).powi(2))
        .sum();
    ComputeScaling {
        coef: icpt.exp(),
        exponent: slope,
        r2: if syy > 0.0 { 1.0 - ssr / syy } else { f64::NAN },
    }
}

/// Most log-spaced budgets [`Budgets::Count`] may ask for. Each budget is a
/// row of the table and a point of the N*(C), D*(C) fits; budgets closer than
/// the runs' evaluation spacing only interpolate the same evaluations again,
/// and 10,000 budgets over even 10 decades of compute are 0.001 decades
/// apart, far finer than any sweep logs. Beyond it the table is noise and
/// memory (`--budgets 1000000000` would allocate every row before printing).
pub const MAX_ISOFLOP_BUDGETS: usize = 10_000;

impl IsoFlopOptions {
    /// Budgets and k within range; the errors name the option and the fix.
    pub fn validate(&self) -> Result<()> {
        if !(self.k.is_finite() && self.k > 0.0) {
            return Err(ScalingError::InvalidOption(format!(
                "k in C = k·N·D must be a positive number (6 by convention), got {}",
                self.k
            )));
        }
        match &self.budgets {
            Budgets::Count(n) if *n < 2 || *n > MAX_ISOFLOP_BUDGETS => Err(ScalingError::InvalidOption(format!(
                "{n} compute budgets: ask for between 2 and {MAX_ISOFLOP_BUDGETS} (12 is the default)"
            ))),
            Budgets::List(v) if v.len() > MAX_ISOFLOP_BUDGETS => Err(ScalingError::InvalidOption(format!(
                "{} compute budgets: give at most {MAX_ISOFLOP_BUDGETS}",
                v.len()
            ))),
            Budgets::List(v) => match v.iter().find(|c| !(c.is_finite() && **c > 0.0)) {
                Some(c) => Err(ScalingError::InvalidOption(format!(
                    "compute budget {c}: budgets are training compute in FLOPs and must be positive finite numbers (e.g. 1e17)"
                ))),
                None => Ok(()),
            },
            Budgets::Count(_) => Ok(()),
        }
    }
}

/// Run the IsoFLOP analysis on curves (non-diverged, with `meta.params`).
/// Negative or non-finite compute or tokens, non-positive losses and
/// non-positive parameter counts are errors naming the run.
pub fn isoflop(curves: &[Curve], opts: &IsoFlopOptions) -> Result<IsoFlopResult> {
    opts.validate()?;
    // group curves by size
    let mut by_size: BTreeMap<u64, (f64, Vec<&Curve>)> = BTreeMap::new();
    for c in curves.iter().filter(|c| !c.meta.diverged) {
        let n = c.meta.params.ok_or_else(|| {
            ScalingError::InvalidData(format!(
                "run `{}` has no parameter count; IsoFLOP needs N (map --params-col)",
                c.meta.run_id
            ))
        })?;
        if !(n.is_finite() && n > 0.0) {
            return Err(ScalingError::InvalidData(format!(
                "run `{}` has parameter count N = {n}; N must be a positive number (check the parameter column)",
                c.meta.run_id
            )));
        }
        for p in &c.points {
            let bad = if !(p.flops.is_finite() && p.flops >= 0.0) {
                Some(("compute", p.flops, "a finite number ≥ 0"))
            } else if !(p.tokens.is_nan() || p.tokens.is_finite() && p.tokens >= 0.0) {
                Some(("tokens", p.tokens, "a finite number ≥ 0 (or empty)"))
            } else if !(p.loss.is_finite() && p.loss > 0.0) {
                Some(("loss", p.loss, "a positive finite number (load with --nan-as-diverged to treat NaN/inf as divergence)"))
            } else {
                None
            };
            if let Some((what, v, want)) = bad {
                return Err(ScalingError::InvalidData(format!(
                    "run `{}`, step {}: {what} = {v}; it must be {want}",
                    c.meta.run_id, p.step
                )));
            }
        }
        by_size
            .entry(n.to_bits())
            .or_insert((n, Vec::new()))
            .1
            .push(c);
    }
    let mut sizes: Vec<(f64, Vec<&Curve>)> = by_size.into_values().collect();
    sizes.sort_by(|a, b| a.0.total_cmp(&b.0));
    if sizes.len() < 3 {
        return Err(ScalingError::InsufficientData(format!(
            "IsoFLOP needs at least 3 model sizes; got {}",
            sizes.len()
        )));
    }
    let budgets: Vec<f64> = match &opts.budgets {
        Budgets::List(v) => v.clone(),
        Budgets::Count(k) => {
            // compute range covered by >= 3 sizes
            let mut ranges: Vec<(f64, f64)> = sizes
                .iter()
                .filter_map(|(_, cs)| {
                    let lo = cs
                        .iter()
                        .flat_map(|c| c.points.iter())
                        .filter(|p| p.flops > 0.0)
                        .map(|p| p.flops)
                        .fold(f64::INFINITY, f64::min);
                    let hi = cs
                        .iter()
                        .flat_map(|c| c.points.iter())
                        .map(|p| p.flops)
                        .fold(0.0, f64::max);
                    (lo < hi).then_some((lo, hi))
                })
                .collect();
            ranges.sort_by(|a, b| a.0.total_cmp(&b.0));
            let covered = |c: f64| ranges.iter().filter(|r| r.0 <= c && c <= r.1).count() >= 3;
            let mut cands: Vec<f64> = ranges.iter().flat_map(|r| [r.0, r.1]).collect();
            cands.sort_by(f64::total_cmp);
            let lo = cands.iter().copied().find(|&c| covered(c));
            let hi = cands.iter().rev().copied().find(|&c| covered(c));
            match (lo, hi) {
                (Some(lo), Some(hi)) if hi > lo && *k >= 2 => (0..*k)
                    .map(|i| (lo.ln() + (hi.ln() - lo.ln()) * i as f64 / (*k - 1) as f64).exp())
                    .collect(),
                _ => {
                    return Err(ScalingError::InsufficientData(
                        "no compute range is covered by at least 3 model sizes".into(),
                    ))
                }
            }
        }
    };
    let mut out = Vec::new();
    for &c in &budgets {
        let mut row: Vec<(f64, f64, f64)> = Vec::new();
        for (n, cs) in &sizes {
            let best = cs
                .iter()
                .filter_map(|cv| interpolate_at(cv, c))
                .min_by(|a, b| a.0.total_cmp(&b.0));
            if let Some((l, t)) = best {
                row.push((*n, l, t));
            }
        }
        if row.len() < 3 {
            continue;
        }
        let (ib, _) = row
            .iter()
            .enumerate()
            .min_by(|a, b| a.1 .1.total_cmp(&b.1 .1))
            .unwrap();
        let interior = ib > 0 && ib + 1 < row.len();
        let tokens_or = |n: f64, t: f64| {
            if t.is_finite() && t > 0.0 {
                t
            } else {
                c / (opts.k * n)
            }
        };
        let (n_opt, d_opt, loss_opt) = if opts.parabola && interior {
            let (x0, x1, x2) = (row[ib - 1].0.ln(), row[ib].0.ln(), row[ib + 1].0.ln());
            let (y0, y1, y2) = (row[ib - 1].1, row[ib].1, row[ib + 1].1);
            // parabola through three points: vertex
            let d01 = (y1 - y0) / (x1 - x0);
            let d12 = (y2 - y1) / (x2 - x1);
            let a2 = (d12 - d01) / (x2 - x0);
            let b1 = d01 - a2 * (x0 + x1);
            let xv = if a2 > 0.0 {
                (-b1 / (2.0 * a2)).clamp(x0, x2)
            } else {
                x1
            };
            let yv = a2 * xv * xv + b1 * xv + (y0 - a2 * x0 * x0 - b1 * x0);
            // tokens: interpolate log D in log N between the bracketing sizes
            let (ia, ibb) = if xv <= x1 { (ib - 1, ib) } else { (ib, ib + 1) };
            let (xa, xb) = (row[ia].0.ln(), row[ibb].0.ln());
            let (da, db) = (
                tokens_or(row[ia].0, row[ia].2).ln(),
                tokens_or(row[ibb].0, row[ibb].2).ln(),
            );
            let tt = if xb > xa { (xv - xa) / (xb - xa) } else { 0.0 };
            (xv.exp(), (da + tt * (db - da)).exp(), yv)
        } else {
            (row[ib].0, tokens_or(row[ib].0, row[ib].2), row[ib].1)
        };
        out.push(IsoFlopBudget {
            compute: c,
            sizes: row,
            n_opt,
            d_opt,
            loss_opt,
            interior,
        });
    }
    let used: Vec<&IsoFlopBudget> = out.iter().filter(|b| b.interior).collect();
    if used.len() < 2 {
        return Err(ScalingError::InsufficientData(format!(
            "IsoFLOP found {} budgets whose optimum lies strictly inside the range of sizes; need at least 2 (add smaller/larger models or change the budgets)",
            used.len()
        )));
    }
    let cs: Vec<f64> = used.iter().map(|b| b.compute).collect();
    if cs.iter().all(|&c| c == cs[0]) {
        return Err(ScalingError::InsufficientData(format!(
            "the {} budgets with an interior optimum are all at C = {:e}; N*(C) and D*(C) need at least two different budgets",
            cs.len(),
            cs[0]
        )));
    }
    let ns: Vec<f64> = used.iter().map(|b| b.n_opt).collect();
    let ds: Vec<f64> = used.iter().map(|b| b.d_opt).collect();
    let (n_opt, d_opt) = (log_fit(&cs, &ns), log_fit(&cs, &ds));
    for (what, f) in [("N*(C)", n_opt), ("D*(C)", d_opt)] {
        if !(f.coef.is_finite() && f.coef > 0.0 && f.exponent.is_finite()) {
            return Err(ScalingError::FitFailed(format!(
                "{what} = {:e}·C^{} is not a usable power law (coefficient and exponent must be finite, the coefficient positive)",
                f.coef, f.exponent
            )));
        }
    }
    Ok(IsoFlopResult {
        n_opt,
        d_opt,
        fitted_budgets: used.len(),
        budgets: out,
    })
}
