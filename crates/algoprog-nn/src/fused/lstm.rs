//! The LSTM's fused ops with hand-written backward passes, beside their
//! composite twin [`lstm_cell_composite`] (plain candle ops, the reference
//! they are tested against).
//!
//! - [`LstmWindow`]: one layer over a whole TBPTT window, or a sequence of
//!   windows, as one op; its forward and backpropagation through time are the
//!   [`algoprog_kernels::lstm`] kernels. Inputs (xp (T, B, 4H), w_hh (4H, H),
//!   s0 (B, 3H) = [h_0 | c_0 | m]), output h (T, B, H).
//! - [`LstmCell`]: the cell update of one time step as one op, for a candle
//!   time loop.
//!
//! Unlike the other fused ops these take f32 and f64 (the f64 path is the
//! exact reference of the tests) and do not fall back by themselves: the
//! LSTM model picks its kernel (`window`, `cell` or `composite`) and runs the
//! composite one off the CPU. CPU only.
//!
//! ## The cell op
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
//! arithmetic. Arithmetic is done in f64 for every input dtype.

use algoprog_kernels::lstm::{self as kern, GateFloat};
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor, WithDType};

/// The cell update from gate pre-activations a = (a_i, a_f, a_o, a_g), each
/// (B, H), and c_{t−1}, with candle ops: returns (h_t, c_t) with
/// c_t = σ(a_f)⊙c_{t−1} + σ(a_i)⊙tanh(a_g), h_t = σ(a_o)⊙tanh(c_t).
pub fn lstm_cell_composite(gates: &Tensor, c_prev: &Tensor) -> Result<(Tensor, Tensor)> {
    let h = c_prev.dim(1)?;
    let sig = candle_nn::ops::sigmoid(&gates.narrow(1, 0, 3 * h)?)?;
    let g = gates.narrow(1, 3 * h, h)?.tanh()?;
    let (i, f, o) = (
        sig.narrow(1, 0, h)?,
        sig.narrow(1, h, h)?,
        sig.narrow(1, 2 * h, h)?,
    );
    let c = ((f * c_prev)? + (i * g)?)?;
    let hn = (o * c.tanh()?)?;
    Ok((hn, c))
}

// ---------------------------------------------------------------------------
// The window op

fn contiguous<'a, T>(data: &'a [T], l: &Layout, what: &str) -> Result<&'a [T]> {
    if !l.is_contiguous() {
        return Err(candle_core::Error::Msg(format!(
            "lstm window: {what} must be contiguous"
        )));
    }
    Ok(&data[l.start_offset()..l.start_offset() + l.shape().elem_count()])
}

/// Whole-window LSTM recurrence: (xp (T, B, 4H), w_hh (4H, H), s0 (B, 3H))
/// → h (T, B, H), through [`algoprog_kernels::lstm::window_forward`]. The
/// op keeps the kernel's (T, B, 6H) buffer [h | c | activated gates] for
/// its backward.
///
/// With `tbptt` set, one op runs a whole sequence of several TBPTT windows:
/// the forward carries the state across window boundaries (as the detached
/// state of the next window would), and the backward stops δh and δc at
/// each boundary, exactly as detaching the state between windows does.
#[derive(Clone, Debug, Default)]
pub struct LstmWindow {
    saved: std::sync::Arc<std::sync::Mutex<Option<Tensor>>>,
    tbptt: Option<usize>,
}

impl LstmWindow {
    /// A fresh op over one window (one op per call: it holds that call's saved buffer).
    pub fn new() -> Self {
        Self::default()
    }
    /// A fresh op over a sequence cut into windows of `tbptt` steps.
    pub fn with_tbptt(tbptt: usize) -> Self {
        Self {
            saved: Default::default(),
            tbptt: Some(tbptt.max(1)),
        }
    }

    /// The final state [h_T | c_T] (B, 2H) of this op's forward, a detached
    /// copy (`None` before the forward). Keep a clone of the op (clones share
    /// the saved buffer) to read it after `apply_op3`; the LSTM carries it
    /// into the next batch.
    pub fn final_state(&self) -> Result<Option<Tensor>> {
        let saved = self.saved.lock().unwrap();
        let Some(full) = saved.as_ref() else {
            return Ok(None);
        };
        let (tn, _, h6) = full.dims3()?;
        Ok(Some(full.get(tn - 1)?.narrow(1, 0, h6 / 3)?.contiguous()?))
    }
}

