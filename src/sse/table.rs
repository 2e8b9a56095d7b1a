//! A worker's replay rings: one per upstream lineage, found by scope and event id, kept within the
//! worker's share of `--replay-memory`.
//!
//! Worker-local (`RefCell`/`Cell`): recording an event takes no lock. A ring is *attached* while a
//! relay writes it (its lineage is live) and *detached* once that relay ended; a detached ring
//! stays for `--replay-ttl` so that the client's reconnection finds it, and is the first to go
//! when the budget is exceeded. Other workers see only which scopes this worker holds rings for
//! (the shared `Directory`) and ask for a ring's events through their inboxes, once per
//! reconnection, never per event.
//!
//! Budget, when the worker's rings together cost more than their share:
//! ```text
//! target = budget - budget / EVICTION_SLACK          (free a slice at once: passes stay rare)
//! 1. detached rings, least recently used first, are freed whole until total <= target
//! 2. still over: every ring is capped at the water level C where sum(min(cost, C)) = target,
//!    the largest losing their oldest events first (eviction::water_level)
//! from then on a ring above the cap trims itself when it records (one old event out per new
//! one, as a full ring does), so the work is spread over the streams instead of one long pass;
//! the sweep lifts the cap again once the rings fit
//! ```

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::directory::Directory;
use super::eviction::water_level;
use super::fanout::{FanEnd, Fanout};
use super::idle_clock::IdleStamp;
use super::ring::{ReplayRing, RingEvent};
use super::ring_batch::RingBatch;
use super::scope::ResumeScope;
use crate::metrics::WorkerMetrics;
use crate::store::{LineageEnd, StoreKey, StoreLineage, StoreWriter};

/// Default `--replay-memory`: what every ring of the process may cost together, overhead
/// included; each worker keeps its equal share.
pub const DEFAULT_REPLAY_MEMORY: usize = 256 * 1024 * 1024;

/// An eviction pass frees 1/EVICTION_SLACK of the budget beyond what is needed, so that a worker
/// at its budget does not run a pass (a scan of its rings) for every event it records.
const EVICTION_SLACK: usize = 8;

/// Freeing this much at once (a sweep, an eviction pass) also asks the allocator to return free
/// pages to the system, so RSS falls when rings go, instead of staying at its high-water mark.
const RETURN_TO_SYSTEM_BYTES: usize = 4 * 1024 * 1024;

/// What a ring costs besides its events: the lineage, its map entries and the scope's bytes are
/// added per ring.
const RING_OVERHEAD: usize =
    std::mem::size_of::<Lineage>() + std::mem::size_of::<ReplayRing>() + 96;

/// Bounds of every ring on this worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingLimits {
    /// `--replay-events`: events per ring.
    pub max_events: usize,
    /// `--replay-bytes`: event bytes per ring.
    pub max_bytes: usize,
    /// `--replay-ttl`: how long a detached ring is kept.
    pub ttl: Duration,
    /// `--replay-memory`: all rings of the process together; each worker has an equal share.
    pub memory: usize,
}

/// One upstream lineage's history on this worker.
pub struct Lineage {
    /// Unique on this worker (never reused); names the ring in the ids `--assign-ids` gives.
    pub id: u64,
    pub scope: ResumeScope,
    pub ring: RefCell<ReplayRing>,
    /// A relay writes this ring now.
    attached: Cell<bool>,
    /// When it was last attached or detached (for the LRU and the TTL), to the second
    /// (`super::idle_clock`: 4 bytes where an `Instant` is 16).
    last_used: Cell<IdleStamp>,
    /// The upstream ended the stream for good (its end marker in the store says `finished`).
    upstream_finished: Cell<bool>,
    /// What few lineages have, in one box made when the first is needed: None for most (one
    /// client, the store off). Every idle stream holds a lineage at a size-class edge
    /// (`tests::a_lineage_stays_small`): two fields of 8 bytes were one too many.
    extras: OnceCell<Box<LineageExtras>>,
}

/// A lineage's rarer parts (`Lineage::extras`).
#[derive(Default)]
struct LineageExtras {
    /// Its followers and its owner's hold, once it is shared or held (`super::fanout`). A
    /// `Cell` (read by taking and putting back, `Lineage::fanout()`).
    fanout: Cell<Option<Rc<Fanout>>>,
    /// The stream's key in the replay store (`--replay-store`) and this lineage's tag there:
    /// made once, when the ring is made, not per event. None when the store is off, and for a
    /// lineage fed from the store (`super::store_follow`: its events are in Redis already).
    store: Option<StoreLineage>,
}

