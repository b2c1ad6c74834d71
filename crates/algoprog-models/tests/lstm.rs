//! The LSTM: finite-difference gradients (cell and a 2-step, 2-layer
//! unroll), TBPTT truncation, initialisation, determinism and variational
//! dropout, parameter and FLOP counts, config parsing and validation, and the
//! state carried across batches (the authors' runs).

use algoprog_models::lstm::cell::LstmCell;
use algoprog_models::lstm::lstm_cell_composite;
use algoprog_models::{CarryState, LanguageModel, Lstm, LstmConfig, LstmKernel, ModelConfig};
use algoprog_nn::cross_entropy;
use algoprog_nn::gradcheck::check;
use candle_core::{DType, Device, Tensor, Var, D};

const VOCAB: usize = 11;

fn tiny(d: usize) -> LstmConfig {
    LstmConfig {
        tbptt_len: 64,
        max_seq_len: 16,
        ..LstmConfig::paper_no_dropout(d)
    }
}

fn vals(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    vals(a)
        .iter()
        .zip(vals(b))
        .fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

fn lm_loss(m: &Lstm, x: &Tensor, y: &Tensor, train: bool) -> candle_core::Result<Tensor> {
    let h = m.hidden(x, train)?;
    let (b, t, d) = h.dims3()?;
    cross_entropy(&h.reshape((b * t, d))?, m.output_weight(), y)
}

fn dev() -> Device {
    Device::Cpu
}

/// A deterministic (rows, cols) f64 tensor with entries in about ±scale.
fn fixed(rows: usize, cols: usize, scale: f64, salt: u64) -> Tensor {
    let v: Vec<f64> = (0..rows * cols)
        .map(|i| {
            let k = (i as u64 * 2654435761 + salt * 97) % 1000;
            (k as f64 / 500.0 - 1.0) * scale
        })
        .collect();
    Tensor::from_vec(v, (rows, cols), &dev()).unwrap()
}

#[test]
fn one_cell_matches_finite_differences_fused_and_composite() {
    let (b, h) = (2, 3);
    let gates = Var::from_tensor(&fixed(b, 4 * h, 1.5, 1)).unwrap();
    let c0 = Var::from_tensor(&fixed(b, h, 0.8, 2)).unwrap();
    // a loss that weighs h_t and c_t differently, so both output halves carry gradient
    let wh = fixed(b, h, 1.0, 3);
    let wc = fixed(b, h, 0.7, 4);
    for fused in [true, false] {
        let loss = || {
            let (hn, cn) = if fused {
                let hc = gates.as_tensor().apply_op2(c0.as_tensor(), LstmCell)?;
                (hc.narrow(1, 0, h)?, hc.narrow(1, h, h)?)
            } else {
                lstm_cell_composite(gates.as_tensor(), c0.as_tensor())?
            };
            ((hn * &wh)?.sum_all()? + (cn * &wc)?.sum_all()?)?.sum_all()
        };
        let res = check(&[gates.clone(), c0.clone()], &loss, 1e-6).unwrap();
        assert_eq!(res.checked, b * 4 * h + b * h);
        assert!(
            res.max_abs_grad > 0.05,
            "fused={fused}: {}",
            res.max_abs_grad
        );
        assert!(
            res.max_rel_err < 1e-7,
            "fused={fused}: {} at {:?} {:?}",
            res.max_rel_err,
            res.worst,
            res.worst_values
        );
    }
    // fused forward equals the composite forward
    let hc = gates
        .as_tensor()
        .apply_op2(c0.as_tensor(), LstmCell)
        .unwrap();
    let (hn, cn) = lstm_cell_composite(gates.as_tensor(), c0.as_tensor()).unwrap();
    assert!(max_abs_diff(&hc, &Tensor::cat(&[hn, cn], 1).unwrap()) < 1e-14);
}

#[test]
fn fused_cell_accepts_strided_state_and_f32() {
    // c_{t−1} as a column slice of a wider tensor (what the time loop passes)
    let (b, h) = (3, 4);
    let gates = fixed(b, 4 * h, 2.0, 5).to_dtype(DType::F32).unwrap();
    let wide = fixed(b, 2 * h, 1.0, 6).to_dtype(DType::F32).unwrap();
    let c0 = wide.narrow(1, h, h).unwrap();
    let hc = gates.apply_op2(&c0, LstmCell).unwrap();
    let (hn, cn) = lstm_cell_composite(&gates, &c0).unwrap();
    assert!(max_abs_diff(&hc, &Tensor::cat(&[hn, cn], 1).unwrap()) < 1e-6);
}

/// FD check of the whole LM loss w.r.t. every parameter; every variable receives a gradient.
fn check_model(cfg: LstmConfig, x: &Tensor, what: &str) {
    let m = cfg.build(VOCAB, 7, &dev(), DType::F64).unwrap();
    let (b, t) = x.dims2().unwrap();
    let y = Tensor::from_vec(
        (0..(b * t) as u32)
            .map(|i| (i * 5 + 3) % VOCAB as u32)
            .collect::<Vec<_>>(),
        b * t,
        &dev(),
    )
    .unwrap();
    let loss = || lm_loss(&m, x, &y, true);
    let res = check(&m.params().vars(), &loss, 1e-5).unwrap();
    assert_eq!(res.checked, m.params().num_elements(), "{what}");
    assert_eq!(res.checked, m.param_counts().total(), "{what}");
    assert!(
        res.max_rel_err < 1e-5,
        "{what}: FD mismatch {} at {:?}: {:?}",
        res.max_rel_err,
        res.worst,
        res.worst_values
    );
    let grads = loss().unwrap().backward().unwrap();
    for p in m.params().iter() {
        let g = grads
            .get(p.var.as_tensor())
            .unwrap_or_else(|| panic!("{what}: no gradient for {}", p.name));
        let max = vals(g).iter().fold(0f64, |a, v| a.max(v.abs()));
        assert!(max > 1e-6, "{what}: zero gradient for {}", p.name);
    }
}

#[test]
fn two_step_two_layer_unroll_matches_finite_differences() {
    let x = Tensor::new(&[[1u32, 5], [3, 9]], &dev()).unwrap();
    check_model(tiny(4), &x, "2-layer window kernel, layer norm");
    check_model(
        LstmConfig {
            kernel: LstmKernel::Cell,
            ..tiny(4)
        },
        &x,
        "2-layer fused cell",
    );
    check_model(
        LstmConfig {
            kernel: LstmKernel::Composite,
            ..tiny(4)
        },
        &x,
        "2-layer composite",
    );
    // hidden ≠ d_model (projection), no layer norm, 1 layer, 3 steps. (The
    // window length covers the sequence: across a TBPTT boundary the
    // analytic gradient is truncated on purpose and differs from the FD.)
    let x3 = Tensor::new(&[[1u32, 5, 2], [3, 9, 0]], &dev()).unwrap();
    check_model(
        LstmConfig {
            n_layers: 1,
            hidden: Some(3),
            layer_norm: false,
            ..tiny(4)
        },
        &x3,
        "1-layer projected",
    );
}

/// The three kernels compute the same outputs and gradients, with every
/// dropout active (the window kernel carries the hidden-dropout mask).
#[test]
fn kernels_agree_on_outputs_and_gradients() {
    let x = Tensor::new(&[[1u32, 5, 2, 7, 3], [3, 9, 0, 4, 4]], &dev()).unwrap();
    let y = Tensor::new(&[5u32, 2, 7, 3, 1, 9, 0, 4, 4, 6], &dev()).unwrap();
    let run = |kernel: LstmKernel| {
        let cfg = LstmConfig {
            kernel,
            tbptt_len: 2,
            hidden: Some(6),
            max_seq_len: 16,
            ..LstmConfig::paper(4)
        };
        let m = cfg.build(VOCAB, 2, &dev(), DType::F64).unwrap();
        let h = m.hidden(&x, true).unwrap();
        let loss = cross_entropy(&h.reshape((10, 4)).unwrap(), m.output_weight(), &y).unwrap();
        let grads = loss.backward().unwrap();
        let g: Vec<Vec<f64>> = m
            .params()
            .iter()
            .map(|p| vals(grads.get(p.var.as_tensor()).unwrap()))
            .collect();
        (vals(&h), g)
    };
    let (h_ref, g_ref) = run(LstmKernel::Composite);
    for k in [LstmKernel::Window, LstmKernel::Cell] {
        let (h, g) = run(k);
        let dh = h
            .iter()
            .zip(&h_ref)
            .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(dh < 1e-12, "{k:?}: hidden differs by {dh}");
        for (gi, gr) in g.iter().zip(&g_ref) {
            let scale = gr.iter().fold(0f64, |m, v| m.max(v.abs()));
            assert!(scale > 0.0);
            let dg = gi
                .iter()
                .zip(gr)
                .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                dg < 1e-10 * (1.0 + scale),
                "{k:?}: gradient differs by {dg}"
            );
        }
    }
}

