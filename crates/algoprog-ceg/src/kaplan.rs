//! Kaplan vs Chinchilla: what allocating compute between parameters and
//! data the Kaplan way costs when the loss really follows the Chinchilla form
//!
//! ```text
//! L(N, D) = E + A·N^−α + B·D^−β
//! ```
//!
//! with training compute C = k·N·D, **k = 6** (forward + backward FLOPs per
//! parameter per token) unless stated otherwise.
//!
//! Allocation rules ([`Allocation`]):
//! - a power rule D = c·N^p; given C, N = (C / (k·c))^(1/(1+p)), D = c·N^p
//!   (closed form). Kaplan as the authors' code used it: D = 831.4·N^0.74;
//!   Chinchilla's rule of thumb: D = 20·N (p = 1);
//! - the law's own compute-optimal allocation (Hoffmann et al. 2022, eq. 4):
//!   N* = G·(C/k)^(β/(α+β)), D* = G⁻¹·(C/k)^(α/(α+β)), G = (αA/(βB))^(1/(α+β)),
//!   along which L*(C) − E = (A·G^−α + B·G^β)·(C/k)^(−αβ/(α+β)).
//!
//! Effective exponent along D ∝ N^p (appendix 13 of the paper):
//! L(C) − E ≈ A·C^(−α/(1+p)) + B·C^(−pβ/(1+p)), so
//!
//! ```text
//! γ(p) = min(α, p·β) / (1 + p),   maximised at p* = α/β with γ* = αβ/(α+β).
//! ```
//!
//! For α = β, γ(p_K)/γ* = 2p_K/(1 + p_K) ≈ 0.851 at p_K = 0.74.
//!
//! CEG of a better allocation over a worse one at compute C: the worse path
//! reaches L_w(C); the better path reaches that loss at C_b; CEG(C) = C / C_b.
//! Against the optimal allocation this is ≥ 1, equals 1 where the two paths
//! pick the same (N, D), and grows on both sides of that compute: the gap
//! first converges, then diverges. Far above it, CEG ∝ C^(1 − γ(p)/γ*).

use crate::error::{CegError, Result};
use crate::function::log_grid;
use algoprog_scaling::ChinchillaLaw;
use serde::{Deserialize, Serialize};

/// FLOPs per parameter per training token (forward 2 + backward 4): C = 6·N·D.
pub const FLOPS_PER_PARAM_TOKEN: f64 = 6.0;
/// Kaplan token rule used in the authors' code: D = 831.4·N^0.74.
pub const KAPLAN_COEF: f64 = 831.4;
/// Exponent of the Kaplan token rule, p_K.
pub const KAPLAN_EXPONENT: f64 = 0.74;
/// Chinchilla's rule of thumb: 20 training tokens per parameter.
pub const CHINCHILLA_TOKENS_PER_PARAM: f64 = 20.0;

/// The Chinchilla fit of Hoffmann et al. (2022), approach 3:
/// L = 1.69 + 406.4·N^−0.34 + 410.7·D^−0.28.
pub fn hoffmann_law() -> ChinchillaLaw {
    ChinchillaLaw { e: 1.69, a: 406.4, b: 410.7, alpha: 0.34, beta: 0.28 }
}

/// How a compute budget is split between parameters N and tokens D.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Allocation {
    /// D = coef · N^exponent.
    PowerRule { coef: f64, exponent: f64 },
    /// The law's compute-optimal allocation (module docs).
    Optimal,
}

impl Allocation {
    /// Kaplan as the authors' code used it: D = 831.4·N^0.74.
    pub fn kaplan() -> Self {
        Allocation::PowerRule { coef: KAPLAN_COEF, exponent: KAPLAN_EXPONENT }
    }

    /// Chinchilla's rule of thumb: D = 20·N.
    pub fn chinchilla() -> Self {
        Allocation::PowerRule { coef: CHINCHILLA_TOKENS_PER_PARAM, exponent: 1.0 }
    }

    /// A short label for tables and plots.
    pub fn label(&self) -> String {
        match *self {
            Allocation::PowerRule { coef, exponent } if coef == KAPLAN_COEF && exponent == KAPLAN_EXPONENT => {
                "Kaplan D=831.4·N^0.74".into()
            }
            Allocation::PowerRule { coef, exponent: 1.0 } => format!("D={coef}·N"),
            Allocation::PowerRule { coef, exponent } => format!("D={coef}·N^{exponent}"),
            Allocation::Optimal => "optimal (law)".into(),
        }
    }

