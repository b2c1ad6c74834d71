//! Chunked cross-entropy as one candle op (see [`algoprog_kernels::ce`]).
//!
//! With gradients needed (hidden or output weight tracked by autograd) the
//! forward pass computes both gradients chunk by chunk and keeps them (n×d
//! and V×d) for the backward pass, which only scales them by the incoming
//! gradient; the n×V logits and their gradient are never stored. Without
//! gradients (evaluation) it computes the loss alone, a third of the work.

use super::{slice_f32, tensor_f32};
use algoprog_kernels::buffer::output;
use algoprog_kernels::ce::{self, CeGrads, CeShape};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use std::sync::Mutex;

/// The gradients the forward pass keeps for the backward pass: ∂H, ∂W and,
/// with a bias, ∂b (all of the mean loss).
type Kept = (Tensor, Tensor, Option<Tensor>);

/// The op, with its targets read out of their tensor (they take no
/// gradient). Applied as a [`CustomOp2`] over (hidden, weight) without a
/// bias and as a [`CustomOp3`] over (hidden, weight, bias) with one.
struct FusedCe {
    shape: CeShape,
    targets: Vec<u32>,
    with_grads: bool,
    grads: Mutex<Option<Kept>>,
}

impl FusedCe {
    fn forward(&self, h: &[f32], w: &[f32], b: Option<&[f32]>) -> Result<(CpuStorage, Shape)> {
        let CeShape { n, d, v } = self.shape;
        let t = &self.targets;
        let err = |e: ce::TargetOutOfRange| candle_core::Error::Msg(format!("cross-entropy: {e}"));
        let sum = if self.with_grads {
            // the kernel overwrites all three (∂W and ∂b on its first chunk)
            let mut dh = output(n * d);
            let mut dw = output(v * d);
            let mut db = b.map(|_| output(v));
            let scale = if n == 0 { 0.0 } else { 1.0 / n as f32 };
            let sum = ce::cross_entropy(
                self.shape,
                h,
                w,
                b,
                t,
                Some(CeGrads {
                    dh: &mut dh,
                    dw: &mut dw,
                    db: db.as_deref_mut(),
                    scale,
                }),
            )
            .map_err(err)?;
            let db = match db {
                Some(db) => Some(tensor_f32(db, &[v])?),
                None => None,
            };
            *self.grads.lock().unwrap() =
                Some((tensor_f32(dh, &[n, d])?, tensor_f32(dw, &[v, d])?, db));
            sum
        } else {
            ce::cross_entropy(self.shape, h, w, b, t, None).map_err(err)?
        };
        let mean = if n == 0 {
            f32::NAN
        } else {
            (sum / n as f64) as f32
        };
        Ok((CpuStorage::F32(vec![mean]), Shape::from(())))
    }

    /// The kept gradients times the incoming gradient of the loss.
    fn backward(&self, grad: &Tensor) -> Result<Kept> {
        let guard = self.grads.lock().unwrap();
        let Some((dh, dw, db)) = guard.as_ref() else {
            candle_core::bail!(
                "fused cross-entropy: backward without gradients from the forward pass"
            )
        };
        let g = grad.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        if g == 1.0 {
            return Ok((dh.clone(), dw.clone(), db.clone()));
        }
        let g = g as f64;
        let db = match db {
            Some(db) => Some((db * g)?),
            None => None,
        };
        Ok(((dh * g)?, (dw * g)?, db))
    }
}

impl CustomOp2 for FusedCe {
    fn name(&self) -> &'static str {
        "fused-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let h = slice_f32(s1, l1, "cross-entropy hidden")?;
        let w = slice_f32(s2, l2, "cross-entropy output weight")?;
        self.forward(h, w, None)
    }

    fn bwd(
        &self,
        _h: &Tensor,
        _w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (dh, dw, _) = self.backward(grad)?;
        Ok((Some(dh), Some(dw)))
    }
}

