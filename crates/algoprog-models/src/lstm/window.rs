//! The recurrence of one layer over one TBPTT window as a single op with a
//! hand-written backward (backpropagation through time inside the op).
//!
//! Why: composed from candle ops, every time step adds ~10 autograd nodes,
//! and the backward of "take step t's rows of the window's input
//! projection" materialises a zero-padded gradient of the whole window at
//! every step (O(T²) memory traffic per window). Here the time loop is plain
//! Rust around one (B × H)·(H × 4H) matmul per step forward and one
//! (B × 4H)·(4H × H) per step backward, both single-threaded `gemm` calls
//! (the batch rows are split into one group per rayon thread, each group
//! running the whole window on its own core)
//! (at these sizes waking a thread pool each step costs more than it saves,
//! badly so on a loaded machine); W_hh's gradient is one
//! (4H × T·B)·(T·B × H) matmul after the loop.
//!
//! Forward ([`LstmWindow`]): inputs
//! - `xp` (T, B, 4H): the window's input projections W_ih·x_t + b (gate order i, f, o, g),
//! - `w_hh` (4H, H),
//! - `s0` (B, 3H) = [h_0 | c_0 | m]: the initial state and the hidden-dropout
//!   mask m (ones when inactive; it gets no gradient).
//!
//! For t = 1..T: a_t = xp_t + (m⊙h_{t−1})·W_hhᵀ, then the cell of
//! [`super::cell`]. Output (T, B, 6H) = [h_t | c_t | a_t]: a_t is kept for
//! the backward (no recomputation), its output gradient is added to δa_t.
//!
//! Backward ([`LstmWindowBackward`]), for t = T..1 with δh, δc carried:
//! δh ← ∂L/∂h_t + δh_next, δc ← ∂L/∂c_t + δc_next + δh⊙o⊙(1 − tanh²c_t),
//! δa_t from the cell formulas, δc_next = δc⊙f, δh_next = m⊙(δa_t·W_hh).
//! Then ∂L/∂xp = δa, ∂L/∂W_hh = Σ_t δa_tᵀ·(m⊙h_{t−1}),
//! ∂L/∂s0 = [δh_next | δc_next | 0] after t = 1.

use candle_core::{CpuStorage, CustomOp3, Layout, Result, Shape, Tensor, WithDType};
use algoprog_kernels::SharedMut;
use rayon::prelude::*;

/// Batch rows split into one contiguous group per rayon thread (at most b
/// groups), so the time loop of each group runs on its own core.
fn row_groups(b: usize) -> Vec<(usize, usize)> {
    let g = rayon::current_num_threads().clamp(1, b.max(1));
    (0..g).map(|i| (i * b / g, (i + 1) * b / g)).filter(|(a, z)| z > a).collect()
}

#[inline]
fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The gate non-linearities in the op's own precision: libm for f64 (exact
/// reference), the kernels' branch-free sigmoid and tanh for f32
/// (`algoprog_kernels::act`, built on the polynomial `math::exp`), which
/// vectorise (relative error ≈ 1e-7, below f32 rounding of the results).
pub trait GateFloat: WithDType {
    fn sigm(self) -> Self;
    fn tanhf(self) -> Self;
}

impl GateFloat for f64 {
    #[inline]
    fn sigm(self) -> f64 {
        sigmoid(self)
    }
    #[inline]
    fn tanhf(self) -> f64 {
        self.tanh()
    }
}

impl GateFloat for f32 {
    #[inline(always)]
    fn sigm(self) -> f32 {
        algoprog_kernels::act::sigmoid_f32(self)
    }
    #[inline(always)]
    fn tanhf(self) -> f32 {
        algoprog_kernels::act::tanh_f32(self)
    }
}

/// One row of the forward cell update (slices of length H).
struct FwdRow<'a, T> {
    ai: &'a [T],
    af: &'a [T],
    ao: &'a [T],
    ag: &'a [T],
    c: &'a mut [T],
    hout: &'a mut [T],
    cout: &'a mut [T],
    hin: &'a mut [T],
    mask: &'a [T],
}

