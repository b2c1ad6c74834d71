//! Element-wise activations and gated products, forward and backward.
//!
//! | kernel | forward | derivative |
//! |---|---|---|
//! | ReLU | max(x, 0) | 1 for x ≥ 0 (candle's convention), else 0 |
//! | GeLU (erf) | ½x(1 + erf(x/√2)) | ½(1 + erf(x/√2)) + x·φ(x), φ(x) = e^{−x²/2}/√(2π) |
//! | GeLU (tanh) | ½x(1 + t), t = tanh(k(x + 0.044715x³)), k = √(2/π) | ½(1 + t) + ½x(1 − t²)·k(1 + 3·0.044715x²) |
//! | SwiGLU | silu(a)·b, silu(a) = a·σ(a) | ∂a = b·σ(a)(1 + a(1 − σ(a))), ∂b = silu(a) |
//! | GeGLU | gelu(a)·b | ∂a = b·gelu′(a), ∂b = gelu(a) |
//!
//! The backward passes recompute the activation from the saved input (one
//! read of x instead of storing intermediate tensors).
//!
//! ## Transcendentals
//! `exp`, `erf` and `tanh` are branch-free f32 approximations ([`exp`](crate::math::exp()),
//! [`erf_f32`], [`tanh_f32`]) so the loops vectorise: each kernel is
//! compiled three times (AVX-512, AVX2+FMA, baseline) and the widest one the
//! CPU supports is picked at run time. Accuracy: `exp` within 3·10⁻⁷ relative (the
//! workspace's one polynomial exp, after Cody–Waite range reduction), `erf` within ~2·10⁻⁷ absolute
//! (the rational approximation Eigen and XLA use, clamped to |x| ≤ 4),
//! `tanh` within ~10⁻⁷ absolute; candle's own `gelu_erf` (libm `erff`) and
//! `gelu` (libm `tanhf`) agree with these kernels to ~10⁻⁶.
//!
//! Work is split over rayon in chunks of [`CHUNK`] elements; results do not
//! depend on the number of threads (every element is computed on its own).

use crate::math::exp;
use rayon::prelude::*;

/// Elements per rayon task.
pub const CHUNK: usize = 1 << 14;

/// erf(x) in f32, branch-free: x·P(x²)/Q(x²) on x clamped to [−4, 4]
/// (|erf(±4) ∓ 1| < 2·10⁻⁸). Absolute error ~2·10⁻⁷.
#[inline(always)]
pub fn erf_f32(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 + -2.101_024e-6;
    p = p * x2 + -5.692_506_4e-5;
    p = p * x2 + -7.349_906_3e-4;
    p = p * x2 + -2.954_6e-3;
    p = p * x2 + -1.609_603_3e-2;
    let mut q = -1.456_607_2e-5f32;
    q = q * x2 + -2.133_740_6e-4;
    q = q * x2 + -1.682_827e-3;
    q = q * x2 + -7.373_329e-3;
    q = q * x2 + -1.426_473_9e-2;
    x * p / q
}

/// tanh(x) = 1 − 2/(1 + e^{2x}) in f32, branch-free; absolute error ~10⁻⁷.
#[inline(always)]
pub fn tanh_f32(x: f32) -> f32 {
    1.0 - 2.0 / (1.0 + exp(2.0 * x))
}

/// σ(x) = 1/(1 + e^{−x}) in f32, branch-free.
#[inline(always)]
pub fn sigmoid_f32(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// 1/√(2π).
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;
/// √(2/π).
const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_C: f32 = 0.044_715;

/// (gelu(x), gelu′(x)) for the erf GeLU.
#[inline(always)]
fn gelu_erf_and_grad(x: f32) -> (f32, f32) {
    let cdf = 0.5 * (1.0 + erf_f32(x * FRAC_1_SQRT_2));
    let pdf = FRAC_1_SQRT_2PI * exp(-0.5 * x * x);
    (x * cdf, cdf + x * pdf)
}

/// (gelu(x), gelu′(x)) for the tanh GeLU.
#[inline(always)]
fn gelu_tanh_and_grad(x: f32) -> (f32, f32) {
    let x2 = x * x;
    let t = tanh_f32(SQRT_2_OVER_PI * x * (1.0 + GELU_C * x2));
    let dt = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * x2);
    (
        0.5 * x * (1.0 + t),
        0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dt,
    )
}

