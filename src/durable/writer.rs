//! The event store's thread: publishes queue here (bounded, never blocking a loop), are written
//! as records, made durable under the `--fsync` policy, handed to the history (the [`Sink`])
//! and only then answered. Segments roll at a size derived from `--history-bytes` and are
//! deleted once the history has dropped every event in them.
//!
//! - `always`: no publish is answered before a sync that covers it, and the store never waits
//!   to gather more: what is queued when the store looks (the publishes that arrived together,
//!   and those that arrived while the last sync ran) is written and synced at once, as one
//!   group, as Redis's `appendfsync always` syncs once per event-loop turn;
//! - `batch` (group commit, the default): the same promise and, today, the same schedule: a
//!   window that held a group back to gather up to the last group's size (300 µs) measured
//!   no gain and would cost every lone publish its length (docs/performance.md);
//! - `off`: written to the OS's cache and answered; a process crash loses nothing, a power
//!   loss may lose what the OS had not written yet.
//!
//! **Invariant:** a publish is answered `Ok` only after its record is written (and, unless
//! `off`, synced) and its event is in the history; every other outcome answers `Err` with a
//! one-line reason. Nothing here runs on a loop's thread but [`DurableStore::submit`] and
//! [`DurableStore::stats`], which do not block.

use super::format;
use super::store::{self, Store};
use crate::hub::backend::Done;
use crate::hub::history::{Publish, Restored};
use crate::util::latency;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// Publishes that may wait for the store; more are refused at once.
pub const QUEUE_CAPACITY: usize = 65_536;
/// Bytes of publishes (data and topics) that may wait for the store; past it a publish is
/// refused at once, so a slow disk cannot make waiting publishes grow memory without bound.
pub const QUEUE_BYTES: u64 = 64 << 20;
/// The most publishes written (and synced) together.
const MAX_BATCH: usize = 1024;

/// `--fsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    Always,
    Batch,
    Off,
}

impl Fsync {
    /// Parses the flag's value.
    pub fn parse(s: &str) -> Option<Fsync> {
        match s {
            "always" => Some(Fsync::Always),
            "batch" => Some(Fsync::Batch),
            "off" => Some(Fsync::Off),
            _ => None,
        }
    }

    /// The flag's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::Batch => "batch",
            Fsync::Off => "off",
        }
    }
}

/// What the store is opened with.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub dir: PathBuf,
    pub fsync: Fsync,
    pub history_events: usize,
    pub history_bytes: usize,
    /// A segment is rolled once it holds this many bytes (see [`segment_bytes`]).
    pub segment_bytes: u64,
}

/// The segment size for a history of `history_bytes`: an eighth of it, between 16 KiB and
/// 8 MiB, so that the disk holds at most the history's bytes plus one segment (and a record).
pub fn segment_bytes(history_bytes: usize) -> u64 {
    (history_bytes as u64 / 8).clamp(16 << 10, 8 << 20)
}

/// The zeros kept written ahead of a segment's last record (see [`store`]): an eighth of a
/// segment, at most 1 MiB, so the store writes and syncs them once per half of that.
pub fn ahead_bytes(segment_bytes: u64) -> u64 {
    (segment_bytes / 8).min(1 << 20)
}

/// Where the store delivers what it stored (called from the store's thread, and once from
/// [`Opening::start`]).
pub trait Sink: Send + Sync + 'static {
    /// The history read back at start-up, oldest first; `evicted`: the last sequence number
    /// before it; `next`: the next to give. Called once, before any `on_events`.
    fn restore(&self, items: Vec<Restored>, evicted: u64, next: u64);
    /// Events just made durable, oldest first, numbered.
    fn on_events(&self, events: Vec<(u64, Publish)>);
    /// The largest sequence number the history has dropped.
    fn evicted(&self) -> u64;
}

struct Job {
    publish: Publish,
    done: Done,
    /// When it was submitted (for the stage figures).
    since: Instant,
}

enum Msg {
    Job(Job),
    Stop,
}

