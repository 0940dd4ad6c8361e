//! Hostile and unlucky clients, over real sockets and bounded in time: slow heads, malformed
//! and oversized requests, smuggling attempts, path traversal, slow readers, descriptor
//! exhaustion, overload and signals.

mod common;

use common::{frames, read_head_response, read_response, read_until, Server};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn open_stream(server: &Server) -> TcpStream {
    let mut s = server.connect();
    s.write_all(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    s
}

/// Reads until the server closes; true if it did so within `timeout` (EOF or reset).
fn closed_within(s: &mut TcpStream, timeout: Duration) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while start.elapsed() < timeout {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

/// Arrival times of the next `n` frames on a stream whose response head was already read.
fn frame_times(s: &mut TcpStream, n: usize) -> Vec<Instant> {
    // `frames` counts what follows a head; stand one in for the head already consumed.
    let mut seen = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
    let mut times = Vec::new();
    let mut chunk = [0u8; 4096];
    let start = Instant::now();
    while times.len() < n {
        assert!(start.elapsed() < Duration::from_secs(20), "stream stalled");
        match s.read(&mut chunk) {
            Ok(0) => panic!("stream closed"),
            Ok(k) => seen.extend_from_slice(&chunk[..k]),
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                continue
            }
            Err(e) => panic!("{e}"),
        }
        let complete = frames(&seen).len();
        while times.len() < complete {
            times.push(Instant::now());
        }
    }
    times
}

fn max_gap(times: &[Instant]) -> Duration {
    times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}

#[test]
fn slow_heads_are_closed_and_do_not_delay_healthy_streams() {
    let server = Server::start(&["--interval-ms", "50", "--head-timeout-ms", "1000"]);
    let mut healthy = open_stream(&server);
    read_until(&mut healthy, Duration::from_secs(5), |b| {
        !frames(b).is_empty()
    });
    // 300 slowloris clients: a request line, then one header byte every 100 ms, forever.
    let mut slow: Vec<TcpStream> = (0..300).map(|_| server.connect()).collect();
    for s in slow.iter_mut() {
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ")
            .unwrap();
    }
    let started = Instant::now();
    let watcher = std::thread::spawn(move || frame_times(&mut healthy, 20));
    let mut open = slow.len();
    while open > 0 && started.elapsed() < Duration::from_secs(4) {
        std::thread::sleep(Duration::from_millis(100));
        open = 0;
        for s in slow.iter_mut() {
            if s.write_all(b"a").is_ok() {
                open += 1;
            }
        }
    }
    let times = watcher.join().unwrap();
    assert!(
        max_gap(&times) < Duration::from_millis(200),
        "healthy stream stalled: {:?}",
        max_gap(&times)
    );
    for s in slow.iter_mut() {
        assert!(
            closed_within(s, Duration::from_secs(3)),
            "a slow head is still open"
        );
    }
    assert!(server.metric("sse_timeouts_total{kind=\"head\"}") >= 300.0);
    // The answer to a half-sent head is a 408 with a close.
    let mut s = server.connect();
    s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    let r = read_response(&mut s);
    assert_eq!((r.status, r.header("connection")), (408, Some("close")));
}

#[test]
fn idle_connections_are_closed() {
    let server = Server::start(&["--idle-timeout-ms", "300", "--head-timeout-ms", "600"]);
    // Never sent a byte: closed at the head timeout, silently.
    let mut silent = server.connect();
    // Kept alive after one request, then idle: closed at the idle timeout.
    let mut kept = server.connect();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_response(&mut kept).status, 200);
    let start = Instant::now();
    assert!(closed_within(&mut kept, Duration::from_secs(3)));
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "closed before the idle timeout"
    );
    assert!(closed_within(&mut silent, Duration::from_secs(3)));
    assert!(server.metric("sse_timeouts_total{kind=\"idle\"}") >= 1.0);
}

