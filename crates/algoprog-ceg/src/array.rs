//! ndarray entry points beside the slice and scalar APIs: CEG(C) over an
//! array of compute values. Thin wrappers over [`CegFunction::eval`] and
//! [`log_grid`], so the array and scalar paths give bit-identical values.

use ndarray::{Array1, ArrayView1};

use crate::error::{CegError, Result};
use crate::function::{log_grid, CegFunction};

/// CEG(C) at every compute value of `compute`. Where the reference can never
/// reach the new algorithm's loss at C ([`CegError::Unreachable`]) the entry
/// is NaN, as [`CegFunction::curve`] gives `None` there; any other error (a
/// compute value that is not positive and finite) is returned.
pub fn ceg_nd(f: &CegFunction, compute: ArrayView1<f64>) -> Result<Array1<f64>> {
    let mut out = Array1::zeros(compute.len());
    for (o, &c) in out.iter_mut().zip(compute.iter()) {
        *o = match f.eval(c) {
            Ok(v) => v,
            Err(CegError::Unreachable { .. }) => f64::NAN,
            Err(e) => return Err(e),
        };
    }
    Ok(out)
}

/// The local growth exponent d ln CEG / d ln C at every compute value
/// (NaN where the reference cannot reach the new loss).
pub fn local_exponent_nd(f: &CegFunction, compute: ArrayView1<f64>) -> Array1<f64> {
    compute.mapv(|c| f.local_exponent(c).unwrap_or(f64::NAN))
}

/// [`log_grid`] as an array: `n` log-spaced computes from `lo` to `hi` inclusive.
pub fn log_grid_nd(lo: f64, hi: f64, n: usize) -> Result<Array1<f64>> {
    Ok(Array1::from(log_grid(lo, hi, n)?))
}

#[cfg(test)]
mod tests {
    use algoprog_scaling::PowerLaw;
    use ndarray::{array, Array1};

    use super::*;

    #[test]
    fn array_and_scalar_paths_agree_bit_for_bit() {
        let f = CegFunction::new(
            PowerLaw::new(1.8, 120.0, 0.12),
            PowerLaw::new(1.8, 80.0, 0.13),
        )
        .unwrap();
        let grid = log_grid_nd(1e15, 1e21, 25).unwrap();
        assert_eq!(grid.to_vec(), log_grid(1e15, 1e21, 25).unwrap());
        let ceg = ceg_nd(&f, grid.view()).unwrap();
        let curve = f.curve(1e15, 1e21, 25).unwrap();
        for ((&got, (c, want)), &g) in ceg.iter().zip(&curve).zip(&grid) {
            assert_eq!(*c, g);
            assert_eq!(got, want.unwrap());
        }
        let slope = local_exponent_nd(&f, grid.view());
        for (&s, &c) in slope.iter().zip(&grid) {
            assert_eq!(s, f.local_exponent(c).unwrap());
        }
    }

    #[test]
    fn pure_power_laws_give_the_closed_form() {
        // E = 0 on both: CEG(C) = (A_r/A_n)^(1/γ_r)·C^(γ_n/γ_r − 1); with
        // equal exponents a constant (2)^(1/0.1) = 1024.
        let f = CegFunction::new(
            PowerLaw::new(0.0, 200.0, 0.1),
            PowerLaw::new(0.0, 100.0, 0.1),
        )
        .unwrap();
        let c = array![1e12, 1e16, 1e20, 1e24];
        let ceg = ceg_nd(&f, c.view()).unwrap();
        for &v in &ceg {
            assert!((v / 1024.0 - 1.0).abs() < 1e-9, "{v}");
        }
        let slope = local_exponent_nd(&f, c.view());
        assert!(slope.iter().all(|s| s.abs() < 1e-12), "{slope}");
    }

    #[test]
    fn unreachable_is_nan_and_bad_compute_is_an_error() {
        // new law falls below the reference's irreducible loss at large C
        let f =
            CegFunction::new(PowerLaw::new(2.0, 50.0, 0.1), PowerLaw::new(1.5, 50.0, 0.1)).unwrap();
        let c = array![1e10, 1e40];
        let ceg = ceg_nd(&f, c.view()).unwrap();
        assert!(ceg[0].is_finite() && ceg[0] > 0.0);
        assert!(ceg[1].is_nan());
        assert_eq!(f.curve(1e10, 1e40, 2).unwrap()[1].1, None);
        let bad = Array1::from(vec![1e15, -1.0]);
        assert!(matches!(
            ceg_nd(&f, bad.view()),
            Err(CegError::BadParameter { .. })
        ));
    }
}
