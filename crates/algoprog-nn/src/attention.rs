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

use crate::loss::linear;
use crate::params::{ParamBuilder, ParamRole};
use crate::positional::PositionalEncoding;
use crate::Flops;
use candle_core::{Result, Tensor, D};

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
            qkv_b: if dims.bias { Some(pq.param("bias", &[3 * d], ParamRole::Bias)?) } else { None },
            out_w: po.param("weight", &[d, d], ParamRole::AttentionOut)?,
            out_b: if dims.bias { Some(po.param("bias", &[d], ParamRole::Bias)?) } else { None },
            n_heads: dims.n_heads(),
            head_dim: dims.head_dim,
        })
    }

    /// The additive causal mask (T, T): 0 on and below the diagonal, −∞ above.
    pub fn causal_mask(t: usize, like: &Tensor) -> Result<Tensor> {
        let v: Vec<f64> = (0..t * t)
            .map(|ij| if ij % t > ij / t { f64::NEG_INFINITY } else { 0.0 })
            .collect();
        Tensor::from_vec(v, (t, t), like.device())?.to_dtype(like.dtype())
    }

    /// x (b, T, d) → (b, T, d).
    pub fn forward<P: PositionalEncoding>(&self, x: &Tensor, pos: &P) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let (h, hd) = (self.n_heads, self.head_dim);
        let qkv = linear(x, &self.qkv_w, self.qkv_b.as_ref())?.reshape((b, t, 3, h, hd))?;
        let split = |i: usize| -> Result<Tensor> {
            qkv.narrow(2, i, 1)?.squeeze(2)?.transpose(1, 2)?.contiguous()
        };
        let (q, k, v) = (split(0)?, split(1)?, split(2)?);
        let (q, k) = pos.rotate(&q, &k)?;
        let scores = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?;
        let scores = pos.score_bias(&scores)?;
        let scores = scores.broadcast_add(&Self::causal_mask(t, &scores)?)?;
        let p = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let y = p.matmul(&v)?.transpose(1, 2)?.reshape((b, t, d))?;
        linear(&y, &self.out_w, self.out_b.as_ref())
    }

    /// Number of scalar parameters: 4d² (+ 4d biases).
    pub fn num_params(dims: &AttentionDims) -> usize {
        let d = dims.d_model;
        4 * d * d + if dims.bias { 4 * d } else { 0 }
    }

    /// Forward FLOPs for `batch` sequences of length `seq_len` (see the module docs).
    pub fn flops(dims: &AttentionDims, batch: usize, seq_len: usize) -> Flops {
        let (b, t, d, h) = (batch as f64, seq_len as f64, dims.d_model as f64, dims.n_heads() as f64);
        let matmul = 8.0 * b * t * d * d + 4.0 * b * t * t * d;
        let bias = if dims.bias { 4.0 * b * t * d } else { 0.0 };
        Flops::new(matmul, 7.0 * b * h * t * t + bias)
    }
}
