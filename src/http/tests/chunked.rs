//! The chunked decoder: strictness (each smuggling form with its exact error) and properties.

use proptest::prelude::*;

use crate::http::*;
use tether_testkit::oracle::http::{self as oracle, Oracle};

/// Feeds `pieces` as successive reads, the way the proxy does: unconsumed bytes stay in the
/// buffer, data is copied out, NeedMore clears the buffer. Returns the payload and how many
/// bytes the body took, or the first error.
pub(super) fn decode_pieces(
    decoder: &mut dyn FnMut(&[u8]) -> Result<Decoded, HttpError>,
    pieces: &[&[u8]],
) -> Result<Option<(Vec<u8>, usize)>, HttpError> {
    let mut buf: Vec<u8> = Vec::new();
    let mut payload = Vec::new();
    let mut consumed = 0;
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match decoder(&buf)? {
                Decoded::Data { start, end } => {
                    assert!(
                        start < end && end <= buf.len(),
                        "{start}..{end} of {}",
                        buf.len()
                    );
                    payload.extend_from_slice(&buf[start..end]);
                    buf.drain(..end);
                    consumed += end;
                }
                Decoded::NeedMore => {
                    consumed += buf.len();
                    buf.clear();
                    break;
                }
                Decoded::Done { consumed: n } => {
                    assert!(n <= buf.len());
                    return Ok(Some((payload, consumed + n)));
                }
            }
        }
    }
    Ok(None)
}

/// Decodes `input` in one piece with a fresh decoder.
pub(super) fn decode_all(input: &[u8]) -> Result<Option<(Vec<u8>, usize)>, HttpError> {
    let mut d = ChunkedDecoder::new();
    decode_pieces(&mut |b| d.decode(b), &[input])
}

fn err(input: &[u8]) -> HttpError {
    match decode_all(input) {
        Err(e) => e,
        Ok(r) => panic!("accepted {:?}: {r:?}", String::from_utf8_lossy(input)),
    }
}

