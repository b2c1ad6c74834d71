//! Finite-difference gradient check (f64) of whole 1-layer models: the LM
//! loss with respect to every parameter.

use algoprog_models::{ModelConfig, TransformerConfig};
use algoprog_nn::gradcheck::check;
use algoprog_nn::{cross_entropy, InitKind, PositionalConfig};
use candle_core::{DType, Device, Tensor};

fn check_model(cfg: TransformerConfig, what: &str) {
    let cfg = TransformerConfig {
        n_layers: Some(1),
        head_dim: 8,
        ff_ratio: 2.0,
        max_seq_len: 8,
        ..cfg
    };
    let m = ModelConfig::Transformer(cfg)
        .build(11, 1, &Device::Cpu, DType::F64)
        .unwrap();
    let x = Tensor::new(&[[1u32, 5, 2, 9, 4], [3, 3, 0, 7, 10]], &Device::Cpu).unwrap();
    let y = Tensor::new(&[5u32, 2, 9, 4, 1, 3, 0, 7, 10, 6], &Device::Cpu).unwrap();
    let loss = || {
        let h = m.hidden(&x, true)?;
        cross_entropy(&h.reshape((10, 16))?, m.output_weight(), &y)
    };
    let res = check(&m.params().vars(), &loss, 1e-5).unwrap();
    assert!(res.checked == m.params().num_elements());
    assert!(res.max_abs_grad > 1e-3, "{what}: {}", res.max_abs_grad);
    assert!(
        res.max_rel_err < 1e-4,
        "{what}: FD mismatch {} at {:?}: {:?}",
        res.max_rel_err,
        res.worst,
        res.worst_values
    );
}

#[test]
fn one_layer_modern_matches_finite_differences() {
    check_model(
        TransformerConfig {
            init: InitKind::XavierUniform,
            ..TransformerConfig::modern(16)
        },
        "modern",
    );
}

#[test]
fn one_layer_retro_matches_finite_differences() {
    check_model(
        TransformerConfig {
            positional: PositionalConfig::Learned(()),
            tie_embeddings: false,
            ..TransformerConfig::retro(16)
        },
        "retro/learned/untied",
    );
}
