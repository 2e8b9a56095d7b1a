//! tether's session id: the upstream replica and the upstream's own session id, sealed.
//!
//! ```text
//! token     = "t1." base64url-no-pad( nonce || ciphertext || tag )
//! nonce     = 12 random bytes (OS RNG), new for every id
//! plaintext = replica (u64, little-endian) || upstream id (0..=512 bytes)
//! AAD       = "tether mcp session v1" NUL || identity (see `identity::identity_of`)
//! tag       = 16 bytes (AES-256-GCM)
//! ```
//!
//! Every character is visible ASCII (`t`, `1`, `.`, then `A-Z a-z 0-9 - _`), as MCP requires of
//! `Mcp-Session-Id`. The AAD binds the id to the client's identity, so an id presented with other
//! credentials does not open. Random 96-bit nonces: with one key, 2^32 ids keep the chance of a
//! repeated nonce below 2^-32 (NIST SP 800-38D); rotate the key well before that.
//!
//! `open` refuses in one of a few ways that say nothing about the key or the plaintext: too long,
//! malformed (not the format above), an unknown version, or not authentic (no accepted key opens
//! it with this identity: forged, altered, another identity's, or sealed with a key since removed).

use std::fmt;

use aes_gcm::aead::{Aead, Generate, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::keys::SessionKeys;

/// The longest upstream session id sealed, in bytes; `seal` refuses a longer one
/// ([`SealError::UpstreamIdTooLong`]: the caller answers 502, the upstream misbehaves).
pub(crate) const MAX_UPSTREAM_ID_LEN: usize = 512;

/// What every token starts with: the format's version.
pub(crate) const VERSION_PREFIX: &str = "t1.";

/// The fixed start of the AAD (NUL-terminated, so no identity can extend it into another domain).
const AAD_DOMAIN: &[u8] = b"tether mcp session v1\0";

/// Bytes of the random nonce (AES-GCM's 96 bits).
const NONCE_LEN: usize = 12;

/// Bytes of the replica key at the start of the plaintext.
const REPLICA_LEN: usize = 8;

/// Bytes of the authentication tag.
const TAG_LEN: usize = 16;

/// The shortest sealed payload: an empty upstream id.
const MIN_SEALED_LEN: usize = NONCE_LEN + REPLICA_LEN + TAG_LEN;

/// The longest sealed payload, for an upstream id of [`MAX_UPSTREAM_ID_LEN`].
const MAX_SEALED_LEN: usize = MIN_SEALED_LEN + MAX_UPSTREAM_ID_LEN;

/// The longest token `seal` makes, in bytes (734); `open` refuses a longer one before decoding
/// anything ([`SessionIdError::TooLong`]).
pub(crate) const MAX_TOKEN_LEN: usize = VERSION_PREFIX.len() + base64_len(MAX_SEALED_LEN);

/// Characters of unpadded base64 for `n` bytes: 4 per 3 bytes, 2 or 3 for a remainder of 1 or 2.
const fn base64_len(n: usize) -> usize {
    (4 * n).div_ceil(3)
}

/// What an id carries, once opened.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Sealed {
    /// Which replica began the session ([`super::replica_key`] of its URL).
    pub(crate) replica: u64,
    /// The upstream's own `Mcp-Session-Id`, to send to that replica in place of tether's.
    pub(crate) upstream_id: Vec<u8>,
}

/// The upstream id is a credential of sorts: only its length is printed.
impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("replica", &format_args!("{:#018x}", self.replica))
            .field("upstream_id_len", &self.upstream_id.len())
            .finish()
    }
}

/// Why an id cannot be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SealError {
    /// The upstream's session id is longer than [`MAX_UPSTREAM_ID_LEN`].
    UpstreamIdTooLong { len: usize },
    /// The OS random number generator failed to give a nonce.
    NoRandomness { reason: String },
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SealError::UpstreamIdTooLong { len } => write!(
                f,
                "upstream Mcp-Session-Id of {len} bytes (at most {MAX_UPSTREAM_ID_LEN})"
            ),
            SealError::NoRandomness { reason } => {
                write!(
                    f,
                    "no nonce: the OS random number generator failed: {reason}"
                )
            }
        }
    }
}

impl std::error::Error for SealError {}

