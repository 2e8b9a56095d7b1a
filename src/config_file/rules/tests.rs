//! `[[rule]]` tables: every refusal with its exact message and place, every accepted form, and
//! `tether check`'s listing read back into the same rules. Each test file is loaded the way
//! `tether check --config FILE` loads it.

use std::ffi::OsString;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::config_file::load;

/// Two named routes before the rules, so that `route = "..."` has something to name.
const ROUTES: &str = "bind = \"127.0.0.1:0\"\n\
[[route]]\nname = \"mcp\"\npath-prefix = \"/mcp\"\nupstream = [\"http://127.0.0.1:9\"]\n\
[[route]]\nname = \"feeds\"\nupstream = [\"http://127.0.0.1:9\"]\n";

/// `text` written to a file of its own and loaded as `tether check --config FILE` loads it: the
/// rules, or the error as `LINE:COLUMN: message` (the file's name left out).
fn load_text(text: &str) -> Result<Vec<RuleSpec>, String> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "tether-rules-unit-{}-{}.toml",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, text).unwrap();
    let argv: Vec<OsString> = ["tether", "check", "--config", path.to_str().unwrap()]
        .iter()
        .map(OsString::from)
        .collect();
    let result = load(&argv);
    let _ = std::fs::remove_file(&path);
    result.map(|loaded| loaded.rules).map_err(|e| {
        let text = e.to_string();
        let prefix = format!("{}:", path.display());
        text.strip_prefix(&prefix).unwrap_or(&text).to_string()
    })
}

/// The rules of `rules` after [`ROUTES`].
fn rules(rules: &str) -> Vec<RuleSpec> {
    load_text(&format!("{ROUTES}{rules}")).unwrap_or_else(|e| panic!("{e}\n{rules}"))
}

/// The error of `rules` after [`ROUTES`], its line counted from the first line of `rules`.
fn error(rules: &str) -> String {
    let e = load_text(&format!("{ROUTES}{rules}")).expect_err(rules);
    let offset = ROUTES.lines().count();
    let (line, rest) = e.split_once(':').unwrap_or_else(|| panic!("no place: {e}"));
    let line: usize = line.parse().unwrap_or_else(|_| panic!("no line: {e}"));
    format!("{}:{rest}", line - offset)
}

#[test]
fn the_issue_example_is_read_in_file_order() {
    let rules = rules(
        r#"
[[rule]]
name = "no-destructive-tools"
route = "mcp"
on = "request"
match = { method = "POST", path-prefix = "/mcp", mcp-method = "tools/call", mcp-tool = ["delete_*", "exec_sql"] }
action = "deny"
status = 403
message = "tool not allowed"

[[rule]]
on = "event"
match = { mcp-result-of = "tools/list" }
action = "filter-tools"
tools = ["delete_*", "exec_sql"]

[[rule]]
on = "event"
match = { data-regex = 'sk-[A-Za-z0-9]{20,}' }
action = "redact"
replace = "[REDACTED]"

[[rule]]
on = "event"
match = { event-type = "debug" }
action = "drop"

[[rule]]
on = "response"
action = "set-header"
header = "X-Served-By"
value = "tether"
"#,
    );
    let names: Vec<&str> = rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "no-destructive-tools",
            "rule-2",
            "rule-3",
            "rule-4",
            "rule-5"
        ]
    );
    let deny = &rules[0];
    assert_eq!(deny.route.as_deref(), Some("mcp"));
    assert_eq!(deny.on, Stage::Request);
    assert_eq!(deny.matches.method.as_deref(), Some("POST"));
    assert_eq!(deny.matches.path_prefix.as_deref(), Some("/mcp"));
    assert_eq!(deny.matches.mcp_method, ["tools/call"]);
    assert_eq!(deny.matches.mcp_tool, ["delete_*", "exec_sql"]);
    assert_eq!(
        deny.action,
        ActionSpec::Deny {
            status: 403,
            message: "tool not allowed".into()
        }
    );
    assert_eq!(rules[1].on, Stage::Event);
    assert_eq!(rules[1].route, None);
    assert_eq!(
        rules[1].matches.mcp_result_of.as_deref(),
        Some("tools/list")
    );
    assert_eq!(
        rules[1].action,
        ActionSpec::FilterTools {
            tools: vec!["delete_*".into(), "exec_sql".into()]
        }
    );
    let regex = rules[2].matches.data_regex.as_ref().unwrap();
    assert!(regex.is_match(b"key sk-abcdefghijklmnopqrstu!"));
    assert!(!regex.is_match(b"key sk-short"));
    assert_eq!(
        rules[2].action,
        ActionSpec::Redact {
            replace: "[REDACTED]".into()
        }
    );
    assert_eq!(rules[3].matches.event_type.as_deref(), Some("debug"));
    assert_eq!(rules[3].action, ActionSpec::Drop);
    assert_eq!(rules[4].on, Stage::Response);
    assert!(rules[4].matches.method.is_none() && rules[4].matches.header.is_none());
    assert_eq!(
        rules[4].action,
        ActionSpec::SetHeader {
            header: "X-Served-By".into(),
            value: "tether".into()
        }
    );
}

