//! `algoprog reproduce --preset smoke|quick|paper --out DIR`: run a whole study
//! (configs/studies/PRESET.toml) into `DIR/store`, then the analysis, and
//! write `DIR/report.md` with figures under `DIR/figures/` (SVG and PNG).
//!
//! Report sections: setup; every run (id, family, width, parameters, lr,
//! seed, status, final loss); diverged runs (excluded from every fit);
//! learning-rate tune; ablation table with CEG multipliers and bootstrap
//! intervals over seeds (Figure 2); training curves; frontiers with fitted
//! power laws (Figure 1); CEG functions extrapolated; Kaplan vs Chinchilla
//! (Figure 3); decomposition. Every number names the run ids it comes from.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use algoprog_ceg::{
    ceg_multipliers, compare_allocations, decompose, Allocation, CegFunction, Gain, Innovation, MultiplierOptions, MultiplierReport,
    Timeline,
};
use algoprog_plot::charts::{write_log_log, LogLogChart, Mark, Series};
use algoprog_plot::ceg as cplot;
use algoprog_scaling::{
    fit_chinchilla, fit_frontier, ChinchillaData, ChinchillaLaw, ChinchillaOptions, Curve, FrontierOptions, Irreducible, Point,
    PowerLaw, PowerLawOptions, Pruning, RunMeta, TokensSource,
};
use algoprog_train::store::Store;
use algoprog_train::study::{Role, RunSpec, Study};
use algoprog_train::{EvalRow, RunRecord, RunStatus};
use anyhow::{bail, Context, Result};

use crate::cmd::sweep::{execute, print_summary, ExecArgs};

pub const PRESETS: &[(&str, &str)] = &[
    ("smoke", include_str!("../../configs/studies/smoke.toml")),
    ("quick", include_str!("../../configs/studies/quick.toml")),
    ("paper", include_str!("../../configs/studies/paper.toml")),
];

#[derive(clap::Args)]
pub struct Args {
    /// Study preset: smoke (under a minute), quick (the README's; embedded corpus, 2 cores), paper (C4, GPT-2 tokenizer, a GPU cluster).
    #[arg(long)]
    pub preset: Option<String>,
    /// Or a study file.
    #[arg(long, conflicts_with = "preset")]
    pub study: Option<PathBuf>,
    /// Output directory: store/, report.md, figures/ (default: reproduce-PRESET).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub exec: ExecArgs,
    /// Only (re)write the report from the store; train nothing.
    #[arg(long)]
    pub report_only: bool,
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: Args) -> Result<()> {
    let (name, text) = match (&args.preset, &args.study) {
        (Some(p), None) => {
            let Some((n, t)) = PRESETS.iter().find(|(n, _)| *n == p.as_str()) else {
                bail!("unknown preset `{p}`; use one of: {}", PRESETS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "));
            };
            (n.to_string(), t.to_string())
        }
        (None, Some(f)) => (
            f.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_else(|| "study".into()),
            std::fs::read_to_string(f).with_context(|| format!("reading the study {}", f.display()))?,
        ),
        _ => bail!("give --preset smoke|quick|paper or --study FILE"),
    };
    let study = Study::from_toml_str(&text).with_context(|| format!("study `{name}`"))?;
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from(format!("reproduce-{name}")));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let clock = Instant::now();
    let (store, specs) = Store::init(out.join("store"), &text, &study)?;
    if !args.report_only {
        eprintln!("study `{}`: {} runs into {}", study.name, specs.len(), store.root.display());
        let s = execute(&store, &specs, &args.exec, args.quiet)?;
        print_summary(&s);
        if s.script.is_some() {
            println!("runs are queued on Slurm; when they are done, write the report with `algoprog reproduce --report-only` and the same --out");
            return Ok(());
        }
    }
    let train_seconds = clock.elapsed().as_secs_f64();
    let report = write_report(&store, &study, &out, train_seconds)?;
    println!("wrote {} ({} figures) in {:.0} s", report.display(), count_figures(&out.join("figures")), clock.elapsed().as_secs_f64());
    Ok(())
}

