//! Reads for a reconnection that missed every local ring: the events recorded after its
//! `Last-Event-ID`, found by scanning the stream from its newest entry back (`XREVRANGE`).
//!
//! The SSE id is a field of each entry (`id`), not the entry's Redis id: Redis makes its own
//! (`<ms>-<seq>`) and an upstream's ids are arbitrary strings. A reconnection usually missed few
//! events, so a backward scan finds its id in the first page; the scan stops after the stream's
//! bound (`super::side::scan_limit`), so a stale id costs a bounded read.
//!
//! Several lineages of one scope write into one stream (`super::lineage`), interleaved, possibly
//! with the same ids. The newest entry carrying the id names the lineage (its `lineage` field);
//! only that lineage's later entries are returned, in their order: one history, never two mixed
//! and never an id twice.
//!
//! ```text
//! newer = []                                   (newest first)
//! end = +
//! loop:
//!     page = XREVRANGE key end - COUNT READ_PAGE
//!     for entry in page (newest to oldest):
//!         entry.id == last_id  -> return After(reverse(newer where lineage == entry.lineage))
//!         newer.push(entry); past scan_limit -> return UnknownId
//!     page shorter than READ_PAGE -> return UnknownId   (reached the oldest entry)
//!     end = "(" + page.last.redis_id                   (exclusive: Redis >= 6.2)
//! ```

use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;

use bytes::Bytes;

use super::error::ReadError;
use super::key::StoreKey;
use super::reply::{self, Replier, Reply};
use super::state::{LineageEnd, LineageState};
use super::writer::Doorbell;

/// Reads that may wait for the store's thread at once, all workers together. Past it a read is
/// answered `Busy` at once (the reconnection goes upstream): a reconnection storm must not queue
/// behind a slow Redis, each waiting read holding two descriptors.
pub(crate) const READ_QUEUE_CAPACITY: usize = 256;

/// Entries asked per `XREVRANGE`: one round trip covers a typical reconnection's gap; larger
/// pages would copy events the reader does not need when the id is near the head.
pub(super) const READ_PAGE: usize = 128;

/// Field names of an entry, as `XADD` writes them (`super::side`).
pub(super) const FIELD_ID: &[u8] = b"id";
pub(super) const FIELD_DATA: &[u8] = b"data";
/// The recording lineage's tag (`super::lineage`).
pub(super) const FIELD_LINEAGE: &[u8] = b"lineage";
/// `1`: tether assigned the id (`--assign-ids`); `0`: the upstream's (or none).
pub(super) const FIELD_ASSIGNED: &[u8] = b"assigned";
/// Only in a lineage's end marker (`super::state`): `finished` or `stopped`.
pub(super) const FIELD_END: &[u8] = b"end";

/// One recorded event read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredEvent {
    /// Redis's id of the entry (`<ms>-<seq>`): where a follower continues (`XREAD ... <id>`).
    pub(crate) position: String,
    /// The SSE id the event set (empty: it set none).
    pub(crate) id: Bytes,
    /// The event's bytes as its client was sent them.
    pub(crate) raw: Bytes,
    /// The id was assigned by tether (`--assign-ids` on the instance that recorded it): never
    /// sent upstream as a `Last-Event-ID`.
    pub(crate) assigned: bool,
}

/// An entry as read: an event or a lineage's end marker, with the tag of the lineage that wrote
/// it and its place in the Redis stream.
pub(super) struct Entry {
    pub(super) position: String,
    pub(super) lineage: Bytes,
    pub(super) item: Item,
}

pub(super) enum Item {
    Event(StoredEvent),
    End(LineageEnd),
}

/// What the store holds after an id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ReadOutcome {
    /// The id was found: these events of its lineage followed it, oldest first (empty: it is the
    /// newest).
    After {
        events: Vec<StoredEvent>,
        /// Whether an instance still reads the lineage's upstream (`super::state`).
        state: LineageState,
        /// The lineage's tag, and the stream's newest entry when it was read: where a follower
        /// continues (`super::follow`), nothing between lost.
        lineage: Bytes,
        tail: String,
    },
    /// The stream holds no event with that id (never written, trimmed, or expired).
    UnknownId,
}

