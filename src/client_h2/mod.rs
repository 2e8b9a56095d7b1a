//! HTTP/2 for TLS clients that chose `h2` in ALPN (`crate::client_tls::ALPN_PROTOCOLS`).
//!
//! The connection is hyperium's `h2` server (HPACK, stream states, flow control), driven over
//! the client's TLS session by [`io::TlsIo`]. Each stream is bridged to tether's HTTP/1.1 code
//! over a socketpair ([`stream`]): the request is written to it as an HTTP/1.1 request, the
//! answer read back and sent as HEADERS and DATA. So every stream gets every feature of an
//! HTTP/1.1 request (SSE relay, heartbeats, replay, resume, coalescing, rules, MCP, error
//! answers) from the same code, and a stream whose client stops reading backs up into the
//! socketpair and is cut by the slow-client rules as an HTTP/1.1 client is.
//!
//! Limits are flags (`H2Limits`, defaults below). h2 enforces concurrent streams, the header
//! list size (431, or COMPRESSION/PROTOCOL errors for broken HPACK), CONTINUATION floods and
//! resets of streams not yet accepted (GOAWAY ENHANCE_YOUR_CALM). What it does not bound is
//! counted here per connection and per FLOOD_WINDOW ([`Floods`]): RST_STREAM from the client on
//! accepted streams (the rapid reset attack, CVE-2023-44487), PING and SETTINGS. Past a limit the
//! connection gets GOAWAY ENHANCE_YOUR_CALM and is closed; `tether_h2_goaway_total{reason}`.

pub(crate) mod io;
pub(crate) mod side;
pub(crate) mod stream;

use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::client_tls::TlsClient;
use crate::conn_table::ConnGuard;
use crate::worker::WorkerCtx;

/// Streams a client may have open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS);
/// past it h2 refuses new ones with RST_STREAM REFUSED_STREAM. Each open stream holds a
/// socketpair (2 fds) and a connection task on tether's side.
pub const MAX_CONCURRENT_STREAMS: u32 = 100;

/// Largest request header list, in bytes as HTTP/2 counts it (names + values + 32 per field;
/// SETTINGS_MAX_HEADER_LIST_SIZE): past it h2 answers 431 and resets the stream, and a header
/// block that keeps coming in CONTINUATION frames past it closes the connection. Also bounds
/// what HPACK may decode into (an HPACK bomb stops here).
pub const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;

/// Initial flow-control window of each stream for what the client sends (request bodies), in
/// bytes (SETTINGS_INITIAL_WINDOW_SIZE).
pub const INITIAL_STREAM_WINDOW: u32 = 256 * 1024;

/// Initial flow-control window of the connection for what the client sends, in bytes.
pub const INITIAL_CONNECTION_WINDOW: u32 = 1024 * 1024;

/// Largest frame payload the client may send, in bytes (SETTINGS_MAX_FRAME_SIZE; 16384 to
/// 16777215).
pub const MAX_FRAME_BYTES: u32 = 16 * 1024;

/// RST_STREAM frames a client may send per connection per FLOOD_WINDOW; one more and the
/// connection gets GOAWAY ENHANCE_YOUR_CALM (rapid reset, CVE-2023-44487). A browser resets a
/// stream when a page drops an EventSource or a fetch; hundreds in ten seconds is an attack.
pub const MAX_RESETS_PER_WINDOW: u32 = 200;

/// PING frames (not ACKs) a client may send per connection per FLOOD_WINDOW; past it GOAWAY.
pub const MAX_PINGS_PER_WINDOW: u32 = 100;

/// SETTINGS frames (not ACKs) a client may send per connection per FLOOD_WINDOW; past it GOAWAY.
pub const MAX_SETTINGS_PER_WINDOW: u32 = 100;

/// The window the flood counters count in.
pub const FLOOD_WINDOW: Duration = Duration::from_secs(10);

