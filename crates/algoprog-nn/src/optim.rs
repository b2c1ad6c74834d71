//! Optimisers with PyTorch semantics, weight-decay masks and state dicts.
//!
//! With g the gradient, p the parameter, η the learning rate, t = 1, 2, …
//! the step count, λ the weight decay (applied only where the [`DecayMask`]
//! allows):
//! - AdamW (Loshchilov & Hutter): p ← p − ηλp; m ← β₁m + (1−β₁)g;
//!   v ← β₂v + (1−β₂)g²; p ← p − η·(m/(1−β₁ᵗ)) / (√(v/(1−β₂ᵗ)) + ε).
//!   Defaults β₁ = 0.9, β₂ = 0.999, ε = 1e-8 (PyTorch's), λ = 0.01 (paper).
//! - Adam: as AdamW but the decay is L2 inside the gradient, g ← g + λp;
//!   default λ = 0 (the retro baseline has no weight decay).
//! - SGD: g ← g + λp; b ← μb + g (b₀ = 0, no dampening); the step is
//!   g + μb with Nesterov, b without; p ← p − η·step. Defaults μ = 0.9
//!   (paper), Nesterov off, λ = 0.
//! - RMSprop: g ← g + λp; v ← αv + (1−α)g²; u = g/(√v + ε); with μ > 0:
//!   b ← μb + u, p ← p − ηb; else p ← p − ηu. Defaults α = 0.99, ε = 1e-8, μ = 0.
//!
//! Parameters without a gradient in the [`GradStore`] are left unchanged.

use crate::params::{ParamRole, ParamStore};
use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// An optimiser over the parameters it was built for.
pub trait Optimizer: Send {
    /// One update with learning rate `lr`.
    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()>;
    /// Number of steps taken.
    fn steps(&self) -> usize;
    /// Optimiser state for checkpoints: tensors keyed `{param}.{slot}` and a
    /// scalar `step` (f64).
    fn state_dict(&self) -> Result<HashMap<String, Tensor>>;
    /// Restores a state saved by [`Optimizer::state_dict`] of the same configuration.
    fn load_state_dict(&mut self, state: &HashMap<String, Tensor>) -> Result<()>;
}

/// Which parameter roles weight decay skips. The default decays everything,
/// as the papers do (`decay_mask = { exclude_biases = true, ... }` in TOML).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DecayMask {
    /// Skip [`ParamRole::Bias`].
    pub exclude_biases: bool,
    /// Skip [`ParamRole::Norm`] (gains and shifts).
    pub exclude_norms: bool,
    /// Skip [`ParamRole::Embedding`], [`ParamRole::PositionalEmbedding`] and [`ParamRole::Output`].
    pub exclude_embeddings: bool,
}

impl DecayMask {
    /// Whether a parameter with `role` is decayed.
    pub fn decays(&self, role: ParamRole) -> bool {
        match role {
            ParamRole::Bias => !self.exclude_biases,
            ParamRole::Norm => !self.exclude_norms,
            ParamRole::Embedding | ParamRole::PositionalEmbedding | ParamRole::Output => {
                !self.exclude_embeddings
            }
            ParamRole::AttentionQkv
            | ParamRole::AttentionOut
            | ParamRole::MlpIn
            | ParamRole::MlpOut
            | ParamRole::Recurrent
            | ParamRole::RecurrentInput
            | ParamRole::Other => true,
        }
    }
}

// The one source of each optimiser default (serde defaults and constructors).
fn d_b1() -> f64 {
    0.9
}
fn d_b2() -> f64 {
    0.999
}
fn d_eps() -> f64 {
    1e-8
}
fn d_wd() -> f64 {
    0.01
}
fn d_mom() -> f64 {
    0.9
}
fn d_alpha() -> f64 {
    0.99
}

/// Optimisers selectable from a config: `[train.optimizer] name = "adam_w"`…
/// (snake_case names: `adam_w`, `adam`, `sgd`, `rms_prop`; `adamw` and
/// `rmsprop` are accepted too). The learning rate comes from the schedule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum OptimizerConfig {
    #[serde(alias = "adamw")]
    AdamW {
        #[serde(default = "d_b1")]
        beta1: f64,
        #[serde(default = "d_b2")]
        beta2: f64,
        #[serde(default = "d_eps")]
        eps: f64,
        #[serde(default = "d_wd")]
        weight_decay: f64,
        #[serde(default)]
        decay_mask: DecayMask,
    },
    Adam {
        #[serde(default = "d_b1")]
        beta1: f64,
        #[serde(default = "d_b2")]
        beta2: f64,
        #[serde(default = "d_eps")]
        eps: f64,
        #[serde(default)]
        weight_decay: f64,
        #[serde(default)]
        decay_mask: DecayMask,
    },
    Sgd {
        #[serde(default = "d_mom")]
        momentum: f64,
        #[serde(default)]
        nesterov: bool,
        #[serde(default)]
        weight_decay: f64,
        #[serde(default)]
        decay_mask: DecayMask,
    },
    #[serde(alias = "rmsprop")]
    RmsProp {
        #[serde(default = "d_alpha")]
        alpha: f64,
        #[serde(default = "d_eps")]
        eps: f64,
        #[serde(default)]
        momentum: f64,
        #[serde(default)]
        weight_decay: f64,
        #[serde(default)]
        decay_mask: DecayMask,
    },
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self::adam_w()
    }
}

