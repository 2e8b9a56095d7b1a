//! The file's keys are the flags of `tether reverse`, found by walking clap's arguments: a flag
//! added later is a key at once, read by the same value parser as on the command line. This file
//! says which keys a route may hold, what TOML type each key takes, and turns a value into the
//! flag tokens it stands for.

use std::any::TypeId;
use std::ffi::OsString;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue};
use clap::{Arg, ArgAction, Command};
use toml::de::DeValue;

use super::error::ConfigFileError;

/// The settings a `[[route]]` may set for its own requests: each applies to one request or one
/// stream, and is read from the request's route (`crate::route::RouteSettings`), never from the
/// process's settings. Every other flag is process-wide and refused inside a route. A flag that
/// joins this list must be read through `RouteSettings` too.
pub(crate) const ROUTE_KEYS: &[&str] = &[
    "connect-timeout",
    "upstream-header-timeout",
    "body-timeout",
    "sse-max-event-bytes",
    "sse-heartbeat",
    "sse-client-buffer",
    "assign-ids",
    "coalesce",
    "coalesce-flush",
    "hold-upstream",
    "identity-header",
    "upstream-idle-timeout",
    "pass-clean-end",
    "reconnect-initial",
    "reconnect-max-delay",
    "reconnect-timeout",
    "resume-post-as-get",
    "resume-without-id",
    "max-inspect-bytes",
    "mcp",
];

/// A route's own keys, which are not flags (besides `upstream`, the route's replicas).
pub(crate) const ROUTE_OWN_KEYS: &[&str] = &["name", "host", "path-prefix", "upstream", "protocol"];

/// The key of the routes' array of tables.
pub(crate) const ROUTE_TABLE: &str = "route";

/// The key of the rules' array of tables (`crate::config_file::rules`).
pub(crate) const RULE_TABLE: &str = "rule";

/// The flag that names the file: not a key of it.
pub(crate) const CONFIG_FLAG: &str = "config";

/// Longest edit distance at which an unknown key gets a "did you mean".
const MAX_SUGGESTION_DISTANCE: usize = 3;

/// What TOML value a flag takes, from its clap definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shape {
    /// An on/off flag: `true` or `false`.
    Switch,
    /// A repeatable flag: an array of strings, one per use of the flag.
    List,
    /// A duration string ("5s").
    Duration,
    /// A size: bytes as an integer, or a string with a unit ("64KiB").
    Size,
    /// A plain integer.
    Integer,
    /// One of a fixed set of strings.
    Choice(Vec<String>),
    /// Any other string (an address, a URL, a CPU list).
    Text,
}

impl Shape {
    pub(crate) fn of(arg: &Arg) -> Shape {
        match arg.get_action() {
            ArgAction::SetTrue | ArgAction::SetFalse => return Shape::Switch,
            ArgAction::Append => return Shape::List,
            _ => {}
        }
        let parser = arg.get_value_parser();
        let possible: Vec<String> = arg
            .get_possible_values()
            .iter()
            .map(|p| p.get_name().to_string())
            .collect();
        let is = |t: TypeId| parser.type_id() == t;
        if !possible.is_empty() {
            Shape::Choice(possible)
        } else if is(TypeId::of::<Duration>()) {
            Shape::Duration
        } else if arg
            .get_value_names()
            .is_some_and(|names| names.iter().any(|n| n.as_str() == "BYTES"))
        {
            Shape::Size
        } else if is(TypeId::of::<usize>())
            || is(TypeId::of::<u64>())
            || is(TypeId::of::<u32>())
            || is(TypeId::of::<i32>())
            || is(TypeId::of::<i64>())
        {
            Shape::Integer
        } else {
            Shape::Text
        }
    }

    /// What a value of this shape looks like, for messages.
    pub(crate) fn expected(&self) -> String {
        match self {
            Shape::Switch => "true or false".into(),
            Shape::List => "an array of strings, e.g. [\"a\", \"b\"]".into(),
            Shape::Duration => {
                "a duration string such as \"500ms\", \"5s\", \"1m\", \"1h\" or \"0\"".into()
            }
            Shape::Size => {
                "a size: a number of bytes, or a string such as \"64KiB\" or \"256MiB\"".into()
            }
            Shape::Integer => "an integer".into(),
            Shape::Choice(names) => {
                let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
                format!("one of {}", quoted.join(", "))
            }
            Shape::Text => "a string".into(),
        }
    }
}

