//! The result of a run: the figures, a human table and hand-written JSON.

use std::fmt::Write as _;

use super::hist::Histogram;
use super::stats::{ErrorKind, Stats};
use super::ttfe::{ProbeResults, Summary};

/// Silences past `--max-quiet` listed in the report (the longest ones).
pub const MAX_REPORTED_SILENCES: usize = 50;

/// p50, p99, p99.9 and max of a histogram.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Quantiles {
    /// Values in the histogram.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value (exact).
    pub max: u64,
}

impl Quantiles {
    /// The quantiles of `h`.
    pub fn of(h: &Histogram) -> Self {
        Self {
            count: h.count(),
            p50: h.quantile(0.50),
            p99: h.quantile(0.99),
            p999: h.quantile(0.999),
            max: h.max(),
        }
    }
}

/// One kind of error: how many, and the first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorLine {
    /// [`ErrorKind::name`].
    pub kind: &'static str,
    /// Occurrences.
    pub count: u64,
    /// The first message of this kind.
    pub first: String,
}

/// Everything a run measured. Window rule: see [`Stats`].
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// `--label`.
    pub label: String,
    /// The URL the streams were opened to.
    pub url: String,
    /// Streams asked for.
    pub streams: usize,
    /// Streams that received a response head at least once.
    pub established: u64,
    /// Load threads.
    pub threads: usize,
    /// `--reconnect`.
    pub reconnect: bool,
    /// `--idle`.
    pub idle: bool,
    /// Seconds from start until every stream was established (or the open phase gave up).
    pub open_s: f64,
    /// The warm-up that preceded the window (seconds).
    pub warmup_s: f64,
    /// Length of the measured window (seconds; shorter than asked if every stream ended).
    pub duration_s: f64,
    /// Events in the window.
    pub events: u64,
    /// Events over the whole run.
    pub events_total: u64,
    /// Events in the window without `ts_us`.
    pub untimed_events: u64,
    /// events / duration_s.
    pub events_per_s: f64,
    /// SSE body bytes in the window.
    pub bytes: u64,
    /// bytes / duration_s.
    pub bytes_per_s: f64,
    /// Bytes read from sockets in the window.
    pub wire_bytes: u64,
    /// Receive time minus `ts_us`, microseconds.
    pub latency_us: Quantiles,
    /// Skipped ids (whole run).
    pub gaps: u64,
    /// Repeated ids (whole run).
    pub duplicates: u64,
    /// Streams over for good (whole run).
    pub ended_streams: u64,
    /// Drops followed by a reconnection, in the window.
    pub reconnects: u64,
    /// Connection attempts, whole run.
    pub connects: u64,
    /// Last event before a drop to first event after it, microseconds.
    pub reconnect_gap_us: Quantiles,
    /// Proxy utime + stime over the window (seconds), with `--proxy-pid`.
    pub proxy_cpu_s: Option<f64>,
    /// proxy_cpu_s per million events.
    pub proxy_cpu_s_per_million_events: Option<f64>,
    /// Proxy VmRSS before the streams opened and after they settled (bytes), with `--idle`.
    pub proxy_rss_bytes: Option<(u64, u64)>,
    /// (after - before) / streams, with `--idle`.
    pub rss_per_stream_bytes: Option<f64>,
    /// Proxy utime + stime from before the first connect to after the settle (seconds):
    /// what accepting and holding the streams cost, with `--idle`.
    pub proxy_open_cpu_s: Option<f64>,
    /// Proxy VmRSS at the start and at the end of the window (bytes), with `--proxy-pid`.
    pub proxy_rss_window_bytes: Option<(u64, u64)>,
    /// What the time-to-first-event probes found, with `--ttfe`.
    pub ttfe: Option<ProbeResults>,
    /// This process's CPU (user + system, all threads) over the window, seconds.
    pub self_cpu_s: f64,
    /// All errors (whole run).
    pub errors: u64,
    /// Errors by kind (kinds with none left out).
    pub error_lines: Vec<ErrorLine>,
    /// Why the run counts as failed to open its streams (exit status 1).
    pub open_failure: Option<String>,
    /// Comment lines received (a proxy's heartbeats), whole run.
    pub comments: u64,
    /// Connections the streams closed on purpose and reopened (`--leave-every`), whole run.
    pub leaves: u64,
    /// The URL is `https://`.
    pub tls: bool,
    /// TLS handshakes completed by the streams (not the `--ttfe` probes), whole run.
    pub tls_handshakes: u64,
    /// Of those, resumed ones.
    pub tls_resumed: u64,
    /// `--h2-streams-per-conn` (0: every stream its own HTTP/1.1 connection).
    pub h2_streams_per_conn: usize,
    /// HTTP/2 connections opened (each one's ALPN outcome checked to be `h2`).
    pub h2_connections: u64,
    /// Per stream, the longest silence of an open body (no event, no comment),
    /// microseconds: quantiles over the streams.
    pub quiet_us: Quantiles,
    /// `--max-quiet` in milliseconds, when given.
    pub max_quiet_ms: Option<f64>,
    /// Streams whose longest silence exceeded `--max-quiet`.
    pub quiet_over: u64,
    /// The longest silences past `--max-quiet` (at most [`MAX_REPORTED_SILENCES`], longest
    /// first): stream index, seconds since the run started when it ended, length in
    /// microseconds.
    pub long_silences: Vec<(usize, f64, u64)>,
    /// `--stuck-after` in seconds, when given.
    pub stuck_after_s: Option<f64>,
    /// Streams still open at the end whose last event was older than `--stuck-after`.
    pub stuck_streams: u64,
    /// The fewest events one stream received over the whole run.
    pub stream_events_min: Option<u64>,
    /// `--join-live`: ids were checked from each stream's first event, not from 1.
    pub join_live: bool,
    /// Streams that lost at least one event (whole run).
    pub streams_with_gaps: u64,
    /// Streams that received at least one event twice or out of order (whole run).
    pub streams_with_duplicates: u64,
    /// The most events one stream lost.
    pub stream_gaps_max: u64,
    /// The most repeated events of one stream.
    pub stream_duplicates_max: u64,
    /// The lowest and highest first id over the streams (where each one joined).
    pub first_id_range: Option<(u64, u64)>,
}

