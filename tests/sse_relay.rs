//! The SSE relay and the replay rings end to end: the real tether binary in front of the
//! in-process upstream simulator, over real loopback sockets. Every wait is bounded; every test
//! stops by itself in a few seconds. Runs on whichever driver the environment selects; run it
//! twice (plain, and with MONOIO_FORCE_LEGACY_DRIVER=1) to cover io_uring and epoll.
//!
//! Upstream resume: by default tether does not end a client's response when the upstream body
//! ends or drops; it reconnects (`Last-Event-ID`) and splices. So each test that needs "the
//! upstream ends and so does the client's response" picks the configuration where that is the
//! product's behaviour: `--pass-clean-end` for the clean end of a finite stream, a stream without
//! ids (`ids=0`) or born from a POST for a drop that must end it. Tests of resume itself are in
//! `sse_resume.rs`; here resume only shows where it meets the relay and the rings. Every
//! `SseReader` has an overall deadline (`SSE_STREAM_DEADLINE`), so a stream that should end but
//! does not fails its test instead of hanging it.

mod common;

use std::collections::HashSet;
use std::io::Read;
use std::thread;
use std::time::{Duration, Instant, UNIX_EPOCH};

use common::*;

/// The UTF-8 byte order mark.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Requests the simulator received for `/sse` whose target contains `tag`.
fn sse_requests(up: &tether_perf::UpstreamHandle, tag: &str) -> Vec<tether_perf::RequestRecord> {
    up.requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/sse") && r.path.contains(tag))
        .collect()
}

fn micros(t: std::time::SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

fn log_has(t: &Tether, needle: &str) -> bool {
    t.log_lines().iter().any(|l| l.contains(needle))
}

/// The process's fd count once it stops changing (two reads 20 ms apart agree, within 5 s): the
/// workers have opened what they keep open.
fn settled_fd_count(pid: u32) -> usize {
    let mut last = fd_count(pid);
    let mut stable = 0usize;
    wait_until(Duration::from_secs(5), || {
        let now = fd_count(pid);
        stable = if now == last { stable + 1 } else { 0 };
        last = now;
        stable >= 2
    });
    last
}

fn log_text(t: &Tether) -> String {
    t.log_lines().join("\n")
}

/// `Client::read_response` with an overall limit: a response that has not ended within `limit`
/// fails the test (the socket is shut down under the reading thread); it never hangs it.
fn read_response_within(c: Client, limit: Duration) -> Response {
    let sock = c.stream.try_clone().expect("clone the client socket");
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let mut c = c;
        let _ = tx.send(c.read_response(false));
    });
    match rx.recv_timeout(limit) {
        Ok(r) => r.expect("response"),
        Err(_) => {
            let _ = sock.shutdown(std::net::Shutdown::Both);
            panic!("the response had not ended after {limit:?}");
        }
    }
}

/// The data events of a complete body, as numbers.
fn body_ids(body: &[u8]) -> Vec<u64> {
    let mut parsed = SseReader::parse_body(body);
    std::iter::from_fn(|| parsed.pop_front())
        .filter(|e| e.data.as_deref().is_some_and(|d| !d.is_empty()))
        .map(|e| e.num_id().unwrap())
        .collect()
}

