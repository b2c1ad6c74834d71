//! Decomposition of algorithmic progress at frontier compute, and the
//! dependence of measured progress on the reference algorithm.
//!
//! **Decomposition** (as the authors' `how-bitter-graphs` code computes it).
//! A timeline of innovations, each with the year it arrived and its gain
//! ([`Gain`]): a constant CEG multiplier (scale-invariant), a CEG function
//! between two fitted frontiers, the CEG of a better compute allocation over
//! a worse one, a named Kaplan rule ([`KaplanRule`]), or one gain divided by
//! another (the LSTM → Transformer frontier gain divided by the Chinchilla
//! rebalancing gain, so that the allocation gain is not counted twice).
//! Frontier compute grows as C(t) = C₀·g^(t − t₀) (default C₀ = 1e16 FLOPs in
//! t₀ = 2013, g = 4.1× per year).
//!
//! *Stepwise* (the default, as the authors): an innovation counts from its
//! year on, evaluated at that year's compute; before its year its CEG is 1.
//! Without stepwise every innovation counts in every year. The total at year
//! t is the product of the counted CEGs at C(t):
//!
//! ```text
//! total(t) = Π_i CEG_i(C(t)) · interaction,   share_i = ln CEG_i / ln total,
//! ```
//!
//! so the shares (including the interaction term, when given) sum to 1.
//!
//! *Interaction normalisation* ([`Normalisation`]): the single ablations
//! multiply to more than the measured combined gain (1.87·1.44·… ≈ 3.57
//! against 1.33), so a set of constant items is normalised together: each
//! raw value v_i becomes v_i^x with x = ln(target) / ln(Π_j v_j), and the
//! normalised members multiply to the target exactly. A member can be
//! [`Innovation::normalisation_only`] (GeLU → SwiGLU in the authors' code):
//! it enters the product Π_j v_j but is not an item of the decomposition.
//! (The existing `interaction` factor is the other way to say the same thing:
//! one extra item worth measured/product.)
//!
//! *Growth*: from a start year s to the target year T,
//! (total(T) / total(s))^(1/(T − s)). The authors divide by the cumulative
//! product of the oldest innovation only at s; the two agree whenever no
//! innovation is counted at s yet (their 2012 and 2013 starts).
//!
//! The scale-invariant share is the sum of the shares of constant items, of
//! CEG functions between frontiers with equal exponents and irreducible
//! losses, and of ratios of such gains; the rest is scale-dependent.
//!
//! Every item records where its numbers come from ([`Source`]): a study that
//! measured some items replaces them ([`Timeline::set_constant`],
//! [`Timeline::set_frontiers`], [`Timeline::set_gain`],
//! [`Timeline::replace_rebalancing`], [`Timeline::set_normalisation_target`])
//! and keeps the published constants for the rest; the decomposition says
//! which is which.
//!
//! **Reference dependence.** Given fitted frontiers of several algorithms,
//! which one is the state of the art from which year, and the compute
//! trend, the progress measured against a fixed reference algorithm in year
//! t is CEG_t = C_ref(L_sota(t)(C(t))) / C(t). Its annual growth rate comes
//! from a least-squares line through ln CEG_t against t:
//! growth = exp(slope) − 1. For pure power laws with exponents γ_n (state of
//! the art) and γ_r (reference), CEG_t ∝ C(t)^(γ_n/γ_r − 1), so
//! growth = g^(γ_n/γ_r − 1) − 1: zero when the reference scales like the
//! state of the art, exponential when it scales worse.

use crate::error::{CegError, Result};
use crate::function::{CegFunction, DEFAULT_TARGET_COMPUTE};
use crate::kaplan::{allocation_ceg, Allocation, KaplanRule, FLOPS_PER_PARAM_TOKEN};
use crate::stats::linear_fit;
use algoprog_scaling::{ChinchillaLaw, PowerLaw};
use serde::{Deserialize, Serialize};

/// The authors' decomposition timeline (`timelines/paper.json`): published
/// constants and frontiers, 2012 → 2023.
pub const PAPER_TIMELINE_JSON: &str = include_str!("../timelines/paper.json");

/// Frontier training compute over time: C(t) = base_compute · growth_per_year^(t − base_year).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ComputeTrend {
    pub base_year: f64,
    pub base_compute: f64,
    pub growth_per_year: f64,
}

impl Default for ComputeTrend {
    /// 1e16 FLOPs in 2013, growing 4.1× per year.
    fn default() -> Self {
        Self {
            base_year: 2013.0,
            base_compute: 1e16,
            growth_per_year: 4.1,
        }
    }
}

impl ComputeTrend {
    /// C(t).
    pub fn compute_at(&self, year: f64) -> f64 {
        self.base_compute * self.growth_per_year.powf(year - self.base_year)
    }

    /// The (fractional) year at which C(t) = `compute`.
    pub fn year_of(&self, compute: f64) -> f64 {
        self.base_year + (compute / self.base_compute).ln() / self.growth_per_year.ln()
    }

    fn check(&self) -> Result<()> {
        if !(self.base_compute > 0.0
            && self.base_compute.is_finite()
            && self.growth_per_year > 0.0
            && self.growth_per_year.is_finite()
            && self.base_year.is_finite())
        {
            return Err(CegError::BadTimeline(format!(
                "compute trend needs a finite base_year, base_compute > 0 and growth_per_year > 0 (got {}, {:e} and {})",
                self.base_year, self.base_compute, self.growth_per_year
            )));
        }
        Ok(())
    }
}

/// How much an innovation is worth as a function of compute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Gain {
    /// A constant CEG multiplier (measured at one threshold; scale-invariant
    /// by assumption). Also spelt `constant` in timeline files.
    #[serde(alias = "constant")]
    Multiplier { value: f64 },
    /// CEG(C) = C_ref(L_new(C)) / C between two fitted frontiers.
    Function { reference: PowerLaw, new: PowerLaw },
    /// CEG of a better compute allocation over a worse one under L(N, D), C = k·N·D.
    Allocation {
        law: ChinchillaLaw,
        worse: Allocation,
        better: Allocation,
        #[serde(default = "default_k")]
        k: f64,
    },
    /// A Kaplan → Chinchilla rule by name, under Hoffmann et al.'s law ([`KaplanRule::ceg`]).
    Kaplan { rule: KaplanRule },
    /// One gain divided by another, e.g. a frontier gain with an allocation gain divided out.
    Ratio {
        numerator: Box<Gain>,
        denominator: Box<Gain>,
    },
    /// The product of several gains (e.g. a state of the art against a reference: mixture of experts × rebalancing).
    Product { factors: Vec<Gain> },
}

fn default_k() -> f64 {
    FLOPS_PER_PARAM_TOKEN
}

impl Gain {
    /// A constant multiplier.
    pub fn constant(value: f64) -> Self {
        Gain::Multiplier { value }
    }

    /// `numerator / denominator`.
    pub fn ratio(numerator: Gain, denominator: Gain) -> Self {
        Gain::Ratio {
            numerator: Box::new(numerator),
            denominator: Box::new(denominator),
        }
    }

