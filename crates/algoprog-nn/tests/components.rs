//! FLOP counts of each component against hand derivations, parameter counts
//! against what the component actually creates, and seeded, role-based
//! initialisation and safetensors round trips of the parameter store.

use algoprog_nn::*;
use candle_core::{DType, Device};
use std::sync::Arc;

fn pb() -> ParamBuilder {
    ParamBuilder::new(7, &Device::Cpu, DType::F32)
}

#[test]
fn feed_forward_flops_and_params_match_hand_derivations() {
    // d = 8, ff_ratio 4 → h = 32, 10 tokens, biases on.
    let dims = FfDims {
        d_model: 8,
        ff_ratio: 4.0,
        bias: true,
    };
    // MLP: matmul 10·(2·8·32 + 2·32·8) = 10 240; elementwise 10·(act·32 + 32 + 8)
    assert_eq!(
        Mlp::<Relu>::flops(&(), &dims, 10),
        Flops::new(10_240.0, 10.0 * (32.0 + 40.0))
    );
    assert_eq!(
        Mlp::<Gelu>::flops(&(), &dims, 10),
        Flops::new(10_240.0, 10.0 * (5.0 * 32.0 + 40.0))
    );
    assert_eq!(
        Mlp::<GeluTanh>::flops(&(), &dims, 10),
        Flops::new(10_240.0, 10.0 * (9.0 * 32.0 + 40.0))
    );
    // SwiGLU (paper: h = 32): matmul 10·3·2·8·32 = 15 360; elementwise 10·((4+1)·32 + 2·32 + 8) = 2 320
    assert_eq!(
        SwiGlu::flops(&GatedHidden::Paper, &dims, 10),
        Flops::new(15_360.0, 2_320.0)
    );
    // GeGLU: elementwise 10·((5+1)·32 + 72) = 2 640
    assert_eq!(
        GeGlu::flops(&GatedHidden::Paper, &dims, 10),
        Flops::new(15_360.0, 2_640.0)
    );
    // parameter-matched: 2/3·32 = 21.33 → nearest multiple of 8 = 24; matmul 10·6·8·24 = 11 520
    assert_eq!(GatedHidden::ParamMatched.hidden(&dims), 24);
    assert_eq!(
        SwiGlu::flops(&GatedHidden::ParamMatched, &dims, 10).matmul,
        11_520.0
    );
    // d = 64: 170.67 → 168 (32 256 weights vs the MLP's 32 768)
    let d64 = FfDims {
        d_model: 64,
        ff_ratio: 4.0,
        bias: false,
    };
    assert_eq!(GatedHidden::ParamMatched.hidden(&d64), 168);
    assert_eq!(SwiGlu::num_params(&GatedHidden::ParamMatched, &d64), 32_256);
    assert_eq!(Mlp::<Relu>::num_params(&(), &d64), 32_768);
    assert_eq!(SwiGlu::num_params(&GatedHidden::Paper, &d64), 49_152);

    // parameter counts equal what is created
    let check = |n: usize, store: ParamStore| assert_eq!(store.num_elements(), n);
    let b = pb();
    Mlp::<Relu>::new(&(), &dims, &b).unwrap();
    check(Mlp::<Relu>::num_params(&(), &dims), b.finish());
    assert_eq!(Mlp::<Relu>::num_params(&(), &dims), 2 * 8 * 32 + 32 + 8);
    let b = pb();
    SwiGlu::new(&GatedHidden::ParamMatched, &dims, &b).unwrap();
    check(3 * 8 * 24 + 2 * 24 + 8, b.finish());
    let spec = FeedForwardSpec {
        kind: FeedForwardKind::GeGlu,
        gated_hidden: GatedHidden::Paper,
    };
    assert_eq!(
        DynFeedForward::flops(&spec, &dims, 10),
        GeGlu::flops(&GatedHidden::Paper, &dims, 10)
    );
}

#[test]
fn norm_flops_and_params() {
    // LayerNorm: 10·(7·8 + 2) = 580; RMSNorm: 10·(4·8 + 2) = 340
    assert_eq!(
        LayerNorm::flops(&Default::default(), 8, 10),
        Flops::new(0.0, 580.0)
    );
    assert_eq!(
        RmsNorm::flops(&Default::default(), 8, 10),
        Flops::new(0.0, 340.0)
    );
    let b = pb();
    LayerNorm::new(&Default::default(), 8, &b).unwrap();
    assert_eq!(b.finish().num_elements(), 16);
    let b = pb();
    RmsNorm::new(&Default::default(), 8, &b).unwrap();
    assert_eq!(b.finish().num_elements(), 8);
    assert_eq!(
        DynNorm::flops(&NormConfig::LayerNorm(Default::default()), 8, 10).elementwise,
        580.0
    );
}

