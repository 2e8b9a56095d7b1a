//! Issue 11, the fault soak scaled down to a minute (the full one is `scripts/soak.sh`).
//!
//! 200 SSE streams through the real tether binary (2 workers, heartbeats every second, a 2 s
//! upstream idle timeout) in front of two replicas of the simulator (in this process), while:
//! - every upstream connection gets one fault drawn by the simulator (`chaos=N`): FIN, RST, a
//!   stall that only tether's idle timeout ends, or half an event then FIN;
//! - every few seconds one replica refuses connections for a second (its listener pauses), and
//!   every twelve seconds one replica is killed and comes back on its port 1.5 s later;
//! - every client leaves now and then (RST or FIN) and comes back with `Last-Event-ID`.
//!
//! Asserted: every client got every event once, in order (0 lost, 0 duplicated, no error, no
//! stream ended or stuck); thousands of faults of every kind were injected; tether's open fds
//! come back to their baseline once the clients are gone; its RSS stays bounded. Nothing is
//! timed: the heartbeat cadence and the silences are printed, not asserted. Runs on both
//! drivers (`MONOIO_FORCE_LEGACY_DRIVER=1` for epoll).

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use tether_perf::load::{run, LoadConfig, Report};
use tether_perf::{spawn, FaultStats, UpstreamConfig, UpstreamHandle};

const MIB: u64 = 1024 * 1024;
/// Whole load, warm-up included.
const LOAD: Duration = Duration::from_secs(60);
/// After this the replay rings are full and the RSS is sampled as the reference.
const WARMUP: Duration = Duration::from_secs(20);
const FAST_STREAMS: usize = 180;
const SLOW_STREAMS: usize = 20;
/// tether's heartbeat period (--sse-heartbeat).
const HEARTBEAT: Duration = Duration::from_secs(1);

/// One replica: its address is kept across kills.
struct Replica {
    addr: SocketAddr,
    handle: Option<UpstreamHandle>,
    /// Counters of the incarnations that were killed.
    dead: Vec<FaultStats>,
}

impl Replica {
    fn start() -> Replica {
        let handle = spawn(UpstreamConfig {
            keep_requests: false,
            ..Default::default()
        })
        .expect("replica starts");
        Replica {
            addr: handle.addr(),
            handle: Some(handle),
            dead: Vec::new(),
        }
    }

    /// Dies like a killed process: every connection cut where it is.
    fn kill(&mut self) {
        if let Some(h) = self.handle.take() {
            self.dead.push(h.stats());
            h.kill();
        }
    }

