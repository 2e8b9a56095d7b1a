//! `[[rule]]` tables: read in file order into checked [`RuleSpec`]s (`tether check` writes them
//! back with `super::listing::write_rules`; re-reading that gives the same rules).
//!
//! A rule is refused when the file is read, at the key or value to blame, when:
//! 1. a key is not a rule's (or its match's, or its header match's), or has the wrong TOML type;
//! 2. `on` or `action` is missing or not one of theirs, or a key of another action is given;
//! 3. the action cannot act at the rule's stage (`ActionSpec::stages`);
//! 4. a match key cannot be seen at the rule's stage ([`match_key_fits`]);
//! 5. a value is malformed: a regex that does not compile, a status outside 400..=599, a header
//!    name that is not a token, a header value with CR/LF/NUL, a header tether writes itself, a
//!    tool glob with characters no tool name has, an empty string or list (which would match
//!    nothing, or everything);
//! 6. `redact` has no `data-regex`/`data-contains` to say what it replaces;
//! 7. `route` names no route of the file, or two rules have one name.

use std::ops::Range;

use toml::de::{DeString, DeValue};
use toml::Spanned;

use super::keys::{closest, type_name};
use super::{in_file_order, ConfigFileError, FileRoute, FileText, KeyScope, LineColumn, LoadError};
use crate::rules::spec::{ActionSpec, HeaderMatch, MatchSpec, RuleSpec, Stage};

/// A rule's keys. Besides the common ones, each action takes its own ([`action_keys`]).
const RULE_KEYS: &[&str] = &[
    "name", "route", "on", "match", "action", "status", "message", "replace", "header", "value",
    "tools",
];

/// The keys of `match = { ... }`.
const MATCH_KEYS: &[&str] = &[
    "method",
    "path-prefix",
    "header",
    "mcp-method",
    "mcp-tool",
    "event-type",
    "data-contains",
    "data-regex",
    "mcp-result-of",
    "body-over-inspect-limit",
];

/// The keys of `header = { ... }` in a match.
const HEADER_MATCH_KEYS: &[&str] = &["name", "value", "present"];

/// The values of `on`.
const STAGES: &[Stage] = &[Stage::Request, Stage::Response, Stage::Event];

/// The values of `action`.
const ACTIONS: &[&str] = &[
    "deny",
    "drop",
    "redact",
    "set-header",
    "remove-header",
    "filter-tools",
    "log",
];

/// A `deny` without `status`.
const DEFAULT_DENY_STATUS: u16 = 403;

/// A `redact` without `replace`.
const DEFAULT_REPLACE: &str = "[REDACTED]";

/// Headers no rule may set or remove, lower-case, with why: tether writes each message's
/// framing and each connection's hop-by-hop headers itself (RFC 9112 section 6, RFC 9110
/// section 7.6.1); a rule changing them would desynchronise a side.
const PROTECTED_HEADERS: &[(&str, &str)] = &[
    (
        "content-length",
        "it frames the body, and tether writes each message's framing itself",
    ),
    (
        "transfer-encoding",
        "it frames the body, and tether writes each message's framing itself",
    ),
    (
        "trailer",
        "it announces fields of the chunked framing, which tether writes itself",
    ),
    (
        "connection",
        "it is hop-by-hop: tether writes each connection's own",
    ),
    (
        "upgrade",
        "it is hop-by-hop: tether writes each connection's own",
    ),
    (
        "keep-alive",
        "it is hop-by-hop: tether writes each connection's own",
    ),
    (
        "te",
        "it is hop-by-hop: tether writes each connection's own",
    ),
];

/// Why a request rule may not change Host (a response has none that matters).
const HOST_REASON: &str =
    "the request's route was chosen by its Host, so a request rule may not change it";

/// The keys action `action` takes besides the common ones.
fn action_keys(action: &str) -> &'static [&'static str] {
    match action {
        "deny" => &["status", "message"],
        "redact" => &["replace"],
        "set-header" => &["header", "value"],
        "remove-header" => &["header"],
        "filter-tools" => &["tools"],
        _ => &[],
    }
}

/// The actions that take `key` (one of the action keys), as message text.
fn actions_taking(key: &str) -> &'static str {
    match key {
        "status" | "message" => "action \"deny\"",
        "replace" => "action \"redact\"",
        "header" => "actions \"set-header\" and \"remove-header\"",
        "value" => "action \"set-header\"",
        _ => "action \"filter-tools\"",
    }
}

