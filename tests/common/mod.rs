//! Shared test harness: start the real `tether` binary on loopback, talk to it over real sockets.
//! Every wait is bounded (socket timeouts, deadlines), and every child is killed on drop.

#![allow(dead_code)]

pub mod config_file;
pub mod h2_client;
pub mod mcp;
pub mod mcp_ts;
pub mod scripted_origin;
pub mod sse_client;
pub mod tls_client;
pub mod tls_origin;
pub mod websocket;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest any single socket operation in a test may block.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// A running tether process.
pub struct Tether {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Tether {
    /// Starts `tether reverse --bind 127.0.0.1:0` in front of `upstreams`, with `extra` flags, and
    /// waits for its "listening on" line.
    pub fn start(upstreams: &[String], extra: &[&str]) -> Tether {
        let mut args: Vec<String> = vec!["reverse".into(), "--bind".into(), "127.0.0.1:0".into()];
        for u in upstreams {
            args.push("--upstream".into());
            args.push(u.clone());
        }
        if !extra.contains(&"--workers") {
            args.push("--workers".into());
            args.push("2".into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::start_args(&args)
            .unwrap_or_else(|log| panic!("tether did not start:\n{}", log.join("\n")))
    }

    /// As [`Tether::start`], with the process's file-descriptor limit (RLIMIT_NOFILE, soft and
    /// hard) set to `nofile` before it starts.
    pub fn start_with_fd_limit(upstreams: &[String], extra: &[&str], nofile: u64) -> Tether {
        let mut args: Vec<String> = vec!["reverse".into(), "--bind".into(), "127.0.0.1:0".into()];
        for u in upstreams {
            args.push("--upstream".into());
            args.push(u.clone());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::start_command(&args, Some(nofile))
            .unwrap_or_else(|log| panic!("tether did not start:\n{}", log.join("\n")))
    }

    /// Starts tether with exactly `args`; Err carries its log when it exits before listening.
    pub fn start_args(args: &[String]) -> Result<Tether, Vec<String>> {
        Self::start_command(args, None)
    }

    fn start_command(args: &[String], nofile: Option<u64>) -> Result<Tether, Vec<String>> {
        Self::start_program(env!("CARGO_BIN_EXE_tether").as_ref(), args, nofile)
    }

    /// Starts `program` (tether, or a program embedding it such as an example) with `args`.
    pub fn start_program(
        program: &std::path::Path,
        args: &[String],
        nofile: Option<u64>,
    ) -> Result<Tether, Vec<String>> {
        let mut command = Command::new(program);
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: between fork and exec only setrlimit runs, which is async-signal-safe; the
            // closure touches nothing of the parent but the copied value `n`.
            unsafe {
                command.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n as libc::rlim_t,
                        rlim_max: n as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tether");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let addr = line
                    .split("listening on ")
                    .nth(1)
                    .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string());
                // Logged before announced, so a test that saw the address also sees the line.
                sink.lock().unwrap().push(line);
                if let Some(addr) = addr {
                    let _ = tx.send(addr);
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => Ok(Tether {
                child,
                addr: addr.parse().expect("listening address"),
                log,
            }),
            Err(_) => {
                let _ = child.wait_timeout_or_kill(Duration::from_secs(5));
                std::thread::sleep(Duration::from_millis(100));
                Err(log.lock().unwrap().clone())
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits up to `limit` for a log line containing `needle` (lines arrive through a pipe, a
    /// little after the event that caused them).
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> bool {
        let stop = Instant::now() + limit;
        loop {
            if self.log.lock().unwrap().iter().any(|l| l.contains(needle)) {
                return true;
            }
            if Instant::now() >= stop {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let stop = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= stop {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tether {
    fn drop(&mut self) {
        if std::thread::panicking() && std::env::var_os("TETHER_TEST_DUMP_LOG").is_some() {
            eprintln!("---- tether log ----\n{}", self.log_lines().join("\n"));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

trait WaitTimeout {
    fn wait_timeout_or_kill(&mut self, limit: Duration) -> Option<ExitStatus>;
}

impl WaitTimeout for Child {
    fn wait_timeout_or_kill(&mut self, limit: Duration) -> Option<ExitStatus> {
        let stop = Instant::now() + limit;
        while Instant::now() < stop {
            if let Ok(Some(s)) = self.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.kill();
        self.wait().ok()
    }
}

/// A port on 127.0.0.1 where nothing listens (bound then released).
pub fn closed_port_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

/// A parsed HTTP/1.1 response as a client sees it.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub version: u8,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Body framing the client saw: "length", "chunked", "close" or "none".
    pub framing: &'static str,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A raw HTTP/1.1 client over one connection: it writes exactly the bytes it is given.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect to tether");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub fn send(&mut self, raw: &[u8]) -> io::Result<()> {
        self.stream.write_all(raw)
    }

    /// GET `path` with keep-alive and a Host header.
    pub fn get(&mut self, path: &str) -> Response {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
            .unwrap();
        self.read_response(false).expect("response")
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut tmp = [0u8; 64 * 1024];
        let n = self.stream.read(&mut tmp)?;
        self.buf.extend_from_slice(&tmp[..n]);
        Ok(n)
    }

    /// Reads one response; `head_request` says the body must be skipped.
    pub fn read_response(&mut self, head_request: bool) -> io::Result<Response> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 128];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let status = resp.code.unwrap();
                    let version = resp.version.unwrap();
                    let headers: Vec<(String, String)> = resp
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    self.buf.drain(..n);
                    let mut r = Response {
                        status,
                        version,
                        headers,
                        body: Vec::new(),
                        framing: "none",
                    };
                    if (100..200).contains(&status) {
                        return Ok(r);
                    }
                    if head_request || status == 204 || status == 304 {
                        return Ok(r);
                    }
                    if r.header("transfer-encoding")
                        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
                    {
                        r.framing = "chunked";
                        r.body = self.read_chunked()?;
                    } else if let Some(cl) = r.header("content-length") {
                        let len: usize = cl.trim().parse().expect("content-length");
                        r.framing = "length";
                        while self.buf.len() < len {
                            if self.fill()? == 0 {
                                return Err(io::Error::new(
                                    io::ErrorKind::UnexpectedEof,
                                    "body cut short",
                                ));
                            }
                        }
                        r.body = self.buf.drain(..len).collect();
                    } else {
                        r.framing = "close";
                        while self.fill()? > 0 {}
                        r.body = std::mem::take(&mut self.buf);
                    }
                    return Ok(r);
                }
                Ok(httparse::Status::Partial) => {
                    if self.fill()? == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "closed before a response",
                        ));
                    }
                }
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            }
        }
    }

    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = self.buf[..i].to_vec();
                self.buf.drain(..i + 2);
                return Ok(line);
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "chunked body cut short",
                ));
            }
        }
    }

    fn read_chunked(&mut self) -> io::Result<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line()?;
            let text = String::from_utf8_lossy(&line);
            let size_text = text.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidData, format!("chunk size {text:?}"))
            })?;
            if size == 0 {
                // trailers until empty line
                loop {
                    if self.read_line()?.is_empty() {
                        return Ok(body);
                    }
                }
            }
            while self.buf.len() < size + 2 {
                if self.fill()? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "chunk cut short",
                    ));
                }
            }
            body.extend_from_slice(&self.buf[..size]);
            assert_eq!(
                &self.buf[size..size + 2],
                b"\r\n",
                "chunk data must end with CRLF"
            );
            self.buf.drain(..size + 2);
        }
    }

    /// True when the server closed the connection (EOF) within the read timeout.
    pub fn is_closed(&mut self) -> bool {
        self.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut tmp = [0u8; 4096];
        loop {
            match self.stream.read(&mut tmp) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    }
}

