//! An upstream connection's socket, and its TLS session when the replica is `https://`.
//!
//! A plain connection is the `TcpStream` itself: every read and write takes today's path after
//! one branch on the variant, and the type is the size of the socket (the TLS variant's box
//! takes the socket's niche); an `Option` of it is one word more, which every SSE stream's
//! relay future holds (`a_relay_stays_small`). A TLS connection is read and written through its session
//! (`super::tls`) with the same readiness waits and non-blocking syscalls.

use std::cell::{RefCell, RefMut};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use bytes::BytesMut;
use monoio::net::TcpStream;

use super::tls::TlsSession;
use crate::conn_io::{self, peek_state, ByteStream, BytesVec, IoFailure, PeekState};
use crate::timers::TimerSlot;

/// An upstream connection: its socket, with its TLS session for an `https://` replica.
pub enum UpstreamStream {
    /// `http://`.
    Plain(TcpStream),
    /// `https://`: the socket and its session, boxed together.
    Tls(Box<TlsConn>),
}

/// A TLS connection's socket and session.
pub struct TlsConn {
    tcp: TcpStream,
    /// In a `RefCell` so that a task holding the connection shared (the SSE pump, whose
    /// readiness wait borrows the socket) can still run a read step on the session; borrowed
    /// only within synchronous steps, never across an await.
    session: RefCell<TlsSession>,
}

impl std::fmt::Debug for UpstreamStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamStream")
            .field("fd", &self.as_raw_fd())
            .field("tls", &matches!(self, UpstreamStream::Tls(_)))
            .finish()
    }
}

impl UpstreamStream {
    pub(crate) fn with_tls(tcp: TcpStream, session: TlsSession) -> UpstreamStream {
        UpstreamStream::Tls(Box::new(TlsConn {
            tcp,
            session: RefCell::new(session),
        }))
    }

    /// The socket (readiness waits).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            UpstreamStream::Plain(tcp) => tcp,
            UpstreamStream::Tls(conn) => &conn.tcp,
        }
    }

    /// The TLS session, for a read step while the socket is borrowed by a readiness wait. None
    /// for a plain connection. Panics if it is borrowed already (only synchronous steps do).
    pub fn session(&self) -> Option<RefMut<'_, TlsSession>> {
        match self {
            UpstreamStream::Plain(_) => None,
            UpstreamStream::Tls(conn) => Some(conn.session.borrow_mut()),
        }
    }

    /// The socket and the TLS session apart, so that a pinned readiness wait on the one can
    /// live beside read steps on the other (the tunnel).
    pub fn split(&mut self) -> (&TcpStream, Option<&mut TlsSession>) {
        match self {
            UpstreamStream::Plain(tcp) => (tcp, None),
            UpstreamStream::Tls(conn) => {
                let conn = &mut **conn;
                (&conn.tcp, Some(conn.session.get_mut()))
            }
        }
    }

    /// Sends what a plain socket takes right now of `out` (`BytesVec::send_now`: one
    /// non-blocking sendmsg, no trip through the runtime); the rest stays in `out`. For a fresh
    /// connection's request: its socket buffer is empty, so the request leaves in the wake-up
    /// that connected, not a loop cycle later when a writev op completes (under flat-out load a
    /// cycle is a turn slice and a tick; perf/NOTES.md, "The origin's own turns"). A TLS
    /// connection already sends at once in `write_vec`: nothing here. Errors are left to the
    /// write that follows, which meets them again.
    pub(crate) fn send_now_if_plain(&self, out: &mut BytesVec) {
        if let UpstreamStream::Plain(tcp) = self {
            let _ = out.send_now(tcp.as_raw_fd());
        }
    }

    /// Whether a pooled connection can take a request: nothing to read and not closed. A TLS
    /// connection may have been sent session tickets after its last response: those are read
    /// (and kept) here; anything else makes it unusable.
    pub fn idle_state(&mut self) -> PeekState {
        let fd = self.as_raw_fd();
        match (peek_state(fd), self.split().1) {
            (PeekState::HasData, Some(tls)) => match tls.absorb_idle(fd) {
                true => PeekState::Quiet,
                false => PeekState::HasData,
            },
            (state, _) => state,
        }
    }
}

impl AsRawFd for UpstreamStream {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp().as_raw_fd()
    }
}

impl ByteStream for UpstreamStream {
    /// Plain: `conn_io::read_more`'s contract (not cancel-safe). TLS: readiness then read steps;
    /// dropping it loses `buf` but no byte of the stream (still cancel-unsafe for the caller's
    /// buffer, so the same rule applies: close the connection).
    async fn read_more(&mut self, buf: BytesMut, reserve: usize) -> (io::Result<usize>, BytesMut) {
        let conn = match self {
            UpstreamStream::Plain(tcp) => return conn_io::read_more_tcp(tcp, buf, reserve).await,
            UpstreamStream::Tls(conn) => &mut **conn,
        };
        let mut buf = buf;
        let fd = conn.tcp.as_raw_fd();
        loop {
            match conn.session.get_mut().read_now(fd, &mut buf) {
                Ok(Some(n)) => return (Ok(n), buf),
                Ok(None) => {}
                Err(e) => return (Err(e), buf),
            }
            if let Err(e) = conn.tcp.readable(false).await {
                return (Err(e), buf);
            }
        }
    }

    /// Plain: `conn_io::write_vec_tcp` (one writev per pass through the runtime). TLS: the
    /// pieces are encrypted at once, then sent as the socket takes them; `limit` bounds each
    /// wait for writability. On failure the connection must be closed.
    async fn write_vec(
        &mut self,
        mut out: BytesVec,
        limit: Duration,
    ) -> Result<BytesVec, IoFailure> {
        let conn = match self {
            UpstreamStream::Plain(tcp) => return conn_io::write_vec_tcp(tcp, out, limit).await,
            UpstreamStream::Tls(conn) => &mut **conn,
        };
        let session = conn.session.get_mut();
        session.queue(&mut out)?;
        let fd = conn.tcp.as_raw_fd();
        // A socket that became writable took some bytes: each wait is bounded by `limit`.
        while !session.flush_now(fd)? {
            match monoio::time::timeout(limit, conn.tcp.writable(false)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(IoFailure::Io(e)),
                Err(_) => return Err(IoFailure::TimedOut),
            }
        }
        Ok(out)
    }

    /// Plain: `conn_io::write_vec_tcp_timed`; TLS: `write_vec` (its waits bounded by `limit`).
    async fn write_vec_timed(
        &mut self,
        out: BytesVec,
        limit: Duration,
        timer: &mut TimerSlot,
    ) -> Result<BytesVec, IoFailure> {
        match self {
            UpstreamStream::Plain(tcp) => {
                conn_io::write_vec_tcp_timed(tcp, out, limit, timer).await
            }
            UpstreamStream::Tls(_) => self.write_vec(out, limit).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plain connection costs no more than its socket (an `Option` of it one word more: the
    /// socket's only niche holds the TLS variant): every idle SSE stream holds one.
    #[test]
    fn a_plain_connection_is_its_socket() {
        let socket = std::mem::size_of::<TcpStream>();
        assert_eq!(std::mem::size_of::<UpstreamStream>(), socket);
        assert_eq!(std::mem::size_of::<Option<UpstreamStream>>(), socket + 8);
    }
}
