//! Matmul precision: f32, or bf16 products with f32 everywhere else.
//!
//! With bf16 on (a per-thread setting, so concurrent runs in one process do
//! not affect each other), [`crate::linear`] and the output layer of
//! [`crate::cross_entropy`] multiply in bf16 and return f32: parameters,
//! optimiser state, norms, softmax, attention scores and the loss stay f32,
//! the "where safe" split of mixed-precision training. It is meant for GPUs
//! (`precision = "bf16"` with `device = "cuda"` in a run config); the fused
//! CPU kernels ignore it and stay f32.

use candle_core::{DType, Result, Tensor};
use std::cell::Cell;

thread_local! {
    static BF16: Cell<bool> = const { Cell::new(false) };
}

/// Turns bf16 matmuls on or off for this thread; returns the previous setting.
pub fn set_matmul_bf16(on: bool) -> bool {
    BF16.with(|c| c.replace(on))
}

/// Whether this thread multiplies in bf16.
pub fn matmul_bf16() -> bool {
    BF16.with(|c| c.get())
}

/// a·b, in bf16 when this thread asks for it and the inputs are f32 (the
/// result is cast back to f32, so gradients flow in f32 to f32 parameters).
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if matmul_bf16() && a.dtype() == DType::F32 && b.dtype() == DType::F32 {
        return a
            .to_dtype(DType::BF16)?
            .matmul(&b.to_dtype(DType::BF16)?)?
            .to_dtype(DType::F32);
    }
    a.matmul(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn bf16_matmul_is_close_to_f32_and_per_thread() {
        let dev = Device::Cpu;
        let a = Var::from_tensor(&Tensor::randn(0f32, 1.0, (16, 32), &dev).unwrap()).unwrap();
        let b = Tensor::randn(0f32, 1.0, (32, 8), &dev).unwrap();
        let exact = matmul(a.as_tensor(), &b).unwrap();
        assert!(!set_matmul_bf16(true));
        // another thread still multiplies in f32
        let other = std::thread::scope(|s| s.spawn(matmul_bf16).join().unwrap());
        assert!(!other);
        let low = matmul(a.as_tensor(), &b).unwrap();
        assert!(set_matmul_bf16(false));
        assert_eq!(low.dtype(), DType::F32);
        let err = (&low - &exact)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let scale = exact
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        // bf16 keeps 8 significant bits: errors of about 2⁻⁸ relative, never 0 here
        assert!(
            err > 0.0 && err < 0.02 * scale,
            "bf16 error {err} vs scale {scale}"
        );
        // the gradient reaches the f32 parameter in f32
        set_matmul_bf16(true);
        let g = matmul(a.as_tensor(), &b)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        set_matmul_bf16(false);
        assert_eq!(g.get(a.as_tensor()).unwrap().dtype(), DType::F32);
    }
}
