//! `sse-load --h2` over real sockets on 127.0.0.1: against Node's `http2` module (a server
//! nobody here wrote) on h2c with prior knowledge and on TLS with ALPN `h2`, many streams per
//! connection, every event counted and every stream's ids in order; a stream the server resets
//! comes back with `Last-Event-ID` and misses nothing; a server that does not speak h2 (HTTP/1.1
//! on plain TCP, or TLS that picks `http/1.1`) fails every stream with `not_h2`.

mod common;

use common::pki::{KeyKind, Pki};
use common::TempDir;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The Node server: `h2c`, `h2` (TLS, ALPN h2 only) or `h1tls` (TLS, ALPN http/1.1 only).
/// `GET` any path: an event stream from `Last-Event-ID` + 1 (else 0), an event every 50 ms;
/// with `reset=K` in the query, a stream asked for without `Last-Event-ID` is reset (RST_STREAM)
/// after K events. Prints its port, then on stdin's end the sessions it saw.
const SERVER_JS: &str = r#"
const http2 = require('http2');
const https = require('https');
const fs = require('fs');
const [mode, cert, key] = process.argv.slice(2);
let sessions = 0, withId = 0;
function handler(stream, headers) {
  const url = new URL(headers[':path'], 'http://x');
  const last = headers['last-event-id'];
  if (last !== undefined) withId++;
  let n = last === undefined ? 0 : Number(last) + 1;
  const resetAfter = Number(url.searchParams.get('reset') || 0);
  stream.respond({':status': 200, 'content-type': 'text/event-stream', 'cache-control': 'no-cache'});
  let sent = 0;
  const t = setInterval(() => {
    if (stream.closed || stream.destroyed) { clearInterval(t); return; }
    if (resetAfter && last === undefined && sent === resetAfter) {
      clearInterval(t);
      stream.destroy(new Error('reset by the test'));
      return;
    }
    stream.write(`id: ${n}\ndata: {"n":${n}}\n\n`);
    n++; sent++;
  }, 50);
  stream.on('close', () => clearInterval(t));
  stream.on('error', () => clearInterval(t));
}
let server;
if (mode === 'h2c') {
  server = http2.createServer();
} else if (mode === 'h2') {
  server = http2.createSecureServer({cert: fs.readFileSync(cert), key: fs.readFileSync(key), ALPNProtocols: ['h2']});
} else {
  server = https.createServer({cert: fs.readFileSync(cert), key: fs.readFileSync(key), ALPNProtocols: ['http/1.1']},
    (req, res) => { res.writeHead(200, {'content-type': 'text/event-stream'}); res.write('data: x\n\n'); });
}
if (mode !== 'h1tls') {
  server.on('session', (s) => { sessions++; s.on('error', () => {}); });
  server.on('stream', handler);
}
server.on('error', (e) => { console.error(e); process.exit(1); });
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
process.stdin.on('data', () => {});
process.stdin.on('end', () => { console.log(JSON.stringify({sessions, withId})); process.exit(0); });
"#;

struct Node {
    child: Child,
    port: u16,
    _dir: TempDir,
    ca: Option<std::path::PathBuf>,
}

impl Node {
    fn start(mode: &str) -> Node {
        let dir = TempDir::new(&format!("load-h2-{mode}"));
        let script = dir.path("server.js");
        std::fs::write(&script, SERVER_JS).unwrap();
        let mut cmd = Command::new("node");
        cmd.arg(&script).arg(mode);
        let mut ca = None;
        if mode != "h2c" {
            let pki = Pki::make(&dir.0, "node", KeyKind::Ecdsa);
            cmd.arg(&pki.cert).arg(&pki.key);
            ca = Some(pki.ca);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("node's port: {line:?}"));
        Node {
            child,
            port,
            _dir: dir,
            ca,
        }
    }

