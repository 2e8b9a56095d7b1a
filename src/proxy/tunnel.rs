//! The byte tunnel an upgraded connection becomes: once the upstream answered `101 Switching
//! Protocols` (a WebSocket, or any other protocol named in `Upgrade`), tether relays bytes both
//! ways without reading them, until both sides are done, one fails, the tunnel idles past
//! `--tunnel-idle-timeout`, or the worker's drain ends.
//!
//! ```text
//! to client:   the 101 head, the upstream bytes that came after it, then upstream -> client
//! to upstream: the client bytes that came after its request head, then client -> upstream
//! each direction, on each wake-up (Direction::pump):
//!     pending bytes?   send them (non-blocking); not all taken -> wait for dst writable
//!     source ended?    shutdown(dst, SHUT_WR) once (the half-close is passed on); done
//!     else             recv (non-blocking) into the worker's scratch buffer, send at once,
//!                      keep what dst did not take as pending; nothing there -> wait for src
//!                      readable
//! wait on: the readiness each direction asked for, and the idle deadline
//! ```
//!
//! Cancellation: the waits are `readable()`/`writable()` (no buffer) and every read and write is
//! a plain non-blocking syscall in the wake-up that found the socket ready, so no future ever owns
//! a buffer the kernel writes into: dropping a wait loses nothing, on io_uring as on epoll.
//!
//! Either end may speak TLS (an https upstream, a TLS client: `crate::tls`): a direction whose
//! source is TLS decrypts with a read step, one whose destination is TLS encrypts into that
//! session. For the upstream, as an example:
//! an https upstream's bytes go through its TLS session (`crate::upstream::tls`), with the same
//! waits: what it decrypts becomes the client's pending bytes; what the client sends is
//! encrypted into the session, which holds it until the upstream's socket takes it (the
//! direction then waits for writability as for pending bytes), and the client's half-close
//! becomes a close_notify before the TCP one.
//!
//! Backpressure: a direction reads its source only when it holds nothing pending, so a peer that
//! does not read stops the other from being read (TCP pushes back on it) and the tunnel's memory
//! stays at most one read per direction.
//!
//! The upstream connection of a tunnel is never pooled: it speaks another protocol now, and it
//! is closed when the tunnel ends.

use std::cell::RefCell;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use monoio::net::TcpStream;
use rustls::ServerConnection;

use super::request_id::RequestId;
use crate::access_log::{AccessLine, LineKind, RequestStart};
use crate::client_stream::ClientStream;
use crate::conn_io::recv_now;
use crate::conn_table::ConnGuard;
use crate::metrics::WorkerMetrics;
use crate::tls::{TlsSession, TlsSide};
use crate::upstream::stream::UpstreamStream;
use crate::upstream::tls::TlsSession as UpstreamSession;

/// A TLS client's session.
type ServerSession = TlsSession<ServerConnection>;
use crate::worker::WorkerCtx;

/// Bytes read from one side per `recv`: a WebSocket frame of ordinary size in one call. The
/// scratch buffer is the worker's (one for all its tunnels); only what the other side does not
/// take at once is copied into the direction's own pending buffer.
pub(crate) const TUNNEL_READ_BYTES: usize = 16 * 1024;

/// Reads one direction makes per wake-up before it lets the worker's other tasks run (it waits
/// for readiness again, which is immediate when more is there): a flat-out tunnel cannot starve
/// the worker's other connections and timers.
const READS_PER_WAKE: usize = 16;

thread_local! {
    /// The worker's read buffer for tunnels: filled and emptied within one synchronous step,
    /// never held across an await.
    static SCRATCH: RefCell<Box<[MaybeUninit<u8>]>> =
        RefCell::new(vec![MaybeUninit::uninit(); TUNNEL_READ_BYTES].into_boxed_slice());
}

