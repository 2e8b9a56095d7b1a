//! What a denied request gets back: a JSON-RPC error for an MCP request (so that the client's
//! SDK reports it as a failed call, not as a broken transport), a plain answer for anything
//! else.
//!
//! ```text
//! the request carries no JSON-RPC request (plain HTTP, notifications only, body not read)
//!     -> the rule's status, text/plain, the rule's message
//! Accept absent, or allowing application/json  -> 200 application/json
//! else Accept allowing text/event-stream        -> 200 text/event-stream, one `message` event
//! else (the client accepts neither)             -> 200 application/json all the same
//! body:  one request   -> {"jsonrpc":"2.0","id":ID,"error":{"code":-32003,"message":MSG}}
//!        a batch       -> an array, one such error per request element, in order
//! ```
//!
//! A batch with a denied call is refused whole: nothing of it goes upstream, because a
//! proxy that forwarded the rest would have to merge the upstream's answers with its own,
//! and a client must anyway be ready for every call of a batch to fail. The denied
//! requests' errors carry the rule's message, the others [`BATCH_REFUSED_MESSAGE`];
//! notifications get no entry (JSON-RPC never answers them).

use bytes::Bytes;
use serde_json::{json, Value};

use super::mcp::{MessageKind, Messages};
use super::{Denial, DenyAnswer};
use crate::http::RequestHead;

/// The JSON-RPC error code of a request refused by a rule. JSON-RPC 2.0 leaves -32000..-32099
/// to implementations; of those, the MCP TypeScript SDK gives -32000 (connection closed) and
/// -32001 (request timeout) meanings of its own and the MCP specification uses -32002
/// (resource not found), so a policy refusal takes the first code nobody reads otherwise.
pub const DENIED_BY_POLICY: i64 = -32003;

/// The error message of the other requests of a refused batch.
pub const BATCH_REFUSED_MESSAGE: &str = "batch refused: another request in it was denied by policy";

/// `Content-Type` of each answer form.
const JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream";
const PLAIN: &str = "text/plain; charset=utf-8";

/// The answer to `head` (with its body's `messages`, None when the body was not read) denied
/// by `denial`. `blamed`: the indices (into `messages.list`) of the requests the rule matched;
/// empty when the rule did not say (a program's own interceptor, a decision from headers):
/// then every request of the body gets the rule's message.
pub(crate) fn deny_answer(
    head: &RequestHead,
    messages: Option<&Messages>,
    denial: &Denial,
    blamed: &[usize],
) -> DenyAnswer {
    let requests: Vec<(usize, &Value)> = messages
        .map(|m| {
            m.list
                .iter()
                .enumerate()
                .filter(|(_, msg)| msg.kind() == MessageKind::Request)
                .map(|(i, msg)| (i, msg.id().unwrap_or(&Value::Null)))
                .collect()
        })
        .unwrap_or_default();
    let Some(&(_, first_id)) = requests.first() else {
        return DenyAnswer {
            status: denial.status,
            content_type: PLAIN,
            body: Bytes::from(denial.message.clone()),
        };
    };
    let error = |id: &Value, message: &str| json!({"jsonrpc": "2.0", "id": id, "error": {"code": DENIED_BY_POLICY, "message": message}});
    let value = if messages.is_some_and(|m| m.batch) {
        Value::Array(
            requests
                .iter()
                .map(|&(i, id)| {
                    let denied = blamed.is_empty() || blamed.contains(&i);
                    let message = if denied {
                        denial.message.as_str()
                    } else {
                        BATCH_REFUSED_MESSAGE
                    };
                    error(id, message)
                })
                .collect(),
        )
    } else {
        error(first_id, &denial.message)
    };
    // Serialising a Value built here cannot fail; "null" keeps this free of panics anyway.
    let json = serde_json::to_string(&value).unwrap_or_else(|_| "null".into());
    let accept = accepted(head);
    if accept.json || !accept.event_stream {
        DenyAnswer {
            status: 200,
            content_type: JSON,
            body: Bytes::from(json),
        }
    } else {
        // serde_json escapes every line break inside strings, so the JSON is one data line.
        DenyAnswer {
            status: 200,
            content_type: EVENT_STREAM,
            body: Bytes::from(format!("event: message\ndata: {json}\n\n")),
        }
    }
}

/// Which answer forms the request's `Accept` allows.
#[derive(Debug, PartialEq, Eq)]
struct Accepted {
    json: bool,
    event_stream: bool,
}

