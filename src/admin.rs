//! The admin endpoint (`--admin ADDR`, off by default): `/metrics` (Prometheus text), `/healthz`
//! (200 while accepting, 503 while draining) and `/streams` (JSON of the SSE streams each worker
//! relays). Served by worker 0, which asks the other workers for their figures through their
//! inboxes: one message per worker per scrape, no shared counter on the per-event path.

use std::fmt::Write as _;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use monoio::io::AsyncWriteRentExt;
use monoio::net::{TcpListener, TcpStream};

use crate::conn_io::read_more_within;
use crate::http::{HeadLimits, HeadScanner, RequestHead};
use crate::metrics::render_prometheus;
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
            let snapshots: Vec<_> = statuses.into_iter().map(|s| s.metrics).collect();
            let mut out = String::new();
            render_prometheus(&snapshots, &mut out);
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

/// `{"workers":[{"worker":0,"draining":false,"streams":[{...}]}]}`
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
                "{{\"path\":{},\"upstream\":{},\"last_id\":{},\"state\":\"{}\",\"resumes\":{},\"ring_events\":{},\"ring_bytes\":{}}}",
                json_string(&s.path),
                json_string(&s.upstream),
                json_string(&s.last_id),
                s.state,
                s.resumes,
                s.ring_events,
                s.ring_bytes
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
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n\u{1}é"), "\"a\\\"b\\\\c\\n\\u0001é\"");
    }
}
