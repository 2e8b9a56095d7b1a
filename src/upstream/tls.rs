//! TLS to `https://` upstreams, with rustls's sans-IO `ClientConnection` driven by tether's own
//! readiness waits and non-blocking syscalls: no TLS stream type, no future that owns a buffer.
//!
//! ```text
//! read step (TlsSession::read_now), in the wake-up that saw the socket readable:
//!     plaintext rustls still holds?  -> take it, done (no syscall)
//!     recv(MSG_DONTWAIT) ciphertext into the worker's scratch (<= TLS_READ_BYTES)
//!         EAGAIN -> nothing (wait for readability again)
//!         0      -> end of stream (with or without close_notify: the HTTP framing decides)
//!     while ciphertext is left: read_tls (rustls takes <= a record's worth) -> process_new_packets
//!                                -> append the plaintext it made to the caller's buffer
//!     flush what rustls wants to send (alerts, key updates), as far as the socket takes it
//! write (queue + flush_now): all the pieces to rustls in one write_vectored (records of up to
//!     16 KiB, not one per piece), then write_tls through sendmsg(MSG_DONTWAIT) until rustls is
//!     empty or the socket full (wait for writability, then again)
//! handshake: flush, wait writable if the socket is full; done when rustls stops handshaking;
//!     else a read step without taking plaintext; nothing there -> wait readable. All under one
//!     deadline (the route's connect-timeout, again after the TCP connect's own).
//! ```
//!
//! Invariant: after every read step rustls holds no plaintext (everything it decrypted went to
//! the caller's buffer), so a connection whose socket is not readable has nothing to read, and a
//! readiness wait (`readable()`) is all the SSE pump and the tunnel need, as for plain TCP.
//!
//! Cancellation: the steps are synchronous; the only awaits are readiness waits, which own no
//! buffer. Dropping one (a `select!`, a timeout) loses nothing on either driver: ciphertext is
//! either still in the socket or already in rustls.
//!
//! Crypto: aws-lc-rs (see Cargo.toml). Verification: rustls's webpki verifier against the system's roots (or Mozilla's, compiled in,
//! when the system has none) plus `--upstream-ca`; the name is the URL's host (SNI), or its IP
//! (no SNI; matched against the certificate's IP SANs). `--upstream-insecure` swaps in a verifier
//! that accepts any certificate but still checks the handshake's signatures with it.

use std::fmt;
use std::io::{self, BufRead, IoSlice, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use monoio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, ClientConnection, DigitallySignedStruct};
use rustls::{RootCertStore, SignatureScheme};

use crate::conn_io::{recv_now, BytesVec};

/// Largest single `recv` of ciphertext, in bytes (the worker's scratch buffer, shared by all its
/// TLS connections): as the SSE pump's plain reads (MAX_SSE_READ), one wake-up of one stream
/// handles at most this much.
pub const TLS_READ_BYTES: usize = 32 * 1024;

/// TLS sessions each worker remembers for resumption (rustls's in-memory store, one per worker:
/// no lock shared between workers). One entry per upstream host name; past it the oldest goes.
pub const SESSIONS_PER_WORKER: usize = 256;

thread_local! {
    /// The worker's ciphertext buffer: filled and emptied within one read step, never held
    /// across an await.
    static SCRATCH: std::cell::RefCell<Box<[std::mem::MaybeUninit<u8>]>> =
        std::cell::RefCell::new(vec![std::mem::MaybeUninit::uninit(); TLS_READ_BYTES].into_boxed_slice());
}

/// `--upstream-ca` and `--upstream-insecure`, as given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM files of CA certificates trusted for upstreams besides the system's roots.
    pub ca_files: Vec<PathBuf>,
    /// Accept any upstream certificate (the handshake's signatures are still checked).
    pub insecure: bool,
}

/// The process's upstream TLS client settings, built once from `TlsSettings` (at start and at
/// each reload, off the workers: it reads files). Each worker takes its own copy
/// (`for_worker`) with its own session store.
#[derive(Clone)]
pub struct UpstreamTls {
    config: Arc<ClientConfig>,
    /// `--upstream-insecure` is in force.
    pub insecure: bool,
    /// Where the roots came from, for the start-up log line.
    pub roots: String,
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("insecure", &self.insecure)
            .field("roots", &self.roots)
            .finish()
    }
}

