//! The Redis bridge: one event store for a whole deployment of `sse-server`s, kept in a Redis
//! Stream. A publish is appended with `XADD` and answered with the id Redis gave it; every
//! instance reads the stream with `XREAD BLOCK` from its last id and hands what it reads to a
//! [`Sink`] (the hub), so ids and order are the store's, the same on every instance and across a
//! restart of any of them.
//!
//! The interface the server uses:
//!
//! ```text
//! Bridge::start(BridgeConfig { url, stream_key, maxlen, backfill }, sink) -> Result<Bridge, String>
//! bridge.submit(publish, done)   // done(Ok(redis id)) once stored, done(Err(reason)) if not
//! bridge.range(after, until, count, done)  // one replay page, read on the range thread
//! bridge.stop_writes()           // no more XADDs (the server is stopping)
//! bridge.stats() -> BridgeStats  // up, reconnects, events read, publishes stored, lag, ...
//! bridge.stop()                  // the threads end within about a second
//! Sink::on_events(Vec<(id, Publish)>)  // the backfill first, then every XREAD batch, in order
//! Sink::on_state(StoreState)           // Up: both connections usable; Down(reason): not
//! ```
//!
//! Three threads, each with its own connection, talk to Redis; nothing here is ever called on an
//! event loop's thread except [`Bridge::submit`], [`Bridge::range`], [`Bridge::stop_writes`]
//! and [`Bridge::stats`], which never block:
//! - the **writer** blocks on its job queue, drains what else is queued (up to
//!   [`MAX_BATCH`]), sends the whole batch as one pipeline of
//!   `XADD key MAXLEN ~ N * t <topics joined by \n> d <data> [y <type>] [r <retry>]` (each
//!   through `XADD_SCRIPT`, which restarts a deleted stream above every earlier id, with a
//!   mark) and answers each job with its own reply;
//! - the **range** thread reads replay pages (`XRANGE`) for deep resumes, one at a time,
//!   within the replay budget;
//! - the **reader** loops on `XREAD BLOCK 500 COUNT 1000 STREAMS key <last id>` (its socket's
//!   read timeout is longer than the block, so a Redis that stops answering is noticed), and
//!   once a second asks `XINFO STREAM` how far the store has gone (the lag).
//!
//! Both reconnect forever with jittered exponential backoff (50 ms doubling to 2 s, ±50 %).
//! After a reconnect the reader first catches up without blocking from its last id, and only
//! then counts as up: the bridge never reports up while the reader is not reading (a
//! subscription loop that silently stopped while health stayed green is the failure this
//! guards against). While the writer has no connection every job is answered `Err` at once,
//! so a publisher gets its `503` promptly; a batch in flight when the connection dies is
//! answered `Err` whole (some of it may have been stored: it is delivered all the same, and
//! a publisher that retries may publish twice, never zero times after a `200`).
//!
//! **Invariant:** the sink sees every entry of the stream after the backfill point exactly once
//! and in stream order, across any number of reconnects: the reader's position (`last id`)
//! only moves past entries it has handed to the sink (or skipped as unreadable, counted).
//! Entries trimmed by `MAXLEN` before this instance read them are the exception (a reader
//! more than `maxlen` entries behind), as in any capped store.
//! **Invariant:** `Sink::on_state(StoreState::Up)` is reported only while both connections are up and
//! the reader has caught up since its last reconnect; every loss of either is reported.
//! **Invariant:** nothing here panics on what Redis sends: an entry the bridge cannot read
//! (missing `t` or `d`, bad UTF-8, a bad `r`, or fields that [`crate::hub::parse::check_event`],
//! the publish path's one rule, refuses) is skipped and counted; an entry the publish path
//! accepted is never skipped.

use crate::hub::backend::Done;
use crate::hub::history::{Publish, ReplayBudget, StorePage, PAGE_BYTES};
use redis::{ConnectionLike, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// What [`Bridge::range`] calls with the page read (or why not).
pub type PageDone = Box<dyn FnOnce(Result<StorePage, String>) + Send>;

/// The most page reads waiting for the range thread; past it a replay gets `reset` (counted
/// as refused).
pub const RANGE_QUEUE: usize = 4_096;
/// The most entries one replay page asks for.
const MAX_PAGE_COUNT: u32 = 512;

/// The most jobs one pipeline carries.
pub const MAX_BATCH: usize = 512;
/// The most jobs waiting for the writer; past it `submit` refuses at once.
pub const QUEUE_CAPACITY: usize = 65_536;
/// The most entries one `XREAD` returns.
const READ_COUNT: usize = 1_000;
/// How long one `XREAD` blocks in Redis.
const BLOCK_MS: u64 = 500;
/// Socket read timeout: longer than the block, so only a Redis that stopped answering trips it.
const READ_TIMEOUT: Duration = Duration::from_millis(BLOCK_MS + 2_000);
/// Socket timeouts of the writer's connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the reader asks `XINFO STREAM` for the lag.
const LAG_EVERY: Duration = Duration::from_secs(1);
/// How long `stop` waits for the threads before leaving them to finish alone.
const STOP_WAIT: Duration = Duration::from_millis(900);
/// The first reconnect delay, and the cap it doubles up to.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Where the store is and how long it is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeConfig {
    /// `redis://[user:password@]host:port[/db]` (or `redis+unix:///path`). `rediss://` is
    /// refused: this build has no TLS client.
    pub url: String,
    /// The stream's key (`sse:events` by default).
    pub stream_key: String,
    /// The approximate `MAXLEN` given to every `XADD` (`--history-events`).
    pub maxlen: usize,
    /// How many of the newest entries are loaded at start (normally `maxlen`).
    pub backfill: usize,
    /// The most bytes of entries loaded at start (`--history-bytes`): the backfill is read
    /// newest first, page by page, and stops there.
    pub backfill_bytes: usize,
}

impl BridgeConfig {
    /// The default stream key.
    pub const DEFAULT_KEY: &'static str = "sse:events";

    /// A configuration with the default key and `backfill = maxlen`.
    pub fn new(url: impl Into<String>, maxlen: usize) -> BridgeConfig {
        BridgeConfig {
            url: url.into(),
            stream_key: Self::DEFAULT_KEY.to_string(),
            maxlen,
            backfill: maxlen,
            backfill_bytes: usize::MAX,
        }
    }
}

/// Where the bridge delivers what it reads (called from the bridge's threads).
pub trait Sink: Send + Sync + 'static {
    /// Entries read from the stream, oldest first, each with its Redis id
    /// (`"1700000000000-3"`). Called first with the backfill (the newest `backfill` entries,
    /// possibly none), then with every `XREAD` batch. Never repeats or skips an entry across
    /// reconnects. Called from the reader thread only.
    fn on_events(&self, events: Vec<(String, Publish)>);
    /// Redis became usable (`Up`: both connections up and the reader caught up) or not
    /// (`Down`, with a one-line reason). Called from either thread, under a lock that keeps
    /// the reports in order: it must return quickly and must not call back into the bridge.
    fn on_state(&self, state: StoreState<'_>);
}

/// What [`Sink::on_state`] reports of Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreState<'a> {
    /// Both connections are up and the reader has caught up.
    Up,
    /// Not usable, and a one-line reason why.
    Down(&'a str),
}

/// Counters for the metrics page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BridgeStats {
    /// As last reported to the sink.
    pub up: bool,
    /// Connections re-established after a loss (writer and reader together).
    pub reconnects: u64,
    /// Entries handed to the sink (the backfill included).
    pub events_read: u64,
    /// Entries skipped because the bridge could not read them.
    pub entries_skipped: u64,
    /// Publishes Redis stored (answered `Ok`).
    pub publishes_stored: u64,
    /// Publishes answered `Err`.
    pub publish_errors: u64,
    /// Entries in the store that this instance has not read yet, as of the last `XINFO`
    /// (at most a second old while the reader is up).
    pub lag: u64,
    /// Jobs waiting for the writer.
    pub queued: u64,
    /// The last connection or command error, empty if none yet.
    pub last_error: String,
    /// Bytes held by replay pages (read from the store, not yet written to their streams).
    pub replay_bytes: u64,
    /// Page reads that waited for the replay budget.
    pub replay_waits: u64,
    /// Page reads refused (the range thread's queue was full): those replays got `reset`.
    pub replay_refused: u64,
    /// Times the store was found deleted or recreated under the server (subscribers were told
    /// with `reset`, reason `log-reset`).
    pub store_resets: u64,
}