    /// The CEG at compute `c`.
    pub fn at(&self, c: f64) -> Result<f64> {
        match self {
            Gain::Multiplier { value } if *value > 0.0 && value.is_finite() => Ok(*value),
            Gain::Multiplier { value } => Err(CegError::BadParameter {
                name: "CEG multiplier".into(),
                value: *value,
                why: "must be positive and finite".into(),
            }),
            Gain::Function { reference, new } => CegFunction::new(*reference, *new)?.eval(c),
            Gain::Allocation {
                law,
                worse,
                better,
                k,
            } => allocation_ceg(law, *better, *worse, c, *k),
            Gain::Kaplan { rule } => rule.ceg(c),
            Gain::Product { factors } => {
                let mut log = 0.0;
                for f in factors {
                    log += f.at(c)?.ln();
                }
                let p = log.exp();
                if !(p > 0.0 && p.is_finite()) {
                    return Err(CegError::BadParameter {
                        name: "product of gains".into(),
                        value: p,
                        why: format!("at {c:e} FLOPs the product overflows"),
                    });
                }
                Ok(p)
            }
            Gain::Ratio {
                numerator,
                denominator,
            } => {
                let (n, d) = (numerator.at(c)?, denominator.at(c)?);
                let r = n / d;
                if !(r > 0.0 && r.is_finite()) {
                    return Err(CegError::BadParameter {
                        name: "ratio of gains".into(),
                        value: r,
                        why: format!("{n} / {d} at {c:e} FLOPs is not a positive finite number"),
                    });
                }
                Ok(r)
            }
        }
    }

    /// Whether the gain is the same at every compute (see the module docs).
    pub fn is_scale_invariant(&self) -> bool {
        match self {
            Gain::Multiplier { .. } => true,
            Gain::Function { reference, new } => CegFunction {
                reference: *reference,
                new: *new,
            }
            .is_scale_invariant(1e-9),
            Gain::Allocation { worse, better, .. } => worse == better,
            Gain::Kaplan { .. } => false,
            Gain::Ratio {
                numerator,
                denominator,
            } => numerator.is_scale_invariant() && denominator.is_scale_invariant(),
            Gain::Product { factors } => factors.iter().all(Gain::is_scale_invariant),
        }
    }

    /// Every CEG function in this gain (itself, or inside ratios).
    fn functions_mut(&mut self) -> Vec<&mut Gain> {
        match self {
            Gain::Function { .. } => vec![self],
            Gain::Ratio {
                numerator,
                denominator,
            } => {
                let mut v = numerator.functions_mut();
                v.extend(denominator.functions_mut());
                v
            }
            Gain::Product { factors } => factors.iter_mut().flat_map(Gain::functions_mut).collect(),
            _ => vec![],
        }
    }

    /// Replace every allocation gain (an `allocation` or a named Kaplan rule)
    /// in this gain, itself or inside ratios; returns how many.
    fn replace_rebalancing(&mut self, with: &Gain) -> usize {
        match self {
            Gain::Allocation { .. } | Gain::Kaplan { .. } => {
                *self = with.clone();
                1
            }
            Gain::Ratio {
                numerator,
                denominator,
            } => numerator.replace_rebalancing(with) + denominator.replace_rebalancing(with),
            Gain::Product { factors } => factors
                .iter_mut()
                .map(|f| f.replace_rebalancing(with))
                .sum(),
            _ => 0,
        }
    }
}

/// Where an item's numbers come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Published constants or fits (the papers, the authors' code).
    #[default]
    Published,
    /// Measured by this study.
    Measured,
    /// Partly measured, partly published (e.g. measured frontiers divided by a published allocation gain).
    Mixed,
}

impl Source {
    /// `published`, `measured` or `mixed`.
    pub fn name(self) -> &'static str {
        match self {
            Source::Published => "published",
            Source::Measured => "measured",
            Source::Mixed => "mixed",
        }
    }
}

/// One innovation of a timeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Innovation {
    /// Key of the item (unique in a timeline).
    pub name: String,
    pub year: f64,
    pub gain: Gain,
    /// Human-readable label for tables (the name when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Counted only in the interaction normalisation, never as an item.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub normalisation_only: bool,
    /// Where the gain's numbers come from.
    #[serde(default)]
    pub source: Source,
    /// Free text on the source (paper, table, run group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Innovation {
    /// A counted, published innovation without label or note.
    pub fn new(name: impl Into<String>, year: f64, gain: Gain) -> Self {
        Self {
            name: name.into(),
            year,
            gain,
            label: None,
            normalisation_only: false,
            source: Source::Published,
            note: None,
        }
    }

    /// The label, or the name.
    pub fn display(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.name)
    }
}

/// Interaction normalisation of a set of constant items (module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalisation {
    /// The measured combined CEG the members multiply to after normalisation (1.33 in the papers).
    pub target: f64,
    /// Names of the innovations normalised together; their gains must be scale-invariant.
    pub members: Vec<String>,
    #[serde(default)]
    pub source: Source,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A frontier law of one algorithm, and the year from which it is the state of the art.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Algorithm {
    pub name: String,
    pub year: f64,
    pub frontier: PowerLaw,
}

/// Input of the reference-dependence analysis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReferenceSpec {
    /// Name of the reference algorithm (one of `algorithms`).
    pub reference: String,
    pub start_year: f64,
    pub end_year: f64,
    pub algorithms: Vec<Algorithm>,
}

fn default_true() -> bool {
    true
}

/// A timeline file: compute trend, innovations, start and target years,
/// optional interaction normalisation or factor, optional
/// reference-dependence input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    #[serde(default)]
    pub trend: ComputeTrend,
    /// First year of the growth rate and of the by-year series; default: the earliest innovation's year, rounded down.
    #[serde(default)]
    pub start_year: Option<f64>,
    /// Year at which to decompose; default: the year the trend reaches 1e23 FLOPs.
    #[serde(default)]
    pub target_year: Option<f64>,
    /// Innovations count from their year on (default, as the authors); false: every innovation counts in every year.
    #[serde(default = "default_true")]
    pub stepwise: bool,
    pub innovations: Vec<Innovation>,
    /// Interaction normalisation of constant items (module docs).
    #[serde(default)]
    pub normalisation: Option<Normalisation>,
    /// Measured combined CEG / product of single CEGs (e.g. 1.33/3.43) as one extra item; 1 or absent = multiplicative.
    #[serde(default)]
    pub interaction: Option<f64>,
    #[serde(default)]
    pub reference_dependence: Option<ReferenceSpec>,
    /// What the timeline is (free text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Default for Timeline {
    /// The default trend, stepwise, no innovations.
    fn default() -> Self {
        Self {
            trend: ComputeTrend::default(),
            start_year: None,
            target_year: None,
            stepwise: true,
            innovations: Vec::new(),
            normalisation: None,
            interaction: None,
            reference_dependence: None,
            note: None,
        }
    }
}

impl Timeline {
    /// The authors' decomposition timeline ([`PAPER_TIMELINE_JSON`]).
    pub fn paper() -> Self {
        serde_json::from_str(PAPER_TIMELINE_JSON).expect("timelines/paper.json is valid (tested)")
    }

    /// The target year (given, or when the trend reaches 1e23 FLOPs).
    pub fn target_year(&self) -> f64 {
        self.target_year
            .unwrap_or_else(|| self.trend.year_of(DEFAULT_TARGET_COMPUTE))
    }

    /// The start year (given, or the earliest innovation's year rounded down).
    pub fn start_year(&self) -> f64 {
        self.start_year.unwrap_or_else(|| {
            self.innovations
                .iter()
                .map(|i| i.year)
                .fold(f64::INFINITY, f64::min)
                .floor()
        })
    }

