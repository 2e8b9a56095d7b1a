//! Per-stream event id tracking: the ids of one logical stream must arrive as 1, 2, 3, ...
//!
//! ```text
//! id == high + 1  -> in order
//! id >  high + 1  -> gaps += id - high - 1 (every skipped id is a lost event); high = id
//! id <= high      -> duplicates += 1 (seen again, or the stream went back); high unchanged
//! ```
//! `high` is the highest id seen so far and starts at 0, so the first event must be 1. It
//! survives reconnections: what a resumed stream loses or repeats is counted the same way.
//! A stream that restarts from 1 after a reconnect counts every replayed id as a duplicate
//! and carries on counting new ids once it is past `high` again.

/// Gap and duplicate counting for one logical stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdTracker {
    /// Highest id seen so far (0 before the first).
    high: u64,
}

/// What one id was, relative to the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdVerdict {
    /// The next id.
    InOrder,
    /// Ahead of the next id: this many ids were skipped.
    Gap(u64),
    /// At or below the highest id seen.
    Duplicate,
}

impl IdTracker {
    /// A tracker expecting id 1 next.
    pub fn new() -> Self {
        Self::default()
    }

    /// Highest id seen so far (0 before the first).
    pub fn high(&self) -> u64 {
        self.high
    }

    /// Classifies `id` and moves past it.
    #[inline]
    pub fn observe(&mut self, id: u64) -> IdVerdict {
        if id <= self.high {
            return IdVerdict::Duplicate;
        }
        let skipped = id - self.high - 1;
        self.high = id;
        if skipped == 0 {
            IdVerdict::InOrder
        } else {
            IdVerdict::Gap(skipped)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `ids` and returns (gaps, duplicates).
    fn count(ids: &[u64]) -> (u64, u64) {
        let mut t = IdTracker::new();
        let (mut gaps, mut dups) = (0, 0);
        for &id in ids {
            match t.observe(id) {
                IdVerdict::InOrder => {}
                IdVerdict::Gap(n) => gaps += n,
                IdVerdict::Duplicate => dups += 1,
            }
        }
        (gaps, dups)
    }

    #[test]
    fn in_order() {
        assert_eq!(count(&[1, 2, 3, 4, 5]), (0, 0));
        assert_eq!(count(&[]), (0, 0));
    }

    #[test]
    fn gaps_count_every_skipped_id() {
        assert_eq!(count(&[1, 2, 5, 6]), (2, 0));
        assert_eq!(count(&[3]), (2, 0), "the first id must be 1");
        assert_eq!(count(&[1, 3, 5, 10]), (1 + 1 + 4, 0));
    }

    #[test]
    fn duplicates_and_going_back() {
        assert_eq!(count(&[1, 2, 2, 3]), (0, 1));
        assert_eq!(count(&[1, 2, 3, 1, 2, 3, 4]), (0, 3), "restart from 1");
        assert_eq!(count(&[1, 2, 3, 2, 4]), (0, 1));
        assert_eq!(
            count(&[1, 5, 3, 6]),
            (3, 1),
            "a late id after a gap is a duplicate"
        );
    }

    #[test]
    fn reconnect_overlap_and_loss() {
        // Resumed with Last-Event-ID 3 but the server repeats 3 and skips 5.
        assert_eq!(count(&[1, 2, 3, 3, 4, 6, 7]), (1, 1));
        let mut t = IdTracker::new();
        assert_eq!(t.observe(1), IdVerdict::InOrder);
        assert_eq!(t.observe(4), IdVerdict::Gap(2));
        assert_eq!(t.observe(4), IdVerdict::Duplicate);
        assert_eq!(t.high(), 4);
        assert_eq!(t.observe(u64::MAX), IdVerdict::Gap(u64::MAX - 5));
        assert_eq!(t.observe(u64::MAX), IdVerdict::Duplicate);
    }
}
