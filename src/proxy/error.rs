//! What went wrong in one exchange, which side caused it, and what (if anything) the client hears.

use std::fmt;

use crate::http::HttpError;
use crate::upstream::connect::{ConnectAttempt, ConnectFailure, Unreachable};

/// What a request that matches no route is told (and the log line says).
const NO_ROUTE_REASON: &str = "no route matches this request's host and path";

impl From<Unreachable> for ProxyError {
    fn from(u: Unreachable) -> Self {
        ProxyError::UpstreamUnreachable(u.0)
    }
}

/// Why an exchange failed. The variant says which side failed; `answer` turns it into the status a
/// client gets, or into nothing when the client is gone or the response had already started.
#[derive(Debug)]
pub enum ProxyError {
    /// The client sent something we refuse (400/414/431/501/505).
    ClientProtocol(HttpError),
    /// The client did not finish its request head in time (408).
    ClientHeadTimeout,
    /// The client stopped sending its request body for longer than the body timeout.
    ClientBodyTimeout,
    /// The client closed or reset its connection mid-request: nobody to answer.
    ClientGone,
    /// Every replica refused or timed out (502).
    UpstreamUnreachable(Vec<ConnectAttempt>),
    /// The upstream's response broke HTTP/1.1 (502).
    UpstreamProtocol(HttpError),
    /// The upstream closed or reset before a complete response head (502).
    UpstreamClosed,
    /// The upstream answered 101 although the proxy never forwards Upgrade (502).
    UpstreamSwitchedProtocols,
    /// The upstream did not answer within the upstream header timeout (504).
    UpstreamHeadTimeout,
    /// A response body read whole for the rules (`max-inspect-bytes`) broke off or stalled
    /// before its end; nothing of it had reached the client (502).
    UpstreamBodyForRules,
    /// An MCP session id that does not open for this client, or names a replica the route no
    /// longer has (404: the client initializes a new session).
    McpSessionUnknown,
    /// The upstream's MCP session id is longer than tether seals (502).
    McpSessionIdTooLong,
    /// A request method the proxy does not forward (501).
    MethodNotSupported(&'static str),
    /// No route of the configuration matches the request's host and path (404).
    NoRoute,
}

impl ProxyError {
    /// The upstream failed (not the client, not the request): a reconnection the replay ring can
    /// serve is served from it instead of being answered with this error.
    pub fn is_upstream_failure(&self) -> bool {
        matches!(
            self,
            ProxyError::UpstreamUnreachable(_)
                | ProxyError::UpstreamProtocol(_)
                | ProxyError::UpstreamClosed
                | ProxyError::UpstreamSwitchedProtocols
                | ProxyError::UpstreamHeadTimeout
        )
    }

    /// The status and short reason the client gets, if it can still get one.
    ///
    /// The reason never names what is behind the proxy: upstream addresses, replica URLs, socket
    /// errors and the upstream's own bytes stay in the log line (this type's `Display`). A
    /// client's own mistake is described exactly, since that is what it needs to fix.
    pub fn answer(&self) -> Option<(u16, String)> {
        let status = self.status()?;
        let reason = match self {
            ProxyError::ClientProtocol(e) => e.to_string(),
            ProxyError::ClientHeadTimeout => "the request head was not received in time".into(),
            ProxyError::ClientBodyTimeout => "the request body stalled".into(),
            ProxyError::UpstreamUnreachable(attempts) => {
                // A replica that answered with a certificate tether refuses is the story, not
                // the others' refusals.
                let tls = attempts.iter().find_map(|a| match &a.failure {
                    ConnectFailure::Tls(e) => Some(e.class),
                    _ => None,
                });
                match tls {
                    Some(class) => class.client_reason().into(),
                    None => "no upstream server could be reached".into(),
                }
            }
            ProxyError::UpstreamProtocol(_) => {
                "the upstream server sent an invalid response".into()
            }
            ProxyError::UpstreamClosed => {
                "the upstream server closed the connection before responding".into()
            }
            ProxyError::UpstreamSwitchedProtocols => {
                "the upstream server switched protocols, which this proxy does not relay".into()
            }
            ProxyError::UpstreamHeadTimeout => "the upstream server did not respond in time".into(),
            ProxyError::UpstreamBodyForRules => {
                "the upstream server's response body broke off".into()
            }
            ProxyError::McpSessionUnknown => {
                "unknown or expired MCP session; initialize a new one".into()
            }
            ProxyError::McpSessionIdTooLong => {
                "the upstream server sent a session id this proxy cannot carry".into()
            }
            ProxyError::MethodNotSupported(m) => format!("{m} is not supported by this proxy"),
            ProxyError::NoRoute => NO_ROUTE_REASON.into(),
            ProxyError::ClientGone => return None,
        };
        Some((status, reason))
    }

