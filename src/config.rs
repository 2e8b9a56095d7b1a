//! The proxy's settings, resolved once from the command line: every flag checked against the
//! limits it bounds, host names resolved, CPU lists parsed. Workers only read a `Config`.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use crate::cli::{DriverChoice, ReverseArgs};
use crate::http::HeadLimits;
use crate::sse::relay::SseSettings;
use crate::sse::resume::ResumeSettings;
use crate::sse::scope::IdentityHeaders;
use crate::sse::table::RingLimits;
use crate::upstream::health::EjectPolicy;
use crate::upstream::replica::{Upstream, UpstreamSpec, UpstreamUrlError};

/// Timeouts, each documented on its flag in `crate::cli`.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub connect: Duration,
    pub header: Duration,
    pub upstream_header: Duration,
    pub idle: Duration,
    pub body: Duration,
    pub send: Duration,
    pub pool_idle: Duration,
    pub shutdown_grace: Duration,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    /// `--admin`: where the admin endpoint listens (None = off).
    pub admin: Option<SocketAddr>,
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
    pub sse: SseSettings,
    pub rings: RingLimits,
    /// `--identity-header` and the defaults: what separates clients' replay scopes.
    pub identity: IdentityHeaders,
    pub resume: ResumeSettings,
    /// `--upstream-eject-after`, `--upstream-eject-for`: passive health of the replicas.
    pub upstream_eject: EjectPolicy,
}

/// Why the command line cannot run.
#[derive(Debug)]
pub enum ConfigError {
    Bind {
        addr: String,
        reason: String,
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
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Bind { addr, reason } => write!(f, "--bind {addr}: {reason}"),
            ConfigError::Upstream(e) => write!(f, "--upstream: {e}"),
            ConfigError::Resolve { url, reason } => {
                write!(f, "--upstream {url}: cannot resolve its host: {reason}")
            }
            ConfigError::Cpus { list, reason } => write!(f, "--cpus {list}: {reason}"),
            ConfigError::Zero { flag } => write!(f, "{flag} must be at least 1"),
            ConfigError::TooLarge { flag, max } => {
                write!(f, "{flag} must be at most {max} bytes ({} MiB)", max >> 20)
            }
            ConfigError::HeaderName { flag, name } => write!(
                f,
                "{flag} {name:?}: not a header name (letters, digits and !#$%&'*+-.^_`|~ only)"
            ),
            ConfigError::UringEntries(n) => write!(
                f,
                "--uring-entries {n}: must be a power of two from 2 to 32768 (io_uring refuses others)"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    pub fn from_args(args: &ReverseArgs) -> Result<Config, ConfigError> {
        let bind = args
            .bind
            .to_socket_addrs()
            .map_err(|e| ConfigError::Bind {
                addr: args.bind.clone(),
                reason: e.to_string(),
            })?
            .next()
            .ok_or_else(|| ConfigError::Bind {
                addr: args.bind.clone(),
                reason: "resolves to no address".into(),
            })?;
        let admin = match &args.admin {
            None => None,
            Some(text) => Some(
                text.to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| ConfigError::Bind {
                        addr: text.clone(),
                        reason: "--admin: not an address".into(),
                    })?,
            ),
        };
        let mut upstreams = Vec::with_capacity(args.upstreams.len());
        for url in &args.upstreams {
            let spec = UpstreamSpec::parse(url).map_err(ConfigError::Upstream)?;
            let addrs = spec.resolve().map_err(|e| ConfigError::Resolve {
                url: url.clone(),
                reason: e.to_string(),
            })?;
            upstreams.push(Arc::new(Upstream::new(spec, addrs)));
        }
        if args.sse_max_event_bytes > crate::sse::framer::MAX_EVENT_BYTES_LIMIT {
            return Err(ConfigError::TooLarge {
                flag: "--sse-max-event-bytes",
                max: crate::sse::framer::MAX_EVENT_BYTES_LIMIT,
            });
        }
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
        for name in &args.identity_headers {
            if !crate::http::is_token(name.as_bytes()) {
                return Err(ConfigError::HeaderName {
                    flag: "--identity-header",
                    name: name.clone(),
                });
            }
        }
        if !args.uring_entries.is_power_of_two() || !(2..=32_768).contains(&args.uring_entries) {
            return Err(ConfigError::UringEntries(args.uring_entries));
        }
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
                connect: args.connect_timeout,
                header: args.header_timeout,
                upstream_header: args.upstream_header_timeout,
                idle: args.idle_timeout,
                body: args.body_timeout,
                send: args.send_timeout,
                pool_idle: args.upstream_pool_idle,
                shutdown_grace: args.shutdown_grace,
            },
            head_limits: HeadLimits {
                max_head_bytes: args.max_head_bytes,
                max_headers: args.max_headers,
                max_target_bytes: args.max_target_bytes,
            },
            sse: SseSettings {
                max_event_bytes: args.sse_max_event_bytes,
                heartbeat: (!args.sse_heartbeat.is_zero()).then_some(args.sse_heartbeat),
                client_buffer: args.sse_client_buffer,
                assign_ids: args.assign_ids,
                partial_memory: args.sse_partial_memory,
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
            rings: RingLimits {
                max_events: args.replay_events,
                max_bytes: args.replay_bytes,
                ttl: args.replay_ttl,
                memory: args.replay_memory,
            },
            identity: IdentityHeaders::new(&args.identity_headers),
            upstream_eject: EjectPolicy {
                after: args.upstream_eject_after,
                period: args.upstream_eject_for,
            },
        })
    }

    /// The CPU worker `index` is pinned to, if pinning.
    pub fn cpu_for(&self, index: usize) -> Option<usize> {
        self.cpus
            .as_ref()
            .filter(|c| !c.is_empty())
            .map(|c| c[index % c.len()])
    }
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
        use clap::Parser;
        let args = |name: &str| {
            let cli = crate::cli::Cli::try_parse_from([
                "tether",
                "reverse",
                "--bind",
                "127.0.0.1:0",
                "--upstream",
                "http://127.0.0.1:1",
                "--identity-header",
                name,
            ])
            .unwrap();
            match cli.command {
                crate::cli::Command::Reverse(a) => *a,
                _ => unreachable!(),
            }
        };
        let err = Config::from_args(&args("X Api Key")).unwrap_err();
        assert!(
            err.to_string()
                .contains("--identity-header \"X Api Key\": not a header name"),
            "{err}"
        );
        let ok = Config::from_args(&args("X-Api-Key")).unwrap();
        assert!(ok.identity.names().any(|n| n == "x-api-key"));
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
