//! A rule as the configuration file states it (`[[rule]]` tables, read by
//! `crate::config_file`), checked but not yet compiled: compiling (`super::compile`) turns each
//! into an [`super::Interceptor`] with its prefilters built.

use std::fmt;

/// When a rule looks at a request's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The request head (and its body when the rule needs it: MCP keys), before anything goes
    /// upstream.
    Request,
    /// The response head (and a JSON body when the rule needs it), before anything reaches the
    /// client.
    Response,
    /// Each complete SSE event of a `text/event-stream` response, before it is recorded in the
    /// replay ring and sent.
    Event,
}

impl Stage {
    /// The value of `on = "..."`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Request => "request",
            Stage::Response => "response",
            Stage::Event => "event",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `header = { name = "...", value = "..." }` or `header = { name = "...", present = true }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatch {
    /// Compared without regard to ASCII case.
    pub name: String,
    /// None: the header must be present (any value). Some: its value must equal this exactly.
    pub value: Option<String>,
}

/// `match = { ... }`: every key given must hold; an empty match holds for every message of the
/// rule's stage (and route).
#[derive(Debug, Clone, Default)]
pub struct MatchSpec {
    /// `method = "POST"`: the request's method, exactly (HTTP methods are case-sensitive).
    pub method: Option<String>,
    /// `path-prefix = "/mcp"`: the request target's path starts with it.
    pub path_prefix: Option<String>,
    /// `header = {...}`: a request header (request and event rules) or a response header
    /// (response rules).
    pub header: Option<HeaderMatch>,
    /// `mcp-method = "tools/call"` or a list: a JSON-RPC message of the request (request rules) or
    /// the message itself (event and response rules: a request or notification sent by the
    /// server) has one of these methods, exactly.
    pub mcp_method: Vec<String>,
    /// `mcp-tool = ["delete_*", "exec_sql"]`: a `tools/call` whose `params.name` matches one of
    /// these globs (`*` any run of characters, `?` one character).
    pub mcp_tool: Vec<String>,
    /// `event-type = "debug"`: the event's `event:` field (an event without one is "message").
    pub event_type: Option<String>,
    /// `data-contains = "..."`: the event's data (or a response's JSON body) contains these
    /// bytes.
    pub data_contains: Option<String>,
    /// `data-regex = '...'`: the event's data (or a response's JSON body) matches this regular
    /// expression (the `regex` crate's syntax, on bytes). Checked when the file is read.
    pub data_regex: Option<regex::bytes::Regex>,
    /// `mcp-result-of = "tools/list"`: a JSON-RPC response (in an event's data or a JSON
    /// response body) to a request of this method.
    pub mcp_result_of: Option<String>,
    /// `body-over-inspect-limit = true`: the request body is larger than `max-inspect-bytes`, so
    /// it was not inspected (a rule can refuse such bodies: `action = "deny"`).
    pub body_over_inspect_limit: bool,
}

/// `action = "..."` and the keys that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionSpec {
    /// `deny` (request rules): the request never reaches the upstream; the client gets `status`
    /// (default 403) with `message`, or, for an MCP request, a JSON-RPC error with the request's
    /// id carrying `message`. Ends the chain.
    Deny { status: u16, message: String },
    /// `drop` (event rules): the event is neither sent nor recorded. Ends the chain.
    Drop,
    /// `redact` (event and response rules): every match of the rule's `data-regex`, else every
    /// occurrence of its `data-contains`, in the data is replaced by `replace` (default
    /// `"[REDACTED]"`).
    Redact { replace: String },
    /// `set-header` (request and response rules): `header` set to `value`, replacing any.
    SetHeader { header: String, value: String },
    /// `remove-header` (request and response rules): every `header` removed.
    RemoveHeader { header: String },
    /// `filter-tools` (event and response rules): the tools whose names match one of `tools`
    /// (globs) are removed from a `tools/list` result.
    FilterTools { tools: Vec<String> },
    /// `log`: counted on /metrics, and a log line (at most one per second per rule).
    Log,
}

impl ActionSpec {
    /// The value of `action = "..."`.
    pub fn name(&self) -> &'static str {
        match self {
            ActionSpec::Deny { .. } => "deny",
            ActionSpec::Drop => "drop",
            ActionSpec::Redact { .. } => "redact",
            ActionSpec::SetHeader { .. } => "set-header",
            ActionSpec::RemoveHeader { .. } => "remove-header",
            ActionSpec::FilterTools { .. } => "filter-tools",
            ActionSpec::Log => "log",
        }
    }

    /// The stages this action can act at (a rule with another `on` is refused when the file is
    /// read).
    pub fn stages(&self) -> &'static [Stage] {
        match self {
            ActionSpec::Deny { .. } => &[Stage::Request],
            ActionSpec::Drop => &[Stage::Event],
            ActionSpec::Redact { .. } => &[Stage::Event, Stage::Response],
            ActionSpec::SetHeader { .. } | ActionSpec::RemoveHeader { .. } => {
                &[Stage::Request, Stage::Response]
            }
            ActionSpec::FilterTools { .. } => &[Stage::Event, Stage::Response],
            ActionSpec::Log => &[Stage::Request, Stage::Response, Stage::Event],
        }
    }
}

/// One `[[rule]]` table, checked: its action fits its stage, its match keys fit its stage, its
/// route exists, its regex compiles.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    /// `name`, else `rule-N` (N counted from 1 in file order): the label on /metrics.
    pub name: String,
    /// `route = "mcp"`: only requests of the route of that name. None: every route.
    pub route: Option<String>,
    pub on: Stage,
    pub matches: MatchSpec,
    pub action: ActionSpec,
}

/// The default of `max-inspect-bytes`: the largest request body (or JSON response body) read
/// whole so that rules can look into it; larger ones pass uninspected.
pub const DEFAULT_MAX_INSPECT_BYTES: usize = 1024 * 1024;