#[test]
fn decodes_simple_bodies() {
    assert_eq!(decode_all(b"0\r\n\r\n"), Ok(Some((vec![], 5))));
    assert_eq!(
        decode_all(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT"),
        Ok(Some((b"hello world".to_vec(), 26)))
    );
    assert_eq!(
        decode_all(b"A\r\n0123456789\r\n0\r\n\r\n")
            .unwrap()
            .unwrap()
            .0,
        b"0123456789"
    );
    assert_eq!(
        decode_all(b"00000000000000a\r\n0123456789\r\n0000\r\n\r\n")
            .unwrap()
            .unwrap()
            .0,
        b"0123456789"
    );
    // Extensions of every shape, whitespace after the size, trailers.
    let body = b"5;a\r\nhello\r\n1 ; b = c ;d=\"q\\\"x;\" \r\n!\r\n2 \r\n!!\r\n0;end\r\nX-T: 1\r\nY:\r\n\r\n";
    assert_eq!(
        decode_all(body),
        Ok(Some((b"hello!!!".to_vec(), body.len())))
    );
}

#[test]
fn data_comes_out_in_one_slice() {
    let mut body = b"1000\r\n".to_vec();
    body.extend(std::iter::repeat_n(b'x', 4096));
    body.extend_from_slice(b"\r\n0\r\n\r\n");
    let mut d = ChunkedDecoder::new();
    assert_eq!(
        d.decode(&body),
        Ok(Decoded::Data {
            start: 6,
            end: 6 + 4096
        })
    );
    assert_eq!(
        d.decode(&body[6 + 4096..]),
        Ok(Decoded::Done { consumed: 7 })
    );
    assert!(d.is_done());
    assert_eq!(d.decode(b"more"), Ok(Decoded::Done { consumed: 0 }));
}

#[test]
fn size_line_errors() {
    use HttpError as E;
    let e17 = err(b"00000000000000001\r\nx\r\n0\r\n\r\n");
    assert_eq!(e17, E::ChunkSizeTooLong { digits: 17 });
    assert_eq!(e17.to_string(), "chunk size line has 17 hex digits");
    assert_eq!(
        err(b"fffffffffffffffff\r\n"),
        E::ChunkSizeTooLong { digits: 17 }
    );
    // 16 digits are fine: u64::MAX, then it waits for data.
    let mut d = ChunkedDecoder::new();
    assert_eq!(d.decode(b"ffffffffffffffff\r\n"), Ok(Decoded::NeedMore));
    assert_eq!(d.decode(b"abc"), Ok(Decoded::Data { start: 0, end: 3 }));

    assert_eq!(err(b"\r\n"), E::InvalidChunkSize { byte: b'\r' });
    assert_eq!(err(b" 5\r\n"), E::InvalidChunkSize { byte: b' ' });
    assert_eq!(err(b"+5\r\n"), E::InvalidChunkSize { byte: b'+' });
    assert_eq!(err(b"-5\r\n"), E::InvalidChunkSize { byte: b'-' });
    assert_eq!(err(b"0x5\r\n"), E::InvalidChunkSize { byte: b'x' });
    assert_eq!(err(b"5_0\r\n"), E::InvalidChunkSize { byte: b'_' });
    assert_eq!(err(b"5g\r\n"), E::InvalidChunkSize { byte: b'g' });
    // Bare LF and bare CR on the size line.
    assert_eq!(
        err(b"5\nhello\r\n0\r\n\r\n"),
        E::ChunkMissingCrlf {
            after: "chunk size",
            byte: b'\n'
        }
    );
    assert_eq!(
        err(b"5\rhello\r\n"),
        E::ChunkMissingCrlf {
            after: "chunk size line",
            byte: b'h'
        }
    );
    assert_eq!(
        err(b"0\n\r\n"),
        E::ChunkMissingCrlf {
            after: "chunk size",
            byte: b'\n'
        }
    );
    assert_eq!(
        err(b"5;a\nhello"),
        E::ChunkMissingCrlf {
            after: "chunk extension",
            byte: b'\n'
        }
    );
}

#[test]
fn data_crlf_errors() {
    use HttpError as E;
    let after_data = |byte| E::ChunkMissingCrlf {
        after: "chunk data",
        byte,
    };
    assert_eq!(err(b"5\r\nhelloX\r\n0\r\n\r\n"), after_data(b'X'));
    assert_eq!(err(b"5\r\nhello\n0\r\n\r\n"), after_data(b'\n'));
    assert_eq!(err(b"5\r\nhello\r0\r\n\r\n"), after_data(b'0'));
    assert_eq!(err(b"5\r\nhello0\r\n\r\n"), after_data(b'0'));
    // A length one short of the data: the next data byte is where CRLF should be.
    assert_eq!(err(b"4\r\nhello\r\n0\r\n\r\n"), after_data(b'o'));
}

#[test]
fn extension_errors_and_limit() {
    use HttpError as E;
    for (body, byte) in [
        (&b"1;\r\n"[..], b'\r'),
        (b"1;=x\r\n", b'='),
        (b"1;a=\r\n", b'\r'),
        (b"1;a b\r\n", b'b'),
        (b"1;a=b c\r\n", b'c'),
        (b"1;a=\"x\r\n", b'\r'),
        (b"1;a=\x01\r\n", 0x01),
        (b"1;a\x7f\r\n", 0x7f),
        (b"1;;a\r\n", b';'),
        (b"1 x\r\n", b'x'),
        (b"1;a=\"\\\x01\"\r\n", 0x01),
    ] {
        assert_eq!(err(body), E::InvalidChunkExtension { byte }, "{body:?}");
    }
    // MAX_CHUNK_EXT_BYTES counts every byte after the digits: exactly the limit passes.
    let ext = |n: usize| {
        let mut line = b"1;".to_vec();
        line.extend(std::iter::repeat_n(b'a', n));
        line.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        line
    };
    assert_eq!(
        decode_all(&ext(MAX_CHUNK_EXT_BYTES - 1))
            .unwrap()
            .unwrap()
            .0,
        b"x"
    );
    let over = err(&ext(MAX_CHUNK_EXT_BYTES));
    assert_eq!(
        over,
        E::ChunkExtensionTooLong {
            limit: MAX_CHUNK_EXT_BYTES
        }
    );
    assert_eq!(over.status(), 400);
}

#[test]
fn trailer_errors_and_limit() {
    use HttpError as E;
    assert_eq!(err(b"0\r\nX\r\n\r\n"), E::InvalidTrailer { byte: b'\r' });
    assert_eq!(err(b"0\r\n X: 1\r\n\r\n"), E::InvalidTrailer { byte: b' ' });
    assert_eq!(err(b"0\r\n:1\r\n\r\n"), E::InvalidTrailer { byte: b':' });
    assert_eq!(err(b"0\r\nX: \x00\r\n\r\n"), E::InvalidTrailer { byte: 0 });
    assert_eq!(
        err(b"0\r\nX: 1\n\r\n"),
        E::ChunkMissingCrlf {
            after: "trailer field",
            byte: b'\n'
        }
    );
    assert_eq!(
        err(b"0\r\nX: 1\r\r\n"),
        E::ChunkMissingCrlf {
            after: "trailer field",
            byte: b'\r'
        }
    );
    assert_eq!(
        err(b"0\r\n\n"),
        E::ChunkMissingCrlf {
            after: "last chunk",
            byte: b'\n'
        }
    );
    assert_eq!(
        err(b"0\r\n\r\r"),
        E::ChunkMissingCrlf {
            after: "trailer section",
            byte: b'\r'
        }
    );
    // MAX_TRAILER_BYTES counts trailer lines with their CRLF: exactly the limit passes.
    let trailer = |total: usize| {
        let mut body = b"0\r\nX: ".to_vec();
        body.extend(std::iter::repeat_n(b'v', total - 5));
        body.extend_from_slice(b"\r\n\r\n");
        body
    };
    assert!(decode_all(&trailer(MAX_TRAILER_BYTES)).unwrap().is_some());
    let over = err(&trailer(MAX_TRAILER_BYTES + 1));
    assert_eq!(
        over,
        E::TrailersTooLarge {
            limit: MAX_TRAILER_BYTES
        }
    );
    // Many small trailer lines add up too.
    let mut many = b"0\r\n".to_vec();
    for _ in 0..(MAX_TRAILER_BYTES / 6 + 1) {
        many.extend_from_slice(b"A: 1\r\n");
    }
    many.extend_from_slice(b"\r\n");
    assert_eq!(
        err(&many),
        E::TrailersTooLarge {
            limit: MAX_TRAILER_BYTES
        }
    );
}

/// Chunked encoding of `payload` cut at `sizes` (cycled), with optional extensions and trailers.
pub(super) fn encode(payload: &[u8], sizes: &[usize], ext: bool, trailers: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = payload;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].clamp(1, rest.len());
        i += 1;
        out.extend_from_slice(format!("{n:x}").as_bytes());
        if ext {
            out.extend_from_slice(format!(";i={i};q=\"a\\\"b\"").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    out.extend_from_slice(b"0\r\n");
    if trailers {
        out.extend_from_slice(b"Checksum: abc\r\nX-Done: 1\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_chunks_and_splits_round_trip(
        payload in proptest::collection::vec(any::<u8>(), 0..3000),
        sizes in proptest::collection::vec(1usize..700, 1..8),
        ext in any::<bool>(),
        trailers in any::<bool>(),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..12),
    ) {
        let mut body = encode(&payload, &sizes, ext, trailers);
        let len = body.len();
        body.extend_from_slice(b"GET /next HTTP/1.1\r\n");
        let mut cut_points: Vec<usize> = cuts.iter().map(|c| c.index(body.len() + 1)).collect();
        cut_points.sort_unstable();
        let mut pieces = Vec::new();
        let mut last = 0;
        for c in cut_points {
            pieces.push(&body[last..c]);
            last = c;
        }
        pieces.push(&body[last..]);
        let mut d = ChunkedDecoder::new();
        let got = decode_pieces(&mut |b| d.decode(b), &pieces);
        prop_assert_eq!(got, Ok(Some((payload, len))));
    }

    /// Arbitrary bytes: never a panic, and complete exactly when the oracle says so.
    #[test]
    fn arbitrary_bytes_agree_with_oracle(input in proptest::collection::vec(any::<u8>(), 0..200)) {
        check_against_oracle(&input)?;
    }

    /// Valid bodies with one byte replaced, deleted or inserted: the interesting near-misses
    /// (deleting a CR makes a bare LF).
    #[test]
    fn mutated_bodies_agree_with_oracle(
        payload in proptest::collection::vec(b'a'..=b'z', 0..60),
        sizes in proptest::collection::vec(1usize..20, 1..4),
        ext in any::<bool>(),
        trailers in any::<bool>(),
        at in any::<proptest::sample::Index>(),
        op in 0..3u8,
        byte in prop_oneof![Just(b'\r'), Just(b'\n'), Just(b' '), Just(b';'), Just(b'0'), Just(b'f'), Just(b'"'), Just(b':'), any::<u8>()],
    ) {
        let mut body = encode(&payload, &sizes, ext, trailers);
        let i = at.index(body.len());
        match op {
            0 => body[i] = byte,
            1 => {
                body.remove(i);
            }
            _ => body.insert(i, byte),
        }
        check_against_oracle(&body)?;
    }
}

fn check_against_oracle(input: &[u8]) -> Result<(), TestCaseError> {
    let got = decode_all(input);
    match oracle::chunked(input) {
        Oracle::Complete { payload, consumed } => {
            prop_assert_eq!(got, Ok(Some((payload, consumed))));
        }
        Oracle::NotComplete => {
            prop_assert!(!matches!(got, Ok(Some(_))), "decoder completed: {got:?}")
        }
    }
    Ok(())
}
