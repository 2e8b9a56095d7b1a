//! The SSE relay: an upstream `text/event-stream` body, framed into blocks, forwarded block by
//! block to the client, recorded in the stream's replay ring, and resumed on a fresh upstream
//! when the upstream drops.
//!
//! One task per client (the connection's own), no buffering beyond what is already read:
//!
//! ```text
//! loop:                                   (pump: one upstream body)
//!   idle (nothing queued for the client):
//!     wait for the first of: upstream readable -> read what is there -> frame -> queue blocks
//!                            heartbeat due     -> queue ": keep-alive"
//!                            upstream idle     -> drop (with --upstream-idle-timeout)
//!                            client closed     -> end (watched only after CLIENT_WATCH_DELAY idle)
//!   writing (blocks queued): writev everything queued, and meanwhile keep reading the upstream;
//!     the queue is bounded by --sse-client-buffer: past it the client is cut off.
//! upstream dropped or ended -> resume: backoff, fresh upstream (same task, same worker),
//!   GET with Last-Event-ID = the client's cursor, splice the new body, drop repeated ids.
//! ```
//!
//! Flush rule: a block leaves as soon as it is complete; blocks that arrived together leave
//! together (one chunk, one writev). Nothing waits for more input.
//!
//! Cancellation: the upstream read future owns the upstream socket and its buffer and is only
//! dropped when that upstream is abandoned (the socket is closed with it). It first waits for
//! readability (no buffer pinned while a stream is quiet), then reads exactly the bytes available
//! (FIONREAD). A reconnect attempt owns its new socket the same way. The client write future is
//! never dropped while the client connection lives. `readable()` and timers own no buffer.

use std::io;
use std::mem;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use monoio::io::AsyncWriteRent;
use monoio::net::TcpStream;

use super::active::{RelayState, StreamStatus};
use super::framer::{EventFramer, IdField, SseBlock};
use super::key::StreamKey;
use super::registry::{RingCursor, StreamLease};
use super::resume::{self, AttemptResult, Backoff, DeliveredIds, ResumePolicy};
use crate::conn_io::{peek_state, read_more, write_vec_within, BytesVec, PeekState};
use crate::http::{
    BodyDecoder, ChunkHeader, Decoded, OutFraming, RequestHead, CHUNK_END, LAST_CHUNK,
};
use crate::metrics::{DropKind, WorkerMetrics};
use crate::worker::WorkerCtx;

/// How long a stream must be quiet before the client socket is also watched for a disconnect.
/// Watching costs a poll op each time the stream goes quiet; busy streams notice a gone client
/// through their writes instead.
const CLIENT_WATCH_DELAY: Duration = Duration::from_millis(100);

/// Smallest and largest single read from an SSE upstream, in bytes (the read is sized to what the
/// socket holds, within these bounds).
const MIN_SSE_READ: usize = 512;
const MAX_SSE_READ: usize = 64 * 1024;

/// Default `--sse-client-buffer`: bytes queued for one client before it is cut off.
pub const DEFAULT_CLIENT_BUFFER: usize = 1024 * 1024;

/// What tether sends when nothing was sent for `--sse-heartbeat`: a comment block, which no
/// client dispatches and every intermediary forwards.
pub const HEARTBEAT: &[u8] = b": keep-alive\n\n";

/// SSE settings resolved from the command line.
#[derive(Debug, Clone, Copy)]
pub struct SseSettings {
    /// `--sse-max-event-bytes`: an upstream block larger than this ends the stream.
    pub max_event_bytes: usize,
    /// `--sse-heartbeat`: comment after this much silence towards the client (None = off).
    pub heartbeat: Option<Duration>,
    /// `--sse-client-buffer`: bytes queued for one client before it is cut off as too slow.
    pub client_buffer: usize,
    /// `--assign-ids`: give every event without an id one of tether's own.
    pub assign_ids: bool,
}

/// Why a relay ended.
#[derive(Debug, PartialEq, Eq)]
pub enum SseEnd {
    /// The upstream ended the stream for good (clean end passed through, a final answer to a
    /// reconnect, or resume not allowed); the client's response was ended cleanly.
    Completed,
    /// Reconnecting made no progress for `--reconnect-timeout`; the client's response was ended
    /// cleanly so that its own reconnection reaches the replay ring.
    GaveUp,
    /// The upstream sent a block over `--sse-max-event-bytes`; ended after the last whole block.
    EventTooLarge,
    /// The client closed its connection or a write to it failed.
    ClientGone,
    /// The client did not take its bytes fast enough.
    SlowClient,
}

