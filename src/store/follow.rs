//! Following a lineage live through the store: a reconnection that lands on this instance while
//! another instance still reads the stream's upstream (it holds it, `--hold-upstream`, or serves
//! another client of it) gets the lineage's new entries as they are written, instead of a second
//! upstream request (for a POST-born generation there is none to make).
//!
//! One thread ("tether-store-follow") with a connection of its own (`XREAD BLOCK` holds a
//! connection; the writes and reads on the store's thread never wait behind it):
//! ```text
//! loop:
//!     take new follows; drop the ones whose worker gave up
//!     none: sleep until one comes
//!     XREAD COUNT FOLLOW_COUNT BLOCK FOLLOW_BLOCK STREAMS <each key> <oldest position followed>
//!     per follow: its lineage's entries after its own position -> its feed (one item per batch)
//!                 an end marker -> End, and the follow is done
//!     nothing for FOLLOW_IDLE -> Quiet, and the follow is done (the instance died unmarked?)
//! ```
//! A new follow waits at most FOLLOW_BLOCK before its first XREAD, and loses nothing meanwhile:
//! it starts at the position its read ended on (`super::read::ReadOutcome::After::tail`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::Thread;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::counters::StoreCounters;
use super::error::ReadError;
use super::feed::{self, Feed, FeedSender};
use super::key::StoreKey;
use super::link::Link;
use super::read::{self, Item, StoredEvent};
use super::reply::{self, Replier, Reply};
use super::state::LineageEnd;

/// Follows at once, process-wide. Past it a reconnection is not followed through the store (it
/// resumes upstream as without one, `ReadError::Busy`): each follow holds two descriptors and a
/// slot in every `XREAD`.
pub(crate) const MAX_FOLLOWS: usize = 1024;

/// Longest `XREAD BLOCK`: how long a new follow may wait for its first read, and how often the
/// thread looks for new follows and abandoned ones while the streams are quiet.
const FOLLOW_BLOCK: Duration = Duration::from_millis(100);

/// Entries per stream per `XREAD`.
const FOLLOW_COUNT: usize = 512;

/// Batches a follow's worker may leave untaken (up to FOLLOW_COUNT events each) before the follow
/// is ended: a worker that cannot keep up must not grow this thread's queues without bound. Its
/// clients' responses end cleanly and they come back with their last id.
pub(super) const FOLLOW_MAX_QUEUED: usize = 64;

/// A follow that got nothing (no event, no end marker) for this long ends with `Quiet`: the
/// instance reading the upstream died without its end marker, or the stream is idle that long.
/// Its client's response ends cleanly and its reconnection, finding the lineage's newest entry
/// older than this, resumes the upstream itself (`super::read`, `super::state`).
pub(crate) const FOLLOW_IDLE: Duration = Duration::from_secs(60);

/// Sleep with no follow at all (a new one unparks the thread; this is a safety net).
const IDLE_PARK: Duration = Duration::from_millis(500);

/// While a lineage is followed here, its mark in Redis (`FOLLOWED_PREFIX` + its tag) is renewed
/// this often and lives `FOLLOWED_TTL`: the instance holding its upstream (`--hold-upstream`)
/// asks for the mark when its hold runs out, and holds on while it is there, so a generation
/// followed from another instance is read to its end, not cut at the hold.
const FOLLOWED_MARK_EVERY: Duration = Duration::from_secs(1);
const FOLLOWED_TTL: Duration = Duration::from_secs(5);
const FOLLOWED_PREFIX: &str = "tether:followed:";

/// What a follow receives.
#[derive(Debug)]
pub(crate) enum FollowItem {
    /// The lineage's next events, oldest first.
    Events(Vec<StoredEvent>),
    /// Its instance wrote the end marker: nothing more will come.
    End(LineageEnd),
    /// Nothing came for `FOLLOW_IDLE`.
    Quiet,
    /// The worker left `FOLLOW_MAX_QUEUED` batches untaken: the follow was ended.
    Overrun,
}

/// What a worker asks of the follow thread.
pub(super) enum Request {
    Follow(FollowRequest),
    /// Whether an instance follows the lineage with this tag now (its mark is in Redis).
    IsFollowed {
        lineage: Bytes,
        reply: Replier<Result<bool, ReadError>>,
    },
}

pub(super) struct FollowRequest {
    key: StoreKey,
    lineage: Bytes,
    /// Entries up to this one were read already.
    from: String,
    feed: FeedSender<FollowItem>,
}

struct Follow {
    request: FollowRequest,
    from: (u64, u64),
    last_news: Instant,
    /// Its end marker was handed out: nothing more to read for it.
    done: bool,
}

/// Starts follows; any worker may hold a clone.
#[derive(Clone)]
pub(crate) struct StoreFollows {
    queue: SyncSender<Request>,
    thread: Thread,
}

