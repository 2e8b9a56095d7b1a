//! The SSE framer: splits an upstream `text/event-stream` body into *blocks* (everything through
//! the blank line that dispatches) and keeps the last-event-id cursor as a browser would.
//!
//! Rules (notes/sse.md, from WHATWG HTML 9.2), each holding for ANY split of the body into pieces:
//!  1. One UTF-8 BOM (EF BB BF) at body offset 0 is stripped, also when split; a later one is content.
//!  2. Lines end with CRLF, LF or a lone CR. A piece ending in CR waits for the next byte: a CRLF
//!     split across pieces is one terminator, and the block ends after its LF. A CR at EOF ends a
//!     line (only [`EventFramer::finish_into`] can hand out a block that such a CR completes).
//!  3. An empty line dispatches: it ends the block. A line starting with `:` is a comment.
//!  4. A field splits at the first colon; exactly one leading space of the value is removed.
//!  5. Field names are case-sensitive; only `data`, `id`, `retry` matter for forwarding.
//!  6. (`data` joining is the slow path's business: [`parse_block`].)
//!  7. An `id` containing NUL is ignored; an empty `id` resets the cursor to "".
//!  8. The cursor moves at dispatch even when nothing fires (id-only "priming" blocks).
//!  9. `retry` counts only when its value is one or more ASCII digits.
//! 10. At EOF an unterminated block is discarded ([`EventFramer::finish`]).
//! 11. Only CR and LF end lines; bytes are forwarded untouched (BOM of rule 1 excepted).
//! 12. Linear: every byte is scanned once (`LineEnds`, 64 bytes at a time); a partial line is
//!     never rescanned.

use bytes::{Bytes, BytesMut};
use std::fmt;

use super::line_ends::{lf_cr_window, LineEnds};
use super::ring::{MAX_NUMERIC_ID_DIGITS, NO_NUMBER};

/// Largest block the framer assembles, in bytes; past it `feed` returns FrameError::EventTooLarge and the stream must end.
/// 16 MiB: MCP tool results (files, images) and model outputs arrive as one event; what all
/// streams' unfinished events hold together is bounded by `--sse-partial-memory`.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 16 * 1024 * 1024;

/// The most `--sse-max-event-bytes` may be: one event is held whole in memory before it is
/// forwarded, and a stream's share of the partial budget is counted in 32 bits.
pub const MAX_EVENT_BYTES_LIMIT: usize = 1024 * 1024 * 1024;

/// The UTF-8 byte order mark, stripped once at body offset 0 (rule 1).
const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// What a block does to the last-event-id cursor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdField {
    /// `id:` absent in this block
    Unchanged,
    /// `id:` present with no NUL: the new last-event-id (may be empty = reset). Invalid UTF-8 is
    /// replaced by U+FFFD, as the browser holds it (and sends it back in `Last-Event-ID`).
    Set(Bytes),
}

/// Where an event's id value is: almost always inside the event's own bytes (its `id:` line), so
/// it costs a span instead of a second reference-counted handle on the read buffer (one atomic
/// increment and decrement less per event). Framed blocks and ring events both keep it so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventId {
    /// No `id` field: the cursor is unchanged.
    None,
    /// The value is `raw[start..start + len]` of the bytes it belongs to (empty: a reset).
    In { start: u32, len: u32 },
    /// Not a slice of those bytes: an id whose invalid UTF-8 was replaced by U+FFFD (as the
    /// browser holds it, and sends it back in `Last-Event-ID`), or one from elsewhere.
    Own(OwnId),
}

/// An id kept in an allocation of its own (`EventId::Own`): rare, so it is kept behind one
/// pointer more rather than as a 16-byte boxed slice in every `EventId`. With a thin pointer
/// here an `EventId` is 16 bytes instead of 24, and a ring's slot, one per event a ring keeps,
/// 32 instead of 40 (mimalloc's 32 class for a quiet stream's one slot, not 48:
/// `ring::tests::a_slot_stays_small`).
#[derive(Clone, PartialEq, Eq)]
pub struct OwnId(Box<Box<[u8]>>);

impl std::ops::Deref for OwnId {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl From<&[u8]> for OwnId {
    fn from(id: &[u8]) -> OwnId {
        OwnId(Box::new(id.into()))
    }
}

impl From<Vec<u8>> for OwnId {
    fn from(id: Vec<u8>) -> OwnId {
        OwnId(Box::new(id.into_boxed_slice()))
    }
}

impl fmt::Debug for OwnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // As the boxed slice it replaces printed: the bytes.
        fmt::Debug::fmt(&**self, f)
    }
}

impl EventId {
    /// The value, given the bytes it belongs to.
    #[inline]
    pub fn value<'a>(&'a self, raw: &'a [u8]) -> Option<&'a [u8]> {
        match self {
            EventId::None => None,
            EventId::In { start, len } => Some(&raw[*start as usize..(*start + *len) as usize]),
            EventId::Own(id) => Some(id),
        }
    }
}

/// One complete block of the upstream body, ready to forward byte for byte.
#[derive(Clone, Debug)]
pub struct SseBlock {
    /// The block's exact bytes through its dispatching blank line (leading stream BOM excluded).
    pub raw: Bytes,
    /// What this block does to the last-event-id cursor (the last valid `id` line in the block
    /// wins), as a place in `raw` (see [`SseBlock::id`]).
    pub id: EventId,
    /// `retry:` value in ms when the block carries a valid one (the last valid one wins; a value
    /// beyond `u64::MAX` saturates).
    pub retry: Option<u64>,
    /// True when the block would fire an event at a browser (at least one `data` field).
    pub fires: bool,
}

impl SseBlock {
    /// The id this block sets (`Some(b"")`: a reset), None when it has no `id` field.
    #[inline]
    pub fn id(&self) -> Option<&[u8]> {
        self.id.value(&self.raw)
    }

