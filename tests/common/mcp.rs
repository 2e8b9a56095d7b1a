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
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::tls_origin::{LeafFiles, TestCa};
use super::{send_raw, Response, SseReader, Tether, WaitTimeout};

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
pub fn temp_path(what: &str) -> PathBuf {
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
    /// Where it appends one JSON line per HTTP request it receives (`--requests-log`).
    requests_log: PathBuf,
    /// Where it appends disconnects and cancellations (`--cancel-log`).
    cancel_log: PathBuf,
    /// The arguments it was started with (besides the port and the logs), for [`McpServer::restart`].
    args: Vec<String>,
    /// Its stderr lines (uvicorn's warnings, tracebacks), for assertion messages.
    stderr: Arc<Mutex<Vec<String>>>,
}

impl McpServer {
    /// Starts the server with `args` (any of `--json-response`, `--stateless`, `--name NAME`,
    /// `--event-store`, `--event-store-file FILE`, `--retry-ms MS`, `--slow-count`), on a port the
    /// kernel picks, with fresh calls, requests and cancel logs; waits for its `listening PORT`
    /// line.
    pub fn start(args: &[&str]) -> McpServer {
        let calls_log = temp_path("mcp-calls");
        let requests_log = temp_path("mcp-requests");
        let cancel_log = temp_path("mcp-cancel");
        for f in [&calls_log, &requests_log, &cancel_log] {
            let _ = std::fs::remove_file(f);
        }
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let (child, port, stderr) = Self::spawn(0, &calls_log, &requests_log, &cancel_log, &args)
            .unwrap_or_else(|e| panic!("{e}"));
        McpServer {
            child,
            port,
            calls_log,
            requests_log,
            cancel_log,
            args,
            stderr,
        }
    }

    /// As [`McpServer::start`] with `--name name` first: a replica whose log lines say `name`.
    pub fn start_named(name: &str, args: &[&str]) -> McpServer {
        let mut all = vec!["--name", name];
        all.extend_from_slice(args);
        McpServer::start(&all)
    }

    /// Spawns mcp_server.py on `port` and waits for its `listening` line; Err carries its stderr.
    #[allow(clippy::type_complexity)]
    fn spawn(
        port: u16,
        calls_log: &PathBuf,
        requests_log: &PathBuf,
        cancel_log: &PathBuf,
        args: &[String],
    ) -> Result<(Child, u16, Arc<Mutex<Vec<String>>>), String> {
        let mut child = Command::new(venv_python())
            .arg(python_dir().join("mcp_server.py"))
            .args(["--port", &port.to_string(), "--calls-log"])
            .arg(calls_log)
            .arg("--requests-log")
            .arg(requests_log)
            .arg("--cancel-log")
            .arg(cancel_log)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tests/python/.venv/bin/python mcp_server.py");
        match listening_port(&mut child, SERVER_START_LIMIT) {
            (Some(port), stderr) => Ok((child, port, stderr)),
            (None, stderr) => Err(format!(
                "mcp_server.py did not start:\n{}",
                stderr.lock().unwrap().join("\n")
            )),
        }
    }

