//! What an operator sees: the log lines (text and JSON, quiet), CORS preflights, and the
//! `Connection` field of streams, over real sockets against the real binary.

mod common;

use common::{read_until, Server};
use std::io::Write;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// Lines of the log until `pred` holds for one (which is returned with those before it).
fn lines_until(rx: &Receiver<String>, pred: impl Fn(&str) -> bool) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(5);
    let mut got = Vec::new();
    while Instant::now() < end {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            let done = pred(&l);
            got.push(l);
            if done {
                return got;
            }
        }
    }
    panic!("no such line in {got:#?}");
}

#[test]
fn one_line_per_request_and_per_ended_stream_without_queries_or_tokens() {
    let (server, log) =
        Server::start_logged(&["--interval-ms", "50", "--publish-token", "TOKEN123"]);
    let start = lines_until(&log, |l| l.contains(" start "));
    assert!(start[0].contains("url=http://127.0.0.1:"), "{start:?}");
    assert_eq!(server.get("/healthz?secret=abc").status, 200);
    let req = lines_until(&log, |l| l.contains(" request "));
    let req = req.last().unwrap();
    assert!(
        req.contains("method=GET path=/healthz status=200 bytes=3"),
        "{req}"
    );
    assert!(req.contains("peer=127.0.0.1:"), "{req}");
    assert!(!req.contains("secret"), "queries are never logged: {req}");
    // A stream: logged once, when it ends, with what it sent and why it ended.
    let mut s = server.connect();
    s.write_all(b"GET /sse?authorization=SECRETTOKEN HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    read_until(&mut s, Duration::from_secs(5), |b| {
        common::frames(b).len() >= 3
    });
    drop(s);
    let ended = lines_until(&log, |l| l.contains(" stream "));
    let line = ended.last().unwrap();
    assert!(line.contains("kind=clock"), "{line}");
    assert!(line.contains("end=client-closed"), "{line}");
    let frames: u64 = line
        .split("frames=")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(frames >= 3, "{line}");
    // A refused publish names no token either.
    let r = common::Publish::event("a", "x")
        .bearer("WRONGTOKEN")
        .send(server.addr);
    assert_eq!(r.status, 401);
    let lines = lines_until(&log, |l| l.contains("status=401"));
    for l in &lines {
        for secret in ["SECRETTOKEN", "WRONGTOKEN", "TOKEN123"] {
            assert!(!l.contains(secret), "{l}");
        }
    }
    server.signal("TERM");
    let end = lines_until(&log, |l| l.contains(" stopped "));
    assert!(
        end.iter().any(|l| l.contains(" shutdown signal=terminate")),
        "{end:?}"
    );
}

#[test]
fn json_lines_parse_and_quiet_keeps_only_the_essentials() {
    let (server, log) = Server::start_logged(&["--log-format", "json"]);
    assert_eq!(server.get("/nope").status, 404);
    let lines = lines_until(&log, |l| l.contains("\"request\""));
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v["ts"].is_string() && v["event"].is_string(), "{l}");
    }
    let v: serde_json::Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(
        (v["path"].as_str(), v["status"].as_str()),
        (Some("/nope"), Some("404"))
    );

    let (quiet, log) = Server::start_logged(&["--quiet"]);
    lines_until(&log, |l| l.contains(" start "));
    for _ in 0..5 {
        quiet.get("/healthz");
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(log.try_recv().is_err(), "no per-request line when quiet");
}

#[test]
fn cors_preflights_allow_streams_from_anywhere_and_publishing_only_when_configured() {
    let server = Server::start(&[]);
    let pre = |s: &Server, path: &str| {
        s.request(&format!(
            "OPTIONS {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nOrigin: https://app.example\r\nAccess-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: last-event-id, authorization\r\n\r\n"
        ))
    };
    let r = pre(&server, "/sse");
    assert_eq!(r.status, 204, "{}", r.head);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let allowed = r
        .header("access-control-allow-headers")
        .unwrap()
        .to_lowercase();
    assert!(allowed.contains("last-event-id") && allowed.contains("authorization"));
    assert!(r
        .header("access-control-allow-methods")
        .unwrap()
        .contains("GET"));
    assert_eq!(
        pre(&server, "/publish").status,
        403,
        "no publishing origin by default"
    );

    let open = Server::start(&["--cors-origin", "https://app.example"]);
    let r = pre(&open, "/publish");
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert!(r
        .header("access-control-allow-headers")
        .unwrap()
        .contains("Content-Type"));
    let head = open.request("HEAD /sse HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(
        head.header("access-control-allow-origin"),
        Some("https://app.example")
    );
}

#[test]
fn a_stream_asked_to_close_says_close_once() {
    let server = Server::start(&["--interval-ms", "50"]);
    let head = server.request("HEAD /sse HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(head.head.matches("Connection:").count(), 1, "{}", head.head);
    assert_eq!(head.header("connection"), Some("close"));
    let mut s = server.connect();
    s.write_all(b"GET /sse HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let got = read_until(&mut s, Duration::from_secs(5), |b| {
        !common::frames(b).is_empty()
    });
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
    assert!(!text.contains("keep-alive"), "{text}");
    let keep = server.request("HEAD /sse HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(keep.header("connection"), Some("keep-alive"));
}

#[test]
fn a_panic_in_an_event_loop_ends_the_process_loudly() {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sse-server"));
    let child = cmd
        .args(["--bind", "127.0.0.1", "--port", "0", "--quiet"])
        .env("SSE_TEST_PANIC", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = child;
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap();
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /__panic HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "still running after a loop panicked"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(70));
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("GET /__panic"), "{err}");
    assert!(err.contains("panicked; exiting"), "{err}");
}
