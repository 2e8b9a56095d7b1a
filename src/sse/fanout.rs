//! A lineage read by more than its owner: clients that follow its ring (`--coalesce`), and an
//! owner that goes on reading the upstream after its own client left (`--hold-upstream`).
//!
//! ```text
//! owner (the connection task that opened the upstream) --records--> ring: e1 e2 e3 ... eN
//!   its own client, while it has one (the fast path)     followers: cursor  cursor  cursor
//!   headless once it has none: reads on for the followers, or alone for --hold-upstream
//! ```
//! Everything is worker-local (`Cell`/`RefCell`): the owner records an event once and wakes the
//! followers waiting for it; each follower writes the ring's `Bytes` to its own client at its own
//! pace. A follower whose lag passes `--sse-client-buffer` is cut; the others never wait for it.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::net::IpAddr;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Instant;

use super::table::Lineage;
use crate::http::ResponseHead;
use crate::metrics::WorkerMetrics;

/// Default `--hold-max-streams`: streams held without a client at once, per worker.
pub const DEFAULT_HOLD_MAX_STREAMS: usize = 1024;

/// How a shared lineage's owner ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FanEnd {
    /// The upstream ended the stream for good: followers end after the ring's last event, and a
    /// resumption with an id in the ring is answered from it, never sent upstream again.
    Finished,
    /// The owner stopped otherwise (gave up reconnecting, its hold ran out, the worker stops):
    /// followers end cleanly after the last event they can get, and their reconnections go
    /// upstream with their own Last-Event-ID.
    Stopped,
}

/// A follower's place in the fanout: where the owner leaves its waker.
#[derive(Default, Debug)]
pub(crate) struct FollowerSlot {
    waker: RefCell<Option<Waker>>,
}

/// The shared side of a lineage (see the module doc); kept in `Lineage::fanout`.
#[derive(Debug)]
pub(crate) struct Fanout {
    followers: RefCell<Vec<Rc<FollowerSlot>>>,
    /// The owner, while headless, waits for followers to come or go.
    owner: RefCell<Option<Waker>>,
    /// Follower joins and leaves so far (the owner's wait resolves when it moves).
    changes: Cell<u64>,
    /// Event bytes recorded since the fanout began: a follower's lag is this minus what it took.
    recorded: Cell<u64>,
    end: Cell<Option<FanEnd>>,
    /// The owner's own client has left (or was cut); it reads for the followers or the hold.
    headless: Cell<bool>,
    /// Since when the owner has had no client at all (counted in `sse_held_streams`).
    held_since: Cell<Option<Instant>>,
    /// Fresh GETs of the scope may join (a coalesced stream); false for a stream only held.
    pub(crate) joinable: bool,
    /// The upstream's response head (its own allocation), for the clients that join: they get
    /// its fields as the owner's client did. None: they get tether's own SSE head.
    pub(crate) response: Option<ResponseHead>,
    /// The client's address, for the forwarded headers of reconnects made once headless.
    pub(crate) peer: Cell<Option<IpAddr>>,
}

impl Fanout {
    pub(crate) fn new(joinable: bool, response: Option<ResponseHead>) -> Fanout {
        Fanout {
            followers: RefCell::new(Vec::new()),
            owner: RefCell::new(None),
            changes: Cell::new(0),
            recorded: Cell::new(0),
            end: Cell::new(None),
            headless: Cell::new(false),
            held_since: Cell::new(None),
            joinable,
            response,
            peer: Cell::new(None),
        }
    }

    pub(crate) fn followers(&self) -> usize {
        self.followers.borrow().len()
    }

    pub(crate) fn end(&self) -> Option<FanEnd> {
        self.end.get()
    }

    pub(crate) fn headless(&self) -> bool {
        self.headless.get()
    }

    pub(crate) fn recorded(&self) -> u64 {
        self.recorded.get()
    }

    /// A client follows the ring from now on. Counts a comeback to a held stream.
    pub(crate) fn join(&self, metrics: &WorkerMetrics) -> Rc<FollowerSlot> {
        if self.held_since.get().is_some() {
            WorkerMetrics::inc(&metrics.sse_hold_resumed);
            self.set_held(false, metrics);
        }
        let slot = Rc::new(FollowerSlot::default());
        self.followers.borrow_mut().push(slot.clone());
        WorkerMetrics::inc(&metrics.sse_shared_clients);
        self.changed();
        slot
    }

