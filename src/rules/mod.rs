//! Interceptor rules: every request, response and complete SSE event of a request through a
//! chain, decided once per request from its head, so that a request no rule can touch runs the
//! path without rules unchanged.
//!
//! - [`spec`]: a rule as the configuration file states it (`[[rule]]`).
//! - [`Interceptor`]: what every rule is, the built-in ones (`builtin`, compiled from a
//!   [`spec::RuleSpec`]) and a program's own (`Config::interceptors`).
//! - [`RuleChain`]: a route's interceptors in order, with their counters.
//! - [`RulePlan`]: the interceptors one request can meet, made from its head; the proxy runs its
//!   stages (`run_request`, `run_response`, `run_event`).
//! - `mcp`: JSON-RPC messages read from bodies and event data (parsed only when a rule's
//!   prefilter hits), and the JSON-RPC errors a denied MCP request gets.

mod request;
pub mod spec;

pub(crate) use request::RequestRules;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::http::{RequestHead, ResponseHead};
pub use spec::{ActionSpec, MatchSpec, RuleSpec, Stage};

/// What an interceptor decided about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Its match did not hold: the message goes on to the next interceptor untouched.
    NoMatch,
    /// Its match held; `acted`: it changed the message (a header set, data redacted, tools
    /// removed) or logged it. The message goes on to the next interceptor.
    Matched { acted: bool },
    /// (request stage) The request never reaches the upstream; the chain ends.
    Deny(Denial),
    /// (event stage) The event is neither sent nor recorded; the chain ends.
    Drop,
}

/// How a denied request is answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The HTTP status of a plain answer (an MCP request gets a JSON-RPC error instead, 200 for
    /// JSON-RPC over HTTP, with the request's id).
    pub status: u16,
    /// The reason: the plain answer's body, the JSON-RPC error's message.
    pub message: String,
}

/// A request as seen when deciding which interceptors can apply to it (its head only).
#[derive(Clone, Copy)]
pub struct RequestView<'a> {
    head: &'a RequestHead,
    route: Option<&'a str>,
}

/// A header change an interceptor asked for, applied when the head is written.
pub use crate::http::HeaderEdit;

/// The interface of every rule. Built-in rules implement it (compiled from the file's
/// `[[rule]]` tables); a program embedding tether adds its own through
/// `Config::interceptors`. One interceptor acts at one [`Stage`]; the proxy calls only the
/// method of that stage, and only for requests `applies_to` accepted.
///
/// Interceptors are shared by every worker (`Send + Sync`) and called on the per-event path:
/// they keep no lock there, and should reject cheaply (a prefilter) before any parsing.
pub trait Interceptor: Send + Sync + fmt::Debug {
    /// The rule's name: its label on /metrics and in log lines.
    fn name(&self) -> &str;
    /// The stage it acts at.
    fn stage(&self) -> Stage;
    /// Decided once per request, from its head: can this interceptor act on this request's
    /// messages at its stage? False keeps it out of the request's plan (never called).
    fn applies_to(&self, request: &RequestView<'_>) -> bool;
    /// (request and response stages) It needs the body: the request body (MCP keys, a refusal
    /// of bodies past the inspection limit), or a JSON response body.
    fn needs_body(&self) -> bool {
        false
    }
    /// (request stage)
    fn on_request(&self, _msg: &mut RequestMessage<'_>) -> Verdict {
        Verdict::NoMatch
    }
    /// (response stage)
    fn on_response(&self, _msg: &mut ResponseMessage<'_>) -> Verdict {
        Verdict::NoMatch
    }
    /// (event stage)
    fn on_event(&self, _msg: &mut EventMessage<'_>) -> Verdict {
        Verdict::NoMatch
    }
}

/// A request at the request stage: its head, its body when read for inspection, and the header
/// changes asked for so far.
pub struct RequestMessage<'a> {
    pub(crate) view: RequestView<'a>,
    pub(crate) body: BodyInspection<'a>,
    pub(crate) edits: &'a mut Vec<HeaderEdit>,
    pub(crate) mcp: &'a mcp::LazyMessages,
}

/// The request body as the request stage sees it.
#[derive(Debug, Clone, Copy)]
pub enum BodyInspection<'a> {
    /// No interceptor of the request needed it (or it has none).
    NotRead,
    /// Read whole (at most `max-inspect-bytes`).
    Read(&'a [u8]),
    /// Larger than `max-inspect-bytes`: forwarded uninspected.
    OverLimit,
}

/// A response at the response stage: its head, its body when read for inspection, and the
/// changes asked for so far.
pub struct ResponseMessage<'a> {
    pub(crate) request: RequestView<'a>,
    pub(crate) head: &'a ResponseHead,
    /// The JSON body when an interceptor needed it and it was within the inspection limit.
    pub(crate) body: Option<&'a [u8]>,
    /// A body an interceptor rewrote (then the client gets this one).
    pub(crate) new_body: Option<Vec<u8>>,
    pub(crate) edits: &'a mut Vec<HeaderEdit>,
    pub(crate) methods: &'a mcp::RequestMethods,
}