/// Bytes h2 may hold per stream for the client beyond what the stream's window lets out
/// (h2's max_send_buffer_size): the bridge reads the next piece of an answer only once the
/// last was taken, so this and one read (BRIDGE_READ_BYTES) bound a stream's backlog in tether.
pub const SEND_BUFFER_BYTES: usize = 64 * 1024;

/// How long a connection that was sent GOAWAY may take to receive it before its socket is
/// closed: the GOAWAY's flush, then the lingering close (`linger`), each at most this long.
pub const GOAWAY_FLUSH: Duration = Duration::from_secs(1);

/// How often an HTTP/2 connection's task looks at its idleness and the worker's drain: an
/// h2 connection with no open stream for --idle-timeout, or on a draining worker, is sent
/// GOAWAY (NO_ERROR) and closed once its open streams end.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// `--h2-*`: the limits of HTTP/2 connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct H2Limits {
    pub max_concurrent_streams: u32,
    pub max_header_list_bytes: u32,
    pub initial_stream_window: u32,
    pub initial_connection_window: u32,
    pub max_frame_bytes: u32,
    pub max_resets_per_window: u32,
}

impl Default for H2Limits {
    fn default() -> Self {
        H2Limits {
            max_concurrent_streams: MAX_CONCURRENT_STREAMS,
            max_header_list_bytes: MAX_HEADER_LIST_BYTES,
            initial_stream_window: INITIAL_STREAM_WINDOW,
            initial_connection_window: INITIAL_CONNECTION_WINDOW,
            max_frame_bytes: MAX_FRAME_BYTES,
            max_resets_per_window: MAX_RESETS_PER_WINDOW,
        }
    }
}

/// Largest flow-control window HTTP/2 allows (RFC 9113 6.9.1: 2^31-1).
const MAX_WINDOW: u32 = (1 << 31) - 1;

/// Smallest and largest SETTINGS_MAX_FRAME_SIZE (RFC 9113 6.5.2).
const FRAME_SIZE_RANGE: (u32, u32) = (16_384, 16_777_215);

impl H2Limits {
    /// Refuses values HTTP/2 does not allow (h2 would panic on them) and zeros.
    pub fn check(&self) -> Result<(), crate::config::ConfigError> {
        use crate::config::ConfigError;
        let ranges = [
            (
                "--h2-max-concurrent-streams",
                self.max_concurrent_streams,
                1,
                u32::MAX,
            ),
            (
                "--h2-max-header-list",
                self.max_header_list_bytes,
                1,
                u32::MAX,
            ),
            (
                "--h2-stream-window",
                self.initial_stream_window,
                1,
                MAX_WINDOW,
            ),
            (
                "--h2-connection-window",
                self.initial_connection_window,
                65_535,
                MAX_WINDOW,
            ),
            (
                "--h2-max-frame",
                self.max_frame_bytes,
                FRAME_SIZE_RANGE.0,
                FRAME_SIZE_RANGE.1,
            ),
            ("--h2-max-resets", self.max_resets_per_window, 1, u32::MAX),
        ];
        for (flag, value, min, max) in ranges {
            if value < min || value > max {
                return Err(ConfigError::H2Range { flag, min, max });
            }
        }
        Ok(())
    }
}

/// Why tether ended an HTTP/2 connection with GOAWAY (`tether_h2_goaway_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoAway {
    /// More RST_STREAM than MAX_RESETS_PER_WINDOW (rapid reset), or h2's own bound on resets of
    /// streams not yet accepted.
    RapidReset,
    /// More PING than MAX_PINGS_PER_WINDOW.
    PingFlood,
    /// More SETTINGS than MAX_SETTINGS_PER_WINDOW.
    SettingsFlood,
    /// A header block in more CONTINUATION frames than the header list size allows (h2).
    ContinuationFlood,
    /// Another ENHANCE_YOUR_CALM from h2 (too many streams it had to reset for errors).
    Calm,
    /// The client broke the protocol (bad frames, bad HPACK, flow-control violations).
    Protocol,
}

