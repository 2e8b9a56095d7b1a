//! Reloading the configuration file on SIGHUP, without dropping a stream.
//!
//! ```text
//! reload thread (SIGHUP)                         each worker (its inbox task, between requests)
//!   read + validate the file (same argv)           grow its replica caches, health and pool
//!   refused? log file:line:col, count, keep all    close idle pooled connections of replicas
//!   known URLs keep their replica index              no route uses any more
//!   restart-only settings: keep, report once       swap Rc<RouteTable>
//!   post Reload{Arc<Config>, generation} -------> (requests already running hold their Rc<Route>)
//! ```
//!
//! What a reload applies at once, to new requests on every worker: the routes (hosts, path
//! prefixes, order), their replicas and every per-route setting (heartbeat, buffers, resume and
//! timeouts of the upstream side, `max-inspect-bytes`), the `[[rule]]` tables,
//! `upstream-eject-after`/`-for`, `upstream-ca` and `upstream-insecure` (new connections verify
//! with them; pooled ones stay as they were made), the `tls-cert`/`tls-key` files (read again
//! even when they are the same paths: new connections get the new certificates, open ones keep
//! the session they made; the ticket keys are kept, so earlier tickets still resume),
//! `upstream-pool-size`,
//! `upstream-pool-idle`, `resolve-interval`, `log-level` and `log-format`. What it cannot
//! (the listener, the threads, their runtimes, budgets split between workers at start, the
//! client-side timeouts and head limits every connection reads from the start-up settings) is
//! kept as running and named in one "not applied until restart" line ([`RESTART_ONLY`]).
//! Without `--config`, SIGHUP re-reads only the `--tls-cert`/`--tls-key` files (when given).
//!
//! Replica identity: a replica is its URL, exactly as written. A URL the process already knows
//! keeps its index into the replica list, so on every worker it keeps its keep-alive pool, its
//! address cache (and the resolver keeps following it) and its passive health. The list only
//! grows: a replica no route uses any more keeps its index (a stream that began on it may still
//! reconnect to it) but its idle pooled connections are closed and its busy ones are not pooled
//! again (`UpstreamPool::reconfigure`); the resolver stops following it. Memory grows by one
//! small entry per distinct URL ever configured, which an operator's edits bound.
//!
//! Nothing here is on the per-request path: the main thread parses and resolves once, and each
//! worker swaps its own `Rc<RouteTable>` in its own task; a request reads the table through a
//! `RefCell` borrow (a plain counter). The counters below are atomics touched by the reload
//! thread and read by a `/metrics` scrape only.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::cli::{LogFormat, LogLevel};
use crate::client_tls::ClientTls;
use crate::config::{Config, Timeouts};
use crate::config_file::{LoadError, Loaded};
use crate::route::RouteTable;
use crate::sse::directory::{Directory, Message};
use crate::upstream::replica::ResolverHandle;
use crate::worker::WorkerCtx;

/// Reloads applied since start (`tether_config_reloads_total{result="ok"}`).
static RELOADS_OK: AtomicU64 = AtomicU64::new(0);
/// Reloads refused since start (`tether_config_reloads_total{result="error"}`).
static RELOADS_REFUSED: AtomicU64 = AtomicU64::new(0);
/// The configuration generation in force: 1 at start, one more per applied reload.
static GENERATION: AtomicU64 = AtomicU64::new(1);
/// Unix time (seconds) the configuration in force was loaded: at start, then at each applied
/// reload. 0 in a process that does not reload (`tether demo`).
static LOADED_AT: AtomicU64 = AtomicU64::new(0);

/// The settings a running process cannot change, by the key (and flag) that sets them, with
/// why. A reload keeps their running values and names those the file changed.
pub(crate) const RESTART_ONLY: &[&str] = &[
    // The listener, the admin listener and their sockets are bound once, at start.
    "bind",
    "admin",
    "backlog",
    // The worker threads, where they run and their io_uring rings.
    "workers",
    "cpus",
    "no-pin",
    "driver",
    "uring-entries",
    "turn-slice",
    // Read by each worker from its start-up settings on every accept or connection.
    "max-connections",
    "header-timeout",
    "idle-timeout",
    "send-timeout",
    "max-head-bytes",
    "max-headers",
    "max-target-bytes",
    "h2-max-concurrent-streams",
    "h2-max-header-list",
    "h2-stream-window",
    "h2-connection-window",
    "h2-max-frame",
    "h2-max-resets",
    // Budgets split between workers, and limits of rings that may already hold events.
    "sse-partial-memory",
    "replay-events",
    "replay-bytes",
    "replay-ttl",
    "replay-memory",
    // The drain that a SIGTERM starts measures its grace from the start-up settings.
    "shutdown-grace",
    // Session ids sealed under the running keys must keep opening.
    "session-key-file",
    // The store's thread and its connection are started once, with the workers' queues.
    "replay-store",
    // Turning client TLS on or off changes what the listening port speaks; new certificate
    // files (the pairs themselves) are applied.
    "tls-cert",
];

