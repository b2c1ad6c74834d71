//! Tests of the file sources (directory, C4 through a hand-made hf-hub cache),
//! the streamed split and the errors on bad input. No network: every C4 test
//! runs offline against a temporary hub cache passed explicitly (`hub_cache`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use algoprog_data::*;

fn tmp() -> tempfile::TempDir {
    tempfile::TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// 60 documents of 1–4 KB cut from the embedded corpus (varied lengths, real text).
fn texts() -> &'static Vec<String> {
    static T: OnceLock<Vec<String>> = OnceLock::new();
    T.get_or_init(|| {
        let d = embedded_documents().unwrap();
        (0..60)
            .map(|i| {
                let t = &d[i * 5].text;
                let n = 1000 + (i * 577) % 3000;
                let mut end = n.min(t.len());
                while !t.is_char_boundary(end) {
                    end -= 1;
                }
                t[..end].to_string()
            })
            .collect()
    })
}

/// One line of C4's English JSON-lines format (key order as in the files).
fn c4_line(i: usize, text: &str) -> String {
    let v = serde_json::json!({
        "text": text,
        "timestamp": format!("2019-04-{:02}T12:{:02}:54Z", 1 + i % 28, i % 60),
        "url": format!("https://example.org/page/{i}"),
    });
    // serde_json keeps insertion order only with `preserve_order`; write it by hand.
    format!(
        "{{\"text\":{},\"timestamp\":{},\"url\":{}}}",
        serde_json::to_string(v["text"].as_str().unwrap()).unwrap(),
        v["timestamp"],
        v["url"]
    )
}

fn gzip(s: &str) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(s.as_bytes()).unwrap();
    e.finish().unwrap()
}

fn shard_bytes(texts: &[String]) -> Vec<u8> {
    let mut s = String::new();
    for (i, t) in texts.iter().enumerate() {
        s.push_str(&c4_line(i, t));
        s.push('\n');
    }
    gzip(&s)
}

const COMMIT: &str = "1588ec454efa1a09f29cd18ddd04fe05fc8653a2";

/// Builds hf-hub's cache layout for allenai/c4 by hand: the blob, a symlink to it
/// from `snapshots/<commit>/en/<shard>`, and `refs/main`.
fn hub_with_shards(root: &Path, shards: &[Vec<u8>]) -> PathBuf {
    let repo = root.join("datasets--allenai--c4");
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(repo.join("snapshots").join(COMMIT).join("en")).unwrap();
    std::fs::write(repo.join("refs").join("main"), COMMIT).unwrap();
    for (i, bytes) in shards.iter().enumerate() {
        let etag = format!("{:064x}", i + 1);
        std::fs::write(repo.join("blobs").join(&etag), bytes).unwrap();
        let link = repo.join("snapshots").join(COMMIT).join(c4_shard_name(i));
        std::os::unix::fs::symlink(Path::new("../../../blobs").join(&etag), &link).unwrap();
    }
    root.to_path_buf()
}

fn cfg(corpus: CorpusSpec, tokenizer: TokenizerSpec, cache: &Path) -> DataConfig {
    DataConfig {
        corpus,
        tokenizer,
        seq_len: 32,
        val_tokens: 4_000,
        cache_dir: Some(cache.to_path_buf()),
        ..DataConfig::default()
    }
}

fn c4_spec(hub: &Path, shards: usize) -> C4Spec {
    C4Spec {
        shards,
        offline: true,
        hub_cache: Some(hub.to_path_buf()),
        ..C4Spec::default()
    }
}

/// GPT-2 token stream of `texts`, each followed by end-of-text.
fn gpt2_stream(texts: &[String]) -> Vec<u32> {
    let mut out = Vec::new();
    for t in texts {
        out.extend(Gpt2Tokenizer.encode(t));
        out.push(50256);
    }
    out
}

