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
//! ## Tuned learning rates: a study in stages
//!
//! A scan or ablation group may take its learning rate from a tune group:
//! `lr = "tuned"` (the study's only tune group) or
//! `lr = { tuned = "tune", spread = [-0.5, 0.0, 0.5] }` (spread in decades
//! around the tuned rate; default `[0.0]`). The study then runs in stages:
//! first every group that does not depend on a tune ([`Study::expand`]);
//! when the tune's runs have ended, each tuned family gets the per-width rule
//! `log10 lr = a + b·log10 width` fitted to the best (lowest final validation
//! loss) learning rate of each of its widths ([`tuned_rates`]; one width:
//! that best rate itself), and the dependent groups are expanded with it
//! ([`Study::expand_with`]) and appended to the store's specs. A family
//! takes the rule of the tune family of the same name, else of its preset,
//! else (an ablation suite's variants, built on modern) modern's. Resuming
//! re-derives the same rates from the same finished tune runs, so the specs
//! come out the same.
//!
//! A tune can be short: `budget = { tokens_per_param = 2, min_tokens = 200_000 }`
//! trains max(2·N, 200,000) tokens (N by `train.param_count`, with the
//! tokenizer's nominal vocabulary).
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
    /// With `tokens_per_param`: train at least this many tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tokens: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LrSpec {
    /// `"paper"`: [`paper_lr_grid`].
    Named(String),
    List(Vec<f64>),
    /// The rate tune group `tuned` found for the run's family and width,
    /// times 10^d for each d of `spread` (decades; default `[0.0]`).
    Tuned {
        tuned: String,
        #[serde(default)]
        spread: Option<Vec<f64>>,
    },
    /// log10 lr = a + b · log10 width.
    Rule {
        a: f64,
        b: f64,
    },
}

