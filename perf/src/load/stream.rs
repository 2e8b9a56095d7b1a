//! One logical SSE stream, independent of the socket loop: what to send, what the bytes
//! mean, what to count, and what to do when a connection ends.
//!
//! Life of a stream (the driver owns the socket and calls in at each step):
//! ```text
//! request() -> [connect, write] -> on_data()* -> ended(why) -> Reconnect { after } | Ended
//!                                     |  head: scan, parse, check 200 event-stream
//!                                     |  body: de-chunk -> SSE lines -> events -> count
//! ```

use std::time::{Duration, Instant};

use super::http::{parse_head, Body, BodyProgress, HeadScan, HttpError, MAX_HEAD_BYTES};
use super::sse::{Event, SseError, SseParser};
use super::stats::{ErrorKind, Stats};
use super::track::{count_event, IdTracker, IdVerdict};

/// Longest reconnection delay (ms): a stream's `retry:` is capped to it, and so is the
/// back-off after connections that delivered no event.
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_millis(100);

/// The clock readings of one socket read.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Monotonic: reconnection gaps and timeouts.
    pub mono: Instant,
    /// Unix microseconds: compared with the origin's `ts_us` (same machine, same clock).
    pub wall_us: u64,
    /// Inside the measured window.
    pub measuring: bool,
}

/// The request every connection of every stream sends, minus `Last-Event-ID`.
#[derive(Debug, Clone)]
pub struct RequestTemplate {
    /// `GET <target> HTTP/1.1` and the fixed header fields, each ending in CRLF.
    pub head: Vec<u8>,
}

impl RequestTemplate {
    /// A GET of `target` (path and query) from `host` (the Host field's value).
    pub fn new(host: &str, target: &str) -> Self {
        let head = format!(
            "GET {target} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\
             Cache-Control: no-cache\r\nUser-Agent: sse-load\r\n"
        )
        .into_bytes();
        Self { head }
    }
}

/// Where the current connection stands.
#[derive(Debug)]
enum Phase {
    /// No connection (before the first, between reconnections, or ended).
    Closed,
    /// Waiting for the response head; the bytes so far.
    Head {
        /// Head bytes received so far.
        buf: Vec<u8>,
        /// The end-of-head scan's position.
        scan: HeadScan,
    },
    /// In the event stream.
    Body {
        /// The body's framing.
        body: Body,
    },
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The body ended as framed: last chunk, Content-Length reached, or EOF of a
    /// close-delimited body. A clean end of the response.
    Complete,
    /// EOF (FIN) where more was expected (mid-head, mid-chunk, short Content-Length).
    Eof,
    /// A socket error (ECONNRESET and the like).
    Io(String),
    /// connect() failed or was refused.
    ConnectFailed(String),
    /// The connect timeout passed.
    ConnectTimeout,
    /// The head timeout passed.
    HeadTimeout,
    /// A response the client refuses (not 200, not an event stream, malformed).
    Http(HttpError),
    /// An unparseable SSE stream.
    Sse(SseError),
    /// The client closed the connection on purpose (`--leave-every`): it comes back with
    /// `Last-Event-ID` after a pause the driver chooses.
    Left,
}

/// What the driver does after a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Open a new connection after this delay.
    Reconnect {
        /// Delay before connecting.
        after: Duration,
    },
    /// The stream is over.
    Ended,
}

/// What the driver does after [`StreamState::on_data`] (whether the head was accepted
/// shows in [`StreamState::in_body`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// Close the connection; then call [`StreamState::ended`] with this.
    Close(End),
}

/// What the event sink updates per stream (split from the parser for the borrow checker).
#[derive(Debug, Default)]
struct Tally {
    /// Gap and duplicate counting across reconnections.
    tracker: IdTracker,
    /// This stream's skipped ids (whole run).
    gaps: u64,
    /// This stream's repeated ids (whole run).
    duplicates: u64,
    /// When the last event arrived (monotonic).
    last_event_at: Option<Instant>,
    /// A drop waiting for the first event after it: (last event before it, drop in window).
    pending_gap: Option<(Instant, bool)>,
    /// Events on the current connection.
    conn_events: u64,
    /// Events over the whole run.
    events: u64,
    /// The last event, comment or response head of the open body (None between bodies).
    last_activity: Option<Instant>,
    /// The longest silence of any open body so far: head or block to the next block.
    max_quiet: Duration,
    /// Silences longer than this are kept in `long_silences` (None: none kept).
    quiet_limit: Option<Duration>,
    /// The silences past `quiet_limit`: when each ended and how long it was (the first
    /// [`MAX_LONG_SILENCES`] of the stream).
    long_silences: Vec<(Instant, Duration)>,
}

