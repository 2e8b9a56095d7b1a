//! A real MCP peer for the tests: the official Python SDK (PyPI `mcp`, pinned in
//! tests/python/requirements.txt, installed into tests/python/.venv by scripts/mcp-venv.sh, which
//! scripts/test.sh runs) as server ([`McpServer`], tests/python/mcp_server.py) and as client
//! ([`mcp_client`], tests/python/mcp_client.py), plus raw request builders for tests that talk
//! Streamable HTTP over a socket themselves. Every wait is bounded and every child is killed on
//! drop.
//!
//! What the SDK does (mcp 2.3.0), for tests of rules that deny, hide or redact:
//! - An unknown tool or bad arguments are not JSON-RPC errors: the server answers a result with
//!   `isError: true` and the reason as text (and the calls log has no line for them).
//! - A tools/call answered with a JSON-RPC error (as JSON or as one SSE event) becomes a step
//!   `{"error": {"code": <its code>, "message": <its message>, "type": "MCPError"}}`; answered
//!   with an HTTP error status (403 …), `{"code": -32603, "message": "Server returned an error
//!   response"}` (the body is lost). Either way the session lives on and later steps run.
//! - In legacy mode the client opens the GET stream after initializing and ends with a DELETE;
//!   with `--json-response` a tool's progress and log notifications never reach the client.
//! - In 2026-07-28 mode log notifications need a per-request opt-in the client does not send.
//!
//! A test begins with `if !python_mcp_available() { return; }`: without the venv it skips loudly,
//! or fails when TETHER_REQUIRE_PYTHON_MCP is set (scripts/test.sh sets it).

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::WaitTimeout;

/// The fake API key `leak_secret` returns, inside "the key is sk-…": "sk-" and 24 alphanumerics.
pub const SECRET: &str = "sk-TETHERtest0123456789abcd";

/// Every tool of the test server, in the order its tools/list answers them.
pub const TOOLS: [&str; 6] = [
    "echo",
    "delete_user",
    "exec_sql",
    "get_weather",
    "leak_secret",
    "count",
];

/// How long the server may take to print its `listening PORT` line (Python imports the SDK
/// first: about 0.5 s idle, several seconds on a loaded 2-core runner). Past this: panic with
/// its stderr.
pub const SERVER_START_LIMIT: Duration = Duration::from_secs(20);

/// The client's default `--timeout` for a whole script, in seconds; the Rust side kills it
/// [`CLIENT_GRACE`] later still, so a wedged interpreter cannot hang a test.
pub const CLIENT_TIMEOUT_SECS: u64 = 20;

/// How long past its own `--timeout` the client may run before it is killed.
pub const CLIENT_GRACE: Duration = Duration::from_secs(10);

/// tests/python.
pub fn python_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python")
}

/// The venv's interpreter, tests/python/.venv/bin/python.
pub fn venv_python() -> PathBuf {
    python_dir().join(".venv/bin/python")
}

/// Whether the SDK's venv is installed. When it is not: panics if TETHER_REQUIRE_PYTHON_MCP is
/// set (scripts/test.sh, so CI can never skip), else prints a loud line and returns false.
pub fn python_mcp_available() -> bool {
    if venv_python().exists() {
        return true;
    }
    assert!(
        std::env::var("TETHER_REQUIRE_PYTHON_MCP").is_err(),
        "tests/python/.venv is missing: run `bash scripts/mcp-venv.sh`"
    );
    eprintln!("skipped: the Python MCP SDK is not installed (run `bash scripts/mcp-venv.sh`; scripts/test.sh does)");
    false
}

/// A temporary file path unique to this process and call (removed by its owner).
fn temp_path(what: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "tether-{what}-{}-{}.log",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A running tests/python/mcp_server.py on 127.0.0.1 (killed on drop).
pub struct McpServer {
    child: Child,
    /// The port it printed, the one its socket is bound to.
    pub port: u16,
    /// Where it appends one JSON line per executed tools/call.
    calls_log: PathBuf,
    /// Its stderr lines (uvicorn's warnings, tracebacks), for assertion messages.
    stderr: Arc<Mutex<Vec<String>>>,
}

impl McpServer {
    /// Starts the server with `args` (any of `--json-response`, `--stateless`), on a port the
    /// kernel picks, with a fresh calls log; waits for its `listening PORT` line.
    pub fn start(args: &[&str]) -> McpServer {
        let calls_log = temp_path("mcp-calls");
        let _ = std::fs::remove_file(&calls_log);
        let mut child = Command::new(venv_python())
            .arg(python_dir().join("mcp_server.py"))
            .args(["--port", "0", "--calls-log"])
            .arg(&calls_log)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tests/python/.venv/bin/python mcp_server.py");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = stderr.clone();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = line.strip_prefix("listening ") {
                    let _ = tx.send(port.trim().parse::<u16>());
                }
            }
        });
        match rx.recv_timeout(SERVER_START_LIMIT) {
            Ok(Ok(port)) => McpServer {
                child,
                port,
                calls_log,
                stderr,
            },
            other => {
                let _ = child.wait_timeout_or_kill(Duration::from_secs(2));
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "mcp_server.py did not start ({other:?}):\n{}",
                    stderr.lock().unwrap().join("\n")
                );
            }
        }
    }

    /// `http://127.0.0.1:PORT`: what tether takes as `--upstream`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT/mcp`: the MCP endpoint, for a client talking to it directly.
    pub fn url(&self) -> String {
        format!("{}/mcp", self.base_url())
    }

    /// The tools/call requests the server executed so far, in order, each
    /// `{"name": .., "args": {..}, "session": "<Mcp-Session-Id>" or null}`.
    pub fn calls(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.calls_log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("calls log {l:?}: {e}")))
            .collect()
    }

    /// The calls as `name args-json` strings (args with sorted keys), e.g.
    /// `echo {"text":"hi"}`: handy for `assert_eq!` against a literal list.
    pub fn call_lines(&self) -> Vec<String> {
        self.calls()
            .iter()
            .map(|c| format!("{} {}", c["name"].as_str().unwrap_or("?"), c["args"]))
            .collect()
    }

    /// Its stderr so far (for assertion messages).
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.calls_log);
    }
}

