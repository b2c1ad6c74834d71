//! `algoprog sample`: greedy decoding equals an argmax loop written here over
//! the model's logits (with the context window sliding past the training
//! sequence length), seeds reproduce, and bad run directories or options are
//! clear errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use algoprog_data::Dataset;
use algoprog_train::RunRecord;
use candle_core::{DType, Device, IndexOp, Tensor};

const BIN: &str = env!("CARGO_BIN_EXE_algoprog");
const SEQ_LEN: usize = 32;

fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("algoprog-test-cache")
}

/// A tiny modern Transformer trained for 30 steps, once per test binary.
fn trained_run() -> &'static Path {
    static RUN: OnceLock<PathBuf> = OnceLock::new();
    RUN.get_or_init(|| {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("sample-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        let config = root.join("tiny.toml");
        std::fs::write(
            &config,
            format!(
                r#"
name = "tiny-sample"
preset = "modern"
seed = 3

[model]
d_model = 32

[data]
tokenizer = "bpe-512"
seq_len = {SEQ_LEN}

[train]
lr = 1e-2
batch_size = 8
steps = 30
eval_interval = 30
eval_batches = 2
"#
            ),
        )
        .unwrap();
        let run = root.join("run");
        let o = Command::new(BIN)
            .args(["train", "--quiet", "--config"])
            .arg(&config)
            .arg("--out")
            .arg(&run)
            .env("ALGOPROG_CACHE", cache_dir())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "training failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        run
    })
}

fn sample(run: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["sample", "--quiet", "--run"])
        .arg(run)
        .args(args)
        .env("ALGOPROG_CACHE", cache_dir())
        .output()
        .unwrap()
}

