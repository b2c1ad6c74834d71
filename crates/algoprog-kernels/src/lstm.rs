//! The LSTM recurrence of one layer over a TBPTT window, forward and
//! backward (backpropagation through time), on plain slices of f32 or f64.
//!
//! Why one kernel for the whole window: composed from tensor ops, every time
//! step adds ~10 autograd nodes, and the backward of "take step t's rows of
//! the window's input projection" materialises a zero-padded gradient of the
//! whole window at every step (O(T²) memory traffic per window). Here the
//! time loop is plain Rust around one (B × H)·(H × 4H) matmul per step
//! forward and one (B × 4H)·(4H × H) per step backward, both single-threaded
//! ([`GateFloat::rows_matmul`]: in f32 on AVX-512 the few-row kernel of
//! [`crate::small_mm`], which reads W_hh in place instead of re-packing it
//! every step; `gemm` otherwise). The batch rows are split into one group
//! per rayon thread, each group running the whole window on its own core (at
//! these sizes waking a thread pool each step costs more than it saves,
//! badly so on a loaded machine); W_hh's gradient is one (4H × T·B)·(T·B ×
//! H) matmul after the loop.
//!
//! Forward ([`window_forward`]), gate order (i, f, o, g):
//! - `xp` (T, B, 4H): the window's input projections W_ih·x_t + b,
//! - `w_hh` (4H, H),
//! - `s0` (B, 3H) = [h_0 | c_0 | m]: the initial state and the hidden-dropout
//!   mask m (ones when inactive).
//!
//! For t = 1..T: a_t = xp_t + (m⊙h_{t−1})·W_hhᵀ, i, f, o = σ(a_i, a_f, a_o),
//! g = tanh(a_g), c_t = f⊙c_{t−1} + i⊙g, h_t = o⊙tanh(c_t). The result is
//! the (T, B, 6H) buffer [h_t | c_t | (i, f, o, g)_t]: the activated gates
//! are kept for the backward, which then evaluates one non-linearity per
//! element (tanh c_t) instead of five, and no matmul again.
//!
//! Backward ([`window_backward`]), for t = T..1 with δh, δc carried:
//! δh ← ∂L/∂h_t + δh_next, δc ← δc_next + δh⊙o⊙(1 − tanh²c_t), δa_t from
//! the cell formulas, δc_next = δc⊙f, δh_next = m⊙(δa_t·W_hh). Then
//! ∂L/∂xp = δa, ∂L/∂W_hh = Σ_t δa_tᵀ·(m⊙h_{t−1}), ∂L/∂(h_0, c_0) =
//! (δh_next, δc_next) after t = 1.
//!
//! With `tbptt = Some(w)` one call runs a sequence of several windows of w
//! steps: the forward carries the state across window boundaries (as the
//! detached state of the next window would; the forward does not depend on
//! `tbptt`), and the backward stops δh and δc at each boundary, exactly as
//! detaching the state between windows does.
//!
//! The gate non-linearities run in the kernel's precision ([`GateFloat`]):
//! libm for f64 (the exact reference), the branch-free [`sigmoid_f32`] and
//! [`tanh_f32`] for f32, which vectorise (relative error ≈ 1e-7, below f32
//! rounding of the results).

use crate::act::{sigmoid_f32, tanh_f32};
use crate::SharedMut;
use rayon::prelude::*;
use std::ops::{Add, Mul, Sub};

