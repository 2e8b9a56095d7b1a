//! Which certificate a handshake gets: the first pair (in `--tls-cert` order) whose certificate
//! is valid for the name the client sent (SNI), by the same rules a client checks it with
//! (its DNS names, `*.example.com` covering one label); the first pair when the client sent no
//! name or a name no certificate has.

use std::sync::Arc;

use rustls::client::verify_server_name;
use rustls::pki_types::{DnsName, ServerName};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The certificates in force, in `--tls-cert` order (never empty).
#[derive(Debug)]
pub struct SniResolver {
    certs: Vec<Arc<CertifiedKey>>,
}

impl SniResolver {
    /// `certs` in `--tls-cert` order; None when empty.
    pub fn new(certs: Vec<Arc<CertifiedKey>>) -> Option<SniResolver> {
        (!certs.is_empty()).then_some(SniResolver { certs })
    }

    /// The index of the certificate for `sni` (see the module doc).
    pub fn choose(&self, sni: Option<&str>) -> usize {
        let Some(name) = sni.and_then(|s| DnsName::try_from(s).ok()) else {
            return 0;
        };
        let name = ServerName::DnsName(name);
        // Linear, parsing each certificate again (a few microseconds each): the pairs are few
        // (MAX_CERT_PAIRS) and a handshake costs far more.
        self.certs
            .iter()
            .position(|ck| {
                ck.end_entity_cert()
                    .ok()
                    .and_then(|der| ParsedCertificate::try_from(der).ok())
                    .is_some_and(|parsed| verify_server_name(&parsed, &name).is_ok())
            })
            .unwrap_or(0)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.certs[self.choose(hello.server_name())].clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    fn certified(names: &[&str]) -> Arc<CertifiedKey> {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let made = rcgen::generate_simple_self_signed(names).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der()));
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        Arc::new(CertifiedKey::from_der(vec![made.cert.der().clone()], key, &provider).unwrap())
    }

    #[test]
    fn sni_picks_the_certificate_that_names_the_host_else_the_first() {
        let resolver = SniResolver::new(vec![
            certified(&["default.test"]),
            certified(&["api.test", "www.api.test"]),
            certified(&["*.wild.test"]),
        ])
        .unwrap();
        assert_eq!(resolver.choose(Some("api.test")), 1);
        assert_eq!(resolver.choose(Some("WWW.API.TEST")), 1);
        assert_eq!(resolver.choose(Some("default.test")), 0);
        assert_eq!(resolver.choose(Some("a.wild.test")), 2);
        // A wildcard covers one label, not two, nor the bare domain.
        assert_eq!(resolver.choose(Some("a.b.wild.test")), 0);
        assert_eq!(resolver.choose(Some("wild.test")), 0);
        // No name, an unknown one, or one that is not a DNS name: the first pair.
        assert_eq!(resolver.choose(None), 0);
        assert_eq!(resolver.choose(Some("other.test")), 0);
        assert_eq!(resolver.choose(Some("not a name")), 0);
        assert!(SniResolver::new(Vec::new()).is_none());
    }
}