/// The f32 window kernel (polynomial exp) against the f32 composite (libm).
#[test]
fn window_kernel_in_f32_matches_composite_and_fast_exp_is_accurate() {
    let mut worst = 0f64;
    for k in -8000..=8000 {
        let x = k as f32 * 0.01;
        let e = algoprog_kernels::math::exp(x) as f64;
        worst = worst.max((e - (x as f64).exp()).abs() / (x as f64).exp());
    }
    assert!(worst < 4e-7, "fast exp relative error {worst}");
    let x = Tensor::new(&[[1u32, 5, 2, 7, 3, 8], [3, 9, 0, 4, 4, 1]], &dev()).unwrap();
    let y = Tensor::new(&[5u32, 2, 7, 3, 1, 2, 9, 0, 4, 4, 6, 3], &dev()).unwrap();
    let run = |kernel: LstmKernel| {
        let cfg = LstmConfig {
            kernel,
            tbptt_len: 4,
            max_seq_len: 16,
            ..LstmConfig::paper_no_dropout(16)
        };
        let m = cfg.build(VOCAB, 2, &dev(), DType::F32).unwrap();
        let h = m.hidden(&x, true).unwrap();
        let loss = cross_entropy(&h.reshape((12, 16)).unwrap(), m.output_weight(), &y).unwrap();
        let grads = loss.backward().unwrap();
        let g: Vec<Vec<f64>> = m
            .params()
            .iter()
            .map(|p| vals(grads.get(p.var.as_tensor()).unwrap()))
            .collect();
        (vals(&h), g)
    };
    let (h_ref, g_ref) = run(LstmKernel::Composite);
    let (h, g) = run(LstmKernel::Window);
    let dh = h
        .iter()
        .zip(&h_ref)
        .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(dh < 1e-5, "hidden differs by {dh}");
    for (gi, gr) in g.iter().zip(&g_ref) {
        let scale = gr.iter().fold(0f64, |m, v| m.max(v.abs()));
        let dg = gi
            .iter()
            .zip(gr)
            .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            dg < 1e-4 * scale,
            "gradient differs by {dg} (scale {scale})"
        );
    }
}

