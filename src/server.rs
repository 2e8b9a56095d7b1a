//! The process: check the port, start the workers, turn SIGTERM/SIGINT into a drain and SIGHUP
//! into a reload (and a reopen of the access log), exit 0.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use crate::config::Config;
use crate::duration::format_duration;
use crate::reload::ConfigReload;
use crate::sse::directory::Directory;
use crate::store::ReplayStore;
use crate::upstream::replica::{spawn_resolver, ResolverHandle};
use crate::worker::{self, WorkerHandle, WorkerLinks, CONTROL_CLOSE_NOW, CONTROL_DRAIN};

/// How long start-up waits for every worker to bind and report.
const WORKER_START_TIMEOUT: Duration = Duration::from_secs(10);

/// A running proxy: its workers, and how to stop them.
pub struct Server {
    /// Where clients connect (port 0 resolved).
    pub addr: SocketAddr,
    /// Where the admin endpoint listens, when enabled.
    pub admin_addr: Option<SocketAddr>,
    workers: Vec<WorkerHandle>,
    /// The workers' inboxes, through which a reload reaches them.
    directory: Arc<Directory>,
    /// The resolver thread, told which replicas to follow after a reload.
    resolver: ResolverHandle,
    /// The replay store's thread (`--replay-store`), stopped once the workers have ended.
    store: Option<ReplayStore>,
}