fn count_figures(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// A run of the store with its record and curve.
struct Run {
    spec: RunSpec,
    rec: RunRecord,
    curve: Vec<EvalRow>,
}

impl Run {
    fn in_role(&self, role: Role) -> bool {
        self.spec.groups.iter().any(|(_, r)| *r == role)
    }
    fn to_curve(&self) -> Curve {
        Curve::new(
            RunMeta {
                run_id: self.rec.run_id.clone(),
                family: self.rec.family.clone(),
                width: Some(self.rec.width),
                params: Some(self.rec.total_params as f64),
                token_budget: Some(self.rec.token_budget as f64),
                seed: Some(self.rec.seed),
                lr: Some(self.rec.lr),
                diverged: self.rec.status == RunStatus::Diverged,
            },
            self.curve
                .iter()
                .map(|r| Point { step: r.step, tokens: r.tokens as f64, flops: r.flops, loss: r.val_loss })
                .collect(),
        )
    }
}

fn sci(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3e}")
    } else {
        "—".into()
    }
}

fn f4(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.4}")
    } else {
        "—".into()
    }
}

fn md_table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}|", header.iter().map(|_| "---").collect::<Vec<_>>().join("|"));
    for r in rows {
        let _ = writeln!(out, "| {} |", r.join(" | "));
    }
    out.push('\n');
}