/// What the client is owed before live events: the replay found in a ring.
#[derive(Debug, Default)]
pub struct Replay {
    /// Blocks after the client's Last-Event-ID, in order.
    pub missed: Vec<Bytes>,
    /// Ids the client already has: live blocks carrying one of them are dropped.
    pub delivered: Vec<Bytes>,
    /// The newest upstream id among them: the client's cursor for resuming after the replay
    /// (empty when the ring holds only ids tether assigned).
    pub cursor: Bytes,
    /// Where the client stands in this worker's ring after the replay.
    pub ring_seq: u64,
}

/// Everything the relay takes over from the exchange.
pub struct SseStart<'a> {
    pub client: &'a mut TcpStream,
    pub client_addr: IpAddr,
    /// Chunked for HTTP/1.1 clients, close-delimited for HTTP/1.0.
    pub framing: OutFraming,
    /// The response head for the client, already written into bytes.
    pub head: Bytes,
    /// None when no upstream answered a reconnection served from the ring: the relay starts by
    /// reconnecting.
    pub up: Option<TcpStream>,
    /// Which replica `up` belongs to (reconnects try it first).
    pub replica: usize,
    /// Body bytes read together with the upstream head.
    pub ubuf: BytesMut,
    pub decoder: BodyDecoder,
    pub key: StreamKey,
    pub replay: Option<Replay>,
    /// The client's request, re-sent (as a GET) on reconnects.
    pub request: RequestHead,
}

struct UpReader {
    stream: TcpStream,
    buf: BytesMut,
}

/// Waits until the upstream has bytes, then reads what is there. Not cancel-safe: only dropped
/// together with the upstream socket it owns.
async fn read_upstream(mut r: UpReader) -> (UpReader, io::Result<usize>) {
    if let Err(e) = r.stream.readable(true).await {
        return (r, Err(e));
    }
    let want = bytes_available(r.stream.as_raw_fd()).clamp(MIN_SSE_READ, MAX_SSE_READ);
    // A fresh allocation of about what the socket holds, unless an unfinished piece (chunk
    // framing) is waiting: events kept in the replay ring then pin only the read they came in,
    // never a large, mostly empty buffer shared with later reads.
    let buf = if r.buf.is_empty() {
        BytesMut::new()
    } else {
        mem::take(&mut r.buf)
    };
    let (res, buf) = read_more(&mut r.stream, buf, want).await;
    r.buf = buf;
    (r, res)
}

/// Bytes waiting in a socket's receive queue (FIONREAD), 0 when unknown.
fn bytes_available(fd: RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which points at `n`.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n as *mut libc::c_int) };
    if rc == 0 && n > 0 {
        n as usize
    } else {
        0
    }
}

/// How one upstream body stopped (pump's answer).
#[derive(Debug, PartialEq, Eq)]
enum BodyEnd {
    /// The body ended as framed (last chunk, or close of a close-delimited body).
    Clean,
    /// The connection broke before the body ended.
    Dropped(DropKind),
    TooLarge,
    ClientGone,
    SlowClient,
    /// No upstream could be reached for a reconnection the replay ring served: the client got
    /// its replay and the relay reconnects behind it (never a 5xx to a reconnecting EventSource).
    Unreachable,
}

/// The per-stream state the relay keeps across reads and upstreams.
struct Relay<'c> {
    ctx: &'c WorkerCtx,
    /// What `/streams` shows of this stream.
    status: Rc<StreamStatus>,
    settings: SseSettings,
    framing: OutFraming,
    decoder: BodyDecoder,
    framer: EventFramer,
    blocks: Vec<SseBlock>,
    /// The body pieces the current blocks were framed from (to join adjacent blocks).
    pieces: Vec<Bytes>,
    lease: StreamLease,
    cursor: RingCursor,
    /// Ids this client has (from the replay, and the ring at each drop); consulted once the body
    /// is a resumed or replay-continued one.
    delivered: DeliveredIds,
    /// Drop blocks whose id the client already has (after a replay or a reconnect).
    dedupe: bool,
    /// After a repeated id, the blocks without id that follow it are repeats too.
    skipping_repeats: bool,
    /// Bytes framed for the client and not yet handed to a write.
    pending: BytesVec,
    /// Chunk-size lines are cut from this small buffer instead of one allocation each.
    scratch: BytesMut,
    last_sent: Instant,
    /// Last byte from the upstream (for --upstream-idle-timeout).
    last_upstream: Instant,
    /// A new (not repeated) block reached the client since the last drop.
    progressed: bool,
    /// The upstream's latest `retry:` hint.
    retry_hint: Option<Duration>,
    /// Drop time of a resume whose first bytes have not reached the client yet (gap metric).
    gap_from: Option<Instant>,
    /// Since when reconnects have brought no new event (None while progressing).
    stalled_since: Option<Instant>,
}

