//! One load thread: its streams on one epoll instance, read into one per-thread buffer.
//!
//! Why epoll and not a monoio runtime per thread: see `perf/LOAD.md` ("Driver"): a ready
//! socket costs one `read` into a shared 64 KiB buffer, an idle stream holds no buffer,
//! and nothing is ever cancelled in flight.
//!
//! Loop:
//! ```text
//! until stop:
//!   start connections: reconnections due, then first opens while fewer than
//!     `max_opening` are between connect() and their response head (a ramp, not a SYN flood)
//!   expire connect and head timeouts
//!   hand the latency histogram over every PUBLISH_EVERY
//!   epoll_wait (until the next timer, at most MAX_WAIT)
//!   per ready socket: connecting -> SO_ERROR, send the request, watch for input
//!                     reading    -> one read, clocks read once, StreamState::on_data
//!                                   (TLS: one read_tls, decrypt, flush what rustls has
//!                                   to say, then every plaintext record to on_data)
//!   publish the counters (relaxed stores)
//! close every socket
//! ```
//! Sockets are level-triggered: one read per readiness is enough (a socket with more data
//! is reported again on the next wait, after the other ready sockets had their turn).
//!
//! TLS (`https://`): a slot holds a rustls `ClientConnection` next to its socket. The request
//! is written into it at connect time (rustls sends it once the handshake is done); the head
//! deadline covers the handshake. Plain slots hold `None` there: their path is the one above,
//! one branch on that `Option` per read.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::control::{Control, Window};
use super::net::{read, send, set_linger_zero, start_connect, take_error, Epoll};
use super::stats::Stats;
use super::stream::{End, Flow, Next, Now, RequestTemplate, StreamState};
use super::tls::{self, FdIo, TlsClient};

/// How often a thread hands its latency histogram over for the progress line.
pub(crate) const PUBLISH_EVERY: Duration = Duration::from_millis(200);
/// Bytes of the per-thread read buffer (one read per ready socket takes at most this).
const READ_BUF_BYTES: usize = 64 * 1024;
/// Ready sockets taken per `epoll_wait`.
const MAX_EVENTS: usize = 1024;
/// Longest `epoll_wait`: how soon a thread notices the stop flag when nothing happens.
const MAX_WAIT: Duration = Duration::from_millis(50);

/// What every load thread is told.
#[derive(Debug)]
pub(crate) struct Settings {
    /// Where to connect.
    pub target: SocketAddr,
    /// `https://`: the TLS client (each thread takes its own copy, with its own sessions).
    pub tls: Option<TlsClient>,
    /// The request, minus `Last-Event-ID` (streams without their own, see [`StreamPlan`]).
    pub template: RequestTemplate,
    /// Reopen streams that end (EventSource behaviour).
    pub reconnect: bool,
    /// Longest wait for connect() to complete.
    pub connect_timeout: Duration,
    /// Longest wait from the request to a complete response head.
    pub head_timeout: Duration,
    /// First opens in progress at once, per thread.
    pub max_opening: usize,
    /// Mean time a stream stays connected before it leaves on its own (`--leave-every`);
    /// zero: never. Each stay is drawn uniformly from half to one and a half times this.
    pub leave_every: Duration,
    /// Longest pause before a stream that left comes back (drawn uniformly from zero to it).
    pub leave_pause: Duration,
    /// Streams whose longest silence exceeds this are counted (`--max-quiet`).
    pub max_quiet: Option<Duration>,
    /// Streams still open at the end whose last event is older than this are counted as
    /// stuck (`--stuck-after`).
    pub stuck_after: Option<Duration>,
    /// Every stream may start at any id (`--join-live`): ids are checked from each
    /// stream's first event on.
    pub join_live: bool,
}

/// What one stream of a thread is given before it starts.
#[derive(Debug, Clone)]
pub(crate) struct StreamPlan {
    /// The stream's index over all threads (the `{i}` of its URL).
    pub index: usize,
    /// Source address to bind (None: the kernel picks).
    pub source: Option<IpAddr>,
    /// The stream's own request (a `{i}` URL), else None: [`Settings::template`].
    pub template: Option<RequestTemplate>,
}

