//! One timer per worker for the deadlines of its many streams (heartbeats, upstream idle
//! timeouts, send timeouts, the client watch): a monoio `Sleep` is 640 bytes, which was the
//! largest single part of an idle stream with heartbeats on. Here a stream holds a `TimerSlot`
//! (16 bytes, and a 48-byte slot in the worker's table while it exists), and the worker's one
//! driver task sleeps until the earliest deadline of all and wakes the streams whose deadlines
//! passed.
//!
//! The queue holds at most one entry per slot and per earlier deadline: moving a deadline later
//! (the common case: a heartbeat pushed back by every write) touches only the slot; when its old
//! entry comes due, the driver sees the later deadline and queues that instead. A slot's waiter
//! reads no clock: the driver marks a slot `elapsed` when it finds its deadline passed, and
//! every `arm` clears the mark, so a wake-up is never wrong, only at worst spurious.
//!
//! A connection's IO steps are bounded the same way (`TimerSlot::within`): one slot for the
//! connection, re-armed per step (read the request head, write upstream, read the answer, write
//! the client), instead of a monoio `timeout` per step, whose 640-byte `Sleep` was moved in with
//! every operation and inserted into and removed from the runtime's wheel. Steps follow each
//! other with deadlines that mostly move later, so a step costs a `Cell`-like update of the
//! slot, rarely a queue entry (perf/NOTES.md "One timer per connection").

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// How far the driver sleeps when no deadline is queued (it is woken earlier by any new one).
const IDLE_SLEEP: Duration = Duration::from_secs(3600);

/// A worker's timers.
#[derive(Default)]
pub struct Timers {
    inner: RefCell<Inner>,
}

#[derive(Default)]
struct Inner {
    slots: Vec<Slot>,
    /// Indexes of slots no `TimerSlot` holds.
    free: Vec<u32>,
    /// (deadline, slot), earliest first; entries whose slot moved on are skipped when popped.
    queue: BinaryHeap<Reverse<(Instant, u32)>>,
    /// What the driver sleeps until (None: it has not looked yet, or is running).
    driver_at: Option<Instant>,
    /// Set when a deadline earlier than `driver_at` was queued: the driver must look again.
    rescan: bool,
    driver_waker: Option<Waker>,
}

#[derive(Default)]
struct Slot {
    deadline: Option<Instant>,
    /// The earliest queue entry for this slot, if any.
    queued: Option<Instant>,
    waker: Option<Waker>,
    /// The driver found `deadline` passed (cleared by every `arm`): what `within` checks,
    /// so that a step polled while it waits reads no clock.
    elapsed: bool,
}

/// A step bounded by `TimerSlot::within` did not complete in time (its operation was dropped).
#[derive(Debug)]
pub struct Elapsed;

impl Timers {
    pub fn new() -> Rc<Timers> {
        Rc::new(Timers::default())
    }

    /// Number of slots held.
    #[cfg(test)]
    pub fn slots_in_use(&self) -> usize {
        let inner = self.inner.borrow();
        inner.slots.len() - inner.free.len()
    }

    /// The driver: sleeps until the earliest deadline, wakes the slots whose deadlines passed,
    /// and starts over; runs for the worker's life (spawn it once per worker).
    pub async fn drive(self: Rc<Self>) {
        let mut sleep = Box::pin(monoio::time::sleep(IDLE_SLEEP));
        loop {
            let next = self.fire_due(Instant::now());
            let at = next.unwrap_or_else(|| Instant::now() + IDLE_SLEEP);
            sleep.as_mut().reset(at.into());
            {
                let mut inner = self.inner.borrow_mut();
                inner.driver_at = Some(at);
            }
            poll_fn(|cx| {
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(());
                }
                let mut inner = self.inner.borrow_mut();
                if std::mem::take(&mut inner.rescan) {
                    return Poll::Ready(());
                }
                inner.driver_waker = Some(cx.waker().clone());
                Poll::Pending
            })
            .await;
            self.inner.borrow_mut().driver_at = None;
        }
    }

    /// Wakes every slot whose deadline is at or before `now`; returns the next deadline queued.
    fn fire_due(&self, now: Instant) -> Option<Instant> {
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        while let Some(&Reverse((at, index))) = inner.queue.peek() {
            if at > now {
                return Some(at);
            }
            inner.queue.pop();
            let slot = &mut inner.slots[index as usize];
            if slot.queued != Some(at) {
                continue; // an entry the slot no longer counts on
            }
            slot.queued = None;
            match slot.deadline {
                Some(deadline) if deadline <= now => {
                    slot.elapsed = true;
                    if let Some(waker) = slot.waker.take() {
                        waker.wake();
                    }
                }
                Some(later) => {
                    slot.queued = Some(later);
                    inner.queue.push(Reverse((later, index)));
                }
                None => {}
            }
        }
        None
    }

    fn alloc(&self) -> u32 {
        let mut inner = self.inner.borrow_mut();
        match inner.free.pop() {
            Some(index) => index,
            None => {
                inner.slots.push(Slot::default());
                u32::try_from(inner.slots.len() - 1).expect("fewer than 2^32 timers")
            }
        }
    }
}

