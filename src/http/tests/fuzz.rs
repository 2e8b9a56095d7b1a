//! Arbitrary and near-valid bytes through every entry point: no panics, spans in bounds, and
//! what the proxy writes parses again.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use crate::http::*;

const SEED_HEADS: &[&[u8]] = &[
    b"GET /a?b=c HTTP/1.1\r\nHost: h.example\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\nContent-Length: 3\r\n\r\n",
    b"POST http://u.example/p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
];

fn check_request(bytes: &[u8]) {
    let limits = HeadLimits::default();
    let mut scanner = HeadScanner::new();
    let Ok(Some(n)) = scanner.scan(bytes, &limits, HeadKind::Request) else {
        return;
    };
    let Ok(head) = RequestHead::parse(Bytes::copy_from_slice(&bytes[..n]), &limits) else {
        return;
    };
    for field in &head.headers {
        assert!(field.name.end as usize <= n && field.value.end as usize <= n);
    }
    let _ = request_body_kind(&head);
    let _ = request_keep_alive(&head);
    let _ = expects_continue(&head);
    let ctx = ForwardContext {
        client_addr: "192.0.2.1".parse().unwrap(),
        proto: "http",
        path_prefix: b"/pre",
        last_event_id: None,
        method: None,
        request_id: Some(b"id"),
        upgrade: crate::http::requests_upgrade(&head),
        header_edits: &[],
    };
    for framing in [
        OutFraming::Empty,
        OutFraming::Length(7),
        OutFraming::Chunked,
    ] {
        let mut out = BytesMut::new();
        write_upstream_request(&head, framing, &ctx, &mut out);
        let reparsed = RequestHead::parse(out.freeze(), &limits);
        assert!(
            reparsed.is_ok(),
            "{:?} from {:?}",
            reparsed.err(),
            String::from_utf8_lossy(bytes)
        );
    }
}

fn check_response(bytes: &[u8]) {
    let limits = HeadLimits::default();
    let mut scanner = HeadScanner::new();
    let Ok(Some(n)) = scanner.scan(bytes, &limits, HeadKind::Response) else {
        return;
    };
    let Ok(head) = ResponseHead::parse(Bytes::copy_from_slice(&bytes[..n]), &limits) else {
        return;
    };
    let _ = response_body_kind(Method::Get, &head);
    let _ = response_keep_alive(&head);
    let mut out = BytesMut::new();
    write_client_response(
        &head,
        OutFraming::Chunked,
        false,
        Version::Http11,
        b"id",
        &mut out,
    );
    assert!(ResponseHead::parse(out.freeze(), &limits).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..300)) {
        check_request(&input);
        check_response(&input);
        let mut d = ChunkedDecoder::new();
        let _ = d.decode(&input);
    }

    #[test]
    fn mutated_heads_never_panic_and_rewrites_parse(
        seed in 0..SEED_HEADS.len(),
        edits in proptest::collection::vec((any::<proptest::sample::Index>(), prop_oneof![
            Just(b' '), Just(b'\t'), Just(b'\r'), Just(b'\n'), Just(b':'), Just(b','), Just(b'/'),
            Just(b'@'), Just(b'0'), Just(0u8), Just(0x7f), Just(0xc3), any::<u8>()
        ]), 1..4),
    ) {
        let mut head = SEED_HEADS[seed].to_vec();
        for (at, byte) in edits {
            let i = at.index(head.len());
            head[i] = byte;
        }
        check_request(&head);
        let mut as_response = b"HTTP/1.1 200 OK\r\n".to_vec();
        if let Some(p) = head.iter().position(|&b| b == b'\n') {
            as_response.extend_from_slice(&head[p + 1..]);
        }
        check_response(&as_response);
    }
}

#[test]
fn seed_heads_are_valid() {
    for seed in SEED_HEADS {
        let parsed = RequestHead::parse(Bytes::from_static(seed), &HeadLimits::default());
        assert!(parsed.is_ok(), "{:?}", parsed.err());
        check_request(seed);
    }
}
