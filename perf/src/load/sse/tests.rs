//! The SSE parser against hand-written vectors at every split point, and against a
//! byte-at-a-time oracle on generated streams.

use super::*;

/// What a parse produced: fired events, then the final cursor and retry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    events: Vec<Event>,
    cursor: Vec<u8>,
    retry: Option<u64>,
}

/// Feeds `pieces` to a fresh parser.
fn parse_pieces(pieces: &[&[u8]]) -> Outcome {
    let mut p = SseParser::new();
    let mut events = Vec::new();
    for piece in pieces {
        p.feed(piece, &mut |e| events.push(e)).unwrap();
    }
    Outcome {
        events,
        cursor: p.cursor().to_vec(),
        retry: p.retry_ms(),
    }
}

/// Asserts that every way of cutting `input` into two pieces, every three-piece cut whose
/// middle piece is at most 12 bytes (line ends and BOMs split across short reads), and
/// 1-byte pieces all give `want`.
fn assert_every_split(input: &[u8], want: &Outcome) {
    assert_eq!(&parse_pieces(&[input]), want, "whole");
    for i in 0..=input.len() {
        let (a, b) = input.split_at(i);
        assert_eq!(&parse_pieces(&[a, b]), want, "split at {i}");
    }
    for i in 0..=input.len() {
        for j in i..=input.len().min(i + 12) {
            let got = parse_pieces(&[&input[..i], &input[i..j], &input[j..]]);
            assert_eq!(&got, want, "splits at {i} and {j}");
        }
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(&parse_pieces(&bytes), want, "1-byte pieces");
}

fn ev(id: Option<u64>, seq: Option<u64>, ts_us: Option<u64>, data_len: usize) -> Event {
    Event {
        id,
        seq,
        ts_us,
        data_len,
    }
}

#[test]
fn simulator_events_lf_crlf_cr() {
    for eol in ["\n", "\r\n", "\r"] {
        let text = [
            "id: 1",
            "data: {\"seq\":1,\"ts_us\":1712345678901234}",
            "",
            "id: 2",
            "data: {\"seq\":2,\"ts_us\":0000000000000005,\"pad\":\"xx\"}",
            "",
        ]
        .iter()
        .map(|l| format!("{l}{eol}"))
        .collect::<String>();
        let want = Outcome {
            events: vec![
                ev(Some(1), Some(1), Some(1_712_345_678_901_234), 34),
                ev(Some(2), Some(2), Some(5), 45),
            ],
            cursor: b"2".to_vec(),
            retry: None,
        };
        assert_every_split(text.as_bytes(), &want);
    }
}

#[test]
fn everything_at_once() {
    // BOM, mixed line ends, comments, retry, a priming block, an id reset, a field without a
    // colon, two data lines, an id with NUL, fields with no space and a tab, and an
    // unterminated block at the end.
    let input: &[u8] = b"\xEF\xBB\xBF: hello\r\n\
        retry: 1500\r\n\r\n\
        id: 0\ndata:\n\n\
        id: 1\rdata: {\"seq\":1,\"ts_us\":10}\r\r\
        : hb\n\n\
        id: 2\r\ndata:{\"seq\":2}\r\nevent: x\r\nunknown\r\n\r\n\
        data: {\"a\":1,\n\
        data: \"ts_us\": 77, \"seq\": 3}\n\n\
        id\ndata: first\n\n\
        id: 9\0\ndata: x\n\n\
        id: 5\ndata:\t{\"seq\":5}\n\n\
        retry: 1x\nretry: -3\n\
        id: 6\ndata: {\"seq\":6,\"ts_us\":1}";
    let want = Outcome {
        events: vec![
            ev(Some(1), Some(1), Some(10), 20),
            ev(Some(2), Some(2), None, 9),
            // No id line: the cursor stays "2"; keys found across the two data lines.
            ev(None, Some(3), Some(77), 7 + 1 + 22),
            // `id` without a colon resets the cursor to "" (not a number).
            ev(None, None, None, 5),
            // `id: 9\0` is ignored: still no id in this block.
            ev(None, None, None, 1),
            ev(Some(5), Some(5), None, 10),
        ],
        cursor: b"5".to_vec(),
        retry: Some(1500),
    };
    assert_every_split(input, &want);
}

#[test]
fn bom_only_at_offset_zero_and_partial_bom_is_content() {
    let want = Outcome {
        events: vec![ev(None, None, None, 3)],
        cursor: vec![],
        retry: None,
    };
    assert_every_split(b"\xEF\xBB\xBFdata: abc\n\n", &want);
    // Two BOMs: the second is content of the field name, so nothing fires.
    let none = Outcome {
        events: vec![],
        cursor: vec![],
        retry: None,
    };
    assert_every_split(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: abc\n\n", &none);
    // A BOM prefix that is not a BOM belongs to the first line's name.
    assert_every_split(b"\xEF\xBBdata: abc\n\n", &none);
    // A CR right after a partial BOM ends the line it starts.
    assert_every_split(b"\xEF\rdata: abc\n\n", &want);
}

#[test]
fn empty_data_does_not_count_and_id_only_blocks_move_the_cursor() {
    let want = Outcome {
        events: vec![ev(Some(8), Some(8), None, 9)],
        cursor: b"9".to_vec(),
        retry: None,
    };
    assert_every_split(
        b"id: 7\ndata:\n\nid: 8\ndata: {\"seq\":8}\n\nid: 9\n\n",
        &want,
    );
}

#[test]
fn start_body_keeps_cursor_and_retry_drops_the_unfinished_block() {
    let mut p = SseParser::new();
    let mut events = Vec::new();
    p.feed(
        b"retry: 30\n\nid: 4\ndata: {\"seq\":4}\n\nid: 5\ndata: {\"se",
        &mut |e| events.push(e),
    )
    .unwrap();
    p.start_body();
    // The new body starts with its own BOM and a line that must not glue onto "{\"se".
    p.feed(b"\xEF\xBB\xBFid: 5\ndata: {\"seq\":5}\n\n", &mut |e| {
        events.push(e)
    })
    .unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1], ev(Some(5), Some(5), None, 9));
    assert_eq!(p.cursor(), b"5");
    assert_eq!(p.retry_ms(), Some(30));
    // A CR at the end of one body does not swallow a LF starting the next.
    p.feed(b"data: a\r", &mut |_| {}).unwrap();
    p.start_body();
    let mut n = 0;
    p.feed(b"\ndata: b\n\n", &mut |_| n += 1).unwrap();
    assert_eq!(n, 1, "the leading LF is an empty line, then one event");
}

