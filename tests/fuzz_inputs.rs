//! Fuzz-style checks (proptest) that hostile inputs get errors, never panics:
//! random CSV rows (numbers, garbage, NaN, negatives, empty cells, missing
//! columns, ragged rows) through the loaders and every analysis entry point
//! behind `algoprog fit` and `algoprog ceg`, and random TOML (known and
//! unknown keys, values of every type and size) through the run-config and
//! study loaders. A sample of the CSVs also goes through the built binary,
//! whose exit status must be 0 or 1 (an error), never a panic or a signal.
//! Case counts are small so the whole file runs in seconds, and the seed is
//! fixed so CI sees the same cases every time; explore further with e.g.
//! `PROPTEST_RNG_SEED=7 PROPTEST_CASES=5000 cargo test --release --test fuzz_inputs`.

use std::path::Path;
use std::process::Command;

use algoprog::ceg::{
    ceg_multipliers, combination_test, compare_allocations, frontier_multipliers,
    multiplier::envelope_multipliers, Allocation, CegFunction, MultiplierOptions, Threshold,
};
use algoprog::scaling::{
    bootstrap_frontier, drop_leading_fraction, families, family_curves, fit_chinchilla,
    fit_frontier, isoflop, load_curves, BootstrapOptions, ChinchillaData, ChinchillaOptions,
    ColumnMap, FitSpace, FrontierOptions, Irreducible, IsoFlopOptions, LoadOptions,
    NonFinitePolicy, PowerLaw, PowerLawOptions, StartGrid, TokensSource,
};
use algoprog::train::study::{nominal_vocab, Study};
use algoprog::train::RunConfig;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

/// `cases` cases from a fixed seed, unless PROPTEST_CASES / PROPTEST_RNG_SEED say otherwise.
fn config(cases: u32) -> Config {
    let mut c = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        c.rng_seed = RngSeed::Fixed(0x616c_676f);
    }
    c.failure_persistence = None;
    c
}

// ---------------------------------------------------------------- CSV inputs

const COLUMNS: &[&str] = &[
    "step", "tokens", "flops", "val_loss", "family", "seed", "params", "run",
];

/// One hostile cell: plain and extreme numbers, NaN/inf, empty, garbage (quotes and commas included).
fn cell() -> impl Strategy<Value = String> {
    prop_oneof![
        (-1e3f64..1e22).prop_map(|x| format!("{x}")),
        (0u64..100_000).prop_map(|x| x.to_string()),
        any::<f64>().prop_map(|x| format!("{x:e}")),
        prop::sample::select(vec![
            "NaN",
            "nan",
            "inf",
            "-inf",
            "",
            "-1",
            "0",
            "-0",
            "1e308",
            "-1e308",
            "1e-320",
            "18446744073709551616",
            "a",
            "b",
            "c",
            " 3.5 ",
            "0x10",
            "1,5",
            "\"\"",
        ])
        .prop_map(String::from),
        "[a-z\", ;]{0,5}",
    ]
}

/// A CSV that is garbage from the start: random header (columns missing, duplicated or unknown), ragged rows.
fn garbage_csv() -> impl Strategy<Value = String> {
    let header = prop::collection::vec(
        prop_oneof![
            prop::sample::select(COLUMNS.to_vec()).prop_map(String::from),
            "[a-z]{1,4}"
        ],
        0..9,
    );
    header
        .prop_flat_map(|h| {
            let width = h.len();
            let row = prop::collection::vec(cell(), width.saturating_sub(1)..=width + 1);
            (Just(h), prop::collection::vec(row, 0..12))
        })
        .prop_map(|(h, rows)| {
            let mut s = h.join(",");
            for r in rows {
                s.push('\n');
                s.push_str(&r.join(","));
            }
            s
        })
}

/// Plausible training curves (a power law in compute per run, with random E, A, γ that may be
/// negative or flat) of which a random share of cells is corrupted: these reach the fits.
fn curves_csv() -> impl Strategy<Value = String> {
    let run = (
        prop::sample::select(vec!["a", "b", "c"]),
        0u64..3,
        prop::sample::select(vec![1e6, 3e6, 1e7, 3e7, 1e8]),
        1usize..10,
        (-1.0f64..4.0, 0.0f64..200.0, -0.2f64..0.5),
    );
    (
        prop::collection::vec(run, 0..8),
        prop::collection::vec((0usize..400, cell()), 0..6),
    )
        .prop_map(|(runs, corrupt)| {
            let mut cells: Vec<Vec<String>> = Vec::new();
            for (i, (fam, seed, n, len, (e, a, g))) in runs.iter().enumerate() {
                for s in 1..=*len {
                    let tokens = s as f64 * 1e6;
                    let c = 6.0 * n * tokens;
                    let loss = e + a * c.powf(-g);
                    cells.push(vec![
                        s.to_string(),
                        tokens.to_string(),
                        c.to_string(),
                        loss.to_string(),
                        fam.to_string(),
                        seed.to_string(),
                        n.to_string(),
                        format!("r{i}"),
                    ]);
                }
            }
            for (k, v) in corrupt {
                if !cells.is_empty() {
                    let r = k % cells.len();
                    let col = (k / cells.len()) % COLUMNS.len();
                    cells[r][col] = v;
                }
            }
            let mut s = COLUMNS.join(",");
            for r in cells {
                s.push('\n');
                s.push_str(&r.join(","));
            }
            s
        })
}

