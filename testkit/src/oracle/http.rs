//! Slow, obviously right reference decoders for HTTP/1.1 framing: the chunked coding and the end
//! of a head. They see the whole input at once and work line by line with plain slicing; they
//! share no code with `tether::http` (only its limits, which are part of the contract).

use tether::http::{MAX_CHUNK_EXT_BYTES, MAX_CHUNK_SIZE_DIGITS, MAX_TRAILER_BYTES};

/// What the oracle makes of a whole input.
#[derive(Debug, PartialEq, Eq)]
pub enum Oracle {
    /// A complete chunked body: its payload and its length in bytes.
    Complete { payload: Vec<u8>, consumed: usize },
    /// Not a complete body (invalid, or cut short: the oracle does not tell them apart).
    NotComplete,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_field_content(b: u8) -> bool {
    b == b'\t' || (0x20..=0x7e).contains(&b) || b >= 0x80
}

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// The CRLF-terminated line starting at `i`: its content and the index after its CRLF.
/// None if there is no LF, if the LF is bare, or if a CR appears inside the line.
fn crlf_line(input: &[u8], i: usize) -> Option<(&[u8], usize)> {
    let lf = i + input[i..].iter().position(|&b| b == b'\n')?;
    if lf == i || input[lf - 1] != b'\r' {
        return None;
    }
    let content = &input[i..lf - 1];
    if content.contains(&b'\r') {
        return None;
    }
    Some((content, lf + 1))
}

/// `*( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )`, plus bare trailing
/// whitespace after the size (the one leniency).
fn ext_ok(s: &[u8]) -> bool {
    let skip_ws = |i: &mut usize| {
        while *i < s.len() && is_ws(s[*i]) {
            *i += 1;
        }
    };
    let token = |i: &mut usize| {
        let start = *i;
        while *i < s.len() && is_tchar(s[*i]) {
            *i += 1;
        }
        *i > start
    };
    let mut i = 0;
    loop {
        skip_ws(&mut i);
        if i == s.len() {
            return true;
        }
        if s[i] != b';' {
            return false;
        }
        i += 1;
        skip_ws(&mut i);
        if !token(&mut i) {
            return false;
        }
        let after_name = i;
        skip_ws(&mut i);
        if i < s.len() && s[i] == b'=' {
            i += 1;
            skip_ws(&mut i);
            if i < s.len() && s[i] == b'"' {
                i += 1;
                loop {
                    match s.get(i) {
                        None => return false,
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') => match s.get(i + 1) {
                            Some(&b) if is_field_content(b) => i += 2,
                            _ => return false,
                        },
                        Some(&b) if is_field_content(b) => i += 1,
                        Some(_) => return false,
                    }
                }
            } else if !token(&mut i) {
                return false;
            }
        } else {
            i = after_name;
        }
    }
}

/// Decodes a whole chunked body by the book.
pub fn chunked(input: &[u8]) -> Oracle {
    let mut payload = Vec::new();
    let mut i = 0;
    loop {
        let Some((line, next)) = crlf_line(input, i) else {
            return Oracle::NotComplete;
        };
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        let ext = &line[digits..];
        if digits == 0 || digits > MAX_CHUNK_SIZE_DIGITS || ext.len() > MAX_CHUNK_EXT_BYTES {
            return Oracle::NotComplete;
        }
        if !ext_ok(ext) {
            return Oracle::NotComplete;
        }
        let hex = std::str::from_utf8(&line[..digits]).unwrap();
        let size = u64::from_str_radix(hex, 16).unwrap();
        i = next;
        if size == 0 {
            break;
        }
        let Ok(size) = usize::try_from(size) else {
            return Oracle::NotComplete;
        };
        if input.len() - i < size {
            return Oracle::NotComplete;
        }
        payload.extend_from_slice(&input[i..i + size]);
        i += size;
        if input.get(i..i + 2) != Some(b"\r\n") {
            return Oracle::NotComplete;
        }
        i += 2;
    }
    let mut trailer_bytes = 0;
    loop {
        let Some((line, next)) = crlf_line(input, i) else {
            return Oracle::NotComplete;
        };
        i = next;
        if line.is_empty() {
            return Oracle::Complete {
                payload,
                consumed: i,
            };
        }
        trailer_bytes += line.len() + 2;
        let name_len = line.iter().take_while(|&&b| is_tchar(b)).count();
        let valid = name_len > 0
            && line.get(name_len) == Some(&b':')
            && line[name_len + 1..].iter().all(|&b| is_field_content(b));
        if !valid || trailer_bytes > MAX_TRAILER_BYTES {
            return Oracle::NotComplete;
        }
    }
}

/// The end of the first head in `input` by the book: skip empty lines, then the first empty
/// line (CRLF or LF) after a non-empty one ends the head.
pub fn head_end(input: &[u8]) -> Option<usize> {
    let mut i = 0;
    let mut seen_start_line = false;
    while i < input.len() {
        let lf = i + input[i..].iter().position(|&b| b == b'\n')?;
        let line = &input[i..lf];
        let empty = line.is_empty() || line == b"\r";
        i = lf + 1;
        if empty && seen_start_line {
            return Some(i);
        }
        if !empty {
            seen_start_line = true;
        }
    }
    None
}
