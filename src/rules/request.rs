//! The rules of one request, kept for its whole life: a stream's events pass its event stage,
//! and every resume of the stream sends the request with the same header changes.

use super::RulePlan;
use crate::http::HeaderEdit;

/// A request's plan and what its request stage decided.
#[derive(Debug)]
pub(crate) struct RequestRules {
    pub(crate) plan: Box<RulePlan>,
    /// The header changes its request stage asked for: sent upstream with the request, and
    /// with every resume of its stream.
    pub(crate) upstream_edits: Vec<HeaderEdit>,
}
