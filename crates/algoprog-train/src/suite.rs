//! Ablation suites: modern and retro differ in five seams; a suite is a set
//! of run configs that move between them one seam at a time, or all 16
//! combinations of the four architectural/schedule seams.
//!
//! | seam | modern | retro |
//! |---|---|---|
//! | positional | rotary | sinusoidal |
//! | feed_forward | SwiGLU | GeLU MLP |
//! | norm (kind, placement, final norm) | pre-RMSNorm + final norm | post-RMSNorm + final LayerNorm |
//! | schedule | cosine, 10% warmup, floor 0.1× | inverse-sqrt |
//! | optimizer | AdamW (wd 0.01) | Adam (no wd) |
//!
//! `retro` is the authors' runs; with the `retro-text` preset (the papers'
//! text) the norm seam is post-LayerNorm without a final norm.
//!
//! Everything else (width, depth, data, learning rate, budget, seed) is taken
//! from the base config unchanged, so a suite's runs differ only where their
//! names say.

use algoprog_models::{ModelConfig, TransformerConfig};
use serde::{Deserialize, Serialize};

use crate::config::{preset_table, RunConfig};
use crate::error::{Result, TrainError};

/// One place where modern and retro differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Seam {
    Positional,
    FeedForward,
    Norm,
    Schedule,
    Optimizer,
}

impl Seam {
    /// Every seam, in the order the papers discuss them.
    pub const ALL: [Seam; 5] = [
        Seam::Positional,
        Seam::FeedForward,
        Seam::Norm,
        Seam::Schedule,
        Seam::Optimizer,
    ];
    /// The four seams of the factorial suite (the optimiser stays AdamW).
    pub const FACTORIAL: [Seam; 4] = [
        Seam::Positional,
        Seam::FeedForward,
        Seam::Norm,
        Seam::Schedule,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Seam::Positional => "positional",
            Seam::FeedForward => "feed_forward",
            Seam::Norm => "norm",
            Seam::Schedule => "schedule",
            Seam::Optimizer => "optimizer",
        }
    }

    /// Short label of the value a config has in this seam, e.g. `rotary`, `pre_rms`.
    pub fn label(self, cfg: &RunConfig) -> String {
        match (self, &cfg.model) {
            (Seam::Positional, ModelConfig::Transformer(t)) => serde_label(&t.positional),
            (Seam::FeedForward, ModelConfig::Transformer(t)) => serde_label(&t.feed_forward),
            (Seam::Norm, ModelConfig::Transformer(t)) => format!(
                "{}_{}{}",
                serde_label(&t.placement),
                match serde_label(&t.norm).as_str() {
                    "rms_norm" => "rms".to_string(),
                    "layer_norm" => "ln".to_string(),
                    other => other.to_string(),
                },
                match (t.final_norm, t.final_norm_kind) {
                    (false, _) => "_nofinal".to_string(),
                    (true, Some(k)) if k != t.norm => match serde_label(&k).as_str() {
                        "rms_norm" => "_final_rms".to_string(),
                        "layer_norm" => "_final_ln".to_string(),
                        other => format!("_final_{other}"),
                    },
                    (true, _) => String::new(),
                }
            ),
            (Seam::Schedule, _) => serde_label(&cfg.train.schedule),
            (Seam::Optimizer, _) => serde_label(&cfg.train.optimizer),
            #[allow(unreachable_patterns)]
            _ => "n/a".to_string(),
        }
    }
}

/// The serde tag or value name of a config value (`rotary`, `adam_w`,
/// `cosine`), used in run names and exported tables: a plain string value as
/// is, a tagged table by its `name` or `kind`, anything else `custom`.
pub fn serde_label<T: Serialize + ?Sized>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Object(m)) => m
            .get("name")
            .or_else(|| m.get("kind"))
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .unwrap_or_else(|| "custom".into()),
        _ => "custom".into(),
    }
}

fn transformer(cfg: &RunConfig) -> Result<&TransformerConfig> {
    match &cfg.model {
        ModelConfig::Transformer(t) => Ok(t),
        #[allow(unreachable_patterns)]
        _ => Err(TrainError::config(
            "model.kind",
            "ablation suites swap Transformer components".into(),
            "use a Transformer base config (preset modern or retro)".into(),
        )),
    }
}

fn transformer_mut(cfg: &mut RunConfig) -> Result<&mut TransformerConfig> {
    match &mut cfg.model {
        ModelConfig::Transformer(t) => Ok(t),
        #[allow(unreachable_patterns)]
        _ => Err(TrainError::config(
            "model.kind",
            "ablation suites swap Transformer components".into(),
            "use a Transformer base config (preset modern or retro)".into(),
        )),
    }
}

