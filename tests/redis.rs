//! Several sse-server instances on one real Redis: one log, the same ids and order everywhere,
//! resume on another instance, Redis killed and restarted mid-stream, an instance restarted.
//! Skipped with a loud notice when redis-server is missing, unless REQUIRE_REDIS=1 (CI).

mod common;
#[path = "common/redis.rs"]
mod redis_server;

use common::{read_until, Server};
use redis_server::RedisServer;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn instance(redis: &RedisServer) -> Server {
    let url = redis.url();
    Server::start(&["--redis", &url, "--threads", "2"])
}

/// Publishes on `addr`; returns (status, body).
fn publish(addr: SocketAddr, topic: &str, data: &str) -> (u16, String) {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_nodelay(true).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let body = format!("topic={topic}&data={data}");
    let req = format!(
        "POST /publish HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.write_all(req.as_bytes()).unwrap();
    let mut r = String::new();
    let _ = c.read_to_string(&mut r);
    let status = r.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = r.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    (status, body)
}

fn ok_publish(addr: SocketAddr, topic: &str, data: &str) -> String {
    let (st, id) = publish(addr, topic, data);
    assert_eq!(st, 200, "{id}");
    // The answer is the id and a newline.
    id.trim_end().to_string()
}

struct Sub {
    s: TcpStream,
    pending: Vec<u8>,
}

fn subscribe(addr: SocketAddr, query: &str, extra: &str) -> Sub {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(format!("GET /sse?{query} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").as_bytes())
        .unwrap();
    let got = read_until(&mut s, Duration::from_secs(5), |b| {
        b.windows(4).any(|w| w == b"\r\n\r\n")
    });
    let at = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    Sub {
        s,
        pending: got[at..].to_vec(),
    }
}

impl Sub {
    /// The next `n` events' (id, data), comments skipped.
    fn take(&mut self, n: usize, within: Duration) -> Vec<(String, String)> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        loop {
            while let Some(end) = self.pending.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.pending.drain(..end + 2).collect();
                let text = String::from_utf8(block).unwrap();
                // Every test here expects every event: a reset would be a lost one.
                assert!(!text.contains("event: reset"), "unexpected {text:?}");
                let id = text.lines().find_map(|l| l.strip_prefix("id: "));
                let data = text.lines().find_map(|l| l.strip_prefix("data: "));
                if let (Some(id), Some(data)) = (id, data) {
                    out.push((id.to_string(), data.to_string()));
                }
            }
            if out.len() >= n {
                return out;
            }
            assert!(Instant::now() < deadline, "timed out with {out:?}");
            self.s
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            match self.s.read(&mut buf) {
                Ok(0) => panic!("stream closed after {out:?}"),
                Ok(k) => self.pending.extend_from_slice(&buf[..k]),
                Err(_) => {}
            }
        }
    }
}

#[test]
fn publishes_on_every_instance_reach_subscribers_on_all_with_the_same_ids_and_order() {
    let Some(redis) = RedisServer::start(&[]) else {
        return;
    };
    let servers: Vec<Server> = (0..3).map(|_| instance(&redis)).collect();
    let mut subs: Vec<Sub> = servers
        .iter()
        .flat_map(|s| (0..3).map(|_| subscribe(s.addr, "topic=room", "")))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
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
        let got: Vec<String> = sub
            .take(30, Duration::from_secs(10))
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
    std::thread::sleep(Duration::from_millis(50));
    let addr = a.addr;
    let publisher = std::thread::spawn(move || {
        (0..200)
            .map(|i| {
                std::thread::sleep(Duration::from_millis(2));
                ok_publish(addr, "t", &i.to_string())
            })
            .collect::<Vec<_>>()
    });
    let first = sub.take(50, Duration::from_secs(10));
    drop(sub);
    let last = &first.last().unwrap().0;
    let mut moved = subscribe(b.addr, "topic=t", &format!("Last-Event-ID: {last}\r\n"));
    let ids = publisher.join().unwrap();
    let rest = moved.take(150, Duration::from_secs(10));
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
    std::thread::sleep(Duration::from_millis(50));
    let mut stored = vec![ok_publish(a.addr, "t", "before")];
    redis.kill();
    // Publishes during the outage: refused, quickly, with Retry-After; health says why.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut refused = 0;
    while refused < 3 {
        assert!(Instant::now() < deadline, "publishes kept being accepted");
        let start = Instant::now();
        let (st, body) = publish(a.addr, "t", "during");
        if st == 200 {
            stored.push(body.trim_end().to_string());
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
    let got: Vec<String> = sub
        .take(stored.len(), Duration::from_secs(15))
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
    std::thread::sleep(Duration::from_millis(50));
    let mut ids: Vec<String> = (0..5)
        .map(|i| ok_publish(other.addr, "t", &i.to_string()))
        .collect();
    let got = sub.take(5, Duration::from_secs(10));
    let last = got.last().unwrap().0.clone();
    drop(sub);
    drop(a);
    // Published while the instance is away.
    ids.extend((5..10).map(|i| ok_publish(other.addr, "t", &i.to_string())));
    let a = instance(&redis);
    let mut back = subscribe(a.addr, "topic=t", &format!("Last-Event-ID: {last}\r\n"));
    let rest: Vec<String> = back
        .take(5, Duration::from_secs(10))
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
    let got: Vec<String> = sub
        .take(27, Duration::from_secs(10))
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
    assert_eq!(sub.take(1, Duration::from_secs(5))[0].0, next);
}
