//! The coarse clock a lineage's `last_used` is kept in: whole seconds since an epoch taken once
//! per process, in a u32 (4 bytes where an `Instant` is 16; every stream, an idle one included,
//! holds a lineage at an allocator size-class edge: `table::tests::a_lineage_stays_small`).
//!
//! Why seconds are enough: `last_used` orders detached rings for eviction (least recently used
//! first) and starts their `--replay-ttl`. A stamp is the time rounded UP to the next second, so
//! an age read from it is never more than the real one and at most a second less: a ring never
//! expires early and at most a second late, on top of the sweep's own lateness (it runs every
//! `min(5 s, ttl / 2)`, `worker::RING_SWEEP_INTERVAL`), for a TTL meant in minutes (default 5 m)
//! to cover a client's reconnection. Eviction orders rings left in different seconds exactly;
//! rings left within the same second go oldest lineage first (any of them was idle as long, to
//! the second). A u32 of seconds lasts 136 years.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A moment on the coarse clock: seconds since the process's epoch, rounded up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct IdleStamp(u32);

/// The clock's zero: the first time any stamp is taken or read in this process.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl IdleStamp {
    /// `at`, rounded up to the next whole second (a moment before the epoch reads as 0).
    pub(crate) fn at(at: Instant) -> IdleStamp {
        let since = at.saturating_duration_since(epoch());
        let secs = since.as_secs() + u64::from(since.subsec_nanos() > 0);
        IdleStamp(u32::try_from(secs).unwrap_or(u32::MAX))
    }

    pub(crate) fn now() -> IdleStamp {
        IdleStamp::at(Instant::now())
    }

    /// How long before `now` this stamp is: never more than the time since the moment stamped,
    /// and less by under a second.
    pub(crate) fn age(self, now: Instant) -> Duration {
        now.saturating_duration_since(epoch() + Duration::from_secs(u64::from(self.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_age_is_never_more_than_the_real_one_and_less_by_under_a_second() {
        let start = Instant::now();
        for ms in [0u64, 1, 999, 1000, 1001, 2500, 59_999, 60_000] {
            let t = start + Duration::from_millis(ms);
            let stamp = IdleStamp::at(t);
            for later in [0u64, 1, 500, 999, 1000, 60_000] {
                let now = t + Duration::from_millis(later);
                let real = Duration::from_millis(later);
                let age = stamp.age(now);
                assert!(age <= real, "{ms} + {later}: {age:?} > {real:?}");
                assert!(
                    real - age < Duration::from_secs(1),
                    "{ms} + {later}: {age:?}"
                );
            }
        }
    }

    #[test]
    fn stamps_order_as_their_seconds_do() {
        let start = Instant::now();
        let a = IdleStamp::at(start);
        let b = IdleStamp::at(start + Duration::from_millis(1500));
        let c = IdleStamp::at(start + Duration::from_secs(3));
        assert!(a < b && b < c);
        assert!(IdleStamp::at(start) <= IdleStamp::at(start + Duration::from_millis(1)));
    }
}
