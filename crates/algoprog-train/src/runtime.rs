//! Process-wide settings a training binary applies once at start-up:
//! [`use_huge_pages`] (first, since it may restart the process), [`tune`]
//! (= [`tune_allocator`] + [`tune_thread_pools`]); and
//! [`adopt_current_thread`], which the trainer applies on each thread that
//! trains (its own rayon pool, and subnormals flushed to zero:
//! [`flush_denormals`]).

use std::cell::OnceCell;

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

/// The glibc tunable that makes malloc advise its heaps as transparent huge
/// pages as it grows them.
const HUGE_TUNABLE: &str = "glibc.malloc.hugetlb=1";

/// Restarts this process (same program, arguments and process id, through
/// `exec`) with glibc's `glibc.malloc.hugetlb=1` tunable added to
/// `GLIBC_TUNABLES`, unless it is already there or `ALGOPROG_HUGE_PAGES=0`;
/// returns when no restart is needed or the restart fails (then the process
/// goes on with ordinary pages). Linux with glibc only; a no-op elsewhere.
/// Call it first thing in `main`: everything before it runs twice.
/// Processes the program starts (a sweep's workers) inherit the setting.
///
/// Why: a step's activations are tens of MiB written once and read once,
/// and on a virtual machine every 4 KiB page they span costs a TLB miss
/// with a two-level (guest and host) page walk. With the kernel's
/// `transparent_hugepage` set to `madvise` (Debian's default) nothing gets
/// 2 MiB pages unless asked, and glibc asks only under this tunable, which
/// it reads at start-up, hence the restart. Measured on this project's
/// 2-core Intel VM, one thread, steps interleaved with and without: the
/// laptop d80 Transformers' steps 8–10% shorter, quick-modern-d48 about 4%.
/// Asking per allocation from a global allocator instead reached 14 of
/// 127 MiB in huge pages (against 100 MiB this way) and measured level: glibc
/// writes each chunk's header, faulting a small page in, before an
/// allocator wrapped around it could ask.
pub fn use_huge_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var("ALGOPROG_HUGE_PAGES").is_ok_and(|v| v == "0") {
            return;
        }
        let now = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        if now.contains("glibc.malloc.hugetlb") {
            return;
        }
        let with = if now.is_empty() {
            HUGE_TUNABLE.to_string()
        } else {
            format!("{now}:{HUGE_TUNABLE}")
        };
        let mut args = std::env::args_os();
        let Some(arg0) = args.next() else { return };
        use std::os::unix::process::CommandExt;
        // exec only returns on failure; the process then goes on as it is
        let _failed = std::process::Command::new("/proc/self/exe")
            .arg0(arg0)
            .args(args)
            .env("GLIBC_TUNABLES", with)
            .exec();
    }
}

/// Whether this process runs with glibc's huge-page tunable
/// ([`use_huge_pages`]).
pub fn huge_pages() -> bool {
    std::env::var("GLIBC_TUNABLES").is_ok_and(|v| v.contains(HUGE_TUNABLE))
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