#[test]
fn c4_offline_gives_the_tokens_of_the_dir_source() {
    let root = tmp();
    let t = texts();
    let hub = hub_with_shards(
        &root.path().join("hub"),
        &[shard_bytes(&t[..40]), shard_bytes(&t[40..])],
    );
    let dir = root.path().join("plain");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.jsonl.gz"), shard_bytes(&t[..40])).unwrap();
    std::fs::write(dir.join("b.jsonl.gz"), shard_bytes(&t[40..])).unwrap();
    let cache = root.path().join("cache");

    for tok in [TokenizerSpec::Gpt2, TokenizerSpec::Bpe { vocab_size: 300 }] {
        let c4 =
            Dataset::prepare(&cfg(CorpusSpec::C4(c4_spec(&hub, 2)), tok.clone(), &cache)).unwrap();
        let plain = Dataset::prepare(&cfg(
            CorpusSpec::Dir(DirSpec::new(&dir)),
            tok.clone(),
            &cache,
        ))
        .unwrap();
        assert!(c4.is_streamed() && plain.is_streamed());
        assert_eq!(
            c4.corpus_identity(),
            format!("c4:allenai/c4@{COMMIT}:en:shards=2:max_chars=all"),
            "the commit comes from refs/main"
        );
        assert_ne!(c4.cache_path(), plain.cache_path());
        assert_eq!(
            c4.fingerprint(),
            plain.fingerprint(),
            "{tok}: same BPE merges from the same text"
        );
        assert_eq!(c4.val_token_ids(), plain.val_token_ids(), "{tok}");
        assert_eq!(c4.train_token_ids(), plain.train_token_ids(), "{tok}");
        assert_eq!(c4.train_document_count() + c4.val_documents().len(), 60);
        assert_eq!(
            c4.val_documents()[0],
            "en/c4-train.00000-of-01024.json.gz:1"
        );
        assert_eq!(plain.val_documents()[0], "a.jsonl.gz:1");
        let bytes: u64 = t.iter().map(|x| x.len() as u64).sum();
        assert_eq!(c4.text_bytes(), bytes);
    }

    // GPT-2: the streams are exactly the documents' tokens in file order, the
    // validation set the shortest prefix reaching val_tokens.
    let c4 = Dataset::prepare(&cfg(
        CorpusSpec::C4(c4_spec(&hub, 2)),
        TokenizerSpec::Gpt2,
        &cache,
    ))
    .unwrap();
    assert_eq!(c4.cache_outcome(), &CacheOutcome::Loaded);
    let k = c4.val_documents().len();
    assert_eq!(c4.val_token_ids(), gpt2_stream(&t[..k]));
    assert_eq!(c4.train_token_ids(), gpt2_stream(&t[k..]));
    assert!(
        gpt2_stream(&t[..k]).len() >= 4_000 && gpt2_stream(&t[..k - 1]).len() < 4_000,
        "k = {k}"
    );
    // u16 tokens on disk.
    assert_eq!(
        TokenCache::open(c4.cache_path(), &c4.fingerprint(), true)
            .unwrap()
            .width(),
        2
    );
    // `Dataset::load` opens the prepared cache without building.
    let corpus = C4Corpus::open(&c4_spec(&hub, 2)).unwrap();
    let loaded = Dataset::load(
        &cfg(CorpusSpec::Embedded, TokenizerSpec::Gpt2, &cache),
        &corpus,
    )
    .unwrap();
    assert_eq!(loaded.train_token_ids(), c4.train_token_ids());
    // Batches come from the mapped file.
    let b = c4.train_batches(4, 1).next().unwrap();
    assert_eq!(b.inputs.len(), 4 * 32);
    assert_eq!(&b.inputs[1..32], &b.targets[..31]);
}

#[test]
fn validation_is_the_same_whatever_the_budget() {
    let root = tmp();
    let t = texts();
    let hub = hub_with_shards(
        &root.path().join("hub"),
        &[shard_bytes(&t[..40]), shard_bytes(&t[40..])],
    );
    let cache = root.path().join("cache");
    let full = Dataset::prepare(&cfg(
        CorpusSpec::C4(c4_spec(&hub, 2)),
        TokenizerSpec::Gpt2,
        &cache,
    ))
    .unwrap();
    let one = Dataset::prepare(&cfg(
        CorpusSpec::C4(c4_spec(&hub, 1)),
        TokenizerSpec::Gpt2,
        &cache,
    ))
    .unwrap();
    let chars: u64 = t[..30].iter().map(|x| x.chars().count() as u64).sum();
    let budget = Dataset::prepare(&cfg(
        CorpusSpec::C4(C4Spec {
            max_chars: Some(chars - 1),
            ..c4_spec(&hub, 2)
        }),
        TokenizerSpec::Gpt2,
        &cache,
    ))
    .unwrap();
    let capped = Dataset::prepare(&DataConfig {
        max_train_tokens: Some(3_000),
        ..cfg(
            CorpusSpec::C4(c4_spec(&hub, 2)),
            TokenizerSpec::Gpt2,
            &cache,
        )
    })
    .unwrap();
    for d in [&one, &budget, &capped] {
        assert_eq!(d.val_documents(), full.val_documents());
        assert_eq!(d.val_token_ids(), full.val_token_ids());
    }
    let k = full.val_documents().len();
    assert_eq!(one.train_document_count(), 40 - k);
    // The budget keeps the document that crosses it: exactly the first 30.
    assert_eq!(budget.train_document_count(), 30 - k);
    assert_eq!(budget.train_token_ids(), gpt2_stream(&t[k..30]));
    // The cap stops tokenisation early and is exact.
    assert_eq!(capped.train_tokens(), 3_000);
    assert_eq!(
        capped.train_token_ids(),
        full.train_token_ids().slice(..3_000)
    );
    let docs_in_cap = (k..60)
        .take_while(|&i| gpt2_stream(&t[k..i]).len() < 3_000)
        .count();
    assert_eq!(capped.train_documents_used(), docs_in_cap);
    assert!(capped.train_document_count() < full.train_document_count());
}