/// A read waiting for the store's thread.
pub(super) struct ReadRequest {
    pub(super) key: StoreKey,
    pub(super) after: Bytes,
    pub(super) reply: Replier<Result<ReadOutcome, ReadError>>,
}

/// Asks the store for events; any worker may hold a clone.
#[derive(Clone)]
pub(crate) struct StoreReader {
    queue: SyncSender<ReadRequest>,
    doorbell: Arc<Doorbell>,
}

impl StoreReader {
    pub(super) fn new(queue: SyncSender<ReadRequest>, doorbell: Arc<Doorbell>) -> StoreReader {
        StoreReader { queue, doorbell }
    }

    /// Asks for the events of `key` after the one whose SSE id is `last_event_id`. Never blocks:
    /// the answer comes through the returned `Reply`, awaited on the worker (with
    /// `Reply::recv_within` for a time limit).
    pub(crate) fn read_after(
        &self,
        key: &StoreKey,
        last_event_id: &[u8],
    ) -> Result<Reply<Result<ReadOutcome, ReadError>>, ReadError> {
        let (replier, reply) = reply::channel().map_err(ReadError::Io)?;
        let request = ReadRequest {
            key: key.clone(),
            after: Bytes::copy_from_slice(last_event_id),
            reply: replier,
        };
        match self.queue.try_send(request) {
            Ok(()) => {
                // A read is rare and someone waits for it: always wake the thread, not only
                // when it sleeps long (it may be lingering).
                self.doorbell.thread.unpark();
                Ok(reply)
            }
            Err(TrySendError::Full(_)) => Err(ReadError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(ReadError::Stopped),
        }
    }
}

/// Why a scan failed; the store's thread turns it into a `ReadError` after deciding what the
/// connection's fate is.
pub(super) enum ScanError {
    Redis(redis::RedisError),
    Malformed { what: &'static str },
}

/// Runs the scan on the store's thread. `live_within`: a lineage whose newest entry is an event
/// older than this (by Redis's clock, `TIME`) counts as stopped: its instance died unmarked.
pub(super) fn scan(
    con: &mut redis::Connection,
    key: &StoreKey,
    after: &[u8],
    scan_limit: usize,
    live_within: std::time::Duration,
) -> Result<ReadOutcome, ScanError> {
    let now_ms = redis_now_ms(con)?;
    let mut newer: Vec<Entry> = Vec::new();
    let mut tail: Option<String> = None;
    let mut end = String::from("+");
    loop {
        let page: redis::Value = redis::cmd("XREVRANGE")
            .arg(key.as_bytes())
            .arg(end.as_str())
            .arg("-")
            .arg("COUNT")
            .arg(READ_PAGE)
            .query(con)
            .map_err(ScanError::Redis)?;
        let entries = match page {
            redis::Value::Array(entries) => entries,
            _ => {
                return Err(ScanError::Malformed {
                    what: "XREVRANGE did not answer an array",
                })
            }
        };
        let full_page = entries.len() >= READ_PAGE;
        for entry in entries {
            let entry = parse_entry(entry)?;
            tail.get_or_insert_with(|| entry.position.clone());
            if let Item::Event(event) = &entry.item {
                if *event.id == *after && !event.id.is_empty() {
                    let state = lineage_state(&newer, &entry, now_ms, live_within);
                    let events = newer
                        .into_iter()
                        .rev()
                        .filter(|e| e.lineage == entry.lineage)
                        .filter_map(|e| match e.item {
                            Item::Event(event) => Some(event),
                            Item::End(_) => None,
                        })
                        .collect();
                    return Ok(ReadOutcome::After {
                        events,
                        state,
                        lineage: entry.lineage,
                        tail: tail.unwrap_or_default(),
                    });
                }
            }
            end = format!("({}", entry.position);
            newer.push(entry);
            if newer.len() > scan_limit {
                return Ok(ReadOutcome::UnknownId);
            }
        }
        if !full_page {
            return Ok(ReadOutcome::UnknownId);
        }
    }
}

/// The state of `found`'s lineage: the kind of its newest entry (`newer` is newest first).
fn lineage_state(
    newer: &[Entry],
    found: &Entry,
    now_ms: u64,
    live_within: std::time::Duration,
) -> LineageState {
    let newest = newer
        .iter()
        .find(|e| e.lineage == found.lineage)
        .unwrap_or(found);
    match newest.item {
        Item::End(how) => LineageState::Ended(how),
        Item::Event(_) => {
            let written_ms = position_ms(&newest.position).unwrap_or(0);
            let age_ms = now_ms.saturating_sub(written_ms);
            if u128::from(age_ms) > live_within.as_millis() {
                LineageState::Ended(LineageEnd::Stopped)
            } else {
                LineageState::Live
            }
        }
    }
}

/// Redis's clock in milliseconds (`TIME`): entry ids are made from it, so ages are measured on
/// one clock whatever the instances' clocks say.
fn redis_now_ms(con: &mut redis::Connection) -> Result<u64, ScanError> {
    let (secs, micros): (u64, u64) = redis::cmd("TIME").query(con).map_err(ScanError::Redis)?;
    Ok(secs * 1000 + micros / 1000)
}

/// The milliseconds part of an entry id (`<ms>-<seq>`).
pub(super) fn position_ms(position: &str) -> Option<u64> {
    position.split_once('-').and_then(|(ms, _)| ms.parse().ok())
}

/// An entry id as numbers, for ordering (`<ms>-<seq>`).
pub(super) fn position_order(position: &str) -> Option<(u64, u64)> {
    let (ms, seq) = position.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// `[redis id, [field, value, ...]]` into an entry.
pub(super) fn parse_entry(entry: redis::Value) -> Result<Entry, ScanError> {
    let malformed = |what| ScanError::Malformed { what };
    let redis::Value::Array(mut parts) = entry else {
        return Err(malformed("a stream entry is not an array"));
    };
    if parts.len() != 2 {
        return Err(malformed("a stream entry is not [id, fields]"));
    }
    let fields = parts.pop();
    let position = match parts.pop() {
        Some(redis::Value::BulkString(id)) => {
            String::from_utf8(id).map_err(|_| malformed("a stream entry id is not text"))?
        }
        Some(redis::Value::SimpleString(id)) => id,
        _ => return Err(malformed("a stream entry id is not a string")),
    };
    let Some(redis::Value::Array(fields)) = fields else {
        return Err(malformed("a stream entry's fields are not an array"));
    };
    let mut id = None;
    let mut raw = None;
    let mut lineage = None;
    let mut assigned = None;
    let mut end = None;
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        let (redis::Value::BulkString(name), redis::Value::BulkString(value)) = (name, value)
        else {
            return Err(malformed("a stream entry field is not a string"));
        };
        if name == FIELD_ID {
            id = Some(Bytes::from(value));
        } else if name == FIELD_DATA {
            raw = Some(Bytes::from(value));
        } else if name == FIELD_LINEAGE {
            lineage = Some(Bytes::from(value));
        } else if name == FIELD_ASSIGNED {
            assigned = Some(value == b"1");
        } else if name == FIELD_END {
            end = Some(
                LineageEnd::from_word(&value)
                    .ok_or(malformed("an end marker is neither finished nor stopped"))?,
            );
        }
    }
    let Some(lineage) = lineage else {
        return Err(malformed("a stream entry lacks its lineage field"));
    };
    if let Some(how) = end {
        return Ok(Entry {
            position,
            lineage,
            item: Item::End(how),
        });
    }
    match (id, raw, assigned) {
        (Some(id), Some(raw), Some(assigned)) => Ok(Entry {
            item: Item::Event(StoredEvent {
                position: position.clone(),
                id,
                raw,
                assigned,
            }),
            position,
            lineage,
        }),
        _ => Err(malformed(
            "a stream entry lacks its id, data or assigned field",
        )),
    }
}
