//! The proxy's settings, resolved once from the command line and the configuration file
//! (`crate::config_file`): every flag checked against the limits it bounds, host names resolved,
//! CPU lists parsed, routes built. Workers only read a `Config`.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use crate::access_log::AccessLogTarget;
use crate::cli::{DriverChoice, ReverseArgs};
use crate::client_tls::{ClientTls, ClientTlsError, ClientTlsSettings};
use crate::config_file::{FileRoute, Loaded};
use crate::http::HeadLimits;
use crate::mcp_session::SessionKeys;
use crate::route::settings::{RouteSettings, RouteSpec};
use crate::rules::{Interceptor, RuleChain, RuleSpec};
use crate::sse::table::RingLimits;
use crate::upstream::health::EjectPolicy;
use crate::upstream::replica::{Upstream, UpstreamSpec, UpstreamUrlError};
use crate::upstream::tls::{TlsConfigError, TlsSettings, UpstreamTls};

/// The process's timeouts, each documented on its flag in `crate::cli`. The per-request ones
/// (connect, upstream header, body) are each route's (`RouteSettings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
    /// `--tunnel-idle-timeout`: an upgraded connection with no byte either way is closed.
    pub tunnel_idle: Duration,
    pub send: Duration,
    pub pool_idle: Duration,
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    /// `--admin`: where the admin endpoint listens (None = off).
    pub admin: Option<SocketAddr>,
    /// Every replica of every route, each URL once: the pool, the address cache and the
    /// resolver keep one entry per replica, whichever routes share it.
    pub upstreams: Vec<Arc<Upstream>>,
    pub workers: usize,
    /// CPU for each worker (cycled), or None when not pinning.
    pub cpus: Option<Vec<usize>>,
    pub driver: DriverChoice,
    pub uring_entries: u32,
    /// `--turn-slice` (crate::turns).
    pub turn_slice: Duration,
    pub max_connections: usize,
    pub backlog: i32,
    pub upstream_pool_size: usize,
    pub resolve_interval: Duration,
    pub timeouts: Timeouts,
    pub head_limits: HeadLimits,
    /// `--sse-partial-memory`: what the unfinished events of all streams may hold together.
    pub sse_partial_memory: usize,
    /// `--hold-max-streams`: streams held without a client at once, per worker.
    pub hold_max_streams: usize,
    pub rings: RingLimits,
    /// `--replay-store`: the Redis the rings' events are also written to (None = off;
    /// restart-only).
    pub(crate) replay_store: Option<crate::store::StoreConfig>,
    /// The routes in the order they are tried (first match wins): the file's `[[route]]`
    /// tables, or one route for every request to the `--upstream` replicas.
    pub(crate) routes: Vec<RouteSpec>,
    /// The file's `[[rule]]` tables, checked, in file order (empty without a file). Not
    /// restart-only: a reload takes the new file's rules (`crate::reload`).
    pub(crate) rules: Vec<RuleSpec>,
    /// `--upstream-eject-after`, `--upstream-eject-for`: passive health of the replicas.
    pub upstream_eject: EjectPolicy,
    /// `--upstream-ca`, `--upstream-insecure`, as given.
    pub tls_settings: TlsSettings,
    /// The TLS client settings built from them (roots loaded, CA files read): present when an
    /// https:// replica or a TLS flag asks for them. Each worker takes its own copy.
    pub upstream_tls: Option<UpstreamTls>,
    /// `--tls-cert`, `--tls-key`, as given (empty: clients speak plain HTTP).
    pub client_tls_settings: ClientTlsSettings,
    /// The TLS server settings built from them (every pair read and checked); None without
    /// --tls-cert. A reload builds it again from the files (`crate::reload`).
    pub client_tls: Option<ClientTls>,
    /// `--h2-*`: the limits of HTTP/2 client connections.
    pub h2: crate::client_h2::H2Limits,
    /// `--access-log`: where access log lines go (None = off).
    pub access_log: Option<AccessLogTarget>,
    /// `--session-key-file` (restart-only).
    pub(crate) session_key_file: Option<std::path::PathBuf>,
    /// The keys that seal MCP session ids: the file's, else random ones made at start.
    pub(crate) session_keys: Arc<SessionKeys>,
    /// A program's own interceptors (`crate::rules::Interceptor`), run after the file's rules
    /// on every route; kept across reloads. Empty for the `tether` binary.
    pub interceptors: Vec<Arc<dyn Interceptor>>,
    /// The file's rules and `interceptors`, compiled: what every route's requests run through
    /// (`Config::build_rule_chain`, at start and at each reload).
    pub(crate) rule_chain: RuleChain,
}

