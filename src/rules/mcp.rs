//! JSON-RPC messages as MCP carries them: read from a request body, a JSON response body or one
//! SSE event's data, each parsed at most once (and only after a rule's prefilter hit), and shared
//! by every interceptor that looks.
//!
//! A body is one message or a batch (an array; MCP 2025-03-26 allows them, later revisions do
//! not, and a proxy must still read them since a server may accept them). What is not JSON, or
//! not shaped like JSON-RPC, is no message at all: a rule on MCP keys then simply does not match.
//!
//! Reading is lenient on purpose: `"jsonrpc": "2.0"` is not required and a request's id may be
//! any JSON value. A deny rule that matches a message the server would refuse anyway costs
//! nothing; one that misses a message the server would accept is a hole in the policy.

use std::cell::OnceCell;
use std::collections::HashMap;

use serde_json::Value;

use super::glob::Glob;

/// What a JSON-RPC message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// `method` and `id`: expects a response.
    Request,
    /// `method` without `id`.
    Notification,
    /// `result` or `error`, and `id`: answers a request.
    Response,
}

/// One JSON-RPC message, reduced to what rules look at.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonRpcMessage {
    kind: MessageKind,
    /// Requests and notifications.
    method: Option<String>,
    /// Requests and responses; a response's is `Value::Null` when it came as null.
    id: Option<Value>,
    /// A `tools/call`'s `params.name`.
    tool: Option<String>,
    /// A response whose `result.tools` is an array: the shape of a `tools/list` result, used
    /// when the request's ids are unknown (see [`RequestMethods`]).
    result_has_tools_array: bool,
}

impl JsonRpcMessage {
    /// The message one JSON value is, if it is one.
    pub(crate) fn from_value(value: &Value) -> Option<JsonRpcMessage> {
        let object = value.as_object()?;
        if let Some(method) = object.get("method") {
            let method = method.as_str()?.to_owned();
            let tool = (method == "tools/call")
                .then(|| {
                    object
                        .get("params")?
                        .get("name")?
                        .as_str()
                        .map(str::to_owned)
                })
                .flatten();
            let id = object.get("id").cloned();
            let kind = if id.is_some() {
                MessageKind::Request
            } else {
                MessageKind::Notification
            };
            return Some(JsonRpcMessage {
                kind,
                method: Some(method),
                id,
                tool,
                result_has_tools_array: false,
            });
        }
        let id = object.get("id")?.clone();
        let result = object.get("result");
        if result.is_none() && !object.contains_key("error") {
            return None;
        }
        let result_has_tools_array = result
            .and_then(|r| r.get("tools"))
            .is_some_and(Value::is_array);
        Some(JsonRpcMessage {
            kind: MessageKind::Response,
            method: None,
            id: Some(id),
            tool: None,
            result_has_tools_array,
        })
    }

    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// The method of a request or notification.
    pub fn method(&self) -> Option<&str> {
        self.method.as_deref()
    }

    /// The id of a request or response, as sent (a number or a string, for well-formed peers).
    pub fn id(&self) -> Option<&Value> {
        self.id.as_ref()
    }

    /// The tool a `tools/call` request names (`params.name`).
    pub fn tool(&self) -> Option<&str> {
        self.tool.as_deref()
    }

    /// This message is a response to a request of `method`: by the request's id when the
    /// request's ids are known; when they are not (`methods` empty: a stream resumed by a GET,
    /// or a request whose body no rule read), only `tools/list` can be recognised, by its
    /// result's shape (`result.tools` is an array). Other methods' results have no shape of
    /// their own, so without the ids they never match.
    pub fn is_result_of(&self, method: &str, methods: &RequestMethods) -> bool {
        if self.kind != MessageKind::Response {
            return false;
        }
        if methods.is_empty() {
            return method == "tools/list" && self.result_has_tools_array;
        }
        self.id
            .as_ref()
            .and_then(|id| methods.method_of(id))
            .is_some_and(|m| m == method)
    }

    /// A `tools/list` result with a `tools` array (what `filter-tools` works on).
    pub(crate) fn is_tools_list_result(&self, methods: &RequestMethods) -> bool {
        self.result_has_tools_array && self.is_result_of("tools/list", methods)
    }
}

