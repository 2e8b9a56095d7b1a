//! TLS for clients: `--tls-cert FILE --tls-key FILE` (repeatable pairs, chosen by SNI), the
//! server handshake of every accepted connection, and the TLS client connection the rest of
//! the proxy serves as it serves a plain one (`crate::client_stream`).
//!
//! ```text
//! start / SIGHUP (off the workers): read + check every pair -> ServerConfig (SNI resolver,
//!     TLS 1.2 + 1.3, ALPN http/1.1, tickets) -> each worker its copy (own session cache)
//! accept: handshake (rustls ServerConnection driven by readiness waits and non-blocking
//!     syscalls, crate::tls) within --header-timeout -> TlsClient -> the connection's loop,
//!     monomorphised for it (plain connections keep their own code)
//! ```
//!
//! Files: `certs` (PEM loading and its errors), `sni` (which certificate a handshake gets),
//! `settings` (the server settings, ALPN, resumption), `accept` (the handshake, its failure
//! reasons and their log line), `stream` (the TLS client connection), `worker_tls` (a
//! worker's settings and counters).

mod accept;
mod certs;
mod settings;
mod sni;
mod stream;
mod worker_tls;

pub(crate) use accept::{handshake, HandshakeFailure};
pub use certs::{pairs, CertError, CertPair, MAX_CERT_PAIRS};
pub use settings::{AppProtocol, ClientTls, ClientTlsError, ClientTlsSettings, ALPN_PROTOCOLS};
pub(crate) use stream::{ServerSession, TlsClient};
pub(crate) use worker_tls::WorkerTls;