/// One request on a fresh connection.
pub fn send_raw(addr: SocketAddr, raw: &[u8]) -> (Response, Client) {
    let mut c = Client::connect(addr);
    c.send(raw).unwrap();
    let r = c.read_response(raw.starts_with(b"HEAD")).expect("response");
    (r, c)
}

/// Starts the simulator (perf's sse-upstream) in this test process on 127.0.0.1.
pub fn origin() -> tether_perf::UpstreamHandle {
    origin_with(Duration::ZERO)
}

/// The simulator, refusing connections for `refuse_for` after start.
pub fn origin_with(refuse_for: Duration) -> tether_perf::UpstreamHandle {
    tether_perf::spawn(tether_perf::UpstreamConfig {
        refuse_for,
        ..Default::default()
    })
    .expect("start the upstream simulator")
}

pub fn url_of(h: &tether_perf::UpstreamHandle) -> String {
    format!("http://{}", h.addr())
}

/// FNV-1a 64 of `data`, as the simulator's /sum computes it.
pub fn checksum(data: &[u8]) -> u64 {
    tether_perf::fnv1a64(tether_perf::FNV1A64_OFFSET_BASIS, data)
}

/// The simulator's deterministic body pattern for /bytes: byte i = i % 251.
pub fn pattern(n: usize) -> impl Iterator<Item = u8> {
    (0..n).map(|i| (i % 251) as u8)
}

