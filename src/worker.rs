//! One worker per core: its own thread, pinned; its own monoio runtime; its own SO_REUSEPORT
//! listener; its own connections, upstream pool and address cache. A connection lives and dies on
//! the worker that accepted it. Workers share nothing on the data path.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use monoio::io::{AsyncReadRent, AsyncWriteRentExt, Canceller};
use monoio::net::{ListenerOpts, TcpListener, TcpStream, UnixStream};

use crate::config::Config;
use crate::conn_table::ConnTable;
use crate::limits::{ACCEPT_ERROR_BACKOFF_MS, ERROR_ANSWER_TIMEOUT_MS, MAX_REJECTING_PER_WORKER};
use crate::metrics::WorkerMetrics;
use crate::runtime::{build_runtime, DriverKind};
use crate::sse::active::ActiveStreams;
use crate::sse::directory::{Answer, Directory, Message, PendingAnswers, WorkerStatus};
use crate::sse::partial::PartialBudget;
use crate::sse::relay::SseSettings;
use crate::sse::resume::ResumeSettings;
use crate::sse::table::StreamTable;
use crate::timers::Timers;
use crate::upstream::pool::UpstreamPool;
use crate::upstream::replica::UpstreamSet;

/// Everything a worker's tasks share. Lives in an `Rc`: only this worker's thread touches it.
pub struct WorkerCtx {
    pub index: usize,
    /// The io driver this worker's runtime got.
    pub driver: DriverKind,
    pub config: Arc<Config>,
    pub conns: Rc<ConnTable>,
    pub pool: RefCell<UpstreamPool>,
    pub upstreams: RefCell<UpstreamSet>,
    /// SSE settings (a copy of `config.sse`, read per event).
    pub sse: SseSettings,
    /// This worker's replay rings (one per upstream lineage) and their budget.
    pub streams: StreamTable,
    /// Which worker holds which ring; the inboxes between workers.
    pub directory: Arc<Directory>,
    /// Ring queries this worker sent and awaits answers to.
    pub answers: PendingAnswers,
    /// This worker's counters.
    pub metrics: WorkerMetrics,
    /// The SSE streams being relayed now (for `/streams`).
    pub active: ActiveStreams,
    /// Upstream resume settings (a copy of `config.resume`).
    pub resume: ResumeSettings,
    /// The worker's one timer for its streams' deadlines.
    pub timers: Rc<Timers>,
    /// This worker's share of --sse-partial-memory.
    pub partial: PartialBudget,
}

impl WorkerCtx {
    /// This worker's counters and streams, for the admin endpoint.
    pub fn status(&self) -> WorkerStatus {
        WorkerStatus {
            worker: self.index,
            draining: self.conns.draining(),
            metrics: {
                let (rings, cost) = self.streams.usage();
                let m = &self.metrics;
                m.replay_rings.set(rings as u64);
                m.replay_ring_bytes.set(cost as u64);
                m.replay_budget_bytes.set(self.streams.budget() as u64);
                m.sse_partial_bytes.set(self.partial.held() as u64);
                m.snapshot(self.conns.live() as u64)
            },
            streams: self.active.views(),
        }
    }
}

/// Control messages from the main thread, one byte each on the worker's control socket.
pub const CONTROL_DRAIN: u8 = b'D';
pub const CONTROL_CLOSE_NOW: u8 = b'C';

/// How often a draining worker checks whether its connections are done. The drain is rare and
/// short, so a timer poll is simpler than waking on every connection's end.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// The main thread's side of a worker.
pub struct WorkerHandle {
    pub index: usize,
    pub thread: JoinHandle<()>,
    /// Writing CONTROL_* here tells the worker to drain or close; it never blocks (one byte each).
    pub control: StdUnixStream,
}

/// What a worker reports once its listener is bound (or why it could not start).
pub type Ready = Result<DriverKind, String>;

/// What a worker starts with besides its config.
pub struct WorkerLinks {
    pub directory: Arc<Directory>,
    /// This worker's end of its inbox bell.
    pub inbox: StdUnixStream,
    /// The admin listener, for the one worker that serves it.
    pub admin: Option<std::net::TcpListener>,
}

