//! Tests of the codec, one file per concept, plus the shotgun tests that feed every framer at
//! every split point against slow oracles (in `tether_testkit::oracle`, shared with the fuzz
//! targets).

mod body;
mod chunked;
mod framing;
mod fuzz;
mod head;
mod rewrite;
mod scan;
mod shotgun;