/// Long silences kept per stream (the count in the report is not capped).
pub const MAX_LONG_SILENCES: usize = 8;

impl Tally {
    /// Counts one event.
    #[inline]
    fn event(&mut self, ev: Event, now: Now, stats: &mut Stats) {
        stats.events_total += 1;
        self.conn_events += 1;
        self.events += 1;
        match count_event(&ev, &mut self.tracker, now.wall_us, now.measuring, stats) {
            IdVerdict::InOrder => {}
            IdVerdict::Gap(n) => self.gaps += n,
            IdVerdict::Duplicate => self.duplicates += 1,
        }
        if let Some((before, in_window)) = self.pending_gap.take() {
            if in_window {
                let gap = now.mono.saturating_duration_since(before);
                stats.reconnect_gap.record(gap.as_micros() as u64);
            }
        }
        self.last_event_at = Some(now.mono);
    }

    /// Something arrived on the open body at `at` (a head, an event, a comment): closes the
    /// silence that ran since the previous arrival.
    fn activity(&mut self, at: Instant) {
        if let Some(prev) = self.last_activity {
            let quiet = at.saturating_duration_since(prev);
            self.max_quiet = self.max_quiet.max(quiet);
            if self.quiet_limit.is_some_and(|limit| quiet > limit)
                && self.long_silences.len() < MAX_LONG_SILENCES
            {
                self.long_silences.push((at, quiet));
            }
        }
        self.last_activity = Some(at);
    }
}

/// One logical SSE stream.
#[derive(Debug)]
pub struct StreamState {
    /// Where the current connection stands.
    phase: Phase,
    /// The SSE parser; keeps the Last-Event-ID cursor and `retry` across connections.
    parser: SseParser,
    /// Per-event bookkeeping.
    tally: Tally,
    /// Consecutive connections that ended without an event (reconnect back-off).
    empty_runs: u32,
    /// A response head was accepted at least once.
    pub established: bool,
}

impl Default for StreamState {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamState {
    /// A stream before its first connection.
    pub fn new() -> Self {
        Self {
            phase: Phase::Closed,
            parser: SseParser::new(),
            tally: Tally::default(),
            empty_runs: 0,
            established: false,
        }
    }

    /// True while a response body is being received.
    pub fn in_body(&self) -> bool {
        matches!(self.phase, Phase::Body { .. })
    }

    /// The longest time an open response body of this stream went without an event or a
    /// comment (from its head to its first block, and between blocks).
    #[cfg(test)]
    pub fn max_quiet(&self) -> Duration {
        self.tally.max_quiet
    }

    /// [`StreamState::max_quiet`], counting the silence still running on an open body at
    /// `now` too.
    pub fn max_quiet_until(&self, now: Instant) -> Duration {
        let running = match (self.in_body(), self.tally.last_activity) {
            (true, Some(prev)) => now.saturating_duration_since(prev),
            _ => Duration::ZERO,
        };
        self.tally.max_quiet.max(running)
    }

    /// The stream joins a live stream (`--join-live`): its first event may have any id, and
    /// ids must run on from it ([`IdTracker::joining`]). Call before the first connection.
    pub fn set_join_live(&mut self) {
        self.tally.tracker = IdTracker::joining();
    }

    /// This stream's skipped and repeated ids over the whole run.
    pub fn id_counts(&self) -> (u64, u64) {
        (self.tally.gaps, self.tally.duplicates)
    }

    /// The id of the first event this stream received (None: no event with an id).
    pub fn first_id(&self) -> Option<u64> {
        self.tally.tracker.first()
    }

    /// Keep the silences longer than `limit` ([`StreamState::long_silences`]).
    pub fn set_quiet_limit(&mut self, limit: Option<Duration>) {
        self.tally.quiet_limit = limit;
    }

    /// The silences longer than the limit: when each ended and how long it was.
    pub fn long_silences(&self) -> &[(Instant, Duration)] {
        &self.tally.long_silences
    }

    /// Events received over the whole run.
    pub fn events_received(&self) -> u64 {
        self.tally.events
    }

