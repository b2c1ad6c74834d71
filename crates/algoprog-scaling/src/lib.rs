//! algoprog-scaling: compute-optimal frontiers and scaling-law fits on
//! training curves from any framework. No deep-learning framework needed.

pub mod curve;
pub mod law;

pub use curve::{Curve, Point, RunMeta};
pub use law::{ChinchillaLaw, PowerLaw};
