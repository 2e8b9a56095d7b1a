//! The upstream side, below both `proxy` (a client's exchange) and `sse` (the relay's
//! reconnects): the replicas and their addresses ([`replica`]), getting a connection to one
//! ([`connect`]), the connection itself, plain or TLS ([`stream`], [`tls`] for `https://`
//! replicas), a worker's idle keep-alive connections ([`pool`]), which replicas a worker skips
//! for now because their recent tries failed ([`health`]), and a route's replicas and the order
//! they are tried in ([`group`]).

pub mod connect;
pub(crate) mod group;
pub mod health;
pub mod pool;
pub mod replica;
pub mod stream;
pub mod tls;
