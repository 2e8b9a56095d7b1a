//! Plain HTTP endpoints of sse-upstream over real loopback sockets.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{pattern_byte, start, Client, End};
use tether_perf::{fnv1a64, FNV1A64_OFFSET_BASIS};

fn assert_pattern(body: &[u8], len: usize) {
    assert_eq!(body.len(), len);
    if let Some(i) = (0..len).find(|&i| body[i] != pattern_byte(i)) {
        panic!("byte {i} is {} instead of {}", body[i], pattern_byte(i));
    }
}

#[test]
fn bytes_content_length_and_pattern() {
    let up = start();
    let mut c = Client::connect(up.addr());
    for n in [0usize, 1, 250, 251, 252, 1000, 16_384, 16_385, 200_000] {
        let r = c.get(&format!("/bytes?n={n}"));
        assert_eq!(r.head.status, 200);
        assert_eq!(r.head.content_length(), Some(n));
        assert_pattern(&r.body, n);
    }
}

#[test]
fn bytes_chunked_in_k_byte_chunks() {
    let up = start();
    // Raw framing: every chunk is exactly 1000 bytes (size line `3e8`).
    let mut raw_conn = std::net::TcpStream::connect(up.addr()).unwrap();
    raw_conn.set_read_timeout(Some(common::IO_TIMEOUT)).unwrap();
    raw_conn
        .write_all(b"GET /bytes?n=5000&chunked=1&chunk=1000 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    while !raw.ends_with(b"\r\n0\r\n\r\n") {
        let mut tmp = [0u8; 8192];
        let n = raw_conn.read(&mut tmp).unwrap();
        assert!(n > 0, "EOF before the last chunk");
        raw.extend_from_slice(&tmp[..n]);
    }
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&raw[..head_end]).to_lowercase();
    assert!(head.contains("transfer-encoding: chunked"));
    assert!(!head.contains("content-length"));
    let mut body = &raw[head_end..];
    for _ in 0..5 {
        assert!(body.starts_with(b"3e8\r\n"));
        body = &body[5 + 1000..];
        assert!(body.starts_with(b"\r\n"));
        body = &body[2..];
    }
    assert_eq!(body, b"0\r\n\r\n");

    // Decoded bodies are the pattern.
    let mut c = Client::connect(up.addr());
    let r = c.get("/bytes?n=12345&chunked=1&chunk=777");
    assert!(r.head.is_chunked());
    assert_pattern(&r.body, 12345);
    let r = c.get("/bytes?n=300000&chunked=1");
    assert_pattern(&r.body, 300_000);
}

#[test]
fn bytes_close_delimited() {
    let up = start();
    let mut c = Client::connect(up.addr());
    c.send(b"GET /bytes?n=100000&close=1 HTTP/1.1\r\nHost: t\r\n\r\n");
    let head = c.read_head();
    assert_eq!(head.content_length(), None);
    assert!(!head.is_chunked());
    assert!(head.closes());
    let (body, end) = c.read_to_end();
    assert_eq!(end, End::Eof);
    assert_pattern(&body, 100_000);
}

#[test]
fn echo_10_mb_round_trip_with_checksum() {
    let up = start();
    let mut c = Client::connect(up.addr());
    const LEN: usize = 10 * 1024 * 1024;
    let body: Vec<u8> = (0..LEN)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 9)) as u8)
        .collect();
    let want = fnv1a64(FNV1A64_OFFSET_BASIS, &body);
    let mut writer = c.stream.try_clone().unwrap();
    // The echo streams back while we send: write from another thread.
    let sender = std::thread::spawn(move || {
        writer
            .write_all(
                format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {LEN}\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap();
        for piece in body.chunks(100_003) {
            writer.write_all(piece).unwrap();
        }
    });
    let head = c.read_head();
    assert_eq!(head.status, 200);
    assert_eq!(head.content_length(), Some(LEN));
    let (echoed, end) = c.read_body(&head);
    sender.join().unwrap();
    assert_eq!(end, End::Complete);
    assert_eq!(echoed.len(), LEN);
    assert_eq!(fnv1a64(FNV1A64_OFFSET_BASIS, &echoed), want);
    // Keep-alive holds after a streamed body.
    assert_eq!(c.get("/small").body.len(), 100);
}

#[test]
fn echo_chunked_request_answers_chunked() {
    let up = start();
    let mut c = Client::connect(up.addr());
    c.send(
        b"PUT /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n\
          5\r\nhello\r\n1;ext=x\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: 1\r\n\r\n",
    );
    let head = c.read_head();
    assert!(head.is_chunked());
    let (body, end) = c.read_body(&head);
    assert_eq!(end, End::Complete);
    assert_eq!(body, b"hello world");
    assert_eq!(c.get("/small").head.status, 200);
}

