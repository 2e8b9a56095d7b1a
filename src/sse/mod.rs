//! Server-Sent Events, floor by floor:
//! - [`framer`]: an upstream body split into forwardable blocks, with the last-event-id cursor;
//! - [`ring`]: one lineage's history (its recent events, by seq and by id);
//! - [`scope`]: which streams a reconnection may resume (target and identity);
//! - [`table`]: a worker's rings, their budget and TTL; [`eviction`]: who loses events first;
//! - [`directory`]: which workers hold rings of a scope, and the inboxes between workers;
//! - [`lookup`]: where a `Last-Event-ID` resumes (this worker, the worker an id names, others);
//! - [`assigned_id`]: the ids `--assign-ids` gives, which name their ring;
//! - [`relay`]: one client's stream (setup and the drop/resume loop), with [`pump`] (one
//!   upstream body; [`read_flush`]: one read's events to the client and the ring),
//!   [`catch_up`] (replay at the client's pace), [`reconnect`] (backoff and attempts),
//!   [`resume`] (the decisions and one attempt) and [`outbound`] (the client's queue);
//! - [`partial`]: the worker-wide bound on unfinished events;
//! - [`fanout`]: a lineage shared by followers or held without a client; [`follow`]: a client
//!   that follows another's upstream through the ring; [`coalesce`]: which live streams a
//!   fresh GET may join; [`store_follow`]: a lineage another instance reads, followed through
//!   the replay store;
//! - [`active`]: the streams being relayed, for `/streams`.

pub(crate) mod active;
pub(crate) mod assigned_id;
pub(crate) mod catch_up;
pub(crate) mod coalesce;
pub(crate) mod directory;
pub(crate) mod eviction;
pub(crate) mod extras;
pub(crate) mod fanout;
pub(crate) mod follow;
pub mod framer;
pub(crate) mod idle_clock;
mod line_ends;
pub(crate) mod lookup;
pub(crate) mod outbound;
pub(crate) mod partial;
pub(crate) mod pump;
pub(crate) mod read_flush;
pub(crate) mod reconnect;
pub(crate) mod relay;
pub(crate) mod resume;
pub mod ring;
pub mod ring_batch;
pub(crate) mod scope;
pub(crate) mod store_follow;
pub(crate) mod stream_timer;
pub(crate) mod table;

pub use framer::{
    parse_block, EventFramer, EventId, FrameError, IdField, ParsedEvent, SseBlock,
    DEFAULT_MAX_EVENT_BYTES,
};