#[test]
fn offline_names_the_missing_file() {
    let root = tmp();
    let t = texts();
    let hub = hub_with_shards(&root.path().join("hub"), &[shard_bytes(&t[..40])]);
    let e = C4Corpus::open(&c4_spec(&hub, 3)).unwrap_err().to_string();
    let missing = hub
        .join("datasets--allenai--c4/snapshots")
        .join(COMMIT)
        .join("en/c4-train.00001-of-01024.json.gz");
    assert!(e.contains(missing.to_str().unwrap()), "{e}");
    assert!(e.contains("offline") && e.contains("HF_HUB_CACHE"), "{e}");
    // An empty cache: the revision itself is missing.
    let empty = root.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let e = C4Corpus::open(&c4_spec(&empty, 1)).unwrap_err().to_string();
    assert!(
        e.contains(
            empty
                .join("datasets--allenai--c4/refs/main")
                .to_str()
                .unwrap()
        ),
        "{e}"
    );
    assert!(e.contains("c4-train.00000-of-01024.json.gz"), "{e}");
    let e = C4Corpus::open(&C4Spec {
        shards: 0,
        ..c4_spec(&hub, 1)
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("data.corpus.c4.shards"), "{e}");
}

/// A stand-in for the Hub's `resolve` endpoint on 127.0.0.1: serves `files`
/// (path under `/datasets/allenai/c4/resolve/main/`) with the headers hf-hub
/// reads (`X-Repo-Commit`, `ETag`, `Content-Range`) and honours `Range`;
/// anything else is a 404. Returns the endpoint URL and the request log.
fn fake_hub(
    files: Vec<(String, Vec<u8>)>,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log2 = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut range_start = 0usize;
            let mut range_end = None;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some(r) = h.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    let (a, b) = r.trim().split_once('-').unwrap();
                    range_start = a.parse().unwrap();
                    range_end = b.parse::<usize>().ok();
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
            log2.lock().unwrap().push(path.clone());
            let file = files
                .iter()
                .enumerate()
                .find(|(_, (name, _))| path == format!("/datasets/allenai/c4/resolve/main/{name}"));
            let response = match file {
                Some((i, (_, bytes))) => {
                    let end = range_end.unwrap_or(bytes.len() - 1).min(bytes.len() - 1);
                    let body = &bytes[range_start..=end];
                    let mut r = format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {range_start}-{end}/{}\r\n\
                         ETag: \"{:064x}\"\r\nX-Repo-Commit: {COMMIT}\r\nConnection: close\r\n\r\n",
                        body.len(),
                        bytes.len(),
                        i + 1
                    )
                    .into_bytes();
                    r.extend_from_slice(body);
                    r
                }
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            };
            let _ = stream.write_all(&response);
        }
    });
    (format!("http://{addr}"), log)
}

