//! The SSE relay: an upstream `text/event-stream` body, framed into blocks, forwarded block by
//! block to the client, recorded in the ring of its lineage, and resumed on a fresh upstream when
//! the upstream drops.
//!
//! One task per client (the connection's own), no buffering beyond what is already read:
//!
//! ```text
//! catch up (a reconnection served from a ring): the ring's events after the client's id, in
//!   batches of REPLAY_BATCH_BYTES, each written before the next is taken (the client's pace)
//! loop:                                   (pump.rs: one upstream body)
//!   idle: wait for upstream readable / heartbeat due / upstream idle / client closed
//!   writing: writev what is queued; keep reading the upstream only while the queue is below
//!     the high-water mark (backpressure: a slow client slows its upstream, it is not cut)
//! upstream dropped or ended -> (reconnect.rs) backoff, fresh upstream (same task, same worker),
//!   GET with Last-Event-ID = the lineage's cursor, splice the new body, drop repeated ids
//! ```
//!
//! The ring is this client's history: everything in it was sent to this client (or is what it
//! had when it reconnected). Duplicates after a resume are judged against it, never against
//! another client's stream. Two clients of one URL have two lineages, two rings.
//!
//! Flush rule: a block leaves as soon as it is complete; blocks that arrived together leave
//! together (one chunk, one writev). Nothing waits for more input.
//!
//! Cancellation: the upstream is waited on with `readable()` (no buffer) and read with a
//! non-blocking `recv` in the same wake-up, so no future ever owns an upstream buffer. The client
//! write future is never dropped while the client connection lives. Timers own no buffer.

use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::active::{ActiveEntry, RelayState, StreamFacts};
use super::extras::StreamExtras;
use super::fanout::{FanEnd, Fanout};
use super::framer::{EventFramer, FramedBlock};
use super::outbound::ClientQueue;
use super::reconnect::Reconnect;
use super::resume::{self, Backoff, ResumePolicy};
use super::table::RingHandle;
use crate::access_log::RequestStart;
use crate::client_stream::ClientStream;
use crate::conn_table::ConnGuard;
use crate::http::{BodyDecoder, HeadLimits, OutFraming, RequestHead};
use crate::metrics::{DropKind, WorkerMetrics};
use crate::proxy::request_id::RequestId;
use crate::route::Route;
use crate::stamp::Stamp;
use crate::upstream::stream::UpstreamStream;
use crate::worker::WorkerCtx;

/// Default `--sse-client-buffer`: bytes queued for one client of a shared stream before it is cut
/// off (coalesced streams, where one slow client must not slow the others). A stream with one
/// client is paced by that client instead (`pump::QUEUE_HIGH_WATER`) and never cut for it.
pub const DEFAULT_CLIENT_BUFFER: usize = 1024 * 1024;

/// SSE settings resolved from the command line.
#[derive(Debug, Clone, Copy)]
pub struct SseSettings {
    /// `--sse-max-event-bytes`: an upstream block larger than this ends the stream.
    pub max_event_bytes: usize,
    /// `--sse-heartbeat`: comment after this much silence towards the client (None = off).
    pub heartbeat: Option<Duration>,
    /// `--sse-client-buffer`: bytes queued for one client of a shared stream before it is cut.
    /// A stream with one client is paced by it instead.
    pub client_buffer: usize,
    /// `--assign-ids`: give every event without an id one of tether's own.
    pub assign_ids: bool,
    /// `--coalesce`: GET streams of one target and identity share one upstream per worker.
    pub coalesce: bool,
    /// `--coalesce-flush`: a follower is written at most once per this (None: at once).
    pub coalesce_flush: Option<Duration>,
    /// `--hold-upstream`: how long an upstream is read on after its last client left.
    pub hold: Option<Duration>,
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
    /// This stream's open event took its worker past its share of `--sse-partial-memory`; ended
    /// after the last whole block.
    PartialBudget,
    /// The events a replay was feeding were evicted (replay memory budget) before the client
    /// took them: the response was ended cleanly after the last event it got, so that its
    /// reconnection (with that id) goes upstream.
    ReplayEvicted,
    /// The client closed its connection or a write to it failed.
    ClientGone,
    /// The client took no bytes for the send timeout.
    SlowClient,
}