    /// The id as an [`IdField`] (an owned copy), for comparisons.
    pub fn id_field(&self) -> IdField {
        match self.id() {
            None => IdField::Unchanged,
            Some(v) => IdField::Set(Bytes::copy_from_slice(v)),
        }
    }
}

/// Where the bytes of a block framed by [`EventFramer::feed_read`] are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum BlockBytes {
    /// `read[start..start + len]` of the read its piece came in: a span, not a `Bytes` (no
    /// reference count taken and dropped per event; the relay cuts one slice per run of
    /// adjacent blocks for the client and records the read once in the ring).
    InRead { start: usize, len: usize },
    /// Assembled over several pieces (or reads): its own allocation.
    Own(Bytes),
}

/// A complete block as the relay takes it from [`EventFramer::feed_read`]: an [`SseBlock`]
/// whose bytes are a span of the read when they lie in it.
#[derive(Clone, Debug)]
pub(crate) struct FramedBlock {
    pub(crate) bytes: BlockBytes,
    /// Its id, a span of the block's own bytes (as [`SseBlock::id`]).
    pub(crate) id: EventId,
    /// The id as a canonical decimal number (`super::ring::numeric_id`), read while the line
    /// was classified: the ring's batch need not parse it again.
    pub(crate) number: Option<u64>,
    pub(crate) retry: Option<u64>,
    pub(crate) fires: bool,
}

impl FramedBlock {
    /// The block's bytes, given the read it was framed from.
    #[cfg(test)]
    pub(crate) fn raw<'a>(&'a self, read: &'a [u8]) -> &'a [u8] {
        match &self.bytes {
            BlockBytes::InRead { start, len } => &read[*start..*start + *len],
            BlockBytes::Own(raw) => raw,
        }
    }
}

/// A block `scan` completed: where its bytes are.
enum Completed {
    /// `piece[start..end]` of the piece being scanned.
    InPiece { start: usize, end: usize },
    /// Assembled in `partial` over several pieces.
    Own(Bytes),
}

/// Where the framer puts the blocks it completes: [`SseBlock`]s, each a `Bytes` of its own
/// (`feed`), or [`FramedBlock`]s, spans of the read (`feed_read`, the relay's path).
trait BlockSink {
    /// Adds a block; `number` is its id's, when that is a canonical number.
    fn push(
        &mut self,
        block: Completed,
        id: EventId,
        number: Option<u64>,
        retry: Option<u64>,
        fires: bool,
    );
}

/// Where [`EventFramer::feed_read_into`] hands the relay the blocks it completes, one at a time
/// and in order, as they are framed: a list (`Vec<FramedBlock>`, walked again by the flush), or
/// the flush itself (`super::pump`'s plain flush: no list written and read back per event).
pub(crate) trait FramedSink {
    /// Takes the next complete block.
    fn take(&mut self, block: FramedBlock);
}

impl FramedSink for Vec<FramedBlock> {
    #[inline]
    fn take(&mut self, block: FramedBlock) {
        self.push(block);
    }
}

/// `feed`'s sink: the piece's blocks as slices of it.
struct SliceSink<'a> {
    piece: &'a Bytes,
    out: &'a mut Vec<SseBlock>,
}

impl BlockSink for SliceSink<'_> {
    fn push(
        &mut self,
        block: Completed,
        id: EventId,
        _number: Option<u64>,
        retry: Option<u64>,
        fires: bool,
    ) {
        let raw = match block {
            Completed::InPiece { start, end } => self.piece.slice(start..end),
            Completed::Own(raw) => raw,
        };
        self.out.push(SseBlock {
            raw,
            id,
            retry,
            fires,
        });
    }
}

/// `feed_read`'s sink: the blocks lying in the piece as spans of the read, whose bytes from
/// `base` on are the piece.
struct SpanSink<'a, S: FramedSink> {
    base: usize,
    out: &'a mut S,
}

impl<S: FramedSink> BlockSink for SpanSink<'_, S> {
    #[inline(always)]
    fn push(
        &mut self,
        block: Completed,
        id: EventId,
        number: Option<u64>,
        retry: Option<u64>,
        fires: bool,
    ) {
        let bytes = match block {
            Completed::InPiece { start, end } => BlockBytes::InRead {
                start: self.base + start,
                len: end - start,
            },
            Completed::Own(raw) => BlockBytes::Own(raw),
        };
        self.out.take(FramedBlock {
            bytes,
            id,
            number,
            retry,
            fires,
        });
    }
}

/// Why the framer gave up on an upstream body. The upstream side failed: end the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A block grew past `limit` bytes without its blank line.
    EventTooLarge {
        /// The framer's `max_event_bytes`.
        limit: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::EventTooLarge { limit } => write!(
                f,
                "upstream SSE event exceeds {limit} bytes without a blank line; ending the stream"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// Where the current body stands with respect to the BOM strip (rule 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BomCheck {
    /// Offset 0 is undecided: the body so far is the first `matched` bytes of the BOM, held back
    /// (not in `partial`) until a byte confirms or refutes the BOM (at most 2: a u8).
    Pending { matched: u8 },
    /// Decided; `stripped` says whether this body began with a BOM.
    Done { stripped: bool },
}

/// Where the scanner stands relative to line ends, between two pieces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LineState {
    /// Inside a line (maybe at its start) that begins at block offset `start`; every byte of the
    /// open block from `start` on has been scanned and holds no CR or LF. A u32: the open block
    /// is at most `max_event_bytes` (at most MAX_EVENT_BYTES_LIMIT, 1 GiB) long whenever a
    /// piece has been framed without an error.
    InLine { start: u32 },
    /// The last piece ended with a CR that ended a non-blank line (rule 2): an LF first in the
    /// next piece is part of that terminator.
    AfterCr,
    /// The last piece ended with the CR of a blank line: the block was handed out at once (a
    /// browser dispatches at that CR; holding it for the next piece would delay the event by a
    /// whole upstream write). An LF first in the next piece completes that CRLF; it is handed out
    /// as a block of its own (one "\n", which no client dispatches anything for).
    AfterBlankCr,
    /// As `AfterBlankCr`, but the block through that CR is exactly `max_event_bytes` long: an LF
    /// next would make it one byte too large, so it is held in `partial` until the next byte
    /// decides (LF: too large; anything else, or the end of the body: handed out). Only a block
    /// at the limit waits, so the limit holds for any split of the body.
    BlankCrAtLimit,
}

