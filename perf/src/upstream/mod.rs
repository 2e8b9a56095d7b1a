//! `sse-upstream`: an HTTP/1.1 + SSE origin for testing and benchmarking tether.
//!
//! Start it in-process with [`spawn`] (own OS threads, one monoio runtime each) or as the
//! `sse-upstream` binary; every endpoint, query parameter and fault is documented in
//! `perf/README.md`.
//!
//! Files:
//! - `worker.rs`: thread, runtime (io_uring or epoll), accept loop, kill.
//! - `conn.rs`: one connection: keep-alive request loop, plain endpoints.
//! - `direct.rs`: a new connection's first steps without a trip through the driver.
//! - `stream.rs`: one SSE response on monoio: batching, heartbeats, faults.
//! - `schedule.rs`: which event goes next and when: resume point, pacing, the fault's place
//!   (pure).
//! - `sse.rs`: the SSE response head, the event formatter, the write buffer (pure).
//! - `http.rs`: request heads, body framing, chunked decoder, response heads (pure).
//! - `query.rs`: query parameters (pure).
//!
//! The pure SSE modules, [`query`], [`sse`] and [`schedule`], are public: `sse-tokio`, the
//! second origin (perf/src/bin/sse-tokio/), runs on them too, so that the two origins parse
//! the same parameters and send the same events, byte for byte, and cannot drift apart.
//! - `log.rs`: the request log.
//! - `kill.rs`: the per-worker kill switch.

mod conn;
pub(crate) mod direct;
mod http;
mod kill;
mod log;
pub mod query;
pub mod schedule;
pub mod sse;
mod stream;
mod worker;

use std::fs::OpenOptions;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

pub(crate) use conn::set_linger_zero;
pub(crate) use log::push_json_str;
pub use log::{FaultStats, RequestRecord};
pub use query::{Chaos, ChaosKind};

use log::Shared;

/// How to run the simulator. Build it with struct update syntax so fields added later do
/// not break you: `UpstreamConfig { threads: 2, ..Default::default() }`.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Address to listen on; port 0 picks a free port (see [`UpstreamHandle::addr`]).
    /// Default 127.0.0.1:0.
    pub bind: SocketAddr,
    /// Worker threads, each with its own runtime, sharing one listening socket. Default 1.
    pub threads: usize,
    /// Append one JSON line per request to this file (flushed per line).
    pub log_path: Option<PathBuf>,
    /// For this long after start, connections are refused: the socket is bound (the port is
    /// held) but not listening, so a client's connect fails with ECONNREFUSED. Default 0.
    pub refuse_for: Duration,
    /// Keep every request in memory for [`UpstreamHandle::requests`]. Default true; turn it
    /// off for long benchmarks (the log grows by one record per request).
    pub keep_requests: bool,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            threads: 1,
            log_path: None,
            refuse_for: Duration::ZERO,
            keep_requests: true,
        }
    }
}

/// A running simulator. Dropping it kills it like [`UpstreamHandle::kill`].
pub struct UpstreamHandle {
    addr: SocketAddr,
    driver: &'static str,
    shared: Arc<Shared>,
    workers: Vec<WorkerHandle>,
    /// The listening socket (the workers hold duplicates of it): paused and resumed here.
    listener: std::net::TcpListener,
}

/// The handle's side of one worker thread.
struct WorkerHandle {
    /// Our end of the control socketpair; dropping it tells the worker to die.
    control: Option<UnixStream>,
    thread: Option<JoinHandle<()>>,
}

impl UpstreamHandle {
    /// The address it listens on (the real port when bound to port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The IO driver the workers run on: `"io_uring"` or `"legacy"` (epoll).
    pub fn driver(&self) -> &'static str {
        self.driver
    }

    /// Every request received so far, in arrival order (empty when `keep_requests` is off).
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.requests()
    }

    /// Connections accepted and faults injected so far.
    pub fn stats(&self) -> FaultStats {
        self.shared.stats()
    }

    /// Stops listening without closing anything: from now on every connect is refused
    /// (ECONNREFUSED; connections waiting in the backlog are reset), while the connections
    /// already accepted carry on. `shutdown(SHUT_RD)` on a listening socket takes it out of
    /// the listening state and keeps its port (as HAProxy pauses its listeners); the workers'
    /// accepts fail meanwhile and are retried every few milliseconds.
    pub fn pause_listening(&self) -> io::Result<()> {
        // SAFETY: plain syscall on the listening socket we own.
        if unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RD) } < 0 {
            return Err(io::Error::last_os_error());
        }
        self.shared.count_refusal_window();
        Ok(())
    }

    /// Listens again after [`UpstreamHandle::pause_listening`] (a no-op when listening).
    pub fn resume_listening(&self) -> io::Result<()> {
        // SAFETY: plain syscall on the listening socket we own.
        if unsafe { libc::listen(self.listener.as_raw_fd(), worker::BACKLOG) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Stops accepting, closes every open connection abruptly (as if the process died:
    /// the client sees FIN, or RST where request bytes were left unread; in-flight
    /// responses are cut where they are) and joins the threads.
    ///
    /// Panics if a worker thread panicked.
    pub fn kill(mut self) {
        let panicked = self.stop();
        if panicked && !std::thread::panicking() {
            panic!("an sse-upstream worker thread panicked");
        }
    }

    /// Signals every worker and joins them; true if one had panicked.
    fn stop(&mut self) -> bool {
        for w in &mut self.workers {
            drop(w.control.take());
        }
        let mut panicked = false;
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                panicked |= t.join().is_err();
            }
        }
        panicked
    }
}