/// Asserts two id sequences are equal; on failure shows where they part, not 1000 numbers.
fn assert_ids(got: &[u64], want: &[u64], what: &str) {
    if got == want {
        return;
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let from = at.saturating_sub(3);
    panic!(
        "{what}: {} ids, want {}; they part at index {at}: got {:?}.. want {:?}..",
        got.len(),
        want.len(),
        &got[from..got.len().min(at + 8)],
        &want[from..want.len().min(at + 8)]
    );
}

// ---- 1. headers at once, no buffering, framing ----------------------------------------------

#[test]
fn head_leaves_at_once_and_events_are_not_held_back() {
    let up = origin();
    // --pass-clean-end: the finite stream's end reaches the client as the last-chunk.
    let t = Tether::start(
        &[url_of(&up)],
        &["--sse-heartbeat", "0", "--pass-clean-end"],
    );
    // The simulator sends its head, stalls 500 ms, then 4 events 200 ms apart.
    let asked = Instant::now();
    let mut s = SseReader::get(
        t.addr,
        "/sse?events=4&rate=5&stall_after=0&stall_ms=500",
        &[],
    );
    let head_after = asked.elapsed();
    assert!(
        head_after < Duration::from_millis(350),
        "the head took {head_after:?} (the upstream sent it at once, then stalled 500 ms)"
    );
    assert_eq!(s.head.status, 200);
    assert!(s
        .head
        .header("content-type")
        .is_some_and(|v| v.starts_with("text/event-stream")));
    assert_eq!(s.head.header("content-length"), None);
    assert_eq!(s.head.header("transfer-encoding"), Some("chunked"));

    let events = s.events_to_end();
    assert_eq!(num_ids(&events), vec![1, 2, 3, 4]);
    assert_eq!(
        s.clean_end,
        Some(true),
        "the body must end with the last-chunk"
    );
    assert_eq!(sse_requests(&up, "stall_ms=500").len(), 1, "no reconnect");
    for w in events.windows(2) {
        let gap = w[1].at.duration_since(w[0].at);
        assert!(
            gap >= Duration::from_millis(100),
            "events {:?} and {:?} arrived {gap:?} apart (sent 200 ms apart)",
            w[0].id,
            w[1].id
        );
    }
    // Event 1 reached the client before the upstream even formatted event 2.
    let first_seen = micros(events[0].at_wall);
    let second_sent = events[1].ts_us().expect("ts_us");
    assert!(
        first_seen < second_sent,
        "event 1 arrived at {first_seen}, after event 2 was sent at {second_sent}"
    );
}

#[test]
fn lone_cr_line_endings_are_not_held_back() {
    // With eol=cr every event ends with "\r\r" at the end of a write: the block is complete
    // (a browser dispatches at that CR); waiting for the next byte delays it by a whole interval.
    // --pass-clean-end: the last event ends the body, so it must leave with the body's end
    // (a block completed by the CR at the very end of a body), not come back through a resume.
    let up = origin();
    let t = Tether::start(
        &[url_of(&up)],
        &["--sse-heartbeat", "0", "--pass-clean-end"],
    );
    // One event a second: a block held back for the next input arrives a whole second late,
    // while a loaded machine (the suite on two cores, under two drivers) may stall a few hundred
    // milliseconds without anything being held back (400 ms intervals failed once that way).
    let mut s = SseReader::get(t.addr, "/sse?events=3&rate=1&eol=cr", &[]);
    let events = s.events_to_end();
    for w in events.windows(2) {
        let seen = micros(w[0].at_wall);
        let next_sent = w[1].ts_us().unwrap();
        assert!(
            seen < next_sent,
            "event {:?} reached the client {} ms after event {:?} was sent: it waited for more input",
            w[0].id,
            (seen - next_sent) / 1000,
            w[1].id
        );
    }
    assert_eq!(
        num_ids(&events),
        vec![1, 2, 3],
        "every event, the last included"
    );
    assert_eq!(s.clean_end, Some(true));
    assert_eq!(
        sse_requests(&up, "eol=cr").len(),
        1,
        "event 3 came from the first body, not from a reconnect"
    );
}

#[test]
fn http10_client_gets_a_close_delimited_stream() {
    let up = origin();
    let t = Tether::start(
        &[url_of(&up)],
        &["--sse-heartbeat", "0", "--pass-clean-end"],
    );
    let mut s = SseReader::open(
        t.addr,
        b"GET /sse?events=3&rate=20 HTTP/1.0\r\nHost: test\r\n\r\n",
    );
    assert_eq!(s.head.status, 200);
    assert_eq!(s.head.header("transfer-encoding"), None);
    assert_eq!(s.head.header("content-length"), None);
    let events = s.events_to_end();
    assert_eq!(num_ids(&events), vec![1, 2, 3]);
    assert_eq!(
        s.clean_end,
        Some(true),
        "the stream ends with the connection"
    );
}

#[test]
fn upstream_content_length_is_dropped_and_the_stream_is_chunked() {
    let up = origin();
    let t = Tether::start(
        &[url_of(&up)],
        &["--sse-heartbeat", "0", "--pass-clean-end"],
    );
    for framing in ["chunked", "close", "length"] {
        let mut s = SseReader::get(
            t.addr,
            &format!("/sse?events=3&rate=10&framing={framing}"),
            &[],
        );
        assert_eq!(
            s.head.header("content-length"),
            None,
            "upstream framing={framing}"
        );
        assert_eq!(
            s.head.header("transfer-encoding"),
            Some("chunked"),
            "upstream framing={framing}"
        );
        let events = s.events_to_end();
        assert_eq!(
            num_ids(&events),
            vec![1, 2, 3],
            "upstream framing={framing}"
        );
        assert_eq!(s.clean_end, Some(true), "upstream framing={framing}");
    }
}

#[test]
fn a_resumed_stream_from_a_content_length_upstream_is_not_cut_short() {
    // The replay adds bytes the upstream's Content-Length does not count: a client that trusts
    // the length loses the tail (and, on keep-alive, reads the rest as the next response).
    // --pass-clean-end: the upstream's end (event 10) ends the response, so the client can read
    // it whole.
    let up = origin();
    let t = Tether::start(
        &[url_of(&up)],
        &["--workers", "1", "--sse-heartbeat", "0", "--pass-clean-end"],
    );
    let path = "/sse?events=10&rate=50&framing=length";
    let mut first = SseReader::get(t.addr, path, &[]);
    first.read_through_id("5");
    drop(first);
    // Resume from 3: the ring supplies 4, 5 (and what it read ahead), the upstream the rest.
    let mut c = Client::connect(t.addr);
    c.send(&sse_request(path, &["Last-Event-ID: 3"])).unwrap();
    let r = read_response_within(c, Duration::from_secs(8));
    assert_eq!(r.status, 200);
    assert_eq!(
        body_ids(&r.body),
        (4..=10).collect::<Vec<u64>>(),
        "framed as {} ({:?}): the client saw only part of the stream",
        r.framing,
        r.header("content-length")
    );

    // Upstream resume splices more bodies into the response than the first one's length counts:
    // the first upstream response is cut (FIN) after 3 events, and so is each resumed one.
    // A short --reconnect-timeout ends the response soon after the last event (when the
    // reconnect after event 10 is not already a final answer).
    let t = Tether::start(
        &[url_of(&up)],
        &["--sse-heartbeat", "0", "--reconnect-timeout", "500ms"],
    );
    let path = "/sse?events=10&rate=50&framing=length&close_after=3&spliced=1";
    let mut c = Client::connect(t.addr);
    c.send(&sse_request(path, &[])).unwrap();
    let r = read_response_within(c, Duration::from_secs(8));
    assert_eq!(r.status, 200);
    assert_eq!(
        (r.framing, r.header("content-length")),
        ("chunked", None),
        "a spliced stream must not carry the first upstream's length"
    );
    assert_eq!(
        body_ids(&r.body),
        (1..=10).collect::<Vec<u64>>(),
        "every event across three resumes, once"
    );
    let asked: Vec<Option<String>> = sse_requests(&up, "spliced=1")
        .into_iter()
        .map(|r| r.last_event_id)
        .collect();
    assert_eq!(
        asked.get(..4),
        Some(&[None, Some("3".into()), Some("6".into()), Some("9".into())][..]),
        "Last-Event-ID of each upstream request"
    );
}

#[test]
fn a_finished_stream_leaves_the_keep_alive_connection_usable() {
    // --pass-clean-end: a finite stream's end is the end of the response.
    let up = origin();
    let t = Tether::start(
        &[url_of(&up)],
        &["--sse-heartbeat", "0", "--pass-clean-end"],
    );
    let mut s = SseReader::get(t.addr, "/sse?events=3&rate=20", &[]);
    assert_eq!(num_ids(&s.events_to_end()), vec![1, 2, 3]);
    // A second stream on the same connection, with a request pipelined behind it.
    let mut raw = sse_request("/sse?events=2&rate=20&second=1", &[]);
    raw.extend_from_slice(b"GET /small HTTP/1.1\r\nHost: test\r\n\r\n");
    let mut s = SseReader::on(s.client, &raw);
    assert_eq!(s.head.status, 200);
    assert_eq!(num_ids(&s.events_to_end()), vec![1, 2]);
    assert_eq!(s.clean_end, Some(true));
    let r = s
        .client
        .read_response(false)
        .expect("the pipelined request's answer");
    assert_eq!((r.status, r.body.len()), (200, 100));
}

#[test]
fn event_stream_media_type_matches_in_any_case_with_parameters() {
    // A scripted origin: odd-case media type with a parameter, Content-Length, then it stays open
    // for 3 s after its body: tether must not wait for it to close.
    let body = b"id: 1\ndata: one\n\nid: 2\ndata: two\n\n";
    let mut resp = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: Text/Event-Stream ; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    resp.extend_from_slice(body);
    let origin = scripted_origin(resp, Duration::from_secs(3));
    // --pass-clean-end: the end of the length-framed body ends the stream (by default tether
    // would reconnect with Last-Event-ID: 2, and this origin answers once).
    let t = Tether::start(&[origin], &["--sse-heartbeat", "0", "--pass-clean-end"]);
    let started = Instant::now();
    let mut s = SseReader::get(t.addr, "/events", &[]);
    assert_eq!(s.head.header("content-length"), None, "relayed as a stream");
    assert_eq!(s.head.header("transfer-encoding"), Some("chunked"));
    let got = s.body_to_end().expect("body");
    assert_eq!(got, body.to_vec());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited for the origin to close"
    );
}

