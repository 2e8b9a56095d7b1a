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
//! it queues and rings a bell (one byte on a socket pair the worker watches), and the worker's
//! bell task, which the loop wakes with the completions that came in meanwhile (the new
//! connection's among them), starts a new slice. A stream that found others waiting queues
//! behind them, so a stream that keeps being ready cannot take turns from those that waited.
//!
//! The queue is let go one stream at a time, as a chain: the stream at the front is woken; when
//! it starts its turn it wakes the next, which runs after it if the slice still has room and
//! otherwise waits at the front for the next slice. Every deferred turn costs one extra poll of
//! its task, however long the queue (waking the whole queue each slice cost one poll per waiting
//! stream per slice: with 1000 flat-out streams and ~200 turns per slice, four per turn).
//!
//! ```text
//! ready stream -> room, nobody waiting -> its turn (read, frame, record, send), charged
//!              -> otherwise -> queued (the first to find no room rings the bell)
//! bell task (the loop's next tick) -> used = 0; the front of the queue is woken
//! front stream woken -> room: its turn, and the next in the queue is woken
//!                    -> no room: stays at the front, rings the bell
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
use std::time::Duration;

use monoio::net::UnixStream;

use crate::stamp::Stamp;

/// Entries of room each turn queue keeps when it gives back a burst's (`Turns::shrink_queues`):
/// enough for the streams a busy worker queues in a slice without growing again.
const QUEUE_ROOM_KEPT: usize = 256;

