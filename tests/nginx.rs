//! The shipped deployment files, tested for real: Debian's nginx runs `deploy/nginx.conf` (only
//! its two addresses rewritten) in front of the server, and `systemd-analyze verify` checks
//! `deploy/sse-server.service`.
//!
//! Without nginx the test is skipped with a loud notice, unless `REQUIRE_NGINX=1` (CI sets it).

mod common;

use common::Server;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const NGINX: &str = "/usr/sbin/nginx";

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file)
}

/// nginx in the foreground on a temp prefix, killed (and its files removed) on drop.
struct Nginx {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Nginx {
    /// Starts nginx with `deploy/nginx.conf`, its upstream pointed at `upstream`.
    fn start(upstream: SocketAddr) -> Nginx {
        let dir = std::env::temp_dir().join(format!("sse-nginx-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // A free port: bound by the kernel, then released for nginx.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let shipped = std::fs::read_to_string(deploy("nginx.conf")).unwrap();
        let site = replace_once(
            &shipped,
            "server 127.0.0.1:3000;",
            &format!("server {upstream};"),
        );
        let site = replace_once(&site, "listen 80;", &format!("listen 127.0.0.1:{port};"));
        let site = replace_once(&site, "listen [::]:80;", "");
        std::fs::write(dir.join("sse-server.conf"), site).unwrap();
        let d = dir.display();
        let main = format!(
            "daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    include {d}/sse-server.conf;
}}
"
        );
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, main).unwrap();
        let args = |extra: &[&str]| {
            let mut a = vec![
                "-p".to_string(),
                d.to_string(),
                "-e".to_string(),
                format!("{d}/error.log"),
                "-c".to_string(),
                conf.display().to_string(),
            ];
            a.extend(extra.iter().map(|s| s.to_string()));
            a
        };
        let check = Command::new(NGINX).args(args(&["-t"])).output().unwrap();
        assert!(
            check.status.success(),
            "nginx -t: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = Command::new(NGINX)
            .args(args(&[]))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let start = Instant::now();
        while TcpStream::connect(addr).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "nginx did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx { child, dir, addr }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `text` with `from` replaced; the shipped file must still contain it exactly once, or the
/// test would quietly run some other configuration.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "deploy/nginx.conf must contain {from:?} once"
    );
    text.replacen(from, to, 1)
}

fn nginx_available() -> bool {
    if Path::new(NGINX).exists() {
        return true;
    }
    let required = std::env::var("REQUIRE_NGINX").is_ok_and(|v| v == "1");
    assert!(!required, "REQUIRE_NGINX=1 but {NGINX} is missing");
    eprintln!(
        "\n!!! NOTICE: {NGINX} not found: the nginx test is SKIPPED \
         (apt-get install nginx; REQUIRE_NGINX=1 makes this a failure) !!!\n"
    );
    false
}

/// Milliseconds since the epoch of the seed's `content` timestamp, `2026-11-23T19:09:42.321Z`.
fn epoch_ms(ts: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| ts[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    ((days * 24 + n(11..13)) * 60 + n(14..16)) * 60_000 + n(17..19) * 1000 + n(20..23)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Reads `n` frames of a new `GET /sse` on `addr` in a thread of its own: per frame, its id and
/// its delay (arrival time minus the frame's own timestamp, in ms).
fn read_frames(addr: SocketAddr, n: usize) -> std::thread::JoinHandle<Vec<(u64, i64)>> {
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        s.write_all(b"GET /sse HTTP/1.1\r\nHost: t\r\nAccept: text/event-stream\r\n\r\n")
            .unwrap();
        let mut buf = Vec::new();
        let mut frames = Vec::new();
        let mut chunk = [0u8; 4096];
        let start = Instant::now();
        while frames.len() < n {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "{addr}: {} frames in 15 s",
                frames.len()
            );
            match s.read(&mut chunk) {
                Ok(0) => panic!("{addr}: stream closed"),
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    continue
                }
                Err(e) => panic!("{e}"),
            }
            let now = now_ms();
            let text = String::from_utf8_lossy(&buf);
            assert!(text.starts_with("HTTP/1.1 200 "), "{text}");
            // Through nginx the body is chunked: frames are found by their lines, whatever
            // the chunk framing around them.
            let ids = text.match_indices("\nid:").map(|(i, _)| i + 4);
            let stamps = text.match_indices("\"content\":\"").map(|(i, _)| i + 11);
            for (k, (i, t)) in ids.zip(stamps).enumerate() {
                if k < frames.len() {
                    continue;
                }
                if text.len() < t + 24 {
                    break;
                }
                let id = text[i..]
                    .split('\n')
                    .next()
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
                frames.push((id, now - epoch_ms(&text[t..t + 24])));
            }
        }
        frames.truncate(n);
        frames
    })
}

