//! Components defined outside algoprog's crates.
//!
//! 1. An activation: implement [`algoprog_nn::Activation`] (a `Default`
//!    type with `forward` and its FLOPs per element); `Mlp<A>` and
//!    `GatedFeedForward<A>` then accept it as a feed-forward.
//! 2. A schedule: implement [`algoprog_nn::LrSchedule`].
//! 3. Name the new type in the model: `Transformer<Rotary, Mlp<SquaredRelu>, RmsNorm>`.

use algoprog_models::{LanguageModel, Transformer, TransformerSpec};
use algoprog_nn::{cross_entropy, Activation, LrSchedule, Mlp, OptimizerConfig, RmsNorm, Rotary};
use candle_core::{DType, Device, Result, Tensor};
use rand::{Rng, SeedableRng};

/// Squared ReLU: max(x, 0)². FLOPs per element: 2 (max, square).
#[derive(Clone, Copy, Debug, Default)]
pub struct SquaredRelu;

impl Activation for SquaredRelu {
    const NAME: &'static str = "squared_relu";
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.relu()?.sqr()
    }
    fn flops_per_element(&self) -> f64 {
        2.0
    }
}

/// Step decay: lr = η·γ^⌊s / k⌋ (γ = `factor`, k = `every` steps).
#[derive(Clone, Copy, Debug)]
pub struct StepDecay {
    pub every: usize,
    pub factor: f64,
}

impl LrSchedule for StepDecay {
    fn lr(&self, step: usize, _total: usize, peak: f64) -> f64 {
        peak * self.factor.powi((step / self.every.max(1)) as i32)
    }
}

/// The model with the custom activation.
pub type SquaredReluTransformer = Transformer<Rotary, Mlp<SquaredRelu>, RmsNorm>;

/// d = 32, 2 layers, head dim 16, sequence length ≤ 32.
pub fn spec() -> TransformerSpec<Rotary, Mlp<SquaredRelu>, RmsNorm> {
    TransformerSpec {
        max_seq_len: 32,
        ..TransformerSpec::new(32)
    }
}

pub const VOCAB: usize = 64;

/// One fixed batch (4 × 17) of uniformly random token ids.
pub fn random_batch(seed: u64) -> Result<Tensor> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<u32> = (0..4 * 17)
        .map(|_| rng.random_range(0..VOCAB as u32))
        .collect();
    Tensor::from_vec(v, (4, 17), &Device::Cpu)
}

/// Mean next-token cross-entropy of `model` on `batch` (b, T+1).
pub fn loss(model: &dyn LanguageModel, batch: &Tensor) -> Result<Tensor> {
    let (b, t1) = batch.dims2()?;
    let x = batch.narrow(1, 0, t1 - 1)?;
    let y = batch.narrow(1, 1, t1 - 1)?.flatten_all()?;
    let h = model
        .hidden(&x, true)?
        .reshape((b * (t1 - 1), model.d_model()))?;
    cross_entropy(&h, model.output_weight(), &y)
}

/// Trains for `steps` AdamW steps with [`StepDecay`] on one random batch;
/// returns the loss before each step and after the last one.
pub fn train(steps: usize, seed: u64) -> Result<Vec<f32>> {
    let model = SquaredReluTransformer::new(&spec(), VOCAB, seed, &Device::Cpu, DType::F32)?;
    let batch = random_batch(seed)?;
    let mut opt = OptimizerConfig::adam_w().build(model.params())?;
    let schedule = StepDecay {
        every: 20,
        factor: 0.5,
    };
    let mut losses = Vec::with_capacity(steps + 1);
    for s in 0..steps {
        let l = loss(&model, &batch)?;
        losses.push(l.to_scalar::<f32>()?);
        let grads = l.backward()?;
        opt.step(&grads, schedule.lr(s, steps, 1e-2))?;
    }
    losses.push(loss(&model, &batch)?.to_scalar::<f32>()?);
    Ok(losses)
}
