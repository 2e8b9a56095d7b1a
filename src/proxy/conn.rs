//! A client connection's life on its worker: read a request head, run the exchange, keep the
//! connection alive or close it, until the client leaves, idles out, or the worker drains.

use std::mem;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use monoio::net::TcpStream;

use super::answer::answer_error;
use super::error::ProxyError;
use super::exchange::{self, ClientSide, HandOff, Kept, Outcome};
use super::tunnel;
use crate::access_log::{AccessLine, LineKind, RequestStart};
use crate::client_stream::ClientStream;
use crate::conn_io::{read_more_timed, read_more_within, IoFailure};
use crate::conn_table::ConnGuard;
use crate::http::{HeadScanner, RequestHead};
use crate::limits::CLIENT_READ_BUFFER;
use crate::metrics::WorkerMetrics;
use crate::sse::directory::Message;
use crate::sse::follow::follow;
use crate::sse::relay::{relay, SseEnd, SseStart};
use crate::timers::TimerSlot;
use crate::worker::WorkerCtx;

/// How the client connection continues after a relay.
fn sse_outcome(end: SseEnd, keep_client: bool) -> Outcome {
    match end {
        SseEnd::Completed
        | SseEnd::GaveUp
        | SseEnd::EventTooLarge
        | SseEnd::PartialBudget
        | SseEnd::ReplayEvicted
            if keep_client =>
        {
            Outcome::KeepAlive
        }
        SseEnd::Completed
        | SseEnd::GaveUp
        | SseEnd::EventTooLarge
        | SseEnd::PartialBudget
        | SseEnd::ReplayEvicted => Outcome::Close,
        SseEnd::ClientGone | SseEnd::SlowClient => Outcome::Abort,
    }
}

/// After the proxy decides to close, it stops sending (FIN) and reads and discards what the client
/// still sends for at most this long, so the kernel does not answer unread bytes with a RST that
/// would destroy the response in flight (RFC 9112 9.6, "lingering close").
const LINGER_TIME: Duration = Duration::from_millis(500);

/// Most bytes discarded during a lingering close.
const LINGER_MAX_BYTES: usize = 256 * 1024;

/// Serves one client connection until it closes. Not an `async fn`: the connection's state is
/// built before the future exists, so the future holds it once (an async fn keeps its arguments
/// beside its locals: the socket and address were held twice, 584 bytes in all).
pub fn serve_client(
    ctx: Rc<WorkerCtx>,
    client: TcpStream,
    peer: SocketAddr,
) -> impl std::future::Future<Output = ()> {
    serve_client_from(ctx, client, peer, BytesMut::new(), false)
}

/// `serve_client` for a connection whose first bytes were read already: `buf` holds them, and
/// `adopted` says another worker handed it over (`Outcome::HandOff`).
pub fn serve_client_from(
    ctx: Rc<WorkerCtx>,
    client: TcpStream,
    peer: SocketAddr,
    buf: BytesMut,
    adopted: bool,
) -> impl std::future::Future<Output = ()> {
    let guard = ctx.conns.register(client.as_raw_fd());
    let _ = client.set_nodelay(true);
    serve_conn(ClientConn {
        ctx,
        stream: client,
        peer,
        buf,
        guard,
        out: None,
        requests: 0,
        adopted,
        own_task: true,
    })
}

/// `serve_client` for a connection to the TLS listener: the server handshake first (bounded by
/// --header-timeout, counted and logged by `crate::client_tls`), then the same loop, compiled
/// for a `TlsClient`. The connection is registered (drain, --max-connections) from the start.
pub fn serve_tls_client(
    ctx: Rc<WorkerCtx>,
    client: TcpStream,
    peer: SocketAddr,
) -> impl std::future::Future<Output = ()> {
    let guard = ctx.conns.register(client.as_raw_fd());
    let _ = client.set_nodelay(true);
    async move {
        let Some(config) = ctx.client_tls.config() else {
            return;
        };
        let limit = ctx.config.timeouts.header;
        // Boxed: its state is gone before the connection's loop starts.
        let shaken = Box::pin(crate::client_tls::handshake(client, config, limit)).await;
        let stream = match shaken {
            Ok((stream, crate::client_tls::AppProtocol::H2)) => {
                ctx.client_tls.opened(&ctx.metrics, &stream);
                let counted = ctx.clone();
                Box::pin(crate::client_h2::serve(ctx, stream, peer, guard)).await;
                counted.client_tls.closed(&counted.metrics);
                return;
            }
            Ok((stream, crate::client_tls::AppProtocol::Http1)) => stream,
            Err(refused) => {
                ctx.client_tls
                    .failed(&ctx.metrics, ctx.index, peer, &refused);
                return;
            }
        };
        ctx.client_tls.opened(&ctx.metrics, &stream);
        let counted = ctx.clone();
        // Boxed: this task's future then holds only what it needs after the handshake, not
        // the handshake's locals beside the connection's loop.
        Box::pin(serve_conn(ClientConn {
            ctx,
            stream,
            peer,
            buf: BytesMut::new(),
            guard,
            out: None,
            requests: 0,
            adopted: false,
            own_task: false,
        }))
        .await;
        counted.client_tls.closed(&counted.metrics);
    }
}

