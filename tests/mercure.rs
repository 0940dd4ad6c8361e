//! Mercure's selectors and tokens over real sockets: draft-07 URI Template subscriptions, live
//! and on resume; draft-07 template claims and draft-08 access tokens (`at+jwt`,
//! `authorization_details`) deciding who publishes and who reads private events.

mod common;

use common::{form_escape, now_s, Publish, Server, Stream, KEY};
use sse_server::hub::jwt::{sign_access_token, sign_hs256};
use std::time::Duration;

/// Percent-encodes a query value (what `URLSearchParams` would send).
fn q(v: &str) -> String {
    form_escape(v)
}

fn publish(server: &Server, auth: &str, topic: &str, data: &str, private: bool) -> (u16, String) {
    let mut body = format!("topic={}&data={}", q(topic), q(data));
    if private {
        body.push_str("&private=on");
    }
    let r = Publish::form(&body).bearer(auth).send(server.addr);
    (r.status, r.text())
}

/// Opens `GET /sse?{query}`; the status and, for 200, the stream (registered in the hub
/// once its head is read).
fn open(server: &Server, query: &str, headers: &str) -> (u16, Option<Stream>) {
    let st = common::open(server.addr, &format!("/sse?{query}"), headers);
    (st.status, (st.status == 200).then_some(st))
}

/// The data of every `message` event received within `wait` (and before it).
fn datas(st: &mut Stream, wait: Duration) -> Vec<String> {
    st.read_for(wait)
        .events
        .iter()
        .filter(|e| e.kind == "message")
        .map(|e| e.data.clone())
        .collect()
}

const BOOKS: &str = "https://example.com/books/{id}";

#[test]
fn uri_template_subscriptions_get_what_they_match_live_and_on_resume() {
    let server = Server::start(&["--publish-token", "pub"]);
    let (status, s) = open(&server, &format!("topic={}", q(BOOKS)), "");
    assert_eq!(status, 200);
    let mut books = s.unwrap();
    let (_, s) = open(
        &server,
        &format!("topic=chat%2F1&topic={}", q("https://example.com/{kind}/1")),
        "",
    );
    let mut mixed = s.unwrap();
    let (_, first) = publish(&server, "pub", "https://example.com/books/1", "b1", false);
    for (topic, data) in [
        ("https://example.com/books/1/chapters/2", "chapter"),
        ("https://example.com/movies/1", "m1"),
        ("chat/1", "c1"),
        ("https://example.com/books/2", "b2"),
        // The template's own text is a topic it selects, as an exact name would.
        (BOOKS, "own"),
    ] {
        assert_eq!(publish(&server, "pub", topic, data, false).0, 200);
    }
    let wait = Duration::from_millis(400);
    assert_eq!(datas(&mut books, wait), ["b1", "b2", "own"]);
    assert_eq!(datas(&mut mixed, wait), ["b1", "m1", "c1"]);
    // A resume from before the first event replays by the same rule.
    let (epoch, seq) = first.trim_end().rsplit_once('-').unwrap();
    let before = format!("{epoch}-{}", seq.parse::<u64>().unwrap() - 1);
    let (_, s) = open(
        &server,
        &format!("topic={}", q(BOOKS)),
        &format!("Last-Event-ID: {before}\r\n"),
    );
    assert_eq!(datas(&mut s.unwrap(), wait), ["b1", "b2", "own"]);
    // What is not a template stays a name: an unclosed brace, a space inside.
    let (_, s) = open(&server, &format!("topic={}", q("a/{b")), "");
    let mut literal = s.unwrap();
    assert_eq!(publish(&server, "pub", "a/{b", "lit", false).0, 200);
    assert_eq!(publish(&server, "pub", "a/x", "not", false).0, 200);
    assert_eq!(datas(&mut literal, wait), ["lit"]);
}

