//! Output buffers for kernels that write every element before reading any.
//!
//! A fused op's output used to be `vec![0f32; n]`: a zero-filling pass over
//! memory the kernel then overwrites. On a d = 128 Transformer step with the
//! 4096-id BPE that fill (glibc's memset) took 15% of the step's time, as
//! much as a third of the matmul time. [`output`] hands out the buffer
//! without the fill.
//!
//! Every caller writes each element before the buffer is read (that is the
//! contract, checked where it is called). To keep that checked, tests call
//! [`poison_outputs`] first: from then on every [`output`] buffer starts as
//! NaN, so an element a kernel forgets to write reaches the compared result
//! as NaN and fails the test against the composite twin.

use std::sync::atomic::{AtomicBool, Ordering};

static POISON: AtomicBool = AtomicBool::new(false);

/// From now on, this process's [`output`] buffers start filled with NaN.
pub fn poison_outputs() {
    POISON.store(true, Ordering::Relaxed);
}

/// Whether [`poison_outputs`] was called.
pub fn poisoned() -> bool {
    POISON.load(Ordering::Relaxed)
}

/// A buffer of `n` f32 whose every element the caller writes before reading
/// any: uninitialised (NaN after [`poison_outputs`]). candle's own CPU
/// backend allocates its matmul and reduction outputs the same way.
#[allow(clippy::uninit_vec)] // the write-before-read contract above, tested by poisoning
pub fn output(n: usize) -> Vec<f32> {
    if poisoned() {
        return vec![f32::NAN; n];
    }
    let mut v = Vec::with_capacity(n);
    // SAFETY: the capacity is n, and every f32 bit pattern is a valid value;
    // the caller's contract (module docs) is that each element is written
    // before it is read, so no uninitialised value is ever observed.
    unsafe { v.set_len(n) };
    v
}

/// dst = src (equal lengths). A row of 16 floats (the models' head size) is
/// one inline vector move instead of a `memcpy` call, which costs more than
/// the copy at that size; other lengths go through `copy_from_slice`.
#[inline(always)]
pub fn copy_short(dst: &mut [f32], src: &[f32]) {
    assert_eq!(dst.len(), src.len(), "copy_short: lengths differ");
    match (
        <&mut [f32; 16]>::try_from(&mut *dst),
        <&[f32; 16]>::try_from(src),
    ) {
        (Ok(d), Ok(s)) => *d = *s,
        _ => dst.copy_from_slice(src),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn poisoned_buffers_are_nan_and_have_the_length_asked_for() {
        assert_eq!(super::output(5).len(), 5);
        super::poison_outputs();
        let b = super::output(7);
        assert_eq!(b.len(), 7);
        assert!(b.iter().all(|v| v.is_nan()));
    }

    #[test]
    fn copy_short_copies_every_length() {
        for n in [0usize, 1, 15, 16, 17, 33, 96, 130] {
            let src: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            let mut dst = vec![f32::NAN; n];
            super::copy_short(&mut dst, &src);
            assert_eq!(dst, src, "n = {n}");
        }
    }
}
