//! What a publish may carry, over real sockets: one rule for every field (with and without a
//! real Redis), the reserved `reset` type, JSON `data` sent as its own text, distinct topics
//! counted, the clock stream's largest resume id; `Expect: 100-continue` (raw and with curl).

mod common;
#[path = "common/redis.rs"]
mod redis_server;

use common::{read_until, Publish, Server, Stream, FORM, JSON};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One publish on a fresh connection: (status, body without its final newline: the id of a
/// stored event, or the one-line reason of a refusal).
fn publish(server: &Server, content_type: &str, body: &str) -> (u16, String) {
    Publish::typed(content_type, body).answer(server.addr)
}

/// Reads until `want` appears in what the stream sent since the last `drain`; that text.
fn read_for(s: &mut Stream, want: &[u8]) -> Vec<u8> {
    assert!(
        s.read_until_raw(Duration::from_secs(10), want),
        "no {:?} in {:?}",
        String::from_utf8_lossy(want),
        s.text()
    );
    s.raw.clone()
}

/// The publishes every mode must refuse, each with a word its one-line answer must hold.
fn refused() -> Vec<(&'static str, String, &'static str)> {
    vec![
        (FORM, "topic=a&data=x&type=a%1Bb".into(), "type"),
        (FORM, "topic=a&data=x&type=a%00b".into(), "type"),
        (FORM, "topic=a&data=x&type=a%C2%85b".into(), "type"),
        (FORM, "topic=a&data=x&type=a%7Fb".into(), "type"),
        (
            JSON,
            r#"{"topic":"a","data":"x","type":"a\u001bb"}"#.into(),
            "type",
        ),
        (
            JSON,
            r#"{"topic":"a","data":"x","type":"a\u0000b"}"#.into(),
            "type",
        ),
        (
            JSON,
            r#"{"topic":"a","data":"x","type":"a\u0085b"}"#.into(),
            "type",
        ),
        (
            FORM,
            "topic=a&data=x&type=reset".into(),
            "\"reset\" is reserved",
        ),
        (
            JSON,
            r#"{"topic":"a","data":"x","type":"reset"}"#.into(),
            "\"reset\" is reserved",
        ),
        (FORM, "topic=a%C2%85b&data=x".into(), "topic"),
        (
            JSON,
            r#"{"topic":["a","a\u001b"],"data":"x"}"#.into(),
            "topic",
        ),
        (FORM, "topic=a&data=x&retry=1e3".into(), "retry"),
    ]
}

fn check_refusals(server: &Server) {
    for (ct, body, word) in refused() {
        let (st, text) = publish(server, ct, &body);
        assert_eq!(st, 400, "{body}: {text}");
        assert!(text.starts_with("400 Bad Request: "), "{body}: {text}");
        assert!(text.contains(word), "{body}: {text}");
        assert!(!text.trim_end().contains('\n'), "one line: {text}");
    }
}

#[test]
fn a_type_with_any_control_character_or_the_reserved_type_is_refused() {
    let server = Server::start(&[]);
    let mut s = server.subscribe("topic=a", "");
    check_refusals(&server);
    assert_eq!(
        server.metric("sse_hub_publishes_rejected_total{reason=\"invalid\"}"),
        refused().len() as f64
    );
    // Nothing refused was stored: the next event is the first the subscriber sees.
    let (st, id) = publish(&server, FORM, "topic=a&data=after&type=Reset");
    assert_eq!(st, 200, "{id}");
    let got = read_for(&mut s, b"data: after\n\n");
    let text = String::from_utf8_lossy(&got);
    assert_eq!(text, format!("id: {id}\nevent: Reset\ndata: after\n\n"));
    // Data may carry NUL and other control characters: the event-stream format passes them.
    let (st, id) = publish(&server, FORM, "topic=a&data=x%00y%1Bz");
    assert_eq!(st, 200, "{id}");
    s.drain();
    let got = read_for(&mut s, b"z\n\n");
    assert_eq!(got, format!("id: {id}\ndata: x\0y\x1bz\n\n").as_bytes());
}

#[test]
fn with_redis_the_same_fields_are_refused_before_they_are_stored() {
    let Some(redis) = redis_server::RedisServer::start(&[]) else {
        return;
    };
    let server = Server::start(&["--redis", &redis.url()]);
    check_refusals(&server);
    // Refused at publish, so nothing was stored that the bridge would have to skip.
    let (st, id) = publish(&server, FORM, "topic=a&data=ok");
    assert_eq!(st, 200, "{id}");
    let mut c = redis.conn(&redis.url());
    // The log as Redis holds it: the mark that starts every log (`x log-reset`, see the
    // Redis section of the README), then the one event that was accepted.
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg("sse:events")
        .arg("-")
        .arg("+")
        .query(&mut c)
        .unwrap();
    let fields: Vec<&Vec<(String, String)>> = entries.iter().map(|e| &e.1).collect();
    assert_eq!(fields.len(), 2, "{entries:?}");
    assert_eq!(fields[0], &[("x".to_string(), "log-reset".to_string())]);
    assert_eq!(
        fields[1][..2],
        [("t".into(), "a".into()), ("d".into(), "ok".into())]
    );
    assert_eq!(entries[1].0, id);
    assert_eq!(server.metric("sse_redis_entries_skipped_total"), 0.0);
}

#[test]
fn json_data_is_sent_as_the_text_it_came_in() {
    let server = Server::start(&[]);
    let mut s = server.subscribe("topic=j", "");
    let data = r#"{"z":1,"a":{"price":1.10,"big":123456789012345678901234567890},"k":1,"k":2}"#;
    let (st, id) = publish(&server, JSON, &format!(r#"{{"topic":"j","data":{data}}}"#));
    assert_eq!(st, 200, "{id}");
    let got = read_for(&mut s, b"\n\n");
    assert_eq!(
        String::from_utf8_lossy(&got),
        format!("id: {id}\ndata: {data}\n\n")
    );
}

#[test]
fn distinct_topics_count_against_the_limit() {
    let server = Server::start(&[]);
    let names: Vec<String> = (0..32).map(|i| format!("topic=t{i}")).collect();
    // A subscription: 32 distinct names and a repeat, or 40 copies of one.
    let query = names.join("&") + "&topic=t3";
    let mut s = server.subscribe(&query, "");
    let _s2 = server.subscribe(&"topic=t7&".repeat(40), "");
    assert_eq!(
        server
            .get(&format!("/sse?{}&topic=t32", names.join("&")))
            .status,
        400
    );
    // A publish: the same rule; a repeated topic is stored (and delivered) once.
    let (st, id) = publish(&server, FORM, &(names.join("&") + "&topic=t0&data=x"));
    assert_eq!(st, 200, "{id}");
    let got = read_for(&mut s, b"data: x\n\n");
    assert_eq!(
        String::from_utf8_lossy(&got),
        format!("id: {id}\ndata: x\n\n")
    );
    let (st, text) = publish(&server, FORM, &(names.join("&") + "&topic=t32&data=x"));
    assert_eq!(st, 400, "{text}");
    assert!(text.contains("more than 32 topics"), "{text}");
}

#[test]
fn the_clock_stream_resumed_from_the_largest_id_stays_there() {
    let server = Server::start(&["--interval-ms", "20"]);
    let mut s = server.connect();
    s.write_all(b"GET /sse HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 18446744073709551615\r\n\r\n")
        .unwrap();
    let got = read_until(&mut s, Duration::from_secs(5), |b| {
        common::frames(b).len() >= 3
    });
    for f in common::frames(&got).iter().take(3) {
        assert!(f.contains("\nid:18446744073709551615\n"), "{f:?}");
    }
}

/// Writes a publish head with `Expect: 100-continue` (and `extra` lines), no body.
fn expect_head(s: &mut TcpStream, extra: &str, len: usize) {
    s.write_all(
        format!(
            "POST /publish HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\n{extra}Expect: 100-continue\r\nContent-Length: {len}\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
}

#[test]
fn expect_100_continue_is_answered_from_the_head() {
    let server = Server::start(&["--publish-token", "s3cret", "--max-publish-bytes", "4096"]);
    let auth = "Authorization: Bearer s3cret\r\n";
    let body = "topic=a&data=x";
    // An acceptable head: `100 Continue`, then the body, then the final answer; the
    // connection stays usable.
    let mut s = server.connect();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    for _ in 0..2 {
        expect_head(&mut s, auth, body.len());
        let got = read_until(&mut s, Duration::from_secs(2), |b| b.ends_with(b"\r\n\r\n"));
        assert_eq!(
            String::from_utf8_lossy(&got),
            "HTTP/1.1 100 Continue\r\n\r\n"
        );
        s.write_all(body.as_bytes()).unwrap();
        let r = common::read_response(&mut s);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // A head the body cannot save: the final answer at once, without the body, then close.
    let cases: &[(&str, usize, u16)] = &[
        ("", 10, 401),
        ("Authorization: Bearer wrong\r\n", 10, 401),
        (auth, 5000, 413),
    ];
    for &(extra, len, status) in cases {
        let mut s = server.connect();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        expect_head(&mut s, extra, len);
        let r = common::read_response(&mut s);
        assert_eq!(r.status, status, "{extra:?} {len}: {}", r.text());
        assert_eq!(r.header("connection"), Some("close"));
        assert!(!r.head.contains("100 Continue"));
    }
    for (head, status) in [
        (
            format!("POST /publish HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: text/plain\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n"),
            415,
        ),
        (
            "POST /elsewhere HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 10\r\n\r\n".to_string(),
            405,
        ),
    ] {
        let mut s = server.connect();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        let r = common::read_response(&mut s);
        assert_eq!(r.status, status, "{head}: {}", r.text());
    }
    // HTTP/1.0 has no 100 (RFC 9110 section 10.1.1): the body is simply awaited.
    let mut s = server.connect();
    s.write_all(
        format!("POST /publish HTTP/1.0\r\n{auth}Content-Type: {FORM}\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    s.write_all(body.as_bytes()).unwrap();
    let r = common::read_response(&mut s);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!r.head.contains("100 Continue"));
}

/// curl sends `Expect: 100-continue` for a large body (over 1 KiB or 1 MiB, by version; asked
/// for explicitly here) and waits up to 1 s for an answer before sending it anyway: with the
/// `100`, or the final answer at once, it does not wait.
#[test]
fn curl_does_not_wait_before_sending_a_body() {
    let server = Server::start(&["--publish-token", "s3cret"]);
    let dir = std::env::temp_dir().join(format!("sse-expect-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("body");
    std::fs::write(&file, format!("topic=a&data={}", "x".repeat(4000))).unwrap();
    let url = format!("http://{}/publish", server.addr);
    let curl = |auth: &str| {
        let start = Instant::now();
        let out = std::process::Command::new("curl")
            .args(["-sS", "-v", "-o", "/dev/null", "-w", "%{http_code}"])
            .args(["-H", auth, "-H", "Expect: 100-continue", "--data-binary"])
            .arg(format!("@{}", file.display()))
            .arg(&url)
            .output()
            .expect("curl is installed");
        let took = start.elapsed();
        let trace = String::from_utf8_lossy(&out.stderr).into_owned();
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            took,
            trace,
        )
    };
    let (code, took, trace) = curl("Authorization: Bearer s3cret");
    assert_eq!(code, "200", "{trace}");
    assert!(
        trace.contains("Expect: 100-continue"),
        "curl did not ask: {trace}"
    );
    assert!(trace.contains("HTTP/1.1 100 Continue"), "{trace}");
    assert!(
        took < Duration::from_millis(700),
        "curl waited {took:?}: {trace}"
    );
    let (code, took, trace) = curl("Authorization: Bearer wrong");
    assert_eq!(code, "401", "{trace}");
    assert!(
        took < Duration::from_millis(700),
        "curl waited {took:?}: {trace}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The next `request` line of the log that names `path`.
fn request_line(log: &std::sync::mpsc::Receiver<String>, path: &str) -> String {
    let end = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    while Instant::now() < end {
        if let Ok(l) = log.recv_timeout(Duration::from_millis(50)) {
            if l.contains(" request ") && l.contains(&format!(" path={path} ")) {
                return l;
            }
            seen.push(l);
        }
    }
    panic!("no request line for {path} in {seen:#?}");
}

#[test]
fn every_request_refused_by_the_http_layer_gets_its_log_line() {
    let (server, log) = Server::start_logged(&[
        "--head-timeout-ms",
        "300",
        "--max-publish-bytes",
        "100",
        "--max-head-bytes",
        "1024",
    ]);
    let cases: Vec<(String, &str, &str, &str)> = vec![
        (
            "GET /bad400 HTTP/1.1\r\nHost: a b\r\n\r\n".into(),
            "/bad400",
            "GET",
            "400",
        ),
        (
            format!(
                "POST /big413 HTTP/1.1\r\nHost: x\r\nContent-Type: {FORM}\r\nContent-Length: 5000\r\n\r\n"
            ),
            "/big413",
            "POST",
            "413",
        ),
        (
            format!(
                "GET /long431 HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
                "p".repeat(2000)
            ),
            "/long431",
            "GET",
            "431",
        ),
        (
            "BREW /pot501 HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            "/pot501",
            "BREW",
            "501",
        ),
        (
            "GET /v505?token=SECRET HTTP/2.0\r\nHost: x\r\n\r\n".into(),
            "/v505",
            "GET",
            "505",
        ),
        // Half a head, then nothing: 408 once the head timeout passes.
        ("GET /slow408 HTTP/1.1\r\nHo".into(), "/slow408", "GET", "408"),
    ];
    for (raw, path, method, status) in &cases {
        let mut s = server.connect();
        s.write_all(raw.as_bytes()).unwrap();
        let r = common::read_response(&mut s);
        assert_eq!(r.status.to_string(), *status, "{raw}");
        let line = request_line(&log, path);
        assert!(
            line.contains(&format!(" method={method} path={path} status={status} ")),
            "{line}"
        );
        assert!(!line.contains("SECRET"), "queries are never logged: {line}");
    }
}

#[test]
fn a_publish_stored_by_redis_is_logged_with_its_final_status() {
    let Some(redis) = redis_server::RedisServer::start(&[]) else {
        return;
    };
    // A short head timeout: a publish Redis does not answer gets its 503 within a second.
    let (server, log) =
        Server::start_logged(&["--redis", &redis.url(), "--head-timeout-ms", "1000"]);
    let (st, id) = publish(&server, FORM, "topic=a&data=x");
    assert_eq!(st, 200, "{id}");
    let line = request_line(&log, "/publish");
    assert!(
        line.contains(" method=POST path=/publish status=200 "),
        "{line}"
    );
    assert!(!line.contains("pending"), "{line}");
    // A publish Redis cannot store is logged with its 503, once the answer is known.
    redis.pause();
    let started = Instant::now();
    let (st, text) = publish(&server, FORM, "topic=a&data=y");
    redis.resume();
    let line = request_line(&log, "/publish");
    assert!(
        line.contains(&format!(" status={st} ")),
        "{line} ({text}, after {:?})",
        started.elapsed()
    );
    assert!(!line.contains("pending"), "{line}");
}

/// With stderr a pipe nobody reads, the log drops lines (counted) instead of blocking a loop:
/// requests keep being answered, streams keep their ticks, SIGTERM still stops the server.
#[test]
fn a_stuck_stderr_blocks_no_loop() {
    let server = Server::start_with_stderr_unread(&[
        "--interval-ms",
        "50",
        "--threads",
        "1",
        "--shutdown-grace-ms",
        "500",
    ]);
    let mut stream = server.connect();
    stream
        .write_all(b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    read_until(&mut stream, Duration::from_secs(5), |b| {
        common::frames(b).len() >= 2
    });
    // Far more lines than a pipe holds (64 KiB is about 600 of them).
    let mut c = server.connect();
    for i in 0..5000 {
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let r = common::read_response(&mut c);
        assert_eq!(r.status, 200, "request {i}");
    }
    // The stream on the same loop still ticks.
    read_until(&mut stream, Duration::from_secs(5), |b| {
        b.windows(2).filter(|w| w == b"\n\n").count() >= 3
    });
    assert!(server.metric("sse_log_lines_dropped_total") > 0.0);
    // And SIGTERM still stops it, promptly.
    let started = Instant::now();
    server.signal("TERM");
    let mut server = server;
    loop {
        if server.child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still running after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// `/metrics` reads the descriptor count sampled once a second, not a walk of `/proc/self/fd`
/// (one entry per connection) per request: while connections are opened one by one between
/// requests, the count it shows changes at most once a second.
#[test]
fn the_descriptor_count_is_a_sample_not_a_walk_per_request() {
    let server = Server::start(&[]);
    let fds = |c: &mut TcpStream| -> u64 {
        c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let r = common::read_response(c);
        let text = r.text();
        text.lines()
            .find_map(|l| l.strip_prefix("process_open_fds "))
            .unwrap_or_else(|| panic!("no process_open_fds in {text}"))
            .trim()
            .parse()
            .unwrap()
    };
    let mut c = server.connect();
    let mut held = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let started = Instant::now();
    for _ in 0..40 {
        held.push(server.connect());
        // The server has accepted it once it answers on it.
        let h = held.last_mut().unwrap();
        h.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        assert_eq!(common::read_response(h).status, 200);
        seen.insert(fds(&mut c));
    }
    let secs = started.elapsed().as_secs_f64();
    // One value per sample: the first, and one more per second that passed.
    assert!(
        seen.len() as f64 <= 2.0 + secs.ceil(),
        "{} distinct counts in {secs:.2} s: {seen:?}",
        seen.len()
    );
    // And it is a count: within a second or so it shows the connections held.
    let want = *seen.iter().next().unwrap() + 20;
    let end = Instant::now() + Duration::from_secs(3);
    while fds(&mut c) < want {
        assert!(Instant::now() < end, "the count never moved: {seen:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Out of descriptors, a connection is told to come back later once its request line says
/// what it wants; clients that say nothing are waited for (20 ms each) without the loop
/// waiting: the streams it serves keep their ticks meanwhile.
#[test]
fn shedding_never_holds_the_loop() {
    let server = Server::start_with_fd_limit(
        &[
            "--threads",
            "1",
            "--interval-ms",
            "50",
            "--max-streams",
            "1000",
        ],
        64,
    );
    // Fill the descriptors with streams until one is shed.
    let mut streams = Vec::new();
    loop {
        let mut s = server.connect();
        s.write_all(b"GET /sse HTTP/1.1\r\nHost: t\r\n\r\n")
            .unwrap();
        let got = read_until(&mut s, Duration::from_secs(5), |b| {
            b.windows(4).any(|w| w == b"\r\n\r\n")
        });
        if String::from_utf8_lossy(&got).contains("Connection: close") {
            break;
        }
        streams.push(s);
        assert!(streams.len() < 100, "never out of descriptors");
    }
    let watched = streams.first_mut().unwrap();
    watched
        .set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let mut buf = [0u8; 4096];
    while watched.read(&mut buf).is_ok_and(|n| n > 0) {}
    // 40 clients that connect and say nothing: 40 x 20 ms of waiting for a request line.
    let silent: Vec<TcpStream> = (0..40).map(|_| server.connect()).collect();
    let start = Instant::now();
    let mut last = Instant::now();
    let mut worst = Duration::ZERO;
    while start.elapsed() < Duration::from_millis(1500) {
        match watched.read(&mut buf) {
            Ok(n) if n > 0 && buf[..n].ends_with(b"\n\n") => {
                worst = worst.max(last.elapsed());
                last = Instant::now();
            }
            Ok(0) => panic!("the watched stream closed"),
            _ => {}
        }
    }
    worst = worst.max(last.elapsed());
    eprintln!("worst gap between ticks while shedding: {worst:?}");
    // Ticks every 50 ms; the old shedding held the loop 40 x 20 ms in one go.
    assert!(
        worst < Duration::from_millis(400),
        "a {worst:?} gap between ticks"
    );
    // Each silent client was told to come back later (a stream's retry: unknown counts as
    // a stream).
    for mut s in silent {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        assert!(
            String::from_utf8_lossy(&got).contains("retry: "),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
    }
}
