//! The configuration file: `tether reverse --config tether.toml`.
//!
//! Every flag of `tether reverse` is a key of the same name at the top level (`workers = 2`,
//! `sse-heartbeat = "5s"`, `identity-header = ["X-Api-Key"]`, `assign-ids = true`), and
//! `[[route]]` tables send requests by host and path prefix to their own upstreams with their own
//! per-request settings (`keys::ROUTE_KEYS`). Flags given on the command line override the file,
//! its routes included.
//!
//! How a file becomes settings, with no list of keys kept by hand:
//! 1. The file is parsed into a spanned TOML table: every key and value keeps its byte range,
//!    so every error names its line and column.
//! 2. Each key is looked up among the `reverse` command's arguments (clap), and its value is
//!    read by that argument's own value parser, exactly as on the command line
//!    (`keys::tokens`): a flag added later is a key at once.
//! 3. The keys become flag tokens appended to the command line for every flag the command line
//!    did not give (`ArgMatches::value_source`), and the whole is parsed again: the result is
//!    the `ReverseArgs` a command line alone would give. A route's settings are parsed the same
//!    way, with the route's keys in place of the top level's.
//!
//! What is checked only once settings are built (`crate::config`: a zero worker count, a size
//! past its limit, a host name that does not resolve) is placed back at its key with
//! [`Loaded::place`].

mod error;
mod keys;
pub(crate) mod listing;
mod routes;
mod rules;

use std::ffi::OsString;
use std::ops::Range;

use clap::parser::ValueSource;
use clap::{ArgMatches, Command, CommandFactory, FromArgMatches};
use toml::de::{DeTable, DeValue};
use toml::Spanned;

pub use error::{ConfigFileError, KeyScope, LineColumn, LoadError};
use keys::{closest, reason_of, type_name, CONFIG_FLAG, ROUTE_OWN_KEYS, ROUTE_TABLE, RULE_TABLE};
use listing::{Listing, Origin};

use crate::cli::{Cli, ReverseArgs};
use crate::config::ConfigError;
use crate::route::host::HostPattern;
use crate::rules::spec::RuleSpec;

/// A configuration read from the command line and the file it names, not yet resolved
/// (`crate::config::Config::from_loaded` resolves it).
#[derive(Debug)]
pub struct Loaded {
    /// The process's settings: the command line over the file's top level over the defaults.
    pub args: ReverseArgs,
    /// The file's routes, in file order; empty without a file or when it has none (then
    /// `args.upstreams` is the one route for every request).
    pub routes: Vec<FileRoute>,
    /// The file's `[[rule]]` tables, checked, in file order; empty without a file or when it
    /// has none.
    pub rules: Vec<RuleSpec>,
    /// The file, to place errors found later.
    source: Option<FileSource>,
    /// Every process-wide setting with its value and origin, for `tether check`.
    pub(crate) listing: Listing,
}

/// One `[[route]]` table.
#[derive(Debug)]
pub struct FileRoute {
    pub name: Option<String>,
    pub(crate) host: Option<HostPattern>,
    /// "/" when the table has no `path-prefix`.
    pub path_prefix: String,
    pub upstreams: Vec<String>,
    /// The settings of this route's requests: its own keys over the file's top level, the
    /// command line over both.
    pub args: ReverseArgs,
    /// Where the table starts, and where each of its keys' values is.
    pub(super) at: LineColumn,
    pub(super) keys: Vec<(String, LineColumn)>,
    /// Where each of `upstreams` is.
    pub(super) upstream_at: Vec<LineColumn>,
    /// The per-route settings with their values and origins, for `tether check`.
    pub(crate) listing: Listing,
}

#[derive(Debug)]
struct FileSource {
    path: String,
    /// Where each top-level key's value is.
    keys: Vec<(String, LineColumn)>,
}

/// One key of the file that is a flag: its tokens for the command line.
#[derive(Debug)]
pub(super) struct FlagEntry {
    pub(super) key: String,
    /// clap's id of the flag (the field name: `upstreams` for `upstream`).
    pub(super) id: String,
    pub(super) tokens: Vec<OsString>,
    pub(super) key_at: LineColumn,
    pub(super) value_at: LineColumn,
}

/// The file being read: its name and text, to turn spans into places.
pub(super) struct FileText<'t> {
    pub(super) path: String,
    text: &'t str,
}

