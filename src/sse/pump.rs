//! One upstream body through the relay: read what the upstream has, frame it, record it in the
//! lineage's ring and queue it for the client, with backpressure and a bounded turn.
//!
//! ```text
//! idle (nothing queued): wait for the first of
//!     upstream readable -> read what is there (<= MAX_SSE_READ) -> frame -> record -> queue
//!     heartbeat due     -> queue ": keep-alive"
//!     upstream idle     -> drop (with --upstream-idle-timeout)
//!     client closed     -> end (watched only after CLIENT_WATCH_DELAY idle)
//! writing (queued): writev everything queued; meanwhile read the upstream only while the queue
//!     is under QUEUE_HIGH_WATER, so a slow client slows its upstream instead of growing memory
//! ```
//! One wake-up does at most one read of MAX_SSE_READ bytes: no stream can hold the worker for
//! long, so new connections and timers get their turn under flat-out load.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::pin;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use monoio::net::TcpStream;

use super::assigned_id::AssignedId;
use super::framer::IdField;
use super::outbound::{adjoin, write_batch};
use super::relay::{BodyEnd, Relay};
use super::ring::RingEvent;
use crate::conn_io::{peek_state, PeekState};
use crate::http::Decoded;
use crate::metrics::{DropKind, WorkerMetrics};

/// How long a stream must be quiet before the client socket is also watched for a disconnect.
/// Watching costs a poll op each time the stream goes quiet; busy streams notice a gone client
/// through their writes instead.
pub(super) const CLIENT_WATCH_DELAY: Duration = Duration::from_millis(100);

/// Smallest and largest single read from an SSE upstream, in bytes: the read is sized to what the
/// socket holds (FIONREAD) within these bounds, so a ring event pins about its own size, and one
/// wake-up of one stream handles at most MAX_SSE_READ bytes.
const MIN_SSE_READ: usize = 64;
const MAX_SSE_READ: usize = 32 * 1024;

/// Where the body's timer waits when nothing is due (no heartbeat, no idle timeout): far enough
/// never to fire in practice, near enough for the timer wheel.
const TIMER_PARKED: Duration = Duration::from_secs(24 * 3600);

/// Bytes queued for the client above which the upstream is not read (backpressure). Small, as
/// nginx's proxy buffer is: a stream with one client holds at most this plus one read (and a
/// block that was assembled over several reads, up to --sse-max-event-bytes). Its client paces
/// it; it is never cut for being slow, only when it takes nothing for --send-timeout.
pub(super) const QUEUE_HIGH_WATER: usize = 32 * 1024;

/// A ring slice whose read buffer is more than this many times larger than the bytes framed from
/// it is copied into its own allocation: small events never pin big, mostly empty buffers.
const SPARSE_READ_FACTOR: usize = 2;

