//! ndarray entry points beside the slice APIs.
//!
//! Every function here is a thin wrapper: it borrows the array's data (or
//! copies it once when the view is not contiguous, e.g. a column of a
//! row-major matrix) and calls the slice function of the same name, so the
//! two paths give bit-identical results. Arrays returned are
//! [`Array1`]/[`Array2`] of `f64`.
//!
//! ```
//! use algoprog_scaling::array::{fit_power_law_nd, power_law_loss_nd};
//! use algoprog_scaling::{Irreducible, PowerLaw, PowerLawOptions};
//! use ndarray::Array1;
//!
//! let law = PowerLaw::new(1.7, 40.0, 0.12);
//! let compute = Array1::logspace(10.0, 15.0, 19.0, 12);
//! let loss = power_law_loss_nd(&law, compute.view());
//! let opts = PowerLawOptions { irreducible: Irreducible::Fixed(1.7), ..Default::default() };
//! let fit = fit_power_law_nd(compute.view(), loss.view(), &opts).unwrap();
//! assert!((fit.law.gamma - 0.12).abs() < 1e-9);
//! ```

use std::borrow::Cow;

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

use crate::chinchilla::ChinchillaData;
use crate::curve::Curve;
use crate::error::{Result, ScalingError};
use crate::frontier::{frontier, FrontierOptions, FrontierPoint};
use crate::law::{ChinchillaLaw, PowerLaw};
use crate::powerlaw::{fit_power_law, PowerLawFit, PowerLawOptions};

/// The view's data as a slice: borrowed when contiguous in memory order,
/// copied once otherwise.
fn as_slice<'a>(v: &'a ArrayView1<'_, f64>) -> Cow<'a, [f64]> {
    match v.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(v.to_vec()),
    }
}

/// [`fit_power_law`] on arrays: fit L = E + A·C^(−γ) to (`compute[i]`, `loss[i]`).
pub fn fit_power_law_nd(
    compute: ArrayView1<f64>,
    loss: ArrayView1<f64>,
    opts: &PowerLawOptions,
) -> Result<PowerLawFit> {
    fit_power_law(&as_slice(&compute), &as_slice(&loss), opts)
}

/// [`fit_power_law`] on an n × 2 matrix of (compute, loss) rows, e.g. the
/// output of [`frontier_nd`].
pub fn fit_power_law_points(
    points: ArrayView2<f64>,
    opts: &PowerLawOptions,
) -> Result<PowerLawFit> {
    check_two_columns(&points, "(compute, loss)")?;
    fit_power_law_nd(points.column(0), points.column(1), opts)
}

/// The compute-optimal frontier of `curves` ([`frontier`]) as an n × 2 matrix
/// of (compute, loss) rows, sorted by compute. Use [`frontier`] itself for the
/// run and step each point came from.
pub fn frontier_nd(curves: &[Curve], opts: &FrontierOptions) -> Array2<f64> {
    frontier_points_nd(&frontier(curves, opts))
}

/// Frontier points as an n × 2 matrix of (compute, loss) rows.
pub fn frontier_points_nd(points: &[FrontierPoint]) -> Array2<f64> {
    let mut out = Array2::zeros((points.len(), 2));
    for (mut row, p) in out.axis_iter_mut(Axis(0)).zip(points) {
        row[0] = p.flops;
        row[1] = p.loss;
    }
    out
}

/// The residuals of a fit (observed minus fitted, in the fit's space, input order).
pub fn residuals_nd(fit: &PowerLawFit) -> Array1<f64> {
    Array1::from(fit.residuals.clone())
}

/// [`PowerLaw::loss`] at every compute value.
pub fn power_law_loss_nd(law: &PowerLaw, compute: ArrayView1<f64>) -> Array1<f64> {
    compute.mapv(|c| law.loss(c))
}

/// [`ChinchillaData::new`] from arrays of N, D and loss (every point its own run).
pub fn chinchilla_data_nd(
    n: ArrayView1<f64>,
    d: ArrayView1<f64>,
    loss: ArrayView1<f64>,
) -> Result<ChinchillaData> {
    ChinchillaData::new(n.to_vec(), d.to_vec(), loss.to_vec())
}

