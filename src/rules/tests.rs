//! Tests of the rules through their public interface: `compile`, `RuleChain`, `RulePlan`, as
//! the proxy calls them.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::spec::HeaderMatch;
use super::*;
use crate::http::HeadLimits;

fn request(method: &str, target: &str, headers: &[(&str, &str)]) -> RequestHead {
    let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: x\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("\r\n");
    RequestHead::parse(Bytes::from(raw), &HeadLimits::default()).unwrap()
}

fn post() -> RequestHead {
    request(
        "POST",
        "/mcp",
        &[("Accept", "application/json, text/event-stream")],
    )
}

fn response(status: u16, content_type: &str) -> ResponseHead {
    let raw = format!("HTTP/1.1 {status} OK\r\nContent-Type: {content_type}\r\n\r\n");
    ResponseHead::parse(Bytes::from(raw), &HeadLimits::default()).unwrap()
}

fn rule(name: &str, on: Stage, matches: MatchSpec, action: ActionSpec) -> RuleSpec {
    RuleSpec {
        name: name.into(),
        route: None,
        on,
        matches,
        action,
    }
}

fn deny(message: &str) -> ActionSpec {
    ActionSpec::Deny {
        status: 403,
        message: message.into(),
    }
}

fn chain(specs: &[RuleSpec]) -> RuleChain {
    RuleChain::new(compile(specs))
}

fn plan(chain: &RuleChain, head: &RequestHead) -> Box<RulePlan> {
    RulePlan::for_request(chain, head, Some("mcp")).expect("a rule applies")
}

fn counters(chain: &RuleChain, name: &str) -> (u64, u64) {
    let (_, stats) = chain.stats().find(|(n, _)| *n == name).unwrap();
    (
        stats.matches.load(Ordering::Relaxed),
        stats.actions.load(Ordering::Relaxed),
    )
}

fn answer(outcome: RequestOutcome) -> DenyAnswer {
    match outcome {
        RequestOutcome::Answer(a) => a,
        RequestOutcome::Forward { edits } => panic!("forwarded with {edits:?}"),
    }
}

fn forwarded(outcome: RequestOutcome) -> Vec<HeaderEdit> {
    match outcome {
        RequestOutcome::Forward { edits } => edits,
        RequestOutcome::Answer(a) => panic!("denied: {a:?}"),
    }
}

fn tool_call(id: Value, tool: &str) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":tool,"arguments":{}}})
        .to_string()
}

fn mcp_tool(globs: &[&str]) -> MatchSpec {
    MatchSpec {
        mcp_tool: globs.iter().map(|g| g.to_string()).collect(),
        ..MatchSpec::default()
    }
}

// ---- for_request ------------------------------------------------------------------------

#[test]
fn no_plan_for_an_empty_chain_or_when_nothing_applies() {
    let empty = RuleChain::new(Vec::new());
    assert!(empty.is_empty());
    assert!(RulePlan::for_request(&empty, &post(), None).is_none());

    let c = chain(&[rule(
        "t-none-applies",
        Stage::Request,
        MatchSpec {
            method: Some("DELETE".into()),
            path_prefix: Some("/admin".into()),
            ..MatchSpec::default()
        },
        deny("no"),
    )]);
    assert!(RulePlan::for_request(&c, &post(), None).is_none());
    assert!(RulePlan::for_request(&c, &request("DELETE", "/mcp", &[]), None).is_none());
    assert!(RulePlan::for_request(&c, &request("DELETE", "/admin/x?q", &[]), None).is_some());
}

#[test]
fn head_keys_route_method_path_header() {
    let mut spec = rule(
        "t-head-keys",
        Stage::Request,
        MatchSpec {
            method: Some("POST".into()),
            path_prefix: Some("/mcp".into()),
            header: Some(HeaderMatch {
                name: "X-Tenant".into(),
                value: Some("blue".into()),
            }),
            ..MatchSpec::default()
        },
        deny("no"),
    );
    spec.route = Some("mcp".into());
    let c = chain(&[spec]);
    let ok = request("POST", "/mcp/x", &[("x-tenant", "blue")]);
    assert!(RulePlan::for_request(&c, &ok, Some("mcp")).is_some());
    assert!(RulePlan::for_request(&c, &ok, Some("other")).is_none());
    assert!(RulePlan::for_request(&c, &ok, None).is_none());
    let wrong_value = request("POST", "/mcp", &[("X-Tenant", "red")]);
    assert!(RulePlan::for_request(&c, &wrong_value, Some("mcp")).is_none());
    let no_header = request("POST", "/mcp", &[]);
    assert!(RulePlan::for_request(&c, &no_header, Some("mcp")).is_none());
    let lower_method = request("post", "/mcp", &[("X-Tenant", "blue")]);
    assert!(RulePlan::for_request(&c, &lower_method, Some("mcp")).is_none());
    let query = request("POST", "/other?/mcp", &[("X-Tenant", "blue")]);
    assert!(RulePlan::for_request(&c, &query, Some("mcp")).is_none());
    let absolute = request("POST", "http://x/mcp/y", &[("X-Tenant", "blue")]);
    assert!(RulePlan::for_request(&c, &absolute, Some("mcp")).is_some());

    let present = chain(&[rule(
        "t-header-present",
        Stage::Request,
        MatchSpec {
            header: Some(HeaderMatch {
                name: "authorization".into(),
                value: None,
            }),
            ..MatchSpec::default()
        },
        ActionSpec::Log,
    )]);
    let with = request("GET", "/", &[("Authorization", "x")]);
    assert!(RulePlan::for_request(&present, &with, None).is_some());
    assert!(RulePlan::for_request(&present, &request("GET", "/", &[]), None).is_none());
}