/// Reads what the upstream holds right now, without the runtime: readiness was just reported, so
/// a non-blocking `recv` returns at once. The read is sized to the socket's queue (FIONREAD) and
/// appended to `buf` (an unfinished chunk-framing piece may wait there); a fresh, exactly-sized
/// allocation otherwise, so ring events pin only the read they came in. Ok(None): the readiness
/// was spurious (EAGAIN). No future owns a buffer here, so nothing is lost to cancellation, and the
/// bytes are framed in the same wake-up that saw them (one loop cycle sooner than a read op).
fn read_now(fd: RawFd, buf: &mut BytesMut) -> io::Result<Option<usize>> {
    let want = bytes_available(fd).clamp(MIN_SSE_READ, MAX_SSE_READ);
    if buf.is_empty() {
        *buf = BytesMut::with_capacity(want);
    } else {
        buf.reserve(want);
    }
    let spare = buf.spare_capacity_mut();
    let len = want.min(spare.len());
    // SAFETY: recv writes at most `len` bytes into the spare capacity it is given, which is
    // `len` bytes of this buffer's allocation; `set_len` then covers exactly what it wrote.
    let n = unsafe {
        libc::recv(
            fd,
            spare.as_mut_ptr() as *mut libc::c_void,
            len,
            libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
            _ => Err(e),
        };
    }
    // SAFETY: the kernel initialised the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n as usize) };
    Ok(Some(n as usize))
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

impl Relay<'_> {
    /// Relays one upstream body until it ends, drops, or the client fails. Everything queued for
    /// the client has been written when it returns an upstream end.
    pub(super) async fn pump(
        &mut self,
        client: &mut TcpStream,
        up: TcpStream,
        mut ubuf: BytesMut,
    ) -> BodyEnd {
        // Body bytes that came with the head are relayed with it.
        let mut up_state = self.ingest(&mut ubuf);
        if ubuf.is_empty() {
            ubuf = BytesMut::new();
        }
        let up_fd = up.as_raw_fd();
        // Readiness only (no buffer): relaxed=false because tether reads by itself, so the epoll
        // driver must check the socket rather than trust its cached readiness.
        let mut ready = pin!(up.readable(false));
        let mut reading = up_state.is_none();
        let idle_timeout = self.ctx.resume.idle_timeout;
        // One timer for every wait of this body, reset rather than created: a monoio `Sleep` is
        // 640 bytes, and two of them inline would be most of an idle stream's memory.
        let mut timer = Box::pin(monoio::time::sleep_until(
            (Instant::now() + TIMER_PARKED).into(),
        ));

        loop {
            if self.out.is_empty() {
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
                    let heartbeat_at = self.settings.heartbeat.map(|d| self.last_sent + d);
                    let idle_at = idle_timeout.map(|d| self.last_upstream + d);
                    let watch_at =
                        (!watching && !client_busy).then_some(quiet_since + CLIENT_WATCH_DELAY);
                    let wake_at = [heartbeat_at, idle_at, watch_at]
                        .into_iter()
                        .flatten()
                        .min();
                    if let Some(at) = wake_at {
                        timer.as_mut().reset(at.into());
                    }
                    monoio::select! {
                        res = ready.as_mut(), if reading => {
                            up_state = self.after_ready(res, up_fd, &mut ubuf);
                            reading = up_state.is_none();
                            ready.set(up.readable(false));
                        }
                        _ = timer.as_mut(), if wake_at.is_some() => {
                            let now = Instant::now();
                            if idle_at.is_some_and(|at| now >= at) {
                                crate::log_debug!("sse upstream idle past --upstream-idle-timeout");
                                return BodyEnd::Dropped(DropKind::Idle);
                            }
                            if heartbeat_at.is_some_and(|at| now >= at) {
                                self.out.push_heartbeat();
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

            // ---- writing: everything queued; the upstream is read only below the high-water
            // mark, so a client that reads slowly slows its upstream (TCP pushes back on it) ----
            let batch = self.out.take();
            let queued = batch.remaining();
            let write_deadline = Instant::now() + self.ctx.config.timeouts.send;
            timer.as_mut().reset(write_deadline.into());
            let mut write = pin!(write_batch(client, batch));
            let result = loop {
                let room = reading && self.out.len() + queued < QUEUE_HIGH_WATER;
                monoio::select! {
                    done = write.as_mut() => break done,
                    res = ready.as_mut(), if room => {
                        up_state = self.after_ready(res, up_fd, &mut ubuf);
                        reading = up_state.is_none();
                        ready.set(up.readable(false));
                    }
                    _ = timer.as_mut() => {
                        crate::log_info!(
                            "sse {}: client took no bytes for the send timeout; disconnecting",
                            self.ring.lineage.scope.target()
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
                    // A short write: the rest goes first in the next batch.
                    self.out.put_back(rest);
                }
                Err(_) => return BodyEnd::ClientGone,
            }
        }
    }

    /// The upstream is readable: reads what it holds and frames it. Returns how the body ended,
    /// if it did.
    fn after_ready(
        &mut self,
        ready: io::Result<()>,
        fd: RawFd,
        buf: &mut BytesMut,
    ) -> Option<BodyEnd> {
        let res = ready.and_then(|()| read_now(fd, buf));
        let end = match res {
            Ok(None) => None,
            Ok(Some(0)) => match self.decoder.eof() {
                Ok(()) => Some(BodyEnd::Clean),
                Err(_) => Some(BodyEnd::Dropped(DropKind::Eof)),
            },
            Ok(Some(_)) => {
                self.last_upstream = Instant::now();
                self.ingest(buf)
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                Some(BodyEnd::Dropped(DropKind::Reset))
            }
            Err(e) => {
                crate::log_debug!("sse upstream read failed: {e}");
                Some(BodyEnd::Dropped(DropKind::Error))
            }
        };
        if buf.is_empty() {
            // Nothing left over: a quiet stream waits holding no buffer at all.
            *buf = BytesMut::new();
        }
        end
    }

    /// Decodes what `buf` holds, frames it, and queues the resulting blocks.
    pub(super) fn ingest(&mut self, buf: &mut BytesMut) -> Option<BodyEnd> {
        self.read_alloc = buf.capacity();
        while !buf.is_empty() && !self.decoder.is_done() {
            match self.decoder.decode(buf) {
                Ok(Decoded::Data { start, end }) => {
                    let piece = buf.split_to(end).freeze().slice(start..);
                    self.pieces.push(piece.clone());
                    if self.framer.feed(piece, &mut self.blocks).is_err() {
                        crate::log_warn!(
                            "sse {}: upstream event larger than --sse-max-event-bytes {}; ending the stream",
                            self.ring.lineage.scope.target(),
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
        let alloc = self.read_alloc.max(framed);
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
            let assigned = self.settings.assign_ids && block.fires && id.is_none();
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
                let (kept, held) = if assigned {
                    (raw.clone(), raw.len())
                } else if sparse {
                    (Bytes::copy_from_slice(&raw), raw.len())
                } else {
                    (raw.clone(), raw.len() * alloc / framed)
                };
                let event = RingEvent {
                    id: id.clone(),
                    raw: kept,
                    held: u32::try_from(held).unwrap_or(u32::MAX),
                    assigned,
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
        if *self.status.last_id.borrow() != cursor {
            *self.status.last_id.borrow_mut() = Bytes::copy_from_slice(cursor);
        }
    }
}
