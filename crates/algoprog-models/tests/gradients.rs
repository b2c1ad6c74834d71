//! Every trainable variable of every preset and every component variant
//! receives a finite, non-zero gradient after one backward pass.

use algoprog_models::{ModelConfig, TransformerConfig};
use algoprog_nn::{
    cross_entropy, FeedForwardKind, GatedHidden, InitKind, NormConfig, Placement, PositionalConfig,
};
use candle_core::{DType, Device, Tensor};

const VOCAB: usize = 37;

fn tokens(b: usize, t: usize, seed: u32) -> Tensor {
    let v: Vec<u32> = (0..(b * t) as u32)
        .map(|i| (i.wrapping_mul(7919).wrapping_add(seed * 13)) % VOCAB as u32)
        .collect();
    Tensor::from_vec(v, (b, t), &Device::Cpu).unwrap()
}

/// Builds `cfg`, runs the LM loss on random-ish tokens and asserts every
/// parameter's gradient exists, is finite and has a non-zero entry.
fn assert_all_grads(cfg: &TransformerConfig, what: &str) {
    let model = ModelConfig::Transformer(cfg.clone())
        .build(VOCAB, 3, &Device::Cpu, DType::F32)
        .unwrap();
    let (b, t) = (2, 9);
    let x = tokens(b, t, 1);
    let y = tokens(b, t, 2).flatten_all().unwrap();
    let h = model.hidden(&x, true).unwrap();
    let loss = cross_entropy(
        &h.reshape((b * t, cfg.d_model)).unwrap(),
        model.output_weight(),
        &y,
    )
    .unwrap();
    let l = loss.to_scalar::<f32>().unwrap();
    assert!(l.is_finite() && l > 0.0, "{what}: loss {l}");
    let grads = loss.backward().unwrap();
    assert!(!model.params().is_empty());
    for p in model.params().iter() {
        let g = grads
            .get(p.var.as_tensor())
            .unwrap_or_else(|| panic!("{what}: no gradient for {}", p.name));
        let v: Vec<f32> = g.flatten_all().unwrap().to_vec1().unwrap();
        assert!(
            v.iter().all(|x| x.is_finite()),
            "{what}: non-finite gradient for {}",
            p.name
        );
        let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(max > 0.0, "{what}: zero gradient for {}", p.name);
    }
}

#[test]
fn presets_every_parameter_gets_a_gradient() {
    assert_all_grads(&TransformerConfig::modern(32), "modern");
    assert_all_grads(&TransformerConfig::retro(32), "retro");
}

#[test]
fn every_component_variant_gets_gradients() {
    let base = TransformerConfig {
        n_layers: Some(2),
        max_seq_len: 16,
        ..TransformerConfig::modern(32)
    };
    for pos in [
        PositionalConfig::Rotary(Default::default()),
        PositionalConfig::Sinusoidal(Default::default()),
        PositionalConfig::Learned(()),
        PositionalConfig::None(()),
        PositionalConfig::Alibi(()),
    ] {
        assert_all_grads(
            &TransformerConfig {
                positional: pos.clone(),
                ..base.clone()
            },
            &format!("{pos:?}"),
        );
    }
    for ff in [
        FeedForwardKind::Relu,
        FeedForwardKind::Gelu,
        FeedForwardKind::GeluTanh,
        FeedForwardKind::SwiGlu,
        FeedForwardKind::GeGlu,
    ] {
        for gh in [GatedHidden::Paper, GatedHidden::ParamMatched] {
            assert_all_grads(
                &TransformerConfig {
                    feed_forward: ff,
                    gated_hidden: gh,
                    ..base.clone()
                },
                &format!("{ff:?}/{gh:?}"),
            );
        }
    }
    for norm in [
        NormConfig::LayerNorm(Default::default()),
        NormConfig::RmsNorm(Default::default()),
    ] {
        for placement in [Placement::Pre, Placement::Post] {
            for final_norm in [true, false] {
                assert_all_grads(
                    &TransformerConfig {
                        norm: norm.clone(),
                        placement,
                        final_norm,
                        ..base.clone()
                    },
                    &format!("{norm:?}/{placement:?}/{final_norm}"),
                );
            }
        }
    }
    for init in [
        InitKind::TransformerScaled,
        InitKind::XavierUniform,
        InitKind::KaimingNormal,
    ] {
        assert_all_grads(
            &TransformerConfig {
                init,
                ..base.clone()
            },
            &format!("{init:?}"),
        );
    }
    assert_all_grads(
        &TransformerConfig {
            tie_embeddings: false,
            bias: false,
            ..base.clone()
        },
        "untied, no bias",
    );
}
