//! The HTTP/1.1 side of an SSE response: the head (status, framing) and the body decoder.
//!
//! Pure code over byte slices; the socket loop lives in `driver.rs`. Decoding is
//! incremental and zero-copy: the body decoder hands out sub-slices of its input.
//!
//! Body framing of a response (RFC 9112 section 6.3, the rules that apply to a response to
//! a GET, in order):
//! 1. `Transfer-Encoding` whose last coding is `chunked`: chunked.
//! 2. `Transfer-Encoding` without it: until the connection closes.
//! 3. `Content-Length` (one valid value, or identical repeats): that many bytes.
//! 4. Otherwise: until the connection closes.

use memchr::memchr;

/// Largest response head (bytes) buffered while waiting for its end. Past this the stream
/// fails with [`HttpError::HeadTooLarge`].
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most header fields parsed in a response head; more fail the stream.
const MAX_HEADERS: usize = 64;
/// Most hex digits of a chunk size (16: any `u64`). More fail the stream.
const MAX_CHUNK_SIZE_DIGITS: u8 = 16;

/// What the server did wrong (every one ends the connection; the stream counts an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// No end of head within [`MAX_HEAD_BYTES`].
    HeadTooLarge,
    /// httparse rejected the head.
    BadHead(String),
    /// A status other than 200 (EventSource fails the connection for good).
    Status(u16),
    /// A Content-Type other than `text/event-stream` (idem).
    ContentType(String),
    /// An unusable Content-Length.
    BadLength,
    /// A malformed chunk (what was expected, and at which chunk-parser state).
    BadChunk(&'static str),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::HeadTooLarge => {
                write!(f, "response head larger than {MAX_HEAD_BYTES} bytes")
            }
            HttpError::BadHead(e) => write!(f, "malformed response head: {e}"),
            HttpError::Status(s) => write!(f, "status {s}"),
            HttpError::ContentType(t) => write!(f, "content-type {t:?}"),
            HttpError::BadLength => write!(f, "invalid content-length"),
            HttpError::BadChunk(what) => write!(f, "malformed chunked body: {what}"),
        }
    }
}

/// Where the end-of-head scan stands, so a head arriving in pieces is scanned once.
#[derive(Debug, Clone, Default)]
pub struct HeadScan {
    /// Offset in the head buffer where the next scan for LF starts.
    from: usize,
    /// Offset of the last LF seen (the end of the previous line).
    last_lf: Option<usize>,
}

impl HeadScan {
    /// Looks for the blank line that ends a head in `buf` (the whole head so far), resuming
    /// where the previous call stopped. Returns the head's length (blank line included).
    pub fn find_end(&mut self, buf: &[u8]) -> Option<usize> {
        while let Some(i) = memchr(b'\n', &buf[self.from..]) {
            let lf = self.from + i;
            // A LF ends the head when the line it ends is empty: "\n\n" or "\n\r\n".
            let empty = match self.last_lf {
                Some(p) => lf - p == 1 || (lf - p == 2 && buf[lf - 1] == b'\r'),
                None => false,
            };
            self.from = lf + 1;
            self.last_lf = Some(lf);
            if empty {
                return Some(lf + 1);
            }
        }
        self.from = buf.len();
        None
    }
}

/// How the body of a response is framed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// `Content-Length`: this many bytes are still to come.
    Length {
        /// Bytes not yet received.
        remaining: u64,
    },
    /// `Transfer-Encoding: chunked`.
    Chunked {
        /// Position in the chunk grammar.
        state: Chunk,
    },
    /// Neither: the body ends when the connection closes (a clean end, not an error).
    UntilClose,
}

/// Position in the chunked grammar (RFC 9112 section 7.1), one variant per position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// In the chunk-size hex digits.
    Size {
        /// Value so far.
        size: u64,
        /// Digits so far.
        digits: u8,
    },
    /// After the size: whitespace and chunk extensions, ignored up to CR.
    Ext {
        /// The chunk's size.
        size: u64,
    },
    /// After the size line's CR: LF expected.
    SizeLf {
        /// The chunk's size.
        size: u64,
    },
    /// In chunk data.
    Data {
        /// Data bytes still to come in this chunk.
        remaining: u64,
    },
    /// After chunk data: CR expected.
    DataCr,
    /// After chunk data and CR: LF expected.
    DataLf,
    /// After the last-chunk line, at the start of a trailer line (or of the final CRLF).
    TrailerStart,
    /// Inside a trailer field line, up to its CR.
    TrailerLine,
    /// After a trailer line's CR: LF expected.
    TrailerLf,
    /// After the final CR: LF expected, then the body is complete.
    EndLf,
    /// Complete.
    Done,
}

/// What the body decoder found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyProgress {
    /// Everything was consumed and the body goes on.
    More,
    /// The body is complete; bytes after it in the input were not body bytes.
    Complete,
}

/// The parts of a 200 `text/event-stream` head the client uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// How the body is framed.
    pub body: Body,
}

