//! One HTTP/2 connection of a run: TCP connect, TLS with ALPN `h2` (the outcome checked: a
//! proxy that fell back to HTTP/1.1 fails the run instead of being measured as something it is
//! not), the h2 client handshake, and the task that drives the connection.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, HandshakeKind};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::Shared;
use crate::load::stats::ErrorKind;

/// Initial flow-control window the client grants each stream for what the server sends
/// (SETTINGS_INITIAL_WINDOW_SIZE), bytes. Large, as browsers set it (Chrome: 6 MiB), so that a
/// flat-out stream is never held back by the client: what is measured is the proxy.
pub const STREAM_WINDOW: u32 = 4 * 1024 * 1024;

/// Initial flow-control window of the whole connection, bytes (Chrome: 15 MiB).
pub const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

/// How a connection could not be opened: the kind counted and its message.
pub(crate) type OpenError = (ErrorKind, String);

/// What a connection is opened with.
pub(crate) struct Endpoint {
    pub target: SocketAddr,
    pub tls: Arc<ClientConfig>,
    pub server_name: ServerName<'static>,
    pub connect_timeout: Duration,
    /// Longest TLS plus h2 handshake.
    pub handshake_timeout: Duration,
}

/// Opens one HTTP/2 connection and spawns the task that drives it (on the current LocalSet);
/// returns the handle streams are opened with.
pub(crate) async fn open(
    ep: &Endpoint,
    shared: &Rc<Shared>,
) -> Result<SendRequest<Bytes>, OpenError> {
    shared.stats.borrow_mut().connects += 1;
    let tcp = match tokio::time::timeout(ep.connect_timeout, TcpStream::connect(ep.target)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err((ErrorKind::Connect, format!("connect: {e}"))),
        Err(_) => return Err((ErrorKind::ConnectTimeout, "connect timed out".into())),
    };
    let _ = tcp.set_nodelay(true);
    let connector = TlsConnector::from(ep.tls.clone());
    let handshake = async {
        let tls = connector
            .connect(ep.server_name.clone(), tcp)
            .await
            .map_err(|e| (ErrorKind::Io, format!("TLS handshake: {e}")))?;
        let session = tls.get_ref().1;
        let alpn = session.alpn_protocol().map(|p| p.to_vec());
        if alpn.as_deref() != Some(b"h2".as_slice()) {
            return Err((
                ErrorKind::Protocol,
                format!(
                    "the server did not choose h2 in ALPN (it chose {:?})",
                    alpn.map(|p| String::from_utf8_lossy(&p).into_owned())
                ),
            ));
        }
        let resumed = matches!(session.handshake_kind(), Some(HandshakeKind::Resumed));
        {
            let mut stats = shared.stats.borrow_mut();
            stats.tls_handshakes += 1;
            stats.tls_resumed += u64::from(resumed);
        }
        h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .enable_push(false)
            .handshake::<_, Bytes>(tls)
            .await
            .map_err(|e| (ErrorKind::Protocol, format!("h2 handshake: {e}")))
    };
    let (send, connection) = match tokio::time::timeout(ep.handshake_timeout, handshake).await {
        Ok(r) => r?,
        Err(_) => {
            return Err((
                ErrorKind::HeadTimeout,
                "TLS + h2 handshake timed out".into(),
            ))
        }
    };
    shared.h2_connections.set(shared.h2_connections.get() + 1);
    let s = shared.clone();
    tokio::task::spawn_local(async move {
        if let Err(e) = connection.await {
            s.stats
                .borrow_mut()
                .errors
                .add(ErrorKind::Io, || format!("h2 connection: {e}"));
        }
    });
    Ok(send)
}