    /// Comes back on the same port (retried while the port is still held, bounded).
    fn revive(&mut self) {
        if self.handle.is_some() {
            return;
        }
        let stop = Instant::now() + Duration::from_secs(10);
        loop {
            match spawn(UpstreamConfig {
                bind: self.addr,
                keep_requests: false,
                ..Default::default()
            }) {
                Ok(h) => {
                    self.handle = Some(h);
                    return;
                }
                Err(e) if Instant::now() < stop => {
                    eprintln!("replica {} not back yet: {e}", self.addr);
                    thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("replica {} cannot come back: {e}", self.addr),
            }
        }
    }

    fn refuse_for(&self, d: Duration) -> bool {
        let Some(h) = &self.handle else { return false };
        h.pause_listening().expect("pause");
        thread::sleep(d);
        h.resume_listening().expect("resume");
        true
    }

    fn totals(&self) -> FaultStats {
        let mut all: Vec<FaultStats> = self.dead.clone();
        if let Some(h) = &self.handle {
            all.push(h.stats());
        }
        all.iter().fold(FaultStats::default(), |a, s| FaultStats {
            connections: a.connections + s.connections,
            fin: a.fin + s.fin,
            rst: a.rst + s.rst,
            stall: a.stall + s.stall,
            half: a.half + s.half,
            refusal_windows: a.refusal_windows + s.refusal_windows,
        })
    }
}

fn load(url: String, streams: usize, pid: u32) -> LoadConfig {
    LoadConfig {
        url,
        streams,
        warmup: WARMUP,
        duration: LOAD - WARMUP,
        reconnect: true,
        leave_every: Duration::from_secs(10),
        leave_pause: Duration::from_millis(500),
        max_quiet: Some(HEARTBEAT * 5 / 2),
        stuck_after: Some(Duration::from_secs(15)),
        proxy_pids: vec![pid],
        open_timeout: Duration::from_secs(30),
        ..Default::default()
    }
}

fn check_exact(name: &str, r: &Report) -> Result<(), String> {
    let bad = r.open_failure.is_some()
        || r.gaps > 0
        || r.duplicates > 0
        || r.errors > 0
        || r.ended_streams > 0
        || r.stuck_streams > 0
        || r.stream_events_min.unwrap_or(0) == 0;
    if bad {
        Err(format!(
            "{name}: {} lost, {} duplicated, {} errors {:?}, {} ended, {} stuck, fewest events \
             {:?}, open failure {:?}",
            r.gaps,
            r.duplicates,
            r.errors,
            r.error_lines,
            r.ended_streams,
            r.stuck_streams,
            r.stream_events_min,
            r.open_failure
        ))
    } else {
        Ok(())
    }
}

#[test]
fn a_minute_of_faults_loses_nothing_and_leaks_nothing() {
    let replicas = Arc::new(Mutex::new([Replica::start(), Replica::start()]));
    let upstreams: Vec<String> = replicas
        .lock()
        .unwrap()
        .iter()
        .map(|r| format!("http://{}", r.addr))
        .collect();
    let t = Tether::start(
        &upstreams,
        &[
            "--workers",
            "2",
            "--admin",
            "127.0.0.1:0",
            "--sse-heartbeat",
            "1s",
            "--upstream-idle-timeout",
            "2s",
            "--connect-timeout",
            "1s",
            "--replay-events",
            "64",
            // Rings of clients that came back on the other worker are kept this long: short, so
            // their number is steady well within the warm-up.
            "--replay-ttl",
            "10s",
        ],
    );
    let admin = t.admin_addr();
    let pid = t.pid();
    thread::sleep(Duration::from_millis(500));
    let fd_base = fd_count(pid);
    let rss_base = rss_bytes(pid);

    // ---- faults: refusals and kills, in turn over the two replicas ----
    let stop = Arc::new(AtomicBool::new(false));
    let (kills, refusals) = (Arc::new(Mutex::new(0u32)), Arc::new(Mutex::new(0u32)));
    let chaos = {
        let (replicas, stop) = (replicas.clone(), stop.clone());
        let (kills, refusals) = (kills.clone(), refusals.clone());
        thread::spawn(move || {
            // Every 3 s: three refusals (the replicas in turn), then a kill (in turn too).
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_secs(3));
                round += 1;
                if round.is_multiple_of(4) {
                    let which = (round / 4 % 2) as usize;
                    replicas.lock().unwrap()[which].kill();
                    *kills.lock().unwrap() += 1;
                    thread::sleep(Duration::from_millis(1500));
                    replicas.lock().unwrap()[which].revive();
                } else {
                    let which = (round % 2) as usize;
                    let refused =
                        replicas.lock().unwrap()[which].refuse_for(Duration::from_secs(1));
                    if refused {
                        *refusals.lock().unwrap() += 1;
                    }
                }
            }
        })
    };

    // ---- RSS and fds, every second ----
    let samples: Arc<Mutex<Vec<(Duration, u64, usize)>>> = Arc::default();
    let sampler = {
        let (samples, stop) = (samples.clone(), stop.clone());
        thread::spawn(move || {
            let start = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                samples
                    .lock()
                    .unwrap()
                    .push((start.elapsed(), rss_bytes(pid), fd_count(pid)));
                thread::sleep(Duration::from_secs(1));
            }
        })
    };

    // ---- the clients ----
    let fast_url = t.url("/sse?events=0&rate=10&chaos=20&chaos_seed=3&group=fast&s={i}");
    let slow_url = t.url("/sse?events=0&rate=0.5&chaos=4&chaos_seed=3&group=slow&s={i}");
    let slow = {
        let config = load(slow_url, SLOW_STREAMS, pid);
        thread::spawn(move || run(&config).expect("slow load runs"))
    };
    let fast = run(&load(fast_url, FAST_STREAMS, pid)).expect("fast load runs");
    let slow = slow.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    chaos.join().unwrap();
    sampler.join().unwrap();
    replicas
        .lock()
        .unwrap()
        .iter_mut()
        .for_each(Replica::revive);

    // ---- figures ----
    let faults =
        replicas
            .lock()
            .unwrap()
            .iter()
            .map(Replica::totals)
            .fold(FaultStats::default(), |a, s| FaultStats {
                connections: a.connections + s.connections,
                fin: a.fin + s.fin,
                rst: a.rst + s.rst,
                stall: a.stall + s.stall,
                half: a.half + s.half,
                refusal_windows: a.refusal_windows + s.refusal_windows,
            });
    let fds_back = wait_until(Duration::from_secs(30), || fd_count(pid) == fd_base);
    let fd_end = fd_count(pid);
    let text = Tether::metrics_text(admin);
    let metric = |name: &str| prom_value(&text, name).unwrap_or(0.0) as u64;
    let samples = samples.lock().unwrap().clone();
    let rss_after_warmup = samples.iter().find(|s| s.0 >= WARMUP).map_or(0, |s| s.1);
    let rss_end = samples.last().map_or(0, |s| s.1);
    let rss_max = samples.iter().map(|s| s.1).max().unwrap_or(0);
    for (name, r) in [("fast", &fast), ("slow", &slow)] {
        eprintln!(
            "{name}: {} streams, {} events, {} left and came back, {} comments ({:.2} per client \
             per second), longest silence per client p50/p99/max {:.0}/{:.0}/{:.0} ms ({} over \
             {} ms)",
            r.streams,
            r.events_total,
            r.leaves,
            r.comments,
            r.comments as f64 / r.streams as f64 / (r.duration_s + r.warmup_s),
            r.quiet_us.p50 as f64 / 1e3,
            r.quiet_us.p99 as f64 / 1e3,
            r.quiet_us.max as f64 / 1e3,
            r.quiet_over,
            HEARTBEAT.as_millis() * 5 / 2,
        );
    }
    eprintln!(
        "faults: {} FIN, {} RST, {} stalls, {} half events; {} refusal windows, {} kills; tether: \
         {} refused connects, {} resumes, {} duplicates dropped, {} replays, {} heartbeats",
        faults.fin,
        faults.rst,
        faults.stall,
        faults.half,
        *refusals.lock().unwrap(),
        *kills.lock().unwrap(),
        metric("tether_upstream_connect_errors_total"),
        metric("tether_resumes_total"),
        metric("tether_duplicates_dropped_total"),
        metric("tether_replay_served_total"),
        metric("tether_sse_heartbeats_total"),
    );
    eprintln!(
        "tether: RSS {} MiB at start, {} after warm-up, {} at the end (max {}); fds {fd_base} \
         at start, {fd_end} after the clients left",
        rss_base / MIB,
        rss_after_warmup / MIB,
        rss_end / MIB,
        rss_max / MIB
    );

    // ---- verdicts ----
    let exact: Vec<String> = [check_exact("fast", &fast), check_exact("slow", &slow)]
        .into_iter()
        .filter_map(Result::err)
        .collect();
    assert!(
        exact.is_empty(),
        "{}\ntether's log (last 40 lines):\n{}",
        exact.join("\n"),
        t.log_lines()
            .iter()
            .rev()
            .take(40)
            .rev()
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    for (kind, n) in [
        ("FIN", faults.fin),
        ("RST", faults.rst),
        ("stall", faults.stall),
        ("half event", faults.half),
    ] {
        assert!(n > 0, "no {kind} fault injected: {faults:?}");
    }
    assert!(
        faults.faults() >= 1000,
        "only {} connection faults",
        faults.faults()
    );
    assert!(*kills.lock().unwrap() >= 2 && *refusals.lock().unwrap() >= 4);
    assert!(fast.leaves > 0 && slow.leaves > 0);
    assert!(
        metric("tether_upstream_connect_errors_total") > 0,
        "no refused connect"
    );
    assert!(
        slow.comments > 0,
        "slow streams (events 2 s apart) got no heartbeat"
    );
    assert!(
        fds_back,
        "tether holds {fd_end} fds, {fd_base} before the load"
    );
    // Bounded, not timed: the rings are full after the warm-up (64 events each, rings of
    // clients that moved kept 10 s), so what is left to grow is the allocator's slack.
    assert!(
        rss_end <= rss_after_warmup + rss_after_warmup / 4 + 8 * MIB,
        "RSS grew from {} MiB after warm-up to {} MiB",
        rss_after_warmup / MIB,
        rss_end / MIB
    );
}