    fn names(&self) -> String {
        self.innovations
            .iter()
            .map(|i| i.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The innovation called `name`.
    pub fn innovation(&self, name: &str) -> Result<&Innovation> {
        self.innovations
            .iter()
            .find(|i| i.name == name)
            .ok_or_else(|| {
                CegError::BadTimeline(format!(
                    "no innovation `{name}`; the timeline has: {}",
                    self.names()
                ))
            })
    }

    /// The innovation called `name`, to change.
    pub fn innovation_mut(&mut self, name: &str) -> Result<&mut Innovation> {
        let names = self.names();
        self.innovations
            .iter_mut()
            .find(|i| i.name == name)
            .ok_or_else(|| {
                CegError::BadTimeline(format!("no innovation `{name}`; the timeline has: {names}"))
            })
    }

    /// Replace the gain of `name` and record where it comes from.
    pub fn set_gain(
        &mut self,
        name: &str,
        gain: Gain,
        source: Source,
        note: Option<String>,
    ) -> Result<()> {
        let i = self.innovation_mut(name)?;
        i.gain = gain;
        i.source = source;
        i.note = note;
        Ok(())
    }

    /// Replace the gain of `name` with a constant multiplier (e.g. a measured ablation CEG).
    pub fn set_constant(
        &mut self,
        name: &str,
        value: f64,
        source: Source,
        note: Option<String>,
    ) -> Result<()> {
        self.set_gain(name, Gain::constant(value), source, note)
    }

    /// Replace the frontiers of the CEG function of `name`, itself or inside
    /// a ratio (the LSTM → Transformer item divides a frontier gain by an
    /// allocation gain: only the frontiers change). Errors when the item has
    /// no CEG function or more than one.
    pub fn set_frontiers(
        &mut self,
        name: &str,
        reference: PowerLaw,
        new: PowerLaw,
        source: Source,
        note: Option<String>,
    ) -> Result<()> {
        CegFunction::new(reference, new)
            .map_err(|e| CegError::BadTimeline(format!("innovation `{name}`: {e}")))?;
        let i = self.innovation_mut(name)?;
        let mut fs = i.gain.functions_mut();
        if fs.len() != 1 {
            return Err(CegError::BadTimeline(format!(
                "innovation `{name}` has {} CEG functions between frontiers; set_frontiers needs exactly one (use set_gain)",
                fs.len()
            )));
        }
        *fs[0] = Gain::Function { reference, new };
        i.source = source;
        i.note = note;
        Ok(())
    }

    /// Replace every allocation gain (`allocation` or a named Kaplan rule),
    /// wherever it appears (the Chinchilla item, and the denominator of the
    /// LSTM → Transformer item), with `with`. Items whose whole gain was
    /// replaced take `source`; items where only a part was replaced become
    /// [`Source::Mixed`] unless their source already equals `source`.
    /// Returns the number of replacements.
    pub fn replace_rebalancing(
        &mut self,
        with: Gain,
        source: Source,
        note: Option<String>,
    ) -> Result<usize> {
        let mut n = 0;
        for i in &mut self.innovations {
            let whole = matches!(i.gain, Gain::Allocation { .. } | Gain::Kaplan { .. });
            let k = i.gain.replace_rebalancing(&with);
            if k > 0 {
                n += k;
                if whole || i.source == source {
                    i.source = source;
                } else {
                    i.source = Source::Mixed;
                }
                if whole {
                    i.note = note.clone();
                }
            }
        }
        if n == 0 {
            return Err(CegError::BadTimeline(
                "the timeline has no allocation gain to replace".into(),
            ));
        }
        Ok(n)
    }

    /// Change the interaction normalisation's target (e.g. to a measured combined CEG).
    pub fn set_normalisation_target(
        &mut self,
        target: f64,
        source: Source,
        note: Option<String>,
    ) -> Result<()> {
        let n = self.normalisation.as_mut().ok_or_else(|| {
            CegError::BadTimeline("the timeline has no interaction normalisation".into())
        })?;
        n.target = target;
        n.source = source;
        n.note = note;
        Ok(())
    }

    /// The exponent x of the interaction normalisation and the raw product,
    /// or `None` without normalisation.
    fn normalisation_exponent(&self, compute: f64) -> Result<Option<NormalisationResult>> {
        let Some(n) = &self.normalisation else {
            return Ok(None);
        };
        if !(n.target > 0.0 && n.target.is_finite()) {
            return Err(CegError::BadTimeline(format!(
                "normalisation target {} must be positive and finite",
                n.target
            )));
        }
        if n.members.is_empty() {
            return Err(CegError::BadTimeline(
                "the normalisation names no members".into(),
            ));
        }
        let mut log_product = 0.0;
        for m in &n.members {
            let i = self
                .innovation(m)
                .map_err(|e| CegError::BadTimeline(format!("normalisation member: {e}")))?;
            if !i.gain.is_scale_invariant() {
                return Err(CegError::BadTimeline(format!(
                    "normalisation member `{m}` has a scale-dependent gain; only constant (scale-invariant) gains can be normalised"
                )));
            }
            log_product += i
                .gain
                .at(compute)
                .map_err(|e| CegError::BadTimeline(format!("normalisation member `{m}`: {e}")))?
                .ln();
        }
        if log_product == 0.0 || !log_product.is_finite() {
            return Err(CegError::BadTimeline(format!(
                "the normalisation members multiply to {}; the exponent ln(target)/ln(product) is undefined",
                log_product.exp()
            )));
        }
        Ok(Some(NormalisationResult {
            target: n.target,
            raw_product: log_product.exp(),
            exponent: n.target.ln() / log_product,
            members: n.members.clone(),
            source: n.source,
        }))
    }

    fn check(&self) -> Result<()> {
        self.trend.check()?;
        for (k, i) in self.innovations.iter().enumerate() {
            if !i.year.is_finite() {
                return Err(CegError::BadTimeline(format!(
                    "innovation `{}`: year {} is not finite",
                    i.name, i.year
                )));
            }
            if self.innovations[..k].iter().any(|j| j.name == i.name) {
                return Err(CegError::BadTimeline(format!(
                    "innovation `{}` appears twice; names must be unique",
                    i.name
                )));
            }
            if i.normalisation_only
                && !self
                    .normalisation
                    .as_ref()
                    .is_some_and(|n| n.members.contains(&i.name))
            {
                return Err(CegError::BadTimeline(format!(
                    "innovation `{}` is normalisation_only but not a member of the normalisation",
                    i.name
                )));
            }
        }
        Ok(())
    }

    /// CEG of one innovation at compute `c` (after normalisation), and its raw value.
    fn item_ceg(
        &self,
        i: &Innovation,
        c: f64,
        norm: &Option<NormalisationResult>,
    ) -> Result<(f64, f64)> {
        let raw = i.gain.at(c).map_err(|e| {
            CegError::BadTimeline(format!("innovation `{}` at {c:e} FLOPs: {e}", i.name))
        })?;
        Ok(match norm {
            Some(n) if n.members.contains(&i.name) => (raw.powf(n.exponent), raw),
            _ => (raw, raw),
        })
    }

    /// Whether `i` is counted in year `y`.
    fn counted(&self, i: &Innovation, y: f64) -> bool {
        !i.normalisation_only && (!self.stepwise || i.year <= y)
    }

    /// Product of the counted CEGs at year `y` (times the interaction factor once more than one is counted).
    pub fn total_at(&self, y: f64) -> Result<f64> {
        self.check()?;
        let c = self.trend.compute_at(y);
        let norm = self.normalisation_exponent(c)?;
        let interaction = self.interaction.unwrap_or(1.0);
        let mut log_g = 0.0;
        let mut n = 0;
        for i in self.innovations.iter().filter(|i| self.counted(i, y)) {
            log_g += self.item_ceg(i, c, &norm)?.0.ln();
            n += 1;
        }
        if n > 1 {
            log_g += interaction.ln();
        }
        let g = log_g.exp();
        if !g.is_finite() {
            return Err(CegError::BadTimeline(format!(
                "the total gain in {y} is too large for a number (ln total = {log_g:.1}); check the multipliers and frontiers"
            )));
        }
        Ok(g)
    }
}

/// The interaction normalisation as applied.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NormalisationResult {
    pub target: f64,
    /// Product of the members' raw values.
    pub raw_product: f64,
    /// x = ln(target) / ln(raw_product); each member becomes raw^x.
    pub exponent: f64,
    pub members: Vec<String>,
    pub source: Source,
}

/// One innovation's contribution at the target year.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Share {
    pub name: String,
    /// Label for tables (the name when the timeline gives none).
    pub label: String,
    pub year: f64,
    /// CEG at the target year's compute (after normalisation).
    pub ceg: f64,
    /// CEG before the interaction normalisation (equal to `ceg` for items outside it).
    pub raw_ceg: f64,
    pub log_ceg: f64,
    /// ln CEG_i / ln total (sums to 1 over all items).
    pub share: f64,
    pub scale_invariant: bool,
    /// Member of the interaction normalisation.
    pub normalised: bool,
    pub source: Source,
    pub note: Option<String>,
}

