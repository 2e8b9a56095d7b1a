//! The interceptor of a `[[rule]]` table: its match keys and action compiled once (globs,
//! prefilter, needle finder), then run per request, response or event.
//!
//! Every key given must hold. The head keys (route, method, path prefix, request header) are
//! decided in `applies_to`, once per request; a response rule's `header` is the response's and
//! is decided in `on_response`. The MCP keys must all hold on one and the same JSON-RPC
//! message of the body or event data.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use memchr::memmem::Finder;
use regex::bytes::{NoExpand, Regex};

use super::glob::Glob;
use super::mcp::{self, JsonRpcMessage, Messages, RequestMethods};
use super::prefilter::Prefilter;
use super::spec::{ActionSpec, HeaderMatch, RuleSpec, Stage};
use super::{
    BodyInspection, Denial, EventMessage, Interceptor, RequestMessage, RequestView,
    ResponseMessage, Verdict,
};

/// The MCP revision whose requests name their method and tool in headers (`Mcp-Method`,
/// `Mcp-Name`), and whose servers must refuse a request whose headers and body disagree: for
/// it, request rules decide from the headers without parsing the body.
const HEADER_REVISION: &[u8] = b"2026-07-28";

/// Longest path a log line shows, in bytes (the rest is cut: a log line is not a dump).
const LOGGED_PATH_BYTES: usize = 256;

/// An action with what it needs, compiled.
#[derive(Debug)]
enum Action {
    Deny(Denial),
    Drop,
    Redact { replace: String },
    SetHeader { name: String, value: String },
    RemoveHeader { name: String },
    FilterTools { globs: Vec<Glob> },
    Log,
}

/// A `[[rule]]` table, compiled.
#[derive(Debug)]
pub(crate) struct BuiltinRule {
    name: String,
    stage: Stage,
    /// `action = "..."`: the label on /metrics.
    action_name: &'static str,
    route: Option<String>,
    method: Option<String>,
    path_prefix: Option<String>,
    header: Option<HeaderMatch>,
    mcp_methods: Vec<String>,
    mcp_tools: Vec<Glob>,
    mcp_result_of: Option<String>,
    event_type: Option<String>,
    /// `data-contains`, the full check (on the data, not the raw block).
    data_contains: Option<Finder<'static>>,
    data_regex: Option<Regex>,
    body_over_limit: bool,
    action: Action,
    prefilter: Prefilter,
    /// The second (Unix time) of the last log line, for at most one line per second.
    last_logged: AtomicU64,
}

impl BuiltinRule {
    pub(crate) fn new(spec: &RuleSpec) -> BuiltinRule {
        let m = &spec.matches;
        let globs = |patterns: &[String]| patterns.iter().map(|p| Glob::new(p)).collect();
        let action = match &spec.action {
            ActionSpec::Deny { status, message } => Action::Deny(Denial {
                status: *status,
                message: message.clone(),
            }),
            ActionSpec::Drop => Action::Drop,
            ActionSpec::Redact { replace } => Action::Redact {
                replace: replace.clone(),
            },
            ActionSpec::SetHeader { header, value } => Action::SetHeader {
                name: header.clone(),
                value: value.clone(),
            },
            ActionSpec::RemoveHeader { header } => Action::RemoveHeader {
                name: header.clone(),
            },
            ActionSpec::FilterTools { tools } => Action::FilterTools {
                globs: globs(tools),
            },
            ActionSpec::Log => Action::Log,
        };
        BuiltinRule {
            name: spec.name.clone(),
            stage: spec.on,
            action_name: spec.action.name(),
            route: spec.route.clone(),
            method: m.method.clone(),
            path_prefix: m.path_prefix.clone(),
            header: m.header.clone(),
            mcp_methods: m.mcp_method.clone(),
            mcp_tools: globs(&m.mcp_tool),
            mcp_result_of: m.mcp_result_of.clone(),
            event_type: m.event_type.clone(),
            data_contains: m
                .data_contains
                .as_deref()
                .map(|n| Finder::new(n.as_bytes()).into_owned()),
            data_regex: m.data_regex.clone(),
            body_over_limit: m.body_over_inspect_limit,
            prefilter: Prefilter::new(m, &spec.action),
            action,
            last_logged: AtomicU64::new(0),
        }
    }

