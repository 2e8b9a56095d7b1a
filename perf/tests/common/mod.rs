//! Test-side HTTP/1.1 and SSE clients over std::net, deliberately simple and independent of
//! the simulator's own code. Every socket has read and write timeouts, so no test can hang.

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Upper bound of any single blocking socket operation in the tests.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts an in-process simulator with default settings.
pub fn start() -> tether_perf::UpstreamHandle {
    tether_perf::spawn(tether_perf::UpstreamConfig::default()).expect("spawn sse-upstream")
}

/// Byte i of generated bodies.
pub fn pattern_byte(i: usize) -> u8 {
    (i % 251) as u8
}

/// A response head.
#[derive(Debug, Clone)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn content_length(&self) -> Option<usize> {
        self.header("content-length").map(|v| v.parse().unwrap())
    }

    pub fn is_chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    }

    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }
}

/// A full response.
#[derive(Debug, Clone)]
pub struct Response {
    pub head: Head,
    pub body: Vec<u8>,
}

/// How a body read ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The framing said the body was complete (last-chunk or Content-Length reached).
    Complete,
    /// The peer closed (FIN) before the body was complete (or, close-delimited, at its end).
    Eof,
    /// The connection was reset.
    Reset,
    /// No byte arrived within the socket's read timeout.
    Timeout,
}

/// A client connection with its own read buffer.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn set_read_timeout(&self, t: Duration) {
        self.stream.set_read_timeout(Some(t)).unwrap();
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Reads more bytes into the buffer; Ok(0) at EOF.
    pub fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 16 * 1024];
        let n = self.stream.read(&mut tmp)?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// Bytes received and not consumed yet.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }

    pub fn read_head(&mut self) -> Head {
        loop {
            if let Some(pos) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let raw: Vec<u8> = self.buf.drain(..pos + 4).collect();
                let text = String::from_utf8(raw).expect("utf-8 head");
                let mut lines = text.split("\r\n");
                let status_line = lines.next().unwrap();
                assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
                let status = status_line[9..12].parse().unwrap();
                let headers = lines
                    .filter(|l| !l.is_empty())
                    .map(|l| {
                        let (n, v) = l.split_once(':').expect("header colon");
                        (n.to_string(), v.trim().to_string())
                    })
                    .collect();
                return Head { status, headers };
            }
            let n = self.fill().expect("read head");
            assert!(n > 0, "EOF before a complete head");
        }
    }

    /// Reads a final response head, skipping (and returning) 1xx interim heads.
    pub fn read_final_head(&mut self) -> (Vec<Head>, Head) {
        let mut interim = Vec::new();
        loop {
            let head = self.read_head();
            if (100..200).contains(&head.status) {
                interim.push(head);
            } else {
                return (interim, head);
            }
        }
    }

    /// Reads a body as framed by `head` (for a request that was not HEAD) and tells how
    /// it ended. Bytes past a complete body stay buffered.
    pub fn read_body(&mut self, head: &Head) -> (Vec<u8>, End) {
        if matches!(head.status, 204 | 304) {
            return (Vec::new(), End::Complete);
        }
        if head.is_chunked() {
            self.read_chunked()
        } else if let Some(len) = head.content_length() {
            self.read_exact_body(len)
        } else {
            self.read_to_end()
        }
    }

    fn more(&mut self) -> Option<End> {
        match self.fill() {
            Ok(0) => Some(End::Eof),
            Ok(_) => None,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => Some(End::Reset),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Some(End::Timeout)
            }
            Err(e) => panic!("read: {e}"),
        }
    }

    fn read_exact_body(&mut self, len: usize) -> (Vec<u8>, End) {
        while self.buf.len() < len {
            if let Some(end) = self.more() {
                return (std::mem::take(&mut self.buf), end);
            }
        }
        (self.buf.drain(..len).collect(), End::Complete)
    }

    pub fn read_to_end(&mut self) -> (Vec<u8>, End) {
        loop {
            if let Some(end) = self.more() {
                return (std::mem::take(&mut self.buf), end);
            }
        }
    }

    /// Decodes a chunked body; on a truncated body returns the data of the complete chunks
    /// plus the received part of the last one.
    fn read_chunked(&mut self) -> (Vec<u8>, End) {
        let mut body = Vec::new();
        loop {
            // Size line.
            let line_end = loop {
                if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break p;
                }
                if let Some(end) = self.more() {
                    return (body, end);
                }
            };
            let line = std::str::from_utf8(&self.buf[..line_end])
                .unwrap()
                .to_string();
            let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
                .unwrap_or_else(|_| panic!("chunk size line {line:?}"));
            self.buf.drain(..line_end + 2);
            if size == 0 {
                // Trailers (none expected) and the final CRLF.
                loop {
                    if self.buf.starts_with(b"\r\n") {
                        self.buf.drain(..2);
                        return (body, End::Complete);
                    }
                    if let Some(end) = self.more() {
                        return (body, end);
                    }
                }
            }
            while self.buf.len() < size + 2 {
                if let Some(end) = self.more() {
                    let n = self.buf.len().min(size);
                    body.extend_from_slice(&self.buf[..n]);
                    self.buf.clear();
                    return (body, end);
                }
            }
            body.extend_from_slice(&self.buf[..size]);
            assert_eq!(&self.buf[size..size + 2], b"\r\n", "chunk data CRLF");
            self.buf.drain(..size + 2);
        }
    }

    /// Sends a GET and reads the whole response.
    pub fn get(&mut self, target: &str) -> Response {
        self.send(format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        let head = self.read_head();
        let (body, end) = self.read_body(&head);
        assert!(
            end == End::Complete || (end == End::Eof && head.content_length().is_none()),
            "{target}: body ended with {end:?}"
        );
        Response { head, body }
    }

    /// Sends a GET with extra header lines and reads the head only.
    pub fn request_head(&mut self, method: &str, target: &str, extra: &str) -> Head {
        self.send(format!("{method} {target} HTTP/1.1\r\nHost: t\r\n{extra}\r\n").as_bytes());
        self.read_head()
    }
}

