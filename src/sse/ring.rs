//! A replay ring: the most recent events of ONE upstream lineage (a connection and the resumes
//! that continue it), in order, bounded by count and bytes. It holds the same `Bytes` the client
//! was sent (no copy for events that fill their read buffer), finds a `Last-Event-ID` fast, and
//! knows what it costs in memory so the worker's budget can be kept.
//!
//! Finding an id: most upstreams number their events (`id: 1`, `id: 2`, ...). While every id in
//! a ring is a canonical decimal number larger than the one before, the ring keeps nothing per id
//! and finds one by binary search (a resumed upstream's fresh event, the common lookup, is
//! answered by one comparison with the newest). Other ids are found by scanning a small ring
//! and through a hash index past INDEX_FROM events. Recording an event costs no hashing and no
//! reference count for its id: the id is kept as a span of the event's own bytes.
//!
//! Positions (`seq`) are monotonic and never reused: a cursor that points before the oldest
//! event still here knows that what it needed was evicted.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use bytes::Bytes;

use super::framer::EventId;

/// Default `--replay-events`: events kept per ring; past it the oldest is dropped.
pub const DEFAULT_REPLAY_EVENTS: usize = 1024;
/// Default `--replay-bytes`: event bytes kept per ring; past it the oldest are dropped.
pub const DEFAULT_REPLAY_BYTES: usize = 4 * 1024 * 1024;

/// What one recorded event costs besides its bytes, as measured against RSS (1000 rings of
/// ~100-byte events): its slot in the deque, an index entry (a (hash, seq) pair, 16, with
/// hashbrown's control byte and up to half of its buckets empty: ~40; numbered rings keep none,
/// and are counted as if they did), and the shared header the `Bytes` of a split read buffer
/// allocates (32).
pub const EVENT_OVERHEAD: usize = std::mem::size_of::<RingEvent>() + 40 + 32;

/// Rings of other than increasing numeric ids with at most this many events find an id by
/// scanning them (newest first) instead of keeping a hash table: cheaper than hashing for so
/// few, and no table for quiet streams.
const INDEX_FROM: usize = 8;

/// Longest id read as a number: u64::MAX has 20 digits; 19 always fit.
const MAX_NUMERIC_ID_DIGITS: usize = 19;

/// One event as it went to the client.
#[derive(Debug, Clone)]
pub struct RingEvent {
    /// The exact bytes sent to the client.
    pub raw: Bytes,
    /// The id this block set (its `id:` field), if it had one.
    id: EventId,
    /// What keeping `raw` really holds: its share of the read buffer it is a slice of (never less
    /// than `raw.len()`). The budget counts this, not `raw.len()`.
    pub held: u32,
    /// The id was given by tether (`--assign-ids`), not by the upstream: it is never sent
    /// upstream as a Last-Event-ID.
    pub assigned: bool,
}

impl RingEvent {
    /// An event of `raw` that set `id` (None: it set none). An id that is a slice of `raw` is
    /// kept as its position there; any other is copied.
    pub fn new(raw: Bytes, id: Option<&[u8]>, held: u32, assigned: bool) -> RingEvent {
        let id = match id {
            None => EventId::None,
            Some(id) => match span_in(&raw, id) {
                Some((start, len)) => EventId::In { start, len },
                None => EventId::Own(id.into()),
            },
        };
        RingEvent {
            raw,
            id,
            held,
            assigned,
        }
    }

    /// An event whose id is already placed: `EventId::In` a span of `raw` (a framed block's
    /// own id, its bytes kept or copied whole), or `Own`.
    #[inline]
    pub fn with_id(raw: Bytes, id: EventId, held: u32, assigned: bool) -> RingEvent {
        debug_assert!(match &id {
            EventId::In { start, len } => (start + len) as usize <= raw.len(),
            _ => true,
        });
        RingEvent {
            raw,
            id,
            held,
            assigned,
        }
    }

    /// The id this event set, if it set one.
    pub fn id(&self) -> Option<&[u8]> {
        self.id.value(&self.raw)
    }

    /// The id as `Bytes` (a slice of the event's bytes when it is one).
    pub fn id_bytes(&self) -> Option<Bytes> {
        match &self.id {
            EventId::None => None,
            EventId::In { start, len } => {
                Some(self.raw.slice(*start as usize..(*start + *len) as usize))
            }
            EventId::Own(id) => Some(Bytes::copy_from_slice(id)),
        }
    }

    /// Memory this event keeps alive, overhead included.
    pub fn cost(&self) -> usize {
        self.held as usize + EVENT_OVERHEAD
    }
}

