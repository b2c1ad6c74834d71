//! Crash safety of sweeps, end to end through the CLI binary: a sweep killed
//! with SIGKILL at pseudo-random moments (fixed seed), and at chosen points
//! inside its writes (a checkpoint's temporary file synced but not renamed,
//! half of a record or curve written, a final record written with the lock
//! still held; `ALGOPROG_FAULT`, see `algoprog_train::fault`), and resumed
//! each time, ends with exactly the runs of an uninterrupted sweep, with
//! identical curves, none lost, none trained again after it ended, no lock
//! or temporary file left; an export killed mid-write leaves the previous
//! file (or none) and the next export is whole. A diverging run is marked
//! diverged and the sweep completes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_algoprog");

/// Eight runs of 120 steps with an evaluation (and checkpoint) every 5
/// steps, and one run with an absurd learning rate that diverges.
const STUDY: &str = r#"
name = "kill"
seeds = [0]
eval_interval = 5

[base]
data = { corpus = "embedded", tokenizer = "bpe-512", seq_len = 32, val_tokens = 8192 }
train = { batch_size = 8, eval_batches = 2 }

[[groups]]
name = "scan"
role = "scan"
families = ["modern", "retro"]
widths = [16, 32]
budget = { steps = 120 }
lr = [1e-2]
seeds = [0, 1]

[[groups]]
name = "tune"
role = "tune"
families = ["modern"]
widths = [16]
budget = { steps = 30 }
lr = [30.0]
"#;

fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("algoprog-test-cache")
}

fn sweep(study: &Path, store: &Path, jobs: usize) -> Command {
    let mut c = Command::new(BIN);
    c.args([
        "sweep",
        "run",
        "--quiet",
        "--jobs",
        &jobs.to_string(),
        "--study",
    ])
    .arg(study)
    .arg("--store")
    .arg(store)
    .env("ALGOPROG_CACHE", cache_dir())
    .env("RAYON_NUM_THREADS", "1")
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    c
}

/// Lines of each run's attempts log.
fn attempts(store: &Path) -> BTreeMap<String, usize> {
    std::fs::read_dir(store.join("runs"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let n = std::fs::read_to_string(e.path().join("attempts.log"))
                .map(|t| t.lines().count())
                .unwrap_or(0);
            (e.file_name().to_string_lossy().to_string(), n)
        })
        .collect()
}

/// Attempts of the runs in `ids`.
fn attempts_of<V>(store: &Path, ids: &BTreeMap<String, V>) -> BTreeMap<String, usize> {
    if !store.join("runs").exists() {
        return BTreeMap::new();
    }
    attempts(store)
        .into_iter()
        .filter(|(id, _)| ids.contains_key(id))
        .collect()
}

/// Files of the store's run directories whose names start with `.` (temporary files).
fn tmp_files(store: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(store.join("runs")).unwrap().flatten() {
        for f in std::fs::read_dir(e.path()).unwrap().flatten() {
            if f.file_name().to_string_lossy().starts_with('.') {
                v.push(f.path());
            }
        }
    }
    v
}

fn status(store: &Path) -> String {
    let out = Command::new(BIN)
        .args(["sweep", "status", "--all", "--store"])
        .arg(store)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// run id → (status, curve.csv bytes) for every run directory with a record.
fn runs(store: &Path) -> BTreeMap<String, (String, Vec<u8>)> {
    let mut m = BTreeMap::new();
    // No store yet (a sweep killed before making it): no runs.
    for e in std::fs::read_dir(store.join("runs")).into_iter().flatten() {
        let e = e.unwrap();
        let id = e.file_name().to_string_lossy().to_string();
        let Ok(rec) = std::fs::read_to_string(e.path().join("run.json")) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&rec).expect("run.json is always whole");
        let status = v["status"].as_str().unwrap().to_string();
        let curve = std::fs::read(e.path().join("curve.csv")).unwrap_or_default();
        m.insert(id, (status, curve));
    }
    m
}

