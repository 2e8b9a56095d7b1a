//! SSE streams of sse-upstream over real loopback sockets: format, framing, pacing,
//! resume and every fault.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{data_ids, open_sse, parse_sse, seq_of, start, Client, End, SseParsed};

/// Opens `target` and reads the whole body.
fn fetch(addr: SocketAddr, target: &str, extra: &str) -> (common::Head, Vec<u8>, End, Client) {
    let (mut c, head) = open_sse(addr, target, extra);
    let (body, end) = c.read_body(&head);
    (head, body, end, c)
}

fn fetch_parsed(addr: SocketAddr, target: &str, extra: &str) -> (SseParsed, End) {
    let (_, body, end, _) = fetch(addr, target, extra);
    (parse_sse(&body), end)
}

#[test]
fn stream_of_events_then_keep_alive() {
    let up = start();
    let (head, body, end, mut c) = fetch(up.addr(), "/sse?events=5", "");
    assert!(head.is_chunked());
    assert_eq!(head.header("cache-control"), Some("no-cache"));
    assert_eq!(end, End::Complete);
    let parsed = parse_sse(&body);
    assert_eq!(data_ids(&parsed), vec![1, 2, 3, 4, 5]);
    for e in &parsed.events {
        assert_eq!(
            seq_of(&e.data),
            e.id.as_deref().unwrap().parse::<u64>().unwrap()
        );
        assert!(e.data.contains("\"ts_us\":"), "{}", e.data);
    }
    assert!(parsed.tail.is_empty());
    // Default: 10 events; the same connection is reused.
    let r = c.get("/sse");
    assert_eq!(data_ids(&parse_sse(&r.body)).len(), 10);
    let log = up.requests();
    assert_eq!(log[0].conn_id, log[1].conn_id);
}

#[test]
fn line_endings() {
    let up = start();
    for (eol, term) in [("lf", "\n"), ("crlf", "\r\n"), ("cr", "\r")] {
        let (_, body, end, _) = fetch(up.addr(), &format!("/sse?events=3&eol={eol}"), "");
        assert_eq!(end, End::Complete);
        let text = String::from_utf8(body.clone()).unwrap();
        let expected_first = format!("id: 1{term}data: {{\"seq\":1,");
        assert!(text.starts_with(&expected_first), "{eol}: {text:?}");
        match eol {
            "lf" => assert!(!text.contains('\r')),
            "cr" => assert!(!text.contains('\n')),
            _ => assert_eq!(text.matches("\r\n").count(), text.matches('\n').count()),
        }
        assert!(text.ends_with(&format!("}}{term}{term}")));
        assert_eq!(data_ids(&parse_sse(&body)), vec![1, 2, 3], "{eol}");
    }
}

#[test]
fn bom_retry_prime_and_payload_options() {
    let up = start();
    let (_, body, _, _) = fetch(up.addr(), "/sse?events=2&bom=1&retry=1500&prime=1", "");
    assert!(body.starts_with(b"\xEF\xBB\xBFretry: 1500\n\nid: 0\ndata:\n\nid: 1\n"));
    let parsed = parse_sse(&body);
    assert_eq!(parsed.retry, Some(1500));
    assert_eq!(parsed.events[0].id.as_deref(), Some("0"));
    assert_eq!(parsed.events[0].data, "");
    assert_eq!(data_ids(&parsed), vec![1, 2]);

    // On a resumed stream the priming id repeats the resume point.
    let (_, body, _, _) = fetch(up.addr(), "/sse?events=5&prime=1", "Last-Event-ID: 3\r\n");
    assert!(body.starts_with(b"id: 3\ndata:\n\nid: 4\n"));

    let (parsed, _) = fetch_parsed(up.addr(), "/sse?events=3&ids=0&ts=0&size=100", "");
    assert_eq!(parsed.events.len(), 3);
    for (i, e) in parsed.events.iter().enumerate() {
        assert_eq!(e.id, None);
        assert!(!e.data.contains("ts_us"));
        assert_eq!(e.data.len(), 100);
        assert_eq!(seq_of(&e.data), i as u64 + 1);
    }
}

#[test]
fn close_and_length_framing() {
    let up = start();
    let (head, body, end, _) = fetch(up.addr(), "/sse?events=4&framing=close", "");
    assert!(!head.is_chunked() && head.content_length().is_none() && head.closes());
    assert_eq!(end, End::Eof);
    assert_eq!(data_ids(&parse_sse(&body)), vec![1, 2, 3, 4]);

    let (head, body, end, mut c) = fetch(
        up.addr(),
        "/sse?events=12&framing=length&prime=1&eol=crlf",
        "Last-Event-ID: 2\r\n",
    );
    assert_eq!(end, End::Complete);
    assert_eq!(head.content_length(), Some(body.len()));
    let parsed = parse_sse(&body);
    assert_eq!(data_ids(&parsed), (3..=12).collect::<Vec<_>>());
    assert!(parsed.tail.is_empty());
    assert_eq!(
        c.get("/small").head.status,
        200,
        "keep-alive after a length body"
    );
}

