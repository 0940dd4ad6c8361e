//! A real `redis-server` for tests (never a mock): on a free loopback port, persistence off
//! unless asked for, in a temporary folder, killed and removed when dropped.
//!
//! When `redis-server` is not installed the tests that need it are skipped with a loud notice,
//! unless `REQUIRE_REDIS=1` (CI), where a missing server fails them.
#![allow(dead_code)] // each test crate uses a different subset

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Where Debian puts the server; `PATH` is tried too.
const DEBIAN_PATH: &str = "/usr/bin/redis-server";

/// A running `redis-server`, killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    args: Vec<String>,
    program: String,
}

fn program() -> Option<String> {
    if std::path::Path::new(DEBIAN_PATH).exists() {
        return Some(DEBIAN_PATH.to_string());
    }
    let ok = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| "redis-server".to_string())
}

impl RedisServer {
    /// Starts a server with persistence off and `extra` arguments (e.g. `--requirepass x`,
    /// `--appendonly yes`). `None` (after a loud notice) when no `redis-server` is installed
    /// and `REQUIRE_REDIS` is not `1`.
    pub fn start(extra: &[&str]) -> Option<RedisServer> {
        let Some(program) = program() else {
            if std::env::var("REQUIRE_REDIS").as_deref() == Ok("1") {
                panic!("REQUIRE_REDIS=1 but redis-server is not installed");
            }
            eprintln!(
                "\n*** SKIPPED: redis-server is not installed (apt-get install redis-server); \
                 set REQUIRE_REDIS=1 to make this a failure ***\n"
            );
            return None;
        };
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sse-redis-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut s = RedisServer {
            child: None,
            port: 0,
            dir,
            args: extra.iter().map(|a| a.to_string()).collect(),
            program,
        };
        // A free port can be taken between our probe and the server's bind: try a few.
        for _ in 0..5 {
            s.port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("free port")
                .port();
            if s.spawn() {
                return Some(s);
            }
        }
        panic!("redis-server did not start (see its log in {:?})", s.dir);
    }

    /// Starts the process on `self.port` and waits until it answers `PING`; false if it died.
    fn spawn(&mut self) -> bool {
        let log = std::fs::File::create(self.dir.join("redis.log")).expect("log file");
        let mut cmd = Command::new(&self.program);
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        let mut child = cmd.spawn().expect("spawn redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if self.answers_ping() {
                self.child = Some(child);
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// Any reply to `PING` (`+PONG`, or `-NOAUTH` with a password) but `-LOADING` (still
    /// reading its append-only file, when every command is refused) means it is serving.
    fn answers_ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut b = [0u8; 8];
        let mut n = 0;
        while n < b.len() {
            match s.read(&mut b[n..]) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
            if b[..n].contains(&b'\n') {
                break;
            }
        }
        n > 0 && (b[0] == b'+' || (b[0] == b'-' && !b[..n].starts_with(b"-LOADING")))
    }

    /// `redis://[:password@]127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A plain connection for the test's own commands.
    pub fn conn(&self, url: &str) -> redis::Connection {
        redis::Client::open(url)
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
            .expect("test connection to redis")
    }

    /// Kills the server (SIGKILL: a crash, not a shutdown).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: as in `signal`; a stopped process still dies of SIGKILL, this only
            // keeps its state tidy.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGCONT) };
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open and nothing answers, as with a
    /// hung host or a network partition.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Thaws a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = self.child.as_ref().expect("server running").id();
        // SAFETY: kill(2) on our own child's pid, which we have not yet waited for.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, sig) }, 0);
    }

    /// Starts it again on the same port, folder and arguments (so with `--appendonly yes`
    /// the data is back).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.spawn() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not restart on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