/// Why the command line cannot run.
#[derive(Debug)]
pub enum ConfigError {
    Bind {
        addr: String,
        reason: String,
    },
    /// `--admin` is not an address.
    Admin {
        addr: String,
    },
    Upstream(UpstreamUrlError),
    Resolve {
        url: String,
        reason: String,
    },
    Cpus {
        list: String,
        reason: String,
    },
    Zero {
        flag: &'static str,
    },
    /// A header name that is not an HTTP token.
    HeaderName {
        flag: &'static str,
        name: String,
    },
    UringEntries(u32),
    /// A size flag above what tether accepts for it.
    TooLarge {
        flag: &'static str,
        max: usize,
    },
    /// An HTTP/2 setting outside the range RFC 9113 allows for it.
    H2Range {
        flag: &'static str,
        min: u32,
        max: u32,
    },
    /// Neither --bind nor `bind` in the configuration file.
    NoBind,
    /// The command line (with the file's keys) was refused as a whole.
    CommandLine {
        reason: String,
    },
    /// `--session-key-file` cannot be used (the reason names the file and the line).
    SessionKey(String),
    /// `--upstream-ca` cannot be used (the reason names the file).
    UpstreamTls(TlsConfigError),
    /// `--tls-cert`/`--tls-key` cannot be used (the reason names the file).
    ClientTls(ClientTlsError),
    /// An error in the settings of the route at this index (file order).
    InRoute {
        index: usize,
        error: Box<ConfigError>,
    },
}

