//! The SSE event framer at any split of any input, against the slow oracle, with and without an
//! event-size limit.
//! The property is `tether_testkit::props::sse_framer`; the input format is `tether_testkit::input`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tether_testkit::props::sse_framer(data));
