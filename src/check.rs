//! `tether check`: the configuration `tether reverse` would run with (the command line over the
//! file), validated as `reverse` validates it, host names resolved, nothing bound; printed as
//! TOML with where each value came from, then the routes and the rules.

use std::ffi::OsString;
use std::fmt::Write as _;

use crate::config::Config;
use crate::config_file::listing::quoted;
use crate::config_file::{self, LoadError};

/// The report `tether check` prints for the command line `argv`, or why `reverse` would refuse
/// to start with it.
pub fn report(argv: &[OsString]) -> Result<String, LoadError> {
    let loaded = config_file::load(argv)?;
    let config = Config::from_loaded(&loaded).map_err(|e| loaded.place(e))?;
    let mut out = String::new();
    let source = match loaded.file() {
        Some(file) => format!("{file} (with the command line)"),
        None => "the command line".to_string(),
    };
    let _ = writeln!(
        out,
        "# {source}: valid. {} route{}, {} upstream replica{}, {} worker{}.",
        config.routes.len(),
        plural(config.routes.len()),
        config.upstreams.len(),
        plural(config.upstreams.len()),
        config.workers,
        plural(config.workers),
    );
    let _ = writeln!(out, "# Each setting with where its value came from.\n");
    loaded.listing.write_toml(&mut out);
    if loaded.routes.is_empty() {
        let _ = writeln!(
            out,
            "\n# One route for every request: the upstream replicas above, the settings above."
        );
    }
    for (index, (route, spec)) in loaded.routes.iter().zip(&config.routes).enumerate() {
        let _ = writeln!(
            out,
            "\n[[route]]  # {} of {}: tried in this order, the first match wins",
            index + 1,
            config.routes.len()
        );
        if let Some(name) = &route.name {
            let _ = writeln!(out, "name = {}", quoted(name));
        }
        match &spec.host {
            Some(host) => {
                let _ = writeln!(out, "host = {}", quoted(&host.to_string()));
            }
            None => {
                let _ = writeln!(out, "# host: any");
            }
        }
        let _ = writeln!(out, "path-prefix = {}", quoted(&route.path_prefix));
        let urls: Vec<String> = route.upstreams.iter().map(|u| quoted(u)).collect();
        let _ = writeln!(out, "upstream = [{}]", urls.join(", "));
        for replica in &spec.replicas {
            let upstream = &config.upstreams[*replica];
            let addrs: Vec<String> = upstream.addrs().iter().map(|a| a.to_string()).collect();
            let _ = writeln!(out, "#   {} -> {}", upstream.spec.url, addrs.join(", "));
        }
        route.listing.write_toml(&mut out);
    }
    if !config.rules.is_empty() {
        let _ = writeln!(
            out,
            "\n# Rules: {} [[rule]] table{}, every default written out.",
            config.rules.len(),
            plural(config.rules.len())
        );
        config_file::listing::write_rules(&config.rules, &mut out);
    }
    Ok(out)
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