/// Whether match key `key` can be seen at stage `on` by a rule with this action; Err: where it
/// fits instead, as message text.
///
/// - `event-type`: an SSE event's field, so `event` only.
/// - `data-contains`, `data-regex`: an event's data, or a JSON response body, which only a
///   `redact` or `log` response rule reads (no other response action looks at the body).
/// - `mcp-result-of`: a JSON-RPC response, in an event or a JSON response body.
/// - `body-over-inspect-limit`: the request body's size, so `request` only.
/// - Every other key (the request's head, its MCP messages) fits every stage.
pub(crate) fn match_key_fits(
    key: &str,
    on: Stage,
    action: &ActionSpec,
) -> Result<(), &'static str> {
    let reads_body = matches!(action, ActionSpec::Redact { .. } | ActionSpec::Log);
    let (fits, where_) = match key {
        "event-type" => (on == Stage::Event, "on = \"event\" only"),
        "data-contains" | "data-regex" => (
            on == Stage::Event || (on == Stage::Response && reads_body),
            "on = \"event\", or on = \"response\" with action \"redact\" or \"log\" (a JSON body)",
        ),
        "mcp-result-of" => (
            on == Stage::Event || on == Stage::Response,
            "on = \"event\" or \"response\" only",
        ),
        "body-over-inspect-limit" => (on == Stage::Request, "on = \"request\" only"),
        _ => (true, ""),
    };
    if fits {
        Ok(())
    } else {
        Err(where_)
    }
}

type Entry<'a, 'i> = (&'a Spanned<DeString<'i>>, &'a Spanned<DeValue<'i>>);

