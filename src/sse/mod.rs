//! Server-Sent Events, floor by floor:
//! - [`framer`]: an upstream body split into forwardable blocks, with the last-event-id cursor;
//! - [`ring`]: one lineage's history (its recent events, by seq and by id);
//! - [`scope`]: which streams a reconnection may resume (target and identity);
//! - [`table`]: a worker's rings, their budget and TTL; [`eviction`]: who loses events first;
//! - [`directory`]: which workers hold rings of a scope, and the inboxes between workers;
//! - [`lookup`]: where a `Last-Event-ID` resumes (this worker, the worker an id names, others);
//! - [`assigned_id`]: the ids `--assign-ids` gives, which name their ring;
//! - [`relay`]: one client's stream (setup and the drop/resume loop), with [`pump`] (one
//!   upstream body), [`catch_up`] (replay at the client's pace), [`reconnect`] (backoff and
//!   attempts), [`resume`] (the decisions and one attempt) and [`outbound`] (the client's queue);
//! - [`partial`]: the worker-wide bound on unfinished events;
//! - [`active`]: the streams being relayed, for `/streams`.

pub mod active;
pub mod assigned_id;
pub mod catch_up;
pub mod directory;
pub mod eviction;
pub mod framer;
pub mod lookup;
pub mod outbound;
pub mod partial;
pub mod pump;
pub mod reconnect;
pub mod relay;
pub mod resume;
pub mod ring;
pub mod scope;
pub mod table;

pub use framer::{
    parse_block, EventFramer, FrameError, IdField, ParsedEvent, SseBlock, DEFAULT_MAX_EVENT_BYTES,
};
