//! The configuration file and its routes (issue 12): requests routed by path prefix and by host
//! (wildcards included) to their own upstreams, per-route settings seen on the wire, 404 for a
//! request no route matches, the command line over the file, `tether check`, and every kind of
//! bad file refused with its line and column.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::time::{Duration, Instant};

use common::config_file::ConfigFile;
use common::*;

/// `tether reverse --config FILE` with `extra` flags (two workers unless `extra` says).
fn start(file: &ConfigFile, extra: &[&str]) -> Tether {
    let mut args: Vec<String> = vec!["reverse".into(), "--config".into(), file.path()];
    if !extra.contains(&"--workers") {
        args.extend(["--workers".into(), "2".into()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    Tether::start_args(&args)
        .unwrap_or_else(|log| panic!("tether did not start:\n{}", log.join("\n")))
}

/// One request with this Host, on a fresh connection.
fn get(addr: SocketAddr, host: &str, path: &str) -> Response {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    send_raw(addr, raw.as_bytes()).0
}

/// The paths each simulator received, in order.
fn paths(up: &tether_perf::UpstreamHandle) -> Vec<String> {
    up.requests().into_iter().map(|r| r.path).collect()
}

/// `tether` with `args`: its exit code, stdout and stderr.
fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(args)
        .output()
        .expect("run tether");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn two_routes_by_path_prefix_reach_two_upstreams_and_the_rest_is_404() {
    let (a, b) = (origin(), origin());
    let file = ConfigFile::new(&format!(
        r#"
bind = "127.0.0.1:0"

[[route]]
name = "small"
path-prefix = "/small"
upstream = ["{}"]

[[route]]
name = "bytes"
path-prefix = "/bytes"
upstream = ["{}"]
"#,
        url_of(&a),
        url_of(&b)
    ));
    let t = start(&file, &[]);
    let r = get(t.addr, "test", "/small");
    assert_eq!((r.status, r.body.len()), (200, 100), "{}", r.text());
    let r = get(t.addr, "test", "/bytes?n=7");
    assert_eq!((r.status, r.body.len()), (200, 7), "{}", r.text());
    assert_eq!(paths(&a), ["/small"]);
    assert_eq!(paths(&b), ["/bytes?n=7"]);

    let r = get(t.addr, "test", "/headers");
    assert_eq!(r.status, 404);
    assert!(
        r.text()
            .contains("no route matches this request's host and path"),
        "{}",
        r.text()
    );
    assert_eq!(
        (paths(&a).len(), paths(&b).len()),
        (1, 1),
        "a request without a route reaches no upstream"
    );
    // A dot segment would let the upstream resolve the path past the prefix that chose it.
    let r = get(t.addr, "test", "/small/../bytes");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("'..' segment"), "{}", r.text());
    assert_eq!(
        (paths(&a).len(), paths(&b).len()),
        (1, 1),
        "a path with a dot segment reaches no upstream"
    );
    assert!(
        t.wait_for_log("route small: host any, path-prefix /small", IO_TIMEOUT),
        "the routes are logged at start: {:?}",
        t.log_lines()
    );
}

#[test]
fn host_routing_with_a_wildcard() {
    let (tenants, exact, rest) = (origin(), origin(), origin());
    let file = ConfigFile::new(&format!(
        r#"
bind = "127.0.0.1:0"

[[route]]
host = "api.example.com"
upstream = ["{}"]

[[route]]
host = "*.Example.com"
upstream = ["{}"]

[[route]]
upstream = ["{}"]
"#,
        url_of(&exact),
        url_of(&tenants),
        url_of(&rest)
    ));
    let t = start(&file, &[]);
    for (host, path) in [
        ("API.example.com:8080", "/small?exact"),
        ("a.example.com", "/small?a"),
        ("b.c.EXAMPLE.com.", "/small?bc"),
        ("example.com", "/small?apex"),
        ("example.org", "/small?other"),
    ] {
        assert_eq!(get(t.addr, host, path).status, 200, "{host}");
    }
    assert_eq!(paths(&exact), ["/small?exact"]);
    assert_eq!(paths(&tenants), ["/small?a", "/small?bc"]);
    assert_eq!(paths(&rest), ["/small?apex", "/small?other"]);
}

/// Reads `reader` until `n` heartbeat comments came (each read bounded by SSE_READ_TIMEOUT).
fn heartbeats(reader: &mut SseReader, n: usize) -> usize {
    let mut seen = 0;
    while seen < n {
        let block = reader
            .next_block()
            .expect("a heartbeat in time")
            .expect("the stream stays open");
        if block.is_comment_only() && block.comments.iter().any(|c| c.contains("keep-alive")) {
            seen += 1;
        }
    }
    seen
}

#[test]
fn a_route_has_its_own_heartbeat() {
    let up = origin();
    // A quiet stream: one event, then nothing for 10 s.
    let path = "/sse?events=0&rate=0.1&ts=0";
    let file = ConfigFile::new(&format!(
        r#"
bind = "127.0.0.1:0"
sse-heartbeat = "1h"

[[route]]
name = "fast"
host = "fast.test"
upstream = ["{0}"]
sse-heartbeat = "100ms"

[[route]]
name = "slow"
upstream = ["{0}"]
"#,
        url_of(&up)
    ));
    let t = start(&file, &[]);
    let request = |host: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n")
    };
    let mut slow = SseReader::open(t.addr, request("slow.test").as_bytes());
    let mut fast = SseReader::open(t.addr, request("fast.test").as_bytes());
    assert_eq!((slow.head.status, fast.head.status), (200, 200));
    let started = Instant::now();
    assert_eq!(heartbeats(&mut fast, 3), 3);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "three heartbeats 100 ms apart"
    );
    // Meanwhile the other route's stream (the top-level 1h) got its first event and nothing
    // else: what it received by now is read without waiting for more.
    while slow.bytes_within(Duration::from_millis(1)).expect("open") {}
    let blocks = SseReader::parse_body(&slow.body);
    assert!(
        blocks.iter().all(|b| !b.is_comment_only()),
        "no heartbeat on the slow route: {:?}",
        blocks.iter().map(|b| &b.comments).collect::<Vec<_>>()
    );
    assert!(
        blocks.iter().any(|b| b.data.is_some()),
        "its first event came"
    );
}

