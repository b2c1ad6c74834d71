//! Helpers shared by this crate's unit tests (fused op vs composite twin).

use candle_core::{Device, Result, Tensor};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

/// An f32 tensor of `shape` with N(mean, std²) entries from a seeded ChaCha8.
pub fn randn_mean(shape: &[usize], mean: f64, std: f64, seed: u64) -> Result<Tensor> {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n = Normal::new(mean, std).expect("finite std");
    let v: Vec<f32> = (0..shape.iter().product::<usize>())
        .map(|_| n.sample(&mut r) as f32)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu)
}

/// [`randn_mean`] with mean 0.
pub fn randn(shape: &[usize], std: f64, seed: u64) -> Result<Tensor> {
    randn_mean(shape, 0.0, std, seed)
}

/// max |a − b|/(|b| + 1): relative for large values, absolute below 1; NaN
/// (or infinite) when any element of either side is not finite, so that a
/// NaN can never pass a `< tol` check (`f64::max` alone would skip it).
pub fn max_err(a: &Tensor, b: &Tensor) -> Result<f64> {
    let a: Vec<f32> = a.flatten_all()?.to_vec1()?;
    let b: Vec<f32> = b.flatten_all()?.to_vec1()?;
    assert_eq!(a.len(), b.len());
    if a.iter().chain(&b).any(|v| !v.is_finite()) {
        return Ok(f64::NAN);
    }
    Ok(a.iter()
        .zip(&b)
        .map(|(&x, &y)| (x as f64 - y as f64).abs() / (y.abs() as f64 + 1.0))
        .fold(0.0, f64::max))
}

/// max(m, e), but NaN when either is NaN (`f64::max` skips a NaN): the fold
/// of the tests' error measures, so that a NaN never passes a `< tol` check.
pub fn max_or_nan(m: f64, e: f64) -> f64 {
    if m.is_nan() || e.is_nan() {
        f64::NAN
    } else {
        m.max(e)
    }
}
