//! A client that follows a stream another connection reads (`super::fanout`): a cursor into the
//! stream's ring, written the ring's own `Bytes` at the client's pace.
//!
//! ```text
//! loop:
//!   take the ring's events after the cursor (<= FOLLOW_BATCH_BYTES), one chunk, one writev
//!   the client's socket is full: wait for room (or news, to notice the client falling behind)
//!   caught up: wait for news (the owner recorded events, or ended), a heartbeat, or the client
//!     leaving; the owner ended and nothing is left: end the response cleanly
//! cut when the events recorded since it joined and not yet taken pass --sse-client-buffer,
//! or when its next event was evicted from the ring: the others never wait for it
//! ```
//! What it missed before joining (a `Last-Event-ID` in the ring) is fed the same way, and does
//! not count as falling behind: only what was recorded after it joined does.

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;

use super::active::{ActiveEntry, RelayState, StreamFacts};
use super::fanout::{Fanout, FollowerSlot};
use super::outbound::ClientQueue;
use super::relay::SseEnd;
use super::stream_timer::StreamTimer;
use super::table::Lineage;
use crate::access_log::RequestStart;
use crate::client_stream::ClientStream;
use crate::conn_io::PeekState;
use crate::http::OutFraming;
use crate::limits::CLIENT_WATCH_DELAY;
use crate::metrics::WorkerMetrics;
use crate::proxy::request_id::RequestId;
use crate::route::Route;
use crate::worker::WorkerCtx;

/// Ring bytes taken per write: few syscalls for a client that is behind, and no more than this
/// outside the ring for one that reads slowly.
const FOLLOW_BATCH_BYTES: usize = 64 * 1024;

/// Everything a follower starts with.
#[derive(Debug)]
pub struct FollowStart {
    pub framing: OutFraming,
    /// The response head for this client.
    pub head: Bytes,
    pub(crate) lineage: Rc<Lineage>,
    pub(crate) fanout: Rc<Fanout>,
    /// The seq after which the client starts (the live head, or its Last-Event-ID's).
    pub after: u64,
    pub keep_client: bool,
    pub(crate) route: Rc<Route>,
    pub(crate) request_id: RequestId,
    pub(crate) log: Option<RequestStart>,
}

struct Follower<'c> {
    ctx: &'c WorkerCtx,
    route: Rc<Route>,
    lineage: Rc<Lineage>,
    fanout: Rc<Fanout>,
    slot: Rc<FollowerSlot>,
    entry: ActiveEntry,
    out: ClientQueue,
    /// Seq of the last event taken.
    cursor: u64,
    /// The ring's head when the client joined: events up to it were missed before, not fallen
    /// behind on.
    joined_at: u64,
    /// `Fanout::recorded` as of the last event taken that was recorded after joining.
    taken: u64,
    last_sent: Instant,
    /// When the last batch that reached the ring's head was queued (for `--coalesce-flush`).
    last_batch: Option<Instant>,
}

/// Follows the stream until it ends, the client leaves, or it is cut; see the module doc.
pub fn follow<'a, C: ClientStream>(
    ctx: &'a WorkerCtx,
    client: &'a mut C,
    start: FollowStart,
) -> impl std::future::Future<Output = SseEnd> + 'a {
    let FollowStart {
        framing,
        head,
        lineage,
        fanout,
        after,
        keep_client: _,
        route,
        request_id,
        log,
    } = start;
    let facts = StreamFacts {
        upstream: None,
        request_id,
        log,
        head_bytes: head.len() as u64,
        client_tls: C::TLS,
        client_h2: C::H2,
    };
    let entry = ctx.active.register(lineage.clone(), facts);
    entry.status.state.set(RelayState::Following);
    let slot = fanout.join(&ctx.metrics);
    WorkerMetrics::inc(&ctx.metrics.sse_streams_active);
    let joined_at = lineage.ring.borrow().head_seq();
    let mut out = ClientQueue::new(framing);
    out.push_raw(head);
    let taken = fanout.recorded();
    let mut follower = Follower {
        ctx,
        route,
        lineage,
        fanout,
        slot,
        entry,
        out,
        cursor: after,
        joined_at,
        taken,
        last_sent: Instant::now(),
        last_batch: None,
    };
    async move {
        let end = follower.run(client).await;
        let m = &ctx.metrics;
        m.sse_streams_active
            .set(m.sse_streams_active.get().saturating_sub(1));
        follower.log_end();
        end
    }
}

