//! The client side of a connection, as the code that serves it sees it: a plain `TcpStream`, or
//! a TLS client (`crate::client_tls::TlsClient`). Everything that reads or writes a client
//! (the connection's loop, the exchange, error answers, the SSE relay and followers, the tunnel)
//! is generic over [`ClientStream`] and compiled once per kind, so a plain connection runs
//! exactly the code it ran before TLS existed: every method below is, for `TcpStream`, the
//! syscall or constant it replaced, inlined (no branch on "is it TLS" per event).
//!
//! Readiness waits go to the socket (`tcp()`): a TLS client's session never holds plaintext
//! between read steps (`crate::tls`), so the socket's readiness is the connection's.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use bytes::BytesMut;
use monoio::io::AsyncWriteRent;
use monoio::net::TcpStream;
use rustls::ServerConnection;

use crate::conn_io::{self, peek_state, ByteStream, BytesVec, PeekState};
use crate::tls::TlsSession;

/// A client connection's transport. `ByteStream` gives the owned-buffer reads and writes (each
/// with its contract); the methods here are the synchronous steps the SSE pump, the follower and
/// the tunnel make in the wake-up that found the socket ready.
pub(crate) trait ClientStream: ByteStream {
    /// The connection, ready to cross to another worker (`Outcome::HandOff`): a duplicate of
    /// its descriptor, and what the adopting worker needs besides it to serve the connection
    /// as this one would have (`Carried`). `self` is gone after: its descriptor closes without
    /// a shutdown and a TLS client sends no close_notify, so the connection lives on in the
    /// duplicate. Err when no descriptor is left for the duplicate: the connection then closes.
    fn into_hand_off(self) -> io::Result<(OwnedFd, Carried)>;

    /// Whether the client speaks TLS (for `/streams` and the access log).
    const TLS: bool;

    /// Whether the client is an HTTP/2 stream (`crate::client_h2`), for `/streams` and the
    /// access log.
    const H2: bool = false;

    /// The socket: readiness waits, addresses, socket options.
    fn tcp(&self) -> &TcpStream;

    /// The client's address (for forwarded-for headers and rate rules). An HTTP/2 stream's
    /// bridge socket has none of its own: its connection's is given.
    fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.tcp().peer_addr()
    }

    /// The socket's descriptor.
    fn fd(&self) -> RawFd {
        self.tcp().as_raw_fd()
    }

    /// One non-blocking read into `buf` (after reserving `reserve` bytes): Ok(None) when
    /// nothing is there yet. Synchronous: cancel-safe.
    fn read_now(&mut self, buf: &mut BytesMut, reserve: usize) -> io::Result<Option<usize>>;

    /// Sends what `out` holds as far as the socket takes it now (a TLS client encrypts all of
    /// it first; what the socket refuses then waits in the session, counted by `unsent`): the
    /// bytes the socket took, 0 when it is full. Synchronous: cancel-safe.
    fn send_now(&self, out: &mut BytesVec) -> io::Result<usize>;

    /// Bytes the transport holds for the client besides the caller's queue (a TLS session's
    /// ciphertext; always 0 for plain TCP): counted as queued for backpressure and slow-client
    /// cuts exactly as the queue is.
    fn unsent(&self) -> usize;

    /// What the client has done while nobody reads it (`conn_io::peek_state`; through TLS, a
    /// close_notify is Closed and TLS's own records are Quiet). Synchronous: cancel-safe.
    fn peek_state(&self) -> PeekState;

    /// Ends what tether sends (a TLS client gets close_notify first), keeping the read side
    /// open: the lingering close and close-delimited responses. Not cancel-safe (plain: a
    /// shutdown op), but it owns no buffer.
    fn close_write(&mut self) -> impl std::future::Future<Output = io::Result<()>>;

    /// The socket and, for a TLS client, its session, apart: the tunnel waits on the one while
    /// it steps the other.
    fn tunnel_parts(&mut self) -> (&TcpStream, Option<&mut TlsSession<ServerConnection>>);
}

/// What crosses to another worker with a handed-off connection besides its descriptor.
pub(crate) enum Carried {
    /// A plain client: the descriptor is all.
    Plain,
    /// A TLS client: its session (keys, sequence numbers, whatever it holds unread or unsent).
    Tls(Box<TlsSession<ServerConnection>>),
    /// The HTTP/1.1 side of an HTTP/2 stream's bridge (`crate::client_h2::side`): the bridge's
    /// other end stays with the HTTP/2 connection's worker, the kernel's socketpair between.
    H2Bridge,
}

/// A duplicate of `fd`, for the worker that adopts the connection.
pub(crate) fn duplicate(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: the descriptor is the caller's own, open for the duration of the call.
    unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned()
}

impl ClientStream for TcpStream {
    const TLS: bool = false;

    fn into_hand_off(self) -> io::Result<(OwnedFd, Carried)> {
        Ok((duplicate(self.as_raw_fd())?, Carried::Plain))
    }

    #[inline(always)]
    fn tcp(&self) -> &TcpStream {
        self
    }

    #[inline(always)]
    fn read_now(&mut self, buf: &mut BytesMut, reserve: usize) -> io::Result<Option<usize>> {
        conn_io::read_now(self.as_raw_fd(), buf, reserve)
    }

    #[inline(always)]
    fn send_now(&self, out: &mut BytesVec) -> io::Result<usize> {
        out.send_now(self.as_raw_fd())
    }

    #[inline(always)]
    fn unsent(&self) -> usize {
        0
    }

    #[inline(always)]
    fn peek_state(&self) -> PeekState {
        peek_state(self.as_raw_fd())
    }

    fn close_write(&mut self) -> impl std::future::Future<Output = io::Result<()>> {
        self.shutdown()
    }

    #[inline(always)]
    fn tunnel_parts(&mut self) -> (&TcpStream, Option<&mut TlsSession<ServerConnection>>) {
        (self, None)
    }
}
