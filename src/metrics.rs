//! Per-worker counters. Each worker owns its own (plain `Cell`s, no atomics on the per-event
//! path); the admin endpoint sums them when scraped.

use std::cell::Cell;
use std::time::Duration;

use crate::client_h2::GoAway;
use crate::client_tls::HandshakeFailure;

/// How many `GoAway` reasons there are.
pub const H2_GOAWAY_REASONS: usize = GoAway::ALL.len();
use crate::upstream::tls::TlsFailureClass;

/// How many kinds of client TLS handshake failure are counted apart.
const CLIENT_TLS_FAILURES: usize = HandshakeFailure::ALL.len();

/// How many kinds of upstream TLS failure are counted apart.
const TLS_FAILURE_CLASSES: usize = TlsFailureClass::ALL.len();

/// Upper bounds (ms) of the resume-gap histogram buckets; the last bucket is +Inf.
pub const GAP_BUCKETS_MS: [u64; 12] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000, 30000];

/// How an upstream SSE body stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropKind {
    /// The upstream closed (FIN), mid-body or by ending the body.
    Eof,
    /// The connection was reset (RST).
    Reset,
    /// No byte for `--upstream-idle-timeout`.
    Idle,
    /// Any other read error, or an invalid body.
    Error,
}

impl DropKind {
    pub fn name(self) -> &'static str {
        match self {
            DropKind::Eof => "eof",
            DropKind::Reset => "reset",
            DropKind::Idle => "idle",
            DropKind::Error => "error",
        }
    }
}

