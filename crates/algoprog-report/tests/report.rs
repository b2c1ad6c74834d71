//! The report's sections on hand-made curves with known answers, a report
//! from another framework's CSV, and a run store with a run that diverged
//! before its first evaluation.

use std::path::Path;

use algoprog_report::sections::{
    ablation, ablation_curves, choose_threshold, combination_section, exclusions, fit_family,
    frontier_points, matched_ceg, published_rows, render, Analysis,
};
use algoprog_report::{
    write_report, AnalysisSettings, ComputeRange, RangeMode, ReportInput, ThresholdSetting,
};
use algoprog_scaling::{ColumnMap, Curve, Point, RunMeta};

mod common;
use common::{plateau_run, settings};

/// L(C) = 3 + 4·(C / (1e9·k))^(−1/4) on a grid of 10^(9 + 0.1 i): a run that
/// needs k times the compute of k = 1 for every loss.
fn run(id: &str, family: &str, seed: u64, log10_k: f64) -> Curve {
    common::law_run(id, family, seed, log10_k, 0.25, None)
}

fn ablation_study() -> Vec<Curve> {
    let mut cs = Vec::new();
    for (fam, k) in [
        ("modern", 0.0),
        ("modern-retro_positional", 0.3),
        ("modern-retro_norm", 0.1),
        ("retro", 0.2),
    ] {
        cs.extend(common::seed_pair(fam, k, 0.02, None));
    }
    cs
}

#[test]
fn ablation_multipliers_are_the_papers_modern_over_retro_ratios() {
    let input = ReportInput::from_curves("abl.csv", ablation_study());
    let s = settings(
        "e = 2.0\nthreshold = 4.0\nbootstrap = 200\nunigram_entropy = 6.2\ncompute_range = \"all\"",
    );
    let ex = exclusions(&input, &s);
    let rep = ablation(&ablation_curves(&input, &ex), &s, 4.0).unwrap();
    let m = |f: &str| rep.variant(f).unwrap().ceg.unwrap();
    assert!(
        (m("modern-retro_positional") - 10f64.powf(0.3)).abs() < 1e-6,
        "{}",
        m("modern-retro_positional")
    );
    assert!((m("modern-retro_norm") - 10f64.powf(0.1)).abs() < 1e-6);
    // The combination test: product of singles 10^0.4, measured 10^0.2, I = 10^-0.2.
    let (md, c) = combination_section(Some(&rep), &s);
    let c = c.unwrap();
    assert!((c.predicted.ceg - 10f64.powf(0.4)).abs() < 1e-6);
    assert!((c.measured.ceg - 10f64.powf(0.2)).abs() < 1e-6);
    assert!((c.interaction.ceg - 10f64.powf(-0.2)).abs() < 1e-6);
    assert!(
        md.contains("interaction factor I = measured / predicted = 0.631"),
        "{md}"
    );
}

