//! What went wrong in one exchange, which side caused it, and what (if anything) the client hears.

use std::fmt;
use std::io;

use crate::http::HttpError;

/// One failed attempt to reach an upstream address.
#[derive(Debug)]
pub struct ConnectAttempt {
    /// The replica's URL and the address tried.
    pub target: String,
    pub failure: ConnectFailure,
}

#[derive(Debug)]
pub enum ConnectFailure {
    Refused,
    TimedOut,
    Other(io::Error),
}

impl fmt::Display for ConnectAttempt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.failure {
            ConnectFailure::Refused => write!(f, "{} refused the connection", self.target),
            ConnectFailure::TimedOut => write!(
                f,
                "{} did not accept within the connect timeout",
                self.target
            ),
            ConnectFailure::Other(e) => write!(f, "{}: {e}", self.target),
        }
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
    /// The upstream stalled mid-body or refused our bytes (socket error or body timeout).
    UpstreamIo(io::Error),
    /// A request method the proxy does not forward (501).
    MethodNotSupported(&'static str),
}

impl ProxyError {
    /// The status and short reason the client gets, if it can still get one.
    pub fn answer(&self) -> Option<(u16, String)> {
        match self {
            ProxyError::ClientProtocol(e) => Some((e.status(), e.to_string())),
            ProxyError::ClientHeadTimeout => {
                Some((408, "the request head was not received in time".into()))
            }
            ProxyError::ClientBodyTimeout => Some((408, "the request body stalled".into())),
            ProxyError::ClientGone => None,
            ProxyError::UpstreamUnreachable(attempts) => {
                let causes: Vec<String> = attempts.iter().map(ToString::to_string).collect();
                Some((502, format!("no upstream reachable: {}", causes.join("; "))))
            }
            ProxyError::UpstreamProtocol(e) => {
                Some((502, format!("invalid response from upstream: {e}")))
            }
            ProxyError::UpstreamClosed => Some((
                502,
                "upstream closed the connection before sending a response".into(),
            )),
            ProxyError::UpstreamSwitchedProtocols => Some((
                502,
                "upstream switched protocols, which this proxy does not relay".into(),
            )),
            ProxyError::UpstreamHeadTimeout => Some((
                504,
                "upstream did not answer within the upstream header timeout".into(),
            )),
            ProxyError::UpstreamIo(e) => Some((502, format!("upstream connection failed: {e}"))),
            ProxyError::MethodNotSupported(m) => {
                Some((501, format!("{m} is not supported by this proxy")))
            }
        }
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.answer() {
            Some((status, reason)) => write!(f, "{status}: {reason}"),
            None => f.write_str("client went away"),
        }
    }
}

impl std::error::Error for ProxyError {}
