//! Exact bytes of what crosses the proxy.

use std::net::IpAddr;

use bytes::BytesMut;

use super::head::{request, response};
use crate::http::*;

fn ctx<'a>(prefix: &'a str, ip: &str) -> ForwardContext<'a> {
    ForwardContext {
        client_addr: ip.parse::<IpAddr>().unwrap(),
        proto: "http",
        path_prefix: prefix.as_bytes(),
        last_event_id: None,
        method: None,
        request_id: None,
        upgrade: false,
        header_edits: &[],
    }
}

fn upstream(raw: &str, body: OutFraming, prefix: &str) -> String {
    let head = request(raw).unwrap();
    let mut out = BytesMut::new();
    write_upstream_request(&head, body, &ctx(prefix, "10.0.0.9"), &mut out);
    String::from_utf8(out.to_vec()).unwrap()
}

#[test]
fn upstream_request_drops_hop_by_hop_and_appends_forwarding() {
    let raw = "GET /path?q=1 HTTP/1.1\r\n\
        Host: example.com\r\n\
        User-Agent: test\r\n\
        Connection: keep-alive, X-Secret\r\n\
        Keep-Alive: timeout=5\r\n\
        X-Secret: drop me\r\n\
        Proxy-Authorization: Basic eA==\r\n\
        Proxy-Connection: keep-alive\r\n\
        TE: trailers\r\n\
        Trailer: X-Sum\r\n\
        Upgrade: websocket\r\n\
        Accept: */*\r\n\
        X-Forwarded-For: 1.1.1.1\r\n\
        x-forwarded-for: 2.2.2.2, 3.3.3.3\r\n\
        X-Forwarded-Proto: https\r\n\
        X-Forwarded-Host: evil\r\n\
        Content-Length: 0\r\n\
        \r\n";
    assert_eq!(
        upstream(raw, OutFraming::Length(0), "/api"),
        "GET /api/path?q=1 HTTP/1.1\r\n\
         Host: example.com\r\n\
         User-Agent: test\r\n\
         Accept: */*\r\n\
         Content-Length: 0\r\n\
         X-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.9\r\n\
         X-Forwarded-Proto: http\r\n\
         X-Forwarded-Host: example.com\r\n\
         \r\n"
    );
}

#[test]
fn upstream_request_reframes_bodies() {
    let raw = "POST /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n";
    assert_eq!(
        upstream(raw, OutFraming::Length(5), ""),
        "POST /up HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\
         X-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n\r\n"
    );
    let raw = "POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\nHost: h\r\n\r\n";
    assert_eq!(
        upstream(raw, OutFraming::Chunked, ""),
        "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\
         X-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n\r\n"
    );
    let raw = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    assert_eq!(
        upstream(raw, OutFraming::Empty, ""),
        "GET / HTTP/1.1\r\nHost: h\r\n\
         X-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n\r\n"
    );
}

#[test]
fn upstream_request_target_forms() {
    // Absolute-form: origin-form upstream, Host from the authority.
    let raw = "GET http://up.example:8080?x=1 HTTP/1.1\r\nHost: ignored\r\nA: b\r\n\r\n";
    assert_eq!(
        upstream(raw, OutFraming::Empty, "/p"),
        "GET /p/?x=1 HTTP/1.1\r\nHost: up.example:8080\r\nA: b\r\n\
         X-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: up.example:8080\r\n\r\n"
    );
    let raw = "GET HTTP://a.example/x/y HTTP/1.0\r\n\r\n";
    assert_eq!(
        upstream(raw, OutFraming::Empty, ""),
        "GET /x/y HTTP/1.1\r\nHost: a.example\r\n\
         X-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: a.example\r\n\r\n"
    );
    // HTTP/1.0 without Host: an empty Host (RFC 9110 7.2) and no X-Forwarded-Host.
    let raw = "GET /x HTTP/1.0\r\nA: b\r\n\r\n";
    assert_eq!(
        upstream(raw, OutFraming::Empty, ""),
        "GET /x HTTP/1.1\r\nHost: \r\nA: b\r\nX-Forwarded-For: 10.0.0.9\r\nX-Forwarded-Proto: http\r\n\r\n"
    );
    // Asterisk-form and authority-form pass unprefixed.
    let raw = "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n";
    assert!(upstream(raw, OutFraming::Empty, "/api").starts_with("OPTIONS * HTTP/1.1\r\n"));
    let raw = "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n";
    assert!(upstream(raw, OutFraming::Empty, "/api").starts_with("CONNECT h:443 HTTP/1.1\r\n"));
}

#[test]
fn prefix_join_never_doubles_or_drops_a_slash() {
    let cases = [
        ("", "/x", "/x"),
        ("/api", "/x", "/api/x"),
        ("/api/", "/x", "/api/x"),
        ("api", "/x", "/api/x"),
        ("/", "/x", "/x"),
        ("/api", "/", "/api/"),
        ("/api/", "/?q", "/api/?q"),
        ("/a/b", "/c/d?e=/f", "/a/b/c/d?e=/f"),
    ];
    for (prefix, target, want) in cases {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n");
        let got = upstream(&raw, OutFraming::Empty, prefix);
        assert!(
            got.starts_with(&format!("GET {want} HTTP/1.1\r\n")),
            "{prefix:?} + {target:?}: {got:?}"
        );
    }
}

