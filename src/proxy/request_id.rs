//! Request ids: the `X-Request-Id` each request carries upstream, back to its client (every
//! response, tether's own errors and SSE stream heads included), into the access log and into
//! tether's log lines about it.
//!
//! A client's id is kept when it is 1..=MAX_REQUEST_ID_BYTES visible ASCII characters (what a
//! header value can carry without quoting surprises in logs); otherwise one is made:
//!
//! ```text
//! <process prefix: 8 hex digits, random per process> - <worker index> - <per-worker counter, hex>
//! e.g. 5f3a09c1-0-1a2f
//! ```
//!
//! Unique within the process without a lock or an atomic (each worker counts on its own), and
//! across restarts with high probability (the prefix is drawn once at start). Making one is a few
//! byte stores into an inline buffer: no syscall, no allocation per request.

use std::cell::Cell;
use std::fmt;
use std::sync::OnceLock;

use bytes::Bytes;

use crate::http::RequestHead;

/// Longest client `X-Request-Id` kept, in bytes; a longer one is replaced by a made one.
pub(crate) const MAX_REQUEST_ID_BYTES: usize = 128;

/// Room for a made id: 8 prefix digits, two dashes, a worker index (a u32: up to 10 digits) and
/// a 64-bit counter in hex (16 digits). 36 bytes keep `RequestId` at 40 (a `Bytes` and a tag
/// beside it), and with it every SSE stream's row in the 112-byte size class
/// (`sse::active::size_tests`).
const MADE_ID_BYTES: usize = 8 + 1 + 10 + 1 + 16;

/// One request's id.
#[derive(Clone)]
pub(crate) struct RequestId(Repr);

#[derive(Clone)]
enum Repr {
    /// The client's own, a slice of its request head (no copy).
    Kept(Bytes),
    /// Made by tether, inline.
    Made { len: u8, text: [u8; MADE_ID_BYTES] },
}

impl RequestId {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Kept(b) => b,
            Repr::Made { len, text } => &text[..usize::from(*len)],
        }
    }

    /// The id as text (always ASCII: kept ids are checked, made ones are digits and dashes).
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("-")
    }

    /// The same id holding no part of the connection's read buffer (for a stream or tunnel that
    /// outlives the request).
    pub(crate) fn detached(&self) -> RequestId {
        match &self.0 {
            Repr::Kept(b) => RequestId(Repr::Kept(Bytes::copy_from_slice(b))),
            made @ Repr::Made { .. } => RequestId(made.clone()),
        }
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({})", self.as_str())
    }
}

/// True for a client id tether keeps: 1..=MAX_REQUEST_ID_BYTES bytes, each visible ASCII
/// (0x21..=0x7E: no space, no control, nothing a log line or JSON string would mangle unseen).
pub(crate) fn is_acceptable(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_BYTES).contains(&id.len()) && id.iter().all(|b| (0x21..=0x7e).contains(b))
}

/// A worker's id maker.
#[derive(Debug)]
pub(crate) struct RequestIds {
    /// "<prefix>-<worker>-", written once.
    stem: Box<[u8]>,
    /// The next counter value (this worker's only; a `Cell`, never shared).
    next: Cell<u64>,
}

impl RequestIds {
    pub(crate) fn new(worker: usize) -> RequestIds {
        let worker = u32::try_from(worker).expect("fewer than 2^32 workers");
        let stem = format!("{:08x}-{worker}-", process_prefix());
        debug_assert!(stem.len() + 16 <= MADE_ID_BYTES);
        RequestIds {
            stem: stem.into_bytes().into_boxed_slice(),
            next: Cell::new(1),
        }
    }

    /// The request's id: its client's `X-Request-Id` (the first, when acceptable), else a new one.
    pub(crate) fn of(&self, head: &RequestHead) -> RequestId {
        match head.header("x-request-id") {
            Some(id) if is_acceptable(id) => RequestId(Repr::Kept(head.bytes.slice_ref(id))),
            _ => self.make(),
        }
    }

    /// A new id: the stem and the counter in hex, without leading zeros.
    pub(crate) fn make(&self) -> RequestId {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = self.next.get();
        self.next.set(n.wrapping_add(1));
        let mut text = [0u8; MADE_ID_BYTES];
        let stem = self.stem.len();
        text[..stem].copy_from_slice(&self.stem);
        let digits = (64 - (n | 1).leading_zeros()).div_ceil(4) as usize;
        for i in 0..digits {
            let nibble = (n >> (4 * (digits - 1 - i))) & 0xf;
            text[stem + i] = HEX[nibble as usize];
        }
        RequestId(Repr::Made {
            len: (stem + digits) as u8,
            text,
        })
    }
}

/// 32 random bits drawn once per process (getrandom; the clock and pid if it fails).
fn process_prefix() -> u32 {
    static PREFIX: OnceLock<u32> = OnceLock::new();
    *PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 4];
        // SAFETY: getrandom writes at most `bytes.len()` bytes into `bytes`.
        let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
        if n == bytes.len() as isize {
            return u32::from_ne_bytes(bytes);
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        (nanos ^ (u64::from(std::process::id()) << 32) ^ (nanos >> 32)) as u32
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HeadLimits;

    fn head(extra: &str) -> RequestHead {
        let raw = format!("GET / HTTP/1.1\r\nHost: h\r\n{extra}\r\n");
        RequestHead::parse(Bytes::from(raw), &HeadLimits::default()).unwrap()
    }

    #[test]
    fn made_ids_are_distinct_and_shaped() {
        let ids = RequestIds::new(3);
        let a = ids.make();
        let b = ids.make();
        assert_ne!(a.as_bytes(), b.as_bytes());
        let text = a.as_str();
        let parts: Vec<&str> = text.split('-').collect();
        assert_eq!(parts.len(), 3, "{text}");
        assert_eq!(parts[0].len(), 8);
        assert_eq!(parts[1], "3");
        assert_eq!(parts[2], "1");
        assert_eq!(b.as_str().rsplit('-').next(), Some("2"));
        ids.next.set(u64::MAX);
        let last = ids.make();
        assert!(last.as_str().ends_with("-ffffffffffffffff"), "{last}");
        assert!(is_acceptable(last.as_bytes()));
        assert_eq!(ids.make().as_str().rsplit('-').next(), Some("0"));
    }

    #[test]
    fn a_client_id_is_kept_only_when_acceptable() {
        let ids = RequestIds::new(0);
        assert_eq!(
            ids.of(&head("X-Request-Id: abc-123\r\n")).as_str(),
            "abc-123"
        );
        let long = "a".repeat(MAX_REQUEST_ID_BYTES);
        assert_eq!(
            ids.of(&head(&format!("x-request-id: {long}\r\n"))).as_str(),
            long
        );
        let too_long = "a".repeat(MAX_REQUEST_ID_BYTES + 1);
        for bad in [
            format!("X-Request-Id: {too_long}\r\n"),
            "X-Request-Id: two words\r\n".to_string(),
            "X-Request-Id: caf\u{e9}\r\n".to_string(),
            "X-Request-Id:\r\n".to_string(),
            String::new(),
        ] {
            let id = ids.of(&head(&bad));
            assert!(
                id.as_str().contains('-') && id.as_str().len() < 40,
                "{bad:?} -> {id}"
            );
            assert!(is_acceptable(id.as_bytes()));
        }
    }
}
