//! The run store through the CLI: two sweeps on one store train every run
//! exactly once (training starts counted in each run's attempts log);
//! damaged runs are named with the fix and never exported; `train` neither
//! overwrites a run nor escapes `runs/`; bad studies fail before any data is
//! prepared, once; a damaged `specs.json` is fixed by what its message says.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_algoprog");

fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("algoprog-test-cache")
}

fn cmd(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env("ALGOPROG_CACHE", cache_dir())
        .env("RAYON_NUM_THREADS", "1");
    c
}

fn sweep(study: &Path, store: &Path, jobs: usize) -> Command {
    let mut c = cmd(&["sweep", "run", "--quiet", "--jobs", &jobs.to_string()]);
    c.arg("--study").arg(study).arg("--store").arg(store);
    c
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
}

/// `n_lr` × 2 families × 2 widths short runs (`steps` steps, evaluated at each).
fn runs_of(n_lr: usize, steps: usize) -> String {
    let lrs: Vec<String> = (0..n_lr)
        .map(|i| format!("{:e}", 1e-3 * (1.0 + i as f64)))
        .collect();
    format!(
        r#"
name = "race"
eval_interval = {e}
[base]
data = {{ corpus = "embedded", tokenizer = "bpe-512", seq_len = 16, val_tokens = 4096 }}
train = {{ batch_size = 2, eval_batches = 1 }}
[[groups]]
name = "scan"
role = "scan"
families = ["modern", "retro"]
widths = [16, 32]
budget = {{ steps = {steps} }}
lr = [{}]
"#,
        lrs.join(", "),
        e = steps.min(2)
    )
}

fn many_runs(n_lr: usize) -> String {
    runs_of(n_lr, 4)
}

