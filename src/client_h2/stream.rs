//! One HTTP/2 stream, bridged to tether's HTTP/1.1 code over a socketpair.
//!
//! ```text
//! h2 stream ──HEADERS/DATA──▶ [request: HTTP/1.1 head + body] ──▶ socketpair ──▶ ClientConn<H2Side>
//!           ◀──HEADERS/DATA── [answer: head parsed, body unframed] ◀──┘   (exchange, SSE relay...)
//! ```
//!
//! Request: `:method :path HTTP/1.1`, `Host:` from `:authority`, the fields as sent (cookies
//! joined, hop-by-hop ones dropped; h2 already refuses Connection, Upgrade, Transfer-Encoding and
//! `te` other than trailers), `Connection: close` (one request per stream), and the body as
//! Content-Length or chunked. CONNECT (and so WebSocket over HTTP/2, RFC 8441, whose
//! `:protocol` h2 refuses as it is not enabled) is answered 501.
//!
//! Answer: the head is parsed (1xx skipped), hop-by-hop fields dropped, the body unframed
//! (Content-Length, chunked, or until the socket ends) and sent as DATA as the stream's window
//! allows. Nothing more is read from the socketpair until what was read went out, so a client
//! that stops reading backs up into the socketpair (bounded by BRIDGE_SOCKET_BUFFER) and tether's
//! HTTP/1.1 code sees a slow client and cuts it by its rules; the other streams go on.

use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::task::Poll;

use bytes::{Buf, Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::{HeaderName, Request, Response, StatusCode};
use monoio::net::TcpStream;

use crate::conn_io::recv_now;
use crate::http::{ChunkedDecoder, Decoded};
use crate::worker::WorkerCtx;

/// Largest read of an answer from the socketpair, in bytes: one stream's piece in flight.
pub const BRIDGE_READ_BYTES: usize = 16 * 1024;

/// SO_SNDBUF of each end of a stream's socketpair, in bytes (the kernel doubles it for its
/// bookkeeping): what a stream whose client does not read can hold in the kernel before
/// tether's code sees the client as not taking bytes (and counts its queue).
pub const BRIDGE_SOCKET_BUFFER: usize = 32 * 1024;

thread_local! {
    /// The worker's buffer for reads from stream bridges: filled and emptied within one step,
    /// never held across an await.
    static SCRATCH: std::cell::RefCell<Box<[MaybeUninit<u8>]>> =
        std::cell::RefCell::new(vec![MaybeUninit::uninit(); BRIDGE_READ_BYTES].into_boxed_slice());
}

/// Most header fields in an answer head the bridge reads (tether writes them; its own limit
/// for upstream heads is --max-headers).
const MAX_ANSWER_FIELDS: usize = 256;

/// Serves one stream until its answer is sent or the client resets it. Cancel-safe IO only
/// (readiness waits and non-blocking syscalls); runs as its own task.
pub(super) async fn serve(
    ctx: Rc<WorkerCtx>,
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    peer: SocketAddr,
) {
    if request.method() == http::Method::CONNECT {
        refuse(
            &mut respond,
            StatusCode::NOT_IMPLEMENTED,
            "CONNECT (and WebSocket) is not served over HTTP/2\n",
        );
        return;
    }
    let (parts, body) = request.into_parts();
    let has_body = !body.is_end_stream();
    let length = parts.headers.get(http::header::CONTENT_LENGTH).is_some();
    let chunked = has_body && !length;
    let head = request_head(&parts, chunked);
    let is_head = parts.method == http::Method::HEAD;
    let (ours, theirs) = match pair(peer) {
        Ok(p) => p,
        Err(e) => {
            crate::log_warn!("h2 stream from {peer}: no socketpair ({e}): 503");
            refuse(
                &mut respond,
                StatusCode::SERVICE_UNAVAILABLE,
                "no resources for the stream\n",
            );
            return;
        }
    };
    monoio::spawn(crate::proxy::conn::serve_h2_stream(
        ctx.clone(),
        theirs,
        peer,
        BytesMut::new(),
        false,
    ));
    let ours = Rc::new(ours);
    if has_body {
        monoio::spawn(send_request(ours.clone(), head, body, chunked));
    } else if send_all(&ours, &head).await.is_err() {
        return;
    }
    answer(&ours, respond, is_head).await;
}

/// A socketpair for a stream, as two monoio streams (only readiness waits and non-blocking
/// syscalls are used on them, which work on any stream socket).
fn pair(peer: SocketAddr) -> io::Result<(TcpStream, super::side::H2Side)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: socketpair writes two descriptors into `fds` on success.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are new and owned here.
    let (a, b) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    for fd in [&a, &b] {
        let size = BRIDGE_SOCKET_BUFFER as libc::c_int;
        // SAFETY: a valid descriptor and an int option.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    let a = TcpStream::from_std(std::net::TcpStream::from(a))?;
    let b = TcpStream::from_std(std::net::TcpStream::from(b))?;
    Ok((a, super::side::H2Side::new(b, peer)))
}

/// Answers `status` with a short text body (the stream's request is not served).
fn refuse(respond: &mut SendResponse<Bytes>, status: StatusCode, text: &'static str) {
    let response = Response::builder()
        .status(status)
        .header("content-type", "text/plain")
        .header("content-length", text.len())
        .body(())
        .expect("a valid response");
    if let Ok(mut send) = respond.send_response(response, false) {
        let _ = send.send_data(Bytes::from_static(text.as_bytes()), true);
    }
}

/// Fields that belong to one HTTP/1.1 connection, never forwarded either way (RFC 9110 7.6.1).
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "proxy-connection" | "transfer-encoding" | "upgrade" | "te"
    )
}