/// Cumulative gain by year.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct YearGain {
    pub year: f64,
    pub compute: f64,
    /// Product of the CEGs of the innovations counted in this year, at this year's compute (times the interaction factor once more than one innovation is in).
    pub gain: f64,
}

/// Result of [`decompose`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decomposition {
    pub start_year: f64,
    pub start_compute: f64,
    /// total(start_year).
    pub start_gain: f64,
    pub target_year: f64,
    pub compute: f64,
    /// total(target_year).
    pub total_gain: f64,
    pub log_total: f64,
    /// (total_gain / start_gain)^(1/(target − start)); `None` when target ≤ start.
    pub annual_growth: Option<f64>,
    pub items: Vec<Share>,
    /// Product of the scale-invariant items' CEGs (and of the interaction factor).
    pub scale_invariant_gain: f64,
    /// Product of the scale-dependent items' CEGs.
    pub scale_dependent_gain: f64,
    pub scale_invariant_share: f64,
    pub scale_dependent_share: f64,
    pub normalisation: Option<NormalisationResult>,
    pub stepwise: bool,
    pub by_year: Vec<YearGain>,
    pub assumptions: Vec<String>,
}

impl Decomposition {
    /// The item called `name`.
    pub fn item(&self, name: &str) -> Option<&Share> {
        self.items.iter().find(|s| s.name == name)
    }
}

/// Decompose the total gain at the target year (module docs).
pub fn decompose(t: &Timeline) -> Result<Decomposition> {
    t.check()?;
    let year = t.target_year();
    if !year.is_finite() {
        return Err(CegError::BadTimeline(format!(
            "target year {year} is not finite"
        )));
    }
    let start = t.start_year();
    if !start.is_finite() {
        return Err(CegError::BadTimeline(format!(
            "start year {start} is not finite; give start_year or at least one innovation"
        )));
    }
    if start > year {
        return Err(CegError::BadTimeline(format!(
            "start year {start} is after the target year {year}"
        )));
    }
    let active: Vec<&Innovation> = t
        .innovations
        .iter()
        .filter(|i| t.counted(i, year))
        .collect();
    if active.is_empty() {
        return Err(CegError::BadTimeline(format!(
            "no innovation is counted by the target year {year}; check the years or the target year"
        )));
    }
    let compute = t.trend.compute_at(year);
    let norm = t.normalisation_exponent(compute)?;
    let mut items: Vec<Share> = active
        .iter()
        .map(|i| {
            let (ceg, raw_ceg) = t.item_ceg(i, compute, &norm)?;
            Ok(Share {
                name: i.name.clone(),
                label: i.display().to_string(),
                year: i.year,
                ceg,
                raw_ceg,
                log_ceg: ceg.ln(),
                share: 0.0,
                scale_invariant: i.gain.is_scale_invariant(),
                normalised: norm.as_ref().is_some_and(|n| n.members.contains(&i.name)),
                source: i.source,
                note: i.note.clone(),
            })
        })
        .collect::<Result<_>>()?;
    let interaction = t.interaction.unwrap_or(1.0);
    if !(interaction > 0.0 && interaction.is_finite()) {
        return Err(CegError::BadTimeline(format!(
            "interaction factor {interaction} must be positive"
        )));
    }
    if interaction != 1.0 && items.len() > 1 {
        items.push(Share {
            name: "interaction".into(),
            label: "interaction (measured, non-multiplicative)".into(),
            year: f64::NAN,
            ceg: interaction,
            raw_ceg: interaction,
            log_ceg: interaction.ln(),
            share: 0.0,
            scale_invariant: true,
            normalised: false,
            source: Source::Measured,
            note: None,
        });
    }
    let log_total: f64 = items.iter().map(|s| s.log_ceg).sum();
    if log_total == 0.0 {
        return Err(CegError::ZeroTotalGain { compute });
    }
    if !log_total.exp().is_finite() {
        return Err(CegError::BadTimeline(format!(
            "the total gain at {year} is too large for a number (ln total = {log_total:.1}); check the multipliers and frontiers"
        )));
    }
    for s in &mut items {
        s.share = s.log_ceg / log_total;
    }
    let si: f64 = items
        .iter()
        .filter(|s| s.scale_invariant)
        .map(|s| s.share)
        .sum();
    let log_si: f64 = items
        .iter()
        .filter(|s| s.scale_invariant)
        .map(|s| s.log_ceg)
        .sum();
    let mut by_year = Vec::new();
    let mut y = start;
    while y <= year + 1e-9 {
        by_year.push(YearGain {
            year: y,
            compute: t.trend.compute_at(y),
            gain: t.total_at(y)?,
        });
        y += 1.0;
    }
    if by_year.last().is_some_and(|l| (l.year - year).abs() > 1e-9) {
        by_year.push(YearGain {
            year,
            compute,
            gain: log_total.exp(),
        });
    }
    let start_gain = t.total_at(start)?;
    let annual_growth = (year > start)
        .then(|| (log_total - start_gain.ln()) / (year - start))
        .map(f64::exp);
    let mut assumptions = vec![
        format!(
            "frontier compute C(t) = {:.1e}·{}^(t − {}) FLOPs; C({start}) = {:.3e}, C({year}) = {compute:.3e}",
            t.trend.base_compute,
            t.trend.growth_per_year,
            t.trend.base_year,
            t.trend.compute_at(start)
        ),
        if t.stepwise {
            "stepwise: each innovation counts from its year on, at that year's compute".into()
        } else {
            "not stepwise: every innovation counts in every year".into()
        },
        "CEG functions and allocation gains are evaluated at the target year's compute, extrapolating fitted laws".into(),
        "constant multipliers are assumed scale-invariant (measured at one threshold, applied at every compute)".into(),
    ];
    if let Some(n) = &norm {
        assumptions.push(format!(
            "interaction normalisation: {} multiply to {:.4} as single ablations but to {} combined; each is raised to ln({})/ln({:.4}) = {:.4}",
            n.members.join(", "),
            n.raw_product,
            n.target,
            n.target,
            n.raw_product,
            n.exponent
        ));
    }
    assumptions.push(if interaction == 1.0 && norm.is_none() {
        "gains multiply (no interaction measured); the papers measured sub-multiplicative combinations, so this is an upper estimate".into()
    } else if interaction == 1.0 {
        "the other gains multiply".into()
    } else {
        format!("gains multiply, times a measured interaction factor {interaction}")
    });
    Ok(Decomposition {
        start_year: start,
        start_compute: t.trend.compute_at(start),
        start_gain,
        target_year: year,
        compute,
        total_gain: log_total.exp(),
        log_total,
        annual_growth,
        items,
        scale_invariant_gain: log_si.exp(),
        scale_dependent_gain: (log_total - log_si).exp(),
        scale_invariant_share: si,
        scale_dependent_share: 1.0 - si,
        normalisation: norm,
        stepwise: t.stepwise,
        by_year,
        assumptions,
    })
}

