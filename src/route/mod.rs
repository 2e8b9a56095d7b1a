//! Routes: which upstream group and which per-request settings a request gets, from its host
//! and path. Configured as `[[route]]` tables (`crate::config_file`), or one route for every
//! request when the command line alone names `--upstream` replicas.
//!
//! A worker holds one [`RouteTable`], built once from the configuration's [`RouteSpec`]s, and
//! resolves each request against it once, before anything is sent upstream:
//!
//! ```text
//! host = the absolute-form target's authority, else the Host header (port, trailing dot and
//!        case ignored)
//! path = the target's path (no query)
//! for route in file order:                       a short linear scan: no allocation, no lock,
//!     if route.host is set and does not match host: next      no atomic
//!     if path does not start with route.path_prefix: next     ("/" matches every request)
//!     return route                                first match wins
//! none: 404
//! ```
//!
//! A prefix decided on the raw path could be escaped: `/public/../admin` starts with `/public/`
//! and the upstream, resolving the dot segments, serves `/admin`; a rule denying `/admin` would
//! be escaped the same way. So when any route has a path prefix, or there is any interceptor
//! rule (`crate::rules`), a path with a dot segment (`.` or `..`, also percent-encoded as `%2e`) is refused
//! with 400 rather than guessed at. Clients resolve dot segments before they send a request
//! (RFC 3986 5.2.4; browsers, curl without `--path-as-is`), so nothing legitimate is refused.
//!
//! The request then holds an `Rc<Route>` (a non-atomic count) for as long as it runs, a stream
//! included: its upstream group, its settings, its replay scope. That is what lets a later
//! reload swap a worker's table between requests (replace `WorkerCtx::routes`) while requests
//! and streams already running finish on the route they started with.

pub(crate) mod host;
pub(crate) mod settings;
pub mod stats;

use std::hash::{Hash, Hasher};
use std::rc::Rc;

use host::HostPattern;
use settings::{RouteSettings, RouteSpec};
use stats::{RouteCounts, RouteStats};

use crate::http::{split_absolute_form, RequestHead};
use crate::rules::RuleChain;
use crate::upstream::group::UpstreamGroup;

/// One route as a worker uses it.
#[derive(Debug)]
pub(crate) struct Route {
    /// `name`, for the access log (None for routes without one).
    pub(crate) name: Option<Rc<str>>,
    host: Option<HostPattern>,
    /// `path-prefix` as bytes; None for "/", which matches every request (an asterisk-form
    /// `OPTIONS *` and an absolute-form target without a path included).
    path_prefix: Option<Box<[u8]>>,
    pub(crate) settings: RouteSettings,
    /// The route's replicas, with this worker's round robin over them.
    pub(crate) upstreams: UpstreamGroup,
    /// Part of every replay scope made on this route (`ResumeScope::of`): two routes never
    /// share rings, even for the same target and identity (they reach different upstreams).
    /// A hash of the route's host pattern and path prefix, so it is the same on every worker,
    /// and for the same route after a reload.
    pub(crate) scope_key: u64,
    /// What `/metrics` calls the route: its name, else its host pattern (or `*`) and prefix.
    label: Box<str>,
    /// This worker's counters for the route (kept across reloads by label).
    pub(crate) stats: Rc<RouteStats>,
    /// The interceptor rules its requests run through (`crate::rules`; empty: none).
    pub(crate) rules: RuleChain,
}

impl Route {
    fn new(spec: &RouteSpec, worker: usize, stats: Rc<RouteStats>, rules: RuleChain) -> Route {
        let prefix = (spec.path_prefix != "/").then(|| spec.path_prefix.as_bytes().into());
        let mut h = std::collections::hash_map::DefaultHasher::new();
        spec.host.as_ref().map(|h| h.to_string()).hash(&mut h);
        spec.path_prefix.hash(&mut h);
        Route {
            name: spec.name.as_deref().map(Rc::from),
            host: spec.host.clone(),
            path_prefix: prefix,
            settings: spec.settings.clone(),
            upstreams: UpstreamGroup::new(&spec.replicas, worker, spec.settings.connect_timeout),
            scope_key: h.finish(),
            label: route_label(spec).into(),
            stats,
            rules,
        }
    }

    fn path_matches(&self, path: &[u8]) -> bool {
        match &self.path_prefix {
            None => true,
            Some(prefix) => path.starts_with(prefix),
        }
    }
}

/// A worker's routes, in the order they are tried.
#[derive(Debug)]
pub(crate) struct RouteTable {
    routes: Box<[Rc<Route>]>,
    /// Some route has a path prefix, or there are rules: paths with dot segments are refused
    /// (see the module doc).
    by_path: bool,
}

/// Why a request has no route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unrouted {
    /// No route matches its host and path (404).
    NoMatch,
    /// Its path has a `.` or `..` segment and routes are chosen by path (400).
    DotSegment,
}

/// A route's label on `/metrics`: its `name`, else its host pattern (`*` for any) and prefix,
/// e.g. `*.example.com/events/` or `*/`.
fn route_label(spec: &RouteSpec) -> String {
    match &spec.name {
        Some(name) => name.clone(),
        None => {
            let host = spec
                .host
                .as_ref()
                .map_or("*".to_string(), |h| h.to_string());
            format!("{host}{}", spec.path_prefix)
        }
    }
}

