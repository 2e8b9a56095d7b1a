//! One client connection: the keep-alive request loop and the plain HTTP endpoints.
//!
//! Reading: an idle connection waits with `readable()` and holds no buffer (about 0.5 KB per
//! idle connection instead of a pinned 16 KiB read); a request is read into a buffer that
//! is released again once nothing of the next request is buffered. Every read that is
//! started is awaited to completion (never raced, never dropped), so no bytes are lost on
//! io_uring; only buffer-less waits (`readable()`, timers) are raced, against the kill switch.
//!
//! Cancel-safety: every async fn below that touches the socket is NOT cancel-safe (it owns
//! a buffer or is part-way through a request) and is always awaited to completion; the one
//! exception is [`Conn::sleep_until`]. A kill reaches them through the socket shutdown
//! (reads return 0, writes fail) and the kill switch (timers).

use std::io;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::OnceLock;

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use monoio::time::Instant;

use super::http::{
    find_head_end, parse_head, push_hex, write_head, BodyDecoder, RequestError, RequestHead,
    ResponseBody, MAX_HEAD_BYTES,
};
use super::query::{
    parse_u64, split_target, BytesFraming, BytesParams, CommonParams, DelayParams, SseParams,
};
use super::worker::{Registration, Worker};
use crate::checksum::{fnv1a64, FNV1A64_OFFSET_BASIS};

/// Bytes requested per read while a request body streams in (`/echo`, `/sum`, drains).
pub(crate) const BODY_READ_BYTES: usize = 64 * 1024;
/// Initial room for a request head; doubled while a head grows, up to [`MAX_HEAD_BYTES`].
const HEAD_READ_BYTES: usize = 4 * 1024;
/// Bytes per write of large generated bodies (`/bytes`).
const BODY_WRITE_BYTES: usize = 64 * 1024;
/// Bodies up to this length go out in the same write as their head.
const INLINE_BODY_BYTES: usize = 16 * 1024;
/// Body length of `/small`.
pub const SMALL_BODY_BYTES: usize = 100;
/// Period of the generated body pattern: byte i is `(i % 251) as u8`.
pub const PATTERN_PERIOD: usize = 251;

/// What the connection does after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// Read the next request.
    KeepAlive,
    /// Close normally (FIN).
    Close,
    /// Close with RST (SO_LINGER 0).
    Reset,
    /// The client left or the worker is being killed: just drop the socket.
    Gone,
}

/// A client connection and its worker.
pub(crate) struct Conn {
    /// The socket.
    pub(crate) stream: TcpStream,
    /// Connection id (accept order across all threads, from 1).
    pub(crate) id: u64,
    /// The worker thread's state (kill switch, shared log).
    pub(crate) worker: Rc<Worker>,
}

/// Serves one connection until it closes; closes it the way the last response asked.
pub(crate) async fn serve(
    stream: TcpStream,
    id: u64,
    worker: Rc<Worker>,
    registration: Registration,
) {
    // Unregistered (for the kill sweep) when `_registration` drops, right after `conn`
    // (declared later, so dropped first) closed the socket, with no await in between.
    let _registration = registration;
    let mut conn = Conn { stream, id, worker };
    let next = conn.run().await;
    if next == Next::Reset {
        set_linger_zero(conn.stream.as_raw_fd());
    }
}

/// SO_LINGER {on, 0}: the next close sends RST and discards unsent data.
pub(crate) fn set_linger_zero(fd: i32) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `fd` is an open socket owned by the caller; the option value is a valid
    // `linger` whose exact size is passed.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &linger as *const libc::linger as *const libc::c_void,
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

/// 100 bytes of the body pattern, as `/small` sends them.
fn pattern() -> &'static [u8] {
    static PATTERN: OnceLock<Vec<u8>> = OnceLock::new();
    PATTERN.get_or_init(|| {
        (0..BODY_WRITE_BYTES + PATTERN_PERIOD)
            .map(|i| (i % PATTERN_PERIOD) as u8)
            .collect()
    })
}