impl Follower<'_> {
    async fn run<C: ClientStream>(&mut self, client: &mut C) -> SseEnd {
        let mut timer = StreamTimer::default();
        let mut blocked_since: Option<Instant> = None;
        let client_buffer = self.route.settings.sse.client_buffer as u64;
        loop {
            if self.fanout.recorded() - self.taken > client_buffer {
                crate::log_info!(
                    "sse {}: shared stream's client fell more than --sse-client-buffer ({client_buffer} bytes) behind; disconnecting it",
                    self.lineage.scope.target()
                );
                WorkerMetrics::inc(&self.ctx.metrics.slow_clients);
                return SseEnd::SlowClient;
            }
            // A TLS client's session may still hold ciphertext: no new batch until the client
            // took it (as for plain TCP, where the queue itself holds it).
            if self.out.is_empty() && client.unsent() == 0 {
                // --coalesce-flush: what arrives within the interval waits for its end and
                // leaves in one write (the end of the stream does not wait).
                let flush_at = self.flush_at();
                if flush_at.is_some_and(|at| Instant::now() < at) && self.fanout.end().is_none() {
                    let at = flush_at.unwrap_or_else(Instant::now);
                    timer.arm(&self.ctx.timers, at.into());
                    timer.fired().await;
                    continue;
                }
                if self.take_batch().is_err() {
                    crate::log_info!(
                        "sse {}: a follower's next events were evicted from the ring; ending its response so it resumes with its last id",
                        self.lineage.scope.target()
                    );
                    WorkerMetrics::inc(&self.ctx.metrics.slow_clients);
                    return self.finish(client, SseEnd::ReplayEvicted).await;
                }
            }
            if !self.out.is_empty() || client.unsent() > 0 {
                match self.out.send_to(client) {
                    Ok(0) => {
                        blocked_since.get_or_insert_with(Instant::now);
                    }
                    Ok(_) => {
                        let now = Instant::now();
                        self.last_sent = now;
                        blocked_since =
                            (!self.out.is_empty() || client.unsent() > 0).then_some(now);
                    }
                    Err(_) => return SseEnd::ClientGone,
                }
            }
            if !self.out.is_empty() || client.unsent() > 0 {
                // ---- blocked: wait for room; news wakes it too, to check its lag ----
                let since = *blocked_since.get_or_insert_with(Instant::now);
                timer.arm(
                    &self.ctx.timers,
                    (since + self.ctx.config.timeouts.send).into(),
                );
                let head = self.lineage.ring.borrow().head_seq();
                monoio::select! {
                    res = client.tcp().writable(false) => {
                        if res.is_err() {
                            return SseEnd::ClientGone;
                        }
                    }
                    _ = self.fanout.news(&self.slot, &self.lineage, head), if self.fanout.end().is_none() => {}
                    _ = timer.fired() => {
                        crate::log_info!(
                            "sse {}: client took no bytes for the send timeout; disconnecting",
                            self.lineage.scope.target()
                        );
                        WorkerMetrics::inc(&self.ctx.metrics.slow_clients);
                        return SseEnd::SlowClient;
                    }
                }
                continue;
            }
            blocked_since = None;
            let caught_up = self.lineage.ring.borrow().head_seq() <= self.cursor;
            if !caught_up {
                continue;
            }
            if self.fanout.end().is_some() {
                return self.finish(client, SseEnd::Completed).await;
            }
            // ---- caught up: wait for news, a heartbeat, or the client leaving ----
            let quiet_since = Instant::now();
            let mut watching = false;
            let mut client_busy = false;
            loop {
                let heartbeat_at = self
                    .route
                    .settings
                    .sse
                    .heartbeat
                    .map(|d| self.last_sent + d);
                let watch_at =
                    (!watching && !client_busy).then_some(quiet_since + CLIENT_WATCH_DELAY);
                match [heartbeat_at, watch_at].into_iter().flatten().min() {
                    Some(at) => timer.arm(&self.ctx.timers, at.into()),
                    None => timer.disarm(),
                }
                monoio::select! {
                    _ = self.fanout.news(&self.slot, &self.lineage, self.cursor) => break,
                    _ = timer.fired() => {
                        let now = Instant::now();
                        if heartbeat_at.is_some_and(|h| now >= h) {
                            self.out.push_heartbeat();
                            WorkerMetrics::inc(&self.ctx.metrics.heartbeats);
                            break;
                        }
                        if !client_busy && now >= quiet_since + CLIENT_WATCH_DELAY {
                            // Quiet for a while: hold no buffer meanwhile (a busy stream keeps
                            // its queue's, instead of freeing them after every event).
                            self.out.shrink();
                            watching = true;
                        }
                    }
                    ready = client.tcp().readable(false), if watching => {
                        match (ready, client.peek_state()) {
                            (Err(_), _) | (_, PeekState::Closed) => return SseEnd::ClientGone,
                            (_, PeekState::HasData) => {
                                watching = false;
                                client_busy = true;
                            }
                            (_, PeekState::Quiet) => {}
                        }
                    }
                }
            }
        }
    }

    /// When the next write may go, under `--coalesce-flush` (None: at once).
    fn flush_at(&self) -> Option<Instant> {
        let flush = self.route.settings.sse.coalesce_flush?;
        let last = self.last_batch?;
        let has_news = self.lineage.ring.borrow().head_seq() > self.cursor;
        has_news.then_some(last + flush)
    }

    /// Queues the ring's next events after the cursor (one chunk). Err when the next event the
    /// client needs was evicted.
    fn take_batch(&mut self) -> Result<(), ()> {
        let ring = self.lineage.ring.borrow();
        if self.cursor + 1 < ring.first_seq() {
            return Err(());
        }
        // Measured first (the chunk's size line goes before the events), then queued straight
        // from the ring: no allocation per batch.
        let mut len = 0;
        let mut events = 0u64;
        let mut missed_len = 0u64;
        for event in ring.after(self.cursor) {
            if len > 0 && len + event.len() > FOLLOW_BATCH_BYTES {
                break;
            }
            len += event.len();
            events += 1;
            if self.cursor + events <= self.joined_at {
                missed_len += event.len() as u64;
            }
        }
        if len > 0 {
            // Only a batch that reached the head starts an interval: a client catching up is
            // fed as fast as it reads.
            let reached_head = self.cursor + events == ring.head_seq();
            if self.route.settings.sse.coalesce_flush.is_some() {
                self.last_batch = reached_head.then(Instant::now);
            }
            let batch = ring.after(self.cursor).take(events as usize);
            self.out.push_blocks(batch.map(|e| e.bytes()), len);
        }
        drop(ring);
        self.cursor += events;
        // What was missed before joining is not falling behind.
        self.taken += len as u64 - missed_len;
        if len > 0 {
            let m = &self.ctx.metrics;
            WorkerMetrics::add(&m.sse_events, events);
            WorkerMetrics::add(&m.sse_bytes, len as u64);
            self.entry.status.sent(events, len as u64);
        }
        Ok(())
    }

    /// Ends the client's response cleanly after what it was sent.
    async fn finish<C: ClientStream>(&mut self, client: &mut C, end: SseEnd) -> SseEnd {
        match self
            .out
            .end_response(client, self.ctx.config.timeouts.send)
            .await
        {
            Ok(()) => end,
            Err(()) => SseEnd::ClientGone,
        }
    }

    fn log_end(&self) {
        let route = self.route.name.as_deref();
        self.entry.status.log_end(self.ctx, route, None);
    }
}

impl Drop for Follower<'_> {
    fn drop(&mut self) {
        self.fanout.leave(&self.slot, &self.ctx.metrics);
        self.ctx.active.remove(&self.entry);
    }
}