#[test]
fn plateau_runs_are_flagged_by_name_and_auto_refuses_when_nothing_else_is_left() {
    let mut cs = ablation_study();
    cs.push(plateau_run("flat-s0", "modern-retro_schedule", 0));
    let input = ReportInput::from_curves("abl.csv", cs);
    let s = settings("threshold = \"auto\"\nunigram_entropy = 6.2\nmargin = 0.5");
    let ex = exclusions(&input, &s);
    assert_eq!(
        ex.plateau.iter().map(|p| p.0.as_str()).collect::<Vec<_>>(),
        vec!["flat-s0"]
    );
    // auto: the lowest loss every non-plateau run reaches: the slowest (positional + 0.02) at 1e13.
    let t = choose_threshold(&input, &s, &ex);
    let expected = 3.0 + 4.0 * (1e13f64 / (1e9 * 10f64.powf(0.32))).powf(-0.25);
    assert!((t.value.unwrap() - expected).abs() < 1e-9, "{t:?}");
    assert!(
        t.how.contains("`positional") || t.how.contains("modern-retro_positional-s1"),
        "{}",
        t.how
    );
    assert!(!ablation_curves(&input, &ex)
        .iter()
        .any(|c| c.meta.run_id == "flat-s0"));

    // Every run on the plateau: auto finds no threshold and says so, naming the runs.
    let flat = ReportInput::from_curves(
        "flat.csv",
        vec![plateau_run("a", "modern", 0), plateau_run("b", "retro", 0)],
    );
    let ex = exclusions(&flat, &s);
    let t = choose_threshold(&flat, &s, &ex);
    assert!(t.value.is_none());
    assert!(
        t.how.contains("`a`")
            && t.how.contains("`b`")
            && t.how
                .contains("no compared run ends at least 0.5 nats below the plateau"),
        "{}",
        t.how
    );
    let (md, a) = render(&flat, &s, None, None).unwrap();
    assert!(a.ablation.is_none());
    assert!(
        md.contains("No CEG is reported: `auto` found no threshold"),
        "{md}"
    );
    assert!(!md.contains("multiplier |"), "no ablation table is printed");
}

#[test]
fn the_compute_range_is_applied_before_the_pareto_step_or_after_it_by_name() {
    // A point below the range dominates points inside it only when the range comes after the envelope.
    let p = |c: f64, l: f64, s: u64| Point {
        step: s,
        tokens: 0.0,
        flops: c,
        loss: l,
    };
    let a = Curve::new(
        RunMeta {
            run_id: "a".into(),
            family: "f".into(),
            ..Default::default()
        },
        vec![p(1e15, 3.0, 1), p(2e16, 3.5, 2), p(1e17, 2.9, 3)],
    );
    let b = Curve::new(
        RunMeta {
            run_id: "b".into(),
            family: "f".into(),
            ..Default::default()
        },
        vec![p(3e16, 3.2, 1), p(4e17, 2.5, 2), p(1e18, 2.0, 3)],
    );
    let mut s = settings("compute_range = [1e16, 5e17]");
    assert_eq!(s.range_mode, RangeMode::BeforePareto);
    let before: Vec<(f64, f64)> = frontier_points(&[a.clone(), b.clone()], &s)
        .iter()
        .map(|p| (p.flops, p.loss))
        .collect();
    assert_eq!(
        before,
        vec![(2e16, 3.5), (3e16, 3.2), (1e17, 2.9), (4e17, 2.5)]
    );
    s.range_mode = RangeMode::AfterPareto;
    let after: Vec<(f64, f64)> = frontier_points(&[a, b], &s)
        .iter()
        .map(|p| (p.flops, p.loss))
        .collect();
    assert_eq!(after, vec![(1e17, 2.9), (4e17, 2.5)]);
}

#[test]
fn frontier_fits_recover_the_law_and_matched_cegs_the_compute_ratio() {
    let s = settings("e = 3.0\ncompute_range = \"all\"\nbootstrap = 100");
    let new = fit_family("modern", &[run("m", "modern", 0, 0.0)], &s).unwrap();
    assert!(
        (new.law.gamma - 0.25).abs() < 1e-6
            && (new.law.a - 4.0 * 1e9f64.powf(0.25)).abs() / new.law.a < 1e-5,
        "{:?}",
        new.law
    );
    let gi = new.gamma_ci.unwrap();
    assert!(gi.lo <= 0.25 + 1e-9 && gi.hi >= 0.25 - 1e-9);
    let old = fit_family("lstm", &[run("l", "lstm", 0, 0.8)], &s).unwrap();
    let m = matched_ceg(&new, &old, 4.0, 0.9).unwrap();
    assert!((m.ceg - 10f64.powf(0.8)).abs() < 1e-4, "{m:?}");
    assert!(!m.extrapolated);
    // E at or above a frontier loss is refused, naming the point.
    let e = fit_family(
        "modern",
        &[run("m", "modern", 0, 0.0)],
        &settings("e = 3.5\ncompute_range = \"all\""),
    )
    .unwrap_err();
    assert!(
        e.contains("at or below E = 3.5") && e.contains("`m`"),
        "{e}"
    );
}