#[test]
fn flat_out_batched_and_one_write_per_event() {
    let up = start();
    let (parsed, end) = fetch_parsed(up.addr(), "/sse?events=5000&size=64", "");
    assert_eq!(end, End::Complete);
    assert_eq!(data_ids(&parsed), (1..=5000).collect::<Vec<_>>());
    let (parsed, end) = fetch_parsed(up.addr(), "/sse?events=300&batch=1", "");
    assert_eq!(end, End::Complete);
    assert_eq!(data_ids(&parsed), (1..=300).collect::<Vec<_>>());
}

#[test]
fn infinite_stream_until_the_client_leaves() {
    let up = start();
    let (mut c, _) = open_sse(up.addr(), "/sse?events=0", "");
    while c.buffered().len() < 1_000_000 {
        assert!(c.fill().unwrap() > 0);
    }
    drop(c);
    // The server is still fine.
    assert_eq!(Client::connect(up.addr()).get("/small").head.status, 200);
}

#[test]
fn paced_stream_sends_each_event_at_once() {
    let up = start();
    let t = Instant::now();
    let (mut c, head) = open_sse(up.addr(), "/sse?events=6&rate=10&framing=close", "");
    // The first event arrives well before the second is due (100 ms later).
    while !c.buffered().windows(2).any(|w| w == b"\n\n") {
        c.fill().unwrap();
    }
    let first = t.elapsed();
    assert!(
        first < Duration::from_millis(90),
        "first event after {first:?}"
    );
    assert_eq!(data_ids(&parse_sse(c.buffered())), vec![1]);
    let (body, end) = c.read_body(&head);
    assert_eq!(end, End::Eof, "close-delimited");
    let total = t.elapsed();
    assert!(total >= Duration::from_millis(495), "{total:?}");
    assert!(total < Duration::from_secs(3), "{total:?}");
    assert_eq!(data_ids(&parse_sse(&body)), vec![1, 2, 3, 4, 5, 6]);
}

#[test]
fn heartbeats_while_idle() {
    let up = start();
    let (parsed, end) = fetch_parsed(up.addr(), "/sse?events=2&rate=3&heartbeat_ms=60", "");
    assert_eq!(end, End::Complete);
    assert_eq!(data_ids(&parsed), vec![1, 2]);
    // ~333 ms between the two events: about 5 heartbeats.
    assert!((2..=6).contains(&parsed.comments), "{}", parsed.comments);
}

#[test]
fn close_after_with_and_without_mid_event() {
    let up = start();
    let (parsed, end) = fetch_parsed(up.addr(), "/sse?events=10&close_after=3", "");
    assert_eq!(end, End::Eof, "FIN without the last-chunk");
    assert_eq!(data_ids(&parsed), vec![1, 2, 3]);
    assert!(parsed.tail.is_empty());

    let (parsed, end) = fetch_parsed(up.addr(), "/sse?events=10&close_after=3&mid_event=1", "");
    assert_eq!(end, End::Eof);
    assert_eq!(data_ids(&parsed), vec![1, 2, 3]);
    assert!(
        parsed.tail.starts_with(b"id: 4\ndata: {\"seq\""),
        "{:?}",
        parsed.tail
    );

    // close_after=0: the head, then FIN.
    let (parsed, end) = fetch_parsed(up.addr(), "/sse?close_after=0&framing=close", "");
    assert_eq!(end, End::Eof);
    assert!(parsed.events.is_empty());
}

#[test]
fn reset_after_gives_econnreset() {
    let up = start();
    let (parsed, end) = fetch_parsed(up.addr(), "/sse?events=10&reset_after=2", "");
    assert_eq!(end, End::Reset);
    assert_eq!(data_ids(&parsed), vec![1, 2]);

    let (parsed, end) = fetch_parsed(
        up.addr(),
        "/sse?events=10&reset_after=2&mid_event=1&eol=crlf",
        "",
    );
    assert_eq!(end, End::Reset);
    assert_eq!(data_ids(&parsed), vec![1, 2]);
    assert!(parsed.tail.starts_with(b"id: 3\r\n"), "{:?}", parsed.tail);
}

