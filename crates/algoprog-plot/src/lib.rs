//! algoprog-plot: figures for algoprog results, as SVG and PNG.

pub mod ceg;
pub mod charts;
