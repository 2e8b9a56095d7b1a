//! One upstream body through the relay: read what the upstream has, frame it, record it in the
//! lineage's ring and queue it for the client, with backpressure and a bounded turn.
//!
//! ```text
//! idle (nothing queued): wait for the first of
//!     upstream readable -> read what is there (<= MAX_SSE_READ) -> frame -> record -> queue
//!     heartbeat due     -> queue ": keep-alive"
//!     upstream idle     -> drop (with --upstream-idle-timeout)
//!     client closed     -> end (watched only after CLIENT_WATCH_DELAY idle)
//! send (queued): one sendmsg of what is queued, at once, in the wake-up that queued it
//! blocked (the client's socket is full): wait for it to take more; meanwhile read the upstream
//!     only while the queue is under QUEUE_HIGH_WATER, so a slow client slows its upstream
//!     instead of growing memory; nothing taken for --send-timeout -> the client is cut
//! ```
//! One wake-up does at most one read of MAX_SSE_READ bytes: no stream can hold the worker for
//! long, so new connections and timers get their turn under flat-out load.

use std::cell::Cell;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use super::assigned_id::AssignedId;
use super::framer::{BlockBytes, EventId, FramedBlock, FramedSink};
use super::read_flush::ReadFlush;
use super::relay::{BodyEnd, Relay};
use super::ring::clamp_u32;
use super::stream_timer::StreamTimer;
use crate::client_stream::ClientStream;
use crate::conn_io::{recv_now, PeekState};
use crate::http::Decoded;
use crate::limits::{BUFFER_RELEASE_DELAY, CLIENT_WATCH_DELAY};
use crate::metrics::{DropKind, WorkerMetrics};
use crate::ready_set::Interest;
use crate::rules::EventOutcome;
use crate::stamp::Stamp;
use crate::upstream::stream::UpstreamStream;

/// Largest single read from an SSE upstream, in bytes (the worker's scratch buffer): one wake-up
/// of one stream handles at most this much, so no stream holds its worker for long.
const MAX_SSE_READ: usize = 32 * 1024;

/// How long a held stream whose hold ran out waits for the replay store to say whether another
/// instance follows it (the store's follow thread answers between two `XREAD BLOCK`s).
const FOLLOWED_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Leftover bytes of a read smaller than this are never worth moving to an allocation of their own.
const MIN_COMPACT: usize = 64;

/// Bytes queued for the client above which the upstream is not read (backpressure). Small, as
/// nginx's proxy buffer is: a stream with one client holds at most this plus one read (and a
/// block that was assembled over several reads, up to --sse-max-event-bytes). Its client paces
/// it; it is never cut for being slow, only when it takes nothing for --send-timeout.
pub(super) const QUEUE_HIGH_WATER: usize = 32 * 1024;

/// Reads what the upstream holds right now, without the runtime: readiness was just reported, so
/// a non-blocking `recv` returns at once. One syscall: the bytes land in the worker's scratch
/// buffer (MAX_SSE_READ, reused by every stream of the worker) and are copied into `buf`, a
/// fresh allocation of exactly their size (so ring events pin only the read they came in), or
/// appended to an unfinished chunk-framing piece waiting there; a read that nearly fills the
/// scratch buffer becomes `buf` as it is (READ_IN_PLACE). Ok(None): the readiness was
/// spurious (EAGAIN). No future owns a buffer here, so nothing is lost to cancellation, and the
/// bytes are framed in the same wake-up that saw them (one loop cycle sooner than a read op).
fn read_now(fd: RawFd, buf: &mut BytesMut) -> io::Result<Option<usize>> {
    thread_local! {
        static SCRATCH: std::cell::RefCell<BytesMut> =
            std::cell::RefCell::new(BytesMut::with_capacity(MAX_SSE_READ));
    }
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        let dst = &mut scratch.spare_capacity_mut()[..MAX_SSE_READ];
        let Some(n) = recv_now(fd, dst)? else {
            return Ok(None);
        };
        // SAFETY: recv wrote the first n bytes of the spare capacity.
        unsafe { scratch.set_len(n) };
        if buf.is_empty() && n >= READ_IN_PLACE {
            // The scratch buffer itself becomes the read's; a new one takes its place.
            *buf = mem::replace(&mut *scratch, BytesMut::with_capacity(MAX_SSE_READ));
        } else {
            if buf.is_empty() {
                *buf = BytesMut::from(&scratch[..]);
            } else {
                buf.extend_from_slice(&scratch[..]);
            }
            scratch.clear();
        }
        Ok(Some(n))
    })
}

/// A read of at least this many bytes (into an empty buffer) is handed out in the worker's
/// scratch buffer itself, which a new one replaces, instead of copied out of it: a batched
/// load's reads are mostly full, and their copy was ~100 instructions per event (callgrind,
/// `--load batched`). Such a read pins at most a third more than a copy of its own size would
/// (the ring counts the buffer's capacity, `read_alloc`).
const READ_IN_PLACE: usize = MAX_SSE_READ / 4 * 3;

/// Slices a worker's list of a read's client slices keeps room for between reads (`OUT_SLICES`):
/// reads of more are rare, and their list is let go.
const OUT_SLICES_KEPT: usize = 256;