#[derive(Debug, Default)]
pub struct WorkerMetrics {
    pub connections_accepted: Cell<u64>,
    pub connections_rejected: Cell<u64>,
    pub requests: Cell<u64>,
    /// Responses sent to clients by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    pub responses: [Cell<u64>; 5],
    pub upstream_connect_errors: Cell<u64>,
    /// TLS handshakes with `https://` upstreams that succeeded (resumed ones included).
    pub upstream_tls_handshakes: Cell<u64>,
    /// Of those, the ones that resumed an earlier session (no certificate chain sent).
    pub upstream_tls_resumed: Cell<u64>,
    /// Failed TLS handshakes by class (`TlsFailureClass::index`).
    pub upstream_tls_failures: [Cell<u64>; TLS_FAILURE_CLASSES],
    /// TLS handshakes with clients that succeeded (resumed ones included).
    pub client_tls_handshakes: Cell<u64>,
    /// Of those, the ones that resumed an earlier session (a ticket).
    pub client_tls_resumed: Cell<u64>,
    /// Client connections open over TLS now.
    pub client_tls_open: Cell<u64>,
    /// Failed client handshakes by reason (`HandshakeFailure::index`).
    pub client_tls_failures: [Cell<u64>; CLIENT_TLS_FAILURES],
    /// HTTP/2 client connections open now.
    pub h2_open: Cell<u64>,
    /// HTTP/2 streams accepted.
    pub h2_streams: Cell<u64>,
    /// RST_STREAM frames HTTP/2 clients sent.
    pub h2_resets: Cell<u64>,
    /// HTTP/2 connections tether ended with GOAWAY, by reason (`GoAway::index`).
    pub h2_goaway: [Cell<u64>; H2_GOAWAY_REASONS],
    pub sse_streams_active: Cell<u64>,
    pub sse_events: Cell<u64>,
    pub sse_bytes: Cell<u64>,
    pub heartbeats: Cell<u64>,
    pub slow_clients: Cell<u64>,
    pub replays_served: Cell<u64>,
    pub replays_missed: Cell<u64>,
    /// Reconnections served from the replay store (`--replay-store`): their id was in no ring of
    /// this process.
    pub replay_store_served: Cell<u64>,
    /// Reconnections the replay store could not serve: id unknown there, the client already at
    /// the stream's head, or no answer in time (Redis down, slow, busy).
    pub replay_store_misses: Cell<u64>,
    /// Reconnections that follow a lineage another instance still reads, live through the
    /// replay store (`XREAD BLOCK`), instead of opening its upstream again.
    pub replay_store_followed: Cell<u64>,
    pub drops_eof: Cell<u64>,
    pub drops_reset: Cell<u64>,
    pub drops_idle: Cell<u64>,
    pub drops_error: Cell<u64>,
    pub reconnect_attempts: Cell<u64>,
    pub resumes: Cell<u64>,
    pub give_ups: Cell<u64>,
    pub duplicates_dropped: Cell<u64>,
    /// Bytes of unfinished upstream events held (a gauge, set when scraped).
    pub sse_partial_bytes: Cell<u64>,
    /// Streams ended because their worker's unfinished events passed --sse-partial-memory.
    pub sse_partial_cuts: Cell<u64>,
    /// Requests that joined a live SSE stream instead of opening an upstream (--coalesce).
    pub sse_coalesced: Cell<u64>,
    /// Clients following a stream another task reads (a gauge).
    pub sse_shared_clients: Cell<u64>,
    /// Streams read on without any client now (--hold-upstream; a gauge).
    pub sse_held_streams: Cell<u64>,
    /// Clients that came back to a held stream.
    pub sse_hold_resumed: Cell<u64>,
    /// Held streams closed after --hold-upstream with nobody back (or evicted by the budget).
    pub sse_hold_expired: Cell<u64>,
    /// Stream turns put off to a later slice of the worker's loop (crate::turns; set when
    /// scraped).
    pub stream_turns_deferred: Cell<u64>,
    /// Replay rings held (a gauge, set when scraped).
    pub replay_rings: Cell<u64>,
    /// What the replay rings cost, overhead included (a gauge, set when scraped).
    pub replay_ring_bytes: Cell<u64>,
    /// This worker's share of --replay-memory (a gauge).
    pub replay_budget_bytes: Cell<u64>,
    /// Eviction steps taken to stay within --replay-memory (an idle ring freed, or a ring trimmed).
    pub replay_evictions: Cell<u64>,
    /// Events removed from rings to stay within --replay-memory.
    pub replay_evicted_events: Cell<u64>,
    /// Upstream replicas this worker skips now (passive health; a gauge, set when scraped).
    pub upstream_ejected_replicas: Cell<u64>,
    /// Upgraded connections (WebSockets) being tunnelled now (a gauge).
    pub tunnels_active: Cell<u64>,
    /// Upgraded connections tunnelled since start.
    pub tunnels: Cell<u64>,
    /// Bytes tunnelled from clients to upstreams (after the heads).
    pub tunnel_bytes_to_upstream: Cell<u64>,
    /// Bytes tunnelled from upstreams to clients (after the heads).
    pub tunnel_bytes_to_client: Cell<u64>,
    /// Resume gaps (drop to first resumed byte), counts per `GAP_BUCKETS_MS` bucket + one +Inf.
    pub gap_buckets: [Cell<u64>; GAP_BUCKETS_MS.len() + 1],
    pub gap_sum_ms: Cell<u64>,
}

impl WorkerMetrics {
    pub fn add(cell: &Cell<u64>, n: u64) {
        cell.set(cell.get().wrapping_add(n));
    }

    pub fn inc(cell: &Cell<u64>) {
        Self::add(cell, 1);
    }

    pub fn record_drop(&self, kind: DropKind) {
        Self::inc(match kind {
            DropKind::Eof => &self.drops_eof,
            DropKind::Reset => &self.drops_reset,
            DropKind::Idle => &self.drops_idle,
            DropKind::Error => &self.drops_error,
        });
    }

    pub fn record_gap(&self, gap: Duration) {
        let ms = gap.as_millis() as u64;
        let bucket = GAP_BUCKETS_MS
            .iter()
            .position(|&b| ms <= b)
            .unwrap_or(GAP_BUCKETS_MS.len());
        Self::inc(&self.gap_buckets[bucket]);
        Self::add(&self.gap_sum_ms, ms);
    }

    /// Counts a failed TLS handshake with an upstream.
    pub fn record_tls_failure(&self, class: TlsFailureClass) {
        Self::inc(&self.upstream_tls_failures[class.index()]);
    }