// ---- request stage ----------------------------------------------------------------------

#[test]
fn plain_deny_without_body_keys() {
    let c = chain(&[rule(
        "t-plain-deny",
        Stage::Request,
        MatchSpec {
            path_prefix: Some("/admin".into()),
            ..MatchSpec::default()
        },
        ActionSpec::Deny {
            status: 404,
            message: "nothing here".into(),
        },
    )]);
    let head = request("GET", "/admin/users", &[]);
    let mut p = plan(&c, &head);
    assert!(!p.needs_request_body());
    let a = answer(p.run_request(&head, BodyInspection::NotRead));
    assert_eq!(a.status, 404);
    assert_eq!(a.content_type, "text/plain; charset=utf-8");
    assert_eq!(&a.body[..], b"nothing here");
    assert_eq!(counters(&c, "t-plain-deny"), (1, 1));
}

#[test]
fn deny_tool_call_by_glob_answers_json_rpc() {
    let c = chain(&[rule(
        "t-deny-tool",
        Stage::Request,
        mcp_tool(&["delete_*", "exec_sql"]),
        deny("tool not allowed"),
    )]);
    let head = post();
    let mut p = plan(&c, &head);
    assert!(p.needs_request_body());

    let body = tool_call(json!(7), "delete_repo");
    let a = answer(p.run_request(&head, BodyInspection::Read(body.as_bytes())));
    assert_eq!((a.status, a.content_type), (200, "application/json"));
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["id"], json!(7));
    assert_eq!(v["error"]["code"], json!(DENIED_BY_POLICY));
    assert_eq!(v["error"]["message"], json!("tool not allowed"));

    for allowed in [
        tool_call(json!(8), "read_file"),
        tool_call(json!(8), "exec_sqlx"),
    ] {
        let mut p = plan(&c, &head);
        forwarded(p.run_request(&head, BodyInspection::Read(allowed.as_bytes())));
    }
    // The same call's escaped spelling is no way around the rule.
    let escaped = r#"{"jsonrpc":"2.0","id":1,"method":"tools\/call","params":{"name":"exec_sql"}}"#;
    let mut p = plan(&c, &head);
    answer(p.run_request(&head, BodyInspection::Read(escaped.as_bytes())));
    // Not read, over the limit, not JSON: nothing to match.
    for body in [
        BodyInspection::NotRead,
        BodyInspection::OverLimit,
        BodyInspection::Read(b"{not json"),
    ] {
        let mut p = plan(&c, &head);
        forwarded(p.run_request(&head, body));
    }
    assert_eq!(counters(&c, "t-deny-tool"), (2, 2));
}

#[test]
fn deny_answers_an_sse_only_client_with_one_event() {
    let c = chain(&[rule(
        "t-deny-sse",
        Stage::Request,
        mcp_tool(&["*"]),
        deny("no tools"),
    )]);
    let head = request("POST", "/mcp", &[("Accept", "text/event-stream")]);
    let body = tool_call(json!("abc"), "anything");
    let a = answer(plan(&c, &head).run_request(&head, BodyInspection::Read(body.as_bytes())));
    assert_eq!((a.status, a.content_type), (200, "text/event-stream"));
    let event = crate::sse::framer::parse_block(&a.body);
    let v: Value = serde_json::from_str(&event.data).unwrap();
    assert_eq!(v["id"], json!("abc"));
    assert_eq!(v["error"]["message"], json!("no tools"));
}

