//! The identity a session id is bound to: the client's identity headers (`Authorization`,
//! `Cookie`, the `--identity-header` names; see [`IdentityHeaders`]) except `Mcp-Session-Id`
//! itself, which is the id being checked.
//!
//! Encoding, for each name of `names` in its order (`mcp-session-id` skipped):
//!
//! ```text
//! u32 BE name length || name (lower case) || u32 BE value count || (u32 BE value length || value)*
//! ```
//!
//! Every part is length-prefixed and every name appears (with a count of 0 when absent), so two
//! different identities never encode the same bytes: `a: bc` is not `ab: c`, two `Cookie` lines
//! are not one, and a value never moves to another header. A header's values are taken in request
//! order (a repeated `Cookie` line is part of identity, as in `sse::scope::ResumeScope`).

use crate::http::RequestHead;
use crate::sse::scope::IdentityHeaders;

/// The identity header that is not part of the identity a session is bound to.
const SESSION_HEADER: &str = "mcp-session-id";

/// The AAD part of a session id for this request (see the module doc for the encoding).
pub(crate) fn identity_of(head: &RequestHead, names: &IdentityHeaders) -> Vec<u8> {
    let mut out = Vec::new();
    for name in names.names() {
        if name.eq_ignore_ascii_case(SESSION_HEADER) {
            continue;
        }
        put_header(&mut out, name, head.headers_named(name));
    }
    out
}

/// One identity header: its name (lower-cased), how many values, each value.
fn put_header<'a>(out: &mut Vec<u8>, name: &str, values: impl Iterator<Item = &'a [u8]>) {
    put_part(out, name.to_ascii_lowercase().as_bytes());
    let count_at = out.len();
    out.extend_from_slice(&0u32.to_be_bytes());
    let mut count = 0u32;
    for value in values {
        put_part(out, value);
        count += 1;
    }
    out[count_at..count_at + 4].copy_from_slice(&count.to_be_bytes());
}

/// A length-prefixed part. A head is far below 4 GiB (`HeadLimits`), so the length fits.
fn put_part(out: &mut Vec<u8>, part: &[u8]) {
    debug_assert!(u32::try_from(part.len()).is_ok());
    out.extend_from_slice(&(part.len() as u32).to_be_bytes());
    out.extend_from_slice(part);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HeadLimits;
    use bytes::Bytes;

    fn identity(fields: &str, names: &IdentityHeaders) -> Vec<u8> {
        let raw = format!("POST /mcp HTTP/1.1\r\nHost: x\r\n{fields}\r\n");
        let head = RequestHead::parse(Bytes::from(raw), &HeadLimits::default()).unwrap();
        identity_of(&head, names)
    }

    fn encode(fields: &[(&str, &[&[u8]])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, values) in fields {
            put_header(&mut out, name, values.iter().copied());
        }
        out
    }

    #[test]
    fn the_encoding_is_unambiguous() {
        assert_ne!(
            encode(&[("a", &[b"bc"])]),
            encode(&[("ab", &[b"c"])]),
            "the name/value boundary"
        );
        assert_ne!(
            encode(&[("a", &[b"x", b"y"])]),
            encode(&[("a", &[b"xy"])]),
            "two values are not one"
        );
        assert_ne!(
            encode(&[("a", &[b"x"]), ("b", &[])]),
            encode(&[("a", &[]), ("b", &[b"x"])]),
            "a value does not move to another header"
        );
        assert_eq!(
            encode(&[("Cookie", &[b"k=v"])]),
            b"\0\0\0\x06cookie\0\0\0\x01\0\0\0\x03k=v".to_vec()
        );
    }

    #[test]
    fn names_lowercase_in_the_order_of_names_and_values_in_request_order() {
        let names = IdentityHeaders::new(&["X-Api-Key"]);
        let a = identity(
            "X-API-KEY: k\r\nCookie: c1\r\nauthorization: Bearer t\r\ncookie: c2\r\n",
            &names,
        );
        assert_eq!(
            a,
            encode(&[
                ("authorization", &[b"Bearer t"]),
                ("cookie", &[b"c1", b"c2"]),
                ("x-api-key", &[b"k"]),
            ])
        );
        let b = identity(
            "Authorization: Bearer t\r\nx-api-key: k\r\ncookie: c1\r\nCookie: c2\r\n",
            &names,
        );
        assert_eq!(
            a, b,
            "header order across names and name case do not matter"
        );
        let swapped = identity(
            "Authorization: Bearer t\r\nx-api-key: k\r\ncookie: c2\r\nCookie: c1\r\n",
            &names,
        );
        assert_ne!(a, swapped, "a header's values keep their order");
    }

    #[test]
    fn the_session_header_is_not_identity_and_others_are() {
        let names = IdentityHeaders::default();
        let bare = identity("Authorization: Bearer t\r\n", &names);
        assert_eq!(
            bare,
            identity(
                "Authorization: Bearer t\r\nMcp-Session-Id: t1.abc\r\n",
                &names
            )
        );
        assert!(!bare.windows(14).any(|w| w == b"mcp-session-id"));
        assert_ne!(bare, identity("Authorization: Bearer u\r\n", &names));
        assert_ne!(bare, identity("Cookie: Bearer t\r\n", &names));
        assert_ne!(
            identity("", &names),
            identity("Authorization: \r\n", &names),
            "an empty value is not an absent header"
        );
        assert_eq!(
            identity("X-Api-Key: a\r\n", &names),
            identity("X-Api-Key: b\r\n", &names),
            "not an identity header without --identity-header"
        );
    }
}
