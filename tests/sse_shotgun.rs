//! Shotgun test: random SSE bodies from a grammar of lines (fields, comments, BOMs, CR/LF/CRLF,
//! NULs, invalid UTF-8, long lines, a partial last line), fed in random pieces. The framer's
//! blocks, cursor and dropped tail must equal a single-piece feed and a slow, obviously right
//! oracle that reads the whole body byte by byte knowing where it ends.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use tether::sse::{EventFramer, FrameError, IdField};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A block as compared: bytes, id effect (None = unchanged), retry, fires.
type Block = (Vec<u8>, Option<Vec<u8>>, Option<u64>, bool);

/// The oracle: WHATWG line parsing over the whole body, one byte at a time.
fn oracle(input: &[u8]) -> (Vec<Block>, Vec<u8>, usize) {
    let body = input.strip_prefix(BOM).unwrap_or(input);
    let mut blocks = Vec::new();
    let mut cursor = Vec::new();
    let (mut block_start, mut line_start) = (0, 0);
    let (mut id, mut retry, mut fires) = (None, None, false);
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if b != b'\r' && b != b'\n' {
            i += 1;
            continue;
        }
        let line = &body[line_start..i];
        // A CR followed by LF is one terminator; a CR at the very end of the body ends a line.
        let next = if b == b'\r' && body.get(i + 1) == Some(&b'\n') {
            i + 2
        } else {
            i + 1
        };
        if line.is_empty() {
            if let Some(v) = &id {
                cursor = Vec::clone(v);
            }
            blocks.push((
                body[block_start..next].to_vec(),
                id.take(),
                retry.take(),
                fires,
            ));
            fires = false;
            block_start = next;
        } else if line[0] != b':' {
            let colon = line.iter().position(|&c| c == b':');
            let name = &line[..colon.unwrap_or(line.len())];
            let mut value: &[u8] = match colon {
                Some(c) => &line[c + 1..],
                None => b"",
            };
            if value.first() == Some(&b' ') {
                value = &value[1..];
            }
            if name == b"data" {
                fires = true;
            } else if name == b"id" && !value.contains(&0) {
                id = Some(String::from_utf8_lossy(value).into_owned().into_bytes());
            } else if name == b"retry"
                && !value.is_empty()
                && value.iter().all(|c| c.is_ascii_digit())
            {
                let text = std::str::from_utf8(value).expect("digits");
                retry = Some(text.parse::<u64>().unwrap_or(u64::MAX));
            }
        }
        line_start = next;
        i = next;
    }
    (blocks, cursor, body.len() - block_start)
}

/// Feeds `input` cut at `cuts`; returns blocks, cursor, dropped bytes, and the first error.
/// Also checks zero-copy (a block inside one piece points into it) and the memory bound.
fn framed(
    input: &[u8],
    cuts: &[usize],
    max: usize,
) -> (Vec<Block>, Vec<u8>, usize, Option<FrameError>) {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(input.len())).collect();
    cuts.push(0);
    cuts.push(input.len());
    cuts.sort_unstable();
    let whole = Bytes::copy_from_slice(input);
    let bom = if input.starts_with(BOM) { 3 } else { 0 };
    let mut framer = EventFramer::new(max);
    let mut blocks = Vec::new();
    let mut offset = 0; // body offset (after the BOM) of the next block
    let mut error = None;
    for w in cuts.windows(2) {
        let piece = whole.slice(w[0]..w[1]);
        let mut out = Vec::new();
        let result = framer.feed(piece.clone(), &mut out);
        assert!(
            framer.pending_bytes() <= max.max(2),
            "partial past the limit"
        );
        for block in out {
            let (start, end) = (bom + offset, bom + offset + block.raw.len());
            offset += block.raw.len();
            // Inside this piece, and not ended by a CR that is the piece's last byte (rule 2).
            let inside = w[0] <= start && end < w[1] || end == w[1] && input[end - 1] != b'\r';
            if inside && w[0] <= start {
                assert!(piece.as_ptr_range().contains(&block.raw.as_ptr()), "copied");
            }
            blocks.push(block);
        }
        if let Err(e) = result {
            error = Some(e);
            break;
        }
    }
    let dropped = if error.is_none() {
        framer.finish_into(&mut blocks)
    } else {
        0
    };
    let blocks: Vec<Block> = blocks
        .into_iter()
        .map(|b| {
            let id = match b.id {
                IdField::Unchanged => None,
                IdField::Set(v) => Some(v.to_vec()),
            };
            (b.raw.to_vec(), id, b.retry, b.fires)
        })
        .collect();
    (
        join_split_crlf(blocks),
        framer.last_event_id().to_vec(),
        dropped,
        error,
    )
}

