//! One SSE response: resume point, pacing, batching, heartbeats and injected faults.
//!
//! Flush rule, enforced in [`SseStream::flush`]: every write goes to the socket at once.
//! Events are coalesced only when several are already due (flat out, or a paced stream that
//! fell behind), up to [`BATCH_BYTES`] per write; `batch=1` forbids even that. A paced
//! stream never waits to fill a write.
//!
//! Loop, per write:
//! ```text
//! fault due (sent == after)?  -> [half event], then FIN | RST | stall-then-continue
//! stream finished?            -> last-chunk (chunked) / close (close-delimited)
//! paced? wait until next is due (heartbeats while waiting); take every due event
//! format up to BATCH_BYTES of events (never past the fault or the end) and write them
//! ```

use std::time::Duration;

use monoio::buf::IoBuf;
use monoio::time::Instant;

use super::conn::{now_us, Conn, Next};
use super::http::{push_hex, write_head, RequestHead, ResponseBody};
use super::kill::yield_now;
use super::query::{parse_u64, ChaosKind, Fault, FaultKind, Resume, SseFraming, SseParams};
use super::sse::{first_half, prelude, EventFormat, WriteBuf, BATCH_BYTES};

/// Answers `GET|POST|HEAD /sse` (the request body, if any, was already read).
pub(crate) async fn serve_sse(
    conn: &mut Conn,
    head: &RequestHead,
    p: &SseParams,
    close: bool,
) -> Next {
    let head_only = head.method == "HEAD";
    let resuming = head.last_event_id.is_some();

    if let (Some(code), true) = (p.resume_status, resuming) {
        let n = conn.worker.shared.bump_resume_status(&head.target);
        if p.resume_status_times.is_none_or(|times| n <= times) {
            let body = format!("resume refused with {code}\n");
            return conn.simple(code, &body, close, head_only).await;
        }
    }

    // Resume point: `Last-Event-ID: k` (decimal, as this server numbers events) continues
    // at k+1; anything else starts at `start=` (1 unless given).
    let start = match (p.resume, head.last_event_id.as_deref().and_then(parse_u64)) {
        (Resume::Honour, Some(k)) => k.saturating_add(1),
        _ => p.start,
    };
    let (chaos_kind, fault) = match p.chaos {
        Some(chaos) => {
            let (kind, fault) = chaos.draw(&head.target, start);
            (Some(kind), Some(fault))
        }
        None => (None, p.fault.filter(|f| !(f.once && resuming))),
    };
    let framing = match p.framing {
        // HTTP/1.0 has no chunked coding: fall back to close-delimited.
        SseFraming::Chunked if head.version_minor == 0 => SseFraming::Close,
        f => f,
    };
    let fmt = EventFormat::from_params(p);
    let mut pre = Vec::new();
    prelude(&mut pre, p, start);

    let body = match framing {
        SseFraming::Chunked => ResponseBody::Chunked,
        SseFraming::Close => ResponseBody::UntilClose,
        SseFraming::Length => {
            ResponseBody::Length(pre.len() as u64 + events_len(&fmt, start, p.last))
        }
    };
    let close = close || framing == SseFraming::Close;
    let mut out = Vec::with_capacity(256 + pre.len());
    write_head(
        &mut out,
        200,
        Some("text/event-stream"),
        body,
        close,
        &[("Cache-Control", "no-cache")],
    );
    if head_only {
        return match conn.write(out).await.0 {
            Ok(()) if close => Next::Close,
            Ok(()) => Next::KeepAlive,
            Err(_) => Next::Gone,
        };
    }
    // The head goes out at once, with the prelude (BOM, retry, priming) as its first chunk.
    if !pre.is_empty() {
        if framing == SseFraming::Chunked {
            push_hex(&mut out, pre.len() as u64);
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(&pre);
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(&pre);
        }
    }
    drop(pre);
    if conn.write(out).await.0.is_err() {
        return Next::Gone;
    }

    let pace = (p.rate > 0.0).then(|| Pace::new(start, p.rate));
    let mut stream = SseStream {
        conn,
        fmt,
        chunked: framing == SseFraming::Chunked,
        last: p.last,
        next: start,
        sent: 0,
        fault,
        chaos_kind,
        pace,
        one_per_write: p.one_write_per_event,
        heartbeat: p.heartbeat,
        out: WriteBuf::new(framing == SseFraming::Chunked),
        last_write: Instant::now(),
        at_end: match framing {
            SseFraming::Close => Next::Close,
            _ if close => Next::Close,
            _ => Next::KeepAlive,
        },
    };
    stream.run().await
}