/// Where the relay's events come from first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// A fresh stream: the upstream body from its start.
    Upstream,
    /// A reconnection served from the ring: the events after this seq, then the upstream body.
    Replay { after: u64 },
    /// The same, but the upstream has ended the stream (it answered a final status): after the
    /// replay the response ends.
    ReplayThenEnd { after: u64 },
}

/// Everything the relay takes over from the exchange (the client socket is lent separately).
#[derive(Debug)]
pub struct SseStart {
    /// Chunked for HTTP/1.1 clients, close-delimited for HTTP/1.0.
    pub framing: OutFraming,
    /// The response head for the client, already written into bytes.
    pub head: Bytes,
    /// None when no upstream answered a reconnection served from the ring: the relay starts by
    /// reconnecting.
    pub up: Option<UpstreamStream>,
    /// Which replica `up` belongs to (reconnects try it first).
    pub replica: usize,
    /// Body bytes read together with the upstream head.
    pub ubuf: BytesMut,
    pub decoder: BodyDecoder,
    /// The ring of this stream's lineage (new, taken over, or adopted).
    pub ring: RingHandle,
    pub from: StartFrom,
    /// What the upstream was asked to resume from (the ring's newest upstream id), when the
    /// stream continues a ring: the cursor until the new body moves it.
    pub resume_from: Option<Bytes>,
    /// The client's request, re-sent (as a GET) on reconnects; its bytes are its own allocation
    /// (not a slice of the connection's read buffer) since it lives as long as the stream.
    pub request: RequestHead,
    /// The client connection may serve another request after a clean end.
    pub keep_client: bool,
    /// The request's route: the stream's settings and the replicas it reconnects to, for its
    /// whole life (whatever the worker's routes become meanwhile).
    pub(crate) route: Rc<Route>,
    /// The request's id (its own bytes: it lives as long as the stream).
    pub(crate) request_id: RequestId,
    /// What the access log line needs from the request (None: the log is off).
    pub(crate) log: Option<RequestStart>,
    /// The rules' event stage, the header changes of every resume, a replica the resumes must
    /// stay on (None for most streams: nothing of these).
    pub(crate) extras: Option<Box<StreamExtras>>,
}

/// How one upstream body stopped (the pump's answer).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum BodyEnd {
    /// The body ended as framed (last chunk, or close of a close-delimited body).
    Clean,
    /// The connection broke before the body ended.
    Dropped(DropKind),
    TooLarge,
    /// The open event took the worker past its share of --sse-partial-memory.
    PartialBudget,
    ClientGone,
    SlowClient,
    /// No upstream could be reached for a reconnection the replay ring served: the client got
    /// its replay and the relay reconnects behind it (never a 5xx to a reconnecting EventSource).
    Unreachable,
    /// A stream read on without its client (`super::fanout`) has nobody left to read for: its
    /// hold passed, the replay budget freed it, or its last follower left.
    HoldOver,
}

