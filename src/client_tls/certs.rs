//! `--tls-cert FILE --tls-key FILE`: a certificate chain and its private key, read from PEM
//! files and checked against each other, with errors that name the file to fix.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ParsedCertificate;
use rustls::sign::CertifiedKey;

/// Most `--tls-cert`/`--tls-key` pairs: the certificate for a handshake is found by trying the
/// pairs in order (`super::sni`), so the list is kept short; past it tether refuses to start.
pub const MAX_CERT_PAIRS: usize = 64;

/// One `--tls-cert` and the `--tls-key` given with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPair {
    /// PEM: the server's certificate first, then the intermediates (the full chain).
    pub cert: PathBuf,
    /// PEM: the certificate's private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
}

/// Why a certificate pair cannot be used. Each names the file to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertError {
    /// Not as many `--tls-cert` as `--tls-key` (they go in pairs, in order).
    PairCount { certs: usize, keys: usize },
    /// More pairs than MAX_CERT_PAIRS.
    TooManyPairs { pairs: usize },
    /// The file cannot be read (missing, no permission...).
    Unreadable { path: PathBuf, reason: String },
    /// The file is not PEM, or a PEM block in it is broken.
    NotPem { path: PathBuf, reason: String },
    /// The certificate file holds no `BEGIN CERTIFICATE` block.
    NoCertificate { path: PathBuf },
    /// The certificate file's first certificate is not one a TLS library can read.
    BadCertificate { path: PathBuf, reason: String },
    /// The key file holds no private key block.
    NoKey { path: PathBuf },
    /// The key is of a type (or on a curve) the crypto provider cannot sign with.
    UnsupportedKey { path: PathBuf, reason: String },
    /// The key is not the private half of the certificate's public key.
    KeyMismatch { cert: PathBuf, key: PathBuf },
}

impl fmt::Display for CertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CertError::PairCount { certs, keys } => write!(
                f,
                "{certs} --tls-cert but {keys} --tls-key: give them in pairs (each --tls-cert FILE followed by its --tls-key FILE)"
            ),
            CertError::TooManyPairs { pairs } => write!(
                f,
                "{pairs} certificate pairs: at most {MAX_CERT_PAIRS} (use a certificate with several names, or a wildcard)"
            ),
            CertError::Unreadable { path, reason } => {
                write!(f, "{}: cannot read it: {reason}", path.display())
            }
            CertError::NotPem { path, reason } => {
                write!(f, "{}: not a valid PEM file: {reason}", path.display())
            }
            CertError::NoCertificate { path } => write!(
                f,
                "{}: no certificate in it (PEM \"BEGIN CERTIFICATE\" blocks expected: the server's certificate first, then its intermediates)",
                path.display()
            ),
            CertError::BadCertificate { path, reason } => write!(
                f,
                "{}: its first certificate cannot be used: {reason}",
                path.display()
            ),
            CertError::NoKey { path } => write!(
                f,
                "{}: no private key in it (PEM \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\" expected)",
                path.display()
            ),
            CertError::UnsupportedKey { path, reason } => write!(
                f,
                "{}: unsupported private key ({reason}); RSA (2048 bits or more), ECDSA P-256/P-384 and Ed25519 keys work",
                path.display()
            ),
            CertError::KeyMismatch { cert, key } => write!(
                f,
                "{}: this key does not belong to the certificate in {} (give each --tls-key right after its --tls-cert)",
                key.display(),
                cert.display()
            ),
        }
    }
}

impl std::error::Error for CertError {}

/// Pairs the `--tls-cert` and `--tls-key` lists in order, checking their counts.
pub fn pairs(certs: &[PathBuf], keys: &[PathBuf]) -> Result<Vec<CertPair>, CertError> {
    if certs.len() != keys.len() {
        return Err(CertError::PairCount {
            certs: certs.len(),
            keys: keys.len(),
        });
    }
    if certs.len() > MAX_CERT_PAIRS {
        return Err(CertError::TooManyPairs { pairs: certs.len() });
    }
    Ok(certs
        .iter()
        .zip(keys)
        .map(|(cert, key)| CertPair {
            cert: cert.clone(),
            key: key.clone(),
        })
        .collect())
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|e| CertError::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Reads one pair: the chain, the key, and checks that the key is the certificate's.
/// Blocking (files): never on a worker.
pub fn load(pair: &CertPair, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, CertError> {
    let chain = load_chain(&pair.cert)?;
    let key = load_key(&pair.key)?;
    let signer =
        provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| CertError::UnsupportedKey {
                path: pair.key.clone(),
                reason: e.to_string(),
            })?;
    let certified = CertifiedKey::new(chain, signer);
    match certified.keys_match() {
        // rustls cannot tell for some key types (no public half to compare): the handshake
        // would fail then, which the start-up check cannot see.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(Arc::new(certified))
        }
        Err(_) => Err(CertError::KeyMismatch {
            cert: pair.cert.clone(),
            key: pair.key.clone(),
        }),
    }
}

/// The certificates of a PEM file, the first one checked to be a usable end-entity certificate.
fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let bytes = read(path)?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::NotPem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    let Some(first) = chain.first() else {
        return Err(CertError::NoCertificate {
            path: path.to_path_buf(),
        });
    };
    ParsedCertificate::try_from(first).map_err(|e| CertError::BadCertificate {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(chain)
}

/// The first private key of a PEM file.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let bytes = read(path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => CertError::NoKey {
            path: path.to_path_buf(),
        },
        other => CertError::NotPem {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    })
}
