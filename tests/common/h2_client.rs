//! An HTTP/2 client for the tests: h2's client over tokio-rustls on a current-thread tokio
//! runtime, and a raw frame writer for what no well-behaved client sends (floods).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::{SseEvent, SseParser};

/// A current-thread runtime with IO and timers.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A TLS connection to `addr` that chose h2 in ALPN.
pub async fn tls(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").unwrap();
    let tls = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .expect("TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "ALPN h2");
    tls
}

/// An h2 connection (its driver spawned on the runtime); `window`: the client's initial stream
/// window (how much of a stream tether may send before the client reads).
pub async fn connect(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    window: u32,
) -> (
    SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let tls = tls(addr, config).await;
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(window)
        .initial_connection_window_size(16 << 20)
        .handshake(tls)
        .await
        .expect("h2 handshake");
    let driver = tokio::spawn(conn);
    (send, driver)
}

/// A GET with `headers`; the response's status, head and body.
pub async fn get(
    send: &mut SendRequest<Bytes>,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, Vec<u8>) {
    let mut req = http::Request::builder()
        .method("GET")
        .uri(format!("https://localhost{path}"));
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    let mut ready = send.clone().ready().await.expect("ready");
    let (response, _) = ready
        .send_request(req.body(()).unwrap(), true)
        .expect("send");
    let response = response.await.expect("response");
    let status = response.status().as_u16();
    let head = response.headers().clone();
    let mut body = response.into_body();
    let mut out = Vec::new();
    while let Some(data) = body.data().await {
        let data = data.expect("data");
        let _ = body.flow_control().release_capacity(data.len());
        out.extend_from_slice(&data);
    }
    (status, head, out)
}

/// An SSE stream on an h2 connection, read event by event.
pub struct H2Sse {
    pub status: u16,
    pub head: http::HeaderMap,
    body: h2::RecvStream,
    parser: SseParser,
    /// The stream's DATA ended cleanly.
    pub ended: bool,
}

impl H2Sse {
    pub async fn open(
        send: &mut SendRequest<Bytes>,
        path: &str,
        headers: &[(&str, &str)],
    ) -> H2Sse {
        let mut req = http::Request::builder()
            .method("GET")
            .uri(format!("https://localhost{path}"))
            .header("accept", "text/event-stream");
        for (n, v) in headers {
            req = req.header(*n, *v);
        }
        let mut ready = send.clone().ready().await.expect("ready");
        let (response, _) = ready
            .send_request(req.body(()).unwrap(), true)
            .expect("send");
        let response = tokio::time::timeout(Duration::from_secs(10), response)
            .await
            .expect("a head within 10 s")
            .expect("response");
        H2Sse {
            status: response.status().as_u16(),
            head: response.headers().clone(),
            body: response.into_body(),
            parser: SseParser::default(),
            ended: false,
        }
    }

    /// The next event with an id (comments skipped); None at the stream's end.
    pub async fn next_id(&mut self) -> Option<u64> {
        self.next_event()
            .await
            .map(|ev| ev.num_id().expect("a numeric id"))
    }

    /// The next event with an id, whole (comments skipped); None at the stream's end.
    pub async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            while let Some(ev) = self.parser.ready.pop_front() {
                if ev.id.is_some() {
                    return Some(ev);
                }
            }
            let data = tokio::time::timeout(Duration::from_secs(20), self.body.data())
                .await
                .expect("data within 20 s");
            match data {
                Some(Ok(data)) => {
                    let _ = self.body.flow_control().release_capacity(data.len());
                    self.parser.feed(&data);
                }
                Some(Err(_)) => return None,
                None => {
                    self.ended = true;
                    return None;
                }
            }
        }
    }

    /// Every id through `last` (or to the end).
    pub async fn ids_through(&mut self, last: u64) -> Vec<u64> {
        let mut ids = Vec::new();
        while let Some(id) = self.next_id().await {
            ids.push(id);
            if id >= last {
                break;
            }
        }
        ids
    }
}

/// Raw HTTP/2 frames (RFC 9113 4.1): a 9-byte header and the payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The client connection preface and an empty SETTINGS frame.
pub fn preface() -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    out
}

/// An HPACK block for GET https://localhost/ (all from the static table: :method GET,
/// :scheme https, :path /, and :authority as a literal with an indexed name), plus `extra`
/// literal fields without indexing.
pub fn hpack_get(extra: &[(&str, &str)]) -> Vec<u8> {
    let mut out = vec![0x82, 0x87, 0x84, 0x41, 9];
    out.extend_from_slice(b"localhost");
    for (name, value) in extra {
        out.push(0x00);
        hpack_int(&mut out, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// An HPACK integer with an N-bit prefix (RFC 7541 5.1), huffman bit clear.
fn hpack_int(out: &mut Vec<u8>, bits: u32, mut n: usize) {
    let max = (1usize << bits) - 1;
    if n < max {
        out.push(n as u8);
        return;
    }
    out.push(max as u8);
    n -= max;
    while n >= 128 {
        out.push((n % 128 + 128) as u8);
        n /= 128;
    }
    out.push(n as u8);
}

/// Reads frames from `io` until a GOAWAY (its error code) or the end (None).
pub async fn goaway_code<R: tokio::io::AsyncRead + Unpin>(io: &mut R) -> Option<u32> {
    use tokio::io::AsyncReadExt;
    loop {
        let mut head = [0u8; 9];
        if io.read_exact(&mut head).await.is_err() {
            return None;
        }
        let len = (head[0] as usize) << 16 | (head[1] as usize) << 8 | head[2] as usize;
        let mut payload = vec![0u8; len];
        if io.read_exact(&mut payload).await.is_err() {
            return None;
        }
        if head[3] == 0x7 && len >= 8 {
            return Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
        }
    }
}