/// "a string", "an integer", ... for messages.
pub(crate) fn type_name(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// The command-line text of one scalar value, when `shape` takes its TOML type.
fn scalar_text(shape: &Shape, value: &DeValue<'_>) -> Option<String> {
    match (shape, value) {
        (Shape::Size | Shape::Integer, DeValue::Integer(i)) => {
            // Decimal for the flag's parser, whatever radix the file wrote (0x10, 1_000).
            let digits = i.as_str().replace('_', "");
            Some(match i128::from_str_radix(&digits, i.radix()) {
                Ok(n) => n.to_string(),
                Err(_) => digits,
            })
        }
        (Shape::Integer, _) => None,
        (Shape::Size | Shape::Duration | Shape::Choice(_) | Shape::Text, DeValue::String(s)) => {
            Some(s.to_string())
        }
        _ => None,
    }
}

/// A key's value as flag tokens (`--key=value`, `--key` for a switch that is on, one token per
/// element of a list), or why the value is not one the flag takes. Each value is checked by the
/// flag's own value parser. On error, also the element to blame (for a list), as its index.
pub(crate) fn tokens(
    probe: &Command,
    arg: &Arg,
    key: &str,
    value: &DeValue<'_>,
    literal: impl Fn(Option<usize>) -> String,
) -> Result<Vec<OsString>, (Option<usize>, ConfigFileError)> {
    let shape = Shape::of(arg);
    let wrong_type = |found: &DeValue<'_>| ConfigFileError::WrongType {
        key: key.to_string(),
        expected: shape.expected(),
        found: type_name(found),
    };
    let mut out = Vec::new();
    match (&shape, value) {
        (Shape::Switch, DeValue::Boolean(on)) => {
            if *on {
                out.push(OsString::from(format!("--{key}")));
            }
        }
        (Shape::List, DeValue::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let DeValue::String(text) = item.get_ref() else {
                    let mut e = wrong_type(item.get_ref());
                    if let ConfigFileError::WrongType { expected, .. } = &mut e {
                        *expected = "a string (each element of the array)".into();
                    }
                    return Err((Some(i), e));
                };
                let token = OsString::from(format!("--{key}={text}"));
                check(probe, &token, key, literal(Some(i))).map_err(|e| (Some(i), e))?;
                out.push(token);
            }
        }
        (Shape::Switch | Shape::List, other) => return Err((None, wrong_type(other))),
        (_, other) => {
            let text = scalar_text(&shape, other).ok_or_else(|| (None, wrong_type(other)))?;
            let token = OsString::from(format!("--{key}={text}"));
            check(probe, &token, key, literal(None)).map_err(|e| (None, e))?;
            out.push(token);
        }
    }
    Ok(out)
}

/// Parses `token` alone with the `reverse` command (and `--config`, which makes `--bind` and
/// `--upstream` optional): the flag's own value parser says whether it reads the value.
fn check(
    probe: &Command,
    token: &OsString,
    key: &str,
    literal: String,
) -> Result<(), ConfigFileError> {
    let argv = [
        OsString::from("tether"),
        OsString::from("reverse"),
        OsString::from("--config=-"),
        token.clone(),
    ];
    match probe.clone().try_get_matches_from(argv) {
        Ok(_) => Ok(()),
        Err(e) => Err(ConfigFileError::BadValue {
            key: key.to_string(),
            value: literal,
            reason: reason_of(&e),
        }),
    }
}

/// The value parser's own words from a clap error, without clap's framing.
pub(crate) fn reason_of(e: &clap::Error) -> String {
    if let Some(source) = std::error::Error::source(e) {
        return source.to_string();
    }
    if let Some(ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue) {
        let quoted: Vec<String> = valid.iter().map(|v| format!("\"{v}\"")).collect();
        return format!("expected one of {}", quoted.join(", "));
    }
    let text = e.render().to_string();
    text.lines()
        .next()
        .unwrap_or("invalid value")
        .trim_start_matches("error: ")
        .to_string()
}

/// The known key closest to `key`, if one is within a few edits.
pub(crate) fn closest<'k>(key: &str, known: impl Iterator<Item = &'k str>) -> Option<&'k str> {
    known
        .map(|k| (edit_distance(key, k), k))
        .filter(|(d, k)| *d <= MAX_SUGGESTION_DISTANCE && *d < k.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance over characters (keys are short: the quadratic cost is nothing).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reverse() -> Command {
        let cli = <crate::cli::Cli as clap::CommandFactory>::command();
        cli.find_subcommand("reverse").unwrap().clone()
    }

    #[test]
    fn every_route_key_is_a_flag_of_reverse() {
        let cmd = reverse();
        for key in ROUTE_KEYS {
            assert!(
                cmd.get_arguments().any(|a| a.get_long() == Some(key)),
                "{key} is not a flag"
            );
        }
    }

    #[test]
    fn shapes_follow_the_flag_definitions() {
        let cmd = reverse();
        let shape = |key: &str| {
            Shape::of(
                cmd.get_arguments()
                    .find(|a| a.get_long() == Some(key))
                    .unwrap(),
            )
        };
        assert_eq!(shape("assign-ids"), Shape::Switch);
        assert_eq!(shape("identity-header"), Shape::List);
        assert_eq!(shape("upstream"), Shape::List);
        assert_eq!(shape("sse-heartbeat"), Shape::Duration);
        assert_eq!(shape("replay-memory"), Shape::Size);
        assert_eq!(shape("workers"), Shape::Integer);
        assert_eq!(shape("uring-entries"), Shape::Integer);
        assert_eq!(
            shape("driver"),
            Shape::Choice(vec!["auto".into(), "uring".into(), "epoll".into()])
        );
        assert_eq!(shape("bind"), Shape::Text);
    }

    #[test]
    fn suggestions_are_close_keys_only() {
        let known = ["sse-heartbeat", "workers", "bind"];
        assert_eq!(
            closest("sse-hearbeat", known.iter().copied()),
            Some("sse-heartbeat")
        );
        assert_eq!(closest("worker", known.iter().copied()), Some("workers"));
        assert_eq!(closest("colour", known.iter().copied()), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
