//! The final report of a run, built once from the merged [`Stats`]: as text for people
//! ([`Report::human`]) and as JSON for scripts ([`Report::json`]), with the same figures.
//!
//! Durations are reported in milliseconds with microsecond resolution; quantiles come from the
//! log-linear histograms (within 0.05 %), minimum and maximum are exact. Lateness compares this
//! machine's wall clock with the server's timestamp; the seed's timestamps are whole
//! milliseconds (truncated), so they add 0 to 1 ms (0.5 ms on average) to every figure.
//!
//! **Invariant:** no IO; formatting only.

use super::args::{LoadConfig, Thresholds};
use super::histogram::Histogram;
use super::publish::PublishStats;
use super::stats::Stats;
use serde_json::{json, Map, Value};

/// One point of the per-second series (cumulative counts, as the loops published them).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Seconds since the run started.
    pub t_s: f64,
    pub open: u64,
    pub opening: u64,
    pub failed: u64,
    pub dropped: u64,
    pub frames: u64,
    pub bytes: u64,
    /// Hub mode: published events received, publishes sent and answered 2xx, deliveries
    /// expected so far.
    pub delivered: u64,
    pub published: u64,
    pub published_ok: u64,
    pub expected: u64,
    /// Whole intervals completed (a stream's frames after its first), their summed length in
    /// microseconds, and the open streams that have completed one.
    pub intervals: u64,
    pub interval_us: u64,
    pub ticking: u64,
}

impl Sample {
    /// Frames and body bytes per second between two samples, over whole intervals: the
    /// streams ticking times the rate of the intervals that ended in between (intervals over
    /// their summed length). Counting frames per window instead reads 0 or a burst when the
    /// streams' ticks line up with the window's edges, and counts the time before the first
    /// frame. Bytes follow the frames' rate at the bytes per frame seen in between (or per
    /// second when no frame came: heartbeats alone).
    pub fn rates(from: &Sample, to: &Sample) -> (f64, f64) {
        let intervals = to.intervals.saturating_sub(from.intervals);
        let us = to.interval_us.saturating_sub(from.interval_us);
        let frames_per_s = if intervals > 0 && us > 0 {
            to.ticking as f64 * intervals as f64 * 1e6 / us as f64
        } else {
            0.0
        };
        let frames = to.frames.saturating_sub(from.frames);
        let bytes = to.bytes.saturating_sub(from.bytes);
        let bytes_per_s = if frames > 0 {
            frames_per_s * bytes as f64 / frames as f64
        } else {
            bytes as f64 / (to.t_s - from.t_s).max(1e-3)
        };
        (frames_per_s, bytes_per_s)
    }
}

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
    /// What the run was asked for, for the HTML report's parameters.
    pub rate: f64,
    pub warmup_s: f64,
    pub topics: Vec<String>,
    /// Hub mode: the publisher's settings and counts.
    pub publish_url: Option<String>,
    pub publish_rate: f64,
    pub publish_format: Option<&'static str>,
    pub publish: Option<PublishStats>,
    /// The per-second series.
    pub series: Vec<Sample>,
    pub thresholds: Thresholds,
    /// `--h2`: streams per connection (`None`: HTTP/1.1, one stream per connection).
    pub h2_streams: Option<usize>,
}

/// What the run itself measured, besides its streams' figures.
#[derive(Clone, Copy, Debug)]
pub struct Measured {
    /// Seconds the measurement lasted.
    pub elapsed_s: f64,
    /// CPU seconds `sse-load` spent in it.
    pub cpu_s: f64,
    /// Its peak resident set size.
    pub max_rss_bytes: u64,
}

