//! One request/response exchange through an upstream: forward the request head and stream its
//! body, read the response head (relaying 1xx), stream the response body back, and decide whether
//! each side's connection can be kept.
//!
//! Flush rule (enforced in `relay_body`): everything already read is framed and written before the
//! next read, in one writev; nothing ever waits for more input before being written. So a response
//! head leaves at once with whatever body bytes came with it, and each chunk or event leaves as it
//! arrives.

use std::mem;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};

use super::answer::{answer_error, send_continue};
use super::error::ProxyError;
use super::inspect::{read_up_to, readable_coding, InspectFailure, InspectedBody};
use super::join::{self, Joined};
use super::request_id::RequestId;
use super::request_rules::{self, RequestStage};
use super::session;
use super::tunnel::TunnelStart;
use crate::access_log::{AccessLine, LineKind, RequestStart};
use crate::client_stream::ClientStream;
use crate::conn_io::{
    read_more, read_more_timed, set_linger_zero, write_vec_within, ByteStream, BytesVec, IoFailure,
    PeekState,
};
use crate::conn_table::ConnGuard;
use crate::http::{
    expects_continue, request_body_kind, requests_upgrade, response_body_kind, response_keep_alive,
    write_edited_client_response, write_interim_response, write_switching_response,
    write_upstream_request, BodyDecoder, BodyKind, ChunkHeader, Decoded, ForwardContext,
    HeadScanner, HeaderEdit, HeaderField, HttpError, Method, OutFraming, RequestHead, ResponseHead,
    Version, CHUNK_END, LAST_CHUNK,
};
use crate::limits::{BODY_READ_BUFFER, CLIENT_WATCH_DELAY};
use crate::route::{Route, Unrouted};
use crate::rules::RequestRules;
use crate::sse::extras::StreamExtras;
use crate::sse::fanout::Fanout;
use crate::sse::follow::FollowStart;
use crate::sse::lookup::{self, ResumePoint, Resumption};
use crate::sse::relay::{SseStart, StartFrom};
use crate::sse::scope::ResumeScope;
use crate::timers::{Elapsed, TimerSlot};
use crate::upstream::connect::{self, UpstreamConn};
use crate::upstream::health::FailedTry;
use crate::upstream::pool::Reuse;
use crate::upstream::stream::UpstreamStream;
use crate::worker::WorkerCtx;

/// Free space reserved before each read of a head, in bytes.
const HEAD_READ_RESERVE: usize = 4 * 1024;

/// How the client connection continues after an exchange.
#[derive(Debug)]
pub enum Outcome {
    /// Response complete, both sides agree to keep the connection: read the next request.
    KeepAlive,
    /// Response complete, the connection ends (close requested, HTTP/1.0, drain, unread body).
    Close,
    /// The response was cut short (client gone, upstream died mid-body): close without lingering, so
    /// the client sees an incomplete message rather than a complete wrong one.
    Abort,
    /// An SSE response: the relay takes over the client connection. Returned rather than run
    /// here so that the exchange's state is freed first: a stream may stay open for hours, and
    /// what it holds meanwhile is memory per stream.
    Sse(Box<SseStart>),
    /// The upstream switched protocols (101): the connection becomes a byte tunnel
    /// (`super::tunnel`), returned rather than run here for the same reason as `Sse`.
    Tunnel(Box<TunnelStart>),
    /// The request follows a stream another connection reads (`super::join`).
    Follow(Box<FollowStart>),
    /// The request resumes a stream another worker reads live: the connection goes to it.
    HandOff(Box<HandOff>),
}

/// A connection handed to another worker, with the request it reads again there.
#[derive(Debug)]
pub struct HandOff {
    pub worker: usize,
    /// The request head's bytes, as read.
    pub head: Bytes,
}

/// An exchange that failed before any response byte reached the client: `forward` answers
/// `error.answer()` (when there is one) and closes.
struct Failed(ProxyError);

/// What an exchange learned that its access log line reports, filled in as it goes.
#[derive(Default)]
struct Tally {
    /// The response status sent to the client (0: none yet).
    status: u16,
    /// Bytes written to the client: response head, body and framing.
    bytes_to_client: u64,
    /// The replica the request went to.
    replica: Option<usize>,
    /// The request's route (None: no route matched).
    route: Option<Rc<Route>>,
}

/// What a client connection keeps from one request to the next, so that a keep-alive request
/// allocates neither a write list nor its heads' buffers.
#[derive(Default)]
pub struct Kept {
    /// The write list, emptied, with its allocations: the upstream and client writes.
    list: BytesVec,
    /// Room for the next request's upstream head and response head: each is written here and
    /// split off, and once both are gone (written, dropped) the next `reserve` takes the same
    /// storage back instead of allocating (`KEPT_HEADS_BUFFER`).
    heads: BytesMut,
    /// The field lists of the last request head and answer head, emptied, for the next ones
    /// to be parsed into (`KEPT_FIELDS`).
    request_fields: Vec<HeaderField>,
    response_fields: Vec<HeaderField>,
}

impl Kept {
    /// Where the connection's next request head lists its fields (`HeadScanner::next_head_reusing`).
    pub(crate) fn request_fields(&mut self) -> &mut Vec<HeaderField> {
        &mut self.request_fields
    }
}

/// The most fields a kept list holds room for (`Kept::request_fields`): a head with more keeps
/// its list to itself, so an idle connection never holds a large one.
const KEPT_FIELDS: usize = 32;

/// `fields`, emptied, into `slot` for the next head, unless it grew past `KEPT_FIELDS`.
fn keep_fields(slot: &mut Vec<HeaderField>, mut fields: Vec<HeaderField>) {
    if fields.capacity() <= KEPT_FIELDS {
        fields.clear();
        *slot = fields;
    }
}

/// The heads buffer a connection starts with and keeps (`Kept::heads`): a request head
/// rewritten for the upstream and a response head together, for common sizes; a buffer grown
/// past it by a large head is not kept.
const KEPT_HEADS_BUFFER: usize = 1024;

/// A head of `len` bytes written by `write` into the connection's kept buffer and split off
/// (`Kept::heads`; a fresh buffer when there is none).
fn write_head(kept: Option<&mut Kept>, len: usize, write: impl FnOnce(&mut BytesMut)) -> Bytes {
    let Some(kept) = kept else {
        let mut buf = BytesMut::with_capacity(len);
        write(&mut buf);
        return buf.freeze();
    };
    let buf = &mut kept.heads;
    if buf.capacity() == 0 {
        *buf = BytesMut::with_capacity(KEPT_HEADS_BUFFER.max(len));
    } else {
        buf.reserve(len);
    }
    write(buf);
    let head = buf.split().freeze();
    if buf.capacity() + head.len() > KEPT_HEADS_BUFFER {
        *buf = BytesMut::new();
    }
    head
}

