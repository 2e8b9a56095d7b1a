//! `sse-load` over `https://`: the load, the reconnections (resumed sessions), the idle mode
//! and the time-to-first-event probes through a small rustls front (TLS in, plain HTTP to the
//! in-process simulator), with a certificate made here; a wrong CA fails the open phase.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};
use tether_perf::load::{run, LoadConfig, Report, Trust};
use tether_perf::{spawn, UpstreamConfig, UpstreamHandle};

/// Longest a front thread waits on either side before it gives up (bounds a stuck test).
const FRONT_IO_TIMEOUT: Duration = Duration::from_secs(20);

/// A self-signed ECDSA P-256 certificate for `localhost` and 127.0.0.1, its PEM written to a
/// temp file (the `--ca` of the client).
struct Cert {
    der: CertificateDer<'static>,
    key: Vec<u8>,
    pem_path: PathBuf,
}

fn make_cert(tag: &str) -> Cert {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("certificate");
    let pem_path =
        std::env::temp_dir().join(format!("sse-load-tls-{}-{tag}.pem", std::process::id()));
    std::fs::write(&pem_path, ck.cert.pem()).expect("write the CA file");
    Cert {
        der: ck.cert.der().clone(),
        key: ck.signing_key.serialize_der(),
        pem_path,
    }
}

/// A TLS front: accepts TLS (the versions given), reads the request head, sends it to the
/// simulator over plain TCP and relays the response back (close_notify when the origin
/// closes). One thread per connection.
fn tls_front(
    cert: &Cert,
    origin: SocketAddr,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.key.clone())),
        )
        .expect("server config");
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(tcp) = tcp else { continue };
            let config = config.clone();
            std::thread::spawn(move || {
                let _ = relay(tcp, config, origin);
            });
        }
    });
    addr
}

fn relay(tcp: TcpStream, config: Arc<ServerConfig>, origin: SocketAddr) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(FRONT_IO_TIMEOUT))?;
    tcp.set_nodelay(true)?;
    let conn = ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = StreamOwned::new(conn, tcp);
    let mut head = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tls.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let mut up = TcpStream::connect(origin)?;
    up.set_read_timeout(Some(FRONT_IO_TIMEOUT))?;
    up.write_all(&head)?;
    loop {
        let n = up.read(&mut buf)?;
        if n == 0 {
            tls.conn.send_close_notify();
            return tls.flush();
        }
        tls.write_all(&buf[..n])?;
        tls.flush()?;
    }
}

fn simulator() -> UpstreamHandle {
    spawn(UpstreamConfig::default()).expect("simulator starts")
}

fn load(front: SocketAddr, query: &str, config: LoadConfig) -> Report {
    let config = LoadConfig {
        url: format!("https://localhost:{}/sse?{query}", front.port()),
        ..config
    };
    let report = run(&config).expect("load runs");
    eprintln!("{}", report.table());
    report
}

#[test]
fn counts_every_event_over_tls_1_3_and_1_2() {
    let up = simulator();
    let cert = make_cert("count");
    for versions in [
        &[&rustls::version::TLS13][..],
        &[&rustls::version::TLS12][..],
    ] {
        let front = tls_front(&cert, up.addr(), versions);
        let r = load(
            front,
            "events=0&rate=50",
            LoadConfig {
                trust: Some(Trust::Ca(cert.pem_path.clone())),
                streams: 20,
                duration: Duration::from_secs(1),
                warmup: Duration::from_millis(200),
                ..Default::default()
            },
        );
        assert_eq!(r.open_failure, None);
        assert_eq!(r.established, 20);
        assert!(r.events >= 400 && r.events <= 1300, "events {}", r.events);
        assert_eq!((r.gaps, r.duplicates, r.errors), (0, 0, 0));
        assert_eq!(r.latency_us.count, r.events);
        assert!(r.tls && r.tls_handshakes == 20, "{}", r.tls_handshakes);
        assert!(r.json().contains("\"tls\":true,\"tls_handshakes\":20,"));
    }
}