/// Counters for the metrics page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub bytes: u64,
    pub segments: u64,
    /// Per bucket of [`latency::BUCKETS_US`] (the last is `+Inf`), not cumulative.
    pub sync_buckets: Vec<u64>,
    pub sync_sum_us: u64,
    /// A publish from submit to the log's thread taking it (the hand-off and the thread's
    /// wake-up, and the batch before it), as `sync_buckets`.
    pub queue: Stage,
    /// Encoding and writing a batch (before its sync).
    pub write: Stage,
    /// A publish from submit to the log's answer (queue, write, sync, the history's append);
    /// what follows is the hand-back to the loop and the answer's write.
    pub stored_latency: Stage,
    pub recovered_events: u64,
    pub truncated_bytes: u64,
    pub stored: u64,
    pub errors: u64,
    pub queued: u64,
}

#[derive(Default)]
struct WriterState {
    bytes: AtomicU64,
    segments: AtomicU64,
    sync_buckets: [AtomicU64; latency::SLOTS],
    sync_sum_us: AtomicU64,
    queue: StageCounters,
    write: StageCounters,
    stored_latency: StageCounters,
    recovered_events: AtomicU64,
    truncated_bytes: AtomicU64,
    stored: AtomicU64,
    errors: AtomicU64,
    queued: AtomicU64,
    /// Bytes of the publishes queued (see [`QUEUE_BYTES`]).
    queued_bytes: AtomicU64,
    /// See [`DurableStore::stop_writes`].
    writes_stopped: std::sync::atomic::AtomicBool,
}

/// One stage's latency figures: counts per bucket of [`latency::BUCKETS_US`] (the last is
/// `+Inf`), not cumulative, and their sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stage {
    pub buckets: Vec<u64>,
    pub sum_us: u64,
}

#[derive(Default)]
struct StageCounters {
    buckets: [AtomicU64; latency::SLOTS],
    sum_us: AtomicU64,
}

