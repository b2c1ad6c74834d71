//! A stacked LSTM language model as the papers trained it (Melis et al. 2017
//! hyper-parameters; section 2.2 and Table 3 of the algorithmic-progress
//! paper): 2 layers, tied embeddings, layer normalisation, variational
//! dropout with separate input / hidden / output rates, truncated
//! backpropagation through time (TBPTT).
//!
//! ## One layer, one time step
//! With x_t the layer input (width d_in), (h_{t−1}, c_{t−1}) its state
//! (width H) and the gates in the order (i, f, o, g):
//!
//! ```text
//! a_t = W_ih·x_t + b + W_hh·(m_h ⊙ h_{t−1})     (4H)   m_h: hidden-dropout mask
//! i, f, o = σ(a_i), σ(a_f), σ(a_o);   g = tanh(a_g)
//! c_t = f ⊙ c_{t−1} + i ⊙ g
//! h_t = o ⊙ tanh(c_t)
//! y_t = LN(h_t)                                   (layer output, when `layer_norm`)
//! ```
//!
//! The input projection W_ih·x_t + b does not depend on the recurrence, so it
//! is computed for a whole TBPTT window in one (B·T_w × d_in)·(d_in × 4H)
//! matmul; only W_hh·h_{t−1} and the gate non-linearities stay in the time
//! loop. How that loop runs is the `kernel` ([`LstmKernel`]): `window`
//! (default) runs each layer over all its TBPTT windows as one op with its
//! own backpropagation through time ([`LstmWindow`], whose forward and
//! backward are the `algoprog_kernels::lstm` kernels); `cell` keeps a candle
//! time loop with one fused cell op per step ([`cell::LstmCell`]);
//! `composite` uses plain candle ops only ([`lstm_cell_composite`]). The
//! ops live in [`algoprog_nn::fused::lstm`]. All three compute the same
//! function and gradients (tested against each other and against finite
//! differences).
//!
//! ## Where layer normalisation sits, and why
//! On each layer's output h_t (before it feeds the next layer or the tied
//! output layer), with a gain and shift per layer. Not inside the cell (Ba et
//! al. 2016's LN-LSTM normalises the gate pre-activations and c_t at every
//! step): the papers describe a standard LSTM stack with layer normalisation
//! added, which in PyTorch is `nn.LSTM` layers with `nn.LayerNorm` between
//! them, and keeping the norm out of the recurrence lets it run once per
//! window over (B·T_w, H) rows instead of 3 times per step inside the loop.
//! The last layer's norm plays the role of the Transformer's final norm
//! before the tied output layer.
//!
//! ## Dropout (variational: one mask per sequence batch, reused at every step)
//! - input (`dropout_input`, 0.2): on the embedding output, mask (B, d).
//! - hidden (`dropout_hidden`, 0.1): on the recurrent state h_{t−1} before
//!   W_hh in every layer (Gal & Ghahramani 2016), mask (B, H) per layer.
//! - output (`dropout_output`, 0.2): on every layer's normalised output, i.e.
//!   between layers and before the output layer (Melis et al. 2017), mask
//!   (B, H) per layer.
//!
//! Masks are inverted (kept units scaled by 1/(1 − p)), drawn from a ChaCha8
//! stream seeded by the model seed, once per [`LanguageModel::hidden`] call
//! with `train = true`; with `train = false` or p = 0 dropout is the identity.
//!
//! ## TBPTT
//! A sequence of T tokens is run in windows of `tbptt_len` (64 in 128-token
//! sequences for the papers' Table 3, 32 in the authors' runs). The state is
//! carried across the windows of a sequence and detached at each window
//! boundary, so a window's loss sends no gradient into earlier windows. One
//! loss over the whole sequence and one backward therefore equals
//! accumulating the windows' gradients.
//!
//! Where a sequence's state starts is `carry_state` ([`CarryState`]):
//! - `within_sequence` (the serde default, the papers' Table 3 setup): at
//!   zero for every sequence.
//! - `across_batches` (the authors' LSTM runs, the `lstm` preset): in
//!   training, batch row i of a call starts from the final state of row i of
//!   the previous training call, detached (no gradient crosses from one batch
//!   into the one before it), one (h, c) per layer. The carry is kept in
//!   the model (a mutex, so the trainer needs no state of its own); it is
//!   reset to zero when the batch size changes, and is neither read nor
//!   written by evaluation (`train = false`), which always starts from zero
//!   state. Each micro-batch of a gradient-accumulation step is one call, so
//!   the state runs on from micro-batch to micro-batch.
//!
//!   The carried state is not a parameter; the model hands it out as
//!   [`LanguageModel::extra_state`] (`carry.{l}`, (B, 2H) = [h | c]) and
//!   the trainer saves it with each checkpoint, so a resumed run continues
//!   from the same state, bit-for-bit (the dropout mask stream is not saved:
//!   with dropout a resumed run is correct but not bit-identical).
//!   [`Lstm::carried_state`] and [`Lstm::set_carried_state`] are the typed
//!   accessors.
//!
//!   A carried state helps only when row i of the next batch continues the
//!   text of row i of this one (the authors feed B contiguous streams, as
//!   Melis et al. and Merity et al. do): the `lstm` preset sets
//!   `train.batch_order = "contiguous"` for that. With the default shuffled
//!   order (allowed, not refused) the carried state comes from unrelated
//!   text and the model learns to start from an arbitrary state.
//!
//! ## Initialisation
//! Embedding Xavier-uniform U(±√(6/(V + d))); W_ih Xavier-uniform
//! U(±√(6/(d_in + 4H))); each gate's H×H block of W_hh orthogonal (QR of a
//! Gaussian matrix with the signs of R's diagonal made positive, as
//! `torch.nn.init.orthogonal_`); biases 0 except the forget gate's +1; norm
//! gains 1, shifts 0; the projection (only when H ≠ d) Xavier-uniform.
//!
//! ## Parameters (safetensors keys)
//! `embed.weight` (V, d) · `layers.{l}.w_ih` (4H, d_in) · `layers.{l}.w_hh`
//! (4H, H) · `layers.{l}.bias` (4H) · `layers.{l}.norm.{weight,bias}` (H) ·
//! `proj.weight` (d, H) when H ≠ d: the tied output layer needs width d, so
//! the last layer's output is projected y ↦ P·y to d_model · `out_bias`
//! (V) with `output_bias`: logits = y·Eᵀ + b, b trained from 0.
//!
//! Counts: embedding V·d (+ V for the output bias, counted with the tied
//! embedding it belongs to, so N stays the non-embedding count); non-embedding Σ_l [4H·(d_in,l + H) + 4H + 2H·LN] +
//! (H ≠ d ? d·H : 0), with d_in,0 = d and d_in,l = H for l > 0.
//!
//! ## FLOPs per token (forward, matmul convention 2·m·n·k)
//! Per layer: input projection 2·d_in·4H, recurrent 2·H·4H, i.e.
//! 8H·(d_in + H); the projection 2·H·d when H ≠ d; the output layer 2·d·V
//! (its bias adds are element-wise, outside the matmul total).
//! Two layers at d = H = 64, V = 4096: 2·8·64·128 + 2·64·4096 =
//! 131 072 + 524 288 = 655 360 per token forward, 3× that for training. The
//! gate non-linearities, cell update and norms are element-wise (≈ 20H per
//! layer per token) and are not in the matmul total, as for the Transformer.

