//! tether's own error answers: the status and short reason a failure gets (`ProxyError::answer`),
//! written to the client with the request's id, counted, and logged with that id.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;

use super::error::ProxyError;
use super::request_id::RequestId;
use crate::conn_io::{write_vec_within, ByteStream, BytesVec};
use crate::http::{write_error_response, Version};
use crate::worker::WorkerCtx;

/// What became of an error answer.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Answered {
    /// The status sent (0: none, the client was gone).
    pub(crate) status: u16,
    /// Bytes of the answer written.
    pub(crate) bytes: u64,
    /// The whole answer was written: the connection may close gracefully (lingering); false:
    /// close at once.
    pub(crate) delivered: bool,
}

/// Answers a failed request when the client can still hear it. The log line has the whole story
/// (`e`'s Display names the upstream); the client gets `e.answer()`'s reason, which names
/// nothing behind the proxy. Not cancel-safe (a write); the connection closes afterwards.
pub(crate) async fn answer_error(
    ctx: &WorkerCtx,
    stream: &mut impl ByteStream,
    peer: SocketAddr,
    e: &ProxyError,
    id: &RequestId,
) -> Answered {
    let Some((status, reason)) = e.answer() else {
        return Answered::default();
    };
    ctx.metrics.record_response(status);
    if status >= 500 {
        crate::log_warn!("{peer} {status} request {id}: {e}");
    } else {
        crate::log_debug!("{peer} {status} request {id}: {e}");
    }
    let mut out = BytesMut::new();
    write_error_response(status, &reason, false, Some(id.as_bytes()), &mut out);
    let bytes = out.len() as u64;
    let mut v = BytesVec::new();
    v.push(out.freeze());
    let delivered = write_vec_within(stream, v, ctx.config.timeouts.send)
        .await
        .is_ok();
    Answered {
        status,
        bytes,
        delivered,
    }
}

const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Answers `Expect: 100-continue` (the client waits for it before sending its body): `100
/// Continue` to an HTTP/1.1 client, nothing to an HTTP/1.0 one (which cannot take interim
/// answers). Err: the client is gone. Not cancel-safe (a write).
pub(crate) async fn send_continue(
    stream: &mut impl ByteStream,
    version: Version,
    send_timeout: Duration,
) -> Result<(), ProxyError> {
    if version != Version::Http11 {
        return Ok(());
    }
    let mut hundred = BytesVec::new();
    hundred.push_static(CONTINUE_100);
    write_vec_within(stream, hundred, send_timeout)
        .await
        .map(|_| ())
        .map_err(|_| ProxyError::ClientGone)
}