    fn check(&self) -> Result<()> {
        if let Allocation::PowerRule { coef, exponent } = *self {
            if !(coef > 0.0 && coef.is_finite()) {
                return Err(CegError::BadParameter { name: "token-rule coefficient".into(), value: coef, why: "must be positive".into() });
            }
            if !(exponent > 0.0 && exponent.is_finite()) {
                return Err(CegError::BadParameter {
                    name: "token-rule exponent p".into(),
                    value: exponent,
                    why: "must be positive (D grows with N)".into(),
                });
            }
        }
        Ok(())
    }

    /// (N, D) for compute `c` under C = k·N·D.
    pub fn split(&self, law: &ChinchillaLaw, c: f64, k: f64) -> (f64, f64) {
        match *self {
            Allocation::PowerRule { coef, exponent } => {
                let n = (c / (k * coef)).powf(1.0 / (1.0 + exponent));
                (n, coef * n.powf(exponent))
            }
            Allocation::Optimal => law.optimal_allocation(c, k),
        }
    }

    /// The effective compute exponent of this path, γ(p) = min(α, pβ)/(1+p),
    /// or γ* = αβ/(α+β) for the optimal allocation.
    pub fn gamma(&self, law: &ChinchillaLaw) -> f64 {
        match *self {
            Allocation::PowerRule { exponent, .. } => gamma_of_path(law.alpha, law.beta, exponent),
            Allocation::Optimal => gamma_star(law.alpha, law.beta),
        }
    }
}

/// γ(p) = min(α, p·β)/(1 + p): the compute exponent of L − E along D ∝ N^p.
pub fn gamma_of_path(alpha: f64, beta: f64, p: f64) -> f64 {
    alpha.min(p * beta) / (1.0 + p)
}

/// p* = α/β, the token exponent that maximises γ(p).
pub fn optimal_p(alpha: f64, beta: f64) -> f64 {
    alpha / beta
}

/// γ* = γ(p*) = αβ/(α + β).
pub fn gamma_star(alpha: f64, beta: f64) -> f64 {
    alpha * beta / (alpha + beta)
}

fn check_law(law: &ChinchillaLaw) -> Result<()> {
    for (name, v) in [("A", law.a), ("B", law.b), ("alpha", law.alpha), ("beta", law.beta)] {
        if !(v > 0.0 && v.is_finite()) {
            return Err(CegError::BadParameter {
                name: format!("Chinchilla law {name}"),
                value: v,
                why: "must be positive; refit L(N, D) or pass a valid law".into(),
            });
        }
    }
    if !law.e.is_finite() {
        return Err(CegError::BadParameter { name: "Chinchilla law E".into(), value: law.e, why: "must be finite".into() });
    }
    Ok(())
}

fn check_k(k: f64) -> Result<()> {
    if !(k > 0.0 && k.is_finite()) {
        return Err(CegError::BadParameter { name: "k in C = k·N·D".into(), value: k, why: "must be positive (6 by convention)".into() });
    }
    Ok(())
}

/// Reducible loss A·N^−α + B·D^−β along `alloc` at compute `c` (computed
/// without subtracting E, so it stays accurate when tiny).
pub fn path_excess(law: &ChinchillaLaw, alloc: Allocation, c: f64, k: f64) -> f64 {
    let (n, d) = alloc.split(law, c, k);
    law.a * n.powf(-law.alpha) + law.b * d.powf(-law.beta)
}

/// Loss along `alloc` at compute `c`: L(N(C), D(C)).
pub fn path_loss(law: &ChinchillaLaw, alloc: Allocation, c: f64, k: f64) -> f64 {
    law.e + path_excess(law, alloc, c, k)
}

