//! Vectorised row primitives (max, exp-and-sum, scale) with run-time SIMD
//! dispatch.
//!
//! Each primitive is written once as plain Rust with 16 independent
//! accumulator lanes (so the compiler may vectorise a float reduction
//! without reordering a single chain), then compiled three times: for
//! AVX-512, for AVX2+FMA, and for the baseline. The first call picks the
//! widest the CPU has (`is_x86_feature_detected!`), so one binary runs on
//! any x86-64 (and on other architectures through the baseline).
//!
//! [`exp`] is a polynomial exp accurate to about 2 ulp over the range
//! softmax uses (arguments ≤ 0 after the max shift; clamped below at −87.3,
//! where it returns ≈ 1e−38 instead of a subnormal).

/// Sets the calling thread's SSE/AVX control register to flush subnormal
/// results to zero and to read subnormal inputs as zero (FTZ and DAZ; a
/// no-op off x86-64). The default of TensorFlow and XLA on CPUs, opt-in in
/// PyTorch (`torch.set_flush_denormal`).
///
/// Why: an f32 operation with a subnormal operand or result (below
/// 1.18e-38) takes a microcode assist, about a hundred times the normal
/// latency. Training produces them where values decay geometrically: Adam's
/// second moment of a gradient that has gone to ~1e-20, probabilities of
/// tokens a model rules out. Measured in the `quick` study (one thread per
/// run): its runs at a learning rate of 3.16e-2 trained at 30–100k tokens/s
/// against 180–200k for the same models at lower rates. A value that small
/// is 30 orders of magnitude below the weights and gradients it is added to,
/// so flushing it changes no result beyond rounding; `ALGOPROG_KEEP_DENORMALS=1`
/// (read by `algoprog_train::runtime`) keeps IEEE behaviour for a user who
/// wants to compare.
pub fn flush_denormals() {
    #[cfg(target_arch = "x86_64")]
    {
        let mut csr: u32 = 0;
        // SAFETY: stmxcsr/ldmxcsr read and write this thread's MXCSR through
        // a valid u32; setting FTZ (bit 15) and DAZ (bit 6) changes only how
        // subnormal floats are treated.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
            csr |= (1 << 15) | (1 << 6);
            std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, preserves_flags));
        }
    }
}

/// Accumulator lanes of the row reductions (one AVX-512 register of f32).
pub(crate) const LANES: usize = 16;
const LOG2E: f32 = std::f32::consts::LOG2_E;
/// ln 2 split so k·LN2_HI is exact for |k| < 2⁹.
const LN2_HI: f32 = 0.693_145_75;
const LN2_LO: f32 = 1.428_606_8e-6;
/// 1.5·2²³: adding it rounds an f32 of magnitude < 2²² to an integer, which
/// then sits in the low mantissa bits.
const MAGIC: f32 = 12_582_912.0;

/// e^x for x in [−87.3, 88.3] (clamped outside), branch-free so loops over
/// it vectorise. Relative error below 3e−7.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.3);
    let t = x * LOG2E;
    let shifted = t + MAGIC;
    let k = shifted - MAGIC; // round(t)
    let ki = (shifted.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    // Cody–Waite: f = x − k·ln2 in two parts, exact enough for |k| ≤ 127
    let f = (x - k * LN2_HI) - k * LN2_LO; // |f| ≤ ln2/2
                                           // e^f, Taylor to degree 7 (error < 2e−8 on |f| ≤ 0.347)
    let p = 1.0
        + f * (1.0
            + f * (0.5
                + f * (1.0 / 6.0
                    + f * (1.0 / 24.0
                        + f * (1.0 / 120.0 + f * (1.0 / 720.0 + f * (1.0 / 5040.0)))))));
    p * f32::from_bits(((ki + 127) << 23) as u32)
}

/// The AVX-512 lane mask of the first `lanes` of 16 lanes (all 16 from 16 up).
#[inline(always)]
pub(crate) fn lane_mask(lanes: usize) -> u16 {
    ((1u32 << lanes.min(16)) - 1) as u16
}

