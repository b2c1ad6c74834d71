//! The LSTM cell update as one fused op with a hand-written backward.
//!
//! Forward ([`LstmCell`], inputs a (B, 4H) gate pre-activations in the order
//! (i, f, o, g) and c_{t−1} (B, H); output (B, 2H) = [h_t | c_t]):
//!
//! ```text
//! i, f, o = σ(a_i), σ(a_f), σ(a_o);  g = tanh(a_g)
//! c_t = f⊙c_{t−1} + i⊙g;             h_t = o⊙tanh(c_t)
//! ```
//!
//! Backward, given ∂L/∂h_t = δh and ∂L/∂c_t = δc_out (the two halves of the
//! output gradient), with τ = tanh(c_t):
//!
//! ```text
//! δc   = δc_out + δh⊙o⊙(1 − τ²)
//! δa_o = δh⊙τ⊙o(1 − o)        δa_i = δc⊙g⊙i(1 − i)
//! δa_f = δc⊙c_{t−1}⊙f(1 − f)  δa_g = δc⊙i⊙(1 − g²)
//! δc_{t−1} = δc⊙f
//! ```
//!
//! The backward recomputes the gates from the inputs (one pass, no stored
//! activations) in a second fused op ([`LstmCellBackward`], no backward of
//! its own: second derivatives are not needed). Replacing the ~9 candle ops
//! of the composite cell (sigmoid, tanh, 3 products, a sum, tanh, product,
//! plus their backward nodes) by one op per step matters because at the
//! papers' widths the time loop is dominated by per-op overhead, not
//! arithmetic. Arithmetic is done in f64 for every input dtype; CPU only.

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, WithDType};

/// Reads a rank-2 tensor of any strides: element (r, c).
struct View<'a, T> {
    data: &'a [T],
    off: usize,
    s0: usize,
    s1: usize,
}

impl<'a, T: WithDType> View<'a, T> {
    fn new(data: &'a [T], l: &Layout, what: &str) -> Result<(Self, usize, usize)> {
        let (dims, st) = (l.dims(), l.stride());
        if dims.len() != 2 {
            return Err(candle_core::Error::Msg(format!("lstm cell: {what} must be rank 2, got {dims:?}")));
        }
        Ok((Self { data, off: l.start_offset(), s0: st[0], s1: st[1] }, dims[0], dims[1]))
    }
    #[inline]
    fn at(&self, r: usize, c: usize) -> f64 {
        self.data[self.off + r * self.s0 + c * self.s1].to_f64()
    }
}

#[inline]
fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Fused LSTM cell forward: (a (B, 4H), c_{t−1} (B, H)) → [h_t | c_t] (B, 2H).
#[derive(Clone, Copy, Debug, Default)]
pub struct LstmCell;

fn cell_fwd<T: WithDType>(a: &[T], la: &Layout, c: &[T], lc: &Layout) -> Result<(CpuStorage, Shape)> {
    let (a, b, h4) = View::new(a, la, "gates")?;
    let (c, bc, h) = View::new(c, lc, "c_prev")?;
    if bc != b || h4 != 4 * h {
        return Err(candle_core::Error::Msg(format!("lstm cell: gates ({b}, {h4}) and c_prev ({bc}, {h}) do not match")));
    }
    let mut out = vec![T::from_f64(0.0); b * 2 * h];
    for r in 0..b {
        let row = &mut out[r * 2 * h..(r + 1) * 2 * h];
        for j in 0..h {
            let i = sigmoid(a.at(r, j));
            let f = sigmoid(a.at(r, h + j));
            let o = sigmoid(a.at(r, 2 * h + j));
            let g = a.at(r, 3 * h + j).tanh();
            let cn = f * c.at(r, j) + i * g;
            row[j] = T::from_f64(o * cn.tanh());
            row[h + j] = T::from_f64(cn);
        }
    }
    Ok((T::to_cpu_storage_owned(out), Shape::from((b, 2 * h))))
}

impl CustomOp2 for LstmCell {
    fn name(&self) -> &'static str {
        "lstm-cell"
    }
    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<(CpuStorage, Shape)> {
        match (s1, s2) {
            (CpuStorage::F32(a), CpuStorage::F32(c)) => cell_fwd(a, l1, c, l2),
            (CpuStorage::F64(a), CpuStorage::F64(c)) => cell_fwd(a, l1, c, l2),
            _ => Err(candle_core::Error::Msg("lstm cell: f32 or f64 inputs of one dtype expected".into())),
        }
    }
    fn bwd(&self, a: &Tensor, c: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = a.apply_op3_no_bwd(c, grad, &LstmCellBackward)?;
        let h4 = a.dim(1)?;
        Ok((Some(g.narrow(1, 0, h4)?), Some(g.narrow(1, h4, h4 / 4)?)))
    }
}

/// Fused LSTM cell backward: (a, c_{t−1}, [δh | δc_out]) → [δa | δc_{t−1}] (B, 5H).
#[derive(Clone, Copy, Debug, Default)]
pub struct LstmCellBackward;

fn cell_bwd<T: WithDType>(
    a: &[T],
    la: &Layout,
    c: &[T],
    lc: &Layout,
    gr: &[T],
    lg: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let (a, b, _) = View::new(a, la, "gates")?;
    let (c, _, h) = View::new(c, lc, "c_prev")?;
    let (gr, bg, h2) = View::new(gr, lg, "output gradient")?;
    if bg != b || h2 != 2 * h {
        return Err(candle_core::Error::Msg(format!("lstm cell backward: gradient ({bg}, {h2}) for ({b}, {})", 2 * h)));
    }
    let mut out = vec![T::from_f64(0.0); b * 5 * h];
    for r in 0..b {
        let row = &mut out[r * 5 * h..(r + 1) * 5 * h];
        for j in 0..h {
            let i = sigmoid(a.at(r, j));
            let f = sigmoid(a.at(r, h + j));
            let o = sigmoid(a.at(r, 2 * h + j));
            let g = a.at(r, 3 * h + j).tanh();
            let cp = c.at(r, j);
            let tau = (f * cp + i * g).tanh();
            let dh = gr.at(r, j);
            let dc = gr.at(r, h + j) + dh * o * (1.0 - tau * tau);
            row[j] = T::from_f64(dc * g * i * (1.0 - i));
            row[h + j] = T::from_f64(dc * cp * f * (1.0 - f));
            row[2 * h + j] = T::from_f64(dh * tau * o * (1.0 - o));
            row[3 * h + j] = T::from_f64(dc * i * (1.0 - g * g));
            row[4 * h + j] = T::from_f64(dc * f);
        }
    }
    Ok((T::to_cpu_storage_owned(out), Shape::from((b, 5 * h))))
}

impl CustomOp3 for LstmCellBackward {
    fn name(&self) -> &'static str {
        "lstm-cell-backward"
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
        match (s1, s2, s3) {
            (CpuStorage::F32(a), CpuStorage::F32(c), CpuStorage::F32(g)) => cell_bwd(a, l1, c, l2, g, l3),
            (CpuStorage::F64(a), CpuStorage::F64(c), CpuStorage::F64(g)) => cell_bwd(a, l1, c, l2, g, l3),
            _ => Err(candle_core::Error::Msg("lstm cell backward: f32 or f64 inputs of one dtype expected".into())),
        }
    }
}
