//! The demo's flaky SSE origin: numbered events at a steady rate, and a connection that never
//! lasts: every few events it closes (FIN), resets (RST) or dies mid-event, and now and then it
//! replays events the client already had (as upstreams that ignore Last-Event-ID do).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How many events a replaying connection sends again.
const REPLAY_BACK: u64 = 5;

/// Counters the demo shows.
#[derive(Debug, Default)]
pub struct UpstreamStats {
    pub connections: AtomicU64,
    pub drops: AtomicU64,
    pub replays: AtomicU64,
}

pub struct FlakyUpstream {
    pub addr: SocketAddr,
    pub stats: Arc<UpstreamStats>,
    stop: Arc<AtomicBool>,
}

impl FlakyUpstream {
    /// Starts serving on 127.0.0.1 (a free port) with `rate` events per second.
    pub fn start(rate: u32) -> std::io::Result<FlakyUpstream> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(UpstreamStats::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (stats.clone(), stop.clone());
        std::thread::Builder::new()
            .name("demo-upstream".into())
            .spawn(move || {
                while !st.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            let (s, st) = (s.clone(), st.clone());
                            let _ = std::thread::Builder::new()
                                .name("demo-upstream-conn".into())
                                .spawn(move || serve(conn, rate, &s, &st));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })?;
        Ok(FlakyUpstream { addr, stats, stop })
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(mut conn: TcpStream, rate: u32, stats: &UpstreamStats, stop: &AtomicBool) {
    let n = stats.connections.fetch_add(1, Ordering::Relaxed);
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(k) => head.extend_from_slice(&buf[..k]),
        }
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let last: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("last-event-id:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    // Every fourth connection ignores part of the cursor and sends some events again.
    let first = if n % 4 == 3 && last > 0 {
        stats.replays.fetch_add(1, Ordering::Relaxed);
        last.saturating_sub(REPLAY_BACK).max(1)
    } else {
        last + 1
    };
    if conn
        .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n\r\n")
        .is_err()
    {
        return;
    }
    // Three to eight events, then a fault of one of three kinds.
    let lifetime = 3 + (n * 7 + 3) % 6;
    let interval = Duration::from_secs(1) / rate.max(1);
    for (i, id) in (first..).enumerate() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let event = format!("id: {id}\ndata: {{\"token\":{id},\"text\":\"word {id}\"}}\n\n");
        let chunk = format!("{:x}\r\n{event}\r\n", event.len());
        if i as u64 == lifetime {
            stats.drops.fetch_add(1, Ordering::Relaxed);
            match n % 3 {
                0 => {}
                1 => {
                    // Half an event, then gone.
                    let _ = conn.write_all(&chunk.as_bytes()[..chunk.len() / 2]);
                }
                _ => crate::conn_io::set_linger_zero(&conn),
            }
            return;
        }
        if conn.write_all(chunk.as_bytes()).is_err() {
            return;
        }
        std::thread::sleep(interval);
    }
}