/// Everything a tunnel takes over from the exchange (the client socket and its unread bytes are
/// lent separately).
#[derive(Debug)]
pub(crate) struct TunnelStart {
    /// The upstream connection, now speaking the upgraded protocol.
    pub(crate) up: UpstreamStream,
    /// Which replica `up` belongs to (for the access log).
    pub(crate) replica: usize,
    /// The 101 head for the client, written.
    pub(crate) head: Bytes,
    /// Upstream bytes read past the 101 head: the new protocol's first bytes, for the client.
    pub(crate) ubuf: BytesMut,
    pub(crate) request_id: RequestId,
    /// The request's route name (for the access log).
    pub(crate) route: Option<std::rc::Rc<str>>,
    /// Present when the access log is on.
    pub(crate) log: Option<RequestStart>,
}

/// Why a tunnel ended.
#[derive(Debug)]
pub(crate) enum TunnelEnd {
    /// Both sides ended their sending (each half-close passed on to the other).
    Finished,
    /// No byte either way for `--tunnel-idle-timeout`.
    Idle,
    /// A socket failed (reset, or a send to a side that is gone).
    Failed(io::Error),
    /// The worker's grace period ended and it shut every socket.
    Drained,
}

impl std::fmt::Display for TunnelEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TunnelEnd::Finished => f.write_str("both sides finished"),
            TunnelEnd::Idle => f.write_str("no byte either way for --tunnel-idle-timeout"),
            TunnelEnd::Failed(e) => write!(f, "a socket failed: {e}"),
            TunnelEnd::Drained => f.write_str("the worker's grace period ended"),
        }
    }
}

/// What one direction wants before it can go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// Its source to be readable.
    Read,
    /// Its destination to be writable (it holds pending bytes).
    Write,
    /// Nothing: its source ended and the end was passed on.
    Done,
}

/// One direction of the tunnel.
struct Direction {
    src: RawFd,
    dst: RawFd,
    /// The destination speaks TLS: the close_notify that passes the source's end on was queued.
    close_notify_sent: bool,
    /// Bytes read and not yet taken by the destination (the head and the bytes after it, at
    /// first). Empty (no allocation) while the destination keeps up.
    pending: BytesMut,
    /// The source ended (EOF).
    src_ended: bool,
    /// The end was passed on: shutdown(dst, SHUT_WR).
    dst_shut: bool,
    /// Bytes read from the source (after the heads).
    moved: u64,
}

impl Direction {
    fn new(src: RawFd, dst: RawFd, pending: BytesMut) -> Direction {
        Direction {
            src,
            dst,
            close_notify_sent: false,
            pending,
            src_ended: false,
            dst_shut: false,
            moved: 0,
        }
    }

    /// Moves what can be moved now without waiting; see the module doc. Returns what the
    /// direction waits for, and whether any byte moved (for the idle timeout). `src_tls`,
    /// `dst_tls`: the session of an end that speaks TLS (an https upstream, a TLS client): its
    /// bytes are decrypted from / encrypted into it.
    fn pump<A: TlsSide, B: TlsSide>(
        &mut self,
        mut src_tls: Option<&mut TlsSession<A>>,
        mut dst_tls: Option<&mut TlsSession<B>>,
    ) -> io::Result<(Want, bool)> {
        let mut progressed = false;
        let mut reads = 0;
        loop {
            if let Some(session) = dst_tls.as_deref_mut() {
                // The first bytes (the 101 head, the client's bytes after its request head) and
                // what a TLS source decrypted are encrypted as any other.
                if !self.pending.is_empty() {
                    session.queue_bytes(&self.pending)?;
                    self.pending = BytesMut::new();
                }
                if session.wants_write() {
                    if !session.flush_now(self.dst)? {
                        return Ok((Want::Write, progressed));
                    }
                    progressed = true;
                }
            }
            if !self.pending.is_empty() {
                let n = send_now(self.dst, &self.pending)?;
                if n > 0 {
                    progressed = true;
                    self.pending.advance(n);
                }
                if !self.pending.is_empty() {
                    return Ok((Want::Write, progressed));
                }
                // Drained: give the memory back while the other side keeps up.
                self.pending = BytesMut::new();
            }
            if self.src_ended {
                if let Some(session) = dst_tls.as_deref_mut() {
                    if !self.close_notify_sent {
                        // Sent (flushed above) before the TCP half-close.
                        self.close_notify_sent = true;
                        session.send_close_notify();
                        continue;
                    }
                }
                if !self.dst_shut {
                    self.dst_shut = true;
                    // SAFETY: shutdown only changes the socket's state.
                    unsafe { libc::shutdown(self.dst, libc::SHUT_WR) };
                }
                return Ok((Want::Done, progressed));
            }
            if reads == READS_PER_WAKE {
                return Ok((Want::Read, progressed));
            }
            reads += 1;
            let step = match (src_tls.as_deref_mut(), dst_tls.as_deref_mut()) {
                // Decrypted into `pending`, sent (or encrypted again) at the top of the loop.
                (Some(session), _) => session.read_now(self.src, &mut self.pending)?,
                (None, Some(session)) => self.read_into_session(session)?,
                (None, None) => self.read_and_send()?,
            };
            match step {
                None => return Ok((Want::Read, progressed)),
                Some(0) => self.src_ended = true,
                Some(n) => {
                    self.moved += n as u64;
                    progressed = true;
                }
            }
        }
    }

