//! Start-up wiring of the server's parts that are not the loops: the token verifier, the
//! shared store (Redis) and its sink into the hub, the embedded store (`--data-dir`) and its
//! sink, their figures for `/metrics`, this run's id epoch. Called once by [`crate::server::loops::Server::start`].

use crate::hub::history::{Hub, Publish, RedisBatch};
use crate::redis::bridge::{redact, Bridge, BridgeConfig, BridgeStats, Sink, StoreState};
use crate::server::config::Config;
use crate::util::log::{self, V};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The token verifier from `--jwt-key` or `--jwt-key-file`, if either is given.
pub fn jwt_verifier(config: &Config) -> io::Result<Option<crate::hub::jwt::Verifier>> {
    let key = match (&config.jwt_key, &config.jwt_key_file) {
        (Some(k), _) => k.clone().into_bytes(),
        (None, Some(path)) => {
            let mut k = std::fs::read(path).map_err(|e| {
                io::Error::other(StartError(format!(
                    "--jwt-key-file {}: {e}",
                    path.display()
                )))
            })?;
            while k.last().is_some_and(|b| b.is_ascii_whitespace()) {
                k.pop();
            }
            k
        }
        (None, None) => return Ok(None),
    };
    if key.is_empty() {
        return Err(io::Error::other(StartError(
            "--jwt-key: the key is empty".into(),
        )));
    }
    if key.len() < crate::hub::jwt::MIN_KEY_BYTES {
        eprintln!(
            "sse-server: warning: the JWT key is shorter than {} bytes; HS256 keys should be at least that long",
            crate::hub::jwt::MIN_KEY_BYTES
        );
    }
    Ok(Some(
        crate::hub::jwt::Verifier::new(&key, config.jwt_leeway_ms)
            .with_audience(config.jwt_audience.as_deref()),
    ))
}

/// A start-up failure that is not about listening (an event-store backend, the token key), told
/// apart by `main`.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

/// What the bridge reads goes into the hub; what it says of Redis, to `/healthz`.
struct HubSink {
    hub: Arc<Hub>,
    epoch: Instant,
    /// The first delivery is the backfill (see `Hub::append_redis_entries`).
    backfilled: AtomicBool,
}

impl Sink for HubSink {
    fn on_events(&self, events: Vec<(String, Publish)>) {
        let now_us = self.epoch.elapsed().as_micros() as u64;
        let batch = if self.backfilled.swap(true, Ordering::AcqRel) {
            RedisBatch::Live
        } else {
            RedisBatch::Backfill
        };
        self.hub.append_redis_entries(events, now_us, batch);
    }

    fn on_state(&self, state: StoreState<'_>) {
        match state {
            StoreState::Up => {
                self.hub.store_up();
                log::line("redis", &[("state", V::S("up"))]);
            }
            StoreState::Down(reason) => {
                self.hub.store_down(reason);
                log::line(
                    "redis",
                    &[("state", V::S("down")), ("reason", V::S(reason))],
                );
            }
        }
    }
}

/// Connects the shared store (`--redis`) and feeds the hub from it.
pub fn start_redis(url: &str, config: &Config, hub: &Arc<Hub>) -> io::Result<Arc<Bridge>> {
    let mut cfg = BridgeConfig::new(url, config.hub.history_events);
    cfg.backfill_bytes = config.hub.history_bytes;
    let sink = Arc::new(HubSink {
        hub: hub.clone(),
        epoch: Instant::now(),
        backfilled: AtomicBool::new(false),
    });
    let bridge = Bridge::start(cfg, sink)
        .map(Arc::new)
        .map_err(|e| io::Error::other(StartError(format!("--redis {}: {e}", redact(url)))))?;
    // The bridge connected and read the backfill; its reader reports up a moment later. Wait
    // for that (bounded) so that the server does not start by refusing publishes.
    let deadline = Instant::now() + std::time::Duration::from_secs(2);
    while hub.store_state().is_err() && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    Ok(bridge)
}

/// What the embedded store stored goes into the hub.
struct DataSink {
    hub: Arc<Hub>,
    epoch: Instant,
}

impl crate::durable::writer::Sink for DataSink {
    fn restore(&self, items: Vec<crate::hub::history::Restored>, evicted: u64, next: u64) {
        let now_us = self.epoch.elapsed().as_micros() as u64;
        self.hub.restore(items, evicted, next, now_us);
    }