#[test]
fn no_gradient_crosses_a_tbptt_boundary() {
    // Window 1 = tokens 0..2, window 2 = tokens 2..4. A loss on window 2's
    // outputs only; the window-1 input is perturbed through its embedding row.
    let d = 4;
    let x = Tensor::new(&[[1u32, 2, 3, 4]], &dev()).unwrap();
    let w = fixed(2, d, 1.0, 9);
    let window2_loss = |m: &Lstm| -> f64 {
        let h = m.hidden(&x, false).unwrap();
        vals(
            &(h.narrow(1, 2, 2).unwrap().squeeze(0).unwrap() * &w)
                .unwrap()
                .sum_all()
                .unwrap(),
        )[0]
    };
    let grad_of_row1 = |tbptt: usize| -> (Vec<f64>, f64) {
        let m = LstmConfig {
            tbptt_len: tbptt,
            layer_norm: false,
            ..tiny(d)
        }
        .build(VOCAB, 3, &dev(), DType::F64)
        .unwrap();
        let h = m.hidden(&x, false).unwrap();
        let loss = (h.narrow(1, 2, 2).unwrap().squeeze(0).unwrap() * &w)
            .unwrap()
            .sum_all()
            .unwrap();
        let grads = loss.backward().unwrap();
        let g = grads.get(m.output_weight()).unwrap();
        // token 1 appears only in window 1; the loss has no output layer, so
        // its embedding row is reached only through the recurrent state
        let row1 = vals(&g.narrow(0, 1, 1).unwrap());
        // finite difference of the window-2 loss in the first coordinate of row 1
        let var = &m.params().get("embed.weight").unwrap().var;
        let orig = var.as_tensor().copy().unwrap();
        let bump = Tensor::zeros((VOCAB, d), DType::F64, &dev())
            .unwrap()
            .slice_assign(&[1..2, 0..1], &Tensor::new(&[[1e-5f64]], &dev()).unwrap())
            .unwrap();
        var.set(&(&orig + &bump).unwrap()).unwrap();
        let lp = window2_loss(&m);
        var.set(&(&orig - &bump).unwrap()).unwrap();
        let lm = window2_loss(&m);
        var.set(&orig).unwrap();
        (row1, (lp - lm) / 2e-5)
    };
    let (g_trunc, fd_trunc) = grad_of_row1(2);
    let (g_full, fd_full) = grad_of_row1(4);
    // the state is carried: the window-2 loss depends on the window-1 input ...
    assert!(
        fd_trunc.abs() > 1e-4,
        "window-2 loss does not depend on window 1: {fd_trunc}"
    );
    assert!(
        (fd_trunc - fd_full).abs() < 1e-9,
        "forward differs with tbptt: {fd_trunc} vs {fd_full}"
    );
    // ... but no gradient reaches window 1 through it
    assert!(
        g_trunc.iter().all(|v| *v == 0.0),
        "gradient crossed the boundary: {g_trunc:?}"
    );
    // without the boundary the same gradient is the full one and matches the FD
    assert!(g_full.iter().any(|v| v.abs() > 1e-4), "{g_full:?}");
    assert!(
        (g_full[0] - fd_full).abs() < 1e-6 * (1.0 + fd_full.abs()),
        "{} vs FD {fd_full}",
        g_full[0]
    );
}