/// `len` bytes of the pattern as they appear at body offset `offset` (`len` at most
/// [`BODY_WRITE_BYTES`]).
fn pattern_at(offset: u64, len: usize) -> &'static [u8] {
    debug_assert!(len <= BODY_WRITE_BYTES);
    let start = (offset % PATTERN_PERIOD as u64) as usize;
    &pattern()[start..start + len]
}

/// Prebuilt `/small` responses: the keep-alive req/s path is one write of static bytes.
struct SmallResponses {
    get: Vec<u8>,
    head: Vec<u8>,
}

fn small_responses() -> &'static SmallResponses {
    static SMALL: OnceLock<SmallResponses> = OnceLock::new();
    SMALL.get_or_init(|| {
        let mut head = Vec::new();
        write_head(
            &mut head,
            200,
            Some("application/octet-stream"),
            ResponseBody::Length(SMALL_BODY_BYTES as u64),
            false,
            &[],
        );
        let mut get = head.clone();
        get.extend_from_slice(pattern_at(0, SMALL_BODY_BYTES));
        SmallResponses { get, head }
    })
}

/// What a request body is used for while it streams in.
enum Sink {
    /// Read and dropped (every endpoint but `/echo` and `/sum`).
    Discard,
    /// `/sum`: length and FNV-1a 64 so far.
    Sum { len: u64, hash: u64 },
    /// `/echo`: sent back as it arrives, as chunks or raw (`Content-Length` echo).
    Echo { chunked: bool },
}

impl Sink {
    fn take(&mut self, data: &[u8], out: &mut Vec<u8>) {
        match self {
            Sink::Discard => {}
            Sink::Sum { len, hash } => {
                *len += data.len() as u64;
                *hash = fnv1a64(*hash, data);
            }
            Sink::Echo { chunked: true } => {
                push_hex(out, data.len() as u64);
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
            }
            Sink::Echo { chunked: false } => out.extend_from_slice(data),
        }
    }
}

impl Conn {
    /// True once the worker is being killed.
    pub(crate) fn killed(&self) -> bool {
        self.worker.kill.is_fired()
    }

