//! Server-Sent Events: framing an upstream body into forwardable blocks and tracking the
//! last-event-id cursor ([`framer`]). Replay ring, stream registry and resume/splice come later.

pub mod framer;

pub use framer::{
    parse_block, EventFramer, FrameError, IdField, ParsedEvent, SseBlock, DEFAULT_MAX_EVENT_BYTES,
};