/// Sends raw bytes on a fresh connection; returns the response and whether the server closed.
fn exchange(server: &Server, raw: &[u8]) -> (u16, String, bool) {
    let mut s = server.connect();
    s.write_all(raw).unwrap();
    let r = read_response(&mut s);
    let closed =
        r.header("connection") == Some("close") && closed_within(&mut s, Duration::from_secs(3));
    (r.status, r.head, closed)
}

#[test]
fn malformed_requests_get_400_and_a_close() {
    let server = Server::start(&[]);
    let cases: &[(&[u8], u16)] = &[
        (b"GET / HTTP/1.1\r\nHost: t\rX: y\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX: a\0b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x07b\r\n\r\n", 400),
        (
            b"GET / HTTP/1.1\r\nHost: t\r\nX: a\r\n  folded\r\n\r\n",
            400,
        ),
        (b"GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        (b"GET / HTTP/0.9\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
            400,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
            400,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            501,
        ),
        (
            b"HEAD / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
            501,
        ),
        (
            b"POST /sse HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc",
            405,
        ),
        (b"FROBNICATE / HTTP/1.1\r\nHost: t\r\n\r\n", 501),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400), // a TLS ClientHello
    ];
    for &(raw, status) in cases {
        let (got, head, closed) = exchange(&server, raw);
        assert_eq!(got, status, "{:?} -> {head}", String::from_utf8_lossy(raw));
        assert!(
            closed,
            "{:?}: answered with Connection: close and closed",
            String::from_utf8_lossy(raw)
        );
    }
}

#[test]
fn size_limits_414_and_431() {
    let server = Server::start(&[]);
    let long_target = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(5000));
    assert_eq!(exchange(&server, long_target.as_bytes()).0, 414);
    let many = format!(
        "GET / HTTP/1.1\r\nHost: t\r\n{}\r\n",
        "X-A: 1\r\n".repeat(200)
    );
    assert_eq!(exchange(&server, many.as_bytes()).0, 431);
    // A head that never ends: refused once it passes the limit, not buffered forever.
    let mut s = server.connect();
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nX: ").unwrap();
    let mut r = None;
    for _ in 0..100 {
        if s.write_all(&[b'a'; 1024]).is_err() {
            break;
        }
        s.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        let mut peek = [0u8; 1];
        if s.peek(&mut peek).is_ok() {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            r = Some(read_head_response(&mut s));
            break;
        }
    }
    assert_eq!(r.expect("answered before 100 KiB").status, 431);
}