/// Everything one exchange needs from its client connection.
pub struct ClientSide<'a, C: ClientStream> {
    pub stream: &'a mut C,
    /// Bytes read from the client and not yet consumed (body bytes, pipelined requests).
    pub buf: &'a mut BytesMut,
    pub peer: SocketAddr,
    pub guard: &'a ConnGuard,
    /// This request was handed over by another worker (`Outcome::HandOff`): never again.
    pub adopted: bool,
    /// What the connection keeps between requests (`Kept`). Boxed: an open connection's task
    /// grows by a pointer, not by the list and buffer (None until the first request's head is
    /// written upstream).
    pub out: &'a mut Option<Box<Kept>>,
    /// The connection's one timer, re-armed for each step of the exchange (the upstream write,
    /// the answer's head, the body's reads and writes): `TimerSlot::within`.
    pub timer: &'a mut TimerSlot,
}

impl<C: ClientStream> ClientSide<'_, C> {
    fn reborrow(&mut self) -> ClientSide<'_, C> {
        ClientSide {
            stream: &mut *self.stream,
            buf: &mut *self.buf,
            peer: self.peer,
            guard: self.guard,
            adopted: self.adopted,
            out: &mut *self.out,
            timer: &mut *self.timer,
        }
    }
}

/// Runs one request through an upstream and answers it, tether's own error answers included;
/// gives the request its id (`super::request_id`) and writes its access log line (a stream's or
/// tunnel's is written when it ends).
pub async fn forward<C: ClientStream>(
    ctx: &WorkerCtx,
    mut client: ClientSide<'_, C>,
    head: RequestHead,
) -> Outcome {
    let id = ctx.request_ids.of(&head);
    let log = ctx
        .access_log
        .as_ref()
        .map(|_| RequestStart::of(&head, client.peer, Instant::now()));
    let mut tally = Tally::default();
    let result = exchange(ctx, client.reborrow(), head, &id, log.as_ref(), &mut tally).await;
    let outcome = match result {
        // Answered (and logged) by the worker it goes to.
        Ok(outcome @ Outcome::HandOff(_)) => return outcome,
        Ok(outcome @ (Outcome::Sse(_) | Outcome::Tunnel(_) | Outcome::Follow(_))) => {
            if let Some(route) = &tally.route {
                route.stats.record_response(tally.status);
            }
            return outcome;
        }
        Ok(outcome) => outcome,
        Err(Failed(e)) => {
            let answered = answer_error(ctx, client.stream, client.peer, &e, &id).await;
            tally.status = answered.status;
            tally.bytes_to_client = answered.bytes;
            if answered.delivered {
                Outcome::Close
            } else {
                Outcome::Abort
            }
        }
    };
    if let Some(route) = &tally.route {
        route.stats.record_response(tally.status);
    }
    if let (Some(access), Some(start)) = (&ctx.access_log, &log) {
        let url = tally
            .replica
            .map(|r| ctx.upstreams.borrow().spec(r).url.clone());
        access.record(&AccessLine {
            worker: ctx.index,
            request_id: id.as_bytes(),
            start,
            route: tally.route.as_ref().and_then(|r| r.name.as_deref()),
            status: tally.status,
            bytes: tally.bytes_to_client,
            upstream: url.as_deref(),
            kind: LineKind::Request,
            h2: C::H2,
        });
    }
    outcome
}

