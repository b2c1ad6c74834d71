//! Power law with irreducible loss, L = E + A·C^(−γ), fitted to (compute, loss) points.
//!
//! Spaces:
//! - [`FitSpace::Linear`] (the authors'): unweighted least squares on the
//!   loss itself, Σ (L − L̂)², which with E fixed is least squares on
//!   y = L − E = A·C^(−γ) in linear y, as the authors' `curve_fit`
//!   (scipy, TRF, p0 = [mean(y)/mean(C)^−0.1, −0.1]). Solved here by
//!   Levenberg–Marquardt from the log-space line; both reach the same least
//!   squares minimum. Large-y (low-compute) points weigh most.
//! - [`FitSpace::Log`]: with E fixed, least squares on log(L − E) against
//!   log C (a straight line on log-log axes of the excess loss; closed form);
//!   with E fitted, least squares on log L − log L̂ (log(L − E) would let one
//!   point near E dominate).
//!
//! Compute is scaled by its geometric mean internally (C^(−γ) spans many
//! decades); the reported A is for raw C.
//!
//! Refused rather than fitted: a loss ≤ 0, a fixed E at or above any loss
//! (L − E must be positive in both spaces), and a degenerate result
//! (A ≤ 0, γ ≤ 0 or anything non-finite: the points do not fall with compute
//! above E).

use serde::{Deserialize, Serialize};

use crate::error::{Result, ScalingError};
use crate::law::PowerLaw;

/// Irreducible loss E: fixed (the papers used 1.8 or 1.9) or fitted.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Irreducible {
    /// E is given.
    Fixed(f64),
    /// E is a free parameter (constrained to 0 ≤ E < min L for the start).
    Fitted,
}

/// The space in which residuals are measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FitSpace {
    /// Residuals of L (equivalently of y = L − E with E fixed): the authors' curve_fit.
    #[serde(alias = "linear", alias = "authors", alias = "curve_fit")]
    Linear,
    /// Residuals of log(L − E) (E fixed) or log L (E fitted).
    #[serde(alias = "log")]
    Log,
}

impl FitSpace {
    /// The authors' space: unweighted least squares in linear y = L − E.
    pub const AUTHORS: FitSpace = FitSpace::Linear;

    /// `linear` or `log`.
    pub fn name(self) -> &'static str {
        match self {
            FitSpace::Linear => "linear",
            FitSpace::Log => "log",
        }
    }

    /// Parse `linear` (also `authors`, `curve_fit`) or `log`.
    pub fn from_name(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "linear" | "authors" | "curve_fit" => Ok(FitSpace::Linear),
            "log" => Ok(FitSpace::Log),
            _ => Err(ScalingError::InvalidOption(format!(
                "fit space `{s}`: expected `linear` (the authors': least squares on L − E) or `log` (least squares on log(L − E))"
            ))),
        }
    }
}

/// Options of a power-law fit.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PowerLawOptions {
    /// E fixed or fitted (default: fixed at 1.8, as in section 2.3 of the paper).
    pub irreducible: Irreducible,
    /// Residual space (default: linear, as scipy's curve_fit).
    pub space: FitSpace,
}

impl Default for PowerLawOptions {
    fn default() -> Self {
        Self {
            irreducible: Irreducible::Fixed(1.8),
            space: FitSpace::Linear,
        }
    }
}

impl PowerLawOptions {
    /// The authors' frontier fit on C4 with the GPT-2 tokenizer: E = 1.9
    /// fixed, unweighted least squares on y = L − E.
    pub fn authors() -> Self {
        Self {
            irreducible: Irreducible::Fixed(1.9),
            space: FitSpace::AUTHORS,
        }
    }
}

/// A fitted power law with its residuals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PowerLawFit {
    /// The law (E, A, γ).
    pub law: PowerLaw,
    /// Whether E was fitted.
    pub e_fitted: bool,
    /// Residual space.
    pub space: FitSpace,
    /// Observed minus fitted, in `space`, one per point (input order).
    pub residuals: Vec<f64>,
    /// Sum of squared residuals.
    pub sse: f64,
    /// Coefficient of determination in `space`.
    pub r2: f64,
    /// Number of points.
    pub n: usize,
}

