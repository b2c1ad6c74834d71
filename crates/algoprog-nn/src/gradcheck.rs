//! Finite-difference gradient checks (use f64).
//!
//! [`check`] compares the analytic gradient of a scalar loss with central
//! differences (L(θ + h) − L(θ − h)) / 2h for every element of every
//! variable given, and returns the worst symmetric relative error
//! |g_fd − g_an| / (|g_fd| + |g_an| + 1e-6).

use candle_core::{DType, Result, Tensor, Var};

/// Result of a gradient check.
#[derive(Clone, Debug)]
pub struct GradCheck {
    /// Largest |g_fd − g_an| / (|g_fd| + |g_an| + 1e-6) over all elements.
    pub max_rel_err: f64,
    /// Index in `vars` and flat element index of the worst entry.
    pub worst: (usize, usize),
    /// Number of elements checked.
    pub checked: usize,
    /// Largest |g_an| seen (a check on all-zero gradients proves nothing).
    pub max_abs_grad: f64,
}

/// Checks d loss / d var for every element of `vars` (f64 variables).
/// `loss` must recompute the scalar loss from the current variable values.
pub fn check(vars: &[Var], loss: &dyn Fn() -> Result<Tensor>, h: f64) -> Result<GradCheck> {
    let l = loss()?;
    let grads = l.backward()?;
    let mut out = GradCheck { max_rel_err: 0.0, worst: (0, 0), checked: 0, max_abs_grad: 0.0 };
    for (vi, v) in vars.iter().enumerate() {
        let an: Vec<f64> = match grads.get(v.as_tensor()) {
            Some(g) => g.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?,
            None => vec![0.0; v.elem_count()],
        };
        let orig: Vec<f64> = v.as_tensor().to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        for i in 0..orig.len() {
            let mut x = orig.clone();
            x[i] = orig[i] + h;
            v.set(&Tensor::from_vec(x.clone(), v.shape(), v.device())?.to_dtype(v.dtype())?)?;
            let lp = loss()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            x[i] = orig[i] - h;
            v.set(&Tensor::from_vec(x, v.shape(), v.device())?.to_dtype(v.dtype())?)?;
            let lm = loss()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            let fd = (lp - lm) / (2.0 * h);
            let err = (fd - an[i]).abs() / (fd.abs() + an[i].abs() + 1e-6);
            if err > out.max_rel_err {
                out.max_rel_err = err;
                out.worst = (vi, i);
            }
            out.max_abs_grad = out.max_abs_grad.max(an[i].abs());
            out.checked += 1;
        }
        v.set(&Tensor::from_vec(orig, v.shape(), v.device())?.to_dtype(v.dtype())?)?;
    }
    Ok(out)
}
