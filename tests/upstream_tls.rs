//! `https://` upstreams (issue 15, upstream side): tether in front of a TLS origin (rustls server
//! threads in front of the upstream simulator, tests/common/tls_origin.rs) whose certificates are
//! made here by a private CA. Plain requests and keep-alive reuse, an SSE stream resumed after
//! its TLS upstream is killed, refused certificates (502 with the reason logged), the explicit
//! `--upstream-insecure`, TLS 1.2 and 1.3, SNI, WebSocket tunnels over TLS, and `/metrics`.
//! Real sockets on 127.0.0.1; every wait is bounded.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::tls_origin::{TestCa, TlsOrigin, Versions};
use common::websocket::{self, frame, read_frame, read_head, OP_BINARY, OP_CLOSE, OP_TEXT};
use common::*;

/// A CA and an origin whose certificate names 127.0.0.1 and localhost.
fn origin_for_loopback(versions: Versions) -> (TestCa, TlsOrigin) {
    let ca = TestCa::new("tether test CA");
    let origin = TlsOrigin::start(ca.leaf(&["127.0.0.1", "localhost"]), versions);
    (ca, origin)
}

fn ca_arg(ca: &TestCa) -> &str {
    ca.pem_path.to_str().unwrap()
}

/// `tether_upstream_tls_failures_total{reason="..."}` from a scrape.
fn tls_failures(admin: std::net::SocketAddr, reason: &str) -> u64 {
    let (_, text) = admin_get(admin, "/metrics");
    let name = format!("tether_upstream_tls_failures_total{{reason=\"{reason}\"}}");
    metric(&text, &name)
}

