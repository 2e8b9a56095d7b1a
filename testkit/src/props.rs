//! The properties the fuzz targets check, one function per target. Each takes the raw fuzz
//! input (see [`crate::input`] for how it becomes reads) and panics on a violation; inputs the
//! parsers refuse are fine, as long as they are refused the same way at any split.

use bytes::{Bytes, BytesMut};
use tether::http::{
    expects_continue, request_body_kind, request_keep_alive, response_body_kind,
    response_keep_alive, write_client_response, write_upstream_request, BodyDecoder, BodyKind,
    ChunkedDecoder, Decoded, ForwardContext, HeadKind, HeadLimits, HeadScanner, HttpError, Method,
    OutFraming, RequestHead, ResponseHead, Version,
};
use tether::sse::FrameError;

use crate::input::Reads;
use crate::oracle::http::{self as http_oracle, Oracle};
use crate::oracle::sse::oracle as sse_oracle;
use crate::sse::framed;

// ---- heads ----------------------------------------------------------------------------------

/// The head limits for `knob`: the defaults for 0, else small ones, so that inputs of a few
/// hundred bytes reach every limit (431 for the head, 431 for the field count, 414).
pub fn head_limits(knob: u8) -> HeadLimits {
    if knob == 0 {
        return HeadLimits::default();
    }
    HeadLimits {
        max_head_bytes: 32 + usize::from(knob) * 4,
        max_headers: 1 + usize::from(knob % 8),
        max_target_bytes: 8 + usize::from(knob / 2),
    }
}

/// What a connection makes of the bytes it has read: a head of `n` bytes that parsed, a
/// refusal (from the scanner or the parse: the client gets the same answer), or more to wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadVerdict {
    Head(usize),
    Refused(HttpError),
    Waiting,
}

/// Feeds `payload[..end]` for each `end` to one scanner, as a connection does after each read,
/// and parses the head it delimits with `parse`.
fn head_verdict<H>(
    payload: &[u8],
    ends: impl Iterator<Item = usize>,
    limits: &HeadLimits,
    kind: HeadKind,
    parse: impl Fn(Bytes, &HeadLimits) -> Result<H, HttpError>,
) -> (HeadVerdict, Option<H>) {
    let mut scanner = HeadScanner::new();
    for end in ends {
        match scanner.scan(&payload[..end], limits, kind) {
            Ok(None) => continue,
            Ok(Some(n)) => {
                assert!(n <= end, "head end {n} past the {end} bytes read");
                return match parse(Bytes::copy_from_slice(&payload[..n]), limits) {
                    Ok(head) => (HeadVerdict::Head(n), Some(head)),
                    Err(e) => (HeadVerdict::Refused(e), None),
                };
            }
            Err(e) => return (HeadVerdict::Refused(e), None),
        }
    }
    (HeadVerdict::Waiting, None)
}

/// The verdict for `reads` must not depend on how the bytes were cut, and the scanner must end
/// the head where the oracle does.
fn check_head_split<H>(
    reads: &Reads<'_>,
    kind: HeadKind,
    parse: impl Fn(Bytes, &HeadLimits) -> Result<H, HttpError> + Copy,
) -> Option<H> {
    let limits = head_limits(reads.knob);
    let payload = reads.payload;
    let (split, head) = head_verdict(payload, reads.ends(), &limits, kind, parse);
    let (whole, _) = head_verdict(
        payload,
        std::iter::once(payload.len()),
        &limits,
        kind,
        parse,
    );
    assert_eq!(
        split,
        whole,
        "cut at {:?} vs in one read: {:?}",
        reads.cuts,
        String::from_utf8_lossy(payload)
    );
    match &split {
        HeadVerdict::Head(n) => {
            assert_eq!(http_oracle::head_end(payload), Some(*n), "head end");
        }
        HeadVerdict::Waiting => {
            assert_eq!(
                http_oracle::head_end(payload),
                None,
                "the scanner missed a head end"
            );
        }
        HeadVerdict::Refused(e) => {
            // The text a client or the log gets: must format, bounded whatever the input.
            assert!(e.to_string().len() < 256, "{e:?}");
            assert!(
                matches!(e.status(), 400 | 414 | 431 | 501 | 505),
                "{e:?} -> {}",
                e.status()
            );
        }
    }
    head
}

