//! Closed-form scaling laws. Fitting lives elsewhere; these types only
//! evaluate and invert, so analysis code (CEG, plots) can share them.

use serde::{Deserialize, Serialize};

/// L(C) = e + a · C^(−gamma): a power law in compute with irreducible loss `e`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PowerLaw {
    pub e: f64,
    pub a: f64,
    pub gamma: f64,
}

impl PowerLaw {
    pub fn new(e: f64, a: f64, gamma: f64) -> Self {
        Self { e, a, gamma }
    }

    /// Loss at compute `c`.
    pub fn loss(&self, c: f64) -> f64 {
        self.e + self.a * c.powf(-self.gamma)
    }

    /// Compute at which the law reaches `loss`; `None` when `loss` is at or
    /// below the irreducible loss (never reached) or the law is degenerate.
    pub fn compute_at(&self, loss: f64) -> Option<f64> {
        let excess = loss - self.e;
        if !(excess > 0.0) || !(self.a > 0.0) || !(self.gamma > 0.0) {
            return None;
        }
        Some((self.a / excess).powf(1.0 / self.gamma))
    }
}

/// The Chinchilla form L(N, D) = e + a / N^alpha + b / D^beta.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChinchillaLaw {
    pub e: f64,
    pub a: f64,
    pub b: f64,
    pub alpha: f64,
    pub beta: f64,
}

impl ChinchillaLaw {
    /// Loss of a model with `n` parameters trained on `d` tokens.
    pub fn loss(&self, n: f64, d: f64) -> f64 {
        self.e + self.a * n.powf(-self.alpha) + self.b * d.powf(-self.beta)
    }

    /// Compute-optimal allocation under C = k·N·D (k = 6 by convention):
    /// N_opt = G (C/k)^(beta/(alpha+beta)), D_opt = G^-1 (C/k)^(alpha/(alpha+beta)),
    /// G = (alpha·a / (beta·b))^(1/(alpha+beta)) (Hoffmann et al. 2022, eq. 4).
    /// Evaluated in log space: a law with large exponents (a = 2e182,
    /// b = 4e-224, alpha = 30, beta = 720) has a moderate G ≈ 3.46 whose inner
    /// ratio overflows.
    pub fn optimal_allocation(&self, c: f64, k: f64) -> (f64, f64) {
        let s = self.alpha + self.beta;
        let ln_g = (self.alpha.ln() + self.a.ln() - self.beta.ln() - self.b.ln()) / s;
        let ln_x = (c / k).ln();
        (
            (ln_g + self.beta / s * ln_x).exp(),
            (self.alpha / s * ln_x - ln_g).exp(),
        )
    }
}
