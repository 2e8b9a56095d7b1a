//! Bad input gets a clear, specific answer and a closed connection, and nothing reaches the
//! upstream: request smuggling forms, every head limit, and the head timeout.

mod common;

use std::time::Duration;

use common::*;

/// Sends `raw`, expects `status` and a closed connection, and checks the upstream saw nothing.
fn refused(raw: &[u8], status: u16, extra: &[&str]) -> String {
    let up = origin();
    let t = Tether::start(&[url_of(&up)], extra);
    let mut c = Client::connect(t.addr);
    c.send(raw).unwrap();
    let r = c.read_response(false).expect("an answer");
    assert_eq!(
        r.status,
        status,
        "for {:?}: {}",
        String::from_utf8_lossy(&raw[..raw.len().min(200)]),
        r.text()
    );
    assert!(c.is_closed(), "connection must be closed after {status}");
    assert!(
        up.requests().is_empty(),
        "nothing may reach the upstream, saw {:?}",
        up.requests()
    );
    r.text()
}

#[test]
fn content_length_and_transfer_encoding_together() {
    refused(b"POST /sum HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, &[]);
    refused(b"POST /sum HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400, &[]);
}

#[test]
fn differing_duplicate_content_length() {
    refused(
        b"POST /sum HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400,
        &[],
    );
    refused(
        b"POST /sum HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!",
        400,
        &[],
    );
}

#[test]
fn malformed_content_length() {
    for cl in [
        "+5",
        "-5",
        "5 5",
        "0x5",
        "5a",
        "",
        "99999999999999999999999",
    ] {
        refused(
            format!("POST /sum HTTP/1.1\r\nHost: a\r\nContent-Length: {cl}\r\n\r\nhello")
                .as_bytes(),
            400,
            &[],
        );
    }
}

#[test]
fn transfer_encoding_other_than_chunked_last() {
    for te in [
        "gzip",
        "chunked, gzip",
        "identity",
        "xchunked",
        "chunked, chunked",
    ] {
        refused(
            format!("POST /sum HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\n")
                .as_bytes(),
            400,
            &[],
        );
    }
}

#[test]
fn transfer_encoding_in_http10() {
    refused(
        b"POST /sum HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        &[],
    );
}

#[test]
fn invalid_chunk_sizes() {
    for body in [
        "zz\r\nhello\r\n0\r\n\r\n",
        "-5\r\nhello\r\n0\r\n\r\n",
        "10000000000000000\r\nx\r\n0\r\n\r\n", // 17 hex digits
        "5\nhello\r\n0\r\n\r\n",               // bare LF after the size
        "5\r\nhelloXX0\r\n\r\n",               // data not followed by CRLF
        " 5\r\nhello\r\n0\r\n\r\n",
    ] {
        let up = origin();
        let t = Tether::start(&[url_of(&up)], &[]);
        let mut c = Client::connect(t.addr);
        c.send(
            format!("POST /sum HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{body}")
                .as_bytes(),
        )
        .unwrap();
        let r = c.read_response(false).expect("an answer");
        assert_eq!(r.status, 400, "for chunked body {body:?}: {}", r.text());
        assert!(c.is_closed());
        // Head and body arrive together, so the bad framing is found before anything is written
        // upstream.
        assert!(up.requests().is_empty(), "upstream saw {:?}", up.requests());
    }
}

#[test]
fn obs_fold_and_whitespace_before_colon() {
    refused(
        b"GET /small HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n",
        400,
        &[],
    );
    refused(
        b"GET /small HTTP/1.1\r\nHost: a\r\nX-Space : one\r\n\r\n",
        400,
        &[],
    );
    refused(b"GET /small HTTP/1.1\r\nHost : a\r\n\r\n", 400, &[]);
}

#[test]
fn missing_or_duplicate_host_in_http11() {
    refused(b"GET /small HTTP/1.1\r\n\r\n", 400, &[]);
    refused(
        b"GET /small HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        400,
        &[],
    );
}

#[test]
fn head_larger_than_the_limit_gets_431() {
    let big = "a".repeat(70 * 1024);
    let text = refused(
        format!("GET /small HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\n\r\n").as_bytes(),
        431,
        &[],
    );
    assert!(text.contains("65536"), "{text}");
    // Configurable.
    let mid = "a".repeat(3000);
    refused(
        format!("GET /small HTTP/1.1\r\nHost: a\r\nX-Big: {mid}\r\n\r\n").as_bytes(),
        431,
        &["--max-head-bytes", "2048"],
    );
}

#[test]
fn too_many_headers_gets_431() {
    let mut raw = String::from("GET /small HTTP/1.1\r\nHost: a\r\n");
    for i in 0..100 {
        raw.push_str(&format!("X-H{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    refused(raw.as_bytes(), 431, &[]);
    // At the limit it passes.
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &[]);
    let mut raw = String::from("GET /small HTTP/1.1\r\nHost: a\r\n");
    for i in 0..99 {
        raw.push_str(&format!("X-H{i}: v\r\n"));
    }
    raw.push_str("\r\n");
    let (r, _) = send_raw(t.addr, raw.as_bytes());
    assert_eq!(r.status, 200);
}

#[test]
fn long_target_gets_414() {
    let target = format!("/{}", "a".repeat(9 * 1024));
    refused(
        format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes(),
        414,
        &[],
    );
    let target = format!("/{}", "a".repeat(600));
    refused(
        format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes(),
        414,
        &["--max-target-bytes", "512"],
    );
}

#[test]
fn connect_method_gets_501() {
    refused(
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        501,
        &[],
    );
}

#[test]
fn unsupported_version_is_refused() {
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &[]);
    let mut c = Client::connect(t.addr);
    c.send(b"GET /small HTTP/2.0\r\nHost: a\r\n\r\n").unwrap();
    let r = c.read_response(false).expect("an answer");
    assert!(r.status == 505 || r.status == 400, "{}", r.status);
    assert!(up.requests().is_empty());
}

#[test]
fn slow_head_gets_408() {
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &["--header-timeout", "300ms"]);
    let mut c = Client::connect(t.addr);
    c.send(b"GET /small HTTP/1.1\r\nHost: a\r\n").unwrap(); // never finished
    let r = c.read_response(false).expect("an answer");
    assert_eq!(r.status, 408);
    assert!(c.is_closed());
    assert!(up.requests().is_empty());
}

#[test]
fn idle_keep_alive_connection_is_closed_after_idle_timeout() {
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &["--idle-timeout", "300ms"]);
    let mut c = Client::connect(t.addr);
    assert_eq!(c.get("/small").status, 200);
    // Wait for the close itself (EOF, bounded by is_closed's read timeout), and check that it
    // came neither before the idle timeout nor long after it.
    let idle_since = std::time::Instant::now();
    assert!(c.is_closed(), "idle connection must be closed");
    let waited = idle_since.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "closed after {waited:?} with --idle-timeout 300ms"
    );
}

