//! Optimisers on a two-parameter problem, three steps, against hand-computed
//! updates. Loss L(w₁, w₂) = ½w₁² + 2w₂², gradient (w₁, 4w₂), start (1, 1).
//! w₁ has role MlpIn, w₂ role Bias (to exercise the decay mask).

use algoprog_nn::*;
use candle_core::{DType, Device, Tensor, Var};

fn problem() -> (ParamStore, Var, Var) {
    let pb = ParamBuilder::new(0, &Device::Cpu, DType::F64);
    pb.param_with("w1", &[1], ParamRole::MlpIn, Init::Constant(1.0))
        .unwrap();
    pb.param_with("w2", &[1], ParamRole::Bias, Init::Constant(1.0))
        .unwrap();
    let st = pb.finish();
    let (a, b) = (
        st.get("w1").unwrap().var.clone(),
        st.get("w2").unwrap().var.clone(),
    );
    (st, a, b)
}

fn val(v: &Var) -> f64 {
    v.as_tensor().to_vec1::<f64>().unwrap()[0]
}

/// Runs 3 steps at learning rate `lr`, returning (w₁, w₂) after each.
fn run(cfg: &OptimizerConfig, lr: f64) -> Vec<(f64, f64)> {
    let (st, w1, w2) = problem();
    let mut opt = cfg.build(&st).unwrap();
    let mut out = vec![];
    for _ in 0..3 {
        let loss = ((w1.as_tensor().sqr().unwrap() * 0.5).unwrap()
            + (w2.as_tensor().sqr().unwrap() * 2.0).unwrap())
        .unwrap()
        .sum_all()
        .unwrap();
        let g = loss.backward().unwrap();
        opt.step(&g, lr).unwrap();
        out.push((val(&w1), val(&w2)));
    }
    assert_eq!(opt.steps(), 3);
    out
}

fn close(got: &[(f64, f64)], want: &[(f64, f64)], tol: f64) {
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g.0 - w.0).abs() < tol && (g.1 - w.1).abs() < tol,
            "got {got:?}, want {want:?}"
        );
    }
}

#[test]
fn sgd_with_momentum() {
    // μ = 0.9, η = 0.1; b ← 0.9b + g; w ← w − ηb
    // 1: g = (1, 4)     b = (1, 4)       w = (0.9, 0.6)
    // 2: g = (0.9, 2.4) b = (1.8, 6.0)   w = (0.72, 0.0)
    // 3: g = (0.72, 0)  b = (2.34, 5.4)  w = (0.486, −0.54)
    let cfg = OptimizerConfig::Sgd {
        momentum: 0.9,
        nesterov: false,
        weight_decay: 0.0,
        decay_mask: DecayMask::default(),
    };
    close(
        &run(&cfg, 0.1),
        &[(0.9, 0.6), (0.72, 0.0), (0.486, -0.54)],
        1e-12,
    );
}

#[test]
fn sgd_with_nesterov_momentum() {
    // step = g + 0.9b
    // 1: b = (1, 4), step = (1.9, 7.6), w = (0.81, 0.24)
    // 2: g = (0.81, 0.96), b = (1.71, 4.56), step = (2.349, 5.064), w = (0.5751, −0.2664)
    // 3: g = (0.5751, −1.0656), b = (2.1141, 3.0384), step = (2.47779, 1.66896),
    //    w = (0.327321, −0.433296)
    let cfg = OptimizerConfig::Sgd {
        momentum: 0.9,
        nesterov: true,
        weight_decay: 0.0,
        decay_mask: DecayMask::default(),
    };
    close(
        &run(&cfg, 0.1),
        &[(0.81, 0.24), (0.5751, -0.2664), (0.327321, -0.433296)],
        1e-12,
    );
}

#[test]
fn rmsprop() {
    // α = 0.99, ε = 1e-8, η = 0.01: v ← 0.99v + 0.01g², w ← w − ηg/(√v + ε)
    // 1: v = (0.01, 0.16), g/√v = (10, 10), w = (0.9, 0.9)
    // 2: g = (0.9, 3.6), v = (0.018, 0.288), g/√v = 0.9/√0.018 = 3.6/√0.288 = 6.7082039…,
    //    w = (0.83291796…, 0.83291796…)
    // 3: g = (0.8329…, 3.3317…), v₁ = 0.99·0.018 + 0.01·0.8329² , …
    let got = run(&OptimizerConfig::rms_prop(), 0.01);
    let e: f64 = 1e-8;
    let w1: (f64, f64) = (1.0 - 0.01 / (0.1 + e), 1.0 - 0.01 * 4.0 / (0.4 + e));
    let (g1, g2) = (w1.0, 4.0 * w1.1);
    let (v1, v2) = (0.99 * 0.01 + 0.01 * g1 * g1, 0.99 * 0.16 + 0.01 * g2 * g2);
    let w2 = (
        w1.0 - 0.01 * g1 / (v1.sqrt() + e),
        w1.1 - 0.01 * g2 / (v2.sqrt() + e),
    );
    let (g1, g2) = (w2.0, 4.0 * w2.1);
    let (v1, v2) = (0.99 * v1 + 0.01 * g1 * g1, 0.99 * v2 + 0.01 * g2 * g2);
    let w3 = (
        w2.0 - 0.01 * g1 / (v1.sqrt() + e),
        w2.1 - 0.01 * g2 / (v2.sqrt() + e),
    );
    close(&got, &[w1, w2, w3], 1e-12);
    // the hand values above, to 1e-7 (ε shifts them by ~1e-8)
    close(&got, &[(0.9, 0.9), (0.83291796, 0.83291796)], 1e-7);
    assert!((0.9 / 0.018f64.sqrt() - 6.708203932).abs() < 1e-9);
}

