//! The replay store (`--replay-store`) shared by tether instances, against a real redis-server
//! started by each test on a free port (scripts/redis.sh installs it when missing): a client that
//! streamed through one instance and comes back to another with Last-Event-ID gets exactly what it
//! missed from Redis; Redis killed and restarted never breaks a stream; the keys hold no
//! credentials. Each test holds on both io drivers (MONOIO_FORCE_LEGACY_DRIVER=1 for epoll).

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::sse_client::{ids, read_through, SseClient, StreamEnd};
use common::*;

/// A redis-server of the test's own, killed on drop; nothing is saved to disk.
struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    fn start() -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Redis { port, child: None };
        redis.restart();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server ({e}): run scripts/redis.sh to install it")
            });
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        assert!(
            wait_until(Duration::from_secs(10), || TcpStream::connect(addr).is_ok()),
            "redis-server did not listen on {addr}"
        );
    }

    fn con(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap()
    }

    fn keys(&self) -> Vec<Vec<u8>> {
        redis::cmd("KEYS").arg("*").query(&mut self.con()).unwrap()
    }

    /// Every entry of every stream: (key, [field, value, ...] flattened), for byte searches.
    fn everything(&self) -> Vec<u8> {
        let mut con = self.con();
        let mut all = Vec::new();
        for key in self.keys() {
            all.extend_from_slice(&key);
            let entries: Vec<(String, Vec<Vec<u8>>)> = redis::cmd("XRANGE")
                .arg(&key)
                .arg("-")
                .arg("+")
                .query(&mut con)
                .unwrap();
            for (_, fields) in entries {
                for f in fields {
                    all.extend_from_slice(&f);
                }
            }
        }
        all
    }

    /// Every entry of the one stream there is, oldest first.
    fn only_stream_entries(&self) -> Vec<Entry> {
        let keys = self.keys();
        assert_eq!(keys.len(), 1, "one stream, one key: {keys:?}");
        redis::cmd("XRANGE")
            .arg(&keys[0])
            .arg("-")
            .arg("+")
            .query(&mut self.con())
            .unwrap()
    }

    /// The SSE ids recorded in the one stream there is, by lineage tag, each oldest first.
    fn recorded_lineages(&self) -> Vec<(Vec<u8>, Vec<u64>)> {
        let entries = self.only_stream_entries();
        let mut lineages: Vec<(Vec<u8>, Vec<u64>)> = Vec::new();
        for (_, fields) in entries {
            let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|f| f.1.clone());
            let tag = field("lineage").expect("every entry names its lineage");
            // A lineage's end marker carries no event.
            let Some(id) = field("id") else {
                continue;
            };
            let id: u64 = String::from_utf8(id).unwrap().parse().unwrap();
            match lineages.iter_mut().find(|(t, _)| *t == tag) {
                Some((_, ids)) => ids.push(id),
                None => lineages.push((tag, vec![id])),
            }
        }
        lineages
    }

    /// The SSE ids recorded in the one stream there is, oldest first.
    fn recorded_ids(&self) -> Vec<u64> {
        let entries = self.only_stream_entries();
        entries
            .into_iter()
            .filter_map(|(_, fields)| {
                let id = fields.into_iter().find(|(n, _)| n == "id")?.1;
                String::from_utf8(id).ok()?.parse().ok()
            })
            .collect()
    }
}

/// A stream entry as XRANGE answers it: Redis's id, then the fields' names and values.
type Entry = (String, Vec<(String, Vec<u8>)>);

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn store_flags(redis: &Redis) -> Vec<String> {
    vec![
        "--replay-store".into(),
        redis.url(),
        "--admin".into(),
        "127.0.0.1:0".into(),
    ]
}

fn start(upstream: &str, redis: &Redis) -> Tether {
    start_with(upstream, redis, &[])
}