#[test]
fn the_command_line_overrides_the_file() {
    let up = origin();
    // The file's address is taken by another listener: tether would refuse to start on it.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let file = ConfigFile::new(&format!(
        "bind = \"{}\"\nsse-heartbeat = \"1h\"\nworkers = 1\nupstream = [\"{}\"]\n",
        taken.local_addr().unwrap(),
        url_of(&up)
    ));
    // No --workers: the file's `workers = 1` applies.
    let args: Vec<String> = [
        "reverse",
        "--config",
        &file.path(),
        "--bind",
        "127.0.0.1:0",
        "--sse-heartbeat",
        "100ms",
    ]
    .map(String::from)
    .to_vec();
    let t = Tether::start_args(&args)
        .unwrap_or_else(|log| panic!("tether did not start:\n{}", log.join("\n")));
    assert_ne!(t.addr, taken.local_addr().unwrap());
    assert!(
        t.wait_for_log("(1 workers", IO_TIMEOUT),
        "the file's own keys still apply: {:?}",
        t.log_lines()
    );
    let mut s = SseReader::open(t.addr, &sse_request("/sse?events=0&rate=0.1&ts=0", &[]));
    assert_eq!(
        heartbeats(&mut s, 2),
        2,
        "--sse-heartbeat 100ms, not the file's 1h"
    );

    // And in a route: the command line wins over the route's own key too.
    let (code, out, err) = run(&[
        "check",
        "--config",
        &ConfigFile::new(&format!(
            "bind = \"127.0.0.1:0\"\n[[route]]\nupstream = [\"{}\"]\nreconnect-timeout = \"9s\"\n",
            url_of(&up)
        ))
        .path(),
        "--reconnect-timeout",
        "7s",
    ]);
    assert_eq!(code, 0, "{err}");
    let route = &out[out.find("[[route]]").expect("a route section")..];
    assert!(
        route.lines().any(|l| l.starts_with("reconnect-timeout ")
            && l.contains("\"7s\"")
            && l.ends_with("# command line")),
        "{out}"
    );
}

