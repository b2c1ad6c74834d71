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

/// The order in which [`TrainBatches`] draws training windows.
///
/// - `shuffled` (the default): independent sequences in a fresh seeded
///   permutation each epoch; what Transformer training uses.
/// - `contiguous`: the training stream is cut into `batch_size` equal
///   streams (AWD-LSTM's `batchify`) and row i of every batch reads stream i
///   in order, so row i of step k+1 continues exactly where row i of step k
///   ended. This is what a recurrent model that carries its state across
///   batches needs (the authors' LSTM runs, Melis et al., Merity et al.).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchOrder {
    /// A seeded permutation of the sequences per epoch.
    #[default]
    Shuffled,
    /// `batch_size` contiguous streams, one per batch row.
    Contiguous,
}

impl BatchOrder {
    /// Whether this is the default order (for `skip_serializing_if`).
    pub fn is_shuffled(&self) -> bool {
        *self == BatchOrder::Shuffled
    }
}

/// Offset (in tokens, `0..seq_len`) at which contiguous epoch `epoch` starts
/// reading its streams: 0 for epoch 0 (plain `batchify`), then a seeded draw
/// per epoch (ChaCha8 seeded with `seed` on stream `2⁶³ + epoch`, disjoint
/// from the permutations' streams) so that later epochs cut the text into
/// different windows instead of repeating the first epoch's exactly.
fn contiguous_offset(seed: u64, epoch: u64, seq_len: usize) -> usize {
    if epoch == 0 {
        return 0;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream((1u64 << 63) | epoch);
    ((rng.next_u64() as u128 * seq_len as u128) >> 64) as usize
}

/// Endless, deterministic stream of training batches, in one of two orders
/// ([`BatchOrder`]).
///
/// **Shuffled**: the sequence order is the concatenation of one permutation
/// per epoch (epoch `e` uses [`permutation`]`(n, seed, e)`), cut into batches
/// of `batch_size`; a batch may straddle two epochs, so every batch is full
/// and the first `n` sequences drawn are each sequence exactly once.
///
/// **Contiguous**: the `n` training tokens are cut into `batch_size` streams
/// of `L = ⌊n / batch_size⌋` tokens (the remainder is dropped); stream i is
/// `tokens[i·L .. (i+1)·L]`. Epoch `e` reads each stream from offset `o_e`
/// (see below) in `W = ⌊L / seq_len⌋ − 1` windows of `seq_len + 1` tokens at
/// stride `seq_len`: batch k of the epoch has as row i the window starting at
/// `i·L + o_e + k·seq_len`. So row i's next window starts at the target of
/// its last input token, and its first input token is the token right after
/// row i's previous last input token. After `W` batches the next epoch
/// starts; `o_0 = 0` and later epochs start at a seeded offset in
/// `0..seq_len`, so epochs see the text cut differently (W is the same for
/// every offset). At an epoch boundary row i jumps back to the start of its
/// stream: a model carrying state sees one batch whose carried state comes
/// from other text, once per epoch. Each batch is one micro-batch: with
/// gradient accumulation the micro-batches of a step are consecutive
/// batches of the streams. Needs `L ≥ 2·seq_len`.
#[derive(Clone, Debug)]
pub struct TrainBatches {
    tokens: TokenStream,
    seq_len: usize,
    batch_size: usize,
    seed: u64,
    order: BatchOrder,
    /// Sequences per epoch (shuffled: all windows; contiguous: `W · batch_size`).
    n_seq: usize,
    epoch: u64,
    perm: Vec<usize>,
    /// Shuffled: next index into `perm`; contiguous: next window of the epoch.
    pos: usize,
    batches: u64,
    /// Contiguous: tokens per stream, windows per epoch, the epoch's offset.
    stream_len: usize,
    windows: usize,
    offset: usize,
}

impl TrainBatches {
    pub(crate) fn new(tokens: TokenStream, seq_len: usize, batch_size: usize, seed: u64) -> Self {
        Self::with_order(tokens, seq_len, batch_size, seed, BatchOrder::Shuffled)
    }

    pub(crate) fn with_order(
        tokens: TokenStream,
        seq_len: usize,
        batch_size: usize,
        seed: u64,
        order: BatchOrder,
    ) -> Self {
        assert!(
            batch_size > 0,
            "train_batches: batch_size must be at least 1"
        );
        let (n_seq, perm, stream_len, windows) = match order {
            BatchOrder::Shuffled => {
                let n_seq = num_sequences(tokens.len(), seq_len);
                assert!(
                    n_seq > 0,
                    "train_batches: the training stream holds no sequence"
                );
                (n_seq, permutation(n_seq, seed, 0), 0, 0)
            }
            BatchOrder::Contiguous => {
                let stream_len = tokens.len() / batch_size;
                let windows = (stream_len / seq_len.max(1)).saturating_sub(1);
                assert!(
                    windows > 0,
                    "train_batches: contiguous order cuts {} training tokens into {batch_size} streams of {stream_len} tokens, \
                     fewer than 2 × seq_len = {}; use a smaller batch_size or seq_len, more data, or batch_order = \"shuffled\"",
                    tokens.len(),
                    2 * seq_len
                );
                (windows * batch_size, Vec::new(), stream_len, windows)
            }
        };
        TrainBatches {
            perm,
            tokens,
            seq_len,
            batch_size,
            seed,
            order,
            n_seq,
            epoch: 0,
            pos: 0,
            batches: 0,
            stream_len,
            windows,
            offset: 0,
        }
    }

    /// The batch order.
    pub fn order(&self) -> BatchOrder {
        self.order
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
        let (unit, per_epoch) = match self.order {
            BatchOrder::Shuffled => (self.batch_size as u128, self.n_seq as u128),
            BatchOrder::Contiguous => (1, self.windows as u128),
        };
        let total = self.pos as u128 + n as u128 * unit;
        let epochs = total / per_epoch;
        let pos = (total % per_epoch) as usize;
        if epochs > 0 {
            self.epoch += epochs as u64;
            match self.order {
                BatchOrder::Shuffled => self.perm = permutation(self.n_seq, self.seed, self.epoch),
                BatchOrder::Contiguous => {
                    self.offset = contiguous_offset(self.seed, self.epoch, self.seq_len)
                }
            }
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

    /// The next contiguous batch; moves to the next epoch after its last one,
    /// so [`TrainBatches::epoch`] names the epoch of the next batch.
    fn next_contiguous(&mut self) -> Batch {
        let sl = self.seq_len;
        let view = self.tokens.view();
        let mut inputs = Vec::with_capacity(self.batch_size * sl);
        let mut targets = Vec::with_capacity(self.batch_size * sl);
        for i in 0..self.batch_size {
            let start = i * self.stream_len + self.offset + self.pos * sl;
            let w = view.slice(start..start + sl + 1);
            w.slice(..sl).extend_into(&mut inputs);
            w.slice(1..).extend_into(&mut targets);
        }
        self.pos += 1;
        if self.pos == self.windows {
            self.epoch += 1;
            self.offset = contiguous_offset(self.seed, self.epoch, sl);
            self.pos = 0;
        }
        Batch {
            inputs,
            targets,
            batch_size: self.batch_size,
            seq_len: sl,
        }
    }
}

impl Iterator for TrainBatches {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        if self.order == BatchOrder::Contiguous {
            self.batches += 1;
            return Some(self.next_contiguous());
        }
        let idx: Vec<usize> = (0..self.batch_size).map(|_| self.next_index()).collect();
        self.batches += 1;
        Some(Batch::gather_view(self.tokens.view(), self.seq_len, &idx))
    }
    fn nth(&mut self, n: usize) -> Option<Batch> {
        self.skip_batches(n as u64);
        self.next()
    }
}