fn start_with(upstream: &str, redis: &Redis, extra: &[&str]) -> Tether {
    let mut flags = store_flags(redis);
    flags.extend(extra.iter().map(|f| f.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Tether::start(&[upstream.to_string()], &flags)
}

/// The client's identity: the scope its stream is recorded under on every instance.
const AUTHORIZATION: &str = "Bearer s3cr3t-t0k3n-for-the-store";
const COOKIE: &str = "session=c00kie-never-in-redis";
const PATH: &str = "/sse?events=100000&rate=100&ts=0";

fn headers(last: Option<&str>) -> Vec<(&'static str, &str)> {
    let mut h = vec![("Authorization", AUTHORIZATION), ("Cookie", COOKIE)];
    if let Some(id) = last {
        h.push(("Last-Event-ID", id));
    }
    h
}

/// Streams through A until id `through`, leaves, and waits until A has stopped writing (its relay
/// noticed the client gone): what Redis holds is then final.
fn stream_through_a_and_leave(a: &Tether, redis: &Redis, through: u64) -> Vec<u64> {
    let mut c = SseClient::open(a.addr, PATH, &headers(None));
    assert_eq!(c.status, 200);
    let (got, end) = read_through(&mut c, through, Duration::from_secs(10));
    // One read may carry events past `through` (they come 10 ms apart): every one from 1, once.
    let last = got.last().copied().unwrap_or(0);
    assert!(last >= through, "{got:?}");
    assert_eq!(got, (1..=last).collect::<Vec<_>>());
    assert_eq!(end, StreamEnd::Open);
    drop(c);
    wait_for_writes_to_settle(a, through);
    redis.recorded_ids()
}

/// Waits until A has written at least `at_least` events and written nothing more for a while.
fn wait_for_writes_to_settle(a: &Tether, at_least: u64) {
    let admin = a.admin_addr();
    let mut last = (u64::MAX, Instant::now());
    assert!(
        wait_until(Duration::from_secs(10), || {
            let written = scrape(admin, "tether_replay_store_written_total");
            if written != last.0 {
                last = (written, Instant::now());
            }
            written >= at_least && last.1.elapsed() > Duration::from_millis(400)
        }),
        "A's writes did not settle"
    );
}

#[test]
fn a_client_back_on_another_instance_gets_exactly_what_it_missed_from_redis() {
    let redis = Redis::start();
    let up = origin();
    let a = start(&url_of(&up), &redis);
    // B's upstream is down: whatever B serves comes from Redis.
    let b = start(&closed_port_url(), &redis);
    let recorded = stream_through_a_and_leave(&a, &redis, 12);
    let newest = *recorded.last().unwrap();
    assert_eq!(
        recorded,
        (1..=newest).collect::<Vec<_>>(),
        "A wrote every event"
    );
    assert!(newest >= 12);

    // The client had only seen 7 (say it lost the rest in flight): B replays 8..=newest.
    let mut c = SseClient::open(b.addr, PATH, &headers(Some("7")));
    assert_eq!(
        c.status, 200,
        "a reconnection is never refused while the ring serves"
    );
    let (events, end) = c.read_until(Duration::from_secs(2), |_| false);
    assert_eq!(
        end,
        StreamEnd::Open,
        "the stream stays open behind the replay"
    );
    assert_eq!(ids(&events), (8..=newest).collect::<Vec<_>>());
    let admin = b.admin_addr();
    assert_eq!(scrape(admin, "tether_replay_store_served_total"), 1);
    assert_eq!(scrape(admin, "tether_replay_store_reads_total"), 1);

    // An id Redis never saw: as without a store (B's upstream is down: a 502), counted.
    let mut unknown = SseClient::open(b.addr, PATH, &headers(Some("999999")));
    assert_eq!(unknown.status, 502);
    drop(unknown.read_to_end(Duration::from_millis(200)));
    assert_eq!(scrape(admin, "tether_replay_store_missed_total"), 1);
}

/// Two clients of one URL through A: two upstream lineages, the same ids, interleaved in one
/// Redis stream. One comes back on B: it gets one lineage's events after its id, each once, never
/// the two mixed.
#[test]
fn two_lineages_of_one_url_never_mix_when_read_back_from_redis() {
    let redis = Redis::start();
    let up = origin();
    let a = start(&url_of(&up), &redis);
    let b = start(&closed_port_url(), &redis);
    let mut first = SseClient::open(a.addr, PATH, &headers(None));
    let mut second = SseClient::open(a.addr, PATH, &headers(None));
    assert_eq!((first.status, second.status), (200, 200));
    let (got, _) = read_through(&mut first, 12, Duration::from_secs(10));
    assert_eq!(got, (1..=12).collect::<Vec<_>>());
    drop(first);
    let (got, _) = read_through(&mut second, 30, Duration::from_secs(10));
    assert_eq!(got, (1..=30).collect::<Vec<_>>());
    drop(second);
    wait_for_writes_to_settle(&a, 42);
    let lineages = redis.recorded_lineages();
    assert_eq!(lineages.len(), 2, "two lineages in one stream");
    for (_, ids) in &lineages {
        assert_eq!(ids, &(1..=*ids.last().unwrap()).collect::<Vec<_>>());
    }

    // The first client had only seen 7: B replays 8.. of one lineage, each id once.
    let mut c = SseClient::open(b.addr, PATH, &headers(Some("7")));
    assert_eq!(c.status, 200);
    let (events, end) = c.read_until(Duration::from_secs(2), |_| false);
    assert_eq!(end, StreamEnd::Open);
    let got = ids(&events);
    let newest = *got.last().expect("events replayed from Redis");
    assert_eq!(got, (8..=newest).collect::<Vec<_>>(), "each missed id once");
    assert!(
        lineages
            .iter()
            .any(|(_, ids)| *ids.last().unwrap() == newest),
        "{got:?} is one lineage's history: {lineages:?}"
    );
    assert_eq!(
        scrape(b.admin_addr(), "tether_replay_store_served_total"),
        1
    );
}

#[test]
fn redis_killed_and_restarted_breaks_no_stream_and_writes_resume() {
    let mut redis = Redis::start();
    let up = origin();
    let a = start(&url_of(&up), &redis);
    let admin = a.admin_addr();
    let mut c = SseClient::open(a.addr, PATH, &headers(None));
    let (mut seen, _) = read_through(&mut c, 10, Duration::from_secs(10));
    assert!(wait_until(Duration::from_secs(5), || scrape(
        admin,
        "tether_replay_store_connected"
    ) == 1));

    redis.kill();
    let (more, end) = read_through(&mut c, 60, Duration::from_secs(10));
    seen.extend(more);
    assert_eq!(end, StreamEnd::Open, "Redis down does not touch the stream");
    assert!(wait_until(Duration::from_secs(5), || {
        let text = Tether::metrics_text(admin);
        metric(&text, "tether_replay_store_errors_total") > 0
            && metric(&text, "tether_replay_store_dropped_total") > 0
            && metric(&text, "tether_replay_store_connected") == 0
    }));

    redis.restart();
    let written_before = scrape(admin, "tether_replay_store_written_total");
    let (more, end) = read_through(&mut c, 150, Duration::from_secs(15));
    seen.extend(more);
    assert_eq!(end, StreamEnd::Open);
    assert_eq!(
        seen,
        (1..=150).collect::<Vec<_>>(),
        "every event once, in order"
    );
    assert!(
        wait_until(Duration::from_secs(10), || scrape(
            admin,
            "tether_replay_store_written_total"
        ) > written_before
            && scrape(admin, "tether_replay_store_connected") == 1),
        "writes resumed"
    );
    let after_restart = redis.recorded_ids();
    assert!(!after_restart.is_empty());
    assert!(
        after_restart[0] > 10,
        "the fresh Redis holds events written after its restart"
    );
    assert!(
        a.wait_for_log("replay store", Duration::from_secs(1)),
        "{:?}",
        a.log_lines()
    );
}

#[test]
fn keys_and_entries_in_redis_hold_no_authorization_or_cookie_bytes() {
    let redis = Redis::start();
    let up = origin();
    let a = start(&url_of(&up), &redis);
    stream_through_a_and_leave(&a, &redis, 5);
    let keys = redis.keys();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].starts_with(b"tether:stream:"), "{keys:?}");
    let all = redis.everything();
    for secret in [
        "s3cr3t-t0k3n",
        "Bearer",
        "c00kie-never-in-redis",
        "session=",
        "Authorization",
        "Cookie",
    ] {
        assert!(
            !contains(&all, secret.as_bytes()),
            "{secret:?} reached Redis"
        );
    }
}

