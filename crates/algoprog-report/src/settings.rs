//! Analysis settings: how the report turns curves into the papers' numbers.
//!
//! Read from a study's `[analysis]` table or from a TOML file of their own
//! (`algoprog report --analysis FILE`). Every key is optional; unknown keys
//! are errors naming the key. The defaults are the papers' settings for C4
//! with the GPT-2 tokenizer (see `published-numbers.md`):
//!
//! ```toml
//! e = 1.9                          # irreducible loss, or "fit"
//! compute_range = [1e16, 5e17]     # frontier fits only use this compute range
//! range_mode = "before_pareto"     # or "after_pareto" (the range applied to the envelope of all points)
//! threshold = 5.277                # CEG loss threshold L*, or "auto"
//! margin = 0.5                     # nats: plateau runs and the refusal of "auto"
//! fit_space = "excess"             # least squares on y = L - E (the authors'), or "log"
//! kaplan_rule = "kaplan2020"       # or "appendix" (D = 831.4 N^0.74)
//! bootstrap = 1000                 # replicates of every bootstrap interval
//! ```
//!
//! On other data (a small corpus, another tokenizer) the plateau and the
//! reachable losses differ, so a study states its own settings: usually
//! `e = "fit"` or a number it justifies, `threshold = "auto"`, and no
//! compute range (`compute_range = "all"`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{ReportError, Result};

/// Irreducible loss E of the frontier fits.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "NumOrWord", into = "NumOrWord")]
pub enum ESetting {
    /// E stated (the papers: 1.9 on C4 with GPT-2's tokenizer).
    Fixed(f64),
    /// E fitted per family.
    Fit,
}

/// CEG loss threshold L*.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "NumOrWord", into = "NumOrWord")]
pub enum ThresholdSetting {
    /// L* stated (the papers: 5.277 nats).
    Fixed(f64),
    /// The lowest loss every compared run reaches, refused when it lies
    /// within `margin` of the plateau (unigram entropy) or of a run's plateau.
    Auto,
}

/// Compute range of the frontier fits.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RangeRepr", into = "RangeRepr")]
pub enum ComputeRange {
    /// Every point.
    All,
    /// Points with lo <= C <= hi.
    Range(f64, f64),
}

/// Where the compute range is applied relative to the Pareto step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RangeMode {
    /// Keep points in the range, then take the envelope (the authors' notebook).
    #[default]
    BeforePareto,
    /// Envelope of every point, then keep the part in the range (a point
    /// below the range still dominates points inside it).
    AfterPareto,
}

/// Residual space of the frontier power law.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FitSpaceSetting {
    /// Unweighted least squares on y = L − E = A·C^α (scipy's curve_fit, as the authors).
    #[default]
    Excess,
    /// Least squares on log(L − E) (a straight line on log-log axes).
    Log,
}

/// Which rule "Kaplan" allocation means.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KaplanRuleSetting {
    /// Kaplan et al. (2020): N = 1.3e9·(C / 8.64e19)^0.73, D = C / 6N (the later paper; 7.285 at 1e23).
    #[default]
    Kaplan2020,
    /// The earlier paper's appendix: D = 831.4·N^0.74.
    Appendix,
}

/// The report's analysis settings (module docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalysisSettings {
    /// Irreducible loss E: a number or `"fit"`.
    pub e: ESetting,
    /// Compute range of frontier fits: `[lo, hi]` or `"all"`.
    pub compute_range: ComputeRange,
    /// Range applied before (authors) or after the Pareto step.
    pub range_mode: RangeMode,
    /// CEG threshold: a number or `"auto"`.
    pub threshold: ThresholdSetting,
    /// Nats: a run is a plateau run when its lowest loss is not at least
    /// this far below the unigram entropy; `auto` refuses thresholds within
    /// it of the plateau.
    pub margin: f64,
    /// Residual space of the frontier fits.
    pub fit_space: FitSpaceSetting,
    /// Kaplan's allocation rule.
    pub kaplan_rule: KaplanRuleSetting,
    /// Bootstrap replicates of every interval (0: no intervals).
    pub bootstrap: usize,
    /// Confidence level of the intervals.
    pub level: f64,
    /// The ablation reference family (the full modern model).
    pub reference: String,
    /// Unigram entropy of the validation data in nats/token, for inputs that
    /// do not record it (CSV logs); algoprog run records carry it.
    pub unigram_entropy: Option<f64>,
    /// Words for the data behind the runs, for the published-vs-this notes
    /// (default: what the run records say, or "unknown").
    pub data: Option<String>,
}

