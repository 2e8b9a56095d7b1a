//! `--hold-upstream D`: when the last client of an SSE stream leaves before the upstream ended,
//! tether keeps reading that upstream into the stream's replay ring for up to D. A client coming
//! back within D (a GET of the same path and identity with `Last-Event-ID`) gets every event after
//! its id from the ring, then the live rest, then the clean end; a POST-born stream is never
//! re-sent for it. Nobody back within D: the upstream is closed. Held rings obey --replay-memory.
//!
//! Every test runs the real binary over loopback in front of the in-process simulator (which
//! records each request's method and Last-Event-ID) or a scripted origin (which paces its own
//! blocks and sees its client go away). Each holds on both io drivers
//! (MONOIO_FORCE_LEGACY_DRIVER=1 for epoll).

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::scripted_origin::{Reply, ScriptedOrigin};
use common::*;

const MIB: f64 = 1024.0 * 1024.0;

/// A /metrics sample (0 when absent: a counter never touched may not be rendered).
fn sample(admin: SocketAddr, name: &str) -> f64 {
    prom_value(&Tether::metrics_text(admin), name).unwrap_or(0.0)
}

fn log_text(t: &Tether) -> String {
    t.log_lines().join("\n")
}

/// Waits until tether holds `n` streams without a client (`tether_sse_held_streams`); false
/// when it did not within 5 s.
fn held_becomes(admin: SocketAddr, n: f64) -> bool {
    wait_until(Duration::from_secs(5), || {
        sample(admin, "tether_sse_held_streams") == n
    })
}

// ---- 5. a POST-born stream held and resumed by GET ---------------------------------------------

/// A POST whose answer is a stream of 40 events at 20 per second (`id: 1`..`id: 40`, then the
/// upstream ends the body), `--hold-upstream 5s`: the client reads 5 events and closes its
/// connection. The stream is held (the gauge, and `"state":"held"` on /streams). One second
/// after leaving, a GET of the same path with `Last-Event-ID: 5` gets 6..=40 exactly once (the
/// ring's, then the live rest) and then the clean end of its response. The upstream saw exactly
/// one request, the POST: nothing was re-sent, and no GET went upstream.
#[test]
fn a_post_stream_held_is_resumed_by_get_without_going_upstream() {
    let up = origin();
    let t = holding(&up, "1");
    let admin = t.admin_addr();
    post_then_come_back(&t, &up, "/sse?events=40&rate=20&ts=0&held=post");
    assert_eq!(sample(admin, "tether_sse_hold_resumed_total"), 1.0);
    assert_eq!(
        sample(admin, "tether_upstream_drops_eof_total"),
        0.0,
        "the end of a POST's stream (never resumed) is its end, not a drop"
    );
    assert!(
        held_becomes(admin, 0.0),
        "the stream still counts as held after its client came back"
    );
}

/// The same, the comeback made 3 s after the client left: the upstream ended its body meanwhile
/// (event 40 was due 1.75 s after the client left). The held stream's ring still answers: 6..=40,
/// then the clean end, and still nothing but the POST went upstream.
#[test]
fn a_held_stream_that_ended_meanwhile_still_answers_from_its_ring() {
    let up = origin();
    let t = holding(&up, "1");
    post_then_come_back_on(
        &t,
        &up,
        "/sse?events=40&rate=20&ts=0&held=ended",
        Duration::from_secs(3),
        Comeback::Get,
        |_| Client::connect(t.addr),
    );
}

