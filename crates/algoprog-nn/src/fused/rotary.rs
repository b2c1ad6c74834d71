//! Rotary position embedding as one op (rotate-half layout, see
//! [`crate::Rotary`]): y = R(θ)·x per position and frequency pair, and its
//! backward ∂x = R(−θ)·∂y, the same op with the angle negated. Replaces
//! the composite's two narrows, four products, two sums and a concatenation
//! (and their backward passes) per tensor with one pass.

use algoprog_kernels::attention::{AttnShape, Heads};
use algoprog_kernels::buffer::output;
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

struct Rotate {
    tables: RotaryTables,
    /// Rotate by −θ (the backward).
    inverse: bool,
}

impl CustomOp1 for Rotate {
    fn name(&self) -> &'static str {
        "fused-rotary"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(x) = s else {
            candle_core::bail!("fused rotary: f32 input expected")
        };
        let (b, h, t, hd) = l.shape().dims4()?;
        let st = l.stride();
        if st[3] != 1 {
            candle_core::bail!("fused rotary: the head dimension must be contiguous");
        }
        if self.tables.max_positions(hd) < t {
            candle_core::bail!("fused rotary: {t} positions exceed the table");
        }
        let heads = Heads {
            data: x,
            offset: l.start_offset(),
            strides: [st[0], st[1], st[2]],
        };
        let shape = AttnShape { b, h, t, hd };
        let y = self.tables.rotate_heads(heads, shape, self.inverse);
        Ok((CpuStorage::F32(y), Shape::from((b, h, t, hd))))
    }

    fn bwd(&self, _x: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let inv = Rotate {
            tables: self.tables.clone(),
            inverse: !self.inverse,
        };
        Ok(Some(grad.apply_op1(inv)?))
    }
}

/// `n` head vectors at positions 0, 1, ...: row r of src at `r·src_ld`, of
/// dst at `r·dst_ld`, each `hd` long.
#[derive(Clone, Copy, Debug)]
struct Rows {
    n: usize,
    hd: usize,
    src_ld: usize,
    dst_ld: usize,
}

/// dst row r = R(sign·θ_r)·(src row r) (rotate-half layout).
#[inline(always)]
fn rotate_rows_body(cos: &[f32], sin: &[f32], rows: Rows, src: &[f32], dst: &mut [f32], sign: f32) {
    let Rows {
        n,
        hd,
        src_ld,
        dst_ld,
    } = rows;
    let half = hd / 2;
    for p in 0..n {
        let (c, s) = (
            &cos[p * half..(p + 1) * half],
            &sin[p * half..(p + 1) * half],
        );
        let (x1, x2) = src[p * src_ld..p * src_ld + hd].split_at(half);
        let (y1, y2) = dst[p * dst_ld..p * dst_ld + hd].split_at_mut(half);
        // in fixed blocks of 8 (d_h = 16 is one block), which vectorise at
        // every SIMD width; a loop over `half` alone would be vectorised 16
        // wide on AVX-512 and leave 8 to its scalar tail
        let mut i = 0;
        while i + 8 <= half {
            let blk = |v: &[f32]| -> [f32; 8] { v[i..i + 8].try_into().unwrap() };
            let (a, b, cc, ss) = (blk(x1), blk(x2), blk(c), blk(s));
            let (mut o1, mut o2) = ([0.0f32; 8], [0.0f32; 8]);
            for l in 0..8 {
                let si = sign * ss[l];
                o1[l] = a[l] * cc[l] - b[l] * si;
                o2[l] = a[l] * si + b[l] * cc[l];
            }
            y1[i..i + 8].copy_from_slice(&o1);
            y2[i..i + 8].copy_from_slice(&o2);
            i += 8;
        }
        for i in i..half {
            let si = sign * s[i];
            y1[i] = x1[i] * c[i] - x2[i] * si;
            y2[i] = x1[i] * si + x2[i] * c[i];
        }
    }
}

algoprog_kernels::simd_dispatch!(
    /// dst row r = R(sign·θ_r)·(src row r), compiled for the CPU's widest
    /// SIMD level.
    fn rotate_rows(cos: &[f32], sin: &[f32], rows: Rows, src: &[f32], dst: &mut [f32], sign: f32) => rotate_rows_body
);

/// Tables for [`rotate`], shared by every call of one model.
#[derive(Clone, Debug)]
pub struct RotaryTables {
    cos: std::sync::Arc<Vec<f32>>,
    sin: std::sync::Arc<Vec<f32>>,
}