/// Serves the HTTP/1.1 side of an HTTP/2 stream's bridge (`crate::client_h2::stream`): one
/// request, registered as a connection (drain, --max-connections) of its own.
/// `buf` holds the request when another worker handed the stream over (`adopted`).
pub fn serve_h2_stream(
    ctx: Rc<WorkerCtx>,
    side: crate::client_h2::side::H2Side,
    peer: SocketAddr,
    buf: BytesMut,
    adopted: bool,
) -> impl std::future::Future<Output = ()> {
    let guard = ctx.conns.register(side.fd());
    serve_conn(ClientConn {
        ctx,
        stream: side,
        peer,
        buf,
        guard,
        out: None,
        requests: 0,
        adopted,
        own_task: true,
    })
}

/// Serves a TLS client another worker handed over with its session (a comeback to a stream
/// read here): as `serve_tls_client` after the handshake, counted among this worker's open TLS
/// connections while it lives here. `buf` holds the request, read again here.
pub fn serve_adopted_tls_client(
    ctx: Rc<WorkerCtx>,
    client: crate::client_tls::TlsClient,
    peer: SocketAddr,
    buf: BytesMut,
) -> impl std::future::Future<Output = ()> {
    let guard = ctx.conns.register(client.fd());
    async move {
        ctx.client_tls.adopted(&ctx.metrics);
        let counted = ctx.clone();
        Box::pin(serve_conn(ClientConn {
            ctx,
            stream: client,
            peer,
            buf,
            guard,
            out: None,
            requests: 0,
            adopted: true,
            own_task: false,
        }))
        .await;
        counted.client_tls.closed(&counted.metrics);
    }
}

/// Runs a registered connection until it closes, or until its request becomes an SSE stream,
/// which then continues in a task of its own (`serve_stream`): this task ends.
// Not an `async fn`: one would keep `conn` twice (the argument beside the local it moves into),
// 512 bytes instead of 328 for every open connection (a_connection_task_stays_small).
#[allow(clippy::manual_async_fn)]
fn serve_conn<C: ClientStream + 'static>(
    mut conn: ClientConn<C>,
) -> impl std::future::Future<Output = ()> {
    // The task's own future is what every open connection holds for its whole life; the states
    // that come and go (reading a head, an exchange, an error answer, a lingering close) are
    // boxed while they run, so a connection between requests holds only what it needs.
    async move {
        match conn.run().await {
            End::Linger => Box::pin(conn.linger_close()).await,
            End::Close => {}
            End::HandOff(handoff) => conn.hand_off(&handoff),
            End::Stream(start) => {
                // A stream writes through its relay: the list's memory goes back now rather
                // than with the stream.
                conn.out = None;
                monoio::spawn(serve_stream(conn, start));
            }
        }
    }
}

/// An SSE stream's task: the connection and the relay in one allocation (the task's), instead
/// of a small connection task beside the relay's box (384 + 1280 bytes per stream, mimalloc
/// size classes, where the stream now holds one 1536-byte block). When the stream ends and the
/// connection serves on, it continues in a small task again (`serve_conn`).
#[allow(clippy::manual_async_fn)] // an async fn would keep `conn` twice
fn serve_stream<C: ClientStream + 'static>(
    mut conn: ClientConn<C>,
    start: Box<SseStart>,
) -> impl std::future::Future<Output = ()> {
    async move {
        let keep_client = start.keep_client;
        // Unboxed before the stream starts: a box moved out of with `*start` would be freed
        // only after the whole stream (352 bytes per stream, seen in the allocation census).
        let end = relay(&conn.ctx, &mut conn.stream, &conn.guard, unbox(start)).await;
        crate::log_debug!("sse stream ended: {end:?}");
        match conn.after_response(sse_outcome(end, keep_client)) {
            Some(End::Linger) => Box::pin(conn.linger_close()).await,
            Some(_) => {}
            None => {
                monoio::spawn(serve_conn(conn));
            }
        }
    }
}