/// run id → lines of its attempts log.
fn attempts(store: &Path) -> Vec<(String, Vec<String>)> {
    let mut v: Vec<(String, Vec<String>)> = std::fs::read_dir(store.join("runs"))
        .unwrap()
        .flatten()
        .map(|e| {
            let log = std::fs::read_to_string(e.path().join("attempts.log")).unwrap_or_default();
            (
                e.file_name().to_string_lossy().to_string(),
                log.lines().map(String::from).collect(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn two_sweeps_on_one_store_train_every_run_exactly_once() {
    // 48 one-step runs, two processes with two jobs each: a run ends within milliseconds of
    // being claimed, so the other process often looks at it just as it ends. (Before the state
    // was read again under the claim, this setup trained 3 runs twice in 6 rounds.)
    let tmp = tempfile::tempdir().unwrap();
    let study = tmp.path().join("race.toml");
    std::fs::write(&study, runs_of(12, 1)).unwrap();
    // Prepare the data once so both processes start training at the same moment.
    let o = sweep(&study, &tmp.path().join("warm"), 1)
        .arg("--executor")
        .arg("slurm")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let trained_by = |o: &Output| -> usize {
        let t = text(o);
        let n = t
            .split("this invocation: ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .unwrap_or_else(|| panic!("no summary in {t}"));
        n.parse().unwrap()
    };
    let (mut by_a, mut by_b) = (0, 0);
    for round in 0..6 {
        let store = tmp.path().join(format!("s{round}"));
        let a = sweep(&study, &store, 2)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let b = sweep(&study, &store, 2)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        assert!(
            a.status.success() && b.status.success(),
            "{}\n{}",
            text(&a),
            text(&b)
        );
        // Every run trained by exactly one of the two processes.
        assert_eq!(
            trained_by(&a) + trained_by(&b),
            48,
            "round {round}:\n{}\n{}",
            text(&a),
            text(&b)
        );
        by_a += trained_by(&a);
        by_b += trained_by(&b);
        let runs = attempts(&store);
        assert_eq!(runs.len(), 48, "round {round}");
        for (id, lines) in &runs {
            assert_eq!(
                lines.len(),
                1,
                "round {round}: run {id} was started {} times: {lines:?}",
                lines.len()
            );
            assert!(lines[0].ends_with(" start"), "{lines:?}");
        }
        let st = cmd(&["sweep", "status", "--store"])
            .arg(&store)
            .output()
            .unwrap();
        assert!(
            text(&st).contains("48 runs: 48 done, 0 diverged, 0 running"),
            "{}",
            text(&st)
        );
    }
    // Both processes trained runs of the same stores (else the test raced nothing).
    assert!(by_a > 0 && by_b > 0, "{by_a} / {by_b}");
}

#[test]
fn damaged_runs_are_named_in_status_and_never_exported() {
    let tmp = tempfile::tempdir().unwrap();
    let study = tmp.path().join("s.toml");
    std::fs::write(&study, many_runs(1)).unwrap();
    let store = tmp.path().join("store");
    let o = sweep(&study, &store, 2).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let csv = tmp.path().join("all.csv");
    let o = cmd(&["sweep", "export", "--store"])
        .arg(&store)
        .arg("--out")
        .arg(&csv)
        .output()
        .unwrap();
    assert!(
        o.status.success() && text(&o).contains("(8 evaluation rows of 4 ended runs)"),
        "{}",
        text(&o)
    );
    let id = attempts(&store)[0].0.clone();
    let run = store.join("runs").join(&id);
    // An orphaned temporary file (a writer killed mid-write) in the finished run.
    let orphan = run.join(".curve.csv.tmp-nohost-1");
    let orphan_here = run.join(format!(".curve.csv.tmp{}", 4_294_000_000u32));
    std::fs::write(&orphan_here, "half").unwrap();
    std::fs::write(&orphan, "half").unwrap();
    let o = sweep(&study, &store, 1).output().unwrap();
    assert!(
        text(&o).contains("0 trained, 0 diverged, 4 already done"),
        "{}",
        text(&o)
    );
    assert!(
        !orphan_here.exists(),
        "the orphan of a dead writer on this host is removed by the next sweep"
    );
    // Weights changed in place (same length): found by `sweep status --verify`, which hashes them.
    let w = run.join("model.safetensors");
    let good = std::fs::read(&w).unwrap();
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 1] ^= 0x55;
    std::fs::write(&w, &bad).unwrap();
    let st = text(
        &cmd(&["sweep", "status", "--store"])
            .arg(&store)
            .output()
            .unwrap(),
    );
    assert!(
        st.contains("4 done"),
        "by length alone the weights look whole: {st}"
    );
    let st = text(
        &cmd(&["sweep", "status", "--verify", "--store"])
            .arg(&store)
            .output()
            .unwrap(),
    );
    assert!(
        st.contains("3 done")
            && st.contains("1 corrupt")
            && st.contains("model.safetensors")
            && st.contains("sha256"),
        "{st}"
    );
    std::fs::write(&w, &good).unwrap();
    // Cut the curve at a row boundary.
    let curve = run.join("curve.csv");
    let t = std::fs::read_to_string(&curve).unwrap();
    std::fs::write(
        &curve,
        t.lines().take(2).collect::<Vec<_>>().join("\n") + "\n",
    )
    .unwrap();
    let st = text(
        &cmd(&["sweep", "status", "--store"])
            .arg(&store)
            .output()
            .unwrap(),
    );
    assert!(st.contains("3 done") && st.contains("1 corrupt"), "{st}");
    assert!(
        st.contains(&curve.display().to_string()) && st.contains(&id) && st.contains("fix: delete"),
        "{st}"
    );
    let before = std::fs::read(&csv).unwrap();
    let o = cmd(&["sweep", "export", "--store"])
        .arg(&store)
        .arg("--out")
        .arg(&csv)
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "export with a damaged run must fail: {}",
        text(&o)
    );
    assert!(text(&o).contains(&id), "{}", text(&o));
    assert_eq!(
        std::fs::read(&csv).unwrap(),
        before,
        "the earlier export is left as it was"
    );
    // A sweep refuses to count it and says how to fix it; doing so retrains it.
    let o = sweep(&study, &store, 1).output().unwrap();
    assert!(
        !o.status.success() && text(&o).contains("fix: delete"),
        "{}",
        text(&o)
    );
    std::fs::remove_dir_all(&run).unwrap();
    let o = sweep(&study, &store, 1).output().unwrap();
    assert!(
        text(&o).contains("1 trained, 0 diverged, 3 already done"),
        "{}",
        text(&o)
    );
    let o = cmd(&["sweep", "export", "--store"])
        .arg(&store)
        .arg("--out")
        .arg(&csv)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(
        std::fs::read(&csv).unwrap(),
        before,
        "retrained, the export is the same as before the damage"
    );
}

const TRAIN: &str = r#"
preset = "modern"
[model]
d_model = 16
[data]
corpus = "embedded"
tokenizer = "bpe-512"
seq_len = 16
val_tokens = 4096
[train]
lr = 1e-2
batch_size = 2
steps = 4
eval_interval = 2
eval_batches = 1
"#;

#[test]
fn train_refuses_an_existing_run_and_keeps_names_inside_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("c.toml");
    std::fs::write(&cfg, format!("name = \"a\"\n{TRAIN}")).unwrap();
    let out = tmp.path().join("out");
    let train = |extra: &[&str]| {
        let mut c = cmd(&["train", "--quiet", "--config"]);
        c.arg(&cfg)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .current_dir(tmp.path());
        c.output().unwrap()
    };
    assert!(train(&[]).status.success());
    let rec = std::fs::read(out.join("run.json")).unwrap();
    let o = train(&["--seed", "7"]);
    assert!(
        !o.status.success()
            && text(&o).contains("already holds a run")
            && text(&o).contains("--overwrite"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read(out.join("run.json")).unwrap(),
        rec,
        "nothing overwritten"
    );
    // With --overwrite: another run replaces it whole; record and weights agree (no stale weights).
    let old_weights = std::fs::read(out.join("model.safetensors")).unwrap();
    std::fs::write(out.join("checkpoint.safetensors"), "stale").unwrap();
    let o = train(&["--overwrite", "--seed", "7"]);
    assert!(o.status.success(), "{}", text(&o));
    let weights = std::fs::read(out.join("model.safetensors")).unwrap();
    assert_ne!(weights, old_weights);
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run.json")).unwrap()).unwrap();
    assert_eq!(rec["seed"], 7);
    assert_eq!(
        rec["integrity"]["weights"]["bytes"].as_u64(),
        Some(weights.len() as u64)
    );
    assert!(
        !out.join("checkpoint.safetensors").exists(),
        "the stale checkpoint was removed"
    );
    // Names are sanitised before they become file names.
    for (name, want) in [("../../X", "_.._X"), ("/abs/path", "_abs_path")] {
        std::fs::write(&cfg, format!("name = \"{name}\"\n{TRAIN}")).unwrap();
        let o = cmd(&["train", "--quiet", "--config"])
            .arg(&cfg)
            .current_dir(tmp.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let made: Vec<String> = std::fs::read_dir(tmp.path().join("runs"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        assert!(
            made.iter().any(|m| m.starts_with(&format!("{want}-"))),
            "{name}: {made:?}"
        );
    }
    assert!(!tmp.path().parent().unwrap().join("X").exists() && !Path::new("/abs/path").exists());
}

#[test]
fn bad_studies_fail_before_data_preparation_with_one_message() {
    let tmp = tempfile::tempdir().unwrap();
    let study = tmp.path().join("s.toml");
    // An empty cache: if data preparation started, the BPE would be trained (and its message shown).
    let fresh = tmp.path().join("cache");
    let run = |text: String| {
        std::fs::write(&study, text).unwrap();
        let o = sweep(&study, &tmp.path().join("store"), 1)
            .env("ALGOPROG_CACHE", &fresh)
            .output()
            .unwrap();
        assert!(!o.status.success());
        text_of(&o)
    };
    fn text_of(o: &Output) -> String {
        text(o)
    }
    let e = run(many_runs(1).replace(
        "eval_batches = 1 }",
        "eval_batches = 1 }\nmodel = { max_seq_len = 8 }",
    ));
    // The message and its fix, each printed once, naming the key.
    assert_eq!(
        e.matches("is shorter than data.seq_len = 16").count(),
        1,
        "{e}"
    );
    assert_eq!(e.matches("raise model.max_seq_len").count(), 1, "{e}");
    let e = run(many_runs(1).replace("train = { batch_size = 2, eval_batches = 1 }", "train = 5"));
    assert!(
        e.contains("base.train") && e.contains("expected a table"),
        "{e}"
    );
    assert!(!fresh.exists(), "no data was prepared");
    assert!(
        !tmp.path().join("store").join("runs").exists(),
        "no store was made"
    );
    // `train` says it once too, and leaves no `running` record.
    let cfg = tmp.path().join("c.toml");
    std::fs::write(&cfg, TRAIN.replace("[data]", "max_seq_len = 8\n[data]")).unwrap();
    let out = tmp.path().join("r");
    let o = cmd(&["train", "--quiet", "--config"])
        .arg(&cfg)
        .arg("--out")
        .arg(&out)
        .env("ALGOPROG_CACHE", &fresh)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert_eq!(
        text(&o)
            .matches("is shorter than data.seq_len = 16")
            .count(),
        1,
        "{}",
        text(&o)
    );
    assert!(!out.join("run.json").exists() && !fresh.exists());
}

#[test]
fn a_damaged_specs_json_is_fixed_by_the_command_its_message_gives() {
    let tmp = tempfile::tempdir().unwrap();
    let study = tmp.path().join("s.toml");
    std::fs::write(&study, many_runs(1)).unwrap();
    let store = tmp.path().join("store");
    assert!(sweep(&study, &store, 2).output().unwrap().status.success());
    let specs = store.join("specs.json");
    let t = std::fs::read_to_string(&specs).unwrap();
    std::fs::write(&specs, &t[..t.len() / 2]).unwrap();
    let o = cmd(&["sweep", "status", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let msg = text(&o);
    let fix = msg
        .split("`algoprog ")
        .nth(1)
        .and_then(|s| s.split('`').next())
        .unwrap_or_else(|| panic!("no command in {msg}"));
    let args: Vec<&str> = fix.split_whitespace().collect();
    let o = cmd(&args).output().unwrap();
    assert!(
        o.status.success(),
        "the suggested `algoprog {fix}` failed: {}",
        text(&o)
    );
    assert!(
        text(&o).contains("0 trained, 0 diverged, 4 already done"),
        "{}",
        text(&o)
    );
    assert_eq!(
        std::fs::read_to_string(&specs).unwrap(),
        t,
        "specs.json rebuilt as it was"
    );
}
