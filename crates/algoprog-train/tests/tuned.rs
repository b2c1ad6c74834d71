//! A study in stages: the tune's best learning rates reach the scan's and the
//! ablation's run specs through the fitted per-width rule; resuming derives
//! the same specs; a tune that cannot give a rate is an error naming the
//! group and the fix. The tune's runs are written by hand with known final
//! losses (no training).

use std::path::Path;

use algoprog_models::ParamCounts;
use algoprog_train::record::{DataSummary, Termination};
use algoprog_train::store::{Store, SPECS_JSON, TUNED_JSON};
use algoprog_train::study::{tuned_rates, Role, RunSpec, Study, TuneOutcome, TuneStatus};
use algoprog_train::{EvalRow, FlopLedger, RunDir, RunRecord, RunStatus};

const STUDY: &str = r#"
name = "staged"
[base]
data = { tokenizer = "bpe-512", seq_len = 16 }
train = { batch_size = 2, eval_batches = 1 }

[[groups]]
name = "tune"
role = "tune"
families = ["modern", "retro"]
widths = [32, 64]
budget = { steps = 1 }
lr = [1e-3, 1e-2, 1e-1]

[[groups]]
name = "tune-lstm"
role = "tune"
families = ["lstm"]
widths = [32]
budget = { steps = 1 }
lr = [1e-2, 1e-1]

[[groups]]
name = "scan"
role = "scan"
families = ["modern"]
widths = [32, 48, 64]
budget = { steps = 3 }
lr = { tuned = "tune" }

[[groups]]
name = "ablation"
role = "ablation"
suite = "presets"
widths = [32]
budget = { steps = 2 }
lr = { tuned = "tune", spread = [-0.5, 0.0, 0.5] }
seeds = [0, 1]

[[groups]]
name = "lstm-scan"
role = "scan"
families = ["lstm", { name = "lstm-clip", preset = "lstm", set = { train = { grad_clip = 0.5 } } }]
widths = [32]
budget = { steps = 3 }
lr = { tuned = "tune-lstm" }
"#;

/// The final validation loss a tune run "reached": best rate 1e-2 at width
/// 32 and 1e-3 at width 64 for modern, 1e-1 for retro (both widths) and the LSTM.
fn loss_of(spec: &RunSpec) -> f64 {
    let lr = spec.config.train.lr;
    let best = match (spec.config.family(), spec.width) {
        ("modern", 32) => 1e-2,
        ("modern", 64) => 1e-3,
        _ => 1e-1,
    };
    4.0 + (lr.log10() - f64::log10(best)).abs()
}

/// A finished (or diverged) run with one evaluation, written as the trainer would.
fn write_run(store: &Store, spec: &RunSpec, loss: Option<f64>) {
    let dir = RunDir::open(store.run_dir(&spec.id).path);
    std::fs::create_dir_all(&dir.path).unwrap();
    let diverged = loss.is_none();
    let rec = RunRecord {
        run_id: spec.id.clone(),
        name: spec.config.name.clone(),
        family: spec.config.family().to_string(),
        seed: spec.config.seed,
        status: if diverged {
            RunStatus::Diverged
        } else {
            RunStatus::Finished
        },
        diverged_at_step: diverged.then_some(1),
        termination: Some(if diverged {
            Termination::Diverged { step: 1 }
        } else {
            Termination::Finished
        }),
        width: spec.width,
        lr: spec.config.train.lr,
        params: ParamCounts::default(),
        total_params: 0,
        planned_steps: 1,
        token_budget: 32,
        steps_done: if diverged { 0 } else { 1 },
        tokens_done: 32,
        flops: FlopLedger::default(),
        data: DataSummary::default(),
        final_val_loss: loss,
        best_val_loss: loss,
        wall_seconds: 0.1,
        tokens_per_second: 320.0,
        started_at: "2026-01-01T00:00:00Z".into(),
        finished_at: Some("2026-01-01T00:00:01Z".into()),
        algoprog_version: "test".into(),
        config: spec.config.clone(),
        integrity: None,
    };
    let rows: Vec<EvalRow> = loss
        .map(|l| EvalRow {
            step: 1,
            tokens: 32,
            flops: 1e6,
            train_loss: l,
            val_loss: l,
            lr: spec.config.train.lr,
        })
        .into_iter()
        .collect();
    dir.write_curve(&rows).unwrap();
    if !diverged {
        std::fs::write(dir.path.join(algoprog_train::record::WEIGHTS), b"weights").unwrap();
    }
    dir.write_record(&rec).unwrap();
}

