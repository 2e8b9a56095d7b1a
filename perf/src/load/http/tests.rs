//! Response heads and body framing, the chunked decoder at every split point.

use super::*;

const SSE_HEAD: &str = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n";

fn head(extra: &str) -> Vec<u8> {
    format!("{SSE_HEAD}{extra}\r\n").into_bytes()
}

#[test]
fn head_end_scan_resumes_and_accepts_lf_heads() {
    let full = b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody";
    for split in 0..full.len() {
        let mut scan = HeadScan::default();
        let first = scan.find_end(&full[..split]);
        let end = first.or_else(|| scan.find_end(full));
        assert_eq!(end, Some(25), "split {split}");
    }
    let mut scan = HeadScan::default();
    assert_eq!(scan.find_end(b"HTTP/1.1 200 OK\nA: b\n\nx"), Some(22));
    let mut scan = HeadScan::default();
    assert_eq!(scan.find_end(b"HTTP/1.1 200 OK\r\nA: b\r\n"), None);
}

#[test]
fn framing_rules_in_order() {
    let p = |extra: &str| parse_head(&head(extra)).map(|h| h.body);
    let chunked = Body::Chunked {
        state: Chunk::Size { size: 0, digits: 0 },
    };
    assert_eq!(p("Transfer-Encoding: chunked\r\n"), Ok(chunked.clone()));
    assert_eq!(
        p("Transfer-Encoding: gzip, Chunked\r\nContent-Length: 5\r\n"),
        Ok(chunked)
    );
    assert_eq!(p("Transfer-Encoding: gzip\r\n"), Ok(Body::UntilClose));
    assert_eq!(
        p("Content-Length: 12\r\n"),
        Ok(Body::Length { remaining: 12 })
    );
    assert_eq!(
        p("Content-Length: 12\r\nContent-Length: 12\r\n"),
        Ok(Body::Length { remaining: 12 })
    );
    assert_eq!(p(""), Ok(Body::UntilClose));
    assert_eq!(p("Content-Length: +5\r\n"), Err(HttpError::BadLength));
    assert_eq!(
        p("Content-Length: 5\r\nContent-Length: 6\r\n"),
        Err(HttpError::BadLength)
    );
}

#[test]
fn only_200_event_streams_are_accepted() {
    assert_eq!(
        parse_head(b"HTTP/1.1 503 Busy\r\nContent-Type: text/event-stream\r\n\r\n"),
        Err(HttpError::Status(503))
    );
    assert_eq!(
        parse_head(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"),
        Err(HttpError::ContentType("text/plain".into()))
    );
    assert_eq!(
        parse_head(b"HTTP/1.1 200 OK\r\n\r\n"),
        Err(HttpError::ContentType(String::new()))
    );
    assert!(parse_head(
        b"HTTP/1.1 200 OK\r\nContent-Type: Text/Event-Stream; charset=utf-8\r\n\r\n"
    )
    .is_ok());
    assert!(matches!(
        parse_head(b"HTTP/1.1 2x0 OK\r\n\r\n"),
        Err(HttpError::BadHead(_))
    ));
    assert!(parse_head(b"HTTP/1.0 200 OK\nContent-Type: text/event-stream\n\n").is_ok());
}

/// Decodes `pieces` with a fresh chunked decoder; returns the payload and whether (and
/// after how many input bytes in the last piece) the body completed.
fn decode_pieces(pieces: &[&[u8]]) -> Result<(Vec<u8>, bool), HttpError> {
    let mut body = Body::Chunked {
        state: Chunk::Size { size: 0, digits: 0 },
    };
    let mut out = Vec::new();
    let mut done = false;
    for piece in pieces {
        if done {
            break;
        }
        done = body.decode(piece, &mut |p| out.extend_from_slice(p))? == BodyProgress::Complete;
    }
    Ok((out, done))
}

/// The obviously right decoder over the whole input (CRLF-strict, like the real one).
fn oracle_chunked(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = input;
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let line = std::str::from_utf8(&rest[..line_end]).ok()?;
        let hex = line.split([';', ' ', '\t']).next()?;
        let size = usize::from_str_radix(hex, 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            // Trailer lines, then the empty line.
            loop {
                let end = rest.windows(2).position(|w| w == b"\r\n")?;
                rest = &rest[end + 2..];
                if end == 0 {
                    return Some(out);
                }
            }
        }
        out.extend_from_slice(rest.get(..size)?);
        if rest.get(size..size + 2)? != b"\r\n" {
            return None;
        }
        rest = &rest[size + 2..];
    }
}

#[test]
fn chunked_at_every_split_point() {
    let input: &[u8] =
        b"5\r\nhello\r\n1A;name=value\r\nabcdefghijklmnopqrstuvwxyz\r\n3 \r\n\r\n\n\r\n0\r\nX-T: 1\r\n\r\n";
    let want = oracle_chunked(input).unwrap();
    assert_eq!(want, b"helloabcdefghijklmnopqrstuvwxyz\r\n\n".to_vec());
    assert_eq!(decode_pieces(&[input]), Ok((want.clone(), true)));
    for i in 0..=input.len() {
        for j in i..=input.len() {
            let got = decode_pieces(&[&input[..i], &input[i..j], &input[j..]]);
            assert_eq!(got, Ok((want.clone(), true)), "splits at {i}, {j}");
        }
    }
    // Incomplete prefixes never claim completion.
    for i in 0..input.len() {
        assert_eq!(decode_pieces(&[&input[..i]]).map(|r| r.1), Ok(false), "{i}");
    }
}

#[test]
fn chunked_stops_at_the_end_of_the_body() {
    let mut body = Body::Chunked {
        state: Chunk::Size { size: 0, digits: 0 },
    };
    let mut out = Vec::new();
    let r = body.decode(b"2\r\nab\r\n0\r\n\r\nHTTP/1.1 200", &mut |p| {
        out.extend_from_slice(p)
    });
    assert_eq!(r, Ok(BodyProgress::Complete));
    assert_eq!(out, b"ab");
}

#[test]
fn chunked_rejects_malformed_framing() {
    for bad in [
        &b"\r\n"[..],
        b"g\r\n",
        b"5\nhello",
        b"5\r\nhelloX",
        b"5\r\nhello\rX",
        b"11111111111111111\r\n",
        b"0\r\nX-T: 1\nx",
        b"0\r\n\rX",
        b"1;ext\n",
    ] {
        assert!(
            matches!(decode_pieces(&[bad]), Err(HttpError::BadChunk(_))),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
        assert_eq!(oracle_chunked(bad), None);
    }
}

#[test]
fn length_and_close_bodies() {
    let mut body = Body::Length { remaining: 5 };
    let mut out = Vec::new();
    assert_eq!(
        body.decode(b"abc", &mut |p| out.extend_from_slice(p)),
        Ok(BodyProgress::More)
    );
    assert_eq!(
        body.decode(b"defg", &mut |p| out.extend_from_slice(p)),
        Ok(BodyProgress::Complete)
    );
    assert_eq!(out, b"abcde");
    let mut body = Body::UntilClose;
    let mut out = Vec::new();
    for piece in [&b"ab"[..], b"", b"c"] {
        assert_eq!(
            body.decode(piece, &mut |p| out.extend_from_slice(p)),
            Ok(BodyProgress::More)
        );
    }
    assert_eq!(out, b"abc");
}