/// A float the LSTM kernels run in (f32 or f64), with its gate non-linearities.
pub trait GateFloat:
    Copy + Send + Sync + 'static + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    /// σ(x) = 1/(1 + e^{−x}).
    fn sigm(self) -> Self;
    /// tanh(x).
    fn tanhf(self) -> Self;
    /// The time loop's product: c (m×n, row stride ldc) = a·b, or += with
    /// `accumulate`; a (m×k, row stride lda), b (k×n, row stride ldb). The
    /// `gemm` crate's, single-threaded (f32 overrides it with
    /// [`crate::small_mm::matmul_rows`]).
    #[allow(clippy::too_many_arguments)]
    fn rows_matmul(
        c: &mut [Self],
        ldc: usize,
        a: &[Self],
        lda: usize,
        b: &[Self],
        ldb: usize,
        (m, k, n): (usize, usize, usize),
        accumulate: bool,
    ) {
        if m == 0 || n == 0 {
            return;
        }
        assert!(
            c.len() >= (m - 1) * ldc + n
                && (k == 0 || a.len() >= (m - 1) * lda + k)
                && (k == 0 || b.len() >= (k - 1) * ldb + n),
            "lstm: product operands too short"
        );
        // SAFETY: the assert bounds every element the strides reach.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                ldc as isize,
                accumulate,
                a.as_ptr(),
                1,
                lda as isize,
                b.as_ptr(),
                1,
                ldb as isize,
                Self::ONE,
                Self::ONE,
                false,
                false,
                false,
                gemm::Parallelism::None,
            )
        }
    }
}

impl GateFloat for f64 {
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
    #[inline]
    fn sigm(self) -> f64 {
        1.0 / (1.0 + (-self).exp())
    }
    #[inline]
    fn tanhf(self) -> f64 {
        self.tanh()
    }
}

impl GateFloat for f32 {
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;
    #[inline(always)]
    fn sigm(self) -> f32 {
        sigmoid_f32(self)
    }
    #[inline(always)]
    fn tanhf(self) -> f32 {
        tanh_f32(self)
    }
    fn rows_matmul(
        c: &mut [f32],
        ldc: usize,
        a: &[f32],
        lda: usize,
        b: &[f32],
        ldb: usize,
        (m, k, n): (usize, usize, usize),
        accumulate: bool,
    ) {
        use crate::matmul::Mat;
        let (a, b) = (Mat::strided(a, m, k, lda), Mat::strided(b, k, n, ldb));
        crate::small_mm::matmul_rows(c, ldc, a, b, accumulate)
    }
}

/// Batch rows split into one contiguous group per rayon thread (at most b
/// groups), so the time loop of each group runs on its own core.
fn row_groups(b: usize) -> Vec<(usize, usize)> {
    let g = rayon::current_num_threads().clamp(1, b.max(1));
    (0..g)
        .map(|i| (i * b / g, (i + 1) * b / g))
        .filter(|(a, z)| z > a)
        .collect()
}

/// One row of the forward cell update (slices of length H).
struct FwdRow<'a, T> {
    ai: &'a mut [T],
    af: &'a mut [T],
    ao: &'a mut [T],
    ag: &'a mut [T],
    c: &'a mut [T],
    hout: &'a mut [T],
    cout: &'a mut [T],
    hin: &'a mut [T],
    mask: &'a [T],
}

#[inline(always)]
fn fwd_gates<T: GateFloat>(r: FwdRow<'_, T>) {
    let h = r.c.len();
    // every slice cut to exactly h, so the loop has no bounds checks and
    // vectorises
    let (ai, af, ao, ag) = (
        &mut r.ai[..h],
        &mut r.af[..h],
        &mut r.ao[..h],
        &mut r.ag[..h],
    );
    let (c, hout, cout, hin, mask) = (
        r.c,
        &mut r.hout[..h],
        &mut r.cout[..h],
        &mut r.hin[..h],
        &r.mask[..h],
    );
    for j in 0..h {
        let (i, f, o, g) = (ai[j].sigm(), af[j].sigm(), ao[j].sigm(), ag[j].tanhf());
        // the activated gates replace the pre-activations: the backward
        // reads them instead of evaluating four non-linearities again
        (ai[j], af[j], ao[j], ag[j]) = (i, f, o, g);
        let cn = f * c[j] + i * g;
        let hn = o * cn.tanhf();
        c[j] = cn;
        cout[j] = cn;
        hout[j] = hn;
        hin[j] = hn * mask[j];
    }
}