fn check_points(c: &[f64], l: &[f64]) -> Result<()> {
    if c.len() != l.len() {
        return Err(ScalingError::InvalidData(format!(
            "{} compute values but {} losses",
            c.len(),
            l.len()
        )));
    }
    for (i, (&ci, &li)) in c.iter().zip(l).enumerate() {
        if !(ci.is_finite() && ci > 0.0) {
            return Err(ScalingError::InvalidData(format!(
                "point {i}: compute {ci} is not positive and finite"
            )));
        }
        if !li.is_finite() {
            return Err(ScalingError::InvalidData(format!(
                "point {i}: loss {li} is not finite"
            )));
        }
        if !(li > 0.0) {
            return Err(ScalingError::InvalidData(format!(
                "point {i} (compute {ci:e}): loss {li} is not positive; a cross-entropy loss is > 0. Fix or remove the point"
            )));
        }
    }
    Ok(())
}

/// Ordinary least squares y = p + q·x; returns (p, q).
fn ols(x: &[f64], y: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let mut sxy = 0.0;
    let mut sxx = 0.0;
    for (xi, yi) in x.iter().zip(y) {
        sxy += (xi - mx) * (yi - my);
        sxx += (xi - mx) * (xi - mx);
    }
    let q = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (my - q * mx, q)
}

/// Levenberg–Marquardt for small problems (≤ 3 parameters). `f` fills the
/// residuals and the Jacobian (row-major, n × p) at θ; returns the θ
/// minimising Σ r².
pub(crate) fn levenberg_marquardt<F>(mut theta: Vec<f64>, n: usize, mut f: F) -> Vec<f64>
where
    F: FnMut(&[f64], &mut [f64], &mut [f64]) -> bool,
{
    let p = theta.len();
    let mut r = vec![0.0; n];
    let mut j = vec![0.0; n * p];
    if !f(&theta, &mut r, &mut j) {
        return theta;
    }
    let mut sse: f64 = r.iter().map(|x| x * x).sum();
    let mut lambda = 1e-3;
    let mut r_new = vec![0.0; n];
    let mut j_new = vec![0.0; n * p];
    for _ in 0..500 {
        // normal equations
        let mut jtj = vec![0.0; p * p];
        let mut jtr = vec![0.0; p];
        for i in 0..n {
            for a in 0..p {
                jtr[a] += j[i * p + a] * r[i];
                for b in 0..p {
                    jtj[a * p + b] += j[i * p + a] * j[i * p + b];
                }
            }
        }
        let mut improved = false;
        for _ in 0..40 {
            let mut m = jtj.clone();
            for a in 0..p {
                m[a * p + a] += lambda * jtj[a * p + a].max(1e-300);
            }
            let rhs: Vec<f64> = jtr.iter().map(|x| -x).collect();
            let Some(step) = solve(&m, &rhs, p) else {
                lambda *= 10.0;
                continue;
            };
            let cand: Vec<f64> = theta.iter().zip(&step).map(|(t, s)| t + s).collect();
            if f(&cand, &mut r_new, &mut j_new) {
                let sse_new: f64 = r_new.iter().map(|x| x * x).sum();
                if sse_new.is_finite() && sse_new <= sse {
                    let rel = (sse - sse_new) / sse.max(1e-300);
                    let small_step = step
                        .iter()
                        .zip(&cand)
                        .all(|(s, t)| s.abs() <= 1e-12 * (t.abs() + 1e-12));
                    theta = cand;
                    std::mem::swap(&mut r, &mut r_new);
                    std::mem::swap(&mut j, &mut j_new);
                    sse = sse_new;
                    lambda = (lambda / 10.0).max(1e-12);
                    improved = true;
                    if rel < 1e-15 || small_step {
                        return theta;
                    }
                    break;
                }
            }
            lambda *= 10.0;
        }
        if !improved {
            break;
        }
    }
    theta
}

