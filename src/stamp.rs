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

/// `clock` in nanoseconds, plus one (never 0).
#[inline(always)]
fn read_nanos(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to write into; both clocks read here exist on every Linux this
    // runs on (CLOCK_MONOTONIC_COARSE since 2.6.32), and the vDSO answers them without a
    // syscall, as for `Instant::now`.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
        .wrapping_add(1)
}

/// CLOCK_MONOTONIC in nanoseconds, plus one (never 0).
#[inline]
fn clock_nanos() -> u64 {
    read_nanos(libc::CLOCK_MONOTONIC)
}

/// CLOCK_MONOTONIC_COARSE in nanoseconds, plus one: the clock `clock_nanos` reads, as of the
/// kernel's last tick. ~5 ns a read against ~24 for CLOCK_MONOTONIC on this box (no TSC read
/// under the hypervisor's clock): what keep-alive's per-request deadlines and pool stamps
/// read (perf/NOTES.md, "Keep-alive: who reads the clock").
#[inline]
fn coarse_nanos() -> u64 {
    read_nanos(libc::CLOCK_MONOTONIC_COARSE)
}

/// The coarse clock's ticks allowed as its lag behind CLOCK_MONOTONIC. It is one tick by
/// definition (4.08 ms at most over 100M paired reads on this box at load 2.5); when the CPU that
/// keeps time is held off (a hypervisor's pause) another takes the duty over after five stalled
/// ticks (MAX_STALLED_JIFFIES, kernel/time/tick-sched.c), so five bound it.
const COARSE_LAG_TICKS: u64 = 5;

/// How far the coarse clock may be behind `clock_nanos` (read once: its resolution is the
/// kernel's tick, fixed at boot).
fn coarse_lag_nanos() -> u64 {
    static LAG: OnceLock<u64> = OnceLock::new();
    *LAG.get_or_init(|| {
        let mut res = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid timespec to write into.
        let ok = unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC_COARSE, &mut res) } == 0;
        // A kernel that cannot say: 10 ms, the longest tick Linux has (HZ=100).
        let tick = if ok {
            (res.tv_sec as u64) * 1_000_000_000 + res.tv_nsec as u64
        } else {
            10_000_000
        };
        tick * COARSE_LAG_TICKS
    })
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

    /// A moment no earlier than now, and at most `COARSE_LAG_TICKS` kernel ticks (20 ms at
    /// HZ=250) after it, read from the coarse clock (a fifth of `now`'s cost). For deadlines of
    /// I/O limits, which may fire a few ms late but never early.
    #[inline]
    pub(crate) fn now_or_later() -> Stamp {
        Stamp::from_nanos(coarse_nanos().saturating_add(coarse_lag_nanos()))
    }

    /// One reading of the coarse clock as two bounds on now: a moment no later than now (at
    /// most `COARSE_LAG_TICKS` kernel ticks before it) and `now_or_later`'s. The first is for a
    /// stamp whose age decides an expiry that may come sooner but never later (a pooled
    /// connection's); its age reckoned against a later `now_or_later` reads old by up to
    /// twice the lag, never young.
    #[inline]
    pub(crate) fn now_bounds() -> (Stamp, Stamp) {
        let coarse = coarse_nanos();
        (
            Stamp::from_nanos(coarse),
            Stamp::from_nanos(coarse.saturating_add(coarse_lag_nanos())),
        )
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
    fn the_coarse_bounds_hold_the_clock_between_them() {
        // What every coarse deadline and pool age rests on: the coarse clock's two bounds hold
        // a moment between them that lies between two CLOCK_MONOTONIC reads around them (the
        // thread may be preempted anywhere, so each bound is checked against the read on its
        // safe side: the lower bound against the read after, the upper against the read before).
        for _ in 0..200_000 {
            let before = Stamp::now();
            let (earlier, later) = Stamp::now_bounds();
            let after = Stamp::now();
            assert!(earlier <= after, "{earlier:?} after {after:?}");
            assert!(later >= before, "{later:?} before {before:?}");
            let before = Stamp::now();
            assert!(Stamp::now_or_later() >= before);
        }
        // Five ticks of at most 10 ms (HZ=100, Linux's longest).
        assert!(coarse_lag_nanos() <= 50_000_000, "{}", coarse_lag_nanos());
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
