//! The report, one function per section. Each section takes the input, the
//! settings and what earlier sections found, and returns its markdown (and,
//! where later sections need it, its numbers), so each can be called and
//! tested alone. [`render`] runs them in order.
//!
//! Figures are written only when a figure directory is given; every
//! figure's caption names the threshold, the data and the seeds.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use algoprog_ceg::{
    ceg_multipliers, combination_test, compare_allocations, decompose, resolve_threshold,
    CegFunction, CombinationReport, ComputeTrend, Decomposition, Direction, Gain, KaplanRule,
    MultiplierOptions, MultiplierReport, Source, Threshold, ThresholdSpec, Timeline,
};
use algoprog_plot::ceg as cplot;
use algoprog_plot::charts::{write_log_log, LogLogChart, Mark, Series};
use algoprog_scaling::bootstrap::{percentile_interval, resample_indices};
use algoprog_scaling::{
    fit_chinchilla, fit_power_law, frontier, ChinchillaData, ChinchillaLaw, ChinchillaOptions,
    Curve, FitSpace, FrontierOptions, FrontierPoint, Interval, Irreducible, PowerLaw,
    PowerLawOptions, Pruning, TokensSource,
};
use serde::Serialize;

use crate::error::{ReportError, Result};
use crate::input::{ReportInput, Role, RunEntry, RunStatus};
use crate::published::{self, family_label};
use crate::settings::{
    AnalysisSettings, ComputeRange, ESetting, FitSpaceSetting, KaplanRuleSetting, RangeMode,
    ThresholdSetting,
};

/// Target compute for extrapolated CEGs (FLOPs).
pub const TARGET_COMPUTE: f64 = 1e23;
/// C = k·N·D.
const K: f64 = 6.0;

// ------------------------------------------------------------------ formatting

pub(crate) fn sci(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3e}")
    } else {
        "—".into()
    }
}

pub(crate) fn f4(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.4}")
    } else {
        "—".into()
    }
}

fn f3(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        "—".into()
    }
}

/// An interval of either crate (the CEG crate has its own type).
pub(crate) trait Bounds {
    fn bounds(&self) -> (f64, f64);
}

impl Bounds for Interval {
    fn bounds(&self) -> (f64, f64) {
        (self.lo, self.hi)
    }
}

impl Bounds for algoprog_ceg::stats::Interval {
    fn bounds(&self) -> (f64, f64) {
        (self.lo, self.hi)
    }
}

fn iv<B: Bounds>(i: Option<B>) -> String {
    i.map(|i| {
        let (lo, hi) = i.bounds();
        format!("[{}, {}]", f3(lo), f3(hi))
    })
    .unwrap_or_else(|| "—".into())
}

fn md_table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(
        out,
        "|{}|",
        header.iter().map(|_| "---").collect::<Vec<_>>().join("|")
    );
    for r in rows {
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
    out.push('\n');
}

fn ids<'a>(it: impl IntoIterator<Item = &'a str>) -> String {
    it.into_iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// SVG and PNG of a figure from the CEG plot module; the markdown image line
/// and caption, or nothing when no figure directory is given.
fn figure(
    figs: Option<&Path>,
    stem: &str,
    caption: &str,
    draw: impl Fn(&Path) -> std::result::Result<(), cplot::PlotError>,
) -> Result<String> {
    let Some(dir) = figs else {
        return Ok(String::new());
    };
    for ext in ["svg", "png"] {
        let p = dir.join(format!("{stem}.{ext}"));
        draw(&p).map_err(|e| ReportError::Plot(e.to_string()))?;
    }
    Ok(format!(
        "![{stem}](figures/{stem}.png) ([SVG](figures/{stem}.svg))\n\n*{caption}*\n\n"
    ))
}

fn chart(figs: Option<&Path>, stem: &str, caption: &str, c: &LogLogChart) -> Result<String> {
    let Some(dir) = figs else {
        return Ok(String::new());
    };
    write_log_log(c, &dir.join(stem)).map_err(|e| ReportError::Plot(e.to_string()))?;
    Ok(format!(
        "![{stem}](figures/{stem}.png) ([SVG](figures/{stem}.svg))\n\n*{caption}*\n\n"
    ))
}

/// Seeds of a set of runs, as "seeds 0, 1".
fn seeds_of<'a>(runs: impl IntoIterator<Item = &'a RunEntry>) -> String {
    let mut s: Vec<u64> = runs.into_iter().filter_map(|r| r.curve.meta.seed).collect();
    s.sort();
    s.dedup();
    if s.is_empty() {
        "seeds not recorded".into()
    } else {
        format!(
            "seed{} {}",
            if s.len() > 1 { "s" } else { "" },
            s.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
        )
    }
}

/// The report's threshold in words, for captions.
pub fn threshold_words(thr: &ThresholdChoice) -> String {
    match thr.value {
        Some(t) => format!("CEG threshold L* = {t:.4} nats"),
        None => "no CEG threshold (refused, see the ablation section)".into(),
    }
}

/// The data in words, for captions and notes.
pub fn data_words(input: &ReportInput, settings: &AnalysisSettings) -> String {
    settings
        .data
        .clone()
        .unwrap_or_else(|| input.data.describe())
}

// ------------------------------------------------------------------ setup and runs

/// Setup: where the runs come from, the data, the settings, the groups.
pub fn setup_section(
    input: &ReportInput,
    settings: &AnalysisSettings,
    note: Option<&str>,
) -> String {
    let mut md = String::from("## Setup\n\n");
    let done = input
        .runs
        .iter()
        .filter(|r| r.status == RunStatus::Finished)
        .count();
    let div = input
        .runs
        .iter()
        .filter(|r| r.status == RunStatus::Diverged)
        .count();
    let _ = writeln!(
        md,
        "- runs: {} specified, {} with records: {done} finished, {div} diverged, {} not finished",
        input.specified,
        input.runs.len(),
        input.runs.len() - done - div
    );
    let d = &input.data;
    let _ = write!(md, "- data: {}", data_words(input, settings));
    if let (Some(t), Some(v)) = (d.train_tokens, d.val_tokens) {
        let _ = write!(md, "; {t} training / {v} validation tokens");
    }
    match d.unigram_entropy.or(settings.unigram_entropy) {
        Some(h) => {
            let _ = writeln!(md, "; unigram entropy {h:.4} nats/token (the plateau every model first sits on)");
        }
        None => md.push_str("; unigram entropy unknown (state `unigram_entropy` in the analysis settings to check for plateau runs)\n"),
    }
    let flops: f64 = input.runs.iter().filter_map(|r| r.train_flops).sum();
    let wall: f64 = input.runs.iter().filter_map(|r| r.wall_seconds).sum();
    let _ = writeln!(
        md,
        "- training compute of all runs: {} FLOPs; sum of run wall times {wall:.0} s",
        sci(flops)
    );
    if let Some(n) = note {
        let _ = writeln!(md, "- {n}");
    }
    let _ = writeln!(
        md,
        "- N is the total parameter count of a run (embedding included), as the papers fit on."
    );
    let _ = writeln!(md, "- analysis settings: {}", settings.describe());
    if !input.groups.is_empty() {
        let _ = writeln!(md, "- groups:");
        for g in &input.groups {
            let n = input
                .runs
                .iter()
                .filter(|r| r.groups.iter().any(|(x, _)| x == &g.name))
                .count();
            let _ = writeln!(md, "  - `{}` ({:?}): {n} runs with records", g.name, g.role);
        }
    } else {
        let _ = writeln!(
            md,
            "- no study: every run counts for the size-scan and ablation analyses"
        );
    }
    md.push('\n');
    md
}

/// Every run: id, name, groups, N, lr, seed, steps, FLOPs, status, final loss.
pub fn runs_section(input: &ReportInput) -> String {
    let mut md = String::from("## Runs\n\n");
    let rows: Vec<Vec<String>> = input
        .runs
        .iter()
        .map(|r| {
            let m = &r.curve.meta;
            vec![
                format!("`{}`", m.run_id),
                r.name.clone(),
                m.family.clone(),
                r.groups
                    .iter()
                    .map(|(g, _)| g.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                m.params
                    .map(|p| format!("{p:.0}"))
                    .unwrap_or_else(|| "—".into()),
                m.lr.map(|l| format!("{l:.2e}"))
                    .unwrap_or_else(|| "—".into()),
                m.seed.map(|s| s.to_string()).unwrap_or_else(|| "—".into()),
                r.steps
                    .map(|(a, b)| format!("{a}/{b}"))
                    .unwrap_or_else(|| r.curve.points.len().to_string()),
                r.train_flops.map(sci).unwrap_or_else(|| "—".into()),
                r.epochs
                    .map(|e| format!("{e:.2}"))
                    .unwrap_or_else(|| "—".into()),
                match r.status {
                    RunStatus::Finished => "finished".into(),
                    RunStatus::Diverged if r.curve.points.is_empty() => {
                        "diverged, no points".into()
                    }
                    RunStatus::Diverged => "diverged".into(),
                    RunStatus::Unfinished => "not finished".into(),
                },
                r.final_loss().map(f4).unwrap_or_else(|| "—".into()),
            ]
        })
        .collect();
    md_table(
        &mut md,
        &[
            "id",
            "name",
            "family",
            "groups",
            "N (total params)",
            "lr",
            "seed",
            "steps (evals for CSV)",
            "train FLOPs",
            "epochs",
            "status",
            "final val loss",
        ],
        &rows,
    );
    md.push_str(
        "Epochs: training tokens over the tokens of one pass through the training data.\n\n",
    );
    md
}

// ------------------------------------------------------------------ exclusions and threshold

/// Runs kept out of the analysis, by reason.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Exclusions {
    /// Diverged or unfinished runs (ids).
    pub diverged: Vec<String>,
    /// Runs with no evaluation at all (ids).
    pub no_points: Vec<String>,
    /// Plateau runs: (id, name, lowest loss).
    pub plateau: Vec<(String, String, f64)>,
    /// The plateau level (unigram entropy), when known.
    pub plateau_level: Option<f64>,
    pub margin: f64,
}

impl Exclusions {
    /// Whether a run is left out of every fit and CEG.
    pub fn excluded(&self, id: &str) -> bool {
        self.diverged.iter().any(|x| x == id)
            || self.no_points.iter().any(|x| x == id)
            || self.plateau.iter().any(|x| x.0 == id)
    }

    /// H − margin: the highest loss a run must get below to count.
    pub fn ceiling(&self) -> Option<f64> {
        self.plateau_level.map(|h| h - self.margin)
    }
}

/// Diverged, empty and plateau runs. A plateau run is one whose lowest loss is
/// not at least `margin` below the unigram entropy: its curve says how fast
/// it leaves the plateau, not how efficiently it learns, so it is kept out of
/// every CEG and frontier fit.
pub fn exclusions(input: &ReportInput, settings: &AnalysisSettings) -> Exclusions {
    let level = input.data.unigram_entropy.or(settings.unigram_entropy);
    let mut ex = Exclusions {
        plateau_level: level,
        margin: settings.margin,
        ..Default::default()
    };
    for r in &input.runs {
        if r.curve.points.is_empty() {
            ex.no_points.push(r.id().to_string());
        } else if r.status != RunStatus::Finished || r.curve.meta.diverged {
            ex.diverged.push(r.id().to_string());
        } else if let (Some(h), Some(m)) = (level, r.min_loss()) {
            if m > h - settings.margin {
                ex.plateau.push((r.id().to_string(), r.name.clone(), m));
            }
        }
    }
    ex
}

