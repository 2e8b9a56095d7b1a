//! Hostile clients and exhausted resources (issue 11): a process at its file-descriptor limit,
//! slowloris connections, a client that pipelines thousands of requests and reads nothing.
//!
//! Nothing here asserts speed. Where time enters an assertion it bounds a defect: CPU time over a
//! window bounds a spinning loop, and a log-line count per interval bounds a log flood.
//! `scripts/hostile.sh` runs the same tests at the full scale (release build).

mod common;

use std::time::{Duration, Instant};

use common::*;

// ---------------------------------------------------------------------------------------------
// File descriptors
// ---------------------------------------------------------------------------------------------

/// tether's RLIMIT_NOFILE in the fd test: its own fds (runtime, listener, control sockets, the
/// reserve) plus a few dozen connections.
const FD_LIMIT: u64 = 64;

/// Events read while new clients are refused at the fd limit (50 per second upstream): the
/// window over which tether's CPU time is measured.
const EVENTS_AT_LIMIT: u64 = 50;

/// A refused client every this many events of that window.
const REFUSE_EVERY: u64 = 5;

/// The log interval of the "out of file descriptors" line (`ACCEPT_ERROR_LOG_INTERVAL_SECS`).
const FD_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// With tether at its fd limit: the open SSE stream keeps delivering every event; each new client
/// gets a 503 and a close at once (not a hang in the backlog); tether does not spin (its CPU
/// time over the window is under half the window's length: a bound on a busy loop, far above
/// what refusing a few connections costs, and robust to a loaded machine, where tether gets
/// less CPU, not more); the failure is logged once per interval, not once per refusal; and once
/// clients leave, new ones are served again.
#[test]
fn at_the_fd_limit_streams_go_on_new_clients_get_503_and_service_resumes() {
    let up = origin();
    let t = Tether::start_with_fd_limit(&[url_of(&up)], &["--workers", "1"], FD_LIMIT);
    let pid = t.pid();
    let mut stream = SseReader::get(t.addr, "/sse?events=0&rate=50&ts=0", &[]);
    assert_eq!(stream.head.status, 200);
    let mut last = next_id(&mut stream);

    // Keep-alive clients, one request each, until one is refused: the connection accepted into
    // the last free fd gets a 503 at once (it would have no fd for its upstream).
    let mut idle = Vec::new();
    loop {
        assert!(
            idle.len() < FD_LIMIT as usize,
            "{} clients served and none refused ({} fds in use)",
            idle.len(),
            fds_below(pid, FD_LIMIT)
        );
        let mut c = Client::connect(t.addr);
        let r = c.get("/small");
        match r.status {
            200 => idle.push(c),
            503 => {
                assert!(c.is_closed(), "a refused client must be closed");
                break;
            }
            other => panic!(
                "client {} got {other} near the fd limit: {}",
                idle.len(),
                r.text()
            ),
        }
    }

    // Take the last fd with upstream connections of requests in flight (the first may reuse the
    // pooled upstream connection): now accept(2) itself fails with EMFILE.
    let mut in_flight = 0;
    while fds_below(pid, FD_LIMIT) < FD_LIMIT as usize {
        assert!(
            in_flight < 3,
            "requests in flight did not fill the fd table"
        );
        idle[in_flight]
            .send(b"GET /delay?ms=60000 HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap();
        in_flight += 1;
        assert!(
            wait_until(IO_TIMEOUT, || up
                .requests()
                .iter()
                .filter(|r| r.path.starts_with("/delay"))
                .count()
                == in_flight),
            "the request in flight never reached the upstream"
        );
    }

    // At the limit: the stream goes on, new clients are refused, tether does not spin.
    let window = Instant::now();
    let cpu_before = cpu_time(pid);
    let mut refused = 0;
    for i in 0..EVENTS_AT_LIMIT {
        let id = next_id(&mut stream);
        assert_eq!(
            id,
            last + 1,
            "the stream lost or repeated an event at the fd limit"
        );
        last = id;
        if i % REFUSE_EVERY == 0 {
            let mut c = Client::connect(t.addr);
            c.send(b"GET /small HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
            let r = c
                .read_response(false)
                .expect("a client past the fd limit must get an answer, not a hang");
            assert_eq!(r.status, 503, "{}", r.text());
            assert!(c.is_closed(), "a refused client must be closed");
            refused += 1;
        }
    }
    let wall = window.elapsed();
    let cpu = cpu_time(pid).saturating_sub(cpu_before);
    eprintln!("at the fd limit: {refused} clients refused in {wall:?}; tether used {cpu:?} of CPU");
    assert!(
        cpu < wall / 2,
        "tether used {cpu:?} of CPU in {wall:?} at its fd limit: a busy loop"
    );
    assert!(refused > 0);

    // Logged, but once per interval rather than once per refused client or failed accept.
    assert!(
        t.wait_for_log("os error 24", IO_TIMEOUT),
        "EMFILE was never logged:\n{}",
        t.log_lines().join("\n")
    );
    let emfile_lines = t
        .log_lines()
        .iter()
        .filter(|l| l.contains("os error 24"))
        .count();
    for line in t.log_lines().iter().filter(|l| l.contains("os error 24")) {
        eprintln!("{line}");
    }
    let allowed = 1 + (window.elapsed().as_secs_f64() / FD_LOG_INTERVAL.as_secs_f64()) as usize;
    assert!(
        emfile_lines <= allowed,
        "{emfile_lines} EMFILE lines for {refused} refused clients (at most {allowed}):\n{}",
        t.log_lines().join("\n")
    );

    // Clients leave: tether serves new ones again, and the stream is still whole.
    let freed = 10;
    assert!(idle.len() > in_flight + freed);
    idle.truncate(idle.len() - freed);
    assert!(
        wait_until(IO_TIMEOUT, || fds_below(pid, FD_LIMIT)
            <= FD_LIMIT as usize - freed / 2),
        "tether did not close the departed clients' sockets ({} fds)",
        fds_below(pid, FD_LIMIT)
    );
    let mut c = Client::connect(t.addr);
    assert_eq!(
        c.get("/small").status,
        200,
        "service must resume once fds are free"
    );
    assert_eq!(next_id(&mut stream), last + 1);
}

/// Open fds of `pid` numbered below `limit`: the ones that use up RLIMIT_NOFILE's room (a
/// process may inherit a higher number, e.g. a jobserver pipe of the test harness, which takes
/// none of it).
fn fds_below(pid: u32, limit: u64) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| {
        d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u64>().ok())
            .filter(|&fd| fd < limit)
            .count()
    })
}

fn next_id(reader: &mut SseReader) -> u64 {
    reader
        .next_event()
        .expect("reading the stream")
        .expect("the stream ended")
        .num_id()
        .expect("a numeric id")
}