/// Why the TLS settings cannot be used.
#[derive(Debug)]
pub enum TlsConfigError {
    /// An `--upstream-ca` file cannot be read or is not PEM.
    CaFile { path: PathBuf, reason: String },
    /// An `--upstream-ca` file holds no certificate.
    NoCertificate { path: PathBuf },
    /// rustls refused the configuration.
    Rustls(String),
}

impl fmt::Display for TlsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsConfigError::CaFile { path, reason } => write!(f, "{}: {reason}", path.display()),
            TlsConfigError::NoCertificate { path } => write!(
                f,
                "{}: no certificate in it (PEM \"BEGIN CERTIFICATE\" blocks expected)",
                path.display()
            ),
            TlsConfigError::Rustls(reason) => write!(f, "TLS settings refused: {reason}"),
        }
    }
}

impl std::error::Error for TlsConfigError {}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl UpstreamTls {
    /// Loads the roots and the `--upstream-ca` files. Blocking (files): never on a worker.
    pub fn build(settings: &TlsSettings) -> Result<UpstreamTls, TlsConfigError> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsConfigError::Rustls(e.to_string()))?;
        let (roots, from) = roots(&settings.ca_files)?;
        let mut config = if settings.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { provider }))
                .with_no_client_auth()
        } else {
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        // HTTP/1.1 is all tether speaks upstream.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(UpstreamTls {
            config: Arc::new(config),
            insecure: settings.insecure,
            roots: from,
        })
    }

    /// A worker's own client settings: the same verification, its own session store (a
    /// resumed handshake skips the certificate chain; per worker, the store takes no lock
    /// another worker holds).
    pub fn for_worker(&self) -> Arc<ClientConfig> {
        let mut config = (*self.config).clone();
        config.resumption = Resumption::in_memory_sessions(SESSIONS_PER_WORKER);
        Arc::new(config)
    }
}

/// The system's roots, or Mozilla's when the system has none, plus the `--upstream-ca` files.
/// Also says where they came from.
fn roots(ca_files: &[PathBuf]) -> Result<(RootCertStore, String), TlsConfigError> {
    let mut store = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    let (added, _) = store.add_parsable_certificates(native.certs);
    let mut from = if added > 0 {
        format!("{added} system roots")
    } else {
        store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let why = native
            .errors
            .first()
            .map_or_else(|| "none found".to_string(), |e| e.to_string());
        format!(
            "{} compiled-in Mozilla roots (no system roots: {why})",
            store.len()
        )
    };
    for path in ca_files {
        let certs = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsConfigError::CaFile {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(TlsConfigError::NoCertificate { path: path.clone() });
        }
        for cert in certs {
            store.add(cert).map_err(|e| TlsConfigError::CaFile {
                path: path.clone(),
                reason: format!("not a CA certificate rustls can use: {e}"),
            })?;
        }
        from.push_str(&format!(" + {}", path.display()));
    }
    Ok((store, from))
}

/// `--upstream-insecure`: any certificate is accepted, for any name. The handshake's
/// signatures are still checked against the certificate presented, so the session is at least
/// with whoever holds its key.
#[derive(Debug)]
struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The kinds of handshake failure `/metrics` counts apart
/// (`tether_upstream_tls_failures_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFailureClass {
    /// The certificate does not name the URL's host.
    CertificateName,
    /// The certificate chains to no trusted root (an unknown or private CA).
    CertificateUntrusted,
    /// Expired, or not valid yet.
    CertificateExpired,
    /// Any other certificate fault (bad encoding, wrong purpose, revoked...).
    CertificateOther,
    /// The server refused the handshake with an alert (no common version or cipher...).
    Alert,
    /// Not done within the connect timeout.
    Timeout,
    /// The server closed the connection mid-handshake.
    Closed,
    /// Anything else the TLS protocol refused, or a socket error.
    Other,
}

impl TlsFailureClass {
    /// Every class, in the order `/metrics` lists them.
    pub const ALL: [TlsFailureClass; 8] = [
        TlsFailureClass::CertificateName,
        TlsFailureClass::CertificateUntrusted,
        TlsFailureClass::CertificateExpired,
        TlsFailureClass::CertificateOther,
        TlsFailureClass::Alert,
        TlsFailureClass::Timeout,
        TlsFailureClass::Closed,
        TlsFailureClass::Other,
    ];