/// ln of the compute at which `alloc` reaches reducible loss `excess` > 0.
/// Closed form for the optimal path; bisection in ln C for a power rule
/// (its loss falls monotonically with C because N and D both grow).
fn ln_compute_for_excess(law: &ChinchillaLaw, alloc: Allocation, excess: f64, k: f64) -> Result<f64> {
    let which = alloc.label();
    if !(excess > 0.0 && excess.is_finite()) {
        return Err(CegError::Unreachable { which, loss: law.e + excess, e: law.e });
    }
    match alloc {
        Allocation::Optimal => {
            let s = law.alpha + law.beta;
            let g = (law.alpha * law.a / (law.beta * law.b)).powf(1.0 / s);
            let kstar = law.a * g.powf(-law.alpha) + law.b * g.powf(law.beta);
            Ok(k.ln() + (s / (law.alpha * law.beta)) * (kstar.ln() - excess.ln()))
        }
        Allocation::PowerRule { .. } => {
            let f = |lc: f64| path_excess(law, alloc, lc.exp(), k);
            let (mut lo, mut hi) = (0.0f64, 100.0f64);
            while f(lo) < excess {
                lo -= 50.0;
                if lo < -700.0 {
                    return Err(CegError::NoSolution { which, loss: law.e + excess, why: "the loss is reached below 1e-300 FLOPs".into() });
                }
            }
            while f(hi) > excess {
                hi += 50.0;
                if hi > 700.0 {
                    return Err(CegError::NoSolution { which, loss: law.e + excess, why: "the loss needs more than 1e300 FLOPs".into() });
                }
            }
            for _ in 0..200 {
                let mid = 0.5 * (lo + hi);
                if f(mid) > excess {
                    lo = mid;
                } else {
                    hi = mid;
                }
                if hi - lo < 1e-13 {
                    break;
                }
            }
            Ok(0.5 * (lo + hi))
        }
    }
}

/// Compute at which `alloc` reaches `loss` (must exceed E).
pub fn compute_for_loss(law: &ChinchillaLaw, alloc: Allocation, loss: f64, k: f64) -> Result<f64> {
    check_law(law)?;
    check_k(k)?;
    alloc.check()?;
    Ok(ln_compute_for_excess(law, alloc, loss - law.e, k)?.exp())
}

/// CEG of `better` over `worse` at compute `c`: C / C_better(L_worse(C)).
pub fn allocation_ceg(law: &ChinchillaLaw, better: Allocation, worse: Allocation, c: f64, k: f64) -> Result<f64> {
    check_law(law)?;
    check_k(k)?;
    better.check()?;
    worse.check()?;
    let lc_b = ln_compute_for_excess(law, better, path_excess(law, worse, c, k), k)?;
    Ok((c.ln() - lc_b).exp())
}

/// Compute at which the power rule D = coef·N^p picks the same N (and so the
/// same D) as the optimal allocation, where the CEG of optimal over it is
/// exactly 1: ln(C/k) = (ln G + ln(coef)/(1+p)) / (1/(1+p) − β/(α+β)).
/// `None` when the exponents coincide (p = α/β: parallel paths, no crossing).
pub fn allocation_crossing(law: &ChinchillaLaw, coef: f64, p: f64, k: f64) -> Option<f64> {
    let s = law.alpha + law.beta;
    let denom = 1.0 / (1.0 + p) - law.beta / s;
    if denom.abs() < 1e-12 {
        return None;
    }
    let g = (law.alpha * law.a / (law.beta * law.b)).powf(1.0 / s);
    Some(k * ((g.ln() + coef.ln() / (1.0 + p)) / denom).exp())
}

/// One compute of a [`KaplanReport`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AllocationPoint {
    pub compute: f64,
    pub n_worse: f64,
    pub d_worse: f64,
    pub loss_worse: f64,
    pub n_better: f64,
    pub d_better: f64,
    pub loss_better: f64,
    /// C / C_better(L_worse(C)).
    pub ceg: f64,
}

/// Loss along two allocation paths and the CEG of the better over the worse.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KaplanReport {
    pub law: ChinchillaLaw,
    /// k in C = k·N·D.
    pub k: f64,
    pub worse: Allocation,
    pub better: Allocation,
    /// γ of the worse path (γ(p) for a power rule).
    pub gamma_worse: f64,
    /// γ of the better path (γ* for the optimal allocation).
    pub gamma_better: f64,
    /// p* = α/β.
    pub p_star: f64,
    /// Asymptotic growth exponent of the CEG, 1 − γ_worse/γ_better (for large C).
    pub asymptotic_ceg_exponent: f64,
    /// Compute where the worse rule coincides with the optimal allocation (CEG = 1), when the better path is optimal.
    pub crossing_compute: Option<f64>,
    /// Grid point with the smallest CEG: (compute, CEG).
    pub min_ceg: (f64, f64),
    pub points: Vec<AllocationPoint>,
    /// Statements the numbers rest on.
    pub assumptions: Vec<String>,
}

