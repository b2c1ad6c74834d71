//! algoprog-train
