//! The replay store: streams' events written behind to Redis Streams, so that a reconnection
//! landing on another tether instance finds what it missed (issue 16).
//!
//! Files (one concept each):
//! - `key`: a stream's Redis key, the SHA-256 of its scope: never credentials in Redis.
//! - `reply`: the one-shot that brings a read's answer to a monoio worker without blocking it.
//! - `error`: what can fail, with what to do about it.

mod error;
mod key;
mod reply;

#[cfg(test)]
mod test_support;

pub(crate) use error::{ReadError, StoreError};
pub(crate) use key::StoreKey;
pub(crate) use reply::Reply;
