//! Serving a reconnection from the replay rings: find the client's `Last-Event-ID` in this
//! worker's ring, or in the ring of the worker that filled it, and work out what the client missed.

use std::time::Duration;

use bytes::Bytes;

use super::directory::{Answer, Message};
use super::key::StreamKey;
use super::relay::Replay;
use super::ring::{Lookup, RingEvent};
use crate::http::{Method, RequestHead};
use crate::metrics::WorkerMetrics;
use crate::worker::WorkerCtx;

/// How long a worker waits for another worker's ring before treating the id as unknown (the
/// request then goes upstream unchanged).
const RING_QUERY_TIMEOUT: Duration = Duration::from_millis(500);

/// A reconnection the rings can serve.
pub struct ReplayPlan {
    pub key: StreamKey,
    pub replay: Replay,
    /// The newest id held: the upstream is asked to resume from it instead of the client's.
    pub resume_from: Option<Bytes>,
}

/// For a GET carrying `Last-Event-ID: X`: where X is in a ring (ours first, then other workers'),
/// the blocks after it, the ids the client has, and the id to ask the upstream for. None when
/// the request is not a reconnection or X is in no ring (the upstream then decides).
pub async fn plan(ctx: &WorkerCtx, head: &RequestHead) -> Option<ReplayPlan> {
    if head.method != Method::Get {
        return None;
    }
    let last_id = head.header("last-event-id").filter(|v| !v.is_empty())?;
    let key = StreamKey::of(head);
    if let Some(stream) = ctx.streams.get(&key) {
        let ring = stream.ring.borrow();
        if let Lookup::After(seq) = ring.lookup(last_id) {
            let missed = ring.after(seq).map(|e| e.raw.clone()).collect();
            let delivered = ring.after(0).filter_map(|e| e.id.clone()).collect();
            let resume_from = ring.newest_id().cloned();
            WorkerMetrics::inc(&ctx.metrics.replays_served);
            return Some(ReplayPlan {
                key,
                replay: Replay {
                    missed,
                    delivered,
                    cursor: resume_from.clone(),
                },
                resume_from,
            });
        }
    }
    for worker in ctx.directory.holders(&key, ctx.index) {
        let Some(events) = ask(ctx, worker, &key).await else {
            continue;
        };
        if let Some(plan) = plan_from(&key, &events, last_id) {
            // Later reconnections that land here find the events too.
            let lease = ctx.streams.lease(&key);
            ctx.streams.seed(&lease, &events);
            WorkerMetrics::inc(&ctx.metrics.replays_served);
            return Some(plan);
        }
    }
    WorkerMetrics::inc(&ctx.metrics.replays_missed);
    None
}

/// Asks `worker` for its ring of `key`. None when it has none, or does not answer in time.
async fn ask(ctx: &WorkerCtx, worker: usize, key: &StreamKey) -> Option<Vec<RingEvent>> {
    let (token, slot) = ctx.answers.open();
    ctx.directory.post(
        worker,
        Message::Query {
            key: key.clone(),
            from: ctx.index,
            token,
        },
    );
    match monoio::time::timeout(RING_QUERY_TIMEOUT, slot.wait()).await {
        Ok(Answer::Ring(events)) => events,
        Ok(Answer::Status(_)) => None,
        Err(_) => {
            ctx.answers.close(token);
            crate::log_warn!(
                "worker {worker} did not answer a replay query within {RING_QUERY_TIMEOUT:?}"
            );
            None
        }
    }
}

fn plan_from(key: &StreamKey, events: &[RingEvent], last_id: &[u8]) -> Option<ReplayPlan> {
    let at = events
        .iter()
        .rposition(|e| e.id.as_deref() == Some(last_id))?;
    let missed = events[at + 1..].iter().map(|e| e.raw.clone()).collect();
    let delivered: Vec<Bytes> = events.iter().filter_map(|e| e.id.clone()).collect();
    let resume_from = events.iter().rev().find_map(|e| e.id.clone());
    Some(ReplayPlan {
        key: key.clone(),
        replay: Replay {
            missed,
            delivered,
            cursor: resume_from.clone(),
        },
        resume_from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, id: Option<&str>, raw: &str) -> RingEvent {
        RingEvent {
            seq,
            id: id.map(|s| Bytes::copy_from_slice(s.as_bytes())),
            raw: Bytes::copy_from_slice(raw.as_bytes()),
        }
    }

    #[test]
    fn plan_from_another_workers_ring() {
        let raw = "GET /s HTTP/1.1\r\nHost: x\r\n\r\n";
        let key = StreamKey::of(
            &RequestHead::parse(Bytes::from(raw), &crate::http::HeadLimits::default()).unwrap(),
        );
        let events = vec![
            ev(1, Some("1"), "a"),
            ev(2, None, "b"),
            ev(3, Some("3"), "c"),
            ev(4, Some("4"), "d"),
        ];
        let plan = plan_from(&key, &events, b"1").unwrap();
        assert_eq!(
            plan.replay.missed,
            vec![Bytes::from("b"), Bytes::from("c"), Bytes::from("d")]
        );
        assert_eq!(plan.resume_from.as_deref(), Some(&b"4"[..]));
        assert_eq!(plan.replay.delivered.len(), 3);
        assert!(plan_from(&key, &events, b"9").is_none());
        assert!(plan_from(&key, &events, b"4")
            .unwrap()
            .replay
            .missed
            .is_empty());
    }
}