use crate::{FlopReport, LanguageModel, ParamCounts};
use algoprog_nn::fused::lstm::{LstmCell, LstmWindow};
use algoprog_nn::{
    ConfigError, Init, LayerNorm, LayerNormConfig, Norm, ParamBuilder, ParamRole, ParamStore,
};
use candle_core::{DType, Device, Result, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

pub use algoprog_nn::fused::lstm::lstm_cell_composite;

/// The fused cell op of the `cell` kernel (it lives in [`algoprog_nn::fused::lstm`]).
pub mod cell {
    pub use algoprog_nn::fused::lstm::{LstmCell, LstmCellBackward};
}

fn d2() -> usize {
    2
}
fn d64() -> usize {
    64
}
fn d128() -> usize {
    128
}
fn dtrue() -> bool {
    true
}
fn p_in() -> f64 {
    0.2
}
fn p_hidden() -> f64 {
    0.1
}
fn p_out() -> f64 {
    0.2
}

/// How the recurrence is executed (`kernel = "window" | "cell" | "composite"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LstmKernel {
    /// One op per layer over all its TBPTT windows, with a hand-written BPTT backward ([`LstmWindow`]).
    #[default]
    Window,
    /// A candle time loop with one fused cell op per step ([`cell::LstmCell`]).
    Cell,
    /// A candle time loop of plain candle ops (the reference).
    Composite,
}

/// Where each sequence's recurrent state starts in training
/// (`carry_state = "within_sequence" | "across_batches"`; see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CarryState {
    /// Zero state at the start of every sequence; carried only across the
    /// TBPTT windows of a sequence (the papers' Table 3 setup).
    #[default]
    WithinSequence,
    /// Batch row i starts from the detached final state of row i of the
    /// previous training batch (the authors' LSTM runs).
    AcrossBatches,
}

impl CarryState {
    fn is_within_sequence(&self) -> bool {
        *self == CarryState::WithinSequence
    }
}