    /// The `reason` label.
    pub fn name(self) -> &'static str {
        match self {
            TlsFailureClass::CertificateName => "certificate_name",
            TlsFailureClass::CertificateUntrusted => "certificate_untrusted",
            TlsFailureClass::CertificateExpired => "certificate_expired",
            TlsFailureClass::CertificateOther => "certificate_other",
            TlsFailureClass::Alert => "alert",
            TlsFailureClass::Timeout => "timeout",
            TlsFailureClass::Closed => "closed",
            TlsFailureClass::Other => "other",
        }
    }

    /// What a client's 502 says: the kind of failure, nothing that names the upstream.
    pub fn client_reason(self) -> &'static str {
        match self {
            TlsFailureClass::CertificateName => {
                "the upstream server's TLS certificate is not valid for its name"
            }
            TlsFailureClass::CertificateUntrusted => {
                "the upstream server's TLS certificate is not signed by a trusted CA"
            }
            TlsFailureClass::CertificateExpired => {
                "the upstream server's TLS certificate has expired or is not valid yet"
            }
            TlsFailureClass::CertificateOther => {
                "the upstream server's TLS certificate was refused"
            }
            TlsFailureClass::Timeout => "the TLS handshake with the upstream server timed out",
            TlsFailureClass::Alert | TlsFailureClass::Closed | TlsFailureClass::Other => {
                "the TLS handshake with the upstream server failed"
            }
        }
    }

    /// Its index in `ALL` (and in the metrics' array).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A failed handshake: its class and what the log says about it.
#[derive(Debug)]
pub struct TlsFailure {
    pub class: TlsFailureClass,
    /// One short line, without the upstream's URL (the connect attempt names it).
    pub detail: String,
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "upstream TLS: {}", self.detail)
    }
}

impl TlsFailure {
    fn new(class: TlsFailureClass, detail: impl Into<String>) -> TlsFailure {
        TlsFailure {
            class,
            detail: detail.into(),
        }
    }

    /// What a rustls error during the handshake with `host` means.
    fn of(e: &rustls::Error, host: &str) -> TlsFailure {
        use TlsFailureClass as C;
        match e {
            rustls::Error::InvalidCertificate(cert) => match cert {
                CertificateError::NotValidForName => {
                    TlsFailure::new(C::CertificateName, format!("certificate not valid for name {host:?}"))
                }
                // rustls's own words name the certificate's names too.
                CertificateError::NotValidForNameContext { .. } => {
                    TlsFailure::new(C::CertificateName, cert.to_string())
                }
                CertificateError::UnknownIssuer => TlsFailure::new(
                    C::CertificateUntrusted,
                    format!(
                        "certificate for {host:?} not signed by a trusted CA (a private CA is added with --upstream-ca)"
                    ),
                ),
                CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. } => {
                    TlsFailure::new(C::CertificateExpired, cert.to_string())
                }
                other => TlsFailure::new(C::CertificateOther, format!("certificate refused: {other}")),
            },
            rustls::Error::AlertReceived(alert) => TlsFailure::new(
                C::Alert,
                format!("the server refused the handshake (alert {alert:?})"),
            ),
            other => TlsFailure::new(C::Other, format!("handshake failed: {other}")),
        }
    }

    /// What a failed handshake step's `io::Error` means (a rustls error rides inside one).
    fn of_io(e: io::Error, host: &str) -> TlsFailure {
        match e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            Some(tls) => TlsFailure::of(tls, host),
            None => TlsFailure::new(TlsFailureClass::Other, format!("handshake failed: {e}")),
        }
    }
}

/// One upstream connection's TLS state (boxed beside its socket: a plain connection carries a
/// null pointer, not this).
pub struct TlsSession {
    conn: ClientConnection,
    /// The server's close_notify came: no more plaintext will.
    closed: bool,
}

