//! What crosses the proxy: the head sent upstream, the head sent back to the client, and the
//! responses the proxy makes itself. Heads are written, never edited in place: the received
//! bytes stay read-only in their `Bytes` and only the fields that pass are copied out.

use std::fmt::Write as _;
use std::net::IpAddr;

use bytes::{BufMut, BytesMut};

use super::field_edit::{self, HeaderEdit};
use super::framing::content_length;
use super::head::{Method, RequestHead, ResponseHead, Version};
use super::rules::split_absolute_form;
use super::syntax::{list_elements, put_decimal};

/// How the proxy frames a body it sends on.
///
/// Requests: `CloseDelimited` is impossible for a request; it is written as `Chunked`, so a
/// caller mistake shows up as a 400 from the upstream rather than as body bytes read as a next
/// request. Responses: `Empty` means no body follows because of the request method or the status
/// (HEAD, 1xx, 204, 304), and the upstream's Content-Length is kept (it describes the
/// representation); an empty body anywhere else is `Length(0)`. `Chunked` needs an HTTP/1.1
/// client: for HTTP/1.0 clients use `CloseDelimited`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutFraming {
    Empty,
    Length(u64),
    Chunked,
    CloseDelimited,
}

/// What the proxy knows about a request besides its head.
pub struct ForwardContext<'a> {
    /// The client's address, appended to X-Forwarded-For.
    pub client_addr: IpAddr,
    /// The scheme the client used ("http"), sent as X-Forwarded-Proto.
    pub proto: &'a str,
    /// From --upstream http://h:p/prefix, "" when none; joined before every origin-form path.
    pub path_prefix: &'a [u8],
    /// When set, replaces the client's Last-Event-ID: the SSE relay asks the upstream to resume
    /// from the newest event it already holds (replay ring, or a resumed stream's cursor). An
    /// empty value removes the header.
    pub last_event_id: Option<&'a [u8]>,
    /// When set, replaces the request's method (a stream born as a POST is resumed with a GET
    /// under `--resume-post-as-get`; the body is never sent again).
    pub method: Option<&'a [u8]>,
    /// When set, the request's `X-Request-Id` (the client's, or one tether made): the client's
    /// fields of that name are dropped and this one is sent. None sends the client's as they are.
    pub request_id: Option<&'a [u8]>,
    /// The request asks to switch protocols (`crate::http::requests_upgrade`): its `Upgrade`
    /// field crosses, with `Connection: upgrade`, instead of being dropped as hop-by-hop.
    pub upgrade: bool,
    /// Header changes asked for by the request's rules (`crate::rules`); empty without rules.
    pub header_edits: &'a [HeaderEdit],
}

/// Field names that never cross the proxy, besides those a Connection header lists
/// (RFC 9110 7.6.1). Expect is answered by the proxy itself (100-continue), so it stops here too.
const HOP_BY_HOP: &[&[u8]] = &[
    b"connection",
    b"keep-alive",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"expect",
];

/// The names listed in Connection headers, and the test of whether a field crosses the proxy.
struct HopByHop<'a> {
    /// Values of every Connection field line (usually one; allocated only when present).
    connection: Vec<&'a [u8]>,
    /// An upgrade crosses: `Upgrade` is kept (Connection itself is still dropped and written
    /// again as `Connection: upgrade`).
    keep_upgrade: bool,
}

impl<'a> HopByHop<'a> {
    fn new(connection: impl Iterator<Item = &'a [u8]>) -> Self {
        HopByHop {
            connection: connection.collect(),
            keep_upgrade: false,
        }
    }

    /// As `new`, keeping `Upgrade` when `upgrade` is set.
    fn with_upgrade(connection: impl Iterator<Item = &'a [u8]>, upgrade: bool) -> Self {
        HopByHop {
            keep_upgrade: upgrade,
            ..HopByHop::new(connection)
        }
    }

    /// True for hop-by-hop fields: the fixed list, every Proxy-* field (Proxy-Connection,
    /// Proxy-Authorization: credentials meant for this hop), and whatever Connection lists,
    /// except Host, which HTTP/1.1 requires end to end and a client may not strip.
    fn drops(&self, name: &[u8]) -> bool {
        if self.keep_upgrade && name.eq_ignore_ascii_case(b"upgrade") {
            return false;
        }
        HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
            || name
                .get(..6)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"proxy-"))
            || (!name.eq_ignore_ascii_case(b"host")
                && self
                    .connection
                    .iter()
                    .any(|v| list_elements(v).any(|t| t.eq_ignore_ascii_case(name))))
    }
}

