//! Time to first event (`--ttfe N`): while the load runs, N new SSE clients connect one
//! after another, each from a fresh TCP connect to its first complete event; then it closes
//! (RST) and the next one starts.
//!
//! Why a separate thread with blocking sockets, not a stream of the epoll loop: the load
//! thread is busy with the flat-out streams, and a probe read there would wait for its turn
//! behind them; a thread that sleeps in `read` is woken by the kernel as soon as its bytes
//! arrive (and, having slept, is scheduled promptly), so the figure is the proxy's delay and
//! not the load generator's. The `direct` row of `scripts/bench.sh` shows what is left of the
//! client's own delay on its busy CPU.
//!
//! What a probe measures (all from `Instant::now()` just before `connect()`):
//! - `connect`: connect() returned (the listener's SYN-ACK; with a full accept queue it
//!   still succeeds, the wait shows up later);
//! - `head`: the read that completed the response head returned (over TLS this includes
//!   the handshake: the request is sent when it is done, resumed when the probe before left a
//!   session ticket);
//! - `first event`: the read that completed the first event (its blank line) returned. An
//!   event is what sse-load counts everywhere (a dispatched block with non-empty data), so a
//!   priming block or a comment does not end the probe.
//!
//! Percentiles are exact over the samples (no histogram): linear interpolation between the
//! two nearest ranks, as numpy's default and spreadsheets' PERCENTILE do. With 50 samples
//! p99 lies between the largest two values; ask for more probes for a finer tail.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::net::set_linger_zero;
use super::stats::Stats;
use super::stream::{End, Flow, Now, RequestTemplate, StreamState};
use super::tls::TlsClient;
use super::url;

/// What the probe thread is told.
#[derive(Debug, Clone)]
pub(crate) struct ProbeConfig {
    /// Where to connect.
    pub target: SocketAddr,
    /// `https://`: the TLS client (its own session store: probe n+1 resumes probe n's).
    pub tls: Option<TlsClient>,
    /// The Host field's value.
    pub authority: String,
    /// Path and query; `{i}` becomes the probe's index (0, 1, ...).
    pub path: String,
    /// Probes, one after another.
    pub count: usize,
    /// Longest wait of one probe (connect to first event); past it the probe fails.
    pub timeout: Duration,
}

/// The timings of one probe, microseconds from the start of its connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSample {
    /// connect() returned.
    pub connect_us: u64,
    /// The response head was complete.
    pub head_us: u64,
    /// The first event was complete.
    pub first_event_us: u64,
}

/// Exact percentiles of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Summary {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 99th percentile (linear interpolation between the nearest ranks).
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Summary {
    /// The summary of `values` (in any order); all zero when empty.
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        Self {
            count: v.len(),
            p50: quantile(&v, 0.50),
            p99: quantile(&v, 0.99),
            max: v[v.len() - 1],
            mean: v.iter().sum::<f64>() / v.len() as f64,
        }
    }
}

/// The q-quantile (0..=1) of sorted, non-empty `v`: linear interpolation between the
/// values at ranks floor(q(n-1)) and ceil(q(n-1)) (Hyndman-Fan type 7).
pub fn quantile(v: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(v.len() - 1);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

/// What the probes found.
#[derive(Debug, Clone, Default)]
pub struct ProbeResults {
    /// Probes asked for.
    pub asked: usize,
    /// The timings of every probe that got its first event, in order.
    pub samples: Vec<ProbeSample>,
    /// Probes that failed (timeout, refused, broken, not an event stream).
    pub failed: usize,
    /// The first failure's message.
    pub first_failure: Option<String>,
}

impl ProbeResults {
    /// Summary of one timing over the successful probes, in milliseconds.
    pub fn summary_ms(&self, f: impl Fn(&ProbeSample) -> u64) -> Summary {
        let ms: Vec<f64> = self.samples.iter().map(|s| f(s) as f64 / 1000.0).collect();
        Summary::of(&ms)
    }
}

/// Tracks one probe's response up to its first event (IO-free, for the tests).
#[derive(Debug)]
pub(crate) struct FirstEvent {
    state: StreamState,
    stats: Stats,
}

/// What a probe's bytes have shown so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Still waiting for the response head.
    Head,
    /// Head accepted, no complete event yet.
    Body,
    /// At least one complete event.
    Event,
    /// The response ended or was refused before its first event.
    Failed(String),
}

