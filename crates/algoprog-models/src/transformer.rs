//! A decoder-only Transformer generic over its components.
//!
//! `Transformer<P, F, N>`: positional encoding `P`, feed-forward `F`, norm
//! `N`; the placement (pre/post) and the rest of the shape are values of the
//! [`TransformerSpec`]. Swapping one type parameter is one ablation:
//! `Transformer<Rotary, SwiGlu, RmsNorm>` vs `Transformer<Sinusoidal, SwiGlu, RmsNorm>`.
//!
//! ## Parameters (safetensors keys)
//! `embed.weight` (V, d) · `pos.weight` (learned positions only) ·
//! `blocks.{i}.norm1.*`, `blocks.{i}.attn.qkv.{weight,bias}`,
//! `blocks.{i}.attn.out.{weight,bias}`, `blocks.{i}.norm2.*`,
//! `blocks.{i}.mlp.*` · `final_norm.*` (when enabled) · `lm_head.weight`
//! (untied only) · `out_bias` (V, with `output_bias`: logits = h·Wᵀ + b,
//! initialised to 0; counted as an embedding-side parameter, so N, the
//! non-embedding count, is unchanged by it).
//!
//! ## FLOPs per token (forward, matmul convention 2·m·n·k)
//! With d the width, L the depth, T the sequence length, V the vocabulary:
//! attention 8·d² + 4·T·d per layer (QKV 6d², QKᵀ 2Td, AV 2Td, output 2d²),
//! the feed-forward's matmuls per layer (4·d·h for an MLP, 6·d·h gated),
//! and the output layer 2·d·V (its bias, when on, adds V element-wise
//! FLOPs, outside the matmul total like every other bias add). The
//! embedding lookup is a gather (0 FLOPs).
//! Training = 3 × forward (backward = 2 × forward).

use crate::{FlopReport, LanguageModel, ParamCounts};
use algoprog_nn::{
    AttentionDims, CausalSelfAttention, ConfigError, FeedForward, FfDims, Flops, Init, InitKind,
    InitScheme, Norm, ParamBuilder, ParamRole, ParamStore, Placement, PosDims, PositionalEncoding,
};
use candle_core::{DType, Device, Result, Tensor};
use std::sync::Arc;

/// The shape and component settings of a [`Transformer`].
pub struct TransformerSpec<P: PositionalEncoding, F: FeedForward, N: Norm> {
    pub d_model: usize,
    pub n_layers: usize,
    pub head_dim: usize,
    /// Plain-MLP hidden size / d_model (gated sizes follow their own rule).
    pub ff_ratio: f64,
    /// Biases on the attention and feed-forward linear layers.
    pub bias: bool,
    pub placement: Placement,
    /// A norm after the last block (needed with pre placement).
    pub final_norm: bool,
    /// The final norm's config when it differs from the blocks' `norm`
    /// (e.g. a final LayerNorm after post-RMSNorm blocks); `None` = `norm`.
    pub final_norm_config: Option<N::Config>,
    pub init: InitKind,
    /// Longest sequence (positional tables and rotary caches).
    pub max_seq_len: usize,
    /// Output layer = token embedding.
    pub tie_embeddings: bool,
    /// A trained bias on the output layer (logits = h·Wᵀ + b, b from 0).
    pub output_bias: bool,
    pub positional: P::Config,
    pub feed_forward: F::Config,
    pub norm: N::Config,
}

impl<P: PositionalEncoding, F: FeedForward, N: Norm> Clone for TransformerSpec<P, F, N> {
    fn clone(&self) -> Self {
        Self {
            positional: self.positional.clone(),
            feed_forward: self.feed_forward.clone(),
            norm: self.norm.clone(),
            final_norm_config: self.final_norm_config.clone(),
            ..*self
        }
    }
}

impl<P: PositionalEncoding, F: FeedForward, N: Norm> std::fmt::Debug for TransformerSpec<P, F, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransformerSpec")
            .field("d_model", &self.d_model)
            .field("n_layers", &self.n_layers)
            .field("head_dim", &self.head_dim)
            .field("ff_ratio", &self.ff_ratio)
            .field("bias", &self.bias)
            .field("placement", &self.placement)
            .field("final_norm", &self.final_norm)
            .field("final_norm_config", &self.final_norm_config)
            .field("init", &self.init)
            .field("max_seq_len", &self.max_seq_len)
            .field("tie_embeddings", &self.tie_embeddings)
            .field("output_bias", &self.output_bias)
            .field("positional", &self.positional)
            .field("feed_forward", &self.feed_forward)
            .field("norm", &self.norm)
            .finish()
    }
}

/// Head size of every default config (16).
pub const DEFAULT_HEAD_DIM: usize = 16;
/// Plain-MLP hidden size / d_model of every default config (4).
pub const DEFAULT_FF_RATIO: f64 = 4.0;
/// Positions covered by default (128, the papers' sequence length).
pub const DEFAULT_MAX_SEQ_LEN: usize = 128;

