//! Counters for `/metrics`, one cache-line-aligned shard per event loop, summed when rendered.
//!
//! Each shard has exactly one writer (its loop), so a counter update is a relaxed load and store,
//! not a locked read-modify-write; readers on other threads see a recent value. The stream
//! gauge ([`Admission`]) is rendered from here but lives in its own module.
//!
//! **Invariant:** only the owning loop writes to a shard.

use crate::core::admission::Admission;
use crate::util::latency;
use crate::util::sys::ProcessStats;
use crate::wire::http::Status;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A monotonically increasing counter with a single writer.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the shard's owning loop calls this.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    /// Adds one.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Why a connection was closed by the server on a timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    /// The request head did not complete in time.
    Head,
    /// A kept-alive connection sent nothing in time.
    Idle,
    /// A stream's client read nothing for the stall timeout.
    Stall,
}

/// One event loop's counters.
#[derive(Default, Debug)]
#[repr(align(128))]
pub struct Shard {
    pub connections_total: Counter,
    pub connections_closed: Counter,
    /// Connections accepted on the TLS port, and those closed (a subset of the above).
    pub tls_connections_total: Counter,
    pub tls_connections_closed: Counter,
    /// TLS handshakes completed, and sessions that failed (not TLS, a protocol error, no
    /// common version, cipher or ALPN protocol).
    pub tls_handshakes: Counter,
    pub tls_errors: Counter,
    /// Connections that became HTTP/2 (prior knowledge or ALPN `h2`), and those closed (a
    /// subset of the connections above); the same over TLS only.
    pub h2_connections_total: Counter,
    pub h2_connections_closed: Counter,
    pub h2_tls_connections_total: Counter,
    pub h2_tls_connections_closed: Counter,
    /// HTTP/2 streams (requests) opened and ended.
    pub h2_streams_total: Counter,
    pub h2_streams_closed: Counter,
    /// Writes to h2 connections' sockets (each carries the frames of every stream due).
    pub h2_writes: Counter,
    pub streams_total: Counter,
    pub streams_closed: Counter,
    pub frames_sent: Counter,
    pub frames_skipped: Counter,
    pub bytes_sent: Counter,
    pub streams_rejected: Counter,
    pub streams_shed: Counter,
    pub responses: [Counter; Status::ALL.len()],
    pub timeouts: [Counter; 3],
    pub accept_errors: Counter,
    pub accept_fd_exhausted: Counter,
    /// Hub: events stored.
    pub publishes: Counter,
    /// Hub: publishes refused, by [`Rejected`].
    pub publishes_rejected: [Counter; Rejected::ALL.len()],
    /// Hub: events handed to a subscriber's socket.
    pub deliveries: Counter,
    /// Hub: answered events a stream had not received when the server stopped.
    pub undelivered: Counter,
    /// Hub: `reset` events sent, by [`crate::hub::history::ResetReason`].
    pub resets: [Counter; 2],
    /// Hub: topic streams opened and closed.
    pub topic_streams_opened: Counter,
    pub topic_streams_closed: Counter,
    /// Hub: publish-to-write latency, counts per bucket of [`latency::BUCKETS_US`] (the last is
    /// +Inf), and the sum in microseconds.
    pub latency_buckets: [Counter; latency::SLOTS],
    pub latency_sum_us: Counter,
    /// Publish answers: request complete to the answer's last byte written, counts per
    /// bucket of [`latency::BUCKETS_US`], and the sum in microseconds (see
    /// [`crate::core::reply::Timing`]).
    pub publish_answer_buckets: [Counter; latency::SLOTS],
    pub publish_answer_sum_us: Counter,
    /// Hub: the loop's cache of topic-pattern results (src/selector.rs `MatchCache`).
    pub selector_cache_hits: Counter,
    pub selector_cache_misses: Counter,
    pub selector_cache_evictions: Counter,
}

/// Samples of the figures kept for `/metrics/stream` (five minutes at one a second).
pub const SAMPLES_KEPT: usize = 300;

/// Renders more figures into the `/metrics` text.
pub type Renderer = Box<dyn Fn(&mut String) + Send + Sync>;

/// Why a publish was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rejected {
    Unauthorized,
    Invalid,
    TooLarge,
    MediaType,
    Forbidden,
    /// The shared store (Redis) could not store it.
    Unavailable,
    /// Its id is a retained event's (`409`).
    Conflict,
}