/// Total wire length of events `start..=last` (0 when `start > last`). Event length depends
/// only on the number of digits of its id, so this is one format per digit count.
fn events_len(fmt: &EventFormat, start: u64, last: u64) -> u64 {
    let mut total = 0u64;
    let mut lo = 1u64;
    for _digits in 1..=20 {
        let hi = lo.saturating_mul(10).saturating_sub(1);
        let (a, b) = (start.max(lo), last.min(hi));
        if a <= b {
            total += (b - a + 1) * fmt.event_len(a) as u64;
        }
        if hi == u64::MAX || hi >= last {
            break;
        }
        lo = hi + 1;
    }
    total
}

/// Paced sending: event `seq` is due at `t0 + (seq - start) / rate`.
struct Pace {
    /// When the first paced event was due.
    t0: Instant,
    /// Its id.
    start: u64,
    /// Seconds between events.
    interval: f64,
}

impl Pace {
    fn new(start: u64, rate: f64) -> Self {
        Self {
            t0: Instant::now(),
            start,
            interval: 1.0 / rate,
        }
    }

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

/// The state of one SSE response body being written.
struct SseStream<'a> {
    conn: &'a mut Conn,
    fmt: EventFormat,
    /// Every write is one chunk.
    chunked: bool,
    /// Id of the last event of the logical stream; 0 = infinite.
    last: u64,
    /// Id of the next event to send.
    next: u64,
    /// Complete events sent on this connection (what faults count).
    sent: u64,
    /// The fault still to inject on this connection.
    fault: Option<Fault>,
    /// The kind `chaos=N` drew for it, counted when it is injected.
    chaos_kind: Option<ChaosKind>,
    /// Pacing, None when flat out.
    pace: Option<Pace>,
    /// `batch=1`.
    one_per_write: bool,
    /// `heartbeat_ms`.
    heartbeat: Option<Duration>,
    /// The bytes of the current write.
    out: WriteBuf,
    /// When the last write went out (heartbeats count from it).
    last_write: Instant,
    /// What the connection does after a complete stream.
    at_end: Next,
}

