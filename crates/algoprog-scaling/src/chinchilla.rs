//! Chinchilla approach 3 (Hoffmann et al. 2022; Besiroglu et al. 2024):
//! L(N, D) = E + A/N^α + B/D^β fitted in log space.
//!
//! Parameterisation θ = (a, b, e, α, β) with A = exp(a), B = exp(b), E = exp(e):
//! log L̂ = LSE(a − α·log N, b − β·log D, e). The objective is the **summed**
//! Huber loss (δ = 1e-3 by default) of log L − log L̂ (a mean shrinks the
//! gradient and stops L-BFGS early). It is minimised with argmin's L-BFGS
//! (More–Thuente line search, memory 10, analytic gradient) from every start
//! of a grid — by default the published grid α, β ∈ {0, .5, …, 2},
//! e ∈ {−1, −.5, …, 1}, a, b ∈ {0, 5, …, 25} (4,500 starts) — run in
//! parallel with rayon; the start with the lowest objective wins (ties: the
//! first start in grid order, so the result does not depend on thread count).

use std::cell::RefCell;

use argmin::core::{CostFunction, Executor, Gradient, State};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::curve::Curve;
use crate::error::{Result, ScalingError};
use crate::law::ChinchillaLaw;

/// Where D (tokens) comes from when building fit data from curves.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum TokensSource {
    /// The points' `tokens` (the tokens column).
    Column,
    /// D = C / (k·N), e.g. k = 6 (C = 6ND).
    FromCompute { k: f64 },
}

/// Points (N, D, L) for a Chinchilla fit, with the index of the run each
/// point came from (for resampling whole runs).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChinchillaData {
    /// Parameter counts N.
    pub n: Vec<f64>,
    /// Token counts D.
    pub d: Vec<f64>,
    /// Losses L.
    pub loss: Vec<f64>,
    /// Run (group) index of each point.
    pub run: Vec<usize>,
}

impl ChinchillaData {
    /// Data from explicit vectors; every point is its own run. All values must
    /// be positive and finite.
    pub fn new(n: Vec<f64>, d: Vec<f64>, loss: Vec<f64>) -> Result<Self> {
        let run = (0..n.len()).collect();
        let data = Self { n, d, loss, run };
        data.validate()?;
        Ok(data)
    }

    fn validate(&self) -> Result<()> {
        let len = self.n.len();
        if self.d.len() != len || self.loss.len() != len || self.run.len() != len {
            return Err(ScalingError::InvalidData(
                "N, D, loss and run vectors differ in length".into(),
            ));
        }
        for i in 0..len {
            for (what, v) in [("N", self.n[i]), ("D", self.d[i]), ("loss", self.loss[i])] {
                if !(v.is_finite() && v > 0.0) {
                    return Err(ScalingError::InvalidData(format!(
                        "point {i}: {what} = {v}; the Chinchilla fit works in log space and needs positive finite N, D and loss"
                    )));
                }
            }
        }
        Ok(())
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.n.len()
    }

    /// True when there are no points.
    pub fn is_empty(&self) -> bool {
        self.n.is_empty()
    }

    /// Number of distinct runs (max run index + 1).
    pub fn n_runs(&self) -> usize {
        self.run.iter().max().map_or(0, |m| m + 1)
    }

