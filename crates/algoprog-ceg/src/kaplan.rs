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
//!   (closed form). Kaplan as the earlier paper's appendix used it:
//!   D = 831.4·N^0.74; Chinchilla's rule of thumb: D = 20·N (p = 1);
//! - a parameter rule N = n₀·(C/C₀)^a, D = C/(k·N): Kaplan et al. (2020)'s
//!   N_opt = 1.3e9·(C / 8.64e19 FLOPs)^0.73 (C₀ = one PF-day), as the later
//!   paper uses it;
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
//! **Kaplan rules by name** ([`KaplanRule`]): the three ways the papers and
//! the authors' code turn "Kaplan vs Chinchilla" into a number, each a CEG(C):
//! - [`KaplanRule::Appendix`]: D = 831.4·N^0.74 against D = 20·N (earlier
//!   paper, appendix), under Hoffmann et al.'s law;
//! - [`KaplanRule::Kaplan2020`] (default): Kaplan et al. (2020)'s N_opt rule
//!   against the loss-optimal allocation of Hoffmann et al.'s law,
//!   CEG(C) = C / C_opt(L_Kaplan(C)); 7.285 at 1e23 FLOPs;
//! - [`KaplanRule::Kaplan2020ClosedForm`]: the authors' closed-form fit of
//!   that curve, CEG(C) = 1.85e-20·C·(28737.9·C^−0.2482 + 20.337·C^−0.0756)^6.512
//!   (7.2876 at 1e23), which their decomposition uses.
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
/// Kaplan et al. (2020): N_opt = 1.3e9·(C / 1 PF-day)^0.73, coefficient.
pub const KAPLAN2020_PARAMS_COEF: f64 = 1.3e9;
/// One PF-day in FLOPs (1e15 FLOP/s × 86 400 s), the compute unit of Kaplan et al. (2020).
pub const PETAFLOP_DAY: f64 = 8.64e19;
/// Kaplan et al. (2020): exponent of N_opt in compute.
pub const KAPLAN2020_PARAMS_EXPONENT: f64 = 0.73;

/// The Chinchilla fit of Hoffmann et al. (2022), approach 3:
/// L = 1.69 + 406.4·N^−0.34 + 410.7·D^−0.28.
pub fn hoffmann_law() -> ChinchillaLaw {
    ChinchillaLaw {
        e: 1.69,
        a: 406.4,
        b: 410.7,
        alpha: 0.34,
        beta: 0.28,
    }
}

/// How a compute budget is split between parameters N and tokens D.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum Allocation {
    /// D = coef · N^exponent.
    PowerRule { coef: f64, exponent: f64 },
    /// N = coef · (C / unit)^exponent, D = C / (k·N).
    ParamsRule { coef: f64, unit: f64, exponent: f64 },
    /// The law's compute-optimal allocation (module docs).
    Optimal,
}

impl Allocation {
    /// Kaplan as the authors' code used it: D = 831.4·N^0.74.
    pub fn kaplan() -> Self {
        Allocation::PowerRule {
            coef: KAPLAN_COEF,
            exponent: KAPLAN_EXPONENT,
        }
    }

    /// Kaplan et al. (2020): N = 1.3e9·(C / 8.64e19)^0.73, D = C/(k·N).
    pub fn kaplan2020() -> Self {
        Allocation::ParamsRule {
            coef: KAPLAN2020_PARAMS_COEF,
            unit: PETAFLOP_DAY,
            exponent: KAPLAN2020_PARAMS_EXPONENT,
        }
    }

    /// Chinchilla's rule of thumb: D = 20·N.
    pub fn chinchilla() -> Self {
        Allocation::PowerRule {
            coef: CHINCHILLA_TOKENS_PER_PARAM,
            exponent: 1.0,
        }
    }

    /// A short label for tables and plots.
    pub fn label(&self) -> String {
        match *self {
            Allocation::PowerRule { coef, exponent }
                if coef == KAPLAN_COEF && exponent == KAPLAN_EXPONENT =>
            {
                "Kaplan D=831.4·N^0.74".into()
            }
            Allocation::PowerRule {
                coef,
                exponent: 1.0,
            } => format!("D={coef}·N"),
            Allocation::PowerRule { coef, exponent } => format!("D={coef}·N^{exponent}"),
            Allocation::ParamsRule {
                coef,
                unit,
                exponent,
            } if coef == KAPLAN2020_PARAMS_COEF
                && unit == PETAFLOP_DAY
                && exponent == KAPLAN2020_PARAMS_EXPONENT =>
            {
                "Kaplan 2020 N=1.3e9·C_PFd^0.73".into()
            }
            Allocation::ParamsRule {
                coef,
                unit,
                exponent,
            } => format!("N={coef:e}·(C/{unit:e})^{exponent}"),
            Allocation::Optimal => "optimal (law)".into(),
        }
    }

