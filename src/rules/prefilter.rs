//! A rule's cheap rejection, compiled when the rule is, run on the raw bytes before any parsing:
//! most events of a stream meet every rule of its route, and most of them are not what the
//! rule is after, so the per-event path must stay a few memory scans.
//!
//! The contract, tested against the full match: a prefilter never says "no" for an event or
//! body the full match would accept ("maybe" is always allowed). Hence these rules:
//!
//! ```text
//! data-contains N   N occurs in the raw block; skipped when N has a CR or LF (the raw block
//!                   separates data lines with "data:" prefixes, not the LF the data has) or
//!                   U+FFFD (invalid UTF-8 reads as U+FFFD in the data, not in the raw bytes)
//! event-type T      the block's last `event` line has the value T (absent/empty: "message");
//!                   first: T (not "message") occurs in the raw block at all
//! data-regex R      R matches somewhere in the raw block, when R is line-local: it cannot
//!                   match an LF (the data never holds a CR: CR ends a line) and has no anchors (word boundaries are allowed), and
//!                   the block is valid UTF-8. Then a match in the data lies within one data
//!                   line's value, which the raw block holds verbatim between non-word bytes
//!                   (": " or ":" before, CR or LF after), as the data has non-word bytes (LF,
//!                   or its start and end) around each value: the same match is in the raw
//!                   block. Invalid UTF-8 reads as U+FFFD in the data, so then "maybe".
//! MCP keys          each key group: one of its needles occurs, quotes included ("tools/call"),
//!                   or the bytes hold a backslash (a JSON escape can spell any string, e.g.
//!                   "tools\/call", so a backslash means "maybe")
//! ```
//!
//! JSON strings cannot hold a raw CR or LF, so a quoted needle never straddles data lines.

use memchr::memmem::Finder;

use super::event_rewrite::{block_lines, field_name};
use super::spec::{ActionSpec, MatchSpec};

#[derive(Debug)]
pub(crate) struct Prefilter {
    /// `data-contains`, when safe to look for in the raw block.
    data: Option<Finder<'static>>,
    /// `event-type`, when it can be compared as bytes (no U+FFFD in it), with a finder for it
    /// (None for "message", which an event without an `event` line has).
    event_type: Option<(Box<[u8]>, Option<Finder<'static>>)>,
    /// Needle groups of the MCP keys: every group needs one hit (or a backslash).
    json_groups: Vec<Vec<Finder<'static>>>,
    /// `data-regex`, when it is line-local (see the module doc), and whether it can match
    /// U+FFFD (then only a valid UTF-8 block can be judged by it).
    regex: Option<(regex::bytes::Regex, bool)>,
}

impl Prefilter {
    pub(crate) fn new(matches: &MatchSpec, action: &ActionSpec) -> Prefilter {
        let data = matches
            .data_contains
            .as_deref()
            .filter(|n| !n.is_empty() && !n.contains(['\r', '\n', '\u{FFFD}']))
            .map(|n| Finder::new(n.as_bytes()).into_owned());
        let event_type = matches
            .event_type
            .as_deref()
            .filter(|t| !t.contains('\u{FFFD}'))
            .map(|t| {
                let finder = (t != "message").then(|| Finder::new(t.as_bytes()).into_owned());
                (t.as_bytes().into(), finder)
            });
        let quoted = |s: &str| Finder::new(format!("\"{s}\"").as_bytes()).into_owned();
        let mut json_groups = Vec::new();
        if !matches.mcp_method.is_empty()
            && !matches.mcp_method.iter().any(|m| m.contains('\u{FFFD}'))
        {
            json_groups.push(matches.mcp_method.iter().map(|m| quoted(m)).collect());
        }
        if !matches.mcp_tool.is_empty() {
            json_groups.push(vec![quoted("tools/call")]);
        }
        if matches.mcp_result_of.is_some() {
            // Every JSON-RPC response has an id key (see mcp::JsonRpcMessage::from_value).
            json_groups.push(vec![quoted("id")]);
        }
        if matches!(action, ActionSpec::FilterTools { .. }) {
            // filter-tools matches only results with a `tools` array.
            json_groups.push(vec![quoted("tools")]);
        }
        let regex = matches
            .data_regex
            .as_ref()
            .and_then(|re| line_locality(re.as_str()).map(|fffd| (re.clone(), fffd)));
        Prefilter {
            data,
            event_type,
            json_groups,
            regex,
        }
    }

    /// A prefilter that rejects nothing.
    #[cfg(test)]
    pub(crate) fn none() -> Prefilter {
        Prefilter {
            data: None,
            event_type: None,
            json_groups: Vec::new(),
            regex: None,
        }
    }