/// A publish waiting for the writer.
struct Job {
    publish: Publish,
    done: Done,
}

/// What both threads and the handle share.
struct BridgeState {
    sink: Arc<dyn Sink>,
    stop: AtomicBool,
    /// No more `XADD`s: what is queued or submitted is answered `Err` (see
    /// [`Bridge::stop_writes`]).
    writes_stopped: AtomicBool,
    /// The greatest millisecond seen in an id (read or stored): a recreated store starts above
    /// it (see [`XADD_SCRIPT`]).
    floor_ms: AtomicU64,
    /// Times the store was found deleted or recreated (a mark read after other entries).
    store_resets: AtomicU64,
    writer_up: AtomicBool,
    reader_up: AtomicBool,
    /// Bumped whenever the reader loses its connection, so the writer knows its own connection
    /// is probably stale too and replaces it before it sends (rather than failing a batch).
    reader_losses: AtomicU64,
    /// Bumped whenever the reader has caught up after a (re)connect: a writer waiting out its
    /// backoff then tries at once, since Redis is evidently back.
    reader_recoveries: AtomicU64,
    /// The last state reported to the sink (`None` before the first report).
    reported: Mutex<Option<bool>>,
    reconnects: AtomicU64,
    events_read: AtomicU64,
    entries_skipped: AtomicU64,
    publishes_stored: AtomicU64,
    publish_errors: AtomicU64,
    lag: AtomicU64,
    queued: AtomicU64,
    last_error: Mutex<String>,
}

impl BridgeState {
    /// Reports the combined state to the sink if it changed.
    fn report(&self, reason: &str) {
        if self.stopping() {
            // Connections closing under `stop` are not an outage.
            return;
        }
        let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
        let up = self.writer_up.load(Ordering::Acquire) && self.reader_up.load(Ordering::Acquire);
        if *reported != Some(up) {
            *reported = Some(up);
            self.sink.on_state(if up {
                StoreState::Up
            } else {
                StoreState::Down(reason)
            });
        }
    }

    fn set_error(&self, e: &str) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = e.to_string();
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// The running bridge. See the module docs.
pub struct Bridge {
    shared: Arc<BridgeState>,
    /// For [`Bridge::range`]'s own short connections.
    /// Page reads for replays, served by the range thread.
    ranges: SyncSender<RangeJob>,
    budget: Arc<ReplayBudget>,
    jobs: SyncSender<Job>,
    writer: JoinHandle<()>,
    reader: JoinHandle<()>,
    ranger: JoinHandle<()>,
    /// Each thread sends one message here as it ends, so `stop` can wait with a deadline.
    /// (In a mutex only so that the bridge can be shared between threads.)
    ended: Mutex<mpsc::Receiver<()>>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Bridge {
    /// Checks the URL (refusing `rediss://` with a clear message: no TLS client is built in),
    /// connects both connections once, loads the backfill (which also checks the key holds a
    /// stream), and starts the writer and reader threads. The error text is meant for the
    /// start-up message; it never contains the password.
    pub fn start(cfg: BridgeConfig, sink: Arc<dyn Sink>) -> Result<Bridge, String> {
        let client = open_client(&cfg.url)?;
        let shown = redact(&cfg.url);
        let connect = |what: &str| {
            connect(&client).map_err(|e| format!("Redis at {shown} ({what} connection): {e}"))
        };
        let mut reader_conn = connect("reader")?;
        let mut writer_conn = connect("writer")?;
        let key = cfg.stream_key.clone();
        let (backfill, last_id) =
            load_backfill(&mut reader_conn, &key, cfg.backfill, cfg.backfill_bytes)
                .map_err(|e| format!("Redis at {shown}: reading stream {key:?}: {e}"))?;

        let shared = Arc::new(BridgeState {
            sink,
            stop: AtomicBool::new(false),
            writes_stopped: AtomicBool::new(false),
            floor_ms: AtomicU64::new(id_ms(&last_id)),
            store_resets: AtomicU64::new(0),
            writer_up: AtomicBool::new(true),
            reader_up: AtomicBool::new(false),
            reader_losses: AtomicU64::new(0),
            reader_recoveries: AtomicU64::new(0),
            reported: Mutex::new(None),
            reconnects: AtomicU64::new(0),
            events_read: AtomicU64::new(0),
            entries_skipped: AtomicU64::new(backfill.skipped),
            publishes_stored: AtomicU64::new(0),
            publish_errors: AtomicU64::new(0),
            lag: AtomicU64::new(0),
            queued: AtomicU64::new(0),
            last_error: Mutex::new(String::new()),
        });
        let (jobs, rx) = mpsc::sync_channel::<Job>(QUEUE_CAPACITY);
        let (ended_tx, ended) = mpsc::channel();

        let writer = {
            let w = Writer {
                shared: shared.clone(),
                client: client.clone(),
                key: key.clone(),
                maxlen: cfg.maxlen.max(1),
                sha: load_script(&mut writer_conn),
                conn: Some(writer_conn),
                seen_losses: 0,
                seen_recoveries: 0,
                backoff: Backoff::new(),
                next_try: Instant::now(),
            };
            let ended = ended_tx.clone();
            thread::Builder::new()
                .name("redis-writer".into())
                .spawn(move || {
                    w.run(rx);
                    let _ = ended.send(());
                })
                .map_err(|e| format!("cannot start the Redis writer thread: {e}"))?
        };
        let reader = {
            let r = Reader {
                shared: shared.clone(),
                client: client.clone(),
                key: key.clone(),
                conn: Some(reader_conn),
                last_id,
                backoff: Backoff::new(),
                lag: LagTracker::default(),
                mark_read: false,
            };
            let ended = ended_tx.clone();
            thread::Builder::new()
                .name("redis-reader".into())
                .spawn(move || {
                    r.run(backfill.events);
                    let _ = ended.send(());
                })
                .map_err(|e| format!("cannot start the Redis reader thread: {e}"))?
        };
        let budget = ReplayBudget::new(crate::hub::history::MAX_REPLAY_BYTES);
        let (ranges, range_rx) = mpsc::sync_channel::<RangeJob>(RANGE_QUEUE);
        let ranger = {
            let r = Ranger {
                shared: shared.clone(),
                client,
                key,
                conn: None,
                budget: budget.clone(),
            };
            let ended = ended_tx.clone();
            thread::Builder::new()
                .name("redis-range".into())
                .spawn(move || {
                    r.run(range_rx);
                    let _ = ended.send(());
                })
                .map_err(|e| format!("cannot start the Redis range thread: {e}"))?
        };
        Ok(Bridge {
            shared,
            ranges,
            budget,
            jobs,
            writer,
            reader,
            ranger,
            ended: Mutex::new(ended),
        })
    }

    /// Asks for one page of a replay: the store's entries after `after` up to and including
    /// `until` (ids), at most `count`, read on the range thread (which exists from the start:
    /// nothing is spawned per request) and handed to `done` there, counted against the replay
    /// budget until dropped. `done(Err(..))` is called at once, from inside, when
    /// [`RANGE_QUEUE`] reads already wait. Never blocks.
    pub fn range(&self, after: String, until: String, count: u32, done: PageDone) {
        self.range_job(RangeJob {
            after,
            until,
            count,
            by_id: false,
            done,
        });
    }

    /// [`range`](Self::range) after the entry whose publisher id is `id` (looked up in the
    /// store's index of them, `id_keys`), at least up to `until`: the page's `from` is that
    /// entry's id, or `None` (and no entries) when no entry has it.
    pub fn range_after_publisher_id(&self, id: String, until: String, count: u32, done: PageDone) {
        self.range_job(RangeJob {
            after: id,
            until,
            count,
            by_id: true,
            done,
        });
    }

    fn range_job(&self, job: RangeJob) {
        match self.ranges.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) => {
                self.budget.refused.fetch_add(1, Ordering::Relaxed);
                (job.done)(Err("too many replays waiting".into()));
            }
            Err(TrySendError::Disconnected(job)) => (job.done)(Err("Redis bridge stopped".into())),
        }
    }

