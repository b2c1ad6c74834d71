//! Tests of the corpus, tokenizers, split, cache, batching and baselines.
//! Every cache lives in a temporary directory under Cargo's target dir.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use algoprog_data::cache::{read_token_cache, write_token_cache, TokenFile};
use algoprog_data::*;

fn tmp() -> tempfile::TempDir {
    tempfile::TempDir::new_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn docs() -> &'static Vec<Document> {
    static D: OnceLock<Vec<Document>> = OnceLock::new();
    D.get_or_init(|| embedded_documents().unwrap())
}

/// A slice of the embedded corpus: `n` documents spread over the books.
fn slice(n: usize) -> InMemoryCorpus {
    let d = docs();
    let step = d.len() / n;
    InMemoryCorpus::new(
        format!("slice-{n}"),
        (0..n).map(|i| d[i * step].clone()).collect(),
    )
}

fn cfg(tokenizer: TokenizerSpec, dir: &std::path::Path) -> DataConfig {
    DataConfig {
        tokenizer,
        cache_dir: Some(dir.to_path_buf()),
        ..DataConfig::default()
    }
}

fn small_cfg(tokenizer: TokenizerSpec, dir: &std::path::Path) -> DataConfig {
    DataConfig {
        seq_len: 32,
        val_tokens: 5_000,
        ..cfg(tokenizer, dir)
    }
}

/// The full embedded corpus under GPT-2, split with seed 0, cached in a shared dir.
fn gpt2_full() -> &'static Dataset {
    static D: OnceLock<(tempfile::TempDir, Dataset)> = OnceLock::new();
    &D.get_or_init(|| {
        let dir = tmp();
        let d = Dataset::prepare(&cfg(TokenizerSpec::Gpt2, dir.path())).unwrap();
        (dir, d)
    })
    .1
}

// ---------------------------------------------------------------- corpus

#[test]
fn embedded_corpus_has_the_documented_contents() {
    let d = docs();
    assert_eq!(d.len(), 341);
    let bytes: usize = d.iter().map(|x| x.text.len()).sum();
    assert_eq!(bytes, 11_389_957);
    assert_eq!(d[0].id, "austen-emma/000");
    assert!(d[0].text.starts_with("[Emma by Jane Austen 1816]"));
    let ids: HashSet<&str> = d.iter().map(|x| x.id.as_str()).collect();
    assert_eq!(ids.len(), 341, "document ids are unique");
    let books: HashSet<&str> = d.iter().map(|x| x.id.split('/').next().unwrap()).collect();
    assert_eq!(books.len(), 16);
    for x in d {
        assert!(
            x.text.len() >= 16 * 1024,
            "{} is only {} bytes",
            x.id,
            x.text.len()
        );
        assert!(
            !x.text.to_lowercase().contains("project gutenberg"),
            "{} keeps licence text",
            x.id
        );
        assert!(!x.text.contains('\r'));
    }
    // The Latin-1 file was decoded: Cæsar is spelt with U+00E6.
    assert!(d
        .iter()
        .any(|x| x.id.starts_with("shakespeare-caesar") && x.text.contains("C\u{e6}sar")));
}

// ---------------------------------------------------------------- tokenizers

#[test]
fn gpt2_known_ids_and_round_trip() {
    let t = Gpt2Tokenizer;
    assert_eq!(t.encode("Hello world"), vec![15496, 995]);
    assert_eq!(t.encode("Hello, world!"), vec![15496, 11, 995, 0]);
    assert_eq!(t.encode(" the"), vec![262]);
    assert_eq!(t.encode("The"), vec![464]);
    assert_eq!(t.encode("\n"), vec![198]);
    assert_eq!(t.vocab_size(), 50257);
    assert_eq!(t.end_of_text(), 50256);
    assert_eq!(t.decode(&[50256]), "<|endoftext|>");
    // Special-token text in documents is ordinary text, never id 50256.
    assert!(!t.encode("<|endoftext|>").contains(&50256));
    for s in [
        "Emma Woodhouse, handsome, clever, and rich",
        "naïve café — Cæsar 😀\n\n  x",
        "",
    ] {
        assert_eq!(t.decode(&t.encode(s)), s);
    }
    let text = &docs()[100].text;
    assert_eq!(t.decode(&t.encode(text)), *text);
}