#[test]
fn flat_out_over_tls_loses_nothing() {
    let up = simulator();
    let cert = make_cert("flat");
    let front = tls_front(&cert, up.addr(), rustls::DEFAULT_VERSIONS);
    // Held 300 ms after the head, then flat out (as scripts/bench.sh does): on epoll the
    // simulator stops accepting while streams run flat out.
    let r = load(
        front,
        "events=0&size=80&batch=1&stall_after=0&stall_ms=300",
        LoadConfig {
            trust: Some(Trust::Insecure),
            streams: 10,
            duration: Duration::from_millis(500),
            warmup: Duration::from_millis(400),
            ..Default::default()
        },
    );
    assert_eq!(r.open_failure, None);
    assert!(r.events > 1000, "events {}", r.events);
    assert_eq!((r.gaps, r.duplicates, r.errors), (0, 0, 0));
}

#[test]
fn reconnections_resume_the_tls_session_and_the_stream() {
    let up = simulator();
    let cert = make_cert("resume");
    let front = tls_front(&cert, up.addr(), rustls::DEFAULT_VERSIONS);
    let r = load(
        front,
        "events=0&rate=200&close_after=5&every=1",
        LoadConfig {
            trust: Some(Trust::Ca(cert.pem_path.clone())),
            streams: 10,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            reconnect: true,
            ..Default::default()
        },
    );
    assert_eq!(r.open_failure, None);
    assert!(r.reconnects > 10, "reconnects {}", r.reconnects);
    assert_eq!((r.gaps, r.duplicates), (0, 0));
    assert_eq!((r.errors, r.ended_streams), (0, 0));
    // Every connection after a stream's first finds a ticket of an earlier one.
    assert!(
        r.tls_resumed * 2 > r.tls_handshakes,
        "{} of {} resumed",
        r.tls_resumed,
        r.tls_handshakes
    );
}

#[test]
fn idle_mode_and_ttfe_probes_over_tls() {
    let up = simulator();
    let cert = make_cert("idle");
    let front = tls_front(&cert, up.addr(), rustls::DEFAULT_VERSIONS);
    let r = load(
        front,
        "stall_after=0",
        LoadConfig {
            trust: Some(Trust::Ca(cert.pem_path.clone())),
            streams: 30,
            duration: Duration::from_millis(200),
            warmup: Duration::ZERO,
            idle: true,
            settle: Duration::from_millis(200),
            proxy_pids: vec![std::process::id()],
            ..Default::default()
        },
    );
    assert_eq!(r.open_failure, None);
    assert_eq!(r.established, 30);
    assert!(r.rss_per_stream_bytes.is_some());
    assert_eq!((r.events, r.errors), (0, 0));

    let r = load(
        front,
        "events=0&rate=100",
        LoadConfig {
            trust: Some(Trust::Ca(cert.pem_path.clone())),
            streams: 5,
            duration: Duration::from_millis(300),
            warmup: Duration::from_millis(100),
            ttfe: 5,
            ttfe_url: Some(format!(
                "https://localhost:{}/sse?events=0&rate=1&probe={{i}}",
                front.port()
            )),
            ..Default::default()
        },
    );
    assert_eq!(r.open_failure, None);
    let t = r.ttfe.as_ref().expect("probes ran");
    assert_eq!((t.failed, t.samples.len()), (0, 5), "{t:?}");
    for s in &t.samples {
        assert!(s.connect_us <= s.head_us && s.head_us <= s.first_event_us);
    }
}

#[test]
fn a_certificate_from_another_ca_or_no_trust_is_refused() {
    let up = simulator();
    let cert = make_cert("served");
    let other = make_cert("other");
    let front = tls_front(&cert, up.addr(), rustls::DEFAULT_VERSIONS);
    let r = load(
        front,
        "events=0&rate=10",
        LoadConfig {
            trust: Some(Trust::Ca(other.pem_path.clone())),
            streams: 2,
            duration: Duration::from_millis(100),
            warmup: Duration::ZERO,
            open_timeout: Duration::from_millis(500),
            ..Default::default()
        },
    );
    assert!(r.open_failure.is_some());
    assert_eq!(r.established, 0);
    let first = r.error_lines.first().expect("an error line");
    assert!(
        format!("{first:?}").contains("certificate"),
        "{:?}",
        r.error_lines
    );
    let e = run(&LoadConfig {
        url: format!("https://localhost:{}/sse", front.port()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(e.to_string().contains("--ca"), "{e}");
}