/// Both SVG and PNG of a CEG-module figure; returns the markdown image line (PNG).
fn both(dir: &Path, stem: &str, draw: impl Fn(&Path) -> std::result::Result<(), cplot::PlotError>) -> Result<String> {
    for ext in ["svg", "png"] {
        let p = dir.join(format!("{stem}.{ext}"));
        draw(&p).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(format!("![{stem}](figures/{stem}.png) ([SVG](figures/{stem}.svg))\n\n"))
}

fn chart(dir: &Path, stem: &str, c: &LogLogChart) -> Result<String> {
    write_log_log(c, &dir.join(stem)).with_context(|| format!("writing figure {stem}"))?;
    Ok(format!("![{stem}](figures/{stem}.png) ([SVG](figures/{stem}.svg))\n\n"))
}

/// Publication years of the modern choices, for the decomposition timeline.
const SEAM_YEARS: &[(&str, &str, f64)] = &[
    ("positional", "rotary embeddings", 2021.0),
    ("feed_forward", "SwiGLU", 2020.0),
    ("norm", "pre-RMSNorm", 2019.0),
    ("schedule", "cosine schedule", 2016.0),
    ("optimizer", "AdamW", 2017.0),
];

/// Irreducible loss fixed for every frontier fit (nats/token).
const IRREDUCIBLE: f64 = 1.0;
/// Target compute for extrapolated CEGs.
const TARGET_COMPUTE: f64 = 1e23;
/// C = k·N·D for the allocation comparison.
const K: f64 = 6.0;

pub fn write_report(store: &Store, study: &Study, out: &Path, seconds: f64) -> Result<PathBuf> {
    let figs = out.join("figures");
    std::fs::create_dir_all(&figs)?;
    let runs: Vec<Run> = store.load_runs()?.into_iter().map(|(spec, rec, curve)| Run { spec, rec, curve }).collect();
    let states = store.status()?;
    let mut md = String::new();
    let _ = writeln!(md, "# Study `{}`: report\n", study.name);
    let _ = writeln!(
        md,
        "Written by `algoprog reproduce` from the run store `{}` ({} runs specified, {} with records). \
         Every number below comes from the runs whose ids it names; each id is a directory `store/runs/<id>/` \
         holding `run.json` (resolved config, FLOP ledger) and `curve.csv`. `algoprog sweep export --store {} --out runs.csv` \
         gives one tidy CSV of every evaluation.\n",
        store.root.display(),
        states.len(),
        runs.len(),
        store.root.display()
    );

    // ------------------------------------------------------------ setup
    md.push_str("## Setup\n\n");
    let done = states.iter().filter(|(_, s)| s.label() == "done").count();
    let div = states.iter().filter(|(_, s)| s.label() == "diverged").count();
    let other = states.len() - done - div;
    let _ = writeln!(md, "- runs: {} finished, {} diverged, {} not finished", done, div, other);
    if let Some(r) = runs.first() {
        let d = &r.rec.data;
        let _ = writeln!(
            md,
            "- data: corpus `{}`, tokenizer `{}` ({} ids), {} training / {} validation tokens, sequence length {}; unigram entropy {:.4} nats/token",
            serde_json::to_value(&r.rec.config.data.corpus).map(|v| v.to_string()).unwrap_or_default().trim_matches('"'),
            d.tokenizer,
            d.vocab_size,
            d.train_tokens,
            d.val_tokens,
            r.rec.config.data.seq_len,
            d.unigram_entropy
        );
    }
    let total_flops: f64 = runs.iter().map(|r| r.rec.flops.train_total).sum();
    let wall: f64 = runs.iter().map(|r| r.rec.wall_seconds).sum();
    let _ = writeln!(md, "- training compute of all runs: {} FLOPs; sum of run wall times {:.0} s; this invocation {:.0} s", sci(total_flops), wall, seconds);
    let _ = writeln!(md, "- groups:");
    for g in &study.groups {
        let n = runs.iter().filter(|r| r.spec.groups.iter().any(|(n, _)| n == &g.name)).count();
        let _ = writeln!(md, "  - `{}` ({:?}): {} runs, widths {:?}, budget {}, lr {}", g.name, g.role, n, g.widths, toml_inline(&g.budget), toml_inline(&g.lr));
    }
    md.push('\n');

    // ------------------------------------------------------------ all runs
    md.push_str("## Runs\n\n");
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                format!("`{}`", r.rec.run_id),
                r.rec.name.clone(),
                r.spec.groups.iter().map(|(g, _)| g.as_str()).collect::<Vec<_>>().join(", "),
                r.rec.width.to_string(),
                r.rec.total_params.to_string(),
                format!("{:.2e}", r.rec.lr),
                r.rec.seed.to_string(),
                format!("{}/{}", r.rec.steps_done, r.rec.planned_steps),
                sci(r.rec.flops.train_total),
                match r.rec.status {
                    RunStatus::Finished => "finished".into(),
                    RunStatus::Diverged => format!("diverged at step {}", r.rec.diverged_at_step.unwrap_or(0)),
                    RunStatus::Running => "not finished".into(),
                },
                r.rec.final_val_loss.map(f4).unwrap_or_else(|| "—".into()),
            ]
        })
        .collect();
    md_table(&mut md, &["id", "name", "groups", "width", "params", "lr", "seed", "steps", "train FLOPs", "status", "final val loss"], &rows);

    // ------------------------------------------------------------ diverged
    md.push_str("## Diverged runs\n\n");
    let diverged: Vec<&Run> = runs.iter().filter(|r| r.rec.status == RunStatus::Diverged).collect();
    if diverged.is_empty() {
        md.push_str("No run diverged.\n\n");
    } else {
        md.push_str("These runs were stopped when their training loss became NaN/inf or exceeded the divergence factor × their first loss. They are excluded from every frontier, fit and CEG below.\n\n");
        for r in &diverged {
            let _ = writeln!(md, "- `{}` {} (lr {:.2e}): diverged at step {}", r.rec.run_id, r.rec.name, r.rec.lr, r.rec.diverged_at_step.unwrap_or(0));
        }
        md.push('\n');
    }
    let usable = |r: &&Run| r.rec.status == RunStatus::Finished;

    // ------------------------------------------------------------ tune
    md.push_str("## Learning-rate tune\n\n");
    let tune: Vec<&Run> = runs.iter().filter(|r| r.in_role(Role::Tune)).collect();
    if tune.is_empty() {
        md.push_str("The study has no tune group.\n\n");
    } else {
        let mut by: BTreeMap<(String, usize), Vec<&Run>> = BTreeMap::new();
        for r in &tune {
            by.entry((r.rec.family.clone(), r.rec.width)).or_default().push(r);
        }
        let mut rows = Vec::new();
        for ((fam, w), rs) in &by {
            let best = rs.iter().filter(|r| usable(r)).min_by(|a, b| {
                a.rec.final_val_loss.unwrap_or(f64::INFINITY).total_cmp(&b.rec.final_val_loss.unwrap_or(f64::INFINITY))
            });
            for r in rs {
                rows.push(vec![
                    fam.clone(),
                    w.to_string(),
                    format!("{:.2e}", r.rec.lr),
                    match r.rec.status {
                        RunStatus::Diverged => format!("diverged at step {}", r.rec.diverged_at_step.unwrap_or(0)),
                        _ => r.rec.final_val_loss.map(f4).unwrap_or_else(|| "—".into()),
                    },
                    if best.is_some_and(|b| b.rec.run_id == r.rec.run_id) { "best".into() } else { String::new() },
                    format!("`{}`", r.rec.run_id),
                ]);
            }
        }
        md_table(&mut md, &["family", "width", "lr", "final val loss", "", "run"], &rows);
        // Per family with two or more widths: the rule log10 lr = a + b·log10 width through the best lrs.
        let mut best_by_family: BTreeMap<String, Vec<(usize, f64)>> = BTreeMap::new();
        for ((fam, w), rs) in &by {
            let best = rs.iter().filter(|r| usable(r)).min_by(|a, b| {
                a.rec.final_val_loss.unwrap_or(f64::INFINITY).total_cmp(&b.rec.final_val_loss.unwrap_or(f64::INFINITY))
            });
            if let Some(b) = best {
                best_by_family.entry(fam.clone()).or_default().push((*w, b.rec.lr));
            }
        }
        for (fam, best) in &best_by_family {
            if let Some((a, b)) = algoprog_train::study::fit_lr_rule(best) {
                let _ = writeln!(md, "- `{fam}`: best lr per width fits log10 lr = {a:.4} + {b:.4}·log10 width (in a study: `lr = {{ a = {a:.4}, b = {b:.4} }}`)");
            }
        }
        md.push('\n');
    }

    // ------------------------------------------------------------ ablation
    md.push_str("## Ablation table (Figure 2)\n\n");
    let abl: Vec<Curve> = runs.iter().filter(|r| r.in_role(Role::Ablation)).map(Run::to_curve).collect();
    let mut ablation_report: Option<MultiplierReport> = None;
    if abl.is_empty() {
        md.push_str("The study has no ablation group.\n\n");
    } else {
        let opts = MultiplierOptions { bootstrap: 1000, ..Default::default() };
        match ceg_multipliers(&abl, "modern", &opts) {
            Ok(rep) => {
                let _ = writeln!(
                    md,
                    "CEG of each variant against `modern` at L* = {:.4} nats (the lowest loss every compared run reaches): the compute `modern` needs to reach L* divided by the compute the variant needs (geometric mean over seeds; {:.0}% bootstrap interval over seeds, {} replicates). CEG < 1: the variant is worse than modern.\n",
                    rep.threshold,
                    100.0 * rep.level,
                    rep.bootstrap
                );
                let mut rows = Vec::new();
                for v in &rep.variants {
                    let fam_runs: Vec<&Run> = runs.iter().filter(|r| r.in_role(Role::Ablation) && r.rec.family == v.family).collect();
                    let losses: Vec<f64> = fam_runs.iter().filter(|r| usable(r)).filter_map(|r| r.rec.final_val_loss).collect();
                    let (m, sd) = mean_sd(&losses);
                    rows.push(vec![
                        v.family.clone(),
                        format!("{}/{}", v.n_reached, v.n_runs),
                        format!("{} ± {}", f4(m), f4(sd)),
                        v.compute.map(sci).unwrap_or_else(|| "—".into()),
                        v.ceg.map(f4).unwrap_or_else(|| "—".into()),
                        v.ci.map(|i| format!("[{}, {}]", f4(i.lo), f4(i.hi))).unwrap_or_else(|| "—".into()),
                        v.note.clone().unwrap_or_default(),
                        fam_runs.iter().map(|r| format!("`{}`", r.rec.run_id)).collect::<Vec<_>>().join(" "),
                    ]);
                }
                md_table(&mut md, &["variant", "reached L*", "final val loss (mean ± sd over seeds)", "C(L*) FLOPs", "CEG vs modern", "interval", "note", "runs"], &rows);
                if !rep.excluded_diverged.is_empty() {
                    let _ = writeln!(md, "Excluded (diverged): {}\n", rep.excluded_diverged.join(", "));
                }
                let bars: Vec<cplot::Bar> = rep
                    .variants
                    .iter()
                    .filter(|v| v.family != rep.reference)
                    .filter_map(|v| v.ceg.map(|c| cplot::Bar { label: v.family.clone(), value: c, lo: v.ci.map(|i| i.lo), hi: v.ci.map(|i| i.hi) }))
                    .collect();
                if !bars.is_empty() {
                    let title = format!("Figure 2: CEG vs modern at L* = {:.3}", rep.threshold);
                    md.push_str(&both(&figs, "fig2_ceg_bars", |p| cplot::ceg_bars(p, &title, &bars))?);
                }
                ablation_report = Some(rep);
            }
            Err(e) => {
                let _ = writeln!(md, "CEG multipliers not computed: {e}\n");
            }
        }
    }

    // ------------------------------------------------------------ curves
    md.push_str("## Training curves\n\n");
    let scan_runs: Vec<&Run> = runs.iter().filter(|r| r.in_role(Role::Scan) && usable(r)).collect();
    let plotted: Vec<&Run> = if scan_runs.is_empty() { runs.iter().filter(usable).collect() } else { scan_runs.clone() };
    let families: Vec<String> = {
        let mut f: Vec<String> = Vec::new();
        for r in &plotted {
            if !f.contains(&r.rec.family) {
                f.push(r.rec.family.clone());
            }
        }
        f
    };
    {
        let mut c = LogLogChart::new("Validation loss against training compute", "training FLOPs", "validation loss (nats/token)");
        for r in &plotted {
            let fi = families.iter().position(|f| f == &r.rec.family).unwrap_or(0);
            let label = if plotted.iter().find(|o| o.rec.family == r.rec.family).map(|o| &o.rec.run_id) == Some(&r.rec.run_id) {
                r.rec.family.clone()
            } else {
                String::new()
            };
            c = c.with(Series::new(label, r.curve.iter().map(|p| (p.flops, p.val_loss)).collect(), Mark::Line).color(fi));
        }
        let _ = writeln!(md, "Every evaluation of the {} finished size-scan runs, coloured by family.\n", plotted.len());
        md.push_str(&chart(&figs, "curves", &c)?);
    }

    // ------------------------------------------------------------ frontiers
    md.push_str("## Frontiers and power-law fits (Figure 1)\n\n");
    let scan_curves: Vec<Curve> = scan_runs.iter().map(|r| r.to_curve()).collect();
    let law_opts = PowerLawOptions { irreducible: Irreducible::Fixed(IRREDUCIBLE), ..Default::default() };
    let mut laws: BTreeMap<String, (PowerLaw, (f64, f64))> = BTreeMap::new();
    if scan_curves.is_empty() {
        md.push_str("The study has no finished size-scan runs.\n\n");
    } else {
        let _ = writeln!(
            md,
            "Per family, the frontier is the lower envelope of every evaluation of every run (compute, loss); L(C) = E + A·C^−γ is fitted to it with E fixed at {IRREDUCIBLE} nats (least squares in loss).\n"
        );
        let mut rows = Vec::new();
        let mut c = LogLogChart::new("Figure 1: compute frontiers with fitted power laws", "training FLOPs", "validation loss (nats/token)");
        for (fi, fam) in families.iter().enumerate() {
            let mine: Vec<Curve> = scan_curves.iter().filter(|c| &c.meta.family == fam).cloned().collect();
            match fit_frontier(&mine, &FrontierOptions::default(), &law_opts) {
                Ok(ff) => {
                    let lo = ff.points.first().map(|p| p.flops).unwrap_or(f64::NAN);
                    let hi = ff.points.last().map(|p| p.flops).unwrap_or(f64::NAN);
                    let mut ids: Vec<&str> = ff.points.iter().map(|p| p.run_id.as_str()).collect();
                    ids.sort();
                    ids.dedup();
                    rows.push(vec![
                        fam.clone(),
                        mine.len().to_string(),
                        ff.points.len().to_string(),
                        format!("{:.3} + {:.4e}·C^−{:.4}", ff.fit.law.e, ff.fit.law.a, ff.fit.law.gamma),
                        f4(ff.fit.r2),
                        format!("[{}, {}]", sci(lo), sci(hi)),
                        ids.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(" "),
                    ]);
                    c = c.with(Series::new(fam.clone(), ff.points.iter().map(|p| (p.flops, p.loss)).collect(), Mark::Rings).color(fi));
                    let law = ff.fit.law;
                    let grid: Vec<(f64, f64)> = (0..=40)
                        .map(|i| {
                            let x = lo * (hi / lo).powf(i as f64 / 40.0);
                            (x, law.e + law.a * x.powf(-law.gamma))
                        })
                        .collect();
                    c = c.with(Series::new(format!("{fam} fit"), grid, Mark::Dashed).color(fi));
                    laws.insert(fam.clone(), (law, (lo, hi)));
                }
                Err(e) => rows.push(vec![fam.clone(), mine.len().to_string(), "—".into(), format!("fit failed: {e}"), "—".into(), "—".into(), String::new()]),
            }
        }
        md_table(&mut md, &["family", "runs", "frontier points", "fitted L(C)", "R²", "fitted compute range", "runs on the frontier"], &rows);
        md.push_str(&chart(&figs, "fig1_frontiers", &c)?);
    }

    // ------------------------------------------------------------ CEG functions
    md.push_str("## CEG functions, extrapolated\n\n");
    let mut functions: Vec<(String, CegFunction, (f64, f64))> = Vec::new();
    if let Some((new_law, new_range)) = laws.get("modern") {
        for (fam, (law, range)) in &laws {
            if fam == "modern" {
                continue;
            }
            if let Ok(f) = CegFunction::new(*law, *new_law) {
                let r = (range.0.max(new_range.0), range.1.min(new_range.1));
                functions.push((fam.clone(), f, if r.0 < r.1 { r } else { *new_range }));
            }
        }
    }
    if functions.is_empty() {
        md.push_str("Needs fitted frontiers of `modern` and at least one other family.\n\n");
    } else {
        let _ = writeln!(
            md,
            "CEG(C) = C_ref(L_modern(C)) / C from the fitted frontiers: how much more compute the reference family needs to match modern's loss at compute C. Extrapolated to {TARGET_COMPUTE:.0e} FLOPs.\n"
        );
        let mut rows = Vec::new();
        let mut series = Vec::new();
        let mut all_lo = f64::INFINITY;
        let mut all_hi = 0f64;
        for (fam, f, range) in &functions {
            all_lo = all_lo.min(range.0);
            all_hi = all_hi.max(range.1);
            let mid = (range.0 * range.1).sqrt();
            let at_mid = f.eval(mid).ok();
            let x = f.extrapolate(TARGET_COMPUTE, Some(*range)).ok();
            rows.push(vec![
                format!("modern over {fam}"),
                format!("[{}, {}]", sci(range.0), sci(range.1)),
                at_mid.map(f4).unwrap_or_else(|| "reference never reaches".into()),
                x.as_ref().map(|x| sci(x.ceg)).unwrap_or_else(|| "—".into()),
                x.as_ref().map(|x| format!("{:+.4}", x.local_exponent)).unwrap_or_else(|| "—".into()),
                x.as_ref().map(|x| if x.scale_invariant { "scale-invariant" } else { "scale-dependent" }.to_string()).unwrap_or_default(),
            ]);
            let grid = algoprog_ceg::function::log_grid(range.0 / 10.0, TARGET_COMPUTE, 120)?;
            series.push(cplot::Series { label: format!("modern over {fam}"), points: grid.into_iter().filter_map(|c| f.eval(c).ok().map(|v| (c, v))).collect() });
            if let Some(x) = &x {
                for a in &x.assumptions {
                    let _ = writeln!(md, "- ({fam}) {a}");
                }
            }
        }
        md.push('\n');
        md_table(&mut md, &["CEG function", "fitted range (FLOPs)", "CEG at the range's geometric middle", &format!("CEG at {TARGET_COMPUTE:.0e}"), "d ln CEG / d ln C there", ""], &rows);
        let series: Vec<cplot::Series> = series.into_iter().filter(|s| !s.points.is_empty()).collect();
        if !series.is_empty() {
            md.push_str(&both(&figs, "ceg_functions", |p| cplot::ceg_curves(p, "CEG(C) of modern over each family", &series, Some((all_lo, all_hi))))?);
        }
    }

    // ------------------------------------------------------------ Kaplan vs Chinchilla
    md.push_str("## Kaplan vs Chinchilla (Figure 3)\n\n");
    let modern_scan: Vec<Curve> = scan_curves.iter().filter(|c| c.meta.family == "modern").cloned().collect();
    let mut law_for_alloc: Option<(ChinchillaLaw, String)> = None;
    if !modern_scan.is_empty() {
        match ChinchillaData::from_curves(&modern_scan, TokensSource::Column).and_then(|d| {
            let opts = ChinchillaOptions { pruning: Pruning::Screen { screen_iters: 30, keep: 40 }, ..Default::default() };
            fit_chinchilla(&d, &opts).map(|f| (f, d.len(), d.n_runs()))
        }) {
            Ok((fit, n, k)) => {
                let l = fit.law;
                let ids: Vec<String> = modern_scan.iter().map(|c| format!("`{}`", c.meta.run_id)).collect();
                let _ = writeln!(
                    md,
                    "L(N, D) = E + A·N^−α + B·D^−β fitted (Chinchilla approach 3: Huber δ = 1e-3 on log L, L-BFGS from the published start grid, screened) to {n} evaluations of {k} modern scan runs ({}): E = {:.4}, A = {:.4e}, α = {:.4}, B = {:.4e}, β = {:.4}; R² of log L = {:.4}.\n",
                    ids.join(" "),
                    l.e,
                    l.a,
                    l.alpha,
                    l.b,
                    l.beta,
                    fit.r2_log
                );
                let min_loss = modern_scan.iter().filter_map(|c| c.min_loss()).fold(f64::INFINITY, f64::min);
                let plausible = (0.0..=2.0).contains(&l.alpha) && (0.0..=2.0).contains(&l.beta) && l.alpha > 0.0 && l.beta > 0.0 && l.e < min_loss;
                if plausible {
                    law_for_alloc = Some((l, "fitted to the modern scan".into()));
                } else {
                    let _ = writeln!(
                        md,
                        "This fit is not usable for allocation (it needs 0 < α, β ≤ 2 and E below the lowest observed loss {min_loss:.4}; the scan is too small or too short to identify N and D separately), so the comparison below uses Hoffmann et al.'s published law.\n"
                    );
                }
            }
            Err(e) => {
                let _ = writeln!(md, "L(N, D) could not be fitted to the modern scan ({e}); the comparison uses Hoffmann et al.'s published law.\n");
            }
        }
    }
    let (law, source) = law_for_alloc.unwrap_or_else(|| (algoprog_ceg::kaplan::hoffmann_law(), "Hoffmann et al. (2022) approach 3".into()));
    let worse = Allocation::kaplan();
    let better = Allocation::chinchilla();
    let mut alloc_gain: Option<Gain> = None;
    match compare_allocations(&law, worse, better, 1e15, 1e25, 11, K) {
        Ok(rep) => {
            let _ = writeln!(
                md,
                "Loss along Kaplan's rule (D = 831.4·N^0.74) and Chinchilla's (D = 20·N) under the law {source} (E = {:.3}, A = {:.3e}, α = {:.3}, B = {:.3e}, β = {:.3}; C = {K}·N·D); CEG = compute Kaplan's rule needs for Chinchilla's loss / compute. γ(Kaplan) = {:.4}, γ(Chinchilla) = {:.4}.\n",
                law.e, law.a, law.alpha, law.b, law.beta, rep.gamma_worse, rep.gamma_better
            );
            let rows: Vec<Vec<String>> = rep
                .points
                .iter()
                .map(|p| vec![sci(p.compute), sci(p.n_worse), f4(p.loss_worse), sci(p.n_better), f4(p.loss_better), f4(p.ceg)])
                .collect();
            md_table(&mut md, &["C FLOPs", "N (Kaplan)", "L (Kaplan)", "N (Chinchilla)", "L (Chinchilla)", "CEG of Chinchilla"], &rows);
            for a in &rep.assumptions {
                let _ = writeln!(md, "- {a}");
            }
            md.push('\n');
            let dense = compare_allocations(&law, worse, better, 1e15, 1e25, 200, K)?;
            let loss = vec![
                cplot::Series { label: worse.label(), points: dense.points.iter().map(|p| (p.compute, p.loss_worse)).collect() },
                cplot::Series { label: better.label(), points: dense.points.iter().map(|p| (p.compute, p.loss_better)).collect() },
            ];
            let ceg: Vec<(f64, f64)> = dense.points.iter().map(|p| (p.compute, p.ceg)).collect();
            md.push_str(&both(&figs, "fig3_kaplan_chinchilla", |p| cplot::allocation_chart(p, &loss, &ceg))?);
            alloc_gain = Some(Gain::Allocation { law, worse, better, k: K });
        }
        Err(e) => {
            let _ = writeln!(md, "Allocation comparison failed: {e}\n");
        }
    }

    // ------------------------------------------------------------ decomposition
    md.push_str("## Decomposition\n\n");
    let mut innovations = Vec::new();
    if let Some(rep) = &ablation_report {
        for (seam, what, year) in SEAM_YEARS {
            let fam = format!("modern-retro_{seam}");
            if let Some(c) = rep.variant(&fam).and_then(|v| v.ceg) {
                // The variant's CEG vs modern is < 1 when reverting hurts; the modern choice's gain is its inverse.
                innovations.push(Innovation::new(format!("{what} (measured: 1 / CEG of {fam})"), *year, Gain::Multiplier { value: 1.0 / c }));
            }
        }
    }
    if let (Some((lstm, _)), Some((retro, _))) = (laws.get("lstm"), laws.get("retro")) {
        innovations.push(Innovation::new("Transformer over LSTM (retro frontier over lstm frontier)", 2017.0, Gain::Function { reference: *lstm, new: *retro }));
    }
    if let Some(g) = alloc_gain {
        innovations.push(Innovation::new("Chinchilla over Kaplan allocation", 2022.0, g));
    }
    let timeline = Timeline { innovations, ..Default::default() };
    if timeline.innovations.is_empty() {
        md.push_str("Needs an ablation group, fitted frontiers or an allocation law.\n\n");
    } else {
        match decompose(&timeline) {
            Ok(d) => {
                let _ = writeln!(
                    md,
                    "Each innovation's CEG evaluated at the compute of the target year {:.0} ({} FLOPs on the default trend: 1e16 FLOPs in 2013, ×4.1 per year); years are the publication years of each idea. Total gain {}×, {:.0}% of it (in log terms) scale-dependent.\n",
                    d.target_year,
                    sci(d.compute),
                    sci(d.total_gain),
                    100.0 * d.scale_dependent_share
                );
                let rows: Vec<Vec<String>> = d
                    .items
                    .iter()
                    .map(|s| vec![s.name.clone(), format!("{}", s.year), sci(s.ceg), format!("{:.1}%", 100.0 * s.share), if s.scale_invariant { "invariant" } else { "dependent" }.into()])
                    .collect();
                md_table(&mut md, &["innovation", "year", "CEG at target", "share of ln gain", "scale"], &rows);
                for a in &d.assumptions {
                    let _ = writeln!(md, "- {a}");
                }
                md.push('\n');
                let shares: Vec<cplot::Bar> = d.items.iter().map(|s| cplot::Bar { label: s.name.split(" (").next().unwrap_or(&s.name).to_string(), value: s.ceg, lo: None, hi: None }).collect();
                let by_year: Vec<(f64, f64)> = d.by_year.iter().map(|y| (y.year, y.gain)).collect();
                let title = format!("gain at {:.0}: {:.2e}x", d.target_year, d.total_gain);
                md.push_str(&both(&figs, "decomposition", |p| cplot::decomposition_chart(p, &title, &shares, &by_year))?);
            }
            Err(e) => {
                let _ = writeln!(md, "Decomposition failed: {e}\n");
            }
        }
    }

    let path = out.join("report.md");
    std::fs::write(&path, &md).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn toml_inline<T: serde::Serialize>(v: &T) -> String {
    let mut v = serde_json::to_value(v).unwrap_or_default();
    if let serde_json::Value::Object(m) = &mut v {
        m.retain(|_, x| !x.is_null());
    }
    v.to_string().replace('"', "")
}

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = xs.iter().sum::<f64>() / xs.len() as f64;
    if xs.len() < 2 {
        return (m, f64::NAN);
    }
    let v = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() - 1) as f64;
    (m, v.sqrt())
}
