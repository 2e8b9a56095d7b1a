//! The SSE relay: an upstream `text/event-stream` body, framed into blocks, forwarded block by
//! block to the client, recorded in the stream's replay ring.
//!
//! One task per client (the connection's own), two sockets, no buffering beyond what is already
//! read:
//!
//! ```text
//! loop:
//!   idle (nothing queued for the client):
//!     wait for the first of: upstream readable -> read what is there -> frame -> queue blocks
//!                            heartbeat due     -> queue ": keep-alive"
//!                            client closed     -> end (watched only after CLIENT_WATCH_DELAY idle)
//!   writing (blocks queued): writev everything queued, and meanwhile keep reading the upstream;
//!     the queue is bounded by --sse-client-buffer: past it the client is cut off (it can resume
//!     from the ring) and the upstream read stops for nobody else.
//! ```
//!
//! Flush rule: a block leaves as soon as it is complete; blocks that arrived together leave
//! together (one chunk, one writev). Nothing waits for more input.
//!
//! Cancellation: the upstream read future owns the upstream socket and its buffer and is only
//! dropped when the stream ends (the socket is closed with it). It first waits for readability
//! (no buffer pinned while a stream is quiet), then reads exactly the bytes available (FIONREAD),
//! so a ring holding an event does not also pin a mostly empty read buffer. The client write future
//! is never dropped while the connection lives. `readable()` futures own no buffer and are
//! dropped freely.

use std::collections::HashSet;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::pin;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use monoio::io::AsyncWriteRent;
use monoio::net::TcpStream;

use super::framer::{EventFramer, IdField, SseBlock};
use super::key::StreamKey;
use super::registry::{RingCursor, StreamLease};
use crate::conn_io::{peek_state, read_more, BytesVec, PeekState};
use crate::http::{BodyDecoder, ChunkHeader, Decoded, OutFraming, CHUNK_END, LAST_CHUNK};
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
    /// The upstream ended its body cleanly; the client's response was ended cleanly too.
    Completed,
    /// The upstream connection dropped (FIN mid-body, RST, error, invalid framing); the client's
    /// response was ended after the last complete block.
    UpstreamDropped,
    /// The upstream sent a block over `--sse-max-event-bytes`.
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
    pub delivered: HashSet<Bytes>,
}

/// Everything the relay takes over from the exchange.
pub struct SseStart<'a> {
    pub client: &'a mut TcpStream,
    /// Chunked for HTTP/1.1 clients, close-delimited for HTTP/1.0.
    pub framing: OutFraming,
    /// The response head for the client, already written into bytes.
    pub head: Bytes,
    pub up: TcpStream,
    /// Body bytes read together with the upstream head.
    pub ubuf: BytesMut,
    pub decoder: BodyDecoder,
    pub key: StreamKey,
    pub replay: Option<Replay>,
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
    let (res, buf) = read_more(&mut r.stream, mem::take(&mut r.buf), want).await;
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

/// The per-stream state the relay keeps between reads.
struct Relay<'c> {
    ctx: &'c WorkerCtx,
    settings: SseSettings,
    framing: OutFraming,
    decoder: BodyDecoder,
    framer: EventFramer,
    blocks: Vec<SseBlock>,
    lease: StreamLease,
    cursor: RingCursor,
    /// Present after a replay: ids the client has, for dropping upstream repeats.
    delivered: Option<HashSet<Bytes>>,
    /// After a repeated id, the blocks without id that follow it are repeats too.
    skipping_repeats: bool,
    /// Bytes framed for the client and not yet handed to a write.
    pending: BytesVec,
    /// Chunk-size lines are cut from this small buffer instead of one allocation each.
    scratch: BytesMut,
    last_sent: Instant,
    /// Counter for `--assign-ids`.
    assigned: u64,
}