#[test]
fn check_passes_the_example_and_prints_its_routes() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/tether.toml");
    let (code, out, err) = run(&["check", "--config", example]);
    assert_eq!(code, 0, "stderr: {err}");
    assert!(
        out.starts_with(&format!(
            "# {example} (with the command line): valid. 4 routes"
        )),
        "{out}"
    );
    for line in [
        "name = \"feeds\"",
        "host = \"feeds.example.com\"",
        "host = \"*.example.com\"",
        "path-prefix = \"/events/\"",
        "upstream = [\"http://127.0.0.1:3000\", \"http://127.0.0.1:3001/base\"]",
        "[[rule]]  # 3 of 3: applied in this order",
        "name = \"redact-api-keys\"",
        "match = { data-regex = \"sk-[A-Za-z0-9]{20,}\" }",
    ] {
        assert!(out.lines().any(|l| l == line), "{line} missing:\n{out}");
    }
    let feeds =
        &out[out.find("name = \"feeds\"").unwrap()..out.find("name = \"tenants\"").unwrap()];
    assert!(
        feeds.lines().any(|l| l.starts_with("sse-heartbeat ")
            && l.contains("\"5s\"")
            && l.ends_with("# route")),
        "{feeds}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("replay-memory ")
            && l.contains("\"256MiB\"")
            && l.ends_with("# file")),
        "{out}"
    );
    // Printed as TOML: the report is itself a valid file for the same configuration.
    let again = ConfigFile::new(&out);
    let (code, out2, err) = run(&["check", "--config", &again.path()]);
    assert_eq!(code, 0, "{err}");
    // The same values (now all from the file).
    let values = |report: &str| -> Vec<String> {
        report
            .lines()
            .skip(1)
            .map(|l| {
                l.rsplit_once(" # ")
                    .map_or(l, |(v, _)| v)
                    .trim_end()
                    .to_string()
            })
            .collect()
    };
    assert_eq!(values(&out2), values(&out));
}