/// A byte range inside the open block (block-relative offsets; u32s, as `LineState::InLine`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Span {
    start: u32,
    end: u32,
}

/// What an `id` line's value is, read in one pass over it (`IdValue::read`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct IdValue {
    /// All ASCII (valid UTF-8 without a further check).
    ascii: bool,
    /// The value as a canonical decimal number (`super::ring::numeric_id`), for the ring;
    /// NO_NUMBER when it is none (no canonical number of at most MAX_NUMERIC_ID_DIGITS reads
    /// as it): 8 bytes less than an `Option` in the framer every stream holds.
    number: u64,
}

impl IdValue {
    /// Reads a valid id's value; None when it holds a NUL (rule 7: the line is ignored). One
    /// pass for the NUL, ASCII and digit checks: ids are a few bytes, where a `memchr` call's
    /// set-up and a second pass for the number cost more than the bytes.
    #[inline]
    fn read(value: &[u8]) -> Option<IdValue> {
        // Most ids are counters: digits only (no NUL, all ASCII), read here at a few
        // instructions a byte; anything else goes on to the loop below from its first
        // non-digit.
        let mut n = 0u64;
        let mut at = 0;
        while let Some(&b) = value.get(at) {
            let d = b.wrapping_sub(b'0');
            if d >= 10 {
                break;
            }
            n = n.wrapping_mul(10).wrapping_add(u64::from(d));
            at += 1;
        }
        if at == value.len() {
            let canonical = at != 0 && at <= MAX_NUMERIC_ID_DIGITS && (value[0] != b'0' || at == 1);
            return Some(IdValue {
                ascii: true,
                number: if canonical { n } else { NO_NUMBER },
            });
        }
        // A non-digit at `at`: no number. The rest is checked for NUL (rule 7) and ASCII (the
        // digits before it are both).
        let mut ascii = true;
        for &b in &value[at..] {
            if b == 0 {
                return None;
            }
            ascii &= b.is_ascii();
        }
        Some(IdValue {
            ascii,
            number: NO_NUMBER,
        })
    }

    /// `read` of `line[value_start..]`, the value of the `id` line `line`. A value of one to
    /// eight digits, the common counter, is read eight bytes at once: the line's last eight
    /// bytes as one word (what lies before the value in it is the `id:` field name, no digit),
    /// checked and turned into its number in a few word operations instead of a loop of ~6
    /// instructions a digit.
    #[inline(always)]
    fn read_in(line: &[u8], value_start: usize) -> Option<IdValue> {
        const ONES: u64 = 0x0101_0101_0101_0101;
        let len = line.len() - value_start;
        if let (1..=8, Some(last)) = (len, line.len().checked_sub(8)) {
            let word = u64::from_le_bytes(line[last..].try_into().expect("8 bytes"));
            // The value's bytes are the word's top `len` bytes (little-endian).
            let keep = u64::MAX << (8 * (8 - len));
            let high = (0xF0 * ONES) & keep;
            let threes = (0x30 * ONES) & keep;
            // A byte is a digit when its high nibble is 3, and still 3 with 6 added (0x30 to
            // 0x39). The bytes below the value (the field name and its colon and space) are
            // ASCII below 0xFA, so adding 6 carries into no byte of the value.
            if (word & high) == threes && (word.wrapping_add(6 * ONES) & high) == threes {
                // Digits 0..=9 in the value's bytes, zeros (leading zeros) below; the first
                // digit in the lowest byte: pairs, then fours, then the eight.
                let d = word & (0x0F * ONES) & keep;
                let d = (d.wrapping_mul(10 * 256 + 1) >> 8) & 0x00FF_00FF_00FF_00FF;
                let d = (d.wrapping_mul(100 * 65_536 + 1) >> 16) & 0x0000_FFFF_0000_FFFF;
                let n = d.wrapping_mul(10_000 * (1 << 32) + 1) >> 32;
                let canonical = line[value_start] != b'0' || len == 1;
                return Some(IdValue {
                    ascii: true,
                    number: if canonical { n } else { NO_NUMBER },
                });
            }
        }
        IdValue::read(&line[value_start..])
    }

    /// The value as a canonical decimal number, if it is one.
    #[cfg(test)]
    fn number(&self) -> Option<u64> {
        (self.number != NO_NUMBER).then_some(self.number)
    }
}

/// What the open block's complete lines have said so far, in 32 bytes (48 with `Option`s):
/// the scan copies it in and out once per piece, and every stream's framer holds one. Plain
/// bools rather than bit flags: each line sets one with a single store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct BlockFacts {
    /// With `has_id`: the value of the last valid `id` line (rule 7), sliced out of the raw
    /// block at dispatch.
    id: Span,
    /// With `has_id`: the id as a canonical decimal number, NO_NUMBER when it is none.
    number: u64,
    /// With `has_retry`: the last valid `retry` value (rule 9), in ms.
    retry: u64,
    /// A valid `id` line was seen.
    has_id: bool,
    /// That id's value is all ASCII (valid UTF-8 without a further check).
    id_ascii: bool,
    /// A valid `retry` line was seen.
    has_retry: bool,
    /// Some `data` line was seen: a browser fires an event at dispatch.
    fires: bool,
}

