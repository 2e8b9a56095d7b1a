//! A request's interceptor rules at the proxy (`crate::rules`): the plan made from its head, the
//! request stage run before anything goes upstream (its body read whole first when a rule needs
//! it), and the answer a denied request gets. A request no rule applies to never comes here.

use bytes::BytesMut;

use super::answer::send_continue;
use super::error::ProxyError;
use super::exchange::ClientSide;
use super::inspect::{read_up_to, readable_coding, InspectFailure, InspectedBody};
use super::request_id::RequestId;
use crate::conn_io::{write_vec_within, BytesVec};
use crate::http::{
    expects_continue, write_own_response, BodyDecoder, BodyKind, RequestHead, Version,
};
use crate::route::Route;
use crate::rules::{BodyInspection, DenyAnswer, RequestOutcome, RequestRules, RulePlan};
use crate::worker::WorkerCtx;

/// The request's rules; None when no rule of its route applies to it (it takes the path
/// without rules).
pub(crate) fn plan_for(route: &Route, head: &RequestHead) -> Option<Box<RequestRules>> {
    if route.rules.is_empty() {
        return None;
    }
    RulePlan::for_request(&route.rules, head, route.name.as_deref()).map(|plan| {
        Box::new(RequestRules {
            plan,
            upstream_edits: Vec::new(),
        })
    })
}

/// What the request stage decided.
pub(crate) enum RequestStage {
    /// On upstream, with its body when it was read for inspection; `continued`: a `100
    /// Continue` went to the client already.
    Forward {
        body: Option<InspectedBody>,
        continued: bool,
    },
    /// Answered here: the status sent, the bytes written, and whether the connection can
    /// serve another request.
    Answered {
        status: u16,
        bytes: u64,
        keep_alive: bool,
    },
}

/// Runs the request stage: reads the body when a rule needs it (answering `Expect:
/// 100-continue` first, since the client waits for it), then the rules; a denial is answered
/// here and nothing goes upstream.
pub(crate) async fn run<C: crate::client_stream::ClientStream>(
    ctx: &WorkerCtx,
    client: &mut ClientSide<'_, C>,
    head: &RequestHead,
    kind: BodyKind,
    route: &Route,
    rules: &mut RequestRules,
    id: &RequestId,
) -> Result<RequestStage, ProxyError> {
    let mut body = None;
    let mut continued = false;
    if rules.plan.needs_request_body() && kind != BodyKind::Empty {
        if expects_continue(head) && client.buf.is_empty() {
            send_continue(client.stream, head.version, ctx.config.timeouts.send).await?;
            continued = true;
        }
        let read = read_up_to(
            client.stream,
            client.buf,
            BodyDecoder::new(kind),
            route.settings.max_inspect_bytes,
            route.settings.body_timeout,
        )
        .await
        .map_err(|e| match e {
            InspectFailure::Invalid(e) => ProxyError::ClientProtocol(e),
            InspectFailure::Closed => ProxyError::ClientGone,
            InspectFailure::TimedOut => ProxyError::ClientBodyTimeout,
        })?;
        body = Some(read);
    }
    // A content-coded body is bytes, not JSON, to a rule: it counts as uninspectable, so a rule
    // refusing uninspected bodies refuses it too (a gzip body cannot slip a denied call past).
    let coded = !readable_coding(head.headers_named("content-encoding"));
    let inspection = match &body {
        None => BodyInspection::NotRead,
        Some(_) if coded => BodyInspection::OverLimit,
        Some(InspectedBody::Whole(b)) => BodyInspection::Read(b),
        Some(InspectedBody::Over { .. }) => BodyInspection::OverLimit,
    };
    match rules.plan.run_request(head, inspection) {
        RequestOutcome::Forward { edits } => {
            rules.upstream_edits = edits;
            Ok(RequestStage::Forward { body, continued })
        }
        RequestOutcome::Answer(answer) => {
            // The connection can serve another request only when this one's body is consumed.
            let consumed = kind == BodyKind::Empty || matches!(body, Some(InspectedBody::Whole(_)));
            let keep_alive = consumed
                && head.version == Version::Http11
                && crate::http::request_keep_alive(head)
                && !client.guard.draining();
            let (bytes, delivered) = answer_denied(ctx, client, &answer, keep_alive, id).await;
            crate::log_debug!(
                "{} {} request {id}: denied by a rule",
                client.peer,
                answer.status
            );
            ctx.metrics.record_response(answer.status);
            Ok(RequestStage::Answered {
                status: answer.status,
                bytes,
                keep_alive: keep_alive && delivered,
            })
        }
    }
}

/// Writes a denial; returns the bytes written and whether all of them were.
async fn answer_denied<C: crate::client_stream::ClientStream>(
    ctx: &WorkerCtx,
    client: &mut ClientSide<'_, C>,
    answer: &DenyAnswer,
    keep_alive: bool,
    id: &RequestId,
) -> (u64, bool) {
    let mut out = BytesMut::new();
    write_own_response(
        answer.status,
        answer.content_type,
        &answer.body,
        keep_alive,
        id.as_bytes(),
        &mut out,
    );
    let bytes = out.len() as u64;
    let mut v = BytesVec::new();
    v.push(out.freeze());
    let delivered = write_vec_within(client.stream, v, ctx.config.timeouts.send)
        .await
        .is_ok();
    (bytes, delivered)
}