// ---------------------------------------------------------------------------------------------
// Server-Sent Events: an incremental reader of one SSE response, and process/socket accounting.
// ---------------------------------------------------------------------------------------------

/// How long one read of an SSE test stream may block before the test fails.
pub const SSE_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest an [`SseReader`] may be read from, counted from its request: past it every read fails
/// with `TimedOut`. A stream that should have ended but keeps trickling bytes (heartbeats, a
/// reconnect loop) then fails its test instead of hanging it (reads then fail with an error of
/// kind `Other`). A test may move it (`deadline`).
pub const SSE_STREAM_DEADLINE: Duration = Duration::from_secs(12);

/// A GET for an event stream, with `extra` header lines (each without CRLF).
pub fn sse_request(path: &str, extra: &[&str]) -> Vec<u8> {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n");
    for h in extra {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// A POST whose answer may be an event stream (MCP style: JSON body, `Accept` of both), with
/// `extra` header lines (each without CRLF) and a Content-Length body.
pub fn sse_post_request(path: &str, extra: &[&str], body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nAccept: application/json, text/event-stream\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for h in extra {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let mut raw = req.into_bytes();
    raw.extend_from_slice(body);
    raw
}

/// Reads data events to the end of the response: their numeric ids, in order, and how it ended
/// (`Some(true)`: a clean end, the last chunk; `not ended: ...` when a read failed first).
pub fn ids_to_end(r: &mut SseReader) -> (Vec<u64>, String) {
    let mut ids = Vec::new();
    loop {
        match r.next_event() {
            Ok(Some(ev)) => ids.push(ev.num_id().expect("a numeric id")),
            Ok(None) => return (ids, format!("{:?}", r.clean_end)),
            Err(e) => return (ids, format!("not ended: {e}")),
        }
    }
}

/// Reads data events until one whose numeric id is `last` or more: the ids read, in order, and
/// why it stopped short (None when it got there).
pub fn ids_through(r: &mut SseReader, last: u64) -> (Vec<u64>, Option<String>) {
    let mut ids = Vec::new();
    loop {
        let why = match r.next_event() {
            Ok(Some(ev)) => match ev.num_id() {
                Some(id) => {
                    ids.push(id);
                    if id >= last {
                        return (ids, None);
                    }
                    continue;
                }
                None => format!("an event without a numeric id: {ev:?}"),
            },
            Ok(None) => format!(
                "the response ended ({})",
                if r.clean_end == Some(true) {
                    "clean end"
                } else {
                    "cut"
                }
            ),
            Err(e) => format!("no event: {e}"),
        };
        return (ids, Some(why));
    }
}

/// True when `ids` are consecutive numbers (n, n+1, n+2, ...): nothing lost, repeated or moved.
pub fn consecutive(ids: &[u64]) -> bool {
    ids.windows(2).all(|w| w[1] == w[0] + 1)
}

/// One dispatched SSE block as a browser's parser sees it (comments kept for the tests).
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// The `id` field's value, when the block had one.
    pub id: Option<String>,
    /// `data` lines joined with LF, when the block had any.
    pub data: Option<String>,
    /// The `retry` field's value, when valid.
    pub retry: Option<u64>,
    /// Comment lines, without the leading colon.
    pub comments: Vec<String>,
    /// When the read that completed the block returned.
    pub at: Instant,
    /// The same, on the wall clock (to compare with the simulator's `ts_us`).
    pub at_wall: std::time::SystemTime,
}

impl SseEvent {
    /// The simulator's `"seq":N` in the data.
    pub fn seq(&self) -> Option<u64> {
        json_u64(self.data.as_deref()?, "seq")
    }
    /// The simulator's `"ts_us":N` (send time, unix microseconds) in the data.
    pub fn ts_us(&self) -> Option<u64> {
        json_u64(self.data.as_deref()?, "ts_us")
    }
    /// The id as a number (the simulator numbers its events).
    pub fn num_id(&self) -> Option<u64> {
        self.id.as_deref()?.parse().ok()
    }
    pub fn is_comment_only(&self) -> bool {
        self.id.is_none() && self.data.is_none() && self.retry.is_none()
    }
}

/// The `"key":N` number in a JSON text (the simulator's event data: `ts_us`, `seq`).
pub fn json_u64(s: &str, key: &str) -> Option<u64> {
    let pat = format!("\"{key}\":");
    let rest = &s[s.find(&pat)? + pat.len()..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Body framing of an SSE response, as the client reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SseBodyState {
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Inside a chunk: this many payload bytes, then CRLF.
    ChunkData { remaining: usize },
    /// Close-delimited (HTTP/1.0 or no framing): everything until EOF.
    UntilClose,
    /// The body ended cleanly (last-chunk, or EOF of a close-delimited body).
    Ended,
}

/// An SSE response read piece by piece over one connection, with a WHATWG-style block parser
/// on top (BOM at offset 0 stripped; CRLF, LF, lone CR; a CR at the end of what arrived ends its
/// line at once, an LF right after it is skipped, as browsers do).
pub struct SseReader {
    pub client: Client,
    /// The response head (body empty).
    pub head: Response,
    state: SseBodyState,
    /// Every de-chunked body byte received so far.
    pub body: Vec<u8>,
    /// How far the parser got in `body`.
    parsed: usize,
    parser: SseParser,
    /// How the body ended: None while open, Some(true) when clean, Some(false) when cut.
    pub clean_end: Option<bool>,
    /// Reads fail from this instant on (default: [`SSE_STREAM_DEADLINE`] after
    /// the request).
    pub deadline: Instant,
}

impl SseReader {
    /// Connects to `addr`, sends `raw` and reads the response head.
    pub fn open(addr: SocketAddr, raw: &[u8]) -> SseReader {
        Self::on(Client::connect(addr), raw)
    }

    /// Sends `raw` on an open connection (keep-alive reuse) and reads the response head.
    pub fn on(mut client: Client, raw: &[u8]) -> SseReader {
        let deadline = Instant::now() + SSE_STREAM_DEADLINE;
        client
            .stream
            .set_read_timeout(Some(SSE_READ_TIMEOUT))
            .unwrap();
        client.send(raw).unwrap();
        let head = client.read_head().expect("SSE response head");
        let mut r = Self::continue_after_head(client, head);
        r.deadline = deadline;
        r
    }

    /// Reads the body of a response whose head `client` already read (`Client::read_head`).
    pub fn continue_after_head(client: Client, head: Response) -> SseReader {
        let deadline = Instant::now() + SSE_STREAM_DEADLINE;
        client
            .stream
            .set_read_timeout(Some(SSE_READ_TIMEOUT))
            .unwrap();
        let state = if head
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            SseBodyState::ChunkSize
        } else {
            SseBodyState::UntilClose
        };
        let mut r = SseReader {
            client,
            head,
            state,
            body: Vec::new(),
            parsed: 0,
            parser: SseParser::default(),
            clean_end: None,
            deadline,
        };
        r.decode();
        r
    }

    /// `GET path` with `extra` header lines.
    pub fn get(addr: SocketAddr, path: &str, extra: &[&str]) -> SseReader {
        Self::open(addr, &sse_request(path, extra))
    }

    pub fn ended(&self) -> bool {
        self.clean_end.is_some()
    }

    /// De-chunks what the client buffer holds into `body`.
    fn decode(&mut self) {
        loop {
            match self.state {
                SseBodyState::Ended => return,
                SseBodyState::UntilClose => {
                    self.body.append(&mut self.client.buf);
                    return;
                }
                SseBodyState::ChunkSize => {
                    let Some(i) = self.client.buf.windows(2).position(|w| w == b"\r\n") else {
                        return;
                    };
                    let text = String::from_utf8_lossy(&self.client.buf[..i]).into_owned();
                    let size_text = text.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(size_text, 16)
                        .unwrap_or_else(|_| panic!("bad chunk size line {text:?}"));
                    if size == 0 {
                        // Last-chunk; tether sends no trailers: the empty line must follow.
                        if self.client.buf.len() < i + 4 {
                            return;
                        }
                        assert_eq!(&self.client.buf[i + 2..i + 4], b"\r\n", "trailer section");
                        self.client.buf.drain(..i + 4);
                        self.state = SseBodyState::Ended;
                        self.clean_end = Some(true);
                        return;
                    }
                    self.client.buf.drain(..i + 2);
                    self.state = SseBodyState::ChunkData { remaining: size };
                }
                SseBodyState::ChunkData { remaining } => {
                    if remaining == 0 {
                        if self.client.buf.len() < 2 {
                            return;
                        }
                        assert_eq!(
                            &self.client.buf[..2],
                            b"\r\n",
                            "chunk data must end with CRLF"
                        );
                        self.client.buf.drain(..2);
                        self.state = SseBodyState::ChunkSize;
                        continue;
                    }
                    if self.client.buf.is_empty() {
                        return;
                    }
                    let n = remaining.min(self.client.buf.len());
                    self.body.extend(self.client.buf.drain(..n));
                    self.state = SseBodyState::ChunkData {
                        remaining: remaining - n,
                    };
                }
            }
        }
    }

    /// One read from the socket (bounded by the read timeout). Ok(false) at EOF.
    fn read_once(&mut self) -> io::Result<bool> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            // Not TimedOut: bytes_within must not take it for a quiet moment.
            return Err(io::Error::other(format!(
                "the stream was still open at the test's deadline ({} body bytes)",
                self.body.len()
            )));
        }
        if left < SSE_READ_TIMEOUT {
            // Never block past the deadline (bytes_within may have set a longer timeout).
            let cur = self.client.stream.read_timeout().ok().flatten();
            if cur.is_none_or(|c| c > left) {
                self.client.stream.set_read_timeout(Some(left)).unwrap();
            }
        }
        let n = match self.client.fill() {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => 0,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) && Instant::now() >= self.deadline =>
            {
                return Err(io::Error::other(format!(
                    "the stream was still open at the test's deadline ({} body bytes)",
                    self.body.len()
                )))
            }
            Err(e) => return Err(e),
        };
        self.parser.at = Some((Instant::now(), std::time::SystemTime::now()));
        if n == 0 {
            self.clean_end = Some(self.state == SseBodyState::UntilClose);
            if self.state == SseBodyState::UntilClose {
                self.body.append(&mut self.client.buf);
            }
            self.state = SseBodyState::Ended;
            return Ok(false);
        }
        self.decode();
        Ok(true)
    }

    /// Parses the body bytes not parsed yet into dispatched blocks.
    fn parse(&mut self) {
        self.parser.feed(&self.body[self.parsed..]);
        self.parsed = self.body.len();
    }

    /// Parses a complete body (no socket involved) into its dispatched blocks.
    pub fn parse_body(body: &[u8]) -> std::collections::VecDeque<SseEvent> {
        let mut p = SseParser::default();
        p.feed(body);
        p.ready
    }

    /// The next dispatched block (comments included), reading as needed. None when the body
    /// ended; Err when the read timed out.
    pub fn next_block(&mut self) -> io::Result<Option<SseEvent>> {
        loop {
            self.parse();
            if let Some(ev) = self.parser.ready.pop_front() {
                return Ok(Some(ev));
            }
            if self.ended() {
                return Ok(None);
            }
            self.read_once()?;
        }
    }

    /// The next block that carries data (comments, retry and priming blocks are skipped).
    pub fn next_event(&mut self) -> io::Result<Option<SseEvent>> {
        loop {
            match self.next_block()? {
                Some(ev) if ev.data.as_deref().is_some_and(|d| !d.is_empty()) => {
                    return Ok(Some(ev))
                }
                Some(_) => continue,
                None => return Ok(None),
            }
        }
    }

    /// Reads until the event whose id is `id` (inclusive); returns every data event read.
    pub fn read_through_id(&mut self, id: &str) -> Vec<SseEvent> {
        let mut out = Vec::new();
        loop {
            let ev = self
                .next_event()
                .unwrap_or_else(|e| panic!("reading up to id {id}: {e}; got {:?}", ids(&out)))
                .unwrap_or_else(|| panic!("stream ended before id {id}; got {:?}", ids(&out)));
            let done = ev.id.as_deref() == Some(id);
            out.push(ev);
            if done {
                return out;
            }
        }
    }

    /// Every remaining data event until the body ends (panics on a read timeout).
    pub fn events_to_end(&mut self) -> Vec<SseEvent> {
        let mut out = Vec::new();
        loop {
            match self.next_event() {
                Ok(Some(ev)) => out.push(ev),
                Ok(None) => return out,
                Err(e) => panic!("stream did not end: {e}; events so far {:?}", ids(&out)),
            }
        }
    }

    /// Reads until the body ends; returns the whole de-chunked body.
    pub fn body_to_end(&mut self) -> io::Result<Vec<u8>> {
        while !self.ended() {
            self.read_once()?;
        }
        Ok(self.body.clone())
    }

    /// Waits up to `limit` for more bytes; true if some arrived. Err on EOF or error.
    pub fn bytes_within(&mut self, limit: Duration) -> io::Result<bool> {
        self.client.stream.set_read_timeout(Some(limit)).unwrap();
        let r = self.read_once();
        self.client
            .stream
            .set_read_timeout(Some(SSE_READ_TIMEOUT))
            .unwrap();
        match r {
            Ok(true) => Ok(true),
            Ok(false) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "stream ended")),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

/// A WHATWG-style SSE parser for the tests: BOM at offset 0 stripped (also when split), CRLF, LF
/// or a lone CR end lines; a CR ends its line at once and an LF right after it is skipped, as
/// browsers do. Keeps comment-only blocks (the tests look for heartbeats).
#[derive(Default)]
pub struct SseParser {
    /// Up to 3 first bytes, held until they prove to be a BOM or not (None once decided).
    head: Option<Vec<u8>>,
    decided: bool,
    line: Vec<u8>,
    /// The previous line ended with CR: skip one LF.
    skip_lf: bool,
    cur_id: Option<String>,
    cur_data: Option<String>,
    cur_retry: Option<u64>,
    cur_comments: Vec<String>,
    /// Blocks dispatched and not yet handed out.
    pub ready: std::collections::VecDeque<SseEvent>,
    /// When the bytes being fed arrived (now, when unset).
    pub at: Option<(Instant, std::time::SystemTime)>,
}

impl SseParser {
    pub fn feed(&mut self, bytes: &[u8]) {
        let mut bytes = bytes;
        let held;
        if !self.decided {
            let mut h = self.head.take().unwrap_or_default();
            h.extend_from_slice(bytes);
            if h.len() < 3 && b"\xEF\xBB\xBF".starts_with(&h) {
                self.head = Some(h);
                return;
            }
            self.decided = true;
            held = if h.starts_with(b"\xEF\xBB\xBF") {
                h[3..].to_vec()
            } else {
                h
            };
            bytes = &held;
        }
        for &b in bytes {
            if self.skip_lf {
                self.skip_lf = false;
                if b == b'\n' {
                    continue;
                }
            }
            match b {
                b'\r' | b'\n' => {
                    self.skip_lf = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.line_done(&line);
                }
                _ => self.line.push(b),
            }
        }
    }

    fn line_done(&mut self, line: &[u8]) {
        if line.is_empty() {
            let (at, at_wall) = self
                .at
                .unwrap_or_else(|| (Instant::now(), std::time::SystemTime::now()));
            let ev = SseEvent {
                id: self.cur_id.take(),
                data: self.cur_data.take(),
                retry: self.cur_retry.take(),
                comments: std::mem::take(&mut self.cur_comments),
                at,
                at_wall,
            };
            if ev.id.is_some() || ev.data.is_some() || ev.retry.is_some() || !ev.comments.is_empty()
            {
                self.ready.push_back(ev);
            }
            return;
        }
        let text = String::from_utf8_lossy(line).into_owned();
        if let Some(comment) = text.strip_prefix(':') {
            self.cur_comments.push(comment.to_string());
            return;
        }
        let (name, value) = match text.split_once(':') {
            Some((n, v)) => (n.to_string(), v.strip_prefix(' ').unwrap_or(v).to_string()),
            None => (text.clone(), String::new()),
        };
        match name.as_str() {
            "id" if !value.contains('\0') => self.cur_id = Some(value),
            "data" => match &mut self.cur_data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(&value);
                }
                None => self.cur_data = Some(value),
            },
            "retry" if !value.is_empty() && value.bytes().all(|c| c.is_ascii_digit()) => {
                self.cur_retry = value.parse().ok()
            }
            _ => {}
        }
    }
}

