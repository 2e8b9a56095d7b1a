//! HTTP/2 for TLS clients (issue 15): tether with `--tls-cert` offers h2 in ALPN and serves
//! each stream with its HTTP/1.1 code. curl --http2; h2's own client over rustls with several
//! SSE streams and requests on one connection, one stream unread while the others flow; an
//! upstream drop resumed under an h2 stream; a replay by Last-Event-ID; rapid reset, a
//! CONTINUATION flood and a PING flood closed with GOAWAY while another client is served; a
//! header list too large refused. Real sockets on 127.0.0.1; every wait is bounded.

mod common;

use std::process::Command;
use std::time::Duration;

use common::h2_client::{self, H2Sse};
use common::tls_client::{client_config, Offer};
use common::tls_origin::{LeafFiles, TestCa};
use common::*;
use tokio::io::AsyncWriteExt;

fn loopback_leaf() -> (TestCa, LeafFiles) {
    let ca = TestCa::new("tether h2 test CA");
    let leaf = ca.leaf_files(&["localhost", "127.0.0.1"]);
    (ca, leaf)
}

fn h2_tether(upstream: &str, leaf: &LeafFiles, extra: &[&str]) -> Tether {
    let mut args = vec![
        "--tls-cert",
        leaf.cert(),
        "--tls-key",
        leaf.key(),
        "--admin",
        "127.0.0.1:0",
    ];
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

fn h2_config(ca: &TestCa) -> std::sync::Arc<rustls::ClientConfig> {
    client_config(ca, Offer::Tls13, &[b"h2", b"http/1.1"])
}

#[test]
fn curl_http2_gets_requests_and_an_sse_stream_on_one_connection() {
    let up = origin();
    let (ca, leaf) = loopback_leaf();
    let t = h2_tether(&url_of(&up), &leaf, &[]);
    let admin = t.admin_addr();
    let port = t.addr.port();
    let url = |p: &str| format!("https://localhost:{port}{p}");
    let dir = std::env::temp_dir().join(format!("tether-h2-curl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new("curl")
        .args(["-sS", "--http2", "--cacert"])
        .arg(&ca.pem_path)
        .arg("--resolve")
        .arg(format!("localhost:{port}:127.0.0.1"))
        .args([
            "-w",
            "%{http_code} %{http_version} %{num_connects} %{size_download}\\n",
        ])
        .arg("-o")
        .arg(dir.join("small"))
        .arg("-o")
        .arg(dir.join("bytes"))
        .arg("-o")
        .arg(dir.join("sse"))
        .arg(url("/small"))
        .arg(url("/bytes?n=300000"))
        .arg(url("/sse?events=20&rate=0&ts=0&ended=1"))
        .output()
        .expect("curl is needed for this test (scripts/test.sh installs it)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!(lines[0], "200 2 1 100", "{stdout}");
    assert_eq!(lines[1], "200 2 0 300000", "{stdout}");
    assert!(lines[2].starts_with("200 2 0 "), "{stdout}");
    let bytes = std::fs::read(dir.join("bytes")).unwrap();
    assert_eq!(bytes, pattern(300_000).collect::<Vec<u8>>());
    let sse = std::fs::read(dir.join("sse")).unwrap();
    let events: Vec<SseEvent> = SseReader::parse_body(&sse)
        .into_iter()
        .filter(|e| e.id.is_some())
        .collect();
    assert_eq!(num_ids(&events), (1..=20).collect::<Vec<u64>>());
    // No chunked framing leaked into DATA.
    assert!(!String::from_utf8_lossy(&sse).contains("\r\n0\r\n"));
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(sample(admin, "tether_h2_streams_total"), 3);
    assert!(wait_until(Duration::from_secs(5), || sample(
        admin,
        "tether_h2_connections_open"
    ) == 0));
}

#[test]
fn streams_share_a_connection_and_an_unread_one_blocks_no_other() {
    let up = origin();
    let (ca, leaf) = loopback_leaf();
    let t = h2_tether(
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
        ],
    );
    let admin = t.admin_addr();
    let rt = h2_client::runtime();
    rt.block_on(async {
        // A 16 KiB window: the unread stream is stopped by flow control at once.
        let (mut send, _driver) = h2_client::connect(t.addr, h2_config(&ca), 16 * 1024).await;
        // A reads a shared stream of 8 KB events, 500 a second; the unread stream joins it
        // (--coalesce) and reads nothing after its head.
        let shared = "/sse?events=0&size=8000&rate=500&ts=0";
        let mut a = H2Sse::open(&mut send, shared, &[]).await;
        assert_eq!(a.status, 200);
        let a_first = a.next_id().await.expect("A's first event");
        let unread = H2Sse::open(&mut send, shared, &[]).await;
        assert_eq!(unread.status, 200);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let a_stop = stop.clone();
        let a_reader = tokio::spawn(async move {
            let mut ids = vec![a_first];
            while !a_stop.load(std::sync::atomic::Ordering::SeqCst) {
                match a.next_id().await {
                    Some(id) => ids.push(id),
                    None => break,
                }
            }
            ids
        });
        let mut streams = Vec::new();
        for i in 0..3 {
            let s = H2Sse::open(
                &mut send,
                &format!("/sse?events=300&rate=100&ts=0&n={i}"),
                &[],
            )
            .await;
            assert_eq!(s.status, 200);
            assert_eq!(
                s.head.get("content-type").map(|v| v.to_str().unwrap()),
                Some("text/event-stream")
            );
            assert!(s.head.get("transfer-encoding").is_none());
            assert!(s.head.get("connection").is_none());
            streams.push(s);
        }
        // Requests on the same connection meanwhile.
        let mut req = send.clone();
        let requests = async move {
            for _ in 0..5 {
                let (status, _, body) = h2_client::get(&mut req, "/bytes?n=200000", &[]).await;
                assert_eq!(status, 200);
                assert_eq!(body, pattern(200_000).collect::<Vec<u8>>());
                let (status, _, body) = h2_client::get(&mut req, "/small", &[]).await;
                assert_eq!(status, 200);
                assert_eq!(body.len(), 100);
            }
        };
        let readers: Vec<_> = streams
            .into_iter()
            .map(|mut s| tokio::spawn(async move { s.ids_through(300).await }))
            .collect();
        let all = async {
            requests.await;
            for r in readers {
                assert_eq!(r.await.unwrap(), (1..=300).collect::<Vec<u64>>());
            }
        };
        tokio::time::timeout(Duration::from_secs(30), all)
            .await
            .expect("the other streams and requests complete while one is unread");
        // The unread stream is cut by the slow-client rules, its memory bounded.
        let cut = tokio::task::spawn_blocking(move || {
            wait_until(Duration::from_secs(30), || {
                sample(admin, "tether_sse_slow_clients_total") >= 1
            })
        })
        .await
        .unwrap();
        assert!(cut, "the unread stream was never cut");
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let a_ids = a_reader.await.unwrap();
        assert!(
            consecutive(&a_ids) && a_ids.len() > 100,
            "A gets every event in order: {}..={} ({} events)",
            a_ids[0],
            a_ids.last().unwrap(),
            a_ids.len()
        );
        drop(unread);
    });
    assert_eq!(
        sample(admin, "tether_sse_slow_clients_total"),
        1,
        "{}",
        log_text(&t)
    );
    assert!(sample(admin, "tether_h2_streams_total") >= 14);
}

#[test]
fn an_h2_stream_is_resumed_when_its_upstream_drops() {
    let up = origin();
    let (ca, leaf) = loopback_leaf();
    let t = h2_tether(&url_of(&up), &leaf, &[]);
    let rt = h2_client::runtime();
    let ids = rt.block_on(async {
        let (mut send, _driver) = h2_client::connect(t.addr, h2_config(&ca), 65535).await;
        let mut s = H2Sse::open(
            &mut send,
            "/sse?events=60&rate=200&ts=0&close_after=15",
            &[],
        )
        .await;
        assert_eq!(s.status, 200);
        s.ids_through(60).await
    });
    assert_eq!(
        ids,
        (1..=60).collect::<Vec<u64>>(),
        "every event once, in order\n{}",
        log_text(&t)
    );
    let resumes = up
        .requests()
        .into_iter()
        .filter(|q| q.path.starts_with("/sse") && q.last_event_id.is_some())
        .count();
    assert!(resumes >= 3, "{resumes} resumes\n{}", log_text(&t));
}

#[test]
fn a_replay_by_last_event_id_over_h2_comes_from_the_ring() {
    let up = origin();
    let (ca, leaf) = loopback_leaf();
    let log_path =
        std::env::temp_dir().join(format!("tether-h2-access-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&log_path);
    let t = h2_tether(
        &url_of(&up),
        &leaf,
        &[
            "--workers",
            "1",
            "--sse-heartbeat",
            "0",
            "--access-log",
            log_path.to_str().unwrap(),
        ],
    );
    let admin = t.admin_addr();
    let rt = h2_client::runtime();
    rt.block_on(async {
        let (mut send, _driver) = h2_client::connect(t.addr, h2_config(&ca), 65535).await;
        let path = "/sse?events=500&rate=0&ts=0&resume_status=204&ended=1";
        let mut first = H2Sse::open(&mut send, path, &[]).await;
        assert_eq!(
            first.ids_through(500).await,
            (1..=500).collect::<Vec<u64>>()
        );
        let mut late = H2Sse::open(&mut send, path, &[("last-event-id", "420")]).await;
        assert_eq!(late.status, 200);
        assert_eq!(
            late.ids_through(u64::MAX).await,
            (421..=500).collect::<Vec<u64>>()
        );
        assert!(late.ended, "the replay's stream ends cleanly");
        // /streams says which streams are h2.
        let mut live = H2Sse::open(&mut send, "/sse?events=0&rate=10&ts=0&live=1", &[]).await;
        assert!(live.next_id().await.is_some());
        let (_, json) = tokio::task::spawn_blocking(move || admin_get(admin, "/streams"))
            .await
            .unwrap();
        assert!(json.contains("\"tls\":true,\"protocol\":\"h2\""), "{json}");
    });
    assert!(
        sample(admin, "tether_replay_served_total") >= 1,
        "{}",
        log_text(&t)
    );
    // The access log's lines say h2 (written within 200 ms).
    assert!(
        wait_until(Duration::from_secs(5), || {
            std::fs::read_to_string(&log_path)
                .map(|text| {
                    text.lines()
                        .filter(|l| {
                            l.contains("\"kind\":\"sse\"") && l.ends_with(",\"protocol\":\"h2\"}")
                        })
                        .count()
                        >= 2
                })
                .unwrap_or(false)
        }),
        "{}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    let _ = std::fs::remove_file(&log_path);
}

/// A client that keeps an SSE stream on its own connection while another misbehaves: it must
/// get every event.
async fn bystander(addr: std::net::SocketAddr, ca: &TestCa) -> Vec<u64> {
    let (mut send, _driver) = h2_client::connect(addr, h2_config(ca), 65535).await;
    let mut s = H2Sse::open(&mut send, "/sse?events=100&rate=100&ts=0&bystander=1", &[]).await;
    s.ids_through(100).await
}

#[test]
fn rapid_reset_is_closed_with_goaway_while_another_client_is_served() {
    let up = origin();
    let (ca, leaf) = loopback_leaf();
    let t = h2_tether(&url_of(&up), &leaf, &["--h2-max-resets", "50"]);
    let admin = t.admin_addr();
    let rt = h2_client::runtime();
    rt.block_on(async {
        let other = bystander(t.addr, &ca);
        let attack = async {
            let (send, driver) = h2_client::connect(t.addr, h2_config(&ca), 65535).await;
            // Streams opened, answered (so tether accepted them: h2's own bound on resets of
            // streams not yet accepted does not apply) and reset, one after another.
            let mut sent = 0;
            for _ in 0..1000 {
                let Ok(mut ready) = send.clone().ready().await else {
                    break;
                };
                let req = http::Request::builder()
                    .uri("https://localhost/sse?events=0&rate=10")
                    .body(())
                    .unwrap();
                let Ok((response, mut stream)) = ready.send_request(req, true) else {
                    break;
                };
                match tokio::time::timeout(Duration::from_secs(5), response).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) => break,
                    Err(_) => panic!("no answer within 5 s after {sent} streams"),
                }
                stream.send_reset(h2::Reason::CANCEL);
                sent += 1;
            }
            let end = tokio::time::timeout(Duration::from_secs(10), driver)
                .await
                .expect("the connection ends")
                .unwrap();
            (sent, end)
        };
        let (ids, (sent, end)) = tokio::join!(other, attack);
        let e = end.expect_err("the connection ends with GOAWAY");
        assert!(e.is_go_away(), "{e:?}");
        assert_eq!(e.reason(), Some(h2::Reason::ENHANCE_YOUR_CALM), "{e:?}");
        assert!(sent < 1000, "the client was stopped ({sent} streams sent)");
        assert_eq!(
            ids,
            (1..=100).collect::<Vec<u64>>(),
            "the other client is served"
        );
    });
    assert_eq!(
        sample(admin, "tether_h2_goaway_total{reason=\"rapid_reset\"}"),
        1
    );
    assert!(sample(admin, "tether_h2_resets_total") > 50);
}

/// A raw h2 connection (preface sent) for what the h2 client will not send.
async fn raw(
    addr: std::net::SocketAddr,
    ca: &TestCa,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut io = h2_client::tls(addr, h2_config(ca)).await;
    io.write_all(&h2_client::preface()).await.unwrap();
    io
}

#[test]
fn a_continuation_flood_is_closed_with_goaway_while_another_client_is_served() {
    let up = origin();
    let (ca, leaf) = loopback_leaf();
    let t = h2_tether(&url_of(&up), &leaf, &[]);
    let admin = t.admin_addr();
    let rt = h2_client::runtime();
    rt.block_on(async {
        let other = bystander(t.addr, &ca);
        let attack = async {
            let mut io = raw(t.addr, &ca).await;
            // HEADERS without END_HEADERS, then CONTINUATION frames that never end it.
            let block = h2_client::hpack_get(&[]);
            let mut out = h2_client::frame(0x1, 0x1, 1, &block);
            let pad = [0u8; 64];
            for _ in 0..20_000 {
                out.extend(h2_client::frame(0x9, 0, 1, &pad[..0]));
            }
            let _ = io.write_all(&out).await;
            let _ = io.flush().await;
            tokio::time::timeout(Duration::from_secs(10), h2_client::goaway_code(&mut io))
                .await
                .expect("an answer within 10 s")
        };
        let (ids, code) = tokio::join!(other, attack);
        assert_eq!(code, Some(0xb), "GOAWAY ENHANCE_YOUR_CALM");
        assert_eq!(
            ids,
            (1..=100).collect::<Vec<u64>>(),
            "the other client is served"
        );
    });
    assert!(
        wait_until(Duration::from_secs(5), || sample(
            admin,
            "tether_h2_goaway_total{reason=\"continuation_flood\"}"
        ) == 1),
        "{}",
        Tether::metrics_text(admin)
    );
}

#[test]
fn a_ping_flood_is_closed_with_goaway() {
    let up = origin();
    let (ca, leaf) = loopback_leaf();
    let t = h2_tether(&url_of(&up), &leaf, &[]);
    let admin = t.admin_addr();
    let rt = h2_client::runtime();
    let code = rt.block_on(async {
        let mut io = raw(t.addr, &ca).await;
        let mut out = Vec::new();
        for i in 0..5000u64 {
            out.extend(h2_client::frame(0x6, 0, 0, &i.to_be_bytes()));
        }
        let _ = io.write_all(&out).await;
        tokio::time::timeout(Duration::from_secs(10), h2_client::goaway_code(&mut io))
            .await
            .expect("an answer within 10 s")
    });
    assert_eq!(
        code,
        Some(0xb),
        "GOAWAY ENHANCE_YOUR_CALM\n{}",
        log_text(&t)
    );
    assert!(wait_until(Duration::from_secs(5), || sample(
        admin,
        "tether_h2_goaway_total{reason=\"ping_flood\"}"
    ) == 1));
}

#[test]
fn a_header_list_too_large_is_refused_with_431() {
    let up = origin();
    let (ca, leaf) = loopback_leaf();
    let t = h2_tether(&url_of(&up), &leaf, &["--h2-max-header-list", "8KiB"]);
    let rt = h2_client::runtime();
    rt.block_on(async {
        let (mut send, _driver) = h2_client::connect(t.addr, h2_config(&ca), 65535).await;
        let big = "x".repeat(12 * 1024);
        let (status, _, _) = h2_client::get(&mut send, "/small", &[("x-big", &big)]).await;
        assert_eq!(status, 431);
        // The connection goes on.
        let small = "x".repeat(2 * 1024);
        let (status, _, body) = h2_client::get(&mut send, "/small", &[("x-small", &small)]).await;
        assert_eq!(status, 200);
        assert_eq!(body.len(), 100);
    });
    assert_eq!(
        up.requests().iter().filter(|q| q.path == "/small").count(),
        1
    );
}

#[test]
fn connect_and_websocket_are_refused_cleanly() {
    let up = origin();
    let (ca, leaf) = loopback_leaf();
    let t = h2_tether(&url_of(&up), &leaf, &[]);
    let rt = h2_client::runtime();
    rt.block_on(async {
        let (send, _driver) = h2_client::connect(t.addr, h2_config(&ca), 65535).await;
        let mut ready = send.clone().ready().await.unwrap();
        let req = http::Request::builder()
            .method("CONNECT")
            .uri("localhost:443")
            .body(())
            .unwrap();
        let (response, _) = ready.send_request(req, true).unwrap();
        let response = response.await.expect("an answer");
        assert_eq!(response.status().as_u16(), 501);
        let mut send = send;
        let (status, _, _) = h2_client::get(&mut send, "/small", &[]).await;
        assert_eq!(status, 200);
    });
}

#[test]
fn an_idle_h2_connection_is_closed_after_the_idle_timeout_but_not_while_a_stream_is_open() {
    let up = origin();
    let (ca, leaf) = loopback_leaf();
    let t = h2_tether(
        &url_of(&up),
        &leaf,
        &["--idle-timeout", "1s", "--sse-heartbeat", "0"],
    );
    let admin = t.admin_addr();
    let rt = h2_client::runtime();
    rt.block_on(async {
        let (mut send, driver) = h2_client::connect(t.addr, h2_config(&ca), 65535).await;
        // An SSE stream 3 s long keeps the connection open past the idle timeout.
        let path = "/sse?events=30&rate=10&ts=0&resume_status=204&ended=1";
        let mut s = H2Sse::open(&mut send, path, &[]).await;
        assert_eq!(
            s.ids_through(u64::MAX).await,
            (1..=30).collect::<Vec<u64>>()
        );
        assert!(s.ended);
        let (status, _, _) = h2_client::get(&mut send, "/small", &[]).await;
        assert_eq!(status, 200);
        // Then nothing: GOAWAY and the close within the idle timeout and a check.
        let end = tokio::time::timeout(Duration::from_secs(5), driver)
            .await
            .unwrap_or_else(|_| panic!("the idle connection is closed\n{}", log_text(&t)))
            .unwrap();
        assert!(end.is_ok(), "a graceful end: {end:?}");
    });
    assert!(wait_until(Duration::from_secs(3), || sample(
        admin,
        "tether_h2_connections_open"
    ) == 0));
}

/// `--coalesce` works the same for HTTP/2 streams as for HTTP/1.1 connections (each h2 stream
/// is served by the HTTP/1.1 code): six h2 streams of one URL, on two connections, share one
/// upstream request; each gets every event from its first, once and in order.
#[test]
fn h2_streams_of_one_url_are_coalesced_onto_one_upstream() {
    const LAST: u64 = 150;
    let up = origin();
    let (ca, leaf) = loopback_leaf();
    let t = h2_tether(
        &url_of(&up),
        &leaf,
        &["--coalesce", "--workers", "1", "--sse-heartbeat", "0"],
    );
    let admin = t.admin_addr();
    let path = format!("/sse?events={LAST}&rate=100&ts=0");
    let rt = h2_client::runtime();
    let readings = rt.block_on(async {
        let (mut one, _d1) = h2_client::connect(t.addr, h2_config(&ca), 65535).await;
        let (mut two, _d2) = h2_client::connect(t.addr, h2_config(&ca), 65535).await;
        let mut readers = Vec::new();
        for i in 0..6 {
            let send = if i % 2 == 0 { &mut one } else { &mut two };
            let mut s = H2Sse::open(send, &path, &[]).await;
            assert_eq!(s.status, 200);
            readers.push(tokio::spawn(async move { s.ids_through(LAST).await }));
        }
        let mut readings = Vec::new();
        for r in readers {
            readings.push(r.await.unwrap());
        }
        readings
    });
    for ids in &readings {
        assert!(
            consecutive(ids) && ids.last() == Some(&LAST),
            "every event from the first, once, in order: {ids:?}\n{}",
            log_text(&t)
        );
    }
    assert_eq!(readings[0][0], 1, "the opener starts at the stream's start");
    let fresh = up
        .requests()
        .into_iter()
        .filter(|q| q.path.starts_with("/sse") && q.last_event_id.is_none())
        .count();
    assert_eq!(
        fresh,
        1,
        "one upstream request for six streams\n{}",
        log_text(&t)
    );
    assert_eq!(sample(admin, "tether_sse_coalesced_total"), 5);
}

/// Rules apply to HTTP/2 streams as to HTTP/1.1 requests: a request rule denies before any
/// upstream, an event rule drops and redacts events in the stream.
#[test]
fn rules_deny_requests_and_rewrite_events_of_h2_streams() {
    use common::config_file::ConfigFile;
    use common::scripted_origin::{Reply, ScriptedOrigin};
    let blocks: Vec<String> = (1..=8)
        .map(|i| {
            if i % 4 == 0 {
                format!("id: {i}\nevent: debug\ndata: internal {i}\n\n")
            } else if i % 2 == 1 {
                format!("id: {i}\ndata: key sk-{i:0>24}\n\n")
            } else {
                format!("id: {i}\ndata: plain {i}\n\n")
            }
        })
        .collect();
    let origin = ScriptedOrigin::start(move |_| Reply::Sse {
        blocks: blocks.clone(),
        hold: Some(Duration::from_secs(5)),
    });
    let file = ConfigFile::new(&format!(
        r#"bind = "127.0.0.1:0"

[[route]]
name = "main"
upstream = ["{}"]

[[rule]]
name = "closed"
on = "request"
match = {{ path-prefix = "/private" }}
action = "deny"
status = 403
message = "private is closed"

[[rule]]
name = "no-debug"
on = "event"
match = {{ event-type = "debug" }}
action = "drop"

[[rule]]
name = "keys"
on = "event"
match = {{ data-regex = 'sk-[A-Za-z0-9]{{20,}}' }}
action = "redact"
replace = "[REDACTED]"
"#,
        origin.url()
    ));
    let (ca, leaf) = loopback_leaf();
    let args: Vec<String> = [
        "reverse",
        "--config",
        &file.path(),
        "--tls-cert",
        leaf.cert(),
        "--tls-key",
        leaf.key(),
        "--admin",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--sse-heartbeat",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let t = Tether::start_args(&args)
        .unwrap_or_else(|log| panic!("tether did not start:\n{}", log.join("\n")));
    let rt = h2_client::runtime();
    let events = rt.block_on(async {
        let (mut send, _driver) = h2_client::connect(t.addr, h2_config(&ca), 65535).await;
        let (status, _, body) = h2_client::get(&mut send, "/private/x", &[]).await;
        assert_eq!(status, 403);
        assert!(
            String::from_utf8_lossy(&body).contains("private is closed"),
            "{}",
            String::from_utf8_lossy(&body)
        );
        let mut s = H2Sse::open(&mut send, "/feed", &[]).await;
        assert_eq!(s.status, 200);
        let mut events = Vec::new();
        while events.len() < 6 {
            events.push(s.next_event().await.expect("an event"));
        }
        events
    });
    assert_eq!(num_ids(&events), vec![1, 2, 3, 5, 6, 7], "{events:?}");
    for e in &events {
        let i = e.num_id().unwrap();
        let want = if i % 2 == 1 {
            "key [REDACTED]".to_string()
        } else {
            format!("plain {i}")
        };
        assert_eq!(e.data.as_deref(), Some(want.as_str()));
    }
    assert!(
        origin
            .requests()
            .iter()
            .all(|r| !r.target.starts_with("/private")),
        "a denied request never reaches the upstream"
    );
}

/// The worker whose request counter moved while `probe` was served on `send`'s connection.
async fn h2_serving_worker(
    t: &Tether,
    send: &mut h2::client::SendRequest<bytes::Bytes>,
    probe: &str,
) -> usize {
    let admin = t.admin_addr();
    let counts = || -> Vec<u64> {
        (0..2)
            .map(|w| {
                sample(
                    admin,
                    &format!("tether_worker_requests_total{{worker=\"{w}\"}}"),
                )
            })
            .collect()
    };
    let before = counts();
    let (status, _, _) = h2_client::get(send, probe, &[]).await;
    assert_eq!(status, 200);
    let after = counts();
    let moved: Vec<usize> = (0..2).filter(|&w| after[w] != before[w]).collect();
    assert_eq!(
        moved.len(),
        1,
        "one worker served the probe: {before:?} -> {after:?}"
    );
    moved[0]
}

/// An HTTP/2 comeback on the worker that does not hold its stream: the stream's bridge end is
/// handed to the holder (the socketpair then joins the two workers), which follows the held
/// stream: every event after the client's id once, in order, and nothing asked upstream again.
/// Before, the stream was served where it landed: a copy of the ring, then an upstream request
/// of its own (for a POST-born MCP call, the call's result lost).
#[test]
fn an_h2_comeback_on_the_other_worker_follows_the_held_stream_there() {
    let up = origin();
    let (ca, leaf) = loopback_leaf();
    let t = h2_tether(
        &url_of(&up),
        &leaf,
        &[
            "--workers",
            "2",
            "--hold-upstream",
            "5s",
            "--sse-heartbeat",
            "0",
        ],
    );
    let admin = t.admin_addr();
    let path = "/sse?events=40&rate=20&ts=0&held=h2";
    let rt = h2_client::runtime();
    let ids = rt.block_on(async {
        {
            let (mut send, driver) = h2_client::connect(t.addr, h2_config(&ca), 65535).await;
            let mut s = H2Sse::open(&mut send, path, &[]).await;
            assert_eq!(s.status, 200);
            assert_eq!(s.ids_through(5).await, (1..=5).collect::<Vec<u64>>());
            drop(s);
            drop(send);
            driver.abort();
        }
        let held = tokio::task::spawn_blocking(move || {
            wait_until(Duration::from_secs(5), || {
                worker_with_stream(admin, path, Some("held")).is_some()
            })
        })
        .await
        .unwrap();
        assert!(held, "not held\n{}", log_text(&t));
        let holder = worker_with_stream(admin, path, Some("held")).unwrap();
        let mut other = None;
        for _ in 0..40 {
            let (mut send, driver) = h2_client::connect(t.addr, h2_config(&ca), 65535).await;
            if h2_serving_worker(&t, &mut send, "/bytes?n=1").await != holder {
                other = Some((send, driver));
                break;
            }
            driver.abort();
        }
        let (mut send, _driver) = other.expect("an h2 connection on the other worker");
        let mut back = H2Sse::open(&mut send, path, &[("last-event-id", "5")]).await;
        assert_eq!(back.status, 200, "{}", log_text(&t));
        back.ids_through(40).await
    });
    assert_eq!(ids, (6..=40).collect::<Vec<u64>>(), "{}", log_text(&t));
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
    assert_eq!(sample(admin, "tether_sse_hold_resumed_total"), 1);
}
