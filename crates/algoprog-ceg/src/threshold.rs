//! Where a training curve first reaches a loss threshold L*.
//!
//! The crossing is interpolated linearly in log-compute between the two
//! evaluations that bracket it, never snapped to the nearest logged row:
//! if evaluation i−1 has loss l₀ > L* at compute C₀ and evaluation i has
//! l₁ ≤ L* at C₁, then with t = (l₀ − L*)/(l₀ − l₁)
//!
//! ```text
//! ln C* = ln C₀ + t · (ln C₁ − ln C₀).
//! ```
//!
//! Only the *first* crossing counts: a curve that dips below L*, rises and
//! dips again is credited with the first dip. Evaluations with zero compute
//! (the step-0 evaluation) have no place on a log axis and are skipped, as are
//! evaluations with a non-finite loss (a diverged run never reaches L* after
//! it diverges).

use crate::error::{CegError, Result};
use algoprog_scaling::{Curve, Point};
use serde::{Deserialize, Serialize};

/// Outcome of looking for the first crossing of L* on one curve.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Crossing {
    /// The curve first reaches L* at `compute` FLOPs, interpolated between
    /// evaluation `index` (an index into `Curve::points`, the first at or
    /// below L*) and the usable evaluation before it (or exactly at
    /// evaluation `index` when its loss equals L*).
    Reached { compute: f64, index: usize },
    /// The first usable evaluation is already below L*: the crossing happened
    /// at or before `first_compute` and is not measured (censored).
    BeforeFirstEval { first_compute: f64, first_loss: f64 },
    /// The curve never reaches L*; `min_loss` is the lowest loss it logged.
    Never { min_loss: f64 },
}

impl Crossing {
    /// The interpolated crossing compute, if the crossing was measured.
    pub fn compute(&self) -> Option<f64> {
        match *self {
            Crossing::Reached { compute, .. } => Some(compute),
            _ => None,
        }
    }

    /// A short human-readable description (for tables).
    pub fn describe(&self) -> String {
        match *self {
            Crossing::Reached { compute, .. } => format!("{compute:.4e}"),
            Crossing::BeforeFirstEval { first_compute, first_loss } => {
                format!("below L* already at first eval ({first_loss:.4} at {first_compute:.3e})")
            }
            Crossing::Never { min_loss } => format!("never reached (min loss {min_loss:.4})"),
        }
    }
}

/// The evaluations of `curve` usable on a log-compute axis (positive compute,
/// finite loss), after checking that compute is finite, non-negative and
/// non-decreasing.
pub fn usable_points(curve: &Curve) -> Result<Vec<Point>> {
    Ok(usable_indexed(curve)?.into_iter().map(|(_, p)| p).collect())
}

fn usable_indexed(curve: &Curve) -> Result<Vec<(usize, Point)>> {
    let id = &curve.meta.run_id;
    let mut prev = f64::NEG_INFINITY;
    let mut out = Vec::with_capacity(curve.points.len());
    for (i, p) in curve.points.iter().enumerate() {
        if !p.flops.is_finite() || p.flops < 0.0 {
            return Err(CegError::BadCompute { run_id: id.clone(), index: i, value: p.flops });
        }
        if p.flops < prev {
            return Err(CegError::UnsortedCompute { run_id: id.clone(), index: i, prev, next: p.flops });
        }
        prev = p.flops;
        if p.flops > 0.0 && p.loss.is_finite() {
            out.push((i, *p));
        }
    }
    Ok(out)
}

/// First crossing of `threshold` by `curve`, interpolated linearly in
/// log-compute between the bracketing evaluations (see the module docs).
pub fn crossing(curve: &Curve, threshold: f64) -> Result<Crossing> {
    if !threshold.is_finite() {
        return Err(CegError::BadThreshold(threshold));
    }
    let pts = usable_indexed(curve)?;
    let &(i0, first) = pts.first().ok_or_else(|| CegError::EmptyCurve { run_id: curve.meta.run_id.clone() })?;
    if first.loss < threshold {
        return Ok(Crossing::BeforeFirstEval { first_compute: first.flops, first_loss: first.loss });
    }
    if first.loss == threshold {
        return Ok(Crossing::Reached { compute: first.flops, index: i0 });
    }
    for w in pts.windows(2) {
        let ((_, p0), (i, p1)) = (w[0], w[1]);
        if p1.loss <= threshold {
            // p0.loss > threshold here: it is the previous point, which did not cross.
            let t = (p0.loss - threshold) / (p0.loss - p1.loss);
            let ln_c = p0.flops.ln() + t * (p1.flops.ln() - p0.flops.ln());
            let compute = if t >= 1.0 { p1.flops } else { ln_c.exp() };
            return Ok(Crossing::Reached { compute, index: i });
        }
    }
    let min_loss = pts.iter().map(|(_, p)| p.loss).fold(f64::INFINITY, f64::min);
    Ok(Crossing::Never { min_loss })
}