    /// The same rule with a prefilter that never rejects (the oracle of the equivalence test).
    #[cfg(test)]
    pub(crate) fn without_prefilter(mut self) -> BuiltinRule {
        self.prefilter = Prefilter::none();
        self
    }

    /// The rule has keys on JSON-RPC messages (filter-tools implies one: a tools/list result).
    fn has_message_keys(&self) -> bool {
        !self.mcp_methods.is_empty()
            || !self.mcp_tools.is_empty()
            || self.mcp_result_of.is_some()
            || matches!(self.action, Action::FilterTools { .. })
    }

    /// Every MCP key holds on this one message.
    fn message_holds(&self, msg: &JsonRpcMessage, methods: &RequestMethods) -> bool {
        if !self.mcp_methods.is_empty()
            && !msg
                .method()
                .is_some_and(|m| self.mcp_methods.iter().any(|w| w == m))
        {
            return false;
        }
        if !self.mcp_tools.is_empty() && !self.tool_call_matches(msg.method(), msg.tool()) {
            return false;
        }
        if let Some(of) = &self.mcp_result_of {
            if !msg.is_result_of(of, methods) {
                return false;
            }
        }
        if matches!(self.action, Action::FilterTools { .. }) && !msg.is_tools_list_result(methods) {
            return false;
        }
        true
    }

    fn tool_call_matches(&self, method: Option<&str>, tool: Option<&str>) -> bool {
        method == Some("tools/call")
            && tool.is_some_and(|t| self.mcp_tools.iter().any(|g| g.matches(t)))
    }

    /// Every MCP key holds on at least one of `messages`.
    fn any_message_holds(&self, messages: &Messages, methods: &RequestMethods) -> bool {
        self.matching_messages(messages, methods).next().is_some()
    }

    /// The indices of the messages every MCP key holds on.
    fn matching_messages<'m>(
        &'m self,
        messages: &'m Messages,
        methods: &'m RequestMethods,
    ) -> impl Iterator<Item = usize> + 'm {
        messages
            .list()
            .iter()
            .enumerate()
            .filter(move |(_, m)| self.message_holds(m, methods))
            .map(|(i, _)| i)
    }

    /// The 2026-07-28 headers' answer to the request MCP keys: Some(holds) when the request
    /// carries them, None when the body must be read.
    fn decide_from_headers(&self, view: &RequestView<'_>) -> Option<bool> {
        if view.header("mcp-protocol-version") != Some(HEADER_REVISION) {
            return None;
        }
        let method = std::str::from_utf8(view.header("mcp-method")?).ok()?;
        let name = view
            .header("mcp-name")
            .and_then(|n| std::str::from_utf8(n).ok());
        let method_holds =
            self.mcp_methods.is_empty() || self.mcp_methods.iter().any(|m| m == method);
        let tool_holds = self.mcp_tools.is_empty() || self.tool_call_matches(Some(method), name);
        Some(method_holds && tool_holds)
    }

    /// The data keys (`data-contains`, `data-regex`) hold on `data`.
    fn data_holds(&self, data: &[u8]) -> bool {
        self.data_contains
            .as_ref()
            .is_none_or(|f| f.find(data).is_some())
            && self.data_regex.as_ref().is_none_or(|re| re.is_match(data))
    }

    fn has_data_keys(&self) -> bool {
        self.data_contains.is_some() || self.data_regex.is_some()
    }

    /// `redact` on `data`: None when nothing changed.
    fn redacted(&self, data: &[u8], replace: &str) -> Option<Vec<u8>> {
        let out = if let Some(re) = &self.data_regex {
            re.replace_all(data, NoExpand(replace.as_bytes()))
                .into_owned()
        } else {
            let finder = self.data_contains.as_ref()?;
            if finder.needle().is_empty() {
                return None;
            }
            let mut out = Vec::with_capacity(data.len());
            let mut last = 0;
            for at in finder.find_iter(data) {
                out.extend_from_slice(&data[last..at]);
                out.extend_from_slice(replace.as_bytes());
                last = at + finder.needle().len();
            }
            out.extend_from_slice(&data[last..]);
            out
        };
        (out != data).then_some(out)
    }

    /// Claims this second's log line: true for the first caller in a second (any worker),
    /// false for the rest until the clock moves on.
    fn claim_log_second(&self, now: u64) -> bool {
        let last = self.last_logged.load(Ordering::Relaxed);
        now > last
            && self
                .last_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// A log line naming the rule, stage, method and path (never the query, a header value or
    /// a body: they may hold secrets), at most once per second per rule.
    fn log(&self, view: &RequestView<'_>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if !self.claim_log_second(now) {
            return;
        }
        let path = view.path();
        let path = &path[..path.len().min(LOGGED_PATH_BYTES)];
        crate::log_info!(
            "rule {:?} matched ({}): {} {}",
            self.name,
            self.stage,
            view.method().escape_ascii(),
            path.escape_ascii()
        );
    }
}

