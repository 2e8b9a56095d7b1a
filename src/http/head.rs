//! Message heads: limits, and parsing a head that `scan::HeadScanner` delimited into offsets
//! ([`RequestHead`], [`ResponseHead`]) without copying a byte.
//!
//! The parse itself is httparse's (configured strictly: no obs-fold, no whitespace before a
//! colon, single SP delimiters); this file turns its slices into [`Span`]s into the one `Bytes`
//! that holds the head, and adds the rules httparse leaves to its caller: limits, target form,
//! Host (RFC 9112 3.2), status code range, and errors that say exactly what was wrong.

use std::mem::MaybeUninit;

use bytes::Bytes;

use super::error::HttpError;
use super::rules::{check_target_form, diagnose, is_valid_host, start_line};

/// Largest head (start line, field lines, empty line), in bytes, counting any empty lines
/// before the start line. Past this: 431 and close.
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most field lines in one head. Past this: 431 and close.
pub(crate) const MAX_HEADERS: usize = 100;
/// Longest request target, in bytes. Past this: 414 and close.
pub(crate) const MAX_TARGET_BYTES: usize = 8 * 1024;
/// Bytes a request line may hold beyond its target (method, two SP, "HTTP/1.1", CRLF, with room
/// for long extension methods). The scanner answers 414 once a request line passes
/// `max_target_bytes` + this without ending, rather than waiting for `max_head_bytes`.
pub(crate) const REQUEST_LINE_SLACK_BYTES: usize = 256;
/// httparse header slots kept on the stack (MAX_HEADERS plus one to detect "too many"); a larger
/// configured limit costs one heap allocation per parse.
const STACK_HEADER_SLOTS: usize = MAX_HEADERS + 1;

/// The head limits in force, resolved once from the CLI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadLimits {
    /// Bytes, see [`MAX_HEAD_BYTES`].
    pub max_head_bytes: usize,
    /// Field lines, see [`MAX_HEADERS`].
    pub max_headers: usize,
    /// Bytes, see [`MAX_TARGET_BYTES`].
    pub max_target_bytes: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        HeadLimits {
            max_head_bytes: MAX_HEAD_BYTES,
            max_headers: MAX_HEADERS,
            max_target_bytes: MAX_TARGET_BYTES,
        }
    }
}

/// A byte range `start..end` inside the `Bytes` of the head it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// One past the last byte.
    pub end: u32,
}

impl Span {
    /// The bytes this span covers in `buf` (empty if `buf` is not the buffer it came from and
    /// is too short: never panics).
    pub(crate) fn of<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or(&[])
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.end.saturating_sub(self.start) as usize
    }

    /// True for an empty range.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The span of `part`, a sub-slice of `base`; empty if `part` does not lie inside `base`
    /// (httparse hands out an empty `""` literal for some empty values).
    fn within(base: &[u8], part: &[u8]) -> Span {
        let offset = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
        if offset <= base.len() && part.len() <= base.len() - offset {
            // Both fit in u32: parse() rejects heads longer than u32::MAX first.
            Span {
                start: offset as u32,
                end: (offset + part.len()) as u32,
            }
        } else {
            Span::default()
        }
    }
}

/// One field line: name and value (OWS-trimmed) as spans into the head.
#[derive(Clone, Copy, Debug)]
pub struct HeaderField {
    /// The field name, as sent (case preserved).
    pub name: Span,
    /// The field value without leading and trailing whitespace.
    pub value: Span,
}

/// The HTTP versions tether speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// Request methods; the registered ones by name, the rest as `Other` (see `method_str`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Options,
    Patch,
    Trace,
    Connect,
    Other,
}

impl Method {
    /// RFC 9110 9.2.2: PUT, DELETE and the safe methods (GET, HEAD, OPTIONS, TRACE) are
    /// idempotent; a request with one of them may be retried on a fresh upstream connection.
    pub(crate) fn is_idempotent(self) -> bool {
        matches!(
            self,
            Method::Get
                | Method::Head
                | Method::Options
                | Method::Trace
                | Method::Put
                | Method::Delete
        )
    }

