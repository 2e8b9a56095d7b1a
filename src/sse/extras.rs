//! What a stream carries beyond the relay's own state, for the few streams that need it (one
//! pointer in the relay otherwise): the event stage of its request's rules, the header changes
//! every resume of it sends upstream, and whether its resumes must stay on its replica.

use crate::http::HeaderEdit;
use crate::rules::RulePlan;

#[derive(Debug, Default)]
pub(crate) struct StreamExtras {
    /// The request's rules, when they have an event stage: every event passes it.
    pub(crate) plan: Option<Box<RulePlan>>,
    /// Header changes sent with the request and with every resume: the rules' (`set-header`,
    /// `remove-header`) and an MCP session's upstream id (`crate::mcp_session`).
    pub(crate) upstream_edits: Vec<HeaderEdit>,
    /// Resumes go to the stream's replica only, never to another (an MCP session lives on the
    /// replica that made it).
    pub(crate) pinned: bool,
    /// Closing the response cancels the request (MCP 2026-07-28): the client is watched for a
    /// disconnect at once, not after a quiet spell, so the upstream is closed as soon as the
    /// client leaves; and a drop is never resumed (the request would run again).
    pub(crate) cancel_on_leave: bool,
}

impl StreamExtras {
    /// None when there is nothing to carry (most streams).
    pub(crate) fn of(
        plan: Option<Box<RulePlan>>,
        upstream_edits: Vec<HeaderEdit>,
        pinned: bool,
        cancel_on_leave: bool,
    ) -> Option<Box<StreamExtras>> {
        let plan = plan.filter(|p| p.has_event_rules());
        (plan.is_some() || !upstream_edits.is_empty() || pinned || cancel_on_leave).then(|| {
            Box::new(StreamExtras {
                plan,
                upstream_edits,
                pinned,
                cancel_on_leave,
            })
        })
    }
}
