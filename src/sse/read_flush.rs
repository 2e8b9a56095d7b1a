//! What the flush of one read gathers on its way to the client and the ring: the client's
//! slices (one per run of adjacent blocks of the read), the ring's batch (one slot per recorded
//! event), and the counts, taken once per read.
//!
//! Most streams use no feature that drops, rewrites or names events (no rules with an event
//! stage, no deduplication after a resume, no `--assign-ids`). For them the framer hands each
//! block straight to this flush as it frames it (`FramedSink`), instead of writing it into the
//! relay's block list for `Relay::flush_read` to read back: at the batched load (1b, ~300 events
//! per read) that list was ~100 bytes written and read again per event, and the flush's
//! per-event branches for the features that are off.

use bytes::Bytes;

use super::framer::{BlockBytes, EventId, FramedBlock, FramedSink};
use super::pump::ClientRun;
use super::ring::{clamp_u32, RingEvent};
use super::ring_batch::RingBatch;

/// One read's flush under way (see the module doc).
pub(super) struct ReadFlush<'r> {
    /// The read the blocks' spans are of (empty for blocks of an earlier read).
    pub(super) read: &'r Bytes,
    /// The events to record, in the worker's batch (`StreamTable::batch`).
    pub(super) batch: Box<RingBatch>,
    /// The slices for the client, in the worker's list (`OUT_SLICES`).
    pub(super) out: Vec<Bytes>,
    /// Bytes in `out` and `run`.
    pub(super) out_len: usize,
    /// Blocks that lie next to each other in the read leave as one slice: the run being built,
    /// cut from the read once a block does not continue it (`finish_run`).
    pub(super) run: Option<ClientRun>,
    /// Events that fire (for the metrics and the stream's row).
    pub(super) events: u64,
    /// Some block was handed to it (a plain flush; the list's flush starts with blocks).
    pub(super) framed: bool,
    /// The last `retry` value of the blocks a plain flush took, for the relay's hint.
    pub(super) retry: Option<u64>,
    /// A block a plain flush took fired or moved the cursor (`Relay::progressed`).
    pub(super) progressed: bool,
}

impl<'r> ReadFlush<'r> {
    pub(super) fn new(read: &'r Bytes, batch: Box<RingBatch>, out: Vec<Bytes>) -> Self {
        ReadFlush {
            read,
            batch,
            out,
            out_len: 0,
            run: None,
            events: 0,
            framed: false,
            retry: None,
            progressed: false,
        }
    }

    /// Queues one event's bytes for the client and, when `recorded`, records it: a span of the
    /// read joins the run of adjacent spans and the read's run in the ring; its own bytes leave
    /// as their own slice and run (`assigned`: they carry an id `--assign-ids` gave).
    #[inline(always)]
    pub(super) fn add(
        &mut self,
        bytes: BlockBytes,
        id: EventId,
        number: Option<u64>,
        recorded: bool,
        assigned: bool,
    ) {
        match bytes {
            BlockBytes::InRead { start, len } => {
                self.out_len += len;
                if !self.run.as_mut().is_some_and(|r| r.extend(start, len)) {
                    if let Some(r) = self.run.take() {
                        self.out.push(self.read.slice(r.start..r.end));
                    }
                    self.run = Some(ClientRun {
                        start,
                        end: start + len,
                    });
                }
                if recorded {
                    // A span of the read, recorded with the read's other events in one
                    // run; the id stays a span of the event's bytes, its number as the
                    // framer read it (a span is the upstream's block unchanged).
                    self.batch.add_framed(self.read, start, len, id, number);
                }
            }
            BlockBytes::Own(raw) => {
                // Not a span of the read (an assigned id's event, a rewritten one, a block
                // assembled over several reads): it leaves as its own Bytes.
                let len = raw.len();
                self.out_len += len;
                if let Some(r) = self.run.take() {
                    self.out.push(self.read.slice(r.start..r.end));
                }
                if recorded {
                    // Held as its own allocation (the allocator rounds it up by ~1/8).
                    let held = if assigned {
                        clamp_u32(len)
                    } else {
                        clamp_u32(len + len / 8)
                    };
                    self.out.push(raw.clone());
                    self.batch
                        .add_own(RingEvent::with_id(raw, id, held, assigned));
                } else {
                    self.out.push(raw);
                }
            }
        }
    }

    /// Cuts the last run of adjacent spans for the client.
    pub(super) fn finish_run(&mut self) {
        if let Some(r) = self.run.take() {
            self.out.push(self.read.slice(r.start..r.end));
        }
    }
}

/// The plain flush: every block is sent and recorded as the upstream framed it (no rules, no
/// deduplication, no assigned ids; `Relay::flush_is_plain`).
impl FramedSink for ReadFlush<'_> {
    #[inline(always)]
    fn take(&mut self, block: FramedBlock) {
        let FramedBlock {
            bytes,
            id,
            number,
            retry,
            fires,
        } = block;
        self.framed = true;
        if retry.is_some() {
            self.retry = retry;
        }
        // Progress is a new event or cursor move, not a retry: line or a comment (see
        // `Relay::flush_read`).
        let has_id = id != EventId::None;
        self.progressed |= fires || has_id;
        self.events += u64::from(fires);
        let recorded = fires || has_id || retry.is_some();
        self.add(bytes, id, number, recorded, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::framer::EventFramer;

    /// A read of two chunks (chunk framing between them, a comment and a retry-only block
    /// among the events), framed straight into the flush as the relay's plain path does: one
    /// client slice per chunk's run of blocks, every event but the comment recorded with its id,
    /// and the counts, retry and progress as `Relay::flush_read` would take them from the list.
    #[test]
    fn a_plain_flush_takes_the_blocks_as_the_list_would() {
        let read = Bytes::from_static(
            b"id: 1\ndata: a\n\n: hb\n\nretry: 900\n\n\r\n16\r\nid: 2\ndata: b\n\nid: 3\n\n",
        );
        let chunk2 = 39..read.len();
        let mut framer = EventFramer::default();
        let mut flush = ReadFlush::new(&read, Box::default(), Vec::new());
        framer.feed_read_into(&read, 0..33, &mut flush).unwrap();
        framer
            .feed_read_into(&read, chunk2.clone(), &mut flush)
            .unwrap();
        flush.finish_run();
        let out: Vec<&[u8]> = flush.out.iter().map(|b| &b[..]).collect();
        assert_eq!(out, [&read[..33], &read[chunk2]]);
        assert_eq!(flush.out_len, 33 + 22);
        let recorded: Vec<(Vec<u8>, Option<Vec<u8>>)> = flush
            .batch
            .events()
            .map(|e| (e.bytes().to_vec(), e.id().map(<[u8]>::to_vec)))
            .collect();
        let want: Vec<(Vec<u8>, Option<Vec<u8>>)> = vec![
            (b"id: 1\ndata: a\n\n".to_vec(), Some(b"1".to_vec())),
            (b"retry: 900\n\n".to_vec(), None),
            (b"id: 2\ndata: b\n\n".to_vec(), Some(b"2".to_vec())),
            (b"id: 3\n\n".to_vec(), Some(b"3".to_vec())),
        ];
        assert_eq!(recorded, want);
        assert_eq!(flush.events, 2);
        assert_eq!(flush.retry, Some(900));
        assert!(flush.progressed && flush.framed);
        assert_eq!(framer.last_event_id(), b"3");
    }
}