/// A client that came back to a held stream and leaves again is held for again: a POST of 40
/// events at 20 per second, read through 5, left; a GET with `Last-Event-ID: 5` half a second
/// later reads through 10 and leaves; a GET with `Last-Event-ID: 10` half a second after that
/// gets 11..=40 and the end. The upstream saw one POST and nothing else; two comebacks counted.
#[test]
fn a_stream_is_held_again_when_its_comeback_leaves() {
    let up = origin();
    let t = holding(&up, "1");
    let admin = t.admin_addr();
    let path = "/sse?events=40&rate=20&ts=0&held=twice";
    let mut post = SseReader::open(t.addr, &sse_post_request(path, &[], b"{}"));
    assert_eq!(ids_through(&mut post, 5), ((1..=5).collect(), None));
    drop(post);
    assert!(
        held_becomes(admin, 1.0),
        "held after the POST's client left"
    );
    thread::sleep(Duration::from_millis(500));

    let mut back = SseReader::get(t.addr, path, &["Last-Event-ID: 5"]);
    assert_eq!(
        ids_through(&mut back, 10),
        ((6..=10).collect(), None),
        "first comeback\n{}",
        log_text(&t)
    );
    drop(back);
    assert!(
        held_becomes(admin, 1.0),
        "held again after the comeback left\n{}",
        log_text(&t)
    );
    thread::sleep(Duration::from_millis(500));

    let mut again = SseReader::get(t.addr, path, &["Last-Event-ID: 10"]);
    again.deadline = Instant::now() + Duration::from_secs(15);
    let (ids, stopped) = ids_through(&mut again, 40);
    let asked: Vec<(String, Option<String>)> = up
        .requests()
        .into_iter()
        .map(|r| (r.method, r.last_event_id))
        .collect();
    assert_eq!(
        (ids, stopped),
        ((11..=40).collect(), None),
        "second comeback; upstream requests {asked:?}\n{}",
        log_text(&t)
    );
    assert!(
        again.next_event().is_ok_and(|e| e.is_none()) && again.clean_end == Some(true),
        "the second comeback's response ends cleanly after 40"
    );
    assert_eq!(asked, vec![("POST".to_string(), None)]);
    assert_eq!(sample(admin, "tether_sse_hold_resumed_total"), 2.0);
}

/// A held GET stream whose upstream drops while nobody is there is resumed as any stream is
/// (`Last-Event-ID` upstream), and the comeback sees no seam: the origin closes its first
/// connection after event 10 and honours Last-Event-ID; the client reads 3 events and leaves; a
/// second later (the drop came meanwhile) a GET with `Last-Event-ID: 3` gets 4..=30
/// consecutively. The upstream saw the first request and one resume from 10.
#[test]
fn a_held_stream_is_resumed_through_an_upstream_drop_while_nobody_is_there() {
    let up = origin();
    let t = holding(&up, "1");
    let admin = t.admin_addr();
    let path = "/sse?events=0&rate=20&ts=0&close_after=10&fault_once=1&held=drop";
    let mut c = SseReader::get(t.addr, path, &[]);
    assert_eq!(ids_through(&mut c, 3), ((1..=3).collect(), None));
    drop(c);
    let left = Instant::now();
    assert!(held_becomes(admin, 1.0), "held after the client left");
    thread::sleep(Duration::from_secs(1).saturating_sub(left.elapsed()));
    let mut back = SseReader::get(t.addr, path, &["Last-Event-ID: 3"]);
    let (ids, stopped) = ids_through(&mut back, 30);
    let asked: Vec<Option<String>> = up.requests().into_iter().map(|r| r.last_event_id).collect();
    assert!(
        stopped.is_none() && ids.first() == Some(&4) && consecutive(&ids),
        "the comeback got {ids:?} (stopped: {stopped:?}); upstream requests' Last-Event-ID: \
         {asked:?}\n{}",
        log_text(&t)
    );
    assert_eq!(asked, vec![None, Some("10".to_string())]);
    assert_eq!(sample(admin, "tether_sse_hold_resumed_total"), 1.0);
}