/// A block whose blank line ends in a CR that is the last byte of a piece is handed out at that
/// CR (a browser dispatches there; waiting for the next piece would delay the event by a whole
/// upstream write). When the next piece then starts with the LF of that CRLF, the LF comes out as
/// a block of its own ("\n": no field, no event). For comparing framings across splits, that LF
/// is put back on its block: the bytes, events and cursor are the same either way.
fn join_split_crlf(blocks: Vec<Block>) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::with_capacity(blocks.len());
    for b in blocks {
        if b.0 == b"\n" && b.1.is_none() && b.2.is_none() && !b.3 {
            if let Some(prev) = out.last_mut().filter(|p| p.0.ends_with(b"\r")) {
                prev.0.push(b'\n');
                continue;
            }
        }
        out.push(b);
    }
    out
}

fn line() -> impl Strategy<Value = Vec<u8>> {
    let names: Vec<&[u8]> = vec![
        b"data",
        b"id",
        b"retry",
        b"event",
        b"Data",
        b"ID",
        b"foo",
        b"",
        b"dat",
        b"idx",
        b"retryy",
        b"\xEF\xBB\xBFdata",
    ];
    let seps: Vec<&[u8]> = vec![b"", b":", b": ", b":  ", b":\t"];
    let value = prop_oneof![
        Just(Vec::new()),
        vec(select(b"0123456789".to_vec()), 1..25),
        vec(select(b"az09 :\t".to_vec()), 0..12),
        select(vec![&b"a\0b"[..], b"\0", b"x\0"]).prop_map(<[u8]>::to_vec),
        Just(b"\xFF\xC3".to_vec()),
        Just("\u{2028}x\u{2029}\u{85}".as_bytes().to_vec()),
        Just(BOM.to_vec()),
        (1usize..3000).prop_map(|n| vec![b'x'; n]),
    ];
    prop_oneof![
        5 => (select(names), select(seps), value).prop_map(|(n, s, v)| [n, s, &v].concat()),
        1 => vec(select(b" az:".to_vec()), 0..10).prop_map(|c| [&b":"[..], &c].concat()),
        3 => Just(Vec::new()),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let leads: Vec<&[u8]> = vec![
        b"",
        b"",
        BOM,
        b"\xEF\xBB\xBF\xEF\xBB\xBF",
        b"\xEF",
        b"\xEF\xBB",
    ];
    let term = select(vec![&b"\n"[..], b"\r", b"\r\n"]);
    (
        select(leads),
        vec((line(), term), 0..24),
        prop_oneof![Just(Vec::new()), line()],
    )
        .prop_map(|(lead, lines, tail)| {
            let mut out = lead.to_vec();
            for (l, t) in lines {
                out.extend_from_slice(&l);
                out.extend_from_slice(t);
            }
            out.extend_from_slice(&tail);
            out
        })
}

/// A body and where to cut it: random cuts, or one byte per piece.
fn cut_body() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    body().prop_flat_map(|input| {
        let n = input.len();
        let every: Vec<usize> = (0..=n).collect();
        (
            Just(input),
            prop_oneof![4 => vec(0..=n, 0..12), 1 => Just(every)],
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_split_frames_like_the_oracle((input, cuts) in cut_body()) {
        let (blocks, cursor, dropped) = oracle(&input);
        let max = usize::MAX;
        let split = framed(&input, &cuts, max);
        let whole = framed(&input, &[], max);
        prop_assert_eq!(&split, &whole);
        prop_assert_eq!(split, (blocks, cursor, dropped, None));
    }

    #[test]
    fn the_limit_fails_at_the_same_block_for_any_split(
        (input, cuts) in cut_body(),
        max in 16usize..600,
    ) {
        let (mut blocks, _, dropped) = oracle(&input);
        let first_big = blocks.iter().position(|b| b.0.len() > max);
        let fails = first_big.is_some() || dropped > max;
        blocks.truncate(first_big.unwrap_or(blocks.len()));
        let (got, _, _, error) = framed(&input, &cuts, max);
        prop_assert_eq!(got, blocks);
        prop_assert_eq!(error, fails.then_some(FrameError::EventTooLarge { limit: max }));
    }
}