/// Request heads: the scanner and parse at any split (against one read and the oracle's head
/// end); then, for a head that parsed, spans in bounds, framing decided without panic, and every
/// rewrite for the upstream parses again and frames its body as the proxy intends.
pub fn request_head(data: &[u8]) {
    let reads = Reads::decode(data);
    let Some(head) = check_head_split(&reads, HeadKind::Request, RequestHead::parse) else {
        return;
    };
    let n = head.bytes.len();
    for field in &head.headers {
        assert!(field.name.end as usize <= n && field.value.end as usize <= n);
        assert!(!field.name.is_empty(), "empty field name accepted");
    }
    assert!(head.target.end as usize <= n && !head.target().is_empty());
    let _ = request_keep_alive(&head);
    let _ = expects_continue(&head);
    let kind = match request_body_kind(&head) {
        Ok(kind) => kind,
        Err(e) => {
            assert!(e.to_string().len() < 256, "{e:?}");
            assert!(matches!(e.status(), 400 | 501), "{e:?}");
            return;
        }
    };
    assert!(
        kind != BodyKind::UntilClose,
        "a request body is never close-delimited"
    );
    let limits = HeadLimits {
        // The rewrite adds X-Forwarded-* fields and a path prefix.
        max_head_bytes: n + 4096,
        max_headers: head.headers.len() + 8,
        max_target_bytes: head.target().len() + 64,
    };
    let ctx = ForwardContext {
        client_addr: "192.0.2.1".parse().unwrap(),
        proto: "http",
        path_prefix: b"/pre",
        last_event_id: None,
        method: None,
        request_id: Some(b"req-1"),
        upgrade: tether::http::requests_upgrade(&head),
        header_edits: &[],
    };
    for (framing, want) in [
        (OutFraming::Empty, BodyKind::Empty),
        (OutFraming::Length(7), BodyKind::Length(7)),
        (OutFraming::Chunked, BodyKind::Chunked),
    ] {
        let mut out = BytesMut::new();
        write_upstream_request(&head, framing, &ctx, &mut out);
        let sent = String::from_utf8_lossy(&out).into_owned();
        let again = RequestHead::parse(out.freeze(), &limits)
            .unwrap_or_else(|e| panic!("rewrite does not parse ({e}): {sent:?}"));
        assert_eq!(again.method_str(), head.method_str(), "{sent:?}");
        assert_eq!(again.version, Version::Http11, "{sent:?}");
        assert_eq!(request_body_kind(&again), Ok(want), "{sent:?}");
    }
}

/// Response heads: as for requests; then the rewrite for the client parses again and frames the
/// body as the proxy intends (or carries none, for the statuses that never have one).
pub fn response_head(data: &[u8]) {
    let reads = Reads::decode(data);
    let Some(head) = check_head_split(&reads, HeadKind::Response, ResponseHead::parse) else {
        return;
    };
    assert!((100..=599).contains(&head.status));
    let n = head.bytes.len();
    for field in &head.headers {
        assert!(field.name.end as usize <= n && field.value.end as usize <= n);
    }
    let _ = response_keep_alive(&head);
    for method in [Method::Get, Method::Head, Method::Post] {
        let _ = response_body_kind(method, &head);
    }
    let limits = HeadLimits {
        max_head_bytes: n + 4096,
        max_headers: head.headers.len() + 8,
        ..HeadLimits::default()
    };
    let bodiless = matches!(head.status, 100..=199 | 204 | 304);
    for (framing, want) in [
        (OutFraming::Length(7), BodyKind::Length(7)),
        (OutFraming::Chunked, BodyKind::Chunked),
        (OutFraming::CloseDelimited, BodyKind::UntilClose),
    ] {
        for client in [Version::Http11, Version::Http10] {
            let mut out = BytesMut::new();
            write_client_response(&head, framing, true, client, b"req-1", &mut out);
            let sent = String::from_utf8_lossy(&out).into_owned();
            let again = ResponseHead::parse(out.freeze(), &limits)
                .unwrap_or_else(|e| panic!("rewrite does not parse ({e}): {sent:?}"));
            assert_eq!(again.status, head.status, "{sent:?}");
            let framed = response_body_kind(Method::Get, &again)
                .unwrap_or_else(|e| panic!("rewrite frames badly ({e}): {sent:?}"));
            if !bodiless {
                assert_eq!(framed.kind, want, "{sent:?}");
            }
        }
    }
}

