//! The LSTM presets through the unchanged trainer: `lstm` and `lstm-carry`
//! (the authors' runs, state reset per sequence or carried across batches)
//! and `lstm-paper-table` (the papers' Table 3) resolve to their pinned
//! values, and a small LSTM with the state carried across batches learns the
//! embedded corpus below its unigram entropy.

use std::path::PathBuf;

use algoprog_data::{BatchOrder, Dataset};
use algoprog_models::{CarryState, LstmConfig, ModelConfig};
use algoprog_nn::{OptimizerConfig, ScheduleConfig};
use algoprog_train::{train_on, RunConfig, RunDir, RunStatus, Silent};

fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("algoprog-test-cache")
}

#[test]
fn lstm_preset_resolves_to_the_authors_runs_and_the_table_setup_by_name() {
    let cfg = RunConfig::from_toml_str(
        "preset = \"lstm\"\n[model]\nd_model = 48\n[train]\nlr = 1e-2\nsteps = 10\n",
    )
    .unwrap();
    // the authors' runs: 1 layer, H = d, no LayerNorm, no dropout, TBPTT 32,
    // AdamW with weight decay 1e-4, a bias on the output layer; the default
    // resets the state at each sequence (`lstm-carry` carries it)
    let ModelConfig::Lstm(m) = &cfg.model else {
        panic!("not an LSTM")
    };
    assert_eq!(
        (
            m.d_model,
            m.n_layers,
            m.hidden_size(),
            m.layer_norm,
            m.tbptt_len,
            m.carry_state,
            m.output_bias
        ),
        (48, 1, 48, false, 32, CarryState::WithinSequence, true)
    );
    assert_eq!(
        (m.dropout_input, m.dropout_hidden, m.dropout_output),
        (0.0, 0.0, 0.0)
    );
    assert_eq!(cfg.train.batch_order, BatchOrder::Shuffled);
    let carry = RunConfig::from_toml_str(
        "preset = \"lstm-carry\"\n[model]\nd_model = 48\n[train]\nlr = 1e-2\nsteps = 10\n",
    )
    .unwrap();
    let mut authors = LstmConfig::authors_runs(48);
    authors.output_bias = true;
    assert_eq!(carry.model, ModelConfig::Lstm(authors.clone()));
    assert_eq!(authors.carry_state, CarryState::AcrossBatches);
    assert_eq!(carry.train.batch_order, BatchOrder::Contiguous);
    assert_eq!(carry.train.optimizer, cfg.train.optimizer);
    assert_eq!(cfg.family.as_deref(), Some("lstm"));
    let OptimizerConfig::AdamW { weight_decay, .. } = cfg.train.optimizer else {
        panic!("not AdamW: {:?}", cfg.train.optimizer)
    };
    assert_eq!(weight_decay, 1e-4);
    assert_eq!(cfg.train.schedule, ScheduleConfig::cosine());
    // the papers' Table 3 by name: 2 layers, LayerNorm, TBPTT 64, zero state
    // per sequence, dropout 0 (the text's setting), weight decay 0.01
    let table = RunConfig::from_toml_str(
        "preset = \"lstm-paper-table\"\n[model]\nd_model = 48\n[train]\nlr = 1e-2\nsteps = 10\n",
    )
    .unwrap();
    let mut paper = LstmConfig::paper_no_dropout(48);
    paper.output_bias = true;
    assert_eq!(table.model, ModelConfig::Lstm(paper));
    let ModelConfig::Lstm(t) = &table.model else {
        panic!("not an LSTM")
    };
    assert_eq!(
        (t.n_layers, t.layer_norm, t.tbptt_len, t.carry_state),
        (2, true, 64, CarryState::WithinSequence)
    );
    assert_eq!(table.family.as_deref(), Some("lstm-paper-table"));
    assert_eq!(table.train.optimizer, OptimizerConfig::adam_w());
    assert_eq!(table.train.schedule, ScheduleConfig::cosine());
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
    let mut want = LstmConfig::authors_runs(64);
    (want.carry_state, want.output_bias) = (CarryState::WithinSequence, true);
    assert_eq!(shipped.model, ModelConfig::Lstm(want));
    let shipped = RunConfig::from_file(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs/lstm-paper-table.toml"),
    )
    .unwrap();
    let mut want = LstmConfig::paper_no_dropout(64);
    want.output_bias = true;
    assert_eq!(shipped.model, ModelConfig::Lstm(want));
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
    // context (the 1-layer `lstm`: 4.62 nats after 300 steps against a
    // unigram entropy of 5.28; 4.43 with zero state per sequence, 4.03 for
    // the 2-layer `lstm-paper-table`)
    assert!(
        last < entropy - 0.5,
        "val loss {last} should be below the unigram entropy {entropy} (start {first})"
    );
    // the ledger uses the LSTM's FLOPs: 1 layer × 8·32·64 + 2·32·V per token, ×3
    let v = data.vocab_size() as f64;
    let fwd = 8.0 * 32.0 * 64.0 + 2.0 * 32.0 * v;
    assert_eq!(out.record.flops.per_token.train_per_token, 3.0 * fwd);
    assert_eq!(out.record.flops.per_token.chinchilla_per_token, 0.0);
}
