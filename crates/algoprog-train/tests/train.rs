//! End-to-end checks of the training loop on the embedded corpus.

use std::path::PathBuf;

use algoprog_data::Dataset;
use algoprog_train::{train_on, RunConfig, RunDir, RunStatus, Silent, Termination, TrainError};

/// A shared, test-only cache (never the user's home).
fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("algoprog-test-cache")
}

/// A tiny modern Transformer on a small BPE, small enough for CI.
fn tiny_config(seed: u64, steps: usize) -> RunConfig {
    let text = format!(
        r#"
name = "tiny"
preset = "modern"
seed = {seed}

[model]
d_model = 32

[data]
tokenizer = "bpe-512"
seq_len = 64
cache_dir = "{cache}"

[train]
lr = 1e-2
batch_size = 16
steps = {steps}
eval_interval = 50
eval_batches = 8
"#,
        cache = cache_dir().display()
    );
    RunConfig::from_toml_str(&text).expect("the tiny config is valid")
}

fn config_error(text: &str) -> String {
    match RunConfig::from_toml_str(text) {
        Err(e @ TrainError::Config { .. }) => e.to_string(),
        Err(other) => panic!("expected a config error, got {other}"),
        Ok(_) => panic!("expected a config error for:\n{text}"),
    }
}

const VALID: &str = r#"
preset = "modern"
[model]
d_model = 64
[train]
lr = 1e-3
steps = 10
"#;

#[test]
fn valid_config_resolves_the_preset() {
    let cfg = RunConfig::from_toml_str(VALID).unwrap();
    assert_eq!(cfg.family(), "modern");
    assert_eq!(cfg.train.steps, Some(10));
    assert_eq!(cfg.train.grad_clip, 1.0);
}

#[test]
fn unknown_key_is_named_with_the_fix() {
    let msg = config_error(&VALID.replace("lr = 1e-3", "lr = 1e-3\nlearning_rate = 1e-3"));
    assert!(msg.contains("learning_rate"), "{msg}");
    assert!(msg.contains("fix:"), "{msg}");
}

#[test]
fn wrong_type_is_named() {
    let msg = config_error(&VALID.replace("steps = 10", "steps = \"ten\""));
    assert!(msg.contains("steps"), "{msg}");
    assert!(msg.contains("fix:"), "{msg}");
}

#[test]
fn width_not_divisible_by_head_dim_is_rejected() {
    let msg = config_error(&VALID.replace("d_model = 64", "d_model = 100"));
    assert!(msg.contains("d_model"), "{msg}");
    assert!(msg.contains("16"), "{msg}");
}

#[test]
fn zero_steps_is_rejected() {
    let msg = config_error(&VALID.replace("steps = 10", "steps = 0"));
    assert!(msg.contains("train.steps"), "{msg}");
}

#[test]
fn two_budgets_are_rejected() {
    let msg = config_error(&VALID.replace("steps = 10", "steps = 10\ntokens_per_param = 20"));
    assert!(msg.contains("exactly one"), "{msg}");
}

#[test]
fn unknown_preset_lists_the_presets() {
    let msg = config_error(&VALID.replace("\"modern\"", "\"futuristic\""));
    assert!(msg.contains("futuristic") && msg.contains("retro"), "{msg}");
}

#[test]
fn tiny_model_learns_below_unigram_entropy_and_ledger_is_exact() {
    let cfg = tiny_config(0, 300);
    let data = Dataset::prepare(&cfg.data).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = train_on(
        &cfg.clone().check().unwrap(),
        &data,
        &RunDir::create(tmp.path()).unwrap(),
        &mut Silent,
    )
    .unwrap();
    let r = &out.record;
    assert_eq!(r.status, RunStatus::Finished);
    let entropy = data.unigram_entropy();
    let last = out.curve.last().unwrap();
    assert!(
        last.val_loss < entropy - 0.1,
        "val loss {} should be below the unigram entropy {entropy}",
        last.val_loss
    );
    // The ledger: cumulative FLOPs are steps × tokens/step × training FLOPs/token, exactly.
    let tokens_per_step = (16 * 64) as u64;
    assert_eq!(r.flops.tokens_per_step, tokens_per_step);
    for row in &out.curve {
        assert_eq!(row.tokens, row.step * tokens_per_step);
        let expected = row.step as f64 * tokens_per_step as f64 * r.flops.per_token.train_per_token;
        assert!(
            (row.flops - expected).abs() <= 1e-9 * expected,
            "{} vs {expected}",
            row.flops
        );
    }
    assert_eq!(out.curve.len(), 6);
    // The record on disk round-trips.
    let dir = RunDir::open(tmp.path());
    assert_eq!(dir.read_record().unwrap().run_id, r.run_id);
    let back = dir.read_curve().unwrap();
    assert_eq!(back.len(), out.curve.len());
    assert!((back[5].val_loss - last.val_loss).abs() < 1e-9);
}

#[test]
fn same_seed_same_curve_other_seed_differs() {
    let cfg0 = tiny_config(7, 40);
    let data = Dataset::prepare(&cfg0.data).unwrap();
    let run = |cfg: &RunConfig| {
        let tmp = tempfile::tempdir().unwrap();
        train_on(
            &cfg.clone().check().unwrap(),
            &data,
            &RunDir::create(tmp.path()).unwrap(),
            &mut Silent,
        )
        .unwrap()
        .curve
    };
    let a = run(&cfg0);
    let b = run(&cfg0);
    assert_eq!(a, b, "same seed must reproduce the curve exactly");
    let c = run(&tiny_config(8, 40));
    assert_ne!(
        a[0].val_loss, c[0].val_loss,
        "another seed must give another curve"
    );
}

#[test]
fn absurd_learning_rate_is_marked_diverged() {
    let mut cfg = tiny_config(0, 60);
    cfg.train.lr = 1e4;
    cfg.train.grad_clip = 0.0;
    let data = Dataset::prepare(&cfg.data).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = train_on(
        &cfg.clone().check().unwrap(),
        &data,
        &RunDir::create(tmp.path()).unwrap(),
        &mut Silent,
    )
    .unwrap();
    assert_eq!(out.record.status, RunStatus::Diverged);
    let step = out.record.diverged_at_step.unwrap();
    assert!(step <= 60);
    // the termination names the same step, in the outcome and the record on disk
    assert_eq!(out.termination, Termination::Diverged { step });
    let on_disk = RunDir::open(tmp.path()).read_record().unwrap();
    assert_eq!(on_disk.termination, Some(Termination::Diverged { step }));
}

#[test]
fn corrupt_record_names_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("run.json"), "{ not json").unwrap();
    let err = RunDir::open(tmp.path())
        .read_record()
        .unwrap_err()
        .to_string();
    assert!(err.contains("run.json") && err.contains("fix"), "{err}");
    std::fs::write(
        tmp.path().join("curve.csv"),
        "step,tokens,flops,train_loss,val_loss,lr\n1,2,x,4,5,6\n",
    )
    .unwrap();
    let err = RunDir::open(tmp.path())
        .read_curve()
        .unwrap_err()
        .to_string();
    assert!(err.contains("curve.csv") && err.contains("line 2"), "{err}");
}
