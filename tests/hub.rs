//! The hub over real sockets against the real binary: publish and receive across loops, exact
//! resume while publishes continue, resets, the auth matrix, every bad input, and a publisher
//! flood against subscribers that do not read.

mod common;

use common::{read_until, Server};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Publishes a form body; returns (status, body).
fn publish_raw(server: &Server, headers: &str, body: &str) -> (u16, String) {
    let r = server.request(&format!(
        "POST /publish HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    (r.status, r.text())
}

fn form(server: &Server, body: &str) -> (u16, String) {
    publish_raw(
        server,
        "Content-Type: application/x-www-form-urlencoded\r\n",
        body,
    )
}

/// Publishes `data` to `topic` and returns its id.
fn publish(server: &Server, topic: &str, data: &str) -> String {
    let (status, id) = form(server, &format!("topic={topic}&data={data}"));
    assert_eq!(status, 200, "{id}");
    // The answer is the id and a newline.
    assert!(id.ends_with('\n'), "{id:?}");
    id.trim_end().to_string()
}

/// Opens a subscription (the query after `/sse?`) with extra header lines; returns the socket
/// after the response head.
fn subscribe(server: &Server, query: &str, extra: &str) -> (TcpStream, Vec<u8>) {
    let mut s = server.connect();
    s.write_all(format!("GET /sse?{query} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").as_bytes())
        .unwrap();
    let got = read_until(&mut s, Duration::from_secs(5), |b| {
        b.windows(4).any(|w| w == b"\r\n\r\n")
    });
    assert!(
        got.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    let at = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    (s, got[at..].to_vec())
}

/// One parsed event: (id, type, data).
type Ev = (String, String, String);

/// Reads from `s` (after `pending` bytes) until `n` events arrived (comments ignored).
fn events(s: &mut TcpStream, pending: &mut Vec<u8>, n: usize) -> Vec<Ev> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = pending.drain(..end + 2).collect();
            let text = String::from_utf8(block).unwrap();
            let (mut id, mut ty, mut data) = (String::new(), String::from("message"), Vec::new());
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.into();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    ty = v.into();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push(v.to_string());
                }
            }
            if !id.is_empty() || !data.is_empty() {
                out.push((id, ty, data.join("\n")));
            }
        }
        if out.len() >= n {
            return out;
        }
        assert!(Instant::now() < deadline, "timed out with {out:?}");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => panic!("closed after {out:?}"),
            Ok(k) => pending.extend_from_slice(&buf[..k]),
            Err(_) => {}
        }
    }
}