/// Where `EventFramer::scan_plain` stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PlainScan {
    /// At the piece's end: no line end lies after where it stopped.
    Ended,
    /// At a CR (or a block over the limit): the general loop goes on from there.
    MetCr,
}

/// Where the value of the last id a piece's blocks set is, for the cursor (`commit_cursor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LastId {
    /// No block of the piece set an id (or the cursor already holds the last one set).
    None,
    /// `piece[start..end]`: the block lay in the piece; the cursor takes it once the piece is
    /// framed.
    InPiece { start: usize, end: usize },
}

/// Splits an SSE body into blocks and tracks the last-event-id cursor. One per upstream stream;
/// idle with nothing pending, it holds no heap buffer. Every stream's task holds one for the
/// stream's life, so offsets and the limit are u32s (blocks are at most 1 GiB) and the open
/// block's facts are packed: 104 bytes, 120 with the facts' `Option`s, 168 with usizes
/// (`tests::a_framer_stays_small`, `proxy::conn::tests::a_stream_task_stays_small`).
#[derive(Debug)]
pub struct EventFramer {
    /// Limit on a block's size (and so on `partial`), in bytes; at most MAX_EVENT_BYTES_LIMIT.
    max_event_bytes: u32,
    /// BOM strip at offset 0 of the current body.
    bom: BomCheck,
    /// Line position carried from one piece to the next.
    line: LineState,
    /// The open block's bytes from earlier pieces: the only place bytes are copied. Empty (and
    /// unallocated) when the last piece ended on a block boundary.
    partial: BytesMut,
    /// What the open block's complete lines said.
    facts: BlockFacts,
    /// Cursor after the blocks handed out so far; an owned copy so no read buffer is pinned.
    last_id: Vec<u8>,
    /// `feed` returned EventTooLarge for this body; it must end.
    failed: bool,
    /// Bytes looked at by the scanner and the line classifier (linearity test).
    #[cfg(test)]
    scanned: usize,
}

impl EventFramer {
    /// A framer for one stream; blocks larger than `max_event_bytes` are refused (a limit past
    /// MAX_EVENT_BYTES_LIMIT is taken as that: `--sse-max-event-bytes` allows no more).
    pub fn new(max_event_bytes: usize) -> Self {
        EventFramer {
            max_event_bytes: max_event_bytes.min(MAX_EVENT_BYTES_LIMIT) as u32,
            bom: BomCheck::Pending { matched: 0 },
            line: LineState::InLine { start: 0 },
            partial: BytesMut::new(),
            facts: BlockFacts::default(),
            last_id: Vec::new(),
            failed: false,
            #[cfg(test)]
            scanned: 0,
        }
    }

    /// Feeds the next piece of the body; appends every block it completes to `out`, in order.
    ///
    /// On `Err` the blocks completed before the oversized one are already in `out`; the framer
    /// then refuses this body (every later `feed` fails) until [`restart_body`](Self::restart_body).
    pub fn feed(&mut self, piece: Bytes, out: &mut Vec<SseBlock>) -> Result<(), FrameError> {
        if self.failed {
            return Err(self.too_large());
        }
        let Some(skip) = self.strip_bom(&piece) else {
            return Ok(());
        };
        let piece = if skip == 0 {
            piece
        } else {
            piece.slice(skip..)
        };
        if piece.is_empty() {
            return Ok(());
        }
        self.feed_sink(&piece, &mut SliceSink { piece: &piece, out })
    }

    /// As [`feed`](Self::feed), for the piece `read[piece]`: the blocks lying in the piece come
    /// out as spans of `read` (the relay's path: no `Bytes` per block, see [`BlockBytes`]), a
    /// block assembled over several pieces as its own bytes.
    #[cfg(test)]
    pub(crate) fn feed_read(
        &mut self,
        read: &[u8],
        piece: std::ops::Range<usize>,
        out: &mut Vec<FramedBlock>,
    ) -> Result<(), FrameError> {
        self.feed_read_into(read, piece, out)
    }

    /// As [`feed_read`](Self::feed_read), handing each block to `out` as it is framed.
    #[inline]
    pub(crate) fn feed_read_into(
        &mut self,
        read: &[u8],
        piece: std::ops::Range<usize>,
        out: &mut impl FramedSink,
    ) -> Result<(), FrameError> {
        if self.failed {
            return Err(self.too_large());
        }
        let Some(skip) = self.strip_bom(&read[piece.clone()]) else {
            return Ok(());
        };
        let base = piece.start + skip;
        if base == piece.end {
            return Ok(());
        }
        self.feed_sink(&read[base..piece.end], &mut SpanSink { base, out })
    }

    fn feed_sink(&mut self, piece: &[u8], sink: &mut impl BlockSink) -> Result<(), FrameError> {
        let mut last_id = LastId::None;
        let result = self.scan(piece, sink, &mut last_id);
        if let LastId::InPiece { start, end } = last_id {
            commit_cursor(&mut self.last_id, &piece[start..end]);
        }
        if result.is_err() {
            self.failed = true;
            self.partial = BytesMut::new();
            self.facts = BlockFacts::default();
        }
        result
    }

    /// The body ended: any unterminated block is discarded (returns how many bytes were dropped).
    ///
    /// A block whose blank line is a lone CR at the very end of the body is complete by rule 2,
    /// but this method has nowhere to put it: it is dropped and counted. Relays that forward
    /// should call [`finish_into`](Self::finish_into). Leaves the framer ready for a new body.
    pub fn finish(&mut self) -> usize {
        let dropped = self.pending_bytes();
        self.restart_body();
        dropped
    }

    /// The body ended: hands out a block completed by a final lone CR (rule 2), discards any
    /// unterminated block (rule 10) and returns how many bytes were dropped. Leaves the framer
    /// ready for a new body, with the cursor kept.
    pub fn finish_into(&mut self, out: &mut Vec<SseBlock>) -> usize {
        let none = Bytes::new();
        self.finish_sink(&mut SliceSink { piece: &none, out })
    }