    /// Counts a failed TLS handshake with a client.
    pub fn record_client_tls_failure(&self, reason: HandshakeFailure) {
        Self::inc(&self.client_tls_failures[reason.index()]);
    }

    /// Counts an HTTP/2 connection tether ended with GOAWAY.
    pub fn record_h2_goaway(&self, reason: GoAway) {
        Self::inc(&self.h2_goaway[reason.index()]);
    }

    /// Counts a response sent to a client.
    pub fn record_response(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        Self::inc(&self.responses[class]);
    }

    /// A plain copy of every counter, to send to another thread.
    pub fn snapshot(&self, connections_active: u64) -> MetricsSnapshot {
        let mut values = Vec::with_capacity(COUNTERS.len());
        for (_, _, _, get) in COUNTERS {
            values.push(get(self));
        }
        MetricsSnapshot {
            connections_active,
            values,
            responses: self.responses.each_ref().map(Cell::get),
            tls_failures: self.upstream_tls_failures.each_ref().map(Cell::get),
            client_tls_ok: self.client_tls_handshakes.get(),
            client_tls_failures: self.client_tls_failures.each_ref().map(Cell::get),
            h2_goaway: self.h2_goaway.each_ref().map(Cell::get),
            gap_buckets: self.gap_buckets.each_ref().map(Cell::get),
            gap_sum_ms: self.gap_sum_ms.get(),
        }
    }
}

type Getter = fn(&WorkerMetrics) -> u64;