/// Depth by the paper's aspect ratio: max(1, d/16).
pub fn default_depth(d_model: usize) -> usize {
    (d_model / 16).max(1)
}

impl<P: PositionalEncoding, F: FeedForward, N: Norm> TransformerSpec<P, F, N> {
    /// Paper defaults for width `d_model`: depth max(1, d/16), head dim 16,
    /// feed-forward ratio 4, biases, pre placement with a final norm,
    /// transformer-scaled init, 128 positions, tied embeddings without an
    /// output bias, and each component's default config.
    pub fn new(d_model: usize) -> Self {
        Self {
            d_model,
            n_layers: default_depth(d_model),
            head_dim: DEFAULT_HEAD_DIM,
            ff_ratio: DEFAULT_FF_RATIO,
            bias: true,
            placement: Placement::Pre,
            final_norm: true,
            final_norm_config: None,
            init: InitKind::TransformerScaled,
            max_seq_len: DEFAULT_MAX_SEQ_LEN,
            tie_embeddings: true,
            output_bias: false,
            positional: Default::default(),
            feed_forward: Default::default(),
            norm: Default::default(),
        }
    }

    /// The final norm's config: `final_norm_config`, or the blocks' `norm`.
    pub fn final_norm_cfg(&self) -> &N::Config {
        self.final_norm_config.as_ref().unwrap_or(&self.norm)
    }

    pub fn n_heads(&self) -> usize {
        self.d_model / self.head_dim.max(1)
    }
    pub fn attention_dims(&self) -> AttentionDims {
        AttentionDims {
            d_model: self.d_model,
            head_dim: self.head_dim,
            bias: self.bias,
        }
    }
    pub fn ff_dims(&self) -> FfDims {
        FfDims {
            d_model: self.d_model,
            ff_ratio: self.ff_ratio,
            bias: self.bias,
        }
    }
    pub fn pos_dims(&self) -> PosDims {
        PosDims {
            d_model: self.d_model,
            n_heads: self.n_heads(),
            head_dim: self.head_dim,
            max_seq_len: self.max_seq_len,
        }
    }

    /// Checks the shape; errors name the `model.*` key and the fix.
    pub fn validate(&self) -> std::result::Result<(), ConfigError> {
        validate_shape(
            self.d_model,
            Some(self.n_layers),
            self.head_dim,
            self.ff_ratio,
            self.max_seq_len,
        )
    }

    /// Parameter counts without building. Embedding: the token table, any
    /// positional-encoding parameters (a learned table), an untied output
    /// matrix and the output bias (V, with the output layer it belongs to);
    /// non-embedding: attention, feed-forward, norms, biases.
    pub fn param_counts(&self, vocab_size: usize) -> ParamCounts {
        let d = self.d_model;
        let embedding = vocab_size * d
            + P::num_params(&self.positional, &self.pos_dims())
            + if self.tie_embeddings {
                0
            } else {
                vocab_size * d
            }
            + if self.output_bias { vocab_size } else { 0 };
        let per_layer = CausalSelfAttention::num_params(&self.attention_dims())
            + F::num_params(&self.feed_forward, &self.ff_dims())
            + 2 * N::num_params(&self.norm, d);
        let non_embedding = self.n_layers * per_layer
            + if self.final_norm {
                N::num_params(self.final_norm_cfg(), d)
            } else {
                0
            };
        ParamCounts {
            embedding,
            non_embedding,
        }
    }

    /// Forward FLOPs per component for one sequence of `seq_len` tokens
    /// (not yet divided by `seq_len`): `attention`, `positional`,
    /// `feed_forward`, `norms`, `output`.
    pub fn component_flops(&self, vocab_size: usize, seq_len: usize) -> Vec<(String, Flops)> {
        let (l, t, d) = (self.n_layers as f64, seq_len, self.d_model);
        let mut norms = N::flops(&self.norm, d, t).scale(2.0 * l);
        if self.final_norm {
            norms = norms + N::flops(self.final_norm_cfg(), d, t);
        }
        vec![
            (
                "attention".into(),
                CausalSelfAttention::flops(&self.attention_dims(), 1, t).scale(l),
            ),
            (
                "positional".into(),
                P::flops(&self.positional, &self.pos_dims(), 1, t),
            ),
            (
                "feed_forward".into(),
                F::flops(&self.feed_forward, &self.ff_dims(), t).scale(l),
            ),
            ("norms".into(), norms),
            (
                "output".into(),
                Flops::new(
                    2.0 * (t * d * vocab_size) as f64,
                    if self.output_bias {
                        (t * vocab_size) as f64
                    } else {
                        0.0
                    },
                ),
            ),
        ]
    }

