//! A route as configured: how it matches, which replicas serve it, and the settings its
//! requests and streams run with. Built once from the command line and the file
//! (`crate::config`), shared by every worker (each makes its own [`super::Route`] of it).

use std::time::Duration;

use super::host::HostPattern;
use crate::cli::ReverseArgs;
use crate::config::ConfigError;
use crate::sse::relay::SseSettings;
use crate::sse::resume::ResumeSettings;
use crate::sse::scope::IdentityHeaders;

/// The settings that apply to one request or one stream, and so may differ per route. The
/// flags behind them are the config file's per-route keys (`ROUTE_KEYS` in `crate::config_file`);
/// everything else is the process's (`crate::config::Config`).
#[derive(Debug, Clone)]
pub(crate) struct RouteSettings {
    /// `sse-max-event-bytes`, `sse-heartbeat`, `sse-client-buffer`, `assign-ids`, `coalesce`,
    /// `coalesce-flush`, `hold-upstream`.
    pub(crate) sse: SseSettings,
    /// `upstream-idle-timeout`, `pass-clean-end`, `reconnect-*`, `resume-*`.
    pub(crate) resume: ResumeSettings,
    /// `identity-header` and the defaults: what separates clients' replay scopes.
    pub(crate) identity: IdentityHeaders,
    /// `connect-timeout`: per replica address, before the next is tried.
    pub(crate) connect_timeout: Duration,
    /// `upstream-header-timeout`: the upstream must answer with a head within (504).
    pub(crate) upstream_header_timeout: Duration,
    /// `body-timeout`: longest wait for the next body bytes, either way.
    pub(crate) body_timeout: Duration,
    /// `max-inspect-bytes`: the largest request body (or JSON response body) read whole for the
    /// rules to look into; a larger one passes uninspected. At most [`MAX_INSPECT_BYTES_LIMIT`].
    pub(crate) max_inspect_bytes: usize,
    /// `mcp`: MCP sessions sealed and pinned to their replica (`crate::mcp_session`).
    pub(crate) mcp: bool,
}

/// The largest `--max-inspect-bytes` accepted (64 MiB): an inspected body is held whole in
/// memory for the length of its request, so a larger setting is refused at start (and on a
/// reload) rather than letting a few requests hold gigabytes.
pub(crate) const MAX_INSPECT_BYTES_LIMIT: usize = 64 * 1024 * 1024;

impl RouteSettings {
    /// The per-route settings of `args`, checked against the limits they bound.
    pub(crate) fn from_args(args: &ReverseArgs) -> Result<RouteSettings, ConfigError> {
        if args.sse_max_event_bytes > crate::sse::framer::MAX_EVENT_BYTES_LIMIT {
            return Err(ConfigError::TooLarge {
                flag: "--sse-max-event-bytes",
                max: crate::sse::framer::MAX_EVENT_BYTES_LIMIT,
            });
        }
        if args.max_inspect_bytes > MAX_INSPECT_BYTES_LIMIT {
            return Err(ConfigError::TooLarge {
                flag: "--max-inspect-bytes",
                max: MAX_INSPECT_BYTES_LIMIT,
            });
        }
        for name in &args.identity_headers {
            if !crate::http::is_token(name.as_bytes()) {
                return Err(ConfigError::HeaderName {
                    flag: "--identity-header",
                    name: name.clone(),
                });
            }
        }
        Ok(RouteSettings {
            sse: SseSettings {
                max_event_bytes: args.sse_max_event_bytes,
                heartbeat: (!args.sse_heartbeat.is_zero()).then_some(args.sse_heartbeat),
                client_buffer: args.sse_client_buffer,
                assign_ids: args.assign_ids,
                coalesce: args.coalesce,
                coalesce_flush: (!args.coalesce_flush.is_zero()).then_some(args.coalesce_flush),
                hold: (!args.hold_upstream.is_zero()).then_some(args.hold_upstream),
            },
            resume: ResumeSettings {
                idle_timeout: (!args.upstream_idle_timeout.is_zero())
                    .then_some(args.upstream_idle_timeout),
                pass_clean_end: args.pass_clean_end,
                initial: args.reconnect_initial,
                max_delay: args.reconnect_max_delay,
                timeout: args.reconnect_timeout,
                post_as_get: args.resume_post_as_get,
                without_id: args.resume_without_id,
            },
            identity: IdentityHeaders::new(&args.identity_headers),
            connect_timeout: args.connect_timeout,
            upstream_header_timeout: args.upstream_header_timeout,
            body_timeout: args.body_timeout,
            max_inspect_bytes: args.max_inspect_bytes,
            mcp: args.mcp,
        })
    }
}

/// One route as configured, in the order routes are tried (first match wins).
#[derive(Debug, Clone)]
pub(crate) struct RouteSpec {
    /// `name`, for logs and `tether check`; None for routes without one.
    pub(crate) name: Option<String>,
    /// `host`: None matches every host.
    pub(crate) host: Option<HostPattern>,
    /// `path-prefix`: a plain byte prefix of the request path ("/" matches every request).
    pub(crate) path_prefix: String,
    /// The route's replicas: indices into `Config::upstreams`, in the file's order.
    pub(crate) replicas: Vec<usize>,
    pub(crate) settings: RouteSettings,
}

impl RouteSpec {
    /// The route's name in logs: its own, or its place in the file ("route 2").
    pub(crate) fn label(&self, index: usize) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => format!("route {}", index + 1),
        }
    }

    /// What the route matches and where it sends requests, for the start-up log.
    pub(crate) fn describe(&self, index: usize, urls: &[&str]) -> String {
        let host = self
            .host
            .as_ref()
            .map_or("any".to_string(), |h| h.to_string());
        let replicas: Vec<&str> = self
            .replicas
            .iter()
            .filter_map(|r| urls.get(*r).copied())
            .collect();
        format!(
            "route {}: host {host}, path-prefix {} -> {}",
            self.label(index),
            self.path_prefix,
            replicas.join(", ")
        )
    }

    /// The one route a command line without a file makes (every request, every replica).
    pub(crate) fn is_catch_all(&self) -> bool {
        self.name.is_none() && self.host.is_none() && self.path_prefix == "/"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_inspect_bytes_defaults_to_1_mib_and_is_bounded() {
        let settings = |extra: &[&str]| RouteSettings::from_args(&crate::cli::test_args(extra));
        assert_eq!(settings(&[]).unwrap().max_inspect_bytes, 1024 * 1024);
        let at_limit = settings(&["--max-inspect-bytes", "64MiB"]).unwrap();
        assert_eq!(at_limit.max_inspect_bytes, MAX_INSPECT_BYTES_LIMIT);
        let err = settings(&["--max-inspect-bytes", "65MiB"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--max-inspect-bytes must be at most 67108864 bytes (64 MiB)"
        );
    }
}
