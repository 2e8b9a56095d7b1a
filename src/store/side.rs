//! The store's thread ("tether-store"): owns the Redis connections, answers reads, and writes what
//! the workers queued, in pipelines.
//!
//! ```text
//! loop:
//!     answer every waiting read (someone waits for each; writes can wait a round trip)
//!     take up to MAX_PIPELINE_EVENTS from the workers' queues, one per queue in turn
//!     some taken:
//!         less than PIPELINE_INTERVAL since the last pipeline and the batch not full:
//!             sleep out the rest (a read or the stop ends it early), take more, loop
//!         one pipeline (super::resp): per event   XADD key [MAXLEN ~ <max events>] * id <id>
//!                                                      data <bytes> lineage <tag> assigned <0|1>
//!                                     per stream  [XTRIM key MAXLEN ~ <max events>]
//!                                                 PEXPIRE key <ttl ms>
//!             sent on the write connection (super::wire), whose replies are counted
//!             -> counted written, or counted dropped_unavailable (Redis down or the pipeline failed)
//!     none: linger LINGER (events arriving now need no wake-up), then sleep until a worker rings
//!     stopping and nothing left: return
//! ```
//! Under load a pipeline goes every PIPELINE_INTERVAL and carries what arrived since the last
//! one; when Redis takes longer than that to answer, the next pipeline carries what arrived
//! meanwhile (up to MAX_PIPELINE_EVENTS): the batch size follows the load and Redis's speed.
//! A quiet stream's event goes at once (the interval counts from the last pipeline).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::counters::StoreCounters;
use super::error::ReadError;
use super::key::StoreKey;
use super::link::Link;
use super::read::{self, ReadRequest};
use super::resp::Pipeline;
use super::writer::{Doorbell, Record};

/// Events one pipeline carries at most: bounds its memory (~300 bytes encoded per 100-byte event,
/// so ~600 KiB) and how long a read waits behind it. With one pipeline in flight the thread
/// writes at most this many events per Redis round trip: at 512, round trips of 5 ms (Redis
/// sharing a busy core in bench scenario 1a) capped it near 100k events/s and a run dropped 52k
/// events from full queues throughout; at 2048, in 15 runs, drops came in the first second (1000
/// streams starting at once while Redis stalls) but in one run with Redis's core overloaded. 8192
/// did no better there.
pub(super) const MAX_PIPELINE_EVENTS: usize = 2048;

/// Shortest time from one pipeline to the next while events keep coming: a pipeline's fixed
/// costs (a send, a receive, the wake-up on Redis's answer, the worker's core taken from it) are
/// then spread over this much traffic rather than over what arrived during one round trip
/// (~15 events at 60k events/s before; ~150 now). Also about the longest an event waits in its
/// queue while Redis keeps up. A full batch (MAX_PIPELINE_EVENTS) goes at once. Measured in
/// scenario 1a (perf/NOTES.md): the store thread's CPU per event 1.62 -> 1.11 µs with this and
/// the hand-encoded pipeline together.
const PIPELINE_INTERVAL: Duration = Duration::from_millis(2);

/// After finding nothing to write, the thread waits this long before asking the workers to wake
/// it: a stream's next event usually comes within it, and is then taken without any syscall on
/// the worker's side.
const LINGER: Duration = Duration::from_millis(1);

/// Longest sleep with nothing to do. Workers and readers unpark the thread, so this is only a
/// safety net against a lost wake-up.
const IDLE_PARK: Duration = Duration::from_millis(500);

/// `MAXLEN ~` (in an `XADD`, or in the `XTRIM` that ends a busy stream's share of a pipeline)
/// trims whole macro nodes only (Redis's `stream-node-max-entries`, 100 by default), so a stream
/// may hold up to that many entries past its bound; a read scans this many beyond `max_events`
/// before calling an id unknown. (Reads run between pipelines, so never see a stream before its
/// `XTRIM`.)
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
        let mut pipeline = Pipeline::default();
        // When the last pipeline went out (None: none yet).
        let mut last_write: Option<Instant> = None;
        loop {
            self.serve_reads();
            if self.fill() > 0 {
                if let Some(wait) = self.hold(last_write) {
                    // Workers do not ring while the thread is not asleep, so only a read (or
                    // the stop) ends this early; the loop then serves it and holds again.
                    std::thread::park_timeout(wait);
                    continue;
                }
                last_write = Some(Instant::now());
                self.write(&mut pipeline);
                continue;
            }
            if self.stop.load(Ordering::SeqCst) {
                // Everything queued before the stop was taken and written (or counted).
                return;
            }
            self.idle();
        }
    }

    /// How much longer to let `batch` grow before writing it: until PIPELINE_INTERVAL after the
    /// last pipeline, unless the batch is full or the store is stopping. None: write now.
    fn hold(&self, last_write: Option<Instant>) -> Option<Duration> {
        if self.batch.len() >= MAX_PIPELINE_EVENTS || self.stop.load(Ordering::SeqCst) {
            return None;
        }
        let due = last_write? + PIPELINE_INTERVAL;
        due.checked_duration_since(Instant::now())
            .filter(|wait| !wait.is_zero())
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
        let Some(con) = self.link.reader(&self.counters) else {
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
    fn write(&mut self, pipeline: &mut Pipeline) {
        let batch = std::mem::take(&mut self.batch);
        let events = batch.len() as u64;
        let Some(wire) = self.link.writer(&self.counters) else {
            self.counters.dropped_unavailable(events);
            self.batch = recycle(batch);
            return;
        };
        let ttl_ms = u64::try_from(self.settings.ttl.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        pipeline.encode(&batch, self.settings.max_events, ttl_ms);
        let oldest = batch.iter().map(|r| r.queued_at).min();
        let started = Instant::now();
        match wire.pipeline(pipeline.bytes(), pipeline.commands()) {
            Ok(()) => {
                let done = Instant::now();
                let lag = oldest.map_or(Duration::ZERO, |at| done.duration_since(at));
                self.counters
                    .written(events, done.duration_since(started), lag);
            }
            Err(e) => {
                self.counters.dropped_unavailable(events);
                self.link.write_failed(&self.counters, "write failed", &e);
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