    fn check(&self) -> Result<()> {
        if let Allocation::PowerRule { coef, exponent } = *self {
            if !(coef > 0.0 && coef.is_finite()) {
                return Err(CegError::BadParameter {
                    name: "token-rule coefficient".into(),
                    value: coef,
                    why: "must be positive".into(),
                });
            }
            if !(exponent > 0.0 && exponent.is_finite()) {
                return Err(CegError::BadParameter {
                    name: "token-rule exponent p".into(),
                    value: exponent,
                    why: "must be positive (D grows with N)".into(),
                });
            }
        }
        if let Allocation::ParamsRule {
            coef,
            unit,
            exponent,
        } = *self
        {
            for (name, v) in [
                ("parameter-rule coefficient", coef),
                ("parameter-rule compute unit", unit),
            ] {
                if !(v > 0.0 && v.is_finite()) {
                    return Err(CegError::BadParameter {
                        name: name.into(),
                        value: v,
                        why: "must be positive and finite".into(),
                    });
                }
            }
            if !(exponent > 0.0 && exponent < 1.0) {
                return Err(CegError::BadParameter {
                    name: "parameter-rule exponent a in N ∝ C^a".into(),
                    value: exponent,
                    why: "must lie strictly between 0 and 1 (N and D = C/(kN) both grow with C)"
                        .into(),
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
            Allocation::ParamsRule {
                coef,
                unit,
                exponent,
            } => {
                let n = coef * (c / unit).powf(exponent);
                (n, c / (k * n))
            }
            Allocation::Optimal => law.optimal_allocation(c, k),
        }
    }

    /// The effective compute exponent of this path, γ(p) = min(α, pβ)/(1+p),
    /// or γ* = αβ/(α+β) for the optimal allocation.
    pub fn gamma(&self, law: &ChinchillaLaw) -> f64 {
        match *self {
            Allocation::PowerRule { exponent, .. } => gamma_of_path(law.alpha, law.beta, exponent),
            // N ∝ C^a, D ∝ C^(1−a): D ∝ N^p with p = (1 − a)/a.
            Allocation::ParamsRule { exponent, .. } => {
                gamma_of_path(law.alpha, law.beta, (1.0 - exponent) / exponent)
            }
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
    for (name, v) in [
        ("A", law.a),
        ("B", law.b),
        ("alpha", law.alpha),
        ("beta", law.beta),
    ] {
        if !(v > 0.0 && v.is_finite()) {
            return Err(CegError::BadParameter {
                name: format!("Chinchilla law {name}"),
                value: v,
                why: "must be positive; refit L(N, D) or pass a valid law".into(),
            });
        }
    }
    if !law.e.is_finite() {
        return Err(CegError::BadParameter {
            name: "Chinchilla law E".into(),
            value: law.e,
            why: "must be finite".into(),
        });
    }
    Ok(())
}

fn check_k(k: f64) -> Result<()> {
    if !(k > 0.0 && k.is_finite()) {
        return Err(CegError::BadParameter {
            name: "k in C = k·N·D".into(),
            value: k,
            why: "must be positive (6 by convention)".into(),
        });
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
/// Closed form for the optimal path; bisection in ln C for a power or
/// parameter rule (its loss falls monotonically with C because N and D both grow).
fn ln_compute_for_excess(
    law: &ChinchillaLaw,
    alloc: Allocation,
    excess: f64,
    k: f64,
) -> Result<f64> {
    let which = alloc.label();
    if !(excess > 0.0 && excess.is_finite()) {
        return Err(CegError::Unreachable {
            which,
            loss: law.e + excess,
            e: law.e,
        });
    }
    match alloc {
        Allocation::Optimal => {
            let s = law.alpha + law.beta;
            let g = (law.alpha * law.a / (law.beta * law.b)).powf(1.0 / s);
            let kstar = law.a * g.powf(-law.alpha) + law.b * g.powf(law.beta);
            Ok(k.ln() + (s / (law.alpha * law.beta)) * (kstar.ln() - excess.ln()))
        }
        Allocation::PowerRule { .. } | Allocation::ParamsRule { .. } => {
            let f = |lc: f64| path_excess(law, alloc, lc.exp(), k);
            let (mut lo, mut hi) = (0.0f64, 100.0f64);
            while f(lo) < excess {
                lo -= 50.0;
                if lo < -700.0 {
                    return Err(CegError::NoSolution {
                        which,
                        loss: law.e + excess,
                        why: "the loss is reached below 1e-300 FLOPs".into(),
                    });
                }
            }
            while f(hi) > excess {
                hi += 50.0;
                if hi > 700.0 {
                    return Err(CegError::NoSolution {
                        which,
                        loss: law.e + excess,
                        why: "the loss needs more than 1e300 FLOPs".into(),
                    });
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
pub fn allocation_ceg(
    law: &ChinchillaLaw,
    better: Allocation,
    worse: Allocation,
    c: f64,
    k: f64,
) -> Result<f64> {
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

/// Compute at which `alloc` picks the same (N, D) as the optimal allocation
/// (CEG of optimal over it exactly 1), for a power or parameter rule; `None`
/// for the optimal allocation itself or when the two paths are parallel.
pub fn optimal_crossing(law: &ChinchillaLaw, alloc: Allocation, k: f64) -> Option<f64> {
    match alloc {
        Allocation::PowerRule { coef, exponent } => allocation_crossing(law, coef, exponent, k),
        Allocation::ParamsRule {
            coef,
            unit,
            exponent,
        } => {
            // coef·(C/unit)^a = G·(C/k)^(β/s)  ⇒  ln C = (ln G − ln coef + a ln unit − (β/s) ln k) / (a − β/s)
            let s = law.alpha + law.beta;
            let denom = exponent - law.beta / s;
            if denom.abs() < 1e-12 {
                return None;
            }
            let g = (law.alpha * law.a / (law.beta * law.b)).powf(1.0 / s);
            Some(
                ((g.ln() - coef.ln() + exponent * unit.ln() - law.beta / s * k.ln()) / denom).exp(),
            )
        }
        Allocation::Optimal => None,
    }
}

/// The authors' closed-form fit of the Kaplan 2020 → Chinchilla rebalancing
/// CEG under Hoffmann et al.'s law (C in FLOPs):
/// CEG(C) = 1.85e-20·C·(28737.9·C^−0.2482 + 20.337·C^−0.0756)^6.512.
/// It tracks [`KaplanRule::Kaplan2020`]'s exact curve to within 0.13 % between
/// 1e15 and 1e25 FLOPs (7.2876 against 7.2846 at 1e23).
pub fn rebalancing_closed_form(c: f64) -> f64 {
    1.85e-20 * c * (28737.9 * c.powf(-0.2482) + 20.337 * c.powf(-0.0756)).powf(6.512)
}

/// "Kaplan vs Chinchilla" as the papers compute it, by name (module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KaplanRule {
    /// Earlier paper's appendix: D = 831.4·N^0.74 against Chinchilla's D = 20·N.
    Appendix,
    /// Kaplan et al. (2020), N = 1.3e9·(C/8.64e19)^0.73 and D = C/(6N),
    /// against the loss-optimal allocation: CEG(C) = C / C_opt(L_Kaplan(C)).
    ///
    /// The default: the later paper, whose decomposition and published
    /// Kaplan → Chinchilla numbers (7.285 at 1e23 FLOPs) follow this rule,
    /// and it is the exact curve of which the authors' code uses a fit.
    #[default]
    #[serde(alias = "kaplan-2020", alias = "kaplan_2020")]
    Kaplan2020,
    /// The authors' closed-form fit of [`KaplanRule::Kaplan2020`]'s curve
    /// ([`rebalancing_closed_form`]); what their decomposition evaluates.
    #[serde(
        alias = "kaplan2020-closed-form",
        alias = "closed-form",
        alias = "closed_form"
    )]
    Kaplan2020ClosedForm,
}

impl KaplanRule {
    /// Every rule, in the order above.
    pub const ALL: [KaplanRule; 3] = [
        KaplanRule::Appendix,
        KaplanRule::Kaplan2020,
        KaplanRule::Kaplan2020ClosedForm,
    ];

    /// The rule's name (as parsed by [`KaplanRule::from_name`]).
    pub fn name(self) -> &'static str {
        match self {
            KaplanRule::Appendix => "appendix",
            KaplanRule::Kaplan2020 => "kaplan2020",
            KaplanRule::Kaplan2020ClosedForm => "kaplan2020-closed-form",
        }
    }

    /// One line saying what the rule compares.
    pub fn description(self) -> &'static str {
        match self {
            KaplanRule::Appendix => "D = 831.4·N^0.74 (Kaplan, appendix) against D = 20·N (Chinchilla) under L(N, D)",
            KaplanRule::Kaplan2020 => {
                "N = 1.3e9·(C/8.64e19)^0.73, D = C/(6N) (Kaplan et al. 2020) against the loss-optimal allocation of L(N, D): C / C_opt(L_Kaplan(C))"
            }
            KaplanRule::Kaplan2020ClosedForm => {
                "the authors' closed-form fit 1.85e-20·C·(28737.9·C^-0.2482 + 20.337·C^-0.0756)^6.512 of the Kaplan 2020 curve (Hoffmann et al.'s law only)"
            }
        }
    }

    /// Parse a rule name: `appendix`, `kaplan2020` (also `kaplan-2020`,
    /// `kaplan_2020`), `kaplan2020-closed-form` (also `closed-form`).
    pub fn from_name(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase().replace('_', "-");
        Ok(match t.as_str() {
            "appendix" | "kaplan-appendix" => KaplanRule::Appendix,
            "kaplan2020" | "kaplan-2020" => KaplanRule::Kaplan2020,
            "kaplan2020-closed-form" | "kaplan-2020-closed-form" | "closed-form" => {
                KaplanRule::Kaplan2020ClosedForm
            }
            _ => {
                return Err(CegError::BadName {
                    what: "Kaplan rule".into(),
                    name: s.into(),
                    expected: KaplanRule::ALL
                        .iter()
                        .map(|r| r.name())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
        })
    }

    /// The (worse, better) allocations the rule compares; `None` for the
    /// closed form, which is a fitted curve, not an allocation.
    pub fn allocations(self) -> Option<(Allocation, Allocation)> {
        match self {
            KaplanRule::Appendix => Some((Allocation::kaplan(), Allocation::chinchilla())),
            KaplanRule::Kaplan2020 => Some((Allocation::kaplan2020(), Allocation::Optimal)),
            KaplanRule::Kaplan2020ClosedForm => None,
        }
    }

    /// CEG of the better allocation over Kaplan's at compute `c` under
    /// Hoffmann et al.'s law with C = 6·N·D.
    pub fn ceg(self, c: f64) -> Result<f64> {
        self.ceg_under(&hoffmann_law(), c, FLOPS_PER_PARAM_TOKEN)
    }

    /// CEG at compute `c` under `law` and C = k·N·D. The closed form is a fit
    /// to Hoffmann et al.'s law with k = 6 and refuses any other law or k.
    pub fn ceg_under(self, law: &ChinchillaLaw, c: f64, k: f64) -> Result<f64> {
        if !(c > 0.0 && c.is_finite()) {
            return Err(CegError::BadParameter {
                name: "compute".into(),
                value: c,
                why: "must be positive and finite".into(),
            });
        }
        match self.allocations() {
            Some((worse, better)) => allocation_ceg(law, better, worse, c, k),
            None => {
                if *law != hoffmann_law() || k != FLOPS_PER_PARAM_TOKEN {
                    return Err(CegError::BadParameter {
                        name: "law for the closed-form Kaplan rule".into(),
                        value: k,
                        why: "the closed form is a fit to Hoffmann et al.'s law with C = 6·N·D; use the `kaplan2020` rule for another law or k".into(),
                    });
                }
                Ok(rebalancing_closed_form(c))
            }
        }
    }
}

impl std::fmt::Display for KaplanRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for KaplanRule {
    type Err = CegError;
    fn from_str(s: &str) -> Result<Self> {
        KaplanRule::from_name(s)
    }
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
    let min = points
        .iter()
        .min_by(|a, b| a.ceg.total_cmp(&b.ceg))
        .map(|p| (p.compute, p.ceg))
        .unwrap();
    let gw = worse.gamma(law);
    let gb = better.gamma(law);
    let crossing_compute = match better {
        Allocation::Optimal => optimal_crossing(law, worse, k),
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
                assert!(
                    gamma_of_path(a, b, p) <= gs + 1e-15,
                    "p = {p} beats p* = {ps}"
                );
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
        for alloc in [
            Allocation::kaplan(),
            Allocation::Optimal,
            Allocation::chinchilla(),
        ] {
            for c in [1e15, 1e19, 1e23] {
                let l = path_loss(&law, alloc, c, K);
                let back = compute_for_loss(&law, alloc, l, K).unwrap();
                assert!(
                    (back / c - 1.0).abs() < 1e-9,
                    "{alloc:?} at {c:e}: {back:e}"
                );
            }
        }
        assert!(matches!(
            compute_for_loss(&law, Allocation::Optimal, 1.6, K),
            Err(CegError::Unreachable { .. })
        ));
    }

    #[test]
    fn optimal_over_kaplan_is_one_at_the_crossing_and_grows_both_ways() {
        let law = hoffmann_law();
        let cx = allocation_crossing(&law, KAPLAN_COEF, KAPLAN_EXPONENT, K).unwrap();
        // Same (N, D) there.
        let (nk, dk) = Allocation::kaplan().split(&law, cx, K);
        let (no, d_o) = law.optimal_allocation(cx, K);
        assert!((nk / no - 1.0).abs() < 1e-9 && (dk / d_o - 1.0).abs() < 1e-9);
        let ceg =
            |c: f64| allocation_ceg(&law, Allocation::Optimal, Allocation::kaplan(), c, K).unwrap();
        assert!((ceg(cx) - 1.0).abs() < 1e-9);
        // Converges then diverges: decreasing towards the crossing, increasing after.
        let below: Vec<f64> = (1..=6).map(|i| ceg(cx / 10f64.powi(i))).collect();
        let above: Vec<f64> = (1..=6).map(|i| ceg(cx * 10f64.powi(i))).collect();
        assert!(below.windows(2).all(|w| w[1] > w[0]) && above.windows(2).all(|w| w[1] > w[0]));
        assert!(below[0] > 1.0 && above[0] > 1.0);
        let r = compare_allocations(
            &law,
            Allocation::kaplan(),
            Allocation::Optimal,
            cx / 1e4,
            cx * 1e4,
            81,
            K,
        )
        .unwrap();
        assert!((r.min_ceg.0 / cx - 1.0).abs() < 1e-9 && (r.min_ceg.1 - 1.0).abs() < 1e-9);
        assert!(r
            .points
            .iter()
            .all(|p| p.ceg >= 1.0 - 1e-12 && p.loss_better <= p.loss_worse + 1e-12));
    }

    #[test]
    fn ceg_grows_as_c_to_one_minus_gamma_ratio_far_out() {
        // a = b = 0.3, p_K = 0.74: CEG ∝ C^(1 − 2p/(1+p)) = C^0.1494 asymptotically.
        let law = ChinchillaLaw {
            e: 2.0,
            a: 400.0,
            b: 400.0,
            alpha: 0.3,
            beta: 0.3,
        };
        let ceg =
            |c: f64| allocation_ceg(&law, Allocation::Optimal, Allocation::kaplan(), c, K).unwrap();
        let (c1, c2) = (1e200, 1e210);
        let slope = (ceg(c2).ln() - ceg(c1).ln()) / (c2.ln() - c1.ln());
        assert!((slope - (1.0 - 2.0 * 0.74 / 1.74)).abs() < 1e-3, "{slope}");
        let r = compare_allocations(
            &law,
            Allocation::kaplan(),
            Allocation::Optimal,
            1e15,
            1e25,
            5,
            K,
        )
        .unwrap();
        assert!((r.asymptotic_ceg_exponent - (1.0 - 2.0 * 0.74 / 1.74)).abs() < 1e-12);
    }

    #[test]
    fn kaplan2020_under_hoffmann_is_the_published_7_285_at_1e23() {
        // C / C_opt(L_Kaplan(C)) at 1e23 FLOPs: 7.2846 (published: 7.285).
        let ceg = KaplanRule::Kaplan2020.ceg(1e23).unwrap();
        assert!((ceg - 7.285).abs() < 5e-4, "{ceg}");
        assert!((ceg - 7.284634).abs() < 1e-5, "{ceg}");
        // By hand: N = 1.3e9·(1e23/8.64e19)^0.73, D = 1e23/(6N), optimal compute for that loss in closed form.
        let law = hoffmann_law();
        let n = 1.3e9 * (1e23f64 / 8.64e19).powf(0.73);
        let d = 1e23 / (6.0 * n);
        let c_opt = compute_for_loss(&law, Allocation::Optimal, law.loss(n, d), 6.0).unwrap();
        assert!((1e23 / c_opt / ceg - 1.0).abs() < 1e-9);
        let (n2, d2) = Allocation::kaplan2020().split(&law, 1e23, 6.0);
        assert!((n2 / n - 1.0).abs() < 1e-12 && (d2 / d - 1.0).abs() < 1e-12);
        // The authors' closed form: 7.2876 at 1e23, within 0.1 % of the exact curve from 1e15 to 1e25.
        let cf = KaplanRule::Kaplan2020ClosedForm.ceg(1e23).unwrap();
        assert!((cf - 7.2876).abs() < 5e-5, "{cf}");
        for c in [1e15, 1e17, 1e19, 1e21, 1e23, 1e25] {
            let (x, y) = (
                KaplanRule::Kaplan2020.ceg(c).unwrap(),
                rebalancing_closed_form(c),
            );
            assert!(
                (x / y - 1.0).abs() < 2e-3,
                "{c:e}: exact {x} closed form {y}"
            );
        }
    }

    #[test]
    fn kaplan2020_path_crosses_the_optimum_once_and_has_the_expected_gamma() {
        let law = hoffmann_law();
        let cx = optimal_crossing(&law, Allocation::kaplan2020(), K).unwrap();
        let ceg = |c: f64| {
            allocation_ceg(&law, Allocation::Optimal, Allocation::kaplan2020(), c, K).unwrap()
        };
        assert!((ceg(cx) - 1.0).abs() < 1e-9, "{cx:e}");
        assert!(ceg(cx * 100.0) > 1.0 && ceg(cx / 100.0) > 1.0);
        // N ∝ C^0.73 means D ∝ N^(0.27/0.73).
        let g = Allocation::kaplan2020().gamma(&law);
        assert!((g - (0.34f64 * 0.73).min(0.28 * 0.27)).abs() < 1e-12, "{g}");
    }

    #[test]
    fn rules_by_name() {
        for r in KaplanRule::ALL {
            assert_eq!(KaplanRule::from_name(r.name()).unwrap(), r);
        }
        assert_eq!(KaplanRule::default(), KaplanRule::Kaplan2020);
        assert_eq!(
            "Kaplan_2020".parse::<KaplanRule>().unwrap(),
            KaplanRule::Kaplan2020
        );
        let e = KaplanRule::from_name("kaplan2019").unwrap_err().to_string();
        assert!(
            e.contains("kaplan2019") && e.contains("appendix, kaplan2020, kaplan2020-closed-form"),
            "{e}"
        );
        // Appendix: D = 831.4·N^0.74 against D = 20·N, by hand at 1e22.
        let law = hoffmann_law();
        let want = allocation_ceg(
            &law,
            Allocation::chinchilla(),
            Allocation::kaplan(),
            1e22,
            K,
        )
        .unwrap();
        assert_eq!(KaplanRule::Appendix.ceg(1e22).unwrap(), want);
        let mut other = law;
        other.e = 1.8;
        assert!(KaplanRule::Kaplan2020ClosedForm
            .ceg_under(&other, 1e22, K)
            .is_err());
        assert!(KaplanRule::Kaplan2020.ceg(-1.0).is_err());
        // Settings files: the snake_case name, or the CLI's names.
        for (json, r) in [
            (
                "\"kaplan2020_closed_form\"",
                KaplanRule::Kaplan2020ClosedForm,
            ),
            ("\"closed-form\"", KaplanRule::Kaplan2020ClosedForm),
            ("\"kaplan-2020\"", KaplanRule::Kaplan2020),
            ("\"appendix\"", KaplanRule::Appendix),
        ] {
            assert_eq!(serde_json::from_str::<KaplanRule>(json).unwrap(), r);
        }
    }

    #[test]
    fn bad_laws_and_rules_are_rejected() {
        let mut law = hoffmann_law();
        law.alpha = 0.0;
        let e =
            allocation_ceg(&law, Allocation::Optimal, Allocation::kaplan(), 1e20, K).unwrap_err();
        assert!(e.to_string().contains("alpha"), "{e}");
        let bad = Allocation::PowerRule {
            coef: 20.0,
            exponent: -1.0,
        };
        assert!(allocation_ceg(&hoffmann_law(), Allocation::Optimal, bad, 1e20, K).is_err());
    }
}
