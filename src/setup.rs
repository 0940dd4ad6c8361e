//! Start-up wiring of the server's parts that are not the loops: the token verifier, the
//! shared log (Redis) and its sink into the hub, its figures for `/metrics`, this run's id
//! epoch. Called once by [`crate::server::Server::start`].

use crate::config::Config;
use crate::hub::{Hub, Publish};
use crate::log::{self, V};
use crate::redis_bridge::{redact, Bridge, BridgeConfig, BridgeStats, Sink};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The token verifier from `--jwt-key` or `--jwt-key-file`, if either is given.
pub fn jwt_verifier(config: &Config) -> io::Result<Option<crate::jwt::Verifier>> {
    let key = match (&config.jwt_key, &config.jwt_key_file) {
        (Some(k), _) => k.clone().into_bytes(),
        (None, Some(path)) => {
            let mut k = std::fs::read(path).map_err(|e| {
                io::Error::other(LogError(format!("--jwt-key-file {}: {e}", path.display())))
            })?;
            while k.last().is_some_and(|b| b.is_ascii_whitespace()) {
                k.pop();
            }
            k
        }
        (None, None) => return Ok(None),
    };
    if key.is_empty() {
        return Err(io::Error::other(LogError(
            "--jwt-key: the key is empty".into(),
        )));
    }
    if key.len() < crate::jwt::MIN_KEY_BYTES {
        eprintln!(
            "sse-server: warning: the JWT key is shorter than {} bytes; HS256 keys should be at least that long",
            crate::jwt::MIN_KEY_BYTES
        );
    }
    Ok(Some(crate::jwt::Verifier::new(&key, config.jwt_leeway_ms)))
}

/// A start-up failure that is not about listening (the shared log, the token key), told apart
/// by `main`.
#[derive(Debug)]
pub struct LogError(pub String);

impl std::fmt::Display for LogError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LogError {}

/// What the bridge reads goes into the hub; what it says of Redis, to `/healthz`.
struct HubSink {
    hub: Arc<Hub>,
    epoch: Instant,
    /// The first delivery is the backfill (see `Hub::append_log`).
    backfilled: AtomicBool,
}

impl Sink for HubSink {
    fn on_events(&self, events: Vec<(String, Publish)>) {
        let now_us = self.epoch.elapsed().as_micros() as u64;
        let backfill = !self.backfilled.swap(true, Ordering::AcqRel);
        self.hub.append_log(events, now_us, backfill);
    }

    fn on_state(&self, up: bool, reason: &str) {
        self.hub.set_log_state(up, reason);
        if up {
            log::line("redis", &[("state", V::S("up"))]);
        } else {
            log::line(
                "redis",
                &[("state", V::S("down")), ("reason", V::S(reason))],
            );
        }
    }
}

/// Connects the shared log (`--redis`) and feeds the hub from it.
pub fn start_log(url: &str, config: &Config, hub: &Arc<Hub>) -> io::Result<Arc<Bridge>> {
    let cfg = BridgeConfig::new(url, config.hub.history_events);
    let sink = Arc::new(HubSink {
        hub: hub.clone(),
        epoch: Instant::now(),
        backfilled: AtomicBool::new(false),
    });
    let bridge = Bridge::start(cfg, sink)
        .map(Arc::new)
        .map_err(|e| io::Error::other(LogError(format!("--redis {}: {e}", redact(url)))))?;
    // The bridge connected and read the backfill; its reader reports up a moment later. Wait
    // for that (bounded) so that the server does not start by refusing publishes.
    let deadline = Instant::now() + std::time::Duration::from_secs(2);
    while hub.log_state().is_err() && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Ok(bridge)
}

/// The bridge's figures in Prometheus text.
pub fn render_log(out: &mut String, s: &BridgeStats) {
    use std::fmt::Write as _;
    let mut line = |name: &str, kind: &str, help: &str, v: u64| {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
        );
    };
    line(
        "sse_redis_up",
        "gauge",
        "1 while the shared event log is reachable and read.",
        u64::from(s.up),
    );
    line(
        "sse_redis_reconnects_total",
        "counter",
        "Connections to Redis made again.",
        s.reconnects,
    );
    line(
        "sse_redis_events_read_total",
        "counter",
        "Log entries read.",
        s.events_read,
    );
    line(
        "sse_redis_entries_skipped_total",
        "counter",
        "Log entries that could not be read.",
        s.entries_skipped,
    );
    line(
        "sse_redis_publishes_stored_total",
        "counter",
        "Publishes stored in the log.",
        s.publishes_stored,
    );
    line(
        "sse_redis_publish_errors_total",
        "counter",
        "Publishes the log could not store.",
        s.publish_errors,
    );
    line(
        "sse_redis_lag_entries",
        "gauge",
        "Log entries not read yet by this instance.",
        s.lag,
    );
}

/// This run's id epoch: a few base-36 digits from the clock and the process id, so that an id
/// from an earlier run is never mistaken for one of this run's.
pub fn epoch_tag() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ (u64::from(std::process::id()) << 40);
    // Mix, so that close start times do not give close tags.
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    let mut tag = String::new();
    for _ in 0..8 {
        let d = (x % 36) as u32;
        tag.push(char::from_digit(d, 36).unwrap_or('0'));
        x /= 36;
    }
    tag
}