/// LSTM settings (the TOML `[model]` section with `kind = "lstm"`).
///
/// ```toml
/// [model]
/// kind = "lstm"
/// d_model = 64          # embedding width (tied output layer)
/// n_layers = 2
/// hidden = 64           # default d_model; ≠ d_model adds a projection to d_model
/// tbptt_len = 64        # TBPTT window within a sequence
/// dropout_input = 0.2   # variational dropout rates (0 for the fair comparison)
/// dropout_hidden = 0.1
/// dropout_output = 0.2
/// layer_norm = true     # LayerNorm on each layer's output
/// kernel = "window"     # window | cell | composite (same maths, different speed)
/// max_seq_len = 128
/// carry_state = "within_sequence"  # or "across_batches" (the authors' runs)
/// output_bias = false   # a trained bias on the tied output layer (logits = y·Eᵀ + b)
/// ```
///
/// The serde defaults above are the papers' Table 3 values (and what older
/// run records hold); the `lstm` preset sets the authors' runs instead
/// ([`LstmConfig::authors_runs`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LstmConfig {
    /// Embedding width d (the tied output layer's width).
    pub d_model: usize,
    /// Number of stacked LSTM layers (2, the papers' choice; 1 supported).
    #[serde(default = "d2")]
    pub n_layers: usize,
    /// Hidden (state) width H; `None` = d_model.
    #[serde(default)]
    pub hidden: Option<usize>,
    /// TBPTT window length; the state is detached between windows.
    #[serde(default = "d64")]
    pub tbptt_len: usize,
    /// Variational dropout on the embedding output.
    #[serde(default = "p_in")]
    pub dropout_input: f64,
    /// Variational dropout on the recurrent state before W_hh.
    #[serde(default = "p_hidden")]
    pub dropout_hidden: f64,
    /// Variational dropout on each layer's output.
    #[serde(default = "p_out")]
    pub dropout_output: f64,
    /// LayerNorm on each layer's output.
    #[serde(default = "dtrue")]
    pub layer_norm: bool,
    /// How the time loop is executed (identical maths; see [`LstmKernel`]).
    #[serde(default)]
    pub kernel: LstmKernel,
    /// Longest sequence accepted (an LSTM has no position table; this keeps
    /// the data/model length check uniform across architectures).
    #[serde(default = "d128")]
    pub max_seq_len: usize,
    /// Where a sequence's state starts in training (see [`CarryState`]).
    /// Omitted from the serialised config when `within_sequence`, so configs
    /// without it keep their run ids.
    #[serde(default, skip_serializing_if = "CarryState::is_within_sequence")]
    pub carry_state: CarryState,

    /// A trained bias b (V) on the tied output layer, logits = y·Eᵀ + b,
    /// initialised to 0. Off by default so that stored run records, written
    /// before the key existed, keep meaning the model they trained; written
    /// only when on, so records of models without it read as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub output_bias: bool,
}

impl LstmConfig {
    /// The papers' setup (Table 3): 2 layers, H = d, TBPTT 64, dropouts
    /// 0.2 / 0.1 / 0.2, layer norm, 128-token sequences.
    pub fn paper(d_model: usize) -> Self {
        Self {
            d_model,
            n_layers: 2,
            hidden: None,
            tbptt_len: 64,
            dropout_input: 0.2,
            dropout_hidden: 0.1,
            dropout_output: 0.2,
            layer_norm: true,
            kernel: LstmKernel::Window,
            max_seq_len: 128,
            output_bias: false,
            carry_state: CarryState::WithinSequence,
        }
    }

    /// The LSTM of the authors' runs, which produced the published LSTM
    /// frontier (A = 36.3, α = −0.065): 1 layer, H = d, no LayerNorm, no
    /// dropout, TBPTT 32 with the state carried across batches
    /// ([`CarryState::AcrossBatches`]). It differs from the papers' text
    /// (Table 3, [`paper`](Self::paper): 2 layers, LayerNorm, TBPTT 64) in
    /// each of those; the papers' summary lists the LSTM baseline as
    /// "1-layer, orthogonal recurrent weights, forget gate bias +1, no
    /// dropout". Weight decay (1e-4) and the per-width learning rates are
    /// trainer settings.
    pub fn authors_runs(d_model: usize) -> Self {
        Self {
            n_layers: 1,
            tbptt_len: 32,
            layer_norm: false,
            carry_state: CarryState::AcrossBatches,
            ..Self::paper_no_dropout(d_model)
        }
    }

    /// [`paper`](Self::paper) with every dropout 0: the papers' fair
    /// comparison with the Transformer (appendix 11.1.2, dropout 0 as in
    /// Chinchilla) and the `lstm-paper-table` preset.
    pub fn paper_no_dropout(d_model: usize) -> Self {
        Self {
            dropout_input: 0.0,
            dropout_hidden: 0.0,
            dropout_output: 0.0,
            ..Self::paper(d_model)
        }
    }

