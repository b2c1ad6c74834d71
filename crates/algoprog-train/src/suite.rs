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
//!
//! The `published` suite is the papers' ablation set: modern, then modern
//! with one choice swapped at a time ([`PUBLISHED_SWAPS`], each a one-seam
//! change, see [`FineSeam`]: norm type and placement are apart), then retro,
//! every retro choice at once (the combination test).

use algoprog_models::{ModelConfig, TransformerConfig};
use algoprog_nn::{
    FeedForwardKind, InitKind, NormConfig, OptimizerConfig, Placement, PositionalConfig,
    ScheduleConfig,
};
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
                match (t.final_norm, &t.final_norm_kind) {
                    (false, _) => "_nofinal".to_string(),
                    (true, Some(k)) if *k != t.norm => match serde_label(k).as_str() {
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
            t.final_norm_kind = d.final_norm_kind.clone();
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

/// A seam of the published ablation set: [`Seam`] with the norm split into
/// its type and its placement, and the initialisation added.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FineSeam {
    Positional,
    FeedForward,
    /// RMSNorm or LayerNorm.
    NormType,
    /// Pre or post, with the final norm (a property of where norms sit).
    Placement,
    Init,
    Schedule,
    Optimizer,
}

impl FineSeam {
    /// The seam a resolved-config field belongs to (a dotted path of its
    /// JSON form, e.g. `model.positional`, `train.optimizer.weight_decay`);
    /// `None` for fields outside every seam (width, data, lr, budget, …).
    pub fn of_field(path: &str) -> Option<FineSeam> {
        let head = |p: &str| path == p || path.starts_with(&format!("{p}."));
        Some(match () {
            _ if head("model.positional") => FineSeam::Positional,
            _ if head("model.feed_forward") || head("model.gated_hidden") => FineSeam::FeedForward,
            // The final norm's kind is a norm type (retro-runs: RMSNorm blocks, a final LayerNorm).
            _ if head("model.norm") || head("model.final_norm_kind") => FineSeam::NormType,
            _ if head("model.placement") || head("model.final_norm") => FineSeam::Placement,
            _ if head("model.init") => FineSeam::Init,
            _ if head("train.schedule") => FineSeam::Schedule,
            _ if head("train.optimizer") => FineSeam::Optimizer,
            _ => return None,
        })
    }
}

/// One variant of the published ablation set: the modern model with one choice swapped.
#[derive(Clone, Copy, Debug)]
pub struct Swap {
    /// Family name of the variant (`modern-<choice>`).
    pub family: &'static str,
    pub seam: FineSeam,
    /// Whether the choice is retro's (so the retro combination contains it).
    pub retro: bool,
    /// The published multiplier of the modern choice over this one (`published-numbers.md`), if any.
    pub published: Option<f64>,
    apply: fn(&mut RunConfig) -> Result<()>,
}

impl Swap {
    /// `base` (a modern config) with this swap applied, named after it.
    pub fn apply(&self, base: &RunConfig) -> Result<RunConfig> {
        let mut c = base.clone();
        (self.apply)(&mut c)?;
        Ok(named(c, self.family.to_string()))
    }
}

fn set_positional(c: &mut RunConfig, p: PositionalConfig) -> Result<()> {
    transformer_mut(c)?.positional = p;
    Ok(())
}
fn set_ff(c: &mut RunConfig, f: FeedForwardKind) -> Result<()> {
    transformer_mut(c)?.feed_forward = f;
    Ok(())
}
fn set_init(c: &mut RunConfig, i: InitKind) -> Result<()> {
    transformer_mut(c)?.init = i;
    Ok(())
}

/// The papers' single ablations at one width, each a swap of one seam of
/// the modern model. Published multipliers are the modern choice over the
/// swapped one at the authors' threshold; Adam over SGD is the notebook's
/// 1.67 (its source is not recorded); the initialisations have none.
/// Post-norm swaps the placement only (the final norm stays), LayerNorm the
/// norm type only; the schedules keep modern's 10% warmup; linear decay ends
/// at 0 (the authors' schedule), SGD has momentum 0.9 and no weight decay.
pub const PUBLISHED_SWAPS: &[Swap] = &[
    Swap {
        family: "modern-post_norm",
        seam: FineSeam::Placement,
        retro: true,
        published: Some(1.87),
        apply: |c| {
            transformer_mut(c)?.placement = Placement::Post;
            Ok(())
        },
    },
    Swap {
        family: "modern-sinusoidal",
        seam: FineSeam::Positional,
        retro: true,
        published: Some(1.44),
        apply: |c| set_positional(c, PositionalConfig::Sinusoidal(Default::default())),
    },
    Swap {
        family: "modern-learned",
        seam: FineSeam::Positional,
        retro: false,
        published: Some(1.26),
        apply: |c| set_positional(c, PositionalConfig::Learned(())),
    },
    Swap {
        family: "modern-gelu",
        seam: FineSeam::FeedForward,
        retro: true,
        published: Some(1.17),
        apply: |c| set_ff(c, FeedForwardKind::Gelu),
    },
    Swap {
        family: "modern-relu",
        seam: FineSeam::FeedForward,
        retro: false,
        published: Some(1.15),
        apply: |c| set_ff(c, FeedForwardKind::Relu),
    },
    Swap {
        family: "modern-layer_norm",
        seam: FineSeam::NormType,
        retro: true,
        published: Some(1.09),
        apply: |c| {
            transformer_mut(c)?.norm = NormConfig::LayerNorm(Default::default());
            Ok(())
        },
    },
    Swap {
        family: "modern-inverse_sqrt",
        seam: FineSeam::Schedule,
        retro: true,
        published: Some(1.04),
        apply: |c| {
            let warmup_frac = c.train.schedule.warmup_frac();
            c.train.schedule = ScheduleConfig::InverseSqrt { warmup_frac };
            Ok(())
        },
    },
    Swap {
        family: "modern-linear_decay",
        seam: FineSeam::Schedule,
        retro: false,
        published: Some(1.04),
        apply: |c| {
            let warmup_frac = c.train.schedule.warmup_frac();
            c.train.schedule = ScheduleConfig::LinearDecay {
                warmup_frac,
                min_ratio: 0.0,
            };
            Ok(())
        },
    },
    Swap {
        family: "modern-adam",
        seam: FineSeam::Optimizer,
        retro: true,
        published: Some(1.00),
        apply: |c| {
            c.train.optimizer = OptimizerConfig::adam();
            Ok(())
        },
    },
    Swap {
        family: "modern-sgd",
        seam: FineSeam::Optimizer,
        retro: false,
        published: Some(1.67),
        apply: |c| {
            c.train.optimizer = OptimizerConfig::sgd();
            Ok(())
        },
    },
    Swap {
        family: "modern-xavier_uniform",
        seam: FineSeam::Init,
        retro: false,
        published: None,
        apply: |c| set_init(c, InitKind::XavierUniform),
    },
    Swap {
        family: "modern-kaiming_normal",
        seam: FineSeam::Init,
        retro: false,
        published: None,
        apply: |c| set_init(c, InitKind::KaimingNormal),
    },
];

/// The published ablation set: modern, each of [`PUBLISHED_SWAPS`], then
/// retro (every retro choice at once: the combination test).
pub fn published(base: &RunConfig) -> Result<Vec<RunConfig>> {
    let modern = with_preset(base, "modern")?;
    let mut out = vec![modern.clone()];
    for s in PUBLISHED_SWAPS {
        out.push(s.apply(&modern)?);
    }
    out.push(with_preset(base, "retro")?);
    Ok(out)
}

/// The fields (dotted paths of the JSON form) in which two resolved configs
/// differ, without `name`, `family` and `preset` (labels, not settings).
pub fn differing_fields(a: &RunConfig, b: &RunConfig) -> Result<Vec<String>> {
    fn walk(p: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
        use serde_json::Value::Object;
        match (a, b) {
            (Object(x), Object(y)) => {
                let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
                keys.sort();
                keys.dedup();
                let null = serde_json::Value::Null;
                for k in keys {
                    let q = if p.is_empty() {
                        k.clone()
                    } else {
                        format!("{p}.{k}")
                    };
                    walk(
                        &q,
                        x.get(k).unwrap_or(&null),
                        y.get(k).unwrap_or(&null),
                        out,
                    );
                }
            }
            _ if a != b => out.push(p.to_string()),
            _ => {}
        }
    }
    let json = |c: &RunConfig| {
        serde_json::to_value(c)
            .map_err(|e| TrainError::Internal(format!("serialising a config: {e}")))
    };
    let mut out = Vec::new();
    walk("", &json(a)?, &json(b)?, &mut out);
    out.retain(|p| !matches!(p.as_str(), "name" | "family" | "preset"));
    Ok(out)
}

/// A suite by name: `reverts`, `upgrades`, `factorial`, `presets` (modern
/// and retro) or `published` (the papers' ablation set).
pub fn suite(name: &str, base: &RunConfig) -> Result<Vec<RunConfig>> {
    match name {
        "published" => published(base),
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
            "use one of: published, reverts, upgrades, factorial, presets".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn modern() -> RunConfig {
        RunConfig::from_toml_str(
            "preset = \"modern\"\n[model]\nd_model = 32\n[train]\nlr = 3e-3\nsteps = 10\n",
        )
        .unwrap()
    }

    fn seams(a: &RunConfig, b: &RunConfig) -> Vec<FineSeam> {
        let mut s: Vec<FineSeam> = differing_fields(a, b)
            .unwrap()
            .iter()
            .map(|f| FineSeam::of_field(f).unwrap_or_else(|| panic!("{f} is in no seam")))
            .collect();
        s.sort_by_key(|x| *x as u8);
        s.dedup();
        s
    }

    #[test]
    fn every_published_variant_differs_from_modern_in_exactly_its_one_seam() {
        let runs = published(&modern()).unwrap();
        let reference = &runs[0];
        assert_eq!(reference.family(), "modern");
        assert_eq!(runs.len(), PUBLISHED_SWAPS.len() + 2);
        for (swap, c) in PUBLISHED_SWAPS.iter().zip(&runs[1..]) {
            assert_eq!(c.family(), swap.family);
            assert_eq!(seams(reference, c), vec![swap.seam], "{}", swap.family);
            // Width, data, lr, budget and seed are the reference's.
            assert_eq!(c.train.lr, reference.train.lr);
            assert_eq!(c.train.steps, reference.train.steps);
            assert_eq!(c.data, reference.data);
        }
        // The field-level differences of a few swaps, by name.
        let f = |fam: &str| {
            let c = runs.iter().find(|c| c.family() == fam).unwrap();
            differing_fields(reference, c).unwrap()
        };
        assert_eq!(f("modern-post_norm"), vec!["model.placement"]);
        assert_eq!(f("modern-layer_norm"), vec!["model.norm"]);
        assert_eq!(f("modern-gelu"), vec!["model.feed_forward"]);
        // The published set covers every seam, each init the code has, both positional swaps.
        let mut covered: Vec<FineSeam> = PUBLISHED_SWAPS.iter().map(|s| s.seam).collect();
        covered.sort_by_key(|x| *x as u8);
        covered.dedup();
        assert_eq!(covered.len(), 7);
    }

    #[test]
    fn retro_is_every_retro_choice_at_once() {
        let runs = published(&modern()).unwrap();
        let (reference, retro) = (&runs[0], runs.last().unwrap());
        assert_eq!(retro.family(), "retro");
        let differ = seams(reference, retro);
        for swap in PUBLISHED_SWAPS.iter().filter(|s| s.retro) {
            assert!(
                differ.contains(&swap.seam),
                "retro keeps modern's {:?} ({})",
                swap.seam,
                swap.family
            );
        }
        // Six retro choices in six different seams: the combination differs in all of them.
        let retro_seams: Vec<FineSeam> = PUBLISHED_SWAPS
            .iter()
            .filter(|s| s.retro)
            .map(|s| s.seam)
            .collect();
        assert_eq!(retro_seams.len(), 6);
        // Retro's values in the seams where a single swap has retro's exact choice.
        for fam in ["modern-sinusoidal", "modern-gelu", "modern-adam"] {
            let c = runs.iter().find(|c| c.family() == fam).unwrap();
            let swap = PUBLISHED_SWAPS.iter().find(|s| s.family == fam).unwrap();
            let fields = differing_fields(reference, c).unwrap();
            let mut probe = c.clone();
            // Taking retro's value of that field gives back the single swap.
            let rj = serde_json::to_value(retro).unwrap();
            let mut pj = serde_json::to_value(&probe).unwrap();
            for f in &fields {
                let ptr = format!("/{}", f.replace('.', "/"));
                *pj.pointer_mut(&ptr).unwrap() = rj.pointer(&ptr).unwrap().clone();
            }
            probe = serde_json::from_value(pj).unwrap();
            assert_eq!(
                &probe, c,
                "{fam}: retro's {:?} is not the swap's",
                swap.seam
            );
        }
    }

    #[test]
    fn the_older_suites_still_build() {
        let base = modern();
        assert_eq!(suite("reverts", &base).unwrap().len(), 6);
        assert_eq!(suite("upgrades", &base).unwrap().len(), 6);
        assert_eq!(suite("factorial", &base).unwrap().len(), 16);
        assert_eq!(suite("presets", &base).unwrap().len(), 2);
        let e = suite("nope", &base).unwrap_err().to_string();
        assert!(e.contains("published, reverts"), "{e}");
    }
}
