//! `sse-load --h2-streams-per-conn`: many SSE streams per HTTP/2 connection, counted exactly as
//! over HTTP/1.1, against a small h2 server made here (hyperium's h2 over tokio-rustls on a
//! loopback socket) whose streams can skip or repeat an id on purpose; a server that does not
//! choose h2 in ALPN fails the open phase.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;
use tether_perf::load::{run, LoadConfig, Report, Trust};

/// A self-signed certificate for `localhost`, its PEM written to a temp file (`--ca`).
struct Cert {
    der: CertificateDer<'static>,
    key: Vec<u8>,
    pem_path: PathBuf,
}

fn make_cert(tag: &str) -> Cert {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("certificate");
    let pem_path =
        std::env::temp_dir().join(format!("sse-load-h2-{}-{tag}.pem", std::process::id()));
    std::fs::write(&pem_path, ck.cert.pem()).expect("write the CA file");
    Cert {
        der: ck.cert.der().clone(),
        key: ck.signing_key.serialize_der(),
        pem_path,
    }
}

/// What the test server counted.
#[derive(Default)]
struct Seen {
    /// TLS connections accepted.
    connections: AtomicUsize,
    /// Most streams open at once on one connection.
    max_streams_per_conn: AtomicUsize,
}

/// The SSE body of one request: `events=N` events with ids 1..=N (`skip=K`: id K is left out;
/// `dup=K`: id K is sent twice), each its own DATA frame, then the end of the stream.
fn body_of(query: &str) -> Vec<Bytes> {
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let events = param("events").unwrap_or(10);
    let mut frames = vec![Bytes::from_static(b": hello\n\n")];
    for id in 1..=events {
        if Some(id) == param("skip") {
            continue;
        }
        let times = if Some(id) == param("dup") { 2 } else { 1 };
        for _ in 0..times {
            frames.push(Bytes::from(format!(
                "id: {id}\ndata: {{\"seq\":{id},\"ts_us\":0}}\n\n"
            )));
        }
    }
    frames
}

/// An h2 server on 127.0.0.1 (ALPN `alpn`; empty: no ALPN, i.e. HTTP/1.1 for any client), in a
/// thread of its own with its own runtime. Every request gets `body_of(its query)`.
fn h2_server(cert: &Cert, alpn: &[&[u8]], seen: Arc<Seen>) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key.clone())),
        )
        .expect("server config");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("non-blocking");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    seen.connections.fetch_add(1, Relaxed);
                    let Ok(mut conn) = h2::server::handshake(tls).await else {
                        return;
                    };
                    let open = Arc::new(AtomicUsize::new(0));
                    while let Some(Ok((request, mut respond))) = conn.accept().await {
                        let now = open.fetch_add(1, Relaxed) + 1;
                        seen.max_streams_per_conn.fetch_max(now, Relaxed);
                        let open = open.clone();
                        tokio::spawn(async move {
                            let query = request.uri().query().unwrap_or("").to_string();
                            let response = http::Response::builder()
                                .status(200)
                                .header("content-type", "text/event-stream")
                                .body(())
                                .unwrap();
                            if let Ok(mut send) = respond.send_response(response, false) {
                                // Every stream is opened before any sends: the client holds
                                // all of them open at once, as under load.
                                tokio::time::sleep(Duration::from_millis(300)).await;
                                for frame in body_of(&query) {
                                    if send.send_data(frame, false).is_err() {
                                        break;
                                    }
                                }
                                let _ = send.send_data(Bytes::new(), true);
                            }
                            // Still counted as open until its last frame went out.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            open.fetch_sub(1, Relaxed);
                        });
                    }
                });
            }
        });
    });
    addr
}

