//! The admin endpoint (`--admin ADDR`, off by default): `/metrics` (Prometheus text), `/healthz`
//! (200 while accepting, 503 while draining) and `/streams` (JSON of the SSE streams each worker
//! relays, and the passive health of each upstream replica on each worker). Served by worker 0,
//! which asks the other workers for their figures through their inboxes: one message per worker
//! per scrape, no shared counter on the per-event path.

use std::fmt::Write as _;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use monoio::io::AsyncWriteRentExt;
use monoio::net::{TcpListener, TcpStream};

use crate::conn_io::read_more_within;
use crate::http::{HeadLimits, HeadScanner, RequestHead};
use crate::metrics::{render_labelled, render_prometheus};
use crate::sse::directory::{Answer, Message, WorkerStatus};
use crate::worker::WorkerCtx;

/// How long the admin endpoint waits for a request head, and for each worker's figures.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest admin request head, in bytes (past it the connection is closed).
const ADMIN_HEAD_LIMIT: usize = 8 * 1024;

pub async fn serve(ctx: Rc<WorkerCtx>, listener: TcpListener) {
    loop {
        // A plain accept: this loop lives as long as the worker (dropped with the runtime).
        match listener.accept().await {
            Ok((stream, _)) => {
                monoio::spawn(answer(ctx.clone(), stream));
            }
            Err(e) => {
                crate::log_debug!("admin accept: {e}");
                monoio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn answer(ctx: Rc<WorkerCtx>, mut stream: TcpStream) {
    let limits = HeadLimits {
        max_head_bytes: ADMIN_HEAD_LIMIT,
        max_headers: 64,
        max_target_bytes: 1024,
    };
    let deadline = Instant::now() + ADMIN_TIMEOUT;
    let mut scanner = HeadScanner::new();
    let mut buf = BytesMut::new();
    let head = loop {
        match scanner.next_head::<RequestHead>(&mut buf, &limits) {
            Ok(Some(head)) => break head,
            Ok(None) => {}
            Err(_) => return,
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match read_more_within(&mut stream, buf, 1024, left).await {
            Ok((0, _)) | Err(_) => return,
            Ok((_, b)) => buf = b,
        }
    };
    let path = String::from_utf8_lossy(head.target()).into_owned();
    let path = path.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (head.method_str(), path) {
        (b"GET", "/healthz") => {
            if ctx.conns.draining() {
                (503, "text/plain", "draining\n".to_string())
            } else {
                (200, "text/plain", "ok\n".to_string())
            }
        }
        (b"GET", "/metrics") => {
            let statuses = gather(&ctx).await;
            let ejections = ejections_by_upstream(&statuses);
            let generations: Vec<(usize, u64)> = statuses
                .iter()
                .map(|s| (s.worker, s.config_generation))
                .collect();
            let statuses_routes =
                crate::route::stats::sum_by_label(statuses.iter().flat_map(|s| &s.routes));
            let snapshots: Vec<_> = statuses.into_iter().map(|s| s.metrics).collect();
            let mut out = String::new();
            render_prometheus(&snapshots, &mut out);
            render_labelled(
                &mut out,
                (
                    "upstream_ejections_total",
                    "counter",
                    "Times an upstream replica was ejected (--upstream-eject-after), summed over workers.",
                ),
                "upstream",
                &ejections,
            );
            render_route_metrics(&statuses_routes, &mut out);
            crate::reload::render_metrics(&generations, &mut out);
            crate::rules::render_metrics(&mut out);
            if let Some(store) = &ctx.store {
                crate::metrics::render_store(&store.counters.snapshot(), &mut out);
            }
            (200, "text/plain; version=0.0.4", out)
        }
        (b"GET", "/streams") => (200, "application/json", streams_json(&gather(&ctx).await)),
        (b"GET", _) => (
            404,
            "text/plain",
            "not found: try /metrics, /healthz or /streams\n".to_string(),
        ),
        _ => (405, "text/plain", "only GET\n".to_string()),
    };
    let reason = crate::http::reason_phrase(status);
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = monoio::time::timeout(ADMIN_TIMEOUT, stream.write_all(response.into_bytes())).await;
}

/// Every worker's status, this one's first; a worker that does not answer in time is left out.
async fn gather(ctx: &WorkerCtx) -> Vec<WorkerStatus> {
    let mut all = vec![ctx.status()];
    for worker in (0..ctx.directory.workers()).filter(|w| *w != ctx.index) {
        let (token, slot) = ctx.answers.open();
        ctx.directory.post(
            worker,
            Message::Status {
                from: ctx.index,
                token,
            },
        );
        match monoio::time::timeout(ADMIN_TIMEOUT, slot.wait()).await {
            Ok(Answer::Status(status)) => all.push(*status),
            Ok(Answer::Ring(_)) => {}
            Err(_) => {
                ctx.answers.close(token);
                crate::log_warn!("admin: worker {worker} did not report within {ADMIN_TIMEOUT:?}");
            }
        }
    }
    all.sort_by_key(|s| s.worker);
    all
}

/// Each replica's ejections summed over the workers, by URL, in the order of the replicas.
/// `tether_route_requests_total{route="feeds"}` and `tether_route_responses_2xx_total{...}`:
/// each route's counters summed over workers, labelled by its name (or host and prefix).
fn render_route_metrics(routes: &[crate::route::stats::RouteCounts], out: &mut String) {
    let requests: Vec<(String, u64)> = routes
        .iter()
        .map(|r| (r.label.clone(), r.requests))
        .collect();
    render_labelled(
        out,
        (
            "route_requests_total",
            "counter",
            "Requests matched to each route, summed over workers.",
        ),
        "route",
        &requests,
    );
    for (class, name) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
        let samples: Vec<(String, u64)> = routes
            .iter()
            .map(|r| (r.label.clone(), r.responses[class]))
            .collect();
        let metric = format!("route_responses_{name}_total");
        let help = format!("Responses of status {name} to requests of each route.");
        render_labelled(out, (&metric, "counter", &help), "route", &samples);
    }
}

fn ejections_by_upstream(statuses: &[WorkerStatus]) -> Vec<(String, u64)> {
    let mut sums: Vec<(String, u64)> = Vec::new();
    for report in statuses.iter().flat_map(|w| &w.upstreams) {
        match sums.iter_mut().find(|(url, _)| *url == report.url) {
            Some((_, n)) => *n += report.ejections,
            None => sums.push((report.url.clone(), report.ejections)),
        }
    }
    sums
}

/// `{"workers":[{"worker":0,"draining":false,"streams":[{...}],"upstreams":[{...}]}]}`: each
/// worker's SSE streams, and each upstream replica's passive health as that worker sees it
/// (health is learnt per worker, so a replica may be ejected on one and not yet on another).
pub fn streams_json(statuses: &[WorkerStatus]) -> String {
    let mut out = String::from("{\"workers\":[");
    for (i, w) in statuses.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"worker\":{},\"draining\":{},\"streams\":[",
            w.worker, w.draining
        );
        for (j, s) in w.streams.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"path\":{},\"upstream\":{},\"last_id\":{},\"state\":\"{}\",\"resumes\":{},\"tls\":{},\"protocol\":\"{}\",\"ring_events\":{},\"ring_bytes\":{}}}",
                json_string(&s.path),
                json_string(&s.upstream),
                json_string(&s.last_id),
                s.state,
                s.resumes,
                s.tls,
                s.protocol,
                s.ring_events,
                s.ring_bytes
            );
        }
        out.push_str("],\"upstreams\":[");
        for (j, r) in w.upstreams.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"url\":{},\"state\":\"{}\",\"failures\":{},\"ejections\":{},\"back_in_ms\":{}}}",
                json_string(&r.url),
                r.state,
                r.failures,
                r.ejections,
                r.back_in.map_or("null".to_string(), |d| d.as_millis().to_string())
            );
        }
        out.push_str("]}");
    }
    out.push_str("]}\n");
    out
}

