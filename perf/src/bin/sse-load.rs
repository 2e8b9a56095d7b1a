//! `sse-load`: the SSE load generator as a process (see perf/LOAD.md).
//!
//! Prints a progress line per second on stderr, the table on stdout, and with `--json FILE`
//! every figure as one JSON object. Exit status: 0 when it ran; 1 when it could not start,
//! could not establish every stream, or (`--expect-exact`) saw a gap or a duplicate;
//! 2 for a usage error.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tether_perf::load::{self, LoadConfig, Trust};

/// SSE load generator: C concurrent streams, every event counted (ids in order, gaps,
/// duplicates), per-event latency from the origin's ts_us, reconnections, proxy CPU and RSS.
/// At most ~19900 streams per process (20000 fds; see perf/LOAD.md).
#[derive(Parser, Debug)]
#[command(name = "sse-load", version)]
struct Args {
    /// SSE endpoint, http://host:port/path?query or https://... (e.g. the simulator's
    /// /sse?events=0&rate=10). `{i}` in the path or query becomes the stream's index
    /// (0, 1, ...): every stream gets its own URL. https: TLS 1.2/1.3 (rustls), SNI from the
    /// host, ALPN http/1.1, session resumption; needs --ca or --insecure.
    #[arg(long)]
    url: String,
    /// https: trust only the CA certificate(s) of this PEM file (a self-signed server
    /// certificate is its own CA).
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    ca: Option<PathBuf>,
    /// https: accept any server certificate (the handshake's signatures are still checked).
    #[arg(long)]
    insecure: bool,
    /// Concurrent streams (C). One fd each; C + 64 must fit the open-files limit.
    #[arg(long, default_value_t = 1)]
    streams: usize,
    /// Length of the measured window (e.g. 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured time between "all streams open" and the window.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Streams per source address.
    #[arg(long, default_value_t = load::DEFAULT_CONNECTIONS_PER_SOURCE)]
    connections_per_source: usize,
    /// Source addresses to bind before connecting, comma-separated (default: the kernel
    /// picks; 127.0.0.1, 127.0.0.2, ... for a loopback target when C exceeds
    /// --connections-per-source).
    #[arg(long, value_delimiter = ',')]
    sources: Vec<IpAddr>,
    /// Load threads (streams dealt round-robin; one epoll loop each).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Reopen ended or broken streams like EventSource, with Last-Event-ID, after the
    /// stream's retry: (capped at 100 ms) or at once.
    #[arg(long)]
    reconnect: bool,
    /// Idle-memory mode: sample the proxy's VmRSS before opening and after all streams are
    /// open and settled; report RSS per stream. Needs --proxy-pid and a quiet URL
    /// (simulator: /sse?stall_after=0).
    #[arg(long)]
    idle: bool,
    /// With --idle: wait this long after the last stream opened before sampling RSS.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    settle: Duration,
    /// Proxy process(es) to sample (comma-separated pids, figures summed): CPU over the
    /// window, and with --idle its RSS.
    #[arg(long, value_delimiter = ',')]
    proxy_pid: Vec<u32>,
    /// Write every figure as one JSON object to FILE.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Name of this run in the table and the JSON (e.g. the proxy under test).
    #[arg(long, default_value = "")]
    label: String,
    /// Longest connect() per attempt; past it the attempt counts as an error.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    connect_timeout: Duration,
    /// Longest wait from request to complete response head; past it, an error.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    head_timeout: Duration,
    /// Every stream must be established within this, else exit 1.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    open_timeout: Duration,
    /// First opens in flight at once, over all threads (ramp-up below the listen backlog).
    #[arg(long, default_value_t = load::DEFAULT_MAX_OPENING)]
    max_opening: usize,
    /// Exit 1 if any gap or duplicate was seen.
    #[arg(long)]
    expect_exact: bool,
    /// No progress lines.
    #[arg(long)]
    quiet: bool,
    /// Time to first event: N new clients connect one after another from the start of the
    /// window, each timed from its connect to its first complete event, then closed (RST).
    /// The load keeps running until they are done.
    #[arg(long, default_value_t = 0, value_name = "N")]
    ttfe: usize,
    /// The probes' URL (`{i}`: the probe's index); default: --url. It should send a first
    /// event at once (simulator: /sse?events=0&rate=1).
    #[arg(long, value_name = "URL")]
    ttfe_url: Option<String>,
    /// Longest wait of one probe, connect to first event; past it the probe fails.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    ttfe_timeout: Duration,
    /// Every stream leaves on its own after a stay drawn from half to one and a half times
    /// this (closing with RST or FIN, a coin toss) and comes back with Last-Event-ID after
    /// up to --leave-pause. 0: never. Needs --reconnect.
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    leave_every: Duration,
    /// Longest pause before a stream that left comes back (drawn from 0 to it).
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    leave_pause: Duration,
    /// Count the streams whose open body went silent (no event, no comment) longer than
    /// this, e.g. a proxy's heartbeat period plus slack.
    #[arg(long, value_parser = parse_duration)]
    max_quiet: Option<Duration>,
    /// Count the streams still open at the end whose last event is older than this.
    #[arg(long, value_parser = parse_duration)]
    stuck_after: Option<Duration>,
    /// The streams join a live stream: each one's first event may have any id (not only 1);
    /// from there every id must arrive once, in order (a proxy that shares one upstream
    /// stream among its clients starts a newcomer at the live head).
    #[arg(long)]
    join_live: bool,
    /// HTTP/2: carry this many concurrent streams on each connection (ceil(C / M)
    /// connections) instead of one HTTP/1.1 connection per stream. Needs https (ALPN h2,
    /// checked: a server that does not choose h2 fails the run). Not with --reconnect,
    /// --leave-every, --ttfe or --threads above 1. 0: HTTP/1.1.
    #[arg(long, default_value_t = 0, value_name = "M")]
    h2_streams_per_conn: usize,
}