impl Default for AnalysisSettings {
    /// The papers' settings on C4 with the GPT-2 tokenizer.
    fn default() -> Self {
        Self {
            e: ESetting::Fixed(1.9),
            compute_range: ComputeRange::Range(1e16, 5e17),
            range_mode: RangeMode::BeforePareto,
            threshold: ThresholdSetting::Fixed(5.277),
            margin: 0.5,
            fit_space: FitSpaceSetting::Excess,
            kaplan_rule: KaplanRuleSetting::Kaplan2020,
            bootstrap: 1000,
            level: 0.9,
            reference: "modern".into(),
            unigram_entropy: None,
            data: None,
        }
    }
}

/// The keys of an analysis table, for error messages.
pub const KEYS: &str = "e, compute_range, range_mode, threshold, margin, fit_space, kaplan_rule, bootstrap, level, reference, unigram_entropy, data";

/// The most bootstrap replicates a report accepts.
pub const MAX_BOOTSTRAP: usize = 100_000;

impl AnalysisSettings {
    /// Settings from a TOML table (a study's `[analysis]`); `what` names the
    /// source in errors.
    pub fn from_table(table: &toml::Table, what: &str) -> Result<Self> {
        let s: AnalysisSettings =
            toml::Value::Table(table.clone())
                .try_into()
                .map_err(|e: toml::de::Error| ReportError::Settings {
                    source_name: what.into(),
                    message: format!("{}; analysis keys: {KEYS}", e.message().trim()),
                })?;
        s.check(what)?;
        Ok(s)
    }

