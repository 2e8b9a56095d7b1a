//! HTTP/1.1 wire pieces of the simulator: request heads, request body framing (including a
//! chunked decoder) and response heads.

use std::fmt;

/// Largest request head (request line + headers + blank line), in bytes.
/// Past this: 431 and close.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header fields in one request head. Past this: 431 and close.
pub const MAX_HEADERS: usize = 128;
/// Longest chunk-size line or trailer line (chunk extensions included), in bytes.
/// Past this: 400 and close.
pub const MAX_CHUNK_LINE: usize = 4 * 1024;
/// Most hex digits of a chunk size (16 fill a u64). Past this: 400 and close.
pub const MAX_CHUNK_SIZE_DIGITS: u8 = 16;

/// Why a request could not be read. Each maps to one status, and the connection closes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// The head is larger than [`MAX_HEAD_BYTES`] or has more than [`MAX_HEADERS`] fields: 431.
    HeadTooLarge,
    /// The head or its framing is malformed: 400, with the reason.
    Malformed(String),
    /// A transfer coding other than `chunked`: 501.
    UnsupportedCoding(String),
}

impl RequestError {
    /// The status code this error is answered with.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::HeadTooLarge => 431,
            RequestError::Malformed(_) => 400,
            RequestError::UnsupportedCoding(_) => 501,
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::HeadTooLarge => write!(f, "request head too large"),
            RequestError::Malformed(why) => write!(f, "malformed request: {why}"),
            RequestError::UnsupportedCoding(c) => write!(f, "unsupported transfer coding {c:?}"),
        }
    }
}

/// How the request body is delimited (RFC 9112 section 6.3, request side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody {
    /// No body.
    None,
    /// `Content-Length: len`.
    Length {
        /// Body bytes.
        len: u64,
    },
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// A parsed request head. Owns its strings: it outlives the read buffer it came from.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// Method as sent (`GET`, `POST`, ...).
    pub method: String,
    /// Request target as sent, query included.
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    /// Header fields in order, names as sent; values lossily decoded as UTF-8.
    pub headers: Vec<(String, String)>,
    /// Bytes of the head, request line through the blank line.
    pub head_len: usize,
    /// Body framing.
    pub body: RequestBody,
    /// The client allows the connection to stay open after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    /// `Last-Event-ID`, when sent.
    pub last_event_id: Option<String>,
}

/// Finds the end of a request head in `buf`, resuming the scan at `*scanned` (bytes already
/// known to hold no end of head), so a head arriving one byte at a time is scanned once.
/// Returns the head length (through the blank line) when complete. Accepts CRLF and bare LF
/// line ends, as httparse does.
pub fn find_head_end(buf: &[u8], scanned: &mut usize) -> Option<usize> {
    // An end of head is "\n\n" or "\n\r\n"; back up 2 bytes so one split across reads is seen.
    let start = scanned.saturating_sub(2);
    for nl in memchr::memchr_iter(b'\n', &buf[start..]) {
        let i = start + nl;
        match buf.get(i + 1) {
            Some(b'\n') => return Some(i + 2),
            Some(b'\r') if buf.get(i + 2) == Some(&b'\n') => return Some(i + 3),
            _ => {}
        }
    }
    *scanned = buf.len();
    None
}