    /// [`finish_into`](Self::finish_into) for the relay's blocks (`feed_read`).
    pub(crate) fn finish_framed(&mut self, out: &mut Vec<FramedBlock>) -> usize {
        self.finish_sink(&mut SpanSink { base: 0, out })
    }

    fn finish_sink(&mut self, sink: &mut impl BlockSink) -> usize {
        // A block completed by a final CR was handed out when its CR arrived (AfterBlankCr),
        // except one held at the limit (BlankCrAtLimit): it is whole, it goes now. An
        // unterminated block is discarded.
        if self.line == LineState::BlankCrAtLimit {
            let raw = std::mem::take(&mut self.partial).freeze();
            let facts = std::mem::take(&mut self.facts);
            // An assembled block: its id, if any, goes to the cursor in `emit`.
            let mut last_id = LastId::None;
            emit(
                facts,
                Completed::Own(raw),
                &[],
                sink,
                &mut last_id,
                &mut self.last_id,
            );
        }
        self.finish()
    }

    /// Starts a new upstream body on the same framer (after a reconnect): drops the unfinished tail of the
    /// previous body, re-arms the BOM strip for the new body's offset 0; the cursor (last id) is kept.
    pub fn restart_body(&mut self) {
        self.bom = BomCheck::Pending { matched: 0 };
        self.line = LineState::InLine { start: 0 };
        self.partial = BytesMut::new();
        self.facts = BlockFacts::default();
        self.failed = false;
    }

    /// Last event id as a browser would hold it after the blocks handed out so far (b"" when none/reset).
    pub fn last_event_id(&self) -> &[u8] {
        &self.last_id
    }

    /// Bytes held for an incomplete block (for memory accounting).
    /// Memory the open block holds (its buffer's capacity), for the worker's partial budget.
    pub fn held_bytes(&self) -> usize {
        self.partial.capacity()
    }

    pub fn pending_bytes(&self) -> usize {
        let held_bom = match self.bom {
            BomCheck::Pending { matched } => usize::from(matched),
            BomCheck::Done { .. } => 0,
        };
        self.partial.len() + held_bom
    }

    /// Whether the current body began with a BOM that was stripped (rule 1). False while the
    /// first bytes are still undecided.
    pub fn bom_stripped(&self) -> bool {
        self.bom == (BomCheck::Done { stripped: true })
    }

    /// The limit this framer enforces, in bytes.
    #[inline]
    pub fn max_event_bytes(&self) -> usize {
        self.max_event_bytes as usize
    }

    #[cfg(test)]
    pub(crate) fn scanned_bytes(&self) -> usize {
        self.scanned
    }

    fn too_large(&self) -> FrameError {
        FrameError::EventTooLarge {
            limit: self.max_event_bytes(),
        }
    }

    /// Rule 1: consumes the leading BOM of the body, however it is split. Returns how many of
    /// the piece's first bytes were BOM (the rest is to scan), or None when the whole piece is
    /// still a possible BOM prefix (held back).
    fn strip_bom(&mut self, piece: &[u8]) -> Option<usize> {
        let BomCheck::Pending { matched: held } = self.bom else {
            return Some(0);
        };
        let held = usize::from(held);
        let mut matched = held;
        while matched < BOM.len() && piece.get(matched - held) == Some(&BOM[matched]) {
            matched += 1;
        }
        if matched == BOM.len() {
            self.bom = BomCheck::Done { stripped: true };
            return Some(matched - held);
        }
        if matched - held == piece.len() {
            self.bom = BomCheck::Pending {
                matched: matched as u8,
            };
            return None;
        }
        // Not a BOM: the bytes held from earlier pieces are the start of the first line.
        self.bom = BomCheck::Done { stripped: false };
        self.partial.extend_from_slice(&BOM[..held]);
        Some(0)
    }

    /// Appends bytes of the open block to `partial`, refusing to grow past the limit.
    fn grow_partial(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        if self.partial.len() + bytes.len() > self.max_event_bytes() {
            return Err(self.too_large());
        }
        self.partial.extend_from_slice(bytes);
        Ok(())
    }