    /// Every point of every non-diverged curve. N is `meta.params` (an error
    /// naming the run when missing). Points with zero compute or zero tokens
    /// (evaluations before training) are left out: log D is undefined there.
    /// Negative or non-finite compute, tokens, N or k are errors naming the
    /// run: they are corrupt logs, not points to drop quietly.
    pub fn from_curves(curves: &[Curve], tokens: TokensSource) -> Result<Self> {
        if let TokensSource::FromCompute { k } = tokens {
            if !(k.is_finite() && k > 0.0) {
                return Err(ScalingError::InvalidOption(format!(
                    "k in D = C / (k·N) must be a positive number (6 for C = 6ND), got {k}"
                )));
            }
        }
        let mut out = Self::default();
        let mut run_idx = 0;
        for c in curves.iter().filter(|c| !c.meta.diverged) {
            let n = c.meta.params.ok_or_else(|| {
                ScalingError::InvalidData(format!(
                    "run `{}` has no parameter count; map a parameter column (--params-col) or give `params` in run.json",
                    c.meta.run_id
                ))
            })?;
            if !(n.is_finite() && n > 0.0) {
                return Err(ScalingError::InvalidData(format!(
                    "run `{}` has parameter count N = {n}; N must be a positive number (check the parameter column)",
                    c.meta.run_id
                )));
            }
            let mut any = false;
            for p in &c.points {
                if !(p.flops >= 0.0 && p.flops.is_finite()) {
                    return Err(ScalingError::InvalidData(format!(
                        "run `{}`, step {}: compute = {}; training compute must be a finite number ≥ 0 (check the compute column)",
                        c.meta.run_id, p.step, p.flops
                    )));
                }
                if p.flops == 0.0 {
                    continue;
                }
                let d = match tokens {
                    TokensSource::Column => {
                        if p.tokens.is_nan() {
                            return Err(ScalingError::InvalidData(format!(
                                "run `{}` has no token counts; map a tokens column (--tokens-col) or derive D from compute (--tokens-from-compute)",
                                c.meta.run_id
                            )));
                        }
                        if !(p.tokens >= 0.0 && p.tokens.is_finite()) {
                            return Err(ScalingError::InvalidData(format!(
                                "run `{}`, step {}: tokens = {}; token counts must be finite numbers ≥ 0 (check the tokens column)",
                                c.meta.run_id, p.step, p.tokens
                            )));
                        }
                        p.tokens
                    }
                    TokensSource::FromCompute { k } => p.flops / (k * n),
                };
                if d == 0.0 {
                    continue;
                }
                if !(p.loss.is_finite() && p.loss > 0.0) {
                    return Err(ScalingError::InvalidData(format!(
                        "run `{}`, step {}: loss = {}; the Chinchilla fit works in log space and needs positive finite losses \
                         (load with --nan-as-diverged to treat NaN/inf as divergence)",
                        c.meta.run_id, p.step, p.loss
                    )));
                }
                out.n.push(n);
                out.d.push(d);
                out.loss.push(p.loss);
                out.run.push(run_idx);
                any = true;
            }
            if any {
                run_idx += 1;
            }
        }
        out.validate()?;
        Ok(out)
    }

    /// The points at `idx` (with repetition), keeping run labels.
    pub fn subset(&self, idx: &[usize]) -> Self {
        Self {
            n: idx.iter().map(|&i| self.n[i]).collect(),
            d: idx.iter().map(|&i| self.d[i]).collect(),
            loss: idx.iter().map(|&i| self.loss[i]).collect(),
            run: idx.iter().map(|&i| self.run[i]).collect(),
        }
    }
}

/// The per-point loss summed by the objective.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum RobustLoss {
    /// Huber with threshold δ (scipy.special.huber): r²/2 for |r| ≤ δ, else δ(|r| − δ/2).
    Huber { delta: f64 },
    /// Least squares r²/2 (for comparison; not robust to outliers).
    Squared,
}

impl Default for RobustLoss {
    fn default() -> Self {
        RobustLoss::Huber { delta: 1e-3 }
    }
}

impl RobustLoss {
    #[inline]
    fn value_and_slope(self, r: f64) -> (f64, f64) {
        match self {
            RobustLoss::Huber { delta } => {
                if r.abs() <= delta {
                    (0.5 * r * r, r)
                } else {
                    (delta * (r.abs() - 0.5 * delta), delta * r.signum())
                }
            }
            RobustLoss::Squared => (0.5 * r * r, r),
        }
    }
}

/// A grid of starting points θ = (a, b, e, α, β); every combination is a start.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StartGrid {
    pub a: Vec<f64>,
    pub b: Vec<f64>,
    pub e: Vec<f64>,
    pub alpha: Vec<f64>,
    pub beta: Vec<f64>,
}

impl Default for StartGrid {
    fn default() -> Self {
        Self::published()
    }
}

impl StartGrid {
    /// The published grid: α, β ∈ {0, .5, …, 2}, e ∈ {−1, −.5, …, 1},
    /// a, b ∈ {0, 5, …, 25}: 5·5·5·6·6 = 4,500 starts.
    pub fn published() -> Self {
        let ab: Vec<f64> = (0..6).map(|i| 5.0 * i as f64).collect();
        let exps: Vec<f64> = (0..5).map(|i| 0.5 * i as f64).collect();
        let es: Vec<f64> = (0..5).map(|i| -1.0 + 0.5 * i as f64).collect();
        Self {
            a: ab.clone(),
            b: ab,
            e: es,
            alpha: exps.clone(),
            beta: exps,
        }
    }