/// A JSON string literal with the escapes RFC 8259 requires.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_list_each_workers_upstream_health() {
        use crate::upstream::health::ReplicaReport;
        let report = |url: &str, ejections, back_in: Option<Duration>| ReplicaReport {
            url: url.into(),
            state: if back_in.is_some() {
                "ejected"
            } else {
                "healthy"
            },
            failures: 0,
            ejections,
            back_in,
        };
        let worker = |worker, upstreams| WorkerStatus {
            worker,
            draining: false,
            metrics: Default::default(),
            streams: Vec::new(),
            upstreams,
            config_generation: 1,
            routes: Vec::new(),
        };
        let statuses = [
            worker(
                0,
                vec![
                    report("http://a", 1, Some(Duration::from_millis(2500))),
                    report("http://b", 0, None),
                ],
            ),
            worker(
                1,
                vec![report("http://a", 2, None), report("http://b", 0, None)],
            ),
        ];
        assert_eq!(
            ejections_by_upstream(&statuses),
            [("http://a".to_string(), 3), ("http://b".to_string(), 0)]
        );
        let json = streams_json(&statuses);
        assert!(
            json.starts_with(
                "{\"workers\":[{\"worker\":0,\"draining\":false,\"streams\":[],\"upstreams\":[\
                 {\"url\":\"http://a\",\"state\":\"ejected\",\"failures\":0,\"ejections\":1,\"back_in_ms\":2500},\
                 {\"url\":\"http://b\",\"state\":\"healthy\",\"failures\":0,\"ejections\":0,\"back_in_ms\":null}]},"
            ),
            "{json}"
        );
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
    }
}
