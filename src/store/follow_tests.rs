//! End markers and live follows against a real redis-server: a lineage's state is the kind of
//! its newest entry; a follow gets its own lineage's later events (never another's), then the end.

use std::time::Duration;

use bytes::Bytes;

use super::test_support::{wait_until, RedisServer};
use super::*;
use crate::cli::DriverChoice;
use crate::runtime::build_runtime;

/// Runs `f`'s future on a worker-like runtime of `driver`; None when the kernel refuses it
/// (io_uring) or MONOIO_FORCE_LEGACY_DRIVER=1 rules io_uring out.
fn on<T, F: std::future::Future<Output = T>>(
    driver: DriverChoice,
    f: impl FnOnce() -> F,
) -> Option<T> {
    let mut rt = build_runtime(driver, 64).ok()?;
    Some(rt.runtime.block_on(f()))
}

const WAIT: Duration = Duration::from_secs(10);

fn start(redis: &RedisServer) -> (ReplayStore, Vec<StoreWriter>) {
    let config = StoreConfig {
        url: redis.url(),
        max_events: 1024,
        ttl: Duration::from_secs(300),
        queue_events: DEFAULT_QUEUE_EVENTS,
    };
    ReplayStore::start(&config, 1).unwrap()
}

fn key() -> StoreKey {
    StoreKey::from_scope_bytes(b"/gen\0Authorization: Bearer x")
}

fn record(writer: &StoreWriter, lineage: &StoreLineage, ids: std::ops::RangeInclusive<u32>) {
    for id in ids {
        let raw = Bytes::from(format!("id: {id}\ndata: {id}\n\n"));
        writer.record(lineage, Some(Bytes::from(id.to_string())), false, raw);
    }
}

fn written(store: &ReplayStore) -> u64 {
    store.counters().snapshot().written
}

/// `(events' ids, state, tail)` after `id`.
fn read(store: &ReplayStore, id: &str) -> (Vec<Bytes>, LineageState, String) {
    on(DriverChoice::Epoll, || async {
        let reply = store.reader().read_after(&key(), id.as_bytes()).unwrap();
        let got = reply.recv_within(WAIT).await.unwrap().unwrap();
        let ReadOutcome::After {
            events,
            state,
            tail,
            ..
        } = got
        else {
            panic!("{id} unknown");
        };
        (events.into_iter().map(|e| e.id).collect(), state, tail)
    })
    .expect("an epoll runtime")
}

#[test]
fn a_lineages_state_is_the_kind_of_its_newest_entry() {
    let redis = RedisServer::start();
    let (store, writers) = start(&redis);
    let a = StoreLineage::new(key(), 0, 1);
    let b = StoreLineage::new(key(), 0, 2);
    record(&writers[0], &a, 1..=3);
    // Ids of their own: when two lineages recorded one id, the newest holder wins a read.
    record(&writers[0], &b, 101..=102);
    wait_until("5 written", WAIT, || written(&store) == 5);
    assert_eq!(read(&store, "102").1, LineageState::Live, "b's newest");

    // b stops; a goes on: a read of b's id says stopped, with nothing after it.
    writers[0].end(&b, LineageEnd::Stopped);
    record(&writers[0], &a, 4..=4);
    wait_until("7 written", WAIT, || written(&store) == 7);
    let (ids, state, _) = read(&store, "102");
    assert_eq!(state, LineageState::Ended(LineageEnd::Stopped));
    assert!(
        ids.is_empty(),
        "no event of b after 102 (a's 4 is not b's): {ids:?}"
    );

    // a finishes: its end marker is not an event; a read after 1 gets 2..=4 and `finished`.
    writers[0].end(&a, LineageEnd::Finished);
    wait_until("8 written", WAIT, || written(&store) == 8);
    let (ids, state, _) = read(&store, "1");
    assert_eq!(
        ids,
        vec![
            Bytes::from_static(b"2"),
            Bytes::from_static(b"3"),
            Bytes::from_static(b"4")
        ]
    );
    assert_eq!(state, LineageState::Ended(LineageEnd::Finished));

    // b continued after its marker (its client came back to the instance holding its ring):
    // live again.
    record(&writers[0], &b, 103..=103);
    wait_until("9 written", WAIT, || written(&store) == 9);
    let (ids, state, _) = read(&store, "102");
    assert_eq!(ids, vec![Bytes::from_static(b"103")]);
    assert_eq!(state, LineageState::Live);
}

