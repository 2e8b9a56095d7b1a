//! `/sse` query parameters: the subset of `sse-upstream`'s (perf/README.md) that this origin
//! honours, with the same names, defaults and meanings, plus `burst=`.
//!
//! Values are parsed strictly and by hand (`str::parse` accepts `+5`): numbers are ASCII digits
//! only, booleans `1|0|true|false` (a bare `key` means true). Unknown keys are ignored (the bench
//! adds labels such as `s={i}`, `probe=`, `check=`), but a key of `sse-upstream` that this origin
//! does not implement is refused with 400, so that nobody measures a stream that silently lacks
//! what was asked. (The simulator's own parser is private to the library, whose code this
//! binary leaves alone; the few helpers below are the same rules.)

use std::fmt;
use std::time::Duration;

/// Default `events=`: the id of the logical stream's last event.
pub const DEFAULT_EVENTS: u64 = 10;
/// Default `size=`: length of each event's JSON payload (bytes), as in `sse-upstream`.
pub const DEFAULT_EVENT_SIZE: usize = 32;
/// Largest `size=` (bytes). Past this: 400.
pub const MAX_EVENT_SIZE: usize = 1024 * 1024;
/// Most event bytes one turn of a flat-out stream (`rate=0`, or a paced stream behind its
/// schedule) writes before it yields to the other streams; also the most bytes of one batched
/// write. A turn may overshoot by one event. The same 16 KiB as `sse-upstream`'s batches.
pub const TURN_BYTES: usize = 16 * 1024;

/// `sse-upstream` parameters this origin does not implement: 400 names them.
const UNSUPPORTED: &[&str] = &[
    "bom",
    "prime",
    "retry",
    "heartbeat_ms",
    "framing",
    "mid_event",
    "chaos",
    "chaos_kinds",
    "chaos_seed",
    "resume_status",
    "resume_status_times",
];

/// A query parameter that cannot be used; its text is the 400's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    /// The parameter's name.
    pub key: String,
    /// The value as received.
    pub value: String,
    /// What was expected instead.
    pub expected: &'static str,
}

impl fmt::Display for ParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "query parameter `{}={}`: expected {}",
            self.key, self.value, self.expected
        )
    }
}

fn err(key: &str, value: &str, expected: &'static str) -> ParamError {
    ParamError {
        key: key.to_string(),
        value: value.to_string(),
        expected,
    }
}

/// An unsigned decimal: ASCII digits only, no sign, no spaces, no overflow.
pub fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for b in s.bytes() {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// A non-negative decimal with an optional fraction of at most 9 digits: `10`, `0.5`.
fn parse_decimal(s: &str) -> Option<f64> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let mut v = parse_u64(int)? as f64;
    if let Some(frac) = frac {
        if frac.is_empty() || frac.len() > 9 {
            return None;
        }
        v += parse_u64(frac)? as f64 / 10f64.powi(frac.len() as i32);
    }
    Some(v)
}

fn u64_of(key: &str, value: &str) -> Result<u64, ParamError> {
    parse_u64(value).ok_or_else(|| err(key, value, "ASCII decimal digits"))
}

fn bool_of(key: &str, value: &str) -> Result<bool, ParamError> {
    match value {
        "1" | "true" | "" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(err(key, value, "1, 0, true or false")),
    }
}

/// Line terminator of SSE lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eol {
    /// `\n` (default).
    Lf,
    /// `\r\n`.
    CrLf,
    /// A lone `\r`.
    Cr,
}

impl Eol {
    /// The terminator's bytes.
    pub fn bytes(self) -> &'static [u8] {
        match self {
            Eol::Lf => b"\n",
            Eol::CrLf => b"\r\n",
            Eol::Cr => b"\r",
        }
    }
}

/// How the events of one turn go to the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// `batch=1`: every event its own `write()` (its own chunk), back to back: what a server
    /// that flushes each event as it is produced does.
    PerEvent,
    /// Default: every event of the turn in one `write()`, up to [`TURN_BYTES`].
    Batched,
}

/// What happens to a connection after `after` complete events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// `close_after=K`: FIN, no last-chunk (a dead upstream).
    Close,
    /// `reset_after=K`: RST (SO_LINGER 0, then close).
    Reset,
    /// `stall_after=K`: stop writing for `stall` (None: until the client leaves), then carry
    /// on at the stream's rate from then.
    Stall {
        /// `stall_ms=`.
        stall: Option<Duration>,
    },
}

/// A fault injected into one connection's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// What happens.
    pub kind: FaultKind,
    /// After how many complete events of this connection (0: right after the head).
    pub after: u64,
    /// `fault_once=1`: only requests without `Last-Event-ID`.
    pub once: bool,
}

/// The parameters of one `/sse` request.
#[derive(Debug, Clone, PartialEq)]
pub struct SseParams {
    /// `events=` / `end=` (wins): id of the last event of the logical stream; 0 = infinite.
    pub last: u64,
    /// `rate=`: events per second per stream; 0 = flat out.
    pub rate: f64,
    /// `batch=1`: one write per event; default batched.
    pub writes: Writes,
    /// `burst=N`: at most N events per turn (flat out or behind schedule); None: up to
    /// [`TURN_BYTES`] of events.
    pub burst: Option<u64>,
    /// `size=`: the JSON payload's length, padded to it when it leaves room.
    pub size: usize,
    /// `eol=lf|crlf|cr`.
    pub eol: Eol,
    /// `ids=1|0`: `id:` lines (default on).
    pub ids: bool,
    /// `ts=1|0`: send time in the data (default on).
    pub ts: bool,
    /// `resume=honour|ignore`: whether `Last-Event-ID: k` continues at k+1.
    pub honour_resume: bool,
    /// `start=K`: first id without an honoured `Last-Event-ID` (default 1).
    pub start: u64,
    /// `close_after` / `reset_after` / `stall_after`, with `stall_ms` and `fault_once`.
    pub fault: Option<Fault>,
}

