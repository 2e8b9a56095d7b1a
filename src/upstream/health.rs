//! Passive health of upstream replicas: what the tries of real requests show about each replica,
//! and the order in which the next request tries them.
//!
//! A replica whose last `--upstream-eject-after` tries all failed (a connect refused, timed out
//! or failed; a connection closed or reset before the response head; a 5xx answer) is *ejected*:
//! skipped when choosing a replica for `--upstream-eject-for`. After that it is on *probation*:
//! chosen again in turn, and its next try decides (a success puts it back in rotation, a failure
//! ejects it again at once, without waiting for N more). Ejection never makes a request fail that
//! could have been served: the ejected replicas still come last in every request's order (least
//! recently ejected first), so when every replica is ejected they are tried anyway.
//!
//! Connect failures and 5xx answers share one count, as in Envoy's `consecutive_5xx` (which
//! counts local connect failures as 5xx by default): either way the replica failed the try. A
//! successful TCP connect alone proves little (a process that accepts then resets every
//! connection still "connects"), so only a response head that is not 5xx resets the count.
//! Tries that show nothing about the replica count neither way: a pooled connection the upstream
//! had closed (the keep-alive race), a client that left, an answer slower than
//! `--upstream-header-timeout` (it may be a long poll).
//!
//! Per worker, not shared: each worker keeps its own state in plain `Cell`s, read and written on
//! the request path without a lock or an atomic. That is enough because each worker sees a share
//! of the traffic large enough to learn from on its own (SO_REUSEPORT spreads connections evenly),
//! and a replica that is down fails every worker's tries alike: each worker ejects it after its
//! own N failures, so a dead replica costs at most N failed tries per worker (refusals take
//! microseconds) instead of N in all, and a broadcast between workers, with its cross-thread
//! traffic on every outcome, would save only those few tries.

use std::cell::Cell;
use std::fmt;
use std::time::{Duration, Instant};

/// `--upstream-eject-after`'s default: failed tries in a row that eject a replica.
pub(crate) const DEFAULT_EJECT_AFTER: u32 = 5;

/// An ejection period too long for the clock to represent (hundreds of years given as a flag)
/// ends after this instead, in effect never.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// When replicas are ejected and for how long, from `--upstream-eject-after` and
/// `--upstream-eject-for`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EjectPolicy {
    /// Failed tries in a row that eject a replica; 0 turns ejection off.
    pub after: u32,
    /// How long an ejected replica is skipped; zero also turns ejection off.
    pub period: Duration,
}

impl EjectPolicy {
    fn enabled(&self) -> bool {
        self.after > 0 && !self.period.is_zero()
    }
}

/// Why one try of a replica failed, as passive health counts it (and logs the last one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailedTry {
    /// The connection was refused, timed out or failed (every address of the replica).
    Connect,
    /// The connection closed or was reset before a complete response head (fresh connections
    /// only: a pooled one may have been closed by the upstream's idle timeout a moment ago).
    ClosedBeforeHead,
    /// The replica answered with this 5xx status.
    Status(u16),
}

impl fmt::Display for FailedTry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailedTry::Connect => f.write_str("connect failed"),
            FailedTry::ClosedBeforeHead => f.write_str("closed before answering"),
            FailedTry::Status(status) => write!(f, "answered {status}"),
        }
    }
}

/// One replica's passive-health state on one worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplicaState {
    /// In rotation; its last `failures` tries failed (always below the policy's threshold).
    Healthy { failures: u32 },
    /// Skipped when choosing until `until`. `since` orders the last resort: the least recently
    /// ejected replica is tried first (its period is the nearest to ending).
    Ejected { since: Instant, until: Instant },
    /// Its period is over: in rotation again, and its next try decides.
    Probation,
}

impl ReplicaState {
    /// The name `/streams` shows.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ReplicaState::Healthy { .. } => "healthy",
            ReplicaState::Ejected { .. } => "ejected",
            ReplicaState::Probation => "probation",
        }
    }
}

/// What a failed try did to its replica, for the caller's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ejection {
    /// Ejected after this many failed tries in a row.
    AfterFailures(u32),
    /// Failed its first try after its period: ejected again at once.
    FailedProbation,
}

