//! Private topics over real sockets: the matrix of public/private events against every kind of
//! token, live and on resume; a stream ended at its token's `exp`; publisher tokens restricted
//! to a topic.

mod common;

use common::{now_s, Publish, Server, Stream, KEY};
use sse_server::hub::jwt::sign_hs256;
use std::time::{Duration, Instant};

fn token(claims: &str) -> String {
    sign_hs256(KEY.as_bytes(), claims)
}

fn sub_token(topics: &str, exp: u64) -> String {
    token(&format!(
        r#"{{"mercure":{{"subscribe":{topics}}},"exp":{exp}}}"#
    ))
}

fn server() -> Server {
    Server::start(&[
        "--jwt-key",
        KEY,
        "--private-topics",
        "secret/*",
        "--publish-token",
        "pub",
    ])
}

/// Publishes a form `body` with `auth` as its bearer token; (status, body).
fn publish(server: &Server, auth: &str, body: &str) -> (u16, String) {
    let r = Publish::form(body).bearer(auth).send(server.addr);
    (r.status, r.text())
}

/// Opens `GET /sse?{query}` with `headers`, whatever its status.
fn open(server: &Server, query: &str, headers: &str) -> Stream {
    common::open(server.addr, &format!("/sse?{query}"), headers)
}

/// The data of every event received within `wait` (and before it).
fn datas(st: &mut Stream, wait: Duration) -> Vec<String> {
    st.read_for(wait).datas()
}