    /// When the last event arrived.
    pub fn last_event_at(&self) -> Option<Instant> {
        self.tally.last_event_at
    }

    /// Writes the request of the next connection into `out` (cleared first), with
    /// `Last-Event-ID` when the cursor is not empty, and starts waiting for the head.
    pub fn request(&mut self, template: &RequestTemplate, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&template.head);
        let cursor = self.parser.cursor();
        if !cursor.is_empty() {
            out.extend_from_slice(b"Last-Event-ID: ");
            out.extend_from_slice(cursor);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        self.phase = Phase::Head {
            buf: Vec::new(),
            scan: HeadScan::default(),
        };
        self.tally.conn_events = 0;
    }

    /// Processes bytes read from the connection.
    pub fn on_data(&mut self, data: &[u8], now: Now, stats: &mut Stats) -> Flow {
        if now.measuring {
            stats.wire_bytes += data.len() as u64;
        }
        let mut body_bytes = data;
        if let Phase::Head { buf, scan } = &mut self.phase {
            buf.extend_from_slice(data);
            let end = match scan.find_end(buf) {
                Some(end) if end <= MAX_HEAD_BYTES => end,
                Some(_) => return Flow::Close(End::Http(HttpError::HeadTooLarge)),
                None if buf.len() >= MAX_HEAD_BYTES => {
                    return Flow::Close(End::Http(HttpError::HeadTooLarge))
                }
                None => return Flow::Continue,
            };
            let head = match parse_head(&buf[..end]) {
                Ok(h) => h,
                Err(e) => return Flow::Close(End::Http(e)),
            };
            // The body bytes that came with the head.
            let already = buf.len() - end;
            body_bytes = &data[data.len() - already..];
            self.phase = Phase::Body { body: head.body };
            self.parser.start_body();
            self.established = true;
            self.tally.last_activity = Some(now.mono);
        }
        let Phase::Body { body } = &mut self.phase else {
            return Flow::Continue;
        };
        let parser = &mut self.parser;
        let tally = &mut self.tally;
        let (events_before, comments_before) = (tally.events, parser.comments());
        let mut sse_error = None;
        let mut payload_bytes = 0u64;
        let progress = body.decode(body_bytes, &mut |payload| {
            payload_bytes += payload.len() as u64;
            if sse_error.is_none() {
                if let Err(e) = parser.feed(payload, &mut |ev| tally.event(ev, now, stats)) {
                    sse_error = Some(e);
                }
            }
        });
        if now.measuring {
            stats.bytes += payload_bytes;
        }
        let comments = parser.comments() - comments_before;
        stats.comments += comments;
        if tally.events > events_before || comments > 0 {
            tally.activity(now.mono);
        }
        match (progress, sse_error) {
            (Err(e), _) => Flow::Close(End::Http(e)),
            (_, Some(e)) => Flow::Close(End::Sse(e)),
            (Ok(BodyProgress::Complete), None) => Flow::Close(End::Complete),
            (Ok(BodyProgress::More), None) => Flow::Continue,
        }
    }

    /// The connection reached EOF: a clean end for a close-delimited body, else a break.
    pub fn on_eof(&self) -> End {
        match &self.phase {
            Phase::Body {
                body: Body::UntilClose,
            } => End::Complete,
            _ => End::Eof,
        }
    }