    /// Stops the server and returns what it counted.
    fn stop(mut self) -> Value {
        drop(self.child.stdin.take());
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        let _ = self.child.wait();
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out:?}"))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sse_load(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sse-load"))
        .args(args)
        .args(["--json", "-q"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sse-load starts");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("sse-load ran past 60 s");
        }
        thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Runs `sse-load ARGS --json -q`, expects exit code `code`, returns the report.
fn report(args: &[&str], code: i32) -> Value {
    let out = sse_load(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr:\n{stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr:\n{stderr}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn num(v: &Value, path: &str) -> f64 {
    let mut cur = v;
    for p in path.split('.') {
        cur = &cur[p];
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("{path} is not a number in {v:#}"))
}

/// 250 streams, 100 a connection: 3 connections; every stream's events counted, in order.
fn many_streams_over_few_connections(node: Node, scheme: &str) {
    let url = format!("{scheme}://127.0.0.1:{}/sse", node.port);
    let mut args = vec![
        url.as_str(),
        "--h2",
        "-c",
        "250",
        "-d",
        "2",
        "--warmup",
        "0.5",
    ];
    let ca;
    if let Some(path) = &node.ca {
        ca = path.display().to_string();
        args.extend(["--tls-ca", ca.as_str()]);
    }
    let r = report(&args, 0);
    assert_eq!(r["protocol"], "h2", "{r:#}");
    assert_eq!(num(&r, "streams.established"), 250.0, "{r:#}");
    assert_eq!(num(&r, "streams.open_at_end"), 250.0, "{r:#}");
    assert_eq!(num(&r, "h2.connections"), 3.0, "{r:#}");
    assert_eq!(num(&r, "h2.streams_per_connection"), 100.0, "{r:#}");
    // 250 streams x about 40 events in 2 s: the first ids are 0, none skipped or repeated.
    let frames = num(&r, "frames");
    assert!(frames > 250.0 * 25.0, "frames {frames}: {r:#}");
    for k in ["gaps", "missing", "duplicates", "without_id", "non_numeric"] {
        assert_eq!(num(&r, &format!("ids.{k}")), 0.0, "ids.{k}: {r:#}");
    }
    assert_eq!(num(&r, "ids.first_max"), 0.0, "{r:#}");
    let p50 = num(&r, "frame_interval_ms.p50");
    assert!((40.0..=60.0).contains(&p50), "interval p50 {p50}: {r:#}");
    let seen = node.stop();
    assert_eq!(seen["sessions"], 3, "the server's count: {seen}");
}

#[test]
fn h2c_with_prior_knowledge_carries_100_streams_a_connection() {
    many_streams_over_few_connections(Node::start("h2c"), "http");
}

#[test]
fn tls_with_alpn_h2_carries_100_streams_a_connection() {
    many_streams_over_few_connections(Node::start("h2"), "https");
}

#[test]
fn a_reset_stream_comes_back_with_last_event_id_and_misses_nothing() {
    let node = Node::start("h2c");
    let url = format!("http://127.0.0.1:{}/sse?reset=5", node.port);
    let r = report(
        &[
            &url,
            "--h2-streams",
            "10",
            "-c",
            "20",
            "-d",
            "2",
            "--max-dropped",
            "20",
        ],
        0,
    );
    assert_eq!(num(&r, "h2.connections"), 2.0, "{r:#}");
    assert_eq!(num(&r, "h2.resets"), 20.0, "{r:#}");
    assert_eq!(num(&r, "h2.reopened"), 20.0, "{r:#}");
    assert_eq!(num(&r, "dropped_by_reason.stream_reset"), 20.0, "{r:#}");
    // Each stream opened twice, and its ids ran on across the reset.
    assert_eq!(num(&r, "streams.established"), 40.0, "{r:#}");
    assert_eq!(num(&r, "streams.open_at_end"), 20.0, "{r:#}");
    for k in ["gaps", "missing", "duplicates"] {
        assert_eq!(num(&r, &format!("ids.{k}")), 0.0, "ids.{k}: {r:#}");
    }
    assert!(num(&r, "frames") > 20.0 * 20.0, "{r:#}");
    let seen = node.stop();
    assert_eq!(
        seen["withId"], 20,
        "every reopen sent Last-Event-ID: {seen}"
    );
}

#[test]
fn a_server_that_does_not_speak_h2_fails_every_stream_clearly() {
    // TLS that picks http/1.1.
    let node = Node::start("h1tls");
    let url = format!("https://127.0.0.1:{}/sse", node.port);
    let ca = node.ca.clone().unwrap().display().to_string();
    let r = report(&[&url, "--h2", "-c", "5", "-d", "1", "--tls-ca", &ca], 3);
    assert_eq!(num(&r, "failed_by_reason.not_h2"), 5.0, "{r:#}");
    assert_eq!(num(&r, "streams.established"), 0.0, "{r:#}");
    // Plain HTTP/1.1 answering the preface.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    let url = format!("http://{addr}/sse");
    let r = report(&[&url, "--h2", "-c", "3", "-d", "1"], 3);
    assert_eq!(num(&r, "failed_by_reason.not_h2"), 3.0, "{r:#}");
}

/// The server's own clock over h2c: 250 streams on 3 connections, every frame counted, every
/// stream's ids from 0 in order, the seed's bytes parsed from DATA frames.
#[test]
fn the_servers_clock_over_h2c_250_streams_on_3_connections() {
    let server = common::Server::start(&["--interval-ms", "100"]);
    let url = format!("http://{}/sse", server.addr);
    let r = report(&[&url, "--h2", "-c", "250", "-d", "2"], 0);
    assert_eq!(num(&r, "streams.established"), 250.0, "{r:#}");
    assert_eq!(num(&r, "streams.open_at_end"), 250.0, "{r:#}");
    assert_eq!(num(&r, "h2.connections"), 3.0, "{r:#}");
    let frames = num(&r, "frames");
    assert!(frames > 250.0 * 12.0, "frames {frames}: {r:#}");
    for k in ["gaps", "missing", "duplicates", "without_id", "non_numeric"] {
        assert_eq!(num(&r, &format!("ids.{k}")), 0.0, "ids.{k}: {r:#}");
    }
    assert_eq!(num(&r, "ids.first_max"), 0.0, "{r:#}");
    assert_eq!(num(&r, "lateness_ms.count"), frames, "{r:#}");
    assert_eq!(num(&r, "retry_fields"), frames, "{r:#}");
    // The server counted them the same way: 3 connections, 250 streams.
    assert_eq!(server.metric("sse_h2_connections_total"), 3.0);
    assert_eq!(server.metric("sse_h2_streams_total"), 250.0);
}

/// Hub mode over h2 on the real server, plain and TLS: 200 subscribers, 50 streams a
/// connection, 20 publishes a second; every delivery arrives once, in order.
#[test]
fn hub_mode_over_h2_delivers_every_event_to_every_stream() {
    let dir = TempDir::new("load-h2-hub");
    let pki = Pki::make(&dir.0, "hub", KeyKind::Ecdsa);
    let (server, tls) = common::Server::start_tls(&pki.cert, &pki.key, &[]);
    let ca = pki.ca.display().to_string();
    for (sub, publish) in [
        (
            format!("http://{}/sse", server.addr),
            format!("http://{}/publish", server.addr),
        ),
        (
            format!("https://{tls}/sse"),
            format!("https://{tls}/publish"),
        ),
    ] {
        let r = report(
            &[
                &sub,
                "--topic",
                "bench",
                "--h2-streams",
                "50",
                "-c",
                "200",
                "-d",
                "3",
                "--publish-url",
                &publish,
                "--publish-rate",
                "20",
                "--drain",
                "0.5",
                "--tls-ca",
                &ca,
            ],
            0,
        );
        assert_eq!(num(&r, "h2.connections"), 4.0, "{sub}: {r:#}");
        assert_eq!(num(&r, "streams.established"), 200.0, "{sub}: {r:#}");
        let expected = num(&r, "hub.deliveries.expected");
        assert!(expected >= 200.0 * 10.0, "{sub}: {r:#}");
        assert_eq!(num(&r, "hub.deliveries.received"), expected, "{sub}: {r:#}");
        for k in ["missing", "duplicates", "gaps"] {
            assert_eq!(
                num(&r, &format!("hub.deliveries.{k}")),
                0.0,
                "{sub}: {k}: {r:#}"
            );
        }
    }
}
