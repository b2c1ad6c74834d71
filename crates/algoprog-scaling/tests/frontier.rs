//! Frontier of hand-made curves, compute ranges, checkpoint trimming, IsoFLOP.

use algoprog_scaling::{
    drop_leading_fraction, fit_frontier, frontier, isoflop, Budgets, ChinchillaLaw, Curve,
    FitSpace, FrontierOptions, Irreducible, IsoFlopOptions, Point, PowerLawOptions, RangeMode,
    RunMeta,
};

fn curve(id: &str, pts: &[(f64, f64)]) -> Curve {
    Curve::new(
        RunMeta {
            run_id: id.into(),
            family: "f".into(),
            ..Default::default()
        },
        pts.iter()
            .enumerate()
            .map(|(i, &(flops, loss))| Point {
                step: 100 * i as u64,
                tokens: flops,
                flops,
                loss,
            })
            .collect(),
    )
}

fn hand_made() -> Vec<Curve> {
    let mut d = curve("D", &[(2.0, 1.0)]);
    d.meta.diverged = true;
    vec![
        curve("A", &[(1.0, 5.0), (2.0, 4.0), (4.0, 3.5), (8.0, 3.2)]),
        curve(
            "B",
            &[(1.0, 5.5), (2.0, 3.9), (4.0, 3.6), (8.0, 3.0), (16.0, 2.9)],
        ),
        curve("C", &[(0.0, 6.0), (3.0, 3.9), (4.0, 3.5), (16.0, 2.95)]),
        d,
    ]
}

fn pts(f: &[algoprog_scaling::FrontierPoint]) -> Vec<(f64, f64, String, u64)> {
    f.iter()
        .map(|p| (p.flops, p.loss, p.run_id.clone(), p.step))
        .collect()
}

#[test]
fn frontier_of_hand_made_curves_is_exactly_the_expected_points() {
    let f = frontier(&hand_made(), &FrontierOptions::default());
    assert_eq!(
        pts(&f),
        vec![
            (1.0, 5.0, "A".to_string(), 0),
            (2.0, 3.9, "B".to_string(), 100),
            (4.0, 3.5, "A".to_string(), 200), // C ties at (4, 3.5): the first in input order stays
            (8.0, 3.0, "B".to_string(), 300),
            (16.0, 2.9, "B".to_string(), 400),
        ]
    );
    assert_eq!(f[2].curve, 0);
}

#[test]
fn diverged_runs_are_excluded_unless_asked() {
    let f = frontier(
        &hand_made(),
        &FrontierOptions {
            include_diverged: true,
            ..Default::default()
        },
    );
    assert_eq!(
        pts(&f),
        vec![
            (1.0, 5.0, "A".to_string(), 0),
            (2.0, 1.0, "D".to_string(), 0)
        ]
    );
}

#[test]
fn compute_range_after_pareto_restricts_the_envelope_of_all_points() {
    let opts = FrontierOptions {
        min_compute: Some(3.0),
        max_compute: Some(8.0),
        range_mode: RangeMode::AfterPareto,
        ..Default::default()
    };
    let f = frontier(&hand_made(), &opts);
    // C's (3, 3.9) is inside the range but dominated by B's (2, 3.9) outside it
    assert_eq!(
        pts(&f),
        vec![
            (4.0, 3.5, "A".to_string(), 200),
            (8.0, 3.0, "B".to_string(), 300)
        ]
    );
}

