//! Interceptor rules (`[[rule]]` in the configuration file) over real sockets: each action and
//! match key, MCP denials in both answer forms, batches, bodies past the inspection limit,
//! redaction that survives an upstream resume and a replay from the ring, rule counters, and a
//! reload that changes a rule. The origin is scripted (tests/common/scripted_origin.rs) so each
//! test sees exactly what crossed the proxy. The real MCP SDK goes through rules in
//! tests/mcp_sdk.rs.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::config_file::ConfigFile;
use common::scripted_origin::{Recorded, Reply, ScriptedOrigin};
use common::sse_client::{SseClient, StreamEnd};
use common::{prom_value, wait_until, Client, Response, Tether};
use serde_json::Value;

/// Starts tether on `file` with an admin endpoint and one worker (rings on one worker, so a
/// replay is found without asking another).
fn start(file: &ConfigFile) -> (Tether, SocketAddr) {
    let args: Vec<String> = [
        "reverse",
        "--config",
        &file.path(),
        "--admin",
        "127.0.0.1:0",
        "--workers",
        "1",
        "--sse-heartbeat",
        "0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let t = Tether::start_args(&args)
        .unwrap_or_else(|log| panic!("tether did not start:\n{}", log.join("\n")));
    let admin = t.admin_addr();
    (t, admin)
}

/// A configuration: one catch-all route to `origin`, then `rules` (TOML text).
fn config(origin: &ScriptedOrigin, rules: &str) -> ConfigFile {
    ConfigFile::new(&format!(
        "bind = \"127.0.0.1:0\"\n\n[[route]]\nname = \"main\"\nupstream = [\"{}\"]\n\n{rules}",
        origin.url()
    ))
}

/// Sends `raw` on a fresh connection and reads the answer.
fn exchange(addr: SocketAddr, raw: &[u8]) -> Response {
    let mut c = Client::connect(addr);
    c.send(raw).unwrap();
    c.read_response(false).expect("a response")
}

fn post(path: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn mcp_post(body: &str, accept: &str) -> Vec<u8> {
    post(
        "/mcp",
        &format!("Content-Type: application/json\r\nAccept: {accept}\r\n"),
        body,
    )
}

const BOTH_FORMS: &str = "application/json, text/event-stream";

/// The JSON an answer carries: its body, or the data of its single SSE event.
fn json_of(r: &Response) -> Value {
    let text = r.text();
    let json = if r
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/event-stream"))
    {
        text.lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(str::trim_start)
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        text
    };
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("not JSON ({e}): {json:?}"))
}

fn tools_call(id: u64, name: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{name}","arguments":{{}}}}}}"#
    )
}

/// An origin answering every request 200 "ok" (JSON-RPC requests with a JSON-RPC result).
fn ok_origin() -> ScriptedOrigin {
    ScriptedOrigin::start(|r: &Recorded| {
        match serde_json::from_slice::<Value>(&r.body)
            .ok()
            .and_then(|v| v.get("id").cloned())
        {
            Some(id) => Reply::json(
                &serde_json::json!({"jsonrpc": "2.0", "id": id, "result": {"ok": true}})
                    .to_string(),
            ),
            None => Reply::text(200, "ok"),
        }
    })
}

fn metric(admin: SocketAddr, name: &str) -> Option<f64> {
    prom_value(&Tether::metrics_text(admin), name)
}

#[test]
fn a_denied_request_never_reaches_the_upstream() {
    let origin = ok_origin();
    let file = config(
        &origin,
        r#"
[[rule]]
name = "no-admin-writes"
on = "request"
match = { method = "POST", path-prefix = "/admin" }
action = "deny"
status = 403
message = "admin is read-only here"
"#,
    );
    let (t, admin) = start(&file);

    let denied = exchange(t.addr, &post("/admin/users", "", "name=x"));
    assert_eq!(denied.status, 403);
    assert!(
        denied.text().contains("admin is read-only here"),
        "{denied:?}"
    );
    assert!(denied.header("x-request-id").is_some());
    // The method and the prefix must both hold.
    assert_eq!(
        exchange(t.addr, b"GET /admin/users HTTP/1.1\r\nHost: t\r\n\r\n").status,
        200
    );
    assert_eq!(exchange(t.addr, &post("/public", "", "x")).status, 200);

    let seen: Vec<(String, String)> = origin
        .requests()
        .iter()
        .map(|r| (r.method.clone(), r.target.clone()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("GET".to_string(), "/admin/users".to_string()),
            ("POST".to_string(), "/public".to_string())
        ]
    );
    assert_eq!(
        metric(admin, "tether_rule_matches_total{rule=\"no-admin-writes\"}"),
        Some(1.0)
    );
}

