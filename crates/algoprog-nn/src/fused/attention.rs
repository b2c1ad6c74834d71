//! Causal softmax attention as one candle op (see [`algoprog_kernels::attention`]).
//!
//! [`causal_attention`] takes queries, keys and values (b, h, T, d_h) — any
//! strides with a contiguous head dimension, so the views of a packed QKV
//! projection need no copy — and returns the heads concatenated, (b, T, h·d_h).
//! The forward keeps only the row log-sum-exp (b·h·T floats) for the
//! backward, which recomputes the probabilities; the b·h·T² score and
//! probability arrays of the composite path are never stored. The kernel
//! also skips the masked upper triangle (the FLOP ledger still counts the
//! full T×T, as a profiler of the composite path would).
//!
//! On a GPU, for f16/bf16/f64, or with `ALGOPROG_FUSED=0`, the same
//! function runs [`causal_attention_composite`], the reference the tests
//! compare against.

use super::rotary::RotaryTables;
use super::{fusable, slice_f32, storage_f32};
use crate::attention::CausalSelfAttention;
use algoprog_kernels::attention::{self as kernel, AttnShape, Heads};
use algoprog_kernels::buffer::{copy_short, output};
use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Result, Shape, Tensor, D};
use rayon::prelude::*;
use std::sync::{Arc, Mutex};

/// softmax(q·kᵀ/√d_h + bias + causal mask)·v with the heads concatenated:
/// q, k, v (b, h, T, d_h) → (b, T, h·d_h). `alibi_slopes` (one per head)
/// adds −m_h·(i − j) to score (i, j).
pub fn causal_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    alibi_slopes: Option<&[f32]>,
) -> Result<Tensor> {
    let (_, h, t, _) = q.dims4()?;
    for (x, what) in [(k, "keys"), (v, "values")] {
        if x.dims() != q.dims() {
            candle_core::bail!(
                "causal attention: {what} {:?} differ from queries {:?}",
                x.dims(),
                q.dims()
            );
        }
    }
    if let Some(m) = alibi_slopes {
        if m.len() != h {
            candle_core::bail!("causal attention: {} ALiBi slopes for {h} heads", m.len());
        }
    }
    if ![q, k, v].iter().all(|x| fusable(x)) {
        return causal_attention_composite(q, k, v, &|s: &Tensor| match alibi_slopes {
            Some(m) => s.broadcast_add(&alibi_bias(m, t, s)?),
            None => Ok(s.clone()),
        });
    }
    let (q, k, v) = (kernel_view(q)?, kernel_view(k)?, kernel_view(v)?);
    let op = FusedAttention {
        alibi: alibi_slopes.map(<[f32]>::to_vec),
        lse: Mutex::new(None),
    };
    q.apply_op3(&k, &v, op)
}