impl Report {
    /// Fills the counted figures from the merged stats.
    pub(crate) fn fill(&mut self, s: &Stats) {
        let per_s = |v: u64| {
            if self.duration_s > 0.0 {
                v as f64 / self.duration_s
            } else {
                0.0
            }
        };
        self.events = s.events;
        self.events_total = s.events_total;
        self.untimed_events = s.untimed;
        self.events_per_s = per_s(s.events);
        self.bytes = s.bytes;
        self.bytes_per_s = per_s(s.bytes);
        self.wire_bytes = s.wire_bytes;
        self.latency_us = Quantiles::of(&s.latency);
        self.gaps = s.gaps;
        self.duplicates = s.duplicates;
        self.ended_streams = s.ended;
        self.reconnects = s.reconnects;
        self.connects = s.connects;
        self.reconnect_gap_us = Quantiles::of(&s.reconnect_gap);
        self.comments = s.comments;
        self.leaves = s.leaves;
        self.tls_handshakes = s.tls_handshakes;
        self.tls_resumed = s.tls_resumed;
        self.quiet_us = Quantiles::of(&s.quiet);
        self.quiet_over = s.quiet_over;
        let mut long = s.long_silences.clone();
        long.sort_by_key(|s| std::cmp::Reverse(s.2));
        long.truncate(MAX_REPORTED_SILENCES);
        self.long_silences = long;
        self.stuck_streams = s.stuck;
        self.stream_events_min = s.stream_events_min;
        self.streams_with_gaps = s.streams_with_gaps;
        self.streams_with_duplicates = s.streams_with_duplicates;
        self.stream_gaps_max = s.stream_gaps_max;
        self.stream_duplicates_max = s.stream_duplicates_max;
        self.first_id_range = s.first_id_range;
        self.errors = s.errors.total();
        self.error_lines = ErrorKind::ALL
            .iter()
            .enumerate()
            .filter(|(i, _)| s.errors.counts[*i] > 0)
            .map(|(i, k)| ErrorLine {
                kind: k.name(),
                count: s.errors.counts[i],
                first: s.errors.first[i].clone().unwrap_or_default(),
            })
            .collect();
    }

