//! End-to-end tests of the core server over real sockets: the stream's bytes and cadence,
//! resume, closes, the page and the status codes.

mod common;

use common::{frames, read_response, read_until, Server};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const GET_SSE: &str = "GET /sse HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n";

fn open_stream(server: &Server, extra_headers: &str) -> TcpStream {
    let mut s = server.connect();
    write!(s, "GET /sse HTTP/1.1\r\nHost: test\r\n{extra_headers}\r\n").unwrap();
    s
}

/// The frame's shape, byte for byte, with the date checked as JSON.stringify(new Date()) writes it.
fn assert_seed_frame(frame: &str, id: u64) {
    let prefix = format!("event:sseEvent\nid:{id}\nretry: 30000\ndata: {{\"content\":\"");
    assert!(
        frame.starts_with(&prefix),
        "frame {frame:?} does not start with {prefix:?}"
    );
    let rest = &frame[prefix.len()..];
    assert!(rest.ends_with("\"}\n\n"), "{frame:?}");
    let date = &rest[..rest.len() - 4];
    assert_eq!(date.len(), 24, "{date:?}");
    let b = date.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        let want_digit = !matches!(i, 4 | 7 | 10 | 13 | 16 | 19 | 23);
        assert_eq!(c.is_ascii_digit(), want_digit, "{date:?} at {i}");
    }
    assert_eq!(
        (b[4], b[7], b[10], b[13], b[16], b[19], b[23]),
        (b'-', b'-', b'T', b':', b':', b'.', b'Z')
    );
    let year: i32 = date[..4].parse().unwrap();
    assert!((2024..2100).contains(&year), "{date}");
}

#[test]
fn stream_bytes_headers_and_ids() {
    let server = Server::start(&["--interval-ms", "100"]);
    let mut s = server.connect();
    s.write_all(GET_SSE.as_bytes()).unwrap();
    let got = read_until(&mut s, Duration::from_secs(5), |b| frames(b).len() >= 3);
    let text = String::from_utf8(got.clone()).unwrap();
    let (head, _) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.split("\r\n");
    assert_eq!(lines.next(), Some("HTTP/1.1 200 OK"));
    let headers: Vec<&str> = lines.collect();
    for want in [
        "Content-Type: text/event-stream;charset=utf-8",
        "Cache-Control: no-cache",
        "Connection: keep-alive",
        "Access-Control-Allow-Origin: *",
        "X-Accel-Buffering: no",
    ] {
        assert!(headers.contains(&want), "missing {want:?} in {headers:?}");
    }
    for banned in ["content-length", "transfer-encoding"] {
        assert!(
            !headers
                .iter()
                .any(|h| h.to_ascii_lowercase().starts_with(banned)),
            "{banned} in {headers:?}"
        );
    }
    for (id, frame) in frames(&got).iter().take(3).enumerate() {
        assert_seed_frame(frame, id as u64);
    }
}

#[test]
fn headers_arrive_before_the_first_tick() {
    let server = Server::start(&["--interval-ms", "2000"]);
    let start = Instant::now();
    let mut s = server.connect();
    s.write_all(GET_SSE.as_bytes()).unwrap();
    let head = read_until(&mut s, Duration::from_secs(3), |b| {
        b.windows(4).any(|w| w == b"\r\n\r\n")
    });
    let elapsed = start.elapsed();
    assert!(head.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(
        elapsed < Duration::from_millis(500),
        "headers took {elapsed:?}; the first tick is at 2 s"
    );
    assert!(
        frames(&head).is_empty(),
        "no frame before the first interval"
    );
}

#[test]
fn cadence_follows_the_interval_from_the_connections_start() {
    let server = Server::start(&["--interval-ms", "100"]);
    let mut s = server.connect();
    let start = Instant::now();
    s.write_all(GET_SSE.as_bytes()).unwrap();
    let mut arrivals = Vec::new();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    while arrivals.len() < 10 {
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0, "stream closed");
        seen.extend_from_slice(&chunk[..n]);
        while frames(&seen).len() > arrivals.len() {
            arrivals.push(start.elapsed());
        }
    }
    // Frame k is due at (k + 1) * 100 ms after the request. A shared, noisy machine can delay a
    // wake-up, so allow lateness but never earliness, and no drift over the ten frames.
    for (k, t) in arrivals.iter().enumerate() {
        let due = Duration::from_millis(100 * (k as u64 + 1));
        assert!(
            *t + Duration::from_millis(5) >= due,
            "frame {k} early: {t:?} < {due:?}"
        );
        assert!(
            *t < due + Duration::from_millis(150),
            "frame {k} late: {t:?} vs {due:?}"
        );
    }
    let ids: Vec<String> = frames(&seen)
        .iter()
        .map(|f| f.lines().nth(1).unwrap().to_owned())
        .collect();
    assert_eq!(ids, (0..10).map(|i| format!("id:{i}")).collect::<Vec<_>>());
}

