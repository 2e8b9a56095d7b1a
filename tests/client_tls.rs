//! TLS for clients (issue 15, client side, HTTP/1.1): tether with `--tls-cert`/`--tls-key`
//! (certificates made here by a private CA), reached by rustls clients (tests/common/tls_client.rs:
//! a one-off handshake, and a bridge that lets the plain test clients speak TLS to tether), by
//! curl and by openssl s_client. TLS 1.2 and 1.3, ALPN, SNI between certificates, requests and
//! keep-alive, error answers, SSE resume and replay, a hand-off refused for TLS, a WebSocket
//! tunnel, a slow TLS client cut, garbage and stalled handshakes, certificate reload on SIGHUP,
//! and bad files refused at start. Real sockets on 127.0.0.1; every wait is bounded.

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::tls_client::{any_certificate_config, client_config, handshake, Offer, TlsBridge};
use common::tls_origin::{LeafFiles, TestCa};
use common::websocket::{self, frame, read_frame, read_head, OP_BINARY, OP_TEXT};
use common::*;

/// A CA and a certificate for localhost and 127.0.0.1.
fn loopback_leaf() -> (TestCa, LeafFiles) {
    let ca = TestCa::new("tether client test CA");
    let leaf = ca.leaf_files(&["localhost", "127.0.0.1"]);
    (ca, leaf)
}

/// tether serving `leaf` to its clients, in front of `upstream`.
fn tls_tether(upstream: &str, leaf: &LeafFiles, extra: &[&str]) -> Tether {
    let mut args = vec!["--tls-cert", leaf.cert(), "--tls-key", leaf.key()];
    args.extend_from_slice(extra);
    Tether::start(&[upstream.to_string()], &args)
}

fn log_text(t: &Tether) -> String {
    t.log_lines().join("\n")
}

/// A /metrics sample as a count (0 when absent: a counter never touched may not be rendered).
fn sample(admin: std::net::SocketAddr, name: &str) -> u64 {
    prom_value(&Tether::metrics_text(admin), name).map_or(0, |v| v as u64)
}

/// One request on a fresh TLS connection through `bridge`.
fn get_via(bridge: &TlsBridge, path: &str) -> Response {
    Client::connect(bridge.addr).get(path)
}

// ---- 1. versions, ALPN, requests, keep-alive, error answers -----------------------------------

#[test]
fn tls_1_2_and_1_3_clients_get_requests_bodies_and_keep_alive() {
    let up = origin();
    let (ca, leaf) = loopback_leaf();
    let t = tls_tether(&url_of(&up), &leaf, &["--admin", "127.0.0.1:0"]);
    let admin = t.admin_addr();
    for (offer, want) in [(Offer::Tls12, "TLSv1_2"), (Offer::Tls13, "TLSv1_3")] {
        let bridge = TlsBridge::start(
            t.addr,
            client_config(&ca, offer, &[b"http/1.1"]),
            "localhost",
        );
        let mut c = Client::connect(bridge.addr);
        // Small, large (many TLS records, many reads), chunked, a body sent upstream: one
        // connection, kept alive throughout.
        let r = c.get("/small");
        assert_eq!(r.status, 200, "{offer:?}: {}", r.text());
        assert_eq!(r.body.len(), 100);
        let r = c.get("/bytes?n=300000");
        assert_eq!(r.status, 200);
        let expected: Vec<u8> = pattern(300_000).collect();
        assert_eq!(checksum(&r.body), checksum(&expected));
        let r = c.get("/bytes?n=70000&chunked=1&chunk=1000");
        assert_eq!(r.body.len(), 70_000);
        let body: Vec<u8> = pattern(200_000).collect();
        let mut post = format!(
            "POST /sum HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        post.extend_from_slice(&body);
        c.send(&post).unwrap();
        let r = c.read_response(false).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().contains(&format!("{:016x}", checksum(&body))));
        // Pipelined: two requests in one write, two answers in order.
        c.send(
            b"GET /small HTTP/1.1\r\nHost: t\r\n\r\nGET /bytes?n=10 HTTP/1.1\r\nHost: t\r\n\r\n",
        )
        .unwrap();
        assert_eq!(c.read_response(false).unwrap().body.len(), 100);
        assert_eq!(c.read_response(false).unwrap().body.len(), 10);
        assert_eq!(bridge.versions(), [want], "one connection, {want}");
        // tether's own answers over TLS: 400 (a broken request line), 431 (a huge head).
        let r = get_via(&bridge, "/bad path with spaces");
        assert_eq!(r.status, 400, "{}", r.text());
        let mut c = Client::connect(bridge.addr);
        let huge = format!(
            "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
            "a".repeat(70_000)
        );
        c.send(huge.as_bytes()).unwrap();
        assert_eq!(c.read_response(false).unwrap().status, 431);
    }
    // Handshakes counted by result, the open connections by the gauge.
    assert!(
        sample(admin, "tether_client_tls_handshakes_total{result=\"ok\"}") >= 6,
        "{}",
        Tether::metrics_text(admin)
    );
    assert_eq!(
        sample(
            admin,
            "tether_client_tls_handshakes_total{result=\"failed\"}"
        ),
        0
    );
    let bridge = TlsBridge::start(t.addr, client_config(&ca, Offer::Tls13, &[]), "localhost");
    let open = Client::connect(bridge.addr);
    assert!(wait_until(Duration::from_secs(5), || {
        sample(admin, "tether_client_tls_connections_open") >= 1
    }));
    drop(open);
    assert!(wait_until(Duration::from_secs(5), || {
        sample(admin, "tether_client_tls_connections_open") == 0
    }));
}