/// The automatic threshold: the lowest loss reached by *every* compared run,
/// L* = max over runs of (min loss of the run). Every run reaches it, the
/// worst one exactly at its best evaluation.
pub fn auto_threshold<'a>(curves: impl IntoIterator<Item = &'a Curve>) -> Result<f64> {
    let mut best: Option<f64> = None;
    for c in curves {
        let pts = usable_points(c)?;
        let m = pts
            .iter()
            .map(|p| p.loss)
            .fold(None, |m: Option<f64>, l| Some(m.map_or(l, |m| m.min(l))))
            .ok_or_else(|| CegError::EmptyCurve { run_id: c.meta.run_id.clone() })?;
        best = Some(best.map_or(m, |b| b.max(m)));
    }
    best.ok_or_else(|| CegError::NoCurves { what: "the automatic threshold".into() })
}

/// First crossing of `threshold` by the empirical compute frontier of a set
/// of runs (their lower envelope in (compute, loss)). Because the envelope at
/// compute C is the minimum over runs of each run's loss, it first reaches L*
/// at the earliest of the runs' own crossings: C_env(L*) = min_r C_r(L*).
/// Returns the index of the run that gets there first with its crossing. If a
/// run is already below L* at its first evaluation and that evaluation is no
/// later than the earliest measured crossing, the envelope crossing is
/// censored and that run's [`Crossing::BeforeFirstEval`] is returned.
pub fn envelope_crossing(curves: &[Curve], threshold: f64) -> Result<(usize, Crossing)> {
    if curves.is_empty() {
        return Err(CegError::NoCurves { what: "the frontier crossing".into() });
    }
    let xs: Vec<Crossing> = curves.iter().map(|c| crossing(c, threshold)).collect::<Result<_>>()?;
    let earliest = |f: &dyn Fn(&Crossing) -> Option<f64>| {
        xs.iter()
            .enumerate()
            .filter_map(|(i, x)| f(x).map(|c| (i, c)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
    };
    let reached = earliest(&|x| x.compute());
    let censored = earliest(&|x| match *x {
        Crossing::BeforeFirstEval { first_compute, .. } => Some(first_compute),
        _ => None,
    });
    match (reached, censored) {
        (Some((i, c)), Some((j, f))) => Ok(if f <= c { (j, xs[j]) } else { (i, xs[i]) }),
        (Some((i, _)), None) => Ok((i, xs[i])),
        (None, Some((j, _))) => Ok((j, xs[j])),
        (None, None) => {
            let (i, m) = xs
                .iter()
                .enumerate()
                .filter_map(|(i, x)| match *x {
                    Crossing::Never { min_loss } => Some((i, min_loss)),
                    _ => None,
                })
                .min_by(|a, b| a.1.total_cmp(&b.1))
                .expect("every crossing is Never here");
            Ok((i, Crossing::Never { min_loss: m }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use algoprog_scaling::RunMeta;

    fn curve(pts: &[(f64, f64)]) -> Curve {
        let meta = RunMeta { run_id: "r".into(), family: "f".into(), ..Default::default() };
        let points = pts
            .iter()
            .enumerate()
            .map(|(i, &(flops, loss))| Point { step: i as u64, tokens: i as f64, flops, loss })
            .collect();
        Curve::new(meta, points)
    }

    #[test]
    fn interpolates_in_log_compute_between_bracketing_rows() {
        // Between (1e10, 6.0) and (1e12, 4.0): L* = 5.0 is half way in loss,
        // so half way in log-compute: 1e11 exactly (not a logged row).
        let c = curve(&[(0.0, 10.8), (1e9, 7.0), (1e10, 6.0), (1e12, 4.0), (1e13, 3.5)]);
        let x = crossing(&c, 5.0).unwrap();
        let Crossing::Reached { compute, index } = x else { panic!("{x:?}") };
        assert!((compute / 1e11 - 1.0).abs() < 1e-12, "{compute}");
        assert_eq!(index, 3);
        // A quarter of the way: ln C = ln 1e10 + 0.25·ln 100 → 10^10.5.
        let x = crossing(&c, 5.5).unwrap().compute().unwrap();
        assert!((x / 10f64.powf(10.5) - 1.0).abs() < 1e-12, "{x}");
        // Exactly on a logged row.
        assert_eq!(crossing(&c, 4.0).unwrap().compute(), Some(1e12));
    }

    #[test]
    fn first_crossing_counts_when_curve_crosses_rises_and_crosses_again() {
        // Crosses 5.0 between 1e10 and 1e11 (t = 0.5 → 10^10.5), rises to 5.5
        // and crosses again between 1e13 and 1e14.
        let c = curve(&[(1e9, 7.0), (1e10, 6.0), (1e11, 4.0), (1e12, 5.5), (1e13, 5.2), (1e14, 4.2)]);
        let x = crossing(&c, 5.0).unwrap();
        let Crossing::Reached { compute, index } = x else { panic!("{x:?}") };
        assert!((compute / 10f64.powf(10.5) - 1.0).abs() < 1e-12, "{compute}");
        assert_eq!(index, 2);
    }

    #[test]
    fn never_crossing_is_reported_with_its_minimum() {
        let c = curve(&[(1e9, 7.0), (1e10, 6.0), (1e11, 5.3), (1e12, 5.6)]);
        assert_eq!(crossing(&c, 5.0).unwrap(), Crossing::Never { min_loss: 5.3 });
        assert_eq!(crossing(&c, 5.0).unwrap().compute(), None);
    }

    #[test]
    fn already_below_at_first_eval_is_censored_not_approximated() {
        let c = curve(&[(0.0, 10.0), (1e9, 4.0), (1e10, 3.0)]);
        assert_eq!(
            crossing(&c, 5.0).unwrap(),
            Crossing::BeforeFirstEval { first_compute: 1e9, first_loss: 4.0 }
        );
    }

    #[test]
    fn bad_curves_are_rejected_with_the_run_named() {
        let c = curve(&[(1e10, 6.0), (1e9, 5.0)]);
        let e = crossing(&c, 5.5).unwrap_err();
        assert!(matches!(e, CegError::UnsortedCompute { index: 1, .. }), "{e}");
        assert!(e.to_string().contains("run `r`"));
        let c = curve(&[(f64::NAN, 6.0)]);
        assert!(matches!(crossing(&c, 5.5), Err(CegError::BadCompute { .. })));
        let c = curve(&[(0.0, 6.0)]);
        assert!(matches!(crossing(&c, 5.5), Err(CegError::EmptyCurve { .. })));
        assert!(matches!(crossing(&curve(&[(1.0, 2.0)]), f64::NAN), Err(CegError::BadThreshold(_))));
    }

    #[test]
    fn auto_threshold_is_the_worst_runs_best_loss_and_everyone_reaches_it() {
        let a = curve(&[(1e9, 7.0), (1e10, 5.0), (1e11, 4.0)]);
        let b = curve(&[(1e9, 7.5), (1e10, 5.5), (1e11, 4.6), (1e12, 4.8)]);
        let t = auto_threshold([&a, &b]).unwrap();
        assert_eq!(t, 4.6);
        // b reaches it exactly at its best row; a by interpolation: t = 0.4 → 10^10.4.
        assert_eq!(crossing(&b, t).unwrap().compute(), Some(1e11));
        let ca = crossing(&a, t).unwrap().compute().unwrap();
        assert!((ca / 10f64.powf(10.4) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn envelope_crossing_is_the_earliest_run_crossing() {
        let a = curve(&[(1e9, 7.0), (1e10, 6.0), (1e12, 4.0)]); // crosses 5 at 1e11
        let b = curve(&[(1e9, 6.0), (1e11, 4.0)]); // crosses 5 at 1e10
        let c = curve(&[(1e9, 9.0), (1e10, 8.0)]); // never
        let (i, x) = envelope_crossing(&[a, b, c], 5.0).unwrap();
        assert_eq!(i, 1);
        assert!((x.compute().unwrap() / 1e10 - 1.0).abs() < 1e-12);
    }
}
