//! Where a lineage's events go in the store: its stream's key and its own tag.
//!
//! Two lineages of one scope (two anonymous clients of one URL, each with its own upstream) share
//! the stream's key, so their entries interleave in one Redis stream. Each entry carries its
//! lineage's tag, and a read returns only the entries of the lineage that recorded the client's
//! id (`super::read`): one history per ring, never two mixed.
//!
//! A tag is unique across workers, instances and restarts: 64 random bits drawn once per process,
//! the worker's index and the lineage's id on that worker (`crate::sse::table::Lineage::id`,
//! never reused). Made once per lineage, never per event.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use super::key::StoreKey;

/// A lineage's key and tag, shared by every event it records (one refcount per event).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct StoreLineage(Arc<Names>);

#[derive(Debug, PartialEq, Eq)]
struct Names {
    key: StoreKey,
    tag: Bytes,
}

impl StoreLineage {
    /// The lineage `lineage` of worker `worker`, recording into the stream `key`.
    pub(crate) fn new(key: StoreKey, worker: usize, lineage: u64) -> StoreLineage {
        StoreLineage::with_nonce(key, process_nonce(), worker, lineage)
    }

    fn with_nonce(key: StoreKey, nonce: u64, worker: usize, lineage: u64) -> StoreLineage {
        let tag = Bytes::from(format!("{nonce:016x}.{worker}.{lineage}"));
        StoreLineage(Arc::new(Names { key, tag }))
    }

    /// The stream's key (shared with the scope's other lineages).
    pub(crate) fn key(&self) -> &StoreKey {
        &self.0.key
    }

    /// The lineage's tag, as written in each of its entries.
    pub(crate) fn tag(&self) -> &[u8] {
        &self.0.tag
    }
}

/// 64 random bits drawn once per process (getrandom; the clock and pid if it fails).
fn process_nonce() -> u64 {
    static NONCE: OnceLock<u64> = OnceLock::new();
    *NONCE.get_or_init(|| {
        let mut bytes = [0u8; 8];
        // SAFETY: getrandom writes at most `bytes.len()` bytes into `bytes`.
        let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
        if n == bytes.len() as isize {
            return u64::from_ne_bytes(bytes);
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        nanos ^ (u64::from(std::process::id()) << 32)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_differ_by_worker_lineage_and_process() {
        let key = StoreKey::from_scope_bytes(b"/s");
        let a = StoreLineage::with_nonce(key.clone(), 7, 0, 1);
        assert_eq!(a.tag(), b"0000000000000007.0.1");
        assert_eq!(a.key(), &key);
        for other in [
            StoreLineage::with_nonce(key.clone(), 7, 1, 1),
            StoreLineage::with_nonce(key.clone(), 7, 0, 2),
            StoreLineage::with_nonce(key.clone(), 8, 0, 1),
        ] {
            assert_ne!(a.tag(), other.tag());
        }
        assert_eq!(
            StoreLineage::new(key.clone(), 0, 1).tag(),
            StoreLineage::new(key, 0, 1).tag(),
            "one nonce per process"
        );
    }
}
