//! Shared test harness: start the real `tether` binary on loopback, talk to it over real sockets.
//! Every wait is bounded (socket timeouts, deadlines), and every child is killed on drop.

#![allow(dead_code)]

pub mod sse_client;

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
        if !extra.iter().any(|a| *a == "--workers") {
            args.push("--workers".into());
            args.push("2".into());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        Self::start_args(&args)
            .unwrap_or_else(|log| panic!("tether did not start:\n{}", log.join("\n")))
    }

    /// Starts tether with exactly `args`; Err carries its log when it exits before listening.
    pub fn start_args(args: &[String]) -> Result<Tether, Vec<String>> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
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