#[test]
fn compute_range_before_pareto_is_the_default_and_keeps_points_dominated_only_from_outside() {
    let opts = FrontierOptions {
        min_compute: Some(3.0),
        max_compute: Some(8.0),
        ..Default::default()
    };
    assert_eq!(opts.range_mode, RangeMode::BeforePareto);
    let f = frontier(&hand_made(), &opts);
    // B's (2, 3.9) is dropped before the envelope, so C's (3, 3.9) is on it; B's (16, 2.9) is out of range.
    assert_eq!(
        pts(&f),
        vec![
            (3.0, 3.9, "C".to_string(), 100),
            (4.0, 3.5, "A".to_string(), 200),
            (8.0, 3.0, "B".to_string(), 300)
        ]
    );
    assert_eq!(
        RangeMode::from_name("after_pareto").unwrap(),
        RangeMode::AfterPareto
    );
    assert_eq!(
        RangeMode::from_name(RangeMode::BeforePareto.name()).unwrap(),
        RangeMode::BeforePareto
    );
    assert!(RangeMode::from_name("inside").is_err());
    let m: RangeMode = serde_json::from_str("\"after-pareto\"").unwrap();
    assert_eq!(m, RangeMode::AfterPareto);
    assert_eq!(
        serde_json::to_string(&RangeMode::BeforePareto).unwrap(),
        "\"before_pareto\""
    );
    // Options written before the range mode existed read as the default.
    let o: FrontierOptions =
        serde_json::from_str(r#"{"min_compute":1e16,"max_compute":null,"include_diverged":false}"#)
            .unwrap();
    assert_eq!(o.range_mode, RangeMode::BeforePareto);
    let p = FrontierOptions::papers();
    assert_eq!(
        (p.min_compute, p.max_compute, p.range_mode),
        (Some(1e16), Some(5e17), RangeMode::BeforePareto)
    );
}

fn law_curves(loss: impl Fn(f64) -> f64) -> Vec<Curve> {
    (0..3)
        .map(|r| {
            let p: Vec<(f64, f64)> = (0..10)
                .map(|i| 1e15 * 10f64.powf(0.5 * i as f64 + 0.1 * r as f64))
                .map(|c| (c, loss(c)))
                .collect();
            curve(&format!("r{r}"), &p)
        })
        .collect()
}

#[test]
fn fit_frontier_refuses_a_non_positive_loss_instead_of_cutting_the_frontier() {
    let mut curves = law_curves(|c| 1.8 + 40.0 * c.powf(-0.08));
    curves[1].points[1].loss = -0.5; // at 10^15.6 FLOPs
    let err = fit_frontier(
        &curves,
        &FrontierOptions::default(),
        &PowerLawOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("run `r1`, step 100") && err.contains("not positive"),
        "{err}"
    );
    // Outside the range and applied before the Pareto step, the bad point cannot enter: the fit goes ahead.
    let opts = FrontierOptions {
        min_compute: Some(1e16),
        ..Default::default()
    };
    assert!(fit_frontier(&curves, &opts, &PowerLawOptions::default()).is_ok());
}

#[test]
fn fit_frontier_refuses_a_fixed_e_at_or_above_frontier_losses() {
    let curves = law_curves(|c| 1.8 + 40.0 * c.powf(-0.08));
    let lo = PowerLawOptions {
        irreducible: Irreducible::Fixed(3.0),
        space: FitSpace::Linear,
    };
    let err = fit_frontier(&curves, &FrontierOptions::default(), &lo)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("frontier points have a loss at or below the fixed irreducible loss E = 3"),
        "{err}"
    );
    assert!(err.contains("Lower E below"), "{err}");
    // E above every loss.
    let lo = PowerLawOptions {
        irreducible: Irreducible::Fixed(50.0),
        space: FitSpace::Linear,
    };
    let err = fit_frontier(&curves, &FrontierOptions::default(), &lo)
        .unwrap_err()
        .to_string();
    assert!(err.contains("30 of 30 frontier points"), "{err}");
    // The right E fits and recovers the law.
    let ff = fit_frontier(
        &curves,
        &FrontierOptions::default(),
        &PowerLawOptions::default(),
    )
    .unwrap();
    assert!((ff.fit.law.gamma - 0.08).abs() < 1e-8, "{:?}", ff.fit.law);
}

