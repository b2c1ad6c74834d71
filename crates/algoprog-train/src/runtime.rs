//! Process-wide settings a training binary applies once at start-up: the
//! global allocator it declares ([`MiMalloc`]), [`tune`] (=
//! [`tune_allocator`] + [`tune_thread_pools`]) first thing in `main`; and
//! [`adopt_current_thread`], which the trainer applies on each thread that
//! trains (its own rayon pool, and subnormals flushed to zero:
//! [`flush_denormals`]).

use std::cell::OnceCell;

/// The global allocator algoprog's binaries (the CLI, the benchmarks, the
/// examples) declare, and the one to declare in a research binary that
/// trains through this crate:
///
/// ```ignore
/// #[global_allocator]
/// static ALLOC: algoprog_train::runtime::MiMalloc = algoprog_train::runtime::MiMalloc;
/// ```
///
/// then call [`tune`] first thing in `main`. (A library cannot choose the
/// allocator; without the declaration training runs on the system's, with
/// the same results, more slowly.)
///
/// Why: candle allocates a fresh buffer per op, so a step allocates and
/// frees tens of MiB of activations, each written once and read once. Two
/// costs decide the step time at the studies' sizes: page faults on fresh
/// pages, and TLB misses (on a virtual machine each 4 KiB page costs a
/// two-level, guest and host, page walk). mimalloc reuses freed memory from
/// its own 2 MiB-aligned arenas, which the kernel backs with transparent
/// huge pages (mimalloc's `allow_thp`, on by default, works with the kernel's
/// usual `madvise` setting). glibc malloc does neither reliably: its
/// huge-page tunable (`glibc.malloc.hugetlb=1`) is read by a start-up check
/// that, in glibc 2.36 (Debian 12), compares the kernel's setting against an
/// unterminated buffer, so whether a process gets huge pages depends on a
/// stack byte that changes with address-space randomisation: measured, about
/// half the processes got 100 MiB of huge pages and half none. Measured on
/// this project's 2-core Intel VM, one thread, step times (glibc tuned by
/// [`tune_allocator`], with the tunable → mimalloc): laptop-modern-d80
/// 96–250 ms (bimodal) → 92–97 ms; laptop-retro-d80 130–159 → 76–78 ms;
/// laptop-lstm-d128 30–32 → 22–23 ms; retro-d64-bpe4096 157–298 →
/// 147–154 ms. Peak resident memory grows by 25–65 MiB (arenas are kept, not
/// returned: [`tune_allocator`]). Results are bit-identical: the allocator
/// decides where buffers are, not what the kernels compute.
pub use mimalloc::MiMalloc;

/// Applies [`tune_allocator`] and [`tune_thread_pools`]. Call it first thing
/// in `main`, before any tensor work and before other threads start.
pub fn tune() {
    tune_allocator();
    tune_thread_pools();
}

/// Makes candle's element-wise worker threads park soon after their work
/// runs out instead of spinning (25,000 spins by default), so they do not
/// take cycles from the matmul threads between element-wise ops; on a
/// 2-core machine this measured 6,194–6,377 against 5,556–6,609 tokens/s
/// (modern d128, bpe-4096). A value the user set in
/// `CANDLE_BARRIER_POOL_SPIN_LIMIT` is kept. Must run before candle's first
/// element-wise op, which reads the setting once.
pub fn tune_thread_pools() {
    const KEY: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(KEY).is_none() {
        // set before any other thread exists (see `tune`)
        std::env::set_var(KEY, "100");
    }
}

/// mimalloc's `mi_option_purge_delay` (index 15 of `mi_option_t` in
/// mimalloc 2 and 3; `libmimalloc-sys` names only some options). A test
/// checks the index against the option's environment variable,
/// `MIMALLOC_PURGE_DELAY`.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Keeps freed tensor buffers in the process instead of returning them to
/// the kernel, so the next step's buffers of the same sizes are reused
/// rather than page-faulted in afresh, whichever of the two allocators runs.
///
/// - mimalloc ([`MiMalloc`]): never purge freed memory (`purge_delay = -1`;
///   mimalloc's default returns it after a second, and the next step
///   faults it in again, on small pages until the kernel collapses them:
///   laptop-modern-d80 steps of 104–106 ms against 92–96 ms this way). A
///   value the user set in `MIMALLOC_PURGE_DELAY` is kept.
/// - glibc: glibc serves allocations above `M_MMAP_THRESHOLD` (dynamic,
///   128 KiB at start) with a fresh `mmap` each time, whose pages are zeroed
///   by the kernel on first touch; with candle's one-buffer-per-op style that
///   page-faulting was the largest single cost of a training step. This
///   raises the threshold to glibc's maximum (32 MiB) and stops trimming the
///   heap. A no-op on other C libraries.
///
/// Peak memory is unchanged in steady state (the same buffers are reused).
/// Call it from `main`, before any allocation-heavy work; it changes
/// allocator policy only.
pub fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one option; mimalloc reads options atomically.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
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

thread_local! {
    /// The rayon pool this thread works in since [`adopt_current_thread`].
    static OWN_POOL: OnceCell<Option<rayon::ThreadPool>> = const { OnceCell::new() };
}