/// The value out of its box, the box freed on return.
#[allow(clippy::boxed_local)] // the point: take a box, free it here
fn unbox<T>(boxed: Box<T>) -> T {
    *boxed
}

enum End {
    /// Close after draining what the client still sends (we answered and chose to close).
    Linger,
    /// Close at once (client gone, or message cut short on purpose).
    Close,
    /// Another worker is to serve the connection (`ClientConn::hand_off`).
    HandOff(Box<HandOff>),
    /// The request became an SSE stream: it continues in a task of its own (`serve_stream`).
    Stream(Box<SseStart>),
}

struct ClientConn<C: ClientStream> {
    ctx: Rc<WorkerCtx>,
    stream: C,
    peer: SocketAddr,
    /// Bytes read and not yet consumed; empty (no allocation) while idle between requests.
    buf: BytesMut,
    guard: ConnGuard,
    /// The write list and heads buffer each exchange takes and gives back (`ClientSide::out`).
    out: Option<Box<Kept>>,
    /// Requests served on this connection so far (saturating: only "none yet" and "the first"
    /// are asked). A u32: 8 bytes less in every stream's task, which sits at a size-class
    /// edge (`tests::a_stream_task_stays_small`).
    requests: u32,
    /// Handed over by another worker: its first request is never handed over again.
    adopted: bool,
    /// The connection's task is its own (spawned for it, awaited by nobody): an SSE stream
    /// moves on into a task of its own (`End::Stream`). False when the task does more after the
    /// connection (a TLS connection's count of open sessions): the relay runs boxed inside it.
    own_task: bool,
}

impl<C: ClientStream> ClientConn<C> {
    async fn run(&mut self) -> End {
        // One timer for every step of the connection's requests (`TimerSlot::within`), held
        // here rather than in `ClientConn`: an SSE stream's task holds the connection but not
        // this future (its size class, `a_stream_task_stays_small`).
        let mut timer = TimerSlot::new(&self.ctx.timers);
        loop {
            let head = match Box::pin(self.read_head(&mut timer)).await {
                Ok(Some(head)) => head,
                Ok(None) => return End::Close,
                Err(e) => return Box::pin(self.refuse_head(e)).await,
            };
            self.guard.set_idle(false);
            self.requests = self.requests.saturating_add(1);
            WorkerMetrics::inc(&self.ctx.metrics.requests);
            let client = ClientSide {
                stream: &mut self.stream,
                buf: &mut self.buf,
                peer: self.peer,
                guard: &self.guard,
                adopted: self.adopted && self.requests == 1,
                out: &mut self.out,
                timer: &mut timer,
            };
            // Boxed, as is the relay below: this task's own future then only holds what a
            // connection needs between requests, and a long stream holds only the relay's state
            // (memory per idle stream), not the size of the largest exchange state as well.
            // Bound first, so the boxed exchange is freed before a relay starts (a temporary in
            // a `match` scrutinee would live until the end of the match, i.e. the whole stream).
            let forwarded = Box::pin(exchange::forward(&self.ctx, client, head)).await;
            let outcome = match forwarded {
                Outcome::Sse(start) if self.own_task => return End::Stream(start),
                Outcome::Sse(start) => {
                    let keep_client = start.keep_client;
                    // Out of its box before the stream starts: a box moved out of with `*start`
                    // is freed only when `start` goes out of scope, i.e. after the whole stream
                    // (352 bytes per stream, seen in the allocation census).
                    let start = unbox(start);
                    let end =
                        Box::pin(relay(&self.ctx, &mut self.stream, &self.guard, start)).await;
                    crate::log_debug!("sse stream ended: {end:?}");
                    sse_outcome(end, keep_client)
                }
                Outcome::Follow(start) => {
                    let keep_client = start.keep_client;
                    let start = unbox(start);
                    let end = Box::pin(follow(&self.ctx, &mut self.stream, start)).await;
                    crate::log_debug!("sse follower ended: {end:?}");
                    sse_outcome(end, keep_client)
                }
                Outcome::HandOff(handoff) => return End::HandOff(handoff),
                Outcome::Tunnel(start) => {
                    let start = unbox(start);
                    // Client bytes that came after the request head belong to the new protocol.
                    let early = mem::take(&mut self.buf);
                    Box::pin(tunnel::run(
                        &self.ctx,
                        &mut self.stream,
                        &self.guard,
                        early,
                        start,
                    ))
                    .await;
                    // Closed at once: both sides have said what they had to, or one failed.
                    Outcome::Abort
                }
                other => other,
            };
            if let Some(end) = self.after_response(outcome) {
                return end;
            }
        }
    }