    /// Frames one non-empty piece (BOM already handled). The open block is always
    /// `partial ++ piece[copied..pos]`; a block offset `o` past `partial` is piece index
    /// `copied + o - partial.len()`. `last_id` gets where the id of the last block handed out
    /// that set one is (the cursor is read from it once per piece, `feed_sink`).
    ///
    /// One pass: the line ends come from `LineEnds` (each byte compared once, 64 at a time), a
    /// line is classified by its first bytes where it lies (an id's value read once, in
    /// `IdValue::read`), the open block's facts live in a local until the piece is done, and a
    /// block that lies in the piece goes out as a span of it: no iterator adaptor per line, no
    /// allocation per event.
    fn scan(
        &mut self,
        bytes: &[u8],
        out: &mut impl BlockSink,
        last_id: &mut LastId,
    ) -> Result<(), FrameError> {
        debug_assert!(!bytes.is_empty());
        let mut copied = 0; // piece bytes before `copied` are in `partial` or already emitted
        let mut pos = 0; // next byte the line search has not looked at
        let mut line_start; // block offset of the line being scanned

        // Rule 2: settle the CR that ended the last piece.
        match self.line {
            LineState::InLine { start } => line_start = start as usize,
            LineState::AfterCr => {
                debug_assert!(!self.partial.is_empty(), "the CR itself is held");
                if bytes[0] == b'\n' {
                    pos = 1;
                }
                #[cfg(test)]
                {
                    self.scanned += 1;
                }
                line_start = self.partial.len() + pos;
            }
            LineState::BlankCrAtLimit => {
                if bytes[0] == b'\n' {
                    return Err(self.too_large());
                }
                let raw = std::mem::take(&mut self.partial).freeze();
                let facts = std::mem::take(&mut self.facts);
                emit(
                    facts,
                    Completed::Own(raw),
                    bytes,
                    out,
                    last_id,
                    &mut self.last_id,
                );
                line_start = 0;
            }
            LineState::AfterBlankCr => {
                debug_assert!(self.partial.is_empty(), "the block was handed out");
                if bytes[0] == b'\n' {
                    let facts = std::mem::take(&mut self.facts);
                    emit(
                        facts,
                        Completed::InPiece { start: 0, end: 1 },
                        bytes,
                        out,
                        last_id,
                        &mut self.last_id,
                    );
                    pos = 1;
                    copied = 1;
                }
                #[cfg(test)]
                {
                    self.scanned += 1;
                }
                line_start = 0;
            }
        }

        // The hot loop, in pseudo-code:
        //   while let Some(i) = next CR or LF from pos:           // each byte looked at once
        //       line = open block[line_start..i]                   // copy first if it spans pieces
        //       term = LF | CRLF | CR; a CR that ends the piece -> AfterCr, stop (rule 2)
        //       blank -> block = open block through term -> out   // zero-copy span when in piece
        //       else  -> note data/id/retry in `facts`; next line starts after term
        //   copy the open block's tail piece[copied..] into partial (the only copy)
        let mut facts = self.facts;
        // Where the scan stops when a CR ends the piece (rule 2); else inside a line.
        let mut stopped_at_cr = None;
        let mut ends = LineEnds::new(bytes);
        // The plain scan (`scan_plain`) goes first from a block boundary with nothing held: at
        // the piece's start when nothing is, else after the first block handed out below. Once
        // per piece: a CR stops it for the rest of the piece.
        let mut plain = self.partial.is_empty();
        let mut plain_tried = false;
        loop {
            if plain {
                plain = false;
                plain_tried = true;
                let scan = self.scan_plain(
                    bytes,
                    &mut copied,
                    &mut pos,
                    &mut line_start,
                    &mut facts,
                    out,
                    last_id,
                );
                if scan == PlainScan::Ended {
                    break;
                }
            }
            let Some(i) = ends.next_from(pos) else {
                break;
            };
            // The open block is `partial ++ piece[copied..]` and the current line starts inside
            // it, at or before `pos`: nothing before `pos` needs looking at again.
            debug_assert!(copied <= pos && pos <= i);
            debug_assert!(line_start <= self.partial.len() + pos - copied);
            #[cfg(test)]
            {
                self.scanned += i - pos + 1;
            }
            let line: &[u8] = if self.partial.is_empty() {
                &bytes[copied + line_start..i]
            } else {
                // The line may begin in an earlier piece: make it contiguous in `partial`.
                self.grow_partial(&bytes[copied..i])?;
                copied = i;
                &self.partial[line_start..]
            };
            let blank = line.is_empty();
            #[cfg(test)]
            {
                self.scanned += classify_cost(line);
            }
            let end = if bytes[i] == b'\n' {
                i + 1
            } else if i + 1 < bytes.len() {
                i + 1 + usize::from(bytes[i + 1] == b'\n')
            } else {
                // A CR ends the piece: an LF may follow in the next one (rule 2).
                let end = i + 1;
                if blank && self.partial.len() + end - copied == self.max_event_bytes() {
                    // Complete, but an LF next would make it too large: hold it.
                    self.grow_partial(&bytes[copied..end])?;
                    copied = end;
                    stopped_at_cr = Some(LineState::BlankCrAtLimit);
                } else if blank {
                    // The block is complete at this CR: hand it out now.
                    let block = self.complete_block(bytes, copied, end)?;
                    emit(
                        std::mem::take(&mut facts),
                        block,
                        bytes,
                        out,
                        last_id,
                        &mut self.last_id,
                    );
                    copied = end;
                    stopped_at_cr = Some(LineState::AfterBlankCr);
                } else {
                    note_line(&mut facts, line, line_start);
                    stopped_at_cr = Some(LineState::AfterCr);
                }
                #[cfg(test)]
                {
                    pos = bytes.len();
                }
                break;
            };
            pos = end;
            if blank {
                let block = self.complete_block(bytes, copied, end)?;
                emit(
                    std::mem::take(&mut facts),
                    block,
                    bytes,
                    out,
                    last_id,
                    &mut self.last_id,
                );
                copied = end;
                line_start = 0;
                // A block boundary with nothing held (the block was the piece's, or took what
                // `partial` held): the plain scan takes over, if it has not met a CR.
                plain = !plain_tried;
            } else {
                note_line(&mut facts, line, line_start);
                line_start = self.partial.len() + end - copied;
            }
        }
        #[cfg(test)]
        {
            self.scanned += bytes.len() - pos;
        }
        self.facts = facts;
        self.line = stopped_at_cr.unwrap_or(LineState::InLine {
            start: line_start as u32,
        });
        // Keep the open block for the next piece.
        if copied < bytes.len() {
            self.grow_partial(&bytes[copied..])?;
        }
        Ok(())
    }

