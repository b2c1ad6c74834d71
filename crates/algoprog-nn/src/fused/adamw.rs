//! In-place AdamW and the gradient norm on f32 CPU tensors
//! (see [`algoprog_kernels::adamw`]). The parameter, m and v are updated in
//! their own storage (so detached views of the parameters, such as
//! evaluation views, follow), with no temporaries.

use super::{slice_f32, slice_f32_mut};
use algoprog_kernels::adamw;
pub use algoprog_kernels::adamw::AdamStep;
use candle_core::{CpuStorage, InplaceOp2, InplaceOp3, Layout, Result, Storage, Tensor};

struct Ema {
    beta: f32,
    squared: bool,
}

impl InplaceOp2 for Ema {
    fn name(&self) -> &'static str {
        "fused-adamw-moment"
    }
    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<()> {
        let g = slice_f32(s2, l2, "adamw gradient")?;
        let m = slice_f32_mut(s1, l1, "adamw moment")?;
        if m.len() != g.len() {
            candle_core::bail!(
                "fused adamw: moment of {} elements for a gradient of {}",
                m.len(),
                g.len()
            );
        }
        if self.squared {
            adamw::ema_sq(m, g, self.beta)
        } else {
            adamw::ema(m, g, self.beta)
        }
        Ok(())
    }
}

struct Apply(AdamStep);

impl InplaceOp3 for Apply {
    fn name(&self) -> &'static str {
        "fused-adamw-apply"
    }
    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<()> {
        let m = slice_f32(s2, l2, "adamw first moment")?;
        let v = slice_f32(s3, l3, "adamw second moment")?;
        let p = slice_f32_mut(s1, l1, "adamw parameter")?;
        if p.len() != m.len() || p.len() != v.len() {
            candle_core::bail!("fused adamw: parameter, m and v differ in size");
        }
        adamw::apply(p, m, v, self.0);
        Ok(())
    }
}

/// One AdamW step in place: m, v, then the parameter `p`. All four tensors
/// must be contiguous f32 on the CPU and of one size; `m` and `v` must not
/// share storage with anything else.
pub fn adamw_step(
    p: &Tensor,
    m: &Tensor,
    v: &Tensor,
    g: &Tensor,
    beta1: f64,
    beta2: f64,
    step: AdamStep,
) -> Result<()> {
    let g = g.contiguous()?;
    m.inplace_op2(
        &g,
        &Ema {
            beta: beta1 as f32,
            squared: false,
        },
    )?;
    v.inplace_op2(
        &g,
        &Ema {
            beta: beta2 as f32,
            squared: true,
        },
    )?;
    p.inplace_op3(m, v, &Apply(step))
}

/// Σ g² in f64 without temporaries for an f32 CPU tensor; `None` for other
/// tensors (the caller uses composite ops).
pub fn sum_sq(g: &Tensor) -> Result<Option<f64>> {
    if !super::fusable(g) {
        return Ok(None);
    }
    let (st, l) = g.storage_and_layout();
    match (&*st, l.contiguous_offsets()) {
        (Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) => Ok(Some(adamw::sum_sq(&v[a..b]))),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn in_place_step_matches_composite_formula_and_views_follow() {
        let dev = Device::Cpu;
        let n = 1000;
        let p0: Vec<f32> = (0..n).map(|i| (i as f32 - 500.0) / 300.0).collect();
        let g: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 70.0)
            .collect();
        let var = Var::from_vec(p0.clone(), n, &dev).unwrap();
        let view = var.as_tensor().detach(); // shares storage, like an evaluation view
        let (m, v) = (
            Tensor::zeros(n, candle_core::DType::F32, &dev).unwrap(),
            Tensor::zeros(n, candle_core::DType::F32, &dev).unwrap(),
        );
        let gt = Tensor::from_vec(g.clone(), n, &dev).unwrap();
        let (b1, b2, eps, lr, wd) = (0.9, 0.999, 1e-8, 1e-2, 0.1);
        adamw_step(
            var.as_tensor(),
            &m,
            &v,
            &gt,
            b1,
            b2,
            AdamStep::new(1, lr, wd, b1, b2, eps),
        )
        .unwrap();
        let got = view.to_vec1::<f32>().unwrap();
        for i in 0..n {
            let (gi, pi) = (g[i] as f64, p0[i] as f64);
            let (mi, vi) = ((1.0 - b1) * gi, (1.0 - b2) * gi * gi);
            let want =
                pi * (1.0 - lr * wd) - lr * (mi / (1.0 - b1)) / ((vi / (1.0 - b2)).sqrt() + eps);
            assert!(
                (got[i] as f64 - want).abs() < 1e-6,
                "p[{i}] {} vs {want}",
                got[i]
            );
        }
        let s = sum_sq(&gt).unwrap().unwrap();
        let want: f64 = g.iter().map(|&x| x as f64 * x as f64).sum();
        assert!((s - want).abs() < 1e-6 * want, "{s} vs {want}");
    }
}