#[test]
fn last_event_id_resumes_and_junk_is_ignored() {
    let server = Server::start(&["--interval-ms", "50"]);
    for (header, first) in [
        ("Last-Event-ID: 41\r\n", 42u64),
        ("Last-Event-ID: 0\r\n", 1),
        ("Last-Event-ID: banana\r\n", 0),
        ("Last-Event-ID: -3\r\n", 0),
        ("Last-Event-ID: \r\n", 0),
        ("Last-Event-ID: 99999999999999999999999\r\n", 0),
    ] {
        let mut s = open_stream(&server, header);
        let got = read_until(&mut s, Duration::from_secs(5), |b| frames(b).len() >= 2);
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\n"),
            "{header:?}: {text}"
        );
        let f = frames(&got);
        assert_seed_frame(&f[0], first);
        assert_seed_frame(&f[1], first + 1);
    }
}

#[test]
fn hundreds_of_closed_streams_are_gone_within_500ms() {
    let server = Server::start(&["--interval-ms", "1000"]);
    let mut streams: Vec<TcpStream> = (0..400).map(|_| open_stream(&server, "")).collect();
    for s in streams.iter_mut() {
        read_until(s, Duration::from_secs(5), |b| {
            b.windows(4).any(|w| w == b"\r\n\r\n")
        });
    }
    assert_eq!(
        server.wait_metric("sse_streams_open", 400.0, Duration::from_secs(2)),
        400.0
    );
    // Half leave with a FIN, half with a reset (SO_LINGER 0 turns the close into an RST).
    for (i, s) in streams.drain(..).enumerate() {
        if i % 2 == 1 {
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
        }
        drop(s);
    }
    let start = Instant::now();
    let open = server.wait_metric("sse_streams_open", 0.0, Duration::from_millis(500));
    assert_eq!(
        open,
        0.0,
        "streams still open {:?} after the clients left",
        start.elapsed()
    );
    // Their timers are gone too: no frame is counted for them after the close.
    let frames_after = server.metric("sse_frames_sent_total");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(server.metric("sse_frames_sent_total"), frames_after);
    // Each earlier /metrics answer ends with a lingering close: the server half-closes and
    // counts the connection until it reads the client's FIN. That FIN may not be read yet when
    // the next /metrics is answered (later in the same batch of events, or on another loop),
    // so wait for the count to settle rather than sample it once.
    assert_eq!(
        server.wait_metric("sse_connections_open", 1.0, Duration::from_millis(500)),
        1.0,
        "only the /metrics request itself"
    );
}

