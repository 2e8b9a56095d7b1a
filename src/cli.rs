//! Command-line interface: every flag, its default and its documentation live here, once.
//!
//! Defaults are the named constants of the modules that enforce them (`crate::limits`), so `--help`
//! and the code cannot disagree.

use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::duration::parse_duration;
use crate::size::parse_size;

/// `parse_size` for a value HTTP/2 carries in 32 bits (SETTINGS values).
fn parse_size_u32(text: &str) -> Result<u32, String> {
    let n = parse_size(text)?;
    u32::try_from(n).map_err(|_| format!("{text}: at most {} bytes", u32::MAX))
}

#[derive(Debug, Parser)]
#[command(
    name = "tether",
    version,
    about = "A thread-per-core HTTP/1.1 and Server-Sent Events reverse proxy on io_uring",
    long_about = None
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the reverse proxy: accept on --bind, forward to the --upstream replicas (or to the
    /// routes of a --config file).
    Reverse(Box<ReverseArgs>),
    /// Check a configuration (--config FILE, and any flag of `reverse`) and print the settings
    /// and routes it resolves to, without binding anything: exit 0 when `reverse` would start
    /// with it, 1 with the error otherwise.
    Check(Box<ReverseArgs>),
    /// Watch tether keep one SSE stream whole while its upstream keeps dropping it (an embedded
    /// flaky upstream, tether, and a client, in one process; exits 0 when nothing was lost).
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long the demo runs, in seconds.
    #[arg(long, default_value_t = 8)]
    pub seconds: u64,

    /// Events per second the demo upstream sends.
    #[arg(long, default_value_t = 40)]
    pub rate: u32,

    /// Show tether's log lines (one per drop and resume) on stderr.
    #[arg(long)]
    pub verbose: bool,
}

/// Which io driver each worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DriverChoice {
    /// io_uring when the kernel allows it, else epoll (also when ring set-up fails).
    Auto,
    /// io_uring only: fail at start-up if it cannot be set up.
    Uring,
    /// epoll only (same as MONOIO_FORCE_LEGACY_DRIVER=1).
    Epoll,
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

#[derive(Debug, Args)]
pub struct ReverseArgs {
    // ----- configuration file -----
    /// TOML file of settings and routes: every flag here is a key of the same name
    /// (sse-heartbeat = "5s", assign-ids = true, identity-header = ["X-Api-Key"]), and
    /// [[route]] tables send requests by host and path prefix to their own upstreams, with
    /// their own per-request settings. Flags given on the command line override the file.
    /// Example: examples/tether.toml; `tether check --config FILE` validates one.
    #[arg(long, value_name = "FILE", help_heading = "Configuration file")]
    pub config: Option<std::path::PathBuf>,

