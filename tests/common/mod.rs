//! Helpers for end-to-end tests: run the real `sse-server` binary on 127.0.0.1:0 and talk to it
//! over real sockets.
#![allow(dead_code)] // each test crate uses a different subset

mod client;
pub mod pki;
pub use client::*;
pub mod clients;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The HS256 key token tests start servers with and sign their tokens with.
pub const KEY: &str = "a-test-key-that-is-long-enough-for-hs256!";

/// Seconds since the Unix epoch (for tokens' `exp`).
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A running `sse-server` process, killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Server {
    /// Starts the binary on 127.0.0.1 with a free port and the given extra flags, and waits for
    /// its startup line.
    pub fn start(args: &[&str]) -> Server {
        Self::start_cmd(Command::new(env!("CARGO_BIN_EXE_sse-server")), args)
    }

    /// Like [`start`](Self::start), with its stderr read line by line into the returned
    /// channel (to check the log).
    pub fn start_logged(args: &[&str]) -> (Server, std::sync::mpsc::Receiver<String>) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sse-server"));
        cmd.stderr(Stdio::piped()).env("SSE_QUIET", "0");
        let mut server = Self::start_cmd(cmd, args);
        let rx = lines_of(server.child.stderr.take().expect("piped stderr"));
        (server, rx)
    }

    /// Starts the binary with plain HTTP on 127.0.0.1 (`addr`) and HTTPS beside it
    /// (`--tls-port 0`) with the given certificate and key (see [`pki::Pki`]); returns the
    /// server and the HTTPS address.
    pub fn start_tls(cert: &Path, key: &Path, args: &[&str]) -> (Server, SocketAddr) {
        let cmd = Command::new(env!("CARGO_BIN_EXE_sse-server"));
        Self::start_tls_cmd(cmd, cert, key, args)
    }

    /// Like [`start_tls`](Self::start_tls), with its stderr read line by line into the
    /// returned channel (to check the log).
    pub fn start_tls_logged(
        cert: &Path,
        key: &Path,
        args: &[&str],
    ) -> (Server, SocketAddr, std::sync::mpsc::Receiver<String>) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sse-server"));
        cmd.stderr(Stdio::piped()).env("SSE_QUIET", "0");
        let (mut server, tls) = Self::start_tls_cmd(cmd, cert, key, args);
        let rx = lines_of(server.child.stderr.take().expect("piped stderr"));
        (server, tls, rx)
    }

    fn start_tls_cmd(
        mut cmd: Command,
        cert: &Path,
        key: &Path,
        args: &[&str],
    ) -> (Server, SocketAddr) {
        cmd.args(["--tls-port", "0", "--tls-cert"])
            .arg(cert)
            .arg("--tls-key")
            .arg(key);
        let (child, addrs) = spawn_listening(cmd, args, 2);
        (
            Server {
                child,
                addr: addrs[0],
            },
            addrs[1],
        )
    }

    /// Like [`start`](Self::start), logging every request to a stderr pipe that nobody reads
    /// (a paused `| less`, a stuck log collector): the pipe fills and stays full.
    pub fn start_with_stderr_unread(args: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sse-server"));
        cmd.stderr(Stdio::piped()).env("SSE_QUIET", "0");
        // The pipe's read end stays in `child.stderr`, open and unread, until the drop.
        Self::start_cmd(cmd, args)
    }

    /// Like [`start`](Self::start), with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sse-server"));
        cmd.envs(env.iter().copied());
        Self::start_cmd(cmd, args)
    }

    /// Like [`start`](Self::start), with the process's file-descriptor limit (soft and hard)
    /// set to `nofile`, to drive it out of descriptors.
    pub fn start_with_fd_limit(args: &[&str], nofile: u64) -> Server {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sse-server"));
        // SAFETY: setrlimit is async-signal-safe and touches only the child's limits.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: nofile,
                    rlim_max: nofile,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Self::start_cmd(cmd, args)
    }

    fn start_cmd(cmd: Command, args: &[&str]) -> Server {
        let (child, addrs) = spawn_listening(cmd, args, 1);
        Server {
            child,
            addr: addrs[0],
        }
    }

    /// A new connection with read and write timeouts, so a broken server fails the test
    /// instead of hanging it.
    pub fn connect(&self) -> TcpStream {
        connect(self.addr)
    }

    /// `GET /sse?{query}` with `headers`: a subscription, registered once this returns.
    pub fn subscribe(&self, query: &str, headers: &str) -> Stream {
        subscribe(self.addr, query, headers)
    }

    /// Publishes `data` to `topic` (both sent as given, already form-encoded); the event's id.
    pub fn publish(&self, topic: &str, data: &str) -> String {
        Publish::event(topic, data).id(self.addr)
    }

    /// One request on a fresh connection, read to the end of the response (by Content-Length,
    /// or to the close).
    pub fn request(&self, raw: &str) -> Response {
        request(self.addr, raw)
    }

    /// `GET path` with a Host header and `Connection: close`.
    pub fn get(&self, path: &str) -> Response {
        self.request(&format!(
            "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        ))
    }

    /// The value of one metric line (without labels, or with the exact label text given).
    pub fn metric(&self, name: &str) -> f64 {
        let body = self.get("/metrics").text();
        metric_in(&body, name).unwrap_or_else(|| panic!("metric {name} missing from:\n{body}"))
    }

    /// Like [`metric`](Self::metric), but `Err(status)` when `/metrics` is not answered `200`
    /// (a server out of descriptors sheds it with `503`).
    pub fn try_metric(&self, name: &str) -> Result<f64, u16> {
        let r = self.get("/metrics");
        if r.status != 200 {
            return Err(r.status);
        }
        let body = r.text();
        Ok(metric_in(&body, name).unwrap_or_else(|| panic!("metric {name} missing from:\n{body}")))
    }

    /// Polls `metric` until it equals `want` or the timeout passes; returns the last value.
    pub fn wait_metric(&self, name: &str, want: f64, timeout: Duration) -> f64 {
        let start = Instant::now();
        loop {
            let v = self.metric(name);
            if v == want || start.elapsed() > timeout {
                return v;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The server process's resident set size, from /proc.
    pub fn rss_bytes(&self) -> u64 {
        self.proc_status_bytes("VmRSS")
    }

    /// The server process's peak resident set size so far (`VmHWM`), from /proc.
    pub fn peak_rss_bytes(&self) -> u64 {
        self.proc_status_bytes("VmHWM")
    }

    /// One `kB` field of the process's /proc status, in bytes.
    fn proc_status_bytes(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .unwrap_or_else(|| panic!("no {field} in {status}"))
            .trim()
            .trim_end_matches(" kB")
            .trim()
            .parse()
            .unwrap();
        kb * 1024
    }

    /// The server process's user + system CPU time, in seconds, from /proc.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        ticks as f64 / 100.0
    }

    /// Sends a signal to the process.
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd` on 127.0.0.1 port 0 with `args` and reads the `listeners` startup lines (the
/// plain one first, then the HTTPS one when `--tls-port` is given); the addresses they name.
fn spawn_listening(mut cmd: Command, args: &[&str], listeners: usize) -> (Child, Vec<SocketAddr>) {
    // The per-request log lines would flood the test output; the log's own tests ask for
    // them (start_logged).
    if !cmd.get_envs().any(|(k, _)| k == "SSE_QUIET") {
        cmd.env("SSE_QUIET", "1");
    }
    // From a directory without `www/`: the page must come from the binary itself.
    let mut child = cmd
        .current_dir(std::env::temp_dir())
        .args(["--bind", "127.0.0.1", "--port", "0"])
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("sse-server starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let addrs = (0..listeners)
        .map(|_| {
            let mut line = String::new();
            stdout.read_line(&mut line).expect("startup line");
            // "sse-server listening on http://127.0.0.1:PORT/ ..." (https:// for --tls-port)
            let url = line
                .split_whitespace()
                .find(|w| w.starts_with("http://") || w.starts_with("https://"))
                .unwrap_or_else(|| panic!("no URL in {line:?}"));
            let hostport = url.split("://").nth(1).unwrap().trim_end_matches('/');
            hostport
                .parse()
                .unwrap_or_else(|_| panic!("bad address in {line:?}"))
        })
        .collect();
    (child, addrs)
}

/// The lines of a child's stderr, read on a thread of their own, through a channel.
fn lines_of(err: std::process::ChildStderr) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A temporary directory (`sse-{tag}-{pid}-{nanos}` in the temp dir), removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "sse-{tag}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    /// The path of `name` inside.
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The value of metric `name` (without labels, or with the exact label text given) in a
/// `/metrics` text.
pub fn metric_in(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .map(|v| v.trim().parse().unwrap())
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    /// The value of a header (case-insensitive name), if present once or more (first wins).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a fresh connection to `addr` (the server, or a proxy in front of it), read to
/// the end of the response (by Content-Length, or to the close).
pub fn request(addr: SocketAddr, raw: &str) -> Response {
    let mut s = connect(addr);
    s.write_all(raw.as_bytes()).unwrap();
    if raw.starts_with("HEAD ") {
        read_head_response(&mut s)
    } else {
        read_response(&mut s)
    }
}

/// Like [`read_response`], `None` where that panics (closed, reset or timed out before the
/// end of the answer).
pub fn try_read_response(s: &mut TcpStream) -> Option<Response> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => buf.push(byte[0]),
            Ok(_) => return None,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    let head = String::from_utf8(buf).ok()?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let mut resp = Response {
        status,
        head,
        body: Vec::new(),
    };
    match resp.header("content-length") {
        Some(n) => {
            resp.body.resize(n.parse().ok()?, 0);
            s.read_exact(&mut resp.body).ok()?;
        }
        None => {
            s.read_to_end(&mut resp.body).ok()?;
        }
    }
    Some(resp)
}

/// Reads one response head, then its body by Content-Length (or to the close if there is none).
pub fn read_response(s: &mut TcpStream) -> Response {
    let mut resp = read_head_response(s);
    match resp
        .header("content-length")
        .map(|v| v.parse::<usize>().unwrap())
    {
        Some(n) => {
            resp.body.resize(n, 0);
            s.read_exact(&mut resp.body).unwrap();
        }
        None => {
            let _ = s.read_to_end(&mut resp.body);
        }
    }
    resp
}

/// Reads one response head only (the answer to HEAD, or a 304).
pub fn read_head_response(s: &mut TcpStream) -> Response {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(0) => panic!(
                "closed before the end of the head: {:?}",
                String::from_utf8_lossy(&buf)
            ),
            Ok(_) => buf.push(byte[0]),
            Err(e) => panic!("reading head: {e}; got {:?}", String::from_utf8_lossy(&buf)),
        }
    }
    let head = String::from_utf8(buf).expect("ASCII head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    Response {
        status,
        head,
        body: Vec::new(),
    }
}

/// Reads from `s` until `pred` holds for the bytes so far, or panics after `timeout`.
pub fn read_until(s: &mut TcpStream, timeout: Duration, pred: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !pred(&got) {
        assert!(
            start.elapsed() < timeout,
            "timed out; got {:?}",
            String::from_utf8_lossy(&got)
        );
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    got
}

/// The complete frames (blocks ending in a blank line) after the response head, as raw text:
/// for checks of the clock stream's exact bytes. What a client makes of a stream (events, ids,
/// types, data) is read with [`Stream`], through the crate's own event-stream parser.
pub fn frames(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    let mut out: Vec<String> = body.split_inclusive("\n\n").map(str::to_owned).collect();
    if out.last().is_some_and(|f| !f.ends_with("\n\n")) {
        out.pop();
    }
    out
}
