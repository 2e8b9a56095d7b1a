//! What unfinished upstream events may hold across a worker. An event is forwarded only once it
//! is complete, so the framer keeps the open event's bytes until its blank line arrives, up to
//! `--sse-max-event-bytes` per stream. That limit is large (MCP tool results, files and images
//! in one event), so a worker with many streams could otherwise be made to hold streams x limit:
//! `--sse-partial-memory` bounds the sum, shared out equally across workers. A stream whose open
//! event would take its worker past the share is ended cleanly after its last whole event (as an
//! event over --sse-max-event-bytes ends it); the others are untouched.

use std::cell::Cell;

/// Default `--sse-partial-memory`: unfinished events held by all streams of the process.
pub const DEFAULT_PARTIAL_MEMORY: usize = 256 * 1024 * 1024;

/// One worker's share of `--sse-partial-memory` and what its streams hold now.
#[derive(Debug)]
pub struct PartialBudget {
    held: Cell<usize>,
    limit: usize,
}

impl PartialBudget {
    pub fn new(limit: usize) -> Self {
        PartialBudget {
            held: Cell::new(0),
            limit,
        }
    }

    /// Moves one stream's count from `was` to `now` bytes. False when the stream grew and the
    /// worker is now past its share: that stream must end (and then release what it holds).
    pub fn update(&self, was: usize, now: usize) -> bool {
        let held = self.held.get() - was.min(self.held.get()) + now;
        self.held.set(held);
        now <= was || held <= self.limit
    }

    /// Bytes held by unfinished events on this worker.
    pub fn held(&self) -> usize {
        self.held.get()
    }

    pub fn limit(&self) -> usize {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_past_the_share_is_refused_and_shrinking_never_is() {
        let b = PartialBudget::new(1000);
        assert!(b.update(0, 600), "a first stream within the share");
        assert!(
            !b.update(0, 500),
            "a second one that takes the worker past it"
        );
        assert_eq!(b.held(), 1100, "counted until it lets go");
        assert!(b.update(500, 0), "letting go is always allowed");
        assert!(b.update(600, 300), "shrinking is always allowed");
        assert!(b.update(0, 700));
        assert_eq!(b.held(), 1000);
    }
}