fn column_maps() -> Vec<ColumnMap> {
    let full = ColumnMap {
        params: Some("params".into()),
        family: Some("family".into()),
        seed: Some("seed".into()),
        run: Some("run".into()),
        ..Default::default()
    };
    vec![
        full.clone(),
        ColumnMap {
            run: None,
            step: None,
            ..full
        },
        ColumnMap::default(),
    ]
}

/// Every library entry point behind `algoprog fit` and `algoprog ceg` on the curves in `path`.
/// Errors are fine; a panic fails the property.
fn analyse(path: &Path) {
    let small_grid = ChinchillaOptions {
        grid: StartGrid {
            a: vec![2.0, 6.0],
            b: vec![2.0, 6.0],
            e: vec![0.0],
            alpha: vec![0.3],
            beta: vec![0.3],
        },
        max_iters: 200,
        ..Default::default()
    };
    for cols in column_maps() {
        for non_finite in [NonFinitePolicy::Error, NonFinitePolicy::MarkDiverged] {
            let Ok((curves, _)) = load_curves(
                path,
                &cols,
                &LoadOptions {
                    non_finite,
                    ..Default::default()
                },
            ) else {
                continue;
            };
            let _ = drop_leading_fraction(&curves, 0.333);
            let fo = FrontierOptions::default();
            let mut laws: Vec<(String, PowerLaw)> = Vec::new();
            for (fam, _) in families(&curves) {
                let fc = family_curves(&curves, &fam);
                for irreducible in [
                    Irreducible::Fixed(1.8),
                    Irreducible::Fixed(0.0),
                    Irreducible::Fitted,
                ] {
                    for space in [FitSpace::Linear, FitSpace::Log] {
                        if let Ok(f) =
                            fit_frontier(&fc, &fo, &PowerLawOptions { irreducible, space })
                        {
                            let _ = f.fit.law.compute_at(3.0);
                            if space == FitSpace::Linear && irreducible == Irreducible::Fitted {
                                laws.push((fam.clone(), f.fit.law));
                            }
                        }
                    }
                }
                let b = BootstrapOptions {
                    reps: 8,
                    ..Default::default()
                };
                let _ = bootstrap_frontier(
                    &fc,
                    &fo,
                    &PowerLawOptions {
                        irreducible: Irreducible::Fixed(1.8),
                        space: FitSpace::Log,
                    },
                    &b,
                );
            }
            for tokens in [TokensSource::Column, TokensSource::FromCompute { k: 6.0 }] {
                if let Ok(data) = ChinchillaData::from_curves(&curves, tokens) {
                    if let Ok(fit) = fit_chinchilla(&data, &small_grid) {
                        // the budgets `fit chinchilla` tabulates: the largest compute of the data and 3 decades above
                        let cmax = data
                            .n
                            .iter()
                            .zip(&data.d)
                            .map(|(n, d)| 6.0 * n * d)
                            .fold(0.0, f64::max);
                        for c in [cmax, 1e3 * cmax] {
                            let a = fit.allocation(c, 6.0);
                            assert!(
                                a.n_opt.is_finite()
                                    && a.d_opt.is_finite()
                                    && a.n_opt > 0.0
                                    && a.d_opt > 0.0,
                                "a successful fit gives a finite allocation at {c:e}: {:?} {a:?}",
                                fit.law
                            );
                        }
                        let _ = compare_allocations(
                            &fit.law,
                            Allocation::kaplan(),
                            Allocation::Optimal,
                            1e12,
                            1e25,
                            14,
                            6.0,
                        );
                    }
                }
            }
            let _ = isoflop(&curves, &IsoFlopOptions::default());
            for reference in ["a", "b"] {
                let opts = MultiplierOptions {
                    bootstrap: 16,
                    ..Default::default()
                };
                if let Ok(rep) = ceg_multipliers(&curves, reference, &opts) {
                    let _ = combination_test(&rep, &["b"], "c", 16, 0);
                    let _ = frontier_multipliers(&laws, reference, rep.threshold, opts.direction);
                    let _ = envelope_multipliers(&curves, reference, rep.threshold, opts.direction);
                }
                let fixed = MultiplierOptions {
                    threshold: Threshold::Fixed(3.0),
                    bootstrap: 0,
                    ..Default::default()
                };
                let _ = ceg_multipliers(&curves, reference, &fixed);
            }
            if let [(_, r), (_, n), ..] = laws.as_slice() {
                if let Ok(f) = CegFunction::new(*r, *n) {
                    let _ = f.eval(1e18);
                    let _ = f.local_exponent(1e18);
                    let _ = f.extrapolate(1e25, Some((1e15, 1e19)));
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(config(192))]

    #[test]
    fn garbage_csvs_never_panic_the_analyses(csv in garbage_csv()) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("curves.csv");
        std::fs::write(&p, &csv).unwrap();
        analyse(&p);
    }

    #[test]
    fn corrupted_curves_never_panic_the_analyses(csv in curves_csv()) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("curves.csv");
        std::fs::write(&p, &csv).unwrap();
        analyse(&p);
    }
}

// ---------------------------------------------------------------- the binary on the same CSVs

fn binary_never_panics(csv: &str) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("curves.csv");
    std::fs::write(&p, csv).unwrap();
    let f = p.to_str().unwrap();
    let cols = [
        "--family-col",
        "family",
        "--seed-col",
        "seed",
        "--params-col",
        "params",
        "--run-col",
        "run",
    ];
    let cases: [&[&str]; 6] = [
        &["fit", "frontier", "-i", f, "--nan-as-diverged"],
        &["fit", "isoflop", "-i", f],
        &["fit", "chinchilla", "-i", f, "--prune"],
        &["ceg", "kaplan", "-i", f, "--points", "5"],
        &[
            "ceg",
            "multiplier",
            "-i",
            f,
            "--reference",
            "a",
            "--bootstrap",
            "20",
            "--frontier",
        ],
        &[
            "ceg",
            "function",
            "-i",
            f,
            "--reference",
            "a",
            "--new",
            "b",
            "--irreducible",
            "fit",
        ],
    ];
    for args in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_algoprog"))
            .args(args)
            .args(cols)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        prop_assert!(
            matches!(out.status.code(), Some(0 | 1)) && !err.contains("panicked"),
            "{args:?} on\n{csv}\nexited {:?}: {err}",
            out.status
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(12))]

    #[test]
    fn the_binary_exits_with_an_error_not_a_panic(csv in prop_oneof![garbage_csv(), curves_csv()]) {
        binary_never_panics(&csv)?;
    }
}