    /// Kills the server (SIGKILL: no goodbye on its connections, as a crash) and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts it again on the same port with the same arguments and the same logs (appended to:
    /// compare lengths before and after); kills it first if it still runs. The port is bound
    /// with SO_REUSEADDR; a bind that fails (another process took the port meanwhile) is retried
    /// for up to 2 s, then this panics with the server's stderr.
    pub fn restart(&mut self) {
        self.kill();
        let stop = Instant::now() + Duration::from_secs(2);
        loop {
            match Self::spawn(
                self.port,
                &self.calls_log,
                &self.requests_log,
                &self.cancel_log,
                &self.args,
            ) {
                Ok((child, port, stderr)) => {
                    assert_eq!(port, self.port);
                    self.child = child;
                    self.stderr = stderr;
                    return;
                }
                Err(e) if Instant::now() >= stop => panic!("restart on port {}: {e}", self.port),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
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

    /// Every HTTP request the server received so far (across restarts), in order, each
    /// `{"method","path","session","last_event_id","protocol_version","replica","mono_ms",
    /// "wall_ms"}` (session: the Mcp-Session-Id it got, or null). Written before the SDK sees
    /// the request, so refused ones (404 …) are there too.
    pub fn requests(&self) -> Vec<Value> {
        read_json_lines(&self.requests_log)
    }

    /// Its cancel log: `{"event":"disconnect",...}` when uvicorn reported a request's client
    /// connection gone before the response completed (every mode), `{"event":"cancelled",
    /// "sent":K,...}` when a slow_count call was cancelled (the SDK does that on disconnect only
    /// on the 2026-07-28 wire), `{"event":"finished","sent":K,...}` when a slow_count call ran to
    /// its end (just before it returns its result). Timestamps `mono_ms` (CLOCK_MONOTONIC,
    /// compare with [`monotonic_ms`]) and `wall_ms`.
    pub fn cancel_events(&self) -> Vec<Value> {
        read_json_lines(&self.cancel_log)
    }

    /// Waits up to `limit` for a cancel-log line with `"event": event`; returns the first.
    pub fn wait_cancel_event(&self, event: &str, limit: Duration) -> Option<Value> {
        let stop = Instant::now() + limit;
        loop {
            if let Some(e) = self
                .cancel_events()
                .into_iter()
                .find(|e| e["event"] == event)
            {
                return Some(e);
            }
            if Instant::now() >= stop {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The distinct non-null `Mcp-Session-Id`s its requests carried, in first-seen order.
    pub fn sessions_seen(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in self.requests() {
            if let Some(s) = r["session"].as_str() {
                if !out.iter().any(|o| o == s) {
                    out.push(s.to_string());
                }
            }
        }
        out
    }
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for f in [&self.calls_log, &self.requests_log, &self.cancel_log] {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// The JSON lines of `path` (none when it does not exist yet); a partial last line (a writer
/// mid-write) is left out.
fn read_json_lines(path: &PathBuf) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(i) => &text[..i],
        None => "",
    };
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{path:?}: {l:?}: {e}")))
        .collect()
}

/// CLOCK_MONOTONIC now, in milliseconds: the clock of the server's `mono_ms` fields.
pub fn monotonic_ms() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as f64 * 1000.0 + ts.tv_nsec as f64 / 1e6
}

/// Two named test servers, "a" and "b", started with the same `args`: the replicas of one MCP
/// service behind tether.
pub struct McpReplicas {
    pub a: McpServer,
    pub b: McpServer,
}

impl McpReplicas {
    /// Starts replicas "a" and "b" (in parallel: the SDK's import takes a while) with `args`.
    pub fn start(args: &[&str]) -> McpReplicas {
        let owned: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let b = std::thread::spawn(move || {
            let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
            McpServer::start_named("b", &refs)
        });
        let a = McpServer::start_named("a", args);
        let b = b.join().expect("replica b started");
        McpReplicas { a, b }
    }

    /// Both base URLs, a first: tether's `--upstream`s.
    pub fn upstreams(&self) -> Vec<String> {
        vec![self.a.base_url(), self.b.base_url()]
    }

    /// The replica called `name` ("a" or "b").
    pub fn by_name(&self, name: &str) -> &McpServer {
        match name {
            "a" => &self.a,
            "b" => &self.b,
            _ => panic!("no replica {name:?}"),
        }
    }

    /// The replica called `name`, mutably (to restart it).
    pub fn by_name_mut(&mut self, name: &str) -> &mut McpServer {
        match name {
            "a" => &mut self.a,
            "b" => &mut self.b,
            _ => panic!("no replica {name:?}"),
        }
    }

    /// How many requests each replica received so far: (a, b).
    pub fn request_counts(&self) -> (usize, usize) {
        (self.a.requests().len(), self.b.requests().len())
    }

    /// The name of the one replica whose requests carried `upstream_session` (panics when none
    /// or both did).
    pub fn owner_of(&self, upstream_session: &str) -> &'static str {
        let has = |s: &McpServer| {
            s.requests()
                .iter()
                .any(|r| r["session"] == upstream_session)
        };
        match (has(&self.a), has(&self.b)) {
            (true, false) => "a",
            (false, true) => "b",
            other => panic!("session {upstream_session:?} seen by (a, b) = {other:?}"),
        }
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
    /// Every HTTP exchange: `{"method","status","content_type","session_sent","session_received",
    /// "last_event_id","http_version"}`.
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
    let raw = mcp_client_process(url, steps, extra);
    let (stdout, stderr) = (&raw.stdout, &raw.stderr);
    let ok = raw.status.is_some_and(|s| s.success());
    assert!(
        ok,
        "mcp_client.py failed ({:?} after {:?}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        raw.status, raw.elapsed
    );
    let mut lines = raw.lines();
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

/// One finished run of tests/python/mcp_client.py, however it ended (a `call_tool_and_die` step
/// ends it with SIGKILL).
#[derive(Debug)]
pub struct ClientProcess {
    /// Its exit status (None: it could not be waited for).
    pub status: Option<std::process::ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    /// How long it ran.
    pub elapsed: Duration,
}

impl ClientProcess {
    /// Its stdout's JSON lines, in order.
    pub fn lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("client printed {l:?}: {e}"))
            })
            .collect()
    }

    /// The signal that ended it, if one did.
    pub fn signal(&self) -> Option<i32> {
        use std::os::unix::process::ExitStatusExt;
        self.status.and_then(|s| s.signal())
    }
}

/// Runs tests/python/mcp_client.py against `url` with `steps` and `extra` arguments, as
/// [`mcp_client_run`] does, and returns how it ended and what it printed without judging it
/// (killed [`CLIENT_GRACE`] past its `--timeout`).
pub fn mcp_client_process(url: &str, steps: &str, extra: &[&str]) -> ClientProcess {
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
    ClientProcess {
        status,
        stdout,
        stderr,
        elapsed: started.elapsed(),
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

/// A raw `POST /mcp` as [`mcp_post`], with `headers` added (identity headers such as
/// `("Authorization", "Bearer alice")`, `("Cookie", "sid=1")`).
pub fn mcp_post_with(body: &str, session: Option<&str>, headers: &[(&str, &str)]) -> Vec<u8> {
    let raw = mcp_post(body, session);
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 2;
    let mut out = raw[..head_end].to_vec();
    for (n, v) in headers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(&raw[head_end..]);
    out
}

/// Sends one JSON-RPC POST to `addr` over a fresh socket (no SDK involved), with
/// `Mcp-Session-Id: session` when given and `headers`, and reads the whole answer: status,
/// headers and body (an SSE answer is read to its end).
pub fn mcp_raw_post(
    addr: SocketAddr,
    body: &str,
    session: Option<&str>,
    headers: &[(&str, &str)],
) -> Response {
    send_raw(addr, &mcp_post_with(body, session, headers)).0
}

/// The JSON-RPC messages of an answer: its body when it is JSON, the data of each event when
/// it is an SSE stream (events without data, such as the priming event, left out).
pub fn rpc_messages(r: &Response) -> Vec<Value> {
    let sse = r
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/event-stream"));
    if !sse {
        if r.body.is_empty() {
            return Vec::new();
        }
        return vec![
            serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("body {:?}: {e}", r.text()))
        ];
    }
    SseReader::parse_body(&r.body)
        .iter()
        .filter_map(|e| e.data.as_deref())
        .filter(|d| !d.is_empty())
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("event data {d:?}: {e}")))
        .collect()
}

/// The raw initialize handshake with `headers` (identity): initialize, then
/// notifications/initialized with the id it got; returns that `Mcp-Session-Id` (the one the
/// client sees: tether's own when it seals ids). Panics unless initialize got 200 with an id and
/// the notification 202.
pub fn raw_initialize(addr: SocketAddr, headers: &[(&str, &str)]) -> String {
    let init = mcp_raw_post(addr, &initialize_body(), None, headers);
    assert_eq!(init.status, 200, "initialize: {}", init.text());
    let session = init
        .header("mcp-session-id")
        .unwrap_or_else(|| panic!("initialize answered without Mcp-Session-Id: {init:?}"))
        .to_string();
    let ack = mcp_raw_post(addr, &initialized_body(), Some(&session), headers);
    assert_eq!(ack.status, 202, "notifications/initialized: {}", ack.text());
    session
}

/// The text of the result of a tools/call answer (JSON or SSE) with `id`; panics when it has none.
pub fn raw_call_text(r: &Response, id: u64) -> String {
    let msgs = rpc_messages(r);
    let result = msgs
        .iter()
        .find(|m| m["id"] == id)
        .unwrap_or_else(|| panic!("no answer with id {id}: {msgs:?}"));
    result["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text result: {result}"))
        .to_string()
}

