//! Small statistics used by the CEG analyses: geometric means, percentile
//! intervals, seed resampling and an ordinary least-squares line.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Geometric mean exp(mean ln xᵢ) of positive values; `None` if empty.
pub fn geometric_mean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    Some((xs.iter().map(|x| x.ln()).sum::<f64>() / xs.len() as f64).exp())
}

/// Arithmetic mean of a slice; `None` if empty.
pub fn mean(xs: &[f64]) -> Option<f64> {
    if xs.is_empty() {
        None
    } else {
        Some(xs.iter().sum::<f64>() / xs.len() as f64)
    }
}

/// A two-sided percentile interval [lo, hi] at confidence `level`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub lo: f64,
    pub hi: f64,
    /// Confidence level, e.g. 0.9 for the 5th–95th percentiles.
    pub level: f64,
}

/// Percentile of sorted data with linear interpolation between order
/// statistics (position q·(n−1)).
pub fn percentile_sorted(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    assert!(n > 0, "percentile of an empty sample");
    let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
    let i = pos.floor() as usize;
    let f = pos - i as f64;
    if i + 1 < n {
        sorted[i] * (1.0 - f) + sorted[i + 1] * f
    } else {
        sorted[n - 1]
    }
}

/// Percentile interval of a sample at `level` (the (1−level)/2 and
/// (1+level)/2 percentiles). Non-finite values are dropped first.
pub fn percentile_interval(sample: &[f64], level: f64) -> Option<Interval> {
    let mut s: Vec<f64> = sample.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return None;
    }
    s.sort_by(f64::total_cmp);
    let a = (1.0 - level) / 2.0;
    Some(Interval {
        lo: percentile_sorted(&s, a),
        hi: percentile_sorted(&s, 1.0 - a),
        level,
    })
}

/// One bootstrap resample (with replacement, same size) of `xs`.
pub fn resample(xs: &[f64], rng: &mut ChaCha8Rng) -> Vec<f64> {
    (0..xs.len())
        .map(|_| xs[rng.random_range(0..xs.len())])
        .collect()
}

/// Ordinary least squares y = intercept + slope·x. Returns (intercept, slope);
/// `None` with fewer than two distinct x.
pub fn linear_fit(xs: &[f64], ys: &[f64]) -> Option<(f64, f64)> {
    let n = xs.len();
    if n < 2 || ys.len() != n {
        return None;
    }
    let mx = xs.iter().sum::<f64>() / n as f64;
    let my = ys.iter().sum::<f64>() / n as f64;
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let slope = sxy / sxx;
    Some((my - slope * mx, slope))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn geometric_mean_of_powers_of_ten() {
        let g = geometric_mean(&[1e10, 1e12, 1e14]).unwrap();
        assert!((g / 1e12 - 1.0).abs() < 1e-12);
        assert_eq!(geometric_mean(&[]), None);
    }

    #[test]
    fn percentiles_interpolate_order_statistics() {
        let xs: Vec<f64> = (0..=100).map(f64::from).collect();
        let iv = percentile_interval(&xs, 0.9).unwrap();
        assert!((iv.lo - 5.0).abs() < 1e-12 && (iv.hi - 95.0).abs() < 1e-12);
        assert_eq!(percentile_sorted(&[1.0, 3.0], 0.25), 1.5);
    }

    #[test]
    fn least_squares_recovers_a_line() {
        let xs = [0.0, 1.0, 2.0, 3.0];
        let ys: Vec<f64> = xs.iter().map(|x| 2.0 - 0.5 * x).collect();
        let (a, b) = linear_fit(&xs, &ys).unwrap();
        assert!((a - 2.0).abs() < 1e-12 && (b + 0.5).abs() < 1e-12);
        assert_eq!(linear_fit(&[1.0, 1.0], &[0.0, 1.0]), None);
    }

    #[test]
    fn resample_draws_only_from_the_sample() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let xs = [1.0, 2.0, 3.0];
        let r = resample(&xs, &mut rng);
        assert_eq!(r.len(), 3);
        assert!(r.iter().all(|x| xs.contains(x)));
    }
}