/// The ids of `events` (for assertion messages).
pub fn ids(events: &[SseEvent]) -> Vec<Option<String>> {
    events.iter().map(|e| e.id.clone()).collect()
}

/// The numeric ids of `events`; panics on an event without a numeric id.
pub fn num_ids(events: &[SseEvent]) -> Vec<u64> {
    events
        .iter()
        .map(|e| {
            e.num_id()
                .unwrap_or_else(|| panic!("event without a numeric id: {e:?}"))
        })
        .collect()
}

impl Client {
    /// Reads a response head only; body bytes that came with it stay buffered.
    pub fn read_head(&mut self) -> io::Result<Response> {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 128];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let r = Response {
                        status: resp.code.unwrap(),
                        version: resp.version.unwrap(),
                        headers: resp
                            .headers
                            .iter()
                            .map(|h| {
                                (
                                    h.name.to_string(),
                                    String::from_utf8_lossy(h.value).into_owned(),
                                )
                            })
                            .collect(),
                        body: Vec::new(),
                        framing: "none",
                    };
                    self.buf.drain(..n);
                    return Ok(r);
                }
                Ok(httparse::Status::Partial) => {
                    if self.fill()? == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "closed before a response head",
                        ));
                    }
                }
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
            }
        }
    }
}

/// Open file descriptors of process `pid`.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// ESTABLISHED TCP connections (IPv4, this network namespace) whose remote end is port `port`
/// on loopback: the proxy's side of its connections to an upstream listening there.
pub fn established_to_port(port: u16) -> usize {
    established_with(port, 2)
}