impl StageCounters {
    fn record(&self, us: u64) {
        self.buckets[latency::bucket(us)].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn since(&self, t: Instant, now: Instant) {
        self.record(now.saturating_duration_since(t).as_micros() as u64);
    }

    fn get(&self) -> Stage {
        Stage {
            buckets: self
                .buckets
                .iter()
                .map(|a| a.load(Ordering::Relaxed))
                .collect(),
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

/// What start-up found, for the start-up lines.
#[derive(Debug, Clone)]
pub struct StartReport {
    pub epoch: String,
    pub recovered_events: u64,
    pub retained: usize,
    pub truncated_bytes: u64,
    /// One line per damaged segment (see [`store::describe`]).
    pub damage: Vec<String>,
    pub next: u64,
    /// How a sync is made: `o_direct_dsync` (a write of whole pages that returns once they
    /// are on the disk), `fdatasync` (where the file system refuses `O_DIRECT`), or `none`.
    pub sync: &'static str,
}

/// The running store. See the module docs.
pub struct DurableStore {
    jobs: SyncSender<Msg>,
    shared: Arc<WriterState>,
    thread: Mutex<Option<JoinHandle<()>>>,
    epoch: String,
}

impl std::fmt::Debug for DurableStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableStore")
            .field("epoch", &self.epoch)
            .finish()
    }
}

/// A data directory opened and read back, its thread not started yet: the hub is built
/// with [`Opening::epoch`] for its ids, then [`Opening::start`] hands it the history.
#[derive(Debug)]
pub struct Opening {
    cfg: StoreConfig,
    opened: store::Opened,
}

impl Opening {
    /// The ids' epoch: the directory's, fixed when it was first used.
    pub fn epoch(&self) -> &str {
        &self.opened.store.epoch
    }

    /// Hands the recovered history to `sink`, deletes the segments it no longer needs, and
    /// starts the store's thread.
    pub fn start(self, sink: Arc<dyn Sink>) -> Result<(DurableStore, StartReport), String> {
        let Opening { cfg, opened } = self;
        let mut store = opened.store;
        let recovery = opened.recovery;
        let report = StartReport {
            epoch: store.epoch.clone(),
            recovered_events: recovery.events,
            retained: recovery.items.len(),
            truncated_bytes: opened.truncated,
            damage: recovery.found.iter().map(store::describe).collect(),
            next: store.next,
            sync: "fdatasync",
        };
        let items = recovery.items.into_iter().map(|(i, _)| i).collect();
        sink.restore(items, recovery.dropped, store.next);
        store.retain(sink.evicted());
        let ahead = match cfg.fsync {
            Fsync::Off => 0,
            _ => ahead_bytes(cfg.segment_bytes),
        };
        store.set_layout(cfg.segment_bytes, ahead);
        store.make_room();
        let direct = cfg.fsync != Fsync::Off && store.set_direct(true);
        let report = StartReport {
            sync: match (cfg.fsync, direct) {
                (Fsync::Off, _) => "none",
                (_, true) => "o_direct_dsync",
                (_, false) => "fdatasync",
            },
            ..report
        };
        let shared = Arc::new(WriterState::default());
        shared
            .recovered_events
            .store(report.recovered_events, Ordering::Relaxed);
        shared
            .truncated_bytes
            .store(report.truncated_bytes, Ordering::Relaxed);
        publish_sizes(&shared, &store);
        let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let thread = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("sse-data-log".into())
                .spawn(move || {
                    Writer {
                        store,
                        buf: Vec::new(),
                        shared: &shared,
                        sink: &*sink,
                        cfg: &cfg,
                    }
                    .run(rx)
                })
                .map_err(|e| format!("--data-dir: cannot start the log's thread: {e}"))?
        };
        Ok((
            DurableStore {
                jobs: tx,
                shared,
                thread: Mutex::new(Some(thread)),
                epoch: report.epoch.clone(),
            },
            report,
        ))
    }
}

impl DurableStore {
    /// Opens the directory and reads it back (see [`store::open`]); `epoch` names the ids
    /// only if the directory is new. The error is one line for the start-up message.
    pub fn open(cfg: StoreConfig, epoch: &str) -> Result<Opening, String> {
        let opened = store::open(&cfg.dir, cfg.history_events, cfg.history_bytes, epoch)?;
        Ok(Opening { cfg, opened })
    }

    /// The ids' epoch (the directory's).
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Queues a publish; `done` is called once, from the store's thread, with `Ok(id)` once the
    /// event is durable and in the history, or `Err(reason)`. Only when the queue is full or
    /// the store is stopping is `done(Err(..))` called at once, from inside `submit`. Never
    /// blocks.
    pub fn submit(&self, publish: Publish, done: Done) {
        let size = job_bytes(&publish);
        let since = Instant::now();
        let s = &self.shared;
        let before = s.queued_bytes.fetch_add(size, Ordering::AcqRel);
        s.queued.fetch_add(1, Ordering::Relaxed);
        let refused = if before > 0 && before + size > QUEUE_BYTES {
            (
                Msg::Job(Job {
                    publish,
                    done,
                    since,
                }),
                "the event log's queue is full",
            )
        } else {
            match self.jobs.try_send(Msg::Job(Job {
                publish,
                done,
                since,
            })) {
                Ok(()) => return,
                Err(TrySendError::Full(m)) => (m, "the event log's queue is full"),
                Err(TrySendError::Disconnected(m)) => (m, "the event log is stopping"),
            }
        };
        s.queued_bytes.fetch_sub(size, Ordering::AcqRel);
        s.queued.fetch_sub(1, Ordering::Relaxed);
        s.errors.fetch_add(1, Ordering::Relaxed);
        if let (Msg::Job(job), why) = refused {
            (job.done)(Err(why.to_string()));
        }
    }

    /// Writes no more: every publish still queued, and every one submitted from now on, is
    /// answered `Err` (so a publisher told `503` at shutdown is never stored later); a batch
    /// already being written gets its answer. Called when the server stops for good.
    pub fn stop_writes(&self) {
        self.shared.writes_stopped.store(true, Ordering::Release);
    }