#[test]
fn every_kind_of_bad_file_is_refused_with_its_line_and_column() {
    let ok_upstream = "upstream = [\"http://127.0.0.1:9\"]";
    let cases: Vec<(String, String)> = vec![
        (
            "bind = \"127.0.0.1:0\"\nsse-hearbeat = \"5s\"\n".into(),
            "2:1: unknown key `sse-hearbeat`: not a setting; did you mean `sse-heartbeat`?".into(),
        ),
        (
            format!("[[route]]\n{ok_upstream}\npath-prefx = \"/a\"\n"),
            "3:1: unknown key `path-prefx`: not a route key; did you mean `path-prefix`?".into(),
        ),
        (
            "workers = \"two\"\n".into(),
            "1:11: `workers` must be an integer, not a string".into(),
        ),
        (
            "assign-ids = 1\n".into(),
            "1:14: `assign-ids` must be true or false, not an integer".into(),
        ),
        (
            "identity-header = \"X-Api-Key\"\n".into(),
            "1:19: `identity-header` must be an array of strings, e.g. [\"a\", \"b\"], not a string".into(),
        ),
        (
            "replay-memory = \"256MB\"\n".into(),
            "1:17: `replay-memory` = \"256MB\": '256MB' has unknown unit 'MB': use bytes, KiB, MiB or GiB".into(),
        ),
        (
            "sse-heartbeat = \"5\"\n".into(),
            "1:17: `sse-heartbeat` = \"5\": '5' has no unit: write e.g. 500ms, 2s, 1m or 1h".into(),
        ),
        (
            "driver = \"io_uring\"\n".into(),
            "1:10: `driver` = \"io_uring\": expected one of \"auto\", \"uring\", \"epoll\"".into(),
        ),
        (
            "[[route]]\nupstream = [\"http://127.0.0.1:9\", \"ftp://b:1\"]\n".into(),
            "2:35: upstream 'ftp://b:1' must start with http:// or https://".into(),
        ),
        (
            format!("[[route]]\nname = \"a\"\n{ok_upstream}\n\n[[route]]\nname = \"a\"\n{ok_upstream}\n"),
            "6:8: route name \"a\" is already used by the route on line 1: names must be unique".into(),
        ),
        (
            "bind = \"127.0.0.1:0\"\n\n[[route]]\nname = \"feeds\"\npath-prefix = \"/events/\"\n".into(),
            "3:1: route \"feeds\" has no `upstream`: add upstream = [\"http://host:port\"]".into(),
        ),
        (
            "[[route]]\nupstream = []\n".into(),
            "1:1: route 1 has no `upstream`: add upstream = [\"http://host:port\"]".into(),
        ),
        (
            format!("[[route]]\n{ok_upstream}\nhost = \"a.*.example.com\"\n"),
            "3:8: host \"a.*.example.com\" has a '*' that is not the whole first label: write an exact name or \"*.example.com\"".into(),
        ),
        (
            format!("[[route]]\n{ok_upstream}\nhost = \"example.com:8080\"\n"),
            "3:8: host \"example.com:8080\" has a port: the request's port is ignored, write the name alone".into(),
        ),
        (
            format!("[[route]]\n{ok_upstream}\npath-prefix = \"events\"\n"),
            "3:15: path-prefix \"events\" must start with '/' (and hold no '?', '#' or whitespace)".into(),
        ),
        (
            format!("[[route]]\n{ok_upstream}\nreplay-memory = \"1GiB\"\n"),
            "3:1: `replay-memory` applies to the whole process, not to one route: set it at the top level, before the first [[route]]".into(),
        ),
        (
            "host = \"a.example.com\"\n".into(),
            "1:1: `host` belongs to a route: put it inside a [[route]] table".into(),
        ),
        (
            format!("{ok_upstream}\n\n[[route]]\n{ok_upstream}\n"),
            "1:1: a top-level `upstream` beside [[route]] tables: give each route its own `upstream` (a last route with path-prefix = \"/\" catches the rest)".into(),
        ),
        (
            "cpus = \"0\"\nno-pin = true\n".into(),
            "2:1: `no-pin` cannot be used together with `cpus` (line 1): keep one".into(),
        ),
        (
            format!("bind = \"127.0.0.1:0\"\n{ok_upstream}\nworkers = 0\n"),
            "3:11: --workers must be at least 1".into(),
        ),
        (
            format!("bind = \"127.0.0.1:0\"\n[[route]]\n{ok_upstream}\nidentity-header = [\"X Api Key\"]\n"),
            "4:19: --identity-header \"X Api Key\": not a header name (letters, digits and !#$%&'*+-.^_`|~ only)".into(),
        ),
        (
            "bind = \"127.0.0.1:0\"\nworkers = 2\n".into(),
            "no upstream: add [[route]] tables with an `upstream` each, a top-level upstream = [\"http://host:port\"], or --upstream".into(),
        ),
        (
            "bind = \"127.0.0.1:0\"\nworkers = [2\n".into(),
            "2:13: not valid TOML: unclosed array, expected `]`".into(),
        ),
        (
            "config = \"other.toml\"\n".into(),
            "1:1: `config` names the file on the command line; a file cannot name another".into(),
        ),
        // [[rule]] tables.
        (
            format!("{ok_upstream}\n[[rule]]\non = \"event\"\nacton = \"drop\"\n"),
            "4:1: unknown key `acton`: not a rule key; did you mean `action`?".into(),
        ),
        (
            format!("{ok_upstream}\n[[rule]]\non = \"request\"\naction = \"drop\"\n"),
            "4:10: action \"drop\" cannot act on = \"request\": it fits on = \"event\" only".into(),
        ),
        (
            format!("{ok_upstream}\n[[rule]]\non = \"request\"\naction = \"log\"\nmatch = {{ event-type = \"debug\" }}\n"),
            "5:11: match key `event-type` cannot be used on = \"request\": it fits on = \"event\" only".into(),
        ),
        (
            format!("{ok_upstream}\n[[rule]]\non = \"event\"\naction = \"redact\"\nmatch = {{ data-regex = 'sk-[' }}\n"),
            "5:24: data-regex 'sk-[' does not compile: unclosed character class".into(),
        ),
        (
            format!("[[route]]\nname = \"mcp\"\n{ok_upstream}\n\n[[rule]]\nroute = \"mpc\"\non = \"request\"\naction = \"log\"\n"),
            "6:9: route = \"mpc\" names no route of the file; did you mean \"mcp\"?".into(),
        ),
        (
            format!("[[route]]\nname = \"mcp\"\n{ok_upstream}\n[[route.rule]]\non = \"request\"\naction = \"log\"\n"),
            "4:9: a rule cannot be inside a [[route]]: write a top-level [[rule]] (after the routes) with route = \"mcp\"".into(),
        ),
        (
            format!("{ok_upstream}\n[[rule]]\non = \"response\"\naction = \"set-header\"\nheader = \"Content-Length\"\nvalue = \"0\"\n"),
            "5:10: action \"set-header\" cannot change Content-Length: it frames the body, and tether writes each message's framing itself".into(),
        ),
        (
            format!("bind = \"127.0.0.1:0\"\n[[route]]\n{ok_upstream}\nprotocol = \"grpc\"\n"),
            "4:12: `protocol` = \"grpc\": expected \"mcp\" or \"http\"".into(),
        ),
        (
            format!("bind = \"127.0.0.1:0\"\n[[route]]\n{ok_upstream}\nmax-inspect-bytes = \"65MiB\"\n"),
            "4:21: --max-inspect-bytes must be at most 67108864 bytes (64 MiB)".into(),
        ),
    ];
    for (text, expected) in cases {
        let file = ConfigFile::new(&text);
        let (code, out, err) = run(&["check", "--config", &file.path()]);
        let place = if expected.as_bytes()[0].is_ascii_digit() {
            format!("{}:{expected}", file.path())
        } else {
            format!("{}: {expected}", file.path())
        };
        assert_eq!(
            (code, err.trim_end(), out.as_str()),
            (1, format!("tether check: {place}").as_str(), ""),
            "file:\n{text}"
        );
    }
}

