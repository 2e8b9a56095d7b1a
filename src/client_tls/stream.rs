//! A TLS client's connection: its socket and its session (`crate::tls`), read and written with
//! the same readiness waits and non-blocking syscalls as a plain client.

use std::cell::RefCell;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use bytes::BytesMut;
use monoio::io::AsyncWriteRent;
use monoio::net::TcpStream;
use rustls::ServerConnection;

use crate::client_stream::{Carried, ClientStream};
use crate::conn_io::{ByteStream, BytesVec, IoFailure, PeekState};
use crate::tls::TlsSession;

/// A TLS client's session.
pub type ServerSession = TlsSession<ServerConnection>;

/// A TLS client connection: the socket, and its session boxed (the connection's task holds
/// this for the connection's life; the session's buffers are rustls's own).
pub struct TlsClient {
    tcp: TcpStream,
    /// In a `RefCell` so that the steps the SSE pump makes while a readiness wait borrows the
    /// socket (`send_now`, `peek_state`) can use it; borrowed only within synchronous steps,
    /// never across an await.
    session: Box<RefCell<ServerSession>>,
}

impl TlsClient {
    /// A client whose handshake is done (`super::accept`).
    pub fn new(tcp: TcpStream, session: ServerSession) -> TlsClient {
        TlsClient {
            tcp,
            session: Box::new(RefCell::new(session)),
        }
    }

    /// The handshake resumed an earlier session (a ticket).
    pub fn resumed(&self) -> bool {
        self.session.borrow().resumed()
    }

    /// The socket and the session apart (the HTTP/2 connection drives them itself,
    /// `crate::client_h2::io`, and sends close_notify when it ends).
    pub fn into_parts(self) -> (TcpStream, ServerSession) {
        let me = std::mem::ManuallyDrop::new(self);
        // SAFETY: `me` is never dropped; each field is read out once.
        unsafe {
            let tcp = std::ptr::read(&me.tcp);
            let session = std::ptr::read(&me.session);
            (tcp, session.into_inner())
        }
    }

    /// Sends the session's close_notify (best effort, what the socket takes now): the end of
    /// what tether sends, before the socket closes.
    fn close_notify_now(&mut self) {
        let session = self.session.get_mut();
        session.send_close_notify();
        let _ = session.flush_now(self.tcp.as_raw_fd());
    }
}

impl Drop for TlsClient {
    /// A connection tether closes ends with close_notify, so the client can tell a complete
    /// close-delimited response from a cut one.
    fn drop(&mut self) {
        self.close_notify_now();
    }
}

impl ByteStream for TlsClient {
    /// Readiness then read steps; dropping it loses `buf` but no byte of the stream (the
    /// caller's buffer rule is `conn_io::read_more`'s: close the connection).
    async fn read_more(&mut self, buf: BytesMut, reserve: usize) -> (io::Result<usize>, BytesMut) {
        let mut buf = buf;
        buf.reserve(reserve);
        let fd = self.tcp.as_raw_fd();
        loop {
            match self.session.get_mut().read_now(fd, &mut buf) {
                Ok(Some(n)) => return (Ok(n), buf),
                Ok(None) => {}
                Err(e) => return (Err(e), buf),
            }
            if let Err(e) = self.tcp.readable(false).await {
                return (Err(e), buf);
            }
        }
    }

    /// The pieces are encrypted at once, then sent as the socket takes them; `limit` bounds
    /// each wait for writability. On failure the connection must be closed.
    async fn write_vec(
        &mut self,
        mut out: BytesVec,
        limit: Duration,
    ) -> Result<BytesVec, IoFailure> {
        let fd = self.tcp.as_raw_fd();
        let session = self.session.get_mut();
        session.queue(&mut out)?;
        while !session.flush_now(fd)? {
            match monoio::time::timeout(limit, self.tcp.writable(false)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(IoFailure::Io(e)),
                Err(_) => return Err(IoFailure::TimedOut),
            }
        }
        Ok(out)
    }
}

impl ClientStream for TlsClient {
    const TLS: bool = true;

    /// The session goes with the descriptor (no close_notify: the connection goes on there).
    fn into_hand_off(self) -> io::Result<(std::os::fd::OwnedFd, Carried)> {
        let (tcp, session) = self.into_parts();
        let fd = crate::client_stream::duplicate(tcp.as_raw_fd())?;
        Ok((fd, Carried::Tls(Box::new(session))))
    }

    fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    fn read_now(&mut self, buf: &mut BytesMut, reserve: usize) -> io::Result<Option<usize>> {
        buf.reserve(reserve);
        self.session.get_mut().read_now(self.tcp.as_raw_fd(), buf)
    }

    fn send_now(&self, out: &mut BytesVec) -> io::Result<usize> {
        self.session
            .borrow_mut()
            .send_now(self.tcp.as_raw_fd(), out)
    }

    fn unsent(&self) -> usize {
        self.session.borrow().unsent()
    }

    fn peek_state(&self) -> PeekState {
        self.session.borrow_mut().peek_state(self.tcp.as_raw_fd())
    }

    async fn close_write(&mut self) -> io::Result<()> {
        self.close_notify_now();
        self.tcp.shutdown().await
    }

    fn tunnel_parts(&mut self) -> (&TcpStream, Option<&mut ServerSession>) {
        (&self.tcp, Some(self.session.get_mut()))
    }
}