#[test]
fn recurrent_weights_are_orthogonal_and_forget_bias_is_one() {
    for (d, hidden, n_layers) in [(16, None, 2), (8, Some(12), 1)] {
        let cfg = LstmConfig {
            hidden,
            n_layers,
            ..LstmConfig::paper(d)
        };
        let h = cfg.hidden_size();
        let m = cfg.build(VOCAB, 5, &dev(), DType::F32).unwrap();
        for l in 0..n_layers {
            let w = m
                .params()
                .get(&format!("layers.{l}.w_hh"))
                .unwrap()
                .var
                .as_tensor()
                .to_dtype(DType::F64)
                .unwrap();
            assert_eq!(w.dims(), &[4 * h, h]);
            let eye = Tensor::eye(h, DType::F64, &dev()).unwrap();
            for g in 0..4 {
                let block = w.narrow(0, g * h, h).unwrap();
                let wtw = block.t().unwrap().matmul(&block).unwrap();
                let wwt = block.matmul(&block.t().unwrap()).unwrap();
                assert!(
                    max_abs_diff(&wtw, &eye) < 1e-5,
                    "layer {l} gate {g}: WᵀW − I = {}",
                    max_abs_diff(&wtw, &eye)
                );
                assert!(max_abs_diff(&wwt, &eye) < 1e-5);
            }
            // not a permutation or identity: entries spread out
            let v = vals(&w);
            assert!(v.iter().filter(|x| x.abs() > 1e-3).count() > v.len() * 9 / 10);
            let b = vals(
                m.params()
                    .get(&format!("layers.{l}.bias"))
                    .unwrap()
                    .var
                    .as_tensor(),
            );
            for (i, x) in b.iter().enumerate() {
                let want = if (h..2 * h).contains(&i) { 1.0 } else { 0.0 };
                assert_eq!(*x, want, "layer {l} bias[{i}]");
            }
            let wih = vals(
                m.params()
                    .get(&format!("layers.{l}.w_ih"))
                    .unwrap()
                    .var
                    .as_tensor(),
            );
            let d_in = if l == 0 { d } else { h };
            let bound = (6.0 / (d_in + 4 * h) as f64).sqrt();
            assert!(
                wih.iter().all(|x| x.abs() <= bound) && wih.iter().any(|x| x.abs() > 0.8 * bound)
            );
        }
        let e = vals(m.output_weight());
        let bound = (6.0 / (VOCAB + d) as f64).sqrt();
        assert!(
            e.iter().all(|x| x.abs() <= bound) && e.iter().any(|x| x.abs() > 0.8 * bound),
            "Xavier embedding"
        );
    }
}

