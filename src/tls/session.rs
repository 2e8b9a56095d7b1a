//! One TLS connection's session, driven by non-blocking syscalls in the wake-up that found the
//! socket ready (see the module doc of `super`), and the handshake loop both sides share.

use std::io::{self, BufRead, IoSlice, Write};
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsRawFd, RawFd};

use bytes::BytesMut;
use monoio::net::TcpStream;
use rustls::{ClientConnection, ConnectionCommon, ServerConnection};

use crate::conn_io::{peek_state, recv_now, BytesVec, PeekState};

/// Largest single `recv` of ciphertext, in bytes (the worker's scratch buffer, shared by all its
/// TLS connections): as the SSE pump's plain reads (MAX_SSE_READ), one wake-up of one stream
/// handles at most this much.
pub const TLS_READ_BYTES: usize = 32 * 1024;

/// Largest `recv` of a peek step (`TlsSession::peek_state`), in bytes: what it decrypts stays in
/// rustls, whose received-plaintext buffer takes 16 KiB; half that never overflows it.
const PEEK_READ_BYTES: usize = 8 * 1024;

/// Most TLS records rustls hands `write_tls` at once (its `ChunkVecBuffer::write_to` passes at
/// most 64 slices): past this many held records, `unsent` counts only these.
const RECORDS_PER_WRITE: usize = 64;

thread_local! {
    /// The worker's ciphertext buffer: filled and emptied within one read step, never held
    /// across an await.
    static SCRATCH: std::cell::RefCell<Box<[std::mem::MaybeUninit<u8>]>> =
        std::cell::RefCell::new(vec![std::mem::MaybeUninit::uninit(); TLS_READ_BYTES].into_boxed_slice());
}

/// A rustls connection of either side: what `TlsSession` drives (`ClientConnection` towards
/// https upstreams, `ServerConnection` towards TLS clients). Both deref to the same
/// `ConnectionCommon`, whose methods are all the session uses.
pub trait TlsSide: DerefMut<Target = ConnectionCommon<Self::Data>> {
    /// rustls's side-specific state.
    type Data;
}

impl TlsSide for ClientConnection {
    type Data = rustls::client::ClientConnectionData;
}

impl TlsSide for ServerConnection {
    type Data = rustls::server::ServerConnectionData;
}

/// One connection's TLS state (boxed beside its socket: a plain connection carries none of it).
pub struct TlsSession<S: TlsSide> {
    conn: S,
    /// The peer's close_notify came: no more plaintext will.
    closed: bool,
    /// Ciphertext rustls still holds for the socket, in bytes, as measured by the last
    /// `flush_now` (exact while rustls holds at most RECORDS_PER_WRITE records, a lower bound
    /// past that): what callers count as queued for the peer besides their own queue.
    unsent: usize,
}

impl<S: TlsSide> TlsSession<S> {
    /// A session over `conn`; nothing is sent until the handshake.
    pub fn new(mut conn: S) -> TlsSession<S> {
        // A write takes everything it is given (bounded by its caller: one read of a body, a
        // batch of events under the queue's high-water mark); the ciphertext waits in rustls
        // until the socket takes it, and counts as queued (`unsent`).
        conn.set_buffer_limit(None);
        TlsSession {
            conn,
            closed: false,
            unsent: 0,
        }
    }

    /// The peer sent close_notify: once the plaintext before it is taken, the stream ended.
    pub fn peer_closed(&self) -> bool {
        self.closed
    }

