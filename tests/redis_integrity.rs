//! Redis mode under the events that used to lose answers or ids: SIGTERM with publishes in
//! flight (Redis up, Redis down), and the stream deleted under running instances. Over real
//! sockets against a real `redis-server`. Skipped with a loud notice when redis-server is
//! missing, unless REQUIRE_REDIS=1 (CI).

mod common;
#[path = "common/redis.rs"]
mod redis_server;

use common::Server;
use redis_server::RedisServer;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A publish request's bytes (form body, closing).
fn publish_request(topic: &str, data: &str) -> Vec<u8> {
    let body = format!("topic={topic}&data={data}");
    format!(
        "POST /publish HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
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
    let mut r = Vec::new();
    let _ = c.read_to_end(&mut r);
    let r = String::from_utf8_lossy(&r).into_owned();
    let status = r.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let (head, body) = r.split_once("\r\n\r\n").unwrap_or((&r, ""));
    Answer {
        status,
        retry_after: head.to_ascii_lowercase().contains("\r\nretry-after:"),
        body: body.trim_end().to_string(),
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
