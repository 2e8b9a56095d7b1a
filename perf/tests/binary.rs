//! The `sse-upstream` binary as a process: the start line, the `--log` file, flags.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{data_ids, parse_sse, Client};

/// The child process, killed (by its own pid) when dropped.
struct Upstream {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(args: &[&str]) -> Upstream {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sse-upstream"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sse-upstream");
    let stdout = child.stdout.take().unwrap();
    // Read the start line on a thread so a silent binary cannot hang the test.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout);
        let mut first = String::new();
        let _ = lines.read_line(&mut first);
        let _ = tx.send(first);
        // Keep draining so the child never blocks on a full pipe.
        let mut rest = String::new();
        let _ = lines.read_to_string(&mut rest);
    });
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("start line within 10 s");
    let addr = first
        .strip_prefix("listening on ")
        .and_then(|a| a.trim_end().parse().ok())
        .unwrap_or_else(|| panic!("start line {first:?}"));
    Upstream { child, addr }
}

fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sse-upstream-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

#[test]
fn start_line_requests_and_log_file() {
    let log = temp_path("requests.jsonl");
    let up = run(&[
        "--bind",
        "127.0.0.1:0",
        "--threads",
        "2",
        "--log",
        log.to_str().unwrap(),
    ]);
    let mut c = Client::connect(up.addr);
    assert_eq!(c.get("/small").head.status, 200);
    let head = c.request_head("GET", "/sse?events=3&x=\"q\"", "Last-Event-ID: 1\r\n");
    let (body, _) = c.read_body(&head);
    assert_eq!(data_ids(&parse_sse(&body)), vec![2, 3]);

    // The log is written per line while the server runs.
    let want = [
        r#"{"method":"GET","path":"/small","last_event_id":null,"conn":1}"#,
        r#"{"method":"GET","path":"/sse?events=3&x=\"q\"","last_event_id":"1","conn":1}"#,
    ];
    let t = Instant::now();
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        if lines.len() >= 2 {
            assert_eq!(lines, want);
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "log has {lines:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn refuse_for_flag() {
    let t = Instant::now();
    let up = run(&["--refuse-for", "400ms"]);
    assert!(std::net::TcpStream::connect(up.addr).is_err());
    loop {
        if std::net::TcpStream::connect(up.addr).is_ok() {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(t.elapsed() >= Duration::from_millis(390));
}

#[test]
fn bad_flags_fail_fast() {
    for args in [
        &["--refuse-for", "2x"][..],
        &["--bind", "nowhere"],
        &["--threads", "-1"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sse-upstream"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn help_documents_the_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_sse-upstream"))
        .arg("--help")
        .output()
        .unwrap();
    let mut text = String::new();
    out.stdout.as_slice().read_to_string(&mut text).unwrap();
    for flag in ["--bind", "--threads", "--log", "--refuse-for"] {
        assert!(text.contains(flag), "{flag} missing from --help");
    }
}