fn in_group<'a>(specs: &'a [RunSpec], g: &str) -> Vec<&'a RunSpec> {
    specs
        .iter()
        .filter(|s| s.groups.iter().any(|(n, _)| n == g))
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a / b - 1.0).abs() < 1e-9
}

fn init(root: &Path) -> (Store, Vec<RunSpec>) {
    let study = Study::from_toml_str(STUDY).unwrap();
    Store::init(root, STUDY, &study).unwrap()
}

#[test]
fn the_tuned_rate_reaches_the_scan_and_ablation_specs_and_resume_gives_the_same_specs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    // Stage 1: only the tunes (3 lr × 2 widths of modern and retro, 2 lr of the LSTM).
    let (store, first) = init(&root);
    assert_eq!(first.len(), 6 + 6 + 2);
    assert!(first
        .iter()
        .all(|s| s.groups.iter().all(|(_, r)| *r == Role::Tune)));
    assert!(!root.join(TUNED_JSON).exists());
    // Half the tune has ended: still stage 1.
    for s in &first[..3] {
        write_run(&store, s, Some(loss_of(s)));
    }
    assert_eq!(init(&root).1, first);
    for s in &first[3..] {
        write_run(&store, s, Some(loss_of(s)));
    }
    // Stage 2: the rule through (32, 1e-2) and (64, 1e-3).
    let (_, all) = init(&root);
    assert_eq!(&all[..first.len()], &first[..], "specs.json only grows");
    let b = -1.0 / 2f64.log10();
    let a = -2.0 - b * 32f64.log10();
    let scan = in_group(&all, "scan");
    assert_eq!(scan.len(), 3);
    for s in &scan {
        let want = 10f64.powf(a + b * (s.width as f64).log10());
        assert!(
            close(s.config.train.lr, want),
            "{} {}",
            s.config.name,
            s.config.train.lr
        );
    }
    let at = |w: usize| scan.iter().find(|s| s.width == w).unwrap().config.train.lr;
    assert!(close(at(32), 1e-2) && close(at(64), 1e-3));
    assert!(close(at(48), 1e-2 * (48.0f64 / 32.0).powf(b)));
    // The ablation (suite `presets`: modern and retro): each at its tuned rate × 10^±0.5, two seeds;
    // retro takes retro's own rule (the tune has retro), modern modern's.
    let abl = in_group(&all, "ablation");
    assert_eq!(abl.len(), 2 * 3 * 2);
    for (fam, centre) in [("modern", 1e-2), ("retro", 1e-1)] {
        let mut lrs: Vec<f64> = abl
            .iter()
            .filter(|s| s.config.family() == fam && s.config.seed == 0)
            .map(|s| s.config.train.lr)
            .collect();
        lrs.sort_by(f64::total_cmp);
        assert_eq!(lrs.len(), 3, "{fam}");
        for (got, d) in lrs.iter().zip([-0.5, 0.0, 0.5]) {
            assert!(close(*got, centre * 10f64.powf(d)), "{fam}: {lrs:?}");
        }
    }
    // A custom family takes its preset's rule (one width: the best rate itself).
    for s in in_group(&all, "lstm-scan") {
        assert_eq!(s.config.train.lr, 1e-1, "{}", s.config.name);
    }
    // The rules are written down.
    let rules: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join(TUNED_JSON)).unwrap()).unwrap();
    assert_eq!(rules["rules"].as_array().unwrap().len(), 3);
    // Resume: the same specs, in the same order, and the same specs.json.
    let json = std::fs::read(root.join(SPECS_JSON)).unwrap();
    let (_, again) = init(&root);
    assert_eq!(again, all);
    assert_eq!(std::fs::read(root.join(SPECS_JSON)).unwrap(), json);
}

