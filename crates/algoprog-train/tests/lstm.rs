//! The `lstm` preset through the unchanged trainer: it resolves, and a small
//! LSTM learns the embedded corpus below its unigram entropy.

use std::path::PathBuf;

use algoprog_data::Dataset;
use algoprog_models::{LstmConfig, ModelConfig};
use algoprog_nn::{OptimizerConfig, ScheduleConfig};
use algoprog_train::{train_on, RunConfig, RunDir, RunStatus, Silent};

fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("algoprog-test-cache")
}

#[test]
fn lstm_preset_resolves_to_the_papers_setup_without_dropout() {
    let cfg = RunConfig::from_toml_str(
        "preset = \"lstm\"\n[model]\nd_model = 48\n[train]\nlr = 1e-2\nsteps = 10\n",
    )
    .unwrap();
    assert_eq!(
        cfg.model,
        ModelConfig::Lstm(LstmConfig::paper_no_dropout(48))
    );
    assert_eq!(cfg.family.as_deref(), Some("lstm"));
    assert_eq!(cfg.train.optimizer, OptimizerConfig::adam_w());
    assert_eq!(cfg.train.schedule, ScheduleConfig::cosine());
    // a key of the LSTM can be overridden; a Transformer key is rejected by name
    let c = RunConfig::from_toml_str("preset = \"lstm\"\n[model]\nd_model = 32\ndropout_input = 0.2\nn_layers = 1\n[train]\nlr = 1e-2\nsteps = 10\n").unwrap();
    let ModelConfig::Lstm(m) = &c.model else {
        panic!("not an LSTM")
    };
    assert_eq!((m.dropout_input, m.n_layers), (0.2, 1));
    let e = RunConfig::from_toml_str(
        "preset = \"lstm\"\n[model]\nd_model = 32\nhead_dim = 16\n[train]\nlr = 1e-2\nsteps = 10\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("head_dim"), "{e}");
    let e = RunConfig::from_toml_str("preset = \"lstm\"\n[model]\nd_model = 32\ndropout_output = 1.5\n[train]\nlr = 1e-2\nsteps = 10\n").unwrap_err().to_string();
    assert!(e.contains("model.dropout_output"), "{e}");
    // the shipped config resolves
    let shipped = RunConfig::from_file(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs/lstm.toml"),
    )
    .unwrap();
    assert_eq!(
        shipped.model,
        ModelConfig::Lstm(LstmConfig::paper_no_dropout(64))
    );
}

#[test]
fn small_lstm_learns_below_unigram_entropy() {
    let text = format!(
        r#"
name = "tiny-lstm"
preset = "lstm"
seed = 0

[model]
d_model = 32
tbptt_len = 32

[data]
tokenizer = "bpe-512"
seq_len = 64
cache_dir = "{cache}"

[train]
lr = 1e-2
batch_size = 16
steps = 300
eval_interval = 150
eval_batches = 8
"#,
        cache = cache_dir().display()
    );
    let cfg = RunConfig::from_toml_str(&text).unwrap();
    let data = Dataset::prepare(&cfg.data).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = train_on(
        &cfg.clone().check().unwrap(),
        &data,
        &RunDir::create(tmp.path()).unwrap(),
        &mut Silent,
    )
    .unwrap();
    assert_eq!(out.record.status, RunStatus::Finished);
    let entropy = data.unigram_entropy();
    let first = out.curve.first().unwrap().val_loss;
    let last = out.curve.last().unwrap().val_loss;
    // an LSTM sits near the unigram level for ~100 steps before it uses the
    // context (4.03 nats after 300 steps against a unigram entropy of 5.28)
    assert!(
        last < entropy - 0.5,
        "val loss {last} should be below the unigram entropy {entropy} (start {first})"
    );
    // the ledger uses the LSTM's FLOPs: 2 layers × 8·32·64 + 2·32·V per token, ×3
    let v = data.vocab_size() as f64;
    let fwd = 2.0 * 8.0 * 32.0 * 64.0 + 2.0 * 32.0 * v;
    assert_eq!(out.record.flops.per_token.train_per_token, 3.0 * fwd);
    assert_eq!(out.record.flops.per_token.chinchilla_per_token, 0.0);
}
