//! A real EventSource client (the `eventsource` npm package, installed by scripts/test.sh into
//! tests/node) reads a stream through tether while the upstream drops it again and again: it must
//! never see an error event (which would mean the stream broke and it had to reconnect), and it
//! must get every message once, in order.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

#[test]
fn a_browser_style_eventsource_sees_no_error_across_upstream_drops() {
    let node_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    if !node_dir.join("node_modules/eventsource").exists() {
        // scripts/test.sh (the README's test command, and CI) installs it and sets this variable,
        // so there the test can never be skipped.
        assert!(
            std::env::var("TETHER_REQUIRE_NODE").is_err(),
            "tests/node/node_modules is missing: run `npm ci --prefix tests/node`"
        );
        eprintln!(
            "skipped: the eventsource package is not installed (scripts/test.sh installs it)"
        );
        return;
    }
    let up = origin();
    let t = Tether::start(&[url_of(&up)], &[]);
    let url = t.url("/sse?events=40&rate=200&ts=0&close_after=4&mid_event=1");
    let out = Command::new("node")
        .arg(node_dir.join("watch-stream.mjs"))
        .args([url.as_str(), "40", "15000"])
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "EventSource did not reach id 40: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids: Vec<u64> = stdout
        .split("\"ids\":[")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .map(|s| {
            s.split(',')
                .filter(|x| !x.is_empty())
                .map(|x| x.parse().unwrap())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(ids, (1..=40).collect::<Vec<u64>>(), "{stdout}");
    assert!(
        stdout.contains("\"errors\":0"),
        "the client saw an error event: {stdout}"
    );
    assert!(
        stdout.contains("\"opens\":1"),
        "the client had to reconnect: {stdout}"
    );
    // The upstream really dropped it: 40 events at 4 per connection.
    assert!(
        up.requests().len() >= 10,
        "{} upstream requests",
        up.requests().len()
    );
}