/// A held stream is only ever given back to its own identity. A POST with `Authorization:
/// Bearer a` is held after its client leaves; a GET with `Authorization: Bearer b` and
/// `Last-Event-ID: 5` gets the upstream's own answer (the origin ignores Last-Event-ID and starts
/// at 1), not a's events, and its request goes upstream with b's credentials; a's own comeback
/// then gets 6..=40 and the end from the held stream.
#[test]
fn a_held_stream_is_not_given_to_another_identity() {
    let up = origin();
    let t = holding(&up, "1");
    let admin = t.admin_addr();
    let path = "/sse?events=40&rate=20&ts=0&resume=ignore&held=identity";
    let mut post = SseReader::open(
        t.addr,
        &sse_post_request(path, &["Authorization: Bearer a"], b"{}"),
    );
    assert_eq!(post.head.status, 200);
    assert_eq!(ids_through(&mut post, 5), (vec![1, 2, 3, 4, 5], None));
    drop(post);
    assert!(held_becomes(admin, 1.0), "a's stream is held");

    let mut other = SseReader::get(
        t.addr,
        path,
        &["Authorization: Bearer b", "Last-Event-ID: 5"],
    );
    assert_eq!(other.head.status, 200);
    assert_eq!(
        ids_through(&mut other, 3),
        (vec![1, 2, 3], None),
        "b must get the upstream's own answer, not a's held stream"
    );
    drop(other);
    let asked: Vec<(String, Option<String>, Option<String>)> = up
        .requests()
        .into_iter()
        .map(|r| {
            let auth = r.header("authorization").map(str::to_string);
            (r.method, auth, r.last_event_id)
        })
        .collect();
    assert_eq!(
        asked,
        vec![
            ("POST".to_string(), Some("Bearer a".to_string()), None),
            (
                "GET".to_string(),
                Some("Bearer b".to_string()),
                Some("5".to_string())
            ),
        ],
        "b's request went upstream with its own credentials"
    );
    assert_eq!(sample(admin, "tether_sse_hold_resumed_total"), 0.0);

    let mut back = SseReader::get(
        t.addr,
        path,
        &["Authorization: Bearer a", "Last-Event-ID: 5"],
    );
    back.deadline = Instant::now() + Duration::from_secs(15);
    assert_eq!(
        num_ids(&back.events_to_end()),
        (6..=40).collect::<Vec<u64>>(),
        "a's comeback\n{}",
        log_text(&t)
    );
    assert_eq!(back.clean_end, Some(true));
    let a_asked: Vec<String> = up
        .requests()
        .into_iter()
        .filter(|r| r.header("authorization") == Some("Bearer a"))
        .map(|r| r.method)
        .collect();
    assert_eq!(a_asked, vec!["POST"], "a's comeback went nowhere upstream");
    assert_eq!(sample(admin, "tether_sse_hold_resumed_total"), 1.0);
}

/// POSTs `path` (the simulator's finite paced stream of 40 events), reads 5 events, leaves,
/// checks the stream is held, comes back 1 s later with `Last-Event-ID: 5` and checks 6..=40 and
/// the clean end, and that the upstream saw one POST and nothing else for `path`.
fn post_then_come_back(t: &Tether, up: &tether_perf::UpstreamHandle, path: &str) {
    post_then_come_back_on(t, up, path, Duration::from_secs(1), Comeback::Get, |_| {
        Client::connect(t.addr)
    });
}

/// How the client comes back to its held stream.
#[derive(Clone, Copy)]
enum Comeback {
    /// A GET with `Last-Event-ID` (EventSource, MCP clients).
    Get,
    /// The original POST again, body and all, with `Last-Event-ID`.
    RepeatPost,
}

