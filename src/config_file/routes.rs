//! One `[[route]]` table of the configuration file: its own keys (name, host, path-prefix,
//! upstream) and its per-request settings, parsed over the file's top level.

use std::ffi::OsString;

use clap::Command;
use toml::de::DeValue;
use toml::Spanned;

use super::keys::{closest, type_name, ROUTE_KEYS, ROUTE_OWN_KEYS, ROUTE_TABLE, RULE_TABLE};
use super::listing::{Listing, Origin};
use super::{
    file_wide, flag, flag_entry, given_key, in_file_order, parse, subcommand, ConfigFileError,
    FileRoute, FileText, FlagEntry, KeyScope, LineColumn, LoadError,
};
use crate::route::host::HostPattern;
use crate::upstream::replica::UpstreamSpec;

/// Reads one `[[route]]` table, and parses its settings: the command line, the top level's
/// keys the route does not set, and the route's own keys.
#[allow(clippy::too_many_arguments)]
pub(super) fn read_route(
    cli: &Command,
    reverse: &Command,
    file: &FileText<'_>,
    index: usize,
    table: &Spanned<DeValue<'_>>,
    argv: &[OsString],
    top: &[&FlagEntry],
    given: &[String],
) -> Result<FileRoute, LoadError> {
    let DeValue::Table(keys) = table.get_ref() else {
        unreachable!("checked by the caller");
    };
    let at = file.at(table.span());
    let mut name = None;
    let mut host = None;
    let mut path_prefix = None;
    let mut upstreams: Option<(Vec<String>, Vec<LineColumn>)> = None;
    let mut settings: Vec<FlagEntry> = Vec::new();
    let mut places: Vec<(String, LineColumn)> = Vec::new();
    let string = |key: &str, value: &Spanned<DeValue<'_>>| match value.get_ref() {
        DeValue::String(s) => Ok(s.to_string()),
        other => Err(file.error(
            value.span(),
            ConfigFileError::WrongType {
                key: key.into(),
                expected: "a string".into(),
                found: type_name(other),
            },
        )),
    };
    for (key, value) in in_file_order(keys) {
        let k: &str = key.get_ref();
        places.push((k.to_string(), file.at(value.span())));
        match k {
            "name" => name = Some(string(k, value)?),
            "host" => {
                let text = string(k, value)?;
                host = Some(HostPattern::parse(&text).map_err(|reason| {
                    file.error(
                        value.span(),
                        ConfigFileError::BadHost {
                            host: text,
                            reason: reason.to_string(),
                        },
                    )
                })?);
            }
            "path-prefix" => {
                let text = string(k, value)?;
                let valid = text.starts_with('/')
                    && !text.contains(|c: char| c == '?' || c == '#' || c.is_whitespace());
                if !valid {
                    return Err(file.error(
                        value.span(),
                        ConfigFileError::BadPathPrefix { prefix: text },
                    ));
                }
                path_prefix = Some(text);
            }
            "upstream" => upstreams = Some(route_upstreams(file, value)?),
            // `protocol = "mcp"` says what `mcp = true` says (the route speaks MCP Streamable
            // HTTP); "http" is the default.
            "protocol" => match string(k, value)?.as_str() {
                "mcp" => {
                    let arg = flag(reverse, "mcp").expect("--mcp is a flag");
                    settings.push(FlagEntry {
                        key: "mcp".into(),
                        id: arg.get_id().to_string(),
                        tokens: vec!["--mcp".into()],
                        key_at: file.at(key.span()),
                        value_at: file.at(value.span()),
                    });
                }
                "http" => {}
                other => {
                    return Err(file.error(
                        value.span(),
                        ConfigFileError::BadValue {
                            key: k.into(),
                            value: format!("{other:?}"),
                            reason: "expected \"mcp\" or \"http\"".into(),
                        },
                    ))
                }
            },
            _ if ROUTE_KEYS.contains(&k) => {
                let arg = flag(reverse, k).expect("route keys are flags (tested)");
                settings.push(flag_entry(cli, file, arg, key, value)?);
            }
            RULE_TABLE => {
                // The route's name, wherever the table writes it.
                let route = in_file_order(keys).into_iter().find_map(|(k, v)| {
                    let k: &str = k.get_ref();
                    match (k, v.get_ref()) {
                        ("name", DeValue::String(n)) => Some(n.to_string()),
                        _ => None,
                    }
                });
                return Err(file.error(key.span(), ConfigFileError::RuleInRoute { route }));
            }
            _ if flag(reverse, k).is_some() || k == ROUTE_TABLE => {
                return Err(file.error(
                    key.span(),
                    ConfigFileError::ProcessWideInRoute { key: k.into() },
                ))
            }
            _ => {
                let known = ROUTE_OWN_KEYS.iter().chain(ROUTE_KEYS).copied();
                return Err(file.error(
                    key.span(),
                    ConfigFileError::UnknownKey {
                        key: k.into(),
                        suggestion: closest(k, known).map(str::to_string),
                        scope: KeyScope::Route,
                    },
                ));
            }
        }
    }
    let label = match &name {
        Some(n) => format!("route \"{n}\""),
        None => format!("route {}", index + 1),
    };
    let (upstreams, upstream_at) = match upstreams {
        Some((urls, at)) if !urls.is_empty() => (urls, at),
        _ => {
            return Err(LoadError {
                file: Some(file.path.clone()),
                at: Some(at),
                error: ConfigFileError::RouteWithoutUpstream { route: label },
            })
        }
    };
    let mut merged: Vec<OsString> = argv.to_vec();
    for entry in top {
        if !settings.iter().any(|s| s.id == entry.id) {
            merged.extend(entry.tokens.iter().cloned());
        }
    }
    for entry in &settings {
        if !given.contains(&entry.id) {
            merged.extend(entry.tokens.iter().cloned());
        }
    }
    let (matches, args) = parse(cli, &merged).map_err(|reason| file_wide(file, reason))?;
    let listing = Listing::new(
        reverse,
        subcommand(&matches),
        |key| ROUTE_KEYS.contains(&key),
        |key| {
            if given_key(reverse, given, key) {
                Some(Origin::CommandLine)
            } else if settings.iter().any(|e| e.key == key) {
                Some(Origin::Route)
            } else {
                top.iter().any(|e| e.key == key).then_some(Origin::File)
            }
        },
    );
    Ok(FileRoute {
        name,
        host,
        path_prefix: path_prefix.unwrap_or_else(|| "/".into()),
        upstreams,
        args,
        at,
        keys: places,
        upstream_at,
        listing,
    })
}

/// A route's `upstream`: an array of `http://host:port[/prefix]` strings.
pub(super) fn route_upstreams(
    file: &FileText<'_>,
    value: &Spanned<DeValue<'_>>,
) -> Result<(Vec<String>, Vec<LineColumn>), LoadError> {
    let wrong = |found: &DeValue<'_>, span| {
        file.error(
            span,
            ConfigFileError::WrongType {
                key: "upstream".into(),
                expected: "an array of URLs, e.g. [\"http://10.0.0.5:3000\"]".into(),
                found: type_name(found),
            },
        )
    };
    let DeValue::Array(items) = value.get_ref() else {
        return Err(wrong(value.get_ref(), value.span()));
    };
    let mut urls = Vec::new();
    let mut places = Vec::new();
    for item in items.iter() {
        let DeValue::String(url) = item.get_ref() else {
            return Err(wrong(item.get_ref(), item.span()));
        };
        UpstreamSpec::parse(url)
            .map_err(|e| file.error(item.span(), ConfigFileError::BadUpstream(e)))?;
        urls.push(url.to_string());
        places.push(file.at(item.span()));
    }
    Ok((urls, places))
}
