//! Everything that can be wrong with HTTP/1.1 bytes on the wire, one variant per failure.
//!
//! The codec does not know which peer sent the bytes; the caller does. [`HttpError::status`] is
//! the answer when the *client* sent them (400, 414, 431, 501, 505); bytes from the upstream
//! that fail to parse become a 502 in the proxy, which maps them itself.

use std::fmt;

use super::head::HeadKind;

/// One specific way an HTTP/1.1 message failed to parse or frame.
///
/// Variants carry the context a user needs to act on the message (the limit that was hit, the
/// offending byte, the digit count). Peer-controlled text is never stored unbounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    // ---- head size limits -------------------------------------------------------------------
    /// The head did not end within `limit` bytes (431 and close).
    HeadTooLarge { kind: HeadKind, limit: usize },
    /// The head has more than `limit` field lines (431).
    TooManyHeaders { kind: HeadKind, limit: usize },
    /// The request target is longer than `limit` bytes (414).
    TargetTooLong { limit: usize },

    // ---- head syntax (RFC 9112 sections 2 to 5) ---------------------------------------------
    /// The request line starts with `byte`, which cannot begin a method: the client does not
    /// speak HTTP/1.x here (0x16 is a TLS handshake). Answered 400 as soon as the byte arrives.
    NotHttp { byte: u8 },
    /// The method is not a token (RFC 9110 9.1).
    InvalidMethod,
    /// The request target is empty, holds a byte outside the URI grammar, or is not one of the
    /// four forms of RFC 9112 3.2 (origin, absolute, authority for CONNECT, `*` for OPTIONS).
    InvalidTarget,
    /// The path has a `.` or `..` segment (also as `%2e`) while routes are chosen by path
    /// prefix: the upstream would resolve it past the prefix that chose the route (400).
    DotSegment,
    /// The HTTP-version is not `HTTP/DIGIT.DIGIT` (RFC 9112 2.3).
    InvalidVersion { kind: HeadKind },
    /// A well-formed version other than HTTP/1.0 and HTTP/1.1 (505).
    UnsupportedVersion {
        kind: HeadKind,
        major: u8,
        minor: u8,
    },
    /// The status line is not `HTTP-version SP 3DIGIT SP reason-phrase` (RFC 9112 4).
    InvalidStatusLine,
    /// A status code outside 100..=599 (RFC 9110 15).
    InvalidStatusCode { code: u16 },
    /// A field line starts with SP or HTAB: obsolete line folding (RFC 9112 5.2).
    ObsFold { kind: HeadKind, line: usize },
    /// Whitespace between a field name and its colon (RFC 9112 5.1: MUST reject with 400).
    WhitespaceBeforeColon { kind: HeadKind, line: usize },
    /// A field name that is empty, not a token, or a line without a colon.
    InvalidHeaderName { kind: HeadKind, line: usize },
    /// A field value with a control character (RFC 9110 5.5).
    InvalidHeaderValue { kind: HeadKind },
    /// A CR not followed by LF, or bytes after the HTTP-version (RFC 9112 2.2).
    InvalidLineEnding { kind: HeadKind },
    /// The head ended (empty line) before the start line and fields were complete.
    IncompleteHead { kind: HeadKind },
    /// An HTTP/1.1 request without Host (RFC 9112 3.2: MUST answer 400).
    MissingHost,
    /// More than one Host field line (RFC 9112 3.2: MUST answer 400).
    MultipleHost { count: usize },
    /// A Host value that is not `uri-host [ ":" port ]` (RFC 9112 3.2).
    InvalidHost,

    // ---- body framing (RFC 9112 section 6) --------------------------------------------------
    /// Both Content-Length and Transfer-Encoding in a request: the classic smuggling shape.
    ContentLengthWithTransferEncoding,
    /// Content-Length is not `1*DIGIT` (a sign, spaces, underscores, hex, an empty element).
    InvalidContentLength,
    /// Content-Length does not fit in 64 bits.
    ContentLengthOverflow,
    /// Content-Length values that differ across field lines or list elements.
    ConflictingContentLength { first: u64, second: u64 },
    /// Transfer-Encoding that is empty, has a non-token coding, or parameters on chunked.
    InvalidTransferEncoding,
    /// Transfer-Encoding in a request whose last coding is not chunked (RFC 9112 6.3 rule 4).
    TransferEncodingNotChunkedLast,
    /// chunked listed more than once (RFC 9112 6.1: MUST NOT apply chunked more than once).
    ChunkedAppliedTwice,
    /// Transfer-Encoding in an HTTP/1.0 message: faulty framing (RFC 9112 6.1).
    TransferEncodingInHttp10,
    /// A transfer coding other than chunked; tether does not decode or re-encode them (501).
    UnsupportedTransferCoding { coding: String },

    // ---- chunked coding (RFC 9112 section 7.1) ----------------------------------------------
    /// A byte that cannot appear in a chunk-size line at this point (`byte`).
    InvalidChunkSize { byte: u8 },
    /// A chunk size with more hex digits than fit in 64 bits.
    ChunkSizeTooLong { digits: usize },
    /// Chunk extensions longer than `limit` bytes on one size line.
    ChunkExtensionTooLong { limit: usize },
    /// A byte outside the chunk-ext grammar (`byte`).
    InvalidChunkExtension { byte: u8 },
    /// CRLF was required after `after` but `byte` came (bare LF and bare CR are smuggling vectors).
    ChunkMissingCrlf { after: &'static str, byte: u8 },
    /// The trailer section is longer than `limit` bytes.
    TrailersTooLarge { limit: usize },
    /// A byte outside the field-line grammar in a trailer (`byte`).
    InvalidTrailer { byte: u8 },

    // ---- body end -----------------------------------------------------------------------------
    /// The peer closed before the body was complete; `remaining` bytes were still due when the
    /// length was known (None for chunked bodies).
    BodyTruncated { remaining: Option<u64> },
}

