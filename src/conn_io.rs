//! Socket IO helpers over monoio's owned-buffer API, with their cancellation contracts spelled out.
//!
//! monoio on io_uring hands the buffer to the kernel: dropping a future that owns an in-flight read
//! loses whatever the kernel already put there (see notes on monoio). The rule this crate follows:
//! a read or write future is either awaited to completion, or the socket it reads is closed right
//! after (never reused, never pooled). Each function below says which it needs.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::buf::{IoBufMut, IoVecBuf};
use monoio::io::{AsyncReadRent, AsyncWriteRent};
use monoio::net::TcpStream;

use crate::timers::TimerSlot;

/// Why a bounded IO step did not complete.
#[derive(Debug)]
pub enum IoFailure {
    /// The deadline passed first; the socket must be closed (its op was dropped mid-flight).
    TimedOut,
    /// The peer closed or reset the connection, or the socket failed.
    Io(io::Error),
}

impl From<io::Error> for IoFailure {
    fn from(e: io::Error) -> Self {
        IoFailure::Io(e)
    }
}

/// A connection the exchange reads and writes with owned buffers: a client's `TcpStream`, or an
/// upstream (`crate::upstream::stream::UpstreamStream`, plain or TLS). Each method's contract is
/// that of the free function of the same name below.
pub trait ByteStream {
    /// See [`read_more`].
    fn read_more(
        &mut self,
        buf: BytesMut,
        reserve: usize,
    ) -> impl std::future::Future<Output = (io::Result<usize>, BytesMut)>;

    /// See [`write_vec_within`].
    fn write_vec(
        &mut self,
        out: BytesVec,
        limit: Duration,
    ) -> impl std::future::Future<Output = Result<BytesVec, IoFailure>>;

    /// `write_vec` with each pass bounded through the connection's `timer`
    /// (`TimerSlot::within`) instead of a monoio timer of its own: what the request path uses.
    /// Streams whose passes wait in other ways (TLS, HTTP/2) keep `write_vec`'s own bound.
    fn write_vec_timed(
        &mut self,
        out: BytesVec,
        limit: Duration,
        timer: &mut TimerSlot,
    ) -> impl std::future::Future<Output = Result<BytesVec, IoFailure>> {
        let _ = timer;
        self.write_vec(out, limit)
    }
}

impl ByteStream for TcpStream {
    fn read_more(
        &mut self,
        buf: BytesMut,
        reserve: usize,
    ) -> impl std::future::Future<Output = (io::Result<usize>, BytesMut)> {
        read_more_tcp(self, buf, reserve)
    }

    fn write_vec(
        &mut self,
        out: BytesVec,
        limit: Duration,
    ) -> impl std::future::Future<Output = Result<BytesVec, IoFailure>> {
        write_vec_tcp(self, out, limit)
    }

    fn write_vec_timed(
        &mut self,
        out: BytesVec,
        limit: Duration,
        timer: &mut TimerSlot,
    ) -> impl std::future::Future<Output = Result<BytesVec, IoFailure>> {
        write_vec_tcp_timed(self, out, limit, timer)
    }
}

/// Appends what one read returns to the end of `buf` (monoio's `read` would write at offset 0),
/// reserving at least `reserve` free bytes first. Returns 0 at end of stream.
///
/// Not cancel-safe: if the future is dropped before completion (timeout, select), bytes may be lost,
/// so the caller must close the socket.
pub fn read_more<S: ByteStream>(
    stream: &mut S,
    buf: BytesMut,
    reserve: usize,
) -> impl std::future::Future<Output = (io::Result<usize>, BytesMut)> + '_ {
    stream.read_more(buf, reserve)
}

/// `read_more` on a plain socket: one read op through the runtime.
pub async fn read_more_tcp(
    stream: &mut TcpStream,
    mut buf: BytesMut,
    reserve: usize,
) -> (io::Result<usize>, BytesMut) {
    buf.reserve(reserve);
    let len = buf.len();
    let cap = buf.capacity();
    let (res, slice) = stream.read(buf.slice_mut(len..cap)).await;
    (res, slice.into_inner())
}

