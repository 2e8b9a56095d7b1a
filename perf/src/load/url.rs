//! The `http[s]://host[:port]/path?query` of `--url`, and its `{i}` placeholder.

use std::net::{SocketAddr, ToSocketAddrs};

/// A parsed `http` or `https` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl {
    /// `https://`: every connection speaks TLS (SNI: `host`).
    pub tls: bool,
    /// Host as written (an IPv6 literal keeps its brackets): the Host field's host part.
    pub host: String,
    /// Port (80 when absent; 443 for https).
    pub port: u16,
    /// Path and query, "/" when empty: the request target.
    pub target: String,
    /// The Host header value: host, plus `:port` when the URL gave one.
    pub authority: String,
}

impl HttpUrl {
    /// Parses `http[s]://host[:port][/path][?query]` (no userinfo, no fragment).
    pub fn parse(url: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else {
            return Err(format!(
                "{url:?}: only http:// and https:// URLs are supported"
            ));
        };
        if rest.contains('#') {
            return Err(format!("{url:?}: a fragment is not sent, leave it out"));
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("{url:?}: expected http://host[:port]/path"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let end = v6
                .find(']')
                .ok_or_else(|| format!("{url:?}: unclosed IPv6 literal"))?;
            let host = &authority[..end + 2];
            (host, authority[end + 2..].strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        let port = match port {
            Some(p) => crate::load::sse::parse_digits(p.as_bytes())
                .and_then(|p| u16::try_from(p).ok())
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("{url:?}: bad port {p:?}"))?,
            None if tls => 443,
            None => 80,
        };
        let target = match target {
            "" => "/".to_string(),
            t if t.starts_with('?') => format!("/{t}"),
            t => t.to_string(),
        };
        if target.bytes().any(|b| b <= b' ' || b == 0x7F) {
            return Err(format!("{url:?}: spaces or control bytes in the path"));
        }
        Ok(Self {
            tls,
            host: host.to_string(),
            port,
            target,
            authority: authority.to_string(),
        })
    }

    /// True if the target holds [`STREAM_PLACEHOLDER`]: every stream (or probe) gets its
    /// own target, [`expand`] with its index.
    pub fn per_stream(&self) -> bool {
        self.target.contains(STREAM_PLACEHOLDER)
    }

    /// The first address the host resolves to (literals need no lookup).
    pub fn resolve(&self) -> Result<SocketAddr, String> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        (host, self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {}: {e}", self.host))?
            .next()
            .ok_or_else(|| format!("{} resolves to no address", self.host))
    }
}

/// In a URL's path or query, replaced by the stream's index (0, 1, ...; for `--ttfe-url`
/// the probe's): `/sse?events=0&s={i}` gives every stream its own URL.
pub const STREAM_PLACEHOLDER: &str = "{i}";

/// `target` with every [`STREAM_PLACEHOLDER`] replaced by `index`.
pub fn expand(target: &str, index: usize) -> String {
    target.replace(STREAM_PLACEHOLDER, &index.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_bench_scripts_pass() {
        let u = HttpUrl::parse("http://127.0.0.1:8080/sse?events=0&rate=10").unwrap();
        assert_eq!(u.host, "127.0.0.1");
        assert_eq!(u.port, 8080);
        assert_eq!(u.target, "/sse?events=0&rate=10");
        assert_eq!(u.authority, "127.0.0.1:8080");
        assert_eq!(u.resolve().unwrap(), "127.0.0.1:8080".parse().unwrap());
        let u = HttpUrl::parse("http://localhost").unwrap();
        assert_eq!((u.port, u.target.as_str()), (80, "/"));
        let u = HttpUrl::parse("http://[::1]:9/x").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("[::1]", 9));
        assert_eq!(u.resolve().unwrap(), "[::1]:9".parse().unwrap());
        let u = HttpUrl::parse("http://h:1?q=1").unwrap();
        assert_eq!(u.target, "/?q=1");
        assert!(!u.tls);
        let u = HttpUrl::parse("https://localhost:8443/sse?x=1").unwrap();
        assert!(u.tls);
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("localhost", 8443, "/sse?x=1")
        );
        assert_eq!(HttpUrl::parse("https://h/").unwrap().port, 443);
    }

    #[test]
    fn placeholder_gives_each_stream_its_own_target() {
        let u = HttpUrl::parse("http://127.0.0.1:1/sse?events=0&s={i}&t={i}").unwrap();
        assert!(u.per_stream());
        assert_eq!(expand(&u.target, 0), "/sse?events=0&s=0&t=0");
        assert_eq!(expand(&u.target, 997), "/sse?events=0&s=997&t=997");
        let u = HttpUrl::parse("http://127.0.0.1:1/sse?events=0&s={j}").unwrap();
        assert!(!u.per_stream());
        assert_eq!(expand(&u.target, 3), u.target);
    }

    #[test]
    fn rejects_what_it_cannot_do() {
        for bad in [
            "ftp://h/",
            "h:80/",
            "http://",
            "http://u@h/",
            "http://h:0/",
            "http://h:99999/",
            "http://h:+1/",
            "http://h/a b",
            "http://h/#f",
            "http://[::1/",
        ] {
            assert!(HttpUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
