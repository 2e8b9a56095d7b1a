//! A replay ring: the most recent events of ONE upstream lineage (a connection and the resumes
//! that continue it), in order, bounded by count and bytes. It holds the same bytes the client
//! was sent (no copy for events that fill their read buffer), finds a `Last-Event-ID` fast, and
//! knows what it costs in memory so the worker's budget can be kept.
//!
//! Runs and slots: the ring keeps the buffers its events lie in (*runs*: one `Bytes` per read,
//! shared by every event recorded from it, or an event's own allocation) and, per event, a small
//! *slot*: which run, where in it, its id as a span of the event's bytes. Recording a read's
//! events takes one reference count for the read, not one per event, and a flush's events are
//! recorded in one call (`push_batch`, from a `RingBatch`). A run goes when its last event does;
//! until then it pins its whole buffer, and that is what the budget counts (`Run::held`).
//!
//! Finding an id: most upstreams number their events (`id: 1`, `id: 2`, ...). While every id in
//! a ring is a canonical decimal number larger than the one before, the ring keeps nothing per id
//! and finds one by binary search (a resumed upstream's fresh event, the common lookup, is
//! answered by one comparison with the newest). Other ids are found by scanning a small ring
//! and through a hash index past INDEX_FROM events.
//!
//! Positions (`seq`) are monotonic and never reused: a cursor that points before the oldest
//! event still here knows that what it needed was evicted.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use bytes::Bytes;

use super::framer::{EventId, OwnId};
use super::ring_batch::RingBatch;

/// Default `--replay-events`: events kept per ring; past it the oldest is dropped.
pub const DEFAULT_REPLAY_EVENTS: usize = 1024;
/// Default `--replay-bytes`: event bytes kept per ring; past it the oldest are dropped.
pub const DEFAULT_REPLAY_BYTES: usize = 4 * 1024 * 1024;

/// What one recorded event costs besides its bytes: its slot in the deque and an index entry (a
/// (hash, seq) pair, 16, with hashbrown's control byte and up to half of its buckets empty: ~40;
/// numbered rings keep none, and are counted as if they did).
pub(crate) const SLOT_OVERHEAD: usize = std::mem::size_of::<Slot>() + 40;

/// What one run costs besides the buffer it pins: its slot in the deque and the shared header
/// (24) the first slice of a frozen read allocates (`Relay::ingest`), counted as 32 (a `BytesMut`
/// split off a larger buffer makes one of 40).
pub(crate) const RUN_OVERHEAD: usize = std::mem::size_of::<Run>() + 32;

/// What an event recorded alone (in a run of its own) costs besides its bytes.
pub const EVENT_OVERHEAD: usize = SLOT_OVERHEAD + RUN_OVERHEAD;

/// Rings of other than increasing numeric ids with at most this many events find an id by
/// scanning them (newest first) instead of keeping a hash table: cheaper than hashing for so
/// few, and no table for quiet streams.
const INDEX_FROM: usize = 8;

/// A batch of at most this many slots is appended one by one (a read of an event or two: less
/// set-up than a bulk extend), a larger one in bulk.
const FEW_SLOTS: usize = 4;

/// Longest id read as a number: u64::MAX has 20 digits; 19 always fit.
pub(crate) const MAX_NUMERIC_ID_DIGITS: usize = 19;

/// `ReplayRing::newest_number` when the ring has no numbered id, and the framer's id value
/// that is no number: no id of at most MAX_NUMERIC_ID_DIGITS digits reads as u64::MAX (a u64
/// and a sentinel instead of an `Option<u64>`: 8 bytes less in every ring, see
/// `ReplayRing::by_id`, and in every stream's framer).
pub(super) const NO_NUMBER: u64 = u64::MAX;

/// One event on its own, with its bytes: what is copied out of a ring (a reconnection adopting
/// another ring's events, another worker's answer) and what the replay store reads back.
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
        id_bytes(&self.id, &self.raw)
    }

    /// Memory this event keeps alive when recorded alone, overhead included.
    pub fn cost(&self) -> usize {
        self.held as usize + EVENT_OVERHEAD
    }

    /// The event's parts, for recording it as a run of its own.
    pub(crate) fn into_parts(self) -> (Bytes, EventId, u32, bool) {
        (self.raw, self.id, self.held, self.assigned)
    }
}

