//! A route's upstream group: which of the process's replicas serve it, the order a worker tries
//! them in, and how long a connect to one of them may take.

use std::cell::Cell;
use std::time::Duration;

use super::health::round_robin;

/// One worker's view of a route's replicas. A replica is an index into the process's replica
/// list (`Config::upstreams`), so the keep-alive pool and the address cache stay per replica
/// whichever routes share it.
#[derive(Debug)]
pub(crate) struct UpstreamGroup {
    /// The route's replicas, in the order its configuration lists them; never empty (a route
    /// without an upstream is refused when the configuration is read).
    replicas: Box<[usize]>,
    /// Position in `replicas` where the next request starts (round robin). This worker's own
    /// cell: no atomic, no lock.
    next: Cell<usize>,
    /// The route's `connect-timeout`: past it the next replica is tried.
    pub(crate) connect_timeout: Duration,
}

impl UpstreamGroup {
    /// `first`: where this worker's round robin starts (the worker's index, so that workers
    /// do not all begin with the same replica).
    pub(crate) fn new(replicas: &[usize], first: usize, connect_timeout: Duration) -> Self {
        debug_assert!(!replicas.is_empty(), "a route has at least one replica");
        UpstreamGroup {
            replicas: replicas.into(),
            next: Cell::new(first % replicas.len().max(1)),
            connect_timeout,
        }
    }

    /// The route's replicas, in configuration order.
    pub(crate) fn replicas(&self) -> &[usize] {
        &self.replicas
    }

    /// The replicas in the order a new request tries them before health reorders them
    /// (`UpstreamSet::try_order`): the next one in round robin first, then the others in turn.
    /// Moves the round robin on by one.
    pub(crate) fn round_robin(&self) -> impl Iterator<Item = usize> + '_ {
        let len = self.replicas.len();
        let start = self.next.get();
        self.next.set((start + 1) % len.max(1));
        round_robin(start, len).map(move |i| self.replicas[i])
    }

    /// The replica a new request would try first (the round robin moves on).
    pub(crate) fn next_replica(&self) -> usize {
        self.round_robin().next().unwrap_or(0)
    }

    /// The replicas starting with `replica` (a stream's own, which its reconnects try first),
    /// then the others in turn; the group's first replica first when `replica` is not in it.
    pub(crate) fn starting_at(&self, replica: usize) -> impl Iterator<Item = usize> + '_ {
        let len = self.replicas.len();
        let start = self
            .replicas
            .iter()
            .position(|r| *r == replica)
            .unwrap_or(0);
        round_robin(start, len).map(move |i| self.replicas[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_cycles_through_the_group_only() {
        let group = UpstreamGroup::new(&[4, 7, 9], 1, Duration::from_secs(1));
        let orders: Vec<Vec<usize>> = (0..3).map(|_| group.round_robin().collect()).collect();
        assert_eq!(orders, [vec![7, 9, 4], vec![9, 4, 7], vec![4, 7, 9]]);
        assert_eq!(group.starting_at(9).collect::<Vec<_>>(), [9, 4, 7]);
        assert_eq!(
            group.starting_at(2).collect::<Vec<_>>(),
            [4, 7, 9],
            "a replica of another group starts from the first"
        );
    }
}
