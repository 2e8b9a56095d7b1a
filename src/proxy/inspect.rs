//! A body read whole so that interceptor rules can look into it (`crate::rules`): a request body
//! before anything goes upstream (a denied MCP call never reaches it), a JSON response body
//! before anything reaches the client (a `tools/list` result with tools filtered out). At most
//! `max-inspect-bytes` are held; a larger body is forwarded uninspected, starting with what was
//! read, then relayed as any other.

use std::mem;
use std::time::Duration;

use crate::conn_io::{read_more_within, ByteStream, IoFailure};
use crate::http::{BodyDecoder, Decoded};
use crate::limits::BODY_READ_BUFFER;
use bytes::{Bytes, BytesMut};

/// A body as inspection left it.
#[derive(Debug)]
pub(crate) enum InspectedBody {
    /// All of it, decoded (chunk framing gone): it is sent on with a Content-Length.
    Whole(Bytes),
    /// More than the limit: the decoded pieces read so far, and the decoder to relay the rest
    /// with (the body keeps its own framing).
    Over {
        read: Vec<Bytes>,
        decoder: BodyDecoder,
    },
}

/// Why a body could not be read for inspection.
#[derive(Debug)]
pub(crate) enum InspectFailure {
    /// Its framing is invalid.
    Invalid(crate::http::HttpError),
    /// The peer closed before its end, or the socket failed.
    Closed,
    /// No bytes within the body timeout.
    TimedOut,
}

/// Reads the body `decoder` frames from `src` (after what `buf` already holds) until it is
/// whole or more than `limit` bytes of it are held. What `buf` keeps afterwards belongs to the
/// next message. Not cancel-safe (reads into an owned buffer).
pub(crate) async fn read_up_to(
    src: &mut impl ByteStream,
    buf: &mut BytesMut,
    mut decoder: BodyDecoder,
    limit: usize,
    read_timeout: Duration,
) -> Result<InspectedBody, InspectFailure> {
    let mut read: Vec<Bytes> = Vec::new();
    let mut held = 0usize;
    loop {
        while !buf.is_empty() && !decoder.is_done() {
            match decoder.decode(buf).map_err(InspectFailure::Invalid)? {
                Decoded::Data { start, end } => {
                    let piece = buf.split_to(end).freeze().slice(start..);
                    held += piece.len();
                    read.push(piece);
                }
                Decoded::NeedMore => break,
                Decoded::Done { consumed } => {
                    let _ = buf.split_to(consumed);
                }
            }
            if held > limit {
                return Ok(InspectedBody::Over { read, decoder });
            }
        }
        if decoder.is_done() {
            return Ok(InspectedBody::Whole(joined(read, held)));
        }
        match read_more_within(src, mem::take(buf), BODY_READ_BUFFER, read_timeout).await {
            Ok((0, rest)) => {
                *buf = rest;
                decoder.eof().map_err(|_| InspectFailure::Closed)?;
            }
            Ok((_, more)) => *buf = more,
            Err(IoFailure::TimedOut) => return Err(InspectFailure::TimedOut),
            Err(IoFailure::Io(_)) => return Err(InspectFailure::Closed),
        }
    }
}

/// The pieces as one `Bytes` (the one piece itself when there is one).
fn joined(mut read: Vec<Bytes>, len: usize) -> Bytes {
    if read.len() == 1 {
        return read.pop().unwrap_or_default();
    }
    let mut whole = BytesMut::with_capacity(len);
    for piece in &read {
        whole.extend_from_slice(piece);
    }
    whole.freeze()
}

/// True when a message whose `Content-Encoding` values are these has a body rules can read:
/// not content-coded (a gzip body is bytes, not JSON, to a rule).
pub(crate) fn readable_coding<'a>(mut content_encoding: impl Iterator<Item = &'a [u8]>) -> bool {
    content_encoding
        .all(|v| v.trim_ascii().is_empty() || v.trim_ascii().eq_ignore_ascii_case(b"identity"))
}
