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

use crate::access_log::AccessLog;
use crate::config::Config;
use crate::conn_table::ConnTable;
use crate::limits::{ACCEPT_ERROR_BACKOFF_MS, ERROR_ANSWER_TIMEOUT_MS, MAX_REJECTING_PER_WORKER};
use crate::metrics::WorkerMetrics;
use crate::proxy::request_id::RequestIds;
use crate::ready_set::ReadySet;
use crate::route::{Route, RouteTable, Unrouted};
use crate::runtime::{build_runtime, DriverKind};
use crate::sse::active::ActiveStreams;
use crate::sse::directory::{Answer, Directory, Message, PendingAnswers, WorkerStatus};
use crate::sse::partial::PartialBudget;
use crate::sse::table::StreamTable;
use crate::store::{StoreCounters, StoreFollows, StoreReader, StoreWriter};
use crate::timers::Timers;
use crate::turns::Turns;
use crate::upstream::pool::UpstreamPool;
use crate::upstream::replica::UpstreamSet;

/// Everything a worker's tasks share. Lives in an `Rc`: only this worker's thread touches it.
pub struct WorkerCtx {
    /// Itself, for the few tasks a request starts that outlive it (a follow through the replay
    /// store, `crate::sse::store_follow`): they hold the context as the worker's other tasks do.
    me: std::rc::Weak<WorkerCtx>,
    pub index: usize,
    /// The io driver this worker's runtime got.
    pub driver: DriverKind,
    /// The settings the process started with. A reload (`crate::reload`) does not replace it:
    /// what it changes lives in `routes`, `upstreams` and `pool`; what is read from here (the
    /// client-side timeouts and head limits, max-connections, the ring limits...) stays until
    /// a restart.
    pub config: Arc<Config>,
    pub conns: Rc<ConnTable>,
    pub pool: RefCell<UpstreamPool>,
    pub upstreams: RefCell<UpstreamSet>,
    /// The routes, resolved once per request (`crate::route`). Each request holds the
    /// `Rc<Route>` it matched for its whole life, so a reload replaces this table between
    /// requests (in the inbox task) without touching running ones. A `RefCell` borrow is a
    /// plain counter on this thread: no lock, no atomic.
    pub(crate) routes: RefCell<Rc<RouteTable>>,
    /// Which configuration `routes` comes from: 1 at start, then each applied reload's.
    pub(crate) config_generation: Cell<u64>,
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
    /// The coalesced streams fresh GETs may join (`--coalesce`).
    pub(crate) coalesce: crate::sse::coalesce::CoalesceTable,
    /// The worker's one timer for its streams' deadlines.
    pub timers: Rc<Timers>,
    /// This worker's share of --sse-partial-memory.
    pub partial: PartialBudget,
    /// Busy streams give way to the I/O loop after each slice of work (crate::turns).
    pub turns: Rc<Turns>,
    /// The upstream sockets of this worker's SSE streams, waited on together
    /// (crate::ready_set).
    pub(crate) ready: Rc<ReadySet>,
    /// Makes the ids of requests that come without an acceptable `X-Request-Id`.
    pub(crate) request_ids: RequestIds,
    /// This worker's access log writer (None: `--access-log` is off).
    pub(crate) access_log: Option<AccessLog>,
    /// The replay store's read side and counters (None: `--replay-store` is off). Its write
    /// side is in `streams`, where events are recorded.
    pub(crate) store: Option<StoreLink>,
    /// Client TLS (`--tls-cert`): this worker's server settings, swapped by a reload, and its
    /// handshake counters' log limit. Without settings, clients speak plain HTTP.
    pub(crate) client_tls: crate::client_tls::WorkerTls,
}

/// What a worker holds of the replay store (`crate::store`) besides its write queue.
pub(crate) struct StoreLink {
    /// Asks for the events after a `Last-Event-ID` (`crate::sse::lookup`, on a miss).
    pub(crate) reader: StoreReader,
    /// Follows a stream another instance still reads (`crate::sse::store_follow`).
    pub(crate) follows: StoreFollows,
    /// The store's process-wide counters, for `/metrics` (served by worker 0).
    pub(crate) counters: Arc<StoreCounters>,
}