/// `id` as `Bytes`, given the bytes of the event it belongs to.
fn id_bytes(id: &EventId, raw: &Bytes) -> Option<Bytes> {
    match id {
        EventId::None => None,
        EventId::In { start, len } => Some(raw.slice(*start as usize..(*start + *len) as usize)),
        EventId::Own(id) => Some(Bytes::copy_from_slice(id)),
    }
}

/// A buffer events of the ring lie in: a read (shared by the events framed from it) or one
/// event's own allocation.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) bytes: Bytes,
    /// What keeping `bytes` really holds (its allocation, or its share of it when several runs
    /// lie in one; never less than what its events span). The budget counts this.
    pub(crate) held: u32,
    /// The id of its one event when that id is not a span of the event's bytes (`SlotId::RUN`):
    /// rare (a rewritten event, an id with invalid UTF-8), so kept here, once per such run,
    /// and not in every slot, which stays plain data (evicting slots drops nothing).
    pub(crate) own_id: Option<OwnId>,
}

/// One event's place: a span of its run. Plain data (`Copy`, nothing to drop): the ring drops
/// a batch's worth of evicted slots by moving its front, not one by one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    /// Its run's number (in a ring: wrapping, `first_run` is the oldest's; in a `RingBatch`:
    /// the index in the batch's runs).
    pub(crate) run: u32,
    /// Where the event's bytes start in the run.
    pub(crate) start: u32,
    pub(crate) len: u32,
    /// The id it set.
    pub(crate) id: SlotId,
    /// The id was given by tether (`--assign-ids`): never sent upstream as a Last-Event-ID.
    pub(crate) assigned: bool,
}

impl Slot {
    /// The event's bytes, given its run's.
    #[inline]
    pub(crate) fn raw<'a>(&self, run: &'a [u8]) -> &'a [u8] {
        &run[self.start as usize..(self.start + self.len) as usize]
    }

    /// The id the event set, given its run.
    #[inline]
    pub(crate) fn id_value<'a>(&self, run: &'a Run) -> Option<&'a [u8]> {
        self.id.value(self.raw(&run.bytes), run)
    }
}

/// Where a slot's id is: a span of the event's own bytes (not of the run), its run's `own_id`,
/// or none. Two words, with the two cases that are no span as lengths no span has (an event
/// is at most 4 GiB - 1 bytes: `clamp_u32`), so that a slot is 24 bytes where an `EventId` in
/// it made 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotId {
    start: u32,
    len: u32,
}

impl SlotId {
    /// No `id` field.
    pub(crate) const NONE: SlotId = SlotId {
        start: 0,
        len: u32::MAX,
    };
    /// The run's `own_id` (its one event's).
    pub(crate) const RUN: SlotId = SlotId {
        start: 0,
        len: u32::MAX - 1,
    };

    /// The id at `event[start..start + len]`.
    #[inline]
    pub(crate) fn span(start: u32, len: u32) -> SlotId {
        debug_assert!(len < u32::MAX - 1);
        SlotId { start, len }
    }

    pub(crate) fn is_none(&self) -> bool {
        *self == SlotId::NONE
    }

    /// The span of the event's bytes the id is, if it is one.
    #[inline]
    fn as_span(&self) -> Option<(u32, u32)> {
        (self.len < u32::MAX - 1).then_some((self.start, self.len))
    }

    /// The value, given the event's bytes and its run.
    #[inline]
    pub(crate) fn value<'a>(&self, event: &'a [u8], run: &'a Run) -> Option<&'a [u8]> {
        match self.as_span() {
            Some((start, len)) => Some(&event[start as usize..(start + len) as usize]),
            None if *self == SlotId::RUN => run.own_id.as_deref(),
            None => None,
        }
    }

