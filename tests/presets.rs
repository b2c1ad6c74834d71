//! The shipped study presets expand in both stages (with a made-up finished
//! tune) into valid runs with the shapes the README promises: the ablation
//! (`quick`: the reverts; `laptop`: the published set) with the tuned rate ±
//! half a decade and enough seeds, scans of
//! modern, retro and the LSTM, and budgets that stay under 4 epochs of the data.

use algoprog_train::study::{tuned_rates, Role, RunSpec, Study, TuneOutcome, TuneStatus};

fn stages(text: &str) -> (Vec<RunSpec>, Vec<RunSpec>) {
    let study = Study::from_toml_str(text).unwrap();
    let first = study.expand().unwrap();
    // A tune whose best rate is 3.16e-3 everywhere.
    let outcomes: Vec<(RunSpec, TuneOutcome)> = first
        .iter()
        .map(|s| {
            let l = 4.0 + (s.config.train.lr.log10() + 2.5).abs();
            (s.clone(), TuneOutcome::Finished(l))
        })
        .collect();
    let all = match tuned_rates(&study, &outcomes).unwrap() {
        TuneStatus::Ready(r) => study.expand_with(&r).unwrap(),
        TuneStatus::Waiting(w) => panic!("{w:?}"),
    };
    // The first stage's runs come first (a run of both stages, such as the
    // tune's run at the tuned rate when the budgets match, is one spec in both groups).
    let ids = |v: &[RunSpec]| v.iter().map(|s| s.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&all[..first.len()]), ids(&first));
    (first, all)
}

fn group(specs: &[RunSpec], role: Role) -> Vec<&RunSpec> {
    specs
        .iter()
        .filter(|s| s.groups.iter().any(|(_, r)| *r == role))
        .collect()
}

fn tokens(s: &RunSpec) -> f64 {
    let per_step = (s.config.train.batch_size * s.config.data.seq_len) as f64;
    match (s.config.train.tokens, s.config.train.steps) {
        (Some(t), _) => t as f64,
        (None, Some(n)) => n as f64 * per_step,
        _ => {
            s.config.train.tokens_per_param.unwrap()
                * s.config.model.param_counts(512).total() as f64
        }
    }
}

fn check(
    text: &str,
    families: usize,
    seeds: usize,
    widths: usize,
    scan_rates: usize,
    decades: f64,
    train_tokens: f64,
) {
    let (first, all) = stages(text);
    assert!(first
        .iter()
        .all(|s| s.groups.iter().all(|(_, r)| *r == Role::Tune)));
    let abl = group(&all, Role::Ablation);
    // families × 3 rates × seeds (modern and retro seed 0 at the tuned rate
    // may be the tune's own runs).
    assert_eq!(abl.len(), families * 3 * seeds);
    let mut lrs: Vec<f64> = abl.iter().map(|s| s.config.train.lr).collect();
    lrs.sort_by(f64::total_cmp);
    lrs.dedup();
    assert_eq!(lrs.len(), 3);
    assert!(
        (lrs[0] * 10f64.powf(0.5) / 3.16e-3 - 1.0).abs() < 1e-9,
        "{lrs:?}"
    );
    let scan = group(&all, Role::Scan);
    for fam in ["modern", "retro", "lstm"] {
        let runs: Vec<&&RunSpec> = scan.iter().filter(|s| s.config.family() == fam).collect();
        // every width at `scan_rates` rates (the tuned one, and 10^±0.5 around it for 3)
        assert_eq!(runs.len(), widths * scan_rates, "{fam}");
        let mut ws: Vec<usize> = runs.iter().map(|s| s.width).collect();
        ws.sort_unstable();
        ws.dedup();
        assert_eq!(ws.len(), widths, "{fam}: widths {ws:?}");
        let c: Vec<f64> = runs
            .iter()
            .map(|s| 6.0 * s.config.model.param_counts(512).total() as f64 * tokens(s))
            .collect();
        let span = (c.iter().cloned().fold(0.0, f64::max)
            / c.iter().cloned().fold(f64::INFINITY, f64::min))
        .log10();
        assert!(span >= decades, "{fam}: {span:.2} decades of compute");
    }
    let most = all.iter().map(tokens).fold(0.0, f64::max);
    assert!(most <= 4.0 * train_tokens, "{most} tokens");
}

#[test]
fn quick_runs_the_reverts_with_two_seeds_at_tuned_rates() {
    // The embedded corpus: 5.4M training tokens with the 512-id BPE; 7
    // families: modern, its five reverts, retro.
    check(
        include_str!("../configs/studies/quick.toml"),
        7,
        2,
        3,
        1,
        1.0,
        5.4e6,
    );
}

#[test]
fn laptop_runs_three_seeds_and_five_widths_over_a_decade_and_a_half() {
    // The library corpus: over 20M training tokens with the 512-id BPE; the
    // published set: modern, 12 one-seam swaps, retro.
    check(
        include_str!("../configs/studies/laptop.toml"),
        14,
        3,
        5,
        3,
        1.5,
        20e6,
    );
    let s = Study::from_toml_str(include_str!("../configs/studies/laptop.toml")).unwrap();
    assert!(s
        .expand()
        .unwrap()
        .iter()
        .all(|r| r.config.data.corpus.kind() == "library"));
}

#[test]
fn smoke_and_paper_still_expand() {
    let (first, all) = stages(include_str!("../configs/studies/smoke.toml"));
    assert_eq!((first.len(), all.len()), (6 + 9, 6 + 9 + 14));
    let s = Study::from_toml_str(include_str!("../configs/studies/paper.toml")).unwrap();
    assert!(!s.expand().unwrap().is_empty());
}
