//! A second real MCP peer: the official TypeScript SDK (`@modelcontextprotocol/sdk`, pinned in
//! tests/node/package.json, installed by `npm ci --prefix tests/node`, which scripts/test.sh runs)
//! as server ([`TsMcpServer`], tests/node/mcp_server.mjs) and client ([`ts_client`],
//! tests/node/mcp_client.mjs). Every wait is bounded and every child is killed on drop.
//!
//! A test begins with `if !node_mcp_available() { return; }`: without the package it skips
//! loudly, or fails when TETHER_REQUIRE_NODE is set (scripts/test.sh sets it), as
//! tests/node_eventsource.rs does.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::mcp::{listening_port, temp_path};
use super::WaitTimeout;

/// How long the server may take to print its `listening PORT` line.
pub const TS_SERVER_START_LIMIT: Duration = Duration::from_secs(20);

/// The client's own `--timeout`, in seconds; it is killed [`TS_CLIENT_GRACE`] later still.
pub const TS_CLIENT_TIMEOUT_SECS: u64 = 20;

/// How long past its own `--timeout` the client may run before it is killed.
pub const TS_CLIENT_GRACE: Duration = Duration::from_secs(10);

/// tests/node.
pub fn node_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/node")
}

/// Whether the TypeScript SDK is installed under tests/node/node_modules. When it is not: panics
/// if TETHER_REQUIRE_NODE is set (scripts/test.sh, so CI can never skip), else prints a loud line
/// and returns false.
pub fn node_mcp_available() -> bool {
    let m = node_dir().join("node_modules");
    if m.join("@modelcontextprotocol/sdk").exists() && m.join("zod").exists() {
        return true;
    }
    assert!(
        std::env::var("TETHER_REQUIRE_NODE").is_err(),
        "tests/node/node_modules lacks @modelcontextprotocol/sdk: run `npm ci --prefix tests/node`"
    );
    eprintln!(
        "skipped: the TypeScript MCP SDK is not installed (run `npm ci --prefix tests/node`; \
         scripts/test.sh does)"
    );
    false
}

/// A running tests/node/mcp_server.mjs on 127.0.0.1 (killed on drop, its log removed).
pub struct TsMcpServer {
    child: Child,
    /// The port it printed.
    pub port: u16,
    /// Its replica name (in every requests-log line).
    pub name: String,
    requests_log: PathBuf,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl TsMcpServer {
    /// Starts a replica called `name` on a port the kernel picks, with a fresh requests log;
    /// waits (bounded) for its `listening PORT` line.
    pub fn start_named(name: &str) -> TsMcpServer {
        let requests_log = temp_path("mcp-ts-requests");
        let _ = std::fs::remove_file(&requests_log);
        let mut child = Command::new("node")
            .arg(node_dir().join("mcp_server.mjs"))
            .args(["--port", "0", "--name", name, "--requests-log"])
            .arg(&requests_log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn node tests/node/mcp_server.mjs");
        match listening_port(&mut child, TS_SERVER_START_LIMIT) {
            (Some(port), stderr) => TsMcpServer {
                child,
                port,
                name: name.to_string(),
                requests_log,
                stderr,
            },
            (None, stderr) => {
                panic!(
                    "mcp_server.mjs did not start:\n{}",
                    stderr.lock().unwrap().join("\n")
                )
            }
        }
    }

    /// `http://127.0.0.1:PORT`: what tether takes as `--upstream`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every HTTP request it received so far, in order, each
    /// `{"method","path","session","replica","remote_port"}` (session: the Mcp-Session-Id it
    /// got, or null). Written before the SDK sees the request.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.requests_log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("requests log {l:?}: {e}")))
            .collect()
    }

    /// Its stderr so far (for assertion messages).
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for TsMcpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.requests_log);
    }
}

/// Two TypeScript replicas, "a" and "b".
pub struct TsReplicas {
    pub a: TsMcpServer,
    pub b: TsMcpServer,
}

impl TsReplicas {
    pub fn start() -> TsReplicas {
        TsReplicas {
            a: TsMcpServer::start_named("a"),
            b: TsMcpServer::start_named("b"),
        }
    }

    /// Both base URLs, a first: tether's `--upstream`s.
    pub fn upstreams(&self) -> Vec<String> {
        vec![self.a.base_url(), self.b.base_url()]
    }

    /// How many requests each replica received so far: (a, b).
    pub fn request_counts(&self) -> (usize, usize) {
        (self.a.requests().len(), self.b.requests().len())
    }
}

/// What one run of tests/node/mcp_client.mjs printed.
#[derive(Debug, Clone)]
pub struct TsClientRun {
    /// One line per step: `{"step","op":"tools/list","tools"}` or `{"step","op":"echo","text",
    /// "is_error"}`.
    pub steps: Vec<Value>,
    /// `transport.sessionId` at the end of the steps.
    pub session_id: Option<String>,
    /// Every `mcp-session-id` response header value the client received, in order.
    pub received_session_ids: Vec<String>,
    /// Every HTTP request the transport made: `{"method","status","sent_session_id"}`.
    pub requests: Vec<Value>,
    /// The negotiated protocol version.
    pub protocol_version: String,
}

/// Runs the TypeScript client against `url` for `calls` steps (alternating tools/list and echo),
/// each request on a fresh connection, ending with a DELETE when `terminate`. Panics with its
/// output when it fails or runs out of time.
pub fn ts_client(url: &str, calls: usize, terminate: bool) -> TsClientRun {
    let mut cmd = Command::new("node");
    cmd.arg(node_dir().join("mcp_client.mjs"))
        .args(["--url", url, "--calls", &calls.to_string()])
        .args(["--timeout", &TS_CLIENT_TIMEOUT_SECS.to_string()]);
    if terminate {
        cmd.arg("--terminate");
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn node tests/node/mcp_client.mjs");
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
    let started = Instant::now();
    let status =
        child.wait_timeout_or_kill(Duration::from_secs(TS_CLIENT_TIMEOUT_SECS) + TS_CLIENT_GRACE);
    let stdout = out_thread.join().unwrap_or_default();
    let stderr = err_thread.join().unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "mcp_client.mjs failed ({status:?} after {:?}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        started.elapsed()
    );
    let mut lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("client printed {l:?}: {e}")))
        .collect();
    let end = match lines.pop() {
        Some(end) if end["done"] == true => end,
        _ => panic!("mcp_client.mjs printed no done line:\n{stdout}\nstderr:\n{stderr}"),
    };
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x.as_str().expect("a string").to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    TsClientRun {
        steps: lines,
        session_id: end["session_id"].as_str().map(str::to_string),
        received_session_ids: strings(&end["received_session_ids"]),
        requests: end["requests"].as_array().cloned().unwrap_or_default(),
        protocol_version: end["protocol_version"].as_str().unwrap_or("").to_string(),
    }
}