fn is(name: &[u8], wanted: &str) -> bool {
    name.eq_ignore_ascii_case(wanted.as_bytes())
}

fn put_field(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.reserve(name.len() + value.len() + 4);
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// `prefix` + `path`, one '/' between them: "/api" + "/x" and "/api/" + "/x" give "/api/x";
/// an empty path (absolute-form "http://h") becomes "/", a bare query "?q" becomes "/?q".
fn put_prefixed_path(out: &mut BytesMut, prefix: &[u8], path: &[u8]) {
    let mut end = prefix.len();
    while end > 0 && prefix[end - 1] == b'/' {
        end -= 1;
    }
    let prefix = &prefix[..end];
    if !prefix.is_empty() && prefix[0] != b'/' {
        out.put_u8(b'/');
    }
    out.put_slice(prefix);
    if path.first() != Some(&b'/') {
        out.put_u8(b'/');
    }
    out.put_slice(path);
}

/// Writes the upstream request head into `out`: "METHOD prefix+target HTTP/1.1\r\n", then the
/// client's headers in order minus hop-by-hop (Connection and every header it names except Host,
/// Keep-Alive, TE, Trailer, Transfer-Encoding, Upgrade, Proxy-Connection and every Proxy-*
/// header, Expect — the proxy answers 100-continue itself), minus Content-Length (re-framed),
/// minus existing X-Forwarded-For (combined below), X-Forwarded-Proto and X-Forwarded-Host;
/// then framing for `body` (Content-Length: n, or Transfer-Encoding: chunked, nothing for Empty),
/// X-Forwarded-For: "<existing>, <client ip>" (appended to the combined existing values, or just
/// the ip), X-Forwarded-Proto: proto, X-Forwarded-Host: the client's Host (when not empty).
/// Host is preserved as is; a request without one (HTTP/1.0) gets an empty Host first, as
/// RFC 9110 7.2 prescribes when the authority is unknown.
/// Absolute-form targets ("http://authority/path?q") are sent in origin-form (path, "/" when
/// empty) and the Host is the target's authority (RFC 9112 3.2.2). Asterisk-form ("*") and
/// authority-form (CONNECT) are sent as is without prefix. With `ctx.upgrade`, `Upgrade` is kept
/// and `Connection: upgrade` written; with `ctx.request_id`, the client's `X-Request-Id` fields
/// give way to `X-Request-Id: <id>`.
pub fn write_upstream_request(
    head: &RequestHead,
    body: OutFraming,
    ctx: &ForwardContext,
    out: &mut BytesMut,
) {
    let target = head.target();
    let absolute = match (head.method, target.first()) {
        (Method::Connect, _) | (_, Some(b'/')) => None,
        _ => split_absolute_form(target),
    };
    out.reserve(head.bytes.len() + 128);

    // Request line.
    out.put_slice(ctx.method.unwrap_or(head.method_str()));
    out.put_u8(b' ');
    match absolute {
        Some((_, path)) => put_prefixed_path(out, ctx.path_prefix, path),
        None if target.first() == Some(&b'/') => put_prefixed_path(out, ctx.path_prefix, target),
        None => out.put_slice(target),
    }
    out.put_slice(b" HTTP/1.1\r\n");

    // Fields in order, Host first when it has to be made up.
    let host = absolute
        .map(|(authority, _)| authority)
        .or_else(|| head.header("host"));
    if head.header("host").is_none() {
        put_field(out, b"Host", host.unwrap_or(b""));
    }
    let hop = HopByHop::with_upgrade(head.headers_named("connection"), ctx.upgrade);
    for (name, value) in head.headers() {
        if hop.drops(name)
            || is(name, "content-length")
            || (ctx.request_id.is_some() && is(name, "x-request-id"))
            || is(name, "x-forwarded-for")
            || is(name, "x-forwarded-proto")
            || is(name, "x-forwarded-host")
            || (ctx.last_event_id.is_some() && is(name, "last-event-id"))
            || field_edit::edited(ctx.header_edits, name)
        {
            continue;
        }
        let value = if is(name, "host") {
            host.unwrap_or(value)
        } else {
            value
        };
        put_field(out, name, value);
    }

    for (name, value) in field_edit::added(ctx.header_edits) {
        put_field(out, name.as_bytes(), value.as_bytes());
    }

    // Framing.
    match body {
        OutFraming::Empty => {}
        OutFraming::Length(n) => put_length(out, n),
        OutFraming::Chunked | OutFraming::CloseDelimited => {
            debug_assert!(
                body != OutFraming::CloseDelimited,
                "a request cannot be close-delimited"
            );
            out.put_slice(b"Transfer-Encoding: chunked\r\n");
        }
    }

    // An empty override removes the header (the client's value was an id tether assigned, or
    // the stream is resumed without an id).
    if let Some(id) = ctx.last_event_id.filter(|id| !id.is_empty()) {
        put_field(out, b"Last-Event-ID", id);
    }
    if ctx.upgrade {
        out.put_slice(b"Connection: upgrade\r\n");
    }
    if let Some(id) = ctx.request_id {
        put_field(out, b"X-Request-Id", id);
    }

    // Forwarding fields.
    out.put_slice(b"X-Forwarded-For: ");
    let chain = head
        .headers_named("x-forwarded-for")
        .filter(|_| !hop.drops(b"x-forwarded-for"));
    for value in chain {
        if !value.is_empty() {
            out.put_slice(value);
            out.put_slice(b", ");
        }
    }
    put_client_addr(out, ctx.client_addr);
    out.put_slice(b"\r\n");
    put_field(out, b"X-Forwarded-Proto", ctx.proto.as_bytes());
    if let Some(host) = host.filter(|h| !h.is_empty()) {
        put_field(out, b"X-Forwarded-Host", host);
    }
    out.put_slice(b"\r\n");
}

/// The client's address as `Display` writes its canonical form (an IPv4-mapped IPv6 address as
/// IPv4). IPv4 is written by hand: through `write!` and the formatter it cost ~780 of the
/// ~18,000 instructions of a keep-alive request (callgrind, perf/NOTES.md "Keep-alive
/// syscalls"), a third of writing the upstream head.
pub(crate) fn put_client_addr(out: &mut BytesMut, addr: IpAddr) {
    match addr.to_canonical() {
        IpAddr::V4(v4) => {
            // "255.255.255.255" at most.
            let mut text = [0u8; 15];
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text[len] = b'.';
                    len += 1;
                }
                if octet >= 100 {
                    text[len] = b'0' + octet / 100;
                    len += 1;
                }
                if octet >= 10 {
                    text[len] = b'0' + octet / 10 % 10;
                    len += 1;
                }
                text[len] = b'0' + octet % 10;
                len += 1;
            }
            out.put_slice(&text[..len]);
        }
        // Writing into a BytesMut cannot fail.
        v6 => {
            let _ = write!(out, "{v6}");
        }
    }
}