/// [`post_then_come_back`], the comeback made `back_after` the client left, sent on the
/// connection `connect` gives for the worker holding the stream.
fn post_then_come_back_on(
    t: &Tether,
    up: &tether_perf::UpstreamHandle,
    path: &str,
    back_after: Duration,
    how: Comeback,
    connect: impl FnOnce(usize) -> Client,
) {
    let admin = t.admin_addr();
    let body = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"long"}}"#;
    let mut post = SseReader::open(t.addr, &sse_post_request(path, &[], body));
    assert_eq!(post.head.status, 200);
    let (first, stopped) = ids_through(&mut post, 5);
    assert_eq!(
        (first, stopped),
        (vec![1, 2, 3, 4, 5], None),
        "the POST's stream"
    );
    drop(post);
    let left = Instant::now();

    assert!(
        wait_until(Duration::from_secs(5), || {
            sample(admin, "tether_sse_held_streams") >= 1.0
        }),
        "the stream was not held after its client left\n{}",
        log_text(t)
    );
    let holder = holder_of(admin, path).unwrap_or_else(|| {
        panic!(
            "/streams shows no held stream of {path}: {}",
            admin_get(admin, "/streams").1
        )
    });
    let client = connect(holder);

    thread::sleep(back_after.saturating_sub(left.elapsed()));
    let request = match how {
        Comeback::Get => sse_request(path, &["Last-Event-ID: 5"]),
        Comeback::RepeatPost => sse_post_request(path, &["Last-Event-ID: 5"], body),
    };
    let mut back = SseReader::on(client, &request);
    assert_eq!(back.head.status, 200, "{}", log_text(t));
    back.deadline = Instant::now() + Duration::from_secs(15);
    let (ids, end) = ids_to_end(&mut back);
    let methods: Vec<(String, Option<String>)> = up
        .requests()
        .into_iter()
        .filter(|r| r.path == path)
        .map(|r| (r.method, r.last_event_id))
        .collect();
    let context = format!(
        "{path}: the comeback got {ids:?}, its response ended {end}; upstream requests (method, \
         Last-Event-ID): {methods:?}\n{}",
        log_text(t)
    );
    assert_eq!(
        ids,
        (6..=40).collect::<Vec<u64>>(),
        "the comeback gets every event after 5, once, in order; {context}"
    );
    assert_eq!(
        end, "Some(true)",
        "the comeback's response ends cleanly (last-chunk) after the upstream's end; {context}"
    );
    assert_eq!(
        methods,
        vec![("POST".to_string(), None)],
        "the upstream saw one POST and no GET; {context}"
    );
}

/// The same with `--workers 2`, the comeback made on the worker that does not hold the stream
/// (a keep-alive connection first shown, by a plain request and the per-worker request counter,
/// to be served by the other worker): a comeback finds its held stream whichever worker it
/// lands on (SO_REUSEPORT spreads connections by their ports). One that missed it would go
/// upstream with a GET, which the check on the upstream's requests sees.
#[test]
fn a_comeback_on_the_other_worker_finds_the_held_stream() {
    come_back_on_the_other_worker(Comeback::Get, "elsewhere");
}

/// The comeback is the original POST again (body and all) with `Last-Event-ID: 5`, sent on the
/// worker that does not hold the stream: it follows the held stream (6..=40, then the end) and
/// the upstream still saw one POST only. A repeated POST is never sent upstream while its stream
/// is held; its connection moves to the holder with the body bytes it had read.
#[test]
fn a_comeback_repeating_its_post_follows_the_held_stream_without_sending_it() {
    come_back_on_the_other_worker(Comeback::RepeatPost, "repost");
}

/// [`post_then_come_back_on`] with `--workers 2`, the comeback (`how`) sent on the worker that
/// does not hold the stream: one comeback counted, and counted once as served from a ring (by
/// the holder it was handed to, not also by the worker that handed it over).
fn come_back_on_the_other_worker(how: Comeback, tag: &str) {
    let up = origin();
    let t = holding(&up, "2");
    let admin = t.admin_addr();
    let path = format!("/sse?events=40&rate=20&ts=0&held={tag}");
    post_then_come_back_on(&t, &up, &path, Duration::from_secs(1), how, |holder| {
        connection_not_on(&t, holder, "/bytes?n=1")
    });
    assert_eq!(sample(admin, "tether_sse_hold_resumed_total"), 1.0);
    assert_eq!(
        sample(admin, "tether_replay_served_total"),
        1.0,
        "a comeback handed to the holder is counted once, by the holder"
    );
}

/// tether with `--hold-upstream 5s`, no heartbeats and an admin endpoint, on `workers` workers.
fn holding(up: &tether_perf::UpstreamHandle, workers: &str) -> Tether {
    Tether::start(
        &[url_of(up)],
        &[
            "--workers",
            workers,
            "--hold-upstream",
            "5s",
            "--sse-heartbeat",
            "0",
            "--admin",
            "127.0.0.1:0",
        ],
    )
}

/// The worker whose /streams rows show `path` held.
fn holder_of(admin: SocketAddr, path: &str) -> Option<usize> {
    worker_with_stream(admin, path, Some("held"))
}