/// (silu(x), silu′(x)).
#[inline(always)]
fn silu_and_grad(x: f32) -> (f32, f32) {
    let s = sigmoid_f32(x);
    (x * s, s * (1.0 + x * (1.0 - s)))
}

// ---- per-chunk bodies (compiled per SIMD level by simd_dispatch) ----

#[inline(always)]
fn relu_fwd_body(x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = x.max(0.0);
    }
}
#[inline(always)]
fn relu_bwd_body(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    for ((o, &x), &g) in dx.iter_mut().zip(x).zip(dy) {
        *o = if x >= 0.0 { g } else { 0.0 };
    }
}
#[inline(always)]
fn gelu_fwd_body(x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = x * 0.5 * (1.0 + erf_f32(x * FRAC_1_SQRT_2));
    }
}
#[inline(always)]
fn gelu_bwd_body(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    for ((o, &x), &g) in dx.iter_mut().zip(x).zip(dy) {
        *o = g * gelu_erf_and_grad(x).1;
    }
}
#[inline(always)]
fn gelu_tanh_fwd_body(x: &[f32], y: &mut [f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y = 0.5 * x * (1.0 + tanh_f32(SQRT_2_OVER_PI * x * (1.0 + GELU_C * x * x)));
    }
}
#[inline(always)]
fn gelu_tanh_bwd_body(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    for ((o, &x), &g) in dx.iter_mut().zip(x).zip(dy) {
        *o = g * gelu_tanh_and_grad(x).1;
    }
}
#[inline(always)]
fn swiglu_fwd_body(a: &[f32], b: &[f32], y: &mut [f32]) {
    for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
        *y = a * sigmoid_f32(a) * b;
    }
}
#[inline(always)]
fn swiglu_bwd_body(a: &[f32], b: &[f32], dy: &[f32], da: &mut [f32], db: &mut [f32]) {
    for ((((da, db), &a), &b), &g) in da.iter_mut().zip(db.iter_mut()).zip(a).zip(b).zip(dy) {
        let (f, df) = silu_and_grad(a);
        *da = g * b * df;
        *db = g * f;
    }
}
#[inline(always)]
fn geglu_fwd_body(a: &[f32], b: &[f32], y: &mut [f32]) {
    for ((y, &a), &b) in y.iter_mut().zip(a).zip(b) {
        *y = a * 0.5 * (1.0 + erf_f32(a * FRAC_1_SQRT_2)) * b;
    }
}
#[inline(always)]
fn geglu_bwd_body(a: &[f32], b: &[f32], dy: &[f32], da: &mut [f32], db: &mut [f32]) {
    for ((((da, db), &a), &b), &g) in da.iter_mut().zip(db.iter_mut()).zip(a).zip(b).zip(dy) {
        let (f, df) = gelu_erf_and_grad(a);
        *da = g * b * df;
        *db = g * f;
    }
}

crate::simd_dispatch!(pub(crate) fn relu_fwd_chunk(x: &[f32], y: &mut [f32]) => relu_fwd_body);
crate::simd_dispatch!(pub(crate) fn relu_bwd_chunk(x: &[f32], dy: &[f32], dx: &mut [f32]) => relu_bwd_body);
crate::simd_dispatch!(pub(crate) fn gelu_fwd_chunk(x: &[f32], y: &mut [f32]) => gelu_fwd_body);
crate::simd_dispatch!(pub(crate) fn gelu_bwd_chunk(x: &[f32], dy: &[f32], dx: &mut [f32]) => gelu_bwd_body);
crate::simd_dispatch!(pub(crate) fn gelu_tanh_fwd_chunk(x: &[f32], y: &mut [f32]) => gelu_tanh_fwd_body);
crate::simd_dispatch!(pub(crate) fn gelu_tanh_bwd_chunk(x: &[f32], dy: &[f32], dx: &mut [f32]) => gelu_tanh_bwd_body);
crate::simd_dispatch!(pub(crate) fn swiglu_fwd_chunk(a: &[f32], b: &[f32], y: &mut [f32]) => swiglu_fwd_body);
crate::simd_dispatch!(pub(crate) fn swiglu_bwd_chunk(a: &[f32], b: &[f32], dy: &[f32], da: &mut [f32], db: &mut [f32]) => swiglu_bwd_body);
crate::simd_dispatch!(pub(crate) fn geglu_fwd_chunk(a: &[f32], b: &[f32], y: &mut [f32]) => geglu_fwd_body);
crate::simd_dispatch!(pub(crate) fn geglu_bwd_chunk(a: &[f32], b: &[f32], dy: &[f32], da: &mut [f32], db: &mut [f32]) => geglu_bwd_body);