    /// The handshake resumed an earlier session (no certificate chain was sent).
    pub fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }

    /// Version and cipher suite agreed, for the debug log.
    pub fn describe(&self) -> String {
        format!(
            "{:?}, {:?}",
            self.conn.protocol_version(),
            self.conn.negotiated_cipher_suite().map(|s| s.suite())
        )
    }

    /// One read step (see the module doc): appends the plaintext that the socket's ciphertext
    /// (read once, without waiting) decrypts to, to `buf`. Ok(Some(n)): n bytes appended, 0 at
    /// the end of the stream (close_notify, or the socket's end); Ok(None): nothing yet, wait
    /// for readability. Synchronous: cancel-safe.
    pub fn read_now(&mut self, fd: RawFd, buf: &mut BytesMut) -> io::Result<Option<usize>> {
        let before = buf.len();
        self.take_plaintext(buf)?;
        if buf.len() > before {
            return Ok(Some(buf.len() - before));
        }
        if self.closed {
            return Ok(Some(0));
        }
        let Some(eof) = self.feed(fd, Some(buf), TLS_READ_BYTES)? else {
            return Ok(None);
        };
        // Alerts, key update answers: best effort, the next write or read step goes on.
        let _ = self.flush_now(fd);
        let got = buf.len() - before;
        if got > 0 {
            Ok(Some(got))
        } else if eof || self.closed {
            Ok(Some(0))
        } else {
            Ok(None)
        }
    }

    /// Reads the socket once (at most `max` bytes) and hands the ciphertext to rustls, record
    /// by record, taking the plaintext out between records when `buf` is given (rustls holds
    /// at most 16 KiB of it). Ok(None): the socket had nothing; Ok(Some(eof)): it had bytes, or
    /// its end (true).
    fn feed(
        &mut self,
        fd: RawFd,
        mut buf: Option<&mut BytesMut>,
        max: usize,
    ) -> io::Result<Option<bool>> {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let max = max.min(scratch.len());
            let Some(n) = recv_now(fd, &mut scratch[..max])? else {
                return Ok(None);
            };
            // SAFETY: recv initialised the first `n` bytes.
            let mut rest = unsafe { std::slice::from_raw_parts(scratch.as_ptr().cast::<u8>(), n) };
            if n == 0 {
                // Tells rustls the transport ended (a close_notify it may still hold counts).
                self.conn.read_tls(&mut rest)?;
                self.process(buf)?;
                return Ok(Some(true));
            }
            while !rest.is_empty() && !self.closed {
                self.conn.read_tls(&mut rest)?;
                self.process(buf.as_deref_mut())?;
            }
            Ok(Some(false))
        })
    }

    /// Decrypts what rustls holds, and takes the plaintext into `buf` when given.
    fn process(&mut self, buf: Option<&mut BytesMut>) -> io::Result<()> {
        let state = match self.conn.process_new_packets() {
            Ok(state) => state,
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        };
        if state.peer_has_closed() {
            self.closed = true;
        }
        if let Some(buf) = buf {
            buf.reserve(state.plaintext_bytes_to_read());
            self.take_plaintext(buf)?;
        }
        Ok(())
    }

    /// Moves the plaintext rustls holds to the end of `buf`.
    fn take_plaintext(&mut self, buf: &mut BytesMut) -> io::Result<()> {
        let mut reader = self.conn.reader();
        loop {
            let n = match reader.fill_buf() {
                Ok([]) => return Ok(()),
                Ok(chunk) => {
                    buf.extend_from_slice(chunk);
                    chunk.len()
                }
                // Nothing decrypted yet, or the transport ended without close_notify after the
                // last of it (the HTTP framing says whether the message was whole).
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::UnexpectedEof
                    ) =>
                {
                    return Ok(())
                }
                Err(e) => return Err(e),
            };
            reader.consume(n);
        }
    }

    /// Whether rustls holds plaintext nobody has taken (only after `peek_state`).
    fn holds_plaintext(&mut self) -> bool {
        matches!(self.conn.reader().fill_buf(), Ok(chunk) if !chunk.is_empty())
    }

    /// What a peer nobody reads right now has done (a client watched during a stream): as
    /// `conn_io::peek_state`, but through TLS: ciphertext that only carries TLS's own records
    /// (a key update) is Quiet, a close_notify is Closed, and application data (a pipelined
    /// request) is HasData, its plaintext left in rustls for the connection's next read step.
    /// Synchronous: cancel-safe.
    pub fn peek_state(&mut self, fd: RawFd) -> PeekState {
        if self.closed {
            return PeekState::Closed;
        }
        if self.holds_plaintext() {
            return PeekState::HasData;
        }
        match peek_state(fd) {
            PeekState::HasData => {}
            other => return other,
        }
        match self.feed(fd, None, PEEK_READ_BYTES) {
            Ok(Some(true)) | Err(_) => return PeekState::Closed,
            Ok(_) => {}
        }
        let _ = self.flush_now(fd);
        if self.holds_plaintext() {
            PeekState::HasData
        } else if self.closed {
            PeekState::Closed
        } else {
            PeekState::Quiet
        }
    }

    /// Encrypts everything `out` holds (one logical write: records of up to 16 KiB, not one per
    /// piece) into rustls's send buffer and empties `out`; `flush_now` sends it. Err: rustls
    /// did not take it all (the session is closing): the connection must be closed.
    pub fn queue(&mut self, out: &mut BytesVec) -> io::Result<()> {
        let slices: Vec<IoSlice<'_>> = out.parts().iter().map(|p| IoSlice::new(p)).collect();
        // No buffer limit (set in `new`): rustls takes it all while the session is open.
        let taken = match slices.is_empty() {
            true => 0,
            false => self.conn.writer().write_vectored(&slices)?,
        };
        let whole = taken == out.remaining();
        out.clear();
        match whole {
            true => Ok(()),
            false => Err(io::ErrorKind::WriteZero.into()),
        }
    }

    /// Encrypts `bytes` into rustls's send buffer (see `queue`).
    pub fn queue_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self.conn.writer().write(bytes)? == bytes.len() {
            true => Ok(()),
            false => Err(io::ErrorKind::WriteZero.into()),
        }
    }

    /// Sends what rustls holds, as far as the socket takes it now. Ok(true): all sent;
    /// Ok(false): the socket is full (wait for writability); `unsent` says what is left.
    pub fn flush_now(&mut self, fd: RawFd) -> io::Result<bool> {
        self.flush_counted(fd).map(|(all, _)| all)
    }

    /// `flush_now`, also saying how many bytes the socket took.
    fn flush_counted(&mut self, fd: RawFd) -> io::Result<(bool, usize)> {
        let mut socket = SocketWriter { fd, offered: 0 };
        let mut sent = 0;
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.unsent = socket.offered.max(1);
                    return Ok((false, sent));
                }
                Err(e) => return Err(e),
            }
        }
        self.unsent = 0;
        Ok((true, sent))
    }

    /// Encrypts what `out` holds (emptying it) and sends what rustls holds as far as the socket
    /// takes it now: the bytes the socket took (0: it is full; wait for writability). What is
    /// left is `unsent`. Synchronous: cancel-safe.
    pub fn send_now(&mut self, fd: RawFd, out: &mut BytesVec) -> io::Result<usize> {
        if !out.is_empty() {
            self.queue(out)?;
        }
        self.flush_counted(fd).map(|(_, sent)| sent)
    }

    /// Ciphertext rustls holds for the socket, in bytes (see the field).
    pub fn unsent(&self) -> usize {
        self.unsent
    }

    /// Ciphertext waits in rustls for the socket.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Queues the close_notify alert (sent by the next `flush_now`): the end of what this side
    /// sends, as a TCP half-close is for plain connections.
    pub fn send_close_notify(&mut self) {
        self.conn.send_close_notify();
    }

    /// For a pooled connection whose socket has bytes nobody asked for: reads them. True when
    /// they were only TLS's own (session tickets, a key update) and the connection is usable.
    pub fn absorb_idle(&mut self, fd: RawFd) -> bool {
        let mut buf = BytesMut::new();
        matches!(self.read_now(fd, &mut buf), Ok(None)) && buf.is_empty()
    }
}

