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
//!
//! **Choosing L\*** ([`ThresholdSpec`], [`resolve_threshold`]). A threshold
//! must sit well below the early plateau that language-model curves show
//! (near the unigram entropy of the data, where a model has learnt token
//! frequencies only): a threshold at the plateau measures how fast a model
//! leaves it, not how much compute it needs to learn. The papers' 5.277 nats
//! lies about 2.3 nats below their runs' plateau near 7.6. The automatic
//! threshold is the lowest loss every compared run reaches, and it is
//! refused when it lies within a margin (default 0.5 nats) of the unigram
//! entropy or of any run's plateau ([`plateau`]).

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
            Crossing::BeforeFirstEval {
                first_compute,
                first_loss,
            } => {
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
            return Err(CegError::BadCompute {
                run_id: id.clone(),
                index: i,
                value: p.flops,
            });
        }
        if p.flops < prev {
            return Err(CegError::UnsortedCompute {
                run_id: id.clone(),
                index: i,
                prev,
                next: p.flops,
            });
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
    let &(i0, first) = pts.first().ok_or_else(|| CegError::EmptyCurve {
        run_id: curve.meta.run_id.clone(),
    })?;
    if first.loss < threshold {
        return Ok(Crossing::BeforeFirstEval {
            first_compute: first.flops,
            first_loss: first.loss,
        });
    }
    if first.loss == threshold {
        return Ok(Crossing::Reached {
            compute: first.flops,
            index: i0,
        });
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
    let min_loss = pts
        .iter()
        .map(|(_, p)| p.loss)
        .fold(f64::INFINITY, f64::min);
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
            .ok_or_else(|| CegError::EmptyCurve {
                run_id: c.meta.run_id.clone(),
            })?;
        best = Some(best.map_or(m, |b| b.max(m)));
    }
    best.ok_or_else(|| CegError::NoCurves {
        what: "the automatic threshold".into(),
    })
}

/// Default margin of the automatic threshold below the unigram entropy and
/// below every run's plateau, in nats.
pub const DEFAULT_AUTO_MARGIN: f64 = 0.5;
/// A plateau spans at least this factor of compute (one doubling).
pub const PLATEAU_MIN_SPAN: f64 = 2.0;
/// A plateau's losses lie within this band, in nats.
pub const PLATEAU_FLAT_TOL: f64 = 0.1;

/// How the loss threshold L* of a CEG comparison is chosen.
///
/// In settings files it is a number (`5.277`) or a string (`"auto"`,
/// `"auto:0.5"`, `"5.277"`); it is written back the same way.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ThresholdRepr", into = "ThresholdRepr")]
pub enum ThresholdSpec {
    /// A given L* (the papers: 5.277 nats on C4 with the GPT-2 tokenizer).
    Fixed(f64),
    /// The lowest loss every compared run reaches, refused within `margin`
    /// nats of the unigram entropy or of a run's plateau (module docs).
    Auto { margin: f64 },
}

impl Default for ThresholdSpec {
    /// `Auto` with the default margin of 0.5 nats.
    fn default() -> Self {
        ThresholdSpec::Auto {
            margin: DEFAULT_AUTO_MARGIN,
        }
    }
}

/// The settings-file form of a [`ThresholdSpec`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum ThresholdRepr {
    Number(f64),
    Text(String),
}

impl TryFrom<ThresholdRepr> for ThresholdSpec {
    type Error = CegError;
    fn try_from(r: ThresholdRepr) -> Result<Self> {
        match r {
            ThresholdRepr::Number(x) if x.is_finite() => Ok(ThresholdSpec::Fixed(x)),
            ThresholdRepr::Number(x) => Err(CegError::BadThreshold(x)),
            ThresholdRepr::Text(s) => ThresholdSpec::parse(&s),
        }
    }
}

impl From<ThresholdSpec> for ThresholdRepr {
    fn from(t: ThresholdSpec) -> Self {
        match t {
            ThresholdSpec::Fixed(x) => ThresholdRepr::Number(x),
            ThresholdSpec::Auto { margin } => ThresholdRepr::Text(format!("auto:{margin}")),
        }
    }
}

