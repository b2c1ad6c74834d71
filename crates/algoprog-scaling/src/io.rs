//! Loading curves: generic CSV with a column mapping, and algoprog run records.
//!
//! Handling of imperfect input (documented, never silent):
//! - a missing mapped column, text in a numeric column, an empty required cell,
//!   an empty file, or a malformed record is an error naming the file, the line
//!   (1-based; the header is line 1) and the column;
//! - a NaN/inf loss is an error under [`NonFinitePolicy::Error`] (the default for
//!   CSV); under [`NonFinitePolicy::MarkDiverged`] the run keeps its points before
//!   the first non-finite loss and is flagged `diverged` (analyses exclude
//!   diverged runs unless asked), and the loader counts it in [`LoadReport`];
//! - steps of a run must be strictly increasing in file order (error otherwise);
//!   without a step column, a run's rows are ordered by compute (stable) and
//!   numbered 0, 1, 2, ...;
//! - without a tokens column, `Point::tokens` is NaN (unknown);
//! - rows with an empty loss are an error for generic CSV; algoprog's own
//!   `curve.csv` logs rows without a validation evaluation, so the run-record
//!   loader skips rows whose `val_loss` is empty and counts them in [`LoadReport`];
//! - negative compute or a negative token count is an error naming file, line
//!   and column (cumulative counts cannot be negative);
//! - a run record whose `curve.csv` has a header but no rows (a run that
//!   diverged, or stopped, before its first evaluation) loads as a curve with
//!   no points, "diverged, no points" when its status says so, and is counted
//!   in [`LoadReport::runs_without_points`]; every analysis leaves it out.
//!
//! Parameter convention: N is the **total** parameter count (embedding and
//! non-embedding), on every path. The papers fit their laws on total
//! parameters, and the C = 6·N·D accounting of the allocation analyses uses it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::curve::{Curve, Point, RunMeta};
use crate::error::{Result, ScalingError};

/// Which CSV column holds what. Defaults match algoprog's own curve CSV
/// (`step,tokens,flops,train_loss,val_loss,lr`): compute = `flops`,
/// loss = `val_loss`, step = `step`, tokens = `tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnMap {
    /// Cumulative training compute (FLOPs). Required.
    pub compute: String,
    /// Loss (validation loss, nats/token). Required.
    pub loss: String,
    /// Parameter count N (constant within a run).
    pub params: Option<String>,
    /// Cumulative tokens seen.
    pub tokens: Option<String>,
    /// Family / group (algorithm variant).
    pub family: Option<String>,
    /// Run identifier: rows with the same value form one curve.
    pub run: Option<String>,
    /// Seed (integer).
    pub seed: Option<String>,
    /// Optimiser step (integer, strictly increasing within a run).
    pub step: Option<String>,
}

impl Default for ColumnMap {
    fn default() -> Self {
        Self {
            compute: "flops".into(),
            loss: "val_loss".into(),
            params: None,
            tokens: Some("tokens".into()),
            family: None,
            run: None,
            seed: None,
            step: Some("step".into()),
        }
    }
}

/// What to do with a NaN or infinite loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NonFinitePolicy {
    /// Fail, naming file, line and column.
    #[default]
    Error,
    /// Keep the run's points before the first non-finite loss and flag the run diverged.
    MarkDiverged,
}

/// Options of the CSV loader beyond the column mapping.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadOptions {
    /// NaN/inf losses: error (default) or mark the run diverged.
    pub non_finite: NonFinitePolicy,
    /// Skip rows whose loss cell is empty (rows without an evaluation) instead of failing.
    pub skip_empty_loss: bool,
    /// Family given to runs when there is no family column (default: the file stem).
    pub default_family: Option<String>,
}

/// Counts of rows the loader did not turn into points, by documented rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadReport {
    /// Rows skipped because their loss was empty (`skip_empty_loss`).
    pub empty_loss_rows: usize,
    /// Rows at or after a run's first non-finite loss (`MarkDiverged`).
    pub rows_after_divergence: usize,
    /// Runs flagged diverged.
    pub diverged_runs: usize,
    /// Run records whose curve has no rows at all (kept with no points).
    #[serde(default)]
    pub runs_without_points: usize,
}