#[test]
fn attention_and_positional_flops() {
    // b = 2, T = 5, d = 8, d_h = 4 (h = 2), biases on:
    // QKV 2·(2·5)·8·24 = 3 840; QKᵀ 2·2·2·5·5·4 = 800; AV 800; out 2·10·8·8 = 1 280 → 6 720
    // elementwise: 7·b·h·T² = 7·2·2·25 = 700, biases 4·10·8 = 320 → 1 020
    let dims = AttentionDims {
        d_model: 8,
        head_dim: 4,
        bias: true,
    };
    assert_eq!(
        CausalSelfAttention::flops(&dims, 2, 5),
        Flops::new(6_720.0, 1_020.0)
    );
    let b = pb();
    CausalSelfAttention::new(&dims, &b).unwrap();
    let st = b.finish();
    assert_eq!(st.num_elements(), CausalSelfAttention::num_params(&dims));
    assert_eq!(st.num_elements(), 4 * 64 + 32);
    let names: Vec<&str> = st.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["qkv.weight", "qkv.bias", "out.weight", "out.bias"]);

    let pd = PosDims {
        d_model: 8,
        n_heads: 2,
        head_dim: 4,
        max_seq_len: 16,
    };
    assert_eq!(
        Rotary::flops(&RotaryConfig::default(), &pd, 2, 5),
        Flops::new(0.0, 6.0 * 10.0 * 8.0)
    );
    // Sinusoidal: a √d scale and an add per element, 2 · (b=2 · T=5 · d=8).
    assert_eq!(
        Sinusoidal::flops(&Default::default(), &pd, 2, 5),
        Flops::new(0.0, 160.0)
    );
    assert_eq!(Learned::flops(&(), &pd, 2, 5), Flops::new(0.0, 80.0));
    assert_eq!(Alibi::flops(&(), &pd, 2, 5), Flops::new(0.0, 100.0));
    assert_eq!(NoPe::flops(&(), &pd, 2, 5), Flops::ZERO);
    assert_eq!(Learned::num_params(&(), &pd), 128);
    assert_eq!(
        DynPositional::num_params(&PositionalConfig::Learned(()), &pd),
        128
    );
    assert_eq!(
        DynPositional::num_params(&PositionalConfig::Rotary(Default::default()), &pd),
        0
    );
}

#[test]
fn alibi_slopes_and_sinusoid_values() {
    assert_eq!(
        Alibi::slopes(8),
        (1..=8).map(|i| 2f64.powi(-i)).collect::<Vec<_>>()
    );
    // 6 heads: the 4 slopes of 4 heads (2^-2, 2^-4, 2^-6, 2^-8), then slopes 1 and 3 of 8 heads (2^-1, 2^-3)
    assert_eq!(
        Alibi::slopes(6),
        vec![0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125]
    );
    let t = Sinusoidal::table_values(3, 4);
    // position 2: sin(2), cos(2), sin(2/100), cos(2/100)
    let want = [2f64.sin(), 2f64.cos(), 0.02f64.sin(), 0.02f64.cos()];
    for (a, b) in t[8..12].iter().zip(want) {
        assert!((a - b).abs() < 1e-12);
    }
}

#[test]
fn seeded_builds_are_bit_identical_and_seed_dependent() {
    let build = |seed| {
        let b = ParamBuilder::new(seed, &Device::Cpu, DType::F32);
        let dims = FfDims {
            d_model: 8,
            ff_ratio: 4.0,
            bias: true,
        };
        SwiGlu::new(&GatedHidden::Paper, &dims, &b.pp("mlp")).unwrap();
        b.finish()
    };
    let flat = |s: &ParamStore| -> Vec<f32> {
        s.iter()
            .flat_map(|p| {
                p.var
                    .as_tensor()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            })
            .collect()
    };
    let (a, b, c) = (build(1), build(1), build(2));
    assert_eq!(flat(&a), flat(&b));
    assert_ne!(flat(&a), flat(&c));
    assert_eq!(a.get("mlp.gate.weight").unwrap().role, ParamRole::MlpIn);
    assert_eq!(a.get("mlp.out.bias").unwrap().role, ParamRole::Bias);
}