/// A POST-born stream (an LLM generation, an MCP tool call: 40 events at 10 per second, then the
/// end) through A with `--hold-upstream 10s`; its client reads 5 events and leaves; A holds the
/// upstream. The client comes back on B (whose upstream is down) with a GET and
/// `Last-Event-ID: 5`: `live` while A still reads the generation, or after it ended there. Either
/// way B gets 6..=40 once, in order, from Redis (live through `XREAD BLOCK`, or read back), then
/// the clean end; the upstream saw one request, the POST, and nothing else.
///
/// `hold`: A's `--hold-upstream`. Shorter than the generation, A holds on while B follows
/// (B marks the lineage followed in Redis; A asks when its hold runs out).
fn post_held_by_a_then_back_on_b(live: bool, hold: &str) {
    let redis = Redis::start();
    let up = origin();
    let a = start_with(
        &url_of(&up),
        &redis,
        &["--hold-upstream", hold, "--sse-heartbeat", "0"],
    );
    let b = start_with(&closed_port_url(), &redis, &["--sse-heartbeat", "0"]);
    let path = if live {
        "/sse?events=40&rate=10&ts=0&held=live"
    } else {
        "/sse?events=40&rate=40&ts=0&held=ended"
    };
    let body = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"long"}}"#;
    let mut post = SseReader::open(a.addr, &sse_post_request(path, &[], body));
    assert_eq!(post.head.status, 200);
    let (first, stopped) = ids_through(&mut post, 5);
    assert_eq!(
        (first, stopped),
        (vec![1, 2, 3, 4, 5], None),
        "the POST's stream"
    );
    drop(post);
    let a_admin = a.admin_addr();
    assert!(
        wait_until(Duration::from_secs(5), || scrape(
            a_admin,
            "tether_sse_held_streams"
        ) >= 1),
        "A did not hold the stream after its client left"
    );
    if !live {
        // The generation ends on A (40 events at 40/s), its end marker written.
        assert!(
            wait_until(Duration::from_secs(10), || scrape(
                a_admin,
                "tether_sse_held_streams"
            ) == 0),
            "the held generation did not end on A"
        );
        wait_for_writes_to_settle(&a, 41);
    }

    let mut back = SseReader::open(b.addr, &sse_request(path, &["Last-Event-ID: 5"]));
    let log = || {
        format!(
            "A:\n{}\nB:\n{}",
            a.log_lines().join("\n"),
            b.log_lines().join("\n")
        )
    };
    assert_eq!(back.head.status, 200, "{}", log());
    back.deadline = Instant::now() + Duration::from_secs(15);
    let (got, end) = ids_to_end(&mut back);
    let requests: Vec<(String, Option<String>)> = up
        .requests()
        .into_iter()
        .filter(|r| r.path == path)
        .map(|r| (r.method, r.last_event_id))
        .collect();
    let context = format!(
        "B answered {got:?}, ended {end}; upstream saw {requests:?}\n{}",
        log()
    );
    assert_eq!(
        got,
        (6..=40).collect::<Vec<u64>>(),
        "each event after 5 once, in order; {context}"
    );
    assert_eq!(
        end, "Some(true)",
        "the response ends cleanly after the generation; {context}"
    );
    assert_eq!(
        requests,
        vec![("POST".to_string(), None)],
        "one POST, nothing re-sent, no GET upstream; {context}"
    );
    let b_admin = b.admin_addr();
    let (followed, served) = (
        scrape(b_admin, "tether_replay_store_followed_total"),
        scrape(b_admin, "tether_replay_store_served_total"),
    );
    if live {
        assert_eq!(
            (followed, served),
            (1, 0),
            "followed live through Redis; {context}"
        );
    } else {
        assert_eq!(
            (followed, served),
            (0, 1),
            "read back from Redis; {context}"
        );
    }
}

#[test]
fn a_post_stream_held_by_one_instance_is_followed_live_from_another() {
    post_held_by_a_then_back_on_b(true, "10s");
}

/// The generation lasts 4 s, A's hold 1.5 s: A is still reading it at the end because B follows.
#[test]
fn a_stream_followed_from_another_instance_is_held_past_its_hold() {
    post_held_by_a_then_back_on_b(true, "1500ms");
}

#[test]
fn a_post_stream_that_ended_on_one_instance_is_finished_from_another() {
    post_held_by_a_then_back_on_b(false, "10s");
}
