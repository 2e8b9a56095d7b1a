//! Running a request's stages through its plan: the interceptors that `applies_to` accepted,
//! in chain order, each verdict counted on the link's counters (Relaxed: they are statistics,
//! read by /metrics, never used to order anything).
//!
//! ```text
//! for each interceptor of the stage, in order:
//!     NoMatch              next
//!     Matched { acted }    matches += 1, actions += acted; next (it sees earlier changes)
//!     Deny / Drop          matches += 1, actions += 1; the chain ends here
//! ```
//!
//! A `Deny` at the response stage or a `Drop` outside the event stage (possible only from a
//! program's own interceptor) is counted and otherwise ignored: there is nothing left to deny
//! once the response has come, and only events can be dropped.

use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::deny_answer::deny_answer;
use super::event_rewrite::rewrite_event;
use super::mcp::{LazyMessages, RequestMethods};
use super::spec::Stage;
use super::{
    BodyInspection, EventMessage, EventOutcome, Link, RequestMessage, RequestOutcome, RequestView,
    ResponseMessage, ResponseOutcome, RuleChain, RulePlan, Verdict,
};
use crate::http::{RequestHead, ResponseHead};

impl RulePlan {
    /// The plan of a request on route `route` (its name, None for a route without one): None
    /// when no interceptor applies to it (the path without rules).
    pub fn for_request(
        chain: &RuleChain,
        head: &RequestHead,
        route: Option<&str>,
    ) -> Option<Box<RulePlan>> {
        if chain.is_empty() {
            return None;
        }
        let view = RequestView::new(head, route);
        let (mut request, mut response, mut event) = (Vec::new(), Vec::new(), Vec::new());
        for (i, link) in chain.links.iter().enumerate() {
            if !link.interceptor.applies_to(&view) {
                continue;
            }
            match link.interceptor.stage() {
                Stage::Request => request.push(i),
                Stage::Response => response.push(i),
                Stage::Event => event.push(i),
            }
        }
        if request.is_empty() && response.is_empty() && event.is_empty() {
            return None;
        }
        let head = (!event.is_empty()).then(|| head.clone());
        Some(Box::new(RulePlan {
            request,
            response,
            event,
            chain: chain.clone(),
            methods: RequestMethods::default(),
            route: route.map(str::to_owned),
            head,
        }))
    }

    fn link(&self, index: usize) -> &Link {
        &self.chain.links[index]
    }

    /// An interceptor of the request stage needs the request body, or one of a later stage
    /// needs the request's JSON-RPC ids (`mcp-result-of` another method than `tools/list`).
    pub fn needs_request_body(&self) -> bool {
        self.request
            .iter()
            .any(|&i| self.link(i).interceptor.needs_body())
            || self
                .response
                .iter()
                .chain(&self.event)
                .any(|&i| self.link(i).interceptor.needs_request_ids())
    }

    /// Runs the request stage. `body`: as read (`NotRead` when `needs_request_body` was false).
    /// Remembers the request's JSON-RPC ids and methods for `mcp-result-of`.
    pub fn run_request(&mut self, head: &RequestHead, body: BodyInspection<'_>) -> RequestOutcome {
        let view = RequestView::new(head, self.route.as_deref());
        let messages = LazyMessages::default();
        let mut edits = Vec::new();
        for &i in &self.request {
            let link = &self.chain.links[i];
            let mut msg = RequestMessage {
                view,
                body,
                edits: &mut edits,
                mcp: &messages,
                blamed: Vec::new(),
            };
            let verdict = link.interceptor.on_request(&mut msg);
            count(link, &verdict);
            if let Verdict::Deny(denial) = verdict {
                let blamed = std::mem::take(&mut msg.blamed);
                let parsed = match body {
                    BodyInspection::Read(bytes) => Some(messages.get(bytes)),
                    _ => None,
                };
                return RequestOutcome::Answer(deny_answer(head, parsed, &denial, &blamed));
            }
        }
        // Later stages may ask which request a JSON-RPC response answers; a read body is
        // parsed for that (once, and it may already be).
        if let BodyInspection::Read(bytes) = body {
            if !self.response.is_empty() || !self.event.is_empty() {
                self.methods = RequestMethods::from_messages(messages.get(bytes));
            }
        }
        RequestOutcome::Forward { edits }
    }

