//! Per-worker counters. Each worker owns its own (plain `Cell`s, no atomics on the per-event
//! path); the admin endpoint sums them when scraped.

use std::cell::Cell;
use std::time::Duration;

/// Upper bounds (ms) of the resume-gap histogram buckets; the last bucket is +Inf.
pub const GAP_BUCKETS_MS: [u64; 12] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000, 30000];

/// How an upstream SSE body stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropKind {
    /// The upstream closed (FIN), mid-body or by ending the body.
    Eof,
    /// The connection was reset (RST).
    Reset,
    /// No byte for `--upstream-idle-timeout`.
    Idle,
    /// Any other read error, or an invalid body.
    Error,
}

impl DropKind {
    pub fn name(self) -> &'static str {
        match self {
            DropKind::Eof => "eof",
            DropKind::Reset => "reset",
            DropKind::Idle => "idle",
            DropKind::Error => "error",
        }
    }
}

#[derive(Debug, Default)]
pub struct WorkerMetrics {
    pub sse_streams_active: Cell<u64>,
    pub sse_events: Cell<u64>,
    pub sse_bytes: Cell<u64>,
    pub heartbeats: Cell<u64>,
    pub slow_clients: Cell<u64>,
    pub replays_served: Cell<u64>,
    pub replays_missed: Cell<u64>,
    pub drops_eof: Cell<u64>,
    pub drops_reset: Cell<u64>,
    pub drops_idle: Cell<u64>,
    pub drops_error: Cell<u64>,
    pub reconnect_attempts: Cell<u64>,
    pub resumes: Cell<u64>,
    pub give_ups: Cell<u64>,
    pub duplicates_dropped: Cell<u64>,
    /// Resume gaps (drop to first resumed byte), counts per `GAP_BUCKETS_MS` bucket + one +Inf.
    pub gap_buckets: [Cell<u64>; GAP_BUCKETS_MS.len() + 1],
    pub gap_sum_ms: Cell<u64>,
}

impl WorkerMetrics {
    pub fn add(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get().wrapping_add(n));
    }

    pub fn inc(cell: &Cell<u64>) {
        Self::add(cell, 1);
    }

    pub fn record_drop(&self, kind: DropKind) {
        Self::inc(match kind {
            DropKind::Eof => &self.drops_eof,
            DropKind::Reset => &self.drops_reset,
            DropKind::Idle => &self.drops_idle,
            DropKind::Error => &self.drops_error,
        });
    }

    pub fn record_gap(&self, gap: Duration) {
        let ms = gap.as_millis() as u64;
        let bucket = GAP_BUCKETS_MS
            .iter()
            .position(|&b| ms <= b)
            .unwrap_or(GAP_BUCKETS_MS.len());
        Self::inc(&self.gap_buckets[bucket]);
        Self::add(&self.gap_sum_ms, ms);
    }

    /// Resume gaps recorded so far.
    pub fn gap_count(&self) -> u64 {
        self.gap_buckets.iter().map(Cell::get).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_land_in_their_buckets() {
        let m = WorkerMetrics::default();
        m.record_gap(Duration::from_millis(0));
        m.record_gap(Duration::from_millis(7));
        m.record_gap(Duration::from_secs(60));
        assert_eq!(m.gap_buckets[0].get(), 1);
        assert_eq!(m.gap_buckets[3].get(), 1, "7ms <= 10ms");
        assert_eq!(m.gap_buckets[GAP_BUCKETS_MS.len()].get(), 1, "+Inf");
        assert_eq!(m.gap_count(), 3);
    }
}
