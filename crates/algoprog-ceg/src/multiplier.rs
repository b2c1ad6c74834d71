//! CEG multipliers at a loss threshold L*.
//!
//! For each run, the compute C_r(L*) at which its validation curve first
//! reaches L* (see [`crate::threshold`]). Runs of one family (variant) are
//! seeds of the same configuration; their crossing computes are combined by
//! the geometric mean
//!
//! ```text
//! C_v(L*) = exp( mean_r ln C_r(L*) ),
//! ```
//!
//! and the compute-equivalent gain of an innovation is a ratio of two such
//! computes. With [`Direction::VariantIsNew`] the reference is the older
//! algorithm and CEG_v = C_ref(L*) / C_v(L*); with [`Direction::Ablation`]
//! the reference is the full model, each variant removes one innovation, and
//! the worth of the removed innovation is CEG_v = C_v(L*) / C_ref(L*).
//! Either way CEG > 1 means the innovation saves compute.
//!
//! Confidence intervals come from a bootstrap over seeds: each replicate
//! resamples, with replacement, the runs of the reference and of the variant
//! and recomputes the ratio of geometric means; the interval is the
//! percentile interval of the replicates.
//!
//! A variant with any run that never reaches L* (or is already below it at
//! its first evaluation) gets no CEG: the report names those runs instead of
//! approximating them. The automatic threshold (the lowest loss every
//! compared run reaches) avoids this.

use crate::error::{CegError, Result};
use crate::stats::{geometric_mean, mean, percentile_interval, resample, Interval};
use crate::threshold::{auto_threshold, crossing, envelope_crossing, Crossing};
use algoprog_scaling::{Curve, PowerLaw};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Which way round a compute ratio is read as a gain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Variants are newer than the reference: CEG = C_ref(L*) / C_variant(L*).
    #[default]
    VariantIsNew,
    /// The reference is the full (newest) model and each variant reverts one
    /// innovation: the innovation's CEG = C_variant(L*) / C_ref(L*).
    Ablation,
}

impl Direction {
    /// ln CEG from the log-computes of the reference and of the variant.
    pub fn log_ceg(self, ln_c_ref: f64, ln_c_variant: f64) -> f64 {
        match self {
            Direction::VariantIsNew => ln_c_ref - ln_c_variant,
            Direction::Ablation => ln_c_variant - ln_c_ref,
        }
    }
}

/// How the loss threshold is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Threshold {
    /// A given L*.
    Fixed(f64),
    /// The lowest loss reached by every compared run: L* = max_r min_t L_r(t).
    Auto,
}

/// Options of [`ceg_multipliers`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MultiplierOptions {
    pub threshold: Threshold,
    pub direction: Direction,
    /// Bootstrap replicates over seeds (0 disables the intervals).
    pub bootstrap: usize,
    /// Confidence level of the intervals (0.9 → 5th–95th percentiles).
    pub level: f64,
    /// Seed of the bootstrap's random generator (ChaCha8), for reproducible intervals.
    pub rng_seed: u64,
    /// Include runs flagged as diverged (excluded by default).
    pub include_diverged: bool,
}

impl Default for MultiplierOptions {
    fn default() -> Self {
        Self {
            threshold: Threshold::Auto,
            direction: Direction::VariantIsNew,
            bootstrap: 1000,
            level: 0.9,
            rng_seed: 0,
            include_diverged: false,
        }
    }
}

/// One run's crossing of L*.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunCrossing {
    pub run_id: String,
    pub family: String,
    pub seed: Option<u64>,
    pub crossing: Crossing,
}

/// One family's (variant's) result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VariantCeg {
    pub family: String,
    /// Runs (seeds) of the family that were compared.
    pub n_runs: usize,
    /// Runs whose crossing of L* was measured.
    pub n_reached: usize,
    /// ln C_r(L*) of the measured runs.
    pub log_computes: Vec<f64>,
    /// Geometric mean of the crossing computes, when every run reached L*.
    pub compute: Option<f64>,
    /// CEG against the reference (1 for the reference itself).
    pub ceg: Option<f64>,
    /// Bootstrap percentile interval of the CEG over seeds.
    pub ci: Option<Interval>,
    /// Why the CEG is missing, when it is.
    pub note: Option<String>,
}

