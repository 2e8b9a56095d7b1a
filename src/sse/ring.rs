//! A stream's replay ring: its most recent blocks, bounded by count and bytes, holding the same
//! `Bytes` the client was sent (no copy), and an index from event id to position so a
//! `Last-Event-ID` is found in O(1).

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use bytes::Bytes;

/// Default `--replay-events`: blocks kept per stream; past it the oldest is dropped.
pub const DEFAULT_REPLAY_EVENTS: usize = 1024;
/// Default `--replay-bytes`: block bytes kept per stream; past it the oldest are dropped.
pub const DEFAULT_REPLAY_BYTES: usize = 4 * 1024 * 1024;

/// One block as it went to the client.
#[derive(Debug, Clone)]
pub struct RingEvent {
    /// Position in the stream (monotonic, never reused), so clients can tell where they are.
    pub seq: u64,
    /// The id this block set (its `id:` field), if it had one.
    pub id: Option<Bytes>,
    /// The exact bytes sent to the client.
    pub raw: Bytes,
    /// The id was given by tether (`--assign-ids`), not by the upstream: it is never sent
    /// upstream as a Last-Event-ID.
    pub assigned: bool,
}

#[derive(Debug)]
pub struct ReplayRing {
    events: VecDeque<RingEvent>,
    /// Latest seq of each id still in the ring, keyed by the id's hash (no key copy per event;
    /// a lookup checks the event's id, so a hash collision is a miss, never a wrong answer).
    by_id: HashMap<u64, u64, BuildHasherDefault<IdHasher>>,
    bytes: usize,
    next_seq: u64,
    max_events: usize,
    max_bytes: usize,
}

/// Where a `Last-Event-ID` points in the ring.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Found: replay the blocks after this seq.
    After(u64),
    /// Not (or no longer) in the ring: the upstream decides.
    Unknown,
}

impl ReplayRing {
    pub fn new(max_events: usize, max_bytes: usize) -> Self {
        ReplayRing {
            events: VecDeque::new(),
            by_id: HashMap::default(),
            bytes: 0,
            next_seq: 1,
            max_events: max_events.max(1),
            max_bytes,
        }
    }

    /// Seq of the newest block, 0 when empty-from-the-start.
    pub fn head_seq(&self) -> u64 {
        self.next_seq - 1
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

    /// Appends a block; returns its seq. Evicts from the front to stay within both bounds (a
    /// single block larger than `max_bytes` is kept alone).
    pub fn push(&mut self, id: Option<Bytes>, raw: Bytes, assigned: bool) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += raw.len();
        if let Some(id) = &id {
            self.by_id.insert(id_hash(id), seq);
        }
        self.events.push_back(RingEvent {
            seq,
            id,
            raw,
            assigned,
        });
        while self.events.len() > self.max_events
            || (self.bytes > self.max_bytes && self.events.len() > 1)
        {
            self.evict_front();
        }
        seq
    }

    fn evict_front(&mut self) {
        if let Some(old) = self.events.pop_front() {
            self.bytes -= old.raw.len();
            if let Some(id) = old.id {
                let h = id_hash(&id);
                if self.by_id.get(&h) == Some(&old.seq) {
                    self.by_id.remove(&h);
                }
            }
        }
    }

    /// Forgets every block (seqs keep increasing: a cursor into the old contents never matches).
    pub fn clear(&mut self) {
        self.events.clear();
        self.by_id.clear();
        self.bytes = 0;
    }

    /// Where the block that set `id` sits.
    pub fn lookup(&self, id: &[u8]) -> Lookup {
        match self.seq_of(id) {
            Some(seq) => Lookup::After(seq),
            None => Lookup::Unknown,
        }
    }

