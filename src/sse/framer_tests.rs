//! One named test per rule of notes/sse.md (each checked at every split), plus zero-copy,
//! linearity, memory and limit checks. The vectors and the shotgun test against a slow oracle
//! live in tests/sse_vectors.rs and tests/sse_shotgun.rs.

use super::*;

/// What a test compares: each block's bytes and cursor effect, and the framer's end state.
#[derive(Debug, PartialEq, Eq)]
struct Framed {
    blocks: Vec<(Vec<u8>, IdField, Option<u64>, bool)>,
    last_id: Vec<u8>,
    dropped: usize,
}

fn frame_pieces(pieces: &[&[u8]]) -> Framed {
    let sliced = frame_slices(pieces);
    assert_eq!(frame_spans(pieces), sliced, "feed_read against feed");
    sliced
}

/// `frame_pieces` through `feed_read`, the relay's path: the pieces lie in one read with chunk
/// framing between them, the blocks come out as spans of it.
fn frame_spans(pieces: &[&[u8]]) -> Framed {
    let mut read = Vec::new();
    let mut ranges = Vec::new();
    for piece in pieces {
        read.extend_from_slice(b"\r\n");
        ranges.push(read.len()..read.len() + piece.len());
        read.extend_from_slice(piece);
    }
    let mut framer = EventFramer::new(DEFAULT_MAX_EVENT_BYTES);
    let mut out = Vec::new();
    for range in ranges {
        framer
            .feed_read(&read, range, &mut out)
            .expect("within limit");
    }
    let dropped = framer.finish_framed(&mut out);
    let field = |b: &FramedBlock| match b.id.value(b.raw(&read)) {
        None => IdField::Unchanged,
        Some(v) => IdField::Set(Bytes::copy_from_slice(v)),
    };
    Framed {
        blocks: join_split_crlf(
            out.iter()
                .map(|b| (b.raw(&read).to_vec(), field(b), b.retry, b.fires))
                .collect(),
        ),
        last_id: framer.last_event_id().to_vec(),
        dropped,
    }
}

fn frame_slices(pieces: &[&[u8]]) -> Framed {
    let mut framer = EventFramer::new(DEFAULT_MAX_EVENT_BYTES);
    let mut out = Vec::new();
    for piece in pieces {
        framer
            .feed(Bytes::copy_from_slice(piece), &mut out)
            .expect("within limit");
    }
    let dropped = framer.finish_into(&mut out);
    Framed {
        blocks: join_split_crlf(
            out.into_iter()
                .map(|b| (b.raw.to_vec(), b.id_field(), b.retry, b.fires))
                .collect(),
        ),
        last_id: framer.last_event_id().to_vec(),
        dropped,
    }
}

/// A blank line's CR that ends a piece hands its block out at once (a browser dispatches at that
/// CR); an LF that starts the next piece then comes out as a block of its own ("\n", nothing to
/// dispatch). To compare framings across splits, that LF is put back on its block: bytes, events
/// and cursor are the same either way.
fn join_split_crlf(
    blocks: Vec<(Vec<u8>, IdField, Option<u64>, bool)>,
) -> Vec<(Vec<u8>, IdField, Option<u64>, bool)> {
    let mut out: Vec<(Vec<u8>, IdField, Option<u64>, bool)> = Vec::with_capacity(blocks.len());
    for b in blocks {
        if b.0 == b"\n" && b.1 == IdField::Unchanged && b.2.is_none() && !b.3 {
            if let Some(prev) = out.last_mut().filter(|p| p.0.ends_with(b"\r")) {
                prev.0.push(b'\n');
                continue;
            }
        }
        out.push(b);
    }
    out
}

/// Frames `input` whole, one byte per piece and at every 2-way and 3-way split; asserts all
/// agree and returns the whole-piece result.
fn frame(input: &[u8]) -> Framed {
    let whole = frame_pieces(&[input]);
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(frame_pieces(&bytes), whole, "1-byte pieces of {input:?}");
    for a in 0..=input.len() {
        let (x, rest) = input.split_at(a);
        for b in 0..=rest.len() {
            let (y, z) = rest.split_at(b);
            assert_eq!(
                frame_pieces(&[x, y, z]),
                whole,
                "split {a}+{b} of {input:?}"
            );
        }
    }
    whole
}

