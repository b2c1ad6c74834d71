//! algoprog-scaling: compute-optimal frontiers and scaling-law fits on
//! training curves from any framework. No deep-learning framework needed.
//!
//! - [`array`]: ndarray entry points (`ArrayView1` in, `Array1`/`Array2` out)
//!   beside the slice APIs, bit-identical to them.
//! - [`io`]: load curves from CSV (any framework, with a [`ColumnMap`]) or
//!   from algoprog run records.
//! - [`frontier`]: the Pareto lower envelope of (compute, loss).
//! - [`powerlaw`]: L = E + A·C^(−γ) fits (E fixed or fitted; linear or log space).
//! - [`chinchilla`]: L(N, D) = E + A/N^α + B/D^β, Huber in log space, L-BFGS
//!   from the published grid of 4,500 starts, in parallel.
//! - [`isoflop`]: the IsoFLOP method (Porian et al. 2024).
//! - [`bootstrap`]: percentile confidence intervals by resampling points or runs.

// `!(x > 0.0)` is deliberate throughout: it also rejects NaN.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod array;
pub mod bootstrap;
pub mod chinchilla;
pub mod curve;
pub mod error;
pub mod frontier;
pub mod io;
pub mod isoflop;
pub mod law;
pub mod powerlaw;

pub use bootstrap::{
    bootstrap, bootstrap_chinchilla, bootstrap_chinchilla_from, bootstrap_frontier,
    bootstrap_power_law, percentile_interval, BootstrapOptions, BootstrapSamples,
    ChinchillaBootstrap, Interval, PowerLawBootstrap, RefitStarts, Resample,
};
pub use chinchilla::{
    fit_chinchilla, fit_from_starts, Allocation, ChinchillaData, ChinchillaFit, ChinchillaOptions,
    Pruning, RobustLoss, StartGrid, TokensSource,
};
pub use curve::{drop_leading_fraction, Curve, Point, RunMeta};
pub use error::{Result, ScalingError};
pub use frontier::{
    families, family_curves, fit_frontier, frontier, FrontierFit, FrontierOptions, FrontierPoint,
    RangeMode,
};
pub use io::{
    load_csv, load_csv_with, load_curves, load_run_record, load_run_records, ColumnMap,
    LoadOptions, LoadReport, NonFinitePolicy,
};
pub use isoflop::{isoflop, Budgets, ComputeScaling, IsoFlopBudget, IsoFlopOptions, IsoFlopResult};
pub use law::{ChinchillaLaw, PowerLaw};
pub use powerlaw::{fit_power_law, FitSpace, Irreducible, PowerLawFit, PowerLawOptions};
