//! A replay ring: the most recent events of ONE upstream lineage (a connection and the resumes
//! that continue it), in order, bounded by count and bytes. It holds the same `Bytes` the client
//! was sent (no copy for events that fill their read buffer), an index from event id to position
//! so a `Last-Event-ID` is found in O(1), and what it costs in memory so the worker's budget can
//! be kept.
//!
//! Positions (`seq`) are monotonic and never reused: a cursor that points before the oldest
//! event still here knows that what it needed was evicted.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use bytes::Bytes;

/// Default `--replay-events`: events kept per ring; past it the oldest is dropped.
pub const DEFAULT_REPLAY_EVENTS: usize = 1024;
/// Default `--replay-bytes`: event bytes kept per ring; past it the oldest are dropped.
pub const DEFAULT_REPLAY_BYTES: usize = 4 * 1024 * 1024;

/// What one recorded event costs besides its bytes, as measured against RSS (1000 rings of
/// ~100-byte events): its slot in the deque (72), its index entry (a (hash, seq) pair, 16, with
/// hashbrown's control byte and up to half of its buckets empty: ~40), and the shared header the
/// `Bytes` of a split read buffer allocates (32).
pub const EVENT_OVERHEAD: usize = std::mem::size_of::<RingEvent>() + 40 + 32;

/// Rings with at most this many events find an id by scanning them (newest first) instead of
/// keeping a hash table: cheaper than hashing for so few, and no table for quiet streams.
const INDEX_FROM: usize = 8;

/// One event as it went to the client.
#[derive(Debug, Clone)]
pub struct RingEvent {
    /// The id this block set (its `id:` field), if it had one.
    pub id: Option<Bytes>,
    /// The exact bytes sent to the client.
    pub raw: Bytes,
    /// What keeping `raw` really holds: its share of the read buffer it is a slice of (never less
    /// than `raw.len()`). The budget counts this, not `raw.len()`.
    pub held: u32,
    /// The id was given by tether (`--assign-ids`), not by the upstream: it is never sent
    /// upstream as a Last-Event-ID.
    pub assigned: bool,
}

impl RingEvent {
    /// Memory this event keeps alive, overhead included.
    pub fn cost(&self) -> usize {
        self.held as usize + EVENT_OVERHEAD
    }
}

#[derive(Debug)]
pub struct ReplayRing {
    events: VecDeque<RingEvent>,
    /// Latest seq of each id still in the ring, keyed by the id's hash (no key copy per event;
    /// a lookup checks the event's id, so a hash collision is a miss, never a wrong answer).
    /// Built only once the ring holds more than INDEX_FROM events: a small ring is scanned, and
    /// the many rings of quiet streams hold no table.
    by_id: HashMap<u64, u64, BuildHasherDefault<IdHasher>>,
    /// `by_id` is built and kept up to date.
    indexed: bool,
    /// Seq of `events[0]` (of the next event when empty).
    first_seq: u64,
    /// Sum of `raw.len()`: what `--replay-bytes` bounds.
    bytes: usize,
    /// Sum of `cost()`: what the replay budget counts.
    cost: usize,
    max_events: usize,
    max_bytes: usize,
}

impl ReplayRing {
    pub fn new(max_events: usize, max_bytes: usize) -> Self {
        ReplayRing {
            events: VecDeque::new(),
            by_id: HashMap::default(),
            indexed: false,
            first_seq: 1,
            bytes: 0,
            cost: 0,
            max_events: max_events.max(1),
            max_bytes,
        }
    }

    /// Seq of the newest event, `first_seq - 1` when empty (0 for a new ring).
    pub fn head_seq(&self) -> u64 {
        self.first_seq + self.events.len() as u64 - 1
    }

    /// Seq of the oldest event still here (head_seq + 1 when empty).
    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Memory the events hold, overhead included (the ring's own fixed cost is the table's).
    pub fn cost(&self) -> usize {
        self.cost
    }

    /// Appends an event; returns its seq. Evicts from the front to stay within both bounds (a
    /// single event larger than `max_bytes` is kept alone).
    pub fn push(&mut self, event: RingEvent) -> u64 {
        let seq = self.head_seq() + 1;
        self.bytes += event.raw.len();
        self.cost += event.cost();
        if self.indexed {
            if let Some(id) = &event.id {
                self.by_id.insert(id_hash(id), seq);
            }
        }
        if self.events.capacity() == 0 {
            // A ring that only ever gets one event (a quiet stream) holds one slot, not four.
            self.events.reserve_exact(1);
        }
        self.events.push_back(event);
        if !self.indexed && self.events.len() > INDEX_FROM {
            self.build_index();
        }
        while self.events.len() > self.max_events
            || (self.bytes > self.max_bytes && self.events.len() > 1)
        {
            self.evict_front();
        }
        seq
    }

