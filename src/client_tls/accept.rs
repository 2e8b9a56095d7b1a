//! The server handshake of an accepted connection, bounded by `--header-timeout` (a client that
//! connects and says nothing, or not TLS, is closed as one that sends no request head is), its
//! failures counted by reason and logged at most once per FAILURE_LOG_INTERVAL per worker.

use std::cell::Cell;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use monoio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};

use super::settings::AppProtocol;
use super::stream::{ServerSession, TlsClient};
use crate::tls::session::{drive_handshake, HandshakeStop};

/// A worker logs one line about failed client handshakes at most this often (the others are
/// counted in `/metrics` and summed into the next line): a scanner or a flood of plain-HTTP
/// clients must not flood the log.
pub const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Why a client's handshake failed (`tether_client_tls_failures_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeFailure {
    /// Not done within --header-timeout.
    Timeout,
    /// The client closed (or reset) the connection before the handshake was done.
    Closed,
    /// The first bytes were not a TLS handshake (plain HTTP to the TLS port, a scanner).
    NotTls,
    /// The client refused the handshake with an alert (it does not trust the certificate...).
    ClientAlert,
    /// No protocol version, cipher suite or ALPN protocol in common.
    Incompatible,
    /// Anything else rustls refused, or a socket error.
    Other,
}

impl HandshakeFailure {
    /// Every reason, in the order `/metrics` lists them.
    pub const ALL: [HandshakeFailure; 6] = [
        HandshakeFailure::Timeout,
        HandshakeFailure::Closed,
        HandshakeFailure::NotTls,
        HandshakeFailure::ClientAlert,
        HandshakeFailure::Incompatible,
        HandshakeFailure::Other,
    ];

    /// The `reason` label.
    pub fn name(self) -> &'static str {
        match self {
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Closed => "closed",
            HandshakeFailure::NotTls => "not_tls",
            HandshakeFailure::ClientAlert => "client_alert",
            HandshakeFailure::Incompatible => "incompatible",
            HandshakeFailure::Other => "other",
        }
    }

    /// Its index in `ALL` (and in the metrics' array).
    pub fn index(self) -> usize {
        self as usize
    }

    /// What a rustls error during the handshake means.
    fn of(e: &rustls::Error) -> HandshakeFailure {
        use rustls::Error as E;
        match e {
            E::InvalidMessage(_) => HandshakeFailure::NotTls,
            E::AlertReceived(_) => HandshakeFailure::ClientAlert,
            E::PeerIncompatible(_) | E::NoApplicationProtocol => HandshakeFailure::Incompatible,
            _ => HandshakeFailure::Other,
        }
    }

    /// What a failed handshake step's `io::Error` means (a rustls error rides inside one).
    fn of_io(e: &std::io::Error) -> HandshakeFailure {
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => HandshakeFailure::of(tls),
            None if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ) =>
            {
                HandshakeFailure::Closed
            }
            None => HandshakeFailure::Other,
        }
    }
}

/// A failed handshake: its reason, and one line for the log.
#[derive(Debug)]
pub struct Refused {
    pub reason: HandshakeFailure,
    pub detail: String,
}

/// Does the server handshake on `tcp` within `limit`. On success the connection is a
/// `TlsClient` speaking `AppProtocol`. Cancel-safe (readiness waits only).
pub(crate) async fn handshake(
    tcp: TcpStream,
    config: Arc<ServerConfig>,
    limit: Duration,
) -> Result<(TlsClient, AppProtocol), Refused> {
    let conn = ServerConnection::new(config).map_err(|e| Refused {
        reason: HandshakeFailure::Other,
        detail: e.to_string(),
    })?;
    let mut session = ServerSession::new(conn);
    match monoio::time::timeout(limit, drive_handshake(&tcp, &mut session)).await {
        Ok(Ok(())) => {
            let protocol = AppProtocol::of(session.alpn_protocol());
            Ok((TlsClient::new(tcp, session), protocol))
        }
        Ok(Err(stop)) => {
            // The alert rustls queued tells the client why.
            let _ = session.flush_now(tcp.as_raw_fd());
            Err(match stop {
                HandshakeStop::Closed => Refused {
                    reason: HandshakeFailure::Closed,
                    detail: "the client closed the connection during the handshake".into(),
                },
                HandshakeStop::Io(e) => Refused {
                    reason: HandshakeFailure::of_io(&e),
                    detail: e.to_string(),
                },
            })
        }
        Err(_) => Err(Refused {
            reason: HandshakeFailure::Timeout,
            detail: format!(
                "handshake not done within --header-timeout ({} ms)",
                limit.as_millis()
            ),
        }),
    }
}

/// A worker's rate limit on handshake failure log lines.
#[derive(Debug, Default)]
pub struct FailureLog {
    /// When the last line was written.
    last: Cell<Option<Instant>>,
    /// Failures since then that got no line of their own.
    unlogged: Cell<u64>,
}

impl FailureLog {
    /// Logs `refused` from `peer`, unless a line was written less than FAILURE_LOG_INTERVAL ago
    /// (then it is only counted, and named in the next line).
    pub fn record(&self, worker: usize, peer: SocketAddr, refused: &Refused) {
        let now = Instant::now();
        if self
            .last
            .get()
            .is_some_and(|at| now.duration_since(at) < FAILURE_LOG_INTERVAL)
        {
            self.unlogged.set(self.unlogged.get() + 1);
            return;
        }
        self.last.set(Some(now));
        let more = self.unlogged.replace(0);
        let also = match more {
            0 => String::new(),
            n => format!(
                " ({n} more failed on this worker in the last {} s; tether_client_tls_failures_total has them by reason)",
                FAILURE_LOG_INTERVAL.as_secs()
            ),
        };
        crate::log_info!(
            "worker {worker}: TLS handshake with client {peer} failed ({}): {}{also}",
            refused.reason.name(),
            refused.detail
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rustls_errors_map_to_reasons() {
        use rustls::{AlertDescription, Error, InvalidMessage, PeerIncompatible};
        assert_eq!(
            HandshakeFailure::of(&Error::InvalidMessage(InvalidMessage::InvalidContentType)),
            HandshakeFailure::NotTls
        );
        assert_eq!(
            HandshakeFailure::of(&Error::AlertReceived(AlertDescription::UnknownCA)),
            HandshakeFailure::ClientAlert
        );
        assert_eq!(
            HandshakeFailure::of(&Error::PeerIncompatible(
                PeerIncompatible::NoCipherSuitesInCommon
            )),
            HandshakeFailure::Incompatible
        );
        let wrapped = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            Error::InvalidMessage(InvalidMessage::InvalidContentType),
        );
        assert_eq!(HandshakeFailure::of_io(&wrapped), HandshakeFailure::NotTls);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(HandshakeFailure::of_io(&reset), HandshakeFailure::Closed);
        for (i, reason) in HandshakeFailure::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i);
        }
    }
}