/// The section listing the excluded runs by name.
pub fn exclusions_section(input: &ReportInput, ex: &Exclusions) -> String {
    let mut md = String::from("## Runs left out\n\n");
    let name = |id: &str| {
        input
            .runs
            .iter()
            .find(|r| r.id() == id)
            .map(|r| r.name.clone())
            .unwrap_or_default()
    };
    if ex.diverged.is_empty() && ex.no_points.is_empty() && ex.plateau.is_empty() {
        md.push_str("No run diverged and every run ends below the plateau by the margin.\n\n");
    }
    for id in &ex.diverged {
        let _ = writeln!(
            md,
            "- `{id}` {}: diverged or not finished (excluded from every fit and CEG)",
            name(id)
        );
    }
    for id in &ex.no_points {
        let _ = writeln!(
            md,
            "- `{id}` {}: diverged, no points (stopped before its first evaluation)",
            name(id)
        );
    }
    if let Some(h) = ex.plateau_level {
        if !ex.plateau.is_empty() {
            let _ = writeln!(
                md,
                "\nPlateau runs: their lowest loss is not {} nats below the unigram entropy {h:.4}, so they never left the plateau every model first sits on; a CEG measured on them would measure how fast a model leaves the plateau. They are kept out of every CEG and frontier fit:\n",
                ex.margin
            );
            for (id, n, m) in &ex.plateau {
                let _ = writeln!(
                    md,
                    "- `{id}` {n}: lowest loss {m:.4} (needs < {:.4})",
                    h - ex.margin
                );
            }
        }
    } else {
        md.push_str("\nThe unigram entropy of the data is unknown, so plateau runs could not be flagged; state `unigram_entropy` in the analysis settings.\n");
    }
    md.push('\n');
    md
}

/// The CEG threshold the report uses, or why there is none.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ThresholdChoice {
    /// L*, when one could be chosen.
    pub value: Option<f64>,
    /// How it was chosen, in words (or why not).
    pub how: String,
}

/// The threshold: the stated one, or `auto`: the lowest loss every compared
/// run (ablation runs that are not excluded) reaches, refused when no run of
/// the reference family, or no run at all, ends at least the margin below
/// the plateau (the refusal names the runs).
pub fn choose_threshold(
    input: &ReportInput,
    settings: &AnalysisSettings,
    ex: &Exclusions,
) -> ThresholdChoice {
    let compared: Vec<&RunEntry> = input
        .runs
        .iter()
        .filter(|r| r.in_role(Role::Ablation) && !r.curve.points.is_empty())
        .collect();
    // The runs the ablation compares (its best rate per variant and seed).
    let kept: Vec<&RunEntry> = ablation_choice(input, ex)
        .into_iter()
        .filter(|r| !r.curve.points.is_empty())
        .collect();
    let plateau_names = || {
        compared
            .iter()
            .filter(|r| ex.plateau.iter().any(|p| p.0 == r.id()))
            .map(|r| format!("`{}` {}", r.id(), r.name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let refused = |why: String| ThresholdChoice {
        value: None,
        how: why,
    };
    let spec = match settings.threshold {
        ThresholdSetting::Fixed(t) => ThresholdSpec::Fixed(t),
        ThresholdSetting::Auto => {
            if kept.is_empty() {
                return refused(format!(
                    "`auto` found no threshold: no compared run ends at least {} nats below the plateau ({}); plateau runs: {}. Train longer or larger, or state a threshold",
                    ex.margin,
                    ex.plateau_level.map(|h| format!("unigram entropy {h:.4}")).unwrap_or_else(|| "unknown".into()),
                    plateau_names()
                ));
            }
            if !kept.iter().any(|r| r.family() == settings.reference) {
                return refused(format!(
                    "`auto` found no threshold: no run of the reference family `{}` ends at least {} nats below the plateau; plateau runs: {}",
                    settings.reference,
                    ex.margin,
                    plateau_names()
                ));
            }
            ThresholdSpec::Auto {
                margin: settings.margin,
            }
        }
    };
    let curves: Vec<&Curve> = if kept.is_empty() {
        compared.iter().map(|r| &r.curve).collect()
    } else {
        kept.iter().map(|r| &r.curve).collect()
    };
    if curves.is_empty() {
        return match spec {
            ThresholdSpec::Fixed(t) => ThresholdChoice {
                value: Some(t),
                how: format!("L* = {t} nats, stated in the analysis settings"),
            },
            ThresholdSpec::Auto { .. } => {
                refused("`auto` found no threshold: no ablation run has an evaluation".into())
            }
        };
    }
    match resolve_threshold(spec, curves, ex.plateau_level) {
        Ok(r) if r.auto => {
            let who = kept
                .iter()
                .filter(|x| x.min_loss() == Some(r.value))
                .map(|x| format!("`{}` {}", x.id(), x.name))
                .collect::<Vec<_>>()
                .join(", ");
            let mut how = format!("L* = {:.4} nats, chosen by `auto`: the lowest loss every compared run reaches (set by {who})", r.value);
            match ex.plateau_level {
                Some(h) => {
                    let _ = write!(how, "; at least {} nats below the unigram entropy {h:.4} and every run's early plateau, as required", ex.margin);
                }
                None => how.push_str("; checked against each run's early plateau only (the unigram entropy is unknown: state `unigram_entropy`)"),
            }
            ThresholdChoice {
                value: Some(r.value),
                how,
            }
        }
        Ok(r) => {
            let mut how = format!("L* = {} nats, stated in the analysis settings", r.value);
            for w in &r.warnings {
                let _ = write!(how, " (warning: {w})");
            }
            ThresholdChoice {
                value: Some(r.value),
                how,
            }
        }
        Err(e) => refused(format!("`auto` found no threshold: {e}")),
    }
}

// ------------------------------------------------------------------ tune

/// The learning-rate tune: loss per lr per family and width.
pub fn tune_section(input: &ReportInput) -> String {
    let mut md = String::from("## Learning-rate tune\n\n");
    let tune: Vec<&RunEntry> = input
        .runs
        .iter()
        .filter(|r| r.groups.iter().any(|(_, ro)| *ro == Role::Tune))
        .collect();
    if tune.is_empty() {
        md.push_str("No tune group.\n\n");
        return md;
    }
    let mut by: BTreeMap<(String, usize), Vec<&RunEntry>> = BTreeMap::new();
    for r in &tune {
        by.entry((r.family().to_string(), r.curve.meta.width.unwrap_or(0)))
            .or_default()
            .push(r);
    }
    let mut rows = Vec::new();
    for ((fam, w), rs) in &by {
        let best = rs
            .iter()
            .filter(|r| r.status == RunStatus::Finished)
            .min_by(|a, b| {
                a.final_loss()
                    .unwrap_or(f64::INFINITY)
                    .total_cmp(&b.final_loss().unwrap_or(f64::INFINITY))
            });
        for r in rs {
            rows.push(vec![
                fam.clone(),
                w.to_string(),
                r.curve
                    .meta
                    .lr
                    .map(|l| format!("{l:.2e}"))
                    .unwrap_or_default(),
                if r.status == RunStatus::Diverged {
                    "diverged".into()
                } else {
                    r.final_loss().map(f4).unwrap_or_else(|| "—".into())
                },
                if best.is_some_and(|b| b.id() == r.id()) {
                    "best".into()
                } else {
                    String::new()
                },
                format!("`{}`", r.id()),
            ]);
        }
    }
    md_table(
        &mut md,
        &["family", "width", "lr", "final val loss", "", "run"],
        &rows,
    );
    if !input.tuned.is_empty() {
        md.push_str("The tuned rates the study's later groups took (best = lowest final validation loss per family and width; the rule fitted to them):\n\n");
        for t in &input.tuned {
            let _ = writeln!(md, "- {t}");
        }
        md.push('\n');
    }
    md
}

// ------------------------------------------------------------------ ablation

/// The ablation runs that enter CEGs: ablation role, not excluded, and per
/// (family, seed) the run with the lowest final validation loss: a variant
/// trained at several learning rates (the tuned rate × 10^±0.5) is compared
/// at its best one, the authors' practice. With one rate per (family, seed)
/// every usable run is kept.
pub fn ablation_choice<'a>(input: &'a ReportInput, ex: &Exclusions) -> Vec<&'a RunEntry> {
    let mut best: Vec<&RunEntry> = Vec::new();
    for r in input
        .runs
        .iter()
        .filter(|r| r.in_role(Role::Ablation) && !ex.excluded(r.id()))
    {
        let key = |x: &RunEntry| (x.family().to_string(), x.curve.meta.seed);
        let loss = |x: &RunEntry| x.final_loss().unwrap_or(f64::INFINITY);
        match best.iter().position(|b| key(b) == key(r)) {
            Some(i) => {
                if loss(r) < loss(best[i]) {
                    best[i] = r;
                }
            }
            None => best.push(r),
        }
    }
    best
}

/// The curves of [`ablation_choice`].
pub fn ablation_curves(input: &ReportInput, ex: &Exclusions) -> Vec<Curve> {
    ablation_choice(input, ex)
        .into_iter()
        .map(|r| r.curve.clone())
        .collect()
}

/// CEG multipliers of each single revert at L*, read as the papers' "modern
/// choice over retro choice" (C_variant / C_modern, > 1 when the modern
/// choice helps), geometric mean over seeds, bootstrap over seeds.
pub fn ablation(
    curves: &[Curve],
    settings: &AnalysisSettings,
    threshold: f64,
) -> std::result::Result<MultiplierReport, String> {
    if !curves.iter().any(|c| c.meta.family == settings.reference) {
        return Err(format!(
            "no usable run of the reference family `{}`",
            settings.reference
        ));
    }
    let opts = MultiplierOptions {
        threshold: Threshold::Fixed(threshold),
        direction: Direction::Ablation,
        bootstrap: settings.bootstrap,
        level: settings.level,
        rng_seed: 0,
        include_diverged: false,
    };
    ceg_multipliers(curves, &settings.reference, &opts).map_err(|e| e.to_string())
}

/// The ablation table and Figure 2.
pub fn ablation_section(
    input: &ReportInput,
    settings: &AnalysisSettings,
    ex: &Exclusions,
    thr: &ThresholdChoice,
    figs: Option<&Path>,
) -> Result<(String, Option<MultiplierReport>)> {
    let mut md = String::from("## Ablation table (Figure 2)\n\n");
    let runs: Vec<&RunEntry> = input
        .runs
        .iter()
        .filter(|r| r.in_role(Role::Ablation))
        .collect();
    if runs.is_empty() {
        md.push_str("No ablation runs.\n\n");
        return Ok((md, None));
    }
    let Some(t) = thr.value else {
        let _ = writeln!(md, "No CEG is reported: {}.\n", thr.how);
        return Ok((md, None));
    };
    let curves = ablation_curves(input, ex);
    let rep = match ablation(&curves, settings, t) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(md, "No CEG multipliers: {e}.\n");
            return Ok((md, None));
        }
    };
    let chosen = ablation_choice(input, ex);
    let several = chosen.iter().any(|c| {
        runs.iter()
            .filter(|r| r.family() == c.family() && r.curve.meta.seed == c.curve.meta.seed)
            .count()
            > 1
    });
    let _ = writeln!(
        md,
        "Threshold: {}. Each multiplier is C_variant(L*) / C_{}(L*), the compute the variant needs to reach L* over the compute the full model needs (geometric mean over seeds; {:.0}% bootstrap interval over seeds, {} replicates): the papers' \"modern choice over the other choice\"; > 1 means the modern choice helps.{}\n",
        thr.how,
        settings.reference,
        100.0 * rep.level,
        rep.bootstrap,
        if several {
            " Each variant was trained at several learning rates (its tuned rate and 10^±0.5 around it): per variant and seed, the run with the lowest final validation loss is kept (the authors' practice); the `lr kept` column lists the rates kept, the `runs` column the runs compared."
        } else {
            ""
        }
    );
    let mut rows = Vec::new();
    for v in &rep.variants {
        let fam_runs: Vec<&&RunEntry> = chosen.iter().filter(|r| r.family() == v.family).collect();
        let mut lrs: Vec<f64> = fam_runs.iter().filter_map(|r| r.curve.meta.lr).collect();
        lrs.sort_by(f64::total_cmp);
        lrs.dedup();
        let published = published::published_multiplier(&v.family)
            .map(|x| format!("{x:.2}"))
            .unwrap_or_default();
        rows.push(vec![
            family_label(&v.family),
            format!("`{}`", v.family),
            format!("{}/{}", v.n_reached, v.n_runs),
            v.compute.map(sci).unwrap_or_else(|| "—".into()),
            if v.family == rep.reference {
                "1 (reference)".into()
            } else {
                v.ceg.map(f4).unwrap_or_else(|| "—".into())
            },
            iv(v.ci),
            published,
            v.note.clone().unwrap_or_default(),
            lrs.iter()
                .map(|l| format!("{l:.2e}"))
                .collect::<Vec<_>>()
                .join(", "),
            ids(fam_runs.iter().map(|r| r.id())),
        ]);
    }
    md_table(
        &mut md,
        &[
            "variant",
            "family",
            "runs reaching L*",
            "C(L*) FLOPs",
            "multiplier",
            "interval",
            "published",
            "note",
            "lr kept",
            "runs",
        ],
        &rows,
    );
    let left: Vec<&str> = runs
        .iter()
        .filter(|r| ex.excluded(r.id()))
        .map(|r| r.id())
        .collect();
    if !left.is_empty() {
        let _ = writeln!(
            md,
            "Left out (diverged or plateau, see above): {}\n",
            ids(left)
        );
    }
    let bars: Vec<cplot::Bar> = rep
        .variants
        .iter()
        .filter(|v| v.family != rep.reference)
        .filter_map(|v| {
            v.ceg.map(|c| cplot::Bar {
                label: family_label(&v.family),
                value: c,
                lo: v.ci.map(|i| i.lo),
                hi: v.ci.map(|i| i.hi),
            })
        })
        .collect();
    if !bars.is_empty() {
        let caption = format!(
            "Figure 2: multiplier of each modern choice over the retro one it is reverted to, at L* = {t:.4} nats; data: {}; {}; bars: geometric mean over seeds, whiskers: {:.0}% bootstrap interval; dashed line: no gain",
            data_words(input, settings),
            seeds_of(runs.iter().copied()),
            100.0 * rep.level
        );
        let title = format!("Figure 2: modern choice over retro choice at L* = {t:.3}");
        md.push_str(&figure(figs, "fig2_ceg_bars", &caption, |p| {
            cplot::ceg_bars_captioned(p, &title, &caption, &bars)
        })?);
    }
    Ok((md, Some(rep)))
}

