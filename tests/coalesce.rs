//! `--coalesce`: GET requests for one SSE stream (same path and query, same identity) arriving on
//! one worker share one upstream connection. Events are read once and every client gets the same
//! bytes; a client joining a live stream starts at its live head; a client that falls more than
//! `--sse-client-buffer` behind is cut without slowing the others; an upstream drop is resumed
//! once for all of the stream's clients; POSTs and different identities never share.
//!
//! Every test runs the real binary in front of the in-process simulator (it counts connections
//! and requests and numbers its events) over loopback, with real faults. Waits are on observable
//! conditions (ids seen, /metrics, /proc/net/tcp); each test holds on both io drivers
//! (MONOIO_FORCE_LEGACY_DRIVER=1 for epoll).

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A /metrics sample from the admin endpoint at `admin` (0 when absent: a counter never touched may not be rendered).
fn sample(admin: std::net::SocketAddr, name: &str) -> f64 {
    prom_value(&Tether::metrics_text(admin), name).unwrap_or(0.0)
}

/// The requests the simulator got whose target is exactly `path`.
fn requests_for(up: &tether_perf::UpstreamHandle, path: &str) -> Vec<tether_perf::RequestRecord> {
    up.requests()
        .into_iter()
        .filter(|r| r.path == path)
        .collect()
}

/// tether with `--coalesce`, no heartbeats and an admin endpoint, on `workers` workers.
fn coalescing(up: &tether_perf::UpstreamHandle, workers: &str) -> Tether {
    Tether::start(
        &[url_of(up)],
        &[
            "--workers",
            workers,
            "--coalesce",
            "--sse-heartbeat",
            "0",
            "--admin",
            "127.0.0.1:0",
        ],
    )
}

fn log_text(t: &Tether) -> String {
    t.log_lines().join("\n")
}

// ---- 1. two hundred clients of one URL --------------------------------------------------------