    /// Methods are case-sensitive (RFC 9110 9.1): "get" is `Other`.
    fn from_bytes(m: &[u8]) -> Method {
        match m {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"PATCH" => Method::Patch,
            b"TRACE" => Method::Trace,
            b"CONNECT" => Method::Connect,
            _ => Method::Other,
        }
    }
}

/// Which start line a head has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeadKind {
    Request,
    Response,
}

/// A head the scanner can delimit and parse: what the four head-reading loops (a client's
/// request, an upstream's answer, a resume attempt's answer, the admin endpoint's request) have
/// in common, so each keeps only its own way of reading more (HeadScanner::next_head).
pub trait ParseHead: Sized {
    const KIND: HeadKind;
    fn parse_head(bytes: Bytes, limits: &HeadLimits) -> Result<Self, HttpError>;
    /// `parse_head` with the field list built in `spare`'s allocation (a keep-alive connection
    /// keeps one per head kind: no allocation per request for it).
    fn parse_head_reusing(
        bytes: Bytes,
        limits: &HeadLimits,
        spare: Vec<HeaderField>,
    ) -> Result<Self, HttpError>;
}

impl ParseHead for RequestHead {
    const KIND: HeadKind = HeadKind::Request;
    fn parse_head(bytes: Bytes, limits: &HeadLimits) -> Result<Self, HttpError> {
        RequestHead::parse(bytes, limits)
    }
    fn parse_head_reusing(
        bytes: Bytes,
        limits: &HeadLimits,
        spare: Vec<HeaderField>,
    ) -> Result<Self, HttpError> {
        RequestHead::parse_reusing(bytes, limits, spare)
    }
}

impl ParseHead for ResponseHead {
    const KIND: HeadKind = HeadKind::Response;
    fn parse_head(bytes: Bytes, limits: &HeadLimits) -> Result<Self, HttpError> {
        ResponseHead::parse(bytes, limits)
    }
    fn parse_head_reusing(
        bytes: Bytes,
        limits: &HeadLimits,
        spare: Vec<HeaderField>,
    ) -> Result<Self, HttpError> {
        ResponseHead::parse_reusing(bytes, limits, spare)
    }
}

/// A parsed request head. Every span indexes `bytes`.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// Exactly the head the scanner delimited, including its empty line.
    pub bytes: Bytes,
    /// The method, `Other` for unregistered ones (their text is `method_str()`).
    pub method: Method,
    /// The method's text.
    pub method_span: Span,
    /// The request target as sent.
    pub target: Span,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// Field lines in order; one allocation per head.
    pub headers: Vec<HeaderField>,
}

impl RequestHead {
    /// `bytes` is exactly the head the scanner delimited. Spans index into `bytes` (no
    /// per-header allocation, just the one Vec of spans). Applies limits (headers count -> 431,
    /// target length -> 414). Rejects with 400: obs-fold, whitespace between field name and
    /// colon, invalid tokens, control chars in values, a target of none of the four forms,
    /// HTTP/1.1 without exactly one Host, more than one Host, an invalid Host; with 505: a
    /// well-formed HTTP version other than 1.0 and 1.1.
    pub fn parse(bytes: Bytes, limits: &HeadLimits) -> Result<RequestHead, HttpError> {
        RequestHead::parse_reusing(bytes, limits, Vec::new())
    }