/// One row of the backward cell update: `gates` the 4H activated gates
/// (i, f, o, g) the forward saved, the rest length H.
struct BwdRow<'a, T> {
    gates: &'a [T],
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
    let one = T::ONE;
    // every slice cut to exactly h (see fwd_gates)
    let (gi, rest) = r.gates.split_at(h);
    let (gf, rest) = rest.split_at(h);
    let (go, gg) = rest.split_at(h);
    let (gg, ct, cp, gh, dhn) = (&gg[..h], &r.ct[..h], &r.cp[..h], &r.gh[..h], &r.dhn[..h]);
    let (dai, daf, dao, dag) = (
        &mut r.dai[..h],
        &mut r.daf[..h],
        &mut r.dao[..h],
        &mut r.dag[..h],
    );
    let dcn = &mut r.dcn[..h];
    for j in 0..h {
        let (i, f, o, g) = (gi[j], gf[j], go[j], gg[j]);
        let tau = ct[j].tanhf();
        let dh = gh[j] + dhn[j];
        let dc = dcn[j] + dh * o * (one - tau * tau);
        dai[j] = dc * g * i * (one - i);
        daf[j] = dc * cp[j] * f * (one - f);
        dao[j] = dh * tau * o * (one - o);
        dag[j] = dc * i * (one - g * g);
        dcn[j] = dc * f;
    }
}

