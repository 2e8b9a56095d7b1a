//! The HTTP/1.1 side of an HTTP/2 stream's bridge (`super::stream`): the socketpair end that
//! tether's connection code serves as it serves a client socket. Every method is the plain
//! socket's; the type exists so that the connection code is compiled for it with `H2` set
//! (`/streams` and the access log say the client is on HTTP/2). Handed to another worker (a
//! comeback to a stream read there), this end crosses and the other stays: the kernel's
//! socketpair carries the stream's bytes between the two workers.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use monoio::net::TcpStream;
use rustls::ServerConnection;

use crate::client_stream::{Carried, ClientStream};
use crate::conn_io::{ByteStream, BytesVec, IoFailure, PeekState};
use crate::tls::TlsSession;

/// A stream's end of its socketpair, and the address of the client whose stream it is.
pub struct H2Side(TcpStream, SocketAddr);

impl H2Side {
    pub fn new(sock: TcpStream, peer: SocketAddr) -> H2Side {
        H2Side(sock, peer)
    }
}

impl ByteStream for H2Side {
    #[inline(always)]
    fn read_more(
        &mut self,
        buf: BytesMut,
        reserve: usize,
    ) -> impl std::future::Future<Output = (io::Result<usize>, BytesMut)> {
        self.0.read_more(buf, reserve)
    }

    #[inline(always)]
    fn write_vec(
        &mut self,
        out: BytesVec,
        limit: Duration,
    ) -> impl std::future::Future<Output = Result<BytesVec, IoFailure>> {
        self.0.write_vec(out, limit)
    }
}

impl ClientStream for H2Side {
    const TLS: bool = true;
    const H2: bool = true;

    /// The bridge's end crosses; its other end stays with the HTTP/2 connection's worker.
    fn into_hand_off(self) -> io::Result<(std::os::fd::OwnedFd, Carried)> {
        use std::os::fd::AsRawFd;
        let fd = crate::client_stream::duplicate(self.0.as_raw_fd())?;
        Ok((fd, Carried::H2Bridge))
    }

    #[inline(always)]
    fn tcp(&self) -> &TcpStream {
        &self.0
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.1)
    }

    #[inline(always)]
    fn read_now(&mut self, buf: &mut BytesMut, reserve: usize) -> io::Result<Option<usize>> {
        self.0.read_now(buf, reserve)
    }

    #[inline(always)]
    fn send_now(&self, out: &mut BytesVec) -> io::Result<usize> {
        self.0.send_now(out)
    }

    #[inline(always)]
    fn unsent(&self) -> usize {
        0
    }

    #[inline(always)]
    fn peek_state(&self) -> PeekState {
        self.0.peek_state()
    }

    fn close_write(&mut self) -> impl std::future::Future<Output = io::Result<()>> {
        self.0.close_write()
    }

    fn tunnel_parts(&mut self) -> (&TcpStream, Option<&mut TlsSession<ServerConnection>>) {
        (&self.0, None)
    }
}
