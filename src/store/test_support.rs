//! Test support: a real redis-server for the store's tests, started on a free loopback port and killed when
//! dropped. A missing redis-server fails the test (scripts/redis.sh installs it): a store tested
//! against nothing proves nothing.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli::DriverChoice;
use crate::runtime::{build_runtime, DriverKind};

/// How long a fresh redis-server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// A new server on a free port, with nothing saved to disk.
    pub(super) fn start() -> RedisServer {
        let port = free_port();
        let mut server = RedisServer { port, child: None };
        server.restart();
        server
    }

    pub(super) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A plain client connection for checking what the store wrote.
    pub(super) fn client(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap()
    }

    /// Kills the server (SIGKILL: no goodbye to its clients).
    pub(super) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty: nothing is saved).
    pub(super) fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): the replay store tests need it; \
                     run scripts/redis.sh (apt-get install redis-server)"
                )
            });
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {addr} within {START_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Polls `cond` until it holds or `limit` passes; says what it waited for when it fails.
pub(super) fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs the future made by `f` on a worker-like runtime with epoll, then with io_uring (where the
/// kernel allows it, and unless MONOIO_FORCE_LEGACY_DRIVER=1 rules it out).
pub(super) fn on_both_drivers<F: std::future::Future<Output = ()>>(f: impl Fn() -> F) {
    let mut epoll = build_runtime(DriverChoice::Epoll, 64).expect("epoll runtime");
    assert_eq!(epoll.driver, DriverKind::Epoll);
    epoll.runtime.block_on(f());
    match build_runtime(DriverChoice::Uring, 64) {
        Ok(mut uring) => {
            assert_eq!(uring.driver, DriverKind::IoUring);
            uring.runtime.block_on(f());
        }
        Err(e) => eprintln!("io_uring not tested here: {e}"),
    }
}
