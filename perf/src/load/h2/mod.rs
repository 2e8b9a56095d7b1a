//! `--h2-streams-per-conn M`: the load over HTTP/2. C streams on ceil(C / M) connections, M
//! concurrent SSE streams each (the last connection takes the rest), every stream's ids
//! checked as on the HTTP/1.1 path, the same report.
//!
//! ```text
//! one thread, a current-thread tokio runtime and a LocalSet (all state in Rc/Cell):
//!   per connection: TCP -> TLS (ALPN h2, checked) -> h2 handshake -> driver task
//!                   M stream tasks: GET -> 200 text/event-stream -> DATA -> SSE parser -> ids
//!   the coordinator (this module): open -> [idle: settle, RSS] -> warm-up -> window -> report
//! ```
//! Why a second client and not the epoll driver: HTTP/2 is a connection-level state machine
//! (HPACK, stream states, flow control) shared by many streams; hyperium's `h2` (the crate
//! tether serves HTTP/2 with, so its behaviour is known here) is written for tokio.
//!
//! Not here (refused with a message): `--reconnect`, `--leave-every`, `--ttfe`, more than one
//! thread. Streams are opened all at once (connections in parallel; the few handshakes are not
//! limited by `--max-opening`). `wire_bytes` counts DATA payload (TLS and frame headers are
//! not seen through the h2 crate). The quiet-time and stuck-stream figures are not measured.

mod conn;
mod stream;

pub use conn::{CONNECTION_WINDOW, STREAM_WINDOW};

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::control::Window;
use super::stats::Stats;
use super::url::{self, HttpUrl};
use super::{sys, tls_client, LoadConfig, LoadError, Report};
use stream::Tally;

/// How often the coordinator looks at the phase conditions.
const TICK: Duration = Duration::from_millis(20);
/// How often the progress line is printed.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What the tasks of a run share (one thread: cells, no locks).
pub(crate) struct Shared {
    /// The measured window (unset until the coordinator fixes it).
    window: Cell<Window>,
    /// Everything counted.
    stats: RefCell<Stats>,
    /// Per stream, by index.
    tallies: RefCell<Vec<Tally>>,
    /// Streams that received their response head.
    established: Cell<u64>,
    /// Streams that failed before their head (their connection or their request).
    failed: Cell<u64>,
    /// Streams whose body is open.
    live: Cell<u64>,
    /// Connections that negotiated h2 and finished the h2 handshake.
    h2_connections: Cell<u64>,
}

