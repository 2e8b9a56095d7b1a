//! The replay store: streams' events written behind to Redis Streams, so that a reconnection
//! landing on another tether instance finds what it missed (issue 16).
//!
//! Files (one concept each):
//! - `key`: a stream's Redis key, the SHA-256 of its scope: never credentials in Redis.
//! - `lineage`: a lineage's tag, written with each of its entries: a read returns one lineage's
//!   events, never two lineages of one scope interleaved.
//! - `writer`: a worker's bounded queue to the store; full means dropped and counted.
//! - `side`: the store's thread: a pipeline every 2 ms at most under load, reads served first.
//! - `resp`: the pipeline's commands (`XADD`, `XTRIM`, `PEXPIRE`) encoded by hand into one buffer.
//! - `link`: its connections: reconnection with back-off, one log line per interval.
//! - `wire`: the write connection: sends a pipeline's bytes, counts (never parses) its replies.
//! - `read`: `read_after`, the events after a `Last-Event-ID` (`XREVRANGE` scan).
//! - `reply`: the one-shot that brings a read's answer to a monoio worker without blocking it.
//! - `state`: a lineage's end markers, and whether an instance still reads its upstream.
//! - `follow`: following a lineage live (`XREAD BLOCK`) on a thread of its own.
//! - `feed`: the many-shot channel that brings a follow's entries to its worker.
//! - `counters`: written, dropped, errors, latency and lag, readable from any thread.
//! - `error`: what can fail, with what to do about it.
//!
//! Threads: workers only queue (`StoreWriter::record`, one `try_send`) and ask
//! (`StoreReader::read_after`, then await the `Reply`; `StoreFollows::follow`, then await the
//! `Feed`); only the "tether-store" and "tether-store-follow" threads talk to Redis, through the `redis` crate's synchronous client (no Redis client runs on monoio).
//! Redis down or slow never stops a stream: writes are dropped and counted, reads answer
//! `Unavailable` at once, and the thread reconnects with back-off.

mod counters;
mod error;
mod feed;
mod follow;
mod key;
mod lineage;
mod link;
mod read;
mod reply;
mod resp;
mod side;
mod state;
mod wire;
mod writer;

#[cfg(test)]
mod follow_tests;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub(crate) use counters::{CountersSnapshot, StoreCounters};
pub(crate) use error::{ReadError, StoreError};
pub(crate) use feed::Feed;
pub(crate) use follow::{FollowItem, StoreFollows, FOLLOW_IDLE};
pub(crate) use key::StoreKey;
pub(crate) use lineage::StoreLineage;
pub(crate) use read::{ReadOutcome, StoreReader, StoredEvent, READ_QUEUE_CAPACITY};
pub(crate) use reply::Reply;
pub(crate) use state::{LineageEnd, LineageState};
pub(crate) use writer::{Recorded, StoreWriter, DEFAULT_QUEUE_EVENTS};

/// The store's thread's name (in `top -H`, `ps -L`, panics).
const THREAD_NAME: &str = "tether-store";

/// The follow thread's name (`follow`).
const FOLLOW_THREAD_NAME: &str = "tether-store-follow";

/// How the store is set up (from `--replay-store`, `--replay-events`, `--replay-ttl`).
#[derive(Debug, Clone)]
pub(crate) struct StoreConfig {
    /// `redis://HOST:PORT[/DB]`.
    pub(crate) url: String,
    /// Events kept per stream (`XADD ... MAXLEN ~`).
    pub(crate) max_events: usize,
    /// How long a stream outlives its last event (`PEXPIRE`).
    pub(crate) ttl: Duration,
    /// Events each worker's queue holds before dropping (`DEFAULT_QUEUE_EVENTS`).
    pub(crate) queue_events: usize,
}

/// The running store: its thread and counters. Dropping it stops the thread after it wrote (or
/// counted) what was queued.
pub(crate) struct ReplayStore {
    counters: Arc<StoreCounters>,
    reader: StoreReader,
    follows: StoreFollows,
    doorbell: Arc<writer::Doorbell>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    follow_thread: Option<JoinHandle<()>>,
}