#[test]
fn defaults_and_the_other_accepted_forms() {
    let rules = rules(
        r#"
[[rule]]
on = "request"
action = "deny"
[rule.match]
mcp-tool = "exec_sql"
mcp-method = ["tools/call", "prompts/get"]
header = { name = "X-Tenant", value = "a b" }

[[rule]]
name = "bodies"
on = "request"
match = { body-over-inspect-limit = true, header = { name = "Content-Type", present = true } }
action = "log"

[[rule]]
on = "response"
match = { data-contains = "secret" }
action = "redact"

[[rule]]
on = "response"
match = { data-regex = "tok-[0-9]+", mcp-result-of = "tools/list" }
action = "log"

[[rule]]
route = "feeds"
on = "request"
action = "remove-header"
header = "X-Debug"

[[rule]]
on = "response"
action = "set-header"
header = "Host"
value = ""
"#,
    );
    assert_eq!(
        rules[0].action,
        ActionSpec::Deny {
            status: 403,
            message: "denied by rule rule-1".into()
        }
    );
    assert_eq!(rules[0].matches.mcp_tool, ["exec_sql"]);
    assert_eq!(rules[0].matches.mcp_method, ["tools/call", "prompts/get"]);
    assert_eq!(
        rules[0].matches.header,
        Some(HeaderMatch {
            name: "X-Tenant".into(),
            value: Some("a b".into())
        })
    );
    assert!(rules[1].matches.body_over_inspect_limit);
    assert_eq!(
        rules[1].matches.header,
        Some(HeaderMatch {
            name: "Content-Type".into(),
            value: None
        })
    );
    assert_eq!(rules[1].action, ActionSpec::Log);
    assert_eq!(rules[2].matches.data_contains.as_deref(), Some("secret"));
    assert_eq!(
        rules[2].action,
        ActionSpec::Redact {
            replace: "[REDACTED]".into()
        }
    );
    assert_eq!(rules[3].on, Stage::Response);
    assert_eq!(rules[4].route.as_deref(), Some("feeds"));
    assert_eq!(
        rules[4].action,
        ActionSpec::RemoveHeader {
            header: "X-Debug".into()
        }
    );
    // Host is a request's routing key, but a response rule may set it.
    assert_eq!(
        rules[5].action,
        ActionSpec::SetHeader {
            header: "Host".into(),
            value: String::new()
        }
    );
}

