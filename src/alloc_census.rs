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

/// One block size of a heap's pages (`heap_pages_report`).
#[derive(Default)]
struct PageClass {
    pages: usize,
    /// Bytes of the pages' blocks made so far (mimalloc extends a page's blocks as it needs
    /// them): what the pages hold in memory at most.
    committed: usize,
    /// Bytes of the blocks in use.
    used: usize,
}

/// The calling thread's mimalloc heap, page by page, summed per block size: where the heap holds
/// memory its live blocks do not use (free blocks in partly used pages, what RSS holds over the
/// census's live bytes). Rows with the most such slack first.
pub fn heap_pages_report() -> String {
    use std::collections::BTreeMap;
    use std::ffi::c_void;

    unsafe extern "C" fn visit(
        _heap: *const libmimalloc_sys::mi_heap_t,
        area: *const libmimalloc_sys::mi_heap_area_t,
        block: *mut c_void,
        _size: usize,
        arg: *mut c_void,
    ) -> bool {
        if block.is_null() {
            // SAFETY: mimalloc hands a valid area for the call; `arg` is the map passed below.
            let (area, map) = unsafe { (&*area, &mut *(arg as *mut BTreeMap<usize, PageClass>)) };
            let class = map.entry(area.block_size).or_default();
            class.pages += 1;
            class.committed += area.committed;
            // `used` counts blocks (mimalloc's heap.c: "number of blocks in use").
            class.used += area.used * area.block_size;
        }
        true
    }

    let mut map: BTreeMap<usize, PageClass> = BTreeMap::new();
    // SAFETY: visits the calling thread's own default heap; the visitor only reads the area.
    unsafe {
        let heap = libmimalloc_sys::mi_heap_get_default();
        libmimalloc_sys::mi_heap_visit_blocks(
            heap,
            false,
            Some(visit),
            &mut map as *mut BTreeMap<usize, PageClass> as *mut c_void,
        );
    }
    let (committed, used) = map
        .values()
        .fold((0, 0), |(c, u), p| (c + p.committed, u + p.used));
    let mut rows: Vec<(usize, &PageClass)> = map.iter().map(|(s, p)| (*s, p)).collect();
    rows.sort_by_key(|(_, p)| std::cmp::Reverse(p.committed.saturating_sub(p.used)));
    let mut out = format!(
        "heap pages: {committed} bytes of blocks made, {used} in use, {} free\n",
        committed.saturating_sub(used)
    );
    for (size, p) in rows.into_iter().take(REPORT_ROWS) {
        out.push_str(&format!(
            "  block {size:>7} B: {:>5} pages, {:>10} made, {:>10} used, {:>10} free\n",
            p.pages,
            p.committed,
            p.used,
            p.committed.saturating_sub(p.used)
        ));
    }
    out
}

/// A worker's heap report every TETHER_ALLOC_CENSUS seconds (the heap is the worker thread's
/// own, so the worker prints it). Returns at once when the variable is not set.
pub async fn report_worker_heap(worker: usize) {
    let Some(secs) = std::env::var("TETHER_ALLOC_CENSUS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    // TETHER_ALLOC_CENSUS_COLLECT=1: the heap is collected (`crate::memory::return_freed_pages`)
    // before each report, to see what a collect gives back.
    let collect = std::env::var_os("TETHER_ALLOC_CENSUS_COLLECT").is_some();
    loop {
        monoio::time::sleep(Duration::from_secs(secs.max(1))).await;
        if collect {
            crate::memory::return_freed_pages();
        }
        eprint!("worker {worker} {}", heap_pages_report());
    }
}
