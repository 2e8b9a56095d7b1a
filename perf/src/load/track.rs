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
//!
//! Joining a live stream (`--join-live`, [`IdTracker::joining`]): a client that subscribes to
//! a stream already running (a proxy that shares one upstream stream among its clients sends
//! a newcomer the live head, not id 1) may start at any id. The first id seen then sets
//! `high` to one below it, and from there the rule above applies unchanged: every later id
//! exactly once, in order.

/// Gap and duplicate counting for one logical stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdTracker {
    /// Highest id seen so far (0 before the first).
    high: u64,
    /// The first id seen (None before it).
    first: Option<u64>,
    /// The first id may be any (joining a live stream), not only 1.
    any_start: bool,
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

    /// A tracker for a client that joins a live stream: its first id may be any, and ids
    /// must run on from it without a gap or a repeat.
    pub fn joining() -> Self {
        Self {
            any_start: true,
            ..Self::default()
        }
    }

    /// Highest id seen so far (0 before the first).
    pub fn high(&self) -> u64 {
        self.high
    }

    /// The first id seen, if any.
    pub fn first(&self) -> Option<u64> {
        self.first
    }

    /// Classifies `id` and moves past it.
    #[inline]
    pub fn observe(&mut self, id: u64) -> IdVerdict {
        if self.first.is_none() {
            self.first = Some(id);
            if self.any_start {
                self.high = id.saturating_sub(1);
            }
        }
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

/// Counts one received event into the run's `stats` (its id against `tracker`: gaps and
/// duplicates; an id that disagrees with its `seq`; its latency when the origin stamped it,
/// within the measuring window or not): the one rule of every transport sse-load speaks. The
/// verdict is returned for the stream's own counts; `events_total` is the caller's.
pub(crate) fn count_event(
    ev: &crate::load::sse::Event,
    tracker: &mut IdTracker,
    wall_us: u64,
    measuring: bool,
    stats: &mut crate::load::stats::Stats,
) -> IdVerdict {
    use crate::load::stats::ErrorKind;
    if let (Some(id), Some(seq)) = (ev.id, ev.seq) {
        if id != seq {
            stats.errors.add(ErrorKind::Protocol, || {
                format!("event id {id} carries seq {seq}")
            });
        }
    }
    let verdict = match ev.id.or(ev.seq) {
        Some(id) => tracker.observe(id),
        None => IdVerdict::InOrder,
    };
    match verdict {
        IdVerdict::InOrder => {}
        IdVerdict::Gap(n) => stats.gaps += n,
        IdVerdict::Duplicate => stats.duplicates += 1,
    }
    let latency = ev.ts_us.map(|ts| wall_us.saturating_sub(ts));
    if let Some(us) = latency {
        stats.interval.record(us);
    }
    if measuring {
        stats.events += 1;
        match latency {
            Some(us) => stats.latency.record(us),
            None => stats.untimed += 1,
        }
    }
    verdict
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

    /// Feeds `ids` to a joining tracker and returns (gaps, duplicates, first id).
    fn count_joining(ids: &[u64]) -> (u64, u64, Option<u64>) {
        let mut t = IdTracker::joining();
        let (mut gaps, mut dups) = (0, 0);
        for &id in ids {
            match t.observe(id) {
                IdVerdict::InOrder => {}
                IdVerdict::Gap(n) => gaps += n,
                IdVerdict::Duplicate => dups += 1,
            }
        }
        (gaps, dups, t.first())
    }

    #[test]
    fn joining_a_live_stream_starts_anywhere_then_counts_as_usual() {
        assert_eq!(count_joining(&[]), (0, 0, None));
        assert_eq!(count_joining(&[1, 2, 3]), (0, 0, Some(1)), "from the start");
        assert_eq!(
            count_joining(&[57, 58, 59]),
            (0, 0, Some(57)),
            "at the live head"
        );
        assert_eq!(count_joining(&[57, 59, 60]), (1, 0, Some(57)));
        assert_eq!(count_joining(&[57, 58, 58, 57, 59]), (0, 2, Some(57)));
        assert_eq!(
            count_joining(&[57, 1, 58]),
            (0, 1, Some(57)),
            "going back below the first id is a repeat"
        );
        // The plain tracker counts the ids before a late start as lost.
        assert_eq!(count(&[57, 58]), (56, 0));
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