pub async fn relay(ctx: &WorkerCtx, start: SseStart<'_>) -> SseEnd {
    let settings = ctx.sse;
    let lease = ctx.streams.lease(&start.key);
    WorkerMetrics::inc(&ctx.metrics.sse_streams_active);
    let url = ctx.upstreams.borrow().spec(start.replica).url.clone();
    let entry = ctx.active.register(start.key.clone(), url);
    let mut relay = Relay {
        status: entry.status.clone(),
        ctx,
        settings,
        framing: start.framing,
        decoder: start.decoder,
        framer: EventFramer::new(settings.max_event_bytes),
        blocks: Vec::new(),
        pieces: Vec::new(),
        cursor: RingCursor {
            seq: None,
            fresh: true,
        },
        lease,
        delivered: DeliveredIds::new(ctx.config.rings.max_events),
        dedupe: false,
        skipping_repeats: false,
        pending: BytesVec::new(),
        scratch: BytesMut::new(),
        last_sent: Instant::now(),
        last_upstream: Instant::now(),
        progressed: false,
        retry_hint: None,
        gap_from: None,
        stalled_since: None,
    };
    relay.pending.push(start.head);
    let mut replay_cursor = None;
    if let Some(replay) = start.replay {
        relay.queue_blocks(replay.missed);
        // The client now holds the ring up to where the plan found it; another client may have
        // extended the ring since, in which case this one resyncs by id as its events arrive.
        relay.cursor = RingCursor {
            seq: Some(replay.ring_seq),
            fresh: false,
        };
        for id in replay.delivered {
            relay.delivered.insert(id);
        }
        relay.dedupe = true;
        replay_cursor = Some(replay.cursor);
    }
    let _entry = entry;
    let end = relay
        .run(
            start.client,
            start.client_addr,
            start.up,
            start.ubuf,
            start.replica,
            &start.request,
            replay_cursor,
        )
        .await;
    let m = &ctx.metrics;
    m.sse_streams_active
        .set(m.sse_streams_active.get().saturating_sub(1));
    end
}

