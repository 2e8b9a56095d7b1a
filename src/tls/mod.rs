//! rustls's sans-IO connections driven by tether's own readiness waits and non-blocking
//! syscalls, for both sides: `https://` upstreams (`crate::upstream::tls`, a rustls
//! `ClientConnection`) and TLS clients (`crate::client_tls`, a `ServerConnection`). One session
//! type, generic over the side ([`TlsSide`]), so each side is compiled on its own and neither
//! pays for the other.
//!
//! ```text
//! read step (TlsSession::read_now), in the wake-up that saw the socket readable:
//!     plaintext rustls still holds?  -> take it, done (no syscall)
//!     recv(MSG_DONTWAIT) ciphertext into the worker's scratch (<= TLS_READ_BYTES)
//!         EAGAIN -> nothing (wait for readability again)
//!         0      -> end of stream (with or without close_notify: the HTTP framing decides)
//!     while ciphertext is left: read_tls (rustls takes <= a record's worth) -> process_new_packets
//!                                -> append the plaintext it made to the caller's buffer
//!     flush what rustls wants to send (alerts, key updates, tickets), as far as the socket takes it
//! write (queue + flush_now): all the pieces to rustls in one write_vectored (records of up to
//!     16 KiB, not one per piece), then write_tls through sendmsg(MSG_DONTWAIT) until rustls is
//!     empty or the socket full (wait for writability, then again); `unsent` is the ciphertext
//!     rustls still holds, which callers count as queued for the peer
//! ```
//!
//! Invariant: after every read step rustls holds no plaintext (everything it decrypted went to
//! the caller's buffer), so a connection whose socket is not readable has nothing to read, and a
//! readiness wait (`readable()`) is all the SSE pump and the tunnel need, as for plain TCP. The
//! one exception is [`TlsSession::peek_state`] (a client watched during a stream), which leaves
//! a pipelined request's plaintext in rustls for the connection's next read step.
//!
//! Cancellation: the steps are synchronous; the only awaits are readiness waits, which own no
//! buffer. Dropping one (a `select!`, a timeout) loses nothing on either driver: ciphertext is
//! either still in the socket or already in rustls.

pub(crate) mod session;

pub(crate) use session::{TlsSession, TlsSide};