/// Deterministic pseudo-random numbers (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn sweep_killed_repeatedly_resumes_to_the_same_runs_and_curves() {
    let tmp = tempfile::tempdir().unwrap();
    let study = tmp.path().join("kill.toml");
    std::fs::write(&study, STUDY).unwrap();

    // Reference: one uninterrupted sweep (two jobs, as below; runs are single-threaded, so
    // the job count does not change their numbers).
    let reference = tmp.path().join("reference");
    let clock = std::time::Instant::now();
    let out = sweep(&study, &reference, 2).output().unwrap();
    let full_ms = clock.elapsed().as_millis() as u64;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = runs(&reference);
    assert_eq!(want.len(), 9, "8 scan runs + 1 tune run");
    assert_eq!(want.values().filter(|(s, _)| s == "finished").count(), 8);
    assert_eq!(want.values().filter(|(s, _)| s == "diverged").count(), 1);
    let st = status(&reference);
    assert!(
        st.contains(
            "9 runs: 8 done, 1 diverged, 0 running, 0 interrupted, 0 failed, 0 corrupt, 0 pending"
        ),
        "{st}"
    );
    assert!(
        st.contains("diverged") && st.contains("modern-d16-lr3e1-s0"),
        "{st}"
    );

    // The same study, killed with SIGKILL five times at pseudo-random moments, two runs at a time.
    let store = tmp.path().join("killed");
    let mut rng = Rng(0x5EED_2026);
    let mut finished_before: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut kills_mid_run = 0;
    // Kills inside the writes themselves, at chosen passes: each must fire (the process dies by
    // SIGKILL), and leave what a resumed sweep completes.
    let mut orphans_seen = 0;
    for (site, n) in [
        ("checkpoint-tmp", 3),
        ("write-half", 4),
        ("ended-locked", 1),
        ("checkpoint-tmp", 11),
        ("write-half", 13),
    ] {
        let ended_before: BTreeMap<String, usize> = {
            let now = runs(&store);
            attempts(&store)
                .into_iter()
                .filter(|(id, _)| now.get(id).is_some_and(|(s, _)| s != "running"))
                .collect()
        };
        let out = sweep(&study, &store, 2)
            .env("ALGOPROG_FAULT", format!("{site}:{n}"))
            .output()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(9),
            "{site}:{n} did not fire: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        if site != "ended-locked" {
            orphans_seen += tmp_files(&store).len();
        }
        let now = attempts(&store);
        for (id, k) in &ended_before {
            assert_eq!(
                now[id], *k,
                "{site}:{n}: the ended run {id} was started again"
            );
        }
        for (id, (s, curve)) in runs(&store) {
            if s == "finished" {
                finished_before.entry(id).or_insert(curve);
            }
        }
    }
    assert!(
        orphans_seen >= 4,
        "kills inside writes leave temporary files ({orphans_seen})"
    );
    for round in 0..5 {
        let ended_attempts: BTreeMap<String, usize> = attempts_of(&store, &finished_before);
        let mut child = sweep(&study, &store, 2).spawn().unwrap();
        // Kill somewhere in the first 10–50% of a full sweep's time, so every round lands
        // before the (shrinking) remaining work is done.
        let wait_ms = full_ms / 10 + rng.next() % (full_ms * 2 / 5).max(1);
        std::thread::sleep(Duration::from_millis(wait_ms));
        let exited = child.try_wait().unwrap().is_some();
        if !exited {
            child.kill().unwrap(); // SIGKILL on Unix
        }
        child.wait().unwrap();
        assert_eq!(
            attempts_of(&store, &finished_before),
            ended_attempts,
            "round {round}: a finished run was started again"
        );
        let now = runs(&store);
        // Runs finished before this kill are untouched by it and by later rounds.
        for (id, curve) in &finished_before {
            assert_eq!(
                now[id].0, "finished",
                "round {round}: {id} lost its finished state"
            );
            assert_eq!(
                &now[id].1, curve,
                "round {round}: curve of finished {id} changed"
            );
        }
        for (id, (s, curve)) in &now {
            if s == "finished" {
                finished_before.insert(id.clone(), curve.clone());
            } else if s == "running" {
                kills_mid_run += 1;
            }
        }
    }
    assert!(
        kills_mid_run > 0,
        "no kill landed in the middle of a run; the test exercised nothing"
    );
    let out = sweep(&study, &store, 2).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = runs(&store);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "same set of runs, none lost or extra"
    );
    for (id, (s, curve)) in &want {
        assert_eq!(&got[id].0, s, "{id}: status");
        assert_eq!(
            &got[id].1, curve,
            "{id}: curve differs from the uninterrupted sweep"
        );
        let dir = store.join("runs").join(id);
        let leftovers: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|n| {
                n.starts_with("lock") || n.starts_with('.') || n == "checkpoint.safetensors"
            })
            .collect();
        assert!(
            leftovers.is_empty(),
            "{id}: left after the run ended: {leftovers:?}"
        );
    }
    for (id, curve) in &finished_before {
        assert_eq!(
            &got[id].1, curve,
            "{id} finished before a kill and was changed afterwards"
        );
    }
    // A further invocation trains nothing.
    let out = sweep(&study, &store, 1).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("0 trained, 0 diverged, 9 already done"),
        "{text}"
    );

    // Export, killed half-way through writing its file: the earlier export stays whole, and the
    // next export removes the orphan and writes the same bytes.
    let csv = tmp.path().join("runs.csv");
    let export = |fault: Option<&str>| {
        let mut c = Command::new(BIN);
        c.args(["sweep", "export", "--store"])
            .arg(&store)
            .arg("--out")
            .arg(&csv);
        if let Some(f) = fault {
            c.env("ALGOPROG_FAULT", f);
        }
        c.output().unwrap()
    };
    let reference_csv = tmp.path().join("reference.csv");
    let o = Command::new(BIN)
        .args(["sweep", "export", "--store"])
        .arg(&reference)
        .arg("--out")
        .arg(&reference_csv)
        .output()
        .unwrap();
    assert!(o.status.success());
    let whole = std::fs::read(&reference_csv).unwrap();
    use std::os::unix::process::ExitStatusExt;
    for round in 0..3 {
        let o = export(Some("write-half:1"));
        assert_eq!(o.status.signal(), Some(9), "the export was not killed");
        let orphans: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".runs.csv.tmp"))
            .collect();
        assert_eq!(
            orphans.len(),
            1,
            "round {round}: the killed export's half-written temporary file"
        );
        match std::fs::read(&csv) {
            Ok(b) => assert_eq!(
                b, whole,
                "round {round}: a kill mid-export changed the previous export"
            ),
            Err(_) => assert_eq!(round, 0, "the export vanished"),
        }
        if round > 0 {
            continue;
        }
        let o = export(None);
        assert!(o.status.success());
        assert_eq!(
            std::fs::read(&csv).unwrap(),
            whole,
            "export of the killed-and-resumed store equals the reference's"
        );
        assert!(std::fs::read_dir(tmp.path())
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().starts_with(".runs.csv.tmp")));
    }
}

