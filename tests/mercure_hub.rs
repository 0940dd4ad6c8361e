//! The Mercure hub's own URL, `/.well-known/mercure`, over real sockets: subscribing by the
//! selectors of both drafts with a strict query, publishing by Mercure's form rules, the status
//! codes the spec names, resuming with the `Last-Event-ID` answer and `earliest`, discovery,
//! cookies and CORS; and the conformance suite's negative cases checked on the wire (nothing
//! of the event reaches the subscriber, not "an event with another id").

mod common;
#[path = "common/redis.rs"]
mod redis_server;

use common::{form_escape, now_s, Response, Server, Stream, FORM, KEY};
use sse_server::hub::jwt::{sign_access_token, sign_hs256};
use std::time::Duration;

const HUB: &str = "/.well-known/mercure";
const WAIT: Duration = Duration::from_millis(400);

fn q(v: &str) -> String {
    form_escape(v)
}

/// Opens `GET /.well-known/mercure?{query}` with `headers` (each line ending in CRLF).
fn sub(server: &Server, query: &str, headers: &str) -> Stream {
    common::open(server.addr, &format!("{HUB}?{query}"), headers)
}

/// `POST /.well-known/mercure` with a form body and extra header lines (each ending in CRLF).
fn post(server: &Server, headers: &str, body: &str) -> Response {
    common::request(
        server.addr,
        &format!(
            "POST {HUB} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {FORM}\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

/// A draft-07 token that may publish and read everything.
fn all_token() -> String {
    sign_hs256(
        KEY.as_bytes(),
        &format!(
            r#"{{"mercure":{{"publish":["*"],"subscribe":["*"]}},"exp":{}}}"#,
            now_s() + 600
        ),
    )
}

/// A draft-07 token that may read `topics` (a JSON array).
fn reader(topics: &str) -> String {
    sign_hs256(
        KEY.as_bytes(),
        &format!(
            r#"{{"mercure":{{"subscribe":{topics}}},"exp":{}}}"#,
            now_s() + 600
        ),
    )
}

fn messages(st: &mut Stream, wait: Duration) -> Vec<String> {
    st.read_for(wait)
        .events
        .iter()
        .filter(|e| e.kind == "message")
        .map(|e| e.data.clone())
        .collect()
}

#[test]
fn subscribing_by_the_selectors_of_both_drafts() {
    let server = Server::start(&["--jwt-key", KEY]);
    let tok = all_token();
    let mut exact = sub(
        &server,
        "match=https%3A%2F%2Fexample.com%2Fbooks%2F1&match=bar",
        "",
    );
    let mut pattern = sub(
        &server,
        &format!("match_urlpattern={}", q("https://example.com/books/:id")),
        "",
    );
    let mut camel = sub(
        &server,
        &format!("matchURLPattern={}", q("https://example.com/books/:id")),
        "",
    );
    let mut template = sub(
        &server,
        &format!("topic={}", q("https://example.com/books/{id}")),
        "",
    );
    let mut star = sub(&server, "match=*", "");
    for st in [&exact, &pattern, &camel, &template, &star] {
        assert_eq!(st.status, 200, "{}", st.head);
        assert!(
            st.head.contains("Content-Type: text/event-stream"),
            "{}",
            st.head
        );
    }
    for (topic, data) in [
        ("https://example.com/books/1", "b1"),
        ("https://example.com/books/2", "b2"),
        ("bar", "bar"),
        ("https://example.com/movies/1", "m1"),
    ] {
        let r = post(
            &server,
            &bearer(&tok),
            &format!("topic={}&data={data}", q(topic)),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(messages(&mut exact, WAIT), ["b1", "bar"]);
    assert_eq!(messages(&mut pattern, WAIT), ["b1", "b2"]);
    assert_eq!(messages(&mut camel, WAIT), ["b1", "b2"]);
    assert_eq!(messages(&mut template, WAIT), ["b1", "b2"]);
    assert_eq!(messages(&mut star, WAIT), ["b1", "b2", "bar", "m1"]);
}

#[test]
fn a_subscription_query_is_read_strictly() {
    let server = Server::start(&[]);
    let cases: &[(&str, &str)] = &[
        ("", "no topic selector"),
        ("lastEventID=earliest", "no topic selector"),
        ("match=a&x=1", "unknown query parameter \"x\""),
        ("topic=a&_=123", "unknown query parameter \"_\""),
        ("matchRegexp=a.*", "unknown matcher type \"matchRegexp\""),
        ("MATCH=a", "unknown matcher type \"MATCH\""),
        // Draft-08: matcher parameter names are case-sensitive, the match prefix is reserved
        // in any case.
        ("Match=a", "unknown matcher type \"Match\""),
        (
            "matchurlpattern=a",
            "unknown matcher type \"matchurlpattern\"",
        ),
        ("matchexact=a", "unknown matcher type \"matchexact\""),
        (
            "MatchURLPattern=a",
            "unknown matcher type \"MatchURLPattern\"",
        ),
        ("match=", "empty topic"),
        ("match=a%0Ab", "control character"),
        ("match_urlpattern=https%3A%2F%2Fexample.com%2F(", "selector"),
        ("match=%FF", "percent-encoding"),
    ];
    for (query, why) in cases {
        let r = server.get(&format!("{HUB}?{query}"));
        assert_eq!(r.status, 400, "{query}: {}", r.text());
        assert!(r.text().contains(why), "{query}: {}", r.text());
        assert_eq!(
            r.header("WWW-Authenticate"),
            Some("Bearer error=\"invalid_request\""),
            "{query}"
        );
    }
    let many: String = (0..33).map(|i| format!("match=t{i}&")).collect();
    assert_eq!(server.get(&format!("{HUB}?{many}")).status, 400);
    // /sse keeps its ways: unknown parameters ignored, no topic is the clock.
    let mut st = common::open(server.addr, "/sse?topic=a&x=1", "");
    assert_eq!(st.status, 200);
    st.read_for(Duration::from_millis(50));
    // HEAD is GET's head; OPTIONS a preflight naming every method; others 405 with a true Allow.
    let head = server.request(&format!("HEAD {HUB}?match=a HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert_eq!(head.status, 200);
    assert!(head.head.contains("text/event-stream"), "{}", head.head);
    assert!(head.body.is_empty());
    let pre = server.request(&format!(
        "OPTIONS {HUB} HTTP/1.1\r\nHost: x\r\nOrigin: http://app.example\r\nAccess-Control-Request-Method: POST\r\n\r\n"
    ));
    assert_eq!(pre.status, 204, "{}", pre.head);
    assert_eq!(
        pre.header("Access-Control-Allow-Methods"),
        Some("GET, HEAD, POST, OPTIONS")
    );
    assert!(pre
        .header("Access-Control-Allow-Headers")
        .is_some_and(|h| h.contains("Last-Event-ID") && h.contains("Authorization")));
}

#[test]
fn publishing_by_mercures_form_rules() {
    let server = Server::start(&["--jwt-key", KEY]);
    let tok = all_token();
    let mut st = sub(&server, "match=a", &bearer(&reader(r#"["a"]"#)));
    let mut anon = sub(&server, "match=a", "");
    // The answer is the id alone, as text/plain.
    let r = post(&server, &bearer(&tok), "topic=a&data=one");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("Content-Type")
            .is_some_and(|c| c.starts_with("text/plain")),
        "{}",
        r.head
    );
    let first = r.text();
    assert!(!first.is_empty() && !first.contains('\n'), "{first:?}");
    // `data` is optional: the event carries one empty data line.
    assert_eq!(
        post(&server, &bearer(&tok), "topic=a&type=ping").status,
        200
    );
    // `private` by its presence, whatever its value (Mercure MUST NOT read the value).
    for body in [
        "topic=a&data=p1&private=on",
        "topic=a&data=p2&private=off",
        "topic=a&data=p3&private",
    ] {
        assert_eq!(post(&server, &bearer(&tok), body).status, 200, "{body}");
    }
    // Fields the spec does not define, and bad values of those it does: 400 naming them.
    for (body, why) in [
        ("topic=a&data=x&foo=1", "unknown field \"foo\""),
        ("topic=a&data=x&Data=y", "unknown field \"Data\""),
        ("data=x", "missing topic"),
        ("topic=a&data=x&retry=soon", "retry must be digits"),
        ("topic=a&data=x&type=a%0Db", "type"),
    ] {
        let r = post(&server, &bearer(&tok), body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert!(r.text().contains(why), "{body}: {}", r.text());
    }
    // Form only.
    let r = common::request(
        server.addr,
        &format!(
            "POST {HUB} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n{}Content-Length: 24\r\n\r\n{{\"topic\":\"a\",\"data\":\"x\"}}",
            bearer(&tok)
        ),
    );
    assert_eq!(r.status, 415, "{}", r.text());
    let events = st.read_for(WAIT).events.clone();
    let got: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e.kind.as_str(), e.data.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            ("message", "one"),
            ("ping", ""),
            ("message", "p1"),
            ("message", "p2"),
            ("message", "p3")
        ]
    );
    assert_eq!(events[0].id, first);
    let want = b"event: ping\ndata: \n\n";
    assert!(
        st.raw.windows(want.len()).any(|w| w == want),
        "{}",
        st.text()
    );
    assert_eq!(messages(&mut anon, WAIT), ["one"]);
    // /publish keeps its rules: data required, private=off is public, unknown fields ignored.
    let p = |body: &str| common::Publish::form(body).bearer(&tok).answer(server.addr);
    assert_eq!(p("topic=a").0, 400);
    assert_eq!(p("topic=a&data=q&private=off&foo=1").0, 200);
    assert_eq!(messages(&mut anon, WAIT), ["one", "q"]);
}

#[test]
fn the_status_codes_of_the_spec() {
    let server = Server::start(&["--jwt-key", KEY]);
    let exp = now_s() + 600;
    // No token: 401 with a bare Bearer challenge.
    let r = post(&server, "", "topic=a&data=x");
    assert_eq!(r.status, 401);
    assert_eq!(r.header("WWW-Authenticate"), Some("Bearer"));
    // A bad token: 401 invalid_token, on both sides.
    let r = post(&server, &bearer("not.a.token"), "topic=a&data=x");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );
    let st = sub(&server, "match=a", &bearer("not.a.token"));
    assert_eq!(st.status, 401);
    // A good token without the right: 403 insufficient_scope.
    let narrow = sign_access_token(
        KEY.as_bytes(),
        &format!(
            r#"{{"exp":{exp},"authorization_details":[{{"type":"mercure","actions":["publish"],"topics":[{{"match":"a"}}]}}]}}"#
        ),
    );
    assert_eq!(
        post(&server, &bearer(&narrow), "topic=a&data=x").status,
        200
    );
    let r = post(&server, &bearer(&narrow), "topic=b&data=x");
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some("Bearer error=\"insufficient_scope\"")
    );
    // The hub's own namespace is no publisher's, on either endpoint, however it is spelt.
    let tok = all_token();
    for topic in [
        "/.well-known/mercure/subscriptions/Exact/a/b",
        "https://other.example/.well-known/mercure/subscriptions/x",
        "/.well-known/mercure",
        "/a/../.well-known/mercure/x",
        "mercure/subscriptions/x",
    ] {
        let r = post(
            &server,
            &bearer(&tok),
            &format!("topic={}&data=x", q(topic)),
        );
        assert_eq!(r.status, 403, "{topic}: {}", r.text());
        assert!(r.text().contains("namespace"), "{}", r.text());
        let (status, _) = common::Publish::form(&format!("topic={}&data=x", q(topic)))
            .bearer(&tok)
            .answer(server.addr);
        assert_eq!(status, 403, "/publish {topic}");
    }
    for topic in [
        "/.well-known/mercurey",
        "https://example.com/mercure/x",
        "a",
    ] {
        let r = post(
            &server,
            &bearer(&tok),
            &format!("topic={}&data=x", q(topic)),
        );
        assert_eq!(r.status, 200, "{topic}: {}", r.text());
    }
    // Other methods: 405 with the methods the URL allows.
    let r = server.request(&format!(
        "POST {HUB}/x HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    ));
    assert_eq!(r.status, 405);
}

/// The id in the `Last-Event-ID` field of a stream's head.
fn anchor(st: &Stream) -> Option<String> {
    st.head.lines().find_map(|l| {
        l.strip_prefix("Last-Event-ID: ")
            .map(|v| v.trim().to_string())
    })
}

#[test]
fn a_resumed_subscription_says_where_it_resumed_and_earliest_replays_everything() {
    let server = Server::start(&["--jwt-key", KEY]);
    let tok = all_token();
    let publish = |body: &str| {
        let r = post(&server, &bearer(&tok), body);
        assert_eq!(r.status, 200, "{}", r.text());
        r.text()
    };
    let a1 = publish("topic=a&data=a1");
    let _b1 = publish("topic=b&data=b1");
    let secret = publish("topic=a&data=s1&private=on");
    let a2 = publish("topic=a&data=a2");

    // No resume: no field.
    let st = sub(&server, "match=a", "");
    assert_eq!(anchor(&st), None, "{}", st.head);
    // From a retained id, by header or query (the header wins): that id, then what followed.
    let mut st = sub(&server, &format!("match=a&lastEventID={}", q(&a1)), "");
    assert_eq!(anchor(&st).as_deref(), Some(a1.as_str()), "{}", st.head);
    assert_eq!(messages(&mut st, WAIT), ["a2"]);
    let mut st = sub(
        &server,
        "match=a&lastEventID=junk",
        &format!("Last-Event-ID: {a1}\r\n"),
    );
    assert_eq!(anchor(&st).as_deref(), Some(a1.as_str()));
    assert_eq!(messages(&mut st, WAIT), ["a2"]);
    // A private event's id is not disclosed to who may not read it; its reader gets it.
    let mut st = sub(&server, &format!("match=a&lastEventID={}", q(&secret)), "");
    assert_eq!(anchor(&st).as_deref(), Some("earliest"));
    assert_eq!(messages(&mut st, WAIT), ["a2"]);
    let st = sub(
        &server,
        &format!("match=a&lastEventID={}", q(&secret)),
        &bearer(&reader(r#"["a"]"#)),
    );
    assert_eq!(anchor(&st).as_deref(), Some(secret.as_str()));
    // Unknown: the reset as before, and `earliest`.
    let mut st = sub(&server, "match=a&lastEventID=nope-1", "");
    assert_eq!(anchor(&st).as_deref(), Some("earliest"));
    let events = st.read_for(WAIT).events.clone();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].kind, "reset");
    // `earliest`, by query or header: everything retained the selectors select.
    let mut st = sub(&server, "match=a&lastEventID=earliest", "");
    assert_eq!(anchor(&st).as_deref(), Some("earliest"));
    assert_eq!(messages(&mut st, WAIT), ["a1", "a2"]);
    let mut st = sub(
        &server,
        "match=a&match=b",
        &format!("Last-Event-ID: earliest\r\n{}", bearer(&reader(r#"["a"]"#))),
    );
    assert_eq!(messages(&mut st, WAIT), ["a1", "b1", "s1", "a2"]);
    let mut st = common::open(server.addr, "/sse?topic=b&lastEventID=earliest", "");
    assert_eq!(anchor(&st).as_deref(), Some("earliest"));
    assert_eq!(messages(&mut st, WAIT), ["b1"]);
    let st = common::open(
        server.addr,
        &format!("/sse?topic=b&lastEventID={}", q(&a2)),
        "",
    );
    assert_eq!(anchor(&st).as_deref(), Some(a2.as_str()));
    // A publisher's id is the event's id: the answer, the frame and the resume's field.
    let own = publish("topic=a&id=urn%3Abook%3A7&data=a3");
    assert_eq!(own, "urn:book:7");
    publish("topic=a&data=a4");
    let mut st = sub(&server, "match=a", "Last-Event-ID: urn:book:7\r\n");
    assert_eq!(anchor(&st).as_deref(), Some("urn:book:7"));
    assert_eq!(messages(&mut st, WAIT), ["a4"]);
}

#[test]
fn earliest_replays_a_data_dirs_history_after_a_restart() {
    let dir = tempdir();
    let d = dir.to_str().unwrap();
    let first = Server::start(&["--data-dir", d]);
    for i in 0..3 {
        let (status, _) = common::Publish::event("t", &format!("e{i}")).answer(first.addr);
        assert_eq!(status, 200);
    }
    drop(first);
    let server = Server::start(&["--data-dir", d]);
    let mut st = sub(&server, "topic=t&lastEventID=earliest", "");
    assert_eq!(messages(&mut st, WAIT), ["e0", "e1", "e2"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// With `--redis`, `earliest` replays what the shared store holds, not only what this
/// instance's smaller history kept: here the store keeps all 12 events, the history 3.
#[test]
fn earliest_replays_the_shared_store_beyond_the_local_history() {
    let Some(redis) = redis_server::RedisServer::start(&[]) else {
        return;
    };
    let url = redis.url();
    let server = Server::start(&["--redis", &url, "--history-events", "3"]);
    let mut ids = Vec::new();
    for i in 0..12 {
        let (status, id) = common::Publish::event("t", &format!("e{i}")).answer(server.addr);
        assert_eq!(status, 200, "{id}");
        ids.push(id);
    }
    let (status, _) = common::Publish::event("u", "other").answer(server.addr);
    assert_eq!(status, 200);
    let want: Vec<String> = (0..12).map(|i| format!("e{i}")).collect();
    let mut st = sub(&server, "topic=t&lastEventID=earliest", "");
    assert_eq!(anchor(&st).as_deref(), Some("earliest"));
    assert_eq!(messages(&mut st, Duration::from_millis(800)), want);
    assert!(
        st.events.iter().all(|e| e.kind == "message"),
        "{:?}",
        st.events
    );
    // Live after the replay.
    let (status, _) = common::Publish::event("t", "live").answer(server.addr);
    assert_eq!(status, 200);
    assert_eq!(
        messages(&mut st, WAIT).last().map(String::as_str),
        Some("live")
    );
    // A resume from inside the store is exact as before, with no earliest semantics.
    let mut st = sub(&server, &format!("topic=t&lastEventID={}", q(&ids[9])), "");
    assert_eq!(messages(&mut st, WAIT), ["e10", "e11", "live"]);
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "sse-mercure-hub-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn the_page_advertises_the_hub() {
    let server = Server::start(&[]);
    for path in ["/", "/index.html", "/app.js"] {
        let r = server.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(
            r.header("Link"),
            Some("</.well-known/mercure>; rel=\"mercure\""),
            "{path}"
        );
        let etag = r.header("ETag").unwrap().to_string();
        let r = server.request(&format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nIf-None-Match: {etag}\r\n\r\n"
        ));
        assert_eq!(r.status, 304);
        assert!(r.header("Link").is_some(), "{}", r.head);
    }
}

#[test]
fn tokens_by_cookie_query_and_header_in_the_specs_order() {
    let server = Server::start(&["--jwt-key", KEY]);
    let tok = all_token();
    let a = reader(r#"["a"]"#);
    let b = reader(r#"["b"]"#);
    let open = |headers: &str, query: &str| {
        let st = sub(&server, &format!("match=a&match=b{query}"), headers);
        assert_eq!(st.status, 200, "{}", st.head);
        st
    };
    // Both cookie names; the query beats the cookie, the header beats both.
    let mut by_old_cookie = open(&format!("Cookie: x=1; mercureAuthorization={a}\r\n"), "");
    let mut by_new_cookie = open(&format!("Cookie: mercureAccessToken={b}\r\n"), "");
    let mut query_wins = open(
        &format!("Cookie: mercureAuthorization={a}\r\n"),
        &format!("&access_token={b}"),
    );
    let mut header_wins = open(
        &format!("Cookie: mercureAuthorization={a}\r\n{}", bearer(&b)),
        &format!("&authorization={a}"),
    );
    for topic in ["a", "b"] {
        let r = post(
            &server,
            &bearer(&tok),
            &format!("topic={topic}&data={topic}&private=on"),
        );
        assert_eq!(r.status, 200);
    }
    assert_eq!(messages(&mut by_old_cookie, WAIT), ["a"]);
    assert_eq!(messages(&mut by_new_cookie, WAIT), ["b"]);
    assert_eq!(messages(&mut query_wins, WAIT), ["b"]);
    assert_eq!(messages(&mut header_wins, WAIT), ["b"]);
}

#[test]
fn a_publish_authorized_by_cookie_must_name_an_allowed_page() {
    let server = Server::start(&["--jwt-key", KEY, "--cors-origin", "https://app.example"]);
    let tok = all_token();
    let cookie = format!("Cookie: mercureAuthorization={tok}\r\n");
    let try_with = |extra: &str| post(&server, &format!("{cookie}{extra}"), "topic=a&data=x");
    // Neither Origin nor Referer: refused (a cookie alone says nothing of who sent it).
    let r = try_with("");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("cookie"), "{}", r.text());
    for ok in [
        "Origin: https://app.example\r\n",
        "Referer: https://app.example/page?x=1\r\n",
        "Origin: http://x\r\n",
        "Sec-Fetch-Site: same-origin\r\n",
    ] {
        let r = try_with(ok);
        assert_eq!(r.status, 200, "{ok}: {}", r.text());
    }
    for bad in [
        "Origin: https://evil.example\r\n",
        "Referer: https://evil.example/app.example\r\n",
        "Referer: https://app.example.evil.example/\r\n",
        "Origin: null\r\n",
    ] {
        let r = try_with(bad);
        assert_eq!(r.status, 403, "{bad}: {}", r.text());
    }
    // The header's token needs no page (a backend), as before.
    assert_eq!(post(&server, &bearer(&tok), "topic=a&data=x").status, 200);
    // `/publish` reads no cookie (the page keeps a subscriber token there): no token, 401.
    let (status, _) = common::Publish::form("topic=a&data=x")
        .header(&format!("Cookie: mercureAuthorization={tok}"))
        .header("Origin: https://app.example")
        .answer(server.addr);
    assert_eq!(status, 401);
}

#[test]
fn a_credentialed_stream_from_an_allowed_origin_gets_that_origin() {
    let server = Server::start(&[
        "--cors-origin",
        "https://one.example, https://two.example",
        "--cors-origin",
        "https://three.example",
    ]);
    for origin in [
        "https://two.example",
        "https://three.example",
        "https://one.example",
    ] {
        for target in [format!("{HUB}?match=a"), "/sse?topic=a".to_string()] {
            let st = common::open(
                server.addr,
                &target,
                &format!("Origin: {origin}\r\nCookie: mercureAuthorization=x\r\n"),
            );
            assert_eq!(st.status, 200, "{}", st.head);
            let field = |n: &str| {
                st.head
                    .lines()
                    .find_map(|l| l.strip_prefix(n).map(str::to_string))
            };
            assert_eq!(
                field("Access-Control-Allow-Origin: ").as_deref(),
                Some(origin)
            );
            assert_eq!(
                field("Access-Control-Allow-Credentials: ").as_deref(),
                Some("true")
            );
            assert_eq!(field("Vary: ").as_deref(), Some("Origin"));
        }
    }
    // Without --cors-origin any origin may read public streams, never with credentials.
    let open = Server::start(&[]);
    let st = sub(&open, "match=a", "Origin: https://any.example\r\n");
    assert!(
        st.head.contains("Access-Control-Allow-Origin: *"),
        "{}",
        st.head
    );
    assert!(!st.head.contains("Allow-Credentials"), "{}", st.head);
}

/// The conformance suite's negative cases, on the wire: the subscriber gets no event at all
/// (not "an event with another id", which the suite cannot tell apart), while a positive
/// control on the same hub does get its event.
#[test]
fn the_suites_negative_cases_deliver_nothing() {
    let server = Server::start(&["--jwt-key", KEY]);
    let tok = all_token();
    struct Case {
        name: &'static str,
        query: String,
        topics: &'static [&'static str],
        private: bool,
    }
    let cases = [
        Case {
            name: "nonmatching raw string",
            query: "match=another-name".into(),
            topics: &["will-not-match"],
            private: false,
        },
        Case {
            name: "nonmatching URI",
            query: format!("match={}", q("https://example.net/foo/another-name")),
            topics: &["https://example.net/foo/will-not-match"],
            private: false,
        },
        Case {
            name: "nonmatching URL pattern",
            query: format!("match_urlpattern={}", q("https://example.net/bar/:var")),
            topics: &["https://example.net/foo/will-not-match"],
            private: false,
        },
        Case {
            name: "nonmatching URI template (draft-07)",
            query: format!("topic={}", q("https://example.net/bar/{var}")),
            topics: &["https://example.net/foo/will-not-match}"],
            private: false,
        },
        Case {
            name: "private raw string",
            query: "match=r1".into(),
            topics: &["r1"],
            private: true,
        },
        Case {
            name: "private URI",
            query: format!("match={}", q("https://example.net/foo/r2")),
            topics: &["https://example.net/foo/r2"],
            private: true,
        },
        Case {
            name: "private URL pattern",
            query: format!("match_urlpattern={}", q("https://example.net/foo/:random")),
            topics: &["https://example.net/foo/r3"],
            private: true,
        },
        Case {
            name: "private URI template (draft-07)",
            query: format!("topic={}", q("https://example.net/foo/{random}")),
            topics: &["https://example.net/foo/r4"],
            private: true,
        },
    ];
    for case in &cases {
        let mut st = sub(&server, &case.query, "");
        assert_eq!(st.status, 200, "{}: {}", case.name, st.head);
        let mut control = sub(&server, "match=control", "");
        let mut body: String = case
            .topics
            .iter()
            .map(|t| format!("topic={}&", q(t)))
            .collect();
        body.push_str("data=x");
        if case.private {
            body.push_str("&private=on");
        }
        let r = post(&server, &bearer(&tok), &body);
        assert_eq!(r.status, 200, "{}: {}", case.name, r.text());
        assert_eq!(
            post(&server, &bearer(&tok), "topic=control&data=c").status,
            200
        );
        assert_eq!(messages(&mut control, WAIT), ["c"], "{}", case.name);
        st.read_for(Duration::from_millis(100));
        assert!(st.events.is_empty(), "{}: {:?}", case.name, st.events);
        assert!(
            !st.raw.windows(5).any(|w| w == b"data:"),
            "{}: {}",
            case.name,
            st.text()
        );
    }
}

/// Every path's `405` names what that path serves: the methods no path serves (PUT, DELETE,
/// PATCH, TRACE) reach the router, which answers with the path's own `Allow` (the hub's URL
/// and `/publish` take GET, HEAD, POST and OPTIONS, the streams a preflight too), and a POST
/// or a preflight where it is not served says the same list. Every other path keeps `GET, HEAD`.
#[test]
fn every_405_names_the_methods_its_path_serves() {
    let server = Server::start(&["--jwt-key", KEY, "--subscriptions"]);
    let cases: &[(&str, &str, &str)] = &[
        ("PUT", HUB, "GET, HEAD, POST, OPTIONS"),
        ("DELETE", HUB, "GET, HEAD, POST, OPTIONS"),
        (
            "PATCH",
            "/.well-known/mercure?topic=a",
            "GET, HEAD, POST, OPTIONS",
        ),
        ("PUT", "/publish", "GET, HEAD, POST, OPTIONS"),
        ("DELETE", "/publish", "GET, HEAD, POST, OPTIONS"),
        ("PATCH", "/sse?topic=a", "GET, HEAD, OPTIONS"),
        ("DELETE", "/sse", "GET, HEAD, OPTIONS"),
        ("POST", "/sse", "GET, HEAD, OPTIONS"),
        ("TRACE", "/metrics/stream", "GET, HEAD, OPTIONS"),
        ("POST", "/metrics/stream", "GET, HEAD, OPTIONS"),
        ("PUT", "/", "GET, HEAD"),
        ("POST", "/", "GET, HEAD"),
        ("OPTIONS", "/", "GET, HEAD"),
        ("DELETE", "/metrics", "GET, HEAD"),
        ("PUT", "/.well-known/mercure/subscriptions", "GET, HEAD"),
    ];
    for (method, path, allow) in cases {
        // A body on a method no path serves is never read: the answer comes from the head.
        let len = if matches!(*method, "OPTIONS" | "POST") {
            0
        } else {
            5
        };
        let r = server.request(&format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n"
        ));
        assert_eq!(r.status, 405, "{method} {path}: {}", r.head);
        assert_eq!(r.header("allow"), Some(*allow), "{method} {path}");
        assert_eq!(r.header("connection"), Some("close"), "{method} {path}");
    }
    // CONNECT's authority form names no path: the default list.
    let r = server.request("CONNECT x:443 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    // The list is true: each method it names is served on that path (no 405, no 501).
    for (method, path) in [
        ("GET", "/publish"),
        ("HEAD", "/publish"),
        ("HEAD", "/.well-known/mercure?topic=a"),
    ] {
        let r = server.request(&format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ));
        assert_eq!(r.status, 200, "{method} {path}: {}", r.head);
    }
}

/// A field over its length limit is `413 Content Too Large` on the hub's URL, as draft-08 says
/// ("Hubs SHOULD apply implementation-defined maximums to the size of the request body and to
/// the length of individual fields. Requests exceeding any such limit MUST be rejected with a
/// 413"): an `id` over 256 bytes, a topic over 256, a `type` over 64. Nothing is published.
/// `/publish` keeps its `400`; at the limit both accept.
#[test]
fn a_field_over_its_limit_is_413_on_the_hubs_url() {
    let server = Server::start(&["--jwt-key", KEY]);
    let tok = all_token();
    let mut st = sub(&server, "topic=*", &bearer(&tok));
    assert_eq!(st.status, 200);
    let long_id = "i".repeat(257);
    let long_topic = "t".repeat(257);
    let long_type = "y".repeat(65);
    for body in [
        format!("topic=a&data=x&id={long_id}"),
        format!("topic={long_topic}&data=x"),
        format!("topic=a&data=x&type={long_type}"),
    ] {
        let r = post(&server, &bearer(&tok), &body);
        assert_eq!(r.status, 413, "{}: {}", &body[..20], r.text());
        assert!(r.text().contains("longer than"), "{}", r.text());
        let (status, _) = common::Publish::form(&body)
            .bearer(&tok)
            .answer(server.addr);
        assert_eq!(status, 400, "/publish {}", &body[..20]);
    }
    assert!(messages(&mut st, WAIT).is_empty());
    // At the limits: accepted on both.
    let at = format!(
        "topic={}&data=x&type={}&id={}",
        "t".repeat(256),
        "y".repeat(64),
        "i".repeat(256)
    );
    assert_eq!(post(&server, &bearer(&tok), &at).status, 200);
    let at2 = at.replace("id=iii", "id=jjj");
    let (status, _) = common::Publish::form(&at2).bearer(&tok).answer(server.addr);
    assert_eq!(status, 200);
}

/// With `--redis`, a resume older than this instance's history replays from the shared store;
/// its answer must name the id it resumes after (draft-07: MUST), as memory and the data dir
/// do, not `earliest`, since the replay does start right after that event.
#[test]
fn a_deep_redis_resume_names_the_id_it_resumes_after() {
    let Some(redis) = redis_server::RedisServer::start(&[]) else {
        return;
    };
    let url = redis.url();
    let server = Server::start(&["--redis", &url, "--history-events", "3"]);
    let mut ids = Vec::new();
    for i in 0..12 {
        let (status, id) = common::Publish::event("t", &format!("e{i}")).answer(server.addr);
        assert_eq!(status, 200, "{id}");
        ids.push(id.trim().to_string());
    }
    let mut st = sub(&server, &format!("topic=t&lastEventID={}", q(&ids[4])), "");
    assert_eq!(anchor(&st).as_deref(), Some(ids[4].as_str()));
    let want: Vec<String> = (5..12).map(|i| format!("e{i}")).collect();
    assert_eq!(messages(&mut st, Duration::from_millis(800)), want);
}

/// The same with `--redis` for the other deep resumes: by a publisher id (its entry found by
/// the store's index), after a private entry (named to its reader only), after an entry the
/// store no longer has (`earliest`, and the `reset` says so), after one never issued.
#[test]
fn a_deep_redis_resume_names_only_what_it_may_and_what_the_store_still_has() {
    let Some(redis) = redis_server::RedisServer::start(&[]) else {
        return;
    };
    let url = redis.url();
    let server = Server::start(&["--redis", &url, "--history-events", "3", "--jwt-key", KEY]);
    let tok = all_token();
    let publish = |body: &str| {
        let r = post(&server, &bearer(&tok), body);
        assert_eq!(r.status, 200, "{}", r.text());
        r.text().trim().to_string()
    };
    let own = publish("topic=t&id=urn%3Abook%3A1&data=e0");
    let secret = publish("topic=t&data=s0&private=on");
    for i in 1..10 {
        publish(&format!("topic=t&data=e{i}"));
    }
    let after_secret: Vec<String> = (1..10).map(|i| format!("e{i}")).collect();
    // By the publisher's id, older than this instance's history: that id.
    let mut st = sub(&server, "topic=t", &format!("Last-Event-ID: {own}\r\n"));
    assert_eq!(anchor(&st).as_deref(), Some("urn:book:1"), "{}", st.head);
    // (s0 is private: not for an anonymous subscriber.)
    assert_eq!(messages(&mut st, Duration::from_millis(800)), after_secret);
    // After a private entry: not named to who may not read it, named to its reader; the
    // replay is the same for both apart from the private event.
    let mut st = sub(&server, &format!("topic=t&lastEventID={}", q(&secret)), "");
    assert_eq!(anchor(&st).as_deref(), Some("earliest"), "{}", st.head);
    assert_eq!(messages(&mut st, Duration::from_millis(800)), after_secret);
    let mut st = sub(
        &server,
        &format!("topic=t&lastEventID={}", q(&secret)),
        &bearer(&reader(r#"["t"]"#)),
    );
    assert_eq!(anchor(&st).as_deref(), Some(secret.as_str()), "{}", st.head);
    assert_eq!(messages(&mut st, Duration::from_millis(800)), after_secret);
    // A store id of the right form that no entry has (older than the store's first): a gap,
    // so `earliest` and the `reset`.
    let mut st = sub(&server, "topic=t&lastEventID=1-0", "");
    assert_eq!(anchor(&st).as_deref(), Some("earliest"), "{}", st.head);
    let first = st.read_for(Duration::from_millis(800)).events.clone();
    assert_eq!(
        first.first().map(|e| e.kind.as_str()),
        Some("reset"),
        "{first:?}"
    );
    // A publisher id no entry has: `earliest`, and the reset of an unknown id.
    let mut st = sub(&server, "topic=t", "Last-Event-ID: urn:book:404\r\n");
    assert_eq!(anchor(&st).as_deref(), Some("earliest"), "{}", st.head);
    let events = st.read_for(Duration::from_millis(800)).events.clone();
    assert_eq!(
        events.first().map(|e| e.kind.as_str()),
        Some("reset"),
        "{events:?}"
    );
    assert!(events[0].data.contains("unknown"), "{events:?}");
}
