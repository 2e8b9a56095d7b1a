//! Getting an upstream connection: a pooled one if a live one waits, else a fresh connect, trying
//! the replicas in turn (and each replica's addresses) until one accepts (and, for `https://`,
//! completes a TLS handshake whose certificate verifies). Used by the exchange (`proxy`) and by
//! the SSE relay's reconnects (`sse`), which is why it lives below both.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use bytes::BytesMut;
use monoio::net::TcpStream;

use super::group::UpstreamGroup;
use super::health::FailedTry;
use super::pool::Reuse;
use super::stream::UpstreamStream;
use super::tls::{self, TlsFailure, TlsFailureClass};
use crate::runtime::DriverKind;
use crate::worker::WorkerCtx;

/// One failed attempt to reach an upstream address.
#[derive(Debug)]
pub struct ConnectAttempt {
    /// The replica's URL and the address tried.
    pub target: String,
    pub failure: ConnectFailure,
}

#[derive(Debug)]
pub enum ConnectFailure {
    Refused,
    TimedOut,
    Other(io::Error),
    /// Connected, but the TLS handshake failed (a certificate refused, a timeout...).
    Tls(TlsFailure),
}

impl fmt::Display for ConnectAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failure {
            ConnectFailure::Refused => write!(f, "{} refused the connection", self.target),
            ConnectFailure::TimedOut => write!(
                f,
                "{} did not accept within the connect timeout",
                self.target
            ),
            ConnectFailure::Other(e) => write!(f, "{}: {e}", self.target),
            ConnectFailure::Tls(e) => write!(f, "{}: {e}", self.target),
        }
    }
}

/// Every replica (or the one asked for) refused or timed out: each attempt, in order.
#[derive(Debug)]
pub struct Unreachable(pub Vec<ConnectAttempt>);

impl fmt::Display for Unreachable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

/// An upstream connection checked out for one exchange.
pub struct UpstreamConn {
    pub stream: UpstreamStream,
    /// Which `--upstream` replica it belongs to (the pool key).
    pub replica: usize,
    /// Came from the pool: it may have been closed by the upstream a moment ago, so an exchange that
    /// fails before any response byte may be retried once on a fresh connection.
    pub reused: bool,
    /// Its read buffer between exchanges: empty, its storage kept (pooled with the connection),
    /// so that a keep-alive answer is read without allocating a buffer.
    pub buf: BytesMut,
}

/// Picks the group's next replica (round robin over those in rotation, ejected ones last) and
/// returns a connection to it or to the next replica of the group that accepts. Cancel-safe in
/// the sense that matters: a dropped connect only loses a socket that was never used.
pub(crate) async fn acquire(
    ctx: &WorkerCtx,
    group: &UpstreamGroup,
    reuse: Reuse,
) -> Result<UpstreamConn, Unreachable> {
    let order = ctx.upstreams.borrow().try_order(group.round_robin());
    acquire_in(ctx, group, order, reuse).await
}

/// A connection to `replica` only, pooled when one is idle (a request of an MCP session, which
/// lives on the replica that made it).
pub(crate) async fn acquire_pinned(
    ctx: &WorkerCtx,
    group: &UpstreamGroup,
    replica: usize,
    reuse: Reuse,
) -> Result<UpstreamConn, Unreachable> {
    acquire_in(ctx, group, std::iter::once(replica), reuse).await
}

/// The second try of a request whose pooled connection to `replica` turned out closed before
/// any answer (it was taken without the probe, or the upstream closed it just after): what
/// `acquire` gives when the probe sees the close. Another pooled connection to `replica` that
/// the probe finds alive, else a fresh connection to it, else (unless the request is `pinned` to
/// it) the group's other replicas after it (ejected ones last, as `acquire` orders them): a
/// replica that went away with its idle connections fails the request over as before.
pub(crate) async fn acquire_again(
    ctx: &WorkerCtx,
    group: &UpstreamGroup,
    replica: usize,
    pinned: bool,
) -> Result<UpstreamConn, Unreachable> {
    if pinned {
        return acquire_in(ctx, group, std::iter::once(replica), Reuse::ProbedOnly).await;
    }
    let order = ctx.upstreams.borrow().try_order(group.starting_at(replica));
    acquire_in(ctx, group, order, Reuse::ProbedOnly).await
}

