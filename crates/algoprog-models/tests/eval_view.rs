//! Evaluation views: same outputs as the model, no autograd graph, and the
//! trained values show through after an optimiser step.

use algoprog_models::{LstmConfig, ModelConfig, TransformerConfig};
use algoprog_nn::OptimizerConfig;
use candle_core::{DType, Device, Tensor};

fn tokens(device: &Device) -> Tensor {
    Tensor::from_vec(
        (0u32..24).map(|i| (i * 7) % 50).collect::<Vec<_>>(),
        (2, 12),
        device,
    )
    .unwrap()
}

#[test]
fn eval_view_matches_the_model_without_a_graph_and_follows_updates() {
    let device = Device::Cpu;
    for cfg in [
        ModelConfig::Transformer(TransformerConfig::modern(32)),
        ModelConfig::Transformer(TransformerConfig::retro(32)),
        ModelConfig::Lstm(LstmConfig::paper(32)),
    ] {
        let model = cfg.build(50, 1, &device, DType::F32).unwrap();
        let view = model
            .eval_view()
            .expect("every architecture has an evaluation view");
        let x = tokens(&device);
        let a = model.hidden(&x, false).unwrap();
        let b = view.hidden(&x, false).unwrap();
        assert!(a.track_op(), "the model's forward records a graph");
        assert!(!b.track_op(), "the view's forward must record no graph");
        let diff = (&a - &b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff, 0.0);

        // One optimiser step on the model; the view must see the new weights.
        let loss = a.sqr().unwrap().mean_all().unwrap();
        let grads = loss.backward().unwrap();
        let mut opt = OptimizerConfig::adam_w().build(model.params()).unwrap();
        opt.step(&grads, 1e-2).unwrap();
        let a2 = model.hidden(&x, false).unwrap();
        let b2 = view.hidden(&x, false).unwrap();
        let moved = (&a2 - &a)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(moved > 0.0, "the step must change the model");
        let diff2 = (&a2 - &b2)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff2, 0.0, "the view must follow the trained values");
    }
}
