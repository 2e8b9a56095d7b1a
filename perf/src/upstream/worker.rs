//! One worker thread: its monoio runtime, accept loop, connection registry and kill.
//!
//! Kill path: the handle closes its end of a socketpair; the worker's control task, parked
//! in a read of the other end, wakes up and
//! 1. cancels the pending accept (a `Canceller`: a dropped accept would leak its fd),
//! 2. fires the kill switch (wakes every timer wait),
//! 3. shuts down every open connection socket (`shutdown(SHUT_RDWR)`: the client sees FIN,
//!    and every read, write or `readable()` parked on the socket completes at once).
//!
//! Every connection task then ends and closes its socket, as the kernel would close the
//! sockets of a dead process (RST instead when unread request bytes remain). The accept
//! loop waits for the last connection before `block_on` returns and the thread exits.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::Duration;

use monoio::io::{AsyncReadRent, Canceller};
use monoio::time::{Instant, TimeDriver};
use monoio::{FusionRuntime, IoUringDriver, LegacyDriver, RuntimeBuilder};

use super::kill::Kill;
use super::log::Shared;

/// io_uring submission queue entries per worker (within the kernel's 32768 limit).
const RING_ENTRIES: u32 = 4096;
/// Listen backlog (the kernel clamps it to `net.core.somaxconn`).
pub(crate) const BACKLOG: i32 = 4096;
/// Most connections taken with non-blocking `accept4` after each driver accept.
const ACCEPT_BURST: usize = 63;
/// Pause after a failing accept (EMFILE and the like) before the next try.
const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(10);

type Runtime = FusionRuntime<TimeDriver<IoUringDriver>, TimeDriver<LegacyDriver>>;

/// Builds the worker's runtime: io_uring when available (and not disabled with
/// `MONOIO_FORCE_LEGACY_DRIVER=1`), else epoll; epoll as well when the ring fails to build.
fn build_runtime() -> io::Result<(Runtime, &'static str)> {
    let fused = RuntimeBuilder::<monoio::FusionDriver>::new()
        .with_entries(RING_ENTRIES)
        .enable_timer()
        .build();
    match fused {
        Ok(rt) => {
            let name = match &rt {
                FusionRuntime::Uring(_) => "io_uring",
                FusionRuntime::Legacy(_) => "legacy",
            };
            Ok((rt, name))
        }
        Err(_) => {
            let rt = RuntimeBuilder::<LegacyDriver>::new()
                .enable_timer()
                .build()?;
            Ok((rt.into(), "legacy"))
        }
    }
}

/// State of one worker thread, shared by its tasks.
pub(crate) struct Worker {
    /// The request log and counters shared with the other threads and the handle.
    pub(crate) shared: Arc<Shared>,
    /// Fired when the handle kills the simulator.
    pub(crate) kill: Kill,
    /// Open connection sockets, for the kill sweep.
    conns: RefCell<HashMap<u64, RawFd>>,
    /// Key of the next registration.
    next_key: Cell<u64>,
    /// Waker of the accept loop waiting for the last connection to close.
    idle: RefCell<Option<Waker>>,
}

/// Keeps a connection in the registry; removes it when dropped.
pub(crate) struct Registration {
    worker: Rc<Worker>,
    key: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut conns = self.worker.conns.borrow_mut();
        conns.remove(&self.key);
        if conns.is_empty() {
            if let Some(w) = self.worker.idle.borrow_mut().take() {
                w.wake();
            }
        }
    }
}

impl Worker {
    #[cfg(test)]
    pub(crate) fn new_for_test(shared: Arc<Shared>) -> Self {
        Self::new(shared)
    }

    fn new(shared: Arc<Shared>) -> Self {
        Self {
            shared,
            kill: Kill::default(),
            conns: RefCell::new(HashMap::new()),
            next_key: Cell::new(0),
            idle: RefCell::new(None),
        }
    }

    /// Registers an open connection socket for the kill sweep.
    pub(crate) fn register(self: &Rc<Self>, fd: RawFd) -> Registration {
        let key = self.next_key.get();
        self.next_key.set(key + 1);
        self.conns.borrow_mut().insert(key, fd);
        Registration {
            worker: self.clone(),
            key,
        }
    }

    /// Fires the kill switch and shuts down every open connection socket.
    fn kill_all(&self) {
        self.kill.fire();
        for &fd in self.conns.borrow().values() {
            // SAFETY: every registered fd is an open socket: a connection unregisters in
            // the same synchronous drop that closes it, and this runs on the same thread.
            unsafe {
                libc::shutdown(fd, libc::SHUT_RDWR);
            }
        }
    }