impl Interceptor for BuiltinRule {
    fn name(&self) -> &str {
        &self.name
    }

    fn stage(&self) -> Stage {
        self.stage
    }

    fn action(&self) -> &str {
        self.action_name
    }

    fn applies_to(&self, request: &RequestView<'_>) -> bool {
        if let Some(route) = &self.route {
            if request.route() != Some(route.as_str()) {
                return false;
            }
        }
        if let Some(method) = &self.method {
            if request.method() != method.as_bytes() {
                return false;
            }
        }
        if let Some(prefix) = &self.path_prefix {
            if !request.path().starts_with(prefix.as_bytes()) {
                return false;
            }
        }
        if self.stage != Stage::Response {
            if let Some(header) = &self.header {
                if !header_holds(header, request.header(&header.name)) {
                    return false;
                }
            }
        }
        true
    }

    fn needs_body(&self) -> bool {
        match self.stage {
            Stage::Request => self.has_message_keys() || self.body_over_limit,
            Stage::Response => {
                self.has_message_keys()
                    || self.has_data_keys()
                    || matches!(self.action, Action::Redact { .. })
            }
            Stage::Event => false,
        }
    }

    fn needs_request_ids(&self) -> bool {
        // A result is matched by the id of the request it answers whenever the request body
        // can tell (a POST: its body is read whole, within max-inspect-bytes); the shape of a
        // tools/list result is only the fallback for streams whose request is not known (a GET
        // resuming a POST-born stream), so another method's result that happens to carry a
        // `tools` array is never filtered.
        self.stage != Stage::Request
            && (self.mcp_result_of.is_some() || matches!(self.action, Action::FilterTools { .. }))
    }

    fn on_request(&self, msg: &mut RequestMessage<'_>) -> Verdict {
        if self.body_over_limit && !matches!(msg.body, BodyInspection::OverLimit) {
            return Verdict::NoMatch;
        }
        if !self.mcp_methods.is_empty() || !self.mcp_tools.is_empty() {
            match self.decide_from_headers(&msg.view) {
                Some(true) => {}
                Some(false) => return Verdict::NoMatch,
                None => {
                    let BodyInspection::Read(body) = msg.body else {
                        return Verdict::NoMatch;
                    };
                    if !self.prefilter.may_match_json(body) {
                        return Verdict::NoMatch;
                    }
                    let messages = msg.mcp.get(body);
                    let none = RequestMethods::default();
                    let before = msg.blamed.len();
                    msg.blamed.extend(self.matching_messages(messages, &none));
                    if msg.blamed.len() == before {
                        return Verdict::NoMatch;
                    }
                }
            }
        }
        match &self.action {
            Action::Deny(denial) => Verdict::Deny(denial.clone()),
            Action::SetHeader { name, value } => {
                msg.set_header(name, value);
                Verdict::Matched { acted: true }
            }
            Action::RemoveHeader { name } => {
                msg.remove_header(name);
                Verdict::Matched { acted: true }
            }
            Action::Log => {
                self.log(&msg.view);
                Verdict::Matched { acted: true }
            }
            Action::Drop | Action::Redact { .. } | Action::FilterTools { .. } => {
                Verdict::Matched { acted: false }
            }
        }
    }