    /// The connection is gone (the driver closed it). Counts what `why` means and decides
    /// whether to reconnect, EventSource-style: a refused response ends the stream for
    /// good; any other end reconnects (with `reconnect`) after the stream's `retry` (capped
    /// at [`MAX_RECONNECT_DELAY`]), backing off 1, 2, 4 ... 100 ms while connections keep
    /// ending without an event.
    pub fn ended(&mut self, why: End, reconnect: bool, now: Now, stats: &mut Stats) -> Next {
        let in_body = matches!(self.phase, Phase::Body { .. });
        self.phase = Phase::Closed;
        self.tally.last_activity = None;
        if why == End::Left {
            // Not a drop: no error, no back-off, and the absence is not a reconnection gap.
            stats.leaves += 1;
            return Next::Reconnect {
                after: Duration::ZERO,
            };
        }
        match &why {
            // A FIN or reset of an established stream is a drop (the origin or proxy went
            // away), not an error of the response.
            End::Complete | End::Eof | End::Io(_) if in_body => {}
            End::Complete => {}
            End::Eof => stats.errors.add(ErrorKind::Io, || {
                "connection closed before the response head".into()
            }),
            End::Io(e) => stats.errors.add(ErrorKind::Io, || e.clone()),
            End::ConnectFailed(e) => stats.errors.add(ErrorKind::Connect, || e.clone()),
            End::ConnectTimeout => {
                stats
                    .errors
                    .add(ErrorKind::ConnectTimeout, || "connect timed out".into());
            }
            End::HeadTimeout => {
                stats
                    .errors
                    .add(ErrorKind::HeadTimeout, || "no response head in time".into());
            }
            End::Http(e @ (HttpError::Status(_) | HttpError::ContentType(_))) => {
                stats.errors.add(ErrorKind::Status, || e.to_string());
            }
            End::Http(e) => stats.errors.add(ErrorKind::Protocol, || e.to_string()),
            End::Sse(e) => stats.errors.add(ErrorKind::Protocol, || e.to_string()),
            End::Left => {}
        }
        let refused = matches!(
            why,
            End::Http(HttpError::Status(_) | HttpError::ContentType(_))
        );
        if !reconnect || refused {
            stats.ended += 1;
            return Next::Ended;
        }
        if now.measuring {
            stats.reconnects += 1;
        }
        if self.tally.pending_gap.is_none() {
            self.tally.pending_gap = self.tally.last_event_at.map(|t| (t, now.measuring));
        }
        let mut delay = self
            .parser
            .retry_ms()
            .map_or(Duration::ZERO, Duration::from_millis)
            .min(MAX_RECONNECT_DELAY);
        if self.tally.conn_events == 0 {
            self.empty_runs = self.empty_runs.saturating_add(1);
            let backoff = Duration::from_millis(1 << (self.empty_runs - 1).min(7));
            delay = delay.max(backoff.min(MAX_RECONNECT_DELAY));
        } else {
            self.empty_runs = 0;
        }
        Next::Reconnect { after: delay }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now(measuring: bool) -> Now {
        Now {
            mono: Instant::now(),
            wall_us: 1_700_000_000_000_000,
            measuring,
        }
    }

    const HEAD: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";

    fn chunk(payload: &str) -> Vec<u8> {
        format!("{:x}\r\n{payload}\r\n", payload.len()).into_bytes()
    }

    fn event(id: u64, ts: u64) -> String {
        format!("id: {id}\ndata: {{\"seq\":{id},\"ts_us\":{ts}}}\n\n")
    }

    #[test]
    fn request_carries_the_cursor_after_events() {
        let t = RequestTemplate::new("127.0.0.1:8080", "/sse?x=1");
        let mut s = StreamState::new();
        let mut out = Vec::new();
        s.request(&t, &mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with("GET /sse?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
        assert!(text.contains("Accept: text/event-stream\r\n"));
        assert!(!text.contains("Last-Event-ID"));
        assert!(text.ends_with("\r\n\r\n"));
        let mut stats = Stats::default();
        let mut bytes = HEAD.to_vec();
        bytes.extend(chunk(&event(1, 1_699_999_999_999_000)));
        bytes.extend(chunk(&event(2, 1_699_999_999_999_500)));
        assert_eq!(s.on_data(&bytes, now(true), &mut stats), Flow::Continue);
        assert!(s.in_body() && s.established);
        assert_eq!(stats.events, 2);
        assert_eq!(stats.latency.max(), 1000);
        assert_eq!(
            s.ended(End::Eof, true, now(true), &mut stats),
            Next::Reconnect {
                after: Duration::ZERO
            }
        );
        s.request(&t, &mut out);
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("\r\nLast-Event-ID: 2\r\n\r\n"));
    }

    #[test]
    fn head_and_body_at_every_split_point() {
        let mut bytes = HEAD.to_vec();
        for id in 1..=3 {
            bytes.extend(chunk(&event(id, 1)));
        }
        bytes.extend_from_slice(b"0\r\n\r\n");
        for i in 0..=bytes.len() {
            let mut s = StreamState::new();
            let mut out = Vec::new();
            s.request(&RequestTemplate::new("h", "/"), &mut out);
            let mut stats = Stats::default();
            let a = s.on_data(&bytes[..i], now(true), &mut stats);
            assert_eq!(s.in_body(), i >= HEAD.len(), "split {i}");
            let last = if i == bytes.len() {
                a
            } else {
                assert_eq!(a, Flow::Continue, "split {i}");
                s.on_data(&bytes[i..], now(true), &mut stats)
            };
            assert_eq!(last, Flow::Close(End::Complete), "split {i}");
            assert_eq!(stats.events, 3, "split {i}");
            assert_eq!((stats.gaps, stats.duplicates), (0, 0));
            assert_eq!(stats.bytes, 3 * event(1, 1).len() as u64);
            assert_eq!(stats.wire_bytes, bytes.len() as u64);
        }
    }

    #[test]
    fn gaps_and_duplicates_across_a_reconnect_and_the_gap_time() {
        let t = RequestTemplate::new("h", "/");
        let mut s = StreamState::new();
        let mut out = Vec::new();
        let mut stats = Stats::default();
        s.request(&t, &mut out);
        let mut bytes = HEAD.to_vec();
        bytes.extend(chunk(&(event(1, 1) + &event(2, 1))));
        s.on_data(&bytes, now(true), &mut stats);
        assert_eq!(s.on_eof(), End::Eof);
        s.ended(End::Eof, true, now(true), &mut stats);
        assert_eq!(stats.reconnects, 1);
        s.request(&t, &mut out);
        // The server repeats 2 and skips 3.
        let mut bytes = HEAD.to_vec();
        bytes.extend(chunk(&(event(2, 1) + &event(4, 1))));
        std::thread::sleep(Duration::from_millis(2));
        s.on_data(&bytes, now(true), &mut stats);
        assert_eq!((stats.gaps, stats.duplicates), (1, 1));
        assert_eq!(stats.reconnect_gap.count(), 1);
        assert!(stats.reconnect_gap.max() >= 2000);
    }

    #[test]
    fn a_stream_that_joins_live_counts_from_its_first_event() {
        let t = RequestTemplate::new("h", "/");
        let mut out = Vec::new();
        let body = |ids: &[u64]| {
            let mut bytes = HEAD.to_vec();
            let events: String = ids.iter().map(|&id| event(id, 1)).collect();
            bytes.extend(chunk(&events));
            bytes
        };
        // Joining at the live head (57), then one lost (60) and one repeated (61).
        let mut stats = Stats::default();
        let mut s = StreamState::new();
        s.set_join_live();
        s.request(&t, &mut out);
        s.on_data(&body(&[57, 58, 59, 61, 61, 62]), now(true), &mut stats);
        assert_eq!((stats.gaps, stats.duplicates), (1, 1));
        assert_eq!(s.id_counts(), (1, 1));
        assert_eq!(s.first_id(), Some(57));
        // Without it the same start counts ids 1..=56 as lost.
        let mut stats = Stats::default();
        let mut s = StreamState::new();
        s.request(&t, &mut out);
        s.on_data(&body(&[57, 58]), now(true), &mut stats);
        assert_eq!((stats.gaps, stats.duplicates), (56, 0));
        assert_eq!(s.id_counts(), (56, 0));
        assert_eq!(s.first_id(), Some(57));
    }

    #[test]
    fn refusals_end_the_stream_and_empty_connections_back_off() {
        let t = RequestTemplate::new("h", "/");
        let mut out = Vec::new();
        let mut stats = Stats::default();
        let mut s = StreamState::new();
        s.request(&t, &mut out);
        let flow = s.on_data(
            b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n",
            now(true),
            &mut stats,
        );
        let Flow::Close(why) = flow else {
            panic!("{flow:?}")
        };
        assert_eq!(s.ended(why, true, now(true), &mut stats), Next::Ended);
        assert_eq!((stats.ended, stats.errors.total()), (1, 1));

        let mut s = StreamState::new();
        let mut delays = Vec::new();
        for _ in 0..10 {
            s.request(&t, &mut out);
            match s.ended(
                End::ConnectFailed("refused".into()),
                true,
                now(false),
                &mut stats,
            ) {
                Next::Reconnect { after } => delays.push(after.as_millis()),
                Next::Ended => panic!("gave up"),
            }
        }
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 64, 100, 100, 100]);
        assert_eq!(stats.reconnects, 0, "only drops in the window count");
        s.request(&t, &mut out);
        s.ended(End::HeadTimeout, true, now(true), &mut stats);
        assert_eq!(stats.reconnects, 1);
        // Without --reconnect every end is final.
        assert_eq!(
            s.ended(End::Complete, false, now(true), &mut stats),
            Next::Ended
        );
    }

