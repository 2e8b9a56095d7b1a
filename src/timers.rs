//! One timer per worker for the deadlines of its many streams (heartbeats, upstream idle
//! timeouts, send timeouts, the client watch): a monoio `Sleep` is 640 bytes, which was the
//! largest single part of an idle stream with heartbeats on. Here a stream holds a `TimerSlot`
//! (16 bytes, and a 40-byte slot in the worker's table while it exists), and the worker's one
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
//!
//! Deadlines are `Stamp`s (integer nanoseconds) and the queue is a hashed wheel of ~1 ms ticks
//! over the next ~268 ms, with a heap behind it for later deadlines: a quiet SSE stream arms
//! its timer 100 ms on after every event, and at ~12 events per second its old entry comes due
//! before the next event, to be queued again at the later deadline. In the wheel that is a pop
//! and a push of a bucket, where a binary heap of `Instant`s took ~315 instructions per event
//! (perf/NOTES.md, "Per-event cost, fourth cut"). A slot fires up to a tick late, never early.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::stamp::Stamp;

/// How far the driver sleeps when no deadline is queued (it is woken earlier by any new one).
const IDLE_SLEEP: Duration = Duration::from_secs(3600);

/// A tick of the wheel is 2^TICK_SHIFT ns (1.05 ms). A deadline is queued at the first tick
/// boundary at or after it, so a slot fires up to a tick (plus the runtime's own millisecond
/// rounding of the driver's sleep) late, never early; the deadlines here are a coalescing
/// interval (milliseconds) up to minutes.
const TICK_SHIFT: u32 = 20;

/// Ticks the wheel spans ahead of its cursor, one bucket each (~268 ms): a quiet stream's
/// 100 ms deadlines (BUFFER_RELEASE_DELAY, CLIENT_WATCH_DELAY) and coalescing intervals are
/// queued and fired with a push and a pop of a bucket; later ones (heartbeats, timeouts of
/// seconds) go to a heap, where they are few and move seldom. A multiple of 64 (the bitmap).
const WHEEL_TICKS: usize = 256;

const WHEEL_WORDS: usize = WHEEL_TICKS / 64;

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
    /// Queue entries due within the wheel's span; entries whose slot moved on are skipped when
    /// fired.
    wheel: Wheel,
    /// (tick, slot) of the entries due past the wheel's span when queued, earliest first.
    far: BinaryHeap<Reverse<(u64, u32)>>,
    /// Entries found due whose slot's deadline moved later: queued again after the pass (a
    /// bucket being fired takes none).
    requeue: Vec<(u32, u64)>,
    /// The tick the driver sleeps until (None: it has not looked yet, or is running).
    driver_at: Option<u64>,
    /// Set when a deadline earlier than `driver_at` was queued: the driver must look again.
    rescan: bool,
    driver_waker: Option<Waker>,
}

/// A hashed wheel of ticks: bucket `t % WHEEL_TICKS` holds the slots queued for tick `t`, for
/// every `t` in `cursor..cursor + WHEEL_TICKS` (one tick per bucket at a time: what makes an
/// entry's tick the bucket's, with no tick stored per entry).
struct Wheel {
    buckets: Box<[Vec<u32>]>,
    /// One bit per bucket: it holds an entry.
    occupied: [u64; WHEEL_WORDS],
    /// The first tick not fired yet.
    cursor: u64,
}

impl Default for Wheel {
    fn default() -> Wheel {
        Wheel {
            buckets: (0..WHEEL_TICKS).map(|_| Vec::new()).collect(),
            occupied: [0; WHEEL_WORDS],
            cursor: tick_of(Stamp::now()),
        }
    }
}

impl Wheel {
    /// The first tick in `from..=to` whose bucket holds an entry (`to - from < WHEEL_TICKS`).
    fn next_occupied(&self, from: u64, to: u64) -> Option<u64> {
        let mut t = from;
        while t <= to {
            let pos = (t % WHEEL_TICKS as u64) as usize;
            let word = self.occupied[pos / 64] >> (pos % 64);
            if word != 0 {
                let found = t + u64::from(word.trailing_zeros());
                return (found <= to).then_some(found);
            }
            t += (64 - pos % 64) as u64;
        }
        None
    }