impl TlsSession {
    /// A client session for `name`; nothing is sent until `handshake`.
    fn new(
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> Result<TlsSession, rustls::Error> {
        let mut conn = ClientConnection::new(config, name)?;
        // A write takes everything it is given (bounded by its caller: one read of a body,
        // one request head); the ciphertext waits in rustls until the socket takes it.
        conn.set_buffer_limit(None);
        Ok(TlsSession {
            conn,
            closed: false,
        })
    }

    /// The server sent close_notify: once the plaintext before it is taken, the stream ended.
    pub fn peer_closed(&self) -> bool {
        self.closed
    }

    /// The handshake resumed an earlier session (no certificate chain was sent).
    pub fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed)
    }

    /// ALPN and version agreed, for the debug log.
    pub fn describe(&self) -> String {
        format!(
            "{:?}, {:?}",
            self.conn.protocol_version(),
            self.conn.negotiated_cipher_suite().map(|s| s.suite())
        )
    }

    /// One read step (see the module doc): appends the plaintext that the socket's ciphertext
    /// (read once, without waiting) decrypts to, to `buf`. Ok(Some(n)): n bytes appended, 0 at
    /// the end of the stream (close_notify, or the socket's end); Ok(None): nothing yet, wait
    /// for readability. Synchronous: cancel-safe.
    pub fn read_now(&mut self, fd: RawFd, buf: &mut BytesMut) -> io::Result<Option<usize>> {
        let before = buf.len();
        self.take_plaintext(buf)?;
        if buf.len() > before {
            return Ok(Some(buf.len() - before));
        }
        if self.closed {
            return Ok(Some(0));
        }
        let Some(eof) = self.feed(fd, Some(buf))? else {
            return Ok(None);
        };
        // Alerts, key update answers: best effort, the next write or read step goes on.
        let _ = self.flush_now(fd);
        let got = buf.len() - before;
        if got > 0 {
            Ok(Some(got))
        } else if eof || self.closed {
            Ok(Some(0))
        } else {
            Ok(None)
        }
    }

    /// Reads the socket once and hands the ciphertext to rustls, record by record, taking the
    /// plaintext out between records when `buf` is given (rustls holds at most 16 KiB of it).
    /// Ok(None): the socket had nothing; Ok(Some(eof)): it had bytes, or its end (true).
    fn feed(&mut self, fd: RawFd, mut buf: Option<&mut BytesMut>) -> io::Result<Option<bool>> {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let Some(n) = recv_now(fd, &mut scratch[..])? else {
                return Ok(None);
            };
            // SAFETY: recv initialised the first `n` bytes.
            let mut rest = unsafe { std::slice::from_raw_parts(scratch.as_ptr().cast::<u8>(), n) };
            if n == 0 {
                // Tells rustls the transport ended (a close_notify it may still hold counts).
                self.conn.read_tls(&mut rest)?;
                self.process(buf)?;
                return Ok(Some(true));
            }
            while !rest.is_empty() && !self.closed {
                self.conn.read_tls(&mut rest)?;
                self.process(buf.as_deref_mut())?;
            }
            Ok(Some(false))
        })
    }

    /// Decrypts what rustls holds, and takes the plaintext into `buf` when given.
    fn process(&mut self, buf: Option<&mut BytesMut>) -> io::Result<()> {
        let state = match self.conn.process_new_packets() {
            Ok(state) => state,
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        };
        if state.peer_has_closed() {
            self.closed = true;
        }
        if let Some(buf) = buf {
            buf.reserve(state.plaintext_bytes_to_read());
            self.take_plaintext(buf)?;
        }
        Ok(())
    }

    /// Moves the plaintext rustls holds to the end of `buf`.
    fn take_plaintext(&mut self, buf: &mut BytesMut) -> io::Result<()> {
        let mut reader = self.conn.reader();
        loop {
            let n = match reader.fill_buf() {
                Ok([]) => return Ok(()),
                Ok(chunk) => {
                    buf.extend_from_slice(chunk);
                    chunk.len()
                }
                // Nothing decrypted yet, or the transport ended without close_notify after the
                // last of it (the HTTP framing says whether the message was whole).
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::UnexpectedEof
                    ) =>
                {
                    return Ok(())
                }
                Err(e) => return Err(e),
            };
            reader.consume(n);
        }
    }

    /// Encrypts everything `out` holds (one logical write: records of up to 16 KiB, not one per
    /// piece) into rustls's send buffer and empties `out`; `flush_now` sends it. Err: rustls
    /// did not take it all (the session is closing): the connection must be closed.
    pub fn queue(&mut self, out: &mut BytesVec) -> io::Result<()> {
        let slices: Vec<IoSlice<'_>> = out.parts().iter().map(|p| IoSlice::new(p)).collect();
        // No buffer limit (set in `new`): rustls takes it all while the session is open.
        let taken = match slices.is_empty() {
            true => 0,
            false => self.conn.writer().write_vectored(&slices)?,
        };
        let whole = taken == out.remaining();
        out.clear();
        match whole {
            true => Ok(()),
            false => Err(io::ErrorKind::WriteZero.into()),
        }
    }

    /// Encrypts `bytes` into rustls's send buffer (see `queue`).
    pub fn queue_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self.conn.writer().write(bytes)? == bytes.len() {
            true => Ok(()),
            false => Err(io::ErrorKind::WriteZero.into()),
        }
    }

    /// Sends what rustls holds, as far as the socket takes it now. Ok(true): all sent;
    /// Ok(false): the socket is full (wait for writability).
    pub fn flush_now(&mut self, fd: RawFd) -> io::Result<bool> {
        let mut socket = SocketWriter(fd);
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }

    /// Ciphertext waits in rustls for the socket.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Queues the close_notify alert (sent by the next `flush_now`): the end of what this side
    /// sends, as a TCP half-close is for plain connections.
    pub fn send_close_notify(&mut self) {
        self.conn.send_close_notify();
    }

    /// For a pooled connection whose socket has bytes nobody asked for: reads them. True when
    /// they were only TLS's own (session tickets, a key update) and the connection is usable.
    pub fn absorb_idle(&mut self, fd: RawFd) -> bool {
        let mut buf = BytesMut::new();
        matches!(self.read_now(fd, &mut buf), Ok(None)) && buf.is_empty()
    }
}