#[test]
fn plain_requests_and_keep_alive_reuse_over_https_with_a_private_ca() {
    let (ca, origin) = origin_for_loopback(Versions::Tls13);
    let t = Tether::start(
        &[origin.url()],
        &[
            "--upstream-ca",
            ca_arg(&ca),
            "--workers",
            "1",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    assert!(
        t.wait_for_log("are verified against", Duration::from_secs(5)),
        "{}",
        t.log_lines().join("\n")
    );
    let admin = admin_addr(&t);
    let mut c = Client::connect(t.addr);
    // Small, large (several TLS records, several reads), chunked, and a body sent upstream.
    let r = c.get("/small");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.body.len(), 100);
    let r = c.get("/bytes?n=300000");
    assert_eq!(r.status, 200);
    let expected: Vec<u8> = pattern(300_000).collect();
    assert_eq!(checksum(&r.body), checksum(&expected));
    let r = c.get("/bytes?n=70000&chunked=1&chunk=1000");
    assert_eq!(r.status, 200);
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
    assert!(
        r.text().contains(&format!("{:016x}", checksum(&body))),
        "{}",
        r.text()
    );
    for _ in 0..5 {
        assert_eq!(c.get("/small").status, 200);
    }
    // One worker, one pooled TLS connection for all nine requests.
    assert_eq!(origin.handshakes(), 1, "the TLS connection was not reused");
    let conns: std::collections::HashSet<u64> =
        origin.sim().requests().iter().map(|r| r.conn_id).collect();
    assert_eq!(conns.len(), 1, "{conns:?}");
    assert_eq!(scrape(admin, "tether_upstream_tls_handshakes_total"), 1);
    // An IP literal: verified against the certificate's IP address, no SNI sent.
    assert_eq!(origin.sni(), vec![None]);
}

#[test]
fn a_host_name_is_sent_as_sni_and_sessions_resume_per_worker() {
    let (ca, origin) = origin_for_loopback(Versions::Tls13);
    // No pooling: every request makes a TLS connection; the second and later resume.
    let t = Tether::start(
        &[origin.url_named("localhost")],
        &[
            "--upstream-ca",
            ca_arg(&ca),
            "--workers",
            "1",
            "--upstream-pool-size",
            "0",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let admin = admin_addr(&t);
    for _ in 0..3 {
        let mut c = Client::connect(t.addr);
        let r = c.get("/small");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(origin.handshakes(), 3);
    assert!(origin
        .sni()
        .iter()
        .all(|s| s.as_deref() == Some("localhost")));
    assert_eq!(scrape(admin, "tether_upstream_tls_handshakes_total"), 3);
    assert!(
        scrape(admin, "tether_upstream_tls_resumed_total") >= 1,
        "no session was resumed"
    );
}

#[test]
fn an_sse_stream_over_https_is_resumed_after_its_upstream_is_killed() {
    let (ca, origin) = origin_for_loopback(Versions::Tls13);
    let t = Tether::start(&[origin.url()], &["--upstream-ca", ca_arg(&ca)]);
    let mut r = SseReader::get(t.addr, "/sse?events=60&rate=100&ts=0", &[]);
    let (first, why) = ids_through(&mut r, 10);
    assert!(why.is_none(), "{why:?}");
    // The origin crashes: every TLS connection closed at once, without close_notify.
    assert!(origin.kill_connections() >= 1);
    let (rest, why) = ids_through(&mut r, 60);
    assert!(why.is_none(), "{why:?}\n{}", t.log_lines().join("\n"));
    let mut all = first;
    all.extend(rest);
    assert_eq!(all, (1..=60).collect::<Vec<u64>>(), "events once, in order");
    assert!(t.wait_for_log("resumed after id", Duration::from_secs(5)));
    let resumes: Vec<Option<String>> = origin
        .sim()
        .requests()
        .into_iter()
        .filter(|q| q.path.starts_with("/sse"))
        .map(|q| q.last_event_id)
        .collect();
    assert_eq!(resumes.len(), 2, "{resumes:?}");
    assert_eq!(resumes[0], None);
    assert!(resumes[1].is_some(), "{resumes:?}");
}

#[test]
fn an_sse_stream_over_https_survives_clean_tls_closes_mid_body() {
    // The simulator's FIN after 7 events becomes the origin's close_notify + FIN: the chunked
    // body is still cut, so tether resumes each time.
    let (ca, origin) = origin_for_loopback(Versions::Tls13);
    let t = Tether::start(&[origin.url()], &["--upstream-ca", ca_arg(&ca)]);
    let mut r = SseReader::get(t.addr, "/sse?events=30&rate=500&ts=0&close_after=7", &[]);
    let (ids, why) = ids_through(&mut r, 30);
    assert!(why.is_none(), "{why:?}\n{}", t.log_lines().join("\n"));
    assert_eq!(ids, (1..=30).collect::<Vec<u64>>());
    assert!(origin.handshakes() >= 5, "{}", origin.handshakes());
}

#[test]
fn a_certificate_for_another_name_is_refused_with_502_and_the_reason_logged() {
    let ca = TestCa::new("tether test CA");
    // Valid for localhost only; tether is told https://127.0.0.1:PORT.
    let origin = TlsOrigin::start(ca.leaf(&["localhost"]), Versions::Tls13);
    let t = Tether::start(
        &[origin.url()],
        &["--upstream-ca", ca_arg(&ca), "--admin", "127.0.0.1:0"],
    );
    let admin = admin_addr(&t);
    let mut c = Client::connect(t.addr);
    let r = c.get("/small");
    assert_eq!(r.status, 502);
    assert!(
        r.text()
            .contains("the upstream server's TLS certificate is not valid for its name"),
        "{}",
        r.text()
    );
    assert!(
        t.wait_for_log(
            "upstream TLS: certificate not valid for name \"127.0.0.1\"",
            Duration::from_secs(5)
        ),
        "{}",
        t.log_lines().join("\n")
    );
    assert_eq!(origin.handshakes(), 0);
    assert!(origin.sim().requests().is_empty(), "nothing went upstream");
    assert!(tls_failures(admin, "certificate_name") >= 1);
}

#[test]
fn a_certificate_from_an_unknown_ca_is_refused_with_502() {
    let ca = TestCa::new("a CA nobody trusts");
    let origin = TlsOrigin::start(ca.leaf(&["127.0.0.1"]), Versions::Tls13);
    // No --upstream-ca: the system's roots do not know this CA.
    let t = Tether::start(&[origin.url()], &["--admin", "127.0.0.1:0"]);
    let admin = admin_addr(&t);
    let r = Client::connect(t.addr).get("/small");
    assert_eq!(r.status, 502);
    assert!(
        r.text()
            .contains("the upstream server's TLS certificate is not signed by a trusted CA"),
        "{}",
        r.text()
    );
    assert!(
        t.wait_for_log("not signed by a trusted CA", Duration::from_secs(5)),
        "{}",
        t.log_lines().join("\n")
    );
    assert!(tls_failures(admin, "certificate_untrusted") >= 1);
}

#[test]
fn upstream_insecure_accepts_a_wrong_name_and_warns_at_start() {
    let ca = TestCa::new("a CA nobody trusts");
    let origin = TlsOrigin::start(ca.leaf(&["elsewhere.example"]), Versions::Tls13);
    let url = origin.url();
    let t = Tether::start(std::slice::from_ref(&url), &["--upstream-insecure"]);
    // Logged before the listening line, which `start` waited for.
    let warning = t
        .log_lines()
        .into_iter()
        .find(|l| l.contains("--upstream-insecure"))
        .unwrap_or_else(|| panic!("no warning at start:\n{}", t.log_lines().join("\n")));
    assert!(
        warning.contains("WARN") || warning.contains("warn"),
        "{warning}"
    );
    assert!(warning.contains(&url), "{warning}");
    let r = Client::connect(t.addr).get("/small");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(origin.handshakes(), 1);
}

#[test]
fn tls_1_2_and_1_3_origins_both_serve_requests_and_streams() {
    for (versions, name) in [(Versions::Tls12, "TLSv1_2"), (Versions::Tls13, "TLSv1_3")] {
        let (ca, origin) = origin_for_loopback(versions);
        let t = Tether::start(&[origin.url()], &["--upstream-ca", ca_arg(&ca)]);
        let r = Client::connect(t.addr).get("/bytes?n=50000");
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert_eq!(r.body.len(), 50_000);
        let mut s = SseReader::get(t.addr, "/sse?events=20&ts=0", &[]);
        let (ids, why) = ids_through(&mut s, 20);
        assert!(why.is_none(), "{name}: {why:?}");
        assert_eq!(ids, (1..=20).collect::<Vec<u64>>(), "{name}");
        assert!(
            origin.versions().iter().all(|v| v == name),
            "{name}: {:?}",
            origin.versions()
        );
    }
}

#[test]
fn a_websocket_tunnel_runs_over_an_https_upstream() {
    let (plain_url, _heads) = websocket::echo_server();
    let backend: std::net::SocketAddr = plain_url.trim_start_matches("http://").parse().unwrap();
    let ca = TestCa::new("tether test CA");
    let origin = TlsOrigin::in_front_of(backend, ca.leaf(&["127.0.0.1"]), Versions::Tls13);
    let t = Tether::start(&[origin.url()], &["--upstream-ca", ca_arg(&ca)]);
    let mut s = std::net::TcpStream::connect(t.addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut first =
        "GET /chat HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            .to_string()
            .into_bytes();
    first.extend_from_slice(&frame(OP_TEXT, b"early bird", Some([1, 2, 3, 4])));
    s.write_all(&first).unwrap();
    let head = read_head(&mut s).unwrap_or_else(|e| panic!("{e}\n{}", t.log_lines().join("\n")));
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
        std::thread::spawn(move || w.write_all(&masked).unwrap())
    };
    let (op, echoed) = read_frame(&mut s).unwrap();
    writer.join().unwrap();
    assert_eq!(op, OP_BINARY);
    assert_eq!(checksum(&echoed), checksum(&big));
    // The close handshake; the client's half-close reaches the origin (close_notify, FIN).
    s.write_all(&frame(OP_CLOSE, &1000u16.to_be_bytes(), Some([1, 1, 1, 1])))
        .unwrap();
    assert_eq!(
        read_frame(&mut s).unwrap(),
        (OP_CLOSE, 1000u16.to_be_bytes().to_vec())
    );
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn a_bad_upstream_ca_file_is_refused_at_start() {
    let missing = std::env::temp_dir().join("tether-no-such-ca.pem");
    let err = Tether::start_args(&[
        "reverse".into(),
        "--bind".into(),
        "127.0.0.1:0".into(),
        "--upstream".into(),
        "https://127.0.0.1:1".into(),
        "--upstream-ca".into(),
        missing.to_str().unwrap().into(),
    ])
    .err()
    .expect("tether must refuse a CA file it cannot read");
    assert!(
        err.iter()
            .any(|l| l.contains("--upstream-ca") && l.contains("tether-no-such-ca.pem")),
        "{}",
        err.join("\n")
    );
}

#[test]
fn an_mcp_session_runs_over_an_https_upstream() {
    use common::mcp::{
        call_ok, mcp_client_run, python_mcp_available, tools_listed, McpServer, TOOLS,
    };
    if !python_mcp_available() {
        return;
    }
    let server = McpServer::start(&[]);
    let backend: std::net::SocketAddr = server
        .base_url()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let ca = TestCa::new("tether test CA");
    let origin = TlsOrigin::in_front_of(backend, ca.leaf(&["127.0.0.1"]), Versions::Tls13);
    // --mcp: the upstream's session id reaches the client sealed, and every later request of
    // the session (and its GET stream) goes back to the same https replica with the real id.
    let t = Tether::start(&[origin.url()], &["--mcp", "--upstream-ca", ca_arg(&ca)]);
    let steps = r#"[
        {"op":"list_tools"},
        {"op":"call_tool","name":"echo","args":{"text":"hi over TLS"}},
        {"op":"call_tool","name":"get_weather","args":{"city":"Paris"}}
    ]"#;
    let run = mcp_client_run(&t.url("/mcp"), steps, &[]);
    assert_eq!(
        run.steps,
        vec![
            tools_listed(&TOOLS),
            call_ok("echo", "hi over TLS"),
            call_ok("get_weather", "weather in Paris: sunny, 21 C"),
        ],
        "server stderr: {:?}\ntether: {}",
        server.stderr_lines(),
        t.log_lines().join("\n")
    );
    assert_eq!(
        server.call_lines(),
        vec![
            r#"echo {"text":"hi over TLS"}"#,
            r#"get_weather {"city":"Paris"}"#
        ]
    );
    // The client saw tether's sealed id, never the upstream's.
    let upstream_ids = server.sessions_seen();
    assert!(!upstream_ids.is_empty());
    for h in &run.http {
        if let Some(id) = h["session_received"].as_str() {
            assert!(!upstream_ids.iter().any(|u| u == id), "{id} leaked");
        }
    }
    assert!(origin.handshakes() >= 1);
}