    #[test]
    fn comments_silences_and_leaving() {
        let t = RequestTemplate::new("h", "/");
        let mut out = Vec::new();
        let mut stats = Stats::default();
        let mut s = StreamState::new();
        s.request(&t, &mut out);
        let at = Instant::now();
        let mut limited = StreamState::new();
        limited.set_quiet_limit(Some(Duration::from_millis(500)));
        limited.request(&t, &mut out);
        let at_ms = |ms: u64| Now {
            mono: at + Duration::from_millis(ms),
            wall_us: 1,
            measuring: true,
        };
        let mut bytes = HEAD.to_vec();
        bytes.extend(chunk(&event(1, 1)));
        s.on_data(&bytes, at_ms(0), &mut stats);
        // 300 ms of silence, a heartbeat, 1000 ms, an event, then 200 ms and two comments.
        s.on_data(&chunk(": keep-alive\n\n"), at_ms(300), &mut stats);
        s.on_data(&chunk(&event(2, 1)), at_ms(1300), &mut stats);
        s.on_data(&chunk(":a\n\n:b\n\n"), at_ms(1500), &mut stats);
        let mut other = Stats::default();
        let mut head_and_one = HEAD.to_vec();
        head_and_one.extend(chunk(&event(1, 1)));
        limited.on_data(&head_and_one, at_ms(0), &mut other);
        limited.on_data(&chunk(": hb\n\n"), at_ms(400), &mut other);
        limited.on_data(&chunk(&event(2, 1)), at_ms(1300), &mut other);
        assert_eq!(
            limited.long_silences(),
            &[(at + Duration::from_millis(1300), Duration::from_millis(900))]
        );
        assert_eq!(stats.comments, 3);
        assert_eq!(s.max_quiet(), Duration::from_millis(1000));
        assert!(s.long_silences().is_empty(), "no limit set");
        assert_eq!(s.events_received(), 2);
        // Leaving: counted, no error, no back-off, reconnects with the cursor.
        assert_eq!(
            s.ended(End::Left, true, at_ms(1600), &mut stats),
            Next::Reconnect {
                after: Duration::ZERO
            }
        );
        assert_eq!((stats.leaves, stats.errors.total()), (1, 0));
        s.request(&t, &mut out);
        assert!(String::from_utf8(out.clone())
            .unwrap()
            .contains("Last-Event-ID: 2\r\n"));
        // The time away is not a silence of an open body; the new head starts a new one.
        s.on_data(HEAD, at_ms(9000), &mut stats);
        s.on_data(&chunk(&event(3, 1)), at_ms(9100), &mut stats);
        assert_eq!(s.max_quiet(), Duration::from_millis(1000));
        assert_eq!((stats.gaps, stats.duplicates), (0, 0));
    }

