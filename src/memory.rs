//! The allocator and giving memory back to the system.
//!
//! tether uses mimalloc v2 (libmimalloc-sys's `v2` feature; 0.1.49 builds v3 unless told). With
//! 9000 idle streams on one worker, v3 held 4.4-4.9 KB of RSS per stream for 2.9 KB of live heap,
//! v2 3.0-3.4 KB for the same heap (`sse-load --idle --streams 9000`, five runs each, perf/NOTES.md):
//! v3 kept many partly used pages after the burst of opens, whatever its purge settings. On v2,
//! purging free pages at once instead of after mimalloc's default 10 ms gained ~200 bytes per idle
//! stream, too little to trade for a purge syscall per freed page under churn; the default stays.

/// Returns the calling thread's free heap pages to the system now, including those mimalloc keeps
/// for quick reuse: after replay rings were freed in bulk, an idle proxy would otherwise keep its
/// high-water RSS until its heap is next busy. A no-op cost when mimalloc is not the global
/// allocator (unit tests).
pub(crate) fn return_freed_pages() {
    // SAFETY: mi_collect only walks and purges the calling thread's own heap.
    unsafe { libmimalloc_sys::mi_collect(true) };
}
