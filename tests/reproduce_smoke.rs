//! `algoprog reproduce --preset smoke` end to end: the study runs, the
//! report has every section with numbers, the figures exist, the store
//! exports as a tidy CSV, and a second invocation trains nothing.

use std::path::PathBuf;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_algoprog");

fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("algoprog-test-cache")
}

/// The markdown section starting at `heading`, up to the next `## `.
fn section<'a>(md: &'a str, heading: &str) -> &'a str {
    let start = md.find(heading).unwrap_or_else(|| panic!("section `{heading}` missing"));
    let rest = &md[start + heading.len()..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

/// Table rows (lines starting with `| ` that are not the header or rule) of a section.
fn rows(sec: &str) -> Vec<Vec<String>> {
    sec.lines()
        .filter(|l| l.starts_with("| "))
        .skip(1)
        .map(|l| l.trim_matches('|').split(" | ").map(|c| c.trim().to_string()).collect())
        .collect()
}

fn num(s: &str) -> f64 {
    s.parse().unwrap_or_else(|_| panic!("`{s}` is not a number"))
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
    assert!(stdout.contains("25 trained, 1 diverged, 0 already done"), "{stdout}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();

    // Setup and every run.
    let setup = section(&md, "## Setup");
    assert!(setup.contains("25 finished, 1 diverged, 0 not finished"), "{setup}");
    let all = rows(section(&md, "## Runs"));
    assert_eq!(all.len(), 26);
    for r in &all {
        assert_eq!(r[0].len(), 14, "run id `{}` is 12 hex digits in backticks", r[0]);
        if r[9] == "finished" {
            let l = num(&r[10]);
            assert!(l > 2.0 && l < 7.0, "final loss {l} of {}", r[1]);
        }
    }

    // The absurd learning rate diverged and is reported and excluded.
    let div = section(&md, "## Diverged runs");
    assert!(div.contains("modern-d32-lr1e1-s0") && div.contains("diverged at step"), "{div}");
    let tune = rows(section(&md, "## Learning-rate tune"));
    assert_eq!(tune.len(), 3);
    assert!(tune.iter().any(|r| r[3].starts_with("diverged at step")));
    assert_eq!(tune.iter().filter(|r| r[4] == "best").count(), 1);
    let best = tune.iter().find(|r| r[4] == "best").unwrap();
    let others: Vec<f64> = tune.iter().filter(|r| r[4] != "best" && !r[3].starts_with("diverged")).map(|r| num(&r[3])).collect();
    assert!(others.iter().all(|&l| l >= num(&best[3])), "best is the lowest loss");

    // Ablation table: modern, 5 single reverts, retro; each with 2 seeds and a CEG.
    let abl = section(&md, "## Ablation table (Figure 2)");
    let t = rows(abl);
    assert_eq!(t.len(), 7, "{abl}");
    assert_eq!(t[0][0], "modern");
    assert_eq!(num(&t[0][4]), 1.0);
    for r in &t[1..] {
        assert_eq!(r[1], "2/2", "{r:?}");
        let c = num(&r[4]);
        assert!(c > 0.05 && c < 20.0, "CEG {c} of {}", r[0]);
        assert!(r[5].starts_with('['), "bootstrap interval of {}: {}", r[0], r[5]);
        assert_eq!(r[7].matches('`').count(), 4, "two run ids for {}", r[0]);
    }
    assert!(abl.contains("figures/fig2_ceg_bars.png"));

    // Frontiers: a fitted law with a positive exponent for each of the three families.
    let fr = section(&md, "## Frontiers and power-law fits (Figure 1)");
    let t = rows(fr);
    assert_eq!(t.iter().map(|r| r[0].as_str()).collect::<Vec<_>>(), ["modern", "retro", "lstm"]);
    for r in &t {
        let gamma = num(r[3].rsplit("C^−").next().unwrap());
        assert!(gamma > 0.0 && gamma < 1.0, "γ = {gamma} for {}", r[0]);
        assert!(num(&r[4]) > 0.0, "R² of {}", r[0]);
        assert!(r[6].contains('`'), "frontier run ids for {}", r[0]);
    }
    assert!(fr.contains("figures/fig1_frontiers.png"));
    assert!(section(&md, "## Training curves").contains("figures/curves.png"));

    // CEG functions of modern over retro and over the LSTM, extrapolated.
    let f = rows(section(&md, "## CEG functions, extrapolated"));
    assert_eq!(f.len(), 2);
    for r in &f {
        assert!(num(&r[3]) > 0.0, "{r:?}");
    }

    // Kaplan vs Chinchilla: a table over compute with CEGs and the figure.
    let k = section(&md, "## Kaplan vs Chinchilla (Figure 3)");
    let t = rows(k);
    assert_eq!(t.len(), 11);
    assert!(t.iter().all(|r| num(&r[5]) > 0.0));
    assert!(k.contains("γ(Kaplan) = ") && k.contains("figures/fig3_kaplan_chinchilla.png"));

    // Decomposition: the five seams, Transformer over LSTM, and the allocation.
    let d = section(&md, "## Decomposition");
    let t = rows(d);
    assert_eq!(t.len(), 7, "{d}");
    let shares: f64 = t.iter().map(|r| num(r[3].trim_end_matches('%'))).sum();
    assert!((shares - 100.0).abs() < 0.5, "shares sum to {shares}%");
    assert!(d.contains("Total gain"));

    // Every figure in SVG and PNG, non-trivial.
    for stem in ["curves", "fig1_frontiers", "fig2_ceg_bars", "fig3_kaplan_chinchilla", "ceg_functions", "decomposition"] {
        let png = std::fs::read(out.join("figures").join(format!("{stem}.png"))).unwrap();
        assert_eq!(&png[..4], b"\x89PNG", "{stem}.png");
        assert!(png.len() > 5_000, "{stem}.png is {} bytes", png.len());
        let svg = std::fs::read_to_string(out.join("figures").join(format!("{stem}.svg"))).unwrap();
        assert!(svg.contains("<svg"), "{stem}.svg");
    }

    // The tidy CSV: one row per evaluation, config columns, every run.
    let csv = tmp.path().join("runs.csv");
    let o = Command::new(BIN).args(["sweep", "export", "--store"]).arg(out.join("store")).arg("--out").arg(&csv).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    for col in ["run_id", "family", "width", "lr", "seed", "status", "total_params", "step", "flops", "val_loss"] {
        assert!(header.contains(&col), "column {col} in {header:?}");
    }
    let body: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(body.iter().all(|r| r.len() == header.len()));
    let ids: std::collections::BTreeSet<&str> = body.iter().map(|r| r[0]).collect();
    assert_eq!(ids.len(), 25, "every run with an evaluation (the diverged one stopped before its first)");
    let expected_rows: usize = std::fs::read_dir(out.join("store/runs"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path().join("curve.csv")).map(|c| c.lines().count() - 1).unwrap_or(0))
        .sum();
    assert_eq!(body.len(), expected_rows);

    // Reproducing again trains nothing and rewrites the same report.
    let o = run();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("0 trained, 0 diverged, 26 already done"));
    let md2 = std::fs::read_to_string(out.join("report.md")).unwrap();
    let strip = |s: &str| s.lines().filter(|l| !l.contains("this invocation")).collect::<Vec<_>>().join("\n");
    assert_eq!(strip(&md2), strip(&md));
}