impl Relay<'_> {
    #[allow(clippy::too_many_arguments)]
    async fn run(
        &mut self,
        client: &mut TcpStream,
        client_addr: IpAddr,
        up: Option<TcpStream>,
        mut ubuf: BytesMut,
        mut replica: usize,
        request: &RequestHead,
        replay_cursor: Option<Bytes>,
    ) -> SseEnd {
        let target = self.lease.stream.key.target();
        // The cursor the upstream must resume from: the framer's (browser semantics), seeded by
        // the replay when there was one.
        let mut cursor_seed = replay_cursor;
        let mut backoff = Backoff::new(
            self.ctx.resume.initial,
            self.ctx.resume.max_delay,
            jitter_seed(self.ctx.index),
        );
        let mut up = up;
        loop {
            let body_end = match up.take() {
                Some(stream) => self.pump(client, stream, mem::take(&mut ubuf)).await,
                None => BodyEnd::Unreachable,
            };
            let kind = match body_end {
                BodyEnd::ClientGone => return SseEnd::ClientGone,
                BodyEnd::SlowClient => {
                    WorkerMetrics::inc(&self.ctx.metrics.slow_clients);
                    return SseEnd::SlowClient;
                }
                BodyEnd::TooLarge => return self.finish(client, SseEnd::EventTooLarge).await,
                BodyEnd::Clean if self.ctx.resume.pass_clean_end => {
                    return self.finish(client, SseEnd::Completed).await;
                }
                BodyEnd::Clean => DropKind::Eof,
                BodyEnd::Dropped(kind) => kind,
                BodyEnd::Unreachable => DropKind::Error,
            };
            if body_end != BodyEnd::Unreachable {
                self.ctx.metrics.record_drop(kind);
            }
            let dropped_at = Instant::now();
            // The dead response's unfinished block is discarded; the next body starts afresh
            // (its leading BOM stripped), the cursor is kept.
            self.framer.restart_body();
            // What the client has is what this stream's ring holds (ids delivered on the stream):
            // collected once per drop rather than recorded per event.
            for event in self.lease.stream.ring.borrow().after(0) {
                if let Some(id) = event.id.as_ref().filter(|id| !id.is_empty()) {
                    self.delivered.insert(id.clone());
                }
            }
            let last_id: Bytes = match (self.framer.last_event_id(), &cursor_seed) {
                (id, _) if !id.is_empty() => Bytes::copy_from_slice(id),
                (_, Some(seed)) => seed.clone(),
                _ => Bytes::new(),
            };
            let what = match body_end {
                BodyEnd::Clean => "ended",
                BodyEnd::Unreachable => "unreachable (the client got its replay)",
                _ => "dropped",
            };
            match resume::policy(&self.ctx.resume, request.method, &last_id) {
                ResumePolicy::Resume => {}
                ResumePolicy::End(why) => {
                    crate::log_info!(
                        "sse {target}: upstream {what} ({}); not resuming: {why}",
                        kind.name()
                    );
                    return self.finish(client, SseEnd::Completed).await;
                }
            }
            self.status.state.set(RelayState::Reconnecting);
            crate::log_info!(
                "sse {target}: upstream {what} ({}) after id {:?}; reconnecting",
                kind.name(),
                String::from_utf8_lossy(&last_id)
            );
            if let Some(hint) = self.retry_hint {
                backoff.set_base(hint);
            }
            // The first reconnect after progress goes at once (the gap is what the client
            // notices), or after the upstream's retry: when it gave one (an upstream that closes
            // on purpose after retry:, as MCP servers may, expects it to be honoured); a reconnect
            // that brought no new event counts as a failure and backs off.
            let first_wait = if self.progressed || self.stalled_since.is_none() {
                backoff.reset();
                self.stalled_since = Some(dropped_at);
                self.retry_hint
                    .map_or(Duration::ZERO, |hint| hint.min(self.ctx.resume.max_delay))
            } else {
                backoff.next_delay()
            };
            self.progressed = false;
            // Boxed: reconnecting is rare and its futures are large; a streaming relay (the
            // state tens of thousands of idle streams sit in) does not carry their size.
            let reconnect = Box::pin(self.reconnect(
                client,
                client_addr,
                request,
                &last_id,
                replica,
                &mut backoff,
                dropped_at,
                first_wait,
            ));
            match reconnect.await {
                Reconnect::Spliced {
                    stream,
                    buf,
                    decoder,
                    replica: r,
                    attempts,
                } => {
                    WorkerMetrics::inc(&self.ctx.metrics.resumes);
                    self.status.resumes.set(self.status.resumes.get() + 1);
                    self.status.state.set(RelayState::Streaming);
                    *self.status.upstream.borrow_mut() =
                        self.ctx.upstreams.borrow().spec(r).url.clone();
                    crate::log_info!(
                        "sse {target}: resumed after id {:?} on {} ({attempts} attempt{}, {} ms since the drop)",
                        String::from_utf8_lossy(&last_id),
                        self.ctx.upstreams.borrow().spec(r).url,
                        if attempts == 1 { "" } else { "s" },
                        dropped_at.elapsed().as_millis()
                    );
                    self.decoder = decoder;
                    self.dedupe = true;
                    self.skipping_repeats = false;
                    self.last_upstream = Instant::now();
                    self.gap_from = Some(dropped_at);
                    cursor_seed = Some(last_id);
                    replica = r;
                    up = Some(stream);
                    ubuf = buf;
                }
                Reconnect::Final(status) => {
                    crate::log_info!(
                        "sse {target}: reconnect answered {status}; ending the client's stream"
                    );
                    return self.finish(client, SseEnd::Completed).await;
                }
                Reconnect::GaveUp(attempts) => {
                    WorkerMetrics::inc(&self.ctx.metrics.give_ups);
                    let stalled = self.stalled_since.unwrap_or(dropped_at).elapsed();
                    crate::log_warn!(
                        "sse {target}: giving up after {} ms without a new event ({attempts} attempts since the last drop); ending the client's stream (it can resume from the ring)",
                        stalled.as_millis()
                    );
                    return self.finish(client, SseEnd::GaveUp).await;
                }
                Reconnect::ClientGone => return SseEnd::ClientGone,
            }
        }
    }
}

/// How reconnecting ended.
enum Reconnect {
    Spliced {
        stream: TcpStream,
        buf: BytesMut,
        decoder: BodyDecoder,
        replica: usize,
        attempts: u32,
    },
    Final(u16),
    GaveUp(u32),
    ClientGone,
}

