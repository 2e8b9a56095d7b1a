//! A census of live heap allocations by size, for measuring what one idle stream holds (perf
//! work, perf/NOTES.md). Built only with `--features alloc-census`: it wraps mimalloc and counts
//! every allocation and free by requested size, and with `TETHER_ALLOC_CENSUS=SECONDS` a thread
//! prints the sizes that have the most live bytes every SECONDS to stderr. Divide a size's live
//! count by the number of open streams to attribute it (a 1272-byte size held 9000 times by 9000
//! streams is the relay future).

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Sizes counted one by one; larger ones share the last bucket.
const EXACT_SIZES: usize = 8192;

/// How many sizes a report lists.
const REPORT_ROWS: usize = 40;

pub struct Census {
    live: [AtomicI64; EXACT_SIZES + 1],
    large_bytes: AtomicI64,
}

impl Census {
    #[allow(clippy::declare_interior_mutable_const)]
    pub const fn new() -> Self {
        const ZERO: AtomicI64 = AtomicI64::new(0);
        Census {
            live: [ZERO; EXACT_SIZES + 1],
            large_bytes: AtomicI64::new(0),
        }
    }

    fn count(&self, size: usize, delta: i64) {
        self.live[size.min(EXACT_SIZES)].fetch_add(delta, Ordering::Relaxed);
        if size >= EXACT_SIZES {
            self.large_bytes
                .fetch_add(delta * size as i64, Ordering::Relaxed);
        }
    }

    /// The sizes with the most live bytes, one line each: size, live count, live bytes.
    pub fn report(&self) -> String {
        let mut rows: Vec<(usize, i64, i64)> = (0..EXACT_SIZES)
            .map(|size| {
                let n = self.live[size].load(Ordering::Relaxed);
                (size, n, n * size as i64)
            })
            .filter(|&(_, n, _)| n > 0)
            .collect();
        let total: i64 =
            rows.iter().map(|r| r.2).sum::<i64>() + self.large_bytes.load(Ordering::Relaxed);
        rows.sort_by_key(|r| std::cmp::Reverse(r.2));
        let mut out = format!("alloc census: {total} live bytes\n");
        for (size, n, bytes) in rows.into_iter().take(REPORT_ROWS) {
            out.push_str(&format!("  {size:>6} B x {n:>8} = {bytes:>10}\n"));
        }
        out.push_str(&format!(
            "  >= {EXACT_SIZES} B: {} allocations, {} bytes\n",
            self.live[EXACT_SIZES].load(Ordering::Relaxed),
            self.large_bytes.load(Ordering::Relaxed)
        ));
        out
    }

    /// Starts the reporting thread when TETHER_ALLOC_CENSUS names an interval in seconds.
    pub fn start_reports(&'static self) {
        let Some(secs) = std::env::var("TETHER_ALLOC_CENSUS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        else {
            return;
        };
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_secs(secs.max(1)));
            eprint!("{}", self.report());
        });
    }
}

impl Default for Census {
    fn default() -> Self {
        Self::new()
    }
}

/// mimalloc, counted.
pub struct CountingMimalloc {
    pub census: Census,
}

// SAFETY: every call is passed to mimalloc unchanged; the census only counts.
unsafe impl GlobalAlloc for CountingMimalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.census.count(layout.size(), 1);
        mimalloc::MiMalloc.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        self.census.count(layout.size(), 1);
        mimalloc::MiMalloc.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.census.count(layout.size(), -1);
        mimalloc::MiMalloc.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.census.count(layout.size(), -1);
        self.census.count(new_size, 1);
        mimalloc::MiMalloc.realloc(ptr, layout, new_size)
    }
}