/// Where a group's learning rate comes from: (tune group, spread in decades).
pub type TuneSource = (String, Vec<f64>);

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
                if b.min_tokens.is_some() && b.tokens_per_param.is_none() {
                    return Err(study_err(
                        &key("budget.min_tokens"),
                        "min_tokens only bounds a tokens_per_param budget".into(),
                        "write budget = { tokens_per_param = X, min_tokens = T }, or budget = { tokens = T }",
                    ));
                }
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
                LrSpec::Named(n) if n != "paper" && n != "tuned" => {
                    return Err(study_err(
                        &key("lr"),
                        format!("unknown grid `{n}`"),
                        "use \"paper\", \"tuned\", a list like [1e-3, 3e-3], { a = .., b = .. } or { tuned = \"GROUP\", spread = [-0.5, 0.0, 0.5] }",
                    ))
                }
                LrSpec::Tuned {
                    spread: Some(sp), ..
                } if sp.is_empty() || sp.iter().any(|d| !d.is_finite() || d.abs() > 6.0) => {
                    return Err(study_err(
                        &key("lr.spread"),
                        format!("{sp:?} is not a list of offsets in decades"),
                        "e.g. spread = [-0.5, 0.0, 0.5] (the tuned rate divided and multiplied by 10^0.5)",
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
        for (i, g) in self.groups.iter().enumerate() {
            self.tune_of(g).map_err(|(problem, fix)| {
                study_err(&format!("groups[{i}] ({}).lr", g.name), problem, &fix)
            })?;
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

    /// The tune group a group takes its learning rate from, with the spread
    /// (decades); `Ok(None)` for a group with its own rates. The error is
    /// (problem, fix).
    pub fn tune_of(&self, g: &Group) -> std::result::Result<Option<TuneSource>, (String, String)> {
        let (name, spread) = match &g.lr {
            LrSpec::Named(n) if n == "tuned" => {
                let tunes: Vec<&str> = self
                    .groups
                    .iter()
                    .filter(|t| t.role == Role::Tune)
                    .map(|t| t.name.as_str())
                    .collect();
                match tunes.as_slice() {
                    [one] => (one.to_string(), vec![0.0]),
                    [] => {
                        return Err((
                            "`tuned` needs a group with role = \"tune\", and the study has none".into(),
                            "add a [[groups]] with role = \"tune\" and a learning-rate grid (lr = \"paper\"), or give this group an explicit lr = [..]".into(),
                        ))
                    }
                    many => {
                        return Err((
                            format!("`tuned` is ambiguous: the study has {} tune groups ({})", many.len(), many.join(", ")),
                            format!("name one: lr = {{ tuned = \"{}\" }}", many[0]),
                        ))
                    }
                }
            }
            LrSpec::Tuned { tuned, spread } => {
                (tuned.clone(), spread.clone().unwrap_or_else(|| vec![0.0]))
            }
            _ => return Ok(None),
        };
        if g.role == Role::Tune {
            return Err((
                "a tune group cannot take its learning rate from a tune".into(),
                "give the tune a grid: lr = \"paper\" or lr = [1e-3, 3e-3, 1e-2]".into(),
            ));
        }
        match self.groups.iter().find(|t| t.name == name) {
            Some(t) if t.role == Role::Tune => Ok(Some((name, spread))),
            Some(t) => Err((
                format!("group `{name}` has role {:?}, not tune", t.role),
                format!("name a group with role = \"tune\", or set role = \"tune\" in group `{name}`"),
            )),
            None => Err((
                format!("no group named `{name}` to take the tuned learning rate from"),
                format!(
                    "name one of the study's tune groups ({}), or add a [[groups]] with name = \"{name}\" and role = \"tune\"",
                    self.groups
                        .iter()
                        .filter(|t| t.role == Role::Tune)
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }

    /// Whether some group takes a tuned learning rate (the study runs in two stages).
    pub fn has_tuned_groups(&self) -> bool {
        self.groups
            .iter()
            .any(|g| matches!(self.tune_of(g), Ok(Some(_))))
    }

    /// The tune groups some group takes its rate from.
    pub fn needed_tunes(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for g in &self.groups {
            if let Ok(Some((t, _))) = self.tune_of(g) {
                if !v.contains(&t) {
                    v.push(t);
                }
            }
        }
        v
    }

    /// The groups that take a tuned rate (the second stage), by name.
    pub fn tuned_group_names(&self) -> Vec<String> {
        self.groups
            .iter()
            .filter(|g| matches!(self.tune_of(g), Ok(Some(_))))
            .map(|g| g.name.clone())
            .collect()
    }

    /// The first stage: run specs of every group that takes no tuned rate
    /// (deduplicated by id, in first-seen order). A study without tuned
    /// groups is all first stage.
    pub fn expand(&self) -> Result<Vec<RunSpec>> {
        self.expand_groups(None)
    }

    /// Every run spec: the first stage's, then those of the groups that take
    /// tuned rates, from `rates` ([`tuned_rates`] of the finished tune).
    pub fn expand_with(&self, rates: &TunedRates) -> Result<Vec<RunSpec>> {
        self.expand_groups(Some(rates))
    }

    fn expand_groups(&self, rates: Option<&TunedRates>) -> Result<Vec<RunSpec>> {
        let mut out: Vec<RunSpec> = Vec::new();
        let mut index: BTreeMap<String, usize> = BTreeMap::new();
        let tuned: Vec<&Group> = self
            .groups
            .iter()
            .filter(|g| matches!(self.tune_of(g), Ok(Some(_))))
            .collect();
        let first: Vec<&Group> = self
            .groups
            .iter()
            .filter(|g| !matches!(self.tune_of(g), Ok(Some(_))))
            .collect();
        let order: Vec<&Group> = match rates {
            None => first,
            Some(_) => first.into_iter().chain(tuned).collect(),
        };
        for g in order {
            let seeds = g.seeds.clone().unwrap_or_else(|| self.seeds.clone());
            let eval = g.eval_interval.or(self.eval_interval);
            let from_tune = self.tune_of(g).map_err(|(problem, fix)| {
                study_err(&format!("groups ({}).lr", g.name), problem, &fix)
            })?;
            for &w in &g.widths {
                let lrs = match &g.lr {
                    LrSpec::Named(n) if n == "paper" => paper_lr_grid(),
                    LrSpec::List(l) => l.clone(),
                    LrSpec::Rule { a, b } => vec![10f64.powf(a + b * (w as f64).log10())],
                    // Tuned: per family, below.
                    _ => Vec::new(),
                };
                // Family configs at this width, before lr / seed / budget.
                // (family, config, whether it is a suite variant built on modern)
                let mut bases: Vec<(String, RunConfig, bool)> = Vec::new();
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
                            min_tokens: None,
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
                        bases.push((c.family().to_string(), c, true));
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
                                min_tokens: None,
                            },
                            eval,
                        )?;
                        bases.push((f.name().to_string(), c, false));
                    }
                }
                for (family, base, in_suite) in &bases {
                    let lrs = match (&from_tune, rates) {
                        (Some((tune, spread)), Some(rates)) => {
                            let preset = base.preset.as_deref();
                            let rule = rates
                                .rule_for(tune, family, preset, *in_suite)
                                .ok_or_else(|| {
                                    study_err(
                                        &format!("groups ({}).lr", g.name),
                                        format!(
                                            "family `{family}` takes its learning rate from tune group `{tune}`, which has no finished runs of `{family}`{}{}",
                                            preset.filter(|p| p != family).map(|p| format!(" or of its preset `{p}`")).unwrap_or_default(),
                                            if *in_suite { " or of `modern`" } else { "" }
                                        ),
                                        &format!("add `{family}` to the families of group `{tune}`, or give group `{}` an explicit lr = [..]", g.name),
                                    )
                                })?;
                            let centre = rule.lr(w);
                            spread
                                .iter()
                                .map(|d| if *d == 0.0 { centre } else { centre * 10f64.powf(*d) })
                                .collect()
                        }
                        (Some((tune, _)), None) => {
                            return Err(TrainError::Internal(format!(
                                "group `{}` needs the rates of tune `{tune}`; expand it with Study::expand_with",
                                g.name
                            )))
                        }
                        (None, _) => lrs.clone(),
                    };
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
                                    if let (Some(r), Some(min)) = (b.tokens_per_param, b.min_tokens)
                                    {
                                        let p =
                                            c.model.param_counts(nominal_vocab(&c.data.tokenizer));
                                        let n = match c.train.param_count {
                                            crate::config::ParamCountKind::Total => p.total(),
                                            crate::config::ParamCountKind::NonEmbedding => {
                                                p.non_embedding
                                            }
                                        } as f64;
                                        c.train.tokens_per_param = None;
                                        c.train.tokens = Some(((r * n).ceil() as u64).max(min));
                                    }
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

/// A tuned family's per-width learning-rate rule: log10 lr = a + b·log10 width.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TunedRule {
    /// The tune group.
    pub group: String,
    pub family: String,
    /// The best learning rate at each width: (width, lr, final validation loss, run id).
    pub best: Vec<(usize, f64, f64, String)>,
    pub a: f64,
    pub b: f64,
}

impl TunedRule {
    /// The tuned rate at width `w`: the fitted rule; with one tuned width,
    /// that width's best rate itself.
    pub fn lr(&self, w: usize) -> f64 {
        match self.best.as_slice() {
            [(_, lr, _, _)] => *lr,
            _ => 10f64.powf(self.a + self.b * (w as f64).log10()),
        }
    }
}

/// The rules of every tuned family of a study.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TunedRates {
    pub rules: Vec<TunedRule>,
}

impl TunedRates {
    /// The rule a family of a dependent group takes from tune `group`: the
    /// family's own, else its preset's, else (a suite variant) modern's.
    pub fn rule_for(
        &self,
        group: &str,
        family: &str,
        preset: Option<&str>,
        in_suite: bool,
    ) -> Option<&TunedRule> {
        let find = |f: &str| {
            self.rules
                .iter()
                .find(|r| r.group == group && r.family == f)
        };
        find(family)
            .or_else(|| preset.and_then(find))
            .or_else(|| in_suite.then(|| find("modern")).flatten())
    }
}

/// How a tune run ended, as far as the learning-rate choice is concerned.
#[derive(Clone, Debug, PartialEq)]
pub enum TuneOutcome {
    /// Finished with this final validation loss.
    Finished(f64),
    Diverged,
    /// Not ended: pending, running, interrupted, failed or damaged (the state's label).
    NotEnded(String),
}

/// Whether the dependent groups can be expanded yet.
#[derive(Clone, Debug, PartialEq)]
pub enum TuneStatus {
    /// Every needed tune run has ended: the rates.
    Ready(TunedRates),
    /// Some tune runs have not ended: (run id, name, state label).
    Waiting(Vec<(String, String, String)>),
}

/// The tuned rates of every tune group the study's groups name, from the
/// outcomes of the tune runs (each spec with how it ended). Per family and
/// width, the best rate is the finished run with the lowest final
/// validation loss. A width where no run finished is an error naming the
/// tune group, the family, the width and the fix.
pub fn tuned_rates(study: &Study, outcomes: &[(RunSpec, TuneOutcome)]) -> Result<TuneStatus> {
    let mut waiting = Vec::new();
    let mut rules = Vec::new();
    for tune in study.needed_tunes() {
        let runs: Vec<&(RunSpec, TuneOutcome)> = outcomes
            .iter()
            .filter(|(s, _)| s.groups.iter().any(|(g, r)| *g == tune && *r == Role::Tune))
            .collect();
        for (s, o) in &runs {
            if let TuneOutcome::NotEnded(st) = o {
                waiting.push((s.id.clone(), s.config.name.clone(), st.clone()));
            }
        }
        if !waiting.is_empty() {
            continue;
        }
        let mut families: Vec<String> = Vec::new();
        for (s, _) in &runs {
            let f = s.config.family().to_string();
            if !families.contains(&f) {
                families.push(f);
            }
        }
        for fam in families {
            let mut widths: Vec<usize> = runs
                .iter()
                .filter(|(s, _)| s.config.family() == fam)
                .map(|(s, _)| s.width)
                .collect();
            widths.sort();
            widths.dedup();
            let mut best = Vec::new();
            for w in widths {
                let at: Vec<&&(RunSpec, TuneOutcome)> = runs
                    .iter()
                    .filter(|(s, _)| s.config.family() == fam && s.width == w)
                    .collect();
                let b = at
                    .iter()
                    .filter_map(|(s, o)| match o {
                        TuneOutcome::Finished(l) if l.is_finite() => Some((s, *l)),
                        _ => None,
                    })
                    // Ties go to the lower rate, then the id: the same choice on every resume.
                    .min_by(|(sa, la), (sb, lb)| {
                        la.total_cmp(lb)
                            .then(sa.config.train.lr.total_cmp(&sb.config.train.lr))
                            .then(sa.id.cmp(&sb.id))
                    });
                let Some((s, l)) = b else {
                    return Err(study_err(
                        &format!("groups ({tune})"),
                        format!(
                            "the learning-rate tune has no finished run of family `{fam}` at width {w} ({} runs, all diverged or without a loss), so the groups that take its rate ({}) cannot be expanded",
                            at.len(),
                            study.tuned_group_names().join(", ")
                        ),
                        &format!("give tune group `{tune}` lower learning rates or a longer budget and run it again in a new --store (or give those groups an explicit lr = [..])"),
                    ));
                };
                best.push((w, s.config.train.lr, l, s.id.clone()));
            }
            let pts: Vec<(usize, f64)> = best.iter().map(|(w, lr, _, _)| (*w, *lr)).collect();
            let (a, b) = fit_lr_rule(&pts).unwrap_or((pts[0].1.log10(), 0.0));
            rules.push(TunedRule {
                group: tune.clone(),
                family: fam,
                best,
                a,
                b,
            });
        }
    }
    if !waiting.is_empty() {
        return Ok(TuneStatus::Waiting(waiting));
    }
    Ok(TuneStatus::Ready(TunedRates { rules }))
}
