//! Ablation suites: presets differ in exactly their named seams, and every
//! generated config is valid, distinct and named for what it contains.

use std::collections::HashSet;

use algoprog_train::suite::{
    differing_seams, factorial, single_reverts, single_upgrades, with_preset, Seam,
};
use algoprog_train::RunConfig;

fn base() -> RunConfig {
    RunConfig::from_toml_str(
        r#"
preset = "modern"
seed = 3
[model]
d_model = 64
[train]
lr = 3e-3
steps = 100
"#,
    )
    .unwrap()
}

#[test]
fn modern_and_retro_differ_in_exactly_the_five_seams() {
    let modern = with_preset(&base(), "modern").unwrap();
    let retro = with_preset(&base(), "retro").unwrap();
    assert_eq!(
        differing_seams(&modern, &retro).unwrap(),
        Seam::ALL.to_vec()
    );
    // Outside the seams they are identical: width, data, lr, budget, seed.
    assert_eq!(modern.train.lr, retro.train.lr);
    assert_eq!(modern.seed, retro.seed);
    assert_eq!(modern.data, retro.data);
    // The presets resolved from TOML agree with the suite's presets.
    let retro_toml = RunConfig::from_toml_str(
        "preset = \"retro\"\nseed = 3\n[model]\nd_model = 64\n[train]\nlr = 3e-3\nsteps = 100\n",
    )
    .unwrap();
    assert_eq!(retro_toml.model, retro.model);
    assert_eq!(retro_toml.train, retro.train);
}

#[test]
fn single_reverts_change_one_seam_each() {
    let suite = single_reverts(&base()).unwrap();
    assert_eq!(suite.len(), 6);
    let modern = &suite[0];
    for (cfg, seam) in suite[1..].iter().zip(Seam::ALL) {
        assert_eq!(
            differing_seams(modern, cfg).unwrap(),
            vec![seam],
            "{}",
            cfg.name
        );
        assert!(cfg.name.ends_with(seam.name()), "{}", cfg.name);
        cfg.validate().unwrap();
    }
}

#[test]
fn single_upgrades_change_one_seam_each() {
    let suite = single_upgrades(&base()).unwrap();
    let retro = &suite[0];
    assert_eq!(retro.name, "retro");
    for (cfg, seam) in suite[1..].iter().zip(Seam::ALL) {
        assert_eq!(
            differing_seams(retro, cfg).unwrap(),
            vec![seam],
            "{}",
            cfg.name
        );
        cfg.validate().unwrap();
    }
}

#[test]
fn factorial_has_sixteen_distinct_valid_named_configs() {
    let suite = factorial(&base()).unwrap();
    assert_eq!(suite.len(), 16);
    let names: HashSet<_> = suite.iter().map(|c| c.name.clone()).collect();
    assert_eq!(names.len(), 16, "names must be distinct: {names:?}");
    let ids: HashSet<_> = suite.iter().map(|c| c.run_id()).collect();
    assert_eq!(ids.len(), 16, "configs must be distinct");
    assert!(names.contains("rotary+swiglu+pre_rms+cosine"), "{names:?}");
    assert!(
        names.contains("sinusoidal+gelu+post_rms_final_ln+inverse_sqrt"),
        "{names:?}"
    );
    let modern = with_preset(&base(), "modern").unwrap();
    for cfg in &suite {
        cfg.validate().unwrap();
        // The optimiser is AdamW everywhere; the name lists exactly the seams that moved.
        let moved = differing_seams(&modern, cfg).unwrap();
        assert!(!moved.contains(&Seam::Optimizer));
        let retro_parts = ["sinusoidal", "gelu", "post_rms_final_ln", "inverse_sqrt"];
        let named_retro = cfg
            .name
            .split('+')
            .filter(|p| retro_parts.contains(p))
            .count();
        assert_eq!(named_retro, moved.len(), "{}", cfg.name);
    }
}

#[test]
fn retro_is_the_authors_runs_and_retro_text_differs_only_in_the_norm() {
    let retro = with_preset(&base(), "retro").unwrap();
    let runs = with_preset(&base(), "retro-runs").unwrap();
    let text = with_preset(&base(), "retro-text").unwrap();
    assert_eq!((&retro.model, &retro.train), (&runs.model, &runs.train));
    assert_eq!(differing_seams(&retro, &text).unwrap(), vec![Seam::Norm]);
    assert_eq!(Seam::Norm.label(&retro), "post_rms_final_ln");
    assert_eq!(Seam::Norm.label(&text), "post_ln_nofinal");
    // moving the norm seam carries the final norm's kind with it
    let modern = with_preset(&base(), "modern").unwrap();
    let mut m = modern.clone();
    algoprog_train::suite::transplant(&mut m, &retro, Seam::Norm).unwrap();
    assert_eq!(Seam::Norm.label(&m), "post_rms_final_ln");
    algoprog_train::suite::transplant(&mut m, &modern, Seam::Norm).unwrap();
    assert_eq!(m, modern);
}
