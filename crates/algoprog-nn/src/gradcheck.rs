//! Finite-difference gradient checks (use f64).
//!
//! [`check`] compares the analytic gradient of a scalar loss with central
//! differences g_fd = (L(θ + h) − L(θ − h)) / 2h for every element of every
//! variable given. The error of element i of variable v is
//! |g_fd − g_an| / (|g_fd| + |g_an| + 10⁻³·max_j |g_fd,j| + 10⁻⁹),
//! the max over v's elements in the floor: entries whose true gradient is
//! zero (e.g. key biases, to which softmax is invariant) or tiny compared
//! with the rest of the variable are judged against the variable's scale
//! instead of against rounding noise.

use candle_core::{DType, Result, Tensor, Var};

/// Result of a gradient check.
#[derive(Clone, Debug)]
pub struct GradCheck {
    /// Largest error over all elements (see the module docs).
    pub max_rel_err: f64,
    /// Index in `vars` and flat element index of the worst entry.
    pub worst: (usize, usize),
    /// Number of elements checked.
    pub checked: usize,
    /// Largest |g_an| seen (a check on all-zero gradients proves nothing).
    pub max_abs_grad: f64,
    /// (finite difference, analytic) at the worst entry.
    pub worst_values: (f64, f64),
}

/// Checks d loss / d var for every element of `vars` (f64 variables).
/// `loss` must recompute the scalar loss from the current variable values.
pub fn check(vars: &[Var], loss: &dyn Fn() -> Result<Tensor>, h: f64) -> Result<GradCheck> {
    let l = loss()?;
    let grads = l.backward()?;
    let mut out = GradCheck {
        max_rel_err: 0.0,
        worst: (0, 0),
        checked: 0,
        max_abs_grad: 0.0,
        worst_values: (0.0, 0.0),
    };
    let set = |v: &Var, x: &[f64]| -> Result<()> {
        v.set(&Tensor::from_vec(x.to_vec(), v.shape(), v.device())?.to_dtype(v.dtype())?)
    };
    for (vi, v) in vars.iter().enumerate() {
        let an: Vec<f64> = match grads.get(v.as_tensor()) {
            Some(g) => g.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?,
            None => vec![0.0; v.elem_count()],
        };
        let orig: Vec<f64> = v
            .as_tensor()
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1()?;
        let mut fd = vec![0.0; orig.len()];
        for i in 0..orig.len() {
            let mut x = orig.clone();
            x[i] = orig[i] + h;
            set(v, &x)?;
            let lp = loss()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            x[i] = orig[i] - h;
            set(v, &x)?;
            let lm = loss()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            fd[i] = (lp - lm) / (2.0 * h);
        }
        set(v, &orig)?;
        let scale = fd.iter().fold(0f64, |m, x| m.max(x.abs()));
        for i in 0..orig.len() {
            let err = (fd[i] - an[i]).abs() / (fd[i].abs() + an[i].abs() + 1e-3 * scale + 1e-9);
            if err > out.max_rel_err {
                out.max_rel_err = err;
                out.worst = (vi, i);
                out.worst_values = (fd[i], an[i]);
            }
            out.max_abs_grad = out.max_abs_grad.max(an[i].abs());
            out.checked += 1;
        }
    }
    Ok(out)
}
