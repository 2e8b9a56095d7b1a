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
//! - [`mcp`]: JSON-RPC messages read from bodies and event data (parsed only when a rule's
//!   prefilter hits), and `filter-tools` on `tools/list` results.
//! - `deny_answer`: what a denied request gets (a JSON-RPC error for an MCP request).
//! - `builtin`: the interceptor of a `[[rule]]` table; `glob` (tool names), `prefilter` (the
//!   cheap rejection before any parsing), `event_rewrite` (an event written again with new
//!   data).
//! - `plan`: running a request's stages; `stats`: the counters by rule name, for /metrics.

mod builtin;
mod deny_answer;
mod event_rewrite;
pub(crate) mod glob;
pub mod mcp;
mod plan;
mod prefilter;
mod request;
pub mod spec;
mod stats;
#[cfg(test)]
mod tests;

use std::cell::OnceCell;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::http::{RequestHead, ResponseHead};
use crate::sse::framer::ParsedEvent;
pub use deny_answer::{BATCH_REFUSED_MESSAGE, DENIED_BY_POLICY};
pub use mcp::{JsonRpcMessage, MessageKind, Messages, RequestMethods};
pub(crate) use request::RequestRules;
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
    /// The `action` label of its counters on /metrics.
    fn action(&self) -> &str {
        "custom"
    }
    /// (request and response stages) It needs the body: the request body (MCP keys, a refusal
    /// of bodies past the inspection limit), or a JSON response body.
    fn needs_body(&self) -> bool {
        false
    }
    /// (response and event stages) It needs the ids and methods of the request's JSON-RPC
    /// requests ([`RequestMethods`]), so the request body must be read even when no request
    /// rule needs it. Without them only `tools/list` results are recognised (by shape).
    fn needs_request_ids(&self) -> bool {
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

impl<'a> RequestView<'a> {
    pub fn new(head: &'a RequestHead, route: Option<&'a str>) -> RequestView<'a> {
        RequestView { head, route }
    }

    pub fn head(&self) -> &'a RequestHead {
        self.head
    }

    /// The name of the request's route (None for a route without one).
    pub fn route(&self) -> Option<&'a str> {
        self.route
    }

    /// The method as sent.
    pub fn method(&self) -> &'a [u8] {
        self.head.method_str()
    }

    /// The target's path as routes see it: no query or fragment, no scheme and authority of an
    /// absolute-form target, "/" when empty. Dot segments are not resolved: a route table with
    /// path prefixes refuses paths that have them (see `crate::route`); a rule's `path-prefix`
    /// on a table without one compares the path as sent.
    pub fn path(&self) -> &'a [u8] {
        let target = self.head.target();
        let path = match target.first() {
            Some(b'/') | Some(b'*') | None => target,
            _ => match crate::http::split_absolute_form(target) {
                Some((_, rest)) => rest,
                None => target,
            },
        };
        let end = memchr::memchr2(b'?', b'#', path).unwrap_or(path.len());
        match &path[..end] {
            b"" => b"/",
            path => path,
        }
    }

    /// The first request header of this name (ASCII case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.head.header(name)
    }
}

/// A request at the request stage: its head, its body when read for inspection, and the header
/// changes asked for so far.
pub struct RequestMessage<'a> {
    pub(crate) view: RequestView<'a>,
    pub(crate) body: BodyInspection<'a>,
    pub(crate) edits: &'a mut Vec<HeaderEdit>,
    /// The body's JSON-RPC messages, parsed once for every interceptor.
    pub(crate) mcp: &'a mcp::LazyMessages,
    /// The messages (indices into the body's messages) the current interceptor matched: a
    /// denial of a batch names them (see `deny_answer`). Cleared before each interceptor.
    pub(crate) blamed: Vec<usize>,
}

impl<'a> RequestMessage<'a> {
    pub fn request(&self) -> &RequestView<'a> {
        &self.view
    }

    pub fn body(&self) -> BodyInspection<'a> {
        self.body
    }

    /// The body's JSON-RPC messages (none unless the body was read and is JSON-RPC).
    pub fn mcp_messages(&self) -> &Messages {
        match self.body {
            BodyInspection::Read(body) => self.mcp.get(body),
            _ => self.mcp.get(b""),
        }
    }

    /// Names the message (an index into `mcp_messages().list()`) a `Deny` verdict is about: in
    /// a batch it gets the rule's message and the other requests a "batch refused" one.
    /// Unnamed, every request of the batch gets the rule's message.
    pub fn blame(&mut self, index: usize) {
        self.blamed.push(index);
    }

    pub fn set_header(&mut self, name: &str, value: &str) {
        self.edits.push(HeaderEdit::Set {
            name: name.to_owned(),
            value: value.to_owned(),
        });
    }

    pub fn remove_header(&mut self, name: &str) {
        self.edits.push(HeaderEdit::Remove {
            name: name.to_owned(),
        });
    }
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
    /// The current body's JSON-RPC messages, parsed on first use (anew after a rewrite).
    pub(crate) mcp: mcp::LazyMessages,
}