    /// The Chinchilla appendix-F training FLOPs per token (3 × forward):
    /// forward per sequence = 2TVd (embeddings) + L·(2·3·T·d·d + 2T²d +
    /// 3hT² + 2T²d + 2Td²) + L·2T·(m·d·h) + 2TdV, with m the number of
    /// feed-forward matrices (2 for an MLP, 3 gated) and h their hidden size.
    pub fn chinchilla_train_per_token(&self, vocab_size: usize, seq_len: usize) -> f64 {
        let (t, d, v, l) = (
            seq_len as f64,
            self.d_model as f64,
            vocab_size as f64,
            self.n_layers as f64,
        );
        let h = self.n_heads() as f64;
        let ffh = F::hidden_size(&self.feed_forward, &self.ff_dims()) as f64;
        // number of d×h matrices m, recovered from the feed-forward's matmul FLOPs (2·m·d·h per token)
        let mats =
            ((F::flops(&self.feed_forward, &self.ff_dims(), 1).matmul) / (2.0 * d * ffh)).round();
        let attn = 2.0 * 3.0 * t * d * d
            + 2.0 * t * t * d
            + 3.0 * h * t * t
            + 2.0 * t * t * d
            + 2.0 * t * d * d;
        let dense = 2.0 * t * mats * d * ffh;
        let fwd = 2.0 * t * v * d + l * (attn + dense) + 2.0 * t * d * v;
        3.0 * fwd / t
    }

    /// FLOPs per token without building (see the module docs).
    pub fn flops(&self, vocab_size: usize, seq_len: usize) -> FlopReport {
        let t = seq_len.max(1) as f64;
        let parts = self.component_flops(vocab_size, seq_len.max(1));
        let breakdown: Vec<(String, f64)> = parts
            .iter()
            .filter(|(_, f)| f.matmul > 0.0)
            .map(|(n, f)| (n.clone(), f.matmul / t))
            .collect();
        let forward: f64 = breakdown.iter().map(|(_, x)| x).sum();
        let counts = self.param_counts(vocab_size);
        FlopReport {
            seq_len,
            forward_per_token: forward,
            train_per_token: 3.0 * forward,
            six_n_per_token: 6.0 * counts.non_embedding as f64,
            chinchilla_per_token: self.chinchilla_train_per_token(vocab_size, seq_len.max(1)),
            breakdown,
        }
    }
}

/// Shape checks shared by the generic spec and the serde config.
pub(crate) fn validate_shape(
    d_model: usize,
    n_layers: Option<usize>,
    head_dim: usize,
    ff_ratio: f64,
    max_seq_len: usize,
) -> std::result::Result<(), ConfigError> {
    if d_model == 0 {
        return Err(ConfigError::new(
            "model.d_model",
            "model.d_model = 0: choose a positive width, e.g. 64",
        ));
    }
    if head_dim == 0 {
        return Err(ConfigError::new(
            "model.head_dim",
            "model.head_dim = 0: choose a positive head size, e.g. 16",
        ));
    }
    if !d_model.is_multiple_of(head_dim) {
        return Err(ConfigError::new(
            "model.d_model",
            format!(
                "model.d_model = {d_model} is not divisible by model.head_dim = {head_dim}: choose d_model as a multiple of {head_dim}"
            ),
        ));
    }
    if n_layers == Some(0) {
        return Err(ConfigError::new(
            "model.n_layers",
            "model.n_layers = 0: choose at least 1, or omit it for max(1, d_model/16)",
        ));
    }
    if !(ff_ratio.is_finite() && ff_ratio > 0.0) {
        return Err(ConfigError::new(
            "model.ff_ratio",
            format!("model.ff_ratio = {ff_ratio} must be a positive number: 4 is the usual choice"),
        ));
    }
    if max_seq_len == 0 {
        return Err(ConfigError::new(
            "model.max_seq_len",
            "model.max_seq_len = 0: set it to at least the training sequence length (128)",
        ));
    }
    Ok(())
}

struct Block<F, N> {
    norm1: N,
    attn: CausalSelfAttention,
    norm2: N,
    mlp: F,
}

/// A decoder-only Transformer. Build with [`Transformer::new`]; use through
/// [`LanguageModel`].
pub struct Transformer<P: PositionalEncoding, F: FeedForward, N: Norm> {
    spec: TransformerSpec<P, F, N>,
    vocab_size: usize,
    embed: Tensor,
    pos: P,
    blocks: Vec<Block<F, N>>,
    final_norm: Option<N>,
    lm_head: Option<Tensor>,
    out_bias: Option<Tensor>,
    params: ParamStore,
}