    // ----- listening -----
    /// Address to accept client connections on (host:port; port 0 picks a free port, logged at start).
    #[arg(
        long,
        value_name = "ADDR",
        required_unless_present = "config",
        help_heading = "Listening"
    )]
    pub bind: Option<String>,

    /// Upstream origin as http://host:port[/prefix] or https://host:port[/prefix]; repeat for
    /// replicas, tried in turn when one refuses connections. The prefix is prepended to every
    /// request path. Without --config, every request goes to these; with a file, its [[route]]
    /// tables name their own instead. https:// verifies the certificate against the host's name
    /// (sent as SNI; an IP is matched against the certificate's IP addresses) with the system's
    /// CA roots and --upstream-ca.
    #[arg(
        long = "upstream",
        value_name = "URL",
        required_unless_present = "config",
        help_heading = "Listening"
    )]
    pub upstreams: Vec<String>,

    /// Client connections each worker serves at once; past it new connections get 503 and are closed.
    #[arg(long, value_name = "N", default_value_t = crate::limits::MAX_CONNECTIONS_PER_WORKER, help_heading = "Listening")]
    pub max_connections: usize,

    /// Listen backlog of each worker's socket.
    #[arg(long, value_name = "N", default_value_t = crate::limits::LISTEN_BACKLOG, help_heading = "Listening")]
    pub backlog: i32,

    // ----- client TLS -----
    /// Serve clients over TLS with this certificate: a PEM file with the server's certificate
    /// first, then its intermediates (the full chain). Give --tls-key right after it; repeat the
    /// pair for other names (at most 64 pairs): each handshake gets the first certificate valid
    /// for the name the client asks for (SNI; *.example.com covers one label), and the first
    /// pair when it asks for none or an unknown one. TLS 1.2 and 1.3, ALPN h2 and http/1.1
    /// (HTTP/2 limits: the --h2-* flags), session tickets. Re-read on SIGHUP (new connections get the new certificate; open ones go on).
    #[arg(long = "tls-cert", value_name = "FILE", help_heading = "Client TLS")]
    pub tls_cert: Vec<std::path::PathBuf>,

    /// The private key of the --tls-cert given just before it (PEM: PKCS#8, RSA or EC).
    #[arg(long = "tls-key", value_name = "FILE", help_heading = "Client TLS")]
    pub tls_key: Vec<std::path::PathBuf>,

    // ----- HTTP/2 (TLS clients that choose h2) -----
    /// Streams an HTTP/2 client may have open at once on one connection; past it new ones are
    /// refused (RST_STREAM REFUSED_STREAM).
    #[arg(long = "h2-max-concurrent-streams", value_name = "N", default_value_t = crate::client_h2::MAX_CONCURRENT_STREAMS, help_heading = "HTTP/2")]
    pub h2_max_concurrent_streams: u32,

    /// Largest HTTP/2 request header list (names + values + 32 bytes per field, after HPACK):
    /// past it 431, and a header block that goes on past it closes the connection.
    #[arg(long = "h2-max-header-list", value_name = "BYTES", value_parser = parse_size_u32, default_value_t = crate::client_h2::MAX_HEADER_LIST_BYTES, help_heading = "HTTP/2")]
    pub h2_max_header_list: u32,

    /// Initial flow-control window of each HTTP/2 stream for request bodies, in bytes.
    #[arg(long = "h2-stream-window", value_name = "BYTES", value_parser = parse_size_u32, default_value_t = crate::client_h2::INITIAL_STREAM_WINDOW, help_heading = "HTTP/2")]
    pub h2_stream_window: u32,

    /// Initial flow-control window of each HTTP/2 connection for request bodies, in bytes.
    #[arg(long = "h2-connection-window", value_name = "BYTES", value_parser = parse_size_u32, default_value_t = crate::client_h2::INITIAL_CONNECTION_WINDOW, help_heading = "HTTP/2")]
    pub h2_connection_window: u32,

    /// Largest HTTP/2 frame payload a client may send, in bytes (16384 to 16777215).
    #[arg(long = "h2-max-frame", value_name = "BYTES", value_parser = parse_size_u32, default_value_t = crate::client_h2::MAX_FRAME_BYTES, help_heading = "HTTP/2")]
    pub h2_max_frame: u32,

    /// RST_STREAM frames an HTTP/2 client may send per connection in 10 s; one more and the
    /// connection is closed with GOAWAY (rapid reset, CVE-2023-44487).
    #[arg(long = "h2-max-resets", value_name = "N", default_value_t = crate::client_h2::MAX_RESETS_PER_WINDOW, help_heading = "HTTP/2")]
    pub h2_max_resets: u32,

    // ----- upstream TLS -----
    /// A PEM file of CA certificates that https:// upstreams may be signed by, besides the
    /// system's roots (a private CA); repeat for several files, or give a bundle.
    #[arg(
        long = "upstream-ca",
        value_name = "FILE",
        help_heading = "Upstream TLS"
    )]
    pub upstream_ca: Vec<std::path::PathBuf>,

    /// Accept any certificate from https:// upstreams, whatever its name or issuer (traffic is
    /// still encrypted, but anyone on the path can pose as the upstream). For tests and
    /// throwaway setups only; logged as a warning at start naming the upstreams it affects.
    #[arg(long, help_heading = "Upstream TLS")]
    pub upstream_insecure: bool,

    // ----- upstream health -----
    /// Eject a replica after this many failed tries in a row (connect refused, timed out or
    /// failed; closed or reset before the response head; a 5xx answer): it is skipped for
    /// --upstream-eject-for, then tried again, and ejected again at once if that try fails.
    /// Ejected replicas are still tried last, so requests are never refused because of it.
    /// Each worker learns on its own. 0 turns ejection off.
    #[arg(long, value_name = "N", default_value_t = crate::upstream::health::DEFAULT_EJECT_AFTER, help_heading = "Upstream health")]
    pub upstream_eject_after: u32,

    /// How long an ejected replica is skipped (0 also turns ejection off).
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "10s", help_heading = "Upstream health")]
    pub upstream_eject_for: Duration,

    // ----- per-core tuning -----
    /// Worker threads, one runtime and one listener each (default: one per online CPU).
    #[arg(long, value_name = "N", help_heading = "Per-core tuning")]
    pub workers: Option<usize>,

    /// CPUs to pin workers to, e.g. "0,2-3" (worker i gets the i-th CPU of the list, cycling).
    #[arg(
        long,
        value_name = "LIST",
        conflicts_with = "no_pin",
        help_heading = "Per-core tuning"
    )]
    pub cpus: Option<String>,

    /// Do not pin workers to CPUs.
    #[arg(long, help_heading = "Per-core tuning")]
    pub no_pin: bool,

    /// io_uring submission queue entries per worker (power of two, at most 32768).
    #[arg(long, value_name = "N", default_value_t = crate::limits::URING_ENTRIES, help_heading = "Per-core tuning")]
    pub uring_entries: u32,

    /// IO driver: auto (io_uring, falling back to epoll), uring, or epoll.
    #[arg(long, value_enum, default_value_t = DriverChoice::Auto, help_heading = "Per-core tuning")]
    pub driver: DriverChoice,

    /// Stream work a worker does before it lets its IO loop take in new completions (new
    /// connections, upstream answers, timers): under flat-out load a new client waits about
    /// this long per step instead of a turn of every busy stream. At least one stream turn runs
    /// per slice, so 0 means one turn per loop tick (slow; for tests).
    #[arg(long, value_name = "DURATION", value_parser = crate::duration::parse_duration, default_value = "2ms", help_heading = "Per-core tuning")]
    pub turn_slice: Duration,

    /// Idle pooled upstream connections kept per worker and replica.
    #[arg(long, value_name = "N", default_value_t = crate::limits::UPSTREAM_POOL_SIZE, help_heading = "Per-core tuning")]
    pub upstream_pool_size: usize,

    // ----- timeouts -----
    /// Time allowed to open a TCP connection to an upstream before trying the next replica (for
    /// an https:// upstream, its TLS handshake gets the same time again).
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "2s", help_heading = "Timeouts")]
    pub connect_timeout: Duration,

    /// Time a client has to send a complete request head (408 when exceeded).
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "10s", help_heading = "Timeouts")]
    pub header_timeout: Duration,

    /// Time an upstream has to answer with a response head once the request is sent (504 when exceeded).
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "60s", help_heading = "Timeouts")]
    pub upstream_header_timeout: Duration,

    /// How long an idle keep-alive client connection is kept between requests.
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "60s", help_heading = "Timeouts")]
    pub idle_timeout: Duration,

    /// How long an upgraded connection (a WebSocket, after its 101) may carry no byte either
    /// way before both sides are closed. Its own flag because WebSocket applications keep
    /// connections open for hours with pings every 20-60s, far beyond an idle keep-alive.
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "5m", help_heading = "Timeouts")]
    pub tunnel_idle_timeout: Duration,

    /// Longest wait for the next bytes of a request body from the client, or of a (non-SSE) response
    /// body from the upstream; past it both connections are closed.
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "60s", help_heading = "Timeouts")]
    pub body_timeout: Duration,

    /// Longest a single write to a client or upstream may make no progress before both are closed.
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "60s", help_heading = "Timeouts")]
    pub send_timeout: Duration,

    /// How long an idle pooled upstream connection may be reused (keep it below the upstream's own
    /// keep-alive timeout; Node.js closes at 5s).
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "4s", help_heading = "Timeouts")]
    pub upstream_pool_idle: Duration,

    /// How often upstream host names are resolved again (off the workers, on a resolver thread).
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "30s", help_heading = "Timeouts")]
    pub resolve_interval: Duration,

    /// On SIGTERM/SIGINT: stop accepting at once, let in-flight requests finish within this time,
    /// then close what remains (open streams included) and exit 0. A second signal closes at once.
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "10s", help_heading = "Timeouts")]
    pub shutdown_grace: Duration,

    // ----- HTTP limits -----
    /// Largest request or response head in bytes (431 for requests, 502 for responses, when exceeded).
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value_t = crate::http::MAX_HEAD_BYTES, help_heading = "HTTP limits")]
    pub max_head_bytes: usize,

    /// Most header fields in one head (431 when exceeded).
    #[arg(long, value_name = "N", default_value_t = crate::http::MAX_HEADERS, help_heading = "HTTP limits")]
    pub max_headers: usize,

    /// Longest request target in bytes (414 when exceeded).
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value_t = crate::http::MAX_TARGET_BYTES, help_heading = "HTTP limits")]
    pub max_target_bytes: usize,

    // ----- SSE -----
    /// Largest upstream SSE event (block) in bytes; a larger one ends the stream (logged).
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value_t = crate::sse::DEFAULT_MAX_EVENT_BYTES, help_heading = "SSE")]
    pub sse_max_event_bytes: usize,

    /// Memory the unfinished upstream events of all SSE streams may hold together (an event is
    /// forwarded once complete), shared out equally across workers. A stream whose open event
    /// would go past its worker's share is ended cleanly after its last whole event.
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value_t = crate::sse::partial::DEFAULT_PARTIAL_MEMORY, help_heading = "SSE")]
    pub sse_partial_memory: usize,

    /// Send a ": keep-alive" comment to an SSE client after this much silence (0 = off), so
    /// intermediaries keep the stream and a dead client is noticed.
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "15s", help_heading = "SSE")]
    pub sse_heartbeat: Duration,

    /// Bytes queued for one client of a shared SSE stream before that client is disconnected as
    /// too slow, so the stream's other clients never wait for it (shared streams come with
    /// coalescing). A stream with one client is paced by it instead: tether stops reading the
    /// upstream while 32 KiB wait for the client, and cuts it only after --send-timeout without
    /// progress. A replay from the ring is fed at the client's pace and never counts.
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value_t = crate::sse::relay::DEFAULT_CLIENT_BUFFER, help_heading = "SSE")]
    pub sse_client_buffer: usize,

    /// Give every SSE event that has no id one of tether's own, so clients can resume from the
    /// replay ring even when the upstream sends no ids.
    #[arg(long, help_heading = "SSE")]
    pub assign_ids: bool,

    /// Let GET SSE requests of the same target and identity that arrive on one worker share one
    /// upstream connection: events are read, framed and recorded once, and every client is a
    /// cursor into the stream's ring, written the same bytes. A client that joins late starts
    /// at the live head (or after its Last-Event-ID, from the ring). POSTs, requests with a body,
    /// requests that rules or MCP sessions apply to, and different identities never share.
    #[arg(long, help_heading = "SSE")]
    pub coalesce: bool,

    /// With --coalesce: write to each client that joined a shared stream at most once per D
    /// (0 = every event as soon as it is read). The events of D leave together in one write:
    /// less CPU per delivered event for many clients, up to D more latency. The client whose
    /// request opened the stream is written at once.
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "0s", help_heading = "SSE")]
    pub coalesce_flush: Duration,

    /// When the last client of an SSE stream leaves before the upstream has ended, keep reading
    /// that upstream into the stream's ring for this long (0 = off), so that a client coming
    /// back with Last-Event-ID (a GET to the same target and identity) gets every event it
    /// missed and then the live rest. A POST is never re-sent: the held upstream goes on.
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "0s", help_heading = "SSE")]
    pub hold_upstream: Duration,

    /// Streams held without a client at once, per worker (--hold-upstream); past it a stream
    /// whose last client leaves is closed as without holding.
    #[arg(long, value_name = "N", default_value_t = crate::sse::fanout::DEFAULT_HOLD_MAX_STREAMS, help_heading = "SSE")]
    pub hold_max_streams: usize,

    // ----- MCP -----
    /// Requests are MCP Streamable HTTP: the upstream's Mcp-Session-Id reaches the client sealed
    /// in tether's own id (AES-256-GCM, bound to the client's identity headers), and every later
    /// request of the session goes to the replica that made it, with the upstream's id. An id
    /// that does not open, or names a replica that is gone, gets 404 (the client initializes
    /// again). Per route in a configuration file (`mcp = true`).
    #[arg(long, help_heading = "MCP")]
    pub mcp: bool,

    /// The key(s) that seal MCP session ids: 64 hex characters per line (32 bytes), the first
    /// seals and opens, later ones only open (rotation: put the new key first, keep the old one
    /// while its sessions last). tether instances sharing the file accept each other's ids.
    /// Without it a random key is made at start, and ids die with the process. Mode 0600.
    #[arg(long, value_name = "FILE", help_heading = "MCP")]
    pub session_key_file: Option<std::path::PathBuf>,

    // ----- rules -----
    /// The largest request body, or JSON response body, read whole so that rules can look into
    /// it (MCP keys, data-contains, data-regex); larger ones pass uninspected (a rule can refuse
    /// them: body-over-inspect-limit = true). At most 64MiB.
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value_t = crate::rules::spec::DEFAULT_MAX_INSPECT_BYTES, help_heading = "Rules")]
    pub max_inspect_bytes: usize,

    // ----- replay -----
    /// Events kept per ring (one ring per upstream lineage) for clients reconnecting with
    /// Last-Event-ID.
    #[arg(long, value_name = "N", default_value_t = crate::sse::ring::DEFAULT_REPLAY_EVENTS, help_heading = "Replay")]
    pub replay_events: usize,

    /// Event bytes kept per ring for replay (plain bytes, or KiB/MiB/GiB).
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value_t = crate::sse::ring::DEFAULT_REPLAY_BYTES, help_heading = "Replay")]
    pub replay_bytes: usize,

    /// Memory all replay rings of the process may hold together, overhead included, shared out
    /// equally across workers. Past it, rings without a client go first (least recently used),
    /// then the oldest events of the largest rings. A client whose position was evicted and
    /// reconnects goes upstream with its Last-Event-ID.
    #[arg(long, value_name = "BYTES", value_parser = parse_size, default_value_t = crate::sse::table::DEFAULT_REPLAY_MEMORY, help_heading = "Replay")]
    pub replay_memory: usize,

    /// A request header that, with Authorization, Cookie and Mcp-Session-Id, makes up the
    /// client's identity (repeatable; e.g. X-Api-Key or a tenant header). A reconnection is only
    /// ever served from rings recorded for the same identity and request target.
    #[arg(long = "identity-header", value_name = "NAME", help_heading = "Replay")]
    pub identity_headers: Vec<String>,

    /// How long a replay ring outlives the stream that wrote it.
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "5m", help_heading = "Replay")]
    pub replay_ttl: Duration,

    /// Share replay across tether instances: every recorded event is also written (behind, never
    /// waited for) to a Redis stream per stream, keyed by a SHA-256 of the stream's scope (never
    /// credentials), keeping --replay-events events for --replay-ttl. A reconnection whose
    /// Last-Event-ID is in no ring of this process is then looked up there; a stream another
    /// instance still reads (held, or serving another client) is followed live through Redis
    /// instead of being opened upstream again. Redis down or slow: streams go on with local rings
    /// only, writes are dropped and counted. Off by default.
    #[arg(long, value_name = "redis://HOST:PORT[/DB]", help_heading = "Replay")]
    pub replay_store: Option<String>,

    // ----- resume -----
    /// An SSE upstream that sends no byte for this long counts as dropped (0 = off). Heartbeat
    /// comments from the upstream count as bytes.
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "0", help_heading = "Resume")]
    pub upstream_idle_timeout: Duration,

    /// Pass a clean end of an SSE upstream body to the client (by default it is treated like a
    /// drop and resumed, which is what a browser's EventSource would do).
    #[arg(long, help_heading = "Resume")]
    pub pass_clean_end: bool,

    /// Base of the backoff between reconnect attempts that bring no new event. The first
    /// reconnect after a drop goes at once, or after the upstream's retry: value when it sent one
    /// (which also becomes the base).
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "100ms", help_heading = "Resume")]
    pub reconnect_initial: Duration,

    /// Longest delay between reconnect attempts (exponential backoff with jitter up to this).
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "5s", help_heading = "Resume")]
    pub reconnect_max_delay: Duration,

    /// End the client's stream (cleanly, so its own reconnection reaches the replay ring) after
    /// reconnecting for this long without a new event.
    #[arg(long, value_name = "D", value_parser = parse_duration, default_value = "30s", help_heading = "Resume")]
    pub reconnect_timeout: Duration,

    /// Resume a stream that began as a POST with a GET carrying Last-Event-ID (what MCP
    /// 2025-11-25 specifies). Without it such a drop ends the client's response; a POST is never
    /// re-sent.
    #[arg(long, help_heading = "Resume")]
    pub resume_post_as_get: bool,

    /// Reconnect streams whose events carry no id (the client gets a fresh stream, not an exact
    /// continuation). By default their drop ends the client's response.
    #[arg(long, help_heading = "Resume")]
    pub resume_without_id: bool,

    // ----- admin -----
    /// Serve /metrics (Prometheus), /healthz and /streams on this address (off by default; bind it
    /// to loopback or a private interface).
    #[arg(long, value_name = "ADDR", help_heading = "Admin")]
    pub admin: Option<String>,

    // ----- logging -----
    /// Log level (RUST_LOG is read when this flag is absent).
    #[arg(long, value_enum, help_heading = "Logging")]
    pub log_level: Option<LogLevel>,

    /// Log line format on stderr: human-readable text, or one JSON object per line.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, help_heading = "Logging")]
    pub log_format: LogFormat,

    /// Write one JSON line per request (and per SSE stream or tunnel, when it ends) to "stdout"
    /// or to FILE (appended; reopened on SIGHUP for log rotation). Off by default. Lines are
    /// buffered per worker and written at least every 200ms.
    #[arg(long, value_name = "stdout|FILE", help_heading = "Logging")]
    pub access_log: Option<String>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// `tether reverse --bind 127.0.0.1:0 --upstream http://127.0.0.1:1` plus `extra`, parsed: the
/// arguments unit tests build a `Config` or route settings from.
#[cfg(test)]
pub(crate) fn test_args(extra: &[&str]) -> ReverseArgs {
    use clap::Parser;
    let mut argv = vec![
        "tether",
        "reverse",
        "--bind",
        "127.0.0.1:0",
        "--upstream",
        "http://127.0.0.1:1",
    ];
    argv.extend_from_slice(extra);
    match Cli::try_parse_from(argv).unwrap().command {
        Command::Reverse(args) => *args,
        _ => unreachable!(),
    }
}