/// The per-stream state the relay keeps across reads and upstreams: everything a stream holds for
/// its whole life is a field here, once. The futures that wait on it hold only references and
/// what one wait needs (an async fn keeps its arguments beside its locals, so state passed down
/// as arguments would be held twice for the stream's life).
pub(super) struct Relay<'c> {
    pub(super) ctx: &'c WorkerCtx,
    /// The stream's route: its SSE and resume settings, its upstream group.
    pub(super) route: Rc<Route>,
    /// This stream's row in `/streams` (removed when the relay is dropped).
    pub(super) entry: ActiveEntry,
    pub(super) decoder: BodyDecoder,
    pub(super) framer: EventFramer,
    pub(super) blocks: Vec<FramedBlock>,
    /// Allocation size of the read the current blocks were framed from (what ring runs pin).
    pub(super) read_alloc: u32,
    /// What the framer's open event holds, as counted in the worker's partial budget.
    pub(super) partial_held: u32,
    /// Upstream bytes read and not yet decoded (an unfinished piece of chunk framing), or the
    /// body bytes that came with a response head; None when there are none, as nearly always
    /// between reads (`take_ubuf`, `keep_ubuf`): boxed, 8 bytes of every stream's future where
    /// an inline `BytesMut` was 32 (`proxy::conn::tests::a_stream_task_stays_small`).
    pub(super) ubuf: Option<Box<BytesMut>>,
    /// This stream's lineage: its ring is this client's history.
    pub(super) ring: RingHandle,
    /// Drop blocks whose id the ring already holds (after a resume or a replay).
    pub(super) dedupe: bool,
    /// After a repeated id, the blocks without id that follow it are repeats too.
    pub(super) skipping_repeats: bool,
    pub(super) out: ClientQueue,
    /// Last write to the client (for heartbeats). Stamps, not `Instant`s, here: 16 bytes of
    /// every stream's task (`proxy::conn::tests::a_stream_task_stays_small`).
    pub(super) last_sent: Stamp,
    /// Last byte from the upstream (for --upstream-idle-timeout).
    pub(super) last_upstream: Stamp,
    /// A new (not repeated) block reached the client since the last drop.
    pub(super) progressed: bool,
    /// The upstream's latest `retry:` hint.
    /// In milliseconds, within u32 (49 days): 8 bytes less than a Duration in every stream's
    /// relay future, which sits at a size-class edge (`a_relay_stays_small`).
    pub(super) retry_hint_ms: Option<u32>,
    /// The client's request head, re-sent (as a GET) on reconnects: its bytes only (an exact
    /// copy, see `SseStart::request`), parsed again when a reconnect needs it
    /// (`Relay::kept_request`). The spans of a parsed head (a Vec, 64 bytes for four headers)
    /// and its 48 bytes of fields in the relay are not worth keeping for the stream's life:
    /// most streams never reconnect. A boxed slice: 16 bytes less than a `Bytes` in every
    /// stream's future.
    pub(super) request: Box<[u8]>,
    /// The replica the current (or last) upstream belongs to; reconnects try it first. A u32
    /// beside the other small fields (replica lists are far shorter), so the relay's future
    /// stays in its allocator size class (`a_relay_stays_small`).
    pub(super) replica: u32,
    /// What a stream that dropped or continues a ring keeps about its resumes; made then (most
    /// streams never drop: an idle one carries 8 bytes, not the 80 of these fields inline).
    pub(super) resumes: Option<Box<Resumes>>,
    /// What few streams carry besides (`super::extras`).
    pub(super) extras: Option<Box<StreamExtras>>,
}

/// A stream's drops and resumes (`Relay::resumes`).
#[derive(Default)]
pub(super) struct Resumes {
    /// Drop time of a resume whose first bytes have not reached the client yet (gap metric).
    pub(super) gap_from: Option<Instant>,
    /// Since when reconnects have brought no new event (None while progressing).
    pub(super) stalled_since: Option<Instant>,
    /// What the upstream resumes from until the framer has a cursor of its own (the id the
    /// stream continued from, then the id of the last resume).
    pub(super) cursor_seed: Option<Bytes>,
    /// Reconnect delays; made at the stream's first reconnect.
    backoff: Option<Backoff>,
    /// A reconnection served from the ring: where its replay starts, taken by `replay_first`.
    /// Here rather than beside the relay in its future, where it took 16 bytes of every
    /// stream's for the stream's life (`proxy::conn::tests::a_stream_task_stays_small`).
    replay: Option<StartFrom>,
}

