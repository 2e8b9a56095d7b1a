//! The store's counters: atomics, because three kinds of thread touch them (workers count the
//! events their full queue dropped, the store's thread counts the rest, the admin endpoint reads
//! them all). Workers add only on the drop path: a queued event costs no atomic.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

#[derive(Debug, Default)]
pub(crate) struct StoreCounters {
    /// Events Redis acknowledged (their pipeline answered without an error).
    written: AtomicU64,
    /// Events dropped by a worker because its queue was full (the store's thread was behind):
    /// `tether_replay_store_dropped_total`.
    dropped_full: AtomicU64,
    /// Events taken from a queue but not written: Redis was down, or their pipeline failed (all
    /// of a failed pipeline is counted, though Redis may have applied part of it).
    dropped_unavailable: AtomicU64,
    /// Failed connection attempts, failed pipelines and failed reads.
    errors: AtomicU64,
    /// Reads answered (found or not).
    reads: AtomicU64,
    /// Round trip of the last pipeline that succeeded, in microseconds.
    last_write_latency_us: AtomicU64,
    /// How long the oldest event of the last successful pipeline waited from its worker's
    /// `record` to Redis's answer, in microseconds: what a reader on another instance is behind.
    last_lag_us: AtomicU64,
    /// A connection to Redis is up now.
    connected: AtomicBool,
}

/// A plain copy of the counters, for /metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct CountersSnapshot {
    pub(crate) written: u64,
    pub(crate) dropped_full: u64,
    pub(crate) dropped_unavailable: u64,
    pub(crate) errors: u64,
    pub(crate) reads: u64,
    pub(crate) last_write_latency_us: u64,
    pub(crate) last_lag_us: u64,
    pub(crate) connected: bool,
}

impl StoreCounters {
    pub(crate) fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            written: self.written.load(Ordering::Relaxed),
            dropped_full: self.dropped_full.load(Ordering::Relaxed),
            dropped_unavailable: self.dropped_unavailable.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            reads: self.reads.load(Ordering::Relaxed),
            last_write_latency_us: self.last_write_latency_us.load(Ordering::Relaxed),
            last_lag_us: self.last_lag_us.load(Ordering::Relaxed),
            connected: self.connected.load(Ordering::Relaxed),
        }
    }

    pub(super) fn dropped_full(&self) {
        self.dropped_full.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn dropped_unavailable(&self, events: u64) {
        self.dropped_unavailable
            .fetch_add(events, Ordering::Relaxed);
    }

    pub(super) fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn read(&self) {
        self.reads.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn written(&self, events: u64, latency: Duration, lag: Duration) {
        self.written.fetch_add(events, Ordering::Relaxed);
        self.last_write_latency_us
            .store(micros(latency), Ordering::Relaxed);
        self.last_lag_us.store(micros(lag), Ordering::Relaxed);
    }

    pub(super) fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::Relaxed);
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
