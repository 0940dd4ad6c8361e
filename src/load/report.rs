//! The final report of a run, built once from the merged [`Stats`]: as text for people
//! ([`Report::human`]) and as JSON for scripts ([`Report::json`]), with the same figures.
//!
//! Durations are reported in milliseconds with microsecond resolution; quantiles come from the
//! log-linear histograms (within 0.05 %), minimum and maximum are exact. Lateness compares this
//! machine's wall clock with the server's timestamp; the seed's timestamps are whole
//! milliseconds (truncated), so they add 0 to 1 ms (0.5 ms on average) to every figure.
//!
//! **Invariant:** no IO; formatting only.

use super::args::Config;
use super::stats::{Histogram, Stats};
use serde_json::{json, Map, Value};

/// What a run measured, and what it ran with.
#[derive(Clone, Debug)]
pub struct Report {
    pub url: String,
    pub connections: usize,
    pub threads: usize,
    pub source_addrs: usize,
    pub last_event_id: Option<String>,
    /// Wall time of the run, in seconds.
    pub elapsed_s: f64,
    pub stats: Stats,
    /// This process's CPU time over the run (user plus system), in seconds.
    pub cpu_s: f64,
    /// The wall time the CPU time was spent in, set-up and teardown included, in seconds.
    pub cpu_wall_s: f64,
    /// This process's peak resident memory, in bytes.
    pub max_rss_bytes: u64,
}

impl Report {
    /// Assembles the report.
    pub fn new(cfg: &Config, stats: Stats, elapsed_s: f64, cpu_s: f64, max_rss_bytes: u64) -> Self {
        Report {
            url: cfg.target.url.clone(),
            connections: cfg.connections,
            threads: cfg.threads,
            source_addrs: cfg.source_addrs.len(),
            last_event_id: cfg.conn.last_event_id.clone(),
            elapsed_s,
            stats,
            cpu_s,
            cpu_wall_s: elapsed_s,
            max_rss_bytes,
        }
    }

    fn per_s(&self, n: u64) -> f64 {
        if self.elapsed_s > 0.0 {
            n as f64 / self.elapsed_s
        } else {
            0.0
        }
    }

    /// Frames per second from the end of `--warmup` to the end of the run (the whole run when
    /// there is no warm-up).
    fn steady_frames_per_s(&self) -> f64 {
        let window = self.elapsed_s - self.stats.warmup_us as f64 / 1e6;
        if window > 0.0 {
            self.stats.measured_frames as f64 / window
        } else {
            0.0
        }
    }

    /// CPU time as a percentage of one core over the run.
    pub fn cpu_percent(&self) -> f64 {
        if self.cpu_wall_s > 0.0 {
            100.0 * self.cpu_s / self.cpu_wall_s
        } else {
            0.0
        }
    }

    /// The report as a JSON object (the `--json` output).
    pub fn json(&self) -> Value {
        let s = &self.stats;
        let reasons = |m: &std::collections::BTreeMap<_, u64>| {
            let mut o = Map::new();
            for (r, n) in m {
                let r: &super::stats::Reason = r;
                o.insert(r.name(), json!(n));
            }
            Value::Object(o)
        };
        json!({
            "url": self.url,
            "connections": self.connections,
            "threads": self.threads,
            "source_addrs": self.source_addrs,
            "last_event_id": self.last_event_id,
            "elapsed_s": round3(self.elapsed_s),
            "warmup_s": round3(s.warmup_us as f64 / 1e6),
            "streams": {
                "attempted": s.attempted,
                "established": s.established,
                "failed": s.failed_total(),
                "dropped": s.dropped_total(),
                "open_at_end": s.open_at_end,
                "pending_at_end": s.pending_at_end,
                "last_established_ms": ms(s.last_established_us),
            },
            "failed_by_reason": reasons(&s.failed),
            "dropped_by_reason": reasons(&s.dropped),
            "connect_ms": hist_json(&s.connect_us),
            "headers_ms": hist_json(&s.headers_us),
            "frames": s.frames,
            "frames_per_s": round3(self.per_s(s.frames)),
            "steady_frames": s.measured_frames,
            "steady_frames_per_s": round3(self.steady_frames_per_s()),
            "bytes": s.body_bytes,
            "bytes_per_s": round3(self.per_s(s.body_bytes)),
            "retry_fields": s.retry_fields,
            "comments": s.comments,
            "frame_interval_ms": hist_json(&s.interval_us),
            "lateness_ms": {
                "count": s.lateness_us.count(),
                "early": s.early_frames,
                "p50": ms(s.lateness_us.quantile(0.5)),
                "p99": ms(s.lateness_us.quantile(0.99)),
                "p999": ms(s.lateness_us.quantile(0.999)),
                "max": ms(s.lateness_us.max()),
                "mean": round3(s.lateness_us.mean() / 1000.0),
            },
            "ids": {
                "first_min": s.ids.first_min,
                "first_max": s.ids.first_max,
                "gaps": s.ids.gaps,
                "missing": s.ids.missing,
                "duplicates": s.ids.duplicates,
                "without_id": s.ids.without_id,
                "non_numeric": s.ids.non_numeric,
            },
            "cpu": {
                "seconds": round3(self.cpu_s),
                "percent_of_one_core": round3(self.cpu_percent()),
                "max_rss_bytes": self.max_rss_bytes,
            },
        })
    }

