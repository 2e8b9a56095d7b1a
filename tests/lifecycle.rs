//! Process life: start-up checks, drivers, connection limits, and the SIGTERM drain.

mod common;

use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn port_held_by_another_process_fails_at_once() {
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = holder.local_addr().unwrap();
    let up = origin();
    let args: Vec<String> = [
        "reverse",
        "--bind",
        &addr.to_string(),
        "--upstream",
        &url_of(&up),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let started = Instant::now();
    let log = match Tether::start_args(&args) {
        Ok(_) => panic!("tether must not share a port held by another process"),
        Err(log) => log,
    };
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(log.iter().any(|l| l.contains("already in use")), "{log:?}");
}

#[test]
fn driver_choice_is_logged_and_epoll_can_be_forced() {
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &["--driver", "epoll"]);
    let line = t
        .log_lines()
        .into_iter()
        .find(|l| l.contains("listening on"))
        .unwrap();
    assert!(line.contains("epoll driver"), "{line}");
    let mut c = Client::connect(t.addr);
    assert_eq!(c.get("/small").status, 200);
}

#[test]
fn auto_driver_runs_and_says_which() {
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &[]);
    let line = t
        .log_lines()
        .into_iter()
        .find(|l| l.contains("listening on"))
        .unwrap();
    let forced = std::env::var("MONOIO_FORCE_LEGACY_DRIVER").is_ok_and(|v| v == "1");
    if forced {
        assert!(line.contains("epoll driver"), "{line}");
    } else {
        assert!(
            line.contains("io_uring driver") || line.contains("epoll driver"),
            "{line}"
        );
    }
}