    fn on_response(&self, msg: &mut ResponseMessage<'_>) -> Verdict {
        if let Some(header) = &self.header {
            if !header_holds(header, msg.head.header(&header.name)) {
                return Verdict::NoMatch;
            }
        }
        if self.has_data_keys() || self.has_message_keys() {
            let Some(body) = msg.body() else {
                return Verdict::NoMatch;
            };
            if !self.data_holds(body) {
                return Verdict::NoMatch;
            }
            // JSON is parsed only when the prefilter lets the bytes through.
            if self.has_message_keys()
                && !(self.prefilter.may_match_json(body)
                    && self.any_message_holds(msg.mcp_messages(), msg.methods))
            {
                return Verdict::NoMatch;
            }
        }
        let acted = match &self.action {
            Action::SetHeader { name, value } => {
                msg.set_header(name, value);
                true
            }
            Action::RemoveHeader { name } => {
                msg.remove_header(name);
                true
            }
            Action::Log => {
                self.log(&msg.request);
                true
            }
            Action::Redact { replace } => {
                match msg.body().and_then(|b| self.redacted(b, replace)) {
                    Some(new) => {
                        msg.replace_body(new);
                        true
                    }
                    None => false,
                }
            }
            Action::FilterTools { globs } => {
                match msg
                    .body()
                    .and_then(|b| mcp::filter_tools(b, globs, msg.methods))
                {
                    Some(new) => {
                        msg.replace_body(new.into_bytes());
                        true
                    }
                    None => false,
                }
            }
            Action::Deny(_) | Action::Drop => false,
        };
        Verdict::Matched { acted }
    }

    fn on_event(&self, msg: &mut EventMessage<'_>) -> Verdict {
        // The raw block is what the prefilter knows; once an earlier rule rewrote the data, the
        // data is what counts (the event type is never rewritten).
        let prefilter_hit = if msg.new_data.is_none() {
            self.prefilter.may_match_event(msg.raw)
        } else {
            self.event_type
                .as_deref()
                .is_none_or(|t| msg.event_type() == t)
        };
        if !prefilter_hit {
            return Verdict::NoMatch;
        }
        if let Some(want) = &self.event_type {
            if msg.event_type() != want {
                return Verdict::NoMatch;
            }
        }
        // Without data keys the data is not parsed for them (a keyless drop or log rule costs
        // no parse per event).
        if self.has_data_keys() && !self.data_holds(msg.data().as_bytes()) {
            return Verdict::NoMatch;
        }
        if self.has_message_keys()
            && !(self.prefilter.may_match_json(msg.data().as_bytes())
                && self.any_message_holds(msg.mcp_messages(), msg.methods))
        {
            return Verdict::NoMatch;
        }
        let new_data = match &self.action {
            Action::Drop => return Verdict::Drop,
            Action::Log => {
                self.log(&msg.request);
                return Verdict::Matched { acted: true };
            }
            Action::Redact { replace } => self
                .redacted(msg.data().as_bytes(), replace)
                .map(|d| String::from_utf8_lossy(&d).into_owned()),
            Action::FilterTools { globs } => {
                mcp::filter_tools(msg.data().as_bytes(), globs, msg.methods)
            }
            Action::Deny(_) | Action::SetHeader { .. } | Action::RemoveHeader { .. } => None,
        };
        match new_data {
            Some(data) => {
                msg.set_data(data);
                Verdict::Matched { acted: true }
            }
            None => Verdict::Matched { acted: false },
        }
    }
}

/// `header = {...}` against the first field of that name.
fn header_holds(want: &HeaderMatch, value: Option<&[u8]>) -> bool {
    match (&want.value, value) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(want), Some(got)) => want.as_bytes() == got,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::spec::MatchSpec;

    fn log_rule() -> BuiltinRule {
        BuiltinRule::new(&RuleSpec {
            name: "builtin-log".into(),
            route: None,
            on: Stage::Event,
            matches: MatchSpec::default(),
            action: ActionSpec::Log,
        })
    }

    #[test]
    fn one_log_line_per_second() {
        let rule = log_rule();
        assert!(rule.claim_log_second(100));
        assert!(!rule.claim_log_second(100));
        assert!(!rule.claim_log_second(99));
        assert!(rule.claim_log_second(101));
    }

    #[test]
    fn a_keyless_event_rule_does_not_parse_the_event() {
        let rule = log_rule();
        let raw = bytes::Bytes::from_static(b"data: x\n\n");
        let head = crate::http::RequestHead::parse(
            bytes::Bytes::from_static(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            &crate::http::HeadLimits::default(),
        )
        .unwrap();
        let methods = RequestMethods::default();
        let mut msg = EventMessage {
            request: RequestView::new(&head, None),
            raw: &raw,
            parsed: Default::default(),
            new_data: None,
            methods: &methods,
            mcp: Default::default(),
        };
        assert_eq!(rule.on_event(&mut msg), Verdict::Matched { acted: true });
        assert!(msg.parsed.get().is_none());
    }
}
