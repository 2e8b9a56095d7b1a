//! Query strings and the typed parameters of every endpoint.
//!
//! Values are parsed strictly and by hand (`str::parse` would accept `+5`): numbers are ASCII
//! digits only, booleans `1|0|true|false`. Unknown keys are ignored, so a test may add its own
//! cache-busting or labelling parameters. No percent-decoding: every value here is plain ASCII.
//! A bad value is answered with 400 and the error's text.
//!
//! `/sse`'s parameters ([`SseParams`]) are also `sse-tokio`'s, parsed by this same code; the
//! other endpoints' are the simulator's own (crate-private).

use std::fmt;
use std::time::Duration;

/// Default `events=` of an SSE stream: the logical stream's last id.
pub const DEFAULT_EVENTS: u64 = 10;
/// Default `size=`: approximate bytes of each event's `data:` payload.
pub const DEFAULT_EVENT_SIZE: usize = 32;
/// Largest accepted `size=` (bytes). Past this: 400.
pub const MAX_EVENT_SIZE: usize = 16 * 1024 * 1024;
/// Default `chunk=` of `/bytes?chunked=1` (bytes per chunk).
pub(crate) const DEFAULT_BYTES_CHUNK: usize = 8 * 1024;
/// Default body length of `/delay` (bytes).
pub(crate) const DEFAULT_DELAY_BODY: u64 = 100;

/// A query parameter whose value could not be used.
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

impl std::error::Error for ParamError {}

impl ParamError {
    /// `key=value` cannot be used; `expected` says what would be.
    pub fn new(key: &str, value: &str, expected: &'static str) -> Self {
        Self {
            key: key.to_string(),
            value: value.to_string(),
            expected,
        }
    }
}

/// Splits a request target into path and query (query without the `?`, "" when absent).
pub(crate) fn split_target(target: &str) -> (&str, &str) {
    match target.split_once('?') {
        Some((path, query)) => (path, query),
        None => (target, ""),
    }
}

/// `key=value` pairs of a query string in order; a key without `=` has the value "".
pub fn pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

/// Parses an unsigned decimal: ASCII digits only, no sign, no spaces, no overflow.
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

/// Parses a non-negative decimal with an optional fraction: `12`, `0.5`, `2.25`
/// (no sign, no exponent, at most 9 fraction digits).
pub(crate) fn parse_decimal(s: &str) -> Option<f64> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let int_v = parse_u64(int)?;
    let mut v = int_v as f64;
    if let Some(frac) = frac {
        if frac.is_empty() || frac.len() > 9 {
            return None;
        }
        let f = parse_u64(frac)?;
        v += f as f64 / 10f64.powi(frac.len() as i32);
    }
    Some(v)
}

/// Parses `1|0|true|false`; an empty value (bare `key`) means true.
pub(crate) fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "true" | "" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

fn err(key: &str, value: &str, expected: &'static str) -> ParamError {
    ParamError::new(key, value, expected)
}

fn u64_of(key: &str, value: &str) -> Result<u64, ParamError> {
    parse_u64(value).ok_or_else(|| err(key, value, "ASCII decimal digits"))
}

fn bool_of(key: &str, value: &str) -> Result<bool, ParamError> {
    parse_bool(value).ok_or_else(|| err(key, value, "1, 0, true or false"))
}

fn ms_of(key: &str, value: &str) -> Result<Duration, ParamError> {
    u64_of(key, value).map(Duration::from_millis)
}

/// Parameters every endpoint understands.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CommonParams {
    /// `conn_close=1`: answer with `Connection: close` and close after the response.
    pub conn_close: bool,
}

impl CommonParams {
    /// Reads the common parameters of a query string.
    pub fn parse(query: &str) -> Result<Self, ParamError> {
        let mut p = Self::default();
        for (k, v) in pairs(query) {
            if k == "conn_close" {
                p.conn_close = bool_of(k, v)?;
            }
        }
        Ok(p)
    }
}

