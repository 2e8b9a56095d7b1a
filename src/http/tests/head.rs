//! HeadScanner and head parsing: limits, strictness, spans.

use bytes::Bytes;

use crate::http::*;

fn limits() -> HeadLimits {
    HeadLimits::default()
}

/// Parses `raw` as a request head, after checking the scanner delimits it exactly.
pub(super) fn request(raw: &str) -> Result<RequestHead, HttpError> {
    let mut scanner = HeadScanner::new();
    let n = scanner
        .scan(raw.as_bytes(), &limits(), HeadKind::Request)?
        .expect("test heads are complete");
    assert_eq!(n, raw.len(), "scanner end for {raw:?}");
    RequestHead::parse(Bytes::copy_from_slice(raw.as_bytes()), &limits())
}

pub(super) fn response(raw: &str) -> Result<ResponseHead, HttpError> {
    let mut scanner = HeadScanner::new();
    let n = scanner
        .scan(raw.as_bytes(), &limits(), HeadKind::Response)?
        .expect("test heads are complete");
    assert_eq!(n, raw.len(), "scanner end for {raw:?}");
    ResponseHead::parse(Bytes::copy_from_slice(raw.as_bytes()), &limits())
}

fn request_err(raw: &str) -> HttpError {
    match request(raw) {
        Ok(_) => panic!("accepted {raw:?}"),
        Err(e) => e,
    }
}

// ---- request parsing ---------------------------------------------------------------------------

#[test]
fn parses_request_into_spans() {
    let head = request(
        "POST /submit?x=1 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\nX-Empty:\r\nX-Pad: \t v w \t\r\n\r\n",
    )
    .unwrap();
    assert_eq!(head.method, Method::Post);
    assert_eq!(head.method_str(), b"POST");
    assert_eq!(head.target(), b"/submit?x=1");
    assert_eq!(head.version, Version::Http11);
    assert_eq!(head.header("HOST"), Some(&b"example.com"[..]));
    assert_eq!(head.header("x-empty"), Some(&b""[..]));
    assert_eq!(head.header("x-pad"), Some(&b"v w"[..]));
    assert_eq!(head.header("missing"), None);
    let names: Vec<&[u8]> = head.headers().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        vec![&b"Host"[..], b"Content-Length", b"X-Empty", b"X-Pad"]
    );
}