#[test]
fn stall_for_a_while_then_continue() {
    let up = start();
    let t = Instant::now();
    let (mut c, head) = open_sse(
        up.addr(),
        "/sse?events=4&stall_after=2&stall_ms=400&mid_event=1&framing=close",
        "",
    );
    // Two events and half of the third come at once.
    while !parse_sse(c.buffered()).tail.starts_with(b"id: 3") {
        c.fill().unwrap();
    }
    assert!(t.elapsed() < Duration::from_millis(300));
    let (body, end) = c.read_body(&head);
    assert_eq!(end, End::Eof, "close-delimited");
    assert!(
        t.elapsed() >= Duration::from_millis(395),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(data_ids(&parse_sse(&body)), vec![1, 2, 3, 4]);
}

#[test]
fn stall_forever_until_the_client_leaves() {
    let up = start();
    let (mut c, head) = open_sse(up.addr(), "/sse?events=5&stall_after=1", "");
    c.set_read_timeout(Duration::from_millis(400));
    let (body, end) = c.read_body(&head);
    assert_eq!(end, End::Timeout);
    assert_eq!(data_ids(&parse_sse(&body)), vec![1]);
    drop(c);
    let t = Instant::now();
    up.kill();
    assert!(t.elapsed() < Duration::from_secs(2));
}

#[test]
fn resume_honour_ignore_and_end() {
    let up = start();
    let (parsed, end) = fetch_parsed(up.addr(), "/sse?events=6", "Last-Event-ID: 4\r\n");
    assert_eq!(end, End::Complete);
    assert_eq!(data_ids(&parsed), vec![5, 6]);
    let (parsed, _) = fetch_parsed(
        up.addr(),
        "/sse?events=6&resume=ignore",
        "Last-Event-ID: 4\r\n",
    );
    assert_eq!(data_ids(&parsed), (1..=6).collect::<Vec<_>>());
    let (parsed, end) = fetch_parsed(up.addr(), "/sse?end=6", "Last-Event-ID: 6\r\n");
    assert_eq!(end, End::Complete);
    assert!(parsed.events.is_empty());
    let (parsed, _) = fetch_parsed(up.addr(), "/sse?events=3", "Last-Event-ID: abc\r\n");
    assert_eq!(data_ids(&parsed), vec![1, 2, 3], "a foreign id restarts");
}

/// A resuming client over a faulty upstream: reconnect with Last-Event-ID until the
/// stream completes; every event arrives exactly once.
fn resume_until_complete(addr: SocketAddr, target: &str, expected_connections: usize) {
    let mut seen = Vec::new();
    let mut connections = 0;
    loop {
        connections += 1;
        assert!(connections <= 50, "too many reconnections");
        let extra = match seen.last() {
            Some(id) => format!("Last-Event-ID: {id}\r\n"),
            None => String::new(),
        };
        let (parsed, end) = fetch_parsed(addr, target, &extra);
        seen.extend(data_ids(&parsed));
        if end == End::Complete {
            break;
        }
    }
    assert_eq!(seen, (1..=20).collect::<Vec<_>>());
    assert_eq!(connections, expected_connections);
}

#[test]
fn resuming_client_reassembles_faulty_streams() {
    let up = start();
    // 3 events per connection: 7 connections, the last one ends the stream.
    resume_until_complete(up.addr(), "/sse?events=20&close_after=3", 7);
    resume_until_complete(
        up.addr(),
        "/sse?events=20&close_after=3&mid_event=1&eol=cr",
        7,
    );
    resume_until_complete(up.addr(), "/sse?end=20&reset_after=6&mid_event=1", 4);
    // fault_once: only the first connection (no Last-Event-ID) is cut.
    resume_until_complete(up.addr(), "/sse?events=20&close_after=5&fault_once=1", 2);
}

#[test]
fn resume_status_for_the_first_t_resumes() {
    let up = start();
    let target = "/sse?events=5&resume_status=503&resume_status_times=2";
    // No Last-Event-ID: the stream, whatever resume_status says.
    let (parsed, _) = fetch_parsed(up.addr(), target, "");
    assert_eq!(data_ids(&parsed).len(), 5);
    for _ in 0..2 {
        let mut c = Client::connect(up.addr());
        let head = c.request_head("GET", target, "Last-Event-ID: 2\r\n");
        assert_eq!(head.status, 503);
    }
    let (parsed, _) = fetch_parsed(up.addr(), target, "Last-Event-ID: 2\r\n");
    assert_eq!(data_ids(&parsed), vec![3, 4, 5]);

    // Without times: always.
    for _ in 0..3 {
        let mut c = Client::connect(up.addr());
        let head = c.request_head("GET", "/sse?resume_status=204", "Last-Event-ID: 1\r\n");
        assert_eq!(head.status, 204);
        assert_eq!(head.content_length(), None);
    }
}

#[test]
fn post_and_head() {
    let up = start();
    let mut c = Client::connect(up.addr());
    c.send(b"POST /sse?events=2 HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\n\r\n{\"a\":1}");
    let head = c.read_head();
    assert_eq!(head.status, 200);
    let (body, end) = c.read_body(&head);
    assert_eq!(end, End::Complete);
    assert_eq!(data_ids(&parse_sse(&body)), vec![1, 2]);
    let head = c.request_head("HEAD", "/sse?events=2", "");
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert_eq!(
        c.get("/small").head.status,
        200,
        "nothing followed the HEAD response"
    );
}
