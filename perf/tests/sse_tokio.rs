//! `sse-tokio`, the second benchmark origin, as a process: its heads and events are
//! `sse-upstream`'s byte for byte for the same request (plain, `batch=1`, `size=`, `ts=0`,
//! `eol=`, resumed after `Last-Event-ID`, cut by `close_after`), in order; `batch=1` writes one
//! event per chunk (one write each) while the default writes every due event in one; faults
//! (close, reset, stall) and pacing behave as the simulator's; and `sse-load` counts no loss and
//! no duplicate through it. Loopback only; every socket has a timeout and every origin process
//! is killed when its test ends.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{data_ids, open_sse, parse_sse, seq_of, Client, End};
use tether_perf::load::{run, LoadConfig, Report};

/// A running `sse-tokio` process, killed on drop.
struct Origin {
    child: Child,
    addr: SocketAddr,
}

impl Origin {
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sse-tokio"))
            .args(["--bind", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sse-tokio");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read its address");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line {line:?}"))
            .parse()
            .expect("an address");
        Self { child, addr }
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The decoded body of a finite stream and how it ended.
fn body(addr: SocketAddr, target: &str, headers: &str) -> (Vec<u8>, End) {
    let (mut c, head) = open_sse(addr, target, headers);
    assert!(head.is_chunked(), "{target}");
    c.read_body(&head)
}

/// The chunks of a chunked body as sent (size line and CRLF removed), until the last-chunk.
fn raw_chunks(addr: SocketAddr, target: &str) -> Vec<Vec<u8>> {
    let (mut c, _head) = open_sse(addr, target, "");
    let mut chunks = Vec::new();
    let mut pos = 0;
    loop {
        let buf = c.buffered();
        if let Some(nl) = buf[pos..].windows(2).position(|w| w == b"\r\n") {
            let size_line = std::str::from_utf8(&buf[pos..pos + nl]).unwrap();
            let size = usize::from_str_radix(size_line, 16).unwrap();
            let data = pos + nl + 2;
            if buf.len() >= data + size + 2 {
                if size == 0 {
                    return chunks;
                }
                chunks.push(buf[data..data + size].to_vec());
                pos = data + size + 2;
                continue;
            }
        }
        assert!(c.fill().expect("read") > 0, "EOF before the last-chunk");
    }
}

/// `body` with every `ts_us` value (16 digits) zeroed: the only bytes that differ between two
/// origins sending the same events, at different microseconds.
fn without_send_times(body: &[u8]) -> Vec<u8> {
    const KEY: &[u8] = b"\"ts_us\":";
    let mut out = body.to_vec();
    let mut from = 0;
    while let Some(at) = out[from..].windows(KEY.len()).position(|w| w == KEY) {
        let digits = from + at + KEY.len();
        let end = (digits + 16).min(out.len());
        assert!(out[digits..end].iter().all(u8::is_ascii_digit));
        out[digits..end].fill(b'0');
        from = end;
    }
    out
}

#[test]
fn the_same_request_gets_the_simulators_bytes() {
    let tokio_origin = Origin::start();
    let simulator = common::start();
    // (query, request headers, how the body ends): the same head fields in the same order,
    // the same body bytes (send times aside) and the same ending from both origins.
    for (query, headers, ending) in [
        ("events=50", "", End::Complete),
        ("events=50&size=40&ts=0", "", End::Complete),
        ("events=30&size=80&ts=0&batch=1", "", End::Complete),
        ("events=20&size=12&ts=0&eol=crlf", "", End::Complete),
        ("events=20&ts=0&ids=0&eol=cr", "", End::Complete),
        ("events=105&start=100&size=300&ts=0", "", End::Complete),
        ("events=12&ts=0", "Last-Event-ID: 7\r\n", End::Complete),
        ("events=12&batch=1", "Last-Event-ID: 7\r\n", End::Complete),
        ("events=12&ts=0", "Last-Event-ID: 12\r\n", End::Complete),
        (
            "events=3&ts=0&resume=ignore",
            "Last-Event-ID: 1\r\n",
            End::Complete,
        ),
        ("events=20&close_after=3&size=60&ts=0", "", End::Eof),
        (
            "events=20&close_after=3&size=60",
            "Last-Event-ID: 9\r\n",
            End::Eof,
        ),
        (
            "events=20&close_after=3&batch=1&ts=0",
            "Last-Event-ID: 18\r\n",
            End::Complete,
        ),
        (
            "events=6&close_after=2&fault_once=1&ts=0",
            "Last-Event-ID: 2\r\n",
            End::Complete,
        ),
        ("events=6&close_after=0", "", End::Eof),
    ] {
        let target = format!("/sse?{query}");
        let case = format!("{query} {headers:?}");
        let (mut c, ours_head) = open_sse(tokio_origin.addr, &target, headers);
        let (ours, ours_end) = c.read_body(&ours_head);
        let (mut c, theirs_head) = open_sse(simulator.addr(), &target, headers);
        let (theirs, theirs_end) = c.read_body(&theirs_head);
        assert_eq!(ours_head.headers, theirs_head.headers, "{case}");
        assert_eq!((&ours_end, &theirs_end), (&ending, &ending), "{case}");
        assert_eq!(
            String::from_utf8_lossy(&without_send_times(&ours)),
            String::from_utf8_lossy(&without_send_times(&theirs)),
            "{case}"
        );
    }
    // With send times: ids 1..=N in order, each event's seq its id.
    let (b, _) = body(tokio_origin.addr, "/sse?events=100&size=80", "");
    let parsed = parse_sse(&b);
    assert_eq!(data_ids(&parsed), (1..=100).collect::<Vec<_>>());
    for e in &parsed.events {
        assert_eq!(Some(seq_of(&e.data).to_string()), e.id);
        assert!(e.data.contains("\"ts_us\":1"), "{}", e.data);
        assert_eq!(e.data.len(), 80);
    }
}

#[test]
fn one_write_per_event_and_back_to_back_turns() {
    let o = Origin::start();
    // batch=1: every event its own chunk (its own write).
    let chunks = raw_chunks(o.addr, "/sse?events=300&size=80&batch=1");
    assert_eq!(chunks.len(), 300);
    for (i, c) in chunks.iter().enumerate() {
        let ids = data_ids(&parse_sse(c));
        assert_eq!(ids, vec![i as u64 + 1]);
    }
    // Default: every event due in one write (flat out: up to 16 KiB), so chunks hold many.
    let chunks = raw_chunks(o.addr, "/sse?events=300&size=80");
    let per_chunk: Vec<usize> = chunks.iter().map(|c| parse_sse(c).events.len()).collect();
    assert_eq!(per_chunk.iter().sum::<usize>(), 300);
    assert!(per_chunk[0] > 100, "{per_chunk:?}");
    assert!(chunks.iter().all(|c| c.len() <= 16 * 1024 + 200));
    // burst=N bounds a turn.
    let chunks = raw_chunks(o.addr, "/sse?events=23&burst=5");
    let per_chunk: Vec<usize> = chunks.iter().map(|c| parse_sse(c).events.len()).collect();
    assert_eq!(per_chunk, vec![5, 5, 5, 5, 3]);
}

#[test]
fn resumes_after_last_event_id() {
    let o = Origin::start();
    let ids = |headers: &str, query: &str| {
        let (b, end) = body(o.addr, &format!("/sse?{query}"), headers);
        assert_eq!(end, End::Complete);
        data_ids(&parse_sse(&b))
    };
    assert_eq!(
        ids("Last-Event-ID: 7\r\n", "events=12"),
        vec![8, 9, 10, 11, 12]
    );
    assert_eq!(ids("Last-Event-ID: 12\r\n", "events=12"), Vec::<u64>::new());
    assert_eq!(ids("Last-Event-ID: x7\r\n", "events=3"), vec![1, 2, 3]);
    assert_eq!(
        ids("Last-Event-ID: 1\r\n", "events=3&resume=ignore"),
        vec![1, 2, 3]
    );
    assert_eq!(ids("", "events=3&batch=1"), vec![1, 2, 3]);
}

#[test]
fn close_after_ends_each_connection_and_a_resuming_client_gets_every_event() {
    let o = Origin::start();
    let mut seen = Vec::new();
    let mut connections = 0;
    loop {
        let headers = match seen.last() {
            Some(id) => format!("Last-Event-ID: {id}\r\n"),
            None => String::new(),
        };
        let (b, end) = body(o.addr, "/sse?events=20&close_after=3&size=60", &headers);
        connections += 1;
        let ids = data_ids(&parse_sse(&b));
        if end == End::Complete {
            assert_eq!(ids, vec![19, 20]);
            seen.extend(ids);
            break;
        }
        // FIN after 3 complete events, no last-chunk.
        assert_eq!(end, End::Eof);
        assert_eq!(ids.len(), 3, "{ids:?}");
        seen.extend(ids);
        assert!(connections < 10);
    }
    assert_eq!(seen, (1..=20).collect::<Vec<_>>());
    assert_eq!(connections, 7);
    // fault_once: the resuming request streams to the end.
    let (b, end) = body(
        o.addr,
        "/sse?events=6&close_after=2&fault_once=1",
        "Last-Event-ID: 2\r\n",
    );
    assert_eq!(
        (data_ids(&parse_sse(&b)), end),
        (vec![3, 4, 5, 6], End::Complete)
    );
    // close_after=0: FIN right after the head.
    let (b, end) = body(o.addr, "/sse?events=6&close_after=0", "");
    assert_eq!((b.len(), end), (0, End::Eof));
}

#[test]
fn reset_after_and_stalls() {
    let o = Origin::start();
    let (b, end) = body(o.addr, "/sse?events=10&reset_after=2&batch=1", "");
    assert_eq!(data_ids(&parse_sse(&b)), vec![1, 2]);
    assert_eq!(end, End::Reset);

    // The bench's hold: the head at once, the first event after stall_ms.
    let t0 = Instant::now();
    let (mut c, head) = open_sse(o.addr, "/sse?events=3&stall_after=0&stall_ms=300", "");
    let head_at = t0.elapsed();
    let (b, end) = c.read_body(&head);
    assert_eq!(
        (data_ids(&parse_sse(&b)), end),
        (vec![1, 2, 3], End::Complete)
    );
    assert!(
        head_at < Duration::from_millis(250),
        "head after {head_at:?}"
    );
    assert!(t0.elapsed() >= Duration::from_millis(300));

    // Without stall_ms the stream waits until the client leaves.
    let (mut c, _head) = open_sse(o.addr, "/sse?events=3&stall_after=1", "");
    c.set_read_timeout(Duration::from_millis(300));
    while data_ids(&parse_sse(c.buffered())).is_empty() {
        c.fill().expect("the first event");
    }
    assert!(c.fill().is_err(), "nothing after the stall point");
}

#[test]
fn paced_streams_keep_their_rate() {
    let o = Origin::start();
    let t0 = Instant::now();
    let (b, end) = body(o.addr, "/sse?events=6&rate=20&batch=1", "");
    let took = t0.elapsed();
    assert_eq!(
        (data_ids(&parse_sse(&b)), end),
        (vec![1, 2, 3, 4, 5, 6], End::Complete)
    );
    // Five intervals of 50 ms between the first and the last event.
    assert!(took >= Duration::from_millis(245), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn keep_alive_small_and_errors() {
    let o = Origin::start();
    let mut c = Client::connect(o.addr);
    for _ in 0..2 {
        let r = c.get("/sse?events=4");
        assert_eq!(r.head.status, 200);
        assert_eq!(data_ids(&parse_sse(&r.body)), vec![1, 2, 3, 4]);
    }
    let r = c.get("/small");
    assert_eq!(r.head.status, 200);
    assert_eq!(r.body.len(), 100);
    assert!(r
        .body
        .iter()
        .enumerate()
        .all(|(i, &b)| b == (i % 251) as u8));
    // The same bytes as the simulator's /small (the bench compares them through each proxy).
    let sim = common::start();
    assert_eq!(Client::connect(sim.addr()).get("/small").body, r.body);
    assert_eq!(c.get("/nope").head.status, 404);
    let r = c.get("/sse?events=1&prime=1");
    assert_eq!(r.head.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("prime"));
    let r = c.get("/sse?events=+1");
    assert_eq!(r.head.status, 400);
    // Still the same connection.
    assert_eq!(c.get("/small").head.status, 200);
}

fn load(o: &Origin, query: &str, config: LoadConfig) -> Report {
    let config = LoadConfig {
        url: format!("http://{}/sse?{query}", o.addr),
        ..config
    };
    let report = run(&config).expect("load runs");
    eprintln!("{}", report.table());
    report
}

#[test]
fn the_load_client_sees_no_loss_and_no_duplicate() {
    let o = Origin::start();
    // Few flat-out streams: each can hold megabytes in its socket buffers, and a box that runs
    // into the kernel's TCP memory pressure (other flat-out benchmarks on this shared machine
    // do) stalls every stream for a retransmission timeout or more. So the events are counted
    // over the whole run, not only in the short window.
    for (query, streams, timed) in [
        ("events=0&size=80&batch=1", 10, true),
        ("events=0&size=12&ts=0", 10, false),
        ("events=0&size=80&rate=2000&batch=1", 20, true),
        ("events=0&size=80&rate=50", 50, true),
    ] {
        let r = load(
            &o,
            query,
            LoadConfig {
                streams,
                duration: Duration::from_millis(800),
                warmup: Duration::from_millis(200),
                ..Default::default()
            },
        );
        assert_eq!(r.open_failure, None, "{query}");
        assert_eq!(r.established, streams as u64, "{query}");
        assert!(r.events_total > 0, "{query}");
        assert_eq!((r.gaps, r.duplicates), (0, 0), "{query}");
        assert_eq!((r.errors, r.ended_streams), (0, 0), "{query}");
        if timed {
            assert_eq!(r.untimed_events, 0, "{query}");
            assert_eq!(r.latency_us.count, r.events, "{query}");
        } else {
            assert_eq!(r.latency_us.count, 0, "{query}");
            assert_eq!(r.untimed_events, r.events, "{query}");
        }
    }
    // Drops every 5 events, the client resumes with Last-Event-ID: every event exactly once.
    let r = load(
        &o,
        "events=0&rate=200&close_after=5&batch=1",
        LoadConfig {
            streams: 20,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            reconnect: true,
            ..Default::default()
        },
    );
    assert_eq!(r.open_failure, None);
    assert!(r.reconnects > 0);
    assert_eq!((r.gaps, r.duplicates), (0, 0));
    assert_eq!((r.errors, r.ended_streams), (0, 0));
}