#[test]
fn reverse_refuses_a_bad_file_with_the_same_message() {
    let file = ConfigFile::new("bind = \"127.0.0.1:0\"\n\n[[route]]\nupstream = [\"http://127.0.0.1:9\"]\nsse-heartbeat = \"fast\"\n");
    let (code, _, err) = run(&["reverse", "--config", &file.path()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "{}:5:17: `sse-heartbeat` = \"fast\": 'fast' must start with digits, e.g. 500ms, 2s, 1m",
            file.path()
        )),
        "{err}"
    );
    // --upstream cannot be mixed with the file's routes.
    let (code, _, err) = run(&[
        "check",
        "--config",
        &file.path(),
        "--upstream",
        "http://127.0.0.1:9",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains(":3:1: --upstream on the command line cannot be combined"),
        "{err}"
    );
    // Without --config, --bind and --upstream are still required.
    let (code, _, err) = run(&["reverse", "--upstream", "http://127.0.0.1:9"]);
    assert_eq!(code, 2);
    assert!(err.contains("--bind"), "{err}");
}

#[test]
fn reverse_refuses_a_bad_rule_with_its_place() {
    let file = ConfigFile::new(
        "bind = \"127.0.0.1:0\"\nupstream = [\"http://127.0.0.1:9\"]\n\n[[rule]]\non = \"event\"\naction = \"deny\"\n",
    );
    let (code, _, err) = run(&["reverse", "--config", &file.path()]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!(
            "{}:6:10: action \"deny\" cannot act on = \"event\": it fits on = \"request\" only",
            file.path()
        )),
        "{err}"
    );
}