/// The messages of one body or event data.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Messages {
    /// The body was a JSON array (a denial answers a batch with an array).
    pub(crate) batch: bool,
    /// In body order; elements that are not JSON-RPC messages are left out.
    pub(crate) list: Vec<JsonRpcMessage>,
}

impl Messages {
    /// Never fails: invalid JSON, or JSON that is no JSON-RPC, is no messages. serde_json
    /// refuses nesting deeper than 128 levels, so hostile input cannot exhaust the stack.
    pub(crate) fn parse(json: &[u8]) -> Messages {
        match serde_json::from_slice::<Value>(json) {
            Ok(Value::Array(items)) => Messages {
                batch: true,
                list: items
                    .iter()
                    .filter_map(JsonRpcMessage::from_value)
                    .collect(),
            },
            Ok(value) => Messages {
                batch: false,
                list: JsonRpcMessage::from_value(&value).into_iter().collect(),
            },
            Err(_) => Messages::default(),
        }
    }

    pub fn list(&self) -> &[JsonRpcMessage] {
        &self.list
    }

    pub fn is_batch(&self) -> bool {
        self.batch
    }
}

/// Messages parsed on first use (by whichever interceptor asks first), then shared.
#[derive(Debug, Default)]
pub struct LazyMessages {
    cell: OnceCell<Messages>,
}

impl LazyMessages {
    /// The messages of `json`, parsed the first time. The caller passes the same bytes every
    /// time (the request's body, or one event's current data: a rewrite makes a new cell).
    pub(crate) fn get(&self, json: &[u8]) -> &Messages {
        self.cell.get_or_init(|| Messages::parse(json))
    }
}

/// The methods of a request's JSON-RPC requests, by id: what tells that a JSON-RPC response in
/// the reply is the result of, say, `tools/list` (`mcp-result-of`). Ids compare as JSON values
/// (`1` and `"1"` differ), keyed by their JSON text.
#[derive(Debug, Default, Clone)]
pub struct RequestMethods {
    by_id: HashMap<String, String>,
}

impl RequestMethods {
    /// The requests among `messages` (notifications have no id to answer).
    pub(crate) fn from_messages(messages: &Messages) -> RequestMethods {
        let by_id = messages
            .list
            .iter()
            .filter(|m| m.kind == MessageKind::Request)
            .filter_map(|m| Some((id_key(m.id.as_ref()?)?, m.method.clone()?)))
            .collect();
        RequestMethods { by_id }
    }

    /// The method of the request with this id.
    pub fn method_of(&self, id: &Value) -> Option<&str> {
        self.by_id.get(&id_key(id)?).map(String::as_str)
    }

