//! The store against a real redis-server (started per test on its own port): what is written
//! reads back after an id, trimming and expiry are set, a full queue drops without blocking, and
//! Redis killed and restarted costs events and errors, never a panic or a stuck worker.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::test_support::{on_both_drivers, wait_until, RedisServer};
use super::*;

/// Generous: a loaded 2-core machine runs the suite on both drivers at once.
const WAIT: Duration = Duration::from_secs(10);

fn config(url: String) -> StoreConfig {
    StoreConfig {
        url,
        max_events: 1024,
        ttl: Duration::from_secs(300),
        queue_events: DEFAULT_QUEUE_EVENTS,
    }
}

/// Scope bytes with credentials in them, as a stream's scope has.
fn scope_key(name: &str) -> StoreKey {
    let scope = format!("/events/{name}\0Authorization: Bearer s3cr3t-{name}\0Cookie: sid=c00k1e");
    StoreKey::from_scope_bytes(scope.as_bytes())
}

/// The one lineage most tests record `key` with.
fn one(key: &StoreKey) -> StoreLineage {
    StoreLineage::new(key.clone(), 0, 1)
}

fn event(id: u32) -> Bytes {
    Bytes::from(format!("id: {id}\ndata: event {id}\n\n"))
}

fn record_ids(writer: &StoreWriter, key: &StoreKey, ids: std::ops::RangeInclusive<u32>) {
    let lineage = one(key);
    for id in ids {
        let r = writer.record(
            &lineage,
            Some(Bytes::from(id.to_string())),
            false,
            event(id),
        );
        assert_eq!(r, Recorded::Queued);
    }
}

fn written(store: &ReplayStore) -> u64 {
    store.counters().snapshot().written
}

/// Reads after `id` on a monoio runtime of each driver; every run must see `want`.
fn read_on_both_drivers(store: &ReplayStore, key: &StoreKey, id: &str, want: &ReadOutcome) {
    on_both_drivers(|| async {
        let reply = store.reader().read_after(key, id.as_bytes()).unwrap();
        let got = reply.recv_within(WAIT).await.unwrap().unwrap();
        assert_eq!(&got, want, "after {id:?}");
    });
}

/// Reads after `id` on both drivers; every run must get exactly the events `want`.
fn read_events_on_both_drivers(store: &ReplayStore, key: &StoreKey, id: &str, want: &[Bytes]) {
    on_both_drivers(|| async {
        let reply = store.reader().read_after(key, id.as_bytes()).unwrap();
        let got = reply.recv_within(WAIT).await.unwrap().unwrap();
        assert_eq!(events_of(&got), want, "after {id:?}");
    });
}

fn events_of(outcome: &ReadOutcome) -> Vec<Bytes> {
    match outcome {
        ReadOutcome::After { events, .. } => events.iter().map(|e| e.raw.clone()).collect(),
        ReadOutcome::UnknownId => panic!("id unknown"),
    }
}