fn small_bpe() -> &'static BpeTokenizer {
    static T: OnceLock<BpeTokenizer> = OnceLock::new();
    T.get_or_init(|| {
        BpeTokenizer::train(docs()[..10].iter().map(|d| d.text.as_str()), 512).unwrap()
    })
}

#[test]
fn bpe_trains_deterministically_and_round_trips() {
    let t = small_bpe();
    assert_eq!(t.vocab_size(), 512);
    assert_eq!(t.end_of_text(), 0);
    assert!(t.fingerprint().starts_with("bpe-512-"));
    let again = BpeTokenizer::train(docs()[..10].iter().map(|d| d.text.as_str()), 512).unwrap();
    assert_eq!(
        again.fingerprint(),
        t.fingerprint(),
        "same text, same merges"
    );
    assert_eq!(again.to_json().unwrap(), t.to_json().unwrap());
    let other = BpeTokenizer::train(docs()[10..20].iter().map(|d| d.text.as_str()), 512).unwrap();
    assert_ne!(other.fingerprint(), t.fingerprint());

    let tricky = [
        "Hello world",
        "naïve café — Cæsar 😀\n\n  x",
        "",
        "<|endoftext|> is plain text here",
        "I'm sure you'll see they've  gone;\t\n\n   1:1 In 1611, 22:21.  \n",
        "   leading and trailing   ",
    ];
    for s in tricky {
        assert_eq!(t.decode(&t.encode(s)), s, "round trip of {s:?}");
        if !s.contains(END_OF_TEXT) {
            assert_eq!(
                t.encode(s),
                t.encode_reference(s),
                "fast and reference encodings of {s:?}"
            );
        }
    }
    for d in &docs()[200..204] {
        assert_eq!(t.encode(&d.text), t.encode_reference(&d.text), "{}", d.id);
    }
    assert_eq!(t.decode(&[0]), "<|endoftext|>");
    // Only the reference (the `tokenizers` library) treats the text as the special token.
    assert_eq!(t.encode_reference(END_OF_TEXT), vec![0]);
    assert!(!t.encode(END_OF_TEXT).contains(&0));
    // Every byte is a token, so unseen characters still encode.
    assert!(t
        .encode("\u{4e2d}")
        .iter()
        .all(|&id| (1..=256).contains(&id)));
    // Merges compress text seen in training: fewer tokens than bytes.
    let text = &docs()[3].text;
    let ids = t.encode(text);
    assert_eq!(t.decode(&ids), *text);
    assert!(
        ids.len() * 2 < text.len(),
        "{} tokens for {} bytes",
        ids.len(),
        text.len()
    );
    assert!(ids.iter().all(|&i| i < 512));

    let dir = tmp();
    let path = dir.path().join("tokenizer.json");
    t.save(&path).unwrap();
    let loaded = BpeTokenizer::load(&path).unwrap();
    assert_eq!(loaded.fingerprint(), t.fingerprint());
    assert_eq!(loaded.encode(text), ids);
    std::fs::write(&path, "{not json").unwrap();
    let err = BpeTokenizer::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("tokenizer.json") && err.contains("delete the file"),
        "{err}"
    );
}

#[test]
fn tokenizer_spec_strings() {
    assert_eq!(
        "gpt2".parse::<TokenizerSpec>().unwrap(),
        TokenizerSpec::Gpt2
    );
    assert_eq!(
        "bpe-4096".parse::<TokenizerSpec>().unwrap(),
        TokenizerSpec::Bpe { vocab_size: 4096 }
    );
    assert_eq!(
        TokenizerSpec::Bpe { vocab_size: 512 }.to_string(),
        "bpe-512"
    );
    assert_eq!(
        TokenizerSpec::default(),
        TokenizerSpec::Bpe { vocab_size: 4096 }
    );
    for bad in ["bpe-10", "bpe-", "bpe-x", "llama", ""] {
        let e = bad.parse::<TokenizerSpec>().unwrap_err().to_string();
        assert!(e.contains("expected \"gpt2\" or \"bpe-N\""), "{bad}: {e}");
    }
}