#[test]
fn header_rules_change_fields_both_ways_when_their_match_holds() {
    let origin = ScriptedOrigin::start(|_| Reply::Full {
        status: 200,
        headers: vec![
            ("Server".into(), "origin/1.0".into()),
            ("X-Internal".into(), "secret".into()),
        ],
        body: b"ok".to_vec(),
    });
    let file = config(
        &origin,
        r#"
[[rule]]
on = "request"
match = { header = { name = "X-Api-Key", present = true } }
action = "set-header"
header = "X-Authenticated-By"
value = "tether"

[[rule]]
on = "request"
match = { header = { name = "X-Api-Key", value = "k1" } }
action = "remove-header"
header = "Cookie"

[[rule]]
on = "response"
action = "remove-header"
header = "X-Internal"

[[rule]]
on = "response"
match = { header = { name = "Server", present = true } }
action = "set-header"
header = "Server"
value = "tether"
"#,
    );
    let (t, _admin) = start(&file);

    let with_key = exchange(
        t.addr,
        b"GET /a HTTP/1.1\r\nHost: t\r\nX-Api-Key: k1\r\nCookie: s=1\r\nX-Authenticated-By: forged\r\n\r\n",
    );
    assert_eq!(with_key.status, 200);
    assert_eq!(with_key.header("server"), Some("tether"));
    assert_eq!(with_key.header("x-internal"), None);
    let other_key = exchange(
        t.addr,
        b"GET /b HTTP/1.1\r\nHost: t\r\nX-Api-Key: k2\r\nCookie: s=2\r\n\r\n",
    );
    assert_eq!(other_key.status, 200);
    let anonymous = exchange(t.addr, b"GET /c HTTP/1.1\r\nHost: t\r\nCookie: s=3\r\n\r\n");
    assert_eq!(anonymous.header("x-internal"), None);

    let seen = origin.requests();
    assert_eq!(seen.len(), 3);
    // A client's own copy of a field a rule sets is replaced, not kept beside it.
    let set: Vec<&str> = seen[0]
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("x-authenticated-by"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(set, vec!["tether"]);
    assert_eq!(seen[0].header("cookie"), None);
    assert_eq!(seen[1].header("x-authenticated-by"), Some("tether"));
    assert_eq!(seen[1].header("cookie"), Some("s=2"));
    assert_eq!(seen[2].header("x-authenticated-by"), None);
    assert_eq!(seen[2].header("cookie"), Some("s=3"));
}

/// The blocks of a stream with ids `from..=to`: odd ids carry a secret, every fourth is a
/// `debug` event.
fn secret_blocks(from: u64, to: u64) -> Vec<String> {
    (from..=to)
        .map(|i| {
            if i % 4 == 0 {
                format!("id: {i}\nevent: debug\ndata: internal {i}\n\n")
            } else if i % 2 == 1 {
                format!("id: {i}\nevent: token\ndata: key sk-{i:0>24}\ndata: second line {i}\n\n")
            } else {
                format!("id: {i}\ndata: plain {i}\n\n")
            }
        })
        .collect()
}

const EVENT_RULES: &str = r#"
[[rule]]
name = "no-debug"
on = "event"
match = { event-type = "debug" }
action = "drop"

[[rule]]
name = "keys"
on = "event"
match = { data-regex = 'sk-[A-Za-z0-9]{20,}' }
action = "redact"
replace = "[REDACTED]"
"#;

fn check_redacted(events: &[common::sse_client::Event], ids: &[u64]) {
    let got: Vec<u64> = events
        .iter()
        .filter_map(|e| e.id.as_deref()?.parse().ok())
        .collect();
    assert_eq!(got, ids, "{events:?}");
    for e in events {
        let i: u64 = e.id.as_deref().unwrap().parse().unwrap();
        let want = if i % 2 == 1 {
            format!("key [REDACTED]\nsecond line {i}")
        } else {
            format!("plain {i}")
        };
        assert_eq!(e.data, want);
    }
}

#[test]
fn event_rules_drop_and_redact_and_leave_the_rest_as_it_came() {
    let origin = ScriptedOrigin::start(|_| Reply::Sse {
        blocks: secret_blocks(1, 8),
        hold: Some(Duration::from_secs(5)),
    });
    let file = config(&origin, EVENT_RULES);
    let (t, admin) = start(&file);
    let mut c = SseClient::open(t.addr, "/feed", &[]);
    assert_eq!(c.status, 200);
    let (events, _) = c.read_until(Duration::from_secs(10), |ev| ev.len() >= 6);
    check_redacted(&events, &[1, 2, 3, 5, 6, 7]);
    assert_eq!(
        metric(
            admin,
            "tether_rule_actions_total{rule=\"no-debug\",action=\"drop\"}"
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(
            admin,
            "tether_rule_actions_total{rule=\"keys\",action=\"redact\"}"
        ),
        Some(4.0)
    );
}

#[test]
fn redaction_survives_an_upstream_resume_and_a_replay_from_the_ring() {
    // Ids 1..5, then the origin closes; a resume from 5 gets 6..10 and stays open.
    let origin = ScriptedOrigin::start(|r: &Recorded| {
        match r
            .header("last-event-id")
            .and_then(|v| v.parse::<u64>().ok())
        {
            None => Reply::Sse {
                blocks: secret_blocks(1, 5),
                hold: None,
            },
            Some(last) if last < 10 => Reply::Sse {
                blocks: secret_blocks(last + 1, 10),
                hold: Some(Duration::from_secs(8)),
            },
            Some(_) => Reply::Sse {
                blocks: Vec::new(),
                hold: Some(Duration::from_secs(8)),
            },
        }
    });
    let file = config(&origin, EVENT_RULES);
    let (t, _admin) = start(&file);

    let mut a = SseClient::open(t.addr, "/gen", &[]);
    let (events, end) = a.read_until(Duration::from_secs(15), |ev| {
        ev.last().and_then(|e| e.id.as_deref()) == Some("10")
    });
    assert_eq!(end, StreamEnd::Open);
    check_redacted(&events, &[1, 2, 3, 5, 6, 7, 9, 10]);
    assert!(
        origin
            .requests()
            .iter()
            .any(|r| r.header("last-event-id") == Some("5")),
        "the stream was not resumed upstream"
    );
    drop(a);

    // The ring holds what was sent: a reconnection from 3 gets the redacted events after it.
    let mut b = SseClient::open(t.addr, "/gen", &[("Last-Event-ID", "3")]);
    let (replayed, _) = b.read_until(Duration::from_secs(10), |ev| {
        ev.last().and_then(|e| e.id.as_deref()) == Some("10")
    });
    check_redacted(&replayed, &[5, 6, 7, 9, 10]);
}

const TOOLS: &str = r#"[{"name":"echo","inputSchema":{"type":"object"}},{"name":"delete_user","inputSchema":{"type":"object"}},{"name":"exec_sql","description":"runs SQL","inputSchema":{"type":"object"}},{"name":"get_weather","inputSchema":{"type":"object"}}]"#;

fn tool_names(result: &Value) -> Vec<String> {
    result["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {result}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

const FILTER_RULES: &str = r#"
[[rule]]
name = "hide-tools-json"
on = "response"
match = { mcp-result-of = "tools/list" }
action = "filter-tools"
tools = ["delete_*", "exec_sql"]

[[rule]]
name = "hide-tools-sse"
on = "event"
match = { mcp-result-of = "tools/list" }
action = "filter-tools"
tools = ["delete_*", "exec_sql"]
"#;

#[test]
fn filter_tools_hides_tools_in_json_and_in_sse_answers() {
    let origin = ScriptedOrigin::start(|r: &Recorded| {
        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        let result = format!(
            r#"{{"jsonrpc":"2.0","id":{},"result":{{"tools":{TOOLS},"nextCursor":"c2"}}}}"#,
            v["id"]
        );
        if r.target.contains("sse") {
            Reply::Sse {
                blocks: vec![format!("id: 1\nevent: message\ndata: {result}\n\n")],
                hold: None,
            }
        } else {
            Reply::json(&result)
        }
    });
    let file = config(&origin, FILTER_RULES);
    let (t, _admin) = start(&file);
    let list = r#"{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{}}"#;

    let json = exchange(t.addr, &mcp_post(list, BOTH_FORMS));
    assert_eq!(json.status, 200);
    let v = json_of(&json);
    assert_eq!(tool_names(&v), vec!["echo", "get_weather"]);
    assert_eq!(v["id"], 7);
    assert_eq!(v["result"]["nextCursor"], "c2", "other fields are kept");
    assert_eq!(
        json.header("content-length")
            .map(|n| n.parse::<usize>().unwrap()),
        Some(json.body.len())
    );

    let mut sse = SseClient::open_method(
        t.addr,
        "POST",
        "/mcp/sse",
        &[("Content-Type", "application/json")],
        Some(list.as_bytes()),
    );
    let (events, _) = sse.read_until(Duration::from_secs(10), |ev| !ev.is_empty());
    let v: Value = serde_json::from_str(&events[0].data).unwrap();
    assert_eq!(tool_names(&v), vec!["echo", "get_weather"]);
    assert_eq!(events[0].id.as_deref(), Some("1"), "the id line is kept");

    // Another method's result is left alone, though it carries "tools".
    let other = r#"{"jsonrpc":"2.0","id":8,"method":"prompts/list","params":{}}"#;
    let v = json_of(&exchange(t.addr, &mcp_post(other, BOTH_FORMS)));
    assert_eq!(tool_names(&v).len(), 4);
}

const DENY_TOOLS: &str = r#"
[[rule]]
name = "no-destructive-tools"
on = "request"
match = { method = "POST", path-prefix = "/mcp", mcp-method = "tools/call", mcp-tool = ["delete_*", "exec_sql"] }
action = "deny"
message = "tool not allowed"
"#;

#[test]
fn a_denied_tool_call_gets_a_json_rpc_error_in_the_form_the_client_asked_for() {
    let origin = ok_origin();
    let file = config(&origin, DENY_TOOLS);
    let (t, admin) = start(&file);

    let json = exchange(t.addr, &mcp_post(&tools_call(5, "delete_user"), BOTH_FORMS));
    assert_eq!(json.status, 200);
    assert!(json
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json")));
    let v = json_of(&json);
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["id"], 5);
    assert_eq!(v["error"]["message"], "tool not allowed");
    assert!(v["error"]["code"].as_i64().is_some_and(|c| c < 0), "{v}");

    let sse = exchange(
        t.addr,
        &mcp_post(&tools_call(6, "exec_sql"), "text/event-stream"),
    );
    assert_eq!(sse.status, 200);
    assert!(sse
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/event-stream")));
    let v = json_of(&sse);
    assert_eq!(v["id"], 6);
    assert_eq!(v["error"]["message"], "tool not allowed");

    // Chunked bodies are read and judged the same.
    let body = tools_call(9, "delete_everything");
    let chunked = format!(
        "POST /mcp HTTP/1.1\r\nHost: t\r\nAccept: {BOTH_FORMS}\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
        10,
        &body[..10],
        body.len() - 10,
        &body[10..]
    );
    assert_eq!(json_of(&exchange(t.addr, chunked.as_bytes()))["id"], 9);

    // Allowed calls pass, whole.
    let allowed = exchange(t.addr, &mcp_post(&tools_call(10, "echo"), BOTH_FORMS));
    assert_eq!(json_of(&allowed)["result"]["ok"], true);
    let seen = origin.requests();
    assert_eq!(seen.len(), 1, "only the allowed call went up");
    assert_eq!(seen[0].body, tools_call(10, "echo").as_bytes());
    assert_eq!(
        metric(
            admin,
            "tether_rule_actions_total{rule=\"no-destructive-tools\",action=\"deny\"}"
        ),
        Some(3.0)
    );
}

#[test]
fn a_batch_with_one_denied_call_is_refused_whole() {
    let origin = ok_origin();
    let file = config(&origin, DENY_TOOLS);
    let (t, _admin) = start(&file);
    let batch = format!(
        "[{},{},{}]",
        tools_call(1, "echo"),
        tools_call(2, "exec_sql"),
        r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#
    );
    let r = exchange(t.addr, &mcp_post(&batch, BOTH_FORMS));
    assert_eq!(r.status, 200);
    let v = json_of(&r);
    let answers = v
        .as_array()
        .unwrap_or_else(|| panic!("not a batch answer: {v}"));
    assert_eq!(
        answers.len(),
        2,
        "one answer per request, none for the notification"
    );
    let by_id = |id: u64| answers.iter().find(|a| a["id"] == id).unwrap();
    assert_eq!(by_id(2)["error"]["message"], "tool not allowed");
    assert!(by_id(1)["error"]["message"].is_string());
    assert!(origin.requests().is_empty(), "no part of the batch went up");
}

#[test]
fn bodies_past_the_inspection_limit_pass_whole_unless_a_rule_refuses_them() {
    let origin = ok_origin();
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"delete_user","arguments":{{"pad":"{}"}}}}}}"#,
        "x".repeat(4000)
    );
    // No refusal: the body is forwarded uninspected and whole.
    let file = config(
        &origin,
        &format!("max-inspect-bytes = \"1KiB\"\n{DENY_TOOLS}"),
    );
    let file_text_refusing = format!(
        "{DENY_TOOLS}\n[[rule]]\nname = \"too-big\"\non = \"request\"\nmatch = {{ body-over-inspect-limit = true }}\naction = \"deny\"\nstatus = 413\nmessage = \"body too large to inspect\"\n"
    );
    {
        let (t, _admin) = start(&file);
        let r = exchange(t.addr, &mcp_post(&big, BOTH_FORMS));
        assert_eq!(r.status, 200, "{r:?}");
        let seen = origin.requests();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].body, big.as_bytes());
    }
    // Top-level keys come before the route tables.
    let refusing = ConfigFile::new(&format!(
        "bind = \"127.0.0.1:0\"\nmax-inspect-bytes = \"1KiB\"\n\n[[route]]\nname = \"main\"\nupstream = [\"{}\"]\n{file_text_refusing}",
        origin.url()
    ));
    let (t, _admin) = start(&refusing);
    let r = exchange(t.addr, &mcp_post(&big, BOTH_FORMS));
    assert_eq!(r.status, 413, "{r:?}");
    assert!(r.text().contains("body too large to inspect"));
    assert_eq!(origin.requests().len(), 1, "the refused body never went up");
}