#[inline(always)]
fn fwd_gates<T: GateFloat>(r: FwdRow<'_, T>) {
    let h = r.c.len();
    for j in 0..h {
        let cn = r.af[j].sigm() * r.c[j] + r.ai[j].sigm() * r.ag[j].tanhf();
        let hn = r.ao[j].sigm() * cn.tanhf();
        r.c[j] = cn;
        r.cout[j] = cn;
        r.hout[j] = hn;
        r.hin[j] = hn * r.mask[j];
    }
}

/// One row of the backward cell update: `a` the 4H pre-activations, the rest length H.
struct BwdRow<'a, T> {
    a: &'a [T],
    ct: &'a [T],
    cp: &'a [T],
    gh: &'a [T],
    dhn: &'a [T],
    dai: &'a mut [T],
    daf: &'a mut [T],
    dao: &'a mut [T],
    dag: &'a mut [T],
    dcn: &'a mut [T],
}

#[inline(always)]
fn bwd_gates<T: GateFloat>(r: BwdRow<'_, T>) {
    let h = r.ct.len();
    let one = T::from_f64(1.0);
    for j in 0..h {
        let (i, f, o, g) = (r.a[j].sigm(), r.a[h + j].sigm(), r.a[2 * h + j].sigm(), r.a[3 * h + j].tanhf());
        let tau = r.ct[j].tanhf();
        let dh = r.gh[j] + r.dhn[j];
        let dc = r.dcn[j] + dh * o * (one - tau * tau);
        r.dai[j] = dc * g * i * (one - i);
        r.daf[j] = dc * r.cp[j] * f * (one - f);
        r.dao[j] = dh * tau * o * (one - o);
        r.dag[j] = dc * i * (one - g * g);
        r.dcn[j] = dc * f;
    }
}

// the gate loops vectorise for the CPU's widest SIMD level
algoprog_kernels::simd_dispatch!(fn fwd_gates_dispatch<T: GateFloat>(r: FwdRow<'_, T>) => fwd_gates);
algoprog_kernels::simd_dispatch!(fn bwd_gates_dispatch<T: GateFloat>(r: BwdRow<'_, T>) => bwd_gates);

fn contiguous<'a, T>(data: &'a [T], l: &Layout, what: &str) -> Result<&'a [T]> {
    if !l.is_contiguous() {
        return Err(candle_core::Error::Msg(format!("lstm window: {what} must be contiguous")));
    }
    Ok(&data[l.start_offset()..l.start_offset() + l.shape().elem_count()])
}

/// Whole-window LSTM recurrence: (xp (T, B, 4H), w_hh (4H, H), s0 (B, 3H))
/// → h (T, B, H). The op keeps the whole (T, B, 6H) buffer [h | c | a] for
/// its backward; [`LstmWindow::cell_state`] reads c after a forward.
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
        Self { saved: Default::default(), tbptt: Some(tbptt.max(1)) }
    }
    /// c_t (B, H) at time step `t` of the last forward (not tracked).
    pub fn cell_state(&self, t: usize) -> Result<Tensor> {
        match &*self.saved.lock().unwrap() {
            Some(f) => {
                let h = f.dim(2)? / 6;
                f.get(t)?.narrow(1, h, h)?.contiguous()
            }
            None => Err(candle_core::Error::Msg("lstm window: no forward pass has run".into())),
        }
    }
}

