//! Do gains multiply? The combination test.
//!
//! With single-change CEGs CEG₁ … CEGₖ and the measured CEG of the combined
//! change (all k together), the multiplicative prediction is Π CEGᵢ and the
//! interaction factor is
//!
//! ```text
//! I = CEG_combined / Π_i CEG_i,
//! ```
//!
//! 1 when gains multiply, < 1 when they are sub-multiplicative (the papers:
//! 1.33× measured against about 3.4× predicted, I ≈ 0.39). Intervals come
//! from a bootstrap over seeds: each replicate resamples the runs of the
//! reference, of every single-change variant and of the combined variant,
//! and recomputes every ratio from the same resampled reference.

use crate::error::{CegError, Result};
use crate::multiplier::MultiplierReport;
use crate::stats::{mean, percentile_interval, resample, Interval};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// A CEG with its bootstrap interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NamedCeg {
    pub name: String,
    pub ceg: f64,
    pub ci: Option<Interval>,
}

/// Result of [`combination_test`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CombinationReport {
    pub threshold: f64,
    pub reference: String,
    pub singles: Vec<NamedCeg>,
    /// Π CEG_i with its interval.
    pub predicted: NamedCeg,
    /// CEG of the combined change with its interval.
    pub measured: NamedCeg,
    /// I = measured / predicted with its interval.
    pub interaction: NamedCeg,
    pub bootstrap: usize,
    pub level: f64,
}

/// Product of single-change CEGs and the interaction factor of a measured
/// combined CEG: returns (Π CEG_i, CEG_combined / Π CEG_i).
pub fn combine_multipliers(singles: &[f64], combined: f64) -> Result<(f64, f64)> {
    for &s in singles.iter().chain(std::iter::once(&combined)) {
        if !(s > 0.0 && s.is_finite()) {
            return Err(CegError::BadParameter {
                name: "CEG".into(),
                value: s,
                why: "must be positive and finite".into(),
            });
        }
    }
    let p: f64 = singles.iter().product();
    Ok((p, combined / p))
}

