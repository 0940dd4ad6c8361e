//! What real client libraries make of the server's streams: Python's httpx-sse and Node's
//! `eventsource` package, each run as a child process on a real stream, must dispatch exactly
//! the published events, never an empty `message` for a heartbeat, for the `retry:` a stopping
//! server sends, or for the `retry:` of a refused stream.
//!
//! httpx-sse is loose: once it has seen an `id`, any blank line becomes an event (with empty
//! data). So the heartbeat is a comment line alone (`:\n`) and the `retry:` a line alone; these
//! tests caught the old `:\n\n` and `retry: N\n\n`.
//!
//! The clients are installed on first use, from their registries, into `tests/clients/python`
//! (pip, pinned in `tests/clients/requirements.txt`) and `tests/clients/node_modules` (npm, from
//! `tests/clients/package-lock.json`); both are ignored by git. Where `python3`, `node` or the
//! registries are missing the tests say so loudly and pass, unless `REQUIRE_CLIENTS=1` (CI).

mod common;

use common::Server;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Installs both clients once (idempotent: skipped when already there). `Err` says what is
/// missing.
fn setup() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    let _one = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    DONE.get_or_init(|| {
        let dir = clients_dir();
        if !dir.join("python/httpx_sse").exists() {
            let st = Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(["--target", "python", "-r", "requirements.txt"])
                .current_dir(&dir)
                .status()
                .map_err(|e| format!("python3: {e}"))?;
            if !st.success() {
                return Err(format!("pip install httpx-sse failed: {st}"));
            }
        }
        if !dir.join("node_modules/eventsource").exists() {
            let st = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--silent"])
                .current_dir(&dir)
                .status()
                .map_err(|e| format!("npm: {e}"))?;
            if !st.success() {
                return Err(format!("npm ci (eventsource) failed: {st}"));
            }
        }
        Ok(())
    })
    .clone()
}

/// Whether the clients are there; panics when they are not and `REQUIRE_CLIENTS=1`.
fn clients_installed() -> bool {
    match setup() {
        Ok(()) => true,
        Err(why) => {
            if std::env::var("REQUIRE_CLIENTS").as_deref() == Ok("1") {
                panic!("REQUIRE_CLIENTS=1 but {why}");
            }
            let _ = writeln!(
                std::io::stderr(),
                "\n************************************************************\n\
                 SKIPPED: the client-library tests need python3 + pip and node + npm: {why}.\n\
                 Set REQUIRE_CLIENTS=1 to make this a failure.\n\
                 ************************************************************\n"
            );
            false
        }
    }
}

/// A client process and the JSON lines it prints.
struct Client {
    name: &'static str,
    child: Child,
    lines: Receiver<Value>,
    seen: Vec<Value>,
}

impl Client {
    fn start(name: &'static str, url: &str) -> Client {
        let dir = clients_dir();
        let mut cmd = match name {
            "httpx-sse" => {
                let mut c = Command::new("python3");
                c.arg("sub.py").env("PYTHONPATH", dir.join("python"));
                c
            }
            _ => {
                let mut c = Command::new("node");
                c.arg("sub.mjs");
                c
            }
        };
        let mut child = cmd
            .arg(url)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Client {
            name,
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line with `key`; panics after `timeout`.
    fn wait_for(&mut self, key: &str, timeout: Duration) {
        let end = Instant::now() + timeout;
        loop {
            if self.seen.iter().any(|v| v.get(key).is_some()) {
                return;
            }
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => self.seen.push(v),
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "{}: no {key:?} within {timeout:?}; saw {:?}",
                        self.name, self.seen
                    )
                }
            }
        }
    }

    /// The data of every event dispatched.
    fn datas(&self) -> Vec<String> {
        self.seen
            .iter()
            .filter(|v| v.get("event").is_some())
            .map(|v| v["data"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn heartbeats_and_the_shutdown_retry_are_no_events_to_httpx_sse_or_node_eventsource() {
    if !clients_installed() {
        return;
    }
    let server = Server::start(&["--heartbeat-ms", "1000", "--shutdown-grace-ms", "2000"]);
    let url = format!("http://{}/sse?topic=t", server.addr);
    // A raw subscriber beside them, to see the bytes the clients were given.
    let mut raw = server.subscribe("topic=t", "");
    let mut clients = [
        Client::start("httpx-sse", &url),
        Client::start("eventsource", &url),
    ];
    for c in &mut clients {
        c.wait_for("open", Duration::from_secs(15));
    }
    let hello = server.publish("t", "hello");
    // Heartbeats while the stream is idle (at least one: the deadline is kept in whole
    // seconds of the loop's clock, so a 1 s heartbeat comes 1 to 2 s after the last write).
    std::thread::sleep(Duration::from_millis(3_200));
    server.publish("t", "bye");
    std::thread::sleep(Duration::from_millis(200));
    server.signal("TERM");
    for c in &mut clients {
        c.wait_for("end", Duration::from_secs(10));
    }
    for c in &clients {
        assert_eq!(c.datas(), ["hello", "bye"], "{}: {:?}", c.name, c.seen);
    }
    assert!(raw.read_to_close(Duration::from_secs(5)), "{}", raw.text());
    let body = &raw.text();
    let after_hello = body
        .split_once(&format!("id: {hello}\ndata: hello\n\n"))
        .unwrap_or_else(|| panic!("no hello frame in {body:?}"))
        .1;
    let (beats, rest) = after_hello
        .split_once("id: ")
        .unwrap_or_else(|| panic!("no bye frame in {after_hello:?}"));
    assert!(
        !beats.is_empty() && beats.as_bytes().chunks(2).all(|c| c == b":\n"),
        "between two events only heartbeat lines, each `:` alone: {beats:?}"
    );
    let retry = rest
        .split_once("data: bye\n\n")
        .unwrap_or_else(|| panic!("no bye frame in {rest:?}"))
        .1;
    assert!(
        retry.starts_with("retry: ") && retry.ends_with('\n') && !retry.ends_with("\n\n"),
        "the shutdown retry: is a line alone: {retry:?}"
    );
}

#[test]
fn a_refused_stream_is_no_event_to_httpx_sse_or_node_eventsource() {
    if !clients_installed() {
        return;
    }
    let server = Server::start(&["--max-streams", "1"]);
    let _hold = common::open(server.addr, "/sse", "");
    server.wait_metric("sse_streams_open", 1.0, Duration::from_secs(5));
    let url = format!("http://{}/sse", server.addr);
    for name in ["httpx-sse", "eventsource"] {
        let mut c = Client::start(name, &url);
        c.wait_for("end", Duration::from_secs(15));
        assert!(c.datas().is_empty(), "{name}: {:?}", c.seen);
    }
    assert!(server.metric("sse_streams_rejected_total") >= 2.0);
}
