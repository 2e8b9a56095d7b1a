//! Why a configuration cannot run, and where: `FILE:LINE:COLUMN: what was wrong, what was
//! expected` for anything the file said, the bare message for the command line.

use std::fmt;

use crate::config::ConfigError;
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
    /// A key that is neither a flag of `tether reverse` nor one of a route's own.
    UnknownKey {
        key: String,
        /// The closest known key, when one is close.
        suggestion: Option<String>,
        in_route: bool,
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
    /// A setting that passed its parser but not the checks of `crate::config` (a zero, a limit).
    Invalid(ConfigError),
}

impl fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigFileError::Unreadable { reason } => write!(f, "cannot read the file: {reason}"),
            ConfigFileError::Syntax { message } => write!(f, "not valid TOML: {message}"),
            ConfigFileError::UnknownKey {
                key,
                suggestion,
                in_route,
            } => {
                let what = if *in_route {
                    "not a route key"
                } else {
                    "not a setting"
                };
                write!(f, "unknown key `{key}`: {what}")?;
                match suggestion {
                    Some(s) => write!(f, "; did you mean `{s}`?"),
                    None if *in_route => f.write_str(
                        " (a route takes name, host, path-prefix, upstream and per-request settings)",
                    ),
                    None => f.write_str(" (every flag of `tether reverse --help` is a key of the same name)"),
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