/// Where `part` lies in `whole` (start, length), if it is a slice of it.
fn span_in(whole: &[u8], part: &[u8]) -> Option<(u32, u32)> {
    let base = whole.as_ptr() as usize;
    let at = part.as_ptr() as usize;
    (at >= base && at + part.len() <= base + whole.len())
        .then(|| ((at - base) as u32, part.len() as u32))
}

/// `id` as a number, if it is a canonical decimal one (no sign, no leading zero, at most
/// MAX_NUMERIC_ID_DIGITS digits): only then does equal number mean equal id.
fn numeric_id(id: &[u8]) -> Option<u64> {
    if id.is_empty() || id.len() > MAX_NUMERIC_ID_DIGITS || (id[0] == b'0' && id.len() > 1) {
        return None;
    }
    let mut n = 0u64;
    for &d in id {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(d - b'0');
    }
    Some(n)
}

#[derive(Debug)]
pub struct ReplayRing {
    events: VecDeque<RingEvent>,
    /// Every id in the ring is a canonical decimal number larger than the one before it: ids
    /// are found by binary search and `by_id` is not kept.
    numbered: bool,
    /// The newest id's number, while `numbered` (None: no id yet).
    newest_number: Option<u64>,
    /// Latest seq of each id still in the ring, keyed by the id's hash (no key copy per event;
    /// a lookup checks the event's id, so a hash collision is a miss, never a wrong answer).
    /// Built only for rings that are not `numbered` once they hold more than INDEX_FROM events:
    /// a small ring is scanned, and the many rings of quiet streams hold no table.
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
            numbered: true,
            newest_number: None,
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
        if let Some(id) = event.id() {
            if self.numbered {
                match numeric_id(id) {
                    Some(n) if self.newest_number.is_none_or(|newest| n > newest) => {
                        self.newest_number = Some(n);
                    }
                    // Not a number, or not larger: from now on ids go through the index.
                    _ => self.numbered = false,
                }
            }
            if self.indexed {
                self.by_id.insert(id_hash(id), seq);
            }
        }
        if self.events.capacity() == 0 {
            // A ring that only ever gets one event (a quiet stream) holds one slot, not four.
            self.events.reserve_exact(1);
        }
        self.events.push_back(event);
        if !self.indexed && !self.numbered && self.events.len() > INDEX_FROM {
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
            if self.indexed {
                if let Some(id) = old.id() {
                    let h = id_hash(id);
                    if self.by_id.get(&h) == Some(&seq) {
                        self.by_id.remove(&h);
                    }
                }
            }
        }
        if self.events.is_empty() {
            // Give the deque's and the index's memory back too (a trimmed ring may stay idle),
            // and start over as a numbered ring.
            self.events = VecDeque::new();
            self.by_id = HashMap::default();
            self.indexed = false;
            self.numbered = true;
            self.newest_number = None;
        }
    }

    /// Indexes every id the ring holds (the ring has outgrown scanning).
    fn build_index(&mut self) {
        let first = self.first_seq;
        for (i, event) in self.events.iter().enumerate() {
            if let Some(id) = event.id() {
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

    /// Seq of the event that set `id`, if it is in the ring (the latest such event).
    pub fn seq_of(&self, id: &[u8]) -> Option<u64> {
        if self.numbered {
            return self.seq_of_number(id);
        }
        if !self.indexed {
            let i = self.events.iter().rposition(|e| e.id() == Some(id))?;
            return Some(self.first_seq + i as u64);
        }
        let seq = *self.by_id.get(&id_hash(id))?;
        let event = self.get(seq)?;
        (event.id() == Some(id)).then_some(seq)
    }

    /// `seq_of` in a numbered ring: ids increase with position, so a binary search over the
    /// positions finds it (an event without an id takes the number of the nearest id before it).
    fn seq_of_number(&self, id: &[u8]) -> Option<u64> {
        let wanted = numeric_id(id)?;
        // A resumed upstream's fresh event is newer than everything here: one comparison.
        if self.newest_number.is_none_or(|newest| wanted > newest) {
            return None;
        }
        let (mut lo, mut hi) = (0, self.events.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            // The nearest event at or before `mid` (and not before `lo`) that has an id.
            let Some((at, number)) = (lo..=mid).rev().find_map(|i| {
                let n = numeric_id(self.events[i].id()?)?;
                Some((i, n))
            }) else {
                lo = mid + 1;
                continue;
            };
            match number.cmp(&wanted) {
                std::cmp::Ordering::Equal => return Some(self.first_seq + at as u64),
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = at,
            }
        }
        None
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
    pub fn newest_upstream_id(&self) -> Option<Bytes> {
        self.events
            .iter()
            .rev()
            .filter(|e| !e.assigned)
            .find_map(RingEvent::id_bytes)
    }

    /// Whether any event in the ring carries an id (upstream's or tether's): a client can name
    /// a place in it with `Last-Event-ID`.
    pub fn has_ids(&self) -> bool {
        self.events.iter().rev().any(|e| e.id().is_some())
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
        RingEvent::new(b(raw), id.map(str::as_bytes), raw.len() as u32, false)
    }

    #[test]
    fn replays_after_an_id() {
        let mut r = ReplayRing::new(10, 1 << 20);
        for i in 1..=5 {
            let id = i.to_string();
            r.push(ev(Some(&id), &format!("id: {i}\ndata: x\n\n")));
        }
        let seq = r.seq_of(b"3").unwrap();
        let ids: Vec<_> = r.after(seq).map(|e| e.id_bytes().unwrap()).collect();
        assert_eq!(ids, vec![b("4"), b("5")]);
        assert_eq!(r.seq_of(b"nope"), None);
        assert_eq!(r.newest_upstream_id(), Some(b("5")));
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
                        .find(|&seq| r.get(seq).unwrap().id() == Some(probe.as_bytes()));
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

    /// Numbered rings (binary search, no table) and the others (scan, then the index) give the
    /// answer a plain scan of the ring gives, for every mix of ids: increasing numbers with gaps
    /// and events without ids between them, then a number out of order, a non-canonical one
    /// ("007"), a word, a repeat; through evictions and a ring that empties and starts again.
    #[test]
    fn every_way_of_finding_an_id_agrees_with_a_scan() {
        use proptest::prelude::*;
        #[derive(Debug, Clone)]
        enum Next {
            Up(u8),
            NoId,
            Back(u8),
            Zeroed,
            Word(u8),
            Empty,
            TrimAll,
        }
        let next = prop_oneof![
            8 => (1u8..5).prop_map(Next::Up),
            3 => Just(Next::NoId),
            1 => (0u8..20).prop_map(Next::Back),
            1 => Just(Next::Zeroed),
            1 => (0u8..4).prop_map(Next::Word),
            1 => Just(Next::Empty),
            1 => Just(Next::TrimAll),
        ];
        let config = ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..ProptestConfig::default()
        };
        proptest!(config, |(steps in proptest::collection::vec(next, 1..120), cap in 1usize..40)| {
            let mut r = ReplayRing::new(cap, 1 << 20);
            let mut number = 0u64;
            let mut probes: Vec<String> = vec!["0".into(), "007".into(), "w1".into(), "".into()];
            for step in steps {
                let id = match step {
                    Next::Up(by) => {
                        number += u64::from(by);
                        Some(number.to_string())
                    }
                    Next::NoId => None,
                    Next::Back(by) => Some(number.saturating_sub(u64::from(by)).to_string()),
                    Next::Zeroed => Some(format!("00{number}")),
                    Next::Word(w) => Some(format!("w{w}")),
                    Next::Empty => Some(String::new()),
                    Next::TrimAll => {
                        r.trim_to(0);
                        None
                    }
                };
                let raw = match &id {
                    Some(id) => format!("id: {id}\ndata: x\n\n"),
                    None => "data: x\n\n".to_string(),
                };
                let raw = Bytes::from(raw);
                let id_at = id.as_ref().map(|id| raw.slice(4..4 + id.len()));
                r.push(RingEvent::new(raw.clone(), id_at.as_deref(), raw.len() as u32, false));
                if let Some(id) = id {
                    probes.push(id);
                }
                probes.push((number + 1).to_string());
                for probe in &probes {
                    let expected = (r.first_seq()..=r.head_seq())
                        .rev()
                        .find(|&seq| r.get(seq).unwrap().id() == Some(probe.as_bytes()));
                    prop_assert_eq!(r.seq_of(probe.as_bytes()), expected, "probe {:?}", probe);
                }
            }
        });
    }

    #[test]
    fn a_numbered_ring_keeps_no_table_and_ids_live_inside_the_events() {
        // As the framer hands events over: the id a slice of the event's bytes.
        let framed = |id: &str| {
            let raw = Bytes::from(format!("id: {id}\n\n"));
            let at = raw.slice(4..4 + id.len());
            RingEvent::new(raw.clone(), Some(&at), raw.len() as u32, false)
        };
        let mut r = ReplayRing::new(1000, 1 << 20);
        for i in 1..=500 {
            r.push(framed(&i.to_string()));
        }
        assert!(r.numbered && !r.indexed && r.by_id.capacity() == 0);
        assert_eq!(r.seq_of(b"250"), Some(250));
        assert!(r
            .get(1)
            .is_some_and(|e| matches!(e.id, EventId::In { start: 4, len: 1 })));
        // A word turns the ring to the index, which then finds the numbers too.
        r.push(framed("w"));
        assert!(!r.numbered && r.indexed);
        assert_eq!(r.seq_of(b"250"), Some(250));
        assert_eq!(r.seq_of(b"w"), Some(501));
    }
}