/// The composite reference: scores q·kᵀ/√d_h → `score_bias` → causal mask →
/// softmax → ·v, then (b, h, T, d_h) → (b, T, h·d_h). Gradients flow through
/// candle's own ops.
pub fn causal_attention_composite(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    score_bias: &dyn Fn(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let (b, h, t, hd) = q.dims4()?;
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    let scores = (q.matmul(&k.t()?)? * (1.0 / (hd as f64).sqrt()))?;
    let scores = score_bias(&scores)?;
    let scores = scores.broadcast_add(&CausalSelfAttention::causal_mask(t, &scores)?)?;
    let p = candle_nn::ops::softmax(&scores, D::Minus1)?;
    p.matmul(&v)?.transpose(1, 2)?.reshape((b, t, h * hd))
}

/// The ALiBi bias (h, T, T): −m_h·(i − j) on and below the diagonal, 0 above.
fn alibi_bias(slopes: &[f32], t: usize, like: &Tensor) -> Result<Tensor> {
    let mut v = vec![0f32; slopes.len() * t * t];
    for (hh, &m) in slopes.iter().enumerate() {
        for i in 0..t {
            for j in 0..=i {
                v[(hh * t + i) * t + j] = -m * (i - j) as f32;
            }
        }
    }
    Tensor::from_vec(v, (slopes.len(), t, t), like.device())?.to_dtype(like.dtype())
}

/// `x` itself when the kernel can read it in place (head dimension
/// contiguous, rows of a head not overlapping), else a contiguous copy.
fn kernel_view(x: &Tensor) -> Result<Tensor> {
    let (_, _, t, hd) = x.dims4()?;
    let st = x.layout().stride();
    if (st[3] == 1 || hd <= 1) && (st[2] >= hd || t <= 1) {
        Ok(x.clone())
    } else {
        x.contiguous()
    }
}

/// The kernel's view of a rank-4 (b, h, T, d_h) f32 storage.
fn heads<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<(Heads<'a>, AttnShape)> {
    let data = storage_f32(s, &format!("attention {what}"))?;
    let (dims, st) = (l.dims(), l.stride());
    if dims.len() != 4 {
        candle_core::bail!("fused attention {what}: expected (b, h, T, d_h), got {dims:?}");
    }
    let shape = AttnShape {
        b: dims[0],
        h: dims[1],
        t: dims[2],
        hd: dims[3],
    };
    if st[3] != 1 && dims[3] > 1 {
        candle_core::bail!(
            "fused attention {what}: the head dimension must be contiguous (stride {:?})",
            st
        );
    }
    Ok((
        Heads {
            data,
            offset: l.start_offset(),
            strides: [st[0], st[1], st[2]],
        },
        shape,
    ))
}

/// Queries, keys and values of one call as kernel views, with their common shape.
fn qkv_heads<'a>(
    q: (&'a CpuStorage, &Layout),
    k: (&'a CpuStorage, &Layout),
    v: (&'a CpuStorage, &Layout),
) -> Result<(Heads<'a>, Heads<'a>, Heads<'a>, AttnShape)> {
    let (qh, s) = heads(q.0, q.1, "queries")?;
    let mut out = [qh; 2];
    for (i, ((st, l), what)) in [(k, "keys"), (v, "values")].into_iter().enumerate() {
        let (h, sh) = heads(st, l, what)?;
        if sh != s {
            candle_core::bail!(
                "fused attention: {what} shape {sh:?} differs from the queries' {s:?}"
            );
        }
        out[i] = h;
    }
    Ok((qh, out[0], out[1], s))
}

/// The (b, T, h·d_h) tensor `x` as a kernel view with (b, h, T) strides.
fn bthd_view<'a>(s: &'a CpuStorage, l: &Layout, shape: AttnShape, what: &str) -> Result<Heads<'a>> {
    let data = storage_f32(s, &format!("attention {what}"))?;
    let want = [shape.b, shape.t, shape.h * shape.hd];
    if l.dims() != want || !l.is_contiguous() {
        candle_core::bail!(
            "fused attention {what}: expected a contiguous {want:?}, got {:?}",
            l.dims()
        );
    }
    Ok(Heads {
        offset: l.start_offset(),
        ..Heads::bthd(data, shape)
    })
}

/// Forward op: (q, k, v) → y (b, T, h·d_h); keeps the log-sum-exp for `bwd`.
struct FusedAttention {
    alibi: Option<Vec<f32>>,
    lse: Mutex<Option<Arc<Vec<f32>>>>,
}

impl CustomOp3 for FusedAttention {
    fn name(&self) -> &'static str {
        "fused-causal-attention"
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
        let (q, k, v, s) = qkv_heads((s1, l1), (s2, l2), (s3, l3))?;
        let mut y = output(s.numel());
        let mut lse = output(s.pairs() * s.t);
        kernel::forward(s, q, k, v, self.alibi.as_deref(), &mut y, &mut lse);
        *self.lse.lock().unwrap() = Some(Arc::new(lse));
        Ok((CpuStorage::F32(y), Shape::from((s.b, s.t, s.h * s.hd))))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let lse = match &*self.lse.lock().unwrap() {
            Some(l) => l.clone(),
            None => candle_core::bail!(
                "fused attention backward: no saved log-sum-exp (forward not run on the CPU)"
            ),
        };
        let op = FusedAttentionBackward {
            alibi: self.alibi.clone(),
            lse,
            y: y.contiguous()?,
            dy: grad.contiguous()?,
        };
        // (3, b, h, T, d_h): dq, dk, dv
        let g = q.apply_op3_no_bwd(k, v, &op)?;
        Ok((Some(g.get(0)?), Some(g.get(1)?), Some(g.get(2)?)))
    }
}