impl std::fmt::Debug for Lineage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lineage")
            .field("id", &self.id)
            .field("scope", &self.scope)
            .field("ring", &self.ring)
            .field("attached", &self.attached)
            .field("counted", &self.counted())
            .field("shared", &self.fanout_is(|_| true))
            .finish_non_exhaustive()
    }
}

impl Lineage {
    pub fn attached(&self) -> bool {
        self.attached.get()
    }

    /// The lineage's fanout, if it is shared or held.
    pub(crate) fn fanout(&self) -> Option<Rc<Fanout>> {
        let cell = &self.extras.get()?.fanout;
        let fanout = cell.take();
        let out = fanout.clone();
        cell.set(fanout);
        out
    }

    /// Whether the lineage is shared or held and `f` says so of its fanout (no reference count
    /// taken).
    pub(crate) fn fanout_is(&self, f: impl FnOnce(&Fanout) -> bool) -> bool {
        let Some(extras) = self.extras.get() else {
            return false;
        };
        let fanout = extras.fanout.take();
        let yes = fanout.as_deref().is_some_and(f);
        extras.fanout.set(fanout);
        yes
    }

    /// Makes the lineage shared (or held), once; returns its fanout.
    pub(crate) fn share(&self, make: impl FnOnce() -> Fanout) -> Rc<Fanout> {
        let cell = &self.extras.get_or_init(Box::default).fanout;
        let fanout = cell.take().unwrap_or_else(|| Rc::new(make()));
        cell.set(Some(fanout.clone()));
        fanout
    }

    /// Its names in the replay store (None: the store is off, or the lineage is fed from it).
    fn store(&self) -> Option<&StoreLineage> {
        self.extras.get()?.store.as_ref()
    }

    /// The lineage's tag in the replay store (None: the store is off, or the lineage is fed from
    /// it).
    pub(crate) fn store_tag(&self) -> Option<&[u8]> {
        self.store().map(StoreLineage::tag)
    }

    /// What the table counts for this ring: its events' cost, `RING_OVERHEAD` and the scope's
    /// bytes. Read from the ring, not kept: every change to a ring's cost is the table's
    /// (`StreamTable::counting`), which brings its total along.
    fn counted(&self) -> usize {
        self.ring.borrow().cost() + self.fixed_cost()
    }

    /// What the ring costs besides its events.
    fn fixed_cost(&self) -> usize {
        RING_OVERHEAD + self.scope.heap_bytes()
    }

    /// Stamps the lineage as used at `at` (attached or detached then).
    fn used_at(&self, at: Instant) {
        self.last_used.set(IdleStamp::at(at));
    }

    /// The upstream ended this stream for good (a clean end, or a final answer to a reconnect).
    pub(crate) fn set_upstream_finished(&self) {
        self.upstream_finished.set(true);
    }

    /// Whether clients other than the owner's follow it now.
    pub(crate) fn has_followers(&self) -> bool {
        self.fanout_is(|f| f.followers() > 0)
    }
}

/// A relay's hold on the ring it writes; dropping it detaches the ring (its TTL starts).
#[derive(Debug)]
pub struct RingHandle {
    pub lineage: Rc<Lineage>,
}

impl Drop for RingHandle {
    fn drop(&mut self) {
        self.lineage.attached.set(false);
        self.lineage.last_used.set(IdleStamp::now());
    }
}

/// Where a `Last-Event-ID` was found on this worker.
pub struct Found {
    pub lineage: Rc<Lineage>,
    /// Seq of the event carrying the id.
    pub seq: u64,
}

pub struct StreamTable {
    worker: usize,
    limits: RingLimits,
    /// This worker's share of `--replay-memory`.
    budget: usize,
    directory: Arc<Directory>,
    /// The lineages of each scope, in ascending id (oldest first). The one index of the rings:
    /// a lookup always knows its scope, and a ring leaves by its scope and id. A second map by
    /// id cost every idle stream ~31 bytes (a 16-byte entry in a table kept under 7/8 full).
    by_scope: RefCell<HashMap<ResumeScope, Vec<Rc<Lineage>>>>,
    /// Rings in `by_scope`, all scopes together.
    rings: Cell<usize>,
    next_id: Cell<u64>,
    /// Sum of every ring's `counted`.
    total: Cell<usize>,
    /// The water level of the last eviction pass: what one ring may cost (usize::MAX: no cap).
    cap: Cell<usize>,
    /// This worker's queue to the replay store (`--replay-store`; None: off). Every recorded
    /// event is also queued there, never waited for.
    store: Option<StoreWriter>,
    /// The batch a relay fills in a flush (`batch`, `record_batch`): one per worker, its
    /// capacity kept, so a flush allocates nothing for it. None while a flush holds it: taken
    /// and put back with no empty batch made and dropped in its place (callgrind: ~30
    /// instructions per read). Boxed: taking and putting it back moves a pointer, not the
    /// batch's ~100 bytes (twice per read).
    batch: Cell<Option<Box<RingBatch>>>,
}

