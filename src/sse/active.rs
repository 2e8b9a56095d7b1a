//! The SSE streams a worker is relaying right now, for the admin endpoint's `/streams`.
//! Each relay owns an `Rc<StreamStatus>` it updates once per batch of events (worker-local
//! `Cell`s, no locks); the table only lists them.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use super::table::Lineage;
use crate::access_log::{AccessLine, LineKind, RequestStart};
use crate::proxy::request_id::RequestId;
use crate::worker::WorkerCtx;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayState {
    /// Relaying an upstream body.
    Streaming,
    /// The upstream dropped; reconnecting while the client's response stays open.
    Reconnecting,
    /// Reading the upstream with no client of its own: for the stream's followers, or held for
    /// a client's comeback (--hold-upstream).
    Held,
    /// A client following a stream another connection reads (its upstream is that one's).
    Following,
}

impl RelayState {
    pub fn name(self) -> &'static str {
        match self {
            RelayState::Streaming => "streaming",
            RelayState::Reconnecting => "reconnecting",
            RelayState::Held => "held",
            RelayState::Following => "following",
        }
    }
}

pub struct StreamStatus {
    /// The lineage the relay writes (its ring's depth is shown).
    pub lineage: Rc<Lineage>,
    /// URL of the replica currently (or last) serving the stream: the replica's own string,
    /// shared (no copy per stream). None for a follower (its upstream is another stream's).
    /// A `Cell` (read by taking and putting back, `upstream()`): 8 bytes where a `RefCell` is
    /// 16, and every stream holds its row at a size-class edge (`size_tests`).
    upstream: Cell<Option<Arc<str>>>,
    /// The client's cursor: the last event id delivered (a `Cell`, as `upstream`). Exactly its
    /// bytes: 16 where a `Vec` is 24 (the row's size class, `size_tests`).
    last_id: Cell<Box<[u8]>>,
    pub state: Cell<RelayState>,
    /// Resumes so far (u32 beside the small fields: the row stays in its size class).
    pub resumes: Cell<u32>,
    /// The client speaks TLS (shown in `/streams`).
    pub client_tls: bool,
    /// The client is an HTTP/2 stream (shown in `/streams`).
    pub client_h2: bool,
    /// The request's id: sent with every reconnect, written in the access log line.
    pub(crate) request_id: RequestId,
    /// What the access log line needs, and its counts; None while the log is off. Boxed: 128
    /// bytes that a stream without an access log would carry in its row for nothing.
    log: Option<Box<StreamLog>>,
}

/// What a stream's access log line says besides its row (`StreamStatus::log`).
struct StreamLog {
    start: RequestStart,
    /// Events relayed to the client.
    events: Cell<u64>,
    /// Bytes queued for the client: the head, then the events.
    bytes: Cell<u64>,
}

impl std::fmt::Debug for StreamStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamStatus")
            .field("lineage", &self.lineage.id)
            .field("upstream", &self.upstream())
            .field("state", &self.state.get())
            .field("resumes", &self.resumes.get())
            .field("request_id", &self.request_id)
            .finish_non_exhaustive()
    }
}

impl StreamStatus {
    /// URL of the replica serving the stream (None: a follower).
    pub(crate) fn upstream(&self) -> Option<Arc<str>> {
        let url = self.upstream.take();
        let out = url.clone();
        self.upstream.set(url);
        out
    }

    /// The stream moved to the replica of `url`.
    pub(crate) fn set_upstream(&self, url: Arc<str>) {
        self.upstream.set(Some(url));
    }

    /// The client's cursor now is `id` (written over the shown one when the lengths match, as
    /// a stream's ids mostly do: no allocation per batch; a new box when the length changes).
    pub(crate) fn show_last_id(&self, id: &[u8]) {
        let mut shown = self.last_id.take();
        if shown.len() == id.len() {
            shown.copy_from_slice(id);
        } else {
            shown = id.into();
        }
        self.last_id.set(shown);
    }

    /// The client's cursor, as text.
    fn last_id_text(&self) -> String {
        let shown = self.last_id.take();
        let text = String::from_utf8_lossy(&shown).into_owned();
        self.last_id.set(shown);
        text
    }

    /// `events` events of `bytes` bytes went to the client (counted for the access log line).
    #[inline]
    pub(crate) fn sent(&self, events: u64, bytes: u64) {
        if let Some(log) = &self.log {
            log.events.set(log.events.get() + events);
            log.bytes.set(log.bytes.get() + bytes);
        }
    }

    /// The stream's access log line, when the log is on (`upstream` None: a follower, whose
    /// upstream is another connection's).
    pub(crate) fn log_end(&self, ctx: &WorkerCtx, route: Option<&str>, upstream: Option<&str>) {
        let (Some(access), Some(log)) = (&ctx.access_log, &self.log) else {
            return;
        };
        access.record(&AccessLine {
            worker: ctx.index,
            request_id: self.request_id.as_bytes(),
            start: &log.start,
            route,
            status: 200,
            bytes: log.bytes.get(),
            upstream,
            kind: LineKind::Sse {
                events: log.events.get(),
                resumes: u64::from(self.resumes.get()),
            },
            h2: self.client_h2,
        });
    }
}

