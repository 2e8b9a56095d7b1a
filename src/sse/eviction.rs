//! Which rings lose events when a worker's rings cost more than its budget: the largest ones, down
//! to a common level, so that one huge stream cannot starve many small ones of their replay and
//! many small ones cannot make a large one forget everything.

/// The largest level `C` with `sum(min(cost, C)) <= target`: capping every ring at `C` brings the
/// total within `target` while taking only from the rings above `C`. `costs` in any order.
///
/// ```text
/// sort ascending; walk up: with k rings left, each above `level`, the rest fit when
///   spent + k * cost[i] <= target   -> those all keep everything
/// otherwise the k remaining rings share what is left: C = (target - spent) / k
/// ```
pub fn water_level(costs: &[usize], target: usize) -> usize {
    let mut sorted = costs.to_vec();
    sorted.sort_unstable();
    let mut spent = 0usize;
    for (i, &cost) in sorted.iter().enumerate() {
        let left = sorted.len() - i;
        if spent + cost * left > target {
            return (target - spent.min(target)) / left;
        }
        spent += cost;
    }
    usize::MAX
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_only_the_largest() {
        // Fits already: no cap.
        assert_eq!(water_level(&[10, 20, 30], 60), usize::MAX);
        // 10 + 20 + min(90, C) <= 80 -> C = 50.
        assert_eq!(water_level(&[90, 10, 20], 80), 50);
        // Two large ones share what the small one leaves.
        assert_eq!(water_level(&[100, 10, 100], 110), 50);
        // Everything is over: equal shares.
        assert_eq!(water_level(&[100, 100, 100, 100], 100), 25);
        assert_eq!(water_level(&[], 0), usize::MAX);
        assert_eq!(water_level(&[5], 0), 0);
    }

    #[test]
    fn the_capped_total_is_within_the_target() {
        let costs: Vec<usize> = (1..200).map(|i| (i * 7919) % 1000 + 1).collect();
        for target in [0, 1, 100, 5_000, 50_000, 99_000, 1_000_000] {
            let c = water_level(&costs, target);
            let total: usize = costs.iter().map(|&x| x.min(c)).sum();
            assert!(
                total <= target || c == usize::MAX,
                "target {target}: {total}"
            );
            if c != usize::MAX {
                // And not needlessly low: one more unit per capped ring would overshoot.
                let above = costs.iter().filter(|&&x| x > c).count();
                assert!(total + above > target, "target {target}: level {c} too low");
            }
        }
    }
}
