//! algoprog-data