/// Copy one seam from `donor` into `target`.
pub fn transplant(target: &mut RunConfig, donor: &RunConfig, seam: Seam) -> Result<()> {
    match seam {
        Seam::Positional => {
            transformer_mut(target)?.positional = transformer(donor)?.positional.clone()
        }
        Seam::FeedForward => {
            let d = transformer(donor)?;
            let t = transformer_mut(target)?;
            t.feed_forward = d.feed_forward;
            t.gated_hidden = d.gated_hidden;
        }
        Seam::Norm => {
            let d = transformer(donor)?;
            let t = transformer_mut(target)?;
            t.norm = d.norm.clone();
            t.placement = d.placement;
            t.final_norm = d.final_norm;
            t.final_norm_kind = d.final_norm_kind;
        }
        Seam::Schedule => target.train.schedule = donor.train.schedule.clone(),
        Seam::Optimizer => target.train.optimizer = donor.train.optimizer.clone(),
    }
    Ok(())
}

/// The seams in which two configs differ.
pub fn differing_seams(a: &RunConfig, b: &RunConfig) -> Result<Vec<Seam>> {
    let mut out = Vec::new();
    for seam in Seam::ALL {
        let mut probe = a.clone();
        transplant(&mut probe, b, seam)?;
        if probe != *a {
            out.push(seam);
        }
    }
    Ok(out)
}

/// `base` with every seam taken from preset `name` (width, data, lr, budget, seed kept).
pub fn with_preset(base: &RunConfig, name: &str) -> Result<RunConfig> {
    let d = transformer(base)?.d_model;
    let table = preset_table(name, d)?;
    let mut donor = base.clone();
    let model: ModelConfig = table["model"]
        .clone()
        .try_into()
        .map_err(|e| TrainError::Internal(format!("preset {name}: {e}")))?;
    donor.model = model;
    donor.train.optimizer = table["train"]["optimizer"]
        .clone()
        .try_into()
        .map_err(|e| TrainError::Internal(format!("preset {name}: {e}")))?;
    donor.train.schedule = table["train"]["schedule"]
        .clone()
        .try_into()
        .map_err(|e| TrainError::Internal(format!("preset {name}: {e}")))?;
    let mut out = base.clone();
    for seam in Seam::ALL {
        transplant(&mut out, &donor, seam)?;
    }
    out.name = name.to_string();
    out.family = Some(name.to_string());
    out.preset = Some(name.to_string());
    Ok(out)
}

fn named(mut cfg: RunConfig, name: String) -> RunConfig {
    cfg.family = Some(name.clone());
    cfg.name = name;
    cfg
}

/// Preset `from`, then `from` with each single seam taken from preset `to`,
/// named `<from>-<to>_<seam>`.
fn single_moves(base: &RunConfig, from: &str, to: &str) -> Result<Vec<RunConfig>> {
    let start = with_preset(base, from)?;
    let donor = with_preset(base, to)?;
    let mut out = vec![start.clone()];
    for seam in Seam::ALL {
        let mut c = start.clone();
        transplant(&mut c, &donor, seam)?;
        out.push(named(c, format!("{from}-{to}_{}", seam.name())));
    }
    Ok(out)
}

/// Modern, then modern with each single seam reverted to retro (`modern-retro_<seam>`).
pub fn single_reverts(base: &RunConfig) -> Result<Vec<RunConfig>> {
    single_moves(base, "modern", "retro")
}

/// Retro, then retro with each single seam upgraded to modern (`retro-modern_<seam>`).
pub fn single_upgrades(base: &RunConfig) -> Result<Vec<RunConfig>> {
    single_moves(base, "retro", "modern")
}

/// All 2⁴ = 16 combinations of modern/retro positional, feed-forward, norm and
/// schedule, with the modern optimiser (AdamW) throughout. Names list the
/// four values, e.g. `rotary+swiglu+pre_rms+cosine`.
pub fn factorial(base: &RunConfig) -> Result<Vec<RunConfig>> {
    let modern = with_preset(base, "modern")?;
    let retro = with_preset(base, "retro")?;
    let mut out = Vec::with_capacity(16);
    for mask in 0u32..16 {
        let mut c = modern.clone();
        for (i, seam) in Seam::FACTORIAL.iter().enumerate() {
            if mask & (1 << i) != 0 {
                transplant(&mut c, &retro, *seam)?;
            }
        }
        let name = Seam::FACTORIAL
            .iter()
            .map(|s| s.label(&c))
            .collect::<Vec<_>>()
            .join("+");
        out.push(named(c, name));
    }
    Ok(out)
}

/// A suite by name: `reverts`, `upgrades`, `factorial`, or `presets` (modern and retro).
pub fn suite(name: &str, base: &RunConfig) -> Result<Vec<RunConfig>> {
    match name {
        "reverts" => single_reverts(base),
        "upgrades" => single_upgrades(base),
        "factorial" => factorial(base),
        "presets" => Ok(vec![
            with_preset(base, "modern")?,
            with_preset(base, "retro")?,
        ]),
        other => Err(TrainError::config(
            "suite",
            format!("unknown suite `{other}`"),
            "use one of: reverts, upgrades, factorial, presets".into(),
        )),
    }
}
