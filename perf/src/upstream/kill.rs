//! The per-worker kill switch: a flag plus the wakers of everything that sleeps.
//!
//! Killing a worker has two halves (see `worker.rs`): every open connection socket is shut
//! down, which wakes whatever waits on it (reads return 0, writes fail, `readable()` fires);
//! and this switch wakes whatever waits on a timer. Timers are the only waits that a socket
//! shutdown does not reach, so only they are raced against [`Kill::wait`].

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};

/// Single-threaded kill switch of one worker.
#[derive(Default)]
pub(crate) struct Kill {
    /// Set once; never cleared.
    fired: Cell<bool>,
    /// Wakers of pending [`KillWait`]s, by slot.
    waiters: RefCell<Waiters>,
}

/// Slots of wakers with a free list, so a waiter deregisters in O(1) when dropped.
#[derive(Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

impl Kill {
    /// True once the worker is being killed.
    pub(crate) fn is_fired(&self) -> bool {
        self.fired.get()
    }

    /// Fires the switch and wakes every waiter.
    pub(crate) fn fire(&self) {
        self.fired.set(true);
        let wakers: Vec<Waker> = {
            let mut w = self.waiters.borrow_mut();
            w.slots.iter_mut().filter_map(Option::take).collect()
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// A future that completes when the switch fires.
    pub(crate) fn wait(&self) -> KillWait<'_> {
        KillWait {
            kill: self,
            slot: None,
        }
    }

    /// Runs `fut` unless the switch fires first (then `fut` is dropped and None returned).
    ///
    /// Cancel-safety: only for futures that own no IO buffer (timers, `readable()`): the
    /// dropped future must lose nothing.
    pub(crate) async fn guard<F: Future>(&self, fut: F) -> Option<F::Output> {
        let mut fut = pin!(fut);
        let mut wait = pin!(self.wait());
        std::future::poll_fn(|cx| {
            if wait.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            fut.as_mut().poll(cx).map(Some)
        })
        .await
    }
}

/// Completes when the kill switch fires.
pub(crate) struct KillWait<'a> {
    kill: &'a Kill,
    /// Our slot in `waiters`, once registered.
    slot: Option<usize>,
}

impl Future for KillWait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.kill.is_fired() {
            return Poll::Ready(());
        }
        let mut w = self.kill.waiters.borrow_mut();
        match self.slot {
            Some(slot) => match &mut w.slots[slot] {
                Some(old) if old.will_wake(cx.waker()) => {}
                entry => *entry = Some(cx.waker().clone()),
            },
            None => {
                let waker = Some(cx.waker().clone());
                let slot = match w.free.pop() {
                    Some(slot) => {
                        w.slots[slot] = waker;
                        slot
                    }
                    None => {
                        w.slots.push(waker);
                        w.slots.len() - 1
                    }
                };
                drop(w);
                self.slot = Some(slot);
            }
        }
        Poll::Pending
    }
}

impl Drop for KillWait<'_> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            let mut w = self.kill.waiters.borrow_mut();
            w.slots[slot] = None;
            w.free.push(slot);
        }
    }
}

/// A timer on the heap.
///
/// monoio's `Sleep` is 128-byte aligned (a cache-padded timer entry) and about 0.4 KB; held
/// inline it pads every enclosing future to that alignment and made the connection task
/// about 5 KB. Boxed, a parked stream holds 8 bytes for it and allocates only while it
/// sleeps.
pub(crate) fn sleep_until(deadline: monoio::time::Instant) -> Pin<Box<monoio::time::Sleep>> {
    Box::pin(monoio::time::sleep_until(deadline))
}

/// Yields once to the scheduler: the task goes to the back of the run queue.
///
/// Needed by streams that write flat out: on the epoll driver a write into a socket with
/// room completes without ever returning Pending, so such a loop would never let other
/// tasks run.
pub(crate) async fn yield_now() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}
