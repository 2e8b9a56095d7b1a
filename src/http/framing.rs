//! Where a message body ends (RFC 9112 section 6) and whether the connection persists after it
//! (RFC 9112 section 9.3). Reading, writing and keep-alive stay separate axes: this file only
//! answers questions about one head.

use super::error::HttpError;
use super::head::{Method, RequestHead, ResponseHead, Version};
use super::syntax::{is_token, list_elements, parse_decimal, trim_ows, DecimalError};

/// How a received body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// No body at all.
    Empty,
    /// Exactly this many bytes (Content-Length).
    Length(u64),
    /// The chunked transfer coding.
    Chunked,
    /// Everything until the peer closes (responses only).
    UntilClose,
}

/// The framing of a response body, and whether the upstream connection is spent afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseFraming {
    /// How the body is delimited.
    pub kind: BodyKind,
    /// The upstream connection must not be reused after this response: its framing was
    /// suspicious (Transfer-Encoding with Content-Length) or ends with the close itself.
    pub must_close: bool,
}

// RFC 9112 section 6.3 "Message Body Length", applied in this order by the two functions below
// (section 6.1 adds: a Transfer-Encoding in an HTTP/1.0 message means faulty framing):
//
// 1. A response to HEAD, or with status 1xx, 204 or 304: no body, whatever the fields say.
// 2. A 2xx response to CONNECT: the connection becomes a tunnel. tether does not tunnel; the
//    answer is no body and a spent connection (the proxy refuses CONNECT before this point).
// 3. Transfer-Encoding and Content-Length together: in a request, 400 (the smuggling shape);
//    in a response, Transfer-Encoding wins and the connection must close afterwards.
// 4. Transfer-Encoding with chunked as the final coding: chunked. Chunked not final: in a
//    request, 400; in a response, read until close. tether decodes no other coding, so any
//    other coding is a 501 in a request and an error (502) in a response: relaying its bytes
//    under our own re-framing would strip the coding's label and corrupt the content.
// 5. Content-Length that is not 1*DIGIT, or with differing values: in a request, 400; in a
//    response, an error (the proxy answers 502). Repeated equal values count as one.
// 6. Valid Content-Length: that many bytes.
// 7. A request with neither: no body.
// 8. A response with neither: until the server closes.

/// Requests: UntilClose is never returned (no CL and no TE => Empty).
/// 400 (each failure its own variant): both Content-Length and Transfer-Encoding; differing
/// Content-Length values; a Content-Length that is not 1*DIGIT or overflows; Transfer-Encoding
/// whose last coding is not chunked; chunked applied more than once; TE in an HTTP/1.0 request.
/// 501 for transfer codings we do not implement when chunked is last (e.g. "gzip, chunked").
pub fn request_body_kind(head: &RequestHead) -> Result<BodyKind, HttpError> {
    let has_te = head.header("transfer-encoding").is_some();
    let length = content_length(head.headers_named("content-length"))?;
    // Rule 3.
    if has_te && length.is_some() {
        return Err(HttpError::ContentLengthWithTransferEncoding);
    }
    if has_te {
        // Section 6.1.
        if head.version == Version::Http10 {
            return Err(HttpError::TransferEncodingInHttp10);
        }
        // Rule 4.
        let codings = transfer_codings(head.headers_named("transfer-encoding"))?;
        if !codings.chunked_last {
            return Err(HttpError::TransferEncodingNotChunkedLast);
        }
        if let Some(coding) = codings.other {
            return Err(HttpError::UnsupportedTransferCoding { coding });
        }
        return Ok(BodyKind::Chunked);
    }
    // Rules 5 to 7 (rule 5 errors came out of content_length above). "Content-Length: 0" stays
    // Length(0) so that it is forwarded: some servers answer 411 to a POST without one.
    Ok(match length {
        Some(n) => BodyKind::Length(n),
        None => BodyKind::Empty,
    })
}

/// Responses: HEAD requests, 1xx, 204 and 304 => Empty whatever the headers; TE with chunked last
/// => Chunked (TE overrides CL, and then `must_close` since such a message is suspicious); TE
/// without chunked last => UntilClose; valid CL => Length; invalid/conflicting CL => Err (the
/// caller answers 502); else UntilClose. A coding other than chunked (and the obsolete no-op
/// "identity") is an Err: see rule 4.
pub fn response_body_kind(
    request_method: Method,
    head: &ResponseHead,
) -> Result<ResponseFraming, HttpError> {
    let framing = |kind, must_close| ResponseFraming { kind, must_close };
    // Rule 1.
    if request_method == Method::Head || matches!(head.status, 100..=199 | 204 | 304) {
        return Ok(framing(BodyKind::Empty, false));
    }
    // Rule 2.
    if request_method == Method::Connect && (200..=299).contains(&head.status) {
        return Ok(framing(BodyKind::Empty, true));
    }
    if head.header("transfer-encoding").is_some() {
        // Section 6.1.
        if head.version == Version::Http10 {
            return Err(HttpError::TransferEncodingInHttp10);
        }
        // Rules 3 and 4: Content-Length is ignored, even when malformed.
        let codings = transfer_codings(head.headers_named("transfer-encoding"))?;
        if let Some(coding) = codings.other {
            return Err(HttpError::UnsupportedTransferCoding { coding });
        }
        if !codings.chunked_last {
            return Ok(framing(BodyKind::UntilClose, true));
        }
        let has_cl = head.header("content-length").is_some();
        return Ok(framing(BodyKind::Chunked, has_cl));
    }
    // Rules 5, 6 and 8.
    Ok(
        match content_length(head.headers_named("content-length"))? {
            Some(n) => framing(BodyKind::Length(n), false),
            None => framing(BodyKind::UntilClose, true),
        },
    )
}