#[test]
fn sum_of_length_and_chunked_bodies() {
    let up = start();
    let mut c = Client::connect(up.addr());
    c.send(b"POST /sum HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world");
    let head = c.read_head();
    let (body, _) = c.read_body(&head);
    assert_eq!(
        String::from_utf8(body).unwrap(),
        r#"{"len":11,"fnv1a64":"779a65e7023cd2e7"}"#
    );
    assert_eq!(head.header("content-type"), Some("application/json"));

    // A chunked body arriving in many small writes, with the Expect handshake.
    c.send(
        b"POST /sum HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\
          Expect: 100-continue\r\n\r\n",
    );
    assert_eq!(c.read_head().status, 100);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 7) as u8).collect();
    let mut wire = Vec::new();
    for piece in data.chunks(4093) {
        wire.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        wire.extend_from_slice(piece);
        wire.extend_from_slice(b"\r\n");
    }
    wire.extend_from_slice(b"0\r\n\r\n");
    for piece in wire.chunks(997) {
        c.send(piece);
    }
    let head = c.read_head();
    assert_eq!(head.status, 200);
    let (body, _) = c.read_body(&head);
    let want = format!(
        r#"{{"len":300000,"fnv1a64":"{:016x}"}}"#,
        fnv1a64(FNV1A64_OFFSET_BASIS, &data)
    );
    assert_eq!(String::from_utf8(body).unwrap(), want);
}