/// Combination test on a multiplier report: `singles` are the families with
/// one change each, `combined` the family with all of them (module docs).
pub fn combination_test(
    report: &MultiplierReport,
    singles: &[&str],
    combined: &str,
    bootstrap: usize,
    rng_seed: u64,
) -> Result<CombinationReport> {
    if singles.is_empty() {
        return Err(CegError::BadParameter {
            name: "number of single changes".into(),
            value: 0.0,
            why: "name at least one single-change family".into(),
        });
    }
    let present = || {
        report
            .variants
            .iter()
            .map(|v| v.family.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let logs = |f: &str| -> Result<&Vec<f64>> {
        let v = report.variant(f).ok_or_else(|| CegError::UnknownFamily {
            family: f.into(),
            present: present(),
        })?;
        if v.compute.is_none() {
            return Err(CegError::BadParameter {
                name: format!("runs of `{f}` reaching L* = {}", report.threshold),
                value: v.n_reached as f64,
                why: format!(
                    "every run must reach the threshold ({}); use a higher threshold or the automatic one",
                    v.note.clone().unwrap_or_default()
                ),
            });
        }
        Ok(&v.log_computes)
    };
    let dir = report.direction;
    let r = logs(&report.reference)?;
    let s: Vec<&Vec<f64>> = singles.iter().map(|f| logs(f)).collect::<Result<_>>()?;
    let c = logs(combined)?;
    let point = |r: f64, s: &[f64], c: f64| {
        let ls: Vec<f64> = s.iter().map(|&x| dir.log_ceg(r, x)).collect();
        let lp: f64 = ls.iter().sum();
        let lc = dir.log_ceg(r, c);
        (ls, lp, lc, lc - lp)
    };
    let (ls, lp, lc, li) = point(
        mean(r).unwrap(),
        &s.iter().map(|x| mean(x).unwrap()).collect::<Vec<_>>(),
        mean(c).unwrap(),
    );
    let k = singles.len();
    let mut reps: Vec<Vec<f64>> = vec![Vec::with_capacity(bootstrap); k + 3];
    let mut rng = ChaCha8Rng::seed_from_u64(rng_seed);
    for _ in 0..bootstrap {
        let rb = mean(&resample(r, &mut rng)).unwrap();
        let sb: Vec<f64> = s
            .iter()
            .map(|x| mean(&resample(x, &mut rng)).unwrap())
            .collect();
        let cb = mean(&resample(c, &mut rng)).unwrap();
        let (bls, blp, blc, bli) = point(rb, &sb, cb);
        for (i, v) in bls.into_iter().enumerate() {
            reps[i].push(v.exp());
        }
        reps[k].push(blp.exp());
        reps[k + 1].push(blc.exp());
        reps[k + 2].push(bli.exp());
    }
    let ci = |i: usize| {
        if bootstrap > 0 {
            percentile_interval(&reps[i], report.level)
        } else {
            None
        }
    };
    Ok(CombinationReport {
        threshold: report.threshold,
        reference: report.reference.clone(),
        singles: singles
            .iter()
            .enumerate()
            .map(|(i, f)| NamedCeg {
                name: (*f).into(),
                ceg: ls[i].exp(),
                ci: ci(i),
            })
            .collect(),
        predicted: NamedCeg {
            name: "product of singles".into(),
            ceg: lp.exp(),
            ci: ci(k),
        },
        measured: NamedCeg {
            name: combined.into(),
            ceg: lc.exp(),
            ci: ci(k + 1),
        },
        interaction: NamedCeg {
            name: "interaction".into(),
            ceg: li.exp(),
            ci: ci(k + 2),
        },
        bootstrap,
        level: report.level,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multiplier::{ceg_multipliers, Direction, MultiplierOptions, Threshold};
    use algoprog_scaling::{Curve, Point, RunMeta};

    /// Loss falls by 1 per decade of compute from 6 at 1e9, shifted so it
    /// crosses 5.0 at 10^lc.
    fn run(id: &str, fam: &str, lc: f64) -> Curve {
        let meta = RunMeta {
            run_id: id.into(),
            family: fam.into(),
            ..Default::default()
        };
        let pts = (0..=8)
            .map(|i| {
                let x = 9.0 + 0.5 * i as f64;
                Point {
                    step: i,
                    tokens: 0.0,
                    flops: 10f64.powf(x),
                    loss: 5.0 - (x - lc),
                }
            })
            .collect();
        Curve::new(meta, pts)
    }

    #[test]
    fn papers_numbers() {
        let (p, i) = combine_multipliers(&[1.2, 2.5, 1.1, 1.04], 1.33).unwrap();
        assert!((p - 1.2 * 2.5 * 1.1 * 1.04).abs() < 1e-12);
        assert!((i - 1.33 / 3.432).abs() < 1e-12);
        assert!(combine_multipliers(&[0.0], 1.0).is_err());
    }

    #[test]
    fn interaction_of_an_ablation_study() {
        // Full model crosses L* = 5 at 1e10; reverting a → 10^10.3, reverting
        // b → 10^10.2, reverting both → 10^10.1 (seeds ±0.05 decades).
        let mut curves = Vec::new();
        for (fam, lc) in [
            ("modern", 10.0),
            ("no_a", 10.3),
            ("no_b", 10.2),
            ("retro", 10.1),
        ] {
            curves.push(run(&format!("{fam}0"), fam, lc - 0.05));
            curves.push(run(&format!("{fam}1"), fam, lc + 0.05));
        }
        let opts = MultiplierOptions {
            threshold: Threshold::Fixed(5.0),
            direction: Direction::Ablation,
            bootstrap: 500,
            ..Default::default()
        };
        let rep = ceg_multipliers(&curves, "modern", &opts).unwrap();
        let c = combination_test(&rep, &["no_a", "no_b"], "retro", 500, 7).unwrap();
        assert!((c.singles[0].ceg - 10f64.powf(0.3)).abs() < 1e-9);
        assert!((c.singles[1].ceg - 10f64.powf(0.2)).abs() < 1e-9);
        assert!((c.predicted.ceg - 10f64.powf(0.5)).abs() < 1e-9);
        assert!((c.measured.ceg - 10f64.powf(0.1)).abs() < 1e-9);
        assert!((c.interaction.ceg - 10f64.powf(-0.4)).abs() < 1e-9);
        // Every resampled mean moves by at most 0.05 decades per family, so
        // ln I moves by at most 4 · 0.05 decades.
        let ci = c.interaction.ci.unwrap();
        assert!(
            ci.lo >= 10f64.powf(-0.6) - 1e-12 && ci.hi <= 10f64.powf(-0.2) + 1e-12,
            "{ci:?}"
        );
        assert!(ci.hi < 1.0, "sub-multiplicative beyond seed noise");
        let e = combination_test(&rep, &["no_c"], "retro", 10, 0).unwrap_err();
        assert!(e.to_string().contains("no_c"));
    }
}
