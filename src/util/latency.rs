//! The one latency histogram shape of `/metrics`: fixed bucket bounds in microseconds, the
//! bucket a sample falls in, and its Prometheus text. Used for the hub's publish-to-write
//! latency, a publish's answer latency and the data dir's stages (sync among them), so all
//! read alike on a dashboard. The bounds are fine below a millisecond, where a disk's sync
//! and a loop's turn are, so a p99 read from them is known to within 50 µs there.

use std::fmt::Write as _;

/// Upper bounds of the buckets, in microseconds (a last, unbounded bucket follows).
pub const BUCKETS_US: [u64; 20] = [
    25, 50, 100, 150, 200, 250, 300, 400, 500, 750, 1_000, 1_500, 2_500, 5_000, 10_000, 25_000,
    50_000, 100_000, 250_000, 1_000_000,
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
    render_labelled(out, name, "", help, h);
}

/// [`render`] with a label (`store="data-dir"`: name and quoted value, no braces) on every
/// sample line; empty for none.
pub fn render_labelled(out: &mut String, name: &str, label: &str, help: &str, h: Histogram<'_>) {
    let Histogram { counts, sum_us } = h;
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} histogram\n");
    let (open, sep, close) = if label.is_empty() {
        ("", "", "")
    } else {
        ("{", ",", "}")
    };
    let mut cumulative = 0;
    for (b, n) in BUCKETS_US.iter().zip(counts) {
        cumulative += n;
        let _ = writeln!(
            out,
            "{name}_bucket{{{label}{sep}le=\"{}\"}} {cumulative}",
            *b as f64 / 1e6
        );
    }
    cumulative += counts[BUCKETS_US.len()];
    let _ = writeln!(out, "{name}_bucket{{{label}{sep}le=\"+Inf\"}} {cumulative}");
    let _ = writeln!(
        out,
        "{name}_sum{open}{label}{close} {:.6}",
        sum_us as f64 / 1e6
    );
    let _ = writeln!(out, "{name}_count{open}{label}{close} {cumulative}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_fall_in_the_first_bucket_that_holds_them_and_render_cumulatively() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(25), 0);
        assert_eq!(bucket(26), 1);
        assert_eq!(bucket(100), 2);
        assert_eq!(bucket(101), 3);
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

    #[test]
    fn a_label_goes_on_every_sample_line_before_le() {
        let mut counts = [0; SLOTS];
        counts[bucket(180)] += 2;
        let mut out = String::new();
        render_labelled(
            &mut out,
            "y_seconds",
            "store=\"data-dir\"",
            "Help.",
            Histogram {
                counts: &counts,
                sum_us: 360,
            },
        );
        assert!(out.contains("y_seconds_bucket{store=\"data-dir\",le=\"0.00015\"} 0\n"));
        assert!(out.contains("y_seconds_bucket{store=\"data-dir\",le=\"0.0002\"} 2\n"));
        assert!(out.contains("y_seconds_bucket{store=\"data-dir\",le=\"+Inf\"} 2\n"));
        assert!(out.contains("y_seconds_sum{store=\"data-dir\"} 0.000360\n"));
        assert!(out.ends_with("y_seconds_count{store=\"data-dir\"} 2\n"));
    }
}
