//! One connection: the HTTP/1.1 keep-alive request loop, `/small`, `/sse` and 404.
//!
//! Requests are read into one buffer per connection and parsed with httparse; bytes past a
//! head stay buffered for the next request (pipelining). Request bodies are read by
//! `Content-Length` and dropped; a chunked request body gets 501 and a close (no benchmark
//! sends one). Rules, in order: a head past [`MAX_HEAD_BYTES`] or [`MAX_HEADERS`] fields: 431
//! and close; a head httparse refuses, or `Content-Length` that is not digits or disagrees
//! with another one: 400 and close; `Transfer-Encoding` on a request: 501 and close.

use std::io;
use std::os::fd::AsRawFd;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use tether_perf::upstream::query::parse_u64;

use crate::params::TokioSseParams;
use crate::stream::serve_sse;

/// Longest request head (bytes, blank line included). Past this: 431 and close.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Most header fields of a request. Past this: 431 and close.
pub const MAX_HEADERS: usize = 128;
/// Bytes asked of each `read()`.
const READ_BYTES: usize = 4096;
/// Body length of `/small` (the bench's check and keep-alive path, as `sse-upstream`'s).
pub const SMALL_BODY_BYTES: usize = 100;

/// What the connection does after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Read the next request.
    KeepAlive,
    /// Close (FIN).
    Close,
    /// Close with RST (SO_LINGER 0).
    Reset,
    /// The peer is gone (a write failed): just drop the socket.
    Gone,
}

/// The request method, as far as the answers differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET (and POST: the body is dropped, the answer is the same).
    Get,
    /// HEAD: the head GET would get, no body.
    Head,
    /// Anything else: 405.
    Other,
}

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// Path and query, as sent.
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version_minor: u8,
    /// The `Last-Event-ID` header, when present.
    pub last_event_id: Option<String>,
    /// The client wants the connection closed after this response (`Connection: close`, or
    /// HTTP/1.0 without `Connection: keep-alive`).
    pub close: bool,
    /// `Content-Length` of the request body (0 without one).
    pub body_len: u64,
}

/// Why a request head cannot be served; each answer closes the connection.
#[derive(Debug)]
enum HeadError {
    /// Past [`MAX_HEAD_BYTES`] or [`MAX_HEADERS`]: 431.
    TooLarge,
    /// Malformed: 400, with what was wrong.
    Bad(&'static str),
    /// A request body framed by `Transfer-Encoding`: 501.
    Chunked,
    /// The socket failed or closed mid-head: no answer.
    Io,
}

/// A client connection and the bytes read from it but not used yet.
pub struct Conn {
    /// The socket.
    sock: TcpStream,
    /// Read, not yet consumed (the start of the next request when pipelined).
    buf: Vec<u8>,
}

impl Conn {
    /// Writes all of `bytes`: one `write()` unless the socket is full. Cancel-safe only in
    /// that a dropped call leaves a prefix of `bytes` written (no caller drops it).
    pub async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.sock.write_all(bytes).await
    }

    /// Reads (and drops) until the client closes or the socket fails.
    pub async fn wait_closed(&mut self) {
        let mut tmp = [0u8; 1024];
        while let Ok(n) = self.sock.read(&mut tmp).await {
            if n == 0 {
                return;
            }
        }
    }

    /// Reads one request head; None when the client closed cleanly between requests.
    async fn read_request(&mut self) -> Result<Option<Request>, HeadError> {
        // Where the end-of-head scan resumes: the last 3 bytes may start a split CRLFCRLF.
        let mut scanned = 0;
        loop {
            if let Some(end) = find_head_end(&self.buf, scanned) {
                let req = parse_head(&self.buf[..end])?;
                self.buf.drain(..end);
                return Ok(Some(req));
            }
            scanned = self.buf.len().saturating_sub(3);
            if self.buf.len() >= MAX_HEAD_BYTES {
                return Err(HeadError::TooLarge);
            }
            let len = self.buf.len();
            self.buf.resize(len + READ_BYTES, 0);
            let n = self.sock.read(&mut self.buf[len..]).await;
            self.buf.truncate(len + *n.as_ref().unwrap_or(&0));
            match n {
                Ok(0) if len == 0 => return Ok(None),
                Ok(0) | Err(_) => return Err(HeadError::Io),
                Ok(_) => {}
            }
        }
    }

