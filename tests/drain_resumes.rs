//! The drain after an SSE stream has been resumed several times: when the grace period ends, the
//! stream's LIVE upstream connection is shut, and no socket that merely reuses an fd number the
//! stream used before is touched.
//!
//! tether runs in this test's own process (`Server::start`, as `tether demo` does), so that an fd
//! number it frees can be taken by a socket of the test: the only way to put "another
//! connection that happens to reuse an old fd number" under the drain's `shutdown(2)` on purpose.
//! `Server::signal(false)` is what the signal thread does on the first SIGTERM (it writes the
//! same drain byte to every worker), so the drain is the one `tests/lifecycle.rs` exercises.
//! This file holds a single test: a second test running in the same process could take the fd
//! number first.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use tether::cli::{Cli, Command};
use tether::config::Config;
use tether::server::Server;

/// Upstream connections of the stream; the first is the one the old table kept forever.
const UPSTREAM_CONNECTIONS: u64 = 5;

/// The drain's grace period: the stream stays open this long after the signal.
const GRACE: Duration = Duration::from_millis(1500);

/// Before the old upstream's fd number is taken by the test, the first reconnect is answered
/// 503, so tether backs off for half to all of this (`--reconnect-initial`): the window in which
/// the number is free.
const BACKOFF: &str = "1s";

