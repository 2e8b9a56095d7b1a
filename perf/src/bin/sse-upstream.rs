//! `sse-upstream`: the HTTP/1.1 + SSE upstream simulator as a process.
//!
//! Prints exactly one line, `listening on ADDR`, to stdout once it accepts connections (or,
//! with `--refuse-for`, once it holds the port), then serves until killed (SIGTERM, SIGINT).
//! Endpoints and query parameters: perf/README.md.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tether_perf::upstream::{spawn, UpstreamConfig};

/// HTTP/1.1 + SSE upstream simulator with fault injection (see perf/README.md).
#[derive(Parser, Debug)]
#[command(name = "sse-upstream", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port (printed at start).
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: SocketAddr,
    /// Worker threads (one monoio runtime each, sharing the listening socket).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Append one JSON line per request to FILE:
    /// {"method":"GET","path":"/sse?..","last_event_id":"7","conn":3}
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Refuse connections (ECONNREFUSED: port bound but not listening) for this long after
    /// start, e.g. 2s, 500ms, 0.
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_duration)]
    refuse_for: Duration,
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
    let valid = !num.is_empty()
        && num.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && num.bytes().filter(|&b| b == b'.').count() <= 1
        && !num.starts_with('.')
        && !num.ends_with('.');
    let bad = || format!("{s:?}: expected a duration like 2s, 500ms or 0");
    if !valid {
        return Err(bad());
    }
    let value: f64 = num.parse().map_err(|_| bad())?;
    Duration::try_from_secs_f64(value * scale).map_err(|_| bad())
}

fn main() {
    let args = Args::parse();
    let config = UpstreamConfig {
        bind: args.bind,
        threads: args.threads,
        log_path: args.log,
        refuse_for: args.refuse_for,
        // Nobody can read the in-memory log of a process: do not grow it.
        keep_requests: false,
    };
    let handle = match spawn(config) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("sse-upstream: cannot start on {}: {e}", args.bind);
            std::process::exit(1);
        }
    };
    eprintln!(
        "sse-upstream: {} thread(s), {} driver",
        args.threads.max(1),
        handle.driver()
    );
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening on {}", handle.addr());
    let _ = out.flush();
    drop(out);
    // Serve until killed.
    loop {
        std::thread::park();
    }
}
