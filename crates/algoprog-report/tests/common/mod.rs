//! Synthetic run curves and settings shared by the report crate's tests.
#![allow(dead_code)]

use algoprog_report::AnalysisSettings;
use algoprog_scaling::{Curve, Point, RunMeta};

/// L(C) = 3 + 4·(C / (1e9·k))^(−γ) on a grid of 10^(9 + 0.1 i), i = 0..=40:
/// a run that needs k times the compute of k = 1 for every loss.
pub fn law_run(
    id: &str,
    family: &str,
    seed: u64,
    log10_k: f64,
    gamma: f64,
    lr: Option<f64>,
) -> Curve {
    let meta = RunMeta {
        run_id: id.into(),
        family: family.into(),
        seed: Some(seed),
        params: Some(5e4),
        lr,
        ..Default::default()
    };
    let points = (0..=40)
        .map(|i| {
            let c = 10f64.powf(9.0 + 0.1 * i as f64);
            Point {
                step: i as u64 + 1,
                tokens: c / 3e5,
                flops: c,
                loss: 3.0 + 4.0 * (c / (1e9 * 10f64.powf(log10_k))).powf(-gamma),
            }
        })
        .collect();
    Curve::new(meta, points)
}

/// Seeds 0 and 1 of `family` (ids `FAMILY-s0`, `FAMILY-s1`), [`law_run`]s
/// with γ = 0.25 at log10 k − `jitter` and + `jitter`: a variant whose two
/// seeds straddle the multiplier 10^k.
pub fn seed_pair(family: &str, log10_k: f64, jitter: f64, lr: Option<f64>) -> [Curve; 2] {
    [(0, -jitter), (1, jitter)].map(|(seed, dk)| {
        law_run(
            &format!("{family}-s{seed}"),
            family,
            seed,
            log10_k + dk,
            0.25,
            lr,
        )
    })
}

/// A run that never leaves the plateau (6.3 → 6.0 with unigram entropy 6.2).
pub fn plateau_run(id: &str, family: &str, seed: u64) -> Curve {
    let meta = RunMeta {
        run_id: id.into(),
        family: family.into(),
        seed: Some(seed),
        ..Default::default()
    };
    let points = (0..=20)
        .map(|i| Point {
            step: i + 1,
            tokens: 0.0,
            flops: 10f64.powf(9.0 + 0.2 * i as f64),
            loss: 6.3 - 0.015 * i as f64,
        })
        .collect();
    Curve::new(meta, points)
}

pub fn settings(text: &str) -> AnalysisSettings {
    AnalysisSettings::from_toml_str(text, "test").unwrap()
}
