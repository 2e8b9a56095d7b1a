//! The HTTP/1.1 reverse proxy end to end: real tether process, real simulator upstream, real
//! loopback sockets. Runs on whichever driver the environment selects (CI runs it on both).

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn small_get_is_proxied_with_its_body() {
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &[]);
    let mut c = Client::connect(t.addr);
    let r = c.get("/small");
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 100);
    assert_eq!(r.header("content-length"), Some("100"));
}

#[test]
fn a_thousand_requests_on_one_keep_alive_connection() {
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &[]);
    let mut c = Client::connect(t.addr);
    for i in 0..1000 {
        let r = c.get(&format!("/bytes?n={}", i % 300));
        assert_eq!(r.status, 200, "request {i}");
        assert!(
            r.body.iter().copied().eq(pattern(i % 300)),
            "body of request {i}"
        );
    }
    // The upstream side was pooled too: far fewer upstream connections than requests.
    let conns: std::collections::HashSet<u64> = up.requests().iter().map(|r| r.conn_id).collect();
    assert!(
        conns.len() <= 2,
        "1000 sequential requests used {} upstream connections",
        conns.len()
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &[]);
    let mut c = Client::connect(t.addr);
    c.send(b"GET /bytes?n=5 HTTP/1.1\r\nHost: a\r\n\r\nGET /bytes?n=7 HTTP/1.1\r\nHost: a\r\n\r\nGET /bytes?n=9 HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    for n in [5, 7, 9] {
        let r = c.read_response(false).unwrap();
        assert_eq!(r.body.len(), n);
    }
}

#[test]
fn two_hundred_concurrent_clients() {
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &[]);
    let addr = t.addr;
    let handles: Vec<_> = (0..200)
        .map(|i| {
            thread::spawn(move || {
                let mut c = Client::connect(addr);
                for j in 0..5 {
                    let n = (i * 7 + j) % 5000;
                    let r = c.get(&format!("/bytes?n={n}"));
                    assert_eq!(r.status, 200);
                    assert!(r.body.iter().copied().eq(pattern(n)));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("client thread");
    }
    assert_eq!(up.requests().len(), 1000);
}

#[test]
fn hundred_megabyte_download_is_streamed_intact() {
    const N: usize = 100 * 1024 * 1024;
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &[]);
    let mut c = Client::connect(t.addr);
    c.send(format!("GET /bytes?n={N} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes())
        .unwrap();
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), N);
    let expected = pattern(N).collect::<Vec<u8>>();
    assert_eq!(checksum(&r.body), checksum(&expected));
}

#[test]
fn hundred_megabyte_upload_is_streamed_intact() {
    const N: usize = 100 * 1024 * 1024;
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &[]);
    let body: Vec<u8> = (0..N).map(|i| (i * 31 % 253) as u8).collect();
    let mut c = Client::connect(t.addr);
    c.send(format!("POST /sum HTTP/1.1\r\nHost: a\r\nContent-Length: {N}\r\n\r\n").as_bytes())
        .unwrap();
    for piece in body.chunks(1 << 20) {
        c.send(piece).unwrap();
    }
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.text(),
        format!("{{\"len\":{N},\"fnv1a64\":\"{:016x}\"}}", checksum(&body))
    );
}

#[test]
fn chunked_request_body_reaches_upstream_intact() {
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &[]);
    let mut c = Client::connect(t.addr);
    let pieces: Vec<Vec<u8>> = (1..200).map(|i| vec![(i % 256) as u8; i * 13]).collect();
    let mut raw = b"POST /sum HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for (i, p) in pieces.iter().enumerate() {
        // extensions are accepted
        if i % 3 == 0 {
            raw.extend_from_slice(format!("{:x};ext=1\r\n", p.len()).as_bytes());
        } else {
            raw.extend_from_slice(format!("{:X}\r\n", p.len()).as_bytes());
        }
        raw.extend_from_slice(p);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\nX-Trailer: yes\r\n\r\n");
    c.send(&raw).unwrap();
    let all: Vec<u8> = pieces.concat();
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        format!(
            "{{\"len\":{},\"fnv1a64\":\"{:016x}\"}}",
            all.len(),
            checksum(&all)
        )
    );
    // The connection stays usable after a chunked body with trailers.
    assert_eq!(c.get("/small").status, 200);
}

#[test]
fn chunked_and_close_delimited_responses_are_reframed() {
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &[]);
    let mut c = Client::connect(t.addr);
    let r = c.get("/bytes?n=100000&chunked=1&chunk=777");
    assert_eq!(r.framing, "chunked");
    assert!(r.body.iter().copied().eq(pattern(100_000)));
    // A close-delimited upstream body reaches an HTTP/1.1 client chunked, and the client
    // connection survives it.
    let r = c.get("/bytes?n=50000&close=1");
    assert_eq!(r.framing, "chunked");
    assert!(r.body.iter().copied().eq(pattern(50_000)));
    assert_eq!(c.get("/small").status, 200);
    // An HTTP/1.0 client gets it close-delimited.
    let (r, _) = send_raw(
        t.addr,
        b"GET /bytes?n=5000&chunked=1&chunk=100 HTTP/1.0\r\nHost: a\r\n\r\n",
    );
    assert_eq!(r.framing, "close");
    assert!(r.body.iter().copied().eq(pattern(5000)));
}

