//! Synthetic recovery of known parameters for the power law and the
//! Chinchilla form; Huber versus least squares under outliers.

use algoprog_scaling::chinchilla::{objective_gradient_at, StartResult};
use algoprog_scaling::{
    fit_chinchilla, fit_power_law, ChinchillaData, ChinchillaLaw, ChinchillaOptions, FitSpace,
    Irreducible, PowerLawOptions, Pruning, RobustLoss, StartGrid,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = rng.random::<f64>().max(1e-300);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// 30 points, C from 1e15 to 1e20, L = 1.8 + 60·C^-0.1 with 0.3% log-normal noise.
fn power_law_data(seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let c: Vec<f64> = (0..30)
        .map(|i| 10f64.powf(15.0 + 5.0 * i as f64 / 29.0))
        .collect();
    let l = c
        .iter()
        .map(|&c| (1.8 + 60.0 * c.powf(-0.1)) * (0.003 * normal(&mut rng)).exp())
        .collect();
    (c, l)
}

#[test]
fn power_law_fixed_e_recovers_gamma_and_a_in_both_spaces() {
    let (c, l) = power_law_data(1);
    for space in [FitSpace::Linear, FitSpace::Log] {
        let f = fit_power_law(
            &c,
            &l,
            &PowerLawOptions {
                irreducible: Irreducible::Fixed(1.8),
                space,
            },
        )
        .unwrap();
        assert_eq!(f.law.e, 1.8);
        assert!(
            (f.law.gamma - 0.1).abs() < 0.004,
            "{space:?}: gamma {}",
            f.law.gamma
        );
        assert!(
            (f.law.a / 60.0 - 1.0).abs() < 0.15,
            "{space:?}: A {}",
            f.law.a
        );
        assert!(f.r2 > 0.99, "{space:?}: r2 {}", f.r2);
        assert_eq!(f.residuals.len(), 30);
        // residuals are observed minus fitted in the fit's space
        let r0 = match space {
            FitSpace::Linear => l[0] - f.law.loss(c[0]),
            FitSpace::Log => (l[0] - 1.8).ln() - (f.law.loss(c[0]) - 1.8).ln(),
        };
        assert!((f.residuals[0] - r0).abs() < 1e-12);
    }
}

#[test]
fn power_law_exact_data_is_recovered_to_high_precision() {
    let c: Vec<f64> = (0..20).map(|i| 10f64.powf(16.0 + 0.2 * i as f64)).collect();
    let l: Vec<f64> = c.iter().map(|&c| 1.9 + 350.0 * c.powf(-0.15)).collect();
    for (irr, space) in [
        (Irreducible::Fixed(1.9), FitSpace::Linear),
        (Irreducible::Fixed(1.9), FitSpace::Log),
        (Irreducible::Fitted, FitSpace::Linear),
        (Irreducible::Fitted, FitSpace::Log),
    ] {
        let f = fit_power_law(
            &c,
            &l,
            &PowerLawOptions {
                irreducible: irr,
                space,
            },
        )
        .unwrap();
        assert!(
            (f.law.gamma - 0.15).abs() < 1e-5,
            "{irr:?} {space:?}: {:?}",
            f.law
        );
        assert!(
            (f.law.e - 1.9).abs() < 1e-4,
            "{irr:?} {space:?}: {:?}",
            f.law
        );
        assert!(
            (f.law.a / 350.0 - 1.0).abs() < 1e-3,
            "{irr:?} {space:?}: {:?}",
            f.law
        );
    }
}

#[test]
fn power_law_fitted_e_recovers_e() {
    let (c, l) = power_law_data(2);
    for space in [FitSpace::Linear, FitSpace::Log] {
        let f = fit_power_law(
            &c,
            &l,
            &PowerLawOptions {
                irreducible: Irreducible::Fitted,
                space,
            },
        )
        .unwrap();
        assert!((f.law.e - 1.8).abs() < 0.15, "{space:?}: E {}", f.law.e);
        assert!(
            (f.law.gamma - 0.1).abs() < 0.015,
            "{space:?}: gamma {}",
            f.law.gamma
        );
    }
}

#[test]
fn power_law_log_space_rejects_loss_below_fixed_e() {
    let c = vec![1e15, 1e16, 1e17, 1e18];
    let l = vec![3.0, 2.5, 2.1, 1.7];
    let err = fit_power_law(
        &c,
        &l,
        &PowerLawOptions {
            irreducible: Irreducible::Fixed(1.8),
            space: FitSpace::Log,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("point 3") && err.contains("1.7") && err.contains("E = 1.8"),
        "{err}"
    );
}

#[test]
fn power_law_refuses_a_fixed_e_at_or_above_losses_in_both_spaces() {
    // One point below E (linear space used to fit it anyway).
    let c = vec![1e15, 1e16, 1e17, 1e18];
    let l = vec![3.0, 2.5, 2.1, 1.7];
    for space in [FitSpace::Linear, FitSpace::Log] {
        let err = fit_power_law(
            &c,
            &l,
            &PowerLawOptions {
                irreducible: Irreducible::Fixed(1.8),
                space,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("1 of 4 points")
                && err.contains("E = 1.8")
                && err.contains("Lower E below 1.7"),
            "{err}"
        );
    }
    // E above every loss (used to return A < 0 and γ < 0).
    let err = fit_power_law(
        &c,
        &l,
        &PowerLawOptions {
            irreducible: Irreducible::Fixed(5.0),
            space: FitSpace::Linear,
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("4 of 4 points"), "{err}");
    // A loss exactly at E.
    assert!(fit_power_law(
        &c,
        &[3.0, 2.5, 2.1, 1.8],
        &PowerLawOptions {
            irreducible: Irreducible::Fixed(1.8),
            space: FitSpace::Linear
        }
    )
    .is_err());
}

#[test]
fn power_law_refuses_non_positive_losses() {
    let c = vec![1e15, 1e16, 1e17, 1e18, 1e19];
    for l in [
        vec![3.0, 2.5, 0.0, 2.1, 2.0],
        vec![3.0, 2.5, 2.2, 2.1, -1.0],
    ] {
        for irr in [Irreducible::Fitted, Irreducible::Fixed(-2.0)] {
            let err = fit_power_law(
                &c,
                &l,
                &PowerLawOptions {
                    irreducible: irr,
                    space: FitSpace::Linear,
                },
            )
            .unwrap_err()
            .to_string();
            assert!(err.contains("is not positive"), "{err}");
        }
    }
}

#[test]
fn power_law_refuses_degenerate_fits() {
    // Loss rising with compute above E: the best fit has γ < 0.
    let c: Vec<f64> = (0..8).map(|i| 10f64.powi(15 + i)).collect();
    let l: Vec<f64> = c.iter().map(|c| 1.8 + 0.5 * c.powf(0.05)).collect();
    for space in [FitSpace::Linear, FitSpace::Log] {
        let err = fit_power_law(
            &c,
            &l,
            &PowerLawOptions {
                irreducible: Irreducible::Fixed(1.8),
                space,
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("degenerate power law") && err.contains("must be positive"),
            "{space:?}: {err}"
        );
    }
}

#[test]
fn linear_space_is_unweighted_least_squares_on_y_as_the_authors_curve_fit() {
    // At the linear-space optimum the gradient of Σ (y − A·C^−γ)² in (A, γ) vanishes; the log-space
    // answer differs on noisy data (it weighs small y more).
    let (c, l) = power_law_data(7);
    assert_eq!(FitSpace::from_name("authors").unwrap(), FitSpace::AUTHORS);
    assert_eq!(FitSpace::AUTHORS, FitSpace::Linear);
    assert_eq!(FitSpace::from_name("log").unwrap(), FitSpace::Log);
    assert_eq!(
        serde_json::from_str::<FitSpace>("\"authors\"").unwrap(),
        FitSpace::Linear
    );
    assert_eq!(
        serde_json::from_str::<FitSpace>("\"Log\"").unwrap(),
        FitSpace::Log
    );
    assert!(FitSpace::from_name("huber")
        .unwrap_err()
        .to_string()
        .contains("`linear`"));
    let opts = PowerLawOptions {
        irreducible: Irreducible::Fixed(1.8),
        space: FitSpace::from_name("linear").unwrap(),
    };
    let f = fit_power_law(&c, &l, &opts).unwrap();
    let (a, g) = (f.law.a, f.law.gamma);
    let (mut da, mut dg, mut scale) = (0.0, 0.0, 0.0);
    for (ci, li) in c.iter().zip(&l) {
        let y = li - 1.8;
        let m = a * ci.powf(-g);
        let r = y - m;
        da += -2.0 * r * ci.powf(-g);
        dg += 2.0 * r * a * ci.ln() * ci.powf(-g);
        scale += y * y;
    }
    assert!(
        (da * a).abs() < 1e-7 * scale && dg.abs() < 1e-7 * scale,
        "gradient ({da}, {dg})"
    );
    let lg = fit_power_law(
        &c,
        &l,
        &PowerLawOptions {
            space: FitSpace::Log,
            ..opts
        },
    )
    .unwrap();
    assert!(
        (lg.law.gamma - g).abs() > 1e-6,
        "the two spaces give different fits on noisy data"
    );
    assert_eq!(
        PowerLawOptions::authors(),
        PowerLawOptions {
            irreducible: Irreducible::Fixed(1.9),
            space: FitSpace::Linear
        }
    );
}

const TRUE: ChinchillaLaw = ChinchillaLaw {
    e: 1.69,
    a: 406.4,
    b: 410.7,
    alpha: 0.34,
    beta: 0.28,
};

/// 12 sizes × 10 token counts, 0.5% log-normal noise; `outliers` points get +25% loss.
fn chinchilla_data(seed: u64, outliers: &[usize]) -> ChinchillaData {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut n, mut d, mut l) = (vec![], vec![], vec![]);
    for i in 0..12 {
        let ni = 1e7 * 200f64.powf(i as f64 / 11.0);
        for j in 0..10 {
            let dj = 4.0 * ni * 25f64.powf(j as f64 / 9.0);
            n.push(ni);
            d.push(dj);
            l.push(TRUE.loss(ni, dj) * (0.005 * normal(&mut rng)).exp());
        }
    }
    for &k in outliers {
        l[k] *= 1.25;
    }
    ChinchillaData::new(n, d, l).unwrap()
}

/// A 72-start grid around the published one (the full grid is the benchmark's job).
fn small_grid() -> StartGrid {
    StartGrid {
        a: vec![0.0, 5.0, 10.0],
        b: vec![0.0, 5.0, 10.0],
        e: vec![0.0, 0.5],
        alpha: vec![0.5, 1.0],
        beta: vec![0.5, 1.0],
    }
}

fn param_error(l: &ChinchillaLaw) -> f64 {
    (l.alpha - TRUE.alpha).abs() + (l.beta - TRUE.beta).abs() + (l.e - TRUE.e).abs()
}

#[test]
fn published_grid_has_4500_starts_with_the_published_values() {
    let g = StartGrid::published();
    let s = g.starts();
    assert_eq!(s.len(), 4500);
    assert_eq!(g.alpha, vec![0.0, 0.5, 1.0, 1.5, 2.0]);
    assert_eq!(g.e, vec![-1.0, -0.5, 0.0, 0.5, 1.0]);
    assert_eq!(g.a, vec![0.0, 5.0, 10.0, 15.0, 20.0, 25.0]);
    assert_eq!(s[0], [0.0, 0.0, -1.0, 0.0, 0.0]);
    assert_eq!(s[4499], [25.0, 25.0, 1.0, 2.0, 2.0]);
}

#[test]
fn analytic_gradient_matches_finite_differences() {
    let data = chinchilla_data(3, &[5]);
    for loss in [RobustLoss::Huber { delta: 1e-3 }, RobustLoss::Squared] {
        let th = [6.1, 5.9, 0.52, 0.36, 0.27];
        let (_, g) = objective_gradient_at(&data, loss, th);
        for k in 0..5 {
            let h = 1e-6;
            let mut p = th;
            let mut m = th;
            p[k] += h;
            m[k] -= h;
            let fd = (objective_gradient_at(&data, loss, p).0
                - objective_gradient_at(&data, loss, m).0)
                / (2.0 * h);
            assert!(
                (fd - g[k]).abs() <= 1e-5 * (1.0 + fd.abs()),
                "{loss:?} d/dθ{k}: analytic {} vs numeric {fd}",
                g[k]
            );
        }
    }
}

#[test]
fn chinchilla_huber_recovers_parameters_with_noise_and_outliers() {
    let data = chinchilla_data(4, &[9, 19, 59, 119]);
    let opts = ChinchillaOptions {
        grid: small_grid(),
        ..Default::default()
    };
    let f = fit_chinchilla(&data, &opts).unwrap();
    let l = f.law;
    assert!((l.alpha - 0.34).abs() < 0.03, "alpha {}", l.alpha);
    assert!((l.beta - 0.28).abs() < 0.03, "beta {}", l.beta);
    assert!((l.e - 1.69).abs() < 0.06, "E {}", l.e);
    // the compute-optimal exponent a = beta/(alpha+beta) = 0.4516
    let (an, bd) = f.allocation_exponents();
    assert!((an - 0.28 / 0.62).abs() < 0.03, "N_opt exponent {an}");
    assert!((an + bd - 1.0).abs() < 1e-12);
    assert_eq!(f.starts, 72);
    assert_eq!(f.failed_starts, 0);
    // four +25% outliers among 120 points dominate the residual sum of squares
    assert!(f.r2_log > 0.5 && f.r2_log < 0.99, "r2 {}", f.r2_log);
}

#[test]
fn huber_resists_outliers_where_least_squares_does_not() {
    let clean = chinchilla_data(5, &[]);
    let dirty = chinchilla_data(5, &[9, 19, 29, 39, 49]); // the longest-trained point of five sizes
    let huber = ChinchillaOptions {
        grid: small_grid(),
        ..Default::default()
    };
    let ls = ChinchillaOptions {
        loss: RobustLoss::Squared,
        ..huber.clone()
    };
    let h_clean_fit = fit_chinchilla(&clean, &huber).unwrap();
    assert!(h_clean_fit.r2_log > 0.999, "r2 {}", h_clean_fit.r2_log);
    let h_clean = h_clean_fit.law;
    let h_dirty = fit_chinchilla(&dirty, &huber).unwrap().law;
    let l_dirty = fit_chinchilla(&dirty, &ls).unwrap().law;
    // Huber barely moves; least squares is pulled far off
    assert!(
        param_error(&h_dirty) < 0.08,
        "huber with outliers: {h_dirty:?}"
    );
    assert!(
        (h_dirty.beta - h_clean.beta).abs() < 0.02,
        "{h_dirty:?} vs {h_clean:?}"
    );
    assert!(
        param_error(&l_dirty) > 3.0 * param_error(&h_dirty),
        "LS {l_dirty:?} vs Huber {h_dirty:?}"
    );
    assert!(param_error(&l_dirty) > 0.1, "LS {l_dirty:?}");
}

#[test]
fn screened_fit_reaches_the_same_optimum_as_the_full_run() {
    let data = chinchilla_data(6, &[50]);
    let full = fit_chinchilla(
        &data,
        &ChinchillaOptions {
            grid: small_grid(),
            ..Default::default()
        },
    )
    .unwrap();
    let pruned = fit_chinchilla(
        &data,
        &ChinchillaOptions {
            grid: small_grid(),
            pruning: Pruning::Screen {
                screen_iters: 10,
                keep: 8,
            },
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(pruned.full_starts, 8);
    assert!(pruned.evaluations < full.evaluations);
    assert!(
        (pruned.objective - full.objective).abs() <= 1e-8 * full.objective,
        "{} vs {}",
        pruned.objective,
        full.objective
    );
    assert!((pruned.law.alpha - full.law.alpha).abs() < 1e-3);
    // local optima are distinct and sorted
    let lo: &Vec<StartResult> = &full.local_optima;
    assert_eq!(lo[0].objective, full.objective);
    assert!(lo.windows(2).all(|w| w[0].objective <= w[1].objective));
}

#[test]
fn allocation_is_consistent_with_the_law() {
    let data = chinchilla_data(7, &[]);
    let f = fit_chinchilla(
        &data,
        &ChinchillaOptions {
            grid: small_grid(),
            ..Default::default()
        },
    )
    .unwrap();
    let c = 1e21;
    let a = f.allocation(c, 6.0);
    assert!((6.0 * a.n_opt * a.d_opt / c - 1.0).abs() < 1e-9);
    assert!((a.tokens_per_param - a.d_opt / a.n_opt).abs() < 1e-9 * a.tokens_per_param);
    // the optimum beats nearby splits of the same compute
    for s in [0.8, 1.25] {
        let n = a.n_opt * s;
        assert!(f.law.loss(n, c / (6.0 * n)) > a.loss);
    }
}

#[test]
fn chinchilla_rejects_too_few_points_and_bad_values() {
    assert!(ChinchillaData::new(vec![1e6, -1.0], vec![1e9, 1e9], vec![3.0, 3.0]).is_err());
    let d = ChinchillaData::new(vec![1e6; 3], vec![1e9; 3], vec![3.0; 3]).unwrap();
    let e = fit_chinchilla(&d, &ChinchillaOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("5 parameters") && e.contains("3 points"), "{e}");
}
