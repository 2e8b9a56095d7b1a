//! Which streams a reconnection may be served from: the same route, the same request target
//! (path and full query) and the same identity. The method is not part of it: MCP (2025-11-25) resumes a stream
//! that began as a POST with a GET carrying `Last-Event-ID`.
//!
//! Identity is every value of the identity headers: `Authorization`, `Cookie`, `Mcp-Session-Id`
//! and the names given with `--identity-header` (APIs that authenticate with `X-Api-Key` or a
//! tenant header). A `Last-Event-ID` can never obtain events recorded for another identity.
//! Requests with no credentials for the same URL share a scope (the upstream would send them the
//! same data); their streams are still separate histories (one ring per upstream lineage).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use bytes::BufMut;

use crate::http::RequestHead;

/// The identity headers every deployment has.
pub const DEFAULT_IDENTITY_HEADERS: [&str; 3] = ["authorization", "cookie", "mcp-session-id"];

/// The header names that make up a requester's identity (lower case, in a fixed order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityHeaders(Arc<[Box<str>]>);

impl IdentityHeaders {
    /// The defaults plus `extra` (from `--identity-header`), lower-cased, without repeats.
    pub fn new<S: AsRef<str>>(extra: &[S]) -> IdentityHeaders {
        let mut names: Vec<Box<str>> = DEFAULT_IDENTITY_HEADERS
            .iter()
            .map(|n| Box::<str>::from(*n))
            .collect();
        for name in extra {
            let lower = name.as_ref().to_ascii_lowercase();
            if !names.iter().any(|n| **n == *lower) {
                names.push(lower.into());
            }
        }
        IdentityHeaders(names.into())
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|n| &**n)
    }
}

impl Default for IdentityHeaders {
    fn default() -> Self {
        IdentityHeaders::new::<&str>(&[])
    }
}

/// Exact scope bytes: each part length-prefixed, so no two different requests encode the same.
/// The hash is computed once (scopes are map keys on every reconnection and ring creation).
#[derive(Clone, Debug)]
pub struct ResumeScope {
    /// One allocation of exactly the scope's bytes, shared by its clones: every ring's lineage
    /// holds its scope for its whole life (an idle stream's included), and the directory's
    /// shards share it between workers. A `Bytes` of a `BytesMut` held 24 bytes more (its
    /// shared header, made at the first clone) and the builder's spare capacity, and was 16
    /// bytes larger in the lineage.
    bytes: Arc<[u8]>,
    hash: u64,
}

impl PartialEq for ResumeScope {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash && self.bytes == other.bytes
    }
}

impl Eq for ResumeScope {}

impl Hash for ResumeScope {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl ResumeScope {
    /// `route`: the request's route's scope key (`crate::route::Route::scope_key`): the same
    /// target reaches different upstreams on two routes (another host, say), so their streams
    /// never share rings.
    pub fn of(head: &RequestHead, route: u64, identity: &IdentityHeaders) -> ResumeScope {
        let mut out = Vec::with_capacity(head.target().len() + 40);
        put_part(&mut out, head.target());
        out.put_u64(route);
        for name in identity.names() {
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
        let bytes: Arc<[u8]> = out.into();
        let hash = scope_hash(&bytes);
        ResumeScope { bytes, hash }
    }

    /// The request target this scope was made from (for logs and the admin view).
    pub fn target(&self) -> String {
        let len = read_len(&self.bytes, 0);
        String::from_utf8_lossy(&self.bytes[4..4 + len]).into_owned()
    }

    /// Bytes this scope holds (for the replay memory budget).
    pub fn heap_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// The scope's exact bytes: what the replay store hashes into the stream's Redis key
    /// (`crate::store::StoreKey::from_scope_bytes`). They hold identity header values: never log
    /// or send them anywhere as they are.
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Both hold one allocation of the scope's bytes (`StreamTable` shares a known scope's).
    #[cfg(test)]
    pub(crate) fn shares_bytes_with(&self, other: &ResumeScope) -> bool {
        Arc::ptr_eq(&self.bytes, &other.bytes)
    }

    /// A well-mixed hash of the scope (also picks the directory shard).
    pub fn hash_value(&self) -> u64 {
        self.hash
    }
}

fn put_part(out: &mut Vec<u8>, part: &[u8]) {
    out.put_u32(part.len() as u32);
    out.put_slice(part);
}

fn read_len(b: &[u8], at: usize) -> usize {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

/// SipHash with fixed keys: scopes are chosen by clients, so the hash must not be cheap to
/// collide on purpose the way a plain multiply-rotate hash is; it runs once per request.
fn scope_hash(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    h.write(bytes);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HeadLimits;
    use bytes::Bytes;

    fn scope_with(raw: &str, identity: &IdentityHeaders) -> ResumeScope {
        let head = RequestHead::parse(
            Bytes::copy_from_slice(raw.as_bytes()),
            &HeadLimits::default(),
        )
        .unwrap();
        ResumeScope::of(&head, 0, identity)
    }

    fn scope(raw: &str) -> ResumeScope {
        scope_with(raw, &IdentityHeaders::default())
    }

    #[test]
    fn identity_separates_scopes_and_the_method_does_not() {
        let anon = scope("GET /s?a=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(
            anon,
            scope("GET /s?a=1 HTTP/1.1\r\nHost: other\r\nLast-Event-ID: 5\r\n\r\n")
        );
        assert_ne!(anon, scope("GET /s?a=2 HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert_eq!(
            anon,
            scope("POST /s?a=1 HTTP/1.1\r\nHost: x\r\n\r\n"),
            "a POST-born stream is resumed by GET"
        );
        let alice = scope("GET /s?a=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer alice\r\n\r\n");
        let bob = scope("GET /s?a=1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer bob\r\n\r\n");
        assert_ne!(alice, bob);
        assert_ne!(anon, alice);
        assert_ne!(
            scope("GET /s HTTP/1.1\r\nHost: x\r\nCookie: a=1\r\n\r\n"),
            scope("GET /s HTTP/1.1\r\nHost: x\r\nMcp-Session-Id: a=1\r\n\r\n"),
            "the same value under another identity header is another scope"
        );
        assert_eq!(alice.target(), "/s?a=1");
    }

    #[test]
    fn routes_separate_scopes() {
        let raw = "GET /s HTTP/1.1\r\nHost: x\r\n\r\n";
        let head = RequestHead::parse(
            Bytes::copy_from_slice(raw.as_bytes()),
            &HeadLimits::default(),
        )
        .unwrap();
        let identity = IdentityHeaders::default();
        assert_ne!(
            ResumeScope::of(&head, 1, &identity),
            ResumeScope::of(&head, 2, &identity)
        );
        assert_eq!(ResumeScope::of(&head, 1, &identity).target(), "/s");
    }

    #[test]
    fn identity_headers_from_the_command_line() {
        let tenants = IdentityHeaders::new(&["X-Api-Key", "x-api-key", "Authorization"]);
        assert_eq!(
            tenants.names().collect::<Vec<_>>(),
            vec!["authorization", "cookie", "mcp-session-id", "x-api-key"]
        );
        let a = "GET /s HTTP/1.1\r\nHost: x\r\nX-Api-Key: a\r\n\r\n";
        let b = "GET /s HTTP/1.1\r\nHost: x\r\nX-API-KEY: b\r\n\r\n";
        assert_ne!(scope_with(a, &tenants), scope_with(b, &tenants));
        assert_eq!(
            scope(a),
            scope(b),
            "without the flag the header is not identity"
        );
    }
}
