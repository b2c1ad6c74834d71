//! Causal multi-head self-attention with positional hooks.
//!
//! Parameters (names under the attention's prefix): `qkv.weight` (3d, d),
//! role AttentionQkv; `out.weight` (d, d), role AttentionOut; `qkv.bias`
//! (3d) and `out.bias` (d) when `bias`.
//!
//! Forward FLOPs for b sequences of length T, d = h·d_h (the full T×T score
//! matrix is computed and then masked, as a profiler would count it):
//! - matmul: QKV 2·bT·d·3d, QKᵀ 2·b·h·T·T·d_h = 2·b·T²·d, AV 2·b·T²·d,
//!   output 2·bT·d·d; in total 8·bT·d² + 4·bT²·d.
//! - elementwise: score scaling, causal-mask add and softmax (max, subtract,
//!   exp, sum, divide) = 7·b·h·T², plus 4·bT·d bias adds when `bias`; the
//!   positional hooks report their own FLOPs.
//!
//! The scores, softmax and ·V run as one fused op
//! ([`crate::fused::attention::causal_attention`]) when the input can take a
//! fused path ([`crate::fused::fusable`]: f32 on the CPU, fused kernels on)
//! and the positional encoding's score bias can run inside it
//! ([`PositionalEncoding::fused_score_bias`] is not `Unsupported`);
//! otherwise the composite candle ops. The fused kernel skips the masked
//! upper triangle (about half the QKᵀ and AV work and of the exponentials),
//! but the FLOP count above keeps the full T×T by convention, so both paths
//! report the same FLOPs.

use crate::fused::{
    self, attention::causal_attention, attention::causal_attention_composite,
    attention::causal_attention_packed,
};
use crate::loss::linear;
use crate::params::{ParamBuilder, ParamRole};
use crate::positional::{FusedRotation, FusedScoreBias, PositionalEncoding};
use crate::Flops;
use candle_core::{Result, Tensor};

/// Shape of an attention layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AttentionDims {
    pub d_model: usize,
    pub head_dim: usize,
    pub bias: bool,
}

impl AttentionDims {
    pub fn n_heads(&self) -> usize {
        self.d_model / self.head_dim
    }
}

#[derive(Clone, Debug)]
pub struct CausalSelfAttention {
    qkv_w: Tensor,
    qkv_b: Option<Tensor>,
    out_w: Tensor,
    out_b: Option<Tensor>,
    n_heads: usize,
    head_dim: usize,
}

impl CausalSelfAttention {
    pub fn new(dims: &AttentionDims, pb: &ParamBuilder) -> Result<Self> {
        let d = dims.d_model;
        if dims.head_dim == 0 || !d.is_multiple_of(dims.head_dim) {
            return Err(candle_core::Error::Msg(format!(
                "model.d_model = {d} is not divisible by model.head_dim = {}: choose d_model as a multiple of head_dim",
                dims.head_dim
            )));
        }
        let (pq, po) = (pb.pp("qkv"), pb.pp("out"));
        Ok(Self {
            qkv_w: pq.param("weight", &[3 * d, d], ParamRole::AttentionQkv)?,
            qkv_b: if dims.bias {
                Some(pq.param("bias", &[3 * d], ParamRole::Bias)?)
            } else {
                None
            },
            out_w: po.param("weight", &[d, d], ParamRole::AttentionOut)?,
            out_b: if dims.bias {
                Some(po.param("bias", &[d], ParamRole::Bias)?)
            } else {
                None
            },
            n_heads: dims.n_heads(),
            head_dim: dims.head_dim,
        })
    }

    /// The additive causal mask (T, T): 0 on and below the diagonal, −∞ above.
    pub fn causal_mask(t: usize, like: &Tensor) -> Result<Tensor> {
        let v: Vec<f64> = (0..t * t)
            .map(|ij| {
                if ij % t > ij / t {
                    f64::NEG_INFINITY
                } else {
                    0.0
                }
            })
            .collect();
        Tensor::from_vec(v, (t, t), like.device())?.to_dtype(like.dtype())
    }