    /// A grid of single points (one start).
    pub fn single(theta: [f64; 5]) -> Self {
        Self {
            a: vec![theta[0]],
            b: vec![theta[1]],
            e: vec![theta[2]],
            alpha: vec![theta[3]],
            beta: vec![theta[4]],
        }
    }

    /// Every start, in a fixed order (α outermost, then β, e, a, b).
    pub fn starts(&self) -> Vec<[f64; 5]> {
        let mut v = Vec::with_capacity(self.len());
        for &alpha in &self.alpha {
            for &beta in &self.beta {
                for &e in &self.e {
                    for &a in &self.a {
                        for &b in &self.b {
                            v.push([a, b, e, alpha, beta]);
                        }
                    }
                }
            }
        }
        v
    }

    /// Number of starts.
    pub fn len(&self) -> usize {
        self.a.len() * self.b.len() * self.e.len() * self.alpha.len() * self.beta.len()
    }

    /// True when the grid has no start.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Options of the Chinchilla fit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChinchillaOptions {
    /// Per-point loss (default Huber δ = 1e-3), summed.
    pub loss: RobustLoss,
    /// Starting points (default: the published 4,500-start grid).
    pub grid: StartGrid,
    /// L-BFGS iteration cap per start.
    pub max_iters: u64,
    /// Stop when the gradient's L2 norm is below this.
    pub tol_grad: f64,
    /// Stop when the objective changes by less than this × max(|f(start)|, 1)
    /// between iterations. Default 1e-12. scipy's L-BFGS-B default (ftol
    /// 2.2e-9) reaches the same best objective over the grid but stops single
    /// starts early along the poorly identified A–α and B–β ridges, which
    /// makes bootstrap refits (started near the full-data optimum) barely move
    /// and the intervals far too narrow; use [`ChinchillaOptions::scipy_tolerances`]
    /// to reproduce scipy's stopping rule.
    pub tol_cost: f64,
    /// L-BFGS memory (scipy's maxcor default: 10).
    pub memory: usize,
    /// Skip starts that cannot win (see [`Pruning`]).
    pub pruning: Pruning,
}

impl Default for ChinchillaOptions {
    fn default() -> Self {
        Self {
            loss: RobustLoss::default(),
            grid: StartGrid::published(),
            max_iters: 1000,
            tol_grad: 1e-9,
            tol_cost: 1e-12,
            memory: 10,
            pruning: Pruning::default(),
        }
    }
}

impl ChinchillaOptions {
    /// scipy L-BFGS-B's default stopping rule (ftol = 2.2e-9 relative to
    /// max(|f|, 1); the gradient test is left at `tol_grad`).
    pub fn scipy_tolerances(mut self) -> Self {
        self.tol_cost = 2.220446049250313e-9;
        self
    }
}

/// Pruning of starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum Pruning {
    /// Run every start to convergence.
    #[default]
    None,
    /// Run every start for `screen_iters` L-BFGS iterations, then continue
    /// only the `keep` starts with the lowest objective, after merging starts
    /// that have reached the same point (within 1e-6 in every coordinate).
    Screen { screen_iters: u64, keep: usize },
}

/// Result of one start.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct StartResult {
    /// Index of the start in grid order.
    pub start: usize,
    /// Final θ = (a, b, e, α, β).
    pub theta: [f64; 5],
    /// Final objective (NaN when the start failed).
    pub objective: f64,
    /// L-BFGS iterations taken.
    pub iters: u64,
}

