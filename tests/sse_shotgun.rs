//! Shotgun test: random SSE bodies from a grammar of lines (fields, comments, BOMs, CR/LF/CRLF,
//! NULs, invalid UTF-8, long lines, a partial last line), fed in random pieces. The framer's
//! blocks, cursor and dropped tail must equal a single-piece feed and a slow, obviously right
//! oracle that reads the whole body byte by byte knowing where it ends.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use tether::sse::FrameError;
use tether_testkit::oracle::sse::{oracle, BOM};
use tether_testkit::sse::framed;

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