// ------------------------------------------------------------------ combination

/// The single changes whose product the combination test compares with
/// retro: the `published` suite's swaps to retro's choices
/// ([`published::RETRO_SINGLES`]) when the study has them, else the `reverts`
/// suite's `modern-retro_*` families; those that reach L*.
pub fn single_reverts(rep: &MultiplierReport) -> Vec<String> {
    let reached = |f: &str| rep.variant(f).is_some_and(|v| v.compute.is_some());
    let fine: Vec<String> = published::RETRO_SINGLES
        .iter()
        .filter(|f| rep.variant(f).is_some())
        .filter(|f| reached(f))
        .map(|f| f.to_string())
        .collect();
    if published::RETRO_SINGLES
        .iter()
        .any(|f| rep.variant(f).is_some())
    {
        return fine;
    }
    rep.variants
        .iter()
        .filter(|v| v.family.starts_with("modern-retro_") && v.compute.is_some())
        .map(|v| v.family.clone())
        .collect()
}

/// The combination test: modern over retro measured against the product of
/// the single reverts, with the interaction factor.
pub fn combination_section(
    rep: Option<&MultiplierReport>,
    settings: &AnalysisSettings,
) -> (String, Option<CombinationReport>) {
    let mut md = String::from("## Combination test\n\n");
    let Some(rep) = rep else {
        md.push_str("Needs the ablation multipliers (see above).\n\n");
        return (md, None);
    };
    let singles = single_reverts(rep);
    let retro = rep.variant("retro");
    if singles.is_empty() || retro.is_none_or(|v| v.compute.is_none()) {
        let _ = writeln!(
            md,
            "Not computed: it needs the single reverts and `retro` (all reverts at once) to reach L* = {:.4} ({}).\n",
            rep.threshold,
            match retro {
                None => "no usable `retro` run: every retro run is left out above or absent".to_string(),
                Some(v) => v.note.clone().unwrap_or_else(|| "retro did not reach L*".into()),
            }
        );
        return (md, None);
    }
    let s: Vec<&str> = singles.iter().map(String::as_str).collect();
    match combination_test(rep, &s, "retro", settings.bootstrap, 1) {
        Ok(c) => {
            let _ = writeln!(
                md,
                "At L* = {:.4}: the product of the {} single multipliers predicts {:.3}× {}; modern over retro (every change at once) measures {:.3}× {}; interaction factor I = measured / predicted = {:.3} {} (1: gains multiply; < 1: sub-multiplicative). The papers: 1.33× measured (frontier-based) against about 3.4× predicted, I ≈ 0.39.\n",
                c.threshold,
                s.len(),
                c.predicted.ceg,
                iv(c.predicted.ci),
                c.measured.ceg,
                iv(c.measured.ci),
                c.interaction.ceg,
                iv(c.interaction.ci)
            );
            (md, Some(c))
        }
        Err(e) => {
            let _ = writeln!(md, "Not computed: {e}.\n");
            (md, None)
        }
    }
}

// ------------------------------------------------------------------ curves

/// Every evaluation of the size-scan runs (or every run), by family.
pub fn curves_section(
    input: &ReportInput,
    ex: &Exclusions,
    thr: &ThresholdChoice,
    figs: Option<&Path>,
) -> Result<String> {
    let mut md = String::from("## Training curves\n\n");
    let plotted: Vec<&RunEntry> = input
        .runs
        .iter()
        .filter(|r| r.in_role(Role::Scan) && !r.curve.points.is_empty())
        .collect();
    if plotted.is_empty() {
        md.push_str("No size-scan runs.\n\n");
        return Ok(md);
    }
    let mut fams: Vec<&str> = Vec::new();
    for r in &plotted {
        if !fams.contains(&r.family()) {
            fams.push(r.family());
        }
    }
    let mut c = LogLogChart::new(
        "Validation loss against training compute",
        "training FLOPs",
        "validation loss (nats/token)",
    );
    let mut labelled = Vec::new();
    for r in &plotted {
        let fi = fams.iter().position(|f| *f == r.family()).unwrap_or(0);
        let label = if labelled.contains(&r.family()) {
            String::new()
        } else {
            r.family().to_string()
        };
        labelled.push(r.family());
        let mark = if ex.excluded(r.id()) {
            Mark::Dashed
        } else {
            Mark::Line
        };
        c = c.with(
            Series::new(
                label,
                r.curve.points.iter().map(|p| (p.flops, p.loss)).collect(),
                mark,
            )
            .color(fi),
        );
    }
    let _ = writeln!(
        md,
        "Every evaluation of the {} size-scan runs, coloured by family (dashed: left out above).\n",
        plotted.len()
    );
    let caption = format!(
        "Validation loss of every size-scan run against training compute (dashed: left out); {}; {}; {}",
        threshold_words(thr),
        input.data.describe(),
        seeds_of(plotted.iter().copied())
    );
    md.push_str(&chart(figs, "curves", &caption, &c)?);
    Ok(md)
}

// ------------------------------------------------------------------ frontiers

/// One family's frontier and fitted law.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FamilyFit {
    pub family: String,
    /// Runs that entered the frontier.
    pub runs: Vec<String>,
    pub points: Vec<FrontierPoint>,
    /// L = E + A·C^(−γ); the papers write y = L − E = A·C^α with α = −γ.
    pub law: PowerLaw,
    pub e_fitted: bool,
    pub r2: f64,
    /// Compute range of the fitted points.
    pub range: (f64, f64),
    /// Bootstrap interval of γ (resampling frontier points).
    pub gamma_ci: Option<Interval>,
    /// The bootstrap replicates' laws (for intervals of derived CEGs).
    #[serde(skip)]
    pub replicates: Vec<PowerLaw>,
}

/// The frontier of some curves under the settings: the compute range is
/// applied before the Pareto step (the authors) or after it, by name.
pub fn frontier_points(curves: &[Curve], settings: &AnalysisSettings) -> Vec<FrontierPoint> {
    let opts = match settings.compute_range {
        ComputeRange::All => FrontierOptions::default(),
        ComputeRange::Range(lo, hi) => FrontierOptions {
            min_compute: Some(lo),
            max_compute: Some(hi),
            range_mode: match settings.range_mode {
                RangeMode::BeforePareto => algoprog_scaling::RangeMode::BeforePareto,
                RangeMode::AfterPareto => algoprog_scaling::RangeMode::AfterPareto,
            },
            ..Default::default()
        },
    };
    frontier(curves, &opts)
}

fn law_options(settings: &AnalysisSettings) -> PowerLawOptions {
    PowerLawOptions {
        irreducible: match settings.e {
            ESetting::Fixed(e) => Irreducible::Fixed(e),
            ESetting::Fit => Irreducible::Fitted,
        },
        // With E fixed, least squares on L and on y = L − E are the same problem.
        space: match settings.fit_space {
            FitSpaceSetting::Excess => FitSpace::Linear,
            FitSpaceSetting::Log => FitSpace::Log,
        },
    }
}

/// Fit one family's frontier; the error says why not.
pub fn fit_family(
    family: &str,
    curves: &[Curve],
    settings: &AnalysisSettings,
) -> std::result::Result<FamilyFit, String> {
    let points = frontier_points(curves, settings);
    if points.len() < 3 {
        return Err(format!(
            "{} frontier points in the compute range; a fit needs at least 3",
            points.len()
        ));
    }
    let c: Vec<f64> = points.iter().map(|p| p.flops).collect();
    let l: Vec<f64> = points.iter().map(|p| p.loss).collect();
    let opts = law_options(settings);
    if let Irreducible::Fixed(e) = opts.irreducible {
        if let Some(p) = points.iter().find(|p| p.loss <= e) {
            return Err(format!("a frontier loss ({:.4} at {:.3e} FLOPs, run `{}`) is at or below E = {e}; state a lower E or `fit`", p.loss, p.flops, p.run_id));
        }
    }
    let fit = fit_power_law(&c, &l, &opts).map_err(|e| e.to_string())?;
    if fit.e_fitted && fit.law.e < 0.0 {
        return Err(format!(
            "E fitted to {:.3} < 0: this frontier is too short to identify the irreducible loss; state `e` in the analysis settings",
            fit.law.e
        ));
    }
    if !(fit.law.a > 0.0 && fit.law.gamma > 0.0) {
        return Err(format!("the fit is degenerate (A = {:.3e}, γ = {:.4}): loss does not fall with compute on this frontier", fit.law.a, fit.law.gamma));
    }
    let mut replicates = Vec::new();
    let mut gammas = Vec::new();
    for r in 0..settings.bootstrap {
        let idx = resample_indices(0x5eed ^ family.len() as u64, r, c.len());
        let cc: Vec<f64> = idx.iter().map(|&i| c[i]).collect();
        let ll: Vec<f64> = idx.iter().map(|&i| l[i]).collect();
        if let Ok(f) = fit_power_law(&cc, &ll, &opts) {
            if f.law.a > 0.0 && f.law.gamma > 0.0 && f.law.gamma.is_finite() {
                gammas.push(f.law.gamma);
                replicates.push(f.law);
            }
        }
    }
    let mut runs: Vec<String> = points.iter().map(|p| p.run_id.clone()).collect();
    runs.sort();
    runs.dedup();
    Ok(FamilyFit {
        family: family.into(),
        runs,
        range: (c[0], c[c.len() - 1]),
        gamma_ci: (gammas.len() >= 2).then(|| percentile_interval(&gammas, settings.level)),
        law: fit.law,
        e_fitted: fit.e_fitted,
        r2: fit.r2,
        points,
        replicates,
    })
}