/// A fitted Chinchilla law with diagnostics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChinchillaFit {
    /// E, A, B, α, β.
    pub law: ChinchillaLaw,
    /// θ = (a, b, e, α, β) with A = e^a, B = e^b, E = e^e.
    pub theta: [f64; 5],
    /// Summed robust loss at the optimum.
    pub objective: f64,
    /// Starts tried.
    pub starts: usize,
    /// Starts that failed (non-finite objective or line-search failure).
    pub failed_starts: usize,
    /// Starts run to convergence (all of them without pruning).
    pub full_starts: usize,
    /// Starts that ended within 1e-9 (relative) of the best objective.
    pub starts_at_best: usize,
    /// Objective and gradient evaluations, all starts together.
    pub evaluations: u64,
    /// Points fitted.
    pub n_points: usize,
    /// R² of log L against log L̂.
    pub r2_log: f64,
    /// Distinct end points of the starts, best first (at most 8).
    pub local_optima: Vec<StartResult>,
}

/// How many distinct local optima a fit keeps.
const MAX_LOCAL_OPTIMA: usize = 8;

impl ChinchillaFit {
    /// Exponents of the compute-optimal allocation: N_opt ∝ C^a_n, D_opt ∝ C^b_d
    /// with a_n = β/(α+β), b_d = α/(α+β).
    pub fn allocation_exponents(&self) -> (f64, f64) {
        let s = self.law.alpha + self.law.beta;
        (self.law.beta / s, self.law.alpha / s)
    }

    /// Compute-optimal allocation at compute `c` with C = k·N·D
    /// ([`ChinchillaLaw::optimal_allocation`]).
    pub fn allocation(&self, c: f64, k: f64) -> Allocation {
        let (n, d) = self.law.optimal_allocation(c, k);
        Allocation {
            compute: c,
            n_opt: n,
            d_opt: d,
            tokens_per_param: d / n,
            loss: self.law.loss(n, d),
        }
    }
}

/// Compute-optimal N, D at a compute budget.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Allocation {
    pub compute: f64,
    pub n_opt: f64,
    pub d_opt: f64,
    /// D_opt / N_opt.
    pub tokens_per_param: f64,
    /// Predicted loss at (N_opt, D_opt).
    pub loss: f64,
}

/// The log-space objective with an analytic gradient. Cost and gradient are
/// computed together and cached, since the line search asks for both at the
/// same point.
struct Objective<'a> {
    log_n: &'a [f64],
    log_d: &'a [f64],
    log_l: &'a [f64],
    loss: RobustLoss,
    cache: RefCell<([f64; 5], f64, [f64; 5], bool)>,
    evals: RefCell<u64>,
}

impl<'a> Objective<'a> {
    fn new(log_n: &'a [f64], log_d: &'a [f64], log_l: &'a [f64], loss: RobustLoss) -> Self {
        Self {
            log_n,
            log_d,
            log_l,
            loss,
            cache: RefCell::new(([0.0; 5], 0.0, [0.0; 5], false)),
            evals: RefCell::new(0),
        }
    }

    fn eval(&self, t: &[f64]) -> (f64, [f64; 5]) {
        let th = [t[0], t[1], t[2], t[3], t[4]];
        {
            let c = self.cache.borrow();
            if c.3 && c.0 == th {
                return (c.1, c.2);
            }
        }
        *self.evals.borrow_mut() += 1;
        let (f, g) = objective_and_gradient(self.log_n, self.log_d, self.log_l, self.loss, &th);
        *self.cache.borrow_mut() = (th, f, g, true);
        (f, g)
    }
}

/// Summed robust loss of log L − LSE(a − α log N, b − β log D, e) and its gradient.
fn objective_and_gradient(
    log_n: &[f64],
    log_d: &[f64],
    log_l: &[f64],
    loss: RobustLoss,
    th: &[f64; 5],
) -> (f64, [f64; 5]) {
    let [a, b, e, alpha, beta] = *th;
    let mut f = 0.0;
    let (mut ga, mut gb, mut ge, mut gal, mut gbe) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for i in 0..log_n.len() {
        let t1 = a - alpha * log_n[i];
        let t2 = b - beta * log_d[i];
        let t3 = e;
        let m = t1.max(t2).max(t3);
        let x1 = (t1 - m).exp();
        let x2 = (t2 - m).exp();
        let x3 = (t3 - m).exp();
        let s = x1 + x2 + x3;
        let lse = m + s.ln();
        let r = lse - log_l[i];
        let (v, slope) = loss.value_and_slope(r);
        f += v;
        let w = slope / s;
        let (w1, w2, w3) = (w * x1, w * x2, w * x3);
        ga += w1;
        gb += w2;
        ge += w3;
        gal -= w1 * log_n[i];
        gbe -= w2 * log_d[i];
    }
    (f, [ga, gb, ge, gal, gbe])
}