/// What a successful try did to its replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// Nothing changed (the usual case) or only its count of failures went back to zero.
    None,
    /// It was on probation and is back in rotation.
    BackInRotation,
}

/// One replica's record on this worker.
#[derive(Debug)]
struct ReplicaRecord {
    state: Cell<ReplicaState>,
    /// Times this worker ejected the replica (`tether_upstream_ejections_total`).
    ejections: Cell<u64>,
}

impl ReplicaRecord {
    fn healthy() -> Self {
        ReplicaRecord {
            state: Cell::new(ReplicaState::Healthy { failures: 0 }),
            ejections: Cell::new(0),
        }
    }
}

/// A plain copy of one replica's health on one worker, for `/streams` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReplicaReport {
    /// The replica's URL as given.
    pub url: String,
    pub state: &'static str,
    /// Failed tries in a row so far (while healthy).
    pub failures: u32,
    pub ejections: u64,
    /// While ejected: how long until it is tried again.
    pub back_in: Option<Duration>,
}

impl ReplicaReport {
    pub(crate) fn is_ejected(&self) -> bool {
        self.back_in.is_some()
    }
}

/// A worker's passive-health state of one group of replicas (indexed like the group).
#[derive(Debug)]
pub(crate) struct ReplicaHealth {
    policy: EjectPolicy,
    /// Grows when a reload brings new replicas (`grow`); never shrinks, so a replica keeps its
    /// record (and its index) across reloads.
    replicas: Vec<ReplicaRecord>,
    /// Replicas in the `Ejected` state (some perhaps past their period, not yet looked at). While
    /// it is zero, the common case, choosing is plain round robin: no clock read, no allocation.
    ejected: Cell<usize>,
}

impl ReplicaHealth {
    pub(crate) fn new(replicas: usize, policy: EjectPolicy) -> Self {
        ReplicaHealth {
            policy,
            replicas: (0..replicas).map(|_| ReplicaRecord::healthy()).collect(),
            ejected: Cell::new(0),
        }
    }

    /// After a reload: records for the replicas it brought (healthy), and the new policy. The
    /// replicas already known keep their state: an ejected one stays ejected until the end of
    /// the period it was given.
    pub(crate) fn grow(&mut self, replicas: usize, policy: EjectPolicy) {
        if replicas > self.replicas.len() {
            self.replicas.resize_with(replicas, ReplicaRecord::healthy);
        }
        self.policy = policy;
    }

    /// How long an ejection lasts.
    pub(crate) fn period(&self) -> Duration {
        self.policy.period
    }

    /// `replica`'s state as of `now` (an ejection whose period is over becomes probation).
    pub(crate) fn state(&self, replica: usize, now: Instant) -> ReplicaState {
        self.expire(replica, now);
        self.replicas[replica].state.get()
    }

    /// Times this worker ejected `replica`.
    pub(crate) fn ejections(&self, replica: usize) -> u64 {
        self.replicas[replica].ejections.get()
    }

    /// A try of `replica` failed at `now`. Some when that ejected it.
    ///
    /// A failure while the replica is ejected changes nothing (it was tried as a last resort, or
    /// the try began before the ejection): its period is not extended, so that it is tried
    /// again on schedule.
    pub(crate) fn record_failure(&self, replica: usize, now: Instant) -> Option<Ejection> {
        if !self.policy.enabled() {
            return None;
        }
        self.expire(replica, now);
        let record = &self.replicas[replica];
        let ejection = match record.state.get() {
            ReplicaState::Healthy { failures } => {
                let failures = failures.saturating_add(1);
                if failures < self.policy.after {
                    record.state.set(ReplicaState::Healthy { failures });
                    return None;
                }
                Ejection::AfterFailures(failures)
            }
            ReplicaState::Probation => Ejection::FailedProbation,
            ReplicaState::Ejected { .. } => return None,
        };
        let until = now.checked_add(self.policy.period).unwrap_or(now + FOREVER);
        record
            .state
            .set(ReplicaState::Ejected { since: now, until });
        record.ejections.set(record.ejections.get() + 1);
        self.ejected.set(self.ejected.get() + 1);
        Some(ejection)
    }