#[test]
fn only_complete_events_are_forwarded_when_the_upstream_dies_mid_event() {
    // A drop is resumed when it can be (sse_resume.rs: the half event never shows); here it must
    // end the client's response, which is the product's behaviour for a stream without ids and
    // for a stream born from a POST.
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &["--sse-heartbeat", "0"]);
    let post = |path: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\
             Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
        )
        .into_bytes()
    };
    let cases = [
        ("GET, no ids", "ids=0&case=noid", false),
        ("POST, with ids", "case=post", true),
    ];
    for (what, params, is_post) in cases {
        let mut direct = SseReader::get(up.addr(), &format!("/sse?events=2&ts=0&{params}"), &[]);
        let expected = direct.body_to_end().unwrap();
        // The same two events, then half of event 3, then FIN.
        let path = format!("/sse?events=5&ts=0&close_after=2&mid_event=1&{params}");
        let mut s = if is_post {
            SseReader::open(t.addr, &post(&path))
        } else {
            SseReader::get(t.addr, &path, &[])
        };
        s.deadline = Instant::now() + Duration::from_secs(5);
        let got = s.body_to_end().expect("body");
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&expected),
            "{what}: exactly the complete events, nothing of the cut one"
        );
        assert_eq!(s.clean_end, Some(true), "{what}");
        let through: Vec<_> = sse_requests(&up, params)
            .into_iter()
            .filter(|r| r.path.contains("close_after"))
            .collect();
        assert_eq!(
            through.len(),
            1,
            "{what}: the drop ended the stream, no reconnect: {through:?}"
        );
    }
}

// ---- 2. byte for byte ------------------------------------------------------------------------

/// Removes the simulator's `: hb` heartbeat blocks (their number depends on timing).
fn without_sim_heartbeats(body: &[u8], eol: &[u8]) -> (Vec<u8>, usize) {
    let hb: Vec<u8> = [b": hb".as_slice(), eol, eol].concat();
    let mut out = Vec::with_capacity(body.len());
    let mut count = 0;
    let mut i = 0;
    while i < body.len() {
        if body[i..].starts_with(&hb) {
            count += 1;
            i += hb.len();
        } else {
            out.push(body[i]);
            i += 1;
        }
    }
    (out, count)
}

/// Fetches `path` directly from the simulator and through tether at the same time; the bodies
/// must be equal byte for byte (heartbeat blocks compared separately, their count is timing), except
/// the stream's leading BOM, which tether's framer strips (notes/sse.md rule 1; framer.rs rule 11:
/// "bytes are forwarded untouched (BOM of rule 1 excepted)"): a client strips it anyway, and a
/// BOM must never reach a client in the middle of a spliced or replayed body.
///
/// `--pass-clean-end`: the finite stream's end is the body's end on both sides.
fn byte_for_byte(eol_name: &str, eol: &[u8]) {
    let up = origin();
    let t = Tether::start(
        &[url_of(&up)],
        &["--sse-heartbeat", "0", "--pass-clean-end"],
    );
    let path = format!(
        "/sse?events=5&rate=8&ts=0&size=48&bom=1&prime=1&retry=3000&heartbeat_ms=50&eol={eol_name}"
    );
    let direct_addr = up.addr();
    let p = path.clone();
    let direct = thread::spawn(move || SseReader::get(direct_addr, &p, &[]).body_to_end());
    let mut s = SseReader::get(t.addr, &path, &[]);
    let through = s.body_to_end().expect("body through tether");
    let direct = direct.join().unwrap().expect("body from the simulator");
    assert!(direct.starts_with(BOM), "the simulator sent a BOM");
    assert!(
        !through.starts_with(BOM),
        "the framer strips the BOM at offset 0"
    );
    let (direct_events, direct_hb) = without_sim_heartbeats(&direct[BOM.len()..], eol);
    let (through_events, through_hb) = without_sim_heartbeats(&through, eol);
    assert!(direct_hb > 0, "the simulator sent heartbeats");
    assert!(
        through_hb > 0,
        "upstream comment blocks are forwarded: {:?}",
        String::from_utf8_lossy(&through)
    );
    assert_eq!(
        String::from_utf8_lossy(&through_events),
        String::from_utf8_lossy(&direct_events),
        "eol={eol_name}: tether's body differs from the upstream's"
    );
    assert_eq!(s.clean_end, Some(true));
    assert_eq!(
        sse_requests(&up, &format!("eol={eol_name}")).len(),
        2,
        "one request direct, one through tether: no reconnect"
    );
}

#[test]
fn byte_for_byte_lf() {
    byte_for_byte("lf", b"\n");
}

#[test]
fn byte_for_byte_crlf() {
    byte_for_byte("crlf", b"\r\n");
}

#[test]
fn byte_for_byte_cr() {
    byte_for_byte("cr", b"\r");
}

// ---- 3. heartbeat ----------------------------------------------------------------------------

#[test]
fn heartbeat_comments_fill_the_silence() {
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &["--sse-heartbeat", "200ms"]);
    let mut s = SseReader::get(t.addr, "/sse?events=2&rate=1", &[]);
    // Up to event 2 (the stream is resumed after it, with heartbeats all along: no end to wait for).
    let mut blocks = Vec::new();
    while blocks
        .last()
        .is_none_or(|b: &SseEvent| b.id.as_deref() != Some("2"))
    {
        blocks.push(
            s.next_block()
                .expect("stream")
                .unwrap_or_else(|| panic!("the stream ended before event 2: {blocks:?}")),
        );
    }
    let first = blocks
        .iter()
        .position(|b| b.id.as_deref() == Some("1"))
        .expect("event 1");
    let second = blocks
        .iter()
        .position(|b| b.id.as_deref() == Some("2"))
        .expect("event 2");
    let between = &blocks[first + 1..second];
    assert!(
        (3..=5).contains(&between.len())
            && between
                .iter()
                .all(|b| b.is_comment_only() && b.comments == vec![" keep-alive".to_string()]),
        "expected ~4 `: keep-alive` comments in the 1 s between the events, got {between:?}"
    );
    let text = String::from_utf8_lossy(&s.body).into_owned();
    assert!(text.contains(": keep-alive\n\n"));
    for w in between.windows(2) {
        let gap = w[1].at.duration_since(w[0].at);
        assert!(
            gap >= Duration::from_millis(120),
            "heartbeats {gap:?} apart"
        );
    }
}

// ---- 4. slow client --------------------------------------------------------------------------

