//! `sse-load`: opens many SSE streams and counts every event exactly (ids in order, gaps,
//! duplicates), its latency (receive time minus the origin's `ts_us`), reconnections and
//! their gaps, and optionally the proxy's CPU and memory. `perf/LOAD.md` documents the
//! binary, its flags and its figures.
//!
//! Files:
//! - `mod.rs`: [`LoadConfig`], [`run`]: threads, phases (open, settle, warm-up, window), progress.
//! - `driver.rs`: one load thread: epoll, connects, reads, timers.
//! - `stream.rs`: one logical stream, IO-free: request, head, body, events, reconnect policy.
//! - `http.rs`: response head checks and body framing (chunked decoder).
//! - `sse.rs`: the incremental SSE line parser (id, data's seq/ts_us, retry).
//! - `track.rs`: gap and duplicate counting.
//! - `hist.rs`: the log-linear latency histogram.
//! - `stats.rs`: what a thread counts; `control.rs`: what threads and coordinator share.
//! - `report.rs`: the figures, the table, the JSON.
//! - `net.rs`: socket and epoll syscalls; `sys.rs`: `/proc`, getrusage, rlimit.
//! - `url.rs`: `--url` and its `{i}` placeholder (one URL per stream).
//! - `tls.rs`: `https://` URLs: the rustls client (`--ca`/`--insecure`, SNI, resumption) and
//!   its glue to the driver's non-blocking sockets.
//! - `any_certificate.rs`: the verifier of `--insecure` (also used by the TLS tests' client).
//! - `ttfe.rs`: `--ttfe`: time to first event of new clients while the load runs.
//! - `h2/`: `--h2-streams-per-conn`: many streams per HTTP/2 connection (h2 on tokio-rustls).

pub mod any_certificate;
mod control;
mod driver;
mod h2;
pub mod hist;
pub mod http;
mod net;
mod report;
pub mod sse;
mod stats;
mod stream;
pub mod sys;
mod tls;
pub mod track;
pub mod ttfe;
mod url;

use std::fmt;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use h2::{CONNECTION_WINDOW as H2_CONNECTION_WINDOW, STREAM_WINDOW as H2_STREAM_WINDOW};
pub use hist::Histogram;
pub use report::{ErrorLine, Quantiles, Report};
pub use stats::{ErrorKind, Stats};
pub use stream::MAX_RECONNECT_DELAY;
pub use tls::{TlsClient, Trust};
pub use ttfe::{ProbeResults, ProbeSample, Summary};
pub use url::{HttpUrl, STREAM_PLACEHOLDER};

use control::Control;
use driver::{Settings, StreamPlan};
use stream::RequestTemplate;

/// Default `--duration`: length of the measured window.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);
/// Default `--warmup`: time between "all streams open" and the window, not counted.
pub const DEFAULT_WARMUP: Duration = Duration::from_secs(1);
/// Default `--connections-per-source`: streams per source address. One source address has
/// 28232 ephemeral ports per destination here (32768-60999), but connect() searches the
/// even half first and slows down as it fills: measured, 19000 streams from one source took
/// 15 s to open and 10.8 s of kernel CPU; from four (5000 each), 5.3 s and 1.0 s.
pub const DEFAULT_CONNECTIONS_PER_SOURCE: usize = 5_000;
/// Default `--connect-timeout`: per connection attempt; past it the attempt is an error.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `--head-timeout`: request sent to response head complete; past it, an error.
pub const DEFAULT_HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `--open-timeout`: every stream must be established within this, else exit 1.
pub const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `--settle` (`--idle` only): wait after the last stream opened before sampling RSS.
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(2);
/// Default `--max-opening`: first opens in flight at once (connect to response head), over
/// all threads. Keeps the ramp-up under a proxy's listen backlog (nginx: 511) instead of
/// SYN-flooding it; reconnections are not limited (they are what is measured).
pub const DEFAULT_MAX_OPENING: usize = 256;
/// Default `--ttfe-timeout`: longest wait of one time-to-first-event probe.
pub const DEFAULT_TTFE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default `--leave-pause`: the longest time a stream that left stays away.
pub const DEFAULT_LEAVE_PAUSE: Duration = Duration::from_millis(500);
/// File descriptors kept free besides one per stream (epoll instances, stdio, the JSON
/// file, an in-process simulator in tests). With the 20000-fd limit: at most 19936 streams.
pub const FD_RESERVE: u64 = 64;
/// How often the progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How often the coordinator checks the phase conditions.
const TICK: Duration = Duration::from_millis(20);