thread_local! {
    /// The list `flush_read` gathers a read's client slices in, one per worker thread and
    /// reused from read to read (it is emptied into the client's queue at once): a list of its
    /// own per read was an allocation and a free per read (callgrind, scenario 2's load).
    static OUT_SLICES: Cell<Vec<Bytes>> = const { Cell::new(Vec::new()) };
}

/// Adjacent blocks of one read, as the span of it they cover together (see `flush_read`): they
/// leave for the client as one slice of the read. Blocks of two chunks of an upstream's chunked
/// body are never adjacent (the chunk framing lies between them).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct ClientRun {
    pub(super) start: usize,
    pub(super) end: usize,
}

impl ClientRun {
    /// Takes in the block at `read[start..start + len]` if it starts where the run ends.
    #[inline]
    pub(super) fn extend(&mut self, start: usize, len: usize) -> bool {
        let adjacent = self.end == start;
        if adjacent {
            self.end += len;
        }
        adjacent
    }
}

/// What is left of a read after framing (nothing, or an unfinished piece of chunk framing) is
/// kept in an allocation of its own size: a quiet stream must not hold the rest of a read buffer
/// (the upstream response head's 4 KiB one, say) for as long as it stays quiet.
fn compact(buf: &mut BytesMut) {
    if buf.is_empty() {
        *buf = BytesMut::new();
    } else if buf.capacity() > 2 * buf.len() + MIN_COMPACT {
        *buf = BytesMut::from(&buf[..]);
    }
}

