//! A small, strict SSE client for tests: reads a chunked or close-delimited `text/event-stream`
//! response incrementally and splits it into events (LF, CRLF or CR line ends), with deadlines.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// One dispatched block as a browser would see it (comments kept aside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: Option<String>,
    pub data: String,
    /// When the client received it.
    pub at: Instant,
}

/// How the stream ended, if it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The last chunk arrived (or EOF of a close-delimited body).
    Clean,
    /// The connection broke (EOF mid-chunk, reset).
    Broken,
    /// Still open when the deadline passed.
    Open,
}

pub struct SseClient {
    stream: TcpStream,
    raw: Vec<u8>,
    /// De-chunked body bytes not yet split into lines.
    body: Vec<u8>,
    chunked: bool,
    /// Remaining bytes of the current chunk (chunked bodies).
    chunk_left: usize,
    ended: Option<StreamEnd>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub comments: Vec<String>,
    /// The current block's fields.
    cur_id: Option<String>,
    cur_data: Vec<String>,
    /// The block has a data field: a browser fires an event for it.
    has_data: bool,
}

impl SseClient {
    /// Sends `GET path` with extra header lines and reads the response head.
    pub fn open(addr: SocketAddr, path: &str, extra_headers: &[(&str, &str)]) -> SseClient {
        Self::open_method(addr, "GET", path, extra_headers, None)
    }

    pub fn open_method(
        addr: SocketAddr,
        method: &str,
        path: &str,
        extra_headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> SseClient {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut req =
            format!("{method} {path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n");
        for (n, v) in extra_headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        if let Some(b) = body {
            req.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
        req.push_str("\r\n");
        stream.write_all(req.as_bytes()).unwrap();
        if let Some(b) = body {
            stream.write_all(b).unwrap();
        }
        let mut c = SseClient {
            stream,
            raw: Vec::new(),
            body: Vec::new(),
            chunked: false,
            chunk_left: 0,
            ended: None,
            status: 0,
            headers: Vec::new(),
            comments: Vec::new(),
            cur_id: None,
            cur_data: Vec::new(),
            has_data: false,
        };
        c.read_head(Instant::now() + Duration::from_secs(10));
        c
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 16 * 1024];
        match self.stream.read(&mut tmp) {
            Ok(n) => {
                self.raw.extend_from_slice(&tmp[..n]);
                Ok(n)
            }
            Err(e) => Err(e),
        }
    }

    fn read_head(&mut self, deadline: Instant) {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            if let Ok(httparse::Status::Complete(n)) = resp.parse(&self.raw) {
                self.status = resp.code.unwrap();
                self.headers = resp
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            String::from_utf8_lossy(h.value).into_owned(),
                        )
                    })
                    .collect();
                self.raw.drain(..n);
                self.chunked = self
                    .header("transfer-encoding")
                    .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
                return;
            }
            assert!(Instant::now() < deadline, "no response head in time");
            match self.fill() {
                Ok(0) => panic!("closed before a response head"),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("reading the head: {e}"),
            }
        }
    }

    /// Moves de-chunked bytes from `raw` to `body`.
    fn dechunk(&mut self) {
        if !self.chunked {
            self.body.append(&mut self.raw);
            return;
        }
        loop {
            if self.chunk_left > 0 {
                let take = self.chunk_left.min(self.raw.len());
                self.body.extend(self.raw.drain(..take));
                self.chunk_left -= take;
                if self.chunk_left > 0 {
                    return;
                }
                // The CRLF after the data is consumed with the next size line.
                continue;
            }
            let Some(pos) = self.raw.windows(2).position(|w| w == b"\r\n") else {
                return;
            };
            let line = String::from_utf8_lossy(&self.raw[..pos]).into_owned();
            if line.is_empty() {
                // CRLF ending the previous chunk's data.
                self.raw.drain(..2);
                continue;
            }
            let size = usize::from_str_radix(line.split(';').next().unwrap().trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
            if size == 0 {
                // Last chunk: wait for the final CRLF.
                if self.raw.len() >= pos + 4 {
                    self.raw.drain(..pos + 4);
                    self.ended = Some(StreamEnd::Clean);
                }
                return;
            }
            self.raw.drain(..pos + 2);
            self.chunk_left = size;
        }
    }

    /// Splits complete lines of `body` into events.
    fn parse(&mut self, out: &mut Vec<Event>) {
        loop {
            let Some(pos) = self.body.iter().position(|&b| b == b'\n' || b == b'\r') else {
                return;
            };
            let eol_len = if self.body[pos] == b'\r' {
                if pos + 1 >= self.body.len() {
                    // A CR at the end: wait to know whether an LF follows (unless the body ended).
                    if self.ended.is_none() {
                        return;
                    }
                    1
                } else if self.body[pos + 1] == b'\n' {
                    2
                } else {
                    1
                }
            } else {
                1
            };
            let line = String::from_utf8_lossy(&self.body[..pos]).into_owned();
            self.body.drain(..pos + eol_len);
            let line = line
                .strip_prefix('\u{feff}')
                .map(str::to_string)
                .unwrap_or(line);
            if line.is_empty() {
                if self.has_data {
                    out.push(Event {
                        id: self.cur_id.take(),
                        data: self.cur_data.join("\n"),
                        at: Instant::now(),
                    });
                }
                self.cur_data.clear();
                self.cur_id = None;
                self.has_data = false;
                continue;
            }
            if let Some(c) = line.strip_prefix(':') {
                self.comments.push(c.trim().to_string());
                continue;
            }
            let (name, value) = match line.split_once(':') {
                Some((n, v)) => (n.to_string(), v.strip_prefix(' ').unwrap_or(v).to_string()),
                None => (line.clone(), String::new()),
            };
            match name.as_str() {
                "id" => self.cur_id = Some(value),
                "data" => {
                    self.cur_data.push(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
    }

    /// Reads events until `stop(&events)` says so, the stream ends, or `limit` passes.
    pub fn read_until(
        &mut self,
        limit: Duration,
        mut stop: impl FnMut(&[Event]) -> bool,
    ) -> (Vec<Event>, StreamEnd) {
        let deadline = Instant::now() + limit;
        let mut events = Vec::new();
        loop {
            self.dechunk();
            self.parse(&mut events);
            if stop(&events) {
                return (events, StreamEnd::Open);
            }
            if let Some(end) = self.ended {
                return (events, end);
            }
            if Instant::now() >= deadline {
                return (events, StreamEnd::Open);
            }
            match self.fill() {
                Ok(0) => {
                    self.ended = Some(if self.chunked {
                        StreamEnd::Broken
                    } else {
                        StreamEnd::Clean
                    });
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => self.ended = Some(StreamEnd::Broken),
            }
        }
    }

    /// Reads until the stream ends (or `limit`).
    pub fn read_to_end(&mut self, limit: Duration) -> (Vec<Event>, StreamEnd) {
        self.read_until(limit, |_| false)
    }
}

/// Reads until the client has seen id `last` (or the deadline); the ids read, and how it ended.
pub fn read_through(c: &mut SseClient, last: u64, limit: Duration) -> (Vec<u64>, StreamEnd) {
    let (events, end) = c.read_until(limit, |ev| {
        ev.last()
            .and_then(|e| e.id.as_ref())
            .and_then(|i| i.parse::<u64>().ok())
            >= Some(last)
    });
    (ids(&events), end)
}

/// The ids of events, as numbers (the simulator numbers them 1, 2, 3, ...).
pub fn ids(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| e.id.as_ref()?.parse().ok())
        .collect()
}