    fn evict_front(&mut self) {
        if let Some(old) = self.events.pop_front() {
            let seq = self.first_seq;
            self.first_seq += 1;
            self.bytes -= old.raw.len();
            self.cost -= old.cost();
            if let Some(id) = old.id.filter(|_| self.indexed) {
                let h = id_hash(&id);
                if self.by_id.get(&h) == Some(&seq) {
                    self.by_id.remove(&h);
                }
            }
        }
        if self.events.is_empty() {
            // Give the deque's and the index's memory back too (a trimmed ring may stay idle).
            self.events = VecDeque::new();
            self.by_id = HashMap::default();
            self.indexed = false;
        }
    }

    /// Indexes every id the ring holds (the ring has outgrown scanning).
    fn build_index(&mut self) {
        let first = self.first_seq;
        for (i, event) in self.events.iter().enumerate() {
            if let Some(id) = &event.id {
                self.by_id.insert(id_hash(id), first + i as u64);
            }
        }
        self.indexed = true;
    }

    /// Drops the oldest events until the ring costs at most `cost`. Returns how many went.
    pub fn trim_to(&mut self, cost: usize) -> usize {
        let mut n = 0;
        while self.cost > cost && !self.events.is_empty() {
            self.evict_front();
            n += 1;
        }
        n
    }

    /// Seq of the event that set `id`, if it is in the ring.
    pub fn seq_of(&self, id: &[u8]) -> Option<u64> {
        if !self.indexed {
            let i = self
                .events
                .iter()
                .rposition(|e| e.id.as_deref() == Some(id))?;
            return Some(self.first_seq + i as u64);
        }
        let seq = *self.by_id.get(&id_hash(id))?;
        let event = self.get(seq)?;
        (event.id.as_deref() == Some(id)).then_some(seq)
    }

    /// The event at `seq`, if it is still here.
    pub fn get(&self, seq: u64) -> Option<&RingEvent> {
        let index = usize::try_from(seq.checked_sub(self.first_seq)?).ok()?;
        self.events.get(index)
    }

    /// The events after `seq`, in order (all of them when `seq` is older than the ring).
    pub fn after(&self, seq: u64) -> impl Iterator<Item = &RingEvent> {
        let skip = seq.saturating_add(1).saturating_sub(self.first_seq) as usize;
        self.events.iter().skip(skip)
    }

    /// The newest id the upstream itself gave (what it can be asked to resume from).
    pub fn newest_upstream_id(&self) -> Option<&Bytes> {
        self.events
            .iter()
            .rev()
            .filter(|e| !e.assigned)
            .find_map(|e| e.id.as_ref())
    }

    /// Whether an event with this id is in the ring.
    pub fn contains_id(&self, id: &[u8]) -> bool {
        self.seq_of(id).is_some()
    }
}