    /// Reads and drops `len` request body bytes.
    async fn discard_body(&mut self, mut len: u64) -> io::Result<()> {
        let buffered = (self.buf.len() as u64).min(len);
        self.buf.drain(..buffered as usize);
        len -= buffered;
        let mut tmp = [0u8; READ_BYTES];
        while len > 0 {
            let want = (len as usize).min(tmp.len());
            match self.sock.read(&mut tmp[..want]).await? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => len -= n as u64,
            }
        }
        Ok(())
    }

    /// Sends a small text response (no body for HEAD).
    async fn simple(&mut self, status: &str, body: &str, close: bool, head_only: bool) -> Next {
        let mut out = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if !head_only {
            out.push_str(body);
        }
        match self.write(out.as_bytes()).await {
            Ok(()) if close => Next::Close,
            Ok(()) => Next::KeepAlive,
            Err(_) => Next::Gone,
        }
    }

    /// Makes the close an RST: SO_LINGER with a zero timeout.
    fn set_linger_zero(&self) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: the fd is this open socket's; the option value is a valid `linger` of the
        // size passed.
        unsafe {
            libc::setsockopt(
                self.sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    }
}

/// Offset just past the first CRLFCRLF at or after `from`.
fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| from + i + 4)
}

/// Parses a complete head (request line through the blank line).
fn parse_head(raw: &[u8]) -> Result<Request, HeadError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    match req.parse(raw) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(HeadError::Bad("incomplete head")),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Bad("malformed request head")),
    }
    let version_minor = req.version.unwrap_or(1);
    let method = match req.method.unwrap_or("") {
        "GET" | "POST" => Method::Get,
        "HEAD" => Method::Head,
        _ => Method::Other,
    };
    let mut last_event_id = None;
    let mut body_len: Option<u64> = None;
    let mut conn_close = false;
    let mut conn_keep_alive = false;
    for f in req.headers.iter() {
        let value = std::str::from_utf8(f.value).map_err(|_| HeadError::Bad("non-UTF-8 field"))?;
        if f.name.eq_ignore_ascii_case("last-event-id") {
            last_event_id = Some(value.to_string());
        } else if f.name.eq_ignore_ascii_case("content-length") {
            let n = parse_u64(value.trim()).ok_or(HeadError::Bad("Content-Length not digits"))?;
            if body_len.is_some_and(|m| m != n) {
                return Err(HeadError::Bad("Content-Length fields disagree"));
            }
            body_len = Some(n);
        } else if f.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HeadError::Chunked);
        } else if f.name.eq_ignore_ascii_case("connection") {
            for token in value.split(',').map(str::trim) {
                conn_close |= token.eq_ignore_ascii_case("close");
                conn_keep_alive |= token.eq_ignore_ascii_case("keep-alive");
            }
        }
    }
    Ok(Request {
        method,
        target: req.path.unwrap_or("/").to_string(),
        version_minor,
        last_event_id,
        close: conn_close || (version_minor == 0 && !conn_keep_alive),
        body_len: body_len.unwrap_or(0),
    })
}

/// The `/small` body: byte i is `i % 251`, as `sse-upstream` sends it.
fn small_response(close: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: \
         {SMALL_BODY_BYTES}\r\n{}\r\n",
        if close { "Connection: close\r\n" } else { "" }
    )
    .into_bytes();
    out.extend((0..SMALL_BODY_BYTES).map(|i| (i % 251) as u8));
    out
}