#[test]
fn events_written_read_back_after_an_id_on_both_drivers() {
    let redis = RedisServer::start();
    let (store, writers) = ReplayStore::start(&config(redis.url()), 2).unwrap();
    let key = scope_key("a");
    let other = scope_key("b");
    record_ids(&writers[0], &key, 1..=10);
    // Another stream interleaved from the other worker's queue must not leak into `key`.
    record_ids(&writers[1], &other, 1..=5);
    // An event that set no id is kept in order, with an empty id.
    writers[0].record(
        &one(&key),
        None,
        false,
        Bytes::from_static(b"data: no id\n\n"),
    );
    wait_until("16 events written", WAIT, || written(&store) == 16);

    let on_a_miss = {
        let mut want = (5..=10).map(event).collect::<Vec<_>>();
        want.push(Bytes::from_static(b"data: no id\n\n"));
        want
    };
    on_both_drivers(|| async {
        let reply = store.reader().read_after(&key, b"4").unwrap();
        let got = reply.recv().await.unwrap().unwrap();
        assert_eq!(events_of(&got), on_a_miss);
        if let ReadOutcome::After { events, .. } = &got {
            assert_eq!(events[0].id, Bytes::from_static(b"5"));
            assert!(events[6].id.is_empty());
            // Redis's own ids, increasing: where a follower would continue.
            assert!(events.windows(2).all(
                |w| w[0].position < w[1].position || w[0].position.len() < w[1].position.len()
            ));
        }
    });
    on_both_drivers(|| async {
        let reply = store.reader().read_after(&other, b"5").unwrap();
        let got = reply.recv_within(WAIT).await.unwrap().unwrap();
        assert_eq!(events_of(&got), Vec::<Bytes>::new(), "5 is the newest");
        let ReadOutcome::After { state, .. } = got else {
            unreachable!()
        };
        assert_eq!(state, LineageState::Live, "no end marker: still read");
    });
    read_on_both_drivers(&store, &key, "no-such-id", &ReadOutcome::UnknownId);
    read_on_both_drivers(&store, &scope_key("never"), "1", &ReadOutcome::UnknownId);
    let c = store.counters().snapshot();
    assert!(c.connected);
    assert_eq!((c.dropped_full, c.dropped_unavailable, c.errors), (0, 0, 0));
    assert!(c.reads >= 4, "{c:?}");
    store.stop();
}

/// An event of lineage `name`: same ids in two lineages, told apart by their data.
fn event_of(name: &str, id: u32) -> Bytes {
    Bytes::from(format!("id: {id}\ndata: {name} {id}\n\n"))
}

#[test]
fn a_read_returns_only_the_lineage_that_recorded_the_id() {
    let redis = RedisServer::start();
    let (store, writers) = ReplayStore::start(&config(redis.url()), 1).unwrap();
    // Two anonymous clients of one URL: one scope, one Redis stream, two upstream lineages
    // with the same ids, interleaved: a1 b1 a2 b2 a3 b3 a4 b4 a5 a6 a7.
    let key = scope_key("shared");
    let a = StoreLineage::new(key.clone(), 0, 1);
    let b = StoreLineage::new(key.clone(), 0, 2);
    let record = |lineage: &StoreLineage, name: &str, id: u32| {
        let r = writers[0].record(
            lineage,
            Some(Bytes::from(id.to_string())),
            false,
            event_of(name, id),
        );
        assert_eq!(r, Recorded::Queued);
    };
    for id in 1..=4 {
        record(&a, "a", id);
        record(&b, "b", id);
    }
    for id in 5..=7 {
        record(&a, "a", id);
    }
    wait_until("11 written", WAIT, || written(&store) == 11);
    let want = |name: &str, ids: std::ops::RangeInclusive<u32>| {
        ids.map(|id| event_of(name, id)).collect::<Vec<_>>()
    };
    on_both_drivers(|| async {
        let after = |id: &'static [u8]| {
            let reply = store.reader().read_after(&key, id).unwrap();
            async move { events_of(&reply.recv().await.unwrap().unwrap()) }
        };
        // The newest 2 is b's: b's later events only, never a's (nor a's 3 and 4 again).
        assert_eq!(after(b"2").await, want("b", 3..=4));
        // The newest 4 is b's, at b's head: nothing, not a's 5..7.
        assert_eq!(after(b"4").await, Vec::<Bytes>::new());
        // 5 only a recorded: a's 6 and 7, past b's entries.
        assert_eq!(after(b"5").await, want("a", 6..=7));
    });
    store.stop();
}

#[test]
fn whether_tether_assigned_an_id_is_stored_not_guessed() {
    let redis = RedisServer::start();
    let (store, writers) = ReplayStore::start(&config(redis.url()), 1).unwrap();
    let key = scope_key("assigned");
    let lineage = one(&key);
    // An upstream id shaped like tether's (`<worker>-<ring>-<seq>`), then one tether assigned.
    for (id, assigned) in [("0", false), ("1-2-3", false), ("0-1-4", true)] {
        let raw = Bytes::from(format!("id: {id}\ndata: x\n\n"));
        writers[0].record(&lineage, Some(Bytes::from(id)), assigned, raw);
    }
    wait_until("3 written", WAIT, || written(&store) == 3);
    on_both_drivers(|| async {
        let reply = store.reader().read_after(&key, b"0").unwrap();
        let ReadOutcome::After { events, .. } = reply.recv().await.unwrap().unwrap() else {
            panic!("id unknown");
        };
        let got: Vec<(&[u8], bool)> = events.iter().map(|e| (&e.id[..], e.assigned)).collect();
        assert_eq!(got, vec![(&b"1-2-3"[..], false), (&b"0-1-4"[..], true)]);
    });
    store.stop();
}

