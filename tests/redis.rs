//! Several sse-server instances on one real Redis: one log, the same ids and order everywhere,
//! resume on another instance, Redis killed and restarted mid-stream, an instance restarted.
//! Skipped with a loud notice when redis-server is missing, unless REQUIRE_REDIS=1 (CI).

mod common;
#[path = "common/redis.rs"]
mod redis_server;

use common::{subscribe, Publish, Server, Stream};
use redis_server::RedisServer;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fn instance(redis: &RedisServer) -> Server {
    let url = redis.url();
    Server::start(&["--redis", &url, "--threads", "2"])
}

fn ok_publish(addr: SocketAddr, topic: &str, data: &str) -> String {
    Publish::event(topic, data).id(addr)
}

/// The next `n` events' (id, data) on `sub` (more when more came); every test here expects
/// every event, so a reset would be a lost one.
fn take(sub: &mut Stream, n: usize, within: Duration) -> Vec<(String, String)> {
    let got = sub.take(n, within);
    for e in &got {
        assert_ne!(e.kind, "reset", "unexpected {e:?}");
    }
    got.into_iter().map(|e| (e.id, e.data)).collect()
}

#[test]
fn publishes_on_every_instance_reach_subscribers_on_all_with_the_same_ids_and_order() {
    let Some(redis) = RedisServer::start(&[]) else {
        return;
    };
    let servers: Vec<Server> = (0..3).map(|_| instance(&redis)).collect();
    let mut subs: Vec<Stream> = servers
        .iter()
        .flat_map(|s| (0..3).map(|_| subscribe(s.addr, "topic=room", "")))
        .collect();
    let mut ids = Vec::new();
    for round in 0..10 {
        for (i, s) in servers.iter().enumerate() {
            ids.push(ok_publish(s.addr, "room", &format!("{round}-{i}")));
        }
    }
    // Ids are the log's own (<ms>-<n>), and increasing.
    assert!(ids.iter().all(|id| id
        .split_once('-')
        .is_some_and(|(a, b)| { a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok() })));
    for sub in subs.iter_mut() {
        let got: Vec<String> = take(sub, 30, Duration::from_secs(10))
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(got, ids, "same ids, same order, on every instance");
    }
}

#[test]
fn a_subscriber_moving_to_another_instance_resumes_exactly_while_publishes_continue() {
    let Some(redis) = RedisServer::start(&[]) else {
        return;
    };
    let a = instance(&redis);
    let b = instance(&redis);
    let mut sub = subscribe(a.addr, "topic=t", "");
    let addr = a.addr;
    let publisher = std::thread::spawn(move || {
        (0..200)
            .map(|i| {
                std::thread::sleep(Duration::from_millis(2));
                ok_publish(addr, "t", &i.to_string())
            })
            .collect::<Vec<_>>()
    });
    let first = take(&mut sub, 50, Duration::from_secs(10));
    drop(sub);
    let last = &first.last().unwrap().0;
    let mut moved = subscribe(b.addr, "topic=t", &format!("Last-Event-ID: {last}\r\n"));
    let ids = publisher.join().unwrap();
    // `take` hands out at least what it waits for: the first read may hold more than 50.
    let rest = take(&mut moved, ids.len() - first.len(), Duration::from_secs(10));
    let seen: Vec<String> = first.into_iter().chain(rest).map(|e| e.0).collect();
    assert_eq!(seen, ids);
}

#[test]
fn redis_down_and_back_publishes_503_then_nothing_stored_is_lost_and_streams_stay_open() {
    let Some(mut redis) = RedisServer::start(&["--appendonly", "yes", "--appendfsync", "always"])
    else {
        return;
    };
    let a = instance(&redis);
    let b = instance(&redis);
    let mut sub = subscribe(b.addr, "topic=t", "");
    let mut stored = vec![ok_publish(a.addr, "t", "before")];
    redis.kill();
    // Publishes during the outage: refused, quickly, with Retry-After; health says why.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut refused = 0;
    while refused < 3 {
        assert!(Instant::now() < deadline, "publishes kept being accepted");
        let start = Instant::now();
        let (st, body) = Publish::event("t", "during").answer(a.addr);
        if st == 200 {
            stored.push(body);
            continue;
        }
        assert_eq!(st, 503, "{body}");
        assert!(start.elapsed() < Duration::from_secs(3));
        refused += 1;
    }
    let h = a.get("/healthz");
    assert_eq!(h.status, 503, "{}", h.text());
    assert!(h.text().contains("Redis"), "{}", h.text());
    assert_eq!(a.metric("sse_redis_up"), 0.0);
    redis.restart();
    // The bridge comes back by itself; health turns green again.
    let deadline = Instant::now() + Duration::from_secs(15);
    while a.get("/healthz").status != 200 || b.get("/healthz").status != 200 {
        assert!(Instant::now() < deadline, "health never came back");
        std::thread::sleep(Duration::from_millis(100));
    }
    for i in 0..5 {
        stored.push(ok_publish(a.addr, "t", &format!("after{i}")));
    }
    // The stream stayed open through the outage and got every stored event once, in order.
    let got: Vec<String> = take(&mut sub, stored.len(), Duration::from_secs(15))
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(got, stored);
    assert!(a.metric("sse_redis_reconnects_total") >= 1.0);
}

#[test]
fn a_restarted_instance_lets_its_subscribers_resume_without_loss() {
    let Some(redis) = RedisServer::start(&[]) else {
        return;
    };
    let other = instance(&redis);
    let a = instance(&redis);
    let mut sub = subscribe(a.addr, "topic=t", "");
    let mut ids: Vec<String> = (0..5)
        .map(|i| ok_publish(other.addr, "t", &i.to_string()))
        .collect();
    let got = take(&mut sub, 5, Duration::from_secs(10));
    let last = got.last().unwrap().0.clone();
    drop(sub);
    drop(a);
    // Published while the instance is away.
    ids.extend((5..10).map(|i| ok_publish(other.addr, "t", &i.to_string())));
    let a = instance(&redis);
    let mut back = subscribe(a.addr, "topic=t", &format!("Last-Event-ID: {last}\r\n"));
    let rest: Vec<String> = take(&mut back, 5, Duration::from_secs(10))
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(rest, ids[5..]);
}

#[test]
fn a_bad_redis_url_is_a_clear_start_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sse-server"))
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--redis",
            "rediss://u:hunter2@127.0.0.1:1",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--redis") && err.contains("TLS"), "{err}");
    assert!(
        !err.contains("hunter2"),
        "the password is never printed: {err}"
    );
}

#[test]
fn a_resume_older_than_the_local_history_is_read_back_from_redis() {
    let Some(redis) = RedisServer::start(&[]) else {
        return;
    };
    // This instance keeps 5 events; Redis's approximate MAXLEN keeps whole nodes (many more).
    let url = redis.url();
    let a = Server::start(&["--redis", &url, "--history-events", "5"]);
    let ids: Vec<String> = (0..30)
        .map(|i| ok_publish(a.addr, "t", &i.to_string()))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut sub = subscribe(a.addr, "topic=t", &format!("Last-Event-ID: {}\r\n", ids[2]));
    let got: Vec<String> = take(&mut sub, 27, Duration::from_secs(10))
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(
        got,
        ids[3..],
        "exactly the missed events, from Redis then live history"
    );
    // And it goes on live.
    let next = ok_publish(a.addr, "t", "live");
    assert_eq!(take(&mut sub, 1, Duration::from_secs(5))[0].0, next);
}