#[test]
fn a_head_sent_one_byte_per_write() {
    let server = Server::start(&["--interval-ms", "100"]);
    let mut s = server.connect();
    s.set_nodelay(true).unwrap();
    for b in GET_SSE.bytes() {
        s.write_all(&[b]).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let got = read_until(&mut s, Duration::from_secs(5), |b| !frames(b).is_empty());
    assert!(got.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert_seed_frame(&frames(&got)[0], 0);
}

#[test]
fn the_page_and_its_files() {
    let server = Server::start(&[]);
    let page = server.get("/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        page.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap(),
        page.body.len()
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    let html = page.text();
    assert!(
        html.contains("建立连接") && html.contains("关闭连接"),
        "the seed's buttons are on the page"
    );
    for (path, ct) in [
        ("/index.html", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/favicon.svg", "image/svg+xml; charset=utf-8"),
    ] {
        let r = server.get(path);
        assert_eq!(
            (r.status, r.header("content-type")),
            (200, Some(ct)),
            "{path}"
        );
        assert!(!r.body.is_empty());
    }
    let head = server.request("HEAD / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), page.header("content-length"));
    assert!(head.body.is_empty(), "HEAD has no body");
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let server = Server::start(&[]);
    let mut s = server.connect();
    for path in ["/", "/app.js", "/missing", "/healthz"] {
        write!(s, "GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
        let r = read_response(&mut s);
        assert_eq!(
            r.status,
            if path == "/missing" { 404 } else { 200 },
            "{path}"
        );
        assert_eq!(r.header("connection"), None, "kept alive");
    }
}

#[test]
fn status_codes() {
    let server = Server::start(&[]);
    let r = server.get("/nope.html");
    assert_eq!(r.status, 404);
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        let r = server.request(&format!(
            "{method} / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n"
        ));
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
        assert_eq!(r.header("connection"), Some("close"));
    }
    assert_eq!(
        server
            .request("BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n")
            .status,
        501
    );
    assert_eq!(
        server.request("GET / HTTP/1.1\r\n\r\n").status,
        400,
        "HTTP/1.1 without Host"
    );
    assert_eq!(server.request("GARBAGE\r\n\r\n").status, 400);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "a".repeat(10_000)
    );
    assert_eq!(server.request(&big).status, 431);
    let head_sse = server.request("HEAD /sse HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert_eq!(
        (head_sse.status, head_sse.header("content-type")),
        (200, Some("text/event-stream;charset=utf-8"))
    );
    assert!(head_sse.body.is_empty());
    assert_eq!(
        server.metric("sse_streams_open"),
        0.0,
        "HEAD /sse opens no stream"
    );
}

#[test]
fn metrics_in_prometheus_text_format() {
    let server = Server::start(&["--interval-ms", "50"]);
    let mut s = open_stream(&server, "");
    read_until(&mut s, Duration::from_secs(5), |b| frames(b).len() >= 2);
    server.get("/missing");
    let r = server.get("/metrics");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = r.text();
    for name in [
        "sse_streams_open",
        "sse_streams_total",
        "sse_frames_sent_total",
        "sse_bytes_sent_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} has no TYPE line"
        );
    }
    assert_eq!(server.metric("sse_streams_open"), 1.0);
    assert!(server.metric("sse_streams_total") >= 1.0);
    assert!(server.metric("sse_frames_sent_total") >= 2.0);
    assert!(server.metric("sse_bytes_sent_total") > 200.0);
    assert!(server.metric("sse_http_responses_total{code=\"404\"}") >= 1.0);
    assert!(server.metric("sse_http_responses_total{code=\"200\"}") >= 2.0);
}

#[test]
fn www_flag_serves_a_folder() {
    let dir = std::env::temp_dir().join(format!("sse-www-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "<p>custom</p>").unwrap();
    std::fs::write(dir.join("data.json"), "{}").unwrap();
    let server = Server::start(&["--www", dir.to_str().unwrap()]);
    assert_eq!(server.get("/").text(), "<p>custom</p>");
    assert_eq!(
        server.get("/data.json").header("content-type"),
        Some("application/json")
    );
    assert_eq!(
        server.get("/app.js").status,
        404,
        "the embedded files are not mixed in"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn help_lists_flags_and_bad_flags_exit_2() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sse-server"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--port",
        "--bind",
        "--interval-ms",
        "--www",
        "--threads",
        "--max-streams",
    ] {
        assert!(help.contains(flag), "{flag}");
    }
    // For users: what each endpoint does, not the project's history.
    assert!(!help.to_lowercase().contains("seed"), "{help}");
    for path in [
        "GET /sse ",
        "GET /sse?topic=T",
        "POST /publish",
        "/.well-known/mercure",
        "/.well-known/mercure/subscriptions",
        "GET /metrics",
        "GET /healthz",
    ] {
        assert!(help.contains(path), "{path} missing from --help");
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sse-server"))
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--bogus"));
}

#[test]
fn several_loops_share_one_port_and_report_totals() {
    let server = Server::start(&["--threads", "3", "--interval-ms", "50"]);
    let mut streams: Vec<TcpStream> = (0..30).map(|_| open_stream(&server, "")).collect();
    for s in streams.iter_mut() {
        read_until(s, Duration::from_secs(5), |b| !frames(b).is_empty());
    }
    assert_eq!(server.metric("sse_event_loops"), 3.0);
    assert_eq!(server.metric("sse_streams_open"), 30.0);
    drop(streams);
    assert_eq!(
        server.wait_metric("sse_streams_open", 0.0, Duration::from_secs(1)),
        0.0
    );
}