/// Relays an SSE response to `client` until it ends; see the module doc.
///
/// Not an `async fn`: the start is taken apart here, before the future exists, so the future
/// holds the relay's state once (an async fn would also keep `start` itself for its whole life).
pub fn relay<'a, C: ClientStream>(
    ctx: &'a WorkerCtx,
    client: &'a mut C,
    guard: &'a ConnGuard,
    start: SseStart,
) -> impl std::future::Future<Output = SseEnd> + 'a {
    let SseStart {
        framing,
        head,
        up,
        replica,
        ubuf,
        decoder,
        ring,
        from,
        resume_from,
        request,
        keep_client: _,
        route,
        request_id,
        log,
        extras,
    } = start;
    WorkerMetrics::inc(&ctx.metrics.sse_streams_active);
    let url = ctx.upstreams.borrow().spec(replica).url.clone();
    // The stream's access log facts live in its row (on the heap), not in the relay's future.
    let facts = StreamFacts {
        upstream: Some(url),
        request_id,
        log,
        head_bytes: head.len() as u64,
        client_tls: C::TLS,
        client_h2: C::H2,
    };
    let entry = ctx.active.register(ring.lineage.clone(), facts);
    let max_event_bytes = route.settings.sse.max_event_bytes;
    let mut relay = Relay {
        ctx,
        route,
        entry,
        decoder,
        framer: EventFramer::new(max_event_bytes),
        blocks: Vec::new(),
        read_alloc: 0,
        partial_held: 0,
        ubuf: None,
        ring,
        dedupe: from != StartFrom::Upstream,
        skipping_repeats: false,
        out: ClientQueue::new(framing),
        last_sent: Stamp::now(),
        last_upstream: Stamp::now(),
        progressed: false,
        retry_hint_ms: None,
        // No copy when the head's bytes are their own allocation (as `SseStart` says they are).
        request: Vec::from(request.bytes).into_boxed_slice(),
        replica: replica as u32,
        resumes: (resume_from.is_some() || from != StartFrom::Upstream).then(|| {
            Box::new(Resumes {
                cursor_seed: resume_from,
                replay: (from != StartFrom::Upstream).then_some(from),
                ..Resumes::default()
            })
        }),
        extras,
    };
    relay.keep_ubuf(ubuf);
    relay.out.push_raw(head);
    let mut up = up;
    // Nothing in here uses `ctx`, only `relay.ctx`: a second copy would be 8 bytes of every
    // stream's future.
    async move {
        // The replay first (its state is not carried by the live relay's loop).
        let end = match replay_first(&mut relay, client).await {
            // The drop/resume loop. Inline: as a function of its own its future kept four
            // references and one to the upstream (40 bytes of every stream's future). `up` is
            // the lineage's upstream (None: no upstream answered, reconnect first); a slot
            // beside the relay rather than a field of it, so that the pump can wait on it while
            // it changes the relay.
            Ok(()) => loop {
                let body_end = match up.as_ref() {
                    Some(stream) => {
                        guard.set_upstream(Some(stream.as_raw_fd()));
                        // The client left (or was cut) while others follow the stream or it is
                        // to be held: the upstream is read on without a client. Boxed: such
                        // streams are few; the others do not carry the size of its future.
                        let end = if relay.headless() {
                            Box::pin(relay.pump_headless(stream)).await
                        } else {
                            relay.pump(&*client, stream).await
                        };
                        // `up` borrowed again (it is still there), not `stream` kept across the
                        // wait above: 8 bytes of every stream's future.
                        let end = match up.as_ref() {
                            Some(stream)
                                if matches!(end, BodyEnd::ClientGone | BodyEnd::SlowClient)
                                    && !relay.headless()
                                    && relay.go_headless(&*client, &end) =>
                            {
                                Box::pin(relay.pump_headless(stream)).await
                            }
                            _ => end,
                        };
                        guard.set_upstream(None);
                        // Closed now, before a reconnection opens another.
                        drop(up.take());
                        end
                    }
                    None => BodyEnd::Unreachable,
                };
                // The worker shut every socket at the end of its grace period: the upstream's
                // end is the drain's doing, and nothing may be reconnected while it stops.
                if guard.closing() {
                    break SseEnd::ClientGone;
                }
                // Boxed: dropping and reconnecting is rare and its state is large; a streaming
                // relay (the state tens of thousands of idle streams sit in) does not carry its
                // size.
                let client_now = (!relay.headless()).then_some(&mut *client);
                match Box::pin(relay.after_body(client_now, body_end)).await {
                    Ok(stream) => up = Some(stream),
                    Err(end) => break end,
                }
            },
            Err(end) => end,
        };
        guard.set_upstream(None);
        let m = &relay.ctx.metrics;
        m.sse_streams_active
            .set(m.sse_streams_active.get().saturating_sub(1));
        relay.log_end();
        end
    }
}