/// `tether check` lists the rules after the routes, every default written out, and the report
/// read as a file gives the same rules.
#[test]
fn check_lists_the_rules_and_the_listing_reads_back() {
    let file = ConfigFile::new(
        r#"
bind = "127.0.0.1:0"

[[route]]
name = "mcp"
path-prefix = "/mcp"
upstream = ["http://127.0.0.1:9"]
max-inspect-bytes = "64KiB"

[[rule]]
name = "no-destructive-tools"
route = "mcp"
on = "request"
match = { method = "POST", mcp-method = "tools/call", mcp-tool = ["delete_*"] }
action = "deny"

[[rule]]
on = "event"
action = "redact"
[rule.match]
data-regex = 'sk-[A-Za-z0-9]{20,}\s'
"#,
    );
    let (code, out, err) = run(&["check", "--config", &file.path()]);
    assert_eq!(code, 0, "{err}");
    let rules = &out[out.find("\n[[rule]]").expect(&out)..];
    let expected = r#"
[[rule]]  # 1 of 2: applied in this order
name = "no-destructive-tools"
route = "mcp"
on = "request"
match = { method = "POST", mcp-method = ["tools/call"], mcp-tool = ["delete_*"] }
action = "deny"
status = 403
message = "denied by rule no-destructive-tools"

[[rule]]  # 2 of 2: applied in this order
name = "rule-2"
# route: every route
on = "event"
match = { data-regex = "sk-[A-Za-z0-9]{20,}\\s" }
action = "redact"
replace = "[REDACTED]"
"#;
    assert_eq!(rules, expected, "{out}");
    assert!(
        out.lines().any(|l| l.starts_with("max-inspect-bytes ")
            && l.contains("\"64KiB\"")
            && l.ends_with("# route")),
        "{out}"
    );
    let again = ConfigFile::new(&out);
    let (code, out2, err) = run(&["check", "--config", &again.path()]);
    assert_eq!(code, 0, "{err}");
    let rules2 = &out2[out2.find("\n[[rule]]").expect(&out2)..];
    assert_eq!(rules2, rules);
}

/// A route's `name` labels its counters on /metrics; a route without one is labelled by its host
/// pattern and prefix. Requests that match no route count under none.
#[test]
fn route_names_label_the_route_metrics() {
    let (a, b) = (origin(), origin());
    let file = ConfigFile::new(&format!(
        r#"
bind = "127.0.0.1:0"

[[route]]
name = "small"
path-prefix = "/small"
upstream = ["{}"]

[[route]]
path-prefix = "/status/"
upstream = ["{}"]
"#,
        url_of(&a),
        url_of(&b)
    ));
    let t = start(&file, &["--admin", "127.0.0.1:0"]);
    for _ in 0..2 {
        assert_eq!(get(t.addr, "test", "/small").status, 200);
    }
    assert_eq!(get(t.addr, "test", "/status/503").status, 503);
    assert_eq!(get(t.addr, "test", "/other").status, 404);
    let metrics = Tether::metrics_text(t.admin_addr());
    let value = |name: &str| prom_value(&metrics, name).unwrap_or(-1.0);
    assert_eq!(
        value(r#"tether_route_requests_total{route="small"}"#),
        2.0,
        "{metrics}"
    );
    assert_eq!(
        value(r#"tether_route_responses_2xx_total{route="small"}"#),
        2.0
    );
    assert_eq!(
        value(r#"tether_route_requests_total{route="*/status/"}"#),
        1.0
    );
    assert_eq!(
        value(r#"tether_route_responses_5xx_total{route="*/status/"}"#),
        1.0
    );
    assert_eq!(
        value(r#"tether_route_responses_2xx_total{route="*/status/"}"#),
        0.0
    );
}

#[test]
fn protocol_mcp_marks_a_route_as_mcp() {
    let file = ConfigFile::new(
        "bind = \"127.0.0.1:0\"\n\n[[route]]\nname = \"tools\"\npath-prefix = \"/mcp\"\nupstream = [\"http://127.0.0.1:9\"]\nprotocol = \"mcp\"\n\n[[route]]\nname = \"web\"\nupstream = [\"http://127.0.0.1:9\"]\nprotocol = \"http\"\n",
    );
    let (code, out, err) = run(&["check", "--config", &file.path()]);
    assert_eq!(code, 0, "{err}");
    let routes: Vec<&str> = out.split("[[route]]").skip(1).collect();
    assert_eq!(routes.len(), 2, "{out}");
    let mcp_line = |route: &str| {
        route.lines().find(|l| l.starts_with("mcp ")).map(|l| {
            l.split('#')
                .next()
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        })
    };
    assert_eq!(mcp_line(routes[0]).as_deref(), Some("mcp = true"), "{out}");
    assert_eq!(mcp_line(routes[1]).as_deref(), Some("mcp = false"), "{out}");
}