    /// Seq of the block that set `id`, if it is in the ring.
    pub fn seq_of(&self, id: &[u8]) -> Option<u64> {
        let seq = *self.by_id.get(&id_hash(id))?;
        let first = self.events.front()?.seq;
        let event = self
            .events
            .get(usize::try_from(seq.checked_sub(first)?).ok()?)?;
        (event.id.as_deref() == Some(id)).then_some(seq)
    }

    /// The blocks after `seq`, in order.
    pub fn after(&self, seq: u64) -> impl Iterator<Item = &RingEvent> {
        let first = self.events.front().map_or(0, |e| e.seq);
        let skip = seq.saturating_add(1).saturating_sub(first) as usize;
        self.events.iter().skip(skip)
    }

    /// The newest id set by any block still in the ring.
    pub fn newest_id(&self) -> Option<&Bytes> {
        self.events.iter().rev().find_map(|e| e.id.as_ref())
    }

    /// The newest id the upstream itself gave (what it can be asked to resume from).
    pub fn newest_upstream_id(&self) -> Option<&Bytes> {
        self.events
            .iter()
            .rev()
            .filter(|e| !e.assigned)
            .find_map(|e| e.id.as_ref())
    }

    /// Whether a block with this id is in the ring.
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

    #[test]
    fn replays_after_an_id() {
        let mut r = ReplayRing::new(10, 1 << 20);
        for i in 1..=5 {
            r.push(
                Some(b(&i.to_string())),
                b(&format!("id: {i}\ndata: x\n\n")),
                false,
            );
        }
        let Lookup::After(seq) = r.lookup(b"3") else {
            panic!()
        };
        let ids: Vec<_> = r.after(seq).map(|e| e.id.clone().unwrap()).collect();
        assert_eq!(ids, vec![b("4"), b("5")]);
        assert_eq!(r.lookup(b"nope"), Lookup::Unknown);
        assert_eq!(r.newest_id(), Some(&b("5")));
    }

    #[test]
    fn bounded_by_count_and_bytes() {
        let mut r = ReplayRing::new(3, 1 << 20);
        for i in 1..=5 {
            r.push(Some(b(&i.to_string())), b("data: x\n\n"), false);
        }
        assert_eq!(r.len(), 3);
        assert_eq!(r.lookup(b"1"), Lookup::Unknown, "evicted ids are forgotten");
        assert!(matches!(r.lookup(b"3"), Lookup::After(_)));

        let mut r = ReplayRing::new(100, 20);
        for i in 1..=5 {
            r.push(Some(b(&i.to_string())), b("0123456789"), false);
        }
        assert_eq!((r.len(), r.bytes()), (2, 20));
        // One block larger than the byte bound is kept alone.
        r.push(None, Bytes::from(vec![b'x'; 100]), false);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn after_the_newest_is_empty_and_blocks_without_ids_follow_their_predecessor() {
        let mut r = ReplayRing::new(10, 1 << 20);
        r.push(Some(b("a")), b("id: a\ndata: 1\n\n"), false);
        r.push(None, b("data: 2\n\n"), false);
        r.push(Some(b("b")), b("id: b\ndata: 3\n\n"), false);
        let Lookup::After(seq) = r.lookup(b"a") else {
            panic!()
        };
        let raws: Vec<_> = r.after(seq).map(|e| e.raw.clone()).collect();
        assert_eq!(raws, vec![b("data: 2\n\n"), b("id: b\ndata: 3\n\n")]);
        let Lookup::After(seq) = r.lookup(b"b") else {
            panic!()
        };
        assert_eq!(r.after(seq).count(), 0);
    }

    #[test]
    fn a_repeated_id_points_at_its_latest_block() {
        let mut r = ReplayRing::new(2, 1 << 20);
        r.push(Some(b("x")), b("1"), false);
        r.push(Some(b("x")), b("2"), false);
        r.push(Some(b("y")), b("3"), false);
        // The first "x" was evicted; the index still finds the second one.
        assert!(matches!(r.lookup(b"x"), Lookup::After(2)));
    }
}
