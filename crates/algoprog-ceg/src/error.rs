//! Errors of the CEG analyses. Each message names the offending input and
//! says how to fix it.

use thiserror::Error;

/// Everything that can go wrong turning curves and fits into CEG numbers.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum CegError {
    /// A curve's compute column goes backwards, so "first crossing" is undefined.
    #[error(
        "run `{run_id}`: compute decreases from {prev:e} to {next:e} FLOPs at evaluation {index}; \
         sort the curve by step and make sure the compute column is cumulative"
    )]
    UnsortedCompute {
        run_id: String,
        index: usize,
        prev: f64,
        next: f64,
    },

    /// A compute value is NaN, infinite or negative.
    #[error(
        "run `{run_id}`: compute at evaluation {index} is {value}; every evaluation needs a finite, non-negative cumulative FLOP count"
    )]
    BadCompute {
        run_id: String,
        index: usize,
        value: f64,
    },

    /// A loss threshold that is not a finite number.
    #[error("loss threshold {0} is not a finite number; pass a threshold such as 5.3 or use the automatic threshold")]
    BadThreshold(f64),

    /// The automatic threshold lies too close to the unigram entropy or a run's plateau.
    #[error(
        "the automatic loss threshold {threshold:.4} (the lowest loss every compared run reaches) lies within {margin} nats of {what}, \
         so a CEG there would only measure how fast a model leaves the plateau; runs that get no lower than {ceiling:.4}: {runs}. \
         Train those runs longer, leave them out of the comparison, or pass a fixed threshold at most {ceiling:.4}"
    )]
    ThresholdNearPlateau {
        threshold: f64,
        margin: f64,
        what: String,
        ceiling: f64,
        runs: String,
    },

    /// No curves were given where some are required.
    #[error("no curves for {what}; check the input files and the family/column mapping")]
    NoCurves { what: String },

    /// A named family (variant) has no runs.
    #[error("family `{family}` has no runs; the families present are: {present}")]
    UnknownFamily { family: String, present: String },

    /// A curve has no evaluation with positive compute and finite loss.
    #[error(
        "run `{run_id}` has no evaluation with positive compute and finite loss; it cannot be placed on a log-compute axis"
    )]
    EmptyCurve { run_id: String },

    /// A power law that cannot be inverted (non-positive amplitude or exponent).
    #[error(
        "{which} law L(C) = {e} + {a}·C^-{gamma} is degenerate; amplitude and exponent must be positive (refit the frontier)"
    )]
    DegenerateLaw {
        which: String,
        e: f64,
        a: f64,
        gamma: f64,
    },

    /// The loss asked for lies at or below a law's irreducible loss.
    #[error(
        "{which} law never reaches loss {loss} (its irreducible loss is {e}); \
         choose a higher threshold or a smaller compute"
    )]
    Unreachable { which: String, loss: f64, e: f64 },

    /// A compute range that is empty, reversed or non-positive.
    #[error("compute range [{lo:e}, {hi:e}] is invalid; both ends must be positive and lo < hi")]
    BadRange { lo: f64, hi: f64 },

    /// A parameter outside its domain.
    #[error("{name} = {value} is invalid: {why}")]
    BadParameter {
        name: String,
        value: f64,
        why: String,
    },

    /// Logs of CEGs sum to zero, so shares of the total are undefined.
    #[error("the innovations' log CEGs sum to zero at {compute:e} FLOPs, so shares of the total gain are undefined")]
    ZeroTotalGain { compute: f64 },

    /// A name (of a rule, mode, ...) that is not one of the known ones.
    #[error("unknown {what} `{name}`; expected one of: {expected}")]
    BadName {
        what: String,
        name: String,
        expected: String,
    },

    /// A timeline that cannot be evaluated.
    #[error("timeline: {0}")]
    BadTimeline(String),

    /// A bisection that could not bracket the answer.
    #[error("could not find the compute at which the {which} path reaches loss {loss}: {why}")]
    NoSolution {
        which: String,
        loss: f64,
        why: String,
    },
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, CegError>;
