//! Upstream resume: when an SSE upstream drops, the client's task (same worker, no handoff)
//! connects a fresh upstream, asks it to continue after the last event the client got, and the
//! relay splices the new body into the client's open response.
//!
//! This file holds the decisions and one reconnect attempt; the relay drives them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::conn_io::{read_more_within, write_vec_within, BytesVec, IoFailure};
use crate::http::{
    response_body_kind, write_upstream_request, BodyDecoder, BodyKind, ForwardContext, HeadScanner,
    HeaderEdit, Method, OutFraming, RequestHead, ResponseHead,
};
use crate::upstream::connect;
use crate::upstream::group::UpstreamGroup;
use crate::upstream::health::FailedTry;
use crate::upstream::stream::UpstreamStream;
use crate::worker::WorkerCtx;
use bytes::BytesMut;

/// Resume settings resolved from the command line.
#[derive(Debug, Clone, Copy)]
pub struct ResumeSettings {
    /// `--upstream-idle-timeout`: no byte from the upstream for this long is a drop (None = off).
    pub idle_timeout: Option<Duration>,
    /// `--pass-clean-end`: a clean end of the upstream body ends the client's stream too.
    pub pass_clean_end: bool,
    /// `--reconnect-initial`: first backoff delay (the upstream's `retry:` replaces it).
    pub initial: Duration,
    /// `--reconnect-max-delay`: backoff ceiling.
    pub max_delay: Duration,
    /// `--reconnect-timeout`: give up after this long without a new event.
    pub timeout: Duration,
    /// `--resume-post-as-get`: resume a POST-born stream with a GET (MCP 2025-11-25).
    pub post_as_get: bool,
    /// `--resume-without-id`: reconnect streams that carry no ids (a fresh stream, not exact).
    pub without_id: bool,
}

/// Whether a dropped stream may be resumed, and with which method.
#[derive(Debug, PartialEq, Eq)]
pub enum ResumePolicy {
    /// Reconnect with this method (GET; also for POST-born streams under --resume-post-as-get).
    Resume,
    /// End the client's stream; the reason is logged.
    End(&'static str),
}

/// Decides whether a stream born from `method`, whose cursor is `last_id`, is resumed.
/// `cancels_on_leave`: closing its response cancels its request (MCP 2026-07-28), so it is
/// never resumed, whatever the settings.
pub fn policy(
    settings: &ResumeSettings,
    method: Method,
    last_id: &[u8],
    cancels_on_leave: bool,
) -> ResumePolicy {
    if cancels_on_leave {
        return ResumePolicy::End(
            "closing the response cancels this request (MCP 2026-07-28): it is never run again",
        );
    }
    match method {
        Method::Get => {}
        Method::Post if settings.post_as_get => {}
        _ => return ResumePolicy::End("the stream began as a non-GET request, which is never re-sent (see --resume-post-as-get)"),
    }
    if last_id.is_empty() && !settings.without_id {
        return ResumePolicy::End(
            "the stream has no event id to resume from (see --resume-without-id)",
        );
    }
    ResumePolicy::Resume
}

/// Exponential backoff with jitter.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
    rng: u64,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration, seed: u64) -> Self {
        Backoff {
            base,
            max,
            failures: 0,
            rng: seed | 1,
        }
    }

    /// The upstream's `retry:` hint becomes the starting delay.
    pub fn set_base(&mut self, base: Duration) {
        self.base = base.min(self.max);
    }

    /// The delay before the next attempt: base * 2^failures, capped, then jittered into
    /// [delay/2, delay] so that many streams dropped by one upstream do not reconnect in lockstep.
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32 << self.failures.min(16);
        let delay = self.base.saturating_mul(factor).min(self.max);
        self.failures = self.failures.saturating_add(1);
        // xorshift64: cheap, good enough for jitter.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let half = delay / 2;
        let jitter_ns = if half.is_zero() {
            0
        } else {
            self.rng % (half.as_nanos() as u64 + 1)
        };
        half + Duration::from_nanos(jitter_ns)
    }

    /// A new event got through: the next drop starts from the base again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// What one reconnect attempt produced.
pub enum AttemptResult {
    /// A 200 `text/event-stream`: splice this body in.
    Splice {
        stream: UpstreamStream,
        ubuf: BytesMut,
        decoder: BodyDecoder,
        replica: usize,
    },
    /// A final answer (204, or 4xx other than 408/429, or a non-SSE 200): end the client stream.
    Final(u16),
    /// Worth retrying (refused, timed out, 5xx, 408, 429, invalid answer); the reason is logged.
    Retry(RetryReason),
}

