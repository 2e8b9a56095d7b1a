//! Tests of the codec, one file per concept, plus the shotgun tests that feed every framer at
//! every split point against slow oracles.

mod body;
mod chunked;
mod framing;
mod fuzz;
mod head;
mod oracle;
mod rewrite;
mod scan;
mod shotgun;