/// 200 clients of one URL, all started at once, with `--coalesce --workers 2`: the upstream sees
/// at most one connection (and one request) per worker. Once every client has its first event,
/// each reads on until 30 events past the latest first id: from its first event on it gets every
/// event exactly once, in order. The events carry the simulator's send time (`ts_us`), so two
/// upstream connections send different bytes for one id: across all clients an id comes with at
/// most as many different payloads as there were upstream connections (read once, written to
/// all). The coalesced counter counts every request that joined instead of going upstream, and
/// once the clients are gone the upstream connections close.
#[test]
fn two_hundred_clients_of_one_url_share_one_upstream_per_worker() {
    const CLIENTS: usize = 200;
    const WINDOW: u64 = 30;
    let up = origin();
    let t = coalescing(&up, "2");
    let admin = t.admin_addr();
    let path = "/sse?events=0&rate=50&fanout=200";
    let firsts: Vec<AtomicU64> = (0..CLIENTS).map(|_| AtomicU64::new(0)).collect();
    let target = AtomicU64::new(0);
    let (readings, all_started, shared_gauge) = thread::scope(|s| {
        let clients: Vec<_> = firsts
            .iter()
            .map(|first| {
                let (t, target) = (&t, &target);
                s.spawn(move || -> Result<Vec<(u64, String)>, String> {
                    let mut r = SseReader::get(t.addr, path, &[]);
                    r.deadline = Instant::now() + Duration::from_secs(40);
                    if r.head.status != 200 {
                        return Err(format!("status {}", r.head.status));
                    }
                    let mut got = Vec::new();
                    loop {
                        let ev = match r.next_event() {
                            Ok(Some(ev)) => ev,
                            Ok(None) => return Err(format!("the response ended after {got:?}")),
                            Err(e) => return Err(format!("{e} after {} events", got.len())),
                        };
                        let id = ev
                            .num_id()
                            .ok_or_else(|| format!("an event without an id: {ev:?}"))?;
                        got.push((id, ev.data.clone().unwrap_or_default()));
                        if got.len() == 1 {
                            first.store(id, Ordering::SeqCst);
                            // Everyone stays connected until every client has its first event.
                            wait_until(Duration::from_secs(30), || {
                                target.load(Ordering::SeqCst) != 0
                            });
                        }
                        let stop = target.load(Ordering::SeqCst);
                        if stop != 0 && id >= stop {
                            return Ok(got);
                        }
                    }
                })
            })
            .collect();
        let all_started = wait_until(Duration::from_secs(25), || {
            firsts.iter().all(|f| f.load(Ordering::SeqCst) != 0)
        });
        // Every client is connected now (those that got no first event too, or they failed).
        let shared_gauge = sample(admin, "tether_sse_shared_clients");
        let latest = firsts
            .iter()
            .map(|f| f.load(Ordering::SeqCst))
            .max()
            .unwrap_or(0);
        target.store(latest.max(1) + WINDOW, Ordering::SeqCst);
        let readings: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        (readings, all_started, shared_gauge)
    });

    let upstream_requests = requests_for(&up, path).len();
    let connections = up.stats().connections;
    let stop = target.load(Ordering::SeqCst);
    let mut failures = Vec::new();
    let mut payloads: HashMap<u64, HashSet<String>> = HashMap::new();
    for (i, r) in readings.iter().enumerate() {
        match r {
            Err(e) => failures.push(format!("client {i}: {e}")),
            Ok(got) => {
                let ids: Vec<u64> = got.iter().map(|(id, _)| *id).collect();
                if !consecutive(&ids) || ids.last() < Some(&stop) {
                    failures.push(format!(
                        "client {i}: ids not consecutive from its first through {stop}: {ids:?}"
                    ));
                }
                for (id, data) in got {
                    payloads.entry(*id).or_default().insert(data.clone());
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {CLIENTS} clients failed (upstream: {upstream_requests} requests, {connections} \
         connections):\n{}\n{}",
        failures.len(),
        failures[..failures.len().min(10)].join("\n"),
        log_text(&t)
    );
    assert!(all_started, "not every client got a first event in time");
    assert!(
        (1..=2).contains(&upstream_requests) && connections <= 2,
        "200 coalesced clients on 2 workers made {upstream_requests} upstream requests on \
         {connections} connections (at most one per worker)"
    );
    let most = payloads.values().map(HashSet::len).max().unwrap_or(0);
    assert!(
        most <= upstream_requests,
        "an event reached the clients with {most} different payloads from {upstream_requests} \
         upstream connections: not one read written to every client"
    );
    let coalesced = sample(admin, "tether_sse_coalesced_total");
    assert_eq!(
        coalesced,
        (CLIENTS - upstream_requests) as f64,
        "tether_sse_coalesced_total: every request but the {upstream_requests} that opened the \
         upstream joined a stream"
    );
    assert!(
        shared_gauge >= (CLIENTS - upstream_requests) as f64 && shared_gauge <= CLIENTS as f64,
        "tether_sse_shared_clients was {shared_gauge} with {CLIENTS} clients connected"
    );
    // The last client gone, the upstream connections close and the gauge falls back.
    let port = up.addr().port();
    assert!(
        wait_until(Duration::from_secs(10), || established_to_port(port) == 0),
        "{} upstream connections still open after every client left",
        established_to_port(port)
    );
    assert!(
        wait_until(Duration::from_secs(5), || sample(
            admin,
            "tether_sse_shared_clients"
        ) == 0.0),
        "tether_sse_shared_clients stayed at {}",
        sample(admin, "tether_sse_shared_clients")
    );
}

/// A GET with `Last-Event-ID` of an event still in a live coalesced stream's ring follows that
/// stream from just after the id (`--workers 1 --coalesce`): client A reads through id 20; B
/// asks with `Last-Event-ID: 10` and gets 11, 12, ... through 40, consecutive. The origin
/// ignores Last-Event-ID (it would start again at 1), and it sees one request only.
#[test]
fn a_join_with_last_event_id_starts_just_after_it() {
    join_with_last_event_id("1");
}

/// The same with `--workers 2`, B's request made on the worker that does not read the stream:
/// it is handed to the one that does, and still nothing more goes upstream.
#[test]
fn a_join_with_last_event_id_on_the_other_worker_starts_just_after_it() {
    join_with_last_event_id("2");
}

/// A reads through 20, B joins with `Last-Event-ID: 10` (on the other worker when there are
/// two); see the tests above.
fn join_with_last_event_id(workers: &str) {
    let up = origin();
    let t = Tether::start(
        &[url_of(&up)],
        &[
            "--workers",
            workers,
            "--coalesce",
            "--sse-heartbeat",
            "0",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let admin = t.admin_addr();
    let path = &format!("/sse?events=0&rate=50&ts=0&resume=ignore&join_at=10&workers={workers}");
    let mut a = SseReader::get(t.addr, path, &[]);
    assert_eq!(ids_through(&mut a, 20), ((1..=20).collect(), None));
    let a_worker = worker_with_stream(admin, path, None).expect("A's stream on /streams");
    let client = if workers == "1" {
        Client::connect(t.addr)
    } else {
        connection_not_on(&t, a_worker, "/bytes?n=1")
    };
    let mut b = SseReader::on(client, &sse_request(path, &["Last-Event-ID: 10"]));
    assert_eq!(b.head.status, 200);
    let (got, stopped) = ids_through(&mut b, 40);
    let asked: Vec<Option<String>> = requests_for(&up, path)
        .into_iter()
        .map(|r| r.last_event_id)
        .collect();
    assert!(
        stopped.is_none() && got.first() == Some(&11) && consecutive(&got),
        "B with Last-Event-ID 10 got {got:?} (stopped: {stopped:?}); upstream requests' \
         Last-Event-ID: {asked:?}\n{}",
        log_text(&t)
    );
    assert_eq!(
        asked,
        vec![None],
        "B followed A's stream: one upstream request"
    );
    drop(a);
}

/// The client whose request opened a coalesced stream leaves; the stream goes on for the ones
/// that joined it, even through an upstream drop afterwards (`--workers 1 --coalesce`). A opens
/// the stream and reads through id 5; B and C join; A leaves; the origin closes its first
/// connection after event 20 and honours Last-Event-ID. B and C each get every event from their
/// first through 40, consecutive; the upstream sees the first request and one resume
/// (`Last-Event-ID: 20`). Once B and C leave too, the upstream connection closes.
#[test]
fn the_opening_client_leaving_does_not_end_the_stream_for_the_others() {
    let up = origin();
    let t = coalescing(&up, "1");
    let admin = t.admin_addr();
    let path = "/sse?events=0&rate=20&ts=0&close_after=20&fault_once=1&opener=leaves";
    let mut a = SseReader::get(t.addr, path, &[]);
    assert_eq!(ids_through(&mut a, 5), ((1..=5).collect(), None));
    let mut b = SseReader::get(t.addr, path, &[]);
    let mut c = SseReader::get(t.addr, path, &[]);
    let b_first = next_id(&mut b);
    let c_first = next_id(&mut c);
    drop(a);
    for (who, r, first) in [("B", &mut b, b_first), ("C", &mut c, c_first)] {
        r.deadline = Instant::now() + Duration::from_secs(15);
        let (rest, stopped) = ids_through(r, 40);
        let ids: Vec<u64> = std::iter::once(first).chain(rest).collect();
        assert!(
            stopped.is_none() && consecutive(&ids) && first <= 20,
            "{who} got {ids:?} (stopped: {stopped:?})\n{}",
            log_text(&t)
        );
    }
    let asked: Vec<Option<String>> = requests_for(&up, path)
        .into_iter()
        .map(|r| r.last_event_id)
        .collect();
    assert_eq!(asked, vec![None, Some("20".to_string())]);
    assert_eq!(sample(admin, "tether_sse_coalesced_total"), 2.0);
    drop((b, c));
    let port = up.addr().port();
    assert!(
        wait_until(Duration::from_secs(5), || established_to_port(port) == 0),
        "the upstream connection stayed open after the last client left"
    );
}

// ---- 2. a client that stops reading is cut, the others go on ---------------------------------

/// Two clients of one stream of 8000-byte events at 500 per second (4 MB/s), `--coalesce
/// --sse-client-buffer 64KiB`: client A reads everything, client B (joining A's stream, a receive
/// buffer capped at 4 KiB) reads nothing after the response head. B's queue passes 64 KiB within
/// a few megabytes: tether cuts B (its side of B's connection leaves ESTABLISHED) while A goes
/// on getting every event in order; `tether_sse_slow_clients_total` counts exactly B. The rings
/// are made large enough that B's position is never evicted from them: B is cut for its queue,
/// not for the ring.
#[test]
fn a_client_that_stops_reading_is_cut_and_the_others_keep_every_event() {
    idle_client_is_cut(false);
}

/// The same with the roles of the requests swapped: the idle client B is the one whose request
/// opened the stream, and the reading client A joined it. B is cut and A's stream goes on (the
/// upstream is then read for A alone).
#[test]
fn the_opening_client_stopping_reading_is_cut_and_the_joiner_keeps_every_event() {
    idle_client_is_cut(true);
}

/// A reads, B does not; B's request first when `idle_opens`. See the tests above.
fn idle_client_is_cut(idle_opens: bool) {
    let up = origin();
    let t = Tether::start(
        &[url_of(&up)],
        &[
            "--workers",
            "1",
            "--coalesce",
            // 128 ms of this stream (4 MB/s): the reading client A must not be cut for a
            // scheduling hiccup of the test's own thread on a loaded machine (64 KiB was 16 ms,
            // and A was cut once while flat-out benchmarks ran beside the suite); B, which reads
            // nothing, passes it all the same.
            "--sse-client-buffer",
            "512KiB",
            "--replay-events",
            "100000",
            "--replay-bytes",
            "64MiB",
            "--sse-heartbeat",
            "0",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let admin = t.admin_addr();
    let path = &format!("/sse?events=0&size=8000&rate=500&ts=0&idle_opens={idle_opens}");
    let open_a = || {
        let mut a = SseReader::get(t.addr, path, &[]);
        assert_eq!(a.head.status, 200);
        a.deadline = Instant::now() + Duration::from_secs(40);
        let first = next_id(&mut a);
        (a, first)
    };
    let open_b = || {
        let client = Client::connect(t.addr);
        set_recv_buffer(&client.stream, 4096);
        let b = SseReader::on(client, &sse_request(path, &[]));
        assert_eq!(b.head.status, 200, "client B");
        b
    };
    let (mut a, a_first, mut b) = if idle_opens {
        let b = open_b();
        let (a, first) = open_a();
        (a, first, b)
    } else {
        let (a, first) = open_a();
        (a, first, open_b())
    };
    let b_port = b.client.stream.local_addr().unwrap().port();
    assert_eq!(
        tcp_state(t.addr.port(), b_port).as_deref(),
        Some("01"),
        "tether's side of B's connection, ESTABLISHED in /proc/net/tcp"
    );

    let progress = AtomicU64::new(a_first);
    let stop_at = AtomicU64::new(u64::MAX);
    let (a_ids, a_stopped, cut_seen) = thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut ids = vec![a_first];
            loop {
                let (more, stopped) = ids_through(&mut a, ids.last().unwrap() + 1);
                ids.extend(&more);
                if let Some(why) = stopped {
                    return (ids, Some(why));
                }
                let last = *ids.last().unwrap();
                progress.store(last, Ordering::SeqCst);
                if last >= stop_at.load(Ordering::SeqCst) {
                    return (ids, None);
                }
            }
        });
        let cut_seen = wait_until(Duration::from_secs(20), || {
            reader.is_finished() || sample(admin, "tether_sse_slow_clients_total") >= 1.0
        });
        // A reads on for 100 events after the cut.
        stop_at.store(progress.load(Ordering::SeqCst) + 100, Ordering::SeqCst);
        let (ids, stopped) = reader.join().unwrap();
        (ids, stopped, cut_seen)
    });
    assert!(
        a_stopped.is_none() && consecutive(&a_ids),
        "client A (reading) must get every event in order: ids {}..={} ({} events, consecutive: \
         {}), stopped: {a_stopped:?}\n{}",
        a_ids[0],
        a_ids.last().unwrap(),
        a_ids.len(),
        consecutive(&a_ids),
        log_text(&t)
    );
    assert!(
        cut_seen,
        "client B never counted as cut (tether_sse_slow_clients_total {}) while A read events \
         {}..={}\n{}",
        sample(admin, "tether_sse_slow_clients_total"),
        a_ids[0],
        a_ids.last().unwrap(),
        log_text(&t)
    );

    // B's connection was closed by tether. (B cannot drain it to its EOF quickly: through a
    // 4 KiB receive window what tether's send buffer still holds for it crawls.)
    let closed = wait_until(Duration::from_secs(5), || {
        tcp_state(t.addr.port(), b_port).is_none_or(|s| s != "01")
    });
    assert!(
        closed,
        "tether's side of client B's connection is still ESTABLISHED after its cut\n{}",
        log_text(&t)
    );
    // What reached B before the cut has no gap.
    let drain_until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < drain_until {
        if !matches!(b.bytes_within(Duration::from_millis(200)), Ok(true)) {
            break;
        }
    }
    let b_ids = num_ids(&Vec::from(SseReader::parse_body(&b.body)));
    assert!(
        consecutive(&b_ids),
        "client B got a gap before its cut: {b_ids:?}"
    );
    assert_eq!(
        sample(admin, "tether_sse_slow_clients_total"),
        1.0,
        "only B is cut"
    );
    assert_eq!(
        requests_for(&up, path).len(),
        1,
        "B joined A's upstream (one request)"
    );
    assert!(sample(admin, "tether_sse_coalesced_total") >= 1.0);
}

// ---- 3. an upstream drop resumed once for all ---------------------------------------------------

/// 20 clients of one stream (`--workers 1 --coalesce`); the origin closes the first connection
/// after event 40 (2 s at 20 events per second) and honours Last-Event-ID on the next request.
/// The upstream sees exactly two requests: the first, and one resume with `Last-Event-ID: 40`
/// for all twenty clients; every client's ids are consecutive across the drop, through id 60.
#[test]
fn an_upstream_drop_is_resumed_once_for_every_client() {
    const CLIENTS: usize = 20;
    const DROP_AT: u64 = 40;
    const LAST: u64 = 60;
    let up = origin();
    let t = coalescing(&up, "1");
    let admin = t.admin_addr();
    let path = format!("/sse?events=0&rate=20&ts=0&close_after={DROP_AT}&fault_once=1&drop=1");
    let readings: Vec<(Vec<u64>, Option<String>)> = thread::scope(|s| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (t, path) = (&t, &path);
                s.spawn(move || {
                    let mut r = SseReader::get(t.addr, path, &[]);
                    r.deadline = Instant::now() + Duration::from_secs(20);
                    ids_through(&mut r, LAST)
                })
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let mut failures = Vec::new();
    for (i, (ids, stopped)) in readings.iter().enumerate() {
        if stopped.is_some() || !consecutive(ids) {
            failures.push(format!("client {i}: {ids:?}, stopped: {stopped:?}"));
        } else if ids[0] > DROP_AT {
            failures.push(format!(
                "client {i} joined after the drop (first id {}): the test did not test it",
                ids[0]
            ));
        }
    }
    let requests = requests_for(&up, &path);
    let asked: Vec<Option<String>> = requests.iter().map(|r| r.last_event_id.clone()).collect();
    assert!(
        failures.is_empty(),
        "{}\nupstream requests' Last-Event-ID: {asked:?}\n{}",
        failures.join("\n"),
        log_text(&t)
    );
    assert_eq!(
        asked,
        vec![None, Some(DROP_AT.to_string())],
        "one request, then one resume for all {CLIENTS} clients"
    );
    assert_eq!(sample(admin, "tether_resumes_total"), 1.0);
    assert_eq!(
        sample(admin, "tether_sse_coalesced_total"),
        (CLIENTS - 1) as f64
    );
}

/// `coalesce = true` as a route key of a configuration file: GETs of the route with it share one
/// upstream request; the same GETs on a route without it (routes by Host) each get their own.
#[test]
fn coalesce_is_a_route_key_in_the_configuration_file() {
    let up = origin();
    let file = common::config_file::ConfigFile::new(&format!(
        r#"
bind = "127.0.0.1:0"

[[route]]
name = "shared"
host = "shared.test"
upstream = ["{0}"]
coalesce = true
sse-heartbeat = "0"

[[route]]
name = "own"
host = "own.test"
upstream = ["{0}"]
sse-heartbeat = "0"
"#,
        url_of(&up)
    ));
    let args: Vec<String> = ["reverse", "--config", &file.path(), "--workers", "1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let t = Tether::start_args(&args)
        .unwrap_or_else(|log| panic!("tether did not start:\n{}", log.join("\n")));
    for (host, want) in [("shared.test", 1), ("own.test", 2)] {
        let path = format!("/sse?events=0&rate=50&ts=0&route={host}");
        let raw =
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n");
        let mut first = SseReader::open(t.addr, raw.as_bytes());
        assert_eq!(
            ids_through(&mut first, 3),
            ((1..=3).collect(), None),
            "{host}"
        );
        let mut second = SseReader::open(t.addr, raw.as_bytes());
        assert_eq!(second.head.status, 200, "{host}");
        next_id(&mut second);
        assert_eq!(
            requests_for(&up, &path).len(),
            want,
            "upstream requests for two clients of route {host}"
        );
    }
}

// ---- 4. what is never coalesced ------------------------------------------------------------------

/// With `--coalesce` (one worker, `--identity-header X-Tenant`): two POSTs of one URL each get
/// their own upstream request and their own stream from id 1; two GETs of one URL that differ in
/// Authorization, Cookie, Mcp-Session-Id or X-Tenant get two upstream requests, each with its own
/// credentials, and each its own stream from id 1. Control, for each header: a third GET with the
/// first one's value while it is live joins it (no new request, first id past 1).
#[test]
fn posts_and_different_identities_are_never_coalesced() {
    let up = origin();
    let t = Tether::start(
        &[url_of(&up)],
        &[
            "--workers",
            "1",
            "--coalesce",
            "--identity-header",
            "X-Tenant",
            "--sse-heartbeat",
            "0",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let admin = t.admin_addr();
    let first_three = |r: &mut SseReader, who: &str| -> Vec<u64> {
        r.deadline = Instant::now() + Duration::from_secs(20);
        let mut ids = Vec::new();
        for _ in 0..3 {
            match r.next_event() {
                Ok(Some(ev)) => ids.push(ev.num_id().expect("a numeric id")),
                other => panic!("{who}: no event after {ids:?}: {other:?}"),
            }
        }
        ids
    };

    let path = "/sse?events=0&rate=50&ts=0&never=post";
    let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#;
    let mut p1 = SseReader::open(t.addr, &sse_post_request(path, &[], body));
    assert_eq!(p1.head.status, 200);
    assert_eq!(first_three(&mut p1, "POST 1"), vec![1, 2, 3]);
    let mut p2 = SseReader::open(t.addr, &sse_post_request(path, &[], body));
    assert_eq!(p2.head.status, 200);
    assert_eq!(
        first_three(&mut p2, "POST 2"),
        vec![1, 2, 3],
        "the second POST has a stream of its own"
    );
    let methods: Vec<String> = requests_for(&up, path)
        .into_iter()
        .map(|r| r.method)
        .collect();
    assert_eq!(methods, vec!["POST", "POST"], "two POSTs, two requests");
    drop((p1, p2));

    let mut joins = 0.0;
    for header in ["Authorization", "Cookie", "Mcp-Session-Id", "X-Tenant"] {
        let path = format!("/sse?events=0&rate=50&ts=0&never={header}");
        let (a, b) = (format!("{header}: a"), format!("{header}: b"));
        let mut g1 = SseReader::get(t.addr, &path, &[&a]);
        assert_eq!(first_three(&mut g1, &a), vec![1, 2, 3]);
        let mut g2 = SseReader::get(t.addr, &path, &[&b]);
        assert_eq!(
            first_three(&mut g2, &b),
            vec![1, 2, 3],
            "{header} b must get its own stream, not a's"
        );
        let values: Vec<Option<String>> = requests_for(&up, &path)
            .iter()
            .map(|r| r.header(header).map(str::to_string))
            .collect();
        assert_eq!(
            values,
            vec![Some("a".to_string()), Some("b".to_string())],
            "two identities, two upstream requests, each with its own {header}"
        );
        // Control: the same identity as g1 joins g1's live stream.
        let mut g3 = SseReader::get(t.addr, &path, &[&a]);
        let joined = first_three(&mut g3, &format!("{a} again"));
        joins += 1.0;
        assert!(
            joined[0] > 1 && consecutive(&joined),
            "{header} a, again while a is live, must join a's stream at its live head: {joined:?}"
        );
        assert_eq!(
            requests_for(&up, &path).len(),
            2,
            "the same identity again made a request of its own"
        );
        assert_eq!(sample(admin, "tether_sse_coalesced_total"), joins);
    }
}

// ---- --coalesce-flush ---------------------------------------------------------------------------

/// The chunks of a chunked body read from `stream` until `events` SSE events have come (or the
/// deadline): each chunk's payload, as written by one write of tether's.
fn chunks_until(
    stream: &mut std::net::TcpStream,
    events: usize,
    deadline: Instant,
) -> Vec<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut chunks = Vec::new();
    let mut seen = 0;
    let mut head_done = false;
    let mut pos = 0;
    let mut tmp = [0u8; 16 * 1024];
    while seen < events && Instant::now() < deadline {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        match stream.read(&mut tmp) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
            Err(_) => continue,
        }
        if !head_done {
            let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            pos = end + 4;
            head_done = true;
        }
        // Whole chunks only: "<hex>\r\n<payload>\r\n".
        while let Some(line_end) = buf[pos..].windows(2).position(|w| w == b"\r\n") {
            let size_text = std::str::from_utf8(&buf[pos..pos + line_end]).unwrap();
            let size = usize::from_str_radix(size_text.trim(), 16).unwrap();
            let start = pos + line_end + 2;
            if buf.len() < start + size + 2 {
                break;
            }
            let payload = buf[start..start + size].to_vec();
            seen += payload.windows(4).filter(|w| w == b"id: ").count();
            chunks.push(payload);
            pos = start + size + 2;
        }
    }
    chunks
}

/// `--coalesce --coalesce-flush 300ms`, events every 20 ms: a client that joined the stream is
/// written at most once per 300 ms, so its events come several to a chunk (one chunk per write),
/// all of them, in order; without the flag the same client gets about one event per chunk.
#[test]
fn coalesce_flush_writes_a_joined_client_several_events_at_once() {
    let per_chunk = |flush: Option<&str>| -> (f64, Vec<u64>) {
        let up = origin();
        let mut flags = vec!["--workers", "1", "--coalesce", "--sse-heartbeat", "0"];
        if let Some(d) = flush {
            flags.extend(["--coalesce-flush", d]);
        }
        let t = Tether::start(&[url_of(&up)], &flags);
        let path = "/sse?events=0&rate=50&ts=0&flush=1";
        let mut opener = SseReader::get(t.addr, path, &[]);
        assert_eq!(ids_through(&mut opener, 2).0, vec![1, 2]);
        let mut joiner = std::net::TcpStream::connect(t.addr).unwrap();
        std::io::Write::write_all(&mut joiner, &sse_request(path, &[])).unwrap();
        let chunks = chunks_until(&mut joiner, 60, Instant::now() + Duration::from_secs(10));
        drop(opener);
        let ids: Vec<u64> = chunks
            .iter()
            .flat_map(|c| SseReader::parse_body(c))
            .filter_map(|e| e.num_id())
            .collect();
        let events = ids.len() as f64;
        (events / chunks.len().max(1) as f64, ids)
    };
    let (batched, ids) = per_chunk(Some("300ms"));
    assert!(ids.len() >= 60, "the joiner got {} events", ids.len());
    let first = ids[0];
    assert_eq!(
        ids,
        (first..first + ids.len() as u64).collect::<Vec<u64>>(),
        "every event once, in order"
    );
    let (at_once, _) = per_chunk(None);
    assert!(
        batched >= 5.0,
        "with --coalesce-flush 300ms and an event every 20 ms, {batched:.1} events per write"
    );
    assert!(
        at_once < 2.0,
        "without it, {at_once:.1} events per write (expected about one)"
    );
}
