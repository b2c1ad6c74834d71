//! Checkpoints: a run interrupted and resumed from its checkpoint produces the
//! same curve and the same final weights as an uninterrupted run.

use std::path::PathBuf;

use algoprog_data::Dataset;
use algoprog_train::checkpoint::CHECKPOINT;
use algoprog_train::{
    train_on_with, RunConfig, RunDir, RunStatus, Silent, TrainError, TrainOptions,
};

fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("algoprog-test-cache")
}

fn config(preset: &str, grad_accum: usize) -> RunConfig {
    let text = format!(
        r#"
name = "resume"
preset = "{preset}"
seed = 3
[model]
d_model = 32
[data]
tokenizer = "bpe-512"
seq_len = 32
cache_dir = "{cache}"
[train]
lr = 3e-3
batch_size = 4
grad_accum = {grad_accum}
steps = 24
eval_interval = 5
eval_batches = 2
"#,
        cache = cache_dir().display()
    );
    RunConfig::from_toml_str(&text).unwrap()
}

fn weights(dir: &RunDir) -> Vec<u8> {
    std::fs::read(dir.path.join("model.safetensors")).unwrap()
}

fn check_exact_resume(preset: &str, grad_accum: usize, stops: &[u64]) {
    let cfg = config(preset, grad_accum);
    let data = Dataset::prepare(&cfg.data).unwrap();
    let tmp = tempfile::tempdir().unwrap();

    let whole = RunDir::create(tmp.path().join("whole")).unwrap();
    let a = train_on_with(
        &cfg.clone().check().unwrap(),
        &data,
        &whole,
        &mut Silent,
        TrainOptions::resumable(),
    )
    .unwrap();
    assert_eq!(a.record.status, RunStatus::Finished);
    assert_eq!(a.curve.len(), 5, "evals at 5, 10, 15, 20 and 24");
    assert!(
        !whole.path.join(CHECKPOINT).exists(),
        "the checkpoint is removed when the run ends"
    );

    let parts = RunDir::create(tmp.path().join("parts")).unwrap();
    for &s in stops {
        let opts = TrainOptions {
            stop_after: Some(s),
            ..TrainOptions::resumable()
        };
        let o = train_on_with(
            &cfg.clone().check().unwrap(),
            &data,
            &parts,
            &mut Silent,
            opts,
        )
        .unwrap();
        assert_eq!(o.termination, algoprog_train::Termination::Stopped);
        assert_eq!(o.record.status, RunStatus::Running);
        assert_eq!(o.record.steps_done, s);
        assert!(parts.path.join(CHECKPOINT).exists());
        assert_eq!(parts.read_record().unwrap().status, RunStatus::Running);
    }
    let b = train_on_with(
        &cfg.clone().check().unwrap(),
        &data,
        &parts,
        &mut Silent,
        TrainOptions::resumable(),
    )
    .unwrap();
    assert_eq!(b.record.status, RunStatus::Finished);
    assert_eq!(
        b.curve, a.curve,
        "resumed curve equals the uninterrupted one, bit for bit"
    );
    assert_eq!(parts.read_curve().unwrap(), whole.read_curve().unwrap());
    assert_eq!(weights(&parts), weights(&whole), "same final weights");
    assert_eq!(b.record.steps_done, 24);
    assert_eq!(b.record.flops.train_total, a.record.flops.train_total);
    assert_eq!(b.record.flops.eval_total, a.record.flops.eval_total);
    assert_eq!(b.record.final_val_loss, a.record.final_val_loss);
}

#[test]
fn modern_resumes_exactly_between_evals() {
    // Stops at 7 and 13 resume from the checkpoints at 5 and 10: the steps in
    // between are recomputed, including the train-loss average over them.
    check_exact_resume("modern", 1, &[7, 13]);
}

#[test]
fn retro_with_grad_accum_resumes_exactly_at_an_eval() {
    check_exact_resume("retro", 2, &[10, 20]);
}

#[test]
fn carried_state_lstm_with_contiguous_batches_resumes_exactly() {
    // The `lstm-carry` preset carries each row's (h, c) into the next batch and
    // reads contiguous streams; the carried state is saved with the
    // checkpoint, so resuming from the checkpoints at 5 and 10 (stops at 7
    // and 13) continues from the same state and ends bit-identical.
    let cfg = config("lstm-carry", 2).check().unwrap();
    assert_eq!(
        cfg.config().train.batch_order,
        algoprog_data::BatchOrder::Contiguous
    );
    check_exact_resume("lstm-carry", 2, &[7, 13]);
}

#[test]
fn a_corrupt_checkpoint_is_reported_with_its_path() {
    let cfg = config("modern", 1);
    let data = Dataset::prepare(&cfg.data).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = RunDir::create(tmp.path().join("r")).unwrap();
    let opts = TrainOptions {
        stop_after: Some(6),
        ..TrainOptions::resumable()
    };
    train_on_with(
        &cfg.clone().check().unwrap(),
        &data,
        &dir,
        &mut Silent,
        opts,
    )
    .unwrap();
    let p = dir.path.join(CHECKPOINT);
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    match train_on_with(
        &cfg.clone().check().unwrap(),
        &data,
        &dir,
        &mut Silent,
        TrainOptions::resumable(),
    ) {
        Err(e @ TrainError::CorruptRecord { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&p.display().to_string()), "{msg}");
            assert!(msg.contains("delete this checkpoint"), "{msg}");
        }
        Err(other) => panic!("expected a corrupt-record error, got {other}"),
        Ok(_) => panic!("a truncated checkpoint was accepted"),
    }
}
