//! The events and the chunks they travel in. Pure code.
//!
//! The wire format is `sse-upstream`'s (perf/README.md, "SSE"), byte for byte, so `sse-load`
//! checks these events the same way (ids 1, 2, 3 ... across reconnections, `id` = `seq`,
//! latency from `ts_us`); `perf/tests/sse_tokio.rs` compares the two origins' bodies.
//!
//! Event k (LF, `ids=1`, `ts=1`; `ts_us` is always 16 digits, so an event's length depends only
//! on its id):
//! ```text
//! id: 7\n
//! data: {"seq":7,"ts_us":1712345678901234,"pad":"xxxxxxxx"}\n
//! \n
//! ```

use crate::params::{Eol, SseParams};

/// Digits of `ts_us` (unix microseconds stay 16 digits until the year 2286).
const TS_DIGITS: usize = 16;

/// Room kept before a chunk's payload for its size line: 16 hex digits and CRLF.
const CHUNK_PREFIX: usize = 18;

/// Formats the events of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventFormat {
    /// Line terminator.
    pub eol: Eol,
    /// Emit `id:` lines.
    pub ids: bool,
    /// Put `ts_us` in the data.
    pub ts: bool,
    /// Target length of the JSON payload; padded with `x` up to it when it leaves room.
    pub size: usize,
}

impl EventFormat {
    /// The format a request asked for.
    pub fn from_params(p: &SseParams) -> Self {
        Self {
            eol: p.eol,
            ids: p.ids,
            ts: p.ts,
            size: p.size,
        }
    }

    /// Appends event `seq`, sent at `ts_us`, blank line included.
    pub fn event(&self, out: &mut Vec<u8>, seq: u64, ts_us: u64) {
        const PAD_OPEN: &[u8] = b",\"pad\":\"";
        const PAD_CLOSE: &[u8] = b"\"}";
        let eol = self.eol.bytes();
        if self.ids {
            out.extend_from_slice(b"id: ");
            push_decimal(out, seq);
            out.extend_from_slice(eol);
        }
        out.extend_from_slice(b"data: ");
        let json_start = out.len();
        out.extend_from_slice(b"{\"seq\":");
        push_decimal(out, seq);
        if self.ts {
            out.extend_from_slice(b",\"ts_us\":");
            push_ts(out, ts_us);
        }
        // `,"pad":"` + x* + `"}` when the target leaves room for it, else just `}`.
        let base = out.len() - json_start;
        if self.size >= base + PAD_OPEN.len() + PAD_CLOSE.len() {
            let pad = self.size - base - PAD_OPEN.len() - PAD_CLOSE.len();
            out.extend_from_slice(PAD_OPEN);
            out.resize(out.len() + pad, b'x');
            out.extend_from_slice(PAD_CLOSE);
        } else {
            out.push(b'}');
        }
        out.extend_from_slice(eol);
        out.extend_from_slice(eol);
    }
}

