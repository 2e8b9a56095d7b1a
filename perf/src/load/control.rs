//! What the coordinating thread and the load threads share: the measured window, the stop
//! flag, and each thread's published counters (for the progress line and the phase logic).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::hist::Histogram;
use super::stats::Stats;

/// Window bound not set yet.
const UNSET: u64 = u64::MAX;

/// Shared between the coordinator and every load thread.
#[derive(Debug)]
pub(crate) struct Control {
    /// The zero of the window offsets.
    pub base: Instant,
    /// Start of the measured window, nanoseconds after `base` ([`UNSET`] before it is known).
    window_from: AtomicU64,
    /// End of the measured window, nanoseconds after `base`.
    window_until: AtomicU64,
    /// Set when every thread must close everything and return.
    pub stop: AtomicBool,
    /// One slot per load thread.
    pub threads: Vec<Published>,
}

/// The measured window as instants; `contains` is what the threads ask per read.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// First instant inside (None: not started).
    pub from: Option<Instant>,
    /// First instant past it.
    pub until: Option<Instant>,
}

impl Window {
    /// True if `t` is inside the measured window.
    #[inline]
    pub fn contains(&self, t: Instant) -> bool {
        self.from.is_some_and(|f| t >= f) && self.until.is_none_or(|u| t < u)
    }
}

impl Control {
    /// A control for `threads` load threads.
    pub fn new(threads: usize) -> Self {
        Self {
            base: Instant::now(),
            window_from: AtomicU64::new(UNSET),
            window_until: AtomicU64::new(UNSET),
            stop: AtomicBool::new(false),
            threads: (0..threads).map(|_| Published::default()).collect(),
        }
    }

    /// Fixes the measured window.
    pub fn set_window(&self, from: Instant, until: Instant) {
        let off = |t: Instant| t.saturating_duration_since(self.base).as_nanos() as u64;
        self.window_until.store(off(until), Relaxed);
        self.window_from.store(off(from), Relaxed);
    }

    /// The measured window as known now.
    pub fn window(&self) -> Window {
        let at = |v: u64| (v != UNSET).then(|| self.base + Duration::from_nanos(v));
        Window {
            from: at(self.window_from.load(Relaxed)),
            until: at(self.window_until.load(Relaxed)),
        }
    }

    /// Sum of one published counter over all threads.
    pub fn sum(&self, f: impl Fn(&Published) -> &AtomicU64) -> u64 {
        self.threads.iter().map(|p| f(p).load(Relaxed)).sum()
    }

    /// Takes (and clears) every thread's latency since the last call, merged.
    pub fn take_interval(&self) -> Histogram {
        let mut h = Histogram::new();
        for p in &self.threads {
            if let Ok(mut i) = p.interval.lock() {
                h.merge(&i);
                i.clear();
            }
        }
        h
    }
}

/// What one thread publishes (every [`super::driver::PUBLISH_EVERY`] and at the end).
#[derive(Debug, Default)]
pub(crate) struct Published {
    /// Streams assigned to the thread that are not over (open, connecting or waiting).
    pub live: AtomicU64,
    /// Streams receiving a response body now.
    pub open: AtomicU64,
    /// Streams that received a response head at least once.
    pub established: AtomicU64,
    /// Streams that ended for good without ever being established.
    pub failed_to_open: AtomicU64,
    /// Events, whole run.
    pub events_total: AtomicU64,
    /// Skipped ids.
    pub gaps: AtomicU64,
    /// Repeated ids.
    pub duplicates: AtomicU64,
    /// Reconnections in the window.
    pub reconnects: AtomicU64,
    /// Errors.
    pub errors: AtomicU64,
    /// Latency since the coordinator last took it.
    pub interval: Mutex<Histogram>,
}

impl Published {
    /// Publishes a thread's counters; moves its interval histogram over.
    pub fn publish(&self, stats: &mut Stats) {
        self.events_total.store(stats.events_total, Relaxed);
        self.gaps.store(stats.gaps, Relaxed);
        self.duplicates.store(stats.duplicates, Relaxed);
        self.reconnects.store(stats.reconnects, Relaxed);
        self.errors.store(stats.errors.total(), Relaxed);
        if stats.interval.count() > 0 {
            if let Ok(mut i) = self.interval.lock() {
                i.merge(&stats.interval);
            }
            stats.interval.clear();
        }
    }
}