/// ESTABLISHED TCP connections (IPv4) whose local end is port `port` on this host: tether's side
/// of its client connections, when `port` is its listening port.
pub fn established_at_port(port: u16) -> usize {
    established_with(port, 1)
}

/// The state of the IPv4 TCP socket on this host whose local port is `local` and remote port
/// `remote`, as /proc/net/tcp writes it ("01" ESTABLISHED, "04" FIN_WAIT1, "05" FIN_WAIT2, ...);
/// None when there is none. With `local` tether's listening port and `remote` a client's port:
/// whether tether still holds that client's connection open.
pub fn tcp_state(local: u16, remote: u16) -> Option<String> {
    let port_of = |addr: &str| {
        addr.rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 3 && port_of(f[1]) == Some(local) && port_of(f[2]) == Some(remote))
            .then(|| f[3].to_string())
    })
}

/// ESTABLISHED entries of /proc/net/tcp whose address in `column` (1 local, 2 remote) has `port`.
fn established_with(port: u16, column: usize) -> usize {
    let text = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3
                && f[3] == "01"
                && f[column]
                    .rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
                    == Some(port)
        })
        .count()
}

/// The numeric id of the stream's next event (panics when it ends or the event has none).
pub fn next_id(reader: &mut SseReader) -> u64 {
    reader
        .next_event()
        .expect("reading the stream")
        .expect("the stream ended")
        .num_id()
        .expect("a numeric id")
}

