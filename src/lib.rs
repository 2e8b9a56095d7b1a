//! tether: a thread-per-core HTTP/1.1 and Server-Sent Events reverse proxy on monoio.
//!
//! Module map (one concept per file; see README.md for the picture):
//! - [`http`]: the HTTP/1.1 wire codec: head scanning and parsing, body framing (Content-Length,
//!   chunked, until-close), and the heads the proxy writes upstream and back to the client.

pub mod http;
