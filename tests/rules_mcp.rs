//! Interceptor rules in front of a real MCP server, driven by a real MCP client (the official
//! Python SDK on both sides, tests/common/mcp.rs): denied tool calls come back as JSON-RPC
//! errors and never reach the server, filtered tools are not listed, a secret in a tool's
//! result is redacted, with SSE answers and with JSON answers, for the 2025-11-25 and the
//! 2026-07-28 revisions; allowed calls work as without rules.

mod common;

use common::config_file::ConfigFile;
use common::mcp::*;
use common::Tether;
use serde_json::Value;

const RULES: &str = r#"
[[rule]]
name = "no-destructive-tools"
on = "request"
match = { method = "POST", mcp-method = "tools/call", mcp-tool = ["delete_*", "exec_sql"] }
action = "deny"
message = "tool not allowed"

[[rule]]
name = "hide-destructive-json"
on = "response"
match = { mcp-result-of = "tools/list" }
action = "filter-tools"
tools = ["delete_*", "exec_sql"]

[[rule]]
name = "hide-destructive-sse"
on = "event"
match = { mcp-result-of = "tools/list" }
action = "filter-tools"
tools = ["delete_*", "exec_sql"]

[[rule]]
name = "keys-sse"
on = "event"
match = { data-regex = 'sk-[A-Za-z0-9]{20,}' }
action = "redact"

[[rule]]
name = "keys-json"
on = "response"
match = { data-regex = 'sk-[A-Za-z0-9]{20,}' }
action = "redact"
"#;

const STEPS: &str = r#"[
    {"op":"list_tools"},
    {"op":"call_tool","name":"echo","args":{"text":"allowed"}},
    {"op":"call_tool","name":"delete_user","args":{"id":7}},
    {"op":"call_tool","name":"exec_sql","args":{"query":"drop table users"}},
    {"op":"call_tool","name":"leak_secret","args":{}},
    {"op":"call_tool","name":"get_weather","args":{"city":"Oslo"}}
]"#;

fn tether_with_rules(server: &McpServer) -> (Tether, ConfigFile) {
    let file = ConfigFile::new(&format!(
        "bind = \"127.0.0.1:0\"\nworkers = 2\n\n[[route]]\nname = \"mcp\"\nupstream = [\"{}\"]\n{RULES}",
        server.base_url()
    ));
    let args: Vec<String> = ["reverse", "--config", &file.path()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let t = Tether::start_args(&args)
        .unwrap_or_else(|log| panic!("tether did not start:\n{}", log.join("\n")));
    (t, file)
}

fn denied(step: &Value, name: &str) {
    assert_eq!(step["name"], name, "{step}");
    assert_eq!(step["error"]["message"], "tool not allowed", "{step}");
    assert!(
        step["error"]["code"].as_i64().is_some_and(|c| c < 0),
        "a JSON-RPC error code: {step}"
    );
}

/// Runs STEPS through tether with rules in front of a server started with `server_args`, the
/// client in `mode`, and checks every answer and what the server executed.
fn rules_hold(server_args: &[&str], client_args: &[&str]) {
    if !python_mcp_available() {
        return;
    }
    let server = McpServer::start(server_args);
    let (t, _file) = tether_with_rules(&server);
    let run = mcp_client_run(&t.url("/mcp"), STEPS, client_args);
    let steps = &run.steps;
    assert_eq!(steps.len(), 6, "{steps:?}");
    assert_eq!(
        steps[0],
        tools_listed(&["echo", "get_weather", "leak_secret", "count"]),
        "server stderr: {:?}",
        server.stderr_lines()
    );
    assert_eq!(steps[1], call_ok("echo", "allowed"));
    denied(&steps[2], "delete_user");
    denied(&steps[3], "exec_sql");
    assert_eq!(steps[4], call_ok("leak_secret", "the key is [REDACTED]"));
    assert_eq!(
        steps[5],
        call_ok("get_weather", "weather in Oslo: sunny, 21 C")
    );
    // The denied calls never reached the server.
    assert_eq!(
        server.call_lines(),
        vec![
            r#"echo {"text":"allowed"}"#.to_string(),
            "leak_secret {}".to_string(),
            r#"get_weather {"city":"Oslo"}"#.to_string(),
        ]
    );
    let log = t.log_lines().join("\n");
    assert!(!log.contains(SECRET), "the secret reached the log:\n{log}");
}

#[test]
fn rules_hold_for_an_sdk_client_with_sse_answers() {
    rules_hold(&[], &[]);
}

#[test]
fn rules_hold_for_an_sdk_client_with_json_answers() {
    rules_hold(&["--json-response"], &[]);
}

#[test]
fn rules_hold_for_a_2026_07_28_client() {
    rules_hold(&[], &["--mode", "2026-07-28"]);
}
