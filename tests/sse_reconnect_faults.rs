//! Found by the fault soak (scripts/soak.sh, 2026-12-04: 3 of 9333 returning clients got a 502
//! in 300 s): a reconnecting EventSource whose `Last-Event-ID` is in a replay ring gets a 502 when
//! the upstream accepts the resumption request and then closes (or resets) the connection before
//! any response byte. That happens whenever a replica dies with requests in flight, or a
//! listener drops its backlog. A 5xx makes an EventSource stop for good; tether promises "never a
//! 5xx" to such a client (README, "Reconnections"), and keeps that promise when the connect is
//! refused (`serve_from_ring`), but not when the connection was accepted first.
//!
//! Each case: a client reads ids 1..=5, leaves; the upstream's port is then held by an origin
//! that accepts every connection, reads the request and closes it without answering (FIN, or RST);
//! the client comes back with `Last-Event-ID: 5`. It must get a 200 event stream (the ring has
//! nothing it missed, so heartbeats), and once the real upstream is back on the port, ids 6.. with
//! nothing lost or repeated. It got `502 Bad Gateway` (found by the soak, 3 of 9333 returning
//! clients) until `forward` served a ring-backed reconnection from the ring on any upstream
//! failure before the answer, as it already did when no upstream could be reached.

mod common;

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use tether_perf::{spawn, UpstreamConfig};

/// How the stand-in origin ends each connection after reading the request head.
#[derive(Clone, Copy, Debug)]
enum Hangup {
    Fin,
    Rst,
}

/// Holds `addr` and answers nothing: every connection's request head is read, then the
/// connection is closed (`hangup`). Runs until `stop`; returns how many it hung up on.
fn hang_up_on_everything(
    addr: SocketAddr,
    hangup: Hangup,
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
) -> thread::JoinHandle<()> {
    // std's listener sets SO_REUSEADDR: the port the simulator held is free to bind at once.
    let listener = TcpListener::bind(addr).expect("take over the upstream's port");
    listener.set_nonblocking(true).unwrap();
    thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    if let Hangup::Rst = hangup {
                        let linger = libc::linger {
                            l_onoff: 1,
                            l_linger: 0,
                        };
                        use std::os::fd::AsRawFd;
                        // SAFETY: setsockopt on a socket we own, with a valid linger value.
                        unsafe {
                            libc::setsockopt(
                                s.as_raw_fd(),
                                libc::SOL_SOCKET,
                                libc::SO_LINGER,
                                &linger as *const libc::linger as *const libc::c_void,
                                std::mem::size_of::<libc::linger>() as libc::socklen_t,
                            );
                        }
                    }
                    drop(s);
                    served.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("accept: {e}"),
            }
        }
    })
}

fn returning_client_is_never_answered_5xx(hangup: Hangup) {
    let up = spawn(UpstreamConfig::default()).expect("simulator");
    let addr = up.addr();
    let t = Tether::start(
        &[format!("http://{addr}")],
        &[
            "--sse-heartbeat",
            "1s",
            "--reconnect-initial",
            "50ms",
            "--reconnect-max-delay",
            "200ms",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let admin = t.admin_addr();
    let path = format!("/sse?events=0&rate=20&ts=0&case={hangup:?}");

    // A client reads 1..=5 and leaves; wait until tether's relay for it is gone, so that nothing
    // but the returning client talks to the upstream afterwards.
    let mut first = SseReader::get(t.addr, &path, &[]);
    assert_eq!(num_ids(&first.read_through_id("5")), vec![1, 2, 3, 4, 5]);
    drop(first);
    assert!(
        wait_until(Duration::from_secs(10), || {
            prom_value(&Tether::metrics_text(admin), "tether_sse_streams_active") == Some(0.0)
        }),
        "the first client's stream is still relayed"
    );

    // The upstream dies; its port now accepts and hangs up without answering.
    up.kill();
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let holder = hang_up_on_everything(addr, hangup, stop.clone(), served.clone());

    let mut back = SseReader::get(t.addr, &path, &["Last-Event-ID: 5"]);
    let status = back.head.status;
    stop.store(true, Ordering::Relaxed);
    holder.join().unwrap();
    assert!(
        served.load(Ordering::Relaxed) > 0,
        "the stand-in origin saw no request"
    );
    assert_eq!(
        prom_value(&Tether::metrics_text(admin), "tether_replay_served_total"),
        Some(1.0),
        "the reconnection was not found in a ring (then a 502 would be what the README says)"
    );
    assert_eq!(
        status,
        200,
        "{hangup:?}: a reconnecting EventSource (its Last-Event-ID in the ring) got {status} when \
         the upstream hung up before answering; it would stop for good\ntether's log:\n{}",
        t.log_lines().join("\n")
    );
    // The catch-all route of --upstream counts both streams as the 200s they are, the one
    // served from the ring included.
    let metrics = Tether::metrics_text(admin);
    assert_eq!(
        (
            prom_value(&metrics, r#"tether_route_responses_2xx_total{route="*/"}"#),
            prom_value(&metrics, r#"tether_route_responses_5xx_total{route="*/"}"#)
        ),
        (Some(2.0), Some(0.0)),
        "{metrics}"
    );

    // The real upstream comes back on its port: the stream continues after 5, exactly.
    let _again = spawn(UpstreamConfig {
        bind: addr,
        ..Default::default()
    })
    .expect("the simulator comes back on its port");
    back.deadline = Instant::now() + Duration::from_secs(20);
    assert_eq!(
        num_ids(&back.read_through_id("10")),
        vec![6, 7, 8, 9, 10],
        "{hangup:?}"
    );
}

#[test]
fn a_returning_client_is_not_answered_502_when_the_upstream_closes_before_answering() {
    returning_client_is_never_answered_5xx(Hangup::Fin);
}

#[test]
fn a_returning_client_is_not_answered_502_when_the_upstream_resets_before_answering() {
    returning_client_is_never_answered_5xx(Hangup::Rst);
}