/// Backward op: (q, k, v) with y, dy and lse held → [dq; dk; dv] (3, b, h, T, d_h).
struct FusedAttentionBackward {
    alibi: Option<Vec<f32>>,
    lse: Arc<Vec<f32>>,
    y: Tensor,
    dy: Tensor,
}

impl CustomOp3 for FusedAttentionBackward {
    fn name(&self) -> &'static str {
        "fused-causal-attention-backward"
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
        let (q, k, v, s) = qkv_heads((s1, l1), (s2, l2), (s3, l3))?;
        if self.lse.len() != s.pairs() * s.t {
            candle_core::bail!(
                "fused attention backward: saved log-sum-exp has {} rows, expected {}",
                self.lse.len(),
                s.pairs() * s.t
            );
        }
        let (ys, yl) = self.y.storage_and_layout();
        let (gs, gl) = self.dy.storage_and_layout();
        let (candle_core::Storage::Cpu(ys), candle_core::Storage::Cpu(gs)) = (&*ys, &*gs) else {
            candle_core::bail!("fused attention backward: output and gradient must be on the CPU");
        };
        let y = bthd_view(ys, yl, s, "output")?;
        let dy = bthd_view(gs, gl, s, "output gradient")?;
        let n = s.numel();
        let mut out = output(3 * n);
        let (dq, rest) = out.split_at_mut(n);
        let (dk, dv) = rest.split_at_mut(n);
        kernel::backward(
            s,
            q,
            k,
            v,
            self.alibi.as_deref(),
            y,
            &self.lse,
            dy,
            dq,
            dk,
            dv,
        );
        Ok((
            CpuStorage::F32(out),
            Shape::from(vec![3, s.b, s.h, s.t, s.hd]),
        ))
    }
}

/// What the packed op keeps from forward to backward.
struct PackedSaved {
    lse: Vec<f32>,
    /// Rotated queries and keys, (b, h, T, d_h), when the op rotates.
    rotated: Option<(Vec<f32>, Vec<f32>)>,
}

/// Forward op on the packed projection: qkv (b, T, 3·h·d_h) → y (b, T, h·d_h).
struct PackedAttention {
    n_heads: usize,
    rotary: Option<RotaryTables>,
    alibi: Option<Vec<f32>>,
    saved: Arc<Mutex<Option<PackedSaved>>>,
}

/// The shape of a packed (b, T, 3·d) projection with `n_heads` heads.
fn packed_shape(l: &Layout, n_heads: usize) -> Result<AttnShape> {
    let (b, t, d3) = l.shape().dims3()?;
    if n_heads == 0 || d3 % (3 * n_heads) != 0 {
        candle_core::bail!(
            "fused attention: packed projection width {d3} is not 3 × {n_heads} heads × d_h"
        );
    }
    Ok(AttnShape {
        b,
        h: n_heads,
        t,
        hd: d3 / (3 * n_heads),
    })
}

/// q, k or v (i = 0, 1, 2) as a strided view of the packed (b, T, 3, h, d_h) data.
fn packed_view(data: &[f32], s: AttnShape, i: usize) -> Heads<'_> {
    let d = s.h * s.hd;
    Heads {
        data,
        offset: i * d,
        strides: [s.t * 3 * d, s.hd, 3 * d],
    }
}

