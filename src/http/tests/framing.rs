//! RFC 9112 section 6 framing, every smuggling form, keep-alive and Expect.

use super::head::{request, response};
use crate::http::*;

fn req_kind(fields: &str) -> Result<BodyKind, HttpError> {
    request_kind_v("1.1", fields)
}

fn request_kind_v(version: &str, fields: &str) -> Result<BodyKind, HttpError> {
    let head = request(&format!("POST / HTTP/{version}\r\nHost: a\r\n{fields}\r\n")).unwrap();
    request_body_kind(&head)
}

#[test]
fn request_framing_accepts() {
    assert_eq!(req_kind(""), Ok(BodyKind::Empty));
    assert_eq!(req_kind("Content-Length: 0\r\n"), Ok(BodyKind::Length(0)));
    assert_eq!(req_kind("Content-Length: 10\r\n"), Ok(BodyKind::Length(10)));
    assert_eq!(req_kind("Content-Length: 007\r\n"), Ok(BodyKind::Length(7)));
    assert_eq!(
        req_kind("Content-Length: 5, 5\r\n"),
        Ok(BodyKind::Length(5))
    );
    assert_eq!(
        req_kind("Content-Length: 5\r\ncontent-length: 5\r\n"),
        Ok(BodyKind::Length(5))
    );
    assert_eq!(
        req_kind("Content-Length: 18446744073709551615\r\n"),
        Ok(BodyKind::Length(u64::MAX))
    );
    assert_eq!(
        req_kind("Transfer-Encoding: chunked\r\n"),
        Ok(BodyKind::Chunked)
    );
    assert_eq!(
        req_kind("Transfer-Encoding: CHUNKED\r\n"),
        Ok(BodyKind::Chunked)
    );
    // OWS around list elements and empty elements are part of the list syntax.
    assert_eq!(
        req_kind("Transfer-Encoding:  chunked \r\n"),
        Ok(BodyKind::Chunked)
    );
    assert_eq!(
        req_kind("Transfer-Encoding: \tchunked\r\n"),
        Ok(BodyKind::Chunked)
    );
    assert_eq!(
        req_kind("Transfer-Encoding: , chunked ,\r\n"),
        Ok(BodyKind::Chunked)
    );
    assert_eq!(req_kind("Content-Length: 5\r\n"), Ok(BodyKind::Length(5)));
}