impl FirstEvent {
    /// Starts a probe: writes its request (without `Last-Event-ID`) into `out`.
    pub fn new(template: &RequestTemplate, out: &mut Vec<u8>) -> Self {
        let mut state = StreamState::new();
        state.request(template, out);
        Self {
            state,
            stats: Stats::default(),
        }
    }

    /// Feeds bytes read from the connection.
    pub fn feed(&mut self, data: &[u8]) -> Progress {
        let now = Now {
            mono: Instant::now(),
            wall_us: 0,
            measuring: false,
        };
        let flow = self.state.on_data(data, now, &mut self.stats);
        if self.stats.events_total > 0 {
            return Progress::Event;
        }
        match flow {
            Flow::Close(why) => Progress::Failed(describe(&why)),
            Flow::Continue if self.state.in_body() => Progress::Body,
            Flow::Continue => Progress::Head,
        }
    }

    /// EOF before the first event: why, in words.
    pub fn eof(&self) -> String {
        describe(&self.state.on_eof())
    }
}

fn describe(why: &End) -> String {
    match why {
        End::Complete => "the response ended before its first event".into(),
        End::Eof => "connection closed before the first event".into(),
        End::Io(e) | End::ConnectFailed(e) => e.clone(),
        End::ConnectTimeout => "connect timed out".into(),
        End::HeadTimeout => "no response head in time".into(),
        End::Http(e) => e.to_string(),
        End::Sse(e) => e.to_string(),
        End::Left => "the probe left".into(),
    }
}

/// A probe's connection: the TCP socket itself, or rustls over it.
trait Conn: Read + Write {}
impl<T: Read + Write> Conn for T {}

/// One probe: connect, send the request, read until the first complete event, close with
/// RST. Err: why it failed.
fn probe_once(
    target: SocketAddr,
    tls: Option<&TlsClient>,
    template: &RequestTemplate,
    timeout: Duration,
    buf: &mut [u8],
) -> Result<ProbeSample, String> {
    let start = Instant::now();
    let us = |t: Instant| t.duration_since(start).as_micros() as u64;
    let tcp = TcpStream::connect_timeout(&target, timeout).map_err(|e| format!("connect: {e}"))?;
    let connected = Instant::now();
    // Whatever happens next, the socket closes with RST (no TIME_WAIT; a browser tab that
    // closes with unread data sends one too).
    set_linger_zero(tcp.as_raw_fd());
    let _ = tcp.set_nodelay(true);
    // The timeouts are the socket's: set through this handle, they hold under TLS too.
    let sock = tcp.try_clone().map_err(|e| format!("socket: {e}"))?;
    let mut conn: Box<dyn Conn> = match tls {
        Some(client) => Box::new(rustls::StreamOwned::new(client.connect()?, tcp)),
        None => Box::new(tcp),
    };
    let mut request = Vec::with_capacity(256);
    let mut progress = FirstEvent::new(template, &mut request);
    sock.set_write_timeout(Some(timeout))
        .and_then(|()| conn.write_all(&request))
        .and_then(|()| conn.flush())
        .map_err(|e| format!("request: {e}"))?;
    let deadline = start + timeout;
    let mut head_at = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "no first event within {:.1} s ({})",
                timeout.as_secs_f64(),
                if head_at.is_some() {
                    "head received"
                } else {
                    "no response head"
                }
            ));
        }
        sock.set_read_timeout(Some(left))
            .map_err(|e| format!("socket: {e}"))?;
        let n = match conn.read(buf) {
            Ok(0) => return Err(progress.eof()),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => return Err(format!("read: {e}")),
        };
        let at = Instant::now();
        match progress.feed(&buf[..n]) {
            Progress::Head => {}
            Progress::Body => {
                head_at.get_or_insert(at);
            }
            Progress::Event => {
                return Ok(ProbeSample {
                    connect_us: us(connected),
                    head_us: us(*head_at.get_or_insert(at)),
                    first_event_us: us(at),
                })
            }
            Progress::Failed(why) => return Err(why),
        }
    }
}

