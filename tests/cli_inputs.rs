//! The command line on hostile input: every size flag has a maximum checked
//! before anything is allocated, degenerate analyses are errors (exit 1, no
//! NaN table), errors print each cause once, and a closed stdout pipe ends
//! the process quietly instead of a panic.

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn algoprog() -> Command {
    Command::new(env!("CARGO_BIN_EXE_algoprog"))
}

fn run(args: &[&str]) -> Output {
    algoprog().args(args).output().expect("the binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Two families × two seeds of decreasing loss curves, algoprog's CSV columns plus family and seed.
fn write_family_csv(path: &Path) {
    let mut s = String::from("step,tokens,flops,val_loss,family,seed\n");
    for (fam, speed) in [("a", 1.0), ("b", 1.5)] {
        for seed in 0..2 {
            for step in 1..=20u32 {
                let c = 1e12 * f64::from(step);
                let loss = 2.0 + 30.0 * (c * speed).powf(-0.1) + 0.001 * f64::from(seed);
                s.push_str(&format!("{step},{},{c},{loss},{fam},{seed}\n", step * 1000));
            }
        }
    }
    std::fs::write(path, s).unwrap();
}

#[test]
fn a_closed_stdout_pipe_ends_the_process_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("runs.csv");
    write_family_csv(&csv);
    let cases: [&[&str]; 2] = [
        &[
            "ceg",
            "multiplier",
            "-i",
            csv.to_str().unwrap(),
            "--family-col",
            "family",
            "--seed-col",
            "seed",
            "--reference",
            "a",
            "--bootstrap",
            "50",
        ],
        &["ceg", "kaplan"],
    ];
    for args in cases {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader); // `| head` that has already exited
        let out = algoprog()
            .args(args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            // killed by SIGPIPE, as Unix filters are (never the panic's exit status 101)
            assert_eq!(
                out.status.signal(),
                Some(libc::SIGPIPE),
                "{args:?}: {:?}",
                out.status
            );
        }
    }
}

#[test]
fn a_missing_file_is_reported_once() {
    for args in [
        &["fit", "frontier", "-i", "/nonexistent/curves.csv"][..],
        &[
            "ceg",
            "multiplier",
            "-i",
            "/nonexistent/curves.csv",
            "--reference",
            "a",
        ][..],
        &["train", "-c", "/nonexistent/run.toml"][..],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.matches("No such file").count(), 1, "{args:?}: {err}");
    }
}

#[test]
fn size_flags_above_their_maximum_are_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("runs.csv");
    write_family_csv(&csv);
    let csv = csv.to_str().unwrap();
    let laws = ["--ref-law", "1.8,100,0.1", "--new-law", "1.8,90,0.1"];
    let cases: Vec<(Vec<&str>, &str, &str)> = vec![
        (
            [&["ceg", "function", "--points", "10001"][..], &laws[..]].concat(),
            "--points",
            "maximum 10000",
        ),
        (
            vec![
                "ceg",
                "function",
                "--points",
                "100000000",
                laws[0],
                laws[1],
                laws[2],
                laws[3],
            ],
            "--points",
            "maximum 10000",
        ),
        (
            vec!["ceg", "kaplan", "--points", "1000000000"],
            "--points",
            "maximum 10000",
        ),
        (
            vec![
                "ceg",
                "multiplier",
                "-i",
                csv,
                "--reference",
                "a",
                "--bootstrap",
                "1000000000",
            ],
            "--bootstrap",
            "maximum 100000",
        ),
        (
            vec![
                "ceg",
                "combine",
                "-i",
                csv,
                "--reference",
                "a",
                "--singles",
                "b",
                "--combined",
                "b",
                "--bootstrap",
                "100001",
            ],
            "--bootstrap",
            "maximum 100000",
        ),
        (
            vec!["fit", "frontier", "-i", csv, "--bootstrap", "100001"],
            "--bootstrap",
            "maximum 100000",
        ),
        (
            vec!["fit", "isoflop", "-i", csv, "--budgets", "10001"],
            "--budgets",
            "maximum 10000",
        ),
    ];
    for (args, flag, max) in cases {
        let out = run(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(flag) && err.contains(max), "{args:?}: {err}");
    }
    // the maxima themselves are accepted
    let out = run(&[
        &["ceg", "function", "--points", "10000", "--json"][..],
        &laws[..],
    ]
    .concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rows"].as_array().unwrap().len(), 10000);
}

#[test]
fn a_constant_loss_chinchilla_fit_is_an_error_not_a_nan_table() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("const.csv");
    let mut s = String::from("step,tokens,flops,val_loss,params,run\n");
    for (i, n) in [1e6, 3e6, 1e7].iter().enumerate() {
        for step in 1..=5 {
            let d = f64::from(step) * 1e6;
            s.push_str(&format!("{step},{d},{},3.0,{n},r{i}\n", 6.0 * n * d));
        }
    }
    std::fs::write(&csv, s).unwrap();
    let out = run(&[
        "fit",
        "chinchilla",
        "-i",
        csv.to_str().unwrap(),
        "--params-col",
        "params",
        "--run-col",
        "run",
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("NaN"));
    assert!(
        stderr(&out).contains("every one of the 15 points has the same loss 3"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_context_shorter_than_the_sequences_fails_before_data_preparation_with_one_message() {
    let dir = tempfile::tempdir().unwrap();
    let base = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/modern.toml"))
        .unwrap();
    let cfg = dir.path().join("long.toml");
    std::fs::write(&cfg, base.replace("seq_len = 128", "seq_len = 256")).unwrap();
    let run_dir = dir.path().join("run");
    let out = algoprog()
        .args([
            "train",
            "-c",
            cfg.to_str().unwrap(),
            "--out",
            run_dir.to_str().unwrap(),
            "--quiet",
        ])
        .env("ALGOPROG_CACHE", dir.path().join("cache"))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(
        err.matches("shorter than data.seq_len = 256").count(),
        1,
        "{err}"
    );
    assert!(err.contains("model.max_seq_len"), "{err}");
    assert!(!run_dir.exists(), "no run record is left behind");
    assert!(!dir.path().join("cache").exists(), "no data was prepared");
}

/// The binary allocates through mimalloc (`runtime::MiMalloc`, declared as
/// its global allocator): mimalloc's statistics at exit count the pages its
/// allocations used, which stay empty when mimalloc is only linked in.
#[test]
fn the_binary_allocates_through_mimalloc() {
    let out = algoprog()
        .arg("--help")
        .env("MIMALLOC_SHOW_STATS", "1")
        .output()
        .expect("the binary runs");
    assert!(out.status.success());
    let err = stderr(&out);
    let pages: u64 = err
        .lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("pages") && w.next() == Some(":")).then(|| w.nth(1))?
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no page count in mimalloc's statistics:\n{err}"));
    assert!(pages > 0, "{err}");
}