/// How `/bytes` frames its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BytesFraming {
    /// `Content-Length` (the default).
    Length,
    /// `Transfer-Encoding: chunked`, `chunk` bytes per chunk.
    Chunked {
        /// Payload bytes per chunk (the last may be shorter).
        chunk: usize,
    },
    /// Neither: the body ends when the connection closes.
    Close,
}

/// `GET /bytes` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BytesParams {
    /// `n=`: body length in bytes (default 0). Byte i of the body is `(i % 251) as u8`.
    pub n: u64,
    /// `chunked=1&chunk=K` or `close=1`.
    pub framing: BytesFraming,
}

impl BytesParams {
    /// Reads `/bytes` parameters.
    pub fn parse(query: &str) -> Result<Self, ParamError> {
        let mut n = 0;
        let mut chunked = false;
        let mut chunk = DEFAULT_BYTES_CHUNK;
        let mut close = false;
        for (k, v) in pairs(query) {
            match k {
                "n" => n = u64_of(k, v)?,
                "chunked" => chunked = bool_of(k, v)?,
                "chunk" => {
                    chunk = u64_of(k, v)? as usize;
                    if chunk == 0 || chunk > 16 * 1024 * 1024 {
                        return Err(err(k, v, "a chunk size in 1..=16777216"));
                    }
                }
                "close" => close = bool_of(k, v)?,
                _ => {}
            }
        }
        let framing = match (chunked, close) {
            (true, true) => return Err(err("close", "1", "either chunked=1 or close=1, not both")),
            (true, false) => BytesFraming::Chunked { chunk },
            (false, true) => BytesFraming::Close,
            (false, false) => BytesFraming::Length,
        };
        Ok(Self { n, framing })
    }
}

/// `GET /delay` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DelayParams {
    /// `ms=`: wait this long before sending the response head.
    pub head_delay: Duration,
    /// `body_stall_ms=`: send the head and half the body, then stall this long, then the rest.
    pub body_stall: Option<Duration>,
    /// `n=`: body length (default [`DEFAULT_DELAY_BODY`]).
    pub n: u64,
}

impl DelayParams {
    /// Reads `/delay` parameters.
    pub fn parse(query: &str) -> Result<Self, ParamError> {
        let mut p = Self {
            head_delay: Duration::ZERO,
            body_stall: None,
            n: DEFAULT_DELAY_BODY,
        };
        for (k, v) in pairs(query) {
            match k {
                "ms" => p.head_delay = ms_of(k, v)?,
                "body_stall_ms" => p.body_stall = Some(ms_of(k, v)?),
                "n" => p.n = u64_of(k, v)?,
                _ => {}
            }
        }
        Ok(p)
    }
}

/// Line terminator of SSE lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eol {
    /// `\n` (default; what the MCP TypeScript SDK writes).
    Lf,
    /// `\r\n` (what sse-starlette writes).
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

/// How an SSE response body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SseFraming {
    /// `Transfer-Encoding: chunked`, one chunk per write (default).
    Chunked,
    /// No length, no chunking: the body ends when the connection closes.
    Close,
    /// `Content-Length` of the whole finite stream.
    Length,
}

/// Whether `Last-Event-ID` moves the start of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// `resume=honour` (default): `Last-Event-ID: k` continues at event k+1.
    Honour,
    /// `resume=ignore`: always start at event 1 (or `start=`).
    Ignore,
}

/// What happens to a connection after `after` events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// `close_after=K`: FIN (no chunked terminator, no complete body).
    Close,
    /// `reset_after=K`: RST (SO_LINGER 0, then close).
    Reset,
    /// `stall_after=K`: stop writing; keep the socket open for `stall` (None: until the
    /// client leaves), then carry on with the stream.
    Stall {
        /// `stall_ms=`; None waits until the client closes.
        stall: Option<Duration>,
    },
}

