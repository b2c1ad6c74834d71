//! CEG functions between two fitted frontiers.
//!
//! With frontiers L_ref(C) = E_r + A_r·C^−γ_r (the older algorithm) and
//! L_new(C) = E_n + A_n·C^−γ_n, the compute-equivalent gain of the new
//! algorithm at compute C is the compute the reference needs to match the
//! new algorithm's loss, divided by C:
//!
//! ```text
//! CEG(C) = C_ref(L_new(C)) / C,   C_ref(L) = (A_r / (L − E_r))^(1/γ_r).
//! ```
//!
//! For pure power laws (E_r = E_n = 0) this is the closed form
//!
//! ```text
//! CEG(C) = (A_r / A_n)^(1/γ_r) · C^(γ_n/γ_r − 1),
//! ```
//!
//! constant in C (scale-invariant) when γ_n = γ_r, and a power of C
//! (scale-dependent) otherwise. The local growth exponent
//! d ln CEG / d ln C is reported alongside.
//!
//! Extrapolating a CEG function beyond the fitted compute range rests on
//! assumptions that are returned with every extrapolated number (see
//! [`Extrapolation`]).

use crate::error::{CegError, Result};
use algoprog_scaling::PowerLaw;
use serde::{Deserialize, Serialize};

/// Default target compute for extrapolation: 1e23 FLOPs (frontier training runs).
pub const DEFAULT_TARGET_COMPUTE: f64 = 1e23;

fn check_law(which: &str, l: &PowerLaw) -> Result<()> {
    if !(l.a > 0.0 && l.gamma > 0.0 && l.e.is_finite() && l.a.is_finite() && l.gamma.is_finite()) {
        return Err(CegError::DegenerateLaw {
            which: which.into(),
            e: l.e,
            a: l.a,
            gamma: l.gamma,
        });
    }
    Ok(())
}

/// The CEG function of `new` over `reference` (module docs).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CegFunction {
    pub reference: PowerLaw,
    pub new: PowerLaw,
}

impl CegFunction {
    /// Build from two fitted frontiers, rejecting degenerate laws.
    pub fn new(reference: PowerLaw, new: PowerLaw) -> Result<Self> {
        check_law("reference", &reference)?;
        check_law("new", &new)?;
        Ok(Self { reference, new })
    }

    /// CEG(C) = C_ref(L_new(C)) / C. Errors when the reference can never
    /// reach the new algorithm's loss at C (L_new(C) ≤ E_ref).
    pub fn eval(&self, c: f64) -> Result<f64> {
        if !(c > 0.0 && c.is_finite()) {
            return Err(CegError::BadParameter {
                name: "compute".into(),
                value: c,
                why: "must be positive and finite".into(),
            });
        }
        let l = self.new.loss(c);
        let r = &self.reference;
        let excess = l - r.e;
        if !(excess > 0.0) {
            return Err(CegError::Unreachable {
                which: "reference".into(),
                loss: l,
                e: r.e,
            });
        }
        // ln CEG = (ln A_r − ln(L − E_r)) / γ_r − ln C, computed in logs to
        // stay finite far beyond f64's range of C_ref.
        Ok(((r.a.ln() - excess.ln()) / r.gamma - c.ln()).exp())
    }

    /// Local growth exponent d ln CEG / d ln C at C, analytically:
    /// γ_n·A_n·C^−γ_n / (γ_r·(L_new(C) − E_r)) − 1.
    pub fn local_exponent(&self, c: f64) -> Result<f64> {
        let l = self.new.loss(c);
        let excess = l - self.reference.e;
        if !(excess > 0.0) {
            return Err(CegError::Unreachable {
                which: "reference".into(),
                loss: l,
                e: self.reference.e,
            });
        }
        Ok(
            self.new.gamma * self.new.a * c.powf(-self.new.gamma) / (self.reference.gamma * excess)
                - 1.0,
        )
    }