/// The result of [`ceg_multipliers`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MultiplierReport {
    pub threshold: f64,
    pub threshold_auto: bool,
    pub reference: String,
    pub direction: Direction,
    pub bootstrap: usize,
    pub level: f64,
    /// Every compared run's crossing.
    pub runs: Vec<RunCrossing>,
    /// Runs left out because they diverged.
    pub excluded_diverged: Vec<String>,
    /// Per family, the reference first, then in order of first appearance.
    pub variants: Vec<VariantCeg>,
}

impl MultiplierReport {
    /// The result of one family.
    pub fn variant(&self, family: &str) -> Option<&VariantCeg> {
        self.variants.iter().find(|v| v.family == family)
    }
}

/// Families in order of first appearance, reference first.
fn families(curves: &[&Curve], reference: &str) -> Result<Vec<String>> {
    let mut fams: Vec<String> = Vec::new();
    for c in curves {
        if !fams.contains(&c.meta.family) {
            fams.push(c.meta.family.clone());
        }
    }
    let Some(pos) = fams.iter().position(|f| f == reference) else {
        return Err(CegError::UnknownFamily {
            family: reference.into(),
            present: fams.join(", "),
        });
    };
    let r = fams.remove(pos);
    fams.insert(0, r);
    Ok(fams)
}

/// CEG multipliers of every family against `reference` at a loss threshold,
/// with geometric means over seeds and bootstrap intervals (module docs).
pub fn ceg_multipliers(
    curves: &[Curve],
    reference: &str,
    opts: &MultiplierOptions,
) -> Result<MultiplierReport> {
    if !(opts.level > 0.0 && opts.level < 1.0) {
        return Err(CegError::BadParameter {
            name: "confidence level".into(),
            value: opts.level,
            why: "must lie strictly between 0 and 1 (e.g. 0.9)".into(),
        });
    }
    let (used, excluded): (Vec<&Curve>, Vec<&Curve>) = curves
        .iter()
        .partition(|c| opts.include_diverged || !c.meta.diverged);
    if used.is_empty() {
        return Err(CegError::NoCurves {
            what: "the CEG multiplier (all runs diverged or none given)".into(),
        });
    }
    let fams = families(&used, reference)?;
    let (threshold, auto) = match opts.threshold {
        Threshold::Fixed(t) if t.is_finite() => (t, false),
        Threshold::Fixed(t) => return Err(CegError::BadThreshold(t)),
        Threshold::Auto => (auto_threshold(used.iter().copied())?, true),
    };
    let runs: Vec<RunCrossing> = used
        .iter()
        .map(|c| {
            Ok(RunCrossing {
                run_id: c.meta.run_id.clone(),
                family: c.meta.family.clone(),
                seed: c.meta.seed,
                crossing: crossing(c, threshold)?,
            })
        })
        .collect::<Result<_>>()?;

    let mut variants: Vec<VariantCeg> = fams
        .iter()
        .map(|f| {
            let mine: Vec<&RunCrossing> = runs.iter().filter(|r| &r.family == f).collect();
            let log_computes: Vec<f64> = mine.iter().filter_map(|r| r.crossing.compute()).map(f64::ln).collect();
            let missing: Vec<String> =
                mine.iter().filter(|r| r.crossing.compute().is_none()).map(|r| r.run_id.clone()).collect();
            let all = missing.is_empty();
            VariantCeg {
                family: f.clone(),
                n_runs: mine.len(),
                n_reached: log_computes.len(),
                compute: if all { mean(&log_computes).map(f64::exp) } else { None },
                ceg: None,
                ci: None,
                note: (!all).then(|| {
                    format!(
                        "{} of {} runs not measured at L* (never reached, or below it at their first evaluation): {}",
                        missing.len(),
                        mine.len(),
                        missing.join(", ")
                    )
                }),
                log_computes,
            }
        })
        .collect();

    let reference_ok = variants[0].compute.is_some();
    let ref_logs = variants[0].log_computes.clone();
    let mut rng = ChaCha8Rng::seed_from_u64(opts.rng_seed);
    for (i, v) in variants.iter_mut().enumerate() {
        if v.compute.is_none() {
            continue;
        }
        if i == 0 {
            v.ceg = Some(1.0);
            continue;
        }
        if !reference_ok {
            v.note = Some(format!(
                "the reference `{reference}` is not measured at L* for every run"
            ));
            continue;
        }
        let lr = mean(&ref_logs).unwrap();
        let lv = mean(&v.log_computes).unwrap();
        v.ceg = Some(opts.direction.log_ceg(lr, lv).exp());
        if opts.bootstrap > 0 {
            let reps: Vec<f64> = (0..opts.bootstrap)
                .map(|_| {
                    let r = mean(&resample(&ref_logs, &mut rng)).unwrap();
                    let s = mean(&resample(&v.log_computes, &mut rng)).unwrap();
                    opts.direction.log_ceg(r, s).exp()
                })
                .collect();
            v.ci = percentile_interval(&reps, opts.level);
        }
    }
    Ok(MultiplierReport {
        threshold,
        threshold_auto: auto,
        reference: reference.into(),
        direction: opts.direction,
        bootstrap: opts.bootstrap,
        level: opts.level,
        runs,
        excluded_diverged: excluded.iter().map(|c| c.meta.run_id.clone()).collect(),
        variants,
    })
}

