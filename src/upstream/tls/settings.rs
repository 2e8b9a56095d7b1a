//! The TLS client settings of upstream connections: the roots (the system's, else Mozilla's
//! compiled in) plus `--upstream-ca`, or `--upstream-insecure`'s verifier that accepts any
//! certificate; built off the workers, copied per worker with its own session store.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// TLS sessions each worker remembers for resumption (rustls's in-memory store, one per worker:
/// no lock shared between workers). One entry per upstream host name; past it the oldest goes.
pub const SESSIONS_PER_WORKER: usize = 256;

/// `--upstream-ca` and `--upstream-insecure`, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM files of CA certificates trusted for upstreams besides the system's roots.
    pub ca_files: Vec<PathBuf>,
    /// Accept any upstream certificate (the handshake's signatures are still checked).
    pub insecure: bool,
}

/// The process's upstream TLS client settings, built once from `TlsSettings` (at start and at
/// each reload, off the workers: it reads files). Each worker takes its own copy
/// (`for_worker`) with its own session store.
#[derive(Clone)]
pub struct UpstreamTls {
    config: Arc<ClientConfig>,
    /// `--upstream-insecure` is in force.
    pub insecure: bool,
    /// Where the roots came from, for the start-up log line.
    pub roots: String,
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("insecure", &self.insecure)
            .field("roots", &self.roots)
            .finish()
    }
}

/// Why the TLS settings cannot be used.
#[derive(Debug)]
pub enum TlsConfigError {
    /// An `--upstream-ca` file cannot be read or is not PEM.
    CaFile { path: PathBuf, reason: String },
    /// An `--upstream-ca` file holds no certificate.
    NoCertificate { path: PathBuf },
    /// rustls refused the configuration.
    Rustls(String),
}

impl fmt::Display for TlsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsConfigError::CaFile { path, reason } => write!(f, "{}: {reason}", path.display()),
            TlsConfigError::NoCertificate { path } => write!(
                f,
                "{}: no certificate in it (PEM \"BEGIN CERTIFICATE\" blocks expected)",
                path.display()
            ),
            TlsConfigError::Rustls(reason) => write!(f, "TLS settings refused: {reason}"),
        }
    }
}

impl std::error::Error for TlsConfigError {}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl UpstreamTls {
    /// Loads the roots and the `--upstream-ca` files. Blocking (files): never on a worker.
    pub fn build(settings: &TlsSettings) -> Result<UpstreamTls, TlsConfigError> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsConfigError::Rustls(e.to_string()))?;
        let (roots, from) = roots(&settings.ca_files)?;
        let mut config = if settings.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { provider }))
                .with_no_client_auth()
        } else {
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        // HTTP/1.1 is all tether speaks upstream.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(UpstreamTls {
            config: Arc::new(config),
            insecure: settings.insecure,
            roots: from,
        })
    }

    /// A worker's own client settings: the same verification, its own session store (a
    /// resumed handshake skips the certificate chain; per worker, the store takes no lock
    /// another worker holds).
    pub fn for_worker(&self) -> Arc<ClientConfig> {
        let mut config = (*self.config).clone();
        config.resumption = Resumption::in_memory_sessions(SESSIONS_PER_WORKER);
        Arc::new(config)
    }
}

/// The system's roots, or Mozilla's when the system has none, plus the `--upstream-ca` files.
/// Also says where they came from.
fn roots(ca_files: &[PathBuf]) -> Result<(RootCertStore, String), TlsConfigError> {
    let mut store = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = store.add_parsable_certificates(native.certs);
    let mut from = if added > 0 {
        format!("{added} system roots")
    } else {
        store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let why = native
            .errors
            .first()
            .map_or_else(|| "none found".to_string(), |e| e.to_string());
        format!(
            "{} compiled-in Mozilla roots (no system roots: {why})",
            store.len()
        )
    };
    for path in ca_files {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsConfigError::CaFile {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(TlsConfigError::NoCertificate { path: path.clone() });
        }
        for cert in certs {
            store.add(cert).map_err(|e| TlsConfigError::CaFile {
                path: path.clone(),
                reason: format!("not a CA certificate rustls can use: {e}"),
            })?;
        }
        from.push_str(&format!(" + {}", path.display()));
    }
    Ok((store, from))
}

/// `--upstream-insecure`: any certificate is accepted, for any name. The handshake's
/// signatures are still checked against the certificate presented, so the session is at least
/// with whoever holds its key.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