#[test]
fn a_reload_changes_the_rules_for_new_requests() {
    let origin = ok_origin();
    let file = config(&origin, DENY_TOOLS);
    let (t, admin) = start(&file);
    let call = |id: u64, name: &str| {
        json_of(&exchange(
            t.addr,
            &mcp_post(&tools_call(id, name), BOTH_FORMS),
        ))
    };
    assert!(call(1, "exec_sql")["error"].is_object());
    assert!(call(2, "echo")["result"].is_object());

    let text = std::fs::read_to_string(file.path()).unwrap().replace(
        r#"mcp-tool = ["delete_*", "exec_sql"]"#,
        r#"mcp-tool = ["echo"]"#,
    );
    file.write(&text);
    t.signal(libc::SIGHUP);
    assert!(wait_until(Duration::from_secs(10), || metric(
        admin,
        "tether_config_reloads_total{result=\"ok\"}"
    ) == Some(1.0)));
    assert!(wait_until(Duration::from_secs(10), || call(3, "echo")
        ["error"]
        .is_object()));
    assert!(call(4, "exec_sql")["result"].is_object());
    // The counters of a rule that keeps its name go on.
    assert!(metric(
        admin,
        "tether_rule_matches_total{rule=\"no-destructive-tools\"}"
    )
    .is_some_and(|n| n >= 2.0));
}