#[test]
fn same_seed_same_model_and_no_dropout_is_deterministic() {
    let x = Tensor::new(&[[1u32, 5, 2, 7], [3, 9, 0, 4]], &dev()).unwrap();
    let m = tiny(8).build(VOCAB, 1, &dev(), DType::F32).unwrap();
    let a = m.hidden(&x, true).unwrap();
    let b = m.hidden(&x, true).unwrap();
    let c = m.hidden(&x, false).unwrap();
    assert_eq!(vals(&a), vals(&b));
    assert_eq!(vals(&a), vals(&c));
    let m2 = tiny(8).build(VOCAB, 1, &dev(), DType::F32).unwrap();
    assert_eq!(vals(&a), vals(&m2.hidden(&x, true).unwrap()));
    let m3 = tiny(8).build(VOCAB, 2, &dev(), DType::F32).unwrap();
    assert!(max_abs_diff(&a, &m3.hidden(&x, true).unwrap()) > 1e-3);
    // dropout > 0 is inactive at evaluation, active (and seeded) in training
    let p = LstmConfig {
        tbptt_len: 64,
        max_seq_len: 16,
        ..LstmConfig::paper(8)
    };
    let d1 = p.build(VOCAB, 1, &dev(), DType::F32).unwrap();
    assert_eq!(vals(&d1.hidden(&x, false).unwrap()), vals(&c));
    let t1 = d1.hidden(&x, true).unwrap();
    let t2 = d1.hidden(&x, true).unwrap();
    assert!(max_abs_diff(&t1, &c) > 1e-3, "dropout had no effect");
    assert!(max_abs_diff(&t1, &t2) > 1e-3, "masks repeated across calls");
    let d2 = p.build(VOCAB, 1, &dev(), DType::F32).unwrap();
    assert_eq!(
        vals(&d2.hidden(&x, true).unwrap()),
        vals(&t1),
        "same seed, same masks"
    );
}

/// Columns of `name`'s gradient that are exactly zero. With batch 1, a unit
/// dropped by a mask shared across all T steps zeroes its whole column of the
/// weight that reads it; a mask redrawn per step would leave it non-zero
/// (probability p^T ≈ 0.004 per unit at p = 0.5, T = 8).
fn zero_grad_columns(cfg: LstmConfig, name: &str) -> (usize, usize) {
    let m = cfg.build(VOCAB, 4, &dev(), DType::F64).unwrap();
    let x = Tensor::new(&[[1u32, 5, 2, 7, 3, 9, 0, 4]], &dev()).unwrap();
    let y = Tensor::new(&[5u32, 2, 7, 3, 9, 0, 4, 6], &dev()).unwrap();
    let grads = lm_loss(&m, &x, &y, true).unwrap().backward().unwrap();
    let g = grads
        .get(m.params().get(name).unwrap().var.as_tensor())
        .unwrap();
    let colmax = g.abs().unwrap().max(D::Minus2).unwrap();
    let v = vals(&colmax);
    (v.iter().filter(|x| **x == 0.0).count(), v.len())
}

#[test]
fn dropout_masks_are_shared_across_time_steps() {
    let base = LstmConfig {
        tbptt_len: 4,
        max_seq_len: 16,
        ..LstmConfig::paper_no_dropout(16)
    };
    // no dropout: no zero columns
    assert_eq!(zero_grad_columns(base.clone(), "layers.0.w_ih").0, 0);
    assert_eq!(zero_grad_columns(base.clone(), "layers.0.w_hh").0, 0);
    assert_eq!(zero_grad_columns(base.clone(), "layers.1.w_ih").0, 0);
    // input dropout: embedding features dropped at every step (and across the TBPTT windows)
    let (z, n) = zero_grad_columns(
        LstmConfig {
            dropout_input: 0.5,
            ..base.clone()
        },
        "layers.0.w_ih",
    );
    assert!(
        (3..=13).contains(&z),
        "input dropout zeroed {z} of {n} columns"
    );
    // hidden dropout: recurrent units dropped at every step
    let (z, n) = zero_grad_columns(
        LstmConfig {
            dropout_hidden: 0.5,
            ..base.clone()
        },
        "layers.0.w_hh",
    );
    assert!(
        (3..=13).contains(&z),
        "hidden dropout zeroed {z} of {n} columns"
    );
    // output dropout: layer-0 outputs dropped at every step before layer 1
    let (z, n) = zero_grad_columns(
        LstmConfig {
            dropout_output: 0.5,
            ..base
        },
        "layers.1.w_ih",
    );
    assert!(
        (3..=13).contains(&z),
        "output dropout zeroed {z} of {n} columns"
    );
}