    fn on_events(&self, events: Vec<(u64, Publish)>) {
        let now_us = self.epoch.elapsed().as_micros() as u64;
        self.hub.append_stored(events, now_us);
    }

    fn evicted(&self) -> u64 {
        self.hub.evicted()
    }
}

/// Opens `--data-dir` and reads it back (before the hub exists: its ids take the
/// directory's epoch).
pub fn open_data_dir(
    dir: &std::path::Path,
    config: &Config,
) -> io::Result<crate::durable::writer::Opening> {
    use crate::durable::writer::{segment_bytes, DurableStore, StoreConfig};
    let cfg = StoreConfig {
        dir: dir.to_path_buf(),
        fsync: config.fsync,
        history_events: config.hub.history_events,
        history_bytes: config.hub.history_bytes,
        segment_bytes: segment_bytes(config.hub.history_bytes),
    };
    DurableStore::open(cfg, &epoch_tag()).map_err(|e| io::Error::other(StartError(e)))
}

/// Hands the history read back to the hub and starts the store's thread; says what start-up
/// found (events, a torn tail cut, damage with its segment and offset).
pub fn start_data_dir(
    opening: crate::durable::writer::Opening,
    config: &Config,
    hub: &Arc<Hub>,
) -> io::Result<Arc<crate::durable::writer::DurableStore>> {
    let sink = Arc::new(DataSink {
        hub: hub.clone(),
        epoch: Instant::now(),
    });
    let (store, report) = opening
        .start(sink)
        .map_err(|e| io::Error::other(StartError(e)))?;
    let dir = config
        .data_dir
        .as_deref()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    log::line(
        "data_dir",
        &[
            ("dir", V::S(&dir)),
            ("fsync", V::S(config.fsync.as_str())),
            ("sync", V::S(report.sync)),
            ("recovered_events", V::N(report.recovered_events)),
            ("retained", V::N(report.retained as u64)),
            ("truncated_bytes", V::N(report.truncated_bytes)),
            ("next_id", V::S(&hub.id(report.next))),
        ],
    );
    for d in &report.damage {
        log::line(
            "data_dir_damage",
            &[("dir", V::S(&dir)), ("found", V::S(d))],
        );
    }
    if config.fsync == crate::durable::writer::Fsync::Off {
        eprintln!(
            "sse-server: note: --fsync off: publishes are answered once written to the OS, \
             not synced: a crash of this process loses none, a power loss or kernel crash may \
             lose the last seconds"
        );
    }
    Ok(Arc::new(store))
}

/// The bridge's figures in Prometheus text.
pub fn render_redis(out: &mut String, s: &BridgeStats) {
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
        "1 while the shared event store is reachable and read.",
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
        "Store entries read.",
        s.events_read,
    );
    line(
        "sse_redis_entries_skipped_total",
        "counter",
        "Store entries that could not be read.",
        s.entries_skipped,
    );
    line(
        "sse_redis_publishes_stored_total",
        "counter",
        "Publishes stored in the store.",
        s.publishes_stored,
    );
    line(
        "sse_redis_publish_errors_total",
        "counter",
        "Publishes the store could not store.",
        s.publish_errors,
    );
    line(
        "sse_redis_lag_entries",
        "gauge",
        "Store entries not read yet by this instance.",
        s.lag,
    );
    line(
        "sse_redis_log_resets_total",
        "counter",
        "Times the event store was found deleted or recreated under the server (DEL, FLUSHALL, eviction); subscribers got a reset.",
        s.store_resets,
    );
    line(
        "sse_replay_bytes",
        "gauge",
        "Bytes held by replay pages read back from the store and not yet written.",
        s.replay_bytes,
    );
    line(
        "sse_replay_waits_total",
        "counter",
        "Replay page reads that waited for the replay memory budget.",
        s.replay_waits,
    );
    line(
        "sse_replay_refused_total",
        "counter",
        "Replay page reads refused (too many waiting): those streams got a reset.",
        s.replay_refused,
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

/// This instance's random tag for its subscriber ids (`--subscriptions`): 64 bits from the
/// kernel's generator, else from the clock, the process id and a stack address mixed.
pub fn instance_tag() -> u64 {
    use std::io::Read;
    let mut b = [0u8; 8];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok()
    {
        return u64::from_le_bytes(b);
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut x = nanos ^ (u64::from(std::process::id()) << 40) ^ (&b as *const _ as u64);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^ (x >> 33)
}