/// FxHash-style word hashing for event ids: ids come from the upstream (not from clients), the
/// map is bounded by the ring, and SipHash cost ~20% of the relay's CPU with batched streams.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(SEED);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(SEED);
        }
    }

    fn write_u64(&mut self, n: u64) {
        // The map's keys are already hashes: mix once more so low bits vary.
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The hash an id is indexed by.
fn id_hash(id: &[u8]) -> u64 {
    let mut h = IdHasher::default();
    h.write(id);
    // Length in, so "a" and "a\0" differ.
    h.write_u64(id.len() as u64);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn ev(id: Option<&str>, raw: &str) -> RingEvent {
        RingEvent {
            id: id.map(b),
            raw: b(raw),
            held: raw.len() as u32,
            assigned: false,
        }
    }

    #[test]
    fn replays_after_an_id() {
        let mut r = ReplayRing::new(10, 1 << 20);
        for i in 1..=5 {
            let id = i.to_string();
            r.push(ev(Some(&id), &format!("id: {i}\ndata: x\n\n")));
        }
        let seq = r.seq_of(b"3").unwrap();
        let ids: Vec<_> = r.after(seq).map(|e| e.id.clone().unwrap()).collect();
        assert_eq!(ids, vec![b("4"), b("5")]);
        assert_eq!(r.seq_of(b"nope"), None);
        assert_eq!(r.newest_upstream_id(), Some(&b("5")));
    }

    #[test]
    fn bounded_by_count_and_bytes_with_seqs_kept() {
        let mut r = ReplayRing::new(3, 1 << 20);
        for i in 1..=5 {
            r.push(ev(Some(&i.to_string()), "data: x\n\n"));
        }
        assert_eq!(r.len(), 3);
        assert_eq!((r.first_seq(), r.head_seq()), (3, 5));
        assert_eq!(r.seq_of(b"1"), None, "evicted ids are forgotten");
        assert_eq!(r.seq_of(b"3"), Some(3));
        assert!(r.get(2).is_none() && r.get(3).is_some() && r.get(6).is_none());

        let mut r = ReplayRing::new(100, 20);
        for i in 1..=5 {
            r.push(ev(Some(&i.to_string()), "0123456789"));
        }
        assert_eq!((r.len(), r.bytes()), (2, 20));
        // One event larger than the byte bound is kept alone.
        r.push(ev(None, &"x".repeat(100)));
        assert_eq!(r.len(), 1);
        assert_eq!(r.cost(), 100 + EVENT_OVERHEAD);
    }

    #[test]
    fn after_the_newest_is_empty_and_events_without_ids_follow_their_predecessor() {
        let mut r = ReplayRing::new(10, 1 << 20);
        r.push(ev(Some("a"), "id: a\ndata: 1\n\n"));
        r.push(ev(None, "data: 2\n\n"));
        r.push(ev(Some("b"), "id: b\ndata: 3\n\n"));
        let seq = r.seq_of(b"a").unwrap();
        let raws: Vec<_> = r.after(seq).map(|e| e.raw.clone()).collect();
        assert_eq!(raws, vec![b("data: 2\n\n"), b("id: b\ndata: 3\n\n")]);
        assert_eq!(r.after(r.seq_of(b"b").unwrap()).count(), 0);
        assert_eq!(
            r.after(0).count(),
            3,
            "a cursor older than the ring sees all"
        );
    }

    #[test]
    fn a_repeated_id_points_at_its_latest_event() {
        let mut r = ReplayRing::new(2, 1 << 20);
        r.push(ev(Some("x"), "1"));
        r.push(ev(Some("x"), "2"));
        r.push(ev(Some("y"), "3"));
        // The first "x" was evicted; the index still finds the second one.
        assert_eq!(r.seq_of(b"x"), Some(2));
    }

    #[test]
    fn trimming_frees_the_oldest_and_keeps_the_accounts() {
        let mut r = ReplayRing::new(100, 1 << 20);
        for i in 1..=10 {
            r.push(ev(Some(&i.to_string()), "0123456789"));
        }
        let one = 10 + EVENT_OVERHEAD;
        assert_eq!(r.cost(), 10 * one);
        assert_eq!(r.trim_to(4 * one), 6);
        assert_eq!((r.len(), r.first_seq(), r.cost()), (4, 7, 4 * one));
        assert_eq!(r.seq_of(b"6"), None);
        assert_eq!(r.trim_to(0), 4);
        assert!(r.is_empty());
        assert_eq!((r.cost(), r.bytes(), r.head_seq()), (0, 0, 10));
        assert_eq!(r.push(ev(Some("11"), "z")), 11, "seqs are never reused");
    }

    /// Small rings scan, larger ones use the index: both must give the same answer, through the
    /// switch, with repeated ids and evictions, and after the ring empties and starts again.
    #[test]
    fn scanning_and_the_index_agree() {
        let mut r = ReplayRing::new(INDEX_FROM + 4, 1 << 20);
        let ids = ["a", "b", "c", "a", "d", "b", "e"];
        for round in 0..2 {
            for i in 0..40 {
                let id = ids[i % ids.len()];
                let raw = format!("{round}-{i}");
                r.push(ev((i % 5 != 4).then_some(id), &raw));
                for probe in ["a", "b", "c", "d", "e", "zz"] {
                    let expected = (r.first_seq()..=r.head_seq())
                        .rev()
                        .find(|&seq| r.get(seq).unwrap().id.as_deref() == Some(probe.as_bytes()));
                    assert_eq!(r.seq_of(probe.as_bytes()), expected, "{probe} after {i}");
                }
            }
            assert!(r.indexed, "a ring past INDEX_FROM events is indexed");
            r.trim_to(0);
            assert!(
                !r.indexed && r.by_id.capacity() == 0,
                "an empty ring holds no table"
            );
        }
    }
}
