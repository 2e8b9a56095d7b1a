//! What workers know of each other's streams, and how they ask for a ring.
//!
//! A client's reconnection usually lands on another worker (SO_REUSEPORT hashes the new 4-tuple).
//! The ring stays owned by the worker that filled it; no stream moves between threads.
//! Instead:
//! - the `Directory` records which workers hold rings for a scope. It is written when a worker's
//!   first ring of a scope is created or its last one freed (sharded mutexes, a few times per
//!   stream's life), never per event. Any number of workers (a sorted list per scope, not a mask);
//! - a worker that needs another's ring posts a `Query` (scope and event id) to that worker's
//!   inbox and wakes it with one byte on a socketpair; the owner answers with a refcounted copy of
//!   the ring holding the id (the `Bytes` are shared, not copied) through the asker's inbox. Once
//!   per reconnection;
//! - a reconnection to a stream that is still read live on another worker (shared or held for it,
//!   `super::fanout`) cannot be continued from a copy: its connection is handed to that worker
//!   (`Adopt`: a duplicate of its descriptor and the bytes read from it), once, before anything
//!   is answered, and that worker serves it as its own. The events never cross threads.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::active::StreamView;
use super::ring::RingEvent;
use super::scope::ResumeScope;
use crate::config::Config;
use crate::metrics::MetricsSnapshot;
use crate::upstream::health::ReplicaReport;

/// Lock shards of the key → holders map (reconnect storms on many streams do not contend).
const DIRECTORY_SHARDS: usize = 16;

/// A message between workers.
pub enum Message {
    /// "Send me the ring of `scope` that holds event `id`; answer with `token`."
    Query {
        scope: ResumeScope,
        id: bytes::Bytes,
        from: usize,
        token: u64,
        /// The asker can take a followable stream's connection by hand-off: it needs no copy
        /// of the ring then. False for a connection that cannot move (a TLS client, one handed
        /// over already): it continues a copy of the ring on an upstream of its own.
        hand_off: bool,
    },
    /// "Send me your counters and streams" (the admin endpoint, once per scrape).
    Status {
        from: usize,
        token: u64,
    },
    Answer {
        token: u64,
        answer: Answer,
    },
    /// "Serve this client connection": a reconnection to a stream this worker reads live. The
    /// request is read again from `bytes` (its head and whatever followed it).
    Adopt {
        conn: std::os::fd::OwnedFd,
        /// What the connection carries besides its descriptor (a TLS session...).
        carried: crate::client_stream::Carried,
        peer: std::net::SocketAddr,
        bytes: bytes::Bytes,
    },
    /// From the main thread, after SIGHUP: "serve new requests with this configuration" (its
    /// routes, replicas and their per-route settings; see `crate::reload`). `generation` counts
    /// the configurations the process has run, 1 being the one it started with.
    Reload {
        config: Arc<Config>,
        generation: u64,
    },
}

/// What comes back to an asker.
pub enum Answer {
    /// The ring holding the asked id, or None when the worker holds no ring of the scope with
    /// that id.
    Ring(Option<FoundRing>),
    Status(Box<WorkerStatus>),
}

/// Another worker's ring that holds a reconnection's id.
pub struct FoundRing {
    /// Its events, oldest first (refcounted copies).
    pub events: Vec<RingEvent>,
    /// Index in `events` of the event with the asked id.
    pub at: usize,
    /// The stream is read live there for its followers (shared, held or finished with events
    /// after the id): the reconnection is handed over rather than continued from the copy.
    pub followable: bool,
}

/// One worker's view for the admin endpoint.
#[derive(Debug, Clone)]
pub struct WorkerStatus {
    pub worker: usize,
    pub draining: bool,
    pub metrics: MetricsSnapshot,
    pub streams: Vec<StreamView>,
    /// Each upstream replica's passive health on this worker.
    pub upstreams: Vec<ReplicaReport>,
    /// The configuration generation this worker serves new requests with (`crate::reload`).
    pub config_generation: u64,
    /// Each route's counters on this worker.
    pub routes: Vec<crate::route::stats::RouteCounts>,
}

struct Inbox {
    queue: Mutex<Vec<Message>>,
    /// Writing a byte here wakes the worker's inbox task. Non-blocking: when the socket buffer is
    /// full a wake-up is already pending, so the byte may be dropped.
    bell: StdUnixStream,
}

pub struct Directory {
    /// Scope -> the workers holding at least one ring of it, ascending.
    shards: Vec<Mutex<HashMap<ResumeScope, Vec<u32>>>>,
    inboxes: Vec<Inbox>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Directory {
    /// A directory for `workers` workers; returns it with each worker's receiving socket.
    pub fn new(workers: usize) -> std::io::Result<(Directory, Vec<StdUnixStream>)> {
        let mut inboxes = Vec::with_capacity(workers);
        let mut receivers = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (bell, rx) = StdUnixStream::pair()?;
            bell.set_nonblocking(true)?;
            rx.set_nonblocking(true)?;
            inboxes.push(Inbox {
                queue: Mutex::new(Vec::new()),
                bell,
            });
            receivers.push(rx);
        }
        let shards = (0..DIRECTORY_SHARDS)
            .map(|_| Mutex::new(HashMap::new()))
            .collect();
        Ok((Directory { shards, inboxes }, receivers))
    }

    pub fn workers(&self) -> usize {
        self.inboxes.len()
    }

    fn shard(&self, scope: &ResumeScope) -> &Mutex<HashMap<ResumeScope, Vec<u32>>> {
        &self.shards[(scope.hash_value() as usize) % self.shards.len()]
    }