#[test]
fn rmsprop_with_momentum() {
    // μ = 0.5: b ← 0.5b + g/(√v + ε), w ← w − ηb, η = 0.01
    // 1: b = (10, 10), w = (0.9, 0.9)
    // 2: g = (0.9, 3.6), v = (0.018, 0.288), b = 5 + 6.7082039… = 11.7082039…, w = 0.9 − 0.117082…
    let cfg = OptimizerConfig::RmsProp {
        alpha: 0.99,
        eps: 1e-8,
        momentum: 0.5,
        weight_decay: 0.0,
        decay_mask: DecayMask::default(),
    };
    let got = run(&cfg, 0.01);
    let b2 = 5.0 + 0.9 / 0.018f64.sqrt();
    let w2 = 0.9 - 0.01 * b2;
    // ε = 1e-8 moves these values by ~1e-8
    assert!(
        (got[0].0 - 0.9).abs() < 1e-7 && (got[0].1 - 0.9).abs() < 1e-7,
        "{got:?}"
    );
    assert!(
        (got[1].0 - w2).abs() < 1e-7 && (got[1].1 - w2).abs() < 1e-7,
        "{got:?}"
    );
    assert!((w2 - 0.782917960675).abs() < 1e-9);
}

#[test]
fn adamw_and_adam() {
    // AdamW, η = 0.1, λ = 0.01, β = (0.9, 0.999), ε = 1e-8.
    // Step 1: w ← w(1 − ηλ) = 0.999; m̂ = g, v̂ = g² ⇒ w ← 0.999 − 0.1·g/(|g| + ε) ≈ 0.899
    // Steps 2–3 by the same formulas, written out with scalars:
    fn reference(decoupled: bool, wd: f64) -> Vec<(f64, f64)> {
        let (b1, b2, eps, lr) = (0.9f64, 0.999f64, 1e-8, 0.1);
        let mut w = [1.0f64, 1.0];
        let (mut m, mut v) = ([0.0f64; 2], [0.0f64; 2]);
        let mut out = vec![];
        for t in 1..=3 {
            let mut g = [w[0], 4.0 * w[1]];
            for i in 0..2 {
                if decoupled {
                    w[i] *= 1.0 - lr * wd;
                } else {
                    g[i] += wd * w[i];
                }
                m[i] = b1 * m[i] + (1.0 - b1) * g[i];
                v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
                let mh = m[i] / (1.0 - b1.powi(t));
                let vh = v[i] / (1.0 - b2.powi(t));
                w[i] -= lr * mh / (vh.sqrt() + eps);
            }
            out.push((w[0], w[1]));
        }
        out
    }
    let got = run(&OptimizerConfig::adam_w(), 0.1);
    assert!((got[0].0 - (0.999 - 0.1 / (1.0 + 1e-8))).abs() < 1e-12);
    close(&got, &reference(true, 0.01), 1e-12);
    let adam = OptimizerConfig::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
        decay_mask: DecayMask::default(),
    };
    close(&run(&adam, 0.1), &reference(false, 0.01), 1e-12);
    close(
        &run(&OptimizerConfig::adam(), 0.1),
        &reference(false, 0.0),
        1e-12,
    );
    // Adam without weight decay and AdamW differ
    assert!((reference(true, 0.01)[2].0 - reference(false, 0.0)[2].0).abs() > 1e-4);
}

#[test]
fn decay_mask_skips_roles() {
    // Zero gradient for w₂ (a Bias): AdamW only decays it: w₂ ← w₂(1 − ηλ).
    let run_mask = |mask: DecayMask| {
        let (st, w1, w2) = problem();
        let cfg = OptimizerConfig::AdamW {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.5,
            decay_mask: mask,
        };
        let mut opt = cfg.build(&st).unwrap();
        let loss = ((w1.as_tensor().sqr().unwrap() * 0.5).unwrap()
            + (w2.as_tensor() * Tensor::new(&[0.0f64], &Device::Cpu).unwrap()).unwrap())
        .unwrap()
        .sum_all()
        .unwrap();
        opt.step(&loss.backward().unwrap(), 0.1).unwrap();
        val(&w2)
    };
    let decayed = run_mask(DecayMask::default());
    assert!((decayed - 0.95).abs() < 1e-12, "{decayed}");
    assert_eq!(
        run_mask(DecayMask {
            exclude_biases: true,
            ..Default::default()
        }),
        1.0
    );
    let m = DecayMask {
        exclude_norms: true,
        exclude_embeddings: true,
        exclude_biases: false,
    };
    assert!(
        !m.decays(ParamRole::Norm)
            && !m.decays(ParamRole::Embedding)
            && !m.decays(ParamRole::PositionalEmbedding)
    );
    assert!(m.decays(ParamRole::Bias) && m.decays(ParamRole::AttentionQkv));
}