#[test]
fn private_events_reach_only_tokens_that_may_read_them_live_and_on_resume() {
    let server = server();
    let exp = now_s() + 600;
    let right = sub_token(r#"["secret/1","chat/1"]"#, exp);
    let wrong = sub_token(r#"["secret/2"]"#, exp);
    let expired = sub_token(r#"["secret/1"]"#, now_s() - 3600);
    let none_alg = {
        // {"alg":"none"} with the right claims and no signature.
        let b64 = |s: &str| {
            use std::fmt::Write;
            // base64url without padding, by hand for the test (no dependency).
            const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let b = s.as_bytes();
            let mut out = String::new();
            for c in b.chunks(3) {
                let n = (u32::from(c[0]) << 16)
                    | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                    | u32::from(*c.get(2).unwrap_or(&0));
                for i in 0..=c.len() {
                    let _ = out.write_char(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                }
            }
            out
        };
        format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&format!(
                r#"{{"mercure":{{"subscribe":["*"]}},"exp":{exp}}}"#
            ))
        )
    };
    let bad_sig = {
        let mut t = right.clone();
        let last = t.pop().unwrap();
        t.push(if last == 'A' { 'B' } else { 'A' });
        t
    };
    // Bad tokens are refused outright, with nothing but the standard challenge.
    for (name, t) in [
        ("expired", &expired),
        ("alg none", &none_alg),
        ("bad signature", &bad_sig),
    ] {
        let Stream { status, head, .. } = open(
            &server,
            "topic=secret/1",
            &format!("Authorization: Bearer {t}\r\n"),
        );
        assert_eq!(status, 401, "{name}");
        assert!(
            head.contains("WWW-Authenticate: Bearer error=\"invalid_token\"\r\n"),
            "{name}: {head}"
        );
    }
    // Live: three subscribers to secret/1 and chat/1, each token given another way.
    let q = "topic=secret/1&topic=chat/1";
    let mut anon = server.subscribe(q, "");
    let mut wrong_s = server.subscribe(
        q,
        &format!("Cookie: theme=dark; mercureAuthorization={wrong}\r\n"),
    );
    let mut right_s = server.subscribe(&format!("{q}&authorization={right}"), "");
    let mut star = server.subscribe("topic=*", &format!("Authorization: Bearer {right}\r\n"));
    let (st, first_id) = publish(&server, "pub", "topic=chat/1&data=public");
    assert_eq!(st, 200);
    // Private by --private-topics, and by the publisher's flag.
    assert_eq!(publish(&server, "pub", "topic=secret/1&data=s1").0, 200);
    assert_eq!(
        publish(&server, "pub", "topic=chat/1&data=c1&private=on").0,
        200
    );
    let wait = Duration::from_millis(300);
    assert_eq!(datas(&mut anon, wait), ["public"]);
    assert_eq!(datas(&mut wrong_s, wait), ["public"]);
    assert_eq!(datas(&mut right_s, wait), ["public", "s1", "c1"]);
    assert_eq!(datas(&mut star, wait), ["public", "s1", "c1"]);
    // Resume from before everything: the same rule, never a private event replayed to a
    // token that may not read it.
    let (epoch, _) = first_id.trim_end().rsplit_once('-').unwrap();
    let before_all = format!("{epoch}-0");
    let replay = |headers: String| {
        let mut s = server.subscribe("topic=secret/1&topic=chat/1", &headers);
        datas(&mut s, wait)
    };
    assert_eq!(
        replay(format!("Last-Event-ID: {before_all}\r\n")),
        ["public"]
    );
    assert_eq!(
        replay(format!(
            "Last-Event-ID: {before_all}\r\nCookie: mercureAuthorization={wrong}\r\n"
        )),
        ["public"]
    );
    assert_eq!(
        replay(format!(
            "Last-Event-ID: {before_all}\r\nAuthorization: Bearer {right}\r\n"
        )),
        ["public", "s1", "c1"]
    );
}

#[test]
fn a_stream_ends_at_its_tokens_expiry_with_a_retry() {
    let server = Server::start(&["--jwt-key", KEY, "--jwt-leeway-ms", "0"]);
    let exp = now_s() + 2;
    let t = sub_token(r#"["a"]"#, exp);
    let mut s = open(
        &server,
        "topic=a",
        &format!("Authorization: Bearer {t}\r\n"),
    );
    assert_eq!(s.status, 200);
    let start = Instant::now();
    s.read_until_raw(Duration::from_secs(5), b"retry: ");
    let text = s.text();
    assert!(text.contains("retry: "), "{text}");
    let elapsed = start.elapsed();
    assert!(elapsed <= Duration::from_millis(3100), "{elapsed:?}");
    // And then the server closes.
    s.read_to_close(Duration::from_secs(3));
    assert_eq!(
        server.wait_metric("sse_streams_open", 0.0, Duration::from_secs(1)),
        0.0
    );
}

#[test]
fn publisher_tokens_may_publish_only_to_their_topics() {
    let server = Server::start(&["--jwt-key", KEY]);
    let one = token(r#"{"mercure":{"publish":["chat/42"]}}"#);
    let prefix = token(r#"{"mercure":{"publish":["news/*"]}}"#);
    assert_eq!(publish(&server, &one, "topic=chat/42&data=x").0, 200);
    let (st, text) = publish(&server, &one, "topic=chat/42&topic=chat/43&data=x");
    assert_eq!(st, 403);
    assert!(text.contains("chat/43"), "{text}");
    assert_eq!(publish(&server, &prefix, "topic=news/today&data=x").0, 200);
    assert_eq!(publish(&server, &prefix, "topic=newsletter&data=x").0, 403);
    // A subscriber's token (no publish claim) may not publish; a forged one is 401.
    let sub = sub_token(r#"["*"]"#, now_s() + 60);
    assert_eq!(publish(&server, &sub, "topic=a&data=x").0, 403);
    let forged = sign_hs256(
        b"another key entirely, also long enough",
        r#"{"mercure":{"publish":["*"]}}"#,
    );
    let (st, _) = publish(&server, &forged, "topic=a&data=x");
    assert_eq!(st, 401);
    // With a key configured, loopback alone is not enough.
    let r = server.request(
        "POST /publish HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 14\r\n\r\ntopic=a&data=x",
    );
    assert_eq!(r.status, 401);
}

/// The raw text received within `wait` (and before it).
fn raw(st: &mut Stream, wait: Duration) -> String {
    st.read_for(wait).text()
}

/// `markPrivate=1`: a subscriber (the page) is told which events are private, by a `private`
/// event naming the id just before each; never a public one, never to a stream that did not
/// ask, and nothing private to a token that may not read it. No publisher may forge one.
#[test]
fn private_events_are_marked_for_subscribers_that_ask() {
    let server = server();
    let right = sub_token(r#"["chat/*"]"#, now_s() + 600);
    let auth = format!("Authorization: Bearer {right}\r\n");
    let mut marked = server.subscribe("topic=chat/1&markPrivate=1", &auth);
    let mut plain = server.subscribe("topic=chat/1", &auth);
    let mut anon = server.subscribe("topic=chat/1&markPrivate=1", "");
    let (st, public) = publish(&server, "pub", "topic=chat/1&data=open");
    assert_eq!(st, 200);
    let (st, secret) = publish(&server, "pub", "topic=chat/1&data=closed&private=on");
    assert_eq!(st, 200);
    let (public, secret) = (public.trim_end(), secret.trim_end());
    let wait = Duration::from_millis(300);
    assert_eq!(
        raw(&mut marked, wait),
        format!(
            "id: {public}\ndata: open\n\nevent: private\ndata: {secret}\n\nid: {secret}\ndata: closed\n\n"
        )
    );
    assert_eq!(
        raw(&mut plain, wait),
        format!("id: {public}\ndata: open\n\nid: {secret}\ndata: closed\n\n")
    );
    assert_eq!(
        raw(&mut anon, wait),
        format!("id: {public}\ndata: open\n\n")
    );
    // The marker's type is the server's alone.
    let (st, why) = publish(&server, "pub", "topic=chat/1&data=x&type=private");
    assert_eq!(st, 400, "{why}");
    assert!(why.contains("\"private\" is reserved"), "{why}");
}

/// The private-topics walk-through (docs/reference.md, "Private topics from a fresh shell",
/// which the README links to), run as written (from a shell, with `openssl`, `python3` and
/// `curl`): only the binary's path, the port and the listening address differ (the server
/// binds 127.0.0.1 on a free port here, through `SSE_BIND` and `SSE_PORT`).
#[test]
fn the_readme_private_topics_sequence_works_as_written() {
    for tool in ["bash", "openssl", "python3", "curl", "sed"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            assert!(
                std::env::var("REQUIRE_CLIENTS").as_deref() != Ok("1"),
                "REQUIRE_CLIENTS=1 but {tool} is missing"
            );
            eprintln!("SKIPPED: the README sequence needs {tool}");
            return;
        }
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/reference.md")).unwrap();
    let section = &readme[readme
        .find("### Private topics from a fresh shell")
        .expect("the section")..];
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("a sh block in the section");
    assert!(
        block.contains("mint()") && block.contains("kill $SERVER"),
        "{block}"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = block
        .replace(
            "target/release/sse-server",
            env!("CARGO_BIN_EXE_sse-server"),
        )
        .replace("localhost:3000", &format!("127.0.0.1:{port}"));
    let out = std::process::Command::new("bash")
        .args(["-c", &script])
        .env("SSE_BIND", "127.0.0.1")
        .env("SSE_PORT", port.to_string())
        .env("SSE_QUIET", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let mut lines = stdout.lines();
    let id = lines
        .find(|l| {
            !l.starts_with("with token:")
                && !l.starts_with("anonymous:")
                && !l.starts_with("sse-server ")
        })
        .unwrap_or_else(|| panic!("no id printed:\n{stdout}"))
        .trim()
        .to_string();
    assert!(!id.is_empty() && !id.contains(' '), "{stdout}");
    assert!(
        stdout.contains(&format!("with token: id: {id}\nwith token: data: hello\n")),
        "{stdout}\n{stderr}"
    );
    assert!(
        !stdout.contains("anonymous:"),
        "an anonymous subscriber gets nothing:\n{stdout}"
    );
}