impl StoreFollows {
    /// Follows `lineage` (its tag) in `key` from after the entry `from` (a Redis entry id).
    pub(crate) fn follow(
        &self,
        key: &StoreKey,
        lineage: Bytes,
        from: &str,
    ) -> Result<Feed<FollowItem>, ReadError> {
        if read::position_order(from).is_none() {
            return Err(ReadError::Malformed {
                what: "a follow's start is not an entry id",
            });
        }
        let (sender, feed) = feed::channel().map_err(ReadError::Io)?;
        let request = FollowRequest {
            key: key.clone(),
            lineage,
            from: from.to_string(),
            feed: sender,
        };
        self.send(Request::Follow(request))?;
        Ok(feed)
    }

    /// Asks whether another instance follows the lineage tagged `lineage` now; the answer comes
    /// through the `Reply` (within about one `FOLLOW_BLOCK`).
    pub(crate) fn is_followed(
        &self,
        lineage: &[u8],
    ) -> Result<Reply<Result<bool, ReadError>>, ReadError> {
        let (replier, reply) = reply::channel().map_err(ReadError::Io)?;
        self.send(Request::IsFollowed {
            lineage: Bytes::copy_from_slice(lineage),
            reply: replier,
        })?;
        Ok(reply)
    }

    fn send(&self, request: Request) -> Result<(), ReadError> {
        match self.queue.try_send(request) {
            Ok(()) => {
                self.thread.unpark();
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(ReadError::Busy),
            Err(TrySendError::Disconnected(_)) => Err(ReadError::Stopped),
        }
    }
}

/// The follow thread's state.
pub(super) struct Follower {
    link: Link,
    requests: Receiver<Request>,
    follows: Vec<Follow>,
    /// When the follows' marks were last renewed.
    marked_at: Option<Instant>,
    counters: Arc<StoreCounters>,
    stop: Arc<AtomicBool>,
}

/// Makes the queue, and the thread's state to run with `Follower::run` (the caller spawns it and
/// then makes the handle with `handle`).
pub(super) fn channel(
    link: Link,
    counters: Arc<StoreCounters>,
    stop: Arc<AtomicBool>,
) -> (SyncSender<Request>, Follower) {
    let (tx, rx) = std::sync::mpsc::sync_channel(MAX_FOLLOWS);
    (
        tx,
        Follower {
            link,
            requests: rx,
            follows: Vec::new(),
            marked_at: None,
            counters,
            stop,
        },
    )
}

pub(super) fn handle(queue: SyncSender<Request>, thread: Thread) -> StoreFollows {
    StoreFollows { queue, thread }
}

impl Follower {
    pub(super) fn run(mut self) {
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            self.take_requests();
            self.follows.retain(|f| !f.request.feed.abandoned());
            if self.follows.is_empty() {
                self.marked_at = None;
                std::thread::park_timeout(IDLE_PARK);
                continue;
            }
            self.mark_followed();
            self.read_once();
            self.end_quiet();
        }
    }

    fn take_requests(&mut self) {
        loop {
            let request = match self.requests.try_recv() {
                Ok(Request::Follow(request)) => request,
                Ok(Request::IsFollowed { lineage, reply }) => {
                    if !reply.abandoned() {
                        let answer = self.is_followed(&lineage);
                        reply.send(answer);
                    }
                    continue;
                }
                Err(_) => break,
            };
            // Past MAX_FOLLOWS (a burst the queue let through) or unreadable: dropped, which
            // closes its feed at once; its worker then ends the follow and its clients resume.
            let Some(from) = read::position_order(&request.from) else {
                continue;
            };
            if self.follows.len() >= MAX_FOLLOWS {
                continue;
            }
            self.follows.push(Follow {
                request,
                from,
                last_news: Instant::now(),
                done: false,
            });
        }
    }

    fn is_followed(&mut self, lineage: &[u8]) -> Result<bool, ReadError> {
        let Some(con) = self.link.reader(&self.counters) else {
            return Err(ReadError::Unavailable);
        };
        let mut name = FOLLOWED_PREFIX.as_bytes().to_vec();
        name.extend_from_slice(lineage);
        match redis::cmd("EXISTS").arg(name).query::<u64>(con) {
            Ok(n) => Ok(n > 0),
            Err(e) => {
                let detail = e.to_string();
                self.link
                    .command_failed(&self.counters, "follow mark read failed", &e);
                Err(ReadError::Redis { detail })
            }
        }
    }