impl Relay<'_> {
    /// Backs off, attempts, repeats until a body can be spliced, a final answer comes, or
    /// `--reconnect-timeout` passes. Heartbeats keep the client's connection alive meanwhile, and a
    /// client that leaves ends it.
    #[allow(clippy::too_many_arguments)]
    async fn reconnect(
        &mut self,
        client: &mut TcpStream,
        client_addr: IpAddr,
        request: &RequestHead,
        last_id: &[u8],
        replica: usize,
        backoff: &mut Backoff,
        dropped_at: Instant,
        first_wait: Duration,
    ) -> Reconnect {
        let give_up_at = self.stalled_since.unwrap_or(dropped_at) + self.ctx.resume.timeout;
        let mut attempts = 0u32;
        let mut wait = first_wait;
        loop {
            // ---- wait out the backoff, with heartbeats and the client watched ----
            // Giving up happens at the timeout, not earlier because the next attempt would fall
            // after it.
            let wake = (Instant::now() + wait).min(give_up_at);
            if let Some(end) = self.idle_until(client, wake).await {
                return end;
            }
            if Instant::now() >= give_up_at {
                return Reconnect::GaveUp(attempts);
            }
            // ---- one attempt, with heartbeats and the client watched ----
            attempts += 1;
            WorkerMetrics::inc(&self.ctx.metrics.reconnect_attempts);
            // Boxed: only alive while reconnecting, so a streaming relay does not carry its size.
            let mut attempt = Box::pin(resume::attempt(
                self.ctx,
                request,
                client_addr,
                last_id,
                replica,
            ));
            let mut client_busy = false;
            let result = loop {
                let heartbeat_at = self.settings.heartbeat.map(|d| self.last_sent + d);
                let sleep =
                    sleep_until_opt(heartbeat_at.map(|h| h.min(give_up_at)).or(Some(give_up_at)));
                monoio::select! {
                    r = attempt.as_mut() => break r,
                    _ = sleep => {
                        if Instant::now() >= give_up_at {
                            return Reconnect::GaveUp(attempts);
                        }
                        if let Some(end) = self.send_heartbeat(client).await {
                            return end;
                        }
                    }
                    ready = client.readable(false), if !client_busy => {
                        match (ready, peek_state(client.as_raw_fd())) {
                            (Err(_), _) | (_, PeekState::Closed) => return Reconnect::ClientGone,
                            // A pipelined request stays readable: stop watching.
                            (_, PeekState::HasData) => client_busy = true,
                            (_, PeekState::Quiet) => {}
                        }
                    }
                }
            };
            match result {
                AttemptResult::Splice {
                    stream,
                    ubuf,
                    decoder,
                    replica,
                } => {
                    return Reconnect::Spliced {
                        stream,
                        buf: ubuf,
                        decoder,
                        replica,
                        attempts,
                    };
                }
                AttemptResult::Final(status) => return Reconnect::Final(status),
                AttemptResult::Retry(why) => {
                    crate::log_debug!("reconnect attempt {attempts} failed: {why}");
                    wait = backoff.next_delay();
                }
            }
        }
    }

    /// Waits until `until`, sending heartbeats when due and watching the client. Some(end) when
    /// the client left.
    async fn idle_until(&mut self, client: &mut TcpStream, until: Instant) -> Option<Reconnect> {
        loop {
            let now = Instant::now();
            if now >= until {
                return None;
            }
            let heartbeat_at = self.settings.heartbeat.map(|d| self.last_sent + d);
            let wake = heartbeat_at.map_or(until, |h| h.min(until));
            monoio::select! {
                _ = monoio::time::sleep_until(wake.into()) => {
                    if heartbeat_at.is_some_and(|h| Instant::now() >= h) {
                        if let Some(end) = self.send_heartbeat(client).await {
                            return Some(end);
                        }
                    }
                }
                ready = client.readable(false) => {
                    if ready.is_err() || peek_state(client.as_raw_fd()) == PeekState::Closed {
                        return Some(Reconnect::ClientGone);
                    }
                    // Data from the client (a pipelined request) waits for after the stream; sleep
                    // out the rest without watching (it would stay readable).
                    monoio::time::sleep_until(until.into()).await;
                }
            }
        }
    }

    async fn send_heartbeat(&mut self, client: &mut TcpStream) -> Option<Reconnect> {
        push_framed_static(
            &mut self.pending,
            &mut self.scratch,
            HEARTBEAT,
            self.framing,
        );
        WorkerMetrics::inc(&self.ctx.metrics.heartbeats);
        let out = mem::take(&mut self.pending);
        match write_vec_within(client, out, self.ctx.config.timeouts.send).await {
            Ok(back) => {
                self.pending = back;
                self.last_sent = Instant::now();
                None
            }
            Err(_) => Some(Reconnect::ClientGone),
        }
    }
}

/// A per-stream seed for the backoff jitter: worker, clock and a counter, so that streams dropped
/// together spread out.
fn jitter_seed(worker: usize) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    ((worker as u64) << 48) ^ nanos ^ 0x9E37_79B9_7F4A_7C15
}

/// Sleeps until `at`, or forever when None.
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => monoio::time::sleep_until(at.into()).await,
        None => std::future::pending::<()>().await,
    }
}

