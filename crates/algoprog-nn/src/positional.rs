//! Positional encodings, as three hooks with identity defaults:
//! [`PositionalEncoding::embed`] (additive: sinusoidal, learned),
//! [`PositionalEncoding::rotate`] (rotary) and
//! [`PositionalEncoding::score_bias`] (ALiBi).
//!
//! FLOPs (forward, element-wise; none has matmuls), for a batch of b
//! sequences of length T with h heads of size d_h, d = h·d_h:
//! - NoPE: 0.
//! - Sinusoidal, Learned: one add per element of the embeddings: b·T·d.
//! - Rotary: per rotated vector of size d_h, 3·d_h (x₁cos, x₂sin, subtract,
//!   x₁sin, x₂cos, add on d_h/2 pairs); q and k in every head: b·T·6·d.
//! - ALiBi: one add per attention score: b·h·T².
//!
//! The fused attention kernel ([`crate::fused::attention`]) applies no
//! hook itself: queries and keys are rotated before it, and a score bias
//! runs inside it only when [`PositionalEncoding::fused_score_bias`] says
//! which one (none, or ALiBi slopes).

use crate::params::{ParamBuilder, ParamRole};
use crate::Flops;
use candle_core::{Result, Tensor, D};
use serde::{Deserialize, Serialize};

/// Shape information a positional encoding is built from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PosDims {
    pub d_model: usize,
    pub n_heads: usize,
    pub head_dim: usize,
    /// Longest sequence the tables and caches cover.
    pub max_seq_len: usize,
}

/// How the fused attention kernel can reproduce an encoding's
/// [`PositionalEncoding::score_bias`].
#[derive(Clone, Debug, PartialEq)]
pub enum FusedScoreBias {
    /// `score_bias` is the identity.
    None,
    /// `score_bias` adds −m_h·(i − j) with these per-head slopes m_h.
    Alibi(Vec<f32>),
    /// The kernel cannot apply it: attention takes the composite path.
    Unsupported,
}

/// How an encoding's `rotate` hook can run inside the fused attention op
/// that reads the packed QKV projection ([`PositionalEncoding::fused_rotation`]).
#[derive(Clone, Debug)]
pub enum FusedRotation {
    /// `rotate` returns q and k unchanged.
    Identity,
    /// `rotate` is the rotary rotation with these tables.
    Rotary(crate::fused::rotary::RotaryTables),
    /// Some other rotation: the fused op calls `rotate` first and reads the
    /// rotated q and k (slower, still correct).
    Unsupported,
}

/// Where a positional encoding acts. All hooks default to the identity.
pub trait PositionalEncoding: Sized + Send + Sync + 'static {
    type Config: Clone + std::fmt::Debug + Default + PartialEq + Send + Sync;
    fn new(cfg: &Self::Config, dims: &PosDims, pb: &ParamBuilder) -> Result<Self>;
    /// Token embeddings (b, T, d) → input of the first block.
    fn embed(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.clone())
    }
    /// Queries and keys (b, h, T, d_h) before the scores are formed.
    fn rotate(&self, q: &Tensor, k: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((q.clone(), k.clone()))
    }
    /// Scaled attention scores (b, h, T, T) before the causal mask.
    fn score_bias(&self, scores: &Tensor) -> Result<Tensor> {
        Ok(scores.clone())
    }
    /// Whether the fused attention kernel can apply [`Self::score_bias`],
    /// and how. The default, [`FusedScoreBias::Unsupported`], is the safe
    /// answer: an encoding that overrides `score_bias` but not this hook
    /// keeps the composite attention path (correct, slower). An encoding
    /// whose `score_bias` is the identity returns [`FusedScoreBias::None`]
    /// to use the fused kernel.
    fn fused_score_bias(&self) -> FusedScoreBias {
        FusedScoreBias::Unsupported
    }
    /// Whether the fused attention op may apply `rotate` itself. The default,
    /// [`FusedRotation::Unsupported`], is right for any encoding: one that
    /// overrides `rotate` must not claim `Identity`.
    fn fused_rotation(&self) -> FusedRotation {
        FusedRotation::Unsupported
    }
    /// Trainable scalars (a learned table counts as embedding parameters).
    fn num_params(_cfg: &Self::Config, _dims: &PosDims) -> usize {
        0
    }
    /// Forward FLOPs for `batch` sequences of length `seq_len`.
    fn flops(_cfg: &Self::Config, _dims: &PosDims, _batch: usize, _seq_len: usize) -> Flops {
        Flops::ZERO
    }
    /// Entries of the fixed tables it builds (not parameters), as f64 so
    /// that a model's size can be bounded before anything is allocated.
    fn table_elements(_cfg: &Self::Config, _dims: &PosDims) -> f64 {
        0.0
    }
}