impl OptimizerConfig {
    /// AdamW with β = (0.9, 0.999), ε = 1e-8, λ = 0.01 on every parameter (modern).
    pub fn adam_w() -> Self {
        Self::AdamW {
            beta1: d_b1(),
            beta2: d_b2(),
            eps: d_eps(),
            weight_decay: d_wd(),
            decay_mask: DecayMask::default(),
        }
    }
    /// Adam without weight decay (retro).
    pub fn adam() -> Self {
        Self::Adam {
            beta1: d_b1(),
            beta2: d_b2(),
            eps: d_eps(),
            weight_decay: 0.0,
            decay_mask: DecayMask::default(),
        }
    }
    /// SGD with momentum 0.9.
    pub fn sgd() -> Self {
        Self::Sgd {
            momentum: d_mom(),
            nesterov: false,
            weight_decay: 0.0,
            decay_mask: DecayMask::default(),
        }
    }
    pub fn rms_prop() -> Self {
        Self::RmsProp {
            alpha: d_alpha(),
            eps: d_eps(),
            momentum: 0.0,
            weight_decay: 0.0,
            decay_mask: DecayMask::default(),
        }
    }

    /// Checks ranges; errors name the key (`train.optimizer.*`) and the fix.
    pub fn validate(&self) -> std::result::Result<(), crate::ConfigError> {
        let in01 = |key: &str, v: f64| -> std::result::Result<(), crate::ConfigError> {
            if !(0.0..1.0).contains(&v) {
                return Err(crate::ConfigError::new(
                    format!("train.optimizer.{key}"),
                    format!("train.optimizer.{key} = {v} must be in [0, 1): e.g. 0.9"),
                ));
            }
            Ok(())
        };
        let nonneg = |key: &str, v: f64| -> std::result::Result<(), crate::ConfigError> {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(crate::ConfigError::new(
                    format!("train.optimizer.{key}"),
                    format!("train.optimizer.{key} = {v} must be a finite number ≥ 0"),
                ));
            }
            Ok(())
        };
        match self {
            Self::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            }
            | Self::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            } => {
                in01("beta1", *beta1)?;
                in01("beta2", *beta2)?;
                nonneg("eps", *eps)?;
                nonneg("weight_decay", *weight_decay)
            }
            Self::Sgd {
                momentum,
                weight_decay,
                ..
            } => {
                in01("momentum", *momentum)?;
                nonneg("weight_decay", *weight_decay)
            }
            Self::RmsProp {
                alpha,
                eps,
                momentum,
                weight_decay,
                ..
            } => {
                in01("alpha", *alpha)?;
                in01("momentum", *momentum)?;
                nonneg("eps", *eps)?;
                nonneg("weight_decay", *weight_decay)
            }
        }
    }

    /// An optimiser over every parameter of `params`.
    pub fn build(&self, params: &ParamStore) -> Result<Box<dyn Optimizer>> {
        let slots = |mask: &DecayMask| -> Vec<Slot> {
            params
                .iter()
                .map(|p| Slot {
                    name: p.name.clone(),
                    var: p.var.clone(),
                    decay: mask.decays(p.role),
                    s1: None,
                    s2: None,
                })
                .collect()
        };
        Ok(match self {
            Self::AdamW {
                beta1,
                beta2,
                eps,
                weight_decay,
                decay_mask,
            } => Box::new(AdamW {
                slots: slots(decay_mask),
                beta1: *beta1,
                beta2: *beta2,
                eps: *eps,
                weight_decay: *weight_decay,
                decoupled: true,
                t: 0,
            }),
            Self::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                decay_mask,
            } => Box::new(AdamW {
                slots: slots(decay_mask),
                beta1: *beta1,
                beta2: *beta2,
                eps: *eps,
                weight_decay: *weight_decay,
                decoupled: false,
                t: 0,
            }),
            Self::Sgd {
                momentum,
                nesterov,
                weight_decay,
                decay_mask,
            } => Box::new(Sgd {
                slots: slots(decay_mask),
                momentum: *momentum,
                nesterov: *nesterov,
                weight_decay: *weight_decay,
                t: 0,
            }),
            Self::RmsProp {
                alpha,
                eps,
                momentum,
                weight_decay,
                decay_mask,
            } => Box::new(RmsProp {
                slots: slots(decay_mask),
                alpha: *alpha,
                eps: *eps,
                momentum: *momentum,
                weight_decay: *weight_decay,
                t: 0,
            }),
        })
    }
}