/// Runs the probes one after another (stopping early if `stop` is set).
pub(crate) fn run(config: &ProbeConfig, stop: &AtomicBool) -> ProbeResults {
    let mut results = ProbeResults {
        asked: config.count,
        ..Default::default()
    };
    let mut buf = vec![0u8; 64 * 1024];
    let tls = config.tls.as_ref().map(TlsClient::for_thread);
    for i in 0..config.count {
        if stop.load(Relaxed) {
            break;
        }
        let template = RequestTemplate::new(&config.authority, &url::expand(&config.path, i));
        match probe_once(
            config.target,
            tls.as_ref(),
            &template,
            config.timeout,
            &mut buf,
        ) {
            Ok(s) => results.samples.push(s),
            Err(e) => {
                results.failed += 1;
                results
                    .first_failure
                    .get_or_insert_with(|| format!("probe {i}: {e}"));
            }
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_between_ranks() {
        let v: Vec<f64> = (1..=50).map(f64::from).collect();
        let s = Summary::of(&v);
        assert_eq!(s.count, 50);
        assert_eq!(s.p50, 25.5);
        // q(n-1) = 0.99 * 49 = 48.51: between the 49th (49) and 50th (50) values.
        assert!((s.p99 - 49.51).abs() < 1e-9, "{}", s.p99);
        assert_eq!(s.max, 50.0);
        assert_eq!(s.mean, 25.5);
        // Order does not matter; one sample is every percentile.
        let mut r = v.clone();
        r.reverse();
        assert_eq!(Summary::of(&r), s);
        let one = Summary::of(&[7.0]);
        assert_eq!((one.p50, one.p99, one.max), (7.0, 7.0, 7.0));
        assert_eq!(Summary::of(&[]), Summary::default());
        assert_eq!(quantile(&[1.0, 3.0], 0.5), 2.0);
        assert_eq!(quantile(&[1.0, 3.0], 1.0), 3.0);
        assert_eq!(quantile(&[1.0, 3.0], 0.0), 1.0);
    }

    const HEAD: &[u8] =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";

    fn chunk(payload: &str) -> Vec<u8> {
        format!("{:x}\r\n{payload}\r\n", payload.len()).into_bytes()
    }

    #[test]
    fn first_event_is_complete_only_at_its_blank_line() {
        // A comment and an MCP-style priming block (empty data) come first: neither is an
        // event. The event is complete at its blank line, wherever the reads split.
        let mut bytes = HEAD.to_vec();
        bytes.extend(chunk(": hello\n\nid: 0\ndata:\n\n"));
        bytes.extend(chunk("id: 1\ndata: {\"seq\":1}\n"));
        let before_blank = bytes.len();
        bytes.extend(chunk("\n"));
        for split in 0..=bytes.len() {
            let mut out = Vec::new();
            let mut p = FirstEvent::new(&RequestTemplate::new("h", "/sse?p=3"), &mut out);
            assert!(out.starts_with(b"GET /sse?p=3 HTTP/1.1\r\n"));
            // The blank line's LF follows the last chunk's size line "1\r\n".
            let want = if split > before_blank + 3 {
                Progress::Event
            } else if split >= HEAD.len() {
                Progress::Body
            } else {
                Progress::Head
            };
            assert_eq!(p.feed(&bytes[..split]), want, "split {split}");
            assert_eq!(p.feed(&bytes[split..]), Progress::Event, "split {split}");
        }
    }

    #[test]
    fn refusals_and_early_ends_fail_the_probe() {
        let mut out = Vec::new();
        let mut p = FirstEvent::new(&RequestTemplate::new("h", "/"), &mut out);
        let r = p.feed(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
        assert!(
            matches!(r, Progress::Failed(ref m) if m.contains("502")),
            "{r:?}"
        );

        let mut p = FirstEvent::new(&RequestTemplate::new("h", "/"), &mut out);
        let mut bytes = HEAD.to_vec();
        bytes.extend_from_slice(b"0\r\n\r\n");
        assert!(matches!(p.feed(&bytes), Progress::Failed(_)));

        let mut p = FirstEvent::new(&RequestTemplate::new("h", "/"), &mut out);
        assert_eq!(p.feed(HEAD), Progress::Body);
        assert!(p.eof().contains("closed"), "{}", p.eof());
    }

    #[test]
    fn results_summarise_each_timing() {
        let r = ProbeResults {
            asked: 3,
            samples: vec![
                ProbeSample {
                    connect_us: 100,
                    head_us: 1_000,
                    first_event_us: 2_000,
                },
                ProbeSample {
                    connect_us: 300,
                    head_us: 3_000,
                    first_event_us: 6_000,
                },
            ],
            failed: 1,
            first_failure: Some("probe 2: connect: refused".into()),
        };
        let s = r.summary_ms(|s| s.first_event_us);
        assert_eq!((s.count, s.p50, s.max), (2, 4.0, 6.0));
        assert_eq!(r.summary_ms(|s| s.connect_us).p50, 0.2);
    }
}
