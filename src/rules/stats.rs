//! The process-wide registry of rule counters, by rule name: a chain built at start or on a
//! reload takes the counters of its rules' names from here, so a rule that survives a reload
//! keeps counting where it was. The lock is taken only when chains are built and when
//! /metrics is rendered, never on the request path (that path holds the `Arc<RuleStats>`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use super::RuleStats;
use crate::metrics::escape_label_value;

/// A rule's counters and the action it had when its chain was last built.
#[derive(Debug)]
struct Entry {
    stats: Arc<RuleStats>,
    /// The `action` label; the latest chain's (a reload may change a rule's action).
    action: String,
}

/// Sorted by name, so /metrics lists rules in a stable order.
static REGISTRY: Mutex<BTreeMap<String, Entry>> = Mutex::new(BTreeMap::new());

/// The counters of the rule `name` (created at zero the first time), recording `action` as its
/// action label.
pub(crate) fn stats_for(name: &str, action: &str) -> Arc<RuleStats> {
    // A panic elsewhere while holding the lock leaves the map whole: take it anyway.
    let mut registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    let entry = registry.entry(name.to_owned()).or_insert_with(|| Entry {
        stats: Arc::default(),
        action: String::new(),
    });
    if entry.action != action {
        entry.action = action.to_owned();
    }
    Arc::clone(&entry.stats)
}

/// Prometheus text for every rule ever registered.
pub(crate) fn render(out: &mut String) {
    let registry = REGISTRY.lock().unwrap_or_else(|e| e.into_inner());
    out.push_str("# HELP tether_rule_matches_total Messages a rule's match held for.\n");
    out.push_str("# TYPE tether_rule_matches_total counter\n");
    for (name, entry) in registry.iter() {
        let _ = writeln!(
            out,
            "tether_rule_matches_total{{rule=\"{}\"}} {}",
            escape_label_value(name),
            entry.stats.matches.load(Ordering::Relaxed)
        );
    }
    out.push_str(
        "# HELP tether_rule_actions_total Messages a rule acted on (denied, dropped, changed, logged).\n",
    );
    out.push_str("# TYPE tether_rule_actions_total counter\n");
    for (name, entry) in registry.iter() {
        let _ = writeln!(
            out,
            "tether_rule_actions_total{{rule=\"{}\",action=\"{}\"}} {}",
            escape_label_value(name),
            escape_label_value(&entry.action),
            entry.stats.actions.load(Ordering::Relaxed)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_name_same_counters() {
        let a = stats_for("stats-test-same-name", "log");
        let b = stats_for("stats-test-same-name", "deny");
        assert!(Arc::ptr_eq(&a, &b));
        a.matches.fetch_add(2, Ordering::Relaxed);
        let mut out = String::new();
        render(&mut out);
        assert!(out.contains("tether_rule_matches_total{rule=\"stats-test-same-name\"} 2\n"));
        assert!(out.contains(
            "tether_rule_actions_total{rule=\"stats-test-same-name\",action=\"deny\"} 0\n"
        ));
    }
}