fn check_len(t: usize, max: usize, what: &str) -> Result<()> {
    if t > max {
        return Err(candle_core::Error::Msg(format!(
            "{what}: sequence length {t} exceeds model.max_seq_len = {max}; raise model.max_seq_len"
        )));
    }
    Ok(())
}

/// No positional information (NoPE): causal masking alone orders tokens.
#[derive(Clone, Debug, Default)]
pub struct NoPe;
impl PositionalEncoding for NoPe {
    type Config = ();
    fn new(_: &(), _: &PosDims, _: &ParamBuilder) -> Result<Self> {
        Ok(NoPe)
    }
    fn fused_score_bias(&self) -> FusedScoreBias {
        FusedScoreBias::None
    }
    fn fused_rotation(&self) -> FusedRotation {
        FusedRotation::Identity
    }
}

/// Sinusoidal settings (`positional = { kind = "sinusoidal", base = 10000.0 }`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinusoidalConfig {
    /// Wavelength base: PE angles p / base^{2i/d} (10 000, Vaswani et al. 2017).
    pub base: f64,
}
impl Default for SinusoidalConfig {
    fn default() -> Self {
        Self { base: 10_000.0 }
    }
}
impl crate::choice::VariantConfig for SinusoidalConfig {
    const KEYS: &'static [&'static str] = &["base"];
    fn validate(&self, key: &str) -> std::result::Result<(), crate::ConfigError> {
        if !(self.base.is_finite() && self.base > 1.0) {
            return Err(crate::ConfigError::new(
                format!("{key}.base"),
                format!(
                    "{key}.base = {} must be a number above 1: 10000 is the usual base",
                    self.base
                ),
            ));
        }
        Ok(())
    }
}

/// Fixed sinusoidal table (Vaswani et al. 2017) added to the embeddings:
/// PE[p, 2i] = sin(p / base^{2i/d}), PE[p, 2i+1] = cos(p / base^{2i/d}),
/// base 10 000 by default ([`SinusoidalConfig`]).
///
/// As in the original Transformer ("we multiply those weights by √d_model"),
/// the token embeddings are scaled by √d before the table is added:
/// `embed(x) = √d·x + PE`. Without the scale, N(0, 0.02) embeddings are
/// swamped by a position signal of amplitude 1 and small models barely
/// learn past the unigram distribution. The tied output layer is unscaled.
#[derive(Clone, Debug)]
pub struct Sinusoidal {
    table: Tensor,
}

impl Sinusoidal {
    /// The (max_seq_len, d) table in f64 with the default base 10 000.
    pub fn table_values(max_seq_len: usize, d: usize) -> Vec<f64> {
        Self::table_values_with_base(max_seq_len, d, SinusoidalConfig::default().base)
    }

    /// The (max_seq_len, d) table in f64 for wavelength base `base`.
    pub fn table_values_with_base(max_seq_len: usize, d: usize, base: f64) -> Vec<f64> {
        let mut v = vec![0.0; max_seq_len * d];
        for p in 0..max_seq_len {
            for j in 0..d {
                let i2 = (j / 2 * 2) as f64;
                let angle = p as f64 / base.powf(i2 / d as f64);
                v[p * d + j] = if j % 2 == 0 { angle.sin() } else { angle.cos() };
            }
        }
        v
    }
}

impl PositionalEncoding for Sinusoidal {
    type Config = SinusoidalConfig;
    fn new(cfg: &SinusoidalConfig, dims: &PosDims, pb: &ParamBuilder) -> Result<Self> {
        let v = Self::table_values_with_base(dims.max_seq_len, dims.d_model, cfg.base);
        let table = Tensor::from_vec(v, (dims.max_seq_len, dims.d_model), &pb.device())?
            .to_dtype(pb.dtype())?;
        Ok(Self { table })
    }
    fn embed(&self, x: &Tensor) -> Result<Tensor> {
        let t = x.dim(1)?;
        check_len(t, self.table.dim(0)?, "sinusoidal positions")?;
        let scale = (x.dim(2)? as f64).sqrt();
        (x * scale)?.broadcast_add(&self.table.narrow(0, 0, t)?)
    }
    fn fused_score_bias(&self) -> FusedScoreBias {
        FusedScoreBias::None
    }
    fn fused_rotation(&self) -> FusedRotation {
        FusedRotation::Identity
    }
    /// One multiply (the √d scale) and one add per element.
    fn flops(_: &SinusoidalConfig, dims: &PosDims, batch: usize, seq_len: usize) -> Flops {
        Flops::new(0.0, (2 * batch * seq_len * dims.d_model) as f64)
    }
    fn table_elements(_: &SinusoidalConfig, dims: &PosDims) -> f64 {
        dims.max_seq_len as f64 * dims.d_model as f64
    }
}