/// What one run of tests/python/mcp_client.py printed.
#[derive(Debug, Clone)]
pub struct ClientRun {
    /// One result per step, in order (see tests/python/mcp_client.py for their shapes).
    pub steps: Vec<Value>,
    /// The negotiated protocol version ("2025-11-25" in legacy mode, "2026-07-28" in modern).
    pub protocol_version: String,
    /// The `Mcp-Session-Id` the server assigned (None when stateless or modern).
    pub session_id: Option<String>,
    /// Every HTTP exchange: `{"method","status","content_type","session_sent","session_received"}`.
    pub http: Vec<Value>,
}

/// Runs the SDK client against `url` (e.g. `tether.url("/mcp")`) with `steps`, a JSON array such
/// as `[{"op":"list_tools"},{"op":"call_tool","name":"echo","args":{"text":"hi"}}]`, in legacy
/// mode (initialize handshake); returns one result per step. Panics with the client's stderr
/// when it could not connect or ran out of time.
pub fn mcp_client(url: &str, steps: &str) -> Vec<Value> {
    mcp_client_run(url, steps, &[]).steps
}

/// As [`mcp_client`], with extra client arguments (`--mode auto`, `--mode 2026-07-28`,
/// `--timeout 5`), returning everything the client reported.
pub fn mcp_client_run(url: &str, steps: &str, extra: &[&str]) -> ClientRun {
    let timeout = extra
        .iter()
        .position(|a| *a == "--timeout")
        .and_then(|i| extra.get(i + 1))
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(CLIENT_TIMEOUT_SECS as f64);
    let mut child = Command::new(venv_python())
        .arg(python_dir().join("mcp_client.py"))
        .args(["--url", url, "--steps", steps])
        .args(["--timeout", &CLIENT_TIMEOUT_SECS.to_string()])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tests/python/.venv/bin/python mcp_client.py");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let limit = Duration::from_secs_f64(timeout) + CLIENT_GRACE;
    let started = Instant::now();
    let status = child.wait_timeout_or_kill(limit);
    let stdout = out_thread.join().unwrap_or_default();
    let stderr = err_thread.join().unwrap_or_default();
    let ok = status.is_some_and(|s| s.success());
    assert!(
        ok,
        "mcp_client.py failed ({status:?} after {:?}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        started.elapsed()
    );
    let mut lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("client printed {l:?}: {e}")))
        .collect();
    let end = match lines.pop() {
        Some(end) if end["op"] == "end" => end,
        _ => panic!("mcp_client.py printed no end line:\n{stdout}\nstderr:\n{stderr}"),
    };
    ClientRun {
        steps: lines,
        protocol_version: end["protocol_version"].as_str().unwrap_or("").to_string(),
        session_id: end["session_id"].as_str().map(str::to_string),
        http: end["http"].as_array().cloned().unwrap_or_default(),
    }
}

/// The expected result line of a successful `call_tool` step without notifications.
pub fn call_ok(name: &str, text: &str) -> Value {
    serde_json::json!({
        "op": "call_tool", "name": name, "text": text, "isError": false,
        "progress": [], "logs": [],
    })
}

/// The expected result line of a `list_tools` step.
pub fn tools_listed(names: &[&str]) -> Value {
    serde_json::json!({ "op": "list_tools", "tools": names })
}

// ---------------------------------------------------------------------------------------------
// Raw Streamable HTTP, for tests that look at the bytes tether passes.
// ---------------------------------------------------------------------------------------------

/// The protocol version the raw requests speak (the newest with sessions).
pub const RAW_PROTOCOL_VERSION: &str = "2025-11-25";

/// A raw `POST /mcp` carrying the JSON-RPC message `body`, accepting JSON and SSE, with
/// `Mcp-Session-Id: session` when given (and then MCP-Protocol-Version, as a client must).
pub fn mcp_post(body: &str, session: Option<&str>) -> Vec<u8> {
    let mut req = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(s) = session {
        req.push_str(&format!(
            "Mcp-Session-Id: {s}\r\nMCP-Protocol-Version: {RAW_PROTOCOL_VERSION}\r\n"
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    req.into_bytes()
}

/// The JSON-RPC `initialize` request with id 1.
pub fn initialize_body() -> String {
    serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {
            "protocolVersion": RAW_PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "tether-raw-test", "version": "1"},
        },
    })
    .to_string()
}

/// The `notifications/initialized` notification that completes the handshake.
pub fn initialized_body() -> String {
    r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_string()
}

/// A JSON-RPC `tools/call` request with `id`, asking for progress with token `id` too.
pub fn tools_call_body(id: u64, name: &str, args: Value) -> String {
    serde_json::json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": name, "arguments": args, "_meta": {"progressToken": id}},
    })
    .to_string()
}
