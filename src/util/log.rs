//! One line per thing an operator wants to know, on stderr: start-up, shutdown, overload,
//! the shared store (Redis) going down and up, every answered request and every ended stream (never one
//! per frame). `--log-format text|json`; `--quiet` keeps only start-up, shutdown, overload and
//! errors. Paths are logged without their query (it may carry a token), tokens never.
//! A request's line carries its final status, always: an answer given later (a publish the
//! shared store stores) is logged when it is given, and a request the HTTP layer refuses (400,
//! 408, 413, 431, 501, 505) is logged with what its request line seemed to say.
//!
//! A line is built where it happens and handed to **one writer thread** through a bounded
//! queue ([`QUEUE_LINES`]); the writer writes what is queued in batches to stderr, so lines
//! from several loops never interleave. Handing a line over never waits: when the queue is
//! full (stderr is slow, or a pipe nobody reads) the line is dropped and counted
//! ([`dropped`], `sse_log_lines_dropped_total` in `/metrics`). A stuck stderr thus stops the
//! log, never a loop, a stream or a shutdown; [`flush`] waits a bounded time at exit.
//!
//! **Invariant:** no loop blocks on the log: [`line()`] formats and `try_send`s, nothing more.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The most lines waiting for the writer. A line is about 150 bytes (a path is at most the
/// 2 KiB target limit), so the queue holds a few hundred KiB, 10 MiB at the very worst.
pub const QUEUE_LINES: usize = 4096;

/// The most lines the writer puts in one `write`.
const BATCH_LINES: usize = 64;

/// How long the writer rests after it has emptied the queue, before it waits on the queue
/// again. While it rests, lines gather without waking it: under load the loops wake the
/// writer a few hundred times a second rather than once every few requests (each wake-up is
/// a `futex` call on the loop and a context switch; measured at 0.3 of each per publish).
/// A lone line is still written at once; the queue ([`QUEUE_LINES`]) absorbs
/// `QUEUE_LINES / LINGER`, about 800,000 lines a second, during a rest.
const LINGER: Duration = Duration::from_millis(5);

static QUEUE: OnceLock<SyncSender<String>> = OnceLock::new();
/// Lines queued, lines the writer is done with (written or failed), lines dropped.
static QUEUED: AtomicU64 = AtomicU64::new(0);
static DONE: AtomicU64 = AtomicU64::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The queue to the writer thread, started with the first line.
fn queue() -> &'static SyncSender<String> {
    QUEUE.get_or_init(|| {
        let (tx, rx) = sync_channel(QUEUE_LINES);
        // If the thread cannot start, `rx` is dropped with the closure and every line is
        // counted as dropped: the server runs on without its log.
        let _ = std::thread::Builder::new()
            .name("log".into())
            .spawn(move || write_lines(rx, &mut std::io::stderr(), LINGER));
        tx
    })
}

/// The writer: what is queued, in batches of up to [`BATCH_LINES`], one `write_all` each;
/// after a batch that emptied the queue, a rest of `rest` ([`LINGER`]).
fn write_lines(rx: Receiver<String>, out: &mut impl std::io::Write, rest: Duration) {
    let mut batch = String::with_capacity(BATCH_LINES * 160);
    while let Ok(first) = rx.recv() {
        batch.clear();
        batch.push_str(&first);
        let mut n = 1;
        while n < BATCH_LINES {
            let Ok(more) = rx.try_recv() else {
                break;
            };
            batch.push_str(&more);
            n += 1;
        }
        let _ = out.write_all(batch.as_bytes());
        let _ = out.flush();
        DONE.fetch_add(n as u64, Ordering::Release);
        if batch.capacity() > 4 * BATCH_LINES * 160 {
            // A burst of long lines does not keep its memory.
            batch = String::with_capacity(BATCH_LINES * 160);
        }
        if n < BATCH_LINES {
            // The queue was empty: rest rather than wait on it, so the next lines gather
            // without a wake-up each.
            std::thread::sleep(rest);
        }
    }
}

