//! The SSE wire format: the response head, the event formatter and the output buffer of one
//! stream write. Pure code, shared by both origins (`sse-tokio` too), so their bytes are the
//! same for the same query; which event goes out when is `schedule.rs`, the IO `stream.rs`.
//!
//! Wire format of event k (LF example, `ids=1`, `ts=1`):
//! ```text
//! id: 7\n
//! data: {"seq":7,"ts_us":1712345678901234,"pad":"xxxxxxxx"}\n
//! \n
//! ```
//! `ts_us` is always 16 digits (unix microseconds, zero-padded), so an event's length depends
//! only on its id: `framing=length` computes the body length up front.

use super::http::{push_u64, write_head};
use super::query::{Eol, SseParams};

pub use super::http::ResponseBody;

/// Most event bytes coalesced into one write when events are already due (`rate=0`, or a
/// rate stream that fell behind). A write may overshoot by one event.
pub const BATCH_BYTES: usize = 16 * 1024;

/// Room kept before a write's payload for the chunk-size line: 16 hex digits and CRLF.
const CHUNK_PREFIX: usize = 18;

/// The UTF-8 byte order mark `bom=1` sends first.
pub(crate) const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Digits of `ts_us` (unix microseconds stay 16 digits until the year 2286).
const TS_DIGITS: usize = 16;

/// Appends the head of an SSE response: 200, `text/event-stream`, `no-cache`, framed as `body`
/// (`Connection: close` when `close` or `UntilClose`).
pub fn response_head(out: &mut Vec<u8>, body: ResponseBody, close: bool) {
    write_head(
        out,
        200,
        Some("text/event-stream"),
        body,
        close,
        &[("Cache-Control", "no-cache")],
    );
}

/// Unix time in microseconds: the events' `ts_us`.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Formats events of one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventFormat {
    /// Line terminator.
    pub eol: Eol,
    /// Emit `id:` lines.
    pub ids: bool,
    /// Put `ts_us` in the data.
    pub ts: bool,
    /// Target length of the data payload (the JSON object); padded with `x` up to it.
    pub size: usize,
}

impl EventFormat {
    /// The format an SSE request asked for.
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
        let eol = self.eol.bytes();
        if self.ids {
            out.extend_from_slice(b"id: ");
            push_u64(out, seq);
            out.extend_from_slice(eol);
        }
        out.extend_from_slice(b"data: ");
        let json_start = out.len();
        out.extend_from_slice(b"{\"seq\":");
        push_u64(out, seq);
        if self.ts {
            out.extend_from_slice(b",\"ts_us\":");
            push_ts(out, ts_us);
        }
        // `,"pad":"` + x* + `"}` when the target leaves room for it, else just `}`.
        const PAD_OPEN: &[u8] = b",\"pad\":\"";
        const PAD_CLOSE: &[u8] = b"\"}";
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

    /// Length of event `seq` on the wire (independent of its timestamp).
    pub fn event_len(&self, seq: u64) -> usize {
        let mut scratch = Vec::with_capacity(self.size + 64);
        self.event(&mut scratch, seq, 0);
        scratch.len()
    }

    /// Appends a heartbeat: a `: hb` comment line and a blank line (a complete block that
    /// dispatches nothing).
    pub fn heartbeat(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b": hb");
        out.extend_from_slice(self.eol.bytes());
        out.extend_from_slice(self.eol.bytes());
    }
}

/// Appends what a stream sends before its first event: the BOM, a `retry:` block and the
/// priming block (`id: <start-1>` and an empty `data:` line, as MCP servers send; on a
/// resumed stream the id repeats the resume point so the client's cursor does not move back).
pub(crate) fn prelude(out: &mut Vec<u8>, p: &SseParams, start: u64) {
    let eol = p.eol.bytes();
    if p.bom {
        out.extend_from_slice(BOM);
    }
    if let Some(retry) = p.retry {
        out.extend_from_slice(b"retry: ");
        push_u64(out, retry);
        out.extend_from_slice(eol);
        out.extend_from_slice(eol);
    }
    if p.prime {
        out.extend_from_slice(b"id: ");
        push_u64(out, start.saturating_sub(1));
        out.extend_from_slice(eol);
        out.extend_from_slice(b"data:");
        out.extend_from_slice(eol);
        out.extend_from_slice(eol);
    }
}