impl Relay<'_> {
    /// The stream's access log line, when the log is on.
    fn log_end(&self) {
        let status = &self.entry.status;
        let url = status.upstream();
        status.log_end(self.ctx, self.route.name.as_deref(), url.as_deref());
    }
}

/// A reconnection served from the ring: the ring's events after the client's id first, then
/// (`ReplayThenEnd`) the end of the response. Err: the stream ended there.
async fn replay_first<C: ClientStream>(
    relay: &mut Relay<'_>,
    client: &mut C,
) -> Result<(), SseEnd> {
    let from =
        (relay.resumes.as_mut().and_then(|r| r.replay.take())).unwrap_or(StartFrom::Upstream);
    match from {
        StartFrom::Upstream => Ok(()),
        StartFrom::Replay { after } | StartFrom::ReplayThenEnd { after } => {
            // Boxed: it runs once, before the stream goes live; the live relay does not carry it.
            Box::pin(relay.catch_up(client, after)).await?;
            if matches!(from, StartFrom::ReplayThenEnd { .. }) {
                return Err(relay.finish_boxed(Some(client), SseEnd::Completed).await);
            }
            Ok(())
        }
    }
}

impl Relay<'_> {
    /// The client's request, parsed again from the bytes the stream keeps (reconnects only).
    pub(super) fn kept_request(&self) -> RequestHead {
        let bytes = Bytes::copy_from_slice(&self.request);
        // Limits no tighter than the head itself: these bytes parsed once under the limits of
        // the time (a reload may have lowered them since), and parsing the same bytes again
        // gives the same head.
        let limits = HeadLimits {
            max_head_bytes: bytes.len(),
            max_headers: memchr::memchr_iter(b'\n', &bytes).count(),
            max_target_bytes: bytes.len(),
        };
        RequestHead::parse(bytes, &limits).expect("a request head that parsed once parses again")
    }

    /// When the next heartbeat is due, if the route sends them.
    pub(super) fn heartbeat_at(&self) -> Option<Instant> {
        self.heartbeat_due().map(Stamp::instant)
    }

    /// `heartbeat_at` as a stamp (the pump's quiet spell reckons in stamps).
    #[inline]
    pub(super) fn heartbeat_due(&self) -> Option<Stamp> {
        self.route
            .settings
            .sse
            .heartbeat
            .map(|d| self.last_sent.add(d))
    }

    /// After one upstream body: ends the client's stream, or reconnects and returns the fresh
    /// upstream whose body continues it.
    async fn after_body<C: ClientStream>(
        &mut self,
        mut client: Option<&mut C>,
        body_end: BodyEnd,
    ) -> Result<UpstreamStream, SseEnd> {
        let kind = match body_end {
            BodyEnd::ClientGone | BodyEnd::HoldOver => return Err(SseEnd::ClientGone),
            BodyEnd::SlowClient => {
                WorkerMetrics::inc(&self.ctx.metrics.slow_clients);
                return Err(SseEnd::SlowClient);
            }
            BodyEnd::TooLarge => {
                return Err(self
                    .finish(client.as_deref_mut(), SseEnd::EventTooLarge)
                    .await)
            }
            BodyEnd::PartialBudget => {
                WorkerMetrics::inc(&self.ctx.metrics.sse_partial_cuts);
                return Err(self
                    .finish(client.as_deref_mut(), SseEnd::PartialBudget)
                    .await);
            }
            BodyEnd::Clean if self.route.settings.resume.pass_clean_end => {
                return Err(self.finish(client.as_deref_mut(), SseEnd::Completed).await);
            }
            BodyEnd::Clean => DropKind::Eof,
            BodyEnd::Dropped(kind) => kind,
            BodyEnd::Unreachable => DropKind::Error,
        };
        let target = self.ring.lineage.scope.target();
        let seed = self.resumes.as_ref().and_then(|r| r.cursor_seed.as_ref());
        let last_id: Bytes = match (self.framer.last_event_id(), seed) {
            (id, _) if !id.is_empty() => Bytes::copy_from_slice(id),
            (_, Some(seed)) => seed.clone(),
            _ => Bytes::new(),
        };
        let cancels_on_leave = self.extras.as_ref().is_some_and(|x| x.cancel_on_leave);
        let policy = resume::policy(
            &self.route.settings.resume,
            self.kept_request().method,
            &last_id,
            cancels_on_leave,
        );
        // A clean end of a stream that is never resumed (a POST's answer, an MCP tool call's,
        // a stream without ids) is simply its end: neither a drop nor news.
        if let (BodyEnd::Clean, ResumePolicy::End(why)) = (&body_end, &policy) {
            crate::log_debug!("sse {target}: upstream ended the stream (never resumed: {why})");
            return Err(self.finish(client.as_deref_mut(), SseEnd::Completed).await);
        }
        if body_end != BodyEnd::Unreachable {
            self.ctx.metrics.record_drop(kind);
        }
        let dropped_at = Instant::now();
        // The dead response's unfinished block is discarded; the next body starts afresh
        // (its leading BOM stripped), the cursor is kept. Whatever the next body repeats is
        // in this lineage's ring, which is what the client was sent.
        self.framer.restart_body();
        self.account_partial();
        self.ubuf = None;
        self.dedupe = true;
        let what = match body_end {
            BodyEnd::Clean => "ended",
            BodyEnd::Unreachable => "unreachable (the client got its replay)",
            _ => "dropped",
        };
        if let ResumePolicy::End(why) = policy {
            crate::log_info!(
                "sse {target}: upstream {what} ({}); not resuming: {why}",
                kind.name()
            );
            return Err(self.finish(client.as_deref_mut(), SseEnd::Completed).await);
        }
        self.entry.status.state.set(RelayState::Reconnecting);
        crate::log_info!(
            "sse {target}: upstream {what} ({}) after id {:?}; reconnecting",
            kind.name(),
            String::from_utf8_lossy(&last_id)
        );
        let retry_hint = self
            .retry_hint_ms
            .map(|ms| Duration::from_millis(u64::from(ms)));
        if let Some(hint) = retry_hint {
            self.backoff().set_base(hint);
        }
        // The first reconnect after progress goes at once (the gap is what the client
        // notices), or after the upstream's retry: when it gave one (an upstream that closes
        // on purpose after retry:, as MCP servers may, expects it to be honoured); a reconnect
        // that brought no new event counts as a failure and backs off.
        let first_wait = if self.progressed || self.resumes().stalled_since.is_none() {
            self.backoff().reset();
            self.resumes().stalled_since = Some(dropped_at);
            retry_hint.map_or(Duration::ZERO, |hint| {
                hint.min(self.route.settings.resume.max_delay)
            })
        } else {
            self.backoff().next_delay()
        };
        self.progressed = false;
        // The client may leave while the upstream is away: a stream others follow (or one to be
        // held) goes on reconnecting without it.
        let reconnected = loop {
            match self
                .reconnect(client.as_deref_mut(), &last_id, dropped_at, first_wait)
                .await
            {
                Reconnect::ClientGone => match client.take() {
                    Some(c) if self.go_headless(c, &BodyEnd::ClientGone) => continue,
                    _ => return Err(SseEnd::ClientGone),
                },
                other => break other,
            }
        };
        match reconnected {
            Reconnect::Spliced {
                stream,
                buf,
                decoder,
                replica,
                attempts,
            } => {
                WorkerMetrics::inc(&self.ctx.metrics.resumes);
                let status = &self.entry.status;
                status.resumes.set(status.resumes.get().saturating_add(1));
                status.state.set(RelayState::Streaming);
                let url = self.ctx.upstreams.borrow().spec(replica).url.clone();
                crate::log_info!(
                    "sse {target}: resumed after id {:?} on {url} ({attempts} attempt{}, {} ms since the drop)",
                    String::from_utf8_lossy(&last_id),
                    if attempts == 1 { "" } else { "s" },
                    dropped_at.elapsed().as_millis()
                );
                status.set_upstream(url);
                self.decoder = decoder;
                self.skipping_repeats = false;
                self.last_upstream = Stamp::now();
                let resumes = self.resumes();
                resumes.gap_from = Some(dropped_at);
                resumes.cursor_seed = Some(last_id);
                self.replica = replica as u32;
                self.keep_ubuf(buf);
                Ok(stream)
            }
            Reconnect::Final(status) => {
                crate::log_info!(
                    "sse {target}: reconnect answered {status}; ending the client's stream"
                );
                Err(self.finish(client.as_deref_mut(), SseEnd::Completed).await)
            }
            Reconnect::GaveUp(attempts) => {
                WorkerMetrics::inc(&self.ctx.metrics.give_ups);
                let stalled = self.resumes().stalled_since.unwrap_or(dropped_at).elapsed();
                crate::log_warn!(
                    "sse {target}: giving up after {} ms without a new event ({attempts} attempts since the last drop); ending the client's stream (it can resume from the ring)",
                    stalled.as_millis()
                );
                Err(self.finish(client, SseEnd::GaveUp).await)
            }
            Reconnect::ClientGone => Err(SseEnd::ClientGone),
        }
    }

    /// `finish`, boxed: it runs once, at the end, so the live relay does not carry its size.
    async fn finish_boxed<C: ClientStream>(
        &mut self,
        client: Option<&mut C>,
        end: SseEnd,
    ) -> SseEnd {
        Box::pin(self.finish(client, end)).await
    }

    /// Ends the client's response cleanly (after the last whole block), and the stream's
    /// followers' after theirs. `client` None: the stream has no client of its own any more.
    pub(super) async fn finish<C: ClientStream>(
        &mut self,
        client: Option<&mut C>,
        end: SseEnd,
    ) -> SseEnd {
        // An unfinished block is discarded, never forwarded; a block completed by a CR at the
        // very end of the body (rule 2) is still a whole block.
        self.framer.finish_framed(&mut self.blocks);
        self.account_partial();
        self.flush_blocks();
        if end == SseEnd::Completed {
            self.ring.lineage.set_upstream_finished();
        }
        if let Some(fanout) = self.ring.lineage.fanout() {
            fanout.finish(if end == SseEnd::Completed {
                FanEnd::Finished
            } else {
                FanEnd::Stopped
            });
        }
        let Some(client) = client else {
            return end;
        };
        match self
            .out
            .end_response(client, self.ctx.config.timeouts.send)
            .await
        {
            Ok(()) => end,
            Err(()) => SseEnd::ClientGone,
        }
    }
}