    /// Queues an `XADD`. `done` is called once: from the writer thread with `Ok(redis id)`
    /// once Redis stored the entry, or `Err(reason)` when it could not be stored (Redis down:
    /// the publisher's answer is then `503`). Only when the queue is full
    /// ([`QUEUE_CAPACITY`]) or the bridge is stopping is `done(Err(..))` called at once,
    /// from inside `submit`. Never blocks.
    pub fn submit(&self, p: Publish, done: Done) {
        let job = Job { publish: p, done };
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        let refused = match self.jobs.try_send(job) {
            Ok(()) => return,
            Err(TrySendError::Full(job)) => (job, "Redis publish queue full"),
            Err(TrySendError::Disconnected(job)) => (job, "Redis bridge stopped"),
        };
        self.shared.queued.fetch_sub(1, Ordering::Relaxed);
        self.shared.publish_errors.fetch_add(1, Ordering::Relaxed);
        (refused.0.done)(Err(refused.1.to_string()));
    }

    /// Sends no more publishes to Redis: every job still queued, and every one submitted from
    /// now on, is answered `Err` (so a publisher told `503` now is never stored later); a batch
    /// already sent gets Redis's answer. Called when the server stops for good.
    pub fn stop_writes(&self) {
        self.shared.writes_stopped.store(true, Ordering::Release);
    }

    /// The counters now.
    pub fn stats(&self) -> BridgeStats {
        let s = &self.shared;
        BridgeStats {
            up: s.reported.lock().map(|r| *r == Some(true)).unwrap_or(false),
            reconnects: s.reconnects.load(Ordering::Relaxed),
            events_read: s.events_read.load(Ordering::Relaxed),
            entries_skipped: s.entries_skipped.load(Ordering::Relaxed),
            publishes_stored: s.publishes_stored.load(Ordering::Relaxed),
            publish_errors: s.publish_errors.load(Ordering::Relaxed),
            lag: s.lag.load(Ordering::Relaxed),
            queued: s.queued.load(Ordering::Relaxed),
            last_error: s.last_error.lock().map(|e| e.clone()).unwrap_or_default(),
            replay_bytes: self.budget.held(),
            replay_waits: self.budget.waits.load(Ordering::Relaxed),
            replay_refused: self.budget.refused.load(Ordering::Relaxed),
            store_resets: s.store_resets.load(Ordering::Relaxed),
        }
    }

    /// Stops both threads: jobs still queued are answered `Err`. Waits up to about a second;
    /// a thread still inside a Redis call then (a Redis that stopped answering) is left to end
    /// by itself at its socket timeout, without touching the sink again.
    pub fn stop(self) {
        let Bridge {
            shared,
            jobs,
            ranges,
            writer,
            reader,
            ranger,
            ended,
            ..
        } = self;
        let ended = ended.into_inner().unwrap_or_else(|e| e.into_inner());
        shared.stop.store(true, Ordering::Release);
        drop(jobs);
        drop(ranges);
        reader.thread().unpark();
        let deadline = Instant::now() + STOP_WAIT;
        let mut done = 0;
        while done < 3 {
            let left = deadline.saturating_duration_since(Instant::now());
            if ended.recv_timeout(left).is_err() {
                break;
            }
            done += 1;
        }
        for h in [writer, reader, ranger] {
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }
}

/// Parses the URL, refusing what this build cannot do with a message that says what to use.
pub(crate) fn open_client(url: &str) -> Result<redis::Client, String> {
    let scheme = url.split("://").next().unwrap_or("").to_ascii_lowercase();
    match scheme.as_str() {
        "redis" | "redis+unix" | "unix" => {}
        "rediss" => {
            return Err(format!(
                "{}: rediss:// (TLS) is not supported by this build of sse-server; use \
                 redis:// on a trusted network, or a local TLS tunnel (stunnel, spiped) to \
                 Redis",
                redact(url)
            ))
        }
        _ => {
            return Err(format!(
                "{}: not a Redis URL (expected redis://[user:password@]host:port[/db])",
                redact(url)
            ))
        }
    }
    redis::Client::open(url).map_err(|e| format!("{}: bad Redis URL: {e}", redact(url)))
}

/// The URL with any password replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            let hidden = if rest[..at].contains(':') {
                format!("{user}:***")
            } else {
                "***".to_string()
            };
            format!("{scheme}://{hidden}{}", &rest[at..])
        }
        None => url.to_string(),
    }
}

/// One connection, with timeouts, checked with `PING` (which also surfaces `NOAUTH`).
pub(crate) fn connect(client: &redis::Client) -> Result<redis::Connection, String> {
    let mut c = client
        .get_connection_with_timeout(CONNECT_TIMEOUT)
        .map_err(|e| match e.kind() {
            redis::ErrorKind::AuthenticationFailed => {
                format!("authentication failed: wrong user or password in the URL ({e})")
            }
            _ => e.to_string(),
        })?;
    c.set_read_timeout(Some(READ_TIMEOUT))
        .map_err(|e| e.to_string())?;
    c.set_write_timeout(Some(WRITE_TIMEOUT))
        .map_err(|e| e.to_string())?;
    match c.req_command(&redis::cmd("PING")) {
        Ok(Value::ServerError(e)) => Err(redis::RedisError::from(e).to_string()),
        Ok(_) => Ok(c),
        Err(e) => Err(e.to_string()),
    }
}

/// Jittered exponential backoff: 50 ms doubling to 2 s, each delay ±50 %.
struct Backoff {
    next: Duration,
    rng: u64,
}

impl Backoff {
    fn new() -> Backoff {
        // Seeded from the clock and the address of a local, so instances started together
        // do not retry in step.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let local = 0u8;
        let seed = (t ^ (&local as *const u8 as u64).rotate_left(32)) | 1;
        Backoff {
            next: BACKOFF_MIN,
            rng: seed,
        }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }

    /// The delay before the next attempt.
    fn delay(&mut self) -> Duration {
        // xorshift64: jitter needs no better randomness.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let base = self.next.as_micros() as u64;
        let jittered = base / 2 + self.rng % base.max(1);
        self.next = (self.next * 2).min(BACKOFF_MAX);
        Duration::from_micros(jittered)
    }
}

