//! Fair turns: a worker's busy streams give way to its I/O loop after every slice of work.
//!
//! monoio runs every task that is ready before it asks the kernel for new completions. Under
//! flat-out load every stream is ready every time, so one loop cycle is a turn of every busy
//! stream, and a cycle's length feeds itself: the longer a cycle, the more each stream has to
//! read in the next. With 1000 flat-out streams on one worker cycles reached 200 ms, and a new
//! connection waits one cycle for each of its steps (its accept, the upstream's answer, the
//! first event): time to first event p99 193 ms against nginx's 97 (perf/NOTES.md).
//!
//! Here the streams charge the time of their turns to the worker's `Turns`. Past `--turn-slice`, a
//! stream that becomes ready waits for the next tick of the I/O loop instead of taking its turn:
//! it rings a bell (one byte on a socket pair the worker watches), and the worker's bell task,
//! which the loop wakes with the completions that came in meanwhile (the new connection's among
//! them), starts a new slice and lets the waiting streams go, in the order they came. A stream
//! that found others waiting queues behind them, so a stream that keeps being ready cannot take
//! turns from those that waited.
//!
//! ```text
//! ready stream -> used < slice and nobody waiting -> its turn (read, frame, record, send), charged
//!              -> otherwise -> queued; the first to queue in a slice rings the bell
//! bell task (woken by the loop's next tick) -> used = 0, the queued streams are woken in order
//! ```
//! The per-turn cost when nobody waits is a clock read and two `Cell` updates.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use monoio::net::UnixStream;

/// A worker's turn keeping (one per worker, in its `WorkerCtx`).
pub(crate) struct Turns {
    /// `--turn-slice`: stream work a worker does before its I/O loop gets a tick, so that a new
    /// connection waits about this long per step under any load, not a turn of every busy
    /// stream. The default (2 ms) is short enough for that and long enough that the tick it
    /// forces (two syscalls) is a small part of the slice.
    slice_len: Duration,
    /// Stream work done since the slice began.
    used: Cell<Duration>,
    /// Slices begun so far: a queued stream knows its slice has passed when this moves on.
    slice: Cell<u64>,
    /// Streams queued for a later slice, in the order they queued.
    queued: RefCell<VecDeque<Waker>>,
    /// Streams queued or let go and not yet taken their turn: a stream newly ready queues
    /// behind them.
    waiting: Cell<usize>,
    /// Turns put off so far (for /metrics).
    deferred_total: Cell<u64>,
    /// The bell was rung in this slice (one ring per slice is enough).
    rung: Cell<bool>,
    /// The end the streams ring (a plain non-blocking write: it never waits).
    bell: StdUnixStream,
}

impl Turns {
    /// A worker's turns and the end its bell task listens on (for `ring_loop`).
    pub(crate) fn new(slice_len: Duration) -> io::Result<(Rc<Turns>, StdUnixStream)> {
        let (bell, listen) = StdUnixStream::pair()?;
        bell.set_nonblocking(true)?;
        listen.set_nonblocking(true)?;
        let turns = Rc::new(Turns {
            slice_len,
            used: Cell::new(Duration::ZERO),
            slice: Cell::new(0),
            queued: RefCell::new(VecDeque::new()),
            waiting: Cell::new(0),
            deferred_total: Cell::new(0),
            rung: Cell::new(false),
            bell,
        });
        Ok((turns, listen))
    }

    /// Resolves when the calling stream may take its turn: at once while the slice has room and
    /// nobody waits, else in a later slice. Cancel-safe: a dropped wait gives up its place.
    pub(crate) fn my_turn(&self) -> MyTurn<'_> {
        MyTurn {
            turns: self,
            queued_in: None,
        }
    }

    /// Charges a turn that began at `started` to the slice.
    pub(crate) fn charge(&self, started: Instant) {
        self.used.set(self.used.get() + started.elapsed());
    }

    /// The first turn of a slice always has room (a zero slice is one turn per tick).
    fn has_room(&self) -> bool {
        let used = self.used.get();
        used.is_zero() || used < self.slice_len
    }

    /// Turns put off to a later slice so far.
    pub(crate) fn deferred_total(&self) -> u64 {
        self.deferred_total.get()
    }

    fn queue(&self, waker: &Waker) -> u64 {
        self.deferred_total.set(self.deferred_total.get() + 1);
        self.queued.borrow_mut().push_back(waker.clone());
        if !self.rung.replace(true) {
            // One byte; a full socket (impossible: the bell task reads every tick) would only
            // mean the bell is already pending.
            // SAFETY: a one-byte buffer that lives for the call.
            unsafe {
                libc::send(
                    self.bell.as_raw_fd(),
                    [1u8].as_ptr().cast(),
                    1,
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            };
        }
        self.slice.get()
    }

    /// A new slice: the loop has had its tick. Lets the queued streams go, in order.
    fn begin_slice(&self) {
        self.used.set(Duration::ZERO);
        self.slice.set(self.slice.get() + 1);
        self.rung.set(false);
        let queued = std::mem::take(&mut *self.queued.borrow_mut());
        for waker in queued {
            waker.wake();
        }
    }
}

/// The worker's bell task: each ring means a slice is used up and streams wait; by the time this
/// task runs, the loop has reaped the completions that came in meanwhile and woken their tasks.
pub(crate) async fn ring_loop(turns: Rc<Turns>, listen: StdUnixStream) {
    let listen = match UnixStream::from_std(listen) {
        Ok(l) => l,
        Err(e) => {
            crate::log_error!("fair turns disabled: cannot watch the bell socket: {e}");
            return;
        }
    };
    let fd = listen.as_raw_fd();
    let mut drain = [std::mem::MaybeUninit::<u8>::uninit(); 64];
    loop {
        if listen.readable(false).await.is_err() {
            crate::log_error!("fair turns: the bell socket failed; streams are no longer paced");
            turns.begin_slice();
            return;
        }
        while let Ok(Some(n)) = crate::conn_io::recv_now(fd, &mut drain) {
            if n < drain.len() {
                break;
            }
        }
        turns.begin_slice();
    }
}