/// The main thread's side of reloading: the command line to read again, and what runs now.
pub struct ConfigReload {
    /// The command line tether was started with; its `--config` names the file, and its flags
    /// still win over the file's keys on every reload.
    argv: Vec<OsString>,
    /// The file, None when tether was started without `--config` (SIGHUP then changes nothing).
    file: Option<String>,
    /// The settings in force: the restart-only ones as started (before the port was resolved,
    /// so `bind = "…:0"` compares equal to itself), the others as last reloaded. Its replica
    /// list is the process's, which workers index (append-only).
    running: Config,
    /// `log-level` and `log-format` in force (global, applied here on the reload thread).
    log: (Option<LogLevel>, LogFormat),
}

impl ConfigReload {
    /// What `argv` loaded into `loaded` and resolved into `config`, before any worker started.
    pub fn new(argv: Vec<OsString>, loaded: &Loaded, config: &Config) -> ConfigReload {
        LOADED_AT.store(unix_now(), Ordering::Relaxed);
        ConfigReload {
            argv,
            file: loaded.file().map(str::to_string),
            running: config.clone(),
            log: (loaded.args.log_level, loaded.args.log_format),
        }
    }

    /// SIGHUP: reads the file again and, when it is valid, hands every worker the new
    /// configuration; when it is not, logs why (file, line, column) and keeps everything.
    /// Blocking (file, DNS of new replicas): called on the reload thread (`crate::server`),
    /// never on a worker.
    pub(crate) fn reload(&mut self, directory: &Directory, resolver: &ResolverHandle) {
        let Some(file) = self.file.clone() else {
            self.reload_certificates(directory);
            return;
        };
        let generation = GENERATION.load(Ordering::Relaxed);
        let read = self.read().map(|(loaded, mut config)| {
            keep_ticket_keys(&self.running, &mut config);
            (loaded, config)
        });
        let (loaded, config) = match read {
            Ok(read) => read,
            Err(e) => {
                RELOADS_REFUSED.fetch_add(1, Ordering::Relaxed);
                crate::log_error!(
                    "reload refused, still serving configuration generation {generation}; fix the file and send SIGHUP again: {e}"
                );
                return;
            }
        };
        let deferred = restart_only_changes(&self.running, &config);
        self.running = with_restart_only_kept(&self.running, config);
        self.apply_log_settings(&loaded);

        let generation = generation + 1;
        let shared = Arc::new(self.running.clone());
        for worker in 0..directory.workers() {
            directory.post(
                worker,
                Message::Reload {
                    config: shared.clone(),
                    generation,
                },
            );
        }
        let in_use = replicas_in_use(&shared);
        let followed: Vec<_> = shared
            .upstreams
            .iter()
            .zip(&in_use)
            .filter(|(_, used)| **used)
            .map(|(u, _)| u.clone())
            .collect();
        resolver.follow(&followed, shared.resolve_interval);
        GENERATION.store(generation, Ordering::Relaxed);
        LOADED_AT.store(unix_now(), Ordering::Relaxed);
        RELOADS_OK.fetch_add(1, Ordering::Relaxed);

        let urls: Vec<&str> = shared.upstreams.iter().map(|u| &*u.spec.url).collect();
        crate::log_info!(
            "configuration reloaded from {file} (generation {generation}): {} routes for new requests; open streams and requests in flight keep the routes they started with",
            shared.routes.len()
        );
        for (index, route) in shared.routes.iter().enumerate() {
            crate::log_info!("{}", route.describe(index, &urls));
        }
        shared.log_upstream_tls();
        shared.log_client_tls();
        if !deferred.is_empty() {
            crate::log_warn!(
                "not applied until restart: {} (the running values stay)",
                deferred.join(", ")
            );
        }
    }

