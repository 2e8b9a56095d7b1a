//! MCP sessions through tether with a second real peer: the official TypeScript SDK
//! (`@modelcontextprotocol/sdk` 1.32.2, tests/node) as both the server replicas and the client.
//! tests/mcp_sessions.rs does the same with the Python SDK; here the point is that another
//! implementation's client and server, each with its own habits (a GET stream opened right after
//! initialize, a DELETE at the end, its own id format), work through `tether --mcp` unchanged.

mod common;

use serde_json::Value;

use common::mcp_ts::*;
use common::*;

/// The requests a replica received after its first `skip`.
fn requests_after(server: &TsMcpServer, skip: usize) -> Vec<Value> {
    server.requests().into_iter().skip(skip).collect()
}

/// The methods of a list of requests, sorted (a GET stream may be logged before or after a POST).
fn sorted_methods<'a>(list: impl Iterator<Item = &'a Value>) -> Vec<String> {
    let mut m: Vec<String> = list
        .map(|r| r["method"].as_str().unwrap_or("?").to_string())
        .collect();
    m.sort();
    m
}

/// The UUID shape the SDK's `randomUUID()` session ids have.
fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| {
            if [8, 13, 18, 23].contains(&i) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

/// What one client's session looked like at the replica that owned it.
struct Owned {
    owner: &'static str,
    tether_id: String,
    upstream_id: String,
}

/// Checks one finished client run against the requests its session made at the replicas (`got`:
/// the new requests of the one replica that received any): the client held and received only
/// tether's `t1.` id, the replica only its own UUID, and both saw the same requests.
fn check_run(
    round: &str,
    run: &TsClientRun,
    calls: usize,
    owner: &'static str,
    got: &[Value],
) -> Owned {
    let expected: Vec<Value> = (0..calls)
        .map(|i| {
            if i % 2 == 0 {
                serde_json::json!({"step": i, "op": "tools/list", "tools": ["echo", "get_weather"]})
            } else {
                serde_json::json!({"step": i, "op": "echo", "text": format!("step {i}"), "is_error": false})
            }
        })
        .collect();
    assert_eq!(run.steps, expected, "{round}");
    assert_eq!(run.protocol_version, "2025-11-25", "{round}");

    // The client only ever held and received tether's id.
    let tether_id = run
        .session_id
        .clone()
        .expect("the client holds a session id");
    assert!(
        tether_id.starts_with("t1."),
        "{round}: client holds {tether_id:?}"
    );
    assert!(!run.received_session_ids.is_empty(), "{round}");
    for id in &run.received_session_ids {
        assert_eq!(id, &tether_id, "{round}: the client received {id:?}");
    }
    assert_eq!(
        run.requests[0]["method"], "POST",
        "{round}: {:?}",
        run.requests
    );
    assert_eq!(run.requests[0]["sent_session_id"], Value::Null, "{round}");
    for r in &run.requests {
        let status = r["status"].as_u64().unwrap_or(0);
        assert!((200..300).contains(&status), "{round}: {r}");
    }
    for r in &run.requests[1..] {
        assert_eq!(r["sent_session_id"], tether_id.as_str(), "{round}: {r}");
    }
    // It used the GET stream and ended with a DELETE, as the SDK does.
    let methods = sorted_methods(run.requests.iter());
    assert!(methods.contains(&"GET".to_string()), "{round}: {methods:?}");
    assert_eq!(run.requests.last().unwrap()["method"], "DELETE", "{round}");

    // The replica got the same requests (all of them on the owner, the initialize first and
    // without an id) and, after the initialize, only ever its own UUID.
    assert_eq!(
        sorted_methods(got.iter()),
        methods,
        "{round}: replica {owner} got {got:?}\nclient made {:?}",
        run.requests
    );
    assert_eq!(got[0]["method"], "POST", "{round}: {got:?}");
    assert_eq!(got[0]["session"], Value::Null, "{round}: {got:?}");
    let upstream_id = got[1]["session"]
        .as_str()
        .expect("an upstream id")
        .to_string();
    assert!(
        is_uuid(&upstream_id),
        "{round}: replica got {upstream_id:?}"
    );
    for q in &got[1..] {
        assert_eq!(q["session"], upstream_id.as_str(), "{round}: {q}");
        assert_eq!(q["replica"], owner, "{round}: {q}");
    }
    assert!(!run.received_session_ids.contains(&upstream_id), "{round}");
    assert_ne!(tether_id, upstream_id);
    Owned {
        owner,
        tether_id,
        upstream_id,
    }
}

/// The TypeScript client, each request on its own connection, through `tether --mcp --workers 2`
/// in front of two TypeScript replicas, four sessions one after another: each session's requests
/// all reach one replica, the client only ever holds and receives tether's `t1.` id, the replica
/// only ever receives its own UUID, and neither replica ever sees a `t1.` id.
#[test]
fn a_ts_client_session_sticks_to_a_ts_replica_and_the_ids_never_cross() {
    if !node_mcp_available() {
        return;
    }
    let reps = TsReplicas::start();
    let t = Tether::start(&reps.upstreams(), &["--mcp", "--workers", "2"]);
    let calls = 6;
    let mut sessions: Vec<Owned> = Vec::new();
    for round in 0..4 {
        let round = format!("round {round}");
        let (a0, b0) = reps.request_counts();
        let run = ts_client(&t.url("/mcp"), calls, true);
        let new_a = requests_after(&reps.a, a0);
        let new_b = requests_after(&reps.b, b0);
        let (owner, got) = match (new_a.is_empty(), new_b.is_empty()) {
            (false, true) => ("a", new_a),
            (true, false) => ("b", new_b),
            _ => panic!(
                "{round}: requests split: a {new_a:?}\nb {new_b:?}\ntether:\n{}",
                t.log_lines().join("\n")
            ),
        };
        sessions.push(check_run(&round, &run, calls, owner, &got));
    }
    // Every session is its own, at tether and upstream.
    for (i, s) in sessions.iter().enumerate() {
        for o in &sessions[i + 1..] {
            assert_ne!(s.tether_id, o.tether_id);
            assert_ne!(s.upstream_id, o.upstream_id);
        }
    }
    // Neither replica ever received a tether id; every id it received is one of its sessions.
    for server in [&reps.a, &reps.b] {
        for q in server.requests() {
            let Some(id) = q["session"].as_str() else {
                continue;
            };
            assert!(!id.starts_with("t1."), "replica {} got {q}", server.name);
            assert!(
                sessions
                    .iter()
                    .any(|s| s.upstream_id == id && s.owner == server.name),
                "replica {} got an id not its own: {q}",
                server.name
            );
        }
        assert!(
            server.stderr_lines().is_empty(),
            "{:?}",
            server.stderr_lines()
        );
    }
    eprintln!(
        "owners: {:?}",
        sessions.iter().map(|s| s.owner).collect::<Vec<_>>()
    );
}

/// Two TypeScript clients at once through tether (6 and 8 steps, so their sessions differ in
/// request count): each session lands on one replica (either) and stays there while the other
/// runs; each client holds only its own `t1.` id, the replicas get only their UUIDs.
#[test]
fn two_concurrent_ts_clients_each_stick_to_one_replica() {
    if !node_mcp_available() {
        return;
    }
    let reps = TsReplicas::start();
    let t = Tether::start(&reps.upstreams(), &["--mcp", "--workers", "2"]);
    let url = t.url("/mcp");
    let (u1, u2) = (url.clone(), url);
    let c1 = std::thread::spawn(move || ts_client(&u1, 6, true));
    let c2 = std::thread::spawn(move || ts_client(&u2, 8, true));
    let runs = [c1.join().unwrap(), c2.join().unwrap()];

    let mut tether_ids = Vec::new();
    for run in &runs {
        let id = run.session_id.clone().expect("a session id");
        assert!(id.starts_with("t1."), "{id:?}");
        assert!(run.received_session_ids.iter().all(|r| r == &id), "{run:?}");
        assert!(run.requests[1..]
            .iter()
            .all(|r| r["sent_session_id"] == id.as_str()));
        tether_ids.push(id);
    }
    assert_ne!(tether_ids[0], tether_ids[1]);

    // Per upstream session: its replica and how many requests carried it.
    let mut seen: Vec<(String, String, usize)> = Vec::new();
    let mut initializes = 0;
    for server in [&reps.a, &reps.b] {
        for q in server.requests() {
            let Some(id) = q["session"].as_str() else {
                initializes += 1;
                continue;
            };
            assert!(is_uuid(id), "replica {} got {q}", server.name);
            match seen.iter_mut().find(|(s, _, _)| s == id) {
                Some((_, owner, n)) => {
                    assert_eq!(owner, &server.name, "session {id} on both replicas");
                    *n += 1;
                }
                None => seen.push((id.to_string(), server.name.clone(), 1)),
            }
        }
    }
    assert_eq!(initializes, 2, "{seen:?}");
    assert_eq!(seen.len(), 2, "{seen:?}");
    // Each client's requests after its initialize are exactly one upstream session's.
    let mut counts: Vec<usize> = seen.iter().map(|(_, _, n)| *n).collect();
    let mut want: Vec<usize> = runs.iter().map(|r| r.requests.len() - 1).collect();
    counts.sort();
    want.sort();
    assert_ne!(
        want[0], want[1],
        "the two clients made as many requests: {want:?}"
    );
    assert_eq!(counts, want, "{seen:?}");
    eprintln!(
        "owners: {:?}",
        seen.iter().map(|(_, o, n)| (o, n)).collect::<Vec<_>>()
    );
}