/// The writer thread's state.
struct Writer {
    shared: Arc<BridgeState>,
    client: redis::Client,
    key: String,
    maxlen: usize,
    conn: Option<redis::Connection>,
    /// The hash of [`XADD_SCRIPT`] in this connection's Redis (`None`: send the script).
    sha: Option<String>,
    /// `BridgeState::reader_losses` when this connection was made.
    seen_losses: u64,
    /// `BridgeState::reader_recoveries` when this writer last looked.
    seen_recoveries: u64,
    backoff: Backoff,
    /// When a connection may be tried again (while `conn` is `None`).
    next_try: Instant,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Job>) {
        self.seen_losses = self.shared.reader_losses.load(Ordering::Acquire);
        let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
        let mut packed = Vec::new();
        loop {
            let wait = match self.conn {
                Some(_) => Duration::from_millis(200),
                None => self
                    .next_try
                    .saturating_duration_since(Instant::now())
                    .clamp(Duration::from_millis(1), Duration::from_millis(200)),
            };
            match rx.recv_timeout(wait) {
                Ok(job) => batch.push(job),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.shared
                .queued
                .fetch_sub(batch.len() as u64, Ordering::Relaxed);
            if self.shared.stopping() {
                self.fail(&mut batch, "Redis bridge stopped");
                continue;
            }
            if self.shared.writes_stopped.load(Ordering::Acquire) {
                self.fail(&mut batch, "the server is stopping");
                continue;
            }
            // The reader lost its connection since ours was made: ours is probably dead too
            // (a restarted Redis), so replace it before using it rather than fail a batch.
            let losses = self.shared.reader_losses.load(Ordering::Acquire);
            if self.conn.is_some() && losses != self.seen_losses {
                self.conn = None;
                self.next_try = Instant::now();
            }
            let recoveries = self.shared.reader_recoveries.load(Ordering::Acquire);
            if recoveries != self.seen_recoveries {
                self.seen_recoveries = recoveries;
                self.next_try = Instant::now();
            }
            if self.conn.is_none() {
                self.try_connect();
            }
            if batch.is_empty() {
                continue;
            }
            let Some(conn) = self.conn.as_mut() else {
                let why = self.shared.last_error.lock().map(|e| e.clone());
                self.fail(
                    &mut batch,
                    &format!("Redis down: {}", why.unwrap_or_default()),
                );
                continue;
            };
            packed.clear();
            let floor = self.shared.floor_ms.load(Ordering::Acquire);
            let xadd = XAdd {
                key: &self.key,
                maxlen: self.maxlen,
                floor_ms: floor,
            };
            for job in &batch {
                match &self.sha {
                    Some(sha) => xadd.eval_sha(&job.publish, sha),
                    None => xadd.eval(&job.publish),
                }
                .write_packed_command(&mut packed);
            }
            let replies = match conn.req_packed_commands(&packed, 0, batch.len()) {
                Ok(replies) if replies.len() == batch.len() => replies,
                Ok(_) => {
                    self.lost(&mut batch, "wrong number of replies to a pipeline".into());
                    continue;
                }
                Err(e) => {
                    self.lost(&mut batch, e.to_string());
                    continue;
                }
            };
            // The script is sent by its hash; a Redis that does not have it cached (its
            // scripts flushed) ran nothing of those: they are sent again with the script.
            // The batch's answers wake each loop once, after all of them.
            let mut again = Vec::new();
            crate::hub::backend::with_wakes_held(|| {
                for (job, reply) in batch.drain(..).zip(replies) {
                    match reply {
                        Value::ServerError(e) if e.code() == "NOSCRIPT" => again.push(job),
                        reply => self.answer(job, reply),
                    }
                }
            });
            if again.is_empty() {
                continue;
            }
            packed.clear();
            for job in &again {
                XAdd {
                    key: &self.key,
                    maxlen: self.maxlen,
                    floor_ms: floor,
                }
                .eval(&job.publish)
                .write_packed_command(&mut packed);
            }
            let Some(conn) = self.conn.as_mut() else {
                self.fail(&mut again, "Redis down");
                continue;
            };
            match conn.req_packed_commands(&packed, 0, again.len()) {
                Ok(replies) if replies.len() == again.len() => {
                    for (job, reply) in again.drain(..).zip(replies) {
                        self.answer(job, reply);
                    }
                }
                Ok(_) => self.lost(&mut again, "wrong number of replies to a pipeline".into()),
                Err(e) => self.lost(&mut again, e.to_string()),
            }
        }
        self.fail(&mut batch, "Redis bridge stopped");
    }

    /// Answers a job with Redis's reply to its `XADD`.
    fn answer(&self, job: Job, reply: Value) {
        let answer = match reply {
            Value::BulkString(id) => String::from_utf8(id).map_err(|_| "bad id from Redis".into()),
            Value::SimpleString(id) => Ok(id),
            // A retained entry has the publisher's id (the script's check).
            Value::ServerError(e) if e.code() == "IDTAKEN" => {
                (job.done)(Err(crate::hub::backend::ID_TAKEN.into()));
                return;
            }
            Value::ServerError(e) => Err(redis::RedisError::from(e).to_string()),
            other => Err(format!("unexpected XADD reply {other:?}")),
        };
        if let Ok(id) = &answer {
            self.shared.floor_ms.fetch_max(id_ms(id), Ordering::AcqRel);
        }
        let counter = match answer {
            Ok(_) => &self.shared.publishes_stored,
            Err(_) => &self.shared.publish_errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        (job.done)(answer);
    }

    fn try_connect(&mut self) {
        if Instant::now() < self.next_try || self.shared.stopping() {
            return;
        }
        let losses = self.shared.reader_losses.load(Ordering::Acquire);
        match connect(&self.client) {
            Ok(mut c) => {
                self.sha = load_script(&mut c);
                self.conn = Some(c);
                self.seen_losses = losses;
                self.backoff.reset();
                if !self.shared.writer_up.swap(true, Ordering::AcqRel) {
                    self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                }
                self.shared.report("");
            }
            Err(e) => {
                self.down(format!("Redis writer: {e}"));
            }
        }
    }

    /// The connection failed under a batch: every job in it is answered `Err`.
    fn lost(&mut self, batch: &mut Vec<Job>, e: String) {
        let why = format!("Redis writer: {e}");
        self.down(why.clone());
        self.fail(batch, &why);
    }

    fn down(&mut self, why: String) {
        self.conn = None;
        self.next_try = Instant::now() + self.backoff.delay();
        self.shared.set_error(&why);
        self.shared.writer_up.store(false, Ordering::Release);
        self.shared.report(&why);
    }

    fn fail(&self, batch: &mut Vec<Job>, why: &str) {
        for job in batch.drain(..) {
            self.shared.publish_errors.fetch_add(1, Ordering::Relaxed);
            (job.done)(Err(why.to_string()));
        }
    }
}

/// Every `XADD` goes through this script, so that one id never names two events, even when
/// the stream is deleted or recreated under the servers (`DEL`, `FLUSHALL`, eviction): Redis
/// numbers the entries of a new stream from its clock again, which gave ids that earlier
/// events had. When the stream does not exist, the script first starts it with a mark entry
/// (`x log-reset`) whose id is above Redis's clock now and above the greatest millisecond this
/// instance has seen in an id (`ARGV[2]`), so every id of the new store is above every id issued
/// before; every reader that meets the mark tells its subscribers (`reset`, `log-reset`).
/// `ARGV[1]` is the approximate `MAXLEN`, `ARGV[3..]` the entry's fields; with no fields the
/// script only makes sure the stream exists (a reader that found it gone) and returns 1 if it
/// started it; with `ARGV[3] == "!"` it adds the mark to a stream that exists (a reader that
/// found it recreated by someone else, without a mark), so that the ids after it are above
/// every earlier one again and every reader tells its subscribers.
const XADD_SCRIPT: &str = r"
local created = 0
local force = ARGV[3] == '!'
if force or redis.call('EXISTS', KEYS[1]) == 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local ms = math.max(now, tonumber(ARGV[2])) + 1
  local ok = redis.pcall('XADD', KEYS[1], string.format('%.0f', ms) .. '-0', 'x', 'log-reset')
  if type(ok) == 'string' then
    created = 1
    redis.call('DEL', KEYS[2], KEYS[3])
  end
end
if #ARGV < 3 or force then
  return created
end
local pid = nil
for i = 3, #ARGV - 1, 2 do
  if ARGV[i] == 'i' then pid = ARGV[i + 1] end
end
if pid then
  local at = redis.call('HGET', KEYS[2], pid)
  if at and #redis.call('XRANGE', KEYS[1], at, at) > 0 then
    return redis.error_reply('IDTAKEN an event with this id is in the store')
  end
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 3))
if pid then
  redis.call('HSET', KEYS[2], pid, id)
  redis.call('RPUSH', KEYS[3], id .. ' ' .. pid)
end
local function older(a, b)
  local am, an = string.match(a, '^(%d+)-(%d+)')
  local bm, bn = string.match(b, '^(%d+)-(%d+)')
  am, an, bm, bn = tonumber(am), tonumber(an), tonumber(bm), tonumber(bn)
  return am < bm or (am == bm and an < bn)
