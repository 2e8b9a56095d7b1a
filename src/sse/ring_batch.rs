//! The events of one flush, gathered for the ring: the buffers they lie in (runs) and each
//! event's place (slots). The relay fills one per flush and the ring takes it whole
//! (`ReplayRing::push_batch`), so a read's events cost one reference count and one bounds check
//! and eviction together, not one each.
//!
//! What a run of a read pins is the read's whole allocation: `seal` shares it out among the runs
//! lying in it, or, when the events recorded from it are a small part of it (comments, repeats
//! dropped, a response head's buffer), copies them out compactly so that small events never pin
//! big, mostly unrecorded buffers.

use bytes::Bytes;

use super::framer::EventId;
use super::ring::{clamp_u32, numeric_id, EventRef, RingEvent, Run, Slot, SlotId};

/// A read whose allocation is more than this many times what its recorded events span has them
/// copied into allocations of their own (see the module doc).
pub const SPARSE_READ_FACTOR: usize = 2;

#[derive(Debug, Default)]
pub struct RingBatch {
    pub(super) runs: Vec<Run>,
    /// `Slot::run` is an index into `runs`.
    slots: Vec<Slot>,
    /// Per run (same index): its first slot (its events are the slots from there to the next
    /// run's first). What a run's events span is read from them by `seal`, not kept per event.
    first_slots: Vec<u32>,
    /// The buffer the last run is an open span of, as its address and length ((0, 0): none, the
    /// last run is sealed, an event's own or keeps an own id): the next event of that buffer
    /// joins the run. Compared per event instead of the last run's fields.
    open: (usize, usize),
    /// The newest id's number + 1 while the batch is numbered (0: no id yet): one comparison
    /// per id tells both "a number" and "larger" (`note_number`).
    newest_number: u64,
    /// The first id's number + 1 while the batch is numbered (the ring checks it against its
    /// own newest once, instead of every id again; 0: no id yet).
    first_number: u64,
    /// Sum of the events' lengths.
    bytes: u64,
    /// An id in the batch is not a canonical number larger than the one before (while false,
    /// as a ring's `numbered`: `contains_id` answers a newer number with one comparison).
    unnumbered: bool,
}

/// What the events of run `run` span of it (`lo..hi`), given the batch's slots and runs' first
/// slots.
fn span_of(slots: &[Slot], first_slots: &[u32], run: usize) -> (u32, u32) {
    let first = first_slots[run] as usize;
    let end = first_slots
        .get(run + 1)
        .map_or(slots.len(), |&f| f as usize);
    let last = &slots[end - 1];
    (slots[first].start, last.start + last.len)
}

/// A buffer's identity for `RingBatch::open`.
#[inline]
fn identity(buffer: &Bytes) -> (usize, usize) {
    (buffer.as_ptr() as usize, buffer.len())
}