fn raws(f: &Framed) -> Vec<&[u8]> {
    f.blocks.iter().map(|b| b.0.as_slice()).collect()
}

fn set(id: &str) -> IdField {
    IdField::Set(Bytes::copy_from_slice(id.as_bytes()))
}

#[test]
fn rule01_one_leading_bom_is_stripped_even_when_split() {
    let f = frame(b"\xEF\xBB\xBFdata: hi\n\n");
    assert_eq!(raws(&f), [&b"data: hi\n\n"[..]]);
    assert!(f.blocks[0].3);
    // A second BOM is content: the field is "\u{FEFF}data", unknown, so nothing fires.
    let f = frame(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: hi\n\n");
    assert_eq!(raws(&f), [&b"\xEF\xBB\xBFdata: hi\n\n"[..]]);
    assert!(!f.blocks[0].3);
    // A BOM later in the body is content too.
    let f = frame(b"data: a\n\n\xEF\xBB\xBFdata: b\n\n");
    assert_eq!(raws(&f)[1], b"\xEF\xBB\xBFdata: b\n\n");
    // A BOM prefix that turns out not to be one is kept, byte for byte.
    let f = frame(b"\xEF\xBB: x\n\n");
    assert_eq!(raws(&f), [&b"\xEF\xBB: x\n\n"[..]]);
    let mut framer = EventFramer::default();
    let mut out = Vec::new();
    for b in b"\xEF\xBB\xBF: x\n\n" {
        framer
            .feed(Bytes::copy_from_slice(&[*b]), &mut out)
            .unwrap();
    }
    assert!(framer.bom_stripped());
}

#[test]
fn rule02_cr_lf_crlf_mixed_and_a_split_crlf_is_one_terminator() {
    let f = frame(b"data: a\rdata: b\r\ndata: c\n\r\n:x\r\r");
    assert_eq!(
        raws(&f),
        [&b"data: a\rdata: b\r\ndata: c\n\r\n"[..], &b":x\r\r"[..]]
    );
    // The block ends after the LF of a CRLF that was split, never before it.
    let f = frame_pieces(&[b"data: a\r", b"\n\r", b"\n"]);
    assert_eq!(raws(&f), [&b"data: a\r\n\r\n"[..]]);
    // A CR at the end of the body ends a line: the blank line dispatches.
    let f = frame(b"data: a\r\r");
    assert_eq!(raws(&f), [&b"data: a\r\r"[..]]);
    assert_eq!(f.dropped, 0);
    // It is handed out at that CR, without waiting for more input (a browser dispatches there).
    let mut framer = EventFramer::default();
    let mut out = Vec::new();
    framer
        .feed(Bytes::from_static(b"data: a\r\r"), &mut out)
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].raw, &b"data: a\r\r"[..]);
    assert_eq!(framer.finish(), 0);
}

#[test]
fn rule03_blank_line_dispatches_and_comments_are_blocks_of_their_own() {
    let f = frame(b": ping\n\n:\n: more\n\ndata: x\n\n");
    assert_eq!(
        raws(&f),
        [
            &b": ping\n\n"[..],
            &b":\n: more\n\n"[..],
            &b"data: x\n\n"[..]
        ]
    );
    assert_eq!(
        f.blocks.iter().map(|b| b.3).collect::<Vec<_>>(),
        [false, false, true]
    );
    // A heartbeat comment with no blank line after it stays inside the next block.
    let f = frame(b": idle\ndata: x\n\n");
    assert_eq!(raws(&f), [&b": idle\ndata: x\n\n"[..]]);
    // An empty line alone is a block.
    assert_eq!(raws(&frame(b"\n\r\n\r")), [&b"\n"[..], b"\r\n", b"\r"]);
}

#[test]
fn rule04_first_colon_splits_and_exactly_one_space_is_removed() {
    let f = frame(b"id:  two\n\nid:\tt\n\nid: a:b: c\n\nid:x\n\nid\n\n");
    let ids: Vec<IdField> = f.blocks.iter().map(|b| b.1.clone()).collect();
    assert_eq!(
        ids,
        [set(" two"), set("\tt"), set("a:b: c"), set("x"), set("")]
    );
    let p = parse_block(b"data:  two\ndata:\tx\ndata\n\n");
    assert_eq!(p.data, " two\n\tx\n");
    assert_eq!(parse_block(b"data: a:b: c\n\n").data, "a:b: c");
}

