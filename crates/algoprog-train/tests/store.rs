//! The run store's integrity: an ended run's curve and weights are checked
//! against the checksums in its record, by `state`, `load_runs` and
//! `export_csv`; a tampered checkpoint is refused before it resumes; a run
//! ended by another process between the first look and the claim is not
//! trained again; a study whose data cannot be prepared stops before any run.

use std::path::{Path, PathBuf};

use algoprog_data::Dataset;
use algoprog_train::checkpoint::CHECKPOINT;
use algoprog_train::executor::{Executor, LocalExecutor, QuietSweep};
use algoprog_train::store::{RunState, Store, ATTEMPTS_LOG};
use algoprog_train::study::Study;
use algoprog_train::{
    train_on_with, RunConfig, RunDir, RunStatus, Silent, TrainError, TrainOptions,
};
use candle_core::{Device, Tensor};

fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("algoprog-test-cache")
}

/// Three runs of 12 steps (evaluations at 5, 10, 12) and one that diverges at once.
fn study_text() -> String {
    format!(
        r#"
name = "integrity"
eval_interval = 5
[base]
data = {{ corpus = "embedded", tokenizer = "bpe-512", seq_len = 32, val_tokens = 8192, cache_dir = "{}" }}
train = {{ batch_size = 4, eval_batches = 2 }}
[[groups]]
name = "scan"
role = "scan"
families = ["modern", "retro"]
widths = [16]
budget = {{ steps = 12 }}
lr = [1e-2]
[[groups]]
name = "tune"
role = "tune"
families = ["modern"]
widths = [16]
budget = {{ steps = 12 }}
lr = [3e-3, 1e4]
"#,
        cache_dir().display()
    )
}

fn trained_store(root: &Path) -> (Store, Vec<algoprog_train::study::RunSpec>) {
    let text = study_text();
    let study = Study::from_toml_str(&text).unwrap();
    let (store, specs) = Store::init(root, &text, &study).unwrap();
    let s = LocalExecutor { jobs: 1 }
        .execute(&store, &specs, &QuietSweep)
        .unwrap();
    assert_eq!((s.trained, s.diverged, s.failed), (3, 1, 0));
    (store, specs)
}

fn corrupt_msg(store: &Store, id: &str) -> (PathBuf, String) {
    match store.state(id) {
        RunState::Corrupt { path, problem } => (path, problem),
        other => panic!("expected corrupt, got {other:?}"),
    }
}

