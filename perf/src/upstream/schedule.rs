//! Which event of an SSE stream goes out next, and when: the resume point, the connection's
//! fault, pacing, and how many events one write may carry. Pure code, on `std` time: both
//! origins drive it, `sse-upstream` from monoio and `sse-tokio` from tokio, so the two send
//! the same events in the same order and cannot drift apart (perf/NOTES.md, "Two origins").
//! How the events are written (one per write or batched, when to yield, heartbeats) is each
//! origin's own.
//!
//! Per write, an origin does:
//! ```text
//! take_due_fault()?      -> inject it (FIN | RST | stall, then restart_pace)
//! finished()?            -> end the body
//! due_at() in the future -> sleep until then
//! max = min(limit(), due_count(now), its own cap)
//! fill(fmt, out, max)    -> write `out`
//! ```

use std::time::{Duration, Instant};

use super::query::{parse_u64, ChaosKind, Fault, Resume, SseParams};
use super::sse::{now_us, EventFormat, WriteBuf, BATCH_BYTES};

/// The first id a response sends: `Last-Event-ID: k` (decimal, as both origins number events)
/// continues at k+1 unless `resume=ignore`; anything else starts at `start=` (1 unless given).
pub fn resume_point(p: &SseParams, last_event_id: Option<&str>) -> u64 {
    match (p.resume, last_event_id.and_then(parse_u64)) {
        (Resume::Honour, Some(k)) => k.saturating_add(1),
        _ => p.start,
    }
}

/// The fault of one connection that requested `target` and starts at `start`: drawn by
/// `chaos=N`, else the query's fault unless it is `fault_once` and the request resumes.
/// The chaos kind is returned so that the origin can count it when it injects it.
pub fn connection_fault(
    p: &SseParams,
    target: &str,
    start: u64,
    resuming: bool,
) -> (Option<ChaosKind>, Option<Fault>) {
    match p.chaos {
        Some(chaos) => {
            let (kind, fault) = chaos.draw(target, start);
            (Some(kind), Some(fault))
        }
        None => (None, p.fault.filter(|f| !(f.once && resuming))),
    }
}

/// Paced sending: event `seq` is due at `t0 + (seq - start) / rate`.
#[derive(Debug, Clone, Copy)]
struct Pace {
    /// When event `start` was due.
    t0: Instant,
    /// The first paced id.
    start: u64,
    /// Seconds between events.
    interval: f64,
}

impl Pace {
    /// When event `seq` is due.
    fn due(&self, seq: u64) -> Instant {
        self.t0 + Duration::from_secs_f64((seq - self.start) as f64 * self.interval)
    }

    /// How many events from `next` on are due at `now` (at least 1: `next` was waited for).
    fn due_count(&self, next: u64, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.t0).as_secs_f64();
        let last_due = self.start + (elapsed / self.interval).floor() as u64;
        (last_due + 1).saturating_sub(next).max(1)
    }
}

/// The event schedule of one SSE response on one connection.
#[derive(Debug, Clone)]
pub struct Schedule {
    /// Id of the logical stream's last event; 0 = infinite.
    last: u64,
    /// Id of the next event to send.
    next: u64,
    /// Complete events sent on this connection (what faults count).
    sent: u64,
    /// The fault still to inject on this connection.
    fault: Option<Fault>,
    /// Pacing; None when flat out (`rate=0`).
    pace: Option<Pace>,
}

impl Schedule {
    /// A stream of `p` from event `start` on, with `fault` to inject, paced from `now`.
    pub fn new(p: &SseParams, start: u64, fault: Option<Fault>, now: Instant) -> Self {
        Self {
            last: p.last,
            next: start,
            sent: 0,
            fault,
            pace: (p.rate > 0.0).then(|| Pace {
                t0: now,
                start,
                interval: 1.0 / p.rate,
            }),
        }
    }

    /// Id of the next event.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Every event of a finite stream is sent.
    pub fn finished(&self) -> bool {
        self.last != 0 && self.next > self.last
    }

    /// The fault is due now (as many complete events sent as it waits for).
    pub fn fault_due(&self) -> bool {
        self.fault.is_some_and(|f| f.after == self.sent)
    }

    /// The fault when it is due, taken out (it is injected once).
    pub fn take_due_fault(&mut self) -> Option<Fault> {
        if self.fault_due() {
            self.fault.take()
        } else {
            None
        }
    }

    /// Most events the next write may carry: none past the fault or the stream's end
    /// (`u64::MAX` for an infinite stream without a fault).
    pub fn limit(&self) -> u64 {
        let mut max = u64::MAX;
        if let Some(f) = self.fault {
            max = f.after - self.sent;
        }
        if self.last != 0 {
            max = max.min(self.last - self.next + 1);
        }
        max
    }

    /// When the next event is due; None when flat out (always due).
    pub fn due_at(&self) -> Option<Instant> {
        self.pace.map(|p| p.due(self.next))
    }