#[test]
fn connection_cannot_strip_host_and_addresses_are_canonical() {
    let raw = "GET / HTTP/1.1\r\nHost: h\r\nConnection: Host, close\r\n\r\n";
    let head = request(raw).unwrap();
    let mut out = BytesMut::new();
    write_upstream_request(
        &head,
        OutFraming::Empty,
        &ctx("", "::ffff:10.1.2.3"),
        &mut out,
    );
    assert_eq!(
        &out[..],
        &b"GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.1.2.3\r\n\
           X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n\r\n"[..]
    );
    // A client listing X-Forwarded-For in Connection drops its own chain; ours is still added.
    let raw = "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1\r\nConnection: X-Forwarded-For\r\n\r\n";
    let hidden = request(raw).unwrap();
    let mut out = BytesMut::new();
    write_upstream_request(&hidden, OutFraming::Empty, &ctx("", "10.0.0.1"), &mut out);
    assert!(std::str::from_utf8(&out)
        .unwrap()
        .contains("\r\nX-Forwarded-For: 10.0.0.1\r\n"));
    let mut out = BytesMut::new();
    write_upstream_request(&head, OutFraming::Empty, &ctx("", "2001:db8::1"), &mut out);
    assert!(std::str::from_utf8(&out)
        .unwrap()
        .contains("X-Forwarded-For: 2001:db8::1\r\n"));
}

fn client(raw: &str, body: OutFraming, keep_alive: bool, version: Version) -> String {
    let head = response(raw).unwrap();
    let mut out = BytesMut::new();
    write_client_response(&head, body, keep_alive, version, b"", &mut out);
    String::from_utf8(out.to_vec()).unwrap()
}

