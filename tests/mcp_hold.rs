//! `--hold-upstream` for MCP tool calls, against real peers (the official Python SDK 2.3.0 as
//! server and as client, protocol revision 2025-11-25, Streamable HTTP): a tool call whose client
//! dropped keeps running and its result waits in tether's ring for the client's resumption.
//!
//! The server has no event store, so it gives no event ids and cannot resume anything itself;
//! tether runs `--mcp --assign-ids --hold-upstream 10s --workers 2`. One SDK client process calls
//! `slow_count` (5 progress notifications 300 ms or 1 s apart, then "counted 5") asking the SDK for
//! resumption tokens (`ClientMessageMetadata(on_resumption_token_update=...)`) and kills itself
//! with SIGKILL once the first progress notification and its token have arrived: no goodbye on its
//! connections, no DELETE (a phone changing networks). A second SDK client process, in the same
//! session (tether's sealed `Mcp-Session-Id`, no new handshake), resumes the request with that
//! token (`ClientMessageMetadata(resumption_token=...)`), which the SDK sends as a GET with
//! `Last-Event-ID` and no POST.
//!
//! Server-side evidence: its calls log (the tool ran once), its cancel log (it ran to its end and
//! was never cancelled) and its requests log (nothing reached it after the first client died: no
//! GET with Last-Event-ID, nothing re-sent).
//!
//! Without `--hold-upstream` the same resumption gets no result: the last test shows how.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::mcp::*;
use common::*;
use serde_json::json;

/// How many progress notifications slow_count sends before its result.
const N: u64 = 5;

/// The first client's script: slow_count (`ms` between notifications), dying after the first
/// progress notification.
fn call_and_die_steps(ms: u64) -> String {
    json!([{
        "op": "call_tool_and_die", "name": "slow_count",
        "args": {"n": N, "ms": ms}, "die_after_progress": 1,
    }])
    .to_string()
}

/// The resuming client's script: the SDK's resumption of slow_count with `token`, its read
/// timeout `timeout_ms`.
fn resume_steps(token: &str, timeout_ms: u64) -> String {
    json!([{"op": "resume_tool", "name": "slow_count", "token": token, "timeout_ms": timeout_ms}])
        .to_string()
}

/// tether in front of `server`: `--mcp --assign-ids --workers 2 --sse-heartbeat 0` with an admin
/// listener, and `--hold-upstream 10s` when `hold`.
fn tether_for(server: &McpServer, hold: bool) -> Tether {
    let mut flags = vec![
        "--mcp",
        "--assign-ids",
        "--workers",
        "2",
        "--sse-heartbeat",
        "0",
        "--admin",
        "127.0.0.1:0",
    ];
    if hold {
        flags.extend(["--hold-upstream", "10s"]);
    }
    Tether::start(&[server.base_url()], &flags)
}

/// A /metrics sample (0 when absent).
fn sample(admin: SocketAddr, name: &str) -> f64 {
    prom_value(&Tether::metrics_text(admin), name).unwrap_or(0.0)
}

/// What the first client knew when it died.
struct Died {
    /// The resumption token it held: the id tether gave the event of the first progress.
    token: String,
    /// The Mcp-Session-Id it used: tether's sealed id.
    session: String,
    /// The progress values it saw.
    progress: Vec<f64>,
}