impl FileText<'_> {
    pub(super) fn at(&self, span: Range<usize>) -> LineColumn {
        LineColumn::of(self.text, span.start)
    }

    pub(super) fn error(&self, span: Range<usize>, error: ConfigFileError) -> LoadError {
        LoadError {
            file: Some(self.path.clone()),
            at: Some(self.at(span)),
            error,
        }
    }

    pub(super) fn literal(&self, span: Range<usize>) -> String {
        self.text.get(span).unwrap_or("").trim().to_string()
    }
}

/// Reads the command line `argv` (of `tether reverse` or `tether check`) and the file its
/// `--config` names, if any.
pub fn load(argv: &[OsString]) -> Result<Loaded, LoadError> {
    let cli = Cli::command();
    let reverse = cli
        .find_subcommand("reverse")
        .expect("the CLI has a reverse command")
        .clone();
    let (matches, args) = parse(&cli, argv).map_err(|reason| LoadError {
        file: None,
        at: None,
        error: ConfigFileError::Invalid(ConfigError::CommandLine { reason }),
    })?;
    let sub = subcommand(&matches);
    let given: Vec<String> = reverse
        .get_arguments()
        .filter(|a| sub.value_source(a.get_id().as_str()) == Some(ValueSource::CommandLine))
        .map(|a| a.get_id().to_string())
        .collect();
    let Some(path) = args.config.clone() else {
        let listing = Listing::new(
            &reverse,
            sub,
            |_| true,
            |key| given_key(&reverse, &given, key).then_some(Origin::CommandLine),
        );
        return Ok(Loaded {
            args,
            routes: Vec::new(),
            rules: Vec::new(),
            source: None,
            listing,
        });
    };
    let path_text = path.display().to_string();
    let text = std::fs::read_to_string(&path).map_err(|e| LoadError {
        file: Some(path_text.clone()),
        at: None,
        error: ConfigFileError::Unreadable {
            reason: e.to_string(),
        },
    })?;
    let file = FileText {
        path: path_text,
        text: &text,
    };
    let doc = DeTable::parse(&text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().lines().next().unwrap_or("").to_string();
        file.error(span, ConfigFileError::Syntax { message })
    })?;

    // ---- the top level ----
    let mut top: Vec<FlagEntry> = Vec::new();
    let mut route_tables: Vec<&Spanned<DeValue<'_>>> = Vec::new();
    let mut rule_tables: Vec<&Spanned<DeValue<'_>>> = Vec::new();
    let mut route_key_at: Option<Range<usize>> = None;
    for (key, value) in in_file_order(doc.get_ref()) {
        let name: &str = key.get_ref();
        if name == ROUTE_TABLE {
            route_tables = array_of_tables(&file, name, value)?;
            route_key_at = Some(key.span());
            continue;
        }
        if name == RULE_TABLE {
            rule_tables = array_of_tables(&file, name, value)?;
            continue;
        }
        if name == CONFIG_FLAG {
            return Err(file.error(key.span(), ConfigFileError::ConfigInFile));
        }
        if ROUTE_OWN_KEYS.contains(&name) && flag(&reverse, name).is_none() {
            return Err(file.error(
                key.span(),
                ConfigFileError::RouteKeyAtTop { key: name.into() },
            ));
        }
        let Some(arg) = flag(&reverse, name) else {
            let known = reverse
                .get_arguments()
                .filter_map(|a| a.get_long())
                .filter(|k| *k != CONFIG_FLAG)
                .chain([ROUTE_TABLE, RULE_TABLE]);
            return Err(file.error(
                key.span(),
                ConfigFileError::UnknownKey {
                    key: name.into(),
                    suggestion: closest(name, known).map(str::to_string),
                    scope: KeyScope::TopLevel,
                },
            ));
        };
        top.push(flag_entry(&cli, &file, arg, key, value)?);
    }
    check_conflicts(&reverse, &file, &top)?;

    // The command line wins: a file key it gave, or one that conflicts with a flag it gave, is
    // left out.
    let overridden = |entry: &FlagEntry| {
        given.contains(&entry.id) || given.iter().any(|g| conflict(&reverse, &entry.id, g))
    };
    let kept: Vec<&FlagEntry> = top.iter().filter(|e| !overridden(e)).collect();

    let mut merged: Vec<OsString> = argv.to_vec();
    for entry in &kept {
        merged.extend(entry.tokens.iter().cloned());
    }
    let (top_matches, top_args) =
        parse(&cli, &merged).map_err(|reason| file_wide(&file, reason))?;
    let top_sub = subcommand(&top_matches);
    let listing = Listing::new(
        &reverse,
        top_sub,
        |_| true,
        |key| {
            if given_key(&reverse, &given, key) {
                Some(Origin::CommandLine)
            } else {
                kept.iter().any(|e| e.key == key).then_some(Origin::File)
            }
        },
    );

    // ---- the routes ----
    let top_upstream = top.iter().find(|e| e.key == "upstream");
    if let (Some(first), false) = (route_tables.first(), route_tables.is_empty()) {
        if let Some(entry) = top_upstream {
            return Err(LoadError {
                file: Some(file.path.clone()),
                at: Some(entry.key_at),
                error: ConfigFileError::UpstreamBesideRoutes,
            });
        }
        if given.iter().any(|g| g == "upstreams") {
            return Err(file.error(first.span(), ConfigFileError::CommandLineUpstreamWithRoutes));
        }
    }
    let mut routes: Vec<FileRoute> = Vec::with_capacity(route_tables.len());
    for (index, table) in route_tables.iter().enumerate() {
        let route = routes::read_route(&cli, &reverse, &file, index, table, argv, &kept, &given)?;
        if let Some(name) = &route.name {
            if let Some(first) = routes.iter().find(|r| r.name.as_ref() == Some(name)) {
                let at = route
                    .keys
                    .iter()
                    .find(|(k, _)| k == "name")
                    .map_or(route.at, |(_, at)| *at);
                return Err(LoadError {
                    file: Some(file.path.clone()),
                    at: Some(at),
                    error: ConfigFileError::DuplicateRouteName {
                        name: name.clone(),
                        first_line: first.at.line,
                    },
                });
            }
        }
        routes.push(route);
    }
    if routes.is_empty() && top_args.upstreams.is_empty() {
        let at = route_key_at.map(|span| file.at(span));
        return Err(LoadError {
            file: Some(file.path.clone()),
            at,
            error: ConfigFileError::NoUpstream,
        });
    }
    let rules = rules::read_rules(&file, &rule_tables, &routes)?;
    let keys = top.iter().map(|e| (e.key.clone(), e.value_at)).collect();
    Ok(Loaded {
        args: top_args,
        routes,
        rules,
        source: Some(FileSource {
            path: file.path.clone(),
            keys,
        }),
        listing,
    })
}