// ---- lane reductions -------------------------------------------------------
// The shared bodies of every row reduction in this crate (here, `attention`,
// `norm`): 16 accumulator lanes, lane l folding elements l, l + 16, ...; the
// tail shorter than 16 is left to the caller, and so is the order in which
// the lanes are added (in order here and in `attention`, pairwise in `norm`),
// so each kernel keeps its exact rounding.

/// Folds `f` over `x` in [`LANES`] lanes from `init`: lane l accumulates
/// x[l], x[l + 16], ... Returns the lanes and the unfolded tail (< 16 elements).
#[inline(always)]
pub(crate) fn lanes_fold(
    x: &[f32],
    init: f32,
    f: impl Fn(f32, f32) -> f32,
) -> ([f32; LANES], &[f32]) {
    let mut acc = [init; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            acc[l] = f(acc[l], c[l]);
        }
    }
    (acc, rest)
}

/// [`lanes_fold`] over the pairs (a[i], b[i]) up to the shorter length;
/// returns the lanes and the two tails (of equal length).
#[inline(always)]
pub(crate) fn lanes_fold2<'a>(
    a: &'a [f32],
    b: &'a [f32],
    init: f32,
    f: impl Fn(f32, f32, f32) -> f32,
) -> ([f32; LANES], &'a [f32], &'a [f32]) {
    let n = a.len().min(b.len());
    let (ca, cb) = (a[..n].chunks_exact(LANES), b[..n].chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    let mut acc = [init; LANES];
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] = f(acc[l], x[l], y[l]);
        }
    }
    (acc, ra, rb)
}

/// The lanes added pairwise (lane l + 8 into l, then l + 4, ...).
#[inline(always)]
pub(crate) fn sum_pairwise(acc: [f32; LANES]) -> f32 {
    let mut w = acc;
    let mut n = LANES;
    while n > 1 {
        n /= 2;
        for j in 0..n {
            w[j] += w[j + n];
        }
    }
    w[0]
}

/// The larger of two floats as `b > a ? b : a` (a NaN `b` is skipped), which
/// compiles to one vector max instruction.
#[inline(always)]
fn max_gt(a: f32, b: f32) -> f32 {
    if b > a {
        b
    } else {
        a
    }
}

/// max of a slice (−∞ when empty); the body of [`max`], for other kernels' loops.
#[inline(always)]
pub(crate) fn max_impl(x: &[f32]) -> f32 {
    let (acc, rest) = lanes_fold(x, f32::NEG_INFINITY, max_gt);
    acc.iter()
        .chain(rest)
        .fold(f32::NEG_INFINITY, |m, &v| max_gt(m, v))
}

#[inline(always)]
fn exp_sum_impl(x: &mut [f32], shift: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = x.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for l in 0..LANES {
            let e = exp(c[l] - shift);
            c[l] = e;
            acc[l] += e;
        }
    }
    let mut s: f32 = acc.iter().sum();
    for v in chunks.into_remainder() {
        *v = exp(*v - shift);
        s += *v;
    }
    s
}

#[inline(always)]
fn sum_exp_impl(x: &[f32], shift: f32) -> f32 {
    let (acc, rest) = lanes_fold(x, 0.0, |s, v| s + exp(v - shift));
    let mut s: f32 = acc.iter().sum();
    for &v in rest {
        s += exp(v - shift);
    }
    s
}

#[inline(always)]
fn scale_impl(x: &mut [f32], k: f32) {
    for v in x.iter_mut() {
        *v *= k;
    }
}

/// Σ aᵢ·bᵢ over the shorter length, lanes added in order; the body of
/// [`dot`], for other kernels' loops.
#[inline(always)]
pub(crate) fn dot_impl(a: &[f32], b: &[f32]) -> f32 {
    let (acc, ra, rb) = lanes_fold2(a, b, 0.0, |s, x, y| s + x * y);
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// The SIMD level chosen at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Simd {
    /// AVX-512 F, VL, DQ and BW (with AVX2 and FMA).
    Avx512,
    /// AVX2 and FMA.
    Avx2,
    Baseline,
}

/// The widest SIMD level this CPU supports (detected once).
pub fn simd() -> Simd {
    use std::sync::OnceLock;
    static LEVEL: OnceLock<Simd> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx512dq")
                && std::arch::is_x86_feature_detected!("avx512bw")
            {
                return Simd::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Simd::Avx2;
            }
        }
        Simd::Baseline
    })
}