fn ok_text(o: Output) -> String {
    assert!(
        o.status.success(),
        "sample failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn err_text(o: Output) -> String {
    assert!(
        !o.status.success(),
        "expected an error, got: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8(o.stderr).unwrap()
}

/// Greedy decoding by hand: build the model from run.json, load the weights,
/// and take the argmax of the last position's logits over the last
/// `SEQ_LEN` tokens, `n` times.
fn hand_greedy(run: &Path, prompt: &str, n: usize) -> String {
    let rec: RunRecord =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    let mut data = rec.config.data.clone();
    data.cache_dir = Some(cache_dir());
    let corpus = data.corpus.open().unwrap();
    let tok = Dataset::load(&data, corpus.as_ref()).unwrap().tokenizer();
    let model = rec
        .config
        .model
        .build(tok.vocab_size(), 0, &Device::Cpu, DType::F32)
        .unwrap();
    model
        .params()
        .load_safetensors(run.join("model.safetensors"))
        .unwrap();

    let prompt_ids = tok.encode(prompt);
    let mut ids = vec![tok.end_of_text()];
    ids.extend_from_slice(&prompt_ids);
    let mut generated = Vec::new();
    for _ in 0..n {
        let ctx = &ids[ids.len().saturating_sub(SEQ_LEN)..];
        let input = Tensor::from_slice(ctx, (1, ctx.len()), &Device::Cpu).unwrap();
        let row: Vec<f32> = model
            .logits(&input, false)
            .unwrap()
            .i((0, ctx.len() - 1))
            .unwrap()
            .to_vec1()
            .unwrap();
        let mut best = 0;
        for (j, &v) in row.iter().enumerate() {
            if v > row[best] {
                best = j;
            }
        }
        ids.push(best as u32);
        generated.push(best as u32);
    }
    assert!(
        ids.len() > SEQ_LEN,
        "the check must slide the context window"
    );
    tok.decode(&[prompt_ids, generated].concat())
}

#[test]
fn greedy_sampling_is_deterministic_and_is_the_argmax_of_the_logits() {
    let run = trained_run();
    let args = [
        "--prompt",
        "The history of",
        "--tokens",
        "48",
        "--temperature",
        "0",
        "--no-stop",
    ];
    let a = ok_text(sample(run, &args));
    let b = ok_text(sample(run, &args));
    assert_eq!(a, b);
    assert!(a.starts_with("The history of"), "{a}");
    assert_eq!(a, format!("{}\n", hand_greedy(run, "The history of", 48)));
    // top-k with k = 1 keeps only the argmax, whatever the temperature and seed
    let k1 = ok_text(sample(
        run,
        &[
            "--prompt",
            "The history of",
            "--tokens",
            "48",
            "--temperature",
            "0.8",
            "--top-k",
            "1",
            "--seed",
            "5",
            "--no-stop",
        ],
    ));
    assert_eq!(k1, a);
}

#[test]
fn a_seed_reproduces_its_sample_and_another_seed_differs() {
    let run = trained_run();
    let draw = |seed: &str, extra: &[&str]| {
        let mut args = vec![
            "--prompt",
            "In the",
            "--tokens",
            "40",
            "--temperature",
            "1.0",
            "--no-stop",
            "--seed",
            seed,
        ];
        args.extend_from_slice(extra);
        ok_text(sample(run, &args))
    };
    assert_eq!(draw("7", &[]), draw("7", &[]));
    assert_ne!(draw("7", &[]), draw("8", &[]));
    assert_eq!(
        draw("7", &["--top-k", "20", "--top-p", "0.9"]),
        draw("7", &["--top-k", "20", "--top-p", "0.9"])
    );
    let greedy = ok_text(sample(
        run,
        &[
            "--prompt",
            "In the",
            "--tokens",
            "40",
            "--temperature",
            "0",
            "--no-stop",
        ],
    ));
    assert_ne!(
        draw("7", &[]),
        greedy,
        "temperature 1 samples, it does not take the argmax"
    );
}

#[test]
fn bad_runs_and_options_are_clear_errors() {
    let run = trained_run();
    let tmp = tempfile::tempdir().unwrap();

    // a directory without run.json
    let e = err_text(sample(tmp.path(), &["--prompt", "x"]));
    assert!(
        e.contains("no run.json") && e.contains("algoprog train"),
        "{e}"
    );

    // run.json without the weights
    let no_weights = tmp.path().join("no-weights");
    std::fs::create_dir(&no_weights).unwrap();
    std::fs::copy(run.join("run.json"), no_weights.join("run.json")).unwrap();
    let e = err_text(sample(&no_weights, &["--prompt", "x"]));
    assert!(
        e.contains("model.safetensors") && e.contains("missing"),
        "{e}"
    );

    // a diverged run
    let diverged = tmp.path().join("diverged");
    std::fs::create_dir(&diverged).unwrap();
    let mut rec: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    rec["status"] = "diverged".into();
    rec["diverged_at_step"] = 12.into();
    std::fs::write(
        diverged.join("run.json"),
        serde_json::to_string(&rec).unwrap(),
    )
    .unwrap();
    let e = err_text(sample(&diverged, &["--prompt", "x"]));
    assert!(
        e.contains("diverged at step 12") && e.contains("no weights"),
        "{e}"
    );

    // a data cache that does not hold the run's tokenizer
    let empty_cache = tmp.path().join("empty-cache");
    let o = Command::new(BIN)
        .args(["sample", "--quiet", "--prompt", "x", "--run"])
        .arg(run)
        .env("ALGOPROG_CACHE", &empty_cache)
        .output()
        .unwrap();
    let e = err_text(o);
    assert!(
        e.contains("tokenizer.json")
            && e.contains("ALGOPROG_CACHE")
            && e.contains("algoprog data prepare"),
        "{e}"
    );

    // options out of range
    let e = err_text(sample(run, &["--tokens", "5000"]));
    assert!(e.contains("--tokens 5000") && e.contains("4096"), "{e}");
    let e = err_text(sample(run, &["--top-p", "1.5"]));
    assert!(e.contains("--top-p 1.5"), "{e}");
    let e = err_text(sample(run, &["--temperature=-1"]));
    assert!(e.contains("--temperature -1"), "{e}");
}
