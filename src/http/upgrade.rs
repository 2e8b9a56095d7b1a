//! Protocol upgrades (RFC 9110 7.8): whether a request asks to switch protocols on its
//! connection, so that its `Upgrade` and `Connection: upgrade` fields cross the proxy instead of
//! being dropped as hop-by-hop, and a `101 Switching Protocols` answer turns the connection into
//! a byte tunnel (`crate::proxy::tunnel`).

use super::head::{Method, RequestHead, Version};
use super::syntax::list_elements;

/// True when the request asks for an upgrade tether relays:
/// 1. HTTP/1.1 only: "Upgrade ... is only defined for HTTP/1.1" (an HTTP/1.0 request's
///    Connection cannot be trusted to have been honoured by every hop on the way).
/// 2. An `Upgrade` field with at least one protocol, and a `Connection` field that lists
///    `upgrade` (RFC 9110 7.8: "A sender of Upgrade MUST also send an 'Upgrade' connection
///    option"; an Upgrade without it is a hop-by-hop leftover and is dropped).
/// 3. Not CONNECT (refused with 501 before this question is asked).
pub fn requests_upgrade(head: &RequestHead) -> bool {
    head.version == Version::Http11
        && head.method != Method::Connect
        && head
            .headers_named("upgrade")
            .any(|v| list_elements(v).next().is_some())
        && head
            .headers_named("connection")
            .any(|v| list_elements(v).any(|t| t.eq_ignore_ascii_case(b"upgrade")))
}