#[test]
// A stream with one client is paced, not cut, when its client reads slowly (backpressure: the
// upstream is not read while the client's queue is above a small mark; issue 9). A client that
// takes no bytes at all is cut by --send-timeout, and nobody else waits for it meanwhile.
fn a_client_that_takes_nothing_is_cut_by_the_send_timeout_while_another_keeps_receiving() {
    let up = origin();
    // --pass-clean-end: the fast client's finite stream ends with its last event.
    let t = Tether::start(
        &[url_of(&up)],
        &[
            "--send-timeout",
            "2s",
            "--sse-heartbeat",
            "0",
            "--pass-clean-end",
        ],
    );
    // The slow client never reads.
    let mut slow = Client::connect(t.addr);
    slow.send(&sse_request("/sse?events=0&size=4000&who=slow", &[]))
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || up
            .requests()
            .iter()
            .any(|r| r.path.contains("who=slow"))),
        "the slow client's stream never reached the upstream"
    );

    // The fast client, on another stream, meanwhile: 1000 events in 1 s, and it keeps up.
    let started = Instant::now();
    let mut fast = SseReader::get(t.addr, "/sse?events=1000&rate=1000&size=200&who=fast", &[]);
    let events = fast.events_to_end();
    let took = started.elapsed();
    assert_ids(
        &num_ids(&events),
        &(1..=1000).collect::<Vec<u64>>(),
        &format!("the fast client's stream\n{}", log_text(&t)),
    );
    assert_eq!(fast.clean_end, Some(true));
    assert!(
        took < Duration::from_secs(3),
        "the fast client took {took:?} for a 1 s stream"
    );

    assert!(
        wait_until(Duration::from_secs(10), || log_has(&t, "took no bytes")),
        "no 'took no bytes' log line:\n{}",
        log_text(&t)
    );
    assert!(
        !t.log_lines()
            .iter()
            .any(|l| l.contains("took no bytes") && l.contains("who=fast")),
        "the fast client was cut off:\n{}",
        log_text(&t)
    );
    // The slow client's connection ends: what was queued, then EOF or RST.
    slow.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut tmp = vec![0u8; 256 * 1024];
    let mut drained = 0usize;
    let ended = loop {
        match slow.stream.read(&mut tmp) {
            Ok(0) => break Ok("EOF"),
            Ok(n) if Instant::now() < deadline => drained += n,
            Ok(_) => break Err("still receiving after 10 s".to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break Ok("RST"),
            Err(e) => break Err(format!("{e} (no EOF, no RST)")),
        }
    };
    assert!(
        ended.is_ok(),
        "the slow client's connection was not ended: {ended:?} after {drained} bytes\n{}",
        log_text(&t)
    );
}

// ---- 5. client gone: no fd left behind -------------------------------------------------------

#[test]
fn disconnected_clients_leave_no_fd_and_no_upstream_connection() {
    let up = origin();
    let up_port = up.addr().port();
    let t = Tether::start(&[url_of(&up)], &["--sse-heartbeat", "0"]);
    let baseline = settled_fd_count(t.pid());
    assert!(baseline > 0, "cannot read /proc/{}/fd", t.pid());

    // 20 busy streams (an event every 50 ms: the gone client shows up on a write) and 10 quiet
    // ones (the next event is 2 s away: the gone client must be noticed on the client socket).
    let mut readers = Vec::new();
    for i in 0..20 {
        let mut s = SseReader::get(t.addr, &format!("/sse?events=0&rate=20&busy={i}"), &[]);
        s.read_through_id("2");
        readers.push(s);
    }
    for i in 0..10 {
        let mut s = SseReader::get(t.addr, &format!("/sse?events=0&rate=0.5&quiet={i}"), &[]);
        s.read_through_id("1");
        readers.push(s);
    }
    let busy = fd_count(t.pid());
    assert!(
        busy >= baseline + 60,
        "30 streams should hold 60 fds: baseline {baseline}, now {busy}"
    );
    assert_eq!(established_to_port(up_port), 30);
    drop(readers);
    let left = Instant::now();

    // Promptly: both busy and quiet streams notice within a second (measured: ~50-100 ms).
    let settled = wait_until(Duration::from_secs(1), || fd_count(t.pid()) <= baseline + 2);
    assert!(
        settled,
        "fds: baseline {baseline}, with 30 streams {busy}, {:?} after the clients left {}",
        left.elapsed(),
        fd_count(t.pid())
    );
    assert!(
        wait_until(Duration::from_secs(1), || established_to_port(up_port) == 0),
        "{} upstream connections still open 1 s after their clients left",
        established_to_port(up_port)
    );
}

/// The same while tether is reconnecting: an upstream that accepts and never answers keeps each
/// reconnect attempt waiting for a head (--upstream-header-timeout, 60 s by default) with nothing
/// written to the client (heartbeats off): a client that leaves meanwhile must still be noticed.
#[test]
fn clients_that_leave_while_tether_reconnects_leave_no_fd_and_no_upstream_connection() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let up = origin();
    let up_addr = up.addr();
    let t = Tether::start(&[url_of(&up)], &["--sse-heartbeat", "0"]);
    let baseline = settled_fd_count(t.pid());
    let mut readers = Vec::new();
    for i in 0..5 {
        let mut s = SseReader::get(t.addr, &format!("/sse?events=0&rate=20&hung={i}"), &[]);
        s.read_through_id("2");
        readers.push(s);
    }
    up.kill();
    let mute = std::net::TcpListener::bind(up_addr).expect("take over the simulator's port");
    mute.set_nonblocking(true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_mute = stop.clone();
    let muted = thread::spawn(move || {
        let mut held = Vec::new();
        let until = Instant::now() + Duration::from_secs(10);
        while !stop_mute.load(Ordering::Relaxed) && Instant::now() < until {
            match mute.accept() {
                Ok((s, _)) => held.push(s),
                // A non-blocking accept polled until the test ends: pacing, not synchronisation.
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
        held.len()
    });
    let port = up_addr.port();
    assert!(
        wait_until(Duration::from_secs(5), || established_to_port(port) == 5),
        "the 5 streams' reconnect attempts are not all waiting on the mute origin: {}\n{}",
        established_to_port(port),
        log_text(&t)
    );
    let busy = fd_count(t.pid());
    drop(readers);
    let left = Instant::now();
    let settled = wait_until(Duration::from_secs(1), || fd_count(t.pid()) <= baseline + 2);
    let (fds, waited) = (fd_count(t.pid()), left.elapsed());
    let upstream_left = wait_until(Duration::from_secs(1), || established_to_port(port) == 0);
    stop.store(true, Ordering::Relaxed);
    let _ = muted.join();
    assert!(
        settled,
        "fds: baseline {baseline}, reconnecting {busy}, {waited:?} after the clients left {fds}"
    );
    assert!(
        upstream_left,
        "{} reconnect attempts still open 1 s after their clients left",
        established_to_port(port)
    );
}

// ---- 6. replay exact -------------------------------------------------------------------------

/// `--pass-clean-end`: the resumed response ends with event 30, and no reconnect of tether's own
/// adds upstream requests.
fn replay_exact(resume: &str) {
    let up = origin();
    let t = Tether::start(
        &[url_of(&up)],
        &["--workers", "1", "--sse-heartbeat", "0", "--pass-clean-end"],
    );
    let path = format!("/sse?events=30&rate=50&resume={resume}");
    let mut first = SseReader::get(t.addr, &path, &[]);
    let seen = first.read_through_id("5");
    assert_eq!(num_ids(&seen), vec![1, 2, 3, 4, 5]);
    drop(first);

    let mut again = SseReader::get(t.addr, &path, &["Last-Event-ID: 5"]);
    assert_eq!(again.head.status, 200);
    let rest = again.events_to_end();
    assert_eq!(
        num_ids(&rest),
        (6..=30).collect::<Vec<u64>>(),
        "resume={resume}: events after 5, each once, in order"
    );
    assert_eq!(again.clean_end, Some(true));

    let reqs = sse_requests(&up, "events=30");
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[0].last_event_id, None);
    let asked: u64 = reqs[1]
        .last_event_id
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("tether asked the upstream with {:?}", reqs[1].last_event_id));
    assert!(
        (5..=30).contains(&asked),
        "tether asked the upstream to resume from {asked} (the newest id its ring holds)"
    );
}