/// Every plain counter: Prometheus name, type, help, and how to read it.
pub const COUNTERS: &[(&str, &str, &str, Getter)] = &[
    (
        "connections_accepted_total",
        "counter",
        "Client connections accepted.",
        |m| m.connections_accepted.get(),
    ),
    (
        "connections_rejected_total",
        "counter",
        "Client connections answered 503 past --max-connections.",
        |m| m.connections_rejected.get(),
    ),
    (
        "requests_total",
        "counter",
        "Requests received from clients.",
        |m| m.requests.get(),
    ),
    (
        "upstream_connect_errors_total",
        "counter",
        "Failed connection attempts to upstream addresses.",
        |m| m.upstream_connect_errors.get(),
    ),
    (
        "upstream_tls_handshakes_total",
        "counter",
        "TLS handshakes with https:// upstreams that succeeded (resumed ones included).",
        |m| m.upstream_tls_handshakes.get(),
    ),
    (
        "upstream_tls_resumed_total",
        "counter",
        "TLS handshakes with https:// upstreams that resumed an earlier session.",
        |m| m.upstream_tls_resumed.get(),
    ),
    (
        "client_tls_resumed_total",
        "counter",
        "TLS handshakes with clients that resumed an earlier session (a ticket).",
        |m| m.client_tls_resumed.get(),
    ),
    (
        "client_tls_connections_open",
        "gauge",
        "Client connections open over TLS now.",
        |m| m.client_tls_open.get(),
    ),
    (
        "h2_connections_open",
        "gauge",
        "HTTP/2 client connections open now.",
        |m| m.h2_open.get(),
    ),
    (
        "h2_streams_total",
        "counter",
        "HTTP/2 streams clients opened (and tether accepted).",
        |m| m.h2_streams.get(),
    ),
    (
        "h2_resets_total",
        "counter",
        "RST_STREAM frames HTTP/2 clients sent.",
        |m| m.h2_resets.get(),
    ),
    (
        "sse_streams_active",
        "gauge",
        "SSE streams being relayed now.",
        |m| m.sse_streams_active.get(),
    ),
    (
        "sse_events_total",
        "counter",
        "SSE events relayed to clients.",
        |m| m.sse_events.get(),
    ),
    (
        "sse_bytes_total",
        "counter",
        "SSE bytes relayed to clients.",
        |m| m.sse_bytes.get(),
    ),
    (
        "sse_heartbeats_total",
        "counter",
        "Heartbeat comments sent to SSE clients.",
        |m| m.heartbeats.get(),
    ),
    (
        "stream_turns_deferred_total",
        "counter",
        "Stream turns put off until the worker's IO loop had its tick (--turn-slice used up): \
         how often busy streams gave way to new connections and timers.",
        |m| m.stream_turns_deferred.get(),
    ),
    (
        "sse_slow_clients_total",
        "counter",
        "SSE clients disconnected for not keeping up (--sse-client-buffer).",
        |m| m.slow_clients.get(),
    ),
    (
        "replay_served_total",
        "counter",
        "Reconnections served from a replay ring.",
        |m| m.replays_served.get(),
    ),
    (
        "replay_missed_total",
        "counter",
        "Reconnections whose Last-Event-ID was in no ring.",
        |m| m.replays_missed.get(),
    ),
    (
        "replay_store_served_total",
        "counter",
        "Reconnections served from the replay store (--replay-store): their id was in no ring of this process.",
        |m| m.replay_store_served.get(),
    ),
    (
        "replay_store_followed_total",
        "counter",
        "Reconnections that followed a stream another tether instance still reads, live through the replay store, instead of opening its upstream again.",
        |m| m.replay_store_followed.get(),
    ),
    (
        "replay_store_missed_total",
        "counter",
        "Reconnections the replay store did not serve (id unknown there, already at the head, or no answer in time); they went upstream as without a store.",
        |m| m.replay_store_misses.get(),
    ),
    (
        "upstream_drops_eof_total",
        "counter",
        "SSE upstream bodies ended by a close (mid-body or clean end).",
        |m| m.drops_eof.get(),
    ),
    (
        "upstream_drops_reset_total",
        "counter",
        "SSE upstream connections reset.",
        |m| m.drops_reset.get(),
    ),
    (
        "upstream_drops_idle_total",
        "counter",
        "SSE upstreams silent past --upstream-idle-timeout.",
        |m| m.drops_idle.get(),
    ),
    (
        "upstream_drops_error_total",
        "counter",
        "SSE upstreams failed with another error or an invalid body.",
        |m| m.drops_error.get(),
    ),
    (
        "reconnect_attempts_total",
        "counter",
        "Reconnect attempts to SSE upstreams.",
        |m| m.reconnect_attempts.get(),
    ),
    (
        "resumes_total",
        "counter",
        "Dropped SSE streams resumed on a fresh upstream.",
        |m| m.resumes.get(),
    ),
    (
        "resume_give_ups_total",
        "counter",
        "Dropped SSE streams ended after --reconnect-timeout.",
        |m| m.give_ups.get(),
    ),
    (
        "duplicates_dropped_total",
        "counter",
        "Repeated SSE events dropped after a resume or replay.",
        |m| m.duplicates_dropped.get(),
    ),
    (
        "sse_partial_bytes",
        "gauge",
        "Bytes of unfinished upstream SSE events held (bounded by --sse-partial-memory).",
        |m| m.sse_partial_bytes.get(),
    ),
    (
        "sse_partial_cuts_total",
        "counter",
        "SSE streams ended because unfinished events passed --sse-partial-memory.",
        |m| m.sse_partial_cuts.get(),
    ),
    (
        "sse_coalesced_total",
        "counter",
        "SSE requests that joined a live stream of the same target and identity instead of opening an upstream (--coalesce).",
        |m| m.sse_coalesced.get(),
    ),
    (
        "sse_shared_clients",
        "gauge",
        "SSE clients following a stream whose upstream another connection reads (coalesced, or back to a held stream).",
        |m| m.sse_shared_clients.get(),
    ),
    (
        "sse_held_streams",
        "gauge",
        "SSE upstreams read on with no client now (--hold-upstream).",
        |m| m.sse_held_streams.get(),
    ),
    (
        "sse_hold_resumed_total",
        "counter",
        "Clients that came back to a held SSE stream.",
        |m| m.sse_hold_resumed.get(),
    ),
    (
        "sse_hold_expired_total",
        "counter",
        "Held SSE streams closed with nobody back: after --hold-upstream, or freed by --replay-memory.",
        |m| m.sse_hold_expired.get(),
    ),
    (
        "replay_rings",
        "gauge",
        "Replay rings held (one per upstream lineage, live or kept for --replay-ttl).",
        |m| m.replay_rings.get(),
    ),
    (
        "replay_ring_bytes",
        "gauge",
        "Memory the replay rings hold, overhead included (bounded by --replay-memory).",
        |m| m.replay_ring_bytes.get(),
    ),
    (
        "replay_budget_bytes",
        "gauge",
        "The --replay-memory budget (each worker keeps an equal share).",
        |m| m.replay_budget_bytes.get(),
    ),
    (
        "replay_evictions_total",
        "counter",
        "Evictions to stay within --replay-memory: idle rings freed, rings trimmed of their oldest events.",
        |m| m.replay_evictions.get(),
    ),
    (
        "replay_evicted_events_total",
        "counter",
        "Events removed from rings to stay within --replay-memory.",
        |m| m.replay_evicted_events.get(),
    ),
    (
        "tunnels_active",
        "gauge",
        "Upgraded connections (WebSockets and other 101 answers) tunnelled now.",
        |m| m.tunnels_active.get(),
    ),
    (
        "tunnels_total",
        "counter",
        "Upgraded connections tunnelled since start.",
        |m| m.tunnels.get(),
    ),
    (
        "tunnel_bytes_to_upstream_total",
        "counter",
        "Bytes tunnelled from clients to upstreams after the upgrade.",
        |m| m.tunnel_bytes_to_upstream.get(),
    ),
    (
        "tunnel_bytes_to_client_total",
        "counter",
        "Bytes tunnelled from upstreams to clients after the upgrade (the 101 head not counted).",
        |m| m.tunnel_bytes_to_client.get(),
    ),
    (
        "upstream_ejected_replicas",
        "gauge",
        "Upstream replicas ejected now (--upstream-eject-after), counted on each worker that skips them.",
        |m| m.upstream_ejected_replicas.get(),
    ),
];