impl Relay<'_> {
    /// Relays one upstream body until it ends, drops, or the client fails. Everything queued for
    /// the client has been written when it returns an upstream end.
    async fn pump(&mut self, client: &mut TcpStream, up: TcpStream, mut ubuf: BytesMut) -> BodyEnd {
        // Body bytes that came with the head are relayed with it.
        let mut up_state = self.ingest(&mut ubuf);
        let reader = UpReader {
            stream: up,
            buf: ubuf,
        };
        let mut read = pin!(read_upstream(reader));
        let mut reading = up_state.is_none();
        let idle_timeout = self.ctx.resume.idle_timeout;

        loop {
            if self.pending.is_empty() {
                if let Some(end) = up_state.take() {
                    return end;
                }
                // ---- idle: wait for the upstream, a heartbeat, or the client leaving ----
                let quiet_since = Instant::now();
                let mut watching = false;
                let mut client_busy = false;
                while self.pending.is_empty() && up_state.is_none() {
                    let heartbeat_at = self.settings.heartbeat.map(|d| self.last_sent + d);
                    let idle_at = idle_timeout.map(|d| self.last_upstream + d);
                    let watch_at =
                        (!watching && !client_busy).then_some(quiet_since + CLIENT_WATCH_DELAY);
                    let wake_at = [heartbeat_at, idle_at, watch_at]
                        .into_iter()
                        .flatten()
                        .min();
                    monoio::select! {
                        (reader, res) = read.as_mut(), if reading => {
                            let (end, next) = self.after_read(reader, res);
                            match next {
                                Some(reader) => read.set(read_upstream(reader)),
                                None => reading = false,
                            }
                            up_state = end;
                        }
                        _ = sleep_until_opt(wake_at) => {
                            let now = Instant::now();
                            if idle_at.is_some_and(|at| now >= at) {
                                crate::log_debug!("sse upstream idle past --upstream-idle-timeout");
                                return BodyEnd::Dropped(DropKind::Idle);
                            }
                            if heartbeat_at.is_some_and(|at| now >= at) {
                                push_framed_static(&mut self.pending, &mut self.scratch, HEARTBEAT, self.framing);
                                WorkerMetrics::inc(&self.ctx.metrics.heartbeats);
                            } else if !client_busy {
                                watching = true;
                            }
                        }
                        ready = client.readable(false), if watching => {
                            match (ready, peek_state(client.as_raw_fd())) {
                                (Err(_), _) | (_, PeekState::Closed) => return BodyEnd::ClientGone,
                                // A pipelined request: it waits in the socket for after the stream.
                                (_, PeekState::HasData) => {
                                    watching = false;
                                    client_busy = true;
                                }
                                (_, PeekState::Quiet) => {}
                            }
                        }
                    }
                }
                continue;
            }

            // ---- writing: everything queued, while the upstream keeps being read ----
            let batch = mem::take(&mut self.pending);
            let queued = batch.remaining();
            let write_deadline = Instant::now() + self.ctx.config.timeouts.send;
            let mut write = pin!(write_batch(client, batch));
            let result = loop {
                monoio::select! {
                    done = write.as_mut() => break done,
                    (reader, res) = read.as_mut(), if reading => {
                        let (end, next) = self.after_read(reader, res);
                        match next {
                            Some(reader) => read.set(read_upstream(reader)),
                            None => reading = false,
                        }
                        up_state = end;
                        if self.pending.remaining() + queued > self.settings.client_buffer {
                            crate::log_info!(
                                "sse {}: client too slow ({} bytes queued, --sse-client-buffer {}); disconnecting",
                                self.lease.stream.key.target(),
                                self.pending.remaining() + queued,
                                self.settings.client_buffer
                            );
                            return BodyEnd::SlowClient;
                        }
                    }
                    _ = monoio::time::sleep_until(write_deadline.into()) => {
                        crate::log_info!(
                            "sse {}: client took no bytes for the send timeout; disconnecting",
                            self.lease.stream.key.target()
                        );
                        return BodyEnd::SlowClient;
                    }
                }
            };
            match result {
                Ok(rest) => {
                    self.last_sent = Instant::now();
                    if let Some(since) = self.gap_from.take() {
                        self.ctx.metrics.record_gap(since.elapsed());
                    }
                    if !rest.is_empty() {
                        // A short write: the rest goes first in the next batch.
                        let mut rest = rest;
                        rest.append(&mut self.pending);
                        self.pending = rest;
                    }
                }
                Err(_) => return BodyEnd::ClientGone,
            }
        }
    }

    /// Handles a completed upstream read. Returns how the body ended, if it did, else the reader
    /// to arm the next read with.
    fn after_read(
        &mut self,
        mut reader: UpReader,
        res: io::Result<usize>,
    ) -> (Option<BodyEnd>, Option<UpReader>) {
        let end = match res {
            Ok(0) => match self.decoder.eof() {
                Ok(()) => Some(BodyEnd::Clean),
                Err(_) => Some(BodyEnd::Dropped(DropKind::Eof)),
            },
            Ok(_) => {
                self.last_upstream = Instant::now();
                self.ingest(&mut reader.buf)
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                Some(BodyEnd::Dropped(DropKind::Reset))
            }
            Err(e) => {
                crate::log_debug!("sse upstream read failed: {e}");
                Some(BodyEnd::Dropped(DropKind::Error))
            }
        };
        if reader.buf.is_empty() {
            // Nothing left over: a quiet stream waits holding no buffer at all.
            reader.buf = BytesMut::new();
        }
        match end {
            None => (None, Some(reader)),
            Some(end) => (Some(end), None),
        }
    }

    /// Decodes what `buf` holds, frames it, and queues the resulting blocks.
    fn ingest(&mut self, buf: &mut BytesMut) -> Option<BodyEnd> {
        while !buf.is_empty() && !self.decoder.is_done() {
            match self.decoder.decode(buf) {
                Ok(Decoded::Data { start, end }) => {
                    let piece = buf.split_to(end).freeze().slice(start..);
                    self.pieces.push(piece.clone());
                    if self.framer.feed(piece, &mut self.blocks).is_err() {
                        crate::log_warn!(
                            "sse {}: upstream event larger than --sse-max-event-bytes {}; ending the stream",
                            self.lease.stream.key.target(),
                            self.settings.max_event_bytes
                        );
                        self.flush_blocks();
                        return Some(BodyEnd::TooLarge);
                    }
                }
                Ok(Decoded::NeedMore) => buf.clear(),
                Ok(Decoded::Done { consumed }) => buf.advance(consumed),
                Err(e) => {
                    crate::log_debug!("sse upstream body invalid: {e}");
                    self.flush_blocks();
                    return Some(BodyEnd::Dropped(DropKind::Error));
                }
            }
        }
        self.flush_blocks();
        if self.decoder.is_done() {
            return Some(BodyEnd::Clean);
        }
        None
    }

    /// Filters the framed blocks (repeats after a resume or replay), assigns ids if asked, records
    /// them in the ring, and queues them for the client as one chunk.
    fn flush_blocks(&mut self) {
        if self.blocks.is_empty() {
            return;
        }
        let mut blocks = mem::take(&mut self.blocks);
        let mut out = Vec::with_capacity(blocks.len());
        let sole = self.lease.stream.clients() == 1;
        let mut events = 0u64;
        for block in blocks.drain(..) {
            if let Some(retry) = block.retry {
                self.retry_hint = Some(Duration::from_millis(retry));
            }
            let id = match &block.id {
                IdField::Set(id) => Some(id.clone()),
                IdField::Unchanged => None,
            };
            if self.dedupe {
                match &id {
                    Some(id) if !id.is_empty() && self.delivered.contains(id) => {
                        self.skipping_repeats = true;
                        WorkerMetrics::inc(&self.ctx.metrics.duplicates_dropped);
                        continue;
                    }
                    Some(_) => self.skipping_repeats = false,
                    None if self.skipping_repeats => {
                        WorkerMetrics::inc(&self.ctx.metrics.duplicates_dropped);
                        continue;
                    }
                    None => {}
                }
            }
            let assigned = self.settings.assign_ids && block.fires && id.is_none();
            let (id, raw) = if assigned {
                let assigned = Bytes::from(format!(
                    "{}-{}",
                    self.ctx.index,
                    self.ctx.next_assigned_id()
                ));
                let mut raw = BytesMut::with_capacity(block.raw.len() + assigned.len() + 5);
                raw.extend_from_slice(b"id: ");
                raw.extend_from_slice(&assigned);
                raw.extend_from_slice(b"\n");
                raw.extend_from_slice(&block.raw);
                (Some(assigned), raw.freeze())
            } else {
                (id, block.raw)
            };
            if block.fires || id.is_some() || block.retry.is_some() {
                let mut ring = self.lease.stream.ring.borrow_mut();
                self.cursor
                    .record(&mut ring, id.as_ref(), &raw, assigned, sole);
            }
            // Progress is a new event or cursor move, not a retry: line or a comment (an upstream
            // that accepts reconnects but only ever repeats its retry: hint makes no progress).
            if block.fires || id.is_some() {
                self.progressed = true;
            }
            if block.fires {
                events += 1;
            }
            // Blocks that lie next to each other in the piece they came in leave as one slice
            // (one iovec instead of one per event).
            match out.last().and_then(|prev| adjoin(prev, &raw, &self.pieces)) {
                Some(joined) => *out.last_mut().expect("checked") = joined,
                None => out.push(raw),
            }
        }
        self.pieces.clear();
        self.blocks = blocks;
        let m = &self.ctx.metrics;
        WorkerMetrics::add(&m.sse_events, events);
        WorkerMetrics::add(&m.sse_bytes, out.iter().map(|b| b.len() as u64).sum());
        self.queue_blocks(out);
        let cursor = self.framer.last_event_id();
        if *self.status.last_id.borrow() != cursor {
            *self.status.last_id.borrow_mut() = Bytes::copy_from_slice(cursor);
        }
    }

    /// Queues blocks for the client, framed as one chunk.
    fn queue_blocks(&mut self, blocks: Vec<Bytes>) {
        let len: usize = blocks.iter().map(Bytes::len).sum();
        if len == 0 {
            return;
        }
        if self.framing == OutFraming::Chunked {
            let header = ChunkHeader::new(len);
            self.pending.push(cut(&mut self.scratch, header.as_bytes()));
        }
        for b in blocks {
            self.pending.push(b);
        }
        if self.framing == OutFraming::Chunked {
            self.pending.push_static(CHUNK_END);
        }
    }

    /// Ends the client's response cleanly (after the last whole block).
    async fn finish(&mut self, client: &mut TcpStream, end: SseEnd) -> SseEnd {
        // An unfinished block is discarded, never forwarded; a block completed by a CR at the
        // very end of the body (rule 2) is still a whole block.
        self.framer.finish_into(&mut self.blocks);
        self.flush_blocks();
        if self.framing == OutFraming::Chunked {
            self.pending.push_static(LAST_CHUNK);
        }
        let out = mem::take(&mut self.pending);
        if write_vec_within(client, out, self.ctx.config.timeouts.send)
            .await
            .is_err()
        {
            return SseEnd::ClientGone;
        }
        if self.framing == OutFraming::CloseDelimited {
            let _ = client.shutdown().await;
        }
        end
    }
}

