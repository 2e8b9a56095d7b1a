//! Why a configuration cannot run, and where: `FILE:LINE:COLUMN: what was wrong, what was
//! expected` for anything the file said, the bare message for the command line.

use std::fmt;

use super::keys::closest;
use crate::config::ConfigError;
use crate::rules::spec::Stage;
use crate::upstream::replica::UpstreamUrlError;

/// A place in the configuration file, both counted from 1 (the column in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineColumn {
    pub line: usize,
    pub column: usize,
}

impl LineColumn {
    /// The line and column of byte `offset` of `text`.
    pub(crate) fn of(text: &str, offset: usize) -> LineColumn {
        let offset = offset.min(text.len());
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        LineColumn {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

/// What is wrong. Every message says what was found and what is expected instead.
#[derive(Debug)]
pub enum ConfigFileError {
    /// The file could not be read.
    Unreadable {
        reason: String,
    },
    /// Not TOML (the parser's message).
    Syntax {
        message: String,
    },
    /// A key that is not one of its table's: a flag of `tether reverse` at the top level, a
    /// route's own key or per-request setting in a route, a rule's key in a rule...
    UnknownKey {
        key: String,
        /// The closest known key, when one is close.
        suggestion: Option<String>,
        scope: KeyScope,
    },
    /// A value of the wrong TOML type.
    WrongType {
        key: String,
        expected: String,
        found: &'static str,
    },
    /// A value of the right type that the flag's own parser refuses.
    BadValue {
        key: String,
        value: String,
        reason: String,
    },
    /// A process-wide setting inside a `[[route]]`.
    ProcessWideInRoute {
        key: String,
    },
    /// A route's own key (`name`, `host`, `path-prefix`) at the top level.
    RouteKeyAtTop {
        key: String,
    },
    /// `config` inside the file.
    ConfigInFile,
    /// Two keys of the file that cannot be used together (e.g. `cpus` and `no-pin`).
    Conflict {
        key: String,
        other: String,
        other_line: usize,
    },
    BadUpstream(UpstreamUrlError),
    /// A top-level `upstream` next to `[[route]]` tables (which would win is not obvious).
    UpstreamBesideRoutes,
    /// `--upstream` on the command line while the file has `[[route]]` tables.
    CommandLineUpstreamWithRoutes,
    /// Two routes with one name.
    DuplicateRouteName {
        name: String,
        first_line: usize,
    },
    /// A `[[route]]` without `upstream`.
    RouteWithoutUpstream {
        route: String,
    },
    BadHost {
        host: String,
        reason: String,
    },
    BadPathPrefix {
        prefix: String,
    },
    /// Neither routes nor a top-level `upstream` (nor `--upstream`): nothing to send requests to.
    NoUpstream,
    /// A `rule` key inside a `[[route]]` (`[[route.rule]]`): rules are top-level tables that
    /// name their route.
    RuleInRoute {
        /// The route's name, when it has one.
        route: Option<String>,
    },
    /// A `[[rule]]` without a key it needs (`on`, `action`, or a key of its action).
    MissingRuleKey {
        /// `rule "name"` or `rule 3`.
        rule: String,
        key: &'static str,
        /// What to add, e.g. `on = "request", "response" or "event"`.
        hint: &'static str,
    },
    /// A key of another action (`status` with `action = "log"`): it would be ignored.
    KeyNotForAction {
        key: String,
        action: &'static str,
        /// The actions that take the key, quoted.
        belongs_to: &'static str,
    },
    /// An action at a stage it cannot act at (`drop` with `on = "request"`).
    ActionNotForStage {
        action: &'static str,
        on: Stage,
        fits: &'static [Stage],
    },
    /// A match key the rule's stage cannot see (`event-type` with `on = "request"`).
    MatchKeyNotForStage {
        key: &'static str,
        on: Stage,
        /// Where the key fits, as `on = ...` text.
        fits: &'static str,
    },
    /// `action = "redact"` whose match has neither `data-regex` nor `data-contains`.
    RedactWithoutData,
    /// A `data-regex` the regex crate refuses.
    BadRegex {
        pattern: String,
        /// The regex error's own line ("unclosed character class").
        reason: String,
    },
    /// A rule's `route` that names no route of the file.
    UnknownRoute {
        name: String,
        /// Every route name of the file (the closest one is suggested).
        known: Vec<String>,
    },
    /// Two rules with one name (given, or `rule-N` for a rule without one).
    DuplicateRuleName {
        name: String,
        first_line: usize,
        /// One of the two is a rule without a name, called `rule-N`.
        generated: bool,
    },
    /// A deny `status` outside 400..=599 (the literal as written).
    BadStatus {
        status: String,
    },
    /// A rule's header name that is not an HTTP token.
    BadHeaderName {
        key: &'static str,
        name: String,
    },
    /// A rule's header value holding CR, LF or NUL (it would split or end the head).
    BadHeaderValue {
        key: &'static str,
        value: String,
    },
    /// `set-header`/`remove-header` of a header tether writes itself.
    ProtectedHeader {
        action: &'static str,
        header: String,
        reason: &'static str,
    },
    /// A tool-name glob (`mcp-tool`, `tools`) that is empty or has a character no tool name has.
    BadGlob {
        key: &'static str,
        glob: String,
        reason: String,
    },
    /// A setting that passed its parser but not the checks of `crate::config` (a zero, a limit).
    Invalid(ConfigError),
}

/// Which table an unknown key was found in: says what the table takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyScope {
    TopLevel,
    Route,
    Rule,
    /// A rule's `match`.
    Match,
    /// A match's `header = { ... }`.
    HeaderMatch,
}

impl KeyScope {
    /// "not a ... key".
    fn what(self) -> &'static str {
        match self {
            KeyScope::TopLevel => "not a setting",
            KeyScope::Route => "not a route key",
            KeyScope::Rule => "not a rule key",
            KeyScope::Match => "not a match key",
            KeyScope::HeaderMatch => "not a key of a header match",
        }
    }

    /// What the table takes, when no known key is close.
    fn takes(self) -> &'static str {
        match self {
            KeyScope::TopLevel => "every flag of `tether reverse --help` is a key of the same name",
            KeyScope::Route => "a route takes name, host, path-prefix, upstream and per-request settings",
            KeyScope::Rule => "a rule takes name, route, on, match, action, and its action's status, message, replace, header, value or tools",
            KeyScope::Match => "match takes method, path-prefix, header, mcp-method, mcp-tool, event-type, data-contains, data-regex, mcp-result-of and body-over-inspect-limit",
            KeyScope::HeaderMatch => "header = { name = \"X-Name\", value = \"exact\" } or { name = \"X-Name\", present = true }",
        }
    }
}