#[test]
fn data_config_toml() {
    let c: DataConfig = toml::from_str("tokenizer = \"gpt2\"\nseq_len = 64").unwrap();
    assert_eq!(c.tokenizer, TokenizerSpec::Gpt2);
    assert_eq!(c.seq_len, 64);
    assert_eq!(c.val_tokens, 100_000);
    assert_eq!(c.corpus, CorpusSpec::Embedded);
    let d: DataConfig = toml::from_str("").unwrap();
    assert_eq!(d, DataConfig::default());
    let text = toml::to_string(&DataConfig {
        max_train_tokens: Some(5000),
        ..DataConfig::default()
    })
    .unwrap();
    assert!(
        text.contains("tokenizer = \"bpe-4096\"") && text.contains("corpus = \"embedded\""),
        "{text}"
    );
    let back: DataConfig = toml::from_str(&text).unwrap();
    assert_eq!(back.max_train_tokens, Some(5000));

    let e = toml::from_str::<DataConfig>("seq_lenn = 3")
        .unwrap_err()
        .to_string();
    assert!(e.contains("seq_lenn"), "{e}");
    let e = toml::from_str::<DataConfig>("tokenizer = \"bpe-3\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("bpe-3") && e.contains("bpe-4096"), "{e}");
    let e = toml::from_str::<DataConfig>("corpus = \"c5\"")
        .unwrap_err()
        .to_string();
    assert!(e.contains("c5") && e.contains("embedded"), "{e}");
}

// ---------------------------------------------------------------- split

#[test]
fn gpt2_split_of_the_embedded_corpus() {
    let d = gpt2_full();
    assert_eq!(d.vocab_size(), 50257);
    assert!(d.val_tokens() >= 100_000, "{}", d.val_tokens());
    let val: HashSet<&String> = d.val_documents().iter().collect();
    let train: HashSet<&String> = d.train_documents().iter().collect();
    assert!(val.is_disjoint(&train));
    assert_eq!(val.len() + train.len(), 341);
    // Shortest prefix: dropping the last validation document falls below 100k.
    let v = d.val_split();
    let without_last: usize = v.tokens[..v.tokens.len() - 1].iter().sum();
    assert!(without_last < 100_000);
    assert_eq!(v.tokens.iter().sum::<usize>(), d.val_tokens());
    assert_eq!(
        d.train_tokens(),
        d.train_split().tokens.iter().sum::<usize>()
    );
    assert_eq!(d.num_train_sequences(), (d.train_tokens() - 1) / 128);
    assert_eq!(d.num_val_sequences(), (d.val_tokens() - 1) / 128);

    // The streams are exactly the documents' tokens + end-of-text, recomputed
    // independently: no validation text reaches the training stream.
    let by_id: HashMap<&str, &Document> = docs().iter().map(|x| (x.id.as_str(), x)).collect();
    let t = Gpt2Tokenizer;
    let rebuild = |ids: &[String]| -> Vec<u32> {
        let mut s = Vec::new();
        for id in ids {
            s.extend(t.encode(&by_id[id.as_str()].text));
            s.push(50256);
        }
        s
    };
    assert_eq!(rebuild(d.val_documents()), d.val_token_ids());
    assert_eq!(rebuild(d.train_documents()), d.train_token_ids());
}

#[test]
fn split_is_deterministic_and_seeded() {
    let a = gpt2_full();
    let dir = tmp();
    let b = Dataset::prepare(&cfg(TokenizerSpec::Gpt2, dir.path())).unwrap();
    assert_eq!(b.cache_outcome(), &CacheOutcome::Built, "fresh cache dir");
    assert_eq!(a.val_documents(), b.val_documents());
    assert_eq!(a.train_token_ids(), b.train_token_ids());
    let c = Dataset::prepare(&DataConfig {
        split_seed: 1,
        ..cfg(TokenizerSpec::Gpt2, dir.path())
    })
    .unwrap();
    assert_ne!(a.val_documents(), c.val_documents());
    assert!(c.val_tokens() >= 100_000);
    assert_eq!(permutation(10, 3, 0), permutation(10, 3, 0));
    assert_ne!(permutation(10, 3, 0), permutation(10, 4, 0));
    let mut p = permutation(1000, 7, 2);
    p.sort();
    assert_eq!(p, (0..1000).collect::<Vec<_>>());
}

#[test]
fn bpe_4096_on_the_embedded_corpus() {
    let dir = tmp();
    let d = Dataset::prepare(&cfg(TokenizerSpec::default(), dir.path())).unwrap();
    assert_eq!(d.vocab_size(), 4096);
    assert!(d.val_tokens() >= 100_000, "{}", d.val_tokens());
    // A 4096-id BPE is less compact than GPT-2, so the validation text is GPT-2's.
    assert_eq!(d.val_documents(), gpt2_full().val_documents());
    assert!(d.train_tokens() > gpt2_full().train_tokens());
    assert!(d.timings().bpe_train_s > 0.0);
    let tok_path = dir.path().join("tokenizers");
    assert_eq!(std::fs::read_dir(&tok_path).unwrap().count(), 1);
    // Second preparation: tokenizer and tokens come from the cache.
    let again = Dataset::prepare(&cfg(TokenizerSpec::default(), dir.path())).unwrap();
    assert_eq!(again.cache_outcome(), &CacheOutcome::Loaded);
    assert_eq!(again.timings().bpe_train_s, 0.0);
    assert_eq!(again.fingerprint(), d.fingerprint());
    assert_eq!(again.train_token_ids(), d.train_token_ids());
    // The fast encoder agrees with the `tokenizers` library on validation text.
    let bpe = BpeTokenizer::load(
        &std::fs::read_dir(&tok_path)
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
            .join("tokenizer.json"),
    )
    .unwrap();
    let by_id: HashMap<&str, &Document> = docs().iter().map(|x| (x.id.as_str(), x)).collect();
    for id in &d.val_documents()[..3] {
        let text = &by_id[id.as_str()].text;
        assert_eq!(bpe.encode(text), bpe.encode_reference(text), "{id}");
    }
    let u = d.unigram_entropy();
    assert!(u > 5.0 && u < (4096f64).ln(), "{u}");
}

#[test]
fn small_bpe_dataset_and_cap() {
    let dir = tmp();
    let corpus = slice(40);
    let c = small_cfg(TokenizerSpec::Bpe { vocab_size: 512 }, dir.path());
    let d = Dataset::prepare_corpus(&c, &corpus).unwrap();
    assert_eq!(d.vocab_size(), 512);
    assert!(d.val_tokens() >= 5_000);
    assert!(d.train_token_ids().iter().all(|t| t < 512));
    // The BPE saw training documents only: retraining on them gives the same merges.
    let all = corpus.documents().unwrap();
    let by_id: HashMap<&str, &Document> = all.iter().map(|x| (x.id.as_str(), x)).collect();
    let retrained = BpeTokenizer::train(
        d.train_documents()
            .iter()
            .map(|id| by_id[id.as_str()].text.as_str()),
        512,
    )
    .unwrap();
    assert_eq!(retrained.fingerprint(), d.fingerprint());
    let capped = Dataset::prepare_corpus(
        &DataConfig {
            max_train_tokens: Some(20_000),
            ..c.clone()
        },
        &corpus,
    )
    .unwrap();
    assert_eq!(
        capped.cache_outcome(),
        &CacheOutcome::Loaded,
        "the cap reuses the cache"
    );
    assert_eq!(capped.train_tokens(), 20_000);
    assert_eq!(
        capped.train_token_ids(),
        d.train_token_ids().slice(..20_000)
    );
    assert_eq!(capped.fingerprint(), d.fingerprint());
    assert_eq!(capped.val_token_ids(), d.val_token_ids());
    let used = capped.train_documents_used();
    let before: usize = d.train_split().tokens[..used - 1].iter().sum();
    let through: usize = d.train_split().tokens[..used].iter().sum();
    assert!(before < 20_000 && through >= 20_000);
    assert_eq!(capped.num_train_sequences(), 19_999 / 32);
}

// ---------------------------------------------------------------- batching

fn small_gpt2() -> &'static Dataset {
    static D: OnceLock<(tempfile::TempDir, Dataset)> = OnceLock::new();
    &D.get_or_init(|| {
        let dir = tmp();
        let d = Dataset::prepare_corpus(&small_cfg(TokenizerSpec::Gpt2, dir.path()), &slice(12))
            .unwrap();
        (dir, d)
    })
    .1
}

