//! tether: a thread-per-core HTTP/1.1 and Server-Sent Events reverse proxy on monoio.
//!
//! Module map (one concept per file; see README.md for the picture):
//! - [`sse`]: SSE framing of upstream bodies into blocks, and the last-event-id cursor.

pub mod sse;