fn put_length(out: &mut BytesMut, n: u64) {
    out.put_slice(b"Content-Length: ");
    put_decimal(out, n);
    out.put_slice(b"\r\n");
}

/// "HTTP/1.1 {status} {reason}\r\n", the upstream's reason or ours when it sent none.
fn put_status_line(out: &mut BytesMut, head: &ResponseHead) {
    out.reserve(head.bytes.len() + 64);
    out.put_slice(b"HTTP/1.1 ");
    put_decimal(out, u64::from(head.status));
    out.put_u8(b' ');
    let reason = head.reason.of(&head.bytes);
    if reason.is_empty() {
        out.put_slice(reason_phrase(head.status).as_bytes());
    } else {
        out.put_slice(reason);
    }
    out.put_slice(b"\r\n");
}

/// The upstream's end-to-end fields, minus Content-Length and Transfer-Encoding, minus its
/// `X-Request-Id` when tether sends the request's own (`request_id` not empty), and keeping
/// `Upgrade` when `upgrade` (a 101).
fn put_end_to_end_fields(
    out: &mut BytesMut,
    head: &ResponseHead,
    request_id: &[u8],
    upgrade: bool,
    edits: &[HeaderEdit],
) {
    let hop = HopByHop::with_upgrade(head.headers_named("connection"), upgrade);
    for (name, value) in head.headers() {
        if hop.drops(name)
            || is(name, "content-length")
            || (!request_id.is_empty() && is(name, "x-request-id"))
            || field_edit::edited(edits, name)
        {
            continue;
        }
        put_field(out, name, value);
    }
    for (name, value) in field_edit::added(edits) {
        put_field(out, name.as_bytes(), value.as_bytes());
    }
    if !request_id.is_empty() {
        put_field(out, b"X-Request-Id", request_id);
    }
}