/// Loss along `worse` and `better` and the CEG of `better` over `worse` on
/// `n` log-spaced computes in [lo, hi] (module docs).
pub fn compare_allocations(
    law: &ChinchillaLaw,
    worse: Allocation,
    better: Allocation,
    lo: f64,
    hi: f64,
    n: usize,
    k: f64,
) -> Result<KaplanReport> {
    check_law(law)?;
    check_k(k)?;
    worse.check()?;
    better.check()?;
    let grid = log_grid(lo, hi, n)?;
    let mut points = Vec::with_capacity(n);
    for c in grid {
        let (nw, dw) = worse.split(law, c, k);
        let (nb, db) = better.split(law, c, k);
        points.push(AllocationPoint {
            compute: c,
            n_worse: nw,
            d_worse: dw,
            loss_worse: law.loss(nw, dw),
            n_better: nb,
            d_better: db,
            loss_better: law.loss(nb, db),
            ceg: allocation_ceg(law, better, worse, c, k)?,
        });
    }
    let min = points.iter().min_by(|a, b| a.ceg.total_cmp(&b.ceg)).map(|p| (p.compute, p.ceg)).unwrap();
    let gw = worse.gamma(law);
    let gb = better.gamma(law);
    let crossing_compute = match (worse, better) {
        (Allocation::PowerRule { coef, exponent }, Allocation::Optimal) => allocation_crossing(law, coef, exponent, k),
        _ => None,
    };
    let assumptions = vec![
        format!(
            "the loss follows L(N,D) = {} + {}·N^-{} + {}·D^-{} at every scale considered",
            law.e, law.a, law.alpha, law.b, law.beta
        ),
        format!("training compute C = {k}·N·D (forward + backward FLOPs per parameter per token)"),
        format!("worse path: {}; better path: {}", worse.label(), better.label()),
        "CEG(C) = C / C_better(L_worse(C)): compute the better allocation needs to match the worse one's loss at C".into(),
    ];
    Ok(KaplanReport {
        law: *law,
        k,
        worse,
        better,
        gamma_worse: gw,
        gamma_better: gb,
        p_star: optimal_p(law.alpha, law.beta),
        asymptotic_ceg_exponent: 1.0 - gw / gb,
        crossing_compute,
        min_ceg: min,
        points,
        assumptions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: f64 = FLOPS_PER_PARAM_TOKEN;

    #[test]
    fn p_star_maximises_gamma() {
        for &(a, b) in &[(0.34, 0.28), (0.3, 0.3), (0.2, 0.5)] {
            let ps = optimal_p(a, b);
            let gs = gamma_of_path(a, b, ps);
            assert!((gs - gamma_star(a, b)).abs() < 1e-15);
            for i in 1..=2000 {
                let p = i as f64 * 0.005;
                assert!(gamma_of_path(a, b, p) <= gs + 1e-15, "p = {p} beats p* = {ps}");
            }
            // Strictly worse away from p*.
            assert!(gamma_of_path(a, b, ps * 0.9) < gs && gamma_of_path(a, b, ps * 1.1) < gs);
        }
        // a = b: p* = 1, γ* = a/2.
        assert_eq!(optimal_p(0.3, 0.3), 1.0);
        assert!((gamma_star(0.3, 0.3) - 0.15).abs() < 1e-15);
    }

    #[test]
    fn kaplan_exponent_ratio_for_equal_exponents() {
        let a = 0.3;
        let ratio = gamma_of_path(a, a, KAPLAN_EXPONENT) / gamma_star(a, a);
        assert!((ratio - 2.0 * 0.74 / 1.74).abs() < 1e-12);
        assert!((ratio - 0.8506).abs() < 1e-4, "{ratio}");
        // γ_K ≈ 0.425·a.
        assert!((gamma_of_path(a, a, 0.74) / a - 0.74 / 1.74).abs() < 1e-12);
    }

    #[test]
    fn power_rule_split_satisfies_budget_and_rule() {
        let law = hoffmann_law();
        let (n, d) = Allocation::kaplan().split(&law, 1e21, K);
        assert!((K * n * d / 1e21 - 1.0).abs() < 1e-12);
        assert!((d / (831.4 * n.powf(0.74)) - 1.0).abs() < 1e-12);
        let (n, d) = Allocation::chinchilla().split(&law, 1e21, K);
        assert!((d / n - 20.0).abs() < 1e-9);
    }

    #[test]
    fn compute_for_loss_inverts_both_paths() {
        let law = hoffmann_law();
        for alloc in [Allocation::kaplan(), Allocation::Optimal, Allocation::chinchilla()] {
            for c in [1e15, 1e19, 1e23] {
                let l = path_loss(&law, alloc, c, K);
                let back = compute_for_loss(&law, alloc, l, K).unwrap();
                assert!((back / c - 1.0).abs() < 1e-9, "{alloc:?} at {c:e}: {back:e}");
            }
        }
        assert!(matches!(compute_for_loss(&law, Allocation::Optimal, 1.6, K), Err(CegError::Unreachable { .. })));
    }

    #[test]
    fn optimal_over_kaplan_is_one_at_the_crossing_and_grows_both_ways() {
        let law = hoffmann_law();
        let cx = allocation_crossing(&law, KAPLAN_COEF, KAPLAN_EXPONENT, K).unwrap();
        // Same (N, D) there.
        let (nk, dk) = Allocation::kaplan().split(&law, cx, K);
        let (no, d_o) = law.optimal_allocation(cx, K);
        assert!((nk / no - 1.0).abs() < 1e-9 && (dk / d_o - 1.0).abs() < 1e-9);
        let ceg = |c: f64| allocation_ceg(&law, Allocation::Optimal, Allocation::kaplan(), c, K).unwrap();
        assert!((ceg(cx) - 1.0).abs() < 1e-9);
        // Converges then diverges: decreasing towards the crossing, increasing after.
        let below: Vec<f64> = (1..=6).map(|i| ceg(cx / 10f64.powi(i))).collect();
        let above: Vec<f64> = (1..=6).map(|i| ceg(cx * 10f64.powi(i))).collect();
        assert!(below.windows(2).all(|w| w[1] > w[0]) && above.windows(2).all(|w| w[1] > w[0]));
        assert!(below[0] > 1.0 && above[0] > 1.0);
        let r = compare_allocations(&law, Allocation::kaplan(), Allocation::Optimal, cx / 1e4, cx * 1e4, 81, K).unwrap();
        assert!((r.min_ceg.0 / cx - 1.0).abs() < 1e-9 && (r.min_ceg.1 - 1.0).abs() < 1e-9);
        assert!(r.points.iter().all(|p| p.ceg >= 1.0 - 1e-12 && p.loss_better <= p.loss_worse + 1e-12));
    }

    #[test]
    fn ceg_grows_as_c_to_one_minus_gamma_ratio_far_out() {
        // a = b = 0.3, p_K = 0.74: CEG ∝ C^(1 − 2p/(1+p)) = C^0.1494 asymptotically.
        let law = ChinchillaLaw { e: 2.0, a: 400.0, b: 400.0, alpha: 0.3, beta: 0.3 };
        let ceg = |c: f64| allocation_ceg(&law, Allocation::Optimal, Allocation::kaplan(), c, K).unwrap();
        let (c1, c2) = (1e200, 1e210);
        let slope = (ceg(c2).ln() - ceg(c1).ln()) / (c2.ln() - c1.ln());
        assert!((slope - (1.0 - 2.0 * 0.74 / 1.74)).abs() < 1e-3, "{slope}");
        let r = compare_allocations(&law, Allocation::kaplan(), Allocation::Optimal, 1e15, 1e25, 5, K).unwrap();
        assert!((r.asymptotic_ceg_exponent - (1.0 - 2.0 * 0.74 / 1.74)).abs() < 1e-12);
    }

    #[test]
    fn bad_laws_and_rules_are_rejected() {
        let mut law = hoffmann_law();
        law.alpha = 0.0;
        let e = allocation_ceg(&law, Allocation::Optimal, Allocation::kaplan(), 1e20, K).unwrap_err();
        assert!(e.to_string().contains("alpha"), "{e}");
        let bad = Allocation::PowerRule { coef: 20.0, exponent: -1.0 };
        assert!(allocation_ceg(&hoffmann_law(), Allocation::Optimal, bad, 1e20, K).is_err());
    }
}
