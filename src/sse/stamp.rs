//! A moment in 8 bytes: nanoseconds since the process's epoch (`idle_clock`'s), where an
//! `Instant` is 16. For the times every stream keeps for its whole life (when it last sent,
//! when its upstream last sent, when its pump's turn began or its quiet spell did): an idle
//! stream's task sits at an allocator size-class edge (`proxy::conn::tests::
//! a_stream_task_stays_small`), and four `Instant`s there were 32 of its bytes.
//!
//! Exact to the nanosecond, as an `Instant` is, for 584 years after the epoch; a moment before
//! the epoch (taken before the process's first stamp or coarse stamp) reads as the epoch.
//! `Option<Stamp>` is 8 bytes too: a stamp is never 0 (the epoch itself is stored as 1).

use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use super::idle_clock::epoch;

/// A moment, to the nanosecond (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Stamp(NonZeroU64);

impl Stamp {
    pub(crate) fn now() -> Stamp {
        Stamp::at(Instant::now())
    }

    /// `at` as a stamp (the epoch, when `at` is before it).
    #[inline]
    pub(crate) fn at(at: Instant) -> Stamp {
        let nanos = at.saturating_duration_since(epoch()).as_nanos();
        Stamp(NonZeroU64::MIN.saturating_add(u64::try_from(nanos).unwrap_or(u64::MAX)))
    }

    /// The moment as an `Instant` (what timers and durations are reckoned in).
    #[inline]
    pub(crate) fn instant(self) -> Instant {
        epoch() + Duration::from_nanos(self.0.get() - 1)
    }
}

impl From<Instant> for Stamp {
    #[inline]
    fn from(at: Instant) -> Stamp {
        Stamp::at(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_is_the_moment_it_was_taken_from() {
        epoch(); // set, if this is the process's first stamp: `now` is not before it
        let now = Instant::now();
        for later in [0u64, 1, 999, 1_000_000, 3_600_000_000_000] {
            let at = now + Duration::from_nanos(later);
            assert_eq!(Stamp::at(at).instant(), at, "{later} ns after");
        }
        assert!(Stamp::at(now) < Stamp::at(now + Duration::from_nanos(1)));
        assert_eq!(std::mem::size_of::<Option<Stamp>>(), 8);
    }

    #[test]
    fn a_moment_before_the_epoch_reads_as_the_epoch() {
        let first = Stamp::now().instant();
        if let Some(before) = epoch().checked_sub(Duration::from_secs(1)) {
            assert_eq!(Stamp::at(before).instant(), epoch());
            assert!(Stamp::at(before) <= Stamp::at(first));
        }
    }
}
