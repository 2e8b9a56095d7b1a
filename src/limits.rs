//! Limits that are not part of the HTTP wire codec, each with its unit and what happens when hit.
//! The CLI's defaults point here; `crate::config::Config` resolves flags against them in one place.

/// Client connections one worker serves at once. Past it, a new connection is accepted, answered
/// `503` and closed, so the accept queue never backs up and the worker never spins on EMFILE.
/// Two workers at the default stay under this machine's 20000-fd cap (each stream needs two fds).
pub const MAX_CONNECTIONS_PER_WORKER: usize = 4_096;

/// Connections being answered `503` at once, per worker, past `max_connections`; beyond this they
/// are closed without an answer (a flood must not cost memory).
pub const MAX_REJECTING_PER_WORKER: usize = 64;

/// Listen backlog for each worker's SO_REUSEPORT socket (the kernel caps it at net.core.somaxconn).
pub const LISTEN_BACKLOG: i32 = 4_096;

/// io_uring submission-queue entries per worker. monoio's ring set-up fails past 32768.
pub const URING_ENTRIES: u32 = 1_024;

/// Idle pooled upstream connections kept per worker and per replica; past it a finished connection
/// is closed instead of pooled.
pub const UPSTREAM_POOL_SIZE: usize = 64;

/// Initial size of a client connection's read buffer, in bytes. It grows (up to the head limit, or
/// one body read) only when a message needs it.
pub const CLIENT_READ_BUFFER: usize = 4 * 1024;

/// Size of one upstream read while relaying a body, in bytes: large enough that a fast upstream is
/// relayed in few syscalls, small enough that 10k slow streams do not pin much memory.
pub const BODY_READ_BUFFER: usize = 16 * 1024;

/// Back-off after accept() fails for lack of file descriptors (EMFILE/ENFILE), in milliseconds:
/// retrying at once would spin a core while the queue waits for fds to be released.
pub const ACCEPT_ERROR_BACKOFF_MS: u64 = 50;

/// How long a client must wait on something quiet (an upstream slow to answer, an SSE stream with
/// nothing to send) before its socket is also watched for a disconnect. Watching costs a poll op
/// each time; answers and busy streams that come sooner never pay for it.
pub const CLIENT_WATCH_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// How long an SSE stream must have been quiet before it lets go of the buffers it reuses from
/// read to read (its client queue's list, its block list): tens of thousands of quiet streams
/// must hold none. Its own constant, not CLIENT_WATCH_DELAY's: 1 s was tried (a stream at 10
/// events/s would keep its buffers) and raised scenario 3's idle RSS from ~2,550 to ~2,800-2,870
/// bytes per stream (freed later, the buffers of streams opening in a burst are not reused by
/// the next ones), so it stays at 100 ms (perf/NOTES.md, "Per-event cost, second cut").
pub const BUFFER_RELEASE_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

/// How long a `503`/error answer to a client may take before the socket is closed regardless, in
/// milliseconds.
pub const ERROR_ANSWER_TIMEOUT_MS: u64 = 1_000;