#[test]
fn request_smuggling_forms_are_rejected() {
    use HttpError as E;
    let cases: &[(&str, HttpError, u16)] = &[
        // CL + TE, in either order, any spelling.
        (
            "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
            E::ContentLengthWithTransferEncoding,
            400,
        ),
        (
            "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
            E::ContentLengthWithTransferEncoding,
            400,
        ),
        (
            "Transfer-Encoding: xchunked\r\nContent-Length: 5\r\n",
            E::ContentLengthWithTransferEncoding,
            400,
        ),
        // TE whose last coding is not chunked.
        (
            "Transfer-Encoding: chunked, identity\r\n",
            E::TransferEncodingNotChunkedLast,
            400,
        ),
        (
            "Transfer-Encoding: xchunked\r\n",
            E::TransferEncodingNotChunkedLast,
            400,
        ),
        (
            "Transfer-Encoding: chunkedx\r\n",
            E::TransferEncodingNotChunkedLast,
            400,
        ),
        (
            "Transfer-Encoding: identity\r\n",
            E::TransferEncodingNotChunkedLast,
            400,
        ),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n",
            E::TransferEncodingNotChunkedLast,
            400,
        ),
        (
            "Transfer-Encoding: chunked, gzip\r\n",
            E::TransferEncodingNotChunkedLast,
            400,
        ),
        // Malformed codings.
        (
            "Transfer-Encoding: \"chunked\"\r\n",
            E::InvalidTransferEncoding,
            400,
        ),
        (
            "Transfer-Encoding: chun ked\r\n",
            E::InvalidTransferEncoding,
            400,
        ),
        (
            "Transfer-Encoding: chunked;q=1\r\n",
            E::InvalidTransferEncoding,
            400,
        ),
        ("Transfer-Encoding: \r\n", E::InvalidTransferEncoding, 400),
        ("Transfer-Encoding: ,\r\n", E::InvalidTransferEncoding, 400),
        // chunked twice.
        (
            "Transfer-Encoding: chunked, chunked\r\n",
            E::ChunkedAppliedTwice,
            400,
        ),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            E::ChunkedAppliedTwice,
            400,
        ),
        // Codings we do not implement, chunked last: 501.
        (
            "Transfer-Encoding: gzip, chunked\r\n",
            E::UnsupportedTransferCoding {
                coding: "gzip".into(),
            },
            501,
        ),
        (
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
            E::UnsupportedTransferCoding {
                coding: "gzip".into(),
            },
            501,
        ),
        // Content-Length that is not 1*DIGIT.
        ("Content-Length: +5\r\n", E::InvalidContentLength, 400),
        ("Content-Length: -5\r\n", E::InvalidContentLength, 400),
        ("Content-Length: 1_0\r\n", E::InvalidContentLength, 400),
        ("Content-Length: 0x10\r\n", E::InvalidContentLength, 400),
        ("Content-Length: 5 5\r\n", E::InvalidContentLength, 400),
        ("Content-Length: 5a\r\n", E::InvalidContentLength, 400),
        ("Content-Length: a5\r\n", E::InvalidContentLength, 400),
        ("Content-Length: 5,\r\n", E::InvalidContentLength, 400),
        ("Content-Length: ,5\r\n", E::InvalidContentLength, 400),
        ("Content-Length:\r\n", E::InvalidContentLength, 400),
        (
            "Content-Length: 18446744073709551616\r\n",
            E::ContentLengthOverflow,
            400,
        ),
        // Differing values.
        (
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            E::ConflictingContentLength {
                first: 5,
                second: 6,
            },
            400,
        ),
        (
            "Content-Length: 5, 6\r\n",
            E::ConflictingContentLength {
                first: 5,
                second: 6,
            },
            400,
        ),
        (
            "Content-Length: 5\r\nContent-Length: 5, 7\r\n",
            E::ConflictingContentLength {
                first: 5,
                second: 7,
            },
            400,
        ),
    ];
    for (fields, want, status) in cases {
        let got = req_kind(fields);
        assert_eq!(got.as_ref().err(), Some(want), "{fields:?}");
        assert_eq!(want.status(), *status, "{fields:?}");
    }
    // TE in HTTP/1.0, with or without chunked.
    for fields in [
        "Transfer-Encoding: chunked\r\n",
        "Transfer-Encoding: gzip\r\n",
    ] {
        assert_eq!(
            request_kind_v("1.0", fields),
            Err(HttpError::TransferEncodingInHttp10),
            "{fields:?}"
        );
    }
    // A vertical tab (or any CTL) around chunked never reaches framing: the head parse refuses it.
    let err = request("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n");
    assert_eq!(err.err().map(|e| e.status()), Some(400));
    // "Transfer-Encoding : chunked" is whitespace before the colon: 400 at the head.
    let err = request("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n");
    assert!(matches!(err, Err(HttpError::WhitespaceBeforeColon { .. })));
    // Folded TE: obs-fold, 400 at the head.
    let err = request("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n");
    assert!(matches!(err, Err(HttpError::ObsFold { .. })));
}

fn resp_framing(method: Method, raw: &str) -> Result<ResponseFraming, HttpError> {
    response_body_kind(method, &response(raw).unwrap())
}

fn framing(kind: BodyKind, must_close: bool) -> Result<ResponseFraming, HttpError> {
    Ok(ResponseFraming { kind, must_close })
}

