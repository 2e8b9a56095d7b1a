//! `sse-load`'s library entry point against the in-process simulator.

use std::time::Duration;

use tether_perf::load::{run, LoadConfig, Report};
use tether_perf::{spawn, UpstreamConfig, UpstreamHandle};

fn simulator() -> UpstreamHandle {
    spawn(UpstreamConfig {
        keep_requests: false,
        ..Default::default()
    })
    .expect("simulator starts")
}

fn load(up: &UpstreamHandle, query: &str, config: LoadConfig) -> Report {
    let config = LoadConfig {
        url: format!("http://{}/sse?{query}", up.addr()),
        ..config
    };
    let report = run(&config).expect("load runs");
    eprintln!("{}", report.table());
    report
}

#[test]
fn counts_events_and_latency_exactly() {
    let up = simulator();
    let r = load(
        &up,
        "events=0&rate=50",
        LoadConfig {
            streams: 20,
            duration: Duration::from_secs(1),
            warmup: Duration::from_millis(200),
            ..Default::default()
        },
    );
    assert_eq!(r.open_failure, None);
    assert_eq!(r.established, 20);
    assert!(r.events > 0, "events {}", r.events);
    // 20 streams x 50/s for ~1 s, generously bounded (shared 2-core box).
    assert!(r.events >= 400 && r.events <= 1300, "events {}", r.events);
    assert_eq!((r.gaps, r.duplicates), (0, 0));
    assert!(r.latency_us.p50 > 0);
    assert_eq!(r.latency_us.count, r.events);
    assert_eq!(r.untimed_events, 0);
    assert_eq!((r.errors, r.ended_streams, r.reconnects), (0, 0, 0));
    assert!(r.bytes > 0 && r.wire_bytes > r.bytes);
    assert!((r.duration_s - 1.0).abs() < 0.2, "window {}", r.duration_s);
    let j = r.json();
    assert!(j.contains("\"gaps\":0,") && j.contains("\"latency_us\":{"));
}

#[test]
fn reconnects_resume_without_loss_or_duplicates() {
    let up = simulator();
    let r = load(
        &up,
        "events=0&rate=200&close_after=5&every=1",
        LoadConfig {
            streams: 20,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            reconnect: true,
            ..Default::default()
        },
    );
    assert_eq!(r.open_failure, None);
    assert!(r.reconnects > 0);
    assert_eq!((r.gaps, r.duplicates), (0, 0));
    assert_eq!((r.errors, r.ended_streams), (0, 0));
    assert!(r.reconnect_gap_us.count > 0);
    // Every connection carries 5 events, so events and reconnections go together.
    assert!(
        r.events_total >= 5 * r.reconnects,
        "{} {}",
        r.events_total,
        r.reconnects
    );
}

#[test]
fn mid_event_breaks_lose_nothing_either() {
    let up = simulator();
    let r = load(
        &up,
        "events=0&rate=200&reset_after=3&mid_event=1&every=1&eol=crlf",
        LoadConfig {
            streams: 10,
            duration: Duration::from_millis(600),
            warmup: Duration::ZERO,
            reconnect: true,
            ..Default::default()
        },
    );
    assert!(r.reconnects > 0);
    assert_eq!((r.gaps, r.duplicates, r.errors), (0, 0, 0));
}