#[test]
fn a_batch_with_a_denied_call_is_refused_whole() {
    let c = chain(&[rule(
        "t-deny-batch",
        Stage::Request,
        MatchSpec {
            mcp_method: vec!["tools/call".into()],
            mcp_tool: vec!["exec".into()],
            ..MatchSpec::default()
        },
        deny("exec is off"),
    )]);
    let head = post();
    let body = format!(
        "[{},{},{}]",
        r#"{"jsonrpc":"2.0","method":"notifications/progress"}"#,
        tool_call(json!(1), "read"),
        tool_call(json!(2), "exec"),
    );
    let a = answer(plan(&c, &head).run_request(&head, BodyInspection::Read(body.as_bytes())));
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(
        v,
        json!([
            {"jsonrpc":"2.0","id":1,"error":{"code":DENIED_BY_POLICY,"message":BATCH_REFUSED_MESSAGE}},
            {"jsonrpc":"2.0","id":2,"error":{"code":DENIED_BY_POLICY,"message":"exec is off"}},
        ])
    );
}

#[test]
fn mcp_method_list_and_notifications_only_get_a_plain_answer() {
    let c = chain(&[rule(
        "t-mcp-method",
        Stage::Request,
        MatchSpec {
            mcp_method: vec![
                "sampling/createMessage".into(),
                "notifications/cancelled".into(),
            ],
            ..MatchSpec::default()
        },
        ActionSpec::Deny {
            status: 409,
            message: "refused".into(),
        },
    )]);
    let head = post();
    let note = br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{}}"#;
    let a = answer(plan(&c, &head).run_request(&head, BodyInspection::Read(note)));
    assert_eq!(
        (a.status, a.content_type),
        (409, "text/plain; charset=utf-8")
    );
    let other = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    forwarded(plan(&c, &head).run_request(&head, BodyInspection::Read(other)));
}

#[test]
fn revision_2026_07_28_decides_from_headers() {
    let c = chain(&[rule(
        "t-headers-rev",
        Stage::Request,
        mcp_tool(&["delete_*"]),
        deny("no deletes"),
    )]);
    let headers = |name: &'static str| {
        request(
            "POST",
            "/mcp",
            &[
                ("MCP-Protocol-Version", "2026-07-28"),
                ("Mcp-Method", "tools/call"),
                ("Mcp-Name", name),
                ("Accept", "application/json"),
            ],
        )
    };
    // The headers decide: the body (which a conforming server would refuse as a mismatch)
    // is not what the rule reads, and it is not needed to decide.
    let body = tool_call(json!(5), "read");
    let head = headers("delete_x");
    let a = answer(plan(&c, &head).run_request(&head, BodyInspection::Read(body.as_bytes())));
    let v: Value = serde_json::from_slice(&a.body).unwrap();
    assert_eq!(v["id"], json!(5));
    let head = headers("read");
    let body = tool_call(json!(5), "delete_x");
    forwarded(plan(&c, &head).run_request(&head, BodyInspection::Read(body.as_bytes())));
    // Decided from headers with the body unread: a plain answer (no id to answer with).
    let head = headers("delete_x");
    let a = answer(plan(&c, &head).run_request(&head, BodyInspection::NotRead));
    assert_eq!(a.status, 403);
    // An older revision's headers are not trusted: the body decides.
    let head = request(
        "POST",
        "/mcp",
        &[
            ("MCP-Protocol-Version", "2025-11-25"),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "delete_x"),
        ],
    );
    let body = tool_call(json!(5), "read");
    forwarded(plan(&c, &head).run_request(&head, BodyInspection::Read(body.as_bytes())));
}

#[test]
fn body_over_inspect_limit() {
    let c = chain(&[rule(
        "t-over-limit",
        Stage::Request,
        MatchSpec {
            body_over_inspect_limit: true,
            ..MatchSpec::default()
        },
        ActionSpec::Deny {
            status: 413,
            message: "too large to inspect".into(),
        },
    )]);
    let head = post();
    let mut p = plan(&c, &head);
    assert!(p.needs_request_body());
    let a = answer(p.run_request(&head, BodyInspection::OverLimit));
    assert_eq!(a.status, 413);
    forwarded(plan(&c, &head).run_request(&head, BodyInspection::Read(b"{}")));
    forwarded(plan(&c, &head).run_request(&head, BodyInspection::NotRead));
}