#[test]
fn corrupt_record_is_reported_with_its_path_and_the_sweep_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let study = tmp.path().join("s.toml");
    let small = STUDY
        .replace("widths = [16, 32]", "widths = [16]")
        .replace("seeds = [0, 1]", "seeds = [0]");
    std::fs::write(&study, &small).unwrap();
    let store = tmp.path().join("store");
    let out = sweep(&study, &store, 1).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: Vec<String> = runs(&store).keys().cloned().collect();
    assert_eq!(ids.len(), 3);
    let bad = store.join("runs").join(&ids[0]).join("run.json");
    let text = std::fs::read_to_string(&bad).unwrap();
    std::fs::write(&bad, &text[..text.len() / 3]).unwrap();
    let st = status(&store);
    assert!(st.contains("1 corrupt"), "{st}");
    assert!(
        st.contains(&bad.display().to_string()),
        "the corrupt file's path is shown: {st}"
    );
    // A sweep over a store with a corrupt run reports it, names the path, and fails.
    let out = sweep(&study, &store, 1).output().unwrap();
    assert!(!out.status.success());
    let err =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        err.contains(&bad.display().to_string()) && err.contains("delete"),
        "{err}"
    );
}

#[test]
fn wrong_study_key_names_the_key_and_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let study = tmp.path().join("bad.toml");
    std::fs::write(
        &study,
        STUDY.replace("widths = [16, 32]", "width = [16, 32]"),
    )
    .unwrap();
    let out = sweep(&study, &tmp.path().join("s"), 1).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("groups[0]") && err.contains("width"),
        "{err}"
    );
    assert!(err.contains("fix:"), "{err}");
    let out = Command::new(BIN)
        .args(["sweep", "status", "--store"])
        .arg(tmp.path().join("nothing"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("specs.json"));
}