/// See `Turns::my_turn`.
pub(crate) struct MyTurn<'a> {
    turns: &'a Turns,
    /// The slice in which this stream queued (None: not queued).
    queued_in: Option<u64>,
}

impl Future for MyTurn<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let turns = self.turns;
        match self.queued_in {
            None => {
                if turns.has_room() && turns.waiting.get() == 0 {
                    return Poll::Ready(());
                }
                turns.waiting.set(turns.waiting.get() + 1);
                self.queued_in = Some(turns.queue(cx.waker()));
                Poll::Pending
            }
            // Woken by something else before its slice passed: still queued.
            Some(slice) if slice == turns.slice.get() => Poll::Pending,
            Some(_) => {
                if turns.has_room() {
                    turns.waiting.set(turns.waiting.get() - 1);
                    self.queued_in = None;
                    Poll::Ready(())
                } else {
                    // The slice filled up before this stream's place: the next one.
                    self.queued_in = Some(turns.queue(cx.waker()));
                    Poll::Pending
                }
            }
        }
    }
}

impl Drop for MyTurn<'_> {
    fn drop(&mut self) {
        if self.queued_in.is_some() {
            // Its waker may stay queued until the next slice; waking a finished task is a no-op.
            self.turns.waiting.set(self.turns.waiting.get() - 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLICE: Duration = Duration::from_millis(2);

    fn on_both_runtimes(f: fn() -> std::pin::Pin<Box<dyn Future<Output = ()>>>) {
        let mut uring = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
            .enable_timer()
            .build();
        if let Ok(rt) = uring.as_mut() {
            rt.block_on(f());
        }
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("epoll runtime")
            .block_on(f());
    }

    #[test]
    fn a_turn_is_immediate_while_the_slice_has_room() {
        on_both_runtimes(|| {
            Box::pin(async {
                let (turns, listen) = Turns::new(SLICE).unwrap();
                monoio::spawn(ring_loop(turns.clone(), listen));
                for _ in 0..100 {
                    turns.my_turn().await;
                    turns.charge(Instant::now());
                }
                assert_eq!(turns.slice.get(), 0, "no tick was forced");
            })
        });
    }

    #[test]
    fn past_the_slice_streams_wait_for_a_tick_in_order() {
        on_both_runtimes(|| {
            Box::pin(async {
                let (turns, listen) = Turns::new(SLICE).unwrap();
                monoio::spawn(ring_loop(turns.clone(), listen));
                // A slice used up.
                turns.used.set(SLICE);
                let order = Rc::new(RefCell::new(Vec::new()));
                let mut tasks = Vec::new();
                for i in 0..5 {
                    let (turns, order) = (turns.clone(), order.clone());
                    tasks.push(monoio::spawn(async move {
                        turns.my_turn().await;
                        order.borrow_mut().push(i);
                        // Each turn uses a whole slice: one stream per slice.
                        turns.used.set(SLICE);
                    }));
                }
                for t in tasks {
                    t.await;
                }
                assert_eq!(*order.borrow(), vec![0, 1, 2, 3, 4]);
                assert!(
                    turns.slice.get() >= 5,
                    "every turn waited for a tick of its own"
                );
                assert_eq!(turns.waiting.get(), 0);
            })
        });
    }

    #[test]
    fn a_newly_ready_stream_queues_behind_those_waiting() {
        on_both_runtimes(|| {
            Box::pin(async {
                let (turns, listen) = Turns::new(SLICE).unwrap();
                monoio::spawn(ring_loop(turns.clone(), listen));
                turns.used.set(SLICE);
                let order = Rc::new(RefCell::new(Vec::new()));
                let first = {
                    let (turns, order) = (turns.clone(), order.clone());
                    monoio::spawn(async move {
                        turns.my_turn().await;
                        order.borrow_mut().push("waited");
                    })
                };
                // The first has queued by the time a task spawned after it runs; then make
                // room: the newcomer must still not go first.
                let newcomer = {
                    let (turns, order) = (turns.clone(), order.clone());
                    monoio::spawn(async move {
                        assert_eq!(turns.waiting.get(), 1, "the first stream queued");
                        turns.used.set(Duration::ZERO);
                        turns.my_turn().await;
                        order.borrow_mut().push("newcomer");
                    })
                };
                newcomer.await;
                first.await;
                assert_eq!(*order.borrow(), vec!["waited", "newcomer"]);
            })
        });
    }

    #[test]
    fn a_dropped_wait_gives_up_its_place() {
        on_both_runtimes(|| {
            Box::pin(async {
                let (turns, listen) = Turns::new(SLICE).unwrap();
                monoio::spawn(ring_loop(turns.clone(), listen));
                turns.used.set(SLICE);
                {
                    let mut wait = std::pin::pin!(turns.my_turn());
                    let mut cx = Context::from_waker(Waker::noop());
                    assert!(wait.as_mut().poll(&mut cx).is_pending());
                    assert_eq!(turns.waiting.get(), 1);
                }
                assert_eq!(turns.waiting.get(), 0);
                // The next slice lets a new stream straight through.
                turns.used.set(SLICE);
                turns.my_turn().await;
                assert_eq!(turns.waiting.get(), 0);
            })
        });
    }
}
