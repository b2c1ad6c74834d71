//! Generic charts: log-log scatter/line charts of curves, frontiers and fits.
