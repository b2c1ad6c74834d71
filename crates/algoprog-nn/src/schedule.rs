//! Learning-rate schedules.
//!
//! Notation: T = `total_steps`, s = `step` (0-based: the first optimiser step
//! is s = 0), η = `peak_lr`, W = round(warmup_frac·T) warmup steps,
//! r = `min_ratio`.
//!
//! - Warmup (every schedule, when W > 0): lr(s) = η·(s+1)/W for s < W, so
//!   the first step uses η/W and step W−1 reaches η.
//! - After warmup, the decay progress is p(s) = clamp((s − W)/(T − 1 − W), 0, 1)
//!   (denominator at least 1): p = 0 at s = W and p = 1 at the last step s = T−1.
//! - `cosine`: lr = η·(r + (1−r)·½·(1 + cos πp)) — η at s = W, η·(1+r)/2 at
//!   p = ½, η·r at the last step. Defaults W = 10 %, r = 0.1 (the paper's table 2).
//! - `linear_decay`: lr = η·(1 − (1−r)·p) (BERT's warmup + linear decay).
//!   Default W = 10 %, r = 0: the rate reaches 0 at the last step, as in the
//!   authors' runs (the `cosine` floor stays 0.1×, the papers' table 2).
//! - `inverse_sqrt`: lr = η·√(max(W,1)/(s+1)) for s ≥ W (Vaswani et al. 2017 /
//!   T5; continuous with the warmup at s = W−1). Default W = 10 %.
//! - `constant`: lr = η after warmup (default no warmup: lr = η at every step).
//! - `wsd` (warmup–stable–decay): η from W up to S = T − round(decay_frac·T),
//!   then linear to η·r: lr = η·(1 − (1−r)·q), q = clamp((s − S)/(T − 1 − S), 0, 1).
//!   Defaults W = 10 %, decay 20 %, r = 0.1.
//!
//! Steps past T − 1 stay at the final value.

use crate::ConfigError;
use serde::{Deserialize, Serialize};

/// A learning-rate schedule: the rate for 0-based `step` of `total_steps`.
/// Implement it to add a schedule; [`ScheduleConfig`] is the config enum.
pub trait LrSchedule: Send + Sync {
    fn lr(&self, step: usize, total_steps: usize, peak_lr: f64) -> f64;
}

// The one source of each schedule default (serde defaults and constructors).
fn d_warmup() -> f64 {
    0.1
}
fn d_min() -> f64 {
    0.1
}
/// `linear_decay`'s default floor: 0, the authors' runs (linear decay to 0).
fn d_min_linear() -> f64 {
    0.0
}
fn d_decay() -> f64 {
    0.2
}

/// Schedules selectable from a config: `[train.schedule] name = "cosine"` etc.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum ScheduleConfig {
    Cosine {
        #[serde(default = "d_warmup")]
        warmup_frac: f64,
        #[serde(default = "d_min")]
        min_ratio: f64,
    },
    InverseSqrt {
        #[serde(default = "d_warmup")]
        warmup_frac: f64,
    },
    LinearDecay {
        #[serde(default = "d_warmup")]
        warmup_frac: f64,
        #[serde(default = "d_min_linear")]
        min_ratio: f64,
    },
    Constant {
        #[serde(default)]
        warmup_frac: f64,
    },
    Wsd {
        #[serde(default = "d_warmup")]
        warmup_frac: f64,
        #[serde(default = "d_decay")]
        decay_frac: f64,
        #[serde(default = "d_min")]
        min_ratio: f64,
    },
}

impl Default for ScheduleConfig {
    /// Cosine with 10 % warmup down to 0.1× (the paper's default).
    fn default() -> Self {
        Self::cosine()
    }
}

/// Number of warmup steps: round(frac·total).
pub fn warmup_steps(frac: f64, total: usize) -> usize {
    ((frac * total as f64).round() as usize).min(total)
}

/// Decay progress from `start` (0) to the last step `total − 1` (1), clamped.
pub fn progress(step: usize, start: usize, total: usize) -> f64 {
    let denom = (total.saturating_sub(1).saturating_sub(start)).max(1) as f64;
    ((step as f64 - start as f64) / denom).clamp(0.0, 1.0)
}

impl ScheduleConfig {
    /// The modern default: cosine, 10 % warmup, floor 0.1×.
    pub fn cosine() -> Self {
        Self::Cosine {
            warmup_frac: d_warmup(),
            min_ratio: d_min(),
        }
    }
    /// The retro default: inverse square root with 10 % warmup.
    pub fn inverse_sqrt() -> Self {
        Self::InverseSqrt {
            warmup_frac: d_warmup(),
        }
    }

    /// Linear decay with 10 % warmup down to 0 (the authors' runs; the
    /// papers' ablation "cosine over linear decay" compares with this).
    pub fn linear_decay() -> Self {
        Self::LinearDecay {
            warmup_frac: 0.1,
            min_ratio: 0.0,
        }
    }

    /// The warmup fraction of any variant.
    pub fn warmup_frac(&self) -> f64 {
        match self {
            Self::Cosine { warmup_frac, .. }
            | Self::InverseSqrt { warmup_frac }
            | Self::LinearDecay { warmup_frac, .. }
            | Self::Constant { warmup_frac }
            | Self::Wsd { warmup_frac, .. } => *warmup_frac,
        }
    }

    /// Checks ranges; errors name the key (`train.schedule.*`) and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let frac = |key: &str, v: f64| -> Result<(), ConfigError> {
            if !(0.0..=1.0).contains(&v) {
                return Err(ConfigError::new(
                    format!("train.schedule.{key}"),
                    format!("train.schedule.{key} = {v} is outside [0, 1]: give a fraction of the total steps, e.g. 0.1"),
                ));
            }
            Ok(())
        };
        frac("warmup_frac", self.warmup_frac())?;
        match self {
            Self::Cosine { min_ratio, .. } | Self::LinearDecay { min_ratio, .. } => {
                frac("min_ratio", *min_ratio)?
            }
            Self::Wsd {
                warmup_frac,
                decay_frac,
                min_ratio,
            } => {
                frac("decay_frac", *decay_frac)?;
                frac("min_ratio", *min_ratio)?;
                if warmup_frac + decay_frac > 1.0 {
                    return Err(ConfigError::new(
                        "train.schedule.decay_frac",
                        format!("train.schedule.warmup_frac + decay_frac = {} exceeds 1: shorten the warmup or the decay", warmup_frac + decay_frac),
                    ));
                }
            }
            Self::InverseSqrt { .. } | Self::Constant { .. } => {}
        }
        Ok(())
    }
}

impl LrSchedule for ScheduleConfig {
    fn lr(&self, step: usize, total: usize, peak: f64) -> f64 {
        let w = warmup_steps(self.warmup_frac(), total);
        if step < w {
            return peak * (step + 1) as f64 / w as f64;
        }
        match *self {
            Self::Cosine { min_ratio: r, .. } => {
                let p = progress(step, w, total);
                peak * (r + (1.0 - r) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos()))
            }
            Self::LinearDecay { min_ratio: r, .. } => {
                peak * (1.0 - (1.0 - r) * progress(step, w, total))
            }
            Self::InverseSqrt { .. } => peak * (w.max(1) as f64 / (step + 1) as f64).sqrt(),
            Self::Constant { .. } => peak,
            Self::Wsd {
                decay_frac,
                min_ratio: r,
                ..
            } => {
                let s = total - warmup_steps(decay_frac, total);
                let s = s.max(w);
                if step < s {
                    peak
                } else {
                    peak * (1.0 - (1.0 - r) * progress(step, s, total))
                }
            }
        }
    }
}
