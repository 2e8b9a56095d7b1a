//! Incremental SSE parsing, reduced to what the load generator measures.
//!
//! Follows the WHATWG rules (`/work/shared/notes/sse.md`) for line ends (LF, CRLF, lone CR,
//! also split across inputs), the BOM, comments, `name: value` splitting and dispatch, but
//! keeps only three fields: `id` (the Last-Event-ID cursor, committed at every dispatch),
//! `retry` (the reconnection delay) and `data`, from which `seq` and `ts_us` are scanned
//! without a JSON parser. `event` and unknown fields are ignored.
//!
//! Per input:
//! ```text
//! strip a BOM at stream offset 0 (also when split)
//! if the last input ended with CR and this one starts with LF: skip it (one CRLF)
//! loop: memchr2(CR, LF) for the next line end
//!   none  -> keep the tail in `partial` (only split lines are ever copied); done
//!   found -> process the line (from `partial` if it was split, else in place)
//!            CR at the very end of the input: remember it (`after_cr`)
//! ```
//! Bytes are scanned once: a long line arriving in pieces is appended, never rescanned.

use memchr::{memchr, memchr2};

/// Longest line (bytes, line end excluded) kept while it arrives in pieces. Past this the
/// stream fails with [`SseError::LineTooLong`]: a runaway line is a broken stream, not data.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// The UTF-8 byte order mark, stripped once at the start of a response body.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// An event that fired (a dispatched block whose data is not empty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Event {
    /// The block's own `id:` line as a decimal number (None: no id line, or not a number).
    pub id: Option<u64>,
    /// `"seq":N` from the data.
    pub seq: Option<u64>,
    /// `"ts_us":N` from the data: when the origin sent the event (unix microseconds).
    pub ts_us: Option<u64>,
    /// Data bytes (lines joined with LF, the trailing LF removed): 0 never fires.
    pub data_len: usize,
}

/// Why a stream cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SseError {
    /// A line grew past [`MAX_LINE_BYTES`] without a line end.
    LineTooLong,
}

impl std::fmt::Display for SseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SseError::LineTooLong => write!(f, "SSE line longer than {MAX_LINE_BYTES} bytes"),
        }
    }
}

/// Where the BOM check stands at the start of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bom {
    /// Still at offset 0 with `matched` BOM bytes consumed (0..=2).
    Checking { matched: u8 },
    /// Past it (stripped, or the body did not start with one).
    Done,
}

/// The block being collected (fields since the last dispatch).
#[derive(Debug, Clone, Default)]
struct Block {
    /// An `id:` line was seen (without NUL): the cursor moves at dispatch.
    has_id: bool,
    /// The value of the last `id:` line (bytes, reused between blocks).
    id_raw: Vec<u8>,
    /// `data:` lines seen.
    data_lines: usize,
    /// Sum of the data values' lengths.
    data_bytes: usize,
    /// `seq` scanned from the data.
    seq: Option<u64>,
    /// `ts_us` scanned from the data.
    ts_us: Option<u64>,
}

/// Fields that live across lines and (cursor, retry) across connections.
#[derive(Debug, Clone, Default)]
struct Fields {
    block: Block,
    /// The last event id, committed at dispatch: what `Last-Event-ID` sends.
    cursor: Vec<u8>,
    /// The last valid `retry:` (milliseconds).
    retry_ms: Option<u64>,
    /// Comment lines seen (a proxy's heartbeats are comments), over every body.
    comments: u64,
}

