//! TLS to `https://` upstreams, with rustls's sans-IO `ClientConnection` driven by tether's own
//! readiness waits and non-blocking syscalls: no TLS stream type, no future that owns a buffer.
//!
//! ```text
//! read step (TlsSession::read_now), in the wake-up that saw the socket readable:
//!     plaintext rustls still holds?  -> take it, done (no syscall)
//!     recv(MSG_DONTWAIT) ciphertext into the worker's scratch (<= TLS_READ_BYTES)
//!         EAGAIN -> nothing (wait for readability again)
//!         0      -> end of stream (with or without close_notify: the HTTP framing decides)
//!     while ciphertext is left: read_tls (rustls takes <= a record's worth) -> process_new_packets
//!                                -> append the plaintext it made to the caller's buffer
//!     flush what rustls wants to send (alerts, key updates), as far as the socket takes it
//! write (queue + flush_now): all the pieces to rustls in one write_vectored (records of up to
//!     16 KiB, not one per piece), then write_tls through sendmsg(MSG_DONTWAIT) until rustls is
//!     empty or the socket full (wait for writability, then again)
//! handshake: flush, wait writable if the socket is full; done when rustls stops handshaking;
//!     else a read step without taking plaintext; nothing there -> wait readable. All under one
//!     deadline (the route's connect-timeout, again after the TCP connect's own).
//! ```
//!
//! Invariant: after every read step rustls holds no plaintext (everything it decrypted went to
//! the caller's buffer), so a connection whose socket is not readable has nothing to read, and a
//! readiness wait (`readable()`) is all the SSE pump and the tunnel need, as for plain TCP.
//!
//! Cancellation: the steps are synchronous; the only awaits are readiness waits, which own no
//! buffer. Dropping one (a `select!`, a timeout) loses nothing on either driver: ciphertext is
//! either still in the socket or already in rustls.
//!
//! Crypto: aws-lc-rs (see Cargo.toml). Verification: rustls's webpki verifier against the
//! system's roots (or Mozilla's, compiled in, when the system has none) plus `--upstream-ca`; the
//! name is the URL's host (SNI), or its IP (no SNI; matched against the certificate's IP SANs).
//! `--upstream-insecure` swaps in a verifier that accepts any certificate but still checks the
//! handshake's signatures with it.
//!
//! Files: `settings` (roots, `--upstream-ca`, `--upstream-insecure`, a worker's client
//! settings), `session` (a connection's session: read steps, writes, the handshake), `failure`
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