#[test]
fn frontier_power_law_fit_recovers_the_envelope_law() {
    // each run follows the law up to its own compute, then plateaus; the envelope is the law itself
    let law = |c: f64| 1.8 + 40.0 * c.powf(-0.08);
    let curves: Vec<Curve> = (0..6)
        .map(|r| {
            let stop = 1e16 * 10f64.powi(r);
            let p: Vec<(f64, f64)> = (0..25)
                .map(|i| {
                    let c = 1e15 * 10f64.powf(i as f64 * 0.25);
                    (
                        c,
                        if c <= stop {
                            law(c)
                        } else {
                            law(stop) + 0.01 * (c / stop).ln()
                        },
                    )
                })
                .collect();
            curve(&format!("r{r}"), &p)
        })
        .collect();
    let ff = fit_frontier(
        &curves,
        &FrontierOptions::default(),
        &PowerLawOptions {
            irreducible: Irreducible::Fixed(1.8),
            space: FitSpace::Log,
        },
    )
    .unwrap();
    // the last run follows the law to 1e21: every quarter decade from 1e15 is on the envelope,
    // taken (ties) from the first run still on the law there
    assert_eq!(ff.points.len(), 25);
    for p in &ff.points {
        assert_eq!(p.loss, law(p.flops));
        let first = (0..6)
            .find(|&r| 1e16 * 10f64.powi(r) >= p.flops * (1.0 - 1e-12))
            .unwrap();
        assert_eq!(p.run_id, format!("r{first}"));
    }
    assert!((ff.fit.law.gamma - 0.08).abs() < 1e-9, "{:?}", ff.fit.law);
    assert!((ff.fit.law.a / 40.0 - 1.0).abs() < 1e-8);
}

#[test]
fn dropping_the_first_third_keeps_steps_from_a_third_of_the_last_step() {
    let c = curve(
        "A",
        &[
            (1.0, 9.0),
            (2.0, 8.0),
            (3.0, 7.0),
            (4.0, 6.0),
            (5.0, 5.0),
            (6.0, 4.0),
            (7.0, 3.0),
            (8.0, 2.5),
            (9.0, 2.4),
            (10.0, 2.3),
        ],
    );
    // steps 0..900, last 900: keep steps >= 300
    let t = c.drop_leading_fraction(1.0 / 3.0);
    assert_eq!(
        t.points.iter().map(|p| p.step).collect::<Vec<_>>(),
        vec![300, 400, 500, 600, 700, 800, 900]
    );
    assert_eq!(
        drop_leading_fraction(std::slice::from_ref(&c), 0.0)[0]
            .points
            .len(),
        10
    );
    assert_eq!(c.drop_leading_fraction(1.0).points.len(), 1);
}

#[test]
fn isoflop_recovers_the_compute_optimal_exponents() {
    let law = ChinchillaLaw {
        e: 1.69,
        a: 406.4,
        b: 410.7,
        alpha: 0.34,
        beta: 0.28,
    };
    let curves: Vec<Curve> = (0..13)
        .map(|i| {
            let n = 1e7 * 100f64.powf(i as f64 / 12.0);
            let points = (0..60)
                .map(|j| {
                    let d = n * 1000f64.powf(j as f64 / 59.0);
                    Point {
                        step: j as u64,
                        tokens: d,
                        flops: 6.0 * n * d,
                        loss: law.loss(n, d),
                    }
                })
                .collect();
            Curve::new(
                RunMeta {
                    run_id: format!("n{i}"),
                    params: Some(n),
                    ..Default::default()
                },
                points,
            )
        })
        .collect();
    let budgets: Vec<f64> = (0..6).map(|k| 2e17 * 50f64.powf(k as f64 / 5.0)).collect();
    let r = isoflop(
        &curves,
        &IsoFlopOptions {
            budgets: Budgets::List(budgets),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(r.fitted_budgets, 6);
    let a_true = law.beta / (law.alpha + law.beta);
    assert!(
        (r.n_opt.exponent - a_true).abs() < 0.01,
        "N* exponent {} vs {a_true}",
        r.n_opt.exponent
    );
    assert!(
        (r.d_opt.exponent - (1.0 - a_true)).abs() < 0.01,
        "D* exponent {}",
        r.d_opt.exponent
    );
    // N* itself within 10% of the analytic optimum at every budget
    for b in &r.budgets {
        let (n_true, _) = law.optimal_allocation(b.compute, 6.0);
        assert!(
            (b.n_opt / n_true - 1.0).abs() < 0.1,
            "C={:e}: {} vs {n_true}",
            b.compute,
            b.n_opt
        );
    }
}