    /// The plain scan: from a block boundary in the piece with nothing held in `partial`
    /// (`*copied` the block's start, `*pos` where the line search goes on), frames the blocks
    /// whose lines all end in LF, the common case, with less per line than the general loop of
    /// `scan`: the LF bits of each 64-byte window are walked one by one (a CR stops the walk),
    /// no `partial` to check per line, no CR, CRLF or piece-end cases. It stops at the first
    /// CR (`MetCr`), at a block over the limit (`MetCr` too: the general loop then fails on
    /// it), or at the piece's end (`Ended`: no line end lies after `*pos`); `*copied`, `*pos`,
    /// `*line_start` and `facts` are then where the general loop goes on from, as if it had
    /// scanned the same lines. Each byte is still looked at once (rule 12).
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn scan_plain(
        &mut self,
        bytes: &[u8],
        copied: &mut usize,
        pos: &mut usize,
        line_start: &mut usize,
        facts: &mut BlockFacts,
        out: &mut impl BlockSink,
        last_id: &mut LastId,
    ) -> PlainScan {
        debug_assert!(self.partial.is_empty());
        debug_assert_eq!(*copied + *line_start, *pos, "at a line's start");
        let len = bytes.len();
        let max = self.max_event_bytes();
        let mut p = *pos; // the next byte not looked at
        let mut block = *copied; // the open block's start
        let mut line = p; // the current line's start
        let mut f = *facts;
        let mut window = p / 64;
        let scan = loop {
            let base = window * 64;
            if base >= len {
                break PlainScan::Ended;
            }
            let (mut lf, mut cr) = lf_cr_window(bytes, window);
            if p > base {
                let from = u64::MAX << (p - base);
                lf &= from;
                cr &= from;
            }
            // Only the LFs before the window's first CR (if any) are this scan's.
            if cr != 0 {
                lf &= (1u64 << cr.trailing_zeros()) - 1;
            }
            while lf != 0 {
                let i = base + lf.trailing_zeros() as usize;
                lf &= lf - 1;
                if i == line {
                    let end = i + 1;
                    if end - block > max {
                        // Too large: the general loop meets this blank line and fails.
                        *copied = block;
                        *pos = p;
                        *line_start = line - block;
                        *facts = f;
                        return PlainScan::MetCr;
                    }
                    #[cfg(test)]
                    {
                        self.scanned += i - p + 1;
                    }
                    emit(
                        std::mem::take(&mut f),
                        Completed::InPiece { start: block, end },
                        bytes,
                        out,
                        last_id,
                        &mut self.last_id,
                    );
                    block = end;
                } else {
                    let text = &bytes[line..i];
                    #[cfg(test)]
                    {
                        self.scanned += i - p + 1 + classify_cost(text);
                    }
                    note_line(&mut f, text, line - block);
                }
                p = i + 1;
                line = p;
            }
            if cr != 0 {
                break PlainScan::MetCr;
            }
            window += 1;
        };
        *copied = block;
        *pos = p;
        *line_start = line - block;
        *facts = f;
        scan
    }

    /// The open block, complete through `piece[..end]`: a zero-copy span of the piece when the
    /// block lies within it, else the assembled partial (within the limit either way).
    #[inline(always)]
    fn complete_block(
        &mut self,
        piece: &[u8],
        copied: usize,
        end: usize,
    ) -> Result<Completed, FrameError> {
        if self.partial.is_empty() && end - copied <= self.max_event_bytes() {
            Ok(Completed::InPiece { start: copied, end })
        } else {
            self.complete_assembled(piece, copied, end)
        }
    }

    /// `complete_block` for a block begun in an earlier piece (or one over the limit).
    #[cold]
    #[inline(never)]
    fn complete_assembled(
        &mut self,
        piece: &[u8],
        copied: usize,
        end: usize,
    ) -> Result<Completed, FrameError> {
        if self.partial.is_empty() {
            return Err(self.too_large());
        }
        self.grow_partial(&piece[copied..end])?;
        Ok(Completed::Own(std::mem::take(&mut self.partial).freeze()))
    }
}

/// Applies a complete non-blank line's meaning to the open block's facts (`line_start`: the
/// line's block offset). Looks at a few leading bytes, and at the value only for `id` (NUL
/// check, rule 7, and the number, read once here) and `retry` (digits, rule 9).
#[inline(always)]
fn note_line(facts: &mut BlockFacts, line: &[u8], line_start: usize) {
    match line[0] {
        b'd' if field_value(line, b"data").is_some() => facts.fires = true,
        b'i' => {
            let Some(value_start) = field_value(line, b"id") else {
                return;
            };
            let Some(value) = IdValue::read_in(line, value_start) else {
                return;
            };
            facts.id = Span {
                start: (line_start + value_start) as u32,
                end: (line_start + line.len()) as u32,
            };
            facts.number = value.number;
            facts.id_ascii = value.ascii;
            facts.has_id = true;
        }
        b'r' => {
            let Some(ms) = field_value(line, b"retry").and_then(|s| parse_retry(&line[s..])) else {
                return;
            };
            facts.retry = ms;
            facts.has_retry = true;
        }
        _ => {}
    }
}

/// Hands out one complete block with what its lines said (its id goes to the cursor, rule 8:
/// `last_id` notes where it is when the block lies in the piece, for `commit_cursor` once the
/// piece is framed; an id elsewhere goes to `cursor` at once); `piece` is the piece being
/// scanned.
#[inline(always)]
fn emit(
    facts: BlockFacts,
    block: Completed,
    piece: &[u8],
    out: &mut impl BlockSink,
    last_id: &mut LastId,
    cursor: &mut Vec<u8>,
) {
    let mut number = None;
    let id = if !facts.has_id {
        EventId::None
    } else {
        let span = facts.id;
        number = (facts.number != NO_NUMBER).then_some(facts.number);
        match (&block, facts.id_ascii) {
            (Completed::InPiece { start, .. }, true) => {
                *last_id = LastId::InPiece {
                    start: start + span.start as usize,
                    end: start + span.end as usize,
                };
                // Blocks are at most MAX_EVENT_BYTES_LIMIT (1 GiB) long: offsets fit.
                EventId::In {
                    start: span.start,
                    len: span.end - span.start,
                }
            }
            (_, ascii) => {
                let id = if ascii {
                    EventId::In {
                        start: span.start,
                        len: span.end - span.start,
                    }
                } else {
                    id_beyond_ascii(&block, piece, span)
                };
                // The cursor holds it now; an id of a later block of the piece replaces it.
                commit_block_id(&block, piece, &id, cursor);
                *last_id = LastId::None;
                id
            }
        }
    };
    let retry = facts.has_retry.then_some(facts.retry);
    out.push(block, id, number, retry, facts.fires);
}