    /// The hidden width actually used.
    pub fn hidden_size(&self) -> usize {
        self.hidden.unwrap_or(self.d_model)
    }

    /// Checks the config; errors name the `model.*` key and the fix.
    pub fn validate(&self) -> std::result::Result<(), ConfigError> {
        if self.d_model == 0 {
            return Err(ConfigError::new(
                "model.d_model",
                "model.d_model = 0: choose a positive width, e.g. 64",
            ));
        }
        if self.n_layers == 0 {
            return Err(ConfigError::new(
                "model.n_layers",
                "model.n_layers = 0: choose 2 (the papers') or 1",
            ));
        }
        if self.hidden == Some(0) {
            return Err(ConfigError::new(
                "model.hidden",
                "model.hidden = 0: choose a positive width, or omit it for hidden = d_model",
            ));
        }
        if self.tbptt_len == 0 {
            return Err(ConfigError::new(
                "model.tbptt_len",
                "model.tbptt_len = 0: choose a positive window, e.g. 64 (half the 128-token sequence)",
            ));
        }
        for (key, p) in [
            ("model.dropout_input", self.dropout_input),
            ("model.dropout_hidden", self.dropout_hidden),
            ("model.dropout_output", self.dropout_output),
        ] {
            if !(p.is_finite() && (0.0..1.0).contains(&p)) {
                return Err(ConfigError::new(
                    key,
                    format!("{key} = {p} must be in [0, 1): use 0 to disable it (the papers' fair comparison)"),
                ));
            }
        }
        if self.max_seq_len == 0 {
            return Err(ConfigError::new(
                "model.max_seq_len",
                "model.max_seq_len = 0: set it to at least the training sequence length (128)",
            ));
        }
        Ok(())
    }

    fn layer_in(&self, l: usize) -> usize {
        if l == 0 {
            self.d_model
        } else {
            self.hidden_size()
        }
    }

    /// Parameter counts without building (see the module docs).
    pub fn param_counts(&self, vocab_size: usize) -> ParamCounts {
        let h = self.hidden_size();
        let per_layer = |l: usize| {
            4 * h * (self.layer_in(l) + h) + 4 * h + if self.layer_norm { 2 * h } else { 0 }
        };
        let proj = if h != self.d_model {
            self.d_model * h
        } else {
            0
        };
        ParamCounts {
            // the output bias is counted with the embedding it belongs to
            embedding: vocab_size * self.d_model + if self.output_bias { vocab_size } else { 0 },
            non_embedding: (0..self.n_layers).map(per_layer).sum::<usize>() + proj,
        }
    }

    /// FLOPs per token without building (matmuls only):
    /// forward = Σ_l 8H·(d_in,l + H) + [H ≠ d]·2·H·d + 2·d·V, training =
    /// 3 × forward; breakdown `lstm.input`, `lstm.recurrent`, `projection`,
    /// `output`.
    pub fn flops(&self, vocab_size: usize, seq_len: usize) -> FlopReport {
        let (d, h, v) = (
            self.d_model as f64,
            self.hidden_size() as f64,
            vocab_size as f64,
        );
        let input: f64 = (0..self.n_layers)
            .map(|l| 2.0 * self.layer_in(l) as f64 * 4.0 * h)
            .sum();
        let recurrent = self.n_layers as f64 * 2.0 * h * 4.0 * h;
        let proj = if self.hidden_size() != self.d_model {
            2.0 * h * d
        } else {
            0.0
        };
        let mut breakdown = vec![
            ("lstm.input".to_string(), input),
            ("lstm.recurrent".to_string(), recurrent),
        ];
        if proj > 0.0 {
            breakdown.push(("projection".to_string(), proj));
        }
        breakdown.push(("output".to_string(), 2.0 * d * v));
        let forward: f64 = breakdown.iter().map(|(_, x)| x).sum();
        FlopReport {
            seq_len,
            forward_per_token: forward,
            train_per_token: 3.0 * forward,
            six_n_per_token: 6.0 * self.param_counts(vocab_size).non_embedding as f64,
            chinchilla_per_token: 0.0,
            breakdown,
        }
    }

    /// Validates, then builds the model with seeded initialisation.
    pub fn build(
        &self,
        vocab_size: usize,
        seed: u64,
        device: &Device,
        dtype: DType,
    ) -> Result<Lstm> {
        Lstm::new(self, vocab_size, seed, device, dtype)
    }
}

struct Layer {
    w_ih: Tensor,
    w_hh: Tensor,
    bias: Tensor,
    norm: Option<LayerNorm>,
}

