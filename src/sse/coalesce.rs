//! Which live streams a fresh GET may join (`--coalesce`): per worker, the stream key (target and
//! identity, `ResumeScope`) of every coalesced stream, live or being opened.
//!
//! ```text
//! GET /feed  -> no entry: Opening (this request opens the upstream)
//! GET /feed  -> Opening: wait until it is live (or failed), then look again
//! GET /feed  -> Live(lineage): follow its ring from the live head, no upstream of its own
//! ```
//! The first request's upstream answer decides: an SSE stream makes the entry Live; anything
//! else (an error, a plain response) removes it, and each waiting request goes on by itself.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};

use super::scope::ResumeScope;
use super::table::Lineage;

enum Slot {
    Opening(Rc<Opening>),
    Live(Rc<Lineage>),
}

/// A coalesced stream being opened: the requests waiting to join it.
#[derive(Default)]
pub(crate) struct Opening {
    waiters: RefCell<Vec<Waker>>,
    done: Cell<bool>,
}

impl Opening {
    /// Resolves once the opening request has its answer (live or not). Cancel-safe.
    pub(crate) async fn settled(&self) {
        poll_fn(|cx| {
            if self.done.get() {
                return Poll::Ready(());
            }
            self.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    fn settle(&self) {
        self.done.set(true);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }
}

/// What a coalescible request does.
pub(crate) enum Coalesce<'t> {
    /// Follow this live stream.
    Join(Rc<Lineage>),
    /// Another request is opening the stream: wait for it, then ask again.
    Wait(Rc<Opening>),
    /// Open it: the guard makes the stream live, or lets the waiters go when dropped.
    Open(OpeningGuard<'t>),
}

#[derive(Default)]
pub(crate) struct CoalesceTable {
    slots: RefCell<HashMap<ResumeScope, Slot>>,
}

impl CoalesceTable {
    pub(crate) fn check(&self, scope: &ResumeScope) -> Coalesce<'_> {
        let mut slots = self.slots.borrow_mut();
        match slots.get(scope) {
            Some(Slot::Live(lineage)) => {
                let live = lineage.fanout().is_some_and(|f| f.end().is_none());
                if live {
                    return Coalesce::Join(lineage.clone());
                }
            }
            Some(Slot::Opening(opening)) => return Coalesce::Wait(opening.clone()),
            None => {}
        }
        let opening = Rc::new(Opening::default());
        slots.insert(scope.clone(), Slot::Opening(opening.clone()));
        Coalesce::Open(OpeningGuard {
            table: self,
            scope: scope.clone(),
            opening,
        })
    }

    /// The stream of `lineage` ended: fresh requests open a new one.
    pub(crate) fn remove_live(&self, lineage: &Rc<Lineage>) {
        let mut slots = self.slots.borrow_mut();
        if let Some(Slot::Live(l)) = slots.get(&lineage.scope) {
            if Rc::ptr_eq(l, lineage) {
                slots.remove(&lineage.scope);
            }
        }
    }

    /// Streams joinable or being opened now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.borrow().len()
    }
}

/// Held by the request that opens a coalesced stream.
pub(crate) struct OpeningGuard<'t> {
    table: &'t CoalesceTable,
    scope: ResumeScope,
    opening: Rc<Opening>,
}

impl OpeningGuard<'_> {
    /// The upstream answered with a stream: later requests join `lineage`.
    pub(crate) fn go_live(self, lineage: Rc<Lineage>) {
        self.table
            .slots
            .borrow_mut()
            .insert(self.scope.clone(), Slot::Live(lineage));
        // Drop settles the waiters (they look again and find it live).
    }
}

impl Drop for OpeningGuard<'_> {
    fn drop(&mut self) {
        let mut slots = self.table.slots.borrow_mut();
        if let Some(Slot::Opening(o)) = slots.get(&self.scope) {
            if Rc::ptr_eq(o, &self.opening) {
                slots.remove(&self.scope);
            }
        }
        drop(slots);
        self.opening.settle();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{HeadLimits, RequestHead};
    use crate::sse::directory::Directory;
    use crate::sse::fanout::{FanEnd, Fanout};
    use crate::sse::scope::IdentityHeaders;
    use crate::sse::table::{RingLimits, StreamTable};
    use bytes::Bytes;
    use std::sync::Arc;
    use std::time::Duration;

    fn scope(path: &str) -> ResumeScope {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        ResumeScope::of(
            &RequestHead::parse(Bytes::from(raw), &HeadLimits::default()).unwrap(),
            0,
            &IdentityHeaders::default(),
        )
    }

    fn streams() -> StreamTable {
        let (dir, _rx) = Directory::new(1).unwrap();
        StreamTable::new(
            0,
            RingLimits {
                max_events: 10,
                max_bytes: 1 << 20,
                ttl: Duration::from_secs(60),
                memory: 1 << 30,
            },
            Arc::new(dir),
        )
    }

    #[test]
    fn the_first_opens_the_next_wait_then_join_until_it_ends() {
        let t = CoalesceTable::default();
        let rings = streams();
        let Coalesce::Open(guard) = t.check(&scope("/a")) else {
            panic!("the first request opens");
        };
        let Coalesce::Wait(opening) = t.check(&scope("/a")) else {
            panic!("the second waits");
        };
        assert!(matches!(t.check(&scope("/b")), Coalesce::Open(_)));
        let handle = rings.create(&scope("/a"));
        let fanout = handle.lineage.share(|| Fanout::new(true, None));
        guard.go_live(handle.lineage.clone());
        assert!(opening.done.get(), "the waiters are let go");
        assert!(matches!(t.check(&scope("/a")), Coalesce::Join(_)));
        fanout.finish(FanEnd::Stopped);
        assert!(
            matches!(t.check(&scope("/a")), Coalesce::Open(_)),
            "an ended stream is never joined"
        );
    }

    #[test]
    fn an_opening_that_fails_lets_its_waiters_go_and_leaves_nothing() {
        let t = CoalesceTable::default();
        let Coalesce::Open(guard) = t.check(&scope("/a")) else {
            panic!()
        };
        let Coalesce::Wait(opening) = t.check(&scope("/a")) else {
            panic!()
        };
        drop(guard);
        assert!(opening.done.get());
        assert_eq!(t.len(), 0);
    }
}