impl<'a> ResponseMessage<'a> {
    pub fn request(&self) -> &RequestView<'a> {
        &self.request
    }

    pub fn head(&self) -> &'a ResponseHead {
        self.head
    }

    /// The body as it stands (rewritten by an earlier interceptor, or as it came); None when
    /// it was not read.
    pub fn body(&self) -> Option<&[u8]> {
        self.new_body.as_deref().or(self.body)
    }

    /// The client gets `body` instead (later interceptors see it).
    pub fn replace_body(&mut self, body: Vec<u8>) {
        self.new_body = Some(body);
        self.mcp = mcp::LazyMessages::default();
    }

    /// The body's JSON-RPC messages (none when it was not read or is not JSON-RPC).
    pub fn mcp_messages(&self) -> &Messages {
        self.mcp.get(self.body().unwrap_or(b""))
    }

    /// The request's JSON-RPC requests by id.
    pub fn request_methods(&self) -> &'a RequestMethods {
        self.methods
    }

    pub fn set_header(&mut self, name: &str, value: &str) {
        self.edits.push(HeaderEdit::Set {
            name: name.to_owned(),
            value: value.to_owned(),
        });
    }

    pub fn remove_header(&mut self, name: &str) {
        self.edits.push(HeaderEdit::Remove {
            name: name.to_owned(),
        });
    }
}

/// One complete SSE event at the event stage.
pub struct EventMessage<'a> {
    /// The request the stream answers.
    pub(crate) request: RequestView<'a>,
    /// The block as it came (through its blank line).
    pub(crate) raw: &'a Bytes,
    /// Its fields, parsed on first use.
    pub(crate) parsed: OnceCell<ParsedEvent>,
    /// Data an interceptor rewrote (then the event is written again with it).
    pub(crate) new_data: Option<String>,
    pub(crate) methods: &'a mcp::RequestMethods,
    /// The current data's JSON-RPC messages, parsed on first use (anew after a rewrite).
    pub(crate) mcp: mcp::LazyMessages,
}

impl<'a> EventMessage<'a> {
    pub fn request(&self) -> &RequestView<'a> {
        &self.request
    }

    /// The block as it came, through its blank line.
    pub fn raw(&self) -> &'a Bytes {
        self.raw
    }

    /// Its fields as a browser would dispatch them (parsed on first use).
    pub fn parsed(&self) -> &ParsedEvent {
        self.parsed
            .get_or_init(|| crate::sse::framer::parse_block(self.raw))
    }

    /// Its `event` field; "message" when it has none.
    pub fn event_type(&self) -> &str {
        match self.parsed().event_type.as_str() {
            "" => "message",
            t => t,
        }
    }

    /// Its data as it stands (rewritten by an earlier interceptor, or as it came).
    pub fn data(&self) -> &str {
        match &self.new_data {
            Some(data) => data,
            None => &self.parsed().data,
        }
    }

    /// The event is sent with `data` instead (its other lines kept); later interceptors see it.
    pub fn set_data(&mut self, data: String) {
        self.new_data = Some(data);
        self.mcp = mcp::LazyMessages::default();
    }

    /// The data's JSON-RPC messages (none when it is not JSON-RPC).
    pub fn mcp_messages(&self) -> &Messages {
        self.mcp.get(self.data().as_bytes())
    }

    /// The request's JSON-RPC requests by id.
    pub fn request_methods(&self) -> &'a RequestMethods {
        self.methods
    }
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
    /// The request's route name, for the views of later stages.
    route: Option<String>,
    /// The request's head, kept for the event stage (whose calls carry only the event) when the
    /// plan has event interceptors.
    head: Option<RequestHead>,
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
        let links: Vec<Link> = interceptors
            .into_iter()
            .map(|interceptor| Link {
                stats: stats::stats_for(interceptor.name(), interceptor.action()),
                interceptor,
            })
            .collect();
        RuleChain {
            links: links.into(),
        }
    }

    /// True when the chain has no interceptor (every request runs the path without rules).
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// Each interceptor's name and counters, in chain order.
    pub fn stats(&self) -> impl Iterator<Item = (&str, &Arc<RuleStats>)> {
        self.links
            .iter()
            .map(|link| (link.interceptor.name(), &link.stats))
    }
}

/// The built-in interceptors of the file's rules, in file order.
pub fn compile(specs: &[RuleSpec]) -> Vec<Arc<dyn Interceptor>> {
    specs
        .iter()
        .map(|spec| Arc::new(builtin::BuiltinRule::new(spec)) as Arc<dyn Interceptor>)
        .collect()
}

/// The per-rule counters for /metrics: `tether_rule_matches_total{rule="..."}` and
/// `tether_rule_actions_total{rule="...",action="..."}`.
pub fn render_metrics(out: &mut String) {
    stats::render(out)
}