#[test]
fn client_response_reframes_and_sets_connection() {
    let raw = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 12\r\n\
               Connection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\n\
               Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n";
    let v11 = Version::Http11;
    assert_eq!(
        client(raw, OutFraming::Length(12), true, v11),
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\
         Content-Length: 12\r\n\r\n"
    );
    assert_eq!(
        client(raw, OutFraming::Length(12), false, v11),
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\
         Content-Length: 12\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(
        client(raw, OutFraming::Length(12), true, Version::Http10),
        "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\
         Content-Length: 12\r\nConnection: keep-alive\r\n\r\n"
    );
    let chunked =
        "HTTP/1.1 201 \r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n";
    assert_eq!(
        client(chunked, OutFraming::Chunked, true, v11),
        "HTTP/1.1 201 Created\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    // Close-delimited bodies always close, whatever the caller asked.
    assert_eq!(
        client(chunked, OutFraming::CloseDelimited, true, Version::Http10),
        "HTTP/1.1 201 Created\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
    );
}

#[test]
fn client_response_without_body_keeps_representation_length() {
    // HEAD and 304: the upstream's Content-Length says how long the representation is.
    let raw = "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nETag: \"x\"\r\n\r\n";
    assert_eq!(
        client(raw, OutFraming::Empty, true, Version::Http11),
        "HTTP/1.1 200 OK\r\nETag: \"x\"\r\nContent-Length: 1234\r\n\r\n"
    );
    // 204 must not carry one.
    let raw = "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n";
    assert_eq!(
        client(raw, OutFraming::Empty, true, Version::Http11),
        "HTTP/1.1 204 No Content\r\n\r\n"
    );
}

#[test]
fn interim_response_is_relayed_without_hop_by_hop() {
    let head = response(
        "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\nConnection: x\r\nX: 1\r\n\r\n",
    )
    .unwrap();
    let mut out = BytesMut::new();
    write_interim_response(&head, &mut out);
    assert_eq!(
        &out[..],
        &b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"[..]
    );
}

#[test]
fn error_responses() {
    let mut out = BytesMut::new();
    write_error_response(
        502,
        "upstream refused the connection",
        false,
        None,
        &mut out,
    );
    assert_eq!(
        &out[..],
        &b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\n\
           Content-Length: 49\r\nConnection: close\r\n\r\n\
           502 Bad Gateway: upstream refused the connection\n"[..]
    );
    let mut out = BytesMut::new();
    write_error_response(400, "x", true, None, &mut out);
    assert_eq!(
        &out[..],
        &b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n\
           Content-Length: 19\r\n\r\n400 Bad Request: x\n"[..]
    );
    for status in [400, 408, 413, 414, 431, 501, 502, 503, 504, 505] {
        assert!(!reason_phrase(status).is_empty(), "{status}");
        let mut out = BytesMut::new();
        write_error_response(status, "detail", true, None, &mut out);
        let text = std::str::from_utf8(&out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{text}"
        );
        // The proxy's own output parses with the proxy's own parser.
        let head_bytes = bytes::Bytes::copy_from_slice(&out[..head.len() + 4]);
        let parsed = ResponseHead::parse(head_bytes, &HeadLimits::default()).unwrap();
        assert_eq!(parsed.status, status);
    }
    assert_eq!(reason_phrase(799), "");
}

#[test]
fn last_event_id_is_replaced_when_the_relay_resumes() {
    let head = request(
        "GET /s HTTP/1.1\r\nHost: h\r\nLast-Event-ID: 3\r\nAccept: text/event-stream\r\n\r\n",
    )
    .unwrap();
    let mut out = BytesMut::new();
    let mut c = ctx("", "10.0.0.9");
    c.last_event_id = Some(b"42");
    write_upstream_request(&head, OutFraming::Empty, &c, &mut out);
    let text = String::from_utf8(out.to_vec()).unwrap();
    assert!(!text.contains("Last-Event-ID: 3"), "{text}");
    assert_eq!(text.matches("Last-Event-ID").count(), 1, "{text}");
    assert!(text.contains("Last-Event-ID: 42\r\n"), "{text}");
    // Without an override the client's value passes through untouched.
    let mut out = BytesMut::new();
    write_upstream_request(&head, OutFraming::Empty, &ctx("", "10.0.0.9"), &mut out);
    assert!(String::from_utf8(out.to_vec())
        .unwrap()
        .contains("Last-Event-ID: 3\r\n"));
}

#[test]
fn an_empty_last_event_id_override_removes_the_header() {
    let head = request("GET /s HTTP/1.1\r\nHost: h\r\nLast-Event-ID: 0-7\r\n\r\n").unwrap();
    let mut out = BytesMut::new();
    let mut c = ctx("", "10.0.0.9");
    c.last_event_id = Some(b"");
    write_upstream_request(&head, OutFraming::Empty, &c, &mut out);
    let text = String::from_utf8(out.to_vec()).unwrap();
    assert!(
        !text.to_ascii_lowercase().contains("last-event-id"),
        "{text}"
    );
}

#[test]
fn an_upgrade_keeps_its_fields_and_the_request_id_replaces_the_clients() {
    let head = request(
        "GET /chat HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Key: k\r\nX-Request-Id: bad id\r\n\r\n",
    )
    .unwrap();
    assert!(requests_upgrade(&head));
    let mut out = BytesMut::new();
    let mut c = ctx("", "10.0.0.9");
    c.upgrade = true;
    c.request_id = Some(b"abc-1");
    write_upstream_request(&head, OutFraming::Empty, &c, &mut out);
    let text = String::from_utf8(out.to_vec()).unwrap();
    assert!(text.contains("Upgrade: websocket\r\n"), "{text}");
    assert!(text.contains("Connection: upgrade\r\n"), "{text}");
    assert!(!text.contains("keep-alive"), "{text}");
    assert!(text.contains("X-Request-Id: abc-1\r\n"), "{text}");
    assert!(!text.contains("bad id"), "{text}");
    // Without the upgrade, Upgrade is hop-by-hop as before.
    let plain = upstream(
        "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n",
        OutFraming::Empty,
        "",
    );
    assert!(!plain.contains("Upgrade"), "{plain}");
    let h10 =
        request("GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n").unwrap();
    assert!(!requests_upgrade(&h10), "HTTP/1.0 cannot upgrade");
    let no_option = request("GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n").unwrap();
    assert!(
        !requests_upgrade(&no_option),
        "Upgrade without Connection: upgrade"
    );
}

#[test]
fn a_switching_response_keeps_upgrade_and_the_client_gets_the_request_id() {
    let head = response(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: x\r\nX-Request-Id: upstream-own\r\n\r\n",
    )
    .unwrap();
    let mut out = BytesMut::new();
    write_switching_response(&head, b"id-7", &mut out);
    assert_eq!(
        &out[..],
        &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: x\r\n\
           X-Request-Id: id-7\r\nConnection: upgrade\r\n\r\n"[..]
    );
    let ok = response("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut out = BytesMut::new();
    write_client_response(
        &ok,
        OutFraming::Length(0),
        true,
        Version::Http11,
        b"id-8",
        &mut out,
    );
    assert!(out.ends_with(b"X-Request-Id: id-8\r\nContent-Length: 0\r\n\r\n"));
    let mut out = BytesMut::new();
    write_error_response(502, "d", false, Some(b"id-9"), &mut out);
    assert!(std::str::from_utf8(&out)
        .unwrap()
        .contains("\r\nX-Request-Id: id-9\r\n\r\n"));
}

/// The hand-written IPv4 form is `Display`'s, for every octet width and for a mapped address.
#[test]
fn client_addr_is_written_as_display_writes_it() {
    use crate::http::rewrite::put_client_addr;
    let mut cases: Vec<IpAddr> = [
        "0.0.0.0",
        "127.0.0.1",
        "9.10.99.100",
        "255.255.255.255",
        "192.168.1.20",
        "::1",
        "2001:db8::8a2e:370:7334",
        "::ffff:10.0.0.1",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    cases.extend((0..=255u8).map(|o| IpAddr::from([o, 255 - o, o / 3, o / 7])));
    for addr in cases {
        let mut out = BytesMut::new();
        put_client_addr(&mut out, addr);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            addr.to_canonical().to_string(),
            "{addr}"
        );
    }
}