impl CostFunction for Objective<'_> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, p: &Vec<f64>) -> std::result::Result<f64, argmin::core::Error> {
        Ok(self.eval(p).0)
    }
}

impl Gradient for Objective<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, p: &Vec<f64>) -> std::result::Result<Vec<f64>, argmin::core::Error> {
        Ok(self.eval(p).1.to_vec())
    }
}

/// Log-transformed data shared by all starts.
struct LogData {
    log_n: Vec<f64>,
    log_d: Vec<f64>,
    log_l: Vec<f64>,
}

impl LogData {
    fn new(data: &ChinchillaData) -> Self {
        Self {
            log_n: data.n.iter().map(|x| x.ln()).collect(),
            log_d: data.d.iter().map(|x| x.ln()).collect(),
            log_l: data.loss.iter().map(|x| x.ln()).collect(),
        }
    }
}

/// Run L-BFGS from `theta0` for at most `max_iters` iterations.
fn run_start(
    ld: &LogData,
    opts: &ChinchillaOptions,
    start: usize,
    theta0: [f64; 5],
    max_iters: u64,
) -> (StartResult, u64) {
    let obj = Objective::new(&ld.log_n, &ld.log_d, &ld.log_l, opts.loss);
    let f0 = obj.eval(&theta0).0;
    let failed = |evals| {
        (
            StartResult {
                start,
                theta: theta0,
                objective: f64::NAN,
                iters: 0,
            },
            evals,
        )
    };
    if !f0.is_finite() {
        return failed(1);
    }
    // scipy's ftol is relative to max(|f|, 1); the objective here is small, so
    // scale the absolute tolerance argmin uses by the starting magnitude.
    let tol_cost = opts.tol_cost * f0.abs().max(1.0);
    let ls = MoreThuenteLineSearch::new();
    let solver = match LBFGS::new(ls, opts.memory)
        .with_tolerance_grad(opts.tol_grad)
        .and_then(|s| s.with_tolerance_cost(tol_cost))
    {
        Ok(s) => s,
        Err(_) => return failed(1),
    };
    let res = Executor::new(obj, solver)
        .configure(|st| st.param(theta0.to_vec()).max_iters(max_iters))
        .timer(false)
        .run();
    match res {
        Ok(r) => {
            let evals = r.problem.problem.as_ref().map_or(0, |o| *o.evals.borrow());
            let st = r.state();
            let best = st.get_best_param().cloned();
            let cost = st.get_best_cost();
            match best {
                Some(p) if cost.is_finite() => (
                    StartResult {
                        start,
                        theta: [p[0], p[1], p[2], p[3], p[4]],
                        objective: cost,
                        iters: st.get_iter(),
                    },
                    evals,
                ),
                _ => failed(evals),
            }
        }
        Err(_) => failed(0),
    }
}

fn better(x: &StartResult, y: &StartResult) -> bool {
    // lower objective wins; NaN loses; ties go to the earlier start
    match (x.objective.is_nan(), y.objective.is_nan()) {
        (true, true) => x.start < y.start,
        (true, false) => false,
        (false, true) => true,
        _ => x.objective < y.objective || (x.objective == y.objective && x.start < y.start),
    }
}

/// Fit the Chinchilla form to `data` (see the module docs for the procedure).
pub fn fit_chinchilla(data: &ChinchillaData, opts: &ChinchillaOptions) -> Result<ChinchillaFit> {
    let starts = opts.grid.starts();
    fit_from_starts(data, opts, &starts)
}

/// Fit from explicit starting points θ = (a, b, e, α, β) (e.g. a previous
/// optimum for bootstrap refits); otherwise as [`fit_chinchilla`].
pub fn fit_from_starts(
    data: &ChinchillaData,
    opts: &ChinchillaOptions,
    starts: &[[f64; 5]],
) -> Result<ChinchillaFit> {
    fit_impl(data, opts, starts, true)
}

/// As [`fit_from_starts`] on the calling thread only (for callers that are
/// already parallel, e.g. bootstrap replicates).
pub fn fit_from_starts_sequential(
    data: &ChinchillaData,
    opts: &ChinchillaOptions,
    starts: &[[f64; 5]],
) -> Result<ChinchillaFit> {
    fit_impl(data, opts, starts, false)
}