/// RFC 9110 12.5.1: no Accept means anything; a media range with `q=0` is "not acceptable";
/// wildcards count (`*/*`, `application/*`, `text/*`). Every Accept field line is read.
fn accepted(head: &RequestHead) -> Accepted {
    let mut any_field = false;
    let mut out = Accepted {
        json: false,
        event_stream: false,
    };
    for value in head.headers_named("accept") {
        any_field = true;
        for range in value.split(|&b| b == b',') {
            let mut parts = range.split(|&b| b == b';');
            let media = parts.next().unwrap_or(b"").trim_ascii();
            let refused = parts.any(|p| {
                let p = p.trim_ascii();
                let Some(q) = p.strip_prefix(b"q=").or_else(|| p.strip_prefix(b"Q=")) else {
                    return false;
                };
                q.iter().all(|&b| b == b'0' || b == b'.')
            });
            if refused {
                continue;
            }
            let is = |want: &[u8]| media.eq_ignore_ascii_case(want);
            out.json |= is(b"application/json") || is(b"application/*") || is(b"*/*");
            out.event_stream |= is(b"text/event-stream") || is(b"text/*") || is(b"*/*");
        }
    }
    if !any_field {
        out.json = true;
        out.event_stream = true;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::HeadLimits;

    fn head(accept: Option<&str>) -> RequestHead {
        let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
        let raw = format!("POST /mcp HTTP/1.1\r\nHost: x\r\n{accept}\r\n");
        RequestHead::parse(Bytes::from(raw), &HeadLimits::default()).unwrap()
    }

    fn denial() -> Denial {
        Denial {
            status: 451,
            message: "no \"exec\" here".into(),
        }
    }

    #[test]
    fn accept_forms() {
        let a = |s: Option<&str>| accepted(&head(s));
        assert!(a(None).json);
        assert!(a(Some("application/json, text/event-stream")).json);
        assert_eq!(
            a(Some("text/event-stream")),
            Accepted {
                json: false,
                event_stream: true
            }
        );
        assert!(!a(Some("application/json;q=0, text/event-stream")).json);
        assert!(a(Some("*/*")).json);
        assert!(a(Some("Application/JSON; charset=utf-8")).json);
    }

    #[test]
    fn plain_when_no_request_in_the_body() {
        let notes = Messages::parse(br#"{"jsonrpc":"2.0","method":"notifications/x"}"#);
        for messages in [None, Some(&notes)] {
            let answer = deny_answer(&head(None), messages, &denial(), &[]);
            assert_eq!(answer.status, 451);
            assert_eq!(answer.content_type, PLAIN);
            assert_eq!(&answer.body[..], denial().message.as_bytes());
        }
    }

    #[test]
    fn single_request_json_and_event_stream() {
        let m = Messages::parse(br#"{"jsonrpc":"2.0","id":"a7","method":"tools/call"}"#);
        let json = deny_answer(&head(Some("application/json")), Some(&m), &denial(), &[0]);
        assert_eq!((json.status, json.content_type), (200, JSON));
        let v: Value = serde_json::from_slice(&json.body).unwrap();
        assert_eq!(
            v,
            json!({"jsonrpc":"2.0","id":"a7","error":{"code":-32003,"message":"no \"exec\" here"}})
        );
        let sse = deny_answer(&head(Some("text/event-stream")), Some(&m), &denial(), &[0]);
        assert_eq!((sse.status, sse.content_type), (200, EVENT_STREAM));
        let event = crate::sse::framer::parse_block(&sse.body);
        assert_eq!(event.event_type, "message");
        assert_eq!(serde_json::from_str::<Value>(&event.data).unwrap(), v);
        assert!(sse.body.ends_with(b"\n\n"));
    }

    #[test]
    fn batch_refused_whole_one_error_per_request() {
        let m = Messages::parse(
            br#"[{"id":1,"method":"tools/list"},{"method":"notifications/x"},
                 {"id":2,"method":"tools/call","params":{"name":"exec"}},{"id":3,"method":"ping"}]"#,
        );
        let answer = deny_answer(&head(None), Some(&m), &denial(), &[2]);
        let v: Value = serde_json::from_slice(&answer.body).unwrap();
        let items = v.as_array().unwrap();
        assert_eq!(items.len(), 3);
        let ids: Vec<&Value> = items.iter().map(|e| &e["id"]).collect();
        assert_eq!(ids, [&json!(1), &json!(2), &json!(3)]);
        assert_eq!(items[0]["error"]["message"], BATCH_REFUSED_MESSAGE);
        assert_eq!(items[1]["error"]["message"], "no \"exec\" here");
        assert_eq!(items[2]["error"]["message"], BATCH_REFUSED_MESSAGE);
        assert_eq!(items[1]["error"]["code"], DENIED_BY_POLICY);
    }
}