/// Where a stream's connection stands, for the socket loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conn {
    /// No socket: not opened yet, waiting to reconnect, or over.
    None,
    /// connect() in progress.
    Connecting,
    /// Request sent; reading (head, then body).
    Reading,
}

/// One stream of this thread.
struct Slot {
    /// The stream's index over all threads.
    stream: usize,
    /// The socket of the current connection.
    sock: Option<OwnedFd>,
    /// The TLS state of the current connection (`https://` only; boxed: a plain slot pays
    /// one pointer).
    tls: Option<Box<rustls::ClientConnection>>,
    /// Bumped at every connection end: epoll tokens and timers of older connections are stale.
    generation: u32,
    /// Socket-level state.
    conn: Conn,
    /// Counts against the opening budget (a first open not yet established or failed).
    opening: bool,
    /// The stream is over for good.
    over: bool,
    /// Source address to bind (None: the kernel picks).
    source: Option<IpAddr>,
    /// The stream's own request, if it has one (else the shared [`Settings::template`]).
    template: Option<Box<RequestTemplate>>,
    /// The SSE stream.
    state: StreamState,
}

/// A deadline of one connection phase.
#[derive(Debug, Clone, Copy)]
struct Deadline {
    at: Instant,
    slot: usize,
    generation: u32,
}

/// The epoll token of a slot's current connection.
fn token(slot: usize, generation: u32) -> u64 {
    slot as u64 | (u64::from(generation) << 32)
}

/// Unix time in microseconds.
fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The thread's whole state.
struct LoadThread<'a> {
    settings: &'a Settings,
    /// This thread's TLS client (its own session store), for `https://`.
    tls: Option<TlsClient>,
    control: &'a Control,
    /// This thread's index in `control.threads`.
    index: usize,
    epoll: Epoll,
    slots: Vec<Slot>,
    stats: Stats,
    /// Streams never opened yet, in order.
    first_opens: VecDeque<usize>,
    /// Reconnections due now.
    ready: VecDeque<usize>,
    /// Delayed reconnections: (when, slot, generation at scheduling).
    delayed: BinaryHeap<Reverse<(Instant, usize, u32)>>,
    /// Connect deadlines, in deadline order (one timeout for all).
    connect_deadlines: VecDeque<Deadline>,
    /// Head deadlines, in deadline order.
    head_deadlines: VecDeque<Deadline>,
    /// When established streams leave on their own (`--leave-every`): (when, slot,
    /// generation of the connection that is to leave).
    leaves: BinaryHeap<Reverse<(Instant, usize, u32)>>,
    /// xorshift64 state for stays, pauses and how a stream leaves.
    rng: u64,
    /// First opens between connect() and response head (or failure).
    opening: usize,
    /// Streams receiving a body now.
    open: u64,
    /// Streams established at least once.
    established: u64,
    /// Streams over for good that never were established.
    failed_to_open: u64,
    /// Streams over for good.
    over: u64,
    /// The request being sent (reused).
    request: Vec<u8>,
}

/// Runs one load thread over the planned streams until `control.stop`; returns what it
/// counted.
pub(crate) fn run(
    plans: Vec<StreamPlan>,
    settings: Arc<Settings>,
    control: Arc<Control>,
    index: usize,
) -> io::Result<Stats> {
    let n = plans.len();
    let mut t = LoadThread {
        settings: &settings,
        tls: settings.tls.as_ref().map(TlsClient::for_thread),
        control: &control,
        index,
        epoll: Epoll::new()?,
        slots: plans
            .into_iter()
            .map(|plan| {
                let mut state = StreamState::new();
                state.set_quiet_limit(settings.max_quiet);
                if settings.join_live {
                    state.set_join_live();
                }
                Slot {
                    stream: plan.index,
                    sock: None,
                    tls: None,
                    generation: 0,
                    conn: Conn::None,
                    opening: false,
                    over: false,
                    source: plan.source,
                    template: plan.template.map(Box::new),
                    state,
                }
            })
            .collect(),
        stats: Stats::default(),
        first_opens: (0..n).collect(),
        ready: VecDeque::new(),
        delayed: BinaryHeap::new(),
        connect_deadlines: VecDeque::new(),
        head_deadlines: VecDeque::new(),
        leaves: BinaryHeap::new(),
        rng: 0x9E37_79B9_7F4A_7C15 ^ ((index as u64 + 1) << 17),
        opening: 0,
        open: 0,
        established: 0,
        failed_to_open: 0,
        over: 0,
        request: Vec::with_capacity(512),
    };
    t.publish();
    let result = t.event_loop();
    t.shutdown();
    t.publish();
    result.map(|()| t.stats)
}

