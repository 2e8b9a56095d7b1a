//! Upgrades (WebSocket tunnels), request ids and the access log, over real loopback sockets.
//! Run on both drivers: `MONOIO_FORCE_LEGACY_DRIVER=1 cargo test --test http_extras`.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::websocket::{self, frame, read_frame, read_head, OP_BINARY, OP_CLOSE, OP_TEXT};
use common::*;

const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
    )
}

fn connect(t: &Tether) -> TcpStream {
    let s = TcpStream::connect(t.addr).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

#[test]
fn the_handshake_helpers_match_rfc_6455() {
    // RFC 6455 1.3's worked example.
    assert_eq!(websocket::accept_for(KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}

#[test]
fn a_websocket_echo_goes_through_both_ways_and_closes() {
    let (url, heads) = websocket::echo_server();
    let t = Tether::start(&[url], &["--admin", "127.0.0.1:0"]);
    let admin = admin_addr(&t);
    let mut s = connect(&t);
    // The first frame leaves with the handshake, in one write: bytes after the client's head.
    let mut first = upgrade_request("/chat").into_bytes();
    first.extend_from_slice(&frame(OP_TEXT, b"early bird", Some(MASK)));
    s.write_all(&first).unwrap();

    let head = read_head(&mut s).unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(
        websocket::header(&head, "upgrade"),
        Some("websocket"),
        "{head}"
    );
    assert_eq!(
        websocket::header(&head, "connection"),
        Some("upgrade"),
        "{head}"
    );
    assert_eq!(
        websocket::header(&head, "sec-websocket-accept"),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "{head}"
    );
    assert!(websocket::header(&head, "x-request-id").is_some(), "{head}");
    let upstream_head = heads.recv_timeout(IO_TIMEOUT).unwrap();
    assert_eq!(
        websocket::header(&upstream_head, "upgrade"),
        Some("websocket")
    );
    assert_eq!(
        websocket::header(&upstream_head, "connection"),
        Some("upgrade")
    );
    assert_eq!(
        websocket::header(&upstream_head, "x-request-id"),
        websocket::header(&head, "x-request-id")
    );

    // The upstream's greeting came right after its 101, in the same write.
    assert_eq!(
        read_frame(&mut s).unwrap(),
        (OP_TEXT, websocket::GREETING.to_vec())
    );
    assert_eq!(
        read_frame(&mut s).unwrap(),
        (OP_TEXT, b"early bird".to_vec())
    );
    // A large binary frame (64-bit length), more than a socket buffer holds at once.
    let big: Vec<u8> = pattern(300_000).collect();
    let masked = frame(OP_BINARY, &big, Some(MASK));
    let writer = {
        let mut w = s.try_clone().unwrap();
        std::thread::spawn(move || w.write_all(&masked).unwrap())
    };
    let (op, echoed) = read_frame(&mut s).unwrap();
    writer.join().unwrap();
    assert_eq!(op, OP_BINARY);
    assert_eq!(checksum(&echoed), checksum(&big));
    assert_eq!(echoed.len(), big.len());

    // The close handshake, then both ends close.
    s.write_all(&frame(OP_CLOSE, &1000u16.to_be_bytes(), Some(MASK)))
        .unwrap();
    assert_eq!(
        read_frame(&mut s).unwrap(),
        (OP_CLOSE, 1000u16.to_be_bytes().to_vec())
    );
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");

    assert!(wait_until(Duration::from_secs(5), || {
        scrape(admin, "tether_tunnels_active") == 0 && scrape(admin, "tether_tunnels_total") == 1
    }));
    assert!(scrape(admin, "tether_tunnel_bytes_to_upstream_total") >= big.len() as u64);
    assert!(scrape(admin, "tether_tunnel_bytes_to_client_total") >= big.len() as u64);
}

#[test]
fn an_idle_tunnel_is_closed() {
    let (url, _heads) = websocket::echo_server();
    let t = Tether::start(&[url], &["--tunnel-idle-timeout", "300ms"]);
    let mut s = connect(&t);
    s.write_all(upgrade_request("/").as_bytes()).unwrap();
    let opened = Instant::now();
    let head = read_head(&mut s).unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert_eq!(read_frame(&mut s).unwrap().1, websocket::GREETING);
    // Nothing more either way: tether closes the tunnel.
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    let took = opened.elapsed();
    assert!(took >= Duration::from_millis(300), "closed after {took:?}");
    assert!(took < Duration::from_secs(10), "closed after {took:?}");
}

#[test]
fn an_upgrade_answered_without_101_is_a_normal_response() {
    let origin = scripted_origin(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(),
        Duration::from_secs(2),
    );
    let t = Tether::start(&[origin], &[]);
    let mut c = Client::connect(t.addr);
    c.send(upgrade_request("/").as_bytes()).unwrap();
    let r = c.read_response(false).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, b"ok");
    assert!(r.header("x-request-id").is_some());
    assert!(r.header("upgrade").is_none());
}

#[test]
fn a_101_to_a_request_that_did_not_ask_is_still_refused() {
    let origin = scripted_origin(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
            .to_vec(),
        Duration::from_secs(2),
    );
    let t = Tether::start(&[origin], &[]);
    let mut c = Client::connect(t.addr);
    assert_eq!(c.get("/").status, 502);
}

/// An origin that answers every request on one connection with 200 and records the heads.
fn recording_origin() -> (String, std::sync::mpsc::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let tx = tx.clone();
            std::thread::spawn(move || {
                s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                while let Ok(head) = read_head(&mut s) {
                    let _ = tx.send(head);
                    if s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Request-Id: origin-own\r\n\r\nok")
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), rx)
}

fn get_with(c: &mut Client, extra: &str) -> Response {
    c.send(format!("GET /x HTTP/1.1\r\nHost: test\r\n{extra}\r\n").as_bytes())
        .unwrap();
    c.read_response(false).unwrap()
}

#[test]
fn request_ids_are_kept_made_or_replaced_and_sent_both_ways() {
    let (url, heads) = recording_origin();
    let t = Tether::start(&[url], &[]);
    let mut c = Client::connect(t.addr);

    let kept = get_with(&mut c, "X-Request-Id: client-id-42\r\n");
    assert_eq!(kept.header("x-request-id"), Some("client-id-42"));
    let up = heads.recv_timeout(IO_TIMEOUT).unwrap();
    assert_eq!(
        websocket::header(&up, "x-request-id"),
        Some("client-id-42"),
        "{up}"
    );

    let made = get_with(&mut c, "");
    let made_id = made.header("x-request-id").unwrap().to_string();
    let parts: Vec<&str> = made_id.split('-').collect();
    assert_eq!(parts.len(), 3, "{made_id}");
    assert!(
        parts[0].len() == 8
            && parts
                .iter()
                .all(|p| p.bytes().all(|b| b.is_ascii_hexdigit()))
    );
    let up = heads.recv_timeout(IO_TIMEOUT).unwrap();
    assert_eq!(
        websocket::header(&up, "x-request-id"),
        Some(made_id.as_str())
    );
    assert_eq!(up.matches("X-Request-Id").count(), 1, "{up}");

    let other = get_with(&mut c, "");
    assert_ne!(other.header("x-request-id"), Some(made_id.as_str()));
    let _ = heads.recv_timeout(IO_TIMEOUT).unwrap();

    let long = "a".repeat(129);
    for bad in [
        format!("X-Request-Id: {long}\r\n"),
        "X-Request-Id: a\u{1}b\r\n".into(),
    ] {
        let r = get_with(&mut c, &bad);
        if r.status == 400 {
            // A control byte in a value is refused by the head parser first: still an id.
            assert!(r.header("x-request-id").is_some());
            break;
        }
        let id = r.header("x-request-id").unwrap();
        assert_eq!(id.split('-').count(), 3, "{bad:?} -> {id}");
        let up = heads.recv_timeout(IO_TIMEOUT).unwrap();
        assert_eq!(websocket::header(&up, "x-request-id"), Some(id));
    }
}

#[test]
fn tethers_own_502_carries_the_id_and_its_log_line_names_it() {
    let t = Tether::start(&[closed_port_url()], &[]);
    let mut c = Client::connect(t.addr);
    let r = get_with(&mut c, "X-Request-Id: failing-7\r\n");
    assert_eq!(r.status, 502);
    assert_eq!(r.header("x-request-id"), Some("failing-7"));
    assert!(
        t.wait_for_log("request failing-7:", Duration::from_secs(5)),
        "{:?}",
        t.log_lines()
    );
    let mut c = Client::connect(t.addr);
    let r = get_with(&mut c, "");
    assert_eq!(r.status, 502);
    assert!(r.header("x-request-id").is_some());
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "tether-{name}-{}-{}",
        std::process::id(),
        std::env::var("MONOIO_FORCE_LEGACY_DRIVER").unwrap_or_default()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn lines_of(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The value of a JSON field in one of our lines (flat objects, no nesting): the raw text after
/// `"name":` up to the next comma or brace outside a string.
fn field(line: &str, name: &str) -> Option<String> {
    let key = format!("\"{name}\":");
    let at = line.find(&key)? + key.len();
    let rest = &line[at..];
    if let Some(s) = rest.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = s.chars();
        while let Some(ch) = chars.next() {
            match ch {
                '\\' => out.push(chars.next()?),
                '"' => return Some(out),
                c => out.push(c),
            }
        }
        None
    } else {
        let end = rest.find([',', '}']).unwrap_or(rest.len());
        Some(rest[..end].to_string())
    }
}

#[test]
fn the_access_log_has_a_line_per_request_and_per_stream_and_reopens_on_sighup() {
    let up = origin();
    let dir = temp_dir("access");
    let path = dir.join("access.log");
    let t = Tether::start(
        &[url_of(&up)],
        &["--access-log", path.to_str().unwrap(), "--pass-clean-end"],
    );
    let mut c = Client::connect(t.addr);
    assert_eq!(get_with(&mut c, "X-Request-Id: first-1\r\n").status, 404);
    c.send(b"GET /small?token=secret HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    assert_eq!(c.read_response(false).unwrap().status, 200);
    let mut sse = SseReader::get(t.addr, "/sse?events=3", &["X-Request-Id: stream-1"]);
    assert_eq!(sse.events_to_end().len(), 3);

    assert!(
        wait_until(Duration::from_secs(5), || lines_of(&path).len() >= 3),
        "{:?}",
        lines_of(&path)
    );
    let lines = lines_of(&path);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let first = lines
        .iter()
        .find(|l| l.contains("first-1"))
        .expect("first request");
    assert_eq!(field(first, "request_id").as_deref(), Some("first-1"));
    assert_eq!(field(first, "method").as_deref(), Some("GET"));
    assert_eq!(field(first, "path").as_deref(), Some("/x"));
    assert_eq!(
        field(first, "status").as_deref(),
        Some("404"),
        "the simulator has no /x"
    );
    assert_eq!(field(first, "kind").as_deref(), Some("request"));
    assert_eq!(field(first, "upstream"), Some(url_of(&up)));
    assert_eq!(field(first, "route").as_deref(), Some("null"));
    assert!(field(first, "client").unwrap().starts_with("127.0.0.1:"));
    assert!(field(first, "time").unwrap().ends_with('Z'));
    assert!(field(first, "worker").unwrap().parse::<u32>().is_ok());
    assert!(field(first, "duration_ms").unwrap().parse::<f64>().is_ok());
    assert!(field(first, "bytes").unwrap().parse::<u64>().unwrap() > 0);
    let second = lines
        .iter()
        .find(|l| l.contains("/small"))
        .expect("second request");
    assert!(
        !second.contains("secret"),
        "the query is not logged: {second}"
    );
    assert_eq!(field(second, "status").as_deref(), Some("200"));
    let stream = lines
        .iter()
        .find(|l| l.contains("stream-1"))
        .expect("stream line");
    assert_eq!(field(stream, "kind").as_deref(), Some("sse"));
    assert_eq!(field(stream, "events").as_deref(), Some("3"));
    assert_eq!(field(stream, "resumes").as_deref(), Some("0"));
    assert_eq!(field(stream, "path").as_deref(), Some("/sse"));

    // Rotation: move the file away, SIGHUP, and the next lines go to a new file.
    let moved = dir.join("access.log.1");
    std::fs::rename(&path, &moved).unwrap();
    t.signal(libc::SIGHUP);
    assert!(t.wait_for_log("reopening the access log", Duration::from_secs(5)));
    assert!(wait_until(Duration::from_secs(5), || {
        assert_eq!(get_with(&mut c, "X-Request-Id: after-hup\r\n").status, 404);
        lines_of(&path).iter().any(|l| l.contains("after-hup"))
    }));
    let old = lines_of(&moved);
    assert!(old.len() >= 3 && old.iter().all(|l| l.starts_with('{') && l.ends_with('}')));
    // Still running: SIGHUP is not a shutdown.
    assert_eq!(get_with(&mut c, "").status, 404);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_tunnel_gets_one_access_log_line_when_it_ends() {
    let (url, _heads) = websocket::echo_server();
    let dir = temp_dir("tunnel-log");
    let path = dir.join("access.log");
    let t = Tether::start(&[url], &["--access-log", path.to_str().unwrap()]);
    let mut s = connect(&t);
    s.write_all(upgrade_request("/ws?key=secret").as_bytes())
        .unwrap();
    read_head(&mut s).unwrap();
    read_frame(&mut s).unwrap();
    s.write_all(&frame(OP_TEXT, b"ping", Some(MASK))).unwrap();
    assert_eq!(read_frame(&mut s).unwrap().1, b"ping");
    s.write_all(&frame(OP_CLOSE, b"", Some(MASK))).unwrap();
    read_frame(&mut s).unwrap();
    drop(s);
    assert!(wait_until(Duration::from_secs(5), || !lines_of(&path).is_empty()));
    let lines = lines_of(&path);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let line = &lines[0];
    assert_eq!(field(line, "kind").as_deref(), Some("tunnel"));
    assert_eq!(field(line, "status").as_deref(), Some("101"));
    assert_eq!(field(line, "path").as_deref(), Some("/ws"));
    // ping (4 + 6 bytes of header and mask) and the close frame (6).
    assert_eq!(field(line, "bytes_to_upstream").as_deref(), Some("16"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_access_log_in_a_missing_directory_fails_at_start() {
    let up = origin();
    let args: Vec<String> = [
        "reverse",
        "--bind",
        "127.0.0.1:0",
        "--upstream",
        &url_of(&up),
        "--access-log",
        "/nonexistent-tether-dir/access.log",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let log = match Tether::start_args(&args) {
        Ok(_) => panic!("started with an unwritable access log"),
        Err(log) => log.join("\n"),
    };
    assert!(
        log.contains("--access-log /nonexistent-tether-dir/access.log: cannot open for appending"),
        "{log}"
    );
}

#[test]
fn a_drain_waits_for_an_open_tunnel() {
    let (url, _heads) = websocket::echo_server();
    let mut t = Tether::start(&[url], &["--shutdown-grace", "20s", "--workers", "1"]);
    let mut s = connect(&t);
    s.write_all(upgrade_request("/").as_bytes()).unwrap();
    read_head(&mut s).unwrap();
    read_frame(&mut s).unwrap();
    t.signal(libc::SIGTERM);
    assert!(t.wait_for_log("draining", Duration::from_secs(5)));
    // The tunnel still carries frames both ways while the worker drains.
    s.write_all(&frame(OP_TEXT, b"during the drain", Some(MASK)))
        .unwrap();
    assert_eq!(read_frame(&mut s).unwrap().1, b"during the drain");
    assert!(
        t.wait_exit(Duration::from_millis(300)).is_none(),
        "exited with a tunnel open"
    );
    // Once the tunnel closes, the drain is over and tether exits well before the grace ends.
    s.write_all(&frame(OP_CLOSE, b"", Some(MASK))).unwrap();
    read_frame(&mut s).unwrap();
    drop(s);
    let status = t
        .wait_exit(Duration::from_secs(10))
        .expect("exit after the tunnel closed");
    assert!(status.success(), "{status:?}");
}
