//! Position-wise feed-forward blocks: plain MLPs and gated (GLU) variants.
//!
//! ## Hidden sizes
//! - Plain MLP ([`Mlp`]): hidden h = round(ff_ratio · d) (4d by default);
//!   two matrices, 2·d·h weights.
//! - Gated ([`GatedFeedForward`], SwiGLU/GeGLU): three matrices (gate, up,
//!   down), 3·d·h weights. The hidden size follows [`GatedHidden`]:
//!   - `paper` (default): h = round(ff_ratio · d), as in the paper, whose
//!     SwiGLU "adds a small number of additional parameters" (1.5× the MLP's
//!     feed-forward weights);
//!   - `param_matched`: h = 2/3 · ff_ratio · d rounded to the nearest
//!     multiple of 8 (at least 8), so 3·d·h ≈ 2·d·(ff_ratio·d)
//!     (d = 64: h = 168, 32 256 weights against the MLP's 32 768).
//!
//! ## FLOPs per token (forward)
//! - Mlp: matmul 4·d·h; elementwise c·h (+ h + d bias adds when `bias`),
//!   c the activation's FLOPs per element.
//! - Gated: matmul 6·d·h; elementwise (c + 1)·h (activation and gate
//!   product) (+ 2h + d bias adds when `bias`).

use crate::activation::{Activation, Gelu, GeluTanh, Relu, Silu};
use crate::fused::ffn;
use crate::loss::linear;
use crate::params::{ParamBuilder, ParamRole};
use crate::Flops;
use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

/// Shape information a feed-forward block is built from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FfDims {
    pub d_model: usize,
    /// Hidden size of the plain MLP relative to d_model (4 by default).
    pub ff_ratio: f64,
    /// Whether linear layers carry biases.
    pub bias: bool,
}

/// A feed-forward block: (…, d) → (…, d), applied per position.
pub trait FeedForward: Sized + Send + Sync + 'static {
    /// Component-specific settings (`()` when there are none).
    type Config: Clone + std::fmt::Debug + Default + PartialEq + Send + Sync;
    /// Creates the parameters under `pb` (names `in`, `gate`, `up`, `out`, ...).
    fn new(cfg: &Self::Config, dims: &FfDims, pb: &ParamBuilder) -> Result<Self>;
    fn forward(&self, x: &Tensor) -> Result<Tensor>;
    /// Hidden width.
    fn hidden_size(cfg: &Self::Config, dims: &FfDims) -> usize;
    /// Number of scalar parameters (weights and biases).
    fn num_params(cfg: &Self::Config, dims: &FfDims) -> usize;
    /// Forward FLOPs for `tokens` positions.
    fn flops(cfg: &Self::Config, dims: &FfDims, tokens: usize) -> Flops;
}

fn plain_hidden(dims: &FfDims) -> usize {
    ((dims.ff_ratio * dims.d_model as f64).round() as usize).max(1)
}

/// How the hidden size of a gated feed-forward is chosen (`gated_hidden = "..."`, snake_case).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatedHidden {
    /// h = round(ff_ratio · d): the paper's choice (more parameters than the MLP).
    #[default]
    Paper,
    /// h = 2/3 · ff_ratio · d rounded to the nearest multiple of 8 (at least 8).
    ParamMatched,
}

impl GatedHidden {
    /// The hidden size for `dims` under this rule.
    pub fn hidden(&self, dims: &FfDims) -> usize {
        match self {
            GatedHidden::Paper => plain_hidden(dims),
            GatedHidden::ParamMatched => {
                let h = 2.0 / 3.0 * dims.ff_ratio * dims.d_model as f64;
                (((h / 8.0).round() as usize) * 8).max(8)
            }
        }
    }
}

/// Linear → activation → linear.
#[derive(Clone, Debug)]
pub struct Mlp<A: Activation> {
    w_in: Tensor,
    b_in: Option<Tensor>,
    w_out: Tensor,
    b_out: Option<Tensor>,
    act: A,
}

fn bias(pb: &ParamBuilder, on: bool, n: usize) -> Result<Option<Tensor>> {
    if on {
        Ok(Some(pb.param("bias", &[n], ParamRole::Bias)?))
    } else {
        Ok(None)
    }
}