pub fn spawn(
    index: usize,
    config: Arc<Config>,
    links: WorkerLinks,
    ready: mpsc::Sender<(usize, Ready)>,
) -> io::Result<WorkerHandle> {
    let (main_side, worker_side) = StdUnixStream::pair()?;
    worker_side.set_nonblocking(true)?;
    let thread = std::thread::Builder::new()
        .name(format!("tether-w{index}"))
        .spawn(move || run(index, config, links, worker_side, ready))?;
    Ok(WorkerHandle {
        index,
        thread,
        control: main_side,
    })
}

fn run(
    index: usize,
    config: Arc<Config>,
    links: WorkerLinks,
    control: StdUnixStream,
    ready: mpsc::Sender<(usize, Ready)>,
) {
    if let Some(cpu) = config.cpu_for(index) {
        if let Err(e) = monoio::utils::bind_to_cpu_set([cpu]) {
            crate::log_warn!("worker {index}: cannot pin to CPU {cpu} ({e:?}); running unpinned");
        }
    }
    let built = match build_runtime(config.driver, config.uring_entries) {
        Ok(built) => built,
        Err(e) => {
            let _ = ready.send((index, Err(e)));
            return;
        }
    };
    if let Some(reason) = &built.fallback_reason {
        if index == 0 {
            crate::log_warn!("io_uring unavailable, using epoll: {reason}");
        }
    }
    let driver = built.driver;
    let mut runtime = built.runtime;
    runtime.block_on(async move {
        // Listeners must be created inside the runtime (monoio registers them with its driver).
        let listener = match bind_listener(config.bind, config.backlog) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send((
                    index,
                    Err(format!(
                        "worker {index}: cannot listen on {}: {e}",
                        config.bind
                    )),
                ));
                return;
            }
        };
        let control = match UnixStream::from_std(control) {
            Ok(c) => c,
            Err(e) => {
                let _ = ready.send((index, Err(format!("worker {index}: control socket: {e}"))));
                return;
            }
        };
        let inbox = match UnixStream::from_std(links.inbox) {
            Ok(c) => c,
            Err(e) => {
                let _ = ready.send((index, Err(format!("worker {index}: inbox socket: {e}"))));
                return;
            }
        };
        let replicas = config.upstreams.len();
        let ctx = Rc::new(WorkerCtx {
            index,
            driver,
            sse: config.sse,
            streams: StreamTable::new(index, config.rings, links.directory.clone()),
            directory: links.directory,
            answers: PendingAnswers::default(),
            metrics: WorkerMetrics::default(),
            active: ActiveStreams::default(),
            resume: config.resume,
            timers: Timers::new(),
            partial: PartialBudget::new(config.sse.partial_memory / config.workers.max(1)),
            pool: RefCell::new(UpstreamPool::new(
                replicas,
                config.upstream_pool_size,
                config.timeouts.pool_idle,
            )),
            upstreams: RefCell::new(UpstreamSet::new(config.upstreams.clone(), index)),
            conns: Rc::new(ConnTable::new()),
            config,
        });
        let _ = ready.send((index, Ok(driver)));
        monoio::spawn(inbox_loop(ctx.clone(), inbox));
        if let Some(admin) = links.admin {
            match admin
                .set_nonblocking(true)
                .and_then(|()| TcpListener::from_std(admin))
            {
                Ok(listener) => {
                    monoio::spawn(crate::admin::serve(ctx.clone(), listener));
                }
                Err(e) => crate::log_error!("admin endpoint: {e}"),
            }
        }
        monoio::spawn(sweep_loop(ctx.clone()));
        monoio::spawn(ctx.timers.clone().drive());
        serve(ctx, listener, control).await;
    });
}

/// Each worker's own listener. SO_REUSEPORT lets the kernel spread connections over workers; the
/// main thread has already checked that no other process holds the port.
fn bind_listener(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let opts = ListenerOpts::new()
        .reuse_port(true)
        .reuse_addr(true)
        .backlog(backlog);
    TcpListener::bind_with_config(addr, &opts)
}

