//! A stream's key in Redis: `tether:stream:` and the SHA-256 of its scope, in hex.
//!
//! A scope (`crate::sse::scope::ResumeScope`) is the request target, the route and every value of
//! the identity headers: `Authorization`, `Cookie`, `Mcp-Session-Id`. Those bytes must never reach
//! Redis, whose keys anyone with `KEYS`/`SCAN` access (or a `MONITOR`, or an RDB dump) can read.
//! A cryptographic hash keeps two scopes apart (a collision would let one identity resume another's
//! stream, so a 64-bit SipHash is not enough) and reveals nothing of the credentials; the same scope
//! gives the same key on every tether instance, which is what lets a reconnection landing on
//! another instance find the stream.

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// What every key tether writes starts with: an operator sharing a Redis can find (and `SCAN`)
/// tether's streams, and nothing else is ever mistaken for one.
pub(crate) const KEY_PREFIX: &str = "tether:stream:";

/// Hex digits of a SHA-256 digest (32 bytes, two digits each).
const DIGEST_HEX_LEN: usize = 64;

/// A stream's Redis key. Cheap to clone (a refcounted `Bytes`): it travels with every recorded
/// event to the store's thread.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct StoreKey(Bytes);

impl StoreKey {
    /// The key of the scope whose exact bytes are `scope` (`ResumeScope`'s length-prefixed
    /// encoding). Computed once per stream, never per event.
    pub(crate) fn from_scope_bytes(scope: &[u8]) -> StoreKey {
        let digest = Sha256::digest(scope);
        let mut key = Vec::with_capacity(KEY_PREFIX.len() + DIGEST_HEX_LEN);
        key.extend_from_slice(KEY_PREFIX.as_bytes());
        for byte in digest.iter() {
            key.push(HEX[usize::from(byte >> 4)]);
            key.push(HEX[usize::from(byte & 0xf)]);
        }
        debug_assert_eq!(key.len(), KEY_PREFIX.len() + DIGEST_HEX_LEN);
        StoreKey(Bytes::from(key))
    }

    /// The key as sent to Redis.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The key as text, for logs (always ASCII).
    pub(crate) fn as_str(&self) -> &str {
        // The prefix and hex digits are ASCII by construction.
        std::str::from_utf8(&self.0).unwrap_or("<non-ascii key>")
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    /// A scope as `ResumeScope` encodes it: each part length-prefixed (target, route, then each
    /// identity header's values and their count).
    fn scope_bytes(target: &str, authorization: &str, cookie: &str) -> Vec<u8> {
        let mut out = Vec::new();
        let part = |out: &mut Vec<u8>, p: &[u8]| {
            out.extend_from_slice(&(p.len() as u32).to_be_bytes());
            out.extend_from_slice(p);
        };
        part(&mut out, target.as_bytes());
        out.extend_from_slice(&7u64.to_be_bytes());
        part(&mut out, authorization.as_bytes());
        out.extend_from_slice(&1u32.to_be_bytes());
        part(&mut out, cookie.as_bytes());
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(&0u32.to_be_bytes());
        out
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn the_key_holds_no_credential_bytes() {
        let secret = "Bearer s3cr3t-t0k3n";
        let cookie = "session=abcdef0123";
        let key = StoreKey::from_scope_bytes(&scope_bytes("/events?room=1", secret, cookie));
        assert!(key.as_str().starts_with(KEY_PREFIX));
        assert_eq!(key.as_bytes().len(), KEY_PREFIX.len() + DIGEST_HEX_LEN);
        let digest = &key.as_bytes()[KEY_PREFIX.len()..];
        assert!(digest.iter().all(|b| HEX.contains(b)), "{}", key.as_str());
        for needle in [secret, "s3cr3t", cookie, "abcdef0123", "room=1", "/events"] {
            assert!(
                !contains(key.as_bytes(), needle.as_bytes()),
                "{needle:?} in {}",
                key.as_str()
            );
        }
    }

    #[test]
    fn the_same_scope_gives_the_same_key_and_another_scope_another() {
        let a = scope_bytes("/s", "Bearer alice", "");
        assert_eq!(
            StoreKey::from_scope_bytes(&a),
            StoreKey::from_scope_bytes(&a.clone())
        );
        assert_ne!(
            StoreKey::from_scope_bytes(&a),
            StoreKey::from_scope_bytes(&scope_bytes("/s", "Bearer bob", ""))
        );
        assert_ne!(
            StoreKey::from_scope_bytes(&a),
            StoreKey::from_scope_bytes(&scope_bytes("/t", "Bearer alice", ""))
        );
    }

    #[test]
    fn the_digest_is_sha256_in_lower_case_hex() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            StoreKey::from_scope_bytes(b"abc").as_str(),
            "tether:stream:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
