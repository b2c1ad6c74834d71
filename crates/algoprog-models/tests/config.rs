//! Config parsing, validation, presets, seeding and checkpoints.

use algoprog_models::{LanguageModel, ModelConfig, TransformerConfig};
use algoprog_nn::{FeedForwardKind, NormConfig, Placement, PositionalConfig};
use candle_core::{DType, Device, Tensor};
use serde::Deserialize;
use std::collections::BTreeSet;

#[test]
fn retro_and_modern_differ_in_exactly_their_named_seams() {
    let m = serde_json::to_value(TransformerConfig::modern(64)).unwrap();
    let r = serde_json::to_value(TransformerConfig::retro(64)).unwrap();
    let (m, r) = (m.as_object().unwrap(), r.as_object().unwrap());
    assert_eq!(m.keys().collect::<Vec<_>>(), r.keys().collect::<Vec<_>>());
    let differ: BTreeSet<&str> = m
        .keys()
        .filter(|k| m[*k] != r[*k])
        .map(|k| k.as_str())
        .collect();
    // positional (rotary vs sinusoidal), feed-forward (SwiGLU vs GeLU), norm
    // (RMS vs Layer) and its placement (pre + final norm vs post, no final norm)
    assert_eq!(
        differ,
        BTreeSet::from([
            "positional",
            "feed_forward",
            "norm",
            "placement",
            "final_norm"
        ])
    );
    assert_eq!(m["positional"], "rotary");
    assert_eq!(r["positional"], "sinusoidal");
    assert_eq!(m["feed_forward"], "swiglu");
    assert_eq!(r["feed_forward"], "gelu");
    assert_eq!(m["norm"], "rms_norm");
    assert_eq!(r["norm"], "layer_norm");
    assert_eq!(
        (m["placement"].as_str(), r["placement"].as_str()),
        (Some("pre"), Some("post"))
    );
    // the resolved specs agree on everything else
    let (ms, rs) = (
        TransformerConfig::modern(64).spec(),
        TransformerConfig::retro(64).spec(),
    );
    assert_eq!(
        (ms.n_layers, ms.head_dim, ms.ff_ratio, ms.max_seq_len),
        (rs.n_layers, rs.head_dim, rs.ff_ratio, rs.max_seq_len)
    );
    assert_eq!(
        (
            ms.n_layers,
            ms.head_dim,
            ms.ff_ratio,
            ms.max_seq_len,
            ms.tie_embeddings
        ),
        (4, 16, 4.0, 128, true)
    );
}

#[derive(Deserialize)]
struct File {
    model: ModelConfig,
}

#[test]
fn toml_model_sections_parse_with_modern_defaults() {
    let f: File = toml::from_str("[model]\nkind = \"transformer\"\nd_model = 64\n").unwrap();
    assert_eq!(
        f.model,
        ModelConfig::Transformer(TransformerConfig::modern(64))
    );
    let f: File = toml::from_str(
        "[model]\nkind = \"transformer\"\nd_model = 64\npositional = \"sinusoidal\"\nfeed_forward = \"gelu\"\nnorm = \"layer_norm\"\nplacement = \"post\"\nfinal_norm = false\n",
    )
    .unwrap();
    assert_eq!(
        f.model,
        ModelConfig::Transformer(TransformerConfig::retro(64))
    );
    let f: File = toml::from_str(
        "[model]\nkind = \"transformer\"\nd_model = 32\nn_layers = 3\nff_ratio = 2\npositional = \"nope\"\nfeed_forward = \"geglu\"\ngated_hidden = \"param_matched\"\ninit = \"xavier_uniform\"\n",
    )
    .unwrap();
    let ModelConfig::Transformer(c) = f.model else {
        panic!("kind = \"transformer\" parsed as another model")
    };
    assert_eq!(
        (c.n_layers, c.ff_ratio, c.positional, c.feed_forward),
        (
            Some(3),
            2.0,
            PositionalConfig::None(()),
            FeedForwardKind::GeGlu
        )
    );
    // unknown keys and values are errors that name them
    let e = toml::from_str::<File>("[model]\nkind = \"transformer\"\nd_model = 64\nwidth = 3\n")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("width"), "{e}");
    let e = toml::from_str::<File>(
        "[model]\nkind = \"transformer\"\nd_model = 64\nnorm = \"batch_norm\"\n",
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("batch_norm"), "{e}");
    // round trip
    let c = TransformerConfig {
        norm: NormConfig::LayerNorm(Default::default()),
        placement: Placement::Post,
        ..TransformerConfig::modern(48)
    };
    let s = toml::to_string(&File2 {
        model: ModelConfig::Transformer(c.clone()),
    })
    .unwrap();
    assert_eq!(
        toml::from_str::<File>(&s).unwrap().model,
        ModelConfig::Transformer(c)
    );
}