#[test]
fn keep_alive_100_requests_and_pipelining() {
    let up = start();
    let mut c = Client::connect(up.addr());
    for i in 0..100 {
        let r = if i % 10 == 9 {
            c.get("/bytes?n=777")
        } else {
            c.get("/small")
        };
        assert_eq!(r.head.status, 200);
        assert!(!r.head.closes());
    }
    // Ten requests in one write: ten responses in order.
    let mut burst = Vec::new();
    for n in 0..10 {
        burst.extend_from_slice(format!("GET /bytes?n={n} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
    }
    c.send(&burst);
    for n in 0..10 {
        let head = c.read_head();
        let (body, _) = c.read_body(&head);
        assert_pattern(&body, n);
    }
    let conns: std::collections::HashSet<u64> = up.requests().iter().map(|r| r.conn_id).collect();
    assert_eq!(conns.len(), 1, "all on one connection");
    assert_eq!(up.requests().len(), 110);
}

#[test]
fn small_is_100_bytes_and_head_has_no_body() {
    let up = start();
    let mut c = Client::connect(up.addr());
    let r = c.get("/small");
    assert_eq!(r.head.content_length(), Some(100));
    assert_pattern(&r.body, 100);
    let head = c.request_head("HEAD", "/small", "");
    assert_eq!(head.content_length(), Some(100));
    let head = c.request_head("HEAD", "/bytes?n=5000", "");
    assert_eq!(head.content_length(), Some(5000));
    // Nothing followed the HEAD responses: the next response parses.
    assert_eq!(c.get("/small").body.len(), 100);
}

#[test]
fn status_codes() {
    let up = start();
    let mut c = Client::connect(up.addr());
    let r = c.get("/status/503");
    assert_eq!(r.head.status, 503);
    assert!(!r.body.is_empty());
    for code in [204, 304] {
        c.send(format!("GET /status/{code} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let head = c.read_head();
        assert_eq!(head.status, code);
        assert_eq!(head.content_length(), None);
        assert!(!head.is_chunked());
    }
    // A 1xx is sent as an interim response before a final 200.
    c.send(b"GET /status/103 HTTP/1.1\r\nHost: t\r\n\r\n");
    let (interim, fin) = c.read_final_head();
    assert_eq!(interim.len(), 1);
    assert_eq!(interim[0].status, 103);
    assert_eq!(fin.status, 200);
    let (body, _) = c.read_body(&fin);
    assert_eq!(body, b"ok\n");
    assert_eq!(c.get("/status/429").head.status, 429);
    assert_eq!(c.get("/status/abc").head.status, 400);
    assert_eq!(c.get("/nope").head.status, 404);
    assert_eq!(c.get("/small").head.status, 200);
}

#[test]
fn headers_endpoint_returns_the_raw_head() {
    let up = start();
    let mut c = Client::connect(up.addr());
    let raw = "GET /headers?x=1 HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 10.0.0.1\r\nX-Weird:  spaced \r\n\r\n";
    c.send(raw.as_bytes());
    let head = c.read_head();
    let (body, _) = c.read_body(&head);
    assert_eq!(String::from_utf8(body).unwrap(), raw);
}

#[test]
fn delay_holds_the_head_and_stalls_the_body() {
    let up = start();
    let mut c = Client::connect(up.addr());
    let t = Instant::now();
    let r = c.get("/delay?ms=200");
    assert!(
        t.elapsed() >= Duration::from_millis(195),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(r.body.len(), 100);

    c.send(b"GET /delay?body_stall_ms=300&n=1000 HTTP/1.1\r\nHost: t\r\n\r\n");
    let t = Instant::now();
    let head = c.read_head();
    assert!(t.elapsed() < Duration::from_millis(250));
    assert_eq!(head.content_length(), Some(1000));
    // Half the body arrives at once, the rest only after the stall.
    while c.buffered().len() < 500 {
        c.fill().unwrap();
    }
    assert_eq!(c.buffered().len(), 500);
    let (body, end) = c.read_body(&head);
    assert_eq!(end, End::Complete);
    assert!(
        t.elapsed() >= Duration::from_millis(295),
        "{:?}",
        t.elapsed()
    );
    assert_pattern(&body, 1000);
}

#[test]
fn conn_close_and_http10_close_after_the_response() {
    let up = start();
    let mut c = Client::connect(up.addr());
    let r = c.get("/small?conn_close=1");
    assert!(r.head.closes());
    assert_eq!(c.read_to_end(), (Vec::new(), End::Eof));

    let mut c = Client::connect(up.addr());
    c.send(b"GET /bytes?n=10 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let head = c.read_head();
    assert!(head.closes());
    let (body, end) = c.read_to_end();
    assert_eq!((body.len(), end), (10, End::Eof));

    let mut c = Client::connect(up.addr());
    c.send(b"GET /small HTTP/1.0\r\n\r\n");
    let head = c.read_head();
    assert_eq!(head.status, 200);
    let (body, end) = c.read_to_end();
    assert_eq!((body.len(), end), (100, End::Eof));
}

#[test]
fn malformed_requests_get_4xx_and_close() {
    let up = start();
    for (raw, code) in [
        (
            &b"POST /sum HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            400,
        ),
        (b"POST /sum HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"POST /sum HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400),
        (b"POST /sum HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    ] {
        let mut c = Client::connect(up.addr());
        c.send(raw);
        let head = c.read_head();
        assert_eq!(head.status, code, "{}", String::from_utf8_lossy(raw));
        let _ = c.read_body(&head);
        assert_eq!(c.read_to_end().1, End::Eof);
    }
    // An oversized head: 431.
    let mut c = Client::connect(up.addr());
    let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
    while raw.len() < 70_000 {
        raw.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let _ = c.stream.write_all(&raw);
    let head = c.read_head();
    assert_eq!(head.status, 431);
}

#[test]
fn bad_query_values_get_400_and_keep_alive() {
    let up = start();
    let mut c = Client::connect(up.addr());
    let r = c.get("/bytes?n=-1");
    assert_eq!(r.head.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("n=-1"));
    let r = c.get("/sse?eol=nl");
    assert_eq!(r.head.status, 400);
    assert_eq!(c.get("/small").head.status, 200);
}

#[test]
fn request_log_in_process() {
    let up = start();
    let mut c = Client::connect(up.addr());
    c.get("/small");
    c.send(b"GET /sse?events=1 HTTP/1.1\r\nHost: t\r\nLast-Event-ID: 0\r\nX-Test: yes\r\n\r\n");
    let head = c.read_head();
    c.read_body(&head);
    let mut c2 = Client::connect(up.addr());
    c2.get("/bytes?n=1");
    let log = up.requests();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].method, "GET");
    assert_eq!(log[0].path, "/small");
    assert_eq!(log[0].last_event_id, None);
    assert_eq!(log[1].path, "/sse?events=1");
    assert_eq!(log[1].last_event_id.as_deref(), Some("0"));
    assert_eq!(log[1].header("x-test"), Some("yes"));
    assert_eq!(
        log[1].headers,
        vec![
            ("Host".to_string(), "t".to_string()),
            ("Last-Event-ID".to_string(), "0".to_string()),
            ("X-Test".to_string(), "yes".to_string())
        ]
    );
    assert_eq!(log[0].conn_id, log[1].conn_id);
    assert_ne!(log[1].conn_id, log[2].conn_id);
}