#[test]
fn replay_is_exact_when_the_upstream_honours_last_event_id() {
    replay_exact("honour");
}

#[test]
fn replay_is_exact_when_the_upstream_ignores_last_event_id() {
    replay_exact("ignore");
}

// ---- 7. identity isolation -------------------------------------------------------------------

#[test]
fn another_identity_never_gets_events_from_the_ring() {
    // --pass-clean-end: each response ends with event 10, and the upstream requests counted are
    // the clients' own.
    let up = origin();
    let t = Tether::start(
        &[url_of(&up)],
        &["--workers", "1", "--sse-heartbeat", "0", "--pass-clean-end"],
    );
    let cases: [(&str, &str, &str); 4] = [
        (
            "auth",
            "Authorization: Bearer alice",
            "Authorization: Bearer mallory",
        ),
        ("cookie", "Cookie: session=alice", "Cookie: session=mallory"),
        (
            "mcp",
            "Mcp-Session-Id: alice-1",
            "Mcp-Session-Id: mallory-1",
        ),
        ("anon", "Authorization: Bearer alice", "X-Nothing: 1"),
    ];
    for (tag, owner, other) in cases {
        let path = format!("/sse?events=10&rate=50&resume=ignore&case={tag}");
        let mut first = SseReader::get(t.addr, &path, &[owner]);
        assert_eq!(num_ids(&first.read_through_id("5")), vec![1, 2, 3, 4, 5]);
        drop(first);

        let mut intruder = SseReader::get(t.addr, &path, &[other, "Last-Event-ID: 5"]);
        let got = intruder.events_to_end();
        assert_eq!(
            num_ids(&got),
            (1..=10).collect::<Vec<u64>>(),
            "{tag}: another identity must get the upstream's own answer (from 1 with resume=ignore)"
        );
        let reqs = sse_requests(&up, &format!("case={tag}"));
        assert_eq!(reqs.len(), 2, "{tag}: {reqs:?}");
        assert_eq!(
            reqs[1].last_event_id.as_deref(),
            Some("5"),
            "{tag}: the client's own Last-Event-ID goes upstream unchanged"
        );

        // Control: the owner itself resumes from the ring.
        let mut owner_again = SseReader::get(t.addr, &path, &[owner, "Last-Event-ID: 5"]);
        assert_eq!(
            num_ids(&owner_again.events_to_end()),
            (6..=10).collect::<Vec<u64>>(),
            "{tag}: the owner resumes exactly"
        );
    }
}

// ---- 8. unknown id ---------------------------------------------------------------------------

#[test]
fn an_unknown_or_evicted_id_goes_upstream_unchanged() {
    let up = origin();
    let t = Tether::start(
        &[url_of(&up)],
        &[
            "--workers",
            "1",
            "--replay-events",
            "5",
            "--sse-heartbeat",
            "0",
            // Each response ends with event 20; the upstream requests are the clients' own.
            "--pass-clean-end",
        ],
    );
    let path = "/sse?events=20&rate=200";
    let mut first = SseReader::get(t.addr, path, &[]);
    assert_eq!(
        num_ids(&first.events_to_end()),
        (1..=20).collect::<Vec<u64>>()
    );
    drop(first);

    let mut nope = SseReader::get(t.addr, path, &["Last-Event-ID: nope"]);
    assert_eq!(
        num_ids(&nope.events_to_end()),
        (1..=20).collect::<Vec<u64>>(),
        "an id the simulator cannot parse starts the stream over"
    );
    // Id 2 was evicted from a ring of 5: the upstream decides.
    let mut evicted = SseReader::get(t.addr, path, &["Last-Event-ID: 2"]);
    assert_eq!(
        num_ids(&evicted.events_to_end()),
        (3..=20).collect::<Vec<u64>>()
    );

    let reqs = sse_requests(&up, "events=20");
    let sent: Vec<Option<&str>> = reqs.iter().map(|r| r.last_event_id.as_deref()).collect();
    assert_eq!(sent, vec![None, Some("nope"), Some("2")]);
}

// ---- 9. reconnects across workers ------------------------------------------------------------

/// `cycles` reconnections of one client to one stream, reading `per_cycle` events each: every
/// connection must continue exactly after the id the client last saw.
fn reconnect_cycles(
    t: &Tether,
    up: &tether_perf::UpstreamHandle,
    path: &str,
    cycles: usize,
    per_cycle: u64,
) {
    let mut last = 0u64;
    for cycle in 0..=cycles {
        let header = format!("Last-Event-ID: {last}");
        let extra: Vec<&str> = if cycle == 0 { vec![] } else { vec![&header] };
        let mut s = SseReader::get(t.addr, path, &extra);
        assert_eq!(s.head.status, 200, "cycle {cycle}");
        let mut got = Vec::new();
        while (got.len() as u64) < per_cycle {
            match s.next_event() {
                Ok(Some(ev)) => got.push(ev),
                other => panic!(
                    "cycle {cycle} (after id {last}): stream stopped with {other:?}, got {:?}",
                    ids(&got)
                ),
            }
        }
        let want: Vec<u64> = (last + 1..=last + per_cycle).collect();
        if num_ids(&got) != want {
            let asked: Vec<Option<String>> =
                up.requests().into_iter().map(|r| r.last_event_id).collect();
            panic!(
                "cycle {cycle}: reconnected with Last-Event-ID {last}, got {:?}, want {want:?}\n\
                 Last-Event-ID of each upstream request: {asked:?}\n{}",
                num_ids(&got),
                log_text(t)
            );
        }
        last += per_cycle;
    }
}

#[test]
fn reconnects_landing_on_other_workers_resume_exactly() {
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &["--workers", "2", "--sse-heartbeat", "0"]);
    reconnect_cycles(&t, &up, "/sse?events=0&rate=200&cw=honour", 30, 3);
    assert!(
        !log_has(&t, "did not answer"),
        "a replay query timed out:\n{}",
        log_text(&t)
    );
}