/// A worker's share of the replay store, handed over at start.
pub(crate) struct WorkerStore {
    pub(crate) writer: StoreWriter,
    pub(crate) link: StoreLink,
}

impl WorkerCtx {
    /// The context as an `Rc`, for a task spawned on this worker.
    pub(crate) fn rc(&self) -> Option<Rc<WorkerCtx>> {
        self.me.upgrade()
    }

    /// The route of a new request under the configuration in force now, or why it has none.
    /// The request keeps the `Rc` for its whole life, whatever a reload does meanwhile.
    pub(crate) fn route_for(&self, head: &crate::http::RequestHead) -> Result<Rc<Route>, Unrouted> {
        self.routes.borrow().resolve(head).cloned()
    }

    /// This worker's counters and streams, for the admin endpoint.
    pub fn status(&self) -> WorkerStatus {
        let upstreams = self.upstreams.borrow().health_report();
        WorkerStatus {
            worker: self.index,
            draining: self.conns.draining(),
            metrics: {
                let (rings, cost) = self.streams.usage();
                let m = &self.metrics;
                let ejected = upstreams.iter().filter(|r| r.is_ejected()).count();
                m.upstream_ejected_replicas.set(ejected as u64);
                m.replay_rings.set(rings as u64);
                m.replay_ring_bytes.set(cost as u64);
                m.replay_budget_bytes.set(self.streams.budget() as u64);
                m.sse_partial_bytes.set(self.partial.held() as u64);
                m.stream_turns_deferred.set(self.turns.deferred_total());
                m.snapshot(self.conns.live() as u64)
            },
            streams: self.active.views(),
            upstreams,
            config_generation: self.config_generation.get(),
            routes: self.routes.borrow().counts(),
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
    /// Its queue to the replay store and its read side (None: `--replay-store` is off).
    pub(crate) store: Option<WorkerStore>,
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
        let (turns, bell) = match Turns::new(config.turn_slice) {
            Ok(t) => t,
            Err(e) => {
                let _ = ready.send((index, Err(format!("worker {index}: bell socket: {e}"))));
                return;
            }
        };
        let (ready_set, ready_watch) = match ReadySet::new() {
            Ok(r) => r,
            Err(e) => {
                let _ = ready.send((index, Err(format!("worker {index}: epoll set: {e}"))));
                return;
            }
        };
        let access_log = match config.access_log.as_ref().map(AccessLog::open).transpose() {
            Ok(log) => log,
            Err(e) => {
                let _ = ready.send((index, Err(format!("worker {index}: --access-log: {e}"))));
                return;
            }
        };
        let replicas = config.upstreams.len();
        let (store_writer, store) = match links.store {
            Some(s) => (Some(s.writer), Some(s.link)),
            None => (None, None),
        };
        let ctx = Rc::new_cyclic(|me| WorkerCtx {
            me: me.clone(),
            index,
            driver,
            routes: RefCell::new(Rc::new(RouteTable::new(
                &config.routes,
                &config.rule_chain,
                index,
                None,
            ))),
            config_generation: Cell::new(1),
            streams: StreamTable::new(index, config.rings, links.directory.clone())
                .with_store(store_writer),
            directory: links.directory,
            answers: PendingAnswers::default(),
            metrics: WorkerMetrics::default(),
            active: ActiveStreams::default(),
            coalesce: Default::default(),
            timers: Timers::new(),
            partial: PartialBudget::new(config.sse_partial_memory / config.workers.max(1)),
            pool: RefCell::new(UpstreamPool::new(
                replicas,
                config.upstream_pool_size,
                config.timeouts.pool_idle,
            )),
            upstreams: RefCell::new(UpstreamSet::new(
                config.upstreams.clone(),
                config.upstream_eject,
                config.upstream_tls.as_ref().map(|tls| tls.for_worker()),
            )),
            conns: Rc::new(ConnTable::new()),
            turns,
            ready: ready_set,
            request_ids: RequestIds::new(index),
            access_log,
            store,
            client_tls: crate::client_tls::WorkerTls::new(
                config.client_tls.as_ref().map(|tls| tls.for_worker()),
            ),
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
        monoio::spawn(crate::memory::return_after_bursts(ctx.clone()));
        #[cfg(feature = "alloc-census")]
        monoio::spawn(crate::alloc_census::report_worker_heap(index));
        if ctx.access_log.is_some() {
            monoio::spawn(crate::access_log::flush_loop(ctx.clone()));
        }
        monoio::spawn(ctx.timers.clone().drive());
        monoio::spawn(crate::turns::ring_loop(ctx.turns.clone(), bell));
        monoio::spawn(ctx.ready.clone().drive(ready_watch));
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
    // The lines of the connections that just ended.
    if let Some(log) = &ctx.access_log {
        log.flush();
    }
}

async fn accept_loop(ctx: Rc<WorkerCtx>, listener: TcpListener, cancel: monoio::io::CancelHandle) {
    let rejecting = Rc::new(Cell::new(0usize));
    let mut fds = FdPressure::new();
    loop {
        match listener.cancelable_accept(cancel.clone()).await {
            Ok((stream, peer)) => {
                if ctx.conns.draining() {
                    // Accepted in the same instant the drain began: close, the client retries elsewhere.
                    drop(stream);
                    break;
                }
                admit(&ctx, stream, peer, &rejecting, &mut fds);
                // On io_uring one accept completes per ring cycle; under flat-out streams a cycle
                // is long and new connections would queue for seconds. Take what the backlog
                // already holds with non-blocking accepts (never blocks, so never cancelled).
                for _ in 0..ACCEPT_BURST {
                    match accept_ready(&listener, ctx.driver) {
                        Some((stream, peer)) => admit(&ctx, stream, peer, &rejecting, &mut fds),
                        None => break,
                    }
                }
            }
            Err(e) if e.raw_os_error() == Some(libc::ECANCELED) || ctx.conns.draining() => break,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) => {
                // Out of file descriptors: what waits in the backlog would wait (and the accept
                // fail again) until some connection closes. Refuse it cleanly instead, through
                // the reserve fd; sleep only when nothing could be refused, so a worker at its
                // limit neither spins nor leaves clients hanging.
                let refused = fds.refuse_waiting(&ctx, &listener);
                fds.pressure(ctx.index, &e, refused);
                if refused == 0 {
                    monoio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
                }
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOBUFS) | Some(libc::ENOMEM)) => {
                fds.pressure(ctx.index, &e, 0);
                monoio::time::sleep(Duration::from_millis(ACCEPT_ERROR_BACKOFF_MS)).await;
            }
            Err(e) => crate::log_debug!("worker {}: accept: {e}", ctx.index),
        }
    }
}

/// Most connections refused in one go at the fd limit before the accept loop goes back to the
/// driver (bounded work per wake-up: the rest are refused on the next turn).
const REFUSE_BURST: usize = 64;

/// Shortest time between two log lines about a worker running out of file descriptors (or
/// memory for sockets), in seconds: the first failure is logged at once, later ones are counted
/// and summed up in the next line, so a worker at its limit logs one line per this interval, not
/// one per refused connection.
const ACCEPT_ERROR_LOG_INTERVAL_SECS: u64 = 10;

/// Bytes of a refused client's request read and discarded before its socket is closed, so that
/// the close is a FIN after the 503 rather than a RST that could destroy it in flight.
const REFUSE_DISCARD_BYTES: usize = 16 * 1024;

/// A worker's answer to running out of file descriptors: the reserve-fd technique that libev's
/// documentation describes and libuv uses. One fd is kept open on /dev/null while all is well.
/// When accept fails with EMFILE/ENFILE the reserve is closed for a moment, which lets one waiting
/// connection be accepted, answered 503 and closed, and then it is opened again: clients at the
/// limit get a clean, immediate refusal instead of hanging in the backlog. accept(2) fails with
/// EMFILE even when no connection waits (the kernel takes the fd number first), so when nothing
/// could be refused the worker sleeps ACCEPT_ERROR_BACKOFF_MS before the next accept: at most
/// twenty wake-ups a second while the limit lasts, never a spin.
struct FdPressure {
    /// The fd held back for refusals; None while it could not be opened again (the worker then
    /// sleeps between failed accepts and tries again).
    reserve: Option<std::fs::File>,
    /// When the last line about fd (or socket memory) pressure was logged.
    logged_at: Option<Instant>,
    /// Connections refused with 503 for lack of fds since that line.
    refused_since_log: u64,
    /// Pressure was seen and its end not logged yet: the next connection admitted once the
    /// interval allows logs "accepting again".
    exhausted: bool,
}

impl FdPressure {
    fn new() -> Self {
        FdPressure {
            reserve: open_reserve(),
            logged_at: None,
            refused_since_log: 0,
            exhausted: false,
        }
    }

    /// Refuses (503 and close) up to REFUSE_BURST connections waiting in the backlog, each through
    /// the reserve fd. Synchronous and non-blocking: a zero-timeout poll says whether one waits.
    /// Returns how many were refused.
    fn refuse_waiting(&mut self, ctx: &WorkerCtx, listener: &TcpListener) -> usize {
        let mut refused = 0;
        while refused < REFUSE_BURST {
            // Closing the reserve frees one fd number for this accept. Without a reserve (another
            // thread took its number), the accept fails as the driver's did unless an fd was
            // freed meanwhile.
            drop(self.reserve.take());
            let accepted = accept_raw(listener, libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC);
            let Some(stream) = accepted else {
                self.reserve = open_reserve();
                break;
            };
            refuse_now(stream, &ctx.request_ids.make());
            refused += 1;
            WorkerMetrics::inc(&ctx.metrics.connections_accepted);
            WorkerMetrics::inc(&ctx.metrics.connections_rejected);
            ctx.metrics.record_response(503);
            self.reserve = open_reserve();
        }
        refused
    }

    /// Counts `refused` connections refused for `e` (after a failed accept, or for want of a
    /// spare fd); logs when the last line is older than the interval. A failed accept that
    /// refused nothing counts only as the pressure going on: at the limit, accept fails every
    /// ACCEPT_ERROR_BACKOFF_MS whether or not a client is waiting.
    fn pressure(&mut self, worker: usize, e: &io::Error, refused: usize) {
        self.exhausted = true;
        self.refused_since_log += refused as u64;
        let now = Instant::now();
        let due = self.logged_at.is_none_or(|at| {
            now.duration_since(at) >= Duration::from_secs(ACCEPT_ERROR_LOG_INTERVAL_SECS)
        });
        if !due {
            return;
        }
        crate::log_warn!(
            "worker {worker}: out of file descriptors or socket memory ({e}); refusing new connections with 503 until some close: {} refused since the last such line (raise ulimit -n or lower --max-connections; logged at most every {ACCEPT_ERROR_LOG_INTERVAL_SECS}s)",
            self.refused_since_log
        );
        self.logged_at = Some(now);
        self.refused_since_log = 0;
    }

    /// A connection was admitted: the pressure is over (for now). Takes the reserve back if it was
    /// lost. Logged with what was refused meanwhile, within the same once-per-interval budget:
    /// when the last line is too recent, the first connection admitted after the interval logs
    /// it (a check of the clock per accepted connection, only until then).
    fn recovered(&mut self, worker: usize) {
        if !self.exhausted {
            return;
        }
        if self.reserve.is_none() {
            self.reserve = open_reserve();
        }
        let now = Instant::now();
        let due = self.logged_at.is_none_or(|at| {
            now.duration_since(at) >= Duration::from_secs(ACCEPT_ERROR_LOG_INTERVAL_SECS)
        });
        if !due {
            return;
        }
        self.exhausted = false;
        crate::log_info!(
            "worker {worker}: accepting again ({} connections refused with 503 since the last line)",
            self.refused_since_log
        );
        self.logged_at = Some(now);
        self.refused_since_log = 0;
    }
}

/// The reserve fd (/dev/null, close-on-exec); None when the process has no fd to spare.
fn open_reserve() -> Option<std::fs::File> {
    std::fs::File::open("/dev/null").ok()
}

/// Answers `503` and closes, without waiting for anything: the answer fits in a fresh socket's
/// send buffer; what the client already sent is read and discarded first (bounded) so the close
/// sends FIN rather than RST. A request that arrives later may still meet a RST; the 503 is then
/// already in the client's receive buffer, which Linux delivers before reporting the reset.
fn refuse_now(stream: std::net::TcpStream, id: &crate::proxy::request_id::RequestId) {
    use std::io::{Read, Write};
    let mut out = bytes::BytesMut::new();
    crate::http::write_error_response(503, REFUSED_NO_FDS, false, Some(id.as_bytes()), &mut out);
    let mut stream = stream;
    let _ = stream.write(&out);
    let mut sink = [0u8; 4096];
    let mut discarded = 0;
    while discarded < REFUSE_DISCARD_BYTES {
        match stream.read(&mut sink) {
            Ok(n) if n > 0 => discarded += n,
            _ => break,
        }
    }
}

/// Connections taken from the backlog with non-blocking accepts after each driver accept.
const ACCEPT_BURST: usize = 64;

/// Serves a new connection, or answers 503: past --max-connections, or when the process has no
/// fd left for the connection's upstream (it would get a 502 naming a socket error, and every such
/// request would log one).
fn admit(
    ctx: &Rc<WorkerCtx>,
    stream: TcpStream,
    peer: SocketAddr,
    rejecting: &Rc<Cell<usize>>,
    fds: &mut FdPressure,
) {
    WorkerMetrics::inc(&ctx.metrics.connections_accepted);
    let reason = if ctx.conns.live() >= ctx.config.max_connections {
        Some("too many connections on this worker")
    } else if let Err(e) = fd_to_spare(&stream) {
        fds.pressure(ctx.index, &e, 1);
        Some(REFUSED_NO_FDS)
    } else {
        fds.recovered(ctx.index);
        None
    };
    let Some(reason) = reason else {
        // Two tasks of different types: a plain connection's is today's, untouched by TLS.
        if ctx.client_tls.enabled() {
            monoio::spawn(crate::proxy::conn::serve_tls_client(
                ctx.clone(),
                stream,
                peer,
            ));
        } else {
            monoio::spawn(crate::proxy::conn::serve_client(ctx.clone(), stream, peer));
        }
        return;
    };
    WorkerMetrics::inc(&ctx.metrics.connections_rejected);
    ctx.metrics.record_response(503);
    if rejecting.get() < MAX_REJECTING_PER_WORKER {
        rejecting.set(rejecting.get() + 1);
        let counter = rejecting.clone();
        let id = ctx.request_ids.make();
        monoio::spawn(async move {
            reject_overloaded(stream, reason, id).await;
            counter.set(counter.get() - 1);
        });
    }
}

/// What a client refused for lack of file descriptors is told.
const REFUSED_NO_FDS: &str = "the proxy cannot take more connections now";

/// Whether the process could open one more fd (the connection's upstream): a duplicate of
/// `stream`'s fd is made and closed at once (two syscalls per accepted connection, none per
/// request). Err(EMFILE/ENFILE) when it could not: the connection just accepted took the last one.
fn fd_to_spare(stream: &TcpStream) -> io::Result<()> {
    // SAFETY: F_DUPFD_CLOEXEC on a valid fd returns a new fd that we own and close at once, or -1.
    let dup = unsafe { libc::fcntl(stream.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::EMFILE) | Some(libc::ENFILE) => Err(e),
            _ => Ok(()),
        };
    }
    // SAFETY: `dup` is the duplicate made just above; closing it leaves `stream`'s fd open.
    unsafe { libc::close(dup) };
    Ok(())
}

/// One connection the backlog already holds, without waiting (see [`accept_raw`]), as a monoio
/// stream. The new socket is non-blocking only for epoll: io_uring returns EAGAIN on
/// non-blocking sockets instead of waiting for them.
fn accept_ready(listener: &TcpListener, driver: DriverKind) -> Option<(TcpStream, SocketAddr)> {
    let flags = match driver {
        DriverKind::Epoll => libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        DriverKind::IoUring => libc::SOCK_CLOEXEC,
    };
    let std_stream = accept_raw(listener, flags)?;
    let peer = std_stream.peer_addr().ok()?;
    let stream = TcpStream::from_std(std_stream).ok()?;
    Some((stream, peer))
}

/// One connection the backlog already holds, without waiting: a zero-timeout `poll` says
/// whether one is there (the listener may be in blocking mode under io_uring), then `accept4`
/// with `flags`. None when nothing waits or the accept fails (EMFILE included).
fn accept_raw(listener: &TcpListener, flags: libc::c_int) -> Option<std::net::TcpStream> {
    let mut pfd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout: never blocks.
    if unsafe { libc::poll(&mut pfd, 1, 0) } != 1 || pfd.revents & libc::POLLIN == 0 {
        return None;
    }
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
    Some(unsafe { std::net::TcpStream::from_raw_fd(fd) })
}

/// Past --max-connections (or out of fds): answer 503 with `reason` and close, within a bounded
/// time.
async fn reject_overloaded(
    mut stream: TcpStream,
    reason: &str,
    id: crate::proxy::request_id::RequestId,
) {
    let mut out = bytes::BytesMut::new();
    crate::http::write_error_response(503, reason, false, Some(id.as_bytes()), &mut out);
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
                    hand_off,
                } => {
                    let answer =
                        Answer::Ring(crate::sse::lookup::answer(&ctx, &scope, &id, hand_off));
                    ctx.directory.post(from, Message::Answer { token, answer });
                }
                Message::Status { from, token } => {
                    let answer = Answer::Status(Box::new(ctx.status()));
                    ctx.directory.post(from, Message::Answer { token, answer });
                }
                Message::Answer { token, answer } => ctx.answers.fulfil(token, answer),
                Message::Adopt {
                    conn,
                    carried,
                    peer,
                    bytes,
                } => adopt(&ctx, conn, carried, peer, bytes),
                // Between requests, on this worker's own thread: requests already running
                // keep the route they hold.
                Message::Reload { config, generation } => {
                    crate::reload::apply_on_worker(&ctx, &config, generation)
                }
            }
        }
    }
}