    /// The human table (stdout): a two-column Markdown table.
    pub fn table(&self) -> String {
        let ms = |us: u64| format!("{:.3}", us as f64 / 1000.0);
        let mut rows: Vec<(String, String)> = Vec::new();
        let mut row = |name: &str, value: String| rows.push((name.to_string(), value));
        row("label", self.label.clone());
        row("url", self.url.clone());
        row(
            "streams",
            format!(
                "{} asked, {} established, {} ended",
                self.streams, self.established, self.ended_streams
            ),
        );
        row(
            "mode",
            format!(
                "{}{}, {} thread(s)",
                if self.reconnect {
                    "reconnect"
                } else {
                    "no reconnect"
                },
                if self.idle { ", idle" } else { "" },
                self.threads
            ),
        );
        row("open (s)", format!("{:.2}", self.open_s));
        row(
            "window (s)",
            format!("{:.2} after {:.2} warm-up", self.duration_s, self.warmup_s),
        );
        row(
            "events",
            format!("{} ({} whole run)", self.events, self.events_total),
        );
        row("events/s", format!("{:.0}", self.events_per_s));
        row(
            "SSE bytes/s",
            format!("{:.0} ({} wire bytes)", self.bytes_per_s, self.wire_bytes),
        );
        let l = &self.latency_us;
        row(
            "latency ms p50/p99/p999/max",
            format!(
                "{} / {} / {} / {}",
                ms(l.p50),
                ms(l.p99),
                ms(l.p999),
                ms(l.max)
            ),
        );
        if self.untimed_events > 0 {
            row("events without ts_us", self.untimed_events.to_string());
        }
        row(
            "gaps / duplicates",
            format!("{} / {}", self.gaps, self.duplicates),
        );
        if self.gaps > 0 || self.duplicates > 0 {
            row(
                "streams with gaps / duplicates",
                format!(
                    "{} / {} (most of one stream: {} / {})",
                    self.streams_with_gaps,
                    self.streams_with_duplicates,
                    self.stream_gaps_max,
                    self.stream_duplicates_max
                ),
            );
        }
        if let Some((lo, hi)) = self.first_id_range {
            let how = if self.join_live {
                "ids checked from each stream's first (--join-live)"
            } else {
                "ids checked from 1"
            };
            row("first id of a stream", format!("{lo} .. {hi} ({how})"));
        }
        row(
            "reconnects",
            format!("{} ({} connects)", self.reconnects, self.connects),
        );
        if self.reconnect_gap_us.count > 0 {
            let g = &self.reconnect_gap_us;
            row(
                "reconnect gap ms p50/p99/max",
                format!("{} / {} / {}", ms(g.p50), ms(g.p99), ms(g.max)),
            );
        }
        if self.leaves > 0 {
            row("left and came back", self.leaves.to_string());
        }
        if self.tls {
            row(
                "TLS handshakes",
                format!("{} ({} resumed)", self.tls_handshakes, self.tls_resumed),
            );
        }
        if self.h2_streams_per_conn > 0 {
            row(
                "HTTP/2 connections (ALPN h2)",
                format!(
                    "{} ({} streams each at most)",
                    self.h2_connections, self.h2_streams_per_conn
                ),
            );
        }
        row("comments (heartbeats)", self.comments.to_string());
        if self.quiet_us.count > 0 {
            let q = &self.quiet_us;
            let over = self.max_quiet_ms.map_or(String::new(), |m| {
                format!(", {} over {m:.0} ms", self.quiet_over)
            });
            row(
                "longest silence per stream ms p50/p99/max",
                format!("{} / {} / {}{over}", ms(q.p50), ms(q.p99), ms(q.max)),
            );
        }
        if !self.long_silences.is_empty() {
            let list: Vec<String> = self
                .long_silences
                .iter()
                .take(5)
                .map(|(stream, at, us)| format!("#{stream} {} ms at {at:.1} s", ms(*us)))
                .collect();
            row("longest silences past the bound", list.join(", "));
        }
        if let Some(min) = self.stream_events_min {
            row("fewest events of one stream", min.to_string());
        }
        if let Some(s) = self.stuck_after_s {
            row(
                "stuck streams",
                format!("{} (no event in the last {s:.1} s)", self.stuck_streams),
            );
        }
        if let Some(cpu) = self.proxy_cpu_s {
            let per_m = self
                .proxy_cpu_s_per_million_events
                .map_or(String::new(), |m| format!(", {m:.2} s per million events"));
            row("proxy CPU s", format!("{cpu:.2}{per_m}"));
        }
        if let (Some((before, after)), Some(per)) =
            (self.proxy_rss_bytes, self.rss_per_stream_bytes)
        {
            row(
                "proxy RSS per stream",
                format!("{per:.0} B ({before} -> {after} B)"),
            );
        }
        if let Some((start, end)) = self.proxy_rss_window_bytes {
            row(
                "proxy RSS window start/end",
                format!("{:.1} / {:.1} MB", mib(start), mib(end)),
            );
        }
        if let Some(t) = &self.ttfe {
            let f = t.summary_ms(|s| s.first_event_us);
            let c = t.summary_ms(|s| s.connect_us);
            let h = t.summary_ms(|s| s.head_us);
            row(
                "first event ms p50/p99/max",
                format!(
                    "{:.3} / {:.3} / {:.3} ({} of {} probes, {} failed)",
                    f.p50, f.p99, f.max, f.count, t.asked, t.failed
                ),
            );
            row(
                "  connect / head ms p50",
                format!("{:.3} / {:.3}", c.p50, h.p50),
            );
            if let Some(why) = &t.first_failure {
                row("  first probe failure", why.clone());
            }
        }
        let pct = if self.duration_s >= 0.05 {
            format!(
                " ({:.1}% of one core)",
                100.0 * self.self_cpu_s / self.duration_s
            )
        } else {
            String::new()
        };
        row("sse-load CPU s", format!("{:.2}{pct}", self.self_cpu_s));
        row("errors", self.errors.to_string());
        for e in &self.error_lines {
            row(
                &format!("errors: {}", e.kind),
                format!("{} (first: {})", e.count, e.first),
            );
        }
        if let Some(f) = &self.open_failure {
            row("FAILED", f.clone());
        }
        let w0 = rows
            .iter()
            .map(|r| r.0.chars().count())
            .max()
            .unwrap_or(0)
            .max(6);
        let w1 = rows
            .iter()
            .map(|r| r.1.chars().count())
            .max()
            .unwrap_or(0)
            .max(5);
        let mut t = format!("| {:<w0$} | {:<w1$} |\n", "figure", "value");
        let _ = writeln!(t, "|{}|{}|", "-".repeat(w0 + 2), "-".repeat(w1 + 2));
        for (name, value) in rows {
            let _ = writeln!(t, "| {name:<w0$} | {value:<w1$} |");
        }
        t
    }