    /// The last tick the wheel spans.
    fn end(&self) -> u64 {
        self.cursor + WHEEL_TICKS as u64 - 1
    }
}

#[derive(Default)]
struct Slot {
    deadline: Option<Stamp>,
    /// The tick of the earliest queue entry for this slot (0: none; no deadline's tick is 0).
    queued: u64,
    waker: Option<Waker>,
    /// The driver found `deadline` passed (cleared by every `arm`): what `within` checks,
    /// so that a step polled while it waits reads no clock.
    elapsed: bool,
}

/// The tick a deadline is queued for: the first tick boundary at or after it.
#[inline]
fn tick_at(at: Stamp) -> u64 {
    let nanos = at.nanos();
    (nanos >> TICK_SHIFT) + u64::from(nanos & ((1 << TICK_SHIFT) - 1) != 0)
}

/// The tick `now` is in: every tick up to it has begun.
#[inline]
fn tick_of(now: Stamp) -> u64 {
    now.nanos() >> TICK_SHIFT
}

/// The moment tick `t` begins.
fn tick_start(t: u64) -> Stamp {
    Stamp::from_nanos(t.saturating_mul(1 << TICK_SHIFT))
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

    /// Queue entries held (stale ones included).
    #[cfg(test)]
    fn entries(&self) -> usize {
        let inner = self.inner.borrow();
        inner.wheel.buckets.iter().map(Vec::len).sum::<usize>() + inner.far.len()
    }

    /// The driver: sleeps until the earliest deadline, wakes the slots whose deadlines passed,
    /// and starts over; runs for the worker's life (spawn it once per worker).
    pub async fn drive(self: Rc<Self>) {
        let mut sleep = Box::pin(monoio::time::sleep(IDLE_SLEEP));
        loop {
            let now = Stamp::now();
            let idle = tick_at(now.add(IDLE_SLEEP));
            let at = self.fire_due(now).map_or(idle, |next| next.min(idle));
            // The one conversion to an `Instant`: what the runtime's timer takes.
            sleep.as_mut().reset(tick_start(at).instant().into());
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

    /// Wakes every slot whose deadline is at or before `now`; returns the tick of the next
    /// entry queued.
    fn fire_due(&self, now: Stamp) -> Option<u64> {
        let mut inner = self.inner.borrow_mut();
        let inner = &mut *inner;
        let now_tick = tick_of(now);
        let wheel = &mut inner.wheel;
        if now_tick >= wheel.cursor {
            // Every entry of the wheel is due by its end: at most one pass over it.
            let last = now_tick.min(wheel.end());
            let mut from = wheel.cursor;
            while let Some(due) = wheel.next_occupied(from, last) {
                let pos = (due % WHEEL_TICKS as u64) as usize;
                wheel.occupied[pos / 64] &= !(1 << (pos % 64));
                for index in wheel.buckets[pos].drain(..) {
                    let slot = &mut inner.slots[index as usize];
                    if let Some(later) = fire_entry(slot, due, now) {
                        inner.requeue.push((index, later));
                    }
                }
                from = due + 1;
            }
            wheel.cursor = now_tick + 1;
        }
        while let Some(&Reverse((due, index))) = inner.far.peek() {
            if due > now_tick {
                break;
            }
            inner.far.pop();
            let slot = &mut inner.slots[index as usize];
            if let Some(later) = fire_entry(slot, due, now) {
                inner.requeue.push((index, later));
            }
        }
        let mut requeue = std::mem::take(&mut inner.requeue);
        for (index, tick) in requeue.drain(..) {
            inner.queue(index, tick);
        }
        inner.requeue = requeue;
        let wheel = &inner.wheel;
        let near = wheel.next_occupied(wheel.cursor, wheel.end());
        let far = inner.far.peek().map(|&Reverse((due, _))| due);
        match (near, far) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
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

/// A queue entry of `slot` for tick `due` found due at `now`: wakes the slot if its deadline
/// passed; returns the tick to queue it again at if its deadline moved later.
#[inline]
fn fire_entry(slot: &mut Slot, due: u64, now: Stamp) -> Option<u64> {
    if slot.queued != due {
        return None; // an entry the slot no longer counts on
    }
    slot.queued = 0;
    match slot.deadline {
        Some(deadline) if deadline <= now => {
            slot.elapsed = true;
            if let Some(waker) = slot.waker.take() {
                waker.wake();
            }
            None
        }
        // Past `now`, so past its tick: queued after the wheel's cursor.
        Some(later) => Some(tick_at(later)),
        None => None,
    }
}

impl Inner {
    /// Queues an entry of slot `index` for tick `tick` (one already past: for the next tick the
    /// driver fires); returns the tick it was queued for, now the slot's `queued`.
    #[inline]
    fn queue(&mut self, index: u32, tick: u64) -> u64 {
        let wheel = &mut self.wheel;
        let tick = tick.max(wheel.cursor);
        if tick <= wheel.end() {
            let pos = (tick % WHEEL_TICKS as u64) as usize;
            wheel.buckets[pos].push(index);
            wheel.occupied[pos / 64] |= 1 << (pos % 64);
        } else {
            self.far.push(Reverse((tick, index)));
        }
        self.slots[index as usize].queued = tick;
        tick
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
    pub fn arm(&mut self, at: Stamp) {
        let mut inner = self.timers.inner.borrow_mut();
        let inner = &mut *inner;
        let slot = &mut inner.slots[self.index as usize];
        slot.deadline = Some(at);
        slot.elapsed = false;
        let tick = tick_at(at);
        if slot.queued != 0 && slot.queued <= tick {
            return; // the entry already queued comes first and will requeue this deadline
        }
        let tick = inner.queue(self.index, tick);
        if inner.driver_at.is_some_and(|driver_at| tick < driver_at) {
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
    /// task later. `limit` is counted from the coarse clock (`Stamp::now_or_later`): it passes
    /// up to five kernel ticks (20 ms at HZ=250) late, never early.
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
            // The coarse clock (a fifth of the cost, perf/NOTES.md "Keep-alive: who reads the
            // clock"): an I/O limit of seconds may end a few ms late, never early.
            Some(ArmAt::After(limit)) => this.slot.arm(Stamp::now_or_later().add(limit)),
            Some(ArmAt::At(at)) => this.slot.arm(Stamp::at(at)),
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
                    slot.arm(Stamp::at(start + Duration::from_millis(500)));
                    if i == 0 {
                        slot.arm(Stamp::at(start + Duration::from_millis(900)));
                    }
                    slot.arm(Stamp::at(start + Duration::from_millis(ms)));
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
                    early.arm(Stamp::at(start + Duration::from_millis(5)));
                    drop(early);
                    let mut late = TimerSlot::new(&timers);
                    late.arm(Stamp::at(start + Duration::from_millis(80)));
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
                slot.arm(Stamp::at(start + Duration::from_millis(20 + i / 4)));
            }
            assert_eq!(timers.entries(), 1, "one entry for later moves");
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
            assert_eq!(timers.entries(), 0);
            // Pending first, then done: armed, then disarmed.
            let step = monoio::time::sleep(Duration::from_millis(10));
            let got = slot.within(Duration::from_secs(60), step).await;
            assert!(got.is_ok());
            assert_eq!(
                timers.inner.borrow().slots[slot.index as usize].deadline,
                None
            );
            let queued = timers.entries();
            for _ in 0..10 {
                let step = monoio::time::sleep(Duration::from_millis(1));
                assert!(slot.within(Duration::from_secs(60), step).await.is_ok());
            }
            assert_eq!(timers.entries(), queued, "later deadlines reuse the entry");
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

    /// The wheel and the heap together, without a driver or a clock: deadlines from a
    /// nanosecond to an hour ahead, moved later and earlier, fired at moments that step by less
    /// than a tick and by more than the wheel's span. No slot is woken before its deadline; every
    /// slot is woken once the tick its deadline falls in has passed; and what `fire_due` returns
    /// (where the driver sleeps until) is never past a pending deadline's tick.
    #[test]
    fn the_wheel_fires_none_early_and_none_past_its_tick() {
        let timers = Timers::new();
        let base = Stamp::now();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        const OFFSETS_NS: [u64; 12] = [
            0,
            1,
            1 << TICK_SHIFT,
            (1 << TICK_SHIFT) + 1,
            5_000_000,
            100_000_000,
            (WHEEL_TICKS as u64 - 1) << TICK_SHIFT,
            (WHEEL_TICKS as u64) << TICK_SHIFT,
            (WHEEL_TICKS as u64 + 1) << TICK_SHIFT,
            1_000_000_000,
            30_000_000_000,
            3_600_000_000_000,
        ];
        let mut slots: Vec<TimerSlot> = (0..64).map(|_| TimerSlot::new(&timers)).collect();
        let mut deadlines: Vec<Option<Stamp>> = vec![None; slots.len()];
        let mut now = base;
        for round in 0..3000 {
            // Re-arm a few slots (later or earlier than before), relative to now.
            for _ in 0..3 {
                let i = (next() % slots.len() as u64) as usize;
                let off = OFFSETS_NS[(next() % OFFSETS_NS.len() as u64) as usize];
                let at = Stamp::from_nanos(now.nanos() + off + next() % 3);
                slots[i].arm(at);
                deadlines[i] = Some(at);
            }
            if round % 97 == 0 {
                let i = (next() % slots.len() as u64) as usize;
                slots[i].disarm();
                deadlines[i] = None;
            }
            // Step: under a tick, a few ticks, or past the wheel's span.
            let step = match next() % 10 {
                0 => (WHEEL_TICKS as u64 + next() % 1000) << TICK_SHIFT,
                1..=3 => next() % (1 << TICK_SHIFT),
                _ => next() % (40 << TICK_SHIFT),
            };
            now = Stamp::from_nanos(now.nanos() + step);
            let wake_at = timers.fire_due(now);
            let inner = timers.inner.borrow();
            for (i, slot) in slots.iter().enumerate() {
                let elapsed = inner.slots[slot.index as usize].elapsed;
                match deadlines[i] {
                    None => assert!(!elapsed, "a disarmed slot fired"),
                    Some(at) => {
                        if elapsed {
                            assert!(at <= now, "round {round}: slot {i} fired early");
                        } else {
                            assert!(
                                tick_at(at) > tick_of(now),
                                "round {round}: slot {i} missed its tick"
                            );
                            let wake_at = wake_at.expect("a pending deadline is queued");
                            assert!(
                                wake_at <= tick_at(at),
                                "round {round}: the driver would sleep past slot {i}'s deadline"
                            );
                        }
                    }
                }
            }
            drop(inner);
            // Fired slots are done with: forget them (as a stream that woke would re-arm).
            for (i, slot) in slots.iter_mut().enumerate() {
                if timers.inner.borrow().slots[slot.index as usize].elapsed {
                    slot.disarm();
                    deadlines[i] = None;
                }
            }
        }
        // Every entry, stale ones included, goes once it comes due: none is left behind.
        drop(slots);
        timers.fire_due(Stamp::from_nanos(now.nanos() + 7_200_000_000_000));
        assert_eq!(timers.entries(), 0);
    }

    /// One per stream holding a timer, in the worker's table (it was 56 bytes with `Instant`s).
    #[test]
    fn a_timer_slot_stays_small() {
        assert!(
            std::mem::size_of::<Slot>() <= 40,
            "{}",
            std::mem::size_of::<Slot>()
        );
        assert!(std::mem::size_of::<TimerSlot>() <= 16);
    }
}