pub async fn relay(ctx: &WorkerCtx, start: SseStart<'_>) -> SseEnd {
    let settings = ctx.sse;
    let lease = ctx.streams.lease(&start.key);
    let mut relay = Relay {
        ctx,
        settings,
        framing: start.framing,
        decoder: start.decoder,
        framer: EventFramer::new(settings.max_event_bytes),
        blocks: Vec::new(),
        cursor: RingCursor::default(),
        lease,
        delivered: None,
        skipping_repeats: false,
        pending: BytesVec::new(),
        scratch: BytesMut::new(),
        last_sent: Instant::now(),
        assigned: 0,
    };
    relay.pending.push(start.head);
    if let Some(replay) = start.replay {
        let missed: Vec<Bytes> = replay.missed;
        relay.queue_blocks(missed);
        // The client is now at the ring's head: it continues the ring from there.
        relay.cursor.seq = Some(relay.lease.stream.ring.borrow().head_seq());
        relay.delivered = Some(replay.delivered);
    }
    let client = start.client;
    let mut upbuf = start.ubuf;
    // Body bytes that came with the head are relayed with it.
    let mut up_state = relay.ingest(&mut upbuf);
    let reader = UpReader {
        stream: start.up,
        buf: upbuf,
    };
    let mut read = pin!(read_upstream(reader));
    let mut reading = up_state.is_none();

    loop {
        if relay.pending.is_empty() {
            if let Some(end) = up_state.take() {
                return relay.finish(client, end).await;
            }
        }
        if relay.pending.is_empty() {
            // ---- idle: wait for the upstream, a heartbeat, or the client leaving ----
            let quiet_since = Instant::now();
            let mut watching = false;
            let mut client_busy = false;
            while relay.pending.is_empty() && up_state.is_none() {
                let heartbeat_at = relay.settings.heartbeat.map(|d| relay.last_sent + d);
                let watch_at =
                    (!watching && !client_busy).then_some(quiet_since + CLIENT_WATCH_DELAY);
                let wake_at = match (heartbeat_at, watch_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                let sleep = async {
                    match wake_at {
                        Some(at) => monoio::time::sleep_until(at.into()).await,
                        None => std::future::pending::<()>().await,
                    }
                };
                monoio::select! {
                    (reader, res) = read.as_mut(), if reading => {
                        let (end, next) = relay.after_read(reader, res);
                        match next {
                            Some(reader) => read.set(read_upstream(reader)),
                            None => reading = false,
                        }
                        up_state = end;
                    }
                    _ = sleep => {
                        let now = Instant::now();
                        if heartbeat_at.is_some_and(|at| now >= at) {
                            relay.pending.push_static_framed(HEARTBEAT, relay.framing, &mut relay.scratch);
                        } else if !client_busy {
                            watching = true;
                        }
                    }
                    ready = client.readable(false), if watching => {
                        match (ready, peek_state(client.as_raw_fd())) {
                            (Err(_), _) | (_, PeekState::Closed) => return SseEnd::ClientGone,
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
        let batch = mem::take(&mut relay.pending);
        let queued = batch.remaining();
        let write_deadline = Instant::now() + ctx.config.timeouts.send;
        let mut write = pin!(write_batch(client, batch));
        let result = loop {
            monoio::select! {
                done = write.as_mut() => break done,
                (reader, res) = read.as_mut(), if reading => {
                    let (end, next) = relay.after_read(reader, res);
                    match next {
                        Some(reader) => read.set(read_upstream(reader)),
                        None => reading = false,
                    }
                    up_state = end;
                    if relay.pending.remaining() + queued > relay.settings.client_buffer {
                        crate::log_info!(
                            "sse {}: client too slow ({} bytes queued, --sse-client-buffer {}); disconnecting",
                            relay.lease.stream.key.target(),
                            relay.pending.remaining() + queued,
                            relay.settings.client_buffer
                        );
                        return SseEnd::SlowClient;
                    }
                }
                _ = monoio::time::sleep_until(write_deadline.into()) => {
                    crate::log_info!("sse {}: client took no bytes for the send timeout; disconnecting", relay.lease.stream.key.target());
                    return SseEnd::SlowClient;
                }
            }
        };
        match result {
            Ok(rest) => {
                relay.last_sent = Instant::now();
                if !rest.is_empty() {
                    // A short write: the rest goes first in the next batch.
                    let mut rest = rest;
                    rest.append(&mut relay.pending);
                    relay.pending = rest;
                }
            }
            Err(_) => return SseEnd::ClientGone,
        }
    }
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

impl Relay<'_> {
    /// Handles a completed upstream read. Returns how the upstream ended, if it did, else the
    /// reader to arm the next read with.
    fn after_read(
        &mut self,
        mut reader: UpReader,
        res: io::Result<usize>,
    ) -> (Option<SseEnd>, Option<UpReader>) {
        let end = match res {
            Ok(0) => match self.decoder.eof() {
                Ok(()) => Some(SseEnd::Completed),
                Err(_) => Some(SseEnd::UpstreamDropped),
            },
            Ok(_) => self.ingest(&mut reader.buf),
            Err(e) => {
                crate::log_debug!("sse upstream read failed: {e}");
                Some(SseEnd::UpstreamDropped)
            }
        };
        match end {
            None => (None, Some(reader)),
            Some(end) => (Some(end), None),
        }
    }

    /// Decodes what `buf` holds, frames it, and queues the resulting blocks.
    fn ingest(&mut self, buf: &mut BytesMut) -> Option<SseEnd> {
        while !buf.is_empty() && !self.decoder.is_done() {
            match self.decoder.decode(buf) {
                Ok(Decoded::Data { start, end }) => {
                    let piece = buf.split_to(end).freeze().slice(start..);
                    if self.framer.feed(piece, &mut self.blocks).is_err() {
                        crate::log_warn!(
                            "sse {}: upstream event larger than --sse-max-event-bytes {}; ending the stream",
                            self.lease.stream.key.target(),
                            self.settings.max_event_bytes
                        );
                        self.flush_blocks();
                        return Some(SseEnd::EventTooLarge);
                    }
                }
                Ok(Decoded::NeedMore) => buf.clear(),
                Ok(Decoded::Done { consumed }) => buf.advance(consumed),
                Err(e) => {
                    crate::log_debug!("sse upstream body invalid: {e}");
                    self.flush_blocks();
                    return Some(SseEnd::UpstreamDropped);
                }
            }
        }
        self.flush_blocks();
        if self.decoder.is_done() {
            return Some(SseEnd::Completed);
        }
        None
    }

    /// Filters the framed blocks (repeats after a resume), assigns ids if asked, records them in
    /// the ring, and queues them for the client as one chunk.
    fn flush_blocks(&mut self) {
        if self.blocks.is_empty() {
            return;
        }
        let blocks = mem::take(&mut self.blocks);
        let mut out = Vec::with_capacity(blocks.len());
        let sole = self.lease.stream.clients() == 1;
        for block in blocks.iter() {
            let id = match &block.id {
                IdField::Set(id) => Some(id.clone()),
                IdField::Unchanged => None,
            };
            if let Some(delivered) = &self.delivered {
                match &id {
                    Some(id) if delivered.contains(id) => {
                        self.skipping_repeats = true;
                        continue;
                    }
                    Some(_) => self.skipping_repeats = false,
                    None if self.skipping_repeats => continue,
                    None => {}
                }
            }
            let (id, raw) = if self.settings.assign_ids && block.fires && id.is_none() {
                self.assigned += 1;
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
                (id, block.raw.clone())
            };
            if block.fires || id.is_some() || block.retry.is_some() {
                let mut ring = self.lease.stream.ring.borrow_mut();
                self.cursor.record(&mut ring, id.as_ref(), &raw, sole);
            }
            out.push(raw);
        }
        self.blocks = blocks;
        self.blocks.clear();
        self.queue_blocks(out);
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

    /// Ends the client's response after the upstream ended or dropped.
    async fn finish(mut self, client: &mut TcpStream, end: SseEnd) -> SseEnd {
        // The dead response's unfinished block is discarded, never forwarded.
        self.framer.finish();
        if self.framing == OutFraming::Chunked {
            self.pending.push_static(LAST_CHUNK);
        }
        let out = mem::take(&mut self.pending);
        if crate::conn_io::write_vec_within(client, out, self.ctx.config.timeouts.send)
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

trait PushFramed {
    fn push_static_framed(
        &mut self,
        bytes: &'static [u8],
        framing: OutFraming,
        scratch: &mut BytesMut,
    );
}

impl PushFramed for BytesVec {
    fn push_static_framed(
        &mut self,
        bytes: &'static [u8],
        framing: OutFraming,
        scratch: &mut BytesMut,
    ) {
        if framing == OutFraming::Chunked {
            self.push(cut(scratch, ChunkHeader::new(bytes.len()).as_bytes()));
            self.push_static(bytes);
            self.push_static(CHUNK_END);
        } else {
            self.push_static(bytes);
        }
    }
}