async fn acquire_in(
    ctx: &WorkerCtx,
    group: &UpstreamGroup,
    order: impl Iterator<Item = usize>,
    reuse: Reuse,
) -> Result<UpstreamConn, Unreachable> {
    let mut attempts = Vec::new();
    for replica in order {
        if let Some((stream, buf)) = ctx.pool.borrow_mut().take(replica, reuse) {
            return Ok(UpstreamConn {
                stream,
                replica,
                reused: true,
                buf,
            });
        }
        match connect_replica(ctx, replica, group.connect_timeout, &mut attempts).await {
            Some(stream) => {
                return Ok(UpstreamConn {
                    stream,
                    replica,
                    reused: false,
                    buf: BytesMut::new(),
                })
            }
            None => continue,
        }
    }
    Err(Unreachable(attempts))
}

/// A fresh connection to one specific replica of `group` (the retry of a stale pooled
/// connection, a stream's reconnect). A failure counts against the replica's health.
pub(crate) async fn connect_fresh(
    ctx: &WorkerCtx,
    group: &UpstreamGroup,
    replica: usize,
) -> Result<UpstreamConn, Unreachable> {
    let mut attempts = Vec::new();
    match connect_replica(ctx, replica, group.connect_timeout, &mut attempts).await {
        Some(stream) => Ok(UpstreamConn {
            stream,
            replica,
            reused: false,
            buf: BytesMut::new(),
        }),
        None => Err(Unreachable(attempts)),
    }
}

async fn connect_replica(
    ctx: &WorkerCtx,
    replica: usize,
    limit: Duration,
    attempts: &mut Vec<ConnectAttempt>,
) -> Option<UpstreamStream> {
    let (addrs, url, tls) = {
        let mut set = ctx.upstreams.borrow_mut();
        (
            set.addrs(replica),
            set.spec(replica).url.clone(),
            set.tls_for(replica),
        )
    };
    for addr in addrs.iter() {
        let failure = match connect_within(*addr, limit, ctx.driver).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                match &tls {
                    None => return Some(UpstreamStream::Plain(stream)),
                    // The handshake gets the connect timeout again, after the TCP connect's.
                    Some((config, name)) => match secure(ctx, stream, config, name, limit).await {
                        Ok(stream) => return Some(stream),
                        Err(e) => ConnectFailure::Tls(e),
                    },
                }
            }
            Err(failure) => failure,
        };
        crate::metrics::WorkerMetrics::inc(&ctx.metrics.upstream_connect_errors);
        let target = format!("{url} ({addr})");
        crate::log_debug!("connect to {target} failed: {failure:?}");
        attempts.push(ConnectAttempt { target, failure });
    }
    // One failed try of the replica, however many addresses it has. A connect that succeeds
    // counts neither way: only an answer shows the replica works.
    ctx.upstreams
        .borrow()
        .record_failure(replica, FailedTry::Connect);
    None
}

/// The TLS handshake on a connected socket, counted in `/metrics` by outcome.
async fn secure(
    ctx: &WorkerCtx,
    stream: TcpStream,
    config: &Option<std::sync::Arc<rustls::ClientConfig>>,
    name: &rustls::pki_types::ServerName<'static>,
    limit: Duration,
) -> Result<UpstreamStream, TlsFailure> {
    let m = &ctx.metrics;
    let Some(config) = config else {
        // `Config` builds TLS settings whenever a replica is https://: not reached.
        let failure = TlsFailure {
            class: TlsFailureClass::Other,
            detail: "no TLS settings on this worker".into(),
        };
        m.record_tls_failure(failure.class);
        return Err(failure);
    };
    match tls::handshake(&stream, config.clone(), name.clone(), limit).await {
        Ok(session) => {
            crate::metrics::WorkerMetrics::inc(&m.upstream_tls_handshakes);
            if session.resumed() {
                crate::metrics::WorkerMetrics::inc(&m.upstream_tls_resumed);
            }
            crate::log_debug!(
                "TLS with {} done ({}{})",
                name.to_str(),
                session.describe(),
                if session.resumed() { ", resumed" } else { "" }
            );
            Ok(UpstreamStream::with_tls(stream, session))
        }
        Err(failure) => {
            m.record_tls_failure(failure.class);
            Err(failure)
        }
    }
}