impl StreamTable {
    pub fn new(worker: usize, limits: RingLimits, directory: Arc<Directory>) -> Self {
        let workers = directory.workers().max(1);
        StreamTable {
            worker,
            limits,
            budget: limits.memory / workers,
            directory,
            by_scope: RefCell::new(HashMap::new()),
            rings: Cell::new(0),
            next_id: Cell::new(1),
            total: Cell::new(0),
            cap: Cell::new(usize::MAX),
            store: None,
            batch: Cell::new(Some(Box::default())),
        }
    }

    /// The table, writing every event it records behind to the replay store too.
    pub(crate) fn with_store(mut self, store: Option<StoreWriter>) -> Self {
        self.store = store;
        self
    }

    pub fn limits(&self) -> RingLimits {
        self.limits
    }

    /// This worker's share of `--replay-memory`.
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// Rings on this worker and what they cost together.
    pub fn usage(&self) -> (usize, usize) {
        (self.rings.get(), self.total.get())
    }

    /// What `pick` takes from every ring's lineage, collected before the caller changes the
    /// table (the scope map stays borrowed only while this runs).
    fn collect_lineages<T>(&self, pick: impl FnMut(&Rc<Lineage>) -> Option<T>) -> Vec<T> {
        let by_scope = self.by_scope.borrow();
        by_scope.values().flatten().filter_map(pick).collect()
    }

    /// A new, empty lineage for a stream that starts fresh, attached to the caller.
    pub fn create(&self, scope: &ResumeScope) -> RingHandle {
        self.insert(
            scope,
            ReplayRing::new(self.limits.max_events, self.limits.max_bytes),
            true,
        )
    }

    /// A new lineage that continues from a copy of `events` (refcounted, no byte copied): a
    /// reconnection found its id in a ring another relay still writes, or in another worker's.
    /// Its seqs are its own; returns it with the seq `events[at]` got.
    pub fn adopt(
        &self,
        scope: &ResumeScope,
        events: Vec<RingEvent>,
        at: usize,
        metrics: &WorkerMetrics,
    ) -> (RingHandle, u64) {
        let mut ring = ReplayRing::new(
            self.limits.max_events.max(events.len()),
            self.limits.max_bytes,
        );
        let mut seq_at = 0;
        for (i, e) in events.into_iter().enumerate() {
            let seq = ring.push(e);
            if i == at {
                seq_at = seq;
            }
        }
        let handle = self.insert(scope, ring, true);
        self.keep_budget(metrics);
        (handle, seq_at)
    }

    /// A new lineage of `events` read back from the replay store, to be fed on from there
    /// (`super::store_follow`): what it records is never written back to the store, which has it.
    pub(crate) fn adopt_from_store(
        &self,
        scope: &ResumeScope,
        events: Vec<RingEvent>,
        metrics: &WorkerMetrics,
    ) -> RingHandle {
        let mut ring = ReplayRing::new(
            self.limits.max_events.max(events.len()),
            self.limits.max_bytes,
        );
        for e in events {
            ring.push(e);
        }
        let handle = self.insert(scope, ring, false);
        self.keep_budget(metrics);
        handle
    }

    /// Removes `lineage` from the table at once (its events go with the last handle): a comeback
    /// must not find it any more.
    pub(crate) fn forget(&self, lineage: &Lineage) {
        let freed = self.remove(lineage);
        if freed >= RETURN_TO_SYSTEM_BYTES {
            crate::memory::return_freed_pages();
        }
    }

    /// The lineage's upstream is read no more here: its end marker goes to the replay store, so
    /// that a reconnection on another instance resumes (or ends) instead of following it.
    pub(crate) fn ended(&self, lineage: &Lineage) {
        if let (Some(store), Some(names)) = (&self.store, lineage.store()) {
            let how = if lineage.upstream_finished.get() {
                LineageEnd::Finished
            } else {
                LineageEnd::Stopped
            };
            store.end(names, how);
        }
    }