end
local head = redis.call('LINDEX', KEYS[3], 0)
if head then
  local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1][1]
  while head do
    local sp = string.find(head, ' ', 1, true)
    local hid = string.sub(head, 1, sp - 1)
    if not older(hid, first) then break end
    redis.call('LPOP', KEYS[3])
    local hp = string.sub(head, sp + 1)
    if redis.call('HGET', KEYS[2], hp) == hid then
      redis.call('HDEL', KEYS[2], hp)
    end
    head = redis.call('LINDEX', KEYS[3], 0)
  end
end
return id
";

/// The keys beside the stream that [`XADD_SCRIPT`] keeps publisher ids in: a hash from each
/// id to its entry's id (for the duplicate check, atomic with the `XADD`), and a list of
/// `<entry id> <publisher id>` in the stream's order, trimmed from its head as `MAXLEN` trims
/// the stream (at every publish, entries older than the stream's first are dropped from
/// both), so both hold at most one item per entry with an id still in the stream, plus those
/// trimmed since the last publish. A stream deleted and started again (its mark) clears both.
fn id_keys(key: &str) -> [String; 2] {
    [format!("{key}:ids"), format!("{key}:id-order")]
}

/// The mark entry's field and value (see [`XADD_SCRIPT`]).
const MARK_FIELD: &str = "x";
const MARK_VALUE: &str = "log-reset";

/// Where and how a publish is appended: the stream's key, its `MAXLEN`, and the floor (in
/// ms) under which no new id is given.
#[derive(Clone, Copy, Debug)]
struct XAdd<'a> {
    key: &'a str,
    maxlen: usize,
    floor_ms: u64,
}

impl XAdd<'_> {
    /// The `XADD` of `p` through [`XADD_SCRIPT`]: `EVAL script 3 key ids order N floor_ms t
    /// <topics> d <data> [y <type>] [r <retry>] [p 1]`.
    fn eval(&self, p: &Publish) -> redis::Cmd {
        let mut c = redis::cmd("EVAL");
        c.arg(XADD_SCRIPT);
        self.args(&mut c, p);
        c
    }

    /// [`eval`](Self::eval) by the script's hash (`EVALSHA`, the hash `SCRIPT LOAD` gave when
    /// the writer connected): the script's text is not sent with every publish; a Redis
    /// without it cached answers `NOSCRIPT`, and the writer sends those again with
    /// [`eval`](Self::eval).
    fn eval_sha(&self, p: &Publish, sha: &str) -> redis::Cmd {
        let mut c = redis::cmd("EVALSHA");
        c.arg(sha);
        self.args(&mut c, p);
        c
    }

    fn args(&self, c: &mut redis::Cmd, p: &Publish) {
        c.arg(3).arg(self.key).arg(&id_keys(self.key)[..]);
        c.arg(self.maxlen).arg(self.floor_ms);
        for f in fields(p) {
            c.arg(f);
        }
    }
}

/// An entry's fields: `t <topics joined by \n> d <data> [y <type>] [r <retry>] [p 1]
/// [i <publisher id>]`.
fn fields(p: &Publish) -> Vec<String> {
    let mut f = vec!["t".into(), p.topics.join("\n"), "d".into(), p.data.clone()];
    if let Some(t) = &p.event_type {
        f.extend(["y".into(), t.clone()]);
    }
    if let Some(r) = p.retry {
        f.extend(["r".into(), r.to_string()]);
    }
    if p.private {
        f.extend(["p".into(), "1".into()]);
    }
    if let Some(id) = &p.id {
        f.extend(["i".into(), id.clone()]);
    }
    f
}

/// An id as numbers, to compare ids (`(0, 0)` if it is not one).
fn id_order(id: &str) -> (u64, u64) {
    let (ms, n) = id.split_once('-').unwrap_or((id, "0"));
    (ms.parse().unwrap_or(0), n.parse().unwrap_or(0))
}

/// `SCRIPT LOAD` of [`XADD_SCRIPT`]: its hash, or `None` (then the script is sent whole).
fn load_script(c: &mut redis::Connection) -> Option<String> {
    match c.req_command(redis::cmd("SCRIPT").arg("LOAD").arg(XADD_SCRIPT)) {
        Ok(Value::BulkString(b)) => String::from_utf8(b).ok(),
        Ok(Value::SimpleString(s)) => Some(s),
        _ => None,
    }
}

/// The millisecond part of an id (`0` if it is not one).
fn id_ms(id: &str) -> u64 {
    id.split('-')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0)
}

/// Entries read and parsed.
#[derive(Default)]
struct Batch {
    events: Vec<(String, Publish)>,
    skipped: u64,
    /// The id of the last entry seen, read or skipped.
    last_id: Option<String>,
    /// Entries seen (read or skipped).
    seen: usize,
    /// The id of the first entry seen.
    first_id: Option<String>,
}

/// Loads the newest entries (oldest first), at most `n` of them and about `max_bytes`, and
/// the position to read on from. Read newest first in pages sized from the entries seen, so
/// that memory stays near `max_bytes` however long the stream is.
fn load_backfill(
    conn: &mut redis::Connection,
    key: &str,
    n: usize,
    max_bytes: usize,
) -> Result<(Batch, String), String> {
    let mut b = Batch::default();
    let mut newest: Option<String> = None;
    let mut bytes = 0usize;
    let mut from = "+".to_string();
    let mut count = 1usize;
    'pages: loop {
        let mut c = redis::cmd("XREVRANGE");
        c.arg(key).arg(&from).arg("-").arg("COUNT").arg(count);
        let reply = conn.req_command(&c).map_err(|e| e.to_string())?;
        if let Value::ServerError(e) = reply {
            return Err(redis::RedisError::from(e).to_string());
        }
        let entries = match reply {
            Value::Array(a) => a,
            Value::Nil => Vec::new(),
            other => return Err(format!("unexpected XREVRANGE reply {other:?}")),
        };
        let got = entries.len();
        let mut page = Batch::default();
        parse_entries(entries, &mut page);
        b.skipped += page.skipped;
        b.seen += page.seen;
        if newest.is_none() {
            newest = page.first_id.clone();
        }
        if let Some(last) = &page.last_id {
            from = format!("({last}");
        }
        let mut largest = 1;
        for (id, p) in page.events {
            let size = entry_bytes(&p);
            largest = largest.max(size);
            if b.events.len() >= n || (bytes + size > max_bytes && !b.events.is_empty()) {
                break 'pages;
            }
            bytes += size;
            b.events.push((id, p));
        }
        if got < count || n == 0 {
            break;
        }
        count = (PAGE_BYTES / largest).clamp(1, READ_COUNT);
    }
    b.events.reverse();
    b.last_id = newest.clone();
    Ok((b, newest.unwrap_or_else(|| "0-0".to_string())))
}

/// About what an entry costs in memory once read.
fn entry_bytes(p: &Publish) -> usize {
    p.data.len()
        + p.topics.iter().map(|t| t.len() + 16).sum::<usize>()
        + p.event_type.as_ref().map_or(0, String::len)
        + 64
}

/// A page read for a replay, waiting for the range thread.
struct RangeJob {
    /// A store id, or with `by_id` a publisher id.
    after: String,
    until: String,
    count: u32,
    by_id: bool,
    done: PageDone,
}

/// The range thread's state: its own connection (made when first needed, again after an
/// error), the replay budget.
struct Ranger {
    shared: Arc<BridgeState>,
    client: redis::Client,
    key: String,
    conn: Option<redis::Connection>,
    budget: Arc<ReplayBudget>,
}

