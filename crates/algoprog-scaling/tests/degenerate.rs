//! Degenerate and corrupt inputs to the Chinchilla and IsoFLOP analyses are
//! errors naming the problem, never NaN tables; option sizes are bounded.

use algoprog_scaling::isoflop::MAX_ISOFLOP_BUDGETS;
use algoprog_scaling::{
    fit_chinchilla, isoflop, Budgets, ChinchillaData, ChinchillaLaw, ChinchillaOptions, Curve,
    IsoFlopOptions, Point, RunMeta, ScalingError, TokensSource,
};

fn curve(id: &str, n: f64, pts: &[(f64, f64, f64)]) -> Curve {
    let meta = RunMeta {
        run_id: id.into(),
        family: "f".into(),
        params: Some(n),
        ..Default::default()
    };
    let points = pts
        .iter()
        .enumerate()
        .map(|(i, &(tokens, flops, loss))| Point {
            step: i as u64 + 1,
            tokens,
            flops,
            loss,
        })
        .collect();
    Curve::new(meta, points)
}

/// Runs of 4 sizes × 7 evaluations with loss given by `law`.
fn grid_curves(law: impl Fn(f64, f64) -> f64) -> Vec<Curve> {
    [1e6, 3e6, 1e7, 3e7]
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let pts: Vec<(f64, f64, f64)> = (1..=7)
                .map(|s| {
                    let d = s as f64 * 2e6;
                    (d, 6.0 * n * d, law(n, d))
                })
                .collect();
            curve(&format!("r{i}"), n, &pts)
        })
        .collect()
}

#[test]
fn a_constant_loss_is_an_error_not_a_nan_table() {
    let data = ChinchillaData::from_curves(&grid_curves(|_, _| 3.0), TokensSource::Column).unwrap();
    assert_eq!(data.len(), 28);
    let e = fit_chinchilla(&data, &ChinchillaOptions::default()).unwrap_err();
    assert!(matches!(e, ScalingError::InvalidData(_)), "{e}");
    assert!(
        e.to_string()
            .contains("every one of the 28 points has the same loss 3"),
        "{e}"
    );
}

#[test]
fn a_loss_that_rises_with_n_gives_an_error_naming_the_negative_exponent() {
    // L = 1.7 + 0.02·N^+0.3 + 400·D^-0.28: the exact optimum has alpha = -0.3, which would make
    // the allocation G = (alpha·A / (beta·B))^(1/(alpha+beta)) NaN
    let data = ChinchillaData::from_curves(
        &grid_curves(|n, d| 1.7 + 0.02 * n.powf(0.3) + 400.0 * d.powf(-0.28)),
        TokensSource::Column,
    )
    .unwrap();
    let e = fit_chinchilla(&data, &ChinchillaOptions::default()).unwrap_err();
    assert!(matches!(e, ScalingError::FitFailed(_)), "{e}");
    assert!(
        e.to_string()
            .contains("the best fit has alpha = -3.0000e-1"),
        "{e}"
    );
}

#[test]
fn a_well_posed_law_is_still_recovered() {
    let law = ChinchillaLaw {
        e: 1.69,
        a: 406.4,
        b: 410.7,
        alpha: 0.34,
        beta: 0.28,
    };
    let data =
        ChinchillaData::from_curves(&grid_curves(|n, d| law.loss(n, d)), TokensSource::Column)
            .unwrap();
    let f = fit_chinchilla(&data, &ChinchillaOptions::default()).unwrap();
    assert!(
        (f.law.alpha - 0.34).abs() < 0.01 && (f.law.beta - 0.28).abs() < 0.01,
        "{:?}",
        f.law
    );
    assert!(f.allocation(1e21, 6.0).n_opt.is_finite());
}

#[test]
fn a_single_model_size_cannot_fit_alpha() {
    let law = ChinchillaLaw {
        e: 1.69,
        a: 406.4,
        b: 410.7,
        alpha: 0.34,
        beta: 0.28,
    };
    let mut cs = grid_curves(|n, d| law.loss(n, d));
    for c in &mut cs {
        c.meta.params = Some(1e7);
    }
    let data = ChinchillaData::from_curves(&cs, TokensSource::Column).unwrap();
    let e = fit_chinchilla(&data, &ChinchillaOptions::default()).unwrap_err();
    assert!(
        e.to_string().contains("same parameter count N = 10000000"),
        "{e}"
    );
}