/// Parses a complete request head `buf[..head_len]` (as found by [`find_head_end`]).
///
/// Framing rules applied, in order (RFC 9112 section 6.3 for requests):
/// 1. `Transfer-Encoding` together with `Content-Length` is rejected (400): a smuggling form.
/// 2. `Transfer-Encoding` must be exactly one field whose value is `chunked`
///    (case-insensitive); `chunked` not last is 400, any other coding is 501.
/// 3. `Content-Length` must be ASCII digits; several fields or a list must all agree (else 400).
/// 4. Otherwise there is no body.
pub fn parse_head(buf: &[u8], head_len: usize) -> Result<RequestHead, RequestError> {
    let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut storage);
    let status = req.parse(&buf[..head_len]).map_err(|e| match e {
        httparse::Error::TooManyHeaders => RequestError::HeadTooLarge,
        other => RequestError::Malformed(other.to_string()),
    })?;
    if !status.is_complete() {
        return Err(RequestError::Malformed("incomplete head".into()));
    }
    let method = req.method.unwrap_or_default().to_string();
    let target = req.path.unwrap_or_default().to_string();
    let version_minor = req.version.unwrap_or(1);

    let mut headers = Vec::with_capacity(req.headers.len());
    let mut content_length: Option<u64> = None;
    let mut transfer_encoding: Option<String> = None;
    let mut connection_close = false;
    let mut connection_keep_alive = false;
    let mut expect_continue = false;
    let mut last_event_id = None;
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value).into_owned();
        if h.name.eq_ignore_ascii_case("content-length") {
            for part in value.split(',') {
                let n = super::query::parse_u64(part.trim_matches([' ', '\t']))
                    .ok_or_else(|| RequestError::Malformed(format!("content-length {value:?}")))?;
                if content_length.is_some_and(|prev| prev != n) {
                    return Err(RequestError::Malformed(
                        "conflicting content-length values".into(),
                    ));
                }
                content_length = Some(n);
            }
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if transfer_encoding.is_some() {
                return Err(RequestError::Malformed(
                    "more than one transfer-encoding field".into(),
                ));
            }
            transfer_encoding = Some(value.clone());
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',') {
                let token = token.trim();
                connection_close |= token.eq_ignore_ascii_case("close");
                connection_keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        } else if h.name.eq_ignore_ascii_case("expect") {
            expect_continue |= value.trim().eq_ignore_ascii_case("100-continue");
        } else if h.name.eq_ignore_ascii_case("last-event-id") && last_event_id.is_none() {
            last_event_id = Some(value.clone());
        }
        headers.push((h.name.to_string(), value));
    }

    // Rule 1.
    if transfer_encoding.is_some() && content_length.is_some() {
        return Err(RequestError::Malformed(
            "both transfer-encoding and content-length".into(),
        ));
    }
    let body = if let Some(te) = transfer_encoding {
        // Rule 2.
        let codings: Vec<&str> = te.split(',').map(|c| c.trim()).collect();
        match codings.as_slice() {
            [only] if only.eq_ignore_ascii_case("chunked") => RequestBody::Chunked,
            many if many.iter().any(|c| c.eq_ignore_ascii_case("chunked")) => {
                return Err(RequestError::Malformed(format!(
                    "transfer-encoding {te:?}: chunked must be the only coding"
                )))
            }
            _ => return Err(RequestError::UnsupportedCoding(te)),
        }
    } else if let Some(len) = content_length {
        // Rule 3.
        if len == 0 {
            RequestBody::None
        } else {
            RequestBody::Length { len }
        }
    } else {
        // Rule 4.
        RequestBody::None
    };

    let keep_alive = if version_minor == 0 {
        connection_keep_alive && !connection_close
    } else {
        !connection_close
    };
    Ok(RequestHead {
        method,
        target,
        version_minor,
        headers,
        head_len,
        body,
        keep_alive,
        expect_continue: expect_continue && body != RequestBody::None,
        last_event_id,
    })
}

/// Position inside the chunked body grammar (RFC 9112 section 7.1):
/// `*(chunk-size [ext] CRLF data CRLF) 0 [ext] CRLF *(trailer-field CRLF) CRLF`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading the hex digits of a chunk size.
    Size {
        /// Value so far.
        size: u64,
        /// Digits so far.
        digits: u8,
    },
    /// After the size: skipping whitespace and extensions until CR.
    Extension {
        /// The chunk's size.
        size: u64,
        /// Bytes of the line so far (bounded by [`MAX_CHUNK_LINE`]).
        line: usize,
    },
    /// Saw the CR ending the size line; an LF must follow.
    SizeLf {
        /// The chunk's size.
        size: u64,
    },
    /// Inside chunk data.
    Data {
        /// Data bytes left in this chunk.
        remaining: u64,
    },
    /// After chunk data: CR expected.
    DataCr,
    /// After chunk data and CR: LF expected.
    DataLf,
    /// At the start of a trailer line (or of the final empty line).
    TrailerStart,
    /// Inside a trailer field line.
    TrailerLine {
        /// Bytes of the line so far (bounded by [`MAX_CHUNK_LINE`]).
        line: usize,
    },
    /// Saw the CR of a trailer line; LF expected.
    TrailerLf {
        /// The line was empty: the body ends with this LF.
        last: bool,
    },
    /// The body is complete.
    Done,
}