    /// Writes all of `buf`. Not cancel-safe (it owns the buffer): always awaited; a kill
    /// reaches it through the socket shutdown.
    pub(crate) async fn write<T: IoBuf + 'static>(&mut self, buf: T) -> (io::Result<()>, T) {
        let (res, buf) = self.stream.write_all(buf).await;
        (res.map(|_| ()), buf)
    }

    /// Writes `buf[start..]`, first with a direct send (no trip through the driver, see
    /// `direct.rs`), the rest, if the socket did not take it all, through the driver.
    /// For a new stream's head and first event. Not cancel-safe, like [`Conn::write`].
    pub(crate) async fn write_now(
        &mut self,
        buf: Vec<u8>,
        start: usize,
    ) -> (io::Result<()>, Vec<u8>) {
        let sent = start + super::direct::send_now(self.stream.as_raw_fd(), &buf[start..]);
        if sent == buf.len() {
            return (Ok(()), buf);
        }
        let (res, slice) = self.write(buf.slice(sent..)).await;
        (res, slice.into_inner())
    }

    /// Sleeps until `deadline`; false when the worker is killed first. Cancel-safe.
    pub(crate) async fn sleep_until(&self, deadline: Instant) -> bool {
        self.worker
            .kill
            .guard(super::kill::sleep_until(deadline))
            .await
            .is_some()
    }

    /// Waits until the client closes its side (or the socket fails), until `deadline` when
    /// given, or until a kill. Bytes the client sends meanwhile are read and dropped.
    /// Returns true when the deadline passed with the client still there.
    /// Not cancel-safe (it may be in a read): awaited to completion.
    pub(crate) async fn wait_client_gone(&mut self, deadline: Option<Instant>) -> bool {
        loop {
            let readable = self.stream.readable(false);
            let waited = match deadline {
                Some(d) => {
                    let sleep = super::kill::sleep_until(d);
                    self.worker.kill.guard(first_of(readable, sleep)).await
                }
                None => {
                    self.worker
                        .kill
                        .guard(async { Either::Left(readable.await) })
                        .await
                }
            };
            match waited {
                None | Some(Either::Left(Err(_))) => return false,
                Some(Either::Right(())) => return true,
                Some(Either::Left(Ok(()))) => {
                    // Readable: EOF, an error, or bytes to drop. The read is awaited in full.
                    let (res, _) = self.stream.read(vec![0u8; 512]).await;
                    match res {
                        Ok(0) | Err(_) => return false,
                        Ok(_) => {}
                    }
                }
            }
        }
    }

    /// The request loop.
    async fn run(&mut self) -> Next {
        // A new connection's request is usually there already (its accept waited for the
        // driver's round): take it now instead of waiting a round for `readable()` and another
        // for the read (`direct.rs`).
        let mut inbuf: Vec<u8> = Vec::with_capacity(HEAD_READ_BYTES);
        if super::direct::recv_now(self.stream.as_raw_fd(), &mut inbuf) == 0 {
            // Not there yet: wait as an idle connection does, without a buffer.
            inbuf = Vec::new();
        }
        loop {
            let head = match self.read_head(&mut inbuf).await {
                Ok(head) => head,
                Err(next) => return next,
            };
            self.worker.shared.record(&head, self.id);
            let next = self.respond(&head, &mut inbuf).await;
            if next != Next::KeepAlive {
                return next;
            }
            if self.killed() {
                return Next::Gone;
            }
            if inbuf.is_empty() {
                // Release the read buffer: an idle connection keeps none.
                inbuf = Vec::new();
            }
        }
    }

    /// Reads until `inbuf` holds a complete head and parses it. Bytes after the head stay
    /// in `inbuf`. On error the error response has been sent.
    async fn read_head(&mut self, inbuf: &mut Vec<u8>) -> Result<RequestHead, Next> {
        let mut scanned = 0;
        loop {
            if !inbuf.is_empty() {
                if let Some(len) = find_head_end(inbuf, &mut scanned) {
                    return match parse_head(inbuf, len) {
                        Ok(head) => Ok(head),
                        Err(e) => Err(Box::pin(self.request_error(&e)).await),
                    };
                }
                if inbuf.len() >= MAX_HEAD_BYTES {
                    let e = RequestError::HeadTooLarge;
                    return Err(Box::pin(self.request_error(&e)).await);
                }
            } else {
                // Idle between requests: wait without holding a buffer.
                match self.worker.kill.guard(self.stream.readable(false)).await {
                    Some(Ok(())) => {}
                    None | Some(Err(_)) => return Err(Next::Gone),
                }
            }
            if self.killed() {
                return Err(Next::Gone);
            }
            let room = inbuf.capacity() - inbuf.len();
            if room < HEAD_READ_BYTES / 2 {
                inbuf.reserve(HEAD_READ_BYTES.max(inbuf.len()));
            }
            match self.read_more(inbuf).await {
                Ok(0) | Err(_) => return Err(Next::Gone),
                Ok(_) => {}
            }
        }
    }

    /// Appends one read's worth of bytes to `buf` (which must have spare capacity).
    /// Always awaited to completion: no data can be lost.
    async fn read_more(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        debug_assert!(buf.capacity() > buf.len());
        let owned = std::mem::take(buf);
        let len = owned.len();
        let (res, slice) = self.stream.read(owned.slice_mut(len..)).await;
        *buf = slice.into_inner();
        res
    }

    /// Answers a request that could not be read and closes.
    async fn request_error(&mut self, e: &RequestError) -> Next {
        let body = format!("{e}\n");
        self.simple(e.status(), &body, true, false).await;
        Next::Close
    }

    /// Sends a small text response; returns KeepAlive or Close (Gone when the write failed).
    pub(crate) async fn simple(
        &mut self,
        code: u16,
        body: &str,
        close: bool,
        head_only: bool,
    ) -> Next {
        let mut out = Vec::with_capacity(128 + body.len());
        let framing = if matches!(code, 100..=199 | 204 | 304) {
            ResponseBody::Empty
        } else {
            ResponseBody::Length(body.len() as u64)
        };
        write_head(&mut out, code, Some("text/plain"), framing, close, &[]);
        if !head_only && framing != ResponseBody::Empty {
            out.extend_from_slice(body.as_bytes());
        }
        self.finish(out, close).await
    }

    /// Writes a complete response and says what follows.
    async fn finish<T: IoBuf + 'static>(&mut self, out: T, close: bool) -> Next {
        match self.write(out).await.0 {
            Ok(()) if close => Next::Close,
            Ok(()) => Next::KeepAlive,
            Err(_) => Next::Gone,
        }
    }

    /// Reads the request body to its end, feeding it to `sink`; `Err` holds what the
    /// connection must do instead (the body was malformed or the client left).
    async fn consume_body(
        &mut self,
        head: &RequestHead,
        inbuf: &mut Vec<u8>,
        sink: &mut Sink,
        response_started: bool,
    ) -> Result<(), Next> {
        let Some(mut decoder) = BodyDecoder::for_request(head.body) else {
            return Ok(());
        };
        if head.expect_continue {
            if let (Err(_), _) = self.write(&b"HTTP/1.1 100 Continue\r\n\r\n"[..]).await {
                return Err(Next::Gone);
            }
        }
        let mut out = Vec::new();
        loop {
            let consumed = match decoder.decode(inbuf, |data| sink.take(data, &mut out)) {
                Ok(n) => n,
                Err(e) => {
                    return Err(if response_started {
                        Next::Close
                    } else {
                        self.request_error(&e).await
                    })
                }
            };
            inbuf.drain(..consumed);
            if !out.is_empty() {
                let (res, back) = self.write(out).await;
                if res.is_err() {
                    return Err(Next::Gone);
                }
                out = back;
                out.clear();
            }
            if decoder.is_done() {
                return Ok(());
            }
            debug_assert!(inbuf.is_empty());
            if self.killed() {
                return Err(Next::Gone);
            }
            if inbuf.capacity() < BODY_READ_BYTES {
                inbuf.reserve(BODY_READ_BYTES);
            }
            match self.read_more(inbuf).await {
                Ok(0) | Err(_) => return Err(Next::Gone),
                Ok(_) => {}
            }
        }
    }

    /// Routes one request and answers it.
    async fn respond(&mut self, head: &RequestHead, inbuf: &mut Vec<u8>) -> Next {
        // Only `/headers` needs the raw head: copy it for that path alone.
        let raw_head = if head.target.starts_with("/headers") {
            inbuf[..head.head_len].to_vec()
        } else {
            Vec::new()
        };
        inbuf.drain(..head.head_len);
        let (path, query) = split_target(&head.target);
        let head_only = head.method == "HEAD";
        let close_asked = !head.keep_alive;

        // The fast path: prebuilt bytes, one write.
        if path == "/small" && query.is_empty() && head.body == super::http::RequestBody::None {
            let small = small_responses();
            let bytes: &'static [u8] = if head_only { &small.head } else { &small.get };
            return self.finish(bytes, close_asked).await;
        }

        let is_echo = path == "/echo" || path == "/sum";
        if !is_echo {
            if let Err(next) = self
                .consume_body(head, inbuf, &mut Sink::Discard, false)
                .await
            {
                return next;
            }
        }
        let common = match CommonParams::parse(query) {
            Ok(c) => c,
            Err(e) => return self.bad_request(head, inbuf, &e.to_string(), is_echo).await,
        };
        let close = close_asked || common.conn_close;

        match path {
            "/small" => {
                let mut out = Vec::with_capacity(256);
                write_head(
                    &mut out,
                    200,
                    Some("application/octet-stream"),
                    ResponseBody::Length(SMALL_BODY_BYTES as u64),
                    close,
                    &[],
                );
                if !head_only {
                    out.extend_from_slice(pattern_at(0, SMALL_BODY_BYTES));
                }
                self.finish(out, close).await
            }
            "/bytes" => match BytesParams::parse(query) {
                Ok(p) => self.bytes(head, &p, close, head_only).await,
                Err(e) => self.simple(400, &format!("{e}\n"), close, head_only).await,
            },
            "/echo" | "/sum" if matches!(head.method.as_str(), "POST" | "PUT") => {
                if path == "/echo" {
                    self.echo(head, inbuf, close).await
                } else {
                    self.sum(head, inbuf, close).await
                }
            }
            "/echo" | "/sum" => {
                // Not read: the body (if any) is not drained, so the connection closes.
                let mut out = Vec::new();
                let body = b"use POST or PUT\n";
                write_head(
                    &mut out,
                    405,
                    Some("text/plain"),
                    ResponseBody::Length(body.len() as u64),
                    true,
                    &[("Allow", "POST, PUT")],
                );
                if !head_only {
                    out.extend_from_slice(body);
                }
                self.finish(out, true).await
            }
            "/headers" => {
                let mut out = Vec::with_capacity(128 + raw_head.len());
                write_head(
                    &mut out,
                    200,
                    Some("text/plain"),
                    ResponseBody::Length(raw_head.len() as u64),
                    close,
                    &[],
                );
                if !head_only {
                    out.extend_from_slice(&raw_head);
                }
                self.finish(out, close).await
            }
            "/delay" => match DelayParams::parse(query) {
                Ok(p) if p.n > BODY_WRITE_BYTES as u64 => {
                    let why = format!("/delay supports n up to {BODY_WRITE_BYTES}\n");
                    self.simple(400, &why, close, head_only).await
                }
                Ok(p) => self.delay(&p, close, head_only).await,
                Err(e) => self.simple(400, &format!("{e}\n"), close, head_only).await,
            },
            "/sse" if matches!(head.method.as_str(), "GET" | "POST" | "HEAD") => {
                if inbuf.is_empty() {
                    // A stream may last long: hold no read buffer meanwhile.
                    *inbuf = Vec::new();
                }
                match SseParams::parse(query) {
                    Ok(p) => super::stream::serve_sse(self, head, &p, close).await,
                    Err(e) => self.simple(400, &format!("{e}\n"), close, head_only).await,
                }
            }
            _ if path.starts_with("/status/") => {
                self.status(&path["/status/".len()..], close, head_only)
                    .await
            }
            _ => self.simple(404, "not found\n", close, head_only).await,
        }
    }

    /// 400 for a bad query; for `/echo` and `/sum` the body was not read, so close.
    async fn bad_request(
        &mut self,
        head: &RequestHead,
        _inbuf: &mut Vec<u8>,
        why: &str,
        body_unread: bool,
    ) -> Next {
        let close = body_unread && head.body != super::http::RequestBody::None;
        let close = close || !head.keep_alive;
        self.simple(400, &format!("{why}\n"), close, head.method == "HEAD")
            .await
    }

    /// `GET /status/CODE`.
    async fn status(&mut self, code: &str, close: bool, head_only: bool) -> Next {
        let code = match parse_u64(code) {
            Some(c) if (100..=999).contains(&c) && c != 101 => c as u16,
            _ => {
                return self
                    .simple(
                        400,
                        "status must be 100..=999 (not 101)\n",
                        close,
                        head_only,
                    )
                    .await
            }
        };
        if (100..200).contains(&code) {
            // An interim response, then a final 200.
            let mut out = Vec::new();
            write_head(&mut out, code, None, ResponseBody::Empty, false, &[]);
            let body = b"ok\n";
            write_head(
                &mut out,
                200,
                Some("text/plain"),
                ResponseBody::Length(body.len() as u64),
                close,
                &[],
            );
            if !head_only {
                out.extend_from_slice(body);
            }
            return self.finish(out, close).await;
        }
        let body = format!("{code} {}\n", super::http::reason(code));
        self.simple(code, &body, close, head_only).await
    }

    /// `GET /bytes?n=N[&chunked=1&chunk=K|&close=1]`.
    async fn bytes(
        &mut self,
        head: &RequestHead,
        p: &BytesParams,
        close: bool,
        head_only: bool,
    ) -> Next {
        let framing = match p.framing {
            // HTTP/1.0 has no chunked coding: fall back to close-delimited.
            BytesFraming::Chunked { .. } if head.version_minor == 0 => BytesFraming::Close,
            f => f,
        };
        let (body, close) = match framing {
            BytesFraming::Length => (ResponseBody::Length(p.n), close),
            BytesFraming::Chunked { .. } => (ResponseBody::Chunked, close),
            BytesFraming::Close => (ResponseBody::UntilClose, true),
        };
        let mut out = Vec::with_capacity(256);
        write_head(
            &mut out,
            200,
            Some("application/octet-stream"),
            body,
            close,
            &[],
        );
        if head_only {
            return self.finish(out, close).await;
        }
        match framing {
            BytesFraming::Length | BytesFraming::Close => {
                if p.n <= INLINE_BODY_BYTES as u64 {
                    out.extend_from_slice(pattern_at(0, p.n as usize));
                    return self.finish(out, close).await;
                }
                if self.write(out).await.0.is_err() {
                    return Next::Gone;
                }
                let mut offset = 0u64;
                while offset < p.n {
                    let len = (p.n - offset).min(BODY_WRITE_BYTES as u64) as usize;
                    if self.write(pattern_at(offset, len)).await.0.is_err() || self.killed() {
                        return Next::Gone;
                    }
                    offset += len as u64;
                }
                if close {
                    Next::Close
                } else {
                    Next::KeepAlive
                }
            }
            BytesFraming::Chunked { chunk } => {
                let mut offset = 0u64;
                loop {
                    // Whole chunks into writes of about BODY_WRITE_BYTES.
                    while offset < p.n && out.len() < BODY_WRITE_BYTES {
                        let len = (p.n - offset).min(chunk as u64) as usize;
                        push_hex(&mut out, len as u64);
                        out.extend_from_slice(b"\r\n");
                        let mut done = 0;
                        while done < len {
                            let piece = (len - done).min(BODY_WRITE_BYTES);
                            out.extend_from_slice(pattern_at(offset + done as u64, piece));
                            done += piece;
                        }
                        out.extend_from_slice(b"\r\n");
                        offset += len as u64;
                    }
                    let last = offset >= p.n;
                    if last {
                        out.extend_from_slice(b"0\r\n\r\n");
                    }
                    let (res, back) = self.write(out).await;
                    if res.is_err() || self.killed() {
                        return Next::Gone;
                    }
                    if last {
                        return if close { Next::Close } else { Next::KeepAlive };
                    }
                    out = back;
                    out.clear();
                }
            }
        }
    }

    /// `POST|PUT /echo`: the body back as it arrives (same `Content-Length`, else chunked).
    async fn echo(&mut self, head: &RequestHead, inbuf: &mut Vec<u8>, close: bool) -> Next {
        let (framing, chunked) = match head.body {
            super::http::RequestBody::None => (ResponseBody::Length(0), false),
            super::http::RequestBody::Length { len } => (ResponseBody::Length(len), false),
            super::http::RequestBody::Chunked if head.version_minor == 0 => {
                (ResponseBody::UntilClose, false)
            }
            super::http::RequestBody::Chunked => (ResponseBody::Chunked, true),
        };
        let close = close || framing == ResponseBody::UntilClose;
        if head.expect_continue {
            // 100 Continue must precede the final head, which goes out before the body.
            if let (Err(_), _) = self.write(&b"HTTP/1.1 100 Continue\r\n\r\n"[..]).await {
                return Next::Gone;
            }
        }
        let mut out = Vec::new();
        write_head(
            &mut out,
            200,
            Some("application/octet-stream"),
            framing,
            close,
            &[],
        );
        if head.body == super::http::RequestBody::None {
            return self.finish(out, close).await;
        }
        if self.write(out).await.0.is_err() {
            return Next::Gone;
        }
        let no_continue = RequestHead {
            expect_continue: false,
            ..head.clone()
        };
        let mut sink = Sink::Echo { chunked };
        if let Err(next) = self
            .consume_body(&no_continue, inbuf, &mut sink, true)
            .await
        {
            return next;
        }
        if chunked {
            return self.finish(&b"0\r\n\r\n"[..], close).await;
        }
        if close {
            Next::Close
        } else {
            Next::KeepAlive
        }
    }

    /// `POST|PUT /sum`: `{"len":N,"fnv1a64":"<16 hex>"}` over the decoded body.
    async fn sum(&mut self, head: &RequestHead, inbuf: &mut Vec<u8>, close: bool) -> Next {
        let mut sink = Sink::Sum {
            len: 0,
            hash: FNV1A64_OFFSET_BASIS,
        };
        if let Err(next) = self.consume_body(head, inbuf, &mut sink, false).await {
            return next;
        }
        let Sink::Sum { len, hash } = sink else {
            unreachable!("sum sink")
        };
        let body = format!("{{\"len\":{len},\"fnv1a64\":\"{hash:016x}\"}}");
        let mut out = Vec::new();
        write_head(
            &mut out,
            200,
            Some("application/json"),
            ResponseBody::Length(body.len() as u64),
            close,
            &[],
        );
        out.extend_from_slice(body.as_bytes());
        self.finish(out, close).await
    }

    /// `GET /delay?ms=D[&body_stall_ms=S][&n=N]`.
    async fn delay(&mut self, p: &DelayParams, close: bool, head_only: bool) -> Next {
        if !p.head_delay.is_zero() && !self.sleep_until(Instant::now() + p.head_delay).await {
            return Next::Gone;
        }
        let mut out = Vec::with_capacity(256);
        write_head(
            &mut out,
            200,
            Some("application/octet-stream"),
            ResponseBody::Length(p.n),
            close,
            &[],
        );
        if head_only {
            return self.finish(out, close).await;
        }
        let n = p.n as usize;
        match p.body_stall {
            None => {
                out.extend_from_slice(pattern_at(0, n));
                self.finish(out, close).await
            }
            Some(stall) => {
                let half = n / 2;
                out.extend_from_slice(pattern_at(0, half));
                if self.write(out).await.0.is_err() {
                    return Next::Gone;
                }
                if !self.sleep_until(Instant::now() + stall).await {
                    return Next::Gone;
                }
                self.finish(pattern_at(half as u64, n - half), close).await
            }
        }
    }
}