    /// A try of `replica` got a response head that is not 5xx. A success while the replica is
    /// ejected changes nothing either: it comes back through probation, on schedule, so that
    /// one lucky answer among failures does not undo the ejection.
    pub(crate) fn record_success(&self, replica: usize) -> Recovery {
        let record = &self.replicas[replica];
        match record.state.get() {
            ReplicaState::Healthy { failures: 0 } | ReplicaState::Ejected { .. } => Recovery::None,
            ReplicaState::Healthy { .. } => {
                record.state.set(ReplicaState::Healthy { failures: 0 });
                Recovery::None
            }
            ReplicaState::Probation => {
                record.state.set(ReplicaState::Healthy { failures: 0 });
                Recovery::BackInRotation
            }
        }
    }

    /// The order in which a request tries `candidates` (replicas in the order the group would
    /// try them, round robin): those in rotation (healthy or on probation) as given, then the
    /// ejected ones, least recently ejected first.
    pub(crate) fn try_order<I>(&self, candidates: I) -> TryOrder<I>
    where
        I: Iterator<Item = usize>,
    {
        if self.ejected.get() == 0 {
            return TryOrder::AsGiven { candidates };
        }
        self.try_order_at(candidates, Instant::now())
    }

    fn try_order_at<I>(&self, candidates: I, now: Instant) -> TryOrder<I>
    where
        I: Iterator<Item = usize>,
    {
        let mut order = Vec::with_capacity(self.replicas.len());
        let mut ejected = Vec::new();
        for replica in candidates {
            match self.state(replica, now) {
                ReplicaState::Ejected { since, .. } => ejected.push((since, replica)),
                ReplicaState::Healthy { .. } | ReplicaState::Probation => order.push(replica),
            }
        }
        // Stable: replicas ejected at the same instant keep their round-robin order.
        ejected.sort_by_key(|&(since, _)| since);
        order.extend(ejected.into_iter().map(|(_, replica)| replica));
        TryOrder::Listed { order, next: 0 }
    }

    /// Every replica's health as of `now`, named by `urls` (indexed like the group).
    pub(crate) fn report<'u>(
        &self,
        urls: impl Iterator<Item = &'u str>,
        now: Instant,
    ) -> Vec<ReplicaReport> {
        urls.enumerate()
            .map(|(replica, url)| {
                let state = self.state(replica, now);
                ReplicaReport {
                    url: url.to_string(),
                    state: state.name(),
                    failures: match state {
                        ReplicaState::Healthy { failures } => failures,
                        _ => 0,
                    },
                    ejections: self.ejections(replica),
                    back_in: match state {
                        ReplicaState::Ejected { until, .. } => Some(until - now),
                        _ => None,
                    },
                }
            })
            .collect()
    }

    /// Ends `replica`'s ejection once its period is over. Done lazily, when the state is looked
    /// at, so that no timer runs per ejected replica.
    fn expire(&self, replica: usize, now: Instant) {
        let record = &self.replicas[replica];
        if let ReplicaState::Ejected { until, .. } = record.state.get() {
            if now >= until {
                debug_assert!(self.ejected.get() > 0, "an ejected replica is counted");
                record.state.set(ReplicaState::Probation);
                self.ejected.set(self.ejected.get() - 1);
            }
        }
    }
}

/// The replicas one request tries, in order (see [`ReplicaHealth::try_order`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TryOrder<I> {
    /// Nothing is ejected: the candidates as the group gave them (no clock read, no allocation).
    AsGiven { candidates: I },
    /// Some replica is ejected: the order, worked out once when the request began.
    Listed { order: Vec<usize>, next: usize },
}

impl<I: Iterator<Item = usize>> Iterator for TryOrder<I> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        match self {
            TryOrder::AsGiven { candidates } => candidates.next(),
            TryOrder::Listed { order, next } => {
                let replica = order.get(*next).copied()?;
                *next += 1;
                Some(replica)
            }
        }
    }
}

