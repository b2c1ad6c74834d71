//! Figures of compute-equivalent gains (owned by the CEG work).
