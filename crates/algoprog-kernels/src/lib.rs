//! algoprog-kernels: fused CPU kernels on plain `f32` slices (the LSTM's on `f64` too).
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
//! | [`ffn`] | a feed-forward block (linear, activation or gated activation, linear) in blocks of rows, keeping only the pre-activation | recomputes the activation per block; weight gradients summed per fixed group of rows |
//! | [`lstm`] | an LSTM layer over TBPTT windows (f32 or f64): per-step recurrent matmul and gates | backpropagation through time, the gradient cut at window boundaries |
//! | [`rowmm`] | register-blocked products C (+)= alpha·op(A)·B for narrow matrices (B and op(A) read in place), AVX-512 | — |
//! | [`small_mm`] | few-row products C (+)= A·B (the LSTM's time loop): `rowmm`, or `gemm` without AVX-512 | — |
//! | [`adamw`] | in-place AdamW update | — |
//!
//! Matmuls go through [`matmul::matmul`]: the `gemm` crate, which picks the
//! widest SIMD the CPU has at run time (AVX-512 when the `x86-v4` feature is
//! on and the CPU has it, else AVX2/FMA, else scalar), or on AVX-512 CPUs
//! [`rowmm`] for the narrow shapes where it measured faster
//! ([`rowmm::suits`]). Inside an attention pair with 16-dim heads and in the
//! LSTM's time loop the small products are register-blocked AVX-512 loops of
//! this crate (`attn_small`, [`small_mm`]). One binary runs everywhere.

pub mod act;
pub mod adamw;
pub mod attention;
mod attn_small;
pub mod buffer;
pub mod ce;
pub mod ffn;
pub mod linear;
pub mod lstm;
pub mod math;
pub mod matmul;
pub mod norm;
pub mod rowmm;
pub mod small_mm;

/// A raw pointer shared by parallel tasks that each write a disjoint part of
/// one buffer (rows of an output, say). Creating one is safe; every write
/// through [`SharedMut::get`] is `unsafe` and its caller shows the parts
/// are disjoint and inside the buffer, which outlives the tasks.
#[derive(Debug)]
pub struct SharedMut<T>(*mut T);

impl<T> Clone for SharedMut<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SharedMut<T> {}
// SAFETY: the pointer is only written through by tasks writing disjoint parts
// (the contract above), so sharing it across threads races on nothing.
unsafe impl<T: Send> Send for SharedMut<T> {}
unsafe impl<T: Send> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    pub fn new(buf: &mut [T]) -> Self {
        Self(buf.as_mut_ptr())
    }
    pub fn get(self) -> *mut T {
        self.0
    }
}

#[cfg(test)]
/// A deterministic test input: `len` values in about ±504/`div`, spread
/// over 1009 levels and shifted by `seed`.
pub(crate) fn test_data(len: usize, seed: usize, div: f32) -> Vec<f32> {
    (0..len)
        .map(|i| (((i * 7919 + seed * 104729) % 1009) as f32 - 504.0) / div)
        .collect()
}

#[cfg(test)]
/// max(m, e), but NaN when either is NaN (`f64::max` skips a NaN): the fold
/// of the tests' error measures, so that a NaN never passes a `< tol` check.
pub(crate) fn max_or_nan(m: f64, e: f64) -> f64 {
    if m.is_nan() || e.is_nan() {
        f64::NAN
    } else {
        m.max(e)
    }
}