/// Moves the cursor to `id`, the id of `block` (assembled, or one whose id is not plain ASCII:
/// rare, so out of the hot loop).
#[cold]
#[inline(never)]
fn commit_block_id(block: &Completed, piece: &[u8], id: &EventId, cursor: &mut Vec<u8>) {
    let raw: &[u8] = match block {
        Completed::InPiece { start, end } => &piece[*start..*end],
        Completed::Own(raw) => raw,
    };
    if let Some(value) = id.value(raw) {
        commit_cursor(cursor, value);
    }
}

/// An id value with bytes past ASCII: a span when it is valid UTF-8, else its U+FFFD-replaced
/// copy (as the browser holds it).
#[cold]
#[inline(never)]
fn id_beyond_ascii(block: &Completed, piece: &[u8], span: Span) -> EventId {
    let raw: &[u8] = match block {
        Completed::InPiece { start, end } => &piece[*start..*end],
        Completed::Own(raw) => raw,
    };
    let value = &raw[span.start as usize..span.end as usize];
    if std::str::from_utf8(value).is_ok() {
        EventId::In {
            start: span.start,
            len: span.end - span.start,
        }
    } else {
        EventId::Own(
            String::from_utf8_lossy(value)
                .into_owned()
                .into_bytes()
                .into(),
        )
    }
}

/// Moves the cursor (`EventFramer::last_id`) to `value`, the id of the last block handed out
/// that set one (rule 8): once per piece rather than once per event, as nothing reads the
/// cursor in between.
#[inline]
fn commit_cursor(cursor: &mut Vec<u8>, value: &[u8]) {
    cursor.clear();
    cursor.extend_from_slice(value);
    if cursor.capacity() > 2 * cursor.len().max(64) {
        cursor.shrink_to_fit(); // one huge id must not stay resident
    }
}

impl Default for EventFramer {
    fn default() -> Self {
        EventFramer::new(DEFAULT_MAX_EVENT_BYTES)
    }
}

/// Where the value of field `name` starts in `line`, if `line` is that field (rules 4, 5): the
/// name is the whole line, or is followed by the first colon and then at most one space.
fn field_value(line: &[u8], name: &[u8]) -> Option<usize> {
    let rest = line.strip_prefix(name)?;
    match rest {
        [] => Some(name.len()),
        [b':', b' ', ..] => Some(name.len() + 2),
        [b':', ..] => Some(name.len() + 1),
        _ => None,
    }
}

/// Rule 9: one or more ASCII digits, in ms (saturating); anything else is no retry at all.
fn parse_retry(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0u64, |ms, &d| {
        ms.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

/// Upper bound of the bytes `note_line` reads (linearity test).
#[cfg(test)]
fn classify_cost(line: &[u8]) -> usize {
    if line.starts_with(b"id") || line.starts_with(b"retry") {
        line.len()
    } else {
        line.len().min(6)
    }
}

/// Slow path, for interceptors and tests: the fields of one block as a browser would dispatch them.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ParsedEvent {
    /// The `event` field's value; "" means "message".
    pub event_type: String,
    /// The `data` lines joined with LF (rule 6).
    pub data: String,
    /// The block's last valid `id` value (Some("") resets the cursor); None when absent.
    pub id: Option<String>,
    /// The block's last valid `retry` value, in ms.
    pub retry: Option<u64>,
    /// At least one `data` field: a browser fires an event.
    pub fires: bool,
}

/// Slow path, for interceptors and tests: the fields of one block as a browser would dispatch them.
/// Reads lines up to the first blank one (the dispatch); invalid UTF-8 => U+FFFD
/// (String::from_utf8_lossy). Input without a blank line is read as if it ended with one.
/// The lines of one block up to its blank line (not included), split as a browser splits them
/// (CRLF, LF, lone CR), so that what is found here is what `parse_block` finds.
pub(crate) fn block_lines(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = raw;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (line, after) = match memchr::memchr2(b'\r', b'\n', rest) {
            None => (rest, &rest[rest.len()..]),
            Some(i) if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') => {
                (&rest[..i], &rest[i + 2..])
            }
            Some(i) => (&rest[..i], &rest[i + 1..]),
        };
        rest = after;
        (!line.is_empty()).then_some(line)
    })
}

pub fn parse_block(raw: &[u8]) -> ParsedEvent {
    let mut event_type: &[u8] = b"";
    let mut data = Vec::new();
    let mut id = None;
    let mut retry = None;
    let mut fires = false;
    for line in block_lines(raw) {
        if line[0] == b':' {
            continue;
        }
        let (name, value) = match memchr::memchr(b':', line) {
            None => (line, &line[line.len()..]),
            Some(c) => {
                let value = &line[c + 1..];
                (&line[..c], value.strip_prefix(b" ").unwrap_or(value))
            }
        };
        match name {
            b"event" => event_type = value,
            b"data" => {
                data.extend_from_slice(value);
                data.push(b'\n');
                fires = true;
            }
            b"id" if !value.contains(&0) => id = Some(value),
            b"retry" => retry = parse_retry(value).or(retry),
            _ => {}
        }
    }
    data.pop(); // rule 6: the last LF goes; `data` is empty only when no data line was seen
    ParsedEvent {
        event_type: String::from_utf8_lossy(event_type).into_owned(),
        data: String::from_utf8_lossy(&data).into_owned(),
        id: id.map(|v| String::from_utf8_lossy(v).into_owned()),
        retry,
        fires,
    }
}

#[cfg(test)]
#[path = "framer_tests.rs"]
mod tests;
