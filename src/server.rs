//! The process: check the port, start the workers, turn SIGTERM/SIGINT into a drain, exit 0.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use crate::cli::ReverseArgs;
use crate::config::Config;
use crate::duration::format_duration;
use crate::proxy::upstream::spawn_resolver;
use crate::sse::directory::Directory;
use crate::worker::{self, WorkerHandle, WorkerLinks, CONTROL_CLOSE_NOW, CONTROL_DRAIN};

/// How long start-up waits for every worker to bind and report.
const WORKER_START_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the reverse proxy until SIGTERM/SIGINT and the drain that follows.
pub fn run_reverse(args: &ReverseArgs) -> Result<(), String> {
    let mut config = Config::from_args(args).map_err(|e| e.to_string())?;
    config.bind = claim_port(config.bind)?;
    let config = Arc::new(config);

    // Block the shutdown signals before any thread starts, so every thread inherits the mask and
    // only the signal thread receives them (through sigwait), never a worker mid-syscall.
    let signals = block_shutdown_signals();

    spawn_resolver(config.upstreams.clone(), config.resolve_interval);

    let (directory, inboxes) =
        Directory::new(config.workers).map_err(|e| format!("cannot create worker inboxes: {e}"))?;
    let directory = Arc::new(directory);
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut workers = Vec::with_capacity(config.workers);
    for (index, inbox) in inboxes.into_iter().enumerate() {
        let links = WorkerLinks {
            directory: directory.clone(),
            inbox,
        };
        let handle = worker::spawn(index, config.clone(), links, ready_tx.clone())
            .map_err(|e| format!("cannot start worker thread {index}: {e}"))?;
        workers.push(handle);
    }
    drop(ready_tx);
    let mut driver = None;
    for _ in 0..config.workers {
        match ready_rx.recv_timeout(WORKER_START_TIMEOUT) {
            Ok((_, Ok(kind))) => driver = Some(kind),
            Ok((_, Err(e))) => {
                close_all(&workers, CONTROL_CLOSE_NOW);
                return Err(e);
            }
            Err(_) => {
                close_all(&workers, CONTROL_CLOSE_NOW);
                return Err("workers did not start within 10s".into());
            }
        }
    }
    let upstreams: Vec<&str> = config
        .upstreams
        .iter()
        .map(|u| u.spec.url.as_str())
        .collect();
    crate::log_info!(
        "listening on {} ({} workers, {} driver, pinned: {}) -> {}",
        config.bind,
        config.workers,
        driver.map_or("?".to_string(), |d| d.to_string()),
        config
            .cpus
            .as_ref()
            .map_or("no".to_string(), |c| format!("{c:?}")),
        upstreams.join(", ")
    );

    let controls: Vec<_> = workers
        .iter()
        .filter_map(|w| w.control.try_clone().ok())
        .collect();
    let grace = config.timeouts.shutdown_grace;
    std::thread::Builder::new()
        .name("tether-signals".into())
        .spawn(move || {
            let mut first = true;
            loop {
                let sig = wait_signal(&signals);
                let byte = if first { CONTROL_DRAIN } else { CONTROL_CLOSE_NOW };
                if first {
                    crate::log_info!(
                        "signal {sig}: stopped accepting; draining for up to {} (send again to close at once)",
                        format_duration(grace)
                    );
                } else {
                    crate::log_info!("signal {sig} again: closing all connections now");
                }
                for mut c in &controls {
                    let _ = c.write_all(&[byte]);
                }
                first = false;
            }
        })
        .map_err(|e| format!("cannot start the signal thread: {e}"))?;

    for w in workers {
        if w.thread.join().is_err() {
            crate::log_error!("worker {} panicked", w.index);
        }
    }
    crate::log_info!("all workers stopped; exiting");
    Ok(())
}

fn close_all(workers: &[WorkerHandle], byte: u8) {
    for w in workers {
        let _ = (&w.control).write_all(&[byte]);
    }
}

/// Checks that no other process listens on `addr` and resolves port 0 to a concrete free port.
///
/// monoio binds with SO_REUSEPORT, so a second process on the same port would silently share the
/// traffic. A plain bind (no SO_REUSEPORT) fails with EADDRINUSE if any socket listens there; it is
/// released at once and the workers bind with SO_REUSEPORT. The window between the two binds is a
/// few microseconds at start-up.
fn claim_port(addr: SocketAddr) -> Result<SocketAddr, String> {
    match StdTcpListener::bind(addr) {
        Ok(probe) => probe.local_addr().map_err(|e| format!("--bind {addr}: {e}")),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => Err(format!(
            "--bind {addr}: the address is already in use by another process (tether will not share a port)"
        )),
        Err(e) => Err(format!("--bind {addr}: {e}")),
    }
}

/// The set of signals that start a drain, blocked in the calling thread (and so in every thread
/// spawned after).
fn block_shutdown_signals() -> libc::sigset_t {
    // SAFETY: plain libc calls on a zeroed, locally owned sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_signal(set: &libc::sigset_t) -> &'static str {
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` holds blocked signals; sigwait stores the received one in `sig`.
    unsafe {
        libc::sigwait(set, &mut sig);
    }
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        _ => "signal",
    }
}
