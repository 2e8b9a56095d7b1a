//! The upstream pool against a real upstream that closes idle keep-alive connections (as
//! gunicorn does after 2 s, Node after 5 s): when a pooled connection is probed before reuse,
//! and what happens to a request sent on one the upstream had closed. Runs on whichever driver
//! the environment selects (CI runs it on both).
//!
//! The rule under test (`src/upstream/pool.rs`): a connection that came back moments ago is
//! handed to a request that can be sent twice (no body, idempotent method) without the
//! `MSG_PEEK` probe, because the exchange retries such a request on a fresh connection when the
//! pooled one turns out closed; a request that cannot be sent twice only ever gets a connection
//! the probe found alive.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;

/// How long the upstream keeps an idle keep-alive connection before closing it. Not a timing
/// assertion: the test waits for the upstream's word that it closed, however long that takes.
const UPSTREAM_IDLE_CLOSE: Duration = Duration::from_millis(50);

/// How long the upstream takes to answer a request whose path starts with `/slow`: longer than
/// the `--upstream-pool-idle` of the test that asks for it.
const SLOW_ANSWER: Duration = Duration::from_secs(3);

/// One request as the upstream received it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    /// Which accepted connection (0 = first) it came on.
    conn: usize,
    method: String,
    path: String,
    body: Vec<u8>,
}

/// An upstream that answers keep-alive requests and closes a connection once it has been idle
/// for its idle close (`UPSTREAM_IDLE_CLOSE` unless told) after an answer, then reports the
/// close on `closed`.
struct IdleClosingUpstream {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    closed: Receiver<usize>,
}

impl IdleClosingUpstream {
    fn start() -> IdleClosingUpstream {
        IdleClosingUpstream::closing_after(UPSTREAM_IDLE_CLOSE)
    }

    fn closing_after(idle_close: Duration) -> IdleClosingUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tx, closed) = channel();
        let log = seen.clone();
        thread::spawn(move || {
            for (conn, s) in listener.incoming().enumerate() {
                let Ok(s) = s else { return };
                let (log, tx) = (log.clone(), tx.clone());
                thread::spawn(move || serve(conn, s, idle_close, log, tx));
            }
        });
        IdleClosingUpstream { addr, seen, closed }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits until the upstream has closed one more idle connection.
    fn wait_idle_close(&self) -> usize {
        self.closed
            .recv_timeout(IO_TIMEOUT)
            .expect("the upstream closes its idle connection")
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Serves one connection: each request is answered `conn:path` with keep-alive (a `/slow` one
/// after `SLOW_ANSWER`); after an answer, a connection idle for `idle_close` is closed. A
/// connection closed by the peer before any request is not reported.
fn serve(
    conn: usize,
    mut s: TcpStream,
    idle_close: Duration,
    log: Arc<Mutex<Vec<Seen>>>,
    closed: Sender<usize>,
) {
    let mut buf = Vec::new();
    let mut answered = false;
    loop {
        s.set_read_timeout(Some(if answered { idle_close } else { IO_TIMEOUT }))
            .unwrap();
        let Some((method, path, body)) = read_request(&mut s, &mut buf) else {
            if answered && buf.is_empty() {
                drop(s);
                let _ = closed.send(conn);
            }
            return;
        };
        if path.starts_with("/slow") {
            thread::sleep(SLOW_ANSWER);
        }
        let reply = format!("{conn}:{path}");
        log.lock().unwrap().push(Seen {
            conn,
            method,
            path,
            body,
        });
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{reply}",
            reply.len()
        );
        if s.write_all(answer.as_bytes()).is_err() {
            return;
        }
        answered = true;
    }
}

/// Reads one request (head, and a Content-Length body) from `s`; None when the peer closed,
/// the read failed or the read timeout passed first.
fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, String, Vec<u8>)> {
    let mut tmp = [0u8; 4096];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(n)) = req.parse(buf) {
            let len: usize = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| {
                    std::str::from_utf8(h.value)
                        .unwrap()
                        .trim()
                        .parse()
                        .unwrap()
                })
                .unwrap_or(0);
            if buf.len() >= n + len {
                let method = req.method.unwrap().to_string();
                let path = req.path.unwrap().to_string();
                let body = buf[n..n + len].to_vec();
                buf.drain(..n + len);
                return Some((method, path, body));
            }
        }
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