impl Rejected {
    pub const ALL: [Rejected; 7] = [
        Rejected::Unauthorized,
        Rejected::Invalid,
        Rejected::TooLarge,
        Rejected::MediaType,
        Rejected::Forbidden,
        Rejected::Unavailable,
        Rejected::Conflict,
    ];

    fn label(self) -> &'static str {
        match self {
            Rejected::Unauthorized => "unauthorized",
            Rejected::Invalid => "invalid",
            Rejected::TooLarge => "too_large",
            Rejected::MediaType => "media_type",
            Rejected::Forbidden => "forbidden",
            Rejected::Unavailable => "unavailable",
            Rejected::Conflict => "conflict",
        }
    }
}

impl Shard {
    /// Counts one response with `status`.
    pub fn response(&self, status: Status) {
        self.responses[status.index()].inc();
    }

    /// Records one delivery's publish-to-write latency.
    #[inline]
    pub fn delivery_latency(&self, us: u64) {
        self.latency_buckets[latency::bucket(us)].inc();
        self.latency_sum_us.add(us);
    }

    /// Records one publish answer's latency (request complete to answer written).
    #[inline]
    pub fn publish_answered(&self, us: u64) {
        self.publish_answer_buckets[latency::bucket(us)].inc();
        self.publish_answer_sum_us.add(us);
    }

    /// Counts one refused publish.
    pub fn rejected(&self, why: Rejected) {
        self.publishes_rejected[why as usize].inc();
    }

    /// Counts one timeout.
    pub fn timeout(&self, t: Timeout) {
        self.timeouts[t as usize].inc();
    }
}

/// All counters of the process.
pub struct Metrics {
    shards: Box<[Shard]>,
    /// Open streams over all loops; what `--max-streams` limits.
    admission: Admission,
    /// The hub's retained events and bytes, when there is a hub.
    history: std::sync::OnceLock<Box<dyn Fn() -> (usize, usize) + Send + Sync>>,
    /// More figures to render (the Redis bridge's).
    extra: std::sync::OnceLock<Renderer>,
    /// Where publishes are stored (`memory`, `data-dir`, `redis`): the label of the publish
    /// answer histogram.
    publish_store: std::sync::OnceLock<&'static str>,
    /// The last samples of the server's figures, for `/metrics/stream` (one a second).
    samples: std::sync::Mutex<std::collections::VecDeque<(u64, Box<[u8]>)>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("loops", &self.shards.len())
            .field("admission", &self.admission)
            .finish()
    }
}

impl Metrics {
    /// Counters for `loops` event loops and a stream limit.
    pub fn new(loops: usize, max_streams: usize) -> Self {
        Metrics {
            shards: (0..loops.max(1)).map(|_| Shard::default()).collect(),
            admission: Admission::new(max_streams),
            history: std::sync::OnceLock::new(),
            extra: std::sync::OnceLock::new(),
            publish_store: std::sync::OnceLock::new(),
            samples: std::sync::Mutex::new(std::collections::VecDeque::new()),
        }
    }

    /// Loop `i`'s shard.
    pub fn shard(&self, i: usize) -> &Shard {
        &self.shards[i % self.shards.len()]
    }

    /// The stream gauge and `--max-streams`.
    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// Streams open now.
    pub fn streams_open(&self) -> usize {
        self.admission.open()
    }

