//! The findings table's verdicts on hand-made curves with known answers;
//! plateau runs kept out of every CEG; the best learning rate per variant and
//! seed; epochs per run.

use std::path::Path;

use algoprog_report::input::epochs_of;
use algoprog_report::sections::{
    ablation_choice, exclusions, findings, render, verdict, Finding, Verdict,
};
use algoprog_report::ReportInput;
use algoprog_scaling::Curve;

mod common;
use common::{plateau_run, settings};

/// [`common::law_run`] at lr 1e-3.
fn law_run(id: &str, family: &str, seed: u64, log10_k: f64, gamma: f64, lr: f64) -> Curve {
    common::law_run(id, family, seed, log10_k, gamma, Some(lr))
}

fn run(id: &str, family: &str, seed: u64, log10_k: f64) -> Curve {
    law_run(id, family, seed, log10_k, 0.25, 1e-3)
}

fn row<'a>(f: &'a [Finding], start: &str) -> &'a Finding {
    f.iter()
        .find(|x| x.finding.starts_with(start))
        .unwrap_or_else(|| panic!("no finding `{start}`: {f:?}"))
}

#[test]
fn the_verdict_reads_the_interval_against_the_papers_side() {
    assert_eq!(
        verdict(Some(1.3), Some((1.1, 1.5)), 1.0, true),
        Verdict::Reproduced
    );
    assert_eq!(
        verdict(Some(0.8), Some((0.7, 0.9)), 1.0, true),
        Verdict::NotReproduced
    );
    assert_eq!(
        verdict(Some(1.1), Some((0.9, 1.3)), 1.0, true),
        Verdict::Inconclusive
    );
    assert_eq!(verdict(Some(1.1), None, 1.0, true), Verdict::Inconclusive);
    assert_eq!(verdict(None, None, 1.0, true), Verdict::NotMeasured);
    // Papers' side below (the interaction factor): mirrored.
    assert_eq!(
        verdict(Some(0.4), Some((0.3, 0.6)), 1.0, false),
        Verdict::Reproduced
    );
    assert_eq!(
        verdict(Some(1.4), Some((1.2, 1.6)), 1.0, false),
        Verdict::NotReproduced
    );
    // A slope against 0.
    assert_eq!(
        verdict(Some(0.2), Some((0.1, 0.3)), 0.0, true),
        Verdict::Reproduced
    );
}

/// An ablation with the published suite's families and known multipliers,
/// two seeds each (log10 multiplier ± 0.02 or ± 0.1), and size scans of
/// modern (γ = 0.25) and the LSTM (γ = 0.15).
fn study() -> Vec<Curve> {
    let mut cs = Vec::new();
    for (fam, k, d) in [
        ("modern", 0.0, 0.02),
        // rotary over sinusoidal: 10^0.3, both seeds above 1: reproduced.
        ("modern-sinusoidal", 0.3, 0.02),
        // SwiGLU over GeLU: 10^-0.3: the other side, not reproduced.
        ("modern-gelu", -0.3, 0.02),
        // Adam over SGD: seeds at 10^-0.1 and 10^0.1 (modern's seeds ±0.02): straddles, inconclusive.
        ("modern-sgd", 0.0, 0.12),
        // retro 10^0.1 against the product of the retro singles present (10^0.3 · 10^-0.3 = 1): I = 10^0.1.
        ("retro", 0.1, 0.02),
    ] {
        cs.extend(common::seed_pair(fam, k, d, Some(1e-3)));
    }
    for (i, k) in [0.0, 0.5, 1.0].iter().enumerate() {
        cs.push(law_run(
            &format!("lstm-{i}"),
            "lstm",
            0,
            *k + 1.0,
            0.15,
            1e-3,
        ));
    }
    cs
}

