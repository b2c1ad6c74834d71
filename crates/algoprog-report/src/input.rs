//! What a report is written from: runs (curves with their metadata and
//! the groups they were run for) and what is known about the data.
//!
//! Three sources, one conversion per run: every algoprog run record goes
//! through [`algoprog_scaling::load_run_record`] (N = total parameters), so a
//! run has the same curve whichever path loads it.
//! - an algoprog run store (`specs.json` + `runs/<id>/`): groups and roles
//!   come from the study;
//! - a directory of run records without a store;
//! - a CSV from any framework, through a [`ColumnMap`].
//!
//! Without a study, every run counts for every analysis (frontiers per
//! family; the ablation table when the reference family is present).

use std::path::{Path, PathBuf};

use algoprog_scaling::{
    load_csv_with, load_run_record, ColumnMap, Curve, LoadOptions, NonFinitePolicy,
};
use serde::{Deserialize, Serialize};

use crate::error::{ReportError, Result};

/// What a group of runs is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A learning-rate grid.
    Tune,
    /// A size scan: frontiers, power-law fits, CEG functions.
    Scan,
    /// Runs at one budget with seeds: the ablation table.
    Ablation,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Finished,
    Diverged,
    /// Still running, or stopped without a final record.
    Unfinished,
}

/// One run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunEntry {
    /// The curve (run id, family, N = total parameters, seed, lr, points).
    pub curve: Curve,
    /// Human-readable name (default: the run id).
    pub name: String,
    /// Groups (name, role); empty means "every analysis".
    pub groups: Vec<(String, Role)>,
    pub status: RunStatus,
    /// Steps done / planned, when recorded.
    pub steps: Option<(u64, u64)>,
    /// Total training FLOPs, when recorded (else the last point's compute).
    pub train_flops: Option<f64>,
    /// Wall time of the run in seconds, when recorded.
    pub wall_seconds: Option<f64>,
    /// Passes over the training data: tokens trained / tokens of one epoch
    /// (whole training windows of the record's data), when recorded.
    #[serde(default)]
    pub epochs: Option<f64>,
}

/// Epochs of a run: `tokens_done` over one epoch of `train_tokens` cut into
/// windows of `seq_len` (the data crate's count: (T − 1) / seq_len whole
/// windows of seq_len tokens each).
pub fn epochs_of(tokens_done: u64, train_tokens: u64, seq_len: usize) -> Option<f64> {
    if seq_len == 0 || train_tokens == 0 {
        return None;
    }
    let per_epoch = ((train_tokens - 1) / seq_len as u64) * seq_len as u64;
    (per_epoch > 0).then(|| tokens_done as f64 / per_epoch as f64)
}

impl RunEntry {
    /// A run from a bare curve (a CSV row group): finished unless flagged diverged.
    pub fn from_curve(curve: Curve) -> Self {
        Self {
            name: curve.meta.run_id.clone(),
            status: if curve.meta.diverged {
                RunStatus::Diverged
            } else {
                RunStatus::Finished
            },
            steps: None,
            train_flops: curve.points.last().map(|p| p.flops),
            wall_seconds: None,
            epochs: None,
            groups: Vec::new(),
            curve,
        }
    }

    /// Whether the run belongs to a group of this role (runs without groups belong to every role).
    pub fn in_role(&self, role: Role) -> bool {
        self.groups.is_empty() && role != Role::Tune || self.groups.iter().any(|(_, r)| *r == role)
    }

    pub fn id(&self) -> &str {
        &self.curve.meta.run_id
    }

    pub fn family(&self) -> &str {
        &self.curve.meta.family
    }

    /// The last evaluated loss.
    pub fn final_loss(&self) -> Option<f64> {
        self.curve.points.last().map(|p| p.loss)
    }

    /// The lowest evaluated loss.
    pub fn min_loss(&self) -> Option<f64> {
        self.curve.min_loss()
    }
}

/// What is known about the data the runs were trained on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    pub corpus: Option<String>,
    pub tokenizer: Option<String>,
    pub vocab_size: Option<usize>,
    pub train_tokens: Option<u64>,
    pub val_tokens: Option<u64>,
    pub seq_len: Option<usize>,
    /// Unigram cross-entropy of the validation data (nats/token): the plateau.
    pub unigram_entropy: Option<f64>,
}

impl DataInfo {
    /// Short words for the data ("corpus `embedded`, tokenizer `bpe-512` (512 ids)").
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(c) = &self.corpus {
            parts.push(format!("corpus `{c}`"));
        }
        if let Some(t) = &self.tokenizer {
            parts.push(match self.vocab_size {
                Some(v) => format!("tokenizer `{t}` ({v} ids)"),
                None => format!("tokenizer `{t}`"),
            });
        }
        if let Some(s) = self.seq_len {
            parts.push(format!("sequences of {s}"));
        }
        if parts.is_empty() {
            "data not recorded".into()
        } else {
            parts.join(", ")
        }
    }
}

/// A group of the study, for the setup section.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupInfo {
    pub name: String,
    pub role: Role,
}

