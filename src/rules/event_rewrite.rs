//! An SSE event written again with new data (`redact`, `filter-tools`), everything else of it
//! kept: its `id:`, `event:`, `retry:`, comment and unknown lines stay, in their order; the data
//! lines are replaced, at the place of the first one, by one `data: ` line per line of the new
//! data. Rewritten events end their lines with LF whatever the upstream used (CRLF, LF and a lone
//! CR are all line ends in SSE, so a client reads the same fields).

pub(crate) use crate::sse::framer::block_lines;

/// The field name of a line (`data` for `data: x` and for a bare `data`); None for a comment.
pub(crate) fn field_name(line: &[u8]) -> Option<&[u8]> {
    if line.first() == Some(&b':') {
        return None;
    }
    Some(match memchr::memchr(b':', line) {
        Some(colon) => &line[..colon],
        None => line,
    })
}

/// `raw` (one complete block) with its data replaced by `data`. A block without data lines
/// gets the new ones at its end, before the blank line.
pub(crate) fn rewrite_event(raw: &[u8], data: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + data.len() + 16);
    let mut data_written = false;
    for line in block_lines(raw) {
        if field_name(line) == Some(b"data") {
            if !data_written {
                write_data_lines(&mut out, data);
                data_written = true;
            }
            continue;
        }
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    if !data_written {
        write_data_lines(&mut out, data);
    }
    out.push(b'\n');
    out
}

/// One `data: ` line per line of `data`. A replacement text may bring its own CR or CRLF: they
/// end lines too, so that no raw CR ever lands inside a data line (a client would split there).
fn write_data_lines(out: &mut Vec<u8>, data: &str) {
    let mut rest = data.as_bytes();
    loop {
        let (line, after) = match memchr::memchr2(b'\r', b'\n', rest) {
            None => (rest, None),
            Some(i) if rest[i] == b'\r' && rest.get(i + 1) == Some(&b'\n') => {
                (&rest[..i], Some(&rest[i + 2..]))
            }
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        };
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.push(b'\n');
        match after {
            Some(after) => rest = after,
            None => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::framer::parse_block;
    use proptest::prelude::*;

    #[test]
    fn keeps_id_event_retry_and_comments_in_order() {
        let raw = b": hello\r\nid: 7\r\nevent: update\r\ndata: a secret\r\nretry: 500\r\ndata: b\r\nx: y\r\n\r\n";
        let out = rewrite_event(raw, "a [R]\nb");
        assert_eq!(
            out,
            b": hello\nid: 7\nevent: update\ndata: a [R]\ndata: b\nretry: 500\nx: y\n\n"
        );
    }

    #[test]
    fn lone_cr_and_bare_data_lines() {
        let raw = b"data\rid: 1\rdata: z\r\r";
        assert_eq!(rewrite_event(raw, "new"), b"data: new\nid: 1\n\n");
        assert_eq!(rewrite_event(b"id: 2\n\n", "x"), b"id: 2\ndata: x\n\n");
    }

    #[test]
    fn data_with_line_breaks_and_leading_space() {
        let out = rewrite_event(b"data: q\n\n", " a\r\nb\rc\n");
        assert_eq!(out, b"data:  a\ndata: b\ndata: c\ndata: \n\n");
        assert_eq!(parse_block(&out).data, " a\nb\nc\n");
    }

    fn line() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z ]{0,8}".prop_map(|v| format!("data: {v}")),
            "[a-z0-9]{0,4}".prop_map(|v| format!("id: {v}")),
            "[a-z]{0,5}".prop_map(|v| format!("event: {v}")),
            "[0-9]{1,4}".prop_map(|v| format!("retry: {v}")),
            "[a-z ]{0,6}".prop_map(|v| format!(": {v}")),
            Just("data".to_string()),
        ]
    }

    proptest! {
        #[test]
        fn fields_survive_a_rewrite(
            lines in proptest::collection::vec(line(), 0..8),
            ends in proptest::collection::vec(prop_oneof![Just("\n"), Just("\r\n"), Just("\r")], 8),
            data in "[a-z \n]{0,20}",
        ) {
            let mut raw = String::new();
            for (i, l) in lines.iter().enumerate() {
                raw.push_str(l);
                raw.push_str(ends[i]);
            }
            raw.push_str(ends[0]);
            let before = parse_block(raw.as_bytes());
            let after = parse_block(&rewrite_event(raw.as_bytes(), &data));
            prop_assert_eq!(&after.data, &data);
            prop_assert!(after.fires);
            prop_assert_eq!(after.id, before.id);
            prop_assert_eq!(after.event_type, before.event_type);
            prop_assert_eq!(after.retry, before.retry);
        }
    }
}