/// Reads the `[[rule]]` tables (each already known to be a table), in file order. `routes`: the
/// file's routes, which a rule's `route` must name.
pub(super) fn read_rules(
    file: &FileText<'_>,
    tables: &[&Spanned<DeValue<'_>>],
    routes: &[FileRoute],
) -> Result<Vec<RuleSpec>, LoadError> {
    let mut rules: Vec<RuleSpec> = Vec::with_capacity(tables.len());
    // Each rule's name: where it is, and whether it was made up (`rule-N`).
    let mut names: Vec<(LineColumn, bool)> = Vec::with_capacity(tables.len());
    for (index, table) in tables.iter().enumerate() {
        let (rule, name_at) = read_rule(file, index, table, routes)?;
        let generated = name_at.is_none();
        let at = name_at.unwrap_or_else(|| file.at(table.span()));
        if let Some(first) = rules.iter().position(|r| r.name == rule.name) {
            return Err(LoadError {
                file: Some(file.path.clone()),
                at: Some(at),
                error: ConfigFileError::DuplicateRuleName {
                    name: rule.name,
                    first_line: names[first].0.line,
                    generated: generated || names[first].1,
                },
            });
        }
        names.push((at, generated));
        rules.push(rule);
    }
    Ok(rules)
}

/// One `[[rule]]` table (the `index`-th), checked; with where its `name` is, if it has one.
fn read_rule(
    file: &FileText<'_>,
    index: usize,
    table: &Spanned<DeValue<'_>>,
    routes: &[FileRoute],
) -> Result<(RuleSpec, Option<LineColumn>), LoadError> {
    let DeValue::Table(keys) = table.get_ref() else {
        unreachable!("checked by the caller");
    };
    let entries = in_file_order(keys);
    for (key, _) in &entries {
        let k: &str = key.get_ref();
        if !RULE_KEYS.contains(&k) {
            return Err(unknown_key(file, key, KeyScope::Rule, RULE_KEYS));
        }
    }
    let get = |name: &str| -> Option<Entry<'_, '_>> {
        entries
            .iter()
            .find(|(k, _)| {
                let k: &str = k.get_ref();
                k == name
            })
            .copied()
    };

    let given_name = match get("name") {
        Some((_, value)) => {
            let text = nonempty(file, "name", value)?;
            if text.chars().any(char::is_control) {
                return Err(bad_value(
                    file,
                    "name",
                    value,
                    "a rule name cannot hold control characters (it labels /metrics and log lines)",
                ));
            }
            Some((text, file.at(value.span())))
        }
        None => None,
    };
    let label = match &given_name {
        Some((name, _)) => format!("rule \"{name}\""),
        None => format!("rule {}", index + 1),
    };
    let name = given_name
        .as_ref()
        .map_or_else(|| format!("rule-{}", index + 1), |(name, _)| name.clone());

    let missing = |key: &'static str, hint: &'static str| {
        file.error(
            table.span(),
            ConfigFileError::MissingRuleKey {
                rule: label.clone(),
                key,
                hint,
            },
        )
    };
    let (_, on_value) =
        get("on").ok_or_else(|| missing("on", "on = \"request\", \"response\" or \"event\""))?;
    let on_text = string(file, "on", on_value)?;
    let Some(on) = STAGES.iter().copied().find(|s| s.as_str() == on_text) else {
        return Err(bad_value(
            file,
            "on",
            on_value,
            "expected one of \"request\", \"response\", \"event\"",
        ));
    };
    let (_, action_value) = get("action").ok_or_else(|| {
        missing(
            "action",
            "action = \"deny\", \"drop\", \"redact\", \"set-header\", \"remove-header\", \"filter-tools\" or \"log\"",
        )
    })?;
    let action_text = string(file, "action", action_value)?;
    let Some(action_name) = ACTIONS.iter().copied().find(|a| *a == action_text) else {
        let quoted: Vec<String> = ACTIONS.iter().map(|a| format!("\"{a}\"")).collect();
        let reason = format!("expected one of {}", quoted.join(", "));
        return Err(bad_value(file, "action", action_value, &reason));
    };
    for (key, _) in &entries {
        let k: &str = key.get_ref();
        let of_an_action = ["status", "message", "replace", "header", "value", "tools"];
        if of_an_action.contains(&k) && !action_keys(action_name).contains(&k) {
            return Err(file.error(
                key.span(),
                ConfigFileError::KeyNotForAction {
                    key: k.to_string(),
                    action: action_name,
                    belongs_to: actions_taking(k),
                },
            ));
        }
    }

    let action = match action_name {
        "deny" => {
            let status = match get("status") {
                Some((_, value)) => status(file, value)?,
                None => DEFAULT_DENY_STATUS,
            };
            let message = match get("message") {
                Some((_, value)) => string(file, "message", value)?,
                None => format!("denied by rule {name}"),
            };
            ActionSpec::Deny { status, message }
        }
        "drop" => ActionSpec::Drop,
        "redact" => ActionSpec::Redact {
            replace: match get("replace") {
                Some((_, value)) => string(file, "replace", value)?,
                None => DEFAULT_REPLACE.to_string(),
            },
        },
        "set-header" | "remove-header" => {
            let (_, header_value) = get("header").ok_or_else(|| {
                missing("header", "header = \"X-Name\", the header to set or remove")
            })?;
            let header = header_name(file, "header", header_value)?;
            let lower = header.to_ascii_lowercase();
            let reason = PROTECTED_HEADERS
                .iter()
                .find(|(h, _)| *h == lower)
                .map(|(_, why)| *why)
                .or_else(|| (on == Stage::Request && lower == "host").then_some(HOST_REASON));
            if let Some(reason) = reason {
                return Err(file.error(
                    header_value.span(),
                    ConfigFileError::ProtectedHeader {
                        action: action_name,
                        header,
                        reason,
                    },
                ));
            }
            if action_name == "remove-header" {
                ActionSpec::RemoveHeader { header }
            } else {
                let (_, value) = get("value")
                    .ok_or_else(|| missing("value", "value = \"...\", the value to set"))?;
                let value = header_value_text(file, "value", value)?;
                ActionSpec::SetHeader { header, value }
            }
        }
        "filter-tools" => {
            let (_, value) = get("tools").ok_or_else(|| {
                missing(
                    "tools",
                    "tools = [\"delete_*\"], the globs of the tools to remove from a tools/list result",
                )
            })?;
            ActionSpec::FilterTools {
                tools: globs(file, "tools", value)?,
            }
        }
        _ => ActionSpec::Log,
    };
    if !action.stages().contains(&on) {
        return Err(file.error(
            action_value.span(),
            ConfigFileError::ActionNotForStage {
                action: action.name(),
                on,
                fits: action.stages(),
            },
        ));
    }

    let matches = match get("match") {
        Some((_, value)) => read_match(file, value, on, &action)?,
        None => MatchSpec::default(),
    };
    if matches!(action, ActionSpec::Redact { .. })
        && matches.data_regex.is_none()
        && matches.data_contains.is_none()
    {
        return Err(file.error(action_value.span(), ConfigFileError::RedactWithoutData));
    }

    let route = match get("route") {
        Some((_, value)) => {
            let wanted = string(file, "route", value)?;
            let known: Vec<&str> = routes.iter().filter_map(|r| r.name.as_deref()).collect();
            if !known.contains(&wanted.as_str()) {
                return Err(file.error(
                    value.span(),
                    ConfigFileError::UnknownRoute {
                        known: known.iter().map(|n| n.to_string()).collect(),
                        name: wanted,
                    },
                ));
            }
            Some(wanted)
        }
        None => None,
    };
    let rule = RuleSpec {
        name,
        route,
        on,
        matches,
        action,
    };
    Ok((rule, given_name.map(|(_, at)| at)))
}

/// `match = { ... }` (or a `[rule.match]` table) of a rule at stage `on` with `action`.
fn read_match(
    file: &FileText<'_>,
    value: &Spanned<DeValue<'_>>,
    on: Stage,
    action: &ActionSpec,
) -> Result<MatchSpec, LoadError> {
    let DeValue::Table(keys) = value.get_ref() else {
        return Err(wrong_type(
            file,
            "match",
            "a table, e.g. match = { method = \"POST\", path-prefix = \"/mcp\" }",
            value,
        ));
    };
    let mut spec = MatchSpec::default();
    for (key, value) in in_file_order(keys) {
        let k: &str = key.get_ref();
        let Some(known) = MATCH_KEYS.iter().copied().find(|m| *m == k) else {
            return Err(unknown_key(file, key, KeyScope::Match, MATCH_KEYS));
        };
        if let Err(fits) = match_key_fits(known, on, action) {
            return Err(file.error(
                key.span(),
                ConfigFileError::MatchKeyNotForStage {
                    key: known,
                    on,
                    fits,
                },
            ));
        }
        match known {
            "method" => {
                let method = string(file, known, value)?;
                if !crate::http::is_token(method.as_bytes()) {
                    return Err(bad_value(
                        file,
                        known,
                        value,
                        "not a method (letters, digits and !#$%&'*+-.^_`|~ only; compared exactly, so \"POST\", not \"post\")",
                    ));
                }
                spec.method = Some(method);
            }
            "path-prefix" => {
                let prefix = string(file, known, value)?;
                let valid = prefix.starts_with('/')
                    && !prefix.contains(|c: char| c == '?' || c == '#' || c.is_whitespace());
                if !valid {
                    return Err(file.error(value.span(), ConfigFileError::BadPathPrefix { prefix }));
                }
                spec.path_prefix = Some(prefix);
            }
            "header" => spec.header = Some(read_header_match(file, value)?),
            "mcp-method" => {
                let methods = strings(file, known, value)?;
                for (method, span) in &methods {
                    if method.is_empty() {
                        return Err(file.error(
                            span.clone(),
                            ConfigFileError::BadValue {
                                key: known.into(),
                                value: "\"\"".into(),
                                reason: "an empty method matches no message: name one, e.g. \"tools/call\"".into(),
                            },
                        ));
                    }
                }
                spec.mcp_method = methods.into_iter().map(|(m, _)| m).collect();
            }
            "mcp-tool" => spec.mcp_tool = globs(file, "mcp-tool", value)?,
            "event-type" => spec.event_type = Some(nonempty(file, known, value)?),
            "data-contains" => spec.data_contains = Some(nonempty(file, known, value)?),
            "data-regex" => {
                let pattern = nonempty(file, known, value)?;
                let regex = regex::bytes::Regex::new(&pattern).map_err(|e| {
                    file.error(
                        value.span(),
                        ConfigFileError::BadRegex {
                            pattern: pattern.clone(),
                            reason: regex_reason(&e),
                        },
                    )
                })?;
                spec.data_regex = Some(regex);
            }
            "mcp-result-of" => spec.mcp_result_of = Some(nonempty(file, known, value)?),
            _ => {
                match value.get_ref() {
                    DeValue::Boolean(true) => spec.body_over_inspect_limit = true,
                    DeValue::Boolean(false) => return Err(bad_value(
                        file,
                        known,
                        value,
                        "only true is a condition: leave the key out to match bodies of any size",
                    )),
                    _ => return Err(wrong_type(file, known, "true", value)),
                }
            }
        }
    }
    Ok(spec)
}

/// `header = { name = "...", value = "..." }` or `{ name = "...", present = true }`.
fn read_header_match(
    file: &FileText<'_>,
    value: &Spanned<DeValue<'_>>,
) -> Result<HeaderMatch, LoadError> {
    const FORMS: &str = "write header = { name = \"X-Name\", value = \"exact\" } or header = { name = \"X-Name\", present = true }";
    let DeValue::Table(keys) = value.get_ref() else {
        return Err(wrong_type(
            file,
            "header",
            "a table, e.g. { name = \"X-Name\", value = \"exact\" }",
            value,
        ));
    };
    let mut name = None;
    let mut exact: Option<(String, Range<usize>)> = None;
    let mut present: Option<Range<usize>> = None;
    for (key, v) in in_file_order(keys) {
        let k: &str = key.get_ref();
        match k {
            "name" => name = Some(header_name(file, "name", v)?),
            "value" => exact = Some((header_value_text(file, "value", v)?, key.span())),
            "present" => match v.get_ref() {
                DeValue::Boolean(true) => present = Some(key.span()),
                DeValue::Boolean(false) => {
                    return Err(bad_value(
                        file,
                        "present",
                        v,
                        "a header match needs the header: write present = true (any value), or value = \"...\" (this value)",
                    ))
                }
                _ => return Err(wrong_type(file, "present", "true", v)),
            },
            _ => return Err(unknown_key(file, key, KeyScope::HeaderMatch, HEADER_MATCH_KEYS)),
        }
    }
    let incomplete = |span: Range<usize>, reason: String| {
        file.error(
            span,
            ConfigFileError::BadValue {
                key: "header".into(),
                value: file.literal(value.span()),
                reason,
            },
        )
    };
    let Some(name) = name else {
        return Err(incomplete(value.span(), format!("has no `name`: {FORMS}")));
    };
    match (exact, present) {
        (Some(_), Some(present)) => Err(incomplete(
            present,
            "has both `value` and `present`: keep `value` (that value) or present = true (any value)"
                .into(),
        )),
        (None, None) => Err(incomplete(
            value.span(),
            format!("has neither `value` nor `present`: {FORMS}"),
        )),
        (Some((exact, _)), None) => Ok(HeaderMatch {
            name,
            value: Some(exact),
        }),
        (None, Some(_)) => Ok(HeaderMatch { name, value: None }),
    }
}

/// The regex crate's own words: its syntax errors span several lines ("regex parse error:",
/// the pattern, a caret, "error: ..."), of which the "error:" line says what is wrong.
fn regex_reason(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .find_map(|l| l.strip_prefix("error: "))
        .or_else(|| text.lines().next())
        .unwrap_or("invalid regex")
        .to_string()
}

/// A deny status: an integer from 400 to 599.
fn status(file: &FileText<'_>, value: &Spanned<DeValue<'_>>) -> Result<u16, LoadError> {
    let DeValue::Integer(i) = value.get_ref() else {
        return Err(wrong_type(
            file,
            "status",
            "an integer from 400 to 599",
            value,
        ));
    };
    let digits = i.as_str().replace('_', "");
    match i64::from_str_radix(&digits, i.radix()) {
        Ok(n @ 400..=599) => Ok(n as u16),
        _ => Err(file.error(
            value.span(),
            ConfigFileError::BadStatus {
                status: file.literal(value.span()),
            },
        )),
    }
}

/// A header name: an HTTP token.
fn header_name(
    file: &FileText<'_>,
    key: &'static str,
    value: &Spanned<DeValue<'_>>,
) -> Result<String, LoadError> {
    let name = string(file, key, value)?;
    if !crate::http::is_token(name.as_bytes()) {
        return Err(file.error(value.span(), ConfigFileError::BadHeaderName { key, name }));
    }
    Ok(name)
}

/// A header value: no CR, LF or NUL (which would end or split the head).
fn header_value_text(
    file: &FileText<'_>,
    key: &'static str,
    value: &Spanned<DeValue<'_>>,
) -> Result<String, LoadError> {
    let text = string(file, key, value)?;
    if text.contains(['\r', '\n', '\0']) {
        return Err(file.error(
            value.span(),
            ConfigFileError::BadHeaderValue { key, value: text },
        ));
    }
    Ok(text)
}

/// Tool-name globs (`mcp-tool`, `tools`): one string or an array, none empty, each of tool-name
/// characters (MCP 2025-11-25: ASCII letters, digits, `_`, `-`, `.`) and the wildcards `*`
/// (any run of characters) and `?` (one character).
fn globs(
    file: &FileText<'_>,
    key: &'static str,
    value: &Spanned<DeValue<'_>>,
) -> Result<Vec<String>, LoadError> {
    let items = strings(file, key, value)?;
    if items.is_empty() {
        return Err(bad_value(
            file,
            key,
            value,
            "an empty list names no tool: give at least one glob, e.g. [\"delete_*\"]",
        ));
    }
    let mut out = Vec::with_capacity(items.len());
    for (glob, span) in items {
        let reason = if glob.is_empty() {
            Some("is empty: a glob names tools, e.g. \"delete_*\"".to_string())
        } else {
            glob.chars()
                .find(|&c| !(c.is_ascii_alphanumeric() || "_-.*?".contains(c)))
                .map(|c| {
                    format!(
                        "has {c:?}, which no tool name has (letters, digits, '_', '-', '.', and the wildcards '*' and '?')"
                    )
                })
        };
        if let Some(reason) = reason {
            return Err(file.error(span, ConfigFileError::BadGlob { key, glob, reason }));
        }
        out.push(glob);
    }
    Ok(out)
}

/// One string or an array of strings, each with its span; an empty array is refused (it would
/// read as "no condition").
fn strings(
    file: &FileText<'_>,
    key: &str,
    value: &Spanned<DeValue<'_>>,
) -> Result<Vec<(String, Range<usize>)>, LoadError> {
    const EXPECTED: &str = "a string or an array of strings";
    match value.get_ref() {
        DeValue::String(s) => Ok(vec![(s.to_string(), value.span())]),
        DeValue::Array(items) => {
            if items.is_empty() {
                return Err(bad_value(
                    file,
                    key,
                    value,
                    "an empty list matches nothing: give at least one, or leave the key out",
                ));
            }
            items
                .iter()
                .map(|item| match item.get_ref() {
                    DeValue::String(s) => Ok((s.to_string(), item.span())),
                    _ => Err(wrong_type(
                        file,
                        key,
                        "a string (each element of the array)",
                        item,
                    )),
                })
                .collect()
        }
        _ => Err(wrong_type(file, key, EXPECTED, value)),
    }
}

fn string(
    file: &FileText<'_>,
    key: &str,
    value: &Spanned<DeValue<'_>>,
) -> Result<String, LoadError> {
    match value.get_ref() {
        DeValue::String(s) => Ok(s.to_string()),
        _ => Err(wrong_type(file, key, "a string", value)),
    }
}

/// A string that is not empty (an empty one would match nothing, or everything).
fn nonempty(
    file: &FileText<'_>,
    key: &str,
    value: &Spanned<DeValue<'_>>,
) -> Result<String, LoadError> {
    let text = string(file, key, value)?;
    if text.is_empty() {
        return Err(bad_value(
            file,
            key,
            value,
            "is empty: give a value, or leave the key out",
        ));
    }
    Ok(text)
}

fn wrong_type(
    file: &FileText<'_>,
    key: &str,
    expected: &str,
    value: &Spanned<DeValue<'_>>,
) -> LoadError {
    file.error(
        value.span(),
        ConfigFileError::WrongType {
            key: key.into(),
            expected: expected.into(),
            found: type_name(value.get_ref()),
        },
    )
}

fn bad_value(
    file: &FileText<'_>,
    key: &str,
    value: &Spanned<DeValue<'_>>,
    reason: &str,
) -> LoadError {
    file.error(
        value.span(),
        ConfigFileError::BadValue {
            key: key.into(),
            value: file.literal(value.span()),
            reason: reason.into(),
        },
    )
}

fn unknown_key(
    file: &FileText<'_>,
    key: &Spanned<DeString<'_>>,
    scope: KeyScope,
    known: &[&str],
) -> LoadError {
    let k: &str = key.get_ref();
    file.error(
        key.span(),
        ConfigFileError::UnknownKey {
            key: k.to_string(),
            suggestion: closest(k, known.iter().copied()).map(str::to_string),
            scope,
        },
    )
}

#[cfg(test)]
mod tests;