/// Reads what the socket holds right now into `buf` (after reserving `reserve` bytes), without
/// the runtime: one non-blocking `recv`. Ok(None): nothing there yet (EAGAIN). For bytes that are
/// very likely waiting already (a new connection's first request), this saves the loop cycle a
/// read op would wait for its completion; under load that cycle is what a newcomer waits for.
pub fn read_now(fd: RawFd, buf: &mut BytesMut, reserve: usize) -> io::Result<Option<usize>> {
    buf.reserve(reserve);
    let n = recv_now(fd, buf.spare_capacity_mut())?;
    if let Some(n) = n {
        // SAFETY: the kernel initialised the first `n` bytes of the spare capacity.
        unsafe { buf.set_len(buf.len() + n) };
    }
    Ok(n)
}

/// One non-blocking `recv` into `dst`: Ok(None) when nothing is there (EAGAIN, or a signal),
/// Ok(Some(0)) at the peer's end. The one place tether reads a socket without the runtime.
pub fn recv_now(fd: RawFd, dst: &mut [std::mem::MaybeUninit<u8>]) -> io::Result<Option<usize>> {
    // SAFETY: recv writes at most `dst.len()` bytes into `dst`.
    let n = unsafe {
        libc::recv(
            fd,
            dst.as_mut_ptr() as *mut libc::c_void,
            dst.len(),
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
    Ok(Some(n as usize))
}

/// `read_more` bounded by `limit`. On `TimedOut` the buffer is gone with the dropped op and the
/// socket must be closed. Not cancel-safe (as `read_more`).
pub async fn read_more_within(
    stream: &mut impl ByteStream,
    buf: BytesMut,
    reserve: usize,
    limit: Duration,
) -> Result<(usize, BytesMut), IoFailure> {
    match monoio::time::timeout(limit, read_more(stream, buf, reserve)).await {
        Ok((Ok(n), buf)) => Ok((n, buf)),
        Ok((Err(e), _)) => Err(IoFailure::Io(e)),
        Err(_) => Err(IoFailure::TimedOut),
    }
}

/// `read_more_within` bounded through the connection's `timer` (`TimerSlot::within`) rather
/// than a monoio timer of its own. Same contract: on `TimedOut` the socket must be closed.
pub async fn read_more_timed(
    stream: &mut impl ByteStream,
    buf: BytesMut,
    reserve: usize,
    limit: Duration,
    timer: &mut TimerSlot,
) -> Result<(usize, BytesMut), IoFailure> {
    match timer.within(limit, read_more(stream, buf, reserve)).await {
        Ok((Ok(n), buf)) => Ok((n, buf)),
        Ok((Err(e), _)) => Err(IoFailure::Io(e)),
        Err(_) => Err(IoFailure::TimedOut),
    }
}

/// A list of `Bytes` written with one `writev`: the pieces of a response (a chunk-size line, a body
/// slice, its CRLF, the next event...) leave in one syscall without being copied together.
/// monoio ships `IoVecBuf` only for its own vec types; this holds the `Bytes` alive while the
/// kernel reads them through the iovecs.
#[derive(Default)]
pub struct BytesVec {
    parts: Vec<Bytes>,
    iovecs: Vec<libc::iovec>,
    /// Index of the first part not yet fully written.
    first: usize,
    /// Total bytes not yet written.
    remaining: usize,
}

/// At most this many iovecs per writev (Linux IOV_MAX is 1024); the rest go in the next call.
const MAX_IOVECS_PER_WRITE: usize = 512;

impl BytesVec {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `b` (empty slices are skipped).
    pub fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.remaining += b.len();
            self.parts.push(b);
        }
    }

    /// Queues a static slice (framing such as CRLF) without allocating.
    pub fn push_static(&mut self, b: &'static [u8]) {
        self.push(Bytes::from_static(b));
    }

    /// Parts this list holds room for without growing.
    pub fn part_capacity(&self) -> usize {
        self.parts.capacity()
    }

    pub fn remaining(&self) -> usize {
        self.remaining
    }

    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }

    /// Moves everything queued in `other` to the end of this one.
    pub fn append(&mut self, other: &mut BytesVec) {
        for part in other.parts.drain(other.first..) {
            self.push(part);
        }
        other.clear();
    }

    /// Forgets everything (keeps the allocations).
    pub fn clear(&mut self) {
        self.parts.clear();
        self.iovecs.clear();
        self.first = 0;
        self.remaining = 0;
    }

    /// The unwritten parts, in order (a TLS write encrypts them as one).
    pub fn parts(&self) -> &[Bytes] {
        &self.parts[self.first..]
    }

    /// Rebuilds the iovecs for the unwritten parts, just before a writev.
    pub fn prepare(&mut self) {
        self.iovecs.clear();
        for part in self.parts[self.first..].iter().take(MAX_IOVECS_PER_WRITE) {
            self.iovecs.push(libc::iovec {
                iov_base: part.as_ptr() as *mut libc::c_void,
                iov_len: part.len(),
            });
        }
    }

    /// The unwritten bytes in one buffer (tests compare what would go on the wire).
    #[cfg(test)]
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        self.parts[self.first..]
            .iter()
            .flat_map(|p| p.iter().copied())
            .collect()
    }

    /// Marks `n` bytes as written, dropping finished parts from the front.
    pub fn advance(&mut self, mut n: usize) {
        debug_assert!(n <= self.remaining);
        self.remaining -= n;
        while n > 0 {
            let part = &mut self.parts[self.first];
            if n >= part.len() {
                n -= part.len();
                self.first += 1;
            } else {
                let _ = part.split_to(n);
                n = 0;
            }
        }
        if self.remaining == 0 {
            self.parts.clear();
            self.first = 0;
        }
    }

    /// Sends what the socket takes right now: one non-blocking `sendmsg` of the unwritten parts
    /// (at most SEND_NOW_IOVECS), without the runtime. Returns the bytes sent, 0 when the
    /// socket's buffer is full (EAGAIN: wait for writability). No future owns the parts, so
    /// nothing is lost to cancellation, and a write costs one syscall in the wake-up that
    /// queued it instead of a submission and a completion a loop cycle later.
    pub fn send_now(&mut self, fd: RawFd) -> io::Result<usize> {
        // Left uninitialised past `count`: zeroing all SEND_NOW_IOVECS (2 KiB) cost more than
        // the rest of the send's user-space work for the usual few parts (callgrind: ~125
        // instructions per event in memset).
        let mut iov = [const { std::mem::MaybeUninit::<libc::iovec>::uninit() }; SEND_NOW_IOVECS];
        let mut count = 0;
        for (slot, part) in iov.iter_mut().zip(&self.parts[self.first..]) {
            slot.write(libc::iovec {
                iov_base: part.as_ptr() as *mut libc::c_void,
                iov_len: part.len(),
            });
            count += 1;
        }
        if count == 0 {
            return Ok(0);
        }
        // SAFETY: a zeroed msghdr is valid (no name, no control data); the first `count`
        // iovecs are initialised (above) and point into `parts`, alive and unmoved for the
        // duration of the call; the kernel reads no further than `msg_iovlen`.
        let n = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = iov.as_mut_ptr().cast::<libc::iovec>();
            msg.msg_iovlen = count as _;
            libc::sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        self.advance(n as usize);
        Ok(n as usize)
    }
}