// ---------------------------------------------------------------- TOML configs

/// Keys of run configs (and a few studies'), by table, plus unknown ones.
fn key() -> impl Strategy<Value = (Vec<&'static str>, String)> {
    let known = prop::sample::select(vec![
        (vec![], "name"),
        (vec![], "family"),
        (vec![], "preset"),
        (vec![], "seed"),
        (vec![], "device"),
        (vec![], "precision"),
        (vec!["model"], "kind"),
        (vec!["model"], "d_model"),
        (vec!["model"], "n_layers"),
        (vec!["model"], "head_dim"),
        (vec!["model"], "ff_ratio"),
        (vec!["model"], "positional"),
        (vec!["model"], "feed_forward"),
        (vec!["model"], "norm"),
        (vec!["model"], "placement"),
        (vec!["model"], "max_seq_len"),
        (vec!["model"], "hidden"),
        (vec!["model"], "tbptt_len"),
        (vec!["model"], "dropout_input"),
        (vec!["model"], "gated_hidden"),
        (vec!["model"], "init"),
        (vec!["data"], "corpus"),
        (vec!["data"], "tokenizer"),
        (vec!["data"], "seq_len"),
        (vec!["data"], "val_tokens"),
        (vec!["data"], "max_train_tokens"),
        (vec!["data"], "bpe_sample_bytes"),
        (vec!["train"], "lr"),
        (vec!["train"], "batch_size"),
        (vec!["train"], "grad_accum"),
        (vec!["train"], "steps"),
        (vec!["train"], "tokens"),
        (vec!["train"], "tokens_per_param"),
        (vec!["train"], "param_count"),
        (vec!["train"], "grad_clip"),
        (vec!["train"], "eval_interval"),
        (vec!["train"], "eval_batches"),
        (vec!["train"], "divergence_factor"),
        (vec!["train"], "eval_batch_size"),
        (vec!["train", "optimizer"], "name"),
        (vec!["train", "optimizer"], "weight_decay"),
        (vec!["train", "optimizer"], "beta2"),
        (vec!["train", "schedule"], "name"),
        (vec!["train", "schedule"], "warmup_fraction"),
    ]);
    prop_oneof![
        4 => known.prop_map(|(t, k)| (t, k.to_string())),
        1 => (prop::sample::select(vec![vec![], vec!["model"], vec!["train"], vec!["data"]]), "[a-z_]{1,8}"),
    ]
}