/// Polls `f` every 20 ms until it returns true or `limit` passes; returns its last answer.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let stop = Instant::now() + limit;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= stop {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads a request head (up to its empty line) from an origin's side of a connection, waiting
/// 5 s at most. False when the client closed or stalled first.
pub fn read_request_head(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = Vec::new();
    let mut tmp = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut tmp) {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&tmp[..n]),
        }
    }
    true
}

/// One connection accepted on `l` within `within` (polling, so a test thread never hangs on a
/// client that never comes), as a blocking socket; None when none came.
pub fn accept_within(l: &TcpListener, within: Duration) -> Option<TcpStream> {
    l.set_nonblocking(true).unwrap();
    let stop = Instant::now() + within;
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                return Some(s);
            }
            Err(_) if Instant::now() < stop => std::thread::sleep(Duration::from_millis(5)),
            Err(_) => return None,
        }
    }
}

/// A one-shot origin: accepts one connection (within 10 s), reads a request head, writes
/// `response` and then keeps the socket open for `linger` before closing it. Returns its URL.
pub fn scripted_origin(response: Vec<u8>, linger: Duration) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let Some(mut s) = accept_within(&l, Duration::from_secs(10)) else {
            return;
        };
        if !read_request_head(&mut s) {
            return;
        }
        let _ = s.write_all(&response);
        std::thread::sleep(linger);
    });
    format!("http://{addr}")
}

