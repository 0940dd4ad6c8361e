//! A log-linear histogram of `u64` values (microseconds here) with bounded relative error:
//! O(1) record, no allocation after creation, merged once per loop at the end of a run.
//!
//! **Invariant:** no IO, no clock; recording a value is O(1) and never allocates.

/// Sub-buckets per power of two: 2^10 = 1024, so a bucket is at most 1/1024 (0.1 %) of its values
/// wide and a reported quantile is within 0.05 % of a recorded value.
const SUB_BITS: u32 = 10;
const SUB: u64 = 1 << SUB_BITS;
/// Values are clamped to 2^48 - 1 (microseconds: 8.9 years).
const MAX_EXP: u32 = 47;
const MAX_VALUE: u64 = (1 << (MAX_EXP + 1)) - 1;
const BUCKETS: usize = ((MAX_EXP - SUB_BITS + 2) as usize) << SUB_BITS;

/// A log-linear histogram of `u64` values (microseconds here) with bounded relative error, in
/// the manner of HdrHistogram: exact below 1024, then 1024 equal buckets per power of two.
#[derive(Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    count: u64,
    min: u64,
    max: u64,
    sum: u128,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count)
            .field("min", &self.min())
            .field("max", &self.max())
            .finish()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Self::new()
    }
}

impl Histogram {
    /// An empty histogram (about 320 KB of buckets).
    pub fn new() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            count: 0,
            min: u64::MAX,
            max: 0,
            sum: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < SUB {
            return v as usize;
        }
        let e = 63 - v.leading_zeros(); // floor(log2 v), at least SUB_BITS
        let mantissa = v >> (e - SUB_BITS); // in SUB..2*SUB
        (((e - SUB_BITS + 1) as usize) << SUB_BITS) + (mantissa - SUB) as usize
    }

    /// The lowest value of bucket `i` and the bucket's width.
    fn bucket(i: usize) -> (u64, u64) {
        if (i as u64) < SUB {
            return (i as u64, 1);
        }
        let k = (i >> SUB_BITS) as u32; // at least 1
        let shift = k - 1;
        let mantissa = (i as u64 & (SUB - 1)) + SUB;
        (mantissa << shift, 1 << shift)
    }

    /// Adds one value.
    pub fn record(&mut self, v: u64) {
        let v = v.min(MAX_VALUE);
        self.counts[Self::index(v)] += 1;
        self.count += 1;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += u128::from(v);
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
    }

    /// Number of values recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Smallest value, 0 when empty.
    pub fn min(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            self.min
        }
    }

    /// Largest value, 0 when empty.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Arithmetic mean, 0 when empty.
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The values in `n` bins whose edges grow geometrically from the minimum to the maximum
    /// (so a chart on a log axis shows microseconds and seconds alike): `(low, high, count)`
    /// per bin, `low` inclusive. Empty when nothing was recorded; one bin when every value is
    /// the same.
    pub fn bins(&self, n: usize) -> Vec<(u64, u64, u64)> {
        if self.count == 0 || n == 0 {
            return Vec::new();
        }
        let (lo, hi) = (self.min(), self.max());
        if lo == hi {
            return vec![(lo, hi, self.count)];
        }
        let (l, h) = ((lo.max(1) as f64).ln(), ((hi + 1) as f64).ln());
        let edge = |i: usize| -> u64 {
            match i {
                0 => lo,
                i if i >= n => hi + 1,
                i => (l + (h - l) * i as f64 / n as f64).exp().round() as u64,
            }
        };
        let mut out: Vec<(u64, u64, u64)> = (0..n).map(|i| (edge(i), edge(i + 1), 0)).collect();
        for (i, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let (low, width) = Self::bucket(i);
            let v = (low + (width - 1) / 2).clamp(lo, hi);
            let b = out.partition_point(|&(_, high, _)| high <= v).min(n - 1);
            out[b].2 += c;
        }
        out
    }

    /// The value at quantile `q` (0..=1): the middle of the bucket holding the value of rank
    /// `ceil(q * count)`, clamped to the exact min and max (and exactly those for the first and
    /// last rank). 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        // The extremes are known exactly.
        if rank == 1 {
            return self.min;
        }
        if rank >= self.count {
            return self.max;
        }
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (low, width) = Self::bucket(i);
                return (low + (width - 1) / 2).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_tile_the_range() {
        let mut expect_low = 0;
        for i in 0..BUCKETS {
            let (low, width) = Histogram::bucket(i);
            assert_eq!(low, expect_low, "bucket {i}");
            assert_eq!(Histogram::index(low), i);
            assert_eq!(Histogram::index(low + width - 1), i);
            expect_low = low + width;
        }
        assert_eq!(expect_low, MAX_VALUE + 1);
    }

    #[test]
    fn histogram_quantiles_have_bounded_error() {
        let mut h = Histogram::new();
        assert_eq!((h.quantile(0.5), h.min(), h.max()), (0, 0, 0));
        for v in 1..=100_000u64 {
            h.record(v);
        }
        for (q, want) in [
            (0.5, 50_000.0),
            (0.99, 99_000.0),
            (0.999, 99_900.0),
            (0.0, 1.0),
        ] {
            let got = h.quantile(q) as f64;
            assert!(
                (got - want).abs() / want < 0.005,
                "q{q}: got {got} want {want}"
            );
        }
        assert_eq!((h.min(), h.max(), h.quantile(1.0)), (1, 100_000, 100_000));
        assert!((h.mean() - 50_000.5).abs() < 1e-6);
        let mut other = Histogram::new();
        other.record(u64::MAX);
        h.merge(&other);
        assert_eq!((h.count(), h.max()), (100_001, MAX_VALUE));
        // Two clusters near 2 s: the median is in the lower one, the p99 in the upper one.
        let mut h = Histogram::new();
        for _ in 0..16 {
            h.record(2_000_100);
        }
        for _ in 0..14 {
            h.record(2_002_271);
        }
        let (p50, p99) = (h.quantile(0.5), h.quantile(0.99));
        assert!(p50.abs_diff(2_000_100) <= 1024, "{p50}");
        assert!(p99.abs_diff(2_002_271) <= 1024, "{p99}");
        // Small values are exact.
        let mut h = Histogram::new();
        for v in [3, 3, 3, 7] {
            h.record(v);
        }
        assert_eq!((h.quantile(0.5), h.quantile(0.99)), (3, 7));
    }

    #[test]
    fn bins_cover_every_value_once() {
        let h = Histogram::new();
        assert!(h.bins(10).is_empty());
        let mut h = Histogram::new();
        h.record(7);
        h.record(7);
        assert_eq!(h.bins(10), vec![(7, 7, 2)]);
        let mut h = Histogram::new();
        for v in [0, 1, 10, 100, 1000, 10_000, 100_000, 1_000_000, 1_000_000] {
            h.record(v);
        }
        let bins = h.bins(12);
        assert_eq!(bins.len(), 12);
        assert_eq!(bins.iter().map(|b| b.2).sum::<u64>(), 9);
        assert_eq!((bins[0].0, bins[11].1), (0, 1_000_001));
        assert!(bins
            .windows(2)
            .all(|w| w[0].1 == w[1].0 && w[0].0 <= w[0].1));
        assert_eq!(bins[11].2, 2, "the two largest values fall in the last bin");
        assert!(bins[0].2 >= 2, "0 and 1 fall in the first bin");
    }
}
