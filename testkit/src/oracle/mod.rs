//! Slow, obviously right reference readings of what tether parses fast. Each sees its whole input
//! at once, works with plain slicing, and shares no code with the parser it judges.

pub mod http;
pub mod sse;
