//! Passive health of upstream replicas (`--upstream-eject-after`, `--upstream-eject-for`), end to
//! end: a real tether process with one worker (so that one health state sees every request and
//! round robin is predictable), the simulator, and a small origin whose answer status a test
//! switches. Runs on whichever driver the environment selects (CI runs it on both).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::sse_client::{read_through, SseClient, StreamEnd};
use common::*;

/// An origin that answers every request with the status it is set to (keep-alive, a 5-byte
/// body), counting the requests it gets. One thread per connection; they end with the test
/// process.
struct SwitchableOrigin {
    url: String,
    status: Arc<AtomicU16>,
    requests: Arc<AtomicUsize>,
}

/// The body every SwitchableOrigin answer carries, to tell its 5xx from one of tether's.
const ORIGIN_BODY: &str = "from\n";

impl SwitchableOrigin {
    fn start(status: u16) -> SwitchableOrigin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let status = Arc::new(AtomicU16::new(status));
        let requests = Arc::new(AtomicUsize::new(0));
        let (s, r) = (status.clone(), requests.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (s, r) = (s.clone(), r.clone());
                thread::spawn(move || serve(conn, &s, &r));
            }
        });
        SwitchableOrigin {
            url,
            status,
            requests,
        }
    }

    fn set(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// Answers each request head on `conn` (requests through tether here carry no body).
fn serve(mut conn: TcpStream, status: &AtomicU16, requests: &AtomicUsize) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..end + 4);
            requests.fetch_add(1, Ordering::SeqCst);
            let answer = format!(
                "HTTP/1.1 {} X\r\nContent-Length: {}\r\n\r\n{ORIGIN_BODY}",
                status.load(Ordering::SeqCst),
                ORIGIN_BODY.len()
            );
            if conn.write_all(answer.as_bytes()).is_err() {
                return;
            }
        }
        match conn.read(&mut tmp) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

