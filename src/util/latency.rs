//! The one latency histogram shape of `/metrics`: fixed bucket bounds in microseconds, the
//! bucket a sample falls in, and its Prometheus text. Used for the hub's publish-to-write
//! latency and the data dir's sync latency, so both read alike on a dashboard.

use std::fmt::Write as _;

/// Upper bounds of the buckets, in microseconds (a last, unbounded bucket follows).
pub const BUCKETS_US: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// How many counts a histogram keeps: one per bound, and `+Inf`.
pub const SLOTS: usize = BUCKETS_US.len() + 1;

/// The bucket (an index below [`SLOTS`]) a sample of `us` microseconds counts in.
#[inline]
pub fn bucket(us: u64) -> usize {
    BUCKETS_US
        .iter()
        .position(|&b| us <= b)
        .unwrap_or(BUCKETS_US.len())
}

/// A latency histogram's figures: per-bucket (not cumulative) counts and their sum.
#[derive(Clone, Copy, Debug)]
pub struct Histogram<'a> {
    pub counts: &'a [u64; SLOTS],
    pub sum_us: u64,
}

/// Writes a histogram `h` as Prometheus text, in seconds.
pub fn render(out: &mut String, name: &str, help: &str, h: Histogram<'_>) {
    let Histogram { counts, sum_us } = h;
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} histogram\n");
    let mut cumulative = 0;
    for (b, n) in BUCKETS_US.iter().zip(counts) {
        cumulative += n;
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"{}\"}} {cumulative}",
            *b as f64 / 1e6
        );
    }
    cumulative += counts[BUCKETS_US.len()];
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(out, "{name}_sum {:.6}", sum_us as f64 / 1e6);
    let _ = writeln!(out, "{name}_count {cumulative}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_fall_in_the_first_bucket_that_holds_them_and_render_cumulatively() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(100), 0);
        assert_eq!(bucket(101), 1);
        assert_eq!(bucket(1_000_001), BUCKETS_US.len());
        let mut counts = [0; SLOTS];
        for us in [50, 300, 300, 2_000_000] {
            counts[bucket(us)] += 1;
        }
        let mut out = String::new();
        render(
            &mut out,
            "x_seconds",
            "Help.",
            Histogram {
                counts: &counts,
                sum_us: 2_000_650,
            },
        );
        assert!(out.starts_with("# HELP x_seconds Help.\n# TYPE x_seconds histogram\n"));
        assert!(out.contains("x_seconds_bucket{le=\"0.0001\"} 1\n"));
        assert!(out.contains("x_seconds_bucket{le=\"0.0005\"} 3\n"));
        assert!(out.contains("x_seconds_bucket{le=\"1\"} 3\n"));
        assert!(out.contains("x_seconds_bucket{le=\"+Inf\"} 4\n"));
        assert!(out.contains("x_seconds_sum 2.000650\n"));
        assert!(out.ends_with("x_seconds_count 4\n"));
    }
}
