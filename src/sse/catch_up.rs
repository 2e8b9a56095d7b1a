//! Replay at the client's pace: a reconnection served from a ring is fed the events after its
//! `Last-Event-ID` from the ring itself, one batch at a time, each written before the next is
//! taken. Nothing is queued ahead of the client, so a replay of any size never counts as a slow
//! client, and the memory it holds is the ring's (which the budget counts), not a copy.
//!
//! The upstream (already asked to resume after the ring's newest event) is not read meanwhile:
//! its bytes wait in the socket, and the live stream starts where the ring ends.

use super::relay::{Relay, SseEnd};
use crate::client_stream::ClientStream;
use crate::conn_io::write_vec_within;
use crate::metrics::WorkerMetrics;

/// Ring bytes taken per write while catching up: large enough for few syscalls, small enough that
/// a slow reader holds no more than this outside the ring.
const REPLAY_BATCH_BYTES: usize = 64 * 1024;

impl Relay<'_> {
    /// Sends the ring's events after seq `after`, then returns (the caller goes live). Err when
    /// the client left, was too slow, or the events it still needed were evicted (the response is
    /// then ended cleanly after the last whole event it got).
    pub(super) async fn catch_up<C: ClientStream>(
        &mut self,
        client: &mut C,
        mut after: u64,
    ) -> Result<(), SseEnd> {
        loop {
            let (batch, len, evicted) = {
                let ring = self.ring.lineage.ring.borrow();
                let evicted = after + 1 < ring.first_seq();
                let mut batch = Vec::new();
                let mut len = 0;
                if !evicted {
                    for event in ring.after(after) {
                        if len > 0 && len + event.len() > REPLAY_BATCH_BYTES {
                            break;
                        }
                        len += event.len();
                        batch.push(event.bytes());
                        after += 1;
                    }
                }
                (batch, len, evicted)
            };
            if evicted {
                crate::log_info!(
                    "sse {}: the replay's next events were evicted (--replay-memory); ending the response so the client resumes upstream",
                    self.ring.lineage.scope.target()
                );
                return Err(self.finish(Some(client), SseEnd::ReplayEvicted).await);
            }
            if batch.is_empty() && self.out.is_empty() {
                return Ok(());
            }
            WorkerMetrics::add(&self.ctx.metrics.sse_bytes, len as u64);
            self.out.push_blocks(batch, len);
            let out = self.out.take();
            match write_vec_within(client, out, self.ctx.config.timeouts.send).await {
                Ok(rest) => {
                    self.out.put_back(rest);
                    self.last_sent = crate::stamp::Stamp::now();
                }
                Err(crate::conn_io::IoFailure::TimedOut) => {
                    WorkerMetrics::inc(&self.ctx.metrics.slow_clients);
                    return Err(SseEnd::SlowClient);
                }
                Err(_) => return Err(SseEnd::ClientGone),
            }
        }
    }
}
