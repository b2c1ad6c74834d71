//! Process-wide settings a training binary applies once at start-up.

/// Keeps freed tensor buffers in the process instead of returning them to
/// the kernel, so the next step's buffers of the same sizes are reused
/// rather than page-faulted in afresh.
///
/// glibc serves allocations above `M_MMAP_THRESHOLD` (dynamic, 128 KiB at
/// start) with a fresh `mmap` each time, whose pages are zeroed by the
/// kernel on first touch; with candle's one-buffer-per-op style that
/// page-faulting was the largest single cost of a training step. This
/// raises the threshold to glibc's maximum (32 MiB) and stops trimming the
/// heap. Peak memory is unchanged in steady state (the same buffers are
/// reused). A no-op on other C libraries. Call it from `main`, before any
/// allocation-heavy work; it changes allocator policy only.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets allocator parameters; it is safe to call at
        // any time from one thread and is called here before worker threads start.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tuning_keeps_large_buffers_in_the_heap() {
        super::tune_allocator();
        // 24 MiB: above the threshold glibc adapts to by default after a free
        // of the same size, below the tuned 32 MiB
        // after tuning, a 24 MiB buffer freed and allocated again reuses the
        // same heap memory, so the second allocation takes no fresh pages
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        {
            fn minor_faults() -> i64 {
                let mut u: libc::rusage = unsafe { std::mem::zeroed() };
                unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) };
                u.ru_minflt
            }
            let n = 6 << 20; // 24 MiB of f32
            let a = vec![1f32; n];
            drop(std::hint::black_box(a));
            let before = minor_faults();
            let b = vec![2f32; n];
            let faults = minor_faults() - before;
            assert_eq!(std::hint::black_box(b)[n - 1], 2.0);
            // 24 MiB of fresh pages would be 6144 faults
            assert!(faults < 256, "{faults} page faults re-allocating a freed 24 MiB buffer");
        }
    }
}