    /// After a response: None when the connection serves on (ready for the next request),
    /// else how it ends.
    fn after_response(&mut self, outcome: Outcome) -> Option<End> {
        match outcome {
            Outcome::Sse(_) | Outcome::Tunnel(_) | Outcome::Follow(_) | Outcome::HandOff(_) => {
                unreachable!("handled by run")
            }
            Outcome::KeepAlive => {
                if self.buf.is_empty() && self.buf.capacity() > 2 * CLIENT_READ_BUFFER {
                    // A large body or head grew the buffer: give that memory back; a small
                    // buffer is kept for the next request instead of reallocated.
                    self.buf = BytesMut::new();
                }
                self.guard.set_idle(self.buf.is_empty());
                None
            }
            Outcome::Close => Some(End::Linger),
            Outcome::Abort => Some(End::Close),
        }
    }

    /// Gives the connection to the worker that reads its stream: a duplicate of the descriptor
    /// with what the connection carries (a TLS session, `Carried`), and the request head with
    /// what followed it, which that worker reads again. This worker's descriptor then closes
    /// without a shutdown (which would end the connection for both). When the descriptor cannot
    /// be duplicated (no fd left) the connection closes.
    fn hand_off(self, handoff: &HandOff) {
        let ClientConn {
            ctx,
            stream,
            peer,
            buf,
            ..
        } = self;
        let (conn, carried) = match stream.into_hand_off() {
            Ok(parts) => parts,
            Err(e) => {
                crate::log_warn!(
                    "cannot hand a reconnection to worker {}: {e}",
                    handoff.worker
                );
                return;
            }
        };
        let mut bytes = BytesMut::with_capacity(handoff.head.len() + buf.len());
        bytes.extend_from_slice(&handoff.head);
        bytes.extend_from_slice(&buf);
        ctx.directory.post(
            handoff.worker,
            Message::Adopt {
                conn,
                carried,
                peer,
                bytes: bytes.freeze(),
            },
        );
    }