    /// Every figure as one JSON object (hand-written; no serde).
    pub fn json(&self) -> String {
        let mut j = Json::default();
        j.str("label", &self.label);
        j.str("url", &self.url);
        j.num("streams", self.streams as f64);
        j.num("established", self.established as f64);
        j.num("threads", self.threads as f64);
        j.bool("reconnect", self.reconnect);
        j.bool("idle", self.idle);
        j.num("open_s", self.open_s);
        j.num("warmup_s", self.warmup_s);
        j.num("duration_s", self.duration_s);
        j.num("events", self.events as f64);
        j.num("events_total", self.events_total as f64);
        j.num("untimed_events", self.untimed_events as f64);
        j.num("events_per_s", self.events_per_s);
        j.num("bytes", self.bytes as f64);
        j.num("bytes_per_s", self.bytes_per_s);
        j.num("wire_bytes", self.wire_bytes as f64);
        let l = &self.latency_us;
        j.raw(
            "latency_us",
            &format!(
                "{{\"count\":{},\"p50\":{},\"p99\":{},\"p999\":{},\"max\":{}}}",
                l.count, l.p50, l.p99, l.p999, l.max
            ),
        );
        j.num("gaps", self.gaps as f64);
        j.num("duplicates", self.duplicates as f64);
        j.bool("join_live", self.join_live);
        j.num("streams_with_gaps", self.streams_with_gaps as f64);
        j.num(
            "streams_with_duplicates",
            self.streams_with_duplicates as f64,
        );
        j.num("stream_gaps_max", self.stream_gaps_max as f64);
        j.num("stream_duplicates_max", self.stream_duplicates_max as f64);
        j.opt("first_id_min", self.first_id_range.map(|r| r.0 as f64));
        j.opt("first_id_max", self.first_id_range.map(|r| r.1 as f64));
        j.num("ended_streams", self.ended_streams as f64);
        j.num("reconnects", self.reconnects as f64);
        j.num("connects", self.connects as f64);
        let g = &self.reconnect_gap_us;
        let ms = |us: u64| us as f64 / 1000.0;
        j.raw(
            "reconnect_gap_ms",
            &format!(
                "{{\"count\":{},\"p50\":{},\"p99\":{},\"max\":{}}}",
                g.count,
                fmt_num(ms(g.p50)),
                fmt_num(ms(g.p99)),
                fmt_num(ms(g.max))
            ),
        );
        j.opt("proxy_cpu_s", self.proxy_cpu_s);
        j.opt(
            "proxy_cpu_s_per_million_events",
            self.proxy_cpu_s_per_million_events,
        );
        j.opt(
            "proxy_rss_before_bytes",
            self.proxy_rss_bytes.map(|r| r.0 as f64),
        );
        j.opt(
            "proxy_rss_after_bytes",
            self.proxy_rss_bytes.map(|r| r.1 as f64),
        );
        j.opt("rss_per_stream_bytes", self.rss_per_stream_bytes);
        j.opt("proxy_open_cpu_s", self.proxy_open_cpu_s);
        j.opt(
            "proxy_rss_window_start_bytes",
            self.proxy_rss_window_bytes.map(|r| r.0 as f64),
        );
        j.opt(
            "proxy_rss_window_end_bytes",
            self.proxy_rss_window_bytes.map(|r| r.1 as f64),
        );
        match &self.ttfe {
            Some(t) => {
                j.num("ttfe_probes", t.asked as f64);
                j.num("ttfe_failed", t.failed as f64);
                match &t.first_failure {
                    Some(f) => j.str("ttfe_first_failure", f),
                    None => j.raw("ttfe_first_failure", "null"),
                }
                j.raw(
                    "ttfe_ms",
                    &summary_json(&t.summary_ms(|s| s.first_event_us)),
                );
                j.raw(
                    "ttfe_connect_ms",
                    &summary_json(&t.summary_ms(|s| s.connect_us)),
                );
                j.raw("ttfe_head_ms", &summary_json(&t.summary_ms(|s| s.head_us)));
                let samples: Vec<String> = t
                    .samples
                    .iter()
                    .map(|s| fmt_num(s.first_event_us as f64 / 1000.0))
                    .collect();
                j.raw("ttfe_samples_ms", &format!("[{}]", samples.join(",")));
            }
            None => {
                j.num("ttfe_probes", 0.0);
                for k in [
                    "ttfe_failed",
                    "ttfe_first_failure",
                    "ttfe_ms",
                    "ttfe_connect_ms",
                    "ttfe_head_ms",
                    "ttfe_samples_ms",
                ] {
                    j.raw(k, "null");
                }
            }
        }
        j.num("comments", self.comments as f64);
        j.num("leaves", self.leaves as f64);
        j.bool("tls", self.tls);
        j.num("tls_handshakes", self.tls_handshakes as f64);
        j.num("tls_resumed", self.tls_resumed as f64);
        j.num("h2_streams_per_conn", self.h2_streams_per_conn as f64);
        j.num("h2_connections", self.h2_connections as f64);
        let q = &self.quiet_us;
        j.raw(
            "quiet_ms",
            &format!(
                "{{\"count\":{},\"p50\":{},\"p99\":{},\"max\":{}}}",
                q.count,
                fmt_num(ms(q.p50)),
                fmt_num(ms(q.p99)),
                fmt_num(ms(q.max))
            ),
        );
        j.opt("max_quiet_ms", self.max_quiet_ms);
        j.num("quiet_over", self.quiet_over as f64);
        let long: Vec<String> = self
            .long_silences
            .iter()
            .map(|(stream, at, us)| {
                format!(
                    "{{\"stream\":{stream},\"end_s\":{},\"ms\":{}}}",
                    fmt_num(*at),
                    fmt_num(*us as f64 / 1000.0)
                )
            })
            .collect();
        j.raw("long_silences", &format!("[{}]", long.join(",")));
        j.opt("stuck_after_s", self.stuck_after_s);
        j.num("stuck_streams", self.stuck_streams as f64);
        j.opt(
            "stream_events_min",
            self.stream_events_min.map(|v| v as f64),
        );
        j.num("self_cpu_s", self.self_cpu_s);
        j.num("errors", self.errors as f64);
        let mut by_kind = Json::default();
        for e in &self.error_lines {
            by_kind.raw(
                e.kind,
                &format!(
                    "{{\"count\":{},\"first\":{}}}",
                    e.count,
                    json_string(&e.first)
                ),
            );
        }
        j.raw("errors_by_kind", &by_kind.finish());
        match &self.open_failure {
            Some(f) => j.str("open_failure", f),
            None => j.raw("open_failure", "null"),
        }
        j.finish()
    }
}

