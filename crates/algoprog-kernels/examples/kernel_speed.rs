//! Time of the fused cross-entropy (forward with gradients), causal
//! attention, the SwiGLU kernels and the feed-forward block (forward,
//! backward) at the benchmarks' shapes, on the calling thread's rayon pool
//! with subnormals flushed as in training: the kernels alone, without a
//! tensor library.
//!
//! `cargo run --release -p algoprog-kernels --example kernel_speed [-- ce|attn|act|ffn]`
//! (`KERNEL_SPEED_ROWS=r` sets the cross-entropy chunk rows instead of
//! `chunk_rows`; `KERNEL_SPEED_CE=n,d,v` times that cross-entropy shape
//! instead of the default four.)

use algoprog_kernels::attention::{self, AttnShape, Heads};
use algoprog_kernels::ce::{self, CeGrads, CeShape};
use algoprog_kernels::{act, ffn, math};
use std::time::Instant;

fn best_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
    }
    best
}

fn fill(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 1000.0 - 1.0)
        .collect()
}

fn main() {
    let what = std::env::args().nth(1).unwrap_or_default();
    let rows_override: Option<usize> = std::env::var("KERNEL_SPEED_ROWS")
        .ok()
        .and_then(|r| r.parse().ok());
    // flush subnormals to zero on this thread and on every worker of the
    // pool the kernels run on, as the trainer's threads do
    // (math::flush_denormals): the activations' tails
    // underflow, and unflushed they time microcode assists, not the kernels
    math::flush_denormals();
    rayon::broadcast(|_| math::flush_denormals());
    println!("{} threads", rayon::current_num_threads());
    if what.is_empty() || what == "ce" {
        let mut shapes = vec![
            (1024, 32, 512),
            (2048, 80, 512),
            (4096, 64, 4096),
            (4096, 128, 4096),
        ];
        // KERNEL_SPEED_CE=n,d,v times that shape instead
        if let Ok(spec) = std::env::var("KERNEL_SPEED_CE") {
            let f: Vec<usize> = spec
                .split(',')
                .filter_map(|x| x.trim().parse().ok())
                .collect();
            assert_eq!(f.len(), 3, "KERNEL_SPEED_CE={spec}: give n,d,v");
            shapes = vec![(f[0], f[1], f[2])];
        }
        for (n, d, v) in shapes {
            let (h, w) = (fill(n * d, 1), fill(v * d, 2));
            let b = fill(v, 3);
            let t: Vec<u32> = (0..n as u32).map(|i| (i * 7919) % v as u32).collect();
            let (mut dh, mut dw, mut db) = (vec![0.0; n * d], vec![0.0; v * d], vec![0.0; v]);
            let r = rows_override.unwrap_or(ce::chunk_rows(v));
            let ms = best_ms(10, || {
                let g = CeGrads {
                    dh: &mut dh,
                    dw: &mut dw,
                    db: Some(&mut db),
                    scale: 1.0 / n as f32,
                };
                let s = CeShape { n, d, v };
                std::hint::black_box(
                    ce::cross_entropy_chunked(s, &h, &w, Some(&b), &t, Some(g), r).unwrap(),
                );
            });
            let gflop = 6.0 * (n * d * v) as f64 / 1e9;
            println!(
                "ce n={n} d={d} V={v} rows={r}: {ms:.3} ms, {:.1} GFLOP/s",
                gflop / ms * 1e3
            );
        }
    }
    if what.is_empty() || what == "attn" {
        for (b, hh, t) in [
            (16, 2, 64),
            (16, 3, 64),
            (16, 2, 128),
            (16, 5, 128),
            (32, 4, 128),
            (32, 8, 128),
        ] {
            let s = AttnShape {
                b,
                h: hh,
                t,
                hd: 16,
            };
            let n = s.numel();
            let (q, k, v) = (fill(n, 1), fill(n, 2), fill(n, 3));
            let dy = fill(n, 4);
            let (mut y, mut lse) = (vec![0.0; n], vec![0.0; s.pairs() * t]);
            let (mut dq, mut dk, mut dv) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
            let fwd = best_ms(20, || {
                attention::forward(
                    s,
                    Heads::bhtd(&q, s),
                    Heads::bhtd(&k, s),
                    Heads::bhtd(&v, s),
                    None,
                    &mut y,
                    &mut lse,
                )
            });
            let bwd = best_ms(20, || {
                attention::backward(
                    s,
                    Heads::bhtd(&q, s),
                    Heads::bhtd(&k, s),
                    Heads::bhtd(&v, s),
                    None,
                    Heads::bthd(&y, s),
                    &lse,
                    Heads::bthd(&dy, s),
                    &mut dq,
                    &mut dk,
                    &mut dv,
                )
            });
            // causal FLOPs: QKᵀ and P·V over the lower triangle, ×2 backward
            let tri = (t * (t + 1) / 2) as f64;
            let fl = 2.0 * 2.0 * tri * 16.0 * s.pairs() as f64;
            println!(
                "attn b={b} h={hh} T={t}: fwd {fwd:.3} ms ({:.1} GFLOP/s causal), bwd {bwd:.3} ms ({:.1})",
                fl / fwd / 1e6,
                2.0 * fl / bwd / 1e6
            );
        }
    }
    if what.is_empty() || what == "act" {
        // SwiGLU at the laptop d80 and bench d128 feed-forward shapes: into
        // warm buffers, and into a fresh allocation per call (as a tensor op)
        for (n, h) in [(2048, 320), (4096, 512)] {
            let (a, b, dy) = (fill(n * h, 1), fill(n * h, 2), fill(n * h, 3));
            let (mut y, mut da, mut db) = (vec![0.0; n * h], vec![0.0; n * h], vec![0.0; n * h]);
            let fwd = best_ms(20, || act::swiglu_fwd(&a, &b, &mut y));
            let bwd = best_ms(20, || act::swiglu_bwd(&a, &b, &dy, &mut da, &mut db));
            let fresh = best_ms(20, || {
                let mut out = vec![0.0f32; 2 * n * h];
                let (da, db) = out.split_at_mut(n * h);
                act::swiglu_bwd(&a, &b, &dy, da, db);
                std::hint::black_box(&out);
            });
            // the same with the caches flushed first (a 1 GiB sweep)
            let mut junk = vec![1.0f32; 256 << 20];
            let mut cold = f64::INFINITY;
            for _ in 0..10 {
                junk.iter_mut().for_each(|v| *v += 1.0);
                std::hint::black_box(&junk);
                let t = Instant::now();
                act::swiglu_bwd(&a, &b, &dy, &mut da, &mut db);
                cold = cold.min(t.elapsed().as_secs_f64() * 1e3);
            }
            println!("swiglu bwd from cold caches: {cold:.3} ms");
            let gb = |arrays: usize, ms: f64| (arrays * n * h * 4) as f64 / ms / 1e6;
            println!(
                "swiglu n={n} h={h}: fwd {fwd:.3} ms ({:.1} GB/s), bwd {bwd:.3} ms ({:.1} GB/s), bwd into a fresh buffer {fresh:.3} ms",
                gb(3, fwd),
                gb(5, bwd)
            );
        }
    }
    if what.is_empty() || what == "ffn" {
        // the fused feed-forward block at the laptop d80 and bench d128 shapes
        for (n, d, h) in [(2048, 80, 320), (4096, 128, 512)] {
            for act in [ffn::FfnAct::Swiglu, ffn::FfnAct::Gelu] {
                let s = ffn::FfnShape { n, d, h, act };
                let hi = s.h_in();
                let (x, dy) = (fill(n * d, 1), fill(n * d, 2));
                let (w_in, b_in, w_out, b_out) =
                    (fill(hi * d, 3), fill(hi, 4), fill(d * h, 5), fill(d, 6));
                let p = ffn::FfnParams {
                    w_in: &w_in,
                    b_in: Some(&b_in),
                    w_out: &w_out,
                    b_out: Some(&b_out),
                };
                let (mut y, mut z) = (vec![0.0; n * d], vec![0.0; n * hi]);
                let fwd = best_ms(10, || ffn::forward(s, &x, &p, &mut y, &mut z));
                let (mut dx, mut dwi, mut dbi, mut dwo, mut dbo) = (
                    vec![0.0; n * d],
                    vec![0.0; hi * d],
                    vec![0.0; hi],
                    vec![0.0; d * h],
                    vec![0.0; d],
                );
                let bwd = best_ms(10, || {
                    let g = ffn::FfnGrads {
                        dx: &mut dx,
                        dw_in: &mut dwi,
                        db_in: Some(&mut dbi),
                        dw_out: &mut dwo,
                        db_out: Some(&mut dbo),
                    };
                    ffn::backward(s, &x, &p, &z, &dy, g)
                });
                let fl = 2.0 * (n * d * (hi + h)) as f64;
                println!(
                    "ffn {act:?} n={n} d={d} h={h}: fwd {fwd:.3} ms ({:.1} GFLOP/s), bwd {bwd:.3} ms ({:.1} GFLOP/s)",
                    fl / fwd / 1e6,
                    2.0 * fl / bwd / 1e6
                );
            }
        }
    }
}