impl std::fmt::Display for ThresholdSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ThresholdSpec::Fixed(x) => write!(f, "{x}"),
            ThresholdSpec::Auto { margin } => write!(f, "auto:{margin}"),
        }
    }
}

impl std::str::FromStr for ThresholdSpec {
    type Err = CegError;
    fn from_str(s: &str) -> Result<Self> {
        ThresholdSpec::parse(s)
    }
}

impl ThresholdSpec {
    /// Parse `auto`, `auto:MARGIN` or a loss such as `5.277`.
    pub fn parse(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        if t == "auto" {
            return Ok(ThresholdSpec::default());
        }
        if let Some(m) = t.strip_prefix("auto:") {
            let margin: f64 = m.parse().map_err(|_| CegError::BadName {
                what: "threshold".into(),
                name: s.into(),
                expected: "a loss such as 5.277, `auto`, or `auto:MARGIN` with MARGIN in nats such as auto:0.5".into(),
            })?;
            if !(margin >= 0.0 && margin.is_finite()) {
                return Err(CegError::BadParameter {
                    name: "auto threshold margin".into(),
                    value: margin,
                    why: "must be a finite number of nats ≥ 0".into(),
                });
            }
            return Ok(ThresholdSpec::Auto { margin });
        }
        let v: f64 = t.parse().map_err(|_| CegError::BadName {
            what: "threshold".into(),
            name: s.into(),
            expected: "a loss such as 5.277, `auto`, or `auto:MARGIN`".into(),
        })?;
        if !v.is_finite() {
            return Err(CegError::BadThreshold(v));
        }
        Ok(ThresholdSpec::Fixed(v))
    }
}

/// The early flat segment of a training curve (see [`plateau`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plateau {
    pub run_id: String,
    /// Mean loss over the plateau's evaluations.
    pub level: f64,
    /// Compute of its first and last evaluation.
    pub start_compute: f64,
    pub end_compute: f64,
    /// Indices into `Curve::points` of its first and last evaluation.
    pub start_index: usize,
    pub end_index: usize,
    /// Whether the curve ever gets more than [`PLATEAU_FLAT_TOL`] below the plateau's lowest loss after it.
    pub left: bool,
}

/// The early plateau of a curve, if it has one.
///
/// Definition: among the usable evaluations (positive compute, finite loss),
/// a *flat window* is a run of consecutive evaluations i..=j whose compute
/// spans at least a factor [`PLATEAU_MIN_SPAN`] (C_j ≥ 2·C_i) and whose
/// losses all lie within a band of [`PLATEAU_FLAT_TOL`] nats
/// (max − min ≤ 0.1). The plateau is the first flat window, extended as far
/// right as the band allows, that *starts in the first half of the curve's
/// log-compute span* (ln C_i ≤ (ln C_first + ln C_last)/2): early in
/// training, so that the flattening of a converged curve at its end is not
/// taken for a plateau. Its level is the mean loss of its evaluations.
/// A curve that stops on its plateau has one that it never leaves
/// ([`Plateau::left`] false).
pub fn plateau(curve: &Curve) -> Result<Option<Plateau>> {
    let pts = usable_indexed(curve)?;
    if pts.len() < 2 {
        return Ok(None);
    }
    let x0 = pts[0].1.flops.ln();
    let x1 = pts[pts.len() - 1].1.flops.ln();
    let mid = 0.5 * (x0 + x1);
    let min_span = PLATEAU_MIN_SPAN.ln();
    for i in 0..pts.len() {
        if pts[i].1.flops.ln() > mid {
            break;
        }
        let (mut lo, mut hi) = (pts[i].1.loss, pts[i].1.loss);
        let mut j = i;
        while j + 1 < pts.len() {
            let l = pts[j + 1].1.loss;
            if l.max(hi) - l.min(lo) > PLATEAU_FLAT_TOL {
                break;
            }
            lo = lo.min(l);
            hi = hi.max(l);
            j += 1;
        }
        if j > i && pts[j].1.flops.ln() - pts[i].1.flops.ln() >= min_span - 1e-12 {
            let level = pts[i..=j].iter().map(|(_, p)| p.loss).sum::<f64>() / (j - i + 1) as f64;
            let left = pts[j + 1..]
                .iter()
                .any(|(_, p)| p.loss < lo - PLATEAU_FLAT_TOL);
            return Ok(Some(Plateau {
                run_id: curve.meta.run_id.clone(),
                level,
                start_compute: pts[i].1.flops,
                end_compute: pts[j].1.flops,
                start_index: pts[i].0,
                end_index: pts[j].0,
                left,
            }));
        }
    }
    Ok(None)
}