/// The exchange proper; `forward` answers its failure.
async fn exchange<C: ClientStream>(
    ctx: &WorkerCtx,
    mut client: ClientSide<'_, C>,
    head: RequestHead,
    id: &RequestId,
    log: Option<&RequestStart>,
    tally: &mut Tally,
) -> Result<Outcome, Failed> {
    if head.method == Method::Connect {
        return Err(Failed(ProxyError::MethodNotSupported("CONNECT")));
    }
    let req_kind = request_body_kind(&head).map_err(|e| Failed(ProxyError::ClientProtocol(e)))?;
    // The route is resolved once, here, and held (an Rc) for the whole exchange and stream.
    let route = match ctx.route_for(&head) {
        Ok(route) => route,
        Err(Unrouted::NoMatch) => return Err(Failed(ProxyError::NoRoute)),
        Err(Unrouted::DotSegment) => {
            return Err(Failed(ProxyError::ClientProtocol(HttpError::DotSegment)))
        }
    };
    route.stats.record_request();
    tally.route = Some(route.clone());
    // An MCP session lives on the replica that made it; an id that does not open is answered
    // 404 before anything else (nothing reaches an upstream).
    let session = if route.settings.mcp {
        session::open_session(ctx, &route, &head).map_err(Failed)?
    } else {
        None
    };
    // Interceptor rules: decided once, from the head; a request no rule applies to has None
    // and takes the path without rules.
    let mut rules = request_rules::plan_for(&route, &head);
    let mut interim_sent = false;
    let mut inspected = None;
    if let Some(r) = rules.as_mut() {
        let stage = request_rules::run(ctx, &mut client, &head, req_kind, &route, r, id)
            .await
            .map_err(Failed)?;
        match stage {
            RequestStage::Forward { body, continued } => {
                inspected = body;
                interim_sent = continued;
            }
            RequestStage::Answered {
                status,
                bytes,
                keep_alive,
            } => {
                tally.status = status;
                tally.bytes_to_client = bytes;
                return Ok(if keep_alive {
                    Outcome::KeepAlive
                } else {
                    Outcome::Close
                });
            }
        }
    }
    // Header changes for the upstream: the rules', then the session's own id for tether's.
    let mut upstream_edits = rules
        .as_mut()
        .map(|r| mem::take(&mut r.upstream_edits))
        .unwrap_or_default();
    if let Some(s) = &session {
        upstream_edits.push(s.upstream_edit());
    }
    let pinned = session.as_ref().map(|s| s.replica);
    let session = session.map(Box::new);
    let cancel_on_leave = route.settings.mcp && session::cancels_on_leave(&head);
    let out_framing = match (&inspected, req_kind) {
        // Read whole for the rules: sent with its length, whatever its framing was.
        (Some(InspectedBody::Whole(body)), _) => OutFraming::Length(body.len() as u64),
        (_, BodyKind::Empty | BodyKind::UntilClose) => OutFraming::Empty,
        (_, BodyKind::Length(n)) => OutFraming::Length(n),
        (_, BodyKind::Chunked) => OutFraming::Chunked,
    };
    // A GET of a stream others of its target and identity already read (--coalesce) follows
    // it; the first one opens it for the others.
    let mut opening = None;
    let mut follow = None;
    let per_request = rules.is_some() || session.is_some();
    if join::coalescible(&route, &head, req_kind, per_request) {
        match join::join_or_open(ctx, &route, &head).await {
            Joined::Follow(lineage, fanout) => {
                let after = lineage.ring.borrow().head_seq();
                follow = Some((lineage, fanout, after));
            }
            Joined::Alone(guard) => opening = guard,
        }
    }
    // A reconnecting SSE client whose Last-Event-ID is in a replay ring: the upstream is asked to
    // resume from the newest event the ring holds, and the ring supplies what lies between; or
    // the stream is shared, held or finished, and the client follows it from its id.
    let scope = reconnection_scope(&route, &head).filter(|_| follow.is_none());
    let point = match scope {
        Some(scope) => match lookup::find(ctx, &head, &scope, !client.adopted).await {
            Some(Resumption::Follow {
                lineage,
                fanout,
                after,
            }) => {
                follow = Some((lineage, fanout, after));
                None
            }
            Some(Resumption::HandOff { worker }) => {
                crate::log_debug!("reconnection handed to worker {worker}, which reads its stream");
                return Ok(Outcome::HandOff(Box::new(HandOff {
                    worker,
                    head: head.bytes,
                })));
            }
            Some(Resumption::Ring(point)) => Some(point),
            None => None,
        },
        None => None,
    };
    if let Some((lineage, fanout, after)) = follow {
        tally.status = 200;
        let client = &mut client;
        return Ok(join::follow_outcome(
            ctx, client, &head, req_kind, lineage, fanout, after, route, id, log,
        ));
    }
    // A pooled connection may have been closed by the upstream just now; a request with no body and
    // an idempotent method can be sent again on a fresh connection if nothing came back, so a
    // connection that came back moments ago is trusted without the pool's probe.
    let retryable = req_kind == BodyKind::Empty && head.method.is_idempotent();
    let reuse = if retryable {
        Reuse::Retryable
    } else {
        Reuse::ProbedOnly
    };
    let acquired = match pinned {
        Some(replica) => connect::acquire_pinned(ctx, &route.upstreams, replica, reuse).await,
        None => connect::acquire(ctx, &route.upstreams, reuse).await,
    };
    let mut upstream = match acquired {
        Ok(up) => up,
        Err(e) => match point {
            // A reconnecting EventSource must never get a 5xx while the upstream is down (it
            // would stop for good): it gets what it missed from the ring and an open stream,
            // and the relay reconnects behind it.
            Some(point) => {
                let extras = extras_of(rules, upstream_edits, pinned, cancel_on_leave);
                return Ok(serve_from_ring(
                    ctx, client, head, point, route, extras, pinned, false, id, log, tally,
                ));
            }
            None => return Err(Failed(e.into())),
        },
    };
    let prefix = ctx.upstreams.borrow().spec(upstream.replica).prefix.clone();
    let upgrade = requests_upgrade(&head);
    let kept = client.out.get_or_insert_with(Box::default);
    let head_out = write_head(Some(kept), head.bytes.len() + 128, |buf| {
        write_upstream_request(
            &head,
            out_framing,
            &ForwardContext {
                client_addr: client.peer.ip(),
                proto: "http",
                path_prefix: prefix.as_bytes(),
                last_event_id: point.as_ref().map(|p| &p.resume_from[..]),
                method: None,
                request_id: Some(id.as_bytes()),
                upgrade,
                header_edits: &upstream_edits,
            },
            buf,
        )
    });
    // The exchange borrows the route; the stream it may become takes the Rc.
    let route_ref = route.clone();
    let mut exchange = Exchange {
        ctx,
        route: &route_ref,
        id,
        upgrade,
        tally,
        client,
        head,
        req_kind,
        out_framing,
        head_out,
        interim_sent,
        replay_pending: point.as_ref().is_some_and(|p| p.missed > 0),
        keep_response: opening.is_some(),
        inspected,
        carried: Carried {
            rules,
            upstream_edits,
            pinned,
            session,
            cancel_on_leave,
        },
    };

    loop {
        exchange
            .client
            .guard
            .set_upstream(Some(upstream.stream.as_raw_fd()));
        exchange.tally.replica = Some(upstream.replica);
        let result = exchange.run(&mut upstream).await;
        if !matches!(result, Ok(Step::Sse(_) | Step::Tunnel(_))) {
            exchange.client.guard.set_upstream(None);
        }
        match result {
            Err(Attempt::StaleUpstream) if upstream.reused && retryable => {
                crate::log_debug!("pooled upstream connection was closed; retrying elsewhere");
                let again = connect::acquire_again(
                    ctx,
                    &route.upstreams,
                    upstream.replica,
                    exchange.carried.pinned.is_some(),
                );
                upstream = match again.await {
                    Ok(fresh) => fresh,
                    Err(e) => {
                        return match point {
                            Some(point) => {
                                Ok(exchange.serve_ring(point, route.clone(), false, log))
                            }
                            None => Err(Failed(e.into())),
                        };
                    }
                };
            }
            Err(failure) => {
                if !upstream.reused && failure.is_before_answer() {
                    ctx.upstreams
                        .borrow()
                        .record_failure(upstream.replica, FailedTry::ClosedBeforeHead);
                }
                let e = match failure {
                    Attempt::StaleUpstream => ProxyError::UpstreamClosed,
                    Attempt::Failed(e) => {
                        // Abandoned mid-exchange: reset, so the upstream sees an aborted request
                        // rather than a clean end it might act on.
                        set_linger_zero(&upstream.stream);
                        e
                    }
                };
                // A reconnecting EventSource must never get a 5xx because the upstream failed
                // before answering (a replica dying, a backlog dropped): as when no upstream
                // can be reached, it gets what it missed from the ring and an open stream, and
                // the relay reconnects behind it.
                return match point {
                    Some(point) if e.is_upstream_failure() => {
                        crate::log_info!(
                            "sse {}: resumption failed upstream ({e}); serving the ring and reconnecting",
                            point.ring.lineage.scope.target()
                        );
                        Ok(exchange.serve_ring(point, route.clone(), false, log))
                    }
                    _ => Err(Failed(e)),
                };
            }
            Ok(Step::Done(outcome, reusable)) => {
                if let Some(kept) = exchange.client.out.as_deref_mut() {
                    keep_fields(
                        &mut kept.request_fields,
                        mem::take(&mut exchange.head.headers),
                    );
                }
                if reusable {
                    // Stamped now, at the answer's end, not when its request went up: an answer
                    // longer than --upstream-pool-idle (4 s by default) would come back already
                    // aged out, and its connection never be reused.
                    ctx.pool
                        .borrow_mut()
                        .put(upstream.replica, upstream.stream, upstream.buf);
                }
                return Ok(outcome);
            }
            Ok(Step::Sse(parts)) => {
                if exchange.client.buf.is_empty() {
                    // The stream may stay open for hours: hold no idle read buffer meanwhile.
                    *exchange.client.buf = BytesMut::new();
                }
                let mut request = exchange.head;
                detach_head(&mut request);
                let (ring, from, resume_from) = match point {
                    Some(p) => (
                        p.ring,
                        StartFrom::Replay { after: p.after },
                        Some(p.resume_from),
                    ),
                    None => {
                        let scope =
                            ResumeScope::of(&request, route.scope_key, &route.settings.identity);
                        (ctx.streams.create(&scope), StartFrom::Upstream, None)
                    }
                };
                // A coalesced stream: the requests of its key that come now join it.
                if let Some(guard) = opening.take() {
                    let response = parts.response;
                    ring.lineage.share(|| Fanout::new(true, response));
                    guard.go_live(ring.lineage.clone());
                }
                return Ok(Outcome::Sse(Box::new(SseStart {
                    framing: parts.framing,
                    head: parts.head,
                    up: Some(upstream.stream),
                    replica: upstream.replica,
                    ubuf: parts.ubuf,
                    decoder: parts.decoder,
                    ring,
                    from,
                    resume_from,
                    request,
                    keep_client: parts.keep_client,
                    route,
                    request_id: id.detached(),
                    log: log.map(RequestStart::detached),
                    extras: exchange.carried.stream_extras(),
                })));
            }
            Ok(Step::Tunnel(parts)) => {
                // Never pooled: the connection speaks the upgraded protocol now.
                return Ok(Outcome::Tunnel(Box::new(TunnelStart {
                    up: upstream.stream,
                    replica: upstream.replica,
                    head: parts.head,
                    ubuf: parts.ubuf,
                    request_id: id.detached(),
                    route: route.name.clone(),
                    log: log.map(RequestStart::detached),
                })));
            }
            Ok(Step::RingOutlives { status }) => {
                // The upstream answered the resumption with something other than a stream while
                // the ring holds events the client has not had: those first, then (for a final
                // answer such as 204) the end, or (for 5xx/408/429) the relay's reconnect loop.
                exchange.client.guard.set_upstream(None);
                let Some(point) = point else {
                    return Err(Failed(ProxyError::UpstreamClosed));
                };
                let retry = status >= 500 || status == 408 || status == 429;
                crate::log_info!(
                    "sse {}: resumption answered {status}; serving the ring's {} missed events first",
                    point.ring.lineage.scope.target(),
                    point.missed
                );
                return Ok(exchange.serve_ring(point, route.clone(), !retry, log));
            }
        }
    }
}

