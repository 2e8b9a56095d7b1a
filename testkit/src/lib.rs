//! Test kit for tether's parsers: slow oracles, and one property per fuzz target.
//!
//! Module map:
//! - [`oracle`]: reference readings (chunked body, end of a head, SSE blocks) by the book.
//! - [`input`]: how one fuzz input becomes the reads a parser is fed (any split of any input).
//! - [`props`]: the properties, one function per fuzz target; each panics on a violation.
//! - [`sse`]: drives `tether::sse::EventFramer` over pieces (the one file that knows its API).
//!
//! Three users, one truth: the libFuzzer targets in `fuzz/` call [`props`], `tests/fuzz_corpus.rs`
//! replays the committed corpora through the same functions on every `cargo test`, and the
//! proptest shotgun tests compare against the same [`oracle`]s.

pub mod input;
pub mod oracle;
pub mod props;
pub mod sse;

/// A property: panics when `data` shows a violation.
pub type Property = fn(&[u8]);

/// Every fuzz target: its name (the directory of its corpus under `fuzz/corpus/`, the binary in
/// `fuzz/fuzz_targets/`) and its property.
pub const TARGETS: &[(&str, Property)] = &[
    ("request_head", props::request_head),
    ("response_head", props::response_head),
    ("chunked", props::chunked),
    ("sse_framer", props::sse_framer),
];