/// One complete SSE event at the event stage.
pub struct EventMessage<'a> {
    /// The block as it came (through its blank line).
    pub(crate) raw: &'a Bytes,
    /// Its fields, parsed on first use.
    pub(crate) parsed: Option<crate::sse::framer::ParsedEvent>,
    /// Data an interceptor rewrote (then the event is written again with it).
    pub(crate) new_data: Option<String>,
    pub(crate) methods: &'a mcp::RequestMethods,
}

pub mod mcp {
    //! Placeholder names for the JSON-RPC module (filled in by the rules work).
    /// The request's JSON-RPC messages, parsed on first use.
    #[derive(Debug, Default)]
    pub struct LazyMessages;
    /// The methods of the request's JSON-RPC requests by id (for `mcp-result-of`).
    #[derive(Debug, Default, Clone)]
    pub struct RequestMethods;
}

/// A route's interceptors in order (file rules for the route or every route, then the
/// program's own), each with its counters.
#[derive(Debug, Clone, Default)]
pub struct RuleChain {
    links: Arc<[Link]>,
}

#[derive(Debug)]
struct Link {
    interceptor: Arc<dyn Interceptor>,
    stats: Arc<RuleStats>,
}

/// One rule's counters for /metrics, process-wide, kept across reloads by name.
#[derive(Debug, Default)]
pub struct RuleStats {
    pub matches: std::sync::atomic::AtomicU64,
    pub actions: std::sync::atomic::AtomicU64,
}

/// What the request stage decided.
#[derive(Debug)]
pub enum RequestOutcome {
    /// Send it upstream with these header changes.
    Forward { edits: Vec<HeaderEdit> },
    /// Answer the client with this; nothing goes upstream.
    Answer(DenyAnswer),
}

/// What the response stage decided.
#[derive(Debug, Default)]
pub struct ResponseOutcome {
    pub edits: Vec<HeaderEdit>,
    /// A rewritten body (the client gets it with its length).
    pub body: Option<Bytes>,
}

/// What the event stage decided about one event.
#[derive(Debug, PartialEq, Eq)]
pub enum EventOutcome {
    /// Sent and recorded as it came (the same `Bytes`).
    Keep,
    /// Neither sent nor recorded.
    Drop,
    /// Sent and recorded as these bytes (its `id:`, `event:` and `retry:` lines kept).
    Replace(Bytes),
}

/// The interceptors one request can meet, by stage, made once from its head.
#[derive(Debug)]
pub struct RulePlan {
    request: Vec<usize>,
    response: Vec<usize>,
    event: Vec<usize>,
    chain: RuleChain,
    /// The methods of the request's JSON-RPC requests by id, from the request stage.
    methods: mcp::RequestMethods,
}

/// A denied request's answer, written by the proxy with its own head fields (request id,
/// connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DenyAnswer {
    pub status: u16,
    /// `application/json`, `text/event-stream` (an MCP client that accepts only SSE) or
    /// `text/plain; charset=utf-8`.
    pub content_type: &'static str,
    pub body: Bytes,
}

impl RuleChain {
    /// `interceptors` in the order they run; each gets the counters of its name (kept across
    /// reloads: the same name finds the same counters).
    pub fn new(interceptors: Vec<Arc<dyn Interceptor>>) -> RuleChain {
        unimplemented!("rules work")
    }

    /// True when the chain has no interceptor (every request runs the path without rules).
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }
}

/// The built-in interceptors of the file's rules, in file order.
pub fn compile(specs: &[RuleSpec]) -> Vec<Arc<dyn Interceptor>> {
    unimplemented!("rules work")
}

impl RulePlan {
    /// The plan of a request on route `route` (its name, None for a route without one): None
    /// when no interceptor applies to it (the path without rules).
    pub fn for_request(
        chain: &RuleChain,
        head: &RequestHead,
        route: Option<&str>,
    ) -> Option<Box<RulePlan>> {
        unimplemented!("rules work")
    }

    /// An interceptor of the request stage needs the request body.
    pub fn needs_request_body(&self) -> bool {
        unimplemented!("rules work")
    }

    /// Runs the request stage. `body`: as read (`NotRead` when `needs_request_body` was false).
    /// Remembers the request's JSON-RPC ids and methods for `mcp-result-of`.
    pub fn run_request(&mut self, head: &RequestHead, body: BodyInspection<'_>) -> RequestOutcome {
        unimplemented!("rules work")
    }

    /// An interceptor of the response stage needs this response's body (only JSON bodies are
    /// read: `application/json` or `+json`).
    pub fn needs_response_body(&self, head: &ResponseHead) -> bool {
        unimplemented!("rules work")
    }

    /// Runs the response stage. `body`: the JSON body when `needs_response_body` said so and it
    /// fitted in `max-inspect-bytes`.
    pub fn run_response(
        &self,
        request: &RequestHead,
        head: &ResponseHead,
        body: Option<&[u8]>,
    ) -> ResponseOutcome {
        unimplemented!("rules work")
    }

    /// The request has interceptors at the event stage.
    pub fn has_event_rules(&self) -> bool {
        !self.event.is_empty()
    }

    /// Runs the event stage on one complete block.
    pub fn run_event(&self, raw: &Bytes) -> EventOutcome {
        unimplemented!("rules work")
    }
}

/// The per-rule counters for /metrics: `tether_rule_matches_total{rule="..."}` and
/// `tether_rule_actions_total{rule="...",action="..."}`.
pub fn render_metrics(out: &mut String) {
    unimplemented!("rules work")
}
