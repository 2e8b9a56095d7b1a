//! `tether demo`: tether's main job on an embedded default, in one process. A flaky SSE origin
//! (`upstream`) drops its connection every few events, tether sits in front of it, and a client
//! reads the stream through tether and checks every event arrives exactly once, in order.

mod upstream;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;

use crate::cli::{Cli, Command, DemoArgs};
use crate::config::Config;
use crate::server::Server;
use upstream::FlakyUpstream;

/// What the client saw.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    events: u64,
    /// Places where ids jumped forward.
    gaps: u64,
    lost: u64,
    duplicated: u64,
    /// Longest silence between two events at the client, ms.
    max_gap_ms: u64,
    broken: bool,
}

/// Runs the demo; Ok(true) when nothing was lost or duplicated.
pub fn run(args: &DemoArgs) -> Result<bool, String> {
    let origin = FlakyUpstream::start(args.rate).map_err(|e| format!("demo upstream: {e}"))?;
    let proxy_args = [
        "tether",
        "reverse",
        "--bind",
        "127.0.0.1:0",
        "--upstream",
        &format!("http://{}", origin.addr),
        "--admin",
        "127.0.0.1:0",
        "--workers",
        "2",
        "--sse-heartbeat",
        "1s",
    ];
    let Command::Reverse(reverse) = Cli::try_parse_from(proxy_args)
        .map_err(|e| e.to_string())?
        .command
    else {
        unreachable!("the demo builds a reverse command");
    };
    let config = Config::from_args(&reverse).map_err(|e| e.to_string())?;
    let server = Server::start(config)?;
    let admin = server
        .admin_addr
        .ok_or("the demo's admin endpoint did not start")?;

    println!("tether demo");
    println!(
        "  upstream  http://{}  a flaky SSE origin: it drops every connection after 3-8 events,",
        origin.addr
    );
    println!("                         sometimes mid-event, sometimes with a reset, and sometimes");
    println!("                         replays events the client already has");
    println!(
        "  tether    http://{}  resumes each drop on a fresh upstream connection",
        server.addr
    );
    println!("  client    GET /stream through tether, checking every event arrives once, in order");
    println!();

    let live = Arc::new(Mutex::new(Seen::default()));
    let proxy_addr = server.addr;
    let seconds = args.seconds;
    let shared = live.clone();
    let client =
        std::thread::spawn(move || read_stream(proxy_addr, Duration::from_secs(seconds), &shared));

    let started = Instant::now();
    let stop_at = started + Duration::from_secs(args.seconds);
    while Instant::now() < stop_at {
        std::thread::sleep(Duration::from_millis(250));
        let m = scrape(admin);
        let seen = *live.lock().unwrap_or_else(|p| p.into_inner());
        print!(
            "\r  {:>4.1}s  events {:>5}  upstream drops {:>4}  resumes {:>4}  duplicates dropped {:>4}  gaps {}  lost {}   ",
            started.elapsed().as_secs_f64(),
            seen.events,
            origin.stats.drops.load(Ordering::Relaxed),
            m.resumes,
            m.duplicates,
            seen.gaps,
            seen.lost
        );
        let _ = std::io::stdout().flush();
    }
    let seen = client.join().unwrap_or(Seen {
        broken: true,
        ..Seen::default()
    });
    let m = scrape(admin);
    origin.stop();
    server.shutdown();

    let ok = seen.events > 0 && seen.lost == 0 && seen.duplicated == 0 && !seen.broken;
    println!();
    println!();
    println!("summary");
    println!("  events received        {}", seen.events);
    println!(
        "  upstream drops         {}",
        origin.stats.drops.load(Ordering::Relaxed)
    );
    println!("  resumed by tether      {}", m.resumes);
    println!(
        "  duplicates dropped     {} (events the upstream sent again)",
        m.duplicates
    );
    println!("  longest client gap     {} ms", seen.max_gap_ms);
    println!("  gaps                   {}", seen.gaps);
    println!("  lost                   {}", seen.lost);
    println!("  duplicated             {}", seen.duplicated);
    println!(
        "  client stream broke    {}",
        if seen.broken { "yes" } else { "no" }
    );
    println!();
    if ok {
        println!("The client saw one unbroken stream: nothing lost, nothing twice.");
    } else {
        println!("FAILED: the client did not see one exact stream.");
    }
    println!("Run tether in front of your own upstream:");
    println!(
        "  cargo run --release -- reverse --bind 127.0.0.1:8080 --upstream http://127.0.0.1:3000"
    );
    Ok(ok)
}

/// Reads `GET /stream` through tether for `duration`, checking ids 1, 2, 3, ...
fn read_stream(addr: SocketAddr, duration: Duration, live: &Mutex<Seen>) -> Seen {
    let mut seen = Seen::default();
    let Ok(mut s) = TcpStream::connect(addr) else {
        seen.broken = true;
        return seen;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    if s.write_all(b"GET /stream HTTP/1.1\r\nHost: demo\r\nAccept: text/event-stream\r\n\r\n")
        .is_err()
    {
        seen.broken = true;
        return seen;
    }
    let stop = Instant::now() + duration;
    let mut raw = Vec::new();
    let mut head_done = false;
    let mut expected = 1u64;
    let mut last_at = Instant::now();
    let mut buf = [0u8; 16 * 1024];
    while Instant::now() < stop {
        match s.read(&mut buf) {
            Ok(0) => {
                seen.broken = true;
                break;
            }
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => {
                seen.broken = true;
                break;
            }
        }
        if !head_done {
            let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
                continue;
            };
            if !raw.starts_with(b"HTTP/1.1 200") {
                seen.broken = true;
                break;
            }
            raw.drain(..end + 4);
            head_done = true;
        }
        // The chunk framing is not needed to find "id: N" lines: each event is one line of its own.
        while let Some(nl) = raw.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = raw.drain(..=nl).collect();
            if let Some(id) = line.strip_prefix(b"id: ") {
                let Ok(id) = String::from_utf8_lossy(id).trim().parse::<u64>() else {
                    continue;
                };
                seen.events += 1;
                seen.max_gap_ms = seen.max_gap_ms.max(last_at.elapsed().as_millis() as u64);
                last_at = Instant::now();
                match id.cmp(&expected) {
                    std::cmp::Ordering::Equal => expected += 1,
                    std::cmp::Ordering::Greater => {
                        seen.gaps += 1;
                        seen.lost += id - expected;
                        expected = id + 1;
                    }
                    std::cmp::Ordering::Less => seen.duplicated += 1,
                }
                *live.lock().unwrap_or_else(|p| p.into_inner()) = seen;
            }
        }
    }
    seen
}

#[derive(Default)]
struct Figures {
    resumes: u64,
    duplicates: u64,
}

/// Reads a few totals from tether's /metrics.
fn scrape(admin: SocketAddr) -> Figures {
    let mut text = String::new();
    if let Ok(mut s) = TcpStream::connect(admin) {
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: admin\r\n\r\n");
        let _ = s.read_to_string(&mut text);
    }
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    Figures {
        resumes: value("tether_resumes_total"),
        duplicates: value("tether_duplicates_dropped_total"),
    }
}