/// A fault injected into an SSE stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// What happens.
    pub kind: FaultKind,
    /// After how many complete events of this connection (0: right after the head).
    pub after: u64,
    /// `mid_event=1`: first write the first half of the next event (as its own write).
    pub mid_event: bool,
    /// `fault_once=1`: apply only to requests without `Last-Event-ID` (the first connection of
    /// a logical stream); default (`every=1`): every connection.
    pub once: bool,
}

/// The kinds of fault `chaos=N` draws from, one per connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChaosKind {
    /// `fin`: FIN after the drawn number of events (as `close_after`).
    Fin,
    /// `rst`: RST after them (as `reset_after`).
    Rst,
    /// `stall`: stop writing and hold the socket until the client leaves (as `stall_after`
    /// without `stall_ms`): a proxy's upstream idle timeout is what ends it.
    Stall,
    /// `half`: the first half of the next event, then FIN (as `close_after` with `mid_event=1`).
    Half,
}

impl ChaosKind {
    /// Every kind, in the order `chaos_kinds` names them and counters index them.
    pub const ALL: [ChaosKind; 4] = [
        ChaosKind::Fin,
        ChaosKind::Rst,
        ChaosKind::Stall,
        ChaosKind::Half,
    ];

    /// The name in `chaos_kinds` and in the stats.
    pub fn name(self) -> &'static str {
        match self {
            ChaosKind::Fin => "fin",
            ChaosKind::Rst => "rst",
            ChaosKind::Stall => "stall",
            ChaosKind::Half => "half",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }

    /// The fault this kind injects after `after` events.
    pub fn fault(self, after: u64) -> Fault {
        let (kind, mid_event) = match self {
            ChaosKind::Fin => (FaultKind::Close, false),
            ChaosKind::Rst => (FaultKind::Reset, false),
            ChaosKind::Stall => (FaultKind::Stall { stall: None }, false),
            ChaosKind::Half => (FaultKind::Close, true),
        };
        Fault {
            kind,
            after,
            mid_event,
            once: false,
        }
    }
}

/// `chaos=N`: every connection of the stream gets one fault, after a number of events drawn
/// uniformly from 1..=2N-1 (mean N, never 0, so every connection moves the stream on), of a
/// kind drawn from `kinds`. The draw is a hash of the seed, the request target and the resume
/// point: the same request at the same point of the stream always gets the same fault, and a
/// run can be replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chaos {
    /// Mean events per connection before its fault (at least 1).
    pub mean: u64,
    /// `chaos_kinds=fin,rst,stall,half` (default all four): which kinds are drawn, equally
    /// likely. Indexed like [`ChaosKind::ALL`].
    pub kinds: [bool; 4],
    /// `chaos_seed=S` (default 0).
    pub seed: u64,
}

impl Chaos {
    /// The fault of a connection that requests `target` and starts at event `start`.
    pub fn draw(&self, target: &str, start: u64) -> (ChaosKind, Fault) {
        let mut h = crate::checksum::fnv1a64(
            crate::checksum::FNV1A64_OFFSET_BASIS ^ self.seed,
            target.as_bytes(),
        );
        h = crate::checksum::fnv1a64(h, &start.to_le_bytes());
        // FNV's low bits are weak: fold the high half in before taking remainders.
        let mixed = h ^ (h >> 29) ^ (h >> 47);
        let span = 2 * self.mean - 1;
        let after = 1 + mixed % span;
        let enabled: Vec<ChaosKind> = ChaosKind::ALL
            .into_iter()
            .zip(self.kinds)
            .filter_map(|(k, on)| on.then_some(k))
            .collect();
        let kind = enabled[((mixed >> 32) % enabled.len() as u64) as usize];
        (kind, kind.fault(after))
    }
}

