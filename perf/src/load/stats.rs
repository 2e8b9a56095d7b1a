//! What one load thread counts, merged into the report at the end.

use super::hist::Histogram;

/// Why a connection attempt or a response failed (each one counts in `errors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// socket/bind/connect failed, or the connection was refused.
    Connect,
    /// No connection within the connect timeout.
    ConnectTimeout,
    /// No complete response head within the head timeout.
    HeadTimeout,
    /// The response was not a 200 `text/event-stream` (EventSource gives up on it).
    Status,
    /// Malformed head, chunked framing or SSE line, or an id that disagrees with `seq`.
    Protocol,
    /// The connection broke before its response head was complete.
    Io,
}

impl ErrorKind {
    /// Every kind, in report order.
    pub const ALL: [ErrorKind; 6] = [
        ErrorKind::Connect,
        ErrorKind::ConnectTimeout,
        ErrorKind::HeadTimeout,
        ErrorKind::Status,
        ErrorKind::Protocol,
        ErrorKind::Io,
    ];

    /// The name used in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::ConnectTimeout => "connect_timeout",
            ErrorKind::HeadTimeout => "head_timeout",
            ErrorKind::Status => "status",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Io => "io",
        }
    }
}

/// Counts of every [`ErrorKind`], and the first message seen for each.
#[derive(Debug, Clone, Default)]
pub struct Errors {
    /// Count per kind, indexed like [`ErrorKind::ALL`].
    pub counts: [u64; 6],
    /// The first error message of each kind (for the report: what went wrong, not just how often).
    pub first: [Option<String>; 6],
}

impl Errors {
    /// Counts one error; keeps its message if it is the first of its kind.
    pub fn add(&mut self, kind: ErrorKind, message: impl FnOnce() -> String) {
        let i = kind as usize;
        self.counts[i] += 1;
        if self.first[i].is_none() {
            self.first[i] = Some(message());
        }
    }

    /// All errors.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Adds `other`'s counts; keeps our first messages where we have them.
    pub fn merge(&mut self, other: &Errors) {
        for i in 0..self.counts.len() {
            self.counts[i] += other.counts[i];
            if self.first[i].is_none() {
                self.first[i].clone_from(&other.first[i]);
            }
        }
    }
}

/// Everything one thread counts.
///
/// Window rule: `events`, `bytes`, `wire_bytes`, `latency`, `reconnects` and
/// `reconnect_gap` count only inside the measured window (after the warm-up); gaps,
/// duplicates, errors and ended streams count over the whole run, since a lost event is
/// lost whenever it happens.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Events received in the measured window.
    pub events: u64,
    /// Events received over the whole run.
    pub events_total: u64,
    /// Events in the window without a `ts_us` (no latency for them).
    pub untimed: u64,
    /// SSE body bytes (after de-chunking) in the window.
    pub bytes: u64,
    /// Bytes read from the sockets in the window (heads and chunk framing included).
    pub wire_bytes: u64,
    /// Skipped ids, whole run.
    pub gaps: u64,
    /// Repeated or backward ids, whole run.
    pub duplicates: u64,
    /// Connections dropped (response ended or broke) and reopened, in the window.
    pub reconnects: u64,
    /// Streams that ended for good (without `--reconnect`: every end; with it: refusals).
    pub ended: u64,
    /// Connection attempts (first opens and reconnections), whole run.
    pub connects: u64,
    /// Failures, whole run.
    pub errors: Errors,
    /// Receive time minus `ts_us`, microseconds, window.
    pub latency: Histogram,
    /// Last event before a drop to first event after it, microseconds, window.
    pub reconnect_gap: Histogram,
    /// Latency since the last progress report (any phase); handed over and cleared then,
    /// never merged into the report.
    pub interval: Histogram,
    /// Comment lines received (a proxy's heartbeats), whole run.
    pub comments: u64,
    /// Connections closed on purpose by `--leave-every` (and reopened), whole run.
    pub leaves: u64,
    /// TLS handshakes completed (`https://`), whole run.
    pub tls_handshakes: u64,
    /// Of those, resumed ones (a session ticket or id from an earlier connection).
    pub tls_resumed: u64,
    /// Per stream, the longest time its open response body stayed silent (no event, no
    /// comment), microseconds; one value per stream that was ever established, recorded
    /// when the run ends.
    pub quiet: Histogram,
    /// Streams whose longest silence exceeded `--max-quiet` (whole run).
    pub quiet_over: u64,
    /// Silences past `--max-quiet`: (stream index, seconds since the run started when the
    /// silence ended, its length in microseconds); at most a few per stream.
    pub long_silences: Vec<(usize, f64, u64)>,
    /// Streams still open at the end whose last event was longer ago than `--stuck-after`.
    pub stuck: u64,
    /// The fewest events any one stream received over the whole run (None: no stream).
    pub stream_events_min: Option<u64>,
    /// Streams that lost at least one event (skipped an id), whole run.
    pub streams_with_gaps: u64,
    /// Streams that received at least one event twice (or went back), whole run.
    pub streams_with_duplicates: u64,
    /// The most ids one stream skipped.
    pub stream_gaps_max: u64,
    /// The most repeated ids of one stream.
    pub stream_duplicates_max: u64,
    /// The lowest and the highest first id over the streams (where each joined the stream;
    /// None: no stream received an event with an id).
    pub first_id_range: Option<(u64, u64)>,
}

impl Stats {
    /// Adds everything `other` counted.
    pub fn merge(&mut self, other: &Stats) {
        self.events += other.events;
        self.events_total += other.events_total;
        self.untimed += other.untimed;
        self.bytes += other.bytes;
        self.wire_bytes += other.wire_bytes;
        self.gaps += other.gaps;
        self.duplicates += other.duplicates;
        self.reconnects += other.reconnects;
        self.ended += other.ended;
        self.connects += other.connects;
        self.errors.merge(&other.errors);
        self.latency.merge(&other.latency);
        self.reconnect_gap.merge(&other.reconnect_gap);
        self.comments += other.comments;
        self.leaves += other.leaves;
        self.tls_handshakes += other.tls_handshakes;
        self.tls_resumed += other.tls_resumed;
        self.quiet.merge(&other.quiet);
        self.quiet_over += other.quiet_over;
        self.long_silences.extend_from_slice(&other.long_silences);
        self.stuck += other.stuck;
        self.stream_events_min = match (self.stream_events_min, other.stream_events_min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.streams_with_gaps += other.streams_with_gaps;
        self.streams_with_duplicates += other.streams_with_duplicates;
        self.stream_gaps_max = self.stream_gaps_max.max(other.stream_gaps_max);
        self.stream_duplicates_max = self.stream_duplicates_max.max(other.stream_duplicates_max);
        if let Some((lo, hi)) = other.first_id_range {
            self.add_first_id(lo);
            self.add_first_id(hi);
        }
    }

    /// Counts one stream's first id into [`Stats::first_id_range`].
    pub fn add_first_id(&mut self, id: u64) {
        self.first_id_range = Some(match self.first_id_range {
            Some((lo, hi)) => (lo.min(id), hi.max(id)),
            None => (id, id),
        });
    }
}