impl GoAway {
    pub const ALL: [GoAway; 6] = [
        GoAway::RapidReset,
        GoAway::PingFlood,
        GoAway::SettingsFlood,
        GoAway::ContinuationFlood,
        GoAway::Calm,
        GoAway::Protocol,
    ];

    pub fn name(self) -> &'static str {
        match self {
            GoAway::RapidReset => "rapid_reset",
            GoAway::PingFlood => "ping_flood",
            GoAway::SettingsFlood => "settings_flood",
            GoAway::ContinuationFlood => "continuation_flood",
            GoAway::Calm => "enhance_your_calm",
            GoAway::Protocol => "protocol_error",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// The kinds of frames counted per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flood {
    Reset,
    Ping,
    Settings,
    Continuation,
}

/// One connection's flood counters: fed by the frame counter in the read path, read by the
/// connection's task, which sends GOAWAY once one trips.
pub(crate) struct Floods {
    max_resets: u32,
    /// The worker, whose /metrics count every RST_STREAM.
    ctx: Rc<WorkerCtx>,
    /// When the current window began.
    since: Cell<Instant>,
    /// RST_STREAM, PING, SETTINGS in this window; CONTINUATION frames in a row.
    resets: Cell<u32>,
    pings: Cell<u32>,
    settings: Cell<u32>,
    continuations: Cell<u32>,
    /// The limit that tripped, if one did.
    tripped: Cell<Option<GoAway>>,
    /// The connection's task, woken when a limit trips.
    waker: Cell<Option<Waker>>,
}

impl Floods {
    pub(crate) fn new(max_resets: u32, ctx: Rc<WorkerCtx>) -> Floods {
        Floods {
            max_resets,
            ctx,
            since: Cell::new(Instant::now()),
            resets: Cell::new(0),
            pings: Cell::new(0),
            settings: Cell::new(0),
            continuations: Cell::new(0),
            tripped: Cell::new(None),
            waker: Cell::new(None),
        }
    }

    /// The limit that tripped, if any.
    pub fn tripped(&self) -> Option<GoAway> {
        self.tripped.get()
    }

    /// A frame header of type `kind` with `flags` came from the client.
    pub fn frame(&self, kind: u8, flags: u8) {
        let Some(flood) = io::counted_kind(kind, flags) else {
            self.continuations.set(0);
            return;
        };
        if flood == Flood::Continuation {
            self.continuations.set(self.continuations.get() + 1);
            return;
        }
        self.continuations.set(0);
        let now = Instant::now();
        if now.duration_since(self.since.get()) >= FLOOD_WINDOW {
            self.since.set(now);
            self.resets.set(0);
            self.pings.set(0);
            self.settings.set(0);
        }
        let (count, limit, reason) = match flood {
            Flood::Reset => {
                let m = &self.ctx.metrics;
                m.h2_resets.set(m.h2_resets.get() + 1);
                (&self.resets, self.max_resets, GoAway::RapidReset)
            }
            Flood::Ping => (&self.pings, MAX_PINGS_PER_WINDOW, GoAway::PingFlood),
            Flood::Settings => (
                &self.settings,
                MAX_SETTINGS_PER_WINDOW,
                GoAway::SettingsFlood,
            ),
            Flood::Continuation => unreachable!("counted above"),
        };
        count.set(count.get() + 1);
        if count.get() > limit && self.tripped.get().is_none() {
            self.tripped.set(Some(reason));
            if let Some(w) = self.waker.take() {
                w.wake();
            }
        }
    }