#[test]
fn reconnects_landing_on_other_workers_resume_exactly_on_a_fast_stream() {
    // An event every millisecond: the previous connection's relay is still reading ahead
    // (and recording) while the reconnection is planned and started.
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &["--workers", "2", "--sse-heartbeat", "0"]);
    reconnect_cycles(&t, &up, "/sse?events=0&rate=1000&cw=fast", 100, 3);
}

#[test]
fn reconnects_on_one_worker_resume_exactly_on_a_fast_stream() {
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &["--workers", "1", "--sse-heartbeat", "0"]);
    reconnect_cycles(&t, &up, "/sse?events=0&rate=1000&one=fast", 100, 3);
}

#[test]
fn reconnects_across_workers_resume_exactly_when_the_upstream_ignores_ids() {
    // resume=ignore: every reconnection's upstream starts over at 1, and tether must drop
    // everything the client already has, whichever worker's ring it plans from.
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &["--workers", "2", "--sse-heartbeat", "0"]);
    reconnect_cycles(
        &t,
        &up,
        "/sse?events=0&rate=200&resume=ignore&cw=ignore",
        15,
        2,
    );
}

#[test]
fn reconnects_on_one_worker_resume_exactly_when_the_upstream_ignores_ids_on_a_fast_stream() {
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &["--workers", "1", "--sse-heartbeat", "0"]);
    reconnect_cycles(
        &t,
        &up,
        "/sse?events=0&rate=1000&resume=ignore&one=ignore",
        30,
        2,
    );
}

/// Two tabs of one anonymous user share a stream (and its ring) on one worker: one reads on,
/// the other drops and reconnects; both must see every event exactly once, in order.
#[test]
fn two_clients_of_one_stream_on_one_worker_both_stay_exact() {
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &["--workers", "1", "--sse-heartbeat", "0"]);
    let path = "/sse?events=0&rate=1000&size=32&tabs=2";
    let addr = t.addr;
    let steady = thread::spawn(move || {
        let mut s = SseReader::get(addr, path, &[]);
        let mut got = Vec::new();
        while got.len() < 1500 {
            match s.next_event() {
                Ok(Some(ev)) => got.push(ev.num_id().unwrap()),
                _ => break,
            }
        }
        got
    });
    // The steady tab's stream is open before the second tab starts.
    assert!(
        wait_until(Duration::from_secs(5), || up
            .requests()
            .iter()
            .any(|r| r.path.contains("tabs=2"))),
        "the steady tab's stream never reached the upstream"
    );

    let mut tab = SseReader::get(t.addr, path, &[]);
    assert_eq!(num_ids(&tab.read_through_id("5")), vec![1, 2, 3, 4, 5]);
    drop(tab);
    let mut tab = SseReader::get(t.addr, path, &["Last-Event-ID: 5"]);
    let mut got = Vec::new();
    while got.len() < 300 {
        got.push(tab.next_event().unwrap().expect("event"));
    }
    drop(tab);
    assert_ids(
        &num_ids(&got),
        &(6..=305).collect::<Vec<u64>>(),
        "the reconnected tab, from the ring then live",
    );
    // A third reconnection from 5 replays the whole ring the two relays have written.
    let mut tab = SseReader::get(t.addr, path, &["Last-Event-ID: 5"]);
    let mut got = Vec::new();
    while got.len() < 600 {
        got.push(tab.next_event().unwrap().expect("event"));
    }
    assert_ids(
        &num_ids(&got),
        &(6..=605).collect::<Vec<u64>>(),
        "a reconnection after the two relays shared the ring",
    );
    let steady = steady.join().unwrap();
    assert_ids(
        &steady,
        &(1..=1500).collect::<Vec<u64>>(),
        "the tab that never left",
    );
}

// ---- 10. --assign-ids ------------------------------------------------------------------------

#[test]
fn assigned_ids_let_clients_resume_from_the_ring() {
    let up = origin();
    let t = Tether::start(
        &[url_of(&up)],
        &["--workers", "1", "--assign-ids", "--sse-heartbeat", "0"],
    );
    let path = "/sse?events=0&rate=50&ids=0";
    let mut first = SseReader::get(t.addr, path, &[]);
    let mut seen = Vec::new();
    while seen.len() < 7 {
        seen.push(first.next_event().unwrap().expect("event"));
    }
    drop(first);
    let seqs: Vec<u64> = seen.iter().map(|e| e.seq().unwrap()).collect();
    assert_eq!(seqs, vec![1, 2, 3, 4, 5, 6, 7]);
    let assigned: Vec<String> = seen
        .iter()
        .map(|e| e.id.clone().expect("tether assigned an id"))
        .collect();
    let unique: HashSet<&String> = assigned.iter().collect();
    assert_eq!(unique.len(), 7, "assigned ids are distinct: {assigned:?}");

    // Reconnect as a client that missed events 6 and 7: the ring holds them.
    let resume_id = &assigned[4];
    let mut again = SseReader::get(t.addr, path, &[&format!("Last-Event-ID: {resume_id}")]);
    let mut got = Vec::new();
    while got.len() < 4 {
        got.push(again.next_event().unwrap().expect("event"));
    }
    assert_eq!(
        got[..2]
            .iter()
            .map(|e| (e.id.clone().unwrap(), e.seq().unwrap()))
            .collect::<Vec<_>>(),
        vec![(assigned[5].clone(), 6), (assigned[6].clone(), 7)],
        "the ring's events after {resume_id}, with the ids the client saw"
    );
    // Live events go on with fresh ids.
    for e in &got[2..] {
        let id = e.id.clone().expect("live events get ids");
        assert!(!assigned.contains(&id), "id {id} was used before");
    }
}

#[test]
fn ids_tether_assigned_are_never_sent_upstream() {
    // The upstream issued no ids: a Last-Event-ID tether made up means nothing to it (and tells
    // it tether's worker numbering). Its client would have sent none; tether must send none.
    let up = origin();
    let t = Tether::start(
        &[url_of(&up)],
        &["--workers", "1", "--assign-ids", "--sse-heartbeat", "0"],
    );
    // Every upstream connection ends (FIN) after 10 events: the second one's end is where an
    // upstream resume would send a Last-Event-ID.
    let path = "/sse?events=0&rate=50&ids=0&leak=1&close_after=10";
    let mut first = SseReader::get(t.addr, path, &[]);
    let mut seen = Vec::new();
    while seen.len() < 5 {
        seen.push(first.next_event().unwrap().expect("event"));
    }
    drop(first);
    let last = seen[4].id.clone().expect("assigned id");
    let mut again = SseReader::get(t.addr, path, &[&format!("Last-Event-ID: {last}")]);
    again.next_event().unwrap().expect("event");
    let reqs = sse_requests(&up, "leak=1");
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[1].last_event_id, None,
        "tether sent the upstream an id only tether ever issued"
    );

    // The client's cursor is now an id tether assigned (it came back with one, and the replay
    // continued it). When this upstream drops, the stream has no id of the upstream's own: it is
    // not resumed (--resume-without-id is off), its response ends after the last whole event,
    // and no request carries tether's id.
    again.deadline = Instant::now() + Duration::from_secs(5);
    let rest = again.events_to_end();
    assert_eq!(again.clean_end, Some(true));
    assert_eq!(
        rest.last().and_then(SseEvent::seq),
        Some(10),
        "the dropped upstream's events up to the last whole one"
    );
    let sent: Vec<Option<String>> = sse_requests(&up, "leak=1")
        .into_iter()
        .map(|r| r.last_event_id)
        .collect();
    assert_eq!(
        sent,
        vec![None, None],
        "Last-Event-ID of each upstream request: a resume sent tether's own id upstream\n{}",
        log_text(&t)
    );
}