/// `GET|POST /sse` parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct SseParams {
    /// `events=` / `end=`: id of the last event of the logical stream; 0 = infinite.
    pub last: u64,
    /// `rate=`: events per second per stream; 0 = as fast as possible.
    pub rate: f64,
    /// `batch=1`: one write per event even when fast. Default: coalesce what is due, up to
    /// [`super::sse::BATCH_BYTES`] per write.
    pub one_write_per_event: bool,
    /// `size=`: approximate length of each event's data payload (bytes).
    pub size: usize,
    /// `eol=lf|crlf|cr`.
    pub eol: Eol,
    /// `ids=1|0`: `id:` lines (default on).
    pub ids: bool,
    /// `bom=1`: a UTF-8 BOM first.
    pub bom: bool,
    /// `prime=1`: a priming block (`id: <start-1>` and an empty `data:` line) first.
    pub prime: bool,
    /// `retry=MS`: a `retry:` block first.
    pub retry: Option<u64>,
    /// `ts=1|0`: send time (unix micros) in each event's data (default on).
    pub ts: bool,
    /// `resume=honour|ignore`.
    pub resume: Resume,
    /// `start=K`: the first id of a response without a (honoured) `Last-Event-ID`
    /// (default 1): a client that joins a running stream at event K.
    pub start: u64,
    /// `resume_status=CODE`: requests with `Last-Event-ID` get this status instead.
    pub resume_status: Option<u16>,
    /// `resume_status_times=T`: only the first T such requests (per request target).
    pub resume_status_times: Option<u64>,
    /// `close_after` / `reset_after` / `stall_after` with `mid_event`, `stall_ms`, `fault_once`.
    pub fault: Option<Fault>,
    /// `chaos=N` with `chaos_kinds`, `chaos_seed`: a drawn fault per connection (instead of
    /// `fault`; the two cannot be combined).
    pub chaos: Option<Chaos>,
    /// `heartbeat_ms=H`: `: hb` comment blocks every H ms while waiting for the next event.
    pub heartbeat: Option<Duration>,
    /// `framing=chunked|close|length`.
    pub framing: SseFraming,
}

impl Default for SseParams {
    fn default() -> Self {
        Self {
            last: DEFAULT_EVENTS,
            rate: 0.0,
            one_write_per_event: false,
            size: DEFAULT_EVENT_SIZE,
            eol: Eol::Lf,
            ids: true,
            bom: false,
            prime: false,
            retry: None,
            ts: true,
            resume: Resume::Honour,
            start: 1,
            resume_status: None,
            resume_status_times: None,
            fault: None,
            chaos: None,
            heartbeat: None,
            framing: SseFraming::Chunked,
        }
    }
}

