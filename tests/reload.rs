//! Reloading the configuration file on SIGHUP (issue 12): new requests take the new routes on
//! every worker while a stream that began before keeps flowing on its upstream; a broken file
//! changes nothing and says where it is broken; routes come and go; a setting that needs a
//! restart is named and not applied; without --config SIGHUP is harmless.
//!
//! Waits are on conditions (the per-worker configuration generation on /metrics, log lines),
//! never on fixed sleeps.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::config_file::ConfigFile;
use common::*;

/// How long a reload may take to reach every worker before the test fails.
const RELOAD_LIMIT: Duration = Duration::from_secs(10);

/// `tether reverse --config FILE --admin 127.0.0.1:0` with `extra` flags (two workers unless
/// `extra` says).
fn start(file: &ConfigFile, extra: &[&str]) -> (Tether, SocketAddr) {
    let mut args: Vec<String> = vec![
        "reverse".into(),
        "--config".into(),
        file.path(),
        "--admin".into(),
        "127.0.0.1:0".into(),
    ];
    if !extra.contains(&"--workers") {
        args.extend(["--workers".into(), "2".into()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let t = Tether::start_args(&args)
        .unwrap_or_else(|log| panic!("tether did not start:\n{}", log.join("\n")));
    let admin = t.admin_addr();
    (t, admin)
}

/// A file with `bind` on a free loopback port and one route per (prefix, upstream).
fn routes_file(routes: &[(&str, &str)]) -> String {
    let mut text = String::from("bind = \"127.0.0.1:0\"\n");
    for (prefix, upstream) in routes {
        text.push_str(&format!(
            "\n[[route]]\npath-prefix = \"{prefix}\"\nupstream = [\"{upstream}\"]\n"
        ));
    }
    text
}

fn metric(admin: SocketAddr, name: &str) -> Option<f64> {
    prom_value(&Tether::metrics_text(admin), name)
}

/// Whether every one of `workers` gives new requests configuration `generation`.
fn all_workers_at(admin: SocketAddr, workers: usize, generation: u64) -> bool {
    let text = Tether::metrics_text(admin);
    (0..workers).all(|w| {
        prom_value(
            &text,
            &format!("tether_worker_config_generation{{worker=\"{w}\"}}"),
        ) == Some(generation as f64)
    })
}

/// Sends SIGHUP and waits until both workers serve new requests with `generation`.
fn reload_to(t: &Tether, admin: SocketAddr, generation: u64) {
    t.signal(libc::SIGHUP);
    assert!(
        wait_until(RELOAD_LIMIT, || all_workers_at(admin, 2, generation)),
        "the workers did not all take generation {generation}:\n{}\n{}",
        Tether::metrics_text(admin),
        t.log_lines().join("\n")
    );
}

/// Requests on fresh connections (so that SO_REUSEPORT spreads them) until each of the two
/// workers has served at least `per_worker` more requests than before; every answer is checked
/// with `check`. Returns how many were sent.
fn requests_on_both_workers(
    t: &Tether,
    admin: SocketAddr,
    path: &str,
    per_worker: u64,
    mut check: impl FnMut(&Response),
) -> usize {
    let served = |w: usize| {
        metric(
            admin,
            &format!("tether_worker_requests_total{{worker=\"{w}\"}}"),
        )
        .unwrap_or(0.0) as u64
    };
    let before = [served(0), served(1)];
    let mut sent = 0;
    while (0..2).any(|w| served(w) < before[w] + per_worker) {
        assert!(
            sent < 200,
            "200 connections did not reach both workers ({before:?} -> {:?})",
            [served(0), served(1)]
        );
        let (r, _) = send_raw(
            t.addr,
            format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        check(&r);
        sent += 1;
    }
    sent
}

fn paths(up: &tether_perf::UpstreamHandle) -> Vec<String> {
    up.requests().into_iter().map(|r| r.path).collect()
}

#[test]
fn sighup_moves_a_route_while_a_stream_on_the_old_upstream_keeps_flowing() {
    let old = origin();
    let new = origin();
    let file = ConfigFile::new(&routes_file(&[("/", &url_of(&old))]));
    let (t, admin) = start(&file, &["--sse-heartbeat", "0", "--pass-clean-end"]);
    assert!(all_workers_at(admin, 2, 1));

    // Fill the old upstream's pools (keep-alive connections left idle on both workers).
    requests_on_both_workers(&t, admin, "/small", 2, |r| assert_eq!(r.status, 200));
    let old_port = old.addr().port();
    assert!(established_to_port(old_port) > 0, "no pooled connection");

    // A stream of 40 events, 25 a second: it runs on across the reload.
    let stream_path = "/sse?events=40&rate=25";
    let mut stream = SseReader::get(t.addr, stream_path, &[]);
    let mut ids: Vec<u64> = (0..5).map(|_| next_id(&mut stream)).collect();

    file.write(&routes_file(&[("/", &url_of(&new))]));
    reload_to(&t, admin, 2);
    assert!(
        t.wait_for_log("configuration reloaded from", Duration::from_secs(5)),
        "{}",
        t.log_lines().join("\n")
    );
    assert_eq!(
        metric(admin, "tether_config_reloads_total{result=\"ok\"}"),
        Some(1.0)
    );
    assert_eq!(metric(admin, "tether_config_generation"), Some(2.0));

    // /streams reports the health of the replicas routes use: the new one, on both workers.
    let (_, json) = admin_get(admin, "/streams");
    assert_eq!(json.matches(&url_of(&new)).count(), 2, "{json}");
    assert!(
        !json.contains(&format!("\"url\":\"{}\"", url_of(&old))),
        "{json}"
    );

    // Every new request, on both workers, reaches the new upstream.
    let old_before = old.requests().len();
    let sent = requests_on_both_workers(&t, admin, "/small?after=1", 3, |r| {
        assert_eq!(r.status, 200)
    });
    assert_eq!(old.requests().len(), old_before, "{:?}", paths(&old));
    assert_eq!(
        paths(&new)
            .iter()
            .filter(|p| *p == "/small?after=1")
            .count(),
        sent
    );

    // The stream was still mid-way (it had at least 30 events to go): it ends whole, on the old
    // upstream, each event once.
    ids.extend(stream.events_to_end().iter().filter_map(|e| e.num_id()));
    assert_eq!(ids, (1..=40).collect::<Vec<u64>>());
    assert!(stream.ended(), "the stream did not end cleanly");
    assert_eq!(
        paths(&old).iter().filter(|p| *p == stream_path).count(),
        1,
        "the stream was opened (or resumed) again"
    );
    assert!(paths(&new).iter().all(|p| !p.starts_with("/sse")));

    // The old upstream is in no route: its pooled connections are closed, none is left open.
    assert!(
        wait_until(Duration::from_secs(10), || established_to_port(old_port)
            == 0),
        "{} connections to the removed upstream remain",
        established_to_port(old_port)
    );
}

#[test]
fn sighup_with_a_broken_file_keeps_serving_the_old_configuration() {
    let up = origin();
    let good = routes_file(&[("/", &url_of(&up))]);
    let file = ConfigFile::new(&good);
    let (t, admin) = start(&file, &[]);

    // Line 2, column 1: a key tether does not know.
    file.write("bind = \"127.0.0.1:0\"\nsse-hearbeat = \"5s\"\n");
    t.signal(libc::SIGHUP);
    assert!(
        wait_until(RELOAD_LIMIT, || metric(
            admin,
            "tether_config_reloads_total{result=\"error\"}"
        ) == Some(1.0)),
        "{}",
        t.log_lines().join("\n")
    );
    let place = format!("{}:2:1:", file.path());
    assert!(
        t.wait_for_log(&place, Duration::from_secs(5)),
        "no error line at {place}:\n{}",
        t.log_lines().join("\n")
    );
    let line = t
        .log_lines()
        .into_iter()
        .find(|l| l.contains(&place))
        .unwrap();
    assert!(
        line.contains("reload refused") && line.contains("sse-hearbeat"),
        "{line}"
    );
    assert_eq!(
        metric(admin, "tether_config_reloads_total{result=\"ok\"}"),
        Some(0.0)
    );
    assert_eq!(metric(admin, "tether_config_generation"), Some(1.0));
    assert!(all_workers_at(admin, 2, 1));
    requests_on_both_workers(&t, admin, "/small", 1, |r| assert_eq!(r.status, 200));

    // A file that parses but cannot run (a route without an upstream) is refused too.
    file.write("bind = \"127.0.0.1:0\"\n\n[[route]]\npath-prefix = \"/\"\n");
    t.signal(libc::SIGHUP);
    assert!(wait_until(RELOAD_LIMIT, || metric(
        admin,
        "tether_config_reloads_total{result=\"error\"}"
    ) == Some(2.0)));
    assert_eq!(
        send_raw(t.addr, b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
            .0
            .status,
        200
    );

    // Fixed: the next SIGHUP applies it.
    file.write(&good);
    reload_to(&t, admin, 2);
    assert_eq!(
        metric(admin, "tether_config_reloads_total{result=\"ok\"}"),
        Some(1.0)
    );
}

#[test]
fn a_reload_adds_a_route_and_removes_another() {
    let a = origin();
    let b = origin();
    let c = origin();
    let file = ConfigFile::new(&routes_file(&[("/a/", &url_of(&a)), ("/b/", &url_of(&b))]));
    let (t, admin) = start(&file, &[]);
    let status = |path: &str| {
        send_raw(
            t.addr,
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        )
        .0
        .status
    };
    assert_eq!(status("/b/small"), 404, "the simulator has no /b/small");
    assert_eq!(paths(&b), ["/b/small"]);
    assert_eq!(status("/c/small"), 404);
    assert!(paths(&c).is_empty());

    file.write(&routes_file(&[("/a/", &url_of(&a)), ("/c/", &url_of(&c))]));
    reload_to(&t, admin, 2);
    requests_on_both_workers(&t, admin, "/b/x", 1, |r| {
        assert_eq!(r.status, 404, "the removed route still answers");
        assert!(r.text().contains("no route"), "{}", r.text());
    });
    requests_on_both_workers(&t, admin, "/c/x", 1, |r| assert_eq!(r.status, 404));
    requests_on_both_workers(&t, admin, "/a/x", 1, |r| assert_eq!(r.status, 404));
    assert_eq!(
        paths(&b),
        ["/b/small"],
        "the removed route's upstream got more"
    );
    assert!(paths(&c).iter().all(|p| p == "/c/x") && !paths(&c).is_empty());
    assert!(paths(&a).iter().all(|p| p == "/a/x") && !paths(&a).is_empty());
}

#[test]
fn a_restart_only_setting_is_reported_and_not_applied() {
    let up = origin();
    let route = format!(
        "\n[[route]]\npath-prefix = \"/\"\nupstream = [\"{}\"]\n",
        url_of(&up)
    );
    let file = ConfigFile::new(&format!(
        "bind = \"127.0.0.1:0\"\nmax-connections = 100\nreplay-memory = \"64MiB\"\nsse-heartbeat = \"0\"\n{route}"
    ));
    let (t, admin) = start(&file, &["--workers", "1", "--pass-clean-end"]);

    // max-connections 1 would refuse a second connection with 503; replay-memory cannot be
    // resized under live rings; the heartbeat (a per-request setting) applies at once.
    file.write(&format!(
        "bind = \"127.0.0.1:0\"\nmax-connections = 1\nreplay-memory = \"32MiB\"\nsse-heartbeat = \"100ms\"\n{route}"
    ));
    t.signal(libc::SIGHUP);
    assert!(wait_until(RELOAD_LIMIT, || all_workers_at(admin, 1, 2)));
    assert!(
        t.wait_for_log(
            "not applied until restart: max-connections, replay-memory",
            Duration::from_secs(5)
        ),
        "{}",
        t.log_lines().join("\n")
    );
    let mut first = Client::connect(t.addr);
    let mut second = Client::connect(t.addr);
    assert_eq!(first.get("/small").status, 200);
    assert_eq!(
        second.get("/small").status,
        200,
        "max-connections 1 was applied"
    );

    // The new heartbeat: a comment reaches the client while the upstream is silent.
    let mut s = SseReader::get(t.addr, "/sse?events=2&rate=2", &[]);
    let mut saw_comment = false;
    while let Some(e) = s.next_block().expect("reading the stream") {
        saw_comment |= e.is_comment_only();
    }
    assert!(saw_comment, "no heartbeat with the reloaded sse-heartbeat");
}

#[test]
fn sighup_without_a_config_file_is_harmless() {
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &[]);
    t.signal(libc::SIGHUP);
    assert!(
        t.wait_for_log("no configuration file to reload", Duration::from_secs(5)),
        "{}",
        t.log_lines().join("\n")
    );
    t.signal(libc::SIGHUP);
    assert_eq!(
        send_raw(t.addr, b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
            .0
            .status,
        200
    );
    let mut t = t;
    assert!(
        t.wait_exit(Duration::from_millis(0)).is_none(),
        "tether exited"
    );
}
