//! Finding where a reconnection resumes: the ring that holds the client's `Last-Event-ID`, among
//! the rings of its scope (same target, same identity, whatever method began the stream), on this
//! worker first, then on the worker its id names (ids tether assigns say where they were made),
//! then on every worker the directory lists for the scope.
//!
//! The ring found becomes the reconnecting client's: a detached ring (its relay ended) is taken
//! over and continued; a ring another relay still writes, or one on another worker, is copied
//! (refcounted events, no byte copied) into a new lineage on this worker, which continues it.
//!
//! With `--replay-store`, an id found on no worker of this process is asked of the store once
//! (another tether instance may have recorded the stream): the events after it become a new
//! lineage here, as another worker's copy would.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use super::assigned_id::AssignedId;
use super::directory::{Answer, FoundRing, Message};
use super::fanout::{FanEnd, Fanout};
use super::ring::RingEvent;
use super::scope::ResumeScope;
use super::table::{Lineage, RingHandle};
use crate::http::{Method, RequestHead};
use crate::metrics::WorkerMetrics;
use crate::store::{LineageEnd, LineageState, ReadOutcome, StoreKey, StoredEvent};
use crate::worker::{StoreLink, WorkerCtx};

/// How long a worker waits for another worker's ring before treating the id as unknown (the
/// request then goes upstream unchanged).
const RING_QUERY_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a reconnection waits for the replay store's answer (`--replay-store`) before
/// treating its id as unknown (the request then goes upstream unchanged, as without a store).
/// One Redis round trip on a LAN is well under a millisecond; past this Redis is slow, and the
/// client is better served by the upstream than by waiting.
const STORE_READ_TIMEOUT: Duration = Duration::from_millis(200);

/// A reconnection the rings can serve.
pub struct ResumePoint {
    /// The ring the client continues (attached to its relay).
    pub ring: RingHandle,
    /// Seq of the client's `Last-Event-ID` in `ring`: what follows is replayed.
    pub after: u64,
    /// What the upstream is asked to resume from instead of the client's id: the newest id the
    /// upstream itself gave that the ring holds. Empty when the ring holds only ids tether
    /// assigned: the client's header is then removed, never sent upstream.
    pub resume_from: Bytes,
    /// Events the ring holds after the client's id (0: the client is at the ring's head).
    pub missed: usize,
}

/// Where a reconnection resumes.
pub enum Resumption {
    /// From a ring made this client's: it replays, then continues on an upstream of its own.
    Ring(ResumePoint),
    /// Following a stream another connection reads, or held for this comeback, or finished
    /// with events the client has not had (`super::fanout`): nothing goes upstream.
    Follow {
        lineage: Rc<Lineage>,
        fanout: Rc<Fanout>,
        /// Seq of the client's `Last-Event-ID`.
        after: u64,
    },
    /// The stream to follow is read on another worker: the connection goes there
    /// (`super::directory::Message::Adopt`).
    HandOff { worker: usize },
}

/// For a request carrying `Last-Event-ID: X`: the ring of its scope holding X, made this client's
/// (or followed, when it is shared, held or finished). None when the request is not a
/// reconnection or X is in no ring (the upstream then decides).
///
/// `may_hand_off` false: the connection was handed to this worker already; it is never moved
/// twice.
pub async fn find(
    ctx: &WorkerCtx,
    head: &RequestHead,
    scope: &ResumeScope,
    may_hand_off: bool,
) -> Option<Resumption> {
    let last_id = head.header("last-event-id").filter(|v| !v.is_empty())?;
    // Another method (the original POST again) may only follow a stream read live or finished:
    // it is never continued upstream, which would send it again.
    let follow_only = head.method != Method::Get;
    let mut point = match find_local(ctx, scope, last_id, follow_only) {
        Some(point) => Some(point),
        None => find_remote(ctx, scope, last_id, may_hand_off, follow_only).await,
    };
    if point.is_none() {
        if let Some(store) = &ctx.store {
            point = find_in_store(ctx, store, scope, last_id, follow_only).await;
        }
    }
    match point {
        // Counted by the worker it goes to, which looks again.
        Some(Resumption::HandOff { .. }) => {}
        Some(_) => WorkerMetrics::inc(&ctx.metrics.replays_served),
        None => WorkerMetrics::inc(&ctx.metrics.replays_missed),
    }
    point
}