/// Serves a connection another worker handed over (a reconnection to a stream read here).
fn adopt(
    ctx: &Rc<WorkerCtx>,
    conn: std::os::fd::OwnedFd,
    carried: crate::client_stream::Carried,
    peer: SocketAddr,
    bytes: bytes::Bytes,
) {
    use crate::client_stream::Carried;
    let std = std::net::TcpStream::from(conn);
    let stream = match std
        .set_nonblocking(true)
        .and_then(|()| TcpStream::from_std(std))
    {
        Ok(stream) => stream,
        Err(e) => {
            crate::log_warn!("cannot take a connection handed over by another worker: {e}");
            return;
        }
    };
    let buf = bytes::BytesMut::from(&bytes[..]);
    match carried {
        Carried::Plain => {
            monoio::spawn(crate::proxy::conn::serve_client_from(
                ctx.clone(),
                stream,
                peer,
                buf,
                true,
            ));
        }
        Carried::Tls(session) => {
            let client = crate::client_tls::TlsClient::new(stream, *session);
            monoio::spawn(crate::proxy::conn::serve_adopted_tls_client(
                ctx.clone(),
                client,
                peer,
                buf,
            ));
        }
        Carried::H2Bridge => {
            let side = crate::client_h2::side::H2Side::new(stream, peer);
            monoio::spawn(crate::proxy::conn::serve_h2_stream(
                ctx.clone(),
                side,
                peer,
                buf,
                true,
            ));
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
