//! Tests of the library corpus (assembly from a hand-made file, its errors, the
//! shipped file's contents and split) and of epoch counting. No network.

use std::io::Write;

use algoprog_data::*;

fn gzip(s: &str) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(s.as_bytes()).unwrap();
    e.finish().unwrap()
}

fn line(id: &str, part: &str) -> String {
    format!(
        "{}\n",
        serde_json::json!({"id": id, "text": format!("text of {id}"), "part": part})
    )
}

fn doc(id: &str) -> Document {
    Document {
        id: id.into(),
        text: format!("text of {id}"),
    }
}

fn ids(docs: &[Document]) -> Vec<&str> {
    docs.iter().map(|d| d.id.as_str()).collect()
}

#[test]
fn assembly_puts_heldout_first_and_shuffles_the_rest_with_the_fixed_seed() {
    let file: String = [
        line("h/a", "heldout"),
        line("h/b", "heldout"),
        line("h/c", "heldout"),
        "\n".into(),
        line("t/0", "train"),
        line("t/1", "train"),
        line("t/2", "train"),
        line("t/3", "train"),
    ]
    .concat();
    let embedded: Vec<Document> = (0..5).map(|i| doc(&format!("e/{i}"))).collect();
    let got = assemble_library(&gzip(&file), embedded.clone()).unwrap();
    assert_eq!(ids(&got[..3]), ["h/a", "h/b", "h/c"]);
    // the rest: file training documents then embedded ones, in the order of
    // permutation(9, LIBRARY_SHUFFLE_SEED, 0)
    let unshuffled = [
        "t/0", "t/1", "t/2", "t/3", "e/0", "e/1", "e/2", "e/3", "e/4",
    ];
    let p = permutation(9, LIBRARY_SHUFFLE_SEED, 0);
    let want: Vec<&str> = p.iter().map(|&i| unshuffled[i]).collect();
    assert_eq!(ids(&got[3..]), want);
    assert_ne!(
        want, unshuffled,
        "the fixed seed shuffles these 9 documents"
    );
    assert_eq!(got[0].text, "text of h/a");
    // deterministic
    assert_eq!(assemble_library(&gzip(&file), embedded).unwrap(), got);
}

#[test]
fn assembly_errors_name_the_line_and_the_fix() {
    let err = |file: &str, emb: Vec<Document>| {
        assemble_library(&gzip(file), emb).unwrap_err().to_string()
    };
    let e = err(&(line("h/a", "heldout") + &line("t/0", "test")), vec![]);
    assert!(e.contains("line 2") && e.contains("\"test\""), "{e}");
    assert!(e.contains("scripts/build_library.py"), "{e}");
    let e = err(&(line("t/0", "train") + &line("h/a", "heldout")), vec![]);
    assert!(
        e.contains("line 2") && e.contains("heldout documents come first"),
        "{e}"
    );
    let e = err(&(line("h/a", "heldout") + &line("h/a", "train")), vec![]);
    assert!(e.contains("\"h/a\" appears twice"), "{e}");
    let e = err(&line("h/a", "heldout"), vec![doc("h/a")]);
    assert!(e.contains("embedded corpus"), "{e}");
    let e = err(&line("t/0", "train"), vec![]);
    assert!(e.contains("validation pool is empty"), "{e}");
    let e = err("{\"id\": \"x\"}\n", vec![]);
    assert!(e.contains("line 1"), "{e}");
    let e = assemble_library(b"not gzip", vec![])
        .unwrap_err()
        .to_string();
    assert!(e.contains("gzip"), "{e}");
}