impl<A: Activation> FeedForward for Mlp<A> {
    type Config = ();
    fn new(_: &(), dims: &FfDims, pb: &ParamBuilder) -> Result<Self> {
        let (d, h) = (dims.d_model, plain_hidden(dims));
        let pin = pb.pp("in");
        let pout = pb.pp("out");
        Ok(Self {
            w_in: pin.param("weight", &[h, d], ParamRole::MlpIn)?,
            b_in: bias(&pin, dims.bias, h)?,
            w_out: pout.param("weight", &[d, h], ParamRole::MlpOut)?,
            b_out: bias(&pout, dims.bias, d)?,
            act: A::default(),
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let b_in = self.b_in.as_ref().map(|b| [b]);
        let w = ffn::FfnWeights {
            w_in: &[&self.w_in],
            b_in: b_in.as_ref().map(|b| &b[..]),
            w_out: &self.w_out,
            b_out: self.b_out.as_ref(),
        };
        if let Some(y) = ffn::try_feed_forward(x, self.act.ffn_kernel(false), &w) {
            return y;
        }
        let h = self
            .act
            .forward(&linear(x, &self.w_in, self.b_in.as_ref())?)?;
        linear(&h, &self.w_out, self.b_out.as_ref())
    }
    fn hidden_size(_: &(), dims: &FfDims) -> usize {
        plain_hidden(dims)
    }
    fn num_params(_: &(), dims: &FfDims) -> usize {
        let (d, h) = (dims.d_model, plain_hidden(dims));
        2 * d * h + if dims.bias { h + d } else { 0 }
    }
    fn flops(_: &(), dims: &FfDims, tokens: usize) -> Flops {
        let (d, h, n) = (
            dims.d_model as f64,
            plain_hidden(dims) as f64,
            tokens as f64,
        );
        let bias = if dims.bias { h + d } else { 0.0 };
        Flops::new(
            n * 4.0 * d * h,
            n * (A::default().flops_per_element() * h + bias),
        )
    }
}

/// Gated linear unit: down(act(gate·x) ⊙ (up·x)) (Shazeer 2020).
#[derive(Clone, Debug)]
pub struct GatedFeedForward<A: Activation> {
    w_gate: Tensor,
    b_gate: Option<Tensor>,
    w_up: Tensor,
    b_up: Option<Tensor>,
    w_out: Tensor,
    b_out: Option<Tensor>,
    act: A,
}

/// SwiGLU: SiLU-gated GLU.
pub type SwiGlu = GatedFeedForward<Silu>;
/// GeGLU: GeLU-gated GLU.
pub type GeGlu = GatedFeedForward<Gelu>;

impl<A: Activation> FeedForward for GatedFeedForward<A> {
    type Config = GatedHidden;
    fn new(cfg: &GatedHidden, dims: &FfDims, pb: &ParamBuilder) -> Result<Self> {
        let (d, h) = (dims.d_model, cfg.hidden(dims));
        let (pg, pu, po) = (pb.pp("gate"), pb.pp("up"), pb.pp("out"));
        Ok(Self {
            w_gate: pg.param("weight", &[h, d], ParamRole::MlpIn)?,
            b_gate: bias(&pg, dims.bias, h)?,
            w_up: pu.param("weight", &[h, d], ParamRole::MlpIn)?,
            b_up: bias(&pu, dims.bias, h)?,
            w_out: po.param("weight", &[d, h], ParamRole::MlpOut)?,
            b_out: bias(&po, dims.bias, d)?,
            act: A::default(),
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let b_in = match (&self.b_gate, &self.b_up) {
            (Some(g), Some(u)) => Some([g, u]),
            _ => None,
        };
        let w = ffn::FfnWeights {
            w_in: &[&self.w_gate, &self.w_up],
            b_in: b_in.as_ref().map(|b| &b[..]),
            w_out: &self.w_out,
            b_out: self.b_out.as_ref(),
        };
        if let Some(y) = ffn::try_feed_forward(x, self.act.ffn_kernel(true), &w) {
            return y;
        }
        let g = linear(x, &self.w_gate, self.b_gate.as_ref())?;
        let u = linear(x, &self.w_up, self.b_up.as_ref())?;
        // act(g)·u as one op where the activation has a fused gated kernel
        linear(&self.act.gated(&g, &u)?, &self.w_out, self.b_out.as_ref())
    }
    fn hidden_size(cfg: &GatedHidden, dims: &FfDims) -> usize {
        cfg.hidden(dims)
    }
    fn num_params(cfg: &GatedHidden, dims: &FfDims) -> usize {
        let (d, h) = (dims.d_model, cfg.hidden(dims));
        3 * d * h + if dims.bias { 2 * h + d } else { 0 }
    }
    fn flops(cfg: &GatedHidden, dims: &FfDims, tokens: usize) -> Flops {
        let (d, h, n) = (dims.d_model as f64, cfg.hidden(dims) as f64, tokens as f64);
        let bias = if dims.bias { 2.0 * h + d } else { 0.0 };
        Flops::new(
            n * 6.0 * d * h,
            n * ((A::default().flops_per_element() + 1.0) * h + bias),
        )
    }
}

/// A feed-forward's own config as the run-time choice determines it: the
/// plain MLPs have none (`()`), the gated ones take the hidden-size rule
/// (`gated_hidden`).
pub trait FromFeedForwardSpec {
    fn from_spec(spec: &FeedForwardSpec) -> Self;
}
impl FromFeedForwardSpec for () {
    fn from_spec(_: &FeedForwardSpec) -> Self {}
}
impl FromFeedForwardSpec for GatedHidden {
    fn from_spec(spec: &FeedForwardSpec) -> Self {
        spec.gated_hidden
    }
}

/// Declares the feed-forward choices once: the names ([`FeedForwardKind`])
/// and the run-time block ([`DynFeedForward`]) that builds and delegates
/// through the variant's config ([`FromFeedForwardSpec`]). An in-tree block
/// is one line here plus its type.
macro_rules! feed_forward_choices {
    ($( $(#[$vmeta:meta])* $Var:ident => $Block:ty = $name:literal ),+ $(,)?) => {
        /// Feed-forward choices selectable from a config (`feed_forward = "..."`, snake_case).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
        pub enum FeedForwardKind {
            $( $(#[$vmeta])* #[serde(rename = $name)] $Var ),+
        }

        impl FeedForwardKind {
            /// This variant's name, as written in configs.
            pub fn name(&self) -> &'static str {
                match self {
                    $( Self::$Var => $name ),+
                }
            }
        }

        /// A feed-forward chosen at run time; delegates to the concrete types.
        #[derive(Clone, Debug)]
        pub enum DynFeedForward {
            $( $Var($Block) ),+
        }

        impl FeedForward for DynFeedForward {
            type Config = FeedForwardSpec;
            fn new(cfg: &FeedForwardSpec, dims: &FfDims, pb: &ParamBuilder) -> Result<Self> {
                Ok(match cfg.kind {
                    $( FeedForwardKind::$Var => Self::$Var(<$Block>::new(
                        &FromFeedForwardSpec::from_spec(cfg), dims, pb,
                    )?) ),+
                })
            }
            fn forward(&self, x: &Tensor) -> Result<Tensor> {
                match self {
                    $( Self::$Var(m) => m.forward(x) ),+
                }
            }
            fn hidden_size(cfg: &FeedForwardSpec, dims: &FfDims) -> usize {
                match cfg.kind {
                    $( FeedForwardKind::$Var => <$Block>::hidden_size(&FromFeedForwardSpec::from_spec(cfg), dims) ),+
                }
            }
            fn num_params(cfg: &FeedForwardSpec, dims: &FfDims) -> usize {
                match cfg.kind {
                    $( FeedForwardKind::$Var => <$Block>::num_params(&FromFeedForwardSpec::from_spec(cfg), dims) ),+
                }
            }
            fn flops(cfg: &FeedForwardSpec, dims: &FfDims, tokens: usize) -> Flops {
                match cfg.kind {
                    $( FeedForwardKind::$Var => <$Block>::flops(&FromFeedForwardSpec::from_spec(cfg), dims, tokens) ),+
                }
            }
        }
    };
}

feed_forward_choices! {
    Relu => Mlp<Relu> = "relu",
    /// Exact (erf) GeLU.
    Gelu => Mlp<Gelu> = "gelu",
    /// tanh-approximated GeLU.
    GeluTanh => Mlp<GeluTanh> = "gelu_tanh",
    SwiGlu => SwiGlu = "swiglu",
    GeGlu => GeGlu = "geglu",
}

/// Run-time feed-forward choice: the kind and the gated hidden-size rule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FeedForwardSpec {
    pub kind: FeedForwardKind,
    /// Only used by gated kinds.
    pub gated_hidden: GatedHidden,
}

impl Default for FeedForwardSpec {
    /// SwiGLU with the paper's hidden size (the modern Transformer's).
    fn default() -> Self {
        Self {
            kind: FeedForwardKind::SwiGlu,
            gated_hidden: GatedHidden::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamStore;
    use crate::testutil::{max_err, randn};
    use candle_core::{DType, Device, Var};

    /// The block written with candle's composite ops from the parameters in `store`.
    fn composite(kind: FeedForwardKind, store: &ParamStore, x: &Tensor) -> Result<Tensor> {
        let p = |n: &str| store.get(n).unwrap().var.as_tensor().clone();
        let lin = |x: &Tensor, name: &str| {
            linear(
                x,
                &p(&format!("{name}.weight")),
                Some(&p(&format!("{name}.bias"))),
            )
        };
        let h = match kind {
            FeedForwardKind::Relu => lin(x, "in")?.relu()?,
            FeedForwardKind::Gelu => lin(x, "in")?.gelu_erf()?,
            FeedForwardKind::GeluTanh => lin(x, "in")?.gelu()?,
            FeedForwardKind::SwiGlu => (lin(x, "gate")?.silu()? * lin(x, "up")?)?,
            FeedForwardKind::GeGlu => (lin(x, "gate")?.gelu_erf()? * lin(x, "up")?)?,
        };
        lin(&h, "out")
    }

    /// Every feed-forward kind (f32, CPU, so the fused activations run)
    /// gives the values and gradients (input and every parameter) of the
    /// composite block with the same parameters.
    #[test]
    fn fused_blocks_match_composite_blocks() -> Result<()> {
        let dims = FfDims {
            d_model: 12,
            ff_ratio: 2.0,
            bias: true,
        };
        let x = Var::from_tensor(&randn(&[2, 5, 12], 1.5, 1)?)?;
        let w = randn(&[2, 5, 12], 1.0, 2)?;
        use FeedForwardKind::*;
        for kind in [Relu, Gelu, GeluTanh, SwiGlu, GeGlu] {
            let pb = ParamBuilder::new(3, &Device::Cpu, DType::F32);
            let spec = FeedForwardSpec {
                kind,
                gated_hidden: GatedHidden::Paper,
            };
            let block = DynFeedForward::new(&spec, &dims, &pb)?;
            let store = pb.finish();
            // O(1) weights and non-zero biases, so every gradient is sizeable
            for (i, prm) in store.iter().enumerate() {
                prm.var.set(&randn(prm.var.dims(), 0.4, 10 + i as u64)?)?;
            }
            let yf = block.forward(&x)?;
            let yc = composite(kind, &store, &x)?;
            assert!(max_err(&yf, &yc)? < 1e-5, "{kind:?}: values");
            let gf = (&yf * &w)?.sum_all()?.backward()?;
            let gc = (&yc * &w)?.sum_all()?.backward()?;
            let mut tracked = vec![("x".to_string(), x.as_tensor().clone())];
            tracked.extend(
                store
                    .iter()
                    .map(|p| (p.name.clone(), p.var.as_tensor().clone())),
            );
            for (name, t) in tracked {
                let (a, b) = (gf.get(&t).unwrap(), gc.get(&t).unwrap());
                assert!(
                    max_err(a, b)? < 1e-5,
                    "{kind:?}: gradient of {name}: {}",
                    max_err(a, b)?
                );
                assert!(
                    b.abs()?.max_all()?.to_scalar::<f32>()? > 1e-2,
                    "{kind:?}: {name} gradient is degenerate"
                );
            }
        }
        Ok(())
    }
}