#[test]
fn a_log_rule_counts_and_logs_without_the_request_s_secrets() {
    let origin = ok_origin();
    let file = config(
        &origin,
        r#"
[[rule]]
name = "audit-calls"
on = "request"
match = { mcp-method = "tools/call" }
action = "log"
"#,
    );
    let (t, admin) = start(&file);
    let r = exchange(
        t.addr,
        &post(
            "/mcp",
            "Authorization: Bearer very-secret-token\r\nContent-Type: application/json\r\n",
            &tools_call(1, "echo"),
        ),
    );
    assert_eq!(r.status, 200);
    assert!(t.wait_for_log("audit-calls", Duration::from_secs(5)));
    let log = t.log_lines().join("\n");
    assert!(!log.contains("very-secret-token"));
    assert_eq!(
        metric(admin, "tether_rule_matches_total{rule=\"audit-calls\"}"),
        Some(1.0)
    );
    assert_eq!(
        origin.requests().len(),
        1,
        "a log rule lets the request pass"
    );
}

#[test]
fn dot_segments_cannot_walk_past_a_rule_on_a_path() {
    let origin = ok_origin();
    let file = config(
        &origin,
        r#"
[[rule]]
on = "request"
match = { path-prefix = "/admin" }
action = "deny"
"#,
    );
    let (t, _admin) = start(&file);
    for path in [
        "/public/../admin/users",
        "/public/%2e%2e/admin/users",
        "/./admin",
    ] {
        let r = exchange(
            t.addr,
            format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes(),
        );
        assert_eq!(r.status, 400, "{path}: {r:?}");
    }
    assert_eq!(
        exchange(t.addr, b"GET /admin HTTP/1.1\r\nHost: t\r\n\r\n").status,
        403
    );
    assert!(origin.requests().is_empty());
}

