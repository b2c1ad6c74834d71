//! algoprog-nn