    fn insert(&self, scope: &ResumeScope, ring: ReplayRing, stored: bool) -> RingHandle {
        // The scope's bytes are held once per scope, not once per ring: a lineage of a scope
        // the table knows shares the key's allocation (thousands of clients of one feed URL
        // each held a copy of the same ~60 bytes for their stream's whole life; the caller's
        // copy is dropped when it returns).
        let scope = match self.by_scope.borrow().get_key_value(scope) {
            Some((known, _)) => known.clone(),
            None => scope.clone(),
        };
        let scope = &scope;
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let extras = OnceCell::new();
        if self.store.is_some() && stored {
            let names =
                StoreLineage::new(StoreKey::from_scope_bytes(scope.bytes()), self.worker, id);
            let _ = extras.set(Box::new(LineageExtras {
                fanout: Cell::new(None),
                store: Some(names),
            }));
        }
        let lineage = Rc::new(Lineage {
            id,
            scope: scope.clone(),
            ring: RefCell::new(ring),
            attached: Cell::new(true),
            last_used: Cell::new(IdleStamp::now()),
            upstream_finished: Cell::new(false),
            extras,
        });
        let mut by_scope = self.by_scope.borrow_mut();
        let lineages = by_scope.entry(scope.clone()).or_default();
        if lineages.is_empty() {
            self.directory.announce(scope, self.worker);
        }
        lineages.push(lineage.clone());
        drop(by_scope);
        self.rings.set(self.rings.get() + 1);
        // The ring may hold events already (adopted ones).
        self.total.set(self.total.get() + lineage.counted());
        RingHandle { lineage }
    }

    /// Takes over a detached lineage for a reconnecting client: the relay continues it.
    pub fn attach(&self, lineage: Rc<Lineage>) -> RingHandle {
        debug_assert!(!lineage.attached());
        lineage.attached.set(true);
        // Whatever shared it before has ended: the new relay continues it as its own.
        if let Some(extras) = lineage.extras.get() {
            extras.fanout.take();
        }
        lineage.used_at(Instant::now());
        RingHandle { lineage }
    }

    /// Appends an event to the handle's ring; returns its seq. Keeps the worker within budget.
    pub fn record(&self, handle: &RingHandle, event: RingEvent, metrics: &WorkerMetrics) -> u64 {
        let mut batch = self.batch();
        batch.add_own(event);
        self.record_batch(handle, batch, metrics)
    }

    /// An empty batch for a flush's events (the worker's, with its capacity), to be handed back
    /// through `record_batch`.
    pub(crate) fn batch(&self) -> Box<RingBatch> {
        self.batch.take().unwrap_or_default()
    }

    /// Appends a flush's events to the handle's ring, in one call: one bounds check, one
    /// recount and at most one trim for them all. Returns the seq of the last (the ring's head).
    /// Keeps the worker within budget; the batch goes back, empty, for the next flush.
    pub(crate) fn record_batch(
        &self,
        handle: &RingHandle,
        mut batch: Box<RingBatch>,
        metrics: &WorkerMetrics,
    ) -> u64 {
        let lineage = &handle.lineage;
        if batch.is_empty() {
            self.batch.set(Some(batch));
            return lineage.ring.borrow().head_seq();
        }
        // Write-behind to the replay store: one branch when it is off; when on, a refcount on
        // each event's bytes and one `try_send` (full: dropped and counted, never waited for).
        if let (Some(store), Some(names)) = (&self.store, lineage.store()) {
            for event in batch.events() {
                store.record(names, event.id_bytes(), event.assigned(), event.bytes());
            }
        }
        let cap = self.cap.get();
        let (seq, trimmed) = self.counting(lineage, |ring| {
            let seq = ring.push_batch(&mut batch);
            let trimmed = if cap != usize::MAX {
                ring.trim_to(cap.saturating_sub(lineage.fixed_cost()).max(1))
            } else {
                0
            };
            (seq, trimmed)
        });
        self.batch.set(Some(batch));
        if trimmed > 0 {
            WorkerMetrics::add(&metrics.replay_evicted_events, trimmed as u64);
        }
        self.keep_budget(metrics);
        seq
    }