/// Iovecs per `send_now` (on the stack): a batch of blocks, chunk lines and CRLFs of one wake-up
/// fits many times over; the rest goes in the next call.
const SEND_NOW_IOVECS: usize = 128;

// SAFETY: the iovecs point into `parts`, whose `Bytes` are neither dropped nor moved (a `Bytes`
// is a pointer to shared storage; moving the handle does not move the bytes) while monoio owns the
// `BytesVec` during a writev, and `prepare` rebuilt them for exactly the parts still held.
unsafe impl IoVecBuf for BytesVec {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iovecs.as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        self.iovecs.len()
    }
}

/// Writes everything queued in `out`, bounded by `limit` per pass without progress. Returns the
/// (emptied) `BytesVec` for reuse. On failure the socket must be closed. Not cancel-safe.
pub fn write_vec_within<S: ByteStream>(
    stream: &mut S,
    out: BytesVec,
    limit: Duration,
) -> impl std::future::Future<Output = Result<BytesVec, IoFailure>> + '_ {
    stream.write_vec(out, limit)
}

/// `write_vec_within` on a plain socket: one writev per pass.
pub async fn write_vec_tcp(
    stream: &mut TcpStream,
    mut out: BytesVec,
    limit: Duration,
) -> Result<BytesVec, IoFailure> {
    // Through the runtime, not a direct sendmsg first: on io_uring the writev joins the other
    // submissions of the loop cycle, and keep-alive HTTP measured 5-6% fewer requests per
    // second with a direct send in front (3 A/B pairs, scripts/bench.sh --only 4). The SSE pump,
    // where an event's latency is the point, sends directly (BytesVec::send_now).
    while !out.is_empty() {
        out.prepare();
        match monoio::time::timeout(limit, stream.writev(out)).await {
            Ok((res, back)) => out = after_pass(res, back)?,
            Err(_) => return Err(IoFailure::TimedOut),
        }
    }
    out.clear();
    Ok(out)
}