/// Runs the first client through `t`: it initializes, calls slow_count and SIGKILLs itself after
/// the first progress notification. Checks that it died that way, with a token and tether's id.
fn call_and_die(t: &Tether, server: &McpServer, ms: u64) -> Died {
    let run = mcp_client_process(&t.url("/mcp"), &call_and_die_steps(ms), &[]);
    let lines = run.lines();
    assert_eq!(
        run.signal(),
        Some(libc::SIGKILL),
        "the first client was to kill itself after the first progress notification: {run:?}"
    );
    assert_eq!(lines.len(), 1, "{run:?}");
    let d = &lines[0];
    assert_eq!(d["op"], "died", "{run:?}");
    let token = d["token"].as_str().expect("a resumption token").to_string();
    let session = d["session_id"].as_str().expect("a session id").to_string();
    let progress: Vec<f64> = d["progress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect();
    assert_eq!(progress, [1.0], "{d}");
    assert!(
        session.starts_with("t1."),
        "the client holds tether's sealed id: {session}"
    );
    assert!(
        !server.sessions_seen().contains(&session),
        "the server never sees tether's id"
    );
    Died {
        token,
        session,
        progress,
    }
}

/// The resuming client: a new process in the same session resuming with the dead one's token.
fn resume(t: &Tether, died: &Died, timeout_ms: u64) -> ClientRun {
    mcp_client_run(
        &t.url("/mcp"),
        &resume_steps(&died.token, timeout_ms),
        &["--resume-session", &died.session],
    )
}

/// Context for assertion messages: the server's logs and tether's.
fn context(t: &Tether, server: &McpServer) -> String {
    format!(
        "server requests: {:?}\nserver cancel log: {:?}\nserver stderr: {:?}\ntether log:\n{}",
        server.requests(),
        server.cancel_events(),
        server.stderr_lines(),
        t.log_lines().join("\n")
    )
}

/// Everything the tests prove about a held call and its resumption: slow_count with `ms`
/// between notifications, the first client dies after the first one; the comeback is made at
/// once (`still_running`: the tool runs on for (N - 1) * ms, long enough for a Python process to
/// start, so the comeback finds the stream held), or after the tool finished on the server (the
/// held upstream has ended: the comeback is answered from the ring of a finished stream).
fn held_call_resumes(ms: u64, still_running: bool) {
    let server = McpServer::start(&["--slow-count"]);
    let t = tether_for(&server, true);
    let admin = t.admin_addr();

    let died = call_and_die(&t, &server, ms);
    let requests_when_died = server.requests();
    if !still_running {
        let finished = server.wait_cancel_event("finished", Duration::from_secs(20));
        assert!(
            finished.is_some(),
            "the tool did not run to its end after its client died: {}",
            context(&t, &server)
        );
    }

    if still_running {
        assert!(
            server
                .cancel_events()
                .iter()
                .all(|e| e["event"] != "finished"),
            "the tool finished before the comeback started: {}",
            context(&t, &server)
        );
    }
    let run = resume(&t, &died, 15_000);
    let ctx = context(&t, &server);
    assert_eq!(run.steps.len(), 1, "{:?}\n{ctx}", run.steps);
    let r = &run.steps[0];

    // The result, once, and the progress the dead client missed, each once and in order.
    assert_eq!(r["text"], "counted 5", "{r}\n{ctx}");
    assert_eq!(r["isError"], false, "{r}");
    let resumed: Vec<f64> = r["progress"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .collect();
    let all: Vec<f64> = died.progress.iter().chain(&resumed).copied().collect();
    let want: Vec<f64> = (1..=N).map(|i| i as f64).collect();
    assert_eq!(
        all, want,
        "the dead client saw {:?}, the resumed one {resumed:?}",
        died.progress
    );
    // They are the dead process's call's notifications (its request id as progress token).
    let tokens = r["progress_tokens"].as_array().unwrap();
    assert!(
        tokens.iter().all(|t| t == &tokens[0] && !t.is_null()),
        "{r}"
    );
    // The resumed stream carries tether's ids (the server gives none), one per message.
    assert_eq!(
        r["tokens"].as_array().unwrap().len(),
        resumed.len() + 1,
        "{r}"
    );

    // The resuming client made one HTTP exchange: a GET in the session with the token.
    assert_eq!(run.http.len(), 1, "{:?}", run.http);
    let get = &run.http[0];
    assert_eq!(get["method"], "GET");
    assert_eq!(get["status"], 200);
    assert_eq!(get["last_event_id"], died.token.as_str());
    assert_eq!(get["session_sent"], died.session.as_str());

    // The server: the tool ran once, to its end, never cancelled ...
    let calls = server.call_lines();
    assert_eq!(
        calls,
        [format!(
            r#"slow_count {{"close_after":0,"ms":{ms},"n":{N}}}"#
        )],
        "{ctx}"
    );
    let finished = server
        .wait_cancel_event("finished", Duration::from_secs(20))
        .expect("the tool never finished");
    assert_eq!(finished["sent"], N, "{finished}");
    assert!(
        server
            .cancel_events()
            .iter()
            .all(|e| e["event"] != "cancelled"),
        "{ctx}"
    );
    // ... and nothing reached it after the first client died: no GET with Last-Event-ID, no
    // POST again. Its requests are the first client's: initialize, initialized, tools/call
    // (POSTs) and the GET stream the SDK opens after the handshake.
    let requests = server.requests();
    assert_eq!(
        requests.len(),
        requests_when_died.len(),
        "the resumption reached the server: {ctx}"
    );
    assert!(
        requests.iter().all(|q| q["last_event_id"].is_null()),
        "{ctx}"
    );
    let mut methods: Vec<&str> = requests
        .iter()
        .map(|q| q["method"].as_str().unwrap())
        .collect();
    methods.sort();
    assert_eq!(methods, ["GET", "POST", "POST", "POST"], "{ctx}");

    // tether found the comeback's id in a ring (a comeback handed to the other worker counts
    // once on each), and says whether it came back to a stream still held.
    let metrics = Tether::metrics_text(admin);
    assert!(
        sample(admin, "tether_replay_served_total") >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        sample(admin, "tether_replay_missed_total"),
        0.0,
        "{metrics}"
    );
    assert_eq!(
        sample(admin, "tether_sse_hold_resumed_total"),
        if still_running { 1.0 } else { 0.0 },
        "comebacks to a stream still held\n{metrics}"
    );
}

/// The client dies after the first progress notification (notifications 300 ms apart) and comes
/// back (a new process) only once the tool has finished on the server: the rest of the progress
/// and the result come from tether's ring, once each; the tool ran once, to its end; nothing of
/// the resumption reached the server.
#[test]
fn a_tool_call_whose_client_died_finishes_and_its_result_waits_for_the_resumption() {
    if !python_mcp_available() {
        return;
    }
    held_call_resumes(300, false);
}

/// The same, the new process resuming at once while the tool still runs (notifications 1 s
/// apart, so 4 s of it remain): the ring's events, then the live rest from the held upstream,
/// then the result; tether counts a comeback to a held stream.
#[test]
fn a_tool_call_whose_client_died_is_followed_live_by_the_resumption() {
    if !python_mcp_available() {
        return;
    }
    held_call_resumes(1000, true);
}

/// Without `--hold-upstream`, the same: tether closes the upstream when the client dies; the tool
/// still runs to its end on the server (a disconnection is not a cancellation in 2025-11-25), but
/// its remaining progress and its result go nowhere (the server keeps no events). The comeback,
/// made once the tool finished, finds only the ring's first event: tether sends the GET on to the
/// server (without the Last-Event-ID, an id tether made), which opens an ordinary GET stream for
/// the session, and the SDK client waits in vain: no progress, no result, its read timeout (3 s)
/// ends the call with an error.
#[test]
fn without_hold_upstream_the_result_of_a_call_whose_client_died_is_lost() {
    if !python_mcp_available() {
        return;
    }
    let server = McpServer::start(&["--slow-count"]);
    let t = tether_for(&server, false);
    let died = call_and_die(&t, &server, 300);
    let before = server.requests().len();
    let finished = server
        .wait_cancel_event("finished", Duration::from_secs(20))
        .unwrap_or_else(|| panic!("the tool did not run to its end: {}", context(&t, &server)));
    assert_eq!(finished["sent"], N, "{finished}");

    let run = resume(&t, &died, 3_000);
    let ctx = context(&t, &server);
    assert_eq!(run.steps.len(), 1, "{:?}\n{ctx}", run.steps);
    let r = &run.steps[0];
    assert!(
        r["text"].is_null() && !r["error"].is_null(),
        "no result: {r}\n{ctx}"
    );
    assert_eq!(r["progress"], json!([]), "no progress either: {r}");
    assert_eq!(server.calls().len(), 1, "the tool is not run again");
    let after: Vec<String> = server.requests()[before..]
        .iter()
        .map(|q| q["method"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(after, ["GET"], "the comeback went upstream: {ctx}");
}