impl CustomOp3 for FusedCe {
    fn name(&self) -> &'static str {
        "fused-cross-entropy-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let h = slice_f32(s1, l1, "cross-entropy hidden")?;
        let w = slice_f32(s2, l2, "cross-entropy output weight")?;
        let b = slice_f32(s3, l3, "cross-entropy output bias")?;
        self.forward(h, w, Some(b))
    }

    fn bwd(
        &self,
        _h: &Tensor,
        _w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dh, dw, db) = self.backward(grad)?;
        Ok((Some(dh), Some(dw), db))
    }
}

/// Mean cross-entropy of `targets` under softmax(hidden·Wᵀ + b) for f32 CPU
/// tensors: hidden (n, d), output_weight (V, d), an optional output bias
/// (V,), targets (n,) of an integer dtype. The caller checks
/// [`super::fusable`]; [`crate::cross_entropy`] dispatches here.
pub fn cross_entropy(
    hidden: &Tensor,
    output_weight: &Tensor,
    output_bias: Option<&Tensor>,
    targets: &Tensor,
) -> Result<Tensor> {
    let (n, d) = hidden.dims2()?;
    let (v, d2) = output_weight.dims2()?;
    if d != d2 {
        candle_core::bail!("cross-entropy: hidden width {d} but output weight ({v}, {d2})");
    }
    if let Some(b) = output_bias {
        if b.dims() != [v] {
            candle_core::bail!(
                "cross-entropy: output bias of shape {:?} for a vocabulary of {v}: it must be ({v},)",
                b.dims()
            );
        }
    }
    if targets.elem_count() != n {
        candle_core::bail!(
            "cross-entropy: {n} rows but {} targets",
            targets.elem_count()
        );
    }
    let with_grads =
        hidden.track_op() || output_weight.track_op() || output_bias.is_some_and(|b| b.track_op());
    let op = FusedCe {
        shape: CeShape { n, d, v },
        targets: targets
            .to_dtype(DType::U32)?
            .flatten_all()?
            .to_vec1::<u32>()?,
        with_grads,
        grads: Mutex::new(None),
    };
    let (h, w) = (hidden.contiguous()?, output_weight.contiguous()?);
    match output_bias {
        None => h.apply_op2(&w, op),
        Some(b) => h.apply_op3(&w, &b.contiguous()?, op),
    }
}

#[cfg(test)]
mod tests {
    use crate::loss::cross_entropy_composite;
    use candle_core::{Device, Tensor, Var};

    fn inputs(n: usize, d: usize, v: usize) -> (Var, Var, Tensor) {
        let dev = Device::Cpu;
        let h: Vec<f32> = (0..n * d)
            .map(|i| ((i * 7919 % 101) as f32 - 50.0) / 40.0)
            .collect();
        let w: Vec<f32> = (0..v * d)
            .map(|i| ((i * 104729 % 89) as f32 - 44.0) / 30.0)
            .collect();
        let t: Vec<u32> = (0..n).map(|i| (i * 31 % v) as u32).collect();
        (
            Var::from_tensor(&Tensor::from_vec(h, (n, d), &dev).unwrap()).unwrap(),
            Var::from_tensor(&Tensor::from_vec(w, (v, d), &dev).unwrap()).unwrap(),
            Tensor::from_vec(t, n, &dev).unwrap(),
        )
    }

