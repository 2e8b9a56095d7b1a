//! Server-Sent Events: framing an upstream body into forwardable blocks and tracking the
//! last-event-id cursor ([`framer`]), the replay ring of a stream ([`ring`]), what makes two
//! requests the same stream ([`key`]), a worker's streams ([`registry`]), how workers find each
//! other's rings ([`directory`]), and the relay loop itself ([`relay`]).

pub mod active;
pub mod directory;
pub mod framer;
pub mod key;
pub mod registry;
pub mod relay;
pub mod replay;
pub mod resume;
pub mod ring;

pub use framer::{
    parse_block, EventFramer, FrameError, IdField, ParsedEvent, SseBlock, DEFAULT_MAX_EVENT_BYTES,
};
