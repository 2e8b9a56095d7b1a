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
//! event-type T      the block's last `event` line has the value T (absent/empty: "message")
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
    /// `event-type`, when it can be compared as bytes (no U+FFFD in it).
    event_type: Option<Box<[u8]>>,
    /// Needle groups of the MCP keys: every group needs one hit (or a backslash).
    json_groups: Vec<Vec<Finder<'static>>>,
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
            .map(|t| t.as_bytes().into());
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
        Prefilter {
            data,
            event_type,
            json_groups,
        }
    }

    /// A prefilter that rejects nothing.
    #[cfg(test)]
    pub(crate) fn none() -> Prefilter {
        Prefilter {
            data: None,
            event_type: None,
            json_groups: Vec::new(),
        }
    }

    /// Can the rule match the raw SSE block `raw`?
    pub(crate) fn may_match_event(&self, raw: &[u8]) -> bool {
        if let Some(want) = &self.event_type {
            if !event_type_is(raw, want) {
                return false;
            }
        }
        if let Some(finder) = &self.data {
            if finder.find(raw).is_none() {
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

#[cfg(test)]
mod tests {
    use super::*;

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