/// Serves one connection until it closes.
pub async fn serve(sock: TcpStream) {
    let mut conn = Conn {
        sock,
        buf: Vec::new(),
    };
    loop {
        let next = match conn.read_request().await {
            Ok(Some(req)) => match conn.discard_body(req.body_len).await {
                Ok(()) => respond(&mut conn, &req).await,
                Err(_) => Next::Gone,
            },
            Ok(None) | Err(HeadError::Io) => Next::Gone,
            Err(HeadError::TooLarge) => {
                let body = "request head too large\n";
                conn.simple("431 Request Header Fields Too Large", body, true, false)
                    .await
            }
            Err(HeadError::Bad(why)) => {
                conn.simple("400 Bad Request", &format!("{why}\n"), true, false)
                    .await
            }
            Err(HeadError::Chunked) => {
                let body = "request bodies with Transfer-Encoding are not supported\n";
                conn.simple("501 Not Implemented", body, true, false).await
            }
        };
        match next {
            Next::KeepAlive => {
                // Drop a large head buffer once nothing of a next request is in it.
                if conn.buf.is_empty() && conn.buf.capacity() > READ_BYTES {
                    conn.buf = Vec::new();
                }
            }
            Next::Reset => {
                conn.set_linger_zero();
                return;
            }
            Next::Close | Next::Gone => return,
        }
    }
}

/// Answers one request.
async fn respond(conn: &mut Conn, req: &Request) -> Next {
    let head_only = req.method == Method::Head;
    let close = req.close;
    if req.method == Method::Other {
        return conn
            .simple("405 Method Not Allowed", "GET, POST or HEAD\n", true, false)
            .await;
    }
    let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    match path {
        "/small" => {
            let mut out = small_response(close);
            if head_only {
                out.truncate(out.len() - SMALL_BODY_BYTES);
            }
            match conn.write(&out).await {
                Ok(()) if close => Next::Close,
                Ok(()) => Next::KeepAlive,
                Err(_) => Next::Gone,
            }
        }
        "/sse" => match TokioSseParams::parse(query) {
            Ok(p) => serve_sse(conn, req, &p).await,
            Err(e) => {
                conn.simple("400 Bad Request", &format!("{e}\n"), close, head_only)
                    .await
            }
        },
        _ => {
            conn.simple("404 Not Found", "not found\n", close, head_only)
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let r = parse_head(b"GET /sse?events=3 HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 7\r\n\r\n")
            .unwrap();
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.target, "/sse?events=3");
        assert_eq!(r.last_event_id.as_deref(), Some("7"));
        assert!(!r.close);
        let r = parse_head(b"HEAD / HTTP/1.0\r\n\r\n").unwrap();
        assert!(r.close && r.method == Method::Head && r.version_minor == 0);
        let r = parse_head(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").unwrap();
        assert!(!r.close);
        let r =
            parse_head(b"POST / HTTP/1.1\r\nConnection: foo, close\r\nContent-Length: 5\r\n\r\n")
                .unwrap();
        assert!(r.close);
        assert_eq!(r.body_len, 5);
        assert!(matches!(
            parse_head(b"POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n"),
            Err(HeadError::Bad(_))
        ));
        assert!(matches!(
            parse_head(b"POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            Err(HeadError::Bad(_))
        ));
        assert!(matches!(
            parse_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(HeadError::Chunked)
        ));
    }

    #[test]
    fn head_end_scan_resumes() {
        let buf = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET";
        assert_eq!(find_head_end(buf, 0), Some(buf.len() - 3));
        assert_eq!(find_head_end(buf, 20), Some(buf.len() - 3));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r", 0), None);
        assert_eq!(find_head_end(b"ab", 5), None);
    }

    #[test]
    fn small_matches_the_simulator_pattern() {
        let r = small_response(false);
        let body = &r[r.len() - SMALL_BODY_BYTES..];
        assert!(body.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        assert!(small_response(true)
            .windows(17)
            .any(|w| w == b"Connection: close"));
    }
}