/// Learned absolute position table `weight` (max_seq_len, d), role PositionalEmbedding.
#[derive(Clone, Debug)]
pub struct Learned {
    table: Tensor,
}

impl PositionalEncoding for Learned {
    type Config = ();
    fn new(_: &(), dims: &PosDims, pb: &ParamBuilder) -> Result<Self> {
        let table = pb.param(
            "weight",
            &[dims.max_seq_len, dims.d_model],
            ParamRole::PositionalEmbedding,
        )?;
        Ok(Self { table })
    }
    fn embed(&self, x: &Tensor) -> Result<Tensor> {
        let t = x.dim(1)?;
        check_len(t, self.table.dim(0)?, "learned positions")?;
        x.broadcast_add(&self.table.narrow(0, 0, t)?)
    }
    fn fused_score_bias(&self) -> FusedScoreBias {
        FusedScoreBias::None
    }
    fn fused_rotation(&self) -> FusedRotation {
        FusedRotation::Identity
    }
    fn num_params(_: &(), dims: &PosDims) -> usize {
        dims.max_seq_len * dims.d_model
    }
    fn flops(_: &(), dims: &PosDims, batch: usize, seq_len: usize) -> Flops {
        Flops::new(0.0, (batch * seq_len * dims.d_model) as f64)
    }
}

/// Rotary settings (`positional = { kind = "rotary", base = 10000.0 }`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RotaryConfig {
    /// θ base: frequencies base^{−2i/d_h} (10 000, Su et al. 2021; long-context
    /// models raise it, e.g. 500 000).
    pub base: f64,
}
impl Default for RotaryConfig {
    fn default() -> Self {
        Self { base: 10_000.0 }
    }
}
impl crate::choice::VariantConfig for RotaryConfig {
    const KEYS: &'static [&'static str] = &["base"];
    fn validate(&self, key: &str) -> std::result::Result<(), crate::ConfigError> {
        if !(self.base.is_finite() && self.base > 1.0) {
            return Err(crate::ConfigError::new(
                format!("{key}.base"),
                format!(
                    "{key}.base = {} must be a number above 1: 10000 is the usual base",
                    self.base
                ),
            ));
        }
        Ok(())
    }
}

/// Rotary position embedding (Su et al. 2021), "rotate-half" layout
/// (GPT-NeoX): with x = [x₁, x₂] split in halves of d_h/2,
/// rot(x) = [x₁cos θ − x₂sin θ, x₁sin θ + x₂cos θ], θ_{p,i} = p·base^{−2i/d_h}.
#[derive(Clone, Debug)]
pub struct Rotary {
    cos: Tensor,
    sin: Tensor,
    /// The tables for the fused op (f32 CPU models).
    fused: Option<crate::fused::rotary::RotaryTables>,
}

impl Rotary {
    /// Rotates x (b, h, T, d_h): the fused op for f32 CPU tensors, else
    /// [`Rotary::apply_composite`].
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        if let (Some(tables), true) = (&self.fused, crate::fused::fusable(x)) {
            let (_, _, t, _) = x.dims4()?;
            check_len(t, self.cos.dim(0)?, "rotary positions")?;
            return crate::fused::rotary::rotate(x, tables);
        }
        self.apply_composite(x)
    }

    /// The rotation from composite candle ops (the reference and the GPU path).
    pub fn apply_composite(&self, x: &Tensor) -> Result<Tensor> {
        let (_, _, t, hd) = x.dims4()?;
        check_len(t, self.cos.dim(0)?, "rotary positions")?;
        let half = hd / 2;
        let cos = self.cos.narrow(0, 0, t)?;
        let sin = self.sin.narrow(0, 0, t)?;
        let x1 = x.narrow(D::Minus1, 0, half)?;
        let x2 = x.narrow(D::Minus1, half, half)?;
        let a = (x1.broadcast_mul(&cos)? - x2.broadcast_mul(&sin)?)?;
        let b = (x1.broadcast_mul(&sin)? + x2.broadcast_mul(&cos)?)?;
        Tensor::cat(&[a, b], D::Minus1)
    }
}