    /// ‖a − b‖ / ‖b‖ (the composite sums 300k exponentials sequentially in
    /// f32, so element-wise it is the less accurate of the two).
    fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
        let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let diff: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| ((x - y) as f64).powi(2))
            .sum();
        let norm: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
        (diff / norm).sqrt()
    }

    #[test]
    fn loss_and_gradients_equal_the_composite() {
        // one chunk, then two (chunk_rows(300k) = 55 < 70 rows)
        assert!(algoprog_kernels::ce::chunk_rows(300_000) < 70);
        for (n, d, v) in [(300, 12, 1500), (70, 5, 300_000)] {
            let (h, w, t) = inputs(n, d, v);
            let fused = super::cross_entropy(h.as_tensor(), w.as_tensor(), None, &t).unwrap();
            let comp = cross_entropy_composite(h.as_tensor(), w.as_tensor(), None, &t).unwrap();
            let (lf, lc) = (
                fused.to_scalar::<f32>().unwrap(),
                comp.to_scalar::<f32>().unwrap(),
            );
            assert!(
                (lf - lc).abs() < 1e-5 * lc.abs().max(1.0),
                "loss {lf} vs {lc}"
            );
            // scale the loss to check the incoming gradient is applied
            let gf = (fused * 3.0).unwrap().backward().unwrap();
            let gc = (comp * 3.0).unwrap().backward().unwrap();
            for var in [&h, &w] {
                let (a, b) = (
                    gf.get(var.as_tensor()).unwrap(),
                    gc.get(var.as_tensor()).unwrap(),
                );
                assert!(
                    max_rel(a, b) < 1e-5,
                    "gradient differs by {} (n={n}, v={v})",
                    max_rel(a, b)
                );
            }
        }
    }

    #[test]
    fn without_tracked_inputs_it_only_computes_the_loss() {
        let (h, w, t) = inputs(20, 4, 50);
        let (h, w) = (h.as_tensor().detach(), w.as_tensor().detach());
        let fused = super::cross_entropy(&h, &w, None, &t).unwrap();
        let comp = cross_entropy_composite(&h, &w, None, &t).unwrap();
        assert!(
            (fused.to_scalar::<f32>().unwrap() - comp.to_scalar::<f32>().unwrap()).abs() < 1e-5
        );
        assert!(!fused.track_op());
    }

    #[test]
    fn bad_targets_name_the_problem() {
        let (h, w, _) = inputs(3, 4, 5);
        let t = Tensor::new(&[0u32, 9, 1], &Device::Cpu).unwrap();
        let e = super::cross_entropy(h.as_tensor(), w.as_tensor(), None, &t)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("target 9 at row 1") && e.contains("5 tokens"),
            "{e}"
        );
        let short = Tensor::new(&[0u32, 1], &Device::Cpu).unwrap();
        let e = super::cross_entropy(h.as_tensor(), w.as_tensor(), None, &short)
            .unwrap_err()
            .to_string();
        assert!(e.contains("3 rows but 2 targets"), "{e}");
    }

    /// With a trained output bias the fused op gives the composite's loss
    /// and the gradients of hidden, weight and bias (one chunk and two).
    #[test]
    fn bias_loss_and_gradients_equal_the_composite() {
        for (n, d, v) in [(300, 12, 1500), (70, 5, 300_000)] {
            let (h, w, t) = inputs(n, d, v);
            let b: Vec<f32> = (0..v)
                .map(|j| ((j * 37 % 23) as f32 - 11.0) / 7.0)
                .collect();
            let b = Var::from_tensor(&Tensor::from_vec(b, v, &Device::Cpu).unwrap()).unwrap();
            let fused = super::cross_entropy(h.as_tensor(), w.as_tensor(), Some(b.as_tensor()), &t)
                .unwrap();
            let comp =
                cross_entropy_composite(h.as_tensor(), w.as_tensor(), Some(b.as_tensor()), &t)
                    .unwrap();
            let plain = cross_entropy_composite(h.as_tensor(), w.as_tensor(), None, &t).unwrap();
            let (lf, lc, lp) = (
                fused.to_scalar::<f32>().unwrap(),
                comp.to_scalar::<f32>().unwrap(),
                plain.to_scalar::<f32>().unwrap(),
            );
            assert!(
                (lf - lc).abs() < 1e-5 * lc.abs().max(1.0),
                "loss {lf} vs {lc}"
            );
            assert!(
                (lc - lp).abs() > 0.1,
                "the bias moves the loss: {lc} vs {lp}"
            );
            let gf = (fused * 3.0).unwrap().backward().unwrap();
            let gc = (comp * 3.0).unwrap().backward().unwrap();
            for (name, var) in [("hidden", &h), ("weight", &w), ("bias", &b)] {
                let (a, c) = (
                    gf.get(var.as_tensor()).unwrap(),
                    gc.get(var.as_tensor()).unwrap(),
                );
                assert!(
                    max_rel(a, c) < 1e-5,
                    "{name} gradient differs by {} (n={n}, v={v})",
                    max_rel(a, c)
                );
            }
        }
    }
}