/// A worker's counters at one instant; plain data, sendable between threads.
#[derive(Debug, Clone, Default)]
pub struct MetricsSnapshot {
    pub connections_active: u64,
    /// In the order of `COUNTERS`.
    pub values: Vec<u64>,
    pub responses: [u64; 5],
    /// Per `TlsFailureClass`, in `ALL`'s order.
    pub tls_failures: [u64; TLS_FAILURE_CLASSES],
    /// Client TLS handshakes that succeeded.
    pub client_tls_ok: u64,
    /// Per `HandshakeFailure`, in `ALL`'s order.
    pub client_tls_failures: [u64; CLIENT_TLS_FAILURES],
    /// Per `GoAway`, in `ALL`'s order.
    pub h2_goaway: [u64; H2_GOAWAY_REASONS],
    pub gap_buckets: [u64; GAP_BUCKETS_MS.len() + 1],
    pub gap_sum_ms: u64,
}

/// Prometheus text exposition (version 0.0.4): totals as `tether_*`, and the same per worker as
/// `tether_worker_*{worker="N"}`.
pub fn render_prometheus(workers: &[MetricsSnapshot], out: &mut String) {
    use std::fmt::Write;
    let sum = |f: &dyn Fn(&MetricsSnapshot) -> u64| workers.iter().map(f).sum::<u64>();
    let mut family = |name: &str, kind: &str, help: &str, f: &dyn Fn(&MetricsSnapshot) -> u64| {
        let _ = writeln!(
            out,
            "# HELP tether_{name} {help}\n# TYPE tether_{name} {kind}\ntether_{name} {}",
            sum(f)
        );
        let _ = writeln!(
            out,
            "# HELP tether_worker_{name} {help} Per worker.\n# TYPE tether_worker_{name} {kind}"
        );
        for (i, w) in workers.iter().enumerate() {
            let _ = writeln!(out, "tether_worker_{name}{{worker=\"{i}\"}} {}", f(w));
        }
    };
    family(
        "connections_active",
        "gauge",
        "Client connections open now.",
        &|w| w.connections_active,
    );
    for (i, (name, kind, help, _)) in COUNTERS.iter().enumerate() {
        family(name, kind, help, &|w| w.values.get(i).copied().unwrap_or(0));
    }
    for (class, label) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
        family(
            &format!("responses_{label}_total"),
            "counter",
            &format!("Responses sent to clients with a {label} status."),
            &|w| w.responses[class],
        );
    }
    let tls_failures: Vec<(String, u64)> = TlsFailureClass::ALL
        .iter()
        .map(|class| {
            let n = sum(&|w| w.tls_failures[class.index()]);
            (class.name().to_string(), n)
        })
        .collect();
    render_labelled(
        out,
        (
            "upstream_tls_failures_total",
            "counter",
            "Failed TLS handshakes with https:// upstreams, by reason (each also counts in upstream_connect_errors_total).",
        ),
        "reason",
        &tls_failures,
    );
    let client_failures: Vec<(String, u64)> = HandshakeFailure::ALL
        .iter()
        .map(|reason| {
            let n = sum(&|w| w.client_tls_failures[reason.index()]);
            (reason.name().to_string(), n)
        })
        .collect();
    let failed: u64 = client_failures.iter().map(|(_, n)| n).sum();
    render_labelled(
        out,
        (
            "client_tls_handshakes_total",
            "counter",
            "TLS handshakes with clients, by result (failed ones by reason in client_tls_failures_total).",
        ),
        "result",
        &[
            ("ok".to_string(), sum(&|w| w.client_tls_ok)),
            ("failed".to_string(), failed),
        ],
    );
    render_labelled(
        out,
        (
            "client_tls_failures_total",
            "counter",
            "Failed TLS handshakes with clients, by reason (timeout, closed, not_tls, client_alert, incompatible, other).",
        ),
        "reason",
        &client_failures,
    );
    let goaways: Vec<(String, u64)> = GoAway::ALL
        .iter()
        .map(|reason| {
            (
                reason.name().to_string(),
                sum(&|w| w.h2_goaway[reason.index()]),
            )
        })
        .collect();
    render_labelled(
        out,
        (
            "h2_goaway_total",
            "counter",
            "HTTP/2 client connections tether closed with GOAWAY, by reason (rapid_reset, ping_flood, settings_flood, continuation_flood, enhance_your_calm, protocol_error).",
        ),
        "reason",
        &goaways,
    );
    // The resume gap histogram, summed over workers.
    let _ = writeln!(out, "# HELP tether_resume_gap_seconds Time from an SSE upstream drop to the first resumed byte sent to the client.\n# TYPE tether_resume_gap_seconds histogram");
    let mut cumulative = 0u64;
    for (i, bound) in GAP_BUCKETS_MS.iter().enumerate() {
        cumulative += sum(&|w| w.gap_buckets[i]);
        let _ = writeln!(
            out,
            "tether_resume_gap_seconds_bucket{{le=\"{}\"}} {cumulative}",
            *bound as f64 / 1000.0
        );
    }
    cumulative += sum(&|w| w.gap_buckets[GAP_BUCKETS_MS.len()]);
    let _ = writeln!(
        out,
        "tether_resume_gap_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
    );
    let _ = writeln!(
        out,
        "tether_resume_gap_seconds_sum {}",
        sum(&|w| w.gap_sum_ms) as f64 / 1000.0
    );
    let _ = writeln!(out, "tether_resume_gap_seconds_count {cumulative}");
}