#[test]
fn rule05_field_names_are_case_sensitive() {
    let f = frame(b"Data: x\nID: 5\nRetry: 9\nfoo: bar\n\n");
    assert_eq!(f.blocks[0].1, IdField::Unchanged);
    assert_eq!(f.blocks[0].2, None);
    assert!(!f.blocks[0].3);
    assert_eq!(f.last_id, b"");
    // Prefixes are not names either.
    let f = frame(b"datax: 1\nidx: 2\nretryx: 3\n\n");
    assert_eq!(f.blocks[0].1, IdField::Unchanged);
    assert!(!f.blocks[0].3);
}

#[test]
fn rule06_data_lines_join_with_lf_and_one_trailing_lf_goes() {
    let p = parse_block(b"event: add\ndata: YHOO\r\ndata: +2\rdata\n\n");
    assert_eq!(p.event_type, "add");
    assert_eq!(p.data, "YHOO\n+2\n");
    assert!(p.fires);
    assert_eq!(parse_block(b"data\n\n").data, "");
    assert!(parse_block(b"data\n\n").fires);
    assert!(!parse_block(b"event: x\n\n").fires);
}

#[test]
fn rule07_id_with_nul_is_ignored_and_empty_id_resets() {
    let f = frame(b"id: 1\ndata: a\n\nid: x\0y\ndata: b\n\n");
    assert_eq!(f.blocks[0].1, set("1"));
    assert_eq!(f.blocks[1].1, IdField::Unchanged);
    assert_eq!(f.last_id, b"1");
    let f = frame(b"id: 1\n\nid\n\n");
    assert_eq!(f.blocks[1].1, set(""));
    assert_eq!(f.last_id, b"");
    // The last valid id of a block wins; a later NUL id does not undo it.
    let f = frame(b"id: 1\nid: 2\nid: \0\n\ndata: x\n\n");
    assert_eq!(f.blocks[0].1, set("2"));
    assert_eq!(f.last_id, b"2");
    assert_eq!(parse_block(b"id: a\0\n\n").id, None);
    // NUL in data is fine.
    assert!(frame(b"data: a\0b\n\n").blocks[0].3);
}

#[test]
fn rule08_id_is_committed_at_dispatch_even_when_nothing_fires() {
    let f = frame(b"id: 7\ndata\n\nid: 8\n\n");
    assert_eq!(f.blocks[1].1, set("8"));
    assert!(!f.blocks[1].3);
    assert_eq!(f.last_id, b"8");
    // ... but only at dispatch: an unterminated block does not move the cursor.
    let f = frame(b"id: 7\n\nid: 9\n");
    assert_eq!(f.last_id, b"7");
    assert_eq!(f.dropped, 6);
}

#[test]
fn rule09_retry_counts_only_when_all_ascii_digits() {
    let f = frame(b"retry: 3000\n\nretry: 30x0\n\nretry: 12 \n\nretry: \n\nretry\n\nretry: +5\n\nretry:007\n\n");
    let r: Vec<Option<u64>> = f.blocks.iter().map(|b| b.2).collect();
    assert_eq!(r, [Some(3000), None, None, None, None, None, Some(7)]);
    let f = frame(b"retry: 5\nretry: x\n\nretry: 99999999999999999999999\n\n");
    assert_eq!(f.blocks[0].2, Some(5));
    assert_eq!(f.blocks[1].2, Some(u64::MAX));
}

#[test]
fn rule10_unterminated_block_is_discarded_at_eof() {
    let f = frame(b"data: kept\n\ndata: lost\n");
    assert_eq!(raws(&f), [&b"data: kept\n\n"[..]]);
    assert_eq!(f.dropped, 11);
    let f = frame(b"data: kept\n\ndata: hal");
    assert_eq!(f.dropped, 9);
    let f = frame(b"\xEF\xBB");
    assert_eq!((f.blocks.len(), f.dropped), (0, 2));
}