impl RotaryTables {
    /// From (max_seq_len, hd/2) cos and sin tensors.
    pub fn new(cos: &Tensor, sin: &Tensor) -> Result<Self> {
        let f = |t: &Tensor| -> Result<std::sync::Arc<Vec<f32>>> {
            Ok(std::sync::Arc::new(
                t.to_dtype(candle_core::DType::F32)?
                    .flatten_all()?
                    .to_vec1::<f32>()?,
            ))
        };
        Ok(Self {
            cos: f(cos)?,
            sin: f(sin)?,
        })
    }
}

impl RotaryTables {
    /// Positions the tables cover.
    pub fn max_positions(&self, head_dim: usize) -> usize {
        self.cos.len() / (head_dim / 2).max(1)
    }
    /// Every head of `x` rotated by θ_t (−θ_t with `inverse`, the backward)
    /// into a contiguous (b, h, T, d_h) array, one (batch, head) pair per
    /// task. T must be at most [`Self::max_positions`].
    pub fn rotate_heads(&self, x: Heads, s: AttnShape, inverse: bool) -> Vec<f32> {
        let AttnShape { b, h, t, hd } = s;
        let sign = if inverse { -1.0 } else { 1.0 };
        let rows = Rows {
            n: t,
            hd,
            src_ld: x.strides[2],
            dst_ld: hd,
        };
        let mut y = output(b * h * t * hd);
        y.par_chunks_mut(t * hd).enumerate().for_each(|(p, out)| {
            let (bi, hi) = (p / h, p % h);
            let src = &x.data[x.offset + bi * x.strides[0] + hi * x.strides[1]..];
            rotate_rows(&self.cos, &self.sin, rows, src, out, sign);
        });
        y
    }
}

/// Rotates x (b, h, T, hd) of an f32 CPU tensor (see [`super::fusable`]).
pub fn rotate(x: &Tensor, tables: &RotaryTables) -> Result<Tensor> {
    let x = if x.stride()[3] == 1 {
        x.clone()
    } else {
        x.contiguous()?
    };
    x.apply_op1(Rotate {
        tables: tables.clone(),
        inverse: false,
    })
}

#[cfg(test)]
mod tests {
    use crate::params::ParamBuilder;
    use crate::positional::{PosDims, PositionalEncoding, Rotary, RotaryConfig};
    use candle_core::{DType, Device, Tensor, Var};

    #[test]
    fn fused_rotary_equals_the_composite_with_gradients_on_a_strided_input() {
        let dev = Device::Cpu;
        let dims = PosDims {
            d_model: 32,
            n_heads: 2,
            head_dim: 16,
            max_seq_len: 12,
        };
        let pb = ParamBuilder::new(0, &dev, DType::F32);
        let rot = Rotary::new(&RotaryConfig::default(), &dims, &pb).unwrap();
        // (b, T, 3, h, hd) → a strided (b, h, T, hd) view, as attention makes
        let qkv: Vec<f32> = (0..2 * 10 * 3 * 32)
            .map(|i| ((i * 7919 % 211) as f32 - 105.0) / 50.0)
            .collect();
        let qkv =
            Var::from_tensor(&Tensor::from_vec(qkv, (2, 10, 3, 2, 16), &dev).unwrap()).unwrap();
        let q = qkv
            .as_tensor()
            .narrow(2, 0, 1)
            .unwrap()
            .squeeze(2)
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        let w = Tensor::from_vec(
            (0..2 * 2 * 10 * 16)
                .map(|i| (i % 13) as f32 - 6.0)
                .collect::<Vec<_>>(),
            (2, 2, 10, 16),
            &dev,
        )
        .unwrap();
        let fused = rot.apply(&q).unwrap();
        let comp = rot.apply_composite(&q).unwrap();
        let diff = (&fused - &comp)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-6, "values differ by {diff}");
        let gf = (fused * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let gc = (comp * &w).unwrap().sum_all().unwrap().backward().unwrap();
        let (a, b) = (
            gf.get(qkv.as_tensor()).unwrap(),
            gc.get(qkv.as_tensor()).unwrap(),
        );
        let diff = (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-5, "gradients differ by {diff}");
        // the rotation preserves norms per pair: ‖y‖ = ‖x‖
        let n = |t: &Tensor| {
            t.sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap()
        };
        let y = rot.apply(&q).unwrap();
        assert!((n(&y) - n(&q.contiguous().unwrap())).abs() < 1e-3 * n(&y));
    }
}