// the gate loops vectorise for the CPU's widest SIMD level
crate::simd_dispatch!(fn fwd_gates_dispatch<T: GateFloat>(r: FwdRow<'_, T>) => fwd_gates);
crate::simd_dispatch!(fn bwd_gates_dispatch<T: GateFloat>(r: BwdRow<'_, T>) => bwd_gates);

/// The window forward: `xp` (T·B·4H), `w_hh` (4H·H), `s0` (B·3H), all
/// row-major, with T = `tn`, B = `b`, H = `h`. Returns the (T, B, 6H)
/// buffer [h_t | c_t | (i, f, o, g)_t] (the activated gates) that
/// [`window_backward`] takes (see the module docs); [`h_columns`] cuts the
/// outputs h_t from it.
///
/// # Panics
/// If a slice's length does not match the dimensions.
pub fn window_forward<T: GateFloat>(
    xp: &[T],
    w_hh: &[T],
    s0: &[T],
    tn: usize,
    b: usize,
    h: usize,
) -> Vec<T> {
    assert_eq!(
        xp.len(),
        tn * b * 4 * h,
        "lstm window: xp is not (T, B, 4H)"
    );
    assert_eq!(w_hh.len(), 4 * h * h, "lstm window: w_hh is not (4H, H)");
    assert_eq!(s0.len(), b * 3 * h, "lstm window: s0 is not (B, 3H)");
    // W_hhᵀ (H, 4H), so the time loop's product reads it row by row
    let mut wt = vec![T::ZERO; 4 * h * h];
    for (j, row) in w_hh.chunks_exact(h.max(1)).enumerate() {
        for (k, &x) in row.iter().enumerate() {
            wt[k * 4 * h + j] = x;
        }
    }
    let mut out = vec![T::ZERO; tn * b * 6 * h];
    let outp = SharedMut::new(&mut out);
    // Batch rows are independent through time: each rayon task runs the
    // whole window for its own group of rows (disjoint rows of `out`).
    row_groups(b).into_par_iter().for_each(|(r0, r1)| {
        let nb = r1 - r0;
        let mask: Vec<T> = (r0 * h..r1 * h)
            .map(|k| s0[(k / h) * 3 * h + 2 * h + k % h])
            .collect();
        let mut c: Vec<T> = (r0 * h..r1 * h)
            .map(|k| s0[(k / h) * 3 * h + h + k % h])
            .collect();
        let mut hin: Vec<T> = (r0 * h..r1 * h)
            .map(|k| s0[(k / h) * 3 * h + k % h] * mask[k - r0 * h])
            .collect();
        for t in 0..tn {
            // SAFETY: rows r0..r1 of time step t belong to this task alone; the
            // slice lies inside `out`, which outlives the parallel loop.
            let rows = unsafe {
                std::slice::from_raw_parts_mut(outp.get().add((t * b + r0) * 6 * h), nb * 6 * h)
            };
            for r in 0..nb {
                rows[r * 6 * h + 2 * h..r * 6 * h + 6 * h]
                    .copy_from_slice(&xp[(t * b + r0 + r) * 4 * h..(t * b + r0 + r + 1) * 4 * h]);
            }
            // a_t (nb, 4H), rows 6H apart in `out`: a_t += hin · W_hhᵀ
            T::rows_matmul(
                &mut rows[2 * h..],
                6 * h,
                &hin,
                h,
                &wt,
                4 * h,
                (nb, h, 4 * h),
                true,
            );
            for r in 0..nb {
                let (hc, a) = rows[r * 6 * h..(r + 1) * 6 * h].split_at_mut(2 * h);
                let (hout, cout) = hc.split_at_mut(h);
                let (ai, rest) = a.split_at_mut(h);
                let (af, rest) = rest.split_at_mut(h);
                let (ao, ag) = rest.split_at_mut(h);
                let (cr, hr, mr) = (
                    &mut c[r * h..(r + 1) * h],
                    &mut hin[r * h..(r + 1) * h],
                    &mask[r * h..(r + 1) * h],
                );
                fwd_gates_dispatch(FwdRow {
                    ai,
                    af,
                    ao,
                    ag,
                    c: cr,
                    hout,
                    cout,
                    hin: hr,
                    mask: mr,
                });
            }
        }
    });
    out
}

/// The h columns of `rows` rows of a (rows, 6H) window buffer: (rows, H).
pub fn h_columns<T: Copy>(full: &[T], rows: usize, h: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(rows * h);
    for r in 0..rows {
        out.extend_from_slice(&full[r * 6 * h..r * 6 * h + h]);
    }
    out
}

/// The window backward: `y` the (T, B, 6H) buffer of [`window_forward`],
/// `s0` (B·3H) its initial state and mask, `gy` = ∂L/∂h (T·B·H), `w_hh`
/// (4H·H). Returns one flat buffer [δa = ∂L/∂xp (T·B·4H) | ∂L/∂(h_0, c_0)
/// as rows [δh_0 | δc_0] (B·2H) | ∂L/∂W_hh (4H·H)]. With `tbptt = Some(w)`,
/// δh and δc do not cross a multiple of w (see the module docs).
///
/// # Panics
/// If a slice's length does not match the dimensions.
#[allow(clippy::too_many_arguments)]
pub fn window_backward<T: GateFloat>(
    y: &[T],
    s0: &[T],
    gy: &[T],
    w_hh: &[T],
    tn: usize,
    b: usize,
    h: usize,
    tbptt: Option<usize>,
) -> Vec<T> {
    assert_eq!(
        y.len(),
        tn * b * 6 * h,
        "lstm window backward: saved buffer is not (T, B, 6H)"
    );
    assert_eq!(
        s0.len(),
        b * 3 * h,
        "lstm window backward: s0 is not (B, 3H)"
    );
    assert_eq!(
        gy.len(),
        tn * b * h,
        "lstm window backward: gradient is not (T, B, H)"
    );
    assert_eq!(
        w_hh.len(),
        4 * h * h,
        "lstm window backward: w_hh is not (4H, H)"
    );
    let w = w_hh;
    let zero = T::ZERO;
    let one = T::ONE;
    // [δa (T·B·4H) | δh_0, δc_0 (B·2H)], filled by row groups in parallel
    let mut out = vec![zero; tn * b * 4 * h + b * 2 * h + 4 * h * h];
    let outp = SharedMut::new(&mut out);
    row_groups(b).into_par_iter().for_each(|(r0, r1)| {
        let nb = r1 - r0;
        let mask: Vec<T> = (r0 * h..r1 * h)
            .map(|k| s0[(k / h) * 3 * h + 2 * h + k % h])
            .collect();
        let c0: Vec<T> = (r0 * h..r1 * h)
            .map(|k| s0[(k / h) * 3 * h + h + k % h])
            .collect();
        let mut dh_next = vec![zero; nb * h];
        let mut dc_next = vec![zero; nb * h];
        let mut dhin = vec![zero; nb * h];
        for t in (0..tn).rev() {
            // SAFETY: rows r0..r1 of δa_t belong to this task alone, inside `out`.
            let da_t = unsafe {
                std::slice::from_raw_parts_mut(outp.get().add((t * b + r0) * 4 * h), nb * 4 * h)
            };
            for r in 0..nb {
                let rr = r0 + r;
                let row = &y[(t * b + rr) * 6 * h..(t * b + rr + 1) * 6 * h];
                let (ct, gates) = (&row[h..2 * h], &row[2 * h..]);
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
                let (dhn, dcn) = (
                    &dh_next[r * h..(r + 1) * h],
                    &mut dc_next[r * h..(r + 1) * h],
                );
                bwd_gates_dispatch(BwdRow {
                    gates,
                    ct,
                    cp,
                    gh,
                    dhn,
                    dai,
                    daf,
                    dao,
                    dag,
                    dcn,
                });
            }
            // δhin = δa_t · W_hh: (nb, 4H)·(4H, H)
            T::rows_matmul(&mut dhin, h, da_t, 4 * h, w, h, (nb, 4 * h, h), false);
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
        let tail = unsafe {
            std::slice::from_raw_parts_mut(outp.get().add(tn * b * 4 * h + r0 * 2 * h), nb * 2 * h)
        };
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
            let src = if t > 0 {
                &y[((t - 1) * b + r) * 6 * h..((t - 1) * b + r) * 6 * h + h]
            } else {
                &s0[r * 3 * h..r * 3 * h + h]
            };
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn uniform(n: usize, scale: f64, rng: &mut ChaCha8Rng) -> Vec<f64> {
        (0..n)
            .map(|_| scale * (2.0 * rng.random::<f64>() - 1.0))
            .collect()
    }

    /// The recurrence written step by step from the formulas, in f64: h (T, B, H).
    fn naive(xp: &[f64], w: &[f64], s0: &[f64], tn: usize, b: usize, h: usize) -> Vec<f64> {
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        let mut out = vec![0.0; tn * b * h];
        for r in 0..b {
            let m = &s0[r * 3 * h + 2 * h..(r + 1) * 3 * h];
            let mut hp: Vec<f64> = s0[r * 3 * h..r * 3 * h + h].to_vec();
            let mut c: Vec<f64> = s0[r * 3 * h + h..r * 3 * h + 2 * h].to_vec();
            for t in 0..tn {
                let a: Vec<f64> = (0..4 * h)
                    .map(|k| {
                        xp[(t * b + r) * 4 * h + k]
                            + (0..h).map(|j| w[k * h + j] * m[j] * hp[j]).sum::<f64>()
                    })
                    .collect();
                for j in 0..h {
                    c[j] = sig(a[h + j]) * c[j] + sig(a[j]) * a[3 * h + j].tanh();
                    hp[j] = sig(a[2 * h + j]) * c[j].tanh();
                    out[(t * b + r) * h + j] = hp[j];
                }
            }
        }
        out
    }

    /// Inputs of a (T, B, H) window with a hidden-dropout mask of 0s and 2s.
    fn inputs(tn: usize, b: usize, h: usize, seed: u64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let xp = uniform(tn * b * 4 * h, 1.0, &mut rng);
        let w = uniform(4 * h * h, 0.6, &mut rng);
        let mut s0 = uniform(b * 3 * h, 0.8, &mut rng);
        for r in 0..b {
            for j in 0..h {
                s0[r * 3 * h + 2 * h + j] = if (r + j) % 3 == 0 { 0.0 } else { 2.0 };
            }
        }
        (xp, w, s0)
    }

    #[test]
    fn forward_matches_the_formulas_in_f64_and_f32() {
        let (tn, b, h) = (5, 3, 4);
        let (xp, w, s0) = inputs(tn, b, h, 1);
        let want = naive(&xp, &w, &s0, tn, b, h);
        let got = h_columns(&window_forward(&xp, &w, &s0, tn, b, h), tn * b, h);
        let err = got
            .iter()
            .zip(&want)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, crate::max_or_nan);
        assert!(err < 1e-14, "f64: {err}");
        let f = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        let got = h_columns(
            &window_forward(&f(&xp), &f(&w), &f(&s0), tn, b, h),
            tn * b,
            h,
        );
        let err = got
            .iter()
            .zip(&want)
            .map(|(&x, y)| (x as f64 - y).abs())
            .fold(0.0, crate::max_or_nan);
        assert!(err < 2e-6, "f32: {err}");
    }

    /// ∂/∂xp, ∂/∂W_hh and ∂/∂(h_0, c_0) of L = Σ gy·h against central differences (f64).
    #[test]
    fn backward_matches_finite_differences() {
        let (tn, b, h) = (4, 2, 3);
        let (xp, w, s0) = inputs(tn, b, h, 2);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let gy = uniform(tn * b * h, 1.0, &mut rng);
        let loss = |xp: &[f64], w: &[f64], s0: &[f64]| -> f64 {
            let y = h_columns(&window_forward(xp, w, s0, tn, b, h), tn * b, h);
            y.iter().zip(&gy).map(|(a, g)| a * g).sum()
        };
        let g = window_backward(
            &window_forward(&xp, &w, &s0, tn, b, h),
            &s0,
            &gy,
            &w,
            tn,
            b,
            h,
            None,
        );
        let (dxp, rest) = g.split_at(tn * b * 4 * h);
        let (ds0, dw) = rest.split_at(b * 2 * h);
        let eps = 1e-6;
        let fd = |which: usize, i: usize| {
            let mut v = [xp.clone(), w.clone(), s0.clone()];
            v[which][i] += eps;
            let up = loss(&v[0], &v[1], &v[2]);
            v[which][i] -= 2.0 * eps;
            (up - loss(&v[0], &v[1], &v[2])) / (2.0 * eps)
        };
        let mut worst = 0.0f64;
        for (i, d) in dxp.iter().enumerate() {
            worst = worst.max((d - fd(0, i)).abs());
        }
        for (i, d) in dw.iter().enumerate() {
            worst = worst.max((d - fd(1, i)).abs());
        }
        for r in 0..b {
            for j in 0..2 * h {
                worst = worst.max((ds0[r * 2 * h + j] - fd(2, r * 3 * h + j)).abs());
            }
        }
        assert!(worst < 1e-8, "max |analytic − finite difference| = {worst}");
    }

    /// With `tbptt`, the gradient of each window is the gradient of that window
    /// run on its own from the carried state: nothing crosses a boundary.
    #[test]
    fn tbptt_cuts_the_gradient_at_window_boundaries() {
        let (tn, b, h, win) = (6, 2, 3, 2);
        let (xp, w, s0) = inputs(tn, b, h, 4);
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let gy = uniform(tn * b * h, 1.0, &mut rng);
        let full = window_forward(&xp, &w, &s0, tn, b, h);
        let g = window_backward(&full, &s0, &gy, &w, tn, b, h, Some(win));
        assert!(
            g[tn * b * 4 * h..tn * b * 4 * h + b * 2 * h]
                .iter()
                .all(|&x| x == 0.0),
            "no gradient into s0"
        );
        let mut dw_sum = vec![0.0; 4 * h * h];
        for k in 0..tn / win {
            // the window's own start state: h, c at the step before it, the same mask
            let mut s = s0.clone();
            if k > 0 {
                for r in 0..b {
                    let prev = &full[((k * win - 1) * b + r) * 6 * h..];
                    s[r * 3 * h..r * 3 * h + 2 * h].copy_from_slice(&prev[..2 * h]);
                }
            }
            let xs = &xp[k * win * b * 4 * h..(k + 1) * win * b * 4 * h];
            let gs = &gy[k * win * b * h..(k + 1) * win * b * h];
            let own = window_backward(
                &window_forward(xs, &w, &s, win, b, h),
                &s,
                gs,
                &w,
                win,
                b,
                h,
                None,
            );
            let da = &g[k * win * b * 4 * h..(k + 1) * win * b * 4 * h];
            let err = da
                .iter()
                .zip(&own[..win * b * 4 * h])
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, crate::max_or_nan);
            assert!(err < 1e-13, "window {k}: {err}");
            for (acc, x) in dw_sum.iter_mut().zip(&own[win * b * 4 * h + b * 2 * h..]) {
                *acc += x;
            }
        }
        let dw = &g[tn * b * 4 * h + b * 2 * h..];
        let err = dw
            .iter()
            .zip(&dw_sum)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, crate::max_or_nan);
        assert!(err < 1e-12, "∂W_hh is the sum over windows: {err}");
    }
}