#[test]
fn batches_shift_targets_and_follow_the_seed() {
    let d = small_gpt2();
    let l = d.seq_len();
    let b = d.train_batches(8, 42).next().unwrap();
    assert_eq!((b.batch_size, b.seq_len), (8, 32));
    assert_eq!(b.inputs.len(), 8 * 32);
    assert_eq!(b.targets.len(), 8 * 32);
    let stream = d.train_token_ids();
    for r in 0..8 {
        let inp = &b.inputs[r * l..(r + 1) * l];
        let tgt = &b.targets[r * l..(r + 1) * l];
        assert_eq!(&inp[1..], &tgt[..l - 1]);
        // Each row is a window at a multiple of seq_len, and its targets continue it.
        let s = (0..d.num_train_sequences())
            .find(|&s| stream.slice(s * l..s * l + l) == inp)
            .unwrap();
        assert_eq!(stream.slice(s * l + 1..s * l + l + 1), tgt);
    }
    let first: Vec<Batch> = d.train_batches(8, 42).take(5).collect();
    let again: Vec<Batch> = d.train_batches(8, 42).take(5).collect();
    assert_eq!(first, again);
    let other: Vec<Batch> = d.train_batches(8, 43).take(5).collect();
    assert_ne!(first, other);
}

#[test]
fn an_epoch_covers_every_sequence_once() {
    let d = small_gpt2();
    let l = d.seq_len();
    let n = d.num_train_sequences();
    let b = 7; // not a divisor of n: batches straddle epochs
    assert_ne!(n % b, 0);
    let stream = d.train_token_ids();
    let mut all: Vec<Vec<u32>> = (0..n)
        .map(|s| stream.slice(s * l..s * l + l).to_vec())
        .collect();
    all.sort();
    let mut it = d.train_batches(b, 5);
    let mut rows: Vec<Vec<u32>> = Vec::new();
    while rows.len() < 2 * n {
        let batch = it.next().unwrap();
        assert_eq!(batch.batch_size, b);
        rows.extend(batch.inputs.chunks(l).map(|c| c.to_vec()));
    }
    for epoch in 0..2 {
        let mut got = rows[epoch * n..(epoch + 1) * n].to_vec();
        got.sort();
        assert_eq!(got, all, "epoch {epoch}");
    }
    assert_ne!(rows[..n], rows[n..2 * n], "each epoch has a fresh order");
    assert_eq!(it.epoch(), 2);
    // Skipping batches resumes the same stream, across an epoch boundary too.
    let k = n / b + 3;
    let mut fresh = d.train_batches(b, 5);
    let expected: Vec<Batch> = d.train_batches(b, 5).skip(k).take(2).collect();
    fresh.skip_batches(k as u64);
    assert_eq!(fresh.next().unwrap(), expected[0]);
    assert_eq!(d.train_batches(b, 5).nth(k + 1).unwrap(), expected[1]);
}