impl ReplayStore {
    /// Starts the store's thread, with one queue per worker (`workers` writers, in worker order).
    /// Never waits for Redis: tether starts (and serves from local rings) while Redis is down;
    /// the thread connects on its first event.
    pub(crate) fn start(
        config: &StoreConfig,
        workers: usize,
    ) -> Result<(ReplayStore, Vec<StoreWriter>), StoreError> {
        let (client, target) = client_for(&config.url)?;
        if config.max_events == 0 {
            return Err(StoreError::BadSetting {
                name: "--replay-events",
                reason: "must be at least 1 to keep anything in Redis",
            });
        }
        if config.queue_events == 0 || workers == 0 {
            return Err(StoreError::BadSetting {
                name: "queue",
                reason: "needs at least one worker and room for one event",
            });
        }
        let counters = Arc::new(StoreCounters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mut senders = Vec::with_capacity(workers);
        let mut queues = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (tx, rx) = sync_channel(config.queue_events);
            senders.push(tx);
            queues.push(rx);
        }
        let (read_tx, read_rx) = sync_channel(READ_QUEUE_CAPACITY);
        // The thread needs its doorbell and the doorbell needs the thread's handle: the thread
        // waits for it before it starts.
        let (bell_tx, bell_rx) = std::sync::mpsc::channel::<Arc<writer::Doorbell>>();
        let side_counters = counters.clone();
        let side_stop = stop.clone();
        let settings = side::WriteSettings {
            max_events: config.max_events,
            ttl: config.ttl,
        };
        let (follow_queue, follower) = follow::channel(
            link::Link::new(client.clone(), target.clone()),
            counters.clone(),
            stop.clone(),
        );
        let follow_thread = std::thread::Builder::new()
            .name(FOLLOW_THREAD_NAME.into())
            .spawn(move || follower.run())
            .map_err(StoreError::Spawn)?;
        let follows = follow::handle(follow_queue, follow_thread.thread().clone());
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                let Ok(doorbell) = bell_rx.recv() else {
                    return;
                };
                side::Side {
                    link: link::Link::new(client, target),
                    queues,
                    reads: read_rx,
                    counters: side_counters,
                    doorbell,
                    stop: side_stop,
                    settings,
                    batch: Vec::with_capacity(side::MAX_PIPELINE_EVENTS),
                    pending_reads: Vec::new(),
                    next_queue: 0,
                }
                .run();
            })
            .map_err(StoreError::Spawn)?;
        let doorbell = Arc::new(writer::Doorbell {
            sleeping: AtomicBool::new(false),
            thread: thread.thread().clone(),
        });
        let _ = bell_tx.send(doorbell.clone());
        let writers = senders
            .into_iter()
            .map(|tx| StoreWriter::new(tx, counters.clone(), doorbell.clone()))
            .collect();
        let store = ReplayStore {
            counters,
            reader: StoreReader::new(read_tx, doorbell.clone()),
            follows,
            doorbell,
            stop,
            thread: Some(thread),
            follow_thread: Some(follow_thread),
        };
        Ok((store, writers))
    }

    /// A reader for a worker (clones share one bounded read queue).
    pub(crate) fn reader(&self) -> StoreReader {
        self.reader.clone()
    }

    /// Live follows through the store, for a worker (clones share one bounded queue).
    pub(crate) fn follows(&self) -> StoreFollows {
        self.follows.clone()
    }

    /// The counters, shared: /metrics reads them from any thread.
    pub(crate) fn counters(&self) -> Arc<StoreCounters> {
        self.counters.clone()
    }

    /// Stops the thread once it has written (or counted) every queued event, and waits for it:
    /// at most about one `link::IO_TIMEOUT` per pipeline left when Redis hangs.
    pub(crate) fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            self.doorbell.thread.unpark();
            let _ = thread.join();
        }
        if let Some(thread) = self.follow_thread.take() {
            // At most one FOLLOW_BLOCK (or one IO timeout when Redis hangs) away from seeing the
            // stop.
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

impl Drop for ReplayStore {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// The client for `url`, and where it points (for logs: host and port, never a password).
fn client_for(url: &str) -> Result<(redis::Client, String), StoreError> {
    let Some((scheme, _)) = url.split_once("://") else {
        return Err(StoreError::BadUrl {
            reason: "no scheme".to_string(),
        });
    };
    if scheme != "redis" {
        return Err(StoreError::UnsupportedScheme {
            scheme: scheme.to_string(),
        });
    }
    let client = redis::Client::open(url).map_err(|e| StoreError::BadUrl {
        // redis-rs's messages do not echo the URL (which may hold a password).
        reason: e.to_string(),
    })?;
    let info = client.get_connection_info();
    let target = format!("{}/{}", info.addr(), info.redis_settings().db());
    Ok((client, target))
}
