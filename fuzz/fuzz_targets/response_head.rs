//! Response heads: the scanner and parse at any split of any input, and the rewrite for the
//! client parses again and frames its body as intended.
//! The property is `tether_testkit::props::response_head`; the input format is `tether_testkit::input`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tether_testkit::props::response_head(data));