    /// The counters now.
    pub fn stats(&self) -> StoreStats {
        let s = &self.shared;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StoreStats {
            bytes: get(&s.bytes),
            segments: get(&s.segments),
            sync_buckets: s.sync_buckets.iter().map(get).collect(),
            sync_sum_us: get(&s.sync_sum_us),
            queue: s.queue.get(),
            write: s.write.get(),
            stored_latency: s.stored_latency.get(),
            recovered_events: get(&s.recovered_events),
            truncated_bytes: get(&s.truncated_bytes),
            stored: get(&s.stored),
            errors: get(&s.errors),
            queued: get(&s.queued),
        }
    }

    /// Writes what is queued (answering it), syncs, and ends the thread. Idempotent.
    pub fn stop(&self) {
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            // Blocks only while the queue is full, which the thread is emptying.
            let _ = self.jobs.send(Msg::Stop);
            let _ = t.join();
        }
    }
}

/// What a queued publish counts against [`QUEUE_BYTES`].
fn job_bytes(p: &Publish) -> u64 {
    (p.data.len() + p.topics.iter().map(|t| t.len() + 16).sum::<usize>() + 64) as u64
}

fn publish_sizes(shared: &WriterState, store: &Store) {
    shared.bytes.store(store.bytes(), Ordering::Relaxed);
    shared
        .segments
        .store(store.segments().len() as u64, Ordering::Relaxed);
}

/// The writer thread's own state: the store, its encode buffer, and what it shares.
struct Writer<'a> {
    store: Store,
    buf: Vec<u8>,
    shared: &'a WriterState,
    sink: &'a dyn Sink,
    cfg: &'a StoreConfig,
}