#[test]
fn rule11_only_cr_and_lf_end_lines_and_bytes_pass_untouched() {
    let input = "data: a\u{2028}b\u{2029}c\u{85}d\n\n".as_bytes();
    let f = frame(input);
    assert_eq!(raws(&f), [input]);
    assert_eq!(parse_block(input).data, "a\u{2028}b\u{2029}c\u{85}d");
    let f = frame(b"data: a\xFFb\nid: \xC3\n\n");
    assert_eq!(raws(&f), [&b"data: a\xFFb\nid: \xC3\n\n"[..]]);
    assert_eq!(parse_block(&f.blocks[0].0).data, "a\u{FFFD}b");
    // The cursor holds what a browser holds (and sends back as Last-Event-ID).
    assert_eq!(f.blocks[0].1, set("\u{FFFD}"));
    assert_eq!(f.last_id, "\u{FFFD}".as_bytes());
}

#[test]
fn rule12_a_64k_line_one_byte_per_piece_is_scanned_once() {
    let mut input = b"data: ".to_vec();
    input.resize(6 + 64 * 1024, b'a');
    input.extend_from_slice(b"\nid: ");
    input.resize(input.len() + 64 * 1024, b'7');
    input.extend_from_slice(b"\r\n\r\n");
    let mut framer = EventFramer::default();
    let mut out = Vec::new();
    for b in &input {
        framer
            .feed(Bytes::copy_from_slice(&[*b]), &mut out)
            .unwrap();
    }
    // The blank line's CR hands the block out; the LF after it is a block of its own.
    assert_eq!(out.len(), 2);
    assert_eq!([&out[0].raw[..], &out[1].raw[..]].concat(), input);
    assert_eq!(&out[1].raw[..], b"\n");
    assert!(
        framer.scanned_bytes() <= 2 * input.len(),
        "{}",
        framer.scanned_bytes()
    );
    assert_eq!(framer.last_event_id().len(), 64 * 1024);
}