#[test]
fn parameter_and_flop_counts_match_the_formulas() {
    let (v, d) = (4096, 64);
    let cfg = LstmConfig::paper(d);
    let c = cfg.param_counts(v);
    assert_eq!(c.embedding, 4096 * 64);
    // per layer 4H(d_in + H) + 4H + 2H = 32768 + 256 + 128 = 33152
    assert_eq!(c.non_embedding, 2 * 33152);
    let m = cfg.build(v, 0, &dev(), DType::F32).unwrap();
    assert_eq!(m.params().num_elements(), c.total());
    assert_eq!(ModelConfig::Lstm(cfg.clone()).param_counts(v), c);
    let f = cfg.flops(v, 128);
    // 2 layers × 8H(d + H) + 2dV = 131072 + 524288
    assert_eq!(f.forward_per_token, 655_360.0);
    assert_eq!(f.train_per_token, 3.0 * 655_360.0);
    assert_eq!(f.six_n_per_token, 6.0 * 66_304.0);
    assert_eq!(f.chinchilla_per_token, 0.0);
    assert_eq!(
        f.breakdown.iter().map(|(_, x)| x).sum::<f64>(),
        f.forward_per_token
    );
    assert_eq!(m.flops(128), f);
    // hidden ≠ d: projection d·H params and 2·H·d FLOPs; layer 1 reads H
    let p = LstmConfig {
        hidden: Some(96),
        layer_norm: false,
        n_layers: 2,
        ..LstmConfig::paper(d)
    };
    let c = p.param_counts(v);
    assert_eq!(
        c.non_embedding,
        (4 * 96 * (64 + 96) + 384) + (4 * 96 * (96 + 96) + 384) + 64 * 96
    );
    assert_eq!(
        p.build(v, 0, &dev(), DType::F32)
            .unwrap()
            .params()
            .num_elements(),
        c.total()
    );
    let f = p.flops(v, 128);
    assert_eq!(
        f.forward_per_token,
        8.0 * 96.0 * (64.0 + 96.0) + 8.0 * 96.0 * 192.0 + 2.0 * 96.0 * 64.0 + 2.0 * 64.0 * 4096.0
    );
}

#[test]
fn toml_parses_with_defaults_and_validation_names_keys() {
    let cfg: ModelConfig = toml::from_str("kind = \"lstm\"\nd_model = 32").unwrap();
    assert_eq!(cfg, ModelConfig::Lstm(LstmConfig::paper(32)));
    let cfg: ModelConfig =
        toml::from_str("kind = \"lstm\"\nd_model = 32\nn_layers = 1\nhidden = 48\ntbptt_len = 32\ndropout_input = 0\ndropout_hidden = 0\ndropout_output = 0\nlayer_norm = false")
            .unwrap();
    let ModelConfig::Lstm(c) = &cfg else { panic!() };
    assert_eq!(
        (c.n_layers, c.hidden_size(), c.tbptt_len, c.layer_norm),
        (1, 48, 32, false)
    );
    assert_eq!(c.dropout_input + c.dropout_hidden + c.dropout_output, 0.0);
    let err = toml::from_str::<ModelConfig>("kind = \"lstm\"\nd_model = 32\nhead_dim = 16")
        .unwrap_err()
        .to_string();
    assert!(err.contains("head_dim"), "{err}");
    for (bad, key) in [
        (
            LstmConfig {
                dropout_hidden: 1.0,
                ..LstmConfig::paper(8)
            },
            "model.dropout_hidden",
        ),
        (
            LstmConfig {
                dropout_input: -0.1,
                ..LstmConfig::paper(8)
            },
            "model.dropout_input",
        ),
        (
            LstmConfig {
                tbptt_len: 0,
                ..LstmConfig::paper(8)
            },
            "model.tbptt_len",
        ),
        (
            LstmConfig {
                n_layers: 0,
                ..LstmConfig::paper(8)
            },
            "model.n_layers",
        ),
        (
            LstmConfig {
                hidden: Some(0),
                ..LstmConfig::paper(8)
            },
            "model.hidden",
        ),
        (
            LstmConfig {
                d_model: 0,
                ..LstmConfig::paper(8)
            },
            "model.d_model",
        ),
    ] {
        let e = ModelConfig::Lstm(bad).validate().unwrap_err();
        assert_eq!(e.key, key);
        assert!(e.message.contains(key), "{}", e.message);
    }
    let m = ModelConfig::Lstm(LstmConfig {
        max_seq_len: 4,
        ..LstmConfig::paper(8)
    })
    .build(VOCAB, 0, &dev(), DType::F32)
    .unwrap();
    let long = Tensor::zeros((1, 5), DType::U32, &dev()).unwrap();
    assert!(m
        .hidden(&long, false)
        .unwrap_err()
        .to_string()
        .contains("model.max_seq_len"));
}