    fn sum(&self, f: impl Fn(&Shard) -> &Counter) -> u64 {
        self.shards.iter().map(|s| f(s).get()).sum()
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self, out: &mut String, process: &ProcessStats) {
        let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}\n"
            );
        };
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
            );
        };
        gauge(
            out,
            "sse_streams_open",
            "Event streams open now.",
            self.streams_open() as u64,
        );
        gauge(
            out,
            "sse_streams_max",
            "The --max-streams limit.",
            self.admission.max() as u64,
        );
        counter(
            out,
            "sse_streams_total",
            "Event streams opened.",
            self.sum(|s| &s.streams_total),
        );
        counter(
            out,
            "sse_frames_sent_total",
            "Event frames written.",
            self.sum(|s| &s.frames_sent),
        );
        counter(
            out,
            "sse_frames_skipped_total",
            "Ticks skipped because the client had not read the previous frame.",
            self.sum(|s| &s.frames_skipped),
        );
        counter(
            out,
            "sse_bytes_sent_total",
            "Bytes written on event streams.",
            self.sum(|s| &s.bytes_sent),
        );
        counter(
            out,
            "sse_streams_rejected_total",
            "Stream requests told to retry later because --max-streams was reached.",
            self.sum(|s| &s.streams_rejected),
        );
        counter(
            out,
            "sse_log_lines_dropped_total",
            "Log lines dropped because stderr was not taking them (the log never blocks a loop).",
            crate::util::log::dropped(),
        );
        counter(
            out,
            "sse_connections_shed_total",
            "Connections answered and closed at once because no file descriptor was left.",
            self.sum(|s| &s.streams_shed),
        );
        let opened = self.sum(|s| &s.connections_total);
        let closed = self.sum(|s| &s.connections_closed);
        gauge(
            out,
            "sse_connections_open",
            "TCP connections open now.",
            opened.saturating_sub(closed),
        );
        counter(
            out,
            "sse_connections_total",
            "TCP connections accepted.",
            opened,
        );
        let tls_opened = self.sum(|s| &s.tls_connections_total);
        let tls_closed = self.sum(|s| &s.tls_connections_closed);
        gauge(
            out,
            "sse_tls_connections_open",
            "TCP connections open now on the TLS port (included in sse_connections_open).",
            tls_opened.saturating_sub(tls_closed),
        );
        counter(
            out,
            "sse_tls_connections_total",
            "TCP connections accepted on the TLS port (included in sse_connections_total).",
            tls_opened,
        );
        let h2_opened = self.sum(|s| &s.h2_connections_total);
        let h2_closed = self.sum(|s| &s.h2_connections_closed);
        let h2_tls_opened = self.sum(|s| &s.h2_tls_connections_total);
        let h2_tls_closed = self.sum(|s| &s.h2_tls_connections_closed);
        let h2_open = h2_opened.saturating_sub(h2_closed);
        let h2_tls_open = h2_tls_opened.saturating_sub(h2_tls_closed);
        let tls_open = tls_opened.saturating_sub(tls_closed);
        let all_open = opened.saturating_sub(closed);
        out.push_str(
            "# HELP sse_connections_open_by_protocol TCP connections open now, by protocol \
             (http1: HTTP/1.1 or not yet known; h2) and transport (plain, tls).\n\
             # TYPE sse_connections_open_by_protocol gauge\n",
        );
        let by = [
            (
                "http1",
                "plain",
                all_open
                    .saturating_sub(tls_open)
                    .saturating_sub(h2_open.saturating_sub(h2_tls_open)),
            ),
            ("http1", "tls", tls_open.saturating_sub(h2_tls_open)),
            ("h2", "plain", h2_open.saturating_sub(h2_tls_open)),
            ("h2", "tls", h2_tls_open),
        ];
        for (proto, transport, v) in by {
            let _ = writeln!(
                out,
                "sse_connections_open_by_protocol{{proto=\"{proto}\",transport=\"{transport}\"}} {v}"
            );
        }
        gauge(
            out,
            "sse_h2_connections_open",
            "HTTP/2 connections open now (included in sse_connections_open).",
            h2_open,
        );
        counter(
            out,
            "sse_h2_connections_total",
            "Connections that became HTTP/2 (included in sse_connections_total).",
            h2_opened,
        );
        let h2_streams = self.sum(|s| &s.h2_streams_total);
        gauge(
            out,
            "sse_h2_streams_open",
            "HTTP/2 streams open now (requests being answered, event streams among them).",
            h2_streams.saturating_sub(self.sum(|s| &s.h2_streams_closed)),
        );
        counter(
            out,
            "sse_h2_streams_total",
            "HTTP/2 streams (requests) opened.",
            h2_streams,
        );
        counter(
            out,
            "sse_h2_writes_total",
            "Writes to HTTP/2 connections' sockets (one carries every stream's frames due).",
            self.sum(|s| &s.h2_writes),
        );
        counter(
            out,
            "sse_tls_handshakes_total",
            "TLS handshakes completed.",
            self.sum(|s| &s.tls_handshakes),
        );
        counter(
            out,
            "sse_tls_errors_total",
            "TLS sessions closed on a protocol error (bytes that are not TLS, a failed handshake, a bad record, an alert, a key update).",
            self.sum(|s| &s.tls_errors),
        );
        out.push_str("# HELP sse_http_responses_total HTTP responses by status code.\n");
        out.push_str("# TYPE sse_http_responses_total counter\n");
        for s in Status::ALL {
            let v = self.sum(|sh| &sh.responses[s.index()]);
            let _ = writeln!(out, "sse_http_responses_total{{code=\"{}\"}} {v}", s.code());
        }
        out.push_str("# HELP sse_timeouts_total Connections closed by a timer.\n");
        out.push_str("# TYPE sse_timeouts_total counter\n");
        for (i, kind) in ["head", "idle", "stall"].iter().enumerate() {
            let _ = writeln!(
                out,
                "sse_timeouts_total{{kind=\"{kind}\"}} {}",
                self.sum(|s| &s.timeouts[i])
            );
        }
        counter(
            out,
            "sse_accept_errors_total",
            "accept() failures.",
            self.sum(|s| &s.accept_errors),
        );
        counter(
            out,
            "sse_accept_fd_exhausted_total",
            "accept() failures for lack of file descriptors (EMFILE, ENFILE).",
            self.sum(|s| &s.accept_fd_exhausted),
        );
        self.render_hub(out, &counter, &gauge);
        gauge(
            out,
            "sse_event_loops",
            "Event loop threads.",
            self.shards.len() as u64,
        );
        gauge(
            out,
            "process_resident_memory_bytes",
            "Resident set size.",
            process.rss_bytes,
        );
        gauge(
            out,
            "process_open_fds",
            "Open file descriptors.",
            process.open_fds,
        );
        gauge(
            out,
            "process_max_fds",
            "The file descriptor limit.",
            process.max_fds,
        );
        let _ = write!(
            out,
            "# HELP process_cpu_seconds_total User and system CPU time.\n# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {:.3}\n",
            process.cpu_seconds
        );
    }
}

