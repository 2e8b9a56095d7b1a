//! The ids `--assign-ids` gives events that have none: `<worker>-<ring>-<seq>`. They are unique
//! across the process (a worker never reuses a ring number, a ring never reuses a seq) and they
//! name the ring they were recorded in, so a reconnection carrying one is asked of the right
//! worker first instead of every worker holding a ring of the scope.

use std::fmt::Write;

use bytes::{Bytes, BytesMut};

/// An id tether assigned, taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssignedId {
    pub worker: u32,
    pub ring: u64,
    pub seq: u64,
}

impl AssignedId {
    /// Writes the id as it goes on the wire.
    pub fn to_bytes(self) -> Bytes {
        let mut out = BytesMut::with_capacity(24);
        let _ = write!(out, "{}-{}-{}", self.worker, self.ring, self.seq);
        out.freeze()
    }

    /// Reads an id of this form back; None for anything else (an upstream's own id, or a client's
    /// invention: the ring lookup still checks the scope and the id itself).
    pub fn parse(id: &[u8]) -> Option<AssignedId> {
        let mut parts = id.split(|&b| b == b'-');
        let worker = decimal(parts.next()?)?;
        let ring = decimal(parts.next()?)?;
        let seq = decimal(parts.next()?)?;
        if parts.next().is_some() {
            return None;
        }
        Some(AssignedId {
            worker: u32::try_from(worker).ok()?,
            ring,
            seq,
        })
    }
}

/// Digits only, no sign (the HTTP codec's strict decimal).
fn decimal(s: &[u8]) -> Option<u64> {
    crate::http::parse_decimal(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let id = AssignedId {
            worker: 79,
            ring: 12,
            seq: 3405,
        };
        assert_eq!(&id.to_bytes()[..], b"79-12-3405");
        assert_eq!(AssignedId::parse(b"79-12-3405"), Some(id));
        for bad in [
            &b"5"[..],
            b"1-2",
            b"1-2-3-4",
            b"a-1-2",
            b"-1-2",
            b"1--2",
            b"+1-2-3",
            b"99999999999-1-1",
            b"1-99999999999999999999-1",
            b"1-2-18446744073709551616",
        ] {
            assert_eq!(
                AssignedId::parse(bad),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