#[test]
fn bad_flags_are_refused_with_a_message() {
    for (flag, value) in [
        ("--connect-timeout", "5"),
        ("--workers", "0"),
        ("--cpus", "3-1"),
        ("--uring-entries", "1000"),
    ] {
        let args: Vec<String> = [
            "reverse",
            "--bind",
            "127.0.0.1:0",
            "--upstream",
            "http://127.0.0.1:9",
            flag,
            value,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{flag} {value} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(flag.trim_start_matches("--").split('-').next().unwrap()),
            "{flag}: {err}"
        );
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["reverse", "--bind", "127.0.0.1:0", "--upstream", "ftp://x"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("http://"));
}

#[test]
fn past_max_connections_new_clients_get_503() {
    let up = origin();
    let t = Tether::start(
        &[url_of(&up)],
        &[
            "--workers",
            "1",
            "--max-connections",
            "2",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let admin = admin_addr(&t);
    let mut a = Client::connect(t.addr);
    let mut b = Client::connect(t.addr);
    assert_eq!(a.get("/small").status, 200);
    assert_eq!(b.get("/small").status, 200);
    let (r, mut c) = send_raw(t.addr, b"GET /small HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(r.status, 503);
    assert!(c.is_closed());
    // Capacity comes back when a connection leaves: once the worker has seen `a` go (and the
    // refused one), only `b` is left.
    drop(a);
    assert!(
        wait_until(IO_TIMEOUT, || scrape(admin, "tether_connections_active")
            == 1),
        "the worker never noticed the client leave"
    );
    let (r, _) = send_raw(t.addr, b"GET /small HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(b.get("/small").status, 200);
}

#[test]
fn sigterm_lets_in_flight_requests_finish_then_exits_zero() {
    let up = origin();
    let mut t = Tether::start(&[url_of(&up)], &["--shutdown-grace", "5s"]);
    let addr = t.addr;
    let idle = Client::connect(addr);
    let mut idle = idle;
    assert_eq!(idle.get("/small").status, 200);
    let in_flight = thread::spawn(move || {
        let (r, _) = send_raw(addr, b"GET /delay?ms=1000 HTTP/1.1\r\nHost: a\r\n\r\n");
        r
    });
    wait_for_upstream_request(&up, "/delay");
    t.signal(libc::SIGTERM);
    // The idle keep-alive connection is closed at once.
    assert!(
        idle.is_closed(),
        "idle connection must be closed at drain start"
    );
    // The in-flight request completes, told the connection closes.
    let r = in_flight.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    let status = t
        .wait_exit(Duration::from_secs(5))
        .expect("tether must exit after the drain");
    assert!(status.success(), "{status:?}");
    // No longer accepting.
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn sigterm_closes_what_outlives_the_grace_period() {
    let up = origin();
    let mut t = Tether::start(&[url_of(&up)], &["--shutdown-grace", "500ms"]);
    let mut c = Client::connect(t.addr);
    c.send(b"GET /delay?ms=15000 HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    wait_for_upstream_request(&up, "/delay");
    let started = Instant::now();
    t.signal(libc::SIGTERM);
    let status = t
        .wait_exit(Duration::from_secs(8))
        .expect("tether must exit after the grace period");
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(8));
    assert!(
        c.read_response(false).is_err(),
        "the stalled request gets no response"
    );
}

#[test]
fn second_signal_closes_at_once() {
    let up = origin();
    let mut t = Tether::start(&[url_of(&up)], &["--shutdown-grace", "60s"]);
    let mut c = Client::connect(t.addr);
    c.send(b"GET /delay?ms=15000 HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    wait_for_upstream_request(&up, "/delay");
    t.signal(libc::SIGINT);
    // The second signal must come after the first was taken as the start of the drain (two
    // SIGINTs pending at once are one).
    assert!(t.wait_for_log("stopped accepting; draining", IO_TIMEOUT));
    t.signal(libc::SIGINT);
    let status = t
        .wait_exit(Duration::from_secs(8))
        .expect("a second signal must end the drain");
    assert!(status.success());
}

/// Waits until the upstream simulator has received a request whose path starts with `prefix`:
/// from then on the request is in flight inside tether.
fn wait_for_upstream_request(up: &tether_perf::UpstreamHandle, prefix: &str) {
    assert!(
        wait_until(IO_TIMEOUT, || up
            .requests()
            .iter()
            .any(|r| r.path.starts_with(prefix))),
        "no request for {prefix} reached the upstream: {:?}",
        up.requests()
    );
}

/// When the grace period ends, the drain shuts every remaining socket, an SSE stream's upstream
/// included. The relay must take that for the end it is, not for an upstream drop to resume: a
/// worker that is closing must open no new upstream connection.
///
/// Failed on io_uring in every run (6 of 6; on epoll it passed) before the relay checked
/// `ConnGuard::closing()`: with events every 20 ms the relay's pump is never idle long enough to
/// watch its client, so it saw its upstream's EOF first, recorded a drop and reconnected at once
/// (the first reconnect after progress has no backoff): the upstream got one more connection
/// while tether shut down.
#[test]
fn the_drain_opens_no_upstream_connection_after_the_grace_period() {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = listener.local_addr().unwrap();
    // The upstream: one SSE response, an event every 20 ms until tether closes the connection.
    let upstream = thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut head = Vec::new();
        let mut tmp = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut tmp).unwrap();
            assert!(n > 0, "tether closed before its request head");
            head.extend_from_slice(&tmp[..n]);
        }
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
            .unwrap();
        for id in 1.. {
            if conn
                .write_all(format!("id: {id}\ndata: {id}\n\n").as_bytes())
                .is_err()
            {
                break;
            }
            // Pacing of the upstream's events, not a synchronisation.
            thread::sleep(Duration::from_millis(20));
        }
        listener
    });
    let mut t = Tether::start(
        &[format!("http://{up_addr}")],
        &["--shutdown-grace", "300ms", "--sse-heartbeat", "0"],
    );
    let mut stream = SseReader::get(t.addr, "/stream", &[]);
    assert_eq!(stream.head.status, 200);
    for _ in 0..3 {
        assert!(stream.next_event().expect("events").is_some());
    }
    t.signal(libc::SIGTERM);
    let status = t
        .wait_exit(Duration::from_secs(10))
        .expect("tether must exit after the grace period");
    assert!(status.success(), "{status:?}");
    let listener = upstream.join().unwrap();
    listener.set_nonblocking(true).unwrap();
    // A connection tether opened, even one it closed at once, waits in the accept queue.
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!(
            "tether connected to the upstream again while shutting down: {:?}\n{}",
            other.map(|(_, peer)| peer),
            t.log_lines().join("\n")
        ),
    }
}