#[test]
fn a_read_scans_past_one_page() {
    let redis = RedisServer::start();
    let (store, writers) = ReplayStore::start(&config(redis.url()), 1).unwrap();
    let key = scope_key("long");
    let n = (read::READ_PAGE * 3) as u32;
    record_ids(&writers[0], &key, 1..=n);
    wait_until("all written", WAIT, || written(&store) == u64::from(n));
    let got = {
        let mut rt = crate::runtime::build_runtime(crate::cli::DriverChoice::Epoll, 64).unwrap();
        rt.runtime.block_on(async {
            store
                .reader()
                .read_after(&key, b"3")
                .unwrap()
                .recv()
                .await
                .unwrap()
                .unwrap()
        })
    };
    assert_eq!(events_of(&got), (4..=n).map(event).collect::<Vec<_>>());
}

#[test]
fn maxlen_trims_and_expiry_is_set() {
    let redis = RedisServer::start();
    let cfg = StoreConfig {
        max_events: 100,
        ttl: Duration::from_secs(60),
        ..config(redis.url())
    };
    let (store, writers) = ReplayStore::start(&cfg, 1).unwrap();
    let key = scope_key("trim");
    record_ids(&writers[0], &key, 1..=2000);
    wait_until("2000 events written", WAIT, || written(&store) == 2000);

    let mut con = redis.client();
    let len: usize = redis::cmd("XLEN")
        .arg(key.as_bytes())
        .query(&mut con)
        .unwrap();
    // `MAXLEN ~` trims whole nodes (100 entries by default): at least the bound, never far past.
    assert!((100..=100 + 128).contains(&len), "XLEN {len}");
    let pttl: i64 = redis::cmd("PTTL")
        .arg(key.as_bytes())
        .query(&mut con)
        .unwrap();
    assert!(pttl > 50_000 && pttl <= 60_000, "PTTL {pttl}");

    // The oldest ids are gone: a reconnection that old is a miss; a recent one is served.
    read_on_both_drivers(&store, &key, "1", &ReadOutcome::UnknownId);
    on_both_drivers(|| async {
        let got = store
            .reader()
            .read_after(&key, b"1995")
            .unwrap()
            .recv()
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            events_of(&got),
            (1996..=2000).map(event).collect::<Vec<_>>()
        );
    });
}

#[test]
fn a_full_queue_drops_and_counts_without_blocking() {
    let redis = RedisServer::start();
    let cfg = StoreConfig {
        queue_events: 4,
        ..config(redis.url())
    };
    let (store, writers) = ReplayStore::start(&cfg, 1).unwrap();
    let key = scope_key("full");
    // Connected and idle first, so the pause below catches the store mid-write.
    record_ids(&writers[0], &key, 1..=1);
    wait_until("first event written", WAIT, || written(&store) == 1);
    // Redis stops answering (a slow Redis): the store's thread waits in its next pipeline.
    let mut con = redis.client();
    let _: () = redis::cmd("CLIENT")
        .arg(&["PAUSE", "1500", "ALL"])
        .query(&mut con)
        .unwrap();
    let started = Instant::now();
    let mut outcomes = [0u64; 3];
    let lineage = one(&key);
    for id in 2..=10_001u32 {
        let r = writers[0].record(
            &lineage,
            Some(Bytes::from(id.to_string())),
            false,
            event(id),
        );
        outcomes[r as usize] += 1;
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "10000 records took {took:?}: a worker must never wait on Redis"
    );
    let [queued, dropped, stopped] = outcomes;
    assert_eq!(stopped, 0);
    // The queue (4) and one pipeline's take (what the thread took before it blocked) at most.
    assert!(
        queued <= 4 + side::MAX_PIPELINE_EVENTS as u64,
        "{queued} queued"
    );
    assert!(dropped >= 10_000 - 4 - side::MAX_PIPELINE_EVENTS as u64);
    assert_eq!(store.counters().snapshot().dropped_full, dropped);

    // Redis answers again: what was queued is written, nothing is lost twice.
    wait_until("the queued events written", WAIT, || {
        written(&store) == 1 + queued
    });
    let c = store.counters().snapshot();
    assert_eq!(c.errors, 0, "a slow Redis is not an error: {c:?}");
    assert!(c.last_lag_us >= 500_000, "lag counts the pause: {c:?}");
}