/// The forward on one dtype: h (T, B, H) and the saved (T, B, 6H) buffer.
fn window_fwd<T: GateFloat + WithDType>(
    xp: &[T],
    lx: &Layout,
    w: &[T],
    lw: &Layout,
    s0: &[T],
    ls: &Layout,
) -> Result<(CpuStorage, Tensor, Shape)> {
    let (xp, w, s0) = (
        contiguous(xp, lx, "xp")?,
        contiguous(w, lw, "w_hh")?,
        contiguous(s0, ls, "s0")?,
    );
    let (tn, b, h4) = lx.shape().dims3()?;
    let h = h4 / 4;
    if h4 != 4 * h || lw.dims() != [4 * h, h] || ls.dims() != [b, 3 * h] {
        return Err(candle_core::Error::Msg(format!(
            "lstm window: xp {:?}, w_hh {:?}, s0 {:?} do not match",
            lx.dims(),
            lw.dims(),
            ls.dims()
        )));
    }
    let full = kern::window_forward(xp, w, s0, tn, b, h);
    let hs = kern::h_columns(&full, tn * b, h);
    let full = Tensor::from_vec(full, (tn, b, 6 * h), &candle_core::Device::Cpu)?;
    Ok((T::to_cpu_storage_owned(hs), full, Shape::from((tn, b, h))))
}

impl CustomOp3 for LstmWindow {
    fn name(&self) -> &'static str {
        "lstm-window"
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
        let (hs, full, shape) = match (s1, s2, s3) {
            (CpuStorage::F32(a), CpuStorage::F32(b), CpuStorage::F32(c)) => {
                window_fwd(a, l1, b, l2, c, l3)?
            }
            (CpuStorage::F64(a), CpuStorage::F64(b), CpuStorage::F64(c)) => {
                window_fwd(a, l1, b, l2, c, l3)?
            }
            _ => {
                return Err(candle_core::Error::Msg(
                    "lstm window: f32 or f64 inputs of one dtype expected".into(),
                ))
            }
        };
        *self.saved.lock().unwrap() = Some(full);
        Ok((hs, shape))
    }
    fn bwd(
        &self,
        _xp: &Tensor,
        w_hh: &Tensor,
        s0: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (tn, b, h) = res.dims3()?;
        let full = match &*self.saved.lock().unwrap() {
            Some(f) => f.clone(),
            None => {
                return Err(candle_core::Error::Msg(
                    "lstm window backward: the forward pass saved nothing".into(),
                ))
            }
        };
        let s0c = s0.contiguous()?;
        let g = full.apply_op3_no_bwd(
            &s0c,
            &grad.contiguous()?,
            &LstmWindowBackward {
                w_hh: w_hh.copy()?,
                tbptt: self.tbptt,
            },
        )?;
        let n = tn * b * 4 * h;
        let da = g.narrow(0, 0, n)?.reshape((tn, b, 4 * h))?;
        let dhc = g.narrow(0, n, b * 2 * h)?.reshape((b, 2 * h))?;
        let dw = g.narrow(0, n + b * 2 * h, 4 * h * h)?.reshape((4 * h, h))?;
        // the initial state is usually detached (TBPTT): skip its gradient then
        let ds0 = if s0.track_op() {
            Some(Tensor::cat(
                &[dhc, Tensor::zeros((b, h), s0.dtype(), s0.device())?],
                1,
            )?)
        } else {
            None
        };
        Ok((Some(da), Some(dw), ds0))
    }
}

/// Backward of [`LstmWindow`]: (saved (T, B, 6H), s0 (B, 3H), ∂L/∂h (T, B, H))
/// → flat [δa (T·B·4H) | δh_0, δc_0 (B·2H) | ∂W_hh (4H·H)], with W_hh
/// carried by the op; see [`algoprog_kernels::lstm::window_backward`].
#[derive(Clone, Debug)]
pub struct LstmWindowBackward {
    pub w_hh: Tensor,
    /// Window length: δh and δc do not cross a multiple of it (see [`LstmWindow::with_tbptt`]).
    pub tbptt: Option<usize>,
}