/// A stacked LSTM language model (see the module docs). Build with
/// [`LstmConfig::build`]; use through [`LanguageModel`].
pub struct Lstm {
    cfg: LstmConfig,
    vocab_size: usize,
    embed: Tensor,
    layers: Vec<Layer>,
    proj: Option<Tensor>,
    out_bias: Option<Tensor>,
    params: ParamStore,
    /// Dropout masks' random stream (seeded; advanced once per training call).
    rng: Mutex<ChaCha8Rng>,
    /// The state carried into the next training call with
    /// `carry_state = "across_batches"`: per layer [h | c] (B, 2H), detached.
    carry: Mutex<Option<Vec<Tensor>>>,
}

/// Orthogonal n×n matrix from a Gaussian one by modified Gram–Schmidt on its
/// columns (= the Q of its QR decomposition with R's diagonal positive).
/// `a` is row-major n×n; the result is row-major.
pub fn orthogonalize(a: &[f64], n: usize) -> Vec<f64> {
    // columns as vectors
    let mut cols: Vec<Vec<f64>> = (0..n)
        .map(|j| (0..n).map(|i| a[i * n + j]).collect())
        .collect();
    for j in 0..n {
        for k in 0..j {
            let (done, rest) = cols.split_at_mut(j);
            let qk = &done[k];
            let dot: f64 = qk.iter().zip(rest[0].iter()).map(|(x, y)| x * y).sum();
            for (x, q) in rest[0].iter_mut().zip(qk) {
                *x -= dot * q;
            }
        }
        let norm = cols[j]
            .iter()
            .map(|x| x * x)
            .sum::<f64>()
            .sqrt()
            .max(1e-300);
        for x in cols[j].iter_mut() {
            *x /= norm;
        }
    }
    let mut out = vec![0.0; n * n];
    for (j, c) in cols.iter().enumerate() {
        for (i, x) in c.iter().enumerate() {
            out[i * n + j] = *x;
        }
    }
    out
}

impl Lstm {
    /// Builds the model with parameters drawn from a ChaCha8 stream seeded by `seed`.
    pub fn new(
        cfg: &LstmConfig,
        vocab_size: usize,
        seed: u64,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        cfg.validate()
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        if vocab_size == 0 {
            return Err(candle_core::Error::Msg(
                "vocabulary size is 0: the tokenizer produced no ids".into(),
            ));
        }
        let pb = ParamBuilder::new(seed, device, dtype);
        let model = Self::from_builder(cfg, vocab_size, &pb, seed)?;
        // Orthogonal recurrent blocks and the forget-gate bias, set in place.
        let (params, h) = (&model.params, cfg.hidden_size());
        for l in 0..cfg.n_layers {
            let p = params
                .get(&format!("layers.{l}.w_hh"))
                .expect("w_hh was created");
            let g: Vec<f64> = p
                .var
                .as_tensor()
                .to_dtype(DType::F64)?
                .flatten_all()?
                .to_vec1()?;
            let mut w = Vec::with_capacity(g.len());
            for block in g.chunks(h * h) {
                w.extend(orthogonalize(block, h));
            }
            p.var
                .set(&Tensor::from_vec(w, (4 * h, h), device)?.to_dtype(dtype)?)?;
            let b = params
                .get(&format!("layers.{l}.bias"))
                .expect("bias was created");
            let vals: Vec<f64> = (0..4 * h)
                .map(|i| if (h..2 * h).contains(&i) { 1.0 } else { 0.0 })
                .collect();
            b.var
                .set(&Tensor::from_vec(vals, 4 * h, device)?.to_dtype(dtype)?)?;
        }
        Ok(model)
    }

