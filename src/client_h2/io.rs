//! The TLS session as h2 wants it: tokio's `AsyncRead`/`AsyncWrite` over the same sans-IO
//! `TlsSession` and non-blocking syscalls the HTTP/1.1 path uses (`crate::tls`), with monoio's
//! readiness waits for "not now". A readiness wait owns no buffer, so dropping one (h2 polls,
//! then drops its interest) loses no byte on either driver: every byte is read by a synchronous
//! `recv` in the poll that found the socket ready, never by an io_uring op left in flight.
//!
//! The plaintext h2 reads passes through a [`FrameCounter`]: the frames the client sends, seen
//! by type, for the flood limits h2 does not enforce itself (`super::Floods`).

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use monoio::net::TcpStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Floods;
use crate::client_tls::ServerSession;

/// Ciphertext rustls may hold for the socket before `poll_write` says "not now", in bytes: h2
/// writes each frame as soon as it is made, so this bounds what one connection holds besides
/// h2's own per-stream buffers (and counts as the connection's send backlog).
pub const MAX_UNSENT_BYTES: usize = 64 * 1024;

/// A readiness wait, boxed so that the adapter can keep it across polls (it borrows the socket
/// through an `Rc`). Owns no buffer: safe to drop at any time.
type Ready = Pin<Box<dyn Future<Output = io::Result<()>>>>;

/// The socket and session of a TLS client that chose h2, as one tokio byte stream.
pub struct TlsIo {
    tcp: Rc<TcpStream>,
    session: ServerSession,
    /// The pending wait for readability (read side) and writability (write side).
    readable: Option<Ready>,
    writable: Option<Ready>,
    /// Plaintext decrypted but not yet handed to h2 (a read step may decrypt more than h2's
    /// buffer takes); at most one read step's worth.
    plain: BytesMut,
    /// What the client sends, frame by frame.
    frames: FrameCounter,
    /// The connection's flood counters (shared with its streams).
    floods: Rc<Floods>,
    /// close_notify was queued (shutdown).
    closing: bool,
}

impl TlsIo {
    pub fn new(tcp: TcpStream, session: ServerSession, floods: Rc<Floods>) -> TlsIo {
        TlsIo {
            tcp: Rc::new(tcp),
            session,
            readable: None,
            writable: None,
            plain: BytesMut::new(),
            frames: FrameCounter::default(),
            floods,
            closing: false,
        }
    }

    /// The socket, shared: kept by the connection's task past h2's end for a lingering close.
    pub fn socket(&self) -> Rc<TcpStream> {
        self.tcp.clone()
    }

    fn fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
    }

    /// Polls (creating if needed) the wait in `slot`: Ready once the socket was ready.
    fn poll_ready(
        tcp: &Rc<TcpStream>,
        slot: &mut Option<Ready>,
        write: bool,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        let wait = slot.get_or_insert_with(|| {
            let tcp = tcp.clone();
            if write {
                Box::pin(async move { tcp.writable(false).await })
            } else {
                Box::pin(async move { tcp.readable(false).await })
            }
        });
        let ready = wait.as_mut().poll(cx);
        if ready.is_ready() {
            *slot = None;
        }
        ready
    }

    /// Sends what rustls holds as far as the socket takes it now: Ready(Ok) once all of it went.
    fn poll_flush_tls(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.session.flush_now(self.fd())? {
                return Poll::Ready(Ok(()));
            }
            std::task::ready!(Self::poll_ready(&self.tcp, &mut self.writable, true, cx))?;
        }
    }
}

impl Drop for TlsIo {
    /// As `TlsClient`: close_notify, best effort, so the client tells an end from a cut.
    fn drop(&mut self) {
        if !self.closing {
            self.session.send_close_notify();
        }
        let _ = self.session.flush_now(self.fd());
    }
}

impl AsyncRead for TlsIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.floods.tripped().is_some() {
            // The connection is going away (GOAWAY queued): nothing more from this client
            // reaches h2; the connection's task drains and closes it (`super::linger`).
            return Poll::Pending;
        }
        loop {
            if !this.plain.is_empty() {
                let n = this.plain.len().min(buf.remaining());
                let chunk = this.plain.split_to(n);
                this.frames.see(&chunk, &this.floods);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            let fd = this.fd();
            match this.session.read_now(fd, &mut this.plain)? {
                Some(0) => return Poll::Ready(Ok(())),
                Some(_) => continue,
                None => {}
            }
            std::task::ready!(Self::poll_ready(&this.tcp, &mut this.readable, false, cx))?;
        }
    }
}