    /// The reason for a connection error h2 returned.
    fn reason_of(&self, e: &h2::Error) -> GoAway {
        match e.reason() {
            Some(h2::Reason::ENHANCE_YOUR_CALM) if self.continuations.get() > 1 => {
                GoAway::ContinuationFlood
            }
            Some(h2::Reason::ENHANCE_YOUR_CALM) if self.resets.get() > 0 => GoAway::RapidReset,
            Some(h2::Reason::ENHANCE_YOUR_CALM) => GoAway::Calm,
            _ => GoAway::Protocol,
        }
    }
}

/// Serves an h2 connection whose TLS handshake is done until it closes: h2's handshake within
/// --header-timeout, then each stream in its own task (`stream::serve`). Cancel-safe reads and
/// writes only (`io::TlsIo`).
pub(crate) async fn serve(
    ctx: Rc<WorkerCtx>,
    client: TlsClient,
    peer: SocketAddr,
    guard: ConnGuard,
) {
    let limits = ctx.config.h2;
    let floods = Rc::new(Floods::new(limits.max_resets_per_window, ctx.clone()));
    let (tcp, session) = client.into_parts();
    let io = io::TlsIo::new(tcp, session, floods.clone());
    let socket = io.socket();
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(limits.max_header_list_bytes)
        .initial_window_size(limits.initial_stream_window)
        .initial_connection_window_size(limits.initial_connection_window)
        .max_frame_size(limits.max_frame_bytes)
        .max_send_buffer_size(SEND_BUFFER_BYTES);
    let handshake = builder.handshake::<_, Bytes>(io);
    let mut conn = match monoio::time::timeout(ctx.config.timeouts.header, handshake).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            crate::log_debug!("h2 handshake with {peer} failed: {e}");
            return;
        }
        Err(_) => return,
    };
    let metrics = &ctx.metrics;
    metrics.h2_open.set(metrics.h2_open.get() + 1);
    // Busy for the drain: it must not shut the socket under open streams; the check below sends
    // GOAWAY instead.
    guard.set_idle(false);
    let streams = Rc::new(Streams {
        open: Cell::new(0),
        last: Cell::new(Instant::now()),
    });
    let idle_limit = ctx.config.timeouts.idle;
    let mut check = Box::pin(monoio::time::sleep(CHECK_INTERVAL));
    let mut closing = false;
    let mut calmed = false;
    let mut goaway = false;
    loop {
        let next = std::future::poll_fn(|cx| {
            while !closing && check.as_mut().poll(cx).is_ready() {
                let idle = streams.open.get() == 0 && streams.last.get().elapsed() >= idle_limit;
                if idle || guard.draining() {
                    closing = true;
                    conn.graceful_shutdown();
                } else {
                    check.set(monoio::time::sleep(CHECK_INTERVAL));
                }
            }
            if !calmed {
                if let Some(reason) = floods.tripped() {
                    calmed = true;
                    conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                    return Poll::Ready(Err(reason));
                }
                floods.waker.set(Some(cx.waker().clone()));
            }
            conn.poll_accept(cx).map(Ok)
        })
        .await;
        match next {
            Ok(Some(Ok((request, respond)))) => {
                metrics.h2_streams.set(metrics.h2_streams.get() + 1);
                streams.open.set(streams.open.get() + 1);
                let done = streams.clone();
                let served = stream::serve(ctx.clone(), request, respond, peer);
                monoio::spawn(async move {
                    served.await;
                    done.open.set(done.open.get() - 1);
                    done.last.set(Instant::now());
                });
            }
            Ok(Some(Err(e))) => {
                if e.is_go_away() && !e.is_remote() || e.is_reset() {
                    metrics.record_h2_goaway(floods.reason_of(&e));
                    goaway = true;
                }
                crate::log_debug!("h2 connection from {peer} ended: {e}");
                break;
            }
            Ok(None) => break,
            Err(reason) => {
                metrics.record_h2_goaway(reason);
                goaway = true;
                crate::log_debug!("h2 connection from {peer}: GOAWAY ({})", reason.name());
                // Lets the GOAWAY out, within GOAWAY_FLUSH.
                let _ = monoio::time::timeout(
                    GOAWAY_FLUSH,
                    std::future::poll_fn(|cx| conn.poll_closed(cx)),
                )
                .await;
                break;
            }
        }
    }
    metrics.h2_open.set(metrics.h2_open.get() - 1);
    // h2 wrote its GOAWAY and close_notify when it ended (`io::TlsIo::poll_shutdown`).
    drop(conn);
    // Whenever tether ended the connection (GOAWAY for a flood or an error, or the graceful
    // one of the idle check and the drain): the client may still be writing (a PING ack, a
    // WINDOW_UPDATE), and closing over unread bytes would reset the connection under it.
    if goaway || closing {
        linger(&socket).await;
    }
    drop(guard);
}

