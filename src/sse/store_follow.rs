//! A lineage fed from the replay store: a reconnection landed here while another tether instance
//! still reads the stream's upstream (it holds it for a comeback, `--hold-upstream`, or serves
//! another client of it). Nothing goes upstream from here: the events the other instance writes
//! to Redis are followed (`crate::store::follow`, `XREAD BLOCK`) and recorded into a ring of this
//! worker, whose clients follow it as they follow any shared stream (`super::follow`).
//!
//! ```text
//! store ──XREAD──> follow thread ──Feed──> this task ──record──> ring ──> followers (clients)
//! ```
//! The task ends with the lineage (its end marker: finished, or stopped), when nothing came for
//! `FOLLOW_IDLE` (the other instance died unmarked), or when its last client left: the ring is
//! then forgotten, so that the next comeback asks the store again rather than resuming the
//! upstream from a copy while the other instance still reads it.

use std::rc::Rc;

use super::fanout::{FanEnd, Fanout};
use super::table::RingHandle;
use crate::store::{Feed, FollowItem, LineageEnd};
use crate::worker::WorkerCtx;

/// Feeds `handle`'s ring from `feed` until the lineage ends or its clients are gone.
pub(crate) async fn pump(
    ctx: Rc<WorkerCtx>,
    handle: RingHandle,
    fanout: Rc<Fanout>,
    mut feed: Feed<FollowItem>,
) {
    let target = handle.lineage.scope.target().to_string();
    let mut seen = fanout.changes();
    let mut joined = fanout.followers() > 0;
    let end = loop {
        if joined && fanout.followers() == 0 {
            break None;
        }
        monoio::select! {
            item = feed.next() => match item {
                Ok(Some(FollowItem::Events(events))) => {
                    let mut bytes = 0;
                    for e in events {
                        bytes += e.raw.len() as u64;
                        ctx.streams
                            .record(&handle, super::lookup::stored_event(e), &ctx.metrics);
                    }
                    fanout.recorded_bytes(bytes);
                }
                Ok(Some(FollowItem::End(LineageEnd::Finished))) => break Some(FanEnd::Finished),
                Ok(Some(FollowItem::End(LineageEnd::Stopped))) => break Some(FanEnd::Stopped),
                Ok(Some(FollowItem::Quiet)) => {
                    crate::log_info!(
                        "sse {target}: nothing from the instance reading this stream for {} s; ending its clients' responses so they resume",
                        crate::store::FOLLOW_IDLE.as_secs()
                    );
                    break Some(FanEnd::Stopped);
                }
                Ok(Some(FollowItem::Overrun)) => {
                    crate::log_warn!(
                        "sse {target}: this worker fell behind the replay store's follow; ending its clients' responses so they resume"
                    );
                    break Some(FanEnd::Stopped);
                }
                Ok(None) | Err(_) => break Some(FanEnd::Stopped),
            },
            _ = fanout.followers_changed(seen) => {
                seen = fanout.changes();
                joined |= fanout.followers() > 0;
            }
        }
    };
    match end {
        Some(how) => fanout.finish(how),
        None => {
            fanout.finish(FanEnd::Stopped);
            ctx.streams.forget(&handle.lineage);
        }
    }
}