fn map_maybe_par<T: Send, F: Fn(usize) -> T + Sync + Send>(
    parallel: bool,
    n: usize,
    f: F,
) -> Vec<T> {
    if parallel {
        (0..n).into_par_iter().map(f).collect()
    } else {
        (0..n).map(f).collect()
    }
}

fn fit_impl(
    data: &ChinchillaData,
    opts: &ChinchillaOptions,
    starts: &[[f64; 5]],
    parallel: bool,
) -> Result<ChinchillaFit> {
    data.validate()?;
    if data.len() < 5 {
        return Err(ScalingError::InsufficientData(format!(
            "the Chinchilla form has 5 parameters; got {} points",
            data.len()
        )));
    }
    if starts.is_empty() {
        return Err(ScalingError::InvalidOption(
            "the start grid is empty".into(),
        ));
    }
    if let RobustLoss::Huber { delta } = opts.loss {
        if delta.is_nan() || delta <= 0.0 {
            return Err(ScalingError::InvalidOption(format!(
                "Huber delta must be positive, got {delta}"
            )));
        }
    }
    check_identifiable(data)?;
    let ld = LogData::new(data);
    let (results, evaluations, full_starts) = match opts.pruning {
        Pruning::None => {
            let r: Vec<(StartResult, u64)> = map_maybe_par(parallel, starts.len(), |i| {
                run_start(&ld, opts, i, starts[i], opts.max_iters)
            });
            let ev = r.iter().map(|x| x.1).sum();
            (
                r.into_iter().map(|x| x.0).collect::<Vec<_>>(),
                ev,
                starts.len(),
            )
        }
        Pruning::Screen { screen_iters, keep } => {
            let r: Vec<(StartResult, u64)> = map_maybe_par(parallel, starts.len(), |i| {
                run_start(&ld, opts, i, starts[i], screen_iters)
            });
            let mut ev: u64 = r.iter().map(|x| x.1).sum();
            let mut screened: Vec<StartResult> = r.into_iter().map(|x| x.0).collect();
            let mut order: Vec<usize> = (0..screened.len())
                .filter(|&i| screened[i].objective.is_finite())
                .collect();
            order.sort_by(|&i, &j| {
                screened[i]
                    .objective
                    .total_cmp(&screened[j].objective)
                    .then(i.cmp(&j))
            });
            let mut chosen: Vec<usize> = Vec::new();
            for i in order {
                if chosen.len() >= keep {
                    break;
                }
                let ti = screened[i].theta;
                let dup = chosen.iter().any(|&j| {
                    screened[j]
                        .theta
                        .iter()
                        .zip(ti.iter())
                        .all(|(x, y)| (x - y).abs() <= 1e-6)
                });
                if !dup {
                    chosen.push(i);
                }
            }
            let cont: Vec<(StartResult, u64)> = map_maybe_par(parallel, chosen.len(), |k| {
                let s = screened[chosen[k]];
                let (mut r, e) = run_start(&ld, opts, s.start, s.theta, opts.max_iters);
                r.iters += s.iters;
                (r, e)
            });
            ev += cont.iter().map(|x| x.1).sum::<u64>();
            let n_full = cont.len();
            for (r, _) in cont {
                if better(&r, &screened[r.start]) {
                    screened[r.start] = r;
                }
            }
            (screened, ev, n_full)
        }
    };
    let best = results
        .iter()
        .copied()
        .reduce(|x, y| if better(&y, &x) { y } else { x })
        .expect("at least one start");
    if !best.objective.is_finite() {
        return Err(ScalingError::FitFailed(format!(
            "all {} starts failed (non-finite objective)",
            starts.len()
        )));
    }
    let failed_starts = results.iter().filter(|r| !r.objective.is_finite()).count();
    let starts_at_best = results
        .iter()
        .filter(|r| {
            r.objective.is_finite()
                && r.objective <= best.objective + 1e-9 * best.objective.abs().max(1e-300)
        })
        .count();
    // distinct local optima, best first (points within 1e-4 in every coordinate merge)
    let mut sorted: Vec<StartResult> = results
        .iter()
        .copied()
        .filter(|r| r.objective.is_finite())
        .collect();
    sorted.sort_by(|x, y| {
        x.objective
            .total_cmp(&y.objective)
            .then(x.start.cmp(&y.start))
    });
    let mut local_optima: Vec<StartResult> = Vec::new();
    for r in sorted {
        if local_optima.len() >= MAX_LOCAL_OPTIMA {
            break;
        }
        if !local_optima.iter().any(|o| {
            o.theta
                .iter()
                .zip(&r.theta)
                .all(|(x, y)| (x - y).abs() <= 1e-4)
        }) {
            local_optima.push(r);
        }
    }
    let th = best.theta;
    let law = ChinchillaLaw {
        e: th[2].exp(),
        a: th[0].exp(),
        b: th[1].exp(),
        alpha: th[3],
        beta: th[4],
    };
    check_law(&law, data)?;
    let mean = ld.log_l.iter().sum::<f64>() / ld.log_l.len() as f64;
    let mut ss_res = 0.0;
    let mut ss_tot = 0.0;
    for i in 0..data.len() {
        let pred = law.loss(data.n[i], data.d[i]).ln();
        ss_res += (ld.log_l[i] - pred).powi(2);
        ss_tot += (ld.log_l[i] - mean).powi(2);
    }
    Ok(ChinchillaFit {
        law,
        theta: th,
        objective: best.objective,
        starts: starts.len(),
        failed_starts,
        full_starts,
        starts_at_best,
        evaluations,
        n_points: data.len(),
        r2_log: 1.0 - ss_res / ss_tot,
        local_optima,
    })
}