impl AsyncWrite for TlsIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.session.unsent() >= MAX_UNSENT_BYTES || this.session.wants_write() {
            // Room first: the socket takes what rustls holds, or we wait for it.
            if this.poll_flush_tls(cx)?.is_pending() && this.session.unsent() >= MAX_UNSENT_BYTES {
                return Poll::Pending;
            }
        }
        this.session.queue_bytes(data)?;
        let _ = this.session.flush_now(this.fd())?;
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush_tls(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.closing {
            self.closing = true;
            self.session.send_close_notify();
        }
        self.poll_flush_tls(cx)
    }
}

/// Where the frame counter stands in the client's byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrameAt {
    /// In the 24-byte connection preface, `seen` bytes of it so far.
    Preface { seen: usize },
    /// In a 9-byte frame header, `seen` bytes of it (kept in `head`).
    Header { seen: usize },
    /// In a frame's payload, `remaining` bytes still to skip.
    Payload { remaining: usize },
}

/// HTTP/2 frame types the counter counts (RFC 9113 6).
const FRAME_RST_STREAM: u8 = 0x3;
const FRAME_SETTINGS: u8 = 0x4;
const FRAME_PING: u8 = 0x6;
const FRAME_CONTINUATION: u8 = 0x9;
/// The ACK flag of SETTINGS and PING.
const FLAG_ACK: u8 = 0x1;

/// Length of the client connection preface ("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").
const PREFACE_LEN: usize = 24;

/// Reads the frame headers in what the client sends (h2 parses the frames themselves; this
/// only skips payloads) and counts the frames h2 answers without limit.
#[derive(Debug)]
pub struct FrameCounter {
    at: FrameAt,
    head: [u8; 9],
}

impl Default for FrameCounter {
    fn default() -> Self {
        FrameCounter {
            at: FrameAt::Preface { seen: 0 },
            head: [0; 9],
        }
    }
}

impl FrameCounter {
    /// Moves over `bytes` (the next plaintext h2 gets), counting each complete frame header.
    pub fn see(&mut self, bytes: &[u8], floods: &Floods) {
        self.see_with(bytes, &mut |kind, flags| floods.frame(kind, flags));
    }

    /// `see`, handing each frame header's type and flags to `frame`.
    pub fn see_with(&mut self, mut bytes: &[u8], frame: &mut dyn FnMut(u8, u8)) {
        while !bytes.is_empty() {
            match self.at {
                FrameAt::Preface { seen } => {
                    let take = (PREFACE_LEN - seen).min(bytes.len());
                    bytes = &bytes[take..];
                    self.at = if seen + take == PREFACE_LEN {
                        FrameAt::Header { seen: 0 }
                    } else {
                        FrameAt::Preface { seen: seen + take }
                    };
                }
                FrameAt::Header { seen } => {
                    let take = (9 - seen).min(bytes.len());
                    self.head[seen..seen + take].copy_from_slice(&bytes[..take]);
                    bytes = &bytes[take..];
                    if seen + take < 9 {
                        self.at = FrameAt::Header { seen: seen + take };
                        continue;
                    }
                    let h = self.head;
                    let len = (h[0] as usize) << 16 | (h[1] as usize) << 8 | h[2] as usize;
                    frame(h[3], h[4]);
                    self.at = if len == 0 {
                        FrameAt::Header { seen: 0 }
                    } else {
                        FrameAt::Payload { remaining: len }
                    };
                }
                FrameAt::Payload { remaining } => {
                    let take = remaining.min(bytes.len());
                    bytes = &bytes[take..];
                    self.at = if take == remaining {
                        FrameAt::Header { seen: 0 }
                    } else {
                        FrameAt::Payload {
                            remaining: remaining - take,
                        }
                    };
                }
            }
        }
    }
}

/// Which counted kind a frame is, if any.
pub(super) fn counted_kind(kind: u8, flags: u8) -> Option<super::Flood> {
    match kind {
        FRAME_RST_STREAM => Some(super::Flood::Reset),
        FRAME_PING if flags & FLAG_ACK == 0 => Some(super::Flood::Ping),
        FRAME_SETTINGS if flags & FLAG_ACK == 0 => Some(super::Flood::Settings),
        FRAME_CONTINUATION => Some(super::Flood::Continuation),
        _ => None,
    }
}
