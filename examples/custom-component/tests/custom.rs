use algoprog_example_custom_component::*;
use algoprog_models::LanguageModel;
use algoprog_nn::{Activation, FeedForward, FfDims, LrSchedule, Mlp};
use candle_core::{DType, Device, Tensor};

#[test]
fn custom_activation_and_schedule_behave_as_defined() {
    let x = Tensor::new(&[-2.0f32, -0.5, 0.0, 1.5, 3.0], &Device::Cpu).unwrap();
    let y: Vec<f32> = SquaredRelu.forward(&x).unwrap().to_vec1().unwrap();
    assert_eq!(y, vec![0.0, 0.0, 0.0, 2.25, 9.0]);
    let s = StepDecay {
        every: 10,
        factor: 0.5,
    };
    assert_eq!(
        (
            s.lr(0, 100, 1.0),
            s.lr(9, 100, 1.0),
            s.lr(10, 100, 1.0),
            s.lr(25, 100, 1.0)
        ),
        (1.0, 1.0, 0.5, 0.25)
    );
    // the MLP's FLOPs use the activation's count: 10 tokens, d = 8, h = 32:
    // matmul 10·4·8·32 = 10 240; elementwise 10·(2·32 + 32 + 8) = 1 040
    let f = Mlp::<SquaredRelu>::flops(
        &(),
        &FfDims {
            d_model: 8,
            ff_ratio: 4.0,
            bias: true,
        },
        10,
    );
    assert_eq!((f.matmul, f.elementwise), (10_240.0, 1_040.0));
}

#[test]
fn gradients_reach_every_parameter_of_the_custom_model() {
    let model = SquaredReluTransformer::new(&spec(), VOCAB, 1, &Device::Cpu, DType::F32).unwrap();
    let names: Vec<&str> = model.params().iter().map(|p| p.name.as_str()).collect();
    assert!(names.contains(&"blocks.1.mlp.in.weight"));
    let grads = loss(&model, &random_batch(1).unwrap())
        .unwrap()
        .backward()
        .unwrap();
    for p in model.params().iter() {
        let g = grads
            .get(p.var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {}", p.name));
        let m = g
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(m > 0.0 && m.is_finite(), "{}: {m}", p.name);
    }
}

#[test]
fn brief_training_lowers_the_loss() {
    let l = train(30, 2).unwrap();
    assert_eq!(l.len(), 31);
    // starts near ln 64 = 4.16 and falls as the batch is memorised
    assert!((l[0] - 64f32.ln()).abs() < 0.2, "{}", l[0]);
    assert!(l[30] < l[0] - 0.5, "{l:?}");
}
