//! tether: a thread-per-core HTTP/1.1 and Server-Sent Events reverse proxy on monoio.
//!
//! Module map (one concept per file; see README.md for the picture):