#[test]
fn blocks_within_one_piece_are_slices_of_it() {
    let piece = Bytes::from_static(b"data: a\n\n: hb\r\n\r\ndata: spans");
    let range = piece.as_ptr_range();
    let mut framer = EventFramer::default();
    let mut out = Vec::new();
    framer.feed(piece.clone(), &mut out).unwrap();
    assert_eq!(out.len(), 2);
    for block in &out {
        assert!(range.contains(&block.raw.as_ptr()));
    }
    let next = Bytes::from_static(b"\n\ndata: b\n\n");
    framer.feed(next.clone(), &mut out).unwrap();
    assert_eq!(out[2].raw, &b"data: spans\n\n"[..]); // assembled
    assert!(next.as_ptr_range().contains(&out[3].raw.as_ptr()));
    // The id is a slice of the block too.
    framer
        .feed(Bytes::from_static(b"id: 42\n\n"), &mut out)
        .unwrap();
    match &out[4].id {
        EventId::In { start, len } => {
            assert_eq!(&out[4].raw[*start as usize..][..*len as usize], b"42")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_idle_framer_holds_no_buffer() {
    let mut framer = EventFramer::default();
    let mut out = Vec::new();
    framer
        .feed(Bytes::from_static(b"data: a"), &mut out)
        .unwrap();
    assert!(framer.partial.capacity() > 0);
    assert_eq!(framer.pending_bytes(), 7);
    framer.feed(Bytes::from_static(b"\n\n"), &mut out).unwrap();
    assert_eq!(framer.partial.capacity(), 0);
    assert_eq!(framer.pending_bytes(), 0);
    framer
        .feed(Bytes::from_static(b"data: a\r"), &mut out)
        .unwrap();
    framer.feed(Bytes::from_static(b"\r"), &mut out).unwrap();
    // The blank line's CR completes the block at once: nothing is held for the LF.
    assert_eq!(framer.partial.capacity(), 0);
    assert_eq!(out.len(), 2);
    framer.feed(Bytes::from_static(b"\n"), &mut out).unwrap();
    assert_eq!(framer.partial.capacity(), 0);
    assert_eq!(
        out.len(),
        3,
        "the LF of the split CRLF is a block of its own"
    );
    assert_eq!(out[2].raw, &b"\n"[..]);
}

#[test]
fn a_block_past_the_limit_fails_the_body_without_growing_past_it() {
    let limit = 32;
    let ok = b"data: 012345678901234567890123\n\n"; // exactly 32 bytes
    let big = b"data: 0123456789012345678901234\n\n"; // 33
    assert_eq!((ok.len(), big.len()), (limit, limit + 1));
    for pieces in [1, big.len()] {
        let mut input = ok.to_vec();
        input.extend_from_slice(big);
        input.extend_from_slice(ok);
        let mut framer = EventFramer::new(limit);
        let mut out = Vec::new();
        let mut result = Ok(());
        for piece in input.chunks(input.len().div_ceil(pieces)) {
            result = framer.feed(Bytes::copy_from_slice(piece), &mut out);
            assert!(framer.pending_bytes() <= limit);
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(FrameError::EventTooLarge { limit }));
        assert_eq!(out.len(), 1);
        assert_eq!(
            framer.feed(Bytes::from_static(b"\n"), &mut out),
            Err(FrameError::EventTooLarge { limit })
        );
        // A new body on the same framer works again.
        framer.restart_body();
        framer.feed(Bytes::from_static(ok), &mut out).unwrap();
        assert_eq!(out.len(), 2);
    }
    // An unterminated tail past the limit fails as soon as it is seen.
    let mut framer = EventFramer::new(4);
    assert!(framer
        .feed(Bytes::from_static(b"data: x"), &mut Vec::new())
        .is_err());
    assert!(FrameError::EventTooLarge { limit: 4 }
        .to_string()
        .contains("4 bytes"));
}

#[test]
fn restart_body_drops_the_tail_rearms_the_bom_and_keeps_the_cursor() {
    let mut framer = EventFramer::default();
    let mut out = Vec::new();
    framer
        .feed(
            Bytes::from_static(b"\xEF\xBB\xBFid: 5\n\ndata: half"),
            &mut out,
        )
        .unwrap();
    assert_eq!(framer.last_event_id(), b"5");
    framer.restart_body();
    assert_eq!(framer.pending_bytes(), 0);
    framer
        .feed(Bytes::from_static(b"\xEF\xBB"), &mut out)
        .unwrap();
    framer
        .feed(Bytes::from_static(b"\xBFdata: new\n\n"), &mut out)
        .unwrap();
    assert_eq!(out[1].raw, &b"data: new\n\n"[..]);
    assert_eq!(out[1].id_field(), IdField::Unchanged);
    assert_eq!(framer.last_event_id(), b"5");
    // A block completed by a blank line's CR at the end of a piece was handed out at that CR
    // (a browser dispatches there), so it is not an unfinished tail: the cursor moved.
    framer
        .feed(Bytes::from_static(b"id: 6\n\r"), &mut out)
        .unwrap();
    assert_eq!(out[2].raw, &b"id: 6\n\r"[..]);
    assert_eq!(framer.last_event_id(), b"6");
    framer.restart_body();
    // The next body starts afresh: its leading LF is an empty line of its own.
    framer
        .feed(Bytes::from_static(b"\ndata: x\n\n"), &mut out)
        .unwrap();
    assert_eq!(out[3].raw, &b"\n"[..]);
    assert_eq!(framer.last_event_id(), b"6");
}

/// A blank line ending in CR at the end of a piece hands its block out at once, unless the block
/// is exactly at the limit: an LF next would make it one byte too large (found by the shotgun
/// proptest: a 46-byte block through CRLF, split after its CR, passed a 45-byte limit).
#[test]
fn a_block_at_the_limit_waits_for_the_byte_after_its_cr() {
    let block = b"data: 0123456789\r\r"; // 18 bytes through the blank line's CR
    let max = block.len();
    // CR LF split after the CR: the block is 19 bytes, too large for 18.
    let mut f = EventFramer::new(max);
    let mut out = Vec::new();
    f.feed(Bytes::from_static(block), &mut out).unwrap();
    assert!(out.is_empty(), "held at the limit");
    assert!(f
        .feed(Bytes::from_static(b"\ndata: x\n\n"), &mut out)
        .is_err());
    assert!(out.is_empty());
    // A lone CR terminator: the next byte starts the next block, the held one goes first.
    let mut f = EventFramer::new(max);
    let mut out = Vec::new();
    f.feed(Bytes::from_static(block), &mut out).unwrap();
    f.feed(Bytes::from_static(b"data: y\r\r"), &mut out)
        .unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(&out[0].raw[..], block);
    assert!(out[0].fires && out[1].fires);
    // The body ends after the CR: the block is whole and is handed out at the end.
    let mut f = EventFramer::new(max);
    let mut out = Vec::new();
    f.feed(Bytes::from_static(block), &mut out).unwrap();
    assert_eq!(f.finish_into(&mut out), 0);
    assert_eq!(out.len(), 1);
    // One byte under the limit: handed out at the CR, as always.
    let mut f = EventFramer::new(max + 1);
    let mut out = Vec::new();
    f.feed(Bytes::from_static(block), &mut out).unwrap();
    assert_eq!(out.len(), 1);
}

#[test]
fn an_id_value_read_once_agrees_with_the_rings_number() {
    let long = "1".repeat(MAX_NUMERIC_ID_DIGITS);
    let too_long = "1".repeat(MAX_NUMERIC_ID_DIGITS + 1);
    let cases: [&[u8]; 12] = [
        b"",
        b"0",
        b"00",
        b"01",
        b"7",
        b"1234567",
        b"12a",
        b"-1",
        b"/",
        "é1".as_bytes(),
        long.as_bytes(),
        too_long.as_bytes(),
    ];
    for value in cases {
        let read = IdValue::read(value).expect("no NUL");
        assert_eq!(
            read.number(),
            super::super::ring::numeric_id(value),
            "{value:?}"
        );
        assert_eq!(read.ascii, value.is_ascii(), "{value:?}");
    }
    assert_eq!(IdValue::read(b"1\0"), None);
    assert_eq!(IdValue::read(b"\0"), None);
}

/// `IdValue::read_in` (a value of up to eight digits read as one word) against `read`, for
/// every `id` line form (`id:`, `id: `) and values of every length around the word's, digits
/// next to the bytes a word check could mistake (`/`, `:`, 0x3A-0x3F, 0xF0-0xFF).
#[test]
fn an_id_read_as_a_word_is_read_as_byte_by_byte() {
    let mut values: Vec<Vec<u8>> = vec![b"".to_vec()];
    for len in 1..=10usize {
        for digits in [
            "1234567890",
            "0000000000",
            "9999999999",
            "0123456789",
            "1000000000",
        ] {
            values.push(digits.as_bytes()[..len].to_vec());
        }
        for bad in [
            b'/',
            b':',
            b'?',
            b'0' - 1,
            b'9' + 1,
            0xF9,
            0xFA,
            0xFF,
            b'a',
            0,
        ] {
            for at in 0..len {
                let mut v = b"1234567890"[..len].to_vec();
                v[at] = bad;
                values.push(v);
            }
        }
    }
    for value in &values {
        for name in [&b"id:"[..], b"id: "] {
            let line = [name, value].concat();
            assert_eq!(
                IdValue::read_in(&line, name.len()),
                IdValue::read(value),
                "{line:?}"
            );
        }
    }
}

/// Every stream's task holds its framer for the stream's life, an idle stream included
/// (`proxy::conn::tests::a_stream_task_stays_small`): 104 bytes; 120 while the open block's
/// facts were `Option`s, 168 while its offsets, limit and the open block's id span were usizes
/// and the id's number an `Option`.
#[test]
fn a_framer_stays_small() {
    // Test builds count the bytes scanned (`scanned`, a usize): not in the stream's framer.
    let size = std::mem::size_of::<EventFramer>() - std::mem::size_of::<usize>();
    eprintln!("EventFramer (without the test's counter): {size} bytes");
    assert!(size <= 104, "EventFramer is {size} bytes");
}

#[test]
fn the_cursor_is_the_last_id_set_in_a_piece_whatever_follows_it() {
    // The scan notes which block set the last id; blocks after it in the same piece (no id, a
    // comment, an id with NUL) leave the cursor where that block put it, at every split.
    let f = frame(b"id: 1\ndata: a\n\nid: 2\n\ndata: c\n\n: x\n\nid: 3\0\ndata: d\n\n");
    assert_eq!(f.last_id, b"2");
    assert_eq!(f.blocks[1].1, set("2"));
    assert_eq!(f.blocks[4].1, IdField::Unchanged);
    // Past ASCII: valid UTF-8 is kept as it is, invalid becomes U+FFFD (rule 11's client view).
    let f = frame("id: é9\ndata: a\n\ndata: b\n\n".as_bytes());
    assert_eq!(f.last_id, "é9".as_bytes());
    let f = frame(b"id: \xff1\ndata: a\n\ndata: b\n\n");
    assert_eq!(f.last_id, "\u{fffd}1".as_bytes());
    assert_eq!(f.blocks[0].1, set("\u{fffd}1"));
}

/// The plain scan (LF-only blocks walked by their LF bits, `EventFramer::scan_plain`) against
/// the general loop: a body whose blocks cross 64-byte windows, with every field the relay
/// reads, a CRLF block and a lone-CR block between LF ones (the plain scan stops there and the
/// general loop goes on), framed whole, at every 2- and 3-way split and one byte at a time
/// (`frame`), and block by block: the same boundaries, ids, retries and cursor, and each
/// block's fields as the slow parser reads them.
#[test]
fn plain_runs_frame_as_block_by_block_at_every_split() {
    let blocks: [&[u8]; 11] = [
        b"id: 1\ndata: {\"seq\":1,\"pad\":\"xxxxxxxxxxxxxxxxxxxxxx\"}\n\n",
        b"retry: 1500\n\n",
        b": comment\nid: 2\ndata\n\n",
        b"id: 3\r\ndata: crlf\r\n\r\n",
        b"id: 0042\ndata: not canonical\n\n",
        b"id\n\n",
        b"id: a\x00b\ndata: nul id ignored\n\n",
        b"id: \xC3\xA9t\xC3\xA9\ndata: utf-8 id\n\n",
        b"id: 5\rdata: lone cr\r\r",
        b"data: no id, after a CR block\nretry: x\n\n",
        b"id: 6\ndata: last\n\n",
    ];
    let input = blocks.concat();
    let whole = frame(&input);
    let one_by_one = frame_pieces(&blocks);
    assert_eq!(whole, one_by_one, "whole against block by block");
    let want: Vec<&[u8]> = blocks.to_vec();
    assert_eq!(raws(&whole), want);
    for (got, raw) in whole.blocks.iter().zip(blocks) {
        let parsed = parse_block(raw);
        let id = match parsed.id {
            Some(id) => set(&id),
            None => IdField::Unchanged,
        };
        assert_eq!(
            (&got.1, got.2, got.3),
            (&id, parsed.retry, parsed.fires),
            "{raw:?}"
        );
    }
    assert_eq!(whole.last_id, b"6");
}

/// Many small LF blocks in one piece, as a batched upstream write brings them: the plain scan
/// frames them all, with the ids' numbers read for the ring, the same as one piece per block.
#[test]
fn a_batched_piece_frames_as_its_blocks_one_by_one() {
    let blocks: Vec<Vec<u8>> = (0..200u64)
        .map(|i| {
            format!(
                "id: {i}\ndata: {{\"seq\":{i},\"pad\":\"{}\"}}\n\n",
                "x".repeat((i % 70) as usize)
            )
            .into_bytes()
        })
        .collect();
    let read = blocks.concat();
    let mut framer = EventFramer::default();
    let mut out = Vec::new();
    framer.feed_read(&read, 0..read.len(), &mut out).unwrap();
    let mut alone = EventFramer::default();
    let mut one_by_one = Vec::new();
    let mut at = 0;
    for b in &blocks {
        alone
            .feed_read(&read, at..at + b.len(), &mut one_by_one)
            .unwrap();
        at += b.len();
    }
    assert_eq!(out.len(), 200);
    for (i, (a, b)) in out.iter().zip(&one_by_one).enumerate() {
        assert_eq!(a.bytes, b.bytes);
        assert_eq!(
            (&a.id, a.number, a.retry, a.fires),
            (&b.id, b.number, b.retry, b.fires)
        );
        assert_eq!(a.number, Some(i as u64));
        assert_eq!(a.id.value(a.raw(&read)), Some(i.to_string().as_bytes()));
    }
    assert_eq!(framer.last_event_id(), b"199");
    assert_eq!(framer.pending_bytes(), 0);
}
