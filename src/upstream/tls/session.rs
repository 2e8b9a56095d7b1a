//! One upstream connection's TLS session, driven by non-blocking syscalls in the wake-up that
//! found the socket ready (see the module doc of `super`), and the handshake.

use std::io::{self, BufRead, IoSlice, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use monoio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use super::failure::{TlsFailure, TlsFailureClass};
use crate::conn_io::{recv_now, BytesVec};

/// Largest single `recv` of ciphertext, in bytes (the worker's scratch buffer, shared by all its
/// TLS connections): as the SSE pump's plain reads (MAX_SSE_READ), one wake-up of one stream
/// handles at most this much.
pub const TLS_READ_BYTES: usize = 32 * 1024;

thread_local! {
    /// The worker's ciphertext buffer: filled and emptied within one read step, never held
    /// across an await.
    static SCRATCH: std::cell::RefCell<Box<[std::mem::MaybeUninit<u8>]>> =
        std::cell::RefCell::new(vec![std::mem::MaybeUninit::uninit(); TLS_READ_BYTES].into_boxed_slice());
}

/// One upstream connection's TLS state (boxed beside its socket: a plain connection carries a
/// null pointer, not this).
pub struct TlsSession {
    conn: ClientConnection,
    /// The server's close_notify came: no more plaintext will.
    closed: bool,
}

impl TlsSession {
    /// A client session for `name`; nothing is sent until `handshake`.
    fn new(
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<TlsSession, rustls::Error> {
        let mut conn = ClientConnection::new(config, name)?;
        // A write takes everything it is given (bounded by its caller: one read of a body,
        // one request head); the ciphertext waits in rustls until the socket takes it.
        conn.set_buffer_limit(None);
        Ok(TlsSession {
            conn,
            closed: false,
        })
    }

    /// The server sent close_notify: once the plaintext before it is taken, the stream ended.
    pub fn peer_closed(&self) -> bool {
        self.closed
    }

    /// The handshake resumed an earlier session (no certificate chain was sent).
    pub fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }

    /// ALPN and version agreed, for the debug log.
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
        let Some(eof) = self.feed(fd, Some(buf))? else {
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

    /// Reads the socket once and hands the ciphertext to rustls, record by record, taking the
    /// plaintext out between records when `buf` is given (rustls holds at most 16 KiB of it).
    /// Ok(None): the socket had nothing; Ok(Some(eof)): it had bytes, or its end (true).
    fn feed(&mut self, fd: RawFd, mut buf: Option<&mut BytesMut>) -> io::Result<Option<bool>> {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let Some(n) = recv_now(fd, &mut scratch[..])? else {
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
    /// Ok(false): the socket is full (wait for writability).
    pub fn flush_now(&mut self, fd: RawFd) -> io::Result<bool> {
        let mut socket = SocketWriter(fd);
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
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

/// `write_tls`'s destination: the socket, written with non-blocking `send`/`sendmsg` (a full
/// socket is `WouldBlock`).
struct SocketWriter(RawFd);

impl Write for SocketWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        loop {
            // SAFETY: a zeroed msghdr is valid (no name, no control data); IoSlice is ABI
            // compatible with iovec on Unix, and the slices outlive the call.
            let n = unsafe {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
                msg.msg_iovlen = bufs.len().min(1024) as _;
                libc::sendmsg(self.0, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
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

/// Makes a TLS session over `tcp` (connected) with `host`'s name (the URL's host: SNI for a
/// name, none for an IP), within `limit`. Cancel-safe (readiness waits only); a dropped
/// handshake leaves a socket nobody may use.
pub(crate) async fn handshake(
    tcp: &TcpStream,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    limit: Duration,
) -> Result<TlsSession, TlsFailure> {
    let host = name.to_str().into_owned();
    let mut session = TlsSession::new(config, name).map_err(|e| TlsFailure::of(&e, &host))?;
    match monoio::time::timeout(limit, drive_handshake(tcp, &mut session, &host)).await {
        Ok(Ok(())) => Ok(session),
        Ok(Err(failure)) => {
            // The alert rustls queued tells the server why.
            let _ = session.flush_now(tcp.as_raw_fd());
            Err(failure)
        }
        Err(_) => Err(TlsFailure::new(
            TlsFailureClass::Timeout,
            format!(
                "handshake with {host:?} not done within the connect timeout ({} ms)",
                limit.as_millis()
            ),
        )),
    }
}

async fn drive_handshake(
    tcp: &TcpStream,
    session: &mut TlsSession,
    host: &str,
) -> Result<(), TlsFailure> {
    let fd = tcp.as_raw_fd();
    let io = |e: io::Error| TlsFailure::of_io(e, host);
    loop {
        if !session.flush_now(fd).map_err(io)? {
            tcp.writable(false).await.map_err(io)?;
            continue;
        }
        if !session.conn.is_handshaking() {
            return Ok(());
        }
        // Plaintext that comes with the server's last flight stays in rustls for the first read.
        match session.feed(fd, None).map_err(io)? {
            Some(true) => {
                return Err(TlsFailure::new(
                    TlsFailureClass::Closed,
                    format!("{host:?} closed the connection during the handshake"),
                ))
            }
            Some(false) => {}
            None => tcp.readable(false).await.map_err(io)?,
        }
    }
}