/// `2s`, `500ms`, `1.5s`, `0`: ASCII digits with an optional fraction and a unit (ms or s;
/// a bare number is seconds).
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        (s, 1.0)
    };
    let bad = || format!("{s:?}: expected a duration like 10s, 500ms or 0");
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || (num.contains('.') && frac.is_empty()) {
        return Err(bad());
    }
    let value: f64 = num.parse().map_err(|_| bad())?;
    Duration::try_from_secs_f64(value * scale).map_err(|_| bad())
}

/// The library configuration the flags describe.
fn config_of(args: &Args) -> LoadConfig {
    let trust = match (&args.ca, args.insecure) {
        (Some(path), _) => Some(Trust::Ca(path.clone())),
        (None, true) => Some(Trust::Insecure),
        (None, false) => None,
    };
    LoadConfig {
        url: args.url.clone(),
        trust,
        streams: args.streams,
        duration: args.duration,
        warmup: args.warmup,
        connections_per_source: args.connections_per_source,
        sources: args.sources.clone(),
        threads: args.threads,
        reconnect: args.reconnect,
        idle: args.idle,
        settle: args.settle,
        proxy_pids: args.proxy_pid.clone(),
        label: args.label.clone(),
        connect_timeout: args.connect_timeout,
        head_timeout: args.head_timeout,
        open_timeout: args.open_timeout,
        max_opening: args.max_opening,
        progress: !args.quiet,
        ttfe: args.ttfe,
        ttfe_url: args.ttfe_url.clone(),
        ttfe_timeout: args.ttfe_timeout,
        leave_every: args.leave_every,
        leave_pause: args.leave_pause,
        max_quiet: args.max_quiet,
        stuck_after: args.stuck_after,
        join_live: args.join_live,
        h2_streams_per_conn: args.h2_streams_per_conn,
    }
}