/// Frontier fits per family of the size-scan runs that are not excluded.
pub fn frontier_fits(
    input: &ReportInput,
    settings: &AnalysisSettings,
    ex: &Exclusions,
) -> BTreeMap<String, std::result::Result<FamilyFit, String>> {
    let mut by: BTreeMap<String, Vec<Curve>> = BTreeMap::new();
    for r in input.runs.iter().filter(|r| r.in_role(Role::Scan)) {
        let e = by.entry(r.family().to_string()).or_default();
        if !ex.excluded(r.id()) {
            e.push(r.curve.clone());
        }
    }
    by.into_iter()
        .map(|(f, cs)| {
            let fit = if cs.is_empty() {
                Err("every run of the family is left out above".to_string())
            } else {
                fit_family(&f, &cs, settings)
            };
            (f, fit)
        })
        .collect()
}

/// Frontier fits (Figure 1).
pub fn frontier_section(
    input: &ReportInput,
    settings: &AnalysisSettings,
    fits: &BTreeMap<String, std::result::Result<FamilyFit, String>>,
    thr: &ThresholdChoice,
    figs: Option<&Path>,
) -> Result<String> {
    let mut md = String::from("## Frontiers and power-law fits (Figure 1)\n\n");
    if fits.is_empty() {
        md.push_str("No size-scan runs.\n\n");
        return Ok(md);
    }
    let _ = writeln!(
        md,
        "Per family, the frontier is the Pareto lower envelope of every evaluation of its size-scan runs; compute range {} ({}); L = E + A·C^−γ is fitted to it with E {} ({}). The papers write y = L − E = A·C^α, α = −γ. Intervals: {:.0}% bootstrap over frontier points.\n",
        match settings.compute_range {
            ComputeRange::All => "all".to_string(),
            ComputeRange::Range(a, b) => format!("[{a:.0e}, {b:.0e}]"),
        },
        match settings.range_mode {
            RangeMode::BeforePareto => "applied before the Pareto step, as the authors",
            RangeMode::AfterPareto => "applied to the envelope of all points",
        },
        match settings.e {
            ESetting::Fixed(e) => format!("fixed at {e}"),
            ESetting::Fit => "fitted".into(),
        },
        match settings.fit_space {
            FitSpaceSetting::Excess => "least squares on y = L − E",
            FitSpaceSetting::Log => "least squares on log(L − E)",
        },
        100.0 * settings.level
    );
    let mut rows = Vec::new();
    let mut c = LogLogChart::new(
        "Figure 1: compute frontiers with fitted power laws",
        "training FLOPs",
        "validation loss (nats/token)",
    );
    for (fi, (fam, fit)) in fits.iter().enumerate() {
        let pubd = published::FRONTIERS
            .iter()
            .find(|p| p.0 == fam)
            .map(|p| format!("A = {}, α = {}", p.1, p.2))
            .unwrap_or_default();
        match fit {
            Ok(f) => {
                rows.push(vec![
                    fam.clone(),
                    f.points.len().to_string(),
                    format!(
                        "{:.3}{}",
                        f.law.e,
                        if f.e_fitted { " (fitted)" } else { "" }
                    ),
                    format!("{:.4e}", f.law.a),
                    format!("{:.4}", -f.law.gamma),
                    f.gamma_ci
                        .map(|i| format!("[{:.4}, {:.4}]", -i.hi, -i.lo))
                        .unwrap_or_else(|| "—".into()),
                    f4(f.r2),
                    format!("[{}, {}]", sci(f.range.0), sci(f.range.1)),
                    pubd,
                    ids(f.runs.iter().map(String::as_str)),
                ]);
                c = c.with(
                    Series::new(
                        fam.clone(),
                        f.points.iter().map(|p| (p.flops, p.loss)).collect(),
                        Mark::Rings,
                    )
                    .color(fi),
                );
                let (lo, hi) = f.range;
                let grid: Vec<(f64, f64)> = (0..=40)
                    .map(|i| lo * (hi / lo).powf(i as f64 / 40.0))
                    .map(|x| (x, f.law.loss(x)))
                    .collect();
                c = c.with(Series::new(format!("{fam} fit"), grid, Mark::Dashed).color(fi));
            }
            Err(e) => rows.push(vec![
                fam.clone(),
                "—".into(),
                "—".into(),
                "—".into(),
                "—".into(),
                "—".into(),
                "—".into(),
                "—".into(),
                pubd,
                format!("not fitted: {e}"),
            ]),
        }
    }
    md_table(
        &mut md,
        &[
            "family",
            "frontier points",
            "E",
            "A",
            "α = −γ",
            "α interval",
            "R²",
            "fitted compute range",
            "published (E = 1.9, C4)",
            "runs on the frontier",
        ],
        &rows,
    );
    if fits.values().any(|f| f.is_ok()) {
        let scan: Vec<&RunEntry> = input
            .runs
            .iter()
            .filter(|r| r.in_role(Role::Scan))
            .collect();
        let caption = format!(
            "Figure 1: frontier points (rings) and fitted laws (dashed) per family; {}; {}; {}; {}",
            threshold_words(thr),
            data_words(input, settings),
            seeds_of(scan.iter().copied()),
            settings.describe()
        );
        md.push_str(&chart(figs, "fig1_frontiers", &caption, &c)?);
    }
    Ok(md)
}

// ------------------------------------------------------------------ CEG functions and the matched threshold

/// CEG(C) of `new` over `reference` from two fitted laws.
fn ceg_fn(reference: &PowerLaw, new: &PowerLaw) -> Option<CegFunction> {
    CegFunction::new(*reference, *new).ok()
}

/// CEG functions of the reference family over each other family, extrapolated.
pub fn ceg_functions_section(
    input: &ReportInput,
    settings: &AnalysisSettings,
    fits: &BTreeMap<String, std::result::Result<FamilyFit, String>>,
    thr: &ThresholdChoice,
    figs: Option<&Path>,
) -> Result<String> {
    let mut md = String::from("## CEG functions, extrapolated\n\n");
    let Some(Ok(new)) = fits.get(&settings.reference) else {
        let _ = writeln!(
            md,
            "Needs a fitted frontier of `{}` (see above).\n",
            settings.reference
        );
        return Ok(md);
    };
    let mut rows = Vec::new();
    let mut series = Vec::new();
    let (mut lo_all, mut hi_all) = (f64::INFINITY, 0f64);
    for (fam, fit) in fits {
        let Ok(f) = fit else { continue };
        if fam == &settings.reference {
            continue;
        }
        let Some(func) = ceg_fn(&f.law, &new.law) else {
            continue;
        };
        let r = (f.range.0.max(new.range.0), f.range.1.min(new.range.1));
        let r = if r.0 < r.1 { r } else { new.range };
        lo_all = lo_all.min(r.0);
        hi_all = hi_all.max(r.1);
        let x = func.extrapolate(TARGET_COMPUTE, Some(r)).ok();
        rows.push(vec![
            format!("{} over {fam}", settings.reference),
            format!("[{}, {}]", sci(r.0), sci(r.1)),
            func.eval((r.0 * r.1).sqrt())
                .map(f4)
                .unwrap_or_else(|_| "reference never reaches".into()),
            x.as_ref().map(|x| sci(x.ceg)).unwrap_or_else(|| "—".into()),
            x.as_ref()
                .map(|x| format!("{:+.4}", x.local_exponent))
                .unwrap_or_else(|| "—".into()),
            x.as_ref()
                .map(|x| {
                    if x.scale_invariant {
                        "scale-invariant"
                    } else {
                        "scale-dependent"
                    }
                    .to_string()
                })
                .unwrap_or_default(),
        ]);
        if let Ok(grid) = algoprog_ceg::function::log_grid(r.0 / 10.0, TARGET_COMPUTE, 120) {
            series.push(cplot::Series {
                label: format!("{} over {fam}", settings.reference),
                points: grid
                    .into_iter()
                    .filter_map(|c| func.eval(c).ok().map(|v| (c, v)))
                    .collect(),
            });
        }
    }
    if rows.is_empty() {
        md.push_str("Needs at least one other fitted family.\n\n");
        return Ok(md);
    }
    let _ = writeln!(md, "CEG(C) = C_ref(L_{}(C)) / C from the fitted frontiers: how much more compute the reference family needs to match the loss at compute C; extrapolated to {TARGET_COMPUTE:.0e} FLOPs (far outside the fitted range: an assumption that each law holds there).\n", settings.reference);
    md_table(
        &mut md,
        &[
            "CEG function",
            "fitted range (FLOPs)",
            "CEG at the range's geometric middle",
            &format!("CEG at {TARGET_COMPUTE:.0e}"),
            "d ln CEG / d ln C there",
            "",
        ],
        &rows,
    );
    let series: Vec<cplot::Series> = series
        .into_iter()
        .filter(|s| !s.points.is_empty())
        .collect();
    if !series.is_empty() {
        let caption = format!("CEG(C) of {} over each family from the fitted frontiers (vertical lines: fitted range); {}; {}; {}; {}", settings.reference, threshold_words(thr), data_words(input, settings), seeds_of(input.runs.iter().filter(|r| r.in_role(Role::Scan))), settings.describe());
        md.push_str(&figure(figs, "ceg_functions", &caption, |p| {
            cplot::ceg_curves(
                p,
                "CEG(C) from the fitted frontiers",
                &series,
                Some((lo_all, hi_all)),
            )
        })?);
    }
    Ok(md)
}

/// A frontier-based CEG at a matched threshold.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MatchedCeg {
    pub new: String,
    pub reference: String,
    pub threshold: f64,
    pub ceg: f64,
    pub ci: Option<Interval>,
    /// Whether L* lies below the loss range of either frontier (extrapolated).
    pub extrapolated: bool,
}

/// C_ref(L*) / C_new(L*) from two frontier fits, with a bootstrap interval
/// from their replicates (independent resamples of each frontier).
pub fn matched_ceg(
    new: &FamilyFit,
    reference: &FamilyFit,
    threshold: f64,
    level: f64,
) -> Option<MatchedCeg> {
    let c_new = new.law.compute_at(threshold)?;
    let c_ref = reference.law.compute_at(threshold)?;
    let n = new.replicates.len().min(reference.replicates.len());
    let reps: Vec<f64> = (0..n)
        .filter_map(|i| {
            Some(
                reference.replicates[i].compute_at(threshold)?
                    / new.replicates[i].compute_at(threshold)?,
            )
        })
        .filter(|x| x.is_finite() && *x > 0.0)
        .collect();
    let min_loss = |f: &FamilyFit| {
        f.points
            .iter()
            .map(|p| p.loss)
            .fold(f64::INFINITY, f64::min)
    };
    Some(MatchedCeg {
        new: new.family.clone(),
        reference: reference.family.clone(),
        threshold,
        ceg: c_ref / c_new,
        ci: (reps.len() >= 2).then(|| percentile_interval(&reps, level)),
        extrapolated: threshold < min_loss(new) || threshold < min_loss(reference),
    })
}

