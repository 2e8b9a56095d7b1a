//! A worker's SSE streams: one replay ring per stream key, alive while clients use it and for
//! `--replay-ttl` after the last one leaves. Worker-local (`RefCell`): appending an event takes no
//! lock. Other workers see only which keys this worker holds (the shared `Directory`) and ask for
//! a ring's contents through their inboxes, once per reconnection, never per event.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::directory::Directory;
use super::key::StreamKey;
use super::ring::{ReplayRing, RingEvent};

/// Default `--replay-ttl`: how long a ring outlives its last client.
pub const DEFAULT_REPLAY_TTL: Duration = Duration::from_secs(300);

/// Bounds of every ring on this worker.
#[derive(Debug, Clone, Copy)]
pub struct RingLimits {
    pub max_events: usize,
    pub max_bytes: usize,
    pub ttl: Duration,
}

/// One stream's shared state on this worker.
#[derive(Debug)]
pub struct StreamState {
    pub key: StreamKey,
    pub ring: RefCell<ReplayRing>,
    /// Clients relaying this stream on this worker right now.
    clients: Cell<u32>,
    /// When the last client left (meaningful when `clients == 0`).
    idle_since: Cell<Instant>,
}

impl StreamState {
    pub fn clients(&self) -> u32 {
        self.clients.get()
    }
}

pub struct StreamRegistry {
    worker: usize,
    limits: RingLimits,
    directory: Arc<Directory>,
    streams: RefCell<HashMap<StreamKey, Rc<StreamState>>>,
}

/// A client's hold on a stream; dropping it starts the ring's TTL when it was the last.
pub struct StreamLease {
    pub stream: Rc<StreamState>,
}

impl Drop for StreamLease {
    fn drop(&mut self) {
        let n = self.stream.clients.get().saturating_sub(1);
        self.stream.clients.set(n);
        if n == 0 {
            self.stream.idle_since.set(Instant::now());
        }
    }
}