impl Metrics {
    fn render_hub(
        &self,
        out: &mut String,
        counter: &dyn Fn(&mut String, &str, &str, u64),
        gauge: &dyn Fn(&mut String, &str, &str, u64),
    ) {
        counter(
            out,
            "sse_hub_publishes_total",
            "Events published and stored.",
            self.sum(|s| &s.publishes),
        );
        out.push_str(
            "# HELP sse_hub_publishes_rejected_total Publishes refused, by reason.
",
        );
        out.push_str(
            "# TYPE sse_hub_publishes_rejected_total counter
",
        );
        for r in Rejected::ALL {
            let v = self.sum(|s| &s.publishes_rejected[r as usize]);
            let _ = writeln!(
                out,
                "sse_hub_publishes_rejected_total{{reason=\"{}\"}} {v}",
                r.label()
            );
        }
        counter(
            out,
            "sse_selector_cache_hits_total",
            "Topic-pattern results read from the loops' bounded caches.",
            self.sum(|s| &s.selector_cache_hits),
        );
        counter(
            out,
            "sse_selector_cache_misses_total",
            "Topic-pattern results computed (a URI Template or URL Pattern run).",
            self.sum(|s| &s.selector_cache_misses),
        );
        counter(
            out,
            "sse_selector_cache_evictions_total",
            "Topic-pattern results dropped from a full cache.",
            self.sum(|s| &s.selector_cache_evictions),
        );
        counter(
            out,
            "sse_hub_deliveries_total",
            "Events written to subscribers.",
            self.sum(|s| &s.deliveries),
        );
        counter(
            out,
            "sse_hub_undelivered_total",
            "Stored events a subscriber had not received when the server stopped.",
            self.sum(|s| &s.undelivered),
        );
        out.push_str(
            "# HELP sse_hub_resets_total reset events sent, by reason.
",
        );
        out.push_str(
            "# TYPE sse_hub_resets_total counter
",
        );
        for (i, why) in ["gap", "unknown-id"].iter().enumerate() {
            let v = self.sum(|s| &s.resets[i]);
            let _ = writeln!(out, "sse_hub_resets_total{{reason=\"{why}\"}} {v}");
        }
        let opened = self.sum(|s| &s.topic_streams_opened);
        let closed = self.sum(|s| &s.topic_streams_closed);
        gauge(
            out,
            "sse_hub_subscribers",
            "Topic streams open now.",
            opened.saturating_sub(closed),
        );
        if let Some((events, bytes)) = self.history.get().map(|f| f()) {
            gauge(
                out,
                "sse_hub_history_events",
                "Events retained.",
                events as u64,
            );
            gauge(
                out,
                "sse_hub_history_bytes",
                "Bytes retained.",
                bytes as u64,
            );
        }
        let counts: [u64; latency::SLOTS] =
            std::array::from_fn(|i| self.sum(|s| &s.latency_buckets[i]));
        latency::render(
            out,
            "sse_hub_delivery_latency_seconds",
            "Publish to write of one delivery.",
            latency::Histogram {
                counts: &counts,
                sum_us: self.sum(|s| &s.latency_sum_us),
            },
        );
        let counts: [u64; latency::SLOTS] =
            std::array::from_fn(|i| self.sum(|s| &s.publish_answer_buckets[i]));
        let store = self.publish_store.get().copied().unwrap_or("memory");
        latency::render_labelled(
            out,
            "sse_publish_answer_seconds",
            &format!("store=\"{store}\""),
            "Publish answers: request complete to the answer's last byte given to the socket.",
            latency::Histogram {
                counts: &counts,
                sum_us: self.sum(|s| &s.publish_answer_sum_us),
            },
        );
        if let Some(extra) = self.extra.get() {
            extra(out);
        }
    }