/// One dispatched SSE event or comment, as a WHATWG parser would see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: Option<String>,
    pub data: String,
}

/// A small SSE parser for checking the simulator's output (BOM, CR/LF/CRLF, comments).
#[derive(Debug, Default)]
pub struct SseParsed {
    pub events: Vec<Event>,
    pub comments: usize,
    pub retry: Option<u64>,
    /// Bytes after the last complete block (an unfinished event).
    pub tail: Vec<u8>,
}

pub fn parse_sse(body: &[u8]) -> SseParsed {
    let mut out = SseParsed::default();
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut lines: Vec<(&[u8], usize)> = Vec::new(); // (line, end offset incl. terminator)
    let mut i = 0;
    let mut start = 0;
    while i < body.len() {
        match body[i] {
            b'\n' => {
                lines.push((&body[start..i], i + 1));
                i += 1;
                start = i;
            }
            b'\r' => {
                // A CR at the end of the (complete) body ends a line.
                let end = if body.get(i + 1) == Some(&b'\n') {
                    i + 2
                } else {
                    i + 1
                };
                lines.push((&body[start..i], end));
                i = end;
                start = i;
            }
            _ => i += 1,
        }
    }
    let mut id = None;
    let mut data: Option<String> = None;
    let mut block_start = 0;
    for (line, end) in lines {
        if line.is_empty() {
            if let Some(d) = data.take() {
                out.events.push(Event {
                    id: id.take(),
                    data: d,
                });
            } else if let Some(i) = id.take() {
                out.events.push(Event {
                    id: Some(i),
                    data: String::new(),
                });
            }
            block_start = end;
            continue;
        }
        let text = String::from_utf8_lossy(line).into_owned();
        if text.starts_with(':') {
            out.comments += 1;
            continue;
        }
        let (name, value) = match text.split_once(':') {
            Some((n, v)) => (n.to_string(), v.strip_prefix(' ').unwrap_or(v).to_string()),
            None => (text.clone(), String::new()),
        };
        match name.as_str() {
            "id" => id = Some(value),
            "data" => {
                data = Some(match data {
                    Some(d) => d + "\n" + &value,
                    None => value,
                })
            }
            "retry" => out.retry = value.parse().ok(),
            _ => {}
        }
    }
    out.tail = body[block_start..].to_vec();
    out
}

/// Ids of the data-carrying events (the priming block has empty data and is skipped).
pub fn data_ids(parsed: &SseParsed) -> Vec<u64> {
    parsed
        .events
        .iter()
        .filter(|e| !e.data.is_empty())
        .map(|e| e.id.as_deref().expect("id").parse().unwrap())
        .collect()
}

/// The `seq` field of an event's JSON data.
pub fn seq_of(data: &str) -> u64 {
    let rest = data.strip_prefix("{\"seq\":").expect("seq first");
    let end = rest.find([',', '}']).unwrap();
    rest[..end].parse().unwrap()
}

/// Opens an SSE stream and returns the client positioned at the body, with its head.
pub fn open_sse(addr: SocketAddr, target: &str, extra_headers: &str) -> (Client, Head) {
    let mut c = Client::connect(addr);
    let head = c.request_head("GET", target, extra_headers);
    assert_eq!(head.status, 200, "{target}");
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    (c, head)
}