#[test]
fn damaged_curves_and_weights_of_ended_runs_are_found_and_named() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, specs) = trained_store(&tmp.path().join("s"));
    let finished: Vec<&str> = specs
        .iter()
        .filter(|s| store.state(&s.id) == RunState::Finished)
        .map(|s| s.id.as_str())
        .collect();
    assert_eq!(finished.len(), 3);
    let diverged = specs
        .iter()
        .find(|s| matches!(store.state(&s.id), RunState::Diverged { .. }))
        .unwrap();
    // The early-diverged run: a header-only curve, which is exactly what its record implies.
    let rec = store.run_dir(&diverged.id).read_record().unwrap();
    assert!(
        rec.diverged_at_step.is_some_and(|s| s <= 5),
        "{:?}",
        rec.diverged_at_step
    );
    let i = rec
        .integrity
        .as_ref()
        .expect("an ended run records checksums");
    assert_eq!((i.curve_rows, i.weights.is_none()), (0, true));
    let rec = store.run_dir(finished[0]).read_record().unwrap();
    let i = rec.integrity.as_ref().unwrap();
    assert_eq!(i.curve_rows, 3, "evaluations at 5, 10 and 12");
    assert_eq!(
        i.curve.bytes,
        std::fs::metadata(store.run_dir(finished[0]).path.join("curve.csv"))
            .unwrap()
            .len()
    );
    assert_eq!(
        i.weights.as_ref().unwrap().bytes,
        std::fs::metadata(store.run_dir(finished[0]).path.join("model.safetensors"))
            .unwrap()
            .len()
    );
    assert_eq!(store.load_runs().unwrap().len(), 4);
    let out = tmp.path().join("all.csv");
    assert_eq!(store.export_csv(&out, false).unwrap().rows, 9);

    let damage = |id: &str, f: &dyn Fn(&Path)| {
        let dir = store.run_dir(id).path;
        let keep = tmp.path().join("keep");
        let _ = std::fs::remove_dir_all(&keep);
        std::fs::create_dir_all(&keep).unwrap();
        for n in ["curve.csv", "model.safetensors", "run.json"] {
            std::fs::copy(dir.join(n), keep.join(n)).unwrap();
        }
        f(&dir);
        let (path, problem) = corrupt_msg(&store, id);
        let e = store.load_runs().unwrap_err().to_string();
        assert!(
            e.contains(id) && e.contains(&dir.display().to_string()) && e.contains("fix:"),
            "{e}"
        );
        let e = store
            .export_csv(&tmp.path().join("x.csv"), true)
            .unwrap_err()
            .to_string();
        assert!(e.contains(id), "{e}");
        assert!(
            !tmp.path().join("x.csv").exists(),
            "no export with a damaged run"
        );
        for n in ["curve.csv", "model.safetensors", "run.json"] {
            std::fs::copy(keep.join(n), dir.join(n)).unwrap();
        }
        assert_eq!(store.state(id), RunState::Finished);
        (path, problem)
    };
    let curve = |d: &Path| d.join("curve.csv");
    let (p, why) = damage(finished[0], &|d| std::fs::remove_file(curve(d)).unwrap());
    assert!(p.ends_with("curve.csv") && why.contains("missing"), "{why}");
    // Cut at a row boundary: still a well-formed CSV, one row short.
    let (_, why) = damage(finished[1], &|d| {
        let t = std::fs::read_to_string(curve(d)).unwrap();
        let cut: Vec<&str> = t.lines().take(3).collect();
        std::fs::write(curve(d), cut.join("\n") + "\n").unwrap();
    });
    assert!(why.contains("bytes") && why.contains("cut"), "{why}");
    let (_, why) = damage(finished[2], &|d| {
        let mut b = std::fs::read(curve(d)).unwrap();
        let n = b.len();
        b[n - 3] = 0xff;
        std::fs::write(curve(d), b).unwrap();
    });
    assert!(why.contains("sha256"), "{why}");
    let (p, why) = damage(finished[0], &|d| {
        let w = d.join("model.safetensors");
        let b = std::fs::read(&w).unwrap();
        std::fs::write(&w, &b[..b.len() - 100]).unwrap();
    });
    assert!(
        p.ends_with("model.safetensors") && why.contains("bytes"),
        "{why}"
    );
    // Records written before checksums existed: the rows the step count implies are still checked,
    // and the bytes must be UTF-8.
    let legacy = |d: &Path| {
        let r = d.join("run.json");
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&r).unwrap()).unwrap();
        v.as_object_mut().unwrap().remove("integrity");
        std::fs::write(&r, serde_json::to_string(&v).unwrap()).unwrap();
    };
    let (_, why) = damage(finished[1], &|d| {
        legacy(d);
        let t = std::fs::read_to_string(curve(d)).unwrap();
        let cut: Vec<&str> = t.lines().take(2).collect();
        std::fs::write(curve(d), cut.join("\n") + "\n").unwrap();
    });
    assert!(
        why.contains("1 evaluation rows") && why.contains("has 3 (last at step 12)"),
        "{why}"
    );
    let (_, why) = damage(finished[2], &|d| {
        legacy(d);
        let mut b = std::fs::read(curve(d)).unwrap();
        b[10] = 0xfe;
        std::fs::write(curve(d), b).unwrap();
    });
    assert!(why.contains("not UTF-8"), "{why}");
    // Undamaged again: all four runs load and export whole.
    assert_eq!(store.export_csv(&out, false).unwrap().rows, 9);
}

#[test]
fn export_refuses_a_store_with_runs_that_have_not_ended_unless_partial() {
    let tmp = tempfile::tempdir().unwrap();
    let text = study_text();
    let study = Study::from_toml_str(&text).unwrap();
    let (store, specs) = Store::init(tmp.path().join("s"), &text, &study).unwrap();
    LocalExecutor { jobs: 1 }
        .execute(&store, &specs[..2], &QuietSweep)
        .unwrap();
    let out = tmp.path().join("e.csv");
    let e = store.export_csv(&out, false).unwrap_err().to_string();
    assert!(
        e.contains("2 of the store's 4 runs have not ended") && e.contains("--partial"),
        "{e}"
    );
    assert!(!out.exists());
    let s = store.export_csv(&out, true).unwrap();
    assert_eq!((s.rows, s.runs, s.unended), (6, 4, 2));
}

fn small_config() -> RunConfig {
    RunConfig::from_toml_str(&format!(
        r#"
name = "ckpt"
preset = "modern"
[model]
d_model = 16
[data]
tokenizer = "bpe-512"
seq_len = 32
val_tokens = 8192
cache_dir = "{}"
[train]
lr = 3e-3
batch_size = 4
steps = 20
eval_interval = 5
eval_batches = 2
"#,
        cache_dir().display()
    ))
    .unwrap()
}

/// Rewrite one tensor of a checkpoint file.
fn tamper(path: &Path, key: &str, t: Tensor) {
    let mut map = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    map.insert(key.to_string(), t);
    candle_core::safetensors::save(&map, path).unwrap();
}

