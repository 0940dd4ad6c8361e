//! The hub over real sockets against the real binary: publish and receive across loops, exact
//! resume while publishes continue, resets, the auth matrix, every bad input, and a publisher
//! flood against subscribers that do not read.

mod common;

use common::{Publish, Server, FORM};
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Publishes with exactly these header lines; returns (status, body).
fn publish_raw(server: &Server, headers: &str, body: &str) -> (u16, String) {
    let r = Publish::raw(headers, body).send(server.addr);
    (r.status, r.text())
}

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn a_publish_reaches_subscribers_on_every_loop_in_order() {
    let server = Server::start(&["--threads", "4"]);
    // Enough connections that the kernel spreads them over all four loops.
    let mut subs: Vec<_> = (0..16)
        .map(|_| server.subscribe("topic=chat", ""))
        .collect();
    let mut other = server.subscribe("topic=news", "");
    let mut star = server.subscribe("topic=*", "");
    let ids: Vec<String> = (0..5)
        .map(|i| server.publish("chat", &format!("m{i}")))
        .collect();
    let news = server.publish("news", "n");
    for s in subs.iter_mut() {
        let got = s.take(5, WAIT);
        let got_ids: Vec<&str> = got.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(got_ids, ids.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(got[4].data, "m4");
    }
    assert_eq!(other.take(1, WAIT)[0].id, news);
    let all = star.take(6, WAIT);
    assert_eq!(all[5].id, news);
    assert_eq!(server.metric("sse_hub_subscribers"), 18.0);
}

#[test]
fn types_multiline_data_json_and_retry_arrive_as_published() {
    let server = Server::start(&[]);
    let mut s = server.subscribe("topic=a&topic=b", "");
    publish_raw(
        &server,
        &format!("Content-Type: {FORM}\r\n"),
        "topic=a&data=line1%0D%0Aline2%0Dline3&type=token&retry=1500",
    );
    let (st, _) = publish_raw(
        &server,
        "Content-Type: application/json\r\n",
        r#"{"topic":["b","c"],"data":{"k":[1,2]},"type":"done"}"#,
    );
    assert_eq!(st, 200);
    let got = s.take(2, WAIT);
    assert_eq!(
        (got[0].kind.as_str(), got[0].data.as_str()),
        ("token", "line1\nline2\nline3")
    );
    assert_eq!(
        (got[1].kind.as_str(), got[1].data.as_str()),
        ("done", r#"{"k":[1,2]}"#)
    );
}

#[test]
fn resume_after_a_reconnect_gets_exactly_the_missed_events_while_publishes_continue() {
    let server = Server::start(&["--threads", "2"]);
    let mut s = server.subscribe("topic=t", "");
    let publisher = {
        let addr = server.addr;
        std::thread::spawn(move || {
            let mut ids = Vec::new();
            for i in 0..300 {
                ids.push(Publish::event("t", &i.to_string()).id(addr));
                std::thread::sleep(Duration::from_millis(1));
            }
            ids
        })
    };
    // Take some, drop the connection mid-flow, come back with the last id seen.
    let first = s.take(40, WAIT);
    drop(s);
    let last = first.last().unwrap().id.clone();
    // Events were published while it was away: the resume has missed ones to send.
    let away = first.len() as f64 + 5.0;
    let deadline = Instant::now() + WAIT;
    while server.metric("sse_hub_publishes_total") < away {
        assert!(Instant::now() < deadline, "the publisher stalled");
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut s = server.subscribe("topic=t", &format!("Last-Event-ID: {last}\r\n"));
    let ids = publisher.join().unwrap();
    let rest = s.take(300 - first.len(), WAIT);
    let mut seen: Vec<String> = first.into_iter().chain(rest).map(|e| e.id).collect();
    assert_eq!(seen, ids, "no gap, no duplicate at the seam");
    // And by query parameter, for clients that cannot set the header.
    let mut s = server.subscribe(&format!("topic=t&lastEventID={}", ids[289]), "");
    seen = s.take(10, WAIT).into_iter().map(|e| e.id).collect();
    assert_eq!(seen, ids[290..]);
}

#[test]
fn an_evicted_or_foreign_id_gets_a_reset_then_live_events() {
    let server = Server::start(&["--history-events", "5"]);
    let old = server.publish("t", "0");
    for i in 1..10 {
        server.publish("t", &i.to_string());
    }
    let mut s = server.subscribe("topic=t", &format!("Last-Event-ID: {old}\r\n"));
    let reset = &s.take(1, WAIT)[0];
    assert_eq!(reset.kind, "reset");
    let v: serde_json::Value = serde_json::from_str(&reset.data).unwrap();
    assert_eq!(v["reason"], "gap");
    assert_eq!(v["lastEventId"], old.as_str());
    let live = server.publish("t", "live");
    let next = &s.take(1, WAIT)[0];
    assert_eq!(
        (next.id.as_str(), next.data.as_str()),
        (live.as_str(), "live")
    );
    // An id from an earlier run of the server (another epoch), and junk.
    let other = Server::start(&[]);
    let foreign = other.publish("t", "x");
    for bad in [foreign.as_str(), "junk", "999999999999999999999999"] {
        let mut s = server.subscribe("topic=t", &format!("Last-Event-ID: {bad}\r\n"));
        let e = &s.take(1, WAIT)[0];
        assert_eq!(e.kind, "reset");
        assert!(e.data.contains("\"reason\":\"unknown-id\""), "{}", e.data);
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
        c.write_all(&Publish::event("a", &i.to_string()).keep_alive_bytes())
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
    let request = Publish::event("flood", &body_data).keep_alive_bytes();
    let mut c = server.connect();
    let mut flood = |n: usize| {
        for _ in 0..n {
            c.write_all(&request).unwrap();
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
    let start = Instant::now();
    let mut s = common::open(server.addr, "/metrics/stream", "");
    let figures = |e: &[common::Event]| e.iter().filter(|e| e.kind == "figures").count();
    s.expect_until(Duration::from_secs(5), |e| figures(e) >= 3);
    assert!(
        start.elapsed() >= Duration::from_millis(800),
        "a sample a second"
    );
    assert!(
        s.head
            .starts_with("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream"),
        "{}",
        s.head
    );
    assert!(std::str::from_utf8(&s.raw).is_ok(), "{}", s.text());
    let first = &s.events[0].data;
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