impl RouteTable {
    /// `worker`: where this worker's round robins start. `previous`: the table this one replaces
    /// (a reload), whose routes hand their counters to the routes of the same label.
    /// `rules`: the interceptor chain every route's requests run through (each route's
    /// requests meet only the rules that name it or no route).
    pub(crate) fn new(
        specs: &[RouteSpec],
        rules: &RuleChain,
        worker: usize,
        previous: Option<&RouteTable>,
    ) -> RouteTable {
        let routes: Box<[Rc<Route>]> = specs
            .iter()
            .map(|spec| {
                let label = route_label(spec);
                let stats = previous
                    .and_then(|t| t.routes.iter().find(|r| *r.label == *label))
                    .map_or_else(RouteStats::new, |r| r.stats.clone());
                Rc::new(Route::new(spec, worker, stats, rules.clone()))
            })
            .collect();
        // Rules may go by path too (`path-prefix`, or a program's own interceptor): with any
        // rule, `/public/../admin` must not slip past a rule on `/admin` either.
        let by_path = routes.iter().any(|r| r.path_prefix.is_some()) || !rules.is_empty();
        RouteTable { routes, by_path }
    }

    #[cfg(test)]
    fn with_no_rules(specs: &[RouteSpec], worker: usize, previous: Option<&RouteTable>) -> Self {
        RouteTable::new(specs, &RuleChain::default(), worker, previous)
    }

    /// Each route's counters on this worker, for `/metrics`.
    pub(crate) fn counts(&self) -> Vec<RouteCounts> {
        self.routes
            .iter()
            .map(|r| r.stats.counts(&r.label))
            .collect()
    }

    /// The first route that matches the request; None: no route does (404). The Host header
    /// is looked up only when a route has a `host` (the catch-all route of a command line
    /// without a file never looks at it).
    pub(crate) fn resolve(&self, head: &RequestHead) -> Result<&Rc<Route>, Unrouted> {
        let (authority, path) = target_parts(head);
        if self.by_path && has_dot_segment(path) {
            return Err(Unrouted::DotSegment);
        }
        let mut host: Option<Option<&[u8]>> = None;
        self.routes
            .iter()
            .find(|route| {
                if let Some(pattern) = &route.host {
                    let host =
                        *host.get_or_insert_with(|| authority.or_else(|| head.header("host")));
                    if !host.is_some_and(|h| pattern.matches(h)) {
                        return false;
                    }
                }
                route.path_matches(path)
            })
            .ok_or(Unrouted::NoMatch)
    }
}

/// Whether `path` (no query) has a `.` or `..` segment, literal or percent-encoded (`%2e`, any
/// case): what an upstream would resolve before it serves the path.
fn has_dot_segment(path: &[u8]) -> bool {
    if memchr::memchr2(b'.', b'%', path).is_none() {
        return false;
    }
    path.split(|&b| b == b'/').any(|segment| {
        let mut dots = 0;
        let mut rest = segment;
        while !rest.is_empty() {
            if rest[0] == b'.' {
                rest = &rest[1..];
            } else if rest.len() >= 3
                && rest[0] == b'%'
                && rest[1] == b'2'
                && rest[2] | 0x20 == b'e'
            {
                rest = &rest[3..];
            } else {
                return false;
            }
            dots += 1;
        }
        dots == 1 || dots == 2
    })
}

