//! Sealed MCP session ids: when upstream replica *k* answers with `Mcp-Session-Id: U`, the client
//! gets tether's own id instead, which carries *k* and *U* sealed with AES-256-GCM and bound to the
//! client's identity. The client can neither read *U* nor forge or alter the id; any worker of any
//! instance that shares the key routes a request by the id alone (no session table).
//!
//! - [`keys`]: the sealing key and the older keys still accepted (`--session-key-file`).
//! - [`token`]: `seal` and `open`: the id's format, its limits and why one does not open.
//! - [`identity`]: the client identity an id is bound to (the identity headers but
//!   `Mcp-Session-Id`), encoded unambiguously.
//! - [`replica`]: a replica's key in ids, a stable hash of its URL.
//!
//! What the caller does: 404 for an id that does not open (forged, altered, another identity's,
//! an unknown key) or that names a replica that is gone; never sends tether's id upstream nor *U*
//! to the client; never logs an id whole.

pub(crate) mod identity;
pub(crate) mod keys;
pub(crate) mod replica;
pub(crate) mod token;

pub(crate) use identity::identity_of;
pub(crate) use keys::SessionKeys;
pub(crate) use replica::replica_key;
pub(crate) use token::{open, seal};

#[cfg(test)]
mod tests {
    use super::identity::identity_of;
    use super::keys::SessionKeys;
    use super::replica::replica_key;
    use super::token::{open, seal, SessionIdError};
    use crate::http::{HeadLimits, RequestHead};
    use crate::sse::scope::IdentityHeaders;
    use bytes::Bytes;

    fn head(fields: &str) -> RequestHead {
        let raw = format!("POST /mcp HTTP/1.1\r\nHost: x\r\n{fields}\r\n");
        RequestHead::parse(Bytes::from(raw), &HeadLimits::default()).unwrap()
    }

    #[test]
    fn an_id_opens_for_the_client_it_was_sealed_for() {
        let keys = SessionKeys::from_raw(&[[3; 32]]);
        let names = IdentityHeaders::new(&["X-Tenant"]);
        let replica = replica_key("http://127.0.0.1:9001");
        // The initialize request carries no session id; the later ones carry tether's.
        let init = head("Authorization: Bearer alice\r\nX-Tenant: t1\r\n");
        let token = seal(&keys, replica, b"upstream-42", &identity_of(&init, &names)).unwrap();
        let later = head(&format!(
            "authorization: Bearer alice\r\nMcp-Session-Id: {token}\r\nx-tenant: t1\r\n"
        ));
        let opened = open(
            &keys,
            later.header("mcp-session-id").unwrap(),
            &identity_of(&later, &names),
        )
        .unwrap();
        assert_eq!(
            (opened.replica, &opened.upstream_id[..]),
            (replica, &b"upstream-42"[..])
        );
        for other in [
            "Authorization: Bearer mallory\r\nX-Tenant: t1\r\n",
            "Authorization: Bearer alice\r\nX-Tenant: t2\r\n",
            "Authorization: Bearer alice\r\n",
            "Authorization: Bearer alice\r\nX-Tenant: t1\r\nCookie: s=1\r\n",
        ] {
            let stolen = head(&format!("{other}Mcp-Session-Id: {token}\r\n"));
            assert_eq!(
                open(&keys, token.as_bytes(), &identity_of(&stolen, &names)),
                Err(SessionIdError::NotAuthentic),
                "{other}"
            );
        }
    }
}