/// Everything a report is written from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportInput {
    /// Study name (or the input's file name).
    pub name: String,
    /// Where the runs came from, in words (shown in the report).
    pub source: String,
    /// Path of the input, when it is a run store (for the export hint).
    pub store: Option<PathBuf>,
    /// Runs specified by the study (a store); runs without records are missing from `runs`.
    pub specified: usize,
    pub runs: Vec<RunEntry>,
    pub data: DataInfo,
    pub groups: Vec<GroupInfo>,
    /// The tuned learning-rate rules of a study in stages (the store's
    /// `tuned_lr.json`), one line each.
    #[serde(default)]
    pub tuned: Vec<String>,
}

/// The lines of a store's `tuned_lr.json`: per tuned family, the rule and the best rate per width.
fn tuned_lines(root: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(root.join("tuned_lr.json")) else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    let Some(rules) = v.get("rules").and_then(|r| r.as_array()) else {
        return Vec::new();
    };
    rules
        .iter()
        .map(|r| {
            let s = |k: &str| r.get(k).and_then(|x| x.as_str()).unwrap_or("?").to_string();
            let f = |k: &str| r.get(k).and_then(|x| x.as_f64()).unwrap_or(f64::NAN);
            let best: Vec<String> = r
                .get("best")
                .and_then(|b| b.as_array())
                .map(|b| {
                    b.iter()
                        .filter_map(|e| {
                            let e = e.as_array()?;
                            Some(format!(
                                "d{} {:.2e} (loss {:.4}, `{}`)",
                                e.first()?.as_u64()?,
                                e.get(1)?.as_f64()?,
                                e.get(2)?.as_f64()?,
                                e.get(3)?.as_str()?
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let rule = if best.len() == 1 {
                "one width: its best rate for every width".to_string()
            } else {
                format!("log10 lr = {:.3} {:+.3}·log10 width", f("a"), f("b"))
            };
            format!(
                "`{}` from tune `{}`: {rule}; best per width: {}",
                s("family"),
                s("group"),
                best.join(", ")
            )
        })
        .collect()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Deserialize)]
struct SpecLite {
    id: String,
    #[serde(default)]
    groups: Vec<(String, Role)>,
}

fn json_u64(v: Option<&serde_json::Value>) -> Option<u64> {
    v.and_then(|x| x.as_u64().or_else(|| x.as_f64().map(|f| f as u64)))
}

/// One run directory: the curve through the shared loader, the display
/// fields (name, status, steps, FLOPs, data) from `run.json`.
fn load_entry(dir: &Path, groups: Vec<(String, Role)>) -> Result<(RunEntry, DataInfo)> {
    let (curve, _) = load_run_record(dir)?;
    let jpath = dir.join("run.json");
    let text = std::fs::read_to_string(&jpath).map_err(io(&jpath))?;
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    let status = match v.get("status").and_then(|s| s.as_str()) {
        Some("finished") => RunStatus::Finished,
        Some("diverged") => RunStatus::Diverged,
        Some(_) => RunStatus::Unfinished,
        None if curve.meta.diverged => RunStatus::Diverged,
        None => RunStatus::Finished,
    };
    let status = if curve.meta.diverged {
        RunStatus::Diverged
    } else {
        status
    };
    let steps = match (
        json_u64(v.get("steps_done")),
        json_u64(v.get("planned_steps")),
    ) {
        (Some(a), Some(b)) => Some((a, b)),
        _ => None,
    };
    let data = v.get("data");
    let dcfg = v.get("config").and_then(|c| c.get("data"));
    let info = DataInfo {
        corpus: dcfg.and_then(|d| d.get("corpus")).map(|c| {
            c.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| c.to_string())
        }),
        tokenizer: data
            .and_then(|d| d.get("tokenizer"))
            .and_then(|t| t.as_str())
            .map(str::to_string),
        vocab_size: json_u64(data.and_then(|d| d.get("vocab_size"))).map(|x| x as usize),
        train_tokens: json_u64(data.and_then(|d| d.get("train_tokens"))),
        val_tokens: json_u64(data.and_then(|d| d.get("val_tokens"))),
        seq_len: json_u64(dcfg.and_then(|d| d.get("seq_len"))).map(|x| x as usize),
        unigram_entropy: data
            .and_then(|d| d.get("unigram_entropy"))
            .and_then(|x| x.as_f64()),
    };
    let entry = RunEntry {
        name: v
            .get("name")
            .and_then(|n| n.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| curve.meta.run_id.clone()),
        groups,
        status,
        steps,
        train_flops: v
            .get("flops")
            .and_then(|f| f.get("train_total"))
            .and_then(|x| x.as_f64())
            .or_else(|| curve.points.last().map(|p| p.flops)),
        wall_seconds: v.get("wall_seconds").and_then(|x| x.as_f64()),
        epochs: match (
            json_u64(v.get("tokens_done")),
            info.train_tokens,
            info.seq_len,
        ) {
            (Some(done), Some(t), Some(s)) => epochs_of(done, t, s),
            _ => None,
        },
        curve,
    };
    Ok((entry, info))
}

impl ReportInput {
    /// An algoprog run store: `specs.json` names the runs and their groups;
    /// runs without a `run.json` yet are counted as specified but absent.
    /// A missing or empty store is an error that says so (nothing is created).
    pub fn from_store(root: &Path) -> Result<Self> {
        let specs_path = root.join("specs.json");
        if !root.is_dir() {
            return Err(ReportError::Input(format!(
                "{}: no such run store; train it first (`algoprog reproduce --preset NAME --out DIR` or `algoprog sweep run --study FILE --store DIR`)",
                root.display()
            )));
        }
        let text = std::fs::read_to_string(&specs_path).map_err(|_| {
            ReportError::Input(format!(
                "{}: not a run store (no specs.json); give a store, a directory of run records or a CSV",
                root.display()
            ))
        })?;
        let specs: Vec<SpecLite> = serde_json::from_str(&text).map_err(|e| {
            ReportError::Input(format!(
                "{}: cannot read the run list: {e}",
                specs_path.display()
            ))
        })?;
        let mut groups: Vec<GroupInfo> = Vec::new();
        let mut runs = Vec::new();
        let mut data = DataInfo::default();
        for s in &specs {
            for (g, r) in &s.groups {
                if !groups.iter().any(|x| &x.name == g) {
                    groups.push(GroupInfo {
                        name: g.clone(),
                        role: *r,
                    });
                }
            }
            let dir = root.join("runs").join(&s.id);
            if !dir.join("run.json").is_file() {
                continue;
            }
            let (e, d) = load_entry(&dir, s.groups.clone())?;
            if data.unigram_entropy.is_none() {
                data = d;
            }
            runs.push(e);
        }
        if runs.is_empty() {
            return Err(ReportError::Input(format!(
                "{}: the store holds no trained run yet ({} specified); train it first (drop --report-only)",
                root.display(),
                specs.len()
            )));
        }
        let study_name = std::fs::read_to_string(root.join("study.toml"))
            .ok()
            .and_then(|t| t.parse::<toml::Table>().ok())
            .and_then(|t| t.get("name").and_then(|n| n.as_str()).map(str::to_string));
        Ok(Self {
            name: study_name.unwrap_or_else(|| {
                root.file_name()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default()
            }),
            source: format!("the run store `{}`", root.display()),
            store: Some(root.to_path_buf()),
            specified: specs.len(),
            runs,
            data,
            groups,
            tuned: tuned_lines(root),
        })
    }

    /// A directory of algoprog run records (recursively), without a study.
    pub fn from_run_dirs(dir: &Path) -> Result<Self> {
        let mut found = Vec::new();
        collect(dir, &mut found)?;
        found.sort();
        if found.is_empty() {
            return Err(ReportError::Input(format!(
                "{}: no run records (run.json + curve.csv) found",
                dir.display()
            )));
        }
        let mut runs = Vec::new();
        let mut data = DataInfo::default();
        for d in found {
            let (e, info) = load_entry(&d, Vec::new())?;
            if data.unigram_entropy.is_none() {
                data = info;
            }
            runs.push(e);
        }
        Ok(Self {
            name: dir
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            source: format!("the run records under `{}`", dir.display()),
            store: None,
            specified: runs.len(),
            runs,
            data,
            groups: Vec::new(),
            tuned: Vec::new(),
        })
    }

    /// A CSV of curves from any framework, through a column mapping. NaN/inf
    /// losses flag the run diverged (its points before them are kept).
    pub fn from_csv(path: &Path, columns: &ColumnMap) -> Result<Self> {
        let opts = LoadOptions {
            non_finite: NonFinitePolicy::MarkDiverged,
            skip_empty_loss: true,
            default_family: None,
        };
        let (curves, _) = load_csv_with(path, columns, &opts)?;
        Ok(Self::from_curves(&path.display().to_string(), curves))
    }

    /// Bare curves (every run counts for every analysis).
    pub fn from_curves(source: &str, curves: Vec<Curve>) -> Self {
        let runs: Vec<RunEntry> = curves.into_iter().map(RunEntry::from_curve).collect();
        Self {
            name: Path::new(source)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| source.to_string()),
            source: format!("`{source}`"),
            store: None,
            specified: runs.len(),
            runs,
            data: DataInfo::default(),
            groups: Vec::new(),
            tuned: Vec::new(),
        }
    }

    /// A store, a directory of run records, or a CSV, by what `path` is.
    pub fn load(path: &Path, columns: &ColumnMap) -> Result<Self> {
        if path.join("specs.json").is_file() {
            Self::from_store(path)
        } else if path.is_dir() {
            Self::from_run_dirs(path)
        } else if path.is_file() {
            Self::from_csv(path, columns)
        } else {
            Err(ReportError::Input(format!("{}: no such file or directory; give a run store, a directory of run records or a CSV", path.display())))
        }
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if dir.join("run.json").is_file() {
        out.push(dir.to_path_buf());
        return Ok(());
    }
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let p = e.map_err(io(dir))?.path();
        if p.is_dir() {
            collect(&p, out)?;
        }
    }
    Ok(())
}