/// The Content-Length of a message, from all its field lines: each value a list of `1*DIGIT`
/// elements that must all be equal (RFC 9110 8.6 lets a recipient accept "42, 42" as 42).
pub(crate) fn content_length<'a>(
    values: impl Iterator<Item = &'a [u8]>,
) -> Result<Option<u64>, HttpError> {
    let mut found: Option<u64> = None;
    for value in values {
        for element in list_elements(value) {
            let n = parse_decimal(element).map_err(|e| match e {
                DecimalError::NotDigits => HttpError::InvalidContentLength,
                DecimalError::Overflow => HttpError::ContentLengthOverflow,
            })?;
            match found {
                Some(first) if first != n => {
                    return Err(HttpError::ConflictingContentLength { first, second: n })
                }
                _ => found = Some(n),
            }
        }
    }
    Ok(found)
}

/// What a Transfer-Encoding list says, across all its field lines.
struct Codings {
    /// The final coding is chunked.
    chunked_last: bool,
    /// The first coding that is neither chunked nor the obsolete no-op "identity"
    /// (at most 32 bytes of it, for the error message).
    other: Option<String>,
}

/// Parses `Transfer-Encoding = #transfer-coding` (RFC 9112 6.1), transfer-coding = token
/// *( OWS ";" OWS transfer-parameter ). Empty list elements are ignored (RFC 9110 5.6.1) but a
/// list with no coding at all is invalid, as are non-token names and parameters on chunked.
fn transfer_codings<'a>(values: impl Iterator<Item = &'a [u8]>) -> Result<Codings, HttpError> {
    let mut chunked_seen = false;
    let mut last_is_chunked = None;
    let mut other = None;
    for value in values {
        for element in list_elements(value).filter(|e| !e.is_empty()) {
            let (name, has_params) = match memchr::memchr(b';', element) {
                Some(i) => (trim_ows(&element[..i]), true),
                None => (element, false),
            };
            if !is_token(name) {
                return Err(HttpError::InvalidTransferEncoding);
            }
            let chunked = name.eq_ignore_ascii_case(b"chunked");
            if chunked {
                if has_params {
                    return Err(HttpError::InvalidTransferEncoding);
                }
                if chunked_seen {
                    return Err(HttpError::ChunkedAppliedTwice);
                }
                chunked_seen = true;
            } else if other.is_none() && !name.eq_ignore_ascii_case(b"identity") {
                let shown = &name[..name.len().min(32)];
                other = Some(String::from_utf8_lossy(shown).into_owned());
            }
            last_is_chunked = Some(chunked);
        }
    }
    match last_is_chunked {
        None => Err(HttpError::InvalidTransferEncoding),
        Some(chunked_last) => Ok(Codings {
            chunked_last,
            other,
        }),
    }
}

/// True when any Connection field line lists `token` (comma-separated, case-insensitive).
fn connection_has<'a>(mut values: impl Iterator<Item = &'a [u8]>, token: &[u8]) -> bool {
    values.any(|v| list_elements(v).any(|e| e.eq_ignore_ascii_case(token)))
}

/// RFC 9112 9.3: "close" ends the connection in any version; otherwise HTTP/1.1 persists and
/// HTTP/1.0 persists only when it asked for "keep-alive". The Connection values are read for
/// "keep-alive" only when that decides (HTTP/1.0 without "close"): one pass on HTTP/1.1.
fn keep_alive<'a>(version: Version, connection: impl Iterator<Item = &'a [u8]> + Clone) -> bool {
    !connection_has(connection.clone(), b"close")
        && (version == Version::Http11 || connection_has(connection, b"keep-alive"))
}

/// Keep-alive intent from the Connection header and version: HTTP/1.1 persistent unless "close"
/// token; HTTP/1.0 persistent only with a "keep-alive" token. Tokens are comma-separated,
/// case-insensitive, across all Connection headers.
pub fn request_keep_alive(head: &RequestHead) -> bool {
    keep_alive(head.version, head.headers_named("connection"))
}

/// As [`request_keep_alive`], for the upstream's response.
pub fn response_keep_alive(head: &ResponseHead) -> bool {
    keep_alive(head.version, head.headers_named("connection"))
}

/// True when the request has `Expect: 100-continue` (case-insensitive, RFC 9110 10.1.1).
/// HTTP/1.0 requests never do: "A server that receives a 100-continue expectation in an
/// HTTP/1.0 request MUST ignore that expectation."
pub fn expects_continue(head: &RequestHead) -> bool {
    head.version == Version::Http11
        && head
            .headers_named("expect")
            .any(|v| list_elements(v).any(|e| e.eq_ignore_ascii_case(b"100-continue")))
}