/// Appends `v` as exactly [`TS_DIGITS`] decimal digits (zero-padded; larger values are
/// clamped to all nines, which cannot happen before 2286).
fn push_ts(out: &mut Vec<u8>, v: u64) {
    let v = v.min(10u64.pow(TS_DIGITS as u32) - 1);
    let mut digits = [b'0'; TS_DIGITS];
    let mut rest = v;
    for d in digits.iter_mut().rev() {
        *d = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(&digits);
}

/// Byte range of the first half of an event written by `mid_event=1` (at least one byte,
/// never the whole event).
pub(crate) fn first_half(event: &[u8]) -> &[u8] {
    &event[..(event.len() / 2).max(1).min(event.len().saturating_sub(1))]
}

/// The bytes of one write: a payload, wrapped in one chunk when the body is chunked.
///
/// The chunk-size line is written into room reserved before the payload, so events are
/// formatted straight into the buffer that goes to the socket: `begin`, append to
/// `payload()`, then `finish` and write `bytes()[start..]`.
#[derive(Debug)]
pub struct WriteBuf {
    /// Reserved prefix (chunked only), payload, then chunk CRLF and maybe the last-chunk.
    buf: Vec<u8>,
    /// Wrap every write in a chunk.
    chunked: bool,
}

impl WriteBuf {
    /// An empty buffer (allocates on first use).
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

    /// The payload being built; append to it.
    pub fn payload(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Payload bytes so far.
    pub fn payload_len(&self) -> usize {
        self.buf.len() - if self.chunked { CHUNK_PREFIX } else { 0 }
    }

    /// Closes the write: frames the payload as a chunk (an empty payload adds no chunk) and,
    /// when `last`, appends the last-chunk `0\r\n\r\n` (chunked only). Returns the offset where
    /// the bytes to send start.
    pub fn finish(&mut self, last: bool) -> usize {
        if !self.chunked {
            return 0;
        }
        let payload = self.payload_len();
        let mut start = CHUNK_PREFIX;
        if payload > 0 {
            let mut line = Vec::with_capacity(CHUNK_PREFIX);
            super::http::push_hex(&mut line, payload as u64);
            line.extend_from_slice(b"\r\n");
            start = CHUNK_PREFIX - line.len();
            self.buf[start..CHUNK_PREFIX].copy_from_slice(&line);
            self.buf.extend_from_slice(b"\r\n");
        }
        if last {
            self.buf.extend_from_slice(b"0\r\n\r\n");
        }
        start
    }

    /// [`WriteBuf::finish`], then the bytes to send, borrowed (for writers that take a slice;
    /// monoio's take the buffer with [`WriteBuf::take`]).
    pub fn finish_bytes(&mut self, last: bool) -> &[u8] {
        let start = self.finish(last);
        &self.buf[start..]
    }

    /// Takes the buffer out for writing (give it back with [`WriteBuf::restore`]).
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Puts the buffer back after a write, keeping its allocation.
    pub fn restore(&mut self, buf: Vec<u8>) {
        self.buf = buf;
    }

    /// Releases the allocation (idle streams keep no buffer).
    pub fn release(&mut self) {
        self.buf = Vec::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(eol: Eol) -> EventFormat {
        EventFormat {
            eol,
            ids: true,
            ts: true,
            size: 0,
        }
    }

    #[test]
    fn event_lf_crlf_cr() {
        let mut out = Vec::new();
        fmt(Eol::Lf).event(&mut out, 7, 1_712_345_678_901_234);
        assert_eq!(
            out,
            b"id: 7\ndata: {\"seq\":7,\"ts_us\":1712345678901234}\n\n".to_vec()
        );
        out.clear();
        fmt(Eol::CrLf).event(&mut out, 7, 5);
        assert_eq!(
            out,
            b"id: 7\r\ndata: {\"seq\":7,\"ts_us\":0000000000000005}\r\n\r\n".to_vec()
        );
        out.clear();
        fmt(Eol::Cr).event(&mut out, 12, 5);
        assert_eq!(
            out,
            b"id: 12\rdata: {\"seq\":12,\"ts_us\":0000000000000005}\r\r".to_vec()
        );
    }

    #[test]
    fn event_without_ids_or_ts_and_padding() {
        let f = EventFormat {
            eol: Eol::Lf,
            ids: false,
            ts: false,
            size: 30,
        };
        let mut out = Vec::new();
        f.event(&mut out, 3, 99);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "data: {\"seq\":3,\"pad\":\"xxxxxxxxxxxx\"}\n\n");
        let json = text.trim_start_matches("data: ").trim_end();
        assert_eq!(json.len(), 30);
        // A size below the minimal JSON gives the minimal JSON.
        let small = EventFormat { size: 3, ..f };
        let mut out = Vec::new();
        small.event(&mut out, 3, 99);
        assert_eq!(out, b"data: {\"seq\":3}\n\n");
    }

    #[test]
    fn event_payload_size_is_exact_when_padded() {
        for size in [48usize, 100, 1000, 4096] {
            let f = EventFormat {
                eol: Eol::CrLf,
                ids: true,
                ts: true,
                size,
            };
            for seq in [1u64, 9, 10, 123_456] {
                let mut out = Vec::new();
                f.event(&mut out, seq, 1_700_000_000_000_000);
                let text = std::str::from_utf8(&out).unwrap();
                let data = text.split("\r\n").nth(1).unwrap();
                assert_eq!(data.strip_prefix("data: ").unwrap().len(), size);
                assert_eq!(out.len(), f.event_len(seq));
            }
        }
    }

    #[test]
    fn event_len_ignores_timestamp() {
        let f = fmt(Eol::Lf);
        let mut a = Vec::new();
        let mut b = Vec::new();
        f.event(&mut a, 5, 1);
        f.event(&mut b, 5, 1_999_999_999_999_999);
        assert_eq!(a.len(), b.len());
        assert_eq!(a.len(), f.event_len(5));
    }

    #[test]
    fn prelude_variants() {
        let mut p = SseParams::parse("bom=1&retry=1500&prime=1&eol=crlf").unwrap();
        let mut out = Vec::new();
        prelude(&mut out, &p, 1);
        assert_eq!(
            out,
            b"\xEF\xBB\xBFretry: 1500\r\n\r\nid: 0\r\ndata:\r\n\r\n".to_vec()
        );
        out.clear();
        p.bom = false;
        p.retry = None;
        p.eol = Eol::Cr;
        prelude(&mut out, &p, 8);
        assert_eq!(out, b"id: 7\rdata:\r\r".to_vec());
        out.clear();
        prelude(&mut out, &SseParams::default(), 1);
        assert!(out.is_empty());
    }

    #[test]
    fn heartbeats() {
        let mut out = Vec::new();
        fmt(Eol::CrLf).heartbeat(&mut out);
        assert_eq!(out, b": hb\r\n\r\n");
    }

    #[test]
    fn mid_event_half_never_completes_the_event() {
        for eol in [Eol::Lf, Eol::CrLf, Eol::Cr] {
            let mut out = Vec::new();
            fmt(eol).event(&mut out, 41, 1_700_000_000_000_000);
            let half = first_half(&out);
            assert!(!half.is_empty() && half.len() < out.len());
            assert_eq!(half.len(), out.len() / 2);
            // The half holds no blank line: no SSE parser can dispatch it.
            let e = eol.bytes();
            let blank: Vec<u8> = [e, e].concat();
            assert!(!half.windows(blank.len()).any(|w| w == blank.as_slice()));
        }
        assert_eq!(first_half(b"ab"), b"a");
        assert_eq!(first_half(b"abc"), b"a");
    }

    #[test]
    fn write_buf_framing() {
        let mut w = WriteBuf::new(true);
        w.begin();
        w.payload().extend_from_slice(b"hello");
        let start = w.finish(false);
        assert_eq!(&w.take()[start..], b"5\r\nhello\r\n");

        let mut w = WriteBuf::new(true);
        w.begin();
        w.payload().resize(0x4000 + CHUNK_PREFIX, b'a');
        let start = w.finish(true);
        let bytes = w.take();
        assert!(bytes[start..].starts_with(b"4000\r\naaaa"));
        assert!(bytes.ends_with(b"aa\r\n0\r\n\r\n"));

        let mut w = WriteBuf::new(true);
        w.begin();
        let start = w.finish(true);
        assert_eq!(&w.take()[start..], b"0\r\n\r\n");

        let mut w = WriteBuf::new(false);
        w.begin();
        w.payload().extend_from_slice(b"raw");
        assert_eq!(w.payload_len(), 3);
        let start = w.finish(true);
        assert_eq!(&w.take()[start..], b"raw");
    }
}