/// The start of a TLS 1.3 ClientHello as a browser sends it to `https://` on this port: record
/// header (0x16 = handshake), handshake header, legacy version, 32 random bytes (here holding LF
/// and CR, as real ones often do), then a session id and cipher suites.
fn tls_client_hello() -> Vec<u8> {
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03,
    ];
    hello.extend_from_slice(b"\x8f\x0a\x0d\x0a\x41\x00\x13\x0d\x0a\x0d\x0a\x99");
    hello.extend_from_slice(&[0x5a; 20]);
    hello.extend_from_slice(&[0x20; 33]);
    hello.extend_from_slice(&[0x00, 0x06, 0x13, 0x01, 0x13, 0x02, 0x13, 0x03]);
    hello
}

#[test]
fn non_http_bytes_get_400_and_a_close_at_once() {
    let up = origin();
    // The header timeout is the default (10 s): an answer within the 2 s read bound below can
    // only be the early refusal.
    let t = Tether::start(&[url_of(&up)], &[]);
    let answer_bound = Duration::from_secs(2);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("TLS ClientHello", tls_client_hello(), "TLS handshake"),
        ("TLS record byte alone", vec![0x16], "TLS handshake"),
        ("binary", vec![0x00, 0xff, 0x01, 0x0a, 0x02], "cannot begin"),
        ("SSH banner", b"SSH-2.0-OpenSSH_9.6\r\n".to_vec(), "method"),
        ("words on a line", b"hello world\n".to_vec(), "target"),
    ];
    for (name, bytes, reason) in cases {
        let mut c = Client::connect(t.addr);
        c.stream.set_read_timeout(Some(answer_bound)).unwrap();
        c.send(&bytes).unwrap();
        let r = c
            .read_response(false)
            .unwrap_or_else(|e| panic!("{name}: no answer within {answer_bound:?}: {e}"));
        assert_eq!(r.status, 400, "{name}: {}", r.text());
        assert!(r.text().contains(reason), "{name}: {}", r.text());
        // The close follows the answer: EOF within the same bound, not at the header timeout.
        let mut rest = [0u8; 64];
        let eof = loop {
            match std::io::Read::read(&mut c.stream, &mut rest) {
                Ok(0) => break true,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
                Err(_) => break false,
            }
        };
        assert!(eof, "{name}: connection still open after {answer_bound:?}");
    }
    assert!(up.requests().is_empty(), "{:?}", up.requests());
}
