//! Run-time choices that carry their settings: `positional` and `norm` as a
//! bare name (the variant's defaults) or a table with the variant's keys;
//! the settings reach the built components; records round-trip and old
//! records still read.

use algoprog_models::{ModelConfig, TransformerConfig};
use algoprog_nn::{
    DynNorm, DynPositional, FeedForwardKind, LayerNormConfig, Norm, NormConfig, ParamBuilder,
    PositionalConfig, PositionalEncoding, RmsNormConfig, RotaryConfig, SinusoidalConfig,
};
use candle_core::{DType, Device, Tensor};

fn parse(model_keys: &str) -> Result<TransformerConfig, String> {
    let text = format!("kind = \"transformer\"\nd_model = 32\n{model_keys}\n");
    match toml::from_str::<ModelConfig>(&text).map_err(|e| e.to_string())? {
        ModelConfig::Transformer(c) => Ok(c),
        other => Err(format!("parsed as {other:?}")),
    }
}

#[test]
fn bare_names_parse_to_the_default_config_of_their_variant() {
    let pos = |s: &str| parse(&format!("positional = \"{s}\"")).unwrap().positional;
    assert_eq!(
        pos("rotary"),
        PositionalConfig::Rotary(RotaryConfig { base: 10_000.0 })
    );
    assert_eq!(
        pos("sinusoidal"),
        PositionalConfig::Sinusoidal(SinusoidalConfig { base: 10_000.0 })
    );
    assert_eq!(pos("learned"), PositionalConfig::Learned(()));
    assert_eq!(pos("none"), PositionalConfig::None(()));
    assert_eq!(pos("nope"), PositionalConfig::None(()));
    assert_eq!(pos("alibi"), PositionalConfig::Alibi(()));
    let norm = |s: &str| parse(&format!("norm = \"{s}\"")).unwrap().norm;
    assert_eq!(
        norm("rms_norm"),
        NormConfig::RmsNorm(RmsNormConfig { eps: 1e-5 })
    );
    assert_eq!(
        norm("layer_norm"),
        NormConfig::LayerNorm(LayerNormConfig { eps: 1e-5 })
    );
    let c = parse("feed_forward = \"swiglu\"").unwrap();
    assert_eq!(c.feed_forward, FeedForwardKind::SwiGlu);
    // omitted keys: the modern defaults
    let c = parse("").unwrap();
    assert_eq!(c, TransformerConfig::modern(32));
}

#[test]
fn tables_set_the_variant_settings_and_unknown_keys_are_named() {
    let c = parse("positional = { kind = \"rotary\", base = 500000.0 }\nnorm = { kind = \"rms_norm\", eps = 1e-6 }").unwrap();
    assert_eq!(
        c.positional,
        PositionalConfig::Rotary(RotaryConfig { base: 5e5 })
    );
    assert_eq!(c.norm, NormConfig::RmsNorm(RmsNormConfig { eps: 1e-6 }));
    // an integer base is a number too; a table without settings is the default
    let c = parse(
        "positional = { kind = \"rotary\", base = 500000 }\nnorm = { kind = \"layer_norm\" }",
    )
    .unwrap();
    assert_eq!(
        c.positional,
        PositionalConfig::Rotary(RotaryConfig { base: 5e5 })
    );
    assert_eq!(c.norm, NormConfig::LayerNorm(LayerNormConfig::default()));
    let e = parse("norm = { kind = \"rms_norm\", epsilon = 1e-6 }").unwrap_err();
    assert!(
        e.contains("model.norm") && e.contains("`epsilon`") && e.contains("eps ="),
        "{e}"
    );
    let e = parse("positional = { kind = \"alibi\", base = 2.0 }").unwrap_err();
    assert!(
        e.contains("`base`") && e.contains("positional = \"alibi\""),
        "{e}"
    );
    let e = parse("positional = { base = 2.0 }").unwrap_err();
    assert!(e.contains("without `kind`"), "{e}");
    let e = parse("norm = \"batch_norm\"").unwrap_err();
    assert!(e.contains("batch_norm") && e.contains("rms_norm"), "{e}");
    // values are checked with the key named
    let bad = parse("positional = { kind = \"rotary\", base = -3.0 }").unwrap();
    assert_eq!(bad.validate().unwrap_err().key, "model.positional.base");
    let bad = parse("norm = { kind = \"layer_norm\", eps = 0.0 }").unwrap();
    assert_eq!(bad.validate().unwrap_err().key, "model.norm.eps");
}