impl StreamRegistry {
    pub fn new(worker: usize, limits: RingLimits, directory: Arc<Directory>) -> Self {
        StreamRegistry {
            worker,
            limits,
            directory,
            streams: RefCell::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> RingLimits {
        self.limits
    }

    /// The stream for `key` on this worker, if it has a ring.
    pub fn get(&self, key: &StreamKey) -> Option<Rc<StreamState>> {
        self.streams.borrow().get(key).cloned()
    }

    /// Joins (or creates) the stream for `key`. A new stream is announced in the directory so
    /// other workers can find its ring.
    pub fn lease(&self, key: &StreamKey) -> StreamLease {
        let stream = {
            let mut streams = self.streams.borrow_mut();
            match streams.get(key) {
                Some(s) => s.clone(),
                None => {
                    let s = Rc::new(StreamState {
                        key: key.clone(),
                        ring: RefCell::new(ReplayRing::new(
                            self.limits.max_events,
                            self.limits.max_bytes,
                        )),
                        clients: Cell::new(0),
                        idle_since: Cell::new(Instant::now()),
                    });
                    streams.insert(key.clone(), s.clone());
                    self.directory.announce(key, self.worker);
                    s
                }
            }
        };
        stream.clients.set(stream.clients.get() + 1);
        StreamLease { stream }
    }

    /// A copy (refcounted, no byte copied) of a ring's events, to answer another worker.
    pub fn snapshot(&self, key: &StreamKey) -> Option<Vec<RingEvent>> {
        let stream = self.get(key)?;
        let ring = stream.ring.borrow();
        Some(ring.after(0).cloned().collect())
    }

    /// Takes over events learned from another worker's ring (which held the client's
    /// Last-Event-ID when this worker's did not): this worker's ring for `key` becomes a copy of
    /// it (refcounted, no byte copied), so later reconnections landing here find them, and the
    /// relay continues it from its head without a hole. A stale local ring is replaced; clients
    /// relaying here resync by id (their seqs no longer match). Returns the new head seq.
    pub fn adopt(&self, key: &StreamKey, events: &[RingEvent]) -> u64 {
        let lease = self.lease(key);
        let mut ring = lease.stream.ring.borrow_mut();
        ring.clear();
        for e in events {
            ring.push(e.id.clone(), e.raw.clone(), e.assigned);
        }
        ring.head_seq()
    }

    /// Frees rings whose last client left more than the TTL ago. Returns how many were freed.
    pub fn sweep(&self, now: Instant) -> usize {
        let ttl = self.limits.ttl;
        let mut freed = Vec::new();
        self.streams.borrow_mut().retain(|key, s| {
            let keep = s.clients.get() > 0 || now.duration_since(s.idle_since.get()) < ttl;
            if !keep {
                freed.push(key.clone());
            }
            keep
        });
        for key in &freed {
            self.directory.withdraw(key, self.worker);
        }
        freed.len()
    }

    /// Number of streams and total ring bytes on this worker.
    pub fn usage(&self) -> (usize, usize) {
        let streams = self.streams.borrow();
        (
            streams.len(),
            streams.values().map(|s| s.ring.borrow().bytes()).sum(),
        )
    }
}

/// The id a client is known to have, from the ring's point of view: used to extend the ring only
/// with blocks that follow on exactly (two clients of the same stream on one worker both relay
/// the same upstream data; only the one at the ring's head appends, the other skips duplicates).
#[derive(Debug, Default, Clone, Copy)]
pub struct RingCursor {
    /// Seq of the ring block this client delivered last, when it is in sync with the ring.
    pub seq: Option<u64>,
    /// The client started without a replay: a stale ring it finds may be restarted from its
    /// blocks. A client that was replayed from the ring never clears it (the ids it holds are
    /// what its next reconnection will be checked against).
    pub fresh: bool,
}

impl RingCursor {
    /// Records a block the client was just sent. It is appended to the ring when the client is at
    /// the ring's head (or the ring is empty). A client out of step resyncs on an id the ring
    /// knows; failing that, a fresh client that is the stream's only one here restarts the stale
    /// ring from this block (its old contents could only be replayed with a gap), otherwise the
    /// ring is left alone.
    pub fn record(
        &mut self,
        ring: &mut ReplayRing,
        id: Option<&Bytes>,
        raw: &Bytes,
        assigned: bool,
        sole_client: bool,
    ) {
        let at_head = match self.seq {
            Some(seq) => seq == ring.head_seq(),
            None => ring.is_empty(),
        };
        if at_head {
            self.seq = Some(ring.push(id.cloned(), raw.clone(), assigned));
            return;
        }
        self.seq = id.and_then(|id| ring.seq_of(id));
        if self.seq.is_none() && sole_client && self.fresh {
            ring.clear();
            self.seq = Some(ring.push(id.cloned(), raw.clone(), assigned));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn two_clients_in_step_append_each_block_once() {
        let mut ring = ReplayRing::new(100, 1 << 20);
        let (mut c1, mut c2) = (RingCursor::default(), RingCursor::default());
        for i in 1..=5 {
            let id = b(&i.to_string());
            let raw = b(&format!("id: {i}\n\n"));
            if i % 2 == 0 {
                c2.record(&mut ring, Some(&id), &raw, false, false);
                c1.record(&mut ring, Some(&id), &raw, false, false);
            } else {
                c1.record(&mut ring, Some(&id), &raw, false, false);
                c2.record(&mut ring, Some(&id), &raw, false, false);
            }
        }
        assert_eq!(ring.len(), 5);
        let ids: Vec<_> = ring.after(0).map(|e| e.id.clone().unwrap()).collect();
        assert_eq!(ids, (1..=5).map(|i| b(&i.to_string())).collect::<Vec<_>>());
    }

    #[test]
    fn a_client_out_of_step_never_appends_a_gap() {
        let mut ring = ReplayRing::new(100, 1 << 20);
        let mut c1 = RingCursor::default();
        c1.record(&mut ring, Some(&b("1")), &b("id: 1\n\n"), false, false);
        // A second client that joined later and is elsewhere in the stream.
        let mut late = RingCursor {
            seq: Some(99),
            fresh: false,
        };
        late.record(&mut ring, Some(&b("7")), &b("id: 7\n\n"), false, false);
        assert_eq!(ring.len(), 1);
        // It resyncs on a block the ring knows, then appends what follows.
        late.record(&mut ring, Some(&b("1")), &b("id: 1\n\n"), false, false);
        late.record(&mut ring, Some(&b("2")), &b("id: 2\n\n"), false, false);
        assert_eq!(ring.len(), 2);
    }

    #[test]
    fn a_sole_client_out_of_step_restarts_a_stale_ring() {
        let mut ring = ReplayRing::new(100, 1 << 20);
        let mut old = RingCursor {
            seq: None,
            fresh: true,
        };
        old.record(&mut ring, Some(&b("1")), &b("id: 1\n\n"), false, true);
        let mut fresh = RingCursor {
            seq: None,
            fresh: true,
        };
        fresh.record(&mut ring, Some(&b("50")), &b("id: 50\n\n"), false, true);
        assert_eq!(ring.len(), 1);
        assert!(ring.contains_id(b"50") && !ring.contains_id(b"1"));
        fresh.record(&mut ring, Some(&b("51")), &b("id: 51\n\n"), false, true);
        assert_eq!(ring.len(), 2);
    }

    #[test]
    fn a_replayed_client_never_clears_the_ring_it_was_served_from() {
        let mut ring = ReplayRing::new(100, 1 << 20);
        for i in 1..=3 {
            ring.push(Some(b(&i.to_string())), b("x"), false);
        }
        // Replayed up to the head, then the upstream sends an id the ring does not know.
        let mut replayed = RingCursor {
            seq: Some(99),
            fresh: false,
        };
        replayed.record(&mut ring, Some(&b("40")), &b("id: 40\n\n"), false, true);
        assert!(ring.contains_id(b"1") && ring.contains_id(b"3") && !ring.contains_id(b"40"));
    }
}