/// Why an id does not open. Each is the client's fault and gets 404; the messages are short and
/// never quote the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SessionIdError {
    /// Longer than [`MAX_TOKEN_LEN`]: refused before decoding.
    TooLong,
    /// Not a prefix and base64url of at least nonce, replica and tag.
    Malformed,
    /// A version prefix other than `t1.`.
    UnknownVersion,
    /// No accepted key opens it with this identity.
    NotAuthentic,
}

impl fmt::Display for SessionIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SessionIdError::TooLong => "session id too long",
            SessionIdError::Malformed => "session id malformed",
            SessionIdError::UnknownVersion => "session id of an unknown version",
            SessionIdError::NotAuthentic => "session id not authentic",
        })
    }
}

impl std::error::Error for SessionIdError {}

/// The id for a session that `replica` began with `upstream_id`, for the client of `identity`.
pub(crate) fn seal(
    keys: &SessionKeys,
    replica: u64,
    upstream_id: &[u8],
    identity: &[u8],
) -> Result<String, SealError> {
    if upstream_id.len() > MAX_UPSTREAM_ID_LEN {
        return Err(SealError::UpstreamIdTooLong {
            len: upstream_id.len(),
        });
    }
    let nonce = Nonce::try_generate().map_err(|e| SealError::NoRandomness {
        reason: e.to_string(),
    })?;
    let mut plaintext = Vec::with_capacity(REPLICA_LEN + upstream_id.len());
    plaintext.extend_from_slice(&replica.to_le_bytes());
    plaintext.extend_from_slice(upstream_id);
    let aad = aad(identity);
    let ciphertext = keys
        .sealing()
        .encrypt(
            &nonce,
            Payload {
                msg: &plaintext,
                aad: &aad,
            },
        )
        // AES-GCM refuses only plaintexts over 64 GiB and AADs over 2^61 bytes.
        .expect("AES-GCM seals any plaintext under 64 GiB");
    debug_assert_eq!(ciphertext.len(), plaintext.len() + TAG_LEN);
    let mut sealed = Vec::with_capacity(NONCE_LEN + ciphertext.len());
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(&ciphertext);
    let mut token = String::with_capacity(VERSION_PREFIX.len() + base64_len(sealed.len()));
    token.push_str(VERSION_PREFIX);
    URL_SAFE_NO_PAD.encode_string(&sealed, &mut token);
    debug_assert!(token.len() <= MAX_TOKEN_LEN);
    Ok(token)
}

/// What `token` (a client's `Mcp-Session-Id`) carries, if an accepted key sealed it for
/// `identity`. Never panics; the cost is bounded by [`MAX_TOKEN_LEN`] and the number of keys.
pub(crate) fn open(
    keys: &SessionKeys,
    token: &[u8],
    identity: &[u8],
) -> Result<Sealed, SessionIdError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(SessionIdError::TooLong);
    }
    let Some(body) = token.strip_prefix(VERSION_PREFIX.as_bytes()) else {
        // base64url has no '.': a '.' says another version's prefix, anything else is not ours.
        return Err(if token.contains(&b'.') {
            SessionIdError::UnknownVersion
        } else {
            SessionIdError::Malformed
        });
    };
    // Strict: no padding, no other alphabet, and no non-zero trailing bits (so no two texts
    // decode to the same bytes and every change of a character is a change of the payload).
    let sealed = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| SessionIdError::Malformed)?;
    if sealed.len() < MIN_SEALED_LEN {
        return Err(SessionIdError::Malformed);
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_from(nonce).map_err(|_| SessionIdError::Malformed)?;
    let aad = aad(identity);
    for cipher in keys.opening() {
        if let Some(sealed) = open_with(cipher, &nonce, ciphertext, &aad) {
            return Ok(sealed);
        }
    }
    Err(SessionIdError::NotAuthentic)
}