    /// Can the rule match the raw SSE block `raw`?
    pub(crate) fn may_match_event(&self, raw: &[u8]) -> bool {
        if let Some((want, finder)) = &self.event_type {
            // Most events are not of the wanted type and do not hold its name at all.
            if finder.as_ref().is_some_and(|f| f.find(raw).is_none()) {
                return false;
            }
            if !event_type_is(raw, want) {
                return false;
            }
        }
        if let Some(finder) = &self.data {
            if finder.find(raw).is_none() {
                return false;
            }
        }
        if let Some((re, fffd)) = &self.regex {
            if !re.is_match(raw) && (!fffd || std::str::from_utf8(raw).is_ok()) {
                return false;
            }
        }
        self.may_match_json(raw)
    }

    /// Can the rule's MCP keys hold in these bytes (a body, an event's raw block or data)?
    pub(crate) fn may_match_json(&self, bytes: &[u8]) -> bool {
        if self.json_groups.is_empty() || memchr::memchr(b'\\', bytes).is_some() {
            return true;
        }
        self.json_groups
            .iter()
            .all(|group| group.iter().any(|f| f.find(bytes).is_some()))
    }
}

/// The block's event type is `want`: its last `event` line's value (one leading space
/// removed), with no line or an empty value meaning "message".
fn event_type_is(raw: &[u8], want: &[u8]) -> bool {
    let mut found: &[u8] = b"";
    for line in block_lines(raw) {
        if field_name(line) == Some(b"event") {
            let value = line.get(b"event".len() + 1..).unwrap_or(b"");
            found = value.strip_prefix(b" ").unwrap_or(value);
        }
    }
    found == want || (found.is_empty() && want == b"message")
}

/// How `pattern` (the `regex` crate's syntax, as `regex::bytes` reads it) may be looked for in
/// the raw block: None when it is not line-local (it can match an LF or a lone byte past ASCII,
/// or has anchors); Some(true) when it can match U+FFFD, so the raw block must be valid UTF-8
/// for its absence there to mean anything (invalid bytes read as U+FFFD in the data); Some(false)
/// when it cannot. A pattern it fails to read is not line-local.
fn line_locality(pattern: &str) -> Option<bool> {
    use regex_syntax::hir::{Class, Hir, HirKind, Look};
    const FFFD: &[u8] = "\u{FFFD}".as_bytes();
    /// (line-local, can match U+FFFD)
    fn walk(hir: &Hir) -> (bool, bool) {
        match hir.kind() {
            HirKind::Empty => (true, false),
            HirKind::Literal(lit) => (!lit.0.contains(&b'\n'), lit.0.windows(3).any(|w| w == FFFD)),
            HirKind::Class(Class::Unicode(class)) => {
                let has = |c: char| {
                    class
                        .ranges()
                        .iter()
                        .any(|r| (r.start()..=r.end()).contains(&c))
                };
                (!has('\n'), has('\u{FFFD}'))
            }
            HirKind::Class(Class::Bytes(class)) => (
                class
                    .ranges()
                    .iter()
                    .all(|r| !(r.start()..=r.end()).contains(&b'\n') && r.end() < 0x80),
                false,
            ),
            HirKind::Look(look) => (
                matches!(
                    look,
                    Look::WordAscii
                        | Look::WordAsciiNegate
                        | Look::WordUnicode
                        | Look::WordUnicodeNegate
                ),
                false,
            ),
            HirKind::Repetition(rep) => walk(&rep.sub),
            HirKind::Capture(cap) => walk(&cap.sub),
            HirKind::Concat(parts) | HirKind::Alternation(parts) => parts
                .iter()
                .map(walk)
                .fold((true, false), |(l, f), (pl, pf)| (l && pl, f || pf)),
        }
    }
    let hir = regex_syntax::ParserBuilder::new()
        .utf8(false)
        .build()
        .parse(pattern)
        .ok()?;
    let (local, fffd) = walk(&hir);
    local.then_some(fffd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_local_regexes() {
        for p in [
            r"sk-[A-Za-z0-9]{20,}",
            r"\bab\b",
            r"a|b+c",
            r"[a-z\d]{3}",
            r"(?-u)a[\x00-\x09]",
        ] {
            assert_eq!(line_locality(p), Some(false), "{p}");
        }
        for p in [r"\bpassword=\S+", r"(?i)secret.*", "\u{FFFD}", r"[^\n]x"] {
            assert_eq!(line_locality(p), Some(true), "{p}");
        }
        for p in [
            r"^sk-",
            r"end$",
            r"a\nb",
            r"(?s)a.b",
            r"[\s]x",
            r"\Ax",
            r"(?m)^x",
            r"(?-u)a[\x80-\xff]",
            r"[^a]",
        ] {
            assert_eq!(line_locality(p), None, "{p}");
        }
    }

    #[test]
    fn event_type_scan() {
        assert!(event_type_is(b"data: x\n\n", b"message"));
        assert!(event_type_is(b"event:\ndata: x\n\n", b"message"));
        assert!(event_type_is(b"event: a\r\nevent:b\r\n\r\n", b"b"));
        assert!(!event_type_is(b"event: a\n\nevent: b\n", b"b"));
        assert!(!event_type_is(b"eventx: b\n\n", b"b"));
        assert!(event_type_is(b"event\n\n", b"message"));
    }
}