impl SseParams {
    /// Reads `/sse` parameters.
    pub fn parse(query: &str) -> Result<Self, ParamError> {
        let mut p = Self::default();
        let mut events = None;
        let mut end = None;
        let mut fault: Option<(FaultKind, u64)> = None;
        let mut mid_event = false;
        let mut stall = None;
        let mut once = false;
        let mut chaos_mean = None;
        let mut chaos_kinds = [true; 4];
        let mut chaos_seed = 0;
        let mut set_fault = |k: &str, v: &str, kind: FaultKind| -> Result<(), ParamError> {
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
        for (k, v) in pairs(query) {
            match k {
                "events" => events = Some(u64_of(k, v)?),
                "end" => end = Some(u64_of(k, v)?),
                "rate" => {
                    p.rate = parse_decimal(v)
                        .ok_or_else(|| err(k, v, "a non-negative decimal like 10 or 0.5"))?
                }
                "batch" => p.one_write_per_event = bool_of(k, v)?,
                "size" => {
                    let s = u64_of(k, v)?;
                    if s > MAX_EVENT_SIZE as u64 {
                        return Err(err(k, v, "at most 16777216"));
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
                "bom" => p.bom = bool_of(k, v)?,
                "prime" => p.prime = bool_of(k, v)?,
                "retry" => p.retry = Some(u64_of(k, v)?),
                "ts" => p.ts = bool_of(k, v)?,
                "start" => {
                    p.start = u64_of(k, v)?;
                    if p.start == 0 {
                        return Err(err(k, v, "an id of at least 1"));
                    }
                }
                "resume" => {
                    p.resume = match v {
                        "honour" | "honor" => Resume::Honour,
                        "ignore" => Resume::Ignore,
                        _ => return Err(err(k, v, "honour or ignore")),
                    }
                }
                "resume_status" => {
                    let code = u64_of(k, v)?;
                    if !(200..=999).contains(&code) {
                        return Err(err(k, v, "a final status code in 200..=999"));
                    }
                    p.resume_status = Some(code as u16);
                }
                "resume_status_times" => p.resume_status_times = Some(u64_of(k, v)?),
                "close_after" => set_fault(k, v, FaultKind::Close)?,
                "reset_after" => set_fault(k, v, FaultKind::Reset)?,
                "stall_after" => set_fault(k, v, FaultKind::Stall { stall: None })?,
                "mid_event" => mid_event = bool_of(k, v)?,
                "stall_ms" => stall = Some(ms_of(k, v)?),
                "every" => once = !bool_of(k, v)?,
                "fault_once" => once = bool_of(k, v)?,
                "chaos" => {
                    let n = u64_of(k, v)?;
                    if n == 0 || n > u64::MAX / 4 {
                        return Err(err(k, v, "a mean of at least 1 event per connection"));
                    }
                    chaos_mean = Some(n);
                }
                "chaos_kinds" => {
                    chaos_kinds = [false; 4];
                    for name in v.split(',') {
                        let kind = ChaosKind::parse(name)
                            .ok_or_else(|| err(k, v, "a list of fin, rst, stall, half"))?;
                        chaos_kinds[kind as usize] = true;
                    }
                }
                "chaos_seed" => chaos_seed = u64_of(k, v)?,
                "heartbeat_ms" => {
                    let hb = ms_of(k, v)?;
                    if hb.is_zero() {
                        return Err(err(k, v, "at least 1 (ms)"));
                    }
                    p.heartbeat = Some(hb);
                }
                "framing" => {
                    p.framing = match v {
                        "chunked" => SseFraming::Chunked,
                        "close" => SseFraming::Close,
                        "length" => SseFraming::Length,
                        _ => return Err(err(k, v, "chunked, close or length")),
                    }
                }
                _ => {}
            }
        }
        // `end` wins over `events`: both name the last id of the logical stream.
        p.last = end.or(events).unwrap_or(DEFAULT_EVENTS);
        p.fault = fault.map(|(kind, after)| Fault {
            kind: match kind {
                FaultKind::Stall { .. } => FaultKind::Stall { stall },
                other => other,
            },
            after,
            mid_event,
            once,
        });
        if let Some(mean) = chaos_mean {
            if p.fault.is_some() {
                return Err(err(
                    "chaos",
                    &mean.to_string(),
                    "no close_after, reset_after or stall_after with it",
                ));
            }
            p.chaos = Some(Chaos {
                mean,
                kinds: chaos_kinds,
                seed: chaos_seed,
            });
        }
        if p.framing == SseFraming::Length && p.last == 0 {
            return Err(err(
                "framing",
                "length",
                "a finite stream (events=N with N > 0)",
            ));
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_strict() {
        assert_eq!(parse_u64("0"), Some(0));
        assert_eq!(parse_u64("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64("18446744073709551616"), None);
        for bad in ["", "+5", "-1", " 5", "5 ", "0x10", "1e3", "٣"] {
            assert_eq!(parse_u64(bad), None, "{bad:?}");
        }
        assert_eq!(parse_decimal("2"), Some(2.0));
        assert_eq!(parse_decimal("0.5"), Some(0.5));
        assert_eq!(parse_decimal("10.25"), Some(10.25));
        for bad in ["", ".5", "5.", "-1", "1e3", "1.2.3", "+1"] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
        assert_eq!(parse_bool(""), Some(true));
        assert_eq!(parse_bool("yes"), None);
    }

    #[test]
    fn target_and_pairs() {
        assert_eq!(split_target("/sse?events=3"), ("/sse", "events=3"));
        assert_eq!(split_target("/sse"), ("/sse", ""));
        let v: Vec<_> = pairs("a=1&&b&c=x=y").collect();
        assert_eq!(v, vec![("a", "1"), ("b", ""), ("c", "x=y")]);
    }

    #[test]
    fn sse_defaults() {
        let p = SseParams::parse("").unwrap();
        assert_eq!(p, SseParams::default());
        assert_eq!(p.last, 10);
        assert!(p.ids && p.ts && !p.bom && !p.prime);
        assert_eq!(p.framing, SseFraming::Chunked);
    }

    #[test]
    fn sse_everything() {
        let p = SseParams::parse(
            "events=5&rate=2.5&batch=1&size=100&eol=crlf&ids=0&bom=1&prime=1&retry=1500&ts=0\
             &resume=ignore&resume_status=503&resume_status_times=2&heartbeat_ms=250\
             &framing=length&start=4&label=whatever",
        )
        .unwrap();
        assert_eq!(p.last, 5);
        assert_eq!(p.rate, 2.5);
        assert!(p.one_write_per_event);
        assert_eq!(p.size, 100);
        assert_eq!(p.eol, Eol::CrLf);
        assert!(!p.ids && p.bom && p.prime && !p.ts);
        assert_eq!(p.retry, Some(1500));
        assert_eq!(p.resume, Resume::Ignore);
        assert_eq!(p.start, 4);
        assert_eq!(p.resume_status, Some(503));
        assert_eq!(p.resume_status_times, Some(2));
        assert_eq!(p.heartbeat, Some(Duration::from_millis(250)));
        assert_eq!(p.framing, SseFraming::Length);
    }

    #[test]
    fn sse_end_overrides_events() {
        assert_eq!(SseParams::parse("events=3&end=7").unwrap().last, 7);
        assert_eq!(SseParams::parse("end=7&events=3").unwrap().last, 7);
        assert_eq!(SseParams::parse("events=0").unwrap().last, 0);
    }

    #[test]
    fn sse_faults() {
        let p = SseParams::parse("close_after=3").unwrap();
        assert_eq!(
            p.fault,
            Some(Fault {
                kind: FaultKind::Close,
                after: 3,
                mid_event: false,
                once: false
            })
        );
        let p = SseParams::parse("mid_event=1&reset_after=0&fault_once=1").unwrap();
        assert_eq!(
            p.fault,
            Some(Fault {
                kind: FaultKind::Reset,
                after: 0,
                mid_event: true,
                once: true
            })
        );
        let p = SseParams::parse("stall_after=2&stall_ms=300&every=1").unwrap();
        assert_eq!(
            p.fault.unwrap().kind,
            FaultKind::Stall {
                stall: Some(Duration::from_millis(300))
            }
        );
        let p = SseParams::parse("stall_after=2").unwrap();
        assert_eq!(p.fault.unwrap().kind, FaultKind::Stall { stall: None });
        assert!(SseParams::parse("close_after=1&reset_after=2").is_err());
        assert_eq!(SseParams::parse("mid_event=1").unwrap().fault, None);
    }

    #[test]
    fn chaos_draws_every_kind_within_bounds() {
        let p = SseParams::parse("chaos=10&chaos_seed=7").unwrap();
        let c = p.chaos.unwrap();
        assert_eq!((c.mean, c.kinds, c.seed), (10, [true; 4], 7));
        let mut seen = [0u64; 4];
        let mut total_after = 0;
        for start in 1..=4000u64 {
            let (kind, fault) = c.draw("/sse?chaos=10&s=3", start);
            assert!((1..=19).contains(&fault.after), "{fault:?}");
            assert_eq!(
                c.draw("/sse?chaos=10&s=3", start),
                (kind, fault),
                "deterministic"
            );
            seen[kind as usize] += 1;
            total_after += fault.after;
        }
        assert!(
            seen.iter().all(|&n| n > 800),
            "kinds drawn evenly: {seen:?}"
        );
        let mean = total_after as f64 / 4000.0;
        assert!((9.0..11.0).contains(&mean), "mean {mean}");
        assert!(ChaosKind::Half.fault(3).mid_event);
        assert_eq!(
            ChaosKind::Stall.fault(3).kind,
            FaultKind::Stall { stall: None }
        );

        let only = SseParams::parse("chaos=1&chaos_kinds=rst,half")
            .unwrap()
            .chaos
            .unwrap();
        assert_eq!(only.kinds, [false, true, false, true]);
        for start in 1..100 {
            let (kind, fault) = only.draw("/x", start);
            assert!(matches!(kind, ChaosKind::Rst | ChaosKind::Half));
            assert_eq!(
                fault.after, 1,
                "chaos=1 always faults after the first event"
            );
        }
        for bad in [
            "chaos=0",
            "chaos=x",
            "chaos=3&chaos_kinds=fin,boom",
            "chaos=3&chaos_kinds=",
            "chaos=3&close_after=2",
            "chaos=3&chaos_seed=-1",
        ] {
            assert!(SseParams::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sse_rejects_bad_values() {
        for q in [
            "events=-1",
            "rate=fast",
            "eol=crcr",
            "ids=2",
            "framing=gzip",
            "resume=maybe",
            "resume_status=99",
            "start=0",
            "start=x",
            "heartbeat_ms=0",
            "framing=length&events=0",
            "size=99999999999",
        ] {
            let e = SseParams::parse(q).unwrap_err();
            assert!(!e.to_string().is_empty(), "{q}");
        }
        let e = SseParams::parse("rate=+1").unwrap_err();
        assert_eq!(e.key, "rate");
        assert_eq!(e.value, "+1");
    }

    #[test]
    fn bytes_params() {
        assert_eq!(
            BytesParams::parse("n=10").unwrap(),
            BytesParams {
                n: 10,
                framing: BytesFraming::Length
            }
        );
        assert_eq!(
            BytesParams::parse("n=10&chunked=1&chunk=3")
                .unwrap()
                .framing,
            BytesFraming::Chunked { chunk: 3 }
        );
        assert_eq!(
            BytesParams::parse("n=10&chunked=1").unwrap().framing,
            BytesFraming::Chunked {
                chunk: DEFAULT_BYTES_CHUNK
            }
        );
        assert_eq!(
            BytesParams::parse("close=1").unwrap().framing,
            BytesFraming::Close
        );
        assert!(BytesParams::parse("chunked=1&chunk=0").is_err());
        assert!(BytesParams::parse("chunked=1&close=1").is_err());
        assert!(BytesParams::parse("n=ten").is_err());
    }

    #[test]
    fn delay_and_common_params() {
        let d = DelayParams::parse("ms=150&body_stall_ms=20&n=10").unwrap();
        assert_eq!(d.head_delay, Duration::from_millis(150));
        assert_eq!(d.body_stall, Some(Duration::from_millis(20)));
        assert_eq!(d.n, 10);
        let d = DelayParams::parse("").unwrap();
        assert_eq!(d.n, DEFAULT_DELAY_BODY);
        assert_eq!(d.body_stall, None);
        assert!(CommonParams::parse("conn_close=1").unwrap().conn_close);
        assert!(!CommonParams::parse("x=1").unwrap().conn_close);
        assert!(CommonParams::parse("conn_close=yes").is_err());
    }
}