impl LoadReport {
    fn merge(&mut self, o: &LoadReport) {
        self.empty_loss_rows += o.empty_loss_rows;
        self.rows_after_divergence += o.rows_after_divergence;
        self.diverged_runs += o.diverged_runs;
        self.runs_without_points += o.runs_without_points;
    }
}

struct Col {
    idx: usize,
    name: String,
}

fn find_col(
    path: &Path,
    headers: &csv::StringRecord,
    name: &str,
    role: &'static str,
    flag: &'static str,
) -> Result<Col> {
    match headers.iter().position(|h| h.trim() == name) {
        Some(idx) => Ok(Col {
            idx,
            name: name.to_string(),
        }),
        None => Err(ScalingError::MissingColumn {
            path: path.to_path_buf(),
            column: name.to_string(),
            role,
            flag,
            available: headers
                .iter()
                .map(|h| format!("`{}`", h.trim()))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

fn parse_f64(path: &Path, line: u64, col: &Col, s: &str, role: &'static str) -> Result<f64> {
    let t = s.trim();
    if t.is_empty() {
        return Err(ScalingError::MissingValue {
            path: path.to_path_buf(),
            line,
            column: col.name.clone(),
            role,
        });
    }
    t.parse::<f64>().map_err(|_| ScalingError::NotNumeric {
        path: path.to_path_buf(),
        line,
        column: col.name.clone(),
        value: t.to_string(),
        expected: "a decimal number",
    })
}

fn parse_u64(path: &Path, line: u64, col: &Col, s: &str, role: &'static str) -> Result<u64> {
    let t = s.trim();
    if t.is_empty() {
        return Err(ScalingError::MissingValue {
            path: path.to_path_buf(),
            line,
            column: col.name.clone(),
            role,
        });
    }
    if let Ok(v) = t.parse::<u64>() {
        return Ok(v);
    }
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 1.8e19 => Ok(v as u64),
        _ => Err(ScalingError::NotNumeric {
            path: path.to_path_buf(),
            line,
            column: col.name.clone(),
            value: t.to_string(),
            expected: "a non-negative integer",
        }),
    }
}

struct Row {
    line: u64,
    step: Option<u64>,
    tokens: f64,
    flops: f64,
    /// `None`: the loss was NaN/inf.
    loss: Option<f64>,
}

struct RunAcc {
    meta: RunMeta,
    rows: Vec<Row>,
}

/// Load curves from a CSV file with a column mapping and default options
/// (NaN/inf loss is an error). Rows are grouped into runs by the run column;
/// without one, by the (family, params, seed) values of each row.
pub fn load_csv(path: impl AsRef<Path>, columns: &ColumnMap) -> Result<Vec<Curve>> {
    load_csv_with(path, columns, &LoadOptions::default()).map(|(c, _)| c)
}

/// Load curves from a CSV file with a column mapping and options; also returns
/// the counts of rows handled by the documented rules (see the module docs).
pub fn load_csv_with(
    path: impl AsRef<Path>,
    columns: &ColumnMap,
    opts: &LoadOptions,
) -> Result<(Vec<Curve>, LoadReport)> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| ScalingError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ScalingError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(bytes.as_slice());
    let csv_err = |e: csv::Error| {
        let line = e.position().map(|p| p.line()).unwrap_or(0);
        ScalingError::Csv {
            path: path.to_path_buf(),
            line,
            message: e.to_string(),
        }
    };
    let headers = rdr.headers().map_err(csv_err)?.clone();
    let c_compute = find_col(path, &headers, &columns.compute, "compute", "compute-col")?;
    let c_loss = find_col(path, &headers, &columns.loss, "loss", "loss-col")?;
    let opt = |name: &Option<String>, role, flag| -> Result<Option<Col>> {
        name.as_ref()
            .map(|n| find_col(path, &headers, n, role, flag))
            .transpose()
    };
    let c_params = opt(&columns.params, "parameter-count", "params-col")?;
    let c_tokens = opt(&columns.tokens, "tokens", "tokens-col")?;
    let c_family = opt(&columns.family, "family", "family-col")?;
    let c_run = opt(&columns.run, "run", "run-col")?;
    let c_seed = opt(&columns.seed, "seed", "seed-col")?;
    let c_step = opt(&columns.step, "step", "step-col")?;
    let default_family = opts.default_family.clone().unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });

    let mut runs: BTreeMap<String, RunAcc> = BTreeMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut report = LoadReport::default();
    let mut n_rows = 0usize;
    for rec in rdr.records() {
        let rec = rec.map_err(csv_err)?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        n_rows += 1;
        let cell = |c: &Col| rec.get(c.idx).unwrap_or("");
        let family = c_family
            .as_ref()
            .map(|c| cell(c).trim().to_string())
            .unwrap_or_else(|| default_family.clone());
        let params = c_params
            .as_ref()
            .map(|c| parse_f64(path, line, c, cell(c), "parameter count"))
            .transpose()?;
        if let (Some(p), Some(c)) = (params, c_params.as_ref()) {
            if !(p.is_finite() && p > 0.0) {
                return Err(ScalingError::NotNumeric {
                    path: path.to_path_buf(),
                    line,
                    column: c.name.clone(),
                    value: cell(c).trim().to_string(),
                    expected: "a positive finite parameter count",
                });
            }
        }
        let seed = c_seed
            .as_ref()
            .map(|c| parse_u64(path, line, c, cell(c), "seed"))
            .transpose()?;
        let run_key = match &c_run {
            Some(c) => {
                let v = cell(c).trim();
                if v.is_empty() {
                    return Err(ScalingError::MissingValue {
                        path: path.to_path_buf(),
                        line,
                        column: c.name.clone(),
                        role: "run id",
                    });
                }
                v.to_string()
            }
            None => {
                let mut k = family.clone();
                if let Some(p) = params {
                    k.push_str(&format!("/N={p}"));
                }
                if let Some(s) = seed {
                    k.push_str(&format!("/seed={s}"));
                }
                k
            }
        };
        let step = c_step
            .as_ref()
            .map(|c| parse_u64(path, line, c, cell(c), "step"))
            .transpose()?;
        let flops = parse_f64(path, line, &c_compute, cell(&c_compute), "compute")?;
        if flops < 0.0 {
            return Err(negative(
                path,
                line,
                &c_compute,
                cell(&c_compute),
                "compute (FLOPs)",
            ));
        }
        if !flops.is_finite() {
            return Err(ScalingError::NonFinite {
                path: path.to_path_buf(),
                line,
                column: c_compute.name.clone(),
                value: cell(&c_compute).trim().to_string(),
            });
        }
        let tokens = match &c_tokens {
            Some(c) => {
                let t = parse_f64(path, line, c, cell(c), "token count")?;
                if t < 0.0 {
                    return Err(negative(path, line, c, cell(c), "token count"));
                }
                t
            }
            None => f64::NAN,
        };
        let loss_text = cell(&c_loss).trim().to_string();
        if loss_text.is_empty() && opts.skip_empty_loss {
            report.empty_loss_rows += 1;
            continue;
        }
        let loss = parse_f64(path, line, &c_loss, &loss_text, "loss")?;
        let loss = if loss.is_finite() {
            Some(loss)
        } else {
            match opts.non_finite {
                NonFinitePolicy::Error => {
                    return Err(ScalingError::NonFinite {
                        path: path.to_path_buf(),
                        line,
                        column: c_loss.name.clone(),
                        value: loss_text,
                    })
                }
                NonFinitePolicy::MarkDiverged => None,
            }
        };
        let acc = runs.entry(run_key.clone()).or_insert_with(|| {
            order.push(run_key.clone());
            RunAcc {
                meta: RunMeta {
                    run_id: run_key.clone(),
                    family: family.clone(),
                    params,
                    seed,
                    ..Default::default()
                },
                rows: Vec::new(),
            }
        });
        if let (Some(p), Some(c)) = (params, c_params.as_ref()) {
            if acc.meta.params != Some(p) {
                return Err(ScalingError::InvalidData(format!(
                    "{}, line {line}, column `{}`: run `{run_key}` has parameter count {p} here but {:?} on an earlier row; a run has one size (check the run column)",
                    path.display(),
                    c.name,
                    acc.meta.params
                )));
            }
        }
        acc.rows.push(Row {
            line,
            step,
            tokens,
            flops,
            loss,
        });
    }
    if n_rows == 0 {
        return Err(ScalingError::NoRows {
            path: path.to_path_buf(),
        });
    }

    let mut curves = Vec::with_capacity(order.len());
    for key in order {
        let mut acc = runs.remove(&key).expect("run key recorded");
        if let Some(c) = &c_step {
            for w in acc.rows.windows(2) {
                let (a, b) = (w[0].step.unwrap(), w[1].step.unwrap());
                if b <= a {
                    return Err(ScalingError::UnsortedSteps {
                        path: path.to_path_buf(),
                        line: w[1].line,
                        column: c.name.clone(),
                        run: key.clone(),
                        step: b,
                        previous: a,
                    });
                }
            }
        } else {
            acc.rows.sort_by(|a, b| a.flops.total_cmp(&b.flops));
        }
        let mut points = Vec::with_capacity(acc.rows.len());
        let n = acc.rows.len();
        for (i, r) in acc.rows.iter().enumerate() {
            match r.loss {
                Some(loss) => points.push(Point {
                    step: r.step.unwrap_or(i as u64),
                    tokens: r.tokens,
                    flops: r.flops,
                    loss,
                }),
                None => {
                    acc.meta.diverged = true;
                    report.diverged_runs += 1;
                    report.rows_after_divergence += n - i;
                    break;
                }
            }
        }
        curves.push(Curve::new(acc.meta, points));
    }
    Ok((curves, report))
}

