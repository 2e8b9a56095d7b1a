//! The identity of an SSE stream, for the replay rings.
//!
//! A stream is the exact method, target (path and full query) and the requester's identity
//! headers: `Authorization`, `Cookie` and `Mcp-Session-Id`. Two requests share a ring only when
//! all of these are byte-for-byte equal, so a `Last-Event-ID` can never obtain events from a
//! stream of another identity. Requests with no credentials for the same URL share a stream (the
//! upstream would send them the same data).

use bytes::{BufMut, Bytes, BytesMut};

use crate::http::RequestHead;

/// The headers that make two requests for the same URL different streams.
pub const IDENTITY_HEADERS: [&str; 3] = ["authorization", "cookie", "mcp-session-id"];

/// Exact key bytes: each part length-prefixed, so no two different requests encode the same.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StreamKey(Bytes);

impl StreamKey {
    pub fn of(head: &RequestHead) -> StreamKey {
        let mut out = BytesMut::with_capacity(head.target().len() + 64);
        put_part(&mut out, head.method_str());
        put_part(&mut out, head.target());
        for name in IDENTITY_HEADERS {
            // Every value of the header, in order (a repeated Cookie header is part of identity).
            let mut count = 0u32;
            for (n, v) in head.headers() {
                if n.eq_ignore_ascii_case(name.as_bytes()) {
                    put_part(&mut out, v);
                    count += 1;
                }
            }
            out.put_u32(count);
        }
        StreamKey(out.freeze())
    }

    /// The request target this key was made from (for logs and the admin view).
    pub fn target(&self) -> String {
        let b = &self.0[..];
        let method_len = read_len(b, 0);
        let start = 4 + method_len + 4;
        let len = read_len(b, 4 + method_len);
        String::from_utf8_lossy(&b[start..start + len]).into_owned()
    }
}

fn put_part(out: &mut BytesMut, part: &[u8]) {
    out.put_u32(part.len() as u32);
    out.put_slice(part);
}

fn read_len(b: &[u8], at: usize) -> usize {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HeadLimits;

    fn key(raw: &str) -> StreamKey {
        let head = RequestHead::parse(
            Bytes::copy_from_slice(raw.as_bytes()),
            &HeadLimits::default(),
        )
        .unwrap();
        StreamKey::of(&head)
    }

    #[test]
    fn identity_separates_streams() {
        let anon = key("GET /s?a=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            anon,
            key("GET /s?a=1 HTTP/1.1\r\nHost: other\r\nLast-Event-ID: 5\r\n\r\n")
        );
        assert_ne!(anon, key("GET /s?a=2 HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert_ne!(anon, key("POST /s?a=1 HTTP/1.1\r\nHost: x\r\n\r\n"));
        let alice = key("GET /s?a=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice\r\n\r\n");
        let bob = key("GET /s?a=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer bob\r\n\r\n");
        assert_ne!(alice, bob);
        assert_ne!(anon, alice);
        assert_ne!(
            key("GET /s HTTP/1.1\r\nHost: x\r\nCookie: a=1\r\n\r\n"),
            key("GET /s HTTP/1.1\r\nHost: x\r\nMcp-Session-Id: a=1\r\n\r\n"),
            "the same value under another identity header is another stream"
        );
        assert_eq!(alice.target(), "/s?a=1");
    }
}