#[test]
fn request_header_edits_in_order_and_log() {
    let c = chain(&[
        rule(
            "t-set-header",
            Stage::Request,
            MatchSpec::default(),
            ActionSpec::SetHeader {
                header: "X-Policy".into(),
                value: "checked".into(),
            },
        ),
        rule(
            "t-log-req",
            Stage::Request,
            MatchSpec::default(),
            ActionSpec::Log,
        ),
        rule(
            "t-remove-header",
            Stage::Request,
            MatchSpec::default(),
            ActionSpec::RemoveHeader {
                header: "Cookie".into(),
            },
        ),
    ]);
    let head = request("GET", "/x?token=secret", &[]);
    let mut p = plan(&c, &head);
    assert!(!p.needs_request_body());
    let edits = forwarded(p.run_request(&head, BodyInspection::NotRead));
    assert_eq!(
        edits,
        [
            HeaderEdit::Set {
                name: "X-Policy".into(),
                value: "checked".into()
            },
            HeaderEdit::Remove {
                name: "Cookie".into()
            }
        ]
    );
    assert_eq!(counters(&c, "t-log-req"), (1, 1));
}

#[test]
fn deny_ends_the_chain() {
    let c = chain(&[
        rule(
            "t-end-deny",
            Stage::Request,
            MatchSpec::default(),
            deny("x"),
        ),
        rule(
            "t-end-after",
            Stage::Request,
            MatchSpec::default(),
            ActionSpec::Log,
        ),
    ]);
    let head = post();
    answer(plan(&c, &head).run_request(&head, BodyInspection::NotRead));
    assert_eq!(counters(&c, "t-end-after"), (0, 0));
}

// ---- response stage ---------------------------------------------------------------------

fn tools_result(id: Value, names: &[&str]) -> String {
    let tools: Vec<Value> = names
        .iter()
        .map(|n| json!({"name": n, "description": "d\nx", "inputSchema": {"type": "object"}}))
        .collect();
    json!({"jsonrpc":"2.0","id":id,"result":{"tools":tools,"nextCursor":"n"}}).to_string()
}

