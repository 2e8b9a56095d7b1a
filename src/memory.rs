//! Giving freed memory back to the system. mimalloc keeps the pages that freed objects leave
//! behind and, by default, returns them only after a purge delay and only when the same thread's
//! heap is next used. A worker that goes quiet after a burst (9000 streams opened, their
//! exchange futures and head buffers freed, then nothing but idle streams) then keeps the burst's
//! pages as RSS: ~1.5 KB per idle stream measured (perf/NOTES.md). Neither a periodic
//! `mi_collect(false)` nor `mi_collect(true)` gave those pages back (5.4-5.5 KB per idle stream
//! against 4.8 KB with immediate purging, `sse-load --idle --streams 9000`, one worker), so tether
//! purges free pages as soon as they are free.

/// mimalloc's `mi_option_purge_delay` (mimalloc.h, v2: the 16th option): milliseconds before a
/// free page is returned to the system; 0 = at once.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Sets the allocator up to return free pages at once. Call before any thread is started (mimalloc
/// options are not thread-safe to set).
pub fn configure_allocator() {
    // SAFETY: called from main before other threads exist; mi_option_set only stores the value.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

/// Returns the calling thread's free heap pages to the system now, including those mimalloc keeps
/// for quick reuse (after replay rings were freed in bulk). A no-op cost when mimalloc is not the
/// global allocator (unit tests).
pub(crate) fn return_freed_pages() {
    // SAFETY: mi_collect only walks and purges the calling thread's own heap.
    unsafe { libmimalloc_sys::mi_collect(true) };
}