// ---- upstream down (notes/sse.md: never answer a reconnecting EventSource with 5xx) ----------

#[test]
fn a_reconnect_from_the_ring_while_the_upstream_is_down_gets_no_5xx() {
    // With upstream resume, the client's reconnection is served like any dropped stream: its
    // replay from the ring at once, then the open stream while tether reconnects behind it, and
    // the upstream's events when it is back, exactly after the last one the client got.
    let up = origin();
    let up_addr = up.addr();
    let t = Tether::start(
        &[url_of(&up)],
        &["--workers", "1", "--sse-heartbeat", "200ms"],
    );
    let path = "/sse?events=0&rate=50";
    let mut first = SseReader::get(t.addr, path, &[]);
    first.read_through_id("8");
    drop(first);
    up.kill();
    assert!(
        wait_until(Duration::from_secs(5), || std::net::TcpStream::connect(
            up_addr
        )
        .is_err()),
        "the killed upstream still accepts connections"
    );

    let mut c = Client::connect(t.addr);
    c.stream.set_read_timeout(Some(SSE_READ_TIMEOUT)).unwrap();
    c.send(&sse_request(path, &["Last-Event-ID: 5"])).unwrap();
    let head = c.read_head().unwrap_or_else(|e| {
        panic!(
            "no answer to a reconnection whose events are in the ring ({e})\n{}",
            log_text(&t)
        )
    });
    assert!(
        head.status == 200
            && head
                .header("content-type")
                .is_some_and(|v| v.starts_with("text/event-stream")),
        "a reconnecting EventSource got {} {:?}: it gives up for good\n{}",
        head.status,
        head.headers,
        log_text(&t)
    );
    // The head is read: go on with the same bytes as an SSE reader (nothing was consumed but it).
    let mut s = SseReader::continue_after_head(c, head);
    s.deadline = Instant::now() + Duration::from_secs(10);
    let replayed = s.read_through_id("8");
    assert_eq!(
        num_ids(&replayed),
        vec![6, 7, 8],
        "the replay, from the ring"
    );

    // The stream stays open (heartbeats) while the upstream is down. Events that come before
    // are what the first relay read ahead into the ring, after 8.
    let mut after = Vec::new();
    let mut hb = 0;
    while hb < 2 {
        let b = s
            .next_block()
            .unwrap_or_else(|e| panic!("the stream went silent while the upstream is down: {e}"))
            .expect("the stream ended while the upstream is down");
        if b.is_comment_only() {
            hb += 1;
        } else if b.data.as_deref().is_some_and(|d| !d.is_empty()) {
            after.push(b);
        }
    }

    // The upstream comes back on the same port: the stream goes on exactly.
    let up = tether_perf::spawn(tether_perf::UpstreamConfig {
        bind: up_addr,
        ..Default::default()
    })
    .expect("restart the simulator on the same port");
    while after.len() < 5 {
        match s.next_event() {
            Ok(Some(ev)) => after.push(ev),
            other => panic!(
                "no events after the upstream came back: {other:?}, got {:?}\n{}",
                ids(&after),
                log_text(&t)
            ),
        }
    }
    assert_eq!(
        num_ids(&after[..5]),
        (9..14).collect::<Vec<u64>>(),
        "events after the replay, once, in order"
    );
    let resumed: Vec<Option<String>> = up.requests().into_iter().map(|r| r.last_event_id).collect();
    let from: u64 = resumed
        .first()
        .cloned()
        .flatten()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("tether's reconnect asked {resumed:?}"));
    assert!(
        (8..13).contains(&from),
        "tether resumed the upstream after id {from}, not after the ring's newest"
    );
}

// ---- 11. --sse-max-event-bytes ---------------------------------------------------------------

#[test]
fn an_event_over_the_limit_ends_the_stream_after_the_last_complete_one() {
    let up = origin();
    let t = Tether::start(
        &[url_of(&up)],
        &["--sse-max-event-bytes", "1000", "--sse-heartbeat", "0"],
    );
    let mut s = SseReader::get(t.addr, "/sse?events=3&size=5000&retry=3000&prime=1", &[]);
    let body = s.body_to_end().expect("the response ends");
    assert_eq!(s.clean_end, Some(true));
    assert_eq!(
        String::from_utf8_lossy(&body),
        "retry: 3000\n\nid: 0\ndata:\n\n",
        "the blocks before the oversized event, nothing of it"
    );
    assert!(
        wait_until(Duration::from_secs(2), || log_has(
            &t,
            "--sse-max-event-bytes"
        )),
        "no log line says why:\n{}",
        log_text(&t)
    );
}

#[test]
fn an_event_over_the_limit_ends_the_stream_without_waiting_for_the_upstream() {
    let mut body = b"id: 1\ndata: small\n\nid: 2\ndata: ".to_vec();
    body.extend(std::iter::repeat_n(b'x', 5000));
    body.extend_from_slice(b"\n\nid: 3\ndata: after\n\n");
    let mut resp =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n".to_vec();
    resp.extend_from_slice(&body);
    // The origin keeps its connection open for 3 s after writing.
    let origin = scripted_origin(resp, Duration::from_secs(3));
    let t = Tether::start(
        &[origin],
        &["--sse-max-event-bytes", "1000", "--sse-heartbeat", "0"],
    );
    let started = Instant::now();
    let mut s = SseReader::get(t.addr, "/events", &[]);
    let got = s.body_to_end().expect("the response ends");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited for the origin"
    );
    assert_eq!(s.clean_end, Some(true));
    assert_eq!(String::from_utf8_lossy(&got), "id: 1\ndata: small\n\n");
    assert!(wait_until(Duration::from_secs(2), || log_has(
        &t,
        "--sse-max-event-bytes"
    )));
}