    /// `parse`, the field list built in `spare`'s allocation (`ParseHead::parse_head_reusing`).
    pub fn parse_reusing(
        bytes: Bytes,
        limits: &HeadLimits,
        spare: Vec<HeaderField>,
    ) -> Result<RequestHead, HttpError> {
        let kind = HeadKind::Request;
        check_head_len(&bytes, limits, kind)?;
        let mut stack = [const { MaybeUninit::uninit() }; STACK_HEADER_SLOTS];
        let mut heap = Vec::new();
        let slots = header_slots(&mut stack, &mut heap, limits.max_headers);
        let mut req = httparse::Request::new(&mut []);
        let parsed = httparse::ParserConfig::default()
            .parse_request_with_uninit_headers(&mut req, &bytes, slots);
        parsed_whole(parsed, &bytes, kind, limits)?;
        let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
            return Err(HttpError::IncompleteHead { kind });
        };
        let headers = field_spans(&bytes, req.headers, limits, kind, spare)?;
        let method_kind = Method::from_bytes(method.as_bytes());
        if target.len() > limits.max_target_bytes {
            return Err(HttpError::TargetTooLong {
                limit: limits.max_target_bytes,
            });
        }
        check_target_form(method_kind, target.as_bytes())?;
        let version = if minor == 0 {
            Version::Http10
        } else {
            Version::Http11
        };
        let method_span = Span::within(&bytes, method.as_bytes());
        let target = Span::within(&bytes, target.as_bytes());
        let head = RequestHead {
            bytes,
            method: method_kind,
            method_span,
            target,
            version,
            headers,
        };
        head.check_host()?;
        Ok(head)
    }

    /// RFC 9112 3.2: "A server MUST respond with a 400 (Bad Request) status code to any HTTP/1.1
    /// request message that lacks a Host header field and to any request message that contains
    /// more than one Host header field line or a Host header field with an invalid field value."
    fn check_host(&self) -> Result<(), HttpError> {
        let mut hosts = self.headers_named("host");
        match (hosts.next(), hosts.next()) {
            (None, _) if self.version == Version::Http11 => Err(HttpError::MissingHost),
            (None, _) => Ok(()),
            (Some(_), Some(_)) => Err(HttpError::MultipleHost {
                count: 2 + hosts.count(),
            }),
            (Some(host), None) if is_valid_host(host) => Ok(()),
            (Some(_), None) => Err(HttpError::InvalidHost),
        }
    }

    /// The request target as sent.
    pub fn target(&self) -> &[u8] {
        self.target.of(&self.bytes)
    }

    /// The method as sent.
    pub fn method_str(&self) -> &[u8] {
        self.method_span.of(&self.bytes)
    }

    /// First header with this name, ASCII case-insensitive.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers_named(name).next()
    }

    /// Every value of the headers with this name, in order, ASCII case-insensitive.
    pub(crate) fn headers_named<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a [u8]> + Clone + use<'a, 'n> {
        named(&self.bytes, &self.headers, name)
    }

    /// All field lines in order as (name, value).
    pub(crate) fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.headers
            .iter()
            .map(|h| (h.name.of(&self.bytes), h.value.of(&self.bytes)))
    }
}

/// A parsed response head. Every span indexes `bytes`.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// Exactly the head the scanner delimited, including its empty line.
    pub bytes: Bytes,
    /// The status code, 100..=599.
    pub status: u16,
    /// The reason phrase as sent (may be empty).
    pub reason: Span,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// Field lines in order; one allocation per head.
    pub headers: Vec<HeaderField>,
}

/// httparse's verdict on a delimited head: it must be complete and end exactly where the
/// scanner said; a parse error is diagnosed into the specific rule it broke.
fn parsed_whole(
    parsed: httparse::Result<usize>,
    bytes: &[u8],
    kind: HeadKind,
    limits: &HeadLimits,
) -> Result<(), HttpError> {
    match parsed {
        Ok(httparse::Status::Complete(n)) if n == bytes.len() => Ok(()),
        Ok(_) => Err(HttpError::IncompleteHead { kind }),
        Err(e) => Err(diagnose(e, bytes, kind, limits)),
    }
}

impl ResponseHead {
    /// `Content-Type: text/event-stream`, in any case, with any parameters.
    pub fn is_event_stream(&self) -> bool {
        self.header("content-type").is_some_and(|value| {
            let media = value.split(|&b| b == b';').next().unwrap_or(b"");
            media
                .trim_ascii()
                .eq_ignore_ascii_case(b"text/event-stream")
        })
    }

    /// Like [`RequestHead::parse`] for a status line; the status must be 100..=599 (RFC 9110 15).
    pub fn parse(bytes: Bytes, limits: &HeadLimits) -> Result<ResponseHead, HttpError> {
        ResponseHead::parse_reusing(bytes, limits, Vec::new())
    }

