//! Decomposition of algorithmic progress at frontier compute, and the
//! dependence of measured progress on the reference algorithm.
//!
//! **Decomposition.** A timeline of innovations, each with the year it
//! arrived and its gain, either a constant CEG multiplier (scale-invariant),
//! a CEG function between two fitted frontiers, or the CEG of a better
//! compute allocation over a worse one (both scale-dependent). Frontier
//! compute grows as C(t) = C₀·g^(t − t₀) (default C₀ = 1e16 FLOPs in
//! t₀ = 2013, g = 4.1× per year). At a target year T every innovation
//! introduced by T is evaluated at C(T), and gains are assumed to
//! **multiply** (the paper's measurements say they combine
//! sub-multiplicatively; pass a measured interaction factor to include that):
//!
//! ```text
//! total = Π_i CEG_i(C(T)) · interaction,   share_i = ln CEG_i / ln total,
//! ```
//!
//! so the shares (including the interaction term, when given) sum to 1. The
//! scale-invariant share is the sum of the shares of constant multipliers and
//! of CEG functions between frontiers with equal exponents and irreducible
//! losses; the rest is scale-dependent.
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
use crate::kaplan::{allocation_ceg, Allocation, FLOPS_PER_PARAM_TOKEN};
use crate::stats::linear_fit;
use algoprog_scaling::{ChinchillaLaw, PowerLaw};
use serde::{Deserialize, Serialize};

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
        Self { base_year: 2013.0, base_compute: 1e16, growth_per_year: 4.1 }
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
        if !(self.base_compute > 0.0 && self.growth_per_year > 0.0 && self.base_year.is_finite()) {
            return Err(CegError::BadTimeline(format!(
                "compute trend needs base_compute > 0 and growth_per_year > 0 (got {:e} and {})",
                self.base_compute, self.growth_per_year
            )));
        }
        Ok(())
    }
}

/// How much an innovation is worth as a function of compute.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Gain {
    /// A constant CEG multiplier (measured at one threshold; scale-invariant by assumption).
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
}

fn default_k() -> f64 {
    FLOPS_PER_PARAM_TOKEN
}

impl Gain {
    /// The CEG at compute `c`.
    pub fn at(&self, c: f64) -> Result<f64> {
        match *self {
            Gain::Multiplier { value } if value > 0.0 && value.is_finite() => Ok(value),
            Gain::Multiplier { value } => Err(CegError::BadParameter {
                name: "CEG multiplier".into(),
                value,
                why: "must be positive and finite".into(),
            }),
            Gain::Function { reference, new } => CegFunction::new(reference, new)?.eval(c),
            Gain::Allocation { law, worse, better, k } => allocation_ceg(&law, better, worse, c, k),
        }
    }

    /// Whether the gain is the same at every compute (see the module docs).
    pub fn is_scale_invariant(&self) -> bool {
        match *self {
            Gain::Multiplier { .. } => true,
            Gain::Function { reference, new } => CegFunction { reference, new }.is_scale_invariant(1e-9),
            Gain::Allocation { worse, better, .. } => worse == better,
        }
    }
}

/// One innovation of a timeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Innovation {
    pub name: String,
    pub year: f64,
    pub gain: Gain,
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

/// A timeline file: compute trend, innovations, target year, optional
/// interaction factor and optional reference-dependence input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    #[serde(default)]
    pub trend: ComputeTrend,
    /// Year at which to decompose; default: the year the trend reaches 1e23 FLOPs.
    #[serde(default)]
    pub target_year: Option<f64>,
    pub innovations: Vec<Innovation>,
    /// Measured combined CEG / product of single CEGs (e.g. 1.33/3.43); 1 or absent = multiplicative.
    #[serde(default)]
    pub interaction: Option<f64>,
    #[serde(default)]
    pub reference_dependence: Option<ReferenceSpec>,
}

impl Timeline {
    /// The target year (given, or when the trend reaches 1e23 FLOPs).
    pub fn target_year(&self) -> f64 {
        self.target_year.unwrap_or_else(|| self.trend.year_of(DEFAULT_TARGET_COMPUTE))
    }
}

/// One innovation's contribution at the target year.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Share {
    pub name: String,
    pub year: f64,
    pub ceg: f64,
    pub log_ceg: f64,
    /// ln CEG_i / ln total (sums to 1 over all items).
    pub share: f64,
    pub scale_invariant: bool,
}