impl Ranger {
    fn run(mut self, rx: mpsc::Receiver<RangeJob>) {
        loop {
            let job = match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) if !self.shared.stopping() => continue,
                Err(_) => break,
            };
            // Room for one more page: else wait until streams have written what they hold
            // (a replay asks for its next page only then, so this always comes).
            if !self.budget.has_room(PAGE_BYTES as u64) {
                self.budget.waits.fetch_add(1, Ordering::Relaxed);
                while !self.budget.has_room(PAGE_BYTES as u64) && !self.shared.stopping() {
                    thread::sleep(Duration::from_millis(2));
                }
            }
            if self.shared.stopping() {
                (job.done)(Err("Redis bridge stopped".into()));
                break;
            }
            let mut page = self.read(&job);
            if page.is_err() && !self.shared.stopping() {
                // Once more on a fresh connection (a timeout under load, a Redis that
                // restarted) before the replay gives up with a `reset`.
                self.conn = None;
                page = self.read(&job);
            }
            if page.is_err() {
                self.conn = None;
            }
            (job.done)(page);
        }
        while let Ok(job) = rx.try_recv() {
            (job.done)(Err("Redis bridge stopped".into()));
        }
    }

    /// One page: `XRANGE key (after until COUNT n`, then whether `after` is still in the store
    /// (`XRANGE key after after`: read after the page, so if it is there now, nothing after
    /// it had been trimmed when the page was read), and the store's first id.
    fn read(&mut self, job: &RangeJob) -> Result<StorePage, String> {
        if self.conn.is_none() {
            self.conn = Some(connect(&self.client)?);
        }
        let conn = self.conn.as_mut().ok_or("no connection")?;
        let count = job.count.clamp(1, MAX_PAGE_COUNT);
        let from = if job.by_id {
            let [ids, _] = id_keys(&self.key);
            match conn
                .req_command(redis::cmd("HGET").arg(&ids).arg(&job.after))
                .map_err(|e| e.to_string())?
            {
                Value::BulkString(b) => {
                    Some(String::from_utf8(b).map_err(|_| "bad id from Redis".to_string())?)
                }
                Value::SimpleString(s) => Some(s),
                Value::Nil => None,
                Value::ServerError(e) => return Err(redis::RedisError::from(e).to_string()),
                other => return Err(format!("unexpected HGET reply {other:?}")),
            }
        } else {
            None
        };
        let after = match (&from, job.by_id) {
            (Some(at), _) => at.as_str(),
            // No entry has that publisher id.
            (None, true) => {
                return Ok(StorePage {
                    end: true,
                    next_count: count,
                    ..StorePage::default()
                })
            }
            (None, false) => job.after.as_str(),
        };
        // The replay's range ends at its entry at least.
        let until = match &from {
            Some(at) if id_order(at) > id_order(&job.until) => at.as_str(),
            _ => job.until.as_str(),
        };
        let mut pipe = redis::pipe();
        pipe.cmd("XRANGE")
            .arg(&self.key)
            .arg(format!("({after}"))
            .arg(until)
            .arg("COUNT")
            .arg(count)
            .cmd("XRANGE")
            .arg(&self.key)
            .arg(after)
            .arg(after)
            .cmd("XRANGE")
            .arg(&self.key)
            .arg("-")
            .arg("+")
            .arg("COUNT")
            .arg(1);
        let replies: Vec<Value> = pipe.query(conn).map_err(|e| e.to_string())?;
        let Ok([page, here, first]) = <[Value; 3]>::try_from(replies) else {
            return Err("wrong number of replies to a pipeline".into());
        };
        let Value::Array(entries) = page else {
            return Err(format!("unexpected XRANGE reply {page:?}"));
        };
        let got = entries.len();
        let mut b = Batch::default();
        parse_entries(entries, &mut b);
        let follows = matches!(&here, Value::Array(a) if !a.is_empty());
        let resumed = match here {
            Value::Array(at) => {
                let mut r = Batch::default();
                parse_entries(at, &mut r);
                r.events.pop().map(|(id, mut p)| {
                    p.data = String::new();
                    (id, p)
                })
            }
            _ => None,
        };
        let oldest = match first {
            Value::Array(mut a) if !a.is_empty() => match a.swap_remove(0) {
                Value::Array(mut e) if !e.is_empty() => text(e.swap_remove(0)),
                _ => None,
            },
            _ => None,
        };
        let bytes: usize = b.events.iter().map(|(_, p)| entry_bytes(p)).sum();
        let largest = b.events.iter().map(|(_, p)| entry_bytes(p)).max();
        let next_count = match largest {
            Some(l) => (PAGE_BYTES / l.max(1)) as u32,
            None => count,
        };
        Ok(StorePage {
            hold: self.budget.hold(bytes as u64),
            last: b.last_id,
            entries: b.events,
            follows,
            oldest,
            end: got < count as usize,
            next_count: next_count.clamp(1, MAX_PAGE_COUNT),
            from,
            resumed,
        })
    }
}

/// Parses `[[id, [field, value, ...]], ...]` into `b`.
fn parse_entries(entries: Vec<Value>, b: &mut Batch) {
    for entry in entries {
        let Value::Array(mut parts) = entry else {
            b.skipped += 1;
            continue;
        };
        if parts.len() != 2 {
            b.skipped += 1;
            continue;
        }
        let fields = parts.pop();
        let Some(id) = parts.pop().and_then(text) else {
            // Without an id the position cannot move past it; it cannot happen with a real
            // Redis, and skipping it keeps the reader going.
            b.skipped += 1;
            continue;
        };
        b.seen += 1;
        if b.first_id.is_none() {
            b.first_id = Some(id.clone());
        }
        match fields.and_then(parse_fields) {
            Some(p) => b.events.push((id.clone(), p)),
            None => b.skipped += 1,
        }
        b.last_id = Some(id);
    }
}

/// A bulk or simple string as UTF-8 text.
fn text(v: Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

/// An entry's fields as a publish; `None` when it cannot be read. Unknown fields are ignored
/// (room for later writers to add some).
fn parse_fields(fields: Value) -> Option<Publish> {
    let pairs: Vec<(Value, Value)> = match fields {
        Value::Array(flat) => {
            if flat.len() % 2 != 0 {
                return None;
            }
            let mut it = flat.into_iter();
            std::iter::from_fn(|| Some((it.next()?, it.next()?))).collect()
        }
        Value::Map(m) => m,
        _ => return None,
    };
    let (mut topics, mut data, mut ty, mut retry, mut private) = (None, None, None, None, None);
    let mut id = None;
    let mut mark = None;
    for (k, v) in pairs {
        let k = text(k)?;
        let v = text(v)?;
        let slot = match k.as_str() {
            "t" => &mut topics,
            "d" => &mut data,
            "y" => &mut ty,
            "r" => &mut retry,
            "p" => &mut private,
            "i" => &mut id,
            MARK_FIELD => &mut mark,
            _ => continue,
        };
        if slot.replace(v).is_some() {
            return None;
        }
    }
    if mark.as_deref() == Some(MARK_VALUE) {
        // The store's mark that it was (re)created: an event without topics (see `Hub::append_redis_entries`).
        return Some(Publish::default());
    }
    let retry = match retry {
        Some(r) => Some(crate::hub::parse::parse_retry(&r).ok()?),
        None => None,
    };
    let mut p = Publish {
        topics: topics?.split('\n').map(str::to_string).collect(),
        data: data?,
        event_type: ty,
        retry,
        // Anything but an explicit "0" keeps an event private: never widen who may read it.
        private: private.is_some_and(|p| p != "0"),
        id,
    };
    // The publish path's own rule, so an entry it accepted is never skipped here.
    crate::hub::parse::check_event(&mut p).ok()?;
    Some(p)
}

/// Parses an `XREAD` reply for one key: `[[key, entries]]` (RESP2) or `{key: entries}`
/// (RESP3); `Nil` when the block timed out.
fn parse_xread(reply: Value, b: &mut Batch) -> Result<(), String> {
    let streams: Vec<Value> = match reply {
        Value::Nil => return Ok(()),
        Value::Array(a) => a
            .into_iter()
            .filter_map(|s| match s {
                Value::Array(mut kv) if kv.len() == 2 => kv.pop(),
                _ => None,
            })
            .collect(),
        Value::Map(m) => m.into_iter().map(|(_, v)| v).collect(),
        Value::ServerError(e) => return Err(redis::RedisError::from(e).to_string()),
        other => return Err(format!("unexpected XREAD reply {other:?}")),
    };
    for entries in streams {
        match entries {
            Value::Array(e) => parse_entries(e, b),
            other => return Err(format!("unexpected XREAD entries {other:?}")),
        }
    }
    Ok(())
}

/// Entries behind the store, from `XINFO STREAM`'s `entries-added` (a counter that only grows,
/// kept across restarts with persistence) and `last-generated-id`. Whenever the store's last id
/// is ours, our position in `entries-added` is known exactly; between such moments it moves by
/// the entries read.
#[derive(Default)]
struct LagTracker {
    /// `entries-added` at our position, once known.
    base: Option<u64>,
    /// Entries read since `base` was taken.
    since: u64,
    last_check: Option<Instant>,
}

impl LagTracker {
    fn due(&self, now: Instant) -> bool {
        self.last_check.map_or(true, |t| now >= t + LAG_EVERY)
    }

    /// Updates from an `XINFO STREAM` reply; `None` when the key does not exist.
    fn update(&mut self, info: Option<(u64, String)>, last_id: &str) -> u64 {
        match info {
            None => {
                // A new stream counts from zero.
                self.base = Some(0);
                self.since = 0;
                0
            }
            Some((added, last)) => {
                if last == last_id {
                    self.base = Some(added);
                    self.since = 0;
                }
                match self.base {
                    Some(b) if b + self.since <= added => added - b - self.since,
                    // The counter went back (the stream was recreated): unknown until we
                    // catch up again.
                    Some(_) => {
                        self.base = None;
                        0
                    }
                    None => u64::from(last.as_str() != last_id),
                }
            }
        }
    }
}

/// The reader thread's state.
struct Reader {
    shared: Arc<BridgeState>,
    client: redis::Client,
    key: String,
    conn: Option<redis::Connection>,
    last_id: String,
    backoff: Backoff,
    lag: LagTracker,
    /// A mark was read since the last `XINFO` check (which explains a counter gone back).
    mark_read: bool,
}

/// Why the reader restarts the store: it is missing, or it was recreated without a mark.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Restart {
    Missing,
    Recreated,
}

