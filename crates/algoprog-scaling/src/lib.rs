//! algoprog-scaling: compute-optimal frontiers and scaling-law fits on
//! training curves from any framework. No deep-learning framework needed.
//!
//! - [`io`]: load curves from CSV (any framework, with a [`ColumnMap`]) or
//!   from algoprog run records.
//! - [`frontier`]: the Pareto lower envelope of (compute, loss).
//! - [`powerlaw`]: L = E + A·C^(−γ) fits (E fixed or fitted; linear or log space).
//! - [`chinchilla`]: L(N, D) = E + A/N^α + B/D^β, Huber in log space, L-BFGS
//!   from the published grid of 4,500 starts, in parallel.
//! - [`isoflop`]: the IsoFLOP method (Porian et al. 2024).
//! - [`bootstrap`]: percentile confidence intervals by resampling points or runs.

pub mod curve;
pub mod error;
pub mod io;
pub mod law;

pub use curve::{Curve, Point, RunMeta};
pub use error::{Result, ScalingError};
pub use io::{load_csv, load_csv_with, load_curves, load_run_record, load_run_records, ColumnMap, LoadOptions, LoadReport, NonFinitePolicy};
pub use law::{ChinchillaLaw, PowerLaw};