/// Why a reconnect attempt is worth another try.
#[derive(Debug)]
pub enum RetryReason {
    /// No replica accepted a connection (each one's failure).
    Connect(Vec<String>),
    /// The request could not be written to the upstream.
    Send { url: Arc<str> },
    /// The upstream closed before answering.
    Closed { url: Arc<str> },
    /// No answer head within `--upstream-header-timeout`.
    NoAnswer { url: Arc<str> },
    /// The answer was not valid HTTP.
    Invalid { url: Arc<str>, detail: String },
    /// Reading the answer failed.
    Io {
        url: Arc<str>,
        error: std::io::Error,
    },
    /// 5xx, 408 or 429: the upstream asks to come back later.
    Status { url: Arc<str>, status: u16 },
}

impl std::fmt::Display for RetryReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RetryReason::Connect(failures) => {
                write!(f, "no replica connected: {}", failures.join("; "))
            }
            RetryReason::Send { url } => write!(f, "{url}: could not send the request"),
            RetryReason::Closed { url } => write!(f, "{url}: closed before answering"),
            RetryReason::NoAnswer { url } => write!(f, "{url}: no answer in time"),
            RetryReason::Invalid { url, detail } => write!(f, "{url}: invalid response: {detail}"),
            RetryReason::Io { url, error } => write!(f, "{url}: {error}"),
            RetryReason::Status { url, status } => write!(f, "{url}: answered {status}"),
        }
    }
}

/// Connects to the upstream (the stream's replica first unless it is ejected, then the others of
/// its route's group in turn, ejected ones last), re-sends the stream's request as a GET with
/// `Last-Event-ID: last_id`, and reads the answer's head within `header_timeout` (the route's
/// `upstream-header-timeout`). Cancel-safe in the sense that matters: it owns its socket, which
/// is closed if it is dropped.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn attempt(
    ctx: &WorkerCtx,
    group: &UpstreamGroup,
    header_timeout: Duration,
    request: &RequestHead,
    request_id: &[u8],
    client_addr: std::net::IpAddr,
    last_id: &[u8],
    first_replica: usize,
    header_edits: &[HeaderEdit],
    pinned: bool,
) -> AttemptResult {
    // A pinned stream (an MCP session) resumes on its own replica or not at all.
    let order: Vec<usize> = if pinned {
        vec![first_replica]
    } else {
        ctx.upstreams
            .borrow()
            .try_order(group.starting_at(first_replica))
            .collect()
    };
    let mut failures = Vec::new();
    for replica in order {
        let mut up = match connect::connect_fresh(ctx, group, replica).await {
            Ok(up) => up,
            Err(e) => {
                failures.push(e.to_string());
                continue;
            }
        };
        let prefix = ctx.upstreams.borrow().spec(replica).prefix.clone();
        let mut head = BytesMut::with_capacity(request.bytes.len() + 128);
        write_upstream_request(
            request,
            OutFraming::Empty,
            &ForwardContext {
                client_addr,
                proto: "http",
                path_prefix: prefix.as_bytes(),
                // An empty cursor (--resume-without-id) asks for a fresh stream: the header is
                // removed altogether.
                last_event_id: Some(last_id),
                method: Some(b"GET"),
                request_id: Some(request_id),
                upgrade: false,
                header_edits,
            },
            &mut head,
        );
        let mut out = BytesVec::new();
        out.push(head.freeze());
        let result = match write_vec_within(&mut up.stream, out, ctx.config.timeouts.send).await {
            Ok(_) => read_answer(ctx, up.stream, replica, header_timeout).await,
            Err(_) => AttemptResult::Retry(RetryReason::Send {
                url: ctx.upstreams.borrow().spec(replica).url.clone(),
            }),
        };
        record_health(ctx, replica, &result);
        return result;
    }
    AttemptResult::Retry(RetryReason::Connect(failures))
}

