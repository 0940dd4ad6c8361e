//! The shipped deployment files, tested for real: Debian's nginx runs `deploy/nginx.conf` (only
//! its two addresses rewritten) in front of the server, and `systemd-analyze verify` checks
//! `deploy/sse-server.service`. README's nginx steps run, as written, on a copy of Debian's
//! stock `/etc/nginx` (and the step it used to give, `conf.d/` beside the default site, is
//! shown not to work); publishing through nginx needs the token.
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
    for needed in [
        "LimitNOFILE=",
        "Restart=on-failure",
        "KillSignal=SIGTERM",
        // The token file is required (no `-`): the unit never starts with publishing open.
        "\nEnvironmentFile=/etc/default/sse-server\n",
        "openssl rand -hex 32",
    ] {
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

/// nginx on a copy of Debian's stock `/etc/nginx` tree in a temp prefix, set up by running a
/// shell sequence (the README's steps) on the copy; killed (and its files removed) on drop.
///
/// The copy is the machine's tree with its absolute paths moved under the prefix: `include`s of
/// `/etc/nginx`, the pid file, the logs, symbolic links into `/etc/nginx`; `modules/` (the
/// dynamic modules `modules-enabled/` loads) points at Debian's. The steps run verbatim under
/// `sh -e`, from the repository, with `/etc/nginx` in them naming the copy and with `sudo`
/// (runs its arguments), `nginx` (this prefix's nginx) and `systemctl` (records what it was
/// asked) first on `PATH`. Then, as a port below 1024 is not ours to take, every
/// `listen 80` of the tree becomes `listen 127.0.0.1:<free port>` (the `[::]:80` ones are
/// dropped) and the shipped upstream `127.0.0.1:3000` the server under test; nginx starts if
/// the steps asked systemctl to (re)load or (re)start it.
struct StockNginx {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

/// The `sh` block of README.md that sets up nginx: the one that names `sites-enabled/`.
fn readme_nginx_steps() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let blocks: Vec<&str> = readme
        .split("```sh\n")
        .skip(1)
        .filter_map(|b| b.split("```").next())
        .filter(|b| b.contains("/etc/nginx/sites-enabled/"))
        .collect();
    assert_eq!(
        blocks.len(),
        1,
        "README.md must have one sh block of nginx steps (naming /etc/nginx/sites-enabled/)"
    );
    blocks[0].to_string()
}

/// Copies the tree at `from` to `to`: files with `rewrite` applied to their text, symbolic
/// links into `/etc/nginx` re-pointed at the copy (others kept).
fn copy_tree(from: &Path, to: &Path, rewrite: &dyn Fn(&str) -> String) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            let target = std::fs::read_link(&src).unwrap();
            let target = PathBuf::from(rewrite(&target.display().to_string()));
            std::os::unix::fs::symlink(target, &dst).unwrap();
        } else if kind.is_dir() {
            copy_tree(&src, &dst, rewrite);
        } else {
            let bytes = std::fs::read(&src).unwrap();
            match String::from_utf8(bytes) {
                Ok(text) => std::fs::write(&dst, rewrite(&text)).unwrap(),
                Err(e) => std::fs::write(&dst, e.into_bytes()).unwrap(),
            }
        }
    }
}

/// Every regular file under `dir` (symbolic links not followed).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            out.extend(files_under(&entry.path()));
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
    out
}

