//! The TLS server settings clients get: the certificate pairs (chosen by SNI), the versions,
//! ALPN, session resumption. Built off the workers (it reads files), at start and at each
//! reload; each worker takes its own copy with its own session cache.

use std::fmt;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ProducesTickets, ServerSessionMemoryCache};
use rustls::ServerConfig;

use super::certs::{self, CertError, CertPair};
use super::sni::SniResolver;

/// TLS 1.2 sessions each worker remembers for session-id resumption (rustls's in-memory cache,
/// one per worker: no lock shared between workers); past it the oldest goes. Clients that take
/// tickets (TLS 1.3, and most TLS 1.2 ones) resume on any worker without it.
pub const SESSIONS_PER_WORKER: usize = 1024;

/// TLS 1.3 tickets sent after each full handshake: one resumption per ticket (rustls's default
/// is 2; a browser opens its next connection with one, and each costs an encryption and ~200
/// bytes on the wire).
pub const TLS13_TICKETS: usize = 1;

/// The application protocols offered in ALPN, most preferred first: the one place that decides
/// what a TLS client may speak (`h2` goes here, before `http/1.1`, when HTTP/2 is served). A
/// client that offers only protocols missing here is refused by rustls with the
/// `no_application_protocol` alert (RFC 7301 3.2); one that offers none gets HTTP/1.1.
pub const ALPN_PROTOCOLS: &[&[u8]] = &[b"h2", b"http/1.1"];

/// What a TLS client speaks after its handshake, from the ALPN outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppProtocol {
    /// HTTP/1.1 (chosen in ALPN, or no ALPN at all).
    Http1,
    /// HTTP/2 (`crate::client_h2`).
    H2,
}

impl AppProtocol {
    /// The protocol for an ALPN outcome (None: the client offered no ALPN). Only what
    /// ALPN_PROTOCOLS offers can come back from rustls.
    pub fn of(alpn: Option<&[u8]>) -> AppProtocol {
        match alpn {
            Some(b"h2") => AppProtocol::H2,
            Some(b"http/1.1") | None => AppProtocol::Http1,
            Some(_) => AppProtocol::Http1,
        }
    }
}

/// `--tls-cert`/`--tls-key`, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTlsSettings {
    pub pairs: Vec<CertPair>,
}

/// The process's TLS server settings, built from `ClientTlsSettings` (certificates read and
/// checked). Each worker takes its own copy (`for_worker`).
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ServerConfig>,
    /// The certificate files, in order (for the start-up log line).
    pub files: Vec<String>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("files", &self.files)
            .finish()
    }
}

/// Why the client TLS settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientTlsError {
    /// A certificate or key file (named in the error).
    Cert(CertError),
    /// rustls refused the settings.
    Rustls(String),
}

impl fmt::Display for ClientTlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientTlsError::Cert(e) => e.fmt(f),
            ClientTlsError::Rustls(reason) => write!(f, "TLS settings refused: {reason}"),
        }
    }
}

impl std::error::Error for ClientTlsError {}

impl From<CertError> for ClientTlsError {
    fn from(e: CertError) -> Self {
        ClientTlsError::Cert(e)
    }
}

impl ClientTls {
    /// Reads every pair and builds the settings. `ticketer`: the ticket keys to keep (a reload
    /// keeps the running ones, so that tickets issued before it still resume); None makes new
    /// ones. Blocking (files): never on a worker.
    pub fn build(
        settings: &ClientTlsSettings,
        ticketer: Option<Arc<dyn ProducesTickets>>,
    ) -> Result<ClientTls, ClientTlsError> {
        let provider: Arc<CryptoProvider> = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let loaded = settings
            .pairs
            .iter()
            .map(|pair| certs::load(pair, &provider))
            .collect::<Result<Vec<_>, _>>()?;
        let resolver = SniResolver::new(loaded)
            .ok_or_else(|| ClientTlsError::Rustls("no certificate".to_string()))?;
        // TLS 1.2 and 1.3 (rustls's safe defaults: no older versions, AEAD suites only).
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientTlsError::Rustls(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
        config.ticketer = match ticketer {
            Some(kept) => kept,
            None => rustls::crypto::aws_lc_rs::Ticketer::new()
                .map_err(|e| ClientTlsError::Rustls(e.to_string()))?,
        };
        config.send_tls13_tickets = TLS13_TICKETS;
        Ok(ClientTls {
            config: Arc::new(config),
            files: settings
                .pairs
                .iter()
                .map(|p| p.cert.display().to_string())
                .collect(),
        })
    }

    /// The same settings with `ticketer`'s keys (a reload keeps the running ones).
    pub fn with_ticketer(&self, ticketer: Arc<dyn ProducesTickets>) -> ClientTls {
        let mut config = (*self.config).clone();
        config.ticketer = ticketer;
        ClientTls {
            config: Arc::new(config),
            files: self.files.clone(),
        }
    }

    /// The ticket keys, for the next reload to keep.
    pub fn ticketer(&self) -> Arc<dyn ProducesTickets> {
        self.config.ticketer.clone()
    }

    /// A worker's own settings: the same certificates and ticket keys, its own session cache
    /// (no lock another worker holds).
    pub fn for_worker(&self) -> Arc<ServerConfig> {
        let mut config = (*self.config).clone();
        config.session_storage = ServerSessionMemoryCache::new(SESSIONS_PER_WORKER);
        Arc::new(config)
    }
}