#[test]
fn without_reconnect_finished_streams_end_and_the_run_stops_early() {
    let up = simulator();
    let started = std::time::Instant::now();
    let r = load(
        &up,
        "events=5",
        LoadConfig {
            streams: 10,
            duration: Duration::from_secs(20),
            warmup: Duration::ZERO,
            ..Default::default()
        },
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(r.ended_streams, 10);
    assert_eq!(r.events_total, 50);
    assert_eq!((r.gaps, r.duplicates, r.errors), (0, 0, 0));
}

#[test]
fn refused_streams_fail_the_open_phase() {
    let up = simulator();
    let r = load(
        &up,
        "events=0&rate=1&resume_status=503",
        LoadConfig {
            streams: 3,
            duration: Duration::from_millis(100),
            ..Default::default()
        },
    );
    // No Last-Event-ID on first opens: these are accepted.
    assert_eq!(r.open_failure, None);
    drop(up);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let r = run(&LoadConfig {
        url: format!("http://{addr}/sse"),
        streams: 3,
        duration: Duration::from_millis(100),
        ..Default::default()
    })
    .unwrap();
    let failure = r.open_failure.expect("nothing listens there");
    assert!(failure.contains("0 of 3"), "{failure}");
    assert_eq!(r.error_lines[0].kind, "connect");
    assert!(
        r.error_lines[0].first.contains("refused"),
        "{:?}",
        r.error_lines
    );
}

#[test]
fn idle_mode_reports_rss_per_stream() {
    let up = simulator();
    let r = load(
        &up,
        "stall_after=0",
        LoadConfig {
            streams: 50,
            duration: Duration::from_millis(200),
            warmup: Duration::ZERO,
            idle: true,
            settle: Duration::from_millis(200),
            // The simulator runs in this process: sample ourselves.
            proxy_pids: vec![std::process::id()],
            ..Default::default()
        },
    );
    assert_eq!(r.open_failure, None);
    assert!(r.rss_per_stream_bytes.is_some());
    assert!(r.proxy_open_cpu_s.is_some());
    assert!(r.proxy_cpu_s.is_some());
    assert_eq!((r.events, r.errors), (0, 0));
}

#[test]
fn every_framing_and_line_end_the_simulator_offers() {
    let up = simulator();
    for query in [
        "events=7&framing=close&eol=cr",
        "events=7&framing=length&eol=crlf&bom=1",
        "events=7&prime=1&retry=50&heartbeat_ms=1&rate=500",
        "events=7&ids=0&size=2000",
        "events=7&ts=0",
    ] {
        let r = load(
            &up,
            query,
            LoadConfig {
                streams: 4,
                duration: Duration::from_secs(5),
                warmup: Duration::ZERO,
                ..Default::default()
            },
        );
        assert_eq!(r.events_total, 28, "{query}");
        assert_eq!(r.ended_streams, 4, "{query}");
        assert_eq!((r.gaps, r.duplicates, r.errors), (0, 0, 0), "{query}");
    }
}

#[test]
fn a_server_that_ignores_last_event_id_shows_as_duplicates() {
    let up = simulator();
    let r = load(
        &up,
        "events=0&rate=200&close_after=5&every=1&resume=ignore",
        LoadConfig {
            streams: 5,
            duration: Duration::from_millis(500),
            warmup: Duration::ZERO,
            reconnect: true,
            ..Default::default()
        },
    );
    assert!(r.reconnects > 0);
    assert!(r.duplicates > 0);
    assert_eq!(r.gaps, 0);
}

#[test]
fn clients_that_join_a_live_stream_are_checked_from_their_first_event() {
    // Stream i starts at event 5i (`start=5{i}`: 50, 51, ... 54), as clients that join a
    // shared stream at its live head do.
    let up = simulator();
    let config = LoadConfig {
        streams: 5,
        duration: Duration::from_secs(5),
        warmup: Duration::ZERO,
        join_live: true,
        ..Default::default()
    };
    let r = load(&up, "events=60&start=5{i}", config.clone());
    assert_eq!(
        (r.events_total, r.gaps, r.duplicates),
        (11 + 10 + 9 + 8 + 7, 0, 0)
    );
    assert_eq!((r.streams_with_gaps, r.streams_with_duplicates), (0, 0));
    assert_eq!(r.first_id_range, Some((50, 54)));
    let j = r.json();
    assert!(j.contains("\"join_live\":true,"), "{j}");
    assert!(j.contains("\"first_id_min\":50,\"first_id_max\":54"), "{j}");
    // Checked from 1, the same streams lost everything before their start.
    let r = load(
        &up,
        "events=60&start=5{i}",
        LoadConfig {
            join_live: false,
            ..config.clone()
        },
    );
    assert_eq!(r.gaps, 49 + 50 + 51 + 52 + 53);
    assert_eq!((r.streams_with_gaps, r.stream_gaps_max), (5, 53));
    // Joined live, a stream that later loses or repeats events still counts them, per stream.
    let r = load(
        &up,
        "events=0&rate=200&close_after=5&every=1&resume=ignore&start=1{i}",
        LoadConfig {
            reconnect: true,
            duration: Duration::from_millis(500),
            ..config
        },
    );
    assert!(r.duplicates > 0);
    assert_eq!(r.streams_with_duplicates, 5);
    assert!(r.stream_duplicates_max >= 5);
}

/// Runs the `sse-load` binary; returns its exit code, stdout and stderr.
fn sse_load_binary(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sse-load"))
        .args(args)
        .output()
        .expect("sse-load runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_binary_writes_json_and_exits_by_the_rules() {
    let up = simulator();
    let dir = std::env::temp_dir().join(format!("sse-load-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("r.json");
    let url = format!("http://{}/sse?events=0&rate=100", up.addr());
    let (code, stdout, stderr) = sse_load_binary(&[
        "--url",
        &url,
        "--streams",
        "5",
        "--duration",
        "300ms",
        "--warmup",
        "0",
        "--label",
        "direct",
        "--expect-exact",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("| gaps / duplicates"), "{stdout}");
    let text = std::fs::read_to_string(&json).unwrap();
    assert!(text.starts_with("{\"label\":\"direct\","), "{text}");
    assert!(text.contains("\"duplicates\":0,"), "{text}");

    // Duplicates under --expect-exact: exit 1.
    let url = format!(
        "http://{}/sse?events=0&rate=200&close_after=3&every=1&resume=ignore",
        up.addr()
    );
    let (code, _, stderr) = sse_load_binary(&[
        "--url",
        &url,
        "--streams",
        "2",
        "--duration",
        "300ms",
        "--warmup",
        "0",
        "--reconnect",
        "--expect-exact",
        "--quiet",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("--expect-exact"), "{stderr}");

    // Streams that cannot be opened: exit 1 with the reason.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/sse", closed.local_addr().unwrap());
    drop(closed);
    let (code, _, stderr) = sse_load_binary(&["--url", &url, "--streams", "2", "--quiet"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("could not open the streams"), "{stderr}");

    // Usage errors: clap's 2; configuration errors: 1.
    assert_eq!(sse_load_binary(&["--streams", "2"]).0, 2);
    let (code, _, stderr) = sse_load_binary(&["--url", "ftp://x/", "--quiet"]);
    assert_eq!(code, 1);
    assert!(stderr.contains("only http:// and https://"), "{stderr}");
    let (code, _, stderr) = sse_load_binary(&["--url", "https://x/", "--quiet"]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("--ca FILE") && stderr.contains("--insecure"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn placeholder_gives_every_stream_its_own_url() {
    let up = spawn(UpstreamConfig::default()).expect("simulator starts");
    let r = load(
        &up,
        "events=3&s={i}",
        LoadConfig {
            streams: 5,
            threads: 2,
            duration: Duration::from_secs(5),
            warmup: Duration::ZERO,
            ..Default::default()
        },
    );
    assert_eq!((r.events_total, r.gaps, r.errors), (15, 0, 0));
    let mut paths: Vec<String> = up.requests().into_iter().map(|q| q.path).collect();
    paths.sort();
    let want: Vec<String> = (0..5).map(|i| format!("/sse?events=3&s={i}")).collect();
    assert_eq!(paths, want);
}

#[test]
fn ttfe_probes_time_new_clients_while_the_load_runs() {
    let up = spawn(UpstreamConfig::default()).expect("simulator starts");
    let r = load(
        &up,
        "events=0&rate=100",
        LoadConfig {
            streams: 20,
            duration: Duration::from_millis(300),
            warmup: Duration::from_millis(100),
            proxy_pids: vec![std::process::id()],
            ttfe: 5,
            ttfe_url: Some(format!(
                "http://{}/sse?events=0&rate=1&probe={{i}}",
                up.addr()
            )),
            ..Default::default()
        },
    );
    assert_eq!(r.open_failure, None);
    let t = r.ttfe.as_ref().expect("probes ran");
    assert_eq!((t.asked, t.failed, t.samples.len()), (5, 0, 5), "{t:?}");
    for s in &t.samples {
        assert!(
            s.connect_us <= s.head_us && s.head_us <= s.first_event_us,
            "{s:?}"
        );
        assert!(s.first_event_us < 5_000_000, "{s:?}");
    }
    let probes: Vec<String> = up
        .requests()
        .into_iter()
        .map(|q| q.path)
        .filter(|p| p.contains("probe="))
        .collect();
    assert_eq!(probes.len(), 5);
    assert!(probes[4].ends_with("probe=4"), "{probes:?}");
    let j = r.json();
    assert!(j.contains("\"ttfe_probes\":5,\"ttfe_failed\":0,"), "{j}");
    let (start, end) = r.proxy_rss_window_bytes.expect("sampled");
    assert!(start > 0 && end > 0);

    // A probe that gets no event in time fails, and says why.
    let r = load(
        &up,
        "events=0&rate=100",
        LoadConfig {
            streams: 2,
            duration: Duration::from_millis(100),
            warmup: Duration::ZERO,
            ttfe: 2,
            ttfe_url: Some(format!("http://{}/sse?stall_after=0", up.addr())),
            ttfe_timeout: Duration::from_millis(300),
            ..Default::default()
        },
    );
    let t = r.ttfe.expect("probes ran");
    assert_eq!((t.failed, t.samples.len()), (2, 0));
    let why = t.first_failure.unwrap();
    assert!(
        why.contains("no first event") && why.contains("head received"),
        "{why}"
    );
}

#[test]
fn chaos_faults_and_clients_that_leave_lose_nothing() {
    let up = simulator();
    // Every connection faults after ~4 events (FIN, RST, a stall the client outlasts by
    // leaving, half an event then FIN); every client also leaves on its own every ~300 ms
    // and comes back with Last-Event-ID.
    let r = load(
        &up,
        "events=0&rate=100&chaos=4&chaos_seed=11",
        LoadConfig {
            streams: 20,
            duration: Duration::from_millis(1500),
            warmup: Duration::ZERO,
            reconnect: true,
            leave_every: Duration::from_millis(300),
            leave_pause: Duration::from_millis(50),
            max_quiet: Some(Duration::from_secs(60)),
            stuck_after: Some(Duration::from_secs(60)),
            ..Default::default()
        },
    );
    assert_eq!(r.open_failure, None);
    assert_eq!((r.gaps, r.duplicates), (0, 0));
    assert_eq!((r.errors, r.ended_streams), (0, 0), "{:?}", r.error_lines);
    assert!(r.leaves > 0 && r.reconnects > 0);
    assert_eq!((r.quiet_over, r.stuck_streams), (0, 0));
    assert!(r.stream_events_min.unwrap() > 0);
    assert_eq!(r.quiet_us.count, 20, "one longest silence per stream");
    let stats = up.stats();
    for (kind, n) in [
        ("fin", stats.fin),
        ("rst", stats.rst),
        ("stall", stats.stall),
        ("half", stats.half),
    ] {
        assert!(n > 0, "no {kind} fault in {stats:?}");
    }
    assert!(stats.connections >= stats.faults());
    let j = r.json();
    assert!(
        j.contains("\"leaves\":") && j.contains("\"quiet_ms\":{"),
        "{j}"
    );
}