impl<S: TlsSide> Deref for TlsSession<S> {
    type Target = S;

    fn deref(&self) -> &S {
        &self.conn
    }
}

/// How a handshake loop stopped short.
#[derive(Debug)]
pub enum HandshakeStop {
    /// The peer closed the connection before the handshake was done.
    Closed,
    /// rustls refused the peer's messages (the error rides inside), or the socket failed.
    Io(io::Error),
}

/// Drives `session`'s handshake over `tcp` to its end: flush, wait writable if the socket is
/// full; done when rustls stops handshaking; else a read step without taking plaintext (what
/// comes with the peer's last flight stays in rustls for the first read); nothing there: wait
/// readable. Unbounded: the caller bounds it (a timeout around it). Cancel-safe (readiness
/// waits only); a dropped handshake leaves a socket nobody may use.
pub(crate) async fn drive_handshake<S: TlsSide>(
    tcp: &TcpStream,
    session: &mut TlsSession<S>,
) -> Result<(), HandshakeStop> {
    let fd = tcp.as_raw_fd();
    loop {
        if !session.flush_now(fd).map_err(HandshakeStop::Io)? {
            tcp.writable(false).await.map_err(HandshakeStop::Io)?;
            continue;
        }
        if !session.conn.is_handshaking() {
            return Ok(());
        }
        // PEEK_READ_BYTES, not TLS_READ_BYTES: a client may send its Finished and application
        // data in one flight (an HTTP/2 client its preface and frames at once); what follows
        // the handshake in the read stays in rustls, whose received-plaintext buffer refuses
        // more than 16 KiB (the handshake then failed with "received plaintext buffer full").
        match session
            .feed(fd, None, PEEK_READ_BYTES)
            .map_err(HandshakeStop::Io)?
        {
            Some(true) => return Err(HandshakeStop::Closed),
            Some(false) => {}
            None => tcp.readable(false).await.map_err(HandshakeStop::Io)?,
        }
    }
}

/// `write_tls`'s destination: the socket, written with non-blocking `sendmsg` (a full socket is
/// `WouldBlock`). Notes how many bytes rustls offered, so that what the socket refused is known.
struct SocketWriter {
    fd: RawFd,
    /// Bytes rustls offered in the last call (up to RECORDS_PER_WRITE records), less what was
    /// written of them since.
    offered: usize,
}

impl Write for SocketWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        debug_assert!(bufs.len() <= RECORDS_PER_WRITE.max(1024));
        self.offered = bufs.iter().map(|b| b.len()).sum();
        loop {
            // SAFETY: a zeroed msghdr is valid (no name, no control data); IoSlice is ABI
            // compatible with iovec on Unix, and the slices outlive the call.
            let n = unsafe {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
                msg.msg_iovlen = bufs.len().min(1024) as _;
                libc::sendmsg(self.fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
