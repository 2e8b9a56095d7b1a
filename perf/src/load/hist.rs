//! A log-linear histogram of non-negative integers (microseconds here), HDR-like.
//!
//! Values below [`SUB_BUCKETS`] get one bucket each (exact). Above, every power of two
//! `[2^e, 2^(e+1))` is split into [`SUB_BUCKETS`] / 2 equal buckets, so a bucket is at most
//! 1/128 of its lower bound wide: a reported percentile is the bucket's midpoint, within
//! 0.4% of the true value (and never outside the recorded min..=max).
//!
//! ```text
//! v < 128:  index = v
//! v >= 128: e = floor(log2 v) (7..=63), shift = e - 7, index = 128 + (e - 7) * 128 + (v >> shift) - 128
//! ```
//! 7424 `u64` counters (58 KiB) cover every `u64`; recording is a `leading_zeros` and an add.
//! Per-thread histograms are merged by adding counters.

/// Buckets of the exact range and of each power of two past it (a power of two).
const SUB_BUCKETS: u64 = 128;
/// log2 of [`SUB_BUCKETS`].
const SUB_BITS: u32 = 7;
/// Number of buckets: the exact range plus one row per power of two from 2^7 to 2^63.
const BUCKETS: usize = (SUB_BUCKETS + (64 - SUB_BITS as u64) * SUB_BUCKETS) as usize;

/// Counts of recorded values in log-linear buckets (see the module doc).
#[derive(Clone)]
pub struct Histogram {
    /// One counter per bucket, indexed by [`index_of`].
    counts: Box<[u64]>,
    /// Values recorded.
    total: u64,
    /// Smallest value recorded (u64::MAX when empty).
    min: u64,
    /// Largest value recorded (exact; 0 when empty).
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .field("min", &self.min())
            .field("max", &self.max)
            .finish()
    }
}

/// Bucket index of `v`.
fn index_of(v: u64) -> usize {
    if v < SUB_BUCKETS {
        return v as usize;
    }
    let e = 63 - v.leading_zeros(); // floor(log2 v), >= SUB_BITS
    let shift = e - SUB_BITS;
    let sub = (v >> shift) - SUB_BUCKETS; // 0..128
    (SUB_BUCKETS + u64::from(shift) * SUB_BUCKETS + sub) as usize
}

/// Smallest and largest value of bucket `i`.
fn bounds_of(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < SUB_BUCKETS {
        return (i, i);
    }
    let shift = (i - SUB_BUCKETS) / SUB_BUCKETS;
    let sub = (i - SUB_BUCKETS) % SUB_BUCKETS;
    let low = (SUB_BUCKETS + sub) << shift;
    let width = 1u64 << shift;
    (low, low + (width - 1))
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            min: u64::MAX,
            max: 0,
        }
    }

    /// Records one value.
    #[inline]
    pub fn record(&mut self, v: u64) {
        self.counts[index_of(v)] += 1;
        self.total += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Largest value recorded (exact), 0 when empty.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Smallest value recorded (exact), 0 when empty.
    pub fn min(&self) -> u64 {
        if self.total == 0 {
            0
        } else {
            self.min
        }
    }

    /// Adds every count of `other` to this one.
    pub fn merge(&mut self, other: &Histogram) {
        if other.total == 0 {
            return;
        }
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += *b;
        }
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Forgets every value.
    pub fn clear(&mut self) {
        if self.total != 0 {
            self.counts.fill(0);
        }
        self.total = 0;
        self.min = u64::MAX;
        self.max = 0;
    }

    /// The value at quantile `q` (0.0..=1.0) by nearest rank: the smallest recorded value
    /// such that at least `ceil(q * count)` values are at or below it, approximated by its
    /// bucket's midpoint and clamped to min..=max. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, high) = bounds_of(i);
                let mid = low + (high - low) / 2;
                return mid.clamp(self.min, self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nearest-rank quantile of a sorted vector: the oracle.
    fn oracle(sorted: &[u64], q: f64) -> u64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1]
    }

    /// Deterministic xorshift so the test needs no dependency.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn buckets_tile_the_range() {
        // Every bucket starts right after the previous one ends, and index_of inverts bounds_of.
        let mut next = 0u64;
        for i in 0..BUCKETS {
            let (low, high) = bounds_of(i);
            assert_eq!(low, next, "bucket {i}");
            assert!(high >= low);
            assert_eq!(index_of(low), i);
            assert_eq!(index_of(high), i);
            // Width at most 1/128 of the lower bound past the exact range.
            if low >= SUB_BUCKETS {
                assert!((high - low + 1) * SUB_BUCKETS <= low, "bucket {i}");
            }
            next = high.wrapping_add(1);
        }
        assert_eq!(next, 0, "the last bucket ends at u64::MAX");
        assert_eq!(index_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn exact_below_128() {
        let mut h = Histogram::new();
        for v in 0..128 {
            h.record(v);
        }
        assert_eq!(h.quantile(0.5), 63);
        assert_eq!(h.quantile(1.0), 127);
        assert_eq!(h.quantile(0.0), 0);
        assert_eq!(h.min(), 0);
        assert_eq!(h.max(), 127);
    }

    #[test]
    fn empty() {
        let h = Histogram::new();
        assert_eq!(h.quantile(0.99), 0);
        assert_eq!(h.count(), 0);
        assert_eq!(h.min(), 0);
        assert_eq!(h.max(), 0);
    }

    #[test]
    fn quantiles_match_a_sorted_vector_within_precision() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for round in 0..20 {
            let n = 1 + (xorshift(&mut seed) % 5000) as usize;
            // Mix of scales: exact range, latency-like microseconds, huge values.
            let scale = [100u64, 10_000, 5_000_000, u64::MAX / 3][round % 4];
            let mut values: Vec<u64> = (0..n).map(|_| xorshift(&mut seed) % scale).collect();
            let mut h = Histogram::new();
            for &v in &values {
                h.record(v);
            }
            values.sort_unstable();
            assert_eq!(h.count(), n as u64);
            assert_eq!(h.max(), *values.last().unwrap());
            assert_eq!(h.min(), values[0]);
            for q in [0.0, 0.01, 0.5, 0.9, 0.99, 0.999, 1.0] {
                let want = oracle(&values, q);
                let got = h.quantile(q);
                let err = got.abs_diff(want);
                assert!(
                    err as f64 <= want as f64 / 256.0 + 0.5,
                    "round {round} q {q}: got {got}, want {want}"
                );
            }
        }
    }

    #[test]
    fn merge_equals_recording_everything_in_one() {
        let mut seed = 42u64;
        let mut parts = vec![Histogram::new(), Histogram::new(), Histogram::new()];
        let mut all = Histogram::new();
        for i in 0..3000 {
            let v = xorshift(&mut seed) % 1_000_000;
            parts[i % 3].record(v);
            all.record(v);
        }
        let mut merged = Histogram::new();
        for p in &parts {
            merged.merge(p);
        }
        merged.merge(&Histogram::new());
        assert_eq!(merged.count(), all.count());
        assert_eq!(merged.counts, all.counts);
        assert_eq!((merged.min(), merged.max()), (all.min(), all.max()));
        merged.clear();
        assert_eq!(merged.count(), 0);
        assert_eq!(merged.quantile(0.5), 0);
    }
}