impl HttpError {
    /// The status a proxy answers when the client sent the offending bytes.
    ///
    /// Upstream-side failures are the caller's to map (to 502); this mapping assumes a client.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeadTooLarge { .. } | HttpError::TooManyHeaders { .. } => 431,
            HttpError::TargetTooLong { .. } => 414,
            HttpError::UnsupportedVersion { .. } => 505,
            HttpError::UnsupportedTransferCoding { .. } => 501,
            _ => 400,
        }
    }
}

fn side(kind: &HeadKind) -> &'static str {
    match kind {
        HeadKind::Request => "request",
        HeadKind::Response => "response",
    }
}

/// The first byte of a TLS record carrying a handshake (RFC 8446 5.1, ContentType 22): what a
/// client sends first when it speaks HTTPS to a plain-HTTP port.
const TLS_HANDSHAKE: u8 = 0x16;

/// Shows a byte as `'x'` when printable, else as `0x0a`.
struct ByteDisplay(u8);

impl fmt::Display for ByteDisplay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            b'\r' => f.write_str("CR"),
            b'\n' => f.write_str("LF"),
            0x21..=0x7e => write!(f, "'{}'", self.0 as char),
            other => write!(f, "0x{other:02x}"),
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::HeadTooLarge { kind, limit } => {
                write!(f, "{} head exceeds {limit} bytes", side(kind))
            }
            HttpError::TooManyHeaders { kind, limit } => {
                write!(f, "{} head has more than {limit} header fields", side(kind))
            }
            HttpError::TargetTooLong { limit } => {
                write!(f, "request target exceeds {limit} bytes")
            }
            HttpError::NotHttp {
                byte: TLS_HANDSHAKE,
            } => f.write_str(
                "request starts with a TLS handshake; this port speaks plain HTTP (use http://)",
            ),
            HttpError::NotHttp { byte } => write!(
                f,
                "request starts with byte {}, which cannot begin an HTTP/1.1 request",
                ByteDisplay(*byte)
            ),
            HttpError::InvalidMethod => f.write_str("request method is not a token"),
            HttpError::InvalidTarget => f.write_str("request target is malformed"),
            HttpError::DotSegment => f.write_str(
                "request path has a '.' or '..' segment; send it with dot segments resolved",
            ),
            HttpError::InvalidVersion { kind } => {
                write!(f, "{} HTTP version is malformed", side(kind))
            }
            HttpError::UnsupportedVersion { kind, major, minor } => write!(
                f,
                "{} uses HTTP/{major}.{minor}; only HTTP/1.0 and HTTP/1.1 are supported",
                side(kind)
            ),
            HttpError::InvalidStatusLine => f.write_str("response status line is malformed"),
            HttpError::InvalidStatusCode { code } => {
                write!(f, "response status {code} is outside 100..=599")
            }
            HttpError::ObsFold { kind, line } => write!(
                f,
                "{} header line {line} starts with whitespace (obsolete line folding)",
                side(kind)
            ),
            HttpError::WhitespaceBeforeColon { kind, line } => write!(
                f,
                "{} header line {line} has whitespace before its colon",
                side(kind)
            ),
            HttpError::InvalidHeaderName { kind, line } => {
                write!(f, "{} header line {line} has an invalid name", side(kind))
            }
            HttpError::InvalidHeaderValue { kind } => {
                write!(
                    f,
                    "{} header value contains a control character",
                    side(kind)
                )
            }
            HttpError::InvalidLineEnding { kind } => write!(
                f,
                "{} head has a bare CR or junk at the end of a line",
                side(kind)
            ),
            HttpError::IncompleteHead { kind } => {
                write!(f, "{} head ended before it was complete", side(kind))
            }
            HttpError::MissingHost => f.write_str("HTTP/1.1 request without Host"),
            HttpError::MultipleHost { count } => {
                write!(f, "request has {count} Host header fields")
            }
            HttpError::InvalidHost => f.write_str("Host header is not host[:port]"),
            HttpError::ContentLengthWithTransferEncoding => {
                f.write_str("both Content-Length and Transfer-Encoding present")
            }
            HttpError::InvalidContentLength => f.write_str("Content-Length is not a number"),
            HttpError::ContentLengthOverflow => f.write_str("Content-Length exceeds 64 bits"),
            HttpError::ConflictingContentLength { first, second } => {
                write!(f, "differing Content-Length values {first} and {second}")
            }
            HttpError::InvalidTransferEncoding => f.write_str("Transfer-Encoding is malformed"),
            HttpError::TransferEncodingNotChunkedLast => {
                f.write_str("Transfer-Encoding does not end with chunked")
            }
            HttpError::ChunkedAppliedTwice => {
                f.write_str("Transfer-Encoding lists chunked more than once")
            }
            HttpError::TransferEncodingInHttp10 => {
                f.write_str("Transfer-Encoding in an HTTP/1.0 message")
            }
            HttpError::UnsupportedTransferCoding { coding } => {
                write!(f, "transfer coding {coding:?} is not supported")
            }
            HttpError::InvalidChunkSize { byte } => {
                write!(
                    f,
                    "chunk size line has unexpected byte {}",
                    ByteDisplay(*byte)
                )
            }
            HttpError::ChunkSizeTooLong { digits } => {
                write!(f, "chunk size line has {digits} hex digits")
            }
            HttpError::ChunkExtensionTooLong { limit } => {
                write!(f, "chunk extensions exceed {limit} bytes")
            }
            HttpError::InvalidChunkExtension { byte } => {
                write!(
                    f,
                    "chunk extension has unexpected byte {}",
                    ByteDisplay(*byte)
                )
            }
            HttpError::ChunkMissingCrlf { after, byte } => {
                write!(f, "expected CRLF after {after}, got {}", ByteDisplay(*byte))
            }
            HttpError::TrailersTooLarge { limit } => {
                write!(f, "chunked trailers exceed {limit} bytes")
            }
            HttpError::InvalidTrailer { byte } => {
                write!(
                    f,
                    "trailer field has unexpected byte {}",
                    ByteDisplay(*byte)
                )
            }
            HttpError::BodyTruncated {
                remaining: Some(remaining),
            } => write!(f, "body ended {remaining} bytes before its Content-Length"),
            HttpError::BodyTruncated { remaining: None } => {
                f.write_str("chunked body ended before its last chunk")
            }
        }
    }
}

impl std::error::Error for HttpError {}