fn negative(path: &Path, line: u64, col: &Col, value: &str, what: &str) -> ScalingError {
    ScalingError::InvalidData(format!(
        "{}, line {line}, column `{}`: negative {what} `{}`; a cumulative {what} cannot be negative. Fix the cell, or map the right column",
        path.display(),
        col.name,
        value.trim()
    ))
}

fn json_f64(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Load one algoprog run record: a directory with `run.json` and `curve.csv`
/// (header `step,tokens,flops,train_loss,val_loss,lr`). Fields missing from
/// `run.json` are `None`; extra fields are ignored. N is the **total**
/// parameter count, as the papers fit on: `total_params` when present, else
/// `params.embedding + params.non_embedding`, else a plain number `params`.
/// `status: "diverged"` or a NaN/inf loss flags the run diverged. A
/// `curve.csv` with a header and no rows (the run stopped before its first
/// evaluation) gives a curve with no points, not an error.
///
/// This is the one conversion from a run record to a [`Curve`]: the report,
/// the fits and the CEG commands all load runs through it.
pub fn load_run_record(dir: impl AsRef<Path>) -> Result<(Curve, LoadReport)> {
    let dir = dir.as_ref();
    let jpath = dir.join("run.json");
    let text = std::fs::read_to_string(&jpath).map_err(|source| ScalingError::Io {
        path: jpath.clone(),
        source,
    })?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ScalingError::RunRecord {
            path: jpath.clone(),
            message: format!(
                "line {}, column {}: invalid JSON: {e}",
                e.line(),
                e.column()
            ),
        })?;
    if !v.is_object() {
        return Err(ScalingError::RunRecord {
            path: jpath,
            message: "expected a JSON object".into(),
        });
    }
    let get = |k: &str| v.get(k).filter(|x| !x.is_null());
    let str_field = |k: &str| {
        get(k).map(|x| {
            x.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| x.to_string())
        })
    };
    let config = get("config");
    let cfg = |k: &str| config.and_then(|c| c.get(k)).filter(|x| !x.is_null());
    let params = match (get("total_params").and_then(json_f64), get("params")) {
        (Some(t), _) => Some(t),
        (None, Some(p)) if p.is_object() => {
            match (
                p.get("embedding").and_then(json_f64),
                p.get("non_embedding").and_then(json_f64),
            ) {
                (Some(e), Some(n)) => Some(e + n),
                (None, Some(n)) => Some(n),
                (Some(e), None) => Some(e),
                (None, None) => None,
            }
        }
        (None, Some(p)) => json_f64(p),
        (None, None) => None,
    };
    let width = get("width")
        .or_else(|| cfg("width"))
        .or_else(|| cfg("d_model"))
        .and_then(json_f64)
        .map(|w| w as usize);
    let lr = get("lr").or_else(|| cfg("lr")).and_then(json_f64);
    let token_budget = get("token_budget")
        .or_else(|| cfg("token_budget"))
        .and_then(json_f64);
    let seed = get("seed").and_then(json_f64).map(|s| s as u64);
    let status = str_field("status");
    let run_id = str_field("run_id").unwrap_or_else(|| {
        dir.file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let family = str_field("family").unwrap_or_default();

    let opts = LoadOptions {
        non_finite: NonFinitePolicy::MarkDiverged,
        skip_empty_loss: true,
        default_family: Some(family.clone()),
    };
    let (mut curves, report) =
        match load_csv_with(dir.join("curve.csv"), &ColumnMap::default(), &opts) {
            Ok(x) => x,
            // Header only: the run stopped (usually diverged) before its first evaluation.
            Err(ScalingError::NoRows { .. }) => (
                Vec::new(),
                LoadReport {
                    runs_without_points: 1,
                    ..Default::default()
                },
            ),
            Err(e) => return Err(e),
        };
    let mut curve = curves.pop().unwrap_or_default();
    let diverged = curve.meta.diverged || status.as_deref() == Some("diverged");
    curve.meta = RunMeta {
        run_id,
        family,
        width,
        params,
        token_budget,
        seed,
        lr,
        diverged,
    };
    Ok((curve, report))
}

/// Load every run record under `dir` (the directory itself if it holds a
/// `run.json`, otherwise every sub-directory, recursively, that does), in
/// path order.
pub fn load_run_records(dir: impl AsRef<Path>) -> Result<(Vec<Curve>, LoadReport)> {
    let dir = dir.as_ref();
    let mut found = Vec::new();
    collect_run_dirs(dir, &mut found)?;
    if found.is_empty() {
        return Err(ScalingError::NoRuns {
            path: dir.to_path_buf(),
        });
    }
    found.sort();
    let mut report = LoadReport::default();
    let mut curves = Vec::with_capacity(found.len());
    for d in found {
        let (c, r) = load_run_record(&d)?;
        report.merge(&r);
        curves.push(c);
    }
    Ok((curves, report))
}

fn collect_run_dirs(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if dir.join("run.json").is_file() {
        out.push(dir.to_path_buf());
        return Ok(());
    }
    let rd = std::fs::read_dir(dir).map_err(|source| ScalingError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for e in rd {
        let e = e.map_err(|source| ScalingError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let p = e.path();
        if p.is_dir() {
            collect_run_dirs(&p, out)?;
        }
    }
    Ok(())
}

/// Load curves from a path: a CSV file (with `columns` and `opts`), or a
/// directory of algoprog run records (`columns` and `opts` unused).
pub fn load_curves(
    path: impl AsRef<Path>,
    columns: &ColumnMap,
    opts: &LoadOptions,
) -> Result<(Vec<Curve>, LoadReport)> {
    let path = path.as_ref();
    if path.is_dir() {
        load_run_records(path)
    } else {
        load_csv_with(path, columns, opts)
    }
}