/// A family's compute at L* on its frontier and the resulting CEG.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrontierCeg {
    pub family: String,
    /// Compute at which the family's frontier reaches L* (None if it never does).
    pub compute: Option<f64>,
    /// CEG against the reference's frontier.
    pub ceg: Option<f64>,
    pub note: Option<String>,
}

/// The frontier-based CEG of one family over another at one loss (see [`frontier_ceg`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrontierCegAt {
    /// The loss threshold L*.
    pub threshold: f64,
    /// Compute at which the reference frontier reaches L*.
    pub reference_compute: f64,
    /// Compute at which the new frontier reaches L*.
    pub new_compute: f64,
    /// reference_compute / new_compute.
    pub ceg: f64,
}

/// The authors' frontier-based CEG of `new` over `reference` at loss
/// `threshold`: each frontier L = E + A·C^−γ reaches y* = L* − E at
/// C = (y*/A)^(−1/γ) (their C = (y*/A)^(1/α) with α = −γ), and the CEG is
/// C_reference / C_new. With the published fits (E = 1.9, y* = 3.377) this is
/// the 6.28× of the modern Transformer over the LSTM. Errors name the
/// frontier that never reaches L* or is degenerate.
pub fn frontier_ceg(reference: &PowerLaw, new: &PowerLaw, threshold: f64) -> Result<FrontierCegAt> {
    if !threshold.is_finite() {
        return Err(CegError::BadThreshold(threshold));
    }
    let at = |which: &str, l: &PowerLaw| -> Result<f64> {
        if !(l.a > 0.0
            && l.gamma > 0.0
            && l.a.is_finite()
            && l.gamma.is_finite()
            && l.e.is_finite())
        {
            return Err(CegError::DegenerateLaw {
                which: which.into(),
                e: l.e,
                a: l.a,
                gamma: l.gamma,
            });
        }
        let y = threshold - l.e;
        if !(y > 0.0) {
            return Err(CegError::Unreachable {
                which: which.into(),
                loss: threshold,
                e: l.e,
            });
        }
        // ln C = (ln A − ln y*) / γ, in logs so that far-off computes stay finite in the ratio.
        Ok((l.a.ln() - y.ln()) / l.gamma)
    };
    let (lr, ln) = (at("reference", reference)?, at("new", new)?);
    Ok(FrontierCegAt {
        threshold,
        reference_compute: lr.exp(),
        new_compute: ln.exp(),
        ceg: (lr - ln).exp(),
    })
}