#[test]
fn contiguous_batches_continue_each_row_and_wrap_epochs() {
    let d = small_gpt2();
    let l = d.seq_len();
    let b = 5;
    let stream = d.train_token_ids();
    let n = d.train_tokens();
    let stream_len = n / b;
    let w = stream_len / l - 1;
    let mut it = d.train_batches_ordered(b, 9, BatchOrder::Contiguous);
    assert_eq!(it.sequences_per_epoch(), w * b);
    let batches: Vec<Batch> = (0..2 * w + 3).map(|_| it.next().unwrap()).collect();
    // Epoch 0 is plain batchify: row i of batch k is the window at i·L + k·l.
    for (k, batch) in batches[..w].iter().enumerate() {
        for i in 0..b {
            let s = i * stream_len + k * l;
            assert_eq!(&batch.inputs[i * l..(i + 1) * l], stream.slice(s..s + l));
            assert_eq!(
                &batch.targets[i * l..(i + 1) * l],
                stream.slice(s + 1..s + l + 1)
            );
        }
    }
    // Within an epoch, row i of step k+1 starts at the token right after row
    // i's last input token of step k (its last target).
    for e in 0..2 {
        for k in e * w..(e + 1) * w - 1 {
            for i in 0..b {
                let last = batches[k].targets[(i + 1) * l - 1];
                assert_eq!(
                    batches[k + 1].inputs[i * l],
                    last,
                    "epoch {e} step {k} row {i}"
                );
            }
        }
    }
    // Epoch 1 starts each stream again at a seeded offset below seq_len, in
    // stream i's own text, and keeps continuing it.
    let first1 = &batches[w];
    let off = (0..l)
        .find(|&o| stream.slice(o..o + l).to_vec() == first1.inputs[..l])
        .expect("epoch 1 row 0 starts within the first seq_len tokens");
    for (k, batch) in batches[w..2 * w].iter().enumerate() {
        for i in 0..b {
            let s = i * stream_len + off + k * l;
            assert_eq!(&batch.inputs[i * l..(i + 1) * l], stream.slice(s..s + l));
        }
    }
    // Epoch accounting: W batches per epoch, the epoch of the next batch.
    let mut acc = d.train_batches_ordered(b, 9, BatchOrder::Contiguous);
    for _ in 0..w - 1 {
        acc.next();
    }
    assert_eq!(acc.epoch(), 0);
    acc.next();
    assert_eq!((acc.epoch(), acc.batches_done()), (1, w as u64));
    assert_eq!(it.epoch(), 2);
    // A different seed changes only the later epochs' offsets.
    let other: Vec<Batch> = d
        .train_batches_ordered(b, 10, BatchOrder::Contiguous)
        .take(w)
        .collect();
    assert_eq!(other[..], batches[..w]);
    // Skipping lands on the same windows, within an epoch and across boundaries.
    for k in [0, 3, w - 1, w, w + 2, 2 * w] {
        let mut fresh = d.train_batches_ordered(b, 9, BatchOrder::Contiguous);
        fresh.skip_batches(k as u64);
        assert_eq!(fresh.batches_done(), k as u64);
        assert_eq!(fresh.epoch(), (k / w) as u64, "skip {k}");
        assert_eq!(fresh.next().unwrap(), batches[k], "skip {k}");
        assert_eq!(fresh.next().unwrap(), batches[k + 1], "skip {k} then one");
        let mut two = d.train_batches_ordered(b, 9, BatchOrder::Contiguous);
        two.next();
        assert_eq!(two.nth(k).unwrap(), batches[k + 1], "nth {k}");
    }
}