fn window_fwd<T: GateFloat>(
    xp: &[T],
    lx: &Layout,
    w: &[T],
    lw: &Layout,
    s0: &[T],
    ls: &Layout,
) -> Result<(CpuStorage, Shape)> {
    let (xp, w, s0) = (contiguous(xp, lx, "xp")?, contiguous(w, lw, "w_hh")?, contiguous(s0, ls, "s0")?);
    let (tn, b, h4) = lx.shape().dims3()?;
    let h = h4 / 4;
    if lw.dims() != [4 * h, h] || ls.dims() != [b, 3 * h] {
        return Err(candle_core::Error::Msg(format!(
            "lstm window: xp {:?}, w_hh {:?}, s0 {:?} do not match",
            lx.dims(),
            lw.dims(),
            ls.dims()
        )));
    }
    let mut out = vec![T::from_f64(0.0); tn * b * 6 * h];
    let outp = SharedMut::new(&mut out);
    // Batch rows are independent through time: each rayon task runs the
    // whole window for its own group of rows (disjoint rows of `out`).
    row_groups(b).into_par_iter().for_each(|(r0, r1)| {
        let nb = r1 - r0;
        let mask: Vec<T> = (r0 * h..r1 * h).map(|k| s0[(k / h) * 3 * h + 2 * h + k % h]).collect();
        let mut c: Vec<T> = (r0 * h..r1 * h).map(|k| s0[(k / h) * 3 * h + h + k % h]).collect();
        let mut hin: Vec<T> = (r0 * h..r1 * h).map(|k| s0[(k / h) * 3 * h + k % h] * mask[k - r0 * h]).collect();
        for t in 0..tn {
            // SAFETY: rows r0..r1 of time step t belong to this task alone; the
            // slice lies inside `out`, which outlives the parallel loop.
            let rows = unsafe { std::slice::from_raw_parts_mut(outp.get().add((t * b + r0) * 6 * h), nb * 6 * h) };
            for r in 0..nb {
                rows[r * 6 * h + 2 * h..r * 6 * h + 6 * h]
                    .copy_from_slice(&xp[(t * b + r0 + r) * 4 * h..(t * b + r0 + r + 1) * 4 * h]);
            }
            // a_t (nb, 4H), rows 6H apart in `out`: a_t += hin · W_hhᵀ
            // SAFETY: the shapes and strides describe in-bounds views of the three buffers.
            unsafe {
                gemm::gemm(
                    nb,
                    4 * h,
                    h,
                    rows.as_mut_ptr().add(2 * h),
                    1,
                    (6 * h) as isize,
                    true,
                    hin.as_ptr(),
                    1,
                    h as isize,
                    w.as_ptr(),
                    h as isize,
                    1,
                    T::from_f64(1.0),
                    T::from_f64(1.0),
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            for r in 0..nb {
                let (hc, a) = rows[r * 6 * h..(r + 1) * 6 * h].split_at_mut(2 * h);
                let (hout, cout) = hc.split_at_mut(h);
                let (ai, rest) = a.split_at(h);
                let (af, rest) = rest.split_at(h);
                let (ao, ag) = rest.split_at(h);
                let (cr, hr, mr) = (&mut c[r * h..(r + 1) * h], &mut hin[r * h..(r + 1) * h], &mask[r * h..(r + 1) * h]);
                fwd_gates_dispatch(FwdRow { ai, af, ao, ag, c: cr, hout, cout, hin: hr, mask: mr });
            }
        }
    });
    Ok((T::to_cpu_storage_owned(out), Shape::from((tn, b, 6 * h))))
}

/// The h columns of a (T, B, 6H) window buffer: (T, B, H).
fn h_columns<T: WithDType>(full: &[T], rows: usize, h: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(rows * h);
    for r in 0..rows {
        out.extend_from_slice(&full[r * 6 * h..r * 6 * h + h]);
    }
    out
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
        let (full, shape) = match (s1, s2, s3) {
            (CpuStorage::F32(a), CpuStorage::F32(b), CpuStorage::F32(c)) => window_fwd(a, l1, b, l2, c, l3)?,
            (CpuStorage::F64(a), CpuStorage::F64(b), CpuStorage::F64(c)) => window_fwd(a, l1, b, l2, c, l3)?,
            _ => return Err(candle_core::Error::Msg("lstm window: f32 or f64 inputs of one dtype expected".into())),
        };
        let (tn, b, h6) = shape.dims3()?;
        let h = h6 / 6;
        let hs = match &full {
            CpuStorage::F32(v) => CpuStorage::F32(h_columns(v, tn * b, h)),
            CpuStorage::F64(v) => CpuStorage::F64(h_columns(v, tn * b, h)),
            _ => unreachable!("window_fwd returns f32 or f64"),
        };
        let full = match full {
            CpuStorage::F32(v) => Tensor::from_vec(v, (tn, b, 6 * h), &candle_core::Device::Cpu)?,
            CpuStorage::F64(v) => Tensor::from_vec(v, (tn, b, 6 * h), &candle_core::Device::Cpu)?,
            _ => unreachable!("window_fwd returns f32 or f64"),
        };
        *self.saved.lock().unwrap() = Some(full);
        Ok((hs, Shape::from((tn, b, h))))
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
            None => return Err(candle_core::Error::Msg("lstm window backward: the forward pass saved nothing".into())),
        };
        let s0c = s0.contiguous()?;
        let g = full.apply_op3_no_bwd(&s0c, &grad.contiguous()?, &LstmWindowBackward { w_hh: w_hh.copy()?, tbptt: self.tbptt })?;
        let n = tn * b * 4 * h;
        let da = g.narrow(0, 0, n)?.reshape((tn, b, 4 * h))?;
        let dhc = g.narrow(0, n, b * 2 * h)?.reshape((b, 2 * h))?;
        let dw = g.narrow(0, n + b * 2 * h, 4 * h * h)?.reshape((4 * h, h))?;
        // the initial state is usually detached (TBPTT): skip its gradient then
        let ds0 = if s0.track_op() {
            Some(Tensor::cat(&[dhc, Tensor::zeros((b, h), s0.dtype(), s0.device())?], 1)?)
        } else {
            None
        };
        Ok((Some(da), Some(dw), ds0))
    }
}

