//! Sequences, batches and seeded permutations.

use std::sync::Arc;

use crate::cache::{TokenCache, TokenView};

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A batch of sequences, row-major `(batch_size, seq_len)`.
/// `targets[r][i]` is the token after `inputs[r][i]` in the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// Input ids, `batch_size * seq_len`, row-major.
    pub inputs: Vec<u32>,
    /// Target ids (inputs shifted by one token), same shape.
    pub targets: Vec<u32>,
    /// Number of rows.
    pub batch_size: usize,
    /// Tokens per row.
    pub seq_len: usize,
}

impl Batch {
    /// Gathers sequences `idx` of a token stream: sequence `s` is the window
    /// `tokens[s·seq_len ..= s·seq_len + seq_len]` (seq_len + 1 tokens).
    pub fn gather(tokens: &[u32], seq_len: usize, idx: &[usize]) -> Batch {
        let mut inputs = Vec::with_capacity(idx.len() * seq_len);
        let mut targets = Vec::with_capacity(idx.len() * seq_len);
        for &s in idx {
            let w = &tokens[s * seq_len..s * seq_len + seq_len + 1];
            inputs.extend_from_slice(&w[..seq_len]);
            targets.extend_from_slice(&w[1..]);
        }
        Batch {
            inputs,
            targets,
            batch_size: idx.len(),
            seq_len,
        }
    }
}

impl Batch {
    /// [`Batch::gather`] from a `u16`/`u32` token view.
    pub fn gather_view(tokens: TokenView<'_>, seq_len: usize, idx: &[usize]) -> Batch {
        let mut inputs = Vec::with_capacity(idx.len() * seq_len);
        let mut targets = Vec::with_capacity(idx.len() * seq_len);
        for &s in idx {
            let w = tokens.slice(s * seq_len..s * seq_len + seq_len + 1);
            w.slice(..seq_len).extend_into(&mut inputs);
            w.slice(1..).extend_into(&mut targets);
        }
        Batch {
            inputs,
            targets,
            batch_size: idx.len(),
            seq_len,
        }
    }
}

/// A prefix of one section of a memory-mapped token cache; cheap to clone.
#[derive(Clone, Debug)]
pub struct TokenStream {
    cache: Arc<TokenCache>,
    section: usize,
    len: usize,
}

impl TokenStream {
    /// The first `len` tokens of section `section` of `cache`.
    pub fn new(cache: Arc<TokenCache>, section: usize, len: usize) -> Self {
        assert!(
            len <= cache.section(section).len(),
            "token stream longer than its section"
        );
        TokenStream {
            cache,
            section,
            len,
        }
    }

    /// The tokens.
    pub fn view(&self) -> TokenView<'_> {
        self.cache.section(self.section).slice(..self.len)
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the stream is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Number of windows of `seq_len + 1` tokens at stride `seq_len` in `n` tokens.
pub fn num_sequences(n: usize, seq_len: usize) -> usize {
    if n == 0 {
        0
    } else {
        (n - 1) / seq_len
    }
}

/// A permutation of `0..n` from ChaCha8 seeded with `seed` on stream `stream`,
/// by Fisher–Yates with indices `⌊u64 · (i+1) / 2⁶⁴⌋`. Written out here (not
/// `rand`'s `shuffle`) so splits and batch orders stay fixed across `rand` versions.
pub fn permutation(n: usize, seed: u64, stream: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = ((rng.next_u64() as u128 * (i as u128 + 1)) >> 64) as usize;
        p.swap(i, j);
    }
    p
}

/// Endless, deterministic stream of training batches.
///
/// The sequence order is the concatenation of one permutation per epoch
/// (epoch `e` uses [`permutation`]`(n, seed, e)`), cut into batches of
/// `batch_size`; a batch may straddle two epochs, so every batch is full and
/// the first `n` sequences drawn are each sequence exactly once.
#[derive(Clone, Debug)]
pub struct TrainBatches {
    tokens: TokenStream,
    seq_len: usize,
    batch_size: usize,
    seed: u64,
    n_seq: usize,
    epoch: u64,
    perm: Vec<usize>,
    pos: usize,
    batches: u64,
}

impl TrainBatches {
    pub(crate) fn new(tokens: TokenStream, seq_len: usize, batch_size: usize, seed: u64) -> Self {
        assert!(
            batch_size > 0,
            "train_batches: batch_size must be at least 1"
        );
        let n_seq = num_sequences(tokens.len(), seq_len);
        assert!(
            n_seq > 0,
            "train_batches: the training stream holds no sequence"
        );
        TrainBatches {
            perm: permutation(n_seq, seed, 0),
            tokens,
            seq_len,
            batch_size,
            seed,
            n_seq,
            epoch: 0,
            pos: 0,
            batches: 0,
        }
    }

    /// The epoch the next sequence comes from (0-based).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Batches produced so far (including skipped ones).
    pub fn batches_done(&self) -> u64 {
        self.batches
    }

    /// Sequences per epoch.
    pub fn sequences_per_epoch(&self) -> usize {
        self.n_seq
    }

    /// Skips `n` batches without gathering them (for resuming a run): the stream
    /// continues exactly as if those batches had been drawn.
    pub fn skip_batches(&mut self, n: u64) {
        let total = self.pos as u128 + n as u128 * self.batch_size as u128;
        let epochs = total / self.n_seq as u128;
        let pos = (total % self.n_seq as u128) as usize;
        if epochs > 0 {
            self.epoch += epochs as u64;
            self.perm = permutation(self.n_seq, self.seed, self.epoch);
        }
        self.pos = pos;
        self.batches += n;
    }

    fn next_index(&mut self) -> usize {
        if self.pos == self.n_seq {
            self.epoch += 1;
            self.perm = permutation(self.n_seq, self.seed, self.epoch);
            self.pos = 0;
        }
        let i = self.perm[self.pos];
        self.pos += 1;
        i
    }
}

impl Iterator for TrainBatches {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        let idx: Vec<usize> = (0..self.batch_size).map(|_| self.next_index()).collect();
        self.batches += 1;
        Some(Batch::gather_view(self.tokens.view(), self.seq_len, &idx))
    }
    fn nth(&mut self, n: usize) -> Option<Batch> {
        self.skip_batches(n as u64);
        self.next()
    }
}