/// One parameter and its optimiser state (`s1`, `s2`: first and second slots).
struct Slot {
    name: String,
    var: Var,
    decay: bool,
    s1: Option<Tensor>,
    s2: Option<Tensor>,
}

fn l2(slot: &Slot, g: &Tensor, wd: f64) -> Result<Tensor> {
    if wd != 0.0 && slot.decay {
        g + (slot.var.as_tensor().detach() * wd)?
    } else {
        Ok(g.clone())
    }
}

fn zeros_if_none(s: &Option<Tensor>, like: &Tensor) -> Result<Tensor> {
    match s {
        Some(t) => Ok(t.clone()),
        None => like.zeros_like(),
    }
}

/// The loop SGD and RMSprop share: for each parameter with a gradient, g
/// (with L2 weight decay on decayed parameters) → `update(slot, g)` →
/// p ← p − lr·update.
fn descend(
    slots: &mut [Slot],
    grads: &GradStore,
    weight_decay: f64,
    lr: f64,
    mut update: impl FnMut(&mut Slot, Tensor) -> Result<Tensor>,
) -> Result<()> {
    for s in slots.iter_mut() {
        let Some(g) = grads.get(s.var.as_tensor()) else {
            continue;
        };
        let g = l2(s, &g.detach(), weight_decay)?;
        let step = update(s, g)?;
        let p = s.var.as_tensor().detach();
        s.var.set(&(p - (step * lr)?)?)?;
    }
    Ok(())
}

/// Heavy-ball momentum (PyTorch's form): b ← μ·b + x, kept in `buf`; returns b.
fn momentum_buffer(buf: &mut Option<Tensor>, x: Tensor, mu: f64) -> Result<Tensor> {
    let b = ((zeros_if_none(buf, &x)? * mu)? + &x)?;
    *buf = Some(b.detach());
    Ok(b)
}

fn state_out(slots: &[Slot], t: usize, names: [&str; 2]) -> Result<HashMap<String, Tensor>> {
    let mut m = HashMap::new();
    let dev = slots
        .first()
        .map(|s| s.var.device().clone())
        .unwrap_or(candle_core::Device::Cpu);
    m.insert("step".to_string(), Tensor::new(t as f64, &dev)?);
    for s in slots {
        if let Some(a) = &s.s1 {
            // copies: the fused AdamW updates its moments in place
            m.insert(format!("{}.{}", s.name, names[0]), a.copy()?);
        }
        if let Some(b) = &s.s2 {
            m.insert(format!("{}.{}", s.name, names[1]), b.copy()?);
        }
    }
    Ok(m)
}

fn state_in(
    slots: &mut [Slot],
    t: &mut usize,
    names: [&str; 2],
    st: &HashMap<String, Tensor>,
) -> Result<()> {
    let step = st
        .get("step")
        .ok_or_else(|| candle_core::Error::Msg("optimizer state has no `step` entry".into()))?;
    *t = step.to_dtype(DType::F64)?.to_scalar::<f64>()? as usize;
    for s in slots.iter_mut() {
        let dt = s.var.dtype();
        let get = |n: &str| -> Result<Option<Tensor>> {
            match st.get(&format!("{}.{n}", s.name)) {
                // a private contiguous copy: the fused AdamW writes into it
                Some(x) if x.dims() == s.var.dims() => {
                    Ok(Some(x.to_dtype(dt)?.contiguous()?.copy()?))
                }
                Some(x) => Err(candle_core::Error::Msg(format!(
                    "optimizer state `{}.{n}` has shape {:?}, the parameter has {:?}",
                    s.name,
                    x.dims(),
                    s.var.dims()
                ))),
                None => Ok(None),
            }
        };
        s.s1 = get(names[0])?;
        s.s2 = get(names[1])?;
    }
    Ok(())
}

/// Adam and AdamW (`decoupled` = true: decoupled weight decay).
pub struct AdamW {
    slots: Vec<Slot>,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    decoupled: bool,
    t: usize,
}