#[test]
fn http10_keep_alive_is_honoured_and_default_close_too() {
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &[]);
    let mut c = Client::connect(t.addr);
    for _ in 0..3 {
        c.send(b"GET /small HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let r = c.read_response(false).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("connection")
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("keep-alive")
        );
    }
    let (r, mut c) = send_raw(t.addr, b"GET /small HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(c.is_closed(), "HTTP/1.0 without keep-alive must be closed");
}

#[test]
fn head_204_and_304_have_no_body() {
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &[]);
    let mut c = Client::connect(t.addr);
    c.send(b"HEAD /bytes?n=1234 HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    let r = c.read_response(true).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some("1234"),
        "HEAD keeps the representation's length"
    );
    for code in [204, 304] {
        let r = c.get(&format!("/status/{code}"));
        assert_eq!(r.status, code);
        assert!(r.body.is_empty());
    }
    // Nothing stray was left on the connection by any of them.
    let r = c.get("/bytes?n=10");
    assert_eq!(r.body.len(), 10);
}

#[test]
fn expect_100_continue_is_answered_before_the_body() {
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &[]);
    let mut c = Client::connect(t.addr);
    c.send(b"POST /sum HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let interim = c.read_response(false).unwrap();
    assert_eq!(interim.status, 100);
    c.send(b"hello").unwrap();
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        format!("{{\"len\":5,\"fnv1a64\":\"{:016x}\"}}", checksum(b"hello"))
    );
}

#[test]
fn hop_by_hop_headers_are_removed_and_forwarding_headers_set() {
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &[]);
    let mut c = Client::connect(t.addr);
    c.send(
        b"GET /headers HTTP/1.1\r\nHost: example.test\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n\
Keep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\nUpgrade: websocket\r\nProxy-Authorization: Basic eA==\r\n\
Proxy-Connection: keep-alive\r\nX-Forwarded-For: 10.0.0.1\r\nX-Kept: yes\r\n\r\n",
    )
    .unwrap();
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 200);
    let seen = r.text().to_ascii_lowercase();
    for gone in [
        "x-secret",
        "keep-alive:",
        "\nte:",
        "trailer:",
        "upgrade:",
        "proxy-authorization",
        "proxy-connection",
        "connection:",
    ] {
        assert!(!seen.contains(gone), "upstream saw {gone:?}:\n{seen}");
    }
    assert!(
        seen.contains("host: example.test\r\n"),
        "Host preserved:\n{seen}"
    );
    assert!(seen.contains("x-kept: yes\r\n"));
    assert!(
        seen.contains("x-forwarded-for: 10.0.0.1, 127.0.0.1\r\n"),
        "{seen}"
    );
    assert!(seen.contains("x-forwarded-proto: http\r\n"), "{seen}");
    assert!(
        seen.contains("x-forwarded-host: example.test\r\n"),
        "{seen}"
    );
}

#[test]
fn upstream_path_prefix_is_prepended() {
    let up = origin();
    let t = Tether::start(&[format!("{}/status", url_of(&up))], &[]);
    let mut c = Client::connect(t.addr);
    let r = c.get("/418");
    assert_eq!(r.status, 418);
    assert_eq!(up.requests().last().unwrap().path, "/status/418");
}