    /// An interceptor of the response stage needs this response's body (only JSON bodies are
    /// read: `application/json` or `+json`, and not content-coded: a gzip body is no JSON to
    /// look into, and redacting its bytes would corrupt it).
    pub fn needs_response_body(&self, head: &ResponseHead) -> bool {
        let bodiless = head.status < 200 || head.status == 204 || head.status == 304;
        let coded = head
            .header("content-encoding")
            .is_some_and(|c| !c.trim_ascii().eq_ignore_ascii_case(b"identity"));
        !bodiless
            && !coded
            && is_json(head)
            && self
                .response
                .iter()
                .any(|&i| self.link(i).interceptor.needs_body())
    }

    /// Runs the response stage. `body`: the JSON body when `needs_response_body` said so and it
    /// fitted in `max-inspect-bytes`.
    pub fn run_response(
        &self,
        request: &RequestHead,
        head: &ResponseHead,
        body: Option<&[u8]>,
    ) -> ResponseOutcome {
        let mut edits = Vec::new();
        let mut msg = ResponseMessage {
            request: RequestView::new(request, self.route.as_deref()),
            head,
            body,
            new_body: None,
            edits: &mut edits,
            methods: &self.methods,
            mcp: LazyMessages::default(),
        };
        for &i in &self.response {
            let link = self.link(i);
            let verdict = link.interceptor.on_response(&mut msg);
            count(link, &verdict);
        }
        let body = msg.new_body.take().map(Bytes::from);
        ResponseOutcome { edits, body }
    }

    /// The request has interceptors at the event stage.
    pub fn has_event_rules(&self) -> bool {
        !self.event.is_empty()
    }

    /// Runs the event stage on one complete block. `Keep` unless an interceptor dropped it or
    /// changed its data: then the proxy sends the very `Bytes` it has.
    pub fn run_event(&self, raw: &Bytes) -> EventOutcome {
        let Some(head) = &self.head else {
            return EventOutcome::Keep;
        };
        let mut msg = EventMessage {
            request: RequestView::new(head, self.route.as_deref()),
            raw,
            parsed: Default::default(),
            new_data: None,
            methods: &self.methods,
            mcp: LazyMessages::default(),
        };
        for &i in &self.event {
            let link = self.link(i);
            let verdict = link.interceptor.on_event(&mut msg);
            count(link, &verdict);
            if verdict == Verdict::Drop {
                return EventOutcome::Drop;
            }
        }
        match msg.new_data {
            Some(data) => EventOutcome::Replace(Bytes::from(rewrite_event(raw, &data))),
            None => EventOutcome::Keep,
        }
    }
}

/// The link's counters for one verdict.
fn count(link: &Link, verdict: &Verdict) {
    let acted = match verdict {
        Verdict::NoMatch => return,
        Verdict::Matched { acted } => *acted,
        Verdict::Deny(_) | Verdict::Drop => true,
    };
    link.stats.matches.fetch_add(1, Ordering::Relaxed);
    if acted {
        link.stats.actions.fetch_add(1, Ordering::Relaxed);
    }
}

/// `Content-Type` `application/json` or any `+json` type (RFC 6839), parameters ignored.
fn is_json(head: &ResponseHead) -> bool {
    head.header("content-type").is_some_and(|value| {
        let media = value
            .split(|&b| b == b';')
            .next()
            .unwrap_or(b"")
            .trim_ascii();
        media.eq_ignore_ascii_case(b"application/json")
            || (media.len() > 5 && media[media.len() - 5..].eq_ignore_ascii_case(b"+json"))
    })
}