impl Optimizer for AdamW {
    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.t += 1;
        let bc1 = 1.0 - self.beta1.powi(self.t as i32);
        let bc2 = 1.0 - self.beta2.powi(self.t as i32);
        for s in self.slots.iter_mut() {
            let Some(g) = grads.get(s.var.as_tensor()) else {
                continue;
            };
            // f32 on the CPU with decoupled (or no) decay: one in-place kernel
            if (self.decoupled || self.weight_decay == 0.0)
                && crate::fused::fusable(s.var.as_tensor())
                && s.var.as_tensor().is_contiguous()
            {
                for slot in [&mut s.s1, &mut s.s2] {
                    if slot.is_none() {
                        *slot = Some(s.var.as_tensor().zeros_like()?);
                    }
                }
                let wd = if s.decay { self.weight_decay } else { 0.0 };
                let step = crate::fused::adamw::AdamStep::new(
                    self.t, lr, wd, self.beta1, self.beta2, self.eps,
                );
                let (m, v) = (s.s1.as_ref().unwrap(), s.s2.as_ref().unwrap());
                crate::fused::adamw::adamw_step(
                    s.var.as_tensor(),
                    m,
                    v,
                    g,
                    self.beta1,
                    self.beta2,
                    step,
                )?;
                continue;
            }
            let g = g.detach();
            let mut p = s.var.as_tensor().detach();
            let g = if self.decoupled {
                if self.weight_decay != 0.0 && s.decay {
                    p = (&p * (1.0 - lr * self.weight_decay))?;
                }
                g
            } else {
                l2(s, &g, self.weight_decay)?
            };
            let m = ((zeros_if_none(&s.s1, &g)? * self.beta1)? + (&g * (1.0 - self.beta1))?)?;
            let v = ((zeros_if_none(&s.s2, &g)? * self.beta2)? + (g.sqr()? * (1.0 - self.beta2))?)?;
            let denom = ((&v * (1.0 / bc2))?.sqrt()? + self.eps)?;
            let upd = ((&m * (lr / bc1))? / denom)?;
            s.var.set(&(p - upd)?)?;
            s.s1 = Some(m.detach());
            s.s2 = Some(v.detach());
        }
        Ok(())
    }
    fn steps(&self) -> usize {
        self.t
    }
    fn state_dict(&self) -> Result<HashMap<String, Tensor>> {
        state_out(&self.slots, self.t, ["exp_avg", "exp_avg_sq"])
    }
    fn load_state_dict(&mut self, st: &HashMap<String, Tensor>) -> Result<()> {
        state_in(&mut self.slots, &mut self.t, ["exp_avg", "exp_avg_sq"], st)
    }
}

/// Stochastic gradient descent with (Nesterov) momentum.
pub struct Sgd {
    slots: Vec<Slot>,
    momentum: f64,
    nesterov: bool,
    weight_decay: f64,
    t: usize,
}

impl Optimizer for Sgd {
    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.t += 1;
        let (mu, nesterov) = (self.momentum, self.nesterov);
        descend(&mut self.slots, grads, self.weight_decay, lr, |s, g| {
            if mu == 0.0 {
                return Ok(g);
            }
            let b = momentum_buffer(&mut s.s1, g.clone(), mu)?;
            if nesterov {
                &g + (&b * mu)?
            } else {
                Ok(b)
            }
        })
    }
    fn steps(&self) -> usize {
        self.t
    }
    fn state_dict(&self) -> Result<HashMap<String, Tensor>> {
        state_out(&self.slots, self.t, ["momentum_buffer", "unused"])
    }
    fn load_state_dict(&mut self, st: &HashMap<String, Tensor>) -> Result<()> {
        state_in(
            &mut self.slots,
            &mut self.t,
            ["momentum_buffer", "unused"],
            st,
        )
    }
}

/// RMSprop (PyTorch form, not centred).
pub struct RmsProp {
    slots: Vec<Slot>,
    alpha: f64,
    eps: f64,
    momentum: f64,
    weight_decay: f64,
    t: usize,
}

impl Optimizer for RmsProp {
    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.t += 1;
        let (alpha, eps, mu) = (self.alpha, self.eps, self.momentum);
        descend(&mut self.slots, grads, self.weight_decay, lr, |s, g| {
            let v = ((zeros_if_none(&s.s2, &g)? * alpha)? + (g.sqr()? * (1.0 - alpha))?)?;
            let u = (&g / (v.sqrt()? + eps)?)?;
            s.s2 = Some(v.detach());
            if mu == 0.0 {
                Ok(u)
            } else {
                momentum_buffer(&mut s.s1, u, mu)
            }
        })
    }
    fn steps(&self) -> usize {
        self.t
    }
    fn state_dict(&self) -> Result<HashMap<String, Tensor>> {
        state_out(&self.slots, self.t, ["momentum_buffer", "square_avg"])
    }
    fn load_state_dict(&mut self, st: &HashMap<String, Tensor>) -> Result<()> {
        state_in(
            &mut self.slots,
            &mut self.t,
            ["momentum_buffer", "square_avg"],
            st,
        )
    }
}
