//! Redis mode under the events that used to lose answers or ids: SIGTERM with publishes in
//! flight (Redis up, Redis down), and the stream deleted under running instances. Over real
//! sockets against a real `redis-server`. Skipped with a loud notice when redis-server is
//! missing, unless REQUIRE_REDIS=1 (CI).

mod common;
#[path = "common/redis.rs"]
mod redis_server;

use common::{Publish, Server};
use redis_server::RedisServer;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A publish request's bytes (form body, closing).
fn publish_request(topic: &str, data: &str) -> Vec<u8> {
    Publish::event(topic, data).bytes()
}

/// What a publisher got: the status (0: closed without an answer), whether `Retry-After` was
/// there, the body.
#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: bool,
    body: String,
}

fn read_answer(mut c: TcpStream) -> Answer {
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    match common::try_read_response(&mut c) {
        Some(r) => Answer {
            status: r.status,
            retry_after: r.header("retry-after").is_some(),
            body: r.text().trim_end().to_string(),
        },
        None => Answer {
            status: 0,
            retry_after: false,
            body: String::new(),
        },
    }
}

/// `n` publishes whose answers are pending when SIGTERM comes (Redis frozen, so none is
/// stored yet), and `n` whose body is still arriving; then `after_term` runs (Redis thawed,
/// or killed) and the bodies are finished. Every publisher must get an answer: 200 (then the
/// id is in Redis) or 503 with Retry-After.
fn sigterm_with_publishes_in_flight(after_term: impl FnOnce(&mut RedisServer)) {
    // Every write on disk at once, so what was stored can be checked after a kill too.
    let Some(mut redis) = RedisServer::start(&["--appendonly", "yes", "--appendfsync", "always"])
    else {
        return;
    };
    let url = redis.url();
    let server = Server::start(&["--redis", &url, "--threads", "2"]);
    let addr: SocketAddr = server.addr;
    redis.pause();
    std::thread::sleep(Duration::from_millis(50));
    let mut waiting = Vec::new();
    for i in 0..8 {
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(&publish_request("t", &format!("w{i}")))
            .unwrap();
        waiting.push(c);
    }
    let mut partial = Vec::new();
    for i in 0..8 {
        let mut c = TcpStream::connect(addr).unwrap();
        let req = publish_request("t", &format!("p{i}"));
        let cut = req.len() - 2;
        c.write_all(&req[..cut]).unwrap();
        partial.push((c, req[cut..].to_vec()));
    }
    std::thread::sleep(Duration::from_millis(300));
    server.signal("TERM");
    std::thread::sleep(Duration::from_millis(200));
    after_term(&mut redis);
    for (c, rest) in partial.iter_mut() {
        // A server that closed the connection without an answer makes this fail: fine, the
        // answer (or its absence) is what is checked.
        let _ = c.write_all(rest);
    }
    let answers: Vec<Answer> = waiting
        .into_iter()
        .chain(partial.into_iter().map(|(c, _)| c))
        .map(read_answer)
        .collect();
    for (i, a) in answers.iter().enumerate() {
        match a.status {
            200 => {}
            503 => assert!(a.retry_after, "publish {i}: 503 without Retry-After: {a:?}"),
            _ => panic!("publish {i} got no answer: {a:?} (all: {answers:?})"),
        }
    }
    eprintln!(
        "answers: {:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    let stored: Vec<&str> = answers
        .iter()
        .filter(|a| a.status == 200)
        .map(|a| a.body.as_str())
        .collect();
    if !stored.is_empty() {
        // Back (from its append-only file, if it was killed): what was answered 200 is there.
        redis.restart();
        let mut c = redis.conn(&url);
        for id in &stored {
            let found: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                .arg("sse:events")
                .arg(*id)
                .arg(*id)
                .query(&mut c)
                .unwrap();
            assert_eq!(found.len(), 1, "answered 200 with {id}, not in Redis");
        }
    }
}

#[test]
fn sigterm_answers_every_publish_in_flight_with_redis_up() {
    sigterm_with_publishes_in_flight(|redis| redis.resume());
}

#[test]
fn sigterm_answers_every_publish_in_flight_with_redis_down() {
    sigterm_with_publishes_in_flight(|redis| redis.kill());
}

/// The server exits promptly after SIGTERM even when the publishes it waits for never get
/// an answer from Redis (frozen for good): they are answered 503 at the end of the grace.
#[test]
fn sigterm_with_redis_frozen_answers_503_within_the_grace() {
    let Some(redis) = RedisServer::start(&[]) else {
        return;
    };
    let url = redis.url();
    let mut server = Server::start(&["--redis", &url, "--shutdown-grace-ms", "1000"]);
    redis.pause();
    let mut c = TcpStream::connect(server.addr).unwrap();
    c.write_all(&publish_request("t", "frozen")).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let start = Instant::now();
    server.signal("TERM");
    let a = read_answer(c);
    assert_eq!(a.status, 503, "{a:?}");
    assert!(a.retry_after, "{a:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "still running 5 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("exited {:?} after SIGTERM", start.elapsed());
    redis.resume();
}

/// A subscription's events as (id, kind, data), read with the common client (the crate's
/// event-stream parser) until `stop` is set; then the events so far. It is registered once
/// this returns.
fn collect_events(
    addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<(String, String, String)>> {
    let mut s = common::subscribe(addr, "topic=t", "");
    std::thread::spawn(move || {
        while !stop.load(std::sync::atomic::Ordering::Acquire) && !s.closed {
            s.read_for(Duration::from_millis(50));
        }
        s.events
            .into_iter()
            .map(|e| (e.id, e.kind, e.data))
            .collect()
    })
}

fn id_key(id: &str) -> (u64, u64) {
    let (a, b) = id.split_once('-').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

/// The stream deleted under two running instances during a flood of publishes: no id is
/// ever given to two events, and every publish answered 200 reaches every subscriber of both
/// instances, unless that subscriber was told it may have missed it (`reset`, `log-reset`,
/// at a later id).
#[test]
fn a_store_deleted_under_two_instances_never_reuses_an_id_and_says_log_reset() {
    let Some(redis) = RedisServer::start(&[]) else {
        return;
    };
    let url = redis.url();
    let servers = [
        Server::start(&["--redis", &url, "--threads", "2"]),
        Server::start(&["--redis", &url, "--threads", "2"]),
    ];
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let subs: Vec<_> = servers
        .iter()
        .flat_map(|s| (0..2).map(|_| collect_events(s.addr, stop.clone())))
        .collect();
    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let publishers: Vec<_> = (0..4)
        .map(|p| {
            let addr = servers[p % 2].addr;
            let flooding = flooding.clone();
            std::thread::spawn(move || {
                let mut answered = Vec::new();
                let mut i = 0;
                // Keep-alive publishes, as fast as they are answered.
                let mut c = TcpStream::connect(addr).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                while flooding.load(std::sync::atomic::Ordering::Acquire) {
                    let data = format!("p{p}-{i}");
                    i += 1;
                    c.write_all(&Publish::event("t", &data).keep_alive_bytes())
                        .unwrap();
                    let r = common::read_response(&mut c);
                    if r.status == 200 {
                        answered.push((r.text().trim_end().to_string(), data));
                    }
                }
                answered
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    let mut c = redis.conn(&url);
    let _: () = redis::cmd("DEL").arg("sse:events").query(&mut c).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    flooding.store(false, std::sync::atomic::Ordering::Release);
    let answered: Vec<(String, String)> = publishers
        .into_iter()
        .flat_map(|p| p.join().unwrap())
        .collect();
    assert!(answered.len() > 100, "a flood: {}", answered.len());
    // Everything answered has had time to arrive.
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, std::sync::atomic::Ordering::Release);
    let seen: Vec<Vec<(String, String, String)>> =
        subs.into_iter().map(|s| s.join().unwrap()).collect();
    // One id, one event: across answers and every subscriber of both instances.
    let mut by_id: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let events = seen
        .iter()
        .flatten()
        .filter(|e| e.1 != "reset")
        .map(|e| (e.0.clone(), e.2.clone()));
    for (id, data) in answered.iter().cloned().chain(events) {
        if let Some(before) = by_id.insert(id.clone(), data.clone()) {
            assert_eq!(before, data, "id {id} names two events");
        }
    }
    for (n, events) in seen.iter().enumerate() {
        let resets: Vec<&(String, String, String)> =
            events.iter().filter(|e| e.1 == "reset").collect();
        let got: std::collections::HashSet<&str> = events.iter().map(|e| e.0.as_str()).collect();
        for (id, data) in &answered {
            if got.contains(id.as_str()) {
                continue;
            }
            // Missed: only if a log-reset at a later id said events may be missing.
            assert!(
                resets
                    .iter()
                    .any(|r| { r.2.contains("\"log-reset\"") && id_key(&r.0) > id_key(id) }),
                "subscriber {n} never got {id} ({data}), and no log-reset after it: {resets:?}"
            );
        }
        // Ids only go up.
        for w in events.windows(2) {
            assert!(id_key(&w[0].0) < id_key(&w[1].0), "{w:?}");
        }
    }
    for s in &servers {
        assert!(s.metric("sse_redis_log_resets_total") >= 1.0);
    }
    eprintln!(
        "{} publishes answered; resets seen: {:?}",
        answered.len(),
        seen.iter()
            .map(|e| e.iter().filter(|e| e.1 == "reset").count())
            .collect::<Vec<_>>()
    );
}

/// `FLUSHALL` with nothing published after it: the instances' readers notice the log is gone
/// (within their once-a-second check), start it again with its mark, and every subscriber is
/// told (`log-reset`); the next publish gets an id above every earlier one.
#[test]
fn a_flushed_store_is_noticed_without_a_publish_and_ids_keep_going_up() {
    let Some(redis) = RedisServer::start(&[]) else {
        return;
    };
    let url = redis.url();
    let servers = [
        Server::start(&["--redis", &url]),
        Server::start(&["--redis", &url]),
    ];
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let subs: Vec<_> = servers
        .iter()
        .map(|s| collect_events(s.addr, stop.clone()))
        .collect();
    let publish = |addr: SocketAddr, data: &str| {
        let a = read_answer({
            let mut c = TcpStream::connect(addr).unwrap();
            c.write_all(&publish_request("t", data)).unwrap();
            c
        });
        assert_eq!(a.status, 200, "{a:?}");
        a.body
    };
    let before: Vec<String> = (0..20)
        .map(|i| publish(servers[i % 2].addr, &format!("b{i}")))
        .collect();
    let mut c = redis.conn(&url);
    let _: () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
    for s in &servers {
        let resets = s.wait_metric("sse_redis_log_resets_total", 1.0, Duration::from_secs(5));
        assert_eq!(resets, 1.0, "the flush was noticed once");
    }
    let after = publish(servers[0].addr, "a0");
    assert!(id_key(&after) > id_key(before.last().unwrap()));
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Release);
    for sub in subs {
        let events = sub.join().unwrap();
        let ids: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
        let kinds: Vec<&str> = events.iter().map(|e| e.1.as_str()).collect();
        assert_eq!(ids.len(), 22, "{events:?}");
        assert_eq!(
            ids[..20],
            before.iter().map(String::as_str).collect::<Vec<_>>()
        );
        assert_eq!(kinds[20], "reset", "{events:?}");
        assert!(
            events[20].2.contains("\"reason\":\"log-reset\""),
            "{events:?}"
        );
        assert_eq!(ids[21], after);
    }
}

/// The stream deleted and recreated by another writer (no mark of ours): the reader's
/// once-a-second check sees the log's counter and last id go back, adds the mark itself, and
/// subscribers are told (`log-reset`); the ids after the mark are above every earlier one.
#[test]
fn a_store_recreated_by_another_writer_is_noticed_and_said() {
    let Some(redis) = RedisServer::start(&[]) else {
        return;
    };
    let url = redis.url();
    let server = Server::start(&["--redis", &url]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sub = collect_events(server.addr, stop.clone());
    std::thread::sleep(Duration::from_millis(100));
    let publish = |data: &str| {
        let a = read_answer({
            let mut c = TcpStream::connect(server.addr).unwrap();
            c.write_all(&publish_request("t", data)).unwrap();
            c
        });
        assert_eq!(a.status, 200, "{a:?}");
        a.body
    };
    let before: Vec<String> = (0..10).map(|i| publish(&format!("b{i}"))).collect();
    // Let the reader's check know the log as it is (caught up) before it changes.
    std::thread::sleep(Duration::from_millis(1500));
    let mut c = redis.conn(&url);
    let _: () = redis::cmd("DEL").arg("sse:events").query(&mut c).unwrap();
    let _: String = redis::cmd("XADD")
        .arg("sse:events")
        .arg("*")
        .arg("t")
        .arg("t")
        .arg("d")
        .arg("other")
        .query(&mut c)
        .unwrap();
    let resets = server.wait_metric("sse_redis_log_resets_total", 1.0, Duration::from_secs(5));
    assert_eq!(resets, 1.0);
    let after = publish("a0");
    assert!(id_key(&after) > id_key(before.last().unwrap()));
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, std::sync::atomic::Ordering::Release);
    let events = sub.join().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.1.as_str()).collect();
    let at = kinds.iter().position(|k| *k == "reset").expect("a reset");
    assert!(
        events[at].2.contains("\"reason\":\"log-reset\""),
        "{events:?}"
    );
    assert_eq!(events.last().unwrap().0, after, "{events:?}");
    assert!(at >= 10, "after what was read before: {events:?}");
}

/// Publishes go to Redis by the script's hash; a Redis whose scripts were flushed
/// (`SCRIPT FLUSH`) ran none of them, and they are sent again with the script: still `200`,
/// each stored once.
#[test]
fn publishes_survive_a_script_flush() {
    let Some(redis) = RedisServer::start(&[]) else {
        return;
    };
    let url = redis.url();
    let server = Server::start(&["--redis", &url]);
    let publish = |data: &str| {
        read_answer({
            let mut c = TcpStream::connect(server.addr).unwrap();
            c.write_all(&publish_request("t", data)).unwrap();
            c
        })
    };
    assert_eq!(publish("one").status, 200);
    let mut c = redis.conn(&url);
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut c).unwrap();
    let a = publish("two");
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(publish("three").status, 200);
    let len: usize = redis::cmd("XLEN").arg("sse:events").query(&mut c).unwrap();
    assert_eq!(len, 4, "the log's mark and the three events, once each");
}
