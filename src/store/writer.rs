//! A worker's side of the write-behind: a bounded queue to the store's thread.
//!
//! The per-event path is one `try_send` on a bounded channel (no lock held across IO, no
//! syscall, no atomic counter): a worker never waits on Redis. When the queue is full the store's
//! thread is behind (Redis slow or down); the event is dropped and counted, and the stream goes on
//! from the local ring alone, exactly as without a store. Each worker has its own queue, so one
//! busy worker cannot take another's room.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::Thread;
use std::time::Instant;

use bytes::Bytes;

use super::counters::StoreCounters;
use super::lineage::StoreLineage;
use super::state::LineageEnd;

/// Default events one worker's queue holds. An entry is four handles and a flag (~96 bytes; the
/// event's bytes are shared with the ring, not copied), so a full queue costs ~0.8 MiB per worker
/// and rides out about a second of a Redis stall at 8000 events/s per worker before anything is
/// dropped. Past it: the event is dropped and counted (`dropped_full`).
pub(crate) const DEFAULT_QUEUE_EVENTS: usize = 8_192;

/// One event on its way to Redis.
pub(super) struct Record {
    /// The stream's key and the recording lineage's tag.
    pub(super) lineage: StoreLineage,
    /// The SSE id the event set (empty when it set none): what a reconnection's `Last-Event-ID`
    /// is compared with, since Redis's own entry ids are Redis's.
    pub(super) id: Bytes,
    /// The id was assigned by tether (`--assign-ids`), not the upstream's: never sent upstream.
    pub(super) assigned: bool,
    /// The exact bytes the client was sent.
    pub(super) raw: Bytes,
    /// When the worker recorded it, for the lag the store reports.
    pub(super) queued_at: Instant,
    /// Not an event but the lineage's end marker (`super::state`): `id` and `raw` are empty.
    pub(super) end: Option<LineageEnd>,
}

/// How the store's thread is woken when it sleeps (nothing queued for a while).
#[derive(Debug)]
pub(super) struct Doorbell {
    /// The store's thread is parked, or about to park, for longer than its short linger: the next
    /// recorded event must unpark it. Cleared by whoever unparks.
    pub(super) sleeping: AtomicBool,
    pub(super) thread: Thread,
}

impl Doorbell {
    /// Unparks the store's thread if it sleeps. One relaxed-then-swap check per event; the
    /// syscall happens only for the first event after a quiet spell.
    pub(super) fn ring(&self) {
        if self.sleeping.load(Ordering::SeqCst) && self.sleeping.swap(false, Ordering::SeqCst) {
            self.thread.unpark();
        }
    }
}

/// What `record` did with the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    Queued,
    /// The queue was full (counted in `dropped_full`).
    DroppedFull,
    /// The store has stopped (tether is shutting down).
    Stopped,
}

/// One worker's queue to the store. `Send` (it is made on the main thread and moved into its
/// worker), not shared between workers.
pub(crate) struct StoreWriter {
    queue: SyncSender<Record>,
    counters: Arc<StoreCounters>,
    doorbell: Arc<Doorbell>,
}

impl StoreWriter {
    pub(super) fn new(
        queue: SyncSender<Record>,
        counters: Arc<StoreCounters>,
        doorbell: Arc<Doorbell>,
    ) -> StoreWriter {
        StoreWriter {
            queue,
            counters,
            doorbell,
        }
    }

    /// Queues one event of `lineage` for Redis; never blocks. `id`: the SSE id the event set, if
    /// any; `assigned`: tether assigned it. `raw`: its bytes as sent to the client (a refcounted
    /// slice; nothing is copied here).
    pub(crate) fn record(
        &self,
        lineage: &StoreLineage,
        id: Option<Bytes>,
        assigned: bool,
        raw: Bytes,
    ) -> Recorded {
        let record = Record {
            lineage: lineage.clone(),
            id: id.unwrap_or_default(),
            assigned,
            raw,
            queued_at: Instant::now(),
            end: None,
        };
        self.send(record)
    }

    /// Queues `lineage`'s end marker: its upstream is read no more here (`super::state`). Once
    /// per lineage that ends, never per event; a full queue drops it like an event (a reader
    /// then finds the lineage stale after `super::follow::FOLLOW_IDLE`).
    pub(crate) fn end(&self, lineage: &StoreLineage, how: LineageEnd) -> Recorded {
        self.send(Record {
            lineage: lineage.clone(),
            id: Bytes::new(),
            assigned: false,
            raw: Bytes::new(),
            queued_at: Instant::now(),
            end: Some(how),
        })
    }

    fn send(&self, record: Record) -> Recorded {
        match self.queue.try_send(record) {
            Ok(()) => {
                self.doorbell.ring();
                Recorded::Queued
            }
            Err(TrySendError::Full(_)) => {
                self.counters.dropped_full();
                Recorded::DroppedFull
            }
            Err(TrySendError::Disconnected(_)) => Recorded::Stopped,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_queued_record_is_about_96_bytes() {
        assert!(std::mem::size_of::<super::Record>() <= 96);
    }
}