    /// How many events are due at `now` (at least 1: call it once `due_at` has passed;
    /// `u64::MAX` when flat out).
    pub fn due_count(&self, now: Instant) -> u64 {
        self.pace.map_or(u64::MAX, |p| p.due_count(self.next, now))
    }

    /// Marks the next event as sent and returns its id.
    pub fn advance(&mut self) -> u64 {
        let seq = self.next;
        self.next += 1;
        self.sent += 1;
        seq
    }

    /// Paces again from `now` on, after a stall: the stream carries on at its rate, not with a
    /// burst of the events it missed.
    pub fn restart_pace(&mut self, now: Instant) {
        if let Some(pace) = &mut self.pace {
            pace.t0 = now;
            pace.start = self.next;
        }
    }

    /// Formats events from the next one on into `out`'s payload, stamped with the time of
    /// formatting, until `max` events or [`BATCH_BYTES`] of payload (a write may overshoot
    /// by one event). Returns how many it formatted.
    pub fn fill(&mut self, fmt: &EventFormat, out: &mut WriteBuf, max: u64) -> u64 {
        let mut n = 0;
        while n < max && out.payload_len() < BATCH_BYTES {
            let seq = self.advance();
            fmt.event(out.payload(), seq, now_us());
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::query::FaultKind;

    #[test]
    fn pace_due_counts() {
        let pace = Pace {
            t0: Instant::now(),
            start: 5,
            interval: 0.01,
        };
        assert_eq!(pace.due(5), pace.t0);
        assert_eq!(pace.due_count(5, pace.t0), 1);
        assert_eq!(pace.due_count(5, pace.t0 + Duration::from_millis(35)), 4);
        assert_eq!(pace.due_count(8, pace.t0 + Duration::from_millis(35)), 1);
        // Never 0: the caller waited for `next`.
        assert_eq!(pace.due_count(20, pace.t0), 1);
    }

    #[test]
    fn resume_points() {
        let p = SseParams::parse("start=4").unwrap();
        assert_eq!(resume_point(&p, None), 4);
        assert_eq!(resume_point(&p, Some("7")), 8);
        assert_eq!(resume_point(&p, Some("x7")), 4);
        let ignore = SseParams::parse("resume=ignore").unwrap();
        assert_eq!(resume_point(&ignore, Some("7")), 1);
    }

    #[test]
    fn fault_once_spares_resuming_requests() {
        let p = SseParams::parse("close_after=2&fault_once=1").unwrap();
        assert_eq!(connection_fault(&p, "/sse", 1, true), (None, None));
        let (_, fault) = connection_fault(&p, "/sse", 1, false);
        assert_eq!(
            fault.map(|f| (f.kind, f.after)),
            Some((FaultKind::Close, 2))
        );
        let chaos = SseParams::parse("chaos=3").unwrap();
        let (kind, fault) = connection_fault(&chaos, "/sse?chaos=3", 1, true);
        assert!(kind.is_some() && fault.is_some());
    }

    #[test]
    fn limits_stop_at_the_fault_and_the_end() {
        let now = Instant::now();
        let p = SseParams::parse("events=5&close_after=3").unwrap();
        let mut s = Schedule::new(&p, 1, p.fault, now);
        assert_eq!(
            (s.limit(), s.due_at(), s.due_count(now)),
            (3, None, u64::MAX)
        );
        let fmt = EventFormat::from_params(&p);
        let mut out = WriteBuf::new(false);
        out.begin();
        assert_eq!(s.fill(&fmt, &mut out, s.limit()), 3);
        assert_eq!(s.take_due_fault().map(|f| f.after), Some(3));
        assert!(s.take_due_fault().is_none());
        assert_eq!((s.next(), s.limit()), (4, 2));
        s.advance();
        s.advance();
        assert!(s.finished());
        let endless = SseParams::parse("events=0").unwrap();
        assert_eq!(Schedule::new(&endless, 1, None, now).limit(), u64::MAX);
    }

    #[test]
    fn fill_stops_past_batch_bytes() {
        let p = SseParams::parse("events=0&size=1000").unwrap();
        let mut s = Schedule::new(&p, 1, None, Instant::now());
        let mut out = WriteBuf::new(true);
        out.begin();
        let n = s.fill(&EventFormat::from_params(&p), &mut out, u64::MAX);
        assert!(out.payload_len() >= BATCH_BYTES && out.payload_len() < BATCH_BYTES + 1100);
        assert_eq!(s.next(), n + 1);
    }

    #[test]
    fn paced_schedule_restarts_after_a_stall() {
        let t0 = Instant::now();
        let p = SseParams::parse("rate=100").unwrap();
        let mut s = Schedule::new(&p, 1, None, t0);
        assert_eq!(s.due_at(), Some(t0));
        assert_eq!(s.due_count(t0 + Duration::from_millis(25)), 3);
        s.advance();
        assert_eq!(s.due_at(), Some(t0 + Duration::from_millis(10)));
        let later = t0 + Duration::from_secs(5);
        s.restart_pace(later);
        assert_eq!(s.due_at(), Some(later));
        assert_eq!(s.due_count(later), 1);
    }
}