fn find_local(
    ctx: &WorkerCtx,
    scope: &ResumeScope,
    last_id: &[u8],
    follow_only: bool,
) -> Option<Resumption> {
    let found = ctx.streams.find(scope, last_id)?;
    if let Some(fanout) = followable(&found.lineage, found.seq) {
        return Some(Resumption::Follow {
            lineage: found.lineage,
            fanout,
            after: found.seq,
        });
    }
    if follow_only {
        return None;
    }
    if !found.lineage.attached() {
        let seq = found.seq;
        return Some(Resumption::Ring(point(
            ctx.streams.attach(found.lineage),
            seq,
        )));
    }
    let (events, at) = {
        let ring = found.lineage.ring.borrow();
        let at = (found.seq - ring.first_seq()) as usize;
        (ring.after(0).map(|e| e.to_event()).collect::<Vec<_>>(), at)
    };
    Some(Resumption::Ring(adopt(ctx, scope, events, at)))
}

/// A live shared or held stream is followed; a finished one too while it holds events after the
/// id (the POST that began it is never re-sent). One that stopped otherwise is resumed upstream
/// as any other ring.
fn followable(lineage: &Lineage, seq: u64) -> Option<Rc<Fanout>> {
    let fanout = lineage.fanout()?;
    let follow = match fanout.end() {
        None => true,
        Some(FanEnd::Finished) => lineage.ring.borrow().head_seq() > seq,
        Some(FanEnd::Stopped) => false,
    };
    follow.then_some(fanout)
}

async fn find_remote(
    ctx: &WorkerCtx,
    scope: &ResumeScope,
    last_id: &[u8],
    may_hand_off: bool,
    follow_only: bool,
) -> Option<Resumption> {
    let named = AssignedId::parse(last_id)
        .map(|a| a.worker as usize)
        .filter(|w| *w != ctx.index && *w < ctx.directory.workers());
    let mut asked = Vec::new();
    let holders = ctx.directory.holders(scope, ctx.index);
    for worker in named.into_iter().chain(holders) {
        if asked.contains(&worker) {
            continue;
        }
        asked.push(worker);
        if let Some(found) = ask(ctx, worker, scope, last_id, may_hand_off).await {
            if found.followable && may_hand_off {
                return Some(Resumption::HandOff { worker });
            }
            if follow_only {
                return None;
            }
            return Some(Resumption::Ring(adopt(ctx, scope, found.events, found.at)));
        }
    }
    None
}