/// How to run the load. Build it with struct update syntax:
/// `LoadConfig { url, streams: 20, ..Default::default() }`.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// `http[s]://host:port/path?query` of the SSE endpoint.
    pub url: String,
    /// How an `https://` server's certificate is checked (`--ca FILE` or `--insecure`);
    /// needed for https URLs, unused for plain ones.
    pub trust: Option<Trust>,
    /// Concurrent streams (C).
    pub streams: usize,
    /// Length of the measured window.
    pub duration: Duration,
    /// Unmeasured time after the streams are open, before the window.
    pub warmup: Duration,
    /// Streams per source address (stream i binds to `sources[i / connections_per_source]`).
    pub connections_per_source: usize,
    /// Source addresses to bind before connecting. Empty: the kernel picks, unless C needs
    /// more than one source, then 127.0.0.1, 127.0.0.2, ... for a loopback target.
    pub sources: Vec<IpAddr>,
    /// Load threads (streams are dealt round-robin).
    pub threads: usize,
    /// Reopen ended streams like EventSource, with `Last-Event-ID`.
    pub reconnect: bool,
    /// Measure the proxy's RSS per idle stream (needs `proxy_pids`).
    pub idle: bool,
    /// `idle`: wait this long after all streams are open before sampling RSS.
    pub settle: Duration,
    /// Processes whose CPU (and with `idle`, RSS) is sampled; figures are summed.
    pub proxy_pids: Vec<u32>,
    /// Free text for the report.
    pub label: String,
    /// Longest connect.
    pub connect_timeout: Duration,
    /// Longest wait for a response head.
    pub head_timeout: Duration,
    /// Longest wait for every stream to be established.
    pub open_timeout: Duration,
    /// First opens in flight at once, over all threads.
    pub max_opening: usize,
    /// Print a progress line every second on stderr.
    pub progress: bool,
    /// Time-to-first-event probes run one after another from the start of the window
    /// (0: none). See `ttfe.rs`.
    pub ttfe: usize,
    /// The probes' URL (`{i}`: the probe's index); None: `url`.
    pub ttfe_url: Option<String>,
    /// Longest wait of one probe, connect to first event.
    pub ttfe_timeout: Duration,
    /// Mean time a stream stays connected before it leaves on its own and comes back with
    /// `Last-Event-ID` (zero: never). Needs `reconnect`.
    pub leave_every: Duration,
    /// Longest pause before a stream that left comes back.
    pub leave_pause: Duration,
    /// Count the streams whose open body went silent (no event, no comment) for longer than
    /// this (a proxy's heartbeat period plus slack).
    pub max_quiet: Option<Duration>,
    /// Count the streams still open at the end whose last event is older than this.
    pub stuck_after: Option<Duration>,
    /// Streams join a live stream: each one's first event may have any id (not only 1), and
    /// ids are checked from there on (a proxy that shares one upstream stream among its
    /// clients starts a newcomer at the live head). See `track.rs`.
    pub join_live: bool,
    /// HTTP/2: streams per connection (0: HTTP/1.1, one connection per stream). C streams
    /// go on ceil(C / this) connections; needs an https URL (ALPN h2). See `h2/`.
    pub h2_streams_per_conn: usize,
}