#[test]
fn no_rules_without_tables_or_without_a_file() {
    assert!(rules("").is_empty());
    let argv: Vec<OsString> = [
        "tether",
        "check",
        "--bind",
        "127.0.0.1:0",
        "--upstream",
        "http://127.0.0.1:9",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    assert!(load(&argv).unwrap().rules.is_empty());
}

#[test]
fn unknown_keys_get_a_suggestion_from_their_own_table() {
    let cases = [
        (
            "[[rule]]\non = \"event\"\nacton = \"drop\"\n",
            "3:1: unknown key `acton`: not a rule key; did you mean `action`?",
        ),
        (
            "[[rule]]\non = \"event\"\naction = \"drop\"\ncolour = 1\n",
            "4:1: unknown key `colour`: not a rule key (a rule takes name, route, on, match, action, and its action's status, message, replace, header, value or tools)",
        ),
        (
            "[[rule]]\non = \"event\"\naction = \"drop\"\nmatch = { evnt-type = \"x\" }\n",
            "4:11: unknown key `evnt-type`: not a match key; did you mean `event-type`?",
        ),
        (
            "[[rule]]\non = \"event\"\naction = \"drop\"\n[rule.match]\nmcp-tools = [\"a\"]\n",
            "5:1: unknown key `mcp-tools`: not a match key; did you mean `mcp-tool`?",
        ),
        (
            "[[rule]]\non = \"event\"\naction = \"drop\"\nmatch = { header = { name = \"A\", vaule = \"b\" } }\n",
            "4:34: unknown key `vaule`: not a key of a header match; did you mean `value`?",
        ),
        (
            "[[rule]]\non = \"event\"\naction = \"drop\"\nmatch = { header = { name = \"A\", exactly = \"b\" } }\n",
            "4:34: unknown key `exactly`: not a key of a header match (header = { name = \"X-Name\", value = \"exact\" } or { name = \"X-Name\", present = true })",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error(text), expected, "{text}");
    }
}

#[test]
fn wrong_types_are_placed_at_the_value() {
    let cases = [
        (
            "[[rule]]\non = 1\naction = \"drop\"\n",
            "2:6: `on` must be a string, not an integer",
        ),
        (
            "[[rule]]\non = \"event\"\naction = \"drop\"\nmatch = \"debug\"\n",
            "4:9: `match` must be a table, e.g. match = { method = \"POST\", path-prefix = \"/mcp\" }, not a string",
        ),
        (
            "[[rule]]\non = \"request\"\naction = \"deny\"\nstatus = \"403\"\n",
            "4:10: `status` must be an integer from 400 to 599, not a string",
        ),
        (
            "[[rule]]\non = \"request\"\naction = \"deny\"\nmatch = { mcp-method = 3 }\n",
            "4:24: `mcp-method` must be a string or an array of strings, not an integer",
        ),
        (
            "[[rule]]\non = \"request\"\naction = \"deny\"\nmatch = { mcp-tool = [\"a\", 2] }\n",
            "4:28: `mcp-tool` must be a string (each element of the array), not an integer",
        ),
        (
            "[[rule]]\non = \"request\"\naction = \"deny\"\nmatch = { body-over-inspect-limit = \"yes\" }\n",
            "4:37: `body-over-inspect-limit` must be true, not a string",
        ),
        (
            "[[rule]]\non = \"request\"\naction = \"deny\"\nmatch = { header = \"X-A\" }\n",
            "4:20: `header` must be a table, e.g. { name = \"X-Name\", value = \"exact\" }, not a string",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error(text), expected, "{text}");
    }
    assert_eq!(
        load_text("bind = \"127.0.0.1:0\"\nupstream = [\"http://127.0.0.1:9\"]\nrule = 1\n")
            .unwrap_err(),
        "3:8: `rule` must be [[rule]] tables, not an integer"
    );
}

#[test]
fn on_and_action_are_required_and_one_of_theirs() {
    let cases = [
        (
            "[[rule]]\naction = \"drop\"\n",
            "1:1: rule 1 has no `on`: add on = \"request\", \"response\" or \"event\"",
        ),
        (
            "[[rule]]\nname = \"x\"\non = \"event\"\n",
            "1:1: rule \"x\" has no `action`: add action = \"deny\", \"drop\", \"redact\", \"set-header\", \"remove-header\", \"filter-tools\" or \"log\"",
        ),
        (
            "[[rule]]\non = \"requests\"\naction = \"log\"\n",
            "2:6: `on` = \"requests\": expected one of \"request\", \"response\", \"event\"",
        ),
        (
            "[[rule]]\non = \"request\"\naction = \"block\"\n",
            "3:10: `action` = \"block\": expected one of \"deny\", \"drop\", \"redact\", \"set-header\", \"remove-header\", \"filter-tools\", \"log\"",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error(text), expected, "{text}");
    }
}

#[test]
fn an_action_must_fit_its_stage_and_take_its_own_keys() {
    let cases = [
        (
            "[[rule]]\non = \"request\"\naction = \"drop\"\n",
            "3:10: action \"drop\" cannot act on = \"request\": it fits on = \"event\" only",
        ),
        (
            "[[rule]]\non = \"event\"\naction = \"deny\"\n",
            "3:10: action \"deny\" cannot act on = \"event\": it fits on = \"request\" only",
        ),
        (
            "[[rule]]\non = \"request\"\naction = \"filter-tools\"\ntools = [\"a\"]\n",
            "3:10: action \"filter-tools\" cannot act on = \"request\": it fits on = \"event\" or \"response\" only",
        ),
        (
            "[[rule]]\non = \"event\"\naction = \"set-header\"\nheader = \"X-A\"\nvalue = \"1\"\n",
            "3:10: action \"set-header\" cannot act on = \"event\": it fits on = \"request\" or \"response\" only",
        ),
        (
            "[[rule]]\non = \"request\"\naction = \"log\"\nstatus = 403\n",
            "4:1: `status` does not go with action = \"log\" (it is a key of action \"deny\"): remove it",
        ),
        (
            "[[rule]]\non = \"request\"\naction = \"remove-header\"\nheader = \"X-A\"\nvalue = \"1\"\n",
            "5:1: `value` does not go with action = \"remove-header\" (it is a key of action \"set-header\"): remove it",
        ),
        (
            "[[rule]]\non = \"request\"\naction = \"set-header\"\nvalue = \"1\"\n",
            "1:1: rule 1 has no `header`: add header = \"X-Name\", the header to set or remove",
        ),
        (
            "[[rule]]\non = \"request\"\naction = \"set-header\"\nheader = \"X-A\"\n",
            "1:1: rule 1 has no `value`: add value = \"...\", the value to set",
        ),
        (
            "[[rule]]\non = \"event\"\naction = \"filter-tools\"\n",
            "1:1: rule 1 has no `tools`: add tools = [\"delete_*\"], the globs of the tools to remove from a tools/list result",
        ),
        (
            "[[rule]]\non = \"event\"\naction = \"redact\"\nmatch = { event-type = \"x\" }\n",
            "3:10: action \"redact\" needs `data-regex` or `data-contains` in its match: they say what to replace",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error(text), expected, "{text}");
    }
}

#[test]
fn match_keys_must_be_visible_at_the_stage() {
    let rule = |on: &str, action: &str, matches: &str| {
        format!("[[rule]]\non = \"{on}\"\naction = \"{action}\"\nmatch = {{ {matches} }}\n")
    };
    let cases = [
        (
            rule("request", "log", "event-type = \"debug\""),
            "4:11: match key `event-type` cannot be used on = \"request\": it fits on = \"event\" only",
        ),
        (
            rule("request", "log", "data-regex = \"x\""),
            "4:11: match key `data-regex` cannot be used on = \"request\": it fits on = \"event\", or on = \"response\" with action \"redact\" or \"log\" (a JSON body)",
        ),
        (
            rule("response", "remove-header", "data-contains = \"x\"").replace(
                "match",
                "header = \"X-A\"\nmatch",
            ),
            "5:11: match key `data-contains` cannot be used on = \"response\": it fits on = \"event\", or on = \"response\" with action \"redact\" or \"log\" (a JSON body)",
        ),
        (
            rule("request", "log", "mcp-result-of = \"tools/list\""),
            "4:11: match key `mcp-result-of` cannot be used on = \"request\": it fits on = \"event\" or \"response\" only",
        ),
        (
            rule("event", "log", "body-over-inspect-limit = true"),
            "4:11: match key `body-over-inspect-limit` cannot be used on = \"event\": it fits on = \"request\" only",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error(&text), expected, "{text}");
    }
    // mcp-method and mcp-tool fit every stage.
    for on in ["request", "response", "event"] {
        let text = rule(on, "log", "mcp-method = \"tools/call\", mcp-tool = \"a\"");
        assert_eq!(rules(&text)[0].matches.mcp_tool, ["a"]);
    }
}

#[test]
fn malformed_values_are_refused_at_the_value() {
    let deny = |extra: &str| format!("[[rule]]\non = \"request\"\naction = \"deny\"\n{extra}\n");
    let set = |header: &str, value: &str| {
        format!("[[rule]]\non = \"request\"\naction = \"set-header\"\nheader = {header}\nvalue = {value}\n")
    };
    let cases = [
        (
            "[[rule]]\non = \"event\"\naction = \"redact\"\nmatch = { data-regex = 'sk-[' }\n".to_string(),
            "4:24: data-regex 'sk-[' does not compile: unclosed character class".to_string(),
        ),
        (
            "[[rule]]\non = \"event\"\naction = \"drop\"\nmatch = { data-regex = '' }\n".into(),
            "4:24: `data-regex` = '': is empty: give a value, or leave the key out".into(),
        ),
        (
            deny("status = 200"),
            "4:10: status 200 is not an error status: a denied request gets 400 to 599".into(),
        ),
        (
            deny("status = 600"),
            "4:10: status 600 is not an error status: a denied request gets 400 to 599".into(),
        ),
        (
            deny("match = { method = \"GE T\" }"),
            "4:20: `method` = \"GE T\": not a method (letters, digits and !#$%&'*+-.^_`|~ only; compared exactly, so \"POST\", not \"post\")".into(),
        ),
        (
            deny("match = { path-prefix = \"mcp\" }"),
            "4:25: path-prefix \"mcp\" must start with '/' (and hold no '?', '#' or whitespace)".into(),
        ),
        (
            deny("match = { mcp-method = [] }"),
            "4:24: `mcp-method` = []: an empty list matches nothing: give at least one, or leave the key out".into(),
        ),
        (
            deny("match = { mcp-method = [\"tools/call\", \"\"] }"),
            "4:39: `mcp-method` = \"\": an empty method matches no message: name one, e.g. \"tools/call\"".into(),
        ),
        (
            deny("match = { mcp-tool = [\"\"] }"),
            "4:23: `mcp-tool` glob \"\" is empty: a glob names tools, e.g. \"delete_*\"".into(),
        ),
        (
            deny("match = { mcp-tool = [\"ok\", \"delete *\"] }"),
            "4:29: `mcp-tool` glob \"delete *\" has ' ', which no tool name has (letters, digits, '_', '-', '.', and the wildcards '*' and '?')".into(),
        ),
        (
            "[[rule]]\non = \"event\"\naction = \"filter-tools\"\ntools = []\n".into(),
            "4:9: `tools` = []: an empty list matches nothing: give at least one, or leave the key out".into(),
        ),
        (
            "[[rule]]\non = \"event\"\naction = \"filter-tools\"\ntools = \"a/b\"\n".into(),
            "4:9: `tools` glob \"a/b\" has '/', which no tool name has (letters, digits, '_', '-', '.', and the wildcards '*' and '?')".into(),
        ),
        (
            deny("match = { event-type = \"\" }").replace("request", "event").replace("deny", "drop"),
            "4:24: `event-type` = \"\": is empty: give a value, or leave the key out".into(),
        ),
        (
            deny("match = { body-over-inspect-limit = false }"),
            "4:37: `body-over-inspect-limit` = false: only true is a condition: leave the key out to match bodies of any size".into(),
        ),
        (
            deny("name = \"\""),
            "4:8: `name` = \"\": is empty: give a value, or leave the key out".into(),
        ),
        (
            deny("name = \"a\\tb\""),
            "4:8: `name` = \"a\\tb\": a rule name cannot hold control characters (it labels /metrics and log lines)".into(),
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error(&text), expected, "{text}");
    }
    let cases = [
        (
            set("\"X Served\"", "\"a\""),
            "4:10: `header` \"X Served\": not a header name (letters, digits and !#$%&'*+-.^_`|~ only)",
        ),
        (
            set("\"X-A\"", "\"a\\r\\nX-Injected: 1\""),
            "5:9: `value` \"a\\r\\nX-Injected: 1\": a header value cannot hold CR, LF or NUL",
        ),
        (
            set("\"content-length\"", "\"0\""),
            "4:10: action \"set-header\" cannot change content-length: it frames the body, and tether writes each message's framing itself",
        ),
        (
            set("\"Transfer-Encoding\"", "\"chunked\""),
            "4:10: action \"set-header\" cannot change Transfer-Encoding: it frames the body, and tether writes each message's framing itself",
        ),
        (
            set("\"Host\"", "\"example.com\""),
            "4:10: action \"set-header\" cannot change Host: the request's route was chosen by its Host, so a request rule may not change it",
        ),
        (
            "[[rule]]\non = \"response\"\naction = \"remove-header\"\nheader = \"Connection\"\n".into(),
            "4:10: action \"remove-header\" cannot change Connection: it is hop-by-hop: tether writes each connection's own",
        ),
        (
            "[[rule]]\non = \"response\"\naction = \"remove-header\"\nheader = \"TE\"\n".into(),
            "4:10: action \"remove-header\" cannot change TE: it is hop-by-hop: tether writes each connection's own",
        ),
        (
            "[[rule]]\non = \"request\"\naction = \"log\"\nmatch = { header = { name = \"X:A\", present = true } }\n".into(),
            "4:29: `name` \"X:A\": not a header name (letters, digits and !#$%&'*+-.^_`|~ only)",
        ),
        (
            "[[rule]]\non = \"request\"\naction = \"log\"\nmatch = { header = { name = \"X-A\", value = \"a\\u0000\" } }\n".into(),
            "4:44: `value` \"a\\0\": a header value cannot hold CR, LF or NUL",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error(&text), expected, "{text}");
    }
}

#[test]
fn a_header_match_takes_a_value_or_present_true() {
    let rule = |header: &str| {
        format!("[[rule]]\non = \"request\"\naction = \"log\"\nmatch = {{ header = {header} }}\n")
    };
    let cases = [
        (
            rule("{ value = \"a\" }"),
            "4:20: `header` = { value = \"a\" }: has no `name`: write header = { name = \"X-Name\", value = \"exact\" } or header = { name = \"X-Name\", present = true }",
        ),
        (
            rule("{ name = \"X-A\" }"),
            "4:20: `header` = { name = \"X-A\" }: has neither `value` nor `present`: write header = { name = \"X-Name\", value = \"exact\" } or header = { name = \"X-Name\", present = true }",
        ),
        (
            rule("{ name = \"X-A\", value = \"a\", present = true }"),
            "4:49: `header` = { name = \"X-A\", value = \"a\", present = true }: has both `value` and `present`: keep `value` (that value) or present = true (any value)",
        ),
        (
            rule("{ name = \"X-A\", present = false }"),
            "4:46: `present` = false: a header match needs the header: write present = true (any value), or value = \"...\" (this value)",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error(&text), expected, "{text}");
    }
}

#[test]
fn a_rule_names_an_existing_route_and_a_name_of_its_own() {
    // The place is counted from the rules' first line; the line in the message is the file's
    // (ROUTES takes 8 lines).
    let cases = [
        (
            "[[rule]]\nroute = \"mpc\"\non = \"request\"\naction = \"log\"\n",
            "2:9: route = \"mpc\" names no route of the file; did you mean \"mcp\"?",
        ),
        (
            "[[rule]]\nroute = \"billing\"\non = \"request\"\naction = \"log\"\n",
            "2:9: route = \"billing\" names no route of the file (its routes: \"mcp\", \"feeds\")",
        ),
        (
            "[[rule]]\nname = \"a\"\non = \"request\"\naction = \"log\"\n\n[[rule]]\nname = \"a\"\non = \"event\"\naction = \"log\"\n",
            "7:8: rule name \"a\" is already used by the rule on line 10: names must be unique",
        ),
        // The first rule has no name, so it is rule-1.
        (
            "[[rule]]\non = \"request\"\naction = \"log\"\n\n[[rule]]\nname = \"rule-1\"\non = \"event\"\naction = \"log\"\n",
            "6:8: rule name \"rule-1\" is already used by the rule on line 9 (a rule without a name is called rule-N, N its place among the rules): names must be unique",
        ),
        (
            "[[rule]]\nname = \"rule-2\"\non = \"request\"\naction = \"log\"\n\n[[rule]]\non = \"event\"\naction = \"log\"\n",
            "6:1: rule name \"rule-2\" is already used by the rule on line 10 (a rule without a name is called rule-N, N its place among the rules): names must be unique",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(error(text), expected, "{text}");
    }
    // Without named routes.
    let text = "bind = \"127.0.0.1:0\"\nupstream = [\"http://127.0.0.1:9\"]\n[[rule]]\nroute = \"mcp\"\non = \"request\"\naction = \"log\"\n";
    assert_eq!(
        load_text(text).unwrap_err(),
        "4:9: route = \"mcp\" names no route of the file (it has no named route: give the [[route]] a name = \"...\")"
    );
}

#[test]
fn a_rule_inside_a_route_is_refused() {
    let text = "bind = \"127.0.0.1:0\"\n[[route]]\nname = \"mcp\"\nupstream = [\"http://127.0.0.1:9\"]\n[[route.rule]]\non = \"request\"\naction = \"log\"\n";
    assert_eq!(
        load_text(text).unwrap_err(),
        "5:9: a rule cannot be inside a [[route]]: write a top-level [[rule]] (after the routes) with route = \"mcp\""
    );
    // The route's name is found wherever the table writes it.
    let text = "bind = \"127.0.0.1:0\"\n[[route]]\nrule = { on = \"request\", action = \"log\" }\nname = \"mcp\"\nupstream = [\"http://127.0.0.1:9\"]\n";
    assert_eq!(
        load_text(text).unwrap_err(),
        "3:1: a rule cannot be inside a [[route]]: write a top-level [[rule]] (after the routes) with route = \"mcp\""
    );
    let text = "bind = \"127.0.0.1:0\"\n[[route]]\nupstream = [\"http://127.0.0.1:9\"]\nrule = { on = \"request\", action = \"log\" }\n";
    assert_eq!(
        load_text(text).unwrap_err(),
        "4:1: a rule cannot be inside a [[route]]: write a top-level [[rule]] (after the routes) with route = \"NAME\", and give the route that name"
    );
}

#[test]
fn the_listing_reads_back_into_the_same_rules() {
    let original = rules(
        r#"
[[rule]]
name = "no-destructive-tools"
route = "mcp"
on = "request"
match = { method = "POST", path-prefix = "/mcp", mcp-method = "tools/call", mcp-tool = ["delete_*", "exec_sql"], header = { name = "X-Tenant", value = "a \"b\" \\ c" } }
action = "deny"

[[rule]]
on = "request"
match = { body-over-inspect-limit = true, header = { name = "Content-Type", present = true } }
action = "deny"
status = 413
message = "too large to inspect: \"split it\""

[[rule]]
on = "event"
match = { data-regex = 'sk-[A-Za-z0-9]{20,}\s"\\', data-contains = "sk-", event-type = "message" }
action = "redact"
replace = "[gone]"

[[rule]]
on = "response"
match = { mcp-result-of = "tools/list" }
action = "filter-tools"
tools = "exec_*"

[[rule]]
on = "event"
action = "drop"

[[rule]]
route = "feeds"
on = "response"
action = "set-header"
header = "X-Served-By"
value = "tether \"edge\""

[[rule]]
on = "request"
action = "remove-header"
header = "X-Debug"
"#,
    );
    let mut listing = String::new();
    crate::config_file::listing::write_rules(&original, &mut listing);
    let again = load_text(&format!("{ROUTES}{listing}"))
        .unwrap_or_else(|e| panic!("the listing does not read back: {e}\n{listing}"));
    // RuleSpec holds a Regex (no PartialEq); its Debug shows the pattern.
    assert_eq!(format!("{again:#?}"), format!("{original:#?}"), "{listing}");
    assert!(
        listing.contains("match = { method = \"POST\", path-prefix = \"/mcp\", header = { name = \"X-Tenant\", value = \"a \\\"b\\\" \\\\ c\" }, mcp-method = [\"tools/call\"], mcp-tool = [\"delete_*\", \"exec_sql\"] }"),
        "{listing}"
    );
    assert!(
        listing.contains("\nname = \"rule-2\"\n# route: every route\non = \"request\"\n"),
        "{listing}"
    );
    assert!(
        listing.contains("message = \"denied by rule no-destructive-tools\"\n"),
        "{listing}"
    );
    assert!(listing.contains("\n# match: every event\n"), "{listing}");
}
