//! A slow, obviously right reading of a Server-Sent Events body: the WHATWG line rules applied
//! to the whole body one byte at a time, knowing where it ends. It shares no code with
//! `tether::sse`.

/// The UTF-8 byte order mark a stream may start with (stripped once, at offset 0).
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A block as compared: bytes, id effect (None = unchanged), retry, fires.
pub type Block = (Vec<u8>, Option<Vec<u8>>, Option<u64>, bool);

/// The oracle: WHATWG line parsing over the whole body, one byte at a time. Returns the blocks
/// (each ended by a blank line), the last event id in force after them, and how many bytes of
/// an unfinished block trail the last one.
pub fn oracle(input: &[u8]) -> (Vec<Block>, Vec<u8>, usize) {
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
