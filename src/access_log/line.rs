//! One access log line: what is known about a request, stream or tunnel when it ends, written
//! as one JSON object on one line.
//!
//! The path is logged without its query string: query strings carry credentials more often than
//! any other part of a request line (EventSource cannot set headers, so SSE clients pass tokens
//! as `?token=`), and an access log is kept longer and read by more people than the requests
//! themselves. The route and the upstream are enough to find the request in the upstream's logs.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::http::RequestHead;

/// What the line needs from the request, taken when it starts (only when the access log is on).
#[derive(Debug, Clone)]
pub(crate) struct RequestStart {
    pub(crate) started: Instant,
    pub(crate) client: SocketAddr,
    /// The method as sent.
    pub(crate) method: Bytes,
    /// The target's path, without query or fragment.
    pub(crate) path: Bytes,
}

impl RequestStart {
    /// Slices of the head's bytes (no copy); `detached` makes them their own for a stream.
    pub(crate) fn of(head: &RequestHead, client: SocketAddr, started: Instant) -> RequestStart {
        let target = head.target();
        let end = memchr::memchr2(b'?', b'#', target).unwrap_or(target.len());
        RequestStart {
            started,
            client,
            method: head.bytes.slice_ref(head.method_str()),
            path: head.bytes.slice_ref(&target[..end]),
        }
    }

    /// A start for a request whose head never parsed (400, 408, 431...): no method, no path.
    pub(crate) fn unparsed(client: SocketAddr, started: Instant) -> RequestStart {
        RequestStart {
            started,
            client,
            method: Bytes::new(),
            path: Bytes::new(),
        }
    }

    /// The same start holding no part of the connection's read buffer (streams, tunnels).
    pub(crate) fn detached(&self) -> RequestStart {
        RequestStart {
            started: self.started,
            client: self.client,
            method: Bytes::copy_from_slice(&self.method),
            path: Bytes::copy_from_slice(&self.path),
        }
    }
}

/// What kind of exchange a line reports, with the figures only that kind has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineKind {
    /// A request and its response.
    Request,
    /// An SSE stream, logged when it ends: events relayed and upstream resumes.
    Sse { events: u64, resumes: u64 },
    /// An upgraded connection, logged when the tunnel closes: bytes each way after the heads.
    Tunnel { to_upstream: u64, to_client: u64 },
}

/// One line, borrowed from what the exchange holds.
pub(crate) struct AccessLine<'a> {
    pub(crate) worker: usize,
    pub(crate) request_id: &'a [u8],
    pub(crate) start: &'a RequestStart,
    pub(crate) route: Option<&'a str>,
    pub(crate) status: u16,
    /// Bytes written to the client: heads, bodies and framing (for a stream, its head and events).
    pub(crate) bytes: u64,
    /// The upstream replica's URL, when one was chosen.
    pub(crate) upstream: Option<&'a str>,
    pub(crate) kind: LineKind,
    /// The client is an HTTP/2 stream (`"protocol":"h2"` at the end of the line; HTTP/1.1
    /// lines stay as they were).
    pub(crate) h2: bool,
}

impl AccessLine<'_> {
    /// Appends the line (JSON, newline-terminated) to `out`. `time` is the end time, RFC 3339 UTC.
    pub(crate) fn write_json(&self, time: &str, now: Instant, out: &mut Vec<u8>) {
        let duration = now.saturating_duration_since(self.start.started);
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "{{\"time\":\"{time}\",\"worker\":{},\"request_id\":",
            self.worker
        );
        json_string(self.request_id, out);
        let _ = write!(out, ",\"client\":\"{}\",\"route\":", self.start.client);
        match self.route {
            Some(name) => json_string(name.as_bytes(), out),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"method\":");
        json_or_null(&self.start.method, out);
        out.extend_from_slice(b",\"path\":");
        json_or_null(&self.start.path, out);
        let _ = write!(
            out,
            ",\"status\":{},\"bytes\":{},\"duration_ms\":{},\"upstream\":",
            self.status,
            self.bytes,
            millis(duration)
        );
        match self.upstream {
            Some(url) => json_string(url.as_bytes(), out),
            None => out.extend_from_slice(b"null"),
        }
        let _ = match self.kind {
            LineKind::Request => write!(out, ",\"kind\":\"request\""),
            LineKind::Sse { events, resumes } => write!(
                out,
                ",\"kind\":\"sse\",\"events\":{events},\"resumes\":{resumes}"
            ),
            LineKind::Tunnel {
                to_upstream,
                to_client,
            } => write!(
                out,
                ",\"kind\":\"tunnel\",\"bytes_to_upstream\":{to_upstream},\"bytes_to_client\":{to_client}"
            ),
        };
        if self.h2 {
            out.extend_from_slice(b",\"protocol\":\"h2\"");
        }
        out.extend_from_slice(b"}\n");
    }
}

/// Milliseconds with three decimals ("12.345"), from whole microseconds.
fn millis(d: Duration) -> String {
    let us = d.as_micros();
    format!("{}.{:03}", us / 1000, us % 1000)
}

fn json_or_null(bytes: &[u8], out: &mut Vec<u8>) {
    if bytes.is_empty() {
        out.extend_from_slice(b"null");
    } else {
        json_string(bytes, out);
    }
}

/// `bytes` as a JSON string: quote, backslash and control bytes escaped; bytes past ASCII (which
/// a request line may hold as obs-text) as \u00XX of their Latin-1 reading, so the line is
/// always valid UTF-8 and always one line.
pub(crate) fn json_string(bytes: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &b in bytes {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x20..=0x7e => out.push(b),
            _ => {
                let _ = write!(out, "\\u{:04x}", b);
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HeadLimits;

    #[test]
    fn a_line_is_one_json_object_without_the_query() {
        let head = RequestHead::parse(
            Bytes::from_static(b"GET /feed/x%22?token=secret HTTP/1.1\r\nHost: h\r\n\r\n"),
            &HeadLimits::default(),
        )
        .unwrap();
        let t0 = Instant::now();
        let start = RequestStart::of(&head, "127.0.0.1:5000".parse().unwrap(), t0);
        let line = AccessLine {
            worker: 1,
            request_id: b"a\"b",
            start: &start,
            route: Some("feeds"),
            status: 200,
            bytes: 42,
            upstream: Some("http://10.0.0.1:80"),
            kind: LineKind::Sse {
                events: 3,
                resumes: 1,
            },
            h2: false,
        };
        let mut out = Vec::new();
        line.write_json(
            "2026-01-01T00:00:00.000Z",
            t0 + Duration::from_micros(1_234_567),
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "{\"time\":\"2026-01-01T00:00:00.000Z\",\"worker\":1,\"request_id\":\"a\\\"b\",\
             \"client\":\"127.0.0.1:5000\",\"route\":\"feeds\",\"method\":\"GET\",\
             \"path\":\"/feed/x%22\",\"status\":200,\"bytes\":42,\"duration_ms\":1234.567,\
             \"upstream\":\"http://10.0.0.1:80\",\"kind\":\"sse\",\"events\":3,\"resumes\":1}\n"
        );
        assert!(!text.contains("secret"));
    }

    #[test]
    fn odd_bytes_stay_on_one_valid_line() {
        let mut out = Vec::new();
        json_string(b"a\nb\xff\\", &mut out);
        assert_eq!(out, b"\"a\\u000ab\\u00ff\\\\\"");
    }
}