/// Asks the replay store for the events of `scope` after `last_id`, once, for at most
/// `STORE_READ_TIMEOUT`. What it answers decides (`crate::store::LineageState`):
/// - another instance still reads the lineage: the client follows it live through the store
///   (`super::store_follow`), the missed events first; nothing goes upstream;
/// - its upstream finished it, with events after the id: the client gets them and the end;
/// - stopped (or stale) with events after the id: they become a new ring here that the client
///   continues (the upstream asked to resume from the newest upstream id among them).
///
/// None otherwise: an unknown id, the client already at a stopped stream's head (the upstream is
/// then asked with its own id, exactly as without a store), more events than `--replay-bytes`,
/// or no answer (counted, and logged at debug). `follow_only` (the original POST repeated):
/// only following or a finished stream, never an upstream of its own.
async fn find_in_store(
    ctx: &WorkerCtx,
    store: &StoreLink,
    scope: &ResumeScope,
    last_id: &[u8],
    follow_only: bool,
) -> Option<Resumption> {
    let key = StoreKey::from_scope_bytes(scope.bytes());
    let answer = match store.reader.read_after(&key, last_id) {
        Ok(reply) => reply.recv_within(STORE_READ_TIMEOUT).await.and_then(|a| a),
        Err(e) => Err(e),
    };
    // More than a ring may hold (Redis trims by count only, `MAXLEN ~`): a ring would lose the
    // oldest of them on adoption, a silent gap; the upstream, asked with the client's own id,
    // can do better.
    let max_bytes = ctx.streams.limits().max_bytes;
    let fits =
        |events: &[StoredEvent]| events.iter().map(|e| e.raw.len()).sum::<usize>() <= max_bytes;
    let missed = || {
        WorkerMetrics::inc(&ctx.metrics.replay_store_misses);
        None
    };
    let (events, state, lineage, tail) = match answer {
        Ok(ReadOutcome::After {
            events,
            state,
            lineage,
            tail,
        }) if fits(&events) => (events, state, lineage, tail),
        Ok(_) => return missed(),
        Err(e) => {
            crate::log_debug!("sse {}: {e}", scope.target());
            return missed();
        }
    };
    let events_after = !events.is_empty();
    match state {
        LineageState::Live => follow_in_store(ctx, store, scope, &key, events, lineage, &tail),
        LineageState::Ended(LineageEnd::Finished) if events_after => {
            WorkerMetrics::inc(&ctx.metrics.replay_store_served);
            let events: Vec<RingEvent> = events.into_iter().map(stored_event).collect();
            let handle = ctx.streams.adopt_from_store(scope, events, &ctx.metrics);
            let fanout = handle.lineage.share(|| Fanout::new(false, None));
            fanout.finish(FanEnd::Finished);
            Some(Resumption::Follow {
                lineage: handle.lineage.clone(),
                fanout,
                after: 0,
            })
        }
        LineageState::Ended(_) if events_after && !follow_only => {
            WorkerMetrics::inc(&ctx.metrics.replay_store_served);
            let events: Vec<RingEvent> = events.into_iter().map(stored_event).collect();
            let (ring, first) = ctx.streams.adopt(scope, events, 0, &ctx.metrics);
            debug_assert_eq!(
                ring.lineage.ring.borrow().first_seq(),
                first,
                "nothing evicted"
            );
            // The client's own event is not in the ring: it had it. Everything the ring holds is
            // missed.
            Some(Resumption::Ring(point(ring, first - 1)))
        }
        LineageState::Ended(_) => missed(),
    }
}

/// A lineage another instance reads: a ring here fed from the store (`super::store_follow`),
/// which the client follows from its first event (the ones it missed, then live). None when the
/// follow cannot start (too many, or no descriptors): the caller's request then goes upstream.
fn follow_in_store(
    ctx: &WorkerCtx,
    store: &StoreLink,
    scope: &ResumeScope,
    key: &StoreKey,
    events: Vec<StoredEvent>,
    lineage: Bytes,
    tail: &str,
) -> Option<Resumption> {
    let feed = match store.follows.follow(key, lineage, tail) {
        Ok(feed) => feed,
        Err(e) => {
            crate::log_info!(
                "sse {}: cannot follow the stream through the replay store: {e}",
                scope.target()
            );
            WorkerMetrics::inc(&ctx.metrics.replay_store_misses);
            return None;
        }
    };
    let me = ctx.rc()?;
    WorkerMetrics::inc(&ctx.metrics.replay_store_followed);
    let events: Vec<RingEvent> = events.into_iter().map(stored_event).collect();
    let handle = ctx.streams.adopt_from_store(scope, events, &ctx.metrics);
    let lineage = handle.lineage.clone();
    let fanout = lineage.share(|| Fanout::new(false, None));
    fanout.set_headless(None);
    monoio::spawn(super::store_follow::pump(me, handle, fanout.clone(), feed));
    Some(Resumption::Follow {
        lineage,
        fanout,
        after: 0,
    })
}