/// What a stream's row starts with besides its lineage.
pub(crate) struct StreamFacts {
    /// URL of the replica serving the stream first (None: a follower).
    pub(crate) upstream: Option<Arc<str>>,
    pub(crate) request_id: RequestId,
    pub(crate) log: Option<RequestStart>,
    /// The response head's length (counted in `bytes`).
    pub(crate) head_bytes: u64,
    /// The client speaks TLS.
    pub(crate) client_tls: bool,
    /// The client is an HTTP/2 stream.
    pub(crate) client_h2: bool,
}

/// A plain copy of one stream's status, sendable to the thread that renders `/streams`.
#[derive(Debug, Clone)]
pub struct StreamView {
    pub path: String,
    pub upstream: String,
    pub last_id: String,
    pub state: &'static str,
    pub resumes: u64,
    /// The client speaks TLS.
    pub tls: bool,
    /// The client's protocol: "h2" or "http/1.1".
    pub protocol: &'static str,
    pub ring_events: usize,
    pub ring_bytes: usize,
}

#[derive(Debug, Default)]
pub struct ActiveStreams {
    slots: RefCell<Vec<Option<Rc<StreamStatus>>>>,
    free: RefCell<Vec<usize>>,
}

/// A relay's entry, removed with [`ActiveStreams::remove`] when the relay ends. It holds no
/// reference to the table (the relay reaches it through its worker): 8 bytes less in every
/// stream's relay future, which sits at a size-class edge (`proxy::conn::tests`).
pub struct ActiveEntry {
    key: usize,
    pub status: Rc<StreamStatus>,
}

impl ActiveStreams {
    pub(crate) fn register(&self, lineage: Rc<Lineage>, facts: StreamFacts) -> ActiveEntry {
        let status = Rc::new(StreamStatus {
            lineage,
            upstream: Cell::new(facts.upstream),
            last_id: Cell::new(Box::default()),
            state: Cell::new(RelayState::Streaming),
            resumes: Cell::new(0),
            client_tls: facts.client_tls,
            client_h2: facts.client_h2,
            request_id: facts.request_id,
            log: facts.log.map(|start| {
                Box::new(StreamLog {
                    start,
                    events: Cell::new(0),
                    bytes: Cell::new(facts.head_bytes),
                })
            }),
        });
        let slot = Some(status.clone());
        let key = match self.free.borrow_mut().pop() {
            Some(k) => {
                self.slots.borrow_mut()[k] = slot;
                k
            }
            None => {
                let mut slots = self.slots.borrow_mut();
                slots.push(slot);
                slots.len() - 1
            }
        };
        ActiveEntry { key, status }
    }

    /// Takes a relay's entry out of the table (when the relay ends).
    pub fn remove(&self, entry: &ActiveEntry) {
        self.slots.borrow_mut()[entry.key] = None;
        self.free.borrow_mut().push(entry.key);
    }

    /// Every stream being relayed, with its ring's depth and bytes.
    pub fn views(&self) -> Vec<StreamView> {
        self.slots
            .borrow()
            .iter()
            .flatten()
            .map(|s| {
                let (ring_events, ring_bytes) = {
                    let ring = s.lineage.ring.borrow();
                    (ring.len(), ring.bytes())
                };
                StreamView {
                    path: s.lineage.scope.target(),
                    upstream: s.upstream().as_deref().unwrap_or("").to_string(),
                    last_id: s.last_id_text(),
                    state: s.state.get().name(),
                    resumes: u64::from(s.resumes.get()),
                    tls: s.client_tls,
                    protocol: if s.client_h2 { "h2" } else { "http/1.1" },
                    ring_events,
                    ring_bytes,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod size_tests {
    /// Every stream holds its row (an `Rc<StreamStatus>`: 16 bytes of counts, then the row) for
    /// its whole life: 96 bytes keep the allocation in mimalloc's 112-byte size class (112,
    /// class 128, with the cursor a `Vec` and room for a 46-byte made request id; 144, class
    /// 160, while the URL and the cursor were in `RefCell`s and the access log's counts in the
    /// row; 280, class 320, while the access log's facts were inline and unboxed). Out of the
    /// 128 class it also leaves the holes that class's short-lived blocks (the write lists of
    /// a burst of opening streams) left between the rows: 54 bytes per stream at 9000 idle
    /// streams (perf/NOTES.md, "sixth pass").
    #[test]
    fn a_stream_row_stays_small() {
        let size = std::mem::size_of::<super::StreamStatus>();
        eprintln!("StreamStatus: {size} bytes");
        assert!(size + 16 <= 112, "StreamStatus is {size} bytes");
    }
}