    /// The report as text (the default output).
    pub fn human(&self) -> String {
        let s = &self.stats;
        let mut out = String::new();
        let mut line = |l: String| {
            out.push_str(&l);
            out.push('\n');
        };
        line(format!(
            "sse-load: {} streams to {} for {:.1} s ({} loop{}{})",
            self.connections,
            self.url,
            self.elapsed_s,
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            if self.source_addrs > 0 {
                format!(", {} source addresses", self.source_addrs)
            } else {
                String::new()
            }
        ));
        line(format!(
            "streams   established {} of {}, failed {}, dropped {}, open at end {}, still opening at end {}; last opened at {:.1} s",
            s.established,
            self.connections,
            s.failed_total(),
            s.dropped_total(),
            s.open_at_end,
            s.pending_at_end,
            s.last_established_us as f64 / 1e6
        ));
        if !s.failed.is_empty() {
            line(format!("  failed:  {}", reason_list(&s.failed)));
        }
        if !s.dropped.is_empty() {
            line(format!("  dropped: {}", reason_list(&s.dropped)));
        }
        line(format!("connect   {}", hist_text(&s.connect_us, false)));
        line(format!(
            "headers   {}  (handshake to response head)",
            hist_text(&s.headers_us, false)
        ));
        line(format!(
            "frames    {} ({:.0}/s), {} body bytes ({:.2} MB/s), {} retry fields, {} comments",
            s.frames,
            self.per_s(s.frames),
            s.body_bytes,
            self.per_s(s.body_bytes) / 1e6,
            s.retry_fields,
            s.comments
        ));
        if s.warmup_us > 0 {
            line(format!(
                "(interval and lateness from {:.1} s on: --warmup; {} frames then, {:.0}/s)",
                s.warmup_us as f64 / 1e6,
                s.measured_frames,
                self.steady_frames_per_s()
            ));
        }
        line(format!("interval  {}", hist_text(&s.interval_us, false)));
        if s.lateness_us.count() > 0 {
            line(format!(
                "lateness  {}  ({} frames with a timestamp, {} early)",
                hist_text(&s.lateness_us, true),
                s.lateness_us.count(),
                s.early_frames
            ));
        } else {
            line("lateness  n/a (no frame carried a \"content\" timestamp)".into());
        }
        let first = match (s.ids.first_min, s.ids.first_max) {
            (Some(a), Some(b)) if a == b => a.to_string(),
            (Some(a), Some(b)) => format!("{a}..{b}"),
            _ => "none".into(),
        };
        line(format!(
            "ids       first seen {}, gaps {} ({} missing), duplicates {}, without id {}, non-numeric {}",
            first, s.ids.gaps, s.ids.missing, s.ids.duplicates, s.ids.without_id, s.ids.non_numeric
        ));
        line(format!(
            "sse-load  cpu {:.2} s ({:.1} % of one core), max RSS {:.1} MB",
            self.cpu_s,
            self.cpu_percent(),
            self.max_rss_bytes as f64 / 1e6
        ));
        out
    }
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Microseconds as milliseconds (three decimals).
fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn hist_json(h: &Histogram) -> Value {
    json!({
        "count": h.count(),
        "min": ms(h.min()),
        "p50": ms(h.quantile(0.5)),
        "p99": ms(h.quantile(0.99)),
        "max": ms(h.max()),
        "mean": round3(h.mean() / 1000.0),
    })
}

fn hist_text(h: &Histogram, p999: bool) -> String {
    if h.count() == 0 {
        return "n/a".into();
    }
    let extra = if p999 {
        format!("  p99.9 {:.3} ms", ms(h.quantile(0.999)))
    } else {
        String::new()
    };
    format!(
        "p50 {:.3} ms  p99 {:.3} ms{}  max {:.3} ms  (n={})",
        ms(h.quantile(0.5)),
        ms(h.quantile(0.99)),
        extra,
        ms(h.max()),
        h.count()
    )
}

fn reason_list(m: &std::collections::BTreeMap<super::stats::Reason, u64>) -> String {
    m.iter()
        .map(|(r, n)| format!("{} {}", r.name(), n))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::stats::Reason;

    #[test]
    fn both_forms_carry_the_figures() {
        let cfg = Config::default();
        let mut stats = Stats {
            established: 2,
            frames: 10,
            measured_frames: 6,
            warmup_us: 500_000,
            ..Stats::default()
        };
        stats.end(Reason::ConnectRefused, false);
        stats.end(Reason::BadStatus(503), false);
        stats.end(Reason::Closed, true);
        for v in [100_000, 100_000, 101_000] {
            stats.interval_us.record(v);
        }
        stats.ids.first_min = Some(42);
        stats.ids.first_max = Some(42);
        let r = Report::new(&cfg, stats, 2.0, 0.5, 10_000_000);
        let j = r.json();
        assert_eq!(j["streams"]["established"], 2);
        assert_eq!(j["streams"]["failed"], 2);
        assert_eq!(j["failed_by_reason"]["bad_status_503"], 1);
        assert_eq!(j["dropped_by_reason"]["closed"], 1);
        let p50 = j["frame_interval_ms"]["p50"].as_f64().unwrap();
        assert!((p50 - 100.0).abs() < 0.4, "{p50}");
        assert_eq!(j["frames_per_s"], 5.0);
        assert_eq!(j["steady_frames"], 6);
        assert_eq!(
            j["steady_frames_per_s"], 4.0,
            "6 frames in the 1.5 s after the warm-up"
        );
        assert_eq!(j["ids"]["first_min"], 42);
        assert_eq!(j["cpu"]["percent_of_one_core"], 25.0);
        assert!(j["lateness_ms"]["p999"].is_number());
        let h = r.human();
        for want in [
            "established 2 of 100",
            "connect_refused 1",
            "bad_status_503 1",
            "dropped: closed 1",
            "first seen 42",
            "p50 100.",
            "lateness  n/a",
        ] {
            assert!(h.contains(want), "{want:?} missing from\n{h}");
        }
    }
}