/// The scope of a request that may be a reconnection served from a ring: one carrying a
/// non-empty `Last-Event-ID`. Anything else never looks at the rings.
fn reconnection_scope(route: &Route, head: &RequestHead) -> Option<ResumeScope> {
    // Any method: a comeback to a held stream may repeat the original request (a POST with
    // Last-Event-ID); only a GET is ever resumed upstream (`lookup::find`).
    let reconnecting = head.header("last-event-id").is_some_and(|v| !v.is_empty());
    reconnecting.then(|| ResumeScope::of(head, route.scope_key, &route.settings.identity))
}

/// Gives a request head that will live as long as its stream its own exact allocation, instead of
/// a slice that keeps the connection's whole read buffer alive.
fn detach_head(head: &mut RequestHead) {
    head.bytes = Bytes::copy_from_slice(&head.bytes);
    head.headers.shrink_to_fit();
}

/// Answers a reconnection from the replay ring while no upstream streams it: a 200
/// `text/event-stream` head of tether's own, the missed events, then the relay's reconnect loop
/// (`end_after_replay` false) or the end of the response (the upstream has ended the stream).
#[allow(clippy::too_many_arguments)]
fn serve_from_ring<C: ClientStream>(
    ctx: &WorkerCtx,
    client: ClientSide<'_, C>,
    mut head: RequestHead,
    point: ResumePoint,
    route: Rc<Route>,
    extras: Option<Box<StreamExtras>>,
    pinned: Option<usize>,
    end_after_replay: bool,
    id: &RequestId,
    log: Option<&RequestStart>,
    tally: &mut Tally,
) -> Outcome {
    let http11 = head.version == Version::Http11;
    let framing = join::sse_framing(head.version);
    let keep_client = http11 && crate::http::request_keep_alive(&head) && !client.guard.draining();
    let mut out = BytesMut::with_capacity(160);
    join::own_sse_head(http11, keep_client, id, &mut out);
    ctx.metrics.record_response(200);
    tally.status = 200;
    if client.buf.is_empty() {
        *client.buf = BytesMut::new();
    }
    detach_head(&mut head);
    let from = if end_after_replay {
        StartFrom::ReplayThenEnd { after: point.after }
    } else {
        StartFrom::Replay { after: point.after }
    };
    Outcome::Sse(Box::new(SseStart {
        framing,
        head: out.freeze(),
        up: None,
        replica: pinned.unwrap_or_else(|| route.upstreams.next_replica()),
        ubuf: BytesMut::new(),
        decoder: BodyDecoder::new(BodyKind::Empty),
        ring: point.ring,
        from,
        resume_from: Some(point.resume_from),
        request: head,
        keep_client,
        route,
        request_id: id.detached(),
        log: log.map(RequestStart::detached),
        extras,
    }))
}

/// What a stream keeps of its request: the rules' plan when it has event rules (every event
/// passes them), the header changes every resume sends, whether it is pinned to its replica.
fn extras_of(
    rules: Option<Box<RequestRules>>,
    upstream_edits: Vec<HeaderEdit>,
    pinned: Option<usize>,
    cancel_on_leave: bool,
) -> Option<Box<StreamExtras>> {
    StreamExtras::of(
        rules.map(|r| r.plan),
        upstream_edits,
        pinned.is_some(),
        cancel_on_leave,
    )
}