/// Incremental parser of one logical SSE stream.
///
/// Call [`SseParser::start_body`] at the start of every response body: it drops what is left
/// of the previous body (an unterminated block is never dispatched) but keeps the cursor and
/// the retry delay, as EventSource does across reconnections.
#[derive(Debug, Clone)]
pub struct SseParser {
    /// A line split across inputs, without its line end (empty otherwise).
    partial: Vec<u8>,
    /// The previous input ended with CR: a LF at the start of the next one is its other half.
    after_cr: bool,
    /// BOM stripping at offset 0.
    bom: Bom,
    /// Block, cursor and retry.
    fields: Fields,
}

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser at the start of a body, with an empty cursor.
    pub fn new() -> Self {
        Self {
            partial: Vec::new(),
            after_cr: false,
            bom: Bom::Checking { matched: 0 },
            fields: Fields::default(),
        }
    }

    /// Starts a new response body of the same logical stream.
    pub fn start_body(&mut self) {
        self.partial.clear();
        if self.partial.capacity() > 4096 {
            self.partial = Vec::new();
        }
        self.after_cr = false;
        self.bom = Bom::Checking { matched: 0 };
        let f = &mut self.fields;
        f.block.has_id = false;
        f.block.data_lines = 0;
        f.block.data_bytes = 0;
        f.block.seq = None;
        f.block.ts_us = None;
    }

    /// The last event id (empty: none, so no `Last-Event-ID` is sent).
    pub fn cursor(&self) -> &[u8] {
        &self.fields.cursor
    }

    /// The last valid `retry:` in milliseconds.
    pub fn retry_ms(&self) -> Option<u64> {
        self.fields.retry_ms
    }

    /// Comment lines (`:` first) seen so far, over every body of the stream.
    pub fn comments(&self) -> u64 {
        self.fields.comments
    }

    /// Parses the next piece of the body, calling `on_event` for every event that fires.
    pub fn feed(
        &mut self,
        mut input: &[u8],
        on_event: &mut impl FnMut(Event),
    ) -> Result<(), SseError> {
        while let Bom::Checking { matched } = self.bom {
            let Some((&b, rest)) = input.split_first() else {
                return Ok(());
            };
            if b == BOM[matched as usize] {
                input = rest;
                self.bom = if matched == 2 {
                    Bom::Done
                } else {
                    Bom::Checking {
                        matched: matched + 1,
                    }
                };
            } else {
                self.bom = Bom::Done;
                // The bytes that looked like a BOM start are content after all.
                self.lines(&BOM[..matched as usize], on_event)?;
            }
        }
        self.lines(input, on_event)
    }

    /// Splits `input` into lines (see the module doc).
    fn lines(&mut self, input: &[u8], on_event: &mut impl FnMut(Event)) -> Result<(), SseError> {
        let mut pos = 0;
        if self.after_cr && !input.is_empty() {
            self.after_cr = false;
            if input[0] == b'\n' {
                pos = 1;
            }
        }
        while pos < input.len() {
            let rest = &input[pos..];
            let Some(i) = memchr2(b'\r', b'\n', rest) else {
                if self.partial.len() + rest.len() > MAX_LINE_BYTES {
                    return Err(SseError::LineTooLong);
                }
                self.partial.extend_from_slice(rest);
                return Ok(());
            };
            if self.partial.is_empty() {
                self.fields.line(&rest[..i], on_event);
            } else {
                if self.partial.len() + i > MAX_LINE_BYTES {
                    return Err(SseError::LineTooLong);
                }
                self.partial.extend_from_slice(&rest[..i]);
                self.fields.line(&self.partial, on_event);
                self.partial.clear();
            }
            pos += i + 1;
            if rest[i] == b'\r' {
                match input.get(pos) {
                    Some(b'\n') => pos += 1,
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        Ok(())
    }
}

impl Fields {
    /// Processes one complete line (line end removed).
    #[inline]
    fn line(&mut self, line: &[u8], on_event: &mut impl FnMut(Event)) {
        if line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        // Split at the first colon; a line without one is a field with an empty value.
        let (name, value) = match memchr(b':', line) {
            Some(0) => {
                // A comment: counted (heartbeats), otherwise ignored.
                self.comments += 1;
                return;
            }
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => {
                let b = &mut self.block;
                b.data_lines += 1;
                b.data_bytes += value.len();
                if b.seq.is_none() || b.ts_us.is_none() {
                    let (seq, ts) = scan_data(value);
                    b.seq = b.seq.or(seq);
                    b.ts_us = b.ts_us.or(ts);
                }
            }
            // An id containing NUL is ignored entirely.
            b"id" if memchr(0, value).is_none() => {
                self.block.has_id = true;
                self.block.id_raw.clear();
                self.block.id_raw.extend_from_slice(value);
            }
            b"retry" => {
                if let Some(ms) = parse_digits(value) {
                    self.retry_ms = Some(ms);
                }
            }
            _ => {}
        }
    }

    /// An empty line: commit the cursor, fire the event if the data is not empty, reset.
    fn dispatch(&mut self, on_event: &mut impl FnMut(Event)) {
        let b = &mut self.block;
        if b.has_id {
            std::mem::swap(&mut self.cursor, &mut b.id_raw);
        }
        // Lines are joined with LF and one trailing LF is removed.
        let data_len = (b.data_bytes + b.data_lines).saturating_sub(1);
        if data_len > 0 {
            on_event(Event {
                id: if b.has_id {
                    parse_digits(&self.cursor)
                } else {
                    None
                },
                seq: b.seq,
                ts_us: b.ts_us,
                data_len,
            });
        }
        b.has_id = false;
        b.data_lines = 0;
        b.data_bytes = 0;
        b.seq = None;
        b.ts_us = None;
    }
}

/// An unsigned decimal of ASCII digits only (no sign, no spaces); None if empty, not all
/// digits or past `u64::MAX`.
pub fn parse_digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// The leading digits of `s` (after optional spaces) as a number; None without digits.
fn leading_number(s: &[u8]) -> Option<u64> {
    let s = &s[s.iter().take_while(|&&b| b == b' ').count()..];
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    parse_digits(&s[..n])
}

/// Finds `"seq":N` and `"ts_us":N` in a data value.
///
/// Fast path for the simulator's format, `{"seq":N,"ts_us":N,...`: two prefix checks.
/// Otherwise a substring search for each key (any JSON layout, keys in any order).
fn scan_data(value: &[u8]) -> (Option<u64>, Option<u64>) {
    const SEQ: &[u8] = b"{\"seq\":";
    const TS: &[u8] = b",\"ts_us\":";
    if let Some(rest) = value.strip_prefix(SEQ) {
        let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        let seq = parse_digits(&rest[..n]);
        if let Some(ts_rest) = rest[n..].strip_prefix(TS) {
            return (seq, leading_number(ts_rest));
        }
        if seq.is_some() {
            let ts = memchr::memmem::find(value, b"\"ts_us\":")
                .and_then(|i| leading_number(&value[i + 8..]));
            return (seq, ts);
        }
    }
    let seq =
        memchr::memmem::find(value, b"\"seq\":").and_then(|i| leading_number(&value[i + 6..]));
    let ts =
        memchr::memmem::find(value, b"\"ts_us\":").and_then(|i| leading_number(&value[i + 8..]));
    (seq, ts)
}

#[cfg(test)]
mod tests;