    /// Closed form for pure power laws (both E = 0): (A_r/A_n)^(1/γ_r)·C^(γ_n/γ_r − 1).
    pub fn pure_power_closed_form(&self, c: f64) -> f64 {
        (self.reference.a / self.new.a).powf(1.0 / self.reference.gamma)
            * c.powf(self.new.gamma / self.reference.gamma - 1.0)
    }

    /// CEG(C) on `n` log-spaced computes from `lo` to `hi` inclusive. Points
    /// where the reference cannot reach the new loss are `None`.
    pub fn curve(&self, lo: f64, hi: f64, n: usize) -> Result<Vec<(f64, Option<f64>)>> {
        Ok(log_grid(lo, hi, n)?
            .into_iter()
            .map(|c| (c, self.eval(c).ok()))
            .collect())
    }

    /// Whether CEG is constant in C: both laws share the exponent (within
    /// `tol` relative) and the irreducible loss; then CEG(C) is exactly
    /// (A_r/A_n)^(1/γ) everywhere.
    pub fn is_scale_invariant(&self, tol: f64) -> bool {
        (self.new.gamma - self.reference.gamma).abs() <= tol * self.reference.gamma
            && (self.new.e - self.reference.e).abs() <= tol * self.reference.e.abs().max(1e-12)
    }

    /// CEG at `target` with the assumptions it rests on; `fitted_range` is the
    /// compute range the frontiers were fitted on, if known.
    pub fn extrapolate(
        &self,
        target: f64,
        fitted_range: Option<(f64, f64)>,
    ) -> Result<Extrapolation> {
        let ceg = self.eval(target)?;
        let local_exponent = self.local_exponent(target)?;
        let beyond = fitted_range.map(|(lo, hi)| target > hi || target < lo);
        let mut assumptions = vec![
            format!(
                "both frontiers keep their fitted power laws out to {target:.1e} FLOPs: \
                 L_ref = {:.4} + {:.4e}·C^-{:.4}, L_new = {:.4} + {:.4e}·C^-{:.4}",
                self.reference.e, self.reference.a, self.reference.gamma, self.new.e, self.new.a, self.new.gamma
            ),
            "compute is counted the same way for both algorithms (same FLOP convention)".into(),
            "both algorithms are trained compute-optimally at every scale (frontier, not single runs)".into(),
            "CEG(C) = C_ref(L_new(C)) / C: the reference's compute to match the new algorithm's loss at C".into(),
        ];
        match (fitted_range, beyond) {
            (Some((lo, hi)), Some(true)) => {
                assumptions.push(format!(
                "the target lies outside the fitted range [{lo:.1e}, {hi:.1e}] by a factor {:.1e}",
                if target > hi { target / hi } else { lo / target }
            ))
            }
            (Some((lo, hi)), _) => assumptions.push(format!(
                "the target lies inside the fitted range [{lo:.1e}, {hi:.1e}]"
            )),
            (None, _) => assumptions.push("the fitted compute range was not given".into()),
        }
        Ok(Extrapolation {
            target,
            ceg,
            local_exponent,
            scale_invariant: self.is_scale_invariant(1e-9),
            beyond_fitted_range: beyond,
            assumptions,
        })
    }
}

/// A CEG extrapolated to a target compute, with its assumptions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Extrapolation {
    pub target: f64,
    pub ceg: f64,
    /// d ln CEG / d ln C at the target.
    pub local_exponent: f64,
    pub scale_invariant: bool,
    /// `Some(true)` when the target lies outside the fitted compute range.
    pub beyond_fitted_range: Option<bool>,
    /// Human-readable statements the number depends on; print them with it.
    pub assumptions: Vec<String>,
}