#[test]
fn a_publish_reaches_subscribers_on_every_loop_in_order() {
    let server = Server::start(&["--threads", "4"]);
    // Enough connections that the kernel spreads them over all four loops.
    let mut subs: Vec<_> = (0..16)
        .map(|_| subscribe(&server, "topic=chat", ""))
        .collect();
    let mut other = subscribe(&server, "topic=news", "");
    let mut star = subscribe(&server, "topic=*", "");
    std::thread::sleep(Duration::from_millis(50));
    let ids: Vec<String> = (0..5)
        .map(|i| publish(&server, "chat", &format!("m{i}")))
        .collect();
    let news = publish(&server, "news", "n");
    for (s, pending) in subs.iter_mut() {
        let got = events(s, pending, 5);
        let got_ids: Vec<&str> = got.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(got_ids, ids.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(got[4].2, "m4");
    }
    assert_eq!(events(&mut other.0, &mut other.1, 1)[0].0, news);
    let all = events(&mut star.0, &mut star.1, 6);
    assert_eq!(all[5].0, news);
    assert_eq!(server.metric("sse_hub_subscribers"), 18.0);
}

#[test]
fn types_multiline_data_json_and_retry_arrive_as_published() {
    let server = Server::start(&[]);
    let (mut s, mut p) = subscribe(&server, "topic=a&topic=b", "");
    std::thread::sleep(Duration::from_millis(30));
    form(
        &server,
        "topic=a&data=line1%0D%0Aline2%0Dline3&type=token&retry=1500",
    );
    let (st, _) = publish_raw(
        &server,
        "Content-Type: application/json\r\n",
        r#"{"topic":["b","c"],"data":{"k":[1,2]},"type":"done"}"#,
    );
    assert_eq!(st, 200);
    let got = events(&mut s, &mut p, 2);
    assert_eq!(
        (got[0].1.as_str(), got[0].2.as_str()),
        ("token", "line1\nline2\nline3")
    );
    assert_eq!(
        (got[1].1.as_str(), got[1].2.as_str()),
        ("done", r#"{"k":[1,2]}"#)
    );
}

#[test]
fn resume_after_a_reconnect_gets_exactly_the_missed_events_while_publishes_continue() {
    let server = Server::start(&["--threads", "2"]);
    let (mut s, mut p) = subscribe(&server, "topic=t", "");
    std::thread::sleep(Duration::from_millis(30));
    let publisher = {
        let addr = server.addr;
        std::thread::spawn(move || {
            let mut ids = Vec::new();
            for i in 0..300 {
                let mut c = TcpStream::connect(addr).unwrap();
                c.set_nodelay(true).unwrap();
                let body = format!("topic=t&data={i}");
                write!(
                    c,
                    "POST /publish HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .unwrap();
                let mut r = String::new();
                c.read_to_string(&mut r).unwrap();
                // The answer is the id and a newline.
                ids.push(r.split("\r\n\r\n").nth(1).unwrap().trim_end().to_string());
                std::thread::sleep(Duration::from_millis(1));
            }
            ids
        })
    };
    // Take some, drop the connection mid-flow, come back with the last id seen.
    let first = events(&mut s, &mut p, 40);
    drop(s);
    let last = first.last().unwrap().0.clone();
    std::thread::sleep(Duration::from_millis(30));
    let (mut s, mut p) = subscribe(&server, "topic=t", &format!("Last-Event-ID: {last}\r\n"));
    let ids = publisher.join().unwrap();
    let rest = events(&mut s, &mut p, 300 - 40);
    let mut seen: Vec<String> = first.into_iter().chain(rest).map(|e| e.0).collect();
    assert_eq!(seen, ids, "no gap, no duplicate at the seam");
    // And by query parameter, for clients that cannot set the header.
    let (mut s, mut p) = subscribe(&server, &format!("topic=t&lastEventID={}", ids[289]), "");
    seen = events(&mut s, &mut p, 10)
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(seen, ids[290..]);
}

#[test]
fn an_evicted_or_foreign_id_gets_a_reset_then_live_events() {
    let server = Server::start(&["--history-events", "5"]);
    let old = publish(&server, "t", "0");
    for i in 1..10 {
        publish(&server, "t", &i.to_string());
    }
    let (mut s, mut p) = subscribe(&server, "topic=t", &format!("Last-Event-ID: {old}\r\n"));
    let reset = &events(&mut s, &mut p, 1)[0];
    assert_eq!(reset.1, "reset");
    let v: serde_json::Value = serde_json::from_str(&reset.2).unwrap();
    assert_eq!(v["reason"], "gap");
    assert_eq!(v["lastEventId"], old.as_str());
    let live = publish(&server, "t", "live");
    let next = &events(&mut s, &mut p, 1)[0];
    assert_eq!((next.0.as_str(), next.2.as_str()), (live.as_str(), "live"));
    // An id from an earlier run of the server (another epoch), and junk.
    let other = Server::start(&[]);
    let foreign = publish(&other, "t", "x");
    for bad in [foreign.as_str(), "junk", "999999999999999999999999"] {
        let (mut s, mut p) = subscribe(&server, "topic=t", &format!("Last-Event-ID: {bad}\r\n"));
        let e = &events(&mut s, &mut p, 1)[0];
        assert_eq!(e.1, "reset");
        assert!(e.2.contains("\"reason\":\"unknown-id\""), "{}", e.2);
    }
    assert_eq!(
        server.metric("sse_hub_resets_total{reason=\"unknown-id\"}"),
        3.0
    );
}

#[test]
fn publishing_needs_the_token_or_loopback() {
    let server = Server::start(&["--publish-token", "s3cret"]);
    let ct = "Content-Type: application/x-www-form-urlencoded\r\n";
    for auth in [
        "",
        "Authorization: Bearer wrong\r\n",
        "Authorization: Basic czNjcmV0\r\n",
        "Authorization: Bearer s3cre\r\n",
    ] {
        let r = server.request(&format!(
            "POST /publish HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{ct}{auth}Content-Length: 12\r\n\r\ntopic=a&data"
        ));
        assert_eq!(r.status, 401, "{auth}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    }
    let (st, _) = publish_raw(
        &server,
        &format!("{ct}Authorization: bearer s3cret\r\n"),
        "topic=a&data=x",
    );
    assert_eq!(st, 200);
    assert_eq!(
        server.metric("sse_hub_publishes_rejected_total{reason=\"unauthorized\"}"),
        4.0
    );
    // The token is never printed (the startup line only says one is needed).
    let env_server = Server::start_with_env(&[], &[("SSE_PUBLISH_TOKEN", "fromenv")]);
    let (st, _) = publish_raw(
        &env_server,
        &format!("{ct}Authorization: Bearer fromenv\r\n"),
        "topic=a&data=x",
    );
    assert_eq!(st, 200);
}

#[test]
fn bad_input_gets_a_clear_answer() {
    let server = Server::start(&["--max-publish-bytes", "1000"]);
    let ct = "Content-Type: application/x-www-form-urlencoded\r\n";
    let cases: &[(&str, &str, u16, &str)] = &[
        (ct, "data=x", 400, "missing topic"),
        (ct, "topic=a", 400, "missing data"),
        (ct, "topic=&data=x", 400, "empty topic"),
        (ct, "topic=a&data=x&type=a%0Ab", 400, "type"),
        (ct, "topic=a&data=x&retry=soon", 400, "retry"),
        ("Content-Type: text/plain\r\n", "hello", 415, "415"),
        ("", "topic=a&data=x", 415, "415"),
        (
            "Content-Type: application/json\r\n",
            "{nope",
            400,
            "bad JSON",
        ),
    ];
    for (headers, body, status, text) in cases {
        let (st, got) = publish_raw(&server, headers, body);
        assert_eq!(st, *status, "{body}: {got}");
        assert!(got.contains(text), "{body}: {got}");
        assert!(!got.trim_end().contains('\n'), "one line: {got}");
    }
    // Too large: refused from Content-Length, before the body is sent.
    let mut s = server.connect();
    s.write_all(
        format!("POST /publish HTTP/1.1\r\nHost: x\r\n{ct}Content-Length: 5000\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let r = common::read_response(&mut s);
    assert_eq!(r.status, 413);
    // Chunked bodies are not implemented.
    let r = server.request(&format!(
        "POST /publish HTTP/1.1\r\nHost: x\r\n{ct}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    ));
    assert_eq!(r.status, 501);
    // Subscriptions: an empty topic, more than 32.
    assert_eq!(server.get("/sse?topic=").status, 400);
    let many: String = (0..33).map(|i| format!("topic=t{i}&")).collect();
    assert_eq!(server.get(&format!("/sse?{many}")).status, 400);
    // GET /publish is the publish policy (JSON), not a 405 any more.
    assert_eq!(server.get("/publish").status, 200);
    // Keep-alive: a publisher may reuse its connection.
    let mut c = server.connect();
    for i in 0..3 {
        let body = format!("topic=a&data={i}");
        write!(
            c,
            "POST /publish HTTP/1.1\r\nHost: x\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        assert_eq!(common::read_response(&mut c).status, 200);
    }
}

#[test]
fn a_flood_against_subscribers_that_do_not_read_keeps_memory_flat() {
    let server = Server::start(&[
        "--history-events",
        "300",
        "--history-bytes",
        "1000000",
        "--sndbuf",
        "4096",
        "--stall-timeout-ms",
        "600000",
    ]);
    // 200 subscribers that never read, with small receive buffers.
    let subs: Vec<TcpStream> = (0..200)
        .map(|_| {
            let s =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            s.set_recv_buffer_size(4096).unwrap();
            s.connect(&server.addr.into()).unwrap();
            let mut s: TcpStream = s.into();
            s.write_all(b"GET /sse?topic=flood HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    let body_data = "x".repeat(900);
    let ct = "Content-Type: application/x-www-form-urlencoded\r\n";
    let mut c = server.connect();
    let mut flood = |n: usize| {
        for _ in 0..n {
            let body = format!("topic=flood&data={body_data}");
            write!(
                c,
                "POST /publish HTTP/1.1\r\nHost: x\r\n{ct}Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            assert_eq!(common::read_response(&mut c).status, 200);
        }
    };
    let start = Instant::now();
    flood(600);
    let rss_warm = server.rss_bytes();
    flood(1200);
    let rss_after = server.rss_bytes();
    eprintln!(
        "flood of 1,800 publishes to 200 stuck subscribers: {:?}",
        start.elapsed()
    );
    // The subscribers' backlogs (1,200 x 200 frames, about 216 MB) are cursors, not queues.
    assert!(
        rss_after < rss_warm + 8 * 1024 * 1024,
        "RSS grew from {rss_warm} to {rss_after}"
    );
    assert_eq!(server.metric("sse_hub_subscribers"), 200.0);
    drop(subs);
}

#[test]
fn the_figures_stream_sends_what_it_kept_then_one_sample_a_second() {
    let server = Server::start(&[]);
    std::thread::sleep(Duration::from_millis(1100));
    let mut s = server.connect();
    s.write_all(b"GET /metrics/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let start = Instant::now();
    let got = read_until(&mut s, Duration::from_secs(5), |b| {
        String::from_utf8_lossy(b)
            .matches("event: figures\n")
            .count()
            >= 3
    });
    assert!(
        start.elapsed() >= Duration::from_millis(800),
        "a sample a second"
    );
    let text = String::from_utf8(got).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream"));
    let first = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let v: serde_json::Value = serde_json::from_str(first).unwrap();
    for key in [
        "t",
        "streams_open",
        "frames_total",
        "deliveries_total",
        "publishes_total",
        "rss_bytes",
        "cpu_seconds",
    ] {
        assert!(v.get(key).is_some(), "{key} in {first}");
    }
    assert!(v["rss_bytes"].as_u64().unwrap() > 0);
}

/// `GET /publish` says what publishing needs here (the page reads it instead of guessing),
/// and agrees with what a tokenless loopback publish actually gets.
#[test]
fn the_publish_policy_says_what_publishing_needs() {
    let key = "a-policy-test-key-long-enough-for-hs256";
    let ct = "Content-Type: application/x-www-form-urlencoded\r\n";
    for (args, want, tokenless) in [
        (
            &[][..],
            r#"{"token":"none","loopback":true,"tokenless":true}"#,
            true,
        ),
        (
            &["--publish-token", "p"][..],
            r#"{"token":"publish-token","loopback":false,"tokenless":false}"#,
            false,
        ),
        (
            &["--jwt-key", key][..],
            r#"{"token":"jwt","loopback":false,"tokenless":false}"#,
            false,
        ),
        (
            &["--jwt-key", key, "--publish-token", "p"][..],
            r#"{"token":"publish-token or jwt","loopback":false,"tokenless":false}"#,
            false,
        ),
    ] {
        let server = Server::start(args);
        let r = server.get("/publish");
        assert_eq!(r.status, 200, "{args:?}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert_eq!(r.text(), format!("{want}\n"), "{args:?}");
        let (st, why) = publish_raw(&server, ct, "topic=a&data=x");
        assert_eq!(st == 200, tokenless, "{args:?}: {st} {why}");
        if args == ["--jwt-key", key] {
            // A key alone turns tokenless loopback publishing off: the answer says why.
            assert!(why.contains("--jwt-key"), "{why}");
        }
    }
}