/// Transformer over LSTM (and modern over retro) at the study's threshold,
/// frontier-based, as the papers' 6.28 and 4.69 at y* = 3.377.
pub fn matched_section(
    settings: &AnalysisSettings,
    fits: &BTreeMap<String, std::result::Result<FamilyFit, String>>,
    thr: &ThresholdChoice,
) -> (String, Vec<MatchedCeg>) {
    let mut md = String::from("## Transformer over LSTM at a matched threshold\n\n");
    let Some(t) = thr.value else {
        let _ = writeln!(md, "Not computed: {}.\n", thr.how);
        return (md, Vec::new());
    };
    let pairs = [
        ("modern", "lstm", published::MODERN_OVER_LSTM),
        ("retro", "lstm", published::RETRO_OVER_LSTM),
        ("modern", "retro", published::MODERN_OVER_RETRO),
    ];
    let mut out = Vec::new();
    let mut rows = Vec::new();
    for (a, b, p) in pairs {
        match (fits.get(a), fits.get(b)) {
            (Some(Ok(fa)), Some(Ok(fb))) => match matched_ceg(fa, fb, t, settings.level) {
                Some(m) => {
                    rows.push(vec![
                        format!("{a} over {b}"),
                        f4(m.ceg),
                        iv(m.ci),
                        format!("{p:.2}"),
                        if m.extrapolated {
                            "L* below a frontier's lowest loss: extrapolated".into()
                        } else {
                            String::new()
                        },
                    ]);
                    out.push(m);
                }
                None => rows.push(vec![
                    format!("{a} over {b}"),
                    "—".into(),
                    "—".into(),
                    format!("{p:.2}"),
                    format!("a frontier never reaches L* = {t:.4} (its E is above it)"),
                ]),
            },
            _ => rows.push(vec![
                format!("{a} over {b}"),
                "—".into(),
                "—".into(),
                format!("{p:.2}"),
                "needs fitted frontiers of both families".into(),
            ]),
        }
    }
    let _ = writeln!(md, "C_ref(L*) / C_new(L*) from the two fitted frontiers at the study's threshold L* = {t:.4} (the papers: at L* = 5.277, y* = 3.377). Interval: {:.0}% bootstrap over the frontier points of both.\n", 100.0 * settings.level);
    md_table(
        &mut md,
        &[
            "frontier-based CEG",
            "this study",
            "interval",
            "published",
            "note",
        ],
        &rows,
    );
    (md, out)
}

// ------------------------------------------------------------------ Kaplan vs Chinchilla

/// The allocation comparison's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KaplanResult {
    /// The law used and where it came from.
    pub law: ChinchillaLaw,
    pub law_source: String,
    /// True when the law is the study's own fit.
    pub measured: bool,
    pub rule: KaplanRuleSetting,
    /// CEG of the optimal allocation over Kaplan's at 1e23 FLOPs.
    pub ceg_1e23: f64,
}

/// The library's Kaplan rule of a setting.
pub fn kaplan_rule(rule: KaplanRuleSetting) -> KaplanRule {
    match rule {
        KaplanRuleSetting::Kaplan2020 => KaplanRule::Kaplan2020,
        KaplanRuleSetting::Appendix => KaplanRule::Appendix,
    }
}

/// L(N, D) fitted to the reference family's scan when the fit is plausible
/// (0 < α, β ≤ 2, E below the lowest loss), else Hoffmann et al.'s law.
pub fn allocation_law(
    input: &ReportInput,
    settings: &AnalysisSettings,
    ex: &Exclusions,
) -> (ChinchillaLaw, String, bool) {
    let scan: Vec<Curve> = input
        .runs
        .iter()
        .filter(|r| {
            r.in_role(Role::Scan) && r.family() == settings.reference && !ex.excluded(r.id())
        })
        .map(|r| r.curve.clone())
        .collect();
    let published = (
        algoprog_ceg::kaplan::hoffmann_law(),
        "Hoffmann et al. (2022), published".to_string(),
        false,
    );
    if scan.len() < 3 || scan.iter().any(|c| c.meta.params.is_none()) {
        return (
            published.0,
            format!(
                "{} (the study has fewer than 3 usable {} scan runs with N to fit its own)",
                published.1, settings.reference
            ),
            false,
        );
    }
    let fitted = ChinchillaData::from_curves(&scan, TokensSource::Column).and_then(|d| {
        let opts = ChinchillaOptions {
            pruning: Pruning::Screen {
                screen_iters: 30,
                keep: 40,
            },
            ..Default::default()
        };
        fit_chinchilla(&d, &opts)
    });
    match fitted {
        Ok(f) => {
            let l = f.law;
            let min_loss = scan
                .iter()
                .filter_map(|c| c.min_loss())
                .fold(f64::INFINITY, f64::min);
            if l.alpha > 0.0 && l.alpha <= 2.0 && l.beta > 0.0 && l.beta <= 2.0 && l.e < min_loss {
                (l, format!("fitted to the {} scan (E = {:.3}, A = {:.3e}, α = {:.3}, B = {:.3e}, β = {:.3})", settings.reference, l.e, l.a, l.alpha, l.b, l.beta), true)
            } else {
                (published.0, format!("{} (the study's own fit, α = {:.3}, β = {:.3}, E = {:.3}, is not usable: the scan is too small to tell N from D)", published.1, l.alpha, l.beta, l.e), false)
            }
        }
        Err(e) => (
            published.0,
            format!("{} (the study's own fit failed: {e})", published.1),
            false,
        ),
    }
}

/// Kaplan vs Chinchilla (Figure 3).
pub fn kaplan_section(
    input: &ReportInput,
    settings: &AnalysisSettings,
    ex: &Exclusions,
    figs: Option<&Path>,
) -> Result<(String, Option<KaplanResult>)> {
    let mut md = String::from("## Kaplan vs Chinchilla (Figure 3)\n\n");
    let (law, source, measured) = allocation_law(input, settings, ex);
    let rule = kaplan_rule(settings.kaplan_rule);
    let (worse, better) = rule
        .allocations()
        .expect("the rules a study can name have allocation paths");
    let rep = match compare_allocations(&law, worse, better, 1e15, 1e25, 11, K) {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(md, "Allocation comparison failed: {e}\n");
            return Ok((md, None));
        }
    };
    let ceg = rule.ceg_under(&law, TARGET_COMPUTE, K).unwrap_or(f64::NAN);
    let _ = writeln!(
        md,
        "Kaplan rule `{}`: {}. Better allocation: {}. Law: {source}. The table gives the loss along both paths (C = 6·N·D) and CEG(C) = C / C_better(L_Kaplan(C)), the compute the better allocation needs to match Kaplan's loss at C. CEG at 1e23 FLOPs: **{:.4}** (published: {} under Hoffmann's law with Kaplan et al. 2020's rule).\n",
        rule.name(),
        rule.description(),
        better.label(),
        ceg,
        published::KAPLAN_CEG_1E23
    );
    let rows: Vec<Vec<String>> = rep
        .points
        .iter()
        .map(|p| {
            vec![
                sci(p.compute),
                sci(p.n_worse),
                f4(p.loss_worse),
                sci(p.n_better),
                f4(p.loss_better),
                f4(p.ceg),
            ]
        })
        .collect();
    md_table(
        &mut md,
        &[
            "C FLOPs",
            "N (Kaplan)",
            "L (Kaplan)",
            "N (better)",
            "L (better)",
            "CEG of the better allocation",
        ],
        &rows,
    );
    if let Ok(dense) = compare_allocations(&law, worse, better, 1e15, 1e25, 200, K) {
        let loss = vec![
            cplot::Series {
                label: worse.label(),
                points: dense
                    .points
                    .iter()
                    .map(|p| (p.compute, p.loss_worse))
                    .collect(),
            },
            cplot::Series {
                label: better.label(),
                points: dense
                    .points
                    .iter()
                    .map(|p| (p.compute, p.loss_better))
                    .collect(),
            },
        ];
        let cg: Vec<(f64, f64)> = dense.points.iter().map(|p| (p.compute, p.ceg)).collect();
        let caption = format!("Figure 3: loss along each allocation path and the CEG of the optimal one, under {source}; no threshold, data or seeds (a law, not runs)");
        md.push_str(&figure(figs, "fig3_kaplan_chinchilla", &caption, |p| {
            cplot::allocation_chart(p, &loss, &cg)
        })?);
    }
    Ok((
        md,
        Some(KaplanResult {
            law,
            law_source: source,
            measured,
            rule: settings.kaplan_rule,
            ceg_1e23: ceg,
        }),
    ))
}

// ------------------------------------------------------------------ decomposition

/// The decomposition and what in it this study measured.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StudyDecomposition {
    pub decomposition: Decomposition,
    /// Lines "item: what the study put in".
    pub measured: Vec<String>,
}

fn split_published(v: f64, first: f64, second: f64) -> (f64, f64) {
    // A measured seam that covers two published items is split over them in
    // the published log ratio.
    let w = first.ln() / (first * second).ln();
    (v.powf(w), v.powf(1.0 - w))
}