/// A worker's turn keeping (one per worker, in its `WorkerCtx`).
pub(crate) struct Turns {
    /// `--turn-slice`: stream work a worker does before its I/O loop gets a tick, so that a new
    /// connection waits about this long per step under any load, not a turn of every busy
    /// stream. The default (2 ms) is short enough for that and long enough that the tick it
    /// forces (two syscalls) is a small part of the slice.
    slice_len: Duration,
    /// Stream work done since the slice began.
    used: Cell<Duration>,
    /// Streams queued and not let go yet, in the order they queued, with their tickets.
    queued: RefCell<VecDeque<(u64, Waker)>>,
    /// Streams that have not delivered since they started (a new client waiting for its first
    /// event, a resumed stream for its first new one), queued: let go before `queued`.
    queued_ahead: RefCell<VecDeque<(u64, Waker)>>,
    /// Of `waiting`, those queued ahead (or let go from there and not yet started).
    waiting_ahead: Cell<usize>,
    /// The stream let go and not yet started (at most one: the chain's link), and its waker if
    /// it found no room and waits for the next slice.
    front: RefCell<Option<(u64, Option<Waker>)>>,
    /// Streams queued or let go and not yet started: a stream newly ready queues behind them.
    waiting: Cell<usize>,
    next_ticket: Cell<u64>,
    /// Turns put off so far (for /metrics).
    deferred_total: Cell<u64>,
    /// The bell was rung and its tick has not come yet (one ring per slice is enough).
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
            queued: RefCell::new(VecDeque::new()),
            queued_ahead: RefCell::new(VecDeque::new()),
            waiting_ahead: Cell::new(0),
            front: RefCell::new(None),
            waiting: Cell::new(0),
            next_ticket: Cell::new(0),
            deferred_total: Cell::new(0),
            rung: Cell::new(false),
            bell,
        });
        Ok((turns, listen))
    }

    /// Gives back the queues' room beyond what they hold (and a little more): a burst of new
    /// connections queues thousands of first turns at once (9000 idle streams opened in a second
    /// left ~8192 entries of room, 196 KiB, ~22 bytes per stream held for good). Called once a
    /// burst has passed (`crate::memory::return_after_bursts`), before the heap's freed pages
    /// go back to the system.
    pub(crate) fn shrink_queues(&self) {
        for queue in [&self.queued, &self.queued_ahead] {
            let mut queue = queue.borrow_mut();
            let keep = queue.len().max(QUEUE_ROOM_KEPT);
            queue.shrink_to(keep);
        }
    }

    /// Resolves when the calling stream may take its turn: at once while the slice has room and
    /// nobody waits, else in a later slice. Cancel-safe: a dropped wait gives up its place.
    ///
    /// `ahead`: the stream has delivered nothing since it started (a new client's first event,
    /// a resumed stream's first new one). It waits only for room and for others ahead, not
    /// behind the busy streams: under flat-out load hundreds of them wait, about a round of
    /// slices (perf/NOTES.md, "A new stream's first turn, ahead of the busy ones"). Still
    /// charged and bounded by the slice, so a burst of new streams cannot hold the loop.
    pub(crate) fn my_turn(&self, ahead: bool) -> MyTurn<'_> {
        MyTurn {
            turns: self,
            ticket: None,
            ahead,
        }
    }

    /// Charges a turn that began at `started` to the slice; returns the clock's reading at its
    /// end (the caller's `now`, so that the turn's end costs one clock read, not two).
    pub(crate) fn charge(&self, started: Stamp) -> Stamp {
        let now = Stamp::now();
        self.used
            .set(self.used.get() + now.saturating_since(started));
        now
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

    fn ring(&self) {
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
    }

    /// Lets the first queued stream go, if no other is let go already.
    fn release_next(&self) {
        let mut front = self.front.borrow_mut();
        if front.is_some() {
            return;
        }
        let next = self.queued_ahead.borrow_mut().pop_front();
        let next = next.or_else(|| self.queued.borrow_mut().pop_front());
        if let Some((ticket, waker)) = next {
            *front = Some((ticket, None));
            drop(front);
            waker.wake();
        }
    }

    /// A new slice: the loop has had its tick. The chain starts again at the front.
    fn begin_slice(&self) {
        self.used.set(Duration::ZERO);
        self.rung.set(false);
        let parked = self.front.borrow_mut().as_mut().and_then(|(_, w)| w.take());
        match parked {
            Some(waker) => waker.wake(),
            None => self.release_next(),
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
    /// This stream's place once it queued (None: not queued).
    ticket: Option<u64>,
    /// Queues ahead of the busy streams (see `Turns::my_turn`).
    ahead: bool,
}

impl MyTurn<'_> {
    /// No longer waiting: started, or dropped.
    fn leave(&self) {
        let turns = self.turns;
        turns.waiting.set(turns.waiting.get() - 1);
        if self.ahead {
            turns.waiting_ahead.set(turns.waiting_ahead.get() - 1);
        }
    }
}

impl Future for MyTurn<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let turns = self.turns;
        let Some(ticket) = self.ticket else {
            let before = if self.ahead {
                turns.waiting_ahead.get()
            } else {
                turns.waiting.get()
            };
            if turns.has_room() && before == 0 {
                return Poll::Ready(());
            }
            let ticket = turns.next_ticket.get();
            turns.next_ticket.set(ticket + 1);
            let queue = if self.ahead {
                turns.waiting_ahead.set(turns.waiting_ahead.get() + 1);
                &turns.queued_ahead
            } else {
                &turns.queued
            };
            queue.borrow_mut().push_back((ticket, cx.waker().clone()));
            turns.waiting.set(turns.waiting.get() + 1);
            turns.deferred_total.set(turns.deferred_total.get() + 1);
            self.ticket = Some(ticket);
            if turns.has_room() {
                // Others wait, yet the slice has room: make sure the chain is moving.
                turns.release_next();
            } else {
                turns.ring();
            }
            return Poll::Pending;
        };
        let mut front = turns.front.borrow_mut();
        match front.as_mut() {
            Some((at_front, parked)) if *at_front == ticket => {
                if turns.has_room() {
                    *front = None;
                    drop(front);
                    self.leave();
                    self.ticket = None;
                    // The next one runs after this turn, if there is still room then.
                    turns.release_next();
                    Poll::Ready(())
                } else {
                    *parked = Some(cx.waker().clone());
                    drop(front);
                    turns.ring();
                    Poll::Pending
                }
            }
            // Still queued (woken by something else).
            _ => Poll::Pending,
        }
    }
}