impl StockNginx {
    /// Sets up the copy, runs `steps` on it, points it at `upstream` and starts nginx; also
    /// returns what `nginx -t` said of the final tree.
    fn start(name: &str, steps: &str, upstream: SocketAddr) -> (StockNginx, String) {
        let dir = std::env::temp_dir().join(format!("sse-stock-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let etc = dir.join("etc/nginx");
        for sub in ["bin", "log", "tmp"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        let stock = Path::new("/etc/nginx");
        assert!(
            stock.join("sites-available/default").is_file()
                && stock.join("sites-enabled/default").exists(),
            "/etc/nginx is not Debian's stock tree (no enabled default site)"
        );
        let d = dir.display().to_string();
        let moved = |text: &str| {
            text.replace("/etc/nginx", &format!("{d}/etc/nginx"))
                .replace("/run/nginx.pid", &format!("{d}/nginx.pid"))
                .replace("/var/log/nginx", &format!("{d}/log"))
        };
        copy_tree(stock, &etc, &moved);
        if Path::new("/usr/share/nginx/modules").exists() {
            std::os::unix::fs::symlink("/usr/share/nginx/modules", dir.join("modules")).unwrap();
        }
        // Temporary files in the prefix, so that the test needs no root (http {} context, which
        // conf.d/ is included in).
        let temp = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
            .map(|t| format!("{t}_temp_path {d}/tmp/{t};\n"))
            .concat();
        std::fs::write(etc.join("conf.d/zz-test-temp-paths.conf"), temp).unwrap();
        let conf = etc.join("nginx.conf");
        let nginx_args = format!(
            "-p {d}/ -e {d}/log/error.log -c {} -g 'daemon off; master_process off;'",
            conf.display()
        );
        let script = |file: &str, body: String| {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.join("bin").join(file);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        script("sudo", "exec \"$@\"".into());
        script("nginx", format!("exec {NGINX} {nginx_args} \"$@\""));
        script("systemctl", format!("echo \"$@\" >> {d}/systemctl.log"));

        let steps = moved(steps);
        let path = format!(
            "{d}/bin:{}",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into())
        );
        let out = Command::new("sh")
            .args(["-ec", &steps])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("PATH", path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the steps failed:\n{steps}\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let asked = std::fs::read_to_string(dir.join("systemctl.log")).unwrap_or_default();
        assert!(
            ["reload nginx", "restart nginx", "start nginx"]
                .iter()
                .any(|a| asked.lines().any(|l| l.trim() == *a)),
            "the steps never (re)load nginx: systemctl was asked {asked:?}"
        );

        // The port and the upstream.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        for file in files_under(&etc) {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let mut changed = false;
            let lines: Vec<String> = text
                .lines()
                .filter_map(|line| {
                    let t = line.trim_start();
                    let indent = &line[..line.len() - t.len()];
                    if t.starts_with("listen [::]:80;") || t.starts_with("listen [::]:80 ") {
                        changed = true;
                        None
                    } else if let Some(rest) = t
                        .strip_prefix("listen 80;")
                        .map(|r| format!(";{r}"))
                        .or_else(|| t.strip_prefix("listen 80 ").map(|r| format!(" {r}")))
                    {
                        changed = true;
                        Some(format!("{indent}listen 127.0.0.1:{port}{rest}"))
                    } else if t.starts_with("server 127.0.0.1:3000;") {
                        changed = true;
                        Some(line.replace("127.0.0.1:3000", &upstream.to_string()))
                    } else {
                        Some(line.to_string())
                    }
                })
                .collect();
            if changed {
                std::fs::write(&file, lines.join("\n") + "\n").unwrap();
            }
        }
        let check = Command::new(format!("{d}/bin/nginx"))
            .arg("-t")
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&check.stderr).into_owned();
        assert!(check.status.success(), "nginx -t: {said}");
        let child = Command::new(format!("{d}/bin/nginx"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let start = Instant::now();
        while TcpStream::connect(addr).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "nginx did not start: {}",
                std::fs::read_to_string(dir.join("log/error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        (StockNginx { child, dir, addr }, said)
    }
}

impl Drop for StockNginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The first frame of `GET /sse` at `addr` (HTTP/1.0, so nginx sends the body as it is), with
/// its date blanked out: the response's status line and `Content-Type`, and the frame's bytes.
fn first_clock_frame(addr: SocketAddr) -> (String, Option<String>, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /sse HTTP/1.0\r\nHost: t\r\n\r\n")
        .unwrap();
    let got = common::read_until(&mut s, Duration::from_secs(5), |b| {
        let t = String::from_utf8_lossy(b);
        t.split_once("\r\n\r\n")
            .is_some_and(|(_, body)| body.contains("\n\n"))
    });
    let text = String::from_utf8_lossy(&got).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let frame = body.split_inclusive("\n\n").next().unwrap_or_default();
    let blank = match frame.find("\"content\":\"") {
        Some(i) => format!("{}<date>{}", &frame[..i + 11], &frame[i + 11 + 24..]),
        None => frame.to_string(),
    };
    let ct = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: ").map(str::to_owned));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        ct,
        blank,
    )
}

#[test]
fn the_readme_steps_work_on_a_stock_debian_nginx() {
    if !nginx_available() {
        return;
    }
    let server = Server::start(&["--interval-ms", "200", "--threads", "1"]);
    let steps = readme_nginx_steps();
    for needed in ["sites-available", "sites-enabled", "nginx -t"] {
        assert!(steps.contains(needed), "the steps miss {needed}:\n{steps}");
    }
    let (nginx, said) = StockNginx::start("readme", &steps, server.addr);
    assert!(
        !said.contains("conflicting server name"),
        "nginx -t: {said}"
    );

    // The stream, byte for byte as the server sends it.
    let direct = first_clock_frame(server.addr);
    let proxied = first_clock_frame(nginx.addr);
    assert_eq!(direct.0, "HTTP/1.1 200 OK");
    assert_eq!(proxied.0, "HTTP/1.1 200 OK", "{proxied:?}");
    assert_eq!(proxied.1, direct.1);
    assert!(direct
        .1
        .as_deref()
        .is_some_and(|ct| ct.starts_with("text/event-stream")));
    assert_eq!(proxied.2, direct.2);
    assert!(proxied.2.starts_with("event:sseEvent\n"), "{proxied:?}");
    // The page is the server's, not nginx's Welcome page.
    let page = common::request(
        nginx.addr,
        "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(page.status, 200);
    assert!(!page.text().contains("Welcome to nginx"), "{}", page.text());
    assert_eq!(page.text(), server.get("/").text());
}

/// The step the README used to give: the site dropped into `conf.d/` beside the enabled
/// default site. The harness above must see that it does not work (the Welcome page, `/sse`
/// 404, nginx warning of the conflict), or it could not tell the README's steps work.
#[test]
fn the_old_conf_d_step_is_caught() {
    if !nginx_available() {
        return;
    }
    let server = Server::start(&["--threads", "1"]);
    let steps = "sudo cp deploy/nginx.conf /etc/nginx/conf.d/sse-server.conf\n\
                 sudo nginx -t && sudo systemctl reload nginx\n";
    let (nginx, said) = StockNginx::start("conf-d", steps, server.addr);
    assert!(said.contains("conflicting server name"), "nginx -t: {said}");
    let (status, _, _) = first_clock_frame(nginx.addr);
    assert!(status.contains(" 404 "), "/sse through it: {status}");
    let page = common::request(
        nginx.addr,
        "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(page.text().contains("Welcome to nginx"), "{}", page.text());
}

/// `POST /publish` of a form event through `addr`, with `extra` header lines.
fn publish_via(addr: SocketAddr, extra: &str) -> common::Response {
    common::Publish::raw(
        &format!("Content-Type: {}\r\n{extra}", common::FORM),
        "topic=t&data=through+nginx",
    )
    .host(&addr.to_string())
    .send(addr)
}

#[test]
fn publishing_through_nginx_needs_the_token() {
    if !nginx_available() {
        return;
    }
    let steps = readme_nginx_steps();
    // Without a token the server trusts loopback clients, and nginx is one: what it forwards
    // is refused all the same.
    let open = Server::start(&["--threads", "1"]);
    let (nginx, _) = StockNginx::start("open", &steps, open.addr);
    let r = publish_via(nginx.addr, "");
    assert_eq!(r.status, 401, "{} {}", r.head, r.text());
    assert!(r.text().contains("proxy"), "{}", r.text());
    assert_eq!(
        publish_via(open.addr, "").status,
        200,
        "direct from loopback"
    );
    drop(nginx);

    let token = "5f0c3e9a1b7d2c4e6f8a0b1c2d3e4f5a5f0c3e9a1b7d2c4e6f8a0b1c2d3e4f5a";
    let server = Server::start(&["--threads", "1", "--publish-token", token]);
    let (nginx, _) = StockNginx::start("token", &steps, server.addr);
    let r = publish_via(nginx.addr, "");
    assert_eq!(r.status, 401, "{}", r.text());
    let auth = format!("Authorization: Bearer {token}\r\n");
    let r = publish_via(nginx.addr, &auth);
    assert_eq!(r.status, 200, "{}", r.text());
    // The page's own publish through nginx (its Origin is nginx's address, which nginx passes
    // on as Host), and a foreign page's.
    let own = format!("{auth}Origin: http://{}\r\n", nginx.addr);
    let r = publish_via(nginx.addr, &own);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = publish_via(
        nginx.addr,
        &format!("{auth}Origin: https://evil.example\r\n"),
    );
    assert_eq!(r.status, 403, "{}", r.text());
}