    /// The follower in `slot` left.
    pub(crate) fn leave(&self, slot: &Rc<FollowerSlot>, metrics: &WorkerMetrics) {
        self.followers.borrow_mut().retain(|s| !Rc::ptr_eq(s, slot));
        let shared = &metrics.sse_shared_clients;
        shared.set(shared.get().saturating_sub(1));
        self.changed();
    }

    /// The owner recorded `bytes` of events: the followers waiting for them are woken.
    pub(crate) fn recorded_bytes(&self, bytes: u64) {
        self.recorded.set(self.recorded.get() + bytes);
        self.wake_followers();
    }

    /// The owner ended (the first end given stays); followers finish after what they can get.
    pub(crate) fn finish(&self, how: FanEnd) {
        if self.end.get().is_none() {
            self.end.set(Some(how));
        }
        self.wake_followers();
        // A held owner told to stop (the memory budget) wakes too.
        self.changed();
    }

    /// The owner's client is gone; the owner reads on without one.
    pub(crate) fn set_headless(&self, peer: Option<IpAddr>) {
        self.headless.set(true);
        if self.peer.get().is_none() {
            self.peer.set(peer);
        }
    }

    /// Whether the owner reads with no client at all, kept in the worker's gauge.
    pub(crate) fn set_held(&self, held: bool, metrics: &WorkerMetrics) {
        let gauge = &metrics.sse_held_streams;
        match (self.held_since.get().is_some(), held) {
            (false, true) => {
                self.held_since.set(Some(Instant::now()));
                WorkerMetrics::inc(gauge);
            }
            (true, false) => {
                self.held_since.set(None);
                gauge.set(gauge.get().saturating_sub(1));
            }
            _ => {}
        }
    }

    /// The hold starts over (a client follows the stream from another instance, through the
    /// replay store).
    pub(crate) fn renew_hold(&self) {
        if self.held_since.get().is_some() {
            self.held_since.set(Some(Instant::now()));
        }
    }

    pub(crate) fn held_since(&self) -> Option<Instant> {
        self.held_since.get()
    }

    /// Joins and leaves so far, for [`Fanout::followers_changed`].
    pub(crate) fn changes(&self) -> u64 {
        self.changes.get()
    }

    /// Resolves once a follower joined or left after `seen` (from [`Fanout::changes`]).
    /// Cancel-safe: it owns nothing but a waker.
    pub(crate) async fn followers_changed(&self, seen: u64) {
        poll_fn(|cx| {
            if self.changes.get() != seen {
                return Poll::Ready(());
            }
            *self.owner.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Resolves once `lineage`'s ring has an event after `cursor`, or the owner ended.
    /// Cancel-safe: it owns nothing but a waker.
    pub(crate) async fn news(&self, slot: &FollowerSlot, lineage: &Lineage, cursor: u64) {
        poll_fn(|cx| {
            if self.end.get().is_some() || lineage.ring.borrow().head_seq() > cursor {
                return Poll::Ready(());
            }
            *slot.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    fn changed(&self) {
        self.changes.set(self.changes.get() + 1);
        if let Some(w) = self.owner.borrow_mut().take() {
            w.wake();
        }
    }

    fn wake_followers(&self) {
        for slot in self.followers.borrow().iter() {
            if let Some(w) = slot.waker.borrow_mut().take() {
                w.wake();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_and_leaves_keep_the_gauges() {
        let m = WorkerMetrics::default();
        let f = Fanout::new(true, None);
        f.set_held(true, &m);
        assert_eq!(m.sse_held_streams.get(), 1);
        let a = f.join(&m);
        assert_eq!(
            (m.sse_held_streams.get(), m.sse_hold_resumed.get()),
            (0, 1),
            "a comeback ends the hold"
        );
        let b = f.join(&m);
        assert_eq!((f.followers(), m.sse_shared_clients.get()), (2, 2));
        let seen = f.changes();
        f.leave(&a, &m);
        f.leave(&b, &m);
        assert_ne!(f.changes(), seen);
        assert_eq!((f.followers(), m.sse_shared_clients.get()), (0, 0));
    }

    #[test]
    fn the_first_end_stays() {
        let f = Fanout::new(false, None);
        f.finish(FanEnd::Finished);
        f.finish(FanEnd::Stopped);
        assert_eq!(f.end(), Some(FanEnd::Finished));
    }
}