#[test]
fn shipped_library_holds_the_embedded_books_and_the_registry_texts() {
    let docs = LibraryCorpus.documents().unwrap();
    let embedded = embedded_documents().unwrap();
    assert_eq!(embedded.len(), 341);
    assert_eq!(docs.len(), 341 + 980, "see corpus/LIBRARY.md");
    let bytes: usize = docs.iter().map(|d| d.text.len()).sum();
    assert_eq!(
        bytes,
        11_389_957 + 36_181_156,
        "see the two provenance files"
    );
    // 44 heldout works first: whole addresses and Shakespeare works
    assert!(docs[..44]
        .iter()
        .all(|d| d.id.starts_with("sotu/") || d.id.starts_with("shakespeare/")));
    assert_eq!(docs[0].id, "sotu/2002_george_w_bush_r");
    let heldout: usize = docs[..44].iter().map(|d| d.text.len()).sum();
    assert_eq!(heldout, 2_534_442);
    // every embedded book is there, and every source contributes
    let all: std::collections::HashSet<&str> = docs.iter().map(|d| d.id.as_str()).collect();
    assert!(embedded.iter().all(|d| all.contains(d.id.as_str())));
    for prefix in [
        "sotu/",
        "shakespeare/",
        "bible-web/",
        "bible-asv/",
        "bible-ylt/",
        "bible-dar/",
        "bible-dr/",
    ] {
        assert!(all.iter().any(|id| id.starts_with(prefix)), "{prefix}");
    }
    // duplicates of the embedded books were left out
    assert!(!all.contains("shakespeare/hamlet"));
    assert!(!all.contains("shakespeare/macbeth"));
    assert!(!all.contains("shakespeare/julius_caesar"));
    assert!(LibraryCorpus.is_streamed());
    assert!(LibraryCorpus.identity().starts_with("library:"));
    // the name configs use
    #[derive(serde::Deserialize)]
    struct T {
        data: DataConfig,
    }
    let t: T = toml::from_str("[data]\ncorpus = \"library\"\n").unwrap();
    assert_eq!(t.data.corpus, CorpusSpec::Library);
    assert_eq!(t.data.corpus.kind(), "library");
}

#[test]
fn library_validation_is_heldout_works_only_and_epochs_are_counted() {
    let dir = tempfile::TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let cfg = DataConfig {
        corpus: CorpusSpec::Library,
        tokenizer: "bpe-512".parse().unwrap(),
        seq_len: 64,
        val_tokens: 20_000,
        max_train_tokens: Some(100_000),
        bpe_sample_bytes: Some(1 << 20),
        cache_dir: Some(dir.path().to_path_buf()),
        ..DataConfig::default()
    };
    let data = Dataset::prepare(&cfg).unwrap();
    let val = data.val_documents();
    assert!(!val.is_empty());
    assert!(
        val.iter()
            .all(|id| id.starts_with("sotu/") || id.starts_with("shakespeare/")),
        "{val:?}"
    );
    assert!(data.train_documents().iter().all(|t| !val.contains(t)));
    assert!(data.val_tokens() >= 20_000);
    assert_eq!(data.train_tokens(), 100_000);
    // epochs: budget / (sequences × seq_len), hand-derived
    let n = data.num_train_sequences();
    assert_eq!(n, (100_000 - 1) / 64);
    assert_eq!(data.epochs((n * 64) as u64), 1.0);
    assert_eq!(data.epochs((n * 64 * 5 / 2) as u64), 2.5);
    assert_eq!(data.check_epochs((n * 64 * 4) as u64).unwrap(), 4.0);
    let e = data
        .check_epochs((n * 64 * 4 + 64) as u64)
        .unwrap_err()
        .to_string();
    assert!(e.contains("limit of 4") && e.contains("library"), "{e}");
}

#[test]
fn epochs_are_budget_over_training_windows() {
    assert_eq!(epochs(1000, 128, 512_000), 4.0);
    assert_eq!(epochs(1000, 128, 64_000), 0.5);
    assert_eq!(epochs(1000, 128, 0), 0.0);
    assert_eq!(epochs(0, 128, 1), f64::INFINITY);
    assert_eq!(check_epochs("c", 1000, 128, 512_000).unwrap(), 4.0);
    let e = check_epochs("c", 1000, 128, 512_001)
        .unwrap_err()
        .to_string();
    assert!(e.contains("corpus c") && e.contains("4.00 times"), "{e}");
    assert!(check_epochs("c", 0, 128, 1).is_err());
}