/// Connects to `addr`, bounded by `limit`. A non-blocking connect(2) followed by a zero-timeout
/// poll: to a listener on this host (loopback, the common deployment beside the upstream) the
/// handshake is complete by then, so the connection is ready in the wake-up that asked for it,
/// instead of after a connect op's completion a loop cycle later (under load a cycle is a turn of
/// every busy stream, and a new client waits for each). Otherwise the task waits for writability
/// through the runtime, as a connect op would.
async fn connect_within(
    addr: SocketAddr,
    limit: Duration,
    driver: DriverKind,
) -> Result<TcpStream, ConnectFailure> {
    let (raw, len) = raw_addr(&addr);
    let domain = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: socket(2) returns a new fd or -1; the fd is owned at once.
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(ConnectFailure::Other(io::Error::last_os_error()));
    }
    // SAFETY: `fd` is a fresh socket nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `raw` holds a valid sockaddr of `len` bytes for `addr`'s family.
    let rc = unsafe { libc::connect(fd, &raw as *const _ as *const libc::sockaddr, len) };
    let mut pending = false;
    if rc != 0 {
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINPROGRESS) => pending = !writable_now(fd),
            Some(libc::ECONNREFUSED) => return Err(ConnectFailure::Refused),
            _ => return Err(ConnectFailure::Other(e)),
        }
    }
    if driver == DriverKind::IoUring {
        // io_uring answers EAGAIN on a non-blocking socket instead of waiting on it (monoio
        // creates its sockets blocking there); epoll needs it non-blocking.
        // SAFETY: F_SETFL on our own fd; O_RDWR is what socket(2) set besides O_NONBLOCK.
        if unsafe { libc::fcntl(fd, libc::F_SETFL, libc::O_RDWR) } < 0 {
            return Err(ConnectFailure::Other(io::Error::last_os_error()));
        }
    }
    let stream =
        TcpStream::from_std(std::net::TcpStream::from(socket)).map_err(ConnectFailure::Other)?;
    if pending {
        match monoio::time::timeout(limit, stream.writable(false)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(ConnectFailure::Other(e)),
            Err(_) => return Err(ConnectFailure::TimedOut),
        }
    }
    match socket_error(stream.as_raw_fd()) {
        None => Ok(stream),
        Some(e) if e.kind() == io::ErrorKind::ConnectionRefused => Err(ConnectFailure::Refused),
        Some(e) => Err(ConnectFailure::Other(e)),
    }
}

/// Whether a connecting socket is writable (connected, or failed) right now: poll(2) with a zero
/// timeout, never blocks.
fn writable_now(fd: RawFd) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    unsafe { libc::poll(&mut pfd, 1, 0) == 1 && pfd.revents != 0 }
}

/// The socket's pending error (SO_ERROR): how a non-blocking connect ended. None: connected.
fn socket_error(fd: RawFd) -> Option<io::Error> {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: SO_ERROR writes one c_int into `err`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            &mut err as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    if rc < 0 {
        return Some(io::Error::last_os_error());
    }
    (err != 0).then(|| io::Error::from_raw_os_error(err))
}

/// `addr` as a C sockaddr and its length.
fn raw_addr(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: an all-zero sockaddr_storage is valid; the family's fields are filled in below.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr_in.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(a.ip().octets()),
            };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for a sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: a.ip().octets(),
            };
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}