/// A model with the state carried across batches and its twin with zero
/// state per sequence: the same seed, so the same parameters.
fn carry_pair(kernel: LstmKernel, n_layers: usize) -> (Lstm, Lstm) {
    let cfg = LstmConfig {
        kernel,
        n_layers,
        layer_norm: n_layers > 1,
        tbptt_len: 3,
        max_seq_len: 16,
        carry_state: CarryState::AcrossBatches,
        ..LstmConfig::paper_no_dropout(4)
    };
    let carry = cfg.build(VOCAB, 5, &dev(), DType::F64).unwrap();
    let plain = LstmConfig {
        carry_state: CarryState::WithinSequence,
        ..cfg
    }
    .build(VOCAB, 5, &dev(), DType::F64)
    .unwrap();
    (carry, plain)
}

#[test]
fn carried_state_continues_the_previous_batch_and_eval_starts_from_zero() {
    // batch 1 and batch 2 (2 rows × 4 tokens); batch 2's rows continue batch 1's
    let x1 = Tensor::new(&[[1u32, 2, 3, 1], [3, 3, 2, 1]], &dev()).unwrap();
    let x2 = Tensor::new(&[[4u32, 5, 6, 4], [6, 5, 5, 4]], &dev()).unwrap();
    let both = Tensor::cat(&[&x1, &x2], 1).unwrap();
    for kernel in [LstmKernel::Window, LstmKernel::Cell, LstmKernel::Composite] {
        for n_layers in [1, 2] {
            let what = format!("{kernel:?}, {n_layers} layer(s)");
            let (carry, plain) = carry_pair(kernel, n_layers);
            assert!(carry.carried_state().is_none());
            let h1 = carry.hidden(&x1, true).unwrap();
            let st = carry
                .carried_state()
                .expect("a training call stores its final state");
            assert_eq!(st.len(), n_layers);
            assert_eq!(st[0].dims(), &[2, 8]);
            let h2 = carry.hidden(&x2, true).unwrap();
            // one call over the 8 tokens of each row computes the same outputs:
            // batch 2's first step sees batch 1's final (h, c) in every layer
            let whole = plain.hidden(&both, true).unwrap();
            let d1 = max_abs_diff(&h1, &whole.narrow(1, 0, 4).unwrap());
            let d2 = max_abs_diff(&h2, &whole.narrow(1, 4, 4).unwrap());
            assert!(d1 < 1e-12 && d2 < 1e-12, "{what}: {d1} {d2}");
            // the carried state is the last step of that computation: h_T is the
            // last output of the last layer (no norm with one layer)
            if n_layers == 1 {
                let h_last = carry.carried_state().unwrap()[0].narrow(1, 0, 4).unwrap();
                let out_last = whole.narrow(1, 7, 1).unwrap().squeeze(1).unwrap();
                assert!(max_abs_diff(&h_last, &out_last) < 1e-12, "{what}");
            }
            // and differs from batch 2 from zero state (the within-sequence model)
            let h2_zero = plain.hidden(&x2, true).unwrap();
            assert!(max_abs_diff(&h2, &h2_zero) > 1e-3, "{what}");
            // evaluation starts from zero state and leaves the carry alone
            let before = carry.carried_state().unwrap();
            let h2_eval = carry.hidden(&x2, false).unwrap();
            assert!(max_abs_diff(&h2_eval, &h2_zero) < 1e-12, "{what}");
            let after = carry.carried_state().unwrap();
            for (a, b) in before.iter().zip(&after) {
                assert_eq!(max_abs_diff(a, b), 0.0, "{what}");
            }
            // a new batch size starts from zero state again
            let x3 = x2.narrow(0, 0, 1).unwrap();
            let h3 = carry.hidden(&x3, true).unwrap();
            let h3_zero = plain.hidden(&x3, true).unwrap();
            assert!(max_abs_diff(&h3, &h3_zero) < 1e-12, "{what}");
            // the state can be cleared and restored (for a checkpoint)
            carry.set_carried_state(Some(before.clone())).unwrap();
            let h2_again = carry.hidden(&x2, true).unwrap();
            let (fresh, _) = carry_pair(kernel, n_layers);
            fresh.hidden(&x1, true).unwrap();
            fresh.hidden(&x2, true).unwrap();
            let h2_fresh = fresh.hidden(&x2, true).unwrap();
            assert!(max_abs_diff(&h2_again, &h2_fresh) < 1e-12, "{what}");
            carry.set_carried_state(None).unwrap();
            assert!(max_abs_diff(&carry.hidden(&x2, true).unwrap(), &h2_zero) < 1e-12);
            assert!(carry
                .set_carried_state(Some(vec![
                    Tensor::zeros((2, 3), DType::F64, &dev()).unwrap()
                ]))
                .is_err());
        }
    }
}