/// One year of [`reference_growth`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GrowthPoint {
    pub year: f64,
    pub compute: f64,
    /// CEG of the state of the art against the reference at C(year).
    pub ceg: f64,
    /// d ln CEG / d year: the continuous annual growth rate (the authors plot 100× this, in %).
    pub log_growth: f64,
    /// exp(log_growth): the annual growth factor of the measured CEG.
    pub annual_factor: f64,
}

/// Measured progress of one state of the art against one reference, year by year.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReferenceGrowth {
    pub reference: String,
    pub points: Vec<GrowthPoint>,
}

/// The authors' reference dependence: the same state of the art measured
/// against several references, each given as the gain of the state of the
/// art over that reference as a function of compute (e.g. against an LSTM:
/// mixture of experts × the LSTM → modern Transformer frontier CEG; against
/// a Kaplan-allocated Transformer: mixture of experts × the rebalancing CEG;
/// against a dense Transformer: mixture of experts alone). For each year
/// from `start_year` to `end_year` (steps of one): CEG(C(year)) and its
/// growth d ln CEG / d year = ln g · d ln CEG / d ln C (central difference
/// in ln C). A scale-invariant gain grows at exactly zero.
pub fn reference_growth(
    references: &[(String, Gain)],
    trend: &ComputeTrend,
    start_year: f64,
    end_year: f64,
) -> Result<Vec<ReferenceGrowth>> {
    trend.check()?;
    if !(start_year.is_finite() && end_year.is_finite() && end_year >= start_year) {
        return Err(CegError::BadTimeline(format!(
            "reference growth needs finite years with end_year ≥ start_year (got {start_year} and {end_year})"
        )));
    }
    if end_year - start_year > 1000.0 {
        return Err(CegError::BadTimeline(format!(
            "{start_year}..{end_year} spans more than 1000 years"
        )));
    }
    let h: f64 = 1e-4;
    references
        .iter()
        .map(|(name, gain)| {
            let mut points = Vec::new();
            let mut y = start_year;
            while y <= end_year + 1e-9 {
                let c = trend.compute_at(y);
                let at = |c: f64| {
                    gain.at(c).map_err(|e| {
                        CegError::BadTimeline(format!("reference `{name}` in {y}: {e}"))
                    })
                };
                let ceg = at(c)?;
                let log_growth = if gain.is_scale_invariant() {
                    0.0
                } else {
                    (at(c * h.exp())?.ln() - at(c * (-h).exp())?.ln()) / (2.0 * h)
                        * trend.growth_per_year.ln()
                };
                points.push(GrowthPoint {
                    year: y,
                    compute: c,
                    ceg,
                    log_growth,
                    annual_factor: log_growth.exp(),
                });
                y += 1.0;
            }
            Ok(ReferenceGrowth {
                reference: name.clone(),
                points,
            })
        })
        .collect()
}

/// The authors' three references for the modern (mixture-of-experts)
/// Transformer, from the published constants: `lstm` (2.0 × the LSTM →
/// modern Transformer frontier CEG, frontiers 36.3·C^−0.065 and
/// 88.0·C^−0.094 on y = L − 1.9), `kaplan_transformer` (2.0 × the
/// closed-form rebalancing CEG) and `dense_transformer` (2.0).
pub fn paper_references() -> Vec<(String, Gain)> {
    let moe = Gain::constant(2.0);
    let lstm = Gain::Function {
        reference: PowerLaw::new(1.9, 36.3, 0.065),
        new: PowerLaw::new(1.9, 88.0, 0.094),
    };
    vec![
        (
            "lstm".into(),
            Gain::Product {
                factors: vec![moe.clone(), lstm],
            },
        ),
        (
            "kaplan_transformer".into(),
            Gain::Product {
                factors: vec![
                    moe.clone(),
                    Gain::Kaplan {
                        rule: KaplanRule::Kaplan2020ClosedForm,
                    },
                ],
            },
        ),
        ("dense_transformer".into(), moe),
    ]
}

/// One year of a reference-dependence series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReferencePoint {
    pub year: f64,
    pub compute: f64,
    /// The state-of-the-art algorithm in that year.
    pub sota: String,
    /// CEG of the state of the art against the reference at that year's compute.
    pub ceg: f64,
}

/// Result of [`reference_dependence`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReferenceDependence {
    pub reference: String,
    pub points: Vec<ReferencePoint>,
    /// Slope of ln CEG against year.
    pub log_slope: f64,
    /// exp(slope) − 1: the measured annual growth of progress.
    pub annual_growth: f64,
}