// ---- 6. an id-less stream, with tether's own ids -----------------------------------------------

/// An origin stream without ids (`data: chunk N` for N in 1..=40 at 20 per second, then
/// `data: [DONE]` and the end of the body) answering a POST, with `--assign-ids --hold-upstream
/// 5s`: tether gives each event an id; the client reads 5 events and leaves; 1 s later a GET
/// with `Last-Event-ID` = the id tether gave the 5th event gets chunks 6..=40 and [DONE], each
/// once and in order, then the clean end. The origin saw exactly one request, the POST.
#[test]
fn an_id_less_stream_is_resumed_with_tethers_ids() {
    let origin = id_less_origin();
    let t = Tether::start(&[origin.url()], &id_less_flags("1"));
    id_less_post_then_come_back(&t, &origin, "/mcp?stream=idless", |_| {
        Client::connect(t.addr)
    });
}

/// The same with `--workers 2`, the comeback made on the worker that does not hold the stream
/// (tether's id names the worker that made it).
#[test]
fn an_id_less_stream_is_resumed_with_tethers_ids_from_the_other_worker() {
    let origin = id_less_origin();
    let t = Tether::start(&[origin.url()], &id_less_flags("2"));
    id_less_post_then_come_back(&t, &origin, "/mcp?stream=elsewhere", |holder| {
        connection_not_on(&t, holder, "/probe")
    });
}

/// The id-less origin: 40 `data: chunk N` blocks 50 ms apart, `data: [DONE]`, the end; a plain
/// 200 for `/probe` (placing connections on workers).
fn id_less_origin() -> ScriptedOrigin {
    ScriptedOrigin::start(|r| {
        if r.target == "/probe" {
            return Reply::text(200, "ok");
        }
        let mut blocks: Vec<String> = (1..=40).map(|n| format!("data: chunk {n}\n\n")).collect();
        blocks.push("data: [DONE]\n\n".to_string());
        Reply::Paced {
            blocks,
            every: Duration::from_millis(50),
        }
    })
}

fn id_less_flags(workers: &str) -> Vec<&str> {
    vec![
        "--workers",
        workers,
        "--assign-ids",
        "--hold-upstream",
        "5s",
        "--sse-heartbeat",
        "0",
        "--admin",
        "127.0.0.1:0",
    ]
}

/// POSTs `path`, reads 5 events (with tether's ids), leaves; 1 s later comes back with the 5th
/// event's id on the connection `connect` gives for the worker holding the stream, and checks
/// the rest, the clean end, and that the origin saw one POST of `path` and nothing else.
fn id_less_post_then_come_back(
    t: &Tether,
    origin: &ScriptedOrigin,
    path: &str,
    connect: impl FnOnce(usize) -> Client,
) {
    let admin = t.admin_addr();
    let mut post = SseReader::open(t.addr, &sse_post_request(path, &[], b"{}"));
    assert_eq!(post.head.status, 200);
    post.deadline = Instant::now() + Duration::from_secs(15);
    let mut first = Vec::new();
    for _ in 0..5 {
        let ev = post
            .next_event()
            .expect("reading the POST's stream")
            .expect("the POST's stream ended early");
        first.push((ev.id.clone(), ev.data.clone().unwrap_or_default()));
    }
    let datas: Vec<&str> = first.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(
        datas,
        ["chunk 1", "chunk 2", "chunk 3", "chunk 4", "chunk 5"]
    );
    assert!(
        first.iter().all(|(id, _)| id.is_some()),
        "--assign-ids gave every event an id: {first:?}"
    );
    let fifth = first[4].0.clone().unwrap();
    drop(post);
    let left = Instant::now();
    assert!(
        held_becomes(admin, 1.0),
        "the stream was not held after its client left\n{}",
        log_text(t)
    );
    let holder = holder_of(admin, path).expect("/streams shows the held stream");
    let client = connect(holder);

    thread::sleep(Duration::from_secs(1).saturating_sub(left.elapsed()));
    let last = format!("Last-Event-ID: {fifth}");
    let mut back = SseReader::on(client, &sse_request(path, &[&last]));
    assert_eq!(back.head.status, 200, "{}", log_text(t));
    back.deadline = Instant::now() + Duration::from_secs(15);
    let mut rest = Vec::new();
    let end = loop {
        match back.next_event() {
            Ok(Some(ev)) => rest.push(ev),
            Ok(None) => break format!("{:?}", back.clean_end),
            Err(e) => break format!("not ended: {e}"),
        }
    };
    let got: Vec<String> = rest
        .iter()
        .map(|e| e.data.clone().unwrap_or_default())
        .collect();
    let want: Vec<String> = (6..=40)
        .map(|n| format!("chunk {n}"))
        .chain(["[DONE]".to_string()])
        .collect();
    let methods: Vec<(String, Option<String>)> = origin
        .requests()
        .into_iter()
        .filter(|r| r.target == path)
        .map(|r| {
            let last_id = r.header("last-event-id").map(str::to_string);
            (r.method, last_id)
        })
        .collect();
    let context = format!(
        "{path}, back after {fifth}: response ended {end}; origin requests (method, \
         Last-Event-ID): {methods:?}\n{}",
        log_text(t)
    );
    assert_eq!(got, want, "the rest once, in order; {context}");
    assert!(
        rest.iter().all(|e| e.id.is_some()),
        "every resumed event has tether's id"
    );
    assert_eq!(
        end, "Some(true)",
        "the comeback's response ends cleanly; {context}"
    );
    assert_eq!(
        methods,
        vec![("POST".to_string(), None)],
        "the origin saw one POST and nothing else; {context}"
    );
    assert_eq!(sample(admin, "tether_sse_hold_resumed_total"), 1.0);
}

