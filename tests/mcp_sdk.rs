//! A real MCP peer on both sides of tether: the official Python SDK (PyPI `mcp`, installed by
//! scripts/test.sh into tests/python/.venv) as server behind tether and as client in front of it,
//! over Streamable HTTP. Tools are listed and called with SSE and with JSON answers, a tool's
//! progress and log notifications stream through event by event, and a session's
//! `Mcp-Session-Id` flows through untouched in both directions.

mod common;

use std::time::Duration;

use common::mcp::*;
use common::*;
use serde_json::{json, Value};

/// The content types of the POST answers that carried a request (202s for notifications left
/// out), in order.
fn post_answer_types(run: &ClientRun) -> Vec<String> {
    run.http
        .iter()
        .filter(|h| h["method"] == "POST" && h["status"] == 200)
        .map(|h| h["content_type"].as_str().unwrap_or("").to_string())
        .collect()
}

const LIST_ECHO_WEATHER: &str = r#"[
    {"op":"list_tools"},
    {"op":"call_tool","name":"echo","args":{"text":"hi through tether"}},
    {"op":"call_tool","name":"get_weather","args":{"city":"Paris"}}
]"#;

/// Lists the tools and calls echo and get_weather through tether in front of a server started
/// with `server_args`; returns the client's run for checks of the answers' framing.
fn list_and_call_through_tether(server_args: &[&str]) -> ClientRun {
    let server = McpServer::start(server_args);
    let t = Tether::start(&[server.base_url()], &[]);
    let run = mcp_client_run(&t.url("/mcp"), LIST_ECHO_WEATHER, &[]);
    assert_eq!(
        run.steps,
        vec![
            tools_listed(&TOOLS),
            call_ok("echo", "hi through tether"),
            call_ok("get_weather", "weather in Paris: sunny, 21 C"),
        ],
        "server stderr: {:?}",
        server.stderr_lines()
    );
    assert_eq!(
        server.call_lines(),
        vec![
            r#"echo {"text":"hi through tether"}"#,
            r#"get_weather {"city":"Paris"}"#
        ]
    );
    run
}

#[test]
fn tools_list_and_calls_pass_through_with_sse_answers() {
    if !python_mcp_available() {
        return;
    }
    let run = list_and_call_through_tether(&[]);
    // initialize, tools/list, and the two calls: each answered with a stream.
    assert_eq!(
        post_answer_types(&run),
        vec!["text/event-stream"; 4],
        "{:?}",
        run.http
    );
}

#[test]
fn tools_list_and_calls_pass_through_with_json_answers() {
    if !python_mcp_available() {
        return;
    }
    let run = list_and_call_through_tether(&["--json-response"]);
    assert_eq!(
        post_answer_types(&run),
        vec!["application/json"; 4],
        "{:?}",
        run.http
    );
}

#[test]
fn a_tools_progress_and_log_notifications_stream_through_before_its_result() {
    if !python_mcp_available() {
        return;
    }
    let server = McpServer::start(&[]);
    let t = Tether::start(&[server.base_url()], &[]);
    let steps = mcp_client(
        &t.url("/mcp"),
        r#"[{"op":"call_tool","name":"count","args":{"n":5}}]"#,
    );
    assert_eq!(
        steps,
        vec![json!({
            "op": "call_tool", "name": "count", "text": "counted 5", "isError": false,
            "progress": [1.0, 2.0, 3.0, 4.0, 5.0],
            "logs": ["count 1", "count 2", "count 3", "count 4", "count 5"],
        })]
    );
    assert_eq!(server.call_lines(), vec![r#"count {"n":5}"#]);
}

/// The raw bytes of the same call: each notification is its own SSE event and reaches the
/// client as it is sent (the server spaces them 20 ms apart), not all at once with the result.
#[test]
fn count_events_arrive_one_by_one_on_the_posts_stream() {
    if !python_mcp_available() {
        return;
    }
    let server = McpServer::start(&[]);
    let t = Tether::start(&[server.base_url()], &[]);

    let (init, _) = send_raw(t.addr, &mcp_post(&initialize_body(), None));
    assert_eq!(init.status, 200, "{}", init.text());
    let session = init
        .header("mcp-session-id")
        .expect("initialize answered without Mcp-Session-Id")
        .to_string();
    let (ack, _) = send_raw(t.addr, &mcp_post(&initialized_body(), Some(&session)));
    assert_eq!(ack.status, 202, "{}", ack.text());

    let call = tools_call_body(7, "count", json!({"n": 5}));
    let mut reader = SseReader::open(t.addr, &mcp_post(&call, Some(&session)));
    assert_eq!(reader.head.status, 200);
    assert_eq!(
        reader.head.header("content-type"),
        Some("text/event-stream")
    );
    let events = reader.events_to_end();
    let messages: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str(e.data.as_deref().unwrap()).expect("event data is JSON"))
        .collect();
    let progress: Vec<f64> = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| {
            assert_eq!(m["params"]["progressToken"], 7);
            m["params"]["progress"].as_f64().unwrap()
        })
        .collect();
    assert_eq!(progress, vec![1.0, 2.0, 3.0, 4.0, 5.0], "{messages:?}");
    let logs: Vec<&str> = messages
        .iter()
        .filter(|m| m["method"] == "notifications/message")
        .map(|m| m["params"]["data"].as_str().unwrap())
        .collect();
    assert_eq!(
        logs,
        ["count 1", "count 2", "count 3", "count 4", "count 5"]
    );
    let last = messages.last().unwrap();
    assert_eq!(last["id"], 7, "the result comes last: {messages:?}");
    assert_eq!(last["result"]["content"][0]["text"], "counted 5");
    assert_eq!(messages.len(), 11, "{messages:?}");
    // 80 ms of the server's sleeps lie between the first notification and the result.
    let spread = events.last().unwrap().at - events[0].at;
    assert!(
        spread >= Duration::from_millis(50),
        "the events arrived together ({spread:?} apart): held back until the result"
    );
}

