//! Sealed MCP session ids: when upstream replica *k* answers with `Mcp-Session-Id: U`, the client
//! gets tether's own id instead, which carries *k* and *U* sealed with AES-256-GCM and bound to the
//! client's identity. The client can neither read *U* nor forge or alter the id; any worker of any
//! instance that shares the key routes a request by the id alone (no session table).
//!
//! - [`keys`]: the sealing key and the older keys still accepted (`--session-key-file`).
//! - [`token`]: `seal` and `open`: the id's format, its limits and why one does not open.
//!
//! What the caller does: 404 for an id that does not open (forged, altered, another identity's,
//! an unknown key) or that names a replica that is gone; never sends tether's id upstream nor *U*
//! to the client; never logs an id whole.

// Used by the proxy once sessions are wired in.
#![allow(dead_code)]

pub(crate) mod keys;
pub(crate) mod token;