/// A TOML value of any type and size, with the extremes that broke things before.
fn value() -> impl Strategy<Value = toml::Value> {
    let leaf = prop_oneof![
        1 => any::<i64>().prop_map(toml::Value::Integer),
        4 => prop::sample::select(vec![
            0i64,
            -1,
            1,
            2,
            3,
            7,
            64,
            128,
            257,
            1 << 20,
            1 << 40,
            i64::MAX,
            1_600_000,
            1_000_000_000_000
        ])
        .prop_map(toml::Value::Integer),
        1 => any::<f64>().prop_map(toml::Value::Float),
        2 => prop::sample::select(vec![
            0.0,
            -0.0,
            1e-3,
            0.5,
            20.0,
            1e300,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -5.0
        ])
        .prop_map(toml::Value::Float),
        2 => prop::sample::select(vec![
            "modern",
            "retro",
            "lstm",
            "transformer",
            "alibi",
            "rotary",
            "none",
            "learned",
            "swiglu",
            "gelu",
            "rms_norm",
            "pre",
            "post",
            "cuda",
            "cuda:7",
            "bf16",
            "gpt2",
            "bpe-300",
            "bpe-1",
            "bpe-99999999999",
            "embedded",
            "adam_w",
            "cosine",
            "total",
            "non_embedding",
            "",
            "../../x",
        ])
        .prop_map(|s| toml::Value::String(s.into())),
        1 => "[a-z0-9_:-]{0,8}".prop_map(toml::Value::String),
        1 => any::<bool>().prop_map(toml::Value::Boolean),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(toml::Value::Array),
            prop::collection::btree_map("[a-z_]{1,6}", inner, 0..3)
                .prop_map(|m| toml::Value::Table(m.into_iter().collect())),
        ]
    })
}

/// The shipped configs with up to four random edits.
fn run_config() -> impl Strategy<Value = String> {
    let base = prop::sample::select(vec![
        include_str!("../configs/modern.toml"),
        include_str!("../configs/retro.toml"),
        include_str!("../configs/lstm.toml"),
        include_str!("../configs/paper-modern.toml"),
    ]);
    (base, prop::collection::vec((key(), value()), 0..4)).prop_filter_map(
        "serialisable",
        |(base, edits)| {
            let mut doc: toml::Table = base.parse().ok()?;
            for ((tables, k), v) in edits {
                let mut t = &mut doc;
                for name in tables {
                    let entry = t
                        .entry(name.to_string())
                        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                    t = match entry {
                        toml::Value::Table(inner) => inner,
                        _ => return None,
                    };
                }
                t.insert(k, v);
            }
            toml::to_string(&doc).ok()
        },
    )
}

/// A resolved config's derived values must not panic either.
fn use_config(c: &RunConfig) {
    let vocab = nominal_vocab(&c.data.tokenizer);
    let params = c.model.param_counts(vocab);
    let steps = c.total_steps(params);
    assert!(steps >= 1);
    let tokens = (steps as u64).checked_mul(
        c.tokens_per_step()
            .expect("validated: tokens per step fits"),
    );
    assert!(
        tokens.is_some(),
        "validated budgets never wrap: {steps} steps"
    );
    let _ = c.model.flops(vocab, c.data.seq_len);
    let _ = c.run_id();
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn random_run_configs_never_panic_the_loader(text in run_config()) {
        if let Ok(c) = RunConfig::from_toml_str(&text) {
            use_config(&c);
        }
    }

    #[test]
    fn random_text_never_panics_the_loaders(text in "[\\[\\]a-z_=\"0-9. \n{},-]{0,120}") {
        if let Ok(c) = RunConfig::from_toml_str(&text) {
            use_config(&c);
        }
        let _ = Study::from_toml_str(&text).map(|s| s.expand());
    }

    #[test]
    fn random_studies_never_panic_the_loader(
        base in prop::sample::select(vec![
            include_str!("../configs/studies/smoke.toml"),
            include_str!("../configs/studies/quick.toml"),
        ]),
        edits in prop::collection::vec((prop::sample::select(vec!["seeds", "widths", "eval_interval", "lr", "budget", "name", "train", "families"]), value()), 0..3),
    ) {
        let Ok(mut doc) = base.parse::<toml::Table>() else { return Ok(()) };
        for (k, v) in edits {
            // top level, and inside the first group when there is one
            if let Some(toml::Value::Array(groups)) = doc.get_mut("groups") {
                if let Some(toml::Value::Table(g)) = groups.first_mut() {
                    g.insert(k.to_string(), v.clone());
                }
            }
            doc.insert(k.to_string(), v);
        }
        let Ok(text) = toml::to_string(&doc) else { return Ok(()) };
        if let Ok(s) = Study::from_toml_str(&text) {
            if let Ok(runs) = s.expand() {
                for r in &runs {
                    use_config(&r.config);
                }
            }
        }
    }
}