    /// Completes once no connection is open.
    async fn all_closed(&self) {
        std::future::poll_fn(|cx| {
            if self.conns.borrow().is_empty() {
                Poll::Ready(())
            } else {
                *self.idle.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// What a worker thread needs.
pub(crate) struct WorkerStart {
    /// The shared listening socket (a dup per worker).
    pub(crate) listener: std::net::TcpListener,
    /// Our end of the control socketpair: EOF or any byte means "kill".
    pub(crate) control: std::os::unix::net::UnixStream,
    /// Shared state.
    pub(crate) shared: Arc<Shared>,
    /// Refuse connections (do not listen yet) until then.
    pub(crate) listen_at: Option<std::time::Instant>,
    /// Where to report start-up: the driver's name, or why the worker could not start.
    pub(crate) ready: mpsc::Sender<io::Result<&'static str>>,
}

/// The worker thread's body.
pub(crate) fn run(start: WorkerStart) {
    let WorkerStart {
        listener,
        control,
        shared,
        listen_at,
        ready,
    } = start;
    let (mut rt, driver) = match build_runtime() {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    rt.block_on(async move {
        // Listeners and streams must be registered inside the runtime.
        let registered = listener
            .set_nonblocking(true)
            .and_then(|()| control.set_nonblocking(true))
            .and_then(|()| monoio::net::TcpListener::from_std(listener))
            .and_then(|l| monoio::net::UnixStream::from_std(control).map(|c| (l, c)));
        let (listener, control) = match registered {
            Ok(pair) => pair,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(driver));

        let worker = Rc::new(Worker::new(shared));
        let canceller = Canceller::new();
        let accept_cancel = canceller.handle();
        monoio::spawn(control_task(control, worker.clone(), canceller));

        // In a task of its own, not in the runtime's main future: monoio polls the main future
        // only after every queued task, and a task spawned there runs after the driver's next
        // submission (under flat-out load, the kernel half of a round: 1000 writes). Spawned
        // from a task, a new connection's task runs in the same pass, and answers at once
        // (`direct.rs`) before that submission.
        let accepting = monoio::spawn(accept_loop(
            listener,
            worker.clone(),
            accept_cancel,
            listen_at,
        ));
        accepting.await;
        worker.all_closed().await;
    });
}

/// Accepts until the kill: a bare accept loop, the accept cancelled (never dropped) on kill.
/// With `listen_at`, the listener starts listening then (connections are refused until).
async fn accept_loop(
    listener: monoio::net::TcpListener,
    worker: Rc<Worker>,
    accept_cancel: monoio::io::CancelHandle,
    listen_at: Option<std::time::Instant>,
) {
    if let Some(at) = listen_at {
        let wait = super::kill::sleep_until(Instant::from_std(at));
        if worker.kill.guard(wait).await.is_some() {
            // SAFETY: plain syscall on the listening socket we own; listening twice
            // (several workers share it) only updates the backlog.
            unsafe {
                libc::listen(listener.as_raw_fd(), BACKLOG);
            }
        }
    }

    // A bare accept loop: the accept is cancelled (never dropped) on kill.
    while !worker.kill.is_fired() {
        match listener.cancelable_accept(accept_cancel.clone()).await {
            Ok((stream, _peer)) => {
                if worker.kill.is_fired() {
                    break;
                }
                start_conn(&worker, stream);
                // Take whatever else is already queued without another trip through
                // the driver: one accept per ring cycle starves connection setup while
                // busy streams fill every cycle.
                for _ in 0..ACCEPT_BURST {
                    match accept_now(listener.as_raw_fd()) {
                        Some(stream) => start_conn(&worker, stream),
                        None => break,
                    }
                }
            }
            Err(_) if worker.kill.is_fired() => break,
            Err(_) => {
                let pause = super::kill::sleep_until(Instant::now() + ACCEPT_ERROR_BACKOFF);
                worker.kill.guard(pause).await;
            }
        }
    }
}

/// Spawns the task of an accepted connection.
fn start_conn(worker: &Rc<Worker>, stream: monoio::net::TcpStream) {
    set_cloexec(stream.as_raw_fd());
    let _ = stream.set_nodelay(true);
    let id = worker.shared.next_conn_id();
    // Registered before the task first runs, so the final wait for all connections also
    // covers tasks that were spawned but never polled.
    let registration = worker.register(stream.as_raw_fd());
    monoio::spawn(super::conn::serve(stream, id, worker.clone(), registration));
}

/// Marks an accepted socket close-on-exec. monoio 0.2.4's io_uring accept op passes no flags,
/// so its sockets are inherited by any process the host process starts (the legacy driver's
/// `accept4` sets `SOCK_CLOEXEC`). Run in a test process that also starts tether, a simulator
/// connection was then held open by that child after the simulator closed it: no FIN reached the
/// proxy, whose stream stalled while the simulator, with nothing left to do, parked with no timer
/// pending (perf/NOTES.md, "a monoio io_uring runtime parked without a timeout"). A child started
/// between the accept and this call still inherits the socket: a window of microseconds instead
/// of the connection's life.
fn set_cloexec(fd: RawFd) {
    // SAFETY: F_SETFD on a socket this worker owns; no memory is passed.
    unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
    }
}

/// A non-blocking `accept4` on the listening socket: a connection already queued, or None.
fn accept_now(listener: RawFd) -> Option<monoio::net::TcpStream> {
    // SAFETY: plain syscall on our listening socket; null address arguments are allowed.
    let fd = unsafe {
        libc::accept4(
            listener,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is a freshly accepted socket that nothing else owns.
    let std_stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
    monoio::net::TcpStream::from_std(std_stream).ok()
}

/// Waits for the kill signal from the handle, then kills the worker.
async fn control_task(
    mut control: monoio::net::UnixStream,
    worker: Rc<Worker>,
    canceller: Canceller,
) {
    // Awaited to completion: returns on EOF (handle dropped) or any byte.
    let _ = control.read(vec![0u8; 8]).await;
    let _ = canceller.cancel();
    worker.kill_all();
}