fn main() {
    let args = Args::parse();
    let config = config_of(&args);
    let report = match load::run(&config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sse-load: {e}");
            std::process::exit(1);
        }
    };
    print!("{}", report.table());
    if let Some(path) = &args.json {
        if let Err(e) = std::fs::write(path, report.json() + "\n") {
            eprintln!("sse-load: cannot write {}: {e}", path.display());
            std::process::exit(1);
        }
    }
    if let Some(why) = &report.open_failure {
        eprintln!("sse-load: could not open the streams: {why}");
        std::process::exit(1);
    }
    if args.expect_exact && (report.gaps > 0 || report.duplicates > 0) {
        eprintln!(
            "sse-load: --expect-exact: {} gaps, {} duplicates",
            report.gaps, report.duplicates
        );
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_defaults_are_the_library_defaults() {
        let args = Args::parse_from(["sse-load", "--url", "http://127.0.0.1:1/sse"]);
        let from_flags = config_of(&args);
        let lib = LoadConfig::default();
        assert_eq!(from_flags.streams, lib.streams);
        assert_eq!(from_flags.duration, lib.duration);
        assert_eq!(from_flags.warmup, lib.warmup);
        assert_eq!(
            from_flags.connections_per_source,
            lib.connections_per_source
        );
        assert_eq!(from_flags.threads, lib.threads);
        assert_eq!(from_flags.settle, lib.settle);
        assert_eq!(from_flags.connect_timeout, lib.connect_timeout);
        assert_eq!(from_flags.head_timeout, lib.head_timeout);
        assert_eq!(from_flags.open_timeout, lib.open_timeout);
        assert_eq!(from_flags.max_opening, lib.max_opening);
        assert_eq!(from_flags.ttfe, lib.ttfe);
        assert_eq!(from_flags.ttfe_url, lib.ttfe_url);
        assert_eq!(from_flags.ttfe_timeout, lib.ttfe_timeout);
        assert_eq!(from_flags.leave_every, lib.leave_every);
        assert_eq!(from_flags.leave_pause, lib.leave_pause);
        assert_eq!(from_flags.max_quiet, lib.max_quiet);
        assert_eq!(from_flags.stuck_after, lib.stuck_after);
        assert_eq!(from_flags.join_live, lib.join_live);
        assert_eq!(from_flags.h2_streams_per_conn, lib.h2_streams_per_conn);
        assert!(!from_flags.reconnect && !from_flags.idle && from_flags.progress);
        assert_eq!(from_flags.trust, lib.trust);
        let args = Args::parse_from([
            "sse-load",
            "--url",
            "http://h/",
            "--sources",
            "127.0.0.2,127.0.0.3",
            "--proxy-pid",
            "10,11",
            "--quiet",
            "--ttfe",
            "50",
            "--ttfe-url",
            "http://h/sse?p={i}",
            "--ttfe-timeout",
            "3s",
            "--join-live",
        ]);
        let c = config_of(&args);
        assert_eq!(c.ttfe, 50);
        assert_eq!(c.ttfe_url.as_deref(), Some("http://h/sse?p={i}"));
        assert_eq!(c.ttfe_timeout, Duration::from_secs(3));
        assert_eq!(c.sources.len(), 2);
        assert_eq!(c.proxy_pids, vec![10, 11]);
        assert!(!c.progress);
        assert!(c.join_live);
        let args = Args::parse_from(["sse-load", "--url", "https://h/", "--ca", "ca.pem"]);
        assert_eq!(config_of(&args).trust, Some(Trust::Ca("ca.pem".into())));
        let args = Args::parse_from(["sse-load", "--url", "https://h/", "--insecure"]);
        assert_eq!(config_of(&args).trust, Some(Trust::Insecure));
        assert!(
            Args::try_parse_from(["sse-load", "--url", "u", "--ca", "f", "--insecure"]).is_err()
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        for bad in ["", "s", "-1s", "1.s", ".5s", "1e3", "+1s", "1m", "1..2s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