impl Drop for MyTurn<'_> {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket else {
            return;
        };
        let turns = self.turns;
        self.leave();
        let was_front = {
            let mut front = turns.front.borrow_mut();
            let was = front.as_ref().is_some_and(|(t, _)| *t == ticket);
            if was {
                *front = None;
            }
            was
        };
        if was_front {
            // The chain went through this stream: hand it on.
            if turns.has_room() {
                turns.release_next();
            } else if turns.waiting.get() > 0 {
                turns.ring();
            }
        } else if self.ahead {
            turns
                .queued_ahead
                .borrow_mut()
                .retain(|(t, _)| *t != ticket);
        } else {
            turns.queued.borrow_mut().retain(|(t, _)| *t != ticket);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_drivers::on_each_driver;

    const SLICE: Duration = Duration::from_millis(2);

    /// A worker's turns with its bell task running (inside a runtime).
    fn ringing() -> Rc<Turns> {
        let (turns, listen) = Turns::new(SLICE).unwrap();
        monoio::spawn(ring_loop(turns.clone(), listen));
        turns
    }

    #[test]
    fn a_turn_is_immediate_while_the_slice_has_room() {
        on_each_driver(|| {
            Box::pin(async {
                let turns = ringing();
                for _ in 0..100 {
                    turns.my_turn(false).await;
                    turns.charge(Stamp::now());
                }
                assert_eq!(turns.deferred_total(), 0, "no turn was put off");
            })
        });
    }

    #[test]
    fn past_the_slice_streams_wait_for_a_tick_in_order() {
        on_each_driver(|| {
            Box::pin(async {
                let turns = ringing();
                // A slice used up.
                turns.used.set(SLICE);
                let order = Rc::new(RefCell::new(Vec::new()));
                let mut tasks = Vec::new();
                for i in 0..5 {
                    let (turns, order) = (turns.clone(), order.clone());
                    tasks.push(monoio::spawn(async move {
                        turns.my_turn(false).await;
                        order.borrow_mut().push(i);
                        // Each turn uses a whole slice: one stream per slice.
                        turns.used.set(SLICE);
                    }));
                }
                for t in tasks {
                    t.await;
                }
                assert_eq!(*order.borrow(), vec![0, 1, 2, 3, 4]);
                assert_eq!(turns.deferred_total(), 5, "every turn waited");
                assert_eq!(turns.waiting.get(), 0);
                assert!(turns.front.borrow().is_none() && turns.queued.borrow().is_empty());
            })
        });
    }

    #[test]
    fn a_burst_of_waiting_streams_gives_its_queue_room_back() {
        on_each_driver(|| {
            Box::pin(async {
                let turns = ringing();
                // A burst: 2000 streams queue while the slice is used up, then all go.
                turns.used.set(SLICE);
                let tasks: Vec<_> = (0..2000)
                    .map(|_| {
                        let turns = turns.clone();
                        monoio::spawn(async move {
                            turns.my_turn(false).await;
                        })
                    })
                    .collect();
                for t in tasks {
                    t.await;
                }
                assert!(turns.queued.borrow().capacity() >= 2000, "the burst queued");
                turns.shrink_queues();
                let room = turns.queued.borrow().capacity();
                assert!(room <= 2 * QUEUE_ROOM_KEPT, "room kept: {room}");
                // Turns go on as before.
                turns.used.set(SLICE);
                let late = monoio::spawn({
                    let turns = turns.clone();
                    async move { turns.my_turn(false).await }
                });
                late.await;
                assert_eq!(turns.waiting.get(), 0);
            })
        });
    }

    #[test]
    fn a_newly_ready_stream_queues_behind_those_waiting() {
        on_each_driver(|| {
            Box::pin(async {
                let turns = ringing();
                turns.used.set(SLICE);
                let order = Rc::new(RefCell::new(Vec::new()));
                let first = {
                    let (turns, order) = (turns.clone(), order.clone());
                    monoio::spawn(async move {
                        turns.my_turn(false).await;
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
                        turns.my_turn(false).await;
                        order.borrow_mut().push("newcomer");
                    })
                };
                newcomer.await;
                first.await;
                assert_eq!(*order.borrow(), vec!["waited", "newcomer"]);
            })
        });
    }

    /// A stream that has not delivered yet passes the busy streams waiting for their turns: it
    /// goes at once while the slice has room, and past the slice it is let go first.
    #[test]
    fn a_stream_yet_to_deliver_goes_ahead_of_the_busy_ones() {
        let (turns, _listen) = Turns::new(SLICE).unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        turns.used.set(SLICE);
        let mut busy = Box::pin(turns.my_turn(false));
        assert!(busy.as_mut().poll(&mut cx).is_pending());
        turns.begin_slice();
        // `busy` is let go (the chain's link) but has not started: room, yet someone waits.
        let mut new = Box::pin(turns.my_turn(true));
        assert!(new.as_mut().poll(&mut cx).is_ready(), "room: at once");
        let mut later = Box::pin(turns.my_turn(false));
        assert!(
            later.as_mut().poll(&mut cx).is_pending(),
            "a busy stream still queues"
        );
        // A full slice: the newcomer queues, but ahead of `later`.
        turns.used.set(SLICE);
        assert!(busy.as_mut().poll(&mut cx).is_pending());
        let mut second_new = Box::pin(turns.my_turn(true));
        assert!(second_new.as_mut().poll(&mut cx).is_pending());
        turns.begin_slice();
        assert!(busy.as_mut().poll(&mut cx).is_ready(), "the front first");
        assert!(second_new.as_mut().poll(&mut cx).is_ready(), "then ahead");
        turns.used.set(SLICE);
        assert!(later.as_mut().poll(&mut cx).is_pending());
        turns.begin_slice();
        assert!(later.as_mut().poll(&mut cx).is_ready());
        assert_eq!(turns.waiting.get(), 0);
        assert_eq!(turns.waiting_ahead.get(), 0);
    }

    #[test]
    fn a_dropped_wait_gives_up_its_place() {
        on_each_driver(|| {
            Box::pin(async {
                let turns = ringing();
                turns.used.set(SLICE);
                {
                    let mut wait = std::pin::pin!(turns.my_turn(false));
                    let mut cx = Context::from_waker(Waker::noop());
                    assert!(wait.as_mut().poll(&mut cx).is_pending());
                    assert_eq!(turns.waiting.get(), 1);
                }
                assert_eq!(turns.waiting.get(), 0);
                // The next slice lets a new stream straight through.
                turns.used.set(SLICE);
                turns.my_turn(false).await;
                assert_eq!(turns.waiting.get(), 0);
            })
        });
    }

    /// The chain is handed on when the stream it reached is dropped before its turn (a stream
    /// that ended meanwhile), and a stream let go waits at the front, not at the back, when the
    /// slice is full again.
    #[test]
    fn the_chain_survives_a_dropped_link_and_keeps_its_order() {
        let (turns, _listen) = Turns::new(SLICE).unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        turns.used.set(SLICE);
        let mut first = Box::pin(turns.my_turn(false));
        let mut second = Box::pin(turns.my_turn(false));
        let mut third = Box::pin(turns.my_turn(false));
        for w in [&mut first, &mut second, &mut third] {
            assert!(w.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(turns.waiting.get(), 3);
        turns.begin_slice();
        drop(first);
        // `second` is at the front now; a full slice keeps it there.
        turns.used.set(SLICE);
        assert!(second.as_mut().poll(&mut cx).is_pending());
        assert!(
            third.as_mut().poll(&mut cx).is_pending(),
            "not before the front"
        );
        turns.begin_slice();
        assert!(second.as_mut().poll(&mut cx).is_ready());
        assert!(
            third.as_mut().poll(&mut cx).is_ready(),
            "let go by the one before it"
        );
        assert_eq!(turns.waiting.get(), 0);
    }
}
