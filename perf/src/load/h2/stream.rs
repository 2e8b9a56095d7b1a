//! One SSE stream on an HTTP/2 connection: the GET, the response head's checks (200,
//! `text/event-stream`, as the HTTP/1.1 path asks), then every DATA frame through the same
//! SSE parser and the same id tracking ([`crate::load::track`]) as an HTTP/1.1 stream.

use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use h2::client::SendRequest;

use super::Shared;
use crate::load::sse::{Event, SseParser};
use crate::load::stats::{ErrorKind, Stats};
use crate::load::track::{count_event, IdTracker, IdVerdict};

/// What one stream counted (the per-stream figures of the report are made from these at the
/// end of the run, as the HTTP/1.1 driver makes them from its streams).
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// Ids in order, gaps, duplicates.
    pub tracker: IdTracker,
    /// Events received over the whole run.
    pub events: u64,
    /// Ids skipped.
    pub gaps: u64,
    /// Ids repeated.
    pub duplicates: u64,
    /// Comment lines (heartbeats) received.
    pub comments: u64,
}

impl Tally {
    /// Counts one event (the same rules as the HTTP/1.1 path's `Tally::event`).
    #[inline]
    fn event(&mut self, ev: Event, wall_us: u64, measuring: bool, stats: &mut Stats) {
        stats.events_total += 1;
        self.events += 1;
        match count_event(&ev, &mut self.tracker, wall_us, measuring, stats) {
            IdVerdict::InOrder => {}
            IdVerdict::Gap(n) => self.gaps += n,
            IdVerdict::Duplicate => self.duplicates += 1,
        }
    }
}

/// Unix time in microseconds (compared with the origin's `ts_us`: same machine, same clock).
fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Runs stream `index` on `send`'s connection until its body ends or breaks (or the run is
/// dropped). Counts into `shared`.
pub(crate) async fn run(
    index: usize,
    send: SendRequest<Bytes>,
    uri: http::Uri,
    head_timeout: Duration,
    shared: Rc<Shared>,
) {
    let fail = |kind: ErrorKind, msg: String| {
        shared.stats.borrow_mut().errors.add(kind, || msg);
        shared.failed.set(shared.failed.get() + 1);
    };
    // Waits while the connection has as many streams open as the server allows.
    let mut send = match send.ready().await {
        Ok(s) => s,
        Err(e) => return fail(ErrorKind::Io, format!("h2 connection not ready: {e}")),
    };
    let request = http::Request::get(uri)
        .header("accept", "text/event-stream")
        .header("cache-control", "no-cache")
        .header("user-agent", "sse-load")
        .body(())
        .expect("a GET with fixed headers is a valid request");
    let response = match send.send_request(request, true) {
        Ok((r, _)) => r,
        Err(e) => return fail(ErrorKind::Io, format!("h2 request: {e}")),
    };
    let response = match tokio::time::timeout(head_timeout, response).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return fail(ErrorKind::Io, format!("h2 response: {e}")),
        Err(_) => return fail(ErrorKind::HeadTimeout, "no response head in time".into()),
    };
    let event_stream = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if response.status() != 200 || !event_stream {
        return fail(
            ErrorKind::Status,
            format!(
                "status {} content-type {:?}",
                response.status(),
                response.headers().get("content-type")
            ),
        );
    }
    shared.established.set(shared.established.get() + 1);
    shared.live.set(shared.live.get() + 1);
    let mut body = response.into_body();
    let mut parser = SseParser::new();
    while let Some(data) = body.data().await {
        let chunk = match data {
            Ok(c) => c,
            Err(e) => {
                shared
                    .stats
                    .borrow_mut()
                    .errors
                    .add(ErrorKind::Io, || format!("h2 stream: {e}"));
                break;
            }
        };
        // Given back at once: the window stays open, as a browser's would.
        let _ = body.flow_control().release_capacity(chunk.len());
        let measuring = shared.window.get().contains(Instant::now());
        let wall = wall_us();
        let mut stats = shared.stats.borrow_mut();
        let mut tallies = shared.tallies.borrow_mut();
        let tally = &mut tallies[index];
        if measuring {
            stats.bytes += chunk.len() as u64;
            stats.wire_bytes += chunk.len() as u64;
        }
        let parsed = parser.feed(&chunk, &mut |ev| {
            tally.event(ev, wall, measuring, &mut stats)
        });
        tally.comments = parser.comments();
        if let Err(e) = parsed {
            stats.errors.add(ErrorKind::Protocol, || e.to_string());
            break;
        }
    }
    shared.live.set(shared.live.get() - 1);
    shared.stats.borrow_mut().ended += 1;
}