/// The authority of an absolute-form target (RFC 9112 3.2.2: it wins over the Host header), and
/// the path a request is routed by: the target without its query; "/" for an absolute-form
/// target without a path.
fn target_parts(head: &RequestHead) -> (Option<&[u8]>, &[u8]) {
    let target = head.target();
    let (authority, path) = match target.first() {
        Some(b'/') | Some(b'*') | None => (None, target),
        _ => match split_absolute_form(target) {
            Some((authority, rest)) => (Some(authority), rest),
            None => (None, target),
        },
    };
    let end = memchr::memchr2(b'?', b'#', path).unwrap_or(path.len());
    let path = &path[..end];
    (authority, if path.is_empty() { b"/" } else { path })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;
    use crate::http::HeadLimits;

    fn settings() -> RouteSettings {
        RouteSettings::from_args(&crate::cli::test_args(&[])).unwrap()
    }

    fn spec(name: &str, host: Option<&str>, prefix: &str) -> RouteSpec {
        RouteSpec {
            name: Some(name.into()),
            host: host.map(|h| HostPattern::parse(h).unwrap()),
            path_prefix: prefix.into(),
            replicas: vec![0],
            settings: settings(),
        }
    }

    /// The name of the route `raw` resolves to in a table made of `specs`.
    fn route_of(specs: &[RouteSpec], raw: &str) -> Option<String> {
        let table = RouteTable::with_no_rules(specs, 0, None);
        let head = RequestHead::parse(
            Bytes::copy_from_slice(raw.as_bytes()),
            &HeadLimits::default(),
        )
        .unwrap();
        let found = table.resolve(&head).ok()?;
        let index = table.routes.iter().position(|r| Rc::ptr_eq(r, found))?;
        specs[index].name.clone()
    }

    #[test]
    fn first_match_in_file_order_by_host_then_prefix() {
        let table = [
            spec("feeds", Some("feeds.example.com"), "/events/"),
            spec("tenants", Some("*.example.com"), "/"),
            spec("api", None, "/api"),
            spec("events", None, "/events/"),
        ];
        let get = |target: &str, host: &str| {
            route_of(
                &table,
                &format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n"),
            )
        };
        assert_eq!(
            get("/events/x", "Feeds.Example.com:8080").as_deref(),
            Some("feeds")
        );
        assert_eq!(
            get("/other", "feeds.example.com").as_deref(),
            Some("tenants")
        );
        assert_eq!(
            get("/events/x?a=/api", "a.example.com").as_deref(),
            Some("tenants")
        );
        assert_eq!(
            get("/apis?x", "other.org").as_deref(),
            Some("api"),
            "a plain prefix"
        );
        assert_eq!(get("/events/x", "other.org").as_deref(), Some("events"));
        assert_eq!(
            get("/events", "other.org").as_deref(),
            None,
            "no trailing slash"
        );
        assert_eq!(get("/", "other.org").as_deref(), None);
        assert_eq!(
            route_of(
                &table,
                "GET http://feeds.example.com/events/1 HTTP/1.1\r\nHost: other.org\r\n\r\n"
            )
            .as_deref(),
            Some("feeds"),
            "the absolute-form authority wins over Host"
        );
        assert_eq!(
            route_of(&table, "GET /api/x HTTP/1.0\r\n\r\n").as_deref(),
            Some("api"),
            "no Host: routes without a host still match"
        );
    }

    #[test]
    fn the_root_prefix_matches_every_request() {
        let table = [spec("all", None, "/")];
        for raw in [
            "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET http://a HTTP/1.1\r\nHost: a\r\n\r\n",
            "GET /x HTTP/1.0\r\n\r\n",
        ] {
            assert_eq!(route_of(&table, raw).as_deref(), Some("all"), "{raw:?}");
        }
    }

    #[test]
    fn routes_have_distinct_scope_keys_on_every_worker_alike() {
        let specs = [spec("a", Some("a.example.com"), "/"), spec("b", None, "/")];
        let w0 = RouteTable::with_no_rules(&specs, 0, None);
        let w1 = RouteTable::with_no_rules(&specs, 1, None);
        assert_ne!(w0.routes[0].scope_key, w0.routes[1].scope_key);
        assert_eq!(w0.routes[0].scope_key, w1.routes[0].scope_key);
        assert_eq!(
            w0.routes[1].settings.connect_timeout,
            Duration::from_secs(2)
        );
    }

    #[test]
    fn dot_segments_are_refused_only_when_routes_go_by_path() {
        let by_path = RouteTable::with_no_rules(
            &[spec("api", None, "/api/"), spec("all", None, "/")],
            0,
            None,
        );
        let catch_all = RouteTable::with_no_rules(&[spec("all", None, "/")], 0, None);
        let resolve = |table: &RouteTable, target: &str| {
            let raw = format!("GET {target} HTTP/1.1\r\nHost: a\r\n\r\n");
            let head = RequestHead::parse(Bytes::from(raw), &HeadLimits::default()).unwrap();
            table.resolve(&head).map(|_| ())
        };
        for target in [
            "/api/../admin",
            "/api/./x",
            "/api/..",
            "/api/%2e%2E/admin",
            "/api/.%2e/admin",
            "/api/%2E/x",
            "http://a/api/../admin",
        ] {
            assert_eq!(
                resolve(&by_path, target),
                Err(Unrouted::DotSegment),
                "{target}"
            );
            assert_eq!(
                resolve(&catch_all, target),
                Ok(()),
                "{target} with one route for all"
            );
        }
        for target in [
            "/api/a.b",
            "/api/.well-known/x",
            "/api/...",
            "/api/x?y=/../z",
            "/api/%2e%2e%2e",
            "/api/%2f",
            "/v1.2/..x",
        ] {
            assert_eq!(resolve(&by_path, target), Ok(()), "{target}");
        }
    }

    #[test]
    fn a_reload_keeps_the_counters_of_routes_with_the_same_label() {
        let old = RouteTable::with_no_rules(
            &[spec("feeds", None, "/events/"), spec("api", None, "/")],
            0,
            None,
        );
        old.routes[0].stats.record_request();
        old.routes[1].stats.record_request();
        let mut unnamed = spec("x", Some("*.example.com"), "/a/");
        unnamed.name = None;
        let new =
            RouteTable::with_no_rules(&[spec("feeds", None, "/feeds/"), unnamed], 0, Some(&old));
        let counts = new.counts();
        assert_eq!((counts[0].label.as_str(), counts[0].requests), ("feeds", 1));
        assert_eq!(
            (counts[1].label.as_str(), counts[1].requests),
            ("*.example.com/a/", 0)
        );
    }
}