impl LoadThread<'_> {
    fn event_loop(&mut self) -> io::Result<()> {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
        let mut buf = vec![0u8; READ_BUF_BYTES];
        let mut next_publish = Instant::now() + PUBLISH_EVERY;
        while !self.control.stop.load(Relaxed) {
            let window = self.control.window();
            let now = Instant::now();
            self.start_due(now, window);
            self.expire(now, window);
            if now >= next_publish {
                self.publish();
                next_publish = now + PUBLISH_EVERY;
            }

            let mut wake = (now + MAX_WAIT).min(next_publish);
            for next in [self.delayed.peek(), self.leaves.peek()]
                .into_iter()
                .flatten()
            {
                wake = wake.min(next.0 .0);
            }
            for d in [self.connect_deadlines.front(), self.head_deadlines.front()]
                .into_iter()
                .flatten()
            {
                wake = wake.min(d.at);
            }
            if !self.ready.is_empty()
                || (!self.first_opens.is_empty() && self.opening < self.settings.max_opening)
            {
                wake = now;
            }
            // Round up: waking a little late is fine, spinning on a 0 ms wait is not.
            let timeout_ms = wake
                .saturating_duration_since(now)
                .as_micros()
                .div_ceil(1000) as i32;
            let n = self.epoll.wait(&mut events, timeout_ms)?;
            for ev in &events[..n] {
                let slot = (ev.u64 & 0xFFFF_FFFF) as usize;
                let generation = (ev.u64 >> 32) as u32;
                if self.slots[slot].generation != generation {
                    continue;
                }
                // Error and hang-up readiness need no special case: SO_ERROR or the read
                // reports what happened.
                match self.slots[slot].conn {
                    Conn::Connecting => self.on_connect_ready(slot, window),
                    Conn::Reading => self.on_readable(slot, &mut buf, window),
                    Conn::None => {}
                }
            }
            self.control.threads[self.index].publish_counters(&self.stats);
        }
        Ok(())
    }

    fn now(&self, window: Window) -> Now {
        let mono = Instant::now();
        Now {
            mono,
            wall_us: wall_us(),
            measuring: window.contains(mono),
        }
    }

    /// Starts due reconnections, then first opens within the budget.
    fn start_due(&mut self, now: Instant, window: Window) {
        while let Some(&Reverse((at, slot, generation))) = self.delayed.peek() {
            if at > now {
                break;
            }
            self.delayed.pop();
            if self.slots[slot].generation == generation && !self.slots[slot].over {
                self.ready.push_back(slot);
            }
        }
        while let Some(slot) = self.ready.pop_front() {
            self.connect(slot, window);
        }
        while self.opening < self.settings.max_opening {
            let Some(slot) = self.first_opens.pop_front() else {
                break;
            };
            self.slots[slot].opening = true;
            self.opening += 1;
            self.connect(slot, window);
        }
    }

    /// Opens a connection for `slot`.
    fn connect(&mut self, slot: usize, window: Window) {
        self.stats.connects += 1;
        let s = &mut self.slots[slot];
        match start_connect(self.settings.target, s.source) {
            Ok((sock, connected)) => {
                let fd = sock.as_raw_fd();
                s.sock = Some(sock);
                s.conn = Conn::Connecting;
                let tok = token(slot, s.generation);
                let generation = s.generation;
                if connected {
                    if let Err(e) = self.epoll.add(fd, libc::EPOLLIN as u32, tok) {
                        return self.finish(
                            slot,
                            End::ConnectFailed(format!("epoll: {e}")),
                            window,
                        );
                    }
                    self.send_request(slot, window);
                } else {
                    if let Err(e) = self.epoll.add(fd, libc::EPOLLOUT as u32, tok) {
                        return self.finish(
                            slot,
                            End::ConnectFailed(format!("epoll: {e}")),
                            window,
                        );
                    }
                    self.connect_deadlines.push_back(Deadline {
                        at: Instant::now() + self.settings.connect_timeout,
                        slot,
                        generation,
                    });
                }
            }
            Err(e) => self.finish(slot, End::ConnectFailed(format!("connect: {e}")), window),
        }
    }

    /// The connect completed (or failed): check, then send the request.
    fn on_connect_ready(&mut self, slot: usize, window: Window) {
        let Some(fd) = self.slots[slot].sock.as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        if let Err(e) = take_error(fd) {
            return self.finish(slot, End::ConnectFailed(format!("connect: {e}")), window);
        }
        let tok = token(slot, self.slots[slot].generation);
        if let Err(e) = self.epoll.modify(fd, libc::EPOLLIN as u32, tok) {
            return self.finish(slot, End::ConnectFailed(format!("epoll: {e}")), window);
        }
        self.send_request(slot, window);
    }

    /// Sends the request of a connected slot in one write (a few hundred bytes into an
    /// empty socket buffer: a short write does not happen and is treated as an error).
    /// TLS: starts the handshake instead, the request queued behind it.
    fn send_request(&mut self, slot: usize, window: Window) {
        let s = &mut self.slots[slot];
        let template = s.template.as_deref().unwrap_or(&self.settings.template);
        s.state.request(template, &mut self.request);
        let Some(fd) = s.sock.as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        if let Some(client) = &self.tls {
            return self.start_tls(slot, fd, client.clone(), window);
        }
        match send(fd, &self.request) {
            Ok(n) if n == self.request.len() => {
                s.conn = Conn::Reading;
                self.head_deadlines.push_back(Deadline {
                    at: Instant::now() + self.settings.head_timeout,
                    slot,
                    generation: s.generation,
                });
            }
            Ok(n) => self.finish(
                slot,
                End::Io(format!(
                    "request: short write ({n} of {})",
                    self.request.len()
                )),
                window,
            ),
            Err(e) => self.finish(slot, End::Io(format!("request: {e}")), window),
        }
    }

    /// TLS: a new client connection with the request written into it, the ClientHello
    /// sent; the rest of the handshake and the request go out as the server answers
    /// ([`LoadThread::on_readable_tls`]).
    fn start_tls(&mut self, slot: usize, fd: i32, client: TlsClient, window: Window) {
        let mut conn = match client.connect() {
            Ok(c) => Box::new(c),
            Err(e) => return self.finish(slot, End::ConnectFailed(e), window),
        };
        use std::io::Write as _;
        let queued = conn.writer().write_all(&self.request);
        if let Err(e) = queued.and_then(|()| tls::flush(&mut conn, fd)) {
            return self.finish(slot, End::Io(format!("tls: {e}")), window);
        }
        let s = &mut self.slots[slot];
        s.tls = Some(conn);
        s.conn = Conn::Reading;
        self.head_deadlines.push_back(Deadline {
            at: Instant::now() + self.settings.head_timeout,
            slot,
            generation: s.generation,
        });
    }

    /// One read from a readable socket.
    fn on_readable(&mut self, slot: usize, buf: &mut [u8], window: Window) {
        let Some(fd) = self.slots[slot].sock.as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        if self.slots[slot].tls.is_some() {
            return self.on_readable_tls(slot, fd, buf, window);
        }
        match read(fd, buf) {
            Ok(0) => {
                let why = self.slots[slot].state.on_eof();
                self.finish(slot, why, window);
            }
            Ok(n) => {
                self.on_bytes(slot, &buf[..n], window);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => self.finish(slot, End::Io(e.to_string()), window),
        }
    }

    /// TLS: one read of records from the socket; decrypts them; sends what rustls has to
    /// send (handshake, the queued request, alerts); hands every plaintext byte to the
    /// stream. EOF: the server's close_notify, or a TCP FIN without it (a dropped stream
    /// either way, as for plain).
    fn on_readable_tls(&mut self, slot: usize, fd: i32, buf: &mut [u8], window: Window) {
        let Some(conn) = self.slots[slot].tls.as_deref_mut() else {
            return;
        };
        let handshaking = conn.is_handshaking();
        match conn.read_tls(&mut FdIo(fd)) {
            Ok(0) => {
                let why = self.slots[slot].state.on_eof();
                return self.finish(slot, why, window);
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                return
            }
            Err(e) => return self.finish(slot, End::Io(e.to_string()), window),
        }
        let processed = conn.process_new_packets();
        // Whatever rustls has to say (Finished, the request, a KeyUpdate, or the alert
        // after an error) goes out before the bytes are read.
        let flushed = tls::flush(conn, fd);
        if let Err(e) = processed {
            return self.finish(slot, End::Io(format!("tls: {e}")), window);
        }
        if let Err(e) = flushed {
            return self.finish(slot, End::Io(format!("tls: {e}")), window);
        }
        if handshaking && !conn.is_handshaking() {
            self.stats.tls_handshakes += 1;
            self.stats.tls_resumed += u64::from(tls::resumed(conn) == Some(true));
        }
        loop {
            let generation = self.slots[slot].generation;
            let Some(conn) = self.slots[slot].tls.as_deref_mut() else {
                return;
            };
            match io::Read::read(&mut conn.reader(), buf) {
                Ok(0) => {
                    let why = self.slots[slot].state.on_eof();
                    return self.finish(slot, why, window);
                }
                Ok(n) => {
                    self.on_bytes(slot, &buf[..n], window);
                    if self.slots[slot].generation != generation {
                        return; // the stream closed the connection
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    let why = self.slots[slot].state.on_eof();
                    return self.finish(slot, why, window);
                }
                Err(e) => return self.finish(slot, End::Io(format!("tls: {e}")), window),
            }
        }
    }

    /// Bytes of the response (plaintext): the stream parses them; counts a head accepted by
    /// them; closes the connection if the stream says so.
    #[inline]
    fn on_bytes(&mut self, slot: usize, data: &[u8], window: Window) {
        let now = self.now(window);
        let s = &mut self.slots[slot];
        let (was_in_body, was_established) = (s.state.in_body(), s.state.established);
        let flow = s.state.on_data(data, now, &mut self.stats);
        if !was_in_body && s.state.in_body() {
            // The head was accepted by this read.
            self.open += 1;
            if s.opening {
                s.opening = false;
                self.opening -= 1;
            }
            if !was_established {
                self.established += 1;
            }
            if !self.settings.leave_every.is_zero() {
                let stay = self.settings.leave_every.mul_f64(0.5 + self.unit());
                let generation = self.slots[slot].generation;
                self.leaves
                    .push(Reverse((now.mono + stay, slot, generation)));
            }
            self.publish_gauges();
        }
        if let Flow::Close(why) = flow {
            self.finish(slot, why, window);
        }
    }

    /// A uniform draw from [0, 1).
    fn unit(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `slot` leaves on its own: closes its connection, with RST or FIN (a coin toss: a
    /// browser tab that is closed, a phone that loses its network), and comes back after a
    /// pause with `Last-Event-ID`.
    fn leave(&mut self, slot: usize, window: Window) {
        let rst = self.unit() < 0.5;
        if let (true, Some(sock)) = (rst, self.slots[slot].sock.as_ref()) {
            set_linger_zero(sock.as_raw_fd());
        }
        self.finish(slot, End::Left, window);
    }

    /// Closes `slot`'s connection (if any) and acts on why it ended.
    fn finish(&mut self, slot: usize, why: End, window: Window) {
        let now = self.now(window);
        let reconnect = self.settings.reconnect;
        let pause = if why == End::Left {
            self.settings.leave_pause.mul_f64(self.unit())
        } else {
            Duration::ZERO
        };
        let s = &mut self.slots[slot];
        drop(s.tls.take());
        drop(s.sock.take());
        s.generation = s.generation.wrapping_add(1);
        s.conn = Conn::None;
        if s.state.in_body() {
            self.open -= 1;
        }
        match s.state.ended(why, reconnect, now, &mut self.stats) {
            Next::Reconnect { after } if after.is_zero() && pause.is_zero() => {
                self.ready.push_back(slot)
            }
            Next::Reconnect { after } => {
                let after = after.max(pause);
                self.delayed
                    .push(Reverse((now.mono + after, slot, s.generation)));
            }
            Next::Ended => {
                s.over = true;
                self.over += 1;
                if s.opening {
                    s.opening = false;
                    self.opening -= 1;
                }
                if !s.state.established {
                    self.failed_to_open += 1;
                }
            }
        }
        self.publish_gauges();
    }

    /// Fails connections whose connect or head deadline passed; makes streams leave whose
    /// stay is over.
    fn expire(&mut self, now: Instant, window: Window) {
        while let Some(&Reverse((at, slot, generation))) = self.leaves.peek() {
            if at > now {
                break;
            }
            self.leaves.pop();
            let s = &self.slots[slot];
            if s.generation == generation && s.state.in_body() {
                self.leave(slot, window);
            }
        }
        while let Some(d) = self.connect_deadlines.front().copied() {
            if d.at > now {
                break;
            }
            self.connect_deadlines.pop_front();
            let s = &self.slots[d.slot];
            if s.generation == d.generation && s.conn == Conn::Connecting {
                self.finish(d.slot, End::ConnectTimeout, window);
            }
        }
        while let Some(d) = self.head_deadlines.front().copied() {
            if d.at > now {
                break;
            }
            self.head_deadlines.pop_front();
            let s = &self.slots[d.slot];
            if s.generation == d.generation && s.conn == Conn::Reading && !s.state.in_body() {
                self.finish(d.slot, End::HeadTimeout, window);
            }
        }
    }

    /// Publishes counters (every [`PUBLISH_EVERY`]) and gauges.
    fn publish(&mut self) {
        self.control.threads[self.index].publish(&mut self.stats);
        self.publish_gauges();
    }

    /// Publishes the stream gauges at once: they change per connection, not per event, and
    /// the coordinator's phase decisions wait on them.
    fn publish_gauges(&self) {
        let p = &self.control.threads[self.index];
        p.live.store(self.slots.len() as u64 - self.over, Relaxed);
        p.open.store(self.open, Relaxed);
        p.established.store(self.established, Relaxed);
        p.failed_to_open.store(self.failed_to_open, Relaxed);
    }

    /// Records what each stream went through (its longest silence, its events, its lost and
    /// repeated ids, its first id, whether it is stuck), then closes every socket with RST (no TIME_WAIT left behind; not counted
    /// as ends).
    fn shutdown(&mut self) {
        let now = Instant::now();
        for s in &self.slots {
            if !s.state.established {
                continue;
            }
            let quiet = s.state.max_quiet_until(now);
            self.stats.quiet.record(quiet.as_micros() as u64);
            if self.settings.max_quiet.is_some_and(|limit| quiet > limit) {
                self.stats.quiet_over += 1;
            }
            for &(at, long) in s.state.long_silences() {
                let since_start = at.saturating_duration_since(self.control.base);
                self.stats.long_silences.push((
                    s.stream,
                    since_start.as_secs_f64(),
                    long.as_micros() as u64,
                ));
            }
            let (gaps, duplicates) = s.state.id_counts();
            self.stats.streams_with_gaps += u64::from(gaps > 0);
            self.stats.streams_with_duplicates += u64::from(duplicates > 0);
            self.stats.stream_gaps_max = self.stats.stream_gaps_max.max(gaps);
            self.stats.stream_duplicates_max = self.stats.stream_duplicates_max.max(duplicates);
            if let Some(first) = s.state.first_id() {
                self.stats.add_first_id(first);
            }
            let events = s.state.events_received();
            self.stats.stream_events_min = Some(
                self.stats
                    .stream_events_min
                    .map_or(events, |m| m.min(events)),
            );
            if let Some(limit) = self.settings.stuck_after {
                let last = s.state.last_event_at();
                if !s.over && last.is_none_or(|t| now.saturating_duration_since(t) > limit) {
                    self.stats.stuck += 1;
                }
            }
        }
        for s in &mut self.slots {
            s.tls = None;
            if let Some(sock) = s.sock.take() {
                set_linger_zero(sock.as_raw_fd());
                if s.state.in_body() {
                    self.open -= 1;
                }
            }
            s.conn = Conn::None;
        }
    }
}
