//! Where a lineage stands, as the store tells it: still read from its upstream somewhere, or ended.
//!
//! The instance reading a lineage's upstream writes an end marker into the stream when it stops
//! (`XADD ... lineage <tag> end finished|stopped`, no event). A lineage's state is the kind of its
//! newest entry: an event (or nothing after the id) means some instance still reads it, unless that
//! entry is older than `super::follow::FOLLOW_IDLE` by Redis's own clock (the instance died without
//! a marker); a marker means it ended. A lineage continued after a marker (its client came back to
//! the instance that held its ring) writes events after it again, and is live again.

/// How a lineage's upstream reading ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineageEnd {
    /// The upstream ended the stream for good: what the store holds is all there will be.
    Finished,
    /// The instance stopped reading it otherwise (its client left and nothing held it, the hold
    /// ran out, it gave up reconnecting): a reconnection resumes the upstream itself.
    Stopped,
}

impl LineageEnd {
    /// The marker's `end` field.
    pub(super) fn word(self) -> &'static [u8] {
        match self {
            LineageEnd::Finished => b"finished",
            LineageEnd::Stopped => b"stopped",
        }
    }

    pub(super) fn from_word(word: &[u8]) -> Option<LineageEnd> {
        match word {
            b"finished" => Some(LineageEnd::Finished),
            b"stopped" => Some(LineageEnd::Stopped),
            _ => None,
        }
    }
}

/// A lineage's state when a reconnection read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LineageState {
    /// An instance still reads its upstream (its newest entry is a recent event): a reconnection
    /// elsewhere follows it through the store (`super::follow`) instead of opening the upstream a
    /// second time.
    Live,
    Ended(LineageEnd),
}