impl Loaded {
    /// The file the settings were read from, if any.
    pub fn file(&self) -> Option<&str> {
        self.source.as_ref().map(|s| s.path.as_str())
    }

    /// An error found while resolving these settings, at the key of the file that set the
    /// offending value (of the route it names, else of the top level); without a place when the
    /// value came from the command line or the defaults.
    pub fn place(&self, error: ConfigError) -> LoadError {
        let Some(source) = &self.source else {
            return LoadError {
                file: None,
                at: None,
                error: ConfigFileError::Invalid(error),
            };
        };
        let (route, inner) = match &error {
            ConfigError::InRoute { index, error } => (self.routes.get(*index), &**error),
            other => (None, other),
        };
        let at = match (route, inner) {
            (Some(route), ConfigError::Resolve { url, .. }) => route
                .upstreams
                .iter()
                .position(|u| u == url)
                .map(|i| route.upstream_at[i]),
            (Some(route), e) => e
                .setting()
                .and_then(|key| find(&route.keys, key))
                .or_else(|| e.setting().and_then(|key| find(&source.keys, key))),
            (None, e) => e.setting().and_then(|key| find(&source.keys, key)),
        };
        let error = match error {
            ConfigError::InRoute { error, .. } => *error,
            other => other,
        };
        LoadError {
            file: at.map(|_| source.path.clone()),
            at,
            error: ConfigFileError::Invalid(error),
        }
    }
}

/// The tables of `[[route]]` or `[[rule]]` (key `key`), refusing any other value there.
fn array_of_tables<'a, 'i>(
    file: &FileText<'_>,
    key: &str,
    value: &'a Spanned<DeValue<'i>>,
) -> Result<Vec<&'a Spanned<DeValue<'i>>>, LoadError> {
    let wrong = |found: &Spanned<DeValue<'_>>| {
        file.error(
            found.span(),
            ConfigFileError::WrongType {
                key: key.into(),
                expected: format!("[[{key}]] tables"),
                found: type_name(found.get_ref()),
            },
        )
    };
    let DeValue::Array(tables) = value.get_ref() else {
        return Err(wrong(value));
    };
    let mut out = Vec::with_capacity(tables.len());
    for table in tables.iter() {
        if !table.get_ref().is_table() {
            return Err(wrong(table));
        }
        out.push(table);
    }
    Ok(out)
}