#[test]
fn each_finding_gets_its_verdict_from_the_interval() {
    let input = ReportInput::from_curves("findings.csv", study());
    let s = settings(
        "e = 3.0\nthreshold = 4.0\nbootstrap = 200\nunigram_entropy = 8.0\ncompute_range = \"all\"",
    );
    let (md, a) = render(&input, &s, None, None).unwrap();
    let f = &a.findings;
    let rot = row(f, "rotary over sinusoidal");
    assert!(
        (rot.value.unwrap() - 10f64.powf(0.3)).abs() < 1e-6,
        "{rot:?}"
    );
    assert_eq!(rot.verdict, Verdict::Reproduced, "{rot:?}");
    let ff = row(f, "SwiGLU over GeLU");
    assert!((ff.value.unwrap() - 10f64.powf(-0.3)).abs() < 1e-6);
    assert_eq!(ff.verdict, Verdict::NotReproduced, "{ff:?}");
    let sgd = row(f, "Adam far over SGD");
    let (lo, hi) = sgd.interval.unwrap();
    assert!(lo < 1.0 && hi > 1.0, "{sgd:?}");
    assert_eq!(sgd.verdict, Verdict::Inconclusive);
    // No post-norm or schedule variant in this study.
    assert_eq!(
        row(f, "pre-norm over post-norm").verdict,
        Verdict::NotMeasured
    );
    assert_eq!(
        row(f, "cosine over inverse-sqrt").verdict,
        Verdict::NotMeasured
    );
    // The combination: I = 10^0.1 / (10^0.3 · 10^-0.3) > 1: not sub-multiplicative here.
    let comb = row(f, "modern over retro far less");
    assert!(
        (comb.value.unwrap() - 10f64.powf(0.1)).abs() < 1e-6,
        "{comb:?}"
    );
    assert_eq!(comb.verdict, Verdict::NotReproduced, "{comb:?}");
    // Frontier exponents: the modern runs' envelope has γ = 0.25, the LSTM's 0.15.
    let exp = row(f, "the LSTM's frontier exponent");
    assert!((exp.value.unwrap() - 0.25 / 0.15).abs() < 1e-3, "{exp:?}");
    assert_eq!(exp.verdict, Verdict::Reproduced, "{exp:?}");
    // With a shared E the CEG grows as C^(γ_modern/γ_LSTM − 1).
    let grow = row(f, "the Transformer-over-LSTM gain grows");
    assert!(
        (grow.value.unwrap() - (0.25 / 0.15 - 1.0)).abs() < 1e-3,
        "{grow:?}"
    );
    assert_eq!(grow.verdict, Verdict::Reproduced);
    assert!(md.contains("## The papers' findings, checked"), "{md}");
    assert!(
        md.contains("| rotary over sinusoidal positions | 1.44 |"),
        "{md}"
    );
    assert!(md.contains("**not reproduced**") && md.contains("**inconclusive**"));
    // Without scans of the LSTM: not measured, saying why.
    let no_lstm: Vec<Curve> = study()
        .into_iter()
        .filter(|c| c.meta.family != "lstm")
        .collect();
    let (_, a) = render(&ReportInput::from_curves("x.csv", no_lstm), &s, None, None).unwrap();
    let exp = row(&a.findings, "the LSTM's frontier exponent");
    assert_eq!(exp.verdict, Verdict::NotMeasured);
    assert!(exp.note.contains("no `lstm` size scan"), "{exp:?}");
    // Nothing measured: every row says so.
    let empty = findings(&algoprog_report::sections::Analysis::default(), 0.9);
    assert!(empty.iter().all(|x| x.verdict == Verdict::NotMeasured));
    assert_eq!(empty.len(), 8);
}

#[test]
fn a_flagged_plateau_run_is_kept_out_of_every_ceg_and_fit() {
    // A plateau run in the ablation (as a variant and as a second modern
    // run) and in a family's scan: it enters no multiplier, no frontier and
    // no matched CEG; without it the numbers are those of the other runs.
    let mut cs = study();
    cs.push(plateau_run("flat-sin", "modern-sinusoidal", 2));
    cs.push(plateau_run("flat-modern", "modern", 2));
    cs.push(plateau_run("flat-lstm", "lstm", 3));
    let s = settings(
        "e = 3.0\nthreshold = 4.0\nbootstrap = 100\nunigram_entropy = 6.2\nmargin = 0.5\ncompute_range = \"all\"",
    );
    let with = ReportInput::from_curves("with.csv", cs);
    let ex = exclusions(&with, &s);
    let mut flagged: Vec<&str> = ex.plateau.iter().map(|p| p.0.as_str()).collect();
    flagged.sort();
    assert_eq!(flagged, vec!["flat-lstm", "flat-modern", "flat-sin"]);
    let (md, a) = render(&with, &s, None, None).unwrap();
    let (_, b) = render(
        &ReportInput::from_curves("without.csv", study()),
        &s,
        None,
        None,
    )
    .unwrap();
    let rep = a.ablation.as_ref().unwrap();
    assert!(
        !rep.runs.iter().any(|r| r.run_id.starts_with("flat")),
        "{:?}",
        rep.runs
    );
    let m = |x: &algoprog_report::sections::Analysis, f: &str| {
        x.ablation
            .as_ref()
            .unwrap()
            .variant(f)
            .unwrap()
            .ceg
            .unwrap()
    };
    assert_eq!(m(&a, "modern-sinusoidal"), m(&b, "modern-sinusoidal"));
    assert_eq!(
        a.combination.as_ref().unwrap().measured.ceg,
        b.combination.as_ref().unwrap().measured.ceg
    );
    for fam in ["modern", "lstm"] {
        let fa = a.fits[fam].as_ref().unwrap();
        assert!(
            !fa.runs.iter().any(|r| r.starts_with("flat")),
            "{fam}: {:?}",
            fa.runs
        );
        assert_eq!(fa.law, b.fits[fam].as_ref().unwrap().law);
    }
    assert_eq!(a.matched.len(), b.matched.len());
    for (x, y) in a.matched.iter().zip(&b.matched) {
        assert_eq!(x.ceg, y.ceg);
    }
    assert!(md.contains("`flat-lstm`"), "named in the exclusions: {md}");
}

