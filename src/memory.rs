//! The allocator and giving memory back to the system.
//!
//! tether uses mimalloc v2 (libmimalloc-sys's `v2` feature; 0.1.49 builds v3 unless told). With
//! 9000 idle streams on one worker, v3 held 4.4-4.9 KB of RSS per stream for 2.9 KB of live heap,
//! v2 3.0-3.4 KB for the same heap (`sse-load --idle --streams 9000`, five runs each, perf/NOTES.md):
//! v3 kept many partly used pages after the burst of opens, whatever its purge settings. On v2,
//! purging free pages at once instead of after mimalloc's default 10 ms gained ~200 bytes per idle
//! stream, too little to trade for a purge syscall per freed page under churn; the default stays.
//!
//! mimalloc purges freed pages only when the heap is next used (after its 10 ms delay): a worker
//! that goes quiet after a burst of opens (thousands of clients connecting at once, then idle
//! streams) keeps what the burst's short-lived states touched. So a worker returns its freed
//! pages once such a burst has passed (`return_after_bursts`): with 9000 idle streams opened in
//! 0.6 s, 2,875-2,888 bytes of RSS per stream against 2,938-3,164 without (perf/NOTES.md, "The
//! idle stream toward 2 KB, third pass").

use std::rc::Rc;
use std::time::Duration;

use crate::worker::WorkerCtx;

/// How often a worker checks whether a burst of new connections has passed.
const BURST_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Connections accepted since the worker last returned its freed pages that make a burst: fewer
/// are not worth a collection (one walk of the worker's heap pages and a purge syscall per
/// freed span).
const BURST_CONNECTIONS: u64 = 1024;

/// A burst has passed when the last check interval accepted at most 1/BURST_SLOWDOWN of its
/// connections (under steady churn this returns pages every BURST_SLOWDOWN intervals at most).
const BURST_SLOWDOWN: u64 = 8;

/// Returns the calling thread's free heap pages to the system now, including those mimalloc keeps
/// for quick reuse: after replay rings were freed in bulk, an idle proxy would otherwise keep its
/// high-water RSS until its heap is next busy. A no-op cost when mimalloc is not the global
/// allocator (unit tests).
pub(crate) fn return_freed_pages() {
    // SAFETY: mi_collect only walks and purges the calling thread's own heap.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

/// Whether a burst of `since_return` connections (accepted since the last return) has passed,
/// given the `since_check` of them accepted in the last check interval.
fn burst_passed(since_return: u64, since_check: u64) -> bool {
    since_return >= BURST_CONNECTIONS && since_check.saturating_mul(BURST_SLOWDOWN) <= since_return
}

/// Returns the worker's freed pages to the system once a burst of new connections has passed
/// (see the module doc); ends when the worker drains.
pub(crate) async fn return_after_bursts(ctx: Rc<WorkerCtx>) {
    let accepted = || ctx.metrics.connections_accepted.get();
    let mut at_return = accepted();
    let mut at_check = at_return;
    loop {
        monoio::time::sleep(BURST_CHECK_INTERVAL).await;
        if ctx.conns.draining() {
            return;
        }
        let now = accepted();
        if burst_passed(now - at_return, now - at_check) {
            ctx.turns.shrink_queues();
            return_freed_pages();
            at_return = now;
        }
        at_check = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_returned_once_a_burst_has_slowed() {
        // A burst still under way, or too small, is left alone.
        assert!(!burst_passed(9000, 9000));
        assert!(!burst_passed(9000, 2000));
        assert!(!burst_passed(BURST_CONNECTIONS - 1, 0));
        // The interval after it accepted (almost) nothing.
        assert!(burst_passed(9000, 0));
        assert!(burst_passed(9000, 9000 / BURST_SLOWDOWN));
        assert!(burst_passed(BURST_CONNECTIONS, 0));
    }
}