/// The replay store's process-wide figures (`--replay-store`; not per worker: one thread writes
/// for all of them).
pub(crate) fn render_store(store: &crate::store::CountersSnapshot, out: &mut String) {
    use std::fmt::Write;
    let families: [(&str, &str, &str, u64); 8] = [
        (
            "replay_store_written_total",
            "counter",
            "Events written to the replay store (acknowledged by Redis).",
            store.written,
        ),
        (
            "replay_store_dropped_total",
            "counter",
            "Events not written to the replay store: a worker's queue was full, or Redis was unavailable or failed their pipeline.",
            store.dropped_full + store.dropped_unavailable,
        ),
        (
            "replay_store_dropped_queue_full_total",
            "counter",
            "Events dropped because a worker's queue to the replay store was full (Redis slow or down).",
            store.dropped_full,
        ),
        (
            "replay_store_errors_total",
            "counter",
            "Failed connection attempts, pipelines and reads of the replay store.",
            store.errors,
        ),
        (
            "replay_store_reads_total",
            "counter",
            "Reads the replay store answered (found or not).",
            store.reads,
        ),
        (
            "replay_store_connected",
            "gauge",
            "1 while the replay store's connection to Redis is up.",
            u64::from(store.connected),
        ),
        (
            "replay_store_write_latency_microseconds",
            "gauge",
            "Round trip of the replay store's last successful pipeline.",
            store.last_write_latency_us,
        ),
        (
            "replay_store_lag_microseconds",
            "gauge",
            "How long the oldest event of the last successful pipeline waited from its recording to Redis's answer.",
            store.last_lag_us,
        ),
    ];
    for (name, kind, help, value) in families {
        let _ = writeln!(
            out,
            "# HELP tether_{name} {help}\n# TYPE tether_{name} {kind}\ntether_{name} {value}"
        );
    }
}

