//! tether's own error answers: the status and short reason a failure gets (`ProxyError::answer`),
//! written to the client with the request's id, counted, and logged with that id.

use std::net::SocketAddr;

use bytes::BytesMut;
use monoio::net::TcpStream;

use super::error::ProxyError;
use super::request_id::RequestId;
use crate::conn_io::{write_vec_within, BytesVec};
use crate::http::write_error_response;
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
    stream: &mut TcpStream,
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