/// Appends `v` in decimal.
fn push_decimal(out: &mut Vec<u8>, v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut rest = v;
    loop {
        i -= 1;
        digits[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends `v` as exactly [`TS_DIGITS`] digits, zero-padded (clamped to all nines).
fn push_ts(out: &mut Vec<u8>, v: u64) {
    let mut rest = v.min(10u64.pow(TS_DIGITS as u32) - 1);
    let mut digits = [b'0'; TS_DIGITS];
    for d in digits.iter_mut().rev() {
        *d = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(&digits);
}

/// The bytes of one `write()`: a payload, framed as one chunk when the body is chunked.
///
/// The size line goes into room reserved before the payload, so events are formatted straight
/// into the buffer that is written: [`Chunk::begin`], append to [`Chunk::payload`], then
/// write [`Chunk::finish`]'s bytes.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Reserved prefix (chunked only), payload, then the chunk's CRLF.
    buf: Vec<u8>,
    /// Frame the payload as a chunk (HTTP/1.1); else raw (an HTTP/1.0 close-delimited body).
    chunked: bool,
}

impl Chunk {
    /// An empty buffer.
    pub fn new(chunked: bool) -> Self {
        Self {
            buf: Vec::new(),
            chunked,
        }
    }

    /// Starts a new write.
    pub fn begin(&mut self) {
        self.buf.clear();
        if self.chunked {
            self.buf.resize(CHUNK_PREFIX, 0);
        }
    }

    /// The payload being built: append to it.
    pub fn payload(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Payload bytes so far.
    pub fn payload_len(&self) -> usize {
        self.buf.len() - if self.chunked { CHUNK_PREFIX } else { 0 }
    }

    /// Frames the payload (a non-empty one; the size line is written right-aligned into the
    /// reserved prefix) and returns the bytes to write.
    pub fn finish(&mut self) -> &[u8] {
        if !self.chunked {
            return &self.buf;
        }
        let len = self.payload_len();
        debug_assert!(len > 0, "an empty chunk would end the body");
        let mut line = [0u8; CHUNK_PREFIX];
        let hex_digits = ((64 - (len as u64).leading_zeros()) as usize).div_ceil(4);
        for (i, d) in line[..hex_digits].iter_mut().enumerate() {
            let nibble = (len >> (4 * (hex_digits - 1 - i))) & 0xf;
            *d = b"0123456789abcdef"[nibble];
        }
        line[hex_digits..hex_digits + 2].copy_from_slice(b"\r\n");
        let start = CHUNK_PREFIX - hex_digits - 2;
        self.buf[start..CHUNK_PREFIX].copy_from_slice(&line[..hex_digits + 2]);
        self.buf.extend_from_slice(b"\r\n");
        &self.buf[start..]
    }
}

/// The last-chunk that ends a chunked body (no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_in_every_shape() {
        let f = EventFormat {
            eol: Eol::Lf,
            ids: true,
            ts: true,
            size: 0,
        };
        let mut out = Vec::new();
        f.event(&mut out, 7, 1_712_345_678_901_234);
        assert_eq!(
            out,
            b"id: 7\ndata: {\"seq\":7,\"ts_us\":1712345678901234}\n\n"
        );
        out.clear();
        EventFormat {
            eol: Eol::CrLf,
            ..f
        }
        .event(&mut out, 12, 5);
        assert_eq!(
            out,
            b"id: 12\r\ndata: {\"seq\":12,\"ts_us\":0000000000000005}\r\n\r\n"
        );
        out.clear();
        let small = EventFormat {
            eol: Eol::Cr,
            ids: false,
            ts: false,
            size: 30,
        };
        small.event(&mut out, 3, 99);
        assert_eq!(out, b"data: {\"seq\":3,\"pad\":\"xxxxxxxxxxxx\"}\r\r");
    }

    #[test]
    fn padded_payload_has_the_asked_size() {
        for size in [48usize, 80, 100, 4096] {
            let f = EventFormat {
                eol: Eol::Lf,
                ids: true,
                ts: true,
                size,
            };
            for seq in [1u64, 9, 10, 123_456] {
                let mut out = Vec::new();
                f.event(&mut out, seq, 1_700_000_000_000_000);
                let text = std::str::from_utf8(&out).unwrap();
                let data = text.split('\n').nth(1).unwrap();
                assert_eq!(data.strip_prefix("data: ").unwrap().len(), size);
                assert!(text.starts_with(&format!("id: {seq}\n")));
            }
        }
    }

    #[test]
    fn chunk_framing() {
        let mut c = Chunk::new(true);
        c.begin();
        c.payload().extend_from_slice(b"hello");
        assert_eq!(c.finish(), b"5\r\nhello\r\n");
        for len in [1usize, 15, 16, 255, 256, 0x4000, 0x12345] {
            c.begin();
            c.payload().resize(CHUNK_PREFIX + len, b'a');
            let bytes = c.finish().to_vec();
            let expect = format!("{len:x}\r\n");
            assert!(bytes.starts_with(expect.as_bytes()), "{len}");
            assert_eq!(bytes.len(), expect.len() + len + 2);
            assert!(bytes.ends_with(b"a\r\n"));
        }
        let mut raw = Chunk::new(false);
        raw.begin();
        raw.payload().extend_from_slice(b"raw");
        assert_eq!(raw.payload_len(), 3);
        assert_eq!(raw.finish(), b"raw");
    }
}