#[test]
fn c4_downloads_shards_into_the_hub_cache_as_they_are_reached() {
    let root = tmp();
    let t = texts();
    let shards = [shard_bytes(&t[..40]), shard_bytes(&t[40..])];
    let (endpoint, log) = fake_hub(vec![
        (c4_shard_name(0), shards[0].clone()),
        (c4_shard_name(1), shards[1].clone()),
    ]);
    let hub = root.path().join("hub");
    let online = C4Spec {
        offline: false,
        endpoint: Some(endpoint.clone()),
        ..c4_spec(&hub, 2)
    };
    let cache = root.path().join("cache");

    // Opening fetches shard 0 only (a range request for the metadata, then the body).
    let c4 = C4Corpus::open(&online).unwrap();
    let shard0 = format!("/datasets/allenai/c4/resolve/main/{}", c4_shard_name(0));
    assert_eq!(*log.lock().unwrap(), [shard0.clone(), shard0.clone()]);
    assert_eq!(c4.commit(), COMMIT);
    assert_eq!(
        c4.identity(),
        format!("c4:allenai/c4@{COMMIT}:en:shards=2:max_chars=all")
    );
    // Streaming reaches shard 1 and downloads it.
    let docs = c4.documents().unwrap();
    assert_eq!(docs.len(), 60);
    assert_eq!(docs[40].text, t[40]);
    assert_eq!(log.lock().unwrap().len(), 4);
    // The cache has the Hugging Face layout: refs/main, snapshot links to blobs.
    let repo = hub.join("datasets--allenai--c4");
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main")).unwrap(),
        COMMIT
    );
    for (i, bytes) in shards.iter().enumerate() {
        let link = repo.join("snapshots").join(COMMIT).join(c4_shard_name(i));
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("../../../blobs").join(format!("{:064x}", i + 1))
        );
        assert_eq!(&std::fs::read(&link).unwrap(), bytes);
    }

    // A filled cache is used without the network, online or offline, and gives
    // the tokens of the hand-made cache.
    let n = log.lock().unwrap().len();
    let downloaded = Dataset::prepare(&cfg(
        CorpusSpec::C4(online.clone()),
        TokenizerSpec::Gpt2,
        &cache,
    ))
    .unwrap();
    let offline = Dataset::prepare(&cfg(
        CorpusSpec::C4(c4_spec(&hub, 2)),
        TokenizerSpec::Gpt2,
        &cache,
    ))
    .unwrap();
    assert_eq!(log.lock().unwrap().len(), n);
    let hand = hub_with_shards(&root.path().join("hand"), &shards);
    let hand = Dataset::prepare(&cfg(
        CorpusSpec::C4(c4_spec(&hand, 2)),
        TokenizerSpec::Gpt2,
        &cache,
    ))
    .unwrap();
    assert_eq!(downloaded.train_token_ids(), hand.train_token_ids());
    assert_eq!(offline.val_token_ids(), hand.val_token_ids());

    // A shard the Hub does not have: the error names it and the way out.
    let e = C4Corpus::open(&C4Spec {
        revision: Some("v0".into()),
        ..online
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("cannot download C4 shard en/c4-train.00000-of-01024.json.gz")
            && e.contains("404"),
        "{e}"
    );
    assert!(
        e.contains(&format!("{endpoint}/datasets/allenai/c4/resolve/v0/"))
            && e.contains("--offline"),
        "{e}"
    );
}

#[test]
fn hub_cache_follows_hf_hub_cache_and_hf_home() {
    // The only test that touches these variables.
    let saved: Vec<(&str, Option<std::ffi::OsString>)> =
        ["HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME"]
            .iter()
            .map(|k| (*k, std::env::var_os(k)))
            .collect();
    std::env::remove_var("HUGGINGFACE_HUB_CACHE");
    std::env::set_var("HF_HUB_CACHE", "/x/hub-cache");
    std::env::set_var("HF_HOME", "/x/hf-home");
    assert_eq!(
        hub_cache_dir(&C4Spec::default()),
        PathBuf::from("/x/hub-cache")
    );
    std::env::remove_var("HF_HUB_CACHE");
    assert_eq!(
        hub_cache_dir(&C4Spec::default()),
        PathBuf::from("/x/hf-home/hub")
    );
    let explicit = C4Spec {
        hub_cache: Some("/y".into()),
        ..C4Spec::default()
    };
    assert_eq!(hub_cache_dir(&explicit), PathBuf::from("/y"));
    for (k, v) in saved {
        match v {
            Some(v) => std::env::set_var(k, v),
            None => std::env::remove_var(k),
        }
    }
}

