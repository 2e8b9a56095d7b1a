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

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use monoio::net::TcpStream;

use super::assigned_id::AssignedId;
use super::framer::IdField;
use super::outbound::adjoin;
use super::relay::{BodyEnd, Relay};
use super::ring::RingEvent;
use crate::conn_io::{peek_state, recv_now, PeekState};
use crate::http::Decoded;
use crate::limits::CLIENT_WATCH_DELAY;
use crate::metrics::{DropKind, WorkerMetrics};
use crate::timers::{TimerSlot, Timers};

/// Largest single read from an SSE upstream, in bytes (the worker's scratch buffer): one wake-up
/// of one stream handles at most this much, so no stream holds its worker for long.
const MAX_SSE_READ: usize = 32 * 1024;

/// Leftover bytes of a read smaller than this are never worth moving to an allocation of their own.
const MIN_COMPACT: usize = 64;

/// Bytes queued for the client above which the upstream is not read (backpressure). Small, as
/// nginx's proxy buffer is: a stream with one client holds at most this plus one read (and a
/// block that was assembled over several reads, up to --sse-max-event-bytes). Its client paces
/// it; it is never cut for being slow, only when it takes nothing for --send-timeout.
pub(super) const QUEUE_HIGH_WATER: usize = 32 * 1024;

/// A ring slice whose read buffer is more than this many times larger than the bytes framed from
/// it is copied into its own allocation: small events never pin big, mostly empty buffers.
const SPARSE_READ_FACTOR: usize = 2;

/// The pump's one timer: a slot of the worker's timers (crate::timers), taken when something
/// is due, re-armed for each new deadline, given back when nothing is (a quiet stream without
/// heartbeats or idle timeout holds none).
#[derive(Default)]
struct StreamTimer(Option<TimerSlot>);

impl StreamTimer {
    fn arm(&mut self, timers: &Rc<Timers>, at: Instant) {
        self.0.get_or_insert_with(|| TimerSlot::new(timers)).arm(at);
    }

    fn disarm(&mut self) {
        self.0 = None;
    }

    /// Resolves when the armed deadline passes; never when disarmed. Cancel-safe (a timer).
    async fn fired(&mut self) {
        match &mut self.0 {
            Some(slot) => slot.fired().await,
            None => std::future::pending().await,
        }
    }
}

/// Reads what the upstream holds right now, without the runtime: readiness was just reported, so
/// a non-blocking `recv` returns at once. One syscall: the bytes land in the worker's scratch
/// buffer (MAX_SSE_READ, reused by every stream of the worker) and are copied into `buf`, a
/// fresh allocation of exactly their size (so ring events pin only the read they came in), or
/// appended to an unfinished chunk-framing piece waiting there. Ok(None): the readiness was
/// spurious (EAGAIN). No future owns a buffer here, so nothing is lost to cancellation, and the
/// bytes are framed in the same wake-up that saw them (one loop cycle sooner than a read op).
fn read_now(fd: RawFd, buf: &mut BytesMut) -> io::Result<Option<usize>> {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; MAX_SSE_READ]);
    }
    SCRATCH.with(|scratch| {
        let mut scratch = scratch.borrow_mut();
        // SAFETY: u8 and MaybeUninit<u8> have one layout; recv only ever writes bytes into it.
        let dst = unsafe {
            &mut *(scratch.as_mut_slice() as *mut [u8] as *mut [std::mem::MaybeUninit<u8>])
        };
        let Some(n) = recv_now(fd, dst)? else {
            return Ok(None);
        };
        if buf.is_empty() {
            *buf = BytesMut::from(&scratch[..n]);
        } else {
            buf.extend_from_slice(&scratch[..n]);
        }
        Ok(Some(n))
    })
}

fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// `part`, a slice of `original`, as the same slice of `copy` (a copy of `original`); a `part`
/// that is not inside `original` (an id the framer had to rewrite) gets its own exact copy.
fn reslice(original: &Bytes, copy: &Bytes, part: &Bytes) -> Bytes {
    let base = original.as_ptr() as usize;
    let at = part.as_ptr() as usize;
    if at >= base && at + part.len() <= base + original.len() {
        copy.slice(at - base..at - base + part.len())
    } else {
        Bytes::copy_from_slice(part)
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

impl Relay<'_> {
    /// Relays one upstream body until it ends, drops, or the client fails. Everything queued for
    /// the client has been written when it returns an upstream end.
    ///
    /// Both directions are plain syscalls in the wake-up that found them ready (a `recv` from the
    /// upstream, a `sendmsg` to the client); the futures here only wait for readiness, so they
    /// own no buffer (cancel-safe) and the future a stream sits in stays small.
    pub(super) async fn pump(&mut self, client: &TcpStream, up: &TcpStream) -> BodyEnd {
        // Body bytes that came with the head are relayed with it.
        let mut up_state = self.ingest_buffered();
        let up_fd = up.as_raw_fd();
        let client_fd = client.as_raw_fd();
        // Readiness only (no buffer): relaxed=false because tether reads and writes by itself, so
        // the epoll driver must check the socket rather than trust its cached readiness.
        let mut ready = pin!(up.readable(false));
        let mut reading = up_state.is_none();
        // One timer for every wait of this body, re-armed rather than created, and held only
        // while something is due.
        let mut timer = StreamTimer::default();
        // Since when the client's socket has taken none of what is queued (send timeout).
        let mut blocked_since: Option<Instant> = None;
        // The upstream's readiness, seen by a wait below and acted on after it (in our turn).
        let mut ready_now: Option<io::Result<()>> = None;
        // When the turn under way began (charged to the worker's slice once its send is done).
        let mut turn_started: Option<Instant> = None;

        loop {
            // ---- send what is queued, as far as the client's socket takes it ----
            if !self.out.is_empty() {
                match self.out.send_now(client_fd) {
                    Ok(0) => {
                        blocked_since.get_or_insert_with(Instant::now);
                    }
                    Ok(_) => {
                        let now = Instant::now();
                        self.last_sent = now;
                        if let Some(since) = self.gap_from.take() {
                            self.ctx.metrics.record_gap(since.elapsed());
                        }
                        blocked_since = (!self.out.is_empty()).then_some(now);
                    }
                    Err(_) => return BodyEnd::ClientGone,
                }
            }
            if let Some(started) = turn_started.take() {
                self.ctx.turns.charge(started);
            }

            if !self.out.is_empty() {
                // ---- blocked: wait for room in the client's socket; meanwhile read the
                // upstream only below the high-water mark, so a client that reads slowly slows
                // its upstream (TCP pushes back on it) ----
                let since = *blocked_since.get_or_insert_with(Instant::now);
                timer.arm(&self.ctx.timers, since + self.ctx.config.timeouts.send);
                let room = reading && self.out.len() < QUEUE_HIGH_WATER;
                monoio::select! {
                    res = client.writable(false) => {
                        if res.is_err() {
                            return BodyEnd::ClientGone;
                        }
                    }
                    res = ready.as_mut(), if room => {
                        ready_now = Some(res);
                    }
                    _ = timer.fired() => {
                        crate::log_info!(
                            "sse {}: client took no bytes for the send timeout; disconnecting",
                            self.ring.lineage.scope.target()
                        );
                        return BodyEnd::SlowClient;
                    }
                }
                if let Some(res) = ready_now.take() {
                    turn_started = Some(self.take_turn(res, up_fd, &mut up_state).await);
                    reading = up_state.is_none();
                    ready.set(up.readable(false));
                }
                continue;
            }
            blocked_since = None;
            if let Some(end) = up_state.take() {
                return end;
            }

            // ---- idle: wait for the upstream, a heartbeat, or the client leaving ----
            // A quiet stream holds no buffer: tens of thousands of them may sit here.
            self.out.shrink();
            if self.blocks.capacity() > 0 {
                self.blocks = Vec::new();
                self.pieces = Vec::new();
            }
            let quiet_since = Instant::now();
            let mut watching = false;
            let mut client_busy = false;
            while self.out.is_empty() && up_state.is_none() {
                let wake_at = self.idle_wake(quiet_since, !watching && !client_busy);
                match wake_at {
                    Some(at) => timer.arm(&self.ctx.timers, at),
                    None => timer.disarm(),
                }
                monoio::select! {
                    res = ready.as_mut(), if reading => {
                        ready_now = Some(res);
                    }
                    _ = timer.fired(), if wake_at.is_some() => {
                        let now = Instant::now();
                        let idle_timeout = self.route.settings.resume.idle_timeout;
                        if idle_timeout.is_some_and(|d| now >= self.last_upstream + d) {
                            crate::log_debug!("sse upstream idle past --upstream-idle-timeout");
                            return BodyEnd::Dropped(DropKind::Idle);
                        }
                        if self.route.settings.sse.heartbeat.is_some_and(|d| now >= self.last_sent + d) {
                            self.out.push_heartbeat();
                            WorkerMetrics::inc(&self.ctx.metrics.heartbeats);
                        } else if !client_busy && now >= quiet_since + CLIENT_WATCH_DELAY {
                            watching = true;
                        }
                    }
                    ready = client.readable(false), if watching => {
                        match (ready, peek_state(client_fd)) {
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
                if let Some(res) = ready_now.take() {
                    turn_started = Some(self.take_turn(res, up_fd, &mut up_state).await);
                    reading = up_state.is_none();
                    ready.set(up.readable(false));
                }
            }
        }
    }

    /// When an idle stream must wake by itself: the next heartbeat, the upstream idle timeout,
    /// or (`watch`) the moment the client starts being watched for a disconnect.
    fn idle_wake(&self, quiet_since: Instant, watch: bool) -> Option<Instant> {
        let heartbeat_at = self.heartbeat_at();
        let idle_at = self
            .route
            .settings
            .resume
            .idle_timeout
            .map(|d| self.last_upstream + d);
        let watch_at = watch.then_some(quiet_since + CLIENT_WATCH_DELAY);
        [heartbeat_at, idle_at, watch_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Frames the body bytes that came with the upstream's response head.
    fn ingest_buffered(&mut self) -> Option<BodyEnd> {
        let mut buf = mem::take(&mut self.ubuf);
        let end = self.ingest(&mut buf);
        compact(&mut buf);
        self.ubuf = buf;
        end
    }

    /// The upstream is readable: waits for this stream's turn (crate::turns), then reads and
    /// frames what it holds. Returns when the turn began; `up_state` gets how the body ended, if
    /// it did.
    async fn take_turn(
        &mut self,
        ready: io::Result<()>,
        fd: RawFd,
        up_state: &mut Option<BodyEnd>,
    ) -> Instant {
        self.ctx.turns.my_turn().await;
        let started = Instant::now();
        *up_state = self.after_ready(ready, fd);
        started
    }

    /// The upstream is readable: reads what it holds and frames it. Returns how the body ended,
    /// if it did.
    fn after_ready(&mut self, ready: io::Result<()>, fd: RawFd) -> Option<BodyEnd> {
        let mut buf = mem::take(&mut self.ubuf);
        let res = ready.and_then(|()| read_now(fd, &mut buf));
        let end = match res {
            Ok(None) => None,
            Ok(Some(0)) => match self.decoder.eof() {
                Ok(()) => Some(BodyEnd::Clean),
                Err(_) => Some(BodyEnd::Dropped(DropKind::Eof)),
            },
            Ok(Some(_)) => {
                self.last_upstream = Instant::now();
                self.ingest(&mut buf)
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                Some(BodyEnd::Dropped(DropKind::Reset))
            }
            Err(e) => {
                crate::log_debug!("sse upstream read failed: {e}");
                Some(BodyEnd::Dropped(DropKind::Error))
            }
        };
        compact(&mut buf);
        self.ubuf = buf;
        end
    }

    /// Decodes what `buf` holds, frames it, and queues the resulting blocks.
    pub(super) fn ingest(&mut self, buf: &mut BytesMut) -> Option<BodyEnd> {
        self.read_alloc = u32::try_from(buf.capacity()).unwrap_or(u32::MAX);
        while !buf.is_empty() && !self.decoder.is_done() {
            match self.decoder.decode(buf) {
                Ok(Decoded::Data { start, end }) => {
                    let piece = buf.split_to(end).freeze().slice(start..);
                    self.pieces.push(piece.clone());
                    if self.framer.feed(piece, &mut self.blocks).is_err() {
                        crate::log_warn!(
                            "sse {}: upstream event larger than --sse-max-event-bytes {}; ending the stream",
                            self.ring.lineage.scope.target(),
                            self.route.settings.sse.max_event_bytes
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

    /// Filters the framed blocks (repeats of what the ring holds, after a resume or replay),
    /// assigns ids if asked, records them in the ring, and queues them for the client as one
    /// chunk.
    pub(super) fn flush_blocks(&mut self) {
        if self.blocks.is_empty() {
            self.pieces.clear();
            return;
        }
        // What a ring slice of these pieces really pins: the read's allocation, shared by the
        // bytes framed from it. A sparse read is copied instead (see SPARSE_READ_FACTOR).
        let framed: usize = self.pieces.iter().map(Bytes::len).sum::<usize>().max(1);
        // The allocator rounds an allocation up to its size class (mimalloc: within 1/8).
        let read_alloc = self.read_alloc as usize;
        let alloc = (read_alloc + read_alloc / 8).max(framed);
        let sparse = alloc > SPARSE_READ_FACTOR * framed;
        let mut blocks = mem::take(&mut self.blocks);
        let mut out: Vec<Bytes> = Vec::with_capacity(blocks.len());
        let mut out_len = 0usize;
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
                    Some(id)
                        if !id.is_empty() && self.ring.lineage.ring.borrow().contains_id(id) =>
                    {
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
            let assigned = self.route.settings.sse.assign_ids && block.fires && id.is_none();
            let (id, raw) = if assigned {
                let name = AssignedId {
                    worker: self.ctx.index as u32,
                    ring: self.ring.lineage.id,
                    seq: self.ring.lineage.ring.borrow().head_seq() + 1,
                }
                .to_bytes();
                let mut raw = BytesMut::with_capacity(block.raw.len() + name.len() + 5);
                raw.extend_from_slice(b"id: ");
                raw.extend_from_slice(&name);
                raw.extend_from_slice(b"\n");
                raw.extend_from_slice(&block.raw);
                (Some(name), raw.freeze())
            } else {
                (id, block.raw)
            };
            if block.fires || id.is_some() || block.retry.is_some() {
                let event = if assigned || !sparse {
                    let held = if assigned {
                        raw.len()
                    } else {
                        raw.len() * alloc / framed
                    };
                    // An assigned id was written at the event's start ("id: NAME\n"): keep
                    // it as that slice of the event rather than a copy of its own.
                    let id_in_raw = match &id {
                        Some(name) if assigned => Some(&raw[4..4 + name.len()]),
                        other => other.as_deref(),
                    };
                    RingEvent::new(raw.clone(), id_in_raw, clamp_u32(held), assigned)
                } else {
                    // The id is a slice of the event: it is found in the copy at the same place.
                    let copy = Bytes::copy_from_slice(&raw);
                    let copy_id = id.as_ref().map(|id| reslice(&raw, &copy, id));
                    let held = raw.len() + raw.len() / 8;
                    RingEvent::new(copy, copy_id.as_deref(), clamp_u32(held), false)
                };
                self.ctx
                    .streams
                    .record(&self.ring, event, &self.ctx.metrics);
            }
            // Progress is a new event or cursor move, not a retry: line or a comment (an upstream
            // that accepts reconnects but only ever repeats its retry: hint makes no progress).
            if block.fires || id.is_some() {
                self.progressed = true;
            }
            if block.fires {
                events += 1;
            }
            out_len += raw.len();
            // Blocks that lie next to each other in the piece they came in leave as one slice.
            match out.last().and_then(|prev| adjoin(prev, &raw, &self.pieces)) {
                Some(joined) => *out.last_mut().expect("checked") = joined,
                None => out.push(raw),
            }
        }
        self.pieces.clear();
        self.blocks = blocks;
        let m = &self.ctx.metrics;
        WorkerMetrics::add(&m.sse_events, events);
        WorkerMetrics::add(&m.sse_bytes, out_len as u64);
        self.out.push_blocks(out, out_len);
        let cursor = self.framer.last_event_id();
        if *self.entry.status.last_id.borrow() != cursor {
            *self.entry.status.last_id.borrow_mut() = Bytes::copy_from_slice(cursor);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copied_event_takes_its_id_from_the_copy() {
        let read = Bytes::from(vec![b'x'; 4096]);
        let mut event = read.slice(100..130).to_vec();
        event[..6].copy_from_slice(b"id: 7\n");
        let read = {
            let mut v = read.to_vec();
            v[100..130].copy_from_slice(&event);
            Bytes::from(v)
        };
        let raw = read.slice(100..130);
        let id = raw.slice(4..5);
        let copy = Bytes::copy_from_slice(&raw);
        let kept = reslice(&raw, &copy, &id);
        assert_eq!(&kept[..], b"7");
        let copy_range = copy.as_ptr() as usize..copy.as_ptr() as usize + copy.len();
        assert!(
            copy_range.contains(&(kept.as_ptr() as usize)),
            "sliced from the copy"
        );
        let foreign = Bytes::from_static(b"other");
        assert_eq!(&reslice(&raw, &copy, &foreign)[..], b"other");
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
