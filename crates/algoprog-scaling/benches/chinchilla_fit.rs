//! Benchmark: the full-grid Chinchilla fit (4,500 starts) on the 240-point
//! data set `bench/data/chinchilla_240.csv`, with and without pruning, and
//! 1,000 bootstrap refits. Compare with `bench/chinchilla_fit_scipy.py` on the
//! same file. Run: `cargo bench -p algoprog-scaling --bench chinchilla_fit`
//! (optional argument: another CSV with columns run,params,tokens,flops,loss).

use std::time::Instant;

use algoprog_scaling::chinchilla::objective_at;
use algoprog_scaling::{
    bootstrap_chinchilla_from, fit_chinchilla, load_csv, BootstrapOptions, ChinchillaData,
    ChinchillaFit, ChinchillaOptions, ColumnMap, Pruning, RefitStarts, Resample, TokensSource,
};

fn show(name: &str, f: &ChinchillaFit, secs: f64) {
    let t = f.theta;
    println!("{name}: {secs:.2} s");
    println!(
        "  starts {} (run to convergence {}), failed {}, at best {}, evaluations {}",
        f.starts, f.full_starts, f.failed_starts, f.starts_at_best, f.evaluations
    );
    println!("  objective: {:.10e}", f.objective);
    println!(
        "  theta (a, b, e, alpha, beta): {:.6} {:.6} {:.6} {:.6} {:.6}",
        t[0], t[1], t[2], t[3], t[4]
    );
    println!(
        "  law: E={:.5} A={:.4} B={:.4} alpha={:.5} beta={:.5}",
        f.law.e, f.law.a, f.law.b, f.law.alpha, f.law.beta
    );
}

fn main() {
    let path = std::env::args()
        .skip(1)
        .find(|a| a.ends_with(".csv"))
        .unwrap_or_else(|| {
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../bench/data/chinchilla_240.csv"
            )
            .to_string()
        });
    let cols = ColumnMap {
        compute: "flops".into(),
        loss: "loss".into(),
        params: Some("params".into()),
        tokens: Some("tokens".into()),
        run: Some("run".into()),
        step: Some("step".into()),
        ..ColumnMap::default()
    };
    let curves = load_csv(&path, &cols).expect("load benchmark CSV");
    let data = ChinchillaData::from_curves(&curves, TokensSource::Column).expect("fit data");
    println!(
        "data: {path}: {} points, {} runs, {} threads",
        data.len(),
        data.n_runs(),
        rayon::current_num_threads()
    );

    let opts = ChinchillaOptions::default();
    let t0 = Instant::now();
    let full = fit_chinchilla(&data, &opts).expect("fit");
    show("full grid, no pruning", &full, t0.elapsed().as_secs_f64());

    let scipy_rule = opts.clone().scipy_tolerances();
    let t0 = Instant::now();
    let sr = fit_chinchilla(&data, &scipy_rule).expect("fit");
    show(
        "full grid, scipy's stopping rule (ftol 2.2e-9)",
        &sr,
        t0.elapsed().as_secs_f64(),
    );

    let pruned_opts = ChinchillaOptions {
        pruning: Pruning::Screen {
            screen_iters: 10,
            keep: 64,
        },
        ..opts.clone()
    };
    let t0 = Instant::now();
    let pruned = fit_chinchilla(&data, &pruned_opts).expect("fit");
    show(
        "full grid, screened (10 iterations, keep 64)",
        &pruned,
        t0.elapsed().as_secs_f64(),
    );

    // the scipy reference's optimum, evaluated with this crate's objective
    let scipy_theta = std::env::var("SCIPY_THETA").ok().map(|s| {
        let v: Vec<f64> = s
            .split_whitespace()
            .map(|x| x.parse().expect("number"))
            .collect();
        [v[0], v[1], v[2], v[3], v[4]]
    });
    if let Some(th) = scipy_theta {
        println!(
            "objective at the scipy optimum: {:.10e}",
            objective_at(&data, opts.loss, th)
        );
    }

    let bopts = BootstrapOptions {
        reps: 1000,
        level: 0.9,
        seed: 0,
        resample: Resample::Points,
    };
    let t0 = Instant::now();
    let b = bootstrap_chinchilla_from(
        &data,
        full.clone(),
        &opts,
        &bopts,
        &RefitStarts::LocalOptima,
    )
    .expect("bootstrap");
    println!(
        "bootstrap: {} refits ({} starts each: the full fit's distinct local optima), {} failed: {:.2} s",
        bopts.reps,
        full.local_optima.len(),
        b.failed,
        t0.elapsed().as_secs_f64()
    );
    for (name, iv) in [
        ("E", b.e),
        ("A", b.a),
        ("B", b.b),
        ("alpha", b.alpha),
        ("beta", b.beta),
    ] {
        println!("  {name}: 90% CI [{:.4}, {:.4}]", iv.lo, iv.hi);
    }
}