impl Relay<'_> {
    /// The upstream bytes waiting to be decoded (empty: none).
    pub(super) fn take_ubuf(&mut self) -> BytesMut {
        self.ubuf.take().map_or_else(BytesMut::new, |b| *b)
    }

    /// Keeps what is left of a read for the next one (nothing when it is empty).
    pub(super) fn keep_ubuf(&mut self, buf: BytesMut) {
        self.ubuf = (!buf.is_empty()).then(|| Box::new(buf));
    }

    /// The stream's resume state, made on first use.
    pub(super) fn resumes(&mut self) -> &mut Resumes {
        self.resumes.get_or_insert_with(Box::default)
    }

    /// The stream's reconnect backoff, made on first use.
    pub(super) fn backoff(&mut self) -> &mut Backoff {
        let resume = &self.route.settings.resume;
        let index = self.ctx.index;
        self.resumes
            .get_or_insert_with(Box::default)
            .backoff
            .get_or_insert_with(|| {
                Backoff::new(resume.initial, resume.max_delay, jitter_seed(index))
            })
    }

    /// Brings the worker's partial budget up to date with what the framer's open event holds.
    /// False when this stream grew and took the worker past its share: the stream must end.
    pub(super) fn account_partial(&mut self) -> bool {
        // Within u32: --sse-max-event-bytes is at most MAX_EVENT_BYTES_LIMIT (1 GiB), and the
        // open event's buffer is at most twice that.
        let now = u32::try_from(self.framer.held_bytes()).unwrap_or(u32::MAX);
        let was = std::mem::replace(&mut self.partial_held, now);
        self.ctx.partial.update(was as usize, now as usize)
    }
}