// ---- parallel drivers ----

fn unary(x: &[f32], y: &mut [f32], f: fn(&[f32], &mut [f32])) {
    assert_eq!(
        x.len(),
        y.len(),
        "activation: input and output lengths differ"
    );
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(y, x)| f(x, y));
}

fn unary_bwd(x: &[f32], dy: &[f32], dx: &mut [f32], f: fn(&[f32], &[f32], &mut [f32])) {
    assert!(
        x.len() == dy.len() && x.len() == dx.len(),
        "activation backward: lengths differ"
    );
    dx.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .zip(dy.par_chunks(CHUNK))
        .for_each(|((o, x), g)| f(x, g, o));
}

fn binary(a: &[f32], b: &[f32], y: &mut [f32], f: fn(&[f32], &[f32], &mut [f32])) {
    assert!(
        a.len() == b.len() && a.len() == y.len(),
        "gated activation: lengths differ"
    );
    y.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK))
        .zip(b.par_chunks(CHUNK))
        .for_each(|((y, a), b)| f(a, b, y));
}

type GatedBwd = fn(&[f32], &[f32], &[f32], &mut [f32], &mut [f32]);

fn binary_bwd(a: &[f32], b: &[f32], dy: &[f32], da: &mut [f32], db: &mut [f32], f: GatedBwd) {
    let n = a.len();
    assert!(
        b.len() == n && dy.len() == n && da.len() == n && db.len() == n,
        "gated activation backward: lengths differ"
    );
    da.par_chunks_mut(CHUNK)
        .zip(db.par_chunks_mut(CHUNK))
        .zip(a.par_chunks(CHUNK))
        .zip(b.par_chunks(CHUNK))
        .zip(dy.par_chunks(CHUNK))
        .for_each(|((((da, db), a), b), g)| f(a, b, g, da, db));
}

