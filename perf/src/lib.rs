//! tether-perf: the measurement ground for tether.
//!
//! Module map:
//! - [`upstream`]: `sse-upstream`, an HTTP/1.1 + SSE origin simulator with fault injection
//!   (started in-process with [`spawn`] or as the `sse-upstream` binary).
//! - [`checksum`]: FNV-1a 64, the checksum `/sum` answers with, so tests compute the same one.
//!
//! The library API is deliberately small: [`UpstreamConfig`], [`spawn`], [`UpstreamHandle`],
//! [`RequestRecord`], [`fnv1a64`] and [`FNV1A64_OFFSET_BASIS`]. Everything else is internal.

pub mod checksum;
pub mod upstream;

pub use checksum::{fnv1a64, FNV1A64_OFFSET_BASIS, FNV1A64_PRIME};
pub use upstream::{spawn, RequestRecord, UpstreamConfig, UpstreamHandle};
