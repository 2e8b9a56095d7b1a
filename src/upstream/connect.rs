//! Getting an upstream connection: a pooled one if a live one waits, else a fresh connect, trying
//! the replicas in turn (and each replica's addresses) until one accepts. Used by the exchange
//! (`proxy`) and by the SSE relay's reconnects (`sse`), which is why it lives below both.

use std::io;
use std::time::Duration;

use monoio::net::TcpStream;

use std::fmt;

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
    pub stream: TcpStream,
    /// Which `--upstream` replica it belongs to (the pool key).
    pub replica: usize,
    /// Came from the pool: it may have been closed by the upstream a moment ago, so an exchange that
    /// fails before any response byte may be retried once on a fresh connection.
    pub reused: bool,
}

/// Picks the next replica (round robin) and returns a connection to it or to the next replica that
/// accepts. Cancel-safe in the sense that matters: a dropped connect only loses a socket that was
/// never used.
pub async fn acquire(ctx: &WorkerCtx, allow_pooled: bool) -> Result<UpstreamConn, Unreachable> {
    let (start, replicas) = {
        let mut set = ctx.upstreams.borrow_mut();
        (set.start_replica(), set.len())
    };
    let mut attempts = Vec::new();
    for i in 0..replicas {
        let replica = (start + i) % replicas;
        if allow_pooled {
            if let Some(stream) = ctx.pool.borrow_mut().take(replica) {
                return Ok(UpstreamConn {
                    stream,
                    replica,
                    reused: true,
                });
            }
        }
        match connect_replica(ctx, replica, &mut attempts).await {
            Some(stream) => {
                return Ok(UpstreamConn {
                    stream,
                    replica,
                    reused: false,
                })
            }
            None => continue,
        }
    }
    Err(Unreachable(attempts))
}

/// A fresh connection to one specific replica (used for the retry of a stale pooled connection).
pub async fn connect_fresh(ctx: &WorkerCtx, replica: usize) -> Result<UpstreamConn, Unreachable> {
    let mut attempts = Vec::new();
    match connect_replica(ctx, replica, &mut attempts).await {
        Some(stream) => Ok(UpstreamConn {
            stream,
            replica,
            reused: false,
        }),
        None => Err(Unreachable(attempts)),
    }
}

async fn connect_replica(
    ctx: &WorkerCtx,
    replica: usize,
    attempts: &mut Vec<ConnectAttempt>,
) -> Option<TcpStream> {
    let (addrs, url) = {
        let mut set = ctx.upstreams.borrow_mut();
        (set.addrs(replica), set.spec(replica).url.clone())
    };
    for addr in addrs.iter() {
        match connect_within(*addr, ctx.config.timeouts.connect).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Some(stream);
            }
            Err(failure) => {
                crate::metrics::WorkerMetrics::inc(&ctx.metrics.upstream_connect_errors);
                let target = format!("{url} ({addr})");
                crate::log_debug!("connect to {target} failed: {failure:?}");
                attempts.push(ConnectAttempt { target, failure });
            }
        }
    }
    None
}

async fn connect_within(
    addr: std::net::SocketAddr,
    limit: Duration,
) -> Result<TcpStream, ConnectFailure> {
    match monoio::time::timeout(limit, TcpStream::connect_addr(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionRefused => Err(ConnectFailure::Refused),
        Ok(Err(e)) => Err(ConnectFailure::Other(e)),
        Err(_) => Err(ConnectFailure::TimedOut),
    }
}