/// y = max(x, 0).
pub fn relu_fwd(x: &[f32], y: &mut [f32]) {
    unary(x, y, relu_fwd_chunk)
}
/// dx = dy where x ≥ 0, else 0.
pub fn relu_bwd(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    unary_bwd(x, dy, dx, relu_bwd_chunk)
}
/// y = ½x(1 + erf(x/√2)).
pub fn gelu_fwd(x: &[f32], y: &mut [f32]) {
    unary(x, y, gelu_fwd_chunk)
}
/// dx = dy·gelu′(x) (erf GeLU).
pub fn gelu_bwd(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    unary_bwd(x, dy, dx, gelu_bwd_chunk)
}
/// y = ½x(1 + tanh(√(2/π)(x + 0.044715x³))).
pub fn gelu_tanh_fwd(x: &[f32], y: &mut [f32]) {
    unary(x, y, gelu_tanh_fwd_chunk)
}
/// dx = dy·gelu_tanh′(x).
pub fn gelu_tanh_bwd(x: &[f32], dy: &[f32], dx: &mut [f32]) {
    unary_bwd(x, dy, dx, gelu_tanh_bwd_chunk)
}
/// y = silu(a)·b (SwiGLU's gated product).
pub fn swiglu_fwd(a: &[f32], b: &[f32], y: &mut [f32]) {
    binary(a, b, y, swiglu_fwd_chunk)
}
/// da = dy·b·silu′(a), db = dy·silu(a).
pub fn swiglu_bwd(a: &[f32], b: &[f32], dy: &[f32], da: &mut [f32], db: &mut [f32]) {
    binary_bwd(a, b, dy, da, db, swiglu_bwd_chunk)
}
/// y = gelu(a)·b (GeGLU's gated product, erf GeLU).
pub fn geglu_fwd(a: &[f32], b: &[f32], y: &mut [f32]) {
    binary(a, b, y, geglu_fwd_chunk)
}
/// da = dy·b·gelu′(a), db = dy·gelu(a).
pub fn geglu_bwd(a: &[f32], b: &[f32], dy: &[f32], da: &mut [f32], db: &mut [f32]) {
    binary_bwd(a, b, dy, da, db, geglu_bwd_chunk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// erf in f64 from the series of positive terms
    /// erf(x) = (2/√π)·e^{−x²}·Σₙ x(2x²)ⁿ/(2n+1)!! (no cancellation; relative
    /// error ~10⁻¹⁵) for |x| ≤ 6, ±1 beyond (1 − erf(6) < 10⁻¹⁶).
    fn erf64(x: f64) -> f64 {
        if x.abs() > 6.0 {
            return x.signum();
        }
        let (mut term, mut sum) = (x, x);
        for n in 1..400 {
            term *= 2.0 * x * x / (2 * n + 1) as f64;
            sum += term;
            if term.abs() < 1e-17 * sum.abs() {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt() * (-x * x).exp()
    }
    fn gelu64(x: f64) -> f64 {
        0.5 * x * (1.0 + erf64(x / 2f64.sqrt()))
    }
    fn gelu_tanh64(x: f64) -> f64 {
        0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh())
    }
    fn silu64(x: f64) -> f64 {
        x / (1.0 + (-x).exp())
    }
    fn relu64(x: f64) -> f64 {
        x.max(0.0)
    }
    type Ref = fn(f64) -> f64;

    /// Analytic f64 derivatives of the references.
    fn gelu64_grad(x: f64) -> f64 {
        0.5 * (1.0 + erf64(x / 2f64.sqrt()))
            + x * (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
    }
    fn gelu_tanh64_grad(x: f64) -> f64 {
        let k = (2.0 / std::f64::consts::PI).sqrt();
        let t = (k * (x + 0.044715 * x * x * x)).tanh();
        0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3.0 * 0.044715 * x * x)
    }
    fn silu64_grad(x: f64) -> f64 {
        let s = 1.0 / (1.0 + (-x).exp());
        s * (1.0 + x * (1.0 - s))
    }
    fn relu64_grad(x: f64) -> f64 {
        if x >= 0.0 {
            1.0
        } else {
            0.0
        }
    }

    #[test]
    fn f64_references_agree_with_their_finite_differences() {
        let refs: [(Ref, Ref); 4] = [
            (gelu64, gelu64_grad),
            (gelu_tanh64, gelu_tanh64_grad),
            (silu64, silu64_grad),
            (relu64, relu64_grad),
        ];
        for (k, (f, g)) in refs.into_iter().enumerate() {
            for i in 0..200 {
                let x = -5.0 + 0.0501 * i as f64;
                let h = 1e-6;
                let fd = (f(x + h) - f(x - h)) / (2.0 * h);
                assert!(
                    (fd - g(x)).abs() < 1e-6,
                    "reference {k} at {x}: fd {fd} vs {}",
                    g(x)
                );
            }
        }
    }

    fn inputs(n: usize, scale: f32, seed: u64) -> Vec<f32> {
        let mut r = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| r.random_range(-scale..scale)).collect()
    }

    #[test]
    fn transcendental_approximations_are_accurate() {
        let mut worst = (0f64, 0f64, 0f64);
        for i in -200_000..=200_000 {
            let x = i as f32 * 1e-4; // [−20, 20]
            let e = exp(x) as f64;
            let want = (x as f64).exp();
            worst.0 = worst.0.max((e - want).abs() / want);
            worst.1 = worst.1.max((erf_f32(x) as f64 - erf64(x as f64)).abs());
            worst.2 = worst.2.max((tanh_f32(x) as f64 - (x as f64).tanh()).abs());
        }
        assert!(worst.0 < 3e-7, "exp relative error {}", worst.0);
        assert!(worst.1 < 5e-7, "erf absolute error {}", worst.1);
        assert!(worst.2 < 3e-7, "tanh absolute error {}", worst.2);
        // clamped tails stay finite and saturate
        assert!(exp(-1000.0) >= 0.0 && exp(-1000.0) < 1e-37);
        assert!(exp(1000.0).is_finite());
        assert!(
            exp(f32::NAN).is_nan() && erf_f32(f32::NAN).is_nan() && tanh_f32(f32::NAN).is_nan()
        );
        assert!((erf_f32(30.0) - 1.0).abs() < 2e-7 && (erf_f32(-30.0) + 1.0).abs() < 2e-7);
        assert_eq!(tanh_f32(-100.0), -1.0);
        assert_eq!(tanh_f32(100.0), 1.0);
        // the f64 reference itself: erf(1) and erf(0.5) to 12 digits
        assert!((erf64(1.0) - 0.842_700_792_949_715).abs() < 1e-12);
        assert!((erf64(0.5) - 0.520_499_877_813_047).abs() < 1e-12);
    }

    type Fwd = fn(&[f32], &mut [f32]);
    type GatedFwd = fn(&[f32], &[f32], &mut [f32]);
    type Bwd = fn(&[f32], &[f32], &mut [f32]);

    fn check_unary(name: &str, fwd: Fwd, bwd: Bwd, f: fn(f64) -> f64, df: fn(f64) -> f64) {
        // larger than one chunk and not a multiple of the SIMD width
        let n = CHUNK + 1237;
        let mut x = inputs(n, 6.0, 1);
        x[0] = 0.0;
        x[1] = -12.0;
        x[2] = 12.0;
        let dy = inputs(n, 1.0, 2);
        let mut y = vec![f32::NAN; n];
        fwd(&x, &mut y);
        let mut dx = vec![f32::NAN; n];
        bwd(&x, &dy, &mut dx);
        let (mut ey, mut edx, mut max_dx) = (0f64, 0f64, 0f64);
        for i in 0..n {
            let xi = x[i] as f64;
            ey = ey.max((y[i] as f64 - f(xi)).abs() / (1.0 + f(xi).abs()));
            {
                let want = dy[i] as f64 * df(xi);
                edx = edx.max((dx[i] as f64 - want).abs() / (1.0 + want.abs()));
                max_dx = max_dx.max(want.abs());
            }
        }
        assert!(ey < 1e-6, "{name}: forward error {ey}");
        assert!(
            edx < 1e-5,
            "{name}: backward error vs finite differences {edx}"
        );
        assert!(max_dx > 0.5, "{name}: degenerate gradients");
    }

    #[test]
    fn relu_matches_reference() {
        check_unary("relu", relu_fwd, relu_bwd, relu64, relu64_grad);
        let (mut y, mut dx) = (vec![0.0; 3], vec![0.0; 3]);
        relu_fwd(&[-1.0, 0.0, 2.0], &mut y);
        relu_bwd(&[-1.0, 0.0, 2.0], &[5.0, 6.0, 7.0], &mut dx);
        assert_eq!(y, [0.0, 0.0, 2.0]);
        assert_eq!(dx, [0.0, 6.0, 7.0]);
    }

    #[test]
    fn gelu_matches_reference() {
        check_unary("gelu", gelu_fwd, gelu_bwd, gelu64, gelu64_grad);
    }

    #[test]
    fn gelu_tanh_matches_reference() {
        check_unary(
            "gelu_tanh",
            gelu_tanh_fwd,
            gelu_tanh_bwd,
            gelu_tanh64,
            gelu_tanh64_grad,
        );
    }

    fn check_gated(
        name: &str,
        fwd: GatedFwd,
        bwd: GatedBwd,
        act: fn(f64) -> f64,
        dact: fn(f64) -> f64,
    ) {
        let n = 2 * CHUNK + 77;
        let a = inputs(n, 6.0, 3);
        let b = inputs(n, 2.0, 4);
        let dy = inputs(n, 1.0, 5);
        let mut y = vec![f32::NAN; n];
        fwd(&a, &b, &mut y);
        let (mut da, mut db) = (vec![f32::NAN; n], vec![f32::NAN; n]);
        bwd(&a, &b, &dy, &mut da, &mut db);
        let (mut ey, mut ea, mut eb) = (0f64, 0f64, 0f64);
        for i in 0..n {
            let (ai, bi, gi) = (a[i] as f64, b[i] as f64, dy[i] as f64);
            let want = act(ai) * bi;
            ey = ey.max((y[i] as f64 - want).abs() / (1.0 + want.abs()));
            let wa = gi * bi * dact(ai);
            ea = ea.max((da[i] as f64 - wa).abs() / (1.0 + wa.abs()));
            let wb = gi * act(ai);
            eb = eb.max((db[i] as f64 - wb).abs() / (1.0 + wb.abs()));
        }
        assert!(ey < 2e-6, "{name}: forward error {ey}");
        assert!(ea < 1e-5, "{name}: ∂a error {ea}");
        assert!(eb < 2e-6, "{name}: ∂b error {eb}");
    }

    #[test]
    fn swiglu_matches_reference() {
        check_gated("swiglu", swiglu_fwd, swiglu_bwd, silu64, silu64_grad);
    }

    #[test]
    fn geglu_matches_reference() {
        check_gated("geglu", geglu_fwd, geglu_bwd, gelu64, gelu64_grad);
    }

    /// Finite differences of the f32 kernels themselves: L = Σ w·y.
    #[test]
    fn kernels_backward_matches_their_own_finite_differences() {
        let x = inputs(64, 4.0, 6);
        let b = inputs(64, 2.0, 7);
        let w = inputs(64, 1.0, 8);
        let h = 1e-2f32;
        let unary_cases: [(&str, Fwd, Bwd); 2] = [
            ("gelu", gelu_fwd, gelu_bwd),
            ("gelu_tanh", gelu_tanh_fwd, gelu_tanh_bwd),
        ];
        for (name, fwd, bwd) in unary_cases {
            let mut dx = vec![0.0; 64];
            bwd(&x, &w, &mut dx);
            for i in 0..64 {
                let mut y = [0f32; 1];
                let mut l = [0f64; 2];
                for (k, s) in [1.0f32, -1.0].iter().enumerate() {
                    fwd(&[x[i] + s * h], &mut y);
                    l[k] = y[0] as f64 * w[i] as f64;
                }
                let fd = (l[0] - l[1]) / (2.0 * h as f64);
                assert!(
                    (fd - dx[i] as f64).abs() < 2e-3 * (1.0 + fd.abs()),
                    "{name}[{i}]: fd {fd} vs {}",
                    dx[i]
                );
            }
        }
        let gated_cases: [(&str, GatedFwd, GatedBwd); 2] = [
            ("swiglu", swiglu_fwd, swiglu_bwd),
            ("geglu", geglu_fwd, geglu_bwd),
        ];
        for (name, fwd, bwd) in gated_cases {
            let (mut da, mut db) = (vec![0.0; 64], vec![0.0; 64]);
            bwd(&x, &b, &w, &mut da, &mut db);
            for i in 0..64 {
                let mut y = [0f32; 1];
                let mut la = [0f64; 2];
                let mut lb = [0f64; 2];
                for (k, s) in [1.0f32, -1.0].iter().enumerate() {
                    fwd(&[x[i] + s * h], &[b[i]], &mut y);
                    la[k] = y[0] as f64 * w[i] as f64;
                    fwd(&[x[i]], &[b[i] + s * h], &mut y);
                    lb[k] = y[0] as f64 * w[i] as f64;
                }
                let fa = (la[0] - la[1]) / (2.0 * h as f64);
                let fb = (lb[0] - lb[1]) / (2.0 * h as f64);
                assert!(
                    (fa - da[i] as f64).abs() < 2e-3 * (1.0 + fa.abs()),
                    "{name} ∂a[{i}]: fd {fa} vs {}",
                    da[i]
                );
                assert!(
                    (fb - db[i] as f64).abs() < 2e-3 * (1.0 + fb.abs()),
                    "{name} ∂b[{i}]: fd {fb} vs {}",
                    db[i]
                );
            }
        }
    }
}