/// A resolved loss threshold and how it was chosen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResolvedThreshold {
    pub value: f64,
    /// Chosen automatically.
    pub auto: bool,
    /// Margin the automatic choice was checked with.
    pub margin: Option<f64>,
    /// The unigram entropy it was checked against, if given.
    pub unigram_entropy: Option<f64>,
    /// Plateaus of the compared runs.
    pub plateaus: Vec<Plateau>,
    /// Warnings about a fixed threshold that sits within the default margin of a plateau or of the unigram entropy.
    pub warnings: Vec<String>,
}

/// The highest threshold that keeps `margin` below the unigram entropy and
/// below every plateau, with what sets it.
fn ceiling(
    plateaus: &[Plateau],
    unigram_entropy: Option<f64>,
    margin: f64,
) -> Option<(f64, String)> {
    let mut best: Option<(f64, String)> =
        unigram_entropy.map(|h| (h - margin, format!("the unigram entropy {h:.4}")));
    for p in plateaus {
        let c = p.level - margin;
        if best.as_ref().is_none_or(|(b, _)| c < *b) {
            best = Some((
                c,
                format!("the plateau of run `{}` at {:.4}", p.run_id, p.level),
            ));
        }
    }
    best
}

/// Resolve a threshold spec on the compared `curves` (module docs).
///
/// `Auto { margin }`: L* = max over runs of the run's lowest loss (every run
/// reaches it); refused with [`CegError::ThresholdNearPlateau`] when L* is
/// above `unigram_entropy − margin` or above `level − margin` of any run's
/// plateau. The error names the runs whose lowest loss is above that
/// ceiling and says how to fix it. `Fixed(x)` is returned as given, with
/// warnings when it sits within [`DEFAULT_AUTO_MARGIN`] of the same marks.
pub fn resolve_threshold<'a>(
    spec: ThresholdSpec,
    curves: impl IntoIterator<Item = &'a Curve>,
    unigram_entropy: Option<f64>,
) -> Result<ResolvedThreshold> {
    let curves: Vec<&Curve> = curves.into_iter().collect();
    if curves.is_empty() {
        return Err(CegError::NoCurves {
            what: "the loss threshold".into(),
        });
    }
    if let Some(h) = unigram_entropy {
        if !(h > 0.0 && h.is_finite()) {
            return Err(CegError::BadParameter {
                name: "unigram entropy".into(),
                value: h,
                why: "must be positive and finite (nats per token)".into(),
            });
        }
    }
    let mut plateaus = Vec::new();
    for c in &curves {
        if let Some(p) = plateau(c)? {
            plateaus.push(p);
        }
    }
    match spec {
        ThresholdSpec::Fixed(x) => {
            if !x.is_finite() {
                return Err(CegError::BadThreshold(x));
            }
            let mut warnings = Vec::new();
            if let Some((ceil, what)) = ceiling(&plateaus, unigram_entropy, DEFAULT_AUTO_MARGIN) {
                if x > ceil {
                    warnings.push(format!(
                        "threshold {x} lies within {DEFAULT_AUTO_MARGIN} nats of {what}: the CEG measures how fast a model leaves the plateau"
                    ));
                }
            }
            Ok(ResolvedThreshold {
                value: x,
                auto: false,
                margin: None,
                unigram_entropy,
                plateaus,
                warnings,
            })
        }
        ThresholdSpec::Auto { margin } => {
            if !(margin >= 0.0 && margin.is_finite()) {
                return Err(CegError::BadParameter {
                    name: "auto threshold margin".into(),
                    value: margin,
                    why: "must be a finite number of nats ≥ 0".into(),
                });
            }
            let mut mins = Vec::with_capacity(curves.len());
            for c in &curves {
                let m = usable_points(c)?
                    .iter()
                    .map(|p| p.loss)
                    .fold(None, |m: Option<f64>, l| Some(m.map_or(l, |m| m.min(l))))
                    .ok_or_else(|| CegError::EmptyCurve {
                        run_id: c.meta.run_id.clone(),
                    })?;
                mins.push((c.meta.run_id.clone(), m));
            }
            let value = mins
                .iter()
                .map(|(_, m)| *m)
                .fold(f64::NEG_INFINITY, f64::max);
            if let Some((ceil, what)) = ceiling(&plateaus, unigram_entropy, margin) {
                if value > ceil {
                    let runs: Vec<String> = mins
                        .iter()
                        .filter(|(_, m)| *m > ceil)
                        .map(|(r, m)| format!("`{r}` (lowest loss {m:.4})"))
                        .collect();
                    return Err(CegError::ThresholdNearPlateau {
                        threshold: value,
                        margin,
                        what,
                        ceiling: ceil,
                        runs: runs.join(", "),
                    });
                }
            }
            Ok(ResolvedThreshold {
                value,
                auto: true,
                margin: Some(margin),
                unigram_entropy,
                plateaus,
                warnings: Vec::new(),
            })
        }
    }
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
        return Err(CegError::NoCurves {
            what: "the frontier crossing".into(),
        });
    }
    let xs: Vec<Crossing> = curves
        .iter()
        .map(|c| crossing(c, threshold))
        .collect::<Result<_>>()?;
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
        let meta = RunMeta {
            run_id: "r".into(),
            family: "f".into(),
            ..Default::default()
        };
        let points = pts
            .iter()
            .enumerate()
            .map(|(i, &(flops, loss))| Point {
                step: i as u64,
                tokens: i as f64,
                flops,
                loss,
            })
            .collect();
        Curve::new(meta, points)
    }

    #[test]
    fn interpolates_in_log_compute_between_bracketing_rows() {
        // Between (1e10, 6.0) and (1e12, 4.0): L* = 5.0 is half way in loss,
        // so half way in log-compute: 1e11 exactly (not a logged row).
        let c = curve(&[
            (0.0, 10.8),
            (1e9, 7.0),
            (1e10, 6.0),
            (1e12, 4.0),
            (1e13, 3.5),
        ]);
        let x = crossing(&c, 5.0).unwrap();
        let Crossing::Reached { compute, index } = x else {
            panic!("{x:?}")
        };
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
        let c = curve(&[
            (1e9, 7.0),
            (1e10, 6.0),
            (1e11, 4.0),
            (1e12, 5.5),
            (1e13, 5.2),
            (1e14, 4.2),
        ]);
        let x = crossing(&c, 5.0).unwrap();
        let Crossing::Reached { compute, index } = x else {
            panic!("{x:?}")
        };
        assert!(
            (compute / 10f64.powf(10.5) - 1.0).abs() < 1e-12,
            "{compute}"
        );
        assert_eq!(index, 2);
    }

    #[test]
    fn never_crossing_is_reported_with_its_minimum() {
        let c = curve(&[(1e9, 7.0), (1e10, 6.0), (1e11, 5.3), (1e12, 5.6)]);
        assert_eq!(
            crossing(&c, 5.0).unwrap(),
            Crossing::Never { min_loss: 5.3 }
        );
        assert_eq!(crossing(&c, 5.0).unwrap().compute(), None);
    }

    #[test]
    fn already_below_at_first_eval_is_censored_not_approximated() {
        let c = curve(&[(0.0, 10.0), (1e9, 4.0), (1e10, 3.0)]);
        assert_eq!(
            crossing(&c, 5.0).unwrap(),
            Crossing::BeforeFirstEval {
                first_compute: 1e9,
                first_loss: 4.0
            }
        );
    }

    #[test]
    fn bad_curves_are_rejected_with_the_run_named() {
        let c = curve(&[(1e10, 6.0), (1e9, 5.0)]);
        let e = crossing(&c, 5.5).unwrap_err();
        assert!(
            matches!(e, CegError::UnsortedCompute { index: 1, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("run `r`"));
        let c = curve(&[(f64::NAN, 6.0)]);
        assert!(matches!(
            crossing(&c, 5.5),
            Err(CegError::BadCompute { .. })
        ));
        let c = curve(&[(0.0, 6.0)]);
        assert!(matches!(
            crossing(&c, 5.5),
            Err(CegError::EmptyCurve { .. })
        ));
        assert!(matches!(
            crossing(&curve(&[(1.0, 2.0)]), f64::NAN),
            Err(CegError::BadThreshold(_))
        ));
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

    fn named(id: &str, pts: &[(f64, f64)]) -> Curve {
        let mut c = curve(pts);
        c.meta.run_id = id.into();
        c
    }

    /// Falls from 10.8 to a plateau at `level` over 1e9..1e11 FLOPs, then
    /// (when `deep`) descends to `level − 2.5` by 1e14.
    fn lm_curve(id: &str, level: f64, deep: bool) -> Curve {
        let mut p = vec![(1e8, 10.8), (3e8, 9.0)];
        for k in 0..=8 {
            let c = 1e9 * 10f64.powf(k as f64 * 0.25);
            p.push((c, level + 0.04 * ((k % 3) as f64 - 1.0)));
        }
        if deep {
            for k in 1..=12 {
                p.push((
                    1e11 * 10f64.powf(k as f64 * 0.25),
                    level - 2.5 * k as f64 / 12.0,
                ));
            }
        }
        named(id, &p)
    }

    #[test]
    fn plateau_is_the_early_flat_segment() {
        let c = lm_curve("a", 7.6, true);
        let p = plateau(&c).unwrap().unwrap();
        assert_eq!((p.start_index, p.end_index), (2, 10));
        assert!(
            (p.start_compute / 1e9 - 1.0).abs() < 1e-12
                && (p.end_compute / 1e11 - 1.0).abs() < 1e-12
        );
        let want = (0..=8)
            .map(|k| 7.6 + 0.04 * ((k % 3) as f64 - 1.0))
            .sum::<f64>()
            / 9.0;
        assert!((p.level - want).abs() < 1e-12, "{}", p.level);
        assert!(p.left);
        let stuck = plateau(&lm_curve("b", 7.6, false)).unwrap().unwrap();
        assert!(!stuck.left && stuck.end_index == 10);
        // A steadily falling curve that flattens only at its end has no plateau.
        let conv = named(
            "c",
            &[
                (1e9, 9.0),
                (1e10, 7.0),
                (1e11, 5.5),
                (1e12, 4.6),
                (1e13, 4.2),
                (2e13, 4.15),
                (4e13, 4.12),
            ],
        );
        assert_eq!(plateau(&conv).unwrap(), None);
    }

    #[test]
    fn auto_threshold_is_refused_for_runs_that_stop_at_the_plateau() {
        let good = lm_curve("modern", 7.6, true);
        let stuck = lm_curve("retro-short", 7.6, false);
        let e =
            resolve_threshold(ThresholdSpec::default(), [&good, &stuck], Some(7.62)).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, CegError::ThresholdNearPlateau { .. }), "{msg}");
        // The lowest ceiling is set by the plateau (7.6 − 0.5 < 7.62 − 0.5); only the run stuck on it is blamed.
        assert!(msg.contains("plateau of run `modern` at 7.6000"), "{msg}");
        assert!(
            msg.contains("runs that get no lower than 7.1000: `retro-short` (lowest loss 7.5600)."),
            "{msg}"
        );
        assert!(
            msg.contains("Train those runs longer")
                && msg.contains("fixed threshold at most 7.1000"),
            "{msg}"
        );
        // Without the unigram entropy the run's own plateau still refuses it.
        let e = resolve_threshold(ThresholdSpec::default(), [&good, &stuck], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("plateau of run"), "{e}");
        // The quick-report case: every run's best loss 5.2656 against a unigram entropy of 5.2814.
        let a = named(
            "a",
            &[(1e9, 8.0), (1e10, 6.0), (1e11, 5.30), (1e12, 5.2656)],
        );
        let b = named("b", &[(1e9, 8.0), (1e10, 6.0), (1e11, 5.20), (1e12, 4.50)]);
        let e = resolve_threshold(ThresholdSpec::Auto { margin: 0.5 }, [&a, &b], Some(5.2814))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`a` (lowest loss 5.2656)") && !e.contains("`b`"),
            "{e}"
        );
    }

    #[test]
    fn auto_threshold_is_accepted_well_below_the_plateau() {
        let a = lm_curve("a", 7.6, true);
        let b = lm_curve("b", 7.7, true);
        let r = resolve_threshold(ThresholdSpec::default(), [&a, &b], Some(7.65)).unwrap();
        // b's lowest loss is 7.7 − 2.5 = 5.2 > a's 5.1: every run reaches 5.2.
        assert!((r.value - 5.2).abs() < 1e-12 && r.auto && r.plateaus.len() == 2);
        assert!(r.warnings.is_empty());
        // The margin matters: 2.6 nats is too much to ask.
        assert!(resolve_threshold(ThresholdSpec::Auto { margin: 2.6 }, [&a, &b], None).is_err());
        // A fixed threshold is kept, with a warning when it sits on the plateau.
        let f = resolve_threshold(ThresholdSpec::Fixed(7.5), [&a, &b], Some(7.65)).unwrap();
        assert_eq!(f.value, 7.5);
        assert!(
            f.warnings.len() == 1 && f.warnings[0].contains("plateau"),
            "{:?}",
            f.warnings
        );
        assert!(
            resolve_threshold(ThresholdSpec::Fixed(5.277), [&a, &b], Some(7.65))
                .unwrap()
                .warnings
                .is_empty()
        );
    }

    #[test]
    fn threshold_specs_parse() {
        assert_eq!(
            ThresholdSpec::parse("auto").unwrap(),
            ThresholdSpec::Auto { margin: 0.5 }
        );
        assert_eq!(
            ThresholdSpec::parse("auto:0.8").unwrap(),
            ThresholdSpec::Auto { margin: 0.8 }
        );
        assert_eq!(
            ThresholdSpec::parse("5.277").unwrap(),
            ThresholdSpec::Fixed(5.277)
        );
        assert!(ThresholdSpec::parse("five")
            .unwrap_err()
            .to_string()
            .contains("auto:MARGIN"));
        assert!(ThresholdSpec::parse("auto:-1").is_err());
        assert!(ThresholdSpec::parse("nan").is_err());
        // Settings files: a number or a string, written back the same way.
        let t: ThresholdSpec = serde_json::from_str("5.277").unwrap();
        assert_eq!(t, ThresholdSpec::Fixed(5.277));
        let t: ThresholdSpec = serde_json::from_str("\"auto\"").unwrap();
        assert_eq!(t, ThresholdSpec::Auto { margin: 0.5 });
        assert_eq!(
            serde_json::to_string(&ThresholdSpec::Auto { margin: 0.8 }).unwrap(),
            "\"auto:0.8\""
        );
        let back: ThresholdSpec =
            serde_json::from_str(&serde_json::to_string(&ThresholdSpec::Fixed(5.3)).unwrap())
                .unwrap();
        assert_eq!(back, ThresholdSpec::Fixed(5.3));
        let e = serde_json::from_str::<ThresholdSpec>("\"automatic\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("automatic") && e.contains("auto:MARGIN"), "{e}");
        assert_eq!(
            "auto:0.25".parse::<ThresholdSpec>().unwrap().to_string(),
            "auto:0.25"
        );
    }
}
