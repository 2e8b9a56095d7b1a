//! The replay store: streams' events written behind to Redis Streams, so that a reconnection
//! landing on another tether instance finds what it missed (issue 16).
//!
//! Files (one concept each):
//! - `key`: a stream's Redis key, the SHA-256 of its scope: never credentials in Redis.

mod key;

pub(crate) use key::StoreKey;