impl SseStream<'_> {
    fn finished(&self) -> bool {
        self.last != 0 && self.next > self.last
    }

    fn fault_due(&self) -> bool {
        self.fault.is_some_and(|f| f.after == self.sent)
    }

    async fn run(&mut self) -> Next {
        loop {
            if self.conn.killed() {
                return Next::Gone;
            }
            if let Some(fault) = self.fault.filter(|f| f.after == self.sent) {
                self.fault = None;
                if let Some(next) = self.inject(fault).await {
                    return next;
                }
                continue;
            }
            if self.finished() {
                return self.end().await;
            }

            // How many events this write may carry.
            let mut max = u64::MAX;
            if let Some(f) = self.fault {
                max = f.after - self.sent;
            }
            if self.last != 0 {
                max = max.min(self.last - self.next + 1);
            }
            if self.one_per_write {
                max = 1;
            }
            let mut slept = false;
            if let Some(due) = self.pace.as_ref().map(|p| p.due(self.next)) {
                match self.wait_until(due).await {
                    Some(s) => slept = s,
                    None => return Next::Gone,
                }
                if let Some(pace) = &self.pace {
                    max = max.min(pace.due_count(self.next, Instant::now()));
                }
            }

            self.out.begin();
            let mut n = 0;
            while n < max && self.out.payload_len() < BATCH_BYTES {
                self.fmt.event(self.out.payload(), self.next, now_us());
                self.next += 1;
                self.sent += 1;
                n += 1;
            }
            let last = self.chunked && self.finished() && !self.fault_due();
            if !self.flush(last).await {
                return Next::Gone;
            }
            if last {
                return self.at_end;
            }
            if !slept {
                // Flat out (or behind schedule): let the other connections run.
                yield_now().await;
            }
        }
    }

    /// Ends a complete stream: the last-chunk when chunked.
    async fn end(&mut self) -> Next {
        if self.chunked {
            self.out.begin();
            if !self.flush(true).await {
                return Next::Gone;
            }
        }
        self.at_end
    }

    /// Sends the current write buffer at once. False when the socket failed.
    async fn flush(&mut self, last_chunk: bool) -> bool {
        let start = self.out.finish(last_chunk);
        let buf = self.out.take();
        let (res, slice) = self.conn.write(buf.slice(start..)).await;
        self.out.restore(slice.into_inner());
        self.last_write = Instant::now();
        res.is_ok()
    }

    /// Waits until `due`, sending heartbeats when idle that long. Some(true) if it slept,
    /// Some(false) if `due` had passed already, None when killed or the socket failed.
    async fn wait_until(&mut self, due: Instant) -> Option<bool> {
        let mut slept = false;
        loop {
            let now = Instant::now();
            if now >= due {
                return Some(slept);
            }
            let wake = match self.heartbeat {
                Some(h) => due.min(self.last_write + h),
                None => due,
            };
            if wake > now {
                if !self.conn.sleep_until(wake).await {
                    return None;
                }
                slept = true;
            }
            if let Some(h) = self.heartbeat {
                let now = Instant::now();
                if now < due && now >= self.last_write + h {
                    self.out.begin();
                    self.fmt.heartbeat(self.out.payload());
                    if !self.flush(false).await {
                        return None;
                    }
                }
            }
        }
    }

    /// Injects `fault`. Some(next) ends the connection; None carries on (after a stall).
    async fn inject(&mut self, fault: Fault) -> Option<Next> {
        if let Some(kind) = self.chaos_kind.take() {
            self.conn.worker.shared.count_fault(kind);
        }
        let mut rest: Option<Vec<u8>> = None;
        if fault.mid_event && !self.finished() {
            let mut event = Vec::new();
            self.fmt.event(&mut event, self.next, now_us());
            let half = first_half(&event).len();
            self.out.begin();
            self.out.payload().extend_from_slice(&event[..half]);
            if !self.flush(false).await {
                return Some(Next::Gone);
            }
            rest = Some(event.split_off(half));
        }
        match fault.kind {
            FaultKind::Close => Some(Next::Close),
            FaultKind::Reset => Some(Next::Reset),
            FaultKind::Stall { stall } => {
                // Release the write buffer: a stalled stream may wait a long time.
                self.out.release();
                let deadline = stall.map(|d| Instant::now() + d);
                // Boxed: a rare path that would otherwise enlarge every stream's task.
                if !Box::pin(self.conn.wait_client_gone(deadline)).await {
                    return Some(Next::Gone);
                }
                if let Some(rest) = rest {
                    self.out.begin();
                    self.out.payload().extend_from_slice(&rest);
                    if !self.flush(false).await {
                        return Some(Next::Gone);
                    }
                    self.next += 1;
                    self.sent += 1;
                }
                // Carry on at the stream's rate from now, not with a burst of missed events.
                if self.pace.is_some() {
                    self.pace = Some(Pace {
                        t0: Instant::now(),
                        start: self.next,
                        interval: self.pace.as_ref().map_or(0.0, |p| p.interval),
                    });
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::query::Eol;

    #[test]
    fn events_len_matches_formatting() {
        let fmt = EventFormat {
            eol: Eol::CrLf,
            ids: true,
            ts: true,
            size: 40,
        };
        for (start, last) in [(1, 10), (1, 1), (5, 123), (99, 101), (11, 10), (7, 7)] {
            let mut out = Vec::new();
            for seq in start..=last {
                fmt.event(&mut out, seq, now_us());
            }
            assert_eq!(
                events_len(&fmt, start, last),
                out.len() as u64,
                "{start}..={last}"
            );
        }
    }

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
}