impl<'c> Relay<'c> {
    /// Relays one upstream body until it ends, drops, or the client fails. Everything queued for
    /// the client has been written when it returns an upstream end.
    ///
    /// Both directions are plain syscalls in the wake-up that found them ready (a `recv` from the
    /// upstream, a `sendmsg` to the client); the futures here only wait for readiness, so they
    /// own no buffer (cancel-safe) and the future a stream sits in stays small.
    ///
    /// An https upstream is waited on the same way; its session decrypts what is read.
    ///
    /// Not an `async fn`: one keeps its three arguments twice (24 bytes of every stream's
    /// future; `proxy::conn::tests::a_stream_task_stays_small`).
    #[allow(clippy::manual_async_fn)]
    pub(super) fn pump<'a, C: ClientStream>(
        &'a mut self,
        client: &'a C,
        up: &'a UpstreamStream,
    ) -> impl std::future::Future<Output = BodyEnd> + use<'a, 'c, C> {
        async move {
            // The upstream's readiness, through the worker's set (one poll operation per wake-up of
            // the worker, not per read: crate::ready_set). Registered before the head's bytes are
            // taken: data arriving from now on is an edge. `ctx` is not kept beside `self`: its
            // 8 bytes would be in every stream's future.
            let interest = match self.ctx.ready.register(up.as_raw_fd()) {
                Ok(i) => i,
                Err(e) => return self.unwatchable(e),
            };
            // Body bytes that came with the head are relayed with it.
            let mut up_state = self.ingest_buffered();
            let mut reading = up_state.is_none();
            // One timer for every wait of this body, re-armed rather than created, and held only
            // while something is due.
            let mut timer = StreamTimer::default();
            // Since when the client's socket has taken none of what is queued (send timeout).
            // Also since when the stream has been quiet, while it waits idle (`quiet_since` below:
            // one slot for both, 16 bytes less in every stream's future; reset on the way out).
            let mut blocked_since: Option<Stamp> = None;
            // When the turn under way began (charged to the worker's slice once its send is done).
            let mut turn_started: Option<Stamp> = None;
            // The client's socket in the worker's readiness set, from the first time the stream
            // watches it for a disconnect (after CLIENT_WATCH_DELAY of quiet) to the end of the
            // body, and watched in every quiet spell from then on: a stream whose events come about
            // that far apart (10/s) would start watching after nearly every event, and a monoio
            // `readable()` there cost a poll operation and its cancellation each time. None also
            // when it could not join (then `readable()`, from CLIENT_WATCH_DELAY in each spell).
            let mut client_watch: Option<Interest<'_>> = None;

            loop {
                // One clock read per wake-up where one will do: a turn's start stands for the moment
                // of its read and its send (microseconds apart; what they time is milliseconds and
                // up), and its end, taken to charge the turn, for the start of a quiet spell.
                // ---- send what is queued, as far as the client's socket takes it ----
                if !self.queue_empty(client) {
                    // The turn's start as the send's time, if there was a turn (in the block: a
                    // local of the loop would live across its waits).
                    let now_hint = turn_started;
                    match self.out.send_to(client) {
                        Ok(0) => {
                            blocked_since
                                .get_or_insert_with(|| now_hint.unwrap_or_else(Stamp::now));
                        }
                        Ok(_) => {
                            let now = now_hint.unwrap_or_else(Stamp::now);
                            self.last_sent = now;
                            if let Some(since) =
                                self.resumes.as_mut().and_then(|r| r.gap_from.take())
                            {
                                self.ctx
                                    .metrics
                                    .record_gap(now.instant().saturating_duration_since(since));
                            }
                            blocked_since = (!self.queue_empty(client)).then_some(now);
                        }
                        Err(_) => return BodyEnd::ClientGone,
                    }
                } else {
                    // Nothing queued: not blocked (a client stream's own buffer may have
                    // drained without a send here), and the quiet spell starts below.
                    blocked_since = None;
                }
                // The turn's end: the clock read that charges it is the quiet spell's start
                // when nothing is left to send. Kept in `blocked_since`'s slot, not a local of
                // its own: one would live across the blocked wait below (16 bytes of every
                // stream's future, `tests::the_pump_stays_small`).
                if let Some(started) = turn_started.take() {
                    let ended = self.ctx.turns.charge(started);
                    if self.queue_empty(client) {
                        blocked_since = Some(ended);
                    }
                }

                if !self.queue_empty(client) {
                    // ---- blocked: wait for room in the client's socket; meanwhile read the
                    // upstream only below the high-water mark, so a client that reads slowly slows
                    // its upstream (TCP pushes back on it) ----
                    let since = *blocked_since.get_or_insert_with(Stamp::now);
                    timer.arm(&self.ctx.timers, since.add(self.ctx.config.timeouts.send));
                    // A shared stream's client is not its pace: others follow the stream, so it
                    // may fall --sse-client-buffer behind and is then cut (the stream reads on).
                    let high_water = if self.ring.lineage.has_followers() {
                        let limit = self.route.settings.sse.client_buffer;
                        if self.queued(client) > limit {
                            crate::log_info!(
                            "sse {}: shared stream's client fell more than --sse-client-buffer ({limit} bytes) behind; disconnecting it",
                            self.ring.lineage.scope.target()
                        );
                            return BodyEnd::SlowClient;
                        }
                        limit
                    } else {
                        QUEUE_HIGH_WATER
                    };
                    let room = reading && self.queued(client) < high_water;
                    // The upstream's readiness, seen by the wait and acted on after it (in our
                    // turn): the select's value, so it is no slot of the future's.
                    let upstream_ready = monoio::select! {
                        // Not `biased;` (as the idle wait below is): polled first in every
                        // blocked wait, the client's `writable()` would arm an io_uring poll
                        // that a ready upstream then cancels. Suspected, not proven: two of
                        // three 1b rounds with it first ran at 0.61x and 0.70x nginx
                        // (perf/NOTES.md, "Per-event cost, third cut").
                        // Boxed: monoio's wait is 104 bytes and a stream is blocked seldom and
                        // briefly; a quiet stream's future would carry it inline. One small
                        // allocation per wait for room, beside the poll operation it makes.
                        res = Box::pin(client.tcp().writable(false)) => {
                            if res.is_err() {
                                return BodyEnd::ClientGone;
                            }
                            false
                        }
                        () = interest.wait(), if room => true,
                        _ = timer.fired() => {
                            crate::log_info!(
                                "sse {}: client took no bytes for the send timeout; disconnecting",
                                self.ring.lineage.scope.target()
                            );
                            return BodyEnd::SlowClient;
                        }
                    };
                    if upstream_ready {
                        // Until it delivers (a new client's first event, a resumed stream's first
                        // new one) a stream waits only for room in the slice, not behind the busy
                        // streams (crate::turns). Awaited here rather than in a helper async fn,
                        // which kept its four references beside the wait.
                        self.ctx.turns.my_turn(!self.progressed).await;
                        up_state = self.read_turn(&interest, up, &mut turn_started);
                        reading = up_state.is_none();
                    }
                    continue;
                }
                if let Some(end) = up_state.take() {
                    return end;
                }

                // ---- idle: wait for the upstream, a heartbeat, or the client leaving ----
                // A quiet stream holds no buffer: tens of thousands of them may sit here. They are
                // let go once it has been quiet for BUFFER_RELEASE_DELAY, not at once: a busy stream
                // between two reads would free and grow them again every time (its block list
                // alone: ten reallocations, copying ~90 KB, per burst of small events).
                // Since when it has been quiet: `blocked_since`'s slot (see there).
                blocked_since.get_or_insert_with(Stamp::now);
                let mut buffers_held = true;
                // A stream whose request ends with its response (MCP 2026-07-28) is watched at
                // once: its upstream must close as soon as the client leaves. So is one whose
                // client already joined the readiness set in an earlier quiet spell: the set
                // reports its edges at no cost per wait, and a stream whose events come about
                // CLIENT_WATCH_DELAY apart would otherwise wake by its timer to start watching again
                // after nearly every event.
                let mut watching = client_watch.is_some()
                    || self.extras.as_ref().is_some_and(|x| x.cancel_on_leave);
                let mut client_busy = false;
                while self.out.is_empty() && up_state.is_none() {
                    // In a block of its own, so the deadline is not kept across the wait (16 bytes
                    // of every quiet stream's future): only whether there is one.
                    let timed = {
                        let quiet_since = blocked_since.unwrap_or_else(Stamp::now);
                        let wake_at =
                            self.idle_wake(quiet_since, !watching && !client_busy, buffers_held);
                        match wake_at {
                            Some(at) => timer.arm(&self.ctx.timers, at),
                            None => timer.disarm(),
                        }
                        wake_at.is_some()
                    };
                    if watching && client_watch.is_none() {
                        client_watch = self.ctx.ready.register(client.tcp().as_raw_fd()).ok();
                    }
                    let upstream_ready = monoio::select! {
                        // In this order, no random start per wake-up: every branch is a
                        // readiness wait that owns nothing and makes no operation (one that
                        // loses keeps its readiness for the next wait); data before a timer.
                        biased;
                        () = interest.wait(), if reading => true,
                        _ = timer.fired(), if timed => {
                            let now = Stamp::now();
                            let quiet_since = blocked_since.unwrap_or(now);
                            let idle_timeout = self.route.settings.resume.idle_timeout;
                            if idle_timeout.is_some_and(|d| now >= self.last_upstream.add(d)) {
                                crate::log_debug!("sse upstream idle past --upstream-idle-timeout");
                                return BodyEnd::Dropped(DropKind::Idle);
                            }
                        let quiet_for = now.saturating_since(quiet_since);
                        if buffers_held && quiet_for >= BUFFER_RELEASE_DELAY {
                                self.release_buffers();
                                buffers_held = false;
                            }
                            if self.heartbeat_due().is_some_and(|at| now >= at) {
                                self.out.push_heartbeat();
                                WorkerMetrics::inc(&self.ctx.metrics.heartbeats);
                        } else if !client_busy && quiet_for >= CLIENT_WATCH_DELAY {
                                watching = true;
                            }
                            false
                        }
                        ready = client_readable(client_watch.as_ref(), client), if watching => {
                            match (ready, client.peek_state()) {
                                (Err(_), _) | (_, PeekState::Closed) => return BodyEnd::ClientGone,
                                // A pipelined request: it waits in the socket for after the stream.
                                (_, PeekState::HasData) => {
                                    watching = false;
                                    client_busy = true;
                                }
                                (_, PeekState::Quiet) => {}
                            }
                            false
                        }
                    };
                    if upstream_ready {
                        self.ctx.turns.my_turn(!self.progressed).await;
                        up_state = self.read_turn(&interest, up, &mut turn_started);
                        reading = up_state.is_none();
                    }
                }
                // No longer quiet: the slot is the send's again.
                blocked_since = None;
            }
        }
    }
}

