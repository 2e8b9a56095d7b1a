//! What a refused handshake means: its class (counted in `/metrics`, told to the client as a
//! short reason that names no upstream) and one line for the log.

use std::fmt;
use std::io;

use rustls::CertificateError;

/// The kinds of handshake failure `/metrics` counts apart
/// (`tether_upstream_tls_failures_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailureClass {
    /// The certificate does not name the URL's host.
    CertificateName,
    /// The certificate chains to no trusted root (an unknown or private CA).
    CertificateUntrusted,
    /// Expired, or not valid yet.
    CertificateExpired,
    /// Any other certificate fault (bad encoding, wrong purpose, revoked...).
    CertificateOther,
    /// The server refused the handshake with an alert (no common version or cipher...).
    Alert,
    /// Not done within the connect timeout.
    Timeout,
    /// The server closed the connection mid-handshake.
    Closed,
    /// Anything else the TLS protocol refused, or a socket error.
    Other,
}

impl TlsFailureClass {
    /// Every class, in the order `/metrics` lists them.
    pub const ALL: [TlsFailureClass; 8] = [
        TlsFailureClass::CertificateName,
        TlsFailureClass::CertificateUntrusted,
        TlsFailureClass::CertificateExpired,
        TlsFailureClass::CertificateOther,
        TlsFailureClass::Alert,
        TlsFailureClass::Timeout,
        TlsFailureClass::Closed,
        TlsFailureClass::Other,
    ];

    /// The `reason` label.
    pub fn name(self) -> &'static str {
        match self {
            TlsFailureClass::CertificateName => "certificate_name",
            TlsFailureClass::CertificateUntrusted => "certificate_untrusted",
            TlsFailureClass::CertificateExpired => "certificate_expired",
            TlsFailureClass::CertificateOther => "certificate_other",
            TlsFailureClass::Alert => "alert",
            TlsFailureClass::Timeout => "timeout",
            TlsFailureClass::Closed => "closed",
            TlsFailureClass::Other => "other",
        }
    }

    /// What a client's 502 says: the kind of failure, nothing that names the upstream.
    pub fn client_reason(self) -> &'static str {
        match self {
            TlsFailureClass::CertificateName => {
                "the upstream server's TLS certificate is not valid for its name"
            }
            TlsFailureClass::CertificateUntrusted => {
                "the upstream server's TLS certificate is not signed by a trusted CA"
            }
            TlsFailureClass::CertificateExpired => {
                "the upstream server's TLS certificate has expired or is not valid yet"
            }
            TlsFailureClass::CertificateOther => {
                "the upstream server's TLS certificate was refused"
            }
            TlsFailureClass::Timeout => "the TLS handshake with the upstream server timed out",
            TlsFailureClass::Alert | TlsFailureClass::Closed | TlsFailureClass::Other => {
                "the TLS handshake with the upstream server failed"
            }
        }
    }

    /// Its index in `ALL` (and in the metrics' array).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A failed handshake: its class and what the log says about it.
#[derive(Debug)]
pub struct TlsFailure {
    pub class: TlsFailureClass,
    /// One short line, without the upstream's URL (the connect attempt names it).
    pub detail: String,
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "upstream TLS: {}", self.detail)
    }
}

impl TlsFailure {
    pub(super) fn new(class: TlsFailureClass, detail: impl Into<String>) -> TlsFailure {
        TlsFailure {
            class,
            detail: detail.into(),
        }
    }

    /// What a rustls error during the handshake with `host` means.
    pub(super) fn of(e: &rustls::Error, host: &str) -> TlsFailure {
        use TlsFailureClass as C;
        match e {
            rustls::Error::InvalidCertificate(cert) => match cert {
                CertificateError::NotValidForName => {
                    TlsFailure::new(C::CertificateName, format!("certificate not valid for name {host:?}"))
                }
                // rustls's own words name the certificate's names too.
                CertificateError::NotValidForNameContext { .. } => {
                    TlsFailure::new(C::CertificateName, cert.to_string())
                }
                CertificateError::UnknownIssuer => TlsFailure::new(
                    C::CertificateUntrusted,
                    format!(
                        "certificate for {host:?} not signed by a trusted CA (a private CA is added with --upstream-ca)"
                    ),
                ),
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => {
                    TlsFailure::new(C::CertificateExpired, cert.to_string())
                }
                other => TlsFailure::new(C::CertificateOther, format!("certificate refused: {other}")),
            },
            rustls::Error::AlertReceived(alert) => TlsFailure::new(
                C::Alert,
                format!("the server refused the handshake (alert {alert:?})"),
            ),
            other => TlsFailure::new(C::Other, format!("handshake failed: {other}")),
        }
    }

    /// What a failed handshake step's `io::Error` means (a rustls error rides inside one).
    pub(super) fn of_io(e: io::Error, host: &str) -> TlsFailure {
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => TlsFailure::of(tls, host),
            None => TlsFailure::new(TlsFailureClass::Other, format!("handshake failed: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::ServerName;

    #[test]
    fn rustls_errors_map_to_classes_and_short_lines() {
        let host = "api.example.com";
        let name = TlsFailure::of(
            &rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                expected: ServerName::try_from(host).unwrap().to_owned(),
                presented: vec!["DnsName(\"other.example\")".into()],
            }),
            host,
        );
        assert_eq!(name.class, TlsFailureClass::CertificateName);
        assert!(
            name.to_string()
                .starts_with("upstream TLS: certificate not valid for name \"api.example.com\""),
            "{name}"
        );
        let untrusted = TlsFailure::of(
            &rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
            host,
        );
        assert_eq!(untrusted.class, TlsFailureClass::CertificateUntrusted);
        assert!(untrusted.detail.contains("--upstream-ca"), "{untrusted}");
        let expired = TlsFailure::of(
            &rustls::Error::InvalidCertificate(CertificateError::Expired),
            host,
        );
        assert_eq!(expired.class, TlsFailureClass::CertificateExpired);
        let alert = TlsFailure::of(
            &rustls::Error::AlertReceived(rustls::AlertDescription::ProtocolVersion),
            host,
        );
        assert_eq!(alert.class, TlsFailureClass::Alert);
        // A rustls error carried in an io::Error (a read step's) is recognised; a socket error
        // is not a certificate's.
        let wrapped = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        assert_eq!(
            TlsFailure::of_io(wrapped, host).class,
            TlsFailureClass::CertificateUntrusted
        );
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        assert_eq!(TlsFailure::of_io(reset, host).class, TlsFailureClass::Other);
        // The metrics' array and the label list agree.
        for (i, class) in TlsFailureClass::ALL.iter().enumerate() {
            assert_eq!(class.index(), i);
        }
    }
}