/// The authors' decomposition of progress, 2012 → 2023 (their timeline:
/// compute trend 1e16·4.1^(year − 2013), stepwise items, the LSTM →
/// Transformer gain divided by the rebalancing gain, the six refinements
/// normalised to the measured combined gain, mixture of experts, Chinchilla),
/// with this study's fitted frontiers, measured multipliers and combined gain
/// put in where it has them; every item says which.
pub fn decomposition(
    settings: &AnalysisSettings,
    ablation: Option<&MultiplierReport>,
    combination: Option<&CombinationReport>,
    fits: &BTreeMap<String, std::result::Result<FamilyFit, String>>,
    kaplan: Option<&KaplanResult>,
) -> std::result::Result<StudyDecomposition, String> {
    let mut t = Timeline::paper();
    let mut measured = Vec::new();
    let e = |x: algoprog_ceg::CegError| x.to_string();
    if let Some(rep) = ablation {
        let fam = |f: &str| rep.variant(f).and_then(|v| v.ceg).filter(|v| *v > 0.0);
        // The published suite's single swaps measure the items one by one.
        let sw = |choice: &str| fam(&format!("modern-{choice}"));
        // The reverts suite's seams (and the published suite's swap for the same item).
        let m = |seam: &str| {
            fam(&format!("modern-retro_{seam}")).or(match seam {
                "schedule" => sw("inverse_sqrt"),
                "feed_forward" => sw("gelu"),
                _ => None,
            })
        };
        let at = format!("at L* = {:.4}", rep.threshold);
        let mut positional_done = false;
        let mut norm_done = false;
        if let (Some(sin), Some(learned)) = (sw("sinusoidal"), sw("learned")) {
            let note = format!("measured rotary over sinusoidal {sin:.4} and over learned {learned:.4} {at}: sinusoidal → learned = their ratio");
            t.set_constant(
                "sinusoidal",
                sin / learned,
                Source::Measured,
                Some(note.clone()),
            )
            .map_err(e)?;
            t.set_constant("rotary", learned, Source::Measured, Some(note))
                .map_err(e)?;
            measured.push(format!(
                "sinusoidal → learned: {:.4}, learned → rotary: {learned:.4} (measured)",
                sin / learned
            ));
            positional_done = true;
        }
        if let (Some(post), Some(ln)) = (sw("post_norm"), sw("layer_norm")) {
            let note = format!("measured pre-norm over post-norm {post:.4} and RMSNorm over LayerNorm {ln:.4} {at}");
            t.set_constant("pre_layer", post, Source::Measured, Some(note.clone()))
                .map_err(e)?;
            t.set_constant("pre_rms", ln, Source::Measured, Some(note))
                .map_err(e)?;
            measured.push(format!(
                "post → pre-norm: {post:.4}, LayerNorm → RMSNorm: {ln:.4} (measured)"
            ));
            norm_done = true;
        }
        if let Some(v) = m("schedule") {
            t.set_constant(
                "sqrt_cosine",
                v,
                Source::Measured,
                Some(format!("measured cosine over inverse-sqrt {at}")),
            )
            .map_err(e)?;
            measured.push(format!("inverse-sqrt → cosine: {v:.4} (measured)"));
        }
        if let Some(v) = m("feed_forward") {
            t.set_constant(
                "gelu_swiglu",
                v,
                Source::Measured,
                Some(format!("measured SwiGLU over GeLU {at}")),
            )
            .map_err(e)?;
            measured.push(format!(
                "GeLU → SwiGLU: {v:.4} (measured; normalisation only, as the authors)"
            ));
        }
        if let Some(v) = m("positional").filter(|_| !positional_done) {
            let (a, b) = split_published(v, 1.44 / 1.26, 1.26);
            let note = format!("measured rotary over sinusoidal {v:.4} {at}, split over sinusoidal → learned and learned → rotary in the published log ratio");
            t.set_constant("sinusoidal", a, Source::Mixed, Some(note.clone()))
                .map_err(e)?;
            t.set_constant("rotary", b, Source::Mixed, Some(note))
                .map_err(e)?;
            measured.push(format!("sinusoidal → learned → rotary: {v:.4} measured as one seam, split {a:.4} × {b:.4} in the published ratio"));
        }
        if let Some(v) = m("norm").filter(|_| !norm_done) {
            // The default retro keeps RMSNorm blocks (the authors' runs), so
            // the norm revert measures post → pre-norm; RMSNorm over
            // LayerNorm stays published.
            let note = format!("measured pre-norm over post-norm {v:.4} {at} (RMSNorm blocks on both sides; the final norm a LayerNorm in the post-norm model)");
            t.set_constant("pre_layer", v, Source::Measured, Some(note))
                .map_err(e)?;
            measured.push(format!(
                "post → pre-norm: {v:.4} measured (RMSNorm blocks on both sides); LayerNorm → RMSNorm published"
            ));
        }
    }
    if let Some(c) = combination {
        t.set_normalisation_target(
            c.measured.ceg,
            Source::Measured,
            Some(format!(
                "measured modern over retro at L* = {:.4}",
                c.threshold
            )),
        )
        .map_err(e)?;
        measured.push(format!(
            "interaction normalisation target: {:.4} (measured modern over retro)",
            c.measured.ceg
        ));
    }
    let kaplan_measured = kaplan.is_some_and(|k| k.measured);
    if let (Some(Ok(l)), Some(Ok(r))) = (fits.get("lstm"), fits.get("retro")) {
        let src = if kaplan_measured {
            Source::Measured
        } else {
            Source::Mixed
        };
        t.set_frontiers(
            "kaplan",
            l.law,
            r.law,
            src,
            Some("this study's LSTM and retro frontiers, divided by the rebalancing gain".into()),
        )
        .map_err(e)?;
        measured.push("LSTM → Transformer: this study's fitted LSTM and retro frontiers".into());
    }
    if let Some(k) = kaplan.filter(|k| k.measured) {
        let rule = kaplan_rule(settings.kaplan_rule);
        if let Some((worse, better)) = rule.allocations() {
            t.replace_rebalancing(
                Gain::Allocation {
                    law: k.law,
                    worse,
                    better,
                    k: K,
                },
                Source::Measured,
                Some(format!("under {}", k.law_source)),
            )
            .map_err(e)?;
            measured.push("Kaplan → Chinchilla rebalancing: under the study's own L(N, D)".into());
        }
    }
    let d = decompose(&t).map_err(e)?;
    Ok(StudyDecomposition {
        decomposition: d,
        measured,
    })
}