impl CustomOp1 for PackedAttention {
    fn name(&self) -> &'static str {
        "fused-causal-attention-packed"
    }

    fn cpu_fwd(&self, st: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let s = packed_shape(l, self.n_heads)?;
        let data = slice_f32(st, l, "attention packed projection")?;
        let (q, k, v) = (
            packed_view(data, s, 0),
            packed_view(data, s, 1),
            packed_view(data, s, 2),
        );
        let mut y = output(s.numel());
        let mut lse = output(s.pairs() * s.t);
        let rot = match &self.rotary {
            Some(tables) => {
                if tables.max_positions(s.hd) < s.t {
                    candle_core::bail!(
                        "rotary positions: sequence length {} exceeds model.max_seq_len = {}; raise model.max_seq_len",
                        s.t,
                        tables.max_positions(s.hd)
                    );
                }
                Some((
                    tables.rotate_heads(q, s, false),
                    tables.rotate_heads(k, s, false),
                ))
            }
            None => None,
        };
        match &rot {
            Some((qr, kr)) => kernel::forward(
                s,
                Heads::bhtd(qr, s),
                Heads::bhtd(kr, s),
                v,
                self.alibi.as_deref(),
                &mut y,
                &mut lse,
            ),
            None => kernel::forward(s, q, k, v, self.alibi.as_deref(), &mut y, &mut lse),
        }
        *self.saved.lock().unwrap() = Some(PackedSaved { lse, rotated: rot });
        Ok((CpuStorage::F32(y), Shape::from((s.b, s.t, s.h * s.hd))))
    }

    fn bwd(&self, qkv: &Tensor, y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let op = PackedAttentionBackward {
            n_heads: self.n_heads,
            rotary: self.rotary.clone(),
            alibi: self.alibi.clone(),
            saved: self.saved.clone(),
        };
        Ok(Some(qkv.apply_op3_no_bwd(
            &y.contiguous()?,
            &grad.contiguous()?,
            &op,
        )?))
    }
}

/// Backward op: (qkv, y, ∂y) → ∂qkv (b, T, 3·h·d_h), rotating ∂q and ∂k back.
struct PackedAttentionBackward {
    n_heads: usize,
    rotary: Option<RotaryTables>,
    alibi: Option<Vec<f32>>,
    saved: Arc<Mutex<Option<PackedSaved>>>,
}

