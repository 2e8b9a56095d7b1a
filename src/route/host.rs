//! A route's `host`: an exact host name, or `*.example.com` for every name under a domain.
//! Matched against the request's host (the absolute-form target's authority, else the `Host`
//! header) without its port and without a trailing dot, ignoring ASCII case.

use std::fmt;

/// Longest host pattern accepted, in bytes (RFC 1035: a name is at most 253 characters).
pub(crate) const MAX_HOST_PATTERN_BYTES: usize = 253;

/// What a route's `host` matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostPattern {
    /// This name exactly (stored in lower case).
    Exact { name: Box<str> },
    /// Every name ending in this suffix, which starts with '.' (`*.example.com` is stored as
    /// `.example.com`): `a.example.com` and `a.b.example.com`, not `example.com` itself.
    Suffix { suffix: Box<str> },
}

/// Why a `host` value is not a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostPatternError {
    Empty,
    TooLong,
    /// `*` alone: a route without `host` already matches every host.
    BareWildcard,
    /// A `*` anywhere but as the whole first label.
    MisplacedWildcard,
    /// A `:port` (the port of the request is ignored, so a pattern has none).
    HasPort,
    /// A character that is not a letter, digit, '-', '_' or '.', or an empty label.
    NotAName,
}

impl fmt::Display for HostPatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HostPatternError::Empty => "is empty: leave host out to match every host",
            HostPatternError::TooLong => "is longer than a host name can be (253 characters)",
            HostPatternError::BareWildcard => {
                "matches every host: leave host out instead"
            }
            HostPatternError::MisplacedWildcard => {
                "has a '*' that is not the whole first label: write an exact name or \"*.example.com\""
            }
            HostPatternError::HasPort => {
                "has a port: the request's port is ignored, write the name alone"
            }
            HostPatternError::NotAName => {
                "is not a host name: labels of letters, digits, '-' and '_' separated by '.' (or an IP literal)"
            }
        })
    }
}

impl HostPattern {
    /// Parses an exact name, an IP literal (`[::1]` for IPv6) or `*.domain`.
    pub(crate) fn parse(text: &str) -> Result<HostPattern, HostPatternError> {
        if text.is_empty() {
            return Err(HostPatternError::Empty);
        }
        if text.len() > MAX_HOST_PATTERN_BYTES {
            return Err(HostPatternError::TooLong);
        }
        if text == "*" {
            return Err(HostPatternError::BareWildcard);
        }
        if let Some(v6) = text.strip_prefix('[') {
            let ok = v6
                .strip_suffix(']')
                .is_some_and(|inner| inner.parse::<std::net::Ipv6Addr>().is_ok());
            return match ok {
                true => Ok(HostPattern::Exact {
                    name: text.to_ascii_lowercase().into(),
                }),
                false if v6.contains("]:") => Err(HostPatternError::HasPort),
                false => Err(HostPatternError::NotAName),
            };
        }
        let name = text.strip_suffix('.').unwrap_or(text);
        let (wildcard, rest) = match name.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, name),
        };
        if rest.contains('*') {
            return Err(HostPatternError::MisplacedWildcard);
        }
        if rest.contains('/') {
            return Err(HostPatternError::NotAName);
        }
        if rest.contains(':') {
            return Err(HostPatternError::HasPort);
        }
        let labels_ok = rest.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
        if !labels_ok {
            return Err(HostPatternError::NotAName);
        }
        let lower = rest.to_ascii_lowercase();
        Ok(if wildcard {
            HostPattern::Suffix {
                suffix: format!(".{lower}").into(),
            }
        } else {
            HostPattern::Exact { name: lower.into() }
        })
    }

    /// Whether a request's host matches. `host` is the raw authority (`Name:8080`, `[::1]:80`,
    /// `name.`): its port and trailing dot are ignored, and so is ASCII case. No allocation.
    pub(crate) fn matches(&self, host: &[u8]) -> bool {
        let name = host_name(host);
        match self {
            HostPattern::Exact { name: want } => name.eq_ignore_ascii_case(want.as_bytes()),
            HostPattern::Suffix { suffix } => {
                let suffix = suffix.as_bytes();
                name.len() > suffix.len()
                    && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact { name } => f.write_str(name),
            HostPattern::Suffix { suffix } => write!(f, "*{suffix}"),
        }
    }
}

/// The name part of an authority: without `:port`, without one trailing dot.
fn host_name(authority: &[u8]) -> &[u8] {
    let name = if authority.first() == Some(&b'[') {
        match memchr::memchr(b']', authority) {
            Some(end) => &authority[..=end],
            None => authority,
        }
    } else {
        match memchr::memrchr(b':', authority) {
            Some(colon) => &authority[..colon],
            None => authority,
        }
    };
    name.strip_suffix(b".").unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(text: &str) -> HostPattern {
        HostPattern::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn exact_names_ignore_case_port_and_trailing_dot() {
        let p = pattern("Feeds.Example.com");
        for yes in [
            "feeds.example.com",
            "FEEDS.EXAMPLE.COM:8080",
            "feeds.example.com.",
            "feeds.example.com.:80",
        ] {
            assert!(p.matches(yes.as_bytes()), "{yes}");
        }
        for no in ["example.com", "a.feeds.example.com", "feeds.example.co", ""] {
            assert!(!p.matches(no.as_bytes()), "{no}");
        }
        let v6 = pattern("[::1]");
        assert!(v6.matches(b"[::1]:8080"));
        assert!(!v6.matches(b"[::2]"));
    }

    #[test]
    fn a_wildcard_matches_names_under_the_domain_only() {
        let p = pattern("*.example.com");
        assert_eq!(p.to_string(), "*.example.com");
        for yes in ["a.example.com", "A.B.Example.COM:443"] {
            assert!(p.matches(yes.as_bytes()), "{yes}");
        }
        for no in [
            "example.com",
            ".example.com",
            "aexample.com",
            "example.com.evil",
        ] {
            assert!(!p.matches(no.as_bytes()), "{no}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_pattern() {
        for (bad, why) in [
            ("", HostPatternError::Empty),
            ("*", HostPatternError::BareWildcard),
            ("a.*.com", HostPatternError::MisplacedWildcard),
            ("*example.com", HostPatternError::MisplacedWildcard),
            ("**.example.com", HostPatternError::MisplacedWildcard),
            ("example.com:80", HostPatternError::HasPort),
            ("[::1]:80", HostPatternError::HasPort),
            ("a..b", HostPatternError::NotAName),
            ("a b", HostPatternError::NotAName),
            ("http://a", HostPatternError::NotAName),
            ("a/b", HostPatternError::NotAName),
        ] {
            assert_eq!(HostPattern::parse(bad), Err(why), "{bad:?}");
        }
        assert_eq!(
            HostPattern::parse(&"a".repeat(254)),
            Err(HostPatternError::TooLong)
        );
    }
}
