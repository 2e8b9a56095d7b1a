//! Upstream origins: parsing `--upstream` URLs, resolving host names off the workers, and the
//! address lists the workers connect to.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::ClientConfig;

use super::health::{
    EjectPolicy, Ejection, FailedTry, Recovery, ReplicaHealth, ReplicaReport, TryOrder,
};
use crate::duration::format_duration;

/// One `--upstream` replica as the user wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSpec {
    /// The URL as given, for log lines and 502 bodies. Shared: every stream's `/streams` row
    /// names its replica by it (a copy per stream was 24 bytes of every idle stream's heap).
    pub url: Arc<str>,
    /// Host name or IP literal (without IPv6 brackets).
    pub host: String,
    pub port: u16,
    /// Path prefix prepended to every forwarded request target ("" when none; never ends in '/').
    pub prefix: String,
    /// `https://`: the name the replica's certificate must carry (the host, sent as SNI; an IP
    /// literal is matched against the certificate's IP addresses and sends no SNI). None for
    /// `http://`.
    pub tls_name: Option<ServerName<'static>>,
}

/// Why an `--upstream` value was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum UpstreamUrlError {
    NotHttp(String),
    /// An `https://` host that is not a DNS name or an IP address a certificate can name.
    BadTlsName {
        url: String,
        reason: String,
    },
    MissingHost(String),
    BadPort(String),
    HasQuery(String),
}

impl fmt::Display for UpstreamUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamUrlError::NotHttp(u) => {
                write!(f, "upstream '{u}' must start with http:// or https://")
            }
            UpstreamUrlError::BadTlsName { url, reason } => write!(
                f,
                "upstream '{url}': its host cannot be checked against a TLS certificate ({reason})"
            ),
            UpstreamUrlError::MissingHost(u) => write!(f, "upstream '{u}' has no host"),
            UpstreamUrlError::BadPort(u) => {
                write!(
                    f,
                    "upstream '{u}' has a port that is not a number from 1 to 65535"
                )
            }
            UpstreamUrlError::HasQuery(u) => {
                write!(
                    f,
                    "upstream '{u}' has a query or fragment; only a path prefix is allowed"
                )
            }
        }
    }
}

impl std::error::Error for UpstreamUrlError {}

impl UpstreamSpec {
    /// Parses `http://host[:port][/prefix]` or `https://host[:port][/prefix]` (port 80 or 443
    /// when none is given).
    pub fn parse(url: &str) -> Result<UpstreamSpec, UpstreamUrlError> {
        let (rest, tls) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(rest), _) => (rest, false),
            (_, Some(rest)) => (rest, true),
            _ => return Err(UpstreamUrlError::NotHttp(url.to_string())),
        };
        if rest.contains(['?', '#']) {
            return Err(UpstreamUrlError::HasQuery(url.to_string()));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        let (host, port_text) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6
                .find(']')
                .ok_or_else(|| UpstreamUrlError::MissingHost(url.to_string()))?;
            let after = &v6[end + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(UpstreamUrlError::BadPort(url.to_string())),
            };
            (&v6[..end], port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(UpstreamUrlError::MissingHost(url.to_string()));
        }
        let port = match port_text {
            None if tls => 443,
            None => 80,
            Some(p) => parse_port(p).ok_or_else(|| UpstreamUrlError::BadPort(url.to_string()))?,
        };
        let tls_name = match tls {
            false => None,
            true => Some(super::tls::server_name(host).map_err(|reason| {
                UpstreamUrlError::BadTlsName {
                    url: url.to_string(),
                    reason,
                }
            })?),
        };
        Ok(UpstreamSpec {
            url: url.into(),
            host: host.to_string(),
            port,
            prefix: path.trim_end_matches('/').to_string(),
            tls_name,
        })
    }

    /// `host:port` as used for connecting and in messages.
    pub fn authority(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("[{}]:{}", self.host, self.port),
            _ => format!("{}:{}", self.host, self.port),
        }
    }

    /// Resolves the host (blocking: call only at start-up or on the resolver thread).
    pub fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, self.port)]);
        }
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port).to_socket_addrs()?.collect();
        if addrs.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} resolved to no address", self.host),
            ));
        }
        Ok(addrs)
    }
}