/// `"a"`, `"a" or "b"`, `"a", "b" or "c"`.
fn either(stages: &[Stage]) -> String {
    let quoted: Vec<String> = stages.iter().map(|s| format!("\"{s}\"")).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigFileError::Unreadable { reason } => write!(f, "cannot read the file: {reason}"),
            ConfigFileError::Syntax { message } => write!(f, "not valid TOML: {message}"),
            ConfigFileError::UnknownKey {
                key,
                suggestion,
                scope,
            } => {
                write!(f, "unknown key `{key}`: {}", scope.what())?;
                match suggestion {
                    Some(s) => write!(f, "; did you mean `{s}`?"),
                    None => write!(f, " ({})", scope.takes()),
                }
            }
            ConfigFileError::WrongType {
                key,
                expected,
                found,
            } => write!(f, "`{key}` must be {expected}, not {found}"),
            ConfigFileError::BadValue { key, value, reason } => {
                write!(f, "`{key}` = {value}: {reason}")
            }
            ConfigFileError::ProcessWideInRoute { key } => write!(
                f,
                "`{key}` applies to the whole process, not to one route: set it at the top level, before the first [[route]]"
            ),
            ConfigFileError::RouteKeyAtTop { key } => write!(
                f,
                "`{key}` belongs to a route: put it inside a [[route]] table"
            ),
            ConfigFileError::ConfigInFile => f.write_str(
                "`config` names the file on the command line; a file cannot name another",
            ),
            ConfigFileError::Conflict {
                key,
                other,
                other_line,
            } => write!(
                f,
                "`{key}` cannot be used together with `{other}` (line {other_line}): keep one"
            ),
            ConfigFileError::BadUpstream(e) => write!(f, "{e}"),
            ConfigFileError::UpstreamBesideRoutes => f.write_str(
                "a top-level `upstream` beside [[route]] tables: give each route its own `upstream` (a last route with path-prefix = \"/\" catches the rest)",
            ),
            ConfigFileError::CommandLineUpstreamWithRoutes => f.write_str(
                "--upstream on the command line cannot be combined with the file's [[route]] tables: name the upstreams in the routes",
            ),
            ConfigFileError::DuplicateRouteName { name, first_line } => write!(
                f,
                "route name \"{name}\" is already used by the route on line {first_line}: names must be unique"
            ),
            ConfigFileError::RouteWithoutUpstream { route } => write!(
                f,
                "{route} has no `upstream`: add upstream = [\"http://host:port\"]"
            ),
            ConfigFileError::BadHost { host, reason } => {
                write!(f, "host \"{host}\" {reason}")
            }
            ConfigFileError::BadPathPrefix { prefix } => write!(
                f,
                "path-prefix \"{prefix}\" must start with '/' (and hold no '?', '#' or whitespace)"
            ),
            ConfigFileError::NoUpstream => f.write_str(
                "no upstream: add [[route]] tables with an `upstream` each, a top-level upstream = [\"http://host:port\"], or --upstream",
            ),
            ConfigFileError::RuleInRoute { route } => {
                let name = route.as_deref().unwrap_or("NAME");
                write!(
                    f,
                    "a rule cannot be inside a [[route]]: write a top-level [[rule]] (after the routes) with route = \"{name}\""
                )?;
                if route.is_none() {
                    f.write_str(", and give the route that name")?;
                }
                Ok(())
            }
            ConfigFileError::MissingRuleKey { rule, key, hint } => {
                write!(f, "{rule} has no `{key}`: add {hint}")
            }
            ConfigFileError::KeyNotForAction {
                key,
                action,
                belongs_to,
            } => write!(
                f,
                "`{key}` does not go with action = \"{action}\" (it is a key of {belongs_to}): remove it"
            ),
            ConfigFileError::ActionNotForStage { action, on, fits } => write!(
                f,
                "action \"{action}\" cannot act on = \"{on}\": it fits on = {} only",
                either(fits)
            ),
            ConfigFileError::MatchKeyNotForStage { key, on, fits } => write!(
                f,
                "match key `{key}` cannot be used on = \"{on}\": it fits {fits}"
            ),
            ConfigFileError::RedactWithoutData => f.write_str(
                "action \"redact\" needs `data-regex` or `data-contains` in its match: they say what to replace",
            ),
            ConfigFileError::BadRegex { pattern, reason } => {
                write!(f, "data-regex '{pattern}' does not compile: {reason}")
            }
            ConfigFileError::UnknownRoute { name, known } => {
                write!(f, "route = \"{name}\" names no route of the file")?;
                match closest(name, known.iter().map(String::as_str)) {
                    Some(s) => write!(f, "; did you mean \"{s}\"?"),
                    None if known.is_empty() => f.write_str(
                        " (it has no named route: give the [[route]] a name = \"...\")",
                    ),
                    None => {
                        let quoted: Vec<String> = known.iter().map(|n| format!("\"{n}\"")).collect();
                        write!(f, " (its routes: {})", quoted.join(", "))
                    }
                }
            }
            ConfigFileError::DuplicateRuleName {
                name,
                first_line,
                generated,
            } => {
                write!(
                    f,
                    "rule name \"{name}\" is already used by the rule on line {first_line}"
                )?;
                if *generated {
                    f.write_str(" (a rule without a name is called rule-N, N its place among the rules)")?;
                }
                f.write_str(": names must be unique")
            }
            ConfigFileError::BadStatus { status } => write!(
                f,
                "status {status} is not an error status: a denied request gets 400 to 599"
            ),
            ConfigFileError::BadHeaderName { key, name } => write!(
                f,
                "`{key}` {name:?}: not a header name (letters, digits and !#$%&'*+-.^_`|~ only)"
            ),
            ConfigFileError::BadHeaderValue { key, value } => write!(
                f,
                "`{key}` {value:?}: a header value cannot hold CR, LF or NUL"
            ),
            ConfigFileError::ProtectedHeader {
                action,
                header,
                reason,
            } => write!(f, "action \"{action}\" cannot change {header}: {reason}"),
            ConfigFileError::BadGlob { key, glob, reason } => {
                write!(f, "`{key}` glob {glob:?} {reason}")
            }
            ConfigFileError::Invalid(e) => write!(f, "{e}"),
        }
    }
}

/// A [`ConfigFileError`] and where it was found.
#[derive(Debug)]
pub struct LoadError {
    /// The configuration file, when the error is about it (None: the command line).
    pub file: Option<String>,
    /// Where in the file, when one place is to blame.
    pub at: Option<LineColumn>,
    pub error: ConfigFileError,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.at) {
            (Some(file), Some(at)) => write!(f, "{file}:{}:{}: {}", at.line, at.column, self.error),
            (Some(file), None) => write!(f, "{file}: {}", self.error),
            (None, _) => write!(f, "{}", self.error),
        }
    }
}

impl std::error::Error for LoadError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_count_from_one_in_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(LineColumn::of(text, 0), LineColumn { line: 1, column: 1 });
        let x = text.find('"').unwrap();
        assert_eq!(LineColumn::of(text, x), LineColumn { line: 2, column: 6 });
        assert_eq!(
            LineColumn::of(text, text.len()),
            LineColumn { line: 3, column: 1 }
        );
    }
}