/// Scenario, and why it fails on the old behaviour (the connection table kept the first upstream
/// fd of an exchange, X, for the stream's whole life):
///
/// 1. A client opens an SSE stream; upstream connection 1 (tether's fd X) sends event 1.
/// 2. The upstream closes connection 1 (FIN). tether reconnects at once; that attempt is answered
///    503, so tether backs off for about a second. X is free now: the test dups a socket of its
///    own (a long-lived connection to an unrelated listener) onto exactly X (`F_DUPFD` returns
///    the lowest free number at or above X: the test keeps it only when that is X).
/// 3. tether resumes on connection 2 (fd Y != X, X is taken) with `Last-Event-ID: 1`; the upstream
///    drops and tether resumes again, up to connection 5: each resume is checked (the request
///    carries the last id, the client gets the next event, never a repeat).
/// 4. Drain with a grace period. Within it the stream keeps going (an event sent after the signal
///    reaches the client). When it ends, the upstream sees EOF on connection 5, the live one, and
///    the client's response ends.
/// 5. After the server has stopped, the unrelated connection on fd X still works both ways.
///
/// With the old table, step 4's `shutdown_all` would shut X: the test's unrelated connection
/// (step 5 fails: the write gets EPIPE, its peer reads EOF), and never connection 5 by its fd (it
/// would only see EOF once the relay noticed its client was shut). Checked by reverting the relay's
/// `set_upstream` calls: step 5 fails.
#[test]
fn drain_after_several_resumes_shuts_the_live_upstream_and_nothing_else() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = upstream.local_addr().unwrap();
    upstream.set_nonblocking(true).unwrap();
    let unrelated = TcpListener::bind("127.0.0.1:0").unwrap();

    let server = start_in_process(&[
        "--upstream",
        &format!("http://{up_addr}"),
        "--workers",
        "1",
        "--no-pin",
        "--shutdown-grace",
        "1500ms",
        "--sse-heartbeat",
        "0",
        "--reconnect-initial",
        BACKOFF,
    ]);

    // 1. The stream, on upstream connection 1.
    let mut client = Client::connect(server.addr);
    client
        .send(&sse_request("/stream", &[]))
        .expect("send the request");
    let (mut conn, head) = accept_request(&upstream);
    assert_eq!(last_event_id(&head), None, "{head}");
    start_stream(&mut conn, 1);
    let head = client.read_head().expect("response head");
    assert_eq!(head.status, 200);
    let mut reader = SseReader::continue_after_head(client, head);
    reader.deadline = Instant::now() + Duration::from_secs(30);
    assert_eq!(next_id(&mut reader), 1);
    let x = tether_fd_of(&conn, up_addr).expect("tether's fd of upstream connection 1");

    // 2. Drop it; answer the immediate reconnect 503; take X while tether backs off.
    drop(conn);
    let (mut refused, head) = accept_request(&upstream);
    assert_eq!(last_event_id(&head).as_deref(), Some("1"), "{head}");
    refused
        .write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    // This process's own sockets share the fd table with tether: the test holds none on X when
    // it takes it (the accepted 503 connection may have got X once tether had freed it).
    drop(refused);
    // Either end of the unrelated connection may land on X by itself; otherwise one is moved.
    let one_end = TcpStream::connect(unrelated.local_addr().unwrap()).unwrap();
    let (other_end, _) = unrelated.accept().unwrap();
    let (mut on_x, mut unrelated_peer) = if one_end.as_raw_fd() == x {
        (one_end, other_end)
    } else if other_end.as_raw_fd() == x {
        (other_end, one_end)
    } else {
        let on_x = dup_onto(&one_end, x, Duration::from_secs(5))
            .unwrap_or_else(|| panic!("fd {x} never became free to take"));
        drop(one_end);
        (on_x, other_end)
    };

    // 3. Resumes on fresh connections, each on an fd other than X.
    let mut live = None;
    for n in 2..=UPSTREAM_CONNECTIONS {
        let (mut conn, head) = accept_request(&upstream);
        let want = (n - 1).to_string();
        assert_eq!(
            last_event_id(&head).as_deref(),
            Some(want.as_str()),
            "{head}"
        );
        start_stream(&mut conn, n);
        assert_eq!(next_id(&mut reader), n, "resume {n}: the next event, once");
        let fd = tether_fd_of(&conn, up_addr).expect("tether's fd of the live upstream");
        assert_ne!(fd, x, "fd {x} belongs to the test's unrelated connection");
        if n < UPSTREAM_CONNECTIONS {
            drop(conn);
        } else {
            live = Some(conn);
        }
    }
    let mut live = live.unwrap();

    // 4. Drain. The stream lives through the grace period, then its live upstream is shut.
    let signalled = Instant::now();
    server.signal(false);
    write_event(&mut live, UPSTREAM_CONNECTIONS + 1);
    assert_eq!(
        next_id(&mut reader),
        UPSTREAM_CONNECTIONS + 1,
        "the stream must keep going during the grace period"
    );
    live.set_read_timeout(Some(GRACE + Duration::from_secs(10)))
        .unwrap();
    let mut tmp = [0u8; 1024];
    let eof = loop {
        match live.read(&mut tmp) {
            Ok(0) => break Ok(()),
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    assert!(
        eof.is_ok(),
        "the live upstream connection was not closed after the grace period: {eof:?}"
    );
    assert!(
        signalled.elapsed() >= GRACE,
        "the live upstream was closed {:?} after the signal, before the grace period ended",
        signalled.elapsed()
    );
    let rest = reader.body_to_end();
    assert!(rest.is_ok(), "the client's response did not end: {rest:?}");
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        server.join();
        let _ = done_tx.send(());
    });
    done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the server did not stop after its grace period");

    // 5. The unrelated connection on fd X was not shut: both directions still carry bytes.
    unrelated_peer
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    on_x.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    on_x.write_all(b"ping")
        .unwrap_or_else(|e| panic!("the unrelated connection on fd {x} was shut: {e}"));
    let mut got = [0u8; 4];
    unrelated_peer.read_exact(&mut got).unwrap_or_else(|e| {
        panic!("the unrelated connection's peer got no bytes (it was shut: {e})")
    });
    assert_eq!(&got, b"ping");
    unrelated_peer.write_all(b"pong").unwrap();
    on_x.read_exact(&mut got)
        .unwrap_or_else(|e| panic!("the unrelated connection on fd {x} cannot read: {e}"));
    assert_eq!(&got, b"pong");
}

/// Starts tether inside this process on 127.0.0.1:0 with `flags`.
fn start_in_process(flags: &[&str]) -> Server {
    let mut argv = vec!["tether", "reverse", "--bind", "127.0.0.1:0"];
    argv.extend_from_slice(flags);
    let Command::Reverse(args) = <Cli as clap::Parser>::try_parse_from(argv)
        .expect("flags")
        .command
    else {
        unreachable!("a reverse command");
    };
    let config = Config::from_args(&args).expect("config");
    Server::start(config).expect("tether starts")
}