/// Digits by hand: `+80` or ` 80` are not ports.
fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u32 = text
        .bytes()
        .fold(0, |acc, b| acc * 10 + u32::from(b - b'0'));
    u16::try_from(value).ok().filter(|p| *p != 0)
}

/// A replica with its current addresses. Written by the resolver thread, read by workers only
/// when their cached generation is stale, so the hot path touches one atomic per connect.
#[derive(Debug)]
pub struct Upstream {
    pub spec: UpstreamSpec,
    /// Bumped each time `addrs` changes.
    generation: AtomicU64,
    addrs: Mutex<Arc<[SocketAddr]>>,
}

impl Upstream {
    pub fn new(spec: UpstreamSpec, addrs: Vec<SocketAddr>) -> Self {
        Upstream {
            spec,
            generation: AtomicU64::new(1),
            addrs: Mutex::new(addrs.into()),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn addrs(&self) -> Arc<[SocketAddr]> {
        match self.addrs.lock() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn replace_addrs(&self, new: Vec<SocketAddr>) {
        let mut guard = match self.addrs.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if guard.as_ref() != new.as_slice() {
            *guard = new.into();
            self.generation.fetch_add(1, Ordering::Release);
        }
    }
}

/// What the resolver thread follows: the replicas to re-resolve and how often.
struct ResolverWatch {
    /// The replicas whose host is a name (IP literals never change).
    named: Vec<Arc<Upstream>>,
    /// `--resolve-interval`; zero: never re-resolve.
    interval: Duration,
}

impl ResolverWatch {
    fn new(upstreams: &[Arc<Upstream>], interval: Duration) -> Self {
        ResolverWatch {
            named: upstreams
                .iter()
                .filter(|u| u.spec.host.parse::<IpAddr>().is_err())
                .cloned()
                .collect(),
            interval,
        }
    }
}

/// The main thread's side of the resolver thread: a reload hands it the replicas the new routes
/// use (and the new `resolve-interval`) through here.
pub struct ResolverHandle {
    /// None when the thread could not be started (addresses then stay as resolved at start).
    updates: Option<mpsc::Sender<ResolverWatch>>,
}

impl ResolverHandle {
    /// A handle that reaches no thread (what is left behind when the real one moves away).
    pub(crate) fn detached() -> Self {
        ResolverHandle { updates: None }
    }

    /// From now on, re-resolve `upstreams` (those with a host name) every `interval`.
    pub(crate) fn follow(&self, upstreams: &[Arc<Upstream>], interval: Duration) {
        if let Some(updates) = &self.updates {
            let _ = updates.send(ResolverWatch::new(upstreams, interval));
        }
    }
}

/// Starts the thread that re-resolves host-name upstreams every `interval`, so DNS changes are
/// followed without a worker ever blocking on a lookup. A failed lookup keeps the old addresses.
/// The thread runs even with nothing to resolve (it then only waits for a reload to give it
/// work), so that a reload can bring host-name replicas to a process started without any.
pub fn spawn_resolver(upstreams: Vec<Arc<Upstream>>, interval: Duration) -> ResolverHandle {
    let (updates, rx) = mpsc::channel::<ResolverWatch>();
    let mut watch = ResolverWatch::new(&upstreams, interval);
    let spawned = std::thread::Builder::new()
        .name("tether-resolver".into())
        .spawn(move || loop {
            // Wait for the next round, or for a reload's new list (which starts a new wait).
            let next = if watch.named.is_empty() || watch.interval.is_zero() {
                rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected)
            } else {
                rx.recv_timeout(watch.interval)
            };
            match next {
                Ok(new) => {
                    watch = new;
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            for upstream in &watch.named {
                match upstream.spec.resolve() {
                    Ok(addrs) => upstream.replace_addrs(addrs),
                    Err(e) => crate::log_warn!(
                        "resolving upstream {} failed, keeping previous addresses: {e}",
                        upstream.spec.url
                    ),
                }
            }
        });
    match spawned {
        Ok(_) => ResolverHandle {
            updates: Some(updates),
        },
        Err(e) => {
            crate::log_warn!(
                "could not start the resolver thread, upstream addresses stay fixed: {e}"
            );
            ResolverHandle { updates: None }
        }
    }
}

/// A worker's view of the replicas: addresses cached per generation, and each replica's passive
/// health (see [`super::health`]). Which replicas a request tries, from which one, is its
/// route's group (`super::group::UpstreamGroup`); health reorders them.
pub struct UpstreamSet {
    upstreams: Vec<Arc<Upstream>>,
    cached: Vec<(u64, Arc<[SocketAddr]>)>,
    /// Which replicas this worker skips, learnt from its own requests' tries (of every route:
    /// a replica two routes share is one replica).
    health: ReplicaHealth,
    /// Per replica: some route of the configuration in force uses it. A replica a reload
    /// removed keeps its entry (a stream may still reconnect to it) but leaves the reports.
    in_route: Vec<bool>,
    /// This worker's TLS client settings for `https://` replicas, with its own session store
    /// (None while no replica, `--upstream-ca` or `--upstream-insecure` asks for TLS).
    tls: Option<Arc<ClientConfig>>,
}

impl UpstreamSet {
    pub fn new(
        upstreams: Vec<Arc<Upstream>>,
        eject: EjectPolicy,
        tls: Option<Arc<ClientConfig>>,
    ) -> Self {
        let cached = upstreams
            .iter()
            .map(|u| (u.generation(), u.addrs()))
            .collect();
        UpstreamSet {
            health: ReplicaHealth::new(upstreams.len(), eject),
            in_route: vec![true; upstreams.len()],
            upstreams,
            cached,
            tls,
        }
    }

    /// After a reload: `upstreams` is the process's replica list, the old one with the reload's
    /// new replicas appended (never reordered, never shortened: an index a running request
    /// holds stays valid). The new ones get an address cache and a health record; the known
    /// ones keep theirs. `in_route[r]`: some route uses replica `r`. `eject` is the reloaded
    /// passive-health policy; `tls` the reloaded TLS settings (this worker's copy: new
    /// connections verify with them; pooled ones stay as they were made).
    pub(crate) fn adopt(
        &mut self,
        upstreams: &[Arc<Upstream>],
        in_route: &[bool],
        eject: EjectPolicy,
        tls: Option<Arc<ClientConfig>>,
    ) {
        self.tls = tls;
        debug_assert!(upstreams.len() >= self.upstreams.len());
        debug_assert!(self
            .upstreams
            .iter()
            .zip(upstreams)
            .all(|(a, b)| Arc::ptr_eq(a, b)));
        for upstream in &upstreams[self.upstreams.len()..] {
            self.cached.push((upstream.generation(), upstream.addrs()));
            self.upstreams.push(upstream.clone());
        }
        self.health.grow(self.upstreams.len(), eject);
        self.in_route = in_route.to_vec();
    }

    pub fn spec(&self, replica: usize) -> &UpstreamSpec {
        &self.upstreams[replica].spec
    }

    /// What a connection to `replica` needs for TLS: None for `http://`; for `https://` the
    /// worker's client settings (None if there are none, which `Config` never allows) and the
    /// name to verify.
    pub(crate) fn tls_for(
        &self,
        replica: usize,
    ) -> Option<(Option<Arc<ClientConfig>>, ServerName<'static>)> {
        let name = self.upstreams[replica].spec.tls_name.clone()?;
        Some((self.tls.clone(), name))
    }

    /// The order a request tries `candidates` in (its group's replicas, round robin for a new
    /// request, its own replica first for a stream's reconnect): those in rotation as given,
    /// then the ejected ones as a last resort.
    pub(crate) fn try_order<I>(&self, candidates: I) -> TryOrder<I>
    where
        I: Iterator<Item = usize>,
    {
        self.health.try_order(candidates)
    }

    /// A try of `replica` failed; logs when that ejects it.
    pub(crate) fn record_failure(&self, replica: usize, why: FailedTry) {
        let Some(ejection) = self.health.record_failure(replica, Instant::now()) else {
            return;
        };
        let url = &self.upstreams[replica].spec.url;
        let period = format_duration(self.health.period());
        match ejection {
            Ejection::AfterFailures(n) => crate::log_warn!(
                "upstream {url} ejected for {period} after {n} failed tries in a row (the last: {why}); other replicas are tried first"
            ),
            // A replica that stays down would log this every period on every worker.
            Ejection::FailedProbation => crate::log_debug!(
                "upstream {url} failed its first try after its ejection ({why}); ejected again for {period}"
            ),
        }
    }

    /// A try of `replica` got a response head with `status`: a 5xx is a failure, anything else
    /// a success.
    pub(crate) fn record_answer(&self, replica: usize, status: u16) {
        if status >= 500 {
            self.record_failure(replica, FailedTry::Status(status));
        } else if self.health.record_success(replica) == Recovery::BackInRotation {
            crate::log_info!(
                "upstream {} is back in rotation (answered {status} after its ejection)",
                self.upstreams[replica].spec.url
            );
        }
    }

    /// The health on this worker, now, of every replica a route uses.
    pub(crate) fn health_report(&self) -> Vec<ReplicaReport> {
        let reports = self
            .health
            .report(self.upstreams.iter().map(|u| &*u.spec.url), Instant::now());
        reports
            .into_iter()
            .zip(&self.in_route)
            .filter_map(|(report, used)| used.then_some(report))
            .collect()
    }

    /// Current addresses of a replica.
    pub fn addrs(&mut self, replica: usize) -> Arc<[SocketAddr]> {
        let upstream = &self.upstreams[replica];
        let generation = upstream.generation();
        if self.cached[replica].0 != generation {
            self.cached[replica] = (generation, upstream.addrs());
        }
        self.cached[replica].1.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_upstream_urls() {
        let s = UpstreamSpec::parse("http://127.0.0.1:8080/api/").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.prefix.as_str()),
            ("127.0.0.1", 8080, "/api")
        );
        let s = UpstreamSpec::parse("http://example.com").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.prefix.as_str()),
            ("example.com", 80, "")
        );
        let s = UpstreamSpec::parse("http://[::1]:9000/").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.prefix.as_str()),
            ("::1", 9000, "")
        );
        assert_eq!(s.authority(), "[::1]:9000");
    }

    #[test]
    fn parses_https_upstream_urls() {
        let s = UpstreamSpec::parse("https://api.example.com/v1").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.prefix.as_str()),
            ("api.example.com", 443, "/v1")
        );
        assert_eq!(
            s.tls_name,
            Some(ServerName::try_from("api.example.com").unwrap())
        );
        let s = UpstreamSpec::parse("https://127.0.0.1:8443").unwrap();
        assert!(
            matches!(s.tls_name, Some(ServerName::IpAddress(_))),
            "an IP: no SNI"
        );
        let s = UpstreamSpec::parse("https://[::1]:8443").unwrap();
        assert!(matches!(s.tls_name, Some(ServerName::IpAddress(_))));
        assert_eq!(UpstreamSpec::parse("http://a:1").unwrap().tls_name, None);
        assert!(matches!(
            UpstreamSpec::parse("https://bad_name!:443"),
            Err(UpstreamUrlError::BadTlsName { .. })
        ));
    }

    #[test]
    fn refuses_bad_upstream_urls() {
        for bad in [
            "ftp://x:1",
            "https://:443",
            "127.0.0.1:80",
            "http://:80",
            "http://h:+80",
            "http://h:0",
            "http://h:70000",
            "http://h:80/x?y",
            "http://[::1",
        ] {
            assert!(UpstreamSpec::parse(bad).is_err(), "{bad} should be refused");
        }
    }
}
