//! FLOP and parameter counts of a named small config against a hand
//! derivation, and against 6N + 12·L·d·T.

use algoprog_models::{ModelConfig, TransformerConfig};
use candle_core::{DType, Device};

/// The named config: `modern(32)` — d = 32, L = max(1, 32/16) = 2, head dim
/// 16 (h = 2), SwiGLU with the paper's hidden size h_ff = 4·32 = 128,
/// RMSNorm pre + final norm, biases, tied embeddings; V = 100, T = 128.
fn tiny() -> ModelConfig {
    ModelConfig::Transformer(TransformerConfig::modern(32))
}
const V: usize = 100;
const T: usize = 128;

#[test]
fn forward_flops_per_token_match_the_hand_derivation() {
    // Per layer, per token (matmul = 2·m·n·k):
    //   QKV    2·d·3d        = 2·32·96   =  6 144
    //   QKᵀ    2·T·d         = 2·128·32  =  8 192   (full T×T scores, then masked)
    //   AV     2·T·d         = 2·128·32  =  8 192
    //   out    2·d·d         = 2·32·32   =  2 048
    //   SwiGLU 3 · 2·d·h_ff  = 3·2·32·128 = 24 576
    //   layer total                       = 49 152
    // Two layers 98 304, output layer 2·d·V = 2·32·100 = 6 400.
    // Forward 104 704 per token; training 3× = 314 112.
    let r = tiny().flops(V, T);
    assert_eq!(r.seq_len, T);
    assert_eq!(r.forward_per_token, 104_704.0);
    assert_eq!(r.train_per_token, 314_112.0);
    let get = |k: &str| r.breakdown.iter().find(|(n, _)| n == k).unwrap().1;
    assert_eq!(
        get("attention"),
        2.0 * (6_144.0 + 8_192.0 + 8_192.0 + 2_048.0)
    );
    assert_eq!(get("feed_forward"), 2.0 * 24_576.0);
    assert_eq!(get("output"), 6_400.0);
    assert_eq!(
        r.breakdown.iter().map(|(_, x)| x).sum::<f64>(),
        r.forward_per_token
    );

    // Parameters: embedding V·d = 3 200.
    // Non-embedding per layer: attention 4d² + 4d = 4 224; SwiGLU 3·d·h_ff + 2h_ff + d
    // = 12 288 + 256 + 32 = 12 576; two RMSNorms 64 → 16 864; two layers 33 728;
    // final norm 32 → 33 760.
    let c = tiny().param_counts(V);
    assert_eq!((c.embedding, c.non_embedding), (3_200, 33_760));
    assert_eq!(r.six_n_per_token, 6.0 * 33_760.0);

    // Chinchilla appendix F, per sequence: embeddings 2TVd = 819 200;
    // per layer: QKV 2·3·T·d² = 786 432, logits 2T²d = 1 048 576, softmax 3hT² = 98 304,
    // AV 2T²d = 1 048 576, out 2Td² = 262 144, dense 2T·3·d·h_ff = 3 145 728
    // (= 6 389 760); logits 2TdV = 819 200. Forward 14 417 920; training per token
    // 3·14 417 920/128 = 337 920.
    assert_eq!(r.chinchilla_per_token, 337_920.0);
}

#[test]
fn training_flops_agree_with_6n_plus_12ldt() {
    // 6N + 12·L·d·T with N the matmul weights = non-embedding + the (tied)
    // output matrix V·d: 6·(33 760 + 3 200) + 12·2·32·128 = 221 760 + 98 304 = 320 064.
    // Our count leaves out the 992 non-matmul parameters (biases 2·(128 + 288),
    // norm gains 2·64 + 32), i.e. 6·992 = 5 952 FLOPs: a 1.9 % gap. Tolerance: 2 %.
    let r = tiny().flops(V, T);
    let c = tiny().param_counts(V);
    let (l, d) = (2.0, 32.0);
    let approx = 6.0 * (c.non_embedding + V * 32) as f64 + 12.0 * l * d * T as f64;
    assert_eq!(approx, 320_064.0);
    assert_eq!(approx - r.train_per_token, 6.0 * 992.0);
    assert!((r.train_per_token / approx - 1.0).abs() < 0.02);
    // Without biases the only gap is the norm gains (160 parameters): 0.31 % (< 0.5 %).
    let nb = ModelConfig::Transformer(TransformerConfig {
        bias: false,
        ..TransformerConfig::modern(32)
    });
    let (rb, cb) = (nb.flops(V, T), nb.param_counts(V));
    let approx = 6.0 * (cb.non_embedding + V * 32) as f64 + 12.0 * l * d * T as f64;
    assert_eq!(approx - rb.train_per_token, 6.0 * 160.0);
    assert!((rb.train_per_token / approx - 1.0).abs() < 0.005);
}

#[test]
fn retro_flops_and_counts() {
    // retro(32): sinusoidal, GeLU MLP (h = 128, 2 matrices), post-LayerNorm, no final norm.
    // Per layer: attention 24 576 + MLP 2·2·32·128 = 16 384 → 40 960; two layers 81 920;
    // output 6 400 → 88 320 per token.
    let m = ModelConfig::Transformer(TransformerConfig::retro(32));
    assert_eq!(m.flops(V, T).forward_per_token, 88_320.0);
    // Non-embedding: attention 4 224 + MLP 2·32·128 + 128 + 32 = 8 352 + two LayerNorms 128
    // → 12 704 per layer, 25 408 in all.
    assert_eq!(m.param_counts(V).non_embedding, 25_408);
    // learned positions add T_max·d = 128·32 to the embedding count
    let l = ModelConfig::Transformer(TransformerConfig {
        positional: algoprog_nn::PositionalConfig::Learned(()),
        ..TransformerConfig::retro(32)
    });
    assert_eq!(l.param_counts(V).embedding, 3_200 + 4_096);
}

#[test]
fn built_model_reports_the_same_counts_as_its_config() {
    for cfg in [
        TransformerConfig::modern(32),
        TransformerConfig::retro(32),
        TransformerConfig {
            positional: algoprog_nn::PositionalConfig::Learned(()),
            tie_embeddings: false,
            gated_hidden: algoprog_nn::GatedHidden::ParamMatched,
            ..TransformerConfig::modern(48)
        },
    ] {
        let mc = ModelConfig::Transformer(cfg.clone());
        let m = mc.build(V, 0, &Device::Cpu, DType::F32).unwrap();
        let c = m.param_counts();
        assert_eq!(c, mc.param_counts(V));
        assert_eq!(c.total(), m.params().num_elements(), "{cfg:?}");
        let emb: usize = m
            .params()
            .iter()
            .filter(|p| {
                matches!(
                    p.role,
                    algoprog_nn::ParamRole::Embedding
                        | algoprog_nn::ParamRole::PositionalEmbedding
                        | algoprog_nn::ParamRole::Output
                )
            })
            .map(|p| p.var.elem_count())
            .sum();
        assert_eq!(emb, c.embedding);
        assert_eq!(m.flops(T), mc.flops(V, T));
    }
}
