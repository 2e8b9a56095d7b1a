//! The store's thread ("tether-store"): owns the Redis connection, answers reads, and writes what
//! the workers queued, in pipelines.
//!
//! ```text
//! loop:
//!     answer every waiting read (someone waits for each; writes can wait a round trip)
//!     take up to MAX_PIPELINE_EVENTS from the workers' queues, one per queue in turn
//!     some taken: one pipeline: per event  XADD key MAXLEN ~ <max events> * id <id> data <bytes>
//!                                                    lineage <tag> assigned <0|1>
//!                               per key    PEXPIRE key <ttl ms>          (once per key per pipeline)
//!                 -> counted written, or counted dropped_unavailable (Redis down or the pipeline failed)
//!     none: linger LINGER (events arriving now need no wake-up), then sleep until a worker rings
//!     stopping and nothing left: return
//! ```
//! While a pipeline is in flight the workers go on queueing, so the next one carries what
//! arrived meanwhile: the batch size follows the load without a timer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::counters::StoreCounters;
use super::error::ReadError;
use super::key::StoreKey;
use super::link::Link;
use super::read::{
    self, ReadRequest, FIELD_ASSIGNED, FIELD_DATA, FIELD_END, FIELD_ID, FIELD_LINEAGE,
};
use super::writer::{Doorbell, Record};

/// Events one pipeline carries at most: bounds its memory and how long a read waits behind it.
pub(super) const MAX_PIPELINE_EVENTS: usize = 512;

/// After finding nothing to write, the thread waits this long before asking the workers to wake
/// it: a stream's next event usually comes within it, and is then taken without any syscall on
/// the worker's side. Also the longest an event waits in its queue on a busy store.
const LINGER: Duration = Duration::from_millis(1);

/// Longest sleep with nothing to do. Workers and readers unpark the thread, so this is only a
/// safety net against a lost wake-up.
const IDLE_PARK: Duration = Duration::from_millis(500);

/// `XADD ... MAXLEN ~` trims whole macro nodes only (Redis's `stream-node-max-entries`, 100 by
/// default), so a stream may hold up to that many entries past its bound; a read scans this many
/// beyond `max_events` before calling an id unknown.
const TRIM_SLACK: usize = 128;

/// What every stream is written with.
#[derive(Debug, Clone, Copy)]
pub(super) struct WriteSettings {
    /// `MAXLEN ~`: events kept per stream (`--replay-events`).
    pub(super) max_events: usize,
    /// `PEXPIRE`: how long a stream outlives its last event (`--replay-ttl`).
    pub(super) ttl: Duration,
}

pub(super) struct Side {
    pub(super) link: Link,
    pub(super) queues: Vec<Receiver<Record>>,
    pub(super) reads: Receiver<ReadRequest>,
    pub(super) counters: Arc<StoreCounters>,
    pub(super) doorbell: Arc<Doorbell>,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) settings: WriteSettings,
    /// Events taken from the queues, not yet written.
    pub(super) batch: Vec<Record>,
    /// Reads taken from their queue, not yet answered.
    pub(super) pending_reads: Vec<ReadRequest>,
    /// The queue the next round of taking starts with (fairness between workers).
    pub(super) next_queue: usize,
}

impl Side {
    pub(super) fn run(mut self) {
        loop {
            self.serve_reads();
            if self.fill() > 0 {
                self.write();
                continue;
            }
            if self.stop.load(Ordering::SeqCst) {
                // Everything queued before the stop was taken and written (or counted).
                return;
            }
            self.idle();
        }
    }

    /// Moves queued events into `batch`, one per queue in turn, up to MAX_PIPELINE_EVENTS.
    fn fill(&mut self) -> usize {
        let n = self.queues.len();
        let mut empty_in_a_row = 0;
        while self.batch.len() < MAX_PIPELINE_EVENTS && empty_in_a_row < n {
            let q = self.next_queue % n;
            self.next_queue = (q + 1) % n;
            match self.queues[q].try_recv() {
                Ok(record) => {
                    self.batch.push(record);
                    empty_in_a_row = 0;
                }
                Err(_) => empty_in_a_row += 1,
            }
        }
        self.batch.len()
    }

    /// Waits for work: LINGER first, then (nothing came) until a worker or a reader unparks it.
    fn idle(&mut self) {
        std::thread::park_timeout(LINGER);
        // A reader's unpark may have ended the linger: its token is spent, so its read must be
        // seen here, not after the long park.
        if self.fill() > 0 || self.take_reads() > 0 {
            return;
        }
        self.doorbell.sleeping.store(true, Ordering::SeqCst);
        // A worker that queued after the `fill` above but before the flag was set saw no flag:
        // look once more now that it is set (SeqCst on both sides: one of the two sees the other).
        // Readers always unpark, so a read sent from here on leaves a token for the park.
        if self.fill() > 0 || self.take_reads() > 0 || self.stop.load(Ordering::SeqCst) {
            self.doorbell.sleeping.store(false, Ordering::SeqCst);
            return;
        }
        std::thread::park_timeout(IDLE_PARK);
        self.doorbell.sleeping.store(false, Ordering::SeqCst);
    }