#[test]
fn upstream_down_gives_a_generic_502_quickly_and_logs_the_cause() {
    let dead = closed_port_url();
    let addr = dead.trim_start_matches("http://").to_string();
    let port = addr.rsplit(':').next().unwrap().to_string();
    let t = Tether::start(std::slice::from_ref(&dead), &[]);
    let started = Instant::now();
    let (r, mut c) = send_raw(t.addr, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
    let took = started.elapsed();
    assert_eq!(r.status, 502);
    // The client learns that no upstream answered, not where the upstreams are.
    let body = r.text();
    assert!(
        body.contains("no upstream server could be reached"),
        "{body}"
    );
    assert!(!body.contains("127.0.0.1"), "{body}");
    assert!(!body.contains(&port), "{body}");
    assert!(c.is_closed());
    // Not a timing assertion of performance: a refused connect must not wait for the connect
    // timeout (2s by default).
    assert!(took < Duration::from_secs(2), "502 took {took:?}");
    // The operator's log line has the cause and the address.
    assert!(
        t.wait_for_log(&format!("({addr}) refused the connection"), IO_TIMEOUT),
        "{:?}",
        t.log_lines()
    );
}

#[test]
fn a_refusing_replica_is_skipped_for_the_next() {
    let up = origin();
    let dead = closed_port_url();
    let t = Tether::start(&[dead, url_of(&up)], &["--workers", "1"]);
    let mut c = Client::connect(t.addr);
    for _ in 0..10 {
        assert_eq!(c.get("/small").status, 200);
    }
    assert_eq!(up.requests().len(), 10);
}

#[test]
fn slow_upstream_gives_504() {
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &["--upstream-header-timeout", "300ms"]);
    let (r, _) = send_raw(t.addr, b"GET /delay?ms=3000 HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(r.status, 504);
    assert!(r.text().contains("upstream"), "{}", r.text());
}

#[test]
fn client_gone_mid_request_abandons_the_upstream_request() {
    // A raw upstream that reads a request and then waits: it must see its connection closed once
    // the client leaves.
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = upstream.local_addr().unwrap();
    let (arrived_tx, arrived) = std::sync::mpsc::channel();
    let watcher = thread::spawn(move || {
        let (mut s, _) = upstream.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        let mut buf = [0u8; 4096];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0);
            got.extend_from_slice(&buf[..n]);
        }
        arrived_tx.send(()).unwrap();
        let started = Instant::now();
        // Now wait for EOF: the proxy must close this connection after the client leaves.
        match s.read(&mut buf) {
            Ok(0) => started.elapsed(),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => started.elapsed(),
            other => panic!("upstream connection not closed: {other:?}"),
        }
    });
    let t = Tether::start(&[format!("http://{up_addr}")], &[]);
    let mut c = Client::connect(t.addr);
    c.send(b"GET /long-poll HTTP/1.1\r\nHost: a\r\n\r\n")
        .unwrap();
    // Leave once the request is at the upstream (the exchange is in flight).
    arrived
        .recv_timeout(IO_TIMEOUT)
        .expect("the request reached the upstream");
    drop(c);
    let waited = watcher.join().expect("upstream watcher");
    assert!(
        waited < Duration::from_secs(10),
        "upstream kept for {waited:?}"
    );
}

/// Reads one request head from `s` (bounded by its read timeout); false if the peer closed or the
/// read failed first.
fn read_request_head(s: &mut std::net::TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    true
}

#[test]
fn stale_pooled_connection_is_replaced_transparently() {
    // The case the retry exists for: the upstream closes a pooled connection just as the next
    // request is sent on it, too late for the pool's MSG_PEEK probe to see (the probe saw a live,
    // quiet socket). This upstream answers the first request with keep-alive, then reads the
    // second one on the same connection and closes without a byte of answer. The proxy must send
    // the request again on a fresh connection, which answers it.
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = upstream.local_addr().unwrap();
    let origin = thread::spawn(move || {
        let (mut first, _) = upstream.accept().unwrap();
        first.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        assert!(read_request_head(&mut first), "first request");
        first
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
            .unwrap();
        // The second request arrives on the pooled connection: close without answering.
        assert!(
            read_request_head(&mut first),
            "second request on the pooled connection"
        );
        drop(first);
        let (mut fresh, _) = upstream.accept().unwrap();
        fresh.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        assert!(read_request_head(&mut fresh), "the retried request");
        fresh
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nretried")
            .unwrap();
        // Hold the connection until the proxy is done with it (it closes when the test ends).
        let mut rest = [0u8; 64];
        let _ = fresh.read(&mut rest);
    });
    let t = Tether::start(
        &[format!("http://{up_addr}")],
        &["--workers", "1", "--log-level", "debug"],
    );
    let mut c = Client::connect(t.addr);
    let r = c.get("/one");
    assert_eq!((r.status, r.text().as_str()), (200, "first"));
    let r = c.get("/two");
    assert_eq!((r.status, r.text().as_str()), (200, "retried"));
    assert!(
        t.wait_for_log(
            "pooled upstream connection was closed; retrying",
            IO_TIMEOUT
        ),
        "the retry path was not taken: {:?}",
        t.log_lines()
    );
    drop(t);
    origin.join().expect("the origin saw both connections");
}

#[test]
fn upstream_cut_mid_body_truncates_the_client_response() {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let up_addr = upstream.local_addr().unwrap();
    thread::spawn(move || {
        let Ok((mut s, _)) = upstream.accept() else {
            return;
        };
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly-a-bit");
        // Part of the scenario, not synchronisation: the upstream dies a moment after sending
        // part of its body (the proxy has relayed it by then or not; the client must see a
        // cut body either way).
        thread::sleep(Duration::from_millis(200));
    });
    let t = Tether::start(&[format!("http://{up_addr}")], &[]);
    let mut c = Client::connect(t.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let err = c
        .read_response(false)
        .expect_err("a cut body must not look complete");
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
}
