//! algoprog-kernels: fused CPU kernels on plain `f32` slices.
//!
//! Each kernel has a forward and a backward pass and is tested against a
//! naive f64 composition and against finite differences. The candle
//! custom ops that expose them to autograd live in `algoprog_nn::fused`;
//! this crate depends on no tensor library, so it builds in seconds and a
//! user can call the kernels from their own code.
//!
//! | module | forward | backward |
//! |---|---|---|
//! | [`ce`] | chunked cross-entropy over a (tied) output matrix, never materialising the full logits | computed in the same pass |
//! | [`attention`] | causal softmax attention per (batch, head), optional ALiBi slopes | recomputes the probabilities from the saved log-sum-exp |
//! | [`norm`] | LayerNorm / RMSNorm over the last dimension | one pass per row plus a column reduction for the gains |
//! | [`act`] | GeLU (erf and tanh), SiLU·gate (SwiGLU), GeLU·gate (GeGLU) | element-wise |
//! | [`adamw`] | in-place AdamW update | — |
//!
//! Matmuls go through the `gemm` crate, which picks the widest SIMD the CPU
//! has at run time (AVX-512 when the `x86-v4` feature is on and the CPU has
//! it, else AVX2/FMA, else scalar), so one binary runs everywhere.

pub mod act;
pub mod adamw;
pub mod attention;
pub mod ce;
pub mod math;
pub mod linear;
pub mod matmul;
pub mod norm;