#[derive(serde::Serialize)]
struct File2 {
    model: ModelConfig,
}

#[test]
fn validation_names_the_key_and_the_fix() {
    let bad = |c: TransformerConfig| ModelConfig::Transformer(c).validate().unwrap_err();
    let e = bad(TransformerConfig::modern(100));
    assert_eq!(e.key, "model.d_model");
    assert_eq!(
        e.to_string(),
        "model.d_model = 100 is not divisible by model.head_dim = 16: choose d_model as a multiple of 16"
    );
    assert_eq!(bad(TransformerConfig::modern(0)).key, "model.d_model");
    assert_eq!(
        bad(TransformerConfig {
            n_layers: Some(0),
            ..TransformerConfig::modern(32)
        })
        .key,
        "model.n_layers"
    );
    assert_eq!(
        bad(TransformerConfig {
            head_dim: 0,
            ..TransformerConfig::modern(32)
        })
        .key,
        "model.head_dim"
    );
    assert_eq!(
        bad(TransformerConfig {
            ff_ratio: -1.0,
            ..TransformerConfig::modern(32)
        })
        .key,
        "model.ff_ratio"
    );
    assert_eq!(
        bad(TransformerConfig {
            max_seq_len: 0,
            ..TransformerConfig::modern(32)
        })
        .key,
        "model.max_seq_len"
    );
    let e = bad(TransformerConfig {
        head_dim: 5,
        d_model: 35,
        ..TransformerConfig::modern(32)
    });
    assert!(
        e.key == "model.head_dim" && e.to_string().contains("even"),
        "{e}"
    );
    let err = ModelConfig::Transformer(TransformerConfig::modern(100))
        .build(10, 0, &Device::Cpu, DType::F32)
        .err()
        .unwrap();
    assert!(err.to_string().contains("multiple of 16"));
    assert_eq!(TransformerConfig::modern(8).depth(), 1);
    assert_eq!(TransformerConfig::modern(64).depth(), 4);
}