/// What an attempt produced.
enum Step {
    /// The exchange is over: the client outcome, and whether the upstream can be pooled.
    Done(Outcome, bool),
    /// A `text/event-stream` response: the SSE relay takes over the upstream socket.
    Sse(SseParts),
    /// A resumption served from a ring was answered with `status` and no stream: the ring's
    /// missed events must still reach the client (nothing was sent to it yet).
    RingOutlives { status: u16 },
    /// The upstream switched protocols for an upgrade request: the tunnel takes both sockets.
    Tunnel(TunnelParts),
}

/// The pieces of a 101 answer the tunnel continues from.
struct TunnelParts {
    /// The client's 101 head, written.
    head: Bytes,
    /// Upstream bytes that came after the 101 head (the new protocol's first bytes).
    ubuf: BytesMut,
}

/// The pieces of a response the SSE relay continues from.
struct SseParts {
    /// The client response head, written.
    head: Bytes,
    framing: OutFraming,
    ubuf: BytesMut,
    decoder: BodyDecoder,
    keep_client: bool,
    /// The upstream's head in an allocation of its own, for the clients that join a coalesced
    /// stream (None unless the stream is shared).
    response: Option<ResponseHead>,
}

enum Attempt {
    /// The upstream closed before answering anything: maybe a stale pooled connection.
    StaleUpstream,
    Failed(ProxyError),
}

impl Attempt {
    /// The upstream closed or reset the connection before a complete answer: a failed try of the
    /// replica when the connection was fresh (passive health).
    fn is_before_answer(&self) -> bool {
        matches!(
            self,
            Attempt::StaleUpstream | Attempt::Failed(ProxyError::UpstreamClosed)
        )
    }
}

impl From<ProxyError> for Attempt {
    fn from(e: ProxyError) -> Self {
        Attempt::Failed(e)
    }
}

struct Exchange<'c, 'a, C: ClientStream> {
    ctx: &'c WorkerCtx,
    /// The request's route: its upstream group and per-request timeouts.
    route: &'c Route,
    /// The request's id, sent back on every response head.
    id: &'c RequestId,
    /// The request asks to switch protocols: a 101 answer becomes a tunnel.
    upgrade: bool,
    /// What the access log line will report.
    tally: &'c mut Tally,
    client: ClientSide<'a, C>,
    head: RequestHead,
    req_kind: BodyKind,
    /// How the request body is framed towards the upstream.
    out_framing: OutFraming,
    /// The upstream request head, built once (a retry sends the same bytes).
    head_out: Bytes,
    /// A `100 Continue` went to the client already (never twice).
    interim_sent: bool,
    /// A ring holds events this reconnecting client has not had: a non-stream answer must not
    /// reach the client before them.
    replay_pending: bool,
    /// The request body when the rules read it whole (or its start, past the limit).
    inspected: Option<InspectedBody>,
    /// The stream this request opens is shared (--coalesce): its response head is kept for the
    /// clients that join it.
    keep_response: bool,
    /// What the request carries that its stream may keep.
    carried: Carried,
}

impl<C: ClientStream> Exchange<'_, '_, C> {
    /// A reconnecting client whose upstream cannot continue its stream gets what it missed from
    /// the ring, with what the request carried (rules, edits, pinning), then the end
    /// (`end_after_replay`) or an open stream the relay keeps reconnecting behind.
    fn serve_ring(
        mut self,
        point: ResumePoint,
        route: Rc<Route>,
        end_after_replay: bool,
        log: Option<&RequestStart>,
    ) -> Outcome {
        let extras = self.carried.stream_extras();
        serve_from_ring(
            self.ctx,
            self.client,
            self.head,
            point,
            route,
            extras,
            self.carried.pinned,
            end_after_replay,
            self.id,
            log,
            self.tally,
        )
    }
}

/// What a request carries besides its head that the stream it may become keeps: its rules,
/// the header changes for the upstream, an MCP session and the replica it is pinned to.
struct Carried {
    /// The request's interceptor rules (None: no rule applies to it).
    rules: Option<Box<RequestRules>>,
    /// Header changes sent upstream (the rules', an MCP session's own id); every resume of a
    /// stream sends them too.
    upstream_edits: Vec<HeaderEdit>,
    /// The replica an MCP session lives on: the only one tried, for the request and its
    /// stream's resumes.
    pinned: Option<usize>,
    /// The request's MCP session (boxed: rare, and the exchange is on every request's path).
    session: Option<Box<session::PinnedSession>>,
    /// Closing the response cancels the request (MCP 2026-07-28): its stream is never resumed
    /// and its upstream is closed as soon as the client leaves.
    cancel_on_leave: bool,
}

impl Carried {
    /// What the stream keeps of it (most streams: nothing).
    fn stream_extras(&mut self) -> Option<Box<StreamExtras>> {
        extras_of(
            self.rules.take(),
            mem::take(&mut self.upstream_edits),
            self.pinned,
            self.cancel_on_leave,
        )
    }
}