    /// Renews the marks of the lineages followed here, every `FOLLOWED_MARK_EVERY`.
    fn mark_followed(&mut self) {
        let now = Instant::now();
        if self
            .marked_at
            .is_some_and(|at| now.duration_since(at) < FOLLOWED_MARK_EVERY)
        {
            return;
        }
        let Some(con) = self.link.reader(&self.counters) else {
            return;
        };
        self.marked_at = Some(now);
        let mut pipe = redis::pipe();
        let mut tags: Vec<&Bytes> = Vec::new();
        for f in &self.follows {
            if !tags.contains(&&f.request.lineage) {
                tags.push(&f.request.lineage);
            }
        }
        for tag in tags {
            let mut name = FOLLOWED_PREFIX.as_bytes().to_vec();
            name.extend_from_slice(tag);
            pipe.cmd("SET")
                .arg(name)
                .arg("1")
                .arg("PX")
                .arg(FOLLOWED_TTL.as_millis() as u64)
                .ignore();
        }
        if let Err(e) = pipe.exec(con) {
            self.link
                .command_failed(&self.counters, "follow mark failed", &e);
        }
    }

    /// One `XREAD` over every key followed, its entries handed out.
    fn read_once(&mut self) {
        // Per key, the oldest position any of its follows is at.
        let mut keys: Vec<(&StoreKey, (u64, u64))> = Vec::new();
        let mut at: HashMap<&StoreKey, usize> = HashMap::new();
        for f in &self.follows {
            let key = &f.request.key;
            match at.get(key) {
                Some(&i) => keys[i].1 = keys[i].1.min(f.from),
                None => {
                    at.insert(key, keys.len());
                    keys.push((key, f.from));
                }
            }
        }
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(FOLLOW_COUNT)
            .arg("BLOCK")
            .arg(FOLLOW_BLOCK.as_millis() as u64)
            .arg("STREAMS");
        for (key, _) in &keys {
            cmd.arg(key.as_bytes());
        }
        for (_, (ms, seq)) in &keys {
            cmd.arg(format!("{ms}-{seq}"));
        }
        let Some(con) = self.link.reader(&self.counters) else {
            // Redis down: the follows wait (and end Quiet past FOLLOW_IDLE); retry after the
            // link's back-off, never in a tight loop.
            std::thread::sleep(FOLLOW_BLOCK);
            return;
        };
        let answer: redis::Value = match cmd.query(con) {
            Ok(answer) => answer,
            Err(e) => {
                self.link
                    .command_failed(&self.counters, "follow failed", &e);
                std::thread::sleep(FOLLOW_BLOCK);
                return;
            }
        };
        let streams = match answer {
            redis::Value::Nil => return,
            redis::Value::Array(streams) => streams,
            // RESP3 answers a map.
            redis::Value::Map(pairs) => pairs
                .into_iter()
                .map(|(k, v)| redis::Value::Array(vec![k, v]))
                .collect(),
            _ => {
                self.counters.error();
                return;
            }
        };
        for stream in streams {
            let redis::Value::Array(mut parts) = stream else {
                self.counters.error();
                continue;
            };
            let (Some(redis::Value::Array(entries)), Some(redis::Value::BulkString(name))) =
                (parts.pop(), parts.pop())
            else {
                self.counters.error();
                continue;
            };
            let mut parsed = Vec::with_capacity(entries.len());
            for entry in entries {
                match read::parse_entry(entry) {
                    Ok(entry) => parsed.push(entry),
                    Err(_) => self.counters.error(),
                }
            }
            self.deliver(&name, &parsed);
        }
    }

    /// Hands `entries` (of the stream `name`, oldest first) to the follows of that stream.
    fn deliver(&mut self, name: &[u8], entries: &[read::Entry]) {
        let now = Instant::now();
        for f in self
            .follows
            .iter_mut()
            .filter(|f| f.request.key.as_bytes() == name)
        {
            let mut events = Vec::new();
            let mut ended = None;
            for entry in entries {
                let Some(position) = read::position_order(&entry.position) else {
                    continue;
                };
                if position <= f.from {
                    continue;
                }
                f.from = position;
                if entry.lineage != f.request.lineage || ended.is_some() {
                    continue;
                }
                match &entry.item {
                    Item::Event(event) => events.push(event.clone()),
                    Item::End(how) => ended = Some(*how),
                }
            }
            if !events.is_empty() {
                if f.request.feed.queued() >= FOLLOW_MAX_QUEUED {
                    f.request.feed.push(FollowItem::Overrun);
                    f.done = true;
                    continue;
                }
                f.request.feed.push(FollowItem::Events(events));
                f.last_news = now;
            }
            if let Some(how) = ended {
                f.request.feed.push(FollowItem::End(how));
                f.done = true;
            }
        }
        // Dropping a done follow's sender closes its feed after the End it was given.
        self.follows.retain(|f| !f.done);
    }

    fn end_quiet(&mut self) {
        let now = Instant::now();
        self.follows.retain(|f| {
            if now.duration_since(f.last_news) < FOLLOW_IDLE {
                return true;
            }
            f.request.feed.push(FollowItem::Quiet);
            false
        });
    }
}