    /// x (b, T, d) → (b, T, d).
    pub fn forward<P: PositionalEncoding>(&self, x: &Tensor, pos: &P) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (h, hd) = (self.n_heads, self.head_dim);
        let qkv_packed = linear(x, &self.qkv_w, self.qkv_b.as_ref())?;
        let bias = if fused::fusable(x) {
            pos.fused_score_bias()
        } else {
            FusedScoreBias::Unsupported
        };
        let fused = bias != FusedScoreBias::Unsupported;
        if fused {
            // the packed op: no views, rotation inside, gradient back packed
            let rotary = match pos.fused_rotation() {
                FusedRotation::Identity => Some(None),
                FusedRotation::Rotary(tables) => Some(Some(tables)),
                FusedRotation::Unsupported => None,
            };
            if let Some(rotary) = rotary {
                let slopes = match &bias {
                    FusedScoreBias::Alibi(m) => Some(m.as_slice()),
                    FusedScoreBias::None | FusedScoreBias::Unsupported => None,
                };
                let y = causal_attention_packed(&qkv_packed, h, rotary.as_ref(), slopes)?;
                return linear(&y, &self.out_w, self.out_b.as_ref());
            }
        }
        let qkv = qkv_packed.reshape((b, t, 3, h, hd))?;
        // (b, h, T, d_h) views of the packed projection; the fused kernel
        // reads them in place, the composite matmuls want them contiguous
        let split = |i: usize| -> Result<Tensor> {
            let x = qkv.narrow(2, i, 1)?.squeeze(2)?.transpose(1, 2)?;
            if fused {
                Ok(x)
            } else {
                x.contiguous()
            }
        };
        let (q, k, v) = (split(0)?, split(1)?, split(2)?);
        let (q, k) = pos.rotate(&q, &k)?;
        let y = match &bias {
            FusedScoreBias::None => causal_attention(&q, &k, &v, None)?,
            FusedScoreBias::Alibi(m) => causal_attention(&q, &k, &v, Some(m))?,
            FusedScoreBias::Unsupported => {
                causal_attention_composite(&q, &k, &v, &|s: &Tensor| pos.score_bias(s))?
            }
        };
        linear(&y, &self.out_w, self.out_b.as_ref())
    }

    /// Number of scalar parameters: 4d² (+ 4d biases).
    pub fn num_params(dims: &AttentionDims) -> usize {
        let d = dims.d_model;
        4 * d * d + if dims.bias { 4 * d } else { 0 }
    }

    /// Forward FLOPs for `batch` sequences of length `seq_len` (see the module docs).
    pub fn flops(dims: &AttentionDims, batch: usize, seq_len: usize) -> Flops {
        let (b, t, d, h) = (
            batch as f64,
            seq_len as f64,
            dims.d_model as f64,
            dims.n_heads() as f64,
        );
        let matmul = 8.0 * b * t * d * d + 4.0 * b * t * t * d;
        let bias = if dims.bias { 4.0 * b * t * d } else { 0.0 };
        Flops::new(matmul, 7.0 * b * h * t * t + bias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ParamBuilder;
    use crate::positional::{Alibi, NoPe, PosDims, Rotary, RotaryConfig};
    use candle_core::{DType, Device, Var};

    /// `P` with the default fused hook (`Unsupported`): forces the composite path.
    struct Composite<P>(P);
    impl<P: PositionalEncoding> PositionalEncoding for Composite<P> {
        type Config = P::Config;
        fn new(cfg: &P::Config, dims: &PosDims, pb: &ParamBuilder) -> Result<Self> {
            Ok(Self(P::new(cfg, dims, pb)?))
        }
        fn embed(&self, x: &Tensor) -> Result<Tensor> {
            self.0.embed(x)
        }
        fn rotate(&self, q: &Tensor, k: &Tensor) -> Result<(Tensor, Tensor)> {
            self.0.rotate(q, k)
        }
        fn score_bias(&self, s: &Tensor) -> Result<Tensor> {
            self.0.score_bias(s)
        }
    }

    /// `P` whose score bias the kernel runs but whose rotation it does not
    /// know: exercises the unpacked fused path (rotate, then strided views).
    struct RotateOutside<P>(P);
    impl<P: PositionalEncoding> PositionalEncoding for RotateOutside<P> {
        type Config = P::Config;
        fn new(cfg: &P::Config, dims: &PosDims, pb: &ParamBuilder) -> Result<Self> {
            Ok(Self(P::new(cfg, dims, pb)?))
        }
        fn rotate(&self, q: &Tensor, k: &Tensor) -> Result<(Tensor, Tensor)> {
            self.0.rotate(q, k)
        }
        fn score_bias(&self, s: &Tensor) -> Result<Tensor> {
            self.0.score_bias(s)
        }
        fn fused_score_bias(&self) -> FusedScoreBias {
            self.0.fused_score_bias()
        }
    }

    fn max_abs(t: &Tensor) -> f64 {
        t.abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64
    }

    fn fused_matches_composite<P: PositionalEncoding>(name: &str, cfg: &P::Config) {
        let (b, t, d, hd) = (2, 19, 32, 8);
        let dims = AttentionDims {
            d_model: d,
            head_dim: hd,
            bias: true,
        };
        let pd = PosDims {
            d_model: d,
            n_heads: d / hd,
            head_dim: hd,
            max_seq_len: 32,
        };
        let pb = ParamBuilder::new(7, &Device::Cpu, DType::F32);
        let pos = P::new(cfg, &pd, &pb.pp("pos")).unwrap();
        let attn = CausalSelfAttention::new(&dims, &pb.pp("attn")).unwrap();
        let xb = ParamBuilder::new(8, &Device::Cpu, DType::F32);
        let x = xb
            .param_with(
                "x",
                &[b, t, d],
                crate::params::ParamRole::Other,
                crate::init::Init::Normal { std: 1.0 },
            )
            .unwrap();
        let x = Var::from_tensor(&x).unwrap();
        let r = (x.as_tensor().detach().sin().unwrap() + 0.5).unwrap();
        let composite = Composite(pos);
        let yf = attn.forward(x.as_tensor(), &composite.0).unwrap();
        let yc = attn.forward(x.as_tensor(), &composite).unwrap();
        let scale = max_abs(&yc);
        let e = max_abs(&(&yf - &yc).unwrap()) / scale;
        assert!(e < 1e-5, "{name}: values differ by {e}");
        let gf = (&yf * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let gc = (&yc * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let mut vars: Vec<Var> = pb.finish().vars();
        vars.push(x);
        for (i, v) in vars.iter().enumerate() {
            let (a, c) = (
                gf.get(v.as_tensor()).unwrap(),
                gc.get(v.as_tensor()).unwrap(),
            );
            let scale = max_abs(c);
            assert!(scale > 0.0, "{name}: zero gradient for variable {i}");
            let e = max_abs(&(a - c).unwrap()) / scale;
            assert!(e < 1e-5, "{name}: gradients of variable {i} differ by {e}");
        }
    }

    #[test]
    fn fused_path_matches_composite_path() {
        fused_matches_composite::<NoPe>("nope", &());
        fused_matches_composite::<Rotary>("rotary", &RotaryConfig::default());
        fused_matches_composite::<Alibi>("alibi", &());
        fused_matches_composite::<RotateOutside<Rotary>>(
            "rotary outside the packed op",
            &RotaryConfig::default(),
        );
        fused_matches_composite::<RotateOutside<Alibi>>("alibi unpacked", &());
    }
}
