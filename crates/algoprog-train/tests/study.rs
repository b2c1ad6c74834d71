//! Study expansion: stable ids, deduplication, budgets, learning-rate grids
//! and rules, errors that name the key; the Slurm array script.

use algoprog_train::executor::slurm_script;
use algoprog_train::study::{paper_lr_grid, Role, Study};
use algoprog_train::TrainError;

const STUDY: &str = r#"
name = "t"
seeds = [0, 1]
eval_interval = 7
[base]
data = { tokenizer = "bpe-512", seq_len = 32 }
train = { batch_size = 4 }

[[groups]]
name = "tune"
role = "tune"
families = ["modern", "retro"]
widths = [32, 64]
budget = { tokens_per_param = 20 }
lr = "paper"
seeds = [0]

[[groups]]
name = "scan"
role = "scan"
families = ["modern", { name = "lstm-clip", preset = "lstm", set = { train = { grad_clip = 0.5 } } }]
widths = [32, 64]
budget = { tokens_per_param = 20 }
lr = { a = -1.0, b = -0.5 }

[[groups]]
name = "kaplan"
role = "scan"
families = ["modern"]
widths = [64]
budget = "kaplan"
lr = [1e-3]
seeds = [0]

[[groups]]
name = "abl"
role = "ablation"
suite = "reverts"
families = ["retro"]
widths = [32]
budget = { steps = 100 }
lr = [1e-2]
"#;

#[test]
fn expansion_counts_ids_and_values() {
    let s = Study::from_toml_str(STUDY).unwrap();
    let specs = s.expand().unwrap();
    // tune 2 fam × 2 widths × 5 lr × 1 seed = 20; scan 2 × 2 × 1 × 2 = 8; kaplan 1; ablation 7 × 2 seeds = 14.
    assert_eq!(specs.len(), 20 + 8 + 1 + 14);
    let ids: std::collections::BTreeSet<&str> = specs.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids.len(), specs.len(), "ids are unique");
    for sp in &specs {
        assert_eq!(
            sp.id,
            sp.config.run_id(),
            "id is the hash of the resolved config"
        );
        assert_eq!(sp.id.len(), 12);
        assert_eq!(sp.config.train.eval_interval, 7);
        assert_eq!(sp.config.data.seq_len, 32);
        assert_eq!(sp.config.train.batch_size, 4);
        let d = match &sp.config.model {
            algoprog_models::ModelConfig::Transformer(t) => t.d_model,
            algoprog_models::ModelConfig::Lstm(l) => l.d_model,
            algoprog_models::ModelConfig::Custom(c) => c.d_model,
        };
        assert_eq!(d, sp.width);
    }
    // Ids are stable across expansions.
    let again: Vec<String> = Study::from_toml_str(STUDY)
        .unwrap()
        .expand()
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(
        again,
        specs.iter().map(|s| s.id.clone()).collect::<Vec<_>>()
    );

    let tune: Vec<_> = specs
        .iter()
        .filter(|s| s.groups.iter().any(|g| g.1 == Role::Tune))
        .collect();
    let lrs: Vec<f64> = tune
        .iter()
        .filter(|s| s.width == 32 && s.config.family() == "modern")
        .map(|s| s.config.train.lr)
        .collect();
    assert_eq!(lrs, paper_lr_grid());
    assert!((paper_lr_grid()[1] - 10f64.powf(-2.5)).abs() < 1e-15);
    assert!((paper_lr_grid()[4] - 0.1).abs() < 1e-15);

    // The lr rule: log10 lr = -1 - 0.5·log10 width.
    let scan64 = specs
        .iter()
        .find(|s| s.config.name == "lstm-clip-d64-lr1.25e-2-s1")
        .expect("named by family, width, lr, seed");
    assert!((scan64.config.train.lr - 0.1 / 8.0).abs() < 1e-12);
    assert_eq!(
        scan64.config.train.grad_clip, 0.5,
        "the family's `set` table applies"
    );
    assert!(matches!(
        scan64.config.model,
        algoprog_models::ModelConfig::Lstm(_)
    ));

    // Kaplan: tokens = 831.4 · N^0.74 with N the total parameter count at the nominal vocabulary.
    let k = specs
        .iter()
        .find(|s| s.groups.iter().any(|g| g.0 == "kaplan"))
        .unwrap();
    let n = k.config.model.param_counts(512).total() as f64;
    assert_eq!(
        k.config.train.tokens,
        Some((831.4 * n.powf(0.74)).round() as u64)
    );
    assert_eq!(k.config.train.tokens_per_param, None);

    let abl: Vec<_> = specs
        .iter()
        .filter(|s| s.groups.iter().any(|g| g.1 == Role::Ablation))
        .collect();
    let fams: std::collections::BTreeSet<&str> = abl.iter().map(|s| s.config.family()).collect();
    assert_eq!(fams.len(), 7);
    assert!(
        fams.contains("modern-retro_norm") && fams.contains("retro") && fams.contains("modern")
    );
}