    /// Reads until one complete request head. Ok(None): the client closed or idled out between
    /// requests, or the worker drains (nothing to answer).
    async fn read_head(
        &mut self,
        timer: &mut TimerSlot,
    ) -> Result<Option<RequestHead>, ProxyError> {
        let limits = self.ctx.config.head_limits;
        let t = self.ctx.config.timeouts;
        let mut scanner = HeadScanner::new();
        // The head timeout runs from the connection's start for its first request, and from the
        // first byte for later ones; before that byte the idle timeout applies.
        let mut deadline = (self.requests == 0).then(|| Instant::now() + t.header);
        let mut first_read = self.requests == 0;
        loop {
            // Parsed into the list the connection kept from its last request, if any.
            let parsed = match self.out.as_deref_mut() {
                Some(kept) => scanner.next_head_reusing::<RequestHead>(
                    &mut self.buf,
                    &limits,
                    kept.request_fields(),
                ),
                None => scanner.next_head::<RequestHead>(&mut self.buf, &limits),
            };
            if let Some(head) = parsed.map_err(ProxyError::ClientProtocol)? {
                return Ok(Some(head));
            }
            if !self.buf.is_empty() {
                deadline.get_or_insert_with(|| Instant::now() + t.header);
            } else if self.guard.draining() && self.requests > 0 {
                return Ok(None);
            }
            let waiting_idle = deadline.is_none();
            let limit = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => t.idle,
            };
            if limit.is_zero() {
                return Err(ProxyError::ClientHeadTimeout);
            }
            self.guard.set_idle(self.buf.is_empty());
            // A new connection's first request is almost always in the socket already (sent
            // with the connect): taken at once, without waiting a loop cycle for a read op.
            // Later requests of a keep-alive connection are usually not there yet when the
            // previous response is written, so they wait for readiness as before.
            let direct = if first_read {
                first_read = false;
                self.stream.read_now(&mut self.buf, CLIENT_READ_BUFFER)
            } else {
                Ok(None)
            };
            let read = match direct {
                Ok(Some(n)) => Ok((n, mem::take(&mut self.buf))),
                Ok(None) => {
                    read_more_timed(
                        &mut self.stream,
                        mem::take(&mut self.buf),
                        CLIENT_READ_BUFFER,
                        limit,
                        timer,
                    )
                    .await
                }
                Err(e) => Err(IoFailure::Io(e)),
            };
            match read {
                Ok((0, buf)) => {
                    let partial = !buf.is_empty();
                    self.buf = buf;
                    return if partial {
                        Err(ProxyError::ClientGone)
                    } else {
                        Ok(None)
                    };
                }
                Ok((_, buf)) => self.buf = buf,
                Err(IoFailure::TimedOut) if waiting_idle => return Ok(None),
                Err(IoFailure::TimedOut) => return Err(ProxyError::ClientHeadTimeout),
                Err(IoFailure::Io(_)) => return Ok(None),
            }
        }
    }

    /// Answers a request head that could not be read (400, 408, 431...) when the client can
    /// still hear it, then closes. The request has no id of its own yet: it gets a new one.
    async fn refuse_head(&mut self, e: ProxyError) -> End {
        let id = self.ctx.request_ids.make();
        let answered = answer_error(&self.ctx, &mut self.stream, self.peer, &e, &id).await;
        if answered.status == 0 {
            return End::Close;
        }
        if let Some(access) = &self.ctx.access_log {
            // No method or path: the head did not parse. The duration is not known either (the
            // head's first byte was not timed), so it is 0.
            let start = RequestStart::unparsed(self.peer, Instant::now());
            access.record(&AccessLine {
                worker: self.ctx.index,
                request_id: id.as_bytes(),
                start: &start,
                route: None,
                status: answered.status,
                bytes: answered.bytes,
                upstream: None,
                kind: LineKind::Request,
                h2: C::H2,
            });
        }
        if answered.delivered {
            End::Linger
        } else {
            End::Close
        }
    }

    /// Half-closes and discards what the client still sends, bounded in time and bytes.
    async fn linger_close(&mut self) {
        if self.stream.close_write().await.is_err() {
            return;
        }
        let stop = Instant::now() + LINGER_TIME;
        let mut discarded = 0usize;
        let mut buf = BytesMut::new();
        while discarded < LINGER_MAX_BYTES {
            let left = stop.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            buf.clear();
            match read_more_within(&mut self.stream, buf, CLIENT_READ_BUFFER, left).await {
                Ok((0, _)) | Err(_) => return,
                Ok((n, b)) => {
                    discarded += n;
                    buf = b;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// The size of what calling `f` returns (an async fn's future), without running it.
    fn future_size<F, A, B, C, R>(_: &F) -> usize
    where
        F: Fn(A, B, C) -> R,
    {
        std::mem::size_of::<R>()
    }

    /// Every open connection (an idle SSE stream included) is one task holding this future, so
    /// its size is memory per stream. The exchange, the relay, head reads and error answers are
    /// boxed inside it, so it holds only what a connection needs between requests: 320 bytes
    /// measured (376 while an exchange returned a `Result` the connection answered errors from;
    /// 592 while `serve_client` was an async fn that kept its arguments beside the
    /// connection built from them) (7040 before issue 9, when the exchange and relay states were inline). A change
    /// that makes it grow shows here.
    #[test]
    fn a_connection_task_stays_small() {
        let size = future_size(&super::serve_client);
        eprintln!("serve_client future: {size} bytes");
        assert!(size <= 384, "serve_client future is {size} bytes");
    }

    fn future_size4<F, A, B, C, D, R>(_: &F) -> usize
    where
        F: Fn(A, B, C, D) -> R,
    {
        std::mem::size_of::<R>()
    }

    /// An SSE stream's relay future (inside the stream's task, `serve_stream`; boxed inside a TLS
    /// connection's task), alive for the stream's life: most of the per-stream memory of
    /// tether's own state. 1280 bytes measured, so
    /// it fits mimalloc's 1280-byte size class (2808 before the relay's state became one struct
    /// held once: async fns keep their arguments beside their locals, so state passed down as
    /// arguments was held twice, and the pump's client writes were a 344-byte writev future;
    /// they are now direct `sendmsg` calls). Of it: the relay's state (688), the pump (392: the
    /// upstream readiness future 104, the select's futures 136), the drop/resume loop (~100) and
    /// the upstream socket (88: an `Option` of monoio's 80 whose niche holds the TLS variant of
    /// `UpstreamStream`). 1272 since https upstreams: the option's 8 bytes were paid for by running the ring's replay before the
    /// loop (`relay::replay_first`), whose future no longer keeps a copy of `StartFrom`. The stream's timer is a 16-byte slot of the worker's timers
    /// (crate::timers), not a 640-byte monoio `Sleep`. 48 bytes less since the relay keeps its request's
    /// bytes only (`Relay::kept_request`). `-Zprint-type-sizes` (RUSTC_BOOTSTRAP=1) shows the layout.
    /// 984 (release) before the fourth pass of issue 9 (perf/NOTES.md), 744 (debug) after it:
    /// the pump 368 -> 184 (`sse::pump::tests::the_pump_stays_small`), the drop/resume loop
    /// inline, `StartFrom` and a second `ctx` no longer kept beside the relay. 656 (debug; 648
    /// release) since the fifth: the framer 168 -> 120, the relay's and the pump's times as
    /// 8-byte stamps, the upstream's reference no longer kept across the pump's wait. Bounded
    /// at that: the stream's task is at its size-class edge (`a_stream_task_stays_small`).
    #[test]
    fn a_relay_stays_small() {
        let size = future_size4(&crate::sse::relay::relay::<monoio::net::TcpStream>);
        eprintln!("relay future: {size} bytes");
        assert!(size <= 656, "relay future is {size} bytes");
    }

    fn future_size2<F, A, B, R>(_: &F) -> usize
    where
        F: Fn(A, B) -> R,
    {
        std::mem::size_of::<R>()
    }

    /// An SSE stream's task (`serve_stream`): the connection and its relay in one future, what
    /// every stream holds for its life besides its ring, status and sockets. With monoio's task
    /// header (48) the task is one allocation: 1280 bytes in a release build (the allocation
    /// census, perf/NOTES.md "The stream task in the 1280 class"), exactly mimalloc's 1280-byte
    /// size class; 1456 (class 1536) before the resume state, the upstream's leftover bytes and
    /// the kept request were boxed or made smaller and the chunk-line scratch became the
    /// worker's. This test runs in a debug build, where the future is 8 bytes larger than in
    /// release (1240 against 1232).
    /// Since the fourth pass of issue 9 (perf/NOTES.md) 952 here: with the header the task fits
    /// mimalloc's 1024 class (the future at most 976), 256 bytes less per stream than the 1280
    /// class. Since the fifth pass, 856 here and 848 in release: with the header the task is
    /// 896 bytes, mimalloc's 896 class, 128 bytes less per stream than the 1024 class (the
    /// relay's future 736 -> 648 in release, the connection 192 -> 184 with `requests` a u32). Past 856 here, the
    /// release task most likely pays the 1024 class again.
    #[test]
    fn a_stream_task_stays_small() {
        let size = future_size2(&super::serve_stream::<monoio::net::TcpStream>);
        eprintln!("serve_stream future: {size} bytes");
        assert!(size <= 856, "serve_stream future is {size} bytes");
    }

    /// A TLS client's relay and connection task: what a TLS stream holds besides its session
    /// (whose buffers are rustls's, measured in perf/NOTES.md "Client TLS"). Printed, and
    /// bounded so that growth shows: the relay is the plain one's size class or the next.
    #[test]
    fn a_tls_relay_stays_small() {
        use crate::client_tls::TlsClient;
        let relay = future_size4(&crate::sse::relay::relay::<TlsClient>);
        let task = future_size(&super::serve_tls_client);
        eprintln!("TLS relay future: {relay} bytes; TLS connection task: {task} bytes");
        assert!(relay <= 1536, "TLS relay future is {relay} bytes");
        assert!(task <= 512, "TLS connection task is {task} bytes");
    }
}
