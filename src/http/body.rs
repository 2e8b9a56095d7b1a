//! One message body of a known kind, decoded from successive reads; and the framing bytes the
//! proxy writes when it sends a body on chunked.

use super::chunked::{ChunkedDecoder, Decoded};
use super::error::HttpError;
use super::framing::BodyKind;

/// Decodes one message body of a known kind from successive reads.
#[derive(Debug, Clone)]
pub enum BodyDecoder {
    /// Content-Length: `remaining` (at least 1) bytes still to come.
    Length { remaining: u64 },
    /// The chunked coding.
    Chunked(ChunkedDecoder),
    /// Everything until the peer closes.
    UntilClose,
    /// The body is complete.
    Done,
}

impl BodyDecoder {
    /// Empty and Length(0) start out Done.
    pub fn new(kind: BodyKind) -> Self {
        match kind {
            BodyKind::Empty | BodyKind::Length(0) => BodyDecoder::Done,
            BodyKind::Length(n) => BodyDecoder::Length { remaining: n },
            BodyKind::Chunked => BodyDecoder::Chunked(ChunkedDecoder::new()),
            BodyKind::UntilClose => BodyDecoder::UntilClose,
        }
    }

    /// Same contract as [`ChunkedDecoder::decode`]. Length hands out min(remaining, input) at
    /// once; UntilClose hands out all of input; Done answers `Done { consumed: 0 }`.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, HttpError> {
        match self {
            BodyDecoder::Done => Ok(Decoded::Done { consumed: 0 }),
            BodyDecoder::Chunked(chunked) => {
                let decoded = chunked.decode(input)?;
                if chunked.is_done() {
                    *self = BodyDecoder::Done;
                }
                Ok(decoded)
            }
            _ if input.is_empty() => Ok(Decoded::NeedMore),
            BodyDecoder::UntilClose => Ok(Decoded::Data {
                start: 0,
                end: input.len(),
            }),
            BodyDecoder::Length { remaining } => {
                let take = (*remaining).min(input.len() as u64);
                let left = *remaining - take;
                *self = if left == 0 {
                    BodyDecoder::Done
                } else {
                    BodyDecoder::Length { remaining: left }
                };
                // take <= input.len().
                Ok(Decoded::Data {
                    start: 0,
                    end: take as usize,
                })
            }
        }
    }

    /// The peer closed its side: Ok for UntilClose (body complete) and Done;
    /// Err(HttpError::BodyTruncated{..}) otherwise.
    pub(crate) fn eof(&mut self) -> Result<(), HttpError> {
        match self {
            BodyDecoder::UntilClose | BodyDecoder::Done => {
                *self = BodyDecoder::Done;
                Ok(())
            }
            BodyDecoder::Length { remaining } => Err(HttpError::BodyTruncated {
                remaining: Some(*remaining),
            }),
            BodyDecoder::Chunked(_) => Err(HttpError::BodyTruncated { remaining: None }),
        }
    }

    /// True once the whole body has been handed out (and, for chunked, its framing consumed).
    pub fn is_done(&self) -> bool {
        matches!(self, BodyDecoder::Done)
    }
}

/// Most bytes of a chunk-size line we write: 16 hex digits (a u64) and CRLF.
const CHUNK_HEADER_BYTES: usize = 18;

/// Writes the framing for an outgoing chunk of `len` bytes ("{hex}\r\n") into a small stack
/// buffer. `len` must not be 0: a zero-size chunk is the last chunk (write [`LAST_CHUNK`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChunkHeader {
    /// Lowercase hex digits of the length, then CRLF, from the front.
    buf: [u8; CHUNK_HEADER_BYTES],
    /// How many bytes of `buf` are used.
    len: u8,
}

impl ChunkHeader {
    pub(crate) fn new(len: usize) -> Self {
        debug_assert!(len > 0, "a zero-size chunk would end the body");
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let len = len as u64;
        // Number of hex digits: at least one, one per started nibble.
        let digits = (((64 - len.leading_zeros()) as usize).div_ceil(4)).max(1);
        let mut buf = [0u8; CHUNK_HEADER_BYTES];
        for (i, slot) in buf[..digits].iter_mut().enumerate() {
            let shift = 4 * (digits - 1 - i);
            *slot = HEX[((len >> shift) & 0xf) as usize];
        }
        buf[digits] = b'\r';
        buf[digits + 1] = b'\n';
        ChunkHeader {
            buf,
            len: (digits + 2) as u8,
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

/// Chunk sizes below this have their chunk-size line in [`SMALL_CHUNK_LINES`]: three hex digits
/// at most, which covers a read of small events (scenario 2's load: one event of ~100 bytes per
/// read; a batched read of a few KiB). Larger chunks are rare per event (their line is written).
pub(crate) const SMALL_CHUNK_LIMIT: usize = 0x1000;

/// Bytes per line in [`SMALL_CHUNK_LINES`]: three hex digits and CRLF, the longest such line.
const SMALL_CHUNK_STRIDE: usize = 5;

/// Every chunk-size line of a size in 1..SMALL_CHUNK_LIMIT, each from `size * SMALL_CHUNK_STRIDE`
/// (20 KiB in the binary): a line handed out as `Bytes::from_static`, with no allocation,
/// thread-local or reference count per chunk.
static SMALL_CHUNK_LINES: [u8; SMALL_CHUNK_LIMIT * SMALL_CHUNK_STRIDE] = small_chunk_lines();

const fn small_chunk_lines() -> [u8; SMALL_CHUNK_LIMIT * SMALL_CHUNK_STRIDE] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut table = [0u8; SMALL_CHUNK_LIMIT * SMALL_CHUNK_STRIDE];
    let mut size = 1;
    while size < SMALL_CHUNK_LIMIT {
        let at = size * SMALL_CHUNK_STRIDE;
        let digits = small_chunk_digits(size);
        let mut i = 0;
        while i < digits {
            table[at + i] = HEX[(size >> (4 * (digits - 1 - i))) & 0xf];
            i += 1;
        }
        table[at + digits] = b'\r';
        table[at + digits + 1] = b'\n';
        size += 1;
    }
    table
}

/// Hex digits of `size` (below SMALL_CHUNK_LIMIT, not 0).
const fn small_chunk_digits(size: usize) -> usize {
    if size < 0x10 {
        1
    } else if size < 0x100 {
        2
    } else {
        3
    }
}

/// The chunk-size line ("{hex}\r\n") for a chunk of `len` bytes, from a static table, when
/// `len` is in 1..SMALL_CHUNK_LIMIT; None otherwise (write it with [`ChunkHeader`]).
#[inline]
pub(crate) fn small_chunk_line(len: usize) -> Option<&'static [u8]> {
    if len == 0 || len >= SMALL_CHUNK_LIMIT {
        return None;
    }
    let at = len * SMALL_CHUNK_STRIDE;
    Some(&SMALL_CHUNK_LINES[at..at + small_chunk_digits(len) + 2])
}

/// Follows each chunk's data.
pub(crate) const CHUNK_END: &[u8] = b"\r\n";
/// Ends a chunked body (no trailers).
pub(crate) const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
