//! Start, refuse, threads, many streams and kill.

mod common;

use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{data_ids, open_sse, parse_sse, start, Client, End};
use tether_perf::{spawn, UpstreamConfig};

#[test]
fn refuse_for_gives_econnrefused_then_serves() {
    let t = Instant::now();
    let up = spawn(UpstreamConfig {
        refuse_for: Duration::from_millis(500),
        ..Default::default()
    })
    .unwrap();
    assert_ne!(up.addr().port(), 0);
    let err = TcpStream::connect(up.addr()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    // Keeps refusing until the deadline, then serves.
    while let Err(e) = TcpStream::connect(up.addr()) {
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
        assert!(t.elapsed() < Duration::from_secs(5), "still refusing");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        t.elapsed() >= Duration::from_millis(490),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(Client::connect(up.addr()).get("/small").head.status, 200);
}

#[test]
fn the_port_is_not_shared_silently() {
    let up = start();
    let again = spawn(UpstreamConfig {
        bind: up.addr(),
        ..Default::default()
    });
    assert_eq!(again.unwrap_err().kind(), ErrorKind::AddrInUse);
}

#[test]
fn kill_cuts_every_kind_of_connection() {
    let up = start();
    let addr = up.addr();
    // A paced infinite stream, a flat-out stream nobody reads (its writes block), a stalled
    // stream, an idle keep-alive connection, a request waiting in /delay.
    let (mut paced, _) = open_sse(addr, "/sse?events=0&rate=10", "");
    let (mut unread, _) = open_sse(addr, "/sse?events=0&size=1000", "");
    let (mut stalled, _) = open_sse(addr, "/sse?events=0&stall_after=0", "");
    let mut idle = Client::connect(addr);
    assert_eq!(idle.get("/small").head.status, 200);
    let mut delayed = Client::connect(addr);
    delayed.send(b"GET /delay?ms=60000 HTTP/1.1\r\nHost: t\r\n\r\n");
    paced.fill().unwrap();
    std::thread::sleep(Duration::from_millis(300)); // let the unread stream fill its buffers
    let t = Instant::now();
    up.kill();
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "kill took {:?}",
        t.elapsed()
    );
    for (name, c) in [
        ("paced", &mut paced),
        ("stalled", &mut stalled),
        ("idle", &mut idle),
        ("delayed", &mut delayed),
    ] {
        let (_, end) = c.read_to_end();
        assert!(matches!(end, End::Eof | End::Reset), "{name}: {end:?}");
    }
    // The unread one: drain what was buffered; then EOF or reset.
    unread.set_read_timeout(Duration::from_secs(5));
    let mut tmp = vec![0u8; 1 << 20];
    loop {
        match unread.stream.read(&mut tmp) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("unread stream: {e}"),
        }
    }
    assert!(TcpStream::connect(addr).is_err(), "no longer listening");
}

#[test]
fn drop_kills_too() {
    let addr;
    {
        let up = start();
        addr = up.addr();
        let _ = Client::connect(addr).get("/small");
    }
    assert!(TcpStream::connect(addr).is_err());
}

#[test]
fn several_threads_share_the_port() {
    let up = spawn(UpstreamConfig {
        threads: 2,
        ..Default::default()
    })
    .unwrap();
    let mut clients: Vec<Client> = (0..40).map(|_| Client::connect(up.addr())).collect();
    for c in &mut clients {
        assert_eq!(c.get("/small").head.status, 200);
    }
    let ids: std::collections::HashSet<u64> = up.requests().iter().map(|r| r.conn_id).collect();
    assert_eq!(ids.len(), 40);
    up.kill();
}

#[test]
fn five_hundred_paced_streams() {
    let up = start();
    let streams: Vec<(Client, common::Head)> = (0..500)
        .map(|_| open_sse(up.addr(), "/sse?events=3&rate=5&size=64", ""))
        .collect();
    for (mut c, head) in streams {
        let (body, end) = c.read_body(&head);
        assert_eq!(end, End::Complete);
        assert_eq!(data_ids(&parse_sse(&body)), vec![1, 2, 3]);
    }
}

#[test]
fn driver_follows_the_environment() {
    let up = start();
    let forced = std::env::var("MONOIO_FORCE_LEGACY_DRIVER")
        .is_ok_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"));
    if forced {
        assert_eq!(up.driver(), "legacy");
    } else {
        assert!(matches!(up.driver(), "io_uring" | "legacy"));
        eprintln!("driver: {}", up.driver());
    }
}

#[test]
fn a_paused_listener_refuses_while_open_streams_carry_on() {
    let up = start();
    let addr = up.addr();
    let (mut paced, _) = open_sse(addr, "/sse?events=0&rate=50", "");
    paced.fill().unwrap();
    up.pause_listening().unwrap();
    let err = TcpStream::connect(addr).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    // The stream that was open keeps its events coming.
    let mut more = 0;
    while more < 200 {
        more += paced.fill().unwrap();
    }
    assert_eq!(
        TcpStream::connect(addr).unwrap_err().kind(),
        ErrorKind::ConnectionRefused,
        "still refusing"
    );
    // Listening again on the same port (bound to port 0 at start: the port is kept).
    up.resume_listening().unwrap();
    assert_eq!(Client::connect(addr).get("/small").head.status, 200);
    up.pause_listening().unwrap();
    assert!(TcpStream::connect(addr).is_err());
    up.resume_listening().unwrap();
    assert_eq!(Client::connect(addr).get("/small").head.status, 200);
    assert_eq!(up.stats().refusal_windows, 2);
}

#[test]
fn a_killed_simulator_can_come_back_on_its_port() {
    let up = start();
    let addr = up.addr();
    assert_eq!(Client::connect(addr).get("/small").head.status, 200);
    up.kill();
    // The workers are joined, but on io_uring the kernel lets go of the listening socket when
    // the ring's teardown runs (deferred to a kernel work queue): on a busy machine a connect
    // can still be accepted for a moment. The port must refuse soon, and then be free again.
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the killed simulator's port still accepts connections after 5 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let again = spawn(UpstreamConfig {
        bind: addr,
        ..Default::default()
    })
    .expect("the port is free again");
    assert_eq!(Client::connect(addr).get("/small").head.status, 200);
    again.kill();
}

/// A child process started while a connection is open must not keep it open: the simulator's
/// close has to reach the client as a FIN at once. (On io_uring monoio accepts without
/// SOCK_CLOEXEC; a test process that starts tether while its in-process simulator held
/// connections stalled streams that way.) Bounded: the child lives 30 s, the read waits 10 s.
#[test]
fn a_child_process_does_not_keep_a_closed_connection_open() {
    let up = start();
    let (mut c, _) = open_sse(up.addr(), "/sse?events=0&rate=20&close_after=5", "");
    c.fill().unwrap();
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("start a child process");
    c.set_read_timeout(Duration::from_secs(10));
    let started = Instant::now();
    let (_, end) = c.read_to_end();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        matches!(end, End::Eof),
        "after close_after=5 the client got {end:?} in {:?} instead of EOF: the child process \
         holds the simulator's socket",
        started.elapsed()
    );
}