/// The plaintext under one key, if the tag checks.
fn open_with(
    cipher: &Aes256Gcm,
    nonce: &aes_gcm::aead::Nonce<Aes256Gcm>,
    ciphertext: &[u8],
    aad: &[u8],
) -> Option<Sealed> {
    let plaintext = cipher
        .decrypt(
            nonce,
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()?;
    // Authentic, so sealed by `seal`: at least the replica. Checked all the same.
    let (replica, upstream_id) = plaintext.split_first_chunk::<REPLICA_LEN>()?;
    Some(Sealed {
        replica: u64::from_le_bytes(*replica),
        upstream_id: upstream_id.to_vec(),
    })
}

fn aad(identity: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_DOMAIN.len() + identity.len());
    aad.extend_from_slice(AAD_DOMAIN);
    aad.extend_from_slice(identity);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Identities as `identity::identity_of` would encode them (any bytes do here).
    const ALICE: &[u8] = b"authorization: Bearer alice";
    const BOB: &[u8] = b"authorization: Bearer bob";

    fn keys() -> SessionKeys {
        SessionKeys::from_raw(&[[7; 32]])
    }

    #[test]
    fn round_trip() {
        let keys = keys();
        for id in [
            &b""[..],
            b"a",
            b"5f3c8e0d-3f6b-4d6e-9a7e-0c5b3c2d1e0f",
            &[b'x'; 512],
        ] {
            let token = seal(&keys, 0xdead_beef_0123_4567, id, ALICE).unwrap();
            let opened = open(&keys, token.as_bytes(), ALICE).unwrap();
            assert_eq!(opened.replica, 0xdead_beef_0123_4567);
            assert_eq!(opened.upstream_id, id);
        }
    }

    #[test]
    fn tokens_are_visible_ascii_and_never_repeat() {
        let keys = keys();
        let a = seal(&keys, 1, b"same", ALICE).unwrap();
        let b = seal(&keys, 1, b"same", ALICE).unwrap();
        assert_ne!(a, b, "a new nonce each time");
        for token in [&a, &b] {
            assert!(token.starts_with("t1."));
            assert!(token.bytes().all(|c| (0x21..=0x7e).contains(&c)), "{token}");
            assert!(!token.contains("same"));
        }
    }

    #[test]
    fn every_single_byte_change_fails() {
        let keys = keys();
        let token = seal(&keys, 42, b"upstream-session", ALICE).unwrap();
        let token = token.as_bytes();
        for at in 0..token.len() {
            // Every other base64url character, and a few bytes outside the alphabet.
            let replacements = (b'A'..=b'Z')
                .chain(b'a'..=b'z')
                .chain(b'0'..=b'9')
                .chain([b'-', b'_', b'.', b'=', b'+', b'/', b' ', 0, 0x80, 0xff]);
            for c in replacements.filter(|&c| c != token[at]) {
                let mut altered = token.to_vec();
                altered[at] = c;
                assert!(
                    open(&keys, &altered, ALICE).is_err(),
                    "position {at} set to {c:#04x} still opens"
                );
            }
        }
        // Each bit of the first, a middle and the last character.
        for at in [0, 3, token.len() / 2, token.len() - 1] {
            for bit in 0..8 {
                let mut altered = token.to_vec();
                altered[at] ^= 1 << bit;
                assert!(open(&keys, &altered, ALICE).is_err(), "{at} bit {bit}");
            }
        }
        // Removing or adding a character.
        for at in 0..token.len() {
            let mut shorter = token.to_vec();
            shorter.remove(at);
            assert!(open(&keys, &shorter, ALICE).is_err());
        }
        let mut longer = token.to_vec();
        longer.push(b'A');
        assert!(open(&keys, &longer, ALICE).is_err());
        assert!(open(&keys, token, ALICE).is_ok());
    }

    #[test]
    fn another_identity_or_key_does_not_open() {
        let keys = keys();
        let token = seal(&keys, 1, b"u", ALICE).unwrap();
        assert_eq!(
            open(&keys, token.as_bytes(), BOB),
            Err(SessionIdError::NotAuthentic)
        );
        assert_eq!(
            open(&keys, token.as_bytes(), b""),
            Err(SessionIdError::NotAuthentic)
        );
        let other = SessionKeys::from_raw(&[[8; 32]]);
        assert_eq!(
            open(&other, token.as_bytes(), ALICE),
            Err(SessionIdError::NotAuthentic)
        );
    }

    #[test]
    fn an_old_key_second_opens_and_the_first_seals() {
        let old = SessionKeys::from_raw(&[[1; 32]]);
        let rotated = SessionKeys::from_raw(&[[2; 32], [1; 32]]);
        let new_only = SessionKeys::from_raw(&[[2; 32]]);
        let before = seal(&old, 9, b"before", ALICE).unwrap();
        let opened = open(&rotated, before.as_bytes(), ALICE).unwrap();
        assert_eq!(
            (opened.replica, &opened.upstream_id[..]),
            (9, &b"before"[..])
        );
        let after = seal(&rotated, 9, b"after", ALICE).unwrap();
        assert!(
            open(&new_only, after.as_bytes(), ALICE).is_ok(),
            "sealed with the first"
        );
        assert_eq!(
            open(&old, after.as_bytes(), ALICE),
            Err(SessionIdError::NotAuthentic)
        );
        assert_eq!(
            open(&new_only, before.as_bytes(), ALICE),
            Err(SessionIdError::NotAuthentic),
            "once the old key is removed its sessions end"
        );
    }

    #[test]
    fn upstream_id_limit() {
        let keys = keys();
        let longest = seal(&keys, 1, &[b'x'; MAX_UPSTREAM_ID_LEN], ALICE).unwrap();
        assert_eq!(longest.len(), MAX_TOKEN_LEN);
        assert_eq!(MAX_TOKEN_LEN, 734);
        assert!(open(&keys, longest.as_bytes(), ALICE).is_ok());
        assert_eq!(
            seal(&keys, 1, &[b'x'; MAX_UPSTREAM_ID_LEN + 1], ALICE),
            Err(SealError::UpstreamIdTooLong { len: 513 })
        );
        let mut too_long = longest.into_bytes();
        too_long.push(b'A');
        assert_eq!(open(&keys, &too_long, ALICE), Err(SessionIdError::TooLong));
    }

    #[test]
    fn the_ways_an_id_is_refused() {
        let keys = keys();
        let token = seal(&keys, 1, b"", ALICE).unwrap();
        assert_eq!(
            token.len(),
            VERSION_PREFIX.len() + base64_len(MIN_SEALED_LEN)
        );
        let body = &token[VERSION_PREFIX.len()..];
        for (input, expected) in [
            (String::new(), SessionIdError::Malformed),
            ("t1.".to_string(), SessionIdError::Malformed),
            (body.to_string(), SessionIdError::Malformed),
            (format!("t2.{body}"), SessionIdError::UnknownVersion),
            (format!("T1.{body}"), SessionIdError::UnknownVersion),
            (format!("t1.{body}="), SessionIdError::Malformed),
            (
                format!("t1.{}", &body[..body.len() - 1]),
                SessionIdError::Malformed,
            ),
            (
                format!("t1.{}", &body[..body.len() - 4]),
                SessionIdError::Malformed,
            ),
            ("t1.AAAA".to_string(), SessionIdError::Malformed),
        ] {
            assert_eq!(
                open(&keys, input.as_bytes(), ALICE),
                Err(expected),
                "{input}"
            );
        }
        assert_eq!(
            SessionIdError::NotAuthentic.to_string(),
            "session id not authentic"
        );
    }

    #[test]
    fn debug_shows_no_upstream_id() {
        let keys = keys();
        let token = seal(&keys, 0x1f, b"secret-upstream", ALICE).unwrap();
        let opened = open(&keys, token.as_bytes(), ALICE).unwrap();
        assert_eq!(
            format!("{opened:?}"),
            "Sealed { replica: 0x000000000000001f, upstream_id_len: 15 }"
        );
    }

    proptest! {
        #[test]
        fn open_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..800)) {
            let keys = keys();
            prop_assert!(open(&keys, &bytes, ALICE).is_err());
            let mut prefixed = VERSION_PREFIX.as_bytes().to_vec();
            prefixed.extend_from_slice(&bytes);
            prop_assert!(open(&keys, &prefixed, ALICE).is_err());
        }

        #[test]
        fn open_never_panics_on_base64_or_truncations(
            raw in proptest::collection::vec(any::<u8>(), 0..600),
            id in proptest::collection::vec(any::<u8>(), 0..=MAX_UPSTREAM_ID_LEN),
            cut in any::<prop::sample::Index>(),
        ) {
            let keys = keys();
            let mut forged = VERSION_PREFIX.as_bytes().to_vec();
            forged.extend_from_slice(URL_SAFE_NO_PAD.encode(&raw).as_bytes());
            prop_assert!(open(&keys, &forged, ALICE).is_err());
            let token = seal(&keys, 3, &id, ALICE).unwrap();
            let cut = cut.index(token.len());
            prop_assert!(open(&keys, &token.as_bytes()[..cut], ALICE).is_err());
            prop_assert_eq!(open(&keys, token.as_bytes(), ALICE).unwrap().upstream_id, id);
        }
    }
}
