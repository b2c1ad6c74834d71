//! Study definitions: a TOML file that expands to a list of run specs.
//!
//! ```toml
//! name = "quick"
//! seeds = [0]                 # default seeds of every group
//! eval_interval = 25          # default evaluation interval (optimiser steps)
//!
//! [base]                      # RunConfig keys every run starts from
//! data = { tokenizer = "bpe-512", seq_len = 64 }
//! train = { batch_size = 16, eval_batches = 4 }
//!
//! [[groups]]
//! name = "ablation"           # free name; shown in tables and exports
//! role = "ablation"           # tune | scan | ablation (what the report does with it)
//! suite = "reverts"           # a suite from `suite.rs`: reverts, upgrades, factorial, presets
//! families = ["retro"]        # runs added to the suite's
//! widths = [64]               # depth = width / 16 (the presets' rule)
//! budget = { tokens_per_param = 20 }   # or { tokens = N }, { steps = N }, "kaplan"
//! lr = [3e-3]                 # a list, "paper" (1e-3 … 1e-1 in half decades), or { a = …, b = … }
//! seeds = [0, 1]
//!
//! [[groups]]
//! name = "scan"
//! role = "scan"
//! families = ["modern", "retro", { name = "lstm-lr", preset = "lstm", set = { train = { grad_clip = 0.5 } } }]
//! widths = [32, 48, 64]
//! budget = { tokens_per_param = 40 }
//! lr = { a = -1.0, b = -0.5 } # log10 lr = a + b·log10 width
//! ```
//!
//! A family is a preset name, or a table with a `name`, an optional `preset`
//! and a `set` table merged over the base (any RunConfig key). The expansion
//! is deterministic; each spec's id is [`RunConfig::run_id`] of its resolved
//! config (name = `{family}-d{width}-lr{lr}-s{seed}`), so the same run listed
//! in two groups is one spec that belongs to both.

use std::collections::BTreeMap;
use std::path::Path;

use algoprog_data::TokenizerSpec;
use serde::{Deserialize, Serialize};

use crate::config::RunConfig;
use crate::error::{Result, TrainError};
use crate::suite;

/// Kaplan et al.'s compute-optimal data rule, tokens = 831.4 · N^0.74 (N = total parameters).
pub const KAPLAN_COEFF: f64 = 831.4;
pub const KAPLAN_EXPONENT: f64 = 0.74;

