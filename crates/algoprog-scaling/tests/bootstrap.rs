//! Bootstrap: percentile intervals and their coverage over repeated synthetic trials.

use algoprog_scaling::bootstrap::{quantile_sorted, resample_indices};
use algoprog_scaling::{
    bootstrap_chinchilla, bootstrap_frontier, bootstrap_power_law, BootstrapOptions,
    ChinchillaData, ChinchillaLaw, ChinchillaOptions, Curve, FitSpace, FrontierOptions,
    Irreducible, Point, PowerLawOptions, RefitStarts, Resample, RunMeta, StartGrid,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(1e-300);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

#[test]
fn quantiles_match_numpy_linear_interpolation() {
    let s = [1.0, 2.0, 3.0, 4.0, 10.0];
    assert_eq!(quantile_sorted(&s, 0.5), 3.0);
    assert!((quantile_sorted(&s, 0.05) - 1.2).abs() < 1e-12); // numpy.percentile(s, 5)
    assert!((quantile_sorted(&s, 0.95) - 8.8).abs() < 1e-12); // numpy.percentile(s, 95)
}

#[test]
fn resamples_are_seeded_and_differ_between_replicates() {
    assert_eq!(resample_indices(7, 3, 50), resample_indices(7, 3, 50));
    assert_ne!(resample_indices(7, 3, 50), resample_indices(7, 4, 50));
    assert!(resample_indices(7, 3, 50).iter().all(|&i| i < 50));
}

#[test]
fn power_law_intervals_cover_the_true_gamma_at_about_the_nominal_rate() {
    // 200 synthetic data sets from L = 1.8 + 60·C^-0.1 with 1% log-normal noise;
    // a 90% interval of γ from 200 resamples each should cover 0.1 in ~90% of trials.
    let trials = 200;
    let mut covered = 0;
    let mut covered_a = 0;
    for t in 0..trials {
        let mut rng = ChaCha8Rng::seed_from_u64(1000 + t);
        let c: Vec<f64> = (0..25)
            .map(|i| 10f64.powf(15.0 + 5.0 * i as f64 / 24.0))
            .collect();
        let l: Vec<f64> = c
            .iter()
            .map(|&c| 1.8 + 60.0 * c.powf(-0.1) * (0.01 * normal(&mut rng)).exp())
            .collect();
        let b = bootstrap_power_law(
            &c,
            &l,
            &PowerLawOptions {
                irreducible: Irreducible::Fixed(1.8),
                space: FitSpace::Log,
            },
            &BootstrapOptions {
                reps: 200,
                level: 0.9,
                seed: t,
                resample: Resample::Points,
            },
        )
        .unwrap();
        assert_eq!(b.failed, 0);
        assert_eq!(b.e.lo, 1.8);
        covered += b.gamma.contains(0.1) as usize;
        covered_a += b.a.contains(60.0) as usize;
    }
    let rate = covered as f64 / trials as f64;
    let rate_a = covered_a as f64 / trials as f64;
    // binomial sd at p = 0.9, n = 200 is 0.021; percentile intervals run a little narrow at n = 25
    assert!((0.80..=0.96).contains(&rate), "coverage of gamma {rate}");
    assert!((0.80..=0.96).contains(&rate_a), "coverage of A {rate_a}");
}

#[test]
fn chinchilla_intervals_cover_the_true_exponents_at_about_the_nominal_rate() {
    let law = ChinchillaLaw {
        e: 1.69,
        a: 406.4,
        b: 410.7,
        alpha: 0.34,
        beta: 0.28,
    };
    let grid = StartGrid {
        a: vec![5.0],
        b: vec![5.0],
        e: vec![0.5],
        alpha: vec![0.5],
        beta: vec![0.5],
    };
    let opts = ChinchillaOptions {
        grid,
        ..Default::default()
    };
    let trials = 40;
    let (mut cov_alpha, mut cov_beta) = (0, 0);
    for t in 0..trials {
        let mut rng = ChaCha8Rng::seed_from_u64(5000 + t);
        let (mut n, mut d, mut l) = (vec![], vec![], vec![]);
        for i in 0..6 {
            let ni = 1e7 * 100f64.powf(i as f64 / 5.0);
            for j in 0..8 {
                let dj = 4.0 * ni * 25f64.powf(j as f64 / 7.0);
                n.push(ni);
                d.push(dj);
                l.push(law.loss(ni, dj) * (0.0005 * normal(&mut rng)).exp());
            }
        }
        let data = ChinchillaData::new(n, d, l).unwrap();
        let b = bootstrap_chinchilla(
            &data,
            &opts,
            &BootstrapOptions {
                reps: 100,
                level: 0.9,
                seed: t,
                resample: Resample::Points,
            },
            &RefitStarts::LocalOptima,
        )
        .unwrap();
        cov_alpha += b.alpha.contains(law.alpha) as usize;
        cov_beta += b.beta.contains(law.beta) as usize;
    }
    let (ra, rb) = (
        cov_alpha as f64 / trials as f64,
        cov_beta as f64 / trials as f64,
    );
    // n = 40 trials: binomial sd 0.047 around 0.9
    assert!((0.75..=1.0).contains(&ra), "coverage of alpha {ra}");
    assert!((0.75..=1.0).contains(&rb), "coverage of beta {rb}");
}

#[test]
fn frontier_bootstrap_over_runs_brackets_the_estimate() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let curves: Vec<Curve> = (0..8)
        .map(|r| {
            let stop = 1e16 * 3f64.powi(r);
            let pts = (0..30)
                .map(|i| {
                    let c = 1e15 * 10f64.powf(i as f64 * 0.15);
                    let base = 1.8 + 40.0 * c.min(stop).powf(-0.08);
                    Point {
                        step: i,
                        tokens: c,
                        flops: c,
                        loss: base * (0.002 * normal(&mut rng)).exp(),
                    }
                })
                .collect();
            Curve::new(
                RunMeta {
                    run_id: format!("r{r}"),
                    ..Default::default()
                },
                pts,
            )
        })
        .collect();
    let lo = PowerLawOptions {
        irreducible: Irreducible::Fixed(1.8),
        space: FitSpace::Linear,
    };
    let bo = BootstrapOptions {
        reps: 100,
        level: 0.9,
        seed: 1,
        resample: Resample::Runs,
    };
    let (ff, b) = bootstrap_frontier(&curves, &FrontierOptions::default(), &lo, &bo).unwrap();
    let g = ff.fit.law.gamma;
    assert!((g - 0.08).abs() < 0.01, "gamma {g}");
    assert!(
        b.gamma.lo <= g && g <= b.gamma.hi && b.gamma.hi - b.gamma.lo < 0.05,
        "{:?} vs {g}",
        b.gamma
    );
    // same seed, same intervals
    let (_, b2) = bootstrap_frontier(&curves, &FrontierOptions::default(), &lo, &bo).unwrap();
    assert_eq!(b.gamma, b2.gamma);
}

#[test]
fn replicates_above_the_maximum_are_refused_before_any_refit() {
    let c: Vec<f64> = (0..10).map(|i| 10f64.powf(15.0 + i as f64 * 0.5)).collect();
    let l: Vec<f64> = c.iter().map(|&c| 1.8 + 60.0 * c.powf(-0.1)).collect();
    let lo = PowerLawOptions {
        irreducible: Irreducible::Fixed(1.8),
        space: FitSpace::Log,
    };
    let too_many = algoprog_scaling::BootstrapOptions {
        reps: algoprog_scaling::bootstrap::MAX_BOOTSTRAP_REPS + 1,
        ..Default::default()
    };
    let e = bootstrap_power_law(&c, &l, &lo, &too_many)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("100001 bootstrap replicates is more than the maximum 100000"),
        "{e}"
    );
}
