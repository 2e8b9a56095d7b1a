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
    /// What the upstream is asked to resume from instead of the client's id: the newest id the
    /// upstream itself gave that the ring holds. Empty when the ring holds only ids tether
    /// assigned: the client's header is then removed, never sent upstream.
    pub resume_from: Bytes,
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
        if ring.lookup(last_id) != Lookup::Unknown {
            let events: Vec<RingEvent> = ring.after(0).cloned().collect();
            let plan = plan_from(&key, &events, last_id, ring.head_seq());
            if plan.is_some() {
                WorkerMetrics::inc(&ctx.metrics.replays_served);
                return plan;
            }
        }
    }
    for worker in ctx.directory.holders(&key, ctx.index) {
        let Some(events) = ask(ctx, worker, &key).await else {
            continue;
        };
        if events.iter().any(|e| e.id.as_deref() == Some(last_id)) {
            // This worker's ring (if any) did not hold the id: it becomes a copy of the one that
            // did, so later reconnections landing here find the events, and the relay extends it
            // from its head without a hole.
            let head = ctx.streams.adopt(&key, &events);
            WorkerMetrics::inc(&ctx.metrics.replays_served);
            return plan_from(&key, &events, last_id, head);
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

/// The plan for a client at `last_id`, given a ring's events (oldest first) whose newest is at
/// `head_seq` in this worker's ring.
fn plan_from(
    key: &StreamKey,
    events: &[RingEvent],
    last_id: &[u8],
    head_seq: u64,
) -> Option<ReplayPlan> {
    let at = events
        .iter()
        .rposition(|e| e.id.as_deref() == Some(last_id))?;
    let missed = events[at + 1..].iter().map(|e| e.raw.clone()).collect();
    let delivered: Vec<Bytes> = events.iter().filter_map(|e| e.id.clone()).collect();
    let resume_from = events
        .iter()
        .rev()
        .filter(|e| !e.assigned)
        .find_map(|e| e.id.clone())
        .unwrap_or_default();
    Some(ReplayPlan {
        key: key.clone(),
        replay: Replay {
            missed,
            delivered,
            cursor: resume_from.clone(),
            ring_seq: head_seq,
        },
        resume_from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(seq: u64, id: Option<&str>, raw: &str, assigned: bool) -> RingEvent {
        RingEvent {
            seq,
            id: id.map(|s| Bytes::copy_from_slice(s.as_bytes())),
            raw: Bytes::copy_from_slice(raw.as_bytes()),
            assigned,
        }
    }

    fn key() -> StreamKey {
        let raw = "GET /s HTTP/1.1\r\nHost: x\r\n\r\n";
        StreamKey::of(
            &RequestHead::parse(Bytes::from(raw), &crate::http::HeadLimits::default()).unwrap(),
        )
    }

    #[test]
    fn plan_from_a_ring() {
        let events = vec![
            ev(1, Some("1"), "a", false),
            ev(2, None, "b", false),
            ev(3, Some("3"), "c", false),
            ev(4, Some("4"), "d", false),
        ];
        let plan = plan_from(&key(), &events, b"1", 4).unwrap();
        assert_eq!(
            plan.replay.missed,
            vec![Bytes::from("b"), Bytes::from("c"), Bytes::from("d")]
        );
        assert_eq!(&plan.resume_from[..], b"4");
        assert_eq!(plan.replay.delivered.len(), 3);
        assert_eq!(plan.replay.ring_seq, 4);
        assert!(plan_from(&key(), &events, b"9", 4).is_none());
        assert!(plan_from(&key(), &events, b"4", 4)
            .unwrap()
            .replay
            .missed
            .is_empty());
    }

    #[test]
    fn ids_tether_assigned_are_never_the_resume_point() {
        let events = vec![
            ev(1, Some("7"), "a", false),
            ev(2, Some("0-1"), "b", true),
            ev(3, Some("0-2"), "c", true),
        ];
        let plan = plan_from(&key(), &events, b"0-1", 3).unwrap();
        assert_eq!(
            &plan.resume_from[..],
            b"7",
            "the newest id the upstream gave"
        );
        let only_assigned = vec![ev(1, Some("0-1"), "a", true), ev(2, Some("0-2"), "b", true)];
        let plan = plan_from(&key(), &only_assigned, b"0-1", 2).unwrap();
        assert!(
            plan.resume_from.is_empty(),
            "no upstream id: the header is removed"
        );
    }
}