/// Lines dropped because the writer was behind (the queue was full).
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Waits until every line queued is written, or `within` has passed (stderr may be a
/// pipe nobody reads); whether they all were. For the last lines at exit.
pub fn flush(within: Duration) -> bool {
    let end = Instant::now() + within;
    while DONE.load(Ordering::Acquire) < QUEUED.load(Ordering::Acquire) {
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// How lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `2026-11-25T16:55:01.123Z stream peer=127.0.0.1:5555 kind=clock ...`
    Text,
    /// One JSON object a line: `{"ts":"...","event":"stream","peer":"...",...}`.
    Json,
}

/// A value in a line.
pub enum V<'a> {
    S(&'a str),
    N(u64),
}

#[derive(Clone, Copy, Debug)]
struct Logger {
    format: Format,
    verbosity: Verbosity,
}

/// Which lines are written: all, or (`--quiet`) only start-up, shutdown, overload and errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verbosity {
    Normal,
    Quiet,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

/// Sets the format and verbosity (once, at start-up; the default is text, not quiet).
pub fn init(format: Format, verbosity: Verbosity) {
    let _ = LOGGER.set(Logger { format, verbosity });
}

fn logger() -> Logger {
    LOGGER.get().copied().unwrap_or(Logger {
        format: Format::Text,
        verbosity: Verbosity::Normal,
    })
}

/// Whether per-connection lines (requests, streams) are written.
pub fn connections() -> bool {
    logger().verbosity == Verbosity::Normal
}

/// Writes one line: an event name and its fields, in order.
pub fn line(event: &str, fields: &[(&str, V<'_>)]) {
    let unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut ts = [0u8; crate::util::date::ISO_LEN];
    ts.copy_from_slice(crate::util::date::Dates::new().iso(unix_ms));
    let ts = std::str::from_utf8(&ts).unwrap_or("");
    let out = format(logger().format, ts, event, fields);
    // Counted before it is sent, so that `flush` never sees the writer ahead of the count.
    QUEUED.fetch_add(1, Ordering::AcqRel);
    match queue().try_send(out) {
        Ok(()) => {}
        Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
            QUEUED.fetch_sub(1, Ordering::AcqRel);
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One line, newline included, as `format` writes it.
fn format(format: Format, ts: &str, event: &str, fields: &[(&str, V<'_>)]) -> String {
    let mut out = String::with_capacity(160);
    match format {
        Format::Text => {
            out.push_str(ts);
            out.push(' ');
            out.push_str(event);
            for (k, v) in fields {
                out.push(' ');
                out.push_str(k);
                out.push('=');
                match v {
                    // Quoted (JSON string rules) when it would not read back as one word.
                    V::S(s)
                        if s.is_empty()
                            || s.contains([' ', '"', '='])
                            || s.chars().any(char::is_control) =>
                    {
                        out.push_str(&serde_json::Value::from(*s).to_string())
                    }
                    V::S(s) => out.push_str(s),
                    V::N(n) => out.push_str(&n.to_string()),
                }
            }
        }
        Format::Json => {
            let mut obj = serde_json::Map::new();
            obj.insert("ts".into(), ts.into());
            obj.insert("event".into(), event.into());
            for (k, v) in fields {
                let v = match v {
                    V::S(s) => serde_json::Value::from(*s),
                    V::N(n) => serde_json::Value::from(*n),
                };
                obj.insert((*k).into(), v);
            }
            out.push_str(&serde_json::Value::Object(obj).to_string());
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: &str = "2026-11-25T16:55:01.123Z";

    /// What the writer wrote, call by call (shared, so a test can watch it).
    #[derive(Default, Clone)]
    struct Calls(std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>);

    impl Calls {
        fn taken(&self) -> Vec<Vec<u8>> {
            self.0.lock().unwrap().clone()
        }
    }

    impl std::io::Write for Calls {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().push(b.to_vec());
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Lines that arrive one by one while the writer rests (after a lone line) are written
    /// together, in order, when the rest ends: one wake-up for them all, not one each.
    #[test]
    fn lines_that_arrive_during_a_rest_are_written_together() {
        // A rest far longer than the sends take, so that the test does not race them.
        let rest = Duration::from_millis(400);
        let (tx, rx) = sync_channel::<String>(QUEUE_LINES);
        let calls = Calls::default();
        let writer = {
            let mut out = calls.clone();
            std::thread::spawn(move || write_lines(rx, &mut out, rest))
        };
        tx.send("first\n".into()).unwrap();
        // Once the lone line is written the writer rests; ten more trickle in meanwhile,
        // each of which would wake a writer that waited on the queue instead.
        let deadline = Instant::now() + Duration::from_secs(10);
        while calls.taken().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        for i in 0..10 {
            tx.send(format!("{i}\n")).unwrap();
            std::thread::sleep(Duration::from_millis(2));
        }
        drop(tx);
        writer.join().unwrap();
        let calls: Vec<String> = calls
            .taken()
            .into_iter()
            .map(|c| String::from_utf8(c).unwrap())
            .collect();
        let rest_of_them: String = (0..10).map(|i| format!("{i}\n")).collect();
        assert_eq!(calls, ["first\n".to_string(), rest_of_them]);
    }

    /// A burst longer than a batch is written whole, in order, in batches of at most
    /// [`BATCH_LINES`].
    #[test]
    fn a_burst_is_written_in_order_in_batches() {
        let (tx, rx) = sync_channel::<String>(QUEUE_LINES);
        let burst = 3 * BATCH_LINES + 5;
        for i in 0..burst {
            tx.send(format!("{i}\n")).unwrap();
        }
        drop(tx);
        let mut out = Calls::default();
        write_lines(rx, &mut out, Duration::ZERO);
        let calls = out.taken();
        let all: String = calls
            .iter()
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        assert_eq!(
            all,
            (0..burst).map(|i| format!("{i}\n")).collect::<String>()
        );
        let lines = |c: &Vec<u8>| c.iter().filter(|&&b| b == b'\n').count();
        assert_eq!(
            calls.iter().map(lines).collect::<Vec<_>>(),
            [BATCH_LINES, BATCH_LINES, BATCH_LINES, 5]
        );
    }

    #[test]
    fn text_lines_are_one_line_of_words_and_quoted_values() {
        let l = format(
            Format::Text,
            TS,
            "request",
            &[
                ("path", V::S("/healthz")),
                ("reason", V::S("a b")),
                ("evil", V::S("x\ny")),
                ("empty", V::S("")),
                ("bytes", V::N(3)),
            ],
        );
        assert_eq!(
            l,
            "2026-11-25T16:55:01.123Z request path=/healthz reason=\"a b\" evil=\"x\\ny\" empty=\"\" bytes=3\n"
        );
        assert_eq!(
            l.matches('\n').count(),
            1,
            "a value cannot start a line of its own"
        );
    }

    #[test]
    fn json_lines_parse_with_their_fields() {
        let l = format(
            Format::Json,
            TS,
            "stream",
            &[("peer", V::S("127.0.0.1:9")), ("frames", V::N(7))],
        );
        let v: serde_json::Value = serde_json::from_str(l.trim_end()).unwrap();
        assert_eq!(v["ts"], TS);
        assert_eq!(v["event"], "stream");
        assert_eq!(v["peer"], "127.0.0.1:9");
        assert_eq!(v["frames"], 7);
        assert!(l.ends_with("}\n") && l.matches('\n').count() == 1);
    }
}