/// Data the five parameters can be told apart on: losses that differ, and
/// more than one N and more than one D. A constant loss fits exactly with any
/// E = L and A, B → 0 (R² undefined, the allocation NaN); a single N (or D)
/// leaves α (or β) free, so the allocation exponents would be whatever the
/// optimiser stopped at.
fn check_identifiable(data: &ChinchillaData) -> Result<()> {
    let spread = |v: &[f64]| {
        let (lo, hi) = v
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
                (lo.min(x), hi.max(x))
            });
        (lo, hi)
    };
    let (lo, hi) = spread(&data.loss);
    if hi <= lo * (1.0 + 1e-12) {
        return Err(ScalingError::InvalidData(format!(
            "every one of the {} points has the same loss {lo}; a constant loss says nothing about how loss falls with N and D, \
             so the Chinchilla form cannot be fitted (check that the loss column is the validation loss and that the runs trained)",
            data.len()
        )));
    }
    for (what, v, col) in [
        ("N", &data.n, "parameter count"),
        ("D", &data.d, "token count"),
    ] {
        let (lo, hi) = spread(v);
        if hi <= lo * (1.0 + 1e-12) {
            return Err(ScalingError::InsufficientData(format!(
                "every point has the same {col} {what} = {lo}; the Chinchilla form needs at least two different values of {what} to fit its exponent"
            )));
        }
    }
    Ok(())
}

/// A fitted law that describes loss falling with both N and D: E, A, B
/// positive and finite, α and β positive and finite. Anything else would make
/// the compute-optimal allocation (G = (αA/(βB))^(1/(α+β))) NaN or
/// meaningless, so it is an error rather than a table.
fn check_law(law: &ChinchillaLaw, data: &ChinchillaData) -> Result<()> {
    for (name, v) in [
        ("E", law.e),
        ("A", law.a),
        ("B", law.b),
        ("alpha", law.alpha),
        ("beta", law.beta),
    ] {
        if !(v.is_finite() && v > 0.0) {
            return Err(ScalingError::FitFailed(format!(
                "the best fit has {name} = {v:.4e} (E = {:.4}, A = {:.4e}, B = {:.4e}, alpha = {:.4}, beta = {:.4}); the Chinchilla form needs E, A, B, \
                 alpha, beta all positive and finite, so these points do not show loss falling with both N and D \
                 (check the columns, drop runs that did not train, or add model sizes and token budgets)",
                law.e, law.a, law.b, law.alpha, law.beta
            )));
        }
    }
    // The allocation must be a number over the data's compute range and the
    // four decades above it (what `fit chinchilla` tabulates): exponents that
    // almost vanish (alpha + beta = 2e-5) put G = (αA/(βB))^(1/(α+β)) far
    // outside f64 and the table would read inf and 0.
    let c: Vec<f64> = data
        .n
        .iter()
        .zip(&data.d)
        .map(|(n, d)| 6.0 * n * d)
        .collect();
    let lo = c.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = 1e4 * c.iter().copied().fold(0.0, f64::max);
    for at in [lo, hi] {
        let (ln_n, ln_d) = ln_allocation(law, at, 6.0);
        if !(ln_n.abs() < 700.0 && ln_d.abs() < 700.0) {
            return Err(ScalingError::FitFailed(format!(
                "the best fit (E = {:.4}, A = {:.4e}, B = {:.4e}, alpha = {:.4e}, beta = {:.4e}) has no finite compute-optimal allocation \
                 at C = {at:.3e} (ln N_opt = {ln_n:.4e}, ln D_opt = {ln_d:.4e}): its exponents are too small or its coefficients too \
                 extreme for these points to determine how N and D should grow with compute (add model sizes and token budgets)",
                law.e, law.a, law.b, law.alpha, law.beta
            )));
        }
    }
    Ok(())
}