#[test]
fn configs_round_trip_and_defaults_are_written_as_bare_names() {
    let mut c = TransformerConfig::modern(32);
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["positional"], "rotary");
    assert_eq!(v["norm"], "rms_norm");
    c.positional = PositionalConfig::Rotary(RotaryConfig { base: 5e5 });
    c.norm = NormConfig::LayerNorm(LayerNormConfig { eps: 1e-6 });
    let m = ModelConfig::Transformer(c.clone());
    let v = serde_json::to_value(&m).unwrap();
    assert_eq!(v["positional"]["kind"], "rotary");
    assert_eq!(v["positional"]["base"], 5e5);
    assert_eq!(v["norm"]["eps"], 1e-6);
    let back: ModelConfig = serde_json::from_value(v).unwrap();
    assert_eq!(back, m);
    let text = toml::to_string(&m).unwrap();
    let back: ModelConfig = toml::from_str(&text).unwrap();
    assert_eq!(back, m, "{text}");
}

/// Model sections of run records written before the choices carried
/// settings (copied from stored `run.json` files of the modern and retro
/// families): they read, and write back byte-for-byte the same JSON, so
/// the records' identities do not change.
#[test]
fn stored_run_record_model_sections_still_read_and_write_back_unchanged() {
    for stored in [
        r#"{"kind":"transformer","d_model":16,"n_layers":null,"head_dim":16,"ff_ratio":4.0,"positional":"rotary","feed_forward":"swiglu","gated_hidden":"paper","norm":"rms_norm","placement":"pre","final_norm":true,"init":"transformer_scaled","max_seq_len":128,"tie_embeddings":true,"bias":true}"#,
        r#"{"kind":"transformer","d_model":32,"n_layers":null,"head_dim":16,"ff_ratio":4.0,"positional":"sinusoidal","feed_forward":"gelu","gated_hidden":"paper","norm":"layer_norm","placement":"post","final_norm":false,"init":"transformer_scaled","max_seq_len":128,"tie_embeddings":true,"bias":true}"#,
    ] {
        let m: ModelConfig = serde_json::from_str(stored).unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), stored);
        let ModelConfig::Transformer(c) = m else {
            panic!()
        };
        assert!(!c.output_bias);
    }
}