#[test]
fn a_sessions_id_flows_through_untouched_across_calls() {
    if !python_mcp_available() {
        return;
    }
    let server = McpServer::start(&[]);
    let t = Tether::start(&[server.base_url()], &[]);
    let steps = r#"[
        {"op":"call_tool","name":"echo","args":{"text":"one"}},
        {"op":"call_tool","name":"leak_secret"},
        {"op":"list_tools"},
        {"op":"call_tool","name":"delete_user","args":{"id":42}},
        {"op":"call_tool","name":"exec_sql","args":{"query":"select 1"}}
    ]"#;
    let run = mcp_client_run(&t.url("/mcp"), steps, &[]);
    assert_eq!(
        run.steps,
        vec![
            call_ok("echo", "one"),
            call_ok("leak_secret", &format!("the key is {SECRET}")),
            tools_listed(&TOOLS),
            call_ok("delete_user", "deleted user 42"),
            call_ok("exec_sql", "executed: select 1"),
        ]
    );
    assert_eq!(run.protocol_version, "2025-11-25");
    let session = run
        .session_id
        .clone()
        .expect("the server assigned a session");
    // The first POST (initialize) goes without an id and gets one; every later exchange
    // (POSTs, the SDK's GET stream, the closing DELETE) carries it and gets it back.
    assert_eq!(run.http[0]["session_sent"], Value::Null, "{:?}", run.http);
    for h in &run.http {
        assert_eq!(h["session_received"], session.as_str(), "{h}");
    }
    for h in &run.http[1..] {
        assert_eq!(h["session_sent"], session.as_str(), "{h}");
    }
    let methods: Vec<&str> = run
        .http
        .iter()
        .map(|h| h["method"].as_str().unwrap())
        .collect();
    assert!(methods.contains(&"GET"), "no GET stream: {methods:?}");
    assert_eq!(methods.last(), Some(&"DELETE"), "{methods:?}");
    // The server saw the same id on every call.
    let calls = server.calls();
    assert_eq!(calls.len(), 4, "{calls:?}");
    for c in &calls {
        assert_eq!(c["session"], session.as_str(), "{c}");
    }

    // A second client gets a session of its own.
    let other = mcp_client_run(&t.url("/mcp"), r#"[{"op":"list_tools"}]"#, &[]);
    let other_session = other.session_id.expect("a second session");
    assert_ne!(other_session, session);

    // An id the server never issued reaches it as sent: 404, the session is unknown.
    let (r, _) = send_raw(
        t.addr,
        &mcp_post(
            &tools_call_body(2, "echo", json!({"text": "x"})),
            Some("no-such-session"),
        ),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(server.calls().len(), 4);
}

#[test]
fn a_2026_07_28_client_calls_tools_through_tether_without_a_session() {
    if !python_mcp_available() {
        return;
    }
    let server = McpServer::start(&[]);
    let t = Tether::start(&[server.base_url()], &[]);
    let run = mcp_client_run(
        &t.url("/mcp"),
        r#"[{"op":"call_tool","name":"echo","args":{"text":"modern"}}]"#,
        &["--mode", "2026-07-28"],
    );
    assert_eq!(run.steps, vec![call_ok("echo", "modern")]);
    assert_eq!(run.protocol_version, "2026-07-28");
    assert_eq!(run.session_id, None, "{:?}", run.http);
    assert!(
        run.http.iter().all(|h| h["method"] == "POST"),
        "{:?}",
        run.http
    );
    assert_eq!(server.call_lines(), vec![r#"echo {"text":"modern"}"#]);
}

#[test]
fn a_stateless_server_answers_through_tether_without_session_ids() {
    if !python_mcp_available() {
        return;
    }
    let server = McpServer::start(&["--stateless"]);
    let t = Tether::start(&[server.base_url()], &[]);
    let run = mcp_client_run(&t.url("/mcp"), LIST_ECHO_WEATHER, &[]);
    assert_eq!(
        run.steps,
        vec![
            tools_listed(&TOOLS),
            call_ok("echo", "hi through tether"),
            call_ok("get_weather", "weather in Paris: sunny, 21 C"),
        ]
    );
    assert_eq!(run.session_id, None, "{:?}", run.http);
    assert!(
        server.calls().iter().all(|c| c["session"].is_null()),
        "{:?}",
        server.calls()
    );
}