// ---- 7. a hold that expires ---------------------------------------------------------------------

/// `--hold-upstream 500ms`, an origin that keeps streaming (an event every 100 ms, for a minute):
/// the client reads 3 events and leaves, and nobody comes back. The origin sees its connection
/// closed, not before the hold has run (500 ms after the client left; without a hold it would
/// see it within ~100 ms) and within a few seconds; then `tether_sse_hold_expired_total` is 1,
/// `tether_sse_held_streams` 0, and nobody counted as resumed.
#[test]
fn a_held_stream_nobody_comes_back_to_is_closed_after_the_hold() {
    let origin = ScriptedOrigin::start(|_| Reply::Paced {
        blocks: (1..=600)
            .map(|n| format!("id: {n}\ndata: tick {n}\n\n"))
            .collect(),
        every: Duration::from_millis(100),
    });
    let t = Tether::start(
        &[origin.url()],
        &[
            "--workers",
            "1",
            "--hold-upstream",
            "500ms",
            "--sse-heartbeat",
            "0",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let admin = t.admin_addr();
    let mut c = SseReader::get(t.addr, "/ticks", &[]);
    assert_eq!(c.head.status, 200);
    assert_eq!(ids_through(&mut c, 3), (vec![1, 2, 3], None));
    drop(c);
    let left = Instant::now();

    assert!(
        wait_until(Duration::from_secs(8), || !origin.cuts().is_empty()),
        "the origin's connection is still open {:?} after the client left, past a 500 ms hold\n{}",
        left.elapsed(),
        log_text(&t)
    );
    let cut = origin.cuts()[0].clone();
    let after = cut.at.saturating_duration_since(left);
    assert!(
        after >= Duration::from_millis(450),
        "the upstream was closed {after:?} after the client left, before the 500 ms hold ran \
         out (it sent {} blocks)",
        cut.blocks_sent
    );
    assert!(
        wait_until(Duration::from_secs(5), || {
            sample(admin, "tether_sse_hold_expired_total") == 1.0
        }),
        "tether_sse_hold_expired_total is {}",
        sample(admin, "tether_sse_hold_expired_total")
    );
    assert!(
        held_becomes(admin, 0.0),
        "tether_sse_held_streams is {}",
        sample(admin, "tether_sse_held_streams")
    );
    assert_eq!(sample(admin, "tether_sse_hold_resumed_total"), 0.0);
    assert_eq!(origin.requests().len(), 1, "one upstream request");
}

/// `--hold-max-streams 2` (one worker, `--hold-upstream 5s`): three endless streams whose clients
/// leave one after the other; the first two are held, the third is closed as without a hold.
/// Two upstream connections stay open, `tether_sse_held_streams` is 2, and /streams shows the
/// first two held and not the third.
#[test]
fn no_more_streams_are_held_than_hold_max_streams() {
    let up = origin();
    let t = Tether::start(
        &[url_of(&up)],
        &[
            "--workers",
            "1",
            "--hold-upstream",
            "5s",
            "--hold-max-streams",
            "2",
            "--sse-heartbeat",
            "0",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let admin = t.admin_addr();
    let paths: Vec<String> = (0..3)
        .map(|n| format!("/sse?events=0&rate=20&ts=0&cap={n}"))
        .collect();
    for (n, path) in paths.iter().enumerate() {
        let mut r = SseReader::get(t.addr, path, &[]);
        assert_eq!(ids_through(&mut r, 3), ((1..=3).collect(), None), "{path}");
        drop(r);
        let want = (n + 1).min(2) as f64;
        assert!(
            held_becomes(admin, want),
            "after {} clients left: tether_sse_held_streams {} (want {want})",
            n + 1,
            sample(admin, "tether_sse_held_streams")
        );
    }
    let port = up.addr().port();
    assert!(
        wait_until(Duration::from_secs(5), || established_to_port(port) == 2),
        "{} upstream connections open; want the two held ones",
        established_to_port(port)
    );
    let held: Vec<bool> = paths
        .iter()
        .map(|p| holder_of(admin, p).is_some())
        .collect();
    assert_eq!(held, vec![true, true, false], "held streams on /streams");
    assert_eq!(sample(admin, "tether_sse_held_streams"), 2.0);
}

/// `hold-upstream` as a route key of a configuration file: a stream of the route with it is held
/// after its client leaves; one of a route without it (routes by Host) is closed at once.
#[test]
fn hold_upstream_is_a_route_key_in_the_configuration_file() {
    let up = origin();
    let file = common::config_file::ConfigFile::new(&format!(
        r#"
bind = "127.0.0.1:0"

[[route]]
name = "held"
host = "held.test"
upstream = ["{0}"]
hold-upstream = "5s"
sse-heartbeat = "0"

[[route]]
name = "own"
host = "own.test"
upstream = ["{0}"]
sse-heartbeat = "0"
"#,
        url_of(&up)
    ));
    let args: Vec<String> = [
        "reverse",
        "--config",
        &file.path(),
        "--workers",
        "1",
        "--admin",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let t = Tether::start_args(&args)
        .unwrap_or_else(|log| panic!("tether did not start:\n{}", log.join("\n")));
    let admin = t.admin_addr();
    for host in ["held.test", "own.test"] {
        let path = format!("/sse?events=0&rate=20&ts=0&route={host}");
        let raw =
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n");
        let mut r = SseReader::open(t.addr, raw.as_bytes());
        assert_eq!(ids_through(&mut r, 3), ((1..=3).collect(), None), "{host}");
    }
    let port = up.addr().port();
    assert!(
        wait_until(Duration::from_secs(5), || established_to_port(port) == 1),
        "{} upstream connections open; want only the held route's",
        established_to_port(port)
    );
    assert!(held_becomes(admin, 1.0), "one stream held");
    assert!(holder_of(admin, "/sse?events=0&rate=20&ts=0&route=held.test").is_some());
}

// ---- 8. held rings within the memory budget -----------------------------------------------------

/// `--replay-memory 2MiB --workers 1 --hold-upstream 10s`: 50 POSTs of distinct paths, each
/// answered by an endless stream of 1000-byte events at 20 per second; each client reads 3
/// events and leaves, so 50 streams are held, their upstreams still writing into their rings
/// (together ~1 MB/s, past the budget in a few seconds). While they run, the replay ring bytes
/// (`tether_replay_ring_bytes`, sampled every 20 ms) never pass the budget, and evictions are
/// counted (`tether_replay_evictions_total`).
#[test]
fn held_rings_stay_within_the_replay_memory_budget() {
    const STREAMS: usize = 50;
    const BUDGET: f64 = 2.0 * MIB;
    let up = origin();
    let t = Tether::start(
        &[url_of(&up)],
        &[
            "--workers",
            "1",
            "--replay-memory",
            "2MiB",
            "--hold-upstream",
            "10s",
            "--sse-heartbeat",
            "0",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let admin = t.admin_addr();
    let stop = AtomicBool::new(false);
    let (peak_bytes, peak_held, evicted) = thread::scope(|s| {
        let sampler = s.spawn(|| {
            let (mut bytes, mut held) = (0f64, 0f64);
            while !stop.load(Ordering::SeqCst) {
                let text = Tether::metrics_text(admin);
                bytes = bytes.max(prom_value(&text, "tether_replay_ring_bytes").unwrap_or(0.0));
                held = held.max(prom_value(&text, "tether_sse_held_streams").unwrap_or(0.0));
                thread::sleep(Duration::from_millis(20));
            }
            (bytes, held)
        });
        let clients: Vec<_> = (0..STREAMS)
            .map(|n| {
                let t = &t;
                s.spawn(move || {
                    let path = format!("/sse?events=0&size=1000&rate=20&ts=0&budget={n}");
                    let mut r = SseReader::open(t.addr, &sse_post_request(&path, &[], b"{}"));
                    assert_eq!(r.head.status, 200, "POST {n}");
                    assert_eq!(ids_through(&mut r, 3), (vec![1, 2, 3], None), "POST {n}");
                })
            })
            .collect();
        for c in clients {
            c.join().unwrap();
        }
        let evicted = wait_until(Duration::from_secs(15), || {
            sample(admin, "tether_replay_evictions_total") > 0.0
        });
        // A little longer under the budget's pressure.
        thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::SeqCst);
        let (bytes, held) = sampler.join().unwrap();
        (bytes, held, evicted)
    });
    let text = Tether::metrics_text(admin);
    let peak_bytes = peak_bytes.max(prom_value(&text, "tether_replay_ring_bytes").unwrap_or(0.0));
    assert!(
        peak_held >= (STREAMS / 2) as f64,
        "at most {peak_held} streams were held at once after {STREAMS} clients left"
    );
    assert!(
        evicted,
        "50 held upstreams writing ~1 MB/s into a 2 MiB budget, and no eviction:\n{text}"
    );
    assert!(
        peak_bytes <= BUDGET,
        "tether_replay_ring_bytes reached {peak_bytes} ({:.2} MiB), over the 2 MiB budget",
        peak_bytes / MIB
    );
}

/// A stream none of whose events carries an id (and no `--assign-ids`) is not held when its
/// client leaves: no comeback could name a place in it, and holding it would only keep the
/// upstream busy (an MCP server allows one notification stream per session, and answers a new
/// one 409 while the old is held). Its upstream is closed long before the 5 s hold would end.
#[test]
fn a_stream_without_ids_is_not_held() {
    let origin = ScriptedOrigin::start(|_| Reply::Paced {
        blocks: (1..=600).map(|n| format!("data: tick {n}\n\n")).collect(),
        every: Duration::from_millis(100),
    });
    let t = Tether::start(
        &[origin.url()],
        &[
            "--workers",
            "1",
            "--hold-upstream",
            "5s",
            "--sse-heartbeat",
            "0",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let admin = t.admin_addr();
    let mut c = SseReader::get(t.addr, "/no-ids", &[]);
    assert_eq!(c.head.status, 200);
    for _ in 0..3 {
        assert!(c.next_event().expect("an event").is_some());
    }
    drop(c);
    let left = Instant::now();
    assert!(
        wait_until(Duration::from_secs(4), || !origin.cuts().is_empty()),
        "the upstream of a stream without ids is still open {:?} after its client left: held \
         although nothing in it can be resumed\n{}",
        left.elapsed(),
        log_text(&t)
    );
    assert_eq!(sample(admin, "tether_sse_held_streams"), 0.0);
    assert_eq!(sample(admin, "tether_sse_hold_expired_total"), 0.0);
}
