//! The store thread's connections to Redis: made on demand, replaced with back-off when they fail,
//! and reported in at most one log line per `LOG_INTERVAL` however many events fail.
//!
//! Two connections to one Redis, up and down together: writes go through `Wire` (hand-encoded
//! pipelines whose replies are counted, never parsed into values: `super::wire`), reads through
//! the `redis` crate's connection (`super::read` parses entries with it), made at the first read,
//! since most instances never read. Both are made from the one `--replay-store` URL as the crate
//! parsed it. A write acknowledged on one connection is seen by a later read on the other: the
//! thread sends the read only after the write's answer came.

use std::fmt::Display;
use std::time::{Duration, Instant};

use super::counters::StoreCounters;
use super::wire::{Target, Wire, WireError};

/// How long a connection attempt may take (TCP connect and handshake). Past it: counted as an
/// error and retried after the back-off; the thread is never stuck on a black-holed address.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long one pipeline or read may wait for Redis's answer. Past it: the connections are dropped
/// (their replies would be out of step) and remade after the back-off; the events of that pipeline
/// are counted as not written.
pub(super) const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// First wait before reconnecting after a failure; doubles per failed attempt.
pub(super) const BACKOFF_MIN: Duration = Duration::from_millis(100);

/// Longest wait between connection attempts while Redis stays down: a Redis back after an outage
/// gets writes again within this.
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// At most one warning per this interval while Redis fails, with how many failures it covers:
/// never a line per event.
pub(super) const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The connections, or when to try again.
pub(super) struct Link {
    /// Makes the read connection (the `redis` crate's).
    client: redis::Client,
    /// Where the write connection goes: the client's address and credentials. None: an address
    /// kind the write connection cannot reach (not `redis://HOST:PORT`); every write then counts
    /// as not written.
    write_target: Option<Target>,
    /// Where Redis is, for log lines (host:port, never the password).
    target: String,
    state: State,
    /// Current back-off (BACKOFF_MIN..=BACKOFF_MAX).
    backoff: Duration,
    throttle: LogThrottle,
}

enum State {
    Up {
        writes: Wire,
        /// Made at the first read.
        reads: Option<redis::Connection>,
    },
    /// Down; the next attempt is not before `retry_at`.
    Down { retry_at: Instant },
}

impl Link {
    pub(super) fn new(client: redis::Client, target: String) -> Link {
        Link {
            write_target: Target::from_info(client.get_connection_info()),
            client,
            target,
            // The first attempt is at once.
            state: State::Down {
                retry_at: Instant::now(),
            },
            backoff: BACKOFF_MIN,
            throttle: LogThrottle::default(),
        }
    }

    /// The write connection, connecting first when the link is down and its back-off has passed.
    /// None: Redis is down (the caller drops and counts what it had to write).
    pub(super) fn writer(&mut self, counters: &StoreCounters) -> Option<&mut Wire> {
        self.up(counters)?;
        match &mut self.state {
            State::Up { writes, .. } => Some(writes),
            State::Down { .. } => None,
        }
    }

    /// The read connection, connecting first as `writer` does, and making the read connection if
    /// this is the first read. None: Redis is down (the read is answered `Unavailable`).
    pub(super) fn reader(&mut self, counters: &StoreCounters) -> Option<&mut redis::Connection> {
        self.up(counters)?;
        if let State::Up { reads: None, .. } = self.state {
            match self.connect_reads() {
                Ok(con) => {
                    if let State::Up { reads, .. } = &mut self.state {
                        *reads = Some(con);
                    }
                }
                Err(e) => {
                    self.failed(counters, "cannot connect", &e);
                    return None;
                }
            }
        }
        match &mut self.state {
            State::Up {
                reads: Some(con), ..
            } => Some(con),
            _ => None,
        }
    }

