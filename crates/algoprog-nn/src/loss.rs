//! Linear layers, the language-model loss and gradient clipping.

use crate::params::ParamStore;
use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Tensor, D};

/// y = x·Wᵀ + b for x of shape (…, in) and W of shape (out, in).
/// FLOPs: 2·n·in·out matmul (+ n·out bias adds) for n rows.
///
/// f32 CPU tensors take the fused op ([`crate::fused::linear`]); others
/// [`linear_composite`].
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    if crate::fused::fusable(x) && crate::fused::fusable(w) {
        return crate::fused::linear::linear(x, w, b);
    }
    linear_composite(x, w, b)
}

/// [`linear`] from composite candle ops (the reference and the GPU path).
pub fn linear_composite(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let inp = *dims
        .last()
        .expect("linear input needs at least one dimension");
    let rows: usize = dims[..dims.len() - 1].iter().product();
    let y = crate::precision::matmul(&x.reshape((rows, inp))?, &w.t()?)?;
    let y = match b {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    };
    let mut out = dims;
    *out.last_mut().unwrap() = w.dim(0)?;
    y.reshape(out)
}

/// Mean negative log-likelihood in nats of `targets` under
/// softmax(hidden · Wᵀ), for hidden (n, d), output_weight (V, d), targets (n,) u32.
/// [`cross_entropy_with_bias`] with no bias.
pub fn cross_entropy(hidden: &Tensor, output_weight: &Tensor, targets: &Tensor) -> Result<Tensor> {
    cross_entropy_with_bias(hidden, output_weight, None, targets)
}

/// Mean negative log-likelihood in nats of `targets` under
/// softmax(hidden · Wᵀ + b), for hidden (n, d), output_weight (V, d), an
/// optional output bias b (V,) and targets (n,) u32.
///
/// loss = (1/n) Σᵢ [log Σ_v exp(zᵢᵥ − mᵢ) − (z_{i,yᵢ} − mᵢ)], z = hidden·Wᵀ + b,
/// mᵢ = maxᵥ zᵢᵥ (detached: the loss does not depend on it). Built from
/// composite ops (matmul, exp, sum, log, gather), all with a backward.
/// FLOPs: 2·n·V·d matmul plus about 4·n·V element-wise (n·V more for the bias).
/// The bias gradient is the column sums of (softmax − onehot)/n.
///
/// f32 CPU inputs take the fused chunked kernel ([`crate::fused::ce`]),
/// which never stores the n×V logits; other devices and dtypes (and
/// `ALGOPROG_FUSED=0`) use [`cross_entropy_composite`].
pub fn cross_entropy_with_bias(
    hidden: &Tensor,
    output_weight: &Tensor,
    output_bias: Option<&Tensor>,
    targets: &Tensor,
) -> Result<Tensor> {
    if crate::fused::fusable(hidden)
        && crate::fused::fusable(output_weight)
        && output_bias.is_none_or(crate::fused::fusable)
        && hidden.rank() == 2
    {
        return crate::fused::ce::cross_entropy(hidden, output_weight, output_bias, targets);
    }
    cross_entropy_composite(hidden, output_weight, output_bias, targets)
}

/// [`cross_entropy_with_bias`] from composite candle ops (the reference the
/// fused kernel is tested against; the path on GPUs and for f64).
pub fn cross_entropy_composite(
    hidden: &Tensor,
    output_weight: &Tensor,
    output_bias: Option<&Tensor>,
    targets: &Tensor,
) -> Result<Tensor> {
    let logits = crate::precision::matmul(hidden, &output_weight.t()?)?;
    let logits = match output_bias {
        Some(b) => logits.broadcast_add(&b.to_dtype(logits.dtype())?)?,
        None => logits,
    };
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let idx = targets.to_dtype(DType::U32)?.unsqueeze(1)?.contiguous()?;
    let picked = shifted.gather(&idx, D::Minus1)?;
    (lse - picked)?.mean_all()
}

/// Scales all gradients of `params` so their global L2 norm is at most
/// `max_norm` (PyTorch's `clip_grad_norm_`: factor max_norm/(norm + 1e-6)
/// when norm > max_norm). Returns the global norm before clipping.
/// Parameters without a gradient are skipped.
pub fn clip_grad_norm(params: &ParamStore, grads: &mut GradStore, max_norm: f64) -> Result<f64> {
    let mut sq = 0.0f64;
    for p in params.iter() {
        if let Some(g) = grads.get(p.var.as_tensor()) {
            sq += match crate::fused::adamw::sum_sq(g)? {
                Some(s) => s,
                None => g
                    .to_dtype(DType::F64)?
                    .sqr()?
                    .sum_all()?
                    .to_scalar::<f64>()?,
            };
        }
    }
    let norm = sq.sqrt();
    if norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for p in params.iter() {
            if let Some(g) = grads.get(p.var.as_tensor()) {
                let g = (g * scale)?;
                grads.insert(p.var.as_tensor(), g);
            }
        }
    }
    Ok(norm)
}