/// Incremental decoder of a chunked body. Feed it raw bytes in any split; it hands out
/// data slices and stops at the end of the body (bytes after it are not consumed).
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: ChunkState,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        Self {
            state: ChunkState::Size { size: 0, digits: 0 },
        }
    }

    /// True once the final CRLF was consumed.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }

    /// Decodes from `input`, calling `on_data` with every run of body data, and returns how
    /// many bytes of `input` were consumed (all of them unless the body ended inside).
    pub fn decode(
        &mut self,
        input: &[u8],
        mut on_data: impl FnMut(&[u8]),
    ) -> Result<usize, RequestError> {
        use ChunkState::*;
        let bad = |why: &str| Err(RequestError::Malformed(format!("chunked body: {why}")));
        let mut i = 0;
        while i < input.len() {
            let b = input[i];
            self.state = match self.state {
                Size { size, digits } => match hex_value(b) {
                    Some(v) => {
                        if digits == MAX_CHUNK_SIZE_DIGITS {
                            return bad("chunk size has more than 16 hex digits");
                        }
                        Size {
                            size: size << 4 | u64::from(v),
                            digits: digits + 1,
                        }
                    }
                    None if digits == 0 => return bad("chunk size line without digits"),
                    None => match b {
                        b'\r' => SizeLf { size },
                        b';' | b' ' | b'\t' => Extension { size, line: 1 },
                        _ => return bad("unexpected byte after chunk size"),
                    },
                },
                Extension { size, line } => match b {
                    b'\r' => SizeLf { size },
                    b'\n' => return bad("bare LF ending a chunk size line"),
                    _ if line >= MAX_CHUNK_LINE => return bad("chunk extension too long"),
                    _ => Extension {
                        size,
                        line: line + 1,
                    },
                },
                SizeLf { size } => match b {
                    b'\n' if size == 0 => TrailerStart,
                    b'\n' => Data { remaining: size },
                    _ => return bad("CR not followed by LF after chunk size"),
                },
                Data { remaining } => {
                    let avail = (input.len() - i) as u64;
                    let take = remaining.min(avail) as usize;
                    on_data(&input[i..i + take]);
                    i += take;
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        DataCr
                    } else {
                        Data { remaining: left }
                    };
                    continue;
                }
                DataCr => match b {
                    b'\r' => DataLf,
                    _ => return bad("chunk data not followed by CRLF"),
                },
                DataLf => match b {
                    b'\n' => Size { size: 0, digits: 0 },
                    _ => return bad("chunk data not followed by CRLF"),
                },
                TrailerStart => match b {
                    b'\r' => TrailerLf { last: true },
                    b'\n' => return bad("bare LF in trailer section"),
                    _ => TrailerLine { line: 1 },
                },
                TrailerLine { line } => match b {
                    b'\r' => TrailerLf { last: false },
                    b'\n' => return bad("bare LF in trailer section"),
                    _ if line >= MAX_CHUNK_LINE => return bad("trailer line too long"),
                    _ => TrailerLine { line: line + 1 },
                },
                TrailerLf { last } => match b {
                    b'\n' if last => {
                        self.state = Done;
                        return Ok(i + 1);
                    }
                    b'\n' => TrailerStart,
                    _ => return bad("CR not followed by LF in trailer section"),
                },
                Done => return Ok(i),
            };
            i += 1;
        }
        Ok(i)
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Body decoding state of one request: what is left to read.
#[derive(Debug, Clone)]
pub enum BodyDecoder {
    /// `Content-Length` body.
    Length {
        /// Bytes still to come.
        remaining: u64,
    },
    /// Chunked body.
    Chunked {
        /// The decoder's position.
        decoder: ChunkedDecoder,
    },
}

impl BodyDecoder {
    /// The decoder for a request's framing (None when it has no body).
    pub fn for_request(body: RequestBody) -> Option<Self> {
        match body {
            RequestBody::None => None,
            RequestBody::Length { len } => Some(BodyDecoder::Length { remaining: len }),
            RequestBody::Chunked => Some(BodyDecoder::Chunked {
                decoder: ChunkedDecoder::new(),
            }),
        }
    }