/// Bytes as MiB.
fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

/// `{"count":N,"p50":..,"p99":..,"max":..,"mean":..}` of a summary (null figures when it
/// has no sample).
fn summary_json(s: &Summary) -> String {
    let v = |x: f64| {
        if s.count == 0 {
            "null".to_string()
        } else {
            fmt_num(x)
        }
    };
    format!(
        "{{\"count\":{},\"p50\":{},\"p99\":{},\"max\":{},\"mean\":{}}}",
        s.count,
        v(s.p50),
        v(s.p99),
        v(s.max),
        v(s.mean)
    )
}

/// A JSON object being written, key by key.
#[derive(Default)]
struct Json {
    out: String,
}

impl Json {
    fn key(&mut self, k: &str) {
        self.out.push(if self.out.is_empty() { '{' } else { ',' });
        self.out.push_str(&json_string(k));
        self.out.push(':');
    }
    fn raw(&mut self, k: &str, v: &str) {
        self.key(k);
        self.out.push_str(v);
    }
    fn str(&mut self, k: &str, v: &str) {
        self.raw(k, &json_string(v));
    }
    fn num(&mut self, k: &str, v: f64) {
        self.raw(k, &fmt_num(v));
    }
    fn opt(&mut self, k: &str, v: Option<f64>) {
        match v {
            Some(v) => self.num(k, v),
            None => self.raw(k, "null"),
        }
    }
    fn bool(&mut self, k: &str, v: bool) {
        self.raw(k, if v { "true" } else { "false" });
    }
    fn finish(mut self) -> String {
        if self.out.is_empty() {
            self.out.push('{');
        }
        self.out.push('}');
        self.out
    }
}