/// A stored event as a ring event. Whether its id was tether's (`--assign-ids` on the instance
/// that recorded it) is stored with it: such an id is never sent upstream as a Last-Event-ID,
/// and an upstream's id is, whatever its shape.
pub(crate) fn stored_event(e: StoredEvent) -> RingEvent {
    let id = (!e.id.is_empty()).then_some(&e.id[..]);
    let held = u32::try_from(e.raw.len()).unwrap_or(u32::MAX);
    RingEvent::new(e.raw, id, held, e.assigned)
}

fn adopt(ctx: &WorkerCtx, scope: &ResumeScope, events: Vec<RingEvent>, at: usize) -> ResumePoint {
    let (ring, seq) = ctx.streams.adopt(scope, events, at, &ctx.metrics);
    point(ring, seq)
}

fn point(ring: RingHandle, after: u64) -> ResumePoint {
    let (resume_from, missed) = {
        let r = ring.lineage.ring.borrow();
        (
            r.newest_upstream_id().unwrap_or_default(),
            r.head_seq().saturating_sub(after) as usize,
        )
    };
    ResumePoint {
        ring,
        after,
        resume_from,
        missed,
    }
}

/// Asks `worker` for its ring of `scope` holding `id`. None when it has none, or does not answer
/// in time.
async fn ask(
    ctx: &WorkerCtx,
    worker: usize,
    scope: &ResumeScope,
    id: &[u8],
    hand_off: bool,
) -> Option<FoundRing> {
    let (token, slot) = ctx.answers.open();
    ctx.directory.post(
        worker,
        Message::Query {
            scope: scope.clone(),
            id: Bytes::copy_from_slice(id),
            from: ctx.index,
            token,
            hand_off,
        },
    );
    match monoio::time::timeout(RING_QUERY_TIMEOUT, slot.wait()).await {
        Ok(Answer::Ring(found)) => found,
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

/// The owner's side of a query: a copy of the ring of `scope` holding `id`, where the id is, and
/// whether the stream is followed here instead (then no copy when the asker hands the
/// connection over: `hand_off`).
pub fn answer(
    ctx: &WorkerCtx,
    scope: &ResumeScope,
    id: &[u8],
    hand_off: bool,
) -> Option<FoundRing> {
    let found = ctx.streams.find(scope, id)?;
    let followable = followable(&found.lineage, found.seq).is_some();
    let ring = found.lineage.ring.borrow();
    let at = (found.seq - ring.first_seq()) as usize;
    Some(FoundRing {
        events: if followable && hand_off {
            Vec::new()
        } else {
            ring.after(0).map(|e| e.to_event()).collect()
        },
        at,
        followable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::ring::ReplayRing;

    fn stored(id: &'static str, assigned: bool) -> StoredEvent {
        StoredEvent {
            position: "1-0".into(),
            id: Bytes::from_static(id.as_bytes()),
            raw: Bytes::from(format!("id: {id}\ndata: x\n\n")),
            assigned,
        }
    }

    /// What goes upstream as `Last-Event-ID` after events read back from the store: the
    /// stored flag decides, not the id's shape.
    #[test]
    fn an_upstream_id_shaped_like_tethers_is_sent_upstream() {
        let resume_from = |events: Vec<StoredEvent>| {
            let mut ring = ReplayRing::new(16, 1 << 20);
            for e in events {
                ring.push(stored_event(e));
            }
            ring.newest_upstream_id()
        };
        assert_eq!(
            resume_from(vec![stored("1", false), stored("1-2-3", false)]).as_deref(),
            Some(&b"1-2-3"[..])
        );
        // An id tether assigned is never sent upstream: the newest upstream id before it is.
        assert_eq!(
            resume_from(vec![stored("7", false), stored("0-1-4", true)]).as_deref(),
            Some(&b"7"[..])
        );
        assert_eq!(resume_from(vec![stored("0-1-4", true)]), None);
    }
}