#[test]
fn a_run_in_two_groups_is_one_spec() {
    let text = r#"
name = "dup"
[[groups]]
name = "a"
role = "scan"
families = ["modern"]
widths = [32]
budget = { steps = 10 }
lr = [1e-3, 3e-3]
[[groups]]
name = "b"
role = "tune"
families = ["modern"]
widths = [32]
budget = { steps = 10 }
lr = [3e-3]
"#;
    let specs = Study::from_toml_str(text).unwrap().expand().unwrap();
    assert_eq!(specs.len(), 2);
    let shared = specs.iter().find(|s| s.config.train.lr == 3e-3).unwrap();
    assert_eq!(
        shared.groups,
        vec![("a".to_string(), Role::Scan), ("b".to_string(), Role::Tune)]
    );
}

fn err(text: &str) -> String {
    match Study::from_toml_str(text).and_then(|s| s.expand()) {
        Err(e @ TrainError::Config { .. }) => e.to_string(),
        Err(e) => panic!("expected a config error, got {e}"),
        Ok(_) => panic!("accepted:\n{text}"),
    }
}

#[test]
fn bad_studies_name_the_key_and_the_fix() {
    let base = "name = \"x\"\n[[groups]]\nname = \"g\"\nrole = \"scan\"\nfamilies = [\"modern\"]\nwidths = [32]\nbudget = { steps = 10 }\nlr = [1e-3]\n";
    let e = err(&base.replace("role = \"scan\"", "role = \"sweep\""));
    assert!(e.contains("groups[0].role") && e.contains("fix:"), "{e}");
    let e = err(&base.replace("widths", "width"));
    assert!(e.contains("groups[0]") && e.contains("width"), "{e}");
    let e = err(&base.replace("budget = { steps = 10 }", "budget = \"chinchilla\""));
    assert!(
        e.contains("unknown budget rule `chinchilla`") && e.contains("kaplan"),
        "{e}"
    );
    let e = err(&base.replace(
        "budget = { steps = 10 }",
        "budget = { steps = 10, tokens = 5 }",
    ));
    assert!(e.contains("2 budgets given"), "{e}");
    let e = err(&base.replace("lr = [1e-3]", "lr = \"papers\""));
    assert!(e.contains("unknown grid `papers`"), "{e}");
    let e = err(&base.replace("lr = [1e-3]", "lr = [-1.0]"));
    assert!(e.contains("positive learning rates"), "{e}");
    let e = err(&base.replace("families = [\"modern\"]", "families = [\"modrn\"]"));
    assert!(
        e.contains("family `modrn`") && e.contains("unknown preset"),
        "{e}"
    );
    let e = err(&base.replace("widths = [32]", "widths = [30]"));
    assert!(e.contains("family `modern` at width 30"), "{e}");
    let e = err(&base.replace("families = [\"modern\"]", "suite = \"revert\""));
    assert!(
        e.contains("unknown suite `revert`") && e.contains("reverts"),
        "{e}"
    );
    let e = err("name = \"x\"\ngroups = []\n");
    assert!(e.contains("no [[groups]]"), "{e}");
}

#[test]
fn slurm_script_runs_one_spec_per_array_task() {
    let ids: Vec<String> = vec![
        "aaaaaaaaaaaa".into(),
        "bbbbbbbbbbbb".into(),
        "cccccccccccc".into(),
    ];
    let s = slurm_script(
        std::path::Path::new("/shared/store dir"),
        &ids,
        std::path::Path::new("/opt/bin/algoprog"),
        &["--partition=gpu".into(), "#SBATCH --time=01:00:00".into()],
        8,
        2,
    )
    .unwrap();
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(lines[0], "#!/bin/bash");
    assert!(lines.contains(&"#SBATCH --array=0-2%2"), "{s}");
    assert!(lines.contains(&"#SBATCH --cpus-per-task=8"), "{s}");
    assert!(lines.contains(&"#SBATCH --partition=gpu"), "{s}");
    assert!(lines.contains(&"#SBATCH --time=01:00:00"), "{s}");
    // sbatch splits directives at spaces unless quoted.
    assert!(
        lines.contains(&"#SBATCH --output=\"/shared/store dir/slurm/%A_%a.out\""),
        "{s}"
    );
    let start = lines.iter().position(|l| *l == "IDS=(").unwrap();
    assert_eq!(
        &lines[start + 1..start + 4],
        &["  aaaaaaaaaaaa", "  bbbbbbbbbbbb", "  cccccccccccc"]
    );
    assert_eq!(
        *lines.last().unwrap(),
        "exec /opt/bin/algoprog run --spec \"${IDS[$SLURM_ARRAY_TASK_ID]}\" --store '/shared/store dir' --quiet"
    );
    // Every #SBATCH line comes before the first command (sbatch stops reading directives there).
    let first_cmd = lines.iter().position(|l| l.starts_with("set ")).unwrap();
    assert!(lines
        .iter()
        .enumerate()
        .all(|(i, l)| !l.starts_with("#SBATCH") || i < first_cmd));
}