#[test]
fn no_gradient_crosses_from_one_batch_into_the_previous_one() {
    // tokens 1..=3 appear only in batch 1, tokens 4..=6 only in batch 2
    let x1 = Tensor::new(&[[1u32, 2, 3, 1], [3, 3, 2, 1]], &dev()).unwrap();
    let x2 = Tensor::new(&[[4u32, 5, 6, 4], [6, 5, 5, 4]], &dev()).unwrap();
    let w = Tensor::ones((2, 4, 4), DType::F64, &dev())
        .unwrap()
        .broadcast_mul(&fixed(1, 4, 1.0, 7))
        .unwrap();
    for kernel in [LstmKernel::Window, LstmKernel::Composite] {
        let (m, _) = carry_pair(kernel, 2);
        // a loss on batch 2's outputs only (no output layer, so an embedding
        // row is reached only through the recurrence)
        let batch2_loss = |m: &Lstm| -> Tensor {
            m.set_carried_state(None).unwrap();
            m.hidden(&x1, true).unwrap();
            (m.hidden(&x2, true).unwrap() * &w)
                .unwrap()
                .sum_all()
                .unwrap()
        };
        let grads = batch2_loss(&m).backward().unwrap();
        let g = grads.get(m.output_weight()).unwrap();
        // batch 2's tokens get gradient, batch 1's none
        assert!(vals(&g.narrow(0, 4, 3).unwrap())
            .iter()
            .any(|v| v.abs() > 1e-4));
        let g1 = vals(&g.narrow(0, 1, 3).unwrap());
        assert!(
            g1.iter().all(|v| *v == 0.0),
            "{kernel:?}: gradient crossed the batch boundary: {g1:?}"
        );
        // ... although the batch-2 loss does depend on batch 1 (finite difference)
        let var = &m.params().get("embed.weight").unwrap().var;
        let orig = var.as_tensor().copy().unwrap();
        let bump = Tensor::zeros((VOCAB, 4), DType::F64, &dev())
            .unwrap()
            .slice_assign(&[2..3, 0..1], &Tensor::new(&[[1e-5f64]], &dev()).unwrap())
            .unwrap();
        var.set(&(&orig + &bump).unwrap()).unwrap();
        let lp = vals(&batch2_loss(&m))[0];
        var.set(&(&orig - &bump).unwrap()).unwrap();
        let lm = vals(&batch2_loss(&m))[0];
        var.set(&orig).unwrap();
        let fd = (lp - lm) / 2e-5;
        assert!(
            fd.abs() > 1e-4,
            "{kernel:?}: batch 2 does not see batch 1: {fd}"
        );
    }
}

#[test]
fn authors_runs_config_and_carry_state_parse() {
    let a = LstmConfig::authors_runs(64);
    assert_eq!(
        (
            a.n_layers,
            a.layer_norm,
            a.tbptt_len,
            a.carry_state,
            a.hidden_size()
        ),
        (1, false, 32, CarryState::AcrossBatches, 64)
    );
    assert_eq!(a.dropout_input + a.dropout_hidden + a.dropout_output, 0.0);
    let cfg: ModelConfig = toml::from_str(
        "kind = \"lstm\"\nd_model = 64\nn_layers = 1\nlayer_norm = false\ntbptt_len = 32\ndropout_input = 0\ndropout_hidden = 0\ndropout_output = 0\ncarry_state = \"across_batches\"",
    )
    .unwrap();
    assert_eq!(cfg, ModelConfig::Lstm(a));
    // the default is omitted when serialised (older configs keep their run ids)
    let j = serde_json::to_value(LstmConfig::paper(8)).unwrap();
    assert!(j.get("carry_state").is_none(), "{j}");
    let j = serde_json::to_value(LstmConfig::authors_runs(8)).unwrap();
    assert_eq!(j["carry_state"], "across_batches");
    let e =
        toml::from_str::<ModelConfig>("kind = \"lstm\"\nd_model = 8\ncarry_state = \"forever\"")
            .unwrap_err()
            .to_string();
    assert!(
        e.contains("within_sequence") && e.contains("across_batches"),
        "{e}"
    );
}
