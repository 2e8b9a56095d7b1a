//! One SSE response: resume point, pacing, turns of ready events, faults.
//!
//! Flush rule: every event is written as soon as it is formatted, and a paced stream never
//! waits to fill a write. What differs from `sse-upstream` is how much one stream writes when
//! it runs: **every event that is due, back to back**, one `write()` per event (`batch=1`) or
//! all of them in one `write()` (default), then it yields. A flat-out stream (`rate=0`) has
//! every event due, so a turn is [`TURN_BYTES`] of events (or `burst=N` events); a paced
//! stream's turn is the events due at its wake-up (one, unless it fell behind).
//! `sse-upstream` with `batch=1` instead writes one event per turn, so the proxy in front of
//! it finds about one event per read (perf/NOTES.md, "Two origins").
//!
//! Loop, per turn:
//! ```text
//! fault due (sent == after)?  -> FIN | RST | stall, then carry on at the rate from now
//! stream finished?            -> last-chunk, keep-alive (or close)
//! paced? sleep until `next` is due; due = events due now (at least 1)
//! write min(due, burst, events left, events before the fault) events, capped at TURN_BYTES:
//!   batch=1: each event its own chunk and write();  default: one chunk, one write()
//! flat out or behind schedule: yield to the other streams
//! ```

use std::time::Duration;

use tokio::time::Instant;

use crate::conn::{Conn, Method, Next, Request};
use crate::event::{Chunk, EventFormat, LAST_CHUNK};
use crate::params::{parse_u64, Fault, FaultKind, SseParams, Writes, TURN_BYTES};

/// Answers `GET|HEAD /sse` (a request body was already read and dropped).
pub async fn serve_sse(conn: &mut Conn, req: &Request, p: &SseParams) -> Next {
    let resuming = req.last_event_id.is_some();
    // `Last-Event-ID: k` (decimal, as this server numbers events) continues at k+1; anything
    // else starts at `start=` (1 unless given).
    let start = match (
        p.honour_resume,
        req.last_event_id.as_deref().and_then(parse_u64),
    ) {
        (true, Some(k)) => k.saturating_add(1),
        _ => p.start,
    };
    // HTTP/1.0 has no chunked coding: the body ends with the connection.
    let chunked = req.version_minor >= 1;
    let close = req.close || !chunked;
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n{}{}\r\n",
        if chunked {
            "Transfer-Encoding: chunked\r\n"
        } else {
            ""
        },
        if close { "Connection: close\r\n" } else { "" },
    );
    // The head goes out at once, on its own, as a server that starts a streaming response
    // before its first event is ready sends it.
    if conn.write(head.as_bytes()).await.is_err() {
        return Next::Gone;
    }
    if req.method == Method::Head {
        return if close { Next::Close } else { Next::KeepAlive };
    }
    let mut stream = SseStream {
        conn,
        fmt: EventFormat::from_params(p),
        chunked,
        last: p.last,
        next: start,
        sent: 0,
        fault: p.fault.filter(|f| !(f.once && resuming)),
        pace: (p.rate > 0.0).then(|| Pace::new(start, p.rate)),
        writes: p.writes,
        burst: p.burst.unwrap_or(u64::MAX),
        out: Chunk::new(chunked),
        at_end: if close { Next::Close } else { Next::KeepAlive },
    };
    stream.run().await
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

/// Unix time in microseconds (the events' `ts_us`).
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The state of one SSE response body being written.
struct SseStream<'a> {
    /// The client connection.
    conn: &'a mut Conn,
    /// How events look.
    fmt: EventFormat,
    /// Each write is a chunk and the body ends with the last-chunk.
    chunked: bool,
    /// Id of the logical stream's last event; 0 = infinite.
    last: u64,
    /// Id of the next event.
    next: u64,
    /// Complete events written on this connection (what faults count).
    sent: u64,
    /// The fault still to inject on this connection.
    fault: Option<Fault>,
    /// Pacing; None when flat out.
    pace: Option<Pace>,
    /// One write per event, or one per turn.
    writes: Writes,
    /// Most events per turn (`burst=`; else unbounded, [`TURN_BYTES`] caps the turn).
    burst: u64,
    /// The bytes of the current write.
    out: Chunk,
    /// What the connection does after a complete stream.
    at_end: Next,
}

impl SseStream<'_> {
    fn finished(&self) -> bool {
        self.last != 0 && self.next > self.last
    }

    async fn run(&mut self) -> Next {
        loop {
            if let Some(fault) = self.fault.filter(|f| f.after == self.sent) {
                self.fault = None;
                if let Some(next) = self.inject(fault).await {
                    return next;
                }
                continue;
            }
            if self.finished() {
                if self.chunked && self.conn.write(LAST_CHUNK).await.is_err() {
                    return Next::Gone;
                }
                return self.at_end;
            }
            // How many events this turn may carry.
            let mut max = self.burst;
            if let Some(f) = self.fault {
                max = max.min(f.after - self.sent);
            }
            if self.last != 0 {
                max = max.min(self.last - self.next + 1);
            }
            let mut behind = true;
            if let Some(pace) = self.pace {
                let due = pace.due(self.next);
                if Instant::now() < due {
                    tokio::time::sleep_until(due).await;
                    behind = false;
                }
                max = max.min(pace.due_count(self.next, Instant::now()));
            }
            let written = match self.writes {
                Writes::PerEvent => self.turn_per_event(max).await,
                Writes::Batched => self.turn_batched(max).await,
            };
            if written.is_err() {
                return Next::Gone;
            }
            if behind {
                // Flat out (or behind schedule): let the other streams run.
                tokio::task::yield_now().await;
            }
        }
    }

    /// Writes up to `max` events, each in its own chunk and `write()`, back to back.
    async fn turn_per_event(&mut self, max: u64) -> std::io::Result<()> {
        let mut bytes = 0;
        let mut n = 0;
        while n < max && bytes < TURN_BYTES {
            self.out.begin();
            self.fmt.event(self.out.payload(), self.next, now_us());
            bytes += self.out.payload_len();
            self.conn.write(self.out.finish()).await?;
            self.next += 1;
            self.sent += 1;
            n += 1;
        }
        Ok(())
    }

    /// Writes up to `max` events (at most about [`TURN_BYTES`]) in one chunk and `write()`.
    async fn turn_batched(&mut self, max: u64) -> std::io::Result<()> {
        self.out.begin();
        let mut n = 0;
        while n < max && self.out.payload_len() < TURN_BYTES {
            self.fmt.event(self.out.payload(), self.next, now_us());
            self.next += 1;
            self.sent += 1;
            n += 1;
        }
        self.conn.write(self.out.finish()).await
    }

    /// Injects `fault`. Some(next) ends the connection; None carries on after a stall.
    async fn inject(&mut self, fault: Fault) -> Option<Next> {
        match fault.kind {
            FaultKind::Close => Some(Next::Close),
            FaultKind::Reset => Some(Next::Reset),
            FaultKind::Stall { stall: None } => {
                self.conn.wait_closed().await;
                Some(Next::Gone)
            }
            FaultKind::Stall { stall: Some(d) } => {
                tokio::time::sleep(d).await;
                // Carry on at the stream's rate from now, not with a burst of missed events.
                if let Some(pace) = &mut self.pace {
                    pace.t0 = Instant::now();
                    pace.start = self.next;
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(pace.due_count(20, pace.t0), 1);
    }
}