    /// The slot's id for an `EventId`, and the own id its run must keep (Own).
    #[inline]
    pub(crate) fn of(id: EventId) -> (SlotId, Option<OwnId>) {
        match id {
            EventId::None => (SlotId::NONE, None),
            EventId::In { start, len } => (SlotId::span(start, len), None),
            EventId::Own(own) => (SlotId::RUN, Some(own)),
        }
    }
}

/// An event in a ring (or a batch): its run and its slot.
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a> {
    run: &'a Run,
    slot: &'a Slot,
}

impl<'a> EventRef<'a> {
    pub(crate) fn new(run: &'a Run, slot: &'a Slot) -> Self {
        EventRef { run, slot }
    }

    /// The event's bytes, as sent.
    pub fn raw(&self) -> &'a [u8] {
        self.slot.raw(&self.run.bytes)
    }

    /// The event's bytes as `Bytes` (a slice of its run: one reference count).
    pub fn bytes(&self) -> Bytes {
        let start = self.slot.start as usize;
        self.run.bytes.slice(start..start + self.slot.len as usize)
    }

    pub fn len(&self) -> usize {
        self.slot.len as usize
    }

    pub fn is_empty(&self) -> bool {
        self.slot.len == 0
    }

    /// The id this event set, if it set one.
    pub fn id(&self) -> Option<&'a [u8]> {
        self.slot.id_value(self.run)
    }

    /// The id as `Bytes` (a slice of the run when it is one).
    pub fn id_bytes(&self) -> Option<Bytes> {
        match self.slot.id.as_span() {
            Some((start, len)) => {
                let at = (self.slot.start + start) as usize;
                Some(self.run.bytes.slice(at..at + len as usize))
            }
            None => self.id().map(Bytes::copy_from_slice),
        }
    }

    /// Whether tether gave the id (`--assign-ids`).
    pub fn assigned(&self) -> bool {
        self.slot.assigned
    }

    /// The event on its own (its bytes refcounted, not copied), held for its share of its run.
    pub fn to_event(&self) -> RingEvent {
        let len = self.slot.len as u64;
        let run_len = (self.run.bytes.len() as u64).max(1);
        let share = u64::from(self.run.held) * len / run_len;
        let held = u32::try_from(share.max(len)).unwrap_or(u32::MAX);
        let id = match self.slot.id.as_span() {
            Some((start, len)) => EventId::In { start, len },
            None => match &self.run.own_id {
                Some(own) if self.slot.id == SlotId::RUN => EventId::Own(own.clone()),
                _ => EventId::None,
            },
        };
        RingEvent::with_id(self.bytes(), id, held, self.slot.assigned)
    }
}

/// Where `part` lies in `whole` (start, length), if it is a slice of it.
pub(crate) fn span_in(whole: &[u8], part: &[u8]) -> Option<(u32, u32)> {
    let base = whole.as_ptr() as usize;
    let at = part.as_ptr() as usize;
    (at >= base && at + part.len() <= base + whole.len())
        .then(|| ((at - base) as u32, part.len() as u32))
}