    /// SIGHUP without a configuration file: the `--tls-cert`/`--tls-key` files are read again
    /// and handed to every worker; a broken one keeps the running certificates (logged with
    /// the file and why, counted as a refused reload).
    fn reload_certificates(&mut self, directory: &Directory) {
        let Some(running) = &self.running.client_tls else {
            crate::log_info!(
                "SIGHUP: no configuration file to reload (tether was started without --config) and no --tls-cert to re-read; nothing changed"
            );
            return;
        };
        let generation = GENERATION.load(Ordering::Relaxed);
        let rebuilt = ClientTls::build(&self.running.client_tls_settings, Some(running.ticketer()));
        let tls = match rebuilt {
            Ok(tls) => tls,
            Err(e) => {
                RELOADS_REFUSED.fetch_add(1, Ordering::Relaxed);
                crate::log_error!(
                    "certificate reload refused, still serving the certificates of generation {generation}; fix the file and send SIGHUP again: {e}"
                );
                return;
            }
        };
        self.running.client_tls = Some(tls);
        let generation = generation + 1;
        let shared = Arc::new(self.running.clone());
        for worker in 0..directory.workers() {
            directory.post(
                worker,
                Message::Reload {
                    config: shared.clone(),
                    generation,
                },
            );
        }
        GENERATION.store(generation, Ordering::Relaxed);
        LOADED_AT.store(unix_now(), Ordering::Relaxed);
        RELOADS_OK.fetch_add(1, Ordering::Relaxed);
        crate::log_info!(
            "SIGHUP: certificates re-read (generation {generation}); new connections get them, open ones go on"
        );
        shared.log_client_tls();
    }

    /// The file and the start-up command line, read and resolved as at start (the replicas
    /// the process knows kept at their indices).
    fn read(&self) -> Result<(Loaded, Config), LoadError> {
        let loaded = crate::config_file::load(&self.argv)?;
        let config = Config::from_loaded_keeping(&loaded, &self.running.upstreams)
            .map_err(|e| loaded.place(e))?;
        Ok((loaded, config))
    }

    fn apply_log_settings(&mut self, loaded: &Loaded) {
        let log = (loaded.args.log_level, loaded.args.log_format);
        if log != self.log {
            crate::log::init(log.0);
            crate::log::set_format(log.1);
            self.log = log;
        }
    }
}

/// The restart-only settings (`RESTART_ONLY`) whose value differs between `running` and the
/// reloaded `new`, by key.
fn restart_only_changes(running: &Config, new: &Config) -> Vec<&'static str> {
    let (a, b) = (running, new);
    let (ta, tb): (&Timeouts, &Timeouts) = (&a.timeouts, &b.timeouts);
    let changed = [
        ("bind", a.bind != b.bind),
        ("admin", a.admin != b.admin),
        ("backlog", a.backlog != b.backlog),
        ("workers", a.workers != b.workers),
        ("cpus", a.cpus != b.cpus),
        ("driver", a.driver != b.driver),
        ("uring-entries", a.uring_entries != b.uring_entries),
        ("turn-slice", a.turn_slice != b.turn_slice),
        ("max-connections", a.max_connections != b.max_connections),
        ("header-timeout", ta.header != tb.header),
        ("idle-timeout", ta.idle != tb.idle),
        ("send-timeout", ta.send != tb.send),
        ("shutdown-grace", ta.shutdown_grace != tb.shutdown_grace),
        (
            "max-head-bytes",
            a.head_limits.max_head_bytes != b.head_limits.max_head_bytes,
        ),
        (
            "max-headers",
            a.head_limits.max_headers != b.head_limits.max_headers,
        ),
        (
            "max-target-bytes",
            a.head_limits.max_target_bytes != b.head_limits.max_target_bytes,
        ),
        (
            "h2-max-concurrent-streams",
            a.h2.max_concurrent_streams != b.h2.max_concurrent_streams,
        ),
        (
            "h2-max-header-list",
            a.h2.max_header_list_bytes != b.h2.max_header_list_bytes,
        ),
        (
            "h2-stream-window",
            a.h2.initial_stream_window != b.h2.initial_stream_window,
        ),
        (
            "h2-connection-window",
            a.h2.initial_connection_window != b.h2.initial_connection_window,
        ),
        ("h2-max-frame", a.h2.max_frame_bytes != b.h2.max_frame_bytes),
        (
            "h2-max-resets",
            a.h2.max_resets_per_window != b.h2.max_resets_per_window,
        ),
        (
            "sse-partial-memory",
            a.sse_partial_memory != b.sse_partial_memory,
        ),
        ("replay-events", a.rings.max_events != b.rings.max_events),
        ("replay-bytes", a.rings.max_bytes != b.rings.max_bytes),
        ("replay-ttl", a.rings.ttl != b.rings.ttl),
        ("replay-memory", a.rings.memory != b.rings.memory),
        ("session-key-file", a.session_key_file != b.session_key_file),
        ("tls-cert", a.client_tls.is_some() != b.client_tls.is_some()),
        (
            "replay-store",
            a.replay_store.as_ref().map(|s| &s.url) != b.replay_store.as_ref().map(|s| &s.url),
        ),
    ];
    debug_assert!(changed.iter().all(|(key, _)| RESTART_ONLY.contains(key)));
    changed
        .into_iter()
        .filter_map(|(key, differs)| differs.then_some(key))
        .collect()
}