#[test]
fn alpn_gives_h2_or_http_1_1_and_refuses_a_client_that_speaks_neither() {
    let up = origin();
    let (ca, leaf) = loopback_leaf();
    let t = tls_tether(&url_of(&up), &leaf, &["--admin", "127.0.0.1:0"]);
    let admin = t.admin_addr();
    // h2 first in tether's list (tests/client_h2.rs serves it).
    let both = handshake(
        t.addr,
        client_config(&ca, Offer::Tls13, &[b"http/1.1", b"h2"]),
        "localhost",
    )
    .expect("h2 + http/1.1");
    assert_eq!(both.alpn.as_deref(), Some(&b"h2"[..]));
    let h1 = handshake(
        t.addr,
        client_config(&ca, Offer::Tls13, &[b"http/1.1"]),
        "localhost",
    )
    .expect("http/1.1");
    assert_eq!(h1.alpn.as_deref(), Some(&b"http/1.1"[..]));
    let mut tls = h1.tls;
    tls.write_all(b"GET /small HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
    let none =
        handshake(t.addr, client_config(&ca, Offer::Tls12, &[]), "localhost").expect("no ALPN");
    assert_eq!(none.alpn, None);
    let other = handshake(
        t.addr,
        client_config(&ca, Offer::Tls13, &[b"spdy/3.1"]),
        "localhost",
    );
    assert!(
        other.is_err(),
        "a client offering neither h2 nor http/1.1 must be refused (no_application_protocol)"
    );
    assert!(wait_until(Duration::from_secs(5), || {
        sample(
            admin,
            "tether_client_tls_failures_total{reason=\"incompatible\"}",
        ) == 1
    }));
}

#[test]
fn sni_chooses_between_certificates_and_the_first_pair_is_the_default() {
    let up = origin();
    let ca = TestCa::new("tether SNI CA");
    let default = ca.leaf_files(&["default.test"]);
    let api = ca.leaf_files(&["api.test", "www.api.test"]);
    let wild = ca.leaf_files(&["*.wild.test"]);
    let t = Tether::start(
        &[url_of(&up)],
        &[
            "--tls-cert",
            default.cert(),
            "--tls-key",
            default.key(),
            "--tls-cert",
            api.cert(),
            "--tls-key",
            api.key(),
            "--tls-cert",
            wild.cert(),
            "--tls-key",
            wild.key(),
        ],
    );
    let presented = |name: &str| {
        handshake(t.addr, any_certificate_config(), name)
            .unwrap_or_else(|e| panic!("{name}: {e}\n{}", log_text(&t)))
            .cert
    };
    assert_eq!(presented("api.test"), api.der);
    assert_eq!(presented("www.api.test"), api.der);
    assert_eq!(presented("default.test"), default.der);
    assert_eq!(presented("x.wild.test"), wild.der);
    // An unknown name, and no name at all (an IP literal sends no SNI): the first pair.
    assert_eq!(presented("unknown.test"), default.der);
    assert_eq!(presented("127.0.0.1"), default.der);
    // A client that verifies gets a chain it can check for the name it asked.
    let verified = handshake(t.addr, client_config(&ca, Offer::Tls12, &[]), "api.test");
    assert!(verified.is_ok(), "{verified:?}");
    // openssl s_client as a second, independent client: TLS 1.2 with SNI api.test.
    let out = Command::new("openssl")
        .args(["s_client", "-tls1_2", "-connect"])
        .arg(t.addr.to_string())
        .args(["-servername", "api.test", "-CAfile"])
        .arg(&ca.pem_path)
        .args([
            "-verify_hostname",
            "api.test",
            "-verify_return_error",
            "-brief",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl is needed for this test (scripts/test.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Protocol version: TLSv1.2"), "{text}");
    // Verified against the CA and the name api.test: the certificate SNI chose.
    assert!(text.contains("Verification: OK"), "{text}");
}

#[test]
fn curl_over_https_reuses_its_connection() {
    let up = origin();
    let (ca, leaf) = loopback_leaf();
    let t = tls_tether(&url_of(&up), &leaf, &[]);
    let port = t.addr.port();
    let url = |p: &str| format!("https://localhost:{port}{p}");
    let out = Command::new("curl")
        .args(["-sS", "--http1.1", "--cacert"])
        .arg(&ca.pem_path)
        .arg("--resolve")
        .arg(format!("localhost:{port}:127.0.0.1"))
        .args([
            "-w",
            "%{http_code} %{http_version} %{num_connects} %{size_download}\\n",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
        ])
        .arg(url("/small"))
        .arg(url("/bytes?n=200000"))
        .output()
        .expect("curl is needed for this test (scripts/test.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    // Both over HTTP/1.1 (curl --http2 gets h2: tests/client_h2.rs), the second on the first's
    // connection.
    assert_eq!(lines, ["200 1.1 1 100", "200 1.1 0 200000"], "{stdout}");
}

// ---- 2. SSE over TLS ------------------------------------------------------------------------

#[test]
fn an_sse_stream_over_tls_is_resumed_when_its_upstream_drops() {
    let up = origin();
    let (ca, leaf) = loopback_leaf();
    let t = tls_tether(&url_of(&up), &leaf, &[]);
    let bridge = TlsBridge::start(t.addr, client_config(&ca, Offer::Tls13, &[]), "localhost");
    // The upstream resets its connection every 15 events.
    let mut r = SseReader::get(
        bridge.addr,
        "/sse?events=60&rate=200&ts=0&reset_after=15",
        &[],
    );
    assert_eq!(r.head.status, 200);
    let (ids, why) = ids_through(&mut r, 60);
    assert!(why.is_none(), "{why:?}\n{}", log_text(&t));
    assert_eq!(
        ids,
        (1..=60).collect::<Vec<u64>>(),
        "every event once, in order"
    );
    let resumes = up
        .requests()
        .into_iter()
        .filter(|q| q.path.starts_with("/sse") && q.last_event_id.is_some())
        .count();
    assert!(resumes >= 3, "{resumes} resumes\n{}", log_text(&t));
}

#[test]
fn a_replay_by_last_event_id_over_tls_comes_from_the_ring() {
    let up = origin();
    let (ca, leaf) = loopback_leaf();
    let t = tls_tether(
        &url_of(&up),
        &leaf,
        &["--workers", "1", "--sse-heartbeat", "0"],
    );
    let bridge = TlsBridge::start(t.addr, client_config(&ca, Offer::Tls12, &[]), "localhost");
    let path = "/sse?events=500&rate=0&ts=0&resume_status=204&ended=1";
    let mut first = SseReader::get(bridge.addr, path, &[]);
    assert_eq!(
        num_ids(&first.events_to_end()),
        (1..=500).collect::<Vec<u64>>()
    );
    drop(first);
    let mut late = SseReader::get(bridge.addr, path, &["Last-Event-ID: 420"]);
    assert_eq!(late.head.status, 200, "{}", log_text(&t));
    assert_eq!(
        num_ids(&late.events_to_end()),
        (421..=500).collect::<Vec<u64>>()
    );
    assert_eq!(
        late.clean_end,
        Some(true),
        "the replay's response ends cleanly"
    );
}

/// A TLS reconnection that lands on the worker that does not hold its stream is handed over to
/// the holder with its session (a duplicate of the descriptor and the rustls state), as a plain
/// one is: it follows the held stream there, every event once and in order, and nothing more is
/// asked upstream (a POST-born stream could not be asked again). Before, the TLS client was
/// served where it landed: a copy of the ring, then an upstream request of its own.
#[test]
fn a_tls_comeback_on_the_other_worker_is_handed_to_the_worker_holding_its_stream() {
    let up = origin();
    let (ca, leaf) = loopback_leaf();
    let t = tls_tether(
        &url_of(&up),
        &leaf,
        &[
            "--workers",
            "2",
            "--hold-upstream",
            "5s",
            "--sse-heartbeat",
            "0",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let admin = t.admin_addr();
    let bridge = TlsBridge::start(t.addr, client_config(&ca, Offer::Tls13, &[]), "localhost");
    let path = "/sse?events=40&rate=20&ts=0&held=tls";
    let mut a = SseReader::get(bridge.addr, path, &[]);
    let (first, stopped) = ids_through(&mut a, 5);
    assert_eq!((first, stopped), ((1..=5).collect::<Vec<u64>>(), None));
    drop(a);
    assert!(
        wait_until(Duration::from_secs(5), || {
            worker_with_stream(admin, path, Some("held")).is_some()
        }),
        "not held\n{}",
        log_text(&t)
    );
    let holder = worker_with_stream(admin, path, Some("held")).unwrap();
    let client = (0..40)
        .map(|_| Client::connect(bridge.addr))
        .find_map(|mut c| (serving_worker(&t, &mut c, "/bytes?n=1") != holder).then_some(c))
        .expect("a TLS connection on the other worker");
    let open = |w: usize| {
        prom_value(
            &Tether::metrics_text(admin),
            &format!("tether_worker_client_tls_connections_open{{worker=\"{w}\"}}"),
        )
        .unwrap_or(0.0)
    };
    let (holder_before, other_before) = (open(holder), open(1 - holder));
    let mut back = SseReader::on(client, &sse_request(path, &["Last-Event-ID: 5"]));
    assert_eq!(back.head.status, 200, "{}", log_text(&t));
    back.deadline = Instant::now() + Duration::from_secs(15);
    let (ids, end) = ids_through(&mut back, 40);
    assert_eq!(
        ids,
        (6..=40).collect::<Vec<u64>>(),
        "{end:?}\n{}",
        log_text(&t)
    );
    let asked: Vec<_> = up
        .requests()
        .into_iter()
        .filter(|q| q.path.starts_with("/sse"))
        .collect();
    // The held stream's own resumes carry its first request's id; a request of the comeback's
    // own would carry another.
    let request_id = |q: &tether_perf::RequestRecord| {
        q.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("x-request-id"))
            .map(|(_, v)| v.clone())
    };
    assert!(
        asked.iter().all(|q| request_id(q) == request_id(&asked[0])),
        "the comeback went upstream: {asked:?}"
    );
    assert_eq!(
        prom_value(
            &Tether::metrics_text(admin),
            "tether_sse_hold_resumed_total"
        ),
        Some(1.0)
    );
    // The connection is counted where it lives now: one more open TLS connection on the
    // holder, one fewer on the worker that handed it over (the probes' connections through the
    // bridge stay as they were meanwhile).
    let (holder_after, other_after) = (open(holder), open(1 - holder));
    assert_eq!(
        (holder_after, other_after),
        (holder_before + 1.0, other_before - 1.0),
        "open TLS connections on the holder and the other worker"
    );
    drop(back);
}

#[test]
fn a_tls_client_that_stops_reading_is_cut_while_another_gets_every_event() {
    let up = origin();
    let (ca, leaf) = loopback_leaf();
    let t = tls_tether(
        &url_of(&up),
        &leaf,
        &[
            "--workers",
            "1",
            "--coalesce",
            "--sse-client-buffer",
            "512KiB",
            "--replay-events",
            "100000",
            "--replay-bytes",
            "64MiB",
            "--sse-heartbeat",
            "0",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let admin = t.admin_addr();
    let bridge = TlsBridge::start(t.addr, client_config(&ca, Offer::Tls13, &[]), "localhost");
    let path = "/sse?events=0&size=8000&rate=500&ts=0&tls_cut=1";
    let mut a = SseReader::get(bridge.addr, path, &[]);
    assert_eq!(a.head.status, 200);
    a.deadline = Instant::now() + Duration::from_secs(40);
    let a_first = next_id(&mut a);
    // B joins the stream and reads nothing after its head (a small receive buffer: the bridge
    // blocks on it, then stops reading tether).
    let client = Client::connect(bridge.addr);
    set_recv_buffer(&client.stream, 4096);
    let b = SseReader::on(client, &sse_request(path, &[]));
    assert_eq!(b.head.status, 200);
    let progress = AtomicU64::new(a_first);
    let stop_at = AtomicU64::new(u64::MAX);
    let (a_ids, stopped, cut) = thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut ids = vec![a_first];
            loop {
                let (more, stopped) = ids_through(&mut a, ids.last().unwrap() + 1);
                ids.extend(&more);
                if stopped.is_some() {
                    return (ids, stopped);
                }
                let last = *ids.last().unwrap();
                progress.store(last, Ordering::SeqCst);
                if last >= stop_at.load(Ordering::SeqCst) {
                    return (ids, None);
                }
            }
        });
        let cut = wait_until(Duration::from_secs(30), || {
            reader.is_finished() || sample(admin, "tether_sse_slow_clients_total") >= 1
        });
        stop_at.store(progress.load(Ordering::SeqCst) + 100, Ordering::SeqCst);
        let (ids, stopped) = reader.join().unwrap();
        (ids, stopped, cut)
    });
    drop(b);
    assert!(
        stopped.is_none() && consecutive(&a_ids),
        "A must get every event in order: {}..={} ({} events), stopped {stopped:?}\n{}",
        a_ids[0],
        a_ids.last().unwrap(),
        a_ids.len(),
        log_text(&t)
    );
    assert!(cut, "B was never cut\n{}", log_text(&t));
    assert_eq!(sample(admin, "tether_sse_slow_clients_total"), 1, "only B");
}

// ---- 3. tunnels -----------------------------------------------------------------------------

#[test]
fn a_websocket_tunnel_runs_over_a_tls_client_connection() {
    let (plain_url, _heads) = websocket::echo_server();
    let (ca, leaf) = loopback_leaf();
    let t = tls_tether(&plain_url, &leaf, &[]);
    let bridge = TlsBridge::start(t.addr, client_config(&ca, Offer::Tls13, &[]), "localhost");
    let mut s = std::net::TcpStream::connect(bridge.addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut first =
        "GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            .to_string()
            .into_bytes();
    first.extend_from_slice(&frame(OP_TEXT, b"early bird", Some([1, 2, 3, 4])));
    s.write_all(&first).unwrap();
    let head = read_head(&mut s).unwrap_or_else(|e| panic!("{e}\n{}", log_text(&t)));
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(
        read_frame(&mut s).unwrap(),
        (OP_TEXT, websocket::GREETING.to_vec())
    );
    assert_eq!(
        read_frame(&mut s).unwrap(),
        (OP_TEXT, b"early bird".to_vec())
    );
    // More than a TLS record and a socket buffer, both ways at once.
    let big: Vec<u8> = pattern(300_000).collect();
    let masked = frame(OP_BINARY, &big, Some([5, 6, 7, 8]));
    let writer = {
        let mut w = s.try_clone().unwrap();
        thread::spawn(move || w.write_all(&masked).unwrap())
    };
    let (op, echoed) = read_frame(&mut s).unwrap();
    writer.join().unwrap();
    assert_eq!(op, OP_BINARY);
    assert_eq!(checksum(&echoed), checksum(&big));
}

// ---- 4. hostile handshakes --------------------------------------------------------------------

#[test]
fn garbage_and_stalled_handshakes_are_closed_within_the_header_timeout() {
    let up = origin();
    let (ca, leaf) = loopback_leaf();
    let t = tls_tether(
        &url_of(&up),
        &leaf,
        &[
            "--workers",
            "1",
            "--header-timeout",
            "1s",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let admin = t.admin_addr();
    // Plain HTTP to the TLS port: refused at once (an alert, then the close).
    let started = Instant::now();
    let mut plain = std::net::TcpStream::connect(t.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    assert!(!got.starts_with(b"HTTP/"), "no HTTP answer on the TLS port");
    // A client that connects and says nothing, and one that stops mid-handshake (half a
    // ClientHello): both closed after --header-timeout, while another client is served.
    let started = Instant::now();
    let mut silent = std::net::TcpStream::connect(t.addr).unwrap();
    let mut half = std::net::TcpStream::connect(t.addr).unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
        .unwrap();
    let bridge = TlsBridge::start(t.addr, client_config(&ca, Offer::Tls13, &[]), "localhost");
    assert_eq!(get_via(&bridge, "/small").status, 200, "served meanwhile");
    for s in [&mut silent, &mut half] {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(3),
        "closed after {waited:?}"
    );
    assert!(wait_until(Duration::from_secs(3), || {
        sample(
            admin,
            "tether_client_tls_failures_total{reason=\"timeout\"}",
        ) == 2
    }));
    assert_eq!(
        sample(
            admin,
            "tether_client_tls_failures_total{reason=\"not_tls\"}"
        ),
        1
    );
    assert_eq!(
        sample(
            admin,
            "tether_client_tls_handshakes_total{result=\"failed\"}"
        ),
        3
    );
    // Logged, but once per interval: the first failure's line, not three.
    let lines = t
        .log_lines()
        .iter()
        .filter(|l| l.contains("TLS handshake with client"))
        .count();
    assert_eq!(lines, 1, "{}", log_text(&t));
}

// ---- 5. reload --------------------------------------------------------------------------------

#[test]
fn certificates_reload_on_sighup_while_a_stream_keeps_flowing() {
    let up = origin();
    let ca = TestCa::new("tether reload CA");
    let old = ca.leaf_files(&["localhost"]);
    let new = ca.leaf_files(&["localhost"]);
    // The files tether is given: the old pair now, the new one copied over them later.
    let dir = std::env::temp_dir().join(format!("tether-reload-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
    std::fs::copy(&old.cert_path, &cert).unwrap();
    std::fs::copy(&old.key_path, &key).unwrap();
    let t = Tether::start(
        &[url_of(&up)],
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let admin = t.admin_addr();
    let seen = || {
        handshake(t.addr, any_certificate_config(), "localhost")
            .unwrap()
            .cert
    };
    assert_eq!(seen(), old.der);
    let bridge = TlsBridge::start(t.addr, client_config(&ca, Offer::Tls13, &[]), "localhost");
    let mut stream = SseReader::get(bridge.addr, "/sse?events=80&rate=40&ts=0", &[]);
    let (first, why) = ids_through(&mut stream, 10);
    assert!(why.is_none());

    // A broken key: the reload is refused, named, counted; the old certificate stays.
    std::fs::write(&key, "not a key").unwrap();
    t.signal(libc::SIGHUP);
    assert!(
        t.wait_for_log("certificate reload refused", Duration::from_secs(5)),
        "{}",
        log_text(&t)
    );
    assert!(log_text(&t).contains(&format!("{}: no private key in it", key.display())));
    assert_eq!(
        sample(admin, "tether_config_reloads_total{result=\"error\"}"),
        1
    );
    assert_eq!(seen(), old.der);

    std::fs::copy(&new.cert_path, &cert).unwrap();
    std::fs::copy(&new.key_path, &key).unwrap();
    t.signal(libc::SIGHUP);
    assert!(
        t.wait_for_log("certificates re-read", Duration::from_secs(5)),
        "{}",
        log_text(&t)
    );
    assert!(
        wait_until(Duration::from_secs(5), || seen() == new.der),
        "new connections get the new certificate"
    );
    // The stream opened before goes on: every event once, in order.
    let (rest, why) = ids_through(&mut stream, 80);
    assert!(why.is_none(), "{why:?}\n{}", log_text(&t));
    let mut all = first;
    all.extend(rest);
    assert_eq!(all, (1..=80).collect::<Vec<u64>>());
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- 6. bad files at start --------------------------------------------------------------------

/// Starts tether with `args` (after --bind and --upstream) and returns its log; it must fail.
fn refused_start(args: &[&str]) -> String {
    let mut all: Vec<String> = [
        "reverse",
        "--bind",
        "127.0.0.1:0",
        "--upstream",
        "http://127.0.0.1:1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    all.extend(args.iter().map(|s| s.to_string()));
    match Tether::start_args(&all) {
        Ok(_) => panic!("tether started with {args:?}"),
        Err(log) => log.join("\n"),
    }
}

/// `tether check` with `args`: its exit status and output.
fn check(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args([
            "check",
            "--bind",
            "127.0.0.1:0",
            "--upstream",
            "http://127.0.0.1:1",
        ])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn bad_certificate_files_are_refused_at_start_naming_the_file() {
    let (_ca, leaf) = loopback_leaf();
    let other = TestCa::new("other").leaf_files(&["localhost"]);
    let dir = std::env::temp_dir().join(format!("tether-bad-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "hello, not PEM\n").unwrap();
    let missing = dir.join("missing.pem");
    let ed = dir.join("unsupported.key");
    // An Ed448 key: PEM rustls reads, a key type its provider cannot sign with.
    let made = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed448", "-out"])
        .arg(&ed)
        .status()
        .expect("openssl is needed for this test (scripts/test.sh installs it)");
    assert!(made.success());
    let (g, m, e) = (
        garbage.to_str().unwrap(),
        missing.to_str().unwrap(),
        ed.to_str().unwrap(),
    );
    let cases: Vec<(Vec<&str>, String)> = vec![
        (
            vec!["--tls-cert", m, "--tls-key", leaf.key()],
            format!("{m}: cannot read it"),
        ),
        (
            vec!["--tls-cert", g, "--tls-key", leaf.key()],
            format!("{g}: no certificate in it"),
        ),
        (
            vec!["--tls-cert", leaf.cert(), "--tls-key", g],
            format!("{g}: no private key in it"),
        ),
        (
            vec!["--tls-cert", leaf.cert(), "--tls-key", other.key()],
            format!(
                "{}: this key does not belong to the certificate in {}",
                other.key(),
                leaf.cert()
            ),
        ),
        (
            vec!["--tls-cert", leaf.cert(), "--tls-key", e],
            format!("{e}: unsupported private key"),
        ),
        (
            vec![
                "--tls-cert",
                leaf.cert(),
                "--tls-key",
                leaf.key(),
                "--tls-cert",
                leaf.cert(),
            ],
            "2 --tls-cert but 1 --tls-key".to_string(),
        ),
    ];
    for (args, want) in &cases {
        let log = refused_start(args);
        assert!(log.contains(want), "{args:?}: want {want:?} in:\n{log}");
        let (ok, out) = check(args);
        assert!(
            !ok && out.contains(want),
            "tether check {args:?}: want {want:?} in:\n{out}"
        );
    }
    let (ok, out) = check(&["--tls-cert", leaf.cert(), "--tls-key", leaf.key()]);
    assert!(ok, "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}
