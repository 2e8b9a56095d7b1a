//! tether: a thread-per-core HTTP/1.1 and Server-Sent Events reverse proxy on monoio.
//!
//! Module map (one concept per file; see README.md for the picture):
//! - [`access_log`]: `--access-log`: one JSON line per request, stream or tunnel, buffered per
//!   worker, reopened on SIGHUP.
//! - [`admin`]: the admin endpoint (/metrics, /healthz, /streams).
//! - [`cli`]: every flag, its default and its help text.
//! - `client_stream`: the client side of a connection (plain TCP or TLS), which the code that
//!   serves clients is generic over.
//! - [`client_tls`]: TLS for clients: certificates by SNI, the server handshake, the TLS client
//!   connection.
//! - [`demo`]: `tether demo`, a flaky upstream, tether and a client in one process.
//! - [`config`]: the settings resolved once from the command line and the configuration file.
//! - [`config_file`]: `--config tether.toml`: every flag a key, `[[route]]` tables, errors with
//!   line and column.
//! - [`rules`]: interceptor rules on requests, responses and SSE events (MCP-aware: JSON-RPC
//!   keys, `tools/list` filtering, JSON-RPC errors for denied calls); the [`rules::Interceptor`]
//!   trait.
//! - `route`: which upstream group and settings a request gets, by host and path prefix.
//! - `mcp_session`: sealed MCP session ids (the upstream replica and its session id under
//!   AES-256-GCM, bound to the client's identity) and the keys that seal them.
//! - [`check`]: `tether check`, the configuration validated and printed.
//! - [`limits`]: named limits outside the HTTP codec.
//! - [`duration`]: human durations (`500ms`, `2s`, `1m`).
//! - [`size`]: sizes (`65536`, `64KiB`, `256MiB`).
//! - [`log`]: log lines on stderr.
//! - [`metrics`]: per-worker counters (no atomics on the per-event path).
//! - [`reload`]: SIGHUP: the file read again, checked, and handed to every worker between
//!   requests; what needs a restart reported.
//! - [`server`]: the process: port check, workers, signals, drain.
//! - [`worker`]: one pinned thread per core with its runtime, listener and accept loop.
//! - [`runtime`]: io_uring runtime with an explicit epoll fallback.
//! - [`conn_table`]: a worker's live connections, for the drain.
//! - [`conn_io`]: socket reads/writes over owned buffers, with their cancellation contracts, and
//!   the `ByteStream` trait the exchange reads and writes clients and upstreams through.
//! - [`http`]: the HTTP/1.1 wire codec (heads, framing, chunked, what crosses the proxy).
//! - [`proxy`]: a client connection's life, its upstream exchange, request ids, and the byte
//!   tunnel an upgrade (WebSocket) becomes.
//! - [`upstream`]: replicas, connecting to them (TLS for `https://` ones: rustls driven by
//!   tether's own readiness waits and syscalls), the pool, passive health (below `proxy` and
//!   `sse`).
//! - [`sse`]: Server-Sent Events: event framing, replay rings, the stream table, the relay.
//! - `store`: the replay store: events written behind to Redis Streams for reconnections that
//!   land on another tether instance (a side thread; workers only queue and await replies).
//! - `tls`: rustls sessions (either side) driven by readiness waits and non-blocking syscalls.
//! - [`timers`]: one timer per worker for every stream's deadlines.
//! - `ready_set`: one epoll set per worker for its SSE upstream sockets (edge-triggered), so that
//!   a stream's wait for its next event is no io_uring poll operation of its own.
//! - [`memory`]: the allocator (mimalloc v2) and giving memory back to the system.
//! - `alloc_census` (feature `alloc-census`): live allocations by size, for perf work.
//!
//! Public: what the binary, the integration tests, the benches and the fuzz targets use (`cli`,
//! `config`, `server`, `demo`, `log`, `http`, `sse`'s framer and ring); the rest is the crate's
//! own, so that the compiler reports what nothing uses.

pub mod access_log;
pub(crate) mod admin;
#[cfg(feature = "alloc-census")]
pub mod alloc_census;
pub mod check;
pub mod cli;
pub mod client_h2;
pub(crate) mod client_stream;
pub mod client_tls;
pub mod config;
pub mod config_file;
pub(crate) mod conn_io;
pub(crate) mod conn_table;
pub mod demo;
pub(crate) mod duration;
pub mod http;
pub(crate) mod limits;
pub mod log;
pub(crate) mod mcp_session;
pub(crate) mod memory;
pub(crate) mod metrics;
pub(crate) mod proxy;
pub mod reload;
pub(crate) mod route;
pub mod rules;
pub(crate) mod runtime;
pub mod server;
pub(crate) mod size;
pub mod sse;
pub(crate) mod stamp;
// Built and tested on its own; the relay does not record into it or read from it yet (issue 16's
// integration), so until then only its own tests use it. Remove the allow with the wiring.
pub(crate) mod ready_set;
#[allow(dead_code, unused_imports)]
pub(crate) mod store;
#[cfg(test)]
mod test_drivers;
pub(crate) mod timers;
pub(crate) mod tls;
pub(crate) mod turns;
pub(crate) mod upstream;
pub(crate) mod worker;