#[allow(clippy::too_many_arguments)]
fn window_bwd<T: GateFloat + WithDType>(
    y: &[T],
    ly: &Layout,
    s0: &[T],
    ls: &Layout,
    gy: &[T],
    lg: &Layout,
    w: &Tensor,
    tbptt: Option<usize>,
) -> Result<(CpuStorage, Shape)> {
    let (y, s0, gy) = (
        contiguous(y, ly, "output")?,
        contiguous(s0, ls, "s0")?,
        contiguous(gy, lg, "gradient")?,
    );
    let (tn, b, h6) = ly.shape().dims3()?;
    let h = h6 / 6;
    if lg.dims() != [tn, b, h] {
        return Err(candle_core::Error::Msg(format!(
            "lstm window backward: gradient {:?} for h ({tn}, {b}, {h})",
            lg.dims()
        )));
    }
    if ls.dims() != [b, 3 * h] || w.dims() != [4 * h, h] {
        return Err(candle_core::Error::Msg(format!(
            "lstm window backward: s0 {:?} and w_hh {:?} do not match h ({tn}, {b}, {h})",
            ls.dims(),
            w.dims()
        )));
    }
    let w: Vec<T> = w.flatten_all()?.to_vec1()?;
    let out = kern::window_backward(y, s0, gy, &w, tn, b, h, tbptt);
    let len = out.len();
    Ok((T::to_cpu_storage_owned(out), Shape::from(len)))
}

impl CustomOp3 for LstmWindowBackward {
    fn name(&self) -> &'static str {
        "lstm-window-backward"
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
            (CpuStorage::F32(a), CpuStorage::F32(b), CpuStorage::F32(c)) => {
                window_bwd(a, l1, b, l2, c, l3, &self.w_hh, self.tbptt)
            }
            (CpuStorage::F64(a), CpuStorage::F64(b), CpuStorage::F64(c)) => {
                window_bwd(a, l1, b, l2, c, l3, &self.w_hh, self.tbptt)
            }
            _ => Err(candle_core::Error::Msg(
                "lstm window backward: f32 or f64 inputs of one dtype expected".into(),
            )),
        }
    }
}

// ---------------------------------------------------------------------------
// The cell op

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
            return Err(candle_core::Error::Msg(format!(
                "lstm cell: {what} must be rank 2, got {dims:?}"
            )));
        }
        Ok((
            Self {
                data,
                off: l.start_offset(),
                s0: st[0],
                s1: st[1],
            },
            dims[0],
            dims[1],
        ))
    }
    #[inline]
    fn at(&self, r: usize, c: usize) -> f64 {
        self.data[self.off + r * self.s0 + c * self.s1].to_f64()
    }
}

/// Fused LSTM cell forward: (a (B, 4H), c_{t−1} (B, H)) → [h_t | c_t] (B, 2H).
#[derive(Clone, Copy, Debug, Default)]
pub struct LstmCell;

fn cell_fwd<T: WithDType>(
    a: &[T],
    la: &Layout,
    c: &[T],
    lc: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let (a, b, h4) = View::new(a, la, "gates")?;
    let (c, bc, h) = View::new(c, lc, "c_prev")?;
    if bc != b || h4 != 4 * h {
        return Err(candle_core::Error::Msg(format!(
            "lstm cell: gates ({b}, {h4}) and c_prev ({bc}, {h}) do not match"
        )));
    }
    let mut out = vec![T::from_f64(0.0); b * 2 * h];
    for r in 0..b {
        let row = &mut out[r * 2 * h..(r + 1) * 2 * h];
        for j in 0..h {
            let i = a.at(r, j).sigm();
            let f = a.at(r, h + j).sigm();
            let o = a.at(r, 2 * h + j).sigm();
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
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        match (s1, s2) {
            (CpuStorage::F32(a), CpuStorage::F32(c)) => cell_fwd(a, l1, c, l2),
            (CpuStorage::F64(a), CpuStorage::F64(c)) => cell_fwd(a, l1, c, l2),
            _ => Err(candle_core::Error::Msg(
                "lstm cell: f32 or f64 inputs of one dtype expected".into(),
            )),
        }
    }
    fn bwd(
        &self,
        a: &Tensor,
        c: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
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
        return Err(candle_core::Error::Msg(format!(
            "lstm cell backward: gradient ({bg}, {h2}) for ({b}, {})",
            2 * h
        )));
    }
    let mut out = vec![T::from_f64(0.0); b * 5 * h];
    for r in 0..b {
        let row = &mut out[r * 5 * h..(r + 1) * 5 * h];
        for j in 0..h {
            let i = a.at(r, j).sigm();
            let f = a.at(r, h + j).sigm();
            let o = a.at(r, 2 * h + j).sigm();
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
            (CpuStorage::F32(a), CpuStorage::F32(c), CpuStorage::F32(g)) => {
                cell_bwd(a, l1, c, l2, g, l3)
            }
            (CpuStorage::F64(a), CpuStorage::F64(c), CpuStorage::F64(g)) => {
                cell_bwd(a, l1, c, l2, g, l3)
            }
            _ => Err(candle_core::Error::Msg(
                "lstm cell backward: f32 or f64 inputs of one dtype expected".into(),
            )),
        }
    }
}
