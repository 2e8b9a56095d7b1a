//! Incremental, zero-copy decoder for the chunked transfer coding (RFC 9112 section 7.1).
//!
//! ```text
//! chunked-body   = *chunk last-chunk trailer-section CRLF
//! chunk          = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! chunk-size     = 1*HEXDIG
//! last-chunk     = 1*("0") [ chunk-ext ] CRLF
//! chunk-ext      = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//! chunk-ext-val  = token / quoted-string
//! trailer-section = *( field-line CRLF )
//! ```
//!
//! Strict where a lenient reading lets two parsers disagree on where the body ends: every line
//! ends in CRLF (a bare LF or bare CR is an error), the size is at most 16 hex digits, the
//! extension grammar is checked byte by byte. Extensions and trailers are discarded (the proxy
//! re-frames the body) and bounded by [`MAX_CHUNK_EXT_BYTES`] and [`MAX_TRAILER_BYTES`].
//! One leniency, as hyper's: whitespace after the size with no extension ("5 \r\n").

use super::error::HttpError;
use super::syntax::{is_field_content, is_tchar};

/// Most hex digits in a chunk size, leading zeros included: 16 digits fill a u64. Past this: 400.
pub const MAX_CHUNK_SIZE_DIGITS: usize = 16;
/// Most bytes after the size digits on one chunk-size line (whitespace and extensions, CRLF not
/// counted). Past this: 400.
pub const MAX_CHUNK_EXT_BYTES: usize = 4096;
/// Most bytes in the whole trailer section, line ends included (the final empty line not
/// counted). Past this: 400.
pub const MAX_TRAILER_BYTES: usize = 16 * 1024;

/// What one call to [`ChunkedDecoder::decode`] (or `BodyDecoder::decode`) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// input[start..end] is body data; the caller advances by `end` (bytes before `start` were framing).
    Data { start: usize, end: usize },
    /// All of input was framing and was consumed; more input is needed.
    NeedMore,
    /// The body ended; input[..consumed] belonged to it, the rest is the next message.
    Done { consumed: usize },
}

/// Where the decoder stands in the chunked grammar, one variant per position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// In chunk-size: `digits` hex digits read so far, worth `size`.
    Size { size: u64, digits: usize },
    /// After chunk-size, before the line's CR: whitespace and extensions; `ext_bytes` of them.
    Extension {
        size: u64,
        ext_bytes: usize,
        at: ExtAt,
    },
    /// The size line's CR was read; its LF must follow.
    SizeLf { size: u64 },
    /// In chunk-data, `remaining` (at least 1) bytes still to come.
    Data { remaining: u64 },
    /// Chunk data ended: its CR must follow.
    DataCr,
    /// The CR after chunk data was read; its LF must follow.
    DataLf,
    /// At the start of a trailer field line, or of the final empty line.
    TrailerStart { trailer_bytes: usize },
    /// In a trailer field name.
    TrailerName { trailer_bytes: usize },
    /// In a trailer field value (after the colon).
    TrailerValue { trailer_bytes: usize },
    /// A trailer line's CR was read; its LF must follow.
    TrailerLf { trailer_bytes: usize },
    /// The final empty line's CR was read; its LF ends the body.
    EndLf,
    /// The body ended.
    Done,
}

/// Position inside `chunk-ext`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExtAt {
    /// Whitespace after the size digits.
    AfterSize,
    /// After ';', before the extension name (BWS allowed).
    BeforeName,
    /// In the extension name.
    Name,
    /// After the name, before '=' (BWS allowed).
    AfterName,
    /// After '=', before the value (BWS allowed).
    BeforeValue,
    /// In a token value.
    Token,
    /// In a quoted-string value.
    Quoted,
    /// After a backslash in a quoted-string.
    QuotedPair,
    /// After a complete value (BWS allowed).
    AfterValue,
}

impl ExtAt {
    /// A CR here ends the size line: everything before it was complete.
    fn may_end(self) -> bool {
        matches!(
            self,
            ExtAt::AfterSize | ExtAt::Name | ExtAt::AfterName | ExtAt::Token | ExtAt::AfterValue
        )
    }