impl Relay<'_> {
    /// Reads the upstream on without a client (`super::fanout`): for the stream's followers, or
    /// held for a comeback until `--hold-upstream` passes with nobody following. What is framed
    /// goes to the ring only.
    pub(super) async fn pump_headless(&mut self, up: &UpstreamStream) -> BodyEnd {
        let Some(fanout) = self.ring.lineage.fanout() else {
            return BodyEnd::HoldOver;
        };
        let ctx = self.ctx;
        let interest = match ctx.ready.register(up.as_raw_fd()) {
            Ok(i) => i,
            Err(e) => return self.unwatchable(e),
        };
        let mut up_state = self.ingest_buffered();
        let mut timer = StreamTimer::default();
        let mut upstream_ready = false;
        let mut turn_started: Option<Stamp> = None;
        let hold = self.route.settings.sse.hold;
        let target = self.ring.lineage.scope.target();
        loop {
            // Nobody reads the owner's queue any more.
            self.out.clear();
            if let Some(started) = turn_started.take() {
                self.ctx.turns.charge(started);
            }
            if let Some(end) = up_state.take() {
                return end;
            }
            // Stopped from outside: the replay budget freed the held ring.
            if fanout.end().is_some() {
                return BodyEnd::HoldOver;
            }
            let alone = fanout.followers() == 0;
            fanout.set_held(alone, &self.ctx.metrics);
            let hold_until = match (alone, hold) {
                (false, _) => None,
                (true, Some(d)) => fanout.held_since().map(|since| since + d),
                (true, None) => {
                    crate::log_info!(
                        "sse {target}: the stream's last follower left; closing its upstream"
                    );
                    return BodyEnd::HoldOver;
                }
            };
            if hold_until.is_some_and(|at| Instant::now() >= at) {
                // Boxed: asked once per hold period, it must not grow every relay's future.
                if Box::pin(self.followed_elsewhere()).await {
                    crate::log_debug!(
                        "sse {target}: followed from another instance; held for another --hold-upstream"
                    );
                    fanout.renew_hold();
                    continue;
                }
                WorkerMetrics::inc(&self.ctx.metrics.sse_hold_expired);
                crate::log_info!(
                    "sse {target}: nobody came back within --hold-upstream; closing the held upstream"
                );
                return BodyEnd::HoldOver;
            }
            let idle_at = self
                .route
                .settings
                .resume
                .idle_timeout
                .map(|d| self.last_upstream.instant() + d);
            match [hold_until, idle_at].into_iter().flatten().min() {
                Some(at) => timer.arm(&self.ctx.timers, at.into()),
                None => timer.disarm(),
            }
            let seen = fanout.changes();
            monoio::select! {
                biased;
                () = interest.wait() => {
                    upstream_ready = true;
                }
                _ = timer.fired() => {
                    if idle_at.is_some_and(|at| Instant::now() >= at) {
                        crate::log_debug!("sse upstream idle past --upstream-idle-timeout");
                        return BodyEnd::Dropped(DropKind::Idle);
                    }
                }
                _ = fanout.followers_changed(seen) => {}
            }
            if mem::take(&mut upstream_ready) {
                self.ctx.turns.my_turn(!self.progressed).await;
                up_state = self.read_turn(&interest, up, &mut turn_started);
            }
        }
    }

    /// Whether a client follows this stream from another tether instance now, through the replay
    /// store (`crate::sse::store_follow` there): its hold then goes on. False when the store is
    /// off or does not answer in time.
    async fn followed_elsewhere(&self) -> bool {
        let (Some(store), Some(tag)) = (&self.ctx.store, self.ring.lineage.store_tag()) else {
            return false;
        };
        match store.follows.is_followed(tag) {
            Ok(reply) => matches!(
                reply.recv_within(FOLLOWED_CHECK_TIMEOUT).await,
                Ok(Ok(true))
            ),
            Err(_) => false,
        }
    }

    /// Lets go of the buffers a busy stream reuses from read to read (its queue's, the block
    /// list, the pieces), for a stream gone quiet.
    fn release_buffers(&mut self) {
        self.out.shrink();
        if self.blocks.capacity() > 0 {
            self.blocks = Vec::new();
        }
    }

    /// When an idle stream must wake by itself: the next heartbeat, the upstream idle timeout,
    /// (`watch`) the moment the client starts being watched for a disconnect, or (`release`)
    /// the moment a quiet stream's buffers are let go.
    fn idle_wake(&self, quiet_since: Stamp, watch: bool, release: bool) -> Option<Stamp> {
        let heartbeat_at = self.heartbeat_due();
        let idle_at = self
            .route
            .settings
            .resume
            .idle_timeout
            .map(|d| self.last_upstream.add(d));
        let watch_at = watch.then(|| quiet_since.add(CLIENT_WATCH_DELAY));
        let release_at = release.then(|| quiet_since.add(BUFFER_RELEASE_DELAY));
        [heartbeat_at, idle_at, watch_at, release_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Bytes queued for the client: the queue, and what its transport still holds (a TLS
    /// session's ciphertext; nothing for plain TCP, where this is the queue's length).
    fn queued<C: ClientStream>(&self, client: &C) -> usize {
        self.out.len() + client.unsent()
    }

    /// Nothing queued for the client (see `queued`).
    fn queue_empty<C: ClientStream>(&self, client: &C) -> bool {
        self.out.is_empty() && client.unsent() == 0
    }

    /// Frames the body bytes that came with the upstream's response head.
    fn ingest_buffered(&mut self) -> Option<BodyEnd> {
        let mut buf = self.take_ubuf();
        let end = self.ingest(&mut buf);
        compact(&mut buf);
        self.keep_ubuf(buf);
        end
    }

    /// The upstream could not join the worker's readiness set (`epoll_ctl` failed: out of
    /// memory, or past fs.epoll.max_user_watches): it is dropped like a failed read.
    fn unwatchable(&self, e: io::Error) -> BodyEnd {
        crate::log_warn!(
            "sse {}: cannot wait on the upstream socket: {e}",
            self.ring.lineage.scope.target()
        );
        BodyEnd::Dropped(DropKind::Error)
    }

    /// The turn, once `Turns::my_turn` gave it: its start goes to `turn_started` (charged to
    /// the worker's slice after the send), then the read. A plain fn, so the three loops that
    /// take turns share it without an async helper's references kept beside the wait.
    fn read_turn(
        &mut self,
        interest: &Interest<'_>,
        up: &UpstreamStream,
        turn_started: &mut Option<Stamp>,
    ) -> Option<BodyEnd> {
        let started = Stamp::now();
        *turn_started = Some(started);
        self.after_ready(interest, up, started)
    }

    /// The upstream is readable and it is this stream's turn (crate::turns): reads what it holds
    /// (through its TLS session, for an https upstream) and frames it. Returns how the body
    /// ended, if it did. `now`: when the turn began (the read's time, for the upstream idle
    /// timeout).
    fn after_ready(
        &mut self,
        interest: &Interest<'_>,
        up: &UpstreamStream,
        now: Stamp,
    ) -> Option<BodyEnd> {
        let fd = up.as_raw_fd();
        let mut buf = self.take_ubuf();
        let res = match up.session() {
            None => read_now(fd, &mut buf),
            Some(mut tls) => tls.read_now(fd, &mut buf),
        };
        // Edge-triggered: a read that may have left bytes behind gets no new edge for them, so
        // the next wait passes at once. A plain read shorter than its buffer took everything
        // (what arrives later is a new edge); a TLS session may hold decrypted records back, so
        // it is read until the socket says EAGAIN.
        if let Ok(Some(n)) = res {
            if n > 0 && (n == MAX_SSE_READ || up.session().is_some()) {
                interest.set_ready();
            }
        }
        // The server's close_notify came with the last bytes: the socket may stay open, so its
        // end is taken now rather than waited for.
        let res = match res {
            Ok(Some(n)) if n > 0 && up.session().is_some_and(|t| t.peer_closed()) => {
                let end = self.ingest_read(&mut buf, now);
                if end.is_some() {
                    compact(&mut buf);
                    self.keep_ubuf(buf);
                    return end;
                }
                Ok(Some(0))
            }
            other => other,
        };
        let end = match res {
            Ok(None) => None,
            Ok(Some(0)) => match self.decoder.eof() {
                Ok(()) => Some(BodyEnd::Clean),
                Err(_) => Some(BodyEnd::Dropped(DropKind::Eof)),
            },
            Ok(Some(_)) => self.ingest_read(&mut buf, now),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                Some(BodyEnd::Dropped(DropKind::Reset))
            }
            Err(e) => {
                crate::log_debug!("sse upstream read failed: {e}");
                Some(BodyEnd::Dropped(DropKind::Error))
            }
        };
        compact(&mut buf);
        self.keep_ubuf(buf);
        end
    }

    /// Frames what a read brought.
    fn ingest_read(&mut self, buf: &mut BytesMut, now: Stamp) -> Option<BodyEnd> {
        self.last_upstream = now;
        self.ingest(buf)
    }

    /// Decodes what `buf` holds, frames it, and queues the resulting blocks.
    pub(super) fn ingest(&mut self, buf: &mut BytesMut) -> Option<BodyEnd> {
        self.read_alloc = u32::try_from(buf.capacity()).unwrap_or(u32::MAX);
        // The read as one buffer: its blocks are spans of it, and the ring's runs and what the
        // client is sent are slices of it (one reference count per run, none per event). The
        // whole buffer frozen, not `split()` off it: a split makes `BytesMut`'s shared header
        // (40 bytes), which every run of the read keeps; a frozen buffer's first slice makes
        // `Bytes`' (24), 16 bytes less per quiet stream's ring.
        let read = mem::take(buf).freeze();
        let end = if self.blocks.is_empty() && self.flush_is_plain() {
            // The framer hands each block to the flush as it frames it (`super::read_flush`).
            let batch = self.ctx.streams.batch();
            let mut flush = ReadFlush::new(&read, batch, OUT_SLICES.with(Cell::take));
            let end = self.frame_read(&read, buf, &mut flush);
            self.end_flush(flush);
            end
        } else {
            let mut blocks = mem::take(&mut self.blocks);
            let end = self.frame_read(&read, buf, &mut blocks);
            self.blocks = blocks;
            self.flush_read(Some(&read));
            end
        };
        if end.is_some() {
            return end;
        }
        if !self.account_partial() {
            crate::log_warn!(
                "sse {}: unfinished events on this worker past its share of --sse-partial-memory ({} bytes); ending the stream after its last whole event",
                self.ring.lineage.scope.target(),
                self.ctx.partial.limit()
            );
            return Some(BodyEnd::PartialBudget);
        }
        if self.decoder.is_done() {
            return Some(BodyEnd::Clean);
        }
        None
    }

    /// Whether this stream's blocks leave exactly as framed: no rules with an event stage, no
    /// deduplication (after a resume or a replay), no `--assign-ids`. Then a read's blocks go
    /// from the framer straight into its flush (`super::read_flush`); otherwise they are listed
    /// for `flush_read`. Asked once per read: none of these changes while a read is framed.
    #[inline]
    fn flush_is_plain(&self) -> bool {
        !self.dedupe
            && !self.route.settings.sse.assign_ids
            && self.extras.as_ref().is_none_or(|x| x.plan.is_none())
    }

    /// Decodes the body's pieces in `read` and frames them into `sink`; bytes after the body's
    /// end stay in `buf`. Returns how the body ended when framing or decoding failed (the blocks
    /// before the failure are in `sink`, to be flushed).
    #[inline(never)]
    fn frame_read(
        &mut self,
        read: &Bytes,
        buf: &mut BytesMut,
        sink: &mut impl FramedSink,
    ) -> Option<BodyEnd> {
        let mut at = 0;
        while at < read.len() && !self.decoder.is_done() {
            match self.decoder.decode(&read[at..]) {
                Ok(Decoded::Data { start, end }) => {
                    let piece = at + start..at + end;
                    at += end;
                    if self.framer.feed_read_into(read, piece, sink).is_err() {
                        crate::log_warn!(
                            "sse {}: upstream event larger than --sse-max-event-bytes {}; ending the stream",
                            self.ring.lineage.scope.target(),
                            self.route.settings.sse.max_event_bytes
                        );
                        return Some(BodyEnd::TooLarge);
                    }
                }
                Ok(Decoded::NeedMore) => at = read.len(),
                Ok(Decoded::Done { consumed }) => at += consumed,
                Err(e) => {
                    crate::log_debug!("sse upstream body invalid: {e}");
                    return Some(BodyEnd::Dropped(DropKind::Error));
                }
            }
        }
        if at < read.len() {
            // Bytes after the body's end stay in the buffer, as they came.
            buf.extend_from_slice(&read[at..]);
        }
        None
    }

    /// Filters the framed blocks (repeats of what the ring holds, after a resume or replay),
    /// assigns ids if asked, records them in the ring, and queues them for the client as one
    /// chunk. Blocks of an earlier read only (the end of the body).
    pub(super) fn flush_blocks(&mut self) {
        self.flush_read(None);
    }

    /// `flush_blocks` after framing `read`: its blocks are spans of it, recorded as such (one
    /// run in the ring for all of them) and sent as slices of it (one per run of adjacent
    /// blocks).
    fn flush_read(&mut self, read: Option<&Bytes>) {
        if self.blocks.is_empty() {
            return;
        }
        let ctx = self.ctx;
        // Blocks of an earlier read (`flush_blocks`) are all their own bytes.
        let empty = Bytes::new();
        let read = read.unwrap_or(&empty);
        let mut blocks = mem::take(&mut self.blocks);
        // The slices for the client, in the worker's list (not one allocation per read).
        let mut flush = ReadFlush::new(read, ctx.streams.batch(), OUT_SLICES.with(Cell::take));
        flush.framed = true;
        let dedupe = self.dedupe;
        let plan = self.extras.as_ref().and_then(|x| x.plan.as_ref());
        let assign_ids = self.route.settings.sse.assign_ids;
        for block in blocks.drain(..) {
            let FramedBlock {
                bytes: block_bytes,
                id: block_id,
                number,
                retry,
                fires,
            } = block;
            if let Some(retry) = retry {
                self.retry_hint_ms = Some(u32::try_from(retry).unwrap_or(u32::MAX));
            }
            let has_upstream_id = block_id != EventId::None;
            if dedupe {
                // Against the ring and this flush's events not yet in it.
                let raw = bytes_of(&block_bytes, read);
                match block_id.value(raw) {
                    Some(id)
                        if !id.is_empty()
                            && (self.ring.lineage.ring.borrow().contains_id(id)
                                || flush.batch.contains_id(id)) =>
                    {
                        self.skipping_repeats = true;
                        WorkerMetrics::inc(&ctx.metrics.duplicates_dropped);
                        continue;
                    }
                    Some(_) => self.skipping_repeats = false,
                    None if self.skipping_repeats => {
                        WorkerMetrics::inc(&ctx.metrics.duplicates_dropped);
                        continue;
                    }
                    None => {}
                }
            }
            // The rules' event stage: an event they drop is neither sent nor recorded (the
            // upstream's cursor still moves past it); one they rewrite leaves as its new bytes,
            // its id, event and retry lines kept, and the ring records what was sent.
            let (event_bytes, event_id) = match plan {
                Some(plan) => {
                    let raw = match &block_bytes {
                        BlockBytes::InRead { start, len } => read.slice(*start..*start + *len),
                        BlockBytes::Own(raw) => raw.clone(),
                    };
                    match plan.run_event(&raw) {
                        EventOutcome::Keep => (block_bytes, block_id),
                        EventOutcome::Drop => {
                            if fires || has_upstream_id {
                                self.progressed = true;
                            }
                            continue;
                        }
                        EventOutcome::Replace(new) => {
                            // Its own allocation: the id, not at a known place in it, is copied.
                            let id = match block_id.value(&raw) {
                                Some(id) => EventId::Own(id.into()),
                                None => EventId::None,
                            };
                            (BlockBytes::Own(new), id)
                        }
                    }
                }
                None => (block_bytes, block_id),
            };
            let assigned = assign_ids && fires && !has_upstream_id;
            // The event's bytes (a span of the read, or its own), and where its id is in them.
            let (bytes, id) = if assigned {
                let name = AssignedId {
                    worker: ctx.index as u32,
                    ring: self.ring.lineage.id,
                    // The events before it in this flush are recorded with it, after it.
                    seq: self.ring.lineage.ring.borrow().head_seq() + 1 + flush.batch.len() as u64,
                }
                .to_bytes();
                let event_raw = bytes_of(&event_bytes, read);
                let mut raw = BytesMut::with_capacity(event_raw.len() + name.len() + 5);
                raw.extend_from_slice(b"id: ");
                raw.extend_from_slice(&name);
                raw.extend_from_slice(b"\n");
                raw.extend_from_slice(event_raw);
                let id = EventId::In {
                    start: 4,
                    len: clamp_u32(name.len()),
                };
                (BlockBytes::Own(raw.freeze()), id)
            } else {
                (event_bytes, event_id)
            };
            // Progress is a new event or cursor move, not a retry: line or a comment (an upstream
            // that accepts reconnects but only ever repeats its retry: hint makes no progress).
            let has_id = id != EventId::None;
            if fires || has_id {
                self.progressed = true;
            }
            if fires {
                flush.events += 1;
            }
            let recorded = fires || has_id || retry.is_some();
            flush.add(bytes, id, number, recorded, assigned);
        }
        self.blocks = blocks;
        self.end_flush(flush);
    }

    /// Ends a read's flush: the client's slices go to its queue as one chunk, the recorded
    /// events to the ring in one batch, the counts to the metrics and the stream's row.
    fn end_flush(&mut self, mut flush: ReadFlush<'_>) {
        let ctx = self.ctx;
        if let Some(retry) = flush.retry {
            self.retry_hint_ms = Some(u32::try_from(retry).unwrap_or(u32::MAX));
        }
        if flush.progressed {
            self.progressed = true;
        }
        if !flush.framed {
            // Nothing was framed (a read inside one long event): nothing to send or record;
            // the worker's batch and list go back as they came.
            ctx.streams
                .record_batch(&self.ring, flush.batch, &ctx.metrics);
            OUT_SLICES.with(|kept| kept.set(flush.out));
            return;
        }
        flush.finish_run();
        let ReadFlush {
            read,
            mut batch,
            mut out,
            out_len,
            events,
            ..
        } = flush;
        if !read.is_empty() {
            // What the read's runs pin: its allocation, which the allocator rounds up to its
            // size class (mimalloc: within 1/8).
            let read_alloc = self.read_alloc as usize;
            batch.seal(read, (read_alloc + read_alloc / 8).max(read.len()));
        }
        // Bytes recorded in the ring (what the stream's followers, if any, get).
        let recorded = batch.bytes();
        ctx.streams.record_batch(&self.ring, batch, &ctx.metrics);
        if recorded > 0 {
            if let Some(fanout) = self.ring.lineage.fanout() {
                fanout.recorded_bytes(recorded);
            }
        }
        let m = &ctx.metrics;
        WorkerMetrics::add(&m.sse_events, events);
        WorkerMetrics::add(&m.sse_bytes, out_len as u64);
        self.entry.status.sent(events, out_len as u64);
        self.out.push_blocks(out.drain(..), out_len);
        if out.capacity() <= OUT_SLICES_KEPT {
            OUT_SLICES.with(|kept| kept.set(out));
        }
        self.entry.status.show_last_id(self.framer.last_event_id());
    }
}

/// Resolves when the client's socket has something to say (data, its end, an error): through
/// the worker's readiness set once it joined it (an edge since the last wait), else monoio's
/// `readable()`, boxed: it is only for a socket that could not join the set, and inline its 104
/// bytes would be in every quiet stream's future. Cancel-safe: neither owns a buffer.
async fn client_readable<C: ClientStream>(
    watch: Option<&Interest<'_>>,
    client: &C,
) -> io::Result<()> {
    match watch {
        Some(interest) => {
            interest.wait().await;
            Ok(())
        }
        None => Box::pin(client.tcp().readable(false)).await,
    }
}

/// A block's bytes, given the read it was framed from.
#[inline]
fn bytes_of<'a>(bytes: &'a BlockBytes, read: &'a [u8]) -> &'a [u8] {
    match bytes {
        BlockBytes::InRead { start, len } => &read[*start..*start + *len],
        BlockBytes::Own(raw) => raw,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn future_size3<F, A, B, C, R>(_: &F) -> usize
    where
        F: Fn(A, B, C) -> R,
    {
        std::mem::size_of::<R>()
    }

    fn future_size2<F, A, B, R>(_: &F) -> usize
    where
        F: Fn(A, B) -> R,
    {
        std::mem::size_of::<R>()
    }

    /// The pump is where every stream waits (inside its task, `proxy::conn::serve_stream`), so
    /// its future is memory per idle stream. 368 bytes (release, `-Zprint-type-sizes`) before
    /// the fourth pass of issue 9 (perf/NOTES.md): its arguments held twice (async fn), the
    /// idle wait's deadline kept across it, `take_turn`'s references beside the turn's wait,
    /// and monoio's 104-byte readiness futures inline in both selects (now boxed: the client's
    /// `writable()` while blocked, its `readable()` when it could not join the readiness set);
    /// 184 in a debug build after it; 168 since the fifth (its two times as 8-byte stamps).
    #[test]
    fn the_pump_stays_small() {
        let pump = future_size3(&Relay::pump::<monoio::net::TcpStream>);
        let readable = future_size2(&client_readable::<monoio::net::TcpStream>);
        eprintln!("pump future: {pump} bytes; client_readable: {readable}");
        assert!(pump <= 168, "pump future is {pump} bytes");
        assert!(readable <= 32, "client_readable future is {readable} bytes");
    }

    #[test]
    fn adjacent_blocks_of_one_read_leave_as_one_slice() {
        // Two chunks of one read (chunk framing between them), framed as the relay does.
        let read = b"id: 1\n\nid: 2\n\nid: 3\n\n\r\n7\r\nid: 4\n\n";
        let mut framer = super::super::framer::EventFramer::default();
        let mut blocks = Vec::new();
        framer.feed_read(read, 0..21, &mut blocks).unwrap();
        framer.feed_read(read, 26..33, &mut blocks).unwrap();
        let spans: Vec<(usize, usize)> = blocks
            .iter()
            .map(|b| match b.bytes {
                BlockBytes::InRead { start, len } => (start, len),
                BlockBytes::Own(_) => panic!("every block lies in the read"),
            })
            .collect();
        assert_eq!(spans, [(0, 7), (7, 7), (14, 7), (26, 7)]);
        let mut run = ClientRun { start: 0, end: 7 };
        assert!(run.extend(7, 7));
        assert!(run.extend(14, 7));
        assert_eq!(&read[run.start..run.end], b"id: 1\n\nid: 2\n\nid: 3\n\n");
        // The next chunk's block is not adjacent (its framing lies between), nor is one past a
        // dropped repeat.
        assert!(!run.extend(26, 7));
        let mut run = ClientRun { start: 0, end: 7 };
        assert!(!run.extend(14, 7));
        assert_eq!(framer.last_event_id(), b"4");
    }

    #[test]
    fn leftovers_keep_an_allocation_of_their_own_size() {
        let mut buf = BytesMut::with_capacity(4096);
        buf.extend_from_slice(b"\r");
        compact(&mut buf);
        assert!(buf.capacity() < 4096 && &buf[..] == b"\r");
        let mut empty = BytesMut::with_capacity(4096);
        compact(&mut empty);
        assert_eq!(empty.capacity(), 0);
    }
}