    /// Settings from TOML text (a whole file of analysis keys).
    pub fn from_toml_str(text: &str, what: &str) -> Result<Self> {
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ReportError::Settings {
                    source_name: what.into(),
                    message: format!("not valid TOML: {e}"),
                })?;
        // A study file may be given as well: use its [analysis] table.
        if let Some(toml::Value::Table(t)) = table.get("analysis") {
            return Self::from_table(t, &format!("{what} [analysis]"));
        }
        Self::from_table(&table, what)
    }

    /// Settings of a study: its `[analysis]` table, or the papers' defaults
    /// when it has none.
    pub fn from_study_toml(text: &str, what: &str) -> Result<Self> {
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ReportError::Settings {
                    source_name: what.into(),
                    message: format!("not valid TOML: {e}"),
                })?;
        match table.get("analysis") {
            Some(toml::Value::Table(t)) => Self::from_table(t, &format!("{what} [analysis]")),
            Some(_) => Err(ReportError::Settings {
                source_name: what.into(),
                message: "`analysis` must be a table ([analysis])".into(),
            }),
            None => Ok(Self::default()),
        }
    }

    /// Settings of a run store: the `[analysis]` of its `study.toml`, or the
    /// papers' defaults.
    pub fn for_store(root: &Path) -> Result<Self> {
        let p = root.join("study.toml");
        match std::fs::read_to_string(&p) {
            Ok(text) => Self::from_study_toml(&text, &p.display().to_string()),
            Err(_) => Ok(Self::default()),
        }
    }

    /// Settings from a TOML file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| ReportError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    fn check(&self, what: &str) -> Result<()> {
        let bad = |m: String| {
            Err(ReportError::Settings {
                source_name: what.into(),
                message: m,
            })
        };
        if let ESetting::Fixed(e) = self.e {
            if !(e.is_finite() && e >= 0.0) {
                return bad(format!(
                    "e = {e}: the irreducible loss must be a finite number >= 0, or \"fit\""
                ));
            }
        }
        if let ComputeRange::Range(lo, hi) = self.compute_range {
            if !(lo > 0.0 && hi > lo && hi.is_finite()) {
                return bad(format!(
                    "compute_range = [{lo:e}, {hi:e}]: needs 0 < lo < hi (FLOPs), or \"all\""
                ));
            }
        }
        if let ThresholdSetting::Fixed(t) = self.threshold {
            if !(t.is_finite() && t > 0.0) {
                return bad(format!(
                    "threshold = {t}: needs a positive loss in nats, or \"auto\""
                ));
            }
            if let ESetting::Fixed(e) = self.e {
                if t <= e {
                    return bad(format!("threshold = {t} is not above e = {e}: no frontier reaches a loss at or below its irreducible loss"));
                }
            }
        }
        if !(self.margin.is_finite() && self.margin >= 0.0) {
            return bad(format!("margin = {}: needs a number of nats >= 0 (the papers' threshold sits 2.3 nats below the plateau; 0.5 is a sensible least)", self.margin));
        }
        if self.bootstrap > MAX_BOOTSTRAP {
            return bad(format!(
                "bootstrap = {}: at most {MAX_BOOTSTRAP} replicates",
                self.bootstrap
            ));
        }
        if !(self.level > 0.0 && self.level < 1.0) {
            return bad(format!(
                "level = {}: needs a confidence level in (0, 1), e.g. 0.9",
                self.level
            ));
        }
        if let Some(h) = self.unigram_entropy {
            if !(h.is_finite() && h > 0.0) {
                return bad(format!(
                    "unigram_entropy = {h}: needs a positive number of nats per token"
                ));
            }
        }
        Ok(())
    }

    /// The fixed E, if stated.
    pub fn fixed_e(&self) -> Option<f64> {
        match self.e {
            ESetting::Fixed(e) => Some(e),
            ESetting::Fit => None,
        }
    }

    /// One line describing the settings, for captions and the setup section.
    pub fn describe(&self) -> String {
        format!(
            "E = {}; frontier compute range {} ({}); threshold {}; plateau margin {} nats; fit on {}; Kaplan rule {}; {} bootstrap replicates",
            match self.e {
                ESetting::Fixed(e) => format!("{e}"),
                ESetting::Fit => "fitted".into(),
            },
            match self.compute_range {
                ComputeRange::All => "all".into(),
                ComputeRange::Range(a, b) => format!("[{a:.0e}, {b:.0e}]"),
            },
            match self.range_mode {
                RangeMode::BeforePareto => "applied before the Pareto step",
                RangeMode::AfterPareto => "applied after the Pareto step",
            },
            match self.threshold {
                ThresholdSetting::Fixed(t) => format!("L* = {t}"),
                ThresholdSetting::Auto => "auto".into(),
            },
            self.margin,
            match self.fit_space {
                FitSpaceSetting::Excess => "y = L − E (least squares)",
                FitSpaceSetting::Log => "log(L − E)",
            },
            match self.kaplan_rule {
                KaplanRuleSetting::Kaplan2020 => "Kaplan et al. 2020 (N = 1.3e9·C_PFd^0.73)",
                KaplanRuleSetting::Appendix => "appendix (D = 831.4·N^0.74)",
            },
            self.bootstrap
        )
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum NumOrWord {
    Num(f64),
    Word(String),
}

impl TryFrom<NumOrWord> for ESetting {
    type Error = String;
    fn try_from(v: NumOrWord) -> std::result::Result<Self, String> {
        match v {
            NumOrWord::Num(x) => Ok(ESetting::Fixed(x)),
            NumOrWord::Word(w) if w == "fit" => Ok(ESetting::Fit),
            NumOrWord::Word(w) => Err(format!("e = \"{w}\": give a number (e.g. 1.9) or \"fit\"")),
        }
    }
}

impl From<ESetting> for NumOrWord {
    fn from(v: ESetting) -> Self {
        match v {
            ESetting::Fixed(x) => NumOrWord::Num(x),
            ESetting::Fit => NumOrWord::Word("fit".into()),
        }
    }
}

impl TryFrom<NumOrWord> for ThresholdSetting {
    type Error = String;
    fn try_from(v: NumOrWord) -> std::result::Result<Self, String> {
        match v {
            NumOrWord::Num(x) => Ok(ThresholdSetting::Fixed(x)),
            NumOrWord::Word(w) if w == "auto" => Ok(ThresholdSetting::Auto),
            NumOrWord::Word(w) => Err(format!(
                "threshold = \"{w}\": give a loss in nats (e.g. 5.277) or \"auto\""
            )),
        }
    }
}

impl From<ThresholdSetting> for NumOrWord {
    fn from(v: ThresholdSetting) -> Self {
        match v {
            ThresholdSetting::Fixed(x) => NumOrWord::Num(x),
            ThresholdSetting::Auto => NumOrWord::Word("auto".into()),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum RangeRepr {
    Pair(Vec<f64>),
    Word(String),
}

impl TryFrom<RangeRepr> for ComputeRange {
    type Error = String;
    fn try_from(v: RangeRepr) -> std::result::Result<Self, String> {
        match v {
            RangeRepr::Pair(p) if p.len() == 2 => Ok(ComputeRange::Range(p[0], p[1])),
            RangeRepr::Word(w) if w == "all" => Ok(ComputeRange::All),
            _ => Err("compute_range: give [lo, hi] in FLOPs (e.g. [1e16, 5e17]) or \"all\"".into()),
        }
    }
}

impl From<ComputeRange> for RangeRepr {
    fn from(v: ComputeRange) -> Self {
        match v {
            ComputeRange::All => RangeRepr::Word("all".into()),
            ComputeRange::Range(a, b) => RangeRepr::Pair(vec![a, b]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_papers() {
        let s = AnalysisSettings::from_toml_str("", "t").unwrap();
        assert_eq!(s.e, ESetting::Fixed(1.9));
        assert_eq!(s.compute_range, ComputeRange::Range(1e16, 5e17));
        assert_eq!(s.range_mode, RangeMode::BeforePareto);
        assert_eq!(s.threshold, ThresholdSetting::Fixed(5.277));
        assert_eq!(s.kaplan_rule, KaplanRuleSetting::Kaplan2020);
        assert_eq!(s.bootstrap, 1000);
    }

    #[test]
    fn words_and_numbers_parse() {
        let s = AnalysisSettings::from_toml_str(
            "e = \"fit\"\nthreshold = \"auto\"\nmargin = 0.7\ncompute_range = \"all\"\nrange_mode = \"after_pareto\"\nfit_space = \"log\"\nkaplan_rule = \"appendix\"\nbootstrap = 20\nunigram_entropy = 5.28\n",
            "t",
        )
        .unwrap();
        assert_eq!(
            (s.e, s.threshold, s.margin, s.compute_range),
            (
                ESetting::Fit,
                ThresholdSetting::Auto,
                0.7,
                ComputeRange::All
            )
        );
        assert_eq!(
            (s.range_mode, s.fit_space, s.kaplan_rule, s.bootstrap),
            (
                RangeMode::AfterPareto,
                FitSpaceSetting::Log,
                KaplanRuleSetting::Appendix,
                20
            )
        );
        let s = AnalysisSettings::from_toml_str(
            "e = 1.5\nthreshold = 4.0\ncompute_range = [1e10, 1e12]",
            "t",
        )
        .unwrap();
        assert_eq!(
            (s.e, s.threshold, s.compute_range),
            (
                ESetting::Fixed(1.5),
                ThresholdSetting::Fixed(4.0),
                ComputeRange::Range(1e10, 1e12)
            )
        );
        // A study file: its [analysis] table is used.
        let s = AnalysisSettings::from_toml_str(
            "name = \"x\"\n[analysis]\nthreshold = \"auto\"\n",
            "study",
        )
        .unwrap();
        assert_eq!(s.threshold, ThresholdSetting::Auto);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors_naming_them() {
        let e = AnalysisSettings::from_toml_str("threshhold = 5.0\n", "a.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("a.toml") && e.contains("threshhold") && e.contains("analysis keys"),
            "{e}"
        );
        let e = AnalysisSettings::from_toml_str("e = \"fitted\"\n", "a.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"fit\""), "{e}");
        let e = AnalysisSettings::from_toml_str("threshold = \"lowest\"\n", "a.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"auto\""), "{e}");
        let e = AnalysisSettings::from_toml_str("compute_range = [5e17, 1e16]\n", "a.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("compute_range") && e.contains("lo < hi"), "{e}");
        let e = AnalysisSettings::from_toml_str("threshold = 1.5\n", "a.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not above e = 1.9"), "{e}");
        let e = AnalysisSettings::from_toml_str("bootstrap = 1000000000\n", "a.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bootstrap") && e.contains("at most"), "{e}");
        let e = AnalysisSettings::from_toml_str("kaplan_rule = \"hoffmann\"\n", "a.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("kaplan2020") && e.contains("appendix"), "{e}");
    }
}
