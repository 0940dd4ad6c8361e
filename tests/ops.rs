//! Running it like a production service, over real sockets against the real binary: one
//! instance per port, the dual-stack default, errors that blame the right thing, configuration
//! from the environment, and the descriptor budget.

mod common;

use common::Server;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sse-server");

/// Runs the binary to its end (it must end within 5 s): its status, stdout and stderr.
fn run_to_end(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("PORT")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(5) {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after 5 s: {} {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// A server started with exactly these arguments and variables (no `--bind` added): the
/// process (killed on drop), its startup line and the port in it.
struct Raw {
    child: Child,
    line: String,
    port: u16,
    stderr: std::sync::mpsc::Receiver<String>,
}

impl Raw {
    fn start(args: &[&str], env: &[(&str, &str)]) -> Raw {
        let mut child = Command::new(BIN)
            .current_dir(std::env::temp_dir())
            .args(args)
            .env_remove("PORT")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, stderr) = std::sync::mpsc::channel();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                eprintln!("server: {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"));
        let port = url
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("no port in {line:?}"));
        Raw {
            child,
            line,
            port,
            stderr,
        }
    }

    /// Everything the server wrote to stderr so far.
    fn stderr(&self) -> String {
        std::thread::sleep(Duration::from_millis(100));
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` on `addr` with `Connection: close`: the status code and the whole response.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}

#[test]
fn a_second_instance_on_a_busy_port_fails_whatever_the_threads() {
    for threads in ["1", "2", "4"] {
        let first = Server::start(&["--threads", threads]);
        let port = first.addr.port().to_string();
        for second in ["1", "2", "4"] {
            let out = run_to_end(
                &["--bind", "127.0.0.1", "--port", &port, "--threads", second],
                &[],
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success() && stderr.contains("Address already in use"),
                "first --threads {threads}, second --threads {second}: {:?}, stdout {:?}, stderr {stderr:?}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
            );
            assert!(
                out.stdout.is_empty(),
                "no \"listening\" line from the second instance"
            );
        }
        // The first instance still has every connection.
        assert_eq!(first.get("/healthz").status, 200);
    }
}

#[test]
fn a_wildcard_instance_refuses_a_port_held_on_an_address() {
    let first = Server::start(&["--threads", "2"]);
    let port = first.addr.port().to_string();
    let out = run_to_end(&["--port", &port], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("Address already in use"),
        "{stderr}"
    );
}

#[test]
fn the_default_listener_is_dual_stack_and_its_url_works() {
    if TcpStream::connect("[::1]:1").is_err_and(|e| e.raw_os_error() == Some(libc::EADDRNOTAVAIL)) {
        eprintln!("NOTICE: no IPv6 loopback here; dual-stack check skipped");
        return;
    }
    let server = Raw::start(&["--port", "0"], &[]);
    assert!(server.line.contains("http://localhost:"), "{}", server.line);
    for ip in ["::1", "127.0.0.1"] {
        let addr = SocketAddr::new(ip.parse().unwrap(), server.port);
        assert_eq!(get(addr, "/healthz").0, 200, "{addr}");
    }
}

#[test]
fn errors_blame_the_right_thing() {
    let out = run_to_end(&["--port", "0", "--www", "/nonexistent"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--www /nonexistent: No such file or directory")
            && !stderr.contains("listen"),
        "{stderr}"
    );

    let out = run_to_end(&["--port", "99999"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("out of range") && !stderr.contains("not a valid number"),
        "{stderr}"
    );
    let out = run_to_end(&[], &[("PORT", "99999")]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("PORT 99999 is out of range"));

    // A folder without index.html starts, with a warning that names the consequence.
    let dir = std::env::temp_dir().join(format!("sse-ops-noindex-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("app.js"), "x").unwrap();
    let server = Raw::start(
        &[
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--www",
            dir.to_str().unwrap(),
        ],
        &[],
    );
    let stderr = server.stderr();
    assert!(
        stderr.contains("no index.html") && stderr.contains("404"),
        "{stderr}"
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], server.port));
    assert_eq!(get(addr, "/app.js").0, 200);
    drop(server);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_flag_is_settable_from_the_environment_and_the_flag_wins() {
    let help = run_to_end(&["--help"], &[]);
    let help = String::from_utf8_lossy(&help.stdout);
    for var in ["SSE_INTERVAL_MS", "SSE_MAX_STREAMS", "SSE_PORT", "SSE_BIND"] {
        assert!(help.contains(var), "{var} missing from --help");
    }
    let server = Raw::start(
        &[],
        &[
            ("SSE_BIND", "127.0.0.1"),
            ("SSE_PORT", "0"),
            ("SSE_INTERVAL_MS", "50"),
            ("SSE_MAX_STREAMS", "3"),
            ("SSE_THREADS", "1"),
        ],
    );
    assert!(
        server
            .line
            .contains("every 50 ms; 1 loops, up to 3 streams"),
        "{}",
        server.line
    );
    drop(server);
    let server = Raw::start(
        &["--interval-ms", "70"],
        &[
            ("SSE_BIND", "127.0.0.1"),
            ("PORT", "0"),
            ("SSE_INTERVAL_MS", "50"),
        ],
    );
    assert!(server.line.contains("every 70 ms"), "{}", server.line);
    assert!(server.line.contains("http://127.0.0.1:"), "{}", server.line);
    let out = run_to_end(&["--port", "0"], &[("SSE_INTERVAL_MS", "soon")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("SSE_INTERVAL_MS"),
        "{stderr}"
    );
}

#[test]
fn a_small_descriptor_limit_still_holds_most_clients_and_warns() {
    // `ulimit -n 256`: the default must not shrink to the limit minus 256.
    let server = Server::start_with_fd_limit(&["--threads", "1", "--interval-ms", "1000"], 256);
    let mut held = Vec::new();
    let mut shed = 0;
    for _ in 0..400 {
        let mut s = server.connect();
        s.write_all(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let got = common::read_until(&mut s, Duration::from_secs(5), |b| {
            b.windows(4).any(|w| w == b"\r\n\r\n")
        });
        if String::from_utf8_lossy(&got).contains("Connection: close") {
            shed += 1;
        } else {
            held.push(s);
        }
    }
    assert!(
        held.len() >= 200,
        "{} held, {shed} shed under a limit of 256",
        held.len()
    );
    drop(held);

    // Asking for more streams than the limit can hold is said at start-up.
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--bind",
        "127.0.0.1",
        "--port",
        "0",
        "--max-streams",
        "1000",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe and touches only the child's limits.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 256,
                rlim_max: 256,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning") && stderr.contains("--max-streams 1000"),
        "{stderr}"
    );
}

#[test]
fn versions_hosts_and_dot_segments_as_the_rfcs_say() {
    let server = Server::start(&[]);
    let cases: &[(&str, u16)] = &[
        ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a/b@c\r\n\r\n", 400),
        (
            "GET /healthz HTTP/1.1\r\nHost: [::1]:3000\r\nConnection: close\r\n\r\n",
            200,
        ),
        // RFC 9110 section 2.5: a later 1.x is answered as 1.1; another major gets 505.
        (
            "GET /healthz HTTP/1.2\r\nHost: t\r\nConnection: close\r\n\r\n",
            200,
        ),
        ("GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        (
            "GET /./index.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            200,
        ),
        (
            "GET /x/../app.js HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            200,
        ),
        (
            "GET /../index.html HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            404,
        ),
    ];
    for &(raw, want) in cases {
        let r = server.request(raw);
        assert_eq!(r.status, want, "{raw:?} -> {}", r.head);
    }
    let r = server.request("GET / HTTP/2.0\r\nHost: t\r\n\r\n");
    assert_eq!(r.header("connection"), Some("close"));
}

/// A `--www` folder in a fresh temp directory, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("sse-ops-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("index.html"), "<!doctype html>").unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn the_www_cache_is_bounded_and_forgets_deleted_files() {
    let www = TempDir::new("rss");
    // Files written a while before they are served (the cache does not trust a file changed
    // in the last second), 1 MiB each and all different.
    for i in 0..100u32 {
        let body: Vec<u8> = (0..1u32 << 20).map(|k| (k ^ i) as u8).collect();
        std::fs::write(www.0.join(format!("f{i}.bin")), body).unwrap();
    }
    std::thread::sleep(Duration::from_millis(1100));
    let server = Server::start(&["--www", www.0.to_str().unwrap(), "--threads", "1"]);
    assert_eq!(server.get("/").status, 200);
    let before = server.rss_bytes();
    for i in 0..100u32 {
        let r = server.get(&format!("/f{i}.bin"));
        assert_eq!((r.status, r.body.len()), (200, 1 << 20));
        std::fs::remove_file(www.0.join(format!("f{i}.bin"))).unwrap();
    }
    let served = server.rss_bytes().saturating_sub(before);
    for i in 0..100u32 {
        assert_eq!(server.get(&format!("/f{i}.bin")).status, 404);
    }
    let after_404 = server.rss_bytes().saturating_sub(before);
    eprintln!(
        "RSS grew by {} KiB serving 100 x 1 MiB, {} KiB once they answered 404",
        served >> 10,
        after_404 >> 10
    );
    // The cache holds at most 32 MiB of bodies; before it was bounded this was about 100 MiB.
    assert!(served < 48 << 20, "RSS grew by {} MiB", served >> 20);
    // A path found missing drops its entry, and the memory goes back.
    assert!(after_404 < 16 << 20, "RSS still {} MiB up", after_404 >> 20);
}

#[test]
fn a_same_size_file_with_its_mtime_kept_is_not_served_stale() {
    let www = TempDir::new("stale");
    let path = www.0.join("f.txt");
    let mtime = std::time::SystemTime::now() - Duration::from_secs(100);
    let write = |p: &std::path::Path, text: &str| {
        std::fs::write(p, text).unwrap();
        // What `cp -p`, `tar` and `touch -d` do: the old modification time back.
        let f = std::fs::File::options().write(true).open(p).unwrap();
        f.set_modified(mtime).unwrap();
    };
    write(&path, "aaaa");
    std::thread::sleep(Duration::from_millis(1100));
    let server = Server::start(&["--www", www.0.to_str().unwrap()]);
    let first = server.get("/f.txt");
    assert_eq!(first.text(), "aaaa");
    assert_eq!(server.get("/f.txt").text(), "aaaa", "served from the cache");
    // Rewritten in place: same inode, size and mtime; only the change time moves.
    write(&path, "bbbb");
    let second = server.get("/f.txt");
    assert_eq!(second.text(), "bbbb");
    assert_ne!(first.header("etag"), second.header("etag"));
    // Replaced by another file (a new inode) with the same size and mtime.
    let tmp = www.0.join(".f.tmp");
    write(&tmp, "cccc");
    std::fs::rename(&tmp, &path).unwrap();
    assert_eq!(server.get("/f.txt").text(), "cccc");
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(server.get("/f.txt").text(), "cccc");
    write(&path, "dddd");
    assert_eq!(server.get("/f.txt").text(), "dddd");
}

/// `--jwt-key` ends tokenless loopback publishing: the start-up line and a note on stderr say
/// so (people added a key for private subscriptions and found their publisher refused), and
/// `--help` says it next to the flag.
#[test]
fn a_jwt_key_says_at_start_up_that_loopback_needs_a_token_to_publish() {
    let key = "a-start-up-test-key-long-enough-for-hs256";
    let with_key = Raw::start(
        &["--bind", "127.0.0.1", "--port", "0", "--jwt-key", key],
        &[],
    );
    assert!(
        with_key
            .line
            .contains("POST /publish needs a publisher token, from loopback clients too"),
        "{}",
        with_key.line
    );
    let err = with_key.stderr();
    assert!(
        err.contains("--jwt-key is set, so tokenless publishing from loopback is off"),
        "{err}"
    );
    assert!(!err.contains(key), "the key is never printed: {err}");
    // With a publish token too, the static token is the way in: no note.
    let both = Raw::start(
        &[
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--jwt-key",
            key,
            "--publish-token",
            "p",
        ],
        &[],
    );
    assert!(
        both.line.contains("POST /publish needs a bearer token"),
        "{}",
        both.line
    );
    assert!(!both.stderr().contains("tokenless"));
    let plain = Raw::start(&["--bind", "127.0.0.1", "--port", "0"], &[]);
    assert!(
        plain.line.contains("from loopback clients only"),
        "{}",
        plain.line
    );
    assert!(!plain.stderr().contains("tokenless"));
    let help = run_to_end(&["--help"], &[]);
    let help = String::from_utf8_lossy(&help.stdout);
    let row = help
        .lines()
        .find(|l| l.trim_start().starts_with("--jwt-key KEY"))
        .unwrap_or_else(|| panic!("no --jwt-key row in {help}"));
    assert!(row.contains("loopback then needs one to publish"), "{row}");
}