impl Report {
    /// Assembles the report.
    pub fn new(cfg: &LoadConfig, stats: Stats, run: Measured) -> Self {
        let Measured {
            elapsed_s,
            cpu_s,
            max_rss_bytes,
        } = run;
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
            rate: cfg.rate,
            warmup_s: cfg.warmup.as_secs_f64(),
            topics: cfg.topics.clone(),
            publish_url: cfg.publish.as_ref().map(|p| p.target.url.clone()),
            publish_rate: cfg.publish.as_ref().map_or(0.0, |p| p.rate),
            publish_format: cfg.publish.as_ref().map(|p| p.format.name()),
            publish: None,
            series: Vec::new(),
            thresholds: cfg.thresholds.clone(),
            h2_streams: cfg.h2,
        }
    }

    /// `--h2`: the connections' figures (`null` over HTTP/1.1).
    fn h2_json(&self) -> Value {
        let Some(per) = self.h2_streams else {
            return Value::Null;
        };
        let h = &self.stats.h2;
        json!({
            "streams_per_connection": per,
            "connections": h.connections,
            "goaways": h.goaways,
            "resets": h.resets,
            "refused": h.refused,
            "reopened": h.reopened,
            "pings": h.pings,
            "window_updates": h.window_updates,
        })
    }

    /// Hub mode: deliveries expected but not received (each stream's copy of each event
    /// counted once), and received beyond those expected.
    pub fn missing_and_extra(&self) -> (u64, u64) {
        let expected = self.publish.as_ref().map_or(0, |p| p.expected);
        let d = &self.stats.deliveries;
        let unique = d.received.saturating_sub(d.duplicates);
        (
            expected.saturating_sub(unique),
            unique.saturating_sub(expected),
        )
    }

    /// The checks that failed (empty when the run passed), each as one line.
    pub fn failed_checks(&self) -> Vec<String> {
        let t = &self.thresholds;
        let s = &self.stats;
        let mut out = Vec::new();
        let failed = s.failed_total() + s.pending_at_end;
        if failed > t.max_failed {
            out.push(format!(
                "{failed} streams failed to open (including {} still opening at the end), more than --max-failed {}",
                s.pending_at_end, t.max_failed
            ));
        }
        if s.dropped_total() > t.max_dropped {
            out.push(format!(
                "{} streams dropped, more than --max-dropped {}",
                s.dropped_total(),
                t.max_dropped
            ));
        }
        if s.established < t.min_established {
            out.push(format!(
                "{} streams established, fewer than --min-established {}",
                s.established, t.min_established
            ));
        }
        let mut p99 = |flag: &str, what: &str, h: &Histogram, limit: Option<f64>| {
            if let Some(limit) = limit {
                let v = ms(h.quantile(0.99));
                if h.count() == 0 {
                    out.push(format!("{what} p99: nothing measured ({flag} {limit})"));
                } else if v > limit {
                    out.push(format!("{what} p99 {v:.3} ms, above {flag} {limit}"));
                }
            }
        };
        p99("--max-p99-ms", "lateness", &s.lateness_us, t.max_p99_ms);
        p99(
            "--max-connect-p99-ms",
            "connect",
            &s.connect_us,
            t.max_connect_p99_ms,
        );
        p99(
            "--max-deliver-p99-ms",
            "publish-to-deliver",
            &s.deliveries.latency_us,
            t.max_deliver_p99_ms,
        );
        if let Some(p) = &self.publish {
            p99(
                "--max-publish-p99-ms",
                "publish answer",
                &p.answer_us,
                t.max_publish_p99_ms,
            );
            if p.errors() > t.max_publish_errors {
                out.push(format!(
                    "{} publishes failed ({} lost, statuses {}), more than --max-publish-errors {}",
                    p.errors(),
                    p.lost,
                    status_list(&p.by_status),
                    t.max_publish_errors
                ));
            }
            if p.sent == 0 {
                out.push("nothing was published (did every stream open before the end?)".into());
            }
            let (missing, _) = self.missing_and_extra();
            if missing > t.max_missing {
                out.push(format!(
                    "{missing} deliveries missing of {} expected, more than --max-missing {}",
                    p.expected, t.max_missing
                ));
            }
        }
        out
    }

    /// The hub figures as JSON, `null` outside hub mode.
    fn hub_json(&self) -> Value {
        let Some(p) = &self.publish else {
            return Value::Null;
        };
        let d = &self.stats.deliveries;
        let (missing, extra) = self.missing_and_extra();
        let statuses: Map<String, Value> = p
            .by_status
            .iter()
            .map(|(s, n)| (s.to_string(), json!(n)))
            .collect();
        json!({
            "publish_url": self.publish_url,
            "publish_format": self.publish_format,
            "publish_rate": self.publish_rate,
            "topics": self.topics,
            "published": {
                "sent": p.sent,
                "ok": p.ok(),
                "by_status": statuses,
                "lost": p.lost,
                "errors": p.errors(),
                "connections": p.connections,
                "behind": p.behind,
                "started_ms": p.started_us.map(ms),
                "stopped_ms": p.stopped_us.map(ms),
                "answer_ms": hist_json(&p.answer_us),
            },
            "deliveries": {
                "expected": p.expected,
                "received": d.received,
                "missing": missing,
                "extra": extra,
                "gaps": d.gaps,
                "missing_in_gaps": d.missing_in_gaps,
                "duplicates": d.duplicates,
                "resets": d.resets,
                "foreign": d.foreign,
                "early": d.early,
            },
            "deliver_ms": {
                "count": d.latency_us.count(),
                "min": ms(d.latency_us.min()),
                "p50": ms(d.latency_us.quantile(0.5)),
                "p99": ms(d.latency_us.quantile(0.99)),
                "p999": ms(d.latency_us.quantile(0.999)),
                "max": ms(d.latency_us.max()),
                "mean": round3(d.latency_us.mean() / 1000.0),
            },
        })
    }

    /// Frames per second: the sum of each stream's rate over whole intervals, from its first
    /// frame to its last. Frames over the run's length would count the time before the first
    /// frame (one interval, 2 s for the seed) and read 80/s where streams take 100.
    pub fn frames_per_s(&self) -> f64 {
        self.stats.rate_sum
    }

    /// Body bytes per second, at the frames' rate (bytes per frame times frames per second);
    /// over the run's length when no frame came.
    pub fn bytes_per_s(&self) -> f64 {
        let s = &self.stats;
        if s.frames > 0 {
            self.frames_per_s() * s.body_bytes as f64 / s.frames as f64
        } else {
            self.per_s(s.body_bytes)
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
            "protocol": if self.h2_streams.is_some() { "h2" } else { "http/1.1" },
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
            "frames_per_s": round3(self.frames_per_s()),
            "steady_frames": s.measured_frames,
            "steady_frames_per_s": round3(self.steady_frames_per_s()),
            "bytes": s.body_bytes,
            "bytes_per_s": round3(self.bytes_per_s()),
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
            "hub": self.hub_json(),
            "h2": self.h2_json(),
            "checks": {
                "passed": self.failed_checks().is_empty(),
                "failed": self.failed_checks(),
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
        if let Some(per) = self.h2_streams {
            let h = &s.h2;
            line(format!(
                "h2        {} connections ({} streams each), {} GOAWAY, {} resets, {} refused, {} reopened, {} pings, {} window updates",
                h.connections, per, h.goaways, h.resets, h.refused, h.reopened, h.pings, h.window_updates
            ));
        }
        if !s.failed.is_empty() {
            line(format!("  failed:  {}", reason_list(&s.failed)));
        }
        if !s.dropped.is_empty() {
            line(format!("  dropped: {}", reason_list(&s.dropped)));
        }
        line(format!("connect   {}", hist_text(&s.connect_us)));
        line(format!(
            "headers   {}  (handshake to response head)",
            hist_text(&s.headers_us)
        ));
        line(format!(
            "frames    {} ({:.0}/s over whole intervals), {} body bytes ({:.2} MB/s), {} retry fields, {} comments",
            s.frames,
            self.frames_per_s(),
            s.body_bytes,
            self.bytes_per_s() / 1e6,
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
        line(format!("interval  {}", hist_text(&s.interval_us)));
        let hub = self.publish.is_some();
        if s.lateness_us.count() > 0 {
            line(format!(
                "lateness  {}  ({} frames with a timestamp, {} early)",
                hist_text_p999(&s.lateness_us),
                s.lateness_us.count(),
                s.early_frames
            ));
        } else if !hub {
            // A hub run's timing is the "deliver" line below.
            line("lateness  n/a (no frame carried a \"content\" timestamp)".into());
        }
        let first = match (s.ids.first_min, s.ids.first_max) {
            (Some(a), Some(b)) if a == b => a.to_string(),
            (Some(a), Some(b)) => format!("{a}..{b}"),
            _ => "none".into(),
        };
        if hub && s.ids.first_min.is_none() {
            // Not an error: a hub's ids are its own strings (`<epoch>-<n>`, Redis ids), so
            // they are not checked here; the payloads' seq numbers are.
            line(format!(
                "ids       {} events with the hub's own ids (opaque, not checked: gaps and duplicates are counted by each payload's seq, on the deliveries line)",
                s.ids.non_numeric
            ));
        } else {
            line(format!(
                "ids       first seen {}, gaps {} ({} missing), duplicates {}, without id {}, non-numeric {}",
                first, s.ids.gaps, s.ids.missing, s.ids.duplicates, s.ids.without_id, s.ids.non_numeric
            ));
        }
        if let Some(p) = &self.publish {
            let d = &s.deliveries;
            let (missing, extra) = self.missing_and_extra();
            line(format!(
                "publish   {} sent to {} ({}, {}/s), {} ok, statuses {}, {} lost, {} connection{}, fell behind {} time{}",
                p.sent,
                self.publish_url.as_deref().unwrap_or(""),
                self.publish_format.unwrap_or(""),
                self.publish_rate,
                p.ok(),
                if p.by_status.is_empty() { "none".into() } else { status_list(&p.by_status) },
                p.lost,
                p.connections,
                if p.connections == 1 { "" } else { "s" },
                p.behind,
                if p.behind == 1 { "" } else { "s" },
            ));
            line(format!("  answer  {}", hist_text(&p.answer_us)));
            line(format!(
                "deliver   {}  (publish to receive)",
                hist_text_p999(&d.latency_us)
            ));
            line(format!(
                "deliveries expected {}, received {}, missing {}, extra {}; gaps {} ({} seq missing), duplicates {}, resets {}, other runs' {}",
                p.expected, d.received, missing, extra, d.gaps, d.missing_in_gaps, d.duplicates, d.resets, d.foreign
            ));
        }
        line(format!(
            "sse-load  cpu {:.2} s ({:.1} % of one core), max RSS {:.1} MB",
            self.cpu_s,
            self.cpu_percent(),
            self.max_rss_bytes as f64 / 1e6
        ));
        let failed = self.failed_checks();
        if failed.is_empty() {
            line("checks    passed".into());
        } else {
            for f in failed {
                line(format!("FAILED    {f}"));
            }
        }
        out
    }

    /// The per-second series as CSV: one row a second; frame and byte rates over the whole
    /// intervals that ended in that second (and in the last five), others over that second.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "t_s,open,opening,failed,dropped,frames,frames_per_s,frames_per_s_5s,bytes_per_s,published_per_s,delivered_per_s,expected\n",
        );
        let mut prev = Sample::default();
        let zero = Sample::default();
        for (i, x) in self.series.iter().enumerate() {
            let dt = (x.t_s - prev.t_s).max(1e-3);
            let back = if i >= 5 { &self.series[i - 5] } else { &zero };
            let (f1, b1) = Sample::rates(&prev, x);
            let (f5, _) = Sample::rates(back, x);
            out.push_str(&format!(
                "{:.3},{},{},{},{},{},{:.1},{:.1},{:.1},{:.1},{:.1},{}\n",
                x.t_s,
                x.open,
                x.opening,
                x.failed,
                x.dropped,
                x.frames,
                f1,
                f5,
                b1,
                x.published.saturating_sub(prev.published) as f64 / dt,
                x.delivered.saturating_sub(prev.delivered) as f64 / dt,
                x.expected,
            ));
            prev = x.clone();
        }
        out
    }
}

fn status_list(m: &std::collections::BTreeMap<u16, u64>) -> String {
    m.iter()
        .map(|(s, n)| format!("{s}×{n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Microseconds as milliseconds (three decimals).
pub(crate) fn ms(us: u64) -> f64 {
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

/// A histogram's p50, p99 and max, in milliseconds.
pub(crate) fn hist_text(h: &Histogram) -> String {
    hist_line(h, String::new())
}

/// As [`hist_text`], with p99.9 too.
pub(crate) fn hist_text_p999(h: &Histogram) -> String {
    hist_line(h, format!("  p99.9 {:.3} ms", ms(h.quantile(0.999))))
}

fn hist_line(h: &Histogram, extra: String) -> String {
    if h.count() == 0 {
        return "n/a".into();
    }
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
        let cfg = LoadConfig::default();
        let mut stats = Stats {
            established: 2,
            frames: 10,
            measured_frames: 6,
            warmup_us: 500_000,
            rate_sum: 6.5,
            ..Stats::default()
        };
        stats.end_failed(Reason::ConnectRefused);
        stats.end_failed(Reason::BadStatus(503));
        stats.end_dropped(Reason::Closed);
        for v in [100_000, 100_000, 101_000] {
            stats.interval_us.record(v);
        }
        stats.ids.first_min = Some(42);
        stats.ids.first_max = Some(42);
        let r = Report::new(
            &cfg,
            stats,
            Measured {
                elapsed_s: 2.0,
                cpu_s: 0.5,
                max_rss_bytes: 10_000_000,
            },
        );
        let j = r.json();
        assert_eq!(j["streams"]["established"], 2);
        assert_eq!(j["streams"]["failed"], 2);
        assert_eq!(j["failed_by_reason"]["bad_status_503"], 1);
        assert_eq!(j["dropped_by_reason"]["closed"], 1);
        let p50 = j["frame_interval_ms"]["p50"].as_f64().unwrap();
        assert!((p50 - 100.0).abs() < 0.4, "{p50}");
        // The streams' rates over whole intervals, not 10 frames over the run's 2 s.
        assert_eq!(j["frames_per_s"], 6.5);
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
            "FAILED    2 streams failed",
            "FAILED    1 streams dropped",
        ] {
            assert!(h.contains(want), "{want:?} missing from\n{h}");
        }
        assert_eq!(j["checks"]["passed"], false);
        assert!(j["hub"].is_null());
    }

    #[test]
    fn checks_and_hub_figures() {
        let mut cfg = LoadConfig::default();
        cfg.thresholds.max_p99_ms = Some(2.0);
        cfg.thresholds.max_missing = 1;
        let mut stats = Stats {
            established: 100,
            ..Stats::default()
        };
        stats.lateness_us.record(1_500);
        let d = &mut stats.deliveries;
        d.received = 298;
        d.duplicates = 1;
        d.resets = 2;
        d.latency_us.record(800);
        let mut r = Report::new(
            &cfg,
            stats.clone(),
            Measured {
                elapsed_s: 2.0,
                cpu_s: 0.5,
                max_rss_bytes: 1,
            },
        );
        let mut p = PublishStats {
            sent: 3,
            expected: 300,
            ..PublishStats::default()
        };
        p.by_status.insert(200, 3);
        p.answer_us.record(400);
        r.publish = Some(p.clone());
        // 297 distinct deliveries of 300 expected: 3 missing, one allowed.
        assert_eq!(r.missing_and_extra(), (3, 0));
        let failed = r.failed_checks();
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert!(
            failed[0].contains("3 deliveries missing of 300"),
            "{failed:?}"
        );
        let j = r.json();
        assert_eq!(j["hub"]["deliveries"]["expected"], 300);
        assert_eq!(j["hub"]["deliveries"]["resets"], 2);
        assert_eq!(j["hub"]["published"]["by_status"]["200"], 3);
        assert_eq!(j["hub"]["deliver_ms"]["p50"], 0.8);
        assert_eq!(j["hub"]["published"]["answer_ms"]["max"], 0.4);
        let h = r.human();
        assert!(
            h.contains("deliveries expected 300, received 298, missing 3"),
            "{h}"
        );
        assert!(h.contains("statuses 200×3"), "{h}");
        // Thresholds on latency, and publish errors.
        cfg.thresholds.max_p99_ms = Some(1.0);
        cfg.thresholds.max_deliver_p99_ms = Some(0.5);
        cfg.thresholds.max_missing = 10;
        let mut r = Report::new(
            &cfg,
            stats,
            Measured {
                elapsed_s: 2.0,
                cpu_s: 0.5,
                max_rss_bytes: 1,
            },
        );
        p.sent = 4;
        p.lost = 1;
        r.publish = Some(p);
        let failed = r.failed_checks().join("\n");
        assert!(failed.contains("lateness p99 1.5"), "{failed}");
        assert!(failed.contains("publish-to-deliver p99 0.8"), "{failed}");
        assert!(failed.contains("1 publishes failed (1 lost"), "{failed}");
    }

    #[test]
    fn csv_rows_per_second() {
        // 500 streams ticking together every 2 s: their first frames at 2 s, the second at
        // 4 s. Frames counted per second read 500, 0, 500; over whole intervals it is 250/s
        // from the first whole interval on, and nothing is claimed before it.
        let mut r = Report::new(
            &LoadConfig::default(),
            Stats::default(),
            Measured {
                elapsed_s: 3.0,
                cpu_s: 0.0,
                max_rss_bytes: 0,
            },
        );
        let whole = |n: u64| (n * 500, n * 500 * 2_000_000, if n > 0 { 500 } else { 0 });
        for (i, frames, n) in [
            (1, 0, 0),
            (2, 500, 0),
            (3, 500, 0),
            (4, 1000, 1),
            (5, 1000, 1),
        ] {
            let (intervals, interval_us, ticking) = whole(n);
            r.series.push(Sample {
                t_s: f64::from(i),
                open: 500,
                frames,
                bytes: frames * 100,
                intervals,
                interval_us,
                ticking,
                ..Sample::default()
            });
        }
        let csv = r.csv();
        let rows: Vec<&str> = csv.lines().collect();
        assert_eq!(rows.len(), 6);
        assert!(rows[0].starts_with("t_s,open,"));
        assert_eq!(rows[2], "2.000,500,0,0,0,500,0.0,0.0,0.0,0.0,0.0,0");
        assert_eq!(
            rows[4],
            "4.000,500,0,0,0,1000,250.0,250.0,25000.0,0.0,0.0,0"
        );
        // No interval ended in the last second: nothing to say for that second alone, the
        // five-second figure holds.
        assert_eq!(rows[5], "5.000,500,0,0,0,1000,0.0,250.0,0.0,0.0,0.0,0");
    }

    #[test]
    fn rates_over_whole_intervals_do_not_swing_with_the_window() {
        // 100 streams at 1/s whose ticks fall right on the sampling edges: 200 frames in one
        // window, 0 in the next; the intervals say 100/s in both.
        let at = |t_s: f64, frames: u64| Sample {
            t_s,
            frames,
            intervals: frames.saturating_sub(100),
            interval_us: frames.saturating_sub(100) * 1_000_000,
            ticking: 100,
            ..Sample::default()
        };
        let (a, b, c) = (at(5.0, 400), at(6.0, 600), at(7.0, 600));
        assert_eq!(Sample::rates(&a, &b).0, 100.0);
        assert_eq!(Sample::rates(&a, &c).0, 100.0);
    }
}