#[test]
fn redis_killed_and_restarted_counts_errors_and_writes_resume() {
    let mut redis = RedisServer::start();
    let (store, writers) = ReplayStore::start(&config(redis.url()), 1).unwrap();
    let key = scope_key("restart");
    record_ids(&writers[0], &key, 1..=10);
    wait_until("10 written", WAIT, || written(&store) == 10);

    redis.kill();
    // Events go on while Redis is away: they are dropped and counted, never block.
    let mut id = 11;
    let down_until = Instant::now() + Duration::from_millis(600);
    while Instant::now() < down_until {
        let started = Instant::now();
        writers[0].record(
            &one(&key),
            Some(Bytes::from(id.to_string())),
            false,
            event(id),
        );
        assert!(started.elapsed() < Duration::from_millis(50));
        id += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
    wait_until("the outage seen", WAIT, || {
        let c = store.counters().snapshot();
        c.errors > 0 && c.dropped_unavailable > 0 && !c.connected
    });
    // A read while Redis is down is answered at once, not after a reconnection.
    on_both_drivers(|| async {
        let started = Instant::now();
        let got = store
            .reader()
            .read_after(&key, b"5")
            .unwrap()
            .recv()
            .await
            .unwrap();
        assert!(
            matches!(
                got,
                Err(ReadError::Unavailable) | Err(ReadError::Redis { .. })
            ),
            "{got:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
    });

    redis.restart();
    let before = written(&store);
    // The restarted Redis is empty: events from now on are written again.
    let resumed_from = id;
    wait_until("writes resumed", WAIT, || {
        writers[0].record(
            &one(&key),
            Some(Bytes::from(id.to_string())),
            false,
            event(id),
        );
        id += 1;
        std::thread::sleep(Duration::from_millis(5));
        written(&store) > before
    });
    // Two more once the connection is back: both written, and the second read back after the
    // first from the restarted (empty) Redis.
    let (first, last) = (id, id + 1);
    let now = written(&store);
    record_ids(&writers[0], &key, first..=last);
    wait_until("both written", WAIT, || written(&store) == now + 2);
    let c = store.counters().snapshot();
    assert!(c.connected, "{c:?}");
    assert!(c.errors > 0 && c.dropped_unavailable > 0, "{c:?}");
    on_both_drivers(|| async {
        let after = first.to_string();
        let got = store
            .reader()
            .read_after(&key, after.as_bytes())
            .unwrap()
            .recv()
            .await
            .unwrap()
            .unwrap();
        assert_eq!(events_of(&got), vec![event(last)]);
    });
    assert!(resumed_from < first);
    store.stop();
}

#[test]
fn keys_in_redis_hold_no_credential_bytes() {
    let redis = RedisServer::start();
    let (store, writers) = ReplayStore::start(&config(redis.url()), 1).unwrap();
    for name in ["alice", "bob"] {
        record_ids(&writers[0], &scope_key(name), 1..=3);
    }
    wait_until("6 written", WAIT, || written(&store) == 6);
    let mut con = redis.client();
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut con).unwrap();
    assert_eq!(keys.len(), 2);
    for key in &keys {
        let text = String::from_utf8(key.clone()).unwrap();
        assert!(text.starts_with(key::KEY_PREFIX), "{text}");
        assert!(
            text[key::KEY_PREFIX.len()..]
                .bytes()
                .all(|b| b.is_ascii_hexdigit()),
            "{text}"
        );
        for secret in [
            "s3cr3t", "Bearer", "c00k1e", "sid=", "alice", "bob", "/events",
        ] {
            assert!(!text.contains(secret), "{secret:?} in key {text}");
        }
    }
}

#[test]
fn stop_writes_what_was_queued() {
    let redis = RedisServer::start();
    let (store, writers) = ReplayStore::start(&config(redis.url()), 1).unwrap();
    let key = scope_key("stop");
    record_ids(&writers[0], &key, 1..=50);
    let counters = store.counters();
    store.stop();
    assert_eq!(counters.snapshot().written, 50);
    assert_eq!(
        writers[0].record(&one(&key), None, false, event(51)),
        Recorded::Stopped
    );
}

#[test]
fn start_refuses_what_cannot_work_and_never_waits_for_redis() {
    let bad = |url: &str| match ReplayStore::start(&config(url.into()), 1) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("{url} accepted"),
    };
    assert!(
        bad("rediss://h:1").contains("not supported"),
        "{}",
        bad("rediss://h:1")
    );
    assert!(bad("127.0.0.1:6379").contains("no scheme; expected redis://HOST:PORT"));
    let secret = bad("redis://:hunter2@127.0.0.1:notaport");
    assert!(!secret.contains("hunter2"), "{secret}");
    // Nothing listens on port 1: start still succeeds at once; events are counted as not written.
    let started = Instant::now();
    let (store, writers) = ReplayStore::start(&config("redis://127.0.0.1:1".into()), 1).unwrap();
    assert!(started.elapsed() < Duration::from_millis(200));
    record_ids(&writers[0], &scope_key("x"), 1..=3);
    wait_until("counted as not written", WAIT, || {
        store.counters().snapshot().dropped_unavailable == 3
    });
    assert!(store.counters().snapshot().errors >= 1);
}