    /// The position after byte `b` (not CR), or None when `b` breaks the grammar.
    fn step(self, b: u8) -> Option<ExtAt> {
        let next = match (self, b) {
            (ExtAt::AfterSize | ExtAt::AfterValue, b' ' | b'\t') => self,
            (
                ExtAt::AfterSize
                | ExtAt::Name
                | ExtAt::AfterName
                | ExtAt::Token
                | ExtAt::AfterValue,
                b';',
            ) => ExtAt::BeforeName,
            (ExtAt::BeforeName | ExtAt::AfterName | ExtAt::BeforeValue, b' ' | b'\t') => self,
            (ExtAt::BeforeName | ExtAt::Name, b) if is_tchar(b) => ExtAt::Name,
            (ExtAt::Name, b' ' | b'\t') => ExtAt::AfterName,
            (ExtAt::Name | ExtAt::AfterName, b'=') => ExtAt::BeforeValue,
            (ExtAt::BeforeValue, b'"') => ExtAt::Quoted,
            (ExtAt::BeforeValue | ExtAt::Token, b) if is_tchar(b) => ExtAt::Token,
            (ExtAt::Token, b' ' | b'\t') => ExtAt::AfterValue,
            (ExtAt::Quoted, b'"') => ExtAt::AfterValue,
            (ExtAt::Quoted, b'\\') => ExtAt::QuotedPair,
            // qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text (RFC 9110 5.6.4)
            (ExtAt::Quoted, b) if is_field_content(b) => ExtAt::Quoted,
            (ExtAt::QuotedPair, b) if is_field_content(b) => ExtAt::Quoted,
            _ => return None,
        };
        Some(next)
    }
}

/// Decodes one chunked body from successive reads, handing out its data as slices of the input.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    /// Position in the grammar; everything before it has been consumed.
    state: ChunkState,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        ChunkedDecoder {
            state: ChunkState::Size { size: 0, digits: 0 },
        }
    }

    /// Consumes framing from the front of `input` up to the next data (returned as one slice,
    /// as long as the chunk and the input allow), the end of the body, or the end of `input`.
    pub fn decode(&mut self, input: &[u8]) -> Result<Decoded, HttpError> {
        // pos = 0
        // loop:
        //     Data { remaining }: hand out input[pos..pos + min(remaining, rest)] at once
        //     DataCr with "\r\n" next, or a fresh size line "HEX\r\n" complete in the input:
        //         take it whole (fast path, the common case between chunks)
        //     else: one framing byte moves the state machine; Done => Done { consumed: pos }
        // input exhausted with no data: NeedMore
        // The fast paths only take what the byte steps would accept and end in the same state;
        // anything else (extensions, a line cut by the read, errors) goes byte by byte.
        // Measured (benches/http.rs, 2026-11-22, shared 2-core box): 64 KiB in 16-byte chunks
        // went from 506 µs (byte steps only; slower than the 330 µs byte-wise baseline) to
        // 111 µs; 1 MiB in 4 KiB chunks from 38 µs to 9 µs.
        // `matches!`, not `==`: the derived comparison of the whole state costs more, and this
        // runs per read of a chunked upstream.
        if matches!(self.state, ChunkState::Done) {
            return Ok(Decoded::Done { consumed: 0 });
        }
        let mut pos = 0;
        while pos < input.len() {
            match self.state {
                ChunkState::Data { remaining } => {
                    debug_assert!(remaining > 0, "Data state holds at least one byte");
                    let available = (input.len() - pos) as u64;
                    let take = remaining.min(available);
                    let left = remaining - take;
                    self.state = if left == 0 {
                        ChunkState::DataCr
                    } else {
                        ChunkState::Data { remaining: left }
                    };
                    // take <= available, which came from a usize.
                    let end = pos + take as usize;
                    return Ok(Decoded::Data { start: pos, end });
                }
                ChunkState::DataCr if input[pos..].starts_with(b"\r\n") => {
                    pos += 2;
                    self.state = ChunkState::Size { size: 0, digits: 0 };
                    continue;
                }
                ChunkState::Size { digits: 0, .. } => {
                    if let Some((size, used)) = plain_size_line(&input[pos..]) {
                        pos += used;
                        self.state = if size == 0 {
                            ChunkState::TrailerStart { trailer_bytes: 0 }
                        } else {
                            ChunkState::Data { remaining: size }
                        };
                        continue;
                    }
                }
                _ => {}
            }
            self.state = step(self.state, input[pos])?;
            pos += 1;
            if matches!(self.state, ChunkState::Done) {
                return Ok(Decoded::Done { consumed: pos });
            }
        }
        Ok(Decoded::NeedMore)
    }

    /// True once the final CRLF has been consumed.
    pub fn is_done(&self) -> bool {
        matches!(self.state, ChunkState::Done)
    }
}

