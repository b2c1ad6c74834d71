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
    /// Parameter count N used for scaling fits (non-embedding unless stated by the source).
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
    pub meta: RunMeta,
    pub points: Vec<Point>,
}

impl Curve {
    pub fn new(meta: RunMeta, points: Vec<Point>) -> Self {
        Self { meta, points }
    }

    /// The lowest loss reached by the run, if it has any point.
    pub fn min_loss(&self) -> Option<f64> {
        self.points.iter().map(|p| p.loss).fold(None, |m, l| match m {
            None => Some(l),
            Some(m) => Some(if l < m { l } else { m }),
        })
    }

    /// The final point of the run.
    pub fn last(&self) -> Option<&Point> {
        self.points.last()
    }
}