impl Default for LoadConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            trust: None,
            streams: 1,
            duration: DEFAULT_DURATION,
            warmup: DEFAULT_WARMUP,
            connections_per_source: DEFAULT_CONNECTIONS_PER_SOURCE,
            sources: Vec::new(),
            threads: 1,
            reconnect: false,
            idle: false,
            settle: DEFAULT_SETTLE,
            proxy_pids: Vec::new(),
            label: String::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            head_timeout: DEFAULT_HEAD_TIMEOUT,
            open_timeout: DEFAULT_OPEN_TIMEOUT,
            max_opening: DEFAULT_MAX_OPENING,
            progress: false,
            ttfe: 0,
            ttfe_url: None,
            ttfe_timeout: DEFAULT_TTFE_TIMEOUT,
            leave_every: Duration::ZERO,
            leave_pause: DEFAULT_LEAVE_PAUSE,
            max_quiet: None,
            stuck_after: None,
            join_live: false,
            h2_streams_per_conn: 0,
        }
    }
}

/// Why a run could not start (a run that started returns a [`Report`], possibly with
/// [`Report::open_failure`] set).
#[derive(Debug)]
pub enum LoadError {
    /// The configuration cannot work (bad URL, too many streams for the fd limit, ...).
    Config(String),
    /// A thread or a `/proc` sample failed.
    Io(std::io::Error),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Config(m) => write!(f, "{m}"),
            LoadError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for LoadError {}

impl From<std::io::Error> for LoadError {
    fn from(e: std::io::Error) -> Self {
        LoadError::Io(e)
    }
}

/// The source address of every stream (None: let the kernel pick).
fn plan_sources(config: &LoadConfig, target: SocketAddr) -> Result<Vec<Option<IpAddr>>, String> {
    let c = config.streams;
    let per = config.connections_per_source.max(1);
    let needed = c.div_ceil(per);
    let sources: Vec<IpAddr> = if !config.sources.is_empty() {
        if config.sources.len() < needed {
            return Err(format!(
                "{c} streams at {per} per source need {needed} source addresses, got {}",
                config.sources.len()
            ));
        }
        config.sources.clone()
    } else if needed <= 1 {
        return Ok(vec![None; c]);
    } else if target.ip().is_loopback() && target.is_ipv4() && needed <= 254 {
        (1..=needed as u8)
            .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
            .collect()
    } else {
        return Err(format!(
            "{c} streams at {per} per source need {needed} source addresses: pass --sources"
        ));
    };
    Ok((0..c).map(|i| Some(sources[i / per])).collect())
}

/// The TLS client of an `https://` URL (None for `http://`).
fn tls_client(url: &HttpUrl, trust: Option<&Trust>) -> Result<Option<TlsClient>, LoadError> {
    if !url.tls {
        return Ok(None);
    }
    let trust = trust.ok_or_else(|| {
        LoadError::Config(format!(
            "https://{}: pass --ca FILE (the server's CA certificate, PEM) or --insecure",
            url.authority
        ))
    })?;
    TlsClient::build(trust, &url.host)
        .map(Some)
        .map_err(LoadError::Config)
}

/// Runs the load described by `config` and returns what it measured.
///
/// Phases: open every stream (at most `max_opening` first opens in flight), fail if they are
/// not all established within `open_timeout`; with `idle`, settle and sample the proxy's
/// RSS; warm up; measure for `duration` (ended early if every stream is over); close
/// everything. Blocks the calling thread for the whole run.
pub fn run(config: &LoadConfig) -> Result<Report, LoadError> {
    if config.h2_streams_per_conn > 0 {
        return h2::run(config);
    }
    let url = HttpUrl::parse(&config.url).map_err(LoadError::Config)?;
    let tls = tls_client(&url, config.trust.as_ref())?;
    let target = url.resolve().map_err(LoadError::Config)?;
    if config.streams == 0 {
        return Err(LoadError::Config("--streams must be at least 1".into()));
    }
    let threads = config.threads.clamp(1, config.streams);
    let limit = sys::raise_nofile_limit();
    let need = config.streams as u64 + FD_RESERVE;
    if need > limit {
        return Err(LoadError::Config(format!(
            "{} streams need {need} file descriptors with the reserve of {FD_RESERVE}; the limit \
             is {limit}: run several sse-load processes",
            config.streams
        )));
    }
    let sources = plan_sources(config, target).map_err(LoadError::Config)?;
    if config.idle && config.proxy_pids.is_empty() {
        return Err(LoadError::Config("--idle needs --proxy-pid".into()));
    }
    if !config.leave_every.is_zero() && !config.reconnect {
        return Err(LoadError::Config(
            "--leave-every needs --reconnect (a stream that leaves comes back)".into(),
        ));
    }
    let probes = if config.ttfe > 0 {
        let u = match &config.ttfe_url {
            Some(t) => HttpUrl::parse(t).map_err(LoadError::Config)?,
            None => url.clone(),
        };
        Some(ttfe::ProbeConfig {
            target: u.resolve().map_err(LoadError::Config)?,
            tls: tls_client(&u, config.trust.as_ref())?,
            authority: u.authority,
            path: u.target,
            count: config.ttfe,
            timeout: config.ttfe_timeout,
        })
    } else {
        None
    };
    let sample_proxy = || -> Result<Option<sys::ProcSample>, LoadError> {
        if config.proxy_pids.is_empty() {
            return Ok(None);
        }
        sys::sample(&config.proxy_pids).map(Some).map_err(|e| {
            LoadError::Config(format!(
                "cannot sample proxy pid(s) {:?}: {e}",
                config.proxy_pids
            ))
        })
    };

    let settings = Arc::new(Settings {
        target,
        tls,
        template: RequestTemplate::new(&url.authority, &url.target),
        reconnect: config.reconnect,
        connect_timeout: config.connect_timeout,
        head_timeout: config.head_timeout,
        max_opening: (config.max_opening / threads).max(1),
        leave_every: config.leave_every,
        leave_pause: config.leave_pause,
        max_quiet: config.max_quiet,
        stuck_after: config.stuck_after,
        join_live: config.join_live,
    });
    let control = Arc::new(Control::new(threads));
    let mut report = Report {
        label: config.label.clone(),
        url: config.url.clone(),
        streams: config.streams,
        threads,
        reconnect: config.reconnect,
        idle: config.idle,
        max_quiet_ms: config.max_quiet.map(|d| d.as_secs_f64() * 1000.0),
        stuck_after_s: config.stuck_after.map(|d| d.as_secs_f64()),
        join_live: config.join_live,
        tls: url.tls,
        ..Default::default()
    };

    let before_open = sample_proxy()?;
    let mut per_thread: Vec<Vec<StreamPlan>> = vec![Vec::new(); threads];
    for (i, source) in sources.into_iter().enumerate() {
        let template = url
            .per_stream()
            .then(|| RequestTemplate::new(&url.authority, &url::expand(&url.target, i)));
        per_thread[i % threads].push(StreamPlan {
            index: i,
            source,
            template,
        });
    }
    let mut handles = Vec::with_capacity(threads);
    for (i, plans) in per_thread.into_iter().enumerate() {
        let (s, c) = (settings.clone(), control.clone());
        let h = std::thread::Builder::new()
            .name(format!("sse-load-{i}"))
            .spawn(move || driver::run(plans, s, c, i));
        match h {
            Ok(h) => handles.push(h),
            Err(e) => {
                control.stop.store(true, Relaxed);
                for h in handles {
                    let _ = h.join();
                }
                return Err(e.into());
            }
        }
    }

    let mut coord = Coordinator::new(config, &handles);
    let outcome = coord.phases(
        config,
        &control,
        probes,
        before_open,
        &sample_proxy,
        &mut report,
    );
    control.stop.store(true, Relaxed);
    let mut total = Stats::default();
    let mut thread_error = None;
    for h in handles {
        match h.join() {
            Ok(Ok(stats)) => total.merge(&stats),
            Ok(Err(e)) => thread_error = Some(e),
            Err(_) => thread_error = Some(std::io::Error::other("a load thread panicked")),
        }
    }
    if let Some(e) = thread_error {
        return Err(e.into());
    }
    outcome?;
    report.established = control.sum(|p| &p.established);
    report.fill(&total);
    if let Some(cpu) = report.proxy_cpu_s {
        if report.events > 0 {
            report.proxy_cpu_s_per_million_events = Some(cpu * 1e6 / report.events as f64);
        }
    }
    Ok(report)
}

/// The coordinating side of a run: phases and the progress line.
struct Coordinator<'a> {
    /// The load threads: one that returns before the stop flag failed.
    handles: &'a [std::thread::JoinHandle<std::io::Result<Stats>>],
    start: Instant,
    /// Print progress lines.
    progress: bool,
    /// Streams asked for.
    streams: usize,
    next_progress: Instant,
    /// events_total at the last progress line, and when.
    last_events: (u64, Instant),
}

