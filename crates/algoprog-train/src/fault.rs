//! Crash injection for the crash-safety tests. With `ALGOPROG_FAULT=SITE:N`
//! the process kills itself with SIGKILL at its N-th pass through SITE: a
//! deterministic stand-in for a kill landing inside that window, which a
//! randomly timed kill hits only by luck. Sites:
//!
//! - `write-half`: an atomically written file (record, curve, export, specs)
//!   has half its bytes in its temporary file, not renamed into place;
//! - `checkpoint-tmp`: a checkpoint's temporary file is written and synced,
//!   not renamed into place;
//! - `ended-locked`: a run's final record is written, its lock not released.
//!
//! Unset (every normal use), a site costs one load of a cached `None`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static PLAN: OnceLock<Option<(String, u64)>> = OnceLock::new();
static PASSES: AtomicU64 = AtomicU64::new(0);

fn plan() -> &'static Option<(String, u64)> {
    PLAN.get_or_init(|| {
        let v = std::env::var("ALGOPROG_FAULT").ok()?;
        let (site, n) = v.split_once(':')?;
        Some((site.to_string(), n.parse().ok()?))
    })
}

/// Whether this pass through `site` is the one to die at.
pub fn at(site: &str) -> bool {
    match plan() {
        Some((s, n)) if s == site => PASSES.fetch_add(1, Ordering::SeqCst) + 1 == *n,
        _ => false,
    }
}

/// SIGKILL this process (no destructors, no flushing: a real kill).
pub fn die() -> ! {
    // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    loop {
        std::thread::park();
    }
}
