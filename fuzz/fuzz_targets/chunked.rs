//! The chunked decoder at any split of any input, against the slow oracle.
//! The property is `tether_testkit::props::chunked`; the input format is `tether_testkit::input`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tether_testkit::props::chunked(data));
