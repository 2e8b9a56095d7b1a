//! Shotgun tests: every framer fed at every split point (two pieces), one byte at a time, and
//! with padding after the message, compared against the slow oracles.

use super::chunked::decode_pieces;
use crate::http::*;
use tether_testkit::oracle::http::{self as oracle, Oracle};

/// Bytes after a message: the next pipelined request.
const PADDING: &[u8] = b"POST /next HTTP/1.1\r\nHost: a\r\n\r\n";

fn chunked_corpus() -> Vec<Vec<u8>> {
    let mut corpus: Vec<Vec<u8>> = [
        &b"0\r\n\r\n"[..],
        b"1\r\na\r\n0\r\n\r\n",
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        b"5;name=val\r\nhello\r\n6 ; a = \"q\\\"x\" ; b\r\n world\r\n0;last\r\nTrailer-A: 1\r\nB:\r\n\r\n",
        b"00000005\r\nhello\r\n000\r\n\r\n",
        b"5 \r\nhello\r\n0\r\n\r\n",
        b"1F\r\n0123456789abcdef0123456789abcde\r\n0\r\n\r\n",
        b"3\r\n\r\n\r\r\n0\r\nX: \"quoted\" \t value\r\n\r\n",
        // Invalid ones: both sides must refuse at every split.
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhelloXX0\r\n\r\n",
        b"00000000000000001\r\na\r\n0\r\n\r\n",
        b"1;a b\r\na\r\n0\r\n\r\n",
        b"0\r\nX: 1\n\r\n",
        b"0\r\n X: 1\r\n\r\n",
        b"+1\r\na\r\n0\r\n\r\n",
    ]
    .iter()
    .map(|b| b.to_vec())
    .collect();
    // A larger body with data bigger than typical splits.
    let mut big = b"100\r\n".to_vec();
    big.extend((0..256u32).map(|i| i as u8));
    big.extend_from_slice(b"\r\n10;x=y\r\n0123456789abcdef\r\n0\r\nA: b\r\n\r\n");
    corpus.push(big);
    corpus
}

/// Runs the decoder on `pieces` and checks the outcome against the oracle's verdict on `whole`.
fn check(whole: &[u8], pieces: &[&[u8]], label: &str) {
    let mut d = ChunkedDecoder::new();
    let got = decode_pieces(&mut |b| d.decode(b), pieces);
    match oracle::chunked(whole) {
        Oracle::Complete { payload, consumed } => {
            assert_eq!(got, Ok(Some((payload, consumed))), "{label}: {whole:?}");
            assert!(d.is_done());
        }
        Oracle::NotComplete => {
            assert!(
                !matches!(got, Ok(Some(_))),
                "{label}: decoder completed {whole:?}"
            );
        }
    }
}

#[test]
fn chunked_at_every_split_point() {
    for body in chunked_corpus() {
        for padded in [body.clone(), [&body[..], PADDING].concat()] {
            check(&padded, &[&padded], "whole");
            for split in 0..=padded.len() {
                check(&padded, &[&padded[..split], &padded[split..]], "split");
            }
            let bytes: Vec<&[u8]> = padded.chunks(1).collect();
            check(&padded, &bytes, "byte by byte");
            // Three pieces at a few interior points too.
            for a in (0..padded.len()).step_by(3) {
                for b in (a..padded.len()).step_by(5) {
                    check(
                        &padded,
                        &[&padded[..a], &padded[a..b], &padded[b..]],
                        "three",
                    );
                }
            }
        }
    }
}

#[test]
fn chunked_corpus_is_what_it_claims() {
    // The oracle itself must accept the valid half of the corpus and refuse the rest.
    let verdicts: Vec<bool> = chunked_corpus()
        .iter()
        .map(|b| matches!(oracle::chunked(b), Oracle::Complete { .. }))
        .collect();
    assert_eq!(
        verdicts,
        [
            true, true, true, true, true, true, true, true, false, false, false, false, false,
            false, false, false, true
        ]
    );
}

#[test]
fn length_body_at_every_split_point() {
    let body = b"0123456789abcdef";
    let padded = [&body[..], PADDING].concat();
    for split in 0..=padded.len() {
        let mut d = BodyDecoder::new(BodyKind::Length(body.len() as u64));
        let got = decode_pieces(&mut |b| d.decode(b), &[&padded[..split], &padded[split..]]);
        assert_eq!(got, Ok(Some((body.to_vec(), body.len()))), "split {split}");
        assert!(d.is_done());
    }
    let mut d = BodyDecoder::new(BodyKind::Length(body.len() as u64));
    let bytes: Vec<&[u8]> = padded.chunks(1).collect();
    let got = decode_pieces(&mut |b| d.decode(b), &bytes);
    assert_eq!(got, Ok(Some((body.to_vec(), body.len()))));
}

#[test]
fn chunked_body_decoder_at_every_split_point() {
    for body in chunked_corpus() {
        let padded = [&body[..], PADDING].concat();
        for split in 0..=padded.len() {
            let mut d = BodyDecoder::new(BodyKind::Chunked);
            let got = decode_pieces(&mut |b| d.decode(b), &[&padded[..split], &padded[split..]]);
            match oracle::chunked(&padded) {
                Oracle::Complete { payload, consumed } => {
                    assert_eq!(got, Ok(Some((payload, consumed))));
                    assert!(d.is_done());
                }
                Oracle::NotComplete => assert!(!matches!(got, Ok(Some(_)))),
            }
        }
    }
}

fn head_corpus() -> Vec<&'static [u8]> {
    vec![
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\nHost: a\n\n",
        b"\r\n\r\nGET /x HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n",
        b"\n\r\nGET / HTTP/1.0\r\n\r\n",
        b"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n",
    ]
}

#[test]
fn head_scanner_at_every_split_point() {
    for head in head_corpus() {
        let padded = [head, PADDING].concat();
        let want = oracle::head_end(&padded);
        assert_eq!(want, Some(head.len()), "oracle on {head:?}");
        let kind = if head.starts_with(b"HTTP/") {
            HeadKind::Response
        } else {
            HeadKind::Request
        };
        let limits = HeadLimits::default();
        for split in 0..=padded.len() {
            let mut s = HeadScanner::new();
            let first = s.scan(&padded[..split], &limits, kind).unwrap();
            let got = first.or_else(|| s.scan(&padded, &limits, kind).unwrap());
            assert_eq!(got, want, "split {split} of {head:?}");
        }
        // One byte per read.
        let mut s = HeadScanner::new();
        let got = (1..=padded.len()).find_map(|n| s.scan(&padded[..n], &limits, kind).unwrap());
        assert_eq!(got, want, "bytewise {head:?}");
    }
}