/// One stream's timer: armed for one deadline at a time, re-armed freely.
pub struct TimerSlot {
    timers: Rc<Timers>,
    index: u32,
}

impl TimerSlot {
    pub fn new(timers: &Rc<Timers>) -> TimerSlot {
        TimerSlot {
            index: timers.alloc(),
            timers: timers.clone(),
        }
    }

    /// Sets the deadline (replacing any earlier one).
    pub fn arm(&mut self, at: Instant) {
        let mut inner = self.timers.inner.borrow_mut();
        let inner = &mut *inner;
        let slot = &mut inner.slots[self.index as usize];
        slot.deadline = Some(at);
        slot.elapsed = false;
        if slot.queued.is_some_and(|queued| queued <= at) {
            return; // the entry already queued comes first and will requeue this deadline
        }
        slot.queued = Some(at);
        inner.queue.push(Reverse((at, self.index)));
        if inner.driver_at.is_some_and(|driver_at| at < driver_at) {
            inner.rescan = true;
            if let Some(waker) = inner.driver_waker.take() {
                waker.wake();
            }
        }
    }

    /// Resolves when the armed deadline has passed (the driver found it due); never before it is
    /// armed. Cancel-safe: dropping it only leaves a waker that may be woken once for nothing.
    #[cfg(test)]
    pub async fn fired(&mut self) {
        poll_fn(|cx| self.poll_fired(cx)).await
    }

    /// `fired` as a poll: for a caller that keeps the wait in its own (smaller) future
    /// (`sse::stream_timer`: an async fn around `fired` took 48 bytes of every stream's select
    /// where a `poll_fn` over this takes 8).
    ///
    /// No clock read: a stream polls this in every wake-up it has (each event, at a fixed
    /// rate), while the deadline passes once; the driver marks the slot `elapsed` when it finds
    /// the deadline due, and every `arm` clears the mark. The waker is kept when it would wake
    /// the same task (no clone per poll).
    pub fn poll_fired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_elapsed(cx)
    }
}

impl TimerSlot {
    /// Runs `op` until it completes or `limit` passes, whichever comes first: `Err(Elapsed)` with
    /// `op` dropped mid-flight (on a socket that then must be closed, as with monoio's
    /// `timeout`). The slot is armed only if `op` does not complete when first polled (an
    /// epoll write usually does), and disarmed when it completes, so nothing stale wakes the
    /// task later.
    pub fn within<F: Future>(&mut self, limit: Duration, op: F) -> Within<'_, F> {
        Within {
            op,
            slot: self,
            arm: Some(ArmAt::After(limit)),
        }
    }

    /// `within`, up to an instant rather than for a duration.
    pub fn within_until<F: Future>(&mut self, at: Instant, op: F) -> Within<'_, F> {
        Within {
            op,
            slot: self,
            arm: Some(ArmAt::At(at)),
        }
    }

    /// Forgets the deadline (and the waker): nothing wakes the task for it later.
    fn disarm(&mut self) {
        let mut inner = self.timers.inner.borrow_mut();
        let slot = &mut inner.slots[self.index as usize];
        slot.deadline = None;
        slot.waker = None;
        slot.elapsed = false;
    }

    /// Ready once the driver found the armed deadline passed.
    fn poll_elapsed(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.timers.inner.borrow_mut();
        let slot = &mut inner.slots[self.index as usize];
        if slot.elapsed {
            return Poll::Ready(());
        }
        match &slot.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => slot.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// See `TimerSlot::within`. Holds the operation and a pointer: moved into place with the
/// operation's bytes only.
pub struct Within<'a, F> {
    op: F,
    slot: &'a mut TimerSlot,
    /// Taken when the slot is armed (the first time `op` is pending).
    arm: Option<ArmAt>,
}

enum ArmAt {
    /// This long after the operation is first pending.
    After(Duration),
    At(Instant),
}

impl<F: Future> Future for Within<'_, F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `op` is structurally pinned: it is never moved out of `self` (only polled in
        // place and dropped with it), and `Within` has no `Drop` or `Unpin` impl of its own. The
        // other fields are not pinned. (Unsafe to avoid `pin!`'s extra move of the operation:
        // those moves were 8 % of a keep-alive request's instructions, perf/NOTES.md.)
        let this = unsafe { self.get_unchecked_mut() };
        let op = unsafe { Pin::new_unchecked(&mut this.op) };
        if let Poll::Ready(out) = op.poll(cx) {
            if this.arm.is_none() {
                this.slot.disarm();
            }
            return Poll::Ready(Ok(out));
        }
        match this.arm.take() {
            Some(ArmAt::After(limit)) => this.slot.arm(Instant::now() + limit),
            Some(ArmAt::At(at)) => this.slot.arm(at),
            None => {}
        }
        this.slot.poll_elapsed(cx).map(|()| Err(Elapsed))
    }
}

