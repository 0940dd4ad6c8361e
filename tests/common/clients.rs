//! Client libraries nobody here wrote, run as child processes that print one JSON line per thing
//! they saw: Python's httpx-sse and `h2`, Node's `eventsource` package (also over undici's
//! HTTP/2 fetch) and Node's own `https` and `http2` modules (scripts in `tests/clients/`).
//!
//! The packages are installed on first use, from their registries, into `tests/clients/python`
//! (pip, pinned in `tests/clients/requirements.txt`) and `tests/clients/node_modules` (npm, from
//! `tests/clients/package-lock.json`); both are ignored by git. Where `python3`, `node` or the
//! registries are missing the tests say so loudly and pass, unless `REQUIRE_CLIENTS=1` (CI).

use serde_json::Value;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Installs the clients once (idempotent: skipped when already there). `Err` says what is
/// missing.
fn setup() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    static LOCK: Mutex<()> = Mutex::new(());
    let _one = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    DONE.get_or_init(|| {
        let dir = clients_dir();
        // Every package of requirements.txt: a folder installed before one was added gets it.
        if !dir.join("python/httpx_sse").exists() || !dir.join("python/h2").exists() {
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
                return Err(format!("pip install (httpx-sse, h2) failed: {st}"));
            }
        }
        if !dir.join("node_modules/eventsource").exists()
            || !dir.join("node_modules/undici").exists()
        {
            let st = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--silent"])
                .current_dir(&dir)
                .status()
                .map_err(|e| format!("npm: {e}"))?;
            if !st.success() {
                return Err(format!("npm ci (eventsource, undici) failed: {st}"));
            }
        }
        Ok(())
    })
    .clone()
}

/// Whether the clients are there; panics when they are not and `REQUIRE_CLIENTS=1`.
pub fn clients_installed() -> bool {
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
pub struct Client {
    pub name: &'static str,
    child: Child,
    lines: Receiver<Value>,
    pub seen: Vec<Value>,
}

impl Client {
    /// A subscriber: `httpx-sse` (`sub.py`) or else Node's `eventsource` (`sub.mjs`) on `url`.
    pub fn start(name: &'static str, url: &str) -> Client {
        Self::start_with(name, url, &[])
    }

    /// Like [`start`](Self::start) with extra environment variables (`SSE_CA` for httpx-sse,
    /// `NODE_EXTRA_CA_CERTS` and `SSE_RECONNECT` for `eventsource`).
    pub fn start_with(name: &'static str, url: &str, env: &[(&str, &OsStr)]) -> Client {
        let script = if name == "httpx-sse" {
            "sub.py"
        } else {
            "sub.mjs"
        };
        Self::script(name, script, &[OsStr::new(url)], env)
    }

    /// Runs `tests/clients/{script}` (`.py` with python3, the rest with node) with `args`.
    pub fn script(
        name: &'static str,
        script: &str,
        args: &[&OsStr],
        env: &[(&str, &OsStr)],
    ) -> Client {
        let dir = clients_dir();
        let mut cmd = if script.ends_with(".py") {
            let mut c = Command::new("python3");
            c.env("PYTHONPATH", dir.join("python"));
            c
        } else {
            Command::new("node")
        };
        let mut child = cmd
            .arg(script)
            .args(args)
            .envs(env.iter().copied())
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
    pub fn wait_for(&mut self, key: &str, timeout: Duration) {
        self.wait_until(timeout, |seen| seen.iter().any(|v| v.get(key).is_some()));
    }

    /// Reads lines until `done` holds for all seen so far; panics after `timeout` (or when the
    /// process ends first).
    pub fn wait_until(&mut self, timeout: Duration, done: impl Fn(&[Value]) -> bool) {
        let end = Instant::now() + timeout;
        loop {
            if done(&self.seen) {
                return;
            }
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => self.seen.push(v),
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "{}: not done within {timeout:?}; saw {:?}",
                        self.name, self.seen
                    )
                }
            }
        }
    }

    /// Every line, to the process's end (panics after `timeout`).
    pub fn wait_exit(&mut self, timeout: Duration) -> &[Value] {
        let end = Instant::now() + timeout;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(v) => self.seen.push(v),
                Err(RecvTimeoutError::Disconnected) => return &self.seen,
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "{}: still running after {timeout:?}; saw {:?}",
                        self.name, self.seen
                    )
                }
            }
        }
    }

    /// Reads whatever lines come for `d` (to see that nothing more does).
    pub fn read_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while let Ok(v) = self
            .lines
            .recv_timeout(end.saturating_duration_since(Instant::now()))
        {
            self.seen.push(v);
        }
    }

    /// The data of every event dispatched.
    pub fn datas(&self) -> Vec<String> {
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