impl<C: ClientStream> Exchange<'_, '_, C> {
    /// Sends the request and relays the response. Ok carries the outcome for the client and
    /// whether the upstream connection may be pooled.
    async fn run(&mut self, upstream: &mut UpstreamConn) -> Result<Step, Attempt> {
        let t = self.ctx.config.timeouts;
        let r = &self.route.settings;
        let replica = upstream.replica;
        let fresh = !upstream.reused;
        let up = &mut upstream.stream;

        // ---- request head, then body ----
        let mut out = self
            .client
            .out
            .as_deref_mut()
            .map(|kept| mem::take(&mut kept.list))
            .unwrap_or_default();
        out.push(self.head_out.clone());
        let mut request_complete = true;
        // The write list back from the request's last write, emptied, for the response.
        let mut written: Option<BytesVec> = None;
        let inspected = self.inspected.take();
        if let Some(InspectedBody::Whole(body)) = inspected {
            // Read whole for the rules: it leaves with the head, with its length.
            out.push(body);
            if fresh {
                up.send_now_if_plain(&mut out);
            }
            match up.write_vec_timed(out, t.send, self.client.timer).await {
                Ok(back) => written = Some(back),
                // The upstream may have answered early; its answer is read below.
                Err(_) => request_complete = false,
            }
        } else if self.req_kind == BodyKind::Empty {
            // A fresh connection's request goes out at once (see `send_now_if_plain`); a pooled
            // one's through the runtime, which keep-alive HTTP measured faster (`write_vec_tcp`).
            if fresh {
                up.send_now_if_plain(&mut out);
            }
            match up.write_vec_timed(out, t.send, self.client.timer).await {
                Ok(back) => written = Some(back),
                Err(_) => return Err(Attempt::StaleUpstream),
            }
        } else {
            if expects_continue(&self.head) && self.client.buf.is_empty() && !self.interim_sent {
                // The client waits for this before sending its body; the upstream never sees
                // Expect (it is answered here, the upstream is already connected).
                send_continue(self.client.stream, self.head.version, t.send).await?;
                self.interim_sent = true;
            }
            let framing = self.out_framing;
            // Past the rules' limit: what they read leaves first, the rest is relayed.
            let mut decoder = match inspected {
                Some(InspectedBody::Over { read, decoder }) => {
                    let mut scratch = BytesMut::new();
                    for piece in read {
                        push_framed(&mut out, &mut scratch, framing, piece);
                    }
                    decoder
                }
                _ => BodyDecoder::new(self.req_kind),
            };
            let mut sent_up = 0u64;
            match relay_body(
                self.client.stream,
                self.client.buf,
                &mut decoder,
                up,
                framing,
                out,
                Timeouts {
                    read: r.body_timeout,
                    send: t.send,
                    timer: self.client.timer,
                },
                &mut sent_up,
            )
            .await
            {
                Ok(back) => written = Some(back),
                Err(RelayError::Read(ReadFailure::TimedOut)) => {
                    return Err(ProxyError::ClientBodyTimeout.into())
                }
                Err(RelayError::Read(ReadFailure::Closed | ReadFailure::Io(_))) => {
                    return Err(ProxyError::ClientGone.into())
                }
                Err(RelayError::Read(ReadFailure::Invalid(e))) => {
                    return Err(ProxyError::ClientProtocol(e).into())
                }
                Err(RelayError::Write) => {
                    // The upstream stopped taking the body; it may have answered early (413...).
                    // Read what it said; the client connection cannot be reused (body unread).
                    request_complete = false;
                }
            }
        }

        // ---- response head (1xx relayed) ----
        // One clock read for the answer's deadline and the client watch's start.
        let sent_at = Instant::now();
        let deadline = sent_at + r.upstream_header_timeout;
        let watch_from = sent_at + CLIENT_WATCH_DELAY;
        let mut ubuf = mem::take(&mut upstream.buf);
        let response = loop {
            let head = self
                .read_response_head(up, &mut ubuf, deadline, watch_from)
                .await?;
            if (100..200).contains(&head.status) {
                if head.status == 101 {
                    // Only an upgrade the client asked for, and only once its whole request
                    // went up: a 101 to anything else cannot be relayed.
                    if !self.upgrade || !request_complete {
                        return Err(ProxyError::UpstreamSwitchedProtocols.into());
                    }
                    self.ctx.upstreams.borrow().record_answer(replica, 101);
                    self.ctx.metrics.record_response(101);
                    let mut head_bytes = BytesMut::with_capacity(head.bytes.len() + 64);
                    write_switching_response(&head, self.id.as_bytes(), &mut head_bytes);
                    self.tally.status = 101;
                    return Ok(Step::Tunnel(TunnelParts {
                        head: head_bytes.freeze(),
                        ubuf,
                    }));
                }
                // 100 was answered by the proxy itself; other 1xx (103 Early Hints...) go to
                // HTTP/1.1 clients as they are.
                if head.status != 100 && self.head.version == Version::Http11 {
                    let mut interim = BytesMut::new();
                    write_interim_response(&head, &mut interim);
                    let mut v = BytesVec::new();
                    v.push(interim.freeze());
                    if write_vec_within(self.client.stream, v, t.send)
                        .await
                        .is_err()
                    {
                        return Err(ProxyError::ClientGone.into());
                    }
                }
                continue;
            }
            break head;
        };
        // Passive health: a 5xx counts against the replica, any other answer for it.
        self.ctx
            .upstreams
            .borrow()
            .record_answer(replica, response.status);

        // ---- response framing, both sides ----
        let framing = response_body_kind(self.head.method, &response)
            .map_err(ProxyError::UpstreamProtocol)?;
        let client_version = self.head.version;
        let advertised = advertised_framing(&response, framing.kind, client_version);
        let mut keep_client = request_complete
            && crate::http::request_keep_alive(&self.head)
            && !self.client.guard.draining()
            && advertised != OutFraming::CloseDelimited;
        // Any body bytes the client sent beyond what we consumed belong to the next request; if the
        // request body was not consumed completely the connection cannot continue.
        if !request_complete {
            keep_client = false;
        }
        let mut reusable = request_complete
            && !framing.must_close
            && framing.kind != BodyKind::UntilClose
            && response_keep_alive(&response);

        let streams =
            response.status == 200 && response.is_event_stream() && framing.kind != BodyKind::Empty;
        if self.replay_pending && !streams {
            return Ok(Step::RingOutlives {
                status: response.status,
            });
        }

        // ---- the rules' response stage: header changes, a JSON body read whole ----
        let mut edits = Vec::new();
        let mut body_read = None;
        if let Some(rules) = &self.carried.rules {
            let plan = &rules.plan;
            if !streams
                && framing.kind != BodyKind::Empty
                && plan.needs_response_body(&response)
                && readable_coding(response.headers_named("content-encoding"))
            {
                let read = read_up_to(
                    up,
                    &mut ubuf,
                    BodyDecoder::new(framing.kind),
                    r.max_inspect_bytes,
                    r.body_timeout,
                )
                .await
                .map_err(|e| match e {
                    InspectFailure::Invalid(e) => ProxyError::UpstreamProtocol(e),
                    InspectFailure::Closed | InspectFailure::TimedOut => {
                        ProxyError::UpstreamBodyForRules
                    }
                })?;
                body_read = Some(read);
            }
            let whole = match &body_read {
                Some(InspectedBody::Whole(body)) => Some(&body[..]),
                _ => None,
            };
            let outcome = plan.run_response(&self.head, &response, whole);
            edits = outcome.edits;
            if let (Some(new), Some(InspectedBody::Whole(_))) = (outcome.body, &body_read) {
                body_read = Some(InspectedBody::Whole(new));
            }
        }
        // An MCP session the upstream names reaches the client sealed, never as it is.
        if self.route.settings.mcp {
            if let Some(sealed) = session::sealed_for_client(
                self.ctx,
                self.route,
                replica,
                &self.head,
                &response,
                self.carried.session.as_deref(),
            )? {
                edits.push(sealed);
            }
        }
        self.ctx.metrics.record_response(response.status);
        self.tally.status = response.status;
        if streams {
            // The relay streams it event by event and may splice, replay or cut it: the client
            // always gets it chunked (close-delimited for HTTP/1.0), whatever length the upstream
            // declared. Never pooled afterwards (streams end by close).
            let sse_framing = join::sse_framing(client_version);
            let keep_client = keep_client && sse_framing == OutFraming::Chunked;
            let mut head_bytes = BytesMut::with_capacity(response.bytes.len() + 64);
            write_edited_client_response(
                &response,
                sse_framing,
                keep_client,
                client_version,
                self.id.as_bytes(),
                &edits,
                &mut head_bytes,
            );
            let response = self.keep_response.then(|| ResponseHead {
                bytes: Bytes::copy_from_slice(&response.bytes),
                headers: response.headers.clone(),
                ..response
            });
            return Ok(Step::Sse(SseParts {
                head: head_bytes.freeze(),
                framing: sse_framing,
                ubuf,
                decoder: BodyDecoder::new(framing.kind),
                keep_client,
                response,
            }));
        }

        // A body the rules read whole leaves with its length (rewritten or not).
        let advertised = match &body_read {
            Some(InspectedBody::Whole(body)) => OutFraming::Length(body.len() as u64),
            _ => advertised,
        };
        let head_bytes = write_head(
            self.client.out.as_deref_mut(),
            response.bytes.len() + 64,
            |buf| {
                write_edited_client_response(
                    &response,
                    advertised,
                    keep_client,
                    client_version,
                    self.id.as_bytes(),
                    &edits,
                    buf,
                )
            },
        );
        if let Some(kept) = self.client.out.as_deref_mut() {
            keep_fields(&mut kept.response_fields, response.headers);
        }
        let mut out = written.unwrap_or_default();
        out.push(head_bytes);

        // ---- response body ----
        let body_framing = if matches!(framing.kind, BodyKind::Empty) {
            OutFraming::Empty
        } else {
            advertised
        };
        let mut decoder = match body_read {
            Some(InspectedBody::Whole(body)) => {
                out.push(body);
                BodyDecoder::new(BodyKind::Empty)
            }
            Some(InspectedBody::Over { read, decoder }) => {
                let mut scratch = BytesMut::new();
                for piece in read {
                    push_framed(&mut out, &mut scratch, body_framing, piece);
                }
                decoder
            }
            None => BodyDecoder::new(framing.kind),
        };
        match relay_body(
            up,
            &mut ubuf,
            &mut decoder,
            self.client.stream,
            body_framing,
            out,
            Timeouts {
                read: r.body_timeout,
                send: t.send,
                timer: self.client.timer,
            },
            &mut self.tally.bytes_to_client,
        )
        .await
        {
            Ok(back) => keep_write_list(self.client.out, back),
            Err(RelayError::Read(failure)) => {
                crate::log_debug!("upstream body failed mid-response: {failure}");
                return Ok(Step::Done(Outcome::Abort, false));
            }
            Err(RelayError::Write) => return Ok(Step::Done(Outcome::Abort, false)),
        }
        if !ubuf.is_empty() {
            // The upstream sent bytes past its response: it cannot be trusted with another request.
            reusable = false;
        } else if ubuf.capacity() <= KEPT_UPSTREAM_BUFFER {
            // Read into again by the next exchange on this connection: once this answer's
            // slices are dropped the storage is reclaimed instead of a new one allocated.
            upstream.buf = ubuf;
        }
        Ok(Step::Done(
            if keep_client {
                Outcome::KeepAlive
            } else {
                Outcome::Close
            },
            reusable,
        ))
    }