#[test]
fn methods_and_versions() {
    let cases = [
        ("GET", Method::Get),
        ("HEAD", Method::Head),
        ("POST", Method::Post),
        ("PUT", Method::Put),
        ("DELETE", Method::Delete),
        ("OPTIONS", Method::Options),
        ("PATCH", Method::Patch),
        ("TRACE", Method::Trace),
        ("PURGE", Method::Other),
        ("get", Method::Other),
    ];
    for (text, method) in cases {
        let head = request(&format!("{text} / HTTP/1.1\r\nHost: a\r\n\r\n")).unwrap();
        assert_eq!(head.method, method, "{text}");
        assert_eq!(head.method_str(), text.as_bytes());
    }
    assert!(Method::Get.is_idempotent() && Method::Put.is_idempotent());
    assert!(Method::Delete.is_idempotent() && Method::Options.is_idempotent());
    assert!(!Method::Post.is_idempotent() && !Method::Patch.is_idempotent());
    assert!(!Method::Connect.is_idempotent() && !Method::Other.is_idempotent());
    let head = request("GET / HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(head.version, Version::Http10);
    let head = request("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    assert_eq!(head.unwrap().method, Method::Connect);
    assert!(request("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").is_ok());
    assert!(request("GET http://a.example/x?y HTTP/1.1\r\nHost: b\r\n\r\n").is_ok());
}

#[test]
fn request_rejections_with_status() {
    use HeadKind::Request as R;
    let cases: &[(&str, HttpError, u16)] = &[
        (
            "GET / HTTP/1.1\r\nHost: a\r\n x\r\n\r\n",
            HttpError::ObsFold { kind: R, line: 2 },
            400,
        ),
        (
            "GET / HTTP/1.1\r\n Host: a\r\n\r\n",
            HttpError::ObsFold { kind: R, line: 1 },
            400,
        ),
        (
            "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            HttpError::WhitespaceBeforeColon { kind: R, line: 1 },
            400,
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nX\t: b\r\n\r\n",
            HttpError::WhitespaceBeforeColon { kind: R, line: 2 },
            400,
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nBad[Name]: b\r\n\r\n",
            HttpError::InvalidHeaderName { kind: R, line: 2 },
            400,
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n",
            HttpError::InvalidHeaderName { kind: R, line: 2 },
            400,
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n",
            HttpError::InvalidHeaderValue { kind: R },
            400,
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n",
            HttpError::InvalidHeaderValue { kind: R },
            400,
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
            HttpError::InvalidHeaderValue { kind: R },
            400,
        ),
        (
            "G@T / HTTP/1.1\r\nHost: a\r\n\r\n",
            HttpError::InvalidMethod,
            400,
        ),
        (
            "GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
            HttpError::InvalidTarget,
            400,
        ),
        (
            "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
            HttpError::InvalidVersion { kind: R },
            400,
        ),
        (
            "GET relative HTTP/1.1\r\nHost: a\r\n\r\n",
            HttpError::InvalidTarget,
            400,
        ),
        (
            "GET * HTTP/1.1\r\nHost: a\r\n\r\n",
            HttpError::InvalidTarget,
            400,
        ),
        (
            "OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n",
            HttpError::InvalidTarget,
            400,
        ),
        (
            "CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n",
            HttpError::InvalidTarget,
            400,
        ),
        (
            "GET http://u@h/ HTTP/1.1\r\nHost: a\r\n\r\n",
            HttpError::InvalidTarget,
            400,
        ),
        (
            "GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n",
            HttpError::InvalidTarget,
            400,
        ),
        (
            "GET / HTTP/1.2\r\nHost: a\r\n\r\n",
            HttpError::UnsupportedVersion {
                kind: R,
                major: 1,
                minor: 2,
            },
            505,
        ),
        (
            "GET / HTTP/2.0\r\nHost: a\r\n\r\n",
            HttpError::UnsupportedVersion {
                kind: R,
                major: 2,
                minor: 0,
            },
            505,
        ),
        (
            "GET / HTTP/2\r\nHost: a\r\n\r\n",
            HttpError::InvalidVersion { kind: R },
            400,
        ),
        (
            "GET / http/1.1\r\nHost: a\r\n\r\n",
            HttpError::InvalidVersion { kind: R },
            400,
        ),
        (
            "GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
            HttpError::InvalidLineEnding { kind: R },
            400,
        ),
        ("GET / HTTP/1.1\r\n\r\n", HttpError::MissingHost, 400),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
            HttpError::MultipleHost { count: 2 },
            400,
        ),
        (
            "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\nHOST: c\r\n\r\n",
            HttpError::MultipleHost { count: 3 },
            400,
        ),
        (
            "GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            HttpError::InvalidHost,
            400,
        ),
        (
            "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n",
            HttpError::InvalidHost,
            400,
        ),
        (
            "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
            HttpError::InvalidHost,
            400,
        ),
        (
            "GET / HTTP/1.1\r\nHost: a,b\r\n\r\n",
            HttpError::InvalidHost,
            400,
        ),
    ];
    for (raw, want, status) in cases {
        let err = request_err(raw);
        assert_eq!(&err, want, "{raw:?}");
        assert_eq!(err.status(), *status, "{raw:?}");
        assert!(!err.to_string().is_empty());
    }
    // Valid Host shapes.
    for host in [
        "",
        "a.example",
        "a.example:8080",
        "[::1]:80",
        "127.0.0.1",
        "xn--bcher-kva.example",
    ] {
        assert!(
            request(&format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n")).is_ok(),
            "{host}"
        );
    }
}

#[test]
fn request_limits() {
    let few = HeadLimits {
        max_headers: 3,
        ..limits()
    };
    let three = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
    assert!(RequestHead::parse(Bytes::from(three), &few).is_ok());
    let four = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    let err = RequestHead::parse(Bytes::from(four), &few).err().unwrap();
    assert_eq!(
        err,
        HttpError::TooManyHeaders {
            kind: HeadKind::Request,
            limit: 3
        }
    );
    assert_eq!(err.status(), 431);
    let many = format!("GET / HTTP/1.1\r\nHost: a\r\n{}\r\n", "A: 1\r\n".repeat(50));
    assert_eq!(
        RequestHead::parse(Bytes::from(many), &few)
            .err()
            .unwrap()
            .status(),
        431
    );
    // Default limit, and a raised one served from the heap.
    let hundred = format!("GET / HTTP/1.1\r\nHost: a\r\n{}\r\n", "A: 1\r\n".repeat(99));
    assert!(RequestHead::parse(Bytes::from(hundred.clone()), &limits()).is_ok());
    let over = format!(
        "GET / HTTP/1.1\r\nHost: a\r\n{}\r\n",
        "A: 1\r\n".repeat(100)
    );
    assert_eq!(
        RequestHead::parse(Bytes::from(over.clone()), &limits())
            .err()
            .unwrap()
            .status(),
        431
    );
    let raised = HeadLimits {
        max_headers: 500,
        ..limits()
    };
    assert_eq!(
        RequestHead::parse(Bytes::from(over), &raised)
            .unwrap()
            .headers
            .len(),
        101
    );

    // Target length: exactly the limit passes, one more is 414.
    let short = HeadLimits {
        max_target_bytes: 10,
        ..limits()
    };
    let ok = "GET /123456789 HTTP/1.1\r\nHost: a\r\n\r\n";
    assert!(RequestHead::parse(Bytes::from(ok), &short).is_ok());
    let long = "GET /1234567890 HTTP/1.1\r\nHost: a\r\n\r\n";
    let err = RequestHead::parse(Bytes::from(long), &short).err().unwrap();
    assert_eq!(err, HttpError::TargetTooLong { limit: 10 });
    assert_eq!(err.status(), 414);

    // The parse enforces the head size too.
    let tiny = HeadLimits {
        max_head_bytes: 20,
        ..limits()
    };
    let err = RequestHead::parse(Bytes::from(ok), &tiny).err().unwrap();
    assert_eq!(err.status(), 431);
}

#[test]
fn parse_demands_exactly_one_head() {
    let err = RequestHead::parse(
        Bytes::from_static(b"GET / HTTP/1.1\r\nHost: a\r\n"),
        &limits(),
    );
    assert_eq!(
        err.err(),
        Some(HttpError::IncompleteHead {
            kind: HeadKind::Request
        })
    );
    let err = RequestHead::parse(
        Bytes::from_static(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nBODY"),
        &limits(),
    );
    assert_eq!(
        err.err(),
        Some(HttpError::IncompleteHead {
            kind: HeadKind::Request
        })
    );
}

#[test]
fn leading_empty_lines_are_tolerated() {
    let head = request("\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    assert_eq!(head.target(), b"/x");
    assert_eq!(head.method_str(), b"GET");
}

// ---- response parsing --------------------------------------------------------------------------

#[test]
fn parses_response() {
    let head = response("HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\n").unwrap();
    assert_eq!(head.status, 404);
    assert_eq!(head.reason.of(&head.bytes), b"Not Found");
    assert_eq!(head.version, Version::Http11);
    assert_eq!(head.header("content-length"), Some(&b"3"[..]));
    let head = response("HTTP/1.0 200 \r\n\r\n").unwrap();
    assert_eq!(
        (head.status, head.reason.of(&head.bytes), head.version),
        (200, &b""[..], Version::Http10)
    );
    let head = response("HTTP/1.1 204\r\n\r\n").unwrap();
    assert_eq!(head.reason.of(&head.bytes), b"");
    // obs-text in the reason is kept as sent (httparse would give "").
    let head = ResponseHead::parse(
        Bytes::from_static(b"HTTP/1.1 200 \xc3\xa9t\xc3\xa9\r\n\r\n"),
        &limits(),
    )
    .unwrap();
    assert_eq!(head.reason.of(&head.bytes), "été".as_bytes());
    assert_eq!(head.headers().count(), 0);
}

#[test]
fn response_rejections() {
    use HeadKind::Response as S;
    let cases: &[(&str, HttpError)] = &[
        ("HTTP/1.1 99 Low\r\n\r\n", HttpError::InvalidStatusLine),
        (
            "HTTP/1.1 099 Low\r\n\r\n",
            HttpError::InvalidStatusCode { code: 99 },
        ),
        (
            "HTTP/1.1 600 High\r\n\r\n",
            HttpError::InvalidStatusCode { code: 600 },
        ),
        ("HTTP/1.1 2000 OK\r\n\r\n", HttpError::InvalidStatusLine),
        (
            "HTTP/2.0 200 OK\r\n\r\n",
            HttpError::UnsupportedVersion {
                kind: S,
                major: 2,
                minor: 0,
            },
        ),
        (
            "HTTP/x 200 OK\r\n\r\n",
            HttpError::InvalidVersion { kind: S },
        ),
        (
            "HTTP/1.1 200 OK\r\nA: 1\r\n folded\r\n\r\n",
            HttpError::ObsFold { kind: S, line: 2 },
        ),
        (
            "HTTP/1.1 200 OK\r\nA : 1\r\n\r\n",
            HttpError::WhitespaceBeforeColon { kind: S, line: 1 },
        ),
        (
            "HTTP/1.1 200 OK\r\nA: \x00\r\n\r\n",
            HttpError::InvalidHeaderValue { kind: S },
        ),
    ];
    for (raw, want) in cases {
        assert_eq!(response(raw).err().as_ref(), Some(want), "{raw:?}");
    }
}

#[test]
fn span_of_never_panics() {
    let span = Span { start: 5, end: 10 };
    assert_eq!(span.of(b"abc"), b"");
    assert_eq!(span.len(), 5);
    assert!(!span.is_empty());
    let backwards = Span { start: 10, end: 5 };
    assert_eq!(backwards.len(), 0);
    assert_eq!(backwards.of(b"0123456789abc"), b"");
}

#[test]
fn event_stream_content_type_in_any_case_with_parameters() {
    let head = |ct: &str| {
        ResponseHead::parse(
            Bytes::from(format!("HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\n\r\n")),
            &limits(),
        )
        .unwrap()
    };
    assert!(head("text/event-stream").is_event_stream());
    assert!(head("Text/Event-Stream; charset=utf-8").is_event_stream());
    assert!(head(" text/event-stream ;x=1").is_event_stream());
    assert!(!head("text/event-streams").is_event_stream());
    assert!(!head("application/json").is_event_stream());
    let none =
        ResponseHead::parse(Bytes::from_static(b"HTTP/1.1 200 OK\r\n\r\n"), &limits()).unwrap();
    assert!(!none.is_event_stream());
}