impl Drop for TimerSlot {
    fn drop(&mut self) {
        let mut inner = self.timers.inner.borrow_mut();
        let slot = &mut inner.slots[self.index as usize];
        *slot = Slot::default();
        inner.free.push(self.index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_drivers::on_each_driver;

    /// Many slots with deadlines in any order each fire once, not before their deadline, in
    /// deadline order; moving a deadline later or earlier is honoured,
    /// and a dropped slot's index is reused without its old deadline.
    #[test]
    fn slots_fire_at_their_deadlines() {
        on_each_driver(|| async {
            let timers = Timers::new();
            monoio::spawn(timers.clone().drive());
            let start = Instant::now();
            let order = Rc::new(RefCell::new(Vec::new()));
            let mut handles = Vec::new();
            for (i, ms) in [40u64, 10, 30, 20, 50].into_iter().enumerate() {
                let timers = timers.clone();
                let order = order.clone();
                handles.push(monoio::spawn(async move {
                    let mut slot = TimerSlot::new(&timers);
                    // Armed late first, then moved earlier (slot 0 twice: later, then earlier).
                    slot.arm(start + Duration::from_millis(500));
                    if i == 0 {
                        slot.arm(start + Duration::from_millis(900));
                    }
                    slot.arm(start + Duration::from_millis(ms));
                    slot.fired().await;
                    assert!(start.elapsed() >= Duration::from_millis(ms), "not early");
                    order.borrow_mut().push(ms);
                }));
            }
            // A slot dropped before its deadline leaves a queue entry behind; the slot that
            // reuses its index must not fire at that stale deadline.
            let reused = {
                let timers = timers.clone();
                monoio::spawn(async move {
                    let mut early = TimerSlot::new(&timers);
                    early.arm(start + Duration::from_millis(5));
                    drop(early);
                    let mut late = TimerSlot::new(&timers);
                    late.arm(start + Duration::from_millis(80));
                    late.fired().await;
                    assert!(start.elapsed() >= Duration::from_millis(80), "fired early");
                })
            };
            for h in handles {
                h.await;
            }
            reused.await;
            assert_eq!(*order.borrow(), vec![10, 20, 30, 40, 50]);
            assert_eq!(timers.slots_in_use(), 0, "dropped slots are freed");
            let reused = TimerSlot::new(&timers);
            assert!(reused.index < 6, "a freed slot is reused");
        });
    }

    /// A deadline pushed later again and again (a heartbeat moved by every write) fires once, at
    /// the last deadline, and leaves at most one queue entry behind per move to an earlier time.
    #[test]
    fn a_deadline_moved_later_fires_once_at_the_end() {
        on_each_driver(|| async {
            let timers = Timers::new();
            monoio::spawn(timers.clone().drive());
            let start = Instant::now();
            let mut slot = TimerSlot::new(&timers);
            for i in 1..=100u64 {
                slot.arm(start + Duration::from_millis(20 + i / 4));
            }
            assert_eq!(
                timers.inner.borrow().queue.len(),
                1,
                "one entry for later moves"
            );
            slot.fired().await;
            assert!(start.elapsed() >= Duration::from_millis(45));
        });
    }

    /// `within` bounds one step after another through one slot: a step that completes returns
    /// its output and leaves the slot disarmed; a step that never completes gives `Elapsed`, not
    /// before its limit; steps whose deadlines move later add no queue entry of their own.
    #[test]
    fn within_bounds_steps_through_one_slot() {
        on_each_driver(|| async {
            let timers = Timers::new();
            monoio::spawn(timers.clone().drive());
            let mut slot = TimerSlot::new(&timers);
            // Ready at once: the slot is never armed.
            let got = slot.within(Duration::from_millis(5), async { 7 }).await;
            assert_eq!(got.ok(), Some(7));
            assert!(timers.inner.borrow().queue.is_empty());
            // Pending first, then done: armed, then disarmed.
            let step = monoio::time::sleep(Duration::from_millis(10));
            let got = slot.within(Duration::from_secs(60), step).await;
            assert!(got.is_ok());
            assert_eq!(
                timers.inner.borrow().slots[slot.index as usize].deadline,
                None
            );
            let queued = timers.inner.borrow().queue.len();
            for _ in 0..10 {
                let step = monoio::time::sleep(Duration::from_millis(1));
                assert!(slot.within(Duration::from_secs(60), step).await.is_ok());
            }
            assert_eq!(
                timers.inner.borrow().queue.len(),
                queued,
                "later deadlines reuse the entry"
            );
            // Never completes: Elapsed, not before the limit.
            let start = Instant::now();
            let got = slot
                .within(Duration::from_millis(30), std::future::pending::<()>())
                .await;
            assert!(got.is_err());
            assert!(start.elapsed() >= Duration::from_millis(30), "not early");
            // The slot goes on bounding steps after a timeout.
            let step = monoio::time::sleep(Duration::from_millis(1));
            assert!(slot.within(Duration::from_secs(60), step).await.is_ok());
        });
    }
}