    /// One `recv` from the (plain) source into the worker's scratch, encrypted into the
    /// upstream's session (sent at the top of the loop).
    fn read_into_session<B: TlsSide>(
        &mut self,
        session: &mut TlsSession<B>,
    ) -> io::Result<Option<usize>> {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let Some(n) = recv_now(self.src, &mut scratch[..])? else {
                return Ok(None);
            };
            // SAFETY: recv initialised the first `n` bytes.
            let read = unsafe { std::slice::from_raw_parts(scratch.as_ptr().cast::<u8>(), n) };
            session.queue_bytes(read)?;
            Ok(Some(n))
        })
    }

    /// One `recv` from the source into the worker's scratch, sent on at once; what the
    /// destination does not take waits in `pending`.
    fn read_and_send(&mut self) -> io::Result<Option<usize>> {
        SCRATCH.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            let Some(n) = recv_now(self.src, &mut scratch[..])? else {
                return Ok(None);
            };
            // SAFETY: recv initialised the first `n` bytes.
            let read = unsafe { std::slice::from_raw_parts(scratch.as_ptr().cast::<u8>(), n) };
            if n > 0 {
                let sent = send_now(self.dst, read)?;
                if sent < n {
                    self.pending.extend_from_slice(&read[sent..]);
                }
            }
            Ok(Some(n))
        })
    }
}

/// One non-blocking `send`: the bytes taken, 0 when the socket's buffer is full.
fn send_now(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: sends at most `bytes.len()` bytes from a valid slice.
    let n = unsafe {
        libc::send(
            fd,
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
            _ => Err(e),
        };
    }
    Ok(n as usize)
}