/// Accepts one connection within `IO_TIMEOUT` and reads its request head.
fn accept_request(listener: &TcpListener) -> (TcpStream, String) {
    let stop = Instant::now() + IO_TIMEOUT;
    let mut conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < stop => {
                std::thread::sleep(Duration::from_millis(2))
            }
            Err(e) => panic!("no connection from tether: {e}"),
        }
    };
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut head = Vec::new();
    let mut tmp = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut tmp) {
            Ok(0) => panic!("tether closed before a complete request head"),
            Ok(n) => head.extend_from_slice(&tmp[..n]),
            Err(e) => panic!("reading tether's request: {e}"),
        }
    }
    (conn, String::from_utf8_lossy(&head).into_owned())
}

fn last_event_id(head: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("last-event-id")
            .then(|| value.trim().to_string())
    })
}

/// A chunked SSE response head and event `id`.
fn start_stream(conn: &mut TcpStream, id: u64) {
    conn.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .unwrap();
    write_event(conn, id);
}

fn write_event(conn: &mut TcpStream, id: u64) {
    let event = format!("id: {id}\ndata: event {id}\n\n");
    conn.write_all(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes())
        .unwrap();
}

/// The fd of tether's end of `conn` (an upstream connection accepted from tether): the socket of
/// this process whose local address is `conn`'s peer and whose peer is `upstream`.
fn tether_fd_of(conn: &TcpStream, upstream: SocketAddr) -> Option<RawFd> {
    let tether_end = conn.peer_addr().ok()?;
    let fds = std::fs::read_dir("/proc/self/fd").ok()?;
    fds.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<RawFd>().ok())
        .find(|&fd| {
            socket_addr(fd, libc::getsockname) == Some(tether_end)
                && socket_addr(fd, libc::getpeername) == Some(upstream)
        })
}

/// The IPv4 address `get` (getsockname or getpeername) reports for `fd`, if it is such a socket.
fn socket_addr(
    fd: RawFd,
    get: unsafe extern "C" fn(
        libc::c_int,
        *mut libc::sockaddr,
        *mut libc::socklen_t,
    ) -> libc::c_int,
) -> Option<SocketAddr> {
    // SAFETY: `sin` is a zeroed sockaddr_in and `len` its size; the call writes at most `len`
    // bytes and fails harmlessly (EBADF, ENOTSOCK) on an fd that is not a socket.
    unsafe {
        let mut sin: libc::sockaddr_in = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        if get(fd, (&mut sin as *mut libc::sockaddr_in).cast(), &mut len) != 0
            || libc::c_int::from(sin.sin_family) != libc::AF_INET
        {
            return None;
        }
        let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
        Some(SocketAddr::from((ip, u16::from_be(sin.sin_port))))
    }
}

/// A duplicate of `stream` on exactly fd number `target`, taken as soon as `target` is free
/// (within `limit`). `F_DUPFD` picks the lowest free number at or above `target`, atomically, so
/// it never takes a number someone holds; a higher number is given back and the wait goes on.
fn dup_onto(stream: &TcpStream, target: RawFd, limit: Duration) -> Option<TcpStream> {
    let stop = Instant::now() + limit;
    loop {
        // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a valid fd returns a new fd we own, or -1.
        let fd = unsafe { libc::fcntl(stream.as_raw_fd(), libc::F_DUPFD_CLOEXEC, target) };
        assert!(fd >= 0, "F_DUPFD: {}", io::Error::last_os_error());
        if fd == target {
            // SAFETY: `fd` is a fresh duplicate nobody else owns.
            return Some(unsafe { TcpStream::from_raw_fd(fd) });
        }
        // SAFETY: `fd` is the duplicate just made, owned here.
        unsafe { libc::close(fd) };
        if Instant::now() >= stop {
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