#[test]
fn negative_tokens_and_compute_are_errors_naming_the_run() {
    let ok = |n: f64| {
        curve(
            "a",
            n,
            &[(0.0, 0.0, 5.0), (1e6, 6e12, 4.0), (2e6, 1.2e13, 3.5)],
        )
    };
    // zero compute / zero tokens: an evaluation before training, left out (not an error)
    assert_eq!(
        ChinchillaData::from_curves(&[ok(1e6)], TokensSource::Column)
            .unwrap()
            .len(),
        2
    );
    let neg_tokens = curve("bad-tokens", 1e6, &[(1e6, 6e12, 4.0), (-2e6, 1.2e13, 3.5)]);
    let e = ChinchillaData::from_curves(&[ok(1e6), neg_tokens], TokensSource::Column)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("run `bad-tokens`, step 2: tokens = -2000000"),
        "{e}"
    );
    let neg_flops = curve("bad-flops", 1e6, &[(1e6, -6e12, 4.0)]);
    let e = ChinchillaData::from_curves(std::slice::from_ref(&neg_flops), TokensSource::Column)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("run `bad-flops`, step 1: compute = -6000000000000"),
        "{e}"
    );
    let e = ChinchillaData::from_curves(&[ok(-5.0)], TokensSource::Column)
        .unwrap_err()
        .to_string();
    assert!(e.contains("parameter count N = -5"), "{e}");
    let e = ChinchillaData::from_curves(&[ok(1e6)], TokensSource::FromCompute { k: 0.0 })
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("k in D = C / (k·N) must be a positive number"),
        "{e}"
    );
    let zero_loss = curve("zero-loss", 1e6, &[(1e6, 6e12, 0.0)]);
    let e = ChinchillaData::from_curves(&[zero_loss], TokensSource::Column)
        .unwrap_err()
        .to_string();
    assert!(e.contains("run `zero-loss`, step 1: loss = 0"), "{e}");
    let opts = IsoFlopOptions::default();
    let e = isoflop(&[ok(1e6), ok(2e6), neg_flops], &opts)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("run `bad-flops`, step 1: compute = -6000000000000"),
        "{e}"
    );
}

#[test]
fn isoflop_options_are_bounded_and_checked() {
    let law = ChinchillaLaw {
        e: 1.69,
        a: 406.4,
        b: 410.7,
        alpha: 0.34,
        beta: 0.28,
    };
    let cs = grid_curves(|n, d| law.loss(n, d));
    let run = |budgets: Budgets, k: f64| {
        isoflop(
            &cs,
            &IsoFlopOptions {
                budgets,
                parabola: true,
                k,
            },
        )
        .map(|_| ())
        .unwrap_err()
        .to_string()
    };
    let e = run(Budgets::Count(MAX_ISOFLOP_BUDGETS + 1), 6.0);
    assert!(
        e.contains("10001 compute budgets") && e.contains("10000"),
        "{e}"
    );
    assert!(run(Budgets::Count(1), 6.0).contains("between 2 and"));
    assert!(
        run(Budgets::List(vec![1e17, -1e18]), 6.0).contains("compute budget -1000000000000000000")
    );
    assert!(run(Budgets::List(vec![f64::NAN]), 6.0).contains("compute budget NaN"));
    assert!(run(Budgets::Count(12), 0.0).contains("k in C = k·N·D"));
}

#[test]
fn the_allocation_of_a_fit_with_large_exponents_is_finite() {
    // found by tests/fuzz_inputs.rs on corrupted curves: α·A / (β·B) overflows, G itself is about 3.46
    let law = ChinchillaLaw {
        e: 1.4748741119895217,
        a: 2.0073681388421535e182,
        b: 3.764537008900471e-224,
        alpha: 29.58274490268269,
        beta: 719.843188320265,
    };
    let naive = (law.alpha * law.a / (law.beta * law.b)).powf(1.0 / (law.alpha + law.beta));
    assert!(!naive.is_finite(), "the direct formula overflows");
    let (n, d) = law.optimal_allocation(1e21, 6.0);
    assert!((6.0 * n * d / 1e21 - 1.0).abs() < 1e-9, "{n} {d}");
    let fit = algoprog_scaling::ChinchillaFit {
        law,
        theta: [law.a.ln(), law.b.ln(), law.e.ln(), law.alpha, law.beta],
        objective: 0.0,
        starts: 1,
        failed_starts: 0,
        full_starts: 1,
        starts_at_best: 1,
        evaluations: 1,
        n_points: 5,
        r2_log: 1.0,
        local_optima: vec![],
    };
    let c = 1e21;
    let a = fit.allocation(c, 6.0);
    assert!((6.0 * a.n_opt * a.d_opt / c - 1.0).abs() < 1e-9, "{a:?}");
    // N_opt = G·(C/6)^(β/(α+β)) with ln G = (ln α + ln A − ln β − ln B)/(α+β)
    let s = law.alpha + law.beta;
    let ln_g = (law.alpha.ln() + law.a.ln() - law.beta.ln() - law.b.ln()) / s;
    assert!((ln_g.exp() - 3.4636).abs() < 1e-3, "G = {}", ln_g.exp());
    assert!((a.n_opt.ln() - (ln_g + law.beta / s * (c / 6.0).ln())).abs() < 1e-9);
    assert!(a.loss.is_finite());
}