#[test]
fn the_best_rate_is_the_lowest_final_loss_and_diverged_runs_never_win() {
    let study = Study::from_toml_str(STUDY).unwrap();
    let first = study.expand().unwrap();
    let outcomes: Vec<(RunSpec, TuneOutcome)> = first
        .iter()
        .map(|s| {
            // The best rate of modern at width 32 diverges: the next best (1e-3 at 4.5 < 1e-1 at 5) wins.
            let o = if s.config.family() == "modern" && s.width == 32 && s.config.train.lr == 1e-2 {
                TuneOutcome::Diverged
            } else if s.config.family() == "modern" && s.width == 32 && s.config.train.lr == 1e-3 {
                TuneOutcome::Finished(4.5)
            } else {
                TuneOutcome::Finished(loss_of(s))
            };
            (s.clone(), o)
        })
        .collect();
    let TuneStatus::Ready(r) = tuned_rates(&study, &outcomes).unwrap() else {
        panic!("not ready")
    };
    let m = r.rule_for("tune", "modern", None, false).unwrap();
    assert_eq!(
        m.best
            .iter()
            .map(|(w, lr, l, _)| (*w, *lr, *l))
            .collect::<Vec<_>>(),
        vec![(32, 1e-3, 4.5), (64, 1e-3, 4.0)]
    );
    assert!(m.b.abs() < 1e-12 && close(m.lr(48), 1e-3));
    // A run not ended yet: waiting, naming it.
    let mut waiting = outcomes.clone();
    waiting[0].1 = TuneOutcome::NotEnded("failed".into());
    match tuned_rates(&study, &waiting).unwrap() {
        TuneStatus::Waiting(w) => assert_eq!(
            w,
            vec![(
                first[0].id.clone(),
                first[0].config.name.clone(),
                "failed".into()
            )]
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_tune_without_a_finished_run_at_a_width_is_an_error_naming_the_group_and_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let (store, first) = init(&root);
    for s in &first {
        let diverged = s.config.family() == "modern" && s.width == 64;
        write_run(&store, s, (!diverged).then(|| loss_of(s)));
    }
    let study = Study::from_toml_str(STUDY).unwrap();
    let e = Store::init(&root, STUDY, &study).unwrap_err().to_string();
    assert!(
        e.contains("groups (tune)")
            && e.contains("family `modern` at width 64")
            && e.contains("scan, ablation")
            && e.contains("lower learning rates"),
        "{e}"
    );
}

#[test]
fn a_missing_or_wrong_tune_group_is_refused_before_anything_runs() {
    let bad = |from: &str, to: &str| {
        Study::from_toml_str(&STUDY.replacen(from, to, 1))
            .unwrap_err()
            .to_string()
    };
    let e = bad(r#"lr = { tuned = "tune" }"#, r#"lr = { tuned = "tuen" }"#);
    assert!(
        e.contains("groups[2] (scan).lr")
            && e.contains("no group named `tuen`")
            && e.contains("tune, tune-lstm"),
        "{e}"
    );
    let e = bad(
        r#"lr = { tuned = "tune" }"#,
        r#"lr = { tuned = "ablation" }"#,
    );
    assert!(e.contains("has role Ablation, not tune"), "{e}");
    let e = bad(r#"lr = { tuned = "tune" }"#, r#"lr = "tuned""#);
    assert!(
        e.contains("ambiguous") && e.contains(r#"lr = { tuned = "tune" }"#),
        "{e}"
    );
    let e = bad("spread = [-0.5, 0.0, 0.5]", "spread = []");
    assert!(e.contains("lr.spread"), "{e}");
    // One tune group: "tuned" names it.
    let one = STUDY
        .replacen(
            "name = \"tune-lstm\"\nrole = \"tune\"",
            "name = \"tune-lstm\"\nrole = \"scan\"",
            1,
        )
        .replace(r#"lr = { tuned = "tune-lstm" }"#, r#"lr = "tuned""#);
    let s = Study::from_toml_str(&one).unwrap();
    assert_eq!(s.needed_tunes(), vec!["tune".to_string()]);
}

#[test]
fn a_short_tune_budget_is_tokens_per_param_with_a_floor() {
    let text = STUDY.replacen(
        "budget = { steps = 1 }",
        "budget = { tokens_per_param = 0.5, min_tokens = 40000 }",
        1,
    );
    let study = Study::from_toml_str(&text).unwrap();
    for s in in_group(&study.expand().unwrap(), "tune") {
        let n = s.config.model.param_counts(512).total() as f64;
        let want = ((0.5 * n).ceil() as u64).max(40_000);
        assert_eq!(s.config.train.tokens, Some(want), "{}", s.config.name);
        assert_eq!(s.config.train.tokens_per_param, None);
    }
    // Width 64 has > 80k parameters: there the per-parameter budget wins.
    assert!(in_group(&study.expand().unwrap(), "tune")
        .iter()
        .any(|s| s.config.train.tokens > Some(40_000)));
    let e = Study::from_toml_str(&STUDY.replacen(
        "budget = { steps = 1 }",
        "budget = { steps = 1, min_tokens = 5 }",
        1,
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("min_tokens only bounds"), "{e}");
}
