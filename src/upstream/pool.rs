//! A worker's pool of idle upstream connections, per replica. Worker-local: no locks.
//!
//! A connection goes back only after a complete exchange (request fully sent, response body read
//! to its framed end, no `Connection: close`, no timeout or cancellation on it). Before reuse it is
//! probed with a non-blocking `MSG_PEEK`: an upstream that closed an idle connection (or sent bytes
//! nobody asked for) is discarded instead of being handed a request. A TLS connection keeps its
//! session with its socket; bytes that came while it was idle are read through it first, and
//! only TLS's own (session tickets) let it stay.
//!
//! The probe is one syscall per request, on keep-alive traffic the only one besides the four
//! reads and writes (perf/NOTES.md, "Keep-alive syscalls"). It is skipped (`Reuse::Retryable`)
//! for a plain connection that came back less than `UNPROBED_REUSE` ago when the request can be
//! sent twice (no body, idempotent method): if the upstream did close it meanwhile, the
//! exchange sees the close before any answer byte and sends the request again on a fresh
//! connection (`proxy::exchange`, `Attempt::StaleUpstream`). A request that cannot be sent
//! twice always gets a probed connection: sent on one the upstream had closed, it would have no
//! retry path and the client would get a 502.
//!
//! A reload (`crate::reload`) may take a replica out of every route: its idle connections are
//! closed at once, and a busy one is closed when its request ends (`put` refuses it), so the
//! pool of a removed replica drains by itself. A replica that a later reload brings back is
//! pooled again.

use std::time::Duration;

use bytes::BytesMut;

use super::stream::UpstreamStream;
use crate::conn_io::PeekState;
use crate::stamp::Stamp;

/// A plain connection back in the pool for less than this is handed to a retryable request
/// without the liveness probe. Well under the shortest idle timeout common upstreams apply
/// (gunicorn 2 s, Node and uvicorn 5 s, nginx 75 s), so such a connection is rarely closed yet,
/// and bytes an upstream sends before closing an idle connection (a 408) come at that timeout,
/// not within this window; a close inside it costs one retry, never a request. Under keep-alive
/// load connections come back within milliseconds, so nearly every reuse skips the probe.
pub(crate) const UNPROBED_REUSE: Duration = Duration::from_secs(1);

/// What a request allows of a pooled connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reuse {
    /// The request cannot be sent twice (it has a body, or its method is not idempotent): only a
    /// connection the probe finds alive and quiet.
    ProbedOnly,
    /// The request can be sent again on a fresh connection if the pooled one turns out closed:
    /// a plain connection that came back within `UNPROBED_REUSE` is taken without the probe.
    Retryable,
}

struct Pooled {
    stream: UpstreamStream,
    /// Its read buffer, empty, kept with it (`UpstreamConn::buf`).
    buf: BytesMut,
    /// When it came back, on the coarse clock's lower bound (`Stamp::now_bounds`'s first).
    since: Stamp,
}

pub struct UpstreamPool {
    /// Idle connections per replica, oldest first.
    idle: Vec<Vec<Pooled>>,
    /// Per replica: no route uses it since the last reload, so nothing goes back to its pool.
    retired: Vec<bool>,
    max_per_replica: usize,
    max_idle: Duration,
}

impl UpstreamPool {
    pub fn new(replicas: usize, max_per_replica: usize, max_idle: Duration) -> Self {
        UpstreamPool {
            idle: (0..replicas).map(|_| Vec::new()).collect(),
            retired: vec![false; replicas],
            max_per_replica,
            max_idle,
        }
    }

    /// The most recently used live connection to `replica`, if any (LIFO keeps few connections warm
    /// and lets the others age out). `reuse` says whether a recent one may skip the probe.
    pub(crate) fn take(
        &mut self,
        replica: usize,
        reuse: Reuse,
    ) -> Option<(UpstreamStream, BytesMut)> {
        // Ages on the coarse clock (a fifth of a precise read, once per request): `since` is no
        // later than the return and this no earlier than now, so a connection reads old by up
        // to ten ticks of the clock (40 ms at HZ=250), never young: it ages out and loses its
        // unprobed reuse sooner, never later.
        let now = Stamp::now_or_later();
        let list = &mut self.idle[replica];
        while let Some(mut pooled) = list.pop() {
            let idle = now.saturating_since(pooled.since);
            if idle >= self.max_idle {
                // Everything below is older still.
                list.clear();
                return None;
            }
            let trusted = reuse == Reuse::Retryable
                && idle < UNPROBED_REUSE
                && matches!(pooled.stream, UpstreamStream::Plain(_));
            if trusted || pooled.stream.idle_state() == PeekState::Quiet {
                return Some((pooled.stream, pooled.buf));
            }
        }
        None
    }

    /// Returns a connection after a complete exchange; drops it when the pool is full or the
    /// replica was retired by a reload.
    pub fn put(&mut self, replica: usize, stream: UpstreamStream, buf: BytesMut) {
        if self.retired[replica] {
            return;
        }
        // See `take` for the coarse clock's two bounds.
        let (returned, now) = Stamp::now_bounds();
        let max_idle = self.max_idle;
        let list = &mut self.idle[replica];
        list.retain(|p| now.saturating_since(p.since) < max_idle);
        if list.len() < self.max_per_replica {
            list.push(Pooled {
                stream,
                buf,
                since: returned,
            });
        }
    }

    /// After a reload: `in_use[r]` says whether any route now uses replica `r` (the list covers
    /// every replica the process knows, and only grows). Closes the idle connections of the
    /// replicas no route uses, and takes the new limits (`upstream-pool-size`,
    /// `upstream-pool-idle`; the new size applies as connections come back).
    pub(crate) fn reconfigure(
        &mut self,
        in_use: &[bool],
        max_per_replica: usize,
        max_idle: Duration,
    ) {
        self.idle.resize_with(in_use.len(), Vec::new);
        self.retired.resize(in_use.len(), false);
        for (replica, used) in in_use.iter().enumerate() {
            self.retired[replica] = !used;
            if !used {
                self.idle[replica].clear();
            }
        }
        self.max_per_replica = max_per_replica;
        self.max_idle = max_idle;
    }
}
