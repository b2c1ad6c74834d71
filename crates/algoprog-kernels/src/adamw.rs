//! In-place AdamW on slices, and the squared norm gradient clipping needs.
//!
//! One optimiser step is three memory passes with no temporaries:
//! m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²; then
//! p ← p·(1 − ηλ) − (η/(1−β₁ᵗ))·m / (√(v/(1−β₂ᵗ)) + ε).

use rayon::prelude::*;

/// Elements per rayon task.
const GRAIN: usize = 1 << 16;

/// m ← β·m + (1−β)·g.
pub fn ema(m: &mut [f32], g: &[f32], beta: f32) {
    assert_eq!(m.len(), g.len(), "ema: slices differ in length");
    let a = 1.0 - beta;
    m.par_chunks_mut(GRAIN)
        .zip(g.par_chunks(GRAIN))
        .for_each(|(m, g)| {
            for (m, &g) in m.iter_mut().zip(g) {
                *m = beta * *m + a * g;
            }
        });
}

/// v ← β·v + (1−β)·g².
pub fn ema_sq(v: &mut [f32], g: &[f32], beta: f32) {
    assert_eq!(v.len(), g.len(), "ema_sq: slices differ in length");
    let a = 1.0 - beta;
    v.par_chunks_mut(GRAIN)
        .zip(g.par_chunks(GRAIN))
        .for_each(|(v, g)| {
            for (v, &g) in v.iter_mut().zip(g) {
                *v = beta * *v + a * g * g;
            }
        });
}

/// The scalars of one AdamW parameter update.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    /// 1 − η·λ (1 when the parameter is not decayed).
    pub decay: f32,
    /// η/(1−β₁ᵗ).
    pub step_size: f32,
    /// 1/(1−β₂ᵗ).
    pub inv_bc2: f32,
    pub eps: f32,
}

impl AdamStep {
    /// The scalars for step `t` (1-based) with learning rate `lr`, weight
    /// decay `wd` (0 when not decayed), β₁, β₂, ε.
    pub fn new(t: usize, lr: f64, wd: f64, beta1: f64, beta2: f64, eps: f64) -> Self {
        let bc1 = 1.0 - beta1.powi(t as i32);
        let bc2 = 1.0 - beta2.powi(t as i32);
        Self {
            decay: (1.0 - lr * wd) as f32,
            step_size: (lr / bc1) as f32,
            inv_bc2: (1.0 / bc2) as f32,
            eps: eps as f32,
        }
    }
}

/// p ← p·decay − step_size·m/(√(v·inv_bc2) + ε).
pub fn apply(p: &mut [f32], m: &[f32], v: &[f32], s: AdamStep) {
    assert!(
        p.len() == m.len() && p.len() == v.len(),
        "apply: slices differ in length"
    );
    p.par_chunks_mut(GRAIN)
        .zip(m.par_chunks(GRAIN).zip(v.par_chunks(GRAIN)))
        .for_each(|(p, (m, v))| {
            for ((p, &m), &v) in p.iter_mut().zip(m).zip(v) {
                *p = *p * s.decay - s.step_size * m / ((v * s.inv_bc2).sqrt() + s.eps);
            }
        });
}

/// Σ x² accumulated in f64.
pub fn sum_sq(x: &[f32]) -> f64 {
    x.par_chunks(GRAIN)
        .map(|c| {
            // 8 f32 lanes per block, each block's sum widened to f64
            let mut acc = 0.0f64;
            for b in c.chunks(256) {
                let mut lanes = [0.0f32; 8];
                let mut it = b.chunks_exact(8);
                for w in &mut it {
                    for l in 0..8 {
                        lanes[l] += w[l] * w[l];
                    }
                }
                let tail: f32 = it.remainder().iter().map(|x| x * x).sum();
                acc += lanes.iter().map(|&x| x as f64).sum::<f64>() + tail as f64;
            }
            acc
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_steps_match_a_hand_computed_f64_adamw() {
        let n = 200_003; // several rayon chunks and a ragged tail
        let mut p: Vec<f32> = (0..n).map(|i| ((i % 97) as f32 - 48.0) / 50.0).collect();
        let mut m = vec![0f32; n];
        let mut v = vec![0f32; n];
        let mut pr: Vec<f64> = p.iter().map(|&x| x as f64).collect();
        let mut mr = vec![0f64; n];
        let mut vr = vec![0f64; n];
        let (b1, b2, eps, wd) = (0.9, 0.999, 1e-8, 0.01);
        for t in 1..=3usize {
            let lr = 1e-2 / t as f64;
            let g: Vec<f32> = (0..n)
                .map(|i| (((i * 31 + t * 7) % 113) as f32 - 56.0) / 40.0)
                .collect();
            ema(&mut m, &g, b1 as f32);
            ema_sq(&mut v, &g, b2 as f32);
            apply(&mut p, &m, &v, AdamStep::new(t, lr, wd, b1, b2, eps));
            let (bc1, bc2) = (1.0 - b1.powi(t as i32), 1.0 - b2.powi(t as i32));
            for i in 0..n {
                let gi = g[i] as f64;
                pr[i] *= 1.0 - lr * wd;
                mr[i] = b1 * mr[i] + (1.0 - b1) * gi;
                vr[i] = b2 * vr[i] + (1.0 - b2) * gi * gi;
                pr[i] -= lr * (mr[i] / bc1) / ((vr[i] / bc2).sqrt() + eps);
            }
        }
        for i in (0..n).step_by(997) {
            assert!(
                (p[i] as f64 - pr[i]).abs() < 2e-6,
                "p[{i}] {} vs {}",
                p[i],
                pr[i]
            );
            assert!((m[i] as f64 - mr[i]).abs() < 1e-6 && (v[i] as f64 - vr[i]).abs() < 1e-6);
        }
    }

    #[test]
    fn sum_of_squares_matches_f64() {
        for n in [0usize, 1, 7, 8, 255, 257, 100_001] {
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 7919 % 211) as f32 - 105.0) / 17.0)
                .collect();
            let want: f64 = x.iter().map(|&v| v as f64 * v as f64).sum();
            assert!(
                (sum_sq(&x) - want).abs() <= 1e-6 * want.max(1e-30),
                "n={n}: {} vs {want}",
                sum_sq(&x)
            );
        }
    }
}