/// Issue 11: MCP tool results and model outputs exceed 1 MiB; the default limit lets them through.
#[test]
fn a_one_and_a_half_mib_event_passes_with_the_defaults() {
    let up = origin();
    let t = Tether::start(
        &[url_of(&up)],
        &["--sse-heartbeat", "0", "--pass-clean-end"],
    );
    let mut s = SseReader::get(t.addr, "/sse?events=2&size=1500000&prime=0", &[]);
    let events: Vec<SseEvent> = s
        .events_to_end()
        .into_iter()
        .filter(|e| !e.is_comment_only())
        .collect();
    assert_eq!(
        s.clean_end,
        Some(true),
        "the stream ends as the upstream ended it"
    );
    assert_eq!(events.len(), 2, "both events, whole");
    for e in &events {
        let len = e.data.as_ref().map_or(0, String::len);
        assert!(len >= 1_500_000, "an event of {len} bytes");
    }
}

/// An origin whose i-th connection (in accept order) is handed, after its request head was read,
/// to `handlers[i]`; each runs in its own thread. Stops accepting after the last handler or 10 s.
fn origin_per_connection(handlers: Vec<Box<dyn FnOnce(std::net::TcpStream) + Send>>) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for handler in handlers {
            let Ok((mut s, _)) = l.accept() else { return };
            thread::spawn(move || {
                if read_request_head(&mut s) {
                    handler(s);
                }
            });
        }
    });
    format!("http://{addr}")
}

/// The head and first event of an origin's SSE answer, then `partial` bytes of an event's data
/// that is not finished yet (close-delimited body: no chunk framing to get in the way).
fn unfinished_event(partial: usize) -> Vec<u8> {
    let mut out =
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\nid: 1\ndata: first\n\ndata: "
            .to_vec();
    out.extend(std::iter::repeat_n(b'x', partial));
    out
}

/// Issue 11: what unfinished events hold is bounded per worker (--sse-partial-memory). Stream A
/// holds 1.5 MB of an open event; stream B's open event (2.8 MB) takes the worker past its 4 MiB
/// share whatever the buffers' growth (A holds 1.5-3 MB, B 2.8-5.6 MB): B is ended cleanly after
/// its last whole event, A is untouched and gets its event whole when the origin finishes it.
#[test]
fn unfinished_events_past_the_worker_share_end_the_stream_that_crossed_it() {
    use std::io::Write;
    use std::sync::mpsc;
    let (finish_a, finish_a_rx) = mpsc::channel::<()>();
    let handlers: Vec<Box<dyn FnOnce(std::net::TcpStream) + Send>> = vec![
        Box::new(move |mut s| {
            let _ = s.write_all(&unfinished_event(1_500_000));
            // Finishes A's event only when the test says so (after B was cut).
            let _ = finish_a_rx.recv_timeout(Duration::from_secs(10));
            let _ = s.write_all(b"\n\nid: 3\ndata: end\n\n");
            thread::sleep(Duration::from_secs(2));
        }),
        Box::new(|mut s| {
            let _ = s.write_all(&unfinished_event(2_800_000));
            thread::sleep(Duration::from_secs(5));
        }),
    ];
    let origin = origin_per_connection(handlers);
    let t = Tether::start(
        &[origin],
        &[
            "--workers",
            "1",
            "--sse-partial-memory",
            "4MiB",
            "--sse-heartbeat",
            "0",
            "--reconnect-timeout",
            "1s",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let mut a = SseReader::get(t.addr, "/a", &[]);
    let first = a.next_event().expect("A reads").expect("A's first event");
    assert_eq!(first.id.as_deref(), Some("1"));
    // All of A's open event is in tether before B starts (else A's growth could be the one that
    // crosses the share): tether's gauge shows it.
    let admin = t.admin_addr();
    assert!(
        wait_until(Duration::from_secs(5), || {
            prom_value(&Tether::metrics_text(admin), "tether_sse_partial_bytes")
                .is_some_and(|v| v >= 1_500_000.0)
        }),
        "tether never held A's unfinished event:\n{}",
        Tether::metrics_text(admin)
    );
    let mut b = SseReader::get(t.addr, "/b", &[]);
    let body_b = b.body_to_end().expect("B's response ends");
    assert_eq!(b.clean_end, Some(true), "B ended cleanly");
    assert_eq!(
        String::from_utf8_lossy(&body_b),
        "id: 1\ndata: first\n\n",
        "B got its whole events and nothing of the open one"
    );
    assert!(
        wait_until(Duration::from_secs(2), || log_has(
            &t,
            "--sse-partial-memory"
        )),
        "no log line says why:\n{}",
        log_text(&t)
    );
    finish_a.send(()).unwrap();
    let big = a.next_event().expect("A reads").expect("A's big event");
    assert_eq!(
        big.data.as_ref().map_or(0, String::len),
        1_500_000,
        "A's event arrived whole"
    );
    let end = a.next_event().expect("A reads").expect("A's last event");
    assert_eq!(end.id.as_deref(), Some("3"));
}

// ---- 12. resume where it meets the relay -----------------------------------------------------

#[test]
fn reconnects_that_bring_only_a_retry_block_are_no_progress() {
    // The simulator opens every response with its prelude (a `retry:` block and a priming
    // `id: N` block), the answer to a reconnect after the stream's last event too: that answer
    // holds no new event. Tether must back off and give up after --reconnect-timeout (ending the
    // response cleanly), not reconnect at once in a loop, forwarding and recording a `retry:`
    // block each time.
    let up = origin();
    let t = Tether::start(
        &[url_of(&up)],
        &[
            "--sse-heartbeat",
            "0",
            "--reconnect-timeout",
            "1s",
            "--reconnect-max-delay",
            "200ms",
        ],
    );
    let started = Instant::now();
    let mut s = SseReader::get(
        t.addr,
        "/sse?events=3&rate=50&retry=100&prime=1&prelude=1",
        &[],
    );
    s.deadline = started + Duration::from_secs(6);
    let mut blocks = Vec::new();
    loop {
        match s.next_block() {
            Ok(Some(b)) => blocks.push(b),
            Ok(None) => break,
            Err(e) => panic!(
                "{e}: {} blocks, {} upstream requests",
                blocks.len(),
                sse_requests(&up, "prelude=1").len()
            ),
        }
    }
    let took = started.elapsed();
    assert_eq!(s.clean_end, Some(true));
    let events: Vec<u64> = blocks
        .iter()
        .filter(|b| b.data.as_deref().is_some_and(|d| !d.is_empty()))
        .map(|b| b.num_id().unwrap())
        .collect();
    assert_eq!(events, vec![1, 2, 3]);
    let requests = sse_requests(&up, "prelude=1").len();
    assert!(
        requests <= 20,
        "{requests} upstream requests in {took:?}: reconnects that brought no event did not back off"
    );
    assert!(
        took >= Duration::from_millis(900),
        "ended after {took:?}, before --reconnect-timeout"
    );
    assert!(
        wait_until(Duration::from_secs(2), || log_has(&t, "giving up")),
        "{}",
        log_text(&t)
    );
}
