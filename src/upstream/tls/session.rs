//! An upstream connection's TLS session (`crate::tls::TlsSession` over a rustls
//! `ClientConnection`), and its handshake.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use monoio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use super::failure::{TlsFailure, TlsFailureClass};
use crate::tls::session::{drive_handshake, HandshakeStop};

/// An upstream connection's TLS state.
pub type TlsSession = crate::tls::TlsSession<ClientConnection>;

/// Makes a TLS session over `tcp` (connected) with `host`'s name (the URL's host: SNI for a
/// name, none for an IP), within `limit`. Cancel-safe (readiness waits only); a dropped
/// handshake leaves a socket nobody may use.
pub(crate) async fn handshake(
    tcp: &TcpStream,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    limit: Duration,
) -> Result<TlsSession, TlsFailure> {
    let host = name.to_str().into_owned();
    let conn = ClientConnection::new(config, name).map_err(|e| TlsFailure::of(&e, &host))?;
    let mut session = TlsSession::new(conn);
    match monoio::time::timeout(limit, drive_handshake(tcp, &mut session)).await {
        Ok(Ok(())) => Ok(session),
        Ok(Err(stop)) => {
            // The alert rustls queued tells the server why.
            let _ = session.flush_now(tcp.as_raw_fd());
            Err(match stop {
                HandshakeStop::Closed => TlsFailure::new(
                    TlsFailureClass::Closed,
                    format!("{host:?} closed the connection during the handshake"),
                ),
                HandshakeStop::Io(e) => TlsFailure::of_io(e, &host),
            })
        }
        Err(_) => Err(TlsFailure::new(
            TlsFailureClass::Timeout,
            format!(
                "handshake with {host:?} not done within the connect timeout ({} ms)",
                limit.as_millis()
            ),
        )),
    }
}
