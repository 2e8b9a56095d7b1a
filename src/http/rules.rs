//! The rules of RFC 9112 that httparse leaves to its caller, and the diagnosis of what exactly
//! was wrong when httparse refuses a head (it only says "invalid header name" and the like).
//! Kept apart from `head` so that the parse path reads straight through.

use super::error::HttpError;
use super::head::{HeadKind, HeadLimits, Method};
use super::syntax::{is_tchar, is_token};

/// The start line (without its line end) and where it begins, skipping leading empty lines.
pub(crate) fn start_line(bytes: &[u8]) -> (usize, &[u8]) {
    let begin = bytes
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(bytes.len());
    let rest = &bytes[begin..];
    let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
    let line = &rest[..end];
    (begin, line.strip_suffix(b"\r").unwrap_or(line))
}

/// Turns httparse's coarse error into the specific [`HttpError`], by looking at the bytes again.
/// Only runs on the error path.
pub(crate) fn diagnose(
    err: httparse::Error,
    bytes: &[u8],
    kind: HeadKind,
    limits: &HeadLimits,
) -> HttpError {
    let (line_start, line) = start_line(bytes);
    match err {
        httparse::Error::TooManyHeaders => HttpError::TooManyHeaders {
            kind,
            limit: limits.max_headers,
        },
        httparse::Error::Version => {
            let version = match kind {
                // What follows the second SP: a target with a space in it puts junk here.
                HeadKind::Request => line.splitn(3, |&b| b == b' ').nth(2).unwrap_or(&[]),
                HeadKind::Response => line.split(|&b| b == b' ').next().unwrap_or(&[]),
            };
            match version {
                [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
                    if major.is_ascii_digit() && minor.is_ascii_digit() =>
                {
                    HttpError::UnsupportedVersion {
                        kind,
                        major: major - b'0',
                        minor: minor - b'0',
                    }
                }
                _ => HttpError::InvalidVersion { kind },
            }
        }
        httparse::Error::Token => {
            let method = line.split(|&b| b == b' ').next().unwrap_or(&[]);
            let first = bytes.get(line_start).copied().unwrap_or(b' ');
            if kind == HeadKind::Request && !is_tchar(first) {
                // The same verdict the scanner gives when this byte arrives alone.
                HttpError::NotHttp { byte: first }
            } else if is_token(method) && line.len() > method.len() {
                HttpError::InvalidTarget
            } else {
                HttpError::InvalidMethod
            }
        }
        httparse::Error::Status => HttpError::InvalidStatusLine,
        httparse::Error::NewLine => HttpError::InvalidLineEnding { kind },
        httparse::Error::HeaderValue => HttpError::InvalidHeaderValue { kind },
        httparse::Error::HeaderName => {
            let fields = bytes.get(line_start + line.len()..).unwrap_or(&[]);
            diagnose_field_name(fields, kind)
        }
    }
}

/// Finds the first field line httparse refused for its name, and says why.
fn diagnose_field_name(fields: &[u8], kind: HeadKind) -> HttpError {
    // `fields` starts at the start line's CRLF: the first piece is empty.
    for (index, raw) in fields.split(|&b| b == b'\n').skip(1).enumerate() {
        let line_no = index + 1;
        let text = raw.strip_suffix(b"\r").unwrap_or(raw);
        if text.is_empty() {
            break;
        }
        if text[0] == b' ' || text[0] == b'\t' {
            return HttpError::ObsFold {
                kind,
                line: line_no,
            };
        }
        let Some(colon) = memchr::memchr(b':', text) else {
            return HttpError::InvalidHeaderName {
                kind,
                line: line_no,
            };
        };
        let name = &text[..colon];
        if name.last().is_some_and(|&b| b == b' ' || b == b'\t') {
            return HttpError::WhitespaceBeforeColon {
                kind,
                line: line_no,
            };
        }
        if !is_token(name) {
            return HttpError::InvalidHeaderName {
                kind,
                line: line_no,
            };
        }
    }
    HttpError::InvalidHeaderName { kind, line: 0 }
}

/// RFC 9112 3.2: request-target = origin-form / absolute-form / authority-form / asterisk-form.
/// CONNECT takes only authority-form (3.2.3); `*` is only for OPTIONS (3.2.4).
pub(crate) fn check_target_form(method: Method, target: &[u8]) -> Result<(), HttpError> {
    let ok = match (method, target.first()) {
        (Method::Connect, _) => is_authority(target) && target.contains(&b':'),
        (_, Some(b'/')) => true,
        (Method::Options, Some(b'*')) => target == b"*",
        _ => split_absolute_form(target).is_some(),
    };
    if ok {
        Ok(())
    } else {
        Err(HttpError::InvalidTarget)
    }
}

/// Splits an absolute-form target `scheme://authority[path][?query]` into its authority and
/// the rest (which may be empty or start with '?'). None for anything else, for an empty
/// authority (RFC 9110 4.2.1) and for userinfo (RFC 9110 4.2.4: treat as an error).
pub(crate) fn split_absolute_form(target: &[u8]) -> Option<(&[u8], &[u8])> {
    let colon = memchr::memchr(b':', target)?;
    let scheme = &target[..colon];
    let scheme_ok = scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    let rest = target[colon + 1..].strip_prefix(b"//")?;
    let authority_end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    (scheme_ok && !authority.is_empty() && is_authority(authority))
        .then_some((authority, &rest[authority_end..]))
}

/// Host values (RFC 9112 3.2): `uri-host [ ":" port ]`, or empty.
pub(crate) fn is_valid_host(host: &[u8]) -> bool {
    is_authority(host)
}

/// The bytes of `host [ ":" port ]` (RFC 3986 3.2.2): unreserved, pct-encoded, sub-delims, ':'
/// and the brackets of an IP literal. Excludes '@' (userinfo) and ',' (no host name or literal
/// contains one, and a list-splitting peer would read two hosts).
fn is_authority(s: &[u8]) -> bool {
    s.iter().all(|&b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'%'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b';'
                    | b'='
                    | b':'
                    | b'['
                    | b']'
            )
    })
}