    /// Evicts when the rings cost more than the budget.
    #[inline]
    fn keep_budget(&self, metrics: &WorkerMetrics) {
        if self.total.get() > self.budget {
            self.evict(metrics);
        }
    }

    /// Changes `lineage`'s ring by `change` and brings the table's total along: the one way a
    /// ring's cost changes (what the table counts for a ring is read from it, `counted()`).
    fn counting<R>(&self, lineage: &Lineage, change: impl FnOnce(&mut ReplayRing) -> R) -> R {
        let mut ring = lineage.ring.borrow_mut();
        let before = ring.cost();
        let out = change(&mut ring);
        let after = ring.cost();
        self.total.set(self.total.get() - before + after);
        out
    }

    /// Finds the ring of `scope` holding `id`: a detached one first (the client's own previous
    /// stream, most recently used first), else one a relay still writes.
    pub fn find(&self, scope: &ResumeScope, id: &[u8]) -> Option<Found> {
        let by_scope = self.by_scope.borrow();
        let lineages = by_scope.get(scope)?;
        let mut best: Option<Found> = None;
        for lineage in lineages.iter().rev() {
            let Some(seq) = lineage.ring.borrow().seq_of(id) else {
                continue;
            };
            let better = match &best {
                None => true,
                Some(b) => b.lineage.attached() && !lineage.attached(),
            };
            if better {
                best = Some(Found {
                    lineage: lineage.clone(),
                    seq,
                });
                if !lineage.attached() {
                    break;
                }
            }
        }
        best
    }

    /// Frees detached rings idle past the TTL, and detached rings holding nothing. Returns how
    /// many were freed.
    pub fn sweep(&self, now: Instant) -> usize {
        let ttl = self.limits.ttl;
        let expired: Vec<Rc<Lineage>> = self.collect_lineages(|l| {
            let expired =
                !l.attached() && (l.ring.borrow().is_empty() || l.last_used.get().age(now) >= ttl);
            expired.then(|| l.clone())
        });
        let count = expired.len();
        let mut freed_bytes = 0;
        // Each lineage goes (with its ring's events) as it is removed, before the freed pages
        // are returned below: a list holding them to the end returned nothing.
        for lineage in expired {
            freed_bytes += self.remove(&lineage);
        }
        if freed_bytes >= RETURN_TO_SYSTEM_BYTES {
            crate::memory::return_freed_pages();
        }
        // Lift (or lower) the per-ring cap to what the rings left would need now: with room to
        // spare, rings may grow again until the next pass.
        if self.cap.get() != usize::MAX {
            let costs: Vec<usize> = self.collect_lineages(|l| Some(l.counted()));
            let target = self.budget - self.budget / EVICTION_SLACK;
            self.cap.set(water_level(&costs, target));
        }
        count
    }

    /// Removes a ring from the table (its memory goes when the last clone of its events does).
    /// Returns what it was counted for.
    fn remove(&self, lineage: &Lineage) -> usize {
        let mut by_scope = self.by_scope.borrow_mut();
        let Some(lineages) = by_scope.get_mut(&lineage.scope) else {
            return 0;
        };
        // Ascending: `insert` pushes lineages as `next_id` numbers them. A search, not a scan
        // (9000 streams of one URL closing at once compared ~40 M ids).
        let Ok(at) = lineages.binary_search_by_key(&lineage.id, |l| l.id) else {
            return 0; // removed already
        };
        let lineage = lineages.remove(at);
        if lineages.is_empty() {
            by_scope.remove(&lineage.scope);
            self.directory.withdraw(&lineage.scope, self.worker);
        }
        drop(by_scope);
        self.rings.set(self.rings.get() - 1);
        let counted = lineage.counted();
        self.total.set(self.total.get() - counted);
        counted
    }

