//! HeadScanner: both line ends, leading empty lines, limits, resumption and linear work.

use bytes::Bytes;

use crate::http::head::REQUEST_LINE_SLACK_BYTES;
use crate::http::*;

fn limits() -> HeadLimits {
    HeadLimits::default()
}

// ---- scanner ---------------------------------------------------------------------------------

#[test]
fn scanner_finds_crlf_and_lf_ends() {
    let cases: &[(&[u8], usize)] = &[
        (b"GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY", 27),
        (b"GET / HTTP/1.1\nHost: a\n\nBODY", 24),
        (b"GET / HTTP/1.1\r\nHost: a\n\r\nX", 26),
        (b"GET / HTTP/1.1\nHost: a\r\n\nX", 25),
        (b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 31),
        (b"\n\nGET / HTTP/1.1\n\n", 18),
    ];
    for &(raw, end) in cases {
        let mut s = HeadScanner::new();
        assert_eq!(
            s.scan(raw, &limits(), HeadKind::Request),
            Ok(Some(end)),
            "{raw:?}"
        );
    }
}

#[test]
fn scanner_needs_more_then_resumes_at_every_split() {
    let raw = b"\r\nGET /x HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\nNEXT";
    let end = raw.len() - 4;
    for split in 0..end {
        let mut s = HeadScanner::new();
        assert_eq!(
            s.scan(&raw[..split], &limits(), HeadKind::Request),
            Ok(None),
            "split {split}"
        );
        assert_eq!(
            s.scan(raw, &limits(), HeadKind::Request),
            Ok(Some(end)),
            "split {split}"
        );
    }
}

#[test]
fn scanner_resets_itself_after_a_head() {
    let mut s = HeadScanner::new();
    let raw = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(
        s.scan(raw, &limits(), HeadKind::Request),
        Ok(Some(raw.len()))
    );
    assert_eq!(
        s.scan(raw, &limits(), HeadKind::Request),
        Ok(Some(raw.len()))
    );
    // A shorter buffer than the last scan position also starts over instead of panicking.
    let mut s = HeadScanner::new();
    assert_eq!(s.scan(&raw[..20], &limits(), HeadKind::Request), Ok(None));
    assert_eq!(s.scan(&raw[..5], &limits(), HeadKind::Request), Ok(None));
}

#[test]
fn scanner_is_linear_one_byte_at_a_time() {
    // A 60 KiB head arriving one byte per read: total bytes examined stays O(n), not n^2/2.
    let mut raw = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    let mut i = 0;
    while raw.len() < 60 * 1024 {
        raw.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "v".repeat(500)).as_bytes());
        i += 1;
    }
    raw.extend_from_slice(b"\r\n");
    let big = HeadLimits {
        max_headers: 1000,
        ..limits()
    };
    let mut s = HeadScanner::new();
    let mut found = None;
    for n in 1..=raw.len() {
        if let Some(end) = s.scan(&raw[..n], &big, HeadKind::Request).unwrap() {
            found = Some((n, end));
            break;
        }
        // Each read is searched once, plus END_OVERLAP bytes of the one before.
        assert!(s.examined() <= 3 * n, "examined {} of {n}", s.examined());
    }
    assert_eq!(found, Some((raw.len(), raw.len())));
    let head = RequestHead::parse(Bytes::from(raw), &big).unwrap();
    assert_eq!(head.headers.len(), i + 1);
}

#[test]
fn scanner_limits() {
    // 431: no end within max_head_bytes.
    let small = HeadLimits {
        max_head_bytes: 64,
        ..limits()
    };
    let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
    raw.extend(std::iter::repeat_n(b'a', 100));
    let mut s = HeadScanner::new();
    let err = s.scan(&raw[..64], &small, HeadKind::Request).unwrap_err();
    assert_eq!(err.status(), 431);
    assert_eq!(err.to_string(), "request head exceeds 64 bytes");
    // Below the limit: need more.
    let mut s = HeadScanner::new();
    assert_eq!(s.scan(&raw[..63], &small, HeadKind::Request), Ok(None));
    // A head that ends exactly at the limit is fine.
    let exact = b"GET / HTTP/1.1\r\nHost: aaaaaaaaaaaaaaaa\r\n\r\n";
    let fits = HeadLimits {
        max_head_bytes: exact.len(),
        ..limits()
    };
    let mut s = HeadScanner::new();
    assert_eq!(
        s.scan(exact, &fits, HeadKind::Request),
        Ok(Some(exact.len()))
    );

    // 414: the request line alone outgrows max_target_bytes + slack, before the head limit.
    let mut line = b"GET /".to_vec();
    line.extend(std::iter::repeat_n(
        b'a',
        MAX_TARGET_BYTES + REQUEST_LINE_SLACK_BYTES,
    ));
    let mut s = HeadScanner::new();
    let err = s.scan(&line, &limits(), HeadKind::Request).unwrap_err();
    assert_eq!(
        err,
        HttpError::TargetTooLong {
            limit: MAX_TARGET_BYTES
        }
    );
    assert_eq!(err.status(), 414);
    // Same line completed in one read.
    line.extend_from_slice(b" HTTP/1.1\r\n");
    let mut s = HeadScanner::new();
    assert_eq!(
        s.scan(&line, &limits(), HeadKind::Request)
            .unwrap_err()
            .status(),
        414
    );
    // Responses have no start-line limit besides the head's.
    let mut status = b"HTTP/1.1 200 ".to_vec();
    status.extend(std::iter::repeat_n(b'r', 20_000));
    let mut s = HeadScanner::new();
    assert_eq!(s.scan(&status, &limits(), HeadKind::Response), Ok(None));
}