impl ConfigError {
    /// The flag (and file key) whose value is to blame, when one is.
    pub fn setting(&self) -> Option<&'static str> {
        let flag = match self {
            ConfigError::Bind { .. } => "--bind",
            ConfigError::Admin { .. } => "--admin",
            ConfigError::Upstream(_) | ConfigError::Resolve { .. } => "--upstream",
            ConfigError::Cpus { .. } => "--cpus",
            ConfigError::Zero { flag }
            | ConfigError::HeaderName { flag, .. }
            | ConfigError::TooLarge { flag, .. }
            | ConfigError::H2Range { flag, .. } => flag,
            ConfigError::UringEntries(_) => "--uring-entries",
            ConfigError::SessionKey(_) => "--session-key-file",
            ConfigError::UpstreamTls(_) => "--upstream-ca",
            ConfigError::ClientTls(_) => "--tls-cert",
            ConfigError::InRoute { error, .. } => return error.setting(),
            ConfigError::NoBind | ConfigError::CommandLine { .. } => return None,
        };
        Some(flag.trim_start_matches("--"))
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Bind { addr, reason } => write!(f, "--bind {addr}: {reason}"),
            ConfigError::Admin { addr } => {
                write!(f, "--admin {addr}: not an address (host:port)")
            }
            ConfigError::NoBind => f.write_str(
                "no address to listen on: give --bind ADDR, or bind = \"ADDR\" in the configuration file",
            ),
            ConfigError::CommandLine { reason } => write!(f, "{reason}"),
            ConfigError::InRoute { index, error } => write!(f, "route {}: {error}", index + 1),
            ConfigError::Upstream(e) => write!(f, "--upstream: {e}"),
            ConfigError::Resolve { url, reason } => {
                write!(f, "--upstream {url}: cannot resolve its host: {reason}")
            }
            ConfigError::Cpus { list, reason } => write!(f, "--cpus {list}: {reason}"),
            ConfigError::Zero { flag } => write!(f, "{flag} must be at least 1"),
            ConfigError::H2Range { flag, min, max } => {
                write!(f, "{flag} must be from {min} to {max} (RFC 9113)")
            }
            ConfigError::TooLarge { flag, max } => {
                write!(f, "{flag} must be at most {max} bytes ({} MiB)", max >> 20)
            }
            ConfigError::HeaderName { flag, name } => write!(
                f,
                "{flag} {name:?}: not a header name (letters, digits and !#$%&'*+-.^_`|~ only)"
            ),
            ConfigError::SessionKey(reason) => write!(f, "--session-key-file: {reason}"),
            ConfigError::UpstreamTls(e) => write!(f, "--upstream-ca: {e}"),
            ConfigError::ClientTls(e) => write!(f, "--tls-cert/--tls-key: {e}"),
            ConfigError::UringEntries(n) => write!(
                f,
                "--uring-entries {n}: must be a power of two from 2 to 32768 (io_uring refuses others)"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// The settings of a command line without a configuration file: one route for every
    /// request, to the `--upstream` replicas.
    pub fn from_args(args: &ReverseArgs) -> Result<Config, ConfigError> {
        Config::build(args, &[], &[], Vec::new())
    }

    /// The settings of a command line and the file it names (`crate::config_file::load`).
    pub fn from_loaded(loaded: &Loaded) -> Result<Config, ConfigError> {
        Config::build(&loaded.args, &loaded.routes, &[], loaded.rules.clone())
    }

    /// The settings of a reloaded file, keeping the replicas the process already knows: a URL
    /// in `known` keeps its index (and so, on every worker, its pool, address cache and passive
    /// health) and is not resolved again; new URLs are resolved and appended. `known` is never
    /// shortened (see `crate::reload`), so an index an old request holds stays valid.
    pub(crate) fn from_loaded_keeping(
        loaded: &Loaded,
        known: &[Arc<Upstream>],
    ) -> Result<Config, ConfigError> {
        Config::build(&loaded.args, &loaded.routes, known, loaded.rules.clone())
    }

    fn build(
        args: &ReverseArgs,
        file_routes: &[FileRoute],
        known: &[Arc<Upstream>],
        rules: Vec<RuleSpec>,
    ) -> Result<Config, ConfigError> {
        let bind_text = args.bind.as_deref().ok_or(ConfigError::NoBind)?;
        let bind = bind_text
            .to_socket_addrs()
            .map_err(|e| ConfigError::Bind {
                addr: bind_text.to_string(),
                reason: e.to_string(),
            })?
            .next()
            .ok_or_else(|| ConfigError::Bind {
                addr: bind_text.to_string(),
                reason: "resolves to no address".into(),
            })?;
        let admin = match &args.admin {
            None => None,
            Some(text) => Some(
                text.to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| ConfigError::Admin { addr: text.clone() })?,
            ),
        };
        let mut upstreams: Vec<Arc<Upstream>> = known.to_vec();
        let mut routes = Vec::with_capacity(file_routes.len().max(1));
        if file_routes.is_empty() {
            // The command line alone: one route, for every request.
            routes.push(RouteSpec {
                name: None,
                host: None,
                path_prefix: "/".into(),
                replicas: replicas(&args.upstreams, &mut upstreams)?,
                settings: RouteSettings::from_args(args)?,
            });
        }
        for (index, route) in file_routes.iter().enumerate() {
            let in_route = |error| ConfigError::InRoute {
                index,
                error: Box::new(error),
            };
            routes.push(RouteSpec {
                name: route.name.clone(),
                host: route.host.clone(),
                path_prefix: route.path_prefix.clone(),
                replicas: replicas(&route.upstreams, &mut upstreams).map_err(in_route)?,
                settings: RouteSettings::from_args(&route.args).map_err(in_route)?,
            });
        }
        // The top level's per-request settings are checked even when every route sets its own.
        RouteSettings::from_args(args)?;
        let workers = match args.workers {
            Some(0) => return Err(ConfigError::Zero { flag: "--workers" }),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let cpus = if args.no_pin {
            None
        } else if let Some(list) = &args.cpus {
            Some(parse_cpu_list(list).map_err(|reason| ConfigError::Cpus {
                list: list.clone(),
                reason,
            })?)
        } else {
            allowed_cpus()
        };
        if args.max_connections == 0 {
            return Err(ConfigError::Zero {
                flag: "--max-connections",
            });
        }
        if !args.uring_entries.is_power_of_two() || !(2..=32_768).contains(&args.uring_entries) {
            return Err(ConfigError::UringEntries(args.uring_entries));
        }
        let tls_settings = TlsSettings {
            ca_files: args.upstream_ca.clone(),
            insecure: args.upstream_insecure,
        };
        // Built only when asked for: loading the system's roots reads a few hundred files.
        let needs_tls = upstreams.iter().any(|u| u.spec.tls_name.is_some())
            || tls_settings != TlsSettings::default();
        let upstream_tls = match needs_tls {
            true => Some(UpstreamTls::build(&tls_settings).map_err(ConfigError::UpstreamTls)?),
            false => None,
        };
        let client_tls_settings = ClientTlsSettings {
            pairs: crate::client_tls::pairs(&args.tls_cert, &args.tls_key)
                .map_err(|e| ConfigError::ClientTls(e.into()))?,
        };
        let client_tls = match client_tls_settings.pairs.is_empty() {
            true => None,
            false => {
                Some(ClientTls::build(&client_tls_settings, None).map_err(ConfigError::ClientTls)?)
            }
        };
        let h2 = crate::client_h2::H2Limits {
            max_concurrent_streams: args.h2_max_concurrent_streams,
            max_header_list_bytes: args.h2_max_header_list,
            initial_stream_window: args.h2_stream_window,
            initial_connection_window: args.h2_connection_window,
            max_frame_bytes: args.h2_max_frame,
            max_resets_per_window: args.h2_max_resets,
        };
        h2.check()?;
        Ok(Config {
            bind,
            admin,
            upstreams,
            workers,
            cpus,
            driver: args.driver,
            uring_entries: args.uring_entries,
            turn_slice: args.turn_slice,
            max_connections: args.max_connections,
            backlog: args.backlog,
            upstream_pool_size: args.upstream_pool_size,
            resolve_interval: args.resolve_interval,
            timeouts: Timeouts {
                header: args.header_timeout,
                idle: args.idle_timeout,
                tunnel_idle: args.tunnel_idle_timeout,
                send: args.send_timeout,
                pool_idle: args.upstream_pool_idle,
                shutdown_grace: args.shutdown_grace,
            },
            h2,
            head_limits: HeadLimits {
                max_head_bytes: args.max_head_bytes,
                max_headers: args.max_headers,
                max_target_bytes: args.max_target_bytes,
            },
            sse_partial_memory: args.sse_partial_memory,
            hold_max_streams: args.hold_max_streams,
            rings: RingLimits {
                max_events: args.replay_events,
                max_bytes: args.replay_bytes,
                ttl: args.replay_ttl,
                memory: args.replay_memory,
            },
            replay_store: args
                .replay_store
                .as_ref()
                .map(|url| crate::store::StoreConfig {
                    url: url.clone(),
                    max_events: args.replay_events,
                    ttl: args.replay_ttl,
                    queue_events: crate::store::DEFAULT_QUEUE_EVENTS,
                }),
            routes,
            rules,
            upstream_eject: EjectPolicy {
                after: args.upstream_eject_after,
                period: args.upstream_eject_for,
            },
            tls_settings,
            upstream_tls,
            client_tls_settings,
            client_tls,
            access_log: args.access_log.as_deref().map(AccessLogTarget::parse),
            session_key_file: args.session_key_file.clone(),
            session_keys: Arc::new(match &args.session_key_file {
                Some(path) => SessionKeys::from_file(path)
                    .map_err(|e| ConfigError::SessionKey(e.to_string()))?,
                None => {
                    SessionKeys::random().map_err(|e| ConfigError::SessionKey(e.to_string()))?
                }
            }),
            interceptors: Vec::new(),
            rule_chain: RuleChain::default(),
        })
    }

    /// The CPU worker `index` is pinned to, if pinning.
    /// Compiles the rules and the program's interceptors into the chain every route runs
    /// (their counters keep their values across reloads, by rule name).
    pub(crate) fn build_rule_chain(&mut self) {
        let mut all = crate::rules::compile(&self.rules);
        all.extend(self.interceptors.iter().cloned());
        self.rule_chain = RuleChain::new(all);
    }

    /// Logs, at start and after a reload, where upstream certificates are verified from, and
    /// warns when `--upstream-insecure` verifies nothing, naming the upstreams it affects.
    pub(crate) fn log_upstream_tls(&self) {
        let Some(tls) = &self.upstream_tls else {
            return;
        };
        let https: Vec<&str> = self
            .upstreams
            .iter()
            .filter(|u| u.spec.tls_name.is_some())
            .map(|u| &*u.spec.url)
            .collect();
        let list = if https.is_empty() {
            "none configured yet".to_string()
        } else {
            https.join(", ")
        };
        if tls.insecure {
            crate::log_warn!(
                "--upstream-insecure: TLS certificates of https upstreams are NOT verified (any certificate, any name, is accepted) for: {list}"
            );
        } else {
            crate::log_info!(
                "https upstreams ({list}) are verified against {}",
                tls.roots
            );
        }
    }

    /// Logs, at start and after a reload, which certificates TLS clients get.
    pub(crate) fn log_client_tls(&self) {
        if let Some(tls) = &self.client_tls {
            crate::log_info!(
                "clients connect over TLS (1.2, 1.3; ALPN http/1.1) with the certificates of {} (by SNI; the first for no or unknown names)",
                tls.files.join(", ")
            );
        }
    }

    pub fn cpu_for(&self, index: usize) -> Option<usize> {
        self.cpus
            .as_ref()
            .filter(|c| !c.is_empty())
            .map(|c| c[index % c.len()])
    }
}

/// The replicas of one route as indices into `upstreams`, adding the URLs not there yet (each
/// resolved once, here, at start-up or on a reload that brings it).
fn replicas(
    urls: &[String],
    upstreams: &mut Vec<Arc<Upstream>>,
) -> Result<Vec<usize>, ConfigError> {
    let mut indices = Vec::with_capacity(urls.len());
    for url in urls {
        if let Some(known) = upstreams.iter().position(|u| *u.spec.url == **url) {
            indices.push(known);
            continue;
        }
        let spec = UpstreamSpec::parse(url).map_err(ConfigError::Upstream)?;
        let addrs = spec.resolve().map_err(|e| ConfigError::Resolve {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        upstreams.push(Arc::new(Upstream::new(spec, addrs)));
        indices.push(upstreams.len() - 1);
    }
    Ok(indices)
}

/// Parses "0,2-3" into [0, 2, 3].
pub fn parse_cpu_list(list: &str) -> Result<Vec<usize>, String> {
    let number = |t: &str| -> Result<usize, String> {
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) || t.len() > 4 {
            return Err(format!("'{t}' is not a CPU number"));
        }
        Ok(t.bytes().fold(0, |acc, b| acc * 10 + usize::from(b - b'0')))
    };
    let mut cpus = Vec::new();
    for part in list.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (number(a)?, number(b)?);
                if a > b {
                    return Err(format!("range '{part}' runs backwards"));
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(number(part)?),
        }
    }
    Ok(cpus)
}

/// The CPUs this process may run on (its affinity mask, e.g. under `taskset`), in order.
fn allowed_cpus() -> Option<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect();
        Some(cpus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_identity_header_must_be_a_header_name() {
        let args = |name: &str| crate::cli::test_args(&["--identity-header", name]);
        let err = Config::from_args(&args("X Api Key")).unwrap_err();
        assert!(
            err.to_string()
                .contains("--identity-header \"X Api Key\": not a header name"),
            "{err}"
        );
        let ok = Config::from_args(&args("X-Api-Key")).unwrap();
        assert!(ok.routes[0]
            .settings
            .identity
            .names()
            .any(|n| n == "x-api-key"));
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0,2-3"), Ok(vec![0, 2, 3]));
        assert_eq!(parse_cpu_list("1"), Ok(vec![1]));
        for bad in ["", "a", "3-1", "1,,2", "-1", "+1"] {
            assert!(parse_cpu_list(bad).is_err(), "{bad}");
        }
    }
}