#[test]
fn response_framing() {
    let get = Method::Get;
    // Rule 1: no body whatever the headers.
    for raw in [
        "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\n",
        "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
    ] {
        assert_eq!(
            resp_framing(get, raw),
            framing(BodyKind::Empty, false),
            "{raw:?}"
        );
    }
    let cl = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n";
    assert_eq!(
        resp_framing(Method::Head, cl),
        framing(BodyKind::Empty, false)
    );
    // A HEAD response's broken Content-Length does not matter either.
    let bad = "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n";
    assert_eq!(
        resp_framing(Method::Head, bad),
        framing(BodyKind::Empty, false)
    );
    // Rule 2: 2xx to CONNECT.
    assert_eq!(
        resp_framing(Method::Connect, "HTTP/1.1 200 OK\r\n\r\n"),
        framing(BodyKind::Empty, true)
    );
    // Rules 3 and 4.
    let te = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(resp_framing(get, te), framing(BodyKind::Chunked, false));
    let both = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(resp_framing(get, both), framing(BodyKind::Chunked, true));
    let both_bad_cl = "HTTP/1.1 200 OK\r\nContent-Length: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(
        resp_framing(get, both_bad_cl),
        framing(BodyKind::Chunked, true)
    );
    let not_last = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\n";
    assert_eq!(
        resp_framing(get, not_last),
        framing(BodyKind::UntilClose, true)
    );
    let gzip = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
    assert_eq!(
        resp_framing(get, gzip),
        Err(HttpError::UnsupportedTransferCoding {
            coding: "gzip".into()
        })
    );
    let twice = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n";
    assert_eq!(
        resp_framing(get, twice),
        Err(HttpError::ChunkedAppliedTwice)
    );
    let http10 = "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    assert_eq!(
        resp_framing(get, http10),
        Err(HttpError::TransferEncodingInHttp10)
    );
    // Rules 5, 6, 8.
    assert_eq!(resp_framing(get, cl), framing(BodyKind::Length(10), false));
    let zero = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(resp_framing(get, zero), framing(BodyKind::Length(0), false));
    let differ = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n";
    assert_eq!(
        resp_framing(get, differ),
        Err(HttpError::ConflictingContentLength {
            first: 1,
            second: 2
        })
    );
    let plus = "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n";
    assert_eq!(
        resp_framing(get, plus),
        Err(HttpError::InvalidContentLength)
    );
    let none = "HTTP/1.1 200 OK\r\n\r\n";
    assert_eq!(resp_framing(get, none), framing(BodyKind::UntilClose, true));
}

#[test]
fn keep_alive_rules() {
    let req = |v: &str, fields: &str| {
        let host = if v == "1.1" { "Host: a\r\n" } else { "" };
        request_keep_alive(&request(&format!("GET / HTTP/{v}\r\n{host}{fields}\r\n")).unwrap())
    };
    assert!(req("1.1", ""));
    assert!(!req("1.1", "Connection: close\r\n"));
    assert!(!req("1.1", "Connection: Upgrade, CLOSE\r\n"));
    assert!(!req("1.1", "Connection: foo\r\nConnection: close\r\n"));
    assert!(req("1.1", "Connection: closed\r\n"));
    assert!(!req("1.0", ""));
    assert!(req("1.0", "Connection: Keep-Alive\r\n"));
    assert!(req("1.0", "Connection: x, keep-alive\r\n"));
    assert!(!req("1.0", "Connection: keep-alive, close\r\n"));

    let resp = |raw: &str| response_keep_alive(&response(raw).unwrap());
    assert!(resp("HTTP/1.1 200 OK\r\n\r\n"));
    assert!(!resp("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"));
    assert!(!resp("HTTP/1.0 200 OK\r\n\r\n"));
    assert!(resp("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n"));
}

#[test]
fn expect_continue() {
    let exp = |fields: &str| {
        expects_continue(&request(&format!("POST / HTTP/1.1\r\nHost: a\r\n{fields}\r\n")).unwrap())
    };
    assert!(exp("Expect: 100-continue\r\n"));
    assert!(exp("Expect: 100-Continue\r\n"));
    assert!(!exp(""));
    assert!(!exp("Expect: 100-continued\r\n"));
    let v10 = request("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n").unwrap();
    assert!(!expects_continue(&v10));
}