/// What a reconnect's answer shows about its replica (passive health; connect failures are
/// counted where they happen). A slow or invalid answer counts neither way, as for requests.
fn record_health(ctx: &WorkerCtx, replica: usize, result: &AttemptResult) {
    let set = ctx.upstreams.borrow();
    match result {
        AttemptResult::Splice { .. } => set.record_answer(replica, 200),
        AttemptResult::Final(status) | AttemptResult::Retry(RetryReason::Status { status, .. }) => {
            set.record_answer(replica, *status)
        }
        AttemptResult::Retry(
            RetryReason::Send { .. } | RetryReason::Closed { .. } | RetryReason::Io { .. },
        ) => set.record_failure(replica, FailedTry::ClosedBeforeHead),
        AttemptResult::Retry(
            RetryReason::Connect(_) | RetryReason::NoAnswer { .. } | RetryReason::Invalid { .. },
        ) => {}
    }
}

async fn read_answer(
    ctx: &WorkerCtx,
    mut stream: UpstreamStream,
    replica: usize,
    header_timeout: Duration,
) -> AttemptResult {
    let limits = ctx.config.head_limits;
    let deadline = Instant::now() + header_timeout;
    let url = ctx.upstreams.borrow().spec(replica).url.clone();
    let mut scanner = HeadScanner::new();
    let mut buf = BytesMut::new();
    let head = loop {
        match scanner.next_head::<ResponseHead>(&mut buf, &limits) {
            // An interim answer (100 Continue, 103 Early Hints): the real one follows.
            Ok(Some(head)) if (100..200).contains(&head.status) => continue,
            Ok(Some(head)) => break head,
            Ok(None) => {}
            Err(e) => {
                return AttemptResult::Retry(RetryReason::Invalid {
                    url,
                    detail: e.to_string(),
                })
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match read_more_within(&mut stream, buf, 4096, left).await {
            Ok((0, _)) => return AttemptResult::Retry(RetryReason::Closed { url }),
            Ok((_, b)) => buf = b,
            Err(IoFailure::TimedOut) => return AttemptResult::Retry(RetryReason::NoAnswer { url }),
            Err(IoFailure::Io(error)) => {
                return AttemptResult::Retry(RetryReason::Io { url, error })
            }
        }
    };
    match head.status {
        200 => {
            let is_sse = head.is_event_stream();
            let kind = response_body_kind(Method::Get, &head).map(|f| f.kind);
            match kind {
                Ok(kind) if is_sse && kind != BodyKind::Empty => AttemptResult::Splice {
                    stream,
                    ubuf: buf,
                    decoder: BodyDecoder::new(kind),
                    replica,
                },
                _ => AttemptResult::Final(200),
            }
        }
        status @ (408 | 429) => AttemptResult::Retry(RetryReason::Status { url, status }),
        status if status >= 500 => AttemptResult::Retry(RetryReason::Status { url, status }),
        s => AttemptResult::Final(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ResumeSettings {
        ResumeSettings {
            idle_timeout: None,
            pass_clean_end: false,
            initial: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            post_as_get: false,
            without_id: false,
        }
    }

    #[test]
    fn only_get_streams_with_ids_resume_by_default() {
        let s = settings();
        assert_eq!(policy(&s, Method::Get, b"5", false), ResumePolicy::Resume);
        assert!(matches!(
            policy(&s, Method::Post, b"5", false),
            ResumePolicy::End(_)
        ));
        assert!(matches!(
            policy(&s, Method::Get, b"", false),
            ResumePolicy::End(_)
        ));
        let s = ResumeSettings {
            post_as_get: true,
            without_id: true,
            ..settings()
        };
        assert_eq!(policy(&s, Method::Post, b"5", false), ResumePolicy::Resume);
        assert_eq!(policy(&s, Method::Get, b"", false), ResumePolicy::Resume);
        // MCP 2026-07-28: never, whatever the settings allow.
        assert!(matches!(
            policy(&s, Method::Get, b"5", true),
            ResumePolicy::End(_)
        ));
        assert!(
            matches!(policy(&s, Method::Put, b"5", false), ResumePolicy::End(_)),
            "never a PUT"
        );
    }

    #[test]
    fn backoff_grows_caps_and_jitters_within_half() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 42);
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay()).collect();
        for (i, d) in delays.iter().enumerate() {
            let full = Duration::from_millis(100 * (1 << i)).min(Duration::from_secs(1));
            assert!(
                *d >= full / 2 && *d <= full,
                "attempt {i}: {d:?} not in [{:?}, {full:?}]",
                full / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
        b.set_base(Duration::from_secs(3));
        b.reset();
        assert!(
            b.next_delay() <= Duration::from_secs(1),
            "retry hint capped by the max delay"
        );
    }
}