/// Measured progress of the yearly state of the art against a fixed
/// reference, and its annual growth rate (module docs). Years run from
/// `start_year` to `end_year` in steps of one.
pub fn reference_dependence(
    spec: &ReferenceSpec,
    trend: &ComputeTrend,
) -> Result<ReferenceDependence> {
    trend.check()?;
    let present = || {
        spec.algorithms
            .iter()
            .map(|a| a.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let reference = spec
        .algorithms
        .iter()
        .find(|a| a.name == spec.reference)
        .ok_or_else(|| CegError::UnknownFamily {
            family: spec.reference.clone(),
            present: present(),
        })?;
    if !(spec.end_year > spec.start_year) {
        return Err(CegError::BadTimeline(format!(
            "reference dependence needs end_year > start_year (got {} and {})",
            spec.start_year, spec.end_year
        )));
    }
    let mut points = Vec::new();
    let mut y = spec.start_year;
    while y <= spec.end_year + 1e-9 {
        // Latest algorithm introduced by year y; later entries win ties.
        let sota = spec
            .algorithms
            .iter()
            .filter(|a| a.year <= y)
            .fold(None::<&Algorithm>, |best, a| match best {
                Some(b) if b.year > a.year => Some(b),
                _ => Some(a),
            })
            .ok_or_else(|| {
                CegError::BadTimeline(format!(
                    "no algorithm is available in {y}; the earliest year must be ≤ start_year"
                ))
            })?;
        let c = trend.compute_at(y);
        let ceg = if sota.name == reference.name {
            1.0
        } else {
            CegFunction::new(reference.frontier, sota.frontier)
                .and_then(|f| f.eval(c))
                .map_err(|e| {
                    CegError::BadTimeline(format!(
                        "{} vs {} in {y}: {e}",
                        sota.name, reference.name
                    ))
                })?
        };
        points.push(ReferencePoint {
            year: y,
            compute: c,
            sota: sota.name.clone(),
            ceg,
        });
        y += 1.0;
    }
    let xs: Vec<f64> = points.iter().map(|p| p.year).collect();
    let ys: Vec<f64> = points.iter().map(|p| p.ceg.ln()).collect();
    let (_, slope) = linear_fit(&xs, &ys)
        .ok_or_else(|| CegError::BadTimeline("need at least two years".into()))?;
    Ok(ReferenceDependence {
        reference: reference.name.clone(),
        points,
        log_slope: slope,
        annual_growth: slope.exp() - 1.0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kaplan::hoffmann_law;

    fn timeline() -> Timeline {
        Timeline {
            target_year: Some(2023.0),
            innovations: vec![
                Innovation::new(
                    "transformer",
                    2017.0,
                    Gain::Function {
                        reference: PowerLaw::new(0.0, 30.0, 0.05),
                        new: PowerLaw::new(0.0, 20.0, 0.06),
                    },
                ),
                Innovation::new("rotary", 2021.0, Gain::Multiplier { value: 2.5 }),
                Innovation::new("swiglu", 2020.0, Gain::Multiplier { value: 1.2 }),
                Innovation::new(
                    "chinchilla",
                    2022.0,
                    Gain::Allocation {
                        law: hoffmann_law(),
                        worse: Allocation::kaplan(),
                        better: Allocation::Optimal,
                        k: 6.0,
                    },
                ),
                Innovation::new("future", 2030.0, Gain::Multiplier { value: 100.0 }),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn compute_trend_defaults() {
        let t = ComputeTrend::default();
        assert!((t.compute_at(2014.0) / 4.1e16 - 1.0).abs() < 1e-12);
        assert!((t.compute_at(t.year_of(1e23)) / 1e23 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn shares_sum_to_one_and_total_is_the_product() {
        let d = decompose(&timeline()).unwrap();
        assert_eq!(d.items.len(), 4, "the 2030 innovation is not in by 2023");
        let c = ComputeTrend::default().compute_at(2023.0);
        assert!((d.compute / c - 1.0).abs() < 1e-12);
        let sum: f64 = d.items.iter().map(|s| s.share).sum();
        assert!((sum - 1.0).abs() < 1e-12);
        let product: f64 = d.items.iter().map(|s| s.ceg).product();
        assert!((d.total_gain / product - 1.0).abs() < 1e-9);
        // The transformer's CEG is the closed form at C(2023).
        let want = (30.0f64 / 20.0).powf(20.0) * c.powf(0.06 / 0.05 - 1.0);
        assert!((d.items[0].ceg / want - 1.0).abs() < 1e-9);
        // Scale-invariant part: the two constant multipliers.
        let si = (2.5f64.ln() + 1.2f64.ln()) / d.log_total;
        assert!((d.scale_invariant_share - si).abs() < 1e-12);
        assert!((d.scale_invariant_share + d.scale_dependent_share - 1.0).abs() < 1e-12);
        // by-year runs 2017..=2023; in 2017 only the transformer counts.
        assert_eq!(d.by_year.first().unwrap().year, 2017.0);
        assert_eq!(d.by_year.last().unwrap().year, 2023.0);
        let c17 = ComputeTrend::default().compute_at(2017.0);
        let want17 = (30.0f64 / 20.0).powf(20.0) * c17.powf(0.2);
        assert!((d.by_year[0].gain / want17 - 1.0).abs() < 1e-9);
    }

    #[test]
    fn interaction_factor_is_its_own_item_and_shares_still_sum_to_one() {
        let mut t = timeline();
        t.interaction = Some(1.33 / 3.43);
        let d = decompose(&t).unwrap();
        assert_eq!(d.items.len(), 5);
        let sum: f64 = d.items.iter().map(|s| s.share).sum();
        assert!((sum - 1.0).abs() < 1e-12);
        let without = decompose(&timeline()).unwrap();
        assert!((d.total_gain / without.total_gain - 1.33 / 3.43).abs() < 1e-9);
    }

    #[test]
    fn timeline_parses_from_json_with_defaults() {
        let json = r#"{"innovations":[{"name":"rotary","year":2021,"gain":{"kind":"multiplier","value":2.0}},
            {"name":"chinchilla","year":2022,"gain":{"kind":"allocation",
              "law":{"e":1.69,"a":406.4,"b":410.7,"alpha":0.34,"beta":0.28},
              "worse":{"rule":"power_rule","coef":831.4,"exponent":0.74},"better":{"rule":"optimal"}}}]}"#;
        let t: Timeline = serde_json::from_str(json).unwrap();
        assert_eq!(t.trend, ComputeTrend::default());
        assert!((t.trend.compute_at(t.target_year()) / 1e23 - 1.0).abs() < 1e-9);
        let d = decompose(&t).unwrap();
        assert!(!d.items[1].scale_invariant && d.items[0].scale_invariant);
    }

    fn spec(reference: &str) -> ReferenceSpec {
        ReferenceSpec {
            reference: reference.into(),
            start_year: 2018.0,
            end_year: 2024.0,
            algorithms: vec![
                Algorithm {
                    name: "lstm".into(),
                    year: 2013.0,
                    frontier: PowerLaw::new(0.0, 30.0, 0.04),
                },
                Algorithm {
                    name: "dense".into(),
                    year: 2017.0,
                    frontier: PowerLaw::new(0.0, 25.0, 0.06),
                },
                Algorithm {
                    name: "modern".into(),
                    year: 2017.5,
                    frontier: PowerLaw::new(0.0, 20.0, 0.06),
                },
            ],
        }
    }

    #[test]
    fn reference_with_the_same_exponent_shows_zero_growth() {
        let r = reference_dependence(&spec("dense"), &ComputeTrend::default()).unwrap();
        assert!(r.points.iter().all(|p| p.sota == "modern"));
        let want = (25.0f64 / 20.0).powf(1.0 / 0.06);
        assert!(r.points.iter().all(|p| (p.ceg / want - 1.0).abs() < 1e-9));
        assert!(r.annual_growth.abs() < 1e-9, "{}", r.annual_growth);
    }

    #[test]
    fn reference_with_a_smaller_exponent_shows_exponential_growth() {
        // CEG ∝ C^(0.06/0.04 − 1) = C^0.5 and C grows 4.1×/yr → 4.1^0.5 − 1 per year.
        let r = reference_dependence(&spec("lstm"), &ComputeTrend::default()).unwrap();
        assert!(
            (r.annual_growth - (4.1f64.sqrt() - 1.0)).abs() < 1e-9,
            "{}",
            r.annual_growth
        );
        let e = reference_dependence(&spec("rnn"), &ComputeTrend::default()).unwrap_err();
        assert!(e.to_string().contains("lstm, dense, modern"));
    }

    #[test]
    fn shipped_illustrative_timeline_is_what_its_note_says() {
        let text = include_str!("../timelines/illustrative.json");
        let t: Timeline = serde_json::from_str(text).unwrap();
        // LSTM -> Transformer: 6.3x at 1e16 FLOPs, growing with compute.
        let g = &t.innovations[0].gain;
        assert!(
            (g.at(1e16).unwrap() / 6.3 - 1.0).abs() < 0.01,
            "{}",
            g.at(1e16).unwrap()
        );
        assert!(g.at(1e20).unwrap() > g.at(1e16).unwrap());
        let d = decompose(&t).unwrap();
        assert!((d.items.iter().map(|s| s.share).sum::<f64>() - 1.0).abs() < 1e-12);
        let r = reference_dependence(t.reference_dependence.as_ref().unwrap(), &t.trend).unwrap();
        // Against the modern Transformer's own lineage the later step is a constant 2x.
        let mut spec = t.reference_dependence.clone().unwrap();
        spec.reference = "Transformer".into();
        spec.start_year = 2020.0;
        let flat = reference_dependence(&spec, &t.trend).unwrap();
        assert!(
            flat.points.iter().all(|p| (p.ceg - 2.0).abs() < 0.01),
            "{:?}",
            flat.points
        );
        assert!(flat.annual_growth.abs() < 1e-9 && r.annual_growth > 0.1);
    }

    fn rel(a: f64, b: f64) -> f64 {
        (a / b - 1.0).abs()
    }

    #[test]
    fn paper_timeline_reproduces_the_published_2012_to_2023_vector() {
        // numbers.txt of the authors' code, 2012 -> 2023.
        let d = decompose(&Timeline::paper()).unwrap();
        assert_eq!((d.start_year, d.target_year), (2012.0, 2023.0));
        assert!(
            rel(d.start_compute, 2.44e15) < 5e-3 && rel(d.compute, 1.34e22) < 5e-3,
            "{:e} {:e}",
            d.start_compute,
            d.compute
        );
        assert!(rel(d.total_gain, 6926.35) < 5e-5, "total {}", d.total_gain);
        assert!(
            rel(d.scale_dependent_gain, 2697.11) < 5e-5,
            "scale-dependent {}",
            d.scale_dependent_gain
        );
        assert!(
            (100.0 * d.scale_dependent_share - 89.33).abs() < 5e-3,
            "{}",
            d.scale_dependent_share
        );
        let k = d.item("kaplan").unwrap();
        assert!(
            rel(k.ceg, 726.15) < 5e-5 && (100.0 * k.share - 74.50).abs() < 5e-3,
            "{k:?}"
        );
        let c = d.item("chinchilla").unwrap();
        assert!(
            rel(c.ceg, 3.7143) < 5e-5 && (100.0 * c.share - 14.84).abs() < 5e-3,
            "{c:?}"
        );
        assert!(
            rel(d.scale_invariant_gain, 2.568) < 5e-4
                && (100.0 * d.scale_invariant_share - 10.67).abs() < 5e-3
        );
        assert!(
            rel(d.annual_growth.unwrap(), 2.2343) < 5e-5,
            "{:?}",
            d.annual_growth
        );
        // Nothing counts in 2012 (stepwise), so the growth is total^(1/11).
        assert_eq!(d.start_gain, 1.0);
        // The normalisation: six singles (GeLU -> SwiGLU only here) multiply to 1.44·1.87·1.04·1.09·1.17 and become 1.33.
        let n = d.normalisation.as_ref().unwrap();
        assert!(rel(n.raw_product, 1.44 * 1.87 * 1.04 * 1.09 * 1.17) < 1e-12);
        assert!((n.exponent - 1.33f64.ln() / n.raw_product.ln()).abs() < 1e-15);
        assert!(
            d.item("gelu_swiglu").is_none(),
            "normalisation-only items are not items"
        );
        let five: f64 = d
            .items
            .iter()
            .filter(|s| s.normalised)
            .map(|s| s.ceg)
            .product();
        assert!(rel(five * 1.17f64.powf(n.exponent), 1.33) < 1e-12);
        assert_eq!(d.items.len(), 8);
        assert!(d.items.iter().all(|s| s.source == Source::Published));
        let sum: f64 = d.items.iter().map(|s| s.share).sum();
        assert!((sum - 1.0).abs() < 1e-12);
    }

    #[test]
    fn paper_timeline_2013_to_2025_matches_the_second_published_vector() {
        let mut t = Timeline::paper();
        t.start_year = Some(2013.0);
        t.target_year = Some(2025.0);
        let d = decompose(&t).unwrap();
        // numbers.txt: 21415.66x, 90.54 %, transformer 847.81x, Chinchilla 9.84x, growth 2.2956x.
        assert!(rel(d.total_gain, 21415.66) < 5e-5, "{}", d.total_gain);
        assert!((100.0 * d.scale_dependent_share - 90.54).abs() < 5e-3);
        assert!(rel(d.item("kaplan").unwrap().ceg, 847.81) < 5e-5);
        assert!(rel(d.item("chinchilla").unwrap().ceg, 9.84) < 5e-3);
        assert!(rel(d.annual_growth.unwrap(), 2.2956) < 5e-5);
        // numbers.txt: "Total transformer growth (from 2013 to 2017.01)" 90.87x.
        t.target_year = Some(2017.01);
        let d = decompose(&t).unwrap();
        assert!(
            rel(d.item("kaplan").unwrap().ceg, 90.87) < 5e-4,
            "{}",
            d.item("kaplan").unwrap().ceg
        );
    }

    #[test]
    fn the_allocation_gain_is_divided_out_of_the_transformer_item_not_counted_twice() {
        let t = Timeline::paper();
        let d = decompose(&t).unwrap();
        let c = d.compute;
        let frontier = CegFunction::new(
            PowerLaw::new(1.9, 36.3, 0.065),
            PowerLaw::new(1.9, 81.7, 0.091),
        )
        .unwrap()
        .eval(c)
        .unwrap();
        let rebalance = crate::kaplan::rebalancing_closed_form(c);
        assert!(rel(d.item("kaplan").unwrap().ceg, frontier / rebalance) < 1e-12);
        // Their product is the frontier gain: the scale-dependent part does not depend on the rebalancing law.
        assert!(rel(d.scale_dependent_gain, frontier) < 1e-12);
        // Exact Kaplan 2020 curve in place of the closed form: same total, shares move by < 0.1 %.
        let mut exact = t.clone();
        let n = exact
            .replace_rebalancing(
                Gain::Kaplan {
                    rule: KaplanRule::Kaplan2020,
                },
                Source::Published,
                None,
            )
            .unwrap();
        assert_eq!(n, 2);
        let e = decompose(&exact).unwrap();
        assert!(rel(e.total_gain, d.total_gain) < 1e-12);
        assert!(
            rel(
                e.item("chinchilla").unwrap().ceg,
                d.item("chinchilla").unwrap().ceg
            ) < 1e-3
        );
    }

    #[test]
    fn overrides_record_their_source() {
        let mut t = Timeline::paper();
        t.set_constant(
            "pre_layer",
            1.5,
            Source::Measured,
            Some("study ablation".into()),
        )
        .unwrap();
        t.set_frontiers(
            "kaplan",
            PowerLaw::new(1.9, 30.0, 0.06),
            PowerLaw::new(1.9, 80.0, 0.09),
            Source::Measured,
            None,
        )
        .unwrap();
        t.set_normalisation_target(1.2, Source::Measured, None)
            .unwrap();
        let d = decompose(&t).unwrap();
        assert_eq!(d.item("pre_layer").unwrap().source, Source::Measured);
        assert_eq!(d.item("pre_layer").unwrap().raw_ceg, 1.5);
        assert_eq!(d.item("kaplan").unwrap().source, Source::Measured);
        assert_eq!(d.item("rotary").unwrap().source, Source::Published);
        assert_eq!(d.normalisation.as_ref().unwrap().source, Source::Measured);
        let n = d.normalisation.as_ref().unwrap();
        assert!(rel(n.raw_product, 1.44 * 1.5 * 1.04 * 1.09 * 1.17) < 1e-12);
        // The frontier part changed, the division by the rebalancing CEG stayed.
        let f = CegFunction::new(
            PowerLaw::new(1.9, 30.0, 0.06),
            PowerLaw::new(1.9, 80.0, 0.09),
        )
        .unwrap()
        .eval(d.compute)
        .unwrap();
        assert!(
            rel(
                d.item("kaplan").unwrap().ceg,
                f / crate::kaplan::rebalancing_closed_form(d.compute)
            ) < 1e-12
        );
        // A measured law for the allocation replaces both places; the kaplan item is now measured throughout.
        let law = ChinchillaLaw {
            e: 1.8,
            a: 300.0,
            b: 400.0,
            alpha: 0.3,
            beta: 0.3,
        };
        let g = Gain::Allocation {
            law,
            worse: Allocation::kaplan2020(),
            better: Allocation::Optimal,
            k: 6.0,
        };
        assert_eq!(t.replace_rebalancing(g, Source::Measured, None).unwrap(), 2);
        let d = decompose(&t).unwrap();
        assert_eq!(d.item("chinchilla").unwrap().source, Source::Measured);
        assert_eq!(d.item("kaplan").unwrap().source, Source::Measured);
        let mut p = Timeline::paper();
        p.set_frontiers(
            "kaplan",
            PowerLaw::new(1.9, 30.0, 0.06),
            PowerLaw::new(1.9, 80.0, 0.09),
            Source::Measured,
            None,
        )
        .unwrap();
        p.replace_rebalancing(
            Gain::Kaplan {
                rule: KaplanRule::Kaplan2020,
            },
            Source::Published,
            None,
        )
        .unwrap();
        assert_eq!(
            decompose(&p).unwrap().item("kaplan").unwrap().source,
            Source::Mixed
        );
        // Errors name what exists.
        let e = t
            .set_constant("swiglu", 1.1, Source::Measured, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no innovation `swiglu`") && e.contains("gelu_swiglu"),
            "{e}"
        );
        let e = t.set_frontiers(
            "rotary",
            PowerLaw::new(1.9, 30.0, 0.06),
            PowerLaw::new(1.9, 80.0, 0.09),
            Source::Measured,
            None,
        );
        assert!(e.unwrap_err().to_string().contains("0 CEG functions"));
    }

    #[test]
    fn not_stepwise_counts_every_item_every_year_and_start_year_sets_the_growth() {
        let mut t = timeline();
        t.stepwise = false;
        t.start_year = Some(2015.0);
        let d = decompose(&t).unwrap();
        assert_eq!(d.items.len(), 5, "the 2030 item counts too");
        assert_eq!(d.by_year.first().unwrap().year, 2015.0);
        let g15 = t.total_at(2015.0).unwrap();
        assert!(rel(d.start_gain, g15) < 1e-12 && g15 > 100.0);
        assert!(
            rel(
                d.annual_growth.unwrap(),
                (d.total_gain / g15).powf(1.0 / 8.0)
            ) < 1e-12
        );
        t.start_year = Some(2024.0);
        assert!(decompose(&t)
            .unwrap_err()
            .to_string()
            .contains("after the target year"));
    }

    #[test]
    fn bad_normalisations_are_rejected() {
        let mut t = timeline();
        t.normalisation = Some(Normalisation {
            target: 1.33,
            members: vec!["rotary".into(), "transformer".into()],
            source: Source::Published,
            note: None,
        });
        assert!(decompose(&t)
            .unwrap_err()
            .to_string()
            .contains("scale-dependent"));
        t.normalisation.as_mut().unwrap().members = vec!["rotary".into(), "nope".into()];
        assert!(decompose(&t)
            .unwrap_err()
            .to_string()
            .contains("no innovation `nope`"));
        t.normalisation = None;
        t.innovations[1].normalisation_only = true;
        assert!(decompose(&t)
            .unwrap_err()
            .to_string()
            .contains("not a member"));
    }

    #[test]
    fn progress_grows_against_an_lstm_and_not_against_a_dense_transformer() {
        let r = reference_growth(
            &paper_references(),
            &ComputeTrend::default(),
            2018.0,
            2028.0,
        )
        .unwrap();
        assert_eq!(
            r.iter().map(|g| g.reference.as_str()).collect::<Vec<_>>(),
            ["lstm", "kaplan_transformer", "dense_transformer"]
        );
        // Against the LSTM (equal E, pure power laws in y = L − E): CEG ∝ C^(0.094/0.065 − 1), so
        // d ln CEG / d year = ln 4.1 · (0.094/0.065 − 1) ≈ 0.629 every year.
        let want = 4.1f64.ln() * (0.094 / 0.065 - 1.0);
        assert!(
            r[0].points
                .iter()
                .all(|p| (p.log_growth - want).abs() < 1e-6),
            "{:?}",
            r[0].points[0]
        );
        let c = r[0].points[0].compute;
        let f = CegFunction::new(
            PowerLaw::new(1.9, 36.3, 0.065),
            PowerLaw::new(1.9, 88.0, 0.094),
        )
        .unwrap()
        .eval(c)
        .unwrap();
        assert!(rel(r[0].points[0].ceg, 2.0 * f) < 1e-12);
        // Against a dense Transformer: the constant 2.0, zero growth.
        assert!(r[2]
            .points
            .iter()
            .all(|p| p.ceg == 2.0 && p.log_growth == 0.0 && p.annual_factor == 1.0));
        // Against a Kaplan-allocated Transformer: growth that itself grows with compute (gap converges then diverges).
        let k = &r[1].points;
        assert!(
            k.windows(2).all(|w| w[1].log_growth > w[0].log_growth)
                && k.last().unwrap().log_growth > 0.2
        );
        let y = 2024.0;
        let c = ComputeTrend::default().compute_at(y);
        let h: f64 = 1e-3;
        let fd = ((crate::kaplan::rebalancing_closed_form(c * h.exp())).ln()
            - (crate::kaplan::rebalancing_closed_form(c * (-h).exp())).ln())
            / (2.0 * h)
            * 4.1f64.ln();
        assert!((k[6].log_growth - fd).abs() < 1e-5 && k[6].year == y);
        assert!(reference_growth(
            &paper_references(),
            &ComputeTrend::default(),
            2020.0,
            2019.0
        )
        .is_err());
    }

    #[test]
    fn a_total_too_large_for_a_number_is_an_error_not_infinity() {
        let t = Timeline {
            target_year: Some(2023.0),
            innovations: vec![
                Innovation::new("a", 2018.0, Gain::constant(1e308)),
                Innovation::new("b", 2019.0, Gain::constant(1e308)),
            ],
            ..Default::default()
        };
        let e = decompose(&t).unwrap_err().to_string();
        assert!(e.contains("too large for a number"), "{e}");
        assert!(t.total_at(2018.5).is_ok() && t.total_at(2020.0).is_err());
    }
}