    /// Takes one sample of the server's figures (JSON, one `figures` event), keeping the last
    /// [`SAMPLES_KEPT`]. Called once a second by loop 0.
    pub fn sample(&self, unix_ms: i64, process: &ProcessStats) {
        let sum_all = |f: &dyn Fn(&Shard) -> u64| self.shards.iter().map(f).sum::<u64>();
        let opened = self.sum(|s| &s.connections_total);
        let closed = self.sum(|s| &s.connections_closed);
        let subs = self
            .sum(|s| &s.topic_streams_opened)
            .saturating_sub(self.sum(|s| &s.topic_streams_closed));
        let json = serde_json::json!({
            "t": unix_ms,
            "streams_open": self.streams_open(),
            "connections_open": opened.saturating_sub(closed),
            "hub_subscribers": subs,
            "frames_total": self.sum(|s| &s.frames_sent),
            "deliveries_total": self.sum(|s| &s.deliveries),
            "publishes_total": self.sum(|s| &s.publishes),
            "resets_total": sum_all(&|s| s.resets.iter().map(Counter::get).sum()),
            "timeouts_total": sum_all(&|s| s.timeouts.iter().map(Counter::get).sum()),
            "rss_bytes": process.rss_bytes,
            "cpu_seconds": process.cpu_seconds,
        });
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let seq = samples.back().map_or(1, |s| s.0 + 1);
        let mut frame = b"event: figures\ndata: ".to_vec();
        frame.extend_from_slice(json.to_string().as_bytes());
        frame.extend_from_slice(b"\n\n");
        samples.push_back((seq, frame.into_boxed_slice()));
        while samples.len() > SAMPLES_KEPT {
            samples.pop_front();
        }
    }

    /// Appends the samples after `cursor` to `out`; returns the new cursor.
    pub fn samples_after(&self, cursor: u64, out: &mut Vec<u8>) -> u64 {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        let mut last = cursor;
        for (seq, frame) in samples.iter().filter(|s| s.0 > cursor) {
            out.extend_from_slice(frame);
            last = *seq;
        }
        last
    }

    /// Adds text to every `/metrics` answer (the Redis bridge's figures).
    pub fn set_extra(&self, f: Renderer) {
        let _ = self.extra.set(f);
    }

    /// Names where publishes are stored (`data-dir`, `redis`; `memory` if never set), the
    /// label of `sse_publish_answer_seconds`.
    pub fn set_publish_store(&self, store: &'static str) {
        let _ = self.publish_store.set(store);
    }

    /// Lets `/metrics` show the history's size (read from the hub when rendered).
    pub fn set_history_probe(&self, f: Box<dyn Fn() -> (usize, usize) + Send + Sync>) {
        let _ = self.history.set(f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_gate_is_bounded() {
        let m = Metrics::new(2, 2);
        assert!(m.admission().try_open());
        assert!(m.admission().try_open());
        assert!(!m.admission().try_open());
        m.admission().close();
        assert!(m.admission().try_open());
        assert_eq!(m.streams_open(), 2);
    }

    #[test]
    fn render_sums_shards() {
        let m = Metrics::new(2, 10);
        m.shard(0).frames_sent.add(3);
        m.shard(1).frames_sent.add(4);
        m.shard(1).response(Status::NotFound);
        m.shard(0).timeout(Timeout::Stall);
        assert!(m.admission().try_open());
        let mut s = String::new();
        m.render(&mut s, &ProcessStats::default());
        assert!(s.contains("\nsse_frames_sent_total 7\n"), "{s}");
        assert!(s.contains("\nsse_streams_open 1\n"));
        assert!(s.contains("sse_http_responses_total{code=\"404\"} 1\n"));
        assert!(s.contains("sse_timeouts_total{kind=\"stall\"} 1\n"));
        for line in s.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(!name.is_empty());
            value.parse::<f64>().unwrap();
        }
    }
}