    #[test]
    fn retry_sets_the_delay_capped() {
        let t = RequestTemplate::new("h", "/");
        let mut out = Vec::new();
        let mut stats = Stats::default();
        for (retry, want) in [(30u64, 30u128), (5000, 100)] {
            let mut s = StreamState::new();
            s.request(&t, &mut out);
            let mut bytes = HEAD.to_vec();
            bytes.extend(chunk(&format!("retry: {retry}\n\n{}", event(1, 1))));
            s.on_data(&bytes, now(true), &mut stats);
            let Next::Reconnect { after } = s.ended(End::Eof, true, now(true), &mut stats) else {
                panic!()
            };
            assert_eq!(after.as_millis(), want);
        }
    }

    #[test]
    fn oversized_and_close_delimited_heads() {
        let mut out = Vec::new();
        let mut stats = Stats::default();
        let mut s = StreamState::new();
        s.request(&RequestTemplate::new("h", "/"), &mut out);
        let junk = vec![b'a'; 4096];
        let mut last = Flow::Continue;
        for _ in 0..5 {
            last = s.on_data(&junk, now(true), &mut stats);
        }
        assert_eq!(last, Flow::Close(End::Http(HttpError::HeadTooLarge)));

        let mut s = StreamState::new();
        s.request(&RequestTemplate::new("h", "/"), &mut out);
        let head =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: {\"seq\":1}\n\n";
        assert_eq!(s.on_data(head, now(true), &mut stats), Flow::Continue);
        assert!(s.in_body());
        assert_eq!(s.on_eof(), End::Complete);
    }
}