#[test]
fn dir_reads_txt_and_jsonl_with_a_text_field() {
    let root = tmp();
    let t = texts();
    let dir = root.path().join("d");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("b.txt"), &t[0]).unwrap();
    let lines: String = t[1..4]
        .iter()
        .map(|x| format!("{}\n\n", serde_json::json!({ "body": x, "n": 1 })))
        .collect();
    std::fs::write(dir.join("sub/c.jsonl"), lines).unwrap();
    std::fs::write(dir.join("a.txt"), &t[4]).unwrap();
    std::fs::write(dir.join(".hidden.txt"), "skipped").unwrap();
    std::fs::write(dir.join("notes.md"), "skipped").unwrap();
    let spec = DirSpec {
        text_field: "body".into(),
        ..DirSpec::new(&dir)
    };
    let corpus = DirCorpus::open(&spec).unwrap();
    let docs = corpus.documents().unwrap();
    let ids: Vec<&str> = docs.iter().map(|d| d.id.as_str()).collect();
    // Sorted relative paths; blank lines skipped but counted.
    assert_eq!(
        ids,
        [
            "a.txt",
            "b.txt",
            "sub/c.jsonl:1",
            "sub/c.jsonl:3",
            "sub/c.jsonl:5"
        ]
    );
    assert_eq!(docs[0].text, t[4]);
    assert_eq!(docs[3].text, t[2]);
    // The identity follows the text field and the budget.
    let other = DirCorpus::open(&DirSpec::new(&dir)).unwrap();
    assert_ne!(other.identity(), corpus.identity());
    assert_eq!(
        DirCorpus::open(&spec).unwrap().identity(),
        corpus.identity()
    );
    let limited = DirCorpus::open(&DirSpec {
        max_chars: Some(t[4].chars().count() as u64 + 1),
        ..spec.clone()
    })
    .unwrap();
    assert_eq!(limited.documents().unwrap().len(), 2);
}

#[test]
fn bad_files_give_errors_naming_them() {
    let root = tmp();
    let t = texts();
    let cache = root.path().join("cache");
    let prepare = |dir: &Path, field: &str| {
        let spec = DirSpec {
            text_field: field.into(),
            ..DirSpec::new(dir)
        };
        Dataset::prepare(&cfg(CorpusSpec::Dir(spec), TokenizerSpec::Gpt2, &cache))
            .unwrap_err()
            .to_string()
    };

    // A JSON line without the text field.
    let d = root.path().join("nofield");
    std::fs::create_dir_all(&d).unwrap();
    let f = d.join("x.jsonl");
    std::fs::write(
        &f,
        format!(
            "{}\n{}\n",
            c4_line(0, &t[0]),
            serde_json::json!({"content": "no text here"})
        ),
    )
    .unwrap();
    let e = prepare(&d, "text");
    assert!(
        e.contains(f.to_str().unwrap()) && e.contains("line 2"),
        "{e}"
    );
    assert!(
        e.contains("no text field \"text\"") && e.contains("content") && e.contains("text_field"),
        "{e}"
    );
    let e = prepare(&d, "url");
    assert!(e.contains("line 2") && e.contains("\"url\""), "{e}");

    // Not gzip at all.
    let d = root.path().join("notgz");
    std::fs::create_dir_all(&d).unwrap();
    let f = d.join("x.jsonl.gz");
    std::fs::write(&f, "plain text, not gzip\n").unwrap();
    let e = prepare(&d, "text");
    assert!(e.contains(f.to_str().unwrap()) && e.contains("gzip"), "{e}");

    // A gzip cut short, in a second file reached by the streaming reader after
    // the validation documents.
    let d = root.path().join("truncgz");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("a.jsonl.gz"), shard_bytes(&t[..30])).unwrap();
    let good = shard_bytes(&t[30..]);
    let f = d.join("b.jsonl.gz");
    std::fs::write(&f, &good[..good.len() / 2]).unwrap();
    let e = prepare(&d, "text");
    assert!(
        e.contains(f.to_str().unwrap()) && e.contains("gzip stream is corrupt or truncated"),
        "{e}"
    );
    // Flipped bytes inside the deflate data.
    let mut bad = good.clone();
    for b in &mut bad[40..60] {
        *b ^= 0xa5;
    }
    std::fs::write(&f, &bad).unwrap();
    let e = prepare(&d, "text");
    assert!(e.contains(f.to_str().unwrap()) && e.contains("line"), "{e}");
    // No partial cache file is left behind.
    let tokens = cache.join("tokens");
    let left: Vec<_> = std::fs::read_dir(&tokens)
        .map(|r| r.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");

    // Not a directory / no corpus files.
    let e = prepare(&f, "text");
    assert!(e.contains("is not a directory"), "{e}");
    let empty = root.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let e = prepare(&empty, "text");
    assert!(
        e.contains(empty.to_str().unwrap()) && e.contains("no .txt, .jsonl"),
        "{e}"
    );
}