/// The state after framing byte `b` (never called in `Data` or `Done`).
#[inline]
fn step(state: ChunkState, b: u8) -> Result<ChunkState, HttpError> {
    use ChunkState as S;
    let crlf = |after: &'static str| HttpError::ChunkMissingCrlf { after, byte: b };
    Ok(match state {
        S::Size { size, digits } => match hex_value(b) {
            Some(v) => {
                let digits = digits + 1;
                if digits > MAX_CHUNK_SIZE_DIGITS {
                    return Err(HttpError::ChunkSizeTooLong { digits });
                }
                // Cannot overflow with 16 digits; checked anyway.
                let size = size
                    .checked_mul(16)
                    .and_then(|s| s.checked_add(u64::from(v)))
                    .ok_or(HttpError::ChunkSizeTooLong { digits })?;
                S::Size { size, digits }
            }
            None if digits == 0 => return Err(HttpError::InvalidChunkSize { byte: b }),
            None => match b {
                b'\r' => S::SizeLf { size },
                b'\n' => return Err(crlf("chunk size")),
                b' ' | b'\t' => S::Extension {
                    size,
                    ext_bytes: 1,
                    at: ExtAt::AfterSize,
                },
                b';' => S::Extension {
                    size,
                    ext_bytes: 1,
                    at: ExtAt::BeforeName,
                },
                _ => return Err(HttpError::InvalidChunkSize { byte: b }),
            },
        },
        S::Extension {
            size,
            ext_bytes,
            at,
        } => {
            if b == b'\r' && at.may_end() {
                S::SizeLf { size }
            } else if b == b'\n' {
                return Err(crlf("chunk extension"));
            } else {
                let ext_bytes = ext_bytes + 1;
                if ext_bytes > MAX_CHUNK_EXT_BYTES {
                    return Err(HttpError::ChunkExtensionTooLong {
                        limit: MAX_CHUNK_EXT_BYTES,
                    });
                }
                let at = at
                    .step(b)
                    .ok_or(HttpError::InvalidChunkExtension { byte: b })?;
                S::Extension {
                    size,
                    ext_bytes,
                    at,
                }
            }
        }
        S::SizeLf { size } => match b {
            b'\n' if size == 0 => S::TrailerStart { trailer_bytes: 0 },
            b'\n' => S::Data { remaining: size },
            _ => return Err(crlf("chunk size line")),
        },
        S::DataCr => match b {
            b'\r' => S::DataLf,
            _ => return Err(crlf("chunk data")),
        },
        S::DataLf => match b {
            b'\n' => S::Size { size: 0, digits: 0 },
            _ => return Err(crlf("chunk data")),
        },
        S::TrailerStart { trailer_bytes } => match b {
            b'\r' => S::EndLf,
            b if is_tchar(b) => S::TrailerName {
                trailer_bytes: count_trailer(trailer_bytes)?,
            },
            b'\n' => return Err(crlf("last chunk")),
            _ => return Err(HttpError::InvalidTrailer { byte: b }),
        },
        S::TrailerName { trailer_bytes } => {
            let trailer_bytes = count_trailer(trailer_bytes)?;
            match b {
                b':' => S::TrailerValue { trailer_bytes },
                b if is_tchar(b) => S::TrailerName { trailer_bytes },
                _ => return Err(HttpError::InvalidTrailer { byte: b }),
            }
        }
        S::TrailerValue { trailer_bytes } => {
            let trailer_bytes = count_trailer(trailer_bytes)?;
            match b {
                b'\r' => S::TrailerLf { trailer_bytes },
                b'\n' => return Err(crlf("trailer field")),
                b if is_field_content(b) => S::TrailerValue { trailer_bytes },
                _ => return Err(HttpError::InvalidTrailer { byte: b }),
            }
        }
        S::TrailerLf { trailer_bytes } => match b {
            b'\n' => S::TrailerStart {
                trailer_bytes: count_trailer(trailer_bytes)?,
            },
            _ => return Err(crlf("trailer field")),
        },
        S::EndLf => match b {
            b'\n' => S::Done,
            _ => return Err(crlf("trailer section")),
        },
        // decode() hands out data itself and never steps once done.
        S::Data { .. } | S::Done => state,
    })
}

/// A whole size line without extensions, `1*16HEXDIG CRLF`, at the front of `input`: its size
/// and length. None for anything else, which the byte steps then handle (or refuse).
#[inline]
fn plain_size_line(input: &[u8]) -> Option<(u64, usize)> {
    let mut size: u64 = 0;
    for (i, &b) in input.iter().enumerate().take(MAX_CHUNK_SIZE_DIGITS + 1) {
        match hex_value(b) {
            // At most 16 digits reach here, so the shift never loses bits.
            Some(v) if i < MAX_CHUNK_SIZE_DIGITS => size = (size << 4) | u64::from(v),
            None if i > 0 && input.get(i..i + 2) == Some(b"\r\n") => return Some((size, i + 2)),
            _ => return None,
        }
    }
    None
}

/// One more trailer byte, within [`MAX_TRAILER_BYTES`].
fn count_trailer(trailer_bytes: usize) -> Result<usize, HttpError> {
    let n = trailer_bytes + 1;
    if n > MAX_TRAILER_BYTES {
        return Err(HttpError::TrailersTooLarge {
            limit: MAX_TRAILER_BYTES,
        });
    }
    Ok(n)
}

/// HEXDIG (RFC 5234, case-insensitive as all ABNF strings).
fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}
