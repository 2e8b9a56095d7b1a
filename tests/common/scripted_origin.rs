//! An origin whose every answer the test writes: it records each request (head and decoded
//! body) and answers with what the test's handler returns, a plain response or an SSE body
//! that ends or stays open. For tests that must see exactly what crossed the proxy.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::IO_TIMEOUT;

/// One request as the origin received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the origin answers.
pub enum Reply {
    /// A complete response with a Content-Length; the connection stays open for the next.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// `200 text/event-stream`, close-delimited: these blocks (each written as given, so
    /// include the blank line), then the connection closes (`hold` None) or stays open for
    /// `hold`.
    Sse {
        blocks: Vec<String>,
        hold: Option<Duration>,
    },
    /// `200 text/event-stream`, chunked: the blocks one chunk each, `every` apart (the first at
    /// once, with the head), then the last-chunk, and the connection stays open for the next
    /// request. A client that goes away meanwhile (EOF, reset, a failed write) stops the stream;
    /// the origin records it ([`ScriptedOrigin::cuts`]).
    Paced {
        blocks: Vec<String>,
        every: Duration,
    },
}

impl Reply {
    pub fn json(body: &str) -> Reply {
        Reply::Full {
            status: 200,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.as_bytes().to_vec(),
        }
    }

    pub fn text(status: u16, body: &str) -> Reply {
        Reply::Full {
            status,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: body.as_bytes().to_vec(),
        }
    }
}

type Handler = dyn Fn(&Recorded) -> Reply + Send + Sync;

/// A paced stream ([`Reply::Paced`]) the client left before its end.
#[derive(Debug, Clone)]
pub struct Cut {
    /// The request target of the stream.
    pub target: String,
    /// Blocks written before the origin saw the client gone.
    pub blocks_sent: usize,
    /// When the origin saw it.
    pub at: Instant,
}

/// What the origin's connection threads record.
#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<Recorded>>,
    cuts: Mutex<Vec<Cut>>,
}

pub struct ScriptedOrigin {
    pub addr: SocketAddr,
    seen: Arc<Seen>,
}

impl ScriptedOrigin {
    pub fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> ScriptedOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let handler: Arc<Handler> = Arc::new(handler);
        let shared = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (handler, seen) = (handler.clone(), shared.clone());
                std::thread::spawn(move || serve(conn, &*handler, &seen));
            }
        });
        ScriptedOrigin { addr, seen }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.requests.lock().unwrap().clone()
    }

    /// Every paced stream the client left before its end, in the order the origin saw it.
    pub fn cuts(&self) -> Vec<Cut> {
        self.seen.cuts.lock().unwrap().clone()
    }
}

fn serve(mut conn: TcpStream, handler: &Handler, seen: &Seen) {
    conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut buf = Vec::new();
    loop {
        let Ok(Some(request)) = read_request(&mut conn, &mut buf) else {
            return;
        };
        seen.requests.lock().unwrap().push(request.clone());
        match handler(&request) {
            Reply::Full {
                status,
                headers,
                body,
            } => {
                let mut out = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
                for (n, v) in headers {
                    out.push_str(&format!("{n}: {v}\r\n"));
                }
                out.push_str("\r\n");
                let mut bytes = out.into_bytes();
                bytes.extend_from_slice(&body);
                if conn.write_all(&bytes).is_err() {
                    return;
                }
            }
            Reply::Sse { blocks, hold } => {
                let mut out = String::from(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
                );
                for b in blocks {
                    out.push_str(&b);
                }
                let _ = conn.write_all(out.as_bytes());
                if let Some(hold) = hold {
                    std::thread::sleep(hold);
                }
                return;
            }
            Reply::Paced { blocks, every } => {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n";
                let mut out = head.as_bytes().to_vec();
                let mut sent = 0;
                let mut gone = false;
                for (i, block) in blocks.iter().enumerate() {
                    if i > 0 && client_left_within(&mut conn, &mut buf, every) {
                        gone = true;
                        break;
                    }
                    out.extend_from_slice(format!("{:x}\r\n{block}\r\n", block.len()).as_bytes());
                    if conn.write_all(&out).is_err() {
                        gone = true;
                        break;
                    }
                    out.clear();
                    sent += 1;
                }
                if gone {
                    seen.cuts.lock().unwrap().push(Cut {
                        target: request.target.clone(),
                        blocks_sent: sent,
                        at: Instant::now(),
                    });
                    return;
                }
                // (The head too, when there was no block.)
                out.extend_from_slice(b"0\r\n\r\n");
                if conn.write_all(&out).is_err() {
                    return;
                }
                conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            }
        }
    }
}

/// Waits `wait` for the client to go away (EOF or reset) while a paced stream pauses; true when
/// it did. Bytes it sends meanwhile (a next request) are kept in `buf`.
fn client_left_within(conn: &mut TcpStream, buf: &mut Vec<u8>, wait: Duration) -> bool {
    let stop = Instant::now() + wait;
    loop {
        let left = stop.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        conn.set_read_timeout(Some(left)).unwrap();
        match fill(conn, buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// Reads one request (head, then a Content-Length or chunked body); None at a clean end.
fn read_request(conn: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Option<Recorded>> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if fill(conn, buf)? == 0 {
            return Ok(None);
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end);
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_string();
    let target = first.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if let Some(len) = find("content-length") {
        let len: usize = len.parse().unwrap_or(0);
        while buf.len() < len {
            if fill(conn, buf)? == 0 {
                return Ok(None);
            }
        }
        body = buf.drain(..len).collect();
    } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let line_end = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                if fill(conn, buf)? == 0 {
                    return Ok(None);
                }
            };
            let size_text = String::from_utf8_lossy(&buf[..line_end]).into_owned();
            let size =
                usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap_or(0);
            buf.drain(..line_end + 2);
            while buf.len() < size + 2 {
                if fill(conn, buf)? == 0 {
                    return Ok(None);
                }
            }
            body.extend_from_slice(&buf[..size]);
            buf.drain(..size + 2);
            if size == 0 {
                break;
            }
        }
    }
    Ok(Some(Recorded {
        method,
        target,
        headers,
        body,
    }))
}

fn fill(conn: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    let mut tmp = [0u8; 16 * 1024];
    let n = conn.read(&mut tmp)?;
    buf.extend_from_slice(&tmp[..n]);
    Ok(n)
}