/// Another framework's log: its own column names, one row per evaluation.
fn foreign_csv(dir: &Path) -> std::path::PathBuf {
    let mut text = String::from(
        "run_name,global_step,tokens_seen,flops,eval/loss,model_family,n_params,seed\n",
    );
    for c in ablation_study().into_iter().chain([
        run("lstm-s0", "lstm", 0, 0.8),
        run("lstm-s1", "lstm", 1, 0.8),
    ]) {
        for p in &c.points {
            text.push_str(&format!(
                "{},{},{},{:e},{},{},{},{}\n",
                c.meta.run_id,
                p.step * 10,
                p.tokens,
                p.flops,
                p.loss,
                c.meta.family,
                50000,
                c.meta.seed.unwrap()
            ));
        }
    }
    let p = dir.join("wandb_export.csv");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_report_from_a_csv_with_another_frameworks_column_names() {
    let dir = tempfile::tempdir().unwrap();
    let csv = foreign_csv(dir.path());
    let cols = ColumnMap {
        compute: "flops".into(),
        loss: "eval/loss".into(),
        params: Some("n_params".into()),
        tokens: Some("tokens_seen".into()),
        family: Some("model_family".into()),
        run: Some("run_name".into()),
        seed: Some("seed".into()),
        step: Some("global_step".into()),
    };
    let input = ReportInput::load(&csv, &cols).unwrap();
    assert_eq!(input.runs.len(), 10);
    let analysis = dir.path().join("analysis.toml");
    std::fs::write(&analysis, "e = 3.0\nthreshold = 4.0\ncompute_range = \"all\"\nunigram_entropy = 6.2\nbootstrap = 100\ndata = \"synthetic curves\"\n").unwrap();
    let s = AnalysisSettings::from_file(&analysis).unwrap();
    let out = dir.path().join("out");
    let (path, a): (_, Analysis) = write_report(&input, &s, &out, None).unwrap();
    let md = std::fs::read_to_string(path).unwrap();
    for section in [
        "## Setup",
        "## Ablation table (Figure 2)",
        "## Combination test",
        "## Frontiers and power-law fits (Figure 1)",
        "## Transformer over LSTM at a matched threshold",
        "## Kaplan vs Chinchilla (Figure 3)",
        "## Reference dependence",
        "## Published vs this study",
    ] {
        assert!(md.contains(section), "missing {section}");
    }
    // The positional revert's multiplier is 10^0.3 and sits beside the published 1.44.
    let row = a
        .published
        .iter()
        .find(|r| r.quantity.contains("rotary over sinusoidal"))
        .unwrap();
    assert_eq!(
        (row.published.as_str(), row.this_study.as_str()),
        ("1.44", "1.995")
    );
    assert!(
        row.note.contains("L* = 4.0000 (papers: 5.277)") && row.note.contains("synthetic curves"),
        "{}",
        row.note
    );
    // Modern over LSTM at L* = 4: the modern frontier is its faster seed
    // (shifted by 10^-0.02), so the LSTM needs 10^0.82 = 6.607 times the compute (published 6.28).
    let m = a
        .published
        .iter()
        .find(|r| r.quantity.starts_with("modern Transformer over LSTM"))
        .unwrap();
    assert_eq!(m.this_study, "6.607");
    // Frontier exponent of modern: α = −0.25.
    let f = a
        .published
        .iter()
        .find(|r| r.quantity.contains("exponent α of `modern`"))
        .unwrap();
    assert_eq!(f.this_study, "-0.2500");
    assert!(
        md.contains("positional: rotary→sinusoidal"),
        "readable revert labels"
    );
    for fig in [
        "fig2_ceg_bars.svg",
        "fig1_frontiers.svg",
        "fig3_kaplan_chinchilla.png",
    ] {
        assert!(out.join("figures").join(fig).is_file(), "{fig}");
    }
    // Every figure carries a caption naming the threshold, the data and the seeds.
    assert!(md.contains("*Figure 2: multiplier of each modern choice over the retro one it is reverted to, at L* = 4.0000 nats; data: synthetic curves; seeds 0, 1"), "{md}");
}

fn store_run(root: &Path, id: &str, json: &str, curve: &str) {
    let d = root.join("runs").join(id);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("run.json"), json).unwrap();
    std::fs::write(d.join("curve.csv"), curve).unwrap();
}

