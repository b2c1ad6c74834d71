//! Unigram baselines (natural logarithms, nats per token).

/// Counts of each id in `0..vocab_size` (ids ≥ `vocab_size` panic).
pub fn counts(tokens: &[u32], vocab_size: usize) -> Vec<u64> {
    let mut c = vec![0u64; vocab_size];
    for &t in tokens {
        c[t as usize] += 1;
    }
    c
}

/// Plain (maximum-likelihood) entropy of a token list:
/// `H = −Σ_t (c_t/N) ln(c_t/N)` over ids with `c_t > 0`. Zero for an empty list.
pub fn unigram_entropy(tokens: &[u32], vocab_size: usize) -> f64 {
    let c = counts(tokens, vocab_size);
    let n = tokens.len() as f64;
    if n == 0.0 {
        return 0.0;
    }
    c.iter()
        .filter(|&&k| k > 0)
        .map(|&k| {
            let p = k as f64 / n;
            -p * p.ln()
        })
        .sum()
}

/// Cross-entropy of `eval` under the add-one-smoothed unigram model of `train`:
/// `p(t) = (c_t + 1) / (N + V)` with `c_t` the count of `t` in `train`,
/// `N = train.len()`, `V = vocab_size`; returns `−(1/|eval|) Σ_{t ∈ eval} ln p(t)`.
/// Zero for an empty `eval`.
pub fn unigram_cross_entropy(train: &[u32], eval: &[u32], vocab_size: usize) -> f64 {
    if eval.is_empty() {
        return 0.0;
    }
    let c = counts(train, vocab_size);
    let denom = (train.len() + vocab_size) as f64;
    let total: f64 = eval
        .iter()
        .map(|&t| -((c[t as usize] + 1) as f64 / denom).ln())
        .sum();
    total / eval.len() as f64
}

/// Counts of each id in `0..vocab_size` from an iterator of ids.
pub(crate) fn counts_iter(tokens: impl Iterator<Item = u32>, vocab_size: usize) -> Vec<u64> {
    let mut c = vec![0u64; vocab_size];
    for t in tokens {
        c[t as usize] += 1;
    }
    c
}

/// [`unigram_entropy`] from counts over `n` tokens.
pub(crate) fn entropy_from_counts(c: &[u64], n: usize) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let n = n as f64;
    c.iter()
        .filter(|&&k| k > 0)
        .map(|&k| {
            let p = k as f64 / n;
            -p * p.ln()
        })
        .sum()
}

/// [`unigram_cross_entropy`] from the training counts over `n_train` tokens.
pub(crate) fn cross_entropy_from_counts(
    c: &[u64],
    n_train: usize,
    eval: impl Iterator<Item = u32>,
    vocab_size: usize,
) -> f64 {
    let denom = (n_train + vocab_size) as f64;
    let mut total = 0.0;
    let mut n = 0usize;
    for t in eval {
        total += -((c[t as usize] + 1) as f64 / denom).ln();
        n += 1;
    }
    if n == 0 {
        0.0
    } else {
        total / n as f64
    }
}
