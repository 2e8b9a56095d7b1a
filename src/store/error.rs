//! What can go wrong with the replay store, each with what to do about it.
//!
//! Two families: `StoreError` stops tether at start (a bad `--replay-store`), `ReadError` is one
//! reconnection's read that could not be answered (the caller then treats the id as unknown and
//! goes upstream, as it does without a store). Writes have no error type: they are best effort,
//! and what fails is counted (`super::counters`), never returned to a worker.

use std::fmt;
use std::time::Duration;

/// The store cannot be started.
#[derive(Debug)]
pub(crate) enum StoreError {
    /// `--replay-store` is not a URL the client accepts.
    BadUrl { reason: String },
    /// A scheme other than `redis://` (TLS and unix sockets are not built in).
    UnsupportedScheme { scheme: String },
    /// A setting that cannot work (zero events, zero queue).
    BadSetting {
        name: &'static str,
        reason: &'static str,
    },
    /// The store's thread could not be started.
    Spawn(std::io::Error),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::BadUrl { reason } => write!(
                f,
                "--replay-store: {reason}; expected redis://HOST:PORT[/DB] (e.g. redis://127.0.0.1:6379/0)"
            ),
            StoreError::UnsupportedScheme { scheme } => write!(
                f,
                "--replay-store: scheme {scheme:?} is not supported; use redis://HOST:PORT[/DB] (no TLS, no unix socket)"
            ),
            StoreError::BadSetting { name, reason } => {
                write!(f, "replay store: {name} {reason}")
            }
            StoreError::Spawn(e) => write!(
                f,
                "replay store: cannot start its thread: {e} (out of threads or memory?)"
            ),
        }
    }
}

impl std::error::Error for StoreError {}

/// A read for a reconnection that got no answer from the store.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Too many reads are waiting for the store's thread already (`READ_QUEUE_CAPACITY`): a
    /// reconnection storm must not queue without bound behind a slow Redis.
    Busy,
    /// Redis is not connected now (down, or being reconnected with back-off): the read is answered
    /// at once rather than waiting for it.
    Unavailable,
    /// Redis answered with an error, or the connection failed during the read.
    Redis { detail: String },
    /// Redis answered something that is not a stream entry as tether writes them (another program
    /// wrote the key?).
    Malformed { what: &'static str },
    /// No answer within the caller's time limit (the read goes on and its answer is dropped).
    TimedOut { after: Duration },
    /// The store's thread has stopped (tether is shutting down, or it panicked).
    Stopped,
    /// The reply channel could not be made (no file descriptors left?).
    Io(std::io::Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Busy => write!(
                f,
                "replay store: too many reads waiting; treated as unknown (is Redis slow?)"
            ),
            ReadError::Unavailable => {
                write!(f, "replay store: Redis is not connected; treated as unknown")
            }
            ReadError::Redis { detail } => write!(f, "replay store: Redis read failed: {detail}"),
            ReadError::Malformed { what } => write!(
                f,
                "replay store: unexpected reply ({what}); is another program writing tether:stream:* keys?"
            ),
            ReadError::TimedOut { after } => write!(
                f,
                "replay store: no answer within {} ms; treated as unknown (is Redis slow?)",
                after.as_millis()
            ),
            ReadError::Stopped => write!(f, "replay store: its thread has stopped"),
            ReadError::Io(e) => write!(
                f,
                "replay store: cannot make a reply channel: {e} (out of file descriptors?)"
            ),
        }
    }
}

impl std::error::Error for ReadError {}