/// Runs the tunnel until it ends, then counts and logs it. The client connection must be closed
/// afterwards (it speaks the upgraded protocol), as is the upstream (dropped here).
pub(crate) async fn run<C: ClientStream>(
    ctx: &WorkerCtx,
    client: &mut C,
    guard: &ConnGuard,
    client_bytes: BytesMut,
    start: TunnelStart,
) -> TunnelEnd {
    let TunnelStart {
        up,
        replica,
        head,
        ubuf,
        request_id,
        route,
        log,
    } = start;
    let m = &ctx.metrics;
    WorkerMetrics::inc(&m.tunnels);
    WorkerMetrics::inc(&m.tunnels_active);
    let head_len = head.len() as u64;
    let mut first = BytesMut::with_capacity(head.len() + ubuf.len());
    first.extend_from_slice(&head);
    let early = ubuf.len() as u64;
    first.extend_from_slice(&ubuf);
    let mut up = up;
    let (up, up_tls) = up.split();
    let (client, client_tls) = client.tunnel_parts();
    let mut down = Direction::new(up.as_raw_fd(), client.as_raw_fd(), first);
    down.moved = early;
    let mut upward = Direction::new(client.as_raw_fd(), up.as_raw_fd(), BytesMut::new());
    upward.moved = client_bytes.len() as u64;
    upward.pending = client_bytes;
    guard.set_upstream(Some(up.as_raw_fd()));

    let sessions = Sessions {
        up: up_tls,
        client: client_tls,
    };
    let end = relay(ctx, client, up, sessions, guard, &mut down, &mut upward).await;

    guard.set_upstream(None);
    m.tunnels_active
        .set(m.tunnels_active.get().saturating_sub(1));
    WorkerMetrics::add(&m.tunnel_bytes_to_client, down.moved);
    WorkerMetrics::add(&m.tunnel_bytes_to_upstream, upward.moved);
    crate::log_debug!(
        "request {request_id}: tunnel ended ({end}): {} bytes to the upstream, {} to the client",
        upward.moved,
        down.moved
    );
    if let (Some(access), Some(start)) = (&ctx.access_log, &log) {
        let url = ctx.upstreams.borrow().spec(replica).url.clone();
        access.record(&AccessLine {
            worker: ctx.index,
            request_id: request_id.as_bytes(),
            start,
            route: route.as_deref(),
            status: 101,
            bytes: head_len + down.moved,
            upstream: Some(&*url),
            kind: LineKind::Tunnel {
                to_upstream: upward.moved,
                to_client: down.moved,
            },
            h2: false,
        });
    }
    end
}

/// The TLS sessions of a tunnel's ends (None: that end is plain TCP).
struct Sessions<'a> {
    up: Option<&'a mut UpstreamSession>,
    client: Option<&'a mut ServerSession>,
}

/// The relay loop: pump both directions, wait for what they want or the idle deadline.
async fn relay(
    ctx: &WorkerCtx,
    client: &TcpStream,
    up: &TcpStream,
    mut tls: Sessions<'_>,
    guard: &ConnGuard,
    down: &mut Direction,
    upward: &mut Direction,
) -> TunnelEnd {
    let idle = ctx.config.timeouts.tunnel_idle;
    let mut last_activity = Instant::now();
    let deadline = std::pin::pin!(monoio::time::sleep_until((last_activity + idle).into()));
    let mut deadline = deadline;
    loop {
        let (want_down, moved_down) =
            match down.pump(tls.up.as_deref_mut(), tls.client.as_deref_mut()) {
                Ok(step) => step,
                Err(e) => return TunnelEnd::Failed(e),
            };
        let (want_up, moved_up) =
            match upward.pump(tls.client.as_deref_mut(), tls.up.as_deref_mut()) {
                Ok(step) => step,
                Err(e) => return TunnelEnd::Failed(e),
            };
        if moved_down || moved_up {
            // The deadline itself is moved only when it fires (no timer work per message).
            last_activity = Instant::now();
        }
        if want_down == Want::Done && want_up == Want::Done {
            return TunnelEnd::Finished;
        }
        if guard.closing() {
            return TunnelEnd::Drained;
        }
        // relaxed=false: tether reads and writes these sockets itself, so the epoll driver must
        // ask the socket rather than trust readiness it cached.
        monoio::select! {
            r = up.readable(false), if want_down == Want::Read => {
                if let Err(e) = r { return TunnelEnd::Failed(e); }
            }
            r = client.writable(false), if want_down == Want::Write => {
                if let Err(e) = r { return TunnelEnd::Failed(e); }
            }
            r = client.readable(false), if want_up == Want::Read => {
                if let Err(e) = r { return TunnelEnd::Failed(e); }
            }
            r = up.writable(false), if want_up == Want::Write => {
                if let Err(e) = r { return TunnelEnd::Failed(e); }
            }
            _ = deadline.as_mut() => {
                let due = last_activity + idle;
                if Instant::now() >= due {
                    return TunnelEnd::Idle;
                }
                deadline.as_mut().reset(due.into());
            }
        }
    }
}