/// A counter family with one sample per label value (summed over workers by the caller), e.g.
/// `tether_upstream_ejections_total{upstream="http://10.0.0.5:3000"} 2`.
pub fn render_labelled(
    out: &mut String,
    (name, kind, help): (&str, &str, &str),
    label: &str,
    samples: &[(String, u64)],
) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "# HELP tether_{name} {help}\n# TYPE tether_{name} {kind}"
    );
    for (value, n) in samples {
        let _ = writeln!(
            out,
            "tether_{name}{{{label}=\"{}\"}} {n}",
            escape_label_value(value)
        );
    }
}

/// A label value as the Prometheus text format requires: backslash, double quote and line feed
/// escaped.
pub(crate) fn escape_label_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_land_in_their_buckets() {
        let m = WorkerMetrics::default();
        m.record_gap(Duration::from_millis(0));
        m.record_gap(Duration::from_millis(7));
        m.record_gap(Duration::from_secs(60));
        assert_eq!(m.gap_buckets[0].get(), 1);
        assert_eq!(m.gap_buckets[3].get(), 1, "7ms <= 10ms");
        assert_eq!(m.gap_buckets[GAP_BUCKETS_MS.len()].get(), 1, "+Inf");
        assert_eq!(m.gap_buckets.iter().map(Cell::get).sum::<u64>(), 3);
    }

    #[test]
    fn labelled_samples_escape_their_values() {
        let mut out = String::new();
        render_labelled(
            &mut out,
            ("upstream_ejections_total", "counter", "Ejections."),
            "upstream",
            &[
                ("http://a:1".to_string(), 2),
                ("http://b:2/x\"y\\".to_string(), 0),
            ],
        );
        assert_eq!(
            out,
            "# HELP tether_upstream_ejections_total Ejections.\n# TYPE tether_upstream_ejections_total counter\n\
             tether_upstream_ejections_total{upstream=\"http://a:1\"} 2\n\
             tether_upstream_ejections_total{upstream=\"http://b:2/x\\\"y\\\\\"} 0\n"
        );
    }

    #[test]
    fn prometheus_text_sums_workers_and_labels_each() {
        let a = WorkerMetrics::default();
        WorkerMetrics::add(&a.requests, 3);
        a.record_response(204);
        a.record_gap(Duration::from_millis(3));
        let b = WorkerMetrics::default();
        WorkerMetrics::add(&b.requests, 4);
        b.record_response(502);
        let mut out = String::new();
        render_prometheus(&[a.snapshot(1), b.snapshot(2)], &mut out);
        assert!(out.contains("\ntether_requests_total 7\n"), "{out}");
        assert!(out.contains("tether_worker_requests_total{worker=\"1\"} 4\n"));
        assert!(out.contains("tether_connections_active 3\n"));
        assert!(
            out.contains("tether_responses_2xx_total 1\n")
                && out.contains("tether_responses_5xx_total 1\n")
        );
        assert!(
            out.contains("tether_resume_gap_seconds_bucket{le=\"0.005\"} 1\n"),
            "{out}"
        );
        assert!(out.contains("tether_resume_gap_seconds_count 1\n"));
        // Every sample line is "name{labels} value" or "name value".
        for line in out.lines().filter(|l| !l.starts_with('#')) {
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }
}