/// The decomposition section.
pub fn decomposition_section(
    input: &ReportInput,
    result: &std::result::Result<StudyDecomposition, String>,
    thr: &ThresholdChoice,
    figs: Option<&Path>,
) -> Result<String> {
    let mut md = String::from("## Decomposition of progress\n\n");
    let sd = match result {
        Ok(sd) => sd,
        Err(e) => {
            let _ = writeln!(md, "Not computed: {e}.\n");
            return Ok(md);
        }
    };
    let d = &sd.decomposition;
    let _ = writeln!(
        md,
        "The authors' timeline ({:.0} → {:.0}; compute {} → {} FLOPs on the trend 1e16 FLOPs in 2013, ×4.1 per year; each item counts from the compute of its year on), with this study's numbers where it has them (source column). Total gain **{:.2}×** ({:.4}× per year); {:.2}% of it (in log terms) scale-dependent. The published test vector: 6926.35×, 89.33% scale-dependent.\n",
        d.start_year,
        d.target_year,
        sci(d.start_compute),
        sci(d.compute),
        d.total_gain,
        d.annual_growth.unwrap_or(f64::NAN),
        100.0 * d.scale_dependent_share
    );
    if sd.measured.is_empty() {
        md.push_str("This study measured none of the items (see the sections above): every number below is the published one.\n\n");
    } else {
        md.push_str("From this study:\n\n");
        for m in &sd.measured {
            let _ = writeln!(md, "- {m}");
        }
        md.push('\n');
    }
    let rows: Vec<Vec<String>> = d
        .items
        .iter()
        .map(|s| {
            vec![
                s.label.clone(),
                format!("{}", s.year),
                s.source.name().to_string(),
                f4(s.raw_ceg),
                f4(s.ceg),
                format!("{:.2}%", 100.0 * s.share),
                if s.scale_invariant {
                    "invariant"
                } else {
                    "dependent"
                }
                .into(),
                s.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    md_table(
        &mut md,
        &[
            "innovation",
            "year",
            "source",
            "CEG at the target year",
            "after normalisation",
            "share of ln gain",
            "scale",
            "note",
        ],
        &rows,
    );
    let bars: Vec<cplot::Bar> = d
        .items
        .iter()
        .filter(|s| s.ceg.is_finite() && s.ceg > 0.0)
        .map(|s| cplot::Bar {
            label: s.label.clone(),
            value: s.ceg,
            lo: None,
            hi: None,
        })
        .collect();
    let by_year: Vec<(f64, f64)> = d.by_year.iter().map(|y| (y.year, y.gain)).collect();
    if !bars.is_empty() {
        let title = format!(
            "gain {:.0} → {:.0}: {:.0}×",
            d.start_year, d.target_year, d.total_gain
        );
        let caption = format!(
            "Decomposition: each item's CEG at {:.0} and the cumulative gain by year; measured items from {} ({}) at the {}, the others published",
            d.target_year,
            input.data.describe(),
            seeds_of(input.runs.iter().filter(|r| r.in_role(Role::Ablation))),
            threshold_words(thr)
        );
        md.push_str(&figure(figs, "decomposition", &caption, |p| {
            cplot::decomposition_chart(p, &title, &bars, &by_year)
        })?);
    }
    Ok(md)
}

// ------------------------------------------------------------------ reference dependence

/// Reference dependence (the later paper): the same state of the art (the
/// modern Transformer with mixture of experts) measured against three
/// references: an LSTM (MoE × the LSTM → modern frontier CEG), a
/// Kaplan-allocated Transformer (MoE × the rebalancing CEG) and a dense
/// Transformer (MoE alone), year by year on the compute trend, with the
/// growth d ln CEG / d year. The LSTM reference uses this study's LSTM and
/// modern frontiers when it has both, the published ones otherwise.
pub fn reference_section(
    fits: &BTreeMap<String, std::result::Result<FamilyFit, String>>,
) -> String {
    let mut md = String::from("## Reference dependence\n\n");
    let mut refs = algoprog_ceg::paper_references();
    let own = match (fits.get("lstm"), fits.get("modern")) {
        (Some(Ok(l)), Some(Ok(m))) if CegFunction::new(l.law, m.law).is_ok() => {
            refs[0].1 = Gain::Product {
                factors: vec![
                    Gain::constant(2.0),
                    Gain::Function {
                        reference: l.law,
                        new: m.law,
                    },
                ],
            };
            true
        }
        _ => false,
    };
    let _ = writeln!(
        md,
        "The authors' reference dependence: the same state of the art (modern Transformer with mixture of experts, 2.0×) measured against an LSTM (2.0 × the LSTM → modern frontier CEG; frontiers: {}), a Kaplan-allocated Transformer (2.0 × the rebalancing CEG) and a dense Transformer (2.0 alone), at each year's compute (1e16 FLOPs in 2013, ×4.1 per year). The later paper: against LSTMs measured progress grows with compute; against dense Transformers it does not grow at all.\n",
        if own { "this study's fits" } else { "the published fits (this study has not fitted both)" }
    );
    match algoprog_ceg::reference_growth(&refs, &ComputeTrend::default(), 2012.0, 2023.0) {
        Ok(series) => {
            let rows: Vec<Vec<String>> = series
                .iter()
                .map(|r| {
                    let first = r.points.first();
                    let last = r.points.last();
                    vec![
                        r.reference.clone(),
                        first.map(|p| sci(p.ceg)).unwrap_or_else(|| "—".into()),
                        last.map(|p| sci(p.ceg)).unwrap_or_else(|| "—".into()),
                        last.map(|p| format!("{:+.2}%", 100.0 * p.log_growth))
                            .unwrap_or_else(|| "—".into()),
                    ]
                })
                .collect();
            md_table(
                &mut md,
                &[
                    "reference",
                    "measured CEG in 2012",
                    "measured CEG in 2023",
                    "growth in 2023 (100 · d ln CEG / d year)",
                ],
                &rows,
            );
        }
        Err(e) => {
            let _ = writeln!(md, "Not computed: {e}.\n");
        }
    }
    md
}

// ------------------------------------------------------------------ published vs this study

/// One row of the side-by-side table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PublishedRow {
    pub quantity: String,
    pub published: String,
    pub this_study: String,
    pub interval: String,
    pub note: String,
}

/// Everything the report computed.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Analysis {
    pub threshold: Option<ThresholdChoice>,
    pub exclusions: Exclusions,
    pub ablation: Option<MultiplierReport>,
    pub combination: Option<CombinationReport>,
    #[serde(skip)]
    pub fits: BTreeMap<String, std::result::Result<FamilyFit, String>>,
    pub matched: Vec<MatchedCeg>,
    pub kaplan: Option<KaplanResult>,
    #[serde(skip)]
    pub decomposition: Option<std::result::Result<StudyDecomposition, String>>,
    pub published: Vec<PublishedRow>,
    pub findings: Vec<Finding>,
}

/// How this study's setup differs from the papers', for the notes.
pub fn setup_difference(input: &ReportInput, settings: &AnalysisSettings) -> String {
    let mut d = Vec::new();
    let words = data_words(input, settings);
    let is_c4 = words.to_ascii_lowercase().contains("c4");
    if !is_c4 {
        d.push(format!("data: {words}, not C4 with GPT-2's tokenizer"));
    }
    let max_n = input
        .runs
        .iter()
        .filter_map(|r| r.curve.meta.params)
        .fold(0f64, f64::max);
    if max_n > 0.0 && max_n < 3.6e6 {
        d.push(format!(
            "scale: at most {max_n:.0} parameters (the papers' ablations: 3.6M)"
        ));
    }
    d.join("; ")
}

/// The rows of "Published vs this study": every published number the study measures.
pub fn published_rows(
    input: &ReportInput,
    settings: &AnalysisSettings,
    a: &Analysis,
) -> Vec<PublishedRow> {
    let setup = setup_difference(input, settings);
    let thr_note = |t: f64| {
        if (t - published::THRESHOLD).abs() > 1e-9 {
            format!("L* = {t:.4} (papers: 5.277)")
        } else {
            String::new()
        }
    };
    let join = |parts: &[String]| {
        parts
            .iter()
            .filter(|s| !s.is_empty())
            .cloned()
            .collect::<Vec<_>>()
            .join("; ")
    };
    let mut rows = Vec::new();
    let not_measured = |why: &str| {
        (
            String::from("not measured"),
            String::from("—"),
            why.to_string(),
        )
    };
    // Ablation multipliers.
    // The reverts suite's rows, unless the study ran the published suite instead.
    let only_swaps = a.ablation.as_ref().is_some_and(|rep| {
        rep.variants
            .iter()
            .any(|v| published::SWAPS.iter().any(|s| s.0 == v.family))
            && !rep
                .variants
                .iter()
                .any(|v| v.family.starts_with("modern-retro_"))
    });
    for ab in published::ABLATIONS.iter().filter(|_| !only_swaps) {
        let fam = format!("modern-retro_{}", ab.seam);
        let (v, i, why) = match &a.ablation {
            Some(rep) => match rep.variant(&fam) {
                Some(vc) if vc.ceg.is_some() => {
                    (f3(vc.ceg.unwrap()), iv(vc.ci), thr_note(rep.threshold))
                }
                Some(vc) => {
                    not_measured(&vc.note.clone().unwrap_or_else(|| "did not reach L*".into()))
                }
                None => not_measured("no usable run of this revert"),
            },
            None if a.threshold.as_ref().is_some_and(|t| t.value.is_none()) => {
                not_measured("no threshold (see the ablation section)")
            }
            None => not_measured("no ablation multipliers"),
        };
        rows.push(PublishedRow {
            quantity: format!("{} ({})", ab.comparison, fam),
            published: format!("{:.2}", ab.value),
            this_study: v,
            interval: i,
            note: join(&[why, ab.note.to_string(), setup.clone()]),
        });
    }
    // The published suite's swaps.
    if let Some(rep) = &a.ablation {
        for (fam, words, p) in published::SWAPS {
            let Some(vc) = rep.variant(fam) else { continue };
            let (v, i, why) = match vc.ceg {
                Some(c) => (f3(c), iv(vc.ci), thr_note(rep.threshold)),
                None => not_measured(&vc.note.clone().unwrap_or_else(|| "did not reach L*".into())),
            };
            rows.push(PublishedRow {
                quantity: format!("{words} ({fam})"),
                published: p.map(|x| format!("{x:.2}")).unwrap_or_else(|| "—".into()),
                this_study: v,
                interval: i,
                note: join(&[why, setup.clone()]),
            });
        }
    }
    // Combination.
    match &a.combination {
        Some(c) => {
            rows.push(PublishedRow {
                quantity: "modern over retro, all changes at once".into(),
                published: format!("{:.2} (frontier-based)", published::MODERN_OVER_RETRO),
                this_study: f3(c.measured.ceg),
                interval: iv(c.measured.ci),
                note: join(&[
                    "run-based at L*".into(),
                    thr_note(c.threshold),
                    setup.clone(),
                ]),
            });
            rows.push(PublishedRow {
                quantity: "product of the single multipliers".into(),
                published: format!("~{:.1}", published::PRODUCT_OF_SINGLES),
                this_study: f3(c.predicted.ceg),
                interval: iv(c.predicted.ci),
                note: join(&[
                    format!(
                        "interaction I = {} {}",
                        f3(c.interaction.ceg),
                        iv(c.interaction.ci)
                    ),
                    setup.clone(),
                ]),
            });
        }
        None => {
            let (v, i, why) =
                not_measured("the combination test needs retro and the single reverts to reach L*");
            rows.push(PublishedRow {
                quantity: "modern over retro, all changes at once".into(),
                published: format!("{:.2}", published::MODERN_OVER_RETRO),
                this_study: v,
                interval: i,
                note: why,
            });
        }
    }
    // Frontier exponents.
    for (fam, pa, palpha) in published::FRONTIERS {
        let (v, i, why) = match a.fits.get(*fam) {
            Some(Ok(f)) => (
                format!("{:.4}", -f.law.gamma),
                f.gamma_ci
                    .map(|g| format!("[{:.4}, {:.4}]", -g.hi, -g.lo))
                    .unwrap_or_else(|| "—".into()),
                format!(
                    "E = {:.3}{}; range {}",
                    f.law.e,
                    if f.e_fitted { " fitted" } else { "" },
                    match settings.compute_range {
                        ComputeRange::All => "all".to_string(),
                        ComputeRange::Range(lo, hi) => format!("[{lo:.0e}, {hi:.0e}]"),
                    }
                ),
            ),
            Some(Err(e)) => not_measured(&format!("not fitted: {e}")),
            None => not_measured("no size-scan runs of this family"),
        };
        rows.push(PublishedRow {
            quantity: format!("frontier exponent α of `{fam}` (y = A·C^α)"),
            published: format!("{palpha} (A = {pa}, E = 1.9)"),
            this_study: v,
            interval: i,
            note: join(&[why, setup.clone()]),
        });
    }
    // Matched-threshold CEGs.
    for (new, reference, p) in [
        ("modern", "lstm", published::MODERN_OVER_LSTM),
        ("retro", "lstm", published::RETRO_OVER_LSTM),
    ] {
        let (v, i, why) = match a
            .matched
            .iter()
            .find(|m| m.new == new && m.reference == reference)
        {
            Some(m) => (
                f3(m.ceg),
                iv(m.ci),
                join(&[
                    thr_note(m.threshold),
                    if m.extrapolated {
                        "extrapolated below a frontier's lowest loss".into()
                    } else {
                        String::new()
                    },
                ]),
            ),
            None => not_measured("needs both frontiers fitted and a threshold"),
        };
        rows.push(PublishedRow {
            quantity: format!("{new} Transformer over LSTM, frontier-based at a matched threshold"),
            published: format!("{p:.2}"),
            this_study: v,
            interval: i,
            note: join(&[why, setup.clone()]),
        });
    }
    // Kaplan -> Chinchilla.
    if let Some(k) = &a.kaplan {
        rows.push(PublishedRow {
            quantity: "Kaplan → Chinchilla CEG at 1e23 FLOPs".into(),
            published: format!("{}", published::KAPLAN_CEG_1E23),
            this_study: f4(k.ceg_1e23),
            interval: "—".into(),
            note: if k.measured {
                format!("under the study's own L(N, D): {}", k.law_source)
            } else {
                "computed from the published law (not measured by this study)".into()
            },
        });
    }
    // Decomposition shares.
    if let Some(res) = &a.decomposition {
        let pubs = [
            (
                "decomposition 2012 → 2023: total gain",
                format!("{:.2}×", published::DECOMP_TOTAL),
                "total",
            ),
            (
                "decomposition: scale-dependent share",
                format!("{:.2}%", 100.0 * published::DECOMP_SCALE_DEPENDENT_SHARE),
                "dep",
            ),
            (
                "decomposition: LSTM → Transformer share",
                format!("{:.2}%", 100.0 * published::DECOMP_TRANSFORMER_SHARE),
                "kaplan",
            ),
            (
                "decomposition: Chinchilla share",
                format!("{:.2}%", 100.0 * published::DECOMP_CHINCHILLA_SHARE),
                "chinchilla",
            ),
            (
                "decomposition: scale-invariant share",
                format!("{:.2}%", 100.0 * published::DECOMP_SCALE_INVARIANT_SHARE),
                "inv",
            ),
        ];
        for (q, p, key) in pubs {
            let (v, note) = match res {
                Ok(sd) if !sd.measured.is_empty() => {
                    let d = &sd.decomposition;
                    let pct = |x: f64| format!("{:.2}%", 100.0 * x);
                    let v = match key {
                        "total" => format!("{:.2}×", d.total_gain),
                        "dep" => pct(d.scale_dependent_share),
                        "inv" => pct(d.scale_invariant_share),
                        k => d
                            .item(k)
                            .map(|s| pct(s.share))
                            .unwrap_or_else(|| "—".into()),
                    };
                    (v, format!("the authors' timeline with {} measured input(s), the rest published (see the decomposition section)", sd.measured.len()))
                }
                Ok(_) => (
                    "not measured".into(),
                    "the study measured none of the decomposition's inputs".into(),
                ),
                Err(e) => ("not measured".into(), format!("decomposition failed: {e}")),
            };
            rows.push(PublishedRow {
                quantity: q.into(),
                published: p,
                this_study: v,
                interval: "—".into(),
                note,
            });
        }
    }
    rows
}

/// The "Published vs this study" section.
pub fn published_section(rows: &[PublishedRow]) -> String {
    let mut md = String::from("## Published vs this study\n\n");
    md.push_str("One row per published number this study measures (published values: C4, GPT-2 tokenizer, GPUs; see `published-numbers.md`). \"not measured\" says why. A CPU study on other text is not expected to hit the published values; it should reproduce their order and the scale-dependence.\n\n");
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.quantity.clone(),
                r.published.clone(),
                r.this_study.clone(),
                r.interval.clone(),
                r.note.clone(),
            ]
        })
        .collect();
    md_table(
        &mut md,
        &[
            "quantity",
            "published",
            "this study",
            "interval",
            "setup differs / note",
        ],
        &table,
    );
    md
}

// ------------------------------------------------------------------ findings

/// Whether this study shows a finding of the papers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The interval lies on the papers' side.
    Reproduced,
    /// The interval lies on the other side.
    NotReproduced,
    /// The interval straddles the dividing value, or there is no interval.
    Inconclusive,
    /// The study lacks the runs (or the fits) to measure it.
    NotMeasured,
}

impl Verdict {
    pub fn words(self) -> &'static str {
        match self {
            Verdict::Reproduced => "reproduced",
            Verdict::NotReproduced => "not reproduced",
            Verdict::Inconclusive => "inconclusive",
            Verdict::NotMeasured => "not measured",
        }
    }
}

/// One qualitative result of the papers, checked against this study.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    pub finding: String,
    /// The published value, in words.
    pub published: String,
    /// The quantity measured, in words (what `value` is).
    pub measure: String,
    pub value: Option<f64>,
    pub interval: Option<(f64, f64)>,
    pub verdict: Verdict,
    pub note: String,
}

/// The verdict of a value with its interval against a dividing value:
/// `above` when the papers' side is above it.
pub fn verdict(
    value: Option<f64>,
    interval: Option<(f64, f64)>,
    divide: f64,
    above: bool,
) -> Verdict {
    match (value, interval) {
        (None, _) => Verdict::NotMeasured,
        (Some(_), None) => Verdict::Inconclusive,
        (Some(_), Some((lo, hi))) => {
            let (lo, hi) = if above {
                (lo - divide, hi - divide)
            } else {
                (divide - hi, divide - lo)
            };
            if lo > 0.0 {
                Verdict::Reproduced
            } else if hi < 0.0 {
                Verdict::NotReproduced
            } else {
                Verdict::Inconclusive
            }
        }
    }
}

fn finding(
    text: &str,
    published: String,
    measure: &str,
    value: Option<f64>,
    interval: Option<(f64, f64)>,
    (divide, above): (f64, bool),
    note: String,
) -> Finding {
    let v = verdict(value, interval, divide, above);
    let note = if v == Verdict::Inconclusive && value.is_some() && interval.is_none() {
        let n = "no interval (one seed, or bootstrap = 0)".to_string();
        if note.is_empty() {
            n
        } else {
            format!("{note}; {n}")
        }
    } else {
        note
    };
    Finding {
        finding: text.into(),
        published,
        measure: measure.into(),
        value,
        interval,
        verdict: v,
        note,
    }
}

