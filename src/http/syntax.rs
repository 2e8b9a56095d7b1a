//! RFC 9110 section 5.6 building blocks shared by the head, framing and chunked code:
//! token characters, optional whitespace, and comma-separated lists.

/// `tchar` of RFC 9110 5.6.2: the characters of a token (method, field name, coding name).
const TCHAR: [bool; 256] = {
    let mut map = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        map[i] = matches!(b,
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
            | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+'
            | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~');
        i += 1;
    }
    map
};

/// A `tchar` (RFC 9110 5.6.2).
#[inline]
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

/// A non-empty sequence of `tchar`.
pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_tchar(b))
}

/// `OWS` / `BWS` characters: SP and HTAB (RFC 9110 5.6.3).
#[inline]
pub(crate) fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// `field-vchar`, SP or HTAB: what a field value may hold (RFC 9110 5.5); obs-text included.
#[inline]
pub(crate) fn is_field_content(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

/// `s` without leading and trailing OWS.
pub(crate) fn trim_ows(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|&b| !is_ows(b)).unwrap_or(s.len());
    let end = s.iter().rposition(|&b| !is_ows(b)).map_or(start, |i| i + 1);
    &s[start..end]
}

/// The elements of a `#rule` list (RFC 9110 5.6.1), OWS-trimmed. Empty elements are yielded
/// as empty slices so that callers which must reject them can; callers which must ignore them
/// ("a recipient MUST parse and ignore a reasonable number of empty list elements") skip them.
pub(crate) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows)
}

/// Parses `1*DIGIT` by hand (`str::parse` would take "+5"): no sign, no whitespace, no
/// separators. Overflow is its own error so that the message can say so.
pub(crate) fn parse_decimal(s: &[u8]) -> Result<u64, DecimalError> {
    if s.is_empty() {
        return Err(DecimalError::NotDigits);
    }
    let mut n: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return Err(DecimalError::NotDigits);
        }
        n = n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(b - b'0')))
            .ok_or(DecimalError::Overflow)?;
    }
    Ok(n)
}

/// Why [`parse_decimal`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DecimalError {
    /// Empty, or a byte that is not a DIGIT.
    NotDigits,
    /// More than u64::MAX.
    Overflow,
}

/// Writes `n` in decimal into `out` without going through `fmt`.
pub(crate) fn put_decimal(out: &mut bytes::BytesMut, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_is_strict() {
        assert_eq!(parse_decimal(b"0"), Ok(0));
        assert_eq!(parse_decimal(b"007"), Ok(7));
        assert_eq!(parse_decimal(b"18446744073709551615"), Ok(u64::MAX));
        assert_eq!(
            parse_decimal(b"18446744073709551616"),
            Err(DecimalError::Overflow)
        );
        for bad in [
            &b""[..],
            b"+5",
            b"-5",
            b"1_0",
            b"5 ",
            b" 5",
            b"0x10",
            b"5a",
            b"1,0",
        ] {
            assert_eq!(parse_decimal(bad), Err(DecimalError::NotDigits), "{bad:?}");
        }
    }

    #[test]
    fn trims_and_splits() {
        assert_eq!(trim_ows(b" \t a b \t"), b"a b");
        assert_eq!(trim_ows(b"  "), b"");
        let v: Vec<&[u8]> = list_elements(b" a, ,b ,").collect();
        assert_eq!(v, vec![&b"a"[..], b"", b"b", b""]);
    }

    #[test]
    fn decimal_writer() {
        let mut out = bytes::BytesMut::new();
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            out.clear();
            put_decimal(&mut out, n);
            assert_eq!(&out[..], n.to_string().as_bytes());
        }
    }
}