// ---------------------------------------------------------------------------------------------
// Observing a running tether from outside: the admin endpoint's /metrics, the process's RSS,
// and a client socket whose receive buffer is kept small (a reader that really is slow).
// ---------------------------------------------------------------------------------------------

impl Tether {
    /// The admin endpoint's address (tether must run with `--admin 127.0.0.1:0`), read from its
    /// "admin endpoint on http://ADDR" log line.
    pub fn admin_addr(&self) -> SocketAddr {
        let needle = "admin endpoint on http://";
        assert!(
            self.wait_for_log(needle, Duration::from_secs(5)),
            "no admin endpoint line (is --admin set?):\n{}",
            self.log_lines().join("\n")
        );
        self.log_lines()
            .iter()
            .find_map(|l| l.split(needle).nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .expect("admin address")
    }

    /// The Prometheus text of `/metrics` on the admin endpoint at `admin`.
    pub fn metrics_text(admin: SocketAddr) -> String {
        let mut s = TcpStream::connect(admin).expect("admin connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).expect("read /metrics");
        assert!(
            text.starts_with("HTTP/1.1 200"),
            "/metrics answered {:?}",
            text.lines().next()
        );
        text.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default()
    }
}

/// The value of the unlabelled sample `name` in Prometheus text (None when absent). Parsed as a
/// float: a gauge may be rendered either way.
pub fn prom_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

/// CPU time process `pid` has used so far (user + system, all threads), from /proc/PID/stat.
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) is in parentheses and may hold spaces: count from after it.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields
        .get(11..13)
        .map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros(ticks * 1_000_000 / hz)
}