/// The protocol version without sessions.
pub const MODERN_PROTOCOL_VERSION: &str = "2026-07-28";

/// A raw 2026-07-28 `POST /mcp` for a tools/call of `name` with `args` and JSON-RPC id `id`
/// (progress token `id`): no session, the `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name`
/// headers, and the `_meta` envelope keys the SDK server requires on this wire
/// (`io.modelcontextprotocol/protocolVersion`, `io.modelcontextprotocol/clientCapabilities`;
/// without them it answers 400 -32602).
pub fn modern_tools_call(id: u64, name: &str, args: Value) -> Vec<u8> {
    let body = serde_json::json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {
            "name": name, "arguments": args,
            "_meta": {
                "progressToken": id,
                "io.modelcontextprotocol/protocolVersion": MODERN_PROTOCOL_VERSION,
                "io.modelcontextprotocol/clientCapabilities": {},
            },
        },
    })
    .to_string();
    format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: {MODERN_PROTOCOL_VERSION}\r\n\
         Mcp-Method: tools/call\r\nMcp-Name: {name}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Collects a spawned server's stderr lines (in the background, for failure messages) and waits
/// up to `limit` for the `listening PORT` line its stdout prints once bound. None: it did not
/// print one in time (the child has been killed). Both test servers (Python and TypeScript) speak
/// this way.
pub fn listening_port(
    child: &mut Child,
    limit: Duration,
) -> (Option<u16>, Arc<Mutex<Vec<String>>>) {
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
    match rx.recv_timeout(limit) {
        Ok(Ok(port)) => (Some(port), stderr),
        _ => {
            let _ = child.wait_timeout_or_kill(Duration::from_secs(2));
            std::thread::sleep(Duration::from_millis(100));
            (None, stderr)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The SDK client over HTTP/2 (issue 15: every feature works the same over an h2 stream).
// ---------------------------------------------------------------------------------------------

/// How the SDK client reaches tether: the parameter that runs one scenario over either protocol.
pub enum Wire {
    /// Plain HTTP/1.1 on tether's plain listener.
    Http1,
    /// HTTP/2 over TLS: tether serves `--tls-cert/--tls-key` (a leaf for 127.0.0.1 and localhost
    /// signed by a private CA) and the client offers only h2 in ALPN (`--http2-ca`), trusts that
    /// CA and exits with status 3 if any answer comes over another protocol.
    Http2(Box<H2Tls>),
}

/// The certificates of [`Wire::Http2`].
pub struct H2Tls {
    /// The private CA the client trusts.
    pub ca: TestCa,
    /// tether's certificate (the leaf, then the CA) and key.
    pub leaf: LeafFiles,
}

impl Wire {
    /// HTTP/2 over TLS with a fresh CA and leaf (files removed on drop).
    pub fn http2() -> Wire {
        let ca = TestCa::new("tether MCP h2 test CA");
        let leaf = ca.leaf_files(&["127.0.0.1", "localhost"]);
        Wire::Http2(Box::new(H2Tls { ca, leaf }))
    }

    /// The HTTP version every exchange of the client must report (httpx's spelling).
    pub fn http_version(&self) -> &'static str {
        match self {
            Wire::Http1 => "HTTP/1.1",
            Wire::Http2(_) => "HTTP/2",
        }
    }

    /// tether's flags for this wire (none for HTTP/1.1).
    pub fn tether_args(&self) -> Vec<&str> {
        match self {
            Wire::Http1 => vec![],
            Wire::Http2(tls) => vec!["--tls-cert", tls.leaf.cert(), "--tls-key", tls.leaf.key()],
        }
    }

    /// tether in front of `upstreams` with `flags` and this wire's.
    pub fn tether(&self, upstreams: &[String], flags: &[&str]) -> Tether {
        let mut all = flags.to_vec();
        all.extend(self.tether_args());
        Tether::start(upstreams, &all)
    }

    /// The MCP endpoint of `t` for the client: `http://ADDR/mcp` or `https://ADDR/mcp`.
    pub fn url(&self, t: &Tether) -> String {
        match self {
            Wire::Http1 => t.url("/mcp"),
            Wire::Http2(_) => format!("https://{}/mcp", t.addr),
        }
    }

    /// The client's flags for this wire, then `extra`.
    pub fn client_args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut all = match self {
            Wire::Http1 => vec![],
            Wire::Http2(tls) => vec!["--http2-ca", tls.ca.pem_path.to_str().unwrap()],
        };
        all.extend_from_slice(extra);
        all
    }

    /// [`mcp_client_run`] through `t` on this wire; panics unless every exchange reports this
    /// wire's HTTP version.
    pub fn client_run(&self, t: &Tether, steps: &str, extra: &[&str]) -> ClientRun {
        let run = mcp_client_run(&self.url(t), steps, &self.client_args(extra));
        self.assert_exchanges(&run.http);
        run
    }

    /// [`mcp_client_process`] through `t` on this wire (for a client that kills itself; check
    /// what it printed with [`Wire::assert_exchanges`] where it has an HTTP log).
    pub fn client_process(&self, t: &Tether, steps: &str, extra: &[&str]) -> ClientProcess {
        mcp_client_process(&self.url(t), steps, &self.client_args(extra))
    }

    /// Panics unless there are exchanges and each reports this wire's HTTP version.
    pub fn assert_exchanges(&self, http: &[Value]) {
        assert!(!http.is_empty(), "no HTTP exchange");
        for h in http {
            assert_eq!(h["http_version"], self.http_version(), "{http:?}");
        }
    }
}