    /// No request id is known: the request had no JSON-RPC request in it, or its body was not
    /// read (a GET that resumes a stream, no rule needing it).
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// Only numbers and strings identify requests (JSON-RPC 2.0 section 4; MCP forbids null).
fn id_key(id: &Value) -> Option<String> {
    match id {
        Value::Number(_) | Value::String(_) => Some(id.to_string()),
        _ => None,
    }
}

/// `filter-tools`: `json` (a body or an event's data) with the tools whose names match one of
/// `globs` removed from every `tools/list` result in it. None when nothing was removed (also for
/// invalid JSON). The rest is written back as it was, fields in their order (serde_json's
/// `preserve_order`), but compact: the peer's whitespace is not kept, and numbers go through
/// serde_json's f64/i64/u64, which is exact for every number MCP sends.
pub(crate) fn filter_tools(
    json: &[u8],
    globs: &[Glob],
    methods: &RequestMethods,
) -> Option<String> {
    let mut value: Value = serde_json::from_slice(json).ok()?;
    let mut removed = 0;
    let mut filter_one = |message: &mut Value| {
        let is_tools_list =
            JsonRpcMessage::from_value(message).is_some_and(|m| m.is_tools_list_result(methods));
        if !is_tools_list {
            return;
        }
        if let Some(tools) = message
            .get_mut("result")
            .and_then(|r| r.get_mut("tools"))
            .and_then(Value::as_array_mut)
        {
            let before = tools.len();
            tools.retain(|tool| {
                let name = tool.get("name").and_then(Value::as_str);
                !name.is_some_and(|n| globs.iter().any(|g| g.matches(n)))
            });
            removed += before - tools.len();
        }
    };
    match &mut value {
        Value::Array(items) => items.iter_mut().for_each(&mut filter_one),
        message => filter_one(message),
    }
    if removed == 0 {
        return None;
    }
    serde_json::to_string(&value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kinds_methods_ids_and_tools() {
        let m = Messages::parse(
            br#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"exec"}},
                 {"jsonrpc":"2.0","method":"notifications/initialized"},
                 {"jsonrpc":"2.0","id":"a","result":{"tools":[]}},
                 {"jsonrpc":"2.0","id":2,"error":{"code":-1,"message":"x"}},
                 {"no":"rpc"}, 7]"#,
        );
        assert!(m.batch);
        let kinds: Vec<MessageKind> = m.list.iter().map(|m| m.kind).collect();
        assert_eq!(
            kinds,
            [
                MessageKind::Request,
                MessageKind::Notification,
                MessageKind::Response,
                MessageKind::Response
            ]
        );
        assert_eq!(m.list[0].method(), Some("tools/call"));
        assert_eq!(m.list[0].tool(), Some("exec"));
        assert_eq!(m.list[0].id(), Some(&json!(1)));
        assert_eq!(m.list[1].id(), None);
        assert!(m.list[2].result_has_tools_array);
        assert!(!m.list[3].result_has_tools_array);
    }

    #[test]
    fn invalid_json_and_non_rpc_are_no_messages() {
        for body in [
            &b""[..],
            b"{",
            b"null",
            b"[]",
            b"\"tools/call\"",
            b"{\"method\":5}",
            b"\xff",
        ] {
            assert!(Messages::parse(body).list.is_empty(), "{body:?}");
        }
        let deep = "[".repeat(100_000);
        assert!(Messages::parse(deep.as_bytes()).list.is_empty());
    }

    #[test]
    fn ids_compare_as_json_values() {
        let req = Messages::parse(
            br#"[{"id":1,"method":"tools/list"},{"id":"1","method":"prompts/list"}]"#,
        );
        let methods = RequestMethods::from_messages(&req);
        assert_eq!(methods.method_of(&json!(1)), Some("tools/list"));
        assert_eq!(methods.method_of(&json!("1")), Some("prompts/list"));
        assert_eq!(methods.method_of(&json!(2)), None);
        let answer = Messages::parse(br#"{"id":"1","result":{"tools":[]}}"#);
        assert!(!answer.list[0].is_result_of("tools/list", &methods));
        assert!(answer.list[0].is_result_of("prompts/list", &methods));
    }

    #[test]
    fn tools_list_falls_back_to_the_shape_only_without_ids() {
        let none = RequestMethods::default();
        let tools = Messages::parse(br#"{"id":9,"result":{"tools":[]}}"#);
        assert!(tools.list[0].is_result_of("tools/list", &none));
        assert!(!tools.list[0].is_result_of("prompts/list", &none));
        let known = RequestMethods::from_messages(&Messages::parse(
            br#"{"id":9,"method":"resources/list"}"#,
        ));
        assert!(!tools.list[0].is_result_of("tools/list", &known));
    }

    #[test]
    fn filter_tools_keeps_order_and_other_fields() {
        let globs = [Glob::new("delete_*"), Glob::new("exec")];
        let body = br#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"read","z":1,"a":2},{"name":"delete_all"},{"name":"exec"}],"nextCursor":"c"}}"#;
        let out = filter_tools(body, &globs, &RequestMethods::default()).unwrap();
        assert_eq!(
            out,
            r#"{"jsonrpc":"2.0","id":3,"result":{"tools":[{"name":"read","z":1,"a":2}],"nextCursor":"c"}}"#
        );
        let nothing = br#"{"id":3,"result":{"tools":[{"name":"read"}]}}"#;
        assert_eq!(
            filter_tools(nothing, &globs, &RequestMethods::default()),
            None
        );
        assert_eq!(
            filter_tools(b"not json", &globs, &RequestMethods::default()),
            None
        );
    }
}