#[test]
fn a_store_with_a_run_diverged_before_its_first_evaluation_reports_it_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let specs: Vec<String> = ["m0", "m1", "p0", "p1", "boom"]
        .iter()
        .map(|id| format!(r#"{{"id":"{id}","groups":[["ablation","ablation"]]}}"#))
        .collect();
    std::fs::write(root.join("specs.json"), format!("[{}]", specs.join(","))).unwrap();
    std::fs::write(root.join("study.toml"), "name = \"tiny\"\n[analysis]\ne = 2.0\nthreshold = 4.0\nbootstrap = 50\ncompute_range = \"all\"\n").unwrap();
    let header = "step,tokens,flops,train_loss,val_loss,lr\n";
    for (id, fam, seed, k) in [
        ("m0", "modern", 0, -0.02),
        ("m1", "modern", 1, 0.02),
        ("p0", "modern-retro_positional", 0, 0.28),
        ("p1", "modern-retro_positional", 1, 0.32),
    ] {
        let c = run(id, fam, seed, k);
        let rows: String = c
            .points
            .iter()
            .map(|p| {
                format!(
                    "{},{},{:e},{},{},0.001\n",
                    p.step,
                    p.tokens,
                    p.flops,
                    p.loss + 0.1,
                    p.loss
                )
            })
            .collect();
        // Embedding and non-embedding parameters: N is their sum (the papers fit on total parameters).
        let json = format!(
            r#"{{"run_id":"{id}","name":"{fam}-s{seed}","family":"{fam}","seed":{seed},"status":"finished","params":{{"embedding":16384,"non_embedding":33760}},"data":{{"tokenizer":"bpe-512","vocab_size":512,"train_tokens":1000,"val_tokens":100,"unigram_entropy":6.2}},"config":{{"data":{{"corpus":"embedded","seq_len":64}}}}}}"#
        );
        store_run(root, id, &json, &format!("{header}{rows}"));
    }
    store_run(
        root,
        "boom",
        r#"{"run_id":"boom","name":"modern-lr10","family":"modern","seed":2,"status":"diverged","params":{"embedding":16384,"non_embedding":33760}}"#,
        header,
    );
    let input = ReportInput::from_store(root).unwrap();
    assert_eq!(input.name, "tiny");
    assert!(
        input
            .runs
            .iter()
            .all(|r| r.curve.meta.params == Some(50144.0)),
        "N = total parameters"
    );
    let s = AnalysisSettings::for_store(root).unwrap();
    assert_eq!(
        (s.threshold, s.compute_range),
        (ThresholdSetting::Fixed(4.0), ComputeRange::All)
    );
    let (md, a) = render(&input, &s, None, None).unwrap();
    assert!(
        md.contains("`boom` modern-lr10: diverged, no points"),
        "{md}"
    );
    let rep = a.ablation.unwrap();
    assert!(
        (rep.variant("modern-retro_positional").unwrap().ceg.unwrap() - 10f64.powf(0.3)).abs()
            < 1e-6
    );
    assert!(!rep.runs.iter().any(|r| r.run_id == "boom"));
    let rows = published_rows(&input, &s, &Analysis::default());
    assert!(rows
        .iter()
        .all(|r| r.this_study == "not measured" || r.quantity.contains("Kaplan")));
}

#[test]
fn a_missing_or_empty_store_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = ReportInput::from_store(&dir.path().join("nope"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no such run store"), "{e}");
    assert!(!dir.path().join("nope").exists(), "nothing is created");
    std::fs::write(dir.path().join("specs.json"), r#"[{"id":"a","groups":[]}]"#).unwrap();
    let e = ReportInput::from_store(dir.path()).unwrap_err().to_string();
    assert!(e.contains("holds no trained run yet (1 specified)"), "{e}");
}

#[test]
fn the_decomposition_is_the_authors_until_the_study_measures_an_item() {
    use algoprog_report::sections::decomposition;
    use std::collections::BTreeMap;
    let s = AnalysisSettings::default();
    // Nothing measured: the published test vector, 2012 → 2023.
    let d = decomposition(&s, None, None, &BTreeMap::new(), None).unwrap();
    assert!(d.measured.is_empty());
    assert!(
        (d.decomposition.total_gain - 6926.35).abs() / 6926.35 < 1e-4,
        "{}",
        d.decomposition.total_gain
    );
    assert!((d.decomposition.scale_dependent_share - 0.8933).abs() < 1e-4);
    // A measured schedule multiplier replaces the published 1.04 and is marked measured.
    let input = ReportInput::from_curves("abl.csv", {
        let mut cs = ablation_study();
        // Seeds at the same offsets from the evaluation grid as modern's, so
        // the interpolated crossings shift by exactly 10^0.1.
        cs.push(run("sch-s0", "modern-retro_schedule", 0, 0.08));
        cs.push(run("sch-s1", "modern-retro_schedule", 1, 0.12));
        cs
    });
    let s = settings("e = 2.0\nthreshold = 4.0\nbootstrap = 0\ncompute_range = \"all\"");
    let ex = exclusions(&input, &s);
    let rep = ablation(&ablation_curves(&input, &ex), &s, 4.0).unwrap();
    let d = decomposition(&s, Some(&rep), None, &BTreeMap::new(), None).unwrap();
    let item = d.decomposition.item("sqrt_cosine").unwrap();
    assert_eq!(item.source, algoprog_ceg::Source::Measured);
    assert!(
        (item.raw_ceg - 10f64.powf(0.1)).abs() < 1e-6,
        "{}",
        item.raw_ceg
    );
    // The positional seam covers two published items: split in their published log ratio, product kept.
    let (a, b) = (
        d.decomposition.item("sinusoidal").unwrap().raw_ceg,
        d.decomposition.item("rotary").unwrap().raw_ceg,
    );
    assert!(
        (a * b - 10f64.powf(0.3)).abs() < 1e-6
            && (a.ln() / b.ln() - (1.44f64 / 1.26).ln() / 1.26f64.ln()).abs() < 1e-9
    );
    assert_eq!(d.measured.len(), 3, "{:?}", d.measured);
}

#[test]
fn reference_dependence_grows_against_the_lstm_and_not_against_a_dense_transformer() {
    use algoprog_report::sections::reference_section;
    let md = reference_section(&std::collections::BTreeMap::new());
    assert!(md.contains("the published fits"), "{md}");
    let row = |name: &str| {
        md.lines()
            .find(|l| l.starts_with(&format!("| {name} |")))
            .unwrap()
            .to_string()
    };
    // Mixture of experts alone: 2.0 every year, zero growth.
    assert_eq!(
        row("dense_transformer"),
        "| dense_transformer | 2.000e0 | 2.000e0 | +0.00% |"
    );
    // Against the LSTM: growth = ln 4.1 · (d ln CEG / d ln C) > 0 (the modern frontier falls faster).
    let g: f64 = row("lstm")
        .split('|')
        .nth(4)
        .unwrap()
        .trim()
        .trim_end_matches('%')
        .parse()
        .unwrap();
    assert!(g > 10.0, "{g}");
}