async fn serve(ctx: Rc<WorkerCtx>, listener: TcpListener, mut control: UnixStream) {
    let canceller = Canceller::new();
    let accept_task = monoio::spawn(accept_loop(ctx.clone(), listener, canceller.handle()));

    // Wait for the main thread's word. EOF (main gone) counts as a drain.
    let mut msg = CONTROL_DRAIN;
    let (res, buf) = control.read(vec![0u8; 1]).await;
    if let Ok(1) = res {
        msg = buf[0];
    }
    let deadline = Instant::now() + ctx.config.timeouts.shutdown_grace;
    // Stop accepting: cancel the pending accept and await it (a dropped accept leaks its fd).
    let _ = canceller.cancel();
    accept_task.await;
    ctx.conns.begin_drain();
    crate::log_debug!(
        "worker {}: draining {} connections",
        ctx.index,
        ctx.conns.live()
    );

    if msg != CONTROL_CLOSE_NOW {
        // Wait for in-flight requests, the end of the grace period, or a second signal (which the
        // main thread forwards as CONTROL_CLOSE_NOW) to close at once.
        let close_now = Rc::new(Cell::new(false));
        let flag = close_now.clone();
        monoio::spawn(async move {
            let _ = control.read(vec![0u8; 1]).await;
            flag.set(true);
        });
        while ctx.conns.live() > 0 && Instant::now() < deadline && !close_now.get() {
            monoio::time::sleep(DRAIN_POLL).await;
        }
    }
    if ctx.conns.live() > 0 {
        crate::log_info!(
            "worker {}: grace period over, closing {} connections",
            ctx.index,
            ctx.conns.live()
        );
        ctx.conns.shutdown_all();
        // Tasks see their reads end and finish; bounded in case one is stuck in a long write.
        let stop = Instant::now() + Duration::from_secs(2);
        while ctx.conns.live() > 0 && Instant::now() < stop {
            monoio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn accept_loop(ctx: Rc<WorkerCtx>, listener: TcpListener, cancel: monoio::io::CancelHandle) {
    let rejecting = Rc::new(Cell::new(0usize));
    loop {
        match listener.cancelable_accept(cancel.clone()).await {
            Ok((stream, peer)) => {
                if ctx.conns.draining() {
                    // Accepted in the same instant the drain began: close, the client retries elsewhere.
                    drop(stream);
                    break;
                }
                admit(&ctx, stream, peer, &rejecting);
                // On io_uring one accept completes per ring cycle; under flat-out streams a cycle
                // is long and new connections would queue for seconds. Take what the backlog
                // already holds with non-blocking accepts (never blocks, so never cancelled).
                for _ in 0..ACCEPT_BURST {
                    match accept_ready(&listener, ctx.driver) {
                        Some((stream, peer)) => admit(&ctx, stream, peer, &rejecting),
                        None => break,
                    }
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ECANCELED) || ctx.conns.draining() => break,
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE)
                        | Some(libc::ENFILE)
                        | Some(libc::ENOBUFS)
                        | Some(libc::ENOMEM)
                ) =>
            {
                crate::log_warn!(
                    "worker {}: accept failed ({e}); backing off {ACCEPT_ERROR_BACKOFF_MS}ms (raise ulimit -n or lower --max-connections)",
                    ctx.index
                );
                monoio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
            }
            Err(e) => crate::log_debug!("worker {}: accept: {e}", ctx.index),
        }
    }
}

/// Connections taken from the backlog with non-blocking accepts after each driver accept.
const ACCEPT_BURST: usize = 64;

/// Serves a new connection, or answers 503 past --max-connections.
fn admit(ctx: &Rc<WorkerCtx>, stream: TcpStream, peer: SocketAddr, rejecting: &Rc<Cell<usize>>) {
    WorkerMetrics::inc(&ctx.metrics.connections_accepted);
    if ctx.conns.live() >= ctx.config.max_connections {
        WorkerMetrics::inc(&ctx.metrics.connections_rejected);
        ctx.metrics.record_response(503);
        if rejecting.get() < MAX_REJECTING_PER_WORKER {
            rejecting.set(rejecting.get() + 1);
            let counter = rejecting.clone();
            monoio::spawn(async move {
                reject_overloaded(stream).await;
                counter.set(counter.get() - 1);
            });
        }
        return;
    }
    monoio::spawn(crate::proxy::conn::serve_client(ctx.clone(), stream, peer));
}

/// One connection the backlog already holds, without waiting: a zero-timeout `poll` says
/// whether one is there (the listener may be in blocking mode under io_uring), then `accept4`.
/// The new socket is non-blocking only for epoll: io_uring returns EAGAIN on non-blocking
/// sockets instead of waiting for them.
fn accept_ready(listener: &TcpListener, driver: DriverKind) -> Option<(TcpStream, SocketAddr)> {
    let mut pfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout: never blocks.
    if unsafe { libc::poll(&mut pfd, 1, 0) } != 1 || pfd.revents & libc::POLLIN == 0 {
        return None;
    }
    let flags = match driver {
        DriverKind::Epoll => libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        DriverKind::IoUring => libc::SOCK_CLOEXEC,
    };
    // SAFETY: accept4 with null address pointers only returns a new fd (or -1); we own it. The
    // poll above said a connection is waiting and no other accept runs on this listener now
    // (the driver's accept just completed and the next is not submitted yet), so it returns at
    // once; if the peer vanished meanwhile it fails with an error instead.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            flags,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is a freshly accepted socket nobody else owns.
    let std_stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    let peer = std_stream.peer_addr().ok()?;
    let stream = TcpStream::from_std(std_stream).ok()?;
    Some((stream, peer))
}

/// Past --max-connections: answer 503 and close, within a bounded time.
async fn reject_overloaded(mut stream: TcpStream) {
    let mut out = bytes::BytesMut::new();
    crate::http::write_error_response(503, "too many connections on this worker", false, &mut out);
    let _ = monoio::time::timeout(
        Duration::from_millis(ERROR_ANSWER_TIMEOUT_MS),
        stream.write_all(out.freeze()),
    )
    .await;
}

/// Answers other workers' ring queries and hands answers to this worker's waiting tasks. Woken
/// by one byte per message batch on the inbox socket.
async fn inbox_loop(ctx: Rc<WorkerCtx>, mut bell: UnixStream) {
    let mut buf = vec![0u8; 64];
    loop {
        let (res, b) = bell.read(buf).await;
        buf = b;
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        for msg in ctx.directory.drain(ctx.index) {
            match msg {
                Message::Query {
                    scope,
                    id,
                    from,
                    token,
                } => {
                    let answer = Answer::Ring(crate::sse::lookup::answer(&ctx, &scope, &id));
                    ctx.directory.post(from, Message::Answer { token, answer });
                }
                Message::Status { from, token } => {
                    let answer = Answer::Status(Box::new(ctx.status()));
                    ctx.directory.post(from, Message::Answer { token, answer });
                }
                Message::Answer { token, answer } => ctx.answers.fulfil(token, answer),
            }
        }
    }
}

/// How often a worker frees replay rings whose TTL ran out (at most; a short `--replay-ttl`
/// sweeps twice per TTL, never more often than RING_SWEEP_MIN).
const RING_SWEEP_INTERVAL: Duration = Duration::from_secs(5);
const RING_SWEEP_MIN: Duration = Duration::from_millis(100);

async fn sweep_loop(ctx: Rc<WorkerCtx>) {
    let every = RING_SWEEP_INTERVAL
        .min(ctx.streams.limits().ttl / 2)
        .max(RING_SWEEP_MIN);
    loop {
        monoio::time::sleep(every).await;
        let freed = ctx.streams.sweep(Instant::now());
        if freed > 0 {
            crate::log_debug!(
                "worker {}: freed {freed} replay rings past --replay-ttl",
                ctx.index
            );
        }
        if ctx.conns.draining() {
            return;
        }
    }
}