impl Reader {
    fn run(mut self, backfill: Vec<(String, Publish)>) {
        self.shared
            .events_read
            .fetch_add(backfill.len() as u64, Ordering::Relaxed);
        self.shared.sink.on_events(backfill);
        let mut catching_up = true;
        while !self.shared.stopping() {
            if self.conn.is_none() {
                thread::park_timeout(self.backoff.delay());
                if self.shared.stopping() {
                    break;
                }
                match connect(&self.client) {
                    Ok(c) => {
                        self.conn = Some(c);
                        self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                        catching_up = true;
                    }
                    Err(e) => {
                        self.down(format!("Redis reader: {e}"));
                        continue;
                    }
                }
            }
            // Catching up: read without blocking until a short batch says we are at the end;
            // only then is the bridge up.
            let block = if catching_up { None } else { Some(BLOCK_MS) };
            match self.read(block) {
                Ok(n) => {
                    if catching_up && n < READ_COUNT {
                        catching_up = false;
                        self.backoff.reset();
                        self.shared.reader_up.store(true, Ordering::Release);
                        self.shared.reader_recoveries.fetch_add(1, Ordering::AcqRel);
                        self.shared.report("");
                    }
                }
                Err(e) => {
                    self.down(format!("Redis reader: {e}"));
                    continue;
                }
            }
            let now = Instant::now();
            if self.lag.due(now) {
                self.lag.last_check = Some(now);
                if let Err(e) = self.check_lag() {
                    self.down(format!("Redis reader: {e}"));
                }
            }
        }
    }

    /// One `XREAD`; hands what it read to the sink. Returns the entries seen.
    fn read(&mut self, block: Option<u64>) -> Result<usize, String> {
        let conn = self.conn.as_mut().ok_or("no connection")?;
        let mut c = redis::cmd("XREAD");
        if let Some(ms) = block {
            c.arg("BLOCK").arg(ms);
        }
        c.arg("COUNT")
            .arg(READ_COUNT)
            .arg("STREAMS")
            .arg(&self.key)
            .arg(&self.last_id);
        let reply = conn.req_command(&c).map_err(|e| e.to_string())?;
        let mut b = Batch::default();
        parse_xread(reply, &mut b)?;
        if self.shared.stopping() {
            // `stop` may have given up waiting: touch the sink no more.
            return Ok(0);
        }
        self.shared
            .entries_skipped
            .fetch_add(b.skipped, Ordering::Relaxed);
        self.lag.since += b.seen as u64;
        // A mark (the store started again) after anything this reader has read: the store was
        // deleted or recreated under the server, and what it had not read yet is lost. The
        // mark that starts a store this reader never read anything of is no loss: dropped.
        let mut read_before = self.last_id != "0-0";
        let mut mark_read = false;
        b.events.retain(|(id, p)| {
            let mark = p.topics.is_empty();
            let keep = !mark || read_before;
            if mark {
                mark_read = true;
            }
            if mark && read_before {
                self.shared.store_resets.fetch_add(1, Ordering::Relaxed);
                crate::util::log::line(
                    "redis",
                    &[
                        ("state", crate::util::log::V::S("log-reset")),
                        ("mark", crate::util::log::V::S(id)),
                        ("after", crate::util::log::V::S(&self.last_id)),
                    ],
                );
            }
            read_before = true;
            keep
        });
        self.mark_read |= mark_read;
        self.shared
            .events_read
            .fetch_add(b.events.len() as u64, Ordering::Relaxed);
        if let Some(id) = b.last_id {
            self.shared.floor_ms.fetch_max(id_ms(&id), Ordering::AcqRel);
            self.last_id = id;
        }
        if !b.events.is_empty() {
            self.shared.sink.on_events(b.events);
        }
        Ok(b.seen)
    }

    /// The store is gone (`DEL`, `FLUSHALL`, eviction) though this reader had read from it:
    /// start it again with its mark now (unless a writer already did), so that every reader
    /// tells its subscribers even if nothing is published for a while (`Restart::Missing`). Or
    /// (`Restart::Recreated`) the stream exists but was recreated without a mark (by another
    /// writer): add one anyway.
    fn restart_store(&mut self, why: Restart) -> Result<(), String> {
        let conn = self.conn.as_mut().ok_or("no connection")?;
        let floor = self.shared.floor_ms.load(Ordering::Acquire);
        let mut c = redis::cmd("EVAL");
        c.arg(XADD_SCRIPT)
            .arg(3)
            .arg(&self.key)
            .arg(&id_keys(&self.key)[..]);
        c.arg(0).arg(floor);
        if why == Restart::Recreated {
            c.arg("!");
        }
        match conn.req_command(&c).map_err(|e| e.to_string())? {
            Value::ServerError(e) => Err(redis::RedisError::from(e).to_string()),
            _ => Ok(()),
        }
    }

    fn check_lag(&mut self) -> Result<(), String> {
        let conn = self.conn.as_mut().ok_or("no connection")?;
        let mut c = redis::cmd("XINFO");
        c.arg("STREAM").arg(&self.key);
        let info = match conn.req_command(&c).map_err(|e| e.to_string())? {
            Value::ServerError(e) if e.details().is_some_and(|d| d.contains("no such key")) => None,
            Value::ServerError(e) => return Err(redis::RedisError::from(e).to_string()),
            // Before Redis 7.0 there is no `entries-added`: the lag is not known then.
            reply => match xinfo_fields(reply) {
                Some(info) => Some(info),
                None => return Ok(()),
            },
        };
        // The store was recreated under us without a mark (by a writer other than sse-server):
        // its `entries-added` went back below what we have read since we last knew it, or its
        // last id went back below ours.
        let went_back = match (&info, self.lag.base) {
            (Some((added, last)), Some(base)) => {
                base + self.lag.since > *added || id_order(last) < id_order(&self.last_id)
            }
            _ => false,
        };
        let explained = std::mem::take(&mut self.mark_read);
        if self.last_id != "0-0" {
            if info.is_none() {
                self.restart_store(Restart::Missing)?;
            } else if went_back && !explained {
                self.restart_store(Restart::Recreated)?;
            }
        }
        let lag = self.lag.update(info, &self.last_id);
        self.shared.lag.store(lag, Ordering::Relaxed);
        Ok(())
    }