// ---- chunked --------------------------------------------------------------------------------

/// Feeds `pieces` as successive reads, the way the proxy does: unconsumed bytes stay in the
/// buffer, data is copied out, NeedMore clears the buffer. Returns the payload and how many
/// bytes the body took, or the first error.
pub fn decode_pieces(
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

/// The chunked decoder (alone and inside `BodyDecoder`) at any split: the same outcome as in one
/// read, error included, and the oracle's payload and length for a complete body.
pub fn chunked(data: &[u8]) {
    let reads = Reads::decode(data);
    let payload = reads.payload;
    let pieces = reads.pieces();
    let want = http_oracle::chunked(payload);
    let mut whole_decoder = ChunkedDecoder::new();
    let whole = decode_pieces(&mut |b| whole_decoder.decode(b), &[payload]);
    let mut split_decoder = ChunkedDecoder::new();
    let split = decode_pieces(&mut |b| split_decoder.decode(b), &pieces);
    let mut body = BodyDecoder::new(BodyKind::Chunked);
    let in_body = decode_pieces(&mut |b| body.decode(b), &pieces);
    let shown = String::from_utf8_lossy(payload);
    assert_eq!(split, whole, "cut at {:?}: {shown:?}", reads.cuts);
    assert_eq!(in_body, split, "BodyDecoder differs: {shown:?}");
    if let Err(e) = &split {
        assert!(e.to_string().len() < 256, "{e:?}");
        assert_eq!(e.status(), 400, "{e:?}");
    }
    match want {
        Oracle::Complete { payload, consumed } => {
            assert_eq!(split, Ok(Some((payload, consumed))), "{shown:?}");
            assert!(split_decoder.is_done() && body.is_done());
        }
        Oracle::NotComplete => {
            assert!(!matches!(split, Ok(Some(_))), "decoder completed {shown:?}");
        }
    }
}

// ---- SSE framing ----------------------------------------------------------------------------

/// The event-size limit for `knob`: none for 0, else 20..=1036 bytes.
pub fn sse_limit(knob: u8) -> usize {
    if knob == 0 {
        usize::MAX
    } else {
        16 + usize::from(knob) * 4
    }
}

/// The SSE framer at any split: without a limit, the blocks, cursor and dropped tail of one read
/// and of the oracle; with one, the oracle's blocks up to the first one over the limit, and the
/// error exactly when the oracle has such a block (or an unfinished one past it).
pub fn sse_framer(data: &[u8]) {
    let reads = Reads::decode(data);
    let input = reads.payload;
    let (mut blocks, cursor, dropped) = sse_oracle(input);
    let max = sse_limit(reads.knob);
    if max == usize::MAX {
        let split = framed(input, &reads.cuts, max);
        let whole = framed(input, &[], max);
        assert_eq!(split, whole, "cut at {:?}", reads.cuts);
        assert_eq!(split, (blocks, cursor, dropped, None));
        return;
    }
    let first_big = blocks.iter().position(|b| b.0.len() > max);
    let fails = first_big.is_some() || dropped > max;
    blocks.truncate(first_big.unwrap_or(blocks.len()));
    let (got, _, _, error) = framed(input, &reads.cuts, max);
    assert_eq!(got, blocks, "cut at {:?}", reads.cuts);
    assert_eq!(
        error,
        fails.then_some(FrameError::EventTooLarge { limit: max })
    );
}