/// Writes the client response head: "HTTP/1.1 {status} {reason}\r\n", upstream headers minus
/// hop-by-hop (as for requests) and minus Content-Length/Transfer-Encoding (re-framed), then
/// framing for `body` and "Connection: close" when !keep_alive, or "Connection: keep-alive" when
/// keep_alive and the client is HTTP/1.0. A close-delimited body always gets "Connection: close".
/// `request_id` (when not empty) is sent as `X-Request-Id`, in place of the upstream's own.
pub fn write_client_response(
    head: &ResponseHead,
    body: OutFraming,
    keep_alive: bool,
    client_version: Version,
    request_id: &[u8],
    out: &mut BytesMut,
) {
    write_edited_client_response(head, body, keep_alive, client_version, request_id, &[], out);
}

/// [`write_client_response`] with the header changes of the request's rules.
pub(crate) fn write_edited_client_response(
    head: &ResponseHead,
    body: OutFraming,
    keep_alive: bool,
    client_version: Version,
    request_id: &[u8],
    edits: &[HeaderEdit],
    out: &mut BytesMut,
) {
    put_status_line(out, head);
    put_end_to_end_fields(out, head, request_id, false, edits);
    let mut keep_alive = keep_alive;
    match body {
        // HEAD and 304: the upstream's Content-Length describes the representation; 1xx and 204
        // must not carry one (RFC 9110 8.6).
        OutFraming::Empty => {
            if !matches!(head.status, 100..=199 | 204) {
                if let Ok(Some(n)) = content_length(head.headers_named("content-length")) {
                    put_length(out, n);
                }
            }
        }
        OutFraming::Length(n) => put_length(out, n),
        OutFraming::Chunked => out.put_slice(b"Transfer-Encoding: chunked\r\n"),
        OutFraming::CloseDelimited => keep_alive = false,
    }
    if !keep_alive {
        out.put_slice(b"Connection: close\r\n");
    } else if client_version == Version::Http10 {
        out.put_slice(b"Connection: keep-alive\r\n");
    }
    out.put_slice(b"\r\n");
}

/// An interim (1xx) response to relay to an HTTP/1.1 client as is, minus hop-by-hop headers.
pub(crate) fn write_interim_response(head: &ResponseHead, out: &mut BytesMut) {
    put_status_line(out, head);
    put_end_to_end_fields(out, head, b"", false, &[]);
    out.put_slice(b"\r\n");
}

/// The `101 Switching Protocols` an upgraded request's client gets: the upstream's status line
/// and end-to-end fields with its `Upgrade` kept (it names the protocol the connection now
/// speaks), `Connection: upgrade`, and `X-Request-Id`. No framing fields: after this head the
/// connection carries the new protocol's bytes.
pub(crate) fn write_switching_response(head: &ResponseHead, request_id: &[u8], out: &mut BytesMut) {
    put_status_line(out, head);
    put_end_to_end_fields(out, head, request_id, true, &[]);
    out.put_slice(b"Connection: upgrade\r\n\r\n");
}

/// A response generated by the proxy itself: short text/plain body "{status} {reason}: {detail}\n",
/// Content-Length set, "Connection: close" unless keep_alive, `X-Request-Id` when given. Used for
/// 400/404/408/413/414/431/501/502/503/504/505.
pub(crate) fn write_error_response(
    status: u16,
    detail: &str,
    keep_alive: bool,
    request_id: Option<&[u8]>,
    out: &mut BytesMut,
) {
    let body = format!("{status} {}: {detail}\n", reason_phrase(status));
    write_own_response(
        status,
        "text/plain; charset=utf-8",
        body.as_bytes(),
        keep_alive,
        request_id.unwrap_or_default(),
        out,
    );
}

/// A response the proxy makes with a body of its own (an interceptor rule's answer): status
/// line, `Content-Type`, `Content-Length`, `X-Request-Id`, and `Connection: close` unless
/// `keep_alive`; the body follows.
pub(crate) fn write_own_response(
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
    request_id: &[u8],
    out: &mut BytesMut,
) {
    out.reserve(body.len() + 160);
    out.put_slice(b"HTTP/1.1 ");
    put_decimal(out, u64::from(status));
    out.put_u8(b' ');
    out.put_slice(reason_phrase(status).as_bytes());
    out.put_slice(b"\r\n");
    put_field(out, b"Content-Type", content_type.as_bytes());
    put_length(out, body.len() as u64);
    if !keep_alive {
        out.put_slice(b"Connection: close\r\n");
    }
    if !request_id.is_empty() {
        put_field(out, b"X-Request-Id", request_id);
    }
    out.put_slice(b"\r\n");
    out.put_slice(body);
}

/// The RFC 9110 section 15 reason phrase of `status`, "" for codes it does not register.
pub(crate) fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}