fn load(addr: SocketAddr, cert: &Cert, query: &str, streams: usize, per_conn: usize) -> Report {
    let config = LoadConfig {
        url: format!("https://localhost:{}/sse?{query}", addr.port()),
        trust: Some(Trust::Ca(cert.pem_path.clone())),
        streams,
        h2_streams_per_conn: per_conn,
        duration: Duration::from_secs(2),
        warmup: Duration::ZERO,
        open_timeout: Duration::from_secs(20),
        ..Default::default()
    };
    let report = run(&config).expect("load runs");
    eprintln!("{}", report.table());
    report
}

#[test]
fn counts_every_event_of_many_streams_per_connection() {
    let cert = make_cert("count");
    let seen = Arc::new(Seen::default());
    let addr = h2_server(&cert, &[b"h2"], seen.clone());
    // 250 streams at 100 per connection: 3 connections, the last with 50.
    let r = load(addr, &cert, "events=40", 250, 100);
    assert!(r.open_failure.is_none(), "{:?}", r.open_failure);
    assert_eq!(r.established, 250);
    assert_eq!(r.h2_connections, 3);
    assert_eq!(r.h2_streams_per_conn, 100);
    assert_eq!(seen.connections.load(Relaxed), 3);
    assert_eq!(seen.max_streams_per_conn.load(Relaxed), 100);
    assert_eq!(r.events_total, 250 * 40);
    assert_eq!((r.gaps, r.duplicates), (0, 0));
    assert_eq!(r.stream_events_min, Some(40));
    assert_eq!(r.ended_streams, 250);
    assert_eq!(r.comments, 250, "one comment line per stream");
    assert_eq!(r.errors, 0, "{:?}", r.error_lines);
    assert_eq!(r.tls_handshakes, 3);
}

#[test]
fn a_lost_and_a_repeated_id_are_counted_per_stream() {
    let cert = make_cert("gaps");
    let addr = h2_server(&cert, &[b"h2"], Arc::new(Seen::default()));
    let r = load(addr, &cert, "events=20&skip=7&dup=12", 30, 10);
    assert!(r.open_failure.is_none(), "{:?}", r.open_failure);
    assert_eq!(r.h2_connections, 3);
    assert_eq!(r.events_total, 30 * 20, "19 ids, one of them twice");
    assert_eq!(r.gaps, 30, "id 7 lost on every stream");
    assert_eq!(r.duplicates, 30, "id 12 twice on every stream");
    assert_eq!(r.streams_with_gaps, 30);
    assert_eq!(r.streams_with_duplicates, 30);
    assert_eq!((r.stream_gaps_max, r.stream_duplicates_max), (1, 1));
}

#[test]
fn a_server_that_does_not_choose_h2_fails_the_open() {
    let cert = make_cert("noalpn");
    // No ALPN on the server: the handshake succeeds, and the server would speak HTTP/1.1.
    let addr = h2_server(&cert, &[], Arc::new(Seen::default()));
    let r = load(addr, &cert, "events=5", 20, 10);
    assert_eq!(r.established, 0);
    assert!(r.open_failure.is_some());
    let protocol = r
        .error_lines
        .iter()
        .find(|e| e.kind == "protocol")
        .expect("a protocol error");
    assert!(
        protocol.first.contains("did not choose h2"),
        "{}",
        protocol.first
    );
    assert_eq!(r.h2_connections, 0);
}

#[test]
fn refuses_plain_urls_and_unsupported_flags() {
    for (url, extra) in [
        ("http://127.0.0.1:1/sse", LoadConfig::default()),
        (
            "https://localhost:1/sse",
            LoadConfig {
                reconnect: true,
                ..Default::default()
            },
        ),
        (
            "https://localhost:1/sse",
            LoadConfig {
                ttfe: 3,
                ..Default::default()
            },
        ),
    ] {
        let config = LoadConfig {
            url: url.into(),
            trust: Some(Trust::Insecure),
            h2_streams_per_conn: 10,
            ..extra
        };
        assert!(run(&config).is_err(), "{url} {:?}", config.reconnect);
    }
}