fn find(keys: &[(String, LineColumn)], key: &str) -> Option<LineColumn> {
    keys.iter().find(|(k, _)| k == key).map(|(_, at)| *at)
}

/// A top-level or route key that is a flag, read into its command-line tokens. A top-level
/// `upstream` is checked as URLs here too, so that a bad one is placed at its element.
pub(super) fn flag_entry(
    cli: &Command,
    file: &FileText<'_>,
    arg: &clap::Arg,
    key: &Spanned<toml::de::DeString<'_>>,
    value: &Spanned<DeValue<'_>>,
) -> Result<FlagEntry, LoadError> {
    let name: &str = key.get_ref();
    let element_span = |i: Option<usize>| match (i, value.get_ref()) {
        (Some(i), DeValue::Array(items)) => items.get(i).map_or(value.span(), |v| v.span()),
        _ => value.span(),
    };
    if name == "upstream" {
        routes::route_upstreams(file, value)?;
    }
    let tokens = keys::tokens(cli, arg, name, value.get_ref(), |i| {
        file.literal(element_span(i))
    })
    .map_err(|(i, e)| file.error(element_span(i), e))?;
    Ok(FlagEntry {
        key: name.to_string(),
        id: arg.get_id().to_string(),
        tokens,
        key_at: file.at(key.span()),
        value_at: file.at(value.span()),
    })
}

/// Two keys of the file's top level that clap says cannot go together.
fn check_conflicts(
    reverse: &Command,
    file: &FileText<'_>,
    entries: &[FlagEntry],
) -> Result<(), LoadError> {
    for (i, entry) in entries.iter().enumerate() {
        if let Some(first) = entries[..i]
            .iter()
            .find(|e| conflict(reverse, &entry.id, &e.id))
        {
            return Err(LoadError {
                file: Some(file.path.clone()),
                at: Some(entry.key_at),
                error: ConfigFileError::Conflict {
                    key: entry.key.clone(),
                    other: first.key.clone(),
                    other_line: first.key_at.line,
                },
            });
        }
    }
    Ok(())
}

/// Whether clap refuses the flags with ids `a` and `b` together (declared on either side).
fn conflict(reverse: &Command, a: &str, b: &str) -> bool {
    let declared = |x: &str, y: &str| {
        reverse
            .get_arguments()
            .find(|arg| arg.get_id().as_str() == x)
            .is_some_and(|arg| {
                reverse
                    .get_arg_conflicts_with(arg)
                    .iter()
                    .any(|other| other.get_id().as_str() == y)
            })
    };
    declared(a, b) || declared(b, a)
}

/// The flag of `reverse` whose long name is `key`.
pub(super) fn flag<'c>(reverse: &'c Command, key: &str) -> Option<&'c clap::Arg> {
    reverse
        .get_arguments()
        .find(|a| a.get_long() == Some(key) && key != CONFIG_FLAG)
}

/// Whether the command line gave the flag named `key`.
pub(super) fn given_key(reverse: &Command, given: &[String], key: &str) -> bool {
    flag(reverse, key).is_some_and(|a| given.iter().any(|g| g == a.get_id().as_str()))
}

/// The table's entries in the order the file wrote them (the parser keeps them sorted by name).
pub(super) fn in_file_order<'a, 'i>(
    table: &'a DeTable<'i>,
) -> Vec<(
    &'a Spanned<toml::de::DeString<'i>>,
    &'a Spanned<DeValue<'i>>,
)> {
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(k, _)| k.span().start);
    entries
}

/// Parses a whole command line into matches and the reverse arguments.
pub(super) fn parse(cli: &Command, argv: &[OsString]) -> Result<(ArgMatches, ReverseArgs), String> {
    let matches = cli
        .clone()
        .try_get_matches_from(argv)
        .map_err(|e| reason_of(&e))?;
    let args = ReverseArgs::from_arg_matches(subcommand(&matches)).map_err(|e| reason_of(&e))?;
    Ok((matches, args))
}

/// The matches of `reverse` or `check` (both take the reverse flags).
pub(super) fn subcommand(matches: &ArgMatches) -> &ArgMatches {
    matches.subcommand().map_or(matches, |(_, sub)| sub)
}

/// An error about the file as a whole (the command line and the file together refused).
pub(super) fn file_wide(file: &FileText<'_>, reason: String) -> LoadError {
    LoadError {
        file: Some(file.path.clone()),
        at: None,
        error: ConfigFileError::Invalid(ConfigError::CommandLine { reason }),
    }
}