impl Writer<'_> {
    fn run(mut self, rx: Receiver<Msg>) {
        let shared = self.shared;
        let mut batch: Vec<Job> = Vec::new();
        let mut stopping = false;
        while !stopping {
            match rx.recv() {
                Ok(Msg::Job(j)) => batch.push(j),
                Ok(Msg::Stop) | Err(_) => break,
            }
            // Every policy takes what is queued now, never waiting for more: the publishes
            // that arrived together (and while the last sync ran) share one write and one sync.
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(Msg::Job(j)) => batch.push(j),
                    Ok(Msg::Stop) => {
                        stopping = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            let taken = Instant::now();
            for j in &batch {
                shared.queue.since(j.since, taken);
            }
            shared
                .queued
                .fetch_sub(batch.len() as u64, Ordering::Relaxed);
            let bytes: u64 = batch.iter().map(|j| job_bytes(&j.publish)).sum();
            shared.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            if shared.writes_stopped.load(Ordering::Acquire) {
                fail_all(&mut batch, shared, "the server is stopping");
                continue;
            }
            self.commit(&mut batch);
            // After the answers: the next batch waits for it, not this one.
            self.store.make_room();
            if self.buf.capacity() > 4 << 20 {
                self.buf = Vec::new();
            }
        }
        if self.cfg.fsync == Fsync::Off {
            let _ = self.store.sync(0);
        }
        // Whatever was queued after the stop (nothing, once the loops have stopped).
        while let Ok(m) = rx.try_recv() {
            if let Msg::Job(j) = m {
                (j.done)(Err("the event log is stopping".into()));
            }
        }
    }

    /// Writes, syncs and answers one batch. See the module docs.
    fn commit(&mut self, batch: &mut Vec<Job>) {
        let Writer {
            store,
            buf,
            shared,
            sink,
            cfg,
        } = self;
        let (shared, sink, cfg): (&WriterState, &dyn Sink, &StoreConfig) = (shared, *sink, cfg);
        // Roll first, so that the new segment is named after the first record it holds.
        if let Err(e) = store.roll_if_due() {
            fail_all(batch, shared, &format!("cannot start a new segment: {e}"));
            publish_sizes(shared, store);
            return;
        }
        let write_start = Instant::now();
        buf.clear();
        let first = store.next;
        let mut accepted = Vec::with_capacity(batch.len());
        for job in batch.drain(..) {
            let seq = first + accepted.len() as u64;
            match format::encode(buf, seq, &job.publish) {
                Ok(()) => accepted.push(job),
                Err(e) => {
                    shared.errors.fetch_add(1, Ordering::Relaxed);
                    (job.done)(Err(e.0.to_string()));
                }
            }
        }
        if accepted.is_empty() {
            return;
        }
        let last = first + accepted.len() as u64 - 1;
        let mut written = store.append(buf, last);
        shared.write.since(write_start, Instant::now());
        if written.is_ok() && cfg.fsync != Fsync::Off {
            let t = Instant::now();
            written = store.sync(buf.len() as u64);
            let us = t.elapsed().as_micros() as u64;
            shared.sync_buckets[latency::bucket(us)].fetch_add(1, Ordering::Relaxed);
            shared.sync_sum_us.fetch_add(us, Ordering::Relaxed);
            if written.is_err() {
                // The records were cut off again: their numbers are free.
                store.next = first;
            }
        }
        if let Err(e) = written {
            fail_all(&mut accepted, shared, &e.to_string());
            publish_sizes(shared, store);
            return;
        }
        let epoch = store.epoch.clone();
        let mut events = Vec::with_capacity(accepted.len());
        let mut dones = Vec::with_capacity(accepted.len());
        for (i, job) in accepted.into_iter().enumerate() {
            events.push((first + i as u64, job.publish));
            dones.push((job.done, job.since));
        }
        // The events and their answers wake each loop once, after all of them.
        crate::hub::backend::with_wakes_held(|| {
            sink.on_events(events);
            store.retain(sink.evicted());
            publish_sizes(shared, store);
            shared
                .stored
                .fetch_add(dones.len() as u64, Ordering::Relaxed);
            let answered = Instant::now();
            for (i, (done, since)) in dones.into_iter().enumerate() {
                shared.stored_latency.since(since, answered);
                done(Ok(format!("{epoch}-{}", first + i as u64)));
            }
        });
    }
}

fn fail_all(jobs: &mut Vec<Job>, shared: &WriterState, why: &str) {
    shared
        .errors
        .fetch_add(jobs.len() as u64, Ordering::Relaxed);
    for job in jobs.drain(..) {
        (job.done)(Err(why.to_string()));
    }
}