impl Relay<'_> {
    /// Whether the stream reads on without a client of its own (`super::fanout`).
    pub(super) fn headless(&self) -> bool {
        self.ring.lineage.fanout_is(|f| f.headless())
    }

    /// The client left (or was cut, `why`): true when the upstream is read on without it, for
    /// the stream's followers or for a comeback (--hold-upstream). The client's connection is
    /// shut at once (it must not wait for the stream's end to see its own).
    pub(super) fn go_headless<C: ClientStream>(&mut self, client: &C, why: &BodyEnd) -> bool {
        // A request that closing the response cancels (MCP 2026-07-28) is never read on.
        if self.extras.as_ref().is_some_and(|x| x.cancel_on_leave) {
            return false;
        }
        let target = self.ring.lineage.scope.target();
        let followers = self.ring.lineage.fanout().map_or(0, |f| f.followers());
        let hold = self.route.settings.sse.hold;
        if followers == 0 {
            let Some(_) = hold else {
                return false;
            };
            // Nothing in it can be named by a comeback's Last-Event-ID (no event with an id
            // yet, e.g. an MCP client's quiet notification stream): holding it would only keep
            // its upstream busy (an MCP server allows one such stream per session).
            if !self.ring.lineage.ring.borrow().has_ids() {
                crate::log_debug!("sse {target}: client left; not held: no event with an id yet");
                return false;
            }
            let held = self.ctx.metrics.sse_held_streams.get() as usize;
            if held >= self.ctx.config.hold_max_streams {
                crate::log_info!(
                    "sse {target}: client left; not held: --hold-max-streams ({held}) streams are held on this worker"
                );
                return false;
            }
        }
        if *why == BodyEnd::SlowClient {
            WorkerMetrics::inc(&self.ctx.metrics.slow_clients);
        }
        let peer = client.peer_addr().ok().map(|a| a.ip());
        // SAFETY: shutdown on the client's own descriptor, which stays open (and is closed by
        // its connection task) until the stream ends; the socket takes no more bytes.
        unsafe { libc::shutdown(client.fd(), libc::SHUT_RDWR) };
        let fanout = self.ring.lineage.share(|| Fanout::new(false, None));
        fanout.set_headless(peer);
        self.entry.status.state.set(RelayState::Held);
        self.out = ClientQueue::new(self.out.framing);
        match hold {
            _ if followers > 0 => crate::log_info!(
                "sse {target}: client left; reading the upstream on for {followers} followers"
            ),
            Some(d) => crate::log_info!(
                "sse {target}: client left; holding the upstream for {d:?} (--hold-upstream)"
            ),
            None => {}
        }
        true
    }
}

impl Drop for Relay<'_> {
    /// A stream that ends (or whose client leaves) mid-event gives its share back, and leaves
    /// `/streams`; its followers end after what they can still get, and fresh requests open a
    /// stream of their own.
    fn drop(&mut self) {
        self.ctx.partial.update(self.partial_held as usize, 0);
        self.ctx.active.remove(&self.entry);
        // Another instance following this lineage through the replay store stops (or ends) now.
        self.ctx.streams.ended(&self.ring.lineage);
        if let Some(fanout) = self.ring.lineage.fanout() {
            fanout.finish(FanEnd::Stopped);
            fanout.set_held(false, &self.ctx.metrics);
            if fanout.joinable {
                self.ctx.coalesce.remove_live(&self.ring.lineage);
            }
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
pub(super) async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => monoio::time::sleep_until(at.into()).await,
        None => std::future::pending::<()>().await,
    }
}