/// `prev` and `next` as one slice when `next` starts where `prev` ends inside one piece.
fn adjoin(prev: &Bytes, next: &Bytes, pieces: &[Bytes]) -> Option<Bytes> {
    let start = prev.as_ptr() as usize;
    if start + prev.len() != next.as_ptr() as usize {
        return None;
    }
    let end = start + prev.len() + next.len();
    let piece = pieces.iter().find(|p| {
        let base = p.as_ptr() as usize;
        base <= start && end <= base + p.len()
    })?;
    let base = piece.as_ptr() as usize;
    Some(piece.slice(start - base..end - base))
}

/// One writev of the batch. Returns what it did not write. Not cancel-safe.
async fn write_batch(client: &mut TcpStream, mut batch: BytesVec) -> io::Result<BytesVec> {
    batch.prepare();
    let (res, mut batch) = client.writev(batch).await;
    match res {
        Ok(0) => Err(io::ErrorKind::WriteZero.into()),
        Ok(n) => {
            batch.advance(n);
            Ok(batch)
        }
        Err(e) => Err(e),
    }
}

/// Copies `bytes` into the scratch buffer and hands them out as a slice of it.
fn cut(scratch: &mut BytesMut, bytes: &[u8]) -> Bytes {
    /// Room for many chunk-size lines per allocation.
    const SCRATCH_BLOCK: usize = 512;
    if scratch.capacity() - scratch.len() < bytes.len() {
        *scratch = BytesMut::with_capacity(SCRATCH_BLOCK);
    }
    scratch.extend_from_slice(bytes);
    scratch.split().freeze()
}