/// The output of [`first_of`].
pub(crate) enum Either<A, B> {
    Left(A),
    Right(B),
}

/// Races two futures, preferring `a`; the loser is dropped. Only for futures that own no
/// IO buffer.
pub(crate) async fn first_of<A, B>(a: A, b: B) -> Either<A::Output, B::Output>
where
    A: std::future::Future,
    B: std::future::Future,
{
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(v) = a.as_mut().poll(cx) {
            return std::task::Poll::Ready(Either::Left(v));
        }
        b.as_mut().poll(cx).map(Either::Right)
    })
    .await
}

#[cfg(test)]
mod tests {
    /// Every connection's task is allocated at its largest state's size, so this size is the
    /// floor of the per-stream RSS (about 4.3-4.7 KB per rate=1 stream was measured in total
    /// with a 1.8 KB task). An inline monoio `Sleep` (128-byte aligned) once made it 5 KB.
    #[test]
    fn connection_task_stays_small() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let s = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let stream = monoio::net::TcpStream::from_std(s).unwrap();
            let shared = std::sync::Arc::new(super::super::log::Shared::new(true, None));
            let worker = std::rc::Rc::new(super::super::worker::Worker::new_for_test(shared));
            let registration = worker.register(-1);
            let task = super::serve(stream, 1, worker.clone(), registration);
            let size = std::mem::size_of_val(&task);
            assert!(size <= 2560, "connection task is {size} bytes");
        });
    }
}