/// Solve the p×p system m·x = rhs by Gaussian elimination with partial pivoting.
fn solve(m: &[f64], rhs: &[f64], p: usize) -> Option<Vec<f64>> {
    let mut a = m.to_vec();
    let mut b = rhs.to_vec();
    for col in 0..p {
        let piv =
            (col..p).max_by(|&x, &y| a[x * p + col].abs().total_cmp(&a[y * p + col].abs()))?;
        if a[piv * p + col].abs() < 1e-300 || !a[piv * p + col].is_finite() {
            return None;
        }
        if piv != col {
            for k in 0..p {
                a.swap(col * p + k, piv * p + k);
            }
            b.swap(col, piv);
        }
        for row in col + 1..p {
            let fct = a[row * p + col] / a[col * p + col];
            for k in col..p {
                a[row * p + k] -= fct * a[col * p + k];
            }
            b[row] -= fct * b[col];
        }
    }
    let mut x = vec![0.0; p];
    for row in (0..p).rev() {
        let mut s = b[row];
        for k in row + 1..p {
            s -= a[row * p + k] * x[k];
        }
        x[row] = s / a[row * p + row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// Fit L = E + A·C^(−γ) to points (`compute[i]`, `loss[i]`).
pub fn fit_power_law(compute: &[f64], loss: &[f64], opts: &PowerLawOptions) -> Result<PowerLawFit> {
    check_points(compute, loss)?;
    let n = compute.len();
    let need = match opts.irreducible {
        Irreducible::Fixed(_) => 2,
        Irreducible::Fitted => 3,
    };
    if n < need + 1 {
        return Err(ScalingError::InsufficientData(format!(
            "a power law with {need} free parameters needs at least {} points; got {n}",
            need + 1
        )));
    }
    let lc: Vec<f64> = compute.iter().map(|c| c.ln()).collect();
    let lc0 = lc.iter().sum::<f64>() / n as f64;
    let x: Vec<f64> = lc.iter().map(|v| v - lc0).collect(); // log(C / C0)
    let min_l = loss.iter().cloned().fold(f64::INFINITY, f64::min);

    // Model in scaled compute: L = E + A0·exp(−γ x), A = A0·C0^γ.
    let (e, a0, gamma) = match opts.irreducible {
        Irreducible::Fixed(e) => {
            if !e.is_finite() {
                return Err(ScalingError::InvalidOption(format!(
                    "fixed irreducible loss E = {e} is not finite"
                )));
            }
            let below: Vec<usize> = (0..n).filter(|&i| loss[i] <= e).collect();
            if let Some(&i) = below.first() {
                return Err(ScalingError::InvalidData(format!(
                    "{} of {n} points have a loss at or below the fixed irreducible loss E = {e} (first: point {i}, loss {} at compute {:e}; lowest loss {min_l}); \
                     L − E must be positive. Lower E below {min_l}, fit it, or leave those points out",
                    below.len(),
                    loss[i],
                    compute[i]
                )));
            }
            // start (and, in log space, the answer): OLS of log(L − E) on x over points above E
            let (xs, ys): (Vec<f64>, Vec<f64>) = x
                .iter()
                .zip(loss)
                .filter(|(_, &l)| l > e)
                .map(|(&xi, &l)| (xi, (l - e).ln()))
                .unzip();
            let (p, q) = if xs.len() >= 2 {
                ols(&xs, &ys)
            } else {
                ((min_l - e).abs().max(1e-3).ln(), -0.1)
            };
            match opts.space {
                FitSpace::Log => (e, p.exp(), -q),
                FitSpace::Linear => {
                    let th = levenberg_marquardt(vec![p.exp(), -q], n, |t, r, j| {
                        let (a0, g) = (t[0], t[1]);
                        for i in 0..n {
                            let pw = (-g * x[i]).exp();
                            r[i] = e + a0 * pw - loss[i];
                            j[i * 2] = pw;
                            j[i * 2 + 1] = -a0 * x[i] * pw;
                        }
                        r.iter().all(|v| v.is_finite())
                    });
                    (e, th[0], th[1])
                }
            }
        }
        Irreducible::Fitted => {
            // start: profile E over [0, min L) with the log-line fit, keep the best linear SSE
            let mut best = (f64::INFINITY, 0.0, 1.0, 0.1);
            for k in 0..200 {
                let e = min_l * (k as f64) / 200.0;
                let ys: Vec<f64> = loss.iter().map(|l| (l - e).ln()).collect();
                let (p, q) = ols(&x, &ys);
                let sse: f64 = (0..n)
                    .map(|i| (e + (p + q * x[i]).exp() - loss[i]).powi(2))
                    .sum();
                if sse < best.0 {
                    best = (sse, e, p.exp(), -q);
                }
            }
            let start = vec![best.1, best.2, best.3];
            let th = match opts.space {
                FitSpace::Linear => levenberg_marquardt(start, n, |t, r, j| {
                    let (e, a0, g) = (t[0], t[1], t[2]);
                    for i in 0..n {
                        let pw = (-g * x[i]).exp();
                        r[i] = e + a0 * pw - loss[i];
                        j[i * 3] = 1.0;
                        j[i * 3 + 1] = pw;
                        j[i * 3 + 2] = -a0 * x[i] * pw;
                    }
                    r.iter().all(|v| v.is_finite())
                }),
                FitSpace::Log => levenberg_marquardt(start, n, |t, r, j| {
                    let (e, a0, g) = (t[0], t[1], t[2]);
                    for i in 0..n {
                        let pw = (-g * x[i]).exp();
                        let pred = e + a0 * pw;
                        if !(pred > 0.0) {
                            return false;
                        }
                        r[i] = pred.ln() - loss[i].ln();
                        j[i * 3] = 1.0 / pred;
                        j[i * 3 + 1] = pw / pred;
                        j[i * 3 + 2] = -a0 * x[i] * pw / pred;
                    }
                    r.iter().all(|v| v.is_finite())
                }),
            };
            (th[0], th[1], th[2])
        }
    };
    let law = PowerLaw {
        e,
        a: a0 * (gamma * lc0).exp(),
        gamma,
    };
    if !(law.a.is_finite() && law.gamma.is_finite() && law.e.is_finite()) {
        return Err(ScalingError::FitFailed(format!(
            "power-law fit diverged (E = {e}, A = {}, γ = {gamma})",
            law.a
        )));
    }
    if !(law.a > 0.0 && law.gamma > 0.0) {
        return Err(ScalingError::FitFailed(format!(
            "degenerate power law L = {e:.4} + {:.4e}·C^-{gamma:.4}: A and γ must be positive, i.e. the loss must fall with compute towards E. \
             Check that the points are a frontier (loss decreasing in compute), that E is below them, and the compute range",
            law.a
        )));
    }
    // residuals (observed − fitted) in the fit's space
    let (obs, fitted): (Vec<f64>, Vec<f64>) = (0..n)
        .map(|i| {
            let pred = e + a0 * (-gamma * x[i]).exp();
            match (opts.space, opts.irreducible) {
                (FitSpace::Linear, _) => (loss[i], pred),
                (FitSpace::Log, Irreducible::Fixed(_)) => ((loss[i] - e).ln(), (pred - e).ln()),
                (FitSpace::Log, Irreducible::Fitted) => (loss[i].ln(), pred.ln()),
            }
        })
        .unzip();
    let residuals: Vec<f64> = obs.iter().zip(&fitted).map(|(o, f)| o - f).collect();
    let sse: f64 = residuals.iter().map(|r| r * r).sum();
    let mean = obs.iter().sum::<f64>() / n as f64;
    let sst: f64 = obs.iter().map(|o| (o - mean).powi(2)).sum();
    Ok(PowerLawFit {
        law,
        e_fitted: matches!(opts.irreducible, Irreducible::Fitted),
        space: opts.space,
        residuals,
        sse,
        r2: if sst > 0.0 { 1.0 - sse / sst } else { f64::NAN },
        n,
    })
}