/// [`ChinchillaData::new`] from an n × 3 matrix of (N, D, loss) rows.
pub fn chinchilla_data_rows(rows: ArrayView2<f64>) -> Result<ChinchillaData> {
    if rows.ncols() != 3 {
        return Err(ScalingError::InvalidData(format!(
            "expected an n × 3 matrix of (N, D, loss) rows; got {} columns",
            rows.ncols()
        )));
    }
    chinchilla_data_nd(rows.column(0), rows.column(1), rows.column(2))
}

/// [`ChinchillaLaw::loss`] at every (N, D) pair.
pub fn chinchilla_loss_nd(
    law: &ChinchillaLaw,
    n: ArrayView1<f64>,
    d: ArrayView1<f64>,
) -> Result<Array1<f64>> {
    if n.len() != d.len() {
        return Err(ScalingError::InvalidData(format!(
            "{} parameter counts but {} token counts",
            n.len(),
            d.len()
        )));
    }
    Ok(ndarray::Zip::from(&n)
        .and(&d)
        .map_collect(|&n, &d| law.loss(n, d)))
}

fn check_two_columns(points: &ArrayView2<f64>, what: &str) -> Result<()> {
    if points.ncols() != 2 {
        return Err(ScalingError::InvalidData(format!(
            "expected an n × 2 matrix of {what} rows; got {} columns",
            points.ncols()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ndarray::{array, s, Array1};

    use super::*;
    use crate::chinchilla::{fit_chinchilla, ChinchillaOptions};
    use crate::curve::{Point, RunMeta};
    use crate::powerlaw::Irreducible;

    fn points_of(law: &PowerLaw, n: usize) -> (Vec<f64>, Vec<f64>) {
        let c: Vec<f64> = (0..n)
            .map(|i| 10f64.powf(15.0 + 4.0 * i as f64 / (n - 1) as f64))
            .collect();
        // a deterministic ±0.3 % wiggle, so the fit has residuals to compare
        let l = c
            .iter()
            .enumerate()
            .map(|(i, &c)| law.loss(c) * (1.0 + 0.003 * ((i * 7 % 5) as f64 - 2.0) / 2.0))
            .collect();
        (c, l)
    }

    #[test]
    fn power_law_fit_agrees_with_the_slice_path_bit_for_bit() {
        let law = PowerLaw::new(1.8, 60.0, 0.1);
        let (c, l) = points_of(&law, 15);
        for opts in [PowerLawOptions::default(), PowerLawOptions::authors()] {
            let slice = fit_power_law(&c, &l, &opts).unwrap();
            let nd = fit_power_law_nd(
                Array1::from(c.clone()).view(),
                Array1::from(l.clone()).view(),
                &opts,
            )
            .unwrap();
            assert_eq!(slice, nd);
            assert_eq!(residuals_nd(&nd).to_vec(), slice.residuals);
        }
    }

    #[test]
    fn non_contiguous_columns_fit_like_slices() {
        let law = PowerLaw::new(2.0, 30.0, 0.08);
        let (c, l) = points_of(&law, 9);
        let mut m = Array2::zeros((c.len(), 2));
        m.column_mut(0).assign(&Array1::from(c.clone()));
        m.column_mut(1).assign(&Array1::from(l.clone()));
        assert!(
            m.column(0).as_slice().is_none(),
            "a column of a row-major matrix is strided"
        );
        let opts = PowerLawOptions::default();
        assert_eq!(
            fit_power_law_points(m.view(), &opts).unwrap(),
            fit_power_law(&c, &l, &opts).unwrap()
        );
        // reversed (negative stride) views too
        let cr: Vec<f64> = c.iter().rev().copied().collect();
        let lr: Vec<f64> = l.iter().rev().copied().collect();
        let cv = Array1::from(c.clone());
        let lv = Array1::from(l.clone());
        assert_eq!(
            fit_power_law_nd(cv.slice(s![..;-1]), lv.slice(s![..;-1]), &opts).unwrap(),
            fit_power_law(&cr, &lr, &opts).unwrap()
        );
    }

    #[test]
    fn fit_recovers_known_parameters_from_arrays() {
        // exact points of L = 1.7 + 40·C^−0.12, E fixed: log-space OLS is exact
        let law = PowerLaw::new(1.7, 40.0, 0.12);
        let compute = Array1::logspace(10.0, 15.0, 19.0, 12);
        let loss = power_law_loss_nd(&law, compute.view());
        let opts = PowerLawOptions {
            irreducible: Irreducible::Fixed(1.7),
            ..Default::default()
        };
        let fit = fit_power_law_nd(compute.view(), loss.view(), &opts).unwrap();
        assert!((fit.law.gamma - 0.12).abs() < 1e-10, "{:?}", fit.law);
        assert!((fit.law.a / 40.0 - 1.0).abs() < 1e-9, "{:?}", fit.law);
        // E fitted as well
        let opts = PowerLawOptions {
            irreducible: Irreducible::Fitted,
            ..Default::default()
        };
        let fit = fit_power_law_nd(compute.view(), loss.view(), &opts).unwrap();
        assert!((fit.law.e - 1.7).abs() < 1e-4, "{:?}", fit.law);
        assert!((fit.law.gamma - 0.12).abs() < 1e-3, "{:?}", fit.law);
    }

    #[test]
    fn frontier_matrix_matches_the_frontier_points() {
        let mk = |id: &str, pts: &[(f64, f64)]| {
            let meta = RunMeta {
                run_id: id.into(),
                family: "f".into(),
                ..Default::default()
            };
            let points = pts
                .iter()
                .enumerate()
                .map(|(i, &(flops, loss))| Point {
                    step: i as u64 + 1,
                    tokens: 0.0,
                    flops,
                    loss,
                })
                .collect();
            Curve::new(meta, points)
        };
        let curves = vec![
            mk("a", &[(1e15, 5.0), (2e15, 4.0), (4e15, 3.6)]),
            mk("b", &[(1.5e15, 4.5), (3e15, 3.5), (8e15, 3.0)]),
        ];
        let opts = FrontierOptions::default();
        let m = frontier_nd(&curves, &opts);
        assert_eq!(
            m,
            array![
                [1e15, 5.0],
                [1.5e15, 4.5],
                [2e15, 4.0],
                [3e15, 3.5],
                [8e15, 3.0]
            ]
        );
        let pts = frontier(&curves, &opts);
        assert_eq!(m.nrows(), pts.len());
        assert!(fit_power_law_points(m.slice(s![.., ..1]), &PowerLawOptions::default()).is_err());
    }

    #[test]
    fn chinchilla_from_arrays_equals_chinchilla_from_vectors() {
        let law = ChinchillaLaw {
            e: 1.69,
            a: 406.4,
            b: 410.7,
            alpha: 0.34,
            beta: 0.28,
        };
        let mut n = Vec::new();
        let mut d = Vec::new();
        for i in 0..5 {
            for j in 0..5 {
                n.push(1e6 * 4f64.powi(i));
                d.push(2e8 * 3f64.powi(j));
            }
        }
        let (na, da) = (Array1::from(n.clone()), Array1::from(d.clone()));
        let loss = chinchilla_loss_nd(&law, na.view(), da.view()).unwrap();
        let l: Vec<f64> = n.iter().zip(&d).map(|(&n, &d)| law.loss(n, d)).collect();
        assert_eq!(loss.to_vec(), l);
        let from_nd = chinchilla_data_nd(na.view(), da.view(), loss.view()).unwrap();
        let from_vec = ChinchillaData::new(n.clone(), d.clone(), l.clone()).unwrap();
        assert_eq!(from_nd, from_vec);
        let mut rows = Array2::zeros((n.len(), 3));
        rows.column_mut(0).assign(&na);
        rows.column_mut(1).assign(&da);
        rows.column_mut(2).assign(&loss);
        assert_eq!(chinchilla_data_rows(rows.view()).unwrap(), from_vec);
        assert!(chinchilla_data_rows(rows.slice(s![.., ..2])).is_err());
        assert!(chinchilla_loss_nd(&law, na.view(), da.slice(s![..3])).is_err());
        // exact data: the fit from the array path recovers the law
        let opts = ChinchillaOptions::default();
        let fit = fit_chinchilla(&from_nd, &opts).unwrap();
        let got = fit.law;
        assert!(
            (got.alpha - 0.34).abs() < 1e-3 && (got.beta - 0.28).abs() < 1e-3,
            "{got:?}"
        );
        assert!((got.e - 1.69).abs() < 1e-3, "{got:?}");
    }
}