#[test]
fn a_damaged_or_foreign_streamed_cache_is_detected() {
    let root = tmp();
    let t = texts();
    let dir = root.path().join("d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.jsonl.gz"), shard_bytes(t)).unwrap();
    let cache = root.path().join("cache");
    let c = cfg(
        CorpusSpec::Dir(DirSpec::new(&dir)),
        TokenizerSpec::Gpt2,
        &cache,
    );
    let corpus = DirCorpus::open(&DirSpec::new(&dir)).unwrap();
    let a = Dataset::prepare(&c).unwrap();
    let path = a.cache_path().to_path_buf();
    let (train, fp) = (a.train_token_ids().to_vec(), a.fingerprint());
    drop(a);
    let bytes = std::fs::read(&path).unwrap();

    // Truncated: `load` reports it, naming the file; `prepare` rebuilds it.
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let e = Dataset::load(&c, &corpus).unwrap_err().to_string();
    assert!(
        e.contains(path.to_str().unwrap()) && e.contains("truncated"),
        "{e}"
    );
    let r = Dataset::prepare(&c).unwrap();
    assert!(
        matches!(r.cache_outcome(), CacheOutcome::Rebuilt { reason } if reason.contains("truncated"))
    );
    assert_eq!(r.train_token_ids(), train);
    drop(r);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);

    // Written by another tokenizer (same key, forged): a mismatch naming both.
    let forged = cache::TokenFile {
        meta: "{}".into(),
        sections: vec![vec![1, 2], vec![3]],
    };
    cache::write_token_cache(&path, "bpe-300-ffffffffffffffff", 300, &forged).unwrap();
    let e = Dataset::load(&c, &corpus).unwrap_err();
    assert!(matches!(e, DataError::CacheMismatch { .. }), "{e}");
    let e = e.to_string();
    assert!(e.contains(path.to_str().unwrap()) && e.contains(&fp), "{e}");

    // Not prepared at all.
    let other = cfg(
        CorpusSpec::Dir(DirSpec::new(&dir)),
        TokenizerSpec::Bpe { vocab_size: 300 },
        &cache,
    );
    let e = Dataset::load(&other, &corpus).unwrap_err().to_string();
    assert!(
        e.contains("not prepared") && e.contains("algoprog data prepare"),
        "{e}"
    );
}

#[test]
fn corpus_spec_toml_shapes() {
    let c: DataConfig = toml::from_str("corpus = \"embedded\"").unwrap();
    assert_eq!(c.corpus, CorpusSpec::Embedded);
    let c: DataConfig = toml::from_str(
        "corpus = { c4 = { shards = 8, max_chars = 6_000_000_000, offline = true } }",
    )
    .unwrap();
    assert_eq!(
        c.corpus,
        CorpusSpec::C4(C4Spec {
            shards: 8,
            max_chars: Some(6_000_000_000),
            offline: true,
            ..C4Spec::default()
        })
    );
    let c: DataConfig = toml::from_str("[corpus.c4]\n").unwrap();
    assert_eq!(c.corpus, CorpusSpec::C4(C4Spec::default()));
    let c: DataConfig =
        toml::from_str("corpus = { dir = { path = \"/data/x\", text_field = \"body\" } }").unwrap();
    assert_eq!(
        c.corpus,
        CorpusSpec::Dir(DirSpec {
            path: "/data/x".into(),
            text_field: "body".into(),
            max_chars: None
        })
    );
    let back: DataConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
    let e = toml::from_str::<DataConfig>("corpus = { c4 = { shard = 2 } }")
        .unwrap_err()
        .to_string();
    assert!(e.contains("shard") && e.contains("shards"), "{e}");
    let e = toml::from_str::<DataConfig>("corpus = { dir = { text_field = \"t\" } }")
        .unwrap_err()
        .to_string();
    assert!(e.contains("path"), "{e}");
    let e = toml::from_str::<DataConfig>("corpus = { web = {} }")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("web") && e.contains("c4") && e.contains("dir"),
        "{e}"
    );
}