#[test]
fn a_tampered_checkpoint_is_refused_before_resuming() {
    let cfg = small_config();
    let data = Dataset::prepare(&cfg.data).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = RunDir::create(tmp.path().join("r")).unwrap();
    let stop = TrainOptions {
        stop_after: Some(12),
        ..TrainOptions::resumable()
    };
    train_on_with(
        &cfg.clone().check().unwrap(),
        &data,
        &dir,
        &mut Silent,
        stop,
    )
    .unwrap();
    let ck = dir.path.join(CHECKPOINT);
    let good = std::fs::read(&ck).unwrap();
    let cases: Vec<(&str, Tensor, &str)> = vec![
        (
            "state/step",
            Tensor::new(&[1e15f64], &Device::Cpu).unwrap(),
            "outside the run's 1..=20",
        ),
        (
            "state/step",
            Tensor::new(&[-5f64], &Device::Cpu).unwrap(),
            "not a whole number",
        ),
        (
            "state/step",
            Tensor::new(&[7f64], &Device::Cpu).unwrap(),
            "not an evaluation step",
        ),
        (
            "state/step",
            Tensor::new(&[5f64], &Device::Cpu).unwrap(),
            "state/curve has 2 evaluations",
        ),
        (
            "state/run_id",
            Tensor::new(b"0123456789ab".as_slice(), &Device::Cpu).unwrap(),
            "belongs to run 0123456789ab",
        ),
        (
            "state/wall_seconds",
            Tensor::new(&[f64::NAN], &Device::Cpu).unwrap(),
            "wall_seconds",
        ),
    ];
    for (key, t, want) in cases {
        std::fs::write(&ck, &good).unwrap();
        tamper(&ck, key, t);
        match train_on_with(
            &cfg.clone().check().unwrap(),
            &data,
            &dir,
            &mut Silent,
            TrainOptions::resumable(),
        ) {
            Err(e @ TrainError::CorruptRecord { .. }) => {
                let m = e.to_string();
                assert!(
                    m.contains(want)
                        && m.contains(&ck.display().to_string())
                        && m.contains("delete this checkpoint"),
                    "{key}: {m}"
                );
            }
            Err(e) => panic!("{key}: expected a corrupt checkpoint, got {e}"),
            Ok(o) => panic!(
                "{key}: a tampered checkpoint was accepted ({:?} after {} steps)",
                o.record.status, o.record.steps_done
            ),
        }
        assert_eq!(
            dir.read_record().unwrap().status,
            RunStatus::Running,
            "{key}: nothing recorded as finished"
        );
    }
    // The untouched checkpoint resumes to the end.
    std::fs::write(&ck, &good).unwrap();
    let o = train_on_with(
        &cfg.clone().check().unwrap(),
        &data,
        &dir,
        &mut Silent,
        TrainOptions::resumable(),
    )
    .unwrap();
    assert_eq!(
        (o.record.status, o.record.steps_done, o.curve.len()),
        (RunStatus::Finished, 20, 4)
    );
}

#[test]
fn every_run_records_one_attempt_and_a_second_sweep_starts_none() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, specs) = trained_store(&tmp.path().join("s"));
    let s = LocalExecutor { jobs: 2 }
        .execute(&store, &specs, &QuietSweep)
        .unwrap();
    assert_eq!((s.trained, s.diverged, s.skipped), (0, 0, 4));
    for sp in &specs {
        let log = std::fs::read_to_string(store.run_dir(&sp.id).path.join(ATTEMPTS_LOG)).unwrap();
        assert_eq!(log.lines().count(), 1, "{}: {log}", sp.id);
        assert!(log.trim_end().ends_with(" start"), "{log}");
        let locks: Vec<_> = std::fs::read_dir(store.run_dir(&sp.id).path)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("lock"))
            .collect();
        assert!(locks.is_empty(), "an ended run keeps no lock");
    }
}

#[test]
fn a_study_whose_data_cannot_be_prepared_starts_no_run() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-corpus");
    let text = study_text().replace(
        "corpus = \"embedded\"",
        &format!(
            "corpus = {{ dir = {{ path = \"{}\" }} }}",
            missing.display()
        ),
    );
    let study = Study::from_toml_str(&text).unwrap();
    let (store, specs) = Store::init(tmp.path().join("s"), &text, &study).unwrap();
    let e = LocalExecutor { jobs: 2 }
        .execute(&store, &specs, &QuietSweep)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("of the 4 runs still to train cannot be prepared, so no run was started"),
        "{e}"
    );
    assert!(
        e.contains("no-such-corpus") && e.contains("local corpus"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_dir(store.root.join("runs")).unwrap().count(),
        0,
        "no run directory was made"
    );

    // C4 offline with an empty hf-hub cache (what a machine without network has): one error, no run.
    let hub = tmp.path().join("empty-hub");
    let text = study_text().replace(
        "corpus = \"embedded\", tokenizer = \"bpe-512\"",
        &format!(
            "corpus = {{ c4 = {{ offline = true, hub_cache = \"{}\" }} }}, tokenizer = \"gpt2\"",
            hub.display()
        ),
    );
    let study = Study::from_toml_str(&text).unwrap();
    let (store, specs) = Store::init(tmp.path().join("c4"), &text, &study).unwrap();
    let e = LocalExecutor { jobs: 2 }
        .execute(&store, &specs, &QuietSweep)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("the data of 4 of the 4 runs")
            && e.contains("hf-hub cache")
            && e.contains("local corpus"),
        "{e}"
    );
    assert_eq!(e.matches("fix:").count(), 1, "one message, one fix: {e}");
    assert_eq!(
        std::fs::read_dir(store.root.join("runs")).unwrap().count(),
        0
    );
}