    /// Connects the write connection when down and due. None: down.
    fn up(&mut self, counters: &StoreCounters) -> Option<()> {
        if let State::Down { retry_at } = self.state {
            if Instant::now() < retry_at {
                return None;
            }
            match self.connect_writes() {
                Ok(writes) => {
                    self.backoff = BACKOFF_MIN;
                    counters.set_connected(true);
                    if self.throttle.recovered() {
                        crate::log_info!("replay store: connected to Redis at {}", self.target);
                    }
                    self.state = State::Up {
                        writes,
                        reads: None,
                    };
                }
                Err(e) => {
                    self.failed(counters, "cannot connect", &e);
                    return None;
                }
            }
        }
        Some(())
    }

    /// When the next connection attempt is due (None: connected).
    pub(super) fn retry_at(&self) -> Option<Instant> {
        match self.state {
            State::Up { .. } => None,
            State::Down { retry_at } => Some(retry_at),
        }
    }

    /// A read on the read connection failed. An IO error or timeout leaves the connection out of
    /// step with its replies, so the link is marked down and remade after the back-off; a server
    /// error (a key of another type, OOM) leaves it usable.
    pub(super) fn command_failed(
        &mut self,
        counters: &StoreCounters,
        what: &str,
        e: &redis::RedisError,
    ) {
        let broken = e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_unrecoverable_error();
        self.report(counters, what, e, broken);
    }

    /// A pipeline on the write connection failed; as `command_failed`.
    pub(super) fn write_failed(&mut self, counters: &StoreCounters, what: &str, e: &WireError) {
        self.report(counters, what, e, e.is_broken());
    }

    fn report(&mut self, counters: &StoreCounters, what: &str, e: &dyn Display, broken: bool) {
        if broken {
            self.failed(counters, what, e);
        } else {
            counters.error();
            self.throttle
                .warn(format_args!("replay store: {what}: {e}"), &self.target);
        }
    }

    fn connect_writes(&self) -> Result<Wire, WireError> {
        let Some(target) = &self.write_target else {
            return Err(WireError::Protocol {
                what: "the write connection needs redis://HOST:PORT",
            });
        };
        Wire::connect(target, CONNECT_TIMEOUT, IO_TIMEOUT)
    }

    fn connect_reads(&self) -> redis::RedisResult<redis::Connection> {
        let con = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        con.set_read_timeout(Some(IO_TIMEOUT))?;
        con.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(con)
    }

    /// Marks the link down (both connections dropped) and schedules the next attempt.
    fn failed(&mut self, counters: &StoreCounters, what: &str, e: &dyn Display) {
        counters.error();
        counters.set_connected(false);
        self.throttle.warn(
            format_args!("replay store: {what}: {e}; retrying with back-off up to {} s, streams go on from local rings",
                BACKOFF_MAX.as_secs()),
            &self.target,
        );
        self.state = State::Down {
            retry_at: Instant::now() + self.backoff,
        };
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }
}

/// One warning per `LOG_INTERVAL`; the failures in between are counted into the next line.
#[derive(Default)]
struct LogThrottle {
    /// When the last warning was written.
    last: Option<Instant>,
    /// Failures since then that wrote no line.
    suppressed: u64,
    /// A warning was written since the last success: the recovery deserves a line too.
    reported: bool,
}

impl LogThrottle {
    fn warn(&mut self, line: std::fmt::Arguments<'_>, target: &str) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|at| now.duration_since(at) < LOG_INTERVAL)
        {
            self.suppressed += 1;
            return;
        }
        if self.suppressed > 0 {
            crate::log_warn!(
                "{line} (Redis at {target}; {} more failures in the last {} s)",
                self.suppressed,
                LOG_INTERVAL.as_secs()
            );
        } else {
            crate::log_warn!("{line} (Redis at {target})");
        }
        self.last = Some(now);
        self.suppressed = 0;
        self.reported = true;
    }

    /// A success: whether to say so (only after a warning, so a flapping Redis cannot log more
    /// than one recovery per warning, hence per interval).
    fn recovered(&mut self) -> bool {
        std::mem::take(&mut self.reported)
    }
}