impl PositionalEncoding for Rotary {
    type Config = RotaryConfig;
    fn new(cfg: &RotaryConfig, dims: &PosDims, pb: &ParamBuilder) -> Result<Self> {
        let (t, half) = (dims.max_seq_len, dims.head_dim / 2);
        if !dims.head_dim.is_multiple_of(2) {
            return Err(candle_core::Error::Msg(format!(
                "rotary positions need an even model.head_dim, got {}; choose an even head_dim",
                dims.head_dim
            )));
        }
        let mut c = vec![0.0; t * half];
        let mut s = vec![0.0; t * half];
        for p in 0..t {
            for i in 0..half {
                let th = p as f64 * cfg.base.powf(-2.0 * i as f64 / dims.head_dim as f64);
                c[p * half + i] = th.cos();
                s[p * half + i] = th.sin();
            }
        }
        let dev = pb.device();
        let cos = Tensor::from_vec(c, (t, half), &dev)?.to_dtype(pb.dtype())?;
        let sin = Tensor::from_vec(s, (t, half), &dev)?.to_dtype(pb.dtype())?;
        let fused = if crate::fused::fusable(&cos) {
            Some(crate::fused::rotary::RotaryTables::new(&cos, &sin)?)
        } else {
            None
        };
        Ok(Self { cos, sin, fused })
    }
    fn rotate(&self, q: &Tensor, k: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok((self.apply(q)?, self.apply(k)?))
    }
    fn fused_score_bias(&self) -> FusedScoreBias {
        FusedScoreBias::None
    }
    fn fused_rotation(&self) -> FusedRotation {
        match &self.fused {
            Some(t) => FusedRotation::Rotary(t.clone()),
            None => FusedRotation::Unsupported,
        }
    }
    fn flops(_: &RotaryConfig, dims: &PosDims, batch: usize, seq_len: usize) -> Flops {
        Flops::new(0.0, (batch * seq_len * 6 * dims.d_model) as f64)
    }
    /// cos and sin, (max_seq_len, head_dim/2) each.
    fn table_elements(_: &RotaryConfig, dims: &PosDims) -> f64 {
        dims.max_seq_len as f64 * dims.head_dim as f64
    }
}

/// ALiBi (Press et al. 2022): score(i, j) += −m_h·(i − j), slopes
/// m_h = 2^{−8h/H} for h = 1..H when H is a power of two; otherwise the
/// reference construction (slopes of the nearest lower power of two, then
/// every other slope of the next power of two).
#[derive(Clone, Debug)]
pub struct Alibi {
    /// (h, T_max, T_max)
    bias: Tensor,
    /// m_h, for the fused kernel
    slopes: Vec<f32>,
}

impl Alibi {
    pub fn slopes(n: usize) -> Vec<f64> {
        fn pow2(n: usize) -> Vec<f64> {
            let start = 2f64.powf(-8.0 / n as f64);
            (1..=n).map(|i| start.powi(i as i32)).collect()
        }
        if n.is_power_of_two() {
            pow2(n)
        } else {
            let cp = 1usize << (usize::BITS - 1 - n.leading_zeros());
            let mut s = pow2(cp);
            s.extend(pow2(2 * cp).into_iter().step_by(2).take(n - cp));
            s
        }
    }
}

impl PositionalEncoding for Alibi {
    type Config = ();
    fn new(_: &(), dims: &PosDims, pb: &ParamBuilder) -> Result<Self> {
        let (h, t) = (dims.n_heads, dims.max_seq_len);
        let slopes = Self::slopes(h);
        let mut v = vec![0.0; h * t * t];
        for (hh, m) in slopes.iter().enumerate() {
            for i in 0..t {
                for j in 0..=i {
                    v[(hh * t + i) * t + j] = -m * (i - j) as f64;
                }
            }
        }
        let bias = Tensor::from_vec(v, (h, t, t), &pb.device())?.to_dtype(pb.dtype())?;
        Ok(Self {
            bias,
            slopes: slopes.iter().map(|&m| m as f32).collect(),
        })
    }
    /// Checks the length here too: the fused attention kernel computes the
    /// bias from the slopes and never calls `score_bias`.
    fn embed(&self, x: &Tensor) -> Result<Tensor> {
        check_len(x.dim(1)?, self.bias.dim(1)?, "alibi positions")?;
        Ok(x.clone())
    }
    fn score_bias(&self, scores: &Tensor) -> Result<Tensor> {
        let t = scores.dim(2)?;
        check_len(t, self.bias.dim(1)?, "alibi positions")?;
        scores.broadcast_add(&self.bias.narrow(1, 0, t)?.narrow(2, 0, t)?)
    }
    fn fused_score_bias(&self) -> FusedScoreBias {
        FusedScoreBias::Alibi(self.slopes.clone())
    }
    fn fused_rotation(&self) -> FusedRotation {
        FusedRotation::Identity
    }
    fn flops(_: &(), dims: &PosDims, batch: usize, seq_len: usize) -> Flops {
        Flops::new(0.0, (batch * dims.n_heads * seq_len * seq_len) as f64)
    }
    /// The (h, T, T) bias.
    fn table_elements(_: &(), dims: &PosDims) -> f64 {
        dims.n_heads as f64 * dims.max_seq_len as f64 * dims.max_seq_len as f64
    }
}