/// Runs the load of `config` over HTTP/2 (`config.h2_streams_per_conn` > 0).
pub(crate) fn run(config: &LoadConfig) -> Result<Report, LoadError> {
    let per = config.h2_streams_per_conn;
    let url = HttpUrl::parse(&config.url).map_err(LoadError::Config)?;
    if !url.tls {
        return Err(LoadError::Config(
            "--h2-streams-per-conn needs an https:// URL (HTTP/2 is chosen in TLS's ALPN)".into(),
        ));
    }
    let refused = [
        (config.reconnect, "--reconnect"),
        (!config.leave_every.is_zero(), "--leave-every"),
        (config.ttfe > 0, "--ttfe"),
        (config.threads > 1, "--threads above 1"),
    ];
    if let Some((_, flag)) = refused.iter().find(|(on, _)| *on) {
        return Err(LoadError::Config(format!(
            "{flag} is not supported with --h2-streams-per-conn"
        )));
    }
    if config.streams == 0 {
        return Err(LoadError::Config("--streams must be at least 1".into()));
    }
    if config.idle && config.proxy_pids.is_empty() {
        return Err(LoadError::Config("--idle needs --proxy-pid".into()));
    }
    let tls = tls_client(&url, config.trust.as_ref())?.expect("https has a TLS client");
    let target = url.resolve().map_err(LoadError::Config)?;
    sys::raise_nofile_limit();
    let (tls_config, server_name) = tls.for_h2();
    let endpoint = Rc::new(conn::Endpoint {
        target,
        tls: tls_config,
        server_name,
        connect_timeout: config.connect_timeout,
        handshake_timeout: config.head_timeout,
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let shared = Rc::new(Shared {
        window: Cell::new(Window {
            from: None,
            until: None,
        }),
        stats: RefCell::new(Stats::default()),
        tallies: RefCell::new((0..config.streams).map(|_| Tally::default()).collect()),
        established: Cell::new(0),
        failed: Cell::new(0),
        live: Cell::new(0),
        h2_connections: Cell::new(0),
    });
    let mut report = Report {
        label: config.label.clone(),
        url: config.url.clone(),
        streams: config.streams,
        threads: 1,
        idle: config.idle,
        join_live: config.join_live,
        tls: true,
        h2_streams_per_conn: per,
        ..Default::default()
    };
    let local = tokio::task::LocalSet::new();
    let outcome = local.block_on(&runtime, async {
        let connections = config.streams.div_ceil(per);
        for c in 0..connections {
            let streams: Vec<usize> = (c * per..((c + 1) * per).min(config.streams)).collect();
            let (endpoint, s) = (endpoint.clone(), shared.clone());
            let uris: Result<Vec<http::Uri>, LoadError> = streams
                .iter()
                .map(|&i| {
                    let target = if url.per_stream() {
                        url::expand(&url.target, i)
                    } else {
                        url.target.clone()
                    };
                    format!("https://{}{target}", url.authority)
                        .parse::<http::Uri>()
                        .map_err(|e| LoadError::Config(format!("{}: {e}", config.url)))
                })
                .collect();
            let uris = uris?;
            let head_timeout = config.head_timeout;
            tokio::task::spawn_local(async move {
                match conn::open(&endpoint, &s).await {
                    Ok(send) => {
                        for (i, uri) in streams.into_iter().zip(uris) {
                            let task = stream::run(i, send.clone(), uri, head_timeout, s.clone());
                            tokio::task::spawn_local(task);
                        }
                    }
                    Err((kind, msg)) => {
                        s.stats.borrow_mut().errors.add(kind, || msg);
                        s.failed.set(s.failed.get() + streams.len() as u64);
                    }
                }
            });
        }
        phases(config, &shared, &mut report).await
    });
    // Per-stream figures, as the HTTP/1.1 driver makes them at its end.
    let mut total = shared.stats.borrow().clone();
    for t in shared.tallies.borrow().iter() {
        total.comments += t.comments;
        total.streams_with_gaps += u64::from(t.gaps > 0);
        total.streams_with_duplicates += u64::from(t.duplicates > 0);
        total.stream_gaps_max = total.stream_gaps_max.max(t.gaps);
        total.stream_duplicates_max = total.stream_duplicates_max.max(t.duplicates);
        if let Some(first) = t.tracker.first() {
            total.add_first_id(first);
        }
        total.stream_events_min = Some(
            total
                .stream_events_min
                .map_or(t.events, |m| m.min(t.events)),
        );
    }
    // Every task (streams, connections) goes with the runtime: sockets closed.
    drop(local);
    drop(runtime);
    outcome?;
    report.established = shared.established.get();
    report.h2_connections = shared.h2_connections.get();
    report.fill(&total);
    if let Some(cpu) = report.proxy_cpu_s {
        if report.events > 0 {
            report.proxy_cpu_s_per_million_events = Some(cpu * 1e6 / report.events as f64);
        }
    }
    Ok(report)
}

/// The phases of the HTTP/1.1 coordinator (`super::Coordinator::phases`), without probes:
/// open (every stream established, or the run fails), with `idle` settle and sample the
/// proxy's RSS, warm up, measure; fills the timing and proxy figures of `report`.
async fn phases(
    config: &LoadConfig,
    shared: &Shared,
    report: &mut Report,
) -> Result<(), LoadError> {
    let start = Instant::now();
    let sample = || -> Result<Option<sys::ProcSample>, LoadError> {
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
    let mut progress = Progress::new(config.progress, config.streams);
    let before_open = sample()?;
    let c = config.streams as u64;
    let open_deadline = start + config.open_timeout;
    loop {
        let (established, failed) = (shared.established.get(), shared.failed.get());
        if established == c || established + failed >= c || Instant::now() >= open_deadline {
            report.open_s = start.elapsed().as_secs_f64();
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
        progress.tick(shared, "open").await;
    }
    if config.idle {
        let until = Instant::now() + config.settle;
        while Instant::now() < until {
            progress.tick(shared, "settle").await;
        }
        if let (Some(b), Some(a)) = (before_open, sample()?) {
            report.proxy_rss_bytes = Some((b.rss_bytes, a.rss_bytes));
            report.rss_per_stream_bytes =
                Some((a.rss_bytes as f64 - b.rss_bytes as f64) / c as f64);
            report.proxy_open_cpu_s =
                Some(a.ticks.saturating_sub(b.ticks) as f64 / sys::ticks_per_second() as f64);
        }
    }
    let from = Instant::now() + config.warmup;
    let until = from + config.duration;
    shared.window.set(Window {
        from: Some(from),
        until: Some(until),
    });
    report.warmup_s = config.warmup.as_secs_f64();
    while Instant::now() < from {
        progress.tick(shared, "warm-up").await;
    }
    let proxy_start = sample()?;
    let self_start = sys::self_cpu();
    let window_start = Instant::now();
    let mut end = until;
    loop {
        let now = Instant::now();
        if now >= until {
            break;
        }
        if shared.live.get() == 0 {
            end = now;
            shared.window.set(Window {
                from: Some(from),
                until: Some(end),
            });
            break;
        }
        progress.tick(shared, "measure").await;
    }
    let proxy_end = sample()?;
    report.self_cpu_s = (sys::self_cpu() - self_start).as_secs_f64();
    report.duration_s = end
        .saturating_duration_since(window_start.min(from))
        .as_secs_f64();
    if let (Some(a), Some(b)) = (proxy_start, proxy_end) {
        report.proxy_cpu_s =
            Some(b.ticks.saturating_sub(a.ticks) as f64 / sys::ticks_per_second() as f64);
        report.proxy_rss_window_bytes = Some((a.rss_bytes, b.rss_bytes));
    }
    Ok(())
}

/// The once-a-second progress line on stderr (as the HTTP/1.1 path prints it).
struct Progress {
    on: bool,
    streams: usize,
    start: Instant,
    next: Instant,
    /// events_total at the last line, and when.
    last: (u64, Instant),
}

impl Progress {
    fn new(on: bool, streams: usize) -> Self {
        let now = Instant::now();
        Self {
            on,
            streams,
            start: now,
            next: now + PROGRESS_EVERY,
            last: (0, now),
        }
    }

    /// Sleeps one tick (the stream tasks run meanwhile) and prints the line when due.
    async fn tick(&mut self, shared: &Shared, phase: &str) {
        tokio::time::sleep(TICK).await;
        let now = Instant::now();
        if now < self.next {
            return;
        }
        self.next += PROGRESS_EVERY;
        let mut stats = shared.stats.borrow_mut();
        let p99 = stats.interval.quantile(0.99) as f64 / 1000.0;
        stats.interval.clear();
        if !self.on {
            return;
        }
        let events = stats.events_total;
        let dt = now.duration_since(self.last.1).as_secs_f64().max(1e-3);
        let rate = (events - self.last.0.min(events)) as f64 / dt;
        self.last = (events, now);
        let line = format!(
            "t={}s {phase} streams={}/{} h2 connections={} events/s={rate:.0} p99={p99:.2}ms \
             gaps={} dups={} errors={}\n",
            now.duration_since(self.start).as_secs(),
            shared.live.get(),
            self.streams,
            shared.h2_connections.get(),
            stats.gaps,
            stats.duplicates,
            stats.errors.total(),
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}
