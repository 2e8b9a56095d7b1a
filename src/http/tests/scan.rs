//! HeadScanner: both line ends, leading empty lines, limits, resumption and linear work.

use bytes::Bytes;

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