impl<P: PositionalEncoding, F: FeedForward, N: Norm> Transformer<P, F, N> {
    /// Builds the model with parameters drawn from a ChaCha8 stream seeded by `seed`.
    pub fn new(
        spec: &TransformerSpec<P, F, N>,
        vocab_size: usize,
        seed: u64,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        spec.validate()
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        if vocab_size == 0 {
            return Err(candle_core::Error::Msg(
                "vocabulary size is 0: the tokenizer produced no ids".into(),
            ));
        }
        let init = Arc::new(InitScheme {
            kind: spec.init,
            n_layers: spec.n_layers,
        });
        let pb = ParamBuilder::with_initializer(seed, device, dtype, init);
        Self::from_builder(spec, vocab_size, &pb)
    }

    /// Builds the model's parameters through `pb` (fresh ones, or a
    /// [`ParamBuilder::view_of`] an existing model).
    pub fn from_builder(
        spec: &TransformerSpec<P, F, N>,
        vocab_size: usize,
        pb: &ParamBuilder,
    ) -> Result<Self> {
        let d = spec.d_model;
        let embed = pb
            .pp("embed")
            .param("weight", &[vocab_size, d], ParamRole::Embedding)?;
        let pos = P::new(&spec.positional, &spec.pos_dims(), &pb.pp("pos"))?;
        let mut blocks = Vec::with_capacity(spec.n_layers);
        for i in 0..spec.n_layers {
            let b = pb.pp(format!("blocks.{i}"));
            blocks.push(Block {
                norm1: N::new(&spec.norm, d, &b.pp("norm1"))?,
                attn: CausalSelfAttention::new(&spec.attention_dims(), &b.pp("attn"))?,
                norm2: N::new(&spec.norm, d, &b.pp("norm2"))?,
                mlp: F::new(&spec.feed_forward, &spec.ff_dims(), &b.pp("mlp"))?,
            });
        }
        let final_norm = if spec.final_norm {
            Some(N::new(spec.final_norm_cfg(), d, &pb.pp("final_norm"))?)
        } else {
            None
        };
        let lm_head = if spec.tie_embeddings {
            None
        } else {
            Some(
                pb.pp("lm_head")
                    .param("weight", &[vocab_size, d], ParamRole::Output)?,
            )
        };
        let out_bias = if spec.output_bias {
            Some(pb.param_with("out_bias", &[vocab_size], ParamRole::Bias, Init::Zeros)?)
        } else {
            None
        };
        Ok(Self {
            spec: spec.clone(),
            vocab_size,
            embed,
            pos,
            blocks,
            final_norm,
            lm_head,
            out_bias,
            params: pb.finish(),
        })
    }

    pub fn spec(&self) -> &TransformerSpec<P, F, N> {
        &self.spec
    }
}

impl<P: PositionalEncoding + 'static, F: FeedForward + 'static, N: Norm + 'static> LanguageModel
    for Transformer<P, F, N>
{
    /// The same model over detached parameters: evaluation records no graph.
    fn eval_view(&self) -> Option<Box<dyn LanguageModel>> {
        let pb = ParamBuilder::view_of(&self.params, self.embed.device(), self.embed.dtype());
        Transformer::from_builder(&self.spec, self.vocab_size, &pb)
            .ok()
            .map(|m| Box::new(m) as Box<dyn LanguageModel>)
    }

    /// Dropout is 0 (the paper's table 2), so `train` has no effect.
    fn hidden(&self, tokens: &Tensor, _train: bool) -> Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        let d = self.spec.d_model;
        let ids = tokens.to_dtype(DType::U32)?.flatten_all()?;
        let mut x = self.embed.index_select(&ids, 0)?.reshape((b, t, d))?;
        x = self.pos.embed(&x)?;
        for blk in &self.blocks {
            x = match self.spec.placement {
                Placement::Pre => {
                    let x = (&x + blk.attn.forward(&blk.norm1.forward(&x)?, &self.pos)?)?;
                    (&x + blk.mlp.forward(&blk.norm2.forward(&x)?)?)?
                }
                Placement::Post => {
                    let x = blk
                        .norm1
                        .forward(&(&x + blk.attn.forward(&x, &self.pos)?)?)?;
                    blk.norm2.forward(&(&x + blk.mlp.forward(&x)?)?)?
                }
            };
        }
        match &self.final_norm {
            Some(n) => n.forward(&x),
            None => Ok(x),
        }
    }
    fn output_weight(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }
    fn output_bias(&self) -> Option<&Tensor> {
        self.out_bias.as_ref()
    }
    fn vocab_size(&self) -> usize {
        self.vocab_size
    }
    fn d_model(&self) -> usize {
        self.spec.d_model
    }
    fn param_counts(&self) -> ParamCounts {
        self.spec.param_counts(self.vocab_size)
    }
    fn flops(&self, seq_len: usize) -> FlopReport {
        self.spec.flops(self.vocab_size, seq_len)
    }
    fn params(&self) -> &ParamStore {
        &self.params
    }
}