#[test]
fn a_read_wakes_an_idle_store_at_once() {
    let redis = RedisServer::start();
    let (store, writers) = ReplayStore::start(&config(redis.url()), 1).unwrap();
    let key = scope_key("idle");
    record_ids(&writers[0], &key, 1..=2);
    wait_until("written", WAIT, || written(&store) == 2);
    on_both_drivers(|| async {
        for round in 0..20u64 {
            // Alternately asleep (past its linger) and lingering when the read comes: either way
            // the read must not wait for the idle park's safety-net timeout.
            std::thread::sleep(Duration::from_micros(300 + round * 300));
            let started = Instant::now();
            let got = store
                .reader()
                .read_after(&key, b"1")
                .unwrap()
                .recv()
                .await
                .unwrap()
                .unwrap();
            assert_eq!(events_of(&got), vec![event(2)]);
            let took = started.elapsed();
            assert!(took < Duration::from_millis(250), "round {round}: {took:?}");
        }
    });
}

/// An event of `name`'s stream whose bytes hold what RESP framing is made of.
fn awkward(name: &str, i: u32) -> Bytes {
    Bytes::from(format!(
        "id: {i}\ndata: {name} \r\n*3\r\n$4\r\nPING\r\n {i}\n\n"
    ))
}

#[test]
fn what_the_encoder_writes_reads_back_through_scan_unchanged() {
    let redis = RedisServer::start();
    let client = redis::Client::open(redis.url()).unwrap();
    let target = wire::Target::from_info(client.get_connection_info()).unwrap();
    let mut wire =
        wire::Wire::connect(&target, Duration::from_secs(2), Duration::from_secs(2)).unwrap();
    // A busy stream (its XADDs without MAXLEN, one XTRIM), a stream with one event (MAXLEN in its
    // XADD), binary bytes, CR LF inside, an empty id, and a tether-assigned one.
    let busy = StoreLineage::new(scope_key("busy"), 0, 1);
    let sparse = StoreLineage::new(scope_key("sparse"), 0, 2);
    let record = |lineage: &StoreLineage, id: &str, raw: Bytes, assigned: bool| writer::Record {
        lineage: lineage.clone(),
        id: Bytes::from(id.to_string()),
        assigned,
        raw,
        queued_at: Instant::now(),
        end: None,
    };
    let mut batch = Vec::new();
    for i in 1..=6u32 {
        batch.push(record(&busy, &i.to_string(), awkward("busy", i), i == 5));
        if i == 3 {
            batch.push(record(
                &sparse,
                "1",
                Bytes::from_static(b"\0\xff\r\n\r\n"),
                false,
            ));
        }
    }
    batch.push(record(
        &busy,
        "",
        Bytes::from_static(b"data: no id\n\n"),
        false,
    ));
    let mut pipeline = resp::Pipeline::default();
    pipeline.encode(&batch, 1000, 60_000);
    // 8 XADDs, one XTRIM (busy), two PEXPIREs.
    assert_eq!(pipeline.commands(), 11);
    wire.pipeline(pipeline.bytes(), pipeline.commands())
        .unwrap();

    let mut con = redis.client();
    let after = |con: &mut redis::Connection, key: &StoreKey, id: &[u8]| match read::scan(
        con,
        key,
        id,
        1000 + 128,
        FOLLOW_IDLE,
    ) {
        Ok(outcome) => outcome,
        Err(_) => panic!("scan failed"),
    };
    let ReadOutcome::After { events, .. } = after(&mut con, busy.key(), b"1") else {
        panic!("id 1 unknown");
    };
    let got: Vec<(Bytes, Bytes, bool)> = events
        .iter()
        .map(|e| (e.id.clone(), e.raw.clone(), e.assigned))
        .collect();
    let mut want: Vec<(Bytes, Bytes, bool)> = (2..=6u32)
        .map(|i| (Bytes::from(i.to_string()), awkward("busy", i), i == 5))
        .collect();
    want.push((Bytes::new(), Bytes::from_static(b"data: no id\n\n"), false));
    assert_eq!(got, want);
    assert!(
        matches!(
            after(&mut con, sparse.key(), b"1"),
            ReadOutcome::After { events, .. } if events.is_empty()
        ),
        "1 is the newest of its stream"
    );
    let raw: Vec<Vec<u8>> = redis::cmd("XRANGE")
        .arg(sparse.key().as_bytes())
        .arg("-")
        .arg("+")
        .query::<redis::Value>(&mut con)
        .map(|v| match v {
            redis::Value::Array(entries) => entries
                .into_iter()
                .filter_map(|e| match e {
                    redis::Value::Array(mut parts) => parts.pop(),
                    _ => None,
                })
                .filter_map(|fields| match fields {
                    redis::Value::Array(f) => match &f[3] {
                        redis::Value::BulkString(b) => Some(b.clone()),
                        _ => None,
                    },
                    _ => None,
                })
                .collect(),
            _ => vec![],
        })
        .unwrap();
    assert_eq!(raw, vec![b"\0\xff\r\n\r\n".to_vec()]);
    for key in [busy.key(), sparse.key()] {
        let pttl: i64 = redis::cmd("PTTL")
            .arg(key.as_bytes())
            .query(&mut con)
            .unwrap();
        assert!(pttl > 50_000 && pttl <= 60_000, "PTTL {pttl}");
    }
}

