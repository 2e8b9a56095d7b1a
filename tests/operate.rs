//! Operating tether: the demo, the admin endpoint (/metrics, /healthz, /streams) and JSON logs.

mod common;

use std::process::Command;
use std::time::Duration;

use common::sse_client::{ids, SseClient};
use common::*;

#[test]
fn the_demo_reports_nothing_lost_nothing_duplicated() {
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(["demo", "--seconds", "3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| -> u64 {
        stdout
            .lines()
            .find_map(|l| l.trim_start().strip_prefix(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{stdout}"))
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(field("events received") > 20, "{stdout}");
    assert!(
        field("upstream drops") > 3,
        "the demo upstream must really drop: {stdout}"
    );
    assert_eq!(field("lost"), 0);
    assert_eq!(field("duplicated"), 0);
    assert!(
        stdout.contains("--upstream"),
        "tells the user how to run it on their upstream"
    );
}

#[test]
fn metrics_count_what_was_done() {
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &["--admin", "127.0.0.1:0"]);
    let admin = admin_addr(&t);
    let mut c = Client::connect(t.addr);
    for _ in 0..5 {
        assert_eq!(c.get("/small").status, 200);
    }
    assert_eq!(c.get("/status/404").status, 404);
    drop(c);
    // One SSE stream of 12 events, dropped by the upstream every 4: two resumes at least.
    let mut s = SseClient::open(t.addr, "/sse?events=12&rate=300&ts=0&close_after=4", &[]);
    let (events, _) = s.read_until(Duration::from_secs(10), |ev| ev.len() >= 12);
    assert_eq!(ids(&events), (1..=12).collect::<Vec<u64>>());
    drop(s);
    // The counters are final once the relay has seen the client leave and ended the stream.
    assert!(
        wait_until(IO_TIMEOUT, || scrape(admin, "tether_sse_streams_active")
            == 0),
        "the stream never ended after its client left"
    );

    let (status, text) = admin_get(admin, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(metric(&text, "tether_requests_total"), 7);
    assert_eq!(metric(&text, "tether_responses_2xx_total"), 6);
    assert_eq!(metric(&text, "tether_responses_4xx_total"), 1);
    assert_eq!(metric(&text, "tether_sse_events_total"), 12);
    assert!(metric(&text, "tether_resumes_total") >= 2, "{text}");
    assert!(metric(&text, "tether_upstream_drops_eof_total") >= 2);
    // A gap is measured when a resumed body's first bytes reach the client; the resume after
    // the stream's last event brings none, so it has no gap.
    let gaps = metric(&text, "tether_resume_gap_seconds_count");
    assert!(
        gaps >= 2 && gaps <= metric(&text, "tether_resumes_total"),
        "{text}"
    );
    assert!(metric(&text, "tether_connections_accepted_total") >= 2);
    // Per worker series sum to the totals.
    let per_worker: u64 = text
        .lines()
        .filter(|l| l.starts_with("tether_worker_requests_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(per_worker, 7);
}

#[test]
fn streams_lists_the_active_streams() {
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &["--admin", "127.0.0.1:0"]);
    let admin = admin_addr(&t);
    let mut s = SseClient::open(t.addr, "/sse?events=0&rate=50&ts=0&tag=listed", &[]);
    let _ = s.read_until(Duration::from_secs(5), |ev| ev.len() >= 5);
    let (status, json) = admin_get(admin, "/streams");
    assert_eq!(status, 200);
    assert!(json.starts_with("{\"workers\":["), "{json}");
    assert!(
        json.contains("\"path\":\"/sse?events=0&rate=50&ts=0&tag=listed\""),
        "{json}"
    );
    assert!(json.contains("\"state\":\"streaming\""), "{json}");
    assert!(
        json.contains(&format!("\"upstream\":\"{}\"", url_of(&up))),
        "{json}"
    );
    drop(s);
}

#[test]
fn healthz_turns_503_while_draining() {
    let up = origin();
    let mut t = Tether::start(
        &[url_of(&up)],
        &[
            "--admin",
            "127.0.0.1:0",
            "--workers",
            "1",
            "--shutdown-grace",
            "5s",
        ],
    );
    let admin = admin_addr(&t);
    assert_eq!(admin_get(admin, "/healthz"), (200, "ok\n".to_string()));
    let addr = t.addr;
    let slow = std::thread::spawn(move || {
        send_raw(addr, b"GET /delay?ms=1500 HTTP/1.1\r\nHost: a\r\n\r\n")
            .0
            .status
    });
    assert!(wait_until(IO_TIMEOUT, || up
        .requests()
        .iter()
        .any(|r| r.path.starts_with("/delay"))));
    t.signal(libc::SIGTERM);
    // The worker hears of the drain through its control socket, a moment after the signal.
    assert!(
        wait_until(IO_TIMEOUT, || admin_get(admin, "/healthz").0 == 503),
        "/healthz never turned 503"
    );
    assert_eq!(
        admin_get(admin, "/healthz"),
        (503, "draining\n".to_string())
    );
    assert_eq!(
        slow.join().unwrap(),
        200,
        "the in-flight request still completes"
    );
    assert!(t
        .wait_exit(Duration::from_secs(8))
        .is_some_and(|s| s.success()));
}

#[test]
fn json_log_lines_parse() {
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &["--log-format", "json"]);
    let mut s = SseClient::open(t.addr, "/sse?events=6&rate=300&ts=0&close_after=3", &[]);
    let _ = s.read_until(Duration::from_secs(5), |ev| ev.len() >= 6);
    assert!(t.wait_for_log("resumed after id", Duration::from_secs(5)));
    for line in t.log_lines() {
        // {"ts":"<rfc3339>","level":"<level>","msg":"<escaped>"} and nothing else.
        let rest = line
            .strip_prefix("{\"ts\":\"")
            .unwrap_or_else(|| panic!("not JSON: {line}"));
        let (ts, rest) = rest
            .split_once("\",\"level\":\"")
            .unwrap_or_else(|| panic!("{line}"));
        assert_eq!(ts.len(), 24, "{line}");
        let (level, rest) = rest
            .split_once("\",\"msg\":\"")
            .unwrap_or_else(|| panic!("{line}"));
        assert!(
            ["error", "warn", "info", "debug"].contains(&level),
            "{line}"
        );
        let msg = rest.strip_suffix("\"}").unwrap_or_else(|| panic!("{line}"));
        // Every quote inside the message is escaped.
        let unescaped = msg.replace("\\\\", "").replace("\\\"", "");
        assert!(!unescaped.contains('"'), "{line}");
    }
}