#[test]
fn validation_batches_are_fixed_and_complete() {
    let d = small_gpt2();
    let l = d.seq_len();
    let n = d.num_val_sequences();
    let vb = d.val_batches(16);
    assert_eq!(vb.len(), n.div_ceil(16));
    assert!(vb[..vb.len() - 1].iter().all(|b| b.batch_size == 16));
    assert_eq!(vb.last().unwrap().batch_size, n - 16 * (vb.len() - 1));
    let inputs: Vec<u32> = vb.iter().flat_map(|b| b.inputs.iter().copied()).collect();
    let targets: Vec<u32> = vb.iter().flat_map(|b| b.targets.iter().copied()).collect();
    assert_eq!(d.val_token_ids().slice(..n * l), inputs);
    assert_eq!(d.val_token_ids().slice(1..n * l + 1), targets);
    assert_eq!(d.val_batches(16), vb);
}

// ---------------------------------------------------------------- cache

#[test]
fn cache_is_reused_and_damage_is_detected() {
    let dir = tmp();
    let c = small_cfg(TokenizerSpec::Gpt2, dir.path());
    let corpus = slice(12);
    let a = Dataset::prepare_corpus(&c, &corpus).unwrap();
    assert_eq!(a.cache_outcome(), &CacheOutcome::Built);
    let path = a.cache_path().to_path_buf();
    assert!(path.starts_with(dir.path()));
    // Datasets map the cache file; keep copies, since the damage below rewrites the
    // file in place (which a mapped reader must never see).
    let (a_train, a_val, a_docs) = (
        a.train_token_ids().to_vec(),
        a.val_token_ids().to_vec(),
        a.val_documents().to_vec(),
    );
    let (fp, n_tokens) = (a.fingerprint(), a.train_tokens() + a.val_tokens());
    drop(a);
    let b = Dataset::prepare_corpus(&c, &corpus).unwrap();
    assert_eq!(b.cache_outcome(), &CacheOutcome::Loaded);
    assert_eq!(b.train_token_ids(), a_train);
    assert_eq!(b.val_token_ids(), a_val);
    assert_eq!(b.val_documents(), &a_docs[..]);
    drop(b);
    // GPT-2 ids need 16 bits: header + metadata + 2 bytes per token.
    let len = std::fs::metadata(&path).unwrap().len() as usize;
    assert!(len > 2 * n_tokens && len < 4 * n_tokens);
    assert_eq!(TokenCache::open(&path, &fp, false).unwrap().width(), 2);

    // Truncated file.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    match read_token_cache(&path, &fp) {
        Err(DataError::CacheCorrupt { reason, .. }) => {
            assert!(reason.contains("truncated"), "{reason}")
        }
        other => panic!("expected a truncation error, got {other:?}"),
    }
    // Without the checksum too: the length check catches it.
    let e = TokenCache::open(&path, &fp, false).unwrap_err().to_string();
    assert!(
        e.contains("truncated") && e.contains(path.to_str().unwrap()),
        "{e}"
    );
    let r = Dataset::prepare_corpus(&c, &corpus).unwrap();
    assert!(
        matches!(r.cache_outcome(), CacheOutcome::Rebuilt { reason } if reason.contains("truncated"))
    );
    assert_eq!(r.train_token_ids(), a_train);
    drop(r);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "rebuilt byte for byte"
    );

    // Flipped token byte (the first byte after the 108-byte header).
    let mut bad = bytes.clone();
    bad[108] ^= 0x55;
    std::fs::write(&path, &bad).unwrap();
    let e = read_token_cache(&path, &fp).unwrap_err().to_string();
    assert!(
        e.contains("checksum") && e.contains(path.to_str().unwrap()),
        "{e}"
    );
    let r = Dataset::prepare_corpus(&c, &corpus).unwrap();
    assert!(
        matches!(r.cache_outcome(), CacheOutcome::Rebuilt { reason } if reason.contains("checksum"))
    );
    drop(r);

    // Same key, other tokenizer's fingerprint in the header.
    let wrong = TokenFile {
        meta: "{}".into(),
        sections: vec![vec![1, 2, 3], vec![4, 5]],
    };
    write_token_cache(&path, "bpe-512-0000000000000000", 512, &wrong).unwrap();
    let e = read_token_cache(&path, &fp).unwrap_err();
    assert!(matches!(e, DataError::CacheMismatch { .. }));
    let e = e.to_string();
    assert!(
        e.contains(path.to_str().unwrap()) && e.contains("gpt2-r50k_base"),
        "{e}"
    );
    let m = Dataset::prepare_corpus(&c, &corpus).unwrap();
    assert!(
        matches!(m.cache_outcome(), CacheOutcome::Rebuilt { reason } if reason.contains("was written by tokenizer"))
    );
    assert_eq!(m.val_token_ids(), a_val);
    drop(m);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    // No temporary files are left behind.
    let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn cache_token_widths() {
    let dir = tmp();
    let p = dir.path().join("x.tok");
    let f = TokenFile {
        meta: "m".into(),
        sections: vec![vec![0, 65_535], vec![], vec![7]],
    };
    write_token_cache(&p, "fp", 65_536, &f).unwrap();
    assert_eq!(
        std::fs::metadata(&p).unwrap().len(),
        8 + 4 + 4 + 32 + 32 + 8 + 4 + 3 * 8 + 1 + 3 * 2
    );
    assert_eq!(read_token_cache(&p, "fp").unwrap(), f);
    let wide = TokenFile {
        meta: String::new(),
        sections: vec![vec![70_000, 3]],
    };
    write_token_cache(&p, "fp", 100_277, &wide).unwrap();
    assert_eq!(
        std::fs::metadata(&p).unwrap().len(),
        8 + 4 + 4 + 32 + 32 + 8 + 4 + 8 + 2 * 4
    );
    assert_eq!(read_token_cache(&p, "fp").unwrap(), wide);
    assert!(
        write_token_cache(&p, "fp", 512, &wide).is_err(),
        "id 70000 does not fit 16 bits"
    );
    std::fs::write(&p, b"short").unwrap();
    assert!(matches!(
        read_token_cache(&p, "fp"),
        Err(DataError::CacheCorrupt { .. })
    ));
}