/// A family's frontier fit, if the study has the family.
type FitEntry<'a> = Option<&'a std::result::Result<FamilyFit, String>>;

/// The papers' qualitative results, each with this study's value, its
/// interval and a verdict (see [`verdict`]). Multipliers are read against 1
/// (the papers' side: above, the modern choice helps); the interaction
/// factor against 1 (the papers' side: below, sub-multiplicative); the ratio
/// of frontier exponents γ_modern / γ_LSTM against 1 (above: the LSTM's is
/// shallower); the local slope d ln CEG / d ln C of modern over the LSTM
/// against 0 (above: the gain grows with compute). Nothing here is tuned
/// towards the papers: a result that does not hold at this scale is said so.
pub fn findings(a: &Analysis, level: f64) -> Vec<Finding> {
    let mut out = Vec::new();
    let iv_of = |ci: Option<algoprog_ceg::stats::Interval>| ci.map(|i| (i.lo, i.hi));
    let thr_note = |t: f64| format!("at L* = {t:.4}");
    // (finding, families in order of preference, published)
    let singles: [(&str, &[&str], f64); 5] = [
        (
            "rotary over sinusoidal positions",
            &["modern-sinusoidal", "modern-retro_positional"],
            1.44,
        ),
        (
            "pre-norm over post-norm",
            &["modern-post_norm", "modern-retro_norm"],
            1.87,
        ),
        (
            "SwiGLU over GeLU",
            &["modern-gelu", "modern-retro_feed_forward"],
            1.17,
        ),
        ("Adam far over SGD", &["modern-sgd"], 1.67),
        (
            "cosine over inverse-sqrt",
            &["modern-inverse_sqrt", "modern-retro_schedule"],
            1.04,
        ),
    ];
    for (text, fams, p) in singles {
        let found = a.ablation.as_ref().and_then(|rep| {
            fams.iter()
                .find_map(|f| rep.variant(f).map(|v| (rep, *f, v)))
        });
        let f = match found {
            Some((rep, fam, v)) => {
                let mut note = format!("`{fam}` {}", thr_note(rep.threshold));
                if fam == "modern-retro_norm" {
                    note.push_str(
                        "; this revert also makes the final norm a LayerNorm (the authors' retro runs)",
                    );
                }
                if v.ceg.is_none() {
                    let _ = write!(
                        note,
                        "; {}",
                        v.note.clone().unwrap_or_else(|| "did not reach L*".into())
                    );
                }
                finding(
                    text,
                    format!("{p:.2}"),
                    "multiplier C_variant / C_modern",
                    v.ceg,
                    iv_of(v.ci),
                    (1.0, true),
                    note,
                )
            }
            None => finding(
                text,
                format!("{p:.2}"),
                "multiplier C_variant / C_modern",
                None,
                None,
                (1.0, true),
                match &a.ablation {
                    Some(_) => format!(
                        "no usable run of {}",
                        fams.iter()
                            .map(|f| format!("`{f}`"))
                            .collect::<Vec<_>>()
                            .join(" or ")
                    ),
                    None => "no ablation multipliers (see the ablation section)".into(),
                },
            ),
        };
        out.push(f);
    }
    // Modern far less than the product of its singles.
    let text = "modern over retro far less than the product of the single changes";
    let published = format!(
        "I = {:.2} / {:.1} ≈ {:.2}",
        published::MODERN_OVER_RETRO,
        published::PRODUCT_OF_SINGLES,
        published::MODERN_OVER_RETRO / published::PRODUCT_OF_SINGLES
    );
    out.push(match &a.combination {
        Some(c) => finding(
            text,
            published,
            "interaction I = measured / product of singles",
            Some(c.interaction.ceg),
            iv_of(c.interaction.ci),
            (1.0, false),
            format!(
                "measured {:.3}, product {:.3}, {}",
                c.measured.ceg,
                c.predicted.ceg,
                thr_note(c.threshold)
            ),
        ),
        None => finding(
            text,
            published,
            "interaction I",
            None,
            None,
            (1.0, false),
            "needs retro and the single changes to reach L* (see the combination test)".into(),
        ),
    });
    // Frontier exponents and the growing gain.
    let (pl, pm) = (
        published::FRONTIERS
            .iter()
            .find(|f| f.0 == "lstm")
            .map(|f| -f.2)
            .unwrap_or(f64::NAN),
        published::FRONTIERS
            .iter()
            .find(|f| f.0 == "modern")
            .map(|f| -f.2)
            .unwrap_or(f64::NAN),
    );
    let fits = (a.fits.get("modern"), a.fits.get("lstm"));
    let paired = |m: &FamilyFit, l: &FamilyFit, f: &dyn Fn(&PowerLaw, &PowerLaw) -> Option<f64>| {
        let n = m.replicates.len().min(l.replicates.len());
        let reps: Vec<f64> = (0..n)
            .filter_map(|i| f(&m.replicates[i], &l.replicates[i]))
            .filter(|x| x.is_finite())
            .collect();
        (reps.len() >= 2).then(|| {
            let i = percentile_interval(&reps, level);
            (i.lo, i.hi)
        })
    };
    let missing = |fits: (FitEntry, FitEntry)| {
        let why = |name: &str, f: FitEntry| match f {
            None => Some(format!("no `{name}` size scan")),
            Some(Err(e)) => Some(format!("`{name}` frontier not fitted: {e}")),
            Some(Ok(_)) => None,
        };
        [why("modern", fits.0), why("lstm", fits.1)]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join("; ")
    };
    let text = "the LSTM's frontier exponent shallower than the Transformer's";
    let published = format!("γ_modern / γ_LSTM = {pm:.3} / {pl:.3} = {:.2}", pm / pl);
    out.push(match fits {
        (Some(Ok(m)), Some(Ok(l))) => finding(
            text,
            published,
            "γ_modern / γ_LSTM",
            Some(m.law.gamma / l.law.gamma),
            paired(m, l, &|x, y| Some(x.gamma / y.gamma)),
            (1.0, true),
            format!(
                "γ_modern = {:.4}, γ_LSTM = {:.4} (paired bootstrap over frontier points)",
                m.law.gamma, l.law.gamma
            ),
        ),
        f => finding(
            text,
            published,
            "γ_modern / γ_LSTM",
            None,
            None,
            (1.0, true),
            missing(f),
        ),
    });
    let text = "the Transformer-over-LSTM gain grows with compute";
    let published = format!(
        "d ln CEG / d ln C = γ_modern/γ_LSTM − 1 = {:.2} (published fits, shared E)",
        pm / pl - 1.0
    );
    out.push(match fits {
        (Some(Ok(m)), Some(Ok(l))) => {
            let lo = m.range.0.max(l.range.0);
            let hi = m.range.1.min(l.range.1);
            let c = if lo < hi {
                (lo * hi).sqrt()
            } else {
                (m.range.0 * m.range.1).sqrt()
            };
            let slope = |mm: &PowerLaw, ll: &PowerLaw| {
                CegFunction::new(*ll, *mm).ok()?.local_exponent(c).ok()
            };
            let v = slope(&m.law, &l.law);
            finding(
                text,
                published,
                "d ln CEG / d ln C of modern over the LSTM",
                v,
                paired(m, l, &|x, y| slope(x, y)),
                (0.0, true),
                format!(
                    "at C = {} FLOPs (the middle of the frontiers' common range)",
                    sci(c)
                ),
            )
        }
        f => finding(
            text,
            published,
            "d ln CEG / d ln C",
            None,
            None,
            (0.0, true),
            missing(f),
        ),
    });
    out
}

/// The findings table.
pub fn findings_section(rows: &[Finding], level: f64) -> String {
    let mut md = String::from("## The papers' findings, checked\n\n");
    let pct = format!("{:.0}%", 100.0 * level);
    let _ = write!(md, "One row per qualitative result of the papers. Verdict: *reproduced* when the {pct} interval lies on the papers' side (of 1 for multipliers and ratios, of 0 for the slope), *not reproduced* when it lies on the other side, *inconclusive* when it straddles (or there is no interval), *not measured* when this study lacks the runs. The values are what this study measured at its scale; nothing is adjusted towards the papers.\n\n");
    let interval_head = format!("{pct} interval");
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|f| {
            vec![
                f.finding.clone(),
                f.published.clone(),
                format!(
                    "{}: {}",
                    f.measure,
                    f.value.map(f3).unwrap_or_else(|| "—".into())
                ),
                f.interval
                    .map(|(lo, hi)| format!("[{}, {}]", f3(lo), f3(hi)))
                    .unwrap_or_else(|| "—".into()),
                format!("**{}**", f.verdict.words()),
                f.note.clone(),
            ]
        })
        .collect();
    md_table(
        &mut md,
        &[
            "finding",
            "published",
            "this study",
            &interval_head,
            "verdict",
            "note",
        ],
        &table,
    );
    md
}

// ------------------------------------------------------------------ the whole report

/// Every section in order; figures under `figs` when given.
pub fn render(
    input: &ReportInput,
    settings: &AnalysisSettings,
    figs: Option<&Path>,
    note: Option<&str>,
) -> Result<(String, Analysis)> {
    if input.runs.is_empty() {
        return Err(ReportError::Input(format!(
            "{}: no runs to report on",
            input.source
        )));
    }
    let mut md = format!(
        "# Report: `{}`\n\nWritten from {}. Every number names the runs it comes from.\n\n",
        input.name, input.source
    );
    if let Some(store) = &input.store {
        let _ = writeln!(md, "Each run id is a directory `{}/runs/<id>/` with `run.json` and `curve.csv`; `algoprog sweep export --store {} --out runs.csv` gives one tidy CSV of every evaluation.\n", store.display(), store.display());
    }
    md.push_str(&setup_section(input, settings, note));
    md.push_str(&runs_section(input));
    let ex = exclusions(input, settings);
    md.push_str(&exclusions_section(input, &ex));
    let thr = choose_threshold(input, settings, &ex);
    md.push_str(&tune_section(input));
    let (s, ablation) = ablation_section(input, settings, &ex, &thr, figs)?;
    md.push_str(&s);
    let (s, combination) = combination_section(ablation.as_ref(), settings);
    md.push_str(&s);
    md.push_str(&curves_section(input, &ex, &thr, figs)?);
    let fits = frontier_fits(input, settings, &ex);
    md.push_str(&frontier_section(input, settings, &fits, &thr, figs)?);
    md.push_str(&ceg_functions_section(input, settings, &fits, &thr, figs)?);
    let (s, matched) = matched_section(settings, &fits, &thr);
    md.push_str(&s);
    let (s, kaplan) = kaplan_section(input, settings, &ex, figs)?;
    md.push_str(&s);
    let dec = decomposition(
        settings,
        ablation.as_ref(),
        combination.as_ref(),
        &fits,
        kaplan.as_ref(),
    );
    md.push_str(&decomposition_section(input, &dec, &thr, figs)?);
    md.push_str(&reference_section(&fits));
    let mut analysis = Analysis {
        threshold: Some(thr),
        exclusions: ex,
        ablation,
        combination,
        fits,
        matched,
        kaplan,
        decomposition: Some(dec),
        published: Vec::new(),
        findings: Vec::new(),
    };
    analysis.findings = findings(&analysis, settings.level);
    md.push_str(&findings_section(&analysis.findings, settings.level));
    analysis.published = published_rows(input, settings, &analysis);
    md.push_str(&published_section(&analysis.published));
    Ok((md, analysis))
}