#[test]
fn a_command_answered_with_an_error_fails_its_pipeline_and_the_next_one_goes_through() {
    let redis = RedisServer::start();
    let (store, writers) = ReplayStore::start(&config(redis.url()), 1).unwrap();
    let key = scope_key("wrongtype");
    let mut con = redis.client();
    // Another program holds the key as a string: XADD answers WRONGTYPE.
    let _: () = redis::cmd("SET")
        .arg(key.as_bytes())
        .arg("not a stream")
        .query(&mut con)
        .unwrap();
    record_ids(&writers[0], &key, 1..=5);
    wait_until("the pipeline counted as failed", WAIT, || {
        store.counters().snapshot().dropped_unavailable == 5
    });
    let c = store.counters().snapshot();
    assert!(c.errors >= 1 && c.connected, "{c:?}");
    // The connection is still in step: the next events are written.
    let _: () = redis::cmd("DEL")
        .arg(key.as_bytes())
        .query(&mut con)
        .unwrap();
    record_ids(&writers[0], &key, 6..=8);
    wait_until("3 written", WAIT, || written(&store) == 3);
    read_events_on_both_drivers(&store, &key, "6", &[event(7), event(8)]);
    store.stop();
}

#[test]
fn the_write_connection_authenticates_and_selects_the_database_of_the_url() {
    let redis = RedisServer::start();
    let mut con = redis.client();
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "requirepass", "s3cr3t"])
        .query(&mut con)
        .unwrap();
    let port = redis
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let url = format!("redis://:s3cr3t@127.0.0.1:{port}/3");
    let (store, writers) = ReplayStore::start(&config(url.clone()), 1).unwrap();
    let key = scope_key("db3");
    record_ids(&writers[0], &key, 1..=4);
    wait_until("4 written", WAIT, || written(&store) == 4);
    let mut db3 = redis::Client::open(url)
        .unwrap()
        .get_connection_with_timeout(WAIT)
        .unwrap();
    let len: usize = redis::cmd("XLEN")
        .arg(key.as_bytes())
        .query(&mut db3)
        .unwrap();
    assert_eq!(len, 4);
    let mut db0 = redis::Client::open(format!("redis://:s3cr3t@127.0.0.1:{port}/0"))
        .unwrap()
        .get_connection_with_timeout(WAIT)
        .unwrap();
    let len: usize = redis::cmd("XLEN")
        .arg(key.as_bytes())
        .query(&mut db0)
        .unwrap();
    assert_eq!(len, 0, "written to database 3 only");
    read_events_on_both_drivers(&store, &key, "3", &[event(4)]);
    let wrong = format!("redis://:wrong@127.0.0.1:{port}/3");
    let (refused, writers) = ReplayStore::start(&config(wrong), 1).unwrap();
    record_ids(&writers[0], &key, 5..=5);
    wait_until("refused and counted", WAIT, || {
        let c = refused.counters().snapshot();
        c.dropped_unavailable == 1 && c.errors >= 1 && !c.connected
    });
    store.stop();
}