#[test]
fn a_template_too_complex_is_refused() {
    let server = Server::start(&["--publish-token", "pub"]);
    let (status, _) = open(&server, &format!("topic={}", q(&"{x}".repeat(32))), "");
    assert_eq!(status, 200);
    let r = server.get(&format!("/sse?topic={}", q(&"{x}".repeat(33))));
    assert_eq!(r.status, 400);
    assert!(r.text().contains("URI template"), "{}", r.text());
}

fn access_token(details: &str, exp: u64) -> String {
    sign_access_token(
        KEY.as_bytes(),
        &format!(r#"{{"exp":{exp},"authorization_details":{details}}}"#),
    )
}

#[test]
fn draft_08_access_tokens_publish_and_read_private_events() {
    let server = Server::start(&["--jwt-key", KEY]);
    let exp = now_s() + 600;
    let publisher = access_token(
        r#"[{"type":"mercure","actions":["publish"],"topics":[{"match":"https://example.com/books/:id","matchType":"URLPattern"}]}]"#,
        exp,
    );
    let reader = access_token(
        r#"[{"type":"mercure","actions":["subscribe"],"topics":[{"match":"https://example.com/books/1","matchType":"Exact"}]}]"#,
        exp,
    );
    // The conformance suite's shape: the reference hub's detail type, `match` alone.
    let suite_reader = access_token(
        r#"[{"type":"https://mercure.rocks/authorization-detail","actions":["subscribe"],"topics":[{"match":"*"}]}]"#,
        exp,
    );
    let (_, s) = open(
        &server,
        &format!("topic={}", q(BOOKS)),
        &format!("Authorization: Bearer {reader}\r\n"),
    );
    let mut reader_s = s.unwrap();
    let (_, s) = open(
        &server,
        &format!("topic={}", q(BOOKS)),
        &format!("Cookie: mercureAuthorization={suite_reader}\r\n"),
    );
    let mut suite_s = s.unwrap();
    let (_, s) = open(&server, &format!("topic={}", q(BOOKS)), "");
    let mut anon = s.unwrap();

    let ok = |topic: &str, data: &str, private: bool| {
        let (status, body) = publish(&server, &publisher, topic, data, private);
        assert_eq!(status, 200, "{topic}: {body}");
    };
    ok("https://example.com/books/1", "public", false);
    ok("https://example.com/books/1", "private 1", true);
    ok("https://example.com/books/2", "private 2", true);
    // Outside the token's pattern: refused, naming the topic.
    let (status, body) = publish(
        &server,
        &publisher,
        "https://example.com/movies/1",
        "m",
        false,
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("movies/1"), "{body}");
    // The same claims in a token that does not say it is an access token, or expired: 401.
    let untyped = sign_hs256(
        KEY.as_bytes(),
        &format!(
            r#"{{"exp":{exp},"authorization_details":[{{"type":"mercure","actions":["publish"],"topics":[{{"match":"*"}}]}}]}}"#
        ),
    );
    let expired = access_token(
        r#"[{"type":"mercure","actions":["publish"],"topics":[{"match":"*"}]}]"#,
        now_s() - 3600,
    );
    let malformed = access_token(
        r#"[{"type":"mercure","actions":["publish","delete"],"topics":[{"match":"*"}]}]"#,
        exp,
    );
    for t in [&untyped, &expired, &malformed] {
        let (status, _) = publish(&server, t, "https://example.com/books/3", "no", false);
        assert_eq!(status, 401);
        let (status, _) = open(
            &server,
            "topic=x",
            &format!("Authorization: Bearer {t}\r\n"),
        );
        assert_eq!(status, 401);
    }
    let wait = Duration::from_millis(400);
    assert_eq!(datas(&mut reader_s, wait), ["public", "private 1"]);
    assert_eq!(
        datas(&mut suite_s, wait),
        ["public", "private 1", "private 2"]
    );
    assert_eq!(datas(&mut anon, wait), ["public"]);
}

#[test]
fn draft_07_template_claims_decide_publish_and_private_reads() {
    let server = Server::start(&["--jwt-key", KEY]);
    let exp = now_s() + 600;
    let publisher = sign_hs256(
        KEY.as_bytes(),
        &format!(r#"{{"mercure":{{"publish":["{BOOKS}"]}},"exp":{exp}}}"#),
    );
    let reader = sign_hs256(
        KEY.as_bytes(),
        &format!(r#"{{"mercure":{{"subscribe":["{BOOKS}"]}},"exp":{exp}}}"#),
    );
    let (_, s) = open(
        &server,
        "topic=*",
        &format!("Authorization: Bearer {reader}\r\n"),
    );
    let mut star = s.unwrap();
    let (_, s) = open(
        &server,
        &format!("topic={}&topic=news", q("https://example.com/books/7")),
        &format!("Authorization: Bearer {reader}\r\n"),
    );
    let mut named = s.unwrap();
    assert_eq!(
        publish(
            &server,
            &publisher,
            "https://example.com/books/7",
            "b7",
            true
        )
        .0,
        200
    );
    let (status, body) = publish(
        &server,
        &publisher,
        "https://example.com/books/7/reviews",
        "r",
        true,
    );
    assert_eq!(status, 403, "{body}");
    let wait = Duration::from_millis(400);
    assert_eq!(datas(&mut star, wait), ["b7"]);
    assert_eq!(datas(&mut named, wait), ["b7"]);
}

/// Ten subscribers of one template on one loop: each new topic runs the template once (a
/// miss), every subscriber's delivery reads the cache (hits), and `/metrics` says so.
#[test]
fn a_template_runs_once_per_topic_not_per_subscriber() {
    let server = Server::start(&["--publish-token", "pub", "--threads", "1"]);
    let mut streams: Vec<Stream> = (0..10)
        .map(|_| open(&server, &format!("topic={}", q(BOOKS)), "").1.unwrap())
        .collect();
    let n = 20;
    for i in 0..n {
        let topic = format!("https://example.com/books/{i}");
        assert_eq!(
            publish(&server, "pub", &topic, &format!("b{i}"), false).0,
            200
        );
    }
    let want: Vec<String> = (0..n).map(|i| format!("b{i}")).collect();
    for s in &mut streams {
        assert_eq!(datas(s, Duration::from_millis(300)), want);
    }
    assert_eq!(server.metric("sse_selector_cache_misses_total"), n as f64);
    let hits = server.metric("sse_selector_cache_hits_total");
    assert!(hits >= (10 * n) as f64, "{hits}");
    assert_eq!(server.metric("sse_selector_cache_evictions_total"), 0.0);
}

/// With `--jwt-audience`, an access token must name the hub in `aud` (draft-08, "Token
/// Validation"); draft-07 tokens have no audience to check.
#[test]
fn an_access_token_for_another_audience_is_refused() {
    let hub = "https://hub.example/.well-known/mercure";
    let server = Server::start(&["--jwt-key", KEY, "--jwt-audience", hub]);
    let exp = now_s() + 600;
    let details = r#"[{"type":"mercure","actions":["publish"],"topics":[{"match":"*"}]}]"#;
    let with_aud = |aud: &str| {
        sign_access_token(
            KEY.as_bytes(),
            &format!(r#"{{"exp":{exp},"aud":{aud},"authorization_details":{details}}}"#),
        )
    };
    for (aud, want) in [
        (format!("{hub:?}"), 200),
        (format!(r#"["https://other.example/",{hub:?}]"#), 200),
        (
            r#""https://other.example/.well-known/mercure""#.to_string(),
            401,
        ),
        ("null".to_string(), 401),
    ] {
        let (status, body) = publish(&server, &with_aud(&aud), "t", "x", false);
        assert_eq!(status, want, "aud {aud}: {body}");
    }
    let legacy = sign_hs256(
        KEY.as_bytes(),
        &format!(r#"{{"mercure":{{"publish":["*"]}},"exp":{exp}}}"#),
    );
    assert_eq!(publish(&server, &legacy, "t", "x", false).0, 200);
}
