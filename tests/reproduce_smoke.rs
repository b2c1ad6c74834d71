//! `algoprog reproduce --preset smoke` end to end: the study runs; the report
//! has every section, flags the toy runs as plateau runs and refuses a
//! threshold instead of printing CEGs; the store exports as a tidy CSV, which
//! `algoprog report` reads under another framework's column names; a second
//! invocation trains nothing; `--report-only` on a missing store says so and
//! creates nothing.

use std::path::PathBuf;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_algoprog");

fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("algoprog-test-cache")
}

/// The markdown section starting at `heading`, up to the next `## `.
fn section<'a>(md: &'a str, heading: &str) -> &'a str {
    let start = md
        .find(heading)
        .unwrap_or_else(|| panic!("section `{heading}` missing"));
    let rest = &md[start + heading.len()..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

/// Table rows (lines starting with `| ` that are not the header or rule) of a section.
fn rows(sec: &str) -> Vec<Vec<String>> {
    sec.lines()
        .filter(|l| l.starts_with("| "))
        .skip(1)
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect()
}

fn num(s: &str) -> f64 {
    s.parse()
        .unwrap_or_else(|_| panic!("`{s}` is not a number"))
}

#[test]
fn smoke_preset_writes_a_complete_report() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("smoke");
    let run = || {
        Command::new(BIN)
            .args(["reproduce", "--preset", "smoke", "--quiet", "--out"])
            .arg(&out)
            .env("ALGOPROG_CACHE", cache_dir())
            .output()
            .unwrap()
    };
    let o = run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("27 trained, 2 diverged, 0 already done"),
        "{stdout}"
    );
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();

    // Setup and every run.
    let setup = section(&md, "## Setup");
    assert!(
        setup.contains("27 finished, 2 diverged, 0 not finished"),
        "{setup}"
    );
    assert!(
        setup.contains("threshold auto; plateau margin 0.5 nats"),
        "the study's [analysis] settings: {setup}"
    );
    let all = rows(section(&md, "## Runs"));
    assert_eq!(all.len(), 29);
    for r in &all {
        assert_eq!(
            r[0].len(),
            14,
            "run id `{}` is 12 hex digits in backticks",
            r[0]
        );
        if r[10] == "finished" {
            let l = num(&r[11]);
            assert!(l > 2.0 && l < 7.0, "final loss {l} of {}", r[1]);
        }
    }

    // The absurd learning rate diverged before its first evaluation: kept as
    // "diverged, no points". Runs of 16 steps never leave the unigram
    // plateau: each is flagged by name and no CEG is printed.
    let left = section(&md, "## Runs left out");
    assert!(
        left.contains("modern-d32-lr1e1-s0: diverged, no points"),
        "{left}"
    );
    assert_eq!(
        left.matches("needs < ").count(),
        27,
        "every finished run is a plateau run: {left}"
    );
    let tune = rows(section(&md, "## Learning-rate tune"));
    assert_eq!(tune.len(), 6);
    assert_eq!(tune.iter().filter(|r| r[3] == "diverged").count(), 2);
    assert_eq!(tune.iter().filter(|r| r[4] == "best").count(), 2);
    let abl = section(&md, "## Ablation table (Figure 2)");
    assert!(
        abl.contains("No CEG is reported: `auto` found no threshold")
            && abl.contains("modern-retro_norm-d32"),
        "{abl}"
    );
    assert!(
        rows(abl).is_empty(),
        "no numbers without a threshold: {abl}"
    );
    assert!(section(&md, "## Combination test").contains("Needs the ablation multipliers"));
    let fr = rows(section(&md, "## Frontiers and power-law fits (Figure 1)"));
    assert_eq!(fr.len(), 3);
    assert!(fr.iter().all(|r| r[9].starts_with("not fitted")), "{fr:?}");
    assert!(section(&md, "## Training curves").contains("figures/curves.png"));

    // Kaplan vs Chinchilla under the published law (the scan is too small for its own).
    let k = section(&md, "## Kaplan vs Chinchilla (Figure 3)");
    let t = rows(k);
    assert_eq!(t.len(), 11);
    assert!(t.iter().all(|r| num(&r[5]) > 0.0));
    assert!(k.contains("figures/fig3_kaplan_chinchilla.png"));
    let r = rows(section(&md, "## Reference dependence"));
    assert_eq!(
        r.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(),
        ["lstm", "kaplan_transformer", "dense_transformer"]
    );
    assert_eq!(r[2][3], "+0.00%", "a scale-invariant gain does not grow");

    // Published vs this study: every row, "not measured" with the reason where the study cannot say.
    let p = rows(section(&md, "## Published vs this study"));
    assert!(p.len() >= 12, "{p:?}");
    assert!(p
        .iter()
        .filter(|r| r[0].contains("modern-retro_"))
        .all(|r| r[2] == "not measured" && r[4].contains("no threshold")));

    // Figures drawn, in SVG and PNG, non-trivial.
    for stem in ["curves", "fig3_kaplan_chinchilla"] {
        let png = std::fs::read(out.join("figures").join(format!("{stem}.png"))).unwrap();
        assert_eq!(&png[..4], b"\x89PNG", "{stem}.png");
        assert!(png.len() > 5_000, "{stem}.png is {} bytes", png.len());
        let svg = std::fs::read_to_string(out.join("figures").join(format!("{stem}.svg"))).unwrap();
        assert!(svg.contains("<svg"), "{stem}.svg");
    }

    // The tidy CSV: one row per evaluation, config columns, every run.
    let csv = tmp.path().join("runs.csv");
    let o = Command::new(BIN)
        .args(["sweep", "export", "--store"])
        .arg(out.join("store"))
        .arg("--out")
        .arg(&csv)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    for col in [
        "run_id",
        "family",
        "width",
        "lr",
        "seed",
        "status",
        "total_params",
        "step",
        "flops",
        "val_loss",
    ] {
        assert!(header.contains(&col), "column {col} in {header:?}");
    }
    let body: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(body.iter().all(|r| r.len() == header.len()));
    let ids: std::collections::BTreeSet<&str> = body.iter().map(|r| r[0]).collect();
    assert_eq!(
        ids.len(),
        27,
        "every run with an evaluation (the diverged one stopped before its first)"
    );
    let expected_rows: usize = std::fs::read_dir(out.join("store/runs"))
        .unwrap()
        .map(|e| {
            std::fs::read_to_string(e.unwrap().path().join("curve.csv"))
                .map(|c| c.lines().count() - 1)
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(body.len(), expected_rows);

    // `algoprog report` on that CSV rewritten with another framework's column
    // names. `auto` still refuses (each run's own early plateau is found from
    // its curve), so the settings state a threshold every run reaches; the
    // report computes the table and warns that it sits near the plateau.
    let idx = |c: &str| header.iter().position(|h| *h == c).unwrap();
    let mut foreign = String::from(
        "run_name,global_step,tokens_seen,flops,eval/loss,model_family,n_params,seed\n",
    );
    for r in body
        .iter()
        .filter(|r| r[idx("groups")].contains("ablation"))
    {
        let f = |c: &str| r[idx(c)];
        foreign.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            f("run_id"),
            f("step"),
            f("tokens"),
            f("flops"),
            f("val_loss"),
            f("family"),
            f("total_params"),
            f("seed")
        ));
    }
    let fcsv = tmp.path().join("other_framework.csv");
    std::fs::write(&fcsv, foreign).unwrap();
    let settings = tmp.path().join("analysis.toml");
    std::fs::write(
        &settings,
        "e = \"fit\"\nthreshold = 5.6\ncompute_range = \"all\"\nbootstrap = 100\n",
    )
    .unwrap();
    let rep = tmp.path().join("csv-report");
    let o = Command::new(BIN)
        .args(["report", "--input"])
        .arg(&fcsv)
        .arg("--analysis")
        .arg(&settings)
        .arg("--out")
        .arg(&rep)
        .args([
            "--run-col",
            "run_name",
            "--step-col",
            "global_step",
            "--tokens-col",
            "tokens_seen",
            "--loss-col",
            "eval/loss",
        ])
        .args([
            "--family-col",
            "model_family",
            "--params-col",
            "n_params",
            "--seed-col",
            "seed",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rmd = std::fs::read_to_string(rep.join("report.md")).unwrap();
    let abl = section(&rmd, "## Ablation table (Figure 2)");
    assert!(
        abl.contains("L* = 5.6 nats, stated") && abl.contains("warning"),
        "{abl}"
    );
    let t = rows(abl);
    assert_eq!(t.len(), 7, "modern, five single reverts, retro: {abl}");
    for r in &t[1..] {
        assert_eq!(r[2], "2/2", "{r:?}");
        let c = num(&r[4]);
        assert!(c > 0.05 && c < 20.0, "multiplier {c} of {}", r[0]);
        assert!(
            r[5].starts_with('['),
            "bootstrap interval of {}: {}",
            r[0],
            r[5]
        );
    }
    assert!(rep.join("figures/fig2_ceg_bars.svg").is_file());
    let p = rows(section(&rmd, "## Published vs this study"));
    assert!(
        p.iter()
            .filter(|r| r[0].contains("modern-retro_"))
            .all(|r| num(&r[2]) > 0.0),
        "{p:?}"
    );

    // Reproducing again trains nothing and rewrites the same report.
    let o = run();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 trained, 0 diverged, 29 already done"));
    let md2 = std::fs::read_to_string(out.join("report.md")).unwrap();
    let strip = |s: &str| {
        s.lines()
            .filter(|l| !l.contains("this invocation"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&md2), strip(&md));
}

#[test]
fn report_only_on_a_missing_store_is_a_clear_error_and_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("never-run");
    let o = Command::new(BIN)
        .args(["reproduce", "--preset", "smoke", "--report-only", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("no run store to report on") && e.contains("without --report-only"),
        "{e}"
    );
    assert!(!out.exists(), "nothing created");
}