/// The store's figures in Prometheus text.
pub fn render(out: &mut String, s: &StoreStats) {
    use std::fmt::Write as _;
    let mut one = |name: &str, kind: &str, help: &str, v: u64| {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
        );
    };
    one(
        "sse_data_log_bytes",
        "gauge",
        "Bytes of event store segments on disk.",
        s.bytes,
    );
    one(
        "sse_data_log_segments",
        "gauge",
        "Event store segment files.",
        s.segments,
    );
    one(
        "sse_data_log_recovered_events",
        "gauge",
        "Events read back from the event store at start-up.",
        s.recovered_events,
    );
    one(
        "sse_data_log_truncated_bytes",
        "gauge",
        "Bytes of torn tail cut off the event store at start-up.",
        s.truncated_bytes,
    );
    one(
        "sse_data_log_stored_total",
        "counter",
        "Publishes made durable by the event store.",
        s.stored,
    );
    one(
        "sse_data_log_errors_total",
        "counter",
        "Publishes the event store could not store (answered 503).",
        s.errors,
    );
    one(
        "sse_data_log_queued",
        "gauge",
        "Publishes waiting for the event store.",
        s.queued,
    );
    let counts: [u64; latency::SLOTS] =
        std::array::from_fn(|i| s.sync_buckets.get(i).copied().unwrap_or(0));
    latency::render(
        out,
        "sse_data_log_sync_seconds",
        "Time to make a batch of records durable (an O_DIRECT|O_DSYNC write of its pages, or fdatasync).",
        latency::Histogram {
            counts: &counts,
            sum_us: s.sync_sum_us,
        },
    );
    for (name, help, stage) in [
        (
            "sse_data_log_queue_seconds",
            "A publish from its submit to the log's thread taking it (hand-off, wake-up, the batch before it).",
            &s.queue,
        ),
        (
            "sse_data_log_write_seconds",
            "Time to encode a batch of records and write it to the OS (before its sync; with O_DIRECT the write is the sync).",
            &s.write,
        ),
        (
            "sse_data_log_stored_seconds",
            "A publish from its submit to the log's answer (queue, write, sync, into the history).",
            &s.stored_latency,
        ),
    ] {
        let counts: [u64; latency::SLOTS] =
            std::array::from_fn(|i| stage.buckets.get(i).copied().unwrap_or(0));
        latency::render(
            out,
            name,
            help,
            latency::Histogram {
                counts: &counts,
                sum_us: stage.sum_us,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::store::tests::TempDir;
    use std::sync::mpsc::channel;
    use std::time::Duration;

    /// A history stand-in: what was restored and appended, bounded by events.
    #[derive(Default)]
    struct Memory {
        items: Mutex<Vec<Restored>>,
        evicted: AtomicU64,
        keep: usize,
    }

    impl Sink for Memory {
        fn restore(&self, items: Vec<Restored>, evicted: u64, _next: u64) {
            *self.items.lock().unwrap() = items;
            self.evicted.store(evicted, Ordering::Relaxed);
        }
        fn on_events(&self, events: Vec<(u64, Publish)>) {
            let mut items = self.items.lock().unwrap();
            items.extend(events.into_iter().map(|(s, p)| Restored::Event(s, p)));
            while items.len() > self.keep {
                let old = items.remove(0);
                self.evicted.store(old.seq(), Ordering::Relaxed);
            }
        }
        fn evicted(&self) -> u64 {
            self.evicted.load(Ordering::Relaxed)
        }
    }

    fn cfg(dir: &std::path::Path, fsync: Fsync, segment_bytes: u64) -> StoreConfig {
        StoreConfig {
            dir: dir.to_path_buf(),
            fsync,
            history_events: 1000,
            history_bytes: 1 << 20,
            segment_bytes,
        }
    }

    fn ev(data: String) -> Publish {
        Publish {
            topics: vec!["t".into()],
            data,
            ..Publish::default()
        }
    }

    fn publish_all(store: &DurableStore, n: usize) -> Vec<Result<String, String>> {
        let (tx, rx) = channel();
        for i in 0..n {
            let tx = tx.clone();
            store.submit(
                ev(format!("event {i}")),
                Box::new(move |r| tx.send((i, r)).unwrap()),
            );
        }
        let mut out: Vec<_> = (0..n)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        out.sort_by_key(|(i, _)| *i);
        out.into_iter().map(|(_, r)| r).collect()
    }

    #[test]
    fn every_policy_answers_in_order_and_a_reopen_continues_the_ids() {
        for fsync in [Fsync::Always, Fsync::Batch, Fsync::Off] {
            let d = TempDir::new(fsync.as_str());
            let sink = Arc::new(Memory {
                keep: 1000,
                ..Memory::default()
            });
            let (store, report) = DurableStore::open(cfg(&d.0, fsync, 1 << 20), "ep0")
                .unwrap()
                .start(sink.clone())
                .unwrap();
            assert_eq!((report.epoch.as_str(), report.next), ("ep0", 1));
            let ids = publish_all(&store, 300);
            let want: Vec<Result<String, String>> =
                (1..=300).map(|s| Ok(format!("ep0-{s}"))).collect();
            assert_eq!(ids, want, "{fsync:?}");
            let st = store.stats();
            assert_eq!((st.stored, st.errors, st.queued), (300, 0, 0));
            let syncs: u64 = st.sync_buckets.iter().sum();
            match fsync {
                Fsync::Always | Fsync::Batch => assert!((1..=300).contains(&syncs), "{syncs}"),
                Fsync::Off => assert_eq!(syncs, 0),
            }
            store.stop();
            let sink2 = Arc::new(Memory {
                keep: 1000,
                ..Memory::default()
            });
            let (store, report) = DurableStore::open(cfg(&d.0, fsync, 1 << 20), "new")
                .unwrap()
                .start(sink2.clone())
                .unwrap();
            assert_eq!(
                (report.epoch.as_str(), report.next, report.recovered_events),
                ("ep0", 301, 300)
            );
            assert_eq!(*sink2.items.lock().unwrap(), *sink.items.lock().unwrap());
            assert_eq!(publish_all(&store, 1), [Ok("ep0-301".to_string())]);
            store.stop();
        }
    }

    /// Group commit, under both syncing policies: publishes queued together (and while a
    /// sync runs) share the next sync; a lone publish is synced at once, never held back to
    /// gather more.
    #[test]
    fn publishes_queued_together_share_syncs_and_a_lone_one_is_not_held() {
        for fsync in [Fsync::Always, Fsync::Batch] {
            let d = TempDir::new("group");
            let sink = Arc::new(Memory {
                keep: 10_000,
                ..Memory::default()
            });
            let (log, _) = DurableStore::open(cfg(&d.0, fsync, 8 << 20), "e")
                .unwrap()
                .start(sink)
                .unwrap();
            assert!(publish_all(&log, 2000).iter().all(|r| r.is_ok()));
            let syncs = |log: &DurableStore| log.stats().sync_buckets.iter().sum::<u64>();
            let before = syncs(&log);
            assert!(
                before < 2000,
                "{fsync:?}: 2000 publishes queued at once took {before} syncs"
            );
            for i in 1..=3 {
                assert!(publish_all(&log, 1)[0].is_ok());
                assert_eq!(
                    syncs(&log),
                    before + i,
                    "{fsync:?}: one sync per lone publish"
                );
            }
            log.stop();
        }
    }

    #[test]
    fn disk_stays_within_the_history_plus_one_segment() {
        let d = TempDir::new("bounded");
        let sink = Arc::new(Memory {
            keep: 50,
            ..Memory::default()
        });
        let seg = 2048;
        let (store, _) = DurableStore::open(cfg(&d.0, Fsync::Off, seg), "e")
            .unwrap()
            .start(sink.clone())
            .unwrap();
        let mut most = 0;
        for _ in 0..40 {
            publish_all(&store, 25);
            let st = store.stats();
            let retained: u64 = {
                let items = sink.items.lock().unwrap();
                let mut b = Vec::new();
                for i in items.iter() {
                    if let Restored::Event(s, p) = i {
                        format::encode(&mut b, *s, p).unwrap();
                    }
                }
                b.len() as u64
            };
            let on_disk: u64 = std::fs::read_dir(&d.0)
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
                .map(|e| e.metadata().unwrap().len())
                .sum();
            assert_eq!(st.bytes, on_disk);
            // One segment of slack, plus each segment's header and the record that passed
            // the target.
            let headers = st.segments * 16;
            assert!(
                on_disk <= retained + seg + headers + 64,
                "{on_disk} > {retained} + {seg}"
            );
            most = most.max(st.segments);
        }
        assert!(most >= 2, "segments rolled");
        store.stop();
    }

    #[test]
    fn a_full_queue_and_a_stopped_store_answer_at_once() {
        let d = TempDir::new("stop");
        let sink = Arc::new(Memory {
            keep: 10,
            ..Memory::default()
        });
        let (store, _) = DurableStore::open(cfg(&d.0, Fsync::Batch, 1 << 20), "e")
            .unwrap()
            .start(sink)
            .unwrap();
        store.stop();
        let (tx, rx) = channel();
        store.submit(ev("late".into()), Box::new(move |r| tx.send(r).unwrap()));
        let r = rx.try_recv().expect("answered inside submit");
        assert_eq!(r, Err("the event log is stopping".into()));
        assert_eq!(store.stats().errors, 1);
    }

    #[test]
    fn after_stop_writes_nothing_is_stored_and_everything_is_answered() {
        let d = TempDir::new("stop-writes");
        let sink = Arc::new(Memory {
            keep: 10,
            ..Memory::default()
        });
        let (store, _) = DurableStore::open(cfg(&d.0, Fsync::Batch, 1 << 20), "e")
            .unwrap()
            .start(sink.clone())
            .unwrap();
        assert_eq!(publish_all(&store, 1), [Ok("e-1".to_string())]);
        store.stop_writes();
        let refused = publish_all(&store, 3);
        assert!(
            refused
                .iter()
                .all(|r| r == &Err("the server is stopping".to_string())),
            "{refused:?}"
        );
        assert_eq!(sink.items.lock().unwrap().len(), 1);
        store.stop();
        let (_, report) = DurableStore::open(cfg(&d.0, Fsync::Batch, 1 << 20), "e")
            .unwrap()
            .start(sink)
            .unwrap();
        assert_eq!(report.recovered_events, 1);
    }

    /// Publishes waiting for a slow disk cannot hold more than `QUEUE_BYTES`: past it they
    /// are refused at once, and the queue takes more once it drains.
    #[test]
    fn the_queue_is_bounded_in_bytes() {
        let d = TempDir::new("queue-bytes");
        let sink = Arc::new(Memory {
            keep: 10,
            ..Memory::default()
        });
        let (store, _) = DurableStore::open(cfg(&d.0, Fsync::Off, 1 << 20), "e")
            .unwrap()
            .start(sink)
            .unwrap();
        // The writer is held up as a slow disk would hold it: the queue's bytes are taken.
        store
            .shared
            .queued_bytes
            .store(QUEUE_BYTES - 100, Ordering::Release);
        let (tx, rx) = channel();
        store.submit(ev("x".repeat(200)), Box::new(move |r| tx.send(r).unwrap()));
        assert_eq!(
            rx.try_recv().expect("answered at once"),
            Err("the event log's queue is full".to_string())
        );
        store.shared.queued_bytes.store(0, Ordering::Release);
        assert_eq!(publish_all(&store, 1), [Ok("e-1".to_string())]);
        assert_eq!(store.shared.queued_bytes.load(Ordering::Acquire), 0);
        store.stop();
    }

    #[test]
    fn metrics_text_names_every_figure() {
        let mut out = String::new();
        let mut s = StoreStats {
            bytes: 123,
            segments: 2,
            sync_buckets: vec![0; latency::SLOTS],
            ..StoreStats::default()
        };
        s.sync_buckets[latency::bucket(1000)] = 5;
        s.stored_latency.buckets = vec![0; latency::SLOTS];
        s.stored_latency.buckets[latency::bucket(180)] = 2;
        s.stored_latency.sum_us = 360;
        s.sync_sum_us = 4000;
        render(&mut out, &s);
        for line in [
            "sse_data_log_bytes 123",
            "sse_data_log_segments 2",
            "sse_data_log_recovered_events 0",
            "sse_data_log_truncated_bytes 0",
            "sse_data_log_sync_seconds_bucket{le=\"0.0005\"} 0",
            "sse_data_log_sync_seconds_bucket{le=\"0.001\"} 5",
            "sse_data_log_sync_seconds_bucket{le=\"+Inf\"} 5",
            "sse_data_log_sync_seconds_sum 0.004000",
            "sse_data_log_sync_seconds_count 5",
            "sse_data_log_stored_seconds_bucket{le=\"0.00015\"} 0",
            "sse_data_log_stored_seconds_bucket{le=\"0.0002\"} 2",
            "sse_data_log_stored_seconds_count 2",
            "sse_data_log_queue_seconds_count 0",
            "sse_data_log_write_seconds_count 0",
        ] {
            assert!(out.contains(&format!("{line}\n")), "{line} in\n{out}");
        }
    }
}
