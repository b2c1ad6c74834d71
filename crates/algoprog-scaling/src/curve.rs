//! Training curves: the unit every analysis in algoprog starts from.
//!
//! A [`Curve`] is one training run's evaluation points (cumulative training
//! compute and validation loss, plus step and tokens) with the run's metadata.
//! Curves come from algoprog run records or from any framework's CSV logs.

use serde::{Deserialize, Serialize};

/// One evaluation of one run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Optimiser step at which the evaluation was taken.
    pub step: u64,
    /// Cumulative training tokens seen.
    pub tokens: f64,
    /// Cumulative training FLOPs (forward + backward).
    pub flops: f64,
    /// Validation loss (nats per token).
    pub loss: f64,
}

/// What is known about the run that produced a curve.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    /// Stable identifier of the run (hash of its resolved config for algoprog runs).
    pub run_id: String,
    /// Family (algorithm variant) the run belongs to, e.g. `modern`, `retro`, `lstm`.
    pub family: String,
    /// Model width d, when known.
    pub width: Option<usize>,
    /// Parameter count N used for scaling fits: the **total** parameter count
    /// (embedding included), as the papers fit on; a CSV gives whatever its
    /// parameter column holds.
    pub params: Option<f64>,
    /// Planned total training tokens D of the run, when known.
    pub token_budget: Option<f64>,
    /// Seed of the run.
    pub seed: Option<u64>,
    /// Peak learning rate.
    pub lr: Option<f64>,
    /// The run diverged (NaN/inf or exploding loss); analyses exclude it by default.
    pub diverged: bool,
}

/// A run's evaluation points, sorted by step, with its metadata.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    /// The run's metadata.
    pub meta: RunMeta,
    /// Evaluation points, sorted by step.
    pub points: Vec<Point>,
}

impl Curve {
    /// A curve from metadata and points (assumed sorted by step).
    pub fn new(meta: RunMeta, points: Vec<Point>) -> Self {
        Self { meta, points }
    }

    /// The lowest loss reached by the run, if it has any point.
    pub fn min_loss(&self) -> Option<f64> {
        self.points
            .iter()
            .map(|p| p.loss)
            .fold(None, |m, l| match m {
                None => Some(l),
                Some(m) => Some(if l < m { l } else { m }),
            })
    }

    /// The final point of the run.
    pub fn last(&self) -> Option<&Point> {
        self.points.last()
    }

    /// Intermediate-checkpoint fitting (Choshen et al. 2025): the curve without
    /// the leading `fraction` of training, i.e. only the points with
    /// step ≥ `fraction` × (the run's last logged step). `fraction` = 1/3 drops
    /// the first third of training steps, as section 2.3 of the paper did.
    /// Panics unless 0 ≤ `fraction` ≤ 1.
    pub fn drop_leading_fraction(&self, fraction: f64) -> Curve {
        assert!(
            (0.0..=1.0).contains(&fraction),
            "fraction must be within [0, 1], got {fraction}"
        );
        let last = self.points.last().map_or(0, |p| p.step) as f64;
        let cut = fraction * last;
        Curve {
            meta: self.meta.clone(),
            points: self
                .points
                .iter()
                .copied()
                .filter(|p| p.step as f64 >= cut)
                .collect(),
        }
    }
}

/// [`Curve::drop_leading_fraction`] applied to every curve.
pub fn drop_leading_fraction(curves: &[Curve], fraction: f64) -> Vec<Curve> {
    curves
        .iter()
        .map(|c| c.drop_leading_fraction(fraction))
        .collect()
}