    /// True once the whole body was seen.
    pub fn is_done(&self) -> bool {
        match self {
            BodyDecoder::Length { remaining } => *remaining == 0,
            BodyDecoder::Chunked { decoder } => decoder.is_done(),
        }
    }

    /// Decodes raw bytes; returns how many were consumed (the rest belong to the next request).
    pub fn decode(
        &mut self,
        input: &[u8],
        mut on_data: impl FnMut(&[u8]),
    ) -> Result<usize, RequestError> {
        match self {
            BodyDecoder::Length { remaining } => {
                let take = (*remaining).min(input.len() as u64) as usize;
                if take > 0 {
                    on_data(&input[..take]);
                }
                *remaining -= take as u64;
                Ok(take)
            }
            BodyDecoder::Chunked { decoder } => decoder.decode(input, on_data),
        }
    }
}

/// The reason phrase of a status code ("" when unknown: the phrase is optional).
pub fn reason(code: u16) -> &'static str {
    match code {
        100 => "Continue",
        101 => "Switching Protocols",
        102 => "Processing",
        103 => "Early Hints",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        413 => "Content Too Large",
        414 => "URI Too Long",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseBody {
    /// No body and no framing header (1xx, 204, 304).
    Empty,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Neither: the body ends at close (the head says `Connection: close`).
    UntilClose,
}

/// Appends a response head. `close` adds `Connection: close` (implied by `UntilClose`).
pub fn write_head(
    out: &mut Vec<u8>,
    code: u16,
    content_type: Option<&str>,
    body: ResponseBody,
    close: bool,
    extra: &[(&str, &str)],
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_u64(out, u64::from(code));
    out.push(b' ');
    out.extend_from_slice(reason(code).as_bytes());
    out.extend_from_slice(b"\r\n");
    if let Some(ct) = content_type {
        out.extend_from_slice(b"Content-Type: ");
        out.extend_from_slice(ct.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    match body {
        ResponseBody::Empty | ResponseBody::UntilClose => {}
        ResponseBody::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            push_u64(out, n);
            out.extend_from_slice(b"\r\n");
        }
        ResponseBody::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
    }
    for (name, value) in extra {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if close || body == ResponseBody::UntilClose {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends the decimal digits of `v`.
pub fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends the lowercase hex digits of `v` (a chunk size).
pub fn push_hex(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[(v & 15) as usize];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<RequestHead, RequestError> {
        let mut scanned = 0;
        let len = find_head_end(raw, &mut scanned).expect("complete head");
        parse_head(raw, len)
    }

    #[test]
    fn head_end_at_every_split() {
        let raw = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\nBODY";
        for split in 0..raw.len() {
            let mut scanned = 0;
            let first = find_head_end(&raw[..split], &mut scanned);
            let end = first.or_else(|| find_head_end(raw, &mut scanned));
            assert_eq!(end, Some(raw.len() - 4), "split {split}");
        }
        let mut s = 0;
        assert_eq!(find_head_end(b"GET / HTTP/1.1\n\nx", &mut s), Some(16));
    }

    #[test]
    fn head_fields() {
        let h = parse(
            b"POST /echo?a=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\
              Expect: 100-continue\r\nLast-Event-ID: 7\r\n\r\n",
        )
        .unwrap();
        assert_eq!(h.method, "POST");
        assert_eq!(h.target, "/echo?a=1");
        assert_eq!(h.body, RequestBody::Length { len: 5 });
        assert!(h.keep_alive && h.expect_continue);
        assert_eq!(h.last_event_id.as_deref(), Some("7"));
        assert_eq!(h.headers[0], ("Host".to_string(), "h".to_string()));
        assert_eq!(h.headers.len(), 4);
    }

    #[test]
    fn keep_alive_rules() {
        assert!(
            !parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(!parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
        assert!(
            parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .unwrap()
                .keep_alive
        );
    }

    #[test]
    fn framing_rules() {
        let chunked = parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n").unwrap();
        assert_eq!(chunked.body, RequestBody::Chunked);
        let e =
            parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n");
        assert_eq!(e.unwrap_err().status(), 400);
        let e = parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n");
        assert_eq!(e.unwrap_err().status(), 400);
        let e = parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n");
        assert_eq!(e.unwrap_err().status(), 501);
        let e = parse(b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n");
        assert_eq!(e.unwrap_err().status(), 400);
        let e = parse(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n");
        assert_eq!(e.unwrap_err().status(), 400);
        let same = parse(b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n").unwrap();
        assert_eq!(same.body, RequestBody::Length { len: 3 });
        let zero = parse(b"POST / HTTP/1.1\r\nContent-Length: 0\r\nExpect: 100-continue\r\n\r\n");
        let zero = zero.unwrap();
        assert_eq!(zero.body, RequestBody::None);
        assert!(!zero.expect_continue);
    }

    /// Obviously right oracle: parse a complete chunked body at once.
    fn oracle(input: &[u8]) -> Option<(Vec<u8>, usize)> {
        let mut out = Vec::new();
        let mut i = 0;
        loop {
            let line_end = i + input[i..].windows(2).position(|w| w == b"\r\n")?;
            let line = std::str::from_utf8(&input[i..line_end]).ok()?;
            let hex = line.split([';', ' ', '\t']).next()?;
            let size = usize::from_str_radix(hex, 16).ok()?;
            i = line_end + 2;
            if size == 0 {
                loop {
                    let end = i + input[i..].windows(2).position(|w| w == b"\r\n")?;
                    let empty = end == i;
                    i = end + 2;
                    if empty {
                        return Some((out, i));
                    }
                }
            }
            out.extend_from_slice(&input[i..i + size]);
            i += size;
            if &input[i..i + 2] != b"\r\n" {
                return None;
            }
            i += 2;
        }
    }

    #[test]
    fn chunked_every_split_matches_oracle() {
        let bodies: [&[u8]; 4] = [
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT",
            b"3;ext=1\r\nabc\r\n0\r\nTrailer: x\r\n\r\n",
            b"A\r\n0123456789\r\n1 \r\nz\r\n0\r\n\r\n",
            b"0\r\n\r\n",
        ];
        for body in bodies {
            let (want, want_len) = oracle(body).unwrap();
            // Two splits: every pair of cut points.
            for a in 0..=body.len() {
                for b in a..=body.len() {
                    let mut d = ChunkedDecoder::new();
                    let mut got = Vec::new();
                    let mut consumed = 0;
                    for piece in [&body[..a], &body[a..b], &body[b..]] {
                        if d.is_done() {
                            break;
                        }
                        consumed += d.decode(piece, |s| got.extend_from_slice(s)).unwrap();
                    }
                    assert!(d.is_done(), "{body:?} split {a},{b}");
                    assert_eq!(got, want);
                    assert_eq!(consumed, want_len);
                }
            }
            // One byte at a time, with padding after.
            let mut d = ChunkedDecoder::new();
            let mut got = Vec::new();
            for (i, byte) in body.iter().enumerate() {
                let n = d.decode(std::slice::from_ref(byte), |s| got.extend_from_slice(s));
                assert_eq!(n.unwrap(), usize::from(i < want_len));
            }
            assert_eq!(got, want);
        }
    }

    #[test]
    fn chunked_rejects() {
        for bad in [
            &b"x\r\n"[..],
            b"5\nhello",
            b"5\r\nhelloX",
            b"11111111111111111\r\n",
            b"0\r\nTrailer\n",
        ] {
            let mut d = ChunkedDecoder::new();
            assert!(d.decode(bad, |_| {}).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn heads_and_numbers() {
        let mut out = Vec::new();
        write_head(
            &mut out,
            200,
            Some("text/plain"),
            ResponseBody::Length(3),
            false,
            &[],
        );
        assert_eq!(
            out,
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\n"
        );
        out.clear();
        write_head(
            &mut out,
            299,
            None,
            ResponseBody::UntilClose,
            false,
            &[("X-A", "b")],
        );
        assert_eq!(out, b"HTTP/1.1 299 \r\nX-A: b\r\nConnection: close\r\n\r\n");
        out.clear();
        push_u64(&mut out, 0);
        push_u64(&mut out, u64::MAX);
        push_hex(&mut out, 0x4000);
        assert_eq!(out, b"0184467440737095516154000");
    }
}