    /// One eviction pass (see the module doc).
    fn evict(&self, metrics: &WorkerMetrics) {
        let target = self.budget - self.budget / EVICTION_SLACK;
        let start = self.total.get();
        // 1. Detached rings, least recently used first (to the second; within one, the oldest
        // lineage first).
        let mut idle: Vec<(IdleStamp, u64, Rc<Lineage>)> = self
            .collect_lineages(|l| (!l.attached()).then(|| (l.last_used.get(), l.id, l.clone())));
        idle.sort_unstable_by_key(|(used, id, _)| (*used, *id));
        for (_, _, lineage) in idle {
            if self.total.get() <= target {
                break;
            }
            self.remove(&lineage);
            WorkerMetrics::inc(&metrics.replay_evictions);
        }
        // 1b. Held streams (read on with no client, --hold-upstream) go as idle rings do, least
        // recently left first: their events are freed now and their owners close the upstream.
        if self.total.get() > target {
            let mut held: Vec<(Instant, Rc<Lineage>)> = self.collect_lineages(|l| {
                let f = l.fanout()?;
                let since = f.held_since().filter(|_| f.end().is_none())?;
                Some((since, l.clone()))
            });
            held.sort_unstable_by_key(|(since, _)| *since);
            for (_, lineage) in held {
                if self.total.get() <= target {
                    break;
                }
                let trimmed = self.counting(&lineage, |ring| ring.trim_to(0));
                if let Some(f) = lineage.fanout() {
                    f.finish(FanEnd::Stopped);
                }
                crate::log_info!(
                    "sse {}: held stream freed to stay within --replay-memory; closing its upstream",
                    lineage.scope.target()
                );
                WorkerMetrics::inc(&metrics.replay_evictions);
                WorkerMetrics::inc(&metrics.sse_hold_expired);
                WorkerMetrics::add(&metrics.replay_evicted_events, trimmed as u64);
            }
        }
        // 2. The largest rings lose their oldest events, down to a common water level, which
        // stays as every ring's cap (they keep to it as they record).
        if self.total.get() > target {
            let rings: Vec<Rc<Lineage>> = self.collect_lineages(|l| Some(l.clone()));
            let costs: Vec<usize> = rings.iter().map(|l| l.counted()).collect();
            let level = water_level(&costs, target);
            self.cap.set(level);
            for (lineage, _) in rings.iter().zip(costs).filter(|(_, c)| *c > level) {
                let keep = level.saturating_sub(lineage.fixed_cost());
                let trimmed = self.counting(lineage, |ring| ring.trim_to(keep));
                WorkerMetrics::inc(&metrics.replay_evictions);
                WorkerMetrics::add(&metrics.replay_evicted_events, trimmed as u64);
            }
        }
        if start - self.total.get() >= RETURN_TO_SYSTEM_BYTES {
            crate::memory::return_freed_pages();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{HeadLimits, RequestHead};
    use crate::sse::ring::EVENT_OVERHEAD;
    use crate::sse::scope::IdentityHeaders;
    use bytes::Bytes;

    fn scope(path: &str) -> ResumeScope {
        let raw = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        ResumeScope::of(
            &RequestHead::parse(Bytes::from(raw), &HeadLimits::default()).unwrap(),
            0,
            &IdentityHeaders::default(),
        )
    }

    /// Every stream holds one lineage (`Rc<Lineage>`: two counts, 16, and the lineage) for its
    /// whole life, an idle one included: 176 + 16 bytes is mimalloc's 192-byte size class (it
    /// was 208 + 16, class 224, while it kept `last_used` as an `Instant`, its cost in a
    /// `counted` field and its fanout and store names in two fields; 272 + 16, class 320, while
    /// the ring kept its id map inline, its newest number as an `Option` and its bounds as
    /// usize, the lineage its fanout in a `RefCell`, and the scope was a `Bytes`). Past 176 it
    /// pays the next class (224).
    #[test]
    fn a_lineage_stays_small() {
        let size = std::mem::size_of::<Lineage>();
        eprintln!(
            "Lineage: {size} bytes; ReplayRing: {}",
            std::mem::size_of::<ReplayRing>()
        );
        assert!(size + 16 <= 192, "Lineage is {size} bytes");
    }

    /// Lineages of one scope share the scope's bytes (one allocation per scope, not per
    /// stream), and each is found and removed by its scope and id, whatever order the
    /// lineages of the scope go in.
    #[test]
    fn lineages_of_one_scope_share_its_bytes_and_leave_one_by_one() {
        let t = table(1 << 30);
        let m = WorkerMetrics::default();
        let handles: Vec<RingHandle> = (1..=6)
            .map(|i| {
                let h = t.create(&scope("/feed"));
                t.record(&h, ev(i, 10), &m);
                h
            })
            .collect();
        let other = t.create(&scope("/other"));
        let first = &handles[0].lineage.scope;
        for h in &handles[1..] {
            assert!(
                h.lineage.scope.shares_bytes_with(first),
                "one allocation per scope"
            );
        }
        assert!(!other.lineage.scope.shares_bytes_with(first));
        assert_eq!(t.usage().0, 7);
        // Out of order: the middle, the first, the last.
        for gone in [3, 0, 5] {
            t.forget(&handles[gone].lineage);
        }
        assert_eq!(t.usage().0, 4);
        for (i, h) in handles.iter().enumerate() {
            let id = (i + 1).to_string();
            let found = t.find(&scope("/feed"), id.as_bytes()).map(|f| f.lineage.id);
            let expect = (![3, 0, 5].contains(&i)).then_some(h.lineage.id);
            assert_eq!(found, expect, "event {id}");
        }
        // Forgetting twice changes nothing; the scope goes with its last lineage.
        t.forget(&handles[3].lineage);
        assert_eq!(t.usage().0, 4);
        for left in [1, 2, 4] {
            t.forget(&handles[left].lineage);
        }
        assert!(t.by_scope.borrow().get(&scope("/feed")).is_none());
        assert_eq!(t.usage().0, 1);
    }

    /// Detached rings go least recently used first, to the second of `last_used`
    /// (`super::idle_clock`), whatever order they were made or recorded in.
    #[test]
    fn the_budget_frees_detached_rings_least_recently_used_first() {
        let one = 1000 + EVENT_OVERHEAD;
        let t = table(40 * one);
        let m = WorkerMetrics::default();
        let base = Instant::now();
        let mut left = Vec::new();
        // Made a, b, c; left b first, then c, then a (seconds apart).
        for (path, after) in [("/a", 3), ("/b", 1), ("/c", 2)] {
            let h = t.create(&scope(path));
            for i in 1..=10 {
                t.record(&h, ev(i, 1000), &m);
            }
            let lineage = h.lineage.clone();
            drop(h);
            lineage.used_at(base + Duration::from_secs(after));
            left.push((path, lineage));
        }
        let held = |path: &str| t.find(&scope(path), b"1").is_some();
        let live = t.create(&scope("/live"));
        let mut i = 0;
        while held("/a") && held("/b") && held("/c") {
            i += 1;
            t.record(&live, ev(i, 1000), &m);
        }
        assert!(
            !held("/b") && held("/c") && held("/a"),
            "b, left first, went"
        );
        while held("/c") {
            i += 1;
            t.record(&live, ev(i, 1000), &m);
        }
        assert!(held("/a"), "then c; a, left last, stays");
    }

    /// A detached ring outlives its TTL by under a second of the coarse clock, never less.
    #[test]
    fn a_detached_ring_expires_past_its_ttl_never_before() {
        let t = table(1 << 30);
        let m = WorkerMetrics::default();
        let h = t.create(&scope("/a"));
        t.record(&h, ev(1, 10), &m);
        let lineage = h.lineage.clone();
        drop(h);
        let left = Instant::now() + Duration::from_millis(1500);
        lineage.used_at(left);
        let ttl = t.limits().ttl;
        assert_eq!(t.sweep(left + ttl - Duration::from_millis(1)), 0);
        assert_eq!(t.sweep(left), 0);
        assert_eq!(t.sweep(left + ttl + Duration::from_secs(1)), 1);
        assert_eq!(t.usage(), (0, 0));
    }

    fn ev(id: u64, len: usize) -> RingEvent {
        // The id as its own bytes: kept apart from the event's (as a rewritten id is).
        let id = id.to_string();
        RingEvent::new(
            Bytes::from(vec![b'x'; len]),
            Some(id.as_bytes()),
            len as u32,
            false,
        )
    }

    fn table(memory: usize) -> StreamTable {
        let (dir, _rx) = Directory::new(1).unwrap();
        StreamTable::new(
            0,
            RingLimits {
                max_events: 1000,
                max_bytes: 1 << 20,
                ttl: Duration::from_secs(60),
                memory,
            },
            Arc::new(dir),
        )
    }

    #[test]
    fn two_lineages_of_one_scope_keep_their_own_histories() {
        let t = table(1 << 30);
        let m = WorkerMetrics::default();
        let a = t.create(&scope("/s"));
        let b = t.create(&scope("/s"));
        for i in 1..=5 {
            t.record(&a, ev(i, 10), &m);
        }
        t.record(&b, ev(1, 10), &m);
        assert_eq!(a.lineage.ring.borrow().len(), 5);
        assert_eq!(b.lineage.ring.borrow().len(), 1);
        // While both are attached, the newest holder of the id is found; once `a` is detached
        // it is preferred (it is the reconnecting client's own previous stream).
        let found = t.find(&scope("/s"), b"3").unwrap();
        assert_eq!((found.lineage.id, found.seq), (a.lineage.id, 3));
        let a_id = a.lineage.id;
        drop(a);
        let found = t.find(&scope("/s"), b"1").unwrap();
        assert_eq!(found.lineage.id, a_id, "the detached ring is preferred");
        assert!(t.find(&scope("/other"), b"1").is_none());
    }

    #[test]
    fn the_budget_frees_idle_rings_first_then_trims_the_largest() {
        let one = 1000 + EVENT_OVERHEAD;
        let t = table(60 * one);
        let m = WorkerMetrics::default();
        let idle = t.create(&scope("/idle"));
        for i in 1..=10 {
            t.record(&idle, ev(i, 1000), &m);
        }
        drop(idle);
        let live = t.create(&scope("/live"));
        for i in 1..=40 {
            t.record(&live, ev(i, 1000), &m);
        }
        let small = t.create(&scope("/small"));
        t.record(&small, ev(1, 1000), &m);
        assert_eq!(t.usage().0, 3, "within budget nothing goes");
        for i in 41..=60 {
            t.record(&live, ev(i, 1000), &m);
        }
        let (rings, total) = t.usage();
        assert!(total <= t.budget(), "{total} > {}", t.budget());
        assert_eq!(rings, 2, "the idle ring went first");
        assert!(m.replay_evictions.get() >= 1);
        assert!(
            m.replay_evicted_events.get() > 0,
            "then the largest ring was trimmed"
        );
        assert_eq!(
            small.lineage.ring.borrow().len(),
            1,
            "the small ring kept its event"
        );
        let live_ring = live.lineage.ring.borrow();
        assert_eq!(live_ring.head_seq(), 60, "the newest events stay");
        assert!(live_ring.first_seq() > 1);
    }

    #[test]
    fn after_a_pass_rings_keep_to_the_cap_as_they_record() {
        let one = 1000 + EVENT_OVERHEAD;
        let t = table(40 * one);
        let m = WorkerMetrics::default();
        let a = t.create(&scope("/a"));
        let b = t.create(&scope("/b"));
        for i in 1..=25 {
            t.record(&a, ev(i, 1000), &m);
            t.record(&b, ev(i, 1000), &m);
        }
        let passes = m.replay_evictions.get();
        assert!(passes > 0, "the budget was passed");
        let cap = t.cap.get();
        assert!(cap < usize::MAX, "the pass left a cap");
        // Recording on: each ring stays at the cap by trimming itself; no further pass is needed.
        for i in 26..=200 {
            t.record(&a, ev(i, 1000), &m);
            t.record(&b, ev(i, 1000), &m);
            assert!(a.lineage.counted() <= cap && b.lineage.counted() <= cap);
        }
        assert_eq!(
            m.replay_evictions.get(),
            passes,
            "no pass after the first ones"
        );
        assert!(t.usage().1 <= t.budget());
        assert_eq!(
            a.lineage.ring.borrow().head_seq(),
            200,
            "the newest events stay"
        );
    }

    #[test]
    fn sweep_frees_expired_and_empty_detached_rings() {
        let t = table(1 << 30);
        let m = WorkerMetrics::default();
        let kept = t.create(&scope("/a"));
        t.record(&kept, ev(1, 10), &m);
        let empty = t.create(&scope("/b"));
        drop(empty);
        let old = t.create(&scope("/c"));
        t.record(&old, ev(1, 10), &m);
        drop(old);
        assert_eq!(t.sweep(Instant::now()), 1, "the empty detached ring");
        assert_eq!(t.sweep(Instant::now() + Duration::from_secs(61)), 1);
        assert_eq!(t.usage().0, 1, "attached rings never expire");
        drop(kept);
        assert_eq!(t.sweep(Instant::now() + Duration::from_secs(61)), 1);
        assert_eq!(t.usage(), (0, 0));
    }

    #[test]
    fn adopting_a_copy_keeps_positions_of_the_copied_events() {
        let t = table(1 << 30);
        let m = WorkerMetrics::default();
        let events: Vec<RingEvent> = (5..=9).map(|i| ev(i, 10)).collect();
        let (h, seq) = t.adopt(&scope("/s"), events, 2, &m);
        assert_eq!(seq, 3);
        let ring = h.lineage.ring.borrow();
        assert_eq!(ring.seq_of(b"7"), Some(3));
        assert_eq!(ring.after(seq).count(), 2);
    }
}
