//! A request that follows a stream instead of opening its own upstream: a GET joining a live
//! coalesced stream of its target and identity (`--coalesce`), or a reconnection whose
//! `Last-Event-ID` lies in a stream that is shared, held for it, or finished
//! (`crate::sse::fanout`). Its answer is a head of its own and the ring's events from its cursor.

use std::rc::Rc;
use std::time::Instant;

use bytes::BytesMut;

use super::exchange::{ClientSide, Outcome};
use super::request_id::RequestId;
use crate::access_log::RequestStart;
use crate::http::{
    request_keep_alive, requests_upgrade, write_edited_client_response, BodyKind, Method,
    OutFraming, RequestHead, Version,
};
use crate::metrics::WorkerMetrics;
use crate::route::Route;
use crate::sse::coalesce::{Coalesce, OpeningGuard};
use crate::sse::fanout::Fanout;
use crate::sse::follow::FollowStart;
use crate::sse::scope::ResumeScope;
use crate::sse::table::Lineage;
use crate::worker::WorkerCtx;

/// Whether a request may share a stream with others of its target and identity: a GET without a
/// body, no Last-Event-ID of its own, not an upgrade, and nothing per request that changes what
/// it gets (rules that apply to it, an MCP session).
pub(super) fn coalescible(
    route: &Route,
    head: &RequestHead,
    body: BodyKind,
    per_request: bool,
) -> bool {
    route.settings.sse.coalesce
        && head.method == Method::Get
        && body == BodyKind::Empty
        && !per_request
        && head.header("last-event-id").is_none_or(|v| v.is_empty())
        && !requests_upgrade(head)
}

/// What a coalescible request does.
pub(super) enum Joined<'t> {
    /// Follow this live stream from its head.
    Follow(Rc<Lineage>, Rc<Fanout>),
    /// Go upstream; with a guard when this request opens the stream others will join.
    Alone(Option<OpeningGuard<'t>>),
}

/// Joins the live stream of the request's key, or waits for the one being opened, or opens it.
/// A wait lasts at most the time the opening request may take for its answer; past it (or when
/// the opening ended without a stream) the request goes on by itself.
pub(super) async fn join_or_open<'t>(
    ctx: &'t WorkerCtx,
    route: &Route,
    head: &RequestHead,
) -> Joined<'t> {
    let scope = ResumeScope::of(head, route.scope_key, &route.settings.identity);
    let deadline =
        Instant::now() + route.settings.connect_timeout + route.settings.upstream_header_timeout;
    let mut waited = false;
    loop {
        match ctx.coalesce.check(&scope) {
            Coalesce::Join(lineage) => {
                let Some(fanout) = lineage.fanout() else {
                    return Joined::Alone(None);
                };
                WorkerMetrics::inc(&ctx.metrics.sse_coalesced);
                return Joined::Follow(lineage, fanout);
            }
            Coalesce::Open(guard) => return Joined::Alone(Some(guard)),
            // Once only: an opening that settled without a stream lets every waiter go alone
            // rather than open one after the other.
            Coalesce::Wait(_) if waited => return Joined::Alone(None),
            Coalesce::Wait(opening) => {
                waited = true;
                if monoio::time::timeout_at(deadline.into(), opening.settled())
                    .await
                    .is_err()
                {
                    return Joined::Alone(None);
                }
            }
        }
    }
}

/// The answer of a request that follows `lineage` from seq `after`: a 200 head (the upstream's
/// fields when the stream kept them, tether's own otherwise), then the follower's relay.
#[allow(clippy::too_many_arguments)]
pub(super) fn follow_outcome<C: crate::client_stream::ClientStream>(
    ctx: &WorkerCtx,
    client: &mut ClientSide<'_, C>,
    head: &RequestHead,
    body: BodyKind,
    lineage: Rc<Lineage>,
    fanout: Rc<Fanout>,
    after: u64,
    route: Rc<Route>,
    id: &RequestId,
    log: Option<&RequestStart>,
) -> Outcome {
    let http11 = head.version == Version::Http11;
    let framing = sse_framing(head.version);
    // A request body (a comeback that repeats its POST) is never read: the connection closes
    // after the stream rather than read the body as the next request.
    let keep_client =
        http11 && body == BodyKind::Empty && request_keep_alive(head) && !client.guard.draining();
    let mut out = BytesMut::with_capacity(256);
    match &fanout.response {
        Some(response) => write_edited_client_response(
            response,
            framing,
            keep_client,
            head.version,
            id.as_bytes(),
            &[],
            &mut out,
        ),
        None => own_sse_head(http11, keep_client, id, &mut out),
    }
    ctx.metrics.record_response(200);
    if client.buf.is_empty() {
        // The stream may stay open for hours: hold no idle read buffer meanwhile.
        *client.buf = BytesMut::new();
    }
    Outcome::Follow(Box::new(FollowStart {
        framing,
        head: out.freeze(),
        lineage,
        fanout,
        after,
        keep_client,
        route,
        request_id: id.detached(),
        log: log.map(RequestStart::detached),
    }))
}

/// How an SSE response is framed for a client: chunked for HTTP/1.1, close-delimited for
/// HTTP/1.0 (the stream is cut, spliced and replayed, so never with the upstream's length).
pub(super) fn sse_framing(client: Version) -> OutFraming {
    if client == Version::Http11 {
        OutFraming::Chunked
    } else {
        OutFraming::CloseDelimited
    }
}

/// tether's own head for an SSE response no upstream head comes with (a stream served from a
/// ring, a comeback to a held stream).
pub(super) fn own_sse_head(http11: bool, keep_client: bool, id: &RequestId, out: &mut BytesMut) {
    out.extend_from_slice(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n",
    );
    out.extend_from_slice(if http11 {
        b"Transfer-Encoding: chunked\r\n"
    } else {
        b"Connection: close\r\n"
    });
    if http11 && !keep_client {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"X-Request-Id: ");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
}