/// Cumulative gain by year.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct YearGain {
    pub year: f64,
    pub compute: f64,
    /// Product of the CEGs of the innovations introduced by this year, at this year's compute (times the interaction factor once more than one innovation is in).
    pub gain: f64,
}

/// Result of [`decompose`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decomposition {
    pub target_year: f64,
    pub compute: f64,
    pub total_gain: f64,
    pub log_total: f64,
    pub items: Vec<Share>,
    pub scale_invariant_share: f64,
    pub scale_dependent_share: f64,
    pub by_year: Vec<YearGain>,
    pub assumptions: Vec<String>,
}

/// Decompose the total gain at the target year (module docs).
pub fn decompose(t: &Timeline) -> Result<Decomposition> {
    t.trend.check()?;
    let year = t.target_year();
    if !year.is_finite() {
        return Err(CegError::BadTimeline(format!("target year {year} is not finite")));
    }
    let active: Vec<&Innovation> = t.innovations.iter().filter(|i| i.year <= year).collect();
    if active.is_empty() {
        return Err(CegError::BadTimeline(format!(
            "no innovation is introduced by the target year {year}; check the years or the target year"
        )));
    }
    let compute = t.trend.compute_at(year);
    let mut items: Vec<Share> = active
        .iter()
        .map(|i| {
            let ceg = i.gain.at(compute).map_err(|e| CegError::BadTimeline(format!("innovation `{}`: {e}", i.name)))?;
            Ok(Share {
                name: i.name.clone(),
                year: i.year,
                ceg,
                log_ceg: ceg.ln(),
                share: 0.0,
                scale_invariant: i.gain.is_scale_invariant(),
            })
        })
        .collect::<Result<_>>()?;
    let interaction = t.interaction.unwrap_or(1.0);
    if !(interaction > 0.0 && interaction.is_finite()) {
        return Err(CegError::BadTimeline(format!("interaction factor {interaction} must be positive")));
    }
    if interaction != 1.0 {
        items.push(Share {
            name: "interaction (measured, non-multiplicative)".into(),
            year: f64::NAN,
            ceg: interaction,
            log_ceg: interaction.ln(),
            share: 0.0,
            scale_invariant: true,
        });
    }
    let log_total: f64 = items.iter().map(|s| s.log_ceg).sum();
    if log_total == 0.0 {
        return Err(CegError::ZeroTotalGain { compute });
    }
    for s in &mut items {
        s.share = s.log_ceg / log_total;
    }
    let si: f64 = items.iter().filter(|s| s.scale_invariant).map(|s| s.share).sum();
    let start = t.innovations.iter().map(|i| i.year).fold(f64::INFINITY, f64::min).floor();
    let mut by_year = Vec::new();
    let mut y = start;
    while y <= year + 1e-9 {
        let c = t.trend.compute_at(y);
        let ins: Vec<&Innovation> = t.innovations.iter().filter(|i| i.year <= y).collect();
        let mut g = 1.0;
        for i in &ins {
            g *= i.gain.at(c).map_err(|e| CegError::BadTimeline(format!("innovation `{}` in {y}: {e}", i.name)))?;
        }
        if ins.len() > 1 {
            g *= interaction;
        }
        by_year.push(YearGain { year: y, compute: c, gain: g });
        y += 1.0;
    }
    let mut assumptions = vec![
        format!(
            "frontier compute C(t) = {:.1e}·{}^(t − {}) FLOPs; C({year:.2}) = {compute:.3e}",
            t.trend.base_compute, t.trend.growth_per_year, t.trend.base_year
        ),
        "CEG functions and allocation gains are evaluated at the target year's compute, extrapolating fitted laws".into(),
        "constant multipliers are assumed scale-invariant (measured at one threshold, applied at every compute)".into(),
    ];
    assumptions.push(if interaction == 1.0 {
        "gains multiply (no interaction measured); the papers measured sub-multiplicative combinations, so this is an upper estimate".into()
    } else {
        format!("gains multiply, times a measured interaction factor {interaction}")
    });
    Ok(Decomposition {
        target_year: year,
        compute,
        total_gain: log_total.exp(),
        log_total,
        items,
        scale_invariant_share: si,
        scale_dependent_share: 1.0 - si,
        by_year,
        assumptions,
    })
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
pub fn reference_dependence(spec: &ReferenceSpec, trend: &ComputeTrend) -> Result<ReferenceDependence> {
    trend.check()?;
    let present = || spec.algorithms.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", ");
    let reference = spec
        .algorithms
        .iter()
        .find(|a| a.name == spec.reference)
        .ok_or_else(|| CegError::UnknownFamily { family: spec.reference.clone(), present: present() })?;
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
            .ok_or_else(|| CegError::BadTimeline(format!("no algorithm is available in {y}; the earliest year must be ≤ start_year")))?;
        let c = trend.compute_at(y);
        let ceg = if sota.name == reference.name {
            1.0
        } else {
            CegFunction::new(reference.frontier, sota.frontier)
                .and_then(|f| f.eval(c))
                .map_err(|e| CegError::BadTimeline(format!("{} vs {} in {y}: {e}", sota.name, reference.name)))?
        };
        points.push(ReferencePoint { year: y, compute: c, sota: sota.name.clone(), ceg });
        y += 1.0;
    }
    let xs: Vec<f64> = points.iter().map(|p| p.year).collect();
    let ys: Vec<f64> = points.iter().map(|p| p.ceg.ln()).collect();
    let (_, slope) = linear_fit(&xs, &ys).ok_or_else(|| CegError::BadTimeline("need at least two years".into()))?;
    Ok(ReferenceDependence { reference: reference.name.clone(), points, log_slope: slope, annual_growth: slope.exp() - 1.0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kaplan::hoffmann_law;

    fn timeline() -> Timeline {
        Timeline {
            trend: ComputeTrend::default(),
            target_year: Some(2023.0),
            innovations: vec![
                Innovation {
                    name: "transformer".into(),
                    year: 2017.0,
                    gain: Gain::Function { reference: PowerLaw::new(0.0, 30.0, 0.05), new: PowerLaw::new(0.0, 20.0, 0.06) },
                },
                Innovation { name: "rotary".into(), year: 2021.0, gain: Gain::Multiplier { value: 2.5 } },
                Innovation { name: "swiglu".into(), year: 2020.0, gain: Gain::Multiplier { value: 1.2 } },
                Innovation {
                    name: "chinchilla".into(),
                    year: 2022.0,
                    gain: Gain::Allocation { law: hoffmann_law(), worse: Allocation::kaplan(), better: Allocation::Optimal, k: 6.0 },
                },
                Innovation { name: "future".into(), year: 2030.0, gain: Gain::Multiplier { value: 100.0 } },
            ],
            interaction: None,
            reference_dependence: None,
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
                Algorithm { name: "lstm".into(), year: 2013.0, frontier: PowerLaw::new(0.0, 30.0, 0.04) },
                Algorithm { name: "dense".into(), year: 2017.0, frontier: PowerLaw::new(0.0, 25.0, 0.06) },
                Algorithm { name: "modern".into(), year: 2017.5, frontier: PowerLaw::new(0.0, 20.0, 0.06) },
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
        assert!((r.annual_growth - (4.1f64.sqrt() - 1.0)).abs() < 1e-9, "{}", r.annual_growth);
        let e = reference_dependence(&spec("rnn"), &ComputeTrend::default()).unwrap_err();
        assert!(e.to_string().contains("lstm, dense, modern"));
    }

    #[test]
    fn shipped_illustrative_timeline_is_what_its_note_says() {
        let text = include_str!("../timelines/illustrative.json");
        let t: Timeline = serde_json::from_str(text).unwrap();
        // LSTM -> Transformer: 6.3x at 1e16 FLOPs, growing with compute.
        let g = t.innovations[0].gain;
        assert!((g.at(1e16).unwrap() - 6.28).abs() < 0.05, "{}", g.at(1e16).unwrap());
        assert!(g.at(1e20).unwrap() > g.at(1e16).unwrap());
        let d = decompose(&t).unwrap();
        assert!((d.items.iter().map(|s| s.share).sum::<f64>() - 1.0).abs() < 1e-12);
        let r = reference_dependence(t.reference_dependence.as_ref().unwrap(), &t.trend).unwrap();
        // Against the modern Transformer's own lineage the later step is a constant 2x.
        let mut spec = t.reference_dependence.clone().unwrap();
        spec.reference = "Transformer".into();
        spec.start_year = 2020.0;
        let flat = reference_dependence(&spec, &t.trend).unwrap();
        assert!(flat.points.iter().all(|p| (p.ceg - 2.0).abs() < 0.01), "{:?}", flat.points);
        assert!(flat.annual_growth.abs() < 1e-9 && r.annual_growth > 0.1);
    }
}