    /// Reads until a complete response head, watching the client for a disconnect once the
    /// upstream is slow. EOF before any byte is `StaleUpstream` (the caller decides on a retry).
    async fn read_response_head(
        &mut self,
        up: &mut UpstreamStream,
        ubuf: &mut BytesMut,
        deadline: Instant,
        watch_from: Instant,
    ) -> Result<ResponseHead, Attempt> {
        let limits = self.ctx.config.head_limits;
        let mut scanner = HeadScanner::new();
        let mut received_any = !ubuf.is_empty();
        loop {
            let parsed = match self.client.out.as_deref_mut() {
                Some(kept) => scanner.next_head_reusing::<ResponseHead>(
                    ubuf,
                    &limits,
                    &mut kept.response_fields,
                ),
                None => scanner.next_head::<ResponseHead>(ubuf, &limits),
            };
            match parsed {
                Ok(Some(head)) => return Ok(head),
                Ok(None) => {}
                Err(e) => return Err(ProxyError::UpstreamProtocol(e).into()),
            }
            let (n, buf) = read_watching_client(
                up,
                mem::take(ubuf),
                self.client.stream,
                self.client.timer,
                deadline,
                watch_from,
            )
            .await?;
            *ubuf = buf;
            if n == 0 {
                return Err(if received_any {
                    ProxyError::UpstreamClosed.into()
                } else {
                    Attempt::StaleUpstream
                });
            }
            received_any = true;
        }
    }
}

/// One read from the upstream bounded by `deadline`; from `watch_from` (`CLIENT_WATCH_DELAY` after
/// the request went up) it also watches the client and gives up when the client has gone. On any error the upstream read was dropped in
/// flight, so the upstream connection must be closed (the caller never pools it after an error).
async fn read_watching_client<C: ClientStream>(
    up: &mut UpstreamStream,
    buf: BytesMut,
    client: &C,
    timer: &mut TimerSlot,
    deadline: Instant,
    watch_from: Instant,
) -> Result<(usize, BytesMut), Attempt> {
    let done = |(res, buf): (std::io::Result<usize>, BytesMut)| match res {
        Ok(n) => Ok((n, buf)),
        Err(_) => Err(Attempt::StaleUpstream),
    };
    let mut read = std::pin::pin!(read_more(up, buf, HEAD_READ_RESERVE));
    // The common case: the answer comes before the client is worth watching, and the step costs
    // the connection's timer only.
    match timer
        .within_until(deadline.min(watch_from), read.as_mut())
        .await
    {
        Ok(got) => return done(got),
        Err(Elapsed) if deadline <= watch_from => {
            return Err(ProxyError::UpstreamHeadTimeout.into())
        }
        Err(Elapsed) => {}
    }
    // A slow upstream (rare): watch the client too, until the deadline (a monoio timer, as
    // before the connection's timer; this path is not per request).
    // The client sent more bytes (a pipelined request): its socket stays readable, so stop watching.
    let mut watching = true;
    loop {
        monoio::select! {
            got = read.as_mut() => return done(got),
            _ = monoio::time::sleep_until(deadline.into()) => {
                return Err(ProxyError::UpstreamHeadTimeout.into())
            }
            ready = client.tcp().readable(false), if watching => {
                match (ready, client.peek_state()) {
                    (Err(_), _) | (_, PeekState::Closed) => return Err(ProxyError::ClientGone.into()),
                    (_, PeekState::HasData) => watching = false,
                    (_, PeekState::Quiet) => {}
                }
            }
        }
    }
}