/// The papers' learning-rate grid: 10^-3 … 10^-1 in half decades.
pub fn paper_lr_grid() -> Vec<f64> {
    (0..5).map(|i| 10f64.powf(-3.0 + 0.5 * i as f64)).collect()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Study {
    pub name: String,
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    #[serde(default)]
    pub eval_interval: Option<usize>,
    #[serde(default)]
    pub base: toml::Table,
    pub groups: Vec<Group>,
    /// The report's analysis settings (`[analysis]`), checked by the report
    /// crate (`algoprog_report::AnalysisSettings`); absent: the papers' defaults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<toml::Table>,
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

/// What the report does with a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A learning-rate grid per family and width: the report shows the loss per lr.
    Tune,
    /// A size scan: frontiers, power-law fits, CEG functions.
    Scan,
    /// Runs at one budget: the ablation table with seeds, CEG multipliers.
    Ablation,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub families: Vec<Family>,
    /// An ablation suite (see [`crate::suite::suite`]) built on the modern preset at each width;
    /// `families` are added to it.
    #[serde(default)]
    pub suite: Option<String>,
    pub widths: Vec<usize>,
    pub budget: Budget,
    pub lr: LrSpec,
    #[serde(default)]
    pub seeds: Option<Vec<u64>>,
    #[serde(default)]
    pub eval_interval: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Family {
    Preset(String),
    Custom {
        name: String,
        #[serde(default)]
        preset: Option<String>,
        #[serde(default)]
        set: toml::Table,
    },
}

impl Family {
    pub fn name(&self) -> &str {
        match self {
            Family::Preset(p) => p,
            Family::Custom { name, .. } => name,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Budget {
    /// `"kaplan"`: tokens = 831.4 · N^0.74.
    Rule(String),
    Fixed(FixedBudget),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedBudget {
    #[serde(default)]
    pub tokens_per_param: Option<f64>,
    #[serde(default)]
    pub tokens: Option<u64>,
    #[serde(default)]
    pub steps: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LrSpec {
    /// `"paper"`: [`paper_lr_grid`].
    Named(String),
    List(Vec<f64>),
    /// log10 lr = a + b · log10 width.
    Rule {
        a: f64,
        b: f64,
    },
}

/// One run of a study.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    pub id: String,
    /// Groups (name, role) the run belongs to.
    pub groups: Vec<(String, Role)>,
    pub width: usize,
    pub config: RunConfig,
}

fn study_err(key: &str, problem: String, fix: &str) -> TrainError {
    TrainError::config(key, problem, fix.to_string())
}

/// Recursive merge of `over` into `base` (tables merge, values replace).
pub fn merge_tables(base: &mut toml::Table, over: &toml::Table) {
    for (k, v) in over {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_tables(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

fn table_at<'a>(t: &'a mut toml::Table, key: &str, family: &str) -> Result<&'a mut toml::Table> {
    let v = t
        .entry(key.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let found = v.type_str();
    v.as_table_mut().ok_or_else(|| {
        study_err(
            &format!("family `{family}`: {key}"),
            format!("expected a table, found {found}"),
            &format!("write [base.{key}] (or set = {{ {key} = {{ … }} }}) with the keys of a run config's [{key}]; see configs/modern.toml"),
        )
    })
}

/// Keys of a run config that a study sets itself from each group (and so
/// would silently replace): they may not appear in `[base]` or a family's `set`.
const STUDY_SET_KEYS: &[(&str, &str)] = &[
    ("seed", "the study's or the group's `seeds = [..]`"),
    (
        "name",
        "nothing: runs are named {family}-d{width}-lr{lr}-s{seed}",
    ),
    ("family", "the family's `name`"),
    ("model.d_model", "the group's `widths = [..]`"),
    ("train.lr", "the group's `lr`"),
    ("train.steps", "the group's `budget = { steps = N }`"),
    ("train.tokens", "the group's `budget = { tokens = N }`"),
    (
        "train.tokens_per_param",
        "the group's `budget = { tokens_per_param = X }`",
    ),
];

/// `[base]` or a family's `set`: the sections are tables, and no key the study sets itself.
fn check_config_table(t: &toml::Table, at: &str) -> Result<()> {
    for k in ["model", "data", "train"] {
        if let Some(v) = t.get(k) {
            if !v.is_table() {
                return Err(study_err(
                    &format!("{at}.{k}"),
                    format!("expected a table of [{k}] keys, found {} `{v}`", v.type_str()),
                    &format!("write {at}.{k} as a table, e.g. {k} = {{ … }} with the keys of a run config's [{k}] (see configs/modern.toml), or remove it"),
                ));
            }
        }
    }
    if at == "base" && t.contains_key("preset") {
        return Err(study_err(
            "base.preset",
            "is replaced by each family's preset, so this value would be ignored".into(),
            "remove it; name the preset in the group's families (\"modern\", or { name = .., preset = .. })",
        ));
    }
    for (key, by) in STUDY_SET_KEYS {
        let v = match key.split_once('.') {
            Some((sec, k)) => t.get(sec).and_then(|s| s.get(k)),
            None => t.get(*key),
        };
        if v.is_some() {
            return Err(study_err(
                &format!("{at}.{key}"),
                "is set by the study for every run, so this value would be ignored".into(),
                &format!("remove it; it comes from {by}"),
            ));
        }
    }
    Ok(())
}

/// Vocabulary size a tokenizer spec gives (for budgets that depend on the parameter count).
pub fn nominal_vocab(spec: &TokenizerSpec) -> usize {
    match spec {
        TokenizerSpec::Gpt2 => 50257,
        TokenizerSpec::Bpe { vocab_size } => *vocab_size,
    }
}

/// Short, stable text for a learning rate in run names: `3.16e-3`.
pub fn lr_label(lr: f64) -> String {
    let e = lr.log10().floor() as i32;
    let m = lr / 10f64.powi(e);
    let m = format!("{m:.2}");
    let m = m.trim_end_matches('0').trim_end_matches('.');
    format!("{m}e{e}")
}

impl Study {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::Io {
            path: path.to_path_buf(),
            what: "reading the study file (examples are in configs/studies/)".into(),
            err: e,
        })?;
        Self::from_toml_str(&text).map_err(|e| e.in_file(path))
    }

    pub fn from_toml_str(text: &str) -> Result<Self> {
        let value: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            study_err(
                "(file)",
                format!("not valid TOML: {e}"),
                "fix the TOML syntax",
            )
        })?;
        let study: Study = serde_path_to_error::deserialize(toml::Value::Table(value)).map_err(|e| {
            let path = e.path().to_string();
            let msg = e.into_inner().to_string();
            study_err(
                &path,
                msg.lines().next().unwrap_or("").to_string(),
                "study keys: name, seeds, eval_interval, [base], [analysis], [[groups]] with name, role (tune|scan|ablation), \
                 families or suite, widths, budget, lr, seeds, eval_interval; see configs/studies/smoke.toml",
            )
        })?;
        study.check()?;
        Ok(study)
    }

    fn check(&self) -> Result<()> {
        check_config_table(&self.base, "base")?;
        for (i, g) in self.groups.iter().enumerate() {
            for f in &g.families {
                if let Family::Custom { name, set, .. } = f {
                    check_config_table(
                        set,
                        &format!("groups[{i}] ({}).families ({name}).set", g.name),
                    )?;
                }
            }
        }
        if self.groups.is_empty() {
            return Err(study_err(
                "groups",
                "the study has no [[groups]]".into(),
                "add at least one [[groups]] table",
            ));
        }
        for (i, g) in self.groups.iter().enumerate() {
            let key = |k: &str| format!("groups[{i}] ({}).{k}", g.name);
            if g.widths.is_empty() || g.widths.contains(&0) {
                return Err(study_err(
                    &key("widths"),
                    format!("{:?} is not a list of positive widths", g.widths),
                    "e.g. widths = [32, 64]",
                ));
            }
            if g.suite.is_none() && g.families.is_empty() {
                return Err(study_err(
                    &key("families"),
                    "no families and no suite".into(),
                    "e.g. families = [\"modern\", \"retro\"]",
                ));
            }
            if let Budget::Rule(r) = &g.budget {
                if r != "kaplan" {
                    return Err(study_err(
                        &key("budget"),
                        format!("unknown budget rule `{r}`"),
                        "use \"kaplan\" or a table: { tokens_per_param = 20 } | { tokens = N } | { steps = N }",
                    ));
                }
            }
            if let Budget::Fixed(b) = &g.budget {
                let n = [
                    b.tokens_per_param.is_some(),
                    b.tokens.is_some(),
                    b.steps.is_some(),
                ]
                .iter()
                .filter(|x| **x)
                .count();
                if n != 1 {
                    return Err(study_err(
                        &key("budget"),
                        format!("{n} budgets given"),
                        "give exactly one of tokens_per_param, tokens, steps",
                    ));
                }
            }
            match &g.lr {
                LrSpec::Named(n) if n != "paper" => {
                    return Err(study_err(
                        &key("lr"),
                        format!("unknown grid `{n}`"),
                        "use \"paper\", a list like [1e-3, 3e-3] or { a = .., b = .. }",
                    ))
                }
                LrSpec::List(l)
                    if l.is_empty() || l.iter().any(|x| !(x.is_finite() && *x > 0.0)) =>
                {
                    return Err(study_err(
                        &key("lr"),
                        format!("{l:?} is not a list of positive learning rates"),
                        "e.g. lr = [1e-3, 3e-3]",
                    ))
                }
                _ => {}
            }
            if g.seeds.as_ref().is_some_and(|s| s.is_empty()) {
                return Err(study_err(
                    &key("seeds"),
                    "empty seed list".into(),
                    "e.g. seeds = [0, 1]",
                ));
            }
        }
        if self.seeds.is_empty() {
            return Err(study_err(
                "seeds",
                "empty seed list".into(),
                "e.g. seeds = [0]",
            ));
        }
        Ok(())
    }

    /// Expand into run specs (deduplicated by id, in first-seen order).
    pub fn expand(&self) -> Result<Vec<RunSpec>> {
        let mut out: Vec<RunSpec> = Vec::new();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        for g in &self.groups {
            let seeds = g.seeds.clone().unwrap_or_else(|| self.seeds.clone());
            let eval = g.eval_interval.or(self.eval_interval);
            for &w in &g.widths {
                let lrs = match &g.lr {
                    LrSpec::Named(_) => paper_lr_grid(),
                    LrSpec::List(l) => l.clone(),
                    LrSpec::Rule { a, b } => vec![10f64.powf(a + b * (w as f64).log10())],
                };
                // Family configs at this width, before lr / seed / budget.
                let mut bases: Vec<(String, RunConfig)> = Vec::new();
                if let Some(s) = &g.suite {
                    let modern = self.resolve(
                        &Family::Preset("modern".into()),
                        w,
                        1e-3,
                        0,
                        &FixedBudget {
                            steps: Some(1),
                            tokens: None,
                            tokens_per_param: None,
                        },
                        eval,
                    )?;
                    for c in suite::suite(s, &modern).map_err(|e| match e {
                        TrainError::Config {
                            key,
                            problem,
                            fix,
                            file,
                        } if key == "suite" => TrainError::Config {
                            file,
                            key: format!("groups ({}).suite", g.name),
                            problem,
                            fix,
                        },
                        other => other,
                    })? {
                        bases.push((c.family().to_string(), c));
                    }
                }
                {
                    for f in &g.families {
                        let c = self.resolve(
                            f,
                            w,
                            1e-3,
                            0,
                            &FixedBudget {
                                steps: Some(1),
                                tokens: None,
                                tokens_per_param: None,
                            },
                            eval,
                        )?;
                        bases.push((f.name().to_string(), c));
                    }
                }
                for (family, base) in &bases {
                    for &lr in &lrs {
                        for &seed in &seeds {
                            let mut c = base.clone();
                            c.family = Some(family.clone());
                            c.seed = seed;
                            c.train.lr = lr;
                            c.train.steps = None;
                            c.train.tokens = None;
                            c.train.tokens_per_param = None;
                            match &g.budget {
                                Budget::Rule(_) => {
                                    let n = crate::registry::param_counts(
                                        &c.model,
                                        nominal_vocab(&c.data.tokenizer),
                                    )?
                                    .total() as f64;
                                    c.train.tokens = Some(
                                        (KAPLAN_COEFF * n.powf(KAPLAN_EXPONENT)).round() as u64,
                                    );
                                }
                                Budget::Fixed(b) => {
                                    c.train.steps = b.steps;
                                    c.train.tokens = b.tokens;
                                    c.train.tokens_per_param = b.tokens_per_param;
                                }
                            }
                            c.name = format!("{family}-d{w}-lr{}-s{seed}", lr_label(lr));
                            c.validate().map_err(|e| match e {
                                TrainError::Config {
                                    key, problem, fix, ..
                                } => TrainError::Config {
                                    file: None,
                                    key: format!("groups ({}) → run {}: {key}", g.name, c.name),
                                    problem,
                                    fix,
                                },
                                other => other,
                            })?;
                            let id = c.run_id();
                            let member = (g.name.clone(), g.role);
                            match index.get(&id) {
                                Some(&i) => {
                                    if !out[i].groups.contains(&member) {
                                        out[i].groups.push(member);
                                    }
                                }
                                None => {
                                    index.insert(id.clone(), out.len());
                                    out.push(RunSpec {
                                        id,
                                        groups: vec![member],
                                        width: w,
                                        config: c,
                                    });
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// The resolved config of `family` at width `w`.
    fn resolve(
        &self,
        family: &Family,
        w: usize,
        lr: f64,
        seed: u64,
        budget: &FixedBudget,
        eval: Option<usize>,
    ) -> Result<RunConfig> {
        let mut t = self.base.clone();
        for k in ["preset", "name", "seed"] {
            t.remove(k);
        }
        let (preset, set) = match family {
            Family::Preset(p) => (Some(p.clone()), toml::Table::new()),
            Family::Custom { preset, set, .. } => (preset.clone(), set.clone()),
        };
        merge_tables(&mut t, &set);
        if let Some(p) = preset {
            t.insert("preset".into(), toml::Value::String(p));
        }
        t.insert(
            "family".into(),
            toml::Value::String(family.name().to_string()),
        );
        t.insert("seed".into(), toml::Value::Integer(seed as i64));
        table_at(&mut t, "model", family.name())?
            .insert("d_model".into(), toml::Value::Integer(w as i64));
        let train = table_at(&mut t, "train", family.name())?;
        train.insert("lr".into(), toml::Value::Float(lr));
        for k in ["steps", "tokens", "tokens_per_param"] {
            train.remove(k);
        }
        if let Some(s) = budget.steps {
            train.insert("steps".into(), toml::Value::Integer(s as i64));
        }
        if let Some(e) = eval {
            train.insert("eval_interval".into(), toml::Value::Integer(e as i64));
        }
        let text = toml::to_string(&t)
            .map_err(|e| TrainError::Internal(format!("serialising a study config: {e}")))?;
        RunConfig::from_toml_str(&text).map_err(|e| match e {
            TrainError::Config {
                key, problem, fix, ..
            } => TrainError::Config {
                file: None,
                key: format!("family `{}` at width {w}: {key}", family.name()),
                problem,
                fix,
            },
            other => other,
        })
    }
}

/// The per-width learning-rate rule `log10 lr = a + b·log10 width` fitted by
/// least squares to a tune's best learning rate at each width; `None` with
/// fewer than two distinct widths. Put the result in a study as `lr = { a = …, b = … }`.
pub fn fit_lr_rule(best: &[(usize, f64)]) -> Option<(f64, f64)> {
    let pts: Vec<(f64, f64)> = best
        .iter()
        .filter(|(w, lr)| *w > 0 && *lr > 0.0)
        .map(|(w, lr)| ((*w as f64).log10(), lr.log10()))
        .collect();
    let n = pts.len() as f64;
    let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
    let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if pts.len() < 2 || sxx <= 0.0 {
        return None;
    }
    let b = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>() / sxx;
    Some((my - b * mx, b))
}
