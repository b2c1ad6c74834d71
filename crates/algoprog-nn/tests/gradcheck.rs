//! Finite-difference gradient checks in f64 for every component, with
//! respect to its parameters and its input.

use algoprog_nn::gradcheck::check;
use algoprog_nn::*;
use candle_core::{DType, Device, Result, Tensor, Var};
use std::sync::Arc;

/// Draws every parameter from N(0, 0.5²) so the check is well conditioned.
struct Wide;
impl Initializer for Wide {
    fn init(&self, _: ParamRole, _: &[usize]) -> Init {
        Init::Normal { std: 0.5 }
    }
}

fn builder(seed: u64) -> ParamBuilder {
    ParamBuilder::with_initializer(seed, &Device::Cpu, DType::F64, Arc::new(Wide))
}

/// A fixed input Var and a fixed random weighting R; the loss is sum(f(x) ⊙ R).
fn input(shape: &[usize], seed: u64) -> (Var, Tensor) {
    let pb = builder(seed + 100);
    pb.param_with("x", shape, ParamRole::Other, Init::Normal { std: 1.0 })
        .unwrap();
    let mut out_shape = shape.to_vec();
    *out_shape.last_mut().unwrap() = shape[shape.len() - 1];
    pb.param_with("r", &out_shape, ParamRole::Other, Init::Normal { std: 1.0 })
        .unwrap();
    let st = pb.finish();
    let x = st.get("x").unwrap().var.clone();
    let r = st.get("r").unwrap().var.as_tensor().detach();
    (x, r)
}

const TOL: f64 = 1e-4;

fn run(name: &str, store: ParamStore, x: &Var, f: &dyn Fn(&Tensor) -> Result<Tensor>, r: &Tensor) {
    let mut vars = store.vars();
    vars.push(x.clone());
    let loss = || (f(x.as_tensor())? * r)?.sum_all();
    let res = check(&vars, &loss, 1e-5).unwrap();
    assert!(res.checked > 0);
    assert!(
        res.max_abs_grad > 1e-3,
        "{name}: gradients vanish ({})",
        res.max_abs_grad
    );
    assert!(
        res.max_rel_err < TOL,
        "{name}: FD mismatch {} at {:?}: {:?}",
        res.max_rel_err,
        res.worst,
        res.worst_values
    );
}

fn check_ff<F: FeedForward>(name: &str, cfg: &F::Config) {
    let dims = FfDims {
        d_model: 4,
        ff_ratio: 2.0,
        bias: true,
    };
    let pb = builder(1);
    let ff = F::new(cfg, &dims, &pb).unwrap();
    let (x, r) = input(&[3, 4], 1);
    run(name, pb.finish(), &x, &|x| ff.forward(x), &r);
}

#[test]
fn feed_forwards_match_finite_differences() {
    check_ff::<Mlp<Relu>>("relu", &());
    check_ff::<Mlp<Gelu>>("gelu", &());
    check_ff::<Mlp<GeluTanh>>("gelu_tanh", &());
    check_ff::<SwiGlu>("swiglu", &GatedHidden::Paper);
    check_ff::<GeGlu>("geglu", &GatedHidden::ParamMatched);
}

fn check_norm<N: Norm>(name: &str) {
    let pb = builder(2);
    let n = N::new(&N::Config::default(), 5, &pb).unwrap();
    // perturb gains and shifts away from 1 and 0 through the optimiser-free path
    let store = pb.finish();
    for p in store.iter() {
        let v = (p.var.as_tensor()
            + Tensor::new(&[0.3f64, -0.2, 0.1, 0.5, -0.4], &Device::Cpu).unwrap())
        .unwrap();
        p.var.set(&v).unwrap();
    }
    let (x, r) = input(&[2, 3, 5], 2);
    run(name, store, &x, &|x| n.forward(x), &r);
}

#[test]
fn norms_match_finite_differences() {
    check_norm::<LayerNorm>("layer_norm");
    check_norm::<RmsNorm>("rms_norm");
}

fn check_attention<P: PositionalEncoding>(name: &str, cfg: &P::Config) {
    let dims = AttentionDims {
        d_model: 8,
        head_dim: 4,
        bias: true,
    };
    let pd = PosDims {
        d_model: 8,
        n_heads: 2,
        head_dim: 4,
        max_seq_len: 6,
    };
    let pb = builder(3);
    let pos = P::new(cfg, &pd, &pb.pp("pos")).unwrap();
    let attn = CausalSelfAttention::new(&dims, &pb.pp("attn")).unwrap();
    let (x, r) = input(&[2, 5, 8], 3);
    run(
        name,
        pb.finish(),
        &x,
        &|x| attn.forward(&pos.embed(x)?, &pos),
        &r,
    );
}

#[test]
fn attention_with_each_positional_encoding_matches_finite_differences() {
    check_attention::<NoPe>("nope", &());
    check_attention::<Sinusoidal>("sinusoidal", &Default::default());
    check_attention::<Learned>("learned", &());
    check_attention::<Rotary>("rotary", &RotaryConfig::default());
    check_attention::<Alibi>("alibi", &());
}

#[test]
fn cross_entropy_matches_finite_differences() {
    let pb = builder(4);
    let w = pb.param("w", &[7, 4], ParamRole::Embedding).unwrap();
    let store = pb.finish();
    let (h, _) = input(&[5, 4], 4);
    let targets = Tensor::new(&[0u32, 6, 3, 3, 1], &Device::Cpu).unwrap();
    let mut vars = store.vars();
    vars.push(h.clone());
    let loss = || cross_entropy(h.as_tensor(), &w, &targets);
    let res = check(&vars, &loss, 1e-5).unwrap();
    assert!(res.max_abs_grad > 1e-3);
    assert!(
        res.max_rel_err < TOL,
        "cross entropy FD mismatch {}",
        res.max_rel_err
    );
    // and the value is the mean NLL computed by hand from the logits
    let logits: Vec<Vec<f64>> = h
        .as_tensor()
        .matmul(&w.t().unwrap())
        .unwrap()
        .to_vec2()
        .unwrap();
    let t = [0usize, 6, 3, 3, 1];
    let expected: f64 = logits
        .iter()
        .zip(t)
        .map(|(z, y)| z.iter().map(|v| v.exp()).sum::<f64>().ln() - z[y])
        .sum::<f64>()
        / 5.0;
    let got = loss().unwrap().to_scalar::<f64>().unwrap();
    assert!((got - expected).abs() < 1e-12, "{got} vs {expected}");
}

#[test]
fn the_checker_catches_a_stopped_gradient() {
    // d/dx sum(stopgrad(x)·x) is x analytically here but 2x in truth.
    let (x, r) = input(&[2, 3], 9);
    let loss = || ((x.as_tensor().detach() * x.as_tensor())? * &r)?.sum_all();
    let res = check(std::slice::from_ref(&x), &loss, 1e-5).unwrap();
    // error ≈ |2x − x| / (|2x| + |x|) = 1/3 (slightly less through the floor)
    assert!(res.max_rel_err > 0.3, "{}", res.max_rel_err);
}