/// tether with one worker in front of `upstreams`, its admin endpoint on, and `extra` flags.
fn tether(upstreams: &[String], extra: &[&str]) -> (Tether, std::net::SocketAddr) {
    let mut args = vec!["--workers", "1", "--admin", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let t = Tether::start(upstreams, &args);
    let admin = admin_addr(&t);
    (t, admin)
}

/// `tether_upstream_ejections_total` for `url`.
fn ejections(admin: std::net::SocketAddr, url: &str) -> u64 {
    let (_, text) = admin_get(admin, "/metrics");
    metric(
        &text,
        &format!("tether_upstream_ejections_total{{upstream=\"{url}\"}}"),
    )
}

/// The state `/streams` shows for the replica `url` on the (only) worker.
fn state_of(admin: std::net::SocketAddr, url: &str) -> String {
    let (_, json) = admin_get(admin, "/streams");
    let entry = json
        .split(&format!("{{\"url\":\"{url}\","))
        .nth(1)
        .unwrap_or_else(|| panic!("{url} not in /streams: {json}"));
    entry
        .split("\"state\":\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_string()
}

/// Sends `GET path` on `c` and returns the status.
fn status_of(c: &mut Client, path: &str) -> u16 {
    c.get(path).status
}

#[test]
fn a_refusing_replica_is_ejected_and_every_request_reaches_the_good_one() {
    let good = origin();
    let refusing = closed_port_url();
    let (t, admin) = tether(
        &[refusing.clone(), url_of(&good)],
        &["--upstream-eject-after", "3", "--upstream-eject-for", "1m"],
    );
    let mut c = Client::connect(t.addr);
    for i in 0..20 {
        assert_eq!(status_of(&mut c, "/small"), 200, "request {i}");
    }
    // Round robin starts on the refusing replica every other request, until it is ejected
    // after its third refusal; after that nothing more is tried there.
    assert_eq!(scrape(admin, "tether_upstream_connect_errors_total"), 3);
    assert_eq!(
        good.requests().len(),
        20,
        "every request reached the good one"
    );
    assert_eq!(ejections(admin, &refusing), 1);
    assert_eq!(ejections(admin, &url_of(&good)), 0);
    assert_eq!(scrape(admin, "tether_upstream_ejected_replicas"), 1);
    assert_eq!(state_of(admin, &refusing), "ejected");
    assert_eq!(state_of(admin, &url_of(&good)), "healthy");
    assert!(
        t.wait_for_log(
            &format!("upstream {refusing} ejected for 1m after 3 failed tries in a row (the last: connect failed)"),
            Duration::from_secs(5)
        ),
        "{}",
        t.log_lines().join("\n")
    );
}

/// A replica answering 500 is ejected after N answers, fails its first try after the period and
/// is ejected again at once, then answers 200 on its next try and is back in rotation.
#[test]
fn a_replica_answering_500_is_ejected_and_comes_back_after_its_period() {
    const PERIOD: Duration = Duration::from_millis(700);
    let good = origin();
    let flaky = SwitchableOrigin::start(500);
    let (t, admin) = tether(
        &[flaky.url.clone(), url_of(&good)],
        &[
            "--upstream-eject-after",
            "3",
            "--upstream-eject-for",
            "700ms",
        ],
    );
    let mut c = Client::connect(t.addr);
    // Requests alternate between the replicas: three 500s (passed to the client as they are).
    // The clock starts before the third is sent, so it cannot run ahead of the ejection: the
    // replica's next try is at least PERIOD after it, with no allowance needed.
    let mut statuses: Vec<u16> = (0..4).map(|_| status_of(&mut c, "/small")).collect();
    let ejected_at = Instant::now();
    statuses.extend((0..2).map(|_| status_of(&mut c, "/small")));
    assert_eq!(statuses, [500, 200, 500, 200, 500, 200]);
    assert_eq!(flaky.requests(), 3);
    assert_eq!(ejections(admin, &flaky.url), 1);
    assert_eq!(state_of(admin, &flaky.url), "ejected");
    for _ in 0..10 {
        assert_eq!(
            status_of(&mut c, "/small"),
            200,
            "the ejected replica is skipped"
        );
    }
    assert_eq!(flaky.requests(), 3);

    // After the period its next try decides: a 500 ejects it again at once (not after three).
    let mut last = 0;
    assert!(
        wait_until(Duration::from_secs(10), || {
            last = status_of(&mut c, "/small");
            flaky.requests() == 4
        }),
        "the replica was never tried again"
    );
    assert!(
        ejected_at.elapsed() >= PERIOD,
        "tried again after {:?}, before its period",
        ejected_at.elapsed()
    );
    assert_eq!(last, 500, "its probation try reached the client");
    // The ten requests take milliseconds, well within the new period (a machine too busy for
    // that is not judged: the replica may be due again by then).
    let ejected_again_at = Instant::now();
    for _ in 0..10 {
        assert_eq!(status_of(&mut c, "/small"), 200);
    }
    if ejected_again_at.elapsed() < PERIOD / 2 {
        assert_eq!(flaky.requests(), 4, "ejected again at once");
    }
    assert_eq!(ejections(admin, &flaky.url), 2);

    // Healthy again: its probation try succeeds and it is back in rotation.
    flaky.set(200);
    assert!(
        wait_until(Duration::from_secs(10), || {
            status_of(&mut c, "/small");
            flaky.requests() == 5
        }),
        "the replica was never tried again"
    );
    assert_eq!(state_of(admin, &flaky.url), "healthy");
    for _ in 0..4 {
        assert_eq!(status_of(&mut c, "/small"), 200);
    }
    assert_eq!(flaky.requests(), 7, "round robin over both again");
    assert_eq!(scrape(admin, "tether_upstream_ejected_replicas"), 0);
    assert!(
        t.wait_for_log(
            &format!("upstream {} is back in rotation", flaky.url),
            Duration::from_secs(5)
        ),
        "{}",
        t.log_lines().join("\n")
    );
}

#[test]
fn when_every_replica_is_ejected_requests_still_go_to_them() {
    let a = SwitchableOrigin::start(503);
    let b = SwitchableOrigin::start(503);
    let (t, admin) = tether(
        &[a.url.clone(), b.url.clone()],
        &["--upstream-eject-after", "2", "--upstream-eject-for", "1m"],
    );
    let mut c = Client::connect(t.addr);
    // a, b, a (a ejected), b (b ejected).
    for _ in 0..4 {
        assert_eq!(status_of(&mut c, "/x"), 503);
    }
    assert_eq!((a.requests(), b.requests()), (2, 2));
    assert_eq!(scrape(admin, "tether_upstream_ejected_replicas"), 2);
    // Both ejected: tried anyway, the least recently ejected first; the client gets the
    // upstream's own answer, never a 502 for want of a replica.
    for i in 0..6 {
        let r = c.get("/x");
        assert_eq!(
            (r.status, r.text().as_str()),
            (503, ORIGIN_BODY),
            "request {i}"
        );
    }
    assert_eq!((a.requests(), b.requests()), (8, 2));
    a.set(200);
    assert_eq!(status_of(&mut c, "/x"), 200);
    assert_eq!(
        (ejections(admin, &a.url), ejections(admin, &b.url)),
        (1, 1),
        "failures while ejected neither extend nor repeat an ejection"
    );
}

#[test]
fn eject_after_zero_never_ejects() {
    let good = origin();
    let refusing = closed_port_url();
    let (t, admin) = tether(
        &[refusing.clone(), url_of(&good)],
        &["--upstream-eject-after", "0"],
    );
    let mut c = Client::connect(t.addr);
    for i in 0..20 {
        assert_eq!(status_of(&mut c, "/small"), 200, "request {i}");
    }
    assert_eq!(
        scrape(admin, "tether_upstream_connect_errors_total"),
        10,
        "every other request still tries the refusing replica first"
    );
    assert_eq!(ejections(admin, &refusing), 0);
    assert_eq!(scrape(admin, "tether_upstream_ejected_replicas"), 0);
    assert_eq!(state_of(admin, &refusing), "healthy");
}

/// A stream whose replica was ejected meanwhile resumes on the other replica without trying its
/// own first.
#[test]
fn a_reconnect_skips_the_streams_replica_once_it_is_ejected() {
    let a = origin();
    let b = origin();
    let (t, admin) = tether(
        &[url_of(&a), url_of(&b)],
        &["--upstream-eject-after", "1", "--upstream-eject-for", "1m"],
    );
    // The stream starts on a (round robin begins at replica 0) and drops after 40 events (2 s).
    let path = "/sse?events=0&rate=20&ts=0&close_after=40&fault_once=1";
    let mut s = SseClient::open(t.addr, path, &[]);
    assert_eq!(s.status, 200);
    let (got, _) = read_through(&mut s, 5, Duration::from_secs(10));
    assert_eq!(got, (1..=5).collect::<Vec<u64>>());
    // a stops accepting (its stream carries on); the second of two requests starts on a, is
    // refused, and a is ejected; both are served by b.
    a.pause_listening().unwrap();
    let mut c = Client::connect(t.addr);
    assert_eq!(status_of(&mut c, "/small"), 200);
    assert_eq!(status_of(&mut c, "/small"), 200);
    assert_eq!(ejections(admin, &url_of(&a)), 1);
    assert_eq!(scrape(admin, "tether_upstream_connect_errors_total"), 1);
    // The drop: the reconnect goes to b at once.
    let (got, end) = read_through(&mut s, 50, Duration::from_secs(15));
    assert_eq!(got, (6..=50).collect::<Vec<u64>>(), "every event once");
    assert_eq!(end, StreamEnd::Open);
    assert_eq!(
        scrape(admin, "tether_upstream_connect_errors_total"),
        1,
        "the reconnect did not try the ejected replica"
    );
    let resumed: Vec<_> = b
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/sse"))
        .map(|r| r.last_event_id)
        .collect();
    assert_eq!(resumed, [Some("40".to_string())]);
}

/// A reconnect that cannot connect counts as a failed try of the replica.
#[test]
fn a_reconnect_refused_counts_against_the_replica() {
    let a = origin();
    let a_url = url_of(&a);
    let b = origin();
    let (t, admin) = tether(
        &[a_url.clone(), url_of(&b)],
        &["--upstream-eject-after", "1", "--upstream-eject-for", "1m"],
    );
    let mut s = SseClient::open(t.addr, "/sse?events=0&rate=50&ts=0", &[]);
    assert_eq!(s.status, 200);
    let (got, _) = read_through(&mut s, 5, Duration::from_secs(10));
    assert_eq!(got, (1..=5).collect::<Vec<u64>>());
    // a dies: the stream's reconnect tries a first (refused, and a is ejected), then b.
    a.kill();
    let (got, end) = read_through(&mut s, 30, Duration::from_secs(15));
    assert_eq!(got, (6..=30).collect::<Vec<u64>>(), "every event once");
    assert_eq!(end, StreamEnd::Open);
    assert_eq!(ejections(admin, &a_url), 1);
    assert_eq!(state_of(admin, &a_url), "ejected");
    let errors = scrape(admin, "tether_upstream_connect_errors_total");
    let mut c = Client::connect(t.addr);
    for _ in 0..4 {
        assert_eq!(status_of(&mut c, "/small"), 200);
    }
    assert_eq!(
        scrape(admin, "tether_upstream_connect_errors_total"),
        errors,
        "requests no longer try the ejected replica"
    );
}
