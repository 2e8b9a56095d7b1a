//! Reconnecting a dropped upstream while the client's response stays open: back off, attempt,
//! repeat until a body can be spliced, a final answer comes, or `--reconnect-timeout` passes.
//! Heartbeats keep the client's connection alive meanwhile, and a client that leaves ends it.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::relay::{sleep_until_opt, Relay};
use super::resume::{self, AttemptResult};
use crate::client_stream::ClientStream;
use crate::conn_io::{write_vec_within, PeekState};
use crate::http::BodyDecoder;
use crate::metrics::WorkerMetrics;
use crate::upstream::stream::UpstreamStream;

/// The client's readiness, or never when there is no client.
async fn readable_or_never<C: ClientStream>(client: Option<&C>) -> std::io::Result<()> {
    match client {
        Some(c) => c.tcp().readable(false).await,
        None => std::future::pending().await,
    }
}

/// How reconnecting ended.
pub(super) enum Reconnect {
    Spliced {
        stream: UpstreamStream,
        buf: BytesMut,
        decoder: BodyDecoder,
        replica: usize,
        attempts: u32,
    },
    Final(u16),
    GaveUp(u32),
    ClientGone,
}

impl Relay<'_> {
    /// `client` None: the stream reads on without a client (`super::fanout`); nobody is sent
    /// heartbeats or watched.
    pub(super) async fn reconnect<C: ClientStream>(
        &mut self,
        mut client: Option<&mut C>,
        last_id: &[u8],
        dropped_at: Instant,
        first_wait: Duration,
    ) -> Reconnect {
        // The attempt re-sends the client's request while heartbeats change the relay: parsed
        // again from the kept bytes (shared, not copied), and the route's Rc for its replicas.
        let request = self.kept_request();
        let route = self.route.clone();
        // The request's id goes with every reconnect (the upstream's logs join them up).
        let status = self.entry.status.clone();
        // The request's header changes (its rules', an MCP session's upstream id) go with every
        // reconnect, and a pinned stream tries only its replica (a copy: reconnects are rare,
        // and only streams with extras have any).
        let (header_edits, pinned) = self
            .extras
            .as_ref()
            .map_or_else(Default::default, |x| (x.upstream_edits.clone(), x.pinned));
        // For the forwarded-for headers of the re-sent request; asked of the socket rather than
        // kept for the stream's life (reconnects are rare, idle streams many). No peer: gone.
        let peer = match client.as_deref() {
            Some(c) => match c.peer_addr() {
                Ok(peer) => peer.ip(),
                Err(_) => return Reconnect::ClientGone,
            },
            // Kept when the client left (its address goes with the re-sent request as before).
            None => self
                .ring
                .lineage
                .fanout()
                .and_then(|f| f.peer.get())
                .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        };
        let give_up_at =
            self.resumes().stalled_since.unwrap_or(dropped_at) + self.route.settings.resume.timeout;
        let mut attempts = 0u32;
        let mut wait = first_wait;
        loop {
            // ---- wait out the backoff, with heartbeats and the client watched ----
            // Giving up happens at the timeout, not earlier because the next attempt would fall
            // after it.
            let wake = (Instant::now() + wait).min(give_up_at);
            if let Some(end) = self.idle_until(client.as_deref_mut(), wake).await {
                return end;
            }
            if Instant::now() >= give_up_at {
                return Reconnect::GaveUp(attempts);
            }
            // ---- one attempt, with heartbeats and the client watched ----
            attempts += 1;
            WorkerMetrics::inc(&self.ctx.metrics.reconnect_attempts);
            // Boxed: only alive while reconnecting, so a streaming relay does not carry its size.
            let mut attempt = Box::pin(resume::attempt(
                self.ctx,
                &route.upstreams,
                route.settings.upstream_header_timeout,
                &request,
                status.request_id.as_bytes(),
                peer,
                last_id,
                self.replica as usize,
                &header_edits,
                pinned,
            ));
            let mut client_busy = false;
            let result = loop {
                // Nobody to send heartbeats to without a client.
                let heartbeat_at = client.as_ref().and(self.heartbeat_at());
                let sleep =
                    sleep_until_opt(heartbeat_at.map(|h| h.min(give_up_at)).or(Some(give_up_at)));
                monoio::select! {
                    r = attempt.as_mut() => break r,
                    _ = sleep => {
                        if Instant::now() >= give_up_at {
                            return Reconnect::GaveUp(attempts);
                        }
                        if let Some(c) = client.as_deref_mut() {
                            if let Some(end) = self.send_heartbeat(c).await {
                                return end;
                            }
                        }
                    }
                    ready = readable_or_never(client.as_deref()), if !client_busy => {
                        match (ready, client.as_deref().map_or(PeekState::Quiet, |c| c.peek_state())) {
                            (Err(_), _) | (_, PeekState::Closed) => return Reconnect::ClientGone,
                            // A pipelined request stays readable: stop watching.
                            (_, PeekState::HasData) => client_busy = true,
                            (_, PeekState::Quiet) => {}
                        }
                    }
                }
            };
            match result {
                AttemptResult::Splice {
                    stream,
                    ubuf,
                    decoder,
                    replica,
                } => {
                    return Reconnect::Spliced {
                        stream,
                        buf: ubuf,
                        decoder,
                        replica,
                        attempts,
                    };
                }
                AttemptResult::Final(status) => return Reconnect::Final(status),
                AttemptResult::Retry(why) => {
                    crate::log_debug!("reconnect attempt {attempts} failed: {why}");
                    wait = self.backoff().next_delay();
                }
            }
        }
    }

    /// Waits until `until`, sending heartbeats when due and watching the client. Some(end) when
    /// the client left.
    async fn idle_until<C: ClientStream>(
        &mut self,
        client: Option<&mut C>,
        until: Instant,
    ) -> Option<Reconnect> {
        let Some(client) = client else {
            monoio::time::sleep_until(until.into()).await;
            return None;
        };
        loop {
            let now = Instant::now();
            if now >= until {
                return None;
            }
            let heartbeat_at = self.heartbeat_at();
            let wake = heartbeat_at.map_or(until, |h| h.min(until));
            monoio::select! {
                _ = monoio::time::sleep_until(wake.into()) => {
                    if heartbeat_at.is_some_and(|h| Instant::now() >= h) {
                        if let Some(end) = self.send_heartbeat(client).await {
                            return Some(end);
                        }
                    }
                }
                ready = client.tcp().readable(false) => {
                    if ready.is_err() || client.peek_state() == PeekState::Closed {
                        return Some(Reconnect::ClientGone);
                    }
                    // Data from the client (a pipelined request) waits for after the stream; sleep
                    // out the rest without watching (it would stay readable).
                    monoio::time::sleep_until(until.into()).await;
                }
            }
        }
    }

    async fn send_heartbeat<C: ClientStream>(&mut self, client: &mut C) -> Option<Reconnect> {
        self.out.push_heartbeat();
        WorkerMetrics::inc(&self.ctx.metrics.heartbeats);
        let out = self.out.take();
        match write_vec_within(client, out, self.ctx.config.timeouts.send).await {
            Ok(back) => {
                self.out.put_back(back);
                self.last_sent = crate::stamp::Stamp::now();
                None
            }
            Err(_) => Some(Reconnect::ClientGone),
        }
    }
}
