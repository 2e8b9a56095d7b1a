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
use super::ring::{clamp_u32, numeric_id, EventRef, RingEvent, Run, Slot};

/// A read whose allocation is more than this many times what its recorded events span has them
/// copied into allocations of their own (see the module doc).
pub const SPARSE_READ_FACTOR: usize = 2;

#[derive(Debug, Default)]
pub struct RingBatch {
    pub(super) runs: Vec<Run>,
    /// `Slot::run` is an index into `runs`.
    slots: Vec<Slot>,
    /// Every id in the batch is a canonical number larger than the one before (as a ring's
    /// `numbered`): `contains_id` answers a newer number with one comparison.
    unnumbered: bool,
    /// The newest id's number while the batch is numbered.
    newest_number: Option<u64>,
    /// The first id's number while the batch is numbered (the ring checks it against its own
    /// newest once, instead of every id again).
    first_number: Option<u64>,
    /// Sum of the events' lengths.
    bytes: u64,
    /// Per run (same index): what its events span, for `seal`.
    spans: Vec<RunSpan>,
}

/// The part of a run its events span, and where its row of slots begins.
#[derive(Debug, Clone, Copy)]
struct RunSpan {
    lo: u32,
    hi: u32,
    first_slot: u32,
}

impl RunSpan {
    fn len(&self) -> usize {
        (self.hi - self.lo) as usize
    }
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
    #[inline]
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
        let has_id = id != EventId::None;
        let slot = self.slot_in(buffer, start, len, id, false);
        if !self.unnumbered && has_id {
            self.note_number(number);
        }
        self.push_slot(slot);
    }

    /// The slot of the event at `buffer[start..start + len]`, in the run of `buffer` (the
    /// batch's last run when it is that buffer's, else a new one).
    #[inline]
    fn slot_in(
        &mut self,
        buffer: &Bytes,
        start: usize,
        len: usize,
        id: EventId,
        assigned: bool,
    ) -> Slot {
        debug_assert!(start + len <= buffer.len());
        let same = self.runs.last().is_some_and(|r| {
            r.held == 0 && r.bytes.as_ptr() == buffer.as_ptr() && r.bytes.len() == buffer.len()
        });
        let (start, len) = (clamp_u32(start), clamp_u32(len));
        if same {
            if let Some(span) = self.spans.last_mut() {
                span.hi = start + len;
            }
        } else {
            // held 0: not sealed yet.
            self.runs.push(Run {
                bytes: buffer.clone(),
                held: 0,
            });
            self.spans.push(RunSpan {
                lo: start,
                hi: start + len,
                first_slot: clamp_u32(self.slots.len()),
            });
        }
        let run = (self.runs.len() - 1) as u32;
        Slot {
            run,
            start,
            len,
            assigned,
            id,
        }
    }

    /// Adds an event in a run of its own (its bytes are its own allocation, or held for `held`).
    pub fn add_own(&mut self, event: RingEvent) {
        let (raw, id, held, assigned) = event.into_parts();
        let len = clamp_u32(raw.len());
        self.runs.push(Run {
            bytes: raw,
            held: held.max(len).max(1),
        });
        self.spans.push(RunSpan {
            lo: 0,
            hi: len,
            first_slot: clamp_u32(self.slots.len()),
        });
        let run = (self.runs.len() - 1) as u32;
        self.add_slot(Slot {
            run,
            start: 0,
            len,
            assigned,
            id,
        });
    }

    fn add_slot(&mut self, slot: Slot) {
        if !self.unnumbered {
            let run = &self.runs[slot.run as usize];
            if let Some(value) = slot.id.value(slot.raw(&run.bytes)) {
                self.note_number(numeric_id(value));
            }
        }
        self.push_slot(slot);
    }

    /// Keeps `unnumbered`, `newest_number` and `first_number` true of the batch with an event
    /// whose id's number is `number` (None: the id is not a number) added.
    #[inline]
    fn note_number(&mut self, number: Option<u64>) {
        match number {
            Some(n) if self.newest_number.is_none_or(|newest| n > newest) => {
                self.newest_number = Some(n);
                self.first_number.get_or_insert(n);
            }
            _ => self.unnumbered = true,
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
    pub fn seal(&mut self, buffer: &Bytes, alloc: usize) {
        let unsealed = |r: &Run| {
            r.held == 0 && r.bytes.as_ptr() == buffer.as_ptr() && r.bytes.len() == buffer.len()
        };
        // A read's events in one run, the batch's only one (a read of small events, one read
        // per flush): that run holds the read's whole allocation, unless sparse.
        if let ([run], [span]) = (&mut self.runs[..], &self.spans[..]) {
            let len = span.len();
            if unsealed(run) && len > 0 && alloc <= SPARSE_READ_FACTOR * len {
                run.held = clamp_u32(alloc.max(len));
                return;
            }
        }
        let total: usize = (self.runs.iter().zip(&self.spans))
            .filter(|(r, _)| unsealed(r))
            .map(|(_, s)| s.len())
            .sum::<usize>()
            .max(1);
        let sparse = alloc > SPARSE_READ_FACTOR * total;
        for (i, (run, span)) in self.runs.iter_mut().zip(&mut self.spans).enumerate() {
            if !unsealed(run) {
                continue;
            }
            let len = span.len();
            if !sparse {
                let share = (alloc as u64 * len as u64 / total as u64) as usize;
                run.held = clamp_u32(share.max(len)).max(1);
                continue;
            }
            run.bytes = Bytes::copy_from_slice(&run.bytes[span.lo as usize..span.hi as usize]);
            // The allocator rounds an allocation up to its size class (mimalloc: within 1/8).
            run.held = clamp_u32(len + len / 8).max(1);
            // The copy starts where the run's first event did: its events (a row of slots from
            // `first_slot`) move by as much.
            for slot in self.slots[span.first_slot as usize..]
                .iter_mut()
                .take_while(|s| s.run as usize == i)
            {
                slot.start -= span.lo;
            }
            *span = RunSpan {
                lo: 0,
                hi: span.hi - span.lo,
                first_slot: span.first_slot,
            };
        }
    }

    /// Whether an event of the batch set `id` (repeats within one flush, while deduplicating).
    pub fn contains_id(&self, id: &[u8]) -> bool {
        if !self.unnumbered {
            match (numeric_id(id), self.newest_number) {
                (Some(n), Some(newest)) if n > newest => return false,
                (_, None) => return false,
                _ => {}
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
        (!self.unnumbered).then_some((self.first_number, self.newest_number))
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
        self.spans.clear();
        self.unnumbered = false;
        self.newest_number = None;
        self.first_number = None;
        self.bytes = 0;
    }
}
