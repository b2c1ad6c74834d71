//! Chunked cross-entropy as one candle op (see [`algoprog_kernels::ce`]).
//!
//! With gradients needed (hidden or output weight tracked by autograd) the
//! forward pass computes both gradients chunk by chunk and keeps them (n×d
//! and V×d) for the backward pass, which only scales them by the incoming
//! gradient; the n×V logits and their gradient are never stored. Without
//! gradients (evaluation) it computes the loss alone, a third of the work.

use super::{slice_f32, tensor_f32};
use algoprog_kernels::ce::{self, CeGrads, CeShape};
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use std::sync::Mutex;

struct FusedCe {
    shape: CeShape,
    with_grads: bool,
    grads: Mutex<Option<(Tensor, Tensor)>>,
}

impl CustomOp3 for FusedCe {
    fn name(&self) -> &'static str {
        "fused-cross-entropy"
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
        let t = match (s3, l3.contiguous_offsets()) {
            (CpuStorage::U32(v), Some((a, b))) => &v[a..b],
            _ => candle_core::bail!("fused cross-entropy: targets must be a contiguous u32 tensor"),
        };
        let CeShape { n, d, v } = self.shape;
        let sum = if self.with_grads {
            let mut dh = vec![0f32; n * d];
            let mut dw = vec![0f32; v * d];
            let scale = if n == 0 { 0.0 } else { 1.0 / n as f32 };
            let sum = ce::cross_entropy(
                self.shape,
                h,
                w,
                t,
                Some(CeGrads {
                    dh: &mut dh,
                    dw: &mut dw,
                    scale,
                }),
            )
            .map_err(|e| candle_core::Error::Msg(format!("cross-entropy: {e}")))?;
            *self.grads.lock().unwrap() =
                Some((tensor_f32(dh, &[n, d])?, tensor_f32(dw, &[v, d])?));
            sum
        } else {
            ce::cross_entropy(self.shape, h, w, t, None)
                .map_err(|e| candle_core::Error::Msg(format!("cross-entropy: {e}")))?
        };
        let mean = if n == 0 {
            f32::NAN
        } else {
            (sum / n as f64) as f32
        };
        Ok((CpuStorage::F32(vec![mean]), Shape::from(())))
    }

    fn bwd(
        &self,
        _h: &Tensor,
        _w: &Tensor,
        _t: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let guard = self.grads.lock().unwrap();
        let Some((dh, dw)) = guard.as_ref() else {
            candle_core::bail!(
                "fused cross-entropy: backward without gradients from the forward pass"
            )
        };
        let g = grad.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        let (dh, dw) = if g == 1.0 {
            (dh.clone(), dw.clone())
        } else {
            ((dh * g as f64)?, (dw * g as f64)?)
        };
        Ok((Some(dh), Some(dw), None))
    }
}

/// Mean cross-entropy of `targets` under softmax(hidden·Wᵀ) for f32 CPU
/// tensors: hidden (n, d), output_weight (V, d), targets (n,) of an integer
/// dtype. The caller checks [`super::fusable`]; [`crate::cross_entropy`]
/// dispatches here.
pub fn cross_entropy(hidden: &Tensor, output_weight: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let (n, d) = hidden.dims2()?;
    let (v, d2) = output_weight.dims2()?;
    if d != d2 {
        candle_core::bail!("cross-entropy: hidden width {d} but output weight ({v}, {d2})");
    }
    if targets.elem_count() != n {
        candle_core::bail!(
            "cross-entropy: {n} rows but {} targets",
            targets.elem_count()
        );
    }
    let with_grads = hidden.track_op() || output_weight.track_op();
    let op = FusedCe {
        shape: CeShape { n, d, v },
        with_grads,
        grads: Mutex::new(None),
    };
    let t = targets.to_dtype(DType::U32)?.flatten_all()?.contiguous()?;
    hidden
        .contiguous()?
        .apply_op3(&output_weight.contiguous()?, &t, op)
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
            let fused = super::cross_entropy(h.as_tensor(), w.as_tensor(), &t).unwrap();
            let comp = cross_entropy_composite(h.as_tensor(), w.as_tensor(), &t).unwrap();
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
        let fused = super::cross_entropy(&h, &w, &t).unwrap();
        let comp = cross_entropy_composite(&h, &w, &t).unwrap();
        assert!(
            (fused.to_scalar::<f32>().unwrap() - comp.to_scalar::<f32>().unwrap()).abs() < 1e-5
        );
        assert!(!fused.track_op());
    }

    #[test]
    fn bad_targets_name_the_problem() {
        let (h, w, _) = inputs(3, 4, 5);
        let t = Tensor::new(&[0u32, 9, 1], &Device::Cpu).unwrap();
        let e = super::cross_entropy(h.as_tensor(), w.as_tensor(), &t)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("target 9 at row 1") && e.contains("5 tokens"),
            "{e}"
        );
        let short = Tensor::new(&[0u32, 1], &Device::Cpu).unwrap();
        let e = super::cross_entropy(h.as_tensor(), w.as_tensor(), &short)
            .unwrap_err()
            .to_string();
        assert!(e.contains("3 rows but 2 targets"), "{e}");
    }
}