/// What the client is told about the body's framing. HEAD and 304 answers carry the upstream's
/// Content-Length (it describes the representation) but no body; 1xx and 204 carry neither.
fn advertised_framing(response: &ResponseHead, kind: BodyKind, client: Version) -> OutFraming {
    let streamed = if client == Version::Http11 {
        OutFraming::Chunked
    } else {
        OutFraming::CloseDelimited
    };
    match kind {
        BodyKind::Length(n) => OutFraming::Length(n),
        BodyKind::Chunked | BodyKind::UntilClose => streamed,
        BodyKind::Empty => {
            if response.status == 204 || response.status < 200 {
                return OutFraming::Empty;
            }
            match response.header("content-length").and_then(parse_length) {
                Some(n) => OutFraming::Length(n),
                None => OutFraming::Empty,
            }
        }
    }
}

/// Content-Length digits (the codec already validated framing for bodies that exist).
fn parse_length(v: &[u8]) -> Option<u64> {
    crate::http::parse_decimal(v).ok()
}

#[derive(Debug)]
enum ReadFailure {
    TimedOut,
    /// The source ended before the body did.
    Closed,
    Io(std::io::Error),
    Invalid(HttpError),
}

impl std::fmt::Display for ReadFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadFailure::TimedOut => f.write_str("no bytes within the body timeout"),
            ReadFailure::Closed => f.write_str("connection closed before the body ended"),
            ReadFailure::Io(e) => write!(f, "{e}"),
            ReadFailure::Invalid(e) => write!(f, "{e}"),
        }
    }
}

#[derive(Debug)]
enum RelayError {
    Read(ReadFailure),
    /// The receiving side failed or stalled; it is closed either way.
    Write,
}

/// Streams one body from `src` to `dst` (client to upstream, or upstream to client; either
/// may be TLS when it is the upstream): decode what `src_buf` holds, frame it for `dst`, write it
/// all (one writev, together with anything already queued in `out`, such as a response head),
/// then read more. Memory stays bounded by one read whatever the body size.
/// `written` counts the bytes `dst` took. Not cancel-safe; on error both sockets are closed by
/// the caller.
#[allow(clippy::too_many_arguments)]
async fn relay_body(
    src: &mut impl ByteStream,
    src_buf: &mut BytesMut,
    decoder: &mut BodyDecoder,
    dst: &mut impl ByteStream,
    framing: OutFraming,
    mut out: BytesVec,
    limits: Timeouts<'_>,
    written: &mut u64,
) -> Result<BytesVec, RelayError> {
    let Timeouts {
        read: read_timeout,
        send: send_timeout,
        timer,
    } = limits;
    // Chunk-size lines are written into one small buffer and handed out as slices of it, instead
    // of one allocation per chunk.
    let mut scratch = BytesMut::new();
    loop {
        while !src_buf.is_empty() && !decoder.is_done() {
            match decoder
                .decode(src_buf)
                .map_err(|e| RelayError::Read(ReadFailure::Invalid(e)))?
            {
                Decoded::Data { start, end } => {
                    let piece = src_buf.split_to(end).freeze().slice(start..);
                    push_framed(&mut out, &mut scratch, framing, piece);
                }
                Decoded::NeedMore => src_buf.clear(),
                Decoded::Done { consumed } => src_buf.advance(consumed),
            }
        }
        let finished = decoder.is_done();
        if finished && framing == OutFraming::Chunked {
            out.push_static(LAST_CHUNK);
        }
        if !out.is_empty() {
            *written += out.remaining() as u64;
            out = dst
                .write_vec_timed(out, send_timeout, timer)
                .await
                .map_err(|_| RelayError::Write)?;
        }
        if finished {
            return Ok(out);
        }
        let read = read_more_timed(
            src,
            mem::take(src_buf),
            BODY_READ_BUFFER,
            read_timeout,
            timer,
        );
        match read.await {
            Ok((0, buf)) => {
                *src_buf = buf;
                decoder
                    .eof()
                    .map_err(|_| RelayError::Read(ReadFailure::Closed))?;
            }
            Ok((_, buf)) => *src_buf = buf,
            Err(IoFailure::TimedOut) => return Err(RelayError::Read(ReadFailure::TimedOut)),
            Err(IoFailure::Io(e)) => return Err(RelayError::Read(ReadFailure::Io(e))),
        }
    }
}

/// How long `relay_body` waits for each read and each write pass, through the connection's timer.
struct Timeouts<'a> {
    read: Duration,
    send: Duration,
    timer: &'a mut TimerSlot,
}

/// Keeps an emptied write list for the connection's next request, unless a long response grew it
/// past what a head and a few body pieces need (its memory then goes back at once).
fn keep_write_list(slot: &mut Option<Box<Kept>>, out: BytesVec) {
    if out.part_capacity() > KEPT_WRITE_PARTS {
        return;
    }
    slot.get_or_insert_with(Box::default).list = out;
}

/// Room an upstream connection's emptied read buffer may keep for its next answer (a head's
/// reserve and a body read's); a buffer grown past it goes back at once.
const KEPT_UPSTREAM_BUFFER: usize = HEAD_READ_RESERVE + BODY_READ_BUFFER;

/// Parts a kept write list may have room for: a response head, body pieces with their chunk
/// framing, and the last chunk fit; a list grown past it by a chunked body is not kept.
const KEPT_WRITE_PARTS: usize = 16;

/// Queues one body piece with the framing the receiver expects.
fn push_framed(out: &mut BytesVec, scratch: &mut BytesMut, framing: OutFraming, piece: Bytes) {
    /// Room for many chunk-size lines (at most 18 bytes each) per allocation.
    const SCRATCH_BLOCK: usize = 512;
    if piece.is_empty() {
        return;
    }
    if framing == OutFraming::Chunked {
        let header = ChunkHeader::new(piece.len());
        if scratch.capacity() - scratch.len() < header.as_bytes().len() {
            *scratch = BytesMut::with_capacity(SCRATCH_BLOCK);
        }
        scratch.extend_from_slice(header.as_bytes());
        out.push(scratch.split().freeze());
        out.push(piece);
        out.push_static(CHUNK_END);
    } else {
        out.push(piece);
    }
}