#[test]
fn a_follow_gets_its_lineages_later_events_once_then_the_end_on_both_drivers() {
    for driver in [DriverChoice::Epoll, DriverChoice::Uring] {
        let redis = RedisServer::start();
        let (store, writers) = start(&redis);
        let mine = StoreLineage::new(key(), 0, 1);
        let other = StoreLineage::new(key(), 0, 2);
        record(&writers[0], &mine, 1..=3);
        wait_until("3 written", WAIT, || written(&store) == 3);
        let (_, state, tail) = read(&store, "3");
        assert_eq!(state, LineageState::Live);
        let mut feed = store
            .follows()
            .follow(&key(), Bytes::copy_from_slice(mine.tag()), &tail)
            .unwrap();
        // Written while the follow starts, and after: none lost, none twice, no other lineage.
        let writer = writers.into_iter().next().unwrap();
        let producer = std::thread::spawn(move || {
            for id in 4..=60 {
                record(&writer, &mine, id..=id);
                record(&writer, &other, id..=id);
                if id % 10 == 0 {
                    std::thread::sleep(Duration::from_millis(30));
                }
            }
            writer.end(&other, LineageEnd::Stopped);
            writer.end(&mine, LineageEnd::Finished);
            writer
        });
        let run = || async move {
            let mut ids = Vec::new();
            let mut end = None;
            while let Some(item) = monoio::time::timeout(WAIT, feed.next())
                .await
                .expect("the follow stalled")
                .unwrap()
            {
                match item {
                    FollowItem::Events(events) => ids.extend(events.into_iter().map(|e| e.id)),
                    FollowItem::End(how) => end = Some(how),
                    FollowItem::Quiet | FollowItem::Overrun => panic!("ended early: {item:?}"),
                }
            }
            (ids, end)
        };
        let Some((ids, end)) = on(driver, run) else {
            eprintln!("io_uring not tested here");
            drop(producer.join().unwrap());
            continue;
        };
        let want: Vec<Bytes> = (4..=60).map(|i| Bytes::from(i.to_string())).collect();
        assert_eq!(ids, want, "{driver:?}");
        assert_eq!(
            end,
            Some(LineageEnd::Finished),
            "then the end, and the feed closes"
        );
        drop(producer.join().unwrap());
    }
}

/// A worker that takes nothing: the follow ends after FOLLOW_MAX_QUEUED batches, with Overrun,
/// instead of queueing without bound.
#[test]
fn a_follow_its_worker_does_not_take_ends_with_overrun() {
    let redis = RedisServer::start();
    let (store, writers) = start(&redis);
    let mine = StoreLineage::new(key(), 0, 1);
    record(&writers[0], &mine, 1..=1);
    wait_until("1 written", WAIT, || written(&store) == 1);
    let (_, _, tail) = read(&store, "1");
    let mut feed = store
        .follows()
        .follow(&key(), Bytes::copy_from_slice(mine.tag()), &tail)
        .unwrap();
    // One batch per XREAD: events spaced so that each is read on its own.
    for id in 2..=100 {
        record(&writers[0], &mine, id..=id);
        std::thread::sleep(Duration::from_millis(4));
    }
    wait_until("100 written", WAIT, || written(&store) == 100);
    let items = on(DriverChoice::Epoll, || async move {
        let mut items = Vec::new();
        while let Some(item) = feed.next().await.unwrap() {
            items.push(item);
        }
        items
    })
    .unwrap();
    let batches = items
        .iter()
        .filter(|i| matches!(i, FollowItem::Events(_)))
        .count();
    assert!(
        matches!(items.last(), Some(FollowItem::Overrun)),
        "{items:?}"
    );
    assert!(
        batches <= super::follow::FOLLOW_MAX_QUEUED,
        "{batches} batches queued"
    );
}