    /// Creates the parameters through `pb` (fresh draws before the in-place
    /// orthogonal/forget-bias setup of [`Lstm::new`], or a
    /// [`ParamBuilder::view_of`] an existing model) with dropout stream `seed`.
    pub fn from_builder(
        cfg: &LstmConfig,
        vocab_size: usize,
        pb: &ParamBuilder,
        seed: u64,
    ) -> Result<Self> {
        let (d, h) = (cfg.d_model, cfg.hidden_size());
        let xavier = |fan_in: usize, fan_out: usize| Init::Uniform {
            bound: (6.0 / (fan_in + fan_out) as f64).sqrt(),
        };
        let embed = pb.pp("embed").param_with(
            "weight",
            &[vocab_size, d],
            ParamRole::Embedding,
            xavier(vocab_size, d),
        )?;
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for l in 0..cfg.n_layers {
            let lb = pb.pp(format!("layers.{l}"));
            let d_in = cfg.layer_in(l);
            let w_ih = lb.param_with(
                "w_ih",
                &[4 * h, d_in],
                ParamRole::RecurrentInput,
                xavier(d_in, 4 * h),
            )?;
            // Gaussian draws, orthogonalised per gate block below.
            let w_hh = lb.param_with(
                "w_hh",
                &[4 * h, h],
                ParamRole::Recurrent,
                Init::Normal { std: 1.0 },
            )?;
            let bias = lb.param_with("bias", &[4 * h], ParamRole::Bias, Init::Zeros)?;
            let norm = if cfg.layer_norm {
                Some(LayerNorm::new(
                    &LayerNormConfig::default(),
                    h,
                    &lb.pp("norm"),
                )?)
            } else {
                None
            };
            layers.push(Layer {
                w_ih,
                w_hh,
                bias,
                norm,
            });
        }
        let proj = if h != d {
            Some(
                pb.pp("proj")
                    .param_with("weight", &[d, h], ParamRole::Other, xavier(h, d))?,
            )
        } else {
            None
        };
        let out_bias = if cfg.output_bias {
            Some(pb.param_with("out_bias", &[vocab_size], ParamRole::Bias, Init::Zeros)?)
        } else {
            None
        };
        let params = pb.finish();
        Ok(Self {
            cfg: cfg.clone(),
            vocab_size,
            embed,
            layers,
            proj,
            out_bias,
            params,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed ^ 0x6c73_746d_5f64_726f)),
            carry: Mutex::new(None),
        })
    }

    pub fn config(&self) -> &LstmConfig {
        &self.cfg
    }

    /// The state the next training call starts from with
    /// `carry_state = "across_batches"`: per layer [h | c] (B, 2H), detached;
    /// `None` before the first training call (zero state).
    pub fn carried_state(&self) -> Option<Vec<Tensor>> {
        self.carry.lock().unwrap().clone()
    }

    /// Replaces the carried state (`None`: zero state), e.g. to restore it
    /// with a checkpoint. Each tensor must be (B, 2H), one per layer.
    pub fn set_carried_state(&self, state: Option<Vec<Tensor>>) -> Result<()> {
        if let Some(st) = &state {
            let h = self.cfg.hidden_size();
            if st.len() != self.layers.len()
                || st
                    .iter()
                    .any(|t| t.dims().len() != 2 || t.dims()[1] != 2 * h)
            {
                return Err(candle_core::Error::Msg(format!(
                    "carried LSTM state: expected {} tensors of shape (batch, {}), one [h | c] per layer",
                    self.layers.len(),
                    2 * h
                )));
            }
        }
        *self.carry.lock().unwrap() = state.map(|v| v.iter().map(|t| t.detach()).collect());
        Ok(())
    }

    /// The initial state of each layer for a call on `b` rows: the carried
    /// one in training with `across_batches` when its batch size matches,
    /// zero otherwise (`None` entries).
    fn initial_state(&self, b: usize, train: bool) -> Vec<Option<(Tensor, Tensor)>> {
        let n = self.layers.len();
        if !(train && self.cfg.carry_state == CarryState::AcrossBatches) {
            return vec![None; n];
        }
        let h = self.cfg.hidden_size();
        match &*self.carry.lock().unwrap() {
            Some(st) if st.len() == n && st.iter().all(|t| t.dims() == [b, 2 * h]) => st
                .iter()
                .map(|t| {
                    let hs = t.narrow(1, 0, h).ok()?.contiguous().ok()?;
                    let cs = t.narrow(1, h, h).ok()?.contiguous().ok()?;
                    Some((hs, cs))
                })
                .collect(),
            _ => vec![None; n],
        }
    }

    /// Stores the final states of a training call when they are carried.
    fn store_final_state(&self, train: bool, finals: Vec<Tensor>) {
        if train && self.cfg.carry_state == CarryState::AcrossBatches {
            *self.carry.lock().unwrap() = Some(finals.iter().map(|t| t.detach()).collect());
        }
    }

    /// An inverted-dropout mask of `shape` (kept entries 1/(1 − p), dropped 0).
    fn mask(&self, p: f64, shape: (usize, usize), like: &Tensor) -> Result<Tensor> {
        let n = shape.0 * shape.1;
        let keep = 1.0 / (1.0 - p);
        let mut rng = self.rng.lock().unwrap();
        let v: Vec<f64> = (0..n)
            .map(|_| if rng.random::<f64>() < p { 0.0 } else { keep })
            .collect();
        Tensor::from_vec(v, shape, like.device())?.to_dtype(like.dtype())
    }

    /// Runs one layer over one TBPTT window as a candle time loop: one fused
    /// cell op per step with the `cell` kernel on the CPU, plain candle ops
    /// otherwise (the `window` kernel never comes here: [`LanguageModel::hidden`]
    /// runs it as one op per layer over all windows).
    ///
    /// `x`: (T_w, B, d_in) time-major input; `state`: (h, c) each (B, H);
    /// `mask_h`: hidden-dropout mask (B, H). Returns the raw outputs
    /// (T_w, B, H) and the final state (not detached).
    pub fn layer_window(
        &self,
        l: usize,
        x: &Tensor,
        state: (Tensor, Tensor),
        mask_h: Option<&Tensor>,
    ) -> Result<(Tensor, (Tensor, Tensor))> {
        let layer = &self.layers[l];
        let (tw, b, d_in) = x.dims3()?;
        let h = self.cfg.hidden_size();
        // One matmul for the whole window: (T_w·B, d_in)·(d_in, 4H) + b.
        let xp = algoprog_nn::linear(&x.reshape((tw * b, d_in))?, &layer.w_ih, Some(&layer.bias))?;
        // the fused cell op is CPU code: other devices run the composite cell
        let fused_cell = x.device().is_cpu() && self.cfg.kernel == LstmKernel::Cell;
        let w_hh_t = layer.w_hh.t()?;
        let (mut hs, mut cs) = state;
        let mut outs = Vec::with_capacity(tw);
        for t in 0..tw {
            let hin = match mask_h {
                Some(m) => (&hs * m)?,
                None => hs.clone(),
            };
            let gates = (xp.narrow(0, t * b, b)? + hin.matmul(&w_hh_t)?)?;
            let (hn, cn) = if fused_cell {
                let hc = gates.apply_op2(&cs, LstmCell)?;
                (hc.narrow(1, 0, h)?, hc.narrow(1, h, h)?)
            } else {
                lstm_cell_composite(&gates, &cs)?
            };
            outs.push(hn.clone());
            hs = hn;
            cs = cn;
        }
        Ok((Tensor::stack(&outs, 0)?, (hs, cs)))
    }

    /// Layer `l`'s norm and output dropout applied to its raw outputs.
    fn layer_output(&self, l: usize, out: Tensor, mask_o: Option<&Tensor>) -> Result<Tensor> {
        let y = match &self.layers[l].norm {
            Some(norm) => norm.forward(&out)?,
            None => out,
        };
        match mask_o {
            Some(m) => y.broadcast_mul(m),
            None => Ok(y),
        }
    }

    /// All layers window by window (the `cell` and `composite` kernels, and
    /// any kernel off the CPU): x (T, B, d) → (T, B, H), the state detached
    /// between windows.
    fn windows_by_layer(
        &self,
        x: Tensor,
        init: Vec<(Tensor, Tensor)>,
        mask_h: &[Option<Tensor>],
        mask_o: &[Option<Tensor>],
    ) -> Result<(Tensor, Vec<Tensor>)> {
        let (t, n) = (x.dim(0)?, self.layers.len());
        let mut state = init;
        let mut windows = Vec::new();
        let mut start = 0;
        while start < t {
            let len = self.cfg.tbptt_len.min(t - start);
            let mut y = x.narrow(0, start, len)?;
            for l in 0..n {
                // Detach at the window boundary: no gradient flows into earlier windows.
                let (h0, c0) = (state[l].0.detach(), state[l].1.detach());
                let (out, st) = self.layer_window(l, &y, (h0, c0), mask_h[l].as_ref())?;
                state[l] = st;
                y = self.layer_output(l, out, mask_o[l].as_ref())?;
            }
            windows.push(y);
            start += len;
        }
        let finals = state
            .iter()
            .map(|(h, c)| Tensor::cat(&[h.detach(), c.detach()], 1))
            .collect::<Result<Vec<_>>>()?;
        let y = if windows.len() == 1 {
            windows.pop().unwrap()
        } else {
            Tensor::cat(&windows, 0)?
        };
        Ok((y, finals))
    }
}

