//! A moment in 8 bytes, read straight from the clock `Instant` reads (CLOCK_MONOTONIC), in
//! nanoseconds, where an `Instant` is 16. For the times every SSE stream keeps for its whole
//! life (when it last sent, when its upstream last sent, when its pump's turn began or its quiet
//! spell did) and what the worker's turns are charged with: an idle stream's task sits at an
//! allocator size-class edge (`proxy::conn::tests::a_stream_task_stays_small`), and four
//! `Instant`s there were 32 of its bytes.
//!
//! Why not nanoseconds since an `Instant` epoch: std's `Instant` arithmetic is an out-of-line
//! call (a timespec subtraction or addition with its carries), and converting every time a
//! stream stamps or compares cost ~140 instructions per event (callgrind, latency load).
//! Stamps add and compare as plain integers; only a deadline handed to a timer becomes an
//! `Instant` (`instant`), once per wait armed.
//!
//! `Option<Stamp>` is 8 bytes too: a stamp is never 0 (the clock's reading plus one).

use std::num::NonZeroU64;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A moment, to the nanosecond (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Stamp(NonZeroU64);

/// CLOCK_MONOTONIC in nanoseconds, plus one (never 0).
#[inline]
fn clock_nanos() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to write into; CLOCK_MONOTONIC always exists on Linux (the vDSO
    // answers it without a syscall, as for `Instant::now`).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
        .wrapping_add(1)
}

/// One `Instant` and the stamp of the same moment (read back to back, the first time either
/// is needed): what converts between the two.
fn anchor() -> (Instant, u64) {
    static ANCHOR: OnceLock<(Instant, u64)> = OnceLock::new();
    *ANCHOR.get_or_init(|| (Instant::now(), clock_nanos()))
}

impl Stamp {
    #[inline]
    pub(crate) fn now() -> Stamp {
        Stamp::from_nanos(clock_nanos())
    }

    /// The stamp `nanos` ns on the clock (0 reads as 1).
    #[inline]
    pub(crate) fn from_nanos(nanos: u64) -> Stamp {
        Stamp(NonZeroU64::new(nanos).unwrap_or(NonZeroU64::MIN))
    }

    /// The moment in ns on the clock (what `crate::timers` buckets by).
    #[inline]
    pub(crate) fn nanos(self) -> u64 {
        self.0.get()
    }

    /// `at` as a stamp (through the anchor: not for the per-event path).
    pub(crate) fn at(at: Instant) -> Stamp {
        let (instant, nanos) = anchor();
        let nanos = match at.checked_duration_since(instant) {
            Some(after) => nanos.saturating_add(duration_nanos(after)),
            None => nanos.saturating_sub(duration_nanos(instant - at)),
        };
        Stamp::from_nanos(nanos)
    }

    /// The moment as an `Instant` (what timers are armed with).
    pub(crate) fn instant(self) -> Instant {
        let (instant, nanos) = anchor();
        let at = self.0.get();
        if at >= nanos {
            instant + Duration::from_nanos(at - nanos)
        } else {
            instant
                .checked_sub(Duration::from_nanos(nanos - at))
                .unwrap_or(instant)
        }
    }

    /// `d` later (saturating: a duration past the clock's range is never).
    #[inline]
    pub(crate) fn add(self, d: Duration) -> Stamp {
        Stamp::from_nanos(self.0.get().saturating_add(duration_nanos(d)))
    }

    /// How long after `earlier` this is (zero when it is not after it).
    #[inline]
    pub(crate) fn saturating_since(self, earlier: Stamp) -> Duration {
        Duration::from_nanos(self.0.get().saturating_sub(earlier.0.get()))
    }
}

#[inline]
fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl From<Instant> for Stamp {
    fn from(at: Instant) -> Stamp {
        Stamp::at(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_is_the_moment_it_was_taken_from() {
        let now = Instant::now();
        for later in [0u64, 1, 999, 1_000_000, 3_600_000_000_000] {
            let at = now + Duration::from_nanos(later);
            assert_eq!(Stamp::at(at).instant(), at, "{later} ns after");
        }
        if let Some(before) = now.checked_sub(Duration::from_secs(5)) {
            assert_eq!(Stamp::at(before).instant(), before);
        }
        assert!(Stamp::at(now) < Stamp::at(now + Duration::from_nanos(1)));
        assert_eq!(std::mem::size_of::<Option<Stamp>>(), 8);
    }

    #[test]
    fn stamps_read_the_clock_instants_read() {
        // Stamp::now and Instant::now read one clock: a stamp taken between two instants
        // converts to a moment between them (the anchor's two reads apart at most).
        let slack = Duration::from_millis(1);
        for _ in 0..100 {
            let before = Instant::now();
            let stamp = Stamp::now();
            let after = Instant::now();
            let at = stamp.instant();
            assert!(
                at + slack >= before && at <= after + slack,
                "{at:?} not in {before:?}..{after:?}"
            );
        }
    }

    #[test]
    fn stamps_add_and_subtract_as_durations() {
        let s = Stamp::now();
        let later = s.add(Duration::from_millis(250));
        assert_eq!(later.saturating_since(s), Duration::from_millis(250));
        assert_eq!(s.saturating_since(later), Duration::ZERO);
        assert!(later > s);
        assert_eq!(
            s.add(Duration::MAX).saturating_since(s),
            Duration::from_nanos(u64::MAX - s.0.get())
        );
    }
}