fn tool_names(json: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(json).unwrap();
    v["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn filter_tools_in_a_json_response_by_request_id() {
    let c = chain(&[rule(
        "t-filter-json",
        Stage::Response,
        MatchSpec::default(),
        ActionSpec::FilterTools {
            tools: vec!["admin_*".into()],
        },
    )]);
    let head = post();
    let mut p = plan(&c, &head);
    // The request's ids tell which result answers a tools/list: its body is read.
    assert!(p.needs_request_body());
    let list = br#"{"jsonrpc":"2.0","id":4,"method":"tools/list"}"#;
    forwarded(p.run_request(&head, BodyInspection::Read(list)));
    let json_head = response(200, "application/json; charset=utf-8");
    assert!(p.needs_response_body(&json_head));
    assert!(!p.needs_response_body(&response(200, "text/event-stream")));
    assert!(p.needs_response_body(&response(200, "application/vnd.x+json")));
    assert!(!p.needs_response_body(&response(204, "application/json")));
    let gzip = ResponseHead::parse(
        Bytes::from_static(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\n\r\n",
        ),
        &HeadLimits::default(),
    )
    .unwrap();
    assert!(!p.needs_response_body(&gzip));

    let body = tools_result(json!(4), &["read", "admin_reset", "write"]);
    let out = p.run_response(&head, &json_head, Some(body.as_bytes()));
    assert_eq!(tool_names(&out.body.unwrap()), ["read", "write"]);
    // Another id: the request's ids are known, so the shape does not count.
    let body = tools_result(json!(5), &["admin_reset"]);
    assert!(p
        .run_response(&head, &json_head, Some(body.as_bytes()))
        .body
        .is_none());
    // Nothing to remove: no new body, matched but not acted.
    let body = tools_result(json!(4), &["read"]);
    assert!(p
        .run_response(&head, &json_head, Some(body.as_bytes()))
        .body
        .is_none());
    assert_eq!(counters(&c, "t-filter-json"), (2, 1));
}

#[test]
fn response_header_match_edits_and_redact() {
    let c = chain(&[
        rule(
            "t-resp-header",
            Stage::Response,
            MatchSpec {
                header: Some(HeaderMatch {
                    name: "content-type".into(),
                    value: None,
                }),
                ..MatchSpec::default()
            },
            ActionSpec::SetHeader {
                header: "X-Seen".into(),
                value: "1".into(),
            },
        ),
        rule(
            "t-resp-redact",
            Stage::Response,
            MatchSpec {
                data_regex: Some(regex::bytes::Regex::new(r"sk-[a-z0-9]+").unwrap()),
                ..MatchSpec::default()
            },
            ActionSpec::Redact {
                replace: "$0-[R]".into(),
            },
        ),
    ]);
    let head = post();
    let p = plan(&c, &head);
    let json_head = response(200, "application/json");
    let body = br#"{"key":"sk-abc123","other":"sk-zz"}"#;
    let out = p.run_response(&head, &json_head, Some(body));
    assert_eq!(
        out.edits,
        [HeaderEdit::Set {
            name: "X-Seen".into(),
            value: "1".into()
        }]
    );
    // The replacement is literal: `$0` is not expanded.
    assert_eq!(
        &out.body.unwrap()[..],
        br#"{"key":"$0-[R]","other":"$0-[R]"}"#
    );
    let out = p.run_response(&head, &json_head, None);
    assert!(out.body.is_none());
    assert_eq!(counters(&c, "t-resp-redact"), (1, 1));
}

// ---- event stage ------------------------------------------------------------------------

fn event_chain(specs: &[RuleSpec]) -> (RuleChain, Box<RulePlan>) {
    let c = chain(specs);
    let head = request("GET", "/mcp", &[("Accept", "text/event-stream")]);
    let p = plan(&c, &head);
    assert!(p.has_event_rules());
    (c, p)
}

#[test]
fn drop_by_event_type() {
    let (c, p) = event_chain(&[rule(
        "t-drop-debug",
        Stage::Event,
        MatchSpec {
            event_type: Some("debug".into()),
            ..MatchSpec::default()
        },
        ActionSpec::Drop,
    )]);
    assert_eq!(
        p.run_event(&Bytes::from_static(b"event: debug\ndata: x\n\n")),
        EventOutcome::Drop
    );
    assert_eq!(
        p.run_event(&Bytes::from_static(b"event: info\ndata: x\n\n")),
        EventOutcome::Keep
    );
    assert_eq!(
        p.run_event(&Bytes::from_static(b"data: debug\n\n")),
        EventOutcome::Keep
    );
    assert_eq!(counters(&c, "t-drop-debug"), (1, 1));

    let (_, p) = event_chain(&[rule(
        "t-drop-message",
        Stage::Event,
        MatchSpec {
            event_type: Some("message".into()),
            ..MatchSpec::default()
        },
        ActionSpec::Drop,
    )]);
    assert_eq!(
        p.run_event(&Bytes::from_static(b"data: x\r\n\r\n")),
        EventOutcome::Drop
    );
    assert_eq!(
        p.run_event(&Bytes::from_static(b"event: other\n\n")),
        EventOutcome::Keep
    );
}

#[test]
fn redact_keeps_id_event_retry_and_comment_lines() {
    let (c, p) = event_chain(&[rule(
        "t-redact-event",
        Stage::Event,
        MatchSpec {
            data_contains: Some("hunter2".into()),
            ..MatchSpec::default()
        },
        ActionSpec::Redact {
            replace: "[REDACTED]".into(),
        },
    )]);
    let raw = Bytes::from_static(
        b": keep\r\nid: 41\r\nevent: message\r\ndata: pw=hunter2\r\ndata: again hunter2\r\nretry: 3000\r\n\r\n",
    );
    assert_eq!(
        p.run_event(&raw),
        EventOutcome::Replace(Bytes::from_static(
            b": keep\nid: 41\nevent: message\ndata: pw=[REDACTED]\ndata: again [REDACTED]\nretry: 3000\n\n"
        ))
    );
    assert_eq!(
        p.run_event(&Bytes::from_static(b"id: 42\ndata: nothing\n\n")),
        EventOutcome::Keep
    );
    assert_eq!(counters(&c, "t-redact-event"), (1, 1));
}

#[test]
fn a_needle_across_data_lines_still_matches() {
    let (_, p) = event_chain(&[rule(
        "t-redact-multiline",
        Stage::Event,
        MatchSpec {
            data_contains: Some("a\nb".into()),
            ..MatchSpec::default()
        },
        ActionSpec::Redact {
            replace: "X".into(),
        },
    )]);
    assert_eq!(
        p.run_event(&Bytes::from_static(b"data: a\ndata: b\n\n")),
        EventOutcome::Replace(Bytes::from_static(b"data: X\n\n"))
    );
}

#[test]
fn filter_tools_in_an_event_without_known_ids_uses_the_shape() {
    let (c, p) = event_chain(&[rule(
        "t-filter-event",
        Stage::Event,
        MatchSpec::default(),
        ActionSpec::FilterTools {
            tools: vec!["exec*".into(), "rm".into()],
        },
    )]);
    let data = tools_result(json!(2), &["exec_shell", "ls", "rm"]);
    let raw = Bytes::from(format!("id: 9\nevent: message\ndata: {data}\n\n"));
    let EventOutcome::Replace(out) = p.run_event(&raw) else {
        panic!("not rewritten");
    };
    let parsed = crate::sse::framer::parse_block(&out);
    assert_eq!(parsed.id.as_deref(), Some("9"));
    assert_eq!(tool_names(parsed.data.as_bytes()), ["ls"]);
    // Not a tools/list result: the prefilter rejects it, nothing is parsed or counted.
    let other = Bytes::from_static(
        b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n",
    );
    assert_eq!(p.run_event(&other), EventOutcome::Keep);
    assert_eq!(counters(&c, "t-filter-event"), (1, 1));
}

#[test]
fn mcp_result_of_by_id_needs_the_request_body() {
    let (c, mut p) = {
        let c = chain(&[rule(
            "t-result-of",
            Stage::Event,
            MatchSpec {
                mcp_result_of: Some("prompts/get".into()),
                ..MatchSpec::default()
            },
            ActionSpec::Drop,
        )]);
        let p = plan(&c, &post());
        (c, p)
    };
    assert!(p.needs_request_body());
    let head = post();
    let req = br#"{"jsonrpc":"2.0","id":"p1","method":"prompts/get","params":{"name":"x"}}"#;
    forwarded(p.run_request(&head, BodyInspection::Read(req)));
    let hit = Bytes::from_static(b"data: {\"jsonrpc\":\"2.0\",\"id\":\"p1\",\"result\":{}}\n\n");
    let miss = Bytes::from_static(b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n");
    assert_eq!(p.run_event(&hit), EventOutcome::Drop);
    assert_eq!(p.run_event(&miss), EventOutcome::Keep);
    assert_eq!(counters(&c, "t-result-of"), (1, 1));
}

#[test]
fn mcp_method_on_events_and_rewrites_seen_by_later_rules() {
    let (c, p) = event_chain(&[
        rule(
            "t-chain-redact",
            Stage::Event,
            MatchSpec::default(),
            ActionSpec::Redact {
                replace: "elicitation/create".into(),
            },
        ),
        rule(
            "t-chain-method",
            Stage::Event,
            MatchSpec {
                mcp_method: vec!["elicitation/create".into()],
                ..MatchSpec::default()
            },
            ActionSpec::Drop,
        ),
    ]);
    // The first rule has no data key: it matches, changes nothing.
    let raw = Bytes::from_static(
        b"data: {\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"elicitation/create\"}\n\n",
    );
    assert_eq!(p.run_event(&raw), EventOutcome::Drop);
    assert_eq!(counters(&c, "t-chain-redact"), (1, 0));
    assert_eq!(counters(&c, "t-chain-method"), (1, 1));

    let (_, p) = event_chain(&[
        rule(
            "t-chain-redact2",
            Stage::Event,
            MatchSpec {
                data_contains: Some("sampling/createMessage".into()),
                ..MatchSpec::default()
            },
            ActionSpec::Redact {
                replace: "elicitation/create".into(),
            },
        ),
        rule(
            "t-chain-method2",
            Stage::Event,
            MatchSpec {
                mcp_method: vec!["elicitation/create".into()],
                ..MatchSpec::default()
            },
            ActionSpec::Drop,
        ),
    ]);
    // The raw block never had the second rule's needle; the rewritten data has.
    let raw = Bytes::from_static(b"data: {\"id\":3,\"method\":\"sampling/createMessage\"}\n\n");
    assert_eq!(p.run_event(&raw), EventOutcome::Drop);
}

#[test]
fn keep_means_the_very_same_bytes() {
    let (_, p) = event_chain(&[
        rule(
            "t-keep-log",
            Stage::Event,
            MatchSpec {
                event_type: Some("audit".into()),
                ..MatchSpec::default()
            },
            ActionSpec::Log,
        ),
        rule(
            "t-keep-redact",
            Stage::Event,
            MatchSpec {
                data_contains: Some("x".into()),
                ..MatchSpec::default()
            },
            ActionSpec::Redact {
                replace: "x".into(),
            },
        ),
    ]);
    // Matched by both, changed by none (x redacted to x).
    let raw = Bytes::from_static(b"event: audit\r\ndata: x\r\n\r\n");
    assert_eq!(p.run_event(&raw), EventOutcome::Keep);
}

#[test]
fn no_event_stage_no_event_work() {
    let c = chain(&[rule(
        "t-only-req",
        Stage::Request,
        MatchSpec::default(),
        ActionSpec::Log,
    )]);
    let p = plan(&c, &post());
    assert!(!p.has_event_rules());
    assert_eq!(
        p.run_event(&Bytes::from_static(b"data: x\n\n")),
        EventOutcome::Keep
    );
}

// ---- counters and metrics ---------------------------------------------------------------

#[test]
fn counters_survive_a_rebuilt_chain_of_the_same_name() {
    let spec = rule(
        "t-reload \"q\"",
        Stage::Request,
        MatchSpec::default(),
        ActionSpec::Log,
    );
    let first = chain(std::slice::from_ref(&spec));
    let head = post();
    forwarded(plan(&first, &head).run_request(&head, BodyInspection::NotRead));
    let second = chain(&[spec]);
    forwarded(plan(&second, &head).run_request(&head, BodyInspection::NotRead));
    assert_eq!(counters(&second, "t-reload \"q\""), (2, 2));
    let mut out = String::new();
    render_metrics(&mut out);
    assert!(out.contains("# TYPE tether_rule_matches_total counter\n"));
    assert!(
        out.contains("tether_rule_matches_total{rule=\"t-reload \\\"q\\\"\"} 2\n"),
        "{out}"
    );
    assert!(
        out.contains("tether_rule_actions_total{rule=\"t-reload \\\"q\\\"\",action=\"log\"} 2\n")
    );
}

#[derive(Debug)]
struct CustomDrop;

impl Interceptor for CustomDrop {
    fn name(&self) -> &str {
        "t-custom"
    }
    fn stage(&self) -> Stage {
        Stage::Event
    }
    fn applies_to(&self, _: &RequestView<'_>) -> bool {
        true
    }
    fn on_event(&self, msg: &mut EventMessage<'_>) -> Verdict {
        if msg.data() == "bye" {
            Verdict::Drop
        } else {
            Verdict::NoMatch
        }
    }
}

#[test]
fn a_programs_own_interceptor_runs_and_counts_as_custom() {
    let c = RuleChain::new(vec![Arc::new(CustomDrop)]);
    let p = plan(&c, &post());
    assert_eq!(
        p.run_event(&Bytes::from_static(b"data: bye\n\n")),
        EventOutcome::Drop
    );
    assert_eq!(
        p.run_event(&Bytes::from_static(b"data: hi\n\n")),
        EventOutcome::Keep
    );
    let mut out = String::new();
    render_metrics(&mut out);
    assert!(out.contains("tether_rule_actions_total{rule=\"t-custom\",action=\"custom\"} 1\n"));
}

// ---- prefilter equivalence --------------------------------------------------------------

/// The event rules of the equivalence test: every key with a prefilter, and every action.
fn prefiltered_specs() -> Vec<RuleSpec> {
    let m = |f: fn(&mut MatchSpec)| {
        let mut spec = MatchSpec::default();
        f(&mut spec);
        spec
    };
    let redact = || ActionSpec::Redact {
        replace: "#".into(),
    };
    vec![
        rule(
            "p-contains",
            Stage::Event,
            m(|s| s.data_contains = Some("ab".into())),
            redact(),
        ),
        rule(
            "p-contains-lf",
            Stage::Event,
            m(|s| s.data_contains = Some("a\nb".into())),
            redact(),
        ),
        rule(
            "p-contains-fffd",
            Stage::Event,
            m(|s| s.data_contains = Some("\u{FFFD}ab".into())),
            redact(),
        ),
        rule(
            "p-regex",
            Stage::Event,
            m(|s| s.data_regex = Some(regex::bytes::Regex::new("ab").unwrap())),
            redact(),
        ),
        rule(
            "p-regex-words",
            Stage::Event,
            m(|s| s.data_regex = Some(regex::bytes::Regex::new(r"\bab\b").unwrap())),
            redact(),
        ),
        rule(
            "p-regex-dot",
            Stage::Event,
            m(|s| s.data_regex = Some(regex::bytes::Regex::new(r"a.?b|\Bb").unwrap())),
            ActionSpec::Drop,
        ),
        rule(
            "p-regex-fffd",
            Stage::Event,
            m(|s| s.data_regex = Some(regex::bytes::Regex::new(r"[^\n]ab").unwrap())),
            ActionSpec::Drop,
        ),
        rule(
            "p-regex-anchored",
            Stage::Event,
            m(|s| s.data_regex = Some(regex::bytes::Regex::new("^ab|b$").unwrap())),
            ActionSpec::Drop,
        ),
        rule(
            "p-regex-lines",
            Stage::Event,
            m(|s| s.data_regex = Some(regex::bytes::Regex::new(r"a\sb").unwrap())),
            ActionSpec::Drop,
        ),
        rule(
            "p-type",
            Stage::Event,
            m(|s| s.event_type = Some("ab".into())),
            ActionSpec::Drop,
        ),
        rule(
            "p-type-msg",
            Stage::Event,
            m(|s| s.event_type = Some("message".into())),
            ActionSpec::Drop,
        ),
        rule(
            "p-method",
            Stage::Event,
            m(|s| s.mcp_method = vec!["a/b".into()]),
            ActionSpec::Drop,
        ),
        rule(
            "p-tool",
            Stage::Event,
            m(|s| s.mcp_tool = vec!["a*".into()]),
            ActionSpec::Drop,
        ),
        rule(
            "p-result",
            Stage::Event,
            m(|s| s.mcp_result_of = Some("tools/list".into())),
            ActionSpec::Drop,
        ),
        rule(
            "p-filter",
            Stage::Event,
            MatchSpec::default(),
            ActionSpec::FilterTools {
                tools: vec!["a*".into()],
            },
        ),
    ]
}

/// The data random events carry: JSON-RPC messages the rules look for, plain and with JSON
/// escapes that spell the same strings, and plain text (U+FFFD and invalid UTF-8 included).
const DATA: &[&[u8]] = &[
    br#"{"jsonrpc":"2.0","id":1,"method":"a/b"}"#,
    br#"{"jsonrpc":"2.0","id":1,"method":"a\/b"}"#,
    br#"{"id":1,"method":"tools/call","params":{"name":"ax"}}"#,
    br#"{"id":1,"method":"tools\/call","params":{"name":"ax"}}"#,
    br#"{"id":1,"method":"\u0074ools/call","params":{"name":"\u0061x"}}"#,
    br#"{"id":1,"result":{"tools":[{"name":"ab"},{"name":"b"}]}}"#,
    br#"{"\u0069d":1,"result":{"\u0074ools":[{"name":"ab"}]}}"#,
    br#"{"id":1,"result":{"tools":[{"name":"b"}]}}"#,
    b"ab",
    b"a",
    b"b",
    b"xaby",
    b"x ab y",
    b"ab\xe2\x82\xac",
    "\u{FFFD}ab".as_bytes(),
    b"\xff\xfeab",
    b"",
];

/// One random block: optional event line, data split into lines at random places, other
/// lines, random line ends.
fn event_block() -> impl Strategy<Value = Vec<u8>> {
    (
        0..DATA.len(),
        prop::collection::vec(any::<prop::sample::Index>(), 0..3),
        prop::sample::select(vec![
            None,
            Some("ab"),
            Some("message"),
            Some(""),
            Some("a\u{FFFD}"),
        ]),
        prop::collection::vec(prop::sample::select(vec!["\n", "\r\n", "\r"]), 8),
        any::<bool>(),
    )
        .prop_map(|(data, splits, event, ends, extra)| {
            let data = DATA[data];
            let mut cuts: Vec<usize> = splits.iter().map(|i| i.index(data.len() + 1)).collect();
            cuts.sort();
            cuts.dedup();
            let mut lines: Vec<Vec<u8>> = Vec::new();
            if extra {
                lines.push(b": comment ab".to_vec());
                lines.push(b"id: 7".to_vec());
            }
            if let Some(event) = event {
                lines.push(format!("event: {event}").into_bytes());
            }
            let mut start = 0;
            for cut in cuts.into_iter().chain([data.len()]) {
                if cut < start {
                    continue;
                }
                let mut line = b"data: ".to_vec();
                line.extend_from_slice(&data[start..cut]);
                lines.push(line);
                start = cut;
            }
            let mut raw = Vec::new();
            for (i, line) in lines.iter().enumerate() {
                raw.extend_from_slice(line);
                raw.extend_from_slice(ends[i % ends.len()].as_bytes());
            }
            raw.extend_from_slice(ends[7].as_bytes());
            raw
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// Each rule with and without its prefilter, on the same random block: the same verdict
    /// and the same data.
    #[test]
    fn prefilter_never_changes_a_verdict(raw in event_block()) {
        let raw = Bytes::from(raw);
        let head = post();
        let methods = RequestMethods::default();
        for spec in prefiltered_specs() {
            let filtered_rule = builtin::BuiltinRule::new(&spec);
            let unfiltered_rule = builtin::BuiltinRule::new(&spec).without_prefilter();
            let new_message = || EventMessage {
                request: RequestView::new(&head, None),
                raw: &raw,
                parsed: Default::default(),
                new_data: None,
                methods: &methods,
                mcp: Default::default(),
            };
            let mut filtered = new_message();
            let mut unfiltered = new_message();
            prop_assert_eq!(
                filtered_rule.on_event(&mut filtered),
                unfiltered_rule.on_event(&mut unfiltered),
                "rule {} on {:?}", spec.name, raw
            );
            prop_assert_eq!(filtered.data(), unfiltered.data());
        }
    }
}