impl LanguageModel for Lstm {
    /// The same model over detached parameters: evaluation records no graph
    /// (dropout is off in evaluation, so the view's own mask stream is unused).
    fn eval_view(&self) -> Option<Box<dyn LanguageModel>> {
        let pb = ParamBuilder::view_of(&self.params, self.embed.device(), self.embed.dtype());
        Lstm::from_builder(&self.cfg, self.vocab_size, &pb, 0)
            .ok()
            .map(|m| Box::new(m) as Box<dyn LanguageModel>)
    }

    fn hidden(&self, tokens: &Tensor, train: bool) -> Result<Tensor> {
        let (b, t) = tokens.dims2()?;
        if t > self.cfg.max_seq_len {
            return Err(candle_core::Error::Msg(format!(
                "sequence of {t} tokens is longer than model.max_seq_len = {}: raise model.max_seq_len",
                self.cfg.max_seq_len
            )));
        }
        let (d, h) = (self.cfg.d_model, self.cfg.hidden_size());
        let ids = tokens.to_dtype(DType::U32)?.t()?.flatten_all()?;
        // time-major (T, B, d)
        let mut x = self.embed.index_select(&ids, 0)?.reshape((t, b, d))?;
        let active = |p: f64| train && p > 0.0;
        if active(self.cfg.dropout_input) {
            x = x.broadcast_mul(
                &self
                    .mask(self.cfg.dropout_input, (b, d), &x)?
                    .unsqueeze(0)?,
            )?;
        }
        let n = self.layers.len();
        let mut mask_h = Vec::with_capacity(n);
        let mut mask_o = Vec::with_capacity(n);
        for _ in 0..n {
            mask_h.push(if active(self.cfg.dropout_hidden) {
                Some(self.mask(self.cfg.dropout_hidden, (b, h), &x)?)
            } else {
                None
            });
            mask_o.push(if active(self.cfg.dropout_output) {
                Some(
                    self.mask(self.cfg.dropout_output, (b, h), &x)?
                        .unsqueeze(0)?,
                )
            } else {
                None
            });
        }
        let zeros = Tensor::zeros((b, h), x.dtype(), x.device())?;
        // zero state, or the state carried from the previous training call
        let init: Vec<(Tensor, Tensor)> = self
            .initial_state(b, train)
            .into_iter()
            .map(|s| s.unwrap_or_else(|| (zeros.clone(), zeros.clone())))
            .collect();
        let carrying = train && self.cfg.carry_state == CarryState::AcrossBatches;
        // time-major (T, B, H) output of the last layer
        let (y, finals) = if self.cfg.kernel == LstmKernel::Window && x.device().is_cpu() {
            // One op per layer over all windows (state carried, gradient cut at
            // each window boundary inside the op): no per-window narrow/cat.
            let mut y = x;
            let mut finals = Vec::new();
            for (l, (layer, (h0, c0))) in self.layers.iter().zip(init).enumerate() {
                let xp = algoprog_nn::linear(&y, &layer.w_ih, Some(&layer.bias))?;
                let mask = match &mask_h[l] {
                    Some(m) => m.clone(),
                    None => Tensor::ones((b, h), y.dtype(), y.device())?,
                };
                let s0 = Tensor::cat(&[&h0, &c0, &mask], 1)?;
                let op = LstmWindow::with_tbptt(self.cfg.tbptt_len);
                let out = xp.apply_op3(&layer.w_hh, &s0, op.clone())?;
                if carrying {
                    // [h_T | c_T] of this layer, read from the op's saved buffer
                    finals.push(op.final_state()?.ok_or_else(|| {
                        candle_core::Error::Msg(
                            "lstm window: no final state after the forward".into(),
                        )
                    })?);
                }
                y = self.layer_output(l, out, mask_o[l].as_ref())?;
            }
            (y, finals)
        } else {
            self.windows_by_layer(x, init, &mask_h, &mask_o)?
        };
        if carrying {
            self.store_final_state(train, finals);
        }
        let y = match &self.proj {
            Some(p) => algoprog_nn::linear(&y, p, None)?,
            None => y,
        };
        // back to batch-major (B, T, d)
        y.transpose(0, 1)?.contiguous()
    }
    fn output_weight(&self) -> &Tensor {
        &self.embed
    }
    fn output_bias(&self) -> Option<&Tensor> {
        self.out_bias.as_ref()
    }
    fn vocab_size(&self) -> usize {
        self.vocab_size
    }
    fn d_model(&self) -> usize {
        self.cfg.d_model
    }
    fn param_counts(&self) -> ParamCounts {
        self.cfg.param_counts(self.vocab_size)
    }
    fn flops(&self, seq_len: usize) -> FlopReport {
        self.cfg.flops(self.vocab_size, seq_len)
    }
    fn params(&self) -> &ParamStore {
        &self.params
    }
    /// The carried state as `carry.{l}` (B, 2H) = [h | c] of layer l; empty
    /// when nothing is carried (zero state, or `within_sequence`).
    fn extra_state(&self) -> Vec<(String, Tensor)> {
        self.carried_state()
            .map(|v| {
                v.into_iter()
                    .enumerate()
                    .map(|(l, t)| (format!("carry.{l}"), t))
                    .collect()
            })
            .unwrap_or_default()
    }
    fn set_extra_state(&self, state: &[(String, Tensor)]) -> Result<()> {
        if state.is_empty() {
            return self.set_carried_state(None);
        }
        let device = self.embed.device();
        let mut layers = Vec::with_capacity(state.len());
        for l in 0..state.len() {
            let key = format!("carry.{l}");
            let t = state
                .iter()
                .find(|(n, _)| *n == key)
                .map(|(_, t)| t)
                .ok_or_else(|| {
                    candle_core::Error::Msg(format!(
                        "carried LSTM state: missing `{key}` (names are carry.0 .. carry.{})",
                        state.len() - 1
                    ))
                })?;
            layers.push(t.to_device(device)?.to_dtype(self.embed.dtype())?);
        }
        self.set_carried_state(Some(layers))
    }
}