/// A JSON number: integers without a fraction, others with up to 6 decimals; non-finite
/// values (which JSON cannot hold) become null.
fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        "null".into()
    } else if v.fract() == 0.0 && v.abs() < 9.0e15 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A JSON string literal (RFC 8259 escaping), shared with the simulator's request log.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    crate::upstream::push_json_str(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_and_numbers() {
        assert_eq!(json_string("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
        assert_eq!(fmt_num(3.0), "3");
        assert_eq!(fmt_num(0.25), "0.25");
        assert_eq!(fmt_num(1.0 / 3.0), "0.333333");
        assert_eq!(fmt_num(f64::NAN), "null");
    }

    #[test]
    fn json_has_every_figure() {
        let r = Report {
            label: "tether \"x\"".into(),
            streams: 10,
            duration_s: 2.0,
            proxy_cpu_s: Some(0.5),
            error_lines: vec![ErrorLine {
                kind: "connect",
                count: 2,
                first: "refused".into(),
            }],
            ..Default::default()
        };
        let j = r.json();
        for key in [
            "label",
            "streams",
            "duration_s",
            "events",
            "events_per_s",
            "bytes_per_s",
            "latency_us",
            "p50",
            "p99",
            "p999",
            "max",
            "gaps",
            "duplicates",
            "ended_streams",
            "reconnects",
            "reconnect_gap_ms",
            "proxy_cpu_s",
            "proxy_cpu_s_per_million_events",
            "rss_per_stream_bytes",
            "errors",
            "self_cpu_s",
            "proxy_rss_window_start_bytes",
            "proxy_rss_window_end_bytes",
            "ttfe_probes",
            "ttfe_ms",
            "ttfe_samples_ms",
        ] {
            assert!(j.contains(&format!("\"{key}\":")), "{key} in {j}");
        }
        assert!(j.starts_with("{\"label\":\"tether \\\"x\\\"\","));
        assert!(j.contains("\"proxy_cpu_s\":0.5,"));
        assert!(j.contains("\"rss_per_stream_bytes\":null"));
        assert!(j.contains("\"errors_by_kind\":{\"connect\":{\"count\":2,\"first\":\"refused\"}}"));
        assert!(j.ends_with('}'));
        // Balanced braces outside strings: a cheap well-formedness check.
        let mut depth = 0i32;
        let mut in_str = false;
        let mut esc = false;
        for c in j.chars() {
            match (in_str, esc, c) {
                (true, true, _) => esc = false,
                (true, false, '\\') => esc = true,
                (true, false, '"') => in_str = false,
                (false, _, '"') => in_str = true,
                (false, _, '{') => depth += 1,
                (false, _, '}') => depth -= 1,
                _ => {}
            }
        }
        assert_eq!(depth, 0);
        assert!(r.table().contains("| streams"));
        assert!(j.contains("\"ttfe_probes\":0,") && j.contains("\"ttfe_ms\":null"));
    }

    #[test]
    fn json_and_table_carry_the_probes() {
        use crate::load::ttfe::ProbeSample;
        let sample = |first_event_us| ProbeSample {
            connect_us: 50,
            head_us: 500,
            first_event_us,
        };
        let r = Report {
            proxy_rss_window_bytes: Some((10 << 20, 30 << 20)),
            ttfe: Some(ProbeResults {
                asked: 4,
                samples: vec![sample(1_000), sample(3_000), sample(2_500)],
                failed: 1,
                first_failure: Some("probe 3: no first event".into()),
            }),
            ..Default::default()
        };
        let j = r.json();
        assert!(
            j.contains("\"proxy_rss_window_end_bytes\":31457280,"),
            "{j}"
        );
        assert!(j.contains("\"ttfe_probes\":4,\"ttfe_failed\":1,"), "{j}");
        assert!(
            j.contains("\"ttfe_ms\":{\"count\":3,\"p50\":2.5,\"p99\":2.99,\"max\":3,"),
            "{j}"
        );
        assert!(j.contains("\"ttfe_samples_ms\":[1,3,2.5]"), "{j}");
        assert!(
            j.contains("\"ttfe_connect_ms\":{\"count\":3,\"p50\":0.05,"),
            "{j}"
        );
        let t = r.table();
        assert!(
            t.contains("2.500 / 2.990 / 3.000 (3 of 4 probes, 1 failed)"),
            "{t}"
        );
        assert!(t.contains("10.0 / 30.0 MB"), "{t}");
    }
}