// ---- early refusal of request lines that cannot become a request ---------------------------

/// Feeds `raw` one byte more at a time and returns the first error with the length at which it
/// came, or the end of the head.
fn first_verdict(raw: &[u8]) -> (usize, Result<Option<usize>, HttpError>) {
    let mut s = HeadScanner::new();
    for len in 0..=raw.len() {
        match s.scan(&raw[..len], &limits(), HeadKind::Request) {
            Ok(None) => continue,
            other => return (len, other),
        }
    }
    (raw.len(), Ok(None))
}

#[test]
fn a_first_byte_that_cannot_begin_a_method_is_refused_alone() {
    for byte in 0..=255u8 {
        let tchar = byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte);
        if tchar || byte == b'\r' || byte == b'\n' {
            continue;
        }
        let mut s = HeadScanner::new();
        let err = s.scan(&[byte], &limits(), HeadKind::Request).unwrap_err();
        assert_eq!(err, HttpError::NotHttp { byte }, "{byte:#04x}");
        assert_eq!(err.status(), 400);
        // After leading empty lines too.
        let mut s = HeadScanner::new();
        assert_eq!(
            s.scan(&[b'\r', b'\n', byte], &limits(), HeadKind::Request),
            Err(HttpError::NotHttp { byte })
        );
    }
    assert!(HttpError::NotHttp { byte: 0x16 }
        .to_string()
        .contains("TLS handshake"));
}

#[test]
fn a_broken_request_line_is_refused_when_the_breaking_byte_arrives() {
    let cases: &[(&[u8], usize, HttpError)] = &[
        (b"GET\x00 / HTTP/1.1\r\n", 4, HttpError::InvalidMethod),
        (b"GET /a\x01b HTTP/1.1\r\n", 7, HttpError::InvalidTarget),
        (b"GET  / HTTP/1.1\r\n", 5, HttpError::InvalidTarget),
        // Found by the request_head fuzz target: a target that is not UTF-8 is refused when
        // it ends (httparse checks it there), not later as a bad version.
        (b"GET /\xff\xfe HTTP/1.1\r\n", 8, HttpError::InvalidTarget),
        (
            b"GET / XTTP/1.1\r\n",
            7,
            HttpError::InvalidVersion {
                kind: HeadKind::Request,
            },
        ),
        (
            b"\rX",
            2,
            HttpError::InvalidLineEnding {
                kind: HeadKind::Request,
            },
        ),
        // Lines that end before their version: refused at their LF, not at the head timeout.
        (b"hello world\nmore", 12, HttpError::InvalidTarget),
        (b"SSH-2.0-OpenSSH_9.6\r\n", 20, HttpError::InvalidMethod),
        (b"GET\n", 4, HttpError::InvalidMethod),
        (
            b"GET / HTTP\r\n",
            11,
            HttpError::InvalidVersion {
                kind: HeadKind::Request,
            },
        ),
    ];
    for (raw, at, err) in cases {
        let (len, verdict) = first_verdict(raw);
        assert_eq!(
            (len, verdict),
            (*at, Err(err.clone())),
            "{:?}",
            String::from_utf8_lossy(raw)
        );
        // The parse of the same line, completed into a head, says the same.
        let mut whole = raw[..*at].to_vec();
        whole.extend_from_slice(b"\r\n\r\n");
        let parsed = RequestHead::parse(Bytes::from(whole), &limits());
        assert_eq!(parsed.err().as_ref(), Some(err), "{raw:?}");
    }
}

#[test]
fn a_tls_client_hello_is_refused_at_its_first_byte_even_with_line_feeds_in_it() {
    // Record header, handshake header, legacy version, then "random" bytes holding LF and CR.
    let mut hello = vec![
        0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03,
    ];
    hello.extend_from_slice(b"\n\r\n\r\n\n\x00\x01");
    // Byte by byte: refused at the first.
    assert_eq!(
        first_verdict(&hello),
        (1, Err(HttpError::NotHttp { byte: 0x16 }))
    );
    // In one read, LF CR LF looks like the end of a head: its parse refuses it the same way.
    let mut s = HeadScanner::new();
    let n = s
        .scan(&hello, &limits(), HeadKind::Request)
        .unwrap()
        .unwrap();
    let parsed = RequestHead::parse(Bytes::copy_from_slice(&hello[..n]), &limits());
    assert_eq!(parsed.err(), Some(HttpError::NotHttp { byte: 0x16 }));
}

#[test]
fn valid_heads_are_never_refused_early_at_any_split() {
    let heads: &[&[u8]] = &[
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"\r\n\nGET /x?y=z HTTP/1.0\n\n",
        b"M-SEARCH /x HTTP/1.1\r\nHost: a\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET http://h.example:8080/p?q HTTP/1.1\r\nHost: h.example:8080\r\n\r\n",
        b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"X!#$%&'*+-.^_`|~09az / HTTP/1.1\r\nHost: a\r\n\r\n",
    ];
    for raw in heads {
        assert_eq!(first_verdict(raw), (raw.len(), Ok(Some(raw.len()))));
        let parsed = RequestHead::parse(Bytes::copy_from_slice(raw), &limits());
        assert!(parsed.is_ok(), "{raw:?}: {parsed:?}");
    }
}
