//! The trained bias on the tied output layer (`output_bias`): parameters,
//! FLOPs, logits, loss and its gradient, and the config key's default.

use algoprog_models::{LstmConfig, ModelConfig, TransformerConfig};
use candle_core::{DType, Device, Tensor};

const V: usize = 11;

fn models() -> Vec<(&'static str, ModelConfig, ModelConfig)> {
    let mut t = TransformerConfig::modern(16);
    t.max_seq_len = 8;
    let mut tb = t.clone();
    tb.output_bias = true;
    let mut l = LstmConfig::paper_no_dropout(8);
    l.max_seq_len = 8;
    let mut lb = l.clone();
    lb.output_bias = true;
    vec![
        (
            "transformer",
            ModelConfig::Transformer(t),
            ModelConfig::Transformer(tb),
        ),
        ("lstm", ModelConfig::Lstm(l), ModelConfig::Lstm(lb)),
    ]
}

#[test]
fn the_bias_is_an_embedding_side_parameter_initialised_to_zero() {
    for (name, plain, biased) in models() {
        let (a, b) = (plain.param_counts(V), biased.param_counts(V));
        assert_eq!(b.embedding, a.embedding + V, "{name}");
        assert_eq!(b.non_embedding, a.non_embedding, "{name}: N unchanged");
        let m = biased.build(V, 1, &Device::Cpu, DType::F32).unwrap();
        let built: usize = m.params().iter().map(|p| p.var.elem_count()).sum();
        assert_eq!(built, b.total(), "{name}: counted = built");
        let bias = m.output_bias().expect("a bias");
        assert_eq!(bias.dims(), [V]);
        let v: Vec<f32> = bias.to_vec1().unwrap();
        assert!(v.iter().all(|&x| x == 0.0), "{name}: initialised to 0");
        assert!(plain
            .build(V, 1, &Device::Cpu, DType::F32)
            .unwrap()
            .output_bias()
            .is_none());
        // the matmul FLOPs (the ledger's convention) do not change
        assert_eq!(
            plain.flops(V, 8).forward_per_token,
            biased.flops(V, 8).forward_per_token,
            "{name}"
        );
    }
    // the Transformer's component breakdown counts the V bias adds per token
    // as element-wise work
    let mut t = TransformerConfig::modern(16);
    let out = |c: &TransformerConfig| {
        c.spec()
            .component_flops(V, 8)
            .into_iter()
            .find(|(n, _)| n == "output")
            .unwrap()
            .1
    };
    let a = out(&t);
    t.output_bias = true;
    let b = out(&t);
    assert_eq!(b.matmul, a.matmul);
    assert_eq!(b.elementwise - a.elementwise, (8 * V) as f64);
}

/// logits = h·Eᵀ + b; the loss through the output layer (the fused
/// kernel on f32 CPU tensors) equals the cross-entropy of those logits
/// computed here by hand, and its bias gradient is the column sums of
/// (softmax − onehot)/n.
#[test]
fn logits_loss_and_bias_gradient_use_the_bias() {
    let x = Tensor::new(&[[1u32, 4, 2, 9], [3, 0, 10, 5]], &Device::Cpu).unwrap();
    let y: Vec<u32> = vec![4, 2, 9, 7, 0, 10, 5, 1];
    let targets = Tensor::new(y.as_slice(), &Device::Cpu).unwrap();
    for (name, _, biased) in models() {
        let m = biased.build(V, 3, &Device::Cpu, DType::F32).unwrap();
        let b: Vec<f32> = (0..V).map(|j| (j as f32 - 5.0) * 0.3).collect();
        let bvar = m
            .params()
            .iter()
            .find(|p| p.name == "out_bias")
            .expect("out_bias parameter")
            .var
            .clone();
        bvar.set(&Tensor::new(b.as_slice(), &Device::Cpu).unwrap())
            .unwrap();
        let h = m.hidden(&x, false).unwrap();
        let d = m.d_model();
        let h2 = h.reshape((8, d)).unwrap();
        let hv: Vec<Vec<f32>> = h2.to_vec2().unwrap();
        let e: Vec<Vec<f32>> = m.output_weight().to_vec2().unwrap();
        let z: Vec<Vec<f64>> = hv
            .iter()
            .map(|r| {
                (0..V)
                    .map(|j| {
                        r.iter()
                            .zip(&e[j])
                            .map(|(a, c)| *a as f64 * *c as f64)
                            .sum::<f64>()
                            + b[j] as f64
                    })
                    .collect()
            })
            .collect();
        let logits: Vec<Vec<f32>> = m
            .logits(&x, false)
            .unwrap()
            .reshape((8, V))
            .unwrap()
            .to_vec2()
            .unwrap();
        for (zr, lr) in z.iter().zip(&logits) {
            for (a, c) in zr.iter().zip(lr) {
                assert!((a - *c as f64).abs() < 1e-4, "{name}: logit {c} vs {a}");
            }
        }
        let mut want = 0.0;
        let mut db = [0.0f64; V];
        for (zr, &t) in z.iter().zip(&y) {
            let mx = zr.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let s: f64 = zr.iter().map(|v| (v - mx).exp()).sum();
            want += (s.ln() + mx - zr[t as usize]) / 8.0;
            for j in 0..V {
                let p = (zr[j] - mx).exp() / s;
                db[j] += (p - if j == t as usize { 1.0 } else { 0.0 }) / 8.0;
            }
        }
        let loss = m.loss(&h2, &targets).unwrap();
        let got = loss.to_scalar::<f32>().unwrap() as f64;
        assert!((got - want).abs() < 1e-5, "{name}: loss {got} vs {want}");
        // the same hidden states with a graph, for the gradient
        let hg = m.hidden(&x, true).unwrap().reshape((8, d)).unwrap();
        let grads = m.loss(&hg, &targets).unwrap().backward().unwrap();
        let g: Vec<f32> = grads.get(bvar.as_tensor()).unwrap().to_vec1().unwrap();
        for j in 0..V {
            assert!(
                (g[j] as f64 - db[j]).abs() < 1e-5,
                "{name}: db[{j}] {} vs {}",
                g[j],
                db[j]
            );
        }
        assert!(db.iter().any(|v| v.abs() > 1e-2));
        // the bias changes the prediction: the biased loss differs from
        // the loss of the same model without it
        let unbiased = algoprog_nn::cross_entropy(&h2, m.output_weight(), &targets)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        assert!((unbiased - want).abs() > 1e-2, "{name}");
    }
}

/// The key defaults to off, so configs (and stored run records) written
/// before it existed build the same model; it is written only when on.
#[test]
fn the_key_defaults_to_off_and_round_trips() {
    let c: ModelConfig = toml::from_str("kind = \"transformer\"\nd_model = 32\n").unwrap();
    let ModelConfig::Transformer(t) = &c else {
        panic!()
    };
    assert!(!t.output_bias);
    let json = serde_json::to_value(&c).unwrap();
    assert!(json.get("output_bias").is_none(), "{json}");
    let c: ModelConfig =
        toml::from_str("kind = \"lstm\"\nd_model = 32\noutput_bias = true\n").unwrap();
    let ModelConfig::Lstm(l) = &c else { panic!() };
    assert!(l.output_bias);
    let back: ModelConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
}
