//! Fused kernels as candle ops with their own backward passes.
//!
//! Each op runs an [`algoprog_kernels`] kernel when its inputs are f32 on the
//! CPU, and otherwise (a GPU, another dtype) falls back to the composite
//! candle ops it replaces, so every model runs on every device. The
//! composite versions stay the reference: each fused op has a test that its
//! values and gradients match them, and a finite-difference gradient test.
//! The LSTM's ops ([`lstm`]) are the exception: the model picks them through
//! its `kernel` setting, and they also take f64.
//!
//! Set `ALGOPROG_FUSED=0` to turn every fused path off (the A/B switch the
//! throughput benchmark uses for its "before" column).

pub mod act;
pub mod adamw;
pub mod attention;
pub mod ce;
pub mod ffn;
pub mod linear;
pub mod lstm;
pub mod norm;
pub mod rotary;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, Layout, Result, Tensor};
use std::sync::OnceLock;

/// Whether fused kernels are on (`ALGOPROG_FUSED` unset or not `0`).
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var("ALGOPROG_FUSED")
            .map(|v| v.trim() != "0")
            .unwrap_or(true)
    })
}

/// True when `t` can take a fused CPU path: fused kernels on, f32, CPU.
pub fn fusable(t: &Tensor) -> bool {
    enabled() && t.device().is_cpu() && t.dtype() == candle_core::DType::F32
}

/// The f32 elements of a contiguous CPU tensor view, or an error naming `what`.
pub(crate) fn slice_f32<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    // In this crate's unit tests every fused op's output buffers start as NaN,
    // so a kernel that leaves an element unwritten fails its comparison with
    // the composite twin (see `algoprog_kernels::buffer`).
    #[cfg(test)]
    algoprog_kernels::buffer::poison_outputs();
    let data = storage_f32(s, what)?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => {
            candle_core::bail!("fused {what}: input is not contiguous (call .contiguous() first)")
        }
    }
}

/// [`slice_f32`] for an op that writes in place.
pub(crate) fn slice_f32_mut<'a>(
    s: &'a mut CpuStorage,
    l: &Layout,
    what: &str,
) -> Result<&'a mut [f32]> {
    let Some((a, b)) = l.contiguous_offsets() else {
        candle_core::bail!("fused {what}: input is not contiguous (call .contiguous() first)")
    };
    match s {
        CpuStorage::F32(v) => Ok(&mut v[a..b]),
        other => candle_core::bail!("fused {what}: expected f32, got {:?}", other.dtype()),
    }
}

/// All f32 elements of a CPU storage (strided views index into it), or an
/// error naming `what`.
pub(crate) fn storage_f32<'a>(s: &'a CpuStorage, what: &str) -> Result<&'a [f32]> {
    match s {
        CpuStorage::F32(v) => Ok(v.as_slice()),
        other => candle_core::bail!("fused {what}: expected f32, got {:?}", other.dtype()),
    }
}

/// A new f32 CPU tensor of `shape` from `data`.
pub(crate) fn tensor_f32(data: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
    Tensor::from_vec(data, shape, &candle_core::Device::Cpu)
}
