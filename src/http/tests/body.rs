//! BodyDecoder end-of-body rules and outgoing chunk framing.

use super::chunked::{decode_all, encode};
use crate::http::body::SMALL_CHUNK_LIMIT;
use crate::http::*;

#[test]
fn empty_and_zero_length_start_done() {
    for kind in [BodyKind::Empty, BodyKind::Length(0)] {
        let mut d = BodyDecoder::new(kind);
        assert!(d.is_done());
        assert_eq!(d.decode(b"next"), Ok(Decoded::Done { consumed: 0 }));
        assert_eq!(d.eof(), Ok(()));
    }
}

#[test]
fn length_body() {
    let mut d = BodyDecoder::new(BodyKind::Length(10));
    assert_eq!(d.decode(b""), Ok(Decoded::NeedMore));
    assert_eq!(d.decode(b"0123"), Ok(Decoded::Data { start: 0, end: 4 }));
    assert!(!d.is_done());
    let err = d.clone().eof().unwrap_err();
    assert_eq!(err, HttpError::BodyTruncated { remaining: Some(6) });
    assert_eq!(
        err.to_string(),
        "body ended 6 bytes before its Content-Length"
    );
    assert_eq!(
        d.decode(b"456789NEXT"),
        Ok(Decoded::Data { start: 0, end: 6 })
    );
    assert!(d.is_done());
    assert_eq!(d.decode(b"NEXT"), Ok(Decoded::Done { consumed: 0 }));
    assert_eq!(d.eof(), Ok(()));
    // A length beyond usize on 32-bit targets still works by u64 arithmetic.
    let mut d = BodyDecoder::new(BodyKind::Length(u64::MAX));
    assert_eq!(d.decode(b"abc"), Ok(Decoded::Data { start: 0, end: 3 }));
}

#[test]
fn until_close_body() {
    let mut d = BodyDecoder::new(BodyKind::UntilClose);
    assert_eq!(d.decode(b""), Ok(Decoded::NeedMore));
    assert_eq!(d.decode(b"abc"), Ok(Decoded::Data { start: 0, end: 3 }));
    assert!(!d.is_done());
    assert_eq!(d.eof(), Ok(()));
    assert!(d.is_done());
}

#[test]
fn chunked_body_truncated() {
    let mut d = BodyDecoder::new(BodyKind::Chunked);
    assert_eq!(
        d.decode(b"5\r\nhel"),
        Ok(Decoded::Data { start: 3, end: 6 })
    );
    let err = d.eof().unwrap_err();
    assert_eq!(err, HttpError::BodyTruncated { remaining: None });
    assert_eq!(err.to_string(), "chunked body ended before its last chunk");
    let mut d = BodyDecoder::new(BodyKind::Chunked);
    assert_eq!(d.decode(b"0\r\n\r\nX"), Ok(Decoded::Done { consumed: 5 }));
    assert!(d.is_done());
    assert_eq!(d.eof(), Ok(()));
}

#[test]
fn small_chunk_lines_are_the_written_ones() {
    for len in 1..SMALL_CHUNK_LIMIT {
        assert_eq!(
            small_chunk_line(len),
            Some(ChunkHeader::new(len).as_bytes()),
            "{len}"
        );
    }
    assert_eq!(small_chunk_line(0), None);
    assert_eq!(small_chunk_line(SMALL_CHUNK_LIMIT), None);
}

#[test]
fn chunk_header_framing() {
    let cases: &[(usize, &[u8])] = &[
        (1, b"1\r\n"),
        (15, b"f\r\n"),
        (16, b"10\r\n"),
        (4096, b"1000\r\n"),
        (0xabcdef, b"abcdef\r\n"),
    ];
    for &(len, want) in cases {
        assert_eq!(ChunkHeader::new(len).as_bytes(), want, "{len}");
    }
    let max = ChunkHeader::new(usize::MAX);
    assert_eq!(max.as_bytes().len(), 2 * std::mem::size_of::<usize>() + 2);
    // What the proxy writes, our decoder reads back.
    let mut wire = Vec::new();
    for piece in [&b"hello"[..], &[7u8; 300], b"!"] {
        wire.extend_from_slice(ChunkHeader::new(piece.len()).as_bytes());
        wire.extend_from_slice(piece);
        wire.extend_from_slice(CHUNK_END);
    }
    wire.extend_from_slice(LAST_CHUNK);
    let mut want = b"hello".to_vec();
    want.extend([7u8; 300]);
    want.push(b'!');
    assert_eq!(decode_all(&wire), Ok(Some((want, wire.len()))));
    // And the test encoder agrees with the proxy's framing.
    assert_eq!(
        encode(b"hello", &[5], false, false),
        b"5\r\nhello\r\n0\r\n\r\n"
    );
}