fn logits_of(m: &dyn LanguageModel) -> Vec<f32> {
    let x = Tensor::new(&[[1u32, 5, 2, 9], [3, 3, 0, 7]], &Device::Cpu).unwrap();
    let l = m.logits(&x, false).unwrap();
    assert_eq!(l.dims(), &[2, 4, m.vocab_size()]);
    l.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn seeding_is_bit_identical_and_checkpoints_round_trip() {
    let cfg = ModelConfig::Transformer(TransformerConfig::modern(32));
    let a = cfg.build(11, 5, &Device::Cpu, DType::F32).unwrap();
    let b = cfg.build(11, 5, &Device::Cpu, DType::F32).unwrap();
    let c = cfg.build(11, 6, &Device::Cpu, DType::F32).unwrap();
    assert_eq!(logits_of(a.as_ref()), logits_of(b.as_ref()));
    assert_ne!(logits_of(a.as_ref()), logits_of(c.as_ref()));
    let names: Vec<String> = a.params().iter().map(|p| p.name.clone()).collect();
    assert!(names.contains(&"blocks.0.attn.qkv.weight".to_string()));
    assert!(names.contains(&"blocks.1.mlp.gate.weight".to_string()));
    assert!(names.contains(&"final_norm.weight".to_string()));
    assert_eq!(names[0], "embed.weight");

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.safetensors");
    a.params().save_safetensors(&p).unwrap();
    c.params().load_safetensors(&p).unwrap();
    assert_eq!(logits_of(a.as_ref()), logits_of(c.as_ref()));
    let other = ModelConfig::Transformer(TransformerConfig::retro(32))
        .build(11, 5, &Device::Cpu, DType::F32)
        .unwrap();
    let e = other.params().load_safetensors(&p).unwrap_err().to_string();
    assert!(e.contains("blocks.0.norm1.bias"), "{e}");
}

#[test]
fn sequences_longer_than_max_seq_len_are_refused_with_the_key() {
    let cfg = ModelConfig::Transformer(TransformerConfig {
        max_seq_len: 3,
        ..TransformerConfig::modern(16)
    });
    let m = cfg.build(11, 0, &Device::Cpu, DType::F32).unwrap();
    let e = logits_of_err(m.as_ref());
    assert!(e.contains("model.max_seq_len"), "{e}");
}

fn logits_of_err(m: &dyn LanguageModel) -> String {
    let x = Tensor::new(&[[1u32, 5, 2, 9]], &Device::Cpu).unwrap();
    m.logits(&x, false).err().unwrap().to_string()
}

#[test]
fn retro_runs_has_post_rms_blocks_and_a_final_layer_norm() {
    let runs = TransformerConfig::retro_runs(64);
    assert_eq!(
        (
            runs.norm.clone(),
            runs.placement,
            runs.final_norm,
            runs.final_norm_kind.clone()
        ),
        (
            NormConfig::RmsNorm(Default::default()),
            Placement::Post,
            true,
            Some(NormConfig::LayerNorm(Default::default()))
        )
    );
    // the same as the text's retro apart from the norm kind and the final norm
    let text = TransformerConfig::retro(64);
    assert_eq!(
        TransformerConfig {
            norm: text.norm.clone(),
            final_norm: text.final_norm,
            final_norm_kind: None,
            ..runs.clone()
        },
        text
    );
    let parsed: ModelConfig = toml::from_str(
        "kind = \"transformer\"\nd_model = 64\npositional = \"sinusoidal\"\nfeed_forward = \"gelu\"\nnorm = \"rms_norm\"\nplacement = \"post\"\nfinal_norm = true\nfinal_norm_kind = \"layer_norm\"",
    )
    .unwrap();
    assert_eq!(parsed, ModelConfig::Transformer(runs.clone()));
    // configs without the key serialise without it (their run ids are unchanged)
    let j = serde_json::to_value(TransformerConfig::modern(64)).unwrap();
    assert!(j.get("final_norm_kind").is_none(), "{j}");
    // blocks: RMSNorm gains only; final norm: LayerNorm gain and shift
    let m = ModelConfig::Transformer(TransformerConfig::retro_runs(32))
        .build(11, 1, &Device::Cpu, DType::F32)
        .unwrap();
    let names: BTreeSet<String> = m.params().iter().map(|p| p.name.clone()).collect();
    assert!(names.contains("blocks.0.norm1.weight") && !names.contains("blocks.0.norm1.bias"));
    assert!(names.contains("final_norm.weight") && names.contains("final_norm.bias"));
    // counts: RMS-final (32) + 32 for the LayerNorm's shift
    let rms_final = ModelConfig::Transformer(TransformerConfig {
        final_norm_kind: None,
        ..TransformerConfig::retro_runs(32)
    });
    assert_eq!(
        m.param_counts().non_embedding,
        rms_final.param_counts(11).non_embedding + 32
    );
    let n: usize = m.params().iter().map(|p| p.var.elem_count()).sum();
    assert_eq!(n, m.param_counts().total());
    // the final norm is a LayerNorm: the hidden output has zero mean per position
    let x = Tensor::new(&[[1u32, 2, 3, 4]], &Device::Cpu).unwrap();
    let h = m.hidden(&x, false).unwrap();
    let means: Vec<f32> = h.mean(2).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    assert!(means.iter().all(|v| v.abs() < 1e-5), "{means:?}");
    // a final-norm kind without a final norm is refused by name
    let bad = TransformerConfig {
        final_norm: false,
        ..TransformerConfig::retro_runs(32)
    };
    assert_eq!(bad.validate().unwrap_err().key, "model.final_norm_kind");
}
