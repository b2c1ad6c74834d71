//! algoprog-ceg: compute-equivalent gains (CEG) from training curves and
//! fitted scaling laws. No deep-learning framework needed.
//!
//! - [`array`]: CEG(C) over an ndarray of compute values, beside the scalar API.
//! - [`threshold`]: where a curve first reaches a loss threshold L*,
//!   interpolated linearly in log-compute; the automatic threshold.
//! - [`multiplier`]: CEG multipliers at L* (geometric mean over seeds,
//!   bootstrap intervals), frontier- and envelope-based variants.
//! - [`function`]: CEG(C) = C_ref(L_new(C)) / C between two fitted frontiers,
//!   extrapolation to a target compute with its assumptions.
//! - [`combine`]: measured CEG of a combined change against the product of
//!   single-change CEGs (interaction factor).
//! - [`kaplan`]: loss along Kaplan / Chinchilla / D ∝ N^p allocation paths
//!   under L(N, D), γ(p) = min(α, pβ)/(1+p), CEG of optimal over Kaplan.
//! - [`decompose`]: decomposition of progress at a target year and the
//!   reference dependence of measured progress.
//! - [`stats`]: geometric means, percentile intervals, least squares.

// `!(x > 0.0)` is deliberate throughout: it also rejects NaN.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod array;
pub mod combine;
pub mod decompose;
pub mod error;
pub mod function;
pub mod kaplan;
pub mod multiplier;
pub mod stats;
pub mod threshold;

pub use combine::{combination_test, combine_multipliers, CombinationReport};
pub use decompose::{
    decompose, paper_references, reference_dependence, reference_growth, ComputeTrend,
    Decomposition, Gain, Innovation, Normalisation, ReferenceDependence, Source, Timeline,
};
pub use error::{CegError, Result};
pub use function::{CegFunction, Extrapolation, DEFAULT_TARGET_COMPUTE};
pub use kaplan::{
    allocation_ceg, compare_allocations, gamma_of_path, gamma_star, optimal_p,
    rebalancing_closed_form, Allocation, KaplanReport, KaplanRule,
};
pub use multiplier::{
    ceg_multipliers, frontier_ceg, frontier_multipliers, Direction, FrontierCegAt,
    MultiplierOptions, MultiplierReport, Threshold,
};
pub use threshold::{
    auto_threshold, crossing, plateau, resolve_threshold, Crossing, Plateau, ResolvedThreshold,
    ThresholdSpec, DEFAULT_AUTO_MARGIN,
};
