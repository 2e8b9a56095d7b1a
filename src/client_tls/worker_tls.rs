//! A worker's share of client TLS: its server settings (swapped by a reload between
//! connections: a connection keeps the settings its handshake used), its handshake counters
//! and its failure log's rate limit.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::ServerConfig;

use super::accept::{FailureLog, Refused};
use super::stream::TlsClient;
use crate::metrics::WorkerMetrics;

/// What a worker holds of client TLS (None settings: clients speak plain HTTP).
#[derive(Debug, Default)]
pub struct WorkerTls {
    /// This worker's copy of the server settings (`ClientTls::for_worker`).
    config: RefCell<Option<Arc<ServerConfig>>>,
    /// Rate limit of the handshake failure log line.
    log: FailureLog,
}

impl WorkerTls {
    pub fn new(config: Option<Arc<ServerConfig>>) -> WorkerTls {
        WorkerTls {
            config: RefCell::new(config),
            log: FailureLog::default(),
        }
    }

    /// Whether accepted connections do a TLS handshake.
    pub fn enabled(&self) -> bool {
        self.config.borrow().is_some()
    }

    /// The settings for a new connection's handshake.
    pub fn config(&self) -> Option<Arc<ServerConfig>> {
        self.config.borrow().clone()
    }

    /// A reload's new settings: the next handshake uses them; open connections keep theirs.
    pub fn replace(&self, config: Option<Arc<ServerConfig>>) {
        *self.config.borrow_mut() = config;
    }

    /// Counts a done handshake and an open TLS connection (`closed` counts its end).
    pub fn opened(&self, metrics: &WorkerMetrics, client: &TlsClient) {
        WorkerMetrics::inc(&metrics.client_tls_handshakes);
        if client.resumed() {
            WorkerMetrics::inc(&metrics.client_tls_resumed);
        }
        WorkerMetrics::inc(&metrics.client_tls_open);
    }

    /// A TLS connection another worker handed over (its handshake counted there) lives here now.
    pub fn adopted(&self, metrics: &WorkerMetrics) {
        WorkerMetrics::inc(&metrics.client_tls_open);
    }

    /// A TLS connection closed.
    pub fn closed(&self, metrics: &WorkerMetrics) {
        let open = &metrics.client_tls_open;
        open.set(open.get().saturating_sub(1));
    }

    /// Counts a failed handshake by reason and logs it (rate-limited).
    pub fn failed(
        &self,
        metrics: &WorkerMetrics,
        worker: usize,
        peer: SocketAddr,
        refused: &Refused,
    ) {
        metrics.record_client_tls_failure(refused.reason);
        self.log.record(worker, peer, refused);
    }
}