/// Resident set size of process `pid` in bytes (VmRSS of /proc/PID/status); 0 when unreadable.
pub fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Caps the kernel receive buffer of `stream` (SO_RCVBUF; the kernel doubles the value for its
/// bookkeeping and turns autotuning off). A reader pausing between reads then really holds the
/// sender back instead of letting megabytes pile up in loopback buffers.
pub fn set_recv_buffer(stream: &TcpStream, bytes: usize) {
    use std::os::fd::AsRawFd;
    let v = bytes as libc::c_int;
    // SAFETY: setsockopt reads one c_int from a pointer to `v`, which outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &v as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUF: {}", io::Error::last_os_error());
}

// ---------------------------------------------------------------------------------------------
// The admin endpoint (--admin 127.0.0.1:0): what tests wait on instead of sleeping.
// ---------------------------------------------------------------------------------------------

/// GET `path` from the admin endpoint: (status, body).
pub fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("admin connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n").as_bytes())
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The admin endpoint's address of `t` (see [`Tether::admin_addr`]).
pub fn admin_addr(t: &Tether) -> SocketAddr {
    t.admin_addr()
}

/// The value of an unlabelled sample in Prometheus text (panics when it is missing).
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("{name} missing"))
        .trim()
        .parse()
        .unwrap()
}

/// `name` from a fresh /metrics scrape of the admin endpoint at `admin`.
pub fn scrape(admin: SocketAddr, name: &str) -> u64 {
    let (status, text) = admin_get(admin, "/metrics");
    assert_eq!(status, 200, "{text}");
    metric(&text, name)
}

// ---------------------------------------------------------------------------------------------
// Which worker serves a connection: for tests that must place a request on a given worker.
// ---------------------------------------------------------------------------------------------

/// The worker of `t` serving `client`'s connection: the one whose request counter
/// (`tether_worker_requests_total` on the admin endpoint) a plain GET of `probe` on it moves.
/// `probe` must get a complete answer from the upstream, and tether must have no other traffic
/// meanwhile. The connection stays open for the next request.
pub fn serving_worker(t: &Tether, client: &mut Client, probe: &str) -> usize {
    let admin = t.admin_addr();
    let counts = || -> Vec<f64> {
        let text = Tether::metrics_text(admin);
        (0..)
            .map_while(|w| {
                prom_value(
                    &text,
                    &format!("tether_worker_requests_total{{worker=\"{w}\"}}"),
                )
            })
            .collect()
    };
    let before = counts();
    let r = client.get(probe);
    assert_eq!(r.status, 200, "the probe request {probe}");
    let after = counts();
    let moved: Vec<usize> = (0..after.len())
        .filter(|&w| after[w] != before.get(w).copied().unwrap_or(0.0))
        .collect();
    assert_eq!(
        moved.len(),
        1,
        "one worker served the probe: {before:?} -> {after:?}"
    );
    moved[0]
}

/// A keep-alive connection to `t` that worker `avoid` does not serve (SO_REUSEPORT spreads
/// connections over the workers by their ports: up to 40 tries), found with [`serving_worker`].
pub fn connection_not_on(t: &Tether, avoid: usize, probe: &str) -> Client {
    (0..40)
        .map(|_| Client::connect(t.addr))
        .find_map(|mut c| (serving_worker(t, &mut c, probe) != avoid).then_some(c))
        .unwrap_or_else(|| panic!("40 connections in a row landed on worker {avoid}"))
}

/// The worker whose rows on the admin endpoint's /streams (at `admin`) show a stream of `path`
/// (in `state`, when given: "held", "following", ...); None when no worker does.
pub fn worker_with_stream(admin: SocketAddr, path: &str, state: Option<&str>) -> Option<usize> {
    let (_, json) = admin_get(admin, "/streams");
    let v: serde_json::Value = serde_json::from_str(&json).expect("/streams is JSON");
    v["workers"].as_array()?.iter().find_map(|w| {
        let found = w["streams"].as_array()?.iter().any(|s| {
            s["path"].as_str() == Some(path)
                && state.is_none_or(|want| s["state"].as_str() == Some(want))
        });
        found.then(|| w["worker"].as_u64().unwrap() as usize)
    })
}
