//! One SSE response on monoio: batching, heartbeats and injected faults, driving the event
//! [`Schedule`] (resume point, pacing, the fault's place) that `sse-tokio` drives too.
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

use super::conn::{Conn, Next};
use super::http::{push_hex, RequestHead, ResponseBody};
use super::kill::yield_now;
use super::query::{ChaosKind, Fault, FaultKind, SseFraming, SseParams};
use super::schedule::{connection_fault, resume_point, Schedule};
use super::sse::{first_half, now_us, prelude, response_head, EventFormat, WriteBuf};

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

    let start = resume_point(p, head.last_event_id.as_deref());
    let (chaos_kind, fault) = connection_fault(p, &head.target, start, resuming);
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
    response_head(&mut out, body, close);
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
    // Directly, as the first event below: a new stream is not queued behind a round of the
    // busy ones (`direct.rs`).
    if conn.write_now(out, 0).await.0.is_err() {
        return Next::Gone;
    }

    let mut stream = SseStream {
        conn,
        fmt,
        chunked: framing == SseFraming::Chunked,
        schedule: Schedule::new(p, start, fault, std::time::Instant::now()),
        chaos_kind,
        one_per_write: p.one_write_per_event,
        heartbeat: p.heartbeat,
        out: WriteBuf::new(framing == SseFraming::Chunked),
        last_write: Instant::now(),
        first_write: true,
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

/// The state of one SSE response body being written.
struct SseStream<'a> {
    conn: &'a mut Conn,
    fmt: EventFormat,
    /// Every write is one chunk.
    chunked: bool,
    /// Which event goes next and when, and where the fault is.
    schedule: Schedule,
    /// The kind `chaos=N` drew for the fault, counted when it is injected.
    chaos_kind: Option<ChaosKind>,
    /// `batch=1`.
    one_per_write: bool,
    /// `heartbeat_ms`.
    heartbeat: Option<Duration>,
    /// The bytes of the current write.
    out: WriteBuf,
    /// When the last write went out (heartbeats count from it).
    last_write: Instant,
    /// Nothing written since the head: the next write goes out directly (`direct.rs`).
    first_write: bool,
    /// What the connection does after a complete stream.
    at_end: Next,
}

impl SseStream<'_> {
    async fn run(&mut self) -> Next {
        loop {
            if self.conn.killed() {
                return Next::Gone;
            }
            if let Some(fault) = self.schedule.take_due_fault() {
                if let Some(next) = self.inject(fault).await {
                    return next;
                }
                continue;
            }
            if self.schedule.finished() {
                return self.end().await;
            }

            // How many events this write may carry.
            let mut max = self.schedule.limit();
            if self.one_per_write {
                max = 1;
            }
            let mut slept = false;
            if let Some(due) = self.schedule.due_at() {
                match self.wait_until(Instant::from_std(due)).await {
                    Some(s) => slept = s,
                    None => return Next::Gone,
                }
                max = max.min(self.schedule.due_count(std::time::Instant::now()));
            }

            self.out.begin();
            self.schedule.fill(&self.fmt, &mut self.out, max);
            let last = self.chunked && self.schedule.finished() && !self.schedule.fault_due();
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
        let (res, buf) = if std::mem::take(&mut self.first_write) {
            self.conn.write_now(buf, start).await
        } else {
            let (res, slice) = self.conn.write(buf.slice(start..)).await;
            (res, slice.into_inner())
        };
        self.out.restore(buf);
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
        if fault.mid_event && !self.schedule.finished() {
            let mut event = Vec::new();
            self.fmt.event(&mut event, self.schedule.next(), now_us());
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
                    self.schedule.advance();
                }
                self.schedule.restart_pace(std::time::Instant::now());
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
}
