//! `sse-tokio`: the second SSE origin of the benchmark, of a different kind from
//! `sse-upstream` (issue 17).
//!
//! `sse-upstream` is a monoio io_uring server that, flat out with `batch=1`, writes one event
//! per stream and yields, so a proxy in front of it reads about one event per read. Real SSE
//! servers mostly are tokio (or Node, or Go) programs on epoll that write every event that is
//! ready as soon as it is produced, several back to back on one stream. This one is written
//! that way: a tokio runtime (current-thread for `--threads 1`, multi-thread otherwise), a task
//! per connection, and per stream turns that write every due event, each with its own
//! `write()` (`batch=1`) or all in one (default). Same wire format, same query parameters as
//! `sse-upstream` where the bench uses them (perf/README.md, "sse-tokio").
//!
//! Prints exactly one line, `listening on ADDR`, to stdout once it accepts connections, a
//! runtime line to stderr, and serves until killed (SIGTERM/SIGINT end it at once, its
//! connections cut where they are).
//!
//! Files: `params.rs` (query parameters), `conn.rs` (the keep-alive request loop, `/small`),
//! `stream.rs` (one SSE response). What does not depend on the runtime, the parameter parser,
//! the event schedule (resume point, pacing, faults' places) and the wire format, is the
//! simulator's own code (`tether_perf::upstream::{query, schedule, sse}`), so the two origins
//! cannot drift apart.

mod conn;
mod params;
mod stream;

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use tokio::net::TcpSocket;

/// Listen backlog: the bench opens up to 256 streams at a time (sse-load --max-opening).
const LISTEN_BACKLOG: u32 = 4096;

/// How long the accept loop pauses after a failed accept (EMFILE and the like) before it
/// tries again.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);

/// SSE origin on tokio (epoll), writing every ready event back to back (perf/README.md).
#[derive(Parser, Debug)]
#[command(name = "sse-tokio", version)]
struct Args {
    /// Address to listen on; port 0 picks a free port (printed at start).
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: SocketAddr,
    /// Worker threads: 1 runs tokio's current-thread runtime (as `sse-upstream --threads 1`
    /// runs one monoio runtime), more a multi-thread runtime with that many workers.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

fn main() {
    let args = Args::parse();
    let threads = args.threads.max(1);
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sse-tokio: cannot build the tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    let kind = if threads == 1 {
        "current-thread"
    } else {
        "multi-thread"
    };
    runtime.block_on(async move {
        let listener = match listen(args.bind) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("sse-tokio: cannot listen on {}: {e}", args.bind);
                std::process::exit(1);
            }
        };
        let addr = listener.local_addr().expect("bound address");
        eprintln!("sse-tokio: {threads} thread(s), tokio {kind} runtime, epoll");
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on {addr}");
        let _ = out.flush();
        drop(out);
        loop {
            match listener.accept().await {
                Ok((sock, _)) => {
                    let _ = sock.set_nodelay(true);
                    tokio::spawn(conn::serve(sock));
                }
                Err(_) => tokio::time::sleep(ACCEPT_RETRY).await,
            }
        }
    });
}

/// Binds with SO_REUSEADDR (not SO_REUSEPORT: a port another process holds is an error) and
/// listens.
fn listen(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let sock = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(LISTEN_BACKLOG)
}
