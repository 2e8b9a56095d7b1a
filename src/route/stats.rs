//! Per-route counters for `/metrics`: requests and responses by status class, labelled by the
//! route's name (`tether_route_requests_total{route="feeds"}`).
//!
//! Each worker counts in plain cells on its own routes (no atomic on the request path); the
//! admin endpoint sums them by label. A route's counters live in an `Rc` the worker's next table
//! takes over from the route of the same label on a reload, so a reload does not reset them.

use std::cell::Cell;
use std::rc::Rc;

/// One route's counters on one worker.
#[derive(Debug, Default)]
pub(crate) struct RouteStats {
    requests: Cell<u64>,
    /// Responses by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    responses: [Cell<u64>; 5],
}

/// A plain copy of one route's counters, sendable to the thread that renders `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteCounts {
    pub label: String,
    pub requests: u64,
    pub responses: [u64; 5],
}

impl RouteStats {
    pub(crate) fn new() -> Rc<RouteStats> {
        Rc::new(RouteStats::default())
    }

    pub(crate) fn record_request(&self) {
        self.requests.set(self.requests.get() + 1);
    }

    /// Counts a response sent with `status` (0: none was sent, nothing to count).
    pub(crate) fn record_response(&self, status: u16) {
        if let Some(class) = (status / 100).checked_sub(1).filter(|c| *c < 5) {
            let cell = &self.responses[usize::from(class)];
            cell.set(cell.get() + 1);
        }
    }

    pub(crate) fn counts(&self, label: &str) -> RouteCounts {
        RouteCounts {
            label: label.to_string(),
            requests: self.requests.get(),
            responses: self.responses.each_ref().map(Cell::get),
        }
    }
}

/// Sums the counts of every worker by route label, in the order labels are first seen.
pub fn sum_by_label<'a>(counts: impl IntoIterator<Item = &'a RouteCounts>) -> Vec<RouteCounts> {
    let mut sums: Vec<RouteCounts> = Vec::new();
    for c in counts {
        match sums.iter_mut().find(|s| s.label == c.label) {
            Some(s) => {
                s.requests += c.requests;
                for (total, n) in s.responses.iter_mut().zip(c.responses) {
                    *total += n;
                }
            }
            None => sums.push(c.clone()),
        }
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_count_by_class_and_workers_sum_by_label() {
        let stats = RouteStats::new();
        stats.record_request();
        stats.record_request();
        for status in [200, 204, 404, 502, 101, 0, 999] {
            stats.record_response(status);
        }
        let a = stats.counts("feeds");
        assert_eq!(a.requests, 2);
        assert_eq!(a.responses, [1, 2, 0, 1, 1], "0 and 999 are not counted");
        let b = RouteCounts {
            label: "feeds".into(),
            requests: 3,
            responses: [0, 3, 0, 0, 0],
        };
        let other = RouteCounts {
            label: "*/api".into(),
            requests: 1,
            responses: [0, 0, 0, 1, 0],
        };
        let sums = sum_by_label([&a, &other, &b]);
        assert_eq!(sums.len(), 2);
        assert_eq!(
            (sums[0].label.as_str(), sums[0].requests, sums[0].responses),
            ("feeds", 5, [1, 5, 0, 1, 1])
        );
        assert_eq!(sums[1], other);
    }
}