impl Default for SseParams {
    fn default() -> Self {
        Self {
            last: DEFAULT_EVENTS,
            rate: 0.0,
            writes: Writes::Batched,
            burst: None,
            size: DEFAULT_EVENT_SIZE,
            eol: Eol::Lf,
            ids: true,
            ts: true,
            honour_resume: true,
            start: 1,
            fault: None,
        }
    }
}

impl SseParams {
    /// Reads the query string of an `/sse` request (without the `?`).
    pub fn parse(query: &str) -> Result<Self, ParamError> {
        let mut p = Self::default();
        let (mut events, mut end) = (None, None);
        let mut fault: Option<(FaultKind, u64)> = None;
        let mut stall = None;
        let mut once = false;
        let pairs = query
            .split('&')
            .filter(|kv| !kv.is_empty())
            .map(|kv| kv.split_once('=').unwrap_or((kv, "")));
        for (k, v) in pairs {
            let mut set_fault = |kind| {
                if fault.is_some() {
                    return Err(err(
                        k,
                        v,
                        "only one of close_after, reset_after, stall_after",
                    ));
                }
                fault = Some((kind, u64_of(k, v)?));
                Ok(())
            };
            match k {
                "events" => events = Some(u64_of(k, v)?),
                "end" => end = Some(u64_of(k, v)?),
                "rate" => {
                    p.rate = parse_decimal(v)
                        .ok_or_else(|| err(k, v, "a non-negative decimal like 10 or 0.5"))?
                }
                "batch" => {
                    p.writes = if bool_of(k, v)? {
                        Writes::PerEvent
                    } else {
                        Writes::Batched
                    }
                }
                "burst" => {
                    let n = u64_of(k, v)?;
                    if n == 0 {
                        return Err(err(k, v, "at least 1 event per turn"));
                    }
                    p.burst = Some(n);
                }
                "size" => {
                    let s = u64_of(k, v)?;
                    if s > MAX_EVENT_SIZE as u64 {
                        return Err(err(k, v, "at most 1048576"));
                    }
                    p.size = s as usize;
                }
                "eol" => {
                    p.eol = match v {
                        "lf" => Eol::Lf,
                        "crlf" => Eol::CrLf,
                        "cr" => Eol::Cr,
                        _ => return Err(err(k, v, "lf, crlf or cr")),
                    }
                }
                "ids" => p.ids = bool_of(k, v)?,
                "ts" => p.ts = bool_of(k, v)?,
                "resume" => {
                    p.honour_resume = match v {
                        "honour" | "honor" => true,
                        "ignore" => false,
                        _ => return Err(err(k, v, "honour or ignore")),
                    }
                }
                "start" => {
                    p.start = u64_of(k, v)?;
                    if p.start == 0 {
                        return Err(err(k, v, "an id of at least 1"));
                    }
                }
                "close_after" => set_fault(FaultKind::Close)?,
                "reset_after" => set_fault(FaultKind::Reset)?,
                "stall_after" => set_fault(FaultKind::Stall { stall: None })?,
                "stall_ms" => stall = Some(Duration::from_millis(u64_of(k, v)?)),
                "every" => once = !bool_of(k, v)?,
                "fault_once" => once = bool_of(k, v)?,
                _ if UNSUPPORTED.contains(&k) => {
                    return Err(err(k, v, "a parameter sse-tokio has (use sse-upstream)"))
                }
                _ => {}
            }
        }
        p.last = end.or(events).unwrap_or(DEFAULT_EVENTS);
        p.fault = fault.map(|(kind, after)| Fault {
            kind: match kind {
                FaultKind::Stall { .. } => FaultKind::Stall { stall },
                other => other,
            },
            after,
            once,
        });
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bench_queries() {
        let p =
            SseParams::parse("events=0&size=80&batch=1&stall_after=0&stall_ms=3000&s=7").unwrap();
        assert_eq!(p.last, 0);
        assert_eq!(p.size, 80);
        assert_eq!(p.writes, Writes::PerEvent);
        assert_eq!(
            p.fault,
            Some(Fault {
                kind: FaultKind::Stall {
                    stall: Some(Duration::from_millis(3000))
                },
                after: 0,
                once: false,
            })
        );
        let p = SseParams::parse("events=0&size=80&rate=10").unwrap();
        assert_eq!((p.rate, p.writes, p.fault), (10.0, Writes::Batched, None));
        let p = SseParams::parse("events=0&rate=0.001&close_after=20&fault_once").unwrap();
        assert_eq!(p.rate, 0.001);
        assert_eq!(
            p.fault,
            Some(Fault {
                kind: FaultKind::Close,
                after: 20,
                once: true
            })
        );
        assert_eq!(SseParams::parse("").unwrap(), SseParams::default());
        assert_eq!(SseParams::parse("end=5&events=9").unwrap().last, 5);
    }

    #[test]
    fn strict_values_and_refusals() {
        for bad in [
            "events=+5",
            "events=-1",
            "rate=1e3",
            "rate=.5",
            "size=2000000",
            "batch=yes",
            "burst=0",
            "start=0",
            "eol=crcr",
            "close_after=1&reset_after=2",
            "retry=100",
            "framing=close",
            "chaos=3",
        ] {
            assert!(SseParams::parse(bad).is_err(), "{bad}");
        }
        let e = SseParams::parse("prime=1").unwrap_err();
        assert_eq!(e.key, "prime");
        assert!(e.to_string().contains("sse-upstream"));
    }
}