impl RingBatch {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bytes of the events (what the stream's followers will get).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Adds the event at `buffer[start..start + len]`, its id `id` (a span of the event). Events
    /// of one buffer in a row share a run; what the run holds is set by `seal`.
    pub fn add_in(
        &mut self,
        buffer: &Bytes,
        start: usize,
        len: usize,
        id: EventId,
        assigned: bool,
    ) {
        let slot = self.slot_in(buffer, start, len, id, assigned);
        self.add_slot(slot);
    }

    /// `add_in` for an event the framer read (`FramedBlock`): `number` is its id's number,
    /// `super::ring::numeric_id` of the id's value, read by the framer, not again here.
    /// Always inlined: called once per event from the plain flush (`ReadFlush::add`), where
    /// LLVM kept it out of line (callgrind batched 481 -> 449 instructions per event inlined).
    #[inline(always)]
    pub fn add_framed(
        &mut self,
        buffer: &Bytes,
        start: usize,
        len: usize,
        id: EventId,
        number: Option<u64>,
    ) {
        debug_assert_eq!(
            id.value(&buffer[start..start + len]).and_then(numeric_id),
            number,
            "the framer's number is the id's"
        );
        let id = match id {
            EventId::None => SlotId::NONE,
            EventId::In { start, len } => {
                self.note_number(number);
                SlotId::span(start, len)
            }
            // Not a span of the event (rare): the general way.
            own @ EventId::Own(_) => return self.add_in(buffer, start, len, own, false),
        };
        let (start, len) = (clamp_u32(start), clamp_u32(len));
        let run = self.run_in(buffer);
        self.push_slot(Slot {
            run,
            start,
            len,
            id,
            assigned: false,
        });
    }

    /// The run the event at `buffer[start..start + len]` goes in: the batch's open run when it
    /// is that buffer's, else a new one (open from now on).
    #[inline]
    fn run_in(&mut self, buffer: &Bytes) -> u32 {
        if self.open != identity(buffer) {
            self.push_run(Run {
                bytes: buffer.clone(),
                held: 0,
                own_id: None,
            });
            self.open = identity(buffer);
        }
        (self.runs.len() - 1) as u32
    }

    /// Appends `run` (held 0: not sealed yet) for the next event, closed: nothing joins it.
    fn push_run(&mut self, run: Run) {
        self.runs.push(run);
        self.first_slots.push(clamp_u32(self.slots.len()));
        self.open = (0, 0);
    }

    /// The slot of the event at `buffer[start..start + len]`, in the run of `buffer` (the
    /// batch's open run when it is that buffer's, else a new one).
    fn slot_in(
        &mut self,
        buffer: &Bytes,
        start: usize,
        len: usize,
        id: EventId,
        assigned: bool,
    ) -> Slot {
        debug_assert!(start + len <= buffer.len());
        let (start, len) = (clamp_u32(start), clamp_u32(len));
        let (id, own_id) = SlotId::of(id);
        let run = match own_id {
            None => self.run_in(buffer),
            Some(own_id) => {
                // An id that is no span of the event (rare) is kept by a run of the event's
                // own, a span of the same buffer.
                let run = Run {
                    bytes: buffer.clone(),
                    held: 0,
                    own_id: Some(own_id),
                };
                self.push_run(run);
                (self.runs.len() - 1) as u32
            }
        };
        Slot {
            run,
            start,
            len,
            id,
            assigned,
        }
    }

    /// Adds an event in a run of its own (its bytes are its own allocation, or held for `held`).
    pub fn add_own(&mut self, event: RingEvent) {
        let (raw, id, held, assigned) = event.into_parts();
        let len = clamp_u32(raw.len());
        let (id, own_id) = SlotId::of(id);
        let run = Run {
            bytes: raw,
            held: held.max(len).max(1),
            own_id,
        };
        self.push_run(run);
        let run = (self.runs.len() - 1) as u32;
        self.add_slot(Slot {
            run,
            start: 0,
            len,
            id,
            assigned,
        });
    }

    fn add_slot(&mut self, slot: Slot) {
        if let Some(value) = slot.id_value(&self.runs[slot.run as usize]) {
            self.note_number(numeric_id(value));
        }
        self.push_slot(slot);
    }

    /// Keeps `unnumbered`, `newest_number` and `first_number` true of the batch with an event
    /// whose id's number is `number` (None: the id is not a number) added. Once unnumbered the
    /// numbers are not read again (`numbers`, `contains_id`), so they are not guarded here.
    #[inline]
    fn note_number(&mut self, number: Option<u64>) {
        // Numbers + 1, 0 for none: a number of at most MAX_NUMERIC_ID_DIGITS digits is below
        // u64::MAX.
        let next = number.map_or(0, |n| n + 1);
        if next > self.newest_number {
            if self.newest_number == 0 {
                self.first_number = next;
            }
            self.newest_number = next;
        } else {
            self.unnumbered = true;
        }
    }

    #[inline]
    fn push_slot(&mut self, slot: Slot) {
        self.bytes += u64::from(slot.len);
        self.slots.push(slot);
    }

    /// Sets what the runs lying in `buffer` hold: together its allocation `alloc` (each its
    /// share by the bytes its events span), or, when `alloc` is more than SPARSE_READ_FACTOR
    /// times what they span, each a compact copy of its events.
    #[inline]
    pub fn seal(&mut self, buffer: &Bytes, alloc: usize) {
        // Sealed runs take no more events.
        self.open = (0, 0);
        // A read's events in one run, the batch's only one (a read of small events, one read
        // per flush): that run holds the read's whole allocation, unless sparse. Inlined in
        // the caller; the rest is not.
        if let ([run], Some(first), Some(last)) =
            (&mut self.runs[..], self.slots.first(), self.slots.last())
        {
            let len = (last.start + last.len - first.start) as usize;
            if run.held == 0
                && identity(&run.bytes) == identity(buffer)
                && len > 0
                && alloc <= SPARSE_READ_FACTOR * len
            {
                run.held = clamp_u32(alloc.max(len));
                return;
            }
        }
        self.seal_runs(buffer, alloc);
    }

    /// `seal` for a batch of several runs, or a sparse read.
    #[inline(never)]
    fn seal_runs(&mut self, buffer: &Bytes, alloc: usize) {
        let unsealed = |r: &Run| r.held == 0 && identity(&r.bytes) == identity(buffer);
        let (slots, first_slots) = (&mut self.slots, &self.first_slots);
        let total: usize = (self.runs.iter().enumerate())
            .filter(|(_, r)| unsealed(r))
            .map(|(i, _)| {
                let (lo, hi) = span_of(slots, first_slots, i);
                (hi - lo) as usize
            })
            .sum::<usize>()
            .max(1);
        let sparse = alloc > SPARSE_READ_FACTOR * total;
        for (i, run) in self.runs.iter_mut().enumerate() {
            if !unsealed(run) {
                continue;
            }
            let (lo, hi) = span_of(slots, first_slots, i);
            let len = (hi - lo) as usize;
            if !sparse {
                let share = (alloc as u64 * len as u64 / total as u64) as usize;
                run.held = clamp_u32(share.max(len)).max(1);
                continue;
            }
            run.bytes = Bytes::copy_from_slice(&run.bytes[lo as usize..hi as usize]);
            // The allocator rounds an allocation up to its size class (mimalloc: within 1/8).
            run.held = clamp_u32(len + len / 8).max(1);
            // The copy starts where the run's first event did: its events (a row of slots from
            // its first) move by as much.
            let first = first_slots[i] as usize;
            for slot in slots[first..]
                .iter_mut()
                .take_while(|s| s.run as usize == i)
            {
                slot.start -= lo;
            }
        }
    }

    /// Whether an event of the batch set `id` (repeats within one flush, while deduplicating).
    pub fn contains_id(&self, id: &[u8]) -> bool {
        if !self.unnumbered {
            // No id yet, or a number newer than the newest.
            if self.newest_number == 0 || numeric_id(id).is_some_and(|n| n >= self.newest_number) {
                return false;
            }
        }
        self.events().any(|e| e.id() == Some(id))
    }

    /// The events, in order.
    pub fn events(&self) -> impl Iterator<Item = EventRef<'_>> + '_ {
        self.slots
            .iter()
            .map(|s| EventRef::new(&self.runs[s.run as usize], s))
    }

    /// The numbers of its first and newest ids, when every id in it is a canonical number larger
    /// than the one before (None: an id is not; Some((None, None)): no ids).
    pub(crate) fn numbers(&self) -> Option<(Option<u64>, Option<u64>)> {
        let number = |next: u64| next.checked_sub(1);
        (!self.unnumbered).then_some((number(self.first_number), number(self.newest_number)))
    }

    /// Its runs and slots, for the ring to take.
    pub(crate) fn parts(&mut self) -> (&mut Vec<Run>, &mut Vec<Slot>) {
        debug_assert!(
            self.runs.iter().all(|r| r.held > 0),
            "every run of a read is sealed before it is recorded"
        );
        (&mut self.runs, &mut self.slots)
    }

    /// Empties the batch, keeping its capacity.
    pub fn clear(&mut self) {
        self.runs.clear();
        self.slots.clear();
        self.first_slots.clear();
        self.open = (0, 0);
        self.unnumbered = false;
        self.newest_number = 0;
        self.first_number = 0;
        self.bytes = 0;
    }
}
