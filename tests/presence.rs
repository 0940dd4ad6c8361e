//! Presence (`--subscriptions`) over real sockets: subscription events when a subscriber comes
//! and goes, read only by tokens whose subscribe claims select them (live and on resume), the
//! subscriptions API (JSON-LD, `lastEventID` for a gapless fetch-then-subscribe, 401/403/404),
//! and nothing of it with the flag off; with `--redis`, presence across instances and a
//! SIGKILLed instance's subscribers leaving within the bound.

mod common;
#[path = "common/redis.rs"]
mod redis_server;

use common::{form_escape, now_s, Publish, Server, Stream, KEY};
use serde_json::Value;
use sse_server::hub::jwt::sign_hs256;
use std::time::{Duration, Instant};

/// The selector that reads every subscription event (Mercure's documented claim).
const ALL: &str = "/.well-known/mercure/subscriptions{/topic}{/subscriber}";

fn token(claims: &str) -> String {
    sign_hs256(KEY.as_bytes(), claims)
}

/// A subscriber token allowed `subscribe` (a JSON array), with `payload` if given.
fn sub_token(subscribe: &str, payload: Option<&str>) -> String {
    let payload = payload.map_or(String::new(), |p| format!(r#","payload":{p}"#));
    token(&format!(
        r#"{{"mercure":{{"subscribe":{subscribe}{payload}}},"exp":{}}}"#,
        now_s() + 600
    ))
}

fn watcher_token() -> String {
    sub_token(&format!(r#"["{ALL}"]"#), None)
}

fn server(extra: &[&str]) -> Server {
    let mut args = vec![
        "--jwt-key",
        KEY,
        "--subscriptions",
        "--publish-token",
        "pub",
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}\r\n")
}

/// Subscribes to every subscription event (the template), with `token` if any and `headers`.
fn watch(server: &Server, token: Option<&str>, headers: &str) -> Stream {
    let auth = token.map_or(String::new(), bearer);
    server.subscribe(
        &format!("topic={}", form_escape(ALL)),
        &format!("{auth}{headers}"),
    )
}

/// `GET path` with `token` as bearer.
fn api(server: &Server, path: &str, token: Option<&str>) -> common::Response {
    let auth = token.map_or(String::new(), bearer);
    server.request(&format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\n{auth}Connection: close\r\n\r\n"
    ))
}

fn json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("{e}: {s:?}"))
}

/// Percent-encodes as the spec's expansion does (unreserved kept).
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn id_of(topic: &str, subscriber: &str) -> String {
    format!(
        "/.well-known/mercure/subscriptions/{}/{}",
        enc(topic),
        enc(subscriber)
    )
}

const WAIT: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(400);

#[test]
fn subscription_events_reach_only_tokens_that_may_read_them_live_and_on_resume() {
    let server = server(&[]);
    let mut watcher = watch(&server, Some(&watcher_token()), "");
    let nosy_token = sub_token(r#"["books/1","books/2"]"#, None);
    let mut nosy = watch(&server, Some(&nosy_token), "");
    let mut anonymous = watch(&server, None, "");
    // The three watchers' own subscriptions announce themselves to the watcher first.
    let own = watcher.take(3, WAIT);
    assert_eq!(own.len(), 3, "{own:?}");
    assert!(own.iter().all(|e| json(&e.data)["topic"] == ALL), "{own:?}");

    let joiner_token = sub_token(r#"["books/1"]"#, Some(r#"{"name":"ann"}"#));
    let mut joiner = server.subscribe(
        "topic=books/1&topic=books/2&topic=books/1",
        &bearer(&joiner_token),
    );
    let joined = watcher.take(2, WAIT);
    assert_eq!(
        joined.len(),
        2,
        "one event per distinct selector: {joined:?}"
    );
    let docs: Vec<Value> = joined.iter().map(|e| json(&e.data)).collect();
    let subscriber = docs[0]["subscriber"].as_str().unwrap().to_string();
    assert!(
        subscriber.starts_with("urn:uuid:") && subscriber.len() == 45,
        "{subscriber}"
    );
    for (doc, topic) in docs.iter().zip(["books/1", "books/2"]) {
        assert_eq!(doc["@context"], "https://mercure.rocks/");
        assert_eq!(doc["type"], "Subscription");
        assert_eq!(doc["topic"], topic);
        assert_eq!(doc["subscriber"], subscriber.as_str());
        assert_eq!(doc["active"], true);
        assert_eq!(doc["payload"], json(r#"{"name":"ann"}"#));
        assert_eq!(doc["id"], id_of(topic, &subscriber).as_str());
    }
    // An event published on the subscribed topic still reaches the joiner.
    Publish::event("books/1", "hello")
        .bearer("pub")
        .id(server.addr);
    joiner.expect_until(WAIT, |evs| evs.iter().any(|e| e.data == "hello"));
    drop(joiner);
    let left = watcher.take(2, WAIT);
    for (e, topic) in left.iter().zip(["books/1", "books/2"]) {
        let doc = json(&e.data);
        assert_eq!(doc["active"], false, "{e:?}");
        assert_eq!(doc["topic"], topic);
        assert_eq!(doc["subscriber"], subscriber.as_str());
        assert_eq!(doc["payload"], json(r#"{"name":"ann"}"#));
    }
    // Live: a token without the presence claims, and no token, saw none of it.
    assert!(nosy.quiet_for(QUIET).is_empty(), "{:?}", nosy.events);
    assert!(anonymous.quiet_for(QUIET).is_empty());
    // On resume: from before the first join, the nosy token still reads nothing, the watcher's
    // token reads them all again.
    let first = &own[0].id;
    let mut nosy_again = watch(
        &server,
        Some(&nosy_token),
        &format!("Last-Event-ID: {first}\r\n"),
    );
    assert!(
        nosy_again.quiet_for(QUIET).is_empty(),
        "{:?}",
        nosy_again.events
    );
    let mut anonymous_again = watch(&server, None, &format!("Last-Event-ID: {first}\r\n"));
    assert!(anonymous_again.quiet_for(QUIET).is_empty());
    let mut watcher_again = watch(
        &server,
        Some(&watcher_token()),
        &format!("Last-Event-ID: {first}\r\n"),
    );
    let replayed = watcher_again.take(2 + 2 + 2 + 1, WAIT);
    let actives: Vec<bool> = replayed
        .iter()
        .filter(|e| json(&e.data)["subscriber"] == subscriber.as_str())
        .map(|e| json(&e.data)["active"].as_bool().unwrap())
        .collect();
    assert_eq!(actives, [true, true, false, false], "{replayed:?}");
}

#[test]
fn the_subscriptions_api_lists_what_is_active_with_a_gapless_last_event_id() {
    let server = server(&[]);
    let watcher = watcher_token();
    let joiner_token = sub_token(r#"["books/1"]"#, Some(r#"{"name":"bob"}"#));
    let joiner = server.subscribe("topic=books/1", &bearer(&joiner_token));
    let base = "/.well-known/mercure/subscriptions";

    // Who may read it.
    let r = api(&server, base, None);
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.header("WWW-Authenticate").is_some());
    assert_eq!(api(&server, base, Some("not.a.token")).status, 401);
    let r = api(&server, base, Some(&sub_token(r#"["books/1"]"#, None)));
    assert_eq!(r.status, 403, "{}", r.text());

    // The collection.
    let r = api(&server, base, Some(&watcher));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("Content-Type"), Some("application/ld+json"));
    let all = json(&r.text());
    assert_eq!(all["@context"], "https://mercure.rocks/");
    assert_eq!(all["id"], base);
    assert_eq!(all["type"], "Subscriptions");
    let subs = all["subscriptions"].as_array().unwrap();
    assert_eq!(subs.len(), 1, "{all}");
    let subscriber = subs[0]["subscriber"].as_str().unwrap().to_string();
    assert_eq!(subs[0]["topic"], "books/1");
    assert_eq!(subs[0]["active"], true);
    assert_eq!(subs[0]["payload"]["name"], "bob");
    assert_eq!(subs[0]["id"], id_of("books/1", &subscriber).as_str());
    let last = all["lastEventID"].as_str().unwrap().to_string();
    assert_ne!(last, "earliest", "the join event was stored: {all}");
    // The ETag is that id: a client's copy is current until the next event.
    let etag = r.header("ETag").unwrap().to_string();
    assert_eq!(etag, format!("\"{last}\""));
    let again = server.request(&format!(
        "GET {base} HTTP/1.1\r\nHost: test\r\n{}If-None-Match: {etag}\r\nConnection: close\r\n\r\n",
        bearer(&watcher)
    ));
    assert_eq!(again.status, 304, "{}", again.text());

    // One topic's, one subscription, an unknown one.
    let by_topic = json(
        &api(
            &server,
            &format!("{base}/{}", enc("books/1")),
            Some(&watcher),
        )
        .text(),
    );
    assert_eq!(by_topic["subscriptions"].as_array().unwrap().len(), 1);
    let none = json(
        &api(
            &server,
            &format!("{base}/{}", enc("books/2")),
            Some(&watcher),
        )
        .text(),
    );
    assert_eq!(none["subscriptions"].as_array().unwrap().len(), 0);
    let one_path = id_of("books/1", &subscriber);
    let one = api(&server, &one_path, Some(&watcher));
    assert_eq!(one.status, 200);
    let one = json(&one.text());
    assert_eq!(one["type"], "Subscription");
    assert_eq!(one["@context"], "https://mercure.rocks/");
    assert_eq!(one["lastEventID"], last.as_str());
    let unknown = id_of("books/1", "urn:uuid:00000000-0000-4000-8000-000000000000");
    assert_eq!(api(&server, &unknown, Some(&watcher)).status, 404);

    // A token that may read the collection's path but none of the subscriptions sees none.
    let narrow = sub_token(&format!(r#"["{base}"]"#), None);
    let r = api(&server, base, Some(&narrow));
    assert_eq!(r.status, 200);
    assert_eq!(
        json(&r.text())["subscriptions"].as_array().unwrap().len(),
        0
    );
    assert_eq!(api(&server, &one_path, Some(&narrow)).status, 403);

    // Fetch, then subscribe from lastEventID: what happened in between arrives.
    let newcomer = server.subscribe("topic=books/9", &bearer(&sub_token("[]", None)));
    let mut stream = watch(
        &server,
        Some(&watcher),
        &format!("Last-Event-ID: {last}\r\n"),
    );
    stream.expect_until(WAIT, |evs| {
        evs.iter()
            .any(|e| json(&e.data)["topic"] == "books/9" && json(&e.data)["active"] == true)
    });
    drop(newcomer);

    // Gone: the list follows.
    drop(joiner);
    let deadline = Instant::now() + WAIT;
    loop {
        let all = json(&api(&server, base, Some(&watcher)).text());
        let topics: Vec<&str> = all["subscriptions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["topic"].as_str().unwrap())
            .collect();
        if topics == [ALL] {
            break;
        }
        assert!(Instant::now() < deadline, "still {all}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(api(&server, &one_path, Some(&watcher)).status, 404);
}

#[test]
fn nobody_may_publish_in_the_presence_namespace() {
    let server = server(&[]);
    let forged = format!(
        "topic={}&data=x",
        form_escape(&id_of("books/1", "urn:uuid:x"))
    );
    let (status, body) = Publish::form(&forged).bearer("pub").answer(server.addr);
    assert_eq!(status, 403, "{body}");
    // Not with the flag off either.
    let plain = Server::start(&["--publish-token", "pub"]);
    let (status, _) = Publish::form(&forged).bearer("pub").answer(plain.addr);
    assert_eq!(status, 403);
}

#[test]
fn presence_is_off_by_default_and_needs_a_key() {
    let server = Server::start(&["--jwt-key", KEY]);
    let base = "/.well-known/mercure/subscriptions";
    assert_eq!(api(&server, base, Some(&watcher_token())).status, 404);
    let mut w = watch(&server, Some(&watcher_token()), "");
    let _joiner = server.subscribe("topic=books/1", "");
    assert!(w.quiet_for(QUIET).is_empty());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sse-server"))
        .args(["--subscriptions", "--port", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--subscriptions needs --jwt-key"), "{err}");
}

/// Polls `path` on `server` until `done(the answer's JSON)`, within `WAIT`.
fn api_until(server: &Server, path: &str, token: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = api(server, path, Some(token));
        assert_eq!(r.status, 200, "{}", r.text());
        let v = json(&r.text());
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{path}: still {v}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn topics_listed(v: &Value) -> Vec<String> {
    let mut t: Vec<String> = v["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["topic"].as_str().unwrap().to_string())
        .collect();
    t.sort();
    t
}

#[test]
fn presence_spans_instances_on_redis_and_a_killed_instance_leaves_within_the_bound() {
    let Some(redis) = redis_server::RedisServer::start(&[]) else {
        return;
    };
    let url = redis.url();
    let mut a = server(&["--redis", &url, "--threads", "2"]);
    let b = server(&["--redis", &url, "--threads", "2"]);
    let watcher = watcher_token();
    let mut on_b = watch(&b, Some(&watcher), "");
    let nosy_token = sub_token(r#"["room"]"#, None);
    let mut nosy_on_b = watch(&b, Some(&nosy_token), "");
    let joiner_token = sub_token(r#"["room"]"#, Some(r#"{"name":"cy"}"#));
    let _joiner = a.subscribe("topic=room", &bearer(&joiner_token));
    // The joiner on A is announced to the watcher on B, through the shared log.
    let joined = on_b.expect_until(WAIT, |evs| {
        evs.iter()
            .any(|e| json(&e.data)["topic"] == "room" && json(&e.data)["active"] == true)
    });
    let doc = json(
        &joined
            .iter()
            .find(|e| e.data.contains("\"room\""))
            .unwrap()
            .data,
    );
    let subscriber = doc["subscriber"].as_str().unwrap().to_string();
    assert_eq!(doc["payload"]["name"], "cy");
    // (The log's first entry is its start mark, a `reset` for whoever crosses it.)
    let first_id = on_b
        .events
        .iter()
        .find(|e| e.kind != "reset")
        .unwrap()
        .id
        .clone();
    // Each instance's API lists both instances' subscriptions.
    let base = "/.well-known/mercure/subscriptions";
    let want = |v: &Value| topics_listed(v) == [ALL, ALL, "room"];
    api_until(&a, base, &watcher, want);
    api_until(&b, base, &watcher, want);

    // A dies without a word: B's API drops its subscriber and the event arrives, in time.
    let killed = Instant::now();
    a.child.kill().unwrap();
    let _ = a.child.wait();
    on_b.expect_until(Duration::from_secs(15), |evs| {
        evs.iter().any(|e| {
            let d = json(&e.data);
            d["subscriber"] == subscriber.as_str() && d["active"] == false
        })
    });
    let took = killed.elapsed();
    let left = on_b
        .events
        .iter()
        .map(|e| json(&e.data))
        .find(|d| d["subscriber"] == subscriber.as_str() && d["active"] == false)
        .unwrap();
    assert_eq!(left["topic"], "room");
    assert_eq!(left["payload"]["name"], "cy");
    eprintln!("a SIGKILLed instance's subscriber left after {took:?}");
    assert!(
        took <= Duration::from_secs(8),
        "the bound is about 7 s (key TTL 5 s, a sweep a second, the log): {took:?}"
    );
    api_until(&b, base, &watcher, |v| topics_listed(v) == [ALL, ALL]);
    // One active:false per subscription, whichever instance swept.
    on_b.read_for(Duration::from_millis(1500));
    let lefts = on_b
        .events
        .iter()
        .filter(|e| e.data.contains(&subscriber) && e.data.contains("\"active\":false"))
        .count();
    assert_eq!(lefts, 1);

    // The private rule on every Redis path: live, and a replay from the log (an instance whose
    // own history holds two events, so a resume from the first is read back from Redis).
    // (Whoever was subscribed when the log was created also got its start mark, a `reset`.)
    nosy_on_b.read_for(QUIET);
    assert!(
        nosy_on_b.events.iter().all(|e| e.kind == "reset"),
        "{:?}",
        nosy_on_b.events
    );
    // (C runs without --subscriptions: its own subscribers' events would push the backfill
    // out of its two-event history while the replay runs.)
    let c = Server::start(&[
        "--jwt-key",
        KEY,
        "--redis",
        &url,
        "--threads",
        "1",
        "--history-events",
        "2",
    ]);
    let from = format!("Last-Event-ID: {first_id}\r\n");
    let mut nosy_on_c = watch(&c, Some(&nosy_token), &from);
    assert!(
        nosy_on_c.quiet_for(QUIET).is_empty(),
        "{:?}",
        nosy_on_c.events
    );
    let mut watcher_on_c = watch(&c, Some(&watcher), &from);
    watcher_on_c.expect_until(WAIT, |evs| {
        evs.iter()
            .any(|e| e.data.contains(&subscriber) && e.data.contains("\"active\":false"))
    });
    assert!(watcher_on_c.events.iter().all(|e| e.kind != "reset"));
}

#[test]
fn the_mercure_endpoint_s_subscriptions_are_announced_too() {
    let server = server(&[]);
    let mut watcher = watch(&server, Some(&watcher_token()), "");
    watcher.take(1, WAIT);
    let joiner_token = sub_token(r#"["books/7"]"#, Some(r#"{"via":"mercure"}"#));
    let target = format!(
        "/.well-known/mercure?match={}&matchURLPattern={}",
        form_escape("books/7"),
        form_escape("https://example.com/books/:id")
    );
    let joiner = common::open(server.addr, &target, &bearer(&joiner_token));
    assert_eq!(joiner.status, 200, "{}", joiner.head);
    let joined = watcher.take(2, WAIT);
    let mut topics: Vec<String> = joined
        .iter()
        .map(|e| json(&e.data))
        .inspect(|d| {
            assert_eq!(d["active"], true);
            assert_eq!(d["payload"]["via"], "mercure");
        })
        .map(|d| d["topic"].as_str().unwrap().to_string())
        .collect();
    topics.sort();
    assert_eq!(topics, ["books/7", "https://example.com/books/:id"]);
    drop(joiner);
    let left = watcher.take(2, WAIT);
    assert!(
        left.iter().all(|e| json(&e.data)["active"] == false),
        "{left:?}"
    );
}

/// The subscriptions API takes its token where a stream does, in Mercure's order: the
/// `Authorization` header, else the query (`authorization=` or `access_token=`), else the
/// cookie. A page holding a cookie for its own topics and asking with a watcher token in the
/// query is answered by the query's token.
#[test]
fn the_subscriptions_api_reads_tokens_in_the_hubs_order() {
    let server = server(&[]);
    let narrow = sub_token(r#"["chat/1"]"#, None);
    let path = "/.well-known/mercure/subscriptions";
    for name in ["authorization", "access_token"] {
        let r = server.request(&format!(
            "GET {path}?{name}={} HTTP/1.1\r\nHost: test\r\nCookie: mercureAuthorization={narrow}\r\nConnection: close\r\n\r\n",
            watcher_token()
        ));
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        assert_eq!(json(&r.text())["id"], path);
    }
    // The header still comes first: a narrow one is refused whatever the query says.
    let r = server.request(&format!(
        "GET {path}?authorization={} HTTP/1.1\r\nHost: test\r\n{}Connection: close\r\n\r\n",
        watcher_token(),
        bearer(&narrow)
    ));
    assert_eq!(r.status, 403, "{}", r.text());
    // The cookie alone still serves.
    let r = server.request(&format!(
        "GET {path} HTTP/1.1\r\nHost: test\r\nCookie: mercureAuthorization={}\r\nConnection: close\r\n\r\n",
        watcher_token()
    ));
    assert_eq!(r.status, 200, "{}", r.text());
}