/// Queues a static block (the heartbeat) with the client's framing.
fn push_framed_static(
    out: &mut BytesVec,
    scratch: &mut BytesMut,
    bytes: &'static [u8],
    framing: OutFraming,
) {
    if framing == OutFraming::Chunked {
        out.push(cut(scratch, ChunkHeader::new(bytes.len()).as_bytes()));
        out.push_static(bytes);
        out.push_static(CHUNK_END);
    } else {
        out.push_static(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adjacent_blocks_of_one_piece_are_joined() {
        let piece = Bytes::from_static(b"id: 1\n\nid: 2\n\nid: 3\n\n");
        let (a, b, c) = (piece.slice(0..7), piece.slice(7..14), piece.slice(14..21));
        let pieces = vec![piece.clone()];
        let ab = adjoin(&a, &b, &pieces).expect("adjacent");
        assert_eq!(&ab[..], b"id: 1\n\nid: 2\n\n");
        assert_eq!(&adjoin(&ab, &c, &pieces).expect("adjacent")[..], &piece[..]);
        // Not adjacent (a repeat was dropped between them), or not in a known piece.
        assert!(adjoin(&a, &c, &pieces).is_none());
        let copy = Bytes::copy_from_slice(&b);
        assert!(adjoin(&a, &copy, &pieces).is_none());
        assert!(adjoin(&a, &b, &[]).is_none());
    }
}