#[test]
fn optimizer_state_round_trips() {
    let (st, w1, w2) = problem();
    let mut opt = OptimizerConfig::adam_w().build(&st).unwrap();
    let loss = || {
        ((w1.as_tensor().sqr().unwrap() * 0.5).unwrap()
            + (w2.as_tensor().sqr().unwrap() * 2.0).unwrap())
        .unwrap()
        .sum_all()
        .unwrap()
    };
    opt.step(&loss().backward().unwrap(), 0.1).unwrap();
    let state = opt.state_dict().unwrap();
    assert!(state.contains_key("w1.exp_avg") && state.contains_key("w2.exp_avg_sq"));
    let mut opt2 = OptimizerConfig::adam_w().build(&st).unwrap();
    opt2.load_state_dict(&state).unwrap();
    assert_eq!(opt2.steps(), 1);
    let before = (val(&w1), val(&w2));
    opt.step(&loss().backward().unwrap(), 0.1).unwrap();
    let a = (val(&w1), val(&w2));
    w1.set(&Tensor::new(&[before.0], &Device::Cpu).unwrap())
        .unwrap();
    w2.set(&Tensor::new(&[before.1], &Device::Cpu).unwrap())
        .unwrap();
    opt2.step(&loss().backward().unwrap(), 0.1).unwrap();
    assert_eq!(a, (val(&w1), val(&w2)));
}

#[test]
fn clip_grad_norm_scales_to_max_norm() {
    let (st, w1, w2) = problem();
    // L = 3w₁ + 4w₂ → gradient (3, 4), norm 5
    let loss = ((w1.as_tensor() * 3.0).unwrap() + (w2.as_tensor() * 4.0).unwrap())
        .unwrap()
        .sum_all()
        .unwrap();
    let mut g = loss.backward().unwrap();
    let n = clip_grad_norm(&st, &mut g, 1.0).unwrap();
    assert!((n - 5.0).abs() < 1e-12);
    let g1 = g.get(w1.as_tensor()).unwrap().to_vec1::<f64>().unwrap()[0];
    let g2 = g.get(w2.as_tensor()).unwrap().to_vec1::<f64>().unwrap()[0];
    assert!((g1 - 3.0 / (5.0 + 1e-6)).abs() < 1e-12 && (g2 - 4.0 / (5.0 + 1e-6)).abs() < 1e-12);
    // below the threshold nothing changes
    let mut g = loss.backward().unwrap();
    assert!((clip_grad_norm(&st, &mut g, 10.0).unwrap() - 5.0).abs() < 1e-12);
    assert_eq!(
        g.get(w1.as_tensor()).unwrap().to_vec1::<f64>().unwrap()[0],
        3.0
    );
}

#[test]
fn optimizer_configs_parse_from_toml() {
    let c: OptimizerConfig = toml::from_str("name = \"adam_w\"").unwrap();
    assert_eq!(c, OptimizerConfig::adam_w());
    let c: OptimizerConfig = toml::from_str(
        "name = \"adamw\"\nweight_decay = 0.1\ndecay_mask = { exclude_biases = true }",
    )
    .unwrap();
    match c {
        OptimizerConfig::AdamW {
            weight_decay,
            decay_mask,
            beta2,
            ..
        } => {
            assert_eq!((weight_decay, beta2), (0.1, 0.999));
            assert!(decay_mask.exclude_biases && !decay_mask.exclude_norms);
        }
        _ => panic!("wrong variant"),
    }
    let c: OptimizerConfig = toml::from_str("name = \"sgd\"\nnesterov = true").unwrap();
    assert_eq!(
        c,
        OptimizerConfig::Sgd {
            momentum: 0.9,
            nesterov: true,
            weight_decay: 0.0,
            decay_mask: DecayMask::default()
        }
    );
    let c: OptimizerConfig = toml::from_str("name = \"adam\"").unwrap();
    assert_eq!(c, OptimizerConfig::adam());
    assert!(toml::from_str::<OptimizerConfig>("name = \"sgd\"\nmomentun = 0.9").is_err());
    let e = OptimizerConfig::Sgd {
        momentum: 1.2,
        nesterov: false,
        weight_decay: 0.0,
        decay_mask: DecayMask::default(),
    }
    .validate()
    .unwrap_err();
    assert_eq!(e.key, "train.optimizer.momentum");
}