/// Declares the positional choices once: the config enum
/// ([`PositionalConfig`], via [`crate::choice_enum!`]) and the run-time
/// encoding ([`DynPositional`]) that builds and delegates through the
/// variant's config. An in-tree encoding is one line here plus its type.
macro_rules! positional_choices {
    ($( $(#[$vmeta:meta])* $Var:ident($Cfg:ty) => $Enc:ty = $name:literal $(| $alias:literal)* ),+ $(,)?) => {
        crate::choice_enum! {
            /// Positional choices selectable from a config: `positional =
            /// "rotary"` or a table with the variant's keys, `positional =
            /// { kind = "rotary", base = 500000.0 }` (see [`crate::choice`]).
            /// `"none"` is NoPE and is also accepted as `"nope"`.
            pub enum PositionalConfig for "model.positional" {
                $( $(#[$vmeta])* $Var($Cfg) = $name $(| $alias)* ),+
            }
        }

        /// A positional encoding chosen at run time; delegates to the concrete types.
        #[derive(Clone, Debug)]
        pub enum DynPositional {
            $( $Var($Enc) ),+
        }

        impl PositionalEncoding for DynPositional {
            type Config = PositionalConfig;
            fn new(cfg: &PositionalConfig, dims: &PosDims, pb: &ParamBuilder) -> Result<Self> {
                Ok(match cfg {
                    $( PositionalConfig::$Var(c) => Self::$Var(<$Enc>::new(c, dims, pb)?) ),+
                })
            }
            fn embed(&self, x: &Tensor) -> Result<Tensor> {
                match self {
                    $( Self::$Var(p) => p.embed(x) ),+
                }
            }
            fn rotate(&self, q: &Tensor, k: &Tensor) -> Result<(Tensor, Tensor)> {
                match self {
                    $( Self::$Var(p) => p.rotate(q, k) ),+
                }
            }
            fn score_bias(&self, s: &Tensor) -> Result<Tensor> {
                match self {
                    $( Self::$Var(p) => p.score_bias(s) ),+
                }
            }
            fn fused_score_bias(&self) -> FusedScoreBias {
                match self {
                    $( Self::$Var(p) => p.fused_score_bias() ),+
                }
            }
            fn fused_rotation(&self) -> FusedRotation {
                match self {
                    $( Self::$Var(p) => p.fused_rotation() ),+
                }
            }
            fn num_params(cfg: &PositionalConfig, dims: &PosDims) -> usize {
                match cfg {
                    $( PositionalConfig::$Var(c) => <$Enc>::num_params(c, dims) ),+
                }
            }
            fn flops(cfg: &PositionalConfig, dims: &PosDims, batch: usize, seq_len: usize) -> Flops {
                match cfg {
                    $( PositionalConfig::$Var(c) => <$Enc>::flops(c, dims, batch, seq_len) ),+
                }
            }
            fn table_elements(cfg: &PositionalConfig, dims: &PosDims) -> f64 {
                match cfg {
                    $( PositionalConfig::$Var(c) => <$Enc>::table_elements(c, dims) ),+
                }
            }
        }
    };
}

positional_choices! {
    Rotary(RotaryConfig) => Rotary = "rotary",
    Sinusoidal(SinusoidalConfig) => Sinusoidal = "sinusoidal",
    Learned(()) => Learned = "learned",
    None(()) => NoPe = "none" | "nope",
    Alibi(()) => Alibi = "alibi",
}

impl Default for PositionalConfig {
    /// Rotary with base 10 000 (the modern Transformer's).
    fn default() -> Self {
        Self::Rotary(RotaryConfig::default())
    }
}