#[test]
fn each_variant_and_seed_keeps_its_lowest_final_loss_rate() {
    // modern-sinusoidal seed 0 at three rates: 10^0.5 (worse), 10^0.3 (best), 10^0.7.
    let mut cs = vec![
        run("m-s0", "modern", 0, 0.0),
        run("m-s1", "modern", 1, 0.0),
        law_run("sin-lo", "modern-sinusoidal", 0, 0.5, 0.25, 3.16e-4),
        law_run("sin-mid", "modern-sinusoidal", 0, 0.3, 0.25, 1e-3),
        law_run("sin-hi", "modern-sinusoidal", 0, 0.7, 0.25, 3.16e-3),
        law_run("sin-s1", "modern-sinusoidal", 1, 0.3, 0.25, 1e-3),
    ];
    cs.push(plateau_run("flat", "modern-sinusoidal", 1));
    let input = ReportInput::from_curves("lr.csv", cs);
    let s = settings(
        "e = 3.0\nthreshold = 4.0\nbootstrap = 50\nunigram_entropy = 6.2\ncompute_range = \"all\"",
    );
    let ex = exclusions(&input, &s);
    let mut kept: Vec<&str> = ablation_choice(&input, &ex)
        .iter()
        .map(|r| r.id())
        .collect();
    kept.sort();
    assert_eq!(kept, vec!["m-s0", "m-s1", "sin-mid", "sin-s1"]);
    let (md, a) = render(&input, &s, None, None).unwrap();
    let v = a.ablation.unwrap();
    assert!((v.variant("modern-sinusoidal").unwrap().ceg.unwrap() - 10f64.powf(0.3)).abs() < 1e-6);
    assert!(
        md.contains(
            "the run with the lowest final validation loss is kept (the authors' practice)"
        ),
        "{md}"
    );
    assert!(md.contains("| 1.00e-3 | `sin-mid` `sin-s1` |"), "{md}");
}

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

#[test]
fn epochs_are_tokens_trained_over_one_pass_through_the_training_windows() {
    // 1001 training tokens in windows of 64: (1001 − 1) / 64 = 15 windows, 960 tokens an epoch.
    assert_eq!(epochs_of(2400, 1001, 64), Some(2.5));
    assert_eq!(epochs_of(960, 1001, 64), Some(1.0));
    assert_eq!(epochs_of(10, 0, 64), None);
    assert_eq!(epochs_of(10, 50, 64), None, "no whole window");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(
        root,
        "specs.json",
        r#"[{"id":"r1","groups":[["scan","scan"]]}]"#,
    );
    write(root, "study.toml", "name = \"ep\"\n");
    write(
        root,
        "runs/r1/run.json",
        r#"{"run_id":"r1","name":"modern-d16","family":"modern","seed":0,"status":"finished","tokens_done":2400,"params":{"embedding":100,"non_embedding":200},"data":{"tokenizer":"bpe-512","vocab_size":512,"train_tokens":1001,"val_tokens":100,"unigram_entropy":6.2},"config":{"data":{"corpus":"embedded","seq_len":64}}}"#,
    );
    write(
        root,
        "runs/r1/curve.csv",
        "step,tokens,flops,train_loss,val_loss,lr\n1,1200,1e9,6.0,5.9,0.001\n2,2400,2e9,5.5,5.4,0.001\n",
    );
    let input = ReportInput::from_store(root).unwrap();
    assert_eq!(input.runs[0].epochs, Some(2.5));
    let md = algoprog_report::sections::runs_section(&input);
    assert!(md.contains("| epochs |") && md.contains("| 2.50 |"), "{md}");
}

#[test]
fn the_published_suites_swaps_go_into_the_decomposition_item_by_item() {
    // Rotary over sinusoidal 10^0.3 and over learned 10^0.1: sinusoidal → learned is 10^0.2;
    // pre over post 10^0.2, RMSNorm over LayerNorm 10^0.1.
    let mut cs = Vec::new();
    for (fam, k) in [
        ("modern", 0.0),
        ("modern-sinusoidal", 0.3),
        ("modern-learned", 0.1),
        ("modern-post_norm", 0.2),
        ("modern-layer_norm", 0.1),
    ] {
        cs.extend(common::seed_pair(fam, k, 0.01, Some(1e-3)));
    }
    let s = settings(
        "e = 3.0\nthreshold = 4.0\nbootstrap = 50\nunigram_entropy = 8.0\ncompute_range = \"all\"",
    );
    let (_, a) = render(&ReportInput::from_curves("d.csv", cs), &s, None, None).unwrap();
    let d = a.decomposition.unwrap().unwrap().decomposition;
    for (item, want) in [
        ("sinusoidal", 0.2),
        ("rotary", 0.1),
        ("pre_layer", 0.2),
        ("pre_rms", 0.1),
    ] {
        let it = d.item(item).unwrap();
        assert!(
            (it.raw_ceg.log10() - want).abs() < 1e-6,
            "{item}: {}",
            it.raw_ceg
        );
        assert_eq!(it.source.name(), "measured", "{item}");
    }
}
