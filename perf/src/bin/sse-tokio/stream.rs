//! One SSE response on tokio: turns of ready events, faults. Which event goes next and when
//! (resume point, pacing, the fault's place) is the simulator's [`Schedule`], and the bytes are
//! its formatter's, so only the writing differs from `sse-upstream`.
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

use tokio::time::Instant;

use tether_perf::upstream::query::FaultKind;
use tether_perf::upstream::schedule::{connection_fault, resume_point, Schedule};
use tether_perf::upstream::sse::{response_head, EventFormat, ResponseBody, WriteBuf, BATCH_BYTES};

use crate::conn::{Conn, Method, Next, Request};
use crate::params::TokioSseParams;

/// Most event bytes one turn of a flat-out stream (`rate=0`, or a paced stream behind its
/// schedule) writes before it yields to the other streams; also the most bytes of one batched
/// write. A turn may overshoot by one event. `sse-upstream`'s batch size, so that 1b (batched)
/// puts the same wire in front of the proxies with either origin.
pub const TURN_BYTES: usize = BATCH_BYTES;

/// Answers `GET|HEAD /sse` (a request body was already read and dropped).
pub async fn serve_sse(conn: &mut Conn, req: &Request, params: &TokioSseParams) -> Next {
    let p = &params.sse;
    let resuming = req.last_event_id.is_some();
    let start = resume_point(p, req.last_event_id.as_deref());
    // `chaos` is refused by this origin, so this is the query's fault (or none).
    let (_, fault) = connection_fault(p, &req.target, start, resuming);
    // HTTP/1.0 has no chunked coding: the body ends with the connection.
    let chunked = req.version_minor >= 1;
    let close = req.close || !chunked;
    let mut head = Vec::with_capacity(128);
    let framing = if chunked {
        ResponseBody::Chunked
    } else {
        ResponseBody::UntilClose
    };
    response_head(&mut head, framing, close);
    // The head goes out at once, on its own, as a server that starts a streaming response
    // before its first event is ready sends it.
    if conn.write(&head).await.is_err() {
        return Next::Gone;
    }
    if req.method == Method::Head {
        return if close { Next::Close } else { Next::KeepAlive };
    }
    let mut stream = SseStream {
        conn,
        fmt: EventFormat::from_params(p),
        chunked,
        schedule: Schedule::new(p, start, fault, std::time::Instant::now()),
        one_write_per_event: p.one_write_per_event,
        burst: params.burst.unwrap_or(u64::MAX),
        out: WriteBuf::new(chunked),
        at_end: if close { Next::Close } else { Next::KeepAlive },
    };
    stream.run().await
}

/// The state of one SSE response body being written.
struct SseStream<'a> {
    /// The client connection.
    conn: &'a mut Conn,
    /// How events look.
    fmt: EventFormat,
    /// Each write is a chunk and the body ends with the last-chunk.
    chunked: bool,
    /// Which event goes next and when, and where the fault is.
    schedule: Schedule,
    /// `batch=1`: one write per event; else one per turn.
    one_write_per_event: bool,
    /// Most events per turn (`burst=`; else unbounded, [`TURN_BYTES`] caps the turn).
    burst: u64,
    /// The bytes of the current write.
    out: WriteBuf,
    /// What the connection does after a complete stream.
    at_end: Next,
}

impl SseStream<'_> {
    async fn run(&mut self) -> Next {
        loop {
            if let Some(fault) = self.schedule.take_due_fault() {
                if let Some(next) = self.inject(fault.kind).await {
                    return next;
                }
                continue;
            }
            if self.schedule.finished() {
                // The last-chunk in a write of its own, after the last event's.
                if self.chunked {
                    self.out.begin();
                    if self.conn.write(self.out.finish_bytes(true)).await.is_err() {
                        return Next::Gone;
                    }
                }
                return self.at_end;
            }
            // How many events this turn may carry.
            let mut max = self.burst.min(self.schedule.limit());
            let mut behind = true;
            if let Some(due) = self.schedule.due_at() {
                let due = Instant::from_std(due);
                if Instant::now() < due {
                    tokio::time::sleep_until(due).await;
                    behind = false;
                }
                max = max.min(self.schedule.due_count(std::time::Instant::now()));
            }
            let written = if self.one_write_per_event {
                self.turn_per_event(max).await
            } else {
                self.turn_batched(max).await
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

    /// Writes up to `max` events, each in its own chunk and `write()`, back to back, until
    /// [`TURN_BYTES`].
    async fn turn_per_event(&mut self, max: u64) -> std::io::Result<()> {
        let mut bytes = 0;
        let mut n = 0;
        while n < max && bytes < TURN_BYTES {
            self.out.begin();
            self.schedule.fill(&self.fmt, &mut self.out, 1);
            bytes += self.out.payload_len();
            self.conn.write(self.out.finish_bytes(false)).await?;
            n += 1;
        }
        Ok(())
    }

    /// Writes up to `max` events (at most about [`TURN_BYTES`]) in one chunk and `write()`.
    async fn turn_batched(&mut self, max: u64) -> std::io::Result<()> {
        self.out.begin();
        self.schedule.fill(&self.fmt, &mut self.out, max);
        self.conn.write(self.out.finish_bytes(false)).await
    }

    /// Injects a fault of `kind`. Some(next) ends the connection; None carries on after a
    /// stall.
    async fn inject(&mut self, kind: FaultKind) -> Option<Next> {
        match kind {
            FaultKind::Close => Some(Next::Close),
            FaultKind::Reset => Some(Next::Reset),
            FaultKind::Stall { stall: None } => {
                self.conn.wait_closed().await;
                Some(Next::Gone)
            }
            FaultKind::Stall { stall: Some(d) } => {
                tokio::time::sleep(d).await;
                self.schedule.restart_pace(std::time::Instant::now());
                None
            }
        }
    }
}