/// The rotary base from TOML reaches the built encoding: position 3 of
/// x = (1, 2, 3, 4) (head size 4, pairs (x₀, x₂) and (x₁, x₃)) is rotated by
/// θ₀ = 3 and θ₁ = 3·base^(−1/2), computed here by hand for base 10⁴ and
/// 5·10⁵.
#[test]
fn the_rotary_base_from_toml_reaches_the_rotation() {
    for base in [1e4f64, 5e5] {
        let c = parse(&format!(
            "head_dim = 4\npositional = {{ kind = \"rotary\", base = {base:.1} }}"
        ))
        .unwrap();
        let spec = c.spec();
        let pb = ParamBuilder::new(0, &Device::Cpu, DType::F32);
        let pos = DynPositional::new(&spec.positional, &spec.pos_dims(), &pb).unwrap();
        let mut q = vec![0f32; 4 * 4];
        q[12..16].copy_from_slice(&[1.0, 2.0, 3.0, 4.0]);
        let q = Tensor::from_vec(q, (1, 1, 4, 4), &Device::Cpu).unwrap();
        let (r, _) = pos.rotate(&q, &q).unwrap();
        let got: Vec<f32> = r.flatten_all().unwrap().to_vec1().unwrap();
        let (t0, t1) = (3.0f64, 3.0 * base.powf(-0.5));
        let want = [
            t0.cos() - 3.0 * t0.sin(),
            2.0 * t1.cos() - 4.0 * t1.sin(),
            t0.sin() + 3.0 * t0.cos(),
            2.0 * t1.sin() + 4.0 * t1.cos(),
        ];
        for (g, w) in got[12..16].iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-5, "base {base}: {g} vs {w}");
        }
    }
    // and the whole model: the same weights (rotary has none) give other
    // logits after position 0 (tiny at initialisation, but not equal)
    let build = |base: f64| {
        let mut c = TransformerConfig::modern(32);
        c.max_seq_len = 8;
        c.positional = PositionalConfig::Rotary(RotaryConfig { base });
        c.build(13, 5, &Device::Cpu, DType::F32).unwrap()
    };
    use algoprog_models::LanguageModel;
    let x = Tensor::new(&[[1u32, 2, 3, 4, 5, 6, 7, 8]], &Device::Cpu).unwrap();
    let a: Vec<f32> = build(1e4)
        .logits(&x, false)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let b: Vec<f32> = build(5e5)
        .logits(&x, false)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(a[..13], b[..13], "position 0 is not rotated");
    assert!(a[13..].iter().zip(&b[13..]).any(|(x, y)| x != y));
}

/// The norm ε from TOML reaches the built norm: for x = (1, 3) with unit
/// gains, RMSNorm gives x/√(5 + ε) and LayerNorm (x − 2)/√(1 + ε).
#[test]
fn the_norm_eps_from_toml_reaches_the_norm() {
    let x = Tensor::new(&[[1f32, 3.0]], &Device::Cpu).unwrap();
    let out = |keys: &str| -> Vec<f32> {
        let c = parse(keys).unwrap();
        let pb = ParamBuilder::new(0, &Device::Cpu, DType::F32);
        let n = DynNorm::new(&c.norm, 2, &pb).unwrap();
        n.forward(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap()
    };
    let close = |a: &[f32], b: [f64; 2]| {
        for (x, y) in a.iter().zip(b) {
            assert!((*x as f64 - y).abs() < 1e-6, "{x} vs {y}");
        }
    };
    let s = 5.25f64.sqrt();
    close(
        &out("norm = { kind = \"rms_norm\", eps = 0.25 }"),
        [1.0 / s, 3.0 / s],
    );
    let s = 5.00001f64.sqrt();
    close(&out("norm = \"rms_norm\""), [1.0 / s, 3.0 / s]);
    let s = 1.25f64.sqrt();
    close(
        &out("norm = { kind = \"layer_norm\", eps = 0.25 }"),
        [-1.0 / s, 1.0 / s],
    );
}

/// The sinusoidal base from TOML reaches the table: on zero embeddings
/// (d = 4) position 1 is (sin 1, cos 1, sin(1/√base), cos(1/√base)).
#[test]
fn the_sinusoidal_base_from_toml_reaches_the_table() {
    for base in [100.0f64, 10_000.0] {
        let mut c = TransformerConfig::modern(4);
        c.head_dim = 4;
        c.positional = parse(&format!(
            "positional = {{ kind = \"sinusoidal\", base = {base:.1} }}"
        ))
        .unwrap()
        .positional;
        let spec = c.spec();
        let pb = ParamBuilder::new(0, &Device::Cpu, DType::F32);
        let pos = DynPositional::new(&spec.positional, &spec.pos_dims(), &pb).unwrap();
        let x = Tensor::zeros((1, 2, 4), DType::F32, &Device::Cpu).unwrap();
        let got: Vec<f32> = pos
            .embed(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let a = 1.0 / base.sqrt();
        let want = [1f64.sin(), 1f64.cos(), a.sin(), a.cos()];
        for (g, w) in got[4..8].iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6, "base {base}: {g} vs {w}");
        }
    }
}