impl<'a> Coordinator<'a> {
    fn new(
        config: &LoadConfig,
        handles: &'a [std::thread::JoinHandle<std::io::Result<Stats>>],
    ) -> Self {
        let now = Instant::now();
        Self {
            handles,
            start: now,
            progress: config.progress,
            streams: config.streams,
            next_progress: now + PROGRESS_EVERY,
            last_events: (0, now),
        }
    }

    /// Sleeps one tick, printing the progress line when due. Fails if a load thread
    /// stopped on its own (its error is reported when it is joined).
    fn tick(&mut self, control: &Control, phase: &str) -> Result<(), LoadError> {
        std::thread::sleep(TICK);
        if self.handles.iter().any(|h| h.is_finished()) {
            return Err(LoadError::Io(std::io::Error::other(
                "a load thread stopped early",
            )));
        }
        let now = Instant::now();
        if now < self.next_progress {
            return Ok(());
        }
        self.next_progress += PROGRESS_EVERY;
        let interval = control.take_interval();
        if !self.progress {
            return Ok(());
        }
        let events = control.sum(|p| &p.events_total);
        let dt = now.duration_since(self.last_events.1).as_secs_f64();
        let rate = (events - self.last_events.0.min(events)) as f64 / dt.max(1e-3);
        self.last_events = (events, now);
        let line = format!(
            "t={}s {phase} streams={}/{} events/s={:.0} p99={:.2}ms gaps={} dups={} \
             reconnects={} errors={}\n",
            now.duration_since(self.start).as_secs(),
            control.sum(|p| &p.open),
            self.streams,
            rate,
            interval.quantile(0.99) as f64 / 1000.0,
            control.sum(|p| &p.gaps),
            control.sum(|p| &p.duplicates),
            control.sum(|p| &p.reconnects),
            control.sum(|p| &p.errors),
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
        Ok(())
    }

    /// Runs the phases; fills the timing and proxy figures of `report` (and with `probes`,
    /// the time to first event: the probes start with the window; the load keeps running
    /// after the window until they are done).
    fn phases(
        &mut self,
        config: &LoadConfig,
        control: &Control,
        probes: Option<ttfe::ProbeConfig>,
        before_open: Option<sys::ProcSample>,
        sample_proxy: &dyn Fn() -> Result<Option<sys::ProcSample>, LoadError>,
        report: &mut Report,
    ) -> Result<(), LoadError> {
        let c = config.streams as u64;
        // Open: until every stream is established, some failed for good, or time is up.
        let open_deadline = self.start + config.open_timeout;
        loop {
            let established = control.sum(|p| &p.established);
            let failed = control.sum(|p| &p.failed_to_open);
            if established == c || established + failed == c || Instant::now() >= open_deadline {
                report.open_s = self.start.elapsed().as_secs_f64();
                if established < c {
                    report.open_failure = Some(format!(
                        "only {established} of {c} streams were established within {:.1} s \
                         ({failed} failed for good; see errors)",
                        report.open_s
                    ));
                    return Ok(());
                }
                break;
            }
            self.tick(control, "open")?;
        }
        if config.idle {
            let settle_until = Instant::now() + config.settle;
            while Instant::now() < settle_until {
                self.tick(control, "settle")?;
            }
            let after = sample_proxy()?;
            if let (Some(b), Some(a)) = (before_open, after) {
                report.proxy_rss_bytes = Some((b.rss_bytes, a.rss_bytes));
                report.rss_per_stream_bytes =
                    Some((a.rss_bytes as f64 - b.rss_bytes as f64) / c as f64);
                report.proxy_open_cpu_s =
                    Some(a.ticks.saturating_sub(b.ticks) as f64 / sys::ticks_per_second() as f64);
            }
        }
        let from = Instant::now() + config.warmup;
        let until = from + config.duration;
        control.set_window(from, until);
        report.warmup_s = config.warmup.as_secs_f64();
        while Instant::now() < from {
            self.tick(control, "warm-up")?;
        }
        let probe_thread = match probes {
            Some(p) => Some(ProbeThread::start(p)?),
            None => None,
        };
        let proxy_start = sample_proxy()?;
        let self_start = sys::self_cpu();
        let window_start = Instant::now();
        let mut end = until;
        loop {
            let now = Instant::now();
            if now >= until {
                break;
            }
            if control.sum(|p| &p.live) == 0 {
                // Every stream is over: nothing more can arrive.
                end = now;
                control.set_window(from, end);
                break;
            }
            self.tick(control, "measure")?;
        }
        let proxy_end = sample_proxy()?;
        report.self_cpu_s = (sys::self_cpu() - self_start).as_secs_f64();
        report.duration_s = end
            .saturating_duration_since(window_start.min(from))
            .as_secs_f64();
        if let (Some(a), Some(b)) = (proxy_start, proxy_end) {
            report.proxy_cpu_s =
                Some(b.ticks.saturating_sub(a.ticks) as f64 / sys::ticks_per_second() as f64);
            report.proxy_rss_window_bytes = Some((a.rss_bytes, b.rss_bytes));
        }
        if let Some(mut t) = probe_thread {
            while !t.finished() {
                self.tick(control, "ttfe probes")?;
            }
            report.ttfe = Some(t.join()?);
        }
        Ok(())
    }
}

/// The thread of the time-to-first-event probes. Dropped before it finished (the run
/// failed), it is told to stop after its current probe and left to end by itself.
struct ProbeThread {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<ProbeResults>>,
}

impl ProbeThread {
    fn start(config: ttfe::ProbeConfig) -> Result<Self, LoadError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("sse-load-ttfe".into())
            .spawn(move || ttfe::run(&config, &flag))?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }

    fn finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    fn join(&mut self) -> Result<ProbeResults, LoadError> {
        let h = self.handle.take().expect("joined once");
        h.join().map_err(|_| {
            LoadError::Io(std::io::Error::other(
                "the time-to-first-event thread panicked",
            ))
        })
    }
}

impl Drop for ProbeThread {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_planned_per_block_of_streams() {
        let target: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let mut c = LoadConfig {
            streams: 5,
            connections_per_source: 2,
            ..Default::default()
        };
        let s = plan_sources(&c, target).unwrap();
        let ip = |d: u8| Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, d)));
        assert_eq!(s, vec![ip(1), ip(1), ip(2), ip(2), ip(3)]);
        c.sources = vec!["127.0.0.9".parse().unwrap()];
        assert!(plan_sources(&c, target).is_err());
        c.sources.push("127.0.0.8".parse().unwrap());
        c.sources.push("127.0.0.7".parse().unwrap());
        assert_eq!(plan_sources(&c, target).unwrap()[4], ip(7));
        c.sources.clear();
        c.streams = 2;
        assert_eq!(plan_sources(&c, target).unwrap(), vec![None, None]);
        c.streams = 3;
        assert!(plan_sources(&c, "10.0.0.1:80".parse().unwrap()).is_err());
    }
}