/// Parses a complete response head (`head` ends with its blank line) and checks it is an
/// SSE response: status 200 and `Content-Type: text/event-stream`.
pub fn parse_head(head: &[u8]) -> Result<ResponseHead, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(HttpError::BadHead("incomplete".into())),
        Err(e) => return Err(HttpError::BadHead(e.to_string())),
    }
    let status = resp.code.unwrap_or(0);
    if status != 200 {
        return Err(HttpError::Status(status));
    }
    let mut chunked = None;
    let mut length: Option<u64> = None;
    let mut content_type_ok = false;
    let mut content_type = String::new();
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // The last coding of the last Transfer-Encoding field decides.
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or(b"");
            chunked = Some(trim(last).eq_ignore_ascii_case(b"chunked"));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let v = crate::load::sse::parse_digits(trim(h.value)).ok_or(HttpError::BadLength)?;
            if length.is_some_and(|l| l != v) {
                return Err(HttpError::BadLength);
            }
            length = Some(v);
        } else if h.name.eq_ignore_ascii_case("content-type") {
            let media = h.value.split(|&b| b == b';').next().unwrap_or(b"");
            content_type_ok = trim(media).eq_ignore_ascii_case(b"text/event-stream");
            content_type = String::from_utf8_lossy(h.value).into_owned();
        }
    }
    if !content_type_ok {
        return Err(HttpError::ContentType(content_type));
    }
    let body = match (chunked, length) {
        (Some(true), _) => Body::Chunked {
            state: Chunk::Size { size: 0, digits: 0 },
        },
        (Some(false), _) => Body::UntilClose,
        (None, Some(remaining)) => Body::Length { remaining },
        (None, None) => Body::UntilClose,
    };
    Ok(ResponseHead { body })
}

/// `s` without leading and trailing spaces and tabs.
fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |e| e + 1);
    &s[start..end]
}

impl Body {
    /// Decodes the next piece of the body, handing every payload slice to `payload`.
    ///
    /// Chunk data is handed out in place (no copy): one call per contiguous run in `input`.
    pub fn decode(
        &mut self,
        input: &[u8],
        payload: &mut impl FnMut(&[u8]),
    ) -> Result<BodyProgress, HttpError> {
        match self {
            Body::UntilClose => {
                if !input.is_empty() {
                    payload(input);
                }
                Ok(BodyProgress::More)
            }
            Body::Length { remaining } => {
                let take = (*remaining).min(input.len() as u64) as usize;
                if take > 0 {
                    payload(&input[..take]);
                }
                *remaining -= take as u64;
                Ok(if *remaining == 0 {
                    BodyProgress::Complete
                } else {
                    BodyProgress::More
                })
            }
            Body::Chunked { state } => decode_chunked(state, input, payload),
        }
    }
}

/// The chunked decoder: one byte-state step per framing byte, one slice per data run.
fn decode_chunked(
    state: &mut Chunk,
    input: &[u8],
    payload: &mut impl FnMut(&[u8]),
) -> Result<BodyProgress, HttpError> {
    let mut pos = 0;
    while pos < input.len() {
        if let Chunk::Data { remaining } = state {
            let take = (*remaining).min((input.len() - pos) as u64) as usize;
            payload(&input[pos..pos + take]);
            pos += take;
            *remaining -= take as u64;
            if *remaining == 0 {
                *state = Chunk::DataCr;
            }
            continue;
        }
        let b = input[pos];
        pos += 1;
        *state = match *state {
            Chunk::Size { size, digits } => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    if digits == MAX_CHUNK_SIZE_DIGITS {
                        return Err(HttpError::BadChunk("chunk size longer than 16 hex digits"));
                    }
                    let d = (b as char).to_digit(16).unwrap_or(0) as u64;
                    Chunk::Size {
                        size: size << 4 | d,
                        digits: digits + 1,
                    }
                }
                _ if digits == 0 => return Err(HttpError::BadChunk("chunk size expected")),
                b'\r' => Chunk::SizeLf { size },
                b';' | b' ' | b'\t' => Chunk::Ext { size },
                _ => return Err(HttpError::BadChunk("hex digit, extension or CR expected")),
            },
            Chunk::Ext { size } => match b {
                b'\r' => Chunk::SizeLf { size },
                b'\n' => return Err(HttpError::BadChunk("bare LF in chunk extension")),
                _ => Chunk::Ext { size },
            },
            Chunk::SizeLf { size } => match b {
                b'\n' if size == 0 => Chunk::TrailerStart,
                b'\n' => Chunk::Data { remaining: size },
                _ => return Err(HttpError::BadChunk("LF expected after chunk size")),
            },
            Chunk::DataCr => match b {
                b'\r' => Chunk::DataLf,
                _ => return Err(HttpError::BadChunk("CR expected after chunk data")),
            },
            Chunk::DataLf => match b {
                b'\n' => Chunk::Size { size: 0, digits: 0 },
                _ => return Err(HttpError::BadChunk("LF expected after chunk data")),
            },
            Chunk::TrailerStart => match b {
                b'\r' => Chunk::EndLf,
                b'\n' => return Err(HttpError::BadChunk("bare LF in trailer")),
                _ => Chunk::TrailerLine,
            },
            Chunk::TrailerLine => match b {
                b'\r' => Chunk::TrailerLf,
                b'\n' => return Err(HttpError::BadChunk("bare LF in trailer")),
                _ => Chunk::TrailerLine,
            },
            Chunk::TrailerLf => match b {
                b'\n' => Chunk::TrailerStart,
                _ => return Err(HttpError::BadChunk("LF expected after trailer field")),
            },
            Chunk::EndLf => match b {
                b'\n' => {
                    *state = Chunk::Done;
                    return Ok(BodyProgress::Complete);
                }
                _ => return Err(HttpError::BadChunk("LF expected after last chunk")),
            },
            Chunk::Done => return Ok(BodyProgress::Complete),
            Chunk::Data { .. } => unreachable!("handled above"),
        };
    }
    Ok(if *state == Chunk::Done {
        BodyProgress::Complete
    } else {
        BodyProgress::More
    })
}

#[cfg(test)]
mod tests;