impl CustomOp3 for PackedAttentionBackward {
    fn name(&self) -> &'static str {
        "fused-causal-attention-packed-backward"
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
        let s = packed_shape(l1, self.n_heads)?;
        let data = slice_f32(s1, l1, "attention packed projection")?;
        let guard = self.saved.lock().unwrap();
        let Some(saved) = guard.as_ref() else {
            candle_core::bail!(
                "fused attention backward: the forward pass saved nothing (was it run on the CPU?)"
            )
        };
        let y = bthd_view(s2, l2, s, "output")?;
        let dy = bthd_view(s3, l3, s, "output gradient")?;
        let (q, k, v) = (
            packed_view(data, s, 0),
            packed_view(data, s, 1),
            packed_view(data, s, 2),
        );
        let n = s.numel();
        let (mut dq, mut dk, mut dv) = (output(n), output(n), output(n));
        match &saved.rotated {
            Some((qr, kr)) => kernel::backward(
                s,
                Heads::bhtd(qr, s),
                Heads::bhtd(kr, s),
                v,
                self.alibi.as_deref(),
                y,
                &saved.lse,
                dy,
                &mut dq,
                &mut dk,
                &mut dv,
            ),
            None => kernel::backward(
                s,
                q,
                k,
                v,
                self.alibi.as_deref(),
                y,
                &saved.lse,
                dy,
                &mut dq,
                &mut dk,
                &mut dv,
            ),
        }
        // un-rotate ∂q and ∂k (∂x = R(−θ)·∂y), a pair's T rows per call
        let (dq, dk) = match &self.rotary {
            Some(tables) => {
                let unrotate = |g: &[f32]| tables.rotate_heads(Heads::bhtd(g, s), s, true);
                (unrotate(&dq), unrotate(&dk))
            }
            None => (dq, dk),
        };
        // scatter (b, h, T, d_h) → packed (b, T, 3, h, d_h)
        let d = s.h * s.hd;
        let mut out = output(s.b * s.t * 3 * d);
        out.par_chunks_mut(3 * d)
            .enumerate()
            .for_each(|(row, dst)| {
                let (bi, t) = (row / s.t, row % s.t);
                for hi in 0..s.h {
                    let src = ((bi * s.h + hi) * s.t + t) * s.hd;
                    for (i, g) in [&dq, &dk, &dv].into_iter().enumerate() {
                        copy_short(
                            &mut dst[i * d + hi * s.hd..i * d + (hi + 1) * s.hd],
                            &g[src..src + s.hd],
                        );
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((s.b, s.t, 3 * d))))
    }
}

/// Causal attention straight from the packed projection qkv (b, T, 3·h·d_h)
/// (q, k, v in that order, heads of d_h inside each): applies the rotary
/// rotation to q and k itself when `rotary` is given, and returns the heads
/// concatenated, (b, T, h·d_h). Its gradient comes back packed, so the
/// views, rotations and copies of the unpacked path (and their backward
/// passes) are not built. The caller checks [`super::fusable`].
pub fn causal_attention_packed(
    qkv: &Tensor,
    n_heads: usize,
    rotary: Option<&RotaryTables>,
    alibi_slopes: Option<&[f32]>,
) -> Result<Tensor> {
    let op = PackedAttention {
        n_heads,
        rotary: rotary.cloned(),
        alibi: alibi_slopes.map(|m| m.to_vec()),
        saved: Arc::new(Mutex::new(None)),
    };
    qkv.contiguous()?.apply_op1(op)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gradcheck;
    use candle_core::{DType, Device, Var};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.5f32..1.5)).collect()
    }

    /// q, k, v as strided views of a packed (b, T, 3, h, d_h) variable, as
    /// the model's QKV projection produces them.
    fn split(qkv: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let f = |i| qkv.narrow(2, i, 1)?.squeeze(2)?.transpose(1, 2);
        Ok((f(0)?, f(1)?, f(2)?))
    }

    fn slopes(h: usize) -> Vec<f32> {
        crate::positional::Alibi::slopes(h)
            .iter()
            .map(|&m| m as f32)
            .collect()
    }

    fn abs_max(a: &Tensor) -> f64 {
        a.abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64
    }

    /// max |a − b| relative to `scale`.
    fn max_err(a: &Tensor, b: &Tensor, scale: f64) -> f64 {
        assert!(scale > 0.0, "all-zero reference");
        assert_eq!(a.dims(), b.dims());
        abs_max(&(a - b).unwrap()) / scale
    }

    /// max |a − b| relative to max |b|.
    fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
        max_err(a, b, abs_max(b))
    }

    #[test]
    fn values_and_gradients_match_composite() {
        for (b, h, t, hd, alibi) in [
            (2, 2, 1, 8, false),
            (2, 3, 7, 16, true),
            (1, 2, 45, 32, false),
            (2, 4, 40, 16, true),
        ] {
            let n = b * t * 3 * h * hd;
            let qkv = Var::from_vec(rand_vec(n, t as u64), (b, t, 3, h, hd), &Device::Cpu).unwrap();
            let w = Tensor::from_vec(rand_vec(b * t * h * hd, 99), (b, t, h * hd), &Device::Cpu)
                .unwrap();
            let m = slopes(h);
            let m = alibi.then_some(m.as_slice());
            let (q, k, v) = split(qkv.as_tensor()).unwrap();
            let yf = causal_attention(&q, &k, &v, m).unwrap();
            let yc = causal_attention_composite(&q, &k, &v, &|s: &Tensor| match m {
                Some(m) => s.broadcast_add(&alibi_bias(m, t, s)?),
                None => Ok(s.clone()),
            })
            .unwrap();
            assert_eq!(yf.dims(), &[b, t, h * hd]);
            let e = max_rel(&yf, &yc);
            assert!(e < 1e-5, "values ({b},{h},{t},{hd}, alibi {alibi}): {e}");
            let gf = (&yf * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let gc = (&yc * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let (gf, gc) = (
                gf.get(qkv.as_tensor()).unwrap(),
                gc.get(qkv.as_tensor()).unwrap(),
            );
            // each of dq, dk, dv relative to the largest gradient (dq and dk
            // are exactly zero at T = 1)
            let scale = abs_max(gc);
            for i in 0..3 {
                let e = max_err(
                    &gf.narrow(2, i, 1).unwrap(),
                    &gc.narrow(2, i, 1).unwrap(),
                    scale,
                );
                assert!(
                    e < 1e-5,
                    "gradient of {} ({b},{h},{t},{hd}, alibi {alibi}): {e}",
                    ["q", "k", "v"][i]
                );
            }
        }
    }

    #[test]
    fn contiguous_and_broadcast_gradients() {
        // contiguous (b, h, T, d_h) inputs and the broadcast gradient of a plain sum
        let (b, h, t, hd) = (2, 2, 9, 8);
        let x =
            |s| Var::from_vec(rand_vec(b * h * t * hd, s), (b, h, t, hd), &Device::Cpu).unwrap();
        let (q, k, v) = (x(1), x(2), x(3));
        let yf = causal_attention(&q, &k, &v, None).unwrap();
        let yc = causal_attention_composite(&q, &k, &v, &|s: &Tensor| Ok(s.clone())).unwrap();
        assert!(max_rel(&yf, &yc) < 1e-5);
        let gf = yf.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        let gc = yc.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        for var in [&q, &k, &v] {
            let e = max_rel(gf.get(var).unwrap(), gc.get(var).unwrap());
            assert!(e < 1e-5, "{e}");
        }
        let gs = yf.sum_all().unwrap().backward().unwrap();
        let gv: Vec<f32> = gs
            .get(&v)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        // Σ y: every value row j gets Σ_i P_ij over its d_h columns; the
        // probabilities of each query row sum to one, so Σ dV = b·h·T·d_h
        let total: f64 = gv.iter().map(|&g| g as f64).sum();
        assert!((total - (b * h * t * hd) as f64).abs() < 1e-3, "{total}");
    }

    #[test]
    fn finite_differences_f32() {
        // central differences in f32 (h = 1e-2), so a loose bound: a wrong
        // gradient shows errors of order one
        let (b, h, t, hd) = (1, 2, 6, 8);
        let qkv = Var::from_vec(
            rand_vec(b * t * 3 * h * hd, 5),
            (b, t, 3, h, hd),
            &Device::Cpu,
        )
        .unwrap();
        let w =
            Tensor::from_vec(rand_vec(b * t * h * hd, 6), (b, t, h * hd), &Device::Cpu).unwrap();
        let m = slopes(h);
        let loss = || {
            let (q, k, v) = split(qkv.as_tensor())?;
            (causal_attention(&q, &k, &v, Some(&m))? * &w)?.sum_all()
        };
        let r = gradcheck::check(std::slice::from_ref(&qkv), &loss, 1e-2).unwrap();
        assert!(r.max_abs_grad > 0.1, "{r:?}");
        assert!(r.max_rel_err < 2e-2, "{r:?}");
    }

    #[test]
    fn other_dtypes_take_the_composite_path() {
        let (b, h, t, hd) = (1, 2, 5, 4);
        let x =
            |s| Tensor::from_vec(rand_vec(b * h * t * hd, s), (b, h, t, hd), &Device::Cpu).unwrap();
        let (q, k, v) = (x(1), x(2), x(3));
        let m = slopes(h);
        let y32 = causal_attention(&q, &k, &v, Some(&m)).unwrap();
        let f64_ = |x: &Tensor| x.to_dtype(DType::F64).unwrap();
        let y64 = causal_attention(&f64_(&q), &f64_(&k), &f64_(&v), Some(&m)).unwrap();
        assert_eq!(y64.dtype(), DType::F64);
        assert!(max_rel(&y32, &y64.to_dtype(DType::F32).unwrap()) < 1e-5);
    }
}