impl Server {
    /// Starts the resolver, the workers (each binding its listener) and the admin endpoint; returns
    /// once every worker is serving. Call with the shutdown signals already blocked when the
    /// process should react to them.
    pub fn start(mut config: Config) -> Result<Server, String> {
        config.bind = claim_port(config.bind)?;
        if let Some(target) = &config.access_log {
            target.check().map_err(|e| e.to_string())?;
        }
        let admin = match config.admin {
            Some(addr) => {
                Some(StdTcpListener::bind(addr).map_err(|e| format!("--admin {addr}: {e}"))?)
            }
            None => None,
        };
        let admin_addr = admin.as_ref().and_then(|l| l.local_addr().ok());
        config.build_rule_chain();
        if config.routes.iter().any(|r| r.settings.mcp) {
            match &config.session_key_file {
                Some(file) => crate::log_info!(
                    "MCP sessions: {} key(s) from {} (the first seals new ids)",
                    config.session_keys.len(),
                    file.display()
                ),
                None => crate::log_info!(
                    "MCP sessions: no --session-key-file, so session ids are sealed under a random key made at start: they end with this process, and other tether instances refuse them"
                ),
            }
        }
        let config = Arc::new(config);
        let resolver = spawn_resolver(config.upstreams.clone(), config.resolve_interval);

        let (directory, inboxes) = Directory::new(config.workers)
            .map_err(|e| format!("cannot create worker inboxes: {e}"))?;
        let directory = Arc::new(directory);
        // The replay store: one thread for the process, a queue per worker. Never waits for
        // Redis (it connects on the first event, and reconnects with back-off).
        let (store, mut store_writers) = match &config.replay_store {
            Some(store_config) => {
                let (store, writers) =
                    ReplayStore::start(store_config, config.workers).map_err(|e| e.to_string())?;
                crate::log_info!(
                    "replay store: events also written to {} (up to {} per stream, for {})",
                    redacted_url(&store_config.url),
                    store_config.max_events,
                    format_duration(store_config.ttl)
                );
                (Some(store), writers.into_iter().map(Some).collect())
            }
            None => (None, Vec::new()),
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut workers = Vec::with_capacity(config.workers);
        let mut admin = admin;
        for (index, inbox) in inboxes.into_iter().enumerate() {
            // Worker 0 serves the admin endpoint; it asks the others for their figures.
            let links = WorkerLinks {
                directory: directory.clone(),
                inbox,
                admin: admin.take(),
                store: store.as_ref().and_then(|store| {
                    let writer = store_writers.get_mut(index)?.take()?;
                    Some(worker::WorkerStore {
                        writer,
                        link: worker::StoreLink {
                            reader: store.reader(),
                            follows: store.follows(),
                            counters: store.counters(),
                        },
                    })
                }),
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
        let upstreams: Vec<&str> = config.upstreams.iter().map(|u| &*u.spec.url).collect();
        // Before the listening line: an insecure setting is known before anything is served.
        config.log_upstream_tls();
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
        if !(config.routes.len() == 1 && config.routes[0].is_catch_all()) {
            for (index, route) in config.routes.iter().enumerate() {
                crate::log_info!("{}", route.describe(index, &upstreams));
            }
        }
        if let Some(addr) = admin_addr {
            crate::log_info!("admin endpoint on http://{addr} (/metrics, /healthz, /streams)");
        }
        Ok(Server {
            addr: config.bind,
            admin_addr,
            workers,
            directory,
            resolver,
            store,
        })
    }

    /// Tells every worker to drain (or, with `now`, to close at once).
    pub fn signal(&self, now: bool) {
        close_all(
            &self.workers,
            if now {
                CONTROL_CLOSE_NOW
            } else {
                CONTROL_DRAIN
            },
        );
    }

    /// Waits for every worker to finish.
    pub fn join(self) {
        for w in self.workers {
            if w.thread.join().is_err() {
                crate::log_error!("worker {} panicked", w.index);
            }
        }
        // After the workers: what they queued last is still written (or counted).
        if let Some(store) = self.store {
            store.stop();
        }
    }

    /// Drains and waits (used by `tether demo`).
    pub fn shutdown(self) {
        self.signal(false);
        self.join();
    }
}

/// A `redis://` URL for the log: its password, if any, replaced.
fn redacted_url(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://***{}", &url[at..]),
        _ => url.to_string(),
    }
}

/// Runs the reverse proxy until SIGTERM/SIGINT and the drain that follows; SIGHUP reloads the
/// configuration file (`reload`, made from the same command line before `config`).
pub fn run_reverse(config: Config, mut reload: ConfigReload) -> Result<(), String> {
    let grace = config.timeouts.shutdown_grace;
    // Block the signals before any thread starts, so every thread inherits the mask and only
    // the signal thread receives them (through sigwait), never a worker mid-syscall.
    let signals = block_signals();
    let mut server = Server::start(config)?;
    let controls: Vec<_> = server
        .workers
        .iter()
        .filter_map(|w| w.control.try_clone().ok())
        .collect();
    let directory = server.directory.clone();
    // The resolver's handle moves to the reload thread: only a reload talks to it.
    let resolver = std::mem::replace(&mut server.resolver, ResolverHandle::detached());
    // A reload reads a file and may resolve new host names (blocking, for seconds when DNS is
    // slow): it runs on its own thread, so that a SIGTERM meanwhile still starts the drain at
    // once. SIGHUPs are taken one after the other.
    let (hangups, hangup_rx) = mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("tether-reload".into())
        .spawn(move || {
            while hangup_rx.recv().is_ok() {
                on_hangup(&mut reload, &directory, &resolver);
            }
        })
        .map_err(|e| format!("cannot start the reload thread: {e}"))?;
    std::thread::Builder::new()
        .name("tether-signals".into())
        .spawn(move || {
            let mut first = true;
            loop {
                let sig = wait_signal(&signals);
                if sig == libc::SIGHUP {
                    let _ = hangups.send(());
                    continue;
                }
                let sig = signal_name(sig);
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
    server.join();
    crate::log_info!("all workers stopped; exiting");
    Ok(())
}

/// SIGHUP: the conventional "reopen your files and re-read your configuration".
fn on_hangup(reload: &mut ConfigReload, directory: &Directory, resolver: &ResolverHandle) {
    // Log rotation first, so that it happens whether or not the configuration file below is
    // valid, and also when tether runs without --config: every worker reopens its access log at
    // its next flush.
    crate::access_log::reopen_access_logs();
    crate::log_info!("signal SIGHUP: reopening the access log");
    reload.reload(directory, resolver);
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

/// The signals the signal thread handles (SIGTERM and SIGINT start a drain, SIGHUP a reload),
/// blocked in the calling thread (and so in every thread spawned after). SIGHUP's default
/// action would end the process: blocked, it waits for sigwait.
fn block_signals() -> libc::sigset_t {
    // SAFETY: plain libc calls on a zeroed, locally owned sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        // SIGHUP reloads the configuration and reopens the access log (never a drain).
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_signal(set: &libc::sigset_t) -> libc::c_int {
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` holds blocked signals; sigwait stores the received one in `sig`.
    unsafe {
        libc::sigwait(set, &mut sig);
    }
    sig
}

fn signal_name(sig: libc::c_int) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        _ => "signal",
    }
}