/// The HTTP/1.1 request head for a stream's request.
pub fn request_head(parts: &http::request::Parts, chunked: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    out.extend_from_slice(if target.is_empty() {
        b"/"
    } else {
        target.as_bytes()
    });
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let authority = parts.uri.authority().map(|a| a.as_str());
    if let Some(host) = authority {
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    let mut cookies: Vec<&[u8]> = Vec::new();
    for (name, value) in &parts.headers {
        if hop_by_hop(name) || (authority.is_some() && name == http::header::HOST) {
            continue;
        }
        if name == http::header::COOKIE {
            cookies.push(value.as_bytes());
            continue;
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !cookies.is_empty() {
        // RFC 9113 8.2.3: cookie fields split for compression are joined with "; ".
        out.extend_from_slice(b"cookie: ");
        out.extend_from_slice(&cookies.join(&b"; "[..]));
        out.extend_from_slice(b"\r\n");
    }
    if chunked {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out
}

/// Writes all of `data` to the socketpair: non-blocking sends and writability waits.
/// Cancel-safe (no op holds a buffer), though a cancelled call leaves part of `data` sent.
async fn send_all(sock: &TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        // SAFETY: `data` is valid for its length.
        let n = unsafe {
            libc::send(
                sock.as_raw_fd(),
                data.as_ptr().cast(),
                data.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n >= 0 {
            data = &data[n as usize..];
            continue;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock => sock.writable(false).await?,
            io::ErrorKind::Interrupted => {}
            _ => return Err(e),
        }
    }
    Ok(())
}

/// Writes the request head and its body (DATA, as chunks when it has no length), releasing
/// the stream's window as the socketpair takes each piece. Its own task.
async fn send_request(sock: Rc<TcpStream>, head: Vec<u8>, mut body: RecvStream, chunked: bool) {
    if send_all(&sock, &head).await.is_err() {
        return;
    }
    while let Some(data) = body.data().await {
        let Ok(data) = data else { return };
        let n = data.len();
        if n == 0 {
            continue;
        }
        let ok = if chunked {
            let size = format!("{n:x}\r\n");
            send_all(&sock, size.as_bytes()).await.is_ok()
                && send_all(&sock, &data).await.is_ok()
                && send_all(&sock, b"\r\n").await.is_ok()
        } else {
            send_all(&sock, &data).await.is_ok()
        };
        if !ok {
            return;
        }
        let _ = body.flow_control().release_capacity(n);
    }
    if chunked {
        let _ = send_all(&sock, b"0\r\n\r\n").await;
    }
}

/// How the answer's body is framed on the socketpair.
enum Framing {
    /// No body (HEAD, 204, 304).
    Empty,
    /// Content-Length: `remaining` bytes still to come.
    Length { remaining: u64 },
    /// Transfer-Encoding: chunked.
    Chunked { decoder: ChunkedDecoder },
    /// Until the socketpair ends.
    UntilClose,
}

/// Why a stream's answer stopped early.
enum Stop {
    /// The client reset the stream (or the connection went).
    Client,
    /// The socketpair failed or ended before a complete answer.
    Bridge,
}

/// Reads more of the answer into `buf` (at most BRIDGE_READ_BYTES), waiting for readability,
/// while watching for the client's reset. Ok(0) at the socketpair's end. Cancel-safe.
async fn read_some(
    sock: &TcpStream,
    buf: &mut BytesMut,
    send: Option<&mut SendStream<Bytes>>,
    respond: Option<&mut SendResponse<Bytes>>,
) -> Result<usize, Stop> {
    let fd = sock.as_raw_fd();
    let mut send = send;
    let mut respond = respond;
    loop {
        // Read into the worker's scratch and copy what came: a stream waiting for its next
        // event holds no buffer (a read parked on a buffer of its own would pin 16 KiB per
        // idle stream).
        let got = SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let read = recv_now(fd, &mut scratch[..])?;
            if let Some(n) = read {
                // SAFETY: recv initialised the first `n` bytes.
                let bytes = unsafe { std::slice::from_raw_parts(scratch.as_ptr().cast::<u8>(), n) };
                buf.extend_from_slice(bytes);
            }
            Ok::<_, io::Error>(read)
        });
        match got {
            Ok(Some(n)) => return Ok(n),
            Ok(None) => {}
            Err(_) => return Err(Stop::Bridge),
        }
        let reset = std::future::poll_fn(|cx| {
            let r = match (&mut send, &mut respond) {
                (Some(s), _) => s.poll_reset(cx),
                (None, Some(r)) => r.poll_reset(cx),
                (None, None) => Poll::Pending,
            };
            r.map(|_| ())
        });
        monoio::select! {
            _ = reset => return Err(Stop::Client),
            ready = sock.readable(false) => if ready.is_err() { return Err(Stop::Bridge) },
        }
    }
}

/// Sends `data` as DATA as the stream's window lets it out (waiting for capacity, watching for
/// the client's reset). Cancel-safe.
async fn send_body(send: &mut SendStream<Bytes>, mut data: Bytes) -> Result<(), Stop> {
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let got = std::future::poll_fn(|cx| {
            if send.poll_reset(cx).is_ready() {
                return Poll::Ready(Err(Stop::Client));
            }
            // Ready(0) says the capacity changed but is nothing yet: poll again, which
            // registers for the next change (h2 answers Pending then).
            loop {
                return match send.poll_capacity(cx) {
                    Poll::Ready(Some(Ok(0))) => continue,
                    Poll::Ready(Some(Ok(n))) => Poll::Ready(Ok(n)),
                    Poll::Ready(Some(Err(_)) | None) => Poll::Ready(Err(Stop::Client)),
                    Poll::Pending => Poll::Pending,
                };
            }
        })
        .await?;
        let piece = data.split_to(got.min(data.len()));
        send.send_data(piece, false).map_err(|_| Stop::Client)?;
    }
    Ok(())
}

/// Reads the answer from the socketpair and sends it on the stream.
async fn answer(sock: &TcpStream, mut respond: SendResponse<Bytes>, is_head: bool) {
    let mut buf = BytesMut::new();
    // The head (1xx ones skipped).
    let (response, framing) = loop {
        match parse_head(&buf, is_head) {
            Ok(Some((used, Some(head)))) => {
                buf.advance(used);
                break head;
            }
            Ok(Some((used, None))) => {
                buf.advance(used);
                continue;
            }
            Ok(None) => {}
            Err(()) => {
                respond.send_reset(h2::Reason::INTERNAL_ERROR);
                return;
            }
        }
        match read_some(sock, &mut buf, None, Some(&mut respond)).await {
            Ok(0) | Err(Stop::Bridge) => {
                respond.send_reset(h2::Reason::INTERNAL_ERROR);
                return;
            }
            Ok(_) => {}
            Err(Stop::Client) => return,
        }
    };
    let empty = matches!(framing, Framing::Empty | Framing::Length { remaining: 0 });
    let Ok(mut send) = respond.send_response(response, empty) else {
        return;
    };
    if empty {
        return;
    }
    let mut framing = framing;
    loop {
        // What `buf` holds of the body goes out first.
        while !buf.is_empty() {
            let data = match &mut framing {
                Framing::Empty => unreachable!("no body"),
                Framing::Length { remaining } => {
                    let take = (*remaining).min(buf.len() as u64) as usize;
                    *remaining -= take as u64;
                    buf.split_to(take).freeze()
                }
                Framing::UntilClose => buf.split().freeze(),
                Framing::Chunked { decoder } => match decoder.decode(&buf) {
                    Ok(Decoded::Data { start, end }) => {
                        buf.advance(start);
                        buf.split_to(end - start).freeze()
                    }
                    Ok(Decoded::NeedMore) => {
                        buf.clear();
                        Bytes::new()
                    }
                    Ok(Decoded::Done { .. }) => {
                        let _ = send.send_data(Bytes::new(), true);
                        return;
                    }
                    Err(_) => {
                        send.send_reset(h2::Reason::INTERNAL_ERROR);
                        return;
                    }
                },
            };
            if !data.is_empty() && send_body(&mut send, data).await.is_err() {
                return;
            }
            if let Framing::Length { remaining: 0 } = framing {
                let _ = send.send_data(Bytes::new(), true);
                return;
            }
        }
        // Nothing of the answer waits: let go of the last read's allocation (h2 holds the
        // DATA it has not sent) so that an idle stream holds no buffer.
        buf = BytesMut::new();
        match read_some(sock, &mut buf, Some(&mut send), None).await {
            Ok(0) => {
                if matches!(framing, Framing::UntilClose) {
                    let _ = send.send_data(Bytes::new(), true);
                } else {
                    // Cut before its end: the client must not take it as complete.
                    send.send_reset(h2::Reason::INTERNAL_ERROR);
                }
                return;
            }
            Ok(_) => {}
            Err(Stop::Client) => return,
            Err(Stop::Bridge) => {
                send.send_reset(h2::Reason::INTERNAL_ERROR);
                return;
            }
        }
    }
}

/// A parsed answer head: the response to send and how its body is framed; None for a 1xx
/// (skipped). Ok(None): the head is not complete yet. Err: not a head tether would write.
#[allow(clippy::type_complexity)]
fn parse_head(
    buf: &[u8],
    is_head: bool,
) -> Result<Option<(usize, Option<(Response<()>, Framing)>)>, ()> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_ANSWER_FIELDS];
    let mut parsed = httparse::Response::new(&mut fields);
    let used = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(()),
    };
    let code = parsed.code.ok_or(())?;
    if (100..200).contains(&code) {
        return Ok(Some((used, None)));
    }
    let status = StatusCode::from_u16(code).map_err(|_| ())?;
    let mut response = Response::builder().status(status);
    let mut chunked = false;
    let mut length: Option<u64> = None;
    // Fields the Connection field names are hop-by-hop too.
    let mut named: Vec<&str> = Vec::new();
    for field in parsed.headers.iter() {
        if field.name.eq_ignore_ascii_case("connection") {
            if let Ok(v) = std::str::from_utf8(field.value) {
                named.extend(v.split(',').map(str::trim));
            }
        }
    }
    for field in parsed.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| ())?;
        if name == http::header::TRANSFER_ENCODING {
            chunked = field.value.eq_ignore_ascii_case(b"chunked");
        }
        if name == http::header::CONTENT_LENGTH {
            length = std::str::from_utf8(field.value)
                .ok()
                .and_then(|v| v.trim().parse().ok());
        }
        if hop_by_hop(&name) || named.iter().any(|n| n.eq_ignore_ascii_case(name.as_str())) {
            continue;
        }
        response = response.header(name, field.value);
    }
    let framing = if is_head || code == 204 || code == 304 {
        Framing::Empty
    } else if chunked {
        Framing::Chunked {
            decoder: ChunkedDecoder::new(),
        }
    } else if let Some(remaining) = length {
        Framing::Length { remaining }
    } else {
        Framing::UntilClose
    };
    let response = response.body(()).map_err(|_| ())?;
    Ok(Some((used, Some((response, framing)))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(req: Request<()>) -> http::request::Parts {
        req.into_parts().0
    }

    #[test]
    fn request_heads_are_http1() {
        let req = Request::builder()
            .method("GET")
            .uri("https://example.com:8443/feed?x=1")
            .header("accept", "text/event-stream")
            .header("cookie", "a=1")
            .header("cookie", "b=2")
            .header("last-event-id", "7")
            .body(())
            .unwrap();
        let head = String::from_utf8(request_head(&parts(req), false)).unwrap();
        assert_eq!(
            head,
            "GET /feed?x=1 HTTP/1.1\r\nhost: example.com:8443\r\naccept: text/event-stream\r\nlast-event-id: 7\r\ncookie: a=1; b=2\r\nconnection: close\r\n\r\n"
        );
        let req = Request::builder()
            .method("POST")
            .uri("https://h/mcp")
            .header("te", "trailers")
            .body(())
            .unwrap();
        let head = String::from_utf8(request_head(&parts(req), true)).unwrap();
        assert_eq!(
            head,
            "POST /mcp HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn answer_heads_lose_hop_by_hop_fields() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\n";
        assert!(matches!(parse_head(raw, false), Ok(Some((25, None)))));
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nConnection: close, x-hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\nX-Kept: 2\r\n\r\n";
        let Ok(Some((used, Some((response, framing))))) = parse_head(raw, false) else {
            panic!("parsed");
        };
        assert_eq!(used, raw.len());
        assert!(matches!(framing, Framing::Chunked { .. }));
        let names: Vec<&str> = response.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["content-type", "x-kept"]);
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        let Ok(Some((_, Some((_, framing))))) = parse_head(raw, true) else {
            panic!("parsed");
        };
        assert!(matches!(framing, Framing::Empty));
        assert!(matches!(
            parse_head(b"HTTP/1.1 200 OK\r\n", false),
            Ok(None)
        ));
    }
}