#[test]
fn lr_rule_fitted_from_a_tune_recovers_the_rule_and_expands() {
    use algoprog_train::study::fit_lr_rule;
    // Best lrs exactly on log10 lr = -0.5 - 1·log10 width.
    let best: Vec<(usize, f64)> = [32usize, 64, 128, 256]
        .iter()
        .map(|&w| (w, 10f64.powf(-0.5 - (w as f64).log10())))
        .collect();
    let (a, b) = fit_lr_rule(&best).unwrap();
    assert!(
        (a + 0.5).abs() < 1e-12 && (b + 1.0).abs() < 1e-12,
        "a = {a}, b = {b}"
    );
    // Least squares through noisy points: the slope of (32, 1e-2), (64, 1e-2), (128, 1e-3) in log-log.
    let (a, b) = fit_lr_rule(&[(32, 1e-2), (64, 1e-2), (128, 1e-3)]).unwrap();
    assert!(
        (b - (-0.5 / std::f64::consts::LOG10_2)).abs() < 1e-9,
        "b = {b}"
    );
    // Mean of log10 width is log10 64, mean of log10 lr is -7/3: a = -7/3 + (0.5 / log10 2)·log10 64 = 2/3.
    assert!((a - 2.0 / 3.0).abs() < 1e-9, "a = {a}");
    assert_eq!(
        fit_lr_rule(&[(64, 1e-3), (64, 3e-3)]),
        None,
        "one width identifies no slope"
    );
    assert_eq!(fit_lr_rule(&[(64, 1e-3)]), None);
}

#[test]
fn slurm_script_quotes_options_and_refuses_newlines() {
    let ids: Vec<String> = vec!["aaaaaaaaaaaa".into()];
    let bin = std::path::Path::new("/opt/bin/algoprog");
    let script = |root: &str, opts: &[&str]| {
        let opts: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
        slurm_script(std::path::Path::new(root), &ids, bin, &opts, 1, 0)
    };
    let s = script(
        "/s",
        &["--comment=two words", "--job-name x\"y", "--exclusive"],
    )
    .unwrap();
    let lines: Vec<&str> = s.lines().collect();
    assert!(lines.contains(&"#SBATCH --comment=\"two words\""), "{s}");
    assert!(lines.contains(&"#SBATCH --job-name=\"x\\\"y\""), "{s}");
    assert!(lines.contains(&"#SBATCH --exclusive"), "{s}");
    // A newline in an option or in the store path would start a shell line of the job script.
    for (root, opt, key) in [
        ("/s", "--time=1\nrm -rf ~", "--sbatch"),
        ("/s\nrm -rf ~", "--time=1", "--store"),
    ] {
        let e = script(root, &[opt]).unwrap_err().to_string();
        assert!(e.contains(key) && e.contains("control character"), "{e}");
    }
    let e = script("/s", &["partition=gpu"]).unwrap_err().to_string();
    assert!(e.contains("not an sbatch option"), "{e}");
}

#[test]
fn keys_the_study_sets_itself_are_refused_in_base_and_sets() {
    let err = |text: String| Study::from_toml_str(&text).unwrap_err().to_string();
    let e = err(STUDY.replace("train = { batch_size = 4 }", "train = 5"));
    assert!(
        e.contains("base.train") && e.contains("expected a table"),
        "{e}"
    );
    let e = err(STUDY.replace(
        "train = { batch_size = 4 }",
        "train = { batch_size = 4, lr = 1e-3 }",
    ));
    assert!(
        e.contains("base.train.lr") && e.contains("group's `lr`"),
        "{e}"
    );
    let e = err(STUDY.replace(
        "train = { batch_size = 4 }",
        "train = { batch_size = 4 }\nseed = 3",
    ));
    assert!(e.contains("base.seed") && e.contains("seeds"), "{e}");
    let e = err(STUDY.replace(
        "set = { train = { grad_clip = 0.5 } }",
        "set = { model = 3 }",
    ));
    assert!(e.contains("families (lstm-clip).set.model"), "{e}");
    let e = err(STUDY.replace(
        "set = { train = { grad_clip = 0.5 } }",
        "set = { train = { steps = 9 } }",
    ));
    assert!(e.contains("set.train.steps") && e.contains("budget"), "{e}");
}

#[test]
fn a_sequence_longer_than_max_seq_len_fails_at_expansion() {
    let s = Study::from_toml_str(&STUDY.replace(
        "train = { batch_size = 4 }",
        "train = { batch_size = 4 }\nmodel = { max_seq_len = 16 }",
    ))
    .unwrap();
    let e = s.expand().unwrap_err().to_string();
    assert!(
        e.contains("model.max_seq_len")
            && e.contains("data.seq_len = 32")
            && e.contains("raise model.max_seq_len"),
        "{e}"
    );
    assert_eq!(
        e.matches("max_seq_len = 16").count() + e.matches("at most 16 tokens").count(),
        1,
        "said once: {e}"
    );
}
