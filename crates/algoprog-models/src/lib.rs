//! algoprog-models: architectures for algorithmic-progress studies.
//!
//! Every architecture implements [`LanguageModel`], the one seam the trainer,
//! the FLOP ledger, run records and the CLI rely on.

use candle_core::{Result, Tensor};
use serde::{Deserialize, Serialize};

/// Parameter counts, split the way scaling-law work needs them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamCounts {
    /// Token (and learned positional) embedding parameters, and the output
    /// layer's: an untied output matrix and the output bias. With tied
    /// embeddings the output matrix is this same matrix and is counted once.
    pub embedding: usize,
    /// Everything else: attention, feed-forward, norms, recurrent weights, biases.
    pub non_embedding: usize,
}

impl ParamCounts {
    pub fn total(&self) -> usize {
        self.embedding + self.non_embedding
    }
}

/// FLOPs of one model per token, under several conventions.
///
/// The primary convention is the one a profiler that counts matmuls reports:
/// a matmul of (m×k)·(k×n) costs 2·m·n·k, backward costs twice the forward.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FlopReport {
    /// Sequence length the per-token numbers were computed for.
    pub seq_len: usize,
    /// Forward FLOPs per token summed from the components (output layer included).
    pub forward_per_token: f64,
    /// Training FLOPs per token: forward + backward = 3 × forward.
    pub train_per_token: f64,
    /// 6·N per token with N the non-embedding parameter count (Kaplan et al. 2020).
    pub six_n_per_token: f64,
    /// Training FLOPs per token by the Chinchilla appendix-F formula (Hoffmann et al. 2022),
    /// when the architecture has one (Transformers); 0 otherwise.
    pub chinchilla_per_token: f64,
    /// Forward FLOPs per token by component, e.g. ("attention.qkv", x); sums to `forward_per_token`.
    pub breakdown: Vec<(String, f64)>,
}

/// A causal language model over token ids.
pub trait LanguageModel: Send + Sync {
    /// Final hidden states, shape (batch, seq, d_model), for token ids of
    /// shape (batch, seq) and dtype u32. `train` switches dropout on.
    fn hidden(&self, tokens: &Tensor, train: bool) -> Result<Tensor>;

    /// Output projection (vocab, d_model): logits = hidden · Wᵀ (+ b). Tied
    /// models return their embedding matrix.
    fn output_weight(&self) -> &Tensor;

    /// The output layer's trained bias b (vocab), when the model has one:
    /// logits = hidden · Wᵀ + b. Losses pass it to
    /// [`algoprog_nn::cross_entropy_with_bias`].
    fn output_bias(&self) -> Option<&Tensor> {
        None
    }

    /// Logits of shape (batch, seq, vocab), the output bias included.
    fn logits(&self, tokens: &Tensor, train: bool) -> Result<Tensor> {
        let h = self.hidden(tokens, train)?;
        let (b, t, d) = h.dims3()?;
        let w = self.output_weight();
        let z = h.reshape((b * t, d))?.matmul(&w.t()?)?;
        let z = match self.output_bias() {
            Some(bias) => z.broadcast_add(bias)?,
            None => z,
        };
        z.reshape((b, t, w.dim(0)?))
    }

    /// Mean next-token loss (nats) of hidden states (n, d_model) against
    /// targets (n,): cross-entropy through the output layer, bias included.
    fn loss(&self, hidden: &Tensor, targets: &Tensor) -> Result<Tensor> {
        algoprog_nn::cross_entropy_with_bias(
            hidden,
            self.output_weight(),
            self.output_bias(),
            targets,
        )
    }

    fn vocab_size(&self) -> usize;
    fn d_model(&self) -> usize;
    fn param_counts(&self) -> ParamCounts;
    fn flops(&self, seq_len: usize) -> FlopReport;
    /// The same model over detached views of its parameters (sharing their
    /// storage, so optimiser updates show through), for evaluation without
    /// building an autograd graph. `None` when an architecture has no view;
    /// callers then evaluate the model itself.
    fn eval_view(&self) -> Option<Box<dyn LanguageModel>> {
        None
    }

    /// Every trainable parameter with its name and role (names are the safetensors keys).
    fn params(&self) -> &algoprog_nn::ParamStore;

    /// State outside the parameters that training carries from one call to
    /// the next (named tensors, saved with a checkpoint so a resumed run
    /// continues bit-for-bit), e.g. the LSTM's carried (h, c). Default: none.
    fn extra_state(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    /// Restores what [`LanguageModel::extra_state`] returned (an empty list:
    /// the model's initial state). Default: accepts only an empty list.
    fn set_extra_state(&self, state: &[(String, Tensor)]) -> Result<()> {
        match state.first() {
            None => Ok(()),
            Some((name, _)) => Err(candle_core::Error::Msg(format!(
                "model state `{name}`: this model keeps no state outside its parameters"
            ))),
        }
    }
}

pub mod config;
pub mod lstm;
pub mod transformer;

pub use algoprog_nn::ConfigError;
pub use config::{CustomModelConfig, DynTransformer, ModelConfig, TransformerConfig};
pub use lstm::{CarryState, Lstm, LstmConfig, LstmKernel};
pub use transformer::{default_depth, Transformer, TransformerSpec};