/// Every replica of a group of `len` from `start`, in turn: the round robin the try order
/// starts from.
pub(crate) fn round_robin(start: usize, len: usize) -> impl Iterator<Item = usize> {
    (0..len).map(move |i| (start + i) % len)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_secs(10);

    fn health(replicas: usize, after: u32) -> ReplicaHealth {
        ReplicaHealth::new(
            replicas,
            EjectPolicy {
                after,
                period: PERIOD,
            },
        )
    }

    /// The count kept for the fast path, after every expired ejection was looked at.
    fn ejected_count(h: &ReplicaHealth, now: Instant) -> usize {
        for replica in 0..h.replicas.len() {
            h.expire(replica, now);
        }
        h.ejected.get()
    }

    fn order_at(h: &ReplicaHealth, start: usize, now: Instant) -> Vec<usize> {
        h.try_order_at(round_robin(start, h.replicas.len()), now)
            .collect()
    }

    #[test]
    fn n_failures_in_a_row_eject_and_fewer_do_not() {
        let h = health(2, 3);
        let t0 = Instant::now();
        assert_eq!(h.record_failure(0, t0), None);
        assert_eq!(h.record_failure(0, t0), None);
        assert_eq!(
            h.state(0, t0),
            ReplicaState::Healthy { failures: 2 },
            "two of three"
        );
        assert_eq!(h.record_failure(0, t0), Some(Ejection::AfterFailures(3)));
        assert_eq!(
            h.state(0, t0),
            ReplicaState::Ejected {
                since: t0,
                until: t0 + PERIOD
            }
        );
        assert_eq!((h.ejections(0), ejected_count(&h, t0)), (1, 1));
        assert_eq!(h.state(1, t0), ReplicaState::Healthy { failures: 0 });
    }

    #[test]
    fn a_success_resets_the_count() {
        let h = health(1, 3);
        let t0 = Instant::now();
        h.record_failure(0, t0);
        h.record_failure(0, t0);
        assert_eq!(h.record_success(0), Recovery::None);
        assert_eq!(h.state(0, t0), ReplicaState::Healthy { failures: 0 });
        h.record_failure(0, t0);
        h.record_failure(0, t0);
        assert_eq!(
            h.record_failure(0, t0),
            Some(Ejection::AfterFailures(3)),
            "three in a row again"
        );
    }

    #[test]
    fn an_ejection_ends_in_probation_after_its_period() {
        let h = health(1, 1);
        let t0 = Instant::now();
        h.record_failure(0, t0);
        assert_eq!(h.state(0, t0 + PERIOD / 2).name(), "ejected");
        assert_eq!(h.state(0, t0 + PERIOD), ReplicaState::Probation);
        assert_eq!(ejected_count(&h, t0 + PERIOD), 0);
        assert_eq!(h.record_success(0), Recovery::BackInRotation);
        assert_eq!(
            h.state(0, t0 + PERIOD),
            ReplicaState::Healthy { failures: 0 }
        );
        assert_eq!(h.ejections(0), 1);
    }

    #[test]
    fn a_failure_on_probation_ejects_again_at_once() {
        let h = health(1, 5);
        let t0 = Instant::now();
        for _ in 0..5 {
            h.record_failure(0, t0);
        }
        let back = t0 + PERIOD;
        assert_eq!(h.state(0, back), ReplicaState::Probation);
        assert_eq!(h.record_failure(0, back), Some(Ejection::FailedProbation));
        assert_eq!(
            h.state(0, back),
            ReplicaState::Ejected {
                since: back,
                until: back + PERIOD
            }
        );
        assert_eq!((h.ejections(0), ejected_count(&h, back)), (2, 1));
    }

    #[test]
    fn outcomes_while_ejected_change_nothing() {
        let h = health(1, 1);
        let t0 = Instant::now();
        h.record_failure(0, t0);
        let ejected = h.state(0, t0);
        assert_eq!(h.record_failure(0, t0 + PERIOD / 2), None, "not extended");
        assert_eq!(h.record_success(0), Recovery::None, "not cut short");
        assert_eq!(h.state(0, t0 + PERIOD / 2), ejected);
        assert_eq!((h.ejections(0), ejected_count(&h, t0)), (1, 1));
    }

    #[test]
    fn zero_turns_ejection_off() {
        for h in [
            health(1, 0),
            ReplicaHealth::new(
                1,
                EjectPolicy {
                    after: 3,
                    period: Duration::ZERO,
                },
            ),
        ] {
            let t0 = Instant::now();
            for _ in 0..100 {
                assert_eq!(h.record_failure(0, t0), None);
            }
            assert_eq!(h.state(0, t0), ReplicaState::Healthy { failures: 0 });
            assert_eq!(h.try_order(round_robin(0, 1)).collect::<Vec<_>>(), [0]);
        }
    }

    #[test]
    fn a_period_past_the_clock_does_not_overflow() {
        let h = ReplicaHealth::new(
            1,
            EjectPolicy {
                after: 1,
                period: Duration::MAX,
            },
        );
        let t0 = Instant::now();
        assert!(h.record_failure(0, t0).is_some());
        assert_eq!(h.state(0, t0 + PERIOD).name(), "ejected");
    }

    #[test]
    fn round_robin_while_nothing_is_ejected() {
        let h = health(3, 2);
        assert_eq!(
            h.try_order(round_robin(1, 3)).collect::<Vec<_>>(),
            [1, 2, 0]
        );
        assert!(matches!(
            h.try_order(round_robin(1, 3)),
            TryOrder::AsGiven { .. }
        ));
        h.record_failure(1, Instant::now());
        assert!(
            matches!(h.try_order(round_robin(1, 3)), TryOrder::AsGiven { .. }),
            "a failure short of ejection changes no order"
        );
    }

    #[test]
    fn ejected_replicas_come_last_least_recently_ejected_first() {
        let h = health(4, 1);
        let t0 = Instant::now();
        h.record_failure(2, t0);
        h.record_failure(0, t0 + Duration::from_secs(1));
        assert_eq!(order_at(&h, 0, t0 + Duration::from_secs(2)), [1, 3, 2, 0]);
        assert_eq!(order_at(&h, 3, t0 + Duration::from_secs(2)), [3, 1, 2, 0]);
        // Replica 2's period ends first: on probation, it is back in turn.
        assert_eq!(order_at(&h, 1, t0 + PERIOD), [1, 2, 3, 0]);
    }

    #[test]
    fn a_group_of_some_replicas_keeps_its_own_order() {
        // A group that serves replicas 3 and 1 of five, in that order.
        let h = health(5, 1);
        let t0 = Instant::now();
        h.record_failure(3, t0);
        h.record_failure(0, t0);
        assert_eq!(
            h.try_order_at([3, 1].into_iter(), t0).collect::<Vec<_>>(),
            [1, 3]
        );
    }

    #[test]
    fn when_every_replica_is_ejected_all_are_still_tried() {
        let h = health(3, 1);
        let t0 = Instant::now();
        h.record_failure(1, t0);
        h.record_failure(2, t0 + Duration::from_millis(1));
        h.record_failure(0, t0 + Duration::from_millis(2));
        let now = t0 + Duration::from_secs(1);
        assert_eq!(ejected_count(&h, now), 3);
        for start in 0..3 {
            assert_eq!(order_at(&h, start, now), [1, 2, 0], "from {start}");
        }
    }

    #[test]
    fn reports_name_states_and_time_left() {
        let h = health(2, 2);
        let t0 = Instant::now();
        h.record_failure(0, t0);
        h.record_failure(1, t0);
        h.record_failure(1, t0);
        let reports = h.report(
            ["http://a", "http://b"].into_iter(),
            t0 + Duration::from_secs(4),
        );
        assert_eq!(
            reports,
            [
                ReplicaReport {
                    url: "http://a".into(),
                    state: "healthy",
                    failures: 1,
                    ejections: 0,
                    back_in: None,
                },
                ReplicaReport {
                    url: "http://b".into(),
                    state: "ejected",
                    failures: 0,
                    ejections: 1,
                    back_in: Some(Duration::from_secs(6)),
                },
            ]
        );
    }
}