/// `write_vec_tcp` with each pass bounded through the connection's `timer`.
pub async fn write_vec_tcp_timed(
    stream: &mut TcpStream,
    mut out: BytesVec,
    limit: Duration,
    timer: &mut TimerSlot,
) -> Result<BytesVec, IoFailure> {
    while !out.is_empty() {
        out.prepare();
        match timer.within(limit, stream.writev(out)).await {
            Ok((res, back)) => out = after_pass(res, back)?,
            Err(_) => return Err(IoFailure::TimedOut),
        }
    }
    out.clear();
    Ok(out)
}

/// The list after one writev pass took `res` bytes of it.
fn after_pass(res: io::Result<usize>, mut out: BytesVec) -> Result<BytesVec, IoFailure> {
    match res {
        Ok(0) => Err(IoFailure::Io(io::Error::from(io::ErrorKind::WriteZero))),
        Ok(n) => {
            out.advance(n);
            Ok(out)
        }
        Err(e) => Err(IoFailure::Io(e)),
    }
}

/// What a non-blocking one-byte peek says about a socket nobody is reading.
#[derive(Debug, PartialEq, Eq)]
pub enum PeekState {
    /// Nothing to read and the peer has not closed: usable.
    Quiet,
    /// The peer sent bytes we did not ask for (a pooled upstream must not do that).
    HasData,
    /// The peer closed (FIN) or the socket failed (RST...).
    Closed,
}

/// Peeks at `fd` with `recv(MSG_PEEK | MSG_DONTWAIT)`: does not touch the ring, consumes nothing,
/// never blocks. Cancel-safe (synchronous).
pub fn peek_state(fd: RawFd) -> PeekState {
    let mut byte = 0u8;
    // SAFETY: `byte` is a valid 1-byte buffer for the duration of the call; MSG_PEEK leaves the
    // socket's data in place and MSG_DONTWAIT makes the call return at once.
    let n = unsafe {
        libc::recv(
            fd,
            (&mut byte as *mut u8).cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    match n {
        0 => PeekState::Closed,
        n if n > 0 => PeekState::HasData,
        _ => match io::Error::last_os_error().kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => PeekState::Quiet,
            _ => PeekState::Closed,
        },
    }
}

/// `shutdown(2)` both directions of a socket owned by some task, so that its pending reads end
/// (return 0) and its writes fail: the way the drain ends connections without touching their
/// tasks' futures. Errors (already closed) are ignored.
pub fn shutdown_fd(fd: RawFd) {
    // SAFETY: shutdown only changes socket state; a stale or closed fd yields EBADF/ENOTCONN,
    // which is ignored.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// Sets SO_LINGER 0 so that closing sends RST: used when a connection is abandoned mid-message.
pub fn set_linger_zero(stream: &impl AsRawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `linger` is a valid `struct linger` for the call's duration.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}