#[test]
fn both_trimming_shapes_keep_a_stream_near_its_bound() {
    let redis = RedisServer::start();
    let client = redis::Client::open(redis.url()).unwrap();
    let target = wire::Target::from_info(client.get_connection_info()).unwrap();
    let mut wire =
        wire::Wire::connect(&target, Duration::from_secs(2), Duration::from_secs(2)).unwrap();
    let mut con = redis.client();
    let mut pipeline = resp::Pipeline::default();
    let record = |lineage: &StoreLineage, i: u32| writer::Record {
        lineage: lineage.clone(),
        id: Bytes::from(i.to_string()),
        assigned: false,
        raw: event(i),
        queued_at: Instant::now(),
        end: None,
    };
    // A trickle: one event per pipeline, each XADD trims as it adds.
    let trickle = StoreLineage::new(scope_key("trickle"), 0, 1);
    // A busy stream: 100 events per pipeline, plain XADDs and one XTRIM each.
    let busy = StoreLineage::new(scope_key("busy"), 0, 2);
    for round in 0..6u32 {
        for i in 0..100 {
            let one = [record(&trickle, round * 100 + i)];
            pipeline.encode(&one, 100, 60_000);
            wire.pipeline(pipeline.bytes(), pipeline.commands())
                .unwrap();
        }
        let batch: Vec<_> = (0..100).map(|i| record(&busy, round * 100 + i)).collect();
        pipeline.encode(&batch, 100, 60_000);
        assert_eq!(pipeline.commands(), 102);
        wire.pipeline(pipeline.bytes(), pipeline.commands())
            .unwrap();
    }
    for lineage in [&trickle, &busy] {
        let len: usize = redis::cmd("XLEN")
            .arg(lineage.key().as_bytes())
            .query(&mut con)
            .unwrap();
        // `MAXLEN ~` trims whole nodes (100 entries by default): at least the bound, never far past.
        assert!((100..=100 + 128).contains(&len), "XLEN {len}");
    }
}
