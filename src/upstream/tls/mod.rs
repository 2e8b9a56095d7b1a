//! TLS to `https://` upstreams, with rustls's sans-IO `ClientConnection` driven by tether's own
//! readiness waits and non-blocking syscalls (`crate::tls`: the session and its steps, shared
//! with TLS clients): no TLS stream type, no future that owns a buffer. The handshake runs under
//! one deadline (the route's connect-timeout, again after the TCP connect's own).
//!
//! Crypto: aws-lc-rs (see Cargo.toml). Verification: rustls's webpki verifier against the
//! system's roots (or Mozilla's, compiled in, when the system has none) plus `--upstream-ca`; the
//! name is the URL's host (SNI), or its IP (no SNI; matched against the certificate's IP SANs).
//! `--upstream-insecure` swaps in a verifier that accepts any certificate but still checks the
//! handshake's signatures with it.
//!
//! Files: `settings` (roots, `--upstream-ca`, `--upstream-insecure`, a worker's client
//! settings), `session` (a connection's session type and its handshake), `failure`
//! (what a refused handshake means, for the log, the client's 502 and `/metrics`).

mod failure;
mod session;
mod settings;

pub use failure::{TlsFailure, TlsFailureClass};
pub(crate) use session::handshake;
pub use session::TlsSession;
pub use settings::{TlsConfigError, TlsSettings, UpstreamTls};

use rustls::pki_types::ServerName;

/// The name a replica's certificate must carry: its URL's host (a DNS name, or an IP literal).
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string()).map_err(|e| e.to_string())
}