    /// The status the client gets; None when nobody is left to answer.
    pub fn status(&self) -> Option<u16> {
        Some(match self {
            ProxyError::ClientProtocol(e) => e.status(),
            ProxyError::ClientHeadTimeout | ProxyError::ClientBodyTimeout => 408,
            ProxyError::ClientGone => return None,
            ProxyError::UpstreamUnreachable(_)
            | ProxyError::UpstreamProtocol(_)
            | ProxyError::UpstreamClosed
            | ProxyError::UpstreamSwitchedProtocols
            | ProxyError::UpstreamBodyForRules
            | ProxyError::McpSessionIdTooLong => 502,
            ProxyError::McpSessionUnknown => 404,
            ProxyError::UpstreamHeadTimeout => 504,
            ProxyError::MethodNotSupported(_) => 501,
            ProxyError::NoRoute => 404,
        })
    }
}

/// The whole story, for the log: which upstream, which address, which socket error.
impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::ClientProtocol(e) => write!(f, "{e}"),
            ProxyError::ClientHeadTimeout => f.write_str("request head not received in time"),
            ProxyError::ClientBodyTimeout => f.write_str("request body stalled"),
            ProxyError::ClientGone => f.write_str("client went away"),
            ProxyError::UpstreamUnreachable(attempts) => {
                f.write_str("no upstream reachable: ")?;
                for (i, attempt) in attempts.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{attempt}")?;
                }
                Ok(())
            }
            ProxyError::UpstreamProtocol(e) => write!(f, "invalid response from upstream: {e}"),
            ProxyError::UpstreamClosed => {
                f.write_str("upstream closed the connection before sending a response")
            }
            ProxyError::UpstreamSwitchedProtocols => {
                f.write_str("upstream answered 101 Switching Protocols, which is not relayed")
            }
            ProxyError::UpstreamHeadTimeout => {
                f.write_str("upstream did not answer within the upstream header timeout")
            }
            ProxyError::UpstreamBodyForRules => f.write_str(
                "upstream response body broke off or stalled while read whole for the rules",
            ),
            ProxyError::McpSessionUnknown => f.write_str(
                "MCP session id does not open for this client or names no replica of the route",
            ),
            ProxyError::McpSessionIdTooLong => {
                f.write_str("upstream MCP session id longer than tether seals")
            }
            ProxyError::MethodNotSupported(m) => write!(f, "{m} is not supported by this proxy"),
            ProxyError::NoRoute => f.write_str(NO_ROUTE_REASON),
        }
    }
}

impl std::error::Error for ProxyError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a 502 tells the client names no address, URL or socket error; the log line does.
    #[test]
    fn upstream_failures_tell_the_client_nothing_internal() {
        let unreachable = ProxyError::UpstreamUnreachable(vec![ConnectAttempt {
            target: "http://10.1.2.3:8080 (10.1.2.3:8080)".into(),
            failure: ConnectFailure::Refused,
        }]);
        let invalid =
            ProxyError::UpstreamProtocol(crate::http::HttpError::UnsupportedTransferCoding {
                coding: "x-internal-10.1.2.3".into(),
            });
        let tls = ProxyError::UpstreamUnreachable(vec![ConnectAttempt {
            target: "https://10.1.2.3:8443 (10.1.2.3:8443)".into(),
            failure: ConnectFailure::Tls(crate::upstream::tls::TlsFailure {
                class: crate::upstream::tls::TlsFailureClass::CertificateName,
                detail: "certificate not valid for name \"10.1.2.3\"".into(),
            }),
        }]);
        assert_eq!(
            tls.answer().map(|(_, r)| r).as_deref(),
            Some("the upstream server's TLS certificate is not valid for its name")
        );
        assert!(
            tls.to_string()
                .contains("upstream TLS: certificate not valid for name"),
            "{tls}"
        );
        for e in [unreachable, invalid, tls] {
            let (status, reason) = e.answer().expect("an answer");
            assert_eq!(status, 502);
            assert!(!reason.contains("10.1.2.3"), "{reason}");
            assert!(e.to_string().contains("10.1.2.3"), "{e}");
        }
    }
}