    /// Moves waiting reads from their queue to `pending_reads`; returns how many wait.
    fn take_reads(&mut self) -> usize {
        while let Ok(request) = self.reads.try_recv() {
            self.pending_reads.push(request);
        }
        self.pending_reads.len()
    }

    fn serve_reads(&mut self) {
        self.take_reads();
        for request in std::mem::take(&mut self.pending_reads) {
            if request.reply.abandoned() {
                continue;
            }
            let answer = self.read(&request.key, &request.after);
            self.counters.read();
            request.reply.send(answer);
        }
    }

    fn read(&mut self, key: &StoreKey, after: &[u8]) -> Result<read::ReadOutcome, ReadError> {
        let scan_limit = self.settings.max_events + TRIM_SLACK;
        let Some(con) = self.link.connection(&self.counters) else {
            return Err(ReadError::Unavailable);
        };
        match read::scan(con, key, after, scan_limit, super::follow::FOLLOW_IDLE) {
            Ok(outcome) => Ok(outcome),
            Err(read::ScanError::Malformed { what }) => {
                self.counters.error();
                Err(ReadError::Malformed { what })
            }
            Err(read::ScanError::Redis(e)) => {
                self.link.command_failed(&self.counters, "read failed", &e);
                Err(ReadError::Redis {
                    detail: e.to_string(),
                })
            }
        }
    }

    /// Writes `batch` in one pipeline, or counts it as not written.
    fn write(&mut self) {
        let batch = std::mem::take(&mut self.batch);
        let events = batch.len() as u64;
        let Some(con) = self.link.connection(&self.counters) else {
            self.counters.dropped_unavailable(events);
            self.batch = recycle(batch);
            return;
        };
        let pipe = pipeline(&batch, self.settings);
        let oldest = batch.iter().map(|r| r.queued_at).min();
        let started = Instant::now();
        let result = pipe.exec(con);
        match result {
            Ok(()) => {
                let done = Instant::now();
                let lag = oldest.map_or(Duration::ZERO, |at| done.duration_since(at));
                self.counters
                    .written(events, done.duration_since(started), lag);
            }
            Err(e) => {
                self.counters.dropped_unavailable(events);
                self.link.command_failed(&self.counters, "write failed", &e);
            }
        }
        self.batch = recycle(batch);
    }
}

/// The batch's allocation, emptied, for the next batch.
fn recycle(mut batch: Vec<Record>) -> Vec<Record> {
    batch.clear();
    batch
}

/// The commands for `batch`: each stream's events in the order they were recorded, then its
/// expiry once. Replies are ignored one by one; a failed command fails the whole pipeline.
fn pipeline(batch: &[Record], settings: WriteSettings) -> redis::Pipeline {
    // Keys in first-seen order, each with its events' indexes (a stream's order is kept; the
    // order between streams does not matter).
    let mut order: Vec<(&StoreKey, Vec<usize>)> = Vec::new();
    let mut at: HashMap<&StoreKey, usize> = HashMap::new();
    for (i, record) in batch.iter().enumerate() {
        let key = record.lineage.key();
        let slot = *at.entry(key).or_insert_with(|| {
            order.push((key, Vec::new()));
            order.len() - 1
        });
        order[slot].1.push(i);
    }
    let ttl_ms = u64::try_from(settings.ttl.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    let mut pipe = redis::Pipeline::with_capacity(batch.len() + order.len());
    for (key, events) in &order {
        for &i in events {
            let record = &batch[i];
            if let Some(end) = record.end {
                pipe.cmd("XADD")
                    .arg(key.as_bytes())
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(settings.max_events)
                    .arg("*")
                    .arg(FIELD_LINEAGE)
                    .arg(record.lineage.tag())
                    .arg(FIELD_END)
                    .arg(end.word())
                    .ignore();
                continue;
            }
            pipe.cmd("XADD")
                .arg(key.as_bytes())
                .arg("MAXLEN")
                .arg("~")
                .arg(settings.max_events)
                .arg("*")
                .arg(FIELD_ID)
                .arg(&record.id[..])
                .arg(FIELD_DATA)
                .arg(&record.raw[..])
                .arg(FIELD_LINEAGE)
                .arg(record.lineage.tag())
                .arg(FIELD_ASSIGNED)
                .arg(if record.assigned { "1" } else { "0" })
                .ignore();
        }
        pipe.cmd("PEXPIRE").arg(key.as_bytes()).arg(ttl_ms).ignore();
    }
    pipe
}