/// Defines `$vis fn $name<T: Bound>(args) -> ret` (generic parameter and
/// return type optional) that calls `$body(args)` compiled for the CPU's
/// widest SIMD level ([`simd`]): AVX-512, AVX2+FMA or the baseline build.
/// `$body` must be `#[inline(always)]` so its loops are compiled inside the
/// feature-enabled wrapper and vectorise for it. The one run-time dispatch
/// of every kernel in this workspace (the LSTM gates use it too).
#[macro_export]
macro_rules! simd_dispatch {
    ($(#[$m:meta])* $vis:vis fn $name:ident $(<$g:ident : $gb:path>)? ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:path) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name $(<$g: $gb>)? ($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[allow(clippy::too_many_arguments)]
                #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")]
                unsafe fn v4 $(<$g: $gb>)? ($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[allow(clippy::too_many_arguments)]
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v3 $(<$g: $gb>)? ($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                match $crate::math::simd() {
                    // SAFETY: simd() saw every feature v4 is compiled for on this CPU.
                    $crate::math::Simd::Avx512 => return unsafe { v4($($arg),*) },
                    // SAFETY: as above, for v3.
                    $crate::math::Simd::Avx2 => return unsafe { v3($($arg),*) },
                    $crate::math::Simd::Baseline => {}
                }
            }
            $body($($arg),*)
        }
    };
}

crate::simd_dispatch!(
    /// max of a slice (−∞ when empty).
    pub fn max(x: &[f32]) -> f32 => max_impl
);
crate::simd_dispatch!(
    /// x ← e^(x − shift) element-wise; returns Σ x afterwards.
    pub fn exp_sum_inplace(x: &mut [f32], shift: f32) -> f32 => exp_sum_impl
);
crate::simd_dispatch!(
    /// Σ e^(x − shift), without writing.
    pub fn sum_exp(x: &[f32], shift: f32) -> f32 => sum_exp_impl
);
crate::simd_dispatch!(
    /// x ← k·x.
    pub fn scale(x: &mut [f32], k: f32) => scale_impl
);
crate::simd_dispatch!(
    /// Σ aᵢ·bᵢ over the shorter length.
    pub fn dot(a: &[f32], b: &[f32]) -> f32 => dot_impl
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_over_the_softmax_range() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x <= 88.0 {
            let want = (x as f64).exp();
            let rel = ((exp(x) as f64 - want) / want).abs();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(f32::NEG_INFINITY) < 1e-37 && exp(f32::NEG_INFINITY) >= 0.0);
    }

    #[test]
    fn reductions_match_sequential_f64() {
        for n in [0usize, 1, 15, 16, 17, 100, 1027] {
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 7919 % 1000) as f32 - 500.0) / 97.0)
                .collect();
            let y: Vec<f32> = (0..n)
                .map(|i| ((i * 104729 % 777) as f32 - 300.0) / 131.0)
                .collect();
            let m = max(&x);
            let want_m = x.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(m, want_m, "n={n}");
            if n == 0 {
                continue;
            }
            let want_s: f64 = x.iter().map(|&v| ((v - m) as f64).exp()).sum();
            let s = sum_exp(&x, m);
            assert!(
                (s as f64 - want_s).abs() < 1e-5 * want_s,
                "sum_exp n={n}: {s} vs {want_s}"
            );
            let mut z = x.clone();
            let s2 = exp_sum_inplace(&mut z, m);
            assert!((s2 as f64 - want_s).abs() < 1e-5 * want_s);
            for (a, b) in z.iter().zip(&x) {
                let w = ((b - m) as f64).exp();
                assert!((*a as f64 - w).abs() < 1e-6 * (1.0 + w));
            }
            scale(&mut z, 2.0);
            assert!(
                (z.iter().map(|&v| v as f64).sum::<f64>() - 2.0 * want_s).abs() < 1e-4 * want_s
            );
            let want_d: f64 = x.iter().zip(&y).map(|(a, b)| *a as f64 * *b as f64).sum();
            assert!(
                (dot(&x, &y) as f64 - want_d).abs() < 1e-4 * (1.0 + want_d.abs()),
                "dot n={n}"
            );
        }
    }
}