    /// `parse`, the field list built in `spare`'s allocation (`ParseHead::parse_head_reusing`).
    pub fn parse_reusing(
        bytes: Bytes,
        limits: &HeadLimits,
        spare: Vec<HeaderField>,
    ) -> Result<ResponseHead, HttpError> {
        let kind = HeadKind::Response;
        check_head_len(&bytes, limits, kind)?;
        let mut stack = [const { MaybeUninit::uninit() }; STACK_HEADER_SLOTS];
        let mut heap = Vec::new();
        let slots = header_slots(&mut stack, &mut heap, limits.max_headers);
        let mut res = httparse::Response::new(&mut []);
        let parsed = httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut res, &bytes, slots);
        parsed_whole(parsed, &bytes, kind, limits)?;
        let (Some(status), Some(minor)) = (res.code, res.version) else {
            return Err(HttpError::IncompleteHead { kind });
        };
        if !(100..=599).contains(&status) {
            return Err(HttpError::InvalidStatusCode { code: status });
        }
        let headers = field_spans(&bytes, res.headers, limits, kind, spare)?;
        // httparse replaces a reason with obs-text by "", so the span is taken from the line:
        // "HTTP/1.1 200 " is 13 bytes, the reason is the rest of the line.
        let (_, line) = start_line(&bytes);
        let reason = line
            .get(13..)
            .map_or(Span::default(), |r| Span::within(&bytes, r));
        let version = if minor == 0 {
            Version::Http10
        } else {
            Version::Http11
        };
        Ok(ResponseHead {
            bytes,
            status,
            reason,
            version,
            headers,
        })
    }

    /// First header with this name, ASCII case-insensitive.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers_named(name).next()
    }

    /// Every value of the headers with this name, in order, ASCII case-insensitive.
    pub(crate) fn headers_named<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a [u8]> + Clone + use<'a, 'n> {
        named(&self.bytes, &self.headers, name)
    }

    /// All field lines in order as (name, value).
    pub(crate) fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.headers
            .iter()
            .map(|h| (h.name.of(&self.bytes), h.value.of(&self.bytes)))
    }
}

fn named<'a, 'n>(
    bytes: &'a [u8],
    headers: &'a [HeaderField],
    name: &'n str,
) -> impl Iterator<Item = &'a [u8]> + Clone + use<'a, 'n> {
    headers
        .iter()
        .filter(move |h| h.name.of(bytes).eq_ignore_ascii_case(name.as_bytes()))
        .map(move |h| h.value.of(bytes))
}

fn check_head_len(bytes: &[u8], limits: &HeadLimits, kind: HeadKind) -> Result<(), HttpError> {
    if bytes.len() > limits.max_head_bytes || u32::try_from(bytes.len()).is_err() {
        return Err(HttpError::HeadTooLarge {
            kind,
            limit: limits.max_head_bytes,
        });
    }
    Ok(())
}

/// `max_headers + 1` httparse slots, so that one header too many is seen as such.
fn header_slots<'s, 'b>(
    stack: &'s mut [MaybeUninit<httparse::Header<'b>>; STACK_HEADER_SLOTS],
    heap: &'s mut Vec<MaybeUninit<httparse::Header<'b>>>,
    max_headers: usize,
) -> &'s mut [MaybeUninit<httparse::Header<'b>>] {
    let wanted = max_headers.saturating_add(1);
    if wanted <= STACK_HEADER_SLOTS {
        &mut stack[..wanted]
    } else {
        heap.resize_with(wanted, MaybeUninit::uninit);
        heap
    }
}

fn field_spans(
    bytes: &[u8],
    fields: &[httparse::Header<'_>],
    limits: &HeadLimits,
    kind: HeadKind,
    mut spans: Vec<HeaderField>,
) -> Result<Vec<HeaderField>, HttpError> {
    if fields.len() > limits.max_headers {
        return Err(HttpError::TooManyHeaders {
            kind,
            limit: limits.max_headers,
        });
    }
    spans.clear();
    spans.extend(fields.iter().map(|h| HeaderField {
        name: Span::within(bytes, h.name.as_bytes()),
        value: Span::within(bytes, h.value),
    }));
    Ok(spans)
}