/// Frontier-based CEG multipliers: the compute at L* on each family's
/// *fitted* frontier L(C) = E + A·C^−γ, i.e. C(L*) = (A / (L* − E))^(1/γ),
/// and the ratio against the reference family's (read per `direction`).
pub fn frontier_multipliers(
    laws: &[(String, PowerLaw)],
    reference: &str,
    threshold: f64,
    direction: Direction,
) -> Result<Vec<FrontierCeg>> {
    if !threshold.is_finite() {
        return Err(CegError::BadThreshold(threshold));
    }
    let present = || {
        laws.iter()
            .map(|(f, _)| f.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (_, rlaw) =
        laws.iter()
            .find(|(f, _)| f == reference)
            .ok_or_else(|| CegError::UnknownFamily {
                family: reference.into(),
                present: present(),
            })?;
    let c_ref = rlaw.compute_at(threshold);
    Ok(laws
        .iter()
        .map(|(f, law)| {
            let c = law.compute_at(threshold);
            let (ceg, note) = match (c_ref, c) {
                (Some(r), Some(v)) => (Some(direction.log_ceg(r.ln(), v.ln()).exp()), None),
                (None, _) => (
                    None,
                    Some(format!(
                        "the reference frontier never reaches L* = {threshold} (E = {})",
                        rlaw.e
                    )),
                ),
                (_, None) => (
                    None,
                    Some(format!(
                        "this frontier never reaches L* = {threshold} (E = {})",
                        law.e
                    )),
                ),
            };
            FrontierCeg {
                family: f.clone(),
                compute: c,
                ceg,
                note,
            }
        })
        .collect())
}

/// Empirical-frontier CEG multipliers: the compute at which each family's
/// lower envelope of (compute, loss) first reaches L*, which is the earliest
/// interpolated crossing among the family's runs (see
/// [`envelope_crossing`]), and the ratio against the reference's.
pub fn envelope_multipliers(
    curves: &[Curve],
    reference: &str,
    threshold: f64,
    direction: Direction,
) -> Result<Vec<FrontierCeg>> {
    let used: Vec<&Curve> = curves.iter().filter(|c| !c.meta.diverged).collect();
    let fams = families(&used, reference)?;
    let mut out = Vec::new();
    for f in &fams {
        let mine: Vec<Curve> = used
            .iter()
            .filter(|c| &c.meta.family == f)
            .map(|c| (*c).clone())
            .collect();
        let (i, x) = envelope_crossing(&mine, threshold)?;
        let note = x
            .compute()
            .is_none()
            .then(|| format!("run {}: {}", mine[i].meta.run_id, x.describe()));
        out.push(FrontierCeg {
            family: f.clone(),
            compute: x.compute(),
            ceg: None,
            note,
        });
    }
    let c_ref = out[0].compute;
    for v in &mut out {
        if let (Some(r), Some(c)) = (c_ref, v.compute) {
            v.ceg = Some(direction.log_ceg(r.ln(), c.ln()).exp());
        }
    }
    Ok(out)
}

/// Geometric mean of crossing computes, exposed for callers that build their
/// own groupings: `None` if any crossing is unmeasured.
pub fn geometric_mean_compute(crossings: &[Crossing]) -> Option<f64> {
    let cs: Option<Vec<f64>> = crossings.iter().map(|c| c.compute()).collect();
    geometric_mean(&cs?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use algoprog_scaling::{Point, RunMeta};

    /// A straight line in (log10 C, loss): loss = l0 − slope·(log10 C − 9),
    /// evaluated at C = 1e9..1e13; crosses L at 10^(9 + (l0 − L)/slope).
    pub(crate) fn line(id: &str, fam: &str, l0: f64, slope: f64) -> Curve {
        let meta = RunMeta {
            run_id: id.into(),
            family: fam.into(),
            seed: Some(0),
            ..Default::default()
        };
        let points = (0..=8)
            .map(|i| {
                let lc = 9.0 + 0.5 * i as f64;
                Point {
                    step: i,
                    tokens: 0.0,
                    flops: 10f64.powf(lc),
                    loss: l0 - slope * (lc - 9.0),
                }
            })
            .collect();
        Curve::new(meta, points)
    }

    fn opts(t: f64, dir: Direction) -> MultiplierOptions {
        MultiplierOptions {
            threshold: Threshold::Fixed(t),
            direction: dir,
            bootstrap: 200,
            ..Default::default()
        }
    }

    #[test]
    fn geometric_mean_over_seeds_and_ratio() {
        // Reference crosses L* = 5 at 10^11 and 10^11.5 (gm 10^11.25);
        // the new variant at 10^10 and 10^10.5 (gm 10^10.25): CEG = 10.
        let curves = vec![
            line("r0", "old", 7.0, 1.0),
            line("r1", "old", 7.5, 1.0),
            line("n0", "new", 6.0, 1.0),
            line("n1", "new", 6.5, 1.0),
        ];
        let rep = ceg_multipliers(&curves, "old", &opts(5.0, Direction::VariantIsNew)).unwrap();
        let old = rep.variant("old").unwrap();
        assert!((old.compute.unwrap() / 10f64.powf(11.25) - 1.0).abs() < 1e-10);
        assert_eq!(old.ceg, Some(1.0));
        let new = rep.variant("new").unwrap();
        assert!((new.ceg.unwrap() - 10.0).abs() < 1e-9, "{:?}", new.ceg);
        let ci = new.ci.unwrap();
        // Resampled seed means range over 10^{10,10.25,10.5} vs 10^{11,11.25,11.5}.
        assert!(
            ci.lo >= 10f64.powf(0.5) - 1e-9 && ci.hi <= 10f64.powf(1.5) + 1e-9,
            "{ci:?}"
        );
        assert!(ci.lo <= 10.0 && ci.hi >= 10.0);
        // Ablation reading: the reference is the full model, CEG = C_v / C_ref.
        let rep = ceg_multipliers(&curves, "new", &opts(5.0, Direction::Ablation)).unwrap();
        assert!((rep.variant("old").unwrap().ceg.unwrap() - 10.0).abs() < 1e-9);
    }

    #[test]
    fn unreached_runs_void_the_variant_and_are_named() {
        let curves = vec![
            line("r0", "old", 7.0, 1.0),
            line("n0", "new", 6.0, 1.0),
            line("n1", "new", 20.0, 1.0),
        ];
        let rep = ceg_multipliers(&curves, "old", &opts(5.0, Direction::VariantIsNew)).unwrap();
        let new = rep.variant("new").unwrap();
        assert_eq!((new.n_runs, new.n_reached, new.ceg), (2, 1, None));
        assert!(
            new.note.as_ref().unwrap().ends_with(": n1"),
            "{:?}",
            new.note
        );
        let n1 = rep.runs.iter().find(|r| r.run_id == "n1").unwrap();
        assert_eq!(n1.crossing, Crossing::Never { min_loss: 16.0 });
    }

    #[test]
    fn auto_threshold_makes_every_run_count() {
        // Lowest losses: old 7 − 4 = 3, new 6 − 4 = 2 → L* = 3, old reaches it
        // at its last row (1e13), new at 10^12: CEG = 10.
        let curves = vec![line("r0", "old", 7.0, 1.0), line("n0", "new", 6.0, 1.0)];
        let mut o = opts(0.0, Direction::VariantIsNew);
        o.threshold = Threshold::Auto;
        let rep = ceg_multipliers(&curves, "old", &o).unwrap();
        assert_eq!(rep.threshold, 3.0);
        assert!(rep.threshold_auto);
        assert!((rep.variant("new").unwrap().ceg.unwrap() - 10.0).abs() < 1e-9);
    }

    #[test]
    fn unknown_reference_names_the_families_present() {
        let curves = vec![line("r0", "old", 7.0, 1.0)];
        let e = ceg_multipliers(&curves, "lstm", &opts(5.0, Direction::VariantIsNew)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "family `lstm` has no runs; the families present are: old"
        );
    }

    #[test]
    fn frontier_multiplier_inverts_the_fitted_laws() {
        // L = 2 + 100·C^-0.1 reaches 3 at C = 100^10 = 1e20; L = 2 + 50·C^-0.1 at 50^10.
        let laws = vec![
            ("old".to_string(), PowerLaw::new(2.0, 100.0, 0.1)),
            ("new".to_string(), PowerLaw::new(2.0, 50.0, 0.1)),
        ];
        let f = frontier_multipliers(&laws, "old", 3.0, Direction::VariantIsNew).unwrap();
        assert!((f[0].compute.unwrap() / 1e20 - 1.0).abs() < 1e-9);
        assert!((f[1].ceg.unwrap() - 1024.0).abs() < 1e-6, "{:?}", f[1].ceg);
        let f = frontier_multipliers(&laws, "old", 1.5, Direction::VariantIsNew).unwrap();
        assert!(f[1].ceg.is_none() && f[1].note.is_some());
    }

    #[test]
    fn envelope_multiplier_uses_earliest_run_per_family() {
        let curves = vec![
            line("r0", "old", 7.0, 1.0), // crosses 5 at 1e11
            line("r1", "old", 8.0, 1.0), // 1e12
            line("n0", "new", 6.0, 1.0), // 1e10
        ];
        let f = envelope_multipliers(&curves, "old", 5.0, Direction::VariantIsNew).unwrap();
        assert!((f[0].compute.unwrap() / 1e11 - 1.0).abs() < 1e-10);
        assert!((f[1].ceg.unwrap() - 10.0).abs() < 1e-9);
    }

    #[test]
    fn frontier_ceg_is_the_ratio_of_the_computes_at_y_star() {
        // Published fits of y = L − 1.9 (constants.py) at y* = 5.277 − 1.9.
        let lstm = PowerLaw::new(1.9, 36.3, 0.065);
        let modern = PowerLaw::new(1.9, 88.0, 0.094);
        let r = frontier_ceg(&lstm, &modern, 5.277).unwrap();
        let y: f64 = 3.377;
        let c_l = (y / 36.3).powf(1.0 / -0.065);
        let c_m = (y / 88.0).powf(1.0 / -0.094);
        assert!(
            (r.reference_compute / c_l - 1.0).abs() < 1e-9
                && (r.new_compute / c_m - 1.0).abs() < 1e-9
        );
        assert!((r.ceg / (c_l / c_m) - 1.0).abs() < 1e-9);
        // The rounded published constants give 6.37 (published, from the unrounded fits: 6.28).
        assert!((r.ceg - 6.368).abs() < 1e-3, "{}", r.ceg);
        // Same as the list form.
        let v = frontier_multipliers(
            &[("lstm".into(), lstm), ("modern".into(), modern)],
            "lstm",
            5.277,
            Direction::VariantIsNew,
        )
        .unwrap();
        assert!((v[1].ceg.unwrap() / r.ceg - 1.0).abs() < 1e-9);
        assert!(matches!(
            frontier_ceg(&lstm, &modern, 1.8),
            Err(CegError::Unreachable { .. })
        ));
        assert!(matches!(
            frontier_ceg(&PowerLaw::new(1.9, -1.0, 0.1), &modern, 5.0),
            Err(CegError::DegenerateLaw { .. })
        ));
    }
}
