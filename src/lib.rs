//! algoprog: one import for the whole toolkit. Each part is also its own crate.

pub use algoprog_ceg as ceg;
pub use algoprog_data as data;
pub use algoprog_models as models;
pub use algoprog_nn as nn;
pub use algoprog_plot as plot;
pub use algoprog_scaling as scaling;
pub use algoprog_train as train;