/// `write_tls`'s destination: the socket, written with non-blocking `send`/`sendmsg` (a full
/// socket is `WouldBlock`).
struct SocketWriter(RawFd);

impl Write for SocketWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        loop {
            // SAFETY: a zeroed msghdr is valid (no name, no control data); IoSlice is ABI
            // compatible with iovec on Unix, and the slices outlive the call.
            let n = unsafe {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
                msg.msg_iovlen = bufs.len().min(1024) as _;
                libc::sendmsg(self.0, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Makes a TLS session over `tcp` (connected) with `host`'s name (the URL's host: SNI for a
/// name, none for an IP), within `limit`. Cancel-safe (readiness waits only); a dropped
/// handshake leaves a socket nobody may use.
pub(crate) async fn handshake(
    tcp: &TcpStream,
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    limit: Duration,
) -> Result<TlsSession, TlsFailure> {
    let host = name.to_str().into_owned();
    let mut session = TlsSession::new(config, name).map_err(|e| TlsFailure::of(&e, &host))?;
    match monoio::time::timeout(limit, drive_handshake(tcp, &mut session, &host)).await {
        Ok(Ok(())) => Ok(session),
        Ok(Err(failure)) => {
            // The alert rustls queued tells the server why.
            let _ = session.flush_now(tcp.as_raw_fd());
            Err(failure)
        }
        Err(_) => Err(TlsFailure::new(
            TlsFailureClass::Timeout,
            format!(
                "handshake with {host:?} not done within the connect timeout ({} ms)",
                limit.as_millis()
            ),
        )),
    }
}

async fn drive_handshake(
    tcp: &TcpStream,
    session: &mut TlsSession,
    host: &str,
) -> Result<(), TlsFailure> {
    let fd = tcp.as_raw_fd();
    let io = |e: io::Error| TlsFailure::of_io(e, host);
    loop {
        if !session.flush_now(fd).map_err(io)? {
            tcp.writable(false).await.map_err(io)?;
            continue;
        }
        if !session.conn.is_handshaking() {
            return Ok(());
        }
        // Plaintext that comes with the server's last flight stays in rustls for the first read.
        match session.feed(fd, None).map_err(io)? {
            Some(true) => {
                return Err(TlsFailure::new(
                    TlsFailureClass::Closed,
                    format!("{host:?} closed the connection during the handshake"),
                ))
            }
            Some(false) => {}
            None => tcp.readable(false).await.map_err(io)?,
        }
    }
}

/// The name a replica's certificate must carry: its URL's host (a DNS name, or an IP literal).
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string()).map_err(|e| e.to_string())
}