#[test]
fn nginx_passes_frames_at_once_and_a_client_close_reaches_the_server() {
    if !nginx_available() {
        return;
    }
    const INTERVAL_MS: u64 = 600;
    let server = Server::start(&["--interval-ms", &INTERVAL_MS.to_string(), "--threads", "1"]);
    let nginx = Nginx::start(server.addr);

    // The page's files go through too.
    let mut s = TcpStream::connect(nginx.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    let page = common::read_response(&mut s);
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<html") || page.text().contains("<!doctype"));

    // A stream straight to the server and its twin through nginx, each read by its own
    // thread as frames arrive.
    let direct = read_frames(server.addr, 5);
    let proxied = read_frames(nginx.addr, 5);
    let (direct, proxied) = (direct.join().unwrap(), proxied.join().unwrap());
    eprintln!("frame delays, direct {direct:?}, through nginx {proxied:?}");
    for k in 0..5 {
        let (d_id, d_delay) = direct[k];
        let (p_id, p_delay) = proxied[k];
        assert_eq!((d_id, p_id), (k as u64, k as u64));
        // Each frame's delay after its own timestamp: through nginx within 50 ms of its
        // twin's, where buffering would hold frames back by whole intervals.
        assert!(
            p_delay <= d_delay + 50,
            "frame {k}: {p_delay} ms through nginx, {d_delay} ms direct"
        );
    }
    assert_eq!(
        server.wait_metric("sse_streams_open", 0.0, Duration::from_secs(3)),
        0.0
    );

    // Closing the client through nginx ends the stream on the server at once: right after a
    // frame, so well before the next one could fail to be written.
    let mut s = TcpStream::connect(nginx.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    common::read_until(&mut s, Duration::from_secs(5), |b| {
        String::from_utf8_lossy(b).contains("\n\n")
    });
    assert_eq!(server.metric("sse_streams_open"), 1.0);
    drop(s);
    let closed = Instant::now();
    let open = server.wait_metric(
        "sse_streams_open",
        0.0,
        Duration::from_millis(INTERVAL_MS / 2),
    );
    assert_eq!(
        open,
        0.0,
        "the stream behind nginx was still open {:?} after the client closed",
        closed.elapsed()
    );
}

#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(deploy("sse-server.service")).unwrap();
    for needed in ["LimitNOFILE=", "Restart=on-failure", "KillSignal=SIGTERM"] {
        assert!(unit.contains(needed), "{needed} missing from the unit");
    }
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("NOTICE: systemd-analyze not found: the unit file is not verified");
        return;
    };
    assert!(out.status.success());
    // verify checks that ExecStart exists: point it at the binary under test.
    let dir = std::env::temp_dir().join(format!("sse-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("sse-server.service");
    let unit = replace_once(
        &unit,
        "ExecStart=/usr/local/bin/sse-server",
        &format!("ExecStart={}", env!("CARGO_BIN_EXE_sse-server")),
    );
    std::fs::write(&copy, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("sse-server.service"),
        "systemd-analyze verify: {stderr}"
    );
}