/// A connection's open streams, for its idle check.
struct Streams {
    /// Streams being served now.
    open: Cell<usize>,
    /// When the last one ended (or the connection began).
    last: Cell<Instant>,
}

/// After a GOAWAY: ends what tether sends (FIN) and reads and discards what the client still
/// sends, until it closes or LINGER_TIME passes, so that closing the socket does not turn into
/// an RST that makes the client's kernel drop the GOAWAY unread. Cancel-safe (readiness waits
/// and non-blocking reads).
async fn linger(socket: &monoio::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    // SAFETY: the connection's own descriptor, open until `socket` drops.
    unsafe { libc::shutdown(fd, libc::SHUT_WR) };
    let deadline = Instant::now() + GOAWAY_FLUSH;
    let mut scratch = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    let mut left = LINGER_BYTES;
    while left > 0 {
        match crate::conn_io::recv_now(fd, &mut scratch) {
            Ok(Some(0)) | Err(_) => return,
            Ok(Some(n)) => {
                left = left.saturating_sub(n);
                continue;
            }
            Ok(None) => {}
        }
        let Some(rest) = deadline.checked_duration_since(Instant::now()) else {
            return;
        };
        if !matches!(
            monoio::time::timeout(rest, socket.readable(false)).await,
            Ok(Ok(()))
        ) {
            return;
        }
    }
}

/// Most bytes a lingering close after a GOAWAY reads and discards.
const LINGER_BYTES: usize = 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_outside_http2_ranges_are_refused() {
        assert!(H2Limits::default().check().is_ok());
        let frame = H2Limits {
            max_frame_bytes: 1024,
            ..H2Limits::default()
        };
        let e = frame.check().unwrap_err().to_string();
        assert_eq!(
            e,
            "--h2-max-frame must be from 16384 to 16777215 (RFC 9113)"
        );
        let window = H2Limits {
            initial_stream_window: 1 << 31,
            ..H2Limits::default()
        };
        assert!(window.check().is_err());
        let streams = H2Limits {
            max_concurrent_streams: 0,
            ..H2Limits::default()
        };
        assert!(streams.check().is_err());
    }

    #[test]
    fn the_frame_counter_sees_frames_across_reads() {
        let mut wire = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        let frame = |kind: u8, flags: u8, payload: &[u8]| {
            let mut f = vec![0, 0, payload.len() as u8, kind, flags, 0, 0, 0, 0];
            f.extend_from_slice(payload);
            f
        };
        wire.extend(frame(0x4, 0, &[0; 6]));
        for _ in 0..3 {
            wire.extend(frame(0x6, 0, &[7; 8]));
            wire.extend(frame(0x6, 1, &[7; 8])); // an ACK: not counted
        }
        wire.extend(frame(0x3, 0, &[0; 4]));
        // Every split point gives the same counts.
        for cut in 0..wire.len() {
            let mut counter = io::FrameCounter::default();
            let mut seen = Vec::new();
            counter.see_with(&wire[..cut], &mut |k, f| seen.push((k, f)));
            counter.see_with(&wire[cut..], &mut |k, f| seen.push((k, f)));
            let kinds: Vec<_> = seen
                .iter()
                .filter_map(|&(k, f)| io::counted_kind(k, f))
                .collect();
            assert_eq!(
                kinds,
                [
                    Flood::Settings,
                    Flood::Ping,
                    Flood::Ping,
                    Flood::Ping,
                    Flood::Reset
                ],
                "cut at {cut}"
            );
        }
    }
}