#[test]
fn concurrent_preparations_share_one_cache() {
    let dir = tmp();
    let c = small_cfg(TokenizerSpec::Bpe { vocab_size: 300 }, dir.path());
    let corpus = slice(12);
    let results: Vec<Dataset> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|_| s.spawn(|| Dataset::prepare_corpus(&c, &corpus).unwrap()))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &results[1..] {
        assert_eq!(r.fingerprint(), results[0].fingerprint());
        assert_eq!(r.train_token_ids(), results[0].train_token_ids());
    }
    let after = Dataset::prepare_corpus(&c, &corpus).unwrap();
    assert_eq!(after.cache_outcome(), &CacheOutcome::Loaded);
    assert_eq!(after.train_token_ids(), results[0].train_token_ids());
}

// ---------------------------------------------------------------- errors

#[test]
fn bad_settings_name_the_key() {
    let dir = tmp();
    let e = Dataset::prepare(&DataConfig {
        seq_len: 0,
        ..cfg(TokenizerSpec::Gpt2, dir.path())
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("data.seq_len"), "{e}");
    let e = Dataset::prepare(&DataConfig {
        max_train_tokens: Some(10),
        ..cfg(TokenizerSpec::Gpt2, dir.path())
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("data.max_train_tokens"), "{e}");
    let e = Dataset::prepare_corpus(
        &DataConfig {
            val_tokens: 10_000_000,
            ..small_cfg(TokenizerSpec::Gpt2, dir.path())
        },
        &slice(12),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("data.val_tokens") && e.contains("lower val_tokens"),
        "{e}"
    );
    let one = InMemoryCorpus::new("one", vec![docs()[0].clone()]);
    let e = Dataset::prepare_corpus(&small_cfg(TokenizerSpec::Gpt2, dir.path()), &one)
        .unwrap_err()
        .to_string();
    assert!(e.contains("at least 2"), "{e}");
}

// ---------------------------------------------------------------- baselines

#[test]
fn unigram_entropies_by_hand() {
    // train counts over V = 4: [2, 1, 1, 0], N = 4, so p = (c + 1) / 8.
    let train = [0, 0, 1, 2];
    let eval = [0, 1, 3];
    let expected = -((3.0f64 / 8.0).ln() + (2.0f64 / 8.0).ln() + (1.0f64 / 8.0).ln()) / 3.0;
    assert!((unigram_cross_entropy(&train, &eval, 4) - expected).abs() < 1e-12);
    assert!((unigram_cross_entropy(&train, &eval, 4) - 1.4821883853).abs() < 1e-9);
    // Plain entropy of [1/2, 1/4, 1/4] = 1.5 ln 2.
    assert!((unigram_entropy(&train, 4) - 1.5 * 2f64.ln()).abs() < 1e-12);
    assert_eq!(unigram_entropy(&[], 4), 0.0);
    assert_eq!(unigram_entropy(&[3, 3, 3], 4), 0.0);
    // Uniform add-one model when training is empty: ln V.
    assert!((unigram_cross_entropy(&[], &[1, 2], 4) - 4f64.ln()).abs() < 1e-12);
}

#[test]
fn dataset_unigram_baseline_matches_its_definition() {
    let d = gpt2_full();
    let n = d.num_val_sequences() * d.seq_len();
    let targets = d.val_token_ids().slice(1..=n).to_vec();
    let train = d.train_token_ids().to_vec();
    let expected = unigram_cross_entropy(&train, &targets, 50257);
    assert!((d.unigram_entropy() - expected).abs() < 1e-12);
    assert!((d.train_unigram_entropy() - unigram_entropy(&train, 50257)).abs() < 1e-12);
    // Values on the embedded corpus (seed 0, GPT-2).
    assert!(
        (d.unigram_entropy() - 6.7643).abs() < 1e-3,
        "{}",
        d.unigram_entropy()
    );
    assert!(
        (d.train_unigram_entropy() - 6.6484).abs() < 1e-3,
        "{}",
        d.train_unigram_entropy()
    );
}