/// Backward of [`LstmWindow`]: (saved (T, B, 6H), s0 (B, 3H), ∂L/∂h (T, B, H))
/// → flat [δa (T·B·4H) | δh_0, δc_0 (B·2H) | ∂W_hh (4H·H)], with W_hh
/// carried by the op; ∂W_hh = Σ_t δa_tᵀ·(m⊙h_{t−1}) is one matmul.
#[derive(Clone, Debug)]
pub struct LstmWindowBackward {
    pub w_hh: Tensor,
    /// Window length: δh and δc do not cross a multiple of it (see [`LstmWindow::with_tbptt`]).
    pub tbptt: Option<usize>,
}

#[allow(clippy::too_many_arguments)]
fn window_bwd<T: GateFloat>(
    y: &[T],
    ly: &Layout,
    s0: &[T],
    ls: &Layout,
    gy: &[T],
    lg: &Layout,
    w: &Tensor,
    tbptt: Option<usize>,
) -> Result<(CpuStorage, Shape)> {
    let (y, s0, gy) = (contiguous(y, ly, "output")?, contiguous(s0, ls, "s0")?, contiguous(gy, lg, "gradient")?);
    let (tn, b, h6) = ly.shape().dims3()?;
    let h = h6 / 6;
    if lg.dims() != [tn, b, h] {
        return Err(candle_core::Error::Msg(format!("lstm window backward: gradient {:?} for h ({tn}, {b}, {h})", lg.dims())));
    }
    let zero = T::from_f64(0.0);
    let one = T::from_f64(1.0);
    let w: Vec<T> = w.flatten_all()?.to_vec1()?;
    // [δa (T·B·4H) | δh_0, δc_0 (B·2H)], filled by row groups in parallel
    let mut out = vec![zero; tn * b * 4 * h + b * 2 * h + 4 * h * h];
    let outp = SharedMut::new(&mut out);
    row_groups(b).into_par_iter().for_each(|(r0, r1)| {
        let nb = r1 - r0;
        let mask: Vec<T> = (r0 * h..r1 * h).map(|k| s0[(k / h) * 3 * h + 2 * h + k % h]).collect();
        let c0: Vec<T> = (r0 * h..r1 * h).map(|k| s0[(k / h) * 3 * h + h + k % h]).collect();
        let mut dh_next = vec![zero; nb * h];
        let mut dc_next = vec![zero; nb * h];
        let mut dhin = vec![zero; nb * h];
        for t in (0..tn).rev() {
            // SAFETY: rows r0..r1 of δa_t belong to this task alone, inside `out`.
            let da_t = unsafe { std::slice::from_raw_parts_mut(outp.get().add((t * b + r0) * 4 * h), nb * 4 * h) };
            for r in 0..nb {
                let rr = r0 + r;
                let row = &y[(t * b + rr) * 6 * h..(t * b + rr + 1) * 6 * h];
                let (ct, a) = (&row[h..2 * h], &row[2 * h..]);
                let cp = if t > 0 {
                    &y[((t - 1) * b + rr) * 6 * h + h..((t - 1) * b + rr) * 6 * h + 2 * h]
                } else {
                    &c0[r * h..(r + 1) * h]
                };
                let gh = &gy[(t * b + rr) * h..(t * b + rr + 1) * h];
                let drow = &mut da_t[r * 4 * h..(r + 1) * 4 * h];
                let (dai, rest) = drow.split_at_mut(h);
                let (daf, rest) = rest.split_at_mut(h);
                let (dao, dag) = rest.split_at_mut(h);
                let (dhn, dcn) = (&dh_next[r * h..(r + 1) * h], &mut dc_next[r * h..(r + 1) * h]);
                bwd_gates_dispatch(BwdRow { a, ct, cp, gh, dhn, dai, daf, dao, dag, dcn });
            }
            // δhin = δa_t · W_hh: (nb, 4H)·(4H, H)
            // SAFETY: the shapes and strides describe in-bounds views of the three buffers.
            unsafe {
                gemm::gemm(
                    nb,
                    h,
                    4 * h,
                    dhin.as_mut_ptr(),
                    1,
                    h as isize,
                    false,
                    da_t.as_ptr(),
                    1,
                    (4 * h) as isize,
                    w.as_ptr(),
                    1,
                    h as isize,
                    T::from_f64(0.0),
                    T::from_f64(1.0),
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            if tbptt.is_some_and(|w| t % w == 0) {
                // t starts a window: nothing flows into the previous one
                dh_next.fill(zero);
                dc_next.fill(zero);
                continue;
            }
            for k in 0..nb * h {
                dh_next[k] = dhin[k] * mask[k];
            }
        }
        // SAFETY: rows r0..r1 of the trailing [δh_0 | δc_0] block belong to this task.
        let tail = unsafe { std::slice::from_raw_parts_mut(outp.get().add(tn * b * 4 * h + r0 * 2 * h), nb * 2 * h) };
        for r in 0..nb {
            tail[r * 2 * h..r * 2 * h + h].copy_from_slice(&dh_next[r * h..(r + 1) * h]);
            tail[r * 2 * h + h..(r + 1) * 2 * h].copy_from_slice(&dc_next[r * h..(r + 1) * h]);
        }
    });
    // ∂W_hh = δAᵀ·Hin, δA (T·B × 4H), Hin (T·B × H) with rows m⊙h_{t−1}
    let rows = tn * b;
    let mut hin = vec![zero; rows * h];
    for t in 0..tn {
        for r in 0..b {
            let dst = &mut hin[(t * b + r) * h..(t * b + r + 1) * h];
            let src = if t > 0 { &y[((t - 1) * b + r) * 6 * h..((t - 1) * b + r) * 6 * h + h] } else { &s0[r * 3 * h..r * 3 * h + h] };
            let m = &s0[r * 3 * h + 2 * h..(r + 1) * 3 * h];
            for j in 0..h {
                dst[j] = src[j] * m[j];
            }
        }
    }
    let (da, rest) = out.split_at_mut(rows * 4 * h);
    let dw = &mut rest[b * 2 * h..];
    // SAFETY: δA is rows×4H, Hin rows×H, ∂W_hh 4H×H, all inside their buffers.
    unsafe {
        gemm::gemm(
            4 * h,
            h,
            rows,
            dw.as_mut_ptr(),
            1,
            h as isize,
            false,
            da.as_ptr(),
            (4 * h) as isize,
            1,
            hin.as_ptr(),
            1,
            h as isize,
            zero,
            one,
            false,
            false,
            false,
            gemm::Parallelism::Rayon(rayon::current_num_threads().max(1)),
        );
    }
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
            (CpuStorage::F32(a), CpuStorage::F32(b), CpuStorage::F32(c)) => window_bwd(a, l1, b, l2, c, l3, &self.w_hh, self.tbptt),
            (CpuStorage::F64(a), CpuStorage::F64(b), CpuStorage::F64(c)) => window_bwd(a, l1, b, l2, c, l3, &self.w_hh, self.tbptt),
            _ => Err(candle_core::Error::Msg("lstm window backward: f32 or f64 inputs of one dtype expected".into())),
        }
    }
}