    fn down(&mut self, why: String) {
        if self.conn.take().is_some() {
            self.shared.reader_losses.fetch_add(1, Ordering::AcqRel);
        }
        self.shared.set_error(&why);
        self.shared.reader_up.store(false, Ordering::Release);
        self.shared.report(&why);
    }
}

/// `entries-added` and `last-generated-id` from an `XINFO STREAM` reply (flat array in RESP2,
/// a map in RESP3).
fn xinfo_fields(reply: Value) -> Option<(u64, String)> {
    let pairs: Vec<(Value, Value)> = match reply {
        Value::Array(flat) => {
            let mut it = flat.into_iter();
            std::iter::from_fn(|| Some((it.next()?, it.next()?))).collect()
        }
        Value::Map(m) => m,
        _ => return None,
    };
    let (mut added, mut last) = (None, None);
    for (k, v) in pairs {
        match text(k).as_deref() {
            Some("entries-added") => {
                added = match v {
                    Value::Int(n) => u64::try_from(n).ok(),
                    other => text(other).and_then(|s| s.parse().ok()),
                }
            }
            Some("last-generated-id") => last = text(v),
            _ => {}
        }
    }
    Some((added?, last?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn entry(id: &str, fields: &[&str]) -> Value {
        Value::Array(vec![
            bulk(id),
            Value::Array(fields.iter().map(|f| bulk(f)).collect()),
        ])
    }

    #[test]
    fn fields_round_trip_the_xadd_layout() {
        let p = Publish {
            topics: vec!["a".into(), "b/c".into()],
            data: "x\ny".into(),
            event_type: Some("note".into()),
            retry: Some(1500),
            private: true,
            id: Some("urn:uuid:1".into()),
        };
        let xadd = XAdd {
            key: "k",
            maxlen: 10,
            floor_ms: 1_700_000_000_000,
        };
        let args: Vec<String> = xadd
            .eval(&p)
            .args_iter()
            .filter_map(|a| match a {
                redis::Arg::Simple(b) => Some(String::from_utf8(b.to_vec()).unwrap()),
                _ => None,
            })
            .collect();
        // Through the script (so that ids stay unique across a store deleted under the server).
        assert_eq!(args[..2], ["EVAL", XADD_SCRIPT]);
        assert_eq!(
            args[2..],
            [
                "3",
                "k",
                "k:ids",
                "k:id-order",
                "10",
                "1700000000000",
                "t",
                "a\nb/c",
                "d",
                "x\ny",
                "y",
                "note",
                "r",
                "1500",
                "p",
                "1",
                "i",
                "urn:uuid:1"
            ]
        );
        let fields: Vec<&str> = args[8..].iter().map(String::as_str).collect();
        // The store's mark reads as an event without topics (a `reset` for every subscriber).
        let mut m = Batch::default();
        parse_entries(vec![entry("1-0", &[MARK_FIELD, MARK_VALUE])], &mut m);
        assert_eq!(m.events, vec![("1-0".to_string(), Publish::default())]);
        let mut b = Batch::default();
        parse_entries(vec![entry("1-1", &fields)], &mut b);
        assert_eq!(b.events, vec![("1-1".to_string(), p)]);
    }

    #[test]
    fn unreadable_entries_are_skipped_and_the_position_moves_on() {
        let bad: &[&[&str]] = &[
            &["d", "x"],                            // no topics
            &["t", "a"],                            // no data
            &["t", "", "d", "x"],                   // empty topic
            &["t", "a\rb", "d", "x"],               // control character in a topic
            &["t", "a", "d", "x", "r", "-1"],       // bad retry
            &["t", "a", "d", "x", "y", "a\nb"],     // line break in a type
            &["t", "a", "d", "x", "t", "b"],        // a field twice
            &["t", "a", "d"],                       // odd field list
            &["t", "a", "d", "x", "y", "reset"],    // the reserved type (as at publish)
            &["t", "a", "d", "x", "y", "a\u{1b}b"], // ESC in a type (as at publish)
            &["t", "*", "d", "x"],                  // `*` is for subscribing (as at publish)
        ];
        for (i, f) in bad.iter().enumerate() {
            let mut b = Batch::default();
            parse_entries(vec![entry(&format!("5-{i}"), f)], &mut b);
            assert!(b.events.is_empty(), "{f:?}");
            assert_eq!((b.skipped, b.seen), (1, 1), "{f:?}");
            assert_eq!(b.last_id.as_deref(), Some(format!("5-{i}").as_str()));
        }
        let mut b = Batch::default();
        let odd = vec![
            Value::Int(3),
            Value::Array(vec![]),
            Value::Array(vec![Value::Nil, Value::Array(vec![])]),
            Value::Array(vec![
                bulk("9-1"),
                Value::Array(vec![Value::Int(1), bulk("x")]),
            ]),
            entry("9-2", &["t", "a", "d", "", "extra", "ignored"]),
        ];
        parse_entries(odd, &mut b);
        assert_eq!(b.skipped, 4);
        assert_eq!(b.events.len(), 1);
        assert_eq!(b.last_id.as_deref(), Some("9-2"));
        // What the publish rule accepts is read, as it would have been stored: NUL in data,
        // a repeated topic kept once.
        let mut b = Batch::default();
        parse_entries(vec![entry("9-3", &["t", "a\na", "d", "x\0y"])], &mut b);
        assert_eq!(b.skipped, 0);
        assert_eq!(b.events[0].1.topics, ["a"]);
        assert_eq!(b.events[0].1.data, "x\0y");
    }

    #[test]
    fn xread_replies_resp2_resp3_and_timeouts() {
        let mut b = Batch::default();
        parse_xread(Value::Nil, &mut b).unwrap();
        assert_eq!(b.seen, 0);
        let entries = Value::Array(vec![entry("1-0", &["t", "a", "d", "1"])]);
        parse_xread(
            Value::Array(vec![Value::Array(vec![bulk("k"), entries.clone()])]),
            &mut b,
        )
        .unwrap();
        parse_xread(Value::Map(vec![(bulk("k"), entries)]), &mut b).unwrap();
        assert_eq!(b.events.len(), 2);
        assert!(parse_xread(Value::Int(1), &mut b).is_err());
    }

    #[test]
    fn passwords_never_reach_messages() {
        for (url, shown) in [
            ("redis://:s3cret@h:1/0", "redis://:***@h:1/0"),
            ("redis://user:s3cret@h:1", "redis://user:***@h:1"),
            ("redis://token@h:1", "redis://***@h:1"),
            ("redis://h:1/2", "redis://h:1/2"),
        ] {
            assert_eq!(redact(url), shown);
        }
        let e = open_client("rediss://:s3cret@h:1").unwrap_err();
        assert!(e.contains("TLS") && !e.contains("s3cret"), "{e}");
        let e = open_client("http://h:1").unwrap_err();
        assert!(e.contains("not a Redis URL"), "{e}");
    }

    #[test]
    fn backoff_doubles_to_two_seconds_with_jitter() {
        let mut b = Backoff::new();
        let mut base = BACKOFF_MIN;
        for _ in 0..12 {
            let d = b.delay();
            assert!(d >= base / 2 && d < base * 3 / 2, "{d:?} for {base:?}");
            base = (base * 2).min(BACKOFF_MAX);
        }
        b.reset();
        assert!(b.delay() < BACKOFF_MIN * 3 / 2);
    }

    #[test]
    fn lag_counts_entries_behind_the_store() {
        let mut l = LagTracker::default();
        // Not yet caught up at a check: unknown beyond "behind".
        assert_eq!(l.update(Some((10, "1-9".into())), "1-5"), 1);
        // Caught up: the position is known.
        assert_eq!(l.update(Some((10, "1-9".into())), "1-9"), 0);
        l.since += 3;
        assert_eq!(l.update(Some((20, "1-19".into())), "1-12"), 7);
        // The stream was recreated: a fresh count.
        assert_eq!(l.update(None, "1-12"), 0);
        assert_eq!(l.update(Some((2, "2-1".into())), "1-12"), 2);
    }
}