fn start_tether(up: &IdleClosingUpstream) -> Tether {
    // One worker: both requests meet the same pool.
    Tether::start(&[up.url()], &["--workers", "1", "--log-level", "debug"])
}

#[test]
fn a_get_on_a_connection_the_upstream_closed_moments_ago_is_retried_on_a_fresh_one() {
    let up = IdleClosingUpstream::start();
    let t = start_tether(&up);
    let mut c = Client::connect(t.addr);
    let r = c.get("/one");
    assert_eq!((r.status, r.text().as_str()), (200, "0:/one"));
    // The pooled connection came back a moment ago and is now closed by the upstream.
    assert_eq!(up.wait_idle_close(), 0);
    let r = c.get("/two");
    assert_eq!((r.status, r.text().as_str()), (200, "1:/two"));
    // Taken without the probe (it came back well within the pool's trust window), found closed
    // by the exchange and sent again on a fresh connection. Which path it took is not asserted
    // (a stalled machine may pass the window and probe it instead): both must give this answer.
    let seen = up.seen();
    assert_eq!(
        seen.iter()
            .map(|s| (s.conn, &s.path[..]))
            .collect::<Vec<_>>(),
        [(0, "/one"), (1, "/two")],
        "each request reached the upstream once"
    );
}

#[test]
fn a_post_never_goes_to_a_pooled_connection_the_probe_finds_closed() {
    let up = IdleClosingUpstream::start();
    let t = start_tether(&up);
    let mut c = Client::connect(t.addr);
    let r = c.get("/one");
    assert_eq!((r.status, r.text().as_str()), (200, "0:/one"));
    assert_eq!(up.wait_idle_close(), 0);
    // A POST cannot be sent twice: the pool probes the connection, sees the close and the
    // request goes to a fresh connection, once. Without the probe it would be written to the
    // closed connection and answered 502 (no retry for a request with a body).
    c.send(b"POST /two HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello")
        .unwrap();
    let r = c.read_response(false).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "1:/two"));
    // A DELETE without a body is idempotent: a retry may follow it, the probe is skipped.
    assert_eq!(up.wait_idle_close(), 1);
    c.send(b"DELETE /three HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let r = c.read_response(false).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "2:/three"));
    assert_eq!(up.wait_idle_close(), 2);
    // A POST without a body is not idempotent either: probed.
    c.send(b"POST /four HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let r = c.read_response(false).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "3:/four"));
    let seen = up.seen();
    assert_eq!(
        seen.iter()
            .map(|s| (s.conn, &s.method[..], &s.path[..], &s.body[..]))
            .collect::<Vec<_>>(),
        [
            (0, "GET", "/one", &b""[..]),
            (1, "POST", "/two", &b"hello"[..]),
            (2, "DELETE", "/three", &b""[..]),
            (3, "POST", "/four", &b""[..]),
        ],
        "each request reached the upstream once, on a live connection"
    );
}

#[test]
fn a_busy_keep_alive_client_reuses_one_upstream_connection_throughout() {
    // The rule's reason: requests that follow each other closely share one pooled connection
    // (no probe each time), and the upstream's idle close never costs a request.
    let up = IdleClosingUpstream::start();
    let t = start_tether(&up);
    let mut c = Client::connect(t.addr);
    for i in 0..200 {
        let r = c.get(&format!("/r{i}"));
        assert_eq!(r.status, 200, "request {i}");
        assert!(r.text().ends_with(&format!(":/r{i}")), "request {i}");
    }
    let seen = up.seen();
    assert_eq!(seen.len(), 200, "each request reached the upstream once");
}

#[test]
fn a_connection_whose_answer_took_longer_than_the_pool_idle_limit_is_reused() {
    // The pool stamps a connection when it comes back, not when its request went up: an answer
    // slower than --upstream-pool-idle (an LLM completion, a report) must not come back already
    // aged out, or every such request would cost the next one a fresh upstream connection.
    let up = IdleClosingUpstream::closing_after(IO_TIMEOUT);
    let t = Tether::start(
        &[up.url()],
        &["--workers", "1", "--upstream-pool-idle", "2s"],
    );
    let mut c = Client::connect(t.addr);
    let r = c.get("/slow");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "0:/slow");
    let r = c.get("/next");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        "0:/next",
        "the next request goes on the connection the slow answer came back on"
    );
}
