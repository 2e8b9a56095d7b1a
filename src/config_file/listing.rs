//! Every setting with the value it resolved to and where that value came from, and the rules,
//! written as TOML (what `tether check` prints; pasting it into a file gives the same
//! configuration).

use std::fmt::Write as _;

use clap::{ArgMatches, Command};

use super::keys::{Shape, CONFIG_FLAG};
use crate::rules::spec::{ActionSpec, MatchSpec, RuleSpec};

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    CommandLine,
    /// The file's top level.
    File,
    /// The route's own table.
    Route,
    Default,
    /// No value and no default (an optional setting left off).
    Unset,
}

impl Origin {
    fn name(self) -> &'static str {
        match self {
            Origin::CommandLine => "command line",
            Origin::File => "file",
            Origin::Route => "route",
            Origin::Default => "default",
            Origin::Unset => "not set",
        }
    }
}

/// One setting as resolved.
#[derive(Debug, Clone)]
pub(crate) struct ListedSetting {
    pub(crate) key: String,
    shape: Shape,
    /// The raw values (several for a repeatable flag), as the flag's parser read them.
    values: Vec<String>,
    pub(crate) origin: Origin,
}

/// Settings in the order `tether reverse --help` lists them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Listing {
    pub(crate) settings: Vec<ListedSetting>,
}

impl Listing {
    /// The flags of `reverse` that `keep` accepts, with their values in `matches`; `origin` says
    /// where a flag's value came from when it did not come from the defaults.
    pub(crate) fn new(
        reverse: &Command,
        matches: &ArgMatches,
        keep: impl Fn(&str) -> bool,
        origin: impl Fn(&str) -> Option<Origin>,
    ) -> Listing {
        let mut settings = Vec::new();
        for arg in reverse.get_arguments() {
            let Some(key) = arg.get_long() else { continue };
            if key == CONFIG_FLAG || !keep(key) {
                continue;
            }
            let id = arg.get_id().as_str();
            let values: Vec<String> = matches
                .get_raw(id)
                .map(|raw| raw.map(|v| v.to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            let origin = origin(key).unwrap_or(if values.is_empty() {
                Origin::Unset
            } else {
                Origin::Default
            });
            settings.push(ListedSetting {
                key: key.to_string(),
                shape: Shape::of(arg),
                values,
                origin,
            });
        }
        Listing { settings }
    }

    /// `key = value  # origin` lines; settings left off are commented out.
    pub(crate) fn write_toml(&self, out: &mut String) {
        let width = self.settings.iter().map(|s| s.key.len()).max().unwrap_or(0);
        for s in &self.settings {
            let value = toml_value(&s.shape, &s.values);
            let line = match (&value, s.origin) {
                (Some(v), _) => format!("{:width$} = {v}", s.key),
                (None, _) => format!("# {:width$}", s.key),
            };
            let _ = writeln!(out, "{line:<60} # {}", s.origin.name());
        }
    }
}

/// A value written as TOML; None when there is none to write.
fn toml_value(shape: &Shape, values: &[String]) -> Option<String> {
    let is_digits = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
    match shape {
        Shape::List if values.is_empty() => None,
        Shape::List => Some(format!(
            "[{}]",
            values
                .iter()
                .map(|v| quoted(v))
                .collect::<Vec<_>>()
                .join(", ")
        )),
        _ => {
            let v = values.first()?;
            Some(match shape {
                Shape::Switch if v == "true" || v == "false" => v.clone(),
                Shape::Integer | Shape::Size if is_digits(v) => v.clone(),
                _ => quoted(v),
            })
        }
    }
}

/// A TOML basic string.
pub(crate) fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The rules as `[[rule]]` tables, every default written out: reading them gives the same
/// rules (names included, so a rule without one keeps its `rule-N`).
pub(crate) fn write_rules(rules: &[RuleSpec], out: &mut String) {
    for (index, rule) in rules.iter().enumerate() {
        let _ = writeln!(
            out,
            "\n[[rule]]  # {} of {}: applied in this order",
            index + 1,
            rules.len()
        );
        let _ = writeln!(out, "name = {}", quoted(&rule.name));
        match &rule.route {
            Some(route) => {
                let _ = writeln!(out, "route = {}", quoted(route));
            }
            None => {
                let _ = writeln!(out, "# route: every route");
            }
        }
        let _ = writeln!(out, "on = {}", quoted(rule.on.as_str()));
        let matches = match_toml(&rule.matches);
        if matches.is_empty() {
            let _ = writeln!(out, "# match: every {}", rule.on);
        } else {
            let _ = writeln!(out, "match = {{ {} }}", matches.join(", "));
        }
        let _ = writeln!(out, "action = {}", quoted(rule.action.name()));
        match &rule.action {
            ActionSpec::Deny { status, message } => {
                let _ = writeln!(out, "status = {status}");
                let _ = writeln!(out, "message = {}", quoted(message));
            }
            ActionSpec::Redact { replace } => {
                let _ = writeln!(out, "replace = {}", quoted(replace));
            }
            ActionSpec::SetHeader { header, value } => {
                let _ = writeln!(out, "header = {}", quoted(header));
                let _ = writeln!(out, "value = {}", quoted(value));
            }
            ActionSpec::RemoveHeader { header } => {
                let _ = writeln!(out, "header = {}", quoted(header));
            }
            ActionSpec::FilterTools { tools } => {
                let _ = writeln!(out, "tools = {}", list(tools));
            }
            ActionSpec::Drop | ActionSpec::Log => {}
        }
    }
}

/// The `key = value` pairs of a match, in the order `crate::rules::spec::MatchSpec` declares them.
fn match_toml(m: &MatchSpec) -> Vec<String> {
    let mut pairs = Vec::new();
    let mut text = |key: &str, value: &Option<String>| {
        if let Some(v) = value {
            pairs.push(format!("{key} = {}", quoted(v)));
        }
    };
    text("method", &m.method);
    text("path-prefix", &m.path_prefix);
    if let Some(h) = &m.header {
        let test = match &h.value {
            Some(v) => format!("value = {}", quoted(v)),
            None => "present = true".into(),
        };
        pairs.push(format!("header = {{ name = {}, {test} }}", quoted(&h.name)));
    }
    if !m.mcp_method.is_empty() {
        pairs.push(format!("mcp-method = {}", list(&m.mcp_method)));
    }
    if !m.mcp_tool.is_empty() {
        pairs.push(format!("mcp-tool = {}", list(&m.mcp_tool)));
    }
    let mut text = |key: &str, value: Option<&str>| {
        if let Some(v) = value {
            pairs.push(format!("{key} = {}", quoted(v)));
        }
    };
    text("event-type", m.event_type.as_deref());
    text("data-contains", m.data_contains.as_deref());
    text("data-regex", m.data_regex.as_ref().map(|r| r.as_str()));
    text("mcp-result-of", m.mcp_result_of.as_deref());
    if m.body_over_inspect_limit {
        pairs.push("body-over-inspect-limit = true".into());
    }
    pairs
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| quoted(i)).collect();
    format!("[{}]", quoted.join(", "))
}