#[test]
fn a_body_is_never_read_as_a_request() {
    let server = Server::start(&[]);
    // Request smuggling: the "body" holds a second request. It must never be answered.
    let smuggled = b"GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 44\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\nX: y\r\n\r\n";
    let mut s = server.connect();
    s.write_all(smuggled).unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    assert!(text.starts_with("HTTP/1.1 400 "));
    let chunked = b"GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2a\r\nGET /healthz HTTP/1.1\r\nHost: t\r\nX: y\r\n\r\n\r\n0\r\n\r\n";
    let mut s = server.connect();
    s.write_all(chunked).unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = Server::start(&[]);
    let mut s = server.connect();
    let mut batch = String::new();
    let paths = ["/healthz", "/missing", "/favicon.svg", "/", "/healthz"];
    for p in paths {
        batch.push_str(&format!("GET {p} HTTP/1.1\r\nHost: t\r\n\r\n"));
    }
    s.write_all(batch.as_bytes()).unwrap();
    let statuses: Vec<u16> = paths.iter().map(|_| read_response(&mut s).status).collect();
    assert_eq!(statuses, [200, 404, 200, 200, 200]);
    // And a pipeline ending in /sse turns into a stream.
    s.write_all(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\nGET /sse HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert_eq!(read_head_response(&mut s).status, 200);
    let r = read_head_response(&mut s);
    assert_eq!(
        r.header("content-type"),
        Some("text/event-stream;charset=utf-8")
    );
}

#[test]
fn no_path_leaves_the_page_folder() {
    let base = std::env::temp_dir().join(format!("sse-trav-{}", std::process::id()));
    let www = base.join("www");
    std::fs::create_dir_all(www.join("sub")).unwrap();
    std::fs::write(www.join("index.html"), "index").unwrap();
    std::fs::write(www.join("sub/ok.txt"), "ok").unwrap();
    std::fs::write(www.join(".hidden"), "hidden").unwrap();
    std::fs::write(base.join("secret.txt"), "SECRET").unwrap();
    std::os::unix::fs::symlink(base.join("secret.txt"), www.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(&base, www.join("up")).unwrap();
    for args in [vec!["--www", www.to_str().unwrap()], vec![]] {
        let server = Server::start(&args);
        for path in [
            "/../secret.txt",
            "/..%2fsecret.txt",
            "/%2e%2e/secret.txt",
            "/%2E%2E%2Fsecret.txt",
            "/sub/../../secret.txt",
            "/sub/%2e%2e/%2e%2e/secret.txt",
            "/..\\secret.txt",
            "/..%5csecret.txt",
            "/%c0%ae%c0%ae/secret.txt",
            "/%c0%af..%c0%afsecret.txt",
            "/secret.txt%00.html",
            "/link.txt",
            "/up/secret.txt",
            "/.hidden",
            "/sub",
            "/sub/",
            "//secret.txt",
        ] {
            let r = server.get(path);
            assert!(!r.text().contains("SECRET"), "{path} leaked the secret");
            assert!(r.status == 404 || r.status == 400, "{path} -> {}", r.status);
        }
        if !args.is_empty() {
            assert_eq!(server.get("/sub/ok.txt").text(), "ok");
        }
        // Dot segments are resolved (RFC 3986 section 5.2.4), inside the folder only.
        assert_eq!(server.get("/./index.html").status, 200);
        assert_eq!(server.get("/sub/../index.html").status, 200);
    }
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn etag_revalidation_gives_304() {
    let server = Server::start(&[]);
    let first = server.get("/app.js");
    let etag = first.header("etag").expect("ETag").to_owned();
    assert_eq!(first.header("x-content-type-options"), Some("nosniff"));
    let mut s = server.connect();
    write!(
        s,
        "GET /app.js HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"other\", {etag}\r\n\r\n"
    )
    .unwrap();
    let r = read_head_response(&mut s);
    assert_eq!(r.status, 304);
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(r.header("content-length"), None);
    // The connection is still usable: a 304 has no body.
    write!(
        s,
        "GET /app.js HTTP/1.1\r\nHost: t\r\nIf-None-Match: \"stale\"\r\n\r\n"
    )
    .unwrap();
    assert_eq!(read_response(&mut s).status, 200);
}

/// A client socket with a tiny receive buffer that will never be read.
fn non_reader(server: &Server) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(2048).unwrap();
    sock.connect(&server.addr.into()).unwrap();
    let mut s: TcpStream = sock.into();
    s.write_all(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    s
}

#[test]
fn slow_consumers_keep_one_partial_frame_and_are_closed_on_stall() {
    let server = Server::start(&[
        "--interval-ms",
        "20",
        "--sndbuf",
        "2048",
        "--stall-timeout-ms",
        "4000",
    ]);
    let mut reader = open_stream(&server);
    read_until(&mut reader, Duration::from_secs(5), |b| {
        !frames(b).is_empty()
    });
    let mut idle: Vec<TcpStream> = (0..1000).map(|_| non_reader(&server)).collect();
    assert_eq!(
        server.wait_metric("sse_streams_open", 1001.0, Duration::from_secs(5)),
        1001.0
    );
    let watcher = std::thread::spawn(move || {
        let t = frame_times(&mut reader, 100);
        (t, reader)
    });
    // Let every buffer fill, then watch memory while ticks keep coming.
    std::thread::sleep(Duration::from_millis(1500));
    let rss_full = server.rss_bytes();
    let skipped_before = server.metric("sse_frames_skipped_total");
    std::thread::sleep(Duration::from_millis(1500));
    let rss_later = server.rss_bytes();
    let skipped_after = server.metric("sse_frames_skipped_total");
    let (times, _reader) = watcher.join().unwrap();
    assert!(
        skipped_after > skipped_before + 10_000.0,
        "ticks for full buffers are skipped"
    );
    assert!(
        rss_later <= rss_full + 256 * 1024,
        "RSS grew from {rss_full} to {rss_later} with 1000 clients not reading"
    );
    assert!(
        max_gap(&times) < Duration::from_millis(250),
        "the reading client's cadence broke: {:?}",
        max_gap(&times)
    );
    // No write progress for the stall timeout: every non-reader is closed.
    assert_eq!(
        server.wait_metric("sse_streams_open", 1.0, Duration::from_secs(6)),
        1.0
    );
    assert!(server.metric("sse_timeouts_total{kind=\"stall\"}") >= 1000.0);
    idle.clear();
}

#[test]
fn out_of_descriptors_sheds_without_spinning_and_recovers() {
    // 64 descriptors: a few for the process itself, the rest for connections.
    let server = Server::start_with_fd_limit(
        &[
            "--threads",
            "1",
            "--interval-ms",
            "100",
            "--max-streams",
            "1000",
        ],
        64,
    );
    let mut streams = Vec::new();
    let mut refused = 0;
    for _ in 0..80 {
        let mut s = open_stream(&server);
        let got = read_until(&mut s, Duration::from_secs(5), |b| {
            b.windows(4).any(|w| w == b"\r\n\r\n")
        });
        let head = String::from_utf8_lossy(&got).into_owned();
        if head.contains("Connection: close") {
            // Shed: told to come back later, in a form EventSource obeys.
            let rest = read_until(&mut s, Duration::from_secs(5), |b| b.ends_with(b"\n\n"));
            assert!(
                String::from_utf8_lossy(&[got, rest].concat()).contains("retry: "),
                "{head}"
            );
            refused += 1;
        } else {
            streams.push(s);
        }
    }
    assert!(
        refused > 0 && streams.len() > 40,
        "{} streams, {refused} refused",
        streams.len()
    );
    // Anything but a stream gets 503 with Retry-After and a Date, whatever arrives when: a
    // health check must not read 200 on a saturated server.
    for (first, rest) in [
        ("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", ""),
        ("GET /no", "pe HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", ""),
    ] {
        let mut s = server.connect();
        // The server may accept (and have to answer) before the request arrives.
        std::thread::sleep(Duration::from_millis(5));
        s.write_all(first.as_bytes()).unwrap();
        if !rest.is_empty() {
            std::thread::sleep(Duration::from_millis(5));
            let _ = s.write_all(rest.as_bytes());
        }
        let r = read_response(&mut s);
        assert_eq!(r.status, 503, "{first}: {}", r.head);
        assert!(
            r.header("retry-after").is_some() && r.header("date").is_some(),
            "{}",
            r.head
        );
        refused += 1;
    }
    // The loop does not spin while out of descriptors...
    let cpu0 = server.cpu_seconds();
    std::thread::sleep(Duration::from_secs(1));
    let cpu = server.cpu_seconds() - cpu0;
    assert!(
        cpu < 0.3,
        "server burned {cpu} s of CPU in 1 s while out of descriptors"
    );
    // ...existing streams go on...
    let last = streams.last_mut().unwrap();
    frame_times(last, 3);
    // ...and once descriptors free up, new streams are served again.
    streams.truncate(streams.len() - 10);
    // The server has seen the closes once `/metrics` is served again and counts the streams
    // left; every try it sheds meanwhile is one more refusal.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match server.try_metric("sse_streams_open") {
            Ok(n) if n == streams.len() as f64 => break,
            Ok(_) => {}
            Err(status) => {
                assert_eq!(status, 503);
                refused += 1;
            }
        }
        assert!(Instant::now() < deadline, "the closes were never seen");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(server.metric("sse_accept_fd_exhausted_total") > 0.0);
    assert_eq!(server.metric("sse_connections_shed_total"), refused as f64);
    let mut s = open_stream(&server);
    let got = read_until(&mut s, Duration::from_secs(5), |b| !frames(b).is_empty());
    assert!(!String::from_utf8_lossy(&got).contains("Connection: close"));
}

#[test]
fn max_streams_tells_clients_to_retry_later() {
    let server = Server::start(&[
        "--max-streams",
        "5",
        "--interval-ms",
        "50",
        "--reconnect-ms",
        "4000",
    ]);
    let mut admitted: Vec<TcpStream> = (0..5).map(|_| open_stream(&server)).collect();
    for s in admitted.iter_mut() {
        read_until(s, Duration::from_secs(5), |b| !frames(b).is_empty());
    }
    let mut retries = Vec::new();
    for _ in 0..5 {
        let mut s = open_stream(&server);
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        let text = String::from_utf8(all).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 200 OK\r\n"),
            "a 200 so the browser retries: {text}"
        );
        assert!(text.contains("Content-Type: text/event-stream;charset=utf-8\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        let ms: u64 = text
            .split("retry: ")
            .nth(1)
            .unwrap()
            .trim_end()
            .parse()
            .unwrap();
        assert!((2000..6000).contains(&ms), "{ms}");
        retries.push(ms);
    }
    retries.dedup();
    assert!(retries.len() > 1, "the retry is jittered");
    assert_eq!(server.metric("sse_streams_rejected_total"), 5.0);
    assert_eq!(server.metric("sse_streams_open"), 5.0);
    // The admitted streams go on.
    frame_times(&mut admitted[0], 2);
}

#[test]
fn sigterm_ends_streams_with_a_jittered_retry_and_exits_0() {
    for sig in ["TERM", "INT"] {
        let mut server = Server::start(&["--interval-ms", "100", "--reconnect-ms", "5000"]);
        let mut streams: Vec<TcpStream> = (0..50).map(|_| open_stream(&server)).collect();
        for s in streams.iter_mut() {
            read_until(s, Duration::from_secs(5), |b| !frames(b).is_empty());
        }
        server.signal("HUP");
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            server.child.try_wait().unwrap().is_none(),
            "SIGHUP must not kill the server"
        );
        frame_times(&mut streams[0], 1);
        let start = Instant::now();
        server.signal(sig);
        let mut retries = Vec::new();
        for s in streams.iter_mut() {
            let mut rest = Vec::new();
            let _ = s.read_to_end(&mut rest);
            let text = String::from_utf8_lossy(&rest);
            // The last whole frame, then the retry: as a line alone (no blank line after it,
            // so no client takes it for an empty event).
            let tail = text.rsplit("\n\n").next().unwrap_or("");
            let ms: u64 = tail
                .strip_suffix('\n')
                .and_then(|l| l.strip_prefix("retry: "))
                .unwrap_or_else(|| panic!("no final retry in {text:?}"))
                .parse()
                .unwrap();
            retries.push(ms);
        }
        let status = loop {
            if let Some(st) = server.child.try_wait().unwrap() {
                break st;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "still running 5 s after SIG{sig}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.code(), Some(0), "SIG{sig} exit status");
        retries.sort();
        retries.dedup();
        assert!(retries.len() > 10, "retries are spread: {retries:?}");
        assert!(
            retries.iter().all(|&r| (2500..7500).contains(&r)),
            "{retries:?}"
        );
        assert!(
            TcpStream::connect(server.addr).is_err(),
            "no longer accepting"
        );
    }
}