/// `id` as a number, if it is a canonical decimal one (no sign, no leading zero, at most
/// MAX_NUMERIC_ID_DIGITS digits): only then does equal number mean equal id.
pub(crate) fn numeric_id(id: &[u8]) -> Option<u64> {
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

/// A ring's index of ids (see `ReplayRing::by_id`).
type IdIndex = HashMap<u64, u64, BuildHasherDefault<IdHasher>>;

#[derive(Debug)]
pub struct ReplayRing {
    /// The buffers the events lie in, oldest first; each holds at least one event.
    runs: VecDeque<Run>,
    /// Number of `runs[0]` (of the next run when empty); numbers wrap (a ring holds far fewer
    /// than 2^32 runs at once).
    first_run: u32,
    /// One per event, oldest first; their runs are in order.
    slots: VecDeque<Slot>,
    /// Every id in the ring is a canonical decimal number larger than the one before it: ids
    /// are found by binary search and `by_id` is not kept.
    numbered: bool,
    /// The newest id's number, while `numbered` (NO_NUMBER: no id yet; `newest_number()`).
    newest_number: u64,
    /// Latest seq of each id still in the ring, keyed by the id's hash (no key copy per event;
    /// a lookup checks the event's id, so a hash collision is a miss, never a wrong answer).
    /// Built only for rings that are not `numbered` once they hold more than INDEX_FROM events:
    /// a small ring is scanned, and the many rings of quiet streams hold no table. Some: built
    /// and kept up to date. Boxed: an empty map is 32 bytes inline in every ring, the box 8,
    /// and the lineage that holds the ring sits at an allocator size-class edge
    /// (`table::tests::a_lineage_stays_small`).
    by_id: Option<Box<IdIndex>>,
    /// Seq of `slots[0]` (of the next event when empty).
    first_seq: u64,
    /// Sum of the events' lengths: what `--replay-bytes` bounds.
    bytes: usize,
    /// Runs' `held` plus every overhead: what the replay budget counts.
    cost: usize,
    /// `--replay-events` and `--replay-bytes` (u32: 8 bytes less in every ring; bounds past
    /// 4 Gi are taken as 4 Gi, far more than any worker's share of `--replay-memory`).
    max_events: u32,
    max_bytes: u32,
}

impl ReplayRing {
    pub fn new(max_events: usize, max_bytes: usize) -> Self {
        ReplayRing {
            runs: VecDeque::new(),
            first_run: 0,
            slots: VecDeque::new(),
            numbered: true,
            newest_number: NO_NUMBER,
            by_id: None,
            first_seq: 1,
            bytes: 0,
            cost: 0,
            max_events: clamp_u32(max_events.max(1)),
            max_bytes: clamp_u32(max_bytes),
        }
    }

    /// The newest id's number, while the ring is numbered and has one.
    fn newest_number(&self) -> Option<u64> {
        (self.newest_number != NO_NUMBER).then_some(self.newest_number)
    }

    /// Seq of the newest event, `first_seq - 1` when empty (0 for a new ring).
    pub fn head_seq(&self) -> u64 {
        self.first_seq + self.slots.len() as u64 - 1
    }

    /// Seq of the oldest event still here (head_seq + 1 when empty).
    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Buffers the events pin (for tests and `/streams`-style views).
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Memory the events hold, overhead included (the ring's own fixed cost is the table's).
    pub fn cost(&self) -> usize {
        self.cost
    }

    /// Appends an event in a run of its own; returns its seq. Evicts from the front to stay
    /// within both bounds (a single event larger than `max_bytes` is kept alone).
    pub fn push(&mut self, event: RingEvent) -> u64 {
        let (raw, id, held, assigned) = event.into_parts();
        let len = clamp_u32(raw.len());
        let (id, own_id) = SlotId::of(id);
        let slot = Slot {
            run: self.next_run(),
            start: 0,
            len,
            id,
            assigned,
        };
        let run = Run {
            bytes: raw,
            held,
            own_id,
        };
        if let Some(value) = slot.id_value(&run) {
            self.note_id_value(value);
        }
        self.append_slot(slot);
        self.append_run(run);
        self.keep_bounds();
        self.head_seq()
    }

    /// The number the next run appended gets (eviction does not change it).
    #[inline]
    fn next_run(&self) -> u32 {
        self.first_run.wrapping_add(self.runs.len() as u32)
    }

    /// Appends every event of `batch`, in order, and empties it (its capacity is kept for the
    /// next flush); returns the seq of the last. One decision on what to evict for them all.
    pub fn push_batch(&mut self, batch: &mut RingBatch) -> u64 {
        let added = batch.len();
        // What the bounds take, decided once and evicted before the batch goes in: the deque
        // never grows past the count bound for a batch that fits (a full ring stays at its
        // capacity). A batch that reaches past a bound by itself (rare) goes the long way:
        // room by count first, then the bounds kept with it in (`keep_bounds`).
        let room = self.room_for(added, batch.bytes());
        match room {
            Some(0) => {}
            Some(n) => self.evict_front(n),
            None => {
                let excess = (self.slots.len() + added).saturating_sub(self.max_events as usize);
                self.evict_front(excess.min(self.slots.len()));
            }
        }
        // A numbered batch after a numbered ring's newest keeps the ring numbered: its ids
        // were read as numbers once, by the batch; none is parsed again here.
        let numbered_in_order = match batch.numbers() {
            Some((Some(first), Some(newest)))
                if self.numbered && self.newest_number().is_none_or(|n| first > n) =>
            {
                self.newest_number = newest;
                true
            }
            Some((None, _)) => true,
            _ => false,
        };
        let bytes = batch.bytes();
        let (runs, slots) = batch.parts();
        let base = self.next_run();
        if self.slots.capacity() == 0 {
            // A ring that only ever gets one read (a quiet stream) holds its slots, no more.
            self.slots.reserve_exact(slots.len());
        }
        // The slots are plain data: copied in (their runs renumbered), the batch's list only
        // emptied.
        let in_ring = |slot: &Slot| Slot {
            run: base.wrapping_add(slot.run),
            ..*slot
        };
        if numbered_in_order {
            if slots.len() <= FEW_SLOTS {
                for slot in slots.iter() {
                    self.slots.push_back(in_ring(slot));
                }
            } else {
                self.slots.extend(slots.iter().map(in_ring));
            }
        } else {
            for slot in slots.iter() {
                // The id's bookkeeping reads the event's bytes in its (batch-held) run.
                if let Some(value) = slot.id_value(&runs[slot.run as usize]) {
                    self.note_id_value(value);
                }
                self.slots.push_back(in_ring(slot));
            }
        }
        self.bytes += usize::try_from(bytes).unwrap_or(usize::MAX);
        if self.runs.capacity() == 0 {
            self.runs.reserve_exact(runs.len());
        }
        let added_runs = runs.len();
        let mut held = 0;
        for run in runs.drain(..) {
            held += run.held as usize;
            self.runs.push_back(run);
        }
        self.cost += added * SLOT_OVERHEAD + added_runs * RUN_OVERHEAD + held;
        batch.clear();
        if room.is_some() {
            self.index_if_outgrown();
        } else {
            self.keep_bounds();
        }
        self.head_seq()
    }

    /// How many of the oldest events must go for `added` more events of `added_bytes` bytes to
    /// be within both bounds, as `keep_bounds` would count them with the events in; None when
    /// that is all of them (the new events reach past a bound by themselves).
    #[inline]
    fn room_for(&self, added: usize, added_bytes: u64) -> Option<usize> {
        let len = self.slots.len();
        let total = len + added;
        let over_count = total.saturating_sub(self.max_events as usize);
        let max_bytes = self.max_bytes as u64;
        let mut bytes = self.bytes as u64 + added_bytes;
        if bytes <= max_bytes {
            return (over_count == 0 || over_count < len).then_some(over_count);
        }
        // Past the byte bound: the oldest go until it is met (one event always stays).
        for (n, slot) in self.slots.iter().enumerate() {
            if n >= over_count && (bytes <= max_bytes || n + 1 == total) {
                return Some(n);
            }
            bytes -= u64::from(slot.len);
        }
        None
    }

    /// Keeps `numbered` and `newest_number` true of the ring with an event of id `value` added
    /// at its head, and the index (its seq is the next one).
    #[inline]
    fn note_id_value(&mut self, value: &[u8]) {
        if self.numbered {
            match numeric_id(value) {
                Some(n) if self.newest_number().is_none_or(|newest| n > newest) => {
                    self.newest_number = n;
                }
                // Not a number, or not larger: from now on ids go through the index.
                _ => self.numbered = false,
            }
        }
        let seq = self.head_seq() + 1;
        if let Some(by_id) = &mut self.by_id {
            by_id.insert(id_hash(value), seq);
        }
    }

    #[inline]
    fn append_slot(&mut self, slot: Slot) {
        self.bytes += slot.len as usize;
        self.cost += SLOT_OVERHEAD;
        if self.slots.capacity() == 0 {
            // A ring that only ever gets one event (a quiet stream) holds one slot, not four.
            self.slots.reserve_exact(1);
        }
        self.slots.push_back(slot);
    }

    fn append_run(&mut self, run: Run) {
        self.cost += run.held as usize + RUN_OVERHEAD;
        if self.runs.capacity() == 0 {
            self.runs.reserve_exact(1);
        }
        self.runs.push_back(run);
    }

    /// Evicts from the front to stay within both bounds, then indexes the ring if it outgrew
    /// scanning.
    fn keep_bounds(&mut self) {
        // The oldest events past the count bound, then while the bytes are past theirs (one
        // event always stays).
        let len = self.slots.len();
        let over_count = len.saturating_sub(self.max_events as usize);
        let max_bytes = self.max_bytes as usize;
        let mut n = over_count;
        if self.bytes > max_bytes {
            let mut bytes = self.bytes;
            n = 0;
            for slot in &self.slots {
                if n >= over_count && (bytes <= max_bytes || n + 1 == len) {
                    break;
                }
                bytes -= slot.len as usize;
                n += 1;
            }
        }
        self.evict_front(n);
        self.index_if_outgrown();
    }

    /// Indexes the ring once it has outgrown scanning for ids.
    #[inline]
    fn index_if_outgrown(&mut self) {
        if self.by_id.is_none() && !self.numbered && self.slots.len() > INDEX_FROM {
            self.build_index();
        }
    }

    /// Evicts the `n` oldest events, and the runs left without one: the slots as one step (they
    /// are plain data: the deque's front moves, nothing is dropped per event), their bytes
    /// summed in one pass; each dead run's buffer released once.
    fn evict_front(&mut self, n: usize) {
        let n = n.min(self.slots.len());
        if n == 0 {
            return;
        }
        let gone: usize = self.slots.range(..n).map(|s| s.len as usize).sum();
        if let Some(by_id) = &mut self.by_id {
            // An evicted id leaves the index when the index points at this event (a later
            // event with the same id keeps its entry).
            for (i, slot) in self.slots.range(..n).enumerate() {
                let run = &self.runs[slot.run.wrapping_sub(self.first_run) as usize];
                if let Some(id) = slot.id_value(run) {
                    let h = id_hash(id);
                    if by_id.get(&h) == Some(&(self.first_seq + i as u64)) {
                        by_id.remove(&h);
                    }
                }
            }
        }
        self.slots.drain(..n);
        self.first_seq += n as u64;
        self.bytes -= gone;
        self.cost -= n * SLOT_OVERHEAD;
        self.drop_dead_runs();
    }

    /// Drops the runs no event lies in any more, in one step; an empty ring gives its memory
    /// back.
    fn drop_dead_runs(&mut self) {
        let keep_from = match self.slots.front() {
            Some(slot) => slot.run,
            None => self.next_run(),
        };
        let dead = keep_from.wrapping_sub(self.first_run) as usize;
        debug_assert!(dead <= self.runs.len());
        if dead > 0 {
            let dead = dead.min(self.runs.len());
            let held: usize = self.runs.range(..dead).map(|r| r.held as usize).sum();
            self.runs.drain(..dead);
            self.cost -= held + dead * RUN_OVERHEAD;
            self.first_run = keep_from;
        }
        if self.slots.is_empty() {
            // Give the deques' and the index's memory back too (a trimmed ring may stay idle),
            // and start over as a numbered ring.
            debug_assert!(self.runs.is_empty() && self.cost == 0 && self.bytes == 0);
            self.slots = VecDeque::new();
            self.runs = VecDeque::new();
            self.by_id = None;
            self.numbered = true;
            self.newest_number = NO_NUMBER;
        }
    }

    /// Indexes every id the ring holds (the ring has outgrown scanning).
    fn build_index(&mut self) {
        let first = self.first_seq;
        let mut by_id = Box::<IdIndex>::default();
        for i in 0..self.slots.len() {
            if let Some(id) = self.event(i).id() {
                by_id.insert(id_hash(id), first + i as u64);
            }
        }
        self.by_id = Some(by_id);
    }

    /// Drops the oldest events until the ring costs at most `cost`. Returns how many went. A
    /// run's buffer is freed with its last event, so this may take all of a run's events.
    /// Counted first (an event's slot, and its run with the run's last event), evicted in one
    /// step after.
    pub fn trim_to(&mut self, cost: usize) -> usize {
        let len = self.slots.len();
        let mut left = self.cost;
        let mut n = 0;
        let mut slots = self.slots.iter().peekable();
        while left > cost {
            let Some(slot) = slots.next() else {
                break;
            };
            left -= SLOT_OVERHEAD;
            n += 1;
            if slots.peek().is_none_or(|next| next.run != slot.run) {
                let run = &self.runs[slot.run.wrapping_sub(self.first_run) as usize];
                left -= run.held as usize + RUN_OVERHEAD;
            }
        }
        debug_assert!(n <= len);
        self.evict_front(n);
        n
    }

    /// The event at index `i` (0: the oldest).
    #[inline]
    fn event(&self, i: usize) -> EventRef<'_> {
        let slot = &self.slots[i];
        let run = &self.runs[slot.run.wrapping_sub(self.first_run) as usize];
        EventRef::new(run, slot)
    }

    /// Seq of the event that set `id`, if it is in the ring (the latest such event).
    pub fn seq_of(&self, id: &[u8]) -> Option<u64> {
        if self.numbered {
            return self.seq_of_number(id);
        }
        let Some(by_id) = &self.by_id else {
            let i = (0..self.slots.len())
                .rev()
                .find(|&i| self.event(i).id() == Some(id))?;
            return Some(self.first_seq + i as u64);
        };
        let seq = *by_id.get(&id_hash(id))?;
        let event = self.get(seq)?;
        (event.id() == Some(id)).then_some(seq)
    }

    /// `seq_of` in a numbered ring: ids increase with position, so a binary search over the
    /// positions finds it (an event without an id takes the number of the nearest id before it).
    fn seq_of_number(&self, id: &[u8]) -> Option<u64> {
        let wanted = numeric_id(id)?;
        // A resumed upstream's fresh event is newer than everything here: one comparison.
        if self.newest_number().is_none_or(|newest| wanted > newest) {
            return None;
        }
        let (mut lo, mut hi) = (0, self.slots.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            // The nearest event at or before `mid` (and not before `lo`) that has an id.
            let Some((at, number)) = (lo..=mid).rev().find_map(|i| {
                let n = numeric_id(self.event(i).id()?)?;
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
    pub fn get(&self, seq: u64) -> Option<EventRef<'_>> {
        let index = usize::try_from(seq.checked_sub(self.first_seq)?).ok()?;
        (index < self.slots.len()).then(|| self.event(index))
    }

    /// The events after `seq`, in order (all of them when `seq` is older than the ring).
    pub fn after(&self, seq: u64) -> impl Iterator<Item = EventRef<'_>> + '_ {
        let skip =
            (seq.saturating_add(1).saturating_sub(self.first_seq) as usize).min(self.slots.len());
        (skip..self.slots.len()).map(|i| self.event(i))
    }

    /// The newest id the upstream itself gave (what it can be asked to resume from).
    pub fn newest_upstream_id(&self) -> Option<Bytes> {
        (0..self.slots.len())
            .rev()
            .map(|i| self.event(i))
            .filter(|e| !e.assigned())
            .find_map(|e| e.id_bytes())
    }

    /// Whether any event in the ring carries an id (upstream's or tether's): a client can name
    /// a place in it with `Last-Event-ID`.
    pub fn has_ids(&self) -> bool {
        self.slots.iter().rev().any(|s| !s.id.is_none())
    }

    /// Whether an event with this id is in the ring.
    pub fn contains_id(&self, id: &[u8]) -> bool {
        self.seq_of(id).is_some()
    }
}

pub(crate) fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
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
#[path = "ring_tests.rs"]
mod tests;