    /// `worker` now holds a ring of `scope`.
    pub fn announce(&self, scope: &ResumeScope, worker: usize) {
        let mut shard = lock(self.shard(scope));
        let holders = shard.entry(scope.clone()).or_default();
        let w = worker as u32;
        if let Err(at) = holders.binary_search(&w) {
            holders.insert(at, w);
        }
    }

    /// `worker` freed its last ring of `scope`.
    pub fn withdraw(&self, scope: &ResumeScope, worker: usize) {
        let mut shard = lock(self.shard(scope));
        if let Some(holders) = shard.get_mut(scope) {
            holders.retain(|w| *w as usize != worker);
            if holders.is_empty() {
                shard.remove(scope);
            }
        }
    }

    /// Workers other than `me` holding a ring of `scope`.
    pub fn holders(&self, scope: &ResumeScope, me: usize) -> Vec<usize> {
        lock(self.shard(scope))
            .get(scope)
            .map(|h| h.iter().map(|w| *w as usize).filter(|w| *w != me).collect())
            .unwrap_or_default()
    }

    /// Delivers `msg` to `worker` and rings its bell.
    pub fn post(&self, worker: usize, msg: Message) {
        let inbox = &self.inboxes[worker];
        lock(&inbox.queue).push(msg);
        let _ = (&inbox.bell).write(&[1]);
    }

    /// Takes every message waiting for `worker`.
    pub fn drain(&self, worker: usize) -> Vec<Message> {
        std::mem::take(&mut *lock(&self.inboxes[worker].queue))
    }
}

/// A worker's answers-in-waiting: token → slot. Worker-local.
#[derive(Default)]
pub struct PendingAnswers {
    next: Cell<u64>,
    slots: RefCell<HashMap<u64, Rc<AnswerSlot>>>,
}

#[derive(Default)]
pub struct AnswerSlot {
    value: RefCell<Option<Answer>>,
    waker: RefCell<Option<Waker>>,
}

impl PendingAnswers {
    /// A new token and the slot its answer will land in.
    pub fn open(&self) -> (u64, Rc<AnswerSlot>) {
        let token = self.next.get();
        self.next.set(token + 1);
        let slot = Rc::new(AnswerSlot::default());
        self.slots.borrow_mut().insert(token, slot.clone());
        (token, slot)
    }

    /// Forgets a token whose asker gave up (a late answer is then dropped).
    pub fn close(&self, token: u64) {
        self.slots.borrow_mut().remove(&token);
    }

    /// Fills the slot of `token` and wakes its asker.
    pub fn fulfil(&self, token: u64, answer: Answer) {
        if let Some(slot) = self.slots.borrow_mut().remove(&token) {
            *slot.value.borrow_mut() = Some(answer);
            if let Some(w) = slot.waker.borrow_mut().take() {
                w.wake();
            }
        }
    }
}

impl AnswerSlot {
    /// Resolves with the answer. Cancel-safe (owns no IO).
    pub fn wait(self: Rc<Self>) -> impl Future<Output = Answer> {
        WaitAnswer { slot: self }
    }
}

struct WaitAnswer {
    slot: Rc<AnswerSlot>,
}

impl Future for WaitAnswer {
    type Output = Answer;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Some(v) = self.slot.value.borrow_mut().take() {
            return Poll::Ready(v);
        }
        *self.slot.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{HeadLimits, RequestHead};
    use crate::sse::scope::IdentityHeaders;

    fn key(path: &str) -> ResumeScope {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        ResumeScope::of(
            &RequestHead::parse(bytes::Bytes::from(raw), &HeadLimits::default()).unwrap(),
            0,
            &IdentityHeaders::default(),
        )
    }

    #[test]
    fn holders_track_announce_and_withdraw() {
        let (dir, _rx) = Directory::new(3).unwrap();
        let k = key("/a");
        dir.announce(&k, 0);
        dir.announce(&k, 2);
        dir.announce(&k, 2);
        assert_eq!(dir.holders(&k, 1), vec![0, 2]);
        assert_eq!(dir.holders(&k, 0), vec![2]);
        dir.withdraw(&k, 0);
        dir.withdraw(&k, 2);
        assert!(dir.holders(&k, 1).is_empty());
        assert!(dir.holders(&key("/b"), 1).is_empty());
    }

    #[test]
    fn any_number_of_workers_never_alias() {
        // The old directory kept a 64-bit mask: worker 70 was worker 6.
        let (dir, _rx) = Directory::new(130).unwrap();
        let k = key("/a");
        dir.announce(&k, 70);
        dir.announce(&k, 129);
        assert_eq!(dir.holders(&k, 0), vec![70, 129]);
        assert_eq!(dir.holders(&k, 70), vec![129]);
        dir.withdraw(&k, 6);
        assert_eq!(dir.holders(&k, 0), vec![70, 129]);
    }

    #[test]
    fn posted_messages_are_drained_in_order() {
        let (dir, _rx) = Directory::new(2).unwrap();
        dir.post(
            1,
            Message::Answer {
                token: 1,
                answer: Answer::Ring(None),
            },
        );
        dir.post(
            1,
            Message::Answer {
                token: 2,
                answer: Answer::Ring(Some(FoundRing {
                    events: vec![],
                    at: 0,
                    followable: false,
                })),
            },
        );
        let got: Vec<u64> = dir
            .drain(1)
            .into_iter()
            .map(|m| match m {
                Message::Answer { token, .. } => token,
                Message::Query { .. }
                | Message::Status { .. }
                | Message::Reload { .. }
                | Message::Adopt { .. } => 0,
            })
            .collect();
        assert_eq!(got, vec![1, 2]);
        assert!(dir.drain(1).is_empty());
    }
}
