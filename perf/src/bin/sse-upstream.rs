//! `sse-upstream`: the HTTP/1.1 + SSE upstream simulator as a process.
//!
//! Prints exactly one line, `listening on ADDR`, to stdout once it accepts connections (or,
//! with `--refuse-for`, once it holds the port), then serves until killed. SIGTERM or SIGINT:
//! one more line, `stats {...}` (connections and injected faults, as JSON), then the process
//! exits at once, its connections cut where they are, as any death cuts them. SIGUSR1: refuse
//! connections for `--refuse-window` (the listener pauses; open connections carry on).
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
    /// How long each SIGUSR1 makes the listener refuse connections, e.g. 1s, 300ms.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    refuse_window: Duration,
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

/// The signals the main thread waits for; blocked before the workers start, so every thread
/// inherits the mask and only `sigwait` here receives them.
fn handled_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGUSR1] {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

fn main() {
    let args = Args::parse();
    let signals = handled_signals();
    // SAFETY: blocks the set for this thread (and the threads it starts); `signals` is valid.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &signals, std::ptr::null_mut());
    }
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
    // Serve until killed; SIGUSR1 pauses the listener for a while.
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: waits for one of the blocked signals; both pointers are valid.
        if unsafe { libc::sigwait(&signals, &mut sig) } != 0 {
            continue;
        }
        if sig == libc::SIGUSR1 {
            if let Err(e) = handle.pause_listening() {
                eprintln!("sse-upstream: cannot pause the listener: {e}");
                continue;
            }
            std::thread::sleep(args.refuse_window);
            if let Err(e) = handle.resume_listening() {
                eprintln!("sse-upstream: cannot listen again: {e}");
            }
            continue;
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "stats {}", handle.stats().json());
        let _ = out.flush();
        // Die at once, like a killed process: the kernel closes every socket where it is.
        // SAFETY: _exit ends the process without running destructors, which is the point.
        unsafe { libc::_exit(0) };
    }
}