/// Makes the calling thread worker 0 of a rayon pool of its own (once per
/// thread; a no-op on a thread that already works in a pool), with as many
/// threads as the global pool has (`RAYON_NUM_THREADS`, else the cores).
///
/// Every parallel kernel (candle's element-wise ops, the fused ops, gemm)
/// then starts on this thread instead of being handed to the global pool's
/// threads and waited for. Measured, why: at the study sizes a step is
/// hundreds of small ops, and each hand-off (wake a pool thread, block
/// until it is done) cost more than the op; and the local executor's runs,
/// two threads with `RAYON_NUM_THREADS=1`, shared the global pool's one
/// thread, so their kernels queued behind each other. With a pool per
/// training thread, each run's kernels run on its own thread (plus its own
/// helpers when it has more than one). `train_model` calls it.
///
/// Every thread of that pool, this one included, also flushes subnormal
/// floats to zero ([`flush_denormals`]) unless `ALGOPROG_KEEP_DENORMALS=1`.
pub fn adopt_current_thread() {
    if rayon::current_thread_index().is_some() {
        return;
    }
    let flush = !keep_denormals();
    OWN_POOL.with(|cell| {
        cell.get_or_init(|| {
            if flush {
                flush_denormals();
            }
            rayon::ThreadPoolBuilder::new()
                .num_threads(rayon::current_num_threads())
                .use_current_thread()
                .start_handler(move |_| {
                    if flush {
                        flush_denormals()
                    }
                })
                .build()
                .ok()
        });
    });
}

/// Whether `ALGOPROG_KEEP_DENORMALS=1` asks for IEEE subnormals.
pub fn keep_denormals() -> bool {
    std::env::var("ALGOPROG_KEEP_DENORMALS").is_ok_and(|v| v == "1")
}

/// Flushes the calling thread's subnormal floats to zero (FTZ and DAZ):
/// [`algoprog_kernels::math::flush_denormals`], where the reasons and the
/// measurement are written down.
pub use algoprog_kernels::math::flush_denormals;

#[cfg(test)]
mod tests {
    /// `MI_OPTION_PURGE_DELAY` is mimalloc's purge delay: this test binary,
    /// started again with `MIMALLOC_PURGE_DELAY=777` (which mimalloc reads at
    /// start-up), reads 777 at that index; and tuning sets it to -1 (never
    /// purge) unless the user set the variable.
    #[test]
    fn tuning_sets_mimallocs_purge_delay_to_never() {
        const NAME: &str = "runtime::tests::tuning_sets_mimallocs_purge_delay_to_never";
        let read = || unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        if let Ok(want) = std::env::var("ALGOPROG_TEST_PURGE_DELAY") {
            assert_eq!(
                read().to_string(),
                want,
                "index {}",
                super::MI_OPTION_PURGE_DELAY
            );
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([NAME, "--exact", "--test-threads=1"])
            .env("MIMALLOC_PURGE_DELAY", "777")
            .env("ALGOPROG_TEST_PURGE_DELAY", "777")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("1 passed"), "the child ran the test: {text}");
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            super::tune_allocator();
            assert_eq!(read(), -1);
        }
    }

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
            assert!(
                faults < 256,
                "{faults} page faults re-allocating a freed 24 MiB buffer"
            );
        }
    }

    /// 1e-30 · 1e-10 = 1e-40 is subnormal: a fresh thread keeps it, an
    /// adopted thread and every worker of its pool flush it to zero.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn adopted_threads_flush_subnormals_to_zero() {
        if super::keep_denormals() {
            eprintln!("ALGOPROG_KEEP_DENORMALS=1: nothing to check");
            return;
        }
        fn tiny() -> f32 {
            std::hint::black_box(1e-30f32) * std::hint::black_box(1e-10f32)
        }
        std::thread::spawn(|| {
            assert!(tiny() > 0.0, "IEEE subnormal before adoption");
            super::adopt_current_thread();
            assert_eq!(tiny(), 0.0);
            // once on every thread of the pool
            let on_workers: Vec<f32> = rayon::broadcast(|_| tiny());
            assert_eq!(on_workers.len(), rayon::current_num_threads());
            assert!(on_workers.iter().all(|&x| x == 0.0), "{on_workers:?}");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn an_adopted_thread_runs_its_parallel_work_itself() {
        std::thread::spawn(|| {
            assert_eq!(rayon::current_thread_index(), None);
            super::adopt_current_thread();
            // worker 0 of its own pool, of the global pool's size
            assert_eq!(rayon::current_thread_index(), Some(0));
            let global = rayon::ThreadPoolBuilder::new()
                .build()
                .unwrap()
                .current_num_threads();
            assert_eq!(rayon::current_num_threads(), global);
            // a second call keeps the same pool, and parallel work still runs
            super::adopt_current_thread();
            use rayon::prelude::*;
            let s: u64 = (0..1000u64).into_par_iter().sum();
            assert_eq!(s, 499_500);
        })
        .join()
        .unwrap();
    }
}