/// The configuration a reload puts in force: `new`'s routes, replicas and live settings, and
/// `running`'s restart-only ones.
fn with_restart_only_kept(running: &Config, new: Config) -> Config {
    let mut config = Config {
        upstreams: new.upstreams,
        routes: new.routes,
        rules: new.rules,
        upstream_pool_size: new.upstream_pool_size,
        resolve_interval: new.resolve_interval,
        upstream_eject: new.upstream_eject,
        tls_settings: new.tls_settings,
        upstream_tls: new.upstream_tls,
        timeouts: Timeouts {
            pool_idle: new.timeouts.pool_idle,
            ..running.timeouts
        },
        ..running.clone()
    };
    // New certificates apply; TLS on or off does not (restart-only).
    if new.client_tls.is_some() == running.client_tls.is_some() {
        config.client_tls_settings = new.client_tls_settings;
        config.client_tls = new.client_tls;
    }
    // The new rules with the program's own interceptors (kept from `running`).
    config.build_rule_chain();
    config
}

/// A reload's client TLS settings take the running ticket keys, so that tickets issued before
/// it still resume.
fn keep_ticket_keys(running: &Config, new: &mut Config) {
    if let (Some(old), Some(tls)) = (&running.client_tls, &mut new.client_tls) {
        *tls = tls.with_ticketer(old.ticketer());
    }
}

/// For each of the process's replicas: whether a route of `config` uses it.
fn replicas_in_use(config: &Config) -> Vec<bool> {
    let mut in_use = vec![false; config.upstreams.len()];
    for replica in config.routes.iter().flat_map(|r| &r.replicas) {
        in_use[*replica] = true;
    }
    in_use
}

/// A worker takes a reloaded configuration (in its inbox task, so between requests): new
/// replicas get their caches first, the replicas no route uses drain their pools, then the
/// route table is swapped. Requests and streams already running keep the `Rc<Route>` they
/// hold, with the replica indices it names (still valid: the list only grows).
pub(crate) fn apply_on_worker(ctx: &WorkerCtx, config: &Config, generation: u64) {
    let in_use = replicas_in_use(config);
    ctx.upstreams.borrow_mut().adopt(
        &config.upstreams,
        &in_use,
        config.upstream_eject,
        config.upstream_tls.as_ref().map(|tls| tls.for_worker()),
    );
    ctx.pool.borrow_mut().reconfigure(
        &in_use,
        config.upstream_pool_size,
        config.timeouts.pool_idle,
    );
    let table = RouteTable::new(
        &config.routes,
        &config.rule_chain,
        ctx.index,
        Some(&ctx.routes.borrow()),
    );
    *ctx.routes.borrow_mut() = Rc::new(table);
    ctx.client_tls
        .replace(config.client_tls.as_ref().map(|tls| tls.for_worker()));
    ctx.config_generation.set(generation);
    crate::log_debug!(
        "worker {}: new requests use configuration generation {generation}",
        ctx.index
    );
}

