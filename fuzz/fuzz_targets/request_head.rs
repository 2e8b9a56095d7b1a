//! Request heads: the scanner and parse at any split of any input (the same verdict as in one
//! read, the oracle's head end), and every rewrite for the upstream parses again.
//! The property is `tether_testkit::props::request_head`; the input format is `tether_testkit::input`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tether_testkit::props::request_head(data));
