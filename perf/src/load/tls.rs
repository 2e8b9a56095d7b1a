//! TLS for `https://` URLs: one rustls client configuration per run (the trust `--ca` or
//! `--insecure` gives, SNI from the URL's host, ALPN `http/1.1`), a copy per load thread with
//! its own session store (resumption without a lock shared between threads), and the glue that
//! lets rustls's sans-IO `ClientConnection` read and write the driver's non-blocking sockets.
//!
//! Plain URLs never reach this file: a plain stream's slot holds no TLS state and its reads go
//! straight into the stream parser, as before (`driver.rs`).

use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, RootCertStore};

use super::any_certificate::AcceptAnyCertificate;
use super::net;

/// TLS sessions each load thread remembers for resumption (rustls's in-memory store: one
/// entry per server name, each holding a few TLS 1.3 tickets). A run talks to one server name,
/// so the size hardly matters; past it the oldest name goes.
pub const SESSIONS_PER_THREAD: usize = 64;

/// How the server's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Only the CA certificates of this PEM file (`--ca`): a bench's self-signed certificate
    /// is its own CA.
    Ca(PathBuf),
    /// Any certificate (`--insecure`); the handshake's signatures are still checked.
    Insecure,
}

/// The TLS client side of a run: built once (it reads the CA file), copied per thread.
#[derive(Clone)]
pub struct TlsClient {
    /// Verification, ALPN, protocol versions; the session store is replaced per thread.
    config: Arc<ClientConfig>,
    /// SNI and the name the certificate must carry: the URL's host.
    server_name: ServerName<'static>,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// aws-lc-rs with the key exchanges an OpenSSL 3.0 client offers (X25519 first, then the
/// NIST curves), not rustls's post-quantum X25519MLKEM768 first: the peers here (nginx and
/// HAProxy on OpenSSL 3.0, which has no ML-KEM) would pick X25519 while tether (rustls) would
/// pick the hybrid, and a benchmark must give every proxy the same handshake to do.
fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::aws_lc_rs::{default_provider, kx_group};
    Arc::new(CryptoProvider {
        kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
        ..default_provider()
    })
}

impl TlsClient {
    /// The client for `host` (the URL's host: a name or an IP literal, IPv6 in brackets).
    pub fn build(trust: &Trust, host: &str) -> Result<Self, String> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS settings refused: {e}"))?;
        let mut config = match trust {
            Trust::Ca(path) => builder
                .with_root_certificates(roots(path)?)
                .with_no_client_auth(),
            Trust::Insecure => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate::new(provider)))
                .with_no_client_auth(),
        };
        // What a browser's EventSource offers too; a server that also speaks h2 must pick
        // HTTP/1.1, the only protocol sse-load speaks.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let server_name = ServerName::try_from(bare.to_string())
            .map_err(|e| format!("{host:?} is not a TLS server name: {e}"))?;
        Ok(Self {
            config: Arc::new(config),
            server_name,
        })
    }

    /// A copy with its own session store, for one thread.
    pub fn for_thread(&self) -> Self {
        let mut config = (*self.config).clone();
        config.resumption = Resumption::in_memory_sessions(SESSIONS_PER_THREAD);
        Self {
            config: Arc::new(config),
            server_name: self.server_name.clone(),
        }
    }

    /// The settings of an HTTP/2 run (`--h2-streams-per-conn`, `h2/`): ALPN `h2` only (a server
    /// that would answer HTTP/1.1 fails the handshake or is caught by the ALPN check), its own
    /// session store; and the server name. tokio-rustls drives these.
    pub(crate) fn for_h2(&self) -> (Arc<ClientConfig>, ServerName<'static>) {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        config.resumption = Resumption::in_memory_sessions(SESSIONS_PER_THREAD);
        (Arc::new(config), self.server_name.clone())
    }

    /// A new client connection (the ClientHello is ready to write).
    pub fn connect(&self) -> Result<ClientConnection, String> {
        ClientConnection::new(self.config.clone(), self.server_name.clone())
            .map_err(|e| format!("tls: {e}"))
    }
}

/// Whether a finished handshake was resumed (None: not finished yet).
pub fn resumed(conn: &ClientConnection) -> Option<bool> {
    conn.handshake_kind()
        .map(|k| matches!(k, HandshakeKind::Resumed))
}

/// The CA certificates of a PEM file.
fn roots(path: &Path) -> Result<RootCertStore, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--ca {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "--ca {}: no certificate in it (PEM \"BEGIN CERTIFICATE\" blocks expected)",
            path.display()
        ));
    }
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!("--ca {}: no usable certificate", path.display()));
    }
    Ok(store)
}

/// A non-blocking socket as rustls's `Read`/`Write` (one syscall per call; `WouldBlock`
/// passes through).
pub(crate) struct FdIo(pub RawFd);

impl io::Read for FdIo {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        net::read(self.0, buf)
    }
}

impl io::Write for FdIo {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        net::send(self.0, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes every TLS record rustls has ready to `fd` (handshake messages, the request, alerts).
/// A few hundred bytes into a socket that has room: a write that would block is an error, as
/// for the plain request (`driver.rs`).
pub(crate) fn flush(conn: &mut ClientConnection, fd: RawFd) -> io::Result<()> {
    while conn.wants_write() {
        match conn.write_tls(&mut FdIo(fd)) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::other(
                    "TLS write would block (socket buffer full)",
                ))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_literals_are_server_names() {
        for host in ["localhost", "127.0.0.1", "[::1]"] {
            assert!(TlsClient::build(&Trust::Insecure, host).is_ok(), "{host}");
        }
        let e = TlsClient::build(&Trust::Ca("/nonexistent.pem".into()), "h").unwrap_err();
        assert!(e.contains("/nonexistent.pem"), "{e}");
    }
}