/// `n` log-spaced values from `lo` to `hi` inclusive (n ≥ 2).
pub fn log_grid(lo: f64, hi: f64, n: usize) -> Result<Vec<f64>> {
    if !(lo > 0.0 && hi > lo && hi.is_finite()) {
        return Err(CegError::BadRange { lo, hi });
    }
    if n < 2 {
        return Err(CegError::BadParameter {
            name: "number of points".into(),
            value: n as f64,
            why: "need at least 2".into(),
        });
    }
    let (a, b) = (lo.ln(), hi.ln());
    Ok((0..n)
        .map(|i| (a + (b - a) * i as f64 / (n - 1) as f64).exp())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(a: f64, b: f64) -> f64 {
        (a / b - 1.0).abs()
    }

    #[test]
    fn pure_power_laws_match_the_closed_form() {
        let f = CegFunction::new(
            PowerLaw::new(0.0, 30.0, 0.05),
            PowerLaw::new(0.0, 20.0, 0.08),
        )
        .unwrap();
        for c in log_grid(1e12, 1e24, 13).unwrap() {
            let want = (30.0f64 / 20.0).powf(1.0 / 0.05) * c.powf(0.08 / 0.05 - 1.0);
            assert!(rel(f.eval(c).unwrap(), want) < 1e-9, "C = {c:e}");
            assert!(rel(f.pure_power_closed_form(c), want) < 1e-12);
            assert!((f.local_exponent(c).unwrap() - 0.6).abs() < 1e-12);
        }
        // Grows as C^0.6: ten times the compute is 10^0.6 times the CEG.
        assert!(
            rel(
                f.eval(1e22).unwrap() / f.eval(1e21).unwrap(),
                10f64.powf(0.6)
            ) < 1e-9
        );
        assert!(!f.is_scale_invariant(1e-9));
    }

    #[test]
    fn equal_exponents_give_a_constant_ceg() {
        let f =
            CegFunction::new(PowerLaw::new(0.0, 40.0, 0.1), PowerLaw::new(0.0, 20.0, 0.1)).unwrap();
        for c in log_grid(1e10, 1e25, 16).unwrap() {
            assert!(rel(f.eval(c).unwrap(), 1024.0) < 1e-9, "C = {c:e}");
            assert!(f.local_exponent(c).unwrap().abs() < 1e-12);
        }
        assert!(f.is_scale_invariant(1e-9));
        let x = f
            .extrapolate(DEFAULT_TARGET_COMPUTE, Some((1e15, 1e18)))
            .unwrap();
        assert!(
            rel(x.ceg, 1024.0) < 1e-9 && x.scale_invariant && x.beyond_fitted_range == Some(true)
        );
        assert!(x
            .assumptions
            .iter()
            .any(|a| a.contains("outside the fitted range")));
    }

    #[test]
    fn irreducible_loss_is_respected_and_unreachable_is_an_error() {
        // Same law shifted: the new one is a compute factor 2^(1/γ) ahead.
        let r = PowerLaw::new(1.8, 10.0, 0.2);
        let n = PowerLaw::new(1.8, 5.0, 0.2);
        let f = CegFunction::new(r, n).unwrap();
        assert!(rel(f.eval(1e15).unwrap(), 2f64.powf(5.0)) < 1e-9);
        // A new law with lower E eventually goes below the reference's E.
        let f =
            CegFunction::new(PowerLaw::new(2.0, 10.0, 0.1), PowerLaw::new(1.0, 10.0, 0.1)).unwrap();
        assert!(matches!(f.eval(1e20), Err(CegError::Unreachable { .. })));
        assert!(CegFunction::new(PowerLaw::new(0.0, -1.0, 0.1), n).is_err());
    }

    #[test]
    fn local_exponent_matches_finite_difference() {
        let f = CegFunction::new(
            PowerLaw::new(1.5, 60.0, 0.07),
            PowerLaw::new(1.7, 40.0, 0.11),
        )
        .unwrap();
        let c = 1e17;
        let h: f64 = 1e-4;
        let fd =
            (f.eval(c * h.exp()).unwrap().ln() - f.eval(c * (-h).exp()).unwrap().ln()) / (2.0 * h);
        assert!((f.local_exponent(c).unwrap() - fd).abs() < 1e-6);
    }
}