impl Drop for UpstreamHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

impl std::fmt::Debug for UpstreamHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamHandle")
            .field("addr", &self.addr)
            .field("driver", &self.driver)
            .field("threads", &self.workers.len())
            .finish()
    }
}

/// Starts the simulator on its own OS thread(s) and returns once every worker listens
/// (or, with `refuse_for`, holds the port).
pub fn spawn(config: UpstreamConfig) -> io::Result<UpstreamHandle> {
    let threads = config.threads.max(1);
    let listen_now = config.refuse_for.is_zero();
    let listener = bind_pinned(config.bind, listen_now)?;
    let addr = listener.local_addr()?;
    let log = match &config.log_path {
        Some(path) => Some(OpenOptions::new().create(true).append(true).open(path)?),
        None => None,
    };
    let shared = Arc::new(Shared::new(config.keep_requests, log));
    let listen_at = (!listen_now).then(|| std::time::Instant::now() + config.refuse_for);

    let mut handle = UpstreamHandle {
        addr,
        driver: "legacy",
        shared: shared.clone(),
        workers: Vec::with_capacity(threads),
        listener: listener.try_clone()?,
    };
    for i in 0..threads {
        let (ours, theirs) = UnixStream::pair()?;
        let (ready_tx, ready_rx) = mpsc::channel();
        let start = worker::WorkerStart {
            listener: listener.try_clone()?,
            control: theirs,
            shared: shared.clone(),
            listen_at,
            ready: ready_tx,
        };
        let thread = std::thread::Builder::new()
            .name(format!("sse-upstream-{i}"))
            .spawn(move || worker::run(start))?;
        handle.workers.push(WorkerHandle {
            control: Some(ours),
            thread: Some(thread),
        });
        // On error `handle` drops here, stopping the workers already started.
        handle.driver = ready_rx
            .recv()
            .map_err(|_| io::Error::other("sse-upstream worker died while starting"))??;
    }
    Ok(handle)
}

/// Attempts at [`bind_pinned`]'s second bind before giving up (another process took the port
/// in between: unlikely on loopback, and then the next draw is another port).
const PIN_ATTEMPTS: usize = 8;

/// [`bind_listener`], but a port 0 is first resolved to a free port and the socket bound to it
/// by number. Linux keeps the port of a socket bound by number when it stops listening
/// ([`UpstreamHandle::pause_listening`]); a socket bound to port 0 loses it then, and would
/// listen again on another port.
fn bind_pinned(addr: SocketAddr, listen_now: bool) -> io::Result<std::net::TcpListener> {
    if addr.port() != 0 {
        return bind_listener(addr, listen_now);
    }
    let mut last = None;
    for _ in 0..PIN_ATTEMPTS {
        let probe = bind_listener(addr, false)?;
        let port = probe.local_addr()?.port();
        drop(probe);
        let mut pinned = addr;
        pinned.set_port(port);
        match bind_listener(pinned, listen_now) {
            Ok(l) => return Ok(l),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse)))
}

/// Binds a TCP socket with SO_REUSEADDR (not SO_REUSEPORT: a port held by another process
/// is an error, not a silent share) and listens on it when `listen_now`.
fn bind_listener(addr: SocketAddr, listen_now: bool) -> io::Result<std::net::TcpListener> {
    let domain = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // SAFETY: plain syscall; the result is checked before use.
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh socket nobody else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // SAFETY: valid fd, option value is a c_int of the given size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let rc = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: `sin` is a valid sockaddr_in and its size is passed.
            unsafe {
                libc::bind(
                    fd,
                    &sin as *const libc::sockaddr_in as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            }
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: `sin6` is a valid sockaddr_in6 and its size is passed.
            unsafe {
                libc::bind(
                    fd,
                    &sin6 as *const libc::sockaddr_in6 as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
                )
            }
        }
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: valid, bound socket.
    if listen_now && unsafe { libc::listen(fd, worker::BACKLOG) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(std::net::TcpListener::from(owned))
}
