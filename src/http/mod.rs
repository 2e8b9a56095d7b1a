//! The HTTP/1.1 wire codec: heads, body framing, chunked coding, and the heads the proxy writes.
//!
//! ```text
//! bytes in ──> HeadScanner::scan ──> RequestHead/ResponseHead::parse ──> framing::*_body_kind
//!                                                                        │
//!               BodyDecoder::decode (Length / ChunkedDecoder / UntilClose) <┘
//!
//! RequestHead  ──> rewrite::write_upstream_request ──> upstream
//! ResponseHead ──> rewrite::write_client_response  ──> client (+ ChunkHeader / LAST_CHUNK)
//! ```
//!
//! Files: `scan` (where a head ends), `head` (limits, parsed heads as spans), `rules` (target
//! forms, Host, and the diagnosis of refused heads), `framing` (RFC 9112 section 6 and
//! keep-alive), `chunked` (the chunked decoder), `body` (one body of a known kind, outgoing
//! chunk framing), `rewrite` (what crosses the proxy), `error` (every failure, with its
//! status), `field_edit` (header changes
//! asked for by rules), `syntax` (RFC 9110 5.6 tokens, whitespace, lists, digits), `upgrade` (which requests may
//! switch protocols).

mod body;
mod chunked;
mod error;
mod field_edit;
mod framing;
mod head;
mod rewrite;
mod rules;
mod scan;
mod syntax;
mod upgrade;
pub(crate) use syntax::{is_token, parse_decimal};

#[cfg(test)]
mod tests;

pub use body::BodyDecoder;
pub(crate) use body::{small_chunk_line, ChunkHeader, CHUNK_END, LAST_CHUNK};
pub use chunked::{
    ChunkedDecoder, Decoded, MAX_CHUNK_EXT_BYTES, MAX_CHUNK_SIZE_DIGITS, MAX_TRAILER_BYTES,
};
pub use error::HttpError;
pub use field_edit::HeaderEdit;
pub use framing::{
    expects_continue, request_body_kind, request_keep_alive, response_body_kind,
    response_keep_alive, BodyKind, ResponseFraming,
};
pub use head::{
    HeadKind, HeadLimits, HeaderField, Method, ParseHead, RequestHead, ResponseHead, Span, Version,
};
pub(crate) use head::{MAX_HEADERS, MAX_HEAD_BYTES, MAX_TARGET_BYTES};
pub(crate) use rewrite::{
    reason_phrase, write_edited_client_response, write_error_response, write_interim_response,
    write_own_response, write_switching_response,
};
pub use rewrite::{write_client_response, write_upstream_request, ForwardContext, OutFraming};
pub(crate) use rules::split_absolute_form;
pub use scan::HeadScanner;
pub use upgrade::requests_upgrade;