#[test]
fn long_lines_are_bounded_and_not_rescanned() {
    let mut p = SseParser::new();
    let mut n = 0;
    let chunk = vec![b'x'; 64 * 1024];
    p.feed(b"data: ", &mut |_| n += 1).unwrap();
    for _ in 0..15 {
        p.feed(&chunk, &mut |_| n += 1).unwrap();
    }
    p.feed(b"\n\n", &mut |_| n += 1).unwrap();
    assert_eq!(n, 1);
    let mut p = SseParser::new();
    let err = (0..17)
        .map(|_| p.feed(&chunk, &mut |_| {}))
        .find(|r| r.is_err());
    assert_eq!(err, Some(Err(SseError::LineTooLong)));
}

#[test]
fn digits_are_strict() {
    assert_eq!(parse_digits(b"0"), Some(0));
    assert_eq!(parse_digits(b"18446744073709551615"), Some(u64::MAX));
    for bad in [
        &b""[..],
        b"+1",
        b"1 ",
        b" 1",
        b"18446744073709551616",
        b"1a",
    ] {
        assert_eq!(parse_digits(bad), None, "{bad:?}");
    }
}

// ---- generated streams against an oracle ----

/// A decimal by the obviously right route (digits checked first: `str::parse` takes `+5`).
fn oracle_number(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// The obviously right parser: strips the BOM, cuts the whole input into lines one byte at
/// a time, drops the unterminated last line, then applies the field rules on whole lines,
/// keeping the data buffer as the spec describes it (values joined with LF).
fn oracle(input: &[u8]) -> Outcome {
    let input = input.strip_prefix(BOM).unwrap_or(input);
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut cur = Vec::new();
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'\r' => {
                lines.push(std::mem::take(&mut cur));
                if input.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
            }
            b'\n' => lines.push(std::mem::take(&mut cur)),
            b => cur.push(b),
        }
        i += 1;
    }
    let mut out = Outcome {
        events: vec![],
        cursor: vec![],
        retry: None,
    };
    let mut data: Vec<u8> = Vec::new();
    let mut block_id: Option<Vec<u8>> = None;
    for line in lines {
        if line.is_empty() {
            let own_id = block_id.take();
            if let Some(id) = &own_id {
                out.cursor = id.clone();
            }
            let mut d = std::mem::take(&mut data);
            if d.last() == Some(&b'\n') {
                d.pop();
            }
            if !d.is_empty() {
                let text = String::from_utf8_lossy(&d).into_owned();
                let num = |key: &str| {
                    text.find(key).and_then(|at| {
                        let digits: String = text[at + key.len()..]
                            .trim_start_matches(' ')
                            .chars()
                            .take_while(|c| c.is_ascii_digit())
                            .collect();
                        oracle_number(digits.as_bytes())
                    })
                };
                out.events.push(Event {
                    id: own_id.as_deref().and_then(oracle_number),
                    seq: num("\"seq\":"),
                    ts_us: num("\"ts_us\":"),
                    data_len: d.len(),
                });
            }
            continue;
        }
        if line[0] == b':' {
            continue;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v).to_vec())
            }
            None => (&line[..], vec![]),
        };
        match name {
            b"data" => {
                data.extend_from_slice(&value);
                data.push(b'\n');
            }
            b"id" if !value.contains(&0) => block_id = Some(value),
            b"retry" => {
                if let Some(ms) = oracle_number(&value) {
                    out.retry = Some(ms);
                }
            }
            _ => {}
        }
    }
    out
}

fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// A random stream built from SSE-ish pieces and random line ends.
fn generate(seed: &mut u64) -> Vec<u8> {
    const PIECES: &[&str] = &[
        "id: 1",
        "id: 22",
        "id:3",
        "id",
        "id: x",
        "id: \0",
        "data: {\"seq\":4,\"ts_us\":99}",
        "data: {\"seq\":5}",
        "data:",
        "data: plain",
        "data: {\"x\":1,\"ts_us\": 12}",
        ": c",
        ":",
        "retry: 10",
        "retry: 1x",
        "event: e",
        "dat",
        "",
        "",
        "",
        "\u{feff}data: a",
    ];
    const EOLS: &[&str] = &["\n", "\r\n", "\r"];
    let mut out = Vec::new();
    if xorshift(seed).is_multiple_of(4) {
        out.extend_from_slice(BOM);
    }
    let n = 1 + xorshift(seed) % 25;
    for _ in 0..n {
        out.extend_from_slice(PIECES[(xorshift(seed) % PIECES.len() as u64) as usize].as_bytes());
        out.extend_from_slice(EOLS[(xorshift(seed) % 3) as usize].as_bytes());
    }
    if xorshift(seed).is_multiple_of(3) {
        // An unterminated tail.
        out.extend_from_slice(b"data: {\"seq\":77}");
    }
    out
}

#[test]
fn generated_streams_match_the_oracle_at_random_splits() {
    let mut seed = 0x1234_5678_9ABC_DEF1u64;
    for round in 0..3000 {
        let input = generate(&mut seed);
        let want = oracle(&input);
        // Three random cut points, plus 1-byte pieces every tenth round.
        let mut cuts: Vec<usize> = (0..3)
            .map(|_| (xorshift(&mut seed) % (input.len() as u64 + 1)) as usize)
            .collect();
        cuts.sort_unstable();
        let pieces = [
            &input[..cuts[0]],
            &input[cuts[0]..cuts[1]],
            &input[cuts[1]..cuts[2]],
            &input[cuts[2]..],
        ];
        assert_eq!(
            parse_pieces(&pieces),
            want,
            "round {round}: {:?} cut at {cuts:?}",
            String::from_utf8_lossy(&input)
        );
        if round % 10 == 0 {
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(parse_pieces(&bytes), want, "round {round}, 1-byte pieces");
        }
    }
}

#[test]
fn comments_are_counted_at_every_split_and_across_bodies() {
    // Two heartbeats (the second with CRLF), a comment inside a block, a line with a colon
    // later on (not a comment), and an unterminated comment that still counts once its line
    // ends in the next piece.
    let input: &[u8] = b": keep-alive\n\n:\r\n\r\nid: 1\n: note\ndata: a:b\n\n: hb";
    let count = |pieces: &[&[u8]]| {
        let mut p = SseParser::new();
        let mut events = 0;
        for piece in pieces {
            p.feed(piece, &mut |_| events += 1).unwrap();
        }
        (p.comments(), events)
    };
    assert_eq!(
        count(&[input]),
        (3, 1),
        "the last comment has no line end yet"
    );
    for i in 0..=input.len() {
        let (a, b) = input.split_at(i);
        assert_eq!(count(&[a, b, b"\n"]), (4, 1), "split at {i}");
    }
    let mut p = SseParser::new();
    p.feed(b": one\n\n", &mut |_| {}).unwrap();
    p.start_body();
    p.feed(b": two\n\n", &mut |_| {}).unwrap();
    assert_eq!(p.comments(), 2, "counted over every body");
}
