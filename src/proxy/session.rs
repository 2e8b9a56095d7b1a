//! MCP sessions at the proxy, on routes marked `mcp` (`crate::mcp_session` seals and opens the
//! ids): a request carrying tether's session id goes to the replica that made the session, with
//! the upstream's own id in its place; a response naming a session has the upstream's id sealed
//! for the client. No table: the id itself says where the session lives, on every worker and
//! every instance sharing the key.

use super::error::ProxyError;
use crate::http::{HeaderEdit, RequestHead, ResponseHead};
use crate::mcp_session::{identity_of, open, replica_key, seal};
use crate::route::Route;
use crate::worker::WorkerCtx;

/// The session field, both ways.
const SESSION_HEADER: &str = "Mcp-Session-Id";

/// A request's session: where it lives and the upstream's id for it.
#[derive(Debug)]
pub(crate) struct PinnedSession {
    pub(crate) replica: usize,
    upstream_id: Vec<u8>,
}

impl PinnedSession {
    /// The request's session field as the upstream must see it: its own id, never tether's.
    pub(crate) fn upstream_edit(&self) -> HeaderEdit {
        HeaderEdit::Set {
            name: SESSION_HEADER.into(),
            value: String::from_utf8_lossy(&self.upstream_id).into_owned(),
        }
    }
}

/// The session a request names, opened. None: it names none (an `initialize`, or a client
/// without sessions). Err (404): an id that does not open under the key for this client's
/// identity (forged, altered, another client's, or sealed under a key no longer accepted), or
/// that names a replica the route no longer has: the client initializes again.
pub(crate) fn open_session(
    ctx: &WorkerCtx,
    route: &Route,
    head: &RequestHead,
) -> Result<Option<PinnedSession>, ProxyError> {
    let Some(token) = head.header(SESSION_HEADER) else {
        return Ok(None);
    };
    let identity = identity_of(head, &route.settings.identity);
    let sealed = open(&ctx.config.session_keys, token, &identity)
        .map_err(|_| ProxyError::McpSessionUnknown)?;
    let upstreams = ctx.upstreams.borrow();
    let replica = route
        .upstreams
        .replicas()
        .iter()
        .copied()
        .find(|&r| replica_key(&upstreams.spec(r).url) == sealed.replica)
        .ok_or(ProxyError::McpSessionUnknown)?;
    Ok(Some(PinnedSession {
        replica,
        upstream_id: sealed.upstream_id,
    }))
}

/// The response's session field as the client must see it: the upstream's id sealed with the
/// replica that answered and the client's identity; the client's own id when the response names
/// the session the request came in (sealing again would give the client a new id on every
/// answer: the nonce is random). None when the response names no session.
pub(crate) fn sealed_for_client(
    ctx: &WorkerCtx,
    route: &Route,
    replica: usize,
    request: &RequestHead,
    response: &ResponseHead,
    session: Option<&PinnedSession>,
) -> Result<Option<HeaderEdit>, ProxyError> {
    let Some(upstream_id) = response.header(SESSION_HEADER) else {
        return Ok(None);
    };
    if let (Some(s), Some(token)) = (session, request.header(SESSION_HEADER)) {
        if s.upstream_id == upstream_id {
            return Ok(Some(HeaderEdit::Set {
                name: SESSION_HEADER.into(),
                value: String::from_utf8_lossy(token).into_owned(),
            }));
        }
    }
    let identity = identity_of(request, &route.settings.identity);
    let key = replica_key(&ctx.upstreams.borrow().spec(replica).url);
    let token = seal(&ctx.config.session_keys, key, upstream_id, &identity)
        .map_err(|_| ProxyError::McpSessionIdTooLong)?;
    Ok(Some(HeaderEdit::Set {
        name: SESSION_HEADER.into(),
        value: token,
    }))
}

/// The MCP revision in which closing a response cancels its request (and sessions, ids and
/// resumption are gone).
const CANCELS_ON_LEAVE_REVISION: &[u8] = b"2026-07-28";

/// The request speaks a revision in which closing the response cancels the request: its
/// stream must never be resumed (the request would run twice) and its upstream must be closed
/// as soon as the client leaves.
pub(crate) fn cancels_on_leave(head: &RequestHead) -> bool {
    head.header("mcp-protocol-version")
        .is_some_and(|v| v.trim_ascii() == CANCELS_ON_LEAVE_REVISION)
}
