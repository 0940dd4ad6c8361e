//! The exact bytes of every endpoint's answers, compared with a recording
//! (`tests/golden/wire.txt`) so that a restructuring cannot change what goes on the wire.
//!
//! Only what legitimately varies is normalised: the `Date` header, the ISO time in a frame, a
//! jittered `retry:` value, and the `/metrics` body (its figures). Regenerate the recording on
//! purpose with `UPDATE_GOLDEN=1 cargo test --test wire`.

mod common;

use common::Server;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Sends `raw` on a fresh connection and reads for `wait` (or to the close).
fn exchange(server: &Server, raw: &[u8], wait: Duration) -> Vec<u8> {
    let mut s = server.connect();
    s.write_all(raw).unwrap();
    read_for(&mut s, wait)
}

/// Sends `raw` and reads until `n` complete frames follow the head.
fn exchange_frames(server: &Server, raw: &[u8], n: usize) -> Vec<u8> {
    let mut s = server.connect();
    s.write_all(raw).unwrap();
    common::read_until(&mut s, Duration::from_secs(5), |b| {
        common::frames(b).len() >= n
    })
}

fn read_for(s: &mut TcpStream, wait: Duration) -> Vec<u8> {
    let end = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    got
}

/// Replaces what legitimately differs between runs, and the page's own bytes (which change
/// with the page; their framing, type and validators are what is recorded).
fn normalise(bytes: &[u8], metrics: bool) -> String {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let mut out = String::new();
    let mut in_metrics_body = false;
    let mut file = false;
    for line in text.split_inclusive('\n') {
        if in_metrics_body {
            continue;
        }
        if line.starts_with("HTTP/1.1 ") {
            file = false;
        }
        if line.starts_with("ETag: ") {
            file = true;
            // The length before it is the file's too.
            if let Some(at) = out.rfind("Content-Length: ") {
                let end = at + out[at..].find("\r\n").unwrap_or(0);
                out.replace_range(at..end, "Content-Length: <n>");
            }
            out.push_str("ETag: <etag>\r\n");
            continue;
        }
        if file && line == "\r\n" {
            out.push_str("\r\n<file>\n");
            in_metrics_body = true;
            continue;
        }
        let l = if line.starts_with("Date: ") {
            "Date: <date>\r\n".to_string()
        } else if let Some(i) = line.find("{\"content\":\"") {
            format!("{}{{\"content\":\"<iso>\"}}\n", &line[..i])
        } else if line.starts_with("retry: ") && !line.starts_with("retry: 30000") {
            "retry: <jitter>\n".to_string()
        } else if metrics && line.starts_with("Content-Length: ") {
            "Content-Length: <n>\r\n".to_string()
        } else {
            line.to_string()
        };
        out.push_str(&l);
        if metrics && line == "\r\n" {
            in_metrics_body = true;
        }
    }
    out
}

const SHORT: Duration = Duration::from_millis(300);

#[test]
fn every_endpoint_answers_the_recorded_bytes() {
    let server = Server::start(&[
        "--interval-ms",
        "100",
        "--threads",
        "1",
        "--max-streams",
        "1",
        "--head-timeout-ms",
        "200",
    ]);
    let mut record = String::new();
    let case = |record: &mut String, name: &str, raw: &[u8], wait: Duration, metrics: bool| {
        let got = exchange(&server, raw, wait);
        record.push_str(&format!("=== {name}\n{}\n", normalise(&got, metrics)));
    };
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let head = |path: &str| format!("HEAD {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    for path in ["/", "/index.html", "/app.js", "/style.css", "/favicon.svg"] {
        case(
            &mut record,
            &format!("GET {path}"),
            get(path).as_bytes(),
            SHORT,
            false,
        );
    }
    case(&mut record, "HEAD /", head("/").as_bytes(), SHORT, false);
    let etag = {
        let r = server.get("/");
        r.header("etag").unwrap().to_string()
    };
    case(
        &mut record,
        "GET / If-None-Match",
        format!("GET / HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
        SHORT,
        false,
    );
    for path in [
        "/nope",
        "/healthz",
        "/%2e%2e/etc/passwd",
        "/dir/../index.html",
    ] {
        case(
            &mut record,
            &format!("GET {path}"),
            get(path).as_bytes(),
            SHORT,
            false,
        );
    }
    case(
        &mut record,
        "HEAD /nope",
        head("/nope").as_bytes(),
        SHORT,
        false,
    );
    case(
        &mut record,
        "HEAD /healthz",
        head("/healthz").as_bytes(),
        SHORT,
        false,
    );
    case(
        &mut record,
        "GET /metrics",
        get("/metrics").as_bytes(),
        SHORT,
        true,
    );
    case(
        &mut record,
        "HEAD /metrics",
        head("/metrics").as_bytes(),
        SHORT,
        true,
    );
    case(
        &mut record,
        "keep-alive GET /healthz twice, pipelined",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
        SHORT,
        false,
    );
    case(
        &mut record,
        "HTTP/1.0 keep-alive",
        b"GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        SHORT,
        false,
    );
    case(
        &mut record,
        "HEAD /sse",
        head("/sse").as_bytes(),
        SHORT,
        false,
    );
    case(
        &mut record,
        "HEAD /sse keep-alive",
        b"HEAD /sse HTTP/1.1\r\nHost: x\r\n\r\n",
        SHORT,
        false,
    );
    for (name, raw, n) in [
        ("GET /sse Connection: close (two frames)", get("/sse"), 2),
        (
            "GET /sse Last-Event-ID: 41 (one frame)",
            "GET /sse HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 41\r\n\r\n".to_string(),
            1,
        ),
    ] {
        let got = exchange_frames(&server, raw.as_bytes(), n);
        record.push_str(&format!("=== {name}\n{}\n", normalise(&got, false)));
    }
    {
        // One stream held: the next is refused with a jittered retry and a close.
        let mut held = server.connect();
        held.write_all(b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        read_for(&mut held, Duration::from_millis(50));
        case(
            &mut record,
            "GET /sse over --max-streams",
            b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n",
            SHORT,
            false,
        );
    }
    std::thread::sleep(Duration::from_millis(100));
    let errors: [(&str, &[u8]); 10] = [
        ("POST /", b"POST / HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("DELETE /sse", b"DELETE /sse HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("BREW", b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("no Host", b"GET / HTTP/1.1\r\n\r\n"),
        (
            "chunked",
            b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        (
            "GET with a body",
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        ),
        ("bad version", b"GET / HTTP/1.7\r\nHost: x\r\n\r\n"),
        (
            "bare LF in a header",
            b"GET / HTTP/1.1\r\nHost: x\rY\r\n\r\n",
        ),
        (
            "absolute form",
            b"GET http://x/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        ),
        ("head timeout", b"GET / HT"),
    ];
    for (name, raw) in errors {
        case(&mut record, name, raw, Duration::from_millis(500), false);
    }
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(3000));
    case(&mut record, "414", long_target.as_bytes(), SHORT, false);
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(9000)
    );
    case(&mut record, "431", big_head.as_bytes(), SHORT, false);

    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/wire.txt");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &record).unwrap();
        return;
    }
    let want = std::fs::read_to_string(path).expect("tests/golden/wire.txt (UPDATE_GOLDEN=1)");
    if record != want {
        let first = record
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "wire bytes changed at line {}:\n  got:  {:?}\n  want: {:?}\n(whole record:\n{record})",
            first + 1,
            record.lines().nth(first),
            want.lines().nth(first)
        );
    }
}