/// ln N_opt and ln D_opt at compute `c` under C = k·N·D (the logarithms of
/// [`ChinchillaLaw::optimal_allocation`], which may over- or underflow).
fn ln_allocation(law: &ChinchillaLaw, c: f64, k: f64) -> (f64, f64) {
    let s = law.alpha + law.beta;
    let ln_g = (law.alpha.ln() + law.a.ln() - law.beta.ln() - law.b.ln()) / s;
    let ln_x = (c / k).ln();
    (ln_g + law.beta / s * ln_x, law.alpha / s * ln_x - ln_g)
}

/// The objective (summed robust loss in log space) at θ, for checking optima
/// found elsewhere (e.g. by the scipy reference) on the same data.
pub fn objective_at(data: &ChinchillaData, loss: RobustLoss, theta: [f64; 5]) -> f64 {
    let ld = LogData::new(data);
    objective_and_gradient(&ld.log_n, &ld.log_d, &ld.log_l, loss, &theta).0
}

/// Objective and analytic gradient at θ (exposed for gradient checks).
pub fn objective_gradient_at(
    data: &ChinchillaData,
    loss: RobustLoss,
    theta: [f64; 5],
) -> (f64, [f64; 5]) {
    let ld = LogData::new(data);
    objective_and_gradient(&ld.log_n, &ld.log_d, &ld.log_l, loss, &theta)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> ChinchillaData {
        ChinchillaData::new(
            vec![1e6, 1e7, 1e8],
            vec![1e9, 1e10, 1e11],
            vec![3.0, 2.5, 2.2],
        )
        .unwrap()
    }

    #[test]
    fn log_space_allocation_matches_the_closed_form() {
        let law = ChinchillaLaw {
            e: 1.69,
            a: 406.4,
            b: 410.7,
            alpha: 0.34,
            beta: 0.28,
        };
        for c in [1e18, 1e21, 1e24] {
            let (n, d) = law.optimal_allocation(c, 6.0);
            let (ln_n, ln_d) = ln_allocation(&law, c, 6.0);
            assert!(
                (ln_n - n.ln()).abs() < 1e-12 && (ln_d - d.ln()).abs() < 1e-12,
                "C = {c:e}"
            );
        }
        assert!(check_law(&law, &data()).is_ok());
    }

    #[test]
    fn a_law_without_a_finite_allocation_is_refused() {
        // alpha + beta = 2e-5: ln G = ln(αA/(βB)) / (α+β) = ln(1000) / 2e-5 ≈ 3.5e5
        let law = ChinchillaLaw {
            e: 1.0,
            a: 1.0,
            b: 1e-3,
            alpha: 1e-5,
            beta: 1e-5,
        };
        let e = check_law(&law, &data()).unwrap_err().to_string();
        assert!(
            e.contains("no finite compute-optimal allocation at C = 6.000e15"),
            "{e}"
        );
        // a non-positive exponent is named
        let e = check_law(&ChinchillaLaw { beta: 0.0, ..law }, &data())
            .unwrap_err()
            .to_string();
        assert!(e.contains("the best fit has beta = 0.0000e0"), "{e}");
    }
}
