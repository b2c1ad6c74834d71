//! algoprog-ceg