/// The reload counters for `/metrics`; `workers`: (worker, the generation it gives new
/// requests), equal to the process's once every worker took the last reload.
pub(crate) fn render_metrics(workers: &[(usize, u64)], out: &mut String) {
    let ok = RELOADS_OK.load(Ordering::Relaxed);
    let refused = RELOADS_REFUSED.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP tether_config_reloads_total Configuration reloads (SIGHUP): ok applied, error refused (the previous configuration stays).\n\
         # TYPE tether_config_reloads_total counter\n\
         tether_config_reloads_total{{result=\"ok\"}} {ok}\n\
         tether_config_reloads_total{{result=\"error\"}} {refused}\n\
         # HELP tether_config_generation The configuration in force: 1 at start, one more per applied reload.\n\
         # TYPE tether_config_generation gauge\n\
         tether_config_generation {}\n\
         # HELP tether_config_loaded_timestamp_seconds Unix time the configuration in force was loaded (start or last applied reload).\n\
         # TYPE tether_config_loaded_timestamp_seconds gauge\n\
         tether_config_loaded_timestamp_seconds {}\n\
         # HELP tether_worker_config_generation The configuration generation each worker gives new requests.\n\
         # TYPE tether_worker_config_generation gauge",
        GENERATION.load(Ordering::Relaxed),
        LOADED_AT.load(Ordering::Relaxed),
    );
    for (worker, generation) in workers {
        let _ = writeln!(
            out,
            "tether_worker_config_generation{{worker=\"{worker}\"}} {generation}"
        );
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &[&str]) -> Config {
        Config::from_args(&crate::cli::test_args(extra)).unwrap()
    }

    #[test]
    fn only_changed_restart_only_settings_are_reported() {
        let running = config(&["--workers", "2", "--max-connections", "10"]);
        assert!(restart_only_changes(&running, &running.clone()).is_empty());
        let new = config(&[
            "--workers",
            "3",
            "--max-connections",
            "10",
            "--replay-memory",
            "1MiB",
            "--sse-heartbeat",
            "1s",
            "--upstream-pool-size",
            "3",
        ]);
        assert_eq!(
            restart_only_changes(&running, &new),
            ["workers", "replay-memory"]
        );
    }

    #[test]
    fn a_reload_keeps_restart_only_values_and_takes_the_rest() {
        let running = config(&["--workers", "2", "--upstream-pool-idle", "1s"]);
        let new = config(&[
            "--workers",
            "5",
            "--upstream-pool-idle",
            "3s",
            "--header-timeout",
            "1s",
            "--upstream-pool-size",
            "7",
        ]);
        let kept = with_restart_only_kept(&running, new);
        assert_eq!(kept.workers, 2);
        assert_eq!(kept.timeouts.header, running.timeouts.header);
        assert_eq!(kept.timeouts.pool_idle, std::time::Duration::from_secs(3));
        assert_eq!(kept.upstream_pool_size, 7);
    }

    #[test]
    fn a_reload_takes_the_new_rules() {
        use crate::rules::spec::{ActionSpec, MatchSpec, RuleSpec, Stage};
        let running = config(&[]);
        let mut new = config(&[]);
        new.rules.push(RuleSpec {
            name: "log-all".into(),
            route: None,
            on: Stage::Request,
            matches: MatchSpec::default(),
            action: ActionSpec::Log,
        });
        assert!(restart_only_changes(&running, &new).is_empty());
        let kept = with_restart_only_kept(&running, new);
        let names: Vec<&str> = kept.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["log-all"]);
    }

    #[test]
    fn a_known_url_keeps_its_index_and_new_ones_are_appended() {
        let running = config(&["--upstream", "http://127.0.0.1:2"]);
        let argv: Vec<OsString> = [
            "tether",
            "reverse",
            "--bind",
            "127.0.0.1:0",
            "--upstream",
            "http://127.0.0.1:3",
            "--upstream",
            "http://127.0.0.1:2",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let loaded = crate::config_file::load(&argv).unwrap();
        let new = Config::from_loaded_keeping(&loaded, &running.upstreams).unwrap();
        let urls: Vec<&str> = new.upstreams.iter().map(|u| &*u.spec.url).collect();
        assert_eq!(
            urls,
            [
                "http://127.0.0.1:1",
                "http://127.0.0.1:2",
                "http://127.0.0.1:3"
            ]
        );
        assert!(Arc::ptr_eq(&new.upstreams[1], &running.upstreams[1]));
        assert_eq!(new.routes[0].replicas, [2, 1]);
        assert_eq!(replicas_in_use(&new), [false, true, true]);
    }
}
