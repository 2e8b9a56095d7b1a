//! tether-perf: the measurement ground for tether.
//!
//! Module map:
//! - [`upstream`]: `sse-upstream`, an HTTP/1.1 + SSE origin simulator with fault injection
//!   (started in-process with [`spawn`] or as the `sse-upstream` binary). Its pure SSE parts,
//!   [`upstream::query`] (parameters), [`upstream::schedule`] (which event when) and
//!   [`upstream::sse`] (the bytes), are also the second origin's, `sse-tokio`
//!   (`src/bin/sse-tokio/`), which adds only its tokio IO.
//! - [`checksum`]: FNV-1a 64, the checksum `/sum` answers with, so tests compute the same one.
//! - [`load`]: `sse-load`, the SSE load generator: counts every event, its latency, gaps,
//!   duplicates and reconnections ([`load::run`] with a [`load::LoadConfig`]; `perf/LOAD.md`).
//!
//! The library API is deliberately small: [`UpstreamConfig`], [`spawn`], [`UpstreamHandle`],
//! [`RequestRecord`], [`fnv1a64`] and [`FNV1A64_OFFSET_BASIS`] for the simulator, plus the
//! three pure SSE modules above for `sse-tokio`;
//! [`load::run`], [`load::LoadConfig`] and [`load::Report`] for the load generator, plus its
//! pure building blocks (parsers, histogram, id tracker) for tests and benches.

pub mod checksum;
pub mod load;
pub mod upstream;

pub use checksum::{fnv1a64, FNV1A64_OFFSET_BASIS, FNV1A64_PRIME};
pub use upstream::{spawn, FaultStats, RequestRecord, UpstreamConfig, UpstreamHandle};