#[test]
fn a_client_waiting_for_100_continue_gets_it_before_its_body_is_inspected() {
    let origin = ok_origin();
    let file = config(&origin, DENY_TOOLS);
    let (t, _admin) = start(&file);
    let body = tools_call(11, "exec_sql");
    let mut c = Client::connect(t.addr);
    c.send(
        format!(
            "POST /mcp HTTP/1.1\r\nHost: t\r\nAccept: {BOTH_FORMS}\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let interim = c.read_response(false).expect("an interim answer");
    assert_eq!(interim.status, 100);
    c.send(body.as_bytes()).unwrap();
    let r = c.read_response(false).expect("the answer");
    assert_eq!(json_of(&r)["error"]["message"], "tool not allowed");
    // Its body was read whole: the connection serves the next request.
    let next = c.get("/after");
    assert_eq!(next.status, 200);
    assert_eq!(origin.requests().len(), 1);
}

/// examples/interceptor.rs, built by `cargo test` beside the test binaries.
fn example_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/rules-HASH -> target/<profile>/examples/NAME
    let path = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        path.exists(),
        "{} is not built (cargo test builds examples)",
        path.display()
    );
    path
}

#[test]
fn a_program_s_own_interceptor_runs_after_the_file_s_rules() {
    let origin = ScriptedOrigin::start(|_| Reply::Sse {
        blocks: vec![
            "id: 1\ndata: hello\n\n".into(),
            "id: 2\ndata: card 4111 1111 1111 1111\n\n".into(),
            "id: 3\nevent: debug\ndata: internal\n\n".into(),
            "id: 4\ndata: bye\n\n".into(),
        ],
        hold: Some(Duration::from_secs(5)),
    });
    let file = config(&origin, EVENT_RULES);
    let args: Vec<String> = ["--config", &file.path(), "--workers", "1"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let t = Tether::start_program(&example_binary("interceptor"), &args, None)
        .unwrap_or_else(|log| panic!("the example did not start:\n{}", log.join("\n")));
    let mut feed = SseClient::open(t.addr, "/feeds/news", &[]);
    let (events, _) = feed.read_until(Duration::from_secs(10), |ev| ev.len() >= 2);
    let got: Vec<(Option<&str>, &str)> = events
        .iter()
        .map(|e| (e.id.as_deref(), e.data.split('\n').next().unwrap()))
        .collect();
    assert_eq!(got, vec![(Some("1"), "hello"), (Some("4"), "bye")]);
    assert!(events
        .iter()
        .all(|e| e.data.contains("\nseen-by-tether-ms: ")));
    // Other paths are not its business: the file's rules alone.
    let mut other = SseClient::open(t.addr, "/other", &[]);
    let (events, _) = other.read_until(Duration::from_secs(10), |ev| ev.len() >= 3);
    let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(data, vec!["hello", "card 4111 1111 1111 1111", "bye"]);
}

#[test]
fn data_contains_finds_its_bytes_in_the_data_only() {
    let origin = ScriptedOrigin::start(|_| Reply::Sse {
        blocks: vec![
            "id: 1\ndata: login ok, password=hunter2\n\n".into(),
            // The needle in a comment and in the event type is not in the data.
            ": password=hunter2\nid: 2\nevent: password=hunter2\ndata: nothing here\n\n".into(),
            "id: 3\ndata: pass\ndata: word=x\n\n".into(),
        ],
        hold: Some(Duration::from_secs(5)),
    });
    let file = config(
        &origin,
        r#"
[[rule]]
name = "passwords"
on = "event"
match = { data-contains = "password=hunter2" }
action = "redact"
replace = "password=***"
"#,
    );
    let (t, admin) = start(&file);
    let mut c = SseClient::open(t.addr, "/log", &[]);
    let (events, _) = c.read_until(Duration::from_secs(10), |ev| ev.len() >= 3);
    let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
    assert_eq!(
        data,
        vec!["login ok, password=***", "nothing here", "pass\nword=x"]
    );
    assert_eq!(
        metric(admin, "tether_rule_matches_total{rule=\"passwords\"}"),
        Some(1.0)
    );
}