#[test]
fn init_schemes_by_role() {
    let s = InitScheme {
        kind: InitKind::TransformerScaled,
        n_layers: 8,
    };
    assert_eq!(
        s.init(ParamRole::AttentionQkv, &[48, 16]),
        Init::Normal { std: 0.02 }
    );
    assert_eq!(
        s.init(ParamRole::MlpOut, &[16, 64]),
        Init::Normal { std: 0.02 / 4.0 }
    ); // 1/√(2·8)
    assert_eq!(
        s.init(ParamRole::AttentionOut, &[16, 16]),
        Init::Normal { std: 0.005 }
    );
    assert_eq!(s.init(ParamRole::Bias, &[16]), Init::Zeros);
    let x = InitScheme {
        kind: InitKind::XavierUniform,
        n_layers: 8,
    };
    assert_eq!(
        x.init(ParamRole::MlpIn, &[64, 16]),
        Init::Uniform {
            bound: (6.0f64 / 80.0).sqrt()
        }
    );
    assert_eq!(
        x.init(ParamRole::Embedding, &[100, 16]),
        Init::Normal { std: 0.02 }
    );
    let k = InitScheme {
        kind: InitKind::KaimingNormal,
        n_layers: 8,
    };
    assert_eq!(
        k.init(ParamRole::MlpOut, &[16, 64]),
        Init::Normal {
            std: (2.0f64 / 64.0).sqrt()
        }
    );

    // sampled statistics: a 256×256 output projection under transformer_scaled, L = 8
    let b = ParamBuilder::with_initializer(3, &Device::Cpu, DType::F64, Arc::new(s));
    let w = b.param("w", &[256, 256], ParamRole::AttentionOut).unwrap();
    let v: Vec<f64> = w.flatten_all().unwrap().to_vec1().unwrap();
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
    assert!(
        mean.abs() < 1e-4 && (std / 0.005 - 1.0).abs() < 0.01,
        "mean {mean} std {std}"
    );
    let u = ParamBuilder::with_initializer(3, &Device::Cpu, DType::F64, Arc::new(x));
    let w = u.param("w", &[64, 16], ParamRole::MlpIn).unwrap();
    let v: Vec<f64> = w.flatten_all().unwrap().to_vec1().unwrap();
    let bound = (6.0f64 / 80.0).sqrt();
    assert!(v.iter().all(|x| x.abs() < bound) && v.iter().any(|x| x.abs() > 0.9 * bound));
}

#[test]
fn safetensors_round_trip_and_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.safetensors");
    let make = |seed, d| {
        let b = ParamBuilder::new(seed, &Device::Cpu, DType::F32);
        RmsNorm::new(&Default::default(), d, &b.pp("n")).unwrap();
        b.param("w", &[d, 3], ParamRole::MlpIn).unwrap();
        b.finish()
    };
    let a = make(1, 4);
    a.save_safetensors(&path).unwrap();
    let b = make(2, 4);
    let get = |s: &ParamStore| {
        s.get("w")
            .unwrap()
            .var
            .as_tensor()
            .to_vec2::<f32>()
            .unwrap()
    };
    assert_ne!(get(&a), get(&b));
    b.load_safetensors(&path).unwrap();
    assert_eq!(get(&a), get(&b));
    let c = make(1, 5);
    let e = c.load_safetensors(&path).unwrap_err().to_string();
    assert!(
        e.contains("`n.weight`") && e.contains("[4]") && e.contains("[5]"),
        "{e}"
    );
    let d = ParamBuilder::new(1, &Device::Cpu, DType::F32);
    d.param("other", &[2], ParamRole::Other).unwrap();
    let e = d.finish().load_safetensors(&path).unwrap_err().to_string();
    assert!(e.contains("no tensor `other`"), "{e}");
    // a duplicate name is an error
    let b = pb();
    b.param("x", &[1], ParamRole::Other).unwrap();
    assert!(b.param("x", &[1], ParamRole::Other).is_err());
}

#[test]
fn sinusoidal_scales_embeddings_by_sqrt_d_then_adds_the_table() {
    use candle_core::Tensor;
    let pd = PosDims {
        d_model: 4,
        n_heads: 1,
        head_dim: 4,
        max_seq_len: 3,
    };
    let pb = ParamBuilder::new(0, &Device::Cpu, DType::F64);
    let pe = Sinusoidal::new(&Default::default(), &pd, &pb).unwrap();
    let x = Tensor::from_vec(vec![0.5f64; 12], (1, 3, 4), &Device::Cpu).unwrap();
    let y: Vec<f64> = pe
        .embed(&x)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let table = Sinusoidal::table_values(3, 4);
    for (i, (got, pe)) in y.iter().zip(table.iter()).enumerate() {
        // √4 · 0.5 + PE = 1 + PE
        assert!(
            (got - (1.0 + pe)).abs() < 1e-12,
            "element {i}: {got} vs {}",
            1.0 + pe
        );
    }
}

#[test]
fn alibi_refuses_sequences_longer_than_its_table_on_the_fused_path() {
    use candle_core::Tensor;
    let dims = PosDims {
        d_model: 16,
        n_heads: 2,
        head_dim: 8,
        max_seq_len: 8,
    };
    let pb = ParamBuilder::new(0, &Device::Cpu, DType::F32);
    let alibi = Alibi::new(&(), &dims, &pb).unwrap();
    let attn = CausalSelfAttention::new(
        &AttentionDims {
            d_model: 16,
            head_dim: 8,
            bias: false,
        },
        &pb.pp("attn"),
    )
    .unwrap();
    let ok = Tensor::zeros((1, 8, 16), DType::F32, &Device::Cpu).unwrap();
    assert!(attn.forward(&alibi.embed(&ok).unwrap(), &alibi).is_ok());
    let long = Tensor::zeros((1, 9, 16), DType::F32, &Device::Cpu).unwrap();
    let e = alibi.embed(&long).unwrap_err().to_string();
    assert!(
        e.contains("alibi positions") && e.contains("max_seq_len = 8"),
        "{e}"
    );
}
